/*
 * fwd_container.h - the registry of logged containers: one entry per
 * StartLogging File, each reading its FIFO and feeding its records to a
 * stream of the output.
 *
 * Start never waits for the network and fails only for bad options or a FIFO
 * that cannot be opened. Stop drains the FIFO until it is empty (dockerd still
 * holds the write end, so EOF does not come first), flushes a pending partial
 * line, queues the records and forgets the container; it never waits for the
 * aggregator. A FIFO is never left undrained: a corrupt stream is read and
 * discarded so the container's writes cannot block.
 */
#ifndef FWD_CONTAINER_H
#define FWD_CONTAINER_H

#include "fwd_buf.h"
#include "fwd_info.h"
#include "fwd_loop.h"
#include "fwd_output.h"

#include <stddef.h>
#include <stdint.h>

struct fwd_registry;

struct fwd_registry_stats {
    uint64_t containers; /* now */
    uint64_t frames;
    uint64_t records;
    uint64_t bytes_read;
    uint64_t corrupt_streams; /* times a stream lost its framing */
    uint64_t discarded_bytes; /* skipped to find the framing again */
    uint64_t resyncs;         /* times it was found again */
    uint64_t records_lost;    /* out of memory while packing */
    uint64_t rate_limited;    /* lines over their container's rate-limit, dropped */
    uint64_t restored;        /* streams of an earlier run opened again */
    uint64_t state_failures;  /* streams whose state could not be kept */
};

/* What one container did, for its metrics (counted from its StartLogging on). */
struct fwd_container_counts {
    uint64_t records;         /* records packed */
    uint64_t bytes_read;      /* bytes read from its FIFO */
    uint64_t records_lost;    /* out of memory while packing */
    uint64_t corrupt_streams; /* times its stream lost its framing */
    uint64_t discarded_bytes; /* bytes skipped to find the framing again */
};

/* One container as fwd_registry_snapshot sees it. Strings are borrowed (see there). */
struct fwd_container_stats {
    const char *id;   /* the full ContainerID */
    const char *name; /* ContainerName as dockerd sent it (leading '/') */
    struct fwd_container_counts n;
    uint64_t dropped;      /* records dropped downstream (memory and spool full, retries over) */
    uint64_t rejected;     /* of those, set aside as refused by the aggregator */
    uint64_t rate_limited; /* of those, lines over its rate-limit */
    bool parsing;          /* parse= is on: parse_failures means something */
    uint64_t parse_failures;
    uint64_t partial_joins; /* lines joined from Docker's 16 KiB chunks */
    bool multiline;         /* multiline= or multiline-start= is on */
    uint64_t multiline_joins;
    uint64_t backlog; /* bytes in its FIFO not read yet (FIONREAD) */
    uint64_t pending; /* bytes read and not yet records: frame tail, lines joined, open events */
};

/*
 * defaults: plugin-wide option defaults (borrowed for the registry's life).
 * hostname: for {{.Hostname}}; state_dir: where streams are kept; fifo_dir:
 * the directory every StartLogging File must resolve into (all copied; the
 * directory is resolved at each start, so it may appear later). NULL on ENOMEM.
 */
struct fwd_registry *fwd_registry_create(struct fwd_loop *loop, struct fwd_outputs *outputs,
                                         const struct fwd_kv *defaults, size_t ndefaults,
                                         const char *hostname, const char *state_dir,
                                         const char *fifo_dir);
/* Closes every FIFO without draining (call fwd_registry_stop_all first). NULL is fine. */
void fwd_registry_destroy(struct fwd_registry *r);

/*
 * StartLogging. info is consumed on every path. body: the request as
 * received, kept on disk for a restart (state.c); NULL when restoring such a
 * state (the FIFO may then begin mid-frame). 0, or -EINVAL / -ENOENT /
 * -EPERM (a File outside the FIFO directory) / -EMFILE / -ENOMEM with a
 * user-facing message in err. A second start for the same ContainerID or
 * File replaces the old stream after draining it.
 */
int fwd_registry_start(struct fwd_registry *r, const char *file, struct fwd_info *info,
                       const char *body, size_t body_len, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* Where the registry keeps its state (streams/, spool/). */
const char *fwd_registry_state_dir(const struct fwd_registry *r);
/*
 * At start, before the API answers: open again every stream an earlier run
 * kept; states whose FIFO is gone are forgotten. Returns the streams resumed.
 */
size_t fwd_registry_restore(struct fwd_registry *r);
/* StopLogging (the stream's state is forgotten). An unknown file is not an error. */
void fwd_registry_stop(struct fwd_registry *r, const char *file);
/*
 * Drain and stop every container (shutdown): their states stay for the next
 * start. deadline (fwd_time_mono_ns, 0: none): draining stops there, and what
 * a writer still puts in a FIFO is left in it for the next start.
 */
void fwd_registry_stop_all(struct fwd_registry *r, uint64_t deadline);
void fwd_registry_stats(const struct fwd_registry *r, struct fwd_registry_stats *st);
/*
 * Fill out[0..max) with the containers logged now, newest first; returns how
 * many. The strings stay valid until the loop runs again (a StopLogging frees them).
 */
size_t fwd_registry_snapshot(const struct fwd_registry *r, struct fwd_container_stats *out,
                             size_t max);

#endif
