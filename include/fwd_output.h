/*
 * fwd_output.h - delivery to aggregators.
 *
 * A destination (struct fwd_output) is one aggregator address with one
 * connection, shared by every container whose connection options are equal
 * (fwd_config.dest_key). Records are packed straight into the open batch of a
 * stream (struct fwd_stream: one tag, one flush policy) and sealed into a
 * PackedForward message when the batch reaches batch_size bytes or
 * flush_interval has passed since its first record. Sealed batches queue on
 * their destination, bounded in bytes (buffer_limit): past it the oldest
 * unsent batches are dropped, counted and logged. Nothing here ever blocks:
 * connect, DNS and writes are non-blocking and driven by the loop.
 */
#ifndef FWD_OUTPUT_H
#define FWD_OUTPUT_H

#include "fwd_config.h"
#include "fwd_loop.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fwd_outputs;
struct fwd_stream;

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
};

struct fwd_outputs *fwd_outputs_create(struct fwd_loop *loop);
/* Closes every connection; queued data is discarded (flush first). NULL is fine. */
void fwd_outputs_destroy(struct fwd_outputs *m);

/*
 * A reference to the stream for tag on cfg's destination, creating either as
 * needed. NULL with the reason in err: out of memory, or a TLS setting that
 * does not load (the message names the option). The stream's flush policy is
 * cfg's (streams with different policies are different streams).
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
void fwd_stream_commit(struct fwd_stream *s);
/* Seal the open batch now (StopLogging: nothing more will come soon). */
void fwd_stream_flush(struct fwd_stream *s);

/* Seal every open batch (shutdown). */
void fwd_outputs_flush_all(struct fwd_outputs *m);
/* True when nothing is open, queued or half-written anywhere. */
bool fwd_outputs_idle(const struct fwd_outputs *m);
void fwd_outputs_stats(const struct fwd_outputs *m, struct fwd_output_stats *st);

#endif
