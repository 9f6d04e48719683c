/*
 * buf.c - bounded growable byte buffer.
 *
 * Growth doubles the capacity (at least 256 bytes) and never exceeds max, so a
 * buffer's memory is bounded by its max. Invariant: len <= cap, len <= max.
 */
#include "fwd_buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void fwd_buf_init(struct fwd_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void fwd_buf_release(struct fwd_buf *b)
{
    if (b == NULL)
        return;
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

int fwd_buf_reserve(struct fwd_buf *b, size_t extra)
{
    size_t need, ncap;
    uint8_t *p;

    if (extra > b->max - b->len)
        return -EMSGSIZE;
    need = b->len + extra;
    if (need <= b->cap)
        return 0;
    ncap = b->cap ? b->cap : 256;
    while (ncap < need)
        ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
    if (ncap > b->max)
        ncap = b->max;
    p = realloc(b->data, ncap);
    if (p == NULL)
        return -ENOMEM;
    b->data = p;
    b->cap = ncap;
    return 0;
}

int fwd_buf_append(struct fwd_buf *b, const void *p, size_t n)
{
    int rc;

    if (n == 0)
        return 0;
    rc = fwd_buf_reserve(b, n);
    if (rc < 0)
        return rc;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void fwd_buf_consume(struct fwd_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

int fwd_buf_msgpack_write_reserved(void *data, const char *p, size_t n)
{
    struct fwd_buf *b = data;

    if (n == 0)
        return 0;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int fwd_buf_msgpack_write(void *data, const char *p, size_t n)
{
    return fwd_buf_append(data, p, n) == 0 ? 0 : -1;
}
