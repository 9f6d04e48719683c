/*
 * fwd_state.h - the streams fwdlogd reads, kept on disk so that a restarted
 * fwdlogd (a crash, `docker plugin disable -f` + enable, an upgrade) opens
 * their FIFOs again: dockerd never sends StartLogging again to a plugin that
 * restarted, and keeps its ends of the FIFOs open.
 *
 * One file per stream under <state-dir>/streams/ (mode 0600: the request
 * holds the container's environment and log-opts), holding the StartLogging
 * body as dockerd sent it. Written to a temporary name and renamed, so a
 * reader never sees half a file. Not fsync'ed: the states matter only while
 * dockerd holds the FIFOs, which a crash of the host ends (the page cache
 * survives a crash of fwdlogd); after a host crash the states left are of
 * FIFOs that are gone, and are forgotten at the next start.
 */
#ifndef FWD_STATE_H
#define FWD_STATE_H

#include <stddef.h>

/* The StartLogging bodies kept, at most (more are refused with -ENOSPC). */
#define FWD_STATE_MAX 100000

/*
 * At start, before anything else uses the state directory: create it (0700,
 * parents 0755), refuse it when its group or others can write it or another
 * user owns it, chmod it 0700 otherwise, and take an exclusive flock on
 * <state_dir>/fwdlogd.lock (our pid is written in it). *lock_fd: the lock,
 * held until it is closed (the process exits). 0, or -errno with a message
 * in err: -EBUSY when another fwdlogd holds the lock (err names its pid),
 * -EPERM for a directory that is not private.
 */
int fwd_state_dir_open(const char *state_dir, int *lock_fd, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* Create <state_dir>/streams (0700). 0 or -errno with a message in err. */
int fwd_state_init(const char *state_dir, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* Keep the StartLogging body for the stream reading file. 0 or -errno. */
int fwd_state_save(const char *state_dir, const char *file, const char *body, size_t len)
    __attribute__((warn_unused_result));
/* Forget file's state (StopLogging, EOF). A state that is not there is fine. */
void fwd_state_forget(const char *state_dir, const char *file);

/*
 * Called for every kept state: body and len as saved (borrowed for the call).
 * Return 0 to go on.
 */
typedef int (*fwd_state_cb)(void *ctx, const char *body, size_t len);
/*
 * Call cb for every kept state; unreadable or oversized files are removed and
 * counted in *bad. Returns the number of states passed to cb.
 */
size_t fwd_state_each(const char *state_dir, fwd_state_cb cb, void *ctx, size_t *bad);

#endif
