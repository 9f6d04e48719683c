/*
 * rate.c - the token bucket of rate-limit (see fwd_rate.h).
 */
#include "fwd_rate.h"

void fwd_rate_init(struct fwd_rate *r, uint64_t rate, uint64_t burst, bool block, uint64_t now)
{
    *r =
        (struct fwd_rate){.rate = rate, .burst = burst ? burst : rate, .block = block, .last = now};
    r->tokens = (double)r->burst;
}

static void fill(struct fwd_rate *r, uint64_t now)
{
    if (now <= r->last)
        return;
    r->tokens += (double)(now - r->last) * (double)r->rate / 1e9;
    if (r->tokens > (double)r->burst)
        r->tokens = (double)r->burst;
    r->last = now;
}

bool fwd_rate_take(struct fwd_rate *r, size_t n, uint64_t now)
{
    double need = (double)(n < r->burst ? n : r->burst);

    if (r->rate == 0)
        return true;
    fill(r, now);
    if (!r->block && r->tokens < need)
        return false;
    r->tokens -= (double)n;
    return true;
}

uint64_t fwd_rate_wait_ns(struct fwd_rate *r, uint64_t now)
{
    if (r->rate == 0 || !r->block)
        return 0;
    fill(r, now);
    return r->tokens >= 0 ? 0 : (uint64_t)(-r->tokens * 1e9 / (double)r->rate) + 1;
}
