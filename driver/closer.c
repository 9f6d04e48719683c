/*
 * closer.c - connections on their way out: close_notify, FIN, drain, close.
 *
 * Each closing connection walks SHUTDOWN (TLS close_notify, retried while the
 * socket cannot take it) -> DRAIN (write side shut; bytes from the peer are
 * read and dropped) -> DONE (the peer closed, failed, or the deadline passed).
 * A connection is never freed from its own callbacks: DONE ones are collected
 * by the closer's reap timer on the next loop turn. The number of bytes
 * drained per wakeup is capped, so a chatty peer cannot hold the loop.
 */
#include "fwd_closer.h"

#include <errno.h>
#include <openssl/err.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* Bytes drained from one closing connection per wakeup. */
#define DRAIN_PER_WAKEUP (64u * 1024u)

enum close_state {
    C_SHUTDOWN = 0,
    C_DRAIN,
    C_DONE,
};

struct closing {
    struct closing *next;
    struct fwd_closer *c;
    int fd;
    SSL *tls;
    enum close_state state;
    struct fwd_io io;
    struct fwd_timer deadline;
};

struct fwd_closer {
    struct fwd_loop *loop;
    struct closing *list;
    size_t n;
    struct fwd_timer reap;
};

static void on_reap(struct fwd_timer *t)
{
    struct fwd_closer *c = t->ctx;
    struct closing **pp = &c->list;

    while (*pp != NULL) {
        struct closing *x = *pp;

        if (x->state != C_DONE) {
            pp = &x->next;
            continue;
        }
        *pp = x->next;
        free(x);
        c->n--;
    }
}

/* Release the socket now; the struct goes at the next reap. */
static void finish(struct closing *x)
{
    struct fwd_loop *loop = x->c->loop;

    if (x->state == C_DONE)
        return;
    fwd_loop_io_del(loop, &x->io);
    fwd_loop_timer_stop(loop, &x->deadline);
    SSL_free(x->tls);
    x->tls = NULL;
    close(x->fd);
    x->fd = -1;
    x->state = C_DONE;
    if (!fwd_timer_armed(&x->c->reap))
        fwd_loop_timer_start(loop, &x->c->reap, 0, on_reap, x->c);
}

/* Move to DRAIN: FIN out, then wait for the peer's. */
static void drain_start(struct closing *x)
{
    x->state = C_DRAIN;
    if (shutdown(x->fd, SHUT_WR) == -1 && errno != ENOTCONN) {
        finish(x);
        return;
    }
    if (fwd_loop_io_mod(x->c->loop, &x->io, EPOLLIN | EPOLLRDHUP) < 0)
        finish(x);
}

/* Send close_notify. SSL_shutdown returns 0 once ours is out (we do not wait for theirs). */
static void tls_shutdown(struct closing *x)
{
    int r, e;

    ERR_clear_error();
    r = SSL_shutdown(x->tls);
    if (r >= 0) {
        drain_start(x);
        return;
    }
    e = SSL_get_error(x->tls, r);
    ERR_clear_error();
    if (e == SSL_ERROR_WANT_WRITE) {
        if (fwd_loop_io_mod(x->c->loop, &x->io, EPOLLOUT) < 0)
            finish(x);
        return;
    }
    if (e == SSL_ERROR_WANT_READ) {
        drain_start(x);
        return;
    }
    drain_start(x); /* a broken session: still send FIN and drain */
}

static void on_io(struct fwd_io *io, uint32_t events)
{
    struct closing *x = io->ctx;
    size_t budget = DRAIN_PER_WAKEUP;

    (void)events;
    if (x->state == C_SHUTDOWN) {
        tls_shutdown(x);
        return;
    }
    while (x->state == C_DRAIN && budget > 0) {
        char buf[4096];
        ssize_t r = read(x->fd, buf, sizeof(buf));

        if (r > 0) {
            budget -= (size_t)r < budget ? (size_t)r : budget;
            continue;
        }
        if (r == -1 && errno == EINTR)
            continue;
        if (r == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        finish(x); /* EOF: the peer read everything and closed too; or it failed */
    }
}

static void on_deadline(struct fwd_timer *t)
{
    finish(t->ctx);
}

struct fwd_closer *fwd_closer_create(struct fwd_loop *loop)
{
    struct fwd_closer *c = calloc(1, sizeof(*c));

    if (c != NULL)
        c->loop = loop;
    return c;
}

void fwd_closer_add(struct fwd_closer *c, int fd, SSL *tls, uint64_t timeout_ms)
{
    struct closing *x = calloc(1, sizeof(*x));

    if (x == NULL || fwd_loop_io_add(c->loop, &x->io, fd, EPOLLOUT, on_io, x) < 0) {
        free(x);
        SSL_free(tls);
        close(fd);
        return;
    }
    x->c = c;
    x->fd = fd;
    x->tls = tls;
    x->next = c->list;
    c->list = x;
    c->n++;
    fwd_loop_timer_start(c->loop, &x->deadline, timeout_ms, on_deadline, x);
    if (tls != NULL)
        tls_shutdown(x);
    else
        drain_start(x);
}

size_t fwd_closer_pending(const struct fwd_closer *c)
{
    size_t n = 0;

    for (const struct closing *x = c->list; x != NULL; x = x->next)
        n += x->state != C_DONE;
    return n;
}

void fwd_closer_destroy(struct fwd_closer *c)
{
    if (c == NULL)
        return;
    for (struct closing *x = c->list; x != NULL; x = x->next)
        finish(x);
    fwd_loop_timer_stop(c->loop, &c->reap);
    while (c->list != NULL) {
        struct closing *x = c->list;
        c->list = x->next;
        free(x);
    }
    free(c);
}
