/*
 * libFuzzer target: untrusted FIFO bytes through the whole pure pipeline
 * (framing -> LogEntry decoding -> partial joining -> record packing), as
 * container.c drives it, with a small max line so caps and pieces are hit.
 */
#include "fwd_buf.h"
#include "fwd_config.h"
#include "fwd_entry.h"
#include "fwd_frame.h"
#include "fwd_limits.h"
#include "fwd_partial.h"
#include "fwd_record.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct ctx {
    struct fwd_entry_decoder *dec;
    struct fwd_partial *partial;
    struct fwd_record_tmpl *tmpl;
    struct fwd_buf out;
    uint64_t now;
};

static int on_line(void *p, const struct fwd_line *l)
{
    struct ctx *c = p;
    msgpack_packer pk;

    fwd_buf_reset(&c->out);
    if (fwd_buf_reserve(&c->out, fwd_record_size_max(c->tmpl, l)) != 0)
        return 0;
    msgpack_packer_init(&pk, &c->out, fwd_buf_msgpack_write_reserved);
    fwd_record_pack(c->tmpl, l, &pk);
    if (c->out.len > fwd_record_size_max(c->tmpl, l))
        abort();
    return 0;
}

static int on_frame(void *p, const uint8_t *buf, size_t len)
{
    struct ctx *c = p;
    struct fwd_entry e;

    if (fwd_entry_decode(c->dec, buf, len, &e) == 0)
        fwd_partial_feed(c->partial, &e, c->now++, on_line, c);
    if (c->now % 7 == 0)
        fwd_partial_expire(c->partial, c->now * 1000000000ull, on_line, c);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct fwd_config cfg;
    static struct fwd_info info;
    static int init;
    struct ctx c = {0};
    char err[256];
    size_t used;

    if (!init) {
        if (fwd_config_build(&cfg, NULL, 0, NULL, 0, err, sizeof(err)) != 0)
            abort();
        info.container_id = (char *)"0123456789ab";
        info.container_name = (char *)"/fuzz";
        init = 1;
    }
    c.dec = fwd_entry_decoder_create();
    c.partial = fwd_partial_create(20000, 1000000000ull);
    c.tmpl = fwd_record_tmpl_create(&info, &cfg, "fuzzhost", err, sizeof(err));
    fwd_buf_init(&c.out, 1u << 30);
    (void)fwd_frame_split(data, size, FWD_FRAME_MAX, on_frame, &c, &used);
    if (used > size)
        abort();
    /* resync, as a restarted reader does: every candidate must be a real prefix */
    for (size_t pos = 0, off; pos < size; pos += off + 1) {
        int found = fwd_frame_find_start(data + pos, size - pos, FWD_FRAME_MAX, &off);

        if (off > size - pos || (found && size - pos - off < FWD_FRAME_SIG_LEN))
            abort();
        if (!found)
            break;
    }
    fwd_partial_flush(c.partial, on_line, &c);
    fwd_buf_release(&c.out);
    fwd_record_tmpl_destroy(c.tmpl);
    fwd_partial_destroy(c.partial);
    fwd_entry_decoder_destroy(c.dec);
    return 0;
}
