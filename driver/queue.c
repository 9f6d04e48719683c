/*
 * queue.c - a destination's queue, its limits, the overflow policies and the
 * spool adapter (see fwd_queue.h).
 */
#define FWD_LOG_MODULE "output"
#include "fwd_queue.h"
#include "fwd_journal.h"
#include "fwd_file.h"
#include "fwd_limits.h"
#include "fwd_log.h"
#include "fwd_spool.h"
#include "fwd_spooldir.h"
#include "fwd_time.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A spool that failed to open (a full disk, say) is tried again after this long. */
#define SPOOL_RETRY_NS (5ull * 1000000000ull)

/* fwd_dest_counts.ack: a LAN round trip to a spool-writing aggregator taking seconds */
static const double ack_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                    0.1,   0.25,   0.5,   1,    2.5,   10};

int fwd_queue_init(struct fwd_queue *q, const struct fwd_config *cfg, const char *label,
                   const char *state_dir, const char *spool_dir, struct fwd_output_stats *st,
                   uint64_t (*oldest_taken)(void *ctx), void *ctx)
{
    *q = (struct fwd_queue){.cfg = cfg,
                            .label = label,
                            .state_dir = state_dir,
                            .st = st,
                            .oldest_taken = oldest_taken,
                            .ctx = ctx,
                            .next_seq = 1,
                            .delivered_fd = -1};
    fwd_hist_init(&q->dc.ack, ack_bounds, sizeof(ack_bounds) / sizeof(ack_bounds[0]));
    q->options = fwd_spooldir_options(cfg); /* no secret values (fwd_spooldir.h) */
    if (fwd_fair_init(&q->fair) != 0)
        return -ENOMEM;
    if (spool_dir != NULL && (q->spool_dir = strdup(spool_dir)) == NULL)
        return -ENOMEM;
    return 0;
}

/* ---- the ordered list ------------------------------------------------------------------ */

/* Unlink b, queued, from the list and its sources' lists. */
static void list_unlink(struct fwd_queue *q, struct fwd_batch *b)
{
    if (b->prev != NULL)
        b->prev->next = b->next;
    else
        q->head = b->next;
    if (b->next != NULL)
        b->next->prev = b->prev;
    else
        q->tail = b->prev;
    b->next = b->prev = NULL;
    fwd_fair_remove(&q->fair, b);
}

static struct fwd_batch *list_pop(struct fwd_queue *q)
{
    struct fwd_batch *b = q->head;

    list_unlink(q, b);
    return b;
}

/* Link b in before at (NULL: at the tail). */
static void list_link(struct fwd_queue *q, struct fwd_batch *at, struct fwd_batch *b, bool front)
{
    b->next = at;
    b->prev = at != NULL ? at->prev : q->tail;
    if (b->prev != NULL)
        b->prev->next = b;
    else
        q->head = b;
    if (at != NULL)
        at->prev = b;
    else
        q->tail = b;
    fwd_fair_add(&q->fair, b, front);
}

static void reject(struct fwd_queue *q, struct fwd_batch *b);

void fwd_queue_return(struct fwd_queue *q, struct fwd_batch *list)
{
    struct fwd_batch *p = q->head;

    while (list != NULL) {
        struct fwd_batch *b = list;

        list = b->next;
        b->next = NULL;
        if (b->attempts >= FWD_MAX_SEND_ATTEMPTS) {
            reject(q, b);
            continue;
        }
        /* list is by seq, and mostly older than what is queued: p moves little */
        while (p != NULL && p->seq < b->seq)
            p = p->next;
        list_link(q, p, b, true);
    }
}

static void list_append(struct fwd_queue *q, struct fwd_batch *b)
{
    b->next = NULL;
    if (q->tail != NULL && q->tail->seq > b->seq) {
        fwd_queue_return(q, b);
        return;
    }
    list_link(q, NULL, b, false);
}

/* ---- done, dropped --------------------------------------------------------------------- */

/*
 * Every batch sealed before the oldest one still queued or taken is done for
 * good. Kept in the delivered mark (spooldir.c), so a restart skips the spool records of
 * batches that were delivered but whose segment was still in use: without
 * it, each restart sent a whole segment again.
 */
static void note_delivered(struct fwd_queue *q)
{
    uint64_t low = q->next_seq, taken = q->oldest_taken ? q->oldest_taken(q->ctx) : UINT64_MAX;

    if (q->head != NULL && q->head->seq < low)
        low = q->head->seq;
    if (taken < low)
        low = taken;
    if (q->delivered_fd < 0 || low - 1 <= q->delivered_upto)
        return;
    q->delivered_upto = low - 1;
    if (fwd_spooldir_write_mark(q->delivered_fd, q->delivered_upto) != 0)
        q->delivered_upto = 0; /* tried again next time; a restart may send duplicates */
}

void fwd_queue_done(struct fwd_queue *q, struct fwd_batch *b)
{
    bool released = b->ref.seg != NULL;

    q->qbytes -= fwd_batch_wire_len(b);
    q->mem -= fwd_batch_mem(b);
    if (released)
        fwd_spool_release(q->spool, &b->ref);
    fwd_batch_free(b);
    if (released)
        note_delivered(q);
    fwd_queue_update_blocked(q);
}

static void count_drop(struct fwd_queue *q, struct fwd_batch *b)
{
    q->st->records_dropped += b->count;
    q->st->batches_dropped++;
    q->dc.records_dropped += b->count;
    q->dc.last_drop_mono = fwd_time_mono_ns();
    fwd_batch_count_drop(b, false);
}

void fwd_queue_drop(struct fwd_queue *q, struct fwd_batch *b)
{
    count_drop(q, b);
    fwd_queue_done(q, b);
}

void fwd_queue_drop_all(struct fwd_queue *q, const char *why)
{
    uint64_t records = 0;

    while (q->head != NULL) {
        struct fwd_batch *b = list_pop(q);

        records += b->count;
        fwd_queue_drop(q, b);
    }
    if (records > 0)
        fwd_log(FWD_LOG_ERROR, "%s: dropped %llu queued records: %s", q->label,
                (unsigned long long)records, why);
}

bool fwd_queue_has_data(const struct fwd_queue *q)
{
    return q->head != NULL || q->openbytes != 0;
}

void fwd_queue_fini(struct fwd_queue *q)
{
    bool empty = q->head == NULL;

    while (q->head != NULL) {
        struct fwd_batch *b = list_pop(q);

        b->ref.seg = NULL; /* not delivered: its spool record stays for the next start */
        fwd_queue_done(q, b);
    }
    while (q->waiters != NULL) {
        struct fwd_waiter *w = q->waiters;

        q->waiters = w->next;
        w->next = NULL;
        w->waiting = false;
    }
    if (q->spool != NULL && empty) {
        /* drained: nothing for a later run */
        fwd_spooldir_forget(q->spool_dir);
        fwd_spool_destroy(q->spool);
    } else
        fwd_spool_close(q->spool); /* the records still in it stay for the next start */
    fwd_spool_close(q->rejected);
    if (q->delivered_fd >= 0)
        close(q->delivered_fd);
    free(q->spool_dir);
    fwd_fair_release(&q->fair);
    json_decref(q->options);
    q->spool = NULL;
    q->rejected = NULL;
    q->spool_dir = NULL;
    q->options = NULL;
}

/* ---- the spool ------------------------------------------------------------------------- */

/* A record of a spool left by an earlier run: queue it as a spilled batch. */
static int on_spool_item(void *ctx, const struct fwd_spool_item *it)
{
    struct fwd_queue *q = ctx;
    struct fwd_batch *b;

    if (((it->flags & FWD_SPOOL_GZIP) != 0) != q->cfg->gzip) {
        /* written with other fluentd-compress: leave it (it is released with the rest) */
        fwd_log(FWD_LOG_WARN,
                "%s: a spooled batch was written with other fluentd-compress settings: dropped",
                q->label);
        return 0;
    }
    b = fwd_batch_new();
    if (b == NULL)
        return -1;
    b->count = it->count;
    b->entries_len = it->ref.len;
    b->seq = it->seq;
    b->spilled = true;
    if (fwd_batch_frame(b, it->tag, it->tag_len, q->cfg->request_ack, q->cfg->gzip) != 0) {
        fwd_batch_free(b);
        return -1;
    }
    b->ref = it->ref;
    if (b->seq >= q->next_seq)
        q->next_seq = b->seq + 1;
    q->mem += fwd_batch_mem(b);
    q->qbytes += fwd_batch_wire_len(b);
    q->st->replayed_records += b->count;
    list_append(q, b);
    return 0;
}

/* A journal an earlier run left: its records become a batch, queued like any other. */
static int on_journal(void *ctx, const char *tag, size_t tag_len, const uint8_t *entries,
                      size_t len, uint32_t count)
{
    struct fwd_queue *q = ctx;
    struct fwd_batch *b = fwd_batch_new();

    if (b == NULL)
        return -1;
    if (fwd_buf_append(&b->entries, entries, len) != 0) {
        fwd_batch_free(b);
        return -1;
    }
    b->count = count;
    q->st->replayed_records += count;
    fwd_queue_seal(q, b, tag, tag_len);
    return 0;
}

/*
 * After the scan: batches an earlier run delivered (at or below its
 * delivered mark) are released, not sent again; new batches are
 * numbered above the mark.
 */
static void open_delivered(struct fwd_queue *q)
{
    uint64_t upto = 0, skipped = 0;

    q->delivered_fd = fwd_spooldir_open_mark(q->spool_dir, &upto);
    /* first, so that fwd_queue_done below never writes a lower mark */
    if (q->next_seq <= upto)
        q->next_seq = upto + 1;
    q->delivered_upto = upto;
    for (struct fwd_batch *b = q->head, *next; b != NULL; b = next) {
        next = b->next;
        if (b->seq > upto)
            continue;
        list_unlink(q, b);
        skipped += b->count;
        q->st->replayed_records -= b->count;
        fwd_queue_done(q, b);
    }
    if (skipped > 0)
        fwd_log(FWD_LOG_DEBUG, "%s: %llu spooled records were delivered before the restart",
                q->label, (unsigned long long)skipped);
}

/* The spool directory: state_dir/spool/<spool_id> (SHA-256, no secret). 0 or -1 with err. */
static int spool_dir_name(struct fwd_queue *q, char *err, size_t errlen)
{
    char base[FWD_PATH_MAX], dir[FWD_PATH_MAX];

    fwd_pathf(base, sizeof(base), "%s/spool", q->state_dir);
    if (mkdir(base, 0700) == -1 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %.1000s: %s", base, strerror(errno));
        return -1;
    }
    fwd_pathf(dir, sizeof(dir), "%s/%s", base, q->cfg->spool_id);
    q->spool_dir = strdup(dir);
    if (q->spool_dir == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* Write options.json (once it worked, not again). A failure is logged; the spool works on. */
static void write_options(struct fwd_queue *q)
{
    int rc;

    if (q->options_written)
        return;
    if ((rc = fwd_spooldir_write_options(q->spool_dir, q->options, q->syncer)) == 0) {
        q->options_written = true;
        return;
    }
    fwd_log_rl(FWD_LOG_WARN, NULL,
               "%s: cannot write %s/options.json: %s; the spool works on, but only a container "
               "that logs to this destination will replay it after a restart (tried again with "
               "the next batch spooled)",
               q->label, q->spool_dir, strerror(-rc));
}

int fwd_queue_open_spool(struct fwd_queue *q, char *err, size_t errlen)
{
    uint64_t before, now = fwd_time_mono_ns();

    if (q->spool != NULL)
        return 0;
    if (now < q->spool_retry_at) { /* 0 until the first try */
        snprintf(err, errlen, "it failed to open less than %llu s ago",
                 (unsigned long long)(SPOOL_RETRY_NS / 1000000000u));
        return -EAGAIN;
    }
    q->spool_tried = true;
    q->spool_retry_at = now + SPOOL_RETRY_NS;
    if (q->cfg->spool_limit == 0) {
        snprintf(err, errlen, "spool-limit is 0");
        return -EINVAL;
    }
    if (q->spool_dir == NULL && spool_dir_name(q, err, errlen) < 0)
        return -EIO;
    before = q->st->replayed_records;
    if (fwd_spool_open(q->spool_dir, q->syncer, &q->spool, on_spool_item, q, err, errlen) < 0)
        return -EIO;
    open_delivered(q);
    write_options(q);
    q->st->spool_corrupt += fwd_spool_corrupt(q->spool);
    fwd_journal_recover(q->spool_dir, q->cfg->batch_size + q->cfg->max_line + 65536u, on_journal,
                        q);
    if (q->st->replayed_records > before)
        fwd_log(FWD_LOG_INFO, "%s: sending %llu records left in the spool by an earlier run",
                q->label, (unsigned long long)(q->st->replayed_records - before));
    return 0;
}

/*
 * The spool, opened on first use; NULL if there is none. A spool that cannot be opened
 * (a full disk, say) is tried again every SPOOL_RETRY_NS; each failure is logged.
 */
static struct fwd_spool *spool_get(struct fwd_queue *q)
{
    char err[512];
    int rc;

    if (q->spool == NULL && q->cfg->spool_limit != 0 &&
        (rc = fwd_queue_open_spool(q, err, sizeof(err))) < 0 && rc != -EAGAIN)
        fwd_log_rl(FWD_LOG_ERROR, NULL,
                   "%s: no disk spool, buffering in memory only: %s (tried again in %llu s; "
                   "check the disk of --state-dir / FWDLOG_STATE_DIR)",
                   q->label, err, (unsigned long long)(SPOOL_RETRY_NS / 1000000000u));
    return q->spool;
}

/* Why the spool took no more, for a drop's log line. */
static const char *spool_why(const struct fwd_queue *q, char *buf, size_t n)
{
    if (q->cfg->spool_limit == 0)
        return "no spool (spool-limit 0)";
    if (q->spool == NULL || q->spool_failed)
        return "the spool cannot be written (see the error logged before)";
    snprintf(buf, n, "the spool full (spool-limit %llu)", (unsigned long long)q->cfg->spool_limit);
    return buf;
}

/* Write b to the spool if it has room. 0, -ENOSPC (spool-limit), or -EIO (no spool, errors). */
static int spool_write(struct fwd_queue *q, struct fwd_batch *b)
{
    struct fwd_spool *sp = spool_get(q);
    int rc;

    if (sp == NULL)
        return -EIO;
    if (fwd_spool_live_bytes(sp) + FWD_SPOOL_RECORD_OVERHEAD + b->tag_len + b->entries_len >
        q->cfg->spool_limit)
        return -ENOSPC;
    rc = fwd_spool_append(sp, b->seq, b->count, q->cfg->gzip ? FWD_SPOOL_GZIP : 0, fwd_batch_tag(b),
                          b->tag_len, b->entries.data, b->entries.len, &b->ref);
    q->spool_failed = rc < 0;
    if (rc < 0) {
        fwd_log_rl(FWD_LOG_ERROR, NULL,
                   "%s: cannot write to the spool in %s: %s; batches stay in memory "
                   "(fluentd-buffer-limit %llu), and the spool is tried again with the next one",
                   q->label, q->spool_dir, strerror(-rc), (unsigned long long)q->cfg->buffer_limit);
        return -EIO;
    }
    q->st->spooled_batches++;
    write_options(q);
    return 0;
}

/* Free the entries of a queued batch that is in the spool. */
static void evict(struct fwd_queue *q, struct fwd_batch *b)
{
    fwd_fair_evict(&q->fair, b);
    q->mem -= b->entries_len;
    b->spilled = true;
    fwd_buf_release(&b->entries);
}

/* Read a spilled batch back. 0, or -EIO: it is unreadable and was dropped. */
static int load(struct fwd_queue *q, struct fwd_batch *b)
{
    int rc = fwd_spool_read(q->spool, &b->ref, &b->entries);

    if (rc == 0 && b->entries.len == b->entries_len) {
        b->spilled = false;
        q->mem += b->entries_len;
        return 0;
    }
    fwd_log_rl(FWD_LOG_ERROR, fwd_batch_first_cid(b),
               "%s: a spooled batch of %u records in %s is unreadable (%s): dropped", q->label,
               b->count, q->spool_dir, rc == -EBADMSG ? "checksum mismatch" : "read error");
    q->st->spool_corrupt++;
    fwd_queue_drop(q, b);
    return -EIO;
}

static int keep_rejected(void *ctx, const struct fwd_spool_item *it)
{
    (void)ctx;
    (void)it;
    return 0; /* an earlier run's rejected batches stay, and count against spool-limit */
}

/*
 * Write b to state_dir/rejected/<the spool directory's name>, outside spool/ so no
 * start replays it, within what spool-limit leaves. 0 or -errno.
 */
static int rejected_write(struct fwd_queue *q, struct fwd_batch *b)
{
    char dir[FWD_PATH_MAX], err[512];
    struct fwd_spool_ref ref;
    const char *name;
    int rc;

    if (spool_get(q) == NULL || b->spilled)
        return -EIO;
    if (q->rejected == NULL) {
        name = strrchr(q->spool_dir, '/');
        fwd_pathf(dir, sizeof(dir), "%s/rejected", q->state_dir);
        if (mkdir(dir, 0700) == -1 && errno != EEXIST)
            return -errno;
        fwd_pathf(dir, sizeof(dir), "%s/rejected/%s", q->state_dir, name ? name + 1 : q->spool_dir);
        rc = fwd_spool_open(dir, q->syncer, &q->rejected, keep_rejected, NULL, err, sizeof(err));
        if (rc < 0) {
            fwd_log_rl(FWD_LOG_ERROR, NULL, "%s: %s", q->label, err);
            return rc;
        }
    }
    if (fwd_spool_live_bytes(q->spool) + fwd_spool_live_bytes(q->rejected) +
            FWD_SPOOL_RECORD_OVERHEAD + b->tag_len + b->entries_len >
        q->cfg->spool_limit)
        return -ENOSPC;
    return fwd_spool_append(q->rejected, b->seq, b->count, q->cfg->gzip ? FWD_SPOOL_GZIP : 0,
                            fwd_batch_tag(b), b->tag_len, b->entries.data, b->entries.len, &ref);
}

/*
 * b failed FWD_MAX_SEND_ATTEMPTS sends: the aggregator refuses it (too large for
 * its buffer, say). It leaves the queue, so what comes after it moves on.
 */
static void reject(struct fwd_queue *q, struct fwd_batch *b)
{
    int rc = rejected_write(q, b);

    q->st->records_rejected += b->count;
    q->st->batches_rejected++;
    q->dc.records_rejected += b->count;
    fwd_batch_count_drop(b, true);
    fwd_log_rl(FWD_LOG_ERROR, fwd_batch_first_cid(b),
               "%s: a batch of %u records (%zu bytes) failed %u sends in a row (the aggregator "
               "closes the connection on it: larger than it accepts?): %s%s%s",
               q->label, b->count, fwd_batch_wire_len(b), b->attempts,
               rc == 0 ? "set aside in " : "dropped (",
               rc == 0 ? fwd_spool_dir(q->rejected) : strerror(-rc), rc == 0 ? "" : ")");
    b->next = NULL;
    fwd_queue_done(q, b);
}

struct fwd_batch *fwd_queue_pop(struct fwd_queue *q)
{
    while (q->head != NULL) {
        struct fwd_batch *b = list_pop(q);

        if (!b->spilled || load(q, b) == 0)
            return b;
    }
    return NULL;
}

uint64_t fwd_queue_persist(struct fwd_queue *q, uint64_t *lost)
{
    uint64_t kept = 0;

    *lost = 0;
    for (struct fwd_batch *b = q->head; b != NULL; b = b->next) {
        if (b->ref.seg != NULL)
            continue;
        if (spool_write(q, b) == 0)
            kept += b->count;
        else
            *lost += b->count;
    }
    return kept;
}

/* ---- limits and the overflow policies ---------------------------------------------------- */

static bool over_memory(const struct fwd_queue *q)
{
    return q->mem + q->openbytes + q->heldbytes > q->cfg->buffer_limit;
}

void fwd_queue_update_blocked(struct fwd_queue *q)
{
    bool was = q->blocked;

    if (q->cfg->overflow != FWD_OVERFLOW_BLOCK)
        return;
    /* Room again once memory is back under its limit (new batches can spill or stay).
     * Frame tails do not count here: a container held back never completes its frame. */
    q->blocked = q->mem + q->openbytes + q->heldbytes - q->tailbytes > q->cfg->buffer_limit &&
                 (q->spool == NULL ||
                  fwd_spool_live_bytes(q->spool) + q->cfg->batch_size > q->cfg->spool_limit);
    if (was && !q->blocked) {
        fwd_log(FWD_LOG_INFO, "%s: buffer has room again: reading containers' logs again",
                q->label);
        while (q->waiters != NULL) {
            struct fwd_waiter *w = q->waiters;

            q->waiters = w->next;
            w->next = NULL;
            w->waiting = false;
            w->wake(w);
        }
    }
}

bool fwd_queue_wait(struct fwd_queue *q, struct fwd_waiter *w)
{
    if (!q->blocked)
        return false;
    if (!w->waiting) {
        w->waiting = true;
        w->next = q->waiters;
        q->waiters = w;
    }
    return true;
}

void fwd_queue_unwait(struct fwd_queue *q, struct fwd_waiter *w)
{
    if (!w->waiting)
        return;
    for (struct fwd_waiter **pp = &q->waiters; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    }
    w->next = NULL;
    w->waiting = false;
}

/*
 * Drop a batch of the kind asked for: the oldest of the source holding the most queued
 * bytes (fwd_fair.h), or if it has none of that kind, the oldest of the queue. false if
 * there is none. If it was *newest (the batch being admitted), *newest becomes NULL.
 */
static bool drop_oldest(struct fwd_queue *q, enum fwd_fair_kind kind, uint64_t *records,
                        struct fwd_batch **newest)
{
    struct fwd_batch *b = fwd_fair_victim(&q->fair, kind, false);

    if (b == NULL && kind == FWD_FAIR_IN_MEMORY)
        b = q->fair.resident.head;
    else if (b == NULL)
        for (b = q->head; b != NULL && kind == FWD_FAIR_IN_SPOOL && b->ref.seg == NULL;)
            b = b->next;
    if (b == NULL)
        return false;
    list_unlink(q, b);
    if (newest != NULL && *newest == b)
        *newest = NULL;
    *records += b->count;
    fwd_queue_drop(q, b);
    return true;
}

/*
 * drop-newest: b, just queued, goes when its source holds the most queued bytes (or as
 * much as the one that does); otherwise that source's newest batch of kind goes, to make
 * room for b. Returns what went.
 */
static struct fwd_batch *drop_newest(struct fwd_queue *q, struct fwd_batch *b,
                                     enum fwd_fair_kind kind)
{
    char why[64];
    const struct fwd_qsrc *heavy = fwd_fair_heaviest(&q->fair);
    struct fwd_batch *v = NULL;

    if (heavy != NULL && b->owner->bytes < heavy->bytes)
        v = fwd_fair_victim(&q->fair, kind, true);
    if (v == NULL)
        v = b;
    list_unlink(q, v);
    fwd_log_rl(FWD_LOG_WARN, fwd_batch_first_cid(v),
               "%s: memory (fluentd-buffer-limit %llu) full and %s: dropped the newest %u "
               "records of the container holding the most (overflow-policy drop-newest)",
               q->label, (unsigned long long)q->cfg->buffer_limit, spool_why(q, why, sizeof(why)),
               v->count);
    fwd_queue_drop(q, v);
    return v;
}

/* b goes to the spool first (file mode, every aggregator down, or memory full). */
static bool spool_first(struct fwd_queue *q, struct fwd_batch *b, uint64_t *dropped)
{
    for (;;) {
        int rc = spool_write(q, b);

        if (rc == 0)
            return true;
        if (rc != -ENOSPC || q->cfg->overflow != FWD_OVERFLOW_DROP_OLDEST ||
            !drop_oldest(q, FWD_FAIR_IN_SPOOL, dropped, NULL))
            return false; /* no spool, or full and nothing older to give way */
    }
}

/*
 * Memory: move resident batches to the spool, oldest first (they are read back when
 * their turn comes); only when none can move does the overflow policy decide, and it
 * drops only batches that free memory. What is left over the limit then is the open
 * batches and what the aggregators are writing: bounded by batch-size each. Returns
 * b, or NULL if b itself was dropped.
 */
static struct fwd_batch *make_room(struct fwd_queue *q, struct fwd_batch *b, uint64_t *dropped)
{
    while (over_memory(q) && b != NULL) {
        struct fwd_batch *v = q->fair.resident.head; /* the oldest in memory */
        /* spilled batches only while they alone (their bookkeeping) are over the limit */
        enum fwd_fair_kind kind = q->mem > q->cfg->buffer_limit ? FWD_FAIR_ANY : FWD_FAIR_IN_MEMORY;

        if (v != NULL && (v->ref.seg != NULL || spool_write(q, v) == 0)) {
            evict(q, v);
            continue;
        }
        if (q->cfg->overflow == FWD_OVERFLOW_DROP_OLDEST) {
            if (drop_oldest(q, kind, dropped, &b))
                continue;
            break;
        }
        if (q->cfg->overflow == FWD_OVERFLOW_DROP_NEWEST &&
            (!b->spilled || q->mem > q->cfg->buffer_limit)) {
            if (drop_newest(q, b, kind) != b)
                continue;
            b = NULL;
        }
        break;
    }
    return b;
}

/* A sealed batch: put it in memory or the spool, within the limits, or as the policy says. */
static struct fwd_batch *admit(struct fwd_queue *q, struct fwd_batch *b)
{
    char why[64];
    uint64_t dropped = 0;
    bool file = q->cfg->buffer_type == FWD_BUFFER_FILE, on_disk = false;
    size_t cost = fwd_batch_mem(b);

    if (file || q->down || q->mem + cost + q->openbytes + q->heldbytes > q->cfg->buffer_limit)
        on_disk = spool_first(q, b, &dropped);
    q->mem += cost;
    q->qbytes += fwd_batch_wire_len(b);
    list_append(q, b);
    if (on_disk && (!file || over_memory(q)))
        evict(q, b);
    b = make_room(q, b, &dropped);
    if (dropped > 0)
        fwd_log_rl(FWD_LOG_WARN, NULL,
                   "%s: memory (fluentd-buffer-limit %llu) full and %s (aggregator slow or "
                   "down): dropped the oldest %llu records of the containers holding the most",
                   q->label, (unsigned long long)q->cfg->buffer_limit,
                   spool_why(q, why, sizeof(why)), (unsigned long long)dropped);
    if (q->cfg->overflow == FWD_OVERFLOW_BLOCK) {
        bool was = q->blocked;

        fwd_queue_update_blocked(q);
        if (!was && q->blocked)
            fwd_log_rl(FWD_LOG_WARN, NULL,
                       "%s: memory and spool full (overflow-policy block): containers' logs are "
                       "not read until the aggregator catches up",
                       q->label);
    }
    return b;
}

const char *fwd_queue_check(const struct fwd_queue *q)
{
    const char *why = fwd_fair_check(&q->fair, q->head);
    const struct fwd_batch *prev = NULL;

    for (const struct fwd_batch *b = q->head; why == NULL && b != NULL; prev = b, b = b->next)
        if (b->prev != prev || (prev != NULL && prev->seq >= b->seq))
            why = "the queue is out of order or badly linked";
    return why != NULL || prev == q->tail ? why : "the queue's tail is wrong";
}

int fwd_queue_seal(struct fwd_queue *q, struct fwd_batch *b, const char *tag, size_t tag_len)
{
    if (fwd_batch_seal(b, tag, tag_len, q->cfg->request_ack, q->cfg->gzip) != 0) {
        count_drop(q, b);
        fwd_log_rl(FWD_LOG_ERROR, fwd_batch_first_cid(b),
                   "%s: out of memory sealing a batch%s: dropped %u records", q->label,
                   q->cfg->gzip ? " (gzip)" : "", b->count);
        fwd_batch_free(b);
        return -ENOMEM;
    }
    b->seq = q->next_seq++;
    return admit(q, b) != NULL ? 0 : -ENOBUFS;
}
