/*
 * fwd_entry.h - decode one protobuf LogEntry (proto/entry.proto) with
 * protobuf-c into a flat struct fwd_entry. Pure: takes bytes, returns a view.
 */
#ifndef FWD_ENTRY_H
#define FWD_ENTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum fwd_source {
    FWD_SOURCE_STDOUT = 0,
    FWD_SOURCE_STDERR = 1,
    FWD_SOURCE_OTHER = 2, /* any other string: kept verbatim in source/source_len */
};

/* All pointers borrow from the decoder: valid until its next decode or destroy. */
struct fwd_entry {
    enum fwd_source source;
    const char *source_str; /* NUL-terminated, "" if absent */
    size_t source_len;
    int64_t time_nano;
    const uint8_t *line; /* no trailing '\n'; may be invalid UTF-8; NULL when len 0 */
    size_t line_len;
    bool partial;  /* the proto's partial flag */
    bool has_meta; /* partial_log_metadata present */
    bool last;
    const char *partial_id; /* NUL-terminated, "" if absent */
    size_t partial_id_len;
    int32_t ordinal;
};

struct fwd_entry_decoder;

/* A decoder with its own bump arena, so decoding allocates nothing per frame. NULL on ENOMEM. */
struct fwd_entry_decoder *fwd_entry_decoder_create(void);
void fwd_entry_decoder_destroy(struct fwd_entry_decoder *d);

/*
 * Decode buf[0..len) into *out. 0, or -EPROTO when the bytes are not a
 * LogEntry, -ENOMEM. The previous entry's pointers become invalid.
 */
int fwd_entry_decode(struct fwd_entry_decoder *d, const uint8_t *buf, size_t len,
                     struct fwd_entry *out) __attribute__((warn_unused_result));

/*
 * Encode an entry the way dockerd's gogo/protobuf marshaller does (fields in
 * number order, proto3 zero values omitted), with its 4-byte length prefix,
 * into a malloc'd buffer (*out, *out_len). For tests, the fuzzer corpus and
 * the benchmark generator. 0 or -ENOMEM.
 */
int fwd_entry_encode_frame(const struct fwd_entry *e, uint8_t **out, size_t *out_len)
    __attribute__((warn_unused_result));

#endif
