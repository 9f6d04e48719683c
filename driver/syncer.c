/*
 * syncer.c - the sync thread (see fwd_syncer.h): a ring of at most cap jobs
 * under one mutex, a condition variable that wakes the thread for each, and a
 * second one (on CLOCK_MONOTONIC) that fwd_syncer_destroy waits on, within
 * its deadline, for the thread to finish.
 *
 * Not here: what is written. The loop writes the files (page cache writes do
 * not wait for the disk); only their syncs, closes and renames come here.
 * Invariants: the mutex is never held across a syscall that can wait for the
 * disk, except when fwd_syncer_destroy gives up on a hung thread and closes
 * the jobs still queued; the thread only ever touches its own log
 * rate-limit state; whoever sees the thread end last frees the syncer (the
 * destroyer after the join, or the thread itself once abandoned).
 */
#define FWD_LOG_MODULE "syncer"
#include "fwd_syncer.h"
#include "fwd_log.h"
#include "fwd_time.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum job_kind {
    JOB_DATASYNC = 1, /* fdatasync, close */
    JOB_RENAME,       /* fsync, close, rename tmp onto path */
};

struct job {
    enum job_kind kind;
    int fd;
    char *path; /* for log lines, and the rename's target; NULL: unnamed (close only) */
    char *tmp;  /* JOB_RENAME */
};

struct fwd_syncer {
    pthread_mutex_t mu;
    pthread_cond_t more;  /* a job was queued, or stop was set */
    pthread_cond_t ended; /* the thread is about to return (CLOCK_MONOTONIC) */
    pthread_t thread;
    struct job *ring;
    size_t cap, head, n;
    bool busy;      /* the thread runs a job (taken out of the ring) */
    bool stop;      /* no more jobs: finish the queued ones and return */
    bool abandoned; /* destroy gave up waiting: the thread frees the syncer */
    bool has_ended;
    uint64_t done, failed, skipped;
    struct fwd_log_rl rl; /* the thread's failures */
};

/* One failure line; rl NULL: not rate-limited (callers on the loop, rare). */
static void log_failure(struct fwd_log_rl *rl, const char *op, const struct job *j, int e)
{
    const char *name = j->path != NULL ? j->path : "a spool file";
    unsigned long sup = 0;

    if (FWD_LOG_ERROR > fwd_log_level || (rl != NULL && !fwd_log_rl_allow(rl, &sup)))
        return;
    if (sup > 0)
        fwd_log_emit(FWD_LOG_ERROR, FWD_LOG_MODULE, NULL,
                     "%s %s: %s (it may not survive a crash of the host; %lu similar "
                     "suppressed)",
                     op, name, strerror(e), sup);
    else
        fwd_log_emit(FWD_LOG_ERROR, FWD_LOG_MODULE, NULL,
                     "%s %s: %s (it may not survive a crash of the host)", op, name, strerror(e));
}

/* Do j, with its sync when sync is set. false if the sync or the rename failed (logged). */
static bool run_job(struct fwd_log_rl *rl, struct job *j, bool sync)
{
    bool ok = true;
    int rc = 0;

    if (sync) {
        do
            rc = j->kind == JOB_RENAME ? fsync(j->fd) : fdatasync(j->fd);
        while (rc == -1 && errno == EINTR);
        if (rc == -1) {
            log_failure(rl, j->kind == JOB_RENAME ? "fsync" : "fdatasync", j, errno);
            ok = false;
        }
    }
    close(j->fd);
    /* ENOENT: its owner withdrew tmp (fwd_spooldir_forget) before its turn came */
    if (j->kind == JOB_RENAME && rename(j->tmp, j->path) == -1 && errno != ENOENT) {
        log_failure(rl, "rename onto", j, errno);
        ok = false;
    }
    free(j->path);
    free(j->tmp);
    return ok;
}

static void syncer_free(struct fwd_syncer *sy)
{
    pthread_cond_destroy(&sy->ended);
    pthread_cond_destroy(&sy->more);
    pthread_mutex_destroy(&sy->mu);
    free(sy->ring);
    free(sy);
}

static void *run(void *arg)
{
    struct fwd_syncer *sy = arg;
    bool abandoned;

    pthread_mutex_lock(&sy->mu);
    for (;;) {
        struct job j;
        bool ok;

        while (sy->n == 0 && !sy->stop)
            pthread_cond_wait(&sy->more, &sy->mu);
        if (sy->n == 0 || sy->abandoned)
            break;
        j = sy->ring[sy->head];
        sy->head = (sy->head + 1) % sy->cap;
        sy->n--;
        sy->busy = true;
        pthread_mutex_unlock(&sy->mu);
        ok = run_job(&sy->rl, &j, true);
        pthread_mutex_lock(&sy->mu);
        sy->busy = false;
        sy->done++;
        sy->failed += !ok;
    }
    sy->has_ended = true;
    abandoned = sy->abandoned;
    pthread_cond_signal(&sy->ended);
    pthread_mutex_unlock(&sy->mu);
    if (abandoned)
        syncer_free(sy); /* nobody else holds it any more */
    return NULL;         /* a plain return: no unwinding (fwd_syncer.h) */
}

struct fwd_syncer *fwd_syncer_create(size_t cap, char *err, size_t errlen)
{
    struct fwd_syncer *sy = calloc(1, sizeof(*sy));
    pthread_condattr_t ca;
    sigset_t all, old;
    int rc;

    if (sy == NULL || cap == 0 || (sy->ring = calloc(cap, sizeof(*sy->ring))) == NULL) {
        snprintf(err, errlen, cap == 0 ? "sync queue of 0 jobs" : "out of memory");
        free(sy);
        return NULL;
    }
    sy->cap = cap;
    pthread_mutex_init(&sy->mu, NULL);
    pthread_cond_init(&sy->more, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* fwd_time_mono_ns deadlines */
    pthread_cond_init(&sy->ended, &ca);
    pthread_condattr_destroy(&ca);
    /* Signals stay with the loop's thread (its signalfd): the thread blocks them all. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&sy->thread, NULL, run, sy);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the sync thread: %s", strerror(rc));
        syncer_free(sy);
        return NULL;
    }
    pthread_setname_np(sy->thread, "fwdlogd-sync");
    return sy;
}

/*
 * The thread is still busy at the deadline: leave it its job, do the queued
 * ones now without their sync, and let it free the syncer. Called locked; unlocks.
 */
static void abandon(struct fwd_syncer *sy)
{
    pthread_t t = sy->thread;

    sy->abandoned = true;
    fwd_log(FWD_LOG_WARN,
            "the disk did not finish its syncs by the shutdown deadline: %zu files closed "
            "without their sync%s (they survive a restart of fwdlogd, maybe not a crash of the "
            "host)",
            sy->n, sy->busy ? ", one left to its sync" : "");
    /* under the lock, but the thread is in its syscall: it waits only if that returns */
    while (sy->n > 0) {
        (void)run_job(NULL, &sy->ring[sy->head], false);
        sy->head = (sy->head + 1) % sy->cap;
        sy->n--;
    }
    pthread_mutex_unlock(&sy->mu);
    pthread_detach(t);
}

void fwd_syncer_destroy(struct fwd_syncer *sy, uint64_t deadline_ns)
{
    struct timespec ts = {(time_t)(deadline_ns / 1000000000u), (long)(deadline_ns % 1000000000u)};
    bool late = false;

    if (sy == NULL)
        return;
    pthread_mutex_lock(&sy->mu);
    sy->stop = true;
    pthread_cond_signal(&sy->more);
    while (!sy->has_ended) {
        if (sy->n == 0 && !sy->busy) /* idle: it only has to wake up and return */
            pthread_cond_wait(&sy->ended, &sy->mu);
        else if (late) {
            abandon(sy);
            return;
        } else
            late = pthread_cond_timedwait(&sy->ended, &sy->mu, &ts) == ETIMEDOUT;
    }
    pthread_mutex_unlock(&sy->mu);
    pthread_join(sy->thread, NULL);
    if (sy->skipped > 0 || sy->failed > 0)
        fwd_log(FWD_LOG_INFO,
                "%llu syncs done, %llu failed, %llu skipped (%zu were waiting already)",
                (unsigned long long)sy->done, (unsigned long long)sy->failed,
                (unsigned long long)sy->skipped, sy->cap);
    syncer_free(sy);
}

/* Queue j, or (the queue is full) do it now without its sync. j is consumed. */
static void hand_off(struct fwd_syncer *sy, struct job *j)
{
    bool queued = false;
    size_t waiting;

    if (sy == NULL) {
        (void)run_job(NULL, j, true);
        return;
    }
    pthread_mutex_lock(&sy->mu);
    if (sy->n < sy->cap && !sy->stop) {
        sy->ring[(sy->head + sy->n) % sy->cap] = *j;
        sy->n++;
        queued = true;
        pthread_cond_signal(&sy->more);
    } else
        sy->skipped++;
    waiting = sy->n + sy->busy;
    pthread_mutex_unlock(&sy->mu);
    if (queued)
        return;
    fwd_log_rl(FWD_LOG_INFO, NULL,
               "%zu syncs are waiting for the disk: %s closed without its sync (it survives a "
               "restart of fwdlogd, maybe not a crash of the host)",
               waiting, j->path != NULL ? j->path : "a spool file");
    (void)run_job(NULL, j, false);
}

void fwd_syncer_close(struct fwd_syncer *sy, int fd, const char *path)
{
    /* a name that cannot be copied only leaves log lines without it */
    struct job j = {JOB_DATASYNC, fd, path != NULL ? strdup(path) : NULL, NULL};

    hand_off(sy, &j);
}

void fwd_syncer_rename(struct fwd_syncer *sy, int fd, const char *tmp, const char *path)
{
    struct job j = {JOB_RENAME, fd, strdup(path), strdup(tmp)};

    if (j.path == NULL || j.tmp == NULL) { /* no memory for the names: now, without the sync */
        free(j.path);
        free(j.tmp);
        close(fd);
        if (rename(tmp, path) == -1 && errno != ENOENT)
            fwd_log(FWD_LOG_ERROR, "rename onto %s: %s", path, strerror(errno));
        if (sy != NULL) {
            pthread_mutex_lock(&sy->mu);
            sy->skipped++;
            pthread_mutex_unlock(&sy->mu);
        }
        return;
    }
    hand_off(sy, &j);
}

void fwd_syncer_stats(struct fwd_syncer *sy, struct fwd_syncer_stats *st)
{
    memset(st, 0, sizeof(*st));
    if (sy == NULL)
        return;
    pthread_mutex_lock(&sy->mu);
    st->done = sy->done;
    st->failed = sy->failed;
    st->skipped = sy->skipped;
    st->pending = sy->n + sy->busy;
    pthread_mutex_unlock(&sy->mu);
}
