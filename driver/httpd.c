/*
 * httpd.c - libmicrohttpd on the fwd_loop (see fwd_httpd.h).
 *
 * MHD in external-epoll mode keeps its own epoll set of the listening socket
 * and its connections; that one fd sits in our loop. After each MHD_run() the
 * loop timer is re-armed from MHD_get_timeout(), which is how connection
 * timeouts fire when no socket is readable.
 */
#define FWD_LOG_MODULE "http"
#include "fwd_httpd.h"
#include "fwd_log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>

static void on_timer(struct fwd_timer *t);

static void run(struct fwd_httpd *h)
{
    MHD_UNSIGNED_LONG_LONG ms;

    MHD_run(h->mhd);
    if (MHD_get_timeout(h->mhd, &ms) == MHD_YES)
        fwd_loop_timer_start(h->loop, &h->timer, ms, on_timer, h);
    else
        fwd_loop_timer_stop(h->loop, &h->timer);
}

static void on_timer(struct fwd_timer *t)
{
    run(t->ctx);
}

static void on_io(struct fwd_io *io, uint32_t events)
{
    (void)events;
    run(io->ctx);
}

int fwd_httpd_attach(struct fwd_httpd *h, struct fwd_loop *loop, struct MHD_Daemon *mhd)
{
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(mhd, MHD_DAEMON_INFO_EPOLL_FD);
    int rc = di == NULL ? -EINVAL : fwd_loop_io_add(loop, &h->io, di->epoll_fd, EPOLLIN, on_io, h);

    if (rc < 0) {
        MHD_stop_daemon(mhd);
        return rc;
    }
    h->loop = loop;
    h->mhd = mhd;
    run(h);
    return 0;
}

void fwd_httpd_release(struct fwd_httpd *h)
{
    if (h->mhd == NULL)
        return;
    fwd_loop_io_del(h->loop, &h->io);
    fwd_loop_timer_stop(h->loop, &h->timer);
    MHD_stop_daemon(h->mhd);
    h->mhd = NULL;
}

void fwd_httpd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];

    (void)cls;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    fwd_log(FWD_LOG_DEBUG, "libmicrohttpd: %s", msg);
}
