/*
 * container.c - container registry and the FIFO shell around the pure
 * pipeline: bytes -> frames (frame.c) -> entries (entry.c) -> lines
 * (partial.c) -> records (record.c) packed into the stream's open batch.
 *
 * Memory: all FIFOs are read into one registry-wide scratch buffer (the loop
 * is single-threaded), so an idle container holds no read buffer; only the
 * tail of a frame cut by a read is kept per container (at most one frame).
 * Fairness: at most FWD_READS_PER_WAKEUP reads per FIFO per wakeup and
 * FWD_READ_PER_TURN bytes from all FIFOs per loop turn (so the aggregator
 * sockets keep up); epoll is level-triggered, so the rest is read on the next
 * turn. Stop and EOF drain without those limits. A wakeup that finds only a
 * trickle pauses the FIFO for FWD_COALESCE_MS, so a busy container costs one
 * wakeup per millisecond, not one per line. overflow-policy=block pauses it
 * until the destination has room.
 * Invariant: every container in the list has an open fd watched by the loop,
 * and is in both indexes (by FIFO path, by container id: O(1) lookups).
 * A StartLogging File must resolve (realpath: no symlink or `..` out of it)
 * to a FIFO directly inside the FIFO directory (FWDLOG_FIFO_DIR, where dockerd
 * creates them); anything else is refused before it is opened.
 * Shutdown drains every FIFO until a deadline: a FIFO still being written
 * past it is left for the next start (its state stays).
 *
 * Streams outlive the process: StartLogging keeps its body on disk (state.c)
 * before it answers, StopLogging and EOF forget it, shutdown keeps it. At
 * start, fwd_registry_restore opens every kept FIFO again. The dead process
 * may have consumed part of a frame, so a restored stream starts in resync
 * mode: bytes are skipped (counted, logged once) up to the first place where
 * a frame starts and decodes as dockerd writes it. A stream that loses its
 * framing later (garbage, a length over the cap, a frame that does not
 * decode) resyncs the same way instead of being discarded.
 */
#define FWD_LOG_MODULE "container"
#include "fwd_container.h"
#include "fwd_fifo.h"
#include "fwd_buf.h"
#include "fwd_config.h"
#include "fwd_entry.h"
#include "fwd_frame.h"
#include "fwd_index.h"
#include "fwd_limits.h"
#include "fwd_log.h"
#include "fwd_multiline.h"
#include "fwd_parse.h"
#include "fwd_partial.h"
#include "fwd_pipeline.h"
#include "fwd_rate.h"
#include "fwd_state.h"
#include "fwd_record.h"
#include "fwd_tag.h"
#include "fwd_time.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <unistd.h>

struct fwd_container {
    struct fwd_registry *r;
    struct fwd_container *prev, *next;
    struct fwd_index_node by_file, by_cid;
    char *file;
    char cid[65];
    int fd;
    struct fwd_io io;
    struct fwd_buf pending; /* the start of a frame cut by the last read */
    bool resync;            /* framing lost (or a restored stream): look for a frame start */
    bool resync_logged;     /* the skip was logged: once per stream */
    uint64_t skipped;       /* bytes skipped while resyncing, since the last log line */
    size_t bad_len;         /* on_frame: length of the frame that did not decode */
    struct fwd_partial *partial;
    size_t room;       /* max-record-size: the longest log a record carries (then pieces) */
    size_t max_record; /* max-record-size */
    uint64_t splits;   /* lines and events split for max-record-size (their partial ids) */
    struct fwd_record_tmpl *tmpl;
    struct fwd_stream *stream;
    struct fwd_src *src;      /* counts this container's records dropped downstream */
    struct fwd_waiter waiter; /* overflow-policy=block: waiting for room */
    struct fwd_held held;     /* what it holds before it is records, in its destination's memory */
    struct fwd_rate rate;     /* rate-limit= (rate 0: off) */
    struct fwd_timer ptimer;
    struct fwd_timer rtimer;   /* a trickle was read: look again after FWD_COALESCE_MS */
    struct fwd_multiline *ml;  /* multiline=/multiline-start=; NULL: off */
    struct fwd_timer mtimer;   /* multiline-flush of the oldest open event */
    struct fwd_parser *parser; /* parse=; NULL: none */
    bool more;                 /* parse or seq-key: records get fwd_record_more */
    uint64_t seq;              /* seq-key: the next record's number */
    uint64_t parse_failures;
    char *name;                    /* ContainerName, for the metrics' container_name label */
    struct fwd_container_counts n; /* this container's share of the registry's counters */
};

struct fwd_registry {
    struct fwd_loop *loop;
    struct fwd_outputs *outputs;
    const struct fwd_kv *defaults;
    size_t ndefaults;
    char *hostname;
    char *state_dir; /* streams are kept under it (state.c) */
    char *fifo_dir;  /* StartLogging's File must be in it */
    struct fwd_container *head;
    struct fwd_index files, cids; /* the containers by file and by cid */
    uint64_t drain_deadline;      /* shutdown: drains end at this fwd_time_mono_ns (0: none) */
    uint8_t *scratch;
    struct fwd_entry_decoder *dec;
    uint64_t turn;     /* fwd_loop_now of the loop turn the budget below is for */
    size_t turn_bytes; /* read from FIFOs in that turn */
    struct fwd_registry_stats st;
};

#define SCRATCH_SIZE (FWD_FRAME_MAX + 4 + FWD_READ_CHUNK)

struct fwd_registry *fwd_registry_create(struct fwd_loop *loop, struct fwd_outputs *outputs,
                                         const struct fwd_kv *defaults, size_t ndefaults,
                                         const char *hostname, const char *state_dir,
                                         const char *fifo_dir)
{
    struct fwd_registry *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    if (fwd_index_init(&r->files) != 0 || fwd_index_init(&r->cids) != 0) {
        fwd_registry_destroy(r);
        return NULL;
    }
    r->loop = loop;
    r->outputs = outputs;
    r->defaults = defaults;
    r->ndefaults = ndefaults;
    r->hostname = strdup(hostname);
    r->state_dir = strdup(state_dir);
    r->fifo_dir = strdup(fifo_dir);
    r->scratch = malloc(SCRATCH_SIZE);
    r->dec = fwd_entry_decoder_create();
    if (r->hostname == NULL || r->state_dir == NULL || r->fifo_dir == NULL || r->scratch == NULL ||
        r->dec == NULL) {
        fwd_registry_destroy(r);
        return NULL;
    }
    return r;
}

static void container_free(struct fwd_container *c)
{
    struct fwd_registry *r = c->r;

    if (c->prev)
        c->prev->next = c->next;
    else if (r->head == c)
        r->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    fwd_index_del(&r->files, &c->by_file);
    fwd_index_del(&r->cids, &c->by_cid);
    if (c->fd >= 0) {
        fwd_loop_io_del(r->loop, &c->io);
        close(c->fd);
    }
    fwd_loop_timer_stop(r->loop, &c->ptimer);
    fwd_loop_timer_stop(r->loop, &c->rtimer);
    fwd_loop_timer_stop(r->loop, &c->mtimer);
    fwd_partial_destroy(c->partial);
    fwd_multiline_destroy(c->ml);
    fwd_parser_destroy(c->parser);
    fwd_record_tmpl_destroy(c->tmpl);
    fwd_stream_unwait(c->stream, &c->waiter);
    fwd_stream_hold(c->stream, &c->held, 0, 0);
    fwd_stream_release(c->stream);
    fwd_src_release(c->src);
    fwd_buf_release(&c->pending);
    free(c->file);
    free(c->name);
    free(c);
    r->st.containers--;
}

void fwd_registry_destroy(struct fwd_registry *r)
{
    if (r == NULL)
        return;
    while (r->head != NULL)
        container_free(r->head);
    fwd_entry_decoder_destroy(r->dec);
    free(r->scratch);
    free(r->hostname);
    free(r->state_dir);
    free(r->fifo_dir);
    fwd_index_release(&r->files);
    fwd_index_release(&r->cids);
    free(r);
}

/* ---- the pipeline --------------------------------------------------------------------- */

/* An event (a line, or lines multiline joined): parse it, pack it. */
static int on_event(void *ctx, const struct fwd_line *l)
{
    struct fwd_container *c = ctx;
    struct fwd_parsed parsed;
    struct fwd_record_more more = {NULL, c->seq};
    msgpack_packer pk;

    /* max-record-size: an event too long for one record goes in pieces (partial_* keys) */
    if (!l->piece && l->len > c->room)
        return fwd_partial_split(l, c->room, ++c->splits, on_event, c);
    /* rate-limit: per record (each piece of a split event on its own) */
    if (!fwd_rate_take(&c->rate, l->len, fwd_loop_now(c->r->loop))) {
        fwd_src_count_rate_drop(c->src);
        c->r->st.rate_limited++;
        fwd_log_rl(FWD_LOG_WARN, c->cid, "over its rate-limit (%llu bytes/s): dropping lines",
                   (unsigned long long)c->rate.rate);
        return 0;
    }
    if (c->parser != NULL) {
        /* a piece of an over-long line is cut JSON/logfmt, and fields that make the record
         * too long would need cutting: neither is parsed, both are counted */
        if (!l->piece && fwd_parser_run(c->parser, l->data, l->len, &parsed) == 0)
            more.parsed = &parsed;
        if (more.parsed && fwd_record_size_max_more(c->tmpl, l, &more) > c->max_record)
            more.parsed = NULL;
        c->parse_failures += more.parsed == NULL;
    }
    if (fwd_stream_begin(c->stream, fwd_record_size_max_more(c->tmpl, l, &more), &pk) != 0) {
        c->r->st.records_lost++;
        c->n.records_lost++;
        fwd_log_rl(FWD_LOG_ERROR, c->cid, "out of memory: lost a %zu-byte line", l->len);
        return 0;
    }
    if (c->more)
        fwd_record_pack_more(c->tmpl, l, &more, &pk);
    else
        fwd_record_pack(c->tmpl, l, &pk);
    fwd_stream_commit(c->stream, c->src);
    c->seq++;
    c->r->st.records++;
    c->n.records++;
    return 0;
}

/* A whole line from partial.c: into multiline when it is on. */
static int on_line(void *ctx, const struct fwd_line *l)
{
    struct fwd_container *c = ctx;

    if (c->ml != NULL)
        return fwd_multiline_feed(c->ml, l, fwd_loop_now(c->r->loop), on_event, c);
    return on_event(c, l);
}

static int on_frame(void *ctx, const uint8_t *p, size_t len)
{
    struct fwd_container *c = ctx;
    struct fwd_entry e;

    if (fwd_entry_decode(c->r->dec, p, len, &e) != 0) {
        c->bad_len = len; /* its length prefix was wrong too, perhaps: resync from it */
        return -EPROTO;
    }
    c->r->st.frames++;
    fwd_partial_feed(c->partial, &e, fwd_loop_now(c->r->loop), on_line, c);
    return 0;
}

/* Report what c holds before it is records (frame tail, lines being joined, open events). */
static void hold(struct fwd_container *c)
{
    size_t n = c->pending.len + fwd_partial_pending_bytes(c->partial) +
               (c->ml ? fwd_multiline_pending_bytes(c->ml) : 0);

    fwd_stream_hold(c->stream, &c->held, n, c->pending.len);
}

static void on_partial_timer(struct fwd_timer *t);

static void arm_partial_timer(struct fwd_container *c)
{
    uint64_t d = fwd_partial_next_deadline(c->partial);

    if (d == 0)
        fwd_loop_timer_stop(c->r->loop, &c->ptimer);
    else if (!fwd_timer_armed(&c->ptimer) || c->ptimer.deadline != d)
        fwd_loop_timer_at(c->r->loop, &c->ptimer, d, on_partial_timer, c);
}

static void on_multiline_timer(struct fwd_timer *t);

static void arm_multiline_timer(struct fwd_container *c)
{
    uint64_t d = c->ml ? fwd_multiline_next_deadline(c->ml) : 0;

    if (d == 0)
        fwd_loop_timer_stop(c->r->loop, &c->mtimer);
    else if (!fwd_timer_armed(&c->mtimer) || c->mtimer.deadline != d)
        fwd_loop_timer_at(c->r->loop, &c->mtimer, d, on_multiline_timer, c);
}

static void on_multiline_timer(struct fwd_timer *t)
{
    struct fwd_container *c = t->ctx;

    fwd_multiline_expire(c->ml, fwd_loop_now(c->r->loop), on_event, c);
    arm_multiline_timer(c);
    hold(c);
}

static void on_partial_timer(struct fwd_timer *t)
{
    struct fwd_container *c = t->ctx;

    fwd_partial_expire(c->partial, fwd_loop_now(c->r->loop), on_line, c);
    arm_partial_timer(c);
    arm_multiline_timer(c);
    hold(c);
}

static void skip(struct fwd_container *c, size_t n)
{
    c->skipped += n;
    c->r->st.discarded_bytes += n;
    c->n.discarded_bytes += n;
}

/* Framing is lost: from here on, look for the next frame start (resync). */
static void lose_framing(struct fwd_container *c, const char *why)
{
    if (c->resync)
        return;
    c->resync = true;
    c->r->st.corrupt_streams++;
    c->n.corrupt_streams++;
    fwd_log_rl(FWD_LOG_WARN, c->cid, "log stream out of step (%s): skipping to the next frame",
               why);
}

/*
 * Does the frame at p (complete) decode as one dockerd wrote: stdout or stderr, a
 * time set? (No bound on the time itself: a host without a clock may be in 1970.)
 */
static bool plausible(struct fwd_container *c, const uint8_t *p, uint32_t len)
{
    struct fwd_entry e;

    return fwd_entry_decode(c->r->dec, p, len, &e) == 0 && e.source != FWD_SOURCE_OTHER &&
           e.time_nano > 0;
}

/*
 * Resync: skip to the first frame start in p[pos..len) whose frame is complete
 * and plausible. Returns the new pos; c->resync is cleared when one was found
 * (otherwise what is left from pos waits for more bytes).
 */
static size_t resync(struct fwd_container *c, const uint8_t *p, size_t pos, size_t len)
{
    for (;;) {
        size_t off;
        int found = fwd_frame_find_start(p + pos, len - pos, FWD_FRAME_MAX, &off);
        uint32_t n;

        skip(c, off);
        pos += off;
        if (!found)
            return pos;
        n = fwd_frame_get_len(p + pos);
        if (len - pos - 4 < n)
            return pos; /* not complete yet: decide when the rest is here */
        if (plausible(c, p + pos + 4, n))
            break;
        skip(c, 1);
        pos++;
    }
    c->resync = false;
    if (!c->resync_logged || c->skipped > 0)
        fwd_log_c(FWD_LOG_WARN, c->cid, "log stream back in step after skipping %llu bytes",
                  (unsigned long long)c->skipped);
    c->resync_logged = true;
    c->skipped = 0;
    c->r->st.resyncs++;
    return pos;
}

static void on_rtimer(struct fwd_timer *t);

/*
 * Stop reading for now: overflow-policy=block and the destination is full (the waiter
 * is woken), or the container's rate-limit bucket is overdrawn (the timer resumes).
 */
static bool throttled(struct fwd_container *c)
{
    uint64_t ns = fwd_rate_wait_ns(&c->rate, fwd_loop_now(c->r->loop));

    if (ns > 0)
        fwd_loop_timer_start(c->r->loop, &c->rtimer, (ns + 999999) / 1000000, on_rtimer, c);
    return ns > 0 || fwd_stream_blocked(c->stream, &c->waiter);
}

static void process(struct fwd_container *c, size_t len)
{
    struct fwd_registry *r = c->r;
    const uint8_t *p = r->scratch;
    size_t pos = 0, used;
    int rc;

    for (;;) {
        if (c->resync) {
            pos = resync(c, p, pos, len);
            if (c->resync)
                break;
        }
        rc = fwd_frame_split(p + pos, len - pos, FWD_FRAME_MAX, on_frame, c, &used);
        pos += used;
        if (rc == -EMSGSIZE) {
            lose_framing(c, "a frame length over the 1 MiB limit");
            continue;
        }
        if (rc == -EPROTO) {
            pos -= 4 + c->bad_len; /* back to the prefix of the frame that did not decode */
            skip(c, 1);
            pos++;
            lose_framing(c, "a frame that is not a LogEntry");
            continue;
        }
        break;
    }
    if (pos < len && fwd_buf_append(&c->pending, p + pos, len - pos) != 0) {
        /* more than a frame's worth that is not a frame yet: drop the oldest part */
        size_t keep = c->pending.cap;

        lose_framing(c, "more than a frame's worth of bytes that are not a frame");
        skip(c, len - pos - keep);
        fwd_buf_reset(&c->pending);
        if (fwd_buf_append(&c->pending, p + len - keep, keep) != 0)
            skip(c, keep);
    }
    arm_partial_timer(c);
    arm_multiline_timer(c);
    hold(c);
}

/*
 * Read what the FIFO holds. Returns 0 when it would block (or the wakeup's
 * budget is spent), 1 at EOF (dockerd closed its end), 2 when the loop turn's
 * budget was spent before anything was read, 3 when a drain passed the
 * registry's drain_deadline, -errno on error. *got: bytes read.
 */
static int read_fifo(struct fwd_container *c, bool drain, size_t *got)
{
    struct fwd_registry *r = c->r;

    *got = 0;
    for (int i = 0; drain || i < FWD_READS_PER_WAKEUP; i++) {
        size_t have = c->pending.len;
        ssize_t n;

        if (!drain) {
            /* All FIFOs together read at most FWD_READ_PER_TURN per loop turn, so the
             * aggregator sockets keep up with them (epoll reports the rest next turn). */
            if (r->turn != fwd_loop_now(r->loop)) {
                r->turn = fwd_loop_now(r->loop);
                r->turn_bytes = 0;
            }
            if (r->turn_bytes >= FWD_READ_PER_TURN)
                return i == 0 ? 2 : 0;
        }
        if (!drain && i > 0 && throttled(c))
            return 0; /* overflow-policy=block: on_fifo stops watching the FIFO */
        /* shutdown: a writer that never stops must not hold us past dockerd's SIGKILL */
        if (drain && r->drain_deadline != 0 && fwd_time_mono_ns() >= r->drain_deadline)
            return 3;

        if (have)
            memcpy(r->scratch, c->pending.data, have);
        n = read(c->fd, r->scratch + have, FWD_READ_CHUNK);
        if (n == -1) {
            if (errno == EINTR) {
                i--;
                continue;
            }
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
        }
        if (n == 0)
            return 1;
        r->st.bytes_read += (uint64_t)n;
        c->n.bytes_read += (uint64_t)n;
        r->turn_bytes += (size_t)n;
        *got += (size_t)n;
        fwd_buf_reset(&c->pending);
        process(c, have + (size_t)n);
        fwd_stream_sync(c->stream); /* buffer-type=file: on disk before the next read */
        if (c->pending.cap > 64 * 1024 && c->pending.len == 0)
            fwd_buf_release(&c->pending);
    }
    return 0;
}

/*
 * Drain, flush the partial line, seal the batch and free the container.
 * forget: the stream is over for dockerd too (StopLogging, EOF), so its
 * state goes; at shutdown it stays for the next start.
 */
static void finish(struct fwd_container *c, const char *why, bool forget)
{
    size_t got;
    int rc = read_fifo(c, true, &got);

    if (rc < 0)
        fwd_log_c(FWD_LOG_WARN, c->cid, "reading FIFO while stopping: %s", strerror(-rc));
    if (rc == 3)
        fwd_log_c(FWD_LOG_WARN, c->cid,
                  "shutdown: stopped draining the FIFO, still being written after %u ms; what "
                  "is left in it is read at the next start",
                  FWD_SHUTDOWN_DRAIN_MS);
    if (c->pending.len > 0)
        fwd_log_c(FWD_LOG_WARN, c->cid, "discarding %zu bytes of an incomplete last frame",
                  c->pending.len);
    fwd_partial_flush(c->partial, on_line, c);
    if (c->ml != NULL)
        fwd_multiline_flush(c->ml, on_event, c);
    fwd_stream_flush(c->stream);
    fwd_src_log_drops(c->src);
    fwd_log_c(FWD_LOG_DEBUG, c->cid, "stopped (%s)", why);
    if (forget)
        fwd_state_forget(c->r->state_dir, c->file);
    container_free(c);
}

/*
 * Pause (0) or resume (EPOLLIN) reading the FIFO. A resume that fails is tried
 * again from the timer: a FIFO must never stay paused (its container would block).
 */
static void fifo_events(struct fwd_container *c, uint32_t events)
{
    int rc = fwd_loop_io_mod(c->r->loop, &c->io, events);

    if (rc == 0)
        return;
    fwd_log_rl(FWD_LOG_ERROR, c->cid, "epoll: cannot %s reading the FIFO: %s%s",
               events ? "resume" : "pause", strerror(-rc), events ? "; trying again" : "");
    if (events != 0)
        fwd_loop_timer_start(c->r->loop, &c->rtimer, FWD_COALESCE_MS, on_rtimer, c);
}

static void on_rtimer(struct fwd_timer *t)
{
    fifo_events(t->ctx, EPOLLIN);
}

static void on_fifo(struct fwd_io *io, uint32_t events)
{
    struct fwd_container *c = io->ctx;
    size_t got;
    int rc;

    /* overflow-policy=block: leave the pipe full until there is room (a hang-up is read:
     * dockerd is gone, and what is left must be taken now) */
    if (!(events & (EPOLLHUP | EPOLLERR)) && throttled(c)) {
        fifo_events(c, 0);
        return;
    }
    rc = read_fifo(c, false, &got);
    if (rc == 2)
        return; /* the turn's budget is spent: epoll reports this FIFO again next turn */
    if (rc == 0 && throttled(c)) {
        fifo_events(c, 0);
        return;
    }
    if (rc == 0 && got < FWD_COALESCE_BYTES && !(events & (EPOLLHUP | EPOLLERR))) {
        /* dockerd writes one frame per write(2): rather than waking per line, let the
         * pipe gather a millisecond's worth (nothing waits on it: the pipe holds 1 MiB) */
        fifo_events(c, 0);
        fwd_loop_timer_start(c->r->loop, &c->rtimer, FWD_COALESCE_MS, on_rtimer, c);
        return;
    }
    if (rc == 1) {
        /* dockerd closed its end without StopLogging (it exited, e.g. live-restore). */
        fwd_log_c(FWD_LOG_INFO, c->cid, "FIFO closed by dockerd; stream finished");
        finish(c, "EOF", true);
    } else if (rc < 0) {
        fwd_log_c(FWD_LOG_ERROR, c->cid, "reading FIFO: %s; stream finished", strerror(-rc));
        finish(c, "read error", true);
    }
}

/* There is room again: read the FIFO again. */
static void on_room(struct fwd_waiter *w)
{
    struct fwd_container *c =
        (struct fwd_container *)((char *)w - offsetof(struct fwd_container, waiter));

    fifo_events(c, EPOLLIN);
}

/* ---- start / stop ---------------------------------------------------------------------- */

static struct fwd_container *find_file(struct fwd_registry *r, const char *file)
{
    struct fwd_index_node *n = fwd_index_find(&r->files, file);

    return n ? (struct fwd_container *)((char *)n - offsetof(struct fwd_container, by_file)) : NULL;
}

static struct fwd_container *find_cid(struct fwd_registry *r, const char *cid)
{
    struct fwd_index_node *n = fwd_index_find(&r->cids, cid);

    return n ? (struct fwd_container *)((char *)n - offsetof(struct fwd_container, by_cid)) : NULL;
}

/* Free a container that never started (what fwd_registry_start built so far). */
static void container_discard(struct fwd_container *c)
{
    if (c == NULL)
        return;
    if (c->fd >= 0)
        close(c->fd);
    fwd_partial_destroy(c->partial);
    fwd_multiline_destroy(c->ml);
    fwd_parser_destroy(c->parser);
    fwd_record_tmpl_destroy(c->tmpl);
    fwd_stream_release(c->stream);
    fwd_src_release(c->src);
    free(c->file);
    free(c->name);
    free(c);
}

/* A container for file, with its record template, pipeline and open FIFO. 0 or -errno. */
static int container_new(struct fwd_registry *r, const char *file, const struct fwd_info *info,
                         const struct fwd_config *cfg, struct fwd_container **out, char *err,
                         size_t errlen)
{
    struct fwd_container *c = calloc(1, sizeof(*c));
    int rc;

    *out = c;
    if (c == NULL)
        return -ENOMEM;
    c->r = r;
    c->fd = -1;
    fwd_buf_init(&c->pending, FWD_FRAME_MAX + 4);
    snprintf(c->cid, sizeof(c->cid), "%s", info->container_id);
    c->tmpl = fwd_record_tmpl_create(info, cfg, r->hostname, err, errlen);
    if (c->tmpl == NULL)
        return -EINVAL;
    rc = fwd_pipeline_create(cfg, c->tmpl, &c->parser, &c->ml, &c->more, err, errlen);
    if (rc < 0)
        return rc;
    c->file = strdup(file);
    c->name = strdup(info->container_name);
    c->max_record = cfg->max_record;
    c->room = fwd_record_piece_room(c->tmpl, cfg->max_record);
    c->partial = fwd_partial_create(cfg->max_line < c->room ? cfg->max_line : c->room,
                                    FWD_MS_TO_NS(cfg->partial_timeout_ms));
    c->src = fwd_src_create(c->cid);
    c->waiter.wake = on_room;
    fwd_rate_init(&c->rate, cfg->rate_limit, cfg->rate_burst, cfg->overflow == FWD_OVERFLOW_BLOCK,
                  fwd_loop_now(r->loop));
    c->seq = 1;
    if (c->file == NULL || c->name == NULL || c->partial == NULL || c->src == NULL)
        return -ENOMEM;
    c->fd = fwd_fifo_open(r->fifo_dir, file, err, errlen);
    return c->fd < 0 ? c->fd : 0;
}

/* Keep the StartLogging body (a restart of fwdlogd re-attaches from it); restored: resync. */
static void keep_state(struct fwd_registry *r, struct fwd_container *c, const char *body,
                       size_t body_len)
{
    int rc;

    if (body == NULL) {
        c->resync = true; /* restored: the FIFO may begin mid-frame */
        c->resync_logged = true;
        r->st.restored++;
    } else if ((rc = fwd_state_save(r->state_dir, c->file, body, body_len)) != 0) {
        /* the container still logs; only a restart of fwdlogd would not find it */
        r->st.state_failures++;
        fwd_log_c(FWD_LOG_ERROR, c->cid,
                  "cannot keep the stream's state in %s/streams: %s; if fwdlogd restarts, "
                  "this container's output is not read until it restarts too",
                  r->state_dir, strerror(-rc));
    }
}

/* Replace an older stream of the container, take the stream and watch the FIFO. 0 or -errno. */
static int attach(struct fwd_registry *r, struct fwd_container *c, const struct fwd_config *cfg,
                  const char *tag, char *err, size_t errlen)
{
    struct fwd_container *old;
    int rc;

    /* Live-restore or a retried call: the new stream replaces the old one. */
    while ((old = find_file(r, c->file)) != NULL || (old = find_cid(r, c->cid)) != NULL) {
        fwd_log_c(FWD_LOG_INFO, old->cid, "StartLogging again for this container: replacing %s",
                  old->file);
        finish(old, "replaced", strcmp(old->file, c->file) != 0);
    }
    c->stream = fwd_stream_acquire(r->outputs, cfg, tag, err, errlen);
    if (c->stream == NULL)
        return -EINVAL;
    rc = fwd_loop_io_add(r->loop, &c->io, c->fd, EPOLLIN, on_fifo, c);
    if (rc < 0)
        snprintf(err, errlen, "cannot watch log FIFO: %s", strerror(-rc));
    return rc;
}

int fwd_registry_start(struct fwd_registry *r, const char *file, struct fwd_info *info,
                       const char *body, size_t body_len, char *err, size_t errlen)
{
    struct fwd_container *c = NULL;
    struct fwd_config cfg;
    char *tag = NULL;
    int rc;

    rc =
        fwd_config_build(&cfg, info->config, info->nconfig, r->defaults, r->ndefaults, err, errlen);
    if (rc < 0)
        goto out;
    tag = fwd_tag_render(cfg.tag, info, r->hostname, err, errlen);
    if (tag == NULL) {
        rc = -EINVAL;
        goto out;
    }
    rc = container_new(r, file, info, &cfg, &c, err, errlen);
    if (rc == 0)
        rc = attach(r, c, &cfg, tag, err, errlen);
    if (rc < 0)
        goto out;
    keep_state(r, c, body, body_len);
    c->next = r->head;
    if (r->head)
        r->head->prev = c;
    r->head = c;
    fwd_index_add(&r->files, &c->by_file, c->file);
    fwd_index_add(&r->cids, &c->by_cid, c->cid);
    r->st.containers++;
    fwd_log_c(FWD_LOG_INFO, c->cid, "logging %s as tag \"%s\" to %s (%zu attributes)",
              info->container_name, tag, fwd_stream_label(c->stream), fwd_record_nattrs(c->tmpl));
    c = NULL;
out:
    if (rc == -ENOMEM)
        snprintf(err, errlen, "out of memory");
    container_discard(c);
    free(tag);
    fwd_info_release(info);
    return rc;
}

void fwd_registry_stop(struct fwd_registry *r, const char *file)
{
    struct fwd_container *c = find_file(r, file);

    if (c == NULL) {
        fwd_log(FWD_LOG_DEBUG, "StopLogging for unknown stream %s (already finished)", file);
        return;
    }
    finish(c, "StopLogging", true);
}

void fwd_registry_stop_all(struct fwd_registry *r, uint64_t deadline)
{
    r->drain_deadline = deadline;
    while (r->head != NULL)
        finish(r->head, "shutdown", false);
    r->drain_deadline = 0;
}

void fwd_registry_stats(const struct fwd_registry *r, struct fwd_registry_stats *st)
{
    *st = r->st;
}

size_t fwd_registry_snapshot(const struct fwd_registry *r, struct fwd_container_stats *out,
                             size_t max)
{
    size_t i = 0;

    for (const struct fwd_container *c = r->head; c != NULL && i < max; c = c->next, i++) {
        struct fwd_container_stats *s = &out[i];
        int queued = 0;

        s->id = c->cid;
        s->name = c->name;
        s->n = c->n;
        s->dropped = fwd_src_dropped(c->src);
        s->rejected = fwd_src_rejected(c->src);
        s->rate_limited = fwd_src_rate_limited(c->src);
        s->parsing = c->parser != NULL;
        s->parse_failures = c->parse_failures;
        s->partial_joins = fwd_partial_joins(c->partial);
        s->multiline = c->ml != NULL;
        s->multiline_joins = c->ml ? fwd_multiline_joins(c->ml) : 0;
        s->pending = c->held.bytes;
        /* what dockerd wrote that was not read yet (a pipe answers FIONREAD at once) */
        s->backlog = ioctl(c->fd, FIONREAD, &queued) == 0 && queued > 0 ? (uint64_t)queued : 0;
    }
    return i;
}

const char *fwd_registry_state_dir(const struct fwd_registry *r)
{
    return r->state_dir;
}
