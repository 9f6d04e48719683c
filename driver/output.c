/*
 * output.c - destinations: dispatch and balancing over their connections,
 * lifetimes, adopting the spools of an earlier run (replay.c reads them) and
 * stats. Their streams (open batches) are stream.c's; the structs both use are
 * in fwd_dest.h.
 *
 * A destination (struct fwd_dest) owns the queue of sealed batches (queue.c)
 * and one connection (conn.c) per address in its fluentd-address list.
 * Connections take batches from the queue when they can write them: with
 * balance=failover only the first connected one does (the others stand by),
 * with round-robin each batch goes to the next connected one with room. When a
 * connection fails, its batches go back to the queue in order and the next one
 * takes them; the failed one is probed again after its back-off and rejoins
 * once it connects. When every connection has failed more than max_retries
 * times in a row the queue is dropped (counted, logged) and the count starts
 * again.
 *
 * Lifetimes: nothing is freed from inside its own callback. An orphan
 * destination (no streams) lingers DEST_LINGER_MS once drained, so a container
 * that restarts finds its connection open; then it is marked for reaping and
 * the reap timer (a zero-delay timer, so at the end of the loop's turn) frees
 * it with its spool directory. Connections report through ops and never free
 * their destination.
 */
#define FWD_LOG_MODULE "output"
#include "fwd_output.h"
#include "fwd_dest.h"
#include "fwd_batch.h"
#include "fwd_closer.h"
#include "fwd_conn.h"
#include "fwd_file.h"
#include "fwd_journal.h"
#include "fwd_limits.h"
#include "fwd_log.h"
#include "fwd_queue.h"
#include "fwd_resolve.h"
#include "fwd_spooldir.h"
#include "fwd_tls.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An orphan destination stays this long after it drained (a restarted container reuses it). */
#define DEST_LINGER_MS 5000

/* ---- dispatch and balancing ------------------------------------------------------------ */

static bool dest_has_data(const struct fwd_dest *d)
{
    if (fwd_queue_has_data(&d->q))
        return true;
    for (unsigned i = 0; i < d->nconns; i++)
        if (d->conns[i].qhead != NULL)
            return true;
    return false;
}

/* The lowest sequence number a connection holds (the queue's delivered mark). */
static uint64_t oldest_taken(void *ctx)
{
    const struct fwd_dest *d = ctx;
    uint64_t low = UINT64_MAX;

    for (unsigned i = 0; i < d->nconns; i++) {
        uint64_t s = fwd_conn_oldest_seq(&d->conns[i]);

        low = s < low ? s : low;
    }
    return low;
}

/* The connection the next batch goes to, or NULL. */
static struct fwd_conn *pick(struct fwd_dest *d)
{
    if (d->cfg.balance == FWD_BALANCE_FAILOVER) {
        for (unsigned i = 0; i < d->nconns; i++)
            if (d->conns[i].state == FWD_CONN_CONNECTED)
                return fwd_conn_has_room(&d->conns[i]) ? &d->conns[i] : NULL;
        return NULL;
    }
    for (unsigned k = 0; k < d->nconns; k++) {
        unsigned i = (d->rr + k) % d->nconns;

        if (fwd_conn_has_room(&d->conns[i])) {
            d->rr = (i + 1) % d->nconns;
            return &d->conns[i];
        }
    }
    return NULL;
}

/* Hand queued batches to the connections that can take them. */
static void dispatch(struct fwd_dest *d)
{
    bool fed[FWD_MAX_ADDRS] = {false};

    while (d->q.head != NULL) {
        struct fwd_conn *c = pick(d);
        struct fwd_batch *b;

        if (c == NULL)
            break;
        b = fwd_queue_pop(&d->q);
        if (b == NULL)
            break; /* what was left was unreadable in the spool (dropped, counted) */
        fwd_conn_take(c, b);
        fed[c - d->conns] = true;
    }
    for (unsigned i = 0; i < d->nconns; i++)
        if (fed[i])
            fwd_conn_kick(&d->conns[i]);
}

/* Is every connection failing (BACKOFF) since it was last connected? */
static void update_down(struct fwd_dest *d)
{
    bool down = true;

    for (unsigned i = 0; i < d->nconns; i++)
        if (d->conns[i].state != FWD_CONN_BACKOFF)
            down = false;
    if (down && !d->q.down && d->cfg.spool_limit != 0)
        fwd_log(FWD_LOG_DEBUG, "%s: every aggregator is down: new batches go to the spool",
                d->label);
    d->q.down = down;
}

/* Start the connections the balance mode wants while there is something to send. */
static void ensure_connections(struct fwd_dest *d)
{
    update_down(d);
    if (!dest_has_data(d))
        return;
    for (unsigned i = 0; i < d->nconns; i++) {
        struct fwd_conn *c = &d->conns[i];

        fwd_conn_start(c);
        /* failover: the next one only once this one is failing */
        if (d->cfg.balance == FWD_BALANCE_FAILOVER && c->state != FWD_CONN_BACKOFF)
            break;
    }
}

/* Has every aggregator of d failed more than fluentd-max-retries times in a row? */
void fwd_dest_kick(struct fwd_dest *d)
{
    dispatch(d);
    ensure_connections(d);
}

static bool retries_exhausted(const struct fwd_dest *d)
{
    for (unsigned i = 0; i < d->nconns; i++)
        if (d->conns[i].state == FWD_CONN_CONNECTED || d->conns[i].failures <= d->cfg.max_retries)
            return false;
    return true;
}

/* ---- lifetimes ------------------------------------------------------------------------- */

static void dest_destroy(struct fwd_dest *d)
{
    for (struct fwd_dest **pp = &d->m->dests; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == d) {
            *pp = d->next;
            break;
        }
    }
    fwd_loop_timer_stop(d->m->loop, &d->linger);
    for (unsigned i = 0; i < d->nconns; i++)
        fwd_conn_destroy(&d->conns[i]);
    fwd_queue_fini(&d->q);
    SSL_CTX_free(d->env.tls_ctx);
    free(d->key);
    free(d);
}

static void on_reap(struct fwd_timer *t)
{
    struct fwd_outputs *m = t->ctx;

    for (struct fwd_dest *d = m->dests, *next; d != NULL; d = next) {
        next = d->next;
        if (d->reap && d->streams == NULL && !dest_has_data(d))
            dest_destroy(d);
        else
            d->reap = false;
    }
}

static void on_linger(struct fwd_timer *t)
{
    struct fwd_dest *d = t->ctx;

    if (d->streams != NULL || dest_has_data(d))
        return; /* taken again, or more to send: looked at again once drained */
    d->reap = true;
    fwd_loop_timer_start(d->m->loop, &d->m->reap, 0, on_reap, d->m);
}

/*
 * An orphan destination with nothing left to send lingers, then goes. Never
 * frees d itself, so any callback may call it and go on using d.
 */
void fwd_dest_maybe_free(struct fwd_dest *d)
{
    if (d->streams == NULL && !dest_has_data(d) && !fwd_timer_armed(&d->linger))
        fwd_loop_timer_start(d->m->loop, &d->linger, DEST_LINGER_MS, on_linger, d);
}

/* ---- what connections report ----------------------------------------------------------- */

static void on_conn_ready(struct fwd_conn *c)
{
    struct fwd_dest *d = c->env->owner;

    update_down(d);
    dispatch(d);
}

static void on_conn_failed(struct fwd_conn *c)
{
    struct fwd_dest *d = c->env->owner;

    if (retries_exhausted(d)) {
        fwd_queue_drop_all(&d->q, d->cfg.max_retries ? "fluentd-max-retries reached"
                                                     : "fluentd-max-retries is 0");
        for (unsigned i = 0; i < d->nconns; i++)
            d->conns[i].failures = d->cfg.max_retries ? 0 : d->conns[i].failures;
    }
    /* Another aggregator takes over what this one held (failover), or its share. */
    dispatch(d);
    ensure_connections(d);
}

static void on_conn_take_more(struct fwd_conn *c)
{
    dispatch(c->env->owner);
}

static bool on_conn_has_data(struct fwd_conn *c)
{
    return dest_has_data(c->env->owner);
}

static void on_conn_maybe_done(struct fwd_conn *c)
{
    fwd_dest_maybe_free(c->env->owner);
}

static const struct fwd_conn_ops conn_ops = {
    .ready = on_conn_ready,
    .failed = on_conn_failed,
    .take_more = on_conn_take_more,
    .has_data = on_conn_has_data,
    .maybe_done = on_conn_maybe_done,
};

/* ---- destinations ---------------------------------------------------------------------- */

/*
 * A new destination for cfg (not looked up). spool_dir: an existing spool to
 * adopt, or NULL. replay_only: it only drains spool_dir (its key never matches).
 */
static struct fwd_dest *dest_new(struct fwd_outputs *m, const struct fwd_config *cfg,
                                 const char *spool_dir, bool replay_only, char *err, size_t errlen)
{
    struct fwd_dest *d;
    SSL_CTX *ctx = NULL;
    bool tls = false;
    char named[FWD_PATH_MAX];

    for (unsigned i = 0; i < cfg->naddrs; i++)
        tls |= cfg->addrs[i].scheme == FWD_ADDR_TLS;
    if (tls && (ctx = fwd_tls_context(cfg, err, errlen)) == NULL)
        return NULL;
    if (spool_dir == NULL && fwd_outputs_other_spool_name(m, cfg, named, sizeof(named)))
        spool_dir = named;
    d = calloc(1, sizeof(*d));
    if (d == NULL || (d->key = strdup(replay_only ? "" : cfg->dest_key)) == NULL) {
        snprintf(err, errlen, "out of memory");
        SSL_CTX_free(ctx);
        free(d);
        return NULL;
    }
    d->m = m;
    d->cfg = *cfg;
    d->replay_only = replay_only;
    d->nconns = cfg->naddrs;
    d->env = (struct fwd_conn_env){m->loop, m->resolver, m->closer, &d->cfg, ctx,
                                   &d->q,   &m->st,      &conn_ops, d};
    for (unsigned i = 0; i < d->nconns; i++) {
        size_t off = strlen(d->label);

        fwd_conn_init(&d->conns[i], &d->env, &cfg->addrs[i]);
        snprintf(d->label + off, sizeof(d->label) - off, "%s%s", i ? "," : "", d->conns[i].label);
    }
    /* the options it is made with go to the spool's options.json (the lists are the caller's) */
    if (fwd_queue_init(&d->q, &d->cfg, d->label, m->state_dir, spool_dir, &m->st, oldest_taken,
                       d) != 0) {
        snprintf(err, errlen, "out of memory");
        dest_destroy(d);
        return NULL;
    }
    d->q.syncer = m->syncer;
    d->cfg.opts = d->cfg.defaults = NULL;
    d->cfg.nopts = d->cfg.ndefaults = 0;
    d->cfg.tag = d->cfg.labels = d->cfg.labels_regex = d->cfg.env = d->cfg.env_regex = NULL;
    d->next = m->dests;
    m->dests = d;
    return d;
}

static struct fwd_dest *dest_find(const struct fwd_outputs *m, const char *key)
{
    struct fwd_dest *d = m->dests;

    while (d != NULL && strcmp(d->key, key) != 0)
        d = d->next;
    return d;
}

struct fwd_dest *fwd_dest_get(struct fwd_outputs *m, const struct fwd_config *cfg, char *err,
                              size_t errlen)
{
    struct fwd_dest *d = dest_find(m, cfg->dest_key);
    char why[1024];

    if (d != NULL) {
        fwd_loop_timer_stop(m->loop, &d->linger); /* taken again before it went */
        d->reap = false;
        return d;
    }
    d = dest_new(m, cfg, NULL, false, err, errlen);
    if (d == NULL)
        return NULL;
    fwd_outputs_waiting_take(m, &m->waiting, cfg->spool_id); /* spools that waited for its key */
    if (cfg->buffer_type != FWD_BUFFER_FILE)
        return d;
    if (fwd_queue_open_spool(&d->q, why, sizeof(why)) < 0) {
        snprintf(err, errlen,
                 "log-opt buffer-type=file: %s (the plugin's state directory must be "
                 "writable: --state-dir or FWDLOG_STATE_DIR)",
                 why);
        dest_destroy(d);
        return NULL;
    }
    ensure_connections(d); /* what an earlier run left in it goes first */
    return d;
}

struct fwd_outputs *fwd_outputs_create(struct fwd_loop *loop, struct fwd_syncer *syncer,
                                       const char *state_dir, char *err, size_t errlen)
{
    struct fwd_outputs *m = calloc(1, sizeof(*m));

    snprintf(err, errlen, "out of memory");
    if (m == NULL)
        return NULL;
    m->loop = loop;
    m->syncer = syncer;
    m->state_dir = strlen(state_dir) < FWD_PATH_MAX - 200 ? strdup(state_dir) : NULL;
    m->resolver = fwd_resolver_create(loop, err, errlen);
    m->closer = fwd_closer_create(loop);
    if (m->state_dir == NULL || m->resolver == NULL || m->closer == NULL) {
        if (m->resolver != NULL && m->closer == NULL)
            snprintf(err, errlen, "out of memory");
        fwd_outputs_destroy(m);
        return NULL;
    }
    return m;
}

void fwd_outputs_close_all(struct fwd_outputs *m)
{
    while (m->dests != NULL) {
        struct fwd_dest *d = m->dests;

        while (d->streams != NULL) {
            struct fwd_stream *s = d->streams;

            d->streams = s->next;
            fwd_loop_timer_stop(m->loop, &s->flush_timer);
            fwd_batch_free(s->open);
            if (s->journaled == 0 && !s->jrn_gap)
                fwd_journal_destroy(s->jrn); /* empty: everything it held was sealed */
            else
                fwd_journal_close(s->jrn); /* unsealed records: the next start sends them */
            free(s->tag);
            free(s);
        }
        d->q.openbytes = 0;
        dest_destroy(d);
    }
}

void fwd_outputs_destroy(struct fwd_outputs *m)
{
    if (m == NULL)
        return;
    fwd_outputs_close_all(m);
    fwd_loop_timer_stop(m->loop, &m->reap);
    fwd_closer_destroy(m->closer);
    fwd_resolver_destroy(m->resolver);
    fwd_outputs_waiting_free(m->waiting);
    free(m->state_dir);
    free(m);
}

bool fwd_outputs_closing(const struct fwd_outputs *m)
{
    return fwd_closer_pending(m->closer) > 0;
}

/* ---- replay (replay.c) and persist ----------------------------------------------------- */

/* The destination whose spool directory dir is (open, or named so for when it opens), or NULL. */
static struct fwd_dest *dest_of_dir(const struct fwd_outputs *m, const char *dir)
{
    char own[FWD_PATH_MAX];

    for (struct fwd_dest *d = m->dests; d != NULL; d = d->next) {
        if (d->q.spool_dir == NULL)
            fwd_pathf(own, sizeof(own), "%s/spool/%s", m->state_dir, d->cfg.spool_id);
        if (strcmp(d->q.spool_dir ? d->q.spool_dir : own, dir) == 0)
            return d;
    }
    return NULL;
}

bool fwd_outputs_dir_held(const struct fwd_outputs *m, const char *dir)
{
    return dest_of_dir(m, dir) != NULL;
}

int fwd_outputs_adopt(struct fwd_outputs *m, const struct fwd_config *cfg, const char *spool_id,
                      const char *dir, size_t *batches, char *err, size_t errlen)
{
    struct fwd_dest *d = dest_of_dir(m, dir), *r;

    *batches = 0;
    if (d != NULL && d->q.spool_tried)
        return 0;  /* open already (a resumed stream's destination, buffer-type=file) */
    if (d == NULL) /* else its destination: it would open it on first use */
        d = cfg ? dest_find(m, cfg->dest_key) : m->dests;
    while (cfg == NULL && d != NULL && (d->replay_only || strcmp(d->cfg.spool_id, spool_id) != 0))
        d = d->next;
    if (cfg == NULL && d == NULL)
        return -ENOENT;
    if (d != NULL && !d->q.spool_tried &&
        (d->q.spool_dir == NULL || strcmp(d->q.spool_dir, dir) == 0)) {
        r = d; /* its own spool: new batches go there too */
        if (d->q.spool_dir == NULL && (d->q.spool_dir = strdup(dir)) == NULL) {
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
    } else if ((r = dest_new(m, cfg ? cfg : &d->cfg, dir, d != NULL, err, errlen)) == NULL) {
        return -EINVAL;
    } else if (cfg == NULL) { /* d's option lists are gone: what it was made with */
        json_decref(r->q.options);
        r->q.options = json_deep_copy(d->q.options);
    }
    if (fwd_queue_open_spool(&r->q, err, errlen) < 0)
        fwd_log(FWD_LOG_ERROR, "spool %s: %s", dir, err);
    for (const struct fwd_batch *b = r->q.head; b != NULL; b = b->next)
        ++*batches;
    if (*batches > 0)
        ensure_connections(r);
    else
        fwd_dest_maybe_free(r);    /* empty: it lingers and goes, with its directory */
    if (r != d && !r->replay_only) /* a new destination: spools that waited for its key */
        fwd_outputs_waiting_take(m, &m->waiting, r->cfg.spool_id);
    return 0;
}

const char *fwd_outputs_state_dir(const struct fwd_outputs *m)
{
    return m->state_dir;
}

struct fwd_waiting **fwd_outputs_waiting(struct fwd_outputs *m)
{
    return &m->waiting;
}

void fwd_outputs_persist(struct fwd_outputs *m)
{
    for (struct fwd_dest *d = m->dests; d != NULL; d = d->next) {
        uint64_t kept, lost;

        for (unsigned i = 0; i < d->nconns; i++)
            fwd_conn_give_back(&d->conns[i]); /* everything unacknowledged goes in too */
        kept = fwd_queue_persist(&d->q, &lost);
        if (kept > 0)
            fwd_log(FWD_LOG_INFO,
                    "%s: %llu undelivered records kept in the spool for the next start", d->label,
                    (unsigned long long)kept);
        if (lost > 0)
            fwd_log(FWD_LOG_ERROR, "%s: %llu undelivered records lost (no room in the spool)",
                    d->label, (unsigned long long)lost);
    }
}

bool fwd_outputs_idle(const struct fwd_outputs *m)
{
    for (const struct fwd_dest *d = m->dests; d != NULL; d = d->next)
        if (dest_has_data(d))
            return false;
    return true;
}

void fwd_outputs_stats(const struct fwd_outputs *m, struct fwd_output_stats *st)
{
    *st = m->st;
    st->queued_bytes = st->destinations = st->memory_bytes = st->spool_bytes = st->blocked = 0;
    for (const struct fwd_dest *d = m->dests; d != NULL; d = d->next) {
        st->queued_bytes += d->q.qbytes + d->q.openbytes;
        st->memory_bytes += d->q.mem + d->q.openbytes + d->q.heldbytes;
        st->spool_bytes += d->q.spool ? fwd_spool_bytes(d->q.spool) : 0;
        st->blocked += d->q.blocked;
        st->destinations++;
    }
}

/* ---- per-destination stats (fwd_outputs_each_dest) ------------------------------------ */

static uint64_t older(uint64_t oldest, const struct fwd_batch *b)
{
    return b->count > 0 && (oldest == 0 || b->born < oldest) ? b->born : oldest;
}

/* When the oldest record queued anywhere on d came (monotonic ns; 0: none is queued). */
static uint64_t oldest_queued(const struct fwd_dest *d)
{
    uint64_t o = 0;

    for (const struct fwd_batch *b = d->q.head; b != NULL; b = b->next)
        o = older(o, b);
    for (unsigned i = 0; i < d->nconns; i++)
        for (const struct fwd_batch *b = d->conns[i].qhead; b != NULL; b = b->next)
            o = older(o, b);
    for (const struct fwd_stream *s = d->streams; s != NULL; s = s->next)
        if (s->open != NULL)
            o = older(o, s->open);
    return o;
}

void fwd_outputs_each_dest(const struct fwd_outputs *m, fwd_dest_cb cb, void *ctx)
{
    for (const struct fwd_dest *d = m->dests; d != NULL; d = d->next) {
        const struct fwd_dest_counts *dc = &d->q.dc;
        struct fwd_dest_stats st = {
            .label = d->label,
            .connects = dc->connects,
            .failures = dc->failures,
            .records_sent = dc->records_sent,
            .bytes_sent = dc->bytes_sent,
            .records_dropped = dc->records_dropped,
            .records_rejected = dc->records_rejected,
            .memory_bytes = d->q.mem + d->q.openbytes + d->q.heldbytes,
            .spool_bytes = d->q.spool ? fwd_spool_bytes(d->q.spool) : 0,
            .queued_bytes = d->q.qbytes + d->q.openbytes,
            .oldest_ns = oldest_queued(d),
            .ack = &dc->ack,
            .last_send_unix_ns = dc->last_send_unix,
            .last_send_mono_ns = dc->last_send_mono,
            .last_drop_mono_ns = dc->last_drop_mono,
            .last_error = dc->last_error,
        };

        /* its spool directory's name (SHA-256 of what is not secret), or the start of it */
        snprintf(st.id, sizeof(st.id), "%.16s",
                 d->q.spool_dir ? strrchr(d->q.spool_dir, '/') + 1 : d->cfg.spool_id);
        for (unsigned i = 0; i < d->nconns; i++) {
            st.conns[fwd_conn_output_state(&d->conns[i])]++;
            st.acks_pending += d->conns[i].inflight;
        }
        cb(ctx, &st);
    }
}
