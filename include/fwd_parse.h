/*
 * fwd_parse.h - parse a log line into typed fields (parse=json|logfmt|regex).
 *
 * The result is a run of packed MessagePack key/value pairs that record.c
 * places at the top level of the record or under parse-into. Pure: bytes in,
 * bytes out, no fds, no clocks.
 *
 *  json    a line that is one JSON object (yajl, a streaming parser, writes
 *          MessagePack as it reads): strings, numbers, true/false, null,
 *          objects and arrays keep their types. An integer that fits int64 is
 *          an int, a larger positive one that fits uint64 a uint64, anything
 *          else (fractions, exponents, larger magnitudes) a float64. Nesting
 *          deeper than FWD_PARSE_MAX_DEPTH, invalid UTF-8, trailing text, a
 *          top level that is not an object: not parsed.
 *  logfmt  space-separated key=value pairs; a value may be "quoted" with \"
 *          \\ \n \r \t escapes; every value is a string. A token without '='
 *          (so any plain sentence) means the line is not logfmt.
 *  regex   a PCRE2 pattern with named groups; each group that matched becomes
 *          a string field (a group that did not take part is left out).
 *
 * Top-level names: a key that occurs twice keeps its last value (at the
 * position of the last). A key in `reserved` (the names fwdlog itself sets:
 * container_id, container_name, source, attributes, ...) arrives as "_" + key,
 * so fwdlog's values stay and the parsed one is kept too.
 * time_key: a top-level string or number field parsed with time_format; when
 * it parses, the time is reported and the field left out unless time_keep.
 */
#ifndef FWD_PARSE_H
#define FWD_PARSE_H

#include "fwd_timefmt.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum fwd_parse_kind {
    FWD_PARSE_NONE = 0,
    FWD_PARSE_JSON,
    FWD_PARSE_LOGFMT,
    FWD_PARSE_REGEX,
};

/* Deepest JSON nesting parsed (the top-level object is 1). */
#define FWD_PARSE_MAX_DEPTH 32
/* Most top-level fields of one line. */
#define FWD_PARSE_MAX_FIELDS 1024

struct fwd_parse_opts {
    enum fwd_parse_kind kind;
    const char *regex;    /* FWD_PARSE_REGEX: the pattern (parse-regex) */
    const char *time_key; /* NULL or "": none */
    struct fwd_timefmt time_format;
    bool time_keep;
    const char *const *reserved; /* top-level names to rename; copied */
    size_t nreserved;
    size_t max_out; /* most bytes of packed pairs per line */
};

struct fwd_parser;

/*
 * NULL with the reason in err: a parse-regex that does not compile or has no
 * named group (naming the option), or "out of memory".
 */
struct fwd_parser *fwd_parser_create(const struct fwd_parse_opts *o, char *err, size_t errlen);
void fwd_parser_destroy(struct fwd_parser *p);

/* A parsed line. pairs is borrowed from the parser until its next run or destroy. */
struct fwd_parsed {
    const uint8_t *pairs;
    size_t len;
    uint32_t npairs;
    bool has_time;
    int64_t time_nano;
};

/*
 * Parse line[0..len). 0 with *out set; -EPROTO when the line is not of the
 * kind (malformed, not an object, no match), -EMSGSIZE past a bound (depth,
 * fields, max_out), -ENOMEM.
 */
int fwd_parser_run(struct fwd_parser *p, const uint8_t *line, size_t len, struct fwd_parsed *out)
    __attribute__((warn_unused_result));

#endif
