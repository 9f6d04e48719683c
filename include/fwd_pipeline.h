/*
 * fwd_pipeline.h - build the stages a container's options ask for between its
 * lines and its records: the parser (parse=, fwd_parse.h) and the multiline
 * joiner (multiline=, multiline-start=, fwd_multiline.h).
 */
#ifndef FWD_PIPELINE_H
#define FWD_PIPELINE_H

#include "fwd_config.h"
#include "fwd_multiline.h"
#include "fwd_parse.h"
#include "fwd_record.h"

#include <stdbool.h>
#include <stddef.h>

/*
 * *parser and *ml: what cfg asks for, or left NULL (free them with their
 * destroy even on failure). The parser keeps clear of tmpl's keys. *more: the
 * records need fwd_record_pack_more (a parser or seq-key). 0, or -EINVAL /
 * -ENOMEM with err set.
 */
int fwd_pipeline_create(const struct fwd_config *cfg, const struct fwd_record_tmpl *tmpl,
                        struct fwd_parser **parser, struct fwd_multiline **ml, bool *more,
                        char *err, size_t errlen) __attribute__((warn_unused_result));

#endif
