/*
 * fwd_rate.h - a container's rate-limit: a token bucket of bytes.
 *
 * The bucket holds up to burst bytes and fills at rate bytes per second; it
 * starts full. A line takes its length: it goes when the bucket holds that
 * much (a line longer than the bucket: when the bucket is full, which it then
 * overdraws); otherwise it is dropped. With block (overflow-policy=block)
 * nothing is dropped: every line takes its length, the bucket may go below
 * zero, and the reader waits (fwd_rate_wait_ns) until it is back at zero, so
 * only that container is held back. Pure: the caller passes the time.
 */
#ifndef FWD_RATE_H
#define FWD_RATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Transparent, embedded by the caller; fields read-only outside rate.c. */
struct fwd_rate {
    uint64_t rate;  /* bytes per second; 0: no limit */
    uint64_t burst; /* the bucket's size */
    bool block;     /* hold back instead of dropping */
    double tokens;  /* bytes in the bucket; below zero only with block */
    uint64_t last;  /* monotonic ns of the last fill */
};

/* rate 0: off (everything goes). burst 0: rate (one second's worth). now: monotonic ns. */
void fwd_rate_init(struct fwd_rate *r, uint64_t rate, uint64_t burst, bool block, uint64_t now);
/* A line of n bytes at now: true if it goes (taken from the bucket), false to drop it. */
bool fwd_rate_take(struct fwd_rate *r, size_t n, uint64_t now);
/* With block: nanoseconds until the bucket is back at zero (0: read on). Otherwise 0. */
uint64_t fwd_rate_wait_ns(struct fwd_rate *r, uint64_t now);

#endif
