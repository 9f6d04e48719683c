/* Unit tests for multiline.c: the presets on real-looking traces, streams, flush and bounds. */
#include "fwd_multiline.h"
#include "fwd_partial.h"

#include "unit.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXOUT 32

/* What came out: each event as "source|time|text". */
struct got {
    char *ev[MAXOUT];
    size_t n;
};

static int collect(void *ctx, const struct fwd_line *l)
{
    struct got *g = ctx;
    size_t cap = l->len + 64;

    ck_assert_uint_lt(g->n, MAXOUT);
    g->ev[g->n] = malloc(cap);
    snprintf(g->ev[g->n], cap, "%.*s|%lld|%.*s", (int)l->source_len, l->source_str,
             (long long)l->time_nano, (int)l->len, (const char *)l->data);
    g->n++;
    return 0;
}

static void got_free(struct got *g)
{
    for (size_t i = 0; i < g->n; i++)
        free(g->ev[i]);
    g->n = 0;
}

static struct fwd_multiline *mk(enum fwd_multiline_mode mode, const char *start, uint32_t lines,
                                size_t bytes)
{
    struct fwd_multiline_opts o = {mode, start, lines, bytes, 1000000000ull};
    char err[256];
    struct fwd_multiline *m = fwd_multiline_create(&o, err, sizeof(err));

    ck_assert_msg(m != NULL, "%s", err);
    return m;
}

static void feed(struct fwd_multiline *m, struct got *g, enum fwd_source src, int64_t t,
                 const char *text)
{
    struct fwd_line l = {0};

    l.source = src;
    l.source_str = src == FWD_SOURCE_STDERR ? "stderr" : "stdout";
    l.source_len = 6;
    l.time_nano = t;
    l.data = (const uint8_t *)text;
    l.len = strlen(text);
    ck_assert_int_eq(fwd_multiline_feed(m, &l, (uint64_t)t, collect, g), 0);
}

static void feed_all(struct fwd_multiline *m, struct got *g, const char *const *lines, size_t n)
{
    for (size_t i = 0; i < n; i++)
        feed(m, g, FWD_SOURCE_STDOUT, (int64_t)i + 1, lines[i]);
}

START_TEST(test_multiline_java_trace)
{
    static const char *const in[] = {
        "2026-11-24 10:00:00.123 ERROR [main] c.e.Service - request failed",
        "java.lang.IllegalStateException: order 42 not found",
        "\tat com.example.OrderService.find(OrderService.java:88)",
        "\tat com.example.Api.handle(Api.java:31)",
        "Caused by: java.sql.SQLException: connection reset",
        "\tat org.postgresql.Driver.connect(Driver.java:120)",
        "\t... 12 more",
        "\tSuppressed: java.io.IOException: close failed",
        "\t\tat com.example.Pool.close(Pool.java:5)",
        "2026-11-24 10:00:01.000 INFO  [main] c.e.Service - next request",
    };
    struct fwd_multiline *m = mk(FWD_MULTILINE_JAVA, NULL, 500, 1 << 20);
    struct got g = {0};

    feed_all(m, &g, in, 10);
    ck_assert_uint_eq(g.n, 2);
    ck_assert_str_eq(g.ev[0], "stdout|1|2026-11-24 10:00:00.123 ERROR [main] c.e.Service - "
                              "request failed");
    ck_assert_str_eq(g.ev[1], "stdout|2|java.lang.IllegalStateException: order 42 not found\n"
                              "\tat com.example.OrderService.find(OrderService.java:88)\n"
                              "\tat com.example.Api.handle(Api.java:31)\n"
                              "Caused by: java.sql.SQLException: connection reset\n"
                              "\tat org.postgresql.Driver.connect(Driver.java:120)\n"
                              "\t... 12 more\n"
                              "\tSuppressed: java.io.IOException: close failed\n"
                              "\t\tat com.example.Pool.close(Pool.java:5)");
    ck_assert_uint_eq(fwd_multiline_next_deadline(m), 10 + 1000000000ull);
    ck_assert_uint_eq(fwd_multiline_joins(m), 1); /* the trace; the first line came alone */
    ck_assert_int_eq(fwd_multiline_flush(m, collect, &g), 0);
    ck_assert_uint_eq(g.n, 3);
    ck_assert_uint_eq(fwd_multiline_joins(m), 1);
    ck_assert_str_eq(g.ev[2], "stdout|10|2026-11-24 10:00:01.000 INFO  [main] c.e.Service - "
                              "next request");
    ck_assert_uint_eq(fwd_multiline_next_deadline(m), 0);
    got_free(&g);
    fwd_multiline_destroy(m);
}
END_TEST

START_TEST(test_multiline_python_traceback)
{
    static const char *const in[] = {
        "INFO starting",
        "Traceback (most recent call last):",
        "  File \"/app/main.py\", line 10, in <module>",
        "    main()",
        "  File \"/app/main.py\", line 6, in main",
        "    return 1 / 0",
        "           ~~^~~",
        "ZeroDivisionError: division by zero",
        "INFO after",
    };
    struct fwd_multiline *m = mk(FWD_MULTILINE_PYTHON, NULL, 500, 1 << 20);
    struct got g = {0};

    feed_all(m, &g, in, 9);
    /* nothing waits: lines outside a traceback and the exception line end events at once */
    ck_assert_uint_eq(g.n, 3);
    ck_assert_str_eq(g.ev[0], "stdout|1|INFO starting");
    ck_assert_str_eq(g.ev[1], "stdout|2|Traceback (most recent call last):\n"
                              "  File \"/app/main.py\", line 10, in <module>\n"
                              "    main()\n"
                              "  File \"/app/main.py\", line 6, in main\n"
                              "    return 1 / 0\n"
                              "           ~~^~~\n"
                              "ZeroDivisionError: division by zero");
    ck_assert_str_eq(g.ev[2], "stdout|9|INFO after");
    ck_assert_uint_eq(fwd_multiline_next_deadline(m), 0);
    got_free(&g);
    fwd_multiline_destroy(m);
}
END_TEST

START_TEST(test_multiline_go_panic)
{
    static const char *const in[] = {
        "listening on :8080",
        "panic: runtime error: index out of range [5] with length 3",
        "",
        "goroutine 1 [running]:",
        "main.handler(0xc000012345, {0x4b2f00, 0x3})",
        "\t/app/main.go:14 +0x1d",
        "main.(*Server).serve(...)",
        "\t/app/server.go:40",
        "created by main.main in goroutine 1",
        "\t/app/main.go:30 +0x85",
        "exit status 2",
        "restarting",
    };
    struct fwd_multiline *m = mk(FWD_MULTILINE_GO, NULL, 500, 1 << 20);
    struct got g = {0};

    feed_all(m, &g, in, 12);
    ck_assert_uint_eq(g.n, 3);
    ck_assert_str_eq(g.ev[0], "stdout|1|listening on :8080");
    ck_assert_str_eq(g.ev[1], "stdout|2|panic: runtime error: index out of range [5] with "
                              "length 3\n\ngoroutine 1 [running]:\n"
                              "main.handler(0xc000012345, {0x4b2f00, 0x3})\n"
                              "\t/app/main.go:14 +0x1d\n"
                              "main.(*Server).serve(...)\n"
                              "\t/app/server.go:40\n"
                              "created by main.main in goroutine 1\n"
                              "\t/app/main.go:30 +0x85\n"
                              "exit status 2");
    ck_assert_str_eq(g.ev[2], "stdout|12|restarting");
    got_free(&g);
    fwd_multiline_destroy(m);
}
END_TEST

START_TEST(test_multiline_streams_never_mix)
{
    struct fwd_multiline *m = mk(FWD_MULTILINE_JAVA, NULL, 500, 1 << 20);
    struct got g = {0};

    feed(m, &g, FWD_SOURCE_STDOUT, 1, "out: Exception in thread main");
    feed(m, &g, FWD_SOURCE_STDERR, 2, "err: java.lang.Error: x");
    feed(m, &g, FWD_SOURCE_STDOUT, 3, "\tat out.A(A.java:1)");
    feed(m, &g, FWD_SOURCE_STDERR, 4, "\tat err.B(B.java:2)");
    feed(m, &g, FWD_SOURCE_STDOUT, 5, "out next");
    ck_assert_uint_eq(g.n, 1);
    ck_assert_str_eq(g.ev[0], "stdout|1|out: Exception in thread main\n\tat out.A(A.java:1)");
    ck_assert_int_eq(fwd_multiline_flush(m, collect, &g), 0);
    ck_assert_uint_eq(g.n, 3);
    ck_assert_str_eq(g.ev[1], "stdout|5|out next");
    ck_assert_str_eq(g.ev[2], "stderr|2|err: java.lang.Error: x\n\tat err.B(B.java:2)");
    got_free(&g);
    fwd_multiline_destroy(m);
}
END_TEST

START_TEST(test_multiline_flush_timeout)
{
    struct fwd_multiline *m = mk(FWD_MULTILINE_START, "^\\d{4}-", 500, 1 << 20);
    struct got g = {0};

    feed(m, &g, FWD_SOURCE_STDOUT, 100, "2026-11-24 first");
    feed(m, &g, FWD_SOURCE_STDOUT, 200, "  more");
    ck_assert_uint_eq(fwd_multiline_next_deadline(m), 100 + 1000000000ull);
    ck_assert_int_eq(fwd_multiline_expire(m, 100 + 999999999ull, collect, &g), 0);
    ck_assert_uint_eq(g.n, 0);
    ck_assert_int_eq(fwd_multiline_expire(m, 100 + 1000000000ull, collect, &g), 0);
    ck_assert_uint_eq(g.n, 1);
    ck_assert_str_eq(g.ev[0], "stdout|100|2026-11-24 first\n  more");
    /* a line that does not match and finds nothing open starts an event itself */
    feed(m, &g, FWD_SOURCE_STDOUT, 300, "orphan");
    ck_assert_int_eq(fwd_multiline_flush(m, collect, &g), 0);
    ck_assert_str_eq(g.ev[1], "stdout|300|orphan");
    got_free(&g);
    fwd_multiline_destroy(m);
}
END_TEST

START_TEST(test_multiline_max_lines_and_bytes)
{
    struct fwd_multiline *m = mk(FWD_MULTILINE_START, "^S", 3, 1 << 20);
    struct fwd_multiline *b = mk(FWD_MULTILINE_START, "^S", 500, 12);
    struct got g = {0};

    for (int i = 0; i < 7; i++)
        feed(m, &g, FWD_SOURCE_STDOUT, i, i == 0 ? "S" : "c");
    ck_assert_int_eq(fwd_multiline_flush(m, collect, &g), 0);
    ck_assert_uint_eq(g.n, 3);
    ck_assert_str_eq(g.ev[0], "stdout|0|S\nc\nc");
    ck_assert_str_eq(g.ev[1], "stdout|3|c\nc\nc");
    ck_assert_str_eq(g.ev[2], "stdout|6|c");
    got_free(&g);
    /* 12 bytes: "S\n12345\nabc" is 11; the next line would pass it */
    feed(b, &g, FWD_SOURCE_STDOUT, 1, "S");
    feed(b, &g, FWD_SOURCE_STDOUT, 2, "12345");
    feed(b, &g, FWD_SOURCE_STDOUT, 3, "abc");
    feed(b, &g, FWD_SOURCE_STDOUT, 4, "de");
    feed(b, &g, FWD_SOURCE_STDOUT, 5, "a line longer than twelve");
    ck_assert_int_eq(fwd_multiline_flush(b, collect, &g), 0);
    ck_assert_uint_eq(g.n, 3);
    ck_assert_str_eq(g.ev[0], "stdout|1|S\n12345\nabc");
    ck_assert_str_eq(g.ev[1], "stdout|4|de");
    ck_assert_str_eq(g.ev[2], "stdout|5|a line longer than twelve");
    got_free(&g);
    fwd_multiline_destroy(m);
    fwd_multiline_destroy(b);
}
END_TEST

/* partial.c joins a 16 KiB-split frame first; the joined line continues the trace. */
START_TEST(test_multiline_trace_split_across_partials)
{
    struct fwd_multiline *m = mk(FWD_MULTILINE_JAVA, NULL, 500, 1 << 20);
    struct fwd_partial *p = fwd_partial_create(1 << 20, 1000000000ull);
    static char big[20001];
    struct got g = {0};
    struct fwd_entry e = {.source = FWD_SOURCE_STDOUT, .source_str = "stdout", .source_len = 6};

    memset(big, 'x', sizeof(big) - 1);
    memcpy(big, "\tat ", 4);
    feed(m, &g, FWD_SOURCE_STDOUT, 1, "java.lang.RuntimeException: big");
    e.time_nano = 2;
    e.has_meta = true;
    e.partial_id = "abc";
    e.partial_id_len = 3;
    e.partial = true;
    e.ordinal = 1;
    e.line = (const uint8_t *)big;
    e.line_len = 16384;
    ck_assert_int_eq(fwd_partial_feed(p, &e, 2, collect, &g), 0);
    ck_assert_uint_eq(g.n, 0);
    e.ordinal = 2;
    e.last = true;
    e.line = (const uint8_t *)big + 16384;
    e.line_len = sizeof(big) - 1 - 16384;
    ck_assert_int_eq(fwd_partial_feed(p, &e, 3, collect, &g), 0);
    ck_assert_uint_eq(g.n, 1); /* the joined line, to feed on */
    ck_assert_uint_eq(strlen(g.ev[0]), strlen("stdout|2|") + 20000);
    feed(m, &g, FWD_SOURCE_STDOUT, 2, g.ev[0] + strlen("stdout|2|"));
    got_free(&g);
    feed(m, &g, FWD_SOURCE_STDOUT, 4, "\tat end.E(E.java:1)");
    ck_assert_int_eq(fwd_multiline_flush(m, collect, &g), 0);
    ck_assert_uint_eq(g.n, 1);
    ck_assert_uint_eq(strlen(g.ev[0]), strlen("stdout|1|java.lang.RuntimeException: big\n") +
                                           20000 + strlen("\n\tat end.E(E.java:1)"));
    got_free(&g);
    fwd_partial_destroy(p);
    fwd_multiline_destroy(m);
}
END_TEST

START_TEST(test_multiline_bad_start_names_option)
{
    struct fwd_multiline_opts o = {FWD_MULTILINE_START, "([", 500, 1024, 1};
    char err[256];

    ck_assert_ptr_null(fwd_multiline_create(&o, err, sizeof(err)));
    ck_assert_msg(strstr(err, "invalid log-opt multiline-start=\"([\"") != NULL, "%s", err);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("multiline");
    TCase *core = tcase_create("core"), *limits = tcase_create("limits");

    tcase_add_test(core, test_multiline_java_trace);
    tcase_add_test(core, test_multiline_python_traceback);
    tcase_add_test(core, test_multiline_go_panic);
    tcase_add_test(core, test_multiline_streams_never_mix);
    tcase_add_test(core, test_multiline_trace_split_across_partials);
    tcase_add_test(limits, test_multiline_flush_timeout);
    tcase_add_test(limits, test_multiline_max_lines_and_bytes);
    tcase_add_test(limits, test_multiline_bad_start_names_option);
    suite_add_tcase(s, core);
    suite_add_tcase(s, limits);
    return fwd_test_run(s);
}
