/*
 * fwd_spool.h - the disk spool of one destination: batches kept in segment
 * files under a directory, so they survive an aggregator outage longer than
 * memory allows, and a crash or restart of fwdlogd.
 *
 * A segment is written append-only; each record carries its batch's sequence
 * number, record count, tag and entries, and a CRC-32 over all of them. A
 * segment is closed past FWD_SPOOL_SEGMENT bytes and deleted once every record
 * in it was released (delivered or dropped). Opening a directory scans the
 * segments left by an earlier run in order: a record that is cut short or whose
 * checksum fails ends what is read of that segment (a crash mid-write), which is
 * reported and skipped past, never fatal. New records always go to new segments.
 *
 * Not durable against a host crash at once: a segment is fdatasync'ed after it
 * is closed (full, or at fwd_spool_close), by the syncer's thread, not per
 * record and not before the write returns (a crash of fwdlogd alone loses
 * nothing written: the page cache keeps it).
 */
#ifndef FWD_SPOOL_H
#define FWD_SPOOL_H

#include "fwd_buf.h"
#include "fwd_syncer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fwd_spool;
struct fwd_spool_seg;

/* Where one record is. seg NULL: not in the spool. */
struct fwd_spool_ref {
    struct fwd_spool_seg *seg;
    uint64_t off;  /* of the record header */
    uint32_t len;  /* of the entries */
    uint32_t size; /* of the whole record on disk */
};

/* A record found by fwd_spool_open. tag is not terminated; both pointers die with the callback. */
struct fwd_spool_item {
    uint64_t seq;
    uint32_t count;
    uint16_t flags;
    const char *tag;
    size_t tag_len;
    struct fwd_spool_ref ref;
};

#define FWD_SPOOL_GZIP 1 /* flags: the entries are one gzip member */
/* Bytes a record adds on disk besides its tag and entries. */
#define FWD_SPOOL_RECORD_OVERHEAD 28u
#define FWD_SPOOL_TAG_MAX         1024u

/*
 * Open (creating) the spool in dir and report every record left in it, oldest
 * segment first, to item (which returns 0, or -1 to stop: the remaining records
 * stay on disk). syncer (borrowed, must outlive the spool; NULL: sync on this
 * thread) takes the closed segments' syncs. 0, or -errno with the reason in err.
 */
int fwd_spool_open(const char *dir, struct fwd_syncer *syncer, struct fwd_spool **out,
                   int (*item)(void *ctx, const struct fwd_spool_item *it), void *ctx, char *err,
                   size_t errlen) __attribute__((warn_unused_result));
/* Close the files; the records not released stay for the next run. NULL is fine. */
void fwd_spool_close(struct fwd_spool *sp);
/* Close, delete every segment (released or not) and remove the directory if nothing else is in it.
 */
void fwd_spool_destroy(struct fwd_spool *sp);

/* Append one record. 0, or -errno (ENOSPC, EIO, ...): nothing was added. */
int fwd_spool_append(struct fwd_spool *sp, uint64_t seq, uint32_t count, uint16_t flags,
                     const char *tag, size_t tag_len, const void *entries, size_t len,
                     struct fwd_spool_ref *ref) __attribute__((warn_unused_result));
/*
 * Read a record's entries into out (replacing its content) and check them
 * against the record's checksum. 0, -EIO (unreadable), -EBADMSG (checksum).
 */
int fwd_spool_read(struct fwd_spool *sp, const struct fwd_spool_ref *ref, struct fwd_buf *out)
    __attribute__((warn_unused_result));
/* The record is no longer needed; its segment goes when all of its records are. */
void fwd_spool_release(struct fwd_spool *sp, struct fwd_spool_ref *ref);

/* The directory it was opened on. */
const char *fwd_spool_dir(const struct fwd_spool *sp);
/* Bytes of segment files on disk now. */
uint64_t fwd_spool_bytes(const struct fwd_spool *sp);
/*
 * Bytes of the records not yet released (what limits are checked against: a
 * segment's file goes only when all its records are released, so the files can
 * exceed this by the part of some segments that is already released).
 */
uint64_t fwd_spool_live_bytes(const struct fwd_spool *sp);
/* Records read at open that were skipped as corrupt or cut short (for logs and metrics). */
uint64_t fwd_spool_corrupt(const struct fwd_spool *sp);

#endif
