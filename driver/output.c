/*
 * output.c - aggregator connections, batches and the send queue.
 *
 * States of a destination:
 *   IDLE -> (data queued) RESOLVING -> CONNECTING -> CONNECTED
 *   any failure -> BACKOFF -> RESOLVING ...
 * Names are resolved again on every connect (an aggregator that moves is
 * found again) with getaddrinfo_a, polled from a timer so the loop never
 * blocks; numeric addresses skip it. Every resolved address is tried in
 * order before a connect counts as failed. Back-off is retry_wait * 2^(n-1),
 * capped at FWD_BACKOFF_CAP_MS, with jitter (a random wait in [w/2, w]).
 * After max_retries failures in a row the queue is dropped (counted, logged)
 * and the count starts again.
 *
 * Without acknowledgements a batch counts as delivered once the kernel took
 * all of it. A batch cut off by a lost connection is sent again whole on the
 * next one (the receiver discards a message it could not read to the end).
 *
 * Memory: a destination holds its sealed batches (bounded by buffer_limit,
 * oldest unsent dropped first; the half-written head is never dropped) plus
 * each stream's open batch (bounded by batch_size and sealed within
 * flush_interval). An orphan destination (no streams) is freed once drained.
 */
#define FWD_LOG_MODULE "output"
#include "fwd_output.h"
#include "fwd_buf.h"
#include "fwd_forward.h"
#include "fwd_limits.h"
#include "fwd_log.h"
#include "fwd_time.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <unistd.h>
#include <zlib.h>

#define RESOLVE_POLL_MS 5
#define IOV_BATCHES     32
/* Batches written but not yet acknowledged, at most: bounds what a reconnect resends. */
#define ACK_WINDOW 32
/* Reply bytes buffered while waiting for a whole ack. */
#define REPLY_MAX (64u * 1024u)

enum state {
    S_IDLE = 0,
    S_RESOLVING,
    S_CONNECTING,
    S_TLS,       /* tls://: the TLS handshake is under way */
    S_HANDSHAKE, /* shared key: waiting for HELO, then PONG; nothing else is written */
    S_CONNECTED,
    S_BACKOFF,
};

struct batch {
    struct batch *next;
    struct fwd_buf entries;
    uint32_t count;
    uint8_t *hdr;
    size_t hdr_len;
    uint8_t opt[FWD_FORWARD_OPTIONS_MAX];
    size_t opt_len;
    size_t sent;                           /* bytes of hdr+entries+opt already written */
    char chunk[FWD_FORWARD_CHUNK_LEN + 1]; /* ack mode: the chunk id sent with it */
    uint64_t ack_deadline;                 /* ack mode: when a missing ack fails the link */
};

struct fwd_output {
    struct fwd_outputs *m;
    struct fwd_output *next;
    char *key;
    char label[300]; /* address for log lines */
    struct fwd_config cfg;
    struct fwd_stream *streams;
    /*
     * The queue, oldest first. With acks, the batches before unsent are written and
     * wait for their ack (inflight of them); without, unsent is always qhead.
     */
    struct batch *qhead, *qtail, *unsent;
    unsigned inflight;
    struct fwd_buf reply; /* handshake and acks: bytes of a reply not yet complete */
    struct fwd_helo helo; /* handshake: what the server sent */
    char salt[33];        /* handshake: our PING salt */
    char ping_host[256];  /* handshake: the hostname our PING named */
    bool pinged;          /* handshake: PING sent, waiting for PONG */
    SSL_CTX *tls_ctx;     /* tls://: CA store, client certificate, verification mode */
    SSL *tls;             /* tls://: this connection's session, NULL otherwise */
    size_t qbytes;        /* wire bytes of sealed batches */
    size_t openbytes;     /* entry bytes in the streams' open batches */
    enum state state;
    int fd;
    struct fwd_io io;
    struct fwd_timer timer;
    uint32_t failures;
    uint64_t connected_at;
    uint64_t last_progress;
    struct gaicb gai;
    struct gaicb *gai_list[1];
    struct addrinfo hints;
    char service[8];
    struct addrinfo *ai, *ai_cur;
    bool ai_from_gai;
};

struct fwd_stream {
    struct fwd_output *out;
    struct fwd_stream *next;
    char *tag;
    size_t tag_len;
    uint32_t flush_ms;
    size_t batch_size;
    int refs;
    struct batch *open;
    size_t reserved_from; /* entries.len at fwd_stream_begin */
    struct fwd_timer flush_timer;
};

struct fwd_outputs {
    struct fwd_loop *loop;
    struct fwd_output *outs;
    struct fwd_output_stats st;
};

static void start_connect(struct fwd_output *o);
static void ready(struct fwd_output *o);
static void transport_ready(struct fwd_output *o);
static void tls_start(struct fwd_output *o);
static void tls_step(struct fwd_output *o);
static void handshake_step(struct fwd_output *o);
static const char *tls_error(void);
static bool output_maybe_free(struct fwd_output *o);
static void watch(struct fwd_output *o);
static void arm_conn_timer(struct fwd_output *o);

static void batch_free(struct batch *b)
{
    if (b == NULL)
        return;
    fwd_buf_release(&b->entries);
    free(b->hdr);
    free(b);
}

static size_t batch_wire_len(const struct batch *b)
{
    return b->hdr_len + b->entries.len + b->opt_len;
}

/* ---- queue ---------------------------------------------------------------------------- */

static void queue_pop(struct fwd_output *o)
{
    struct batch *b = o->qhead;

    if (b == o->unsent)
        o->unsent = b->next;
    else
        o->inflight--;
    o->qhead = b->next;
    if (o->qhead == NULL)
        o->qtail = NULL;
    o->qbytes -= batch_wire_len(b);
    batch_free(b);
}

static void drop_batch_after(struct fwd_output *o, struct batch *prev)
{
    struct batch *b = prev ? prev->next : o->qhead;

    o->m->st.records_dropped += b->count;
    o->m->st.batches_dropped++;
    if (prev == NULL) {
        queue_pop(o);
        return;
    }
    if (o->unsent == b)
        o->unsent = b->next;
    prev->next = b->next;
    if (o->qtail == b)
        o->qtail = prev;
    o->qbytes -= batch_wire_len(b);
    batch_free(b);
}

/* The batch before b in the queue, NULL for the head (walks at most the inflight ones). */
static struct batch *before(const struct fwd_output *o, const struct batch *b)
{
    struct batch *p = o->qhead;

    if (p == b)
        return NULL;
    while (p->next != b)
        p = p->next;
    return p;
}

/*
 * Drop the oldest unsent batches until the destination is back under its limit.
 * Never a half-written one (that would corrupt the stream) and never one waiting for
 * its ack (it was delivered as far as anyone knows; the ack decides).
 */
static void enforce_limit(struct fwd_output *o)
{
    uint64_t records = 0, batches = 0;

    while (o->qbytes + o->openbytes > o->cfg.buffer_limit && o->unsent != NULL) {
        struct batch *prev = before(o, o->unsent);

        if (o->unsent->sent > 0) {
            if (o->unsent->next == NULL)
                break;
            prev = o->unsent;
        }
        records += (prev ? prev->next : o->qhead)->count;
        batches++;
        drop_batch_after(o, prev);
    }
    if (batches > 0)
        fwd_log_rl(FWD_LOG_WARN, NULL,
                   "%s: buffer limit of %llu bytes reached (aggregator slow or down): dropped "
                   "the oldest %llu records in %llu batches",
                   o->label, (unsigned long long)o->cfg.buffer_limit, (unsigned long long)records,
                   (unsigned long long)batches);
}

static void drop_queue(struct fwd_output *o, const char *why)
{
    uint64_t records = 0;

    while (o->qhead != NULL) {
        records += o->qhead->count;
        o->m->st.records_dropped += o->qhead->count;
        o->m->st.batches_dropped++;
        queue_pop(o);
    }
    if (records > 0)
        fwd_log(FWD_LOG_ERROR, "%s: dropped %llu queued records: %s", o->label,
                (unsigned long long)records, why);
}

/* ---- connection ------------------------------------------------------------------------ */

static void free_addrinfo(struct fwd_output *o)
{
    if (o->ai != NULL) {
        if (o->ai_from_gai)
            freeaddrinfo(o->ai);
        else
            free(o->ai); /* the one calloc'd unix-socket entry */
    }
    o->ai = o->ai_cur = NULL;
}

static void close_conn(struct fwd_output *o)
{
    if (o->tls != NULL) {
        SSL_free(o->tls);
        o->tls = NULL;
    }
    if (o->fd >= 0) {
        fwd_loop_io_del(o->m->loop, &o->io);
        close(o->fd);
        o->fd = -1;
    }
    /* Resend the cut message whole, and (with acks) everything not acknowledged. */
    for (struct batch *b = o->qhead; b != NULL; b = b->next) {
        b->sent = 0;
        if (b == o->unsent)
            break;
    }
    o->unsent = o->qhead;
    o->inflight = 0;
    fwd_buf_release(&o->reply);
}

static uint64_t backoff_ms(const struct fwd_output *o)
{
    uint64_t w = o->cfg.retry_wait_ms, cap = o->cfg.max_retry_wait_ms;

    for (uint32_t i = 1; i < o->failures && w < cap; i++)
        w *= 2;
    if (w > cap)
        w = cap;
    /* Jitter: spread reconnects of many plugins after an aggregator restart. */
    return w / 2 + (uint64_t)random() % (w / 2 + 1);
}

static void on_timer(struct fwd_timer *t);

static void fail(struct fwd_output *o, const char *what, int err)
{
    uint64_t wait;

    close_conn(o);
    free_addrinfo(o);
    o->failures++;
    o->m->st.connection_failures++;
    if (o->cfg.max_retries != 0 && o->failures > o->cfg.max_retries) {
        drop_queue(o, "fluentd-max-retries reached");
        o->failures = 0;
    } else if (o->cfg.max_retries == 0) {
        drop_queue(o, "fluentd-max-retries is 0");
    }
    wait = backoff_ms(o);
    fwd_log_rl(FWD_LOG_WARN, NULL, "%s: %s: %s; retrying in %llu ms (%zu bytes queued)", o->label,
               what, err ? strerror(err) : "failed", (unsigned long long)wait,
               o->qbytes + o->openbytes);
    o->state = S_BACKOFF;
    fwd_loop_timer_start(o->m->loop, &o->timer, wait, on_timer, o);
}

static void on_io(struct fwd_io *io, uint32_t events);

static void try_next_addr(struct fwd_output *o)
{
    while (o->ai_cur != NULL) {
        struct addrinfo *a = o->ai_cur;
        int fd, rc, one = 1;

        o->ai_cur = a->ai_next;
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd == -1)
            continue;
        if (a->ai_family != AF_UNIX)
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        do {
            rc = connect(fd, a->ai_addr, a->ai_addrlen);
        } while (rc == -1 && errno == EINTR);
        if (rc == -1 && errno != EINPROGRESS && errno != EAGAIN) {
            int e = errno;
            close(fd);
            if (o->ai_cur == NULL) {
                fail(o, "connect", e);
                return;
            }
            continue;
        }
        o->fd = fd;
        if (fwd_loop_io_add(o->m->loop, &o->io, fd, EPOLLOUT, on_io, o) < 0) {
            close(fd);
            o->fd = -1;
            fail(o, "epoll", errno);
            return;
        }
        o->state = S_CONNECTING;
        fwd_loop_timer_start(o->m->loop, &o->timer, FWD_CONNECT_TIMEOUT_MS, on_timer, o);
        return;
    }
    fail(o, "connect", ECONNREFUSED);
}

static void resolved(struct fwd_output *o, int gai_rc)
{
    if (gai_rc != 0) {
        fwd_log_rl(FWD_LOG_WARN, NULL, "%s: cannot resolve %s: %s", o->label, o->cfg.addr.host,
                   gai_strerror(gai_rc));
        fail(o, "resolve", 0);
        return;
    }
    o->ai_cur = o->ai;
    try_next_addr(o);
}

static void start_connect(struct fwd_output *o)
{
    int rc;

    o->state = S_RESOLVING;
    free_addrinfo(o);
    if (o->cfg.addr.scheme == FWD_ADDR_UNIX) {
        struct addrinfo *a = calloc(1, sizeof(*a) + sizeof(struct sockaddr_un));
        struct sockaddr_un *sun;

        if (a == NULL) {
            fail(o, "connect", ENOMEM);
            return;
        }
        sun = (struct sockaddr_un *)(a + 1);
        sun->sun_family = AF_UNIX;
        memcpy(sun->sun_path, o->cfg.addr.path, strlen(o->cfg.addr.path) + 1);
        a->ai_family = AF_UNIX;
        a->ai_socktype = SOCK_STREAM;
        a->ai_addr = (struct sockaddr *)sun;
        a->ai_addrlen = sizeof(*sun);
        o->ai = a;
        o->ai_from_gai = false;
        o->ai_cur = a;
        try_next_addr(o);
        return;
    }
    memset(&o->hints, 0, sizeof(o->hints));
    o->hints.ai_family = AF_UNSPEC;
    o->hints.ai_socktype = SOCK_STREAM;
    o->hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    snprintf(o->service, sizeof(o->service), "%u", o->cfg.addr.port);
    o->ai_from_gai = true;
    rc = getaddrinfo(o->cfg.addr.host, o->service, &o->hints, &o->ai);
    if (rc == 0) {
        resolved(o, 0);
        return;
    }
    /* A name: resolve in glibc's resolver thread and poll for the answer. */
    o->hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
    memset(&o->gai, 0, sizeof(o->gai));
    o->gai.ar_name = o->cfg.addr.host;
    o->gai.ar_service = o->service;
    o->gai.ar_request = &o->hints;
    o->gai_list[0] = &o->gai;
    rc = getaddrinfo_a(GAI_NOWAIT, o->gai_list, 1, NULL);
    if (rc != 0) {
        resolved(o, rc);
        return;
    }
    fwd_loop_timer_start(o->m->loop, &o->timer, 0, on_timer, o);
}

static void connected(struct fwd_output *o)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(o->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
        err = errno;
    if (err != 0) {
        fwd_loop_io_del(o->m->loop, &o->io);
        close(o->fd);
        o->fd = -1;
        if (o->ai_cur != NULL) {
            try_next_addr(o);
            return;
        }
        fail(o, "connect", err);
        return;
    }
    free_addrinfo(o);
    if (o->tls_ctx != NULL) {
        tls_start(o);
        return;
    }
    transport_ready(o);
}

/* TCP (and TLS) are up: the shared-key handshake, if any, then records. */
static void transport_ready(struct fwd_output *o)
{
    if (o->cfg.shared_key[0]) {
        /* The server speaks first (HELO); no data goes out before a verified PONG. */
        o->state = S_HANDSHAKE;
        o->pinged = false;
        fwd_loop_io_mod(o->m->loop, &o->io, EPOLLIN | EPOLLRDHUP);
        fwd_loop_timer_start(o->m->loop, &o->timer, FWD_CONNECT_TIMEOUT_MS, on_timer, o);
        return;
    }
    ready(o);
}

/* The connection may carry records now. */
static void ready(struct fwd_output *o)
{
    fwd_loop_timer_stop(o->m->loop, &o->timer);
    if (o->failures > 0)
        fwd_log(FWD_LOG_INFO, "%s: connected after %u failed attempts", o->label, o->failures);
    else
        fwd_log(FWD_LOG_DEBUG, "%s: connected", o->label);
    o->failures = 0;
    o->state = S_CONNECTED;
    o->connected_at = fwd_loop_now(o->m->loop);
    o->last_progress = o->connected_at;
    o->m->st.connects++;
    watch(o);
    arm_conn_timer(o);
}

/* ---- transport: plain sockets or TLS ------------------------------------------------ */

/* read(2) or SSL_read: >0 bytes, 0 at the peer's close, -1 with errno (EAGAIN: later). */
static ssize_t conn_read(struct fwd_output *o, void *buf, size_t n)
{
    int r, e;

    if (o->tls == NULL)
        return read(o->fd, buf, n);
    /* SSL_ERROR_SYSCALL reports through errno: a stale EAGAIN must not survive into it. */
    ERR_clear_error();
    errno = 0;
    r = SSL_read(o->tls, buf, n > INT_MAX ? INT_MAX : (int)n);
    if (r > 0)
        return r;
    e = SSL_get_error(o->tls, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        errno = EAGAIN;
        return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN ||
        (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && (errno == 0 || errno == ECONNRESET)))
        return 0; /* close_notify, or the peer just went away */
    errno = e == SSL_ERROR_SYSCALL && errno != 0 ? errno : EPROTO;
    return -1;
}

/* sendmsg(2) or one SSL_write per piece: bytes written, or -1 with errno (EAGAIN: later). */
static ssize_t conn_writev(struct fwd_output *o, const struct msghdr *msg)
{
    ssize_t total = 0;

    if (o->tls == NULL)
        return sendmsg(o->fd, msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    for (size_t i = 0; i < msg->msg_iovlen; i++) {
        size_t len = msg->msg_iov[i].iov_len;
        int r, e;

        ERR_clear_error();
        errno = 0;
        r = SSL_write(o->tls, msg->msg_iov[i].iov_base, len > INT_MAX ? INT_MAX : (int)len);
        if (r > 0) {
            total += r;
            if ((size_t)r < len)
                break;
            continue;
        }
        e = SSL_get_error(o->tls, r);
        if (total > 0)
            break;
        errno = e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? EAGAIN
                : e == SSL_ERROR_SYSCALL && errno != 0                ? errno
                                                                      : EPIPE;
        return -1;
    }
    return total;
}

/* Is s an IPv4 or IPv6 literal (then it is verified as an IP, and sent without SNI)? */
static bool ip_literal(const char *s)
{
    unsigned char b[16];

    return inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1;
}

static void tls_start(struct fwd_output *o)
{
    const char *name = o->cfg.tls_server_name[0] ? o->cfg.tls_server_name : o->cfg.addr.host;

    o->tls = SSL_new(o->tls_ctx);
    if (o->tls == NULL || SSL_set_fd(o->tls, o->fd) != 1) {
        fail(o, "TLS: cannot create a session", ENOMEM);
        return;
    }
    if (!ip_literal(name))
        SSL_set_tlsext_host_name(o->tls, name);
    if (!o->cfg.tls_insecure) {
        /* the certificate must name the aggregator, not just chain to a trusted CA */
        int ok = ip_literal(name) ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(o->tls), name)
                                  : SSL_set1_host(o->tls, name);
        if (ok != 1) {
            fail(o, "TLS: cannot set the name to verify", EINVAL);
            return;
        }
    }
    o->state = S_TLS;
    fwd_loop_timer_start(o->m->loop, &o->timer, FWD_CONNECT_TIMEOUT_MS, on_timer, o);
    tls_step(o);
}

/* Drive SSL_connect; its WANT_READ / WANT_WRITE pick what the loop waits for. */
static void tls_step(struct fwd_output *o)
{
    int r, e;

    ERR_clear_error();
    r = SSL_connect(o->tls);
    if (r == 1) {
        fwd_log(FWD_LOG_DEBUG, "%s: TLS %s established", o->label, SSL_get_version(o->tls));
        transport_ready(o);
        return;
    }
    e = SSL_get_error(o->tls, r);
    if (e == SSL_ERROR_WANT_READ) {
        fwd_loop_io_mod(o->m->loop, &o->io, EPOLLIN | EPOLLRDHUP);
        return;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        fwd_loop_io_mod(o->m->loop, &o->io, EPOLLOUT);
        return;
    }
    {
        long v = SSL_get_verify_result(o->tls);
        char why[400];

        if (v != X509_V_OK)
            snprintf(why, sizeof(why),
                     "TLS: certificate verification failed: %s (check "
                     "fluentd-tls-ca-file and fluentd-tls-server-name)",
                     X509_verify_cert_error_string(v));
        else
            snprintf(why, sizeof(why), "TLS handshake failed: %s", tls_error());
        fwd_log_rl(FWD_LOG_ERROR, NULL, "%s: %s", o->label, why);
        fail(o, "TLS handshake failed", EPROTO);
    }
}

/* ---- writing --------------------------------------------------------------------------- */

static bool ack_mode(const struct fwd_output *o)
{
    return o->cfg.request_ack;
}

/* Batches may be written now (with acks, only while the window has room). */
static bool can_write(const struct fwd_output *o)
{
    return o->unsent != NULL && (!ack_mode(o) || o->inflight < ACK_WINDOW);
}

static void watch(struct fwd_output *o)
{
    fwd_loop_io_mod(o->m->loop, &o->io, EPOLLIN | EPOLLRDHUP | (can_write(o) ? EPOLLOUT : 0));
}

/* While connected, the timer is the earlier of the write and the ack deadline. */
static void arm_conn_timer(struct fwd_output *o)
{
    uint64_t d = 0;

    if (o->cfg.write_timeout_ms != 0 && can_write(o))
        d = o->last_progress + FWD_MS_TO_NS(o->cfg.write_timeout_ms);
    if (o->inflight > 0 && (d == 0 || o->qhead->ack_deadline < d))
        d = o->qhead->ack_deadline;
    if (d == 0)
        fwd_loop_timer_stop(o->m->loop, &o->timer);
    else
        fwd_loop_timer_at(o->m->loop, &o->timer, d, on_timer, o);
}

static uint64_t ack_timeout_ms(const struct fwd_output *o)
{
    return o->cfg.read_timeout_ms ? o->cfg.read_timeout_ms : FWD_DEFAULT_ACK_TIMEOUT_MS;
}

static void delivered(struct fwd_output *o)
{
    o->m->st.records_sent += o->qhead->count;
    o->m->st.batches_sent++;
    queue_pop(o);
}

/* Account n written bytes against the batches from unsent on. */
static void advance(struct fwd_output *o, size_t n)
{
    while (n > 0 && o->unsent != NULL) {
        struct batch *b = o->unsent;
        size_t left = batch_wire_len(b) - b->sent;

        if (n < left) {
            b->sent += n;
            return;
        }
        n -= left;
        if (!ack_mode(o)) {
            delivered(o); /* without acks, written is as delivered as it gets */
            continue;
        }
        b->sent += left;
        b->ack_deadline = fwd_loop_now(o->m->loop) + FWD_MS_TO_NS(ack_timeout_ms(o));
        o->unsent = b->next;
        o->inflight++;
    }
}

static void add_iov(struct iovec *iov, int *niov, const uint8_t *p, size_t len, size_t *skip)
{
    if (*skip >= len) {
        *skip -= len;
        return;
    }
    iov[*niov].iov_base = (void *)(p + *skip);
    iov[*niov].iov_len = len - *skip;
    (*niov)++;
    *skip = 0;
}

static void do_write(struct fwd_output *o)
{
    size_t budget = FWD_WRITE_PER_WAKEUP;

    while (can_write(o) && budget > 0) {
        struct iovec iov[IOV_BATCHES * 3];
        struct msghdr msg = {.msg_iov = iov};
        unsigned window = ack_mode(o) ? ACK_WINDOW - o->inflight : IOV_BATCHES;
        int niov = 0;
        ssize_t n;

        if (o->cfg.reconnect_interval_ms && o->inflight == 0 && o->unsent->sent == 0 &&
            fwd_loop_now(o->m->loop) - o->connected_at >=
                FWD_MS_TO_NS(o->cfg.reconnect_interval_ms)) {
            /* fluentd-async-reconnect-interval: reconnect (and re-resolve) between messages. */
            close_conn(o);
            start_connect(o);
            return;
        }
        /* A batch adds up to three iovecs (fewer for the half-written one): room for
         * three must be left before each one. */
        for (struct batch *b = o->unsent; b != NULL && niov + 3 <= IOV_BATCHES * 3 && window > 0;
             b = b->next, window--) {
            size_t skip = b->sent;

            add_iov(iov, &niov, b->hdr, b->hdr_len, &skip);
            add_iov(iov, &niov, b->entries.data, b->entries.len, &skip);
            add_iov(iov, &niov, b->opt, b->opt_len, &skip);
        }
        msg.msg_iovlen = (size_t)niov;
        n = conn_writev(o, &msg);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            fail(o, "write", errno);
            return;
        }
        o->m->st.bytes_sent += (uint64_t)n;
        o->last_progress = fwd_loop_now(o->m->loop);
        advance(o, (size_t)n);
        budget = (size_t)n >= budget ? 0 : budget - (size_t)n;
    }
    watch(o);
    arm_conn_timer(o);
    if (o->qhead == NULL)
        output_maybe_free(o);
}

/*
 * Match the replies buffered so far against the batches waiting for their ack. The
 * oldest must be acknowledged first: an ack that does not match it, or a reply that is
 * not an ack, makes the connection untrustworthy (Fluentd #4057: acks offset by one on
 * a reused socket), so it is discarded and everything unacknowledged is sent again.
 * Returns 0, or -1 after failing the connection.
 */
static int take_acks(struct fwd_output *o)
{
    size_t off = 0;

    while (off < o->reply.len) {
        char id[FWD_FORWARD_ACK_MAX + 1];
        size_t used, idlen;
        int r = fwd_forward_parse_ack(o->reply.data + off, o->reply.len - off, &used, id, &idlen);

        if (r == 0)
            break;
        if (r < 0) {
            fail(o, "aggregator sent something that is not an ack", EPROTO);
            return -1;
        }
        off += used;
        if (o->inflight == 0 || idlen != FWD_FORWARD_CHUNK_LEN ||
            memcmp(id, o->qhead->chunk, FWD_FORWARD_CHUNK_LEN) != 0) {
            fail(o, "ack does not match the oldest unacknowledged batch", EPROTO);
            return -1;
        }
        delivered(o);
    }
    fwd_buf_consume(&o->reply, off);
    if (o->reply.len == REPLY_MAX) {
        fail(o, "aggregator reply too long", EPROTO);
        return -1;
    }
    return 0;
}

/* Read replies. Returns 0 while connected, -1 if the connection failed or o was freed. */
static int do_read(struct fwd_output *o)
{
    for (;;) {
        char buf[4096];
        ssize_t n = conn_read(o, buf, sizeof(buf));

        if (n > 0) {
            if (o->state != S_HANDSHAKE && !ack_mode(o))
                continue; /* no acks requested: nothing a receiver says matters */
            if (fwd_buf_append(&o->reply, buf, (size_t)n) != 0) {
                fail(o, "aggregator reply too long", EPROTO);
                return -1;
            }
            if (o->state == S_HANDSHAKE) {
                handshake_step(o);
                if (o->state == S_HANDSHAKE)
                    continue;
                if (o->state != S_CONNECTED)
                    return -1;
                if (!ack_mode(o)) {
                    fwd_buf_reset(&o->reply);
                    continue;
                }
                /* with acks, what followed the PONG (nothing, normally) is read as acks */
            }
            if (take_acks(o) < 0)
                return -1;
            continue;
        }
        if (n == 0) {
            fail(o,
                 o->state == S_HANDSHAKE ? "connection closed during the handshake (wrong "
                                           "shared key?)"
                                         : "connection closed by aggregator",
                 0);
            return -1;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            fail(o, "read", errno);
            return -1;
        }
        break;
    }
    if (ack_mode(o) && o->state == S_CONNECTED) {
        /* Acks open the window (more may be written) and move the ack deadline. (Not
         * during the handshake: its timer and its read-only interest stand until PONG.) */
        watch(o);
        arm_conn_timer(o);
        if (o->qhead == NULL && output_maybe_free(o))
            return -1;
    }
    return 0;
}

/* The hostname we present in the handshake: fluentd-self-hostname, else the host's. */
static void self_hostname(const struct fwd_output *o, char host[256])
{
    snprintf(host, 256, "%s", o->cfg.self_hostname);
    if (host[0] == '\0' && gethostname(host, 255) == -1)
        snprintf(host, 256, "fwdlog");
}

/* Send the PING for the HELO just parsed. 0, or -1 after failing the connection. */
static int send_ping(struct fwd_output *o)
{
    uint8_t ping[1024];
    size_t n;
    ssize_t w;

    self_hostname(o, o->ping_host);
    if (fwd_forward_salt(o->salt) != 0) {
        fail(o, "handshake: no randomness for the PING salt", EIO);
        return -1;
    }
    n = fwd_forward_ping(ping, sizeof(ping), &o->helo, o->ping_host, o->salt, o->cfg.shared_key,
                         o->cfg.username, o->cfg.password);
    if (n == 0) {
        fail(o, "handshake: cannot build the PING", EIO);
        return -1;
    }
    /* Fluent Bit reads a PING in one go: send it whole, and nothing behind it. */
    {
        struct iovec iov = {.iov_base = ping, .iov_len = n};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};

        w = conn_writev(o, &msg);
    }
    if (w != (ssize_t)n) {
        fail(o, "handshake: PING not written whole", w == -1 ? errno : EAGAIN);
        return -1;
    }
    o->pinged = true;
    return 0;
}

/*
 * Handshake replies (spec v1: HELO, then PONG to our PING). Fluentd answers a wrong key
 * with PONG false; Fluent Bit just closes, which lands in do_read's "closed".
 */
static void handshake_step(struct fwd_output *o)
{
    char why[400];
    struct fwd_pong pong;
    size_t used;
    int r;

    if (!o->pinged) {
        r = fwd_forward_parse_helo(o->reply.data, o->reply.len, &used, &o->helo);
        if (r < 0) {
            fail(o, "handshake: expected HELO (does the aggregator use a shared key?)", EPROTO);
            return;
        }
        if (r == 0)
            goto more;
        fwd_buf_consume(&o->reply, used);
        if (send_ping(o) < 0)
            return;
    }
    r = fwd_forward_parse_pong(o->reply.data, o->reply.len, &used, &pong);
    if (r < 0) {
        fail(o, "handshake: expected PONG", EPROTO);
        return;
    }
    if (r == 0)
        goto more;
    fwd_buf_consume(&o->reply, used);
    /* checked against exactly what the PING said */
    if (fwd_forward_check_pong(&pong, &o->helo, o->ping_host, o->salt, o->cfg.shared_key, why,
                               sizeof(why)) != 0) {
        fwd_log_rl(FWD_LOG_ERROR, NULL, "%s: authentication failed: %s", o->label, why);
        fail(o, "authentication failed", EACCES);
        return;
    }
    fwd_log(FWD_LOG_DEBUG, "%s: authenticated to %s", o->label, pong.host);
    ready(o);
    return;
more:
    if (o->reply.len >= FWD_HANDSHAKE_MSG_MAX)
        fail(o, "handshake: reply too long", EPROTO);
}

static void on_io(struct fwd_io *io, uint32_t events)
{
    struct fwd_output *o = io->ctx;

    if (o->state == S_CONNECTING) {
        connected(o);
        return;
    }
    if (o->state == S_TLS) {
        tls_step(o);
        return;
    }
    if (o->state == S_HANDSHAKE) {
        do_read(o);
        return;
    }
    if (o->state != S_CONNECTED)
        return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        if (do_read(o) < 0)
            return;
    }
    if (events & EPOLLOUT)
        do_write(o);
}

static void on_timer(struct fwd_timer *t)
{
    struct fwd_output *o = t->ctx;
    uint64_t now = fwd_loop_now(o->m->loop);

    switch (o->state) {
        case S_RESOLVING: {
            int rc = gai_error(&o->gai);

            if (rc == EAI_INPROGRESS) {
                fwd_loop_timer_start(o->m->loop, &o->timer, RESOLVE_POLL_MS, on_timer, o);
                return;
            }
            o->ai = o->gai.ar_result;
            o->gai.ar_result = NULL;
            resolved(o, rc);
            return;
        }
        case S_CONNECTING:
            fail(o, "connect", ETIMEDOUT);
            return;
        case S_TLS:
            fail(o, "TLS handshake: no answer in time", ETIMEDOUT);
            return;
        case S_HANDSHAKE:
            fail(o, o->pinged ? "handshake: no PONG in time" : "handshake: no HELO in time",
                 ETIMEDOUT);
            return;
        case S_BACKOFF:
            if (o->qhead == NULL && o->openbytes == 0) {
                o->state = S_IDLE;
                output_maybe_free(o);
                return;
            }
            start_connect(o);
            return;
        case S_CONNECTED:
            if (o->inflight > 0 && now >= o->qhead->ack_deadline) {
                fail(o, "no ack within the ack timeout (fluentd-read-timeout)", ETIMEDOUT);
                return;
            }
            if (o->cfg.write_timeout_ms != 0 && can_write(o) &&
                now - o->last_progress >= FWD_MS_TO_NS(o->cfg.write_timeout_ms)) {
                fail(o, "write timeout (fluentd-write-timeout)", ETIMEDOUT);
                return;
            }
            arm_conn_timer(o);
            return;
        default:
            return;
    }
}

/* New data is queued: get it moving. */
static void kick(struct fwd_output *o)
{
    if (o->state == S_IDLE)
        start_connect(o);
    else if (o->state == S_CONNECTED) {
        watch(o);
        if (!fwd_timer_armed(&o->timer))
            arm_conn_timer(o);
    }
}

/* ---- destinations and streams ----------------------------------------------------------- */

static void output_destroy(struct fwd_output *o)
{
    struct fwd_output **pp;

    for (pp = &o->m->outs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == o) {
            *pp = o->next;
            break;
        }
    }
    fwd_loop_timer_stop(o->m->loop, &o->timer);
    if (o->state == S_RESOLVING && gai_cancel(&o->gai) == EAI_NOTCANCELED) {
        const struct gaicb *l[1] = {&o->gai};
        while (gai_error(&o->gai) == EAI_INPROGRESS)
            gai_suspend(l, 1, NULL);
    }
    if (o->state == S_RESOLVING && o->gai.ar_result != NULL)
        freeaddrinfo(o->gai.ar_result);
    close_conn(o);
    free_addrinfo(o);
    while (o->qhead != NULL)
        queue_pop(o);
    SSL_CTX_free(o->tls_ctx);
    free(o->key);
    free(o);
}

/* Free an orphan destination with nothing left to send. true if it was freed. */
static bool output_maybe_free(struct fwd_output *o)
{
    if (o->streams == NULL && o->qhead == NULL && o->openbytes == 0) {
        output_destroy(o);
        return true;
    }
    return false;
}

/* The last OpenSSL error as text (for messages that name the option at fault). */
static const char *tls_error(void)
{
    static char buf[256];
    unsigned long e = ERR_get_error();

    ERR_clear_error();
    if (e == 0)
        return "unknown error";
    ERR_error_string_n(e, buf, sizeof(buf));
    return buf;
}

/* The TLS context for a tls:// destination. NULL with the reason (naming the option) in err. */
static SSL_CTX *tls_context(const struct fwd_config *c, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    if (ctx == NULL) {
        snprintf(err, errlen, "TLS: %s", tls_error());
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* Batches are written from wherever a short write stopped: partial writes, moving buffer. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (c->tls_ca_file[0] ? SSL_CTX_load_verify_locations(ctx, c->tls_ca_file, NULL) != 1
                          : SSL_CTX_set_default_verify_paths(ctx) != 1) {
        snprintf(err, errlen, "log-opt fluentd-tls-ca-file=\"%s\": cannot load CA certificates: %s",
                 c->tls_ca_file[0] ? c->tls_ca_file : "(system store)", tls_error());
        goto fail;
    }
    if (c->tls_cert_file[0]) {
        if (SSL_CTX_use_certificate_chain_file(ctx, c->tls_cert_file) != 1) {
            snprintf(err, errlen, "log-opt fluentd-tls-cert-file=\"%s\": %s", c->tls_cert_file,
                     tls_error());
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, c->tls_key_file, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            snprintf(err, errlen,
                     "log-opt fluentd-tls-key-file=\"%s\": not the key of the certificate: %s",
                     c->tls_key_file, tls_error());
            goto fail;
        }
    }
    SSL_CTX_set_verify(ctx, c->tls_insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

static struct fwd_output *output_get(struct fwd_outputs *m, const struct fwd_config *cfg, char *err,
                                     size_t errlen)
{
    struct fwd_output *o;
    SSL_CTX *ctx = NULL;

    for (o = m->outs; o != NULL; o = o->next)
        if (strcmp(o->key, cfg->dest_key) == 0)
            return o;
    if (cfg->addr.scheme == FWD_ADDR_TLS && (ctx = tls_context(cfg, err, errlen)) == NULL)
        return NULL;
    o = calloc(1, sizeof(*o));
    if (o == NULL || (o->key = strdup(cfg->dest_key)) == NULL) {
        snprintf(err, errlen, "out of memory");
        SSL_CTX_free(ctx);
        free(o);
        return NULL;
    }
    o->tls_ctx = ctx;
    o->m = m;
    o->cfg = *cfg;
    fwd_buf_init(&o->reply, REPLY_MAX);
    o->cfg.tag = o->cfg.labels = o->cfg.labels_regex = o->cfg.env = o->cfg.env_regex = NULL;
    o->fd = -1;
    if (cfg->addr.scheme == FWD_ADDR_UNIX)
        snprintf(o->label, sizeof(o->label), "unix://%s", cfg->addr.path);
    else
        snprintf(o->label, sizeof(o->label), strchr(cfg->addr.host, ':') ? "[%s]:%u" : "%s:%u",
                 cfg->addr.host, cfg->addr.port);
    o->next = m->outs;
    m->outs = o;
    return o;
}

struct fwd_outputs *fwd_outputs_create(struct fwd_loop *loop)
{
    struct fwd_outputs *m = calloc(1, sizeof(*m));

    if (m != NULL)
        m->loop = loop;
    return m;
}

void fwd_outputs_destroy(struct fwd_outputs *m)
{
    if (m == NULL)
        return;
    while (m->outs != NULL) {
        struct fwd_output *o = m->outs;

        while (o->streams != NULL) {
            struct fwd_stream *s = o->streams;
            o->streams = s->next;
            fwd_loop_timer_stop(m->loop, &s->flush_timer);
            batch_free(s->open);
            free(s->tag);
            free(s);
        }
        o->openbytes = 0;
        output_destroy(o);
    }
    free(m);
}

/*
 * fluentd-compress=gzip: replace the batch's entries by one gzip member (sealed batches
 * are then held compressed, and the buffer limit counts what is really in memory). On
 * failure the batch is lost: counted and logged. 0 or -1.
 */
static int compress_batch(struct fwd_output *o, struct batch *b)
{
    struct fwd_buf gz;

    fwd_buf_init(&gz, SIZE_MAX / 2);
    if (fwd_forward_gzip(b->entries.data, b->entries.len, Z_DEFAULT_COMPRESSION, &gz) != 0) {
        fwd_buf_release(&gz);
        o->m->st.records_dropped += b->count;
        o->m->st.batches_dropped++;
        fwd_log_rl(FWD_LOG_ERROR, NULL, "%s: gzip failed (out of memory): dropped %u records",
                   o->label, b->count);
        return -1;
    }
    fwd_buf_release(&b->entries);
    b->entries = gz;
    return 0;
}

static void seal(struct fwd_stream *s)
{
    struct fwd_output *o = s->out;
    struct batch *b = s->open;

    fwd_loop_timer_stop(o->m->loop, &s->flush_timer);
    if (b == NULL)
        return;
    s->open = NULL;
    o->openbytes -= b->entries.len;
    if (b->count == 0) {
        batch_free(b);
        return;
    }
    if (o->cfg.gzip && compress_batch(o, b) != 0) {
        batch_free(b);
        return;
    }
    b->hdr = malloc(s->tag_len + FWD_FORWARD_HEADER_OVERHEAD);
    if (b->hdr == NULL) {
        o->m->st.records_dropped += b->count;
        o->m->st.batches_dropped++;
        fwd_log_rl(FWD_LOG_ERROR, NULL, "%s: out of memory: dropped %u records", o->label,
                   b->count);
        batch_free(b);
        return;
    }
    b->hdr_len = fwd_forward_packed_header(b->hdr, s->tag_len + FWD_FORWARD_HEADER_OVERHEAD, s->tag,
                                           s->tag_len, b->entries.len);
    if (o->cfg.request_ack && fwd_forward_chunk_id(b->chunk) != 0) {
        /* No randomness (getrandom failed): still unique within this process. */
        static uint64_t seq;
        snprintf(b->chunk, sizeof(b->chunk), "fwdlog%018llu", (unsigned long long)++seq);
    }
    b->opt_len = fwd_forward_packed_options(b->opt, sizeof(b->opt), b->count,
                                            o->cfg.request_ack ? b->chunk : NULL, o->cfg.gzip);
    if (o->qtail != NULL)
        o->qtail->next = b;
    else
        o->qhead = b;
    o->qtail = b;
    if (o->unsent == NULL)
        o->unsent = b;
    o->qbytes += batch_wire_len(b);
    enforce_limit(o);
    kick(o);
}

static void on_flush_timer(struct fwd_timer *t)
{
    seal(t->ctx);
}

struct fwd_stream *fwd_stream_acquire(struct fwd_outputs *m, const struct fwd_config *cfg,
                                      const char *tag, char *err, size_t errlen)
{
    struct fwd_output *o = output_get(m, cfg, err, errlen);
    struct fwd_stream *s;

    if (o == NULL)
        return NULL;
    for (s = o->streams; s != NULL; s = s->next) {
        if (strcmp(s->tag, tag) == 0 && s->flush_ms == cfg->flush_interval_ms &&
            s->batch_size == cfg->batch_size) {
            s->refs++;
            return s;
        }
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL || (s->tag = strdup(tag)) == NULL) {
        snprintf(err, errlen, "out of memory");
        free(s);
        output_maybe_free(o);
        return NULL;
    }
    s->out = o;
    s->tag_len = strlen(tag);
    s->flush_ms = cfg->flush_interval_ms;
    s->batch_size = cfg->batch_size;
    s->refs = 1;
    s->next = o->streams;
    o->streams = s;
    return s;
}

void fwd_stream_release(struct fwd_stream *s)
{
    struct fwd_output *o;
    struct fwd_stream **pp;

    if (s == NULL || --s->refs > 0)
        return;
    o = s->out;
    seal(s);
    for (pp = &o->streams; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    free(s->tag);
    free(s);
    output_maybe_free(o);
}

int fwd_stream_begin(struct fwd_stream *s, size_t max, msgpack_packer *pk)
{
    struct batch *b = s->open;

    if (b != NULL && b->count > 0 && b->entries.len + max > s->batch_size) {
        seal(s);
        b = NULL;
    }
    if (b == NULL) {
        b = calloc(1, sizeof(*b));
        if (b == NULL)
            return -ENOMEM;
        fwd_buf_init(&b->entries, SIZE_MAX / 2);
        s->open = b;
    }
    if (fwd_buf_reserve(&b->entries, max) != 0)
        return -ENOMEM;
    s->reserved_from = b->entries.len;
    msgpack_packer_init(pk, &b->entries, fwd_buf_msgpack_write_reserved);
    return 0;
}

void fwd_stream_commit(struct fwd_stream *s)
{
    struct batch *b = s->open;

    b->count++;
    s->out->openbytes += b->entries.len - s->reserved_from;
    if (b->entries.len >= s->batch_size) {
        seal(s);
        return;
    }
    if (!fwd_timer_armed(&s->flush_timer))
        fwd_loop_timer_start(s->out->m->loop, &s->flush_timer, s->flush_ms, on_flush_timer, s);
}

void fwd_stream_flush(struct fwd_stream *s)
{
    seal(s);
}

void fwd_outputs_flush_all(struct fwd_outputs *m)
{
    struct fwd_output *o, *next;

    for (o = m->outs; o != NULL; o = next) {
        next = o->next;
        for (struct fwd_stream *s = o->streams; s != NULL; s = s->next)
            seal(s);
    }
}

bool fwd_outputs_idle(const struct fwd_outputs *m)
{
    for (const struct fwd_output *o = m->outs; o != NULL; o = o->next)
        if (o->qhead != NULL || o->openbytes != 0)
            return false;
    return true;
}

void fwd_outputs_stats(const struct fwd_outputs *m, struct fwd_output_stats *st)
{
    *st = m->st;
    st->queued_bytes = 0;
    st->destinations = 0;
    for (const struct fwd_output *o = m->outs; o != NULL; o = o->next) {
        st->queued_bytes += o->qbytes + o->openbytes;
        st->destinations++;
    }
}
