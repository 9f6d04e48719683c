/*
 * config_pipeline.c - the parse*, time-*, multiline*, metadata and seq-key
 * options: the parsers of the syntaxes that are their own, and the checks
 * across them. Their rows (names, variables, ranges, defaults) are in
 * config_table.c; the plain ones (bools, numbers, words) need no code here.
 *
 * Patterns (parse-regex, multiline-start) are borrowed here and compiled by
 * the modules that use them, at StartLogging, whose errors name the option.
 * Names that would collide with the keys fwdlog sets itself are refused here.
 */
#include "fwd_config_pipeline.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int word(const char *v, const char *const *words, int n)
{
    for (int i = 0; i < n; i++)
        if (strcmp(v, words[i]) == 0)
            return i;
    return -1;
}

/* A record key: 1 to 127 bytes (or "": unset), not one fwdlog sets itself. */
int fwd_pipeline_set_key(void *field, const char *v, char *want, size_t wantlen)
{
    static const char *const base[] = {"container_id", "container_name", "source", "log"};

    if (strlen(v) >= FWD_PIPELINE_NAME_MAX || word(v, base, 4) >= 0) {
        snprintf(want, wantlen,
                 "a key name of 1 to 127 bytes other than container_id, container_name, source "
                 "and log");
        return -EINVAL;
    }
    strcpy(field, v);
    return 0;
}

int fwd_pipeline_set_time_format(void *field, const char *v, char *want, size_t wantlen)
{
    if (fwd_timefmt_compile(field, v) == 0)
        return 0;
    snprintf(want, wantlen,
             "rfc3339, unix, unix_ms, unix_us, unix_ns or a strptime pattern such as "
             "%%Y-%%m-%%d %%H:%%M:%%S.%%L%%z (at most 127 bytes)");
    return -EINVAL;
}

int fwd_pipeline_set_metadata(void *field, const char *v, char *want, size_t wantlen)
{
    static const char *const names[] = {"image_name", "image_id", "host",
                                        "command",    "created",  "compose"};
    const char *p = v;
    unsigned bits = 0;

    while (*p != '\0') {
        size_t n = strcspn(p, ",");
        int i = -1;

        for (int j = 0; j < 6 && i < 0; j++)
            if (strlen(names[j]) == n && strncmp(p, names[j], n) == 0)
                i = j;
        if (i < 0) {
            snprintf(want, wantlen,
                     "a comma list of image_name, image_id, host, command, created, compose");
            return -EINVAL;
        }
        bits |= 1u << i;
        p += n + (p[n] == ',');
    }
    *(unsigned *)field = bits;
    return 0;
}

int fwd_pipeline_cfg_check(const struct fwd_pipeline_cfg *c, char *err, size_t errlen)
{
    if (c->parse == FWD_PARSE_REGEX && c->parse_regex[0] == '\0') {
        snprintf(err, errlen,
                 "log-opt parse=regex needs parse-regex=PATTERN with named groups, as in "
                 "parse-regex=^(?<level>\\w+) (?<msg>.*)$");
        return -EINVAL;
    }
    if (c->multiline != FWD_MULTILINE_OFF && c->multiline_start[0] != '\0') {
        snprintf(err, errlen,
                 "log-opt multiline and multiline-start exclude each other: use a preset "
                 "(multiline=java|python|go) or your own pattern (multiline-start=REGEX)");
        return -EINVAL;
    }
    if (c->seq_key[0] != '\0' && strcmp(c->seq_key, c->parse_into) == 0) {
        snprintf(err, errlen, "log-opt seq-key and parse-into name the same key \"%s\": pick two",
                 c->seq_key);
        return -EINVAL;
    }
    return 0;
}
