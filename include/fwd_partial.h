/*
 * fwd_partial.h - join the chunks Docker splits long lines into.
 *
 * Docker cuts a line longer than 16 KiB into chunks that share
 * partial_log_metadata.id, numbered by ordinal, the final one flagged last
 * (moby daemon/logger/copier.go). Chunks of different ids (stdout and stderr)
 * interleave. This module joins each id into one line, bounded by max_line:
 *
 *  - a complete line of at most max_line bytes comes out whole (no piece info);
 *  - a longer one comes out as pieces of max_line bytes, numbered 1, 2, ...,
 *    the final piece flagged last (Docker's partial_* record keys downstream);
 *  - a line whose next chunk does not come within timeout is emitted as a
 *    piece (last=false); later chunks of that id continue its numbering;
 *  - at end of stream (fwd_partial_flush) what is pending is emitted: whole if
 *    nothing of it went out before, else as the last piece.
 * Pre-19.03 Docker flagged partial chunks without metadata, and the final
 * chunk of such a line unflagged; those are joined per source.
 * Pure: no fds, no clocks (callers pass now_ns).
 */
#ifndef FWD_PARTIAL_H
#define FWD_PARTIAL_H

#include "fwd_entry.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One line (or piece of one) ready to become a record. Borrowed for the callback only. */
struct fwd_line {
    enum fwd_source source;
    const char *source_str;
    size_t source_len;
    int64_t time_nano;
    const uint8_t *data;
    size_t len;
    bool piece;     /* true: emit partial_message/partial_id/partial_ordinal/partial_last */
    const char *id; /* piece only */
    size_t id_len;
    uint32_t ordinal; /* piece only, from 1 */
    bool last;        /* piece only */
};

typedef int (*fwd_line_cb)(void *ctx, const struct fwd_line *line);

struct fwd_partial;

/* NULL on ENOMEM. max_line >= 1; timeout_ns > 0. */
struct fwd_partial *fwd_partial_create(size_t max_line, uint64_t timeout_ns);
/* Frees pending data without emitting it (call fwd_partial_flush first to keep it). */
void fwd_partial_destroy(struct fwd_partial *p);

/*
 * Feed one decoded entry. Calls cb for each line or piece that is complete.
 * Returns 0, a callback's non-zero value, or -ENOMEM (the chunk's bytes that
 * did not fit are dropped and counted in fwd_partial_dropped()).
 */
int fwd_partial_feed(struct fwd_partial *p, const struct fwd_entry *e, uint64_t now_ns,
                     fwd_line_cb cb, void *ctx);
/* Emit what has waited past its timeout; forget old tombstones. */
int fwd_partial_expire(struct fwd_partial *p, uint64_t now_ns, fwd_line_cb cb, void *ctx);
/* End of stream: emit everything pending (see above) and reset. */
int fwd_partial_flush(struct fwd_partial *p, fwd_line_cb cb, void *ctx);
/* The earliest deadline of a pending id, or 0 when nothing is pending. */
uint64_t fwd_partial_next_deadline(const struct fwd_partial *p);
/* Bytes pending in all slots (for memory accounting and tests). */
size_t fwd_partial_pending_bytes(const struct fwd_partial *p);
/* Bytes dropped because memory ran out. */
uint64_t fwd_partial_dropped(const struct fwd_partial *p);
/*
 * The length of p[0..len) to cut at so that no UTF-8 character is split: len,
 * or up to 3 bytes less when p ends inside a multi-byte character. Bytes that
 * are not UTF-8 are cut anywhere. Pure.
 */
size_t fwd_partial_utf8_cut(const uint8_t *p, size_t len);
/*
 * max-record-size: send l (a whole line or event, not a piece) as pieces of at
 * most max bytes each (max >= 4), cut at UTF-8 boundaries, numbered 1, 2, ...,
 * the final one flagged last, with a partial id made of l's time and nonce (32
 * hex; the caller makes nonce unique per stream). cb gets each piece (borrowed
 * for the call). 0 or the first non-zero value cb returned.
 */
int fwd_partial_split(const struct fwd_line *l, size_t max, uint64_t nonce, fwd_line_cb cb,
                      void *ctx);
/* Lines made of two or more chunks (joined), however they came out (whole or in pieces). */
uint64_t fwd_partial_joins(const struct fwd_partial *p);

#endif
