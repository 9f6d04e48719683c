/*
 * time.c - clock helpers. clock_gettime() cannot fail with these clock ids on
 * Linux, so there is no error path.
 */
#include "fwd_time.h"

#include <time.h>

uint64_t fwd_time_mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int64_t fwd_time_real_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}
