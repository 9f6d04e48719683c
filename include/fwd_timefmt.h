/*
 * fwd_timefmt.h - the event time from a field of the line (time-key,
 * time-format). Pure: text in, nanoseconds since the Unix epoch out.
 *
 *   rfc3339  2026-11-24T10:00:00.123456789Z, 'T', 't' or ' ' between date and
 *            time, up to 9 fraction digits, Z or +hh:mm / +hhmm (none: UTC)
 *   unix     seconds, with an optional fraction (1700000000.25)
 *   unix_ms, unix_us, unix_ns   whole milli/micro/nanoseconds (a fraction of
 *            the unit is allowed and kept down to the nanosecond)
 *   anything holding '%': a strptime(3) pattern, plus %L / %N for fraction
 *            digits; without %z or %Z the time is UTC.
 * Times before 1970 or past 2262 (int64 nanoseconds) are invalid.
 */
#ifndef FWD_TIMEFMT_H
#define FWD_TIMEFMT_H

#include <stddef.h>
#include <stdint.h>

enum fwd_timefmt_kind {
    FWD_TIMEFMT_RFC3339 = 0,
    FWD_TIMEFMT_UNIX,
    FWD_TIMEFMT_UNIX_MS,
    FWD_TIMEFMT_UNIX_US,
    FWD_TIMEFMT_UNIX_NS,
    FWD_TIMEFMT_STRPTIME,
};

/* Longest strptime pattern, and longest time text parsed. */
#define FWD_TIMEFMT_MAX 128

struct fwd_timefmt {
    enum fwd_timefmt_kind kind;
    char pattern[FWD_TIMEFMT_MAX]; /* FWD_TIMEFMT_STRPTIME */
};

/* Compile a time-format value. 0, or -EINVAL (unknown name, no '%', too long). */
int fwd_timefmt_compile(struct fwd_timefmt *f, const char *spec)
    __attribute__((warn_unused_result));
/* Parse s[0..len) (need not be NUL-terminated). 0 with *ns set, or -EINVAL. */
int fwd_timefmt_parse(const struct fwd_timefmt *f, const char *s, size_t len, int64_t *ns)
    __attribute__((warn_unused_result));

#endif
