/*
 * state.c - StartLogging bodies on disk, one small file per stream.
 *
 * A file is named by a hash of the FIFO path (dockerd's are 64 random hex
 * characters under /run/docker/logging, but nothing here depends on it), so
 * saving the same stream again replaces its state. The body itself carries
 * the path, which is what a restart uses. Reads are bounded by
 * FWD_API_BODY_MAX: a state is a body the API accepted.
 *
 * The state directory itself (fwd_state_dir_open) is made private and locked
 * before anything else uses it: it holds the spool, the streams and, for the
 * managed plugin, dockerd's FIFOs. A directory others can write is refused,
 * not repaired: files could have been planted in it already.
 */
#define FWD_LOG_MODULE "state"
#include "fwd_state.h"
#include "fwd_config.h"
#include "fwd_file.h"
#include "fwd_limits.h"
#include "fwd_log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define STATE_SUFFIX ".json"
#define LOCK_FILE    "fwdlogd.lock"

static void dir_path(char *out, size_t n, const char *state_dir)
{
    snprintf(out, n, "%s/streams", state_dir);
}

static void file_path(char *out, size_t n, const char *state_dir, const char *file)
{
    uint64_t h = fwd_config_hash(FWD_HASH_INIT, file, strlen(file));

    snprintf(out, n, "%s/streams/%016" PRIx64 STATE_SUFFIX, state_dir, h);
}

/* mkdir -p: parents 0755, the last component 0700. 0 or -errno. */
static int make_dirs(const char *path)
{
    char buf[FWD_PATH_MAX];
    size_t n = strlen(path);

    if (n == 0 || n >= sizeof(buf))
        return -ENAMETOOLONG;
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) == -1 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, 0700) == -1 && errno != EEXIST)
        return -errno;
    return 0;
}

/* The directory is ours and private (chmod 0700 when it is ours but looser). */
static int check_dir(const char *dir, char *err, size_t errlen)
{
    struct stat st;

    if (stat(dir, &st) == -1) {
        int e = errno;
        snprintf(err, errlen, "state directory %s: %s", dir, strerror(e));
        return -e;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "state directory %s is not a directory", dir);
        return -ENOTDIR;
    }
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        snprintf(err, errlen,
                 "state directory %s is writable by %s (mode %04o): files could have been "
                 "planted in it; make it private (chmod 0700 %s) or choose another "
                 "(--state-dir, FWDLOG_STATE_DIR)",
                 dir, (st.st_mode & S_IWOTH) ? "others" : "its group",
                 (unsigned)(st.st_mode & 07777), dir);
        return -EPERM;
    }
    if (st.st_uid != geteuid()) {
        snprintf(err, errlen,
                 "state directory %s belongs to uid %u, fwdlogd runs as uid %u: give it to "
                 "that user (chown) or choose another (--state-dir, FWDLOG_STATE_DIR)",
                 dir, (unsigned)st.st_uid, (unsigned)geteuid());
        return -EPERM;
    }
    /* it holds the streams' environments and the spooled records: no one else reads it */
    if ((st.st_mode & 07777) != 0700 && chmod(dir, 0700) == -1) {
        int e = errno;
        snprintf(err, errlen, "cannot make state directory %s private (chmod 0700): %s", dir,
                 strerror(e));
        return -e;
    }
    return 0;
}

/* flock the lock file; when another process holds it, name it (its pid is in the file). */
static int lock_dir(const char *dir, int *lock_fd, char *err, size_t errlen)
{
    char path[FWD_PATH_MAX + 32], pid[32] = "";
    int fd, e, rc = 0;
    ssize_t n;

    snprintf(path, sizeof(path), "%s/" LOCK_FILE, dir);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd == -1) {
        e = errno;
        snprintf(err, errlen, "cannot open lock file %s: %s", path, strerror(e));
        return -e;
    }
    while ((rc = flock(fd, LOCK_EX | LOCK_NB)) == -1 && errno == EINTR)
        ;
    if (rc == -1) {
        e = errno;
        n = pread(fd, pid, sizeof(pid) - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        if (e == EWOULDBLOCK)
            snprintf(err, errlen,
                     "state directory %s is in use by another fwdlogd (pid %s, holding %s): "
                     "give each fwdlogd its own --state-dir / FWDLOG_STATE_DIR",
                     dir, pid[0] ? pid : "unknown", path);
        else
            snprintf(err, errlen, "cannot lock %s: %s", path, strerror(e));
        close(fd);
        return e == EWOULDBLOCK ? -EBUSY : -e;
    }
    n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    if (ftruncate(fd, 0) == -1 || pwrite(fd, pid, (size_t)n, 0) != n)
        fwd_log(FWD_LOG_WARN, "cannot write our pid to %s: %s", path, strerror(errno));
    *lock_fd = fd;
    return 0;
}

int fwd_state_dir_open(const char *state_dir, int *lock_fd, char *err, size_t errlen)
{
    int rc;

    *lock_fd = -1;
    if (strlen(state_dir) >= FWD_PATH_MAX - 200) {
        snprintf(err, errlen, "state directory path is longer than %d bytes", FWD_PATH_MAX - 200);
        return -ENAMETOOLONG;
    }
    rc = make_dirs(state_dir);
    if (rc < 0) {
        snprintf(err, errlen, "cannot create state directory %s: %s", state_dir, strerror(-rc));
        return rc;
    }
    rc = check_dir(state_dir, err, errlen);
    if (rc == 0)
        rc = lock_dir(state_dir, lock_fd, err, errlen);
    return rc;
}

int fwd_state_init(const char *state_dir, char *err, size_t errlen)
{
    char dir[FWD_PATH_MAX];

    dir_path(dir, sizeof(dir), state_dir);
    if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
        int e = errno;
        snprintf(err, errlen, "cannot create %s: %s", dir, strerror(e));
        return -e;
    }
    return 0;
}

int fwd_state_save(const char *state_dir, const char *file, const char *body, size_t len)
{
    char path[FWD_PATH_MAX], tmp[FWD_PATH_MAX + 8];
    int fd, rc;

    file_path(path, sizeof(path), state_dir, file);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd == -1)
        return -errno;
    rc = fwd_file_write_all(fd, body, len);
    if (close(fd) == -1 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) == -1)
        rc = -errno;
    if (rc != 0)
        unlink(tmp);
    return rc;
}

void fwd_state_forget(const char *state_dir, const char *file)
{
    char path[FWD_PATH_MAX];

    file_path(path, sizeof(path), state_dir, file);
    if (unlink(path) == -1 && errno != ENOENT)
        fwd_log(FWD_LOG_WARN, "cannot remove stream state %s: %s", path, strerror(errno));
}

static int is_state_name(const char *name)
{
    size_t n = strlen(name);

    return n > strlen(STATE_SUFFIX) && strcmp(name + n - strlen(STATE_SUFFIX), STATE_SUFFIX) == 0;
}

size_t fwd_state_each(const char *state_dir, fwd_state_cb cb, void *ctx, size_t *bad)
{
    char dir[FWD_PATH_MAX], path[FWD_PATH_MAX + 300];
    DIR *d;
    struct dirent *de;
    size_t n = 0;

    *bad = 0;
    dir_path(dir, sizeof(dir), state_dir);
    d = opendir(dir);
    if (d == NULL)
        return 0;
    while ((de = readdir(d)) != NULL && n < FWD_STATE_MAX) {
        char *body = NULL;
        size_t len = 0;
        int rc;

        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (de->d_name[0] == '.')
            continue;
        if (!is_state_name(de->d_name)) {
            unlink(path); /* a temporary file a crash left */
            continue;
        }
        rc = fwd_file_read(path, FWD_API_BODY_MAX, &body, &len);
        if (rc != 0) {
            fwd_log(FWD_LOG_WARN, "stream state %s unreadable (%s): removed", path, strerror(-rc));
            unlink(path);
            (*bad)++;
            continue;
        }
        n++;
        rc = cb(ctx, body, len);
        free(body);
        if (rc != 0)
            break;
    }
    closedir(d);
    return n;
}
