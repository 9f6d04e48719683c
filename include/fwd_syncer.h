/*
 * fwd_syncer.h - durability syncs off the loop thread.
 *
 * fdatasync and fsync wait for the disk: tens of milliseconds on a busy local
 * disk, seconds or forever on a failing one or a hung network mount. The loop
 * hands such a file to the syncer instead: one thread that syncs it, closes it
 * and, for a file written beside its final name, renames it into place. The
 * loop never waits for it: a handoff takes the mutex only to queue the job,
 * and the thread holds the mutex only to take one, never during a syscall.
 *
 * Jobs run one at a time in the order they were handed over, so two renames
 * onto one path land in that order. At most cap jobs wait: a handoff that
 * finds the queue full does the job at once on the caller's thread without
 * its sync (close; close and rename), counts it as skipped and logs it at info
 * (rate-limited). What is lost then is only durability against a crash of the
 * host (the data is in the page cache, which a crash of fwdlogd keeps). A
 * failed sync is logged by the thread and counted; the close and the rename
 * still happen, as they did when the loop synced.
 *
 * The thread blocks every signal and ends by returning from its function,
 * joined by fwd_syncer_destroy: no pthread_exit or pthread_cancel, whose
 * unwinding dlopens libgcc_s (absent from a minimal plugin rootfs).
 */
#ifndef FWD_SYNCER_H
#define FWD_SYNCER_H

#include <stddef.h>
#include <stdint.h>

struct fwd_syncer;

/* What the syncer did so far. */
struct fwd_syncer_stats {
    uint64_t done;    /* jobs the thread ran */
    uint64_t failed;  /* of those, how many syncs or renames failed (logged) */
    uint64_t skipped; /* jobs done at once without their sync: the queue was full */
    uint64_t pending; /* waiting or running now */
};

/*
 * Start the thread; at most cap jobs (1 or more) wait for it. The caller's
 * signal mask is left as it was. NULL with the reason in err.
 */
struct fwd_syncer *fwd_syncer_create(size_t cap, char *err, size_t errlen);
/*
 * Run what is queued until deadline_ns (fwd_time_mono_ns), then stop. If the
 * thread is still busy at the deadline (a hung disk), the jobs still waiting
 * are done at once without their sync, the one running is left to the thread,
 * which frees the syncer when its call returns, and this returns at the
 * deadline (logged). NULL is fine.
 */
void fwd_syncer_destroy(struct fwd_syncer *sy, uint64_t deadline_ns);

/*
 * fdatasync fd, then close it. fd is consumed on every path. path (copied;
 * may be NULL) names the file in log lines. sy NULL: done now, on this thread.
 */
void fwd_syncer_close(struct fwd_syncer *sy, int fd, const char *path);
/*
 * fsync fd (tmp, written in full), close it, then rename tmp onto path. fd is
 * consumed on every path; tmp and path are copied. A tmp that is gone by then
 * (withdrawn: unlinked by its owner) is not an error. sy NULL: done now.
 */
void fwd_syncer_rename(struct fwd_syncer *sy, int fd, const char *tmp, const char *path);

void fwd_syncer_stats(struct fwd_syncer *sy, struct fwd_syncer_stats *st);

#endif
