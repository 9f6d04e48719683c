/*
 * fwd_spooldir.h - the files beside a destination's spool segments:
 * options.json (the options it was made with, so a later run can rebuild it
 * and send what is left) and the delivered mark (the sequence number up to
 * which every batch was delivered or dropped, so a restart does not send a
 * half-released segment again).
 */
#ifndef FWD_SPOOLDIR_H
#define FWD_SPOOLDIR_H

#include "fwd_config.h"
#include "fwd_syncer.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Write options as dir/options.json (0600): a temp file written here, then
 * fsync'ed and renamed onto options.json by syncer (borrowed; NULL: here and
 * now). 0 once the temp file is written, or -errno (nothing is left then).
 */
int fwd_spooldir_write_options(const char *dir, json_t *options, struct fwd_syncer *syncer)
    __attribute__((warn_unused_result));
/* dir/options.json as key/value pairs (fwd_kv_free them, also on failure). 0 or -1. */
int fwd_spooldir_read_options(const char *dir, struct fwd_kv **kv, size_t *n)
    __attribute__((warn_unused_result));
/* Open (create) dir's delivered mark; *upto is what it says (0: nothing). The fd, or -errno. */
int fwd_spooldir_open_mark(const char *dir, uint64_t *upto);
/* Record upto in the mark. 0 or -errno. */
int fwd_spooldir_write_mark(int fd, uint64_t upto) __attribute__((warn_unused_result));
/* The destination drained: remove options.json (and a rename of it still pending) and the mark. */
void fwd_spooldir_forget(const char *dir);

#endif
