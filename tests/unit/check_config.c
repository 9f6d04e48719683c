/* Unit tests for config.c, tag.c and info.c: option parsing, templates, Info JSON. */
#include "fwd_config.h"
#include "fwd_info.h"
#include "fwd_tag.h"

#include "unit.h"

#include <check.h>
#include <jansson.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char err[2048];

/* fwd_kv holds owned (non-const) strings; test fixtures point at literals. */
#define KV(k, v)                                                                                   \
    {                                                                                              \
        (char *)(k), (char *)(v)                                                                   \
    }

static int build1(struct fwd_config *c, const char *k, const char *v)
{
    struct fwd_kv kv = {(char *)k, (char *)v};

    err[0] = '\0';
    return fwd_config_build(c, &kv, 1, NULL, 0, err, sizeof(err));
}

START_TEST(test_config_defaults)
{
    struct fwd_config c;

    ck_assert_int_eq(fwd_config_build(&c, NULL, 0, NULL, 0, err, sizeof(err)), 0);
    ck_assert_int_eq(c.addrs[0].scheme, FWD_ADDR_TCP);
    ck_assert_str_eq(c.addrs[0].host, "localhost");
    ck_assert_uint_eq(c.addrs[0].port, 24224);
    ck_assert(c.subsecond);
    ck_assert(!c.request_ack);
    ck_assert_str_eq(c.tag, "{{.ID}}");
    ck_assert_uint_eq(c.max_line, 1024 * 1024);
    ck_assert_uint_eq(c.partial_timeout_ms, 1000);
    ck_assert_uint_eq(c.flush_interval_ms, 100);
    ck_assert_uint_eq(c.max_retries, 2147483647u);
}
END_TEST

START_TEST(test_config_addresses)
{
    struct fwd_addr a;

    ck_assert_int_eq(fwd_config_parse_addr("tcp://example.com:65535", &a, err, sizeof(err)), 0);
    ck_assert_str_eq(a.host, "example.com");
    ck_assert_uint_eq(a.port, 65535);
    ck_assert_int_eq(fwd_config_parse_addr("[::1]", &a, err, sizeof(err)), 0);
    ck_assert_str_eq(a.host, "::1");
    ck_assert_uint_eq(a.port, 24224);
    ck_assert_int_eq(fwd_config_parse_addr("[::1]:9", &a, err, sizeof(err)), 0);
    ck_assert_uint_eq(a.port, 9);
    ck_assert_int_eq(fwd_config_parse_addr("tcp://", &a, err, sizeof(err)), 0);
    ck_assert_str_eq(a.host, "localhost");
    ck_assert_int_eq(fwd_config_parse_addr("unix:///some/socket.sock:80", &a, err, sizeof(err)), 0);
    ck_assert_str_eq(a.path, "/some/socket.sock:80");
    ck_assert_int_eq(fwd_config_parse_addr("10.0.0.1:1", &a, err, sizeof(err)), 0);
    ck_assert_int_eq(fwd_config_parse_addr("tcp://example.com:65536", &a, err, sizeof(err)),
                     -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "invalid port"));
    ck_assert_int_eq(fwd_config_parse_addr("something://", &a, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "unsupported scheme 'something'"));
    ck_assert_int_eq(fwd_config_parse_addr("unix://", &a, err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(fwd_config_parse_addr("tcp://h:1/path", &a, err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(fwd_config_parse_addr("::1:24224", &a, err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(fwd_config_parse_addr("a:1,b:2", &a, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "without commas"));
}
END_TEST

START_TEST(test_config_address_lists)
{
    struct fwd_addr l[FWD_MAX_ADDRS];
    unsigned n;

    ck_assert_int_eq(
        fwd_config_parse_addr_list("a:1, tls://b:2 ,unix:///s", l, &n, err, sizeof(err)), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(l[0].host, "a");
    ck_assert_uint_eq(l[1].port, 2);
    ck_assert_int_eq(l[1].scheme, FWD_ADDR_TLS);
    ck_assert_str_eq(l[2].path, "/s");
    ck_assert_int_eq(fwd_config_parse_addr_list("a:1,,b:2", l, &n, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "empty address"));
    ck_assert_int_eq(fwd_config_parse_addr_list("a:1,a:1", l, &n, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "listed twice"));
    ck_assert_int_eq(fwd_config_parse_addr_list("a:1,b:x", l, &n, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "'b:x': invalid port"));
    ck_assert_int_eq(
        fwd_config_parse_addr_list("a:1,a:2,a:3,a:4,a:5,a:6,a:7,a:8,a:9", l, &n, err, sizeof(err)),
        -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "at most 8"));
}
END_TEST

START_TEST(test_config_buffer_options)
{
    struct fwd_config c;
    struct fwd_kv file[] = {KV("buffer-type", "file"), KV("overflow-policy", "block"),
                            KV("spool-limit", "1g"), KV("balance", "round-robin")};
    struct fwd_kv nospool[] = {KV("buffer-type", "file"), KV("spool-limit", "0")};
    struct fwd_kv bad[] = {KV("overflow-policy", "drop")};
    struct fwd_kv small[] = {KV("spool-limit", "1m")};

    ck_assert_int_eq(fwd_config_build(&c, NULL, 0, NULL, 0, err, sizeof(err)), 0);
    ck_assert_int_eq(c.buffer_type, FWD_BUFFER_MEMORY);
    ck_assert_int_eq(c.overflow, FWD_OVERFLOW_DROP_OLDEST);
    ck_assert_int_eq(c.balance, FWD_BALANCE_FAILOVER);
    ck_assert_uint_eq(c.spool_limit, 256ull << 20);
    ck_assert_int_eq(fwd_config_build(&c, file, 4, NULL, 0, err, sizeof(err)), 0);
    ck_assert_int_eq(c.buffer_type, FWD_BUFFER_FILE);
    ck_assert_int_eq(c.overflow, FWD_OVERFLOW_BLOCK);
    ck_assert_int_eq(c.balance, FWD_BALANCE_ROUND_ROBIN);
    ck_assert_uint_eq(c.spool_limit, 1ull << 30);
    ck_assert_int_eq(fwd_config_build(&c, nospool, 2, NULL, 0, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "spool-limit must not be 0"));
    ck_assert_int_eq(fwd_config_build(&c, bad, 1, NULL, 0, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "drop-oldest, drop-newest or block"));
    ck_assert_int_eq(fwd_config_build(&c, small, 1, NULL, 0, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "spool-limit"));
}
END_TEST

/* Issue 13 item 7: rate-limit=BYTES/s with rate-burst, per container (not the destination's). */
START_TEST(test_issue_13_rate_limit_options)
{
    struct fwd_config c;
    struct fwd_kv both[] = {KV("rate-limit", "1m/s"), KV("rate-burst", "4m")};
    char key[sizeof(c.dest_key)];

    ck_assert_int_eq(fwd_config_build(&c, NULL, 0, NULL, 0, err, sizeof(err)), 0);
    ck_assert_uint_eq(c.rate_limit, 0);
    ck_assert_uint_eq(c.rate_burst, 0);
    snprintf(key, sizeof(key), "%s", c.dest_key);
    ck_assert_int_eq(fwd_config_build(&c, both, 2, NULL, 0, err, sizeof(err)), 0);
    ck_assert_uint_eq(c.rate_limit, 1u << 20);
    ck_assert_uint_eq(c.rate_burst, 4u << 20);
    ck_assert_str_eq(c.dest_key, key); /* containers with other rates share a destination */
    ck_assert_int_eq(build1(&c, "rate-limit", "512k"), 0);
    ck_assert_uint_eq(c.rate_limit, 512u << 10);
    ck_assert_int_eq(build1(&c, "rate-limit", "0"), 0);
    ck_assert_uint_eq(c.rate_limit, 0);
    ck_assert_int_eq(build1(&c, "rate-limit", "fast"), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "bytes per second"));
    ck_assert_int_eq(build1(&c, "rate-limit", "1m/min"), -EINVAL);
    ck_assert_int_eq(build1(&c, "rate-limit", "/s"), -EINVAL);
    ck_assert_int_eq(build1(&c, "rate-burst", "lots"), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "rate-burst"));
}
END_TEST

START_TEST(test_config_durations_like_go)
{
    uint64_t ms;

    ck_assert_int_eq(fwd_config_parse_duration_ms("100ms", &ms), 0);
    ck_assert_uint_eq(ms, 100);
    ck_assert_int_eq(fwd_config_parse_duration_ms("1m30s", &ms), 0);
    ck_assert_uint_eq(ms, 90000);
    ck_assert_int_eq(fwd_config_parse_duration_ms("1.5s", &ms), 0);
    ck_assert_uint_eq(ms, 1500);
    ck_assert_int_eq(fwd_config_parse_duration_ms("500us", &ms), 0);
    ck_assert_uint_eq(ms, 1); /* rounded up: never 0 for a non-zero duration */
    ck_assert_int_eq(fwd_config_parse_duration_ms("0", &ms), 0);
    ck_assert_uint_eq(ms, 0);
    /* moby TestValidateWriteTimeoutDuration: "-1", "1", "-1s" are invalid */
    ck_assert_int_eq(fwd_config_parse_duration_ms("1", &ms), -EINVAL);
    ck_assert_int_eq(fwd_config_parse_duration_ms("-1", &ms), -EINVAL);
    ck_assert_int_eq(fwd_config_parse_duration_ms("-1s", &ms), -EINVAL);
    ck_assert_int_eq(fwd_config_parse_duration_ms("", &ms), -EINVAL);
    ck_assert_int_eq(fwd_config_parse_duration_ms("5x", &ms), -EINVAL);
}
END_TEST

START_TEST(test_config_sizes_like_go_units)
{
    uint64_t b;

    ck_assert_int_eq(fwd_config_parse_size("1048576", &b), 0);
    ck_assert_uint_eq(b, 1048576);
    ck_assert_int_eq(fwd_config_parse_size("16k", &b), 0);
    ck_assert_uint_eq(b, 16384);
    ck_assert_int_eq(fwd_config_parse_size("8MiB", &b), 0);
    ck_assert_uint_eq(b, 8u << 20);
    ck_assert_int_eq(fwd_config_parse_size("1.5 gb", &b), 0);
    ck_assert_uint_eq(b, 3u << 29);
    ck_assert_int_eq(fwd_config_parse_size("lots", &b), -EINVAL);
    ck_assert_int_eq(fwd_config_parse_size("-1", &b), -EINVAL);
    ck_assert_int_eq(fwd_config_parse_size("1x", &b), -EINVAL);
}
END_TEST

START_TEST(test_config_errors_name_option_value_and_fix)
{
    struct fwd_config c;
    struct fwd_kv d = KV("fluentd-retry-wait", "soon");

    ck_assert_int_eq(build1(&c, "fluentd-max-retries", "-3"), -EINVAL);
    ck_assert_str_eq(err, "invalid log-opt fluentd-max-retries=\"-3\": want a whole number from "
                          "0 to 2147483647");
    ck_assert_int_eq(build1(&c, "fluentd-asnyc", "true"), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "unknown log-opt 'fluentd-asnyc' (did you mean "
                                      "'fluentd-async'?)"));
    ck_assert_int_eq(fwd_config_build(&c, NULL, 0, &d, 1, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "FLUENTD_RETRY_WAIT=\"soon\""));
    ck_assert_int_eq(build1(&c, "fluentd-address", "tls://h:1"), 0);
    ck_assert_int_eq(c.addrs[0].scheme, FWD_ADDR_TLS);
    ck_assert_int_eq(build1(&c, "fluentd-tls-ca-file", "/nonexistent/ca.pem"), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "fluentd-tls-ca-file=\"/nonexistent/ca.pem\""));
    ck_assert_int_eq(build1(&c, "fluentd-tls-cert-file", "/etc/hostname"), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "go together"));
    ck_assert_int_eq(build1(&c, "max-line-size", "1k"), -EINVAL);
    ck_assert_int_eq(build1(&c, "flush-interval", "20s"), -EINVAL);
    ck_assert_int_eq(build1(&c, "fluentd-async-reconnect-interval", "50ms"), -EINVAL);
    ck_assert_int_eq(build1(&c, "fluentd-compress", "zstd"), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "want gzip or none"));
    ck_assert_int_eq(build1(&c, "fluentd-compress", "gzip"), 0);
    ck_assert(c.gzip);
    ck_assert_int_eq(build1(&c, "fluentd-compress", "text"), 0);
    ck_assert(!c.gzip);
}
END_TEST

START_TEST(test_config_generic_keys_and_precedence)
{
    struct fwd_config c;
    struct fwd_kv opts[] = {
        KV("mode", "non-blocking"),       KV("cache-max-file", "3"),
        KV("max-buffer-size", "4m"),      KV("max-size", "10m"),
        KV("fluentd-address", "a:1"),     KV("fluentd-sub-second-precision", "0"),
        KV("fluentd-buffer-limit", "8m"), KV("tag", "")};
    struct fwd_kv defs[] = {KV("fluentd-address", "b:2"), KV("tag", "{{.Name}}")};

    ck_assert_int_eq(fwd_config_build(&c, opts, 8, defs, 2, err, sizeof(err)), 0);
    ck_assert_str_eq(c.addrs[0].host, "a");
    ck_assert(!c.subsecond);
    ck_assert_uint_eq(c.buffer_limit, 8u << 20);
    ck_assert_str_eq(c.tag, "{{.ID}}"); /* an empty tag means Docker's default */
    ck_assert_ptr_nonnull(strstr(c.dest_key, "tcp://[a]:1"));
}
END_TEST

START_TEST(test_config_env_defaults)
{
    char *envp[] = {(char *)"FLUENTD_ADDRESS=unix:///x.sock",
                    (char *)"FWDLOG_TAG=", (char *)"FWDLOG_MAX_LINE_SIZE=2m", (char *)"PATH=/bin",
                    NULL};
    struct fwd_kv *kv;
    size_t n;

    ck_assert_int_eq(fwd_config_env_defaults(envp, &kv, &n), 0);
    ck_assert_uint_eq(n, 2); /* empty values are unset */
    ck_assert_str_eq(kv[0].key, "fluentd-address");
    ck_assert_str_eq(kv[1].key, "max-line-size");
    ck_assert_str_eq(fwd_config_env_name("partial-timeout"), "FWDLOG_PARTIAL_TIMEOUT");
    fwd_kv_free(kv, n);
}
END_TEST

START_TEST(test_config_pipeline_options)
{
    struct fwd_config c;
    struct fwd_kv opts[] = {KV("parse", "regex"),
                            KV("parse-regex", "(?<a>x)"),
                            KV("parse-into", "app"),
                            KV("parse-keep-log", "true"),
                            KV("time-key", "ts"),
                            KV("time-format", "unix_us"),
                            KV("time-keep", "1"),
                            KV("multiline-start", "^S"),
                            KV("multiline-max-lines", "7"),
                            KV("multiline-max-bytes", "2k"),
                            KV("multiline-flush", "250ms"),
                            KV("metadata", "host,compose"),
                            KV("seq-key", "n")};
    struct fwd_kv d = KV("multiline", "java");

    ck_assert_int_eq(fwd_config_build(&c, NULL, 0, NULL, 0, err, sizeof(err)), 0);
    ck_assert_int_eq(c.pl.parse, FWD_PARSE_NONE);
    ck_assert_int_eq(c.pl.multiline, FWD_MULTILINE_OFF);
    ck_assert_uint_eq(c.pl.multiline_max_lines, 500);
    ck_assert_uint_eq(c.pl.multiline_flush_ms, 1000);
    ck_assert_int_eq(fwd_config_build(&c, opts, 13, NULL, 0, err, sizeof(err)), 0);
    ck_assert_int_eq(c.pl.parse, FWD_PARSE_REGEX);
    ck_assert_str_eq(c.pl.parse_regex, "(?<a>x)");
    ck_assert_str_eq(c.pl.parse_into, "app");
    ck_assert(c.pl.parse_keep_log && c.pl.time_keep);
    ck_assert_str_eq(c.pl.time_key, "ts");
    ck_assert_int_eq(c.pl.time_format.kind, FWD_TIMEFMT_UNIX_US);
    ck_assert_str_eq(c.pl.multiline_start, "^S");
    ck_assert_uint_eq(c.pl.multiline_max_lines, 7);
    ck_assert_uint_eq(c.pl.multiline_max_bytes, 2048);
    ck_assert_uint_eq(c.pl.multiline_flush_ms, 250);
    ck_assert_uint_eq(c.pl.metadata, FWD_META_HOST | FWD_META_COMPOSE);
    ck_assert_str_eq(c.pl.seq_key, "n");
    /* a plugin-wide multiline preset and a container's multiline-start exclude each other */
    ck_assert_int_eq(fwd_config_build(&c, opts, 13, &d, 1, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "exclude each other"));
    ck_assert_int_eq(fwd_config_build(&c, NULL, 0, &d, 1, err, sizeof(err)), 0);
    ck_assert_int_eq(c.pl.multiline, FWD_MULTILINE_JAVA);
    ck_assert_str_eq(fwd_config_env_name("multiline-flush"), "FWDLOG_MULTILINE_FLUSH");
    ck_assert_str_eq(fwd_config_env_name("seq-key"), "FWDLOG_SEQ_KEY");
}
END_TEST

START_TEST(test_config_pipeline_errors)
{
    struct fwd_config c;
    struct fwd_kv d = KV("parse", "xml");

    ck_assert_int_eq(build1(&c, "parse", "yaml"), -EINVAL);
    ck_assert_str_eq(err, "invalid log-opt parse=\"yaml\": want none, json, logfmt or regex");
    ck_assert_int_eq(fwd_config_build(&c, NULL, 0, &d, 1, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "invalid FWDLOG_PARSE=\"xml\""));
    ck_assert_int_eq(build1(&c, "parse", "regex"), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "needs parse-regex"));
    ck_assert_int_eq(build1(&c, "time-format", "iso8601"), -EINVAL);
    ck_assert_int_eq(build1(&c, "seq-key", "container_id"), -EINVAL);
    ck_assert_int_eq(build1(&c, "parse-into", "log"), -EINVAL);
    ck_assert_int_eq(build1(&c, "metadata", "host,,image"), -EINVAL);
    ck_assert_int_eq(build1(&c, "multiline", "ruby"), -EINVAL);
    ck_assert_int_eq(build1(&c, "multiline-max-lines", "100001"), -EINVAL);
    ck_assert_int_eq(build1(&c, "multiline-max-lines", "5k"), -EINVAL);
    ck_assert_int_eq(build1(&c, "multiline-max-bytes", "100"), -EINVAL);
    ck_assert_int_eq(build1(&c, "multiline-flush", "0"), -EINVAL);
    ck_assert_int_eq(build1(&c, "parse-keep-log", "yes"), -EINVAL);
    ck_assert_str_eq(err, "invalid log-opt parse-keep-log=\"yes\": want true or false");
}
END_TEST

/* Every row of the option table is one the engine can drive. */
START_TEST(test_config_table_rows_are_sane)
{
    size_t n;
    const struct fwd_config_opt *t = fwd_config_opts(&n);

    ck_assert_uint_gt(n, 40);
    for (size_t i = 0; i < n; i++) {
        const struct fwd_config_opt *d = &t[i];

        ck_assert_msg(d->doc != NULL && d->doc[0] != '\0', "%s: no doc", d->name);
        ck_assert_msg(d->off + d->size <= sizeof(struct fwd_config), "%s: field", d->name);
        for (size_t j = 0; j < i; j++) {
            ck_assert_msg(strcmp(t[j].name, d->name) != 0, "%s twice", d->name);
            ck_assert_msg(d->env == NULL || t[j].env == NULL || strcmp(t[j].env, d->env) != 0,
                          "%s twice", d->env);
        }
        ck_assert_ptr_eq(fwd_config_env_name(d->name), d->env);
        switch (d->type) {
            case FWD_CONFIG_UINT:
            case FWD_CONFIG_SIZE:
            case FWD_CONFIG_DURATION:
                ck_assert_msg(d->size == 4 || d->size == 8, "%s: size", d->name);
                ck_assert_msg(d->min <= d->max, "%s: range", d->name);
                ck_assert_msg(d->size == 8 || d->max <= UINT32_MAX, "%s: max", d->name);
                break;
            case FWD_CONFIG_ENUM:
                ck_assert_msg(d->size == sizeof(int) && d->words != NULL, "%s: enum", d->name);
                break;
            case FWD_CONFIG_CUSTOM:
                ck_assert_msg(d->set != NULL, "%s: no setter", d->name);
                break;
            case FWD_CONFIG_BOOL:
                ck_assert_uint_eq(d->size, sizeof(bool));
                break;
            case FWD_CONFIG_TEXT:
                ck_assert_uint_eq(d->size, sizeof(const char *));
                break;
            default:
                ck_assert_msg(d->size > 1, "%s: string size", d->name);
                break;
        }
    }
}
END_TEST

/* Numeric rows: the ends of the range are accepted, one past them refused naming the option. */
START_TEST(test_config_table_ranges_enforced)
{
    size_t n;
    const struct fwd_config_opt *t = fwd_config_opts(&n);
    struct fwd_config c;
    char v[64];

    for (size_t i = 0; i < n; i++) {
        const struct fwd_config_opt *d = &t[i];
        const char *unit = d->type == FWD_CONFIG_DURATION ? "ms" : "";
        uint64_t bounds[2] = {d->min, d->max};

        if (d->type != FWD_CONFIG_UINT && d->type != FWD_CONFIG_SIZE &&
            d->type != FWD_CONFIG_DURATION)
            continue;
        for (int b = 0; b < 2; b++) {
            snprintf(v, sizeof(v), "%" PRIu64 "%s", bounds[b], unit);
            ck_assert_msg(build1(&c, d->name, v) == 0, "%s=%s: %s", d->name, v, err);
        }
        snprintf(v, sizeof(v), "%" PRIu64 "%s", d->max + 1, unit);
        ck_assert_msg(build1(&c, d->name, v) == -EINVAL, "%s=%s accepted", d->name, v);
        ck_assert_ptr_nonnull(strstr(err, d->name));
        if (d->min > 1 || (d->min == 1 && d->zero == NULL)) {
            snprintf(v, sizeof(v), "%" PRIu64 "%s", d->min - 1, unit);
            ck_assert_msg(build1(&c, d->name, v) == -EINVAL, "%s=%s accepted", d->name, v);
        }
    }
}
END_TEST

static void write_file(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "we");

    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(text, 1, len, f), len);
    fclose(f);
}

/*
 * Issue 13: a *-file option is read on the loop thread at StartLogging. A
 * FIFO must be refused at once (the old fopen waited for a writer forever,
 * so this test timed out), and so must anything else that is not a regular
 * file. Sizes are bounded; one trailing newline is dropped.
 */
START_TEST(test_issue_13_secret_files_regular_and_bounded)
{
    char dir[] = "/tmp/fwdcfg-XXXXXX", fifo[64], key[64], link[64], big[300];
    struct fwd_config c;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
    snprintf(key, sizeof(key), "%s/key", dir);
    snprintf(link, sizeof(link), "%s/link", dir);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    ck_assert_int_eq(build1(&c, "fluentd-shared-key-file", fifo), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "invalid log-opt fluentd-shared-key-file=\""));
    ck_assert_ptr_nonnull(strstr(err, "want a regular file"));
    ck_assert_int_eq(build1(&c, "fluentd-tls-ca-file", fifo), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "not a regular file"));
    ck_assert_int_eq(build1(&c, "fluentd-shared-key-file", dir), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "want a regular file"));
    write_file(key, "s3cret\r\n", 8);
    ck_assert_int_eq(build1(&c, "fluentd-shared-key-file", key), 0);
    ck_assert_str_eq(c.shared_key, "s3cret");
    ck_assert_int_eq(symlink(key, link), 0);
    ck_assert_int_eq(build1(&c, "fluentd-shared-key-file", link), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "not a symbolic link"));
    memset(big, 'k', sizeof(big));
    big[255] = '\n';
    write_file(key, big, 256); /* 255 bytes and a newline: the most */
    ck_assert_int_eq(build1(&c, "fluentd-shared-key-file", key), 0);
    ck_assert_uint_eq(strlen(c.shared_key), 255);
    write_file(key, big, 256 + 1);
    ck_assert_int_eq(build1(&c, "fluentd-shared-key-file", key), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "a secret of 1 to 255 bytes"));
    ck_assert_ptr_null(strstr(err, "kkkk")); /* never the content */
    write_file(key, big, sizeof(big));
    ck_assert_int_eq(build1(&c, "fluentd-shared-key-file", key), -EINVAL);
    write_file(key, "\n", 1);
    ck_assert_int_eq(build1(&c, "fluentd-password-file", key), -EINVAL);
    write_file(key, "a\0b", 3);
    ck_assert_int_eq(build1(&c, "fluentd-password-file", key), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "NUL"));
    ck_assert_int_eq(build1(&c, "fluentd-password-file", "/nonexistent/pw"), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "No such file"));
    unlink(link);
    unlink(key);
    unlink(fifo);
    rmdir(dir);
}
END_TEST

/* fluentd-tls-key-password-file: read like the other secrets, into tls_key_password. */
START_TEST(test_config_tls_key_password_file)
{
    char dir[] = "/tmp/fwdcfg-XXXXXX", pw[64], fifo[64];
    struct fwd_config c, plain;
    struct fwd_kv opts[] = {
        KV("fluentd-address", "tls://h:1"), KV("fluentd-tls-cert-file", "/etc/hostname"),
        KV("fluentd-tls-key-file", "/etc/hostname"), KV("fluentd-tls-key-password-file", pw)};

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(pw, sizeof(pw), "%s/pw", dir);
    snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
    write_file(pw, "open sesame\n", 12);
    ck_assert_int_eq(fwd_config_build(&c, opts, 4, NULL, 0, err, sizeof(err)), 0);
    ck_assert_str_eq(c.tls_key_password, "open sesame");
    ck_assert_int_eq(fwd_config_build(&plain, opts, 3, NULL, 0, err, sizeof(err)), 0);
    ck_assert_str_eq(plain.tls_key_password, "");
    /* another passphrase is another connection; the passphrase itself is not in the key */
    ck_assert_str_ne(c.dest_key, plain.dest_key);
    ck_assert_ptr_null(strstr(c.dest_key, "sesame"));
    ck_assert_str_eq(fwd_config_env_name("fluentd-tls-key-password-file"),
                     "FLUENTD_TLS_KEY_PASSWORD_FILE");
    ck_assert_int_eq(build1(&c, "fluentd-tls-key-password-file", pw), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "needs fluentd-tls-key-file"));
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    opts[3].value = fifo;
    ck_assert_int_eq(fwd_config_build(&c, opts, 4, NULL, 0, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "invalid log-opt fluentd-tls-key-password-file=\""));
    ck_assert_ptr_nonnull(strstr(err, "want a regular file"));
    unlink(fifo);
    unlink(pw);
    rmdir(dir);
}
END_TEST

/*
 * The option table against the docs: every option has a row in README.md's
 * "Log options" table (its name in the first column, its variable in the
 * second), every variable has an entry in config.json's env list that
 * `docker plugin set` may change, and neither names an option that is not in
 * the table. Files are read from FWD_SRCDIR (default: the current directory,
 * the top of the tree when make runs the suite).
 */
struct doc_row {
    char names[512]; /* first cell */
    char envs[512];  /* second cell */
};

static const char *srcdir(void)
{
    const char *d = getenv("FWD_SRCDIR");

    return d != NULL && d[0] != '\0' ? d : ".";
}

/* Rows of README.md's "## Log options" table, at most max; their count. */
static size_t readme_rows(struct doc_row *rows, size_t max)
{
    char path[512], line[8192];
    bool in = false;
    size_t n = 0;
    FILE *f;

    snprintf(path, sizeof(path), "%s/README.md", srcdir());
    f = fopen(path, "re");
    ck_assert_msg(f != NULL, "cannot open %s (set FWD_SRCDIR)", path);
    while (fgets(line, sizeof(line), f) != NULL && n < max) {
        char *c1, *c2, *c3;

        if (strncmp(line, "## ", 3) == 0)
            in = strncmp(line, "## Log options", 14) == 0;
        if (!in || strncmp(line, "| `", 3) != 0)
            continue;
        c1 = line + 1;
        c2 = strchr(c1, '|');
        c3 = c2 ? strchr(c2 + 1, '|') : NULL;
        ck_assert_msg(c3 != NULL, "README options row without columns: %s", line);
        snprintf(rows[n].names, sizeof(rows[n].names), "%.*s", (int)(c2 - c1), c1);
        snprintf(rows[n].envs, sizeof(rows[n].envs), "%.*s", (int)(c3 - c2 - 1), c2 + 1);
        n++;
    }
    fclose(f);
    return n;
}

/* Whether `word` (with its backticks) is in cell. */
static bool has_code(const char *cell, const char *word)
{
    char quoted[128];

    snprintf(quoted, sizeof(quoted), "`%s`", word);
    return strstr(cell, quoted) != NULL;
}

/* Each `token` of cell: an option of the table or one of Docker's own keys. */
static void check_row_names(const char *cell)
{
    static const char *const docker[] = {"mode",     "max-buffer-size", "cache-*",
                                         "max-size", "max-file",        "compress"};
    const char *p = cell;

    while ((p = strchr(p, '`')) != NULL) {
        const char *end = strchr(p + 1, '`');
        char name[128];
        bool known;

        ck_assert_ptr_nonnull(end);
        snprintf(name, sizeof(name), "%.*s", (int)(end - p - 1), p + 1);
        known = fwd_config_env_name(name) != NULL;
        for (int i = 0; i < 6 && !known; i++)
            known = strcmp(name, docker[i]) == 0;
        ck_assert_msg(known, "README's options table names '%s', which is not an option", name);
        p = end + 1;
    }
}

START_TEST(test_config_every_option_in_readme)
{
    static struct doc_row rows[200];
    size_t n, nrows = readme_rows(rows, 200);
    const struct fwd_config_opt *t = fwd_config_opts(&n);

    ck_assert_uint_gt(nrows, 10);
    for (size_t r = 0; r < nrows; r++)
        check_row_names(rows[r].names);
    for (size_t i = 0; i < n; i++) {
        const struct doc_row *row = NULL;

        for (size_t r = 0; r < nrows && row == NULL; r++)
            if (has_code(rows[r].names, t[i].name))
                row = &rows[r];
        ck_assert_msg(row != NULL, "option %s has no row in README.md's Log options table",
                      t[i].name);
        ck_assert_msg(t[i].env == NULL || has_code(row->envs, t[i].env),
                      "README.md's row for %s does not give its variable %s", t[i].name, t[i].env);
    }
}
END_TEST

START_TEST(test_config_every_variable_in_config_json)
{
    static const char *const daemon_vars[] = {"FWDLOG_STATE_DIR", "FWDLOG_LOG_LEVEL",
                                              "FWDLOG_SOCKET", "FWDLOG_METRICS_ADDRESS",
                                              "FWDLOG_HEALTH_WINDOW"};
    char path[512];
    json_error_t jerr;
    json_t *root, *env, *e;
    size_t n, k;
    const struct fwd_config_opt *t = fwd_config_opts(&n);

    snprintf(path, sizeof(path), "%s/config.json", srcdir());
    root = json_load_file(path, 0, &jerr);
    ck_assert_msg(root != NULL, "%s: %s (set FWD_SRCDIR)", path, jerr.text);
    env = json_object_get(root, "env");
    ck_assert(json_is_array(env));
    for (size_t i = 0; i < n; i++) {
        bool found = false;

        if (t[i].env == NULL)
            continue;
        json_array_foreach(env, k, e)
        {
            const char *desc = json_string_value(json_object_get(e, "description"));
            json_t *settable = json_object_get(e, "settable");

            if (strcmp(json_string_value(json_object_get(e, "name")), t[i].env) != 0)
                continue;
            found = true;
            ck_assert_msg(desc != NULL && strstr(desc, t[i].name) != NULL,
                          "config.json: %s's description does not name %s", t[i].env, t[i].name);
            ck_assert_msg(json_array_size(settable) == 1 &&
                              strcmp(json_string_value(json_array_get(settable, 0)), "value") == 0,
                          "config.json: %s must be settable (\"settable\": [\"value\"])", t[i].env);
        }
        ck_assert_msg(found, "option %s: its variable %s is not in config.json's env list",
                      t[i].name, t[i].env);
    }
    json_array_foreach(env, k, e)
    {
        const char *name = json_string_value(json_object_get(e, "name"));
        bool known = false;

        for (size_t i = 0; i < n && !known; i++)
            known = t[i].env != NULL && strcmp(t[i].env, name) == 0;
        for (size_t i = 0; i < sizeof(daemon_vars) / sizeof(daemon_vars[0]) && !known; i++)
            known = strcmp(daemon_vars[i], name) == 0;
        ck_assert_msg(known, "config.json's env %s is no option's variable", name);
    }
    json_decref(root);
}
END_TEST

static const char start_body[] =
    "{\"File\":\"/run/docker/logging/f\",\"Info\":{\"Config\":{\"tag\":\"t\"},"
    "\"ContainerID\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\","
    "\"ContainerName\":\"/web\",\"ContainerEntrypoint\":\"/bin/sh\",\"ContainerArgs\":[\"-c\","
    "\"x y\"],\"ContainerImageID\":\"sha256:0a1b2c3d4e5f60718293a4b5\",\"ContainerImageName\":"
    "\"nginx:1.27\",\"ContainerCreated\":\"2026-01-02T03:04:05Z\",\"ContainerEnv\":[\"A=1\"],"
    "\"ContainerLabels\":{\"l\":\"v\"},\"LogPath\":\"\",\"DaemonName\":\"docker\"}}\n";

START_TEST(test_info_parse_all_fields)
{
    struct fwd_info in;
    char *file;

    ck_assert_int_eq(
        fwd_info_parse_start(start_body, strlen(start_body), &file, &in, err, sizeof(err)), 0);
    ck_assert_str_eq(file, "/run/docker/logging/f");
    ck_assert_str_eq(in.container_name, "/web");
    ck_assert_uint_eq(in.nargs, 2);
    ck_assert_str_eq(in.args[1], "x y");
    ck_assert_uint_eq(in.nenv, 1);
    ck_assert_uint_eq(in.nlabels, 1);
    ck_assert_str_eq(fwd_info_opt(&in, "tag"), "t");
    ck_assert_ptr_null(fwd_info_opt(&in, "nope"));
    ck_assert_str_eq(in.daemon_name, "docker");
    free(file);
    fwd_info_release(&in);
}
END_TEST

START_TEST(test_info_null_arrays_and_errors)
{
    static const char nulls[] = "{\"File\":\"/f\",\"Info\":{\"ContainerID\":\"c\",\"Config\":null,"
                                "\"ContainerArgs\":null,\"ContainerEnv\":null,"
                                "\"ContainerLabels\":null}}";
    static const char badtype[] = "{\"File\":\"/f\",\"Info\":{\"ContainerID\":\"c\","
                                  "\"ContainerEnv\":{\"a\":1}}}";
    struct fwd_info in;
    char *file;

    ck_assert_int_eq(fwd_info_parse_start(nulls, strlen(nulls), &file, &in, err, sizeof(err)), 0);
    ck_assert_uint_eq(in.nenv + in.nargs + in.nlabels + in.nconfig, 0);
    ck_assert_str_eq(in.image_name, "");
    free(file);
    fwd_info_release(&in);
    ck_assert_int_eq(fwd_info_parse_start(badtype, strlen(badtype), &file, &in, err, sizeof(err)),
                     -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "ContainerEnv"));
    ck_assert_int_eq(fwd_info_parse_start("{", 1, &file, &in, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "malformed JSON"));
    ck_assert_int_eq(fwd_info_parse_start("[]", 2, &file, &in, err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(fwd_info_parse_stop("{\"File\":\"\"}", 11, &file, err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(fwd_info_parse_stop("{\"File\":\"/a\"}", 13, &file, err, sizeof(err)), 0);
    ck_assert_str_eq(file, "/a");
    free(file);
}
END_TEST

START_TEST(test_tag_every_field)
{
    struct fwd_info in;
    char *file, *tag;

    ck_assert_int_eq(
        fwd_info_parse_start(start_body, strlen(start_body), &file, &in, err, sizeof(err)), 0);
    tag = fwd_tag_render("{{.ID}} {{.FullID}} {{.Name}} {{.ImageID}} {{.ImageFullID}} "
                         "{{.ImageName}} {{.DaemonName}} {{.Command}} {{.Hostname}}",
                         &in, "host1", err, sizeof(err));
    ck_assert_ptr_nonnull(tag);
    ck_assert_str_eq(tag, "0123456789ab "
                          "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef "
                          "web 0a1b2c3d4e5f sha256:0a1b2c3d4e5f60718293a4b5 nginx:1.27 docker "
                          "/bin/sh -c x y host1");
    free(tag);
    tag = fwd_tag_render("docker.{{ .Name }}.{{.ContainerName}}", &in, "h", err, sizeof(err));
    ck_assert_str_eq(tag, "docker.web./web");
    free(tag);
    tag = fwd_tag_render("plain", &in, "h", err, sizeof(err));
    ck_assert_str_eq(tag, "plain");
    free(tag);
    ck_assert_ptr_null(fwd_tag_render("{{.Bogus}}", &in, "h", err, sizeof(err)));
    ck_assert_ptr_nonnull(strstr(err, "unknown field \".Bogus\""));
    ck_assert_ptr_null(fwd_tag_render("{{.Name", &in, "h", err, sizeof(err)));
    ck_assert_ptr_nonnull(strstr(err, "unclosed"));
    ck_assert_ptr_null(fwd_tag_render("{{json .}}", &in, "h", err, sizeof(err)));
    ck_assert_ptr_null(
        fwd_tag_render("{{ (.ExtraAttributes nil).X }}", &in, "h", err, sizeof(err)));
    ck_assert_ptr_nonnull(strstr(err, "unsupported action"));
    free(file);
    fwd_info_release(&in);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("config");
    TCase *core = tcase_create("core"), *errors = tcase_create("errors");

    tcase_add_test(core, test_config_defaults);
    tcase_add_test(core, test_config_addresses);
    tcase_add_test(core, test_config_address_lists);
    tcase_add_test(core, test_config_buffer_options);
    tcase_add_test(core, test_issue_13_rate_limit_options);
    tcase_add_test(core, test_config_durations_like_go);
    tcase_add_test(core, test_config_sizes_like_go_units);
    tcase_add_test(core, test_config_generic_keys_and_precedence);
    tcase_add_test(core, test_config_env_defaults);
    tcase_add_test(core, test_config_pipeline_options);
    tcase_add_test(errors, test_config_pipeline_errors);
    tcase_add_test(core, test_info_parse_all_fields);
    tcase_add_test(core, test_tag_every_field);
    tcase_add_test(errors, test_config_errors_name_option_value_and_fix);
    tcase_add_test(core, test_config_table_rows_are_sane);
    tcase_add_test(errors, test_config_table_ranges_enforced);
    tcase_add_test(errors, test_issue_13_secret_files_regular_and_bounded);
    tcase_add_test(core, test_config_tls_key_password_file);
    tcase_add_test(core, test_config_every_option_in_readme);
    tcase_add_test(core, test_config_every_variable_in_config_json);
    tcase_add_test(errors, test_info_null_arrays_and_errors);
    suite_add_tcase(s, core);
    suite_add_tcase(s, errors);
    return fwd_test_run(s);
}
