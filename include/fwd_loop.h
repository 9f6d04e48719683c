/*
 * fwd_loop.h - the event loop: one epoll instance, a timer heap, and nothing
 * else. It owns no objects; callers embed struct fwd_io / struct fwd_timer in
 * their own state and register them. Only this module calls epoll_wait.
 */
#ifndef FWD_LOOP_H
#define FWD_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fwd_loop;
struct fwd_hist;
struct fwd_io;
struct fwd_timer;

typedef void (*fwd_io_cb)(struct fwd_io *io, uint32_t events);
typedef void (*fwd_timer_cb)(struct fwd_timer *t);

/* A watched fd. Fields are the loop's; ctx is the caller's. */
struct fwd_io {
    int fd;
    uint32_t events;
    fwd_io_cb cb;
    void *ctx;
    bool active;
};

/* A one-shot timer. Fields are the loop's; ctx is the caller's. */
struct fwd_timer {
    uint64_t deadline; /* monotonic ns */
    fwd_timer_cb cb;
    void *ctx;
    size_t heap_index; /* 0: not armed */
};

struct fwd_loop *fwd_loop_create(void);
/* Every io and timer must have been removed first. NULL is fine. */
void fwd_loop_destroy(struct fwd_loop *loop);

/* Watch fd for events (EPOLLIN/EPOLLOUT...). 0 or -errno. */
int fwd_loop_io_add(struct fwd_loop *loop, struct fwd_io *io, int fd, uint32_t events, fwd_io_cb cb,
                    void *ctx) __attribute__((warn_unused_result));
/* Change the events watched. 0 or -errno. */
int fwd_loop_io_mod(struct fwd_loop *loop, struct fwd_io *io, uint32_t events)
    __attribute__((warn_unused_result));
/*
 * Stop watching (the fd is not closed). Safe from any callback, including for
 * an io whose event is pending in the same wakeup: it will not be delivered.
 */
void fwd_loop_io_del(struct fwd_loop *loop, struct fwd_io *io);

/* Arm (or re-arm) t to fire after delay_ms. */
void fwd_loop_timer_start(struct fwd_loop *loop, struct fwd_timer *t, uint64_t delay_ms,
                          fwd_timer_cb cb, void *ctx);
/* Arm t at an absolute monotonic deadline (ns). */
void fwd_loop_timer_at(struct fwd_loop *loop, struct fwd_timer *t, uint64_t deadline_ns,
                       fwd_timer_cb cb, void *ctx);
/* Disarm; a timer that is not armed is fine. */
void fwd_loop_timer_stop(struct fwd_loop *loop, struct fwd_timer *t);
static inline bool fwd_timer_armed(const struct fwd_timer *t)
{
    return t->heap_index != 0;
}

/* Wait at most max_ms (-1: until something happens), then dispatch. 0 or -errno. */
int fwd_loop_run_once(struct fwd_loop *loop, int max_ms);
/* The monotonic time cached at the start of the current wakeup. */
uint64_t fwd_loop_now(const struct fwd_loop *loop);
/* Loop lag: seconds from each timer's deadline to its run (fwd_metrics.h). Borrowed. */
const struct fwd_hist *fwd_loop_lag(const struct fwd_loop *loop);

#endif
