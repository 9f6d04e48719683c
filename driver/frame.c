/*
 * frame.c - length-prefixed frame splitting.
 *
 * Does not read, allocate or keep state: the FIFO shell (container.c) owns the
 * bytes and carries the incomplete tail from one read to the next. A length of
 * zero is a valid (empty) LogEntry and is passed on like any other frame.
 */
#include "fwd_frame.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

int fwd_frame_split(const uint8_t *p, size_t len, size_t max, fwd_frame_cb cb, void *ctx,
                    size_t *consumed)
{
    size_t off = 0;
    int rc = 0;

    *consumed = 0;
    while (len - off >= 4) {
        uint32_t n = fwd_frame_get_len(p + off);

        if (n > max) {
            rc = -EMSGSIZE;
            break;
        }
        if (len - off - 4 < n)
            break;
        rc = cb(ctx, p + off + 4, n);
        off += 4 + (size_t)n;
        if (rc != 0)
            break;
    }
    *consumed = off;
    return rc;
}

uint32_t fwd_frame_get_len(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void fwd_frame_put_len(uint8_t out[4], uint32_t len)
{
    out[0] = (uint8_t)(len >> 24);
    out[1] = (uint8_t)(len >> 16);
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
}

/* At p: a length prefix (8..max) and the source field opening a LogEntry: 0a 06 std{out,err}. */
static bool looks_like_start(const uint8_t *p, size_t max)
{
    uint32_t n = fwd_frame_get_len(p);

    return n >= FWD_FRAME_MIN_LEN && n <= max && p[4] == 0x0a && p[5] == 6 &&
           (memcmp(p + 6, "stdout", 6) == 0 || memcmp(p + 6, "stderr", 6) == 0);
}

int fwd_frame_find_start(const uint8_t *p, size_t len, size_t max, size_t *off)
{
    for (size_t o = 0; o + FWD_FRAME_SIG_LEN <= len; o++) {
        if (looks_like_start(p + o, max)) {
            *off = o;
            return 1;
        }
    }
    /* a start may still begin in the last bytes: keep them for the next call */
    *off = len >= FWD_FRAME_SIG_LEN ? len - (FWD_FRAME_SIG_LEN - 1) : 0;
    return 0;
}
