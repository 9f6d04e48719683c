/*
 * loop.c - epoll and a binary min-heap of timers.
 *
 * Level-triggered epoll: a callback that leaves data unread is called again
 * on the next wakeup, which is how per-wakeup fairness caps work. Events of
 * one wakeup are kept in loop->events while they are dispatched; io_del()
 * clears later entries for the same io so a callback can free another object
 * safely. Timers fire in deadline order; a timer callback may re-arm itself
 * or stop others.
 * Lag: each timer's run minus its deadline goes into a histogram (the time
 * a due timer waited for the callbacks before it: what a stalled loop shows).
 */
#include "fwd_loop.h"
#include "fwd_metrics.h"
#include "fwd_time.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#define MAX_EVENTS 128

struct fwd_loop {
    int epfd;
    uint64_t now;
    struct fwd_timer **heap; /* 1-based */
    size_t nheap, capheap;
    struct epoll_event events[MAX_EVENTS];
    int nevents, cur;
    struct fwd_hist lag; /* seconds from a timer's deadline to its run */
};

static const double lag_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                    0.1,   0.25,   0.5,   1,    2.5,   5};

struct fwd_loop *fwd_loop_create(void)
{
    struct fwd_loop *loop = calloc(1, sizeof(*loop));

    if (loop == NULL)
        return NULL;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd == -1) {
        free(loop);
        return NULL;
    }
    loop->now = fwd_time_mono_ns();
    fwd_hist_init(&loop->lag, lag_bounds, sizeof(lag_bounds) / sizeof(lag_bounds[0]));
    return loop;
}

void fwd_loop_destroy(struct fwd_loop *loop)
{
    if (loop == NULL)
        return;
    close(loop->epfd);
    free(loop->heap);
    free(loop);
}

uint64_t fwd_loop_now(const struct fwd_loop *loop)
{
    return loop->now;
}

const struct fwd_hist *fwd_loop_lag(const struct fwd_loop *loop)
{
    return &loop->lag;
}

int fwd_loop_io_add(struct fwd_loop *loop, struct fwd_io *io, int fd, uint32_t events, fwd_io_cb cb,
                    void *ctx)
{
    struct epoll_event ev = {.events = events, .data.ptr = io};

    io->fd = fd;
    io->events = events;
    io->cb = cb;
    io->ctx = ctx;
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) == -1)
        return -errno;
    io->active = true;
    return 0;
}

int fwd_loop_io_mod(struct fwd_loop *loop, struct fwd_io *io, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = io};

    if (!io->active || io->events == events)
        return 0;
    if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, io->fd, &ev) == -1)
        return -errno;
    io->events = events;
    return 0;
}

void fwd_loop_io_del(struct fwd_loop *loop, struct fwd_io *io)
{
    if (!io->active)
        return;
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
    io->active = false;
    for (int i = loop->cur + 1; i < loop->nevents; i++)
        if (loop->events[i].data.ptr == io)
            loop->events[i].data.ptr = NULL;
}

static void heap_swap(struct fwd_loop *l, size_t a, size_t b)
{
    struct fwd_timer *t = l->heap[a];

    l->heap[a] = l->heap[b];
    l->heap[b] = t;
    l->heap[a]->heap_index = a;
    l->heap[b]->heap_index = b;
}

static void heap_up(struct fwd_loop *l, size_t i)
{
    while (i > 1 && l->heap[i / 2]->deadline > l->heap[i]->deadline) {
        heap_swap(l, i, i / 2);
        i /= 2;
    }
}

static void heap_down(struct fwd_loop *l, size_t i)
{
    for (;;) {
        size_t m = i, c = 2 * i;

        if (c <= l->nheap && l->heap[c]->deadline < l->heap[m]->deadline)
            m = c;
        if (c + 1 <= l->nheap && l->heap[c + 1]->deadline < l->heap[m]->deadline)
            m = c + 1;
        if (m == i)
            return;
        heap_swap(l, i, m);
        i = m;
    }
}

void fwd_loop_timer_stop(struct fwd_loop *loop, struct fwd_timer *t)
{
    size_t i = t->heap_index;

    if (i == 0)
        return;
    t->heap_index = 0;
    if (i != loop->nheap) {
        loop->heap[i] = loop->heap[loop->nheap];
        loop->heap[i]->heap_index = i;
        loop->nheap--;
        heap_up(loop, i);
        heap_down(loop, i);
    } else {
        loop->nheap--;
    }
}

void fwd_loop_timer_at(struct fwd_loop *loop, struct fwd_timer *t, uint64_t deadline_ns,
                       fwd_timer_cb cb, void *ctx)
{
    fwd_loop_timer_stop(loop, t);
    t->deadline = deadline_ns;
    t->cb = cb;
    t->ctx = ctx;
    if (loop->nheap + 1 >= loop->capheap) {
        size_t nc = loop->capheap ? loop->capheap * 2 : 64;
        struct fwd_timer **h = realloc(loop->heap, nc * sizeof(*h));

        if (h == NULL)
            abort(); /* a lost timer would silently stall a stream; refuse to go on */
        loop->heap = h;
        loop->capheap = nc;
    }
    loop->heap[++loop->nheap] = t;
    t->heap_index = loop->nheap;
    heap_up(loop, loop->nheap);
}

void fwd_loop_timer_start(struct fwd_loop *loop, struct fwd_timer *t, uint64_t delay_ms,
                          fwd_timer_cb cb, void *ctx)
{
    fwd_loop_timer_at(loop, t, fwd_time_mono_ns() + FWD_MS_TO_NS(delay_ms), cb, ctx);
}

static void run_timers(struct fwd_loop *loop)
{
    /* Timers armed while running fire no earlier than the next wakeup's now. */
    uint64_t now = loop->now, ran = fwd_time_mono_ns();

    while (loop->nheap > 0 && loop->heap[1]->deadline <= now) {
        struct fwd_timer *t = loop->heap[1];

        fwd_loop_timer_stop(loop, t);
        /* ran is read after this turn's io callbacks: their time counts as lag */
        fwd_hist_observe(&loop->lag, (double)(ran - t->deadline) / 1e9);
        t->cb(t);
    }
}

int fwd_loop_run_once(struct fwd_loop *loop, int max_ms)
{
    int timeout = max_ms, n;

    loop->now = fwd_time_mono_ns();
    if (loop->nheap > 0) {
        uint64_t d = loop->heap[1]->deadline;
        int64_t ms = d <= loop->now ? 0 : (int64_t)((d - loop->now + 999999) / 1000000);

        if (timeout < 0 || ms < timeout)
            timeout = (int)(ms > 1000000 ? 1000000 : ms);
    }
    n = epoll_wait(loop->epfd, loop->events, MAX_EVENTS, timeout);
    if (n == -1) {
        n = errno;
        return n == EINTR ? 0 : -n;
    }
    loop->now = fwd_time_mono_ns();
    loop->nevents = n;
    for (loop->cur = 0; loop->cur < n; loop->cur++) {
        struct fwd_io *io = loop->events[loop->cur].data.ptr;

        if (io != NULL)
            io->cb(io, loop->events[loop->cur].events);
    }
    loop->nevents = 0;
    loop->cur = 0;
    run_timers(loop);
    return 0;
}
