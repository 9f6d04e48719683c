/*
 * fwd_fair.h - who a destination's overflow takes from: the queue's batches
 * per source, and the source that holds the most queued bytes.
 *
 * Every queued batch counts, with its wire bytes, against one source: its
 * main source (fwd_batch_main_src; with the default tag {{.ID}} a batch holds
 * one container's records) or, for batches of no known source (a spool an
 * earlier run left), the queue's own anonymous one. Each source keeps its
 * queued batches oldest first (all, and the resident ones); the sources with
 * batches sit in a max-heap by their bytes. Adding, removing and evicting a
 * batch is O(1) plus O(log sources) for the heap; finding the heaviest source
 * is O(1), and its oldest or newest batch, or its oldest resident one, too.
 * Also the queue's list of resident batches, oldest first, so spilling the
 * oldest one is O(1). Pure: no files, no loop.
 */
#ifndef FWD_FAIR_H
#define FWD_FAIR_H

#include "fwd_batch.h"

#include <stdbool.h>
#include <stddef.h>

/* The kind of batch a drop must free. */
enum fwd_fair_kind {
    FWD_FAIR_IN_SPOOL = 0, /* with a spool record (frees disk) */
    FWD_FAIR_IN_MEMORY,    /* resident (frees memory) */
    FWD_FAIR_ANY,
};

struct fwd_fair {
    struct fwd_blist resident; /* queued batches in memory, by seq */
    struct fwd_qsrc anon;      /* batches of no known source */
    struct fwd_qsrc **heap;    /* sources with queued batches, heaviest at [0] */
    size_t nheap, cap;         /* while anon is not in it, nheap < cap: a slot is left */
};

/* 0 or -ENOMEM. */
int fwd_fair_init(struct fwd_fair *f) __attribute__((warn_unused_result));
/* Free the heap; the batches are the queue's. */
void fwd_fair_release(struct fwd_fair *f);

/*
 * b joins the queue: counted against its main source (anon when there is none,
 * or no room in the heap), in its lists (and the resident list unless it is
 * spilled). front: b is older than most of them (a returned batch), so its
 * place is looked for from the oldest; otherwise from the newest.
 */
void fwd_fair_add(struct fwd_fair *f, struct fwd_batch *b, bool front);
/* b leaves the queue (taken, dropped, done). */
void fwd_fair_remove(struct fwd_fair *f, struct fwd_batch *b);
/* b, queued and resident, is about to be spilled: it leaves the resident lists. */
void fwd_fair_evict(struct fwd_fair *f, struct fwd_batch *b);

/* The source holding the most queued bytes, or NULL when nothing is queued. */
const struct fwd_qsrc *fwd_fair_heaviest(const struct fwd_fair *f);
/*
 * The batch overflow takes: of the heaviest source, its oldest batch of kind
 * (newest: its newest), or NULL if it has none of that kind. O(1), except
 * FWD_FAIR_IN_SPOOL without buffer-type=file, which skips the source's resident
 * batches older than its oldest spilled one.
 */
struct fwd_batch *fwd_fair_victim(const struct fwd_fair *f, enum fwd_fair_kind kind, bool newest);

/*
 * For tests: check every invariant against the queue's list from head (by
 * next). NULL when they hold, or what is wrong (static storage).
 */
const char *fwd_fair_check(const struct fwd_fair *f, const struct fwd_batch *head);

#endif
