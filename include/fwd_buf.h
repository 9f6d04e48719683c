/*
 * fwd_buf.h - bounded growable byte buffer (the curl dynbuf rule: every buffer
 * gets its maximum at init, and growing past it fails with -EMSGSIZE).
 *
 * Fields are read-only outside this module. A released buffer is all zero and
 * may be initialised again.
 */
#ifndef FWD_BUF_H
#define FWD_BUF_H

#include <stddef.h>
#include <stdint.h>

struct fwd_buf {
    uint8_t *data; /* NULL until the first byte is stored */
    size_t len;    /* bytes in use */
    size_t cap;    /* bytes allocated */
    size_t max;    /* hard cap on len */
};

/* Prepare an empty buffer that may hold at most max bytes. Allocates nothing. */
void fwd_buf_init(struct fwd_buf *b, size_t max);
/* Free the storage; the buffer is empty with the same max afterwards. NULL is fine. */
void fwd_buf_release(struct fwd_buf *b);
/* Make room for extra more bytes. 0, -EMSGSIZE past max, -ENOMEM. */
int fwd_buf_reserve(struct fwd_buf *b, size_t extra) __attribute__((warn_unused_result));
/* Append n bytes. 0, -EMSGSIZE past max (nothing appended), -ENOMEM. */
int fwd_buf_append(struct fwd_buf *b, const void *p, size_t n) __attribute__((warn_unused_result));
/* Drop the first n bytes (n <= len), keeping the rest in order. */
void fwd_buf_consume(struct fwd_buf *b, size_t n);
/*
 * Count n more bytes as used: bytes the caller wrote itself (read(2), pread)
 * into the room fwd_buf_reserve made after data + len.
 */
static inline void fwd_buf_added(struct fwd_buf *b, size_t n)
{
    b->len += n;
}
/* Forget the contents, keep the allocation. */
static inline void fwd_buf_reset(struct fwd_buf *b)
{
    b->len = 0;
}

/*
 * msgpack_packer write callback for a buffer that was fwd_buf_reserve()d for
 * everything about to be packed: it copies without checking, so the caller
 * must reserve first (record.c computes an exact upper bound per entry).
 */
int fwd_buf_msgpack_write_reserved(void *data, const char *p, size_t n);
/* msgpack_packer write callback that grows the buffer (returns -1 past max). */
int fwd_buf_msgpack_write(void *data, const char *p, size_t n);

#endif
