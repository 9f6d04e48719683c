/*
 * stream.c - streams: one tag's open batch on a destination (see fwd_output.h).
 *
 * Records are packed straight into the open batch (fwd_stream_begin reserves
 * room, fwd_stream_commit counts the record). A batch is sealed into its
 * destination's queue when it reaches batch-size or its flush-interval timer
 * fires, and with buffer-type=file its entries are kept in a journal until then
 * (fwd_stream_sync), so a crash loses nothing that was read. Streams with the
 * same tag, flush-interval and batch-size on one destination are shared
 * (counted references).
 */
#define FWD_LOG_MODULE "output"
#include "fwd_dest.h"
#include "fwd_limits.h"
#include "fwd_log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void seal(struct fwd_stream *s)
{
    struct fwd_dest *d = s->dest;
    struct fwd_batch *b = s->open;
    bool queued;

    fwd_loop_timer_stop(d->m->loop, &s->flush_timer);
    if (b == NULL)
        return;
    s->open = NULL;
    d->q.openbytes -= b->entries.len;
    queued = b->count > 0;
    if (queued)
        fwd_queue_seal(&d->q, b, s->tag, s->tag_len); /* consumes b */
    else
        fwd_batch_free(b);
    /* what the journal held is in the spool now (or, without room there, in memory) */
    if (s->jrn != NULL && (s->journaled > 0 || s->jrn_gap)) {
        s->journaled = 0;
        s->jrn_gap = fwd_journal_reset(s->jrn) != 0;
    }
    if (queued) {
        fwd_dest_kick(d);
    }
}

void fwd_stream_sync(struct fwd_stream *s)
{
    struct fwd_dest *d = s->dest;
    struct fwd_batch *b = s->open;
    int rc;

    if (d->cfg.buffer_type != FWD_BUFFER_FILE || b == NULL || s->jrn_gap ||
        b->entries.len <= s->journaled || d->q.spool == NULL)
        return;
    if (s->jrn == NULL &&
        (rc = fwd_journal_create(d->q.spool_dir, s->tag, s->tag_len, &s->jrn)) != 0)
        goto fail;
    rc = fwd_journal_append(s->jrn, b->entries.data + s->journaled, b->entries.len - s->journaled);
    if (rc != 0)
        goto fail;
    s->journaled = b->entries.len;
    return;
fail:
    s->jrn_gap = true;
    fwd_log_rl(FWD_LOG_ERROR, fwd_batch_first_cid(b),
               "%s: cannot keep the open batch in %s: %s (until it is sealed, a crash of "
               "fwdlogd would lose it)",
               d->label, d->q.spool_dir, strerror(-rc));
}

void fwd_stream_hold(struct fwd_stream *s, struct fwd_held *h, size_t bytes, size_t tail)
{
    struct fwd_queue *q = &s->dest->q;

    q->heldbytes = q->heldbytes - h->bytes + bytes;
    q->tailbytes = q->tailbytes - h->tail + tail;
    h->bytes = bytes;
    h->tail = tail;
    fwd_queue_update_blocked(q);
}

static void on_flush_timer(struct fwd_timer *t)
{
    seal(t->ctx);
}

struct fwd_stream *fwd_stream_acquire(struct fwd_outputs *m, const struct fwd_config *cfg,
                                      const char *tag, char *err, size_t errlen)
{
    struct fwd_dest *d = fwd_dest_get(m, cfg, err, errlen);
    struct fwd_stream *s;

    if (d == NULL)
        return NULL;
    if (strlen(tag) > FWD_SPOOL_TAG_MAX) {
        snprintf(err, errlen, "log-opt tag: the tag is longer than %u bytes", FWD_SPOOL_TAG_MAX);
        fwd_dest_maybe_free(d);
        return NULL;
    }
    for (s = d->streams; s != NULL; s = s->next) {
        if (strcmp(s->tag, tag) == 0 && s->flush_ms == cfg->flush_interval_ms &&
            s->batch_size == cfg->batch_size) {
            s->refs++;
            return s;
        }
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL || (s->tag = strdup(tag)) == NULL) {
        snprintf(err, errlen, "out of memory");
        free(s);
        fwd_dest_maybe_free(d);
        return NULL;
    }
    s->dest = d;
    s->tag_len = strlen(tag);
    s->flush_ms = cfg->flush_interval_ms;
    s->batch_size = cfg->batch_size;
    s->refs = 1;
    s->next = d->streams;
    d->streams = s;
    return s;
}

void fwd_stream_release(struct fwd_stream *s)
{
    struct fwd_dest *d;

    if (s == NULL || --s->refs > 0)
        return;
    d = s->dest;
    seal(s);
    for (struct fwd_stream **pp = &d->streams; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    fwd_journal_destroy(s->jrn);
    free(s->tag);
    free(s);
    fwd_dest_maybe_free(d);
}

int fwd_stream_begin(struct fwd_stream *s, size_t max, msgpack_packer *pk)
{
    struct fwd_batch *b = s->open;

    if (b != NULL && b->count > 0 && b->entries.len + max > s->batch_size) {
        seal(s);
        b = NULL;
    }
    if (b == NULL) {
        b = fwd_batch_new();
        if (b == NULL)
            return -ENOMEM;
        s->open = b;
    }
    if (fwd_buf_reserve(&b->entries, max) != 0)
        return -ENOMEM;
    s->reserved_from = b->entries.len;
    msgpack_packer_init(pk, &b->entries, fwd_buf_msgpack_write_reserved);
    return 0;
}

void fwd_stream_commit(struct fwd_stream *s, struct fwd_src *src)
{
    struct fwd_batch *b = s->open;

    b->count++;
    fwd_batch_note_src(b, src);
    s->dest->q.openbytes += b->entries.len - s->reserved_from;
    if (b->entries.len >= s->batch_size) {
        seal(s);
        return;
    }
    if (!fwd_timer_armed(&s->flush_timer))
        fwd_loop_timer_start(s->dest->m->loop, &s->flush_timer, s->flush_ms, on_flush_timer, s);
}

void fwd_stream_flush(struct fwd_stream *s)
{
    seal(s);
}

bool fwd_stream_blocked(struct fwd_stream *s, struct fwd_waiter *w)
{
    return fwd_queue_wait(&s->dest->q, w);
}

void fwd_stream_unwait(struct fwd_stream *s, struct fwd_waiter *w)
{
    if (s != NULL)
        fwd_queue_unwait(&s->dest->q, w);
}

const char *fwd_stream_label(const struct fwd_stream *s)
{
    return s->dest->label;
}

void fwd_outputs_flush_all(struct fwd_outputs *m)
{
    for (struct fwd_dest *d = m->dests, *next; d != NULL; d = next) {
        next = d->next;
        for (struct fwd_stream *s = d->streams; s != NULL; s = s->next)
            seal(s);
    }
}
