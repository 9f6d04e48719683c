/*
 * output.c - aggregator connections, batches, the send queue and the spool.
 *
 * A destination (struct fwd_output) owns the queue of sealed batches, oldest
 * first by sequence number, and one node (struct node) per address in its
 * fluentd-address list. Nodes take batches from the queue when they can write
 * them: with balance=failover only the first connected node does (the others
 * stand by), with round-robin each batch goes to the next connected node with
 * room. A node holds at most LOOKAHEAD unwritten batches (ACK_WINDOW with
 * acks), so nearly everything queued stays where the overflow policy can
 * reach it. When a node fails, its batches go back to the queue in order and
 * the next node takes them; the failed node is probed again after its
 * back-off and rejoins once it connects.
 *
 * States of a node:
 *   IDLE -> (data queued) RESOLVING -> CONNECTING [-> TLS] [-> HANDSHAKE] -> CONNECTED
 *   any failure -> BACKOFF -> RESOLVING ...
 * Names are resolved again on every connect (an aggregator that moves is
 * found again) by c-ares on the loop (resolve.c). Every resolved address is
 * tried in order before a connect counts as failed. Back-off is retry_wait * 2^(n-1),
 * capped at max-retry-wait, with jitter (a random wait in [w/2, w]). When
 * every node has failed more than max_retries times in a row the queue is
 * dropped (counted, logged) and the count starts again.
 *
 * Without acknowledgements a batch counts as delivered once the kernel took
 * all of it. A batch cut off by a lost connection is sent again whole on the
 * next one (the receiver discards a message it could not read to the end).
 *
 * Memory and disk: a sealed batch is resident (its entries in memory) or
 * spilled (only in the spool; the small struct stays). Memory counts resident
 * entries, each batch's struct and header, and the streams' open batches, and
 * is kept under buffer_limit by spilling new batches to the spool; the spool
 * is kept under spool_limit. With buffer-type=file every batch is written to
 * the spool when sealed, and kept in memory too while there is room. A spilled
 * batch is read back when a node takes it. When neither has room the overflow
 * policy decides: drop-oldest drops the oldest queued batches, drop-newest the
 * new one, block stops the containers' FIFOs from being read (they block once
 * their pipe is full) until there is room. Every dropped record is counted
 * against its container (struct fwd_src). An orphan destination (no streams)
 * lingers DEST_LINGER_MS once drained, so a container that restarts finds its
 * connection open, and is then freed, with its spool directory, by the reap
 * timer (never from inside its own callbacks). A connection that is done
 * (the destination goes, a planned reconnect) is closed gracefully by the
 * closer (closer.c); one that failed is closed at once.
 */
#define FWD_LOG_MODULE "output"
#include "fwd_output.h"
#include "fwd_buf.h"
#include "fwd_closer.h"
#include "fwd_forward.h"
#include "fwd_journal.h"
#include "fwd_limits.h"
#include "fwd_log.h"
#include "fwd_resolve.h"
#include "fwd_spool.h"
#include "fwd_time.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <unistd.h>
#include <zlib.h>

/* An orphan destination stays this long after it drained (a restarted container reuses it). */
#define DEST_LINGER_MS 5000
/* A done connection waits this long for the peer's close (closer.c). */
#define CLOSE_WAIT_MS 2000
#define IOV_BATCHES   32
/* Batches written but not yet acknowledged, at most: bounds what a reconnect resends. */
#define ACK_WINDOW 32
/* Unwritten batches a node takes from the queue ahead of writing them (without acks). */
#define LOOKAHEAD 4
/* Reply bytes buffered while waiting for a whole ack. */
#define REPLY_MAX (64u * 1024u)
#define META_FILE "options.json"
/* The sequence number up to which every batch was delivered or dropped (8 bytes). */
#define DELIVERED_FILE "delivered"

enum state {
    S_IDLE = 0,
    S_RESOLVING,
    S_CONNECTING,
    S_TLS,       /* tls://: the TLS handshake is under way */
    S_HANDSHAKE, /* shared key: waiting for HELO, then PONG; nothing else is written */
    S_CONNECTED,
    S_BACKOFF,
};

struct fwd_src {
    int refs;
    uint64_t dropped;
    uint64_t logged; /* of those, how many fwd_src_log_drops reported */
    char cid[13];
};

/* Records of one source in a batch. */
struct src_count {
    struct fwd_src *src;
    uint32_t n;
};

struct batch {
    struct batch *next;
    struct fwd_buf entries; /* empty while spilled */
    size_t entries_len;     /* on the wire, resident or not */
    uint32_t count;
    bool spilled;
    uint8_t *hdr; /* array(3), str(tag), the entries' bin header */
    size_t hdr_len;
    size_t tag_len;
    uint8_t opt[FWD_FORWARD_OPTIONS_MAX];
    size_t opt_len;
    size_t sent;                           /* bytes of hdr+entries+opt already written */
    char chunk[FWD_FORWARD_CHUNK_LEN + 1]; /* ack mode: the chunk id sent with it */
    uint64_t ack_deadline;                 /* ack mode: when a missing ack fails the link */
    uint64_t seq;                          /* order of sealing, kept in the spool */
    struct fwd_spool_ref ref;              /* where it is in the spool, if it is */
    struct src_count *srcs;
    uint32_t nsrcs, srccap;
};

struct fwd_output;

/* One aggregator of a destination and its connection. */
struct node {
    struct fwd_output *g;
    struct fwd_addr addr;
    char label[300]; /* address for log lines */
    /*
     * Batches taken from the destination's queue, oldest first. With acks, those before
     * unsent are written and wait for their ack (inflight of them); without, unsent is
     * always qhead.
     */
    struct batch *qhead, *qtail, *unsent;
    unsigned inflight, nq;
    struct fwd_buf reply; /* handshake and acks: bytes of a reply not yet complete */
    struct fwd_helo helo; /* handshake: what the server sent */
    char salt[33];        /* handshake: our PING salt */
    char ping_host[256];  /* handshake: the hostname our PING named */
    bool pinged;          /* handshake: PING sent, waiting for PONG */
    SSL *tls;             /* tls://: this connection's session, NULL otherwise */
    enum state state;
    int fd;
    struct fwd_io io;
    struct fwd_timer timer;
    uint32_t failures;
    uint64_t connected_at;
    uint64_t last_progress;
    struct fwd_resolve_req *lookup; /* RESOLVING: the pending lookup */
    struct fwd_resolved addrs;      /* what the name resolved to */
    unsigned next_addr;             /* of those, the next to try */
};

struct fwd_output {
    struct fwd_outputs *m;
    struct fwd_output *next;
    char *key;
    char label[1200]; /* addresses for log lines */
    struct fwd_config cfg;
    struct fwd_stream *streams;
    struct batch *phead, *ptail; /* sealed, not taken by a node; by seq */
    size_t nresident;            /* of those, how many are in memory (not spilled) */
    size_t qbytes;               /* wire bytes of sealed batches (queued and taken) */
    size_t mem;                  /* memory held by sealed batches */
    size_t openbytes;            /* entry bytes in the streams' open batches */
    uint64_t next_seq;
    struct node nodes[FWD_MAX_ADDRS];
    unsigned nnodes;
    unsigned rr;      /* round-robin: the node to try first */
    bool down;        /* every node failed since the last connection */
    bool blocked;     /* overflow-policy=block and no room */
    bool spool_tried; /* the spool was opened, or failed to */
    char *spool_dir;
    struct fwd_spool *spool;
    int delivered_fd;        /* DELIVERED_FILE in the spool directory, or -1 */
    uint64_t delivered_upto; /* what it says */
    struct fwd_waiter *waiters;
    json_t *options;         /* what it was made with, for the spool's options.json */
    SSL_CTX *tls_ctx;        /* tls://: CA store, client certificate, verification mode */
    struct fwd_timer linger; /* orphan and drained: freed when it fires */
    bool reap;               /* the linger passed: the reap timer frees it */
};

struct fwd_stream {
    struct fwd_output *out;
    struct fwd_stream *next;
    char *tag;
    size_t tag_len;
    uint32_t flush_ms;
    size_t batch_size;
    int refs;
    struct batch *open;
    size_t reserved_from; /* entries.len at fwd_stream_begin */
    struct fwd_timer flush_timer;
    struct fwd_journal *jrn; /* buffer-type=file: the open batch on disk */
    size_t journaled;        /* bytes of open->entries in it */
    bool jrn_gap;            /* an append failed: nothing more until the next seal */
};

struct fwd_outputs {
    struct fwd_loop *loop;
    char *state_dir;
    struct fwd_output *outs;
    struct fwd_output_stats st;
    struct fwd_resolver *resolver;
    struct fwd_closer *closer;
    struct fwd_timer reap; /* frees destinations whose linger passed */
};

static void start_connect(struct node *n);
static void ready(struct node *n);
static void transport_ready(struct node *n);
static void tls_start(struct node *n);
static void tls_step(struct node *n);
static void handshake_step(struct node *n);
static const char *tls_error(void);
static void output_maybe_free(struct fwd_output *g);
static void watch(struct node *n);
static void arm_conn_timer(struct node *n);
static void dispatch(struct fwd_output *g);
static void ensure_connections(struct fwd_output *g);
static void update_blocked(struct fwd_output *g);

/* ---- sources ---------------------------------------------------------------------------- */

struct fwd_src *fwd_src_create(const char *cid)
{
    struct fwd_src *src = calloc(1, sizeof(*src));

    if (src != NULL) {
        src->refs = 1;
        snprintf(src->cid, sizeof(src->cid), "%s", cid);
    }
    return src;
}

void fwd_src_release(struct fwd_src *src)
{
    if (src == NULL || --src->refs > 0)
        return;
    if (src->dropped > src->logged)
        fwd_log_c(FWD_LOG_WARN, src->cid,
                  "%llu more records of this container were dropped after it stopped (%llu in "
                  "all)",
                  (unsigned long long)(src->dropped - src->logged),
                  (unsigned long long)src->dropped);
    free(src);
}

void fwd_src_log_drops(struct fwd_src *src)
{
    if (src->dropped > 0)
        fwd_log_c(FWD_LOG_WARN, src->cid,
                  "%llu records of this container were dropped so far (memory and spool full; "
                  "see overflow-policy)",
                  (unsigned long long)src->dropped);
    src->logged = src->dropped;
}

uint64_t fwd_src_dropped(const struct fwd_src *src)
{
    return src->dropped;
}

/* ---- batches ---------------------------------------------------------------------------- */

static bool ack_mode(const struct fwd_output *g)
{
    return g->cfg.request_ack;
}

/* The tag, inside the header: it ends where the entries' bin header begins. */
static const char *batch_tag(const struct batch *b)
{
    size_t bin = b->entries_len < 256 ? 2 : b->entries_len < 65536 ? 3 : 5;

    return (const char *)b->hdr + b->hdr_len - bin - b->tag_len;
}

static size_t batch_wire_len(const struct batch *b)
{
    return b->hdr_len + b->entries_len + b->opt_len;
}

/* What a sealed batch holds in memory. */
static size_t batch_mem(const struct batch *b)
{
    return sizeof(*b) + b->hdr_len + b->srccap * sizeof(struct src_count) +
           (b->spilled ? 0 : b->entries_len);
}

static void batch_free(struct batch *b)
{
    if (b == NULL)
        return;
    for (uint32_t i = 0; i < b->nsrcs; i++)
        fwd_src_release(b->srcs[i].src);
    free(b->srcs);
    fwd_buf_release(&b->entries);
    free(b->hdr);
    free(b);
}

/* A sealed batch leaves the destination: delivered or dropped. */
/*
 * Every batch sealed before the oldest one still queued or taken is done for
 * good. Kept in DELIVERED_FILE, so a restart skips the spool records of
 * batches that were delivered but whose segment was still in use: without
 * it, each restart sent a whole segment again.
 */
static void note_delivered(struct fwd_output *g)
{
    uint64_t low = g->next_seq;

    if (g->phead != NULL && g->phead->seq < low)
        low = g->phead->seq;
    for (unsigned i = 0; i < g->nnodes; i++)
        if (g->nodes[i].qhead != NULL && g->nodes[i].qhead->seq < low)
            low = g->nodes[i].qhead->seq;
    if (g->delivered_fd < 0 || low - 1 <= g->delivered_upto)
        return;
    g->delivered_upto = low - 1;
    if (pwrite(g->delivered_fd, &g->delivered_upto, sizeof(g->delivered_upto), 0) !=
        (ssize_t)sizeof(g->delivered_upto))
        g->delivered_upto = 0; /* tried again next time; a restart may send duplicates */
}

static void batch_done(struct fwd_output *g, struct batch *b)
{
    bool released = b->ref.seg != NULL;

    g->qbytes -= batch_wire_len(b);
    g->mem -= batch_mem(b);
    if (released)
        fwd_spool_release(g->spool, &b->ref);
    batch_free(b);
    if (released)
        note_delivered(g);
    update_blocked(g);
}

/* Count a dropped batch against its containers. */
static void count_drop(struct fwd_output *g, struct batch *b)
{
    g->m->st.records_dropped += b->count;
    g->m->st.batches_dropped++;
    for (uint32_t i = 0; i < b->nsrcs; i++)
        b->srcs[i].src->dropped += b->srcs[i].n;
}

static const char *first_cid(const struct batch *b)
{
    return b->nsrcs > 0 ? b->srcs[0].src->cid : NULL;
}

/* ---- the queue ------------------------------------------------------------------------- */

static struct batch *pending_pop(struct fwd_output *g)
{
    struct batch *b = g->phead;

    g->phead = b->next;
    if (g->phead == NULL)
        g->ptail = NULL;
    b->next = NULL;
    if (!b->spilled)
        g->nresident--;
    return b;
}

/* Put a list of batches (ordered by seq) back into the queue, keeping it ordered. */
static void pending_merge(struct fwd_output *g, struct batch *list)
{
    struct batch head = {0}, *t = &head, *p = g->phead;

    for (const struct batch *b = list; b != NULL; b = b->next)
        g->nresident += !b->spilled;
    while (list != NULL || p != NULL) {
        struct batch **from = p == NULL || (list != NULL && list->seq < p->seq) ? &list : &p;

        t->next = *from;
        t = t->next;
        *from = (*from)->next;
    }
    t->next = NULL;
    g->phead = head.next;
    g->ptail = g->phead ? t : NULL;
}

static void pending_append(struct fwd_output *g, struct batch *b)
{
    b->next = NULL;
    if (g->ptail != NULL && g->ptail->seq > b->seq) {
        pending_merge(g, b);
        return;
    }
    if (g->ptail != NULL)
        g->ptail->next = b;
    else
        g->phead = b;
    g->ptail = b;
    g->nresident += !b->spilled;
}

/* A node's batches go back to the queue (its connection is gone). */
static void requeue(struct node *n)
{
    for (struct batch *b = n->qhead; b != NULL; b = b->next)
        b->sent = 0;
    if (n->qhead != NULL)
        pending_merge(n->g, n->qhead);
    n->qhead = n->qtail = n->unsent = NULL;
    n->inflight = n->nq = 0;
}

static void drop_queue(struct fwd_output *g, const char *why)
{
    uint64_t records = 0;

    while (g->phead != NULL) {
        struct batch *b = pending_pop(g);

        records += b->count;
        count_drop(g, b);
        batch_done(g, b);
    }
    if (records > 0)
        fwd_log(FWD_LOG_ERROR, "%s: dropped %llu queued records: %s", g->label,
                (unsigned long long)records, why);
}

static bool has_data(const struct fwd_output *g)
{
    if (g->phead != NULL || g->openbytes != 0)
        return true;
    for (unsigned i = 0; i < g->nnodes; i++)
        if (g->nodes[i].qhead != NULL)
            return true;
    return false;
}

/* ---- the spool ----------------------------------------------------------------------------- */

/* snprintf for paths (state_dir is at most FWD_PATH_MAX - 200 bytes, checked at create). */
static void pathf(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void pathf(char *out, size_t n, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(out, n, fmt, ap);
    va_end(ap);
}

/* The options cfg was built from (plugin-wide defaults, then log-opts) as a JSON object. */
static json_t *options_json(const struct fwd_config *cfg)
{
    json_t *o = json_object();

    if (o == NULL)
        return NULL;
    for (size_t i = 0; i < cfg->ndefaults; i++)
        json_object_set_new(o, cfg->defaults[i].key, json_string(cfg->defaults[i].value));
    for (size_t i = 0; i < cfg->nopts; i++)
        json_object_set_new(o, cfg->opts[i].key, json_string(cfg->opts[i].value));
    return o;
}

/* The options this destination was made with, so a later run can rebuild it. */
static int write_meta(const struct fwd_output *g)
{
    json_t *o = g->options;
    char path[FWD_PATH_MAX], tmp[FWD_PATH_MAX + 8];
    int rc = -1;

    if (o == NULL)
        return -1;
    pathf(path, sizeof(path), "%s/" META_FILE, g->spool_dir);
    pathf(tmp, sizeof(tmp), "%s.tmp", path);
    /* 0600: it may hold a shared key given inline (the -file options keep it out) */
    {
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

        if (fd >= 0) {
            if (json_dumpfd(o, fd, JSON_SORT_KEYS) == 0 && fsync(fd) == 0)
                rc = 0;
            close(fd);
        }
    }
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -1;
    if (rc != 0)
        unlink(tmp);
    return rc;
}

static int on_spool_item(void *ctx, const struct fwd_spool_item *it);
static void open_delivered(struct fwd_output *g);
static int on_journal(void *ctx, const char *tag, size_t tag_len, const uint8_t *entries,
                      size_t len, uint32_t count);

/*
 * Open the destination's spool (once). With buffer-type=file a failure is the
 * caller's error; in memory mode the destination goes on without one.
 * 0 or -1 with the reason in err.
 */
static int spool_open(struct fwd_output *g, char *err, size_t errlen)
{
    char base[FWD_PATH_MAX];
    uint64_t before;

    if (g->spool_tried)
        return g->spool ? 0 : -1;
    g->spool_tried = true;
    if (g->cfg.spool_limit == 0) {
        snprintf(err, errlen, "spool-limit is 0");
        return -1;
    }
    if (g->spool_dir == NULL) {
        char dir[FWD_PATH_MAX];

        pathf(base, sizeof(base), "%s/spool", g->m->state_dir);
        if (mkdir(base, 0700) == -1 && errno != EEXIST) {
            snprintf(err, errlen, "cannot create %.1000s: %s", base, strerror(errno));
            return -1;
        }
        pathf(dir, sizeof(dir), "%s/%016" PRIx64, base,
              fwd_config_hash(FWD_HASH_INIT, g->key, strlen(g->key)));
        g->spool_dir = strdup(dir);
        if (g->spool_dir == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    before = g->m->st.replayed_records;
    if (fwd_spool_open(g->spool_dir, &g->spool, on_spool_item, g, err, errlen) < 0)
        return -1;
    open_delivered(g);
    if (write_meta(g) != 0) {
        snprintf(err, errlen, "cannot write %s/" META_FILE ": %s", g->spool_dir, strerror(errno));
        fwd_spool_close(g->spool);
        g->spool = NULL;
        return -1;
    }
    g->m->st.spool_corrupt += fwd_spool_corrupt(g->spool);
    fwd_journal_recover(g->spool_dir, g->cfg.batch_size + g->cfg.max_line + 65536u, on_journal, g);
    if (g->m->st.replayed_records > before)
        fwd_log(FWD_LOG_INFO, "%s: sending %llu records left in the spool by an earlier run",
                g->label, (unsigned long long)(g->m->st.replayed_records - before));
    return 0;
}

/* The spool, opened on first use; NULL if there is none (logged once). */
static struct fwd_spool *spool(struct fwd_output *g)
{
    char err[512];

    if (!g->spool_tried && spool_open(g, err, sizeof(err)) < 0 && g->cfg.spool_limit != 0)
        fwd_log(FWD_LOG_ERROR,
                "%s: no disk spool, buffering in memory only: %s (set --state-dir or "
                "FWDLOG_STATE_DIR to a writable directory)",
                g->label, err);
    return g->spool;
}

/* Write b to the spool if it has room. 0, -ENOSPC (spool-limit), or -EIO (no spool, errors). */
static int spool_write(struct fwd_output *g, struct batch *b, const char *tag, size_t tag_len)
{
    struct fwd_spool *sp = spool(g);
    int rc;

    if (sp == NULL)
        return -EIO;
    if (fwd_spool_live_bytes(sp) + FWD_SPOOL_RECORD_OVERHEAD + tag_len + b->entries_len >
        g->cfg.spool_limit)
        return -ENOSPC;
    rc = fwd_spool_append(sp, b->seq, b->count, g->cfg.gzip ? FWD_SPOOL_GZIP : 0, tag, tag_len,
                          b->entries.data, b->entries.len, &b->ref);
    if (rc < 0) {
        fwd_log_rl(FWD_LOG_ERROR, NULL, "%s: cannot write to the spool in %s: %s", g->label,
                   g->spool_dir, strerror(-rc));
        return -EIO;
    }
    g->m->st.spooled_batches++;
    return 0;
}

/* Free the entries of a batch that is in the spool. */
static void evict(struct fwd_output *g, struct batch *b)
{
    g->mem -= b->entries_len;
    b->spilled = true;
    fwd_buf_release(&b->entries);
}

/* Read a spilled batch back. 0, or -1: it is unreadable and was dropped. */
static int load(struct fwd_output *g, struct batch *b)
{
    int rc = fwd_spool_read(g->spool, &b->ref, &b->entries);

    if (rc == 0 && b->entries.len == b->entries_len) {
        b->spilled = false;
        g->mem += b->entries_len;
        return 0;
    }
    fwd_log_rl(FWD_LOG_ERROR, first_cid(b),
               "%s: a spooled batch of %u records in %s is unreadable (%s): dropped", g->label,
               b->count, g->spool_dir, rc == -EBADMSG ? "checksum mismatch" : "read error");
    g->m->st.spool_corrupt++;
    count_drop(g, b);
    batch_done(g, b);
    return -1;
}

/* ---- limits and the overflow policy ------------------------------------------------------ */

static bool over_memory(const struct fwd_output *g)
{
    return g->mem + g->openbytes > g->cfg.buffer_limit;
}

static void update_blocked(struct fwd_output *g)
{
    bool was = g->blocked;

    if (g->cfg.overflow != FWD_OVERFLOW_BLOCK)
        return;
    /* Room again once memory is back under its limit (new batches can spill or stay). */
    g->blocked =
        over_memory(g) && (g->spool == NULL ||
                           fwd_spool_live_bytes(g->spool) + g->cfg.batch_size > g->cfg.spool_limit);
    if (was && !g->blocked) {
        fwd_log(FWD_LOG_INFO, "%s: buffer has room again: reading containers' logs again",
                g->label);
        while (g->waiters != NULL) {
            struct fwd_waiter *w = g->waiters;

            g->waiters = w->next;
            w->next = NULL;
            w->waiting = false;
            w->wake(w);
        }
    }
}

enum which {
    IN_SPOOL,  /* batches with a spool record (frees disk) */
    IN_MEMORY, /* resident batches (frees memory) */
    ANY,
};

/*
 * Drop the oldest queued batch of the kind asked for. false if there is none. If it was
 * *newest (the batch being admitted), *newest becomes NULL.
 */
static bool drop_oldest(struct fwd_output *g, enum which w, uint64_t *records,
                        struct batch **newest)
{
    struct batch *prev = NULL, *b = g->phead;

    if (w == IN_MEMORY && g->nresident == 0)
        return false;
    while (b != NULL && ((w == IN_SPOOL && b->ref.seg == NULL) || (w == IN_MEMORY && b->spilled))) {
        prev = b;
        b = b->next;
    }
    if (b == NULL)
        return false;
    if (prev == NULL)
        pending_pop(g);
    else {
        prev->next = b->next;
        if (g->ptail == b)
            g->ptail = prev;
        g->nresident -= !b->spilled;
    }
    if (newest != NULL && *newest == b)
        *newest = NULL;
    *records += b->count;
    count_drop(g, b);
    batch_done(g, b);
    return true;
}

/*
 * A batch was sealed: put it in memory or the spool, within the limits, or let the
 * overflow policy decide. Returns b, or NULL if b itself was dropped.
 */
static struct batch *admit(struct fwd_output *g, struct batch *b, const char *tag, size_t tag_len)
{
    uint64_t dropped = 0;
    bool file = g->cfg.buffer_type == FWD_BUFFER_FILE, on_disk = false;
    size_t cost = batch_mem(b);

    if (file || g->down || g->mem + cost + g->openbytes > g->cfg.buffer_limit) {
        for (;;) {
            int rc = spool_write(g, b, tag, tag_len);

            if (rc == 0) {
                on_disk = true;
                break;
            }
            if (rc != -ENOSPC || g->cfg.overflow != FWD_OVERFLOW_DROP_OLDEST ||
                !drop_oldest(g, IN_SPOOL, &dropped, NULL))
                break; /* no spool, or full and nothing older to give way */
        }
    }
    g->mem += cost;
    g->qbytes += batch_wire_len(b);
    if (on_disk && (!file || over_memory(g)))
        evict(g, b);
    pending_append(g, b);
    /*
     * Memory: move resident batches to the spool, oldest first (they are read back when
     * their turn comes); only when none can move does the overflow policy decide, and it
     * drops only batches that free memory. What is left over the limit then is the open
     * batches and what the aggregators are writing: bounded by batch-size each.
     */
    while (over_memory(g) && b != NULL) {
        struct batch *v = g->nresident > 0 ? g->phead : NULL;

        while (v != NULL && v->spilled)
            v = v->next;
        if (v != NULL && (v->ref.seg != NULL || spool_write(g, v, batch_tag(v), v->tag_len) == 0)) {
            evict(g, v);
            g->nresident--;
            continue;
        }
        if (g->cfg.overflow == FWD_OVERFLOW_DROP_OLDEST) {
            /* spilled batches only while they alone (their bookkeeping) are over the limit */
            if (drop_oldest(g, g->mem > g->cfg.buffer_limit ? ANY : IN_MEMORY, &dropped, &b))
                continue;
            break;
        }
        if (g->cfg.overflow == FWD_OVERFLOW_DROP_NEWEST &&
            (!b->spilled || g->mem > g->cfg.buffer_limit)) {
            /* drop b itself: it is the newest, and still queued (the tail) */
            struct batch *p = g->phead;

            if (p == b)
                pending_pop(g);
            else {
                while (p->next != b)
                    p = p->next;
                p->next = NULL;
                g->ptail = p;
                g->nresident -= !b->spilled;
            }
            fwd_log_rl(FWD_LOG_WARN, first_cid(b),
                       "%s: memory (fluentd-buffer-limit %llu) and spool (spool-limit %llu) "
                       "full: dropped the newest %u records (overflow-policy drop-newest)",
                       g->label, (unsigned long long)g->cfg.buffer_limit,
                       (unsigned long long)g->cfg.spool_limit, b->count);
            count_drop(g, b);
            batch_done(g, b);
            b = NULL;
        }
        break;
    }
    if (dropped > 0)
        fwd_log_rl(FWD_LOG_WARN, NULL,
                   "%s: memory (fluentd-buffer-limit %llu) and spool (spool-limit %llu) full "
                   "(aggregator slow or down): dropped the oldest %llu records",
                   g->label, (unsigned long long)g->cfg.buffer_limit,
                   (unsigned long long)g->cfg.spool_limit, (unsigned long long)dropped);
    if (g->cfg.overflow == FWD_OVERFLOW_BLOCK) {
        bool was = g->blocked;

        update_blocked(g);
        if (!was && g->blocked)
            fwd_log_rl(FWD_LOG_WARN, NULL,
                       "%s: memory and spool full (overflow-policy block): containers' logs are "
                       "not read until the aggregator catches up",
                       g->label);
    }
    return b;
}

/* ---- spreading batches over the nodes ------------------------------------------------------- */

static bool has_room(const struct node *n)
{
    return n->state == S_CONNECTED && n->nq < (ack_mode(n->g) ? ACK_WINDOW : LOOKAHEAD);
}

/* The node the next batch goes to, or NULL. */
static struct node *pick(struct fwd_output *g)
{
    if (g->cfg.balance == FWD_BALANCE_FAILOVER) {
        for (unsigned i = 0; i < g->nnodes; i++)
            if (g->nodes[i].state == S_CONNECTED)
                return has_room(&g->nodes[i]) ? &g->nodes[i] : NULL;
        return NULL;
    }
    for (unsigned k = 0; k < g->nnodes; k++) {
        unsigned i = (g->rr + k) % g->nnodes;

        if (has_room(&g->nodes[i])) {
            g->rr = (i + 1) % g->nnodes;
            return &g->nodes[i];
        }
    }
    return NULL;
}

/* Hand queued batches to the nodes that can take them. */
static void dispatch(struct fwd_output *g)
{
    bool fed[FWD_MAX_ADDRS] = {false};

    while (g->phead != NULL) {
        struct node *n = pick(g);
        struct batch *b;

        if (n == NULL)
            break;
        b = pending_pop(g);
        if (b->spilled && load(g, b) != 0)
            continue;
        if (n->qtail != NULL)
            n->qtail->next = b;
        else
            n->qhead = b;
        n->qtail = b;
        if (n->unsent == NULL)
            n->unsent = b;
        n->nq++;
        fed[n - g->nodes] = true;
    }
    for (unsigned i = 0; i < g->nnodes; i++) {
        if (fed[i]) {
            watch(&g->nodes[i]);
            if (!fwd_timer_armed(&g->nodes[i].timer))
                arm_conn_timer(&g->nodes[i]);
        }
    }
}

/* Is every node failing (BACKOFF) since its last connection? */
static void update_down(struct fwd_output *g)
{
    bool down = true;

    for (unsigned i = 0; i < g->nnodes; i++)
        if (g->nodes[i].state != S_BACKOFF)
            down = false;
    if (down && !g->down && g->cfg.spool_limit != 0)
        fwd_log(FWD_LOG_DEBUG, "%s: every aggregator is down: new batches go to the spool",
                g->label);
    g->down = down;
}

/* Start the connections the balance mode wants while there is something to send. */
static void ensure_connections(struct fwd_output *g)
{
    update_down(g);
    if (!has_data(g))
        return;
    for (unsigned i = 0; i < g->nnodes; i++) {
        struct node *n = &g->nodes[i];

        if (n->state == S_IDLE)
            start_connect(n);
        /* failover: the next one only once this one is failing */
        if (g->cfg.balance == FWD_BALANCE_FAILOVER && n->state != S_BACKOFF)
            break;
    }
}

/* ---- connection ------------------------------------------------------------------------ */

static void forget_addrs(struct node *n)
{
    fwd_resolve_cancel(n->lookup);
    n->lookup = NULL;
    n->addrs.n = 0;
    n->next_addr = 0;
}

/*
 * Close the connection. Its batches go back to the destination's queue, in
 * order: the cut message is sent again whole, and (with acks) everything not
 * acknowledged, by whichever aggregator takes them next.
 */
static void close_conn(struct node *n)
{
    if (n->tls != NULL) {
        SSL_free(n->tls);
        n->tls = NULL;
    }
    if (n->fd >= 0) {
        fwd_loop_io_del(n->g->m->loop, &n->io);
        close(n->fd);
        n->fd = -1;
    }
    requeue(n);
    fwd_buf_release(&n->reply);
}

/*
 * The same for a connection that is done rather than failed: the socket and
 * its TLS session go to the closer, so the peer reads everything we sent
 * before it sees our close.
 */
static void close_conn_gracefully(struct node *n)
{
    if (n->fd >= 0 && n->state == S_CONNECTED) {
        fwd_loop_io_del(n->g->m->loop, &n->io);
        fwd_closer_add(n->g->m->closer, n->fd, n->tls, CLOSE_WAIT_MS);
        n->fd = -1;
        n->tls = NULL;
    }
    close_conn(n);
}

static uint64_t backoff_ms(const struct node *n)
{
    uint64_t w = n->g->cfg.retry_wait_ms, cap = n->g->cfg.max_retry_wait_ms;

    for (uint32_t i = 1; i < n->failures && w < cap; i++)
        w *= 2;
    if (w > cap)
        w = cap;
    /* Jitter: spread reconnects of many plugins after an aggregator restart. */
    return w / 2 + (uint64_t)random() % (w / 2 + 1);
}

static void on_timer(struct fwd_timer *t);

/* Has every aggregator of g failed more than fluentd-max-retries times in a row? */
static bool retries_exhausted(const struct fwd_output *g)
{
    for (unsigned i = 0; i < g->nnodes; i++)
        if (g->nodes[i].state == S_CONNECTED || g->nodes[i].failures <= g->cfg.max_retries)
            return false;
    return true;
}

static void fail(struct node *n, const char *what, int err)
{
    struct fwd_output *g = n->g;
    uint64_t wait;

    close_conn(n);
    forget_addrs(n);
    n->failures++;
    g->m->st.connection_failures++;
    wait = backoff_ms(n);
    n->state = S_BACKOFF;
    fwd_loop_timer_start(g->m->loop, &n->timer, wait, on_timer, n);
    fwd_log_rl(FWD_LOG_WARN, NULL, "%s: %s: %s; retrying in %llu ms (%zu bytes queued)", n->label,
               what, err ? strerror(err) : "failed", (unsigned long long)wait,
               g->qbytes + g->openbytes);
    if (retries_exhausted(g)) {
        drop_queue(g,
                   g->cfg.max_retries ? "fluentd-max-retries reached" : "fluentd-max-retries is 0");
        for (unsigned i = 0; i < g->nnodes; i++)
            g->nodes[i].failures = g->cfg.max_retries ? 0 : g->nodes[i].failures;
    }
    /* Another aggregator takes over what this one held (failover), or its share. */
    dispatch(g);
    ensure_connections(g);
}

static void on_io(struct fwd_io *io, uint32_t events);

static void try_next_addr(struct node *n)
{
    while (n->next_addr < n->addrs.n) {
        const struct fwd_sockaddr *a = &n->addrs.addr[n->next_addr++];
        int family = a->sa.ss_family, fd, rc, one = 1;

        fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd == -1)
            continue;
        if (family != AF_UNIX)
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        do {
            rc = connect(fd, (const struct sockaddr *)&a->sa, a->len);
        } while (rc == -1 && errno == EINTR);
        if (rc == -1 && errno != EINPROGRESS && errno != EAGAIN) {
            int e = errno;
            close(fd);
            if (n->next_addr == n->addrs.n) {
                fail(n, "connect", e);
                return;
            }
            continue;
        }
        n->fd = fd;
        if (fwd_loop_io_add(n->g->m->loop, &n->io, fd, EPOLLOUT, on_io, n) < 0) {
            close(fd);
            n->fd = -1;
            fail(n, "epoll", errno);
            return;
        }
        n->state = S_CONNECTING;
        fwd_loop_timer_start(n->g->m->loop, &n->timer, FWD_CONNECT_TIMEOUT_MS, on_timer, n);
        return;
    }
    fail(n, "connect", ECONNREFUSED);
}

static void resolved(void *ctx, int status, const struct fwd_resolved *res, const char *why)
{
    struct node *n = ctx;

    n->lookup = NULL;
    if (status != 0) {
        fwd_log_rl(FWD_LOG_WARN, NULL, "%s: cannot resolve %s: %s", n->label, n->addr.host, why);
        fail(n, "resolve", -status);
        return;
    }
    n->addrs = *res;
    n->next_addr = 0;
    try_next_addr(n);
}

static void start_connect(struct node *n)
{
    int rc;

    n->state = S_RESOLVING;
    forget_addrs(n);
    if (n->addr.scheme == FWD_ADDR_UNIX) {
        struct sockaddr_un *sun = (struct sockaddr_un *)&n->addrs.addr[0].sa;

        memset(sun, 0, sizeof(*sun));
        sun->sun_family = AF_UNIX;
        memcpy(sun->sun_path, n->addr.path, strlen(n->addr.path) + 1);
        n->addrs.addr[0].len = sizeof(*sun);
        n->addrs.n = 1;
        try_next_addr(n);
        return;
    }
    /* names and literals alike answer through resolved(), from the loop */
    rc = fwd_resolve_start(n->g->m->resolver, n->addr.host, n->addr.port, resolved, n, &n->lookup);
    if (rc < 0)
        fail(n, "resolve", -rc);
}

static void connected(struct node *n)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(n->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
        err = errno;
    if (err != 0) {
        fwd_loop_io_del(n->g->m->loop, &n->io);
        close(n->fd);
        n->fd = -1;
        if (n->next_addr < n->addrs.n) {
            try_next_addr(n);
            return;
        }
        fail(n, "connect", err);
        return;
    }
    forget_addrs(n);
    if (n->g->tls_ctx != NULL) {
        tls_start(n);
        return;
    }
    transport_ready(n);
}

/* TCP (and TLS) are up: the shared-key handshake, if any, then records. */
static void transport_ready(struct node *n)
{
    if (n->g->cfg.shared_key[0]) {
        /* The server speaks first (HELO); no data goes out before a verified PONG. */
        n->state = S_HANDSHAKE;
        n->pinged = false;
        fwd_loop_io_mod(n->g->m->loop, &n->io, EPOLLIN | EPOLLRDHUP);
        fwd_loop_timer_start(n->g->m->loop, &n->timer, FWD_CONNECT_TIMEOUT_MS, on_timer, n);
        return;
    }
    ready(n);
}

/* The connection may carry records now. */
static void ready(struct node *n)
{
    fwd_loop_timer_stop(n->g->m->loop, &n->timer);
    if (n->failures > 0)
        fwd_log(FWD_LOG_INFO, "%s: connected after %u failed attempts", n->label, n->failures);
    else
        fwd_log(FWD_LOG_DEBUG, "%s: connected", n->label);
    n->failures = 0;
    n->state = S_CONNECTED;
    n->connected_at = fwd_loop_now(n->g->m->loop);
    n->last_progress = n->connected_at;
    n->g->m->st.connects++;
    update_down(n->g);
    dispatch(n->g);
    watch(n);
    arm_conn_timer(n);
}

/* ---- transport: plain sockets or TLS ------------------------------------------------ */

/* read(2) or SSL_read: >0 bytes, 0 at the peer's close, -1 with errno (EAGAIN: later). */
static ssize_t conn_read(struct node *n, void *buf, size_t len)
{
    int r, e;

    if (n->tls == NULL)
        return read(n->fd, buf, len);
    /* SSL_ERROR_SYSCALL reports through errno: a stale EAGAIN must not survive into it. */
    ERR_clear_error();
    errno = 0;
    r = SSL_read(n->tls, buf, len > INT_MAX ? INT_MAX : (int)len);
    if (r > 0)
        return r;
    e = SSL_get_error(n->tls, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        errno = EAGAIN;
        return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN ||
        (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && (errno == 0 || errno == ECONNRESET)))
        return 0; /* close_notify, or the peer just went away */
    errno = e == SSL_ERROR_SYSCALL && errno != 0 ? errno : EPROTO;
    return -1;
}

/* sendmsg(2) or one SSL_write per piece: bytes written, or -1 with errno (EAGAIN: later). */
static ssize_t conn_writev(struct node *n, const struct msghdr *msg)
{
    ssize_t total = 0;

    if (n->tls == NULL)
        return sendmsg(n->fd, msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    for (size_t i = 0; i < msg->msg_iovlen; i++) {
        size_t len = msg->msg_iov[i].iov_len;
        int r, e;

        ERR_clear_error();
        errno = 0;
        r = SSL_write(n->tls, msg->msg_iov[i].iov_base, len > INT_MAX ? INT_MAX : (int)len);
        if (r > 0) {
            total += r;
            if ((size_t)r < len)
                break;
            continue;
        }
        e = SSL_get_error(n->tls, r);
        if (total > 0)
            break;
        errno = e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? EAGAIN
                : e == SSL_ERROR_SYSCALL && errno != 0                ? errno
                                                                      : EPIPE;
        return -1;
    }
    return total;
}

/* Is s an IPv4 or IPv6 literal (then it is verified as an IP, and sent without SNI)? */
static bool ip_literal(const char *s)
{
    unsigned char b[16];

    return inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1;
}

static void tls_start(struct node *n)
{
    const char *name = n->g->cfg.tls_server_name[0] ? n->g->cfg.tls_server_name : n->addr.host;

    n->tls = SSL_new(n->g->tls_ctx);
    if (n->tls == NULL || SSL_set_fd(n->tls, n->fd) != 1) {
        fail(n, "TLS: cannot create a session", ENOMEM);
        return;
    }
    if (!ip_literal(name))
        SSL_set_tlsext_host_name(n->tls, name);
    if (!n->g->cfg.tls_insecure) {
        /* the certificate must name the aggregator, not just chain to a trusted CA */
        int ok = ip_literal(name) ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(n->tls), name)
                                  : SSL_set1_host(n->tls, name);
        if (ok != 1) {
            fail(n, "TLS: cannot set the name to verify", EINVAL);
            return;
        }
    }
    n->state = S_TLS;
    fwd_loop_timer_start(n->g->m->loop, &n->timer, FWD_CONNECT_TIMEOUT_MS, on_timer, n);
    tls_step(n);
}

/* Drive SSL_connect; its WANT_READ / WANT_WRITE pick what the loop waits for. */
static void tls_step(struct node *n)
{
    int r, e;

    ERR_clear_error();
    r = SSL_connect(n->tls);
    if (r == 1) {
        fwd_log(FWD_LOG_DEBUG, "%s: TLS %s established", n->label, SSL_get_version(n->tls));
        transport_ready(n);
        return;
    }
    e = SSL_get_error(n->tls, r);
    if (e == SSL_ERROR_WANT_READ) {
        fwd_loop_io_mod(n->g->m->loop, &n->io, EPOLLIN | EPOLLRDHUP);
        return;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        fwd_loop_io_mod(n->g->m->loop, &n->io, EPOLLOUT);
        return;
    }
    {
        long v = SSL_get_verify_result(n->tls);
        char why[400];

        if (v != X509_V_OK)
            snprintf(why, sizeof(why),
                     "TLS: certificate verification failed: %s (check "
                     "fluentd-tls-ca-file and fluentd-tls-server-name)",
                     X509_verify_cert_error_string(v));
        else
            snprintf(why, sizeof(why), "TLS handshake failed: %s", tls_error());
        fwd_log_rl(FWD_LOG_ERROR, NULL, "%s: %s", n->label, why);
        fail(n, "TLS handshake failed", EPROTO);
    }
}

/* ---- writing --------------------------------------------------------------------------- */

/* Batches may be written now (with acks, only while the window has room). */
static bool can_write(const struct node *n)
{
    return n->unsent != NULL && (!ack_mode(n->g) || n->inflight < ACK_WINDOW);
}

static void watch(struct node *n)
{
    fwd_loop_io_mod(n->g->m->loop, &n->io, EPOLLIN | EPOLLRDHUP | (can_write(n) ? EPOLLOUT : 0));
}

/* While connected, the timer is the earlier of the write and the ack deadline. */
static void arm_conn_timer(struct node *n)
{
    uint64_t d = 0;

    if (n->g->cfg.write_timeout_ms != 0 && can_write(n))
        d = n->last_progress + FWD_MS_TO_NS(n->g->cfg.write_timeout_ms);
    if (n->inflight > 0 && (d == 0 || n->qhead->ack_deadline < d))
        d = n->qhead->ack_deadline;
    if (d == 0)
        fwd_loop_timer_stop(n->g->m->loop, &n->timer);
    else
        fwd_loop_timer_at(n->g->m->loop, &n->timer, d, on_timer, n);
}

static uint64_t ack_timeout_ms(const struct node *n)
{
    return n->g->cfg.read_timeout_ms ? n->g->cfg.read_timeout_ms : FWD_DEFAULT_ACK_TIMEOUT_MS;
}

/* The oldest batch of n is delivered (written, or acknowledged with acks). */
static void delivered(struct node *n)
{
    struct batch *b = n->qhead;

    n->g->m->st.records_sent += b->count;
    n->g->m->st.batches_sent++;
    if (b == n->unsent)
        n->unsent = b->next;
    else
        n->inflight--;
    n->qhead = b->next;
    if (n->qhead == NULL)
        n->qtail = NULL;
    n->nq--;
    batch_done(n->g, b);
}

/* Account written bytes against the batches from unsent on. */
static void advance(struct node *n, size_t w)
{
    while (w > 0 && n->unsent != NULL) {
        struct batch *b = n->unsent;
        size_t left = batch_wire_len(b) - b->sent;

        if (w < left) {
            b->sent += w;
            return;
        }
        w -= left;
        if (!ack_mode(n->g)) {
            delivered(n); /* without acks, written is as delivered as it gets */
            continue;
        }
        b->sent += left;
        b->ack_deadline = fwd_loop_now(n->g->m->loop) + FWD_MS_TO_NS(ack_timeout_ms(n));
        n->unsent = b->next;
        n->inflight++;
    }
}

static void add_iov(struct iovec *iov, int *niov, const uint8_t *p, size_t len, size_t *skip)
{
    if (*skip >= len) {
        *skip -= len;
        return;
    }
    iov[*niov].iov_base = (void *)(p + *skip);
    iov[*niov].iov_len = len - *skip;
    (*niov)++;
    *skip = 0;
}

static void do_write(struct node *n)
{
    size_t budget = FWD_WRITE_PER_WAKEUP;

    while (can_write(n) && budget > 0) {
        struct iovec iov[IOV_BATCHES * 3];
        struct msghdr msg = {.msg_iov = iov};
        unsigned window = ack_mode(n->g) ? ACK_WINDOW - n->inflight : IOV_BATCHES;
        int niov = 0;
        ssize_t w;

        if (n->g->cfg.reconnect_interval_ms && n->inflight == 0 && n->unsent->sent == 0 &&
            fwd_loop_now(n->g->m->loop) - n->connected_at >=
                FWD_MS_TO_NS(n->g->cfg.reconnect_interval_ms)) {
            /* fluentd-async-reconnect-interval: reconnect (and re-resolve) between messages. */
            close_conn_gracefully(n);
            start_connect(n);
            dispatch(n->g); /* to another aggregator meanwhile, if one is up */
            return;
        }
        /* A batch adds up to three iovecs (fewer for the half-written one): room for
         * three must be left before each one. */
        for (struct batch *b = n->unsent; b != NULL && niov + 3 <= IOV_BATCHES * 3 && window > 0;
             b = b->next, window--) {
            size_t skip = b->sent;

            add_iov(iov, &niov, b->hdr, b->hdr_len, &skip);
            add_iov(iov, &niov, b->entries.data, b->entries.len, &skip);
            add_iov(iov, &niov, b->opt, b->opt_len, &skip);
        }
        msg.msg_iovlen = (size_t)niov;
        w = conn_writev(n, &msg);
        if (w == -1) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            fail(n, "write", errno);
            return;
        }
        n->g->m->st.bytes_sent += (uint64_t)w;
        n->last_progress = fwd_loop_now(n->g->m->loop);
        advance(n, (size_t)w);
        if (n->unsent == NULL)
            dispatch(n->g); /* take more from the destination's queue */
        budget = (size_t)w >= budget ? 0 : budget - (size_t)w;
    }
    watch(n);
    arm_conn_timer(n);
    output_maybe_free(n->g);
}

/*
 * Match the replies buffered so far against the batches waiting for their ack. The
 * oldest must be acknowledged first: an ack that does not match it, or a reply that is
 * not an ack, makes the connection untrustworthy (Fluentd #4057: acks offset by one on
 * a reused socket), so it is discarded and everything unacknowledged is sent again.
 * Returns 0, or -1 after failing the connection.
 */
static int take_acks(struct node *n)
{
    size_t off = 0;

    while (off < n->reply.len) {
        char id[FWD_FORWARD_ACK_MAX + 1];
        size_t used, idlen;
        int r = fwd_forward_parse_ack(n->reply.data + off, n->reply.len - off, &used, id, &idlen);

        if (r == 0)
            break;
        if (r < 0) {
            fail(n, "aggregator sent something that is not an ack", EPROTO);
            return -1;
        }
        off += used;
        if (n->inflight == 0 || idlen != FWD_FORWARD_CHUNK_LEN ||
            memcmp(id, n->qhead->chunk, FWD_FORWARD_CHUNK_LEN) != 0) {
            fail(n, "ack does not match the oldest unacknowledged batch", EPROTO);
            return -1;
        }
        delivered(n);
        if (n->unsent == NULL)
            dispatch(n->g);
    }
    fwd_buf_consume(&n->reply, off);
    if (n->reply.len == REPLY_MAX) {
        fail(n, "aggregator reply too long", EPROTO);
        return -1;
    }
    return 0;
}

/* Read replies. Returns 0 while connected, -1 if the connection failed or g was freed. */
static int do_read(struct node *n)
{
    for (;;) {
        char buf[4096];
        ssize_t r = conn_read(n, buf, sizeof(buf));

        if (r > 0) {
            if (n->state != S_HANDSHAKE && !ack_mode(n->g))
                continue; /* no acks requested: nothing a receiver says matters */
            if (fwd_buf_append(&n->reply, buf, (size_t)r) != 0) {
                fail(n, "aggregator reply too long", EPROTO);
                return -1;
            }
            if (n->state == S_HANDSHAKE) {
                handshake_step(n);
                if (n->state == S_HANDSHAKE)
                    continue;
                if (n->state != S_CONNECTED)
                    return -1;
                if (!ack_mode(n->g)) {
                    fwd_buf_reset(&n->reply);
                    continue;
                }
                /* with acks, what followed the PONG (nothing, normally) is read as acks */
            }
            if (take_acks(n) < 0)
                return -1;
            continue;
        }
        if (r == 0) {
            fail(n,
                 n->state == S_HANDSHAKE ? "connection closed during the handshake (wrong "
                                           "shared key?)"
                                         : "connection closed by aggregator",
                 0);
            return -1;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            fail(n, "read", errno);
            return -1;
        }
        break;
    }
    if (ack_mode(n->g) && n->state == S_CONNECTED) {
        /* Acks open the window (more may be written) and move the ack deadline. (Not
         * during the handshake: its timer and its read-only interest stand until PONG.) */
        watch(n);
        arm_conn_timer(n);
        output_maybe_free(n->g);
    }
    return 0;
}

/* The hostname we present in the handshake: fluentd-self-hostname, else the host's. */
static void self_hostname(const struct node *n, char host[256])
{
    snprintf(host, 256, "%s", n->g->cfg.self_hostname);
    if (host[0] == '\0' && gethostname(host, 255) == -1)
        snprintf(host, 256, "fwdlog");
}

/* Send the PING for the HELO just parsed. 0, or -1 after failing the connection. */
static int send_ping(struct node *n)
{
    uint8_t ping[1024];
    size_t len;
    ssize_t w;

    self_hostname(n, n->ping_host);
    if (fwd_forward_salt(n->salt) != 0) {
        fail(n, "handshake: no randomness for the PING salt", EIO);
        return -1;
    }
    len = fwd_forward_ping(ping, sizeof(ping), &n->helo, n->ping_host, n->salt,
                           n->g->cfg.shared_key, n->g->cfg.username, n->g->cfg.password);
    if (len == 0) {
        fail(n, "handshake: cannot build the PING", EIO);
        return -1;
    }
    /* Fluent Bit reads a PING in one go: send it whole, and nothing behind it. */
    {
        struct iovec iov = {.iov_base = ping, .iov_len = len};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};

        w = conn_writev(n, &msg);
    }
    if (w != (ssize_t)len) {
        fail(n, "handshake: PING not written whole", w == -1 ? errno : EAGAIN);
        return -1;
    }
    n->pinged = true;
    return 0;
}

/*
 * Handshake replies (spec v1: HELO, then PONG to our PING). Fluentd answers a wrong key
 * with PONG false; Fluent Bit just closes, which lands in do_read's "closed".
 */
static void handshake_step(struct node *n)
{
    char why[400];
    struct fwd_pong pong;
    size_t used;
    int r;

    if (!n->pinged) {
        r = fwd_forward_parse_helo(n->reply.data, n->reply.len, &used, &n->helo);
        if (r < 0) {
            fail(n, "handshake: expected HELO (does the aggregator use a shared key?)", EPROTO);
            return;
        }
        if (r == 0)
            goto more;
        fwd_buf_consume(&n->reply, used);
        if (send_ping(n) < 0)
            return;
    }
    r = fwd_forward_parse_pong(n->reply.data, n->reply.len, &used, &pong);
    if (r < 0) {
        fail(n, "handshake: expected PONG", EPROTO);
        return;
    }
    if (r == 0)
        goto more;
    fwd_buf_consume(&n->reply, used);
    /* checked against exactly what the PING said */
    if (fwd_forward_check_pong(&pong, &n->helo, n->ping_host, n->salt, n->g->cfg.shared_key, why,
                               sizeof(why)) != 0) {
        fwd_log_rl(FWD_LOG_ERROR, NULL, "%s: authentication failed: %s", n->label, why);
        fail(n, "authentication failed", EACCES);
        return;
    }
    fwd_log(FWD_LOG_DEBUG, "%s: authenticated to %s", n->label, pong.host);
    ready(n);
    return;
more:
    if (n->reply.len >= FWD_HANDSHAKE_MSG_MAX)
        fail(n, "handshake: reply too long", EPROTO);
}

static void on_io(struct fwd_io *io, uint32_t events)
{
    struct node *n = io->ctx;

    if (n->state == S_CONNECTING) {
        connected(n);
        return;
    }
    if (n->state == S_TLS) {
        tls_step(n);
        return;
    }
    if (n->state == S_HANDSHAKE) {
        do_read(n);
        return;
    }
    if (n->state != S_CONNECTED)
        return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        if (do_read(n) < 0)
            return;
    }
    if (events & EPOLLOUT)
        do_write(n);
}

static void on_timer(struct fwd_timer *t)
{
    struct node *n = t->ctx;
    uint64_t now = fwd_loop_now(n->g->m->loop);

    switch (n->state) {
        case S_CONNECTING:
            fail(n, "connect", ETIMEDOUT);
            return;
        case S_TLS:
            fail(n, "TLS handshake: no answer in time", ETIMEDOUT);
            return;
        case S_HANDSHAKE:
            fail(n, n->pinged ? "handshake: no PONG in time" : "handshake: no HELO in time",
                 ETIMEDOUT);
            return;
        case S_BACKOFF:
            if (!has_data(n->g)) {
                n->state = S_IDLE;
                output_maybe_free(n->g);
                return;
            }
            start_connect(n); /* also how a failed aggregator is probed, to rejoin */
            return;
        case S_CONNECTED:
            if (n->inflight > 0 && now >= n->qhead->ack_deadline) {
                fail(n, "no ack within the ack timeout (fluentd-read-timeout)", ETIMEDOUT);
                return;
            }
            if (n->g->cfg.write_timeout_ms != 0 && can_write(n) &&
                now - n->last_progress >= FWD_MS_TO_NS(n->g->cfg.write_timeout_ms)) {
                fail(n, "write timeout (fluentd-write-timeout)", ETIMEDOUT);
                return;
            }
            arm_conn_timer(n);
            return;
        default:
            return;
    }
}

/* ---- destinations and streams ----------------------------------------------------------- */

static void node_destroy(struct node *n)
{
    fwd_loop_timer_stop(n->g->m->loop, &n->timer);
    forget_addrs(n); /* a lookup under way is cancelled, never waited for */
    close_conn_gracefully(n);
}

static void output_destroy(struct fwd_output *g)
{
    struct fwd_output **pp;
    bool empty;

    for (pp = &g->m->outs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == g) {
            *pp = g->next;
            break;
        }
    }
    fwd_loop_timer_stop(g->m->loop, &g->linger);
    for (unsigned i = 0; i < g->nnodes; i++)
        node_destroy(&g->nodes[i]);
    empty = g->phead == NULL;
    while (g->phead != NULL) {
        struct batch *b = pending_pop(g);

        b->ref.seg = NULL; /* not delivered: its spool record stays for the next start */
        batch_done(g, b);
    }
    while (g->waiters != NULL) {
        struct fwd_waiter *w = g->waiters;
        g->waiters = w->next;
        w->next = NULL;
        w->waiting = false;
    }
    if (g->spool != NULL && empty) {
        /* drained: nothing for a later run */
        char path[FWD_PATH_MAX];

        pathf(path, sizeof(path), "%s/" META_FILE, g->spool_dir);
        unlink(path);
        pathf(path, sizeof(path), "%s/" DELIVERED_FILE, g->spool_dir);
        unlink(path);
        fwd_spool_destroy(g->spool);
    } else
        fwd_spool_close(g->spool); /* the records still in it stay for the next start */
    if (g->delivered_fd >= 0)
        close(g->delivered_fd);
    free(g->spool_dir);
    json_decref(g->options);
    SSL_CTX_free(g->tls_ctx);
    free(g->key);
    free(g);
}

static void on_reap(struct fwd_timer *t)
{
    struct fwd_outputs *m = t->ctx;

    for (struct fwd_output *g = m->outs, *next; g != NULL; g = next) {
        next = g->next;
        if (g->reap && g->streams == NULL && !has_data(g))
            output_destroy(g);
        else
            g->reap = false;
    }
}

static void on_linger(struct fwd_timer *t)
{
    struct fwd_output *g = t->ctx;

    if (g->streams != NULL || has_data(g))
        return; /* taken again, or more to send: looked at again once drained */
    g->reap = true;
    fwd_loop_timer_start(g->m->loop, &g->m->reap, 0, on_reap, g->m);
}

/*
 * An orphan destination with nothing left to send lingers, then goes. Never
 * frees g itself, so any callback may call it and go on using g.
 */
static void output_maybe_free(struct fwd_output *g)
{
    if (g->streams == NULL && !has_data(g) && !fwd_timer_armed(&g->linger))
        fwd_loop_timer_start(g->m->loop, &g->linger, DEST_LINGER_MS, on_linger, g);
}

/* The last OpenSSL error as text (for messages that name the option at fault). */
static const char *tls_error(void)
{
    static char buf[256];
    unsigned long e = ERR_get_error();

    ERR_clear_error();
    if (e == 0)
        return "unknown error";
    ERR_error_string_n(e, buf, sizeof(buf));
    return buf;
}

/* The TLS context for a tls:// destination. NULL with the reason (naming the option) in err. */
static SSL_CTX *tls_context(const struct fwd_config *c, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    if (ctx == NULL) {
        snprintf(err, errlen, "TLS: %s", tls_error());
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* Batches are written from wherever a short write stopped: partial writes, moving buffer. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (c->tls_ca_file[0] ? SSL_CTX_load_verify_locations(ctx, c->tls_ca_file, NULL) != 1
                          : SSL_CTX_set_default_verify_paths(ctx) != 1) {
        snprintf(err, errlen, "log-opt fluentd-tls-ca-file=\"%s\": cannot load CA certificates: %s",
                 c->tls_ca_file[0] ? c->tls_ca_file : "(system store)", tls_error());
        goto fail;
    }
    if (c->tls_cert_file[0]) {
        if (SSL_CTX_use_certificate_chain_file(ctx, c->tls_cert_file) != 1) {
            snprintf(err, errlen, "log-opt fluentd-tls-cert-file=\"%s\": %s", c->tls_cert_file,
                     tls_error());
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, c->tls_key_file, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            snprintf(err, errlen,
                     "log-opt fluentd-tls-key-file=\"%s\": not the key of the certificate: %s",
                     c->tls_key_file, tls_error());
            goto fail;
        }
    }
    SSL_CTX_set_verify(ctx, c->tls_insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

static void addr_label(const struct fwd_addr *a, char *out, size_t n)
{
    if (a->scheme == FWD_ADDR_UNIX)
        snprintf(out, n, "unix://%s", a->path);
    else
        snprintf(out, n, strchr(a->host, ':') ? "%s[%s]:%u" : "%s%s:%u",
                 a->scheme == FWD_ADDR_TLS ? "tls://" : "", a->host, a->port);
}

/* A new destination for cfg (not looked up). spool_dir: an existing spool to adopt, or NULL. */
static struct fwd_output *output_new(struct fwd_outputs *m, const struct fwd_config *cfg,
                                     const char *spool_dir, char *err, size_t errlen)
{
    struct fwd_output *g;
    SSL_CTX *ctx = NULL;
    bool tls = false;

    for (unsigned i = 0; i < cfg->naddrs; i++)
        tls |= cfg->addrs[i].scheme == FWD_ADDR_TLS;
    if (tls && (ctx = tls_context(cfg, err, errlen)) == NULL)
        return NULL;
    g = calloc(1, sizeof(*g));
    if (g == NULL || (g->key = strdup(cfg->dest_key)) == NULL ||
        (spool_dir != NULL && (g->spool_dir = strdup(spool_dir)) == NULL)) {
        snprintf(err, errlen, "out of memory");
        SSL_CTX_free(ctx);
        if (g != NULL)
            free(g->key);
        free(g);
        return NULL;
    }
    g->tls_ctx = ctx;
    g->m = m;
    g->delivered_fd = -1;
    g->cfg = *cfg;
    g->options = options_json(cfg);
    /* the lists it came from are the caller's */
    g->cfg.opts = g->cfg.defaults = NULL;
    g->cfg.nopts = g->cfg.ndefaults = 0;
    g->cfg.tag = g->cfg.labels = g->cfg.labels_regex = g->cfg.env = g->cfg.env_regex = NULL;
    g->next_seq = 1;
    g->nnodes = cfg->naddrs;
    for (unsigned i = 0; i < g->nnodes; i++) {
        struct node *n = &g->nodes[i];
        size_t off = strlen(g->label);

        n->g = g;
        n->addr = cfg->addrs[i];
        n->fd = -1;
        fwd_buf_init(&n->reply, REPLY_MAX);
        addr_label(&cfg->addrs[i], n->label, sizeof(n->label));
        snprintf(g->label + off, sizeof(g->label) - off, "%s%s", i ? "," : "", n->label);
    }
    g->next = m->outs;
    m->outs = g;
    return g;
}

static struct fwd_output *output_find(const struct fwd_outputs *m, const char *key)
{
    struct fwd_output *g = m->outs;

    while (g != NULL && strcmp(g->key, key) != 0)
        g = g->next;
    return g;
}

static struct fwd_output *output_get(struct fwd_outputs *m, const struct fwd_config *cfg, char *err,
                                     size_t errlen)
{
    struct fwd_output *g;

    g = output_find(m, cfg->dest_key);
    if (g != NULL) {
        fwd_loop_timer_stop(m->loop, &g->linger); /* taken again before it went */
        g->reap = false;
        return g;
    }
    g = output_new(m, cfg, NULL, err, errlen);
    if (g != NULL && cfg->buffer_type == FWD_BUFFER_FILE) {
        char why[1024];

        if (spool_open(g, why, sizeof(why)) < 0) {
            snprintf(err, errlen,
                     "log-opt buffer-type=file: %s (the plugin's state directory must be "
                     "writable: --state-dir or FWDLOG_STATE_DIR)",
                     why);
            output_destroy(g);
            return NULL;
        }
        ensure_connections(g); /* what an earlier run left in it goes first */
    }
    return g;
}

struct fwd_outputs *fwd_outputs_create(struct fwd_loop *loop, const char *state_dir, char *err,
                                       size_t errlen)
{
    struct fwd_outputs *m = calloc(1, sizeof(*m));

    snprintf(err, errlen, "out of memory");
    if (m == NULL)
        return NULL;
    m->loop = loop;
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
    while (m->outs != NULL) {
        struct fwd_output *g = m->outs;

        while (g->streams != NULL) {
            struct fwd_stream *s = g->streams;
            g->streams = s->next;
            fwd_loop_timer_stop(m->loop, &s->flush_timer);
            batch_free(s->open);
            if (s->journaled == 0 && !s->jrn_gap)
                fwd_journal_destroy(s->jrn); /* empty: everything it held was sealed */
            else
                fwd_journal_close(s->jrn); /* unsealed records: the next start sends them */
            free(s->tag);
            free(s);
        }
        g->openbytes = 0;
        output_destroy(g);
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
    free(m->state_dir);
    free(m);
}

bool fwd_outputs_closing(const struct fwd_outputs *m)
{
    return fwd_closer_pending(m->closer) > 0;
}

/* The PackedForward header and options of a sealed batch. 0, or -1 (out of memory). */
static int frame_batch(struct fwd_output *g, struct batch *b, const char *tag, size_t tag_len)
{
    b->hdr = malloc(tag_len + FWD_FORWARD_HEADER_OVERHEAD);
    if (b->hdr == NULL)
        return -1;
    b->hdr_len = fwd_forward_packed_header(b->hdr, tag_len + FWD_FORWARD_HEADER_OVERHEAD, tag,
                                           tag_len, b->entries_len);
    b->tag_len = tag_len;
    if (g->cfg.request_ack && fwd_forward_chunk_id(b->chunk) != 0) {
        /* No randomness (getrandom failed): still unique within this process. */
        static uint64_t seq;
        snprintf(b->chunk, sizeof(b->chunk), "fwdlog%018llu", (unsigned long long)++seq);
    }
    b->opt_len = fwd_forward_packed_options(b->opt, sizeof(b->opt), b->count,
                                            g->cfg.request_ack ? b->chunk : NULL, g->cfg.gzip);
    return 0;
}

/*
 * After the scan: batches an earlier run delivered (at or below its
 * DELIVERED_FILE mark) are released, not sent again; new batches are
 * numbered above the mark.
 */
static void open_delivered(struct fwd_output *g)
{
    char path[FWD_PATH_MAX];
    uint64_t upto = 0, skipped = 0;
    struct batch **pp = &g->phead, *last = NULL;

    pathf(path, sizeof(path), "%s/" DELIVERED_FILE, g->spool_dir);
    g->delivered_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (g->delivered_fd < 0 ||
        pread(g->delivered_fd, &upto, sizeof(upto), 0) != (ssize_t)sizeof(upto))
        upto = 0;
    /* first, so that batch_done below never writes a lower mark */
    if (g->next_seq <= upto)
        g->next_seq = upto + 1;
    g->delivered_upto = upto;
    while (*pp != NULL) {
        struct batch *b = *pp;

        if (b->seq > upto) {
            last = b;
            pp = &b->next;
            continue;
        }
        *pp = b->next;
        g->nresident -= !b->spilled;
        skipped += b->count;
        g->m->st.replayed_records -= b->count;
        b->next = NULL;
        batch_done(g, b);
    }
    g->ptail = last;
    if (skipped > 0)
        fwd_log(FWD_LOG_DEBUG, "%s: %llu spooled records were delivered before the restart",
                g->label, (unsigned long long)skipped);
}

/* A record of a spool left by an earlier run: queue it as a spilled batch. */
static int on_spool_item(void *ctx, const struct fwd_spool_item *it)
{
    struct fwd_output *g = ctx;
    struct batch *b;

    if (((it->flags & FWD_SPOOL_GZIP) != 0) != g->cfg.gzip) {
        /* written with other fluentd-compress: leave it (it is released with the rest) */
        fwd_log(FWD_LOG_WARN,
                "%s: a spooled batch was written with other fluentd-compress "
                "settings: dropped",
                g->label);
        return 0;
    }
    b = calloc(1, sizeof(*b));
    if (b == NULL)
        return -1;
    fwd_buf_init(&b->entries, SIZE_MAX / 2);
    b->count = it->count;
    b->entries_len = it->ref.len;
    b->seq = it->seq;
    b->spilled = true;
    if (frame_batch(g, b, it->tag, it->tag_len) != 0) {
        batch_free(b);
        return -1;
    }
    b->ref = it->ref;
    if (b->seq >= g->next_seq)
        g->next_seq = b->seq + 1;
    g->mem += batch_mem(b);
    g->qbytes += batch_wire_len(b);
    g->m->st.replayed_records += b->count;
    pending_append(g, b);
    return 0;
}

/* Read a spool directory's options.json into key/value pairs. 0 or -1. */
static int read_meta(const char *dir, struct fwd_kv **kv, size_t *n)
{
    char path[FWD_PATH_MAX];
    json_error_t jerr;
    json_t *o;
    const char *k;
    json_t *v;

    *kv = NULL;
    *n = 0;
    pathf(path, sizeof(path), "%s/" META_FILE, dir);
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

size_t fwd_outputs_replay(struct fwd_outputs *m)
{
    char base[FWD_PATH_MAX];
    DIR *d;
    struct dirent *e;
    size_t found = 0;

    pathf(base, sizeof(base), "%s/spool", m->state_dir);
    d = opendir(base);
    if (d == NULL)
        return 0;
    while ((e = readdir(d)) != NULL) {
        char dir[FWD_PATH_MAX], err[2048];
        struct fwd_kv *kv;
        size_t n;
        struct fwd_config cfg;
        struct fwd_output *g;

        if (e->d_name[0] == '.')
            continue;
        pathf(dir, sizeof(dir), "%s/%s", base, e->d_name);
        if (read_meta(dir, &kv, &n) != 0) {
            fwd_log(FWD_LOG_WARN, "spool %s: no readable " META_FILE ": left alone", dir);
            fwd_kv_free(kv, n);
            continue;
        }
        if (fwd_config_build(&cfg, kv, n, NULL, 0, err, sizeof(err)) < 0) {
            fwd_log(FWD_LOG_ERROR, "spool %s: its options no longer work (%s): left alone", dir,
                    err);
            fwd_kv_free(kv, n);
            continue;
        }
        g = output_find(m, cfg.dest_key);
        if (g != NULL && g->spool_tried) {
            /* a resumed stream's destination (buffer-type=file) opened it already */
            fwd_kv_free(kv, n);
            continue;
        }
        if (g == NULL) {
            g = output_new(m, &cfg, dir, err, sizeof(err));
        } else if (g->spool_dir == NULL && (g->spool_dir = strdup(dir)) == NULL) {
            snprintf(err, sizeof(err), "out of memory");
            g = NULL;
        }
        if (g == NULL) {
            fwd_log(FWD_LOG_ERROR, "spool %s: %s: left alone", dir, err);
            fwd_kv_free(kv, n);
            continue;
        }
        /* spool_open scans it into the queue and writes options.json anew */
        if (spool_open(g, err, sizeof(err)) < 0)
            fwd_log(FWD_LOG_ERROR, "spool %s: %s", dir, err);
        fwd_kv_free(kv, n);
        if (g->phead != NULL) {
            for (struct batch *b = g->phead; b != NULL; b = b->next)
                found++;
            ensure_connections(g);
        } else
            output_maybe_free(g);
    }
    closedir(d);
    return found;
}

void fwd_outputs_persist(struct fwd_outputs *m)
{
    for (struct fwd_output *g = m->outs; g != NULL; g = g->next) {
        uint64_t kept = 0, lost = 0;

        for (unsigned i = 0; i < g->nnodes; i++)
            requeue(&g->nodes[i]); /* everything unacknowledged goes into the spool too */
        for (struct batch *b = g->phead; b != NULL; b = b->next) {
            if (b->ref.seg != NULL)
                continue;
            if (spool_write(g, b, batch_tag(b), b->tag_len) == 0)
                kept += b->count;
            else
                lost += b->count;
        }
        if (kept > 0)
            fwd_log(FWD_LOG_INFO,
                    "%s: %llu undelivered records kept in the spool for the next "
                    "start",
                    g->label, (unsigned long long)kept);
        if (lost > 0)
            fwd_log(FWD_LOG_ERROR, "%s: %llu undelivered records lost (no room in the spool)",
                    g->label, (unsigned long long)lost);
    }
}

/*
 * fluentd-compress=gzip: replace the batch's entries by one gzip member (sealed batches
 * are then held compressed, and the buffer limit counts what is really in memory). On
 * failure the batch is lost: counted and logged. 0 or -1.
 */
static int compress_batch(struct fwd_output *g, struct batch *b)
{
    struct fwd_buf gz;

    fwd_buf_init(&gz, SIZE_MAX / 2);
    if (fwd_forward_gzip(b->entries.data, b->entries.len, Z_DEFAULT_COMPRESSION, &gz) != 0) {
        fwd_buf_release(&gz);
        count_drop(g, b);
        fwd_log_rl(FWD_LOG_ERROR, first_cid(b),
                   "%s: gzip failed (out of memory): dropped %u records", g->label, b->count);
        return -1;
    }
    fwd_buf_release(&b->entries);
    b->entries = gz;
    return 0;
}

/* Compress and frame a batch whose entries are complete, then queue it (admit). */
static void seal_batch(struct fwd_output *g, struct batch *b, const char *tag, size_t tag_len)
{
    if (g->cfg.gzip && compress_batch(g, b) != 0) {
        batch_free(b);
        return;
    }
    b->entries_len = b->entries.len;
    if (frame_batch(g, b, tag, tag_len) != 0) {
        count_drop(g, b);
        fwd_log_rl(FWD_LOG_ERROR, first_cid(b), "%s: out of memory: dropped %u records", g->label,
                   b->count);
        batch_free(b);
        return;
    }
    b->seq = g->next_seq++;
    admit(g, b, tag, tag_len);
}

static void seal(struct fwd_stream *s)
{
    struct fwd_output *g = s->out;
    struct batch *b = s->open;

    bool queued;

    fwd_loop_timer_stop(g->m->loop, &s->flush_timer);
    if (b == NULL)
        return;
    s->open = NULL;
    g->openbytes -= b->entries.len;
    queued = b->count > 0;
    if (queued)
        seal_batch(g, b, s->tag, s->tag_len); /* consumes b */
    else
        batch_free(b);
    /* what the journal held is in the spool now (or, without room there, in memory) */
    if (s->jrn != NULL && (s->journaled > 0 || s->jrn_gap)) {
        s->journaled = 0;
        s->jrn_gap = fwd_journal_reset(s->jrn) != 0;
    }
    if (queued) {
        dispatch(g);
        ensure_connections(g);
    }
}

/* A journal an earlier run left: its records become a batch, queued like any other. */
static int on_journal(void *ctx, const char *tag, size_t tag_len, const uint8_t *entries,
                      size_t len, uint32_t count)
{
    struct fwd_output *g = ctx;
    struct batch *b = calloc(1, sizeof(*b));

    if (b == NULL)
        return -1;
    fwd_buf_init(&b->entries, SIZE_MAX / 2);
    if (fwd_buf_append(&b->entries, entries, len) != 0) {
        batch_free(b);
        return -1;
    }
    b->count = count;
    g->m->st.replayed_records += count;
    seal_batch(g, b, tag, tag_len);
    return 0;
}

void fwd_stream_sync(struct fwd_stream *s)
{
    struct fwd_output *g = s->out;
    struct batch *b = s->open;
    int rc;

    if (g->cfg.buffer_type != FWD_BUFFER_FILE || b == NULL || s->jrn_gap ||
        b->entries.len <= s->journaled || g->spool == NULL)
        return;
    if (s->jrn == NULL && (rc = fwd_journal_create(g->spool_dir, s->tag, s->tag_len, &s->jrn)) != 0)
        goto fail;
    rc = fwd_journal_append(s->jrn, b->entries.data + s->journaled, b->entries.len - s->journaled);
    if (rc != 0)
        goto fail;
    s->journaled = b->entries.len;
    return;
fail:
    s->jrn_gap = true;
    fwd_log_rl(FWD_LOG_ERROR, first_cid(b),
               "%s: cannot keep the open batch in %s: %s (until it is sealed, a crash of "
               "fwdlogd would lose it)",
               g->label, g->spool_dir, strerror(-rc));
}

static void on_flush_timer(struct fwd_timer *t)
{
    seal(t->ctx);
}

struct fwd_stream *fwd_stream_acquire(struct fwd_outputs *m, const struct fwd_config *cfg,
                                      const char *tag, char *err, size_t errlen)
{
    struct fwd_output *g = output_get(m, cfg, err, errlen);
    struct fwd_stream *s;

    if (g == NULL)
        return NULL;
    if (strlen(tag) > FWD_SPOOL_TAG_MAX) {
        snprintf(err, errlen, "log-opt tag: the tag is longer than %u bytes", FWD_SPOOL_TAG_MAX);
        output_maybe_free(g);
        return NULL;
    }
    for (s = g->streams; s != NULL; s = s->next) {
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
        output_maybe_free(g);
        return NULL;
    }
    s->out = g;
    s->tag_len = strlen(tag);
    s->flush_ms = cfg->flush_interval_ms;
    s->batch_size = cfg->batch_size;
    s->refs = 1;
    s->next = g->streams;
    g->streams = s;
    return s;
}

void fwd_stream_release(struct fwd_stream *s)
{
    struct fwd_output *g;
    struct fwd_stream **pp;

    if (s == NULL || --s->refs > 0)
        return;
    g = s->out;
    seal(s);
    for (pp = &g->streams; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    fwd_journal_destroy(s->jrn);
    free(s->tag);
    free(s);
    output_maybe_free(g);
}

int fwd_stream_begin(struct fwd_stream *s, size_t max, msgpack_packer *pk)
{
    struct batch *b = s->open;

    if (b != NULL && b->count > 0 && b->entries.len + max > s->batch_size) {
        seal(s);
        b = NULL;
    }
    if (b == NULL) {
        b = calloc(1, sizeof(*b));
        if (b == NULL)
            return -ENOMEM;
        fwd_buf_init(&b->entries, SIZE_MAX / 2);
        s->open = b;
    }
    if (fwd_buf_reserve(&b->entries, max) != 0)
        return -ENOMEM;
    s->reserved_from = b->entries.len;
    msgpack_packer_init(pk, &b->entries, fwd_buf_msgpack_write_reserved);
    return 0;
}

/* Count one record of src in b (runs of the same source share an entry). */
static void note_src(struct batch *b, struct fwd_src *src)
{
    if (src == NULL)
        return;
    if (b->nsrcs > 0 && b->srcs[b->nsrcs - 1].src == src) {
        b->srcs[b->nsrcs - 1].n++;
        return;
    }
    if (b->nsrcs == b->srccap) {
        uint32_t cap = b->srccap ? b->srccap * 2 : 2;
        struct src_count *t = realloc(b->srcs, cap * sizeof(*t));

        if (t == NULL)
            return; /* the record still goes; only its drop would not be counted per container */
        b->srcs = t;
        b->srccap = cap;
    }
    src->refs++;
    b->srcs[b->nsrcs++] = (struct src_count){src, 1};
}

void fwd_stream_commit(struct fwd_stream *s, struct fwd_src *src)
{
    struct batch *b = s->open;

    b->count++;
    note_src(b, src);
    s->out->openbytes += b->entries.len - s->reserved_from;
    if (b->entries.len >= s->batch_size) {
        seal(s);
        return;
    }
    if (!fwd_timer_armed(&s->flush_timer))
        fwd_loop_timer_start(s->out->m->loop, &s->flush_timer, s->flush_ms, on_flush_timer, s);
}

void fwd_stream_flush(struct fwd_stream *s)
{
    seal(s);
}

bool fwd_stream_blocked(struct fwd_stream *s, struct fwd_waiter *w)
{
    struct fwd_output *g = s->out;

    if (!g->blocked)
        return false;
    if (!w->waiting) {
        w->waiting = true;
        w->next = g->waiters;
        g->waiters = w;
    }
    return true;
}

void fwd_stream_unwait(struct fwd_stream *s, struct fwd_waiter *w)
{
    struct fwd_waiter **pp;

    if (s == NULL || !w->waiting)
        return;
    for (pp = &s->out->waiters; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    }
    w->next = NULL;
    w->waiting = false;
}

const char *fwd_stream_label(const struct fwd_stream *s)
{
    return s->out->label;
}

void fwd_outputs_flush_all(struct fwd_outputs *m)
{
    struct fwd_output *g, *next;

    for (g = m->outs; g != NULL; g = next) {
        next = g->next;
        for (struct fwd_stream *s = g->streams; s != NULL; s = s->next)
            seal(s);
    }
}

bool fwd_outputs_idle(const struct fwd_outputs *m)
{
    for (const struct fwd_output *g = m->outs; g != NULL; g = g->next)
        if (has_data(g))
            return false;
    return true;
}

void fwd_outputs_stats(const struct fwd_outputs *m, struct fwd_output_stats *st)
{
    *st = m->st;
    st->queued_bytes = st->destinations = st->memory_bytes = st->spool_bytes = st->blocked = 0;
    for (const struct fwd_output *g = m->outs; g != NULL; g = g->next) {
        st->queued_bytes += g->qbytes + g->openbytes;
        st->memory_bytes += g->mem + g->openbytes;
        st->spool_bytes += g->spool ? fwd_spool_bytes(g->spool) : 0;
        st->blocked += g->blocked;
        st->destinations++;
    }
}
