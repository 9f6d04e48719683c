/*
 * journal.c - per-stream files holding the records of the batch still open.
 *
 * Written only with buffer-type=file, appended once per FIFO read, emptied
 * (ftruncate to the header) when the batch is sealed into the spool. Files are
 * named open-<n>.jrn in the destination's spool directory; n is the first
 * number free, so journals an earlier run left are never reused before they
 * were recovered. The loop owns them: writes are to the page cache (no fsync).
 */
#define FWD_LOG_MODULE "journal"
#include "fwd_journal.h"
#include "fwd_file.h"
#include "fwd_forward.h"
#include "fwd_limits.h"
#include "fwd_log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAGIC     "FWDJ"
#define VERSION   1
#define HDR_FIXED 7 /* magic, version, tag length */
#define NAME_FMT  "%s/open-%u.jrn"
#define MAX_TRIES 100000u

struct fwd_journal {
    int fd;
    off_t hdr_len;
    char *path;
};

int fwd_journal_create(const char *dir, const char *tag, size_t tag_len, struct fwd_journal **out)
{
    struct fwd_journal *j;
    uint8_t hdr[HDR_FIXED];
    char path[FWD_PATH_MAX];
    int rc = -EEXIST;

    *out = NULL;
    if (tag_len > 0xffff)
        return -EINVAL;
    j = calloc(1, sizeof(*j));
    if (j == NULL)
        return -ENOMEM;
    j->fd = -1;
    for (unsigned n = 0; n < MAX_TRIES && j->fd < 0; n++) {
        snprintf(path, sizeof(path), NAME_FMT, dir, n);
        j->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
        if (j->fd == -1 && errno != EEXIST) {
            rc = -errno;
            break;
        }
    }
    if (j->fd < 0)
        goto fail;
    j->path = strdup(path);
    memcpy(hdr, MAGIC, 4);
    hdr[4] = VERSION;
    hdr[5] = (uint8_t)(tag_len >> 8);
    hdr[6] = (uint8_t)tag_len;
    rc = j->path == NULL ? -ENOMEM : fwd_file_write_all(j->fd, hdr, sizeof(hdr));
    if (rc == 0)
        rc = fwd_file_write_all(j->fd, tag, tag_len);
    if (rc != 0) {
        unlink(path);
        goto fail;
    }
    j->hdr_len = (off_t)(HDR_FIXED + tag_len);
    *out = j;
    return 0;
fail:
    if (j->fd >= 0)
        close(j->fd);
    free(j->path);
    free(j);
    return rc;
}

int fwd_journal_reset(struct fwd_journal *j)
{
    return ftruncate(j->fd, j->hdr_len) == -1 ? -errno : 0;
}

int fwd_journal_append(struct fwd_journal *j, const void *p, size_t len)
{
    int rc = fwd_file_write_all(j->fd, p, len);

    if (rc != 0 && fwd_journal_reset(j) != 0)
        rc = -EIO; /* cannot even empty it: it may hold a gap, so it must not be read back */
    return rc;
}

void fwd_journal_close(struct fwd_journal *j)
{
    if (j == NULL)
        return;
    close(j->fd);
    free(j->path);
    free(j);
}

void fwd_journal_destroy(struct fwd_journal *j)
{
    if (j != NULL)
        unlink(j->path);
    fwd_journal_close(j);
}

size_t fwd_journal_recover(const char *dir, size_t max_bytes, fwd_journal_cb cb, void *ctx)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    size_t found = 0;

    if (d == NULL)
        return 0;
    while ((de = readdir(d)) != NULL) {
        char path[FWD_PATH_MAX + 300];
        char *raw;
        const uint8_t *buf;
        size_t len = 0, tag_len, used;
        unsigned n;
        uint32_t count;
        char c;

        if (sscanf(de->d_name, "open-%u.jr%c", &n, &c) != 2 || c != 'n')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (fwd_file_read(path, max_bytes, &raw, &len) != 0)
            len = 0; /* and raw is NULL */
        buf = (const uint8_t *)raw;
        if (len < HDR_FIXED || memcmp(buf, MAGIC, 4) != 0 || buf[4] != VERSION ||
            (tag_len = (size_t)buf[5] << 8 | buf[6]) > len - HDR_FIXED) {
            fwd_log(FWD_LOG_WARN, "journal %s is unreadable or too large: removed", path);
            free(raw);
            unlink(path);
            continue;
        }
        found++;
        count =
            fwd_forward_whole_entries(buf + HDR_FIXED + tag_len, len - HDR_FIXED - tag_len, &used);
        if (count == 0 || cb(ctx, (const char *)buf + HDR_FIXED, tag_len, buf + HDR_FIXED + tag_len,
                             used, count) == 0)
            unlink(path);
        free(raw);
    }
    closedir(d);
    return found;
}
