/*
 * forward.c - Forward protocol encoding.
 *
 * Spec: https://github.com/fluent/fluentd/wiki/Forward-Protocol-Specification-v1.
 * Interop (../shared/reference/fluentd-forward-protocol.md App. B): the tag
 * and record keys are str, entries are bin (the spec's SHOULD; Fluentd and
 * Fluent Bit accept bin and str), the option map is always a map, and integer
 * time is a positive int (Fluent Bit's Message mode accepts nothing else).
 * EventTime seconds are unsigned, as Fluentd and Fluent Bit decode them.
 */
#include "fwd_forward.h"

#include <string.h>

struct fixed {
    uint8_t *p;
    size_t cap;
    size_t len;
    int overflow;
};

static int fixed_write(void *data, const char *buf, size_t len)
{
    struct fixed *f = data;

    if (len > f->cap - f->len) {
        f->overflow = 1;
        return -1;
    }
    memcpy(f->p + f->len, buf, len);
    f->len += len;
    return 0;
}

void fwd_forward_pack_entry_start(msgpack_packer *pk, int64_t time_nano, bool subsecond)
{
    uint64_t ns = time_nano > 0 ? (uint64_t)time_nano : 0;
    uint64_t secs = ns / 1000000000ull;

    msgpack_pack_array(pk, 2);
    if (subsecond) {
        uint32_t s = (uint32_t)secs, n = (uint32_t)(ns % 1000000000ull);
        char b[8] = {
            (char)(s >> 24), (char)(s >> 16), (char)(s >> 8), (char)s,
            (char)(n >> 24), (char)(n >> 16), (char)(n >> 8), (char)n,
        };

        msgpack_pack_ext(pk, 8, 0);
        msgpack_pack_ext_body(pk, b, 8);
    } else {
        msgpack_pack_uint64(pk, secs);
    }
}

size_t fwd_forward_packed_header(uint8_t *out, size_t cap, const char *tag, size_t tag_len,
                                 size_t entries_len)
{
    struct fixed f = {out, cap, 0, 0};
    msgpack_packer pk;

    msgpack_packer_init(&pk, &f, fixed_write);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_str_with_body(&pk, tag, tag_len);
    msgpack_pack_bin(&pk, entries_len);
    return f.overflow ? 0 : f.len;
}

size_t fwd_forward_packed_options(uint8_t *out, size_t cap, uint32_t count, const char *chunk)
{
    struct fixed f = {out, cap, 0, 0};
    msgpack_packer pk;

    msgpack_packer_init(&pk, &f, fixed_write);
    msgpack_pack_map(&pk, chunk != NULL ? 2 : 1);
    if (chunk != NULL) {
        /* Fluent Bit: "'chunk' is always in the first key of the map". */
        msgpack_pack_str_with_body(&pk, "chunk", 5);
        msgpack_pack_str_with_body(&pk, chunk, strlen(chunk));
    }
    msgpack_pack_str_with_body(&pk, "size", 4);
    msgpack_pack_uint32(&pk, count);
    return f.overflow ? 0 : f.len;
}
