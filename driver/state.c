/*
 * state.c - StartLogging bodies on disk, one small file per stream.
 *
 * A file is named by a hash of the FIFO path (dockerd's are 64 random hex
 * characters under /run/docker/logging, but nothing here depends on it), so
 * saving the same stream again replaces its state. The body itself carries
 * the path, which is what a restart uses. Reads are bounded by
 * FWD_API_BODY_MAX: a state is a body the API accepted.
 */
#define FWD_LOG_MODULE "state"
#include "fwd_state.h"
#include "fwd_config.h"
#include "fwd_limits.h"
#include "fwd_log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STATE_SUFFIX ".json"

static void dir_path(char *out, size_t n, const char *state_dir)
{
    snprintf(out, n, "%s/streams", state_dir);
}

static void file_path(char *out, size_t n, const char *state_dir, const char *file)
{
    uint64_t h = fwd_config_hash(FWD_HASH_INIT, file, strlen(file));

    snprintf(out, n, "%s/streams/%016" PRIx64 STATE_SUFFIX, state_dir, h);
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

static int write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, p, len);

        if (w == -1 && errno == EINTR)
            continue;
        if (w == -1)
            return -errno;
        p += w;
        len -= (size_t)w;
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
    rc = write_all(fd, body, len);
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

/* The whole of a state file, at most FWD_API_BODY_MAX bytes. 0 or -errno. */
static int read_state(const char *path, char **out, size_t *len)
{
    struct stat st;
    char *buf = NULL;
    size_t got = 0;
    int rc = 0, fd = open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);

    if (fd == -1)
        return -errno;
    if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) || st.st_size > FWD_API_BODY_MAX) {
        rc = -EINVAL;
        goto out;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

        if (n == -1 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n == 0 ? -EIO : -errno;
            goto out;
        }
        got += (size_t)n;
    }
    buf[got] = '\0';
    *out = buf;
    *len = got;
    buf = NULL;
out:
    free(buf);
    close(fd);
    return rc;
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
        rc = read_state(path, &body, &len);
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
