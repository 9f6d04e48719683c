/*
 * fwd_batch.h - a batch of records and its sealing into a PackedForward message.
 *
 * A batch is the unit everything downstream moves: it is filled as the open
 * batch of a stream, sealed (gzip, the PackedForward header, the options with
 * its chunk id), queued (fwd_queue.h), written by a connection (fwd_conn.h),
 * and freed once delivered or dropped. It counts its records per source
 * (struct fwd_src), so a drop long after the lines were read is still charged
 * to the container that wrote them. Pure: no loop, no files, no sockets.
 */
#ifndef FWD_BATCH_H
#define FWD_BATCH_H

#include "fwd_buf.h"
#include "fwd_forward.h"
#include "fwd_spool.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fwd_batch;

/* Links of a batch in one of the queue's lists (queue.c), and such a list. */
struct fwd_blink {
    struct fwd_batch *prev, *next;
};
struct fwd_blist {
    struct fwd_batch *head, *tail; /* by seq */
    size_t n;
};

/*
 * A source's share of the one queue its batches go to (queue.c owns it): its
 * queued batches, oldest first (all, and the resident ones), and their wire
 * bytes, the weight by which overflow chooses whom to drop from.
 */
struct fwd_qsrc {
    struct fwd_blist all, mem;
    size_t bytes;
    size_t slot; /* its index in the queue's heap of sources + 1; 0: not in it */
};

/* One source of records (a container); the API is in fwd_output.h. */
struct fwd_src {
    int refs;
    uint64_t dropped;
    uint64_t rejected;     /* of those, how many were set aside as refused (queue.c reject) */
    uint64_t logged;       /* of those, how many fwd_src_log_drops reported */
    uint64_t rate_limited; /* of those, lines over its rate-limit (never queued) */
    char cid[13];
    struct fwd_qsrc q;
};

/* Records of one source in a batch. */
struct fwd_src_count {
    struct fwd_src *src;
    uint32_t n;
};

struct fwd_batch {
    struct fwd_batch *next; /* queued: the queue's order (by seq); taken: the connection's */
    struct fwd_batch *prev; /* queued: the queue's order */
    /* queued: in the queue's resident list, its owner's list and its owner's resident list */
    struct fwd_blink by_mem, by_src, by_srcmem;
    struct fwd_qsrc *owner; /* queued: whose bytes it counts in (its main source, or none) */
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
    uint64_t born;            /* monotonic time it was made (its first record, or read back) */
    uint64_t written_at;      /* ack mode: loop time its last byte was written */
    uint32_t attempts;        /* connections that failed while it was the oldest one being sent */
    struct fwd_spool_ref ref; /* where it is in the spool, if it is */
    struct fwd_src_count *srcs;
    uint32_t nsrcs, srccap;
};

/* An empty batch, or NULL (out of memory). */
struct fwd_batch *fwd_batch_new(void);
/* Free b and drop its references to its sources. NULL is fine. */
void fwd_batch_free(struct fwd_batch *b);
/* The tag, inside the header (not terminated; b->tag_len bytes). Sealed batches only. */
const char *fwd_batch_tag(const struct fwd_batch *b);
/* Bytes of the whole message on the wire. */
size_t fwd_batch_wire_len(const struct fwd_batch *b);
/* What a sealed batch holds in memory (its entries only while resident). */
size_t fwd_batch_mem(const struct fwd_batch *b);
/* The container of its first record, for rate-limited log lines; NULL if unknown. */
const char *fwd_batch_first_cid(const struct fwd_batch *b);
/* The source with the most records in b (the first of equals), or NULL if none is known. */
struct fwd_src *fwd_batch_main_src(const struct fwd_batch *b);

/* Count one more record of src (NULL: none) in b; runs of one source share an entry. */
void fwd_batch_note_src(struct fwd_batch *b, struct fwd_src *src);
/* b is dropped: charge its records to their sources (rejected: set aside as refused too). */
void fwd_batch_count_drop(struct fwd_batch *b, bool rejected);

/*
 * Seal b, whose entries are complete: with gzip, replace them by one gzip
 * member; then build the header for tag and the options (count, a new chunk
 * id with ack, compressed). 0, or -ENOMEM (b is unchanged but for entries).
 */
int fwd_batch_seal(struct fwd_batch *b, const char *tag, size_t tag_len, bool ack, bool gzip)
    __attribute__((warn_unused_result));
/* Only the header and options (a batch read back from a spool: entries_len is set). */
int fwd_batch_frame(struct fwd_batch *b, const char *tag, size_t tag_len, bool ack, bool gzip)
    __attribute__((warn_unused_result));

#endif
