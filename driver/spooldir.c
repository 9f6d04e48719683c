/*
 * spooldir.c - the files beside a destination's spool segments (see fwd_spooldir.h).
 * options.json is written as options.json.tmp on the caller's thread; its
 * fsync and the rename onto options.json are the syncer's (the loop never
 * waits for the disk), so an earlier options.json stays in place until the new
 * one is on disk.
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

#define META_FILE  "options.json"
#define TMP_SUFFIX ".tmp"
/* The sequence number up to which every batch was delivered or dropped (8 bytes). */
#define DELIVERED_FILE "delivered"

int fwd_spooldir_write_options(const char *dir, json_t *options, struct fwd_syncer *syncer)
{
    char path[FWD_PATH_MAX], tmp[FWD_PATH_MAX + 8];
    int fd;

    if (options == NULL)
        return -ENOMEM;
    fwd_pathf(path, sizeof(path), "%s/" META_FILE, dir);
    fwd_pathf(tmp, sizeof(tmp), "%s" TMP_SUFFIX, path);
    /* 0600: it may hold a shared key given inline (the -file options keep it out) */
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    errno = 0; /* what a failed write leaves (ENOSPC, say) */
    if (json_dumpfd(options, fd, JSON_SORT_KEYS) != 0) {
        int e = errno ? errno : EIO;

        close(fd);
        unlink(tmp);
        return -e;
    }
    fwd_syncer_rename(syncer, fd, tmp, path); /* fsync, close, rename: off the loop */
    return 0;
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

    /* The temporary file first: that withdraws a rename the syncer has not done yet (it
     * finds no tmp), and one it did before is undone by the unlink after. */
    fwd_pathf(path, sizeof(path), "%s/" META_FILE TMP_SUFFIX, dir);
    unlink(path);
    fwd_pathf(path, sizeof(path), "%s/" META_FILE, dir);
    unlink(path);
    fwd_pathf(path, sizeof(path), "%s/" DELIVERED_FILE, dir);
    unlink(path);
}
