/*
 * libFuzzer target: untrusted plugin API bodies (StartLogging / StopLogging
 * JSON) through Info parsing, option validation, tag rendering and record
 * template building, as fwd_registry_start does before touching the FIFO.
 */
#include "fwd_config.h"
#include "fwd_info.h"
#include "fwd_record.h"
#include "fwd_tag.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fwd_info info;
    struct fwd_config cfg;
    char *file = NULL, err[2048];

    if (fwd_info_parse_stop((const char *)data, size, &file, err, sizeof(err)) == 0)
        free(file);
    if (fwd_info_parse_start((const char *)data, size, &file, &info, err, sizeof(err)) != 0)
        return 0;
    if (fwd_config_build(&cfg, info.config, info.nconfig, NULL, 0, err, sizeof(err)) == 0) {
        char *tag = fwd_tag_render(cfg.tag, &info, "host", err, sizeof(err));
        struct fwd_record_tmpl *t =
            fwd_record_tmpl_create(&info, &cfg, "fuzzhost", err, sizeof(err));

        free(tag);
        fwd_record_tmpl_destroy(t);
    }
    free(file);
    fwd_info_release(&info);
    return 0;
}
