/*
 * fwd_spooldir.h - the files beside a destination's spool segments:
 * options.json (the options it was made with, so a later run can rebuild it
 * and send what is left) and the delivered mark (the sequence number up to
 * which every batch was delivered or dropped, so a restart does not send a
 * half-released segment again).
 *
 * options.json holds no secret value: a *-file option is kept as its path, a
 * secret from a plugin-wide default as the name of its environment variable,
 * and one given inline as a log-opt only as the fact that it was (a later run
 * waits for a container to supply it again).
 */
#ifndef FWD_SPOOLDIR_H
#define FWD_SPOOLDIR_H

#include "fwd_config.h"
#include "fwd_syncer.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * What options.json is made of: the lists cfg was built from (still alive:
 * fwd_config_build's caller's), with secret values left out as above. A new
 * reference, or NULL (out of memory).
 */
json_t *fwd_spooldir_options(const struct fwd_config *cfg) __attribute__((warn_unused_result));
/*
 * Write options as dir/options.json (0600): a temp file written here, then
 * fsync'ed and renamed onto options.json by syncer (borrowed; NULL: here and
 * now). 0 once the temp file is written, or -errno (nothing is left then).
 */
int fwd_spooldir_write_options(const char *dir, json_t *options, struct fwd_syncer *syncer)
    __attribute__((warn_unused_result));

/* What options.json says (fwd_spooldir_opts_free). */
struct fwd_spooldir_opts {
    struct fwd_kv *kv; /* options with their values, as log-opts (-file ones: the path) */
    size_t n;
    /* secrets not kept: {option, variable} from a plugin-wide default, {option, NULL} inline */
    struct fwd_kv *secrets;
    size_t nsecrets;
    bool scrubbed; /* an older version's file held secret values: written again without */
};
/*
 * Read dir/options.json into *o (fwd_spooldir_opts_free it, also on failure).
 * Secret values an older version wrote are not returned: they count as
 * inline secrets, and the file is written again without them. 0, or -EINVAL
 * (missing, not JSON), -ENOMEM, or -errno of that write.
 */
int fwd_spooldir_read_options(const char *dir, struct fwd_spooldir_opts *o)
    __attribute__((warn_unused_result));
void fwd_spooldir_opts_free(struct fwd_spooldir_opts *o);
/* Open (create) dir's delivered mark; *upto is what it says (0: nothing). The fd, or -errno. */
int fwd_spooldir_open_mark(const char *dir, uint64_t *upto);
/* Record upto in the mark. 0 or -errno. */
int fwd_spooldir_write_mark(int fd, uint64_t upto) __attribute__((warn_unused_result));
/* The destination drained: remove options.json (and a rename of it still pending) and the mark. */
void fwd_spooldir_forget(const char *dir);

#endif
