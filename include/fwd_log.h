/*
 * fwd_log.h - the daemon's own log lines, on stderr (dockerd relays a managed
 * plugin's stderr into its own log at error level, with a plugin=<id> field).
 *
 * Format: "2026-11-24T16:32:45.123Z warn output[3f2a9c1b7d20] message".
 * The level is checked before anything is formatted. fwd_log_rl() adds a
 * per-call-site rate limit for failures that can repeat (one line per
 * FWD_LOG_RL_MS, then a count of what was suppressed).
 * Never pass ContainerEnv values, log-opt values that may hold secrets, or
 * record contents to these functions.
 * Each .c file defines FWD_LOG_MODULE before including this header.
 */
#ifndef FWD_LOG_H
#define FWD_LOG_H

#include <stddef.h>
#include <stdint.h>

enum fwd_log_level {
    FWD_LOG_ERROR = 0,
    FWD_LOG_WARN = 1,
    FWD_LOG_INFO = 2,
    FWD_LOG_DEBUG = 3,
};

#define FWD_LOG_RL_MS 10000u

extern int fwd_log_level;

/* Per-call-site rate-limit state (zero-initialised static). */
struct fwd_log_rl {
    uint64_t next_ns;
    unsigned long suppressed;
};

/* Parse "error|warn|info|debug" into *lvl. 0, or -EINVAL. */
int fwd_log_parse_level(const char *s, int *lvl) __attribute__((warn_unused_result));
/*
 * Text a peer sent (a PONG reason, a hostname), made safe for a log line: control
 * characters and DEL become \xNN, so nothing a peer says can forge or garble lines.
 * Always NUL-terminated; cut short to fit n. Returns out.
 */
const char *fwd_log_escape(char *out, size_t n, const char *in);
/* Format and write one line. cid (may be NULL) is shortened to 12 chars. */
void fwd_log_emit(int lvl, const char *module, const char *cid, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* 1 if this call site may log now; otherwise counts the suppressed line. */
int fwd_log_rl_allow(struct fwd_log_rl *rl, unsigned long *suppressed_out);

#define fwd_log(lvl, ...)                                                                          \
    do {                                                                                           \
        if ((lvl) <= fwd_log_level)                                                                \
            fwd_log_emit((lvl), FWD_LOG_MODULE, NULL, __VA_ARGS__);                                \
    } while (0)

/* Same, tagged with a container id. */
#define fwd_log_c(lvl, cid, ...)                                                                   \
    do {                                                                                           \
        if ((lvl) <= fwd_log_level)                                                                \
            fwd_log_emit((lvl), FWD_LOG_MODULE, (cid), __VA_ARGS__);                               \
    } while (0)

/* Rate-limited per call site; the next allowed line reports how many were suppressed. */
#define fwd_log_rl(lvl, cid, fmt, ...)                                                             \
    do {                                                                                           \
        static struct fwd_log_rl rl_;                                                              \
        unsigned long sup_;                                                                        \
        if ((lvl) <= fwd_log_level && fwd_log_rl_allow(&rl_, &sup_)) {                             \
            if (sup_)                                                                              \
                fwd_log_emit((lvl), FWD_LOG_MODULE, (cid), fmt " (%lu similar suppressed)",        \
                             __VA_ARGS__, sup_);                                                   \
            else                                                                                   \
                fwd_log_emit((lvl), FWD_LOG_MODULE, (cid), fmt, __VA_ARGS__);                      \
        }                                                                                          \
    } while (0)

#endif
