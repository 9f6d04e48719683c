/*
 * fwd_journal.h - the open batch of a stream, kept on disk (buffer-type=file).
 *
 * A sealed batch is in the spool before it is sent; the records of the batch
 * still open (up to flush-interval of lines) are appended here as they are
 * read, one write(2) per FIFO read, so a crash of fwdlogd loses none of them
 * (the page cache survives it; no fsync). When the batch is sealed into the
 * spool the journal is emptied. At start, journals an earlier run left are
 * read back as batches. A record cut short by a crash mid-write ends the
 * journal: only whole MessagePack entries are recovered.
 *
 * File: "FWDJ" version(1) tag_len(2, big-endian) tag, then the entries
 * ([time, record] MessagePack arrays) back to back.
 */
#ifndef FWD_JOURNAL_H
#define FWD_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

struct fwd_journal;

/* Create a new journal for tag in dir. 0 or -errno. */
int fwd_journal_create(const char *dir, const char *tag, size_t tag_len, struct fwd_journal **out)
    __attribute__((warn_unused_result));
/* Append entries. 0 or -errno (then the journal is emptied: it never holds a gap). */
int fwd_journal_append(struct fwd_journal *j, const void *p, size_t len)
    __attribute__((warn_unused_result));
/* Everything appended so far is in the spool now: empty it. 0 or -errno. */
int fwd_journal_reset(struct fwd_journal *j) __attribute__((warn_unused_result));
/* Close and delete the file. NULL is fine. */
void fwd_journal_destroy(struct fwd_journal *j);
/* Close, keeping the file for the next start (records not sealed). NULL is fine. */
void fwd_journal_close(struct fwd_journal *j);

/*
 * Called for each journal found: its tag, and count whole entries in
 * entries[0..len) (borrowed for the call). Return 0 once they are kept
 * elsewhere (the file is then deleted), anything else to leave it.
 */
typedef int (*fwd_journal_cb)(void *ctx, const char *tag, size_t tag_len, const uint8_t *entries,
                              size_t len, uint32_t count);
/* Read back every journal in dir (at most max_bytes each). Returns how many were found. */
size_t fwd_journal_recover(const char *dir, size_t max_bytes, fwd_journal_cb cb, void *ctx);

#endif
