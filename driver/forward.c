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
#include "fwd_buf.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <zlib.h>

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

size_t fwd_forward_packed_options(uint8_t *out, size_t cap, uint32_t count, const char *chunk,
                                  bool gzip)
{
    struct fixed f = {out, cap, 0, 0};
    msgpack_packer pk;

    msgpack_packer_init(&pk, &f, fixed_write);
    msgpack_pack_map(&pk, 1 + (chunk != NULL) + gzip);
    if (chunk != NULL) {
        /* Fluent Bit: "'chunk' is always in the first key of the map". */
        msgpack_pack_str_with_body(&pk, "chunk", 5);
        msgpack_pack_str_with_body(&pk, chunk, strlen(chunk));
    }
    msgpack_pack_str_with_body(&pk, "size", 4);
    msgpack_pack_uint32(&pk, count);
    if (gzip) {
        /* The spec's CompressedPackedForward marker; Fluentd and Fluent Bit both read it. */
        msgpack_pack_str_with_body(&pk, "compressed", 10);
        msgpack_pack_str_with_body(&pk, "gzip", 4);
    }
    return f.overflow ? 0 : f.len;
}

int fwd_forward_gzip(const uint8_t *in, size_t len, int level, struct fwd_buf *out)
{
    z_stream z;
    uLong bound;
    int rc;

    memset(&z, 0, sizeof(z));
    /* windowBits 15 + 16: a gzip header and trailer instead of zlib's. */
    if (deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -ENOMEM;
    bound = deflateBound(&z, (uLong)len);
    fwd_buf_reset(out);
    if (fwd_buf_reserve(out, bound) != 0) {
        deflateEnd(&z);
        return -ENOMEM;
    }
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)len;
    z.next_out = out->data;
    z.avail_out = (uInt)bound;
    rc = deflate(&z, Z_FINISH);
    if (rc == Z_STREAM_END)
        out->len = z.total_out;
    deflateEnd(&z);
    return rc == Z_STREAM_END ? 0 : -EIO;
}

int fwd_forward_chunk_id(char id[FWD_FORWARD_CHUNK_LEN + 1])
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint8_t r[18] = {0}; /* 16 random bytes, padded to a multiple of 3 */
    size_t got = 0;

    while (got < 16) {
        ssize_t n = getrandom(r + got, 16 - got, 0);

        if (n == -1) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        got += (size_t)n;
    }
    for (int i = 0, o = 0; i < 18; i += 3, o += 4) {
        uint32_t v = (uint32_t)r[i] << 16 | (uint32_t)r[i + 1] << 8 | r[i + 2];

        id[o] = b64[v >> 18 & 63];
        id[o + 1] = b64[v >> 12 & 63];
        id[o + 2] = b64[v >> 6 & 63];
        id[o + 3] = b64[v & 63];
    }
    /* 16 bytes encode to 22 characters and "==" padding (standard base64). */
    id[22] = '=';
    id[23] = '=';
    id[24] = '\0';
    return 0;
}

/* Big-endian length of n bytes at p. */
static uint32_t be(const uint8_t *p, int n)
{
    uint32_t v = 0;

    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/*
 * Read a str or bin header at p[*off]: its body length in *blen. 1 if it is
 * one, 0 if more bytes are needed, -1 if the byte there is another type.
 */
static int strbin(const uint8_t *p, size_t len, size_t *off, size_t *blen)
{
    uint8_t t;
    int n;

    if (*off >= len)
        return 0;
    t = p[*off];
    if ((t & 0xe0) == 0xa0) {
        *blen = t & 0x1f;
        *off += 1;
        return 1;
    }
    switch (t) {
        case 0xd9:
        case 0xc4:
            n = 1;
            break; /* str8, bin8 */
        case 0xda:
        case 0xc5:
            n = 2;
            break; /* str16, bin16 */
        case 0xdb:
        case 0xc6:
            n = 4;
            break; /* str32, bin32 */
        default:
            return -1;
    }
    if (len - *off < (size_t)n + 1)
        return 0;
    *blen = be(p + *off + 1, n);
    *off += 1 + (size_t)n;
    return 1;
}

/* Skip one scalar value (nil, bool, int, float, str, bin). 1, 0 (need more), -1 (other). */
static int skip_scalar(const uint8_t *p, size_t len, size_t *off)
{
    size_t blen, extra;
    uint8_t t;
    int r;

    if (*off >= len)
        return 0;
    t = p[*off];
    if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3) {
        *off += 1;
        return 1;
    }
    switch (t) {
        case 0xcc:
        case 0xd0:
            extra = 1;
            break;
        case 0xcd:
        case 0xd1:
            extra = 2;
            break;
        case 0xce:
        case 0xd2:
        case 0xca:
            extra = 4;
            break;
        case 0xcf:
        case 0xd3:
        case 0xcb:
            extra = 8;
            break;
        default:
            r = strbin(p, len, off, &blen);
            if (r <= 0)
                return r;
            if (len - *off < blen)
                return 0;
            *off += blen;
            return 1;
    }
    if (len - *off < extra + 1)
        return 0;
    *off += extra + 1;
    return 1;
}

int fwd_forward_parse_ack(const uint8_t *p, size_t len, size_t *consumed,
                          char id[FWD_FORWARD_ACK_MAX + 1], size_t *idlen)
{
    size_t off = 0, n, klen, vlen;
    bool found = false;

    *consumed = 0;
    *idlen = 0;
    id[0] = '\0';
    if (len == 0)
        return 0;
    if ((p[0] & 0xf0) == 0x80) {
        n = p[0] & 0x0f;
        off = 1;
    } else if (p[0] == 0xde || p[0] == 0xdf) {
        int w = p[0] == 0xde ? 2 : 4;

        if (len < (size_t)w + 1)
            return 0;
        n = be(p + 1, w);
        off = 1 + (size_t)w;
    } else {
        return -EPROTO;
    }
    /* Each pair takes at least two bytes: a count beyond that is a lie, not a wait. */
    if (n > 64)
        return -EPROTO;
    for (size_t i = 0; i < n; i++) {
        int r = strbin(p, len, &off, &klen);
        bool is_ack;

        if (r < 0)
            return -EPROTO; /* keys are strings */
        if (r == 0 || len - off < klen)
            return 0;
        is_ack = klen == 3 && memcmp(p + off, "ack", 3) == 0;
        off += klen;
        if (!is_ack) {
            r = skip_scalar(p, len, &off);
            if (r < 0)
                return -EPROTO;
            if (r == 0)
                return 0;
            continue;
        }
        r = strbin(p, len, &off, &vlen);
        if (r < 0)
            return -EPROTO;
        if (r == 0 || len - off < vlen)
            return 0;
        *idlen = vlen > FWD_FORWARD_ACK_MAX ? FWD_FORWARD_ACK_MAX : vlen;
        memcpy(id, p + off, *idlen);
        id[*idlen] = '\0';
        if (vlen > FWD_FORWARD_ACK_MAX)
            *idlen = vlen; /* too long to be ours: keeps its true length, matches nothing */
        off += vlen;
        found = true;
    }
    if (!found)
        return -EPROTO;
    *consumed = off;
    return 1;
}
