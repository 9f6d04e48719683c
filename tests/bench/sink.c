/*
 * sink - a counting Forward receiver for the benchmarks, written from the
 * Forward protocol v1 spec (not from fwdlog's sender): Message, Forward,
 * PackedForward and CompressedPackedForward (gzip, concatenated members) on
 * any number of connections, answering {"ack": chunk} when asked. It counts
 * events and, with --latency, reads lines that start with "@<19 digits>" (a
 * CLOCK_REALTIME send time in ns) and reports the delay to their arrival.
 *
 *   sink --port P --stats FILE [--latency]
 *
 * Prints "LISTENING <port>" once bound (port 0 picks one). Every 10 ms it
 * rewrites FILE with {"events": N, "last_ns": T, "errors": E} (T: realtime of
 * the last arrival); on SIGTERM it adds the latency percentiles and exits.
 * 127.0.0.1 only.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <msgpack.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define MAX_CONNS   1024
#define MAX_SAMPLES (4u << 20)

static uint64_t events, errors, last_ns;
static bool want_latency;
static uint64_t *samples;
static size_t nsamples;
static volatile sig_atomic_t stop;
static const char *stats_path;

struct conn {
    int fd;
    msgpack_unpacker up;
};

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool str_eq(const msgpack_object *o, const char *s)
{
    size_t n = strlen(s);

    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
           memcmp(o->via.str.ptr, s, n) == 0;
}

/* One event's record: count it, and with --latency look at its "log". */
static void event(const msgpack_object *ev, uint64_t t)
{
    events++;
    last_ns = t;
    if (!want_latency)
        return;
    if (ev->type != MSGPACK_OBJECT_ARRAY || ev->via.array.size < 2 ||
        ev->via.array.ptr[1].type != MSGPACK_OBJECT_MAP)
        return;
    for (uint32_t i = 0; i < ev->via.array.ptr[1].via.map.size; i++) {
        const msgpack_object_kv *kv = &ev->via.array.ptr[1].via.map.ptr[i];
        uint64_t sent = 0;

        if (!str_eq(&kv->key, "log") || kv->val.type != MSGPACK_OBJECT_STR ||
            kv->val.via.str.size < 20 || kv->val.via.str.ptr[0] != '@')
            continue;
        for (int d = 1; d < 20; d++)
            sent = sent * 10 + (uint64_t)(kv->val.via.str.ptr[d] - '0');
        if (nsamples < MAX_SAMPLES && t > sent)
            samples[nsamples++] = t - sent;
    }
}

/* Count the events packed in buf (a PackedForward stream of [time, record] arrays). */
static void packed(const char *buf, size_t len, uint64_t t)
{
    msgpack_unpacked u;
    size_t off = 0;

    msgpack_unpacked_init(&u);
    while (off < len) {
        msgpack_unpack_return r = msgpack_unpack_next(&u, buf, len, &off);

        if (r != MSGPACK_UNPACK_SUCCESS) {
            errors++;
            break;
        }
        event(&u.data, t);
    }
    msgpack_unpacked_destroy(&u);
}

/* gunzip every member of a CompressedPackedForward body, then count. */
static void compressed(const char *buf, size_t len, uint64_t t)
{
    z_stream z;
    size_t cap = len * 8 + 4096, out = 0;
    char *dst = malloc(cap);
    int r = Z_OK;

    memset(&z, 0, sizeof(z));
    if (dst == NULL || inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) {
        errors++;
        free(dst);
        return;
    }
    z.next_in = (Bytef *)buf;
    z.avail_in = (uInt)len;
    while (z.avail_in > 0) {
        if (out == cap) {
            char *n = realloc(dst, cap *= 2);
            if (n == NULL)
                break;
            dst = n;
        }
        z.next_out = (Bytef *)dst + out;
        z.avail_out = (uInt)(cap - out);
        r = inflate(&z, Z_NO_FLUSH);
        out = cap - z.avail_out;
        if (r == Z_STREAM_END && z.avail_in > 0)
            inflateReset(&z); /* the next member */
        else if (r != Z_OK && r != Z_STREAM_END && r != Z_BUF_ERROR)
            break;
    }
    if (r != Z_OK && r != Z_STREAM_END)
        errors++;
    inflateEnd(&z);
    packed(dst, out, t);
    free(dst);
}

static void message(struct conn *c, const msgpack_object *m)
{
    uint64_t t = now_ns();
    const msgpack_object *opt = NULL;

    if (m->type != MSGPACK_OBJECT_ARRAY || m->via.array.size < 2 ||
        m->via.array.ptr[0].type != MSGPACK_OBJECT_STR) {
        errors++;
        return;
    }
    const msgpack_object *a = m->via.array.ptr;
    uint32_t n = m->via.array.size;

    if (a[1].type == MSGPACK_OBJECT_ARRAY) { /* Forward */
        for (uint32_t i = 0; i < a[1].via.array.size; i++)
            event(&a[1].via.array.ptr[i], t);
        opt = n > 2 ? &a[2] : NULL;
    } else if (a[1].type == MSGPACK_OBJECT_BIN || a[1].type == MSGPACK_OBJECT_STR) {
        bool gz = false;
        const char *p = a[1].type == MSGPACK_OBJECT_BIN ? a[1].via.bin.ptr : a[1].via.str.ptr;
        size_t len = a[1].type == MSGPACK_OBJECT_BIN ? a[1].via.bin.size : a[1].via.str.size;

        opt = n > 2 ? &a[2] : NULL;
        if (opt != NULL && opt->type == MSGPACK_OBJECT_MAP)
            for (uint32_t i = 0; i < opt->via.map.size; i++)
                if (str_eq(&opt->via.map.ptr[i].key, "compressed") &&
                    str_eq(&opt->via.map.ptr[i].val, "gzip"))
                    gz = true;
        if (gz)
            compressed(p, len, t);
        else
            packed(p, len, t);
    } else { /* Message: [tag, time, record, option?] */
        msgpack_object ev[2] = {a[1], n > 2 ? a[2] : a[1]};
        msgpack_object arr = {.type = MSGPACK_OBJECT_ARRAY, .via.array = {2, ev}};

        event(&arr, t);
        opt = n > 3 ? &a[3] : NULL;
    }
    if (opt != NULL && opt->type == MSGPACK_OBJECT_MAP) {
        for (uint32_t i = 0; i < opt->via.map.size; i++) {
            const msgpack_object_kv *kv = &opt->via.map.ptr[i];

            if (str_eq(&kv->key, "chunk") && kv->val.type == MSGPACK_OBJECT_STR) {
                msgpack_sbuffer sb;
                msgpack_packer pk;

                msgpack_sbuffer_init(&sb);
                msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
                msgpack_pack_map(&pk, 1);
                msgpack_pack_str_with_body(&pk, "ack", 3);
                msgpack_pack_str_with_body(&pk, kv->val.via.str.ptr, kv->val.via.str.size);
                if (write(c->fd, sb.data, sb.size) != (ssize_t)sb.size)
                    errors++; /* acks are tiny: a short write means a dead peer */
                msgpack_sbuffer_destroy(&sb);
            }
        }
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static void write_stats(bool final)
{
    char tmp[4200];
    FILE *f;

    snprintf(tmp, sizeof(tmp), "%s.tmp", stats_path);
    f = fopen(tmp, "w");
    if (f == NULL)
        return;
    fprintf(f, "{\"events\": %llu, \"last_ns\": %llu, \"errors\": %llu", (unsigned long long)events,
            (unsigned long long)last_ns, (unsigned long long)errors);
    if (final && nsamples > 0) {
        qsort(samples, nsamples, sizeof(*samples), cmp_u64);
        fprintf(f,
                ", \"latency_samples\": %zu, \"p50_ns\": %llu, \"p99_ns\": %llu, \"max_ns\": %llu",
                nsamples, (unsigned long long)samples[nsamples / 2],
                (unsigned long long)samples[nsamples * 99 / 100],
                (unsigned long long)samples[nsamples - 1]);
    }
    fprintf(f, "}\n");
    fclose(f);
    rename(tmp, stats_path);
}

static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

int main(int argc, char **argv)
{
    int port = 0, lfd, ep, tfd, one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof(sa);
    struct epoll_event ev;
    struct itimerspec its = {{0, 10000000}, {0, 10000000}};

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
            port = atoi(argv[++i]);
        else if (strcmp(argv[i], "--stats") == 0 && i + 1 < argc)
            stats_path = argv[++i];
        else if (strcmp(argv[i], "--latency") == 0)
            want_latency = true;
        else {
            fprintf(stderr, "usage: sink --port P --stats FILE [--latency]\n");
            return 2;
        }
    }
    if (stats_path == NULL) {
        fprintf(stderr, "sink: --stats FILE is required\n");
        return 2;
    }
    if (want_latency && (samples = malloc(MAX_SAMPLES * sizeof(*samples))) == NULL)
        return 1;
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    signal(SIGPIPE, SIG_IGN);
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)port);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 128) != 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &sl) != 0) {
        perror("sink: bind");
        return 1;
    }
    printf("LISTENING %d\n", ntohs(sa.sin_port));
    fflush(stdout);
    ep = epoll_create1(EPOLL_CLOEXEC);
    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    timerfd_settime(tfd, 0, &its, NULL);
    ev.events = EPOLLIN;
    ev.data.ptr = NULL;
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    ev.data.ptr = &tfd;
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
    write_stats(false);
    while (!stop) {
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, 100);

        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;

            if (c == NULL) {
                int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

                if (fd < 0)
                    continue;
                c = calloc(1, sizeof(*c));
                c->fd = fd;
                msgpack_unpacker_init(&c->up, 1 << 20);
                ev.events = EPOLLIN;
                ev.data.ptr = c;
                epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                continue;
            }
            if ((void *)c == (void *)&tfd) {
                uint64_t x;
                if (read(tfd, &x, sizeof(x)) > 0)
                    write_stats(false);
                continue;
            }
            for (;;) {
                ssize_t r;
                msgpack_unpacked u;

                if (msgpack_unpacker_buffer_capacity(&c->up) < 256 * 1024 &&
                    !msgpack_unpacker_reserve_buffer(&c->up, 256 * 1024))
                    break;
                r = read(c->fd, msgpack_unpacker_buffer(&c->up), 256 * 1024);
                if (r <= 0) {
                    if (r == -1 && errno == EINTR)
                        continue;
                    if (r == 0 || errno != EAGAIN) {
                        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                        close(c->fd);
                        msgpack_unpacker_destroy(&c->up);
                        free(c);
                    }
                    break;
                }
                msgpack_unpacker_buffer_consumed(&c->up, (size_t)r);
                msgpack_unpacked_init(&u);
                for (;;) {
                    msgpack_unpack_return ur = msgpack_unpacker_next(&c->up, &u);

                    if (ur == MSGPACK_UNPACK_SUCCESS) {
                        message(c, &u.data);
                        continue;
                    }
                    if (ur != MSGPACK_UNPACK_CONTINUE)
                        errors++;
                    break;
                }
                msgpack_unpacked_destroy(&u);
                if (r < 256 * 1024)
                    break;
            }
        }
    }
    write_stats(true);
    return 0;
}
