/*
 * config_pipeline.c - values of the parse*, time-*, multiline*, metadata and
 * seq-key options (names and environment variables: config.c's table).
 *
 * Patterns (parse-regex, multiline-start) are borrowed here and compiled by
 * the modules that use them, at StartLogging, whose errors name the option.
 * Names that would collide with the keys fwdlog sets itself are refused here.
 */
#include "fwd_config_pipeline.h"
#include "fwd_config.h"
#include "fwd_limits.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fwd_pipeline_cfg_init(struct fwd_pipeline_cfg *c)
{
    memset(c, 0, sizeof(*c));
    c->parse_regex = c->multiline_start = "";
    c->multiline_max_lines = FWD_DEFAULT_MULTILINE_LINES;
    c->multiline_flush_ms = FWD_DEFAULT_MULTILINE_FLUSH;
    /* zeroed: time_format is rfc3339 (FWD_TIMEFMT_RFC3339 == 0) */
}

static int word(const char *v, const char *const *words, int n)
{
    for (int i = 0; i < n; i++)
        if (strcmp(v, words[i]) == 0)
            return i;
    return -1;
}

/* A record key: 1 to 127 bytes, not one fwdlog sets itself. */
static int key_name(char *dst, const char *v, bool empty_ok, char *want, size_t wantlen)
{
    static const char *const base[] = {"container_id", "container_name", "source", "log"};

    if ((v[0] == '\0' && !empty_ok) || strlen(v) >= FWD_PIPELINE_NAME_MAX ||
        word(v, base, 4) >= 0) {
        snprintf(want, wantlen,
                 "a key name of 1 to 127 bytes other than container_id, container_name, source "
                 "and log");
        return -EINVAL;
    }
    strcpy(dst, v);
    return 0;
}

static int metadata(unsigned *bits, const char *v, char *want, size_t wantlen)
{
    static const char *const names[] = {"image_name", "image_id", "host",
                                        "command",    "created",  "compose"};
    const char *p = v;

    *bits = 0;
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
        *bits |= 1u << i;
        p += n + (p[n] == ',');
    }
    return 0;
}

static int flag(bool *b, const char *v, char *want, size_t wantlen)
{
    if (fwd_config_parse_bool(v, b) == 0)
        return 0;
    snprintf(want, wantlen, "true or false");
    return -EINVAL;
}

static int multiline_opt(struct fwd_pipeline_cfg *c, const char *name, const char *v, char *want,
                         size_t wantlen)
{
    static const char *const presets[] = {"none", "java", "python", "go"};
    uint64_t u;
    int i;

    if (strcmp(name, "multiline") == 0) {
        if ((i = word(v, presets, 4)) < 0) {
            snprintf(want, wantlen, "none, java, python or go (or multiline-start=REGEX)");
            return -EINVAL;
        }
        c->multiline = (enum fwd_multiline_mode)i;
    } else if (strcmp(name, "multiline-start") == 0) {
        c->multiline_start = v;
    } else if (strcmp(name, "multiline-max-lines") == 0) {
        if (v[strspn(v, "0123456789")] != '\0' || strlen(v) > 6 ||
            (u = strtoull(v, NULL, 10)) < 1 || u > FWD_MAX_MULTILINE_LINES) {
            snprintf(want, wantlen, "a whole number from 1 to %u", FWD_MAX_MULTILINE_LINES);
            return -EINVAL;
        }
        c->multiline_max_lines = (uint32_t)u;
    } else if (strcmp(name, "multiline-max-bytes") == 0) {
        if (fwd_config_parse_size(v, &u) != 0 || u < 1024 || u > FWD_MAX_MAX_LINE) {
            snprintf(want, wantlen, "a size from 1k to 64m, such as 1m");
            return -EINVAL;
        }
        c->multiline_max_bytes = (size_t)u;
    } else if (strcmp(name, "multiline-flush") == 0) {
        if (fwd_config_parse_duration_ms(v, &u) != 0 || u < 1 || u > 3600000) {
            snprintf(want, wantlen, "a duration from 1ms to 1h, such as 1s");
            return -EINVAL;
        }
        c->multiline_flush_ms = (uint32_t)u;
    } else {
        return 1;
    }
    return 0;
}

int fwd_pipeline_cfg_apply(struct fwd_pipeline_cfg *c, const char *name, const char *v, char *want,
                           size_t wantlen)
{
    static const char *const kinds[] = {"none", "json", "logfmt", "regex"};
    int i;

    if (strcmp(name, "parse") == 0) {
        if ((i = word(v, kinds, 4)) < 0) {
            snprintf(want, wantlen, "none, json, logfmt or regex");
            return -EINVAL;
        }
        c->parse = (enum fwd_parse_kind)i;
    } else if (strcmp(name, "parse-into") == 0) {
        return key_name(c->parse_into, v, true, want, wantlen);
    } else if (strcmp(name, "parse-keep-log") == 0) {
        return flag(&c->parse_keep_log, v, want, wantlen);
    } else if (strcmp(name, "parse-regex") == 0) {
        c->parse_regex = v;
    } else if (strcmp(name, "time-key") == 0) {
        if (strlen(v) >= FWD_PIPELINE_NAME_MAX) {
            snprintf(want, wantlen, "a field name of at most 127 bytes");
            return -EINVAL;
        }
        strcpy(c->time_key, v);
    } else if (strcmp(name, "time-format") == 0) {
        if (fwd_timefmt_compile(&c->time_format, v) != 0) {
            snprintf(want, wantlen,
                     "rfc3339, unix, unix_ms, unix_us, unix_ns or a strptime pattern such as "
                     "%%Y-%%m-%%d %%H:%%M:%%S.%%L%%z (at most 127 bytes)");
            return -EINVAL;
        }
    } else if (strcmp(name, "time-keep") == 0) {
        return flag(&c->time_keep, v, want, wantlen);
    } else if (strcmp(name, "metadata") == 0) {
        return metadata(&c->metadata, v, want, wantlen);
    } else if (strcmp(name, "seq-key") == 0) {
        return key_name(c->seq_key, v, true, want, wantlen);
    } else {
        return multiline_opt(c, name, v, want, wantlen);
    }
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
