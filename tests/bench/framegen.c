/*
 * framegen - writes log frames into FIFOs exactly as dockerd does (length-
 * prefixed LogEntry protobuf, lines over 16 KiB split into partial chunks
 * with partial_log_metadata), for the benchmarks.
 *
 *   framegen --lines N --size S [--rate R] [--stamp] [--kind K] FIFO...
 *
 * Every FIFO gets N lines of S bytes (without the newline). --kind picks
 * what the lines say instead (S is then ignored):
 *   json   200-byte JSON objects of 8 fields (strings, integers, a float, a
 *          boolean and a nested object);
 *   java   a Java service log that is 30% stack traces: in every 10 lines,
 *          7 log lines, an exception line and 2 "\tat" frames (8 events);
 *   access access-log lines for a pattern with 4 named groups. As fast as the
 * pipes take them, or R lines per second in all (then one FIFO is usual).
 * --stamp starts every line with "@<19 digits>", its CLOCK_REALTIME send time
 * in ns, for the sink's latency report (frames are then encoded as they are
 * written). Prints {"lines": total, "seconds": elapsed} when done.
 */
#include "fwd_entry.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHUNK     16384 /* moby daemon/logger/copier.go */
#define BLOCK_MAX (256u * 1024u)
#define MAX_FIFOS 1024

struct out {
    int fd;
    uint64_t left; /* lines still to write */
    uint8_t *buf;  /* frames being written */
    size_t len, off;
    uint64_t in_buf; /* lines in buf */
};

static uint64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t real_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void append(uint8_t **buf, size_t *len, size_t *cap, const uint8_t *p, size_t n)
{
    if (*len + n > *cap) {
        *cap = (*len + n) * 2;
        *buf = realloc(*buf, *cap);
        if (*buf == NULL) {
            perror("framegen");
            exit(1);
        }
    }
    memcpy(*buf + *len, p, n);
    *len += n;
}

enum kind {
    K_PLAIN = 0,
    K_JSON,
    K_JAVA,
    K_ACCESS,
};

/* Line i of a --kind into line (room for 512 bytes); its length. */
static size_t content(enum kind k, uint64_t i, uint8_t *line, size_t size)
{
    static const char *const frames[] = {
        "\tat com.example.OrderService.find(OrderService.java:88)",
        "\tat com.example.Api.handle(Api.java:31)",
    };
    unsigned n = (unsigned)(i % 100000);
    int len;

    switch (k) {
        case K_JSON:
            len = snprintf((char *)line, 512,
                           "{\"time\":\"2026-11-24T10:00:00.123Z\",\"level\":\"info\","
                           "\"msg\":\"request handled by the order service\",\"status\":200,"
                           "\"bytes\":%05u,\"latency\":0.01234,\"ok\":true,"
                           "\"req\":{\"method\":\"GET\",\"path\":\"/api/v1/items/%05u\"}}",
                           n, n);
            break;
        case K_JAVA:
            if (i % 10 < 7)
                len = snprintf((char *)line, 512,
                               "2026-11-24 10:00:00.123 INFO  [worker-3] c.e.OrderService - "
                               "processed order %05u in 12 ms",
                               n);
            else if (i % 10 == 7)
                len = snprintf((char *)line, 512,
                               "java.lang.IllegalStateException: order %05u not found in the "
                               "inventory database",
                               n);
            else
                len = snprintf((char *)line, 512, "%s", frames[i % 10 - 8]);
            break;
        case K_ACCESS:
            len = snprintf((char *)line, 512,
                           "10.1.2.3 - GET /api/v1/items/%05u 200 5123 \"curl/8.5.0\"", n);
            break;
        default:
            return size;
    }
    return (size_t)len;
}

/* The frames of one line (several if it is longer than a chunk). */
static void encode_line(uint8_t **buf, size_t *len, size_t *cap, const uint8_t *line, size_t n,
                        uint64_t seq)
{
    char id[65];
    int ordinal = 1;

    snprintf(id, sizeof(id), "%064llx", (unsigned long long)seq + 1);
    for (size_t off = 0; off < n || off == 0; ordinal++) {
        size_t piece = n - off > CHUNK ? CHUNK : n - off;
        struct fwd_entry e = {.source = FWD_SOURCE_STDOUT,
                              .source_str = "stdout",
                              .source_len = 6,
                              .time_nano = (int64_t)real_ns(),
                              .line = line + off,
                              .line_len = piece};
        uint8_t *f;
        size_t flen;

        if (n > CHUNK) {
            e.has_meta = true;
            e.partial = off + piece < n;
            e.last = off + piece == n;
            e.partial_id = id;
            e.partial_id_len = 64;
            e.ordinal = ordinal;
        }
        if (fwd_entry_encode_frame(&e, &f, &flen) != 0) {
            fprintf(stderr, "framegen: out of memory\n");
            exit(1);
        }
        append(buf, len, cap, f, flen);
        free(f);
        off += piece;
        if (n == 0)
            break;
    }
}

int main(int argc, char **argv)
{
    static struct out outs[MAX_FIFOS];
    uint64_t lines = 0, size = 100, rate = 0, total = 0, seq = 0;
    enum kind kind = K_PLAIN;
    bool stamp = false;
    size_t nout = 0, cap = 0, len = 0;
    uint8_t *block = NULL, *line;
    uint64_t block_lines, t0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--lines") == 0 && i + 1 < argc)
            lines = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc)
            size = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--rate") == 0 && i + 1 < argc)
            rate = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--stamp") == 0)
            stamp = true;
        else if (strcmp(argv[i], "--kind") == 0 && i + 1 < argc) {
            i++;
            kind = strcmp(argv[i], "json") == 0     ? K_JSON
                   : strcmp(argv[i], "java") == 0   ? K_JAVA
                   : strcmp(argv[i], "access") == 0 ? K_ACCESS
                                                    : K_PLAIN;
        } else if (argv[i][0] != '-' && nout < MAX_FIFOS) {
            outs[nout].fd = open(argv[i], O_WRONLY | O_NONBLOCK | O_CLOEXEC);
            if (outs[nout].fd < 0) {
                fprintf(stderr, "framegen: %s: %s\n", argv[i], strerror(errno));
                return 1;
            }
            outs[nout++].left = 0;
        } else {
            fprintf(stderr, "usage: framegen --lines N --size S [--rate R] [--stamp] FIFO...\n");
            return 2;
        }
    }
    if (nout == 0 || lines == 0 || size < (stamp ? 20 : 1)) {
        fprintf(stderr, "framegen: need FIFOs, --lines and a --size (>= 20 with --stamp)\n");
        return 2;
    }
    line = malloc(size > 512 ? size : 512);
    for (uint64_t i = 0; i < size; i++)
        line[i] = (uint8_t)('a' + i % 26);
    /* Without stamps every FIFO writes the same block of frames over and over
     * (a whole number of 10-line cycles, so each block has the same events). */
    encode_line(&block, &len, &cap, line, content(kind, 0, line, size), 0);
    /* whole tens of lines (the content kinds cycle by ten), at least ten */
    block_lines = BLOCK_MAX / len >= 10 ? BLOCK_MAX / len / 10 * 10 : 10;
    len = 0;
    for (uint64_t i = 0; i < block_lines; i++)
        encode_line(&block, &len, &cap, line, content(kind, i, line, size), i);
    for (size_t i = 0; i < nout; i++)
        outs[i].left = lines;
    t0 = mono_ns();
    if (rate > 0 || stamp) {
        /* paced (and stamped): every millisecond, the lines now due, to the FIFOs in turn */
        uint8_t *buf = NULL;
        size_t bcap = 0;
        uint64_t due_total = lines * nout, sent = 0;

        while (sent < due_total) {
            uint64_t due = rate ? (mono_ns() - t0) * rate / 1000000000u : due_total;
            size_t blen = 0;

            if (due > due_total)
                due = due_total;
            for (; sent < due && blen < BLOCK_MAX; sent++) {
                if (stamp) {
                    char ts[21];
                    snprintf(ts, sizeof(ts), "@%019llu", (unsigned long long)real_ns());
                    memcpy(line, ts, 20);
                }
                encode_line(&buf, &blen, &bcap, line, size, seq++);
            }
            for (size_t off = 0; off < blen;) {
                ssize_t w = write(outs[sent % nout].fd, buf + off, blen - off);

                if (w > 0)
                    off += (size_t)w;
                else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                    perror("framegen: write");
                    return 1;
                } else {
                    struct pollfd p = {outs[sent % nout].fd, POLLOUT, 0};
                    poll(&p, 1, 100);
                }
            }
            if (rate > 0 && sent < due_total) {
                struct timespec ms = {0, 1000000};
                nanosleep(&ms, NULL);
            }
        }
        total = sent;
    } else {
        size_t active = nout;

        while (active > 0) {
            struct pollfd p[MAX_FIFOS];
            size_t np = 0;

            for (size_t i = 0; i < nout; i++) {
                struct out *o = &outs[i];

                for (;;) {
                    ssize_t w;

                    if (o->off == o->len) {
                        total += o->in_buf;
                        o->in_buf = 0;
                        if (o->left == 0)
                            break;
                        o->in_buf = o->left < block_lines ? o->left : block_lines;
                        o->left -= o->in_buf;
                        o->buf = block;
                        o->off = 0;
                        if (o->in_buf == block_lines)
                            o->len = len;
                        else { /* the last, shorter block: its own frames */
                            size_t c2 = 0;
                            o->buf = NULL;
                            o->len = 0;
                            for (uint64_t k = 0; k < o->in_buf; k++)
                                encode_line(&o->buf, &o->len, &c2, line,
                                            content(kind, k, line, size), k);
                        }
                    }
                    w = write(o->fd, o->buf + o->off, o->len - o->off);
                    if (w > 0) {
                        o->off += (size_t)w;
                        continue;
                    }
                    if (w < 0 && errno != EAGAIN && errno != EINTR) {
                        perror("framegen: write");
                        return 1;
                    }
                    p[np].fd = o->fd;
                    p[np].events = POLLOUT;
                    np++;
                    break;
                }
                if (o->left == 0 && o->off == o->len && o->in_buf == 0 && o->fd >= 0) {
                    close(o->fd);
                    o->fd = -1;
                    active--;
                }
            }
            if (np > 0)
                poll(p, np, 100);
        }
    }
    printf("{\"lines\": %llu, \"seconds\": %.6f}\n", (unsigned long long)total,
           (double)(mono_ns() - t0) / 1e9);
    return 0;
}
