/*
 * fifo.c - opening a container's log FIFO (see fwd_fifo.h).
 */
#include "fwd_fifo.h"
#include "fwd_limits.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* Is the resolved path res directly inside the resolved directory dir? */
static bool directly_in(const char *res, const char *dir)
{
    size_t n = strcmp(dir, "/") == 0 ? 0 : strlen(dir);

    return strncmp(res, dir, n) == 0 && res[n] == '/' && res[n + 1] != '\0' &&
           strchr(res + n + 1, '/') == NULL;
}

/*
 * StartLogging may name any path: confine it to the FIFO directory, resolved
 * (symlinks and `..` followed) into res. 0, or -errno with err set (-ENOENT
 * for a FIFO that is not there, -EPERM for one outside the directory).
 */
static int confine(const char *fifo_dir, const char *file, char *res, char *err, size_t errlen)
{
    char dir[PATH_MAX];
    int e;

    if (file[0] != '/') {
        snprintf(err, errlen, "log FIFO path %s is not absolute", file);
        return -EINVAL;
    }
    if (realpath(fifo_dir, dir) == NULL) {
        e = errno;
        snprintf(err, errlen,
                 "cannot open log FIFO %s: the FIFO directory %s (--fifo-dir, FWDLOG_FIFO_DIR): "
                 "%s",
                 file, fifo_dir, strerror(e));
        return -e;
    }
    if (realpath(file, res) == NULL) {
        e = errno;
        snprintf(err, errlen, "cannot open log FIFO %s: %s", file, strerror(e));
        return -e;
    }
    if (!directly_in(res, dir)) {
        snprintf(err, errlen,
                 "log FIFO %s is not in %s, the directory dockerd makes the plugin's FIFOs in "
                 "(it resolves to %s); if dockerd uses another, set FWDLOG_FIFO_DIR",
                 file, fifo_dir, res);
        return -EPERM;
    }
    return 0;
}

/* The reason an open failed for want of descriptors, with the limit and the fix. */
static void open_error(const char *file, int e, char *err, size_t errlen)
{
    struct rlimit rl;

    if (e == EMFILE && getrlimit(RLIMIT_NOFILE, &rl) == 0)
        snprintf(err, errlen,
                 "cannot open log FIFO %s: %s: fwdlogd has all the file descriptors its limit "
                 "allows (RLIMIT_NOFILE %llu) open; raise the limit of what starts fwdlogd "
                 "(dockerd's LimitNOFILE for the managed plugin)",
                 file, strerror(e), (unsigned long long)rl.rlim_cur);
    else if (e == ENFILE)
        snprintf(err, errlen,
                 "cannot open log FIFO %s: %s: the system's file table is full (raise "
                 "fs.file-max)",
                 file, strerror(e));
    else
        snprintf(err, errlen, "cannot open log FIFO %s: %s", file, strerror(e));
}

int fwd_fifo_open(const char *fifo_dir, const char *file, char *err, size_t errlen)
{
    char res[PATH_MAX];
    struct stat sb;
    int fd = confine(fifo_dir, file, res, err, errlen);

    if (fd < 0)
        return fd;
    /* O_NOFOLLOW: res was resolved, a symlink put there since is not followed */
    fd = open(res, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
    if (fd == -1) {
        int e = errno;
        open_error(file, e, err, errlen);
        return -e;
    }
    if (fstat(fd, &sb) == -1 || !S_ISFIFO(sb.st_mode)) {
        snprintf(err, errlen, "log stream %s is not a FIFO", file);
        close(fd);
        return -EINVAL;
    }
    /* A bigger pipe absorbs bursts between wakeups (best effort). */
    (void)fcntl(fd, F_SETPIPE_SZ, FWD_PIPE_SIZE);
    return fd;
}
