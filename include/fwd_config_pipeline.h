/*
 * fwd_config_pipeline.h - the options that shape records at the source:
 * parse*, time-*, multiline*, metadata and seq-key. Their rows (names,
 * variables, types, ranges, defaults) are in config_table.c with the others;
 * this module holds their values, the parsers of the syntaxes that are their
 * own, and the checks across them.
 */
#ifndef FWD_CONFIG_PIPELINE_H
#define FWD_CONFIG_PIPELINE_H

#include "fwd_multiline.h"
#include "fwd_parse.h"
#include "fwd_timefmt.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* metadata= names, as bits. */
enum fwd_metadata {
    FWD_META_IMAGE_NAME = 1 << 0,
    FWD_META_IMAGE_ID = 1 << 1,
    FWD_META_HOST = 1 << 2,
    FWD_META_COMMAND = 1 << 3,
    FWD_META_CREATED = 1 << 4,
    FWD_META_COMPOSE = 1 << 5,
};

/* Longest parse-into, time-key and seq-key name, terminator included. */
#define FWD_PIPELINE_NAME_MAX 128

struct fwd_pipeline_cfg {
    enum fwd_parse_kind parse;
    char parse_into[FWD_PIPELINE_NAME_MAX]; /* "": the top level */
    bool parse_keep_log;
    const char *parse_regex; /* borrowed from the option list; "" unset */
    char time_key[FWD_PIPELINE_NAME_MAX];
    struct fwd_timefmt time_format;
    bool time_keep;
    enum fwd_multiline_mode multiline;
    const char *multiline_start; /* borrowed; "" unset */
    uint32_t multiline_max_lines;
    size_t multiline_max_bytes; /* 0: max-line-size */
    uint32_t multiline_flush_ms;
    unsigned metadata; /* enum fwd_metadata bits */
    char seq_key[FWD_PIPELINE_NAME_MAX];
};

/*
 * Parsers of the options whose syntax is their own (fwd_config_set_cb):
 * field is the option's field in struct fwd_pipeline_cfg, v is borrowed.
 * 0, or -EINVAL with what is accepted in want.
 */
/* parse-into, seq-key: a record key (char[FWD_PIPELINE_NAME_MAX]), not one fwdlog sets. */
int fwd_pipeline_set_key(void *field, const char *v, char *want, size_t wantlen)
    __attribute__((warn_unused_result));
/* time-format, into a struct fwd_timefmt. */
int fwd_pipeline_set_time_format(void *field, const char *v, char *want, size_t wantlen)
    __attribute__((warn_unused_result));
/* metadata, into unsigned enum fwd_metadata bits. */
int fwd_pipeline_set_metadata(void *field, const char *v, char *want, size_t wantlen)
    __attribute__((warn_unused_result));

/* Checks across options, after all are applied. 0 or -EINVAL with a message in err. */
int fwd_pipeline_cfg_check(const struct fwd_pipeline_cfg *c, char *err, size_t errlen)
    __attribute__((warn_unused_result));

#endif
