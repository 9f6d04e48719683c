/*
 * fwd_output.h - delivery to aggregators.
 *
 * A destination (struct fwd_output) is one fluentd-address list with its
 * connection options, shared by every container whose options are equal
 * (fwd_config.dest_key); it has one connection per aggregator in the list
 * (failover or round-robin between them). Records are packed straight into the
 * open batch of a stream (struct fwd_stream: one tag, one flush policy) and
 * sealed into a PackedForward message when the batch reaches batch_size bytes
 * or flush_interval has passed since its first record. Sealed batches queue on
 * their destination, in memory up to buffer_limit bytes and past that (or while
 * every aggregator is down, or always with buffer-type=file) in the disk spool
 * up to spool_limit; when both are full the overflow policy decides. Nothing
 * here ever blocks on the network: connect, DNS (c-ares) and writes are
 * non-blocking and driven by the loop. (Spool files are written and read synchronously.)
 */
#ifndef FWD_OUTPUT_H
#define FWD_OUTPUT_H

#include "fwd_config.h"
#include "fwd_loop.h"
#include "fwd_metrics.h"
#include "fwd_syncer.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fwd_outputs;
struct fwd_stream;

/*
 * One source of records (a container), so that records dropped long after
 * they were read are still counted against it. Reference-counted: batches
 * holding its records keep it alive after the container is gone.
 */
struct fwd_src;
struct fwd_src *fwd_src_create(const char *cid);
void fwd_src_release(struct fwd_src *src);
uint64_t fwd_src_dropped(const struct fwd_src *src);
/* Of the dropped, those set aside as refused by the aggregator (state/rejected/). */
uint64_t fwd_src_rejected(const struct fwd_src *src);
/* A line of src over its rate-limit was dropped: counted as dropped, and as rate-limited. */
void fwd_src_count_rate_drop(struct fwd_src *src);
/* Of the dropped, the lines over the container's rate-limit. */
uint64_t fwd_src_rate_limited(const struct fwd_src *src);
/*
 * Log how many of src's records were dropped (its container stops). The last
 * release logs only what was dropped after that, so nothing is said twice.
 */
void fwd_src_log_drops(struct fwd_src *src);

/* A container waiting for room (overflow-policy=block). Embedded by the caller. */
struct fwd_waiter {
    struct fwd_waiter *next;
    void (*wake)(struct fwd_waiter *w); /* there is room again: read on */
    bool waiting;
};

struct fwd_output_stats {
    uint64_t records_sent;
    uint64_t batches_sent;
    uint64_t bytes_sent;
    uint64_t records_dropped;
    uint64_t batches_dropped;
    uint64_t connects;
    uint64_t connection_failures; /* connects, handshakes and live connections that failed */
    uint64_t queued_bytes;        /* sealed and open, now */
    uint64_t destinations;        /* now */
    uint64_t memory_bytes;        /* in memory: sealed and open batches, what containers hold */
    uint64_t spool_bytes;         /* spool files on disk, now */
    uint64_t spooled_batches;     /* written to a spool */
    uint64_t replayed_records;    /* found in spools at start */
    uint64_t spool_corrupt;       /* spool records skipped as cut short or damaged */
    uint64_t blocked;             /* destinations holding their containers back, now */
    uint64_t records_rejected;    /* set aside after FWD_MAX_SEND_ATTEMPTS failed sends */
    uint64_t batches_rejected;
};

/*
 * state_dir: where spools live (state_dir/spool/<destination>/). Copied.
 * syncer: takes the spools' syncs (borrowed: destroy it after the outputs;
 * NULL: they run on the loop). NULL with the reason in err (out of memory, the
 * resolver cannot start).
 */
struct fwd_outputs *fwd_outputs_create(struct fwd_loop *loop, struct fwd_syncer *syncer,
                                       const char *state_dir, char *err, size_t errlen);
/*
 * At start (replay.c): the spools an earlier run left, each sent again to the
 * destination its options.json names. That file holds no secret value: a
 * *-file option is read again now, a secret of a plugin-wide default is taken
 * from defaults (the daemon's environment now), and a spool whose secret was
 * given inline waits, untouched, until a destination with the same spool_id
 * exists (a container logging there again), and is then sent with that
 * destination's credentials. Returns the number of batches found.
 */
size_t fwd_outputs_replay(struct fwd_outputs *m, const struct fwd_kv *defaults, size_t ndefaults);
/*
 * At shutdown, after the flush: write the batches that are only in memory to
 * their spools (where spool_limit allows), so the next start sends them.
 */
void fwd_outputs_persist(struct fwd_outputs *m);
/*
 * Shutdown, after the flush: free every destination; queued data is
 * discarded (persist first). Healthy connections are handed to the graceful
 * closer: run the loop while fwd_outputs_closing, within a deadline.
 */
void fwd_outputs_close_all(struct fwd_outputs *m);
bool fwd_outputs_closing(const struct fwd_outputs *m);
/* fwd_outputs_close_all, then whatever is still closing is closed at once. NULL is fine. */
void fwd_outputs_destroy(struct fwd_outputs *m);

/*
 * A reference to the stream for tag on cfg's destination, creating either as
 * needed. NULL with the reason in err: out of memory, a TLS setting that does
 * not load, or a spool that cannot be created with buffer-type=file (the
 * message names the option). The stream's flush policy is cfg's (streams with
 * different policies are different streams).
 */
struct fwd_stream *fwd_stream_acquire(struct fwd_outputs *m, const struct fwd_config *cfg,
                                      const char *tag, char *err, size_t errlen);
/* Drop a reference: the last one seals the open batch. The destination stays until drained. */
void fwd_stream_release(struct fwd_stream *s);

/*
 * Open room for one entry of at most max bytes and point *pk at it. Pack the
 * entry, then call fwd_stream_commit. 0 or -ENOMEM (the entry is lost; the
 * caller counts it).
 */
int fwd_stream_begin(struct fwd_stream *s, size_t max, msgpack_packer *pk)
    __attribute__((warn_unused_result));
void fwd_stream_commit(struct fwd_stream *s, struct fwd_src *src);
/*
 * overflow-policy=block: true when the destination is over its limits; then w
 * is queued and w->wake is called once there is room (stop reading meanwhile).
 */
bool fwd_stream_blocked(struct fwd_stream *s, struct fwd_waiter *w);
/* Forget w if it is waiting (the container goes away). */
void fwd_stream_unwait(struct fwd_stream *s, struct fwd_waiter *w);
/* The destination's addresses, for log lines. */
const char *fwd_stream_label(const struct fwd_stream *s);
/* Seal the open batch now (StopLogging: nothing more will come soon). */
void fwd_stream_flush(struct fwd_stream *s);
/*
 * buffer-type=file: append the open batch's new records to its journal
 * (fwd_journal.h), so a crash of fwdlogd loses none of them. The reader calls
 * it after each FIFO read, before it reads again. Otherwise nothing.
 */
void fwd_stream_sync(struct fwd_stream *s);
/*
 * What a container holds before it becomes records (a frame cut by a read, lines
 * being joined, open multiline events) counts in its destination's memory: the
 * container reports its totals, bytes (everything) and tail (of it, the frame
 * tail), after each change, and 0, 0 before it releases the stream. h is the
 * container's record of what it reported (zeroed at first). May wake waiters.
 */
struct fwd_held {
    size_t bytes, tail;
};
void fwd_stream_hold(struct fwd_stream *s, struct fwd_held *h, size_t bytes, size_t tail);

/* Seal every open batch (shutdown). */
void fwd_outputs_flush_all(struct fwd_outputs *m);
/* True when nothing is open, queued or half-written anywhere. */
bool fwd_outputs_idle(const struct fwd_outputs *m);
void fwd_outputs_stats(const struct fwd_outputs *m, struct fwd_output_stats *st);

/* Where one connection to an aggregator stands, as the metrics name it. */
enum fwd_output_conn_state {
    FWD_OUTPUT_IDLE = 0,   /* not connected, nothing to send */
    FWD_OUTPUT_RESOLVING,  /* waiting for DNS */
    FWD_OUTPUT_CONNECTING, /* TCP (or unix) connect in progress */
    FWD_OUTPUT_HANDSHAKE,  /* TLS or the Forward HELO/PING/PONG */
    FWD_OUTPUT_CONNECTED,  /* ready to send */
    FWD_OUTPUT_BACKOFF,    /* failed: waiting to retry */
    FWD_OUTPUT_CONN_STATES
};

/* One destination as fwd_outputs_each_dest reports it. Borrowed for the callback only. */
struct fwd_dest_stats {
    const char *label; /* the fluentd-address list as written: never a secret */
    char id[17];       /* the name of its spool directory: tells apart equal lists */
    unsigned conns[FWD_OUTPUT_CONN_STATES]; /* its connections in each state */
    uint64_t connects;                      /* connections that became ready */
    uint64_t failures;                 /* connects, handshakes and live connections that failed */
    uint64_t records_sent, bytes_sent; /* delivered (acknowledged with require_ack_response) */
    uint64_t records_dropped;
    uint64_t records_rejected;  /* set aside after failed sends (state/rejected/) */
    uint64_t memory_bytes;      /* in memory: sealed and open batches, what containers hold */
    uint64_t spool_bytes;       /* queued in its spool on disk */
    uint64_t queued_bytes;      /* sealed and open, wherever they are */
    uint64_t oldest_ns;         /* monotonic time the oldest queued record was read; 0: none */
    uint64_t acks_pending;      /* batches sent and waiting for their ack */
    const struct fwd_hist *ack; /* seconds from a batch's last byte written to its ack */
    int64_t last_send_unix_ns;  /* wall clock of the last delivery; 0: never */
    uint64_t last_send_mono_ns; /* the same, monotonic; 0: never */
    uint64_t last_drop_mono_ns; /* when it last dropped records; 0: never */
    const char *last_error;     /* why it last failed ("" when it never did); no secret */
};

typedef void (*fwd_dest_cb)(void *ctx, const struct fwd_dest_stats *d);
/* Call cb for each destination (including orphans still draining). */
void fwd_outputs_each_dest(const struct fwd_outputs *m, fwd_dest_cb cb, void *ctx);

/*
 * ---- inside the module only: output.c (destinations) and replay.c (the
 * spools an earlier run left, spool directory names) share these.
 */
struct fwd_waiting; /* replay.c: spools of an earlier run waiting for a key */

/*
 * Send dir, a spool an earlier run left: with cfg, to cfg's destination; with
 * cfg NULL, to the destination of spool_id that exists now (with its
 * credentials; -ENOENT if there is none). It becomes the destination's own
 * spool if that has none yet; otherwise a destination of its own drains it
 * and goes. Nothing if dir is a destination's already. 0 with *batches found,
 * or -errno with the reason in err.
 */
int fwd_outputs_adopt(struct fwd_outputs *m, const struct fwd_config *cfg, const char *spool_id,
                      const char *dir, size_t *batches, char *err, size_t errlen);
const char *fwd_outputs_state_dir(const struct fwd_outputs *m);
struct fwd_waiting **fwd_outputs_waiting(struct fwd_outputs *m);
/* Is dir a destination's spool directory (open, or named so for when it opens)? */
bool fwd_outputs_dir_held(const struct fwd_outputs *m, const char *dir);

/* replay.c */
/*
 * The spool directory for a new destination of cfg when state_dir/spool/<spool_id>
 * is another's (equal options, other credentials): the first free of SHA-256
 * of "<spool_id>#2", "#3", ..., into out. false: the usual name is free.
 */
bool fwd_outputs_other_spool_name(const struct fwd_outputs *m, const struct fwd_config *cfg,
                                  char *out, size_t n);
/* The waiting spools of spool_id, now that a destination of it exists, are sent (and forgotten). */
void fwd_outputs_waiting_take(struct fwd_outputs *m, struct fwd_waiting **w, const char *spool_id);
void fwd_outputs_waiting_free(struct fwd_waiting *w);

#endif
