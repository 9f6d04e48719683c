/*
 * parsecost - the per-line cost of the parsing stages alone, for make bench:
 * the scenario lines through jansson (a tree, as json_loadb builds it), through
 * fwd_parser_run (parse=json: yajl callbacks straight into MessagePack;
 * parse=regex: 4 named groups) and through fwd_multiline_feed (multiline=java
 * on a log that is 30% stack traces). In process, with no pipes or sockets;
 * each is the fastest of 15 rounds, which keeps other load on a shared machine
 * out of the numbers (a round can only be slowed down by it, never sped up).
 *
 *   parsecost [LINES_PER_ROUND]   prints one JSON object, ns per line
 */
#include "fwd_multiline.h"
#include "fwd_parse.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ROUNDS 15

static const char json_line[] =
    "{\"time\":\"2026-11-24T10:00:00.123Z\",\"level\":\"info\",\"msg\":\"request handled by "
    "the order service\",\"status\":200,\"bytes\":12345,\"latency\":0.01234,\"ok\":true,"
    "\"req\":{\"method\":\"GET\",\"path\":\"/api/v1/items/12345\"}}";
static const char access_line[] = "10.1.2.3 - GET /api/v1/items/12345 200 5123 \"curl/8.5.0\"";
static const char *const java[10] = {
    "2026-11-24 10:00:00.123 INFO  [worker-3] c.e.OrderService - processed order 12345 in 12 ms",
    "2026-11-24 10:00:00.123 INFO  [worker-3] c.e.OrderService - processed order 12346 in 12 ms",
    "2026-11-24 10:00:00.123 INFO  [worker-3] c.e.OrderService - processed order 12347 in 12 ms",
    "2026-11-24 10:00:00.123 INFO  [worker-3] c.e.OrderService - processed order 12348 in 12 ms",
    "2026-11-24 10:00:00.123 INFO  [worker-3] c.e.OrderService - processed order 12349 in 12 ms",
    "2026-11-24 10:00:00.123 INFO  [worker-3] c.e.OrderService - processed order 12350 in 12 ms",
    "2026-11-24 10:00:00.123 INFO  [worker-3] c.e.OrderService - processed order 12351 in 12 ms",
    "java.lang.IllegalStateException: order 12352 not found in the inventory database",
    "\tat com.example.OrderService.find(OrderService.java:88)",
    "\tat com.example.Api.handle(Api.java:31)",
};

enum stage {
    S_JANSSON = 0,
    S_JSON,
    S_REGEX,
    S_JAVA,
};

struct run {
    struct fwd_parser *json, *regex;
    struct fwd_multiline *ml;
    size_t sink;
};

static double now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int count(void *ctx, const struct fwd_line *l)
{
    ((struct run *)ctx)->sink += l->len;
    return 0;
}

static void once(struct run *r, enum stage s, long i)
{
    struct fwd_parsed p;

    if (s == S_JANSSON) {
        json_error_t e;
        json_t *j = json_loadb(json_line, sizeof(json_line) - 1, 0, &e);

        r->sink += json_object_size(j);
        json_decref(j);
    } else if (s == S_JSON || s == S_REGEX) {
        const char *line = s == S_JSON ? json_line : access_line;

        if (fwd_parser_run(s == S_JSON ? r->json : r->regex, (const uint8_t *)line, strlen(line),
                           &p) != 0)
            exit(1);
        r->sink += p.npairs;
    } else {
        struct fwd_line l = {.source_str = "stdout", .source_len = 6};

        l.data = (const uint8_t *)java[i % 10];
        l.len = strlen(java[i % 10]);
        fwd_multiline_feed(r->ml, &l, (uint64_t)i, count, r);
    }
}

static double best(struct run *r, enum stage s, long n)
{
    double min = 1e18;

    for (int k = 0; k < ROUNDS; k++) {
        double t0 = now_ns();

        for (long i = 0; i < n; i++)
            once(r, s, i);
        if ((now_ns() - t0) / (double)n < min)
            min = (now_ns() - t0) / (double)n;
    }
    return min;
}

int main(int argc, char **argv)
{
    static const char *const reserved[] = {"container_id", "container_name", "source"};
    struct fwd_parse_opts jo = {
        .kind = FWD_PARSE_JSON, .reserved = reserved, .nreserved = 3, .max_out = 1 << 20};
    struct fwd_parse_opts ro = jo;
    struct fwd_multiline_opts mo = {FWD_MULTILINE_JAVA, NULL, 500, 1 << 20, 1000000000ull};
    long n = argc > 1 ? atol(argv[1]) : 100000;
    char err[256];
    struct run r = {0};

    ro.kind = FWD_PARSE_REGEX;
    ro.regex = "^(?<ip>\\S+) - (?<method>[A-Z]+) (?<path>\\S+) (?<status>\\d+) ";
    r.json = fwd_parser_create(&jo, err, sizeof(err));
    r.regex = fwd_parser_create(&ro, err, sizeof(err));
    r.ml = fwd_multiline_create(&mo, err, sizeof(err));
    if (r.json == NULL || r.regex == NULL || r.ml == NULL || n <= 0)
        return 1;
    printf("{\"jansson_ns\": %.0f, \"json_ns\": %.0f, \"regex_ns\": %.0f, \"java_ns\": %.0f}\n",
           best(&r, S_JANSSON, n), best(&r, S_JSON, n), best(&r, S_REGEX, n), best(&r, S_JAVA, n));
    fwd_parser_destroy(r.json);
    fwd_parser_destroy(r.regex);
    fwd_multiline_destroy(r.ml);
    return r.sink == 0;
}
