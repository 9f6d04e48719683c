/* Unit tests for parse.c: parse=json, logfmt and regex, names, time fields and bounds. */
#include "fwd_parse.h"

#include "show.h"
#include "unit.h"

#include <check.h>
#include <errno.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

static char err[512];
static char shown[8192];
static struct fwd_parsed res;

static struct fwd_parser *mk(enum fwd_parse_kind kind, const char *re, const char *tkey,
                             const char *tfmt, bool keep)
{
    static const char *const reserved[] = {"container_id", "container_name", "source"};
    struct fwd_parse_opts o = {.kind = kind,
                               .regex = re,
                               .time_key = tkey,
                               .time_keep = keep,
                               .reserved = reserved,
                               .nreserved = 3,
                               .max_out = 1 << 20};
    struct fwd_parser *p;

    ck_assert_int_eq(fwd_timefmt_compile(&o.time_format, tfmt ? tfmt : "rfc3339"), 0);
    p = fwd_parser_create(&o, err, sizeof(err));
    ck_assert_msg(p != NULL, "%s", err);
    return p;
}

/* Run p on line; on success show the pairs as a map in `shown`. Returns the run's result. */
static int run(struct fwd_parser *p, const char *line)
{
    uint8_t buf[1 << 16];
    msgpack_unpacked u;
    size_t off = 0;
    int rc = fwd_parser_run(p, (const uint8_t *)line, strlen(line), &res);

    shown[0] = '\0';
    if (rc != 0)
        return rc;
    ck_assert_uint_lt(res.len + 5, sizeof(buf));
    buf[0] = 0xdf;
    buf[1] = (uint8_t)(res.npairs >> 24);
    buf[2] = (uint8_t)(res.npairs >> 16);
    buf[3] = (uint8_t)(res.npairs >> 8);
    buf[4] = (uint8_t)res.npairs;
    if (res.len)
        memcpy(buf + 5, res.pairs, res.len);
    msgpack_unpacked_init(&u);
    ck_assert_int_eq(msgpack_unpack_next(&u, (const char *)buf, res.len + 5, &off),
                     MSGPACK_UNPACK_SUCCESS);
    ck_assert_uint_eq(off, res.len + 5);
    fwd_test_show(&u.data, shown, sizeof(shown));
    msgpack_unpacked_destroy(&u);
    return 0;
}

START_TEST(test_parse_json_types_stay_typed)
{
    struct fwd_parser *p = mk(FWD_PARSE_JSON, NULL, NULL, NULL, false);

    ck_assert_int_eq(run(p, " {\"s\":\"x\",\"i\":-5,\"z\":0,\"f\":1.5,\"e\":2e3,\"t\":true,"
                            "\"no\":false,\"n\":null,\"o\":{\"a\":[1,\"b\",[],{}]},\"arr\":[]} "),
                     0);
    ck_assert_str_eq(shown, "{\"s\":\"x\",\"i\":-5,\"z\":0,\"f\":F(1.5),\"e\":F(2000),\"t\":true,"
                            "\"no\":false,\"n\":null,\"o\":{\"a\":[1,\"b\",[],{}]},\"arr\":[]}");
    ck_assert_uint_eq(res.npairs, 10);
    ck_assert(!res.has_time);
    ck_assert_int_eq(run(p, "{}"), 0);
    ck_assert_str_eq(shown, "{}");
    fwd_parser_destroy(p);
}
END_TEST

START_TEST(test_parse_json_malformed_is_eproto)
{
    static const char *const bad[] = {
        "",           "   ",     "{",           "{\"a\":", "{\"a\":1",   "{\"a\":1}x",
        "{\"a\":1,}", "{'a':1}", "[1,2]",       "\"str\"", "42",         "null",
        "{\"a\" 1}",  "{a:1}",   "{\"a\":tru}", "{}{}",    "{\"a\":01}", "plain text",
    };
    struct fwd_parser *p = mk(FWD_PARSE_JSON, NULL, NULL, NULL, false);

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(run(p, bad[i]) == -EPROTO, "%s", bad[i]);
    /* still usable after failures */
    ck_assert_int_eq(run(p, "{\"ok\":1}"), 0);
    ck_assert_str_eq(shown, "{\"ok\":1}");
    fwd_parser_destroy(p);
}
END_TEST

START_TEST(test_parse_json_depth_bound)
{
    struct fwd_parser *p = mk(FWD_PARSE_JSON, NULL, NULL, NULL, false);
    char line[256] = "{\"a\":";
    size_t n;

    /* the top object is depth 1: 31 more arrays reach FWD_PARSE_MAX_DEPTH exactly */
    for (int i = 0; i < FWD_PARSE_MAX_DEPTH - 1; i++)
        strcat(line, "[");
    n = strlen(line);
    for (int i = 0; i < FWD_PARSE_MAX_DEPTH - 1; i++)
        strcat(line, "]");
    strcat(line, "}");
    ck_assert_int_eq(run(p, line), 0);
    memmove(line + n + 1, line + n, strlen(line + n) + 1);
    line[n] = '[';
    strcat(line, "]");
    memmove(line + strlen(line) - 2, "]}", 3); /* one level deeper */
    ck_assert_int_eq(run(p, line), -EMSGSIZE);
    fwd_parser_destroy(p);
}
END_TEST

START_TEST(test_parse_json_numbers_beyond_int64)
{
    struct fwd_parser *p = mk(FWD_PARSE_JSON, NULL, NULL, NULL, false);

    ck_assert_int_eq(run(p, "{\"max\":9223372036854775807,\"min\":-9223372036854775808,"
                            "\"u\":9223372036854775808,\"umax\":18446744073709551615,"
                            "\"over\":18446744073709551616,\"under\":-9223372036854775809,"
                            "\"huge\":1e400}"),
                     0);
    ck_assert_str_eq(shown, "{\"max\":9223372036854775807,\"min\":-9223372036854775808,"
                            "\"u\":9223372036854775808,\"umax\":18446744073709551615,"
                            "\"over\":F(1.84467e+19),\"under\":F(-9.22337e+18),\"huge\":F(inf)}");
    fwd_parser_destroy(p);
}
END_TEST

START_TEST(test_parse_json_unicode_and_invalid_utf8)
{
    struct fwd_parser *p = mk(FWD_PARSE_JSON, NULL, NULL, NULL, false);

    ck_assert_int_eq(run(p, "{\"e\":\"\\u00e9\\ud83d\\ude00\\n\\\"\",\"k\\u0041\":\"\xc3\xa9\"}"),
                     0);
    ck_assert_str_eq(shown, "{\"e\":\"\xc3\xa9\xf0\x9f\x98\x80\n\"\",\"kA\":\"\xc3\xa9\"}");
    ck_assert_int_eq(run(p, "{\"bad\":\"\xff\xfe\"}"), -EPROTO);
    ck_assert_int_eq(run(p, "{\"cut\":\"\xc3\"}"), -EPROTO);
    fwd_parser_destroy(p);
}
END_TEST

START_TEST(test_parse_duplicate_keys_last_wins)
{
    struct fwd_parser *p = mk(FWD_PARSE_JSON, NULL, NULL, NULL, false);

    ck_assert_int_eq(run(p, "{\"a\":1,\"b\":{\"x\":1},\"a\":{\"deep\":[3]},\"c\":3}"), 0);
    ck_assert_str_eq(shown, "{\"b\":{\"x\":1},\"a\":{\"deep\":[3]},\"c\":3}");
    ck_assert_uint_eq(res.npairs, 3);
    fwd_parser_destroy(p);
}
END_TEST

START_TEST(test_parse_reserved_names_get_underscore)
{
    struct fwd_parser *p = mk(FWD_PARSE_JSON, NULL, NULL, NULL, false);

    ck_assert_int_eq(run(p, "{\"source\":\"db\",\"container_id\":1,\"sourcex\":2,\"sourc\":3}"), 0);
    ck_assert_str_eq(shown, "{\"_source\":\"db\",\"_container_id\":1,\"sourcex\":2,\"sourc\":3}");
    /* a key holding NUL is compared by length, not as a C string (found by fuzz_parse) */
    ck_assert_int_eq(run(p, "{\"source\\u0000xy\":1}"), 0);
    ck_assert_uint_eq(res.len, 1 + 9 + 1);
    ck_assert_int_eq(memcmp(res.pairs + 1, "source\0xy", 9), 0);
    fwd_parser_destroy(p);
}
END_TEST

START_TEST(test_parse_time_key_taken_or_kept)
{
    struct fwd_parser *p = mk(FWD_PARSE_JSON, NULL, "ts", "rfc3339", false);
    struct fwd_parser *keep = mk(FWD_PARSE_JSON, NULL, "ts", "unix", true);

    ck_assert_int_eq(run(p, "{\"m\":1,\"ts\":\"2026-11-24T10:00:00.5+01:00\",\"n\":2}"), 0);
    ck_assert_str_eq(shown, "{\"m\":1,\"n\":2}");
    ck_assert(res.has_time);
    ck_assert_int_eq(res.time_nano, 1795510800500000000ll);
    /* a time that does not parse stays a field, and Docker's time stays */
    ck_assert_int_eq(run(p, "{\"ts\":\"yesterday\"}"), 0);
    ck_assert_str_eq(shown, "{\"ts\":\"yesterday\"}");
    ck_assert(!res.has_time);
    /* nested: not the time */
    ck_assert_int_eq(run(p, "{\"o\":{\"ts\":\"2026-11-24T10:00:00Z\"}}"), 0);
    ck_assert(!res.has_time);
    ck_assert_int_eq(run(keep, "{\"ts\":1700000000.25}"), 0);
    ck_assert_str_eq(shown, "{\"ts\":F(1.7e+09)}");
    ck_assert(res.has_time);
    ck_assert_int_eq(res.time_nano, 1700000000250000000ll);
    fwd_parser_destroy(p);
    fwd_parser_destroy(keep);
}
END_TEST

START_TEST(test_parse_logfmt)
{
    struct fwd_parser *p = mk(FWD_PARSE_LOGFMT, NULL, "t", "unix_ms", false);

    ck_assert_int_eq(run(p, "level=info msg=\"hello \\\"w\\\" \\n\\x\" n=5 empty= \"q\"=1"),
                     -EPROTO); /* a quoted key is not logfmt */
    ck_assert_int_eq(run(p, "  level=info msg=\"hello \\\"w\\\" \\n\\x\" n=5 empty= e2=\"\" "), 0);
    ck_assert_str_eq(shown,
                     "{\"level\":\"info\",\"msg\":\"hello \"w\" \n\\x\",\"n\":\"5\",\"empty\":\"\","
                     "\"e2\":\"\"}");
    ck_assert_int_eq(run(p, "source=x t=1700000000123 a=1 a=2"), 0);
    ck_assert_str_eq(shown, "{\"_source\":\"x\",\"a\":\"2\"}");
    ck_assert_int_eq(res.time_nano, 1700000000123000000ll);
    ck_assert_int_eq(run(p, "just a sentence"), -EPROTO);
    ck_assert_int_eq(run(p, "a=1 word"), -EPROTO);
    ck_assert_int_eq(run(p, "a=\"open"), -EPROTO);
    ck_assert_int_eq(run(p, "a=\"x\"y"), -EPROTO);
    ck_assert_int_eq(run(p, "a=b\"c"), -EPROTO);
    ck_assert_int_eq(run(p, "=v"), -EPROTO);
    ck_assert_int_eq(run(p, ""), -EPROTO);
    fwd_parser_destroy(p);
}
END_TEST

START_TEST(test_parse_regex_named_groups)
{
    struct fwd_parser *p =
        mk(FWD_PARSE_REGEX, "^(?<ip>\\S+) (?<method>[A-Z]+) (?<path>\\S+)(?: (?<code>\\d+))?$",
           NULL, NULL, false);
    struct fwd_parse_opts o = {.kind = FWD_PARSE_REGEX, .regex = "(\\w+) (\\w+)", .max_out = 64};

    ck_assert_int_eq(run(p, "127.0.0.1 GET /index.html 200"), 0);
    ck_assert_str_eq(shown, "{\"ip\":\"127.0.0.1\",\"method\":\"GET\",\"path\":\"/index.html\","
                            "\"code\":\"200\"}");
    ck_assert_int_eq(run(p, "127.0.0.1 GET /x"), 0); /* the optional group is left out */
    ck_assert_str_eq(shown, "{\"ip\":\"127.0.0.1\",\"method\":\"GET\",\"path\":\"/x\"}");
    ck_assert_int_eq(run(p, "not a request"), -EPROTO);
    fwd_parser_destroy(p);
    ck_assert_ptr_null(fwd_parser_create(&o, err, sizeof(err)));
    ck_assert_msg(strstr(err, "parse-regex") && strstr(err, "no named group"), "%s", err);
    o.regex = "(?<a>";
    ck_assert_ptr_null(fwd_parser_create(&o, err, sizeof(err)));
    ck_assert_msg(strstr(err, "invalid log-opt parse-regex=\"(?<a>\""), "%s", err);
}
END_TEST

START_TEST(test_parse_output_bound)
{
    struct fwd_parse_opts o = {.kind = FWD_PARSE_JSON, .max_out = 32};
    struct fwd_parser *p = fwd_parser_create(&o, err, sizeof(err));
    static char line[16384];

    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(run(p, "{\"a\":\"0123456789\"}"), 0);
    ck_assert_int_eq(run(p, "{\"a\":\"0123456789012345678901234567890123456789\"}"), -EMSGSIZE);
    fwd_parser_destroy(p);
    o.max_out = 1 << 20;
    p = fwd_parser_create(&o, err, sizeof(err));
    for (int n = FWD_PARSE_MAX_FIELDS; n <= FWD_PARSE_MAX_FIELDS + 1; n++) {
        strcpy(line, "{");
        for (int i = 0; i < n; i++)
            snprintf(line + strlen(line), sizeof(line) - strlen(line), "%s\"%x\":1", i ? "," : "",
                     i);
        strcat(line, "}");
        ck_assert_int_eq(run(p, line), n > FWD_PARSE_MAX_FIELDS ? -EMSGSIZE : 0);
    }
    fwd_parser_destroy(p);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("parse");
    TCase *core = tcase_create("core"), *limits = tcase_create("limits");

    tcase_add_test(core, test_parse_json_types_stay_typed);
    tcase_add_test(core, test_parse_json_malformed_is_eproto);
    tcase_add_test(core, test_parse_json_numbers_beyond_int64);
    tcase_add_test(core, test_parse_json_unicode_and_invalid_utf8);
    tcase_add_test(core, test_parse_duplicate_keys_last_wins);
    tcase_add_test(core, test_parse_reserved_names_get_underscore);
    tcase_add_test(core, test_parse_time_key_taken_or_kept);
    tcase_add_test(core, test_parse_logfmt);
    tcase_add_test(core, test_parse_regex_named_groups);
    tcase_add_test(limits, test_parse_json_depth_bound);
    tcase_add_test(limits, test_parse_output_bound);
    suite_add_tcase(s, core);
    suite_add_tcase(s, limits);
    return fwd_test_run(s);
}
