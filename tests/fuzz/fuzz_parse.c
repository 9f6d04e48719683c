/*
 * libFuzzer target: container output through parse=json|logfmt|regex, as
 * container.c runs them (the first byte picks the parser and a time-key
 * format), then packed into a record. Checks that a parsed line is exactly
 * npairs well-formed MessagePack pairs and that the record stays within
 * fwd_record_size_max_more.
 */
#include "fwd_buf.h"
#include "fwd_config.h"
#include "fwd_parse.h"
#include "fwd_record.h"

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct fwd_parser *parsers[3 * 3];
static struct fwd_record_tmpl *tmpl;

static void init(void)
{
    static const char *const fmts[] = {"rfc3339", "unix_ms", "%Y-%m-%d %H:%M:%S.%L %z"};
    static const char *const reserved[] = {"container_id", "container_name", "source", "log"};
    static struct fwd_config cfg;
    static struct fwd_info info;
    char err[256];

    for (int k = 0; k < 3; k++) {
        for (int f = 0; f < 3; f++) {
            struct fwd_parse_opts o = {.kind = (enum fwd_parse_kind)(k + 1),
                                       .regex = "^(?<level>\\w+) (?<ts>\\S+) (?<msg>.*)$",
                                       .time_key = "ts",
                                       .time_keep = f == 1,
                                       .reserved = reserved,
                                       .nreserved = 4,
                                       .max_out = 3 * 20000 + 4096};

            if (fwd_timefmt_compile(&o.time_format, fmts[f]) != 0 ||
                (parsers[k * 3 + f] = fwd_parser_create(&o, err, sizeof(err))) == NULL)
                abort();
        }
    }
    if (fwd_config_build(&cfg, NULL, 0, NULL, 0, err, sizeof(err)) != 0)
        abort();
    strcpy(cfg.pl.seq_key, "seq");
    info.container_id = (char *)"0123456789ab";
    info.container_name = (char *)"/fuzz";
    info.entrypoint = info.image_id = info.image_name = info.created = (char *)"";
    tmpl = fwd_record_tmpl_create(&info, &cfg, "fuzzhost", err, sizeof(err));
    if (tmpl == NULL)
        abort();
}

static void check_pairs(const struct fwd_parsed *p)
{
    msgpack_unpacked u;
    size_t off = 0;

    msgpack_unpacked_init(&u);
    for (uint32_t i = 0; i < 2 * p->npairs; i++)
        if (msgpack_unpack_next(&u, (const char *)p->pairs, p->len, &off) != MSGPACK_UNPACK_SUCCESS)
            abort();
    if (off != p->len)
        abort();
    msgpack_unpacked_destroy(&u);
}

static void pack(const uint8_t *line, size_t len, const struct fwd_parsed *p)
{
    struct fwd_line l = {.source_str = "stdout", .source_len = 6, .data = line, .len = len};
    struct fwd_record_more m = {p, 7};
    size_t max = fwd_record_size_max_more(tmpl, &l, &m);
    struct fwd_buf b;
    msgpack_packer pk;

    fwd_buf_init(&b, 1u << 30);
    if (fwd_buf_reserve(&b, max) != 0)
        abort();
    msgpack_packer_init(&pk, &b, fwd_buf_msgpack_write_reserved);
    fwd_record_pack_more(tmpl, &l, &m, &pk);
    if (b.len > max)
        abort();
    fwd_buf_release(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fwd_parsed p;

    if (tmpl == NULL)
        init();
    if (size < 1 || size > 20000)
        return 0;
    if (fwd_parser_run(parsers[data[0] % 9], data + 1, size - 1, &p) == 0) {
        check_pairs(&p);
        if (p.has_time && p.time_nano < 0)
            abort();
        pack(data + 1, size - 1, &p);
    }
    return 0;
}
