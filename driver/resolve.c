/*
 * resolve.c - name lookups on the loop with c-ares.
 *
 * The channel tells us through its socket-state callback which sockets to
 * watch; their events go to ares_process_fd, and one loop timer follows
 * ares_timeout. Answers are never handed over from inside c-ares: a finished
 * lookup arms its own zero-delay timer and the caller's callback runs from
 * there, after the request was unlinked. That also holds when c-ares answers
 * before ares_getaddrinfo returns (a name found in /etc/hosts) and for
 * address literals, so a callback never runs inside fwd_resolve_start.
 *
 * A cancelled lookup that c-ares still holds is only marked: its c-ares
 * callback frees it later. glibc's getaddrinfo_a, which this replaces, ran a
 * helper thread (whose exit dlopens libgcc_s inside a minimal rootfs) and
 * had to block in gai_suspend to cancel a lookup.
 */
#define FWD_LOG_MODULE "resolve"
#include "fwd_resolve.h"
#include "fwd_time.h"

#include <ares.h>
#include <errno.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/time.h>

/* c-ares uses one UDP and at most one TCP socket per name server (three at most). */
#define SOCKS 16
/* Per try and tries per server: a dead name server costs seconds, never minutes. */
#define LOOKUP_TIMEOUT_MS 2000
#define LOOKUP_TRIES      2
/* How often, at most, /etc/resolv.conf is looked at for changes. */
#define RESOLV_CHECK_MS 1000
#define RESOLV_CONF     "/etc/resolv.conf"

struct rsock {
    struct fwd_io io;
    struct fwd_resolver *r;
    bool used;
};

struct fwd_resolve_req {
    struct fwd_resolver *r;
    struct fwd_resolve_req *prev, *next;
    fwd_resolve_cb cb; /* NULL: cancelled */
    void *ctx;
    bool in_ares; /* c-ares holds it: its callback has not run yet */
    int status;
    char why[160];
    struct fwd_resolved res;
    struct fwd_timer deliver;
};

struct fwd_resolver {
    struct fwd_loop *loop;
    ares_channel ch;
    struct rsock socks[SOCKS];
    struct fwd_timer timer;
    struct fwd_resolve_req *reqs; /* every request not yet freed */
    unsigned in_ares;             /* requests c-ares holds */
    bool destroying;
    uint64_t checked_ns; /* when resolv.conf was last looked at */
    struct stat conf;    /* what it was then */
};

static void on_sock(struct fwd_io *io, uint32_t events);
static void on_timer(struct fwd_timer *t);

/* Follow c-ares's next deadline. */
static void update_timer(struct fwd_resolver *r)
{
    struct timeval tv, *t;

    t = r->in_ares > 0 ? ares_timeout(r->ch, NULL, &tv) : NULL;
    if (t == NULL) {
        fwd_loop_timer_stop(r->loop, &r->timer);
        return;
    }
    fwd_loop_timer_start(r->loop, &r->timer,
                         (uint64_t)t->tv_sec * 1000u + ((uint64_t)t->tv_usec + 999u) / 1000u,
                         on_timer, r);
}

static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct fwd_resolver *r = data;
    uint32_t ev = (readable ? EPOLLIN : 0) | (writable ? EPOLLOUT : 0);
    struct rsock *s = NULL, *free_slot = NULL;

    for (unsigned i = 0; i < SOCKS; i++) {
        if (r->socks[i].used && r->socks[i].io.fd == fd)
            s = &r->socks[i];
        else if (!r->socks[i].used && free_slot == NULL)
            free_slot = &r->socks[i];
    }
    if (ev == 0) {
        if (s != NULL) {
            fwd_loop_io_del(r->loop, &s->io);
            s->used = false;
        }
        return;
    }
    if (s != NULL) {
        if (fwd_loop_io_mod(r->loop, &s->io, ev) < 0)
            fwd_loop_io_del(r->loop, &s->io); /* the lookup times out; nothing else is lost */
        return;
    }
    /* No slot or no epoll: the lookup on this socket times out and reports it. */
    if (free_slot == NULL)
        return;
    free_slot->r = r;
    if (fwd_loop_io_add(r->loop, &free_slot->io, fd, ev, on_sock, free_slot) == 0)
        free_slot->used = true;
}

static void on_sock(struct fwd_io *io, uint32_t events)
{
    struct rsock *s = io->ctx;
    struct fwd_resolver *r = s->r;
    ares_socket_t fd = io->fd;

    ares_process_fd(r->ch, events & (EPOLLIN | EPOLLERR | EPOLLHUP) ? fd : ARES_SOCKET_BAD,
                    events & EPOLLOUT ? fd : ARES_SOCKET_BAD);
    update_timer(r);
}

static void on_timer(struct fwd_timer *t)
{
    struct fwd_resolver *r = t->ctx;

    ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    update_timer(r);
}

static int channel_init(struct fwd_resolver *r, char *err, size_t errlen)
{
    struct ares_options o;
    int rc;

    memset(&o, 0, sizeof(o));
    o.sock_state_cb = sock_state;
    o.sock_state_cb_data = r;
    o.timeout = LOOKUP_TIMEOUT_MS;
    o.tries = LOOKUP_TRIES;
    rc =
        ares_init_options(&r->ch, &o, ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
    if (rc != ARES_SUCCESS) {
        snprintf(err, errlen, "c-ares: %s", ares_strerror(rc));
        return rc == ARES_ENOMEM ? -ENOMEM : -EIO;
    }
    if (stat(RESOLV_CONF, &r->conf) == -1)
        memset(&r->conf, 0, sizeof(r->conf));
    r->checked_ns = fwd_time_mono_ns();
    return 0;
}

/* A changed /etc/resolv.conf takes effect: a new channel, while no lookup is under way. */
static void maybe_reload(struct fwd_resolver *r)
{
    uint64_t now = fwd_time_mono_ns();
    struct stat st;
    ares_channel old = r->ch;
    char err[200];

    if (r->in_ares > 0 || now - r->checked_ns < FWD_MS_TO_NS(RESOLV_CHECK_MS))
        return;
    r->checked_ns = now;
    if (stat(RESOLV_CONF, &st) == -1)
        memset(&st, 0, sizeof(st));
    if (st.st_ino == r->conf.st_ino && st.st_size == r->conf.st_size &&
        st.st_mtim.tv_sec == r->conf.st_mtim.tv_sec &&
        st.st_mtim.tv_nsec == r->conf.st_mtim.tv_nsec)
        return;
    if (channel_init(r, err, sizeof(err)) != 0) {
        r->ch = old; /* keep what worked */
        return;
    }
    ares_destroy(old);
}

struct fwd_resolver *fwd_resolver_create(struct fwd_loop *loop, char *err, size_t errlen)
{
    struct fwd_resolver *r;
    int rc = ares_library_init(ARES_LIB_INIT_ALL);

    if (rc != ARES_SUCCESS) {
        snprintf(err, errlen, "c-ares: %s", ares_strerror(rc));
        return NULL;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        ares_library_cleanup();
        return NULL;
    }
    r->loop = loop;
    if (channel_init(r, err, errlen) != 0) {
        free(r);
        ares_library_cleanup();
        return NULL;
    }
    return r;
}

static void unlink_req(struct fwd_resolve_req *q)
{
    if (q->prev != NULL)
        q->prev->next = q->next;
    else
        q->r->reqs = q->next;
    if (q->next != NULL)
        q->next->prev = q->prev;
}

/* Hand the answer over (its timer fired): the request is gone before the callback runs. */
static void on_deliver(struct fwd_timer *t)
{
    struct fwd_resolve_req *q = t->ctx;
    fwd_resolve_cb cb = q->cb;
    void *ctx = q->ctx;
    int status = q->status;
    struct fwd_resolved res = q->res;
    char why[sizeof(q->why)];

    memcpy(why, q->why, sizeof(why));
    unlink_req(q);
    free(q);
    cb(ctx, status, &res, why);
}

static int status_errno(int st)
{
    switch (st) {
        case ARES_ENOTFOUND:
        case ARES_ENODATA:
        case ARES_ENONAME:
            return -ENOENT;
        case ARES_ETIMEOUT:
            return -ETIMEDOUT;
        case ARES_ENOMEM:
            return -ENOMEM;
        case ARES_ECANCELLED:
        case ARES_EDESTRUCTION:
            return -ECANCELED;
        case ARES_ECONNREFUSED:
            return -ECONNREFUSED;
        default:
            return -EIO;
    }
}

static void add_addr(struct fwd_resolved *res, const struct sockaddr *sa, size_t len)
{
    if (res->n == FWD_RESOLVE_MAX || len > sizeof(res->addr[0].sa))
        return;
    memcpy(&res->addr[res->n].sa, sa, len);
    res->addr[res->n].len = (socklen_t)len;
    res->n++;
}

static void on_ares(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
    struct fwd_resolve_req *q = arg;
    struct fwd_resolver *r = q->r;

    (void)timeouts;
    q->in_ares = false;
    r->in_ares--;
    if (q->cb != NULL && status == ARES_SUCCESS && ai != NULL)
        for (struct ares_addrinfo_node *a = ai->nodes; a != NULL; a = a->ai_next)
            if (a->ai_family == AF_INET || a->ai_family == AF_INET6)
                add_addr(&q->res, a->ai_addr, a->ai_addrlen);
    ares_freeaddrinfo(ai);
    if (q->cb == NULL) {
        unlink_req(q); /* cancelled while c-ares had it */
        free(q);
        return;
    }
    if (status == ARES_SUCCESS && q->res.n == 0)
        status = ARES_ENODATA;
    q->status = status == ARES_SUCCESS ? 0 : status_errno(status);
    snprintf(q->why, sizeof(q->why), "%s", status == ARES_SUCCESS ? "" : ares_strerror(status));
    if (r->destroying) {
        q->cb(q->ctx, -ECANCELED, &q->res, "the resolver is shutting down");
        unlink_req(q);
        free(q);
        return;
    }
    fwd_loop_timer_start(r->loop, &q->deliver, 0, on_deliver, q);
}

/* An address literal (no lookup): 1 with res filled, 0 if host is a name. */
static int literal(const char *host, const char *service, struct fwd_resolved *res)
{
    struct addrinfo hints, *ai = NULL;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    if (getaddrinfo(host, service, &hints, &ai) != 0)
        return 0;
    for (struct addrinfo *a = ai; a != NULL; a = a->ai_next)
        add_addr(res, a->ai_addr, a->ai_addrlen);
    freeaddrinfo(ai);
    return res->n > 0;
}

int fwd_resolve_start(struct fwd_resolver *r, const char *host, uint16_t port, fwd_resolve_cb cb,
                      void *ctx, struct fwd_resolve_req **out)
{
    struct fwd_resolve_req *q = calloc(1, sizeof(*q));
    struct ares_addrinfo_hints hints;
    char service[8];

    *out = NULL;
    if (q == NULL)
        return -ENOMEM;
    q->r = r;
    q->cb = cb;
    q->ctx = ctx;
    q->next = r->reqs;
    if (r->reqs != NULL)
        r->reqs->prev = q;
    r->reqs = q;
    *out = q;
    snprintf(service, sizeof(service), "%u", port);
    if (literal(host, service, &q->res)) {
        fwd_loop_timer_start(r->loop, &q->deliver, 0, on_deliver, q);
        return 0;
    }
    maybe_reload(r);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = ARES_AI_NUMERICSERV;
    q->in_ares = true;
    r->in_ares++;
    /* may answer at once (/etc/hosts): on_ares then only arms the delivery */
    ares_getaddrinfo(r->ch, host, service, &hints, on_ares, q);
    update_timer(r);
    return 0;
}

void fwd_resolve_cancel(struct fwd_resolve_req *q)
{
    if (q == NULL)
        return;
    q->cb = NULL;
    fwd_loop_timer_stop(q->r->loop, &q->deliver);
    if (!q->in_ares) {
        unlink_req(q);
        free(q);
    }
}

void fwd_resolver_destroy(struct fwd_resolver *r)
{
    if (r == NULL)
        return;
    r->destroying = true;
    /* answers waiting for delivery end as cancelled too */
    for (struct fwd_resolve_req *q = r->reqs, *next; q != NULL; q = next) {
        next = q->next;
        if (q->in_ares)
            continue;
        fwd_loop_timer_stop(r->loop, &q->deliver);
        if (q->cb != NULL)
            q->cb(q->ctx, -ECANCELED, &q->res, "the resolver is shutting down");
        unlink_req(q);
        free(q);
    }
    ares_destroy(r->ch); /* the rest: on_ares with ARES_EDESTRUCTION */
    fwd_loop_timer_stop(r->loop, &r->timer);
    for (unsigned i = 0; i < SOCKS; i++)
        if (r->socks[i].used)
            fwd_loop_io_del(r->loop, &r->socks[i].io);
    free(r);
    ares_library_cleanup();
}
