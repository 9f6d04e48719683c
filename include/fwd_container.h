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
    uint64_t corrupt_streams;
    uint64_t discarded_bytes;
    uint64_t records_lost; /* out of memory while packing */
};

/*
 * defaults: plugin-wide option defaults (borrowed for the registry's life).
 * hostname: for {{.Hostname}} (copied). NULL on ENOMEM.
 */
struct fwd_registry *fwd_registry_create(struct fwd_loop *loop, struct fwd_outputs *outputs,
                                         const struct fwd_kv *defaults, size_t ndefaults,
                                         const char *hostname);
/* Closes every FIFO without draining (call fwd_registry_stop_all first). NULL is fine. */
void fwd_registry_destroy(struct fwd_registry *r);

/*
 * StartLogging. info is consumed on every path. 0, or -EINVAL / -ENOENT /
 * -ENOMEM with a user-facing message in err. A second start for the same
 * ContainerID or File replaces the old stream after draining it.
 */
int fwd_registry_start(struct fwd_registry *r, const char *file, struct fwd_info *info, char *err,
                       size_t errlen) __attribute__((warn_unused_result));
/* StopLogging. An unknown file is not an error. */
void fwd_registry_stop(struct fwd_registry *r, const char *file);
/* Drain and stop every container (shutdown). */
void fwd_registry_stop_all(struct fwd_registry *r);
void fwd_registry_stats(const struct fwd_registry *r, struct fwd_registry_stats *st);
/* Per-container metrics lines (Prometheus text) appended to out. 0, or -1 when out is full. */
int fwd_registry_metrics(const struct fwd_registry *r, struct fwd_buf *out);

#endif
