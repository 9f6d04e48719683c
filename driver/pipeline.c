/*
 * pipeline.c - the stages between a container's lines and its records that
 * its options ask for: the parser (parse=) and the multiline joiner
 * (multiline=, multiline-start=). See fwd_pipeline.h.
 */
#include "fwd_pipeline.h"
#include "fwd_time.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int fwd_pipeline_create(const struct fwd_config *cfg, const struct fwd_record_tmpl *tmpl,
                        struct fwd_parser **parser, struct fwd_multiline **ml, bool *more,
                        char *err, size_t errlen)
{
    const struct fwd_pipeline_cfg *pl = &cfg->pl;

    if (pl->parse != FWD_PARSE_NONE) {
        const char *const *keys;
        bool log_stays, nested = fwd_record_parse_nested(tmpl);
        size_t n = fwd_record_tmpl_keys(tmpl, &keys, &log_stays);
        const char **reserved = calloc(n + 1, sizeof(*reserved));
        struct fwd_parse_opts o = {.kind = pl->parse,
                                   .regex = pl->parse_regex,
                                   .time_key = pl->time_key,
                                   .time_format = pl->time_format,
                                   .time_keep = pl->time_keep,
                                   .reserved = reserved,
                                   .max_out = 3 * cfg->max_line + 4096};

        if (reserved == NULL)
            return -ENOMEM;
        /* under parse-into nothing collides; otherwise fwdlog's keys keep their names */
        for (size_t i = 0; !nested && i < n; i++)
            reserved[o.nreserved++] = keys[i];
        if (log_stays && !nested)
            reserved[o.nreserved++] = "log";
        *parser = fwd_parser_create(&o, err, errlen);
        free(reserved);
        if (*parser == NULL)
            return strcmp(err, "out of memory") == 0 ? -ENOMEM : -EINVAL;
    }
    if (pl->multiline != FWD_MULTILINE_OFF || pl->multiline_start[0] != '\0') {
        struct fwd_multiline_opts o = {
            .mode = pl->multiline != FWD_MULTILINE_OFF ? pl->multiline : FWD_MULTILINE_START,
            .start = pl->multiline_start,
            .max_lines = pl->multiline_max_lines,
            .max_bytes = pl->multiline_max_bytes ? pl->multiline_max_bytes : cfg->max_line,
            .flush_ns = FWD_MS_TO_NS(pl->multiline_flush_ms)};

        if ((*ml = fwd_multiline_create(&o, err, errlen)) == NULL)
            return strcmp(err, "out of memory") == 0 ? -ENOMEM : -EINVAL;
    }
    *more = *parser != NULL || pl->seq_key[0] != '\0';
    return 0;
}
