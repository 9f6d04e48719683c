/*
 * libFuzzer target: container output, one line per '\n', through each
 * multiline mode (the first byte picks it, with small bounds so they are
 * hit); bit 7 of a line's first byte sends it to stderr. Checks that every
 * line comes out exactly once, in order per stream, and that a joined event
 * stays within max-lines and max-bytes.
 */
#include "fwd_multiline.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_BYTES 256
#define MAX_LINES 5

struct ctx {
    size_t bytes_in, bytes_out; /* line bytes, newlines between joined lines included */
    size_t lines_in, lines_out;
};

static int on_event(void *p, const struct fwd_line *l)
{
    struct ctx *c = p;
    size_t n = 1;

    for (size_t i = 0; i < l->len; i++)
        n += l->data[i] == '\n';
    if (n > 1 && (n > MAX_LINES || l->len > MAX_BYTES))
        abort();
    c->lines_out += n;
    c->bytes_out += l->len - (n - 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const starts[] = {"", "", "", "", "^\\S"};
    struct fwd_multiline_opts o = {0};
    struct fwd_multiline *m;
    struct ctx c = {0};
    char err[256];
    size_t off = 1;
    uint64_t now = 0;

    if (size < 1)
        return 0;
    o.mode = (enum fwd_multiline_mode)(1 + data[0] % 4);
    o.start = starts[o.mode];
    o.max_lines = MAX_LINES;
    o.max_bytes = MAX_BYTES;
    o.flush_ns = 1000;
    if ((m = fwd_multiline_create(&o, err, sizeof(err))) == NULL)
        abort();
    while (off <= size) {
        const uint8_t *nl = memchr(data + off, '\n', size - off);
        size_t len = nl ? (size_t)(nl - (data + off)) : size - off;
        bool err_stream = len > 0 && (data[off] & 0x80);
        struct fwd_line l = {.source = err_stream ? FWD_SOURCE_STDERR : FWD_SOURCE_STDOUT,
                             .source_str = err_stream ? "stderr" : "stdout",
                             .source_len = 6,
                             .data = data + off,
                             .len = len};

        c.lines_in++;
        c.bytes_in += len;
        now += 300;
        if (fwd_multiline_feed(m, &l, now, on_event, &c) != 0)
            abort();
        if (len > 0 && data[off] == 'E')
            fwd_multiline_expire(m, now, on_event, &c);
        off += len + 1;
    }
    fwd_multiline_flush(m, on_event, &c);
    if (fwd_multiline_next_deadline(m) != 0 || c.lines_in != c.lines_out ||
        c.bytes_in != c.bytes_out)
        abort();
    fwd_multiline_destroy(m);
    return 0;
}
