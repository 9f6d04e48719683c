/*
 * Unit tests for resolve.c and closer.c on a real loop: literals and names
 * answer from the loop (never inside fwd_resolve_start), cancelled lookups
 * never call back, destruction ends pending ones; the closer drains what the
 * peer sent, sends FIN, and closes once the peer closes or at its deadline.
 */
#include "fwd_closer.h"
#include "fwd_loop.h"
#include "fwd_resolve.h"

#include "unit.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct answer {
    int calls;
    int status;
    struct fwd_resolved res;
};

static void on_answer(void *ctx, int status, const struct fwd_resolved *res, const char *why)
{
    struct answer *a = ctx;

    (void)why;
    a->calls++;
    a->status = status;
    a->res = *res;
}

static void run_until(struct fwd_loop *l, const int *calls, int want)
{
    for (int i = 0; i < 500 && *calls < want; i++)
        ck_assert_int_eq(fwd_loop_run_once(l, 10), 0);
}

static uint16_t port_of(const struct fwd_sockaddr *a)
{
    return ntohs(((const struct sockaddr_in *)&a->sa)->sin_port);
}

START_TEST(test_resolve_literal_answers_from_the_loop)
{
    struct fwd_loop *l = fwd_loop_create();
    char err[200];
    struct fwd_resolver *r = fwd_resolver_create(l, err, sizeof(err));
    struct fwd_resolve_req *q;
    struct answer a = {0};

    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(fwd_resolve_start(r, "127.0.0.1", 24224, on_answer, &a, &q), 0);
    ck_assert_int_eq(a.calls, 0); /* not inside start */
    run_until(l, &a.calls, 1);
    ck_assert_int_eq(a.calls, 1);
    ck_assert_int_eq(a.status, 0);
    ck_assert_uint_eq(a.res.n, 1);
    ck_assert_int_eq(a.res.addr[0].sa.ss_family, AF_INET);
    ck_assert_uint_eq(port_of(&a.res.addr[0]), 24224);
    fwd_resolver_destroy(r);
    fwd_loop_destroy(l);
}
END_TEST

START_TEST(test_resolve_localhost_from_hosts)
{
    struct fwd_loop *l = fwd_loop_create();
    char err[200];
    struct fwd_resolver *r = fwd_resolver_create(l, err, sizeof(err));
    struct fwd_resolve_req *q;
    struct answer a = {0};
    bool v4 = false;

    ck_assert_int_eq(fwd_resolve_start(r, "localhost", 9, on_answer, &a, &q), 0);
    ck_assert_int_eq(a.calls, 0);
    run_until(l, &a.calls, 1);
    ck_assert_int_eq(a.status, 0);
    for (unsigned i = 0; i < a.res.n; i++) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&a.res.addr[i].sa;

        if (in->sin_family == AF_INET && in->sin_addr.s_addr == htonl(INADDR_LOOPBACK))
            v4 = true;
    }
    ck_assert(v4);
    fwd_resolver_destroy(r);
    fwd_loop_destroy(l);
}
END_TEST

START_TEST(test_resolve_cancelled_never_calls_back)
{
    struct fwd_loop *l = fwd_loop_create();
    char err[200];
    struct fwd_resolver *r = fwd_resolver_create(l, err, sizeof(err));
    struct fwd_resolve_req *q1, *q2;
    struct answer a = {0}, b = {0};

    ck_assert_int_eq(fwd_resolve_start(r, "localhost", 9, on_answer, &a, &q1), 0);
    ck_assert_int_eq(fwd_resolve_start(r, "127.0.0.1", 9, on_answer, &b, &q2), 0);
    fwd_resolve_cancel(q1);
    fwd_resolve_cancel(q2);
    for (int i = 0; i < 20; i++)
        ck_assert_int_eq(fwd_loop_run_once(l, 5), 0);
    ck_assert_int_eq(a.calls + b.calls, 0);
    fwd_resolve_cancel(NULL);
    fwd_resolver_destroy(r);
    fwd_loop_destroy(l);
}
END_TEST

START_TEST(test_resolve_destroy_ends_pending)
{
    struct fwd_loop *l = fwd_loop_create();
    char err[200];
    struct fwd_resolver *r = fwd_resolver_create(l, err, sizeof(err));
    struct fwd_resolve_req *q;
    struct answer a = {0};

    ck_assert_int_eq(fwd_resolve_start(r, "127.0.0.1", 9, on_answer, &a, &q), 0);
    fwd_resolver_destroy(r);
    ck_assert_int_eq(a.calls, 1);
    ck_assert_int_eq(a.status, -ECANCELED);
    fwd_loop_destroy(l);
}
END_TEST

/* The peer: a connected TCP pair on loopback (what the closer sees is a real socket). */
static void tcp_pair(int *ours, int *theirs)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    int ls = socket(AF_INET, SOCK_STREAM, 0);

    ck_assert_int_ge(ls, 0);
    ck_assert_int_eq(bind(ls, (struct sockaddr *)&sin, sizeof(sin)), 0);
    ck_assert_int_eq(listen(ls, 1), 0);
    ck_assert_int_eq(getsockname(ls, (struct sockaddr *)&sin, &len), 0);
    *ours = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    ck_assert_int_ge(*ours, 0);
    ck_assert(connect(*ours, (struct sockaddr *)&sin, sizeof(sin)) == 0 || errno == EINPROGRESS);
    *theirs = accept(ls, NULL, NULL);
    ck_assert_int_ge(*theirs, 0);
    close(ls);
}

START_TEST(test_closer_drains_then_closes_after_the_peer)
{
    struct fwd_loop *l = fwd_loop_create();
    struct fwd_closer *c = fwd_closer_create(l);
    int ours, theirs;
    char buf[64];
    ssize_t n, got = 0;

    tcp_pair(&ours, &theirs);
    /* unread bytes in our receive queue (what TLS session tickets are) */
    ck_assert_int_eq(write(theirs, "tickets", 7), 7);
    ck_assert_int_eq(write(ours, "records", 7), 7);
    usleep(20000);
    fwd_closer_add(c, ours, NULL, 2000);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(fwd_loop_run_once(l, 10), 0);
    ck_assert_uint_eq(fwd_closer_pending(c), 1); /* waits for the peer's EOF */
    /* the peer reads everything, then our FIN: no RST */
    while ((n = read(theirs, buf + got, sizeof(buf) - (size_t)got)) > 0)
        got += n;
    ck_assert_int_eq(n, 0);
    ck_assert_int_eq(got, 7);
    ck_assert_mem_eq(buf, "records", 7);
    close(theirs);
    for (int i = 0; i < 50 && fwd_closer_pending(c) > 0; i++)
        ck_assert_int_eq(fwd_loop_run_once(l, 10), 0);
    ck_assert_uint_eq(fwd_closer_pending(c), 0);
    fwd_closer_destroy(c);
    fwd_loop_destroy(l);
}
END_TEST

START_TEST(test_closer_deadline_when_the_peer_never_closes)
{
    struct fwd_loop *l = fwd_loop_create();
    struct fwd_closer *c = fwd_closer_create(l);
    int ours, theirs;

    tcp_pair(&ours, &theirs);
    fwd_closer_add(c, ours, NULL, 50);
    for (int i = 0; i < 100 && fwd_closer_pending(c) > 0; i++)
        ck_assert_int_eq(fwd_loop_run_once(l, 10), 0);
    ck_assert_uint_eq(fwd_closer_pending(c), 0);
    close(theirs);
    /* one still closing at destruction is closed at once */
    tcp_pair(&ours, &theirs);
    fwd_closer_add(c, ours, NULL, 5000);
    ck_assert_uint_eq(fwd_closer_pending(c), 1);
    fwd_closer_destroy(c);
    close(theirs);
    fwd_loop_destroy(l);
}
END_TEST

static Suite *resolve_suite(void)
{
    Suite *s = suite_create("resolve");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_resolve_literal_answers_from_the_loop);
    tcase_add_test(tc, test_resolve_localhost_from_hosts);
    tcase_add_test(tc, test_resolve_cancelled_never_calls_back);
    tcase_add_test(tc, test_resolve_destroy_ends_pending);
    suite_add_tcase(s, tc);
    tc = tcase_create("closer");
    tcase_add_test(tc, test_closer_drains_then_closes_after_the_peer);
    tcase_add_test(tc, test_closer_deadline_when_the_peer_never_closes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return fwd_test_run(resolve_suite());
}
