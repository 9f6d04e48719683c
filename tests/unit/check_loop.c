/* Unit tests for buf.c and loop.c: caps, growth, timer order, safe io removal. */
#include "fwd_buf.h"
#include "fwd_loop.h"
#include "fwd_metrics.h"
#include "fwd_time.h"

#include "unit.h"

#include <check.h>
#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

START_TEST(test_buf_cap_and_consume)
{
    struct fwd_buf b;

    fwd_buf_init(&b, 10);
    ck_assert_ptr_null(b.data);
    ck_assert_int_eq(fwd_buf_append(&b, "hello", 5), 0);
    ck_assert_int_eq(fwd_buf_append(&b, "world!", 6), -EMSGSIZE);
    ck_assert_uint_eq(b.len, 5); /* nothing appended on failure */
    ck_assert_int_eq(fwd_buf_append(&b, "world", 5), 0);
    ck_assert_uint_le(b.cap, 10);
    fwd_buf_consume(&b, 3);
    ck_assert_mem_eq(b.data, "loworld", 7);
    fwd_buf_consume(&b, 100);
    ck_assert_uint_eq(b.len, 0);
    fwd_buf_release(&b);
    fwd_buf_release(NULL);
    ck_assert_int_eq(fwd_buf_append(&b, "", 0), 0);
}
END_TEST

static int order[8], norder;

static void timer_cb(struct fwd_timer *t)
{
    order[norder++] = (int)(intptr_t)t->ctx;
}

START_TEST(test_loop_timers_fire_in_order)
{
    struct fwd_loop *l = fwd_loop_create();
    struct fwd_timer t[4] = {0};

    norder = 0;
    fwd_loop_timer_start(l, &t[0], 30, timer_cb, (void *)0);
    fwd_loop_timer_start(l, &t[1], 10, timer_cb, (void *)1);
    fwd_loop_timer_start(l, &t[2], 20, timer_cb, (void *)2);
    fwd_loop_timer_start(l, &t[3], 5, timer_cb, (void *)3);
    fwd_loop_timer_stop(l, &t[2]);
    ck_assert(!fwd_timer_armed(&t[2]));
    while (norder < 3)
        ck_assert_int_eq(fwd_loop_run_once(l, 100), 0);
    ck_assert_int_eq(order[0], 3);
    ck_assert_int_eq(order[1], 1);
    ck_assert_int_eq(order[2], 0);
    fwd_loop_destroy(l);
}
END_TEST

static void nop_timer(struct fwd_timer *t)
{
    (void)t;
}

START_TEST(test_loop_lag_is_measured)
{
    struct fwd_loop *l = fwd_loop_create();
    struct fwd_timer t = {0}, u = {0};
    const struct fwd_hist *h = fwd_loop_lag(l);

    /* due 50 ms ago: it runs at once, 50 ms late */
    fwd_loop_timer_at(l, &t, fwd_time_mono_ns() - FWD_MS_TO_NS(50), nop_timer, NULL);
    ck_assert_int_eq(fwd_loop_run_once(l, 100), 0);
    ck_assert_uint_eq(h->count, 1);
    ck_assert(h->sum >= 0.05 && h->sum < 5);
    ck_assert_uint_eq(h->counts[0] + h->counts[1] + h->counts[2] + h->counts[3] + h->counts[4], 0);
    fwd_loop_timer_start(l, &u, 0, nop_timer, NULL);
    while (fwd_timer_armed(&u))
        ck_assert_int_eq(fwd_loop_run_once(l, 100), 0);
    ck_assert_uint_eq(h->count, 2);
    fwd_loop_destroy(l);
}
END_TEST

struct pair {
    struct fwd_loop *l;
    struct fwd_io a, b;
    int calls_a, calls_b;
};

static void cb_a(struct fwd_io *io, uint32_t ev)
{
    struct pair *p = io->ctx;

    (void)ev;
    p->calls_a++;
    fwd_loop_io_del(p->l, &p->b); /* b's event of this wakeup must not be delivered */
    fwd_loop_io_del(p->l, &p->a);
}

static void cb_b(struct fwd_io *io, uint32_t ev)
{
    struct pair *p = io->ctx;

    (void)ev;
    p->calls_b++;
    fwd_loop_io_del(p->l, &p->a);
    fwd_loop_io_del(p->l, &p->b);
}

START_TEST(test_loop_io_del_during_dispatch)
{
    struct pair p = {0};
    int fa[2], fb[2];

    p.l = fwd_loop_create();
    ck_assert_int_eq(pipe(fa), 0);
    ck_assert_int_eq(pipe(fb), 0);
    ck_assert_int_eq(write(fa[1], "x", 1), 1);
    ck_assert_int_eq(write(fb[1], "x", 1), 1);
    ck_assert_int_eq(fwd_loop_io_add(p.l, &p.a, fa[0], EPOLLIN, cb_a, &p), 0);
    ck_assert_int_eq(fwd_loop_io_add(p.l, &p.b, fb[0], EPOLLIN, cb_b, &p), 0);
    ck_assert_int_eq(fwd_loop_run_once(p.l, 100), 0);
    /* whichever ran first removed the other: exactly one callback ran */
    ck_assert(!p.a.active && !p.b.active);
    ck_assert_int_eq(p.calls_a + p.calls_b, 1);
    close(fa[0]);
    close(fa[1]);
    close(fb[0]);
    close(fb[1]);
    fwd_loop_destroy(p.l);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("loop");
    TCase *core = tcase_create("core");

    tcase_add_test(core, test_buf_cap_and_consume);
    tcase_add_test(core, test_loop_timers_fire_in_order);
    tcase_add_test(core, test_loop_io_del_during_dispatch);
    tcase_add_test(core, test_loop_lag_is_measured);
    suite_add_tcase(s, core);
    return fwd_test_run(s);
}
