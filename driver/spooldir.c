/*
 * spooldir.c - the files beside a destination's spool segments (see fwd_spooldir.h).
 */
#include "fwd_spooldir.h"
#include "fwd_file.h"
#include "fwd_limits.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define META_FILE "options.json"
/* The sequence number up to which every batch was delivered or dropped (8 bytes). */
#define DELIVERED_FILE "delivered"

int fwd_spooldir_write_options(const char *dir, json_t *options)
{
    char path[FWD_PATH_MAX], tmp[FWD_PATH_MAX + 8];
    int rc = -EIO, fd;

    if (options == NULL)
        return -ENOMEM;
    fwd_pathf(path, sizeof(path), "%s/" META_FILE, dir);
    fwd_pathf(tmp, sizeof(tmp), "%s.tmp", path);
    /* 0600: it may hold a shared key given inline (the -file options keep it out) */
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
        errno = EIO; /* what the write failed with (ENOSPC, say), or EIO */
        if (json_dumpfd(options, fd, JSON_SORT_KEYS) == 0 && fsync(fd) == 0)
            rc = 0;
        else
            rc = -errno;
        close(fd);
    } else
        rc = -errno;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc != 0)
        unlink(tmp);
    return rc;
}

int fwd_spooldir_read_options(const char *dir, struct fwd_kv **kv, size_t *n)
{
    char path[FWD_PATH_MAX];
    json_error_t jerr;
    json_t *o, *v;
    const char *k;

    *kv = NULL;
    *n = 0;
    fwd_pathf(path, sizeof(path), "%s/" META_FILE, dir);
    o = json_load_file(path, 0, &jerr);
    if (o == NULL || !json_is_object(o)) {
        json_decref(o);
        return -1;
    }
    *kv = calloc(json_object_size(o) + 1, sizeof(**kv));
    if (*kv == NULL) {
        json_decref(o);
        return -1;
    }
    json_object_foreach(o, k, v)
    {
        if (!json_is_string(v))
            continue;
        (*kv)[*n].key = strdup(k);
        (*kv)[*n].value = strdup(json_string_value(v));
        (*n)++;
        if ((*kv)[*n - 1].key == NULL || (*kv)[*n - 1].value == NULL) {
            json_decref(o);
            return -1;
        }
    }
    json_decref(o);
    return 0;
}

int fwd_spooldir_open_mark(const char *dir, uint64_t *upto)
{
    char path[FWD_PATH_MAX];
    int fd;

    fwd_pathf(path, sizeof(path), "%s/" DELIVERED_FILE, dir);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 || pread(fd, upto, sizeof(*upto), 0) != (ssize_t)sizeof(*upto))
        *upto = 0;
    return fd < 0 ? -errno : fd;
}

int fwd_spooldir_write_mark(int fd, uint64_t upto)
{
    if (fd < 0)
        return -EBADF;
    return pwrite(fd, &upto, sizeof(upto), 0) == (ssize_t)sizeof(upto) ? 0 : -EIO;
}

void fwd_spooldir_forget(const char *dir)
{
    char path[FWD_PATH_MAX];

    fwd_pathf(path, sizeof(path), "%s/" META_FILE, dir);
    unlink(path);
    fwd_pathf(path, sizeof(path), "%s/" DELIVERED_FILE, dir);
    unlink(path);
}
