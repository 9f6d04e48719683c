/*
 * jsonparse - the JSON parser alone, for make bench: the 200-byte line of the
 * parse=json scenario through jansson (a tree, as json_loadb builds it) and
 * through fwd_parser_run (yajl callbacks straight into MessagePack), in
 * process, so neither pipes nor the network are in the numbers.
 *
 *   jsonparse [N]    prints {"jansson_ns": ..., "fwdlog_ns": ...} per line
 */
#include "fwd_parse.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char line[] =
    "{\"time\":\"2026-11-24T10:00:00.123Z\",\"level\":\"info\",\"msg\":\"request handled by "
    "the order service\",\"status\":200,\"bytes\":12345,\"latency\":0.01234,\"ok\":true,"
    "\"req\":{\"method\":\"GET\",\"path\":\"/api/v1/items/12345\"}}";

static double now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    static const char *const reserved[] = {"container_id", "container_name", "source"};
    struct fwd_parse_opts o = {
        .kind = FWD_PARSE_JSON, .reserved = reserved, .nreserved = 3, .max_out = 1 << 20};
    long n = argc > 1 ? atol(argv[1]) : 500000;
    char err[256];
    struct fwd_parser *p = fwd_parser_create(&o, err, sizeof(err));
    struct fwd_parsed r;
    size_t len = strlen(line), fields = 0;
    double t0, t1, t2;

    if (p == NULL || n <= 0)
        return 1;
    t0 = now_ns();
    for (long i = 0; i < n; i++) {
        json_error_t e;
        json_t *j = json_loadb(line, len, 0, &e);

        fields += json_object_size(j);
        json_decref(j);
    }
    t1 = now_ns();
    for (long i = 0; i < n; i++) {
        if (fwd_parser_run(p, (const uint8_t *)line, len, &r) != 0)
            return 1;
        fields += r.npairs;
    }
    t2 = now_ns();
    fwd_parser_destroy(p);
    printf("{\"jansson_ns\": %.0f, \"fwdlog_ns\": %.0f, \"fields\": %zu}\n", (t1 - t0) / (double)n,
           (t2 - t1) / (double)n, fields / (size_t)n / 2);
    return 0;
}
