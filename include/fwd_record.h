/*
 * fwd_record.h - the record a log line becomes, compatible with Docker's
 * built-in fluentd driver (moby daemon/logger/fluentd/fluentd.go Log):
 *   container_id (64 hex), container_name (with '/'), source, log,
 *   then the extra attributes from labels, labels-regex, env, env-regex
 *   (env wins on a collision, and an attribute named like a base key replaces
 *   it, as Go's map assignment does), then partial_message, partial_id,
 *   partial_ordinal, partial_last for a line that comes out in pieces.
 * Every value is a string. Everything that does not change per line is packed
 * once at StartLogging into a template; a line costs a few memcpys.
 */
#ifndef FWD_RECORD_H
#define FWD_RECORD_H

#include "fwd_config.h"
#include "fwd_info.h"
#include "fwd_partial.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>

struct fwd_record_tmpl;

/*
 * Compute the extra attributes for info under cfg (labels, env, their regexes)
 * and pack the constant part. NULL with the reason in err (a bad regex names
 * the option), or "out of memory".
 */
/* host: the value of metadata=host (the daemon's host name). */
struct fwd_record_tmpl *fwd_record_tmpl_create(const struct fwd_info *info,
                                               const struct fwd_config *cfg, const char *host,
                                               char *err, size_t errlen);
void fwd_record_tmpl_destroy(struct fwd_record_tmpl *t);

/* An upper bound of the bytes fwd_record_pack writes for line l. */
size_t fwd_record_size_max(const struct fwd_record_tmpl *t, const struct fwd_line *l);
/*
 * max-record-size: how many bytes of a line a piece (partial_* keys) can carry
 * so that its record, with every key this template adds, stays within
 * max_record (fwd_record_size_max_more's bound); at least FWD_RECORD_PIECE_MIN
 * when the attributes alone take nearly all of it.
 */
size_t fwd_record_piece_room(const struct fwd_record_tmpl *t, size_t max_record);
/* Pack one Forward entry [time, record] for l. */
void fwd_record_pack(const struct fwd_record_tmpl *t, const struct fwd_line *l, msgpack_packer *pk);
/*
 * What a record gets besides the line: the fields parsed from it (NULL: not
 * parsed; the line stays as log) and the value of seq-key (ignored without).
 */
struct fwd_record_more {
    const struct fwd_parsed *parsed;
    uint64_t seq;
};
size_t fwd_record_size_max_more(const struct fwd_record_tmpl *t, const struct fwd_line *l,
                                const struct fwd_record_more *m);
/*
 * Pack [time, record]: base keys, log (left out when parsed, unless
 * parse-keep-log), the parsed fields (or parse-into: {...}), attributes,
 * partial_*, seq-key. A parsed time replaces the line's.
 */
void fwd_record_pack_more(const struct fwd_record_tmpl *t, const struct fwd_line *l,
                          const struct fwd_record_more *m, msgpack_packer *pk);
/*
 * The top-level keys the template sets besides log (base keys, attributes,
 * metadata, parse-into, seq-key), for the parser to rename colliding fields;
 * *log_stays: log is in every record. Borrowed for the template's life.
 */
size_t fwd_record_tmpl_keys(const struct fwd_record_tmpl *t, const char *const **keys,
                            bool *log_stays);
/* parse-into is set: parsed fields go under one key, so nothing collides. */
bool fwd_record_parse_nested(const struct fwd_record_tmpl *t);
/* The number of extra attributes (for tests and logs). */
size_t fwd_record_nattrs(const struct fwd_record_tmpl *t);

#endif
