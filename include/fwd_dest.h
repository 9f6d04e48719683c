/*
 * fwd_dest.h - the output module's own structs: a destination (struct
 * fwd_dest: its queue, its connections), a stream (struct fwd_stream: one tag's
 * open batch) and the set of them (struct fwd_outputs). Shared by output.c
 * (destinations, dispatch, lifetimes) and stream.c (streams, their open batches
 * and journals); nothing else includes it.
 */
#ifndef FWD_DEST_H
#define FWD_DEST_H

#include "fwd_batch.h"
#include "fwd_closer.h"
#include "fwd_config.h"
#include "fwd_conn.h"
#include "fwd_journal.h"
#include "fwd_loop.h"
#include "fwd_output.h"
#include "fwd_queue.h"
#include "fwd_resolve.h"
#include "fwd_syncer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fwd_dest {
    struct fwd_outputs *m;
    struct fwd_dest *next;
    char *key;
    char label[1200]; /* addresses for log lines */
    struct fwd_config cfg;
    struct fwd_stream *streams;
    struct fwd_queue q;
    struct fwd_conn_env env;
    struct fwd_conn conns[FWD_MAX_ADDRS];
    unsigned nconns;
    unsigned rr;             /* round-robin: the connection to try first */
    struct fwd_timer linger; /* orphan and drained: marked for reaping when it fires */
    bool reap, replay_only;  /* the reap timer frees it; it only drains a spool of an earlier run */
};

struct fwd_stream {
    struct fwd_dest *dest;
    struct fwd_stream *next;
    char *tag;
    size_t tag_len;
    uint32_t flush_ms;
    size_t batch_size;
    int refs;
    struct fwd_batch *open;
    size_t reserved_from; /* entries.len at fwd_stream_begin */
    struct fwd_timer flush_timer;
    struct fwd_journal *jrn; /* buffer-type=file: the open batch on disk */
    size_t journaled;        /* bytes of open->entries in it */
    bool jrn_gap;            /* an append failed: nothing more until the next seal */
};

struct fwd_outputs {
    struct fwd_loop *loop;
    char *state_dir;
    struct fwd_dest *dests;
    struct fwd_output_stats st;
    struct fwd_resolver *resolver;
    struct fwd_closer *closer;
    struct fwd_syncer *syncer;   /* borrowed: the spools' syncs */
    struct fwd_timer reap;       /* frees destinations marked for reaping */
    struct fwd_waiting *waiting; /* replay.c: spools of an earlier run waiting for a key */
};

/* The destination cfg names (made, or found and shared), or NULL with err set. */
struct fwd_dest *fwd_dest_get(struct fwd_outputs *m, const struct fwd_config *cfg, char *err,
                              size_t errlen) __attribute__((warn_unused_result));
/* d has new batches: hand them to its connections, starting those it needs. */
void fwd_dest_kick(struct fwd_dest *d);
/* d may be done (no streams, nothing queued): it lingers, then the reap timer frees it. */
void fwd_dest_maybe_free(struct fwd_dest *d);

#endif
