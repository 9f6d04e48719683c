/*
 * The sync thread: jobs run in order off the caller's thread, a full queue closes
 * at once without the sync, destroy is bounded by its deadline even while a sync
 * hangs, and the spool and options.json hand their syncs over without waiting.
 *
 * fdatasync and fsync are replaced in this binary (the driver's objects are linked
 * in, so their calls come here): each waits at a gate the test opens and closes,
 * which stands for a slow or hung disk, and records which fd it synced and from
 * which thread.
 */
#include "fwd_limits.h"
#include "fwd_spool.h"
#include "fwd_spooldir.h"
#include "fwd_syncer.h"
#include "fwd_time.h"
#include "unit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool closed;  /* syncs wait while the gate is closed */
    int in_sync;  /* syncs waiting at the gate now */
    int n;        /* syncs done */
    int fds[64];  /* in the order they were synced */
    bool on_main; /* a sync ran on the test's own thread */
    int fail;     /* errno to fail with; 0: succeed */
    pthread_t main;
} gate = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static int fake_sync(int fd)
{
    int rc;

    pthread_mutex_lock(&gate.mu);
    gate.in_sync++;
    pthread_cond_broadcast(&gate.cv);
    while (gate.closed)
        pthread_cond_wait(&gate.cv, &gate.mu);
    gate.in_sync--;
    if (gate.n < 64)
        gate.fds[gate.n] = fd;
    gate.n++;
    gate.on_main |= pthread_equal(pthread_self(), gate.main);
    rc = gate.fail ? -1 : fcntl(fd, F_GETFD) == -1 ? -1 : 0;
    if (gate.fail)
        errno = gate.fail;
    pthread_cond_broadcast(&gate.cv);
    pthread_mutex_unlock(&gate.mu);
    return rc;
}

int fdatasync(int fd)
{
    return fake_sync(fd);
}

int fsync(int fd)
{
    return fake_sync(fd);
}

static void gate_reset(bool closed)
{
    pthread_mutex_lock(&gate.mu);
    gate.closed = closed;
    gate.in_sync = gate.n = gate.fail = 0;
    gate.on_main = false;
    gate.main = pthread_self();
    pthread_mutex_unlock(&gate.mu);
}

static void gate_open(void)
{
    pthread_mutex_lock(&gate.mu);
    gate.closed = false;
    pthread_cond_broadcast(&gate.cv);
    pthread_mutex_unlock(&gate.mu);
}

/* Wait (at most 5 s) until a sync waits at the closed gate. */
static void wait_in_sync(void)
{
    uint64_t until = fwd_time_mono_ns() + FWD_MS_TO_NS(5000);

    pthread_mutex_lock(&gate.mu);
    while (gate.in_sync == 0 && fwd_time_mono_ns() < until) {
        pthread_mutex_unlock(&gate.mu);
        usleep(1000);
        pthread_mutex_lock(&gate.mu);
    }
    ck_assert_int_eq(gate.in_sync, 1);
    pthread_mutex_unlock(&gate.mu);
}

static int gate_count(void)
{
    int n;

    pthread_mutex_lock(&gate.mu);
    n = gate.n;
    pthread_mutex_unlock(&gate.mu);
    return n;
}

static char *tmpdir(void)
{
    static char dir[64];

    snprintf(dir, sizeof(dir), "/tmp/fwdsync-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    return dir;
}

static void cleanup(const char *dir)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* A new file dir/name holding text; its fd. */
static int make_file(const char *dir, const char *name, const char *text)
{
    char path[256];
    int fd;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    return fd;
}

/* A temporary file dir/o.tmp holding text, to be renamed onto dir/o: its fd; tmp and path. */
static int make_tmp(const char *dir, const char *text, char tmp[128], char path[128])
{
    snprintf(tmp, 128, "%s/o.tmp", dir);
    snprintf(path, 128, "%s/o", dir);
    return make_file(dir, "o.tmp", text);
}

static bool fd_closed(int fd)
{
    return fcntl(fd, F_GETFD) == -1 && errno == EBADF;
}

static bool exists(const char *dir, const char *name)
{
    char path[256];

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

static void read_file(const char *dir, const char *name, char *out, size_t n)
{
    char path[256];
    FILE *f;
    size_t got;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    got = fread(out, 1, n - 1, f);
    out[got] = '\0';
    fclose(f);
}

/* Poll the stats (at most 5 s) until nothing is pending. */
static void wait_idle(struct fwd_syncer *sy, struct fwd_syncer_stats *st)
{
    uint64_t until = fwd_time_mono_ns() + FWD_MS_TO_NS(5000);

    do {
        fwd_syncer_stats(sy, st);
        if (st->pending == 0)
            return;
        usleep(1000);
    } while (fwd_time_mono_ns() < until);
    ck_abort_msg("the syncer stayed busy: %llu pending", (unsigned long long)st->pending);
}

/* How many sync threads this process runs (/proc/self/task/<tid>/comm). */
static int threads(void)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    int n = 0;

    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)) != NULL) {
        char path[64], comm[32] = "";
        FILE *f;

        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/proc/self/task/%.20s/comm", e->d_name);
        f = fopen(path, "r");
        if (f == NULL)
            continue; /* it just ended */
        n += fgets(comm, sizeof(comm), f) != NULL && strcmp(comm, "fwdlogd-sync\n") == 0;
        fclose(f);
    }
    closedir(d);
    return n;
}

/*
 * Wait (at most 5 s) until no sync thread is left: a joined thread can still be
 * listed in /proc for a moment after pthread_join returns (the kernel wakes the
 * joiner before it unlists the task).
 */
static void wait_no_thread(void)
{
    uint64_t until = fwd_time_mono_ns() + FWD_MS_TO_NS(5000);

    while (threads() > 0 && fwd_time_mono_ns() < until)
        usleep(1000);
    ck_assert_int_eq(threads(), 0);
}

/* Hand n new files dir/<i>.seg to sy; wait_first: until the thread syncs the first. */
static void hand_over(struct fwd_syncer *sy, const char *dir, int *fds, int n, bool wait_first)
{
    for (int i = 0; i < n; i++) {
        char name[16];

        snprintf(name, sizeof(name), "%d.seg", i);
        fds[i] = make_file(dir, name, "x");
        fwd_syncer_close(sy, fds[i], name);
        if (i == 0 && wait_first)
            wait_in_sync();
    }
}

/* The end of a test: stop the syncer (its jobs done), see its thread gone, remove dir. */
static void finish(struct fwd_syncer *sy, const char *dir)
{
    fwd_syncer_destroy(sy, fwd_time_mono_ns() + FWD_MS_TO_NS(5000));
    wait_no_thread();
    cleanup(dir);
}

START_TEST(test_syncer_runs_jobs_in_order_off_the_callers_thread)
{
    char *dir = tmpdir(), err[256], text[64];
    struct fwd_syncer *sy;
    struct fwd_syncer_stats st;
    char tmp[128], path[128];
    int fds[4];

    gate_reset(false);
    sy = fwd_syncer_create(4, err, sizeof(err));
    ck_assert_ptr_nonnull(sy);
    ck_assert_int_eq(threads(), 1);
    fds[0] = make_file(dir, "a.seg", "aaa");
    fds[1] = make_file(dir, "b.seg", "bbb");
    fds[2] = make_file(dir, "c.seg", "ccc");
    fds[3] = make_tmp(dir, "{\"k\":\"v\"}", tmp, path);
    fwd_syncer_close(sy, fds[0], "a.seg");
    fwd_syncer_close(sy, fds[1], NULL);
    fwd_syncer_close(sy, fds[2], "c.seg");
    fwd_syncer_rename(sy, fds[3], tmp, path);
    wait_idle(sy, &st);
    ck_assert_uint_eq(st.done, 4);
    ck_assert_uint_eq(st.failed, 0);
    ck_assert_uint_eq(st.skipped, 0);
    ck_assert_int_eq(gate_count(), 4);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(gate.fds[i], fds[i]);
        ck_assert(fd_closed(fds[i]));
    }
    ck_assert(!gate.on_main);
    ck_assert(!exists(dir, "o.tmp"));
    read_file(dir, "o", text, sizeof(text));
    ck_assert_str_eq(text, "{\"k\":\"v\"}");
    finish(sy, dir);
}
END_TEST

START_TEST(test_syncer_full_queue_closes_at_once_without_the_sync)
{
    char *dir = tmpdir(), err[256], tmp[128], path[128];
    struct fwd_syncer *sy;
    struct fwd_syncer_stats st;
    int fds[5];

    gate_reset(true); /* a slow disk */
    sy = fwd_syncer_create(2, err, sizeof(err));
    ck_assert_ptr_nonnull(sy);
    fds[0] = make_file(dir, "0.seg", "0");
    fwd_syncer_close(sy, fds[0], "0.seg");
    wait_in_sync(); /* the thread took it: the queue is empty again */
    fds[1] = make_file(dir, "1.seg", "1");
    fds[2] = make_file(dir, "2.seg", "2");
    fwd_syncer_close(sy, fds[1], "1.seg");
    fwd_syncer_close(sy, fds[2], "2.seg");
    fwd_syncer_stats(sy, &st);
    ck_assert_uint_eq(st.pending, 3);
    ck_assert_uint_eq(st.skipped, 0);
    /* full: closed now, without a sync, and the caller did not wait */
    fds[3] = make_file(dir, "3.seg", "3");
    fwd_syncer_close(sy, fds[3], "3.seg");
    ck_assert(fd_closed(fds[3]));
    fds[4] = make_tmp(dir, "new", tmp, path);
    fwd_syncer_rename(sy, fds[4], tmp, path);
    ck_assert(fd_closed(fds[4]));
    ck_assert(exists(dir, "o") && !exists(dir, "o.tmp")); /* renamed, unsynced */
    fwd_syncer_stats(sy, &st);
    ck_assert_uint_eq(st.skipped, 2);
    ck_assert_uint_eq(st.pending, 3);
    ck_assert_int_eq(gate_count(), 0);
    ck_assert(!fd_closed(fds[1]) && !fd_closed(fds[2]));
    gate_open();
    wait_idle(sy, &st);
    ck_assert_uint_eq(st.done, 3);
    ck_assert_int_eq(gate_count(), 3);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(gate.fds[i], fds[i]);
        ck_assert(fd_closed(fds[i]));
    }
    finish(sy, dir);
}
END_TEST

START_TEST(test_syncer_destroy_is_bounded_by_its_deadline)
{
    char *dir = tmpdir(), err[256];
    struct fwd_syncer *sy;
    uint64_t t0, took;
    int fds[3];

    gate_reset(true); /* a hung disk */
    sy = fwd_syncer_create(4, err, sizeof(err));
    ck_assert_ptr_nonnull(sy);
    hand_over(sy, dir, fds, 3, true);
    t0 = fwd_time_mono_ns();
    fwd_syncer_destroy(sy, t0 + FWD_MS_TO_NS(200));
    took = fwd_time_mono_ns() - t0;
    ck_assert_uint_ge(took, FWD_MS_TO_NS(200));
    ck_assert_uint_lt(took, FWD_MS_TO_NS(1000));
    /* the queued ones were closed without their sync; the hung one is the thread's */
    ck_assert(fd_closed(fds[1]) && fd_closed(fds[2]));
    ck_assert(!fd_closed(fds[0]));
    ck_assert_int_eq(threads(), 1);
    /* the disk comes back: the thread finishes its job, frees the syncer and ends */
    gate_open();
    wait_no_thread();
    ck_assert_int_eq(gate_count(), 1);
    ck_assert(fd_closed(fds[0]));
    cleanup(dir);
}
END_TEST

START_TEST(test_syncer_idle_destroy_past_its_deadline_joins)
{
    char *dir = tmpdir(), err[256], log[128], text[512];
    struct fwd_syncer *sy;
    int fd, saved;

    gate_reset(false);
    sy = fwd_syncer_create(4, err, sizeof(err));
    ck_assert_ptr_nonnull(sy);
    /* long past: nothing is pending, so nothing is given up (which would be logged) */
    snprintf(log, sizeof(log), "%s/stderr", dir);
    fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    saved = dup(STDERR_FILENO);
    ck_assert_int_eq(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    fwd_syncer_destroy(sy, 0);
    ck_assert_int_eq(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    close(fd);
    read_file(dir, "stderr", text, sizeof(text));
    ck_assert_str_eq(text, "");
    wait_no_thread();
    cleanup(dir);
}
END_TEST

START_TEST(test_syncer_destroy_waits_for_queued_jobs)
{
    char *dir = tmpdir(), err[256];
    struct fwd_syncer *sy;
    int fds[3];

    gate_reset(true);
    sy = fwd_syncer_create(4, err, sizeof(err));
    ck_assert_ptr_nonnull(sy);
    hand_over(sy, dir, fds, 3, false);
    gate_open();
    finish(sy, dir);
    ck_assert_int_eq(gate_count(), 3);
    for (int i = 0; i < 3; i++)
        ck_assert(fd_closed(fds[i]));
}
END_TEST

START_TEST(test_syncer_failed_sync_is_counted_and_the_rename_done)
{
    char *dir = tmpdir(), err[256], tmp[128], path[128];
    struct fwd_syncer *sy;
    struct fwd_syncer_stats st;
    int fd;

    gate_reset(false);
    gate.fail = EIO;
    sy = fwd_syncer_create(4, err, sizeof(err));
    ck_assert_ptr_nonnull(sy);
    fd = make_tmp(dir, "x", tmp, path);
    fwd_syncer_rename(sy, fd, tmp, path);
    wait_idle(sy, &st);
    ck_assert_uint_eq(st.done, 1);
    ck_assert_uint_eq(st.failed, 1);
    ck_assert(fd_closed(fd));
    ck_assert(exists(dir, "o") && !exists(dir, "o.tmp"));
    finish(sy, dir);
}
END_TEST

START_TEST(test_syncer_withdrawn_rename_is_not_done)
{
    char *dir = tmpdir(), err[256], tmp[128], path[128];
    struct fwd_syncer *sy;
    struct fwd_syncer_stats st;
    int fd;

    gate_reset(true);
    sy = fwd_syncer_create(4, err, sizeof(err));
    ck_assert_ptr_nonnull(sy);
    fd = make_tmp(dir, "x", tmp, path);
    fwd_syncer_rename(sy, fd, tmp, path);
    wait_in_sync();
    ck_assert_int_eq(unlink(tmp), 0); /* its owner is gone (fwd_spooldir_forget) */
    gate_open();
    wait_idle(sy, &st);
    ck_assert_uint_eq(st.done, 1);
    ck_assert_uint_eq(st.failed, 0);
    ck_assert(!exists(dir, "o"));
    finish(sy, dir);
}
END_TEST

START_TEST(test_syncer_null_syncs_on_the_callers_thread)
{
    char *dir = tmpdir(), tmp[128], path[128];
    int fd;

    gate_reset(false);
    fd = make_file(dir, "a.seg", "a");
    fwd_syncer_close(NULL, fd, "a.seg");
    ck_assert(fd_closed(fd));
    fd = make_tmp(dir, "o", tmp, path);
    fwd_syncer_rename(NULL, fd, tmp, path);
    ck_assert(fd_closed(fd));
    ck_assert(exists(dir, "o"));
    ck_assert_int_eq(gate_count(), 2);
    ck_assert(gate.on_main);
    fwd_syncer_destroy(NULL, 0);
    cleanup(dir);
}
END_TEST

START_TEST(test_issue_13_spool_and_options_do_not_wait_for_the_disk)
{
    char *dir = tmpdir(), err[256], text[64];
    static char entries[256 * 1024];
    struct fwd_syncer *sy;
    struct fwd_syncer_stats st;
    struct fwd_spool *sp;
    struct fwd_spool_ref ref;
    json_t *o = json_pack("{s:s}", "fluentd-address", "127.0.0.1:1");
    size_t n = FWD_SPOOL_SEGMENT / sizeof(entries) + 1;

    gate_reset(true); /* a hung disk: nothing below may wait for it */
    sy = fwd_syncer_create(FWD_SYNC_QUEUE, err, sizeof(err));
    ck_assert_ptr_nonnull(sy);
    ck_assert_int_eq(fwd_spool_open(dir, sy, &sp, NULL, NULL, err, sizeof(err)), 0);
    ck_assert_int_eq(fwd_spooldir_write_options(dir, o, sy), 0);
    ck_assert(exists(dir, "options.json.tmp") && !exists(dir, "options.json"));
    for (size_t i = 0; i < n; i++) /* the last append seals the first segment */
        ck_assert_int_eq(fwd_spool_append(sp, i + 1, 1, 0, "t", 1, entries, sizeof(entries), &ref),
                         0);
    ck_assert_int_eq(fwd_spool_append(sp, n + 1, 1, 0, "t", 1, "x", 1, &ref), 0);
    fwd_spool_close(sp); /* the second segment, with its one record */
    fwd_syncer_stats(sy, &st);
    ck_assert_uint_eq(st.pending, 3);
    ck_assert_int_eq(gate_count(), 0);
    gate_open();
    wait_idle(sy, &st);
    ck_assert_uint_eq(st.done, 3);
    ck_assert_uint_eq(st.failed, 0);
    ck_assert_int_eq(gate_count(), 3);
    ck_assert(!gate.on_main);
    ck_assert(!exists(dir, "options.json.tmp"));
    read_file(dir, "options.json", text, sizeof(text));
    ck_assert_str_eq(text, "{\"fluentd-address\": \"127.0.0.1:1\"}");
    json_decref(o);
    finish(sy, dir);
}
END_TEST

START_TEST(test_spooldir_forget_withdraws_a_pending_options_rename)
{
    char *dir = tmpdir(), err[256];
    json_t *o = json_pack("{s:s}", "fluentd-address", "127.0.0.1:1");
    struct fwd_syncer *sy;
    struct fwd_syncer_stats st;

    gate_reset(true);
    sy = fwd_syncer_create(4, err, sizeof(err));
    ck_assert_ptr_nonnull(sy);
    ck_assert_int_eq(fwd_spooldir_write_options(dir, o, sy), 0);
    wait_in_sync();
    fwd_spooldir_forget(dir); /* the destination drained before its options.json was synced */
    gate_open();
    wait_idle(sy, &st);
    ck_assert_uint_eq(st.done, 1);
    ck_assert_uint_eq(st.failed, 0);
    ck_assert(!exists(dir, "options.json") && !exists(dir, "options.json.tmp"));
    ck_assert_int_eq(rmdir(dir), 0); /* nothing left in it */
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    json_decref(o);
    finish(sy, dir);
}
END_TEST

START_TEST(test_syncer_zero_queue_is_refused)
{
    char err[256];

    ck_assert_ptr_null(fwd_syncer_create(0, err, sizeof(err)));
    ck_assert_str_eq(err, "sync queue of 0 jobs");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("syncer");
    TCase *core = tcase_create("core"), *limits = tcase_create("limits");

    tcase_set_timeout(core, 30);
    tcase_set_timeout(limits, 30);
    tcase_add_test(core, test_syncer_runs_jobs_in_order_off_the_callers_thread);
    tcase_add_test(core, test_syncer_destroy_waits_for_queued_jobs);
    tcase_add_test(core, test_syncer_failed_sync_is_counted_and_the_rename_done);
    tcase_add_test(core, test_syncer_withdrawn_rename_is_not_done);
    tcase_add_test(core, test_syncer_null_syncs_on_the_callers_thread);
    tcase_add_test(core, test_issue_13_spool_and_options_do_not_wait_for_the_disk);
    tcase_add_test(core, test_spooldir_forget_withdraws_a_pending_options_rename);
    tcase_add_test(limits, test_syncer_full_queue_closes_at_once_without_the_sync);
    tcase_add_test(limits, test_syncer_destroy_is_bounded_by_its_deadline);
    tcase_add_test(limits, test_syncer_idle_destroy_past_its_deadline_joins);
    tcase_add_test(limits, test_syncer_zero_queue_is_refused);
    suite_add_tcase(s, core);
    suite_add_tcase(s, limits);
    return fwd_test_run(s);
}
