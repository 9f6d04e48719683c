/*
 * log.c - the daemon's own log lines.
 *
 * One line is formatted into a stack buffer and written with a single write(2)
 * so lines from one process never interleave. Nothing here allocates, and
 * nothing here goes through the record pipeline (a log line about a failing
 * aggregator must never be queued for that aggregator).
 */
#include "fwd_log.h"
#include "fwd_time.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int fwd_log_level = FWD_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int fwd_log_parse_level(const char *s, int *lvl)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *lvl = i;
            return 0;
        }
    }
    if (strcmp(s, "warning") == 0) {
        *lvl = FWD_LOG_WARN;
        return 0;
    }
    return -EINVAL;
}

void fwd_log_emit(int lvl, const char *module, const char *cid, const char *fmt, ...)
{
    char line[2048];
    int64_t now = fwd_time_real_ns();
    time_t secs = (time_t)(now / 1000000000);
    struct tm tm;
    size_t off;
    int n;
    va_list ap;

    gmtime_r(&secs, &tm);
    off = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    n = snprintf(line + off, sizeof(line) - off, ".%03dZ %s %s", (int)((now / 1000000) % 1000),
                 level_names[lvl < 0   ? 0
                             : lvl > 3 ? 3
                                       : lvl],
                 module);
    off += (size_t)n;
    if (cid != NULL)
        n = snprintf(line + off, sizeof(line) - off, "[%.12s] ", cid);
    else
        n = snprintf(line + off, sizeof(line) - off, " ");
    off += (size_t)n;
    va_start(ap, fmt);
    n = vsnprintf(line + off, sizeof(line) - off, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    off += (size_t)n;
    if (off > sizeof(line) - 2)
        off = sizeof(line) - 2;
    line[off++] = '\n';
    while (write(STDERR_FILENO, line, off) == -1 && errno == EINTR)
        ;
}

int fwd_log_rl_allow(struct fwd_log_rl *rl, unsigned long *suppressed_out)
{
    uint64_t now = fwd_time_mono_ns();

    if (now < rl->next_ns) {
        rl->suppressed++;
        return 0;
    }
    *suppressed_out = rl->suppressed;
    rl->suppressed = 0;
    rl->next_ns = now + FWD_MS_TO_NS(FWD_LOG_RL_MS);
    return 1;
}

const char *fwd_log_escape(char *out, size_t n, const char *in)
{
    size_t o = 0;

    if (n == 0)
        return out;
    for (const unsigned char *p = (const unsigned char *)in; *p != '\0'; p++) {
        bool ctl = *p < 0x20 || *p == 0x7f || *p == '\\';

        if (o + (ctl ? 4 : 1) >= n)
            break;
        if (ctl)
            o += (size_t)snprintf(out + o, n - o, *p == '\\' ? "\\\\" : "\\x%02x", *p);
        else
            out[o++] = (char)*p;
    }
    out[o] = '\0';
    return out;
}
