/*
 * fwd_queue.h - a destination's ordered queue of sealed batches, its memory and
 * spool accounting, admission within the limits, the overflow policies and the
 * containers waiting for room (overflow-policy=block).
 *
 * Sealed batches queue oldest first by sequence number. A batch is resident
 * (its entries in memory) or spilled (only in the spool; the small struct
 * stays). Memory counts resident entries, each batch's struct and header, the
 * streams' open batches (openbytes, kept by the owner) and what the containers
 * hold before it is records (heldbytes: frame tails, lines being joined, open
 * multiline events; kept by the owner), and is kept under
 * buffer_limit by spilling batches to the spool, oldest first; the spool is
 * kept under spool_limit. With buffer-type=file every batch is written to the
 * spool when sealed, and kept in memory too while there is room. When neither
 * has room, overflow-policy decides, and it takes from the source (container)
 * that holds the most queued bytes (fwd_fair.h): drop-oldest drops its oldest
 * batch, drop-newest refuses a new batch of it, or makes room for another
 * source's new batch by dropping its newest; block holds the containers back
 * (waiters) until there is room. Every dropped record is counted against its
 * container. Frame tails do not hold containers back: only reading on completes
 * them (the rest of heldbytes becomes records on its timers, so it cannot block
 * forever).
 *
 * Batches taken by a connection (fwd_queue_pop) stay in the queue's accounting
 * until fwd_queue_done (delivered or dropped) or fwd_queue_return (the
 * connection is gone: they queue again, in order). The spool is opened on first
 * use; an earlier run's records in it (and its journals) are queued at open.
 * No loop, no sockets: unit-tested against a temporary directory. Spool files
 * are written and read synchronously; their syncs go to the owner's syncer.
 */
#ifndef FWD_QUEUE_H
#define FWD_QUEUE_H

#include "fwd_batch.h"
#include "fwd_config.h"
#include "fwd_fair.h"
#include "fwd_metrics.h"
#include "fwd_output.h"
#include "fwd_syncer.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * What a destination did, for fwd_outputs_each_dest (metrics, /healthz): the
 * queue counts the drops, the destination's connections (conn.c, through their
 * env's queue) the rest.
 */
struct fwd_dest_counts {
    uint64_t connects, failures, records_sent, bytes_sent, records_dropped, records_rejected;
    uint64_t last_send_mono, last_drop_mono; /* monotonic ns; 0: never */
    int64_t last_send_unix;                  /* wall clock ns; 0: never */
    struct fwd_hist ack;                     /* seconds from last byte written to its ack */
    char last_error[400];                    /* "<address>: <what>: <why>"; never a secret */
};

struct fwd_queue {
    const struct fwd_config *cfg; /* the destination's: limits, policy, gzip, acks */
    const char *label;            /* the destination, for log lines */
    const char *state_dir;        /* the spool goes in state_dir/spool/<cfg->spool_id> */
    struct fwd_output_stats *st;  /* counters shared by every destination */
    /* the lowest sequence number connections hold (UINT64_MAX: none), for the delivered mark */
    uint64_t (*oldest_taken)(void *ctx);
    void *ctx;
    struct fwd_syncer *syncer; /* the owner's (set after init; NULL: syncs inline): spool syncs */

    struct fwd_batch *head, *tail; /* sealed, not taken; by seq (next, prev) */
    struct fwd_fair fair;          /* the same per source, and those in memory (fwd_fair.h) */
    size_t qbytes;                 /* wire bytes of sealed batches (queued and taken) */
    size_t mem;                    /* memory held by sealed batches */
    size_t openbytes;              /* entry bytes in the streams' open batches (the owner's) */
    size_t heldbytes;              /* what containers hold before it is records (the owner's) */
    size_t tailbytes;              /* of it, frame tails (only more reads complete them) */
    uint64_t next_seq;
    bool down;            /* the owner's: every aggregator is down, new batches go to the spool */
    bool blocked;         /* overflow-policy=block and no room */
    bool spool_tried;     /* the spool was opened, or failed to */
    bool options_written; /* options.json is in the spool directory */
    bool spool_failed;    /* the last write to the spool failed (a full disk, say) */
    uint64_t spool_retry_at; /* monotonic ns: a spool that failed to open is tried again */
    char *spool_dir;
    struct fwd_spool *spool;
    int delivered_fd;        /* the delivered mark in the spool directory, or -1 */
    uint64_t delivered_upto; /* what it says */
    struct fwd_waiter *waiters;
    json_t *options; /* what the destination was made with, for the spool's options.json */
    struct fwd_dest_counts dc;
    struct fwd_spool *rejected; /* spool_dir/rejected: batches refused too often */
};

/*
 * Set q up for a destination; cfg, label, state_dir and st must outlive it.
 * spool_dir: an existing spool to adopt, or NULL. 0 or -ENOMEM.
 */
int fwd_queue_init(struct fwd_queue *q, const struct fwd_config *cfg, const char *label,
                   const char *state_dir, const char *spool_dir, struct fwd_output_stats *st,
                   uint64_t (*oldest_taken)(void *ctx), void *ctx)
    __attribute__((warn_unused_result));
/*
 * Free what q holds. Queued batches are not delivered: their spool records stay
 * for the next start. A spool left empty is removed with its files. Waiters are
 * forgotten (not woken).
 */
void fwd_queue_fini(struct fwd_queue *q);

/*
 * Open the spool (once), queueing what an earlier run left in it. 0, or
 * -errno with the reason in err (spool-limit 0, a directory that cannot be made;
 * -EAGAIN: the last try failed less than a retry interval ago).
 */
int fwd_queue_open_spool(struct fwd_queue *q, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/*
 * Seal b (fwd_batch_seal), number it and admit it: in memory or the spool,
 * within the limits, or as the overflow policy says. 0, or a negative errno when
 * b itself was dropped (counted and logged; b is freed either way).
 */
int fwd_queue_seal(struct fwd_queue *q, struct fwd_batch *b, const char *tag, size_t tag_len);

/* The oldest queued batch, read back from the spool if it is spilled, or NULL. */
struct fwd_batch *fwd_queue_pop(struct fwd_queue *q);
/*
 * Batches taken and not done (ordered by seq) queue again, in order. One that
 * failed FWD_MAX_SEND_ATTEMPTS times is set aside instead: written to the
 * spool directory's rejected/ (within spool-limit), counted, logged.
 */
void fwd_queue_return(struct fwd_queue *q, struct fwd_batch *list);
/* A taken batch is done: delivered or (counted by the caller) dropped. Frees it. */
void fwd_queue_done(struct fwd_queue *q, struct fwd_batch *b);
/* Count b as dropped against its containers, then fwd_queue_done. */
void fwd_queue_drop(struct fwd_queue *q, struct fwd_batch *b);
/* Drop everything queued (counted, logged with why). */
void fwd_queue_drop_all(struct fwd_queue *q, const char *why);
/* Queued batches, or records in open batches. */
bool fwd_queue_has_data(const struct fwd_queue *q);
/* Shutdown: write the batches only in memory to the spool. Records kept; *lost: no room. */
uint64_t fwd_queue_persist(struct fwd_queue *q, uint64_t *lost);

/*
 * overflow-policy=block: true when q is over its limits; then w waits and
 * w->wake is called once there is room.
 */
bool fwd_queue_wait(struct fwd_queue *q, struct fwd_waiter *w);
void fwd_queue_unwait(struct fwd_queue *q, struct fwd_waiter *w);
/* Look at the limits again (the open batches changed). Wakes the waiters when there is room. */
void fwd_queue_update_blocked(struct fwd_queue *q);
/* For tests: NULL when the queue's lists and counts agree, or what is wrong. */
const char *fwd_queue_check(const struct fwd_queue *q);

#endif
