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
#include "fwd_log.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
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

/* n bytes from getrandom(2). 0 or -errno. */
static int random_bytes(uint8_t *p, size_t n)
{
    size_t got = 0;

    while (got < n) {
        ssize_t r = getrandom(p + got, n - got, 0);

        if (r == -1) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        got += (size_t)r;
    }
    return 0;
}

int fwd_forward_chunk_id(char id[FWD_FORWARD_CHUNK_LEN + 1])
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint8_t r[18] = {0}; /* 16 random bytes, padded to a multiple of 3 */
    int rc = random_bytes(r, 16);

    if (rc != 0)
        return rc;
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

/*
 * A cursor over untrusted msgpack bytes, for the few small messages an
 * aggregator sends (acks, HELO, PONG). Every read returns 1 when it got a
 * whole item, 0 when more bytes are needed, -1 when the bytes there are not
 * the expected type. Nothing is allocated; lengths are checked against what
 * is there before they are used.
 */
struct rd {
    const uint8_t *p;
    size_t len, off;
};

static uint32_t be(const uint8_t *p, int n)
{
    uint32_t v = 0;

    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* A container header: fixN (mask/tag), 16-bit or 32-bit variant. */
static int rd_container(struct rd *r, uint8_t fixtag, uint8_t t16, uint8_t t32, size_t *n)
{
    uint8_t t;
    int w;

    if (r->off >= r->len)
        return 0;
    t = r->p[r->off];
    if ((t & 0xf0) == fixtag) {
        *n = t & 0x0f;
        r->off++;
        return 1;
    }
    if (t != t16 && t != t32)
        return -1;
    w = t == t16 ? 2 : 4;
    if (r->len - r->off < (size_t)w + 1)
        return 0;
    *n = be(r->p + r->off + 1, w);
    r->off += 1 + (size_t)w;
    return 1;
}

static int rd_array(struct rd *r, size_t *n)
{
    return rd_container(r, 0x90, 0xdc, 0xdd, n);
}

static int rd_map(struct rd *r, size_t *n)
{
    return rd_container(r, 0x80, 0xde, 0xdf, n);
}

/* A str or bin with its whole body: *s points into the input. */
static int rd_strbin(struct rd *r, const uint8_t **s, size_t *n)
{
    uint8_t t;
    int w;

    if (r->off >= r->len)
        return 0;
    t = r->p[r->off];
    if ((t & 0xe0) == 0xa0) {
        *n = t & 0x1f;
        w = 0;
    } else {
        switch (t) {
            case 0xd9:
            case 0xc4:
                w = 1;
                break; /* str8, bin8 */
            case 0xda:
            case 0xc5:
                w = 2;
                break; /* str16, bin16 */
            case 0xdb:
            case 0xc6:
                w = 4;
                break; /* str32, bin32 */
            default:
                return -1;
        }
        if (r->len - r->off < (size_t)w + 1)
            return 0;
        *n = be(r->p + r->off + 1, w);
    }
    if (r->len - r->off - 1 - (size_t)w < *n)
        return 0;
    *s = r->p + r->off + 1 + w;
    r->off += 1 + (size_t)w + *n;
    return 1;
}

static int rd_bool(struct rd *r, bool *b)
{
    if (r->off >= r->len)
        return 0;
    if (r->p[r->off] != 0xc2 && r->p[r->off] != 0xc3)
        return -1;
    *b = r->p[r->off++] == 0xc3;
    return 1;
}

/* Skip one scalar (nil, bool, int, float, str, bin); containers and ext are -1. */
static int rd_skip(struct rd *r)
{
    const uint8_t *s;
    size_t n, extra;
    uint8_t t;

    if (r->off >= r->len)
        return 0;
    t = r->p[r->off];
    if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3) {
        r->off++;
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
            return rd_strbin(r, &s, &n);
    }
    if (r->len - r->off < extra + 1)
        return 0;
    r->off += extra + 1;
    return 1;
}

/*
 * Skip one whole object of any type, containers included. One counter of the
 * objects still to skip replaces a stack: a container adds its children. A
 * header claiming billions of children only runs out of bytes (0); nothing is
 * allocated for it.
 */
static int rd_skip_any(struct rd *r)
{
    uint64_t todo = 1;

    while (todo > 0) {
        size_t n, w;
        uint8_t t;
        int rc;

        if (r->off >= r->len)
            return 0;
        t = r->p[r->off];
        todo--;
        if ((t & 0xf0) == 0x90 || t == 0xdc || t == 0xdd || (t & 0xf0) == 0x80 || t == 0xde ||
            t == 0xdf) {
            bool map = (t & 0xf0) == 0x80 || t == 0xde || t == 0xdf;

            rc = map ? rd_map(r, &n) : rd_array(r, &n);
            if (rc <= 0)
                return rc;
            todo += map ? 2 * (uint64_t)n : n;
            continue;
        }
        if (t >= 0xd4 && t <= 0xd8) { /* fixext 1, 2, 4, 8, 16: type byte, then data */
            w = 2 + ((size_t)1 << (t - 0xd4));
        } else if (t >= 0xc7 && t <= 0xc9) { /* ext 8, 16, 32: length, type, data */
            size_t lw = (size_t)1 << (t - 0xc7);

            if (r->len - r->off < 1 + lw)
                return 0;
            w = 1 + lw + 1 + be(r->p + r->off + 1, (int)lw);
        } else if (t == 0xc1) {
            return -1; /* never used */
        } else {
            rc = rd_skip(r);
            if (rc <= 0)
                return rc;
            continue;
        }
        if (r->len - r->off < w)
            return 0;
        r->off += w;
    }
    return 1;
}

uint32_t fwd_forward_whole_entries(const uint8_t *p, size_t len, size_t *used)
{
    struct rd r = {.p = p, .len = len};
    uint32_t count = 0;

    *used = 0;
    while (count < UINT32_MAX && r.off < len) {
        size_t n;

        if (rd_array(&r, &n) != 1 || n != 2 || rd_skip_any(&r) != 1 || rd_skip_any(&r) != 1)
            break;
        *used = r.off;
        count++;
    }
    return count;
}

static bool is(const uint8_t *s, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(s, lit, n) == 0;
}

/* The start of a handshake message ["NAME", ...] with exactly n elements. */
static int rd_message(struct rd *r, const char *name, size_t n)
{
    const uint8_t *s;
    size_t got, len;
    int rc = rd_array(r, &got);

    if (rc <= 0)
        return rc;
    if (got != n)
        return -1;
    rc = rd_strbin(r, &s, &len);
    if (rc <= 0)
        return rc;
    return is(s, len, name) ? 1 : -1;
}

/* Turn a reader result into the parse functions' return convention. */
#define RD(call)                                                                                   \
    do {                                                                                           \
        int rd_r_ = (call);                                                                        \
        if (rd_r_ <= 0)                                                                            \
            return rd_r_ < 0 ? -EPROTO : 0;                                                        \
    } while (0)

int fwd_forward_parse_ack(const uint8_t *p, size_t len, size_t *consumed,
                          char id[FWD_FORWARD_ACK_MAX + 1], size_t *idlen)
{
    struct rd r = {p, len, 0};
    const uint8_t *k, *v;
    size_t n, klen, vlen;
    bool found = false;

    *consumed = 0;
    *idlen = 0;
    id[0] = '\0';
    RD(rd_map(&r, &n));
    /* Each pair takes at least two bytes: a count beyond that is a lie, not a wait. */
    if (n > 64)
        return -EPROTO;
    for (size_t i = 0; i < n; i++) {
        RD(rd_strbin(&r, &k, &klen)); /* keys are strings */
        if (!is(k, klen, "ack")) {
            RD(rd_skip(&r));
            continue;
        }
        RD(rd_strbin(&r, &v, &vlen));
        *idlen = vlen > FWD_FORWARD_ACK_MAX ? FWD_FORWARD_ACK_MAX : vlen;
        memcpy(id, v, *idlen);
        id[*idlen] = '\0';
        if (vlen > FWD_FORWARD_ACK_MAX)
            *idlen = vlen; /* too long to be ours: keeps its true length, matches nothing */
        found = true;
    }
    if (!found)
        return -EPROTO;
    *consumed = r.off;
    return 1;
}

/* Copy a str/bin into a bounded field; too long is a protocol error. */
static int field(struct rd *r, uint8_t *out, size_t cap, size_t *outlen)
{
    const uint8_t *s;
    size_t n;
    int rc = rd_strbin(r, &s, &n);

    if (rc <= 0)
        return rc;
    if (n > cap)
        return -1;
    memcpy(out, s, n);
    *outlen = n;
    return 1;
}

int fwd_forward_parse_helo(const uint8_t *p, size_t len, size_t *used, struct fwd_helo *h)
{
    struct rd r = {p, len, 0};
    const uint8_t *s;
    size_t m, klen;

    memset(h, 0, sizeof(*h));
    h->keepalive = true;
    *used = 0;
    RD(rd_message(&r, "HELO", 2));
    RD(rd_map(&r, &m));
    if (m > 16)
        return -EPROTO;
    for (size_t i = 0; i < m; i++) {
        RD(rd_strbin(&r, &s, &klen));
        if (is(s, klen, "nonce"))
            RD(field(&r, h->nonce, sizeof(h->nonce), &h->nonce_len));
        else if (is(s, klen, "auth"))
            RD(field(&r, h->auth, sizeof(h->auth), &h->auth_len));
        else if (is(s, klen, "keepalive"))
            RD(rd_bool(&r, &h->keepalive));
        else
            RD(rd_skip(&r));
    }
    if (h->nonce_len == 0)
        return -EPROTO;
    *used = r.off;
    return 1;
}

static int str_field(struct rd *r, char *out, size_t cap)
{
    size_t n;
    int rc = field(r, (uint8_t *)out, cap - 1, &n);

    if (rc == 1)
        out[n] = '\0';
    return rc;
}

int fwd_forward_parse_pong(const uint8_t *p, size_t len, size_t *used, struct fwd_pong *pong)
{
    struct rd r = {p, len, 0};
    const uint8_t *s;
    size_t m;

    memset(pong, 0, sizeof(*pong));
    *used = 0;
    RD(rd_message(&r, "PONG", 5));
    RD(rd_bool(&r, &pong->ok));
    RD(rd_strbin(&r, &s, &m)); /* the reason may be long (Fluent Bit tests that): keep a prefix */
    m = m < FWD_HANDSHAKE_FIELD_MAX ? m : FWD_HANDSHAKE_FIELD_MAX;
    memcpy(pong->reason, s, m);
    pong->reason[m] = '\0';
    RD(str_field(&r, pong->host, sizeof(pong->host)));
    RD(str_field(&r, pong->digest, sizeof(pong->digest)));
    *used = r.off;
    return 1;
}

/* Lowercase hex SHA-512 of the concatenated parts. */
static int sha512_hex(char out[129], const void *const *parts, const size_t *lens, int n)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[64];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha512(), NULL) == 1;

    for (int i = 0; ok && i < n; i++)
        ok = EVP_DigestUpdate(ctx, parts[i], lens[i]) == 1;
    ok = ok && EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 64;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return -EIO;
    for (int i = 0; i < 64; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[128] = '\0';
    return 0;
}

static int key_digest(char out[129], const char *salt, const char *host, const struct fwd_helo *h,
                      const char *key)
{
    const void *parts[] = {salt, host, h->nonce, key};
    size_t lens[] = {strlen(salt), strlen(host), h->nonce_len, strlen(key)};

    return sha512_hex(out, parts, lens, 4);
}

size_t fwd_forward_ping(uint8_t *out, size_t cap, const struct fwd_helo *h, const char *hostname,
                        const char *salt, const char *shared_key, const char *username,
                        const char *password)
{
    struct fixed f = {out, cap, 0, 0};
    msgpack_packer pk;
    char digest[129], pwd[129] = "";

    if (key_digest(digest, salt, hostname, h, shared_key) != 0)
        return 0;
    if (h->auth_len > 0) {
        const void *parts[] = {h->auth, username, password};
        size_t lens[] = {h->auth_len, strlen(username), strlen(password)};

        if (sha512_hex(pwd, parts, lens, 3) != 0)
            return 0;
    } else {
        username = "";
    }
    msgpack_packer_init(&pk, &f, fixed_write);
    msgpack_pack_array(&pk, 6);
    msgpack_pack_str_with_body(&pk, "PING", 4);
    msgpack_pack_str_with_body(&pk, hostname, strlen(hostname));
    msgpack_pack_str_with_body(&pk, salt, strlen(salt));
    msgpack_pack_str_with_body(&pk, digest, 128);
    msgpack_pack_str_with_body(&pk, username, strlen(username));
    msgpack_pack_str_with_body(&pk, pwd, strlen(pwd));
    return f.overflow ? 0 : f.len;
}

int fwd_forward_check_pong(const struct fwd_pong *pong, const struct fwd_helo *h,
                           const char *self_hostname, const char *salt, const char *shared_key,
                           char *why, size_t whylen)
{
    char want[129], reason[4 * FWD_HANDSHAKE_FIELD_MAX + 1];

    if (!pong->ok) {
        snprintf(why, whylen, "the aggregator refused us: %s",
                 pong->reason[0] ? fwd_log_escape(reason, sizeof(reason), pong->reason)
                                 : "(no reason given)");
        return -EACCES;
    }
    if (strcmp(pong->host, self_hostname) == 0) {
        snprintf(why, whylen,
                 "the aggregator's hostname is our own (%s): set fluentd-self-hostname to "
                 "something else",
                 self_hostname);
        return -EACCES;
    }
    /* constant time: how much of a guessed digest matched must not show in the timing */
    if (key_digest(want, salt, pong->host, h, shared_key) != 0 ||
        strlen(pong->digest) != strlen(want) ||
        CRYPTO_memcmp(want, pong->digest, strlen(want)) != 0) {
        snprintf(why, whylen, "the aggregator's PONG digest is wrong (shared key mismatch)");
        return -EACCES;
    }
    return 0;
}

int fwd_forward_salt(char out[33])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t r[16];
    int rc = random_bytes(r, sizeof(r));

    if (rc != 0)
        return rc;
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[r[i] >> 4];
        out[2 * i + 1] = hex[r[i] & 15];
    }
    out[32] = '\0';
    return 0;
}
