/* Unit tests for metrics.c: the text exposition format 0.0.4, escaping, histograms, caps. */
#include "fwd_metrics.h"

#include "unit.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The writer's output as a NUL-terminated string (the buffer is released by the caller). */
static const char *text(struct fwd_buf *b)
{
    ck_assert_int_eq(fwd_buf_append(b, "", 1), 0);
    b->len--;
    return (const char *)b->data;
}

START_TEST(test_metrics_family_has_help_and_type)
{
    struct fwd_buf b;
    struct fwd_metrics w;

    fwd_buf_init(&b, 4096);
    fwd_metrics_init(&w, &b);
    fwd_metrics_one(&w, "fwdlog_records_total", FWD_METRICS_COUNTER, "Records read.", 42);
    fwd_metrics_one(&w, "fwdlog_containers", FWD_METRICS_GAUGE, "Containers now.", 0);
    ck_assert_int_eq(fwd_metrics_finish(&w), 0);
    ck_assert_str_eq(text(&b), "# HELP fwdlog_records_total Records read.\n"
                               "# TYPE fwdlog_records_total counter\n"
                               "fwdlog_records_total 42\n"
                               "# HELP fwdlog_containers Containers now.\n"
                               "# TYPE fwdlog_containers gauge\n"
                               "fwdlog_containers 0\n");
    fwd_buf_release(&b);
}
END_TEST

START_TEST(test_metrics_labels_are_escaped)
{
    struct fwd_buf b;
    struct fwd_metrics w;
    struct fwd_metrics_label l[] = {{"container_id", "0123456789ab"},
                                    {"container_name", "/a\"b\\c\nd"}};

    fwd_buf_init(&b, 4096);
    fwd_metrics_init(&w, &b);
    fwd_metrics_family(&w, "x_total", FWD_METRICS_COUNTER, "Back\\slash and\nnewline \"kept\".");
    fwd_metrics_u64(&w, l, 2, 18446744073709551615ull);
    ck_assert_int_eq(fwd_metrics_finish(&w), 0);
    ck_assert_str_eq(text(&b),
                     "# HELP x_total Back\\\\slash and\\nnewline \"kept\".\n"
                     "# TYPE x_total counter\n"
                     "x_total{container_id=\"0123456789ab\",container_name=\"/a\\\"b\\\\c\\nd\"} "
                     "18446744073709551615\n");
    fwd_buf_release(&b);
}
END_TEST

START_TEST(test_metrics_floats)
{
    struct fwd_buf b;
    struct fwd_metrics w;

    fwd_buf_init(&b, 4096);
    fwd_metrics_init(&w, &b);
    fwd_metrics_family(&w, "g", FWD_METRICS_GAUGE, "h");
    fwd_metrics_f64(&w, NULL, 0, 0.25);
    fwd_metrics_f64(&w, NULL, 0, INFINITY);
    fwd_metrics_f64(&w, NULL, 0, -INFINITY);
    fwd_metrics_f64(&w, NULL, 0, NAN);
    fwd_metrics_f64(&w, NULL, 0, 1700000000.5);
    ck_assert_int_eq(fwd_metrics_finish(&w), 0);
    ck_assert_str_eq(text(&b), "# HELP g h\n# TYPE g gauge\n"
                               "g 0.25\ng +Inf\ng -Inf\ng NaN\ng 1700000000.5\n");
    fwd_buf_release(&b);
}
END_TEST

START_TEST(test_metrics_histogram_is_cumulative)
{
    static const double bounds[] = {0.25, 0.5, 1};
    struct fwd_buf b;
    struct fwd_metrics w;
    struct fwd_hist h;
    struct fwd_metrics_label l[] = {{"destination", "127.0.0.1:24224"}};

    fwd_hist_init(&h, bounds, 3);
    fwd_hist_observe(&h, 0.125);
    fwd_hist_observe(&h, 0.25); /* le is inclusive */
    fwd_hist_observe(&h, 0.75);
    fwd_hist_observe(&h, 2.0); /* only in +Inf */
    fwd_buf_init(&b, 4096);
    fwd_metrics_init(&w, &b);
    fwd_metrics_family(&w, "lag_seconds", FWD_METRICS_HISTOGRAM, "Lag.");
    fwd_metrics_hist(&w, l, 1, &h);
    ck_assert_int_eq(fwd_metrics_finish(&w), 0);
    ck_assert_str_eq(text(&b), "# HELP lag_seconds Lag.\n"
                               "# TYPE lag_seconds histogram\n"
                               "lag_seconds_bucket{destination=\"127.0.0.1:24224\",le=\"0.25\"} 2\n"
                               "lag_seconds_bucket{destination=\"127.0.0.1:24224\",le=\"0.5\"} 2\n"
                               "lag_seconds_bucket{destination=\"127.0.0.1:24224\",le=\"1\"} 3\n"
                               "lag_seconds_bucket{destination=\"127.0.0.1:24224\",le=\"+Inf\"} 4\n"
                               "lag_seconds_sum{destination=\"127.0.0.1:24224\"} 3.125\n"
                               "lag_seconds_count{destination=\"127.0.0.1:24224\"} 4\n");
    fwd_buf_release(&b);
}
END_TEST

START_TEST(test_metrics_unlabelled_histogram)
{
    static const double bounds[] = {1};
    struct fwd_buf b;
    struct fwd_metrics w;
    struct fwd_hist h;

    fwd_hist_init(&h, bounds, 1);
    fwd_buf_init(&b, 4096);
    fwd_metrics_init(&w, &b);
    fwd_metrics_family(&w, "h", FWD_METRICS_HISTOGRAM, "x");
    fwd_metrics_hist(&w, NULL, 0, &h);
    ck_assert_int_eq(fwd_metrics_finish(&w), 0);
    ck_assert_str_eq(text(&b), "# HELP h x\n# TYPE h histogram\n"
                               "h_bucket{le=\"1\"} 0\nh_bucket{le=\"+Inf\"} 0\n"
                               "h_sum 0\nh_count 0\n");
    fwd_buf_release(&b);
}
END_TEST

START_TEST(test_metrics_cap_is_sticky)
{
    struct fwd_buf b;
    struct fwd_metrics w;

    fwd_buf_init(&b, 40);
    fwd_metrics_init(&w, &b);
    fwd_metrics_one(&w, "fwdlog_a_long_family_name_total", FWD_METRICS_COUNTER, "help", 1);
    fwd_metrics_one(&w, "b", FWD_METRICS_GAUGE, "h", 2);
    ck_assert_int_eq(fwd_metrics_finish(&w), -EMSGSIZE);
    ck_assert_uint_le(b.len, 40);
    fwd_buf_release(&b);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *core = tcase_create("core"), *limits = tcase_create("limits");

    tcase_add_test(core, test_metrics_family_has_help_and_type);
    tcase_add_test(core, test_metrics_labels_are_escaped);
    tcase_add_test(core, test_metrics_floats);
    tcase_add_test(core, test_metrics_histogram_is_cumulative);
    tcase_add_test(core, test_metrics_unlabelled_histogram);
    tcase_add_test(limits, test_metrics_cap_is_sticky);
    suite_add_tcase(s, core);
    suite_add_tcase(s, limits);
    return s;
}

int main(void)
{
    return fwd_test_run(suite());
}
