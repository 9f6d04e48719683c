/*
 * fwd_forward.h - Fluentd Forward protocol v1 encoding (msgpack-c).
 *
 * Entries are [time, record]; time is EventTime (ext type 0, fixext8:
 * big-endian uint32 seconds then uint32 nanoseconds) or integer seconds.
 * Batches go out in PackedForward mode: [tag, bin(entries...), {"size": N}].
 * Everything writes through a msgpack_packer or into caller memory: no fds.
 */
#ifndef FWD_FORWARD_H
#define FWD_FORWARD_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Most bytes fwd_forward_pack_entry_start writes. */
#define FWD_FORWARD_ENTRY_START_MAX 11
/* Most bytes of a PackedForward header besides the tag itself. */
#define FWD_FORWARD_HEADER_OVERHEAD 16
/* Most bytes of an options map (size + a 24-char chunk id). */
#define FWD_FORWARD_OPTIONS_MAX 96

/* Pack the array header of an entry and its time; the caller packs the record next. */
void fwd_forward_pack_entry_start(msgpack_packer *pk, int64_t time_nano, bool subsecond);

/*
 * Write [tag, bin-header(entries_len) into out (cap bytes); the entries follow
 * on the wire, then the options. Returns bytes written, 0 if cap is too small.
 */
size_t fwd_forward_packed_header(uint8_t *out, size_t cap, const char *tag, size_t tag_len,
                                 size_t entries_len);
/*
 * Write the options map {"size": count}, plus "chunk" when chunk != NULL and
 * "compressed": "gzip" when gzip is set. Same return.
 */
size_t fwd_forward_packed_options(uint8_t *out, size_t cap, uint32_t count, const char *chunk,
                                  bool gzip);

/*
 * Compress in[0..len) into one gzip member (RFC 1952) in *out, which is
 * emptied first and grown as needed: the entries of a CompressedPackedForward
 * message. 0, -ENOMEM, or -EIO if zlib fails.
 */
struct fwd_buf;
int fwd_forward_gzip(const uint8_t *in, size_t len, int level, struct fwd_buf *out)
    __attribute__((warn_unused_result));

/* Chunk ids: base64 of 16 random bytes (24 characters) plus a NUL. */
#define FWD_FORWARD_CHUNK_LEN 24
/* Fill id[FWD_FORWARD_CHUNK_LEN + 1] from 16 random bytes. 0, or -errno from getrandom. */
int fwd_forward_chunk_id(char id[FWD_FORWARD_CHUNK_LEN + 1]) __attribute__((warn_unused_result));

/* The longest ack value kept; a longer one cannot match any chunk id we send. */
#define FWD_FORWARD_ACK_MAX 64

/*
 * Parse one aggregator response from p[0..len): a msgpack map whose "ack" key
 * holds a str (Fluentd, Fluent Bit) or bin; other keys with scalar values are
 * skipped. Returns 1 with *consumed bytes used and the ack value in id (NUL-
 * terminated, *idlen bytes; truncated to FWD_FORWARD_ACK_MAX, which then
 * matches nothing), 0 when more bytes are needed, or -EPROTO for anything
 * else (not a map, no "ack", nested containers, a size beyond len's reach).
 * Pure and allocation-free: sizes come from untrusted bytes.
 */
int fwd_forward_parse_ack(const uint8_t *p, size_t len, size_t *consumed,
                          char id[FWD_FORWARD_ACK_MAX + 1], size_t *idlen)
    __attribute__((warn_unused_result));

/* ---- shared-key handshake (spec v1: HELO, PING, PONG) ------------------------------ */

#define FWD_HANDSHAKE_FIELD_MAX 255  /* nonce, auth salt, hostnames, reasons kept */
#define FWD_HANDSHAKE_MSG_MAX   4096 /* a HELO or PONG longer than this is refused */

struct fwd_helo {
    uint8_t nonce[FWD_HANDSHAKE_FIELD_MAX];
    size_t nonce_len;
    uint8_t auth[FWD_HANDSHAKE_FIELD_MAX]; /* user-auth salt; empty: no user auth */
    size_t auth_len;
    bool keepalive;
};

struct fwd_pong {
    bool ok;
    char reason[FWD_HANDSHAKE_FIELD_MAX + 1];
    char host[FWD_HANDSHAKE_FIELD_MAX + 1];
    char digest[129];
};

/*
 * Parse ["HELO", {"nonce": str|bin, "auth": str|bin, "keepalive": bool}] (Fluentd
 * sends bin, Fluent Bit str and no keepalive, which means true). 1 with *used,
 * 0 for more bytes, -EPROTO otherwise.
 */
int fwd_forward_parse_helo(const uint8_t *p, size_t len, size_t *used, struct fwd_helo *h)
    __attribute__((warn_unused_result));
/* Parse ["PONG", bool, reason, server_hostname, digest]. Same returns. */
int fwd_forward_parse_pong(const uint8_t *p, size_t len, size_t *used, struct fwd_pong *pong)
    __attribute__((warn_unused_result));

/*
 * Write the PING for h into out (cap bytes): every element a str, digests in
 * lowercase hex (Fluent Bit refuses bin): ["PING", hostname, salt,
 * sha512_hex(salt+hostname+nonce+key), username, sha512_hex(auth+username+password)]
 * (the last two "" when h has no auth salt). Returns bytes written, 0 if cap is short.
 */
size_t fwd_forward_ping(uint8_t *out, size_t cap, const struct fwd_helo *h, const char *hostname,
                        const char *salt, const char *shared_key, const char *username,
                        const char *password);
/*
 * Check a PONG against what we sent: auth_result true, a server hostname that
 * is not our own (Fluentd out_forward's check), and the server's digest
 * sha512_hex(salt+server_hostname+nonce+key). 0, or -EACCES with why.
 */
int fwd_forward_check_pong(const struct fwd_pong *pong, const struct fwd_helo *h,
                           const char *self_hostname, const char *salt, const char *shared_key,
                           char *why, size_t whylen) __attribute__((warn_unused_result));
/* 32 lowercase hex characters from 16 random bytes (the PING salt), NUL-terminated. */
int fwd_forward_salt(char out[33]) __attribute__((warn_unused_result));

/*
 * How many whole [time, record] entries p[0..len) starts with (entries of a
 * PackedForward body, back to back), and the bytes they take in *used. Stops
 * at the first one cut short or not an entry. Allocates nothing.
 */
uint32_t fwd_forward_whole_entries(const uint8_t *p, size_t len, size_t *used);

#endif
