/*
 * conn.c - one aggregator connection: resolve, connect, TLS, handshake, writes,
 * acks and back-off (see fwd_conn.h).
 */
#define FWD_LOG_MODULE "output"
#include "fwd_conn.h"
#include "fwd_limits.h"
#include "fwd_log.h"
#include "fwd_time.h"
#include "fwd_tls.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

/* A done connection waits this long for the peer's close (closer.c). */
#define CLOSE_WAIT_MS 2000

static void start_connect(struct fwd_conn *c);
static void on_io(struct fwd_io *io, uint32_t events);
static void on_timer(struct fwd_timer *t);

static void addr_label(const struct fwd_addr *a, char *out, size_t n)
{
    if (a->scheme == FWD_ADDR_UNIX)
        snprintf(out, n, "unix://%s", a->path);
    else
        snprintf(out, n, strchr(a->host, ':') ? "%s[%s]:%u" : "%s%s:%u",
                 a->scheme == FWD_ADDR_TLS ? "tls://" : "", a->host, a->port);
}

void fwd_conn_init(struct fwd_conn *c, const struct fwd_conn_env *env, const struct fwd_addr *addr)
{
    memset(c, 0, sizeof(*c));
    c->env = env;
    c->addr = *addr;
    c->fd = -1;
    fwd_buf_init(&c->reply, FWD_CONN_REPLY_MAX);
    addr_label(addr, c->label, sizeof(c->label));
}

/* Set the events the loop waits for; a failed MOD would leave it deaf: counted as a failure. */
static int set_events(struct fwd_conn *c, uint32_t events)
{
    int rc = fwd_loop_io_mod(c->env->loop, &c->io, events);

    if (rc < 0)
        fwd_log_rl(FWD_LOG_ERROR, NULL, "%s: epoll: %s", c->label, strerror(-rc));
    return rc;
}

/* ---- taking batches -------------------------------------------------------------------- */

bool fwd_conn_has_room(const struct fwd_conn *c)
{
    return c->state == FWD_CONN_CONNECTED &&
           c->nq < (conn_ack_mode(c) ? FWD_CONN_ACK_WINDOW : FWD_CONN_LOOKAHEAD);
}

void fwd_conn_take(struct fwd_conn *c, struct fwd_batch *b)
{
    b->next = NULL;
    if (c->qtail != NULL)
        c->qtail->next = b;
    else
        c->qhead = b;
    c->qtail = b;
    if (c->unsent == NULL)
        c->unsent = b;
    c->nq++;
}

void fwd_conn_give_back(struct fwd_conn *c)
{
    for (struct fwd_batch *b = c->qhead; b != NULL; b = b->next)
        b->sent = 0;
    if (c->qhead != NULL)
        fwd_queue_return(c->env->q, c->qhead);
    c->qhead = c->qtail = c->unsent = NULL;
    c->inflight = c->nq = 0;
}

uint64_t fwd_conn_oldest_seq(const struct fwd_conn *c)
{
    return c->qhead != NULL ? c->qhead->seq : UINT64_MAX;
}

/* ---- closing and failing --------------------------------------------------------------- */

static void forget_addrs(struct fwd_conn *c)
{
    fwd_resolve_cancel(c->lookup);
    c->lookup = NULL;
    c->addrs.n = 0;
    c->next_addr = 0;
}

/* Close the connection at once. Its batches go back to the queue, in order. */
static void close_conn(struct fwd_conn *c)
{
    if (c->tls != NULL) {
        SSL_free(c->tls);
        c->tls = NULL;
    }
    if (c->fd >= 0) {
        fwd_loop_io_del(c->env->loop, &c->io);
        close(c->fd);
        c->fd = -1;
    }
    fwd_conn_give_back(c);
    fwd_buf_release(&c->reply);
}

/*
 * The same for a connection that is done rather than failed: the socket and its
 * TLS session go to the closer, so the peer reads everything we sent before it
 * sees our close.
 */
static void close_conn_gracefully(struct fwd_conn *c)
{
    if (c->fd >= 0 && c->state == FWD_CONN_CONNECTED) {
        fwd_loop_io_del(c->env->loop, &c->io);
        fwd_closer_add(c->env->closer, c->fd, c->tls, CLOSE_WAIT_MS);
        c->fd = -1;
        c->tls = NULL;
    }
    close_conn(c);
}

void fwd_conn_destroy(struct fwd_conn *c)
{
    fwd_loop_timer_stop(c->env->loop, &c->timer);
    forget_addrs(c); /* a lookup under way is cancelled, never waited for */
    close_conn_gracefully(c);
}

static uint64_t backoff_ms(const struct fwd_conn *c)
{
    uint64_t w = c->env->cfg->retry_wait_ms, cap = c->env->cfg->max_retry_wait_ms;

    for (uint32_t i = 1; i < c->failures && w < cap; i++)
        w *= 2;
    if (w > cap)
        w = cap;
    /* Jitter: spread reconnects of many plugins after an aggregator restart. */
    return w / 2 + (uint64_t)random() % (w / 2 + 1);
}

/* what failed, and the errno (0: none) that says why, logged at lvl. The owner hears last. */
void conn_fail_at(struct fwd_conn *c, int lvl, const char *what, int err)
{
    uint64_t wait;

    /* the oldest batch on the wire when it failed: refused too often, it is set aside */
    if (c->qhead != NULL && c->qhead->sent > 0)
        c->qhead->attempts++;
    close_conn(c);
    forget_addrs(c);
    c->failures++;
    c->env->st->connection_failures++;
    c->env->q->dc.failures++;
    /* err 0: what says it all ("connection closed by aggregator") */
    snprintf(c->env->q->dc.last_error, sizeof(c->env->q->dc.last_error), "%s: %s%s%s", c->label,
             what, err ? ": " : "", err ? strerror(err) : "");
    wait = backoff_ms(c);
    c->state = FWD_CONN_BACKOFF;
    fwd_loop_timer_start(c->env->loop, &c->timer, wait, on_timer, c);
    /* two call sites, so refusals are not rate-limited away by other failures' lines */
#define FAIL_LINE(l)                                                                               \
    fwd_log_rl(l, NULL, "%s: %s%s%s; retrying in %llu ms (%zu bytes queued)", c->label, what,      \
               err ? ": " : "", err ? strerror(err) : "", (unsigned long long)wait,                \
               c->env->q->qbytes + c->env->q->openbytes)
    if (lvl == FWD_LOG_ERROR)
        FAIL_LINE(FWD_LOG_ERROR);
    else
        FAIL_LINE(FWD_LOG_WARN);
#undef FAIL_LINE
    c->env->ops->failed(c);
}

void conn_fail(struct fwd_conn *c, const char *what, int err)
{
    conn_fail_at(c, FWD_LOG_WARN, what, err);
}

/* ---- connecting ------------------------------------------------------------------------ */

/* TCP options of an aggregator socket: no Nagle, and keepalive to notice a dead peer. */
static void tune_socket(int fd)
{
    int one = 1, idle = FWD_TCP_KEEPIDLE_S;

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
}

/* Connect to the next resolved address; fails the connection when none is left. */
static void try_next_addr(struct fwd_conn *c)
{
    while (c->next_addr < c->addrs.n) {
        const struct fwd_sockaddr *a = &c->addrs.addr[c->next_addr++];
        int family = a->sa.ss_family, fd, rc;

        fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd == -1)
            continue;
        if (family != AF_UNIX)
            tune_socket(fd);
        do {
            rc = connect(fd, (const struct sockaddr *)&a->sa, a->len);
        } while (rc == -1 && errno == EINTR);
        if (rc == -1 && errno != EINPROGRESS && errno != EAGAIN) {
            int e = errno;

            close(fd);
            if (c->next_addr == c->addrs.n) {
                conn_fail(c, "connect", e);
                return;
            }
            continue;
        }
        c->fd = fd;
        rc = fwd_loop_io_add(c->env->loop, &c->io, fd, EPOLLOUT, on_io, c);
        if (rc < 0) {
            close(fd);
            c->fd = -1;
            conn_fail(c, "epoll", -rc);
            return;
        }
        c->state = FWD_CONN_CONNECTING;
        fwd_loop_timer_start(c->env->loop, &c->timer, FWD_CONNECT_TIMEOUT_MS, on_timer, c);
        return;
    }
    conn_fail(c, "connect", ECONNREFUSED);
}

static void resolved(void *ctx, int status, const struct fwd_resolved *res, const char *why)
{
    struct fwd_conn *c = ctx;

    c->lookup = NULL;
    if (status != 0) {
        fwd_log_rl(FWD_LOG_WARN, NULL, "%s: cannot resolve %s: %s", c->label, c->addr.host, why);
        conn_fail(c, "resolve", -status);
        return;
    }
    c->addrs = *res;
    c->next_addr = 0;
    try_next_addr(c);
}

static void start_connect(struct fwd_conn *c)
{
    int rc;

    c->state = FWD_CONN_RESOLVING;
    c->one_request = false;
    forget_addrs(c);
    if (c->addr.scheme == FWD_ADDR_UNIX) {
        struct sockaddr_un *sun = (struct sockaddr_un *)&c->addrs.addr[0].sa;

        memset(sun, 0, sizeof(*sun));
        sun->sun_family = AF_UNIX;
        memcpy(sun->sun_path, c->addr.path, strlen(c->addr.path) + 1);
        c->addrs.addr[0].len = sizeof(*sun);
        c->addrs.n = 1;
        try_next_addr(c);
        return;
    }
    /* names and literals alike answer through resolved(), from the loop */
    rc = fwd_resolve_start(c->env->resolver, c->addr.host, c->addr.port, resolved, c, &c->lookup);
    if (rc < 0)
        conn_fail(c, "resolve", -rc);
}

void fwd_conn_start(struct fwd_conn *c)
{
    if (c->state == FWD_CONN_IDLE)
        start_connect(c);
}

/* ---- the connection's timer and what the loop waits for ---------------------------------- */

/* Batches may be written now (with acks, only while the window has room). */
bool conn_can_write(const struct fwd_conn *c)
{
    return c->unsent != NULL && (!conn_ack_mode(c) || c->inflight < FWD_CONN_ACK_WINDOW) &&
           !(c->one_request && c->written > 0);
}

static int watch(struct fwd_conn *c)
{
    return set_events(c, EPOLLIN | EPOLLRDHUP | (conn_can_write(c) ? EPOLLOUT : 0));
}

/* While connected, the timer is the earlier of the write and the ack deadline. */
static void arm_conn_timer(struct fwd_conn *c)
{
    const struct fwd_config *cfg = c->env->cfg;
    uint64_t d = 0;

    if (cfg->write_timeout_ms != 0 && conn_can_write(c))
        d = c->last_progress + FWD_MS_TO_NS(cfg->write_timeout_ms);
    if (c->inflight > 0 && (d == 0 || c->qhead->ack_deadline < d))
        d = c->qhead->ack_deadline;
    if (d == 0)
        fwd_loop_timer_stop(c->env->loop, &c->timer);
    else
        fwd_loop_timer_at(c->env->loop, &c->timer, d, on_timer, c);
}

/* Wait for what the state asks; 0, or -1 after failing the connection. */
int conn_rewatch(struct fwd_conn *c)
{
    int rc = watch(c);

    if (rc < 0) {
        conn_fail(c, "epoll", -rc);
        return -1;
    }
    arm_conn_timer(c);
    return 0;
}

void fwd_conn_kick(struct fwd_conn *c)
{
    if (watch(c) < 0) {
        conn_fail(c, "epoll", EIO);
        return;
    }
    if (!fwd_timer_armed(&c->timer))
        arm_conn_timer(c);
}

/* The connection may carry records now. */
void conn_ready(struct fwd_conn *c)
{
    fwd_loop_timer_stop(c->env->loop, &c->timer);
    if (c->failures > 0)
        fwd_log(FWD_LOG_INFO, "%s: connected after %u failed attempts", c->label, c->failures);
    else
        fwd_log(FWD_LOG_DEBUG, "%s: connected", c->label);
    c->failures = 0;
    c->written = 0;
    c->state = FWD_CONN_CONNECTED;
    c->connected_at = fwd_loop_now(c->env->loop);
    c->last_progress = c->connected_at;
    c->env->st->connects++;
    c->env->q->dc.connects++;
    c->env->ops->ready(c);
    if (c->state == FWD_CONN_CONNECTED)
        conn_rewatch(c);
}

/* TCP (and TLS) are up: the shared-key handshake, if any, then records. */
static void transport_ready(struct fwd_conn *c)
{
    const struct fwd_config *cfg = c->env->cfg;

    if (cfg->shared_key[0] == '\0') {
        conn_ready(c);
        return;
    }
    /* The server speaks first (HELO); no data goes out before a verified PONG. */
    c->state = FWD_CONN_HANDSHAKE;
    fwd_handshake_init(&c->hs, cfg->shared_key, cfg->username, cfg->password, cfg->self_hostname);
    if (set_events(c, EPOLLIN | EPOLLRDHUP) < 0) {
        conn_fail(c, "epoll", EIO);
        return;
    }
    fwd_loop_timer_start(c->env->loop, &c->timer, FWD_CONNECT_TIMEOUT_MS, on_timer, c);
}

/* Drive SSL_connect; its WANT_READ / WANT_WRITE pick what the loop waits for. */
static void tls_step(struct fwd_conn *c)
{
    char why[400];
    uint32_t events = 0;
    int rc = fwd_tls_handshake(c->tls, &events, why, sizeof(why));

    if (rc == 0) {
        fwd_log(FWD_LOG_DEBUG, "%s: TLS %s established", c->label, SSL_get_version(c->tls));
        transport_ready(c);
        return;
    }
    if (rc == -EAGAIN) {
        if (set_events(c, events) < 0)
            conn_fail(c, "epoll", EIO);
        return;
    }
    fwd_log_rl(FWD_LOG_ERROR, NULL, "%s: %s", c->label, why);
    conn_fail(c, "TLS handshake failed", EPROTO);
}

static void tls_start(struct fwd_conn *c)
{
    const struct fwd_config *cfg = c->env->cfg;
    const char *name = cfg->tls_server_name[0] ? cfg->tls_server_name : c->addr.host;
    char why[200];

    c->tls = fwd_tls_session(c->env->tls_ctx, c->fd, name, cfg->tls_insecure, why, sizeof(why));
    if (c->tls == NULL) {
        conn_fail(c, why, EINVAL);
        return;
    }
    c->state = FWD_CONN_TLS;
    fwd_loop_timer_start(c->env->loop, &c->timer, FWD_CONNECT_TIMEOUT_MS, on_timer, c);
    tls_step(c);
}

static void connected(struct fwd_conn *c)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
        err = errno;
    if (err != 0) {
        fwd_loop_io_del(c->env->loop, &c->io);
        close(c->fd);
        c->fd = -1;
        if (c->next_addr < c->addrs.n) {
            try_next_addr(c);
            return;
        }
        conn_fail(c, "connect", err);
        return;
    }
    forget_addrs(c);
    if (c->env->tls_ctx != NULL) {
        tls_start(c);
        return;
    }
    transport_ready(c);
}

/* ---- reconnects and the handshake ------------------------------------------------------- */

/*
 * Reconnect between requests: fluentd-async-reconnect-interval, or a server whose HELO
 * said keepalive=false once its one request is done. The old connection is closed
 * gracefully; another aggregator takes what is queued meanwhile, if one is up.
 */
void conn_reconnect(struct fwd_conn *c)
{
    close_conn_gracefully(c);
    start_connect(c);
    c->env->ops->take_more(c);
}

/* Send a PING whole (Fluent Bit reads it in one go). 0, or -1 after failing. */
static int send_whole(struct fwd_conn *c, const uint8_t *p, size_t len)
{
    struct iovec iov = {.iov_base = (void *)p, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    ssize_t w = fwd_transport_writev(c->fd, c->tls, &msg);

    if (w != (ssize_t)len) {
        conn_fail(c, "handshake: PING not written whole", w == -1 ? errno : EAGAIN);
        return -1;
    }
    return 0;
}

/* Feed the handshake what was read; it ends in conn_ready() or conn_fail(). */
void conn_handshake_step(struct fwd_conn *c)
{
    for (;;) {
        uint8_t ping[FWD_HANDSHAKE_PING_MAX];
        char why[512];
        size_t used, len;
        int r = fwd_handshake_feed(&c->hs, c->reply.data, c->reply.len, &used, ping, &len, why,
                                   sizeof(why));

        if (r < 0) {
            /* One line: why says it all. A refusal is an error (a retry will not fix it). */
            if (r == -EACCES)
                conn_fail_at(c, FWD_LOG_ERROR, why, 0);
            else
                conn_fail(c, why, -r);
            return;
        }
        fwd_buf_consume(&c->reply, used);
        if (r == FWD_HANDSHAKE_MORE)
            return;
        if (r == FWD_HANDSHAKE_DONE) {
            fwd_log(FWD_LOG_DEBUG, "%s: authenticated to %s%s", c->label, c->hs.peer,
                    c->hs.helo.keepalive ? "" : " (keepalive false: one request per connection)");
            c->one_request = !c->hs.helo.keepalive;
            conn_ready(c);
            return;
        }
        if (send_whole(c, ping, len) < 0)
            return;
    }
}

/* The state as the metrics name it (TLS counts as the handshake). */
enum fwd_output_conn_state fwd_conn_output_state(const struct fwd_conn *c)
{
    switch (c->state) {
        case FWD_CONN_RESOLVING:
            return FWD_OUTPUT_RESOLVING;
        case FWD_CONN_CONNECTING:
            return FWD_OUTPUT_CONNECTING;
        case FWD_CONN_TLS:
        case FWD_CONN_HANDSHAKE:
            return FWD_OUTPUT_HANDSHAKE;
        case FWD_CONN_CONNECTED:
            return FWD_OUTPUT_CONNECTED;
        case FWD_CONN_BACKOFF:
            return FWD_OUTPUT_BACKOFF;
        default:
            return FWD_OUTPUT_IDLE;
    }
}

/* ---- loop callbacks -------------------------------------------------------------------- */

static void on_io(struct fwd_io *io, uint32_t events)
{
    struct fwd_conn *c = io->ctx;

    switch (c->state) {
        case FWD_CONN_CONNECTING:
            connected(c);
            return;
        case FWD_CONN_TLS:
            tls_step(c);
            return;
        case FWD_CONN_HANDSHAKE:
            conn_do_read(c);
            return;
        case FWD_CONN_CONNECTED:
            if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) && conn_do_read(c) < 0)
                return;
            if (events & EPOLLOUT)
                conn_do_write(c);
            return;
        default:
            return;
    }
}

/* CONNECTED: an ack or a write overdue fails the connection. */
static void check_deadlines(struct fwd_conn *c)
{
    uint64_t now = fwd_loop_now(c->env->loop), wt = c->env->cfg->write_timeout_ms;

    if (c->inflight > 0 && now >= c->qhead->ack_deadline) {
        conn_fail(c, "no ack within the ack timeout (fluentd-read-timeout)", ETIMEDOUT);
        return;
    }
    if (wt != 0 && conn_can_write(c) && now - c->last_progress >= FWD_MS_TO_NS(wt)) {
        conn_fail(c, "write timeout (fluentd-write-timeout)", ETIMEDOUT);
        return;
    }
    arm_conn_timer(c);
}

static void on_timer(struct fwd_timer *t)
{
    struct fwd_conn *c = t->ctx;

    switch (c->state) {
        case FWD_CONN_CONNECTING:
            conn_fail(c, "connect", ETIMEDOUT);
            return;
        case FWD_CONN_TLS:
            conn_fail(c, "TLS handshake: no answer in time", ETIMEDOUT);
            return;
        case FWD_CONN_HANDSHAKE:
            conn_fail(c, c->hs.pinged ? "handshake: no PONG in time" : "handshake: no HELO in time",
                      ETIMEDOUT);
            return;
        case FWD_CONN_BACKOFF:
            if (!c->env->ops->has_data(c)) {
                c->state = FWD_CONN_IDLE;
                c->env->ops->maybe_done(c);
                return;
            }
            start_connect(c); /* also how a failed aggregator is probed, to rejoin */
            return;
        case FWD_CONN_CONNECTED:
            check_deadlines(c);
            return;
        default:
            return;
    }
}
