/* Unit tests for timefmt.c: each time-format, time zones, invalid values. */
#include "fwd_timefmt.h"

#include "unit.h"

#include <check.h>
#include <errno.h>
#include <string.h>

static int64_t parse(const char *spec, const char *s)
{
    struct fwd_timefmt f;
    int64_t ns = -1;

    ck_assert_int_eq(fwd_timefmt_compile(&f, spec), 0);
    if (fwd_timefmt_parse(&f, s, strlen(s), &ns) != 0)
        return -1;
    return ns;
}

START_TEST(test_timefmt_rfc3339_zones_and_fractions)
{
    ck_assert_int_eq(parse("rfc3339", "2026-11-24T10:00:00Z"), 1795514400000000000ll);
    ck_assert_int_eq(parse("rfc3339", "2026-11-24t10:00:00.123456789z"), 1795514400123456789ll);
    ck_assert_int_eq(parse("rfc3339", "2026-11-24 10:00:00.5"), 1795514400500000000ll);
    ck_assert_int_eq(parse("rfc3339", "2026-11-24T11:30:00+01:30"), 1795514400000000000ll);
    ck_assert_int_eq(parse("rfc3339", "2026-11-24T05:00:00-0500"), 1795514400000000000ll);
    /* more than 9 fraction digits: read, and cut at the nanosecond */
    ck_assert_int_eq(parse("rfc3339", "2026-11-24T10:00:00.1234567891234Z"), 1795514400123456789ll);
    ck_assert_int_eq(parse("rfc3339", "1970-01-01T00:00:00Z"), 0);
    ck_assert_int_eq(parse("rfc3339", "2024-02-29T00:00:00Z"), 1709164800000000000ll);
}
END_TEST

START_TEST(test_timefmt_rfc3339_invalid)
{
    static const char *const bad[] = {
        "",
        "2026-11-24",
        "2026-11-24T10:00",
        "2026-13-01T00:00:00Z",
        "2026-02-29T00:00:00Z",
        "2026-11-31T00:00:00Z",
        "2026-11-24T24:00:00Z",
        "2026-11-24T10:60:00Z",
        "2026-11-24T10:00:00.Z",
        "2026-11-24T10:00:00Zjunk",
        "2026-11-24T10:00:00+25:00",
        "2026-11-24X10:00:00Z",
        "1969-12-31T23:59:59Z",
        "2263-01-01T00:00:00Z",
        "26-11-24T10:00:00Z",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(parse("rfc3339", bad[i]) == -1, "%s", bad[i]);
}
END_TEST

START_TEST(test_timefmt_unix_units)
{
    ck_assert_int_eq(parse("unix", "1700000000"), 1700000000000000000ll);
    ck_assert_int_eq(parse("unix", "1700000000.000000001"), 1700000000000000001ll);
    ck_assert_int_eq(parse("unix_ms", "1700000000123"), 1700000000123000000ll);
    ck_assert_int_eq(parse("unix_ms", "1700000000123.5"), 1700000000123500000ll);
    ck_assert_int_eq(parse("unix_us", "1700000000123456"), 1700000000123456000ll);
    ck_assert_int_eq(parse("unix_ns", "1700000000123456789"), 1700000000123456789ll);
    ck_assert_int_eq(parse("unix", "9223372035"), 9223372035000000000ll);
    ck_assert_int_eq(parse("unix", "9223372036"), -1);
    ck_assert_int_eq(parse("unix_ns", "99999999999999999999"), -1);
    ck_assert_int_eq(parse("unix", "-1"), -1);
    ck_assert_int_eq(parse("unix", "1.7e9"), -1);
    ck_assert_int_eq(parse("unix", ""), -1);
    ck_assert_int_eq(parse("unix", "12x"), -1);
}
END_TEST

START_TEST(test_timefmt_strptime_patterns)
{
    ck_assert_int_eq(parse("%d/%b/%Y:%H:%M:%S %z", "24/Nov/2026:11:00:00 +0100"),
                     1795514400000000000ll);
    ck_assert_int_eq(parse("%Y-%m-%d %H:%M:%S", "2026-11-24 10:00:00"), 1795514400000000000ll);
    ck_assert_int_eq(parse("%Y-%m-%d %H:%M:%S.%L", "2026-11-24 10:00:00.25"),
                     1795514400250000000ll);
    ck_assert_int_eq(parse("%Y-%m-%dT%H:%M:%S.%N%z", "2026-11-24T10:00:00.000000007+0000"),
                     1795514400000000007ll);
    ck_assert_int_eq(parse("%Y-%m-%d %H:%M:%S", "2026-11-24 10:00:00 trailing"), -1);
    ck_assert_int_eq(parse("%Y-%m-%d %H:%M:%S.%L", "2026-11-24 10:00:00."), -1);
    ck_assert_int_eq(parse("%Y-%m-%d", "not a date"), -1);
}
END_TEST

START_TEST(test_timefmt_bad_specs)
{
    struct fwd_timefmt f;
    char longpat[300];

    ck_assert_int_eq(fwd_timefmt_compile(&f, "iso8601"), -EINVAL);
    ck_assert_int_eq(fwd_timefmt_compile(&f, ""), -EINVAL);
    memset(longpat, '%', sizeof(longpat) - 1);
    longpat[sizeof(longpat) - 1] = '\0';
    ck_assert_int_eq(fwd_timefmt_compile(&f, longpat), -EINVAL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("timefmt");
    TCase *core = tcase_create("core"), *errors = tcase_create("errors");

    tcase_add_test(core, test_timefmt_rfc3339_zones_and_fractions);
    tcase_add_test(core, test_timefmt_unix_units);
    tcase_add_test(core, test_timefmt_strptime_patterns);
    tcase_add_test(errors, test_timefmt_rfc3339_invalid);
    tcase_add_test(errors, test_timefmt_bad_specs);
    suite_add_tcase(s, core);
    suite_add_tcase(s, errors);
    return fwd_test_run(s);
}
