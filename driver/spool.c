/*
 * spool.c - segment files of one destination's disk spool.
 *
 * A record, little-endian:
 *   0  "FWS1"
 *   4  u32 body length (tag + entries)
 *   8  u32 CRC-32 (zlib) of bytes 12 .. end of body
 *  12  u64 sequence number      20  u32 record count
 *  24  u16 tag length           26  u16 flags
 *  28  tag, then entries
 * Segments are named by a 64-bit id in hex, <id>.seg; ids only grow, so the
 * names sort in writing order. Only the segment being written is kept open;
 * a spilled batch is read back with its own open/pread/close (rare: only
 * batches that could not stay in memory). Writes and reads run on the caller's
 * thread (the loop: page cache writes); a segment that is sealed (full) or
 * closed with records in it is handed to the syncer (fwd_syncer.h), which
 * fdatasyncs and closes it off the loop, so it is durable against a host crash
 * some time after, not at, its seal. A segment with nothing live is closed at
 * once: it is about to be deleted.
 */
#define FWD_LOG_MODULE "spool"
#include "fwd_spool.h"
#include "fwd_limits.h"
#include "fwd_log.h"
#include "fwd_syncer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zlib.h>

#define HDR 28u
/* A body longer than this is corruption (batches are at most FWD_MAX_BATCH_SIZE). */
#define BODY_MAX (2u * FWD_MAX_BATCH_SIZE + FWD_SPOOL_TAG_MAX)

struct fwd_spool_seg {
    struct fwd_spool_seg *next;
    uint64_t id;
    uint64_t size;
    uint32_t live; /* records not yet released */
};

struct fwd_spool {
    char *dir;
    struct fwd_spool_seg *segs, *last; /* oldest first; last is the one written, if open */
    int fd;                            /* of last while it is being written, else -1 */
    struct fwd_syncer *syncer;         /* borrowed: takes sealed segments' syncs */
    uint64_t next_id;
    uint64_t bytes;
    uint64_t live_bytes;
    uint64_t corrupt;
};

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void seg_path(const struct fwd_spool *sp, uint64_t id, char *out, size_t n)
{
    snprintf(out, n, "%s/%016" PRIx64 ".seg", sp->dir, id);
}

static void seg_unlink(struct fwd_spool *sp, struct fwd_spool_seg *s)
{
    char path[FWD_PATH_MAX];
    struct fwd_spool_seg **pp;

    for (pp = &sp->segs; *pp != s; pp = &(*pp)->next)
        ;
    *pp = s->next;
    if (sp->last == s) {
        sp->last = NULL;
        if (sp->fd >= 0) {
            close(sp->fd);
            sp->fd = -1;
        }
    }
    seg_path(sp, s->id, path, sizeof(path));
    if (unlink(path) == -1 && errno != ENOENT)
        fwd_log(FWD_LOG_WARN, "cannot delete %s: %s", path, strerror(errno));
    sp->bytes -= s->size;
    free(s);
}

static struct fwd_spool_seg *seg_add(struct fwd_spool *sp, uint64_t id)
{
    struct fwd_spool_seg *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return NULL;
    s->id = id;
    if (sp->segs == NULL)
        sp->segs = s;
    else {
        struct fwd_spool_seg *t = sp->segs;
        while (t->next != NULL)
            t = t->next;
        t->next = s;
    }
    return s;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* pread exactly n bytes. 0, or -1 (errno set; EIO-like for a short file: ENODATA). */
static int pread_full(int fd, void *buf, size_t n, uint64_t off)
{
    uint8_t *p = buf;

    while (n > 0) {
        ssize_t r = pread(fd, p, n, (off_t)off);

        if (r == -1 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0)
                errno = ENODATA;
            return -1;
        }
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

/* Check a header; the body length in *body. */
static bool header_ok(const uint8_t *h, uint32_t *body)
{
    uint32_t tag_len = (uint32_t)h[24] | (uint32_t)h[25] << 8;

    *body = get32(h + 4);
    return memcmp(h, "FWS1", 4) == 0 && *body <= BODY_MAX && tag_len <= *body &&
           tag_len <= FWD_SPOOL_TAG_MAX;
}

static uint32_t record_crc(const uint8_t *h, const uint8_t *body, uint32_t len)
{
    uLong c = crc32(0L, Z_NULL, 0);

    c = crc32(c, h + 12, HDR - 12);
    return (uint32_t)crc32(c, body, len);
}

/* Read one segment of an earlier run, reporting each good record. */
static int scan_segment(struct fwd_spool *sp, struct fwd_spool_seg *s,
                        int (*item)(void *ctx, const struct fwd_spool_item *it), void *ctx)
{
    char path[FWD_PATH_MAX];
    struct fwd_buf body;
    struct stat st;
    uint64_t off = 0;
    int fd, rc = 0;

    seg_path(sp, s->id, path, sizeof(path));
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1 || fstat(fd, &st) == -1) {
        fwd_log(FWD_LOG_ERROR, "cannot read %s: %s; skipping it", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return 0;
    }
    s->size = (uint64_t)st.st_size;
    sp->bytes += s->size;
    fwd_buf_init(&body, BODY_MAX);
    while (off < s->size) {
        uint8_t h[HDR];
        uint32_t blen;
        struct fwd_spool_item it;

        if (s->size - off < HDR || pread_full(fd, h, HDR, off) != 0 || !header_ok(h, &blen) ||
            s->size - off - HDR < blen) {
            sp->corrupt++;
            fwd_log(FWD_LOG_WARN,
                    "%s: record at offset %" PRIu64 " is cut short or not a record (a crash "
                    "mid-write?): skipping the rest of this segment (%" PRIu64 " bytes)",
                    path, off, s->size - off);
            break;
        }
        fwd_buf_reset(&body);
        if (fwd_buf_reserve(&body, blen) != 0 || pread_full(fd, body.data, blen, off + HDR) != 0) {
            fwd_log(FWD_LOG_ERROR, "%s: cannot read the record at offset %" PRIu64 ": %s", path,
                    off, strerror(errno ? errno : ENOMEM));
            break;
        }
        if (record_crc(h, body.data, blen) != get32(h + 8)) {
            sp->corrupt++;
            fwd_log(FWD_LOG_WARN,
                    "%s: record at offset %" PRIu64 " fails its checksum: skipping the rest of "
                    "this segment",
                    path, off);
            break;
        }
        memset(&it, 0, sizeof(it));
        memcpy(&it.seq, h + 12, 8); /* little-endian hosts only (x86-64, arm64) */
        it.count = get32(h + 20);
        it.tag_len = (size_t)(h[24] | h[25] << 8);
        it.flags = (uint16_t)(h[26] | h[27] << 8);
        it.tag = (const char *)body.data;
        it.ref.seg = s;
        it.ref.off = off;
        it.ref.len = blen - (uint32_t)it.tag_len;
        it.ref.size = HDR + blen;
        s->live++;
        sp->live_bytes += it.ref.size;
        if (item(ctx, &it) != 0) {
            rc = -1;
            break;
        }
        off += HDR + blen;
    }
    fwd_buf_release(&body);
    close(fd);
    return rc;
}

int fwd_spool_open(const char *dir, struct fwd_syncer *syncer, struct fwd_spool **out,
                   int (*item)(void *ctx, const struct fwd_spool_item *it), void *ctx, char *err,
                   size_t errlen)
{
    struct fwd_spool *sp;
    DIR *d;
    struct dirent *e;
    uint64_t *ids = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;

    *out = NULL;
    if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
        rc = -errno;
        snprintf(err, errlen, "cannot create spool directory %s: %s", dir, strerror(errno));
        return rc;
    }
    d = opendir(dir);
    if (d == NULL) {
        rc = -errno;
        snprintf(err, errlen, "cannot open spool directory %s: %s", dir, strerror(errno));
        return rc;
    }
    sp = calloc(1, sizeof(*sp));
    if (sp == NULL || (sp->dir = strdup(dir)) == NULL)
        goto nomem;
    sp->fd = -1;
    sp->syncer = syncer;
    while ((e = readdir(d)) != NULL) {
        uint64_t id;
        char tail[8];

        if (strlen(e->d_name) != 20 || sscanf(e->d_name, "%16" SCNx64 "%7s", &id, tail) != 2 ||
            strcmp(tail, ".seg") != 0)
            continue;
        if (n == cap) {
            uint64_t *t = realloc(ids, (cap = cap ? cap * 2 : 16) * sizeof(*ids));
            if (t == NULL)
                goto nomem;
            ids = t;
        }
        ids[n++] = id;
    }
    closedir(d);
    d = NULL;
    if (n > 0)
        qsort(ids, n, sizeof(*ids), cmp_u64);
    for (size_t i = 0; i < n; i++) {
        struct fwd_spool_seg *s = seg_add(sp, ids[i]);

        if (s == NULL)
            goto nomem;
        sp->next_id = ids[i] + 1;
        if (scan_segment(sp, s, item, ctx) != 0) {
            /* the caller stopped: keep the rest for a later run, untouched */
            s->live = UINT32_MAX;
            for (size_t j = i + 1; j < n; j++) {
                struct fwd_spool_seg *t = seg_add(sp, ids[j]);
                if (t == NULL)
                    goto nomem;
                t->live = UINT32_MAX;
            }
            sp->next_id = ids[n - 1] + 1;
            break;
        }
        if (s->live == 0)
            seg_unlink(sp, s); /* nothing good in it */
    }
    free(ids);
    *out = sp;
    return 0;
nomem:
    if (d != NULL)
        closedir(d);
    free(ids);
    fwd_spool_close(sp);
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
}

static void free_segs(struct fwd_spool *sp)
{
    while (sp->segs != NULL) {
        struct fwd_spool_seg *s = sp->segs;
        sp->segs = s->next;
        free(s);
    }
}

/*
 * Stop writing to the last segment. One with live records goes to the syncer
 * (fdatasync and close, off the loop); one without is closed now: it is going.
 */
static void close_last(struct fwd_spool *sp)
{
    char path[FWD_PATH_MAX];

    if (sp->fd >= 0 && sp->last != NULL && sp->last->live > 0) {
        seg_path(sp, sp->last->id, path, sizeof(path));
        fwd_syncer_close(sp->syncer, sp->fd, path);
    } else if (sp->fd >= 0)
        close(sp->fd);
    sp->fd = -1;
}

void fwd_spool_close(struct fwd_spool *sp)
{
    if (sp == NULL)
        return;
    close_last(sp);
    sp->last = NULL;
    /* segments whose every record was released go now; the rest stay for the next run */
    for (struct fwd_spool_seg *s = sp->segs, *next; s != NULL; s = next) {
        next = s->next;
        if (s->live == 0)
            seg_unlink(sp, s);
    }
    free_segs(sp);
    free(sp->dir);
    free(sp);
}

void fwd_spool_destroy(struct fwd_spool *sp)
{
    if (sp == NULL)
        return;
    while (sp->segs != NULL)
        seg_unlink(sp, sp->segs);
    if (rmdir(sp->dir) == -1 && errno != ENOTEMPTY && errno != EEXIST)
        fwd_log(FWD_LOG_DEBUG, "cannot remove %s: %s", sp->dir, strerror(errno));
    fwd_spool_close(sp);
}

/* Close the segment being written (it is full): the syncer makes it survive a host crash. */
static void seal_segment(struct fwd_spool *sp)
{
    struct fwd_spool_seg *s = sp->last;

    close_last(sp);
    sp->last = NULL;
    if (s != NULL && s->live == 0)
        seg_unlink(sp, s);
}

/* Begin a new segment file for appends. 0 or -errno. */
static int open_segment(struct fwd_spool *sp)
{
    char path[FWD_PATH_MAX];
    struct fwd_spool_seg *s;

    seg_path(sp, sp->next_id, path, sizeof(path));
    sp->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
    if (sp->fd == -1)
        return -errno;
    s = seg_add(sp, sp->next_id++);
    if (s == NULL) {
        close(sp->fd);
        sp->fd = -1;
        unlink(path);
        return -ENOMEM;
    }
    sp->last = s;
    return 0;
}

/* Write the record's three pieces whole at the end of the last segment. 0 or -errno. */
static int write_record(struct fwd_spool *sp, const struct iovec iov[3], size_t total)
{
    size_t done = 0;

    while (done < total) {
        struct iovec v[3];
        int nv = 0;
        size_t skip = done;
        ssize_t w;

        for (int i = 0; i < 3; i++) {
            if (skip >= iov[i].iov_len) {
                skip -= iov[i].iov_len;
                continue;
            }
            v[nv].iov_base = (uint8_t *)iov[i].iov_base + skip;
            v[nv++].iov_len = iov[i].iov_len - skip;
            skip = 0;
        }
        w = writev(sp->fd, v, nv);
        if (w == -1 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = w == -1 ? errno : EIO;
            /* Cut the half-written record off so the segment stays readable. */
            if (ftruncate(sp->fd, (off_t)sp->last->size) == -1)
                seal_segment(sp); /* cannot: a reader of this run stops at it; write anew */
            return -e;
        }
        done += (size_t)w;
    }
    return 0;
}

int fwd_spool_append(struct fwd_spool *sp, uint64_t seq, uint32_t count, uint16_t flags,
                     const char *tag, size_t tag_len, const void *entries, size_t len,
                     struct fwd_spool_ref *ref)
{
    uint8_t h[HDR];
    struct iovec iov[3];
    uLong c;
    size_t total = HDR + tag_len + len;
    int rc;

    if (tag_len > FWD_SPOOL_TAG_MAX || tag_len + len > BODY_MAX)
        return -EMSGSIZE;
    if (sp->last == NULL && (rc = open_segment(sp)) < 0)
        return rc;
    memcpy(h, "FWS1", 4);
    put32(h + 4, (uint32_t)(tag_len + len));
    memcpy(h + 12, &seq, 8);
    put32(h + 20, count);
    h[24] = (uint8_t)tag_len;
    h[25] = (uint8_t)(tag_len >> 8);
    h[26] = (uint8_t)flags;
    h[27] = (uint8_t)(flags >> 8);
    c = crc32(crc32(0L, Z_NULL, 0), h + 12, HDR - 12);
    c = crc32(c, (const Bytef *)tag, (uInt)tag_len);
    c = crc32(c, entries, (uInt)len);
    put32(h + 8, (uint32_t)c);
    iov[0] = (struct iovec){h, HDR};
    iov[1] = (struct iovec){(void *)tag, tag_len};
    iov[2] = (struct iovec){(void *)entries, len};
    rc = write_record(sp, iov, total);
    if (rc < 0)
        return rc;
    ref->seg = sp->last;
    ref->off = sp->last->size;
    ref->len = (uint32_t)len;
    ref->size = (uint32_t)total;
    sp->last->size += total;
    sp->last->live++;
    sp->bytes += total;
    sp->live_bytes += total;
    if (sp->last->size >= FWD_SPOOL_SEGMENT)
        seal_segment(sp);
    return 0;
}

const char *fwd_spool_dir(const struct fwd_spool *sp)
{
    return sp->dir;
}

int fwd_spool_read(struct fwd_spool *sp, const struct fwd_spool_ref *ref, struct fwd_buf *out)
{
    char path[FWD_PATH_MAX];
    uint8_t h[HDR];
    uint32_t blen;
    size_t tag_len;
    int fd, rc = 0;

    seg_path(sp, ref->seg->id, path, sizeof(path));
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1)
        return -EIO;
    fwd_buf_reset(out);
    if (pread_full(fd, h, HDR, ref->off) != 0 || !header_ok(h, &blen) || HDR + blen != ref->size ||
        fwd_buf_reserve(out, blen) != 0 || pread_full(fd, out->data, blen, ref->off + HDR) != 0) {
        rc = -EIO;
        goto out;
    }
    if (record_crc(h, out->data, blen) != get32(h + 8)) {
        rc = -EBADMSG;
        goto out;
    }
    tag_len = (size_t)(h[24] | h[25] << 8);
    fwd_buf_added(out, blen);
    fwd_buf_consume(out, tag_len);
out:
    close(fd);
    return rc;
}

void fwd_spool_release(struct fwd_spool *sp, struct fwd_spool_ref *ref)
{
    struct fwd_spool_seg *s = ref->seg;

    if (s == NULL)
        return;
    ref->seg = NULL;
    sp->live_bytes -= ref->size;
    if (--s->live == 0 && s != sp->last)
        seg_unlink(sp, s);
}

uint64_t fwd_spool_bytes(const struct fwd_spool *sp)
{
    return sp->bytes;
}

uint64_t fwd_spool_live_bytes(const struct fwd_spool *sp)
{
    return sp->live_bytes;
}

uint64_t fwd_spool_corrupt(const struct fwd_spool *sp)
{
    return sp->corrupt;
}
