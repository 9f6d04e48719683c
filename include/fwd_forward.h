/*
 * fwd_forward.h - Fluentd Forward protocol v1 encoding (msgpack-c).
 *
 * Entries are [time, record]; time is EventTime (ext type 0, fixext8:
 * big-endian uint32 seconds then uint32 nanoseconds) or integer seconds.
 * Batches go out in PackedForward mode: [tag, bin(entries...), {"size": N}].
 * Everything writes through a msgpack_packer or into caller memory: no fds.
 */
#ifndef FWD_FORWARD_H
#define FWD_FORWARD_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Most bytes fwd_forward_pack_entry_start writes. */
#define FWD_FORWARD_ENTRY_START_MAX 11
/* Most bytes of a PackedForward header besides the tag itself. */
#define FWD_FORWARD_HEADER_OVERHEAD 16
/* Most bytes of an options map (size + a 24-char chunk id). */
#define FWD_FORWARD_OPTIONS_MAX 64

/* Pack the array header of an entry and its time; the caller packs the record next. */
void fwd_forward_pack_entry_start(msgpack_packer *pk, int64_t time_nano, bool subsecond);

/*
 * Write [tag, bin-header(entries_len) into out (cap bytes); the entries follow
 * on the wire, then the options. Returns bytes written, 0 if cap is too small.
 */
size_t fwd_forward_packed_header(uint8_t *out, size_t cap, const char *tag, size_t tag_len,
                                 size_t entries_len);
/* Write the options map {"size": count} (plus "chunk" when chunk != NULL). Same return. */
size_t fwd_forward_packed_options(uint8_t *out, size_t cap, uint32_t count, const char *chunk);

#endif
