/*
 * timefmt.c - time-format parsers (see fwd_timefmt.h).
 *
 * rfc3339 and the unix forms are parsed by hand (digits and a few separators),
 * the civil date converted with Howard Hinnant's days_from_civil, so no libc
 * time zone state is touched. strptime patterns use glibc strptime(3) on a
 * NUL-terminated copy; the %L / %N extension is handled between its calls.
 * Every value must be consumed whole: trailing text makes it invalid.
 */
#include "fwd_timefmt.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#define NS_PER_S  1000000000ll
#define MAX_EPOCH 9223372035ll /* seconds: the last whole second int64 ns can hold */

int fwd_timefmt_compile(struct fwd_timefmt *f, const char *spec)
{
    static const char *const names[] = {"rfc3339", "unix", "unix_ms", "unix_us", "unix_ns"};

    memset(f, 0, sizeof(*f));
    for (int i = 0; i < 5; i++) {
        if (strcmp(spec, names[i]) == 0) {
            f->kind = (enum fwd_timefmt_kind)i;
            return 0;
        }
    }
    if (strchr(spec, '%') == NULL || strlen(spec) >= sizeof(f->pattern))
        return -EINVAL;
    f->kind = FWD_TIMEFMT_STRPTIME;
    strcpy(f->pattern, spec);
    return 0;
}

/* n decimal digits at *p into *v; false if fewer. */
static bool digits(const char **p, const char *end, int n, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++, (*p)++) {
        if (*p >= end || !isdigit((unsigned char)**p))
            return false;
        *v = *v * 10 + (**p - '0');
    }
    return true;
}

/* Up to 9 fraction digits (more are read and dropped) as nanoseconds. */
static int64_t fraction(const char **p, const char *end)
{
    int64_t ns = 0;
    int n = 0;

    for (; *p < end && isdigit((unsigned char)**p); (*p)++, n++)
        if (n < 9)
            ns = ns * 10 + (**p - '0');
    for (; n < 9; n++)
        ns *= 10;
    return ns;
}

static int64_t days_from_civil(int64_t y, int m, int d)
{
    int64_t era;
    int yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (int)(y - era * 400);
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static bool leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int to_ns(int64_t secs, int64_t frac, int64_t *ns)
{
    if (secs < 0 || secs > MAX_EPOCH)
        return -EINVAL;
    *ns = secs * NS_PER_S + frac;
    return 0;
}

/* Z, +hh:mm, +hhmm or nothing; the offset east of UTC in seconds. */
static int zone(const char **p, const char *end, int64_t *off)
{
    int sign, hh, mm;

    *off = 0;
    if (*p == end)
        return 0;
    if (**p == 'Z' || **p == 'z') {
        (*p)++;
        return 0;
    }
    if (**p != '+' && **p != '-')
        return -EINVAL;
    sign = **p == '-' ? -1 : 1;
    (*p)++;
    if (!digits(p, end, 2, &hh))
        return -EINVAL;
    if (*p < end && **p == ':')
        (*p)++;
    if (!digits(p, end, 2, &mm) || hh > 23 || mm > 59)
        return -EINVAL;
    *off = sign * (hh * 3600 + mm * 60);
    return 0;
}

static int rfc3339(const char *s, size_t len, int64_t *ns)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const char *p = s, *end = s + len;
    int y, mo, d, h, mi, sec;
    int64_t frac = 0, off;

    if (!digits(&p, end, 4, &y) || p >= end || *p++ != '-' || !digits(&p, end, 2, &mo) ||
        p >= end || *p++ != '-' || !digits(&p, end, 2, &d))
        return -EINVAL;
    if (p >= end || (*p != 'T' && *p != 't' && *p != ' '))
        return -EINVAL;
    p++;
    if (!digits(&p, end, 2, &h) || p >= end || *p++ != ':' || !digits(&p, end, 2, &mi) ||
        p >= end || *p++ != ':' || !digits(&p, end, 2, &sec))
        return -EINVAL;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && leap(y)) || h > 23 ||
        mi > 59 || sec > 60)
        return -EINVAL;
    if (p < end && *p == '.') {
        p++;
        if (p >= end || !isdigit((unsigned char)*p))
            return -EINVAL;
        frac = fraction(&p, end);
    }
    if (zone(&p, end, &off) != 0 || p != end)
        return -EINVAL;
    return to_ns(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off, frac, ns);
}

/* Whole units with an optional fraction of a unit; unit_ns: 1e9, 1e6, 1e3 or 1. */
static int unix_units(const char *s, size_t len, int64_t unit_ns, int64_t *ns)
{
    const char *p = s, *end = s + len;
    int64_t whole = 0, frac = 0;
    bool any = false;

    for (; p < end && isdigit((unsigned char)*p); p++, any = true) {
        if (whole > (INT64_MAX - 9) / 10)
            return -EINVAL;
        whole = whole * 10 + (*p - '0');
    }
    if (!any)
        return -EINVAL;
    if (p < end && *p == '.') {
        p++;
        frac = fraction(&p, end) * unit_ns / NS_PER_S; /* < unit_ns: no overflow */
    }
    if (p != end || whole > INT64_MAX / unit_ns)
        return -EINVAL;
    return to_ns(whole * unit_ns / NS_PER_S, whole * unit_ns % NS_PER_S + frac, ns);
}

/*
 * strptime over the pattern, piece by piece: each %L or %N reads fraction
 * digits itself. struct tm accumulates across the pieces.
 */
static int with_strptime(const char *pattern, const char *s, size_t len, int64_t *ns)
{
    char text[FWD_TIMEFMT_MAX], piece[FWD_TIMEFMT_MAX];
    const char *p = text, *pat = pattern;
    struct tm tm;
    int64_t frac = 0, off;
    time_t secs;

    if (len >= sizeof(text) || memchr(s, '\0', len) != NULL)
        return -EINVAL;
    memcpy(text, s, len);
    text[len] = '\0';
    memset(&tm, 0, sizeof(tm));
    tm.tm_mday = 1;
    while (*pat != '\0') {
        const char *f = strstr(pat, "%L"), *n = strstr(pat, "%N");
        const char *cut = f == NULL || (n != NULL && n < f) ? n : f;
        size_t plen = cut ? (size_t)(cut - pat) : strlen(pat);

        memcpy(piece, pat, plen);
        piece[plen] = '\0';
        if (plen > 0 && (p = strptime(p, piece, &tm)) == NULL)
            return -EINVAL;
        if (cut == NULL)
            break;
        if (!isdigit((unsigned char)*p))
            return -EINVAL;
        frac = fraction(&p, text + len);
        pat = cut + 2;
    }
    if (*p != '\0')
        return -EINVAL;
    off = tm.tm_gmtoff; /* set by %z; timegm() resets it */
    secs = timegm(&tm);
    if (secs == (time_t)-1)
        return -EINVAL;
    return to_ns((int64_t)secs - off, frac, ns);
}

int fwd_timefmt_parse(const struct fwd_timefmt *f, const char *s, size_t len, int64_t *ns)
{
    switch (f->kind) {
        case FWD_TIMEFMT_RFC3339:
            return rfc3339(s, len, ns);
        case FWD_TIMEFMT_UNIX:
            return unix_units(s, len, NS_PER_S, ns);
        case FWD_TIMEFMT_UNIX_MS:
            return unix_units(s, len, 1000000, ns);
        case FWD_TIMEFMT_UNIX_US:
            return unix_units(s, len, 1000, ns);
        case FWD_TIMEFMT_UNIX_NS:
            return unix_units(s, len, 1, ns);
        default:
            return with_strptime(f->pattern, s, len, ns);
    }
}
