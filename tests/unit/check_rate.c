/*
 * rate-limit's token bucket (issue 13 item 7): what goes, what drops, and how
 * long a blocked reader waits, at given times.
 */
#include "fwd_rate.h"
#include "unit.h"

#define SEC 1000000000ull

START_TEST(test_rate_burst_then_the_rate)
{
    struct fwd_rate r;
    uint64_t t0 = 5 * SEC;
    unsigned went = 0;

    fwd_rate_init(&r, 100, 1000, false, t0);
    for (int i = 0; i < 20; i++)
        went += fwd_rate_take(&r, 100, t0);
    ck_assert_uint_eq(went, 10); /* the bucket starts full: the burst */
    ck_assert(!fwd_rate_take(&r, 100, t0 + SEC / 2));
    ck_assert(fwd_rate_take(&r, 100, t0 + SEC)); /* a second refills 100 bytes */
    ck_assert(!fwd_rate_take(&r, 1, t0 + SEC));
    ck_assert(fwd_rate_take(&r, 1000, t0 + 100 * SEC)); /* never more than the burst */
    ck_assert(!fwd_rate_take(&r, 1, t0 + 100 * SEC));
    ck_assert_uint_eq(fwd_rate_wait_ns(&r, t0 + 100 * SEC), 0); /* dropping never waits */
}
END_TEST

START_TEST(test_rate_burst_defaults_to_the_rate)
{
    struct fwd_rate r;

    fwd_rate_init(&r, 500, 0, false, 0);
    ck_assert_uint_eq(r.burst, 500);
    ck_assert(fwd_rate_take(&r, 500, 0));
    ck_assert(!fwd_rate_take(&r, 1, 0));
}
END_TEST

/* A line longer than the bucket goes when the bucket is full, and overdraws it. */
START_TEST(test_rate_long_line_overdraws)
{
    struct fwd_rate r;

    fwd_rate_init(&r, 1000, 1000, false, 0);
    ck_assert(fwd_rate_take(&r, 5000, 0));
    ck_assert(!fwd_rate_take(&r, 1, 3 * SEC)); /* 4,000 bytes of debt first */
    ck_assert(fwd_rate_take(&r, 1, 5 * SEC));
    ck_assert(!fwd_rate_take(&r, 5000, 5 * SEC)); /* not full */
}
END_TEST

START_TEST(test_rate_block_never_drops_and_waits)
{
    struct fwd_rate r;

    fwd_rate_init(&r, 1000, 1000, true, 0);
    for (int i = 0; i < 30; i++)
        ck_assert(fwd_rate_take(&r, 100, 0));
    ck_assert_uint_eq(fwd_rate_wait_ns(&r, 0), 2 * SEC + 1); /* 2,000 bytes of debt */
    ck_assert_uint_eq(fwd_rate_wait_ns(&r, SEC), SEC + 1);
    ck_assert_uint_eq(fwd_rate_wait_ns(&r, 2 * SEC), 0);
}
END_TEST

START_TEST(test_rate_off)
{
    struct fwd_rate r;

    fwd_rate_init(&r, 0, 0, true, 0);
    for (int i = 0; i < 1000; i++)
        ck_assert(fwd_rate_take(&r, 1 << 20, 0));
    ck_assert_uint_eq(fwd_rate_wait_ns(&r, 0), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rate");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_rate_burst_then_the_rate);
    tcase_add_test(tc, test_rate_burst_defaults_to_the_rate);
    tcase_add_test(tc, test_rate_long_line_overdraws);
    tcase_add_test(tc, test_rate_block_never_drops_and_waits);
    tcase_add_test(tc, test_rate_off);
    suite_add_tcase(s, tc);
    return fwd_test_run(s);
}
