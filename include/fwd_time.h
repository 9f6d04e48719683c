/*
 * fwd_time.h - clocks. Monotonic time drives timers and back-off; wall-clock
 * time is used only for the daemon's own log lines.
 */
#ifndef FWD_TIME_H
#define FWD_TIME_H

#include <stdint.h>

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t fwd_time_mono_ns(void);
/* CLOCK_REALTIME in nanoseconds since the Unix epoch. */
int64_t fwd_time_real_ns(void);

#define FWD_MS_TO_NS(ms) ((uint64_t)(ms)*1000000ull)

#endif
