/*
 * fwd_httpd.h - a libmicrohttpd daemon driven by the fwd_loop: started with
 * MHD_USE_EPOLL and no thread of its own, its epoll fd is watched by the loop,
 * MHD_run() is called when it is readable, and MHD_get_timeout() arms a loop
 * timer. Handlers therefore run on the loop thread. Used by the plugin API
 * and the scrape listener.
 */
#ifndef FWD_HTTPD_H
#define FWD_HTTPD_H

#include "fwd_loop.h"

#include <microhttpd.h>
#include <stdarg.h>

/* Embedded by the caller. Fields are the module's. */
struct fwd_httpd {
    struct fwd_loop *loop;
    struct MHD_Daemon *mhd;
    struct fwd_io io;
    struct fwd_timer timer;
};

/* Drive mhd (taken: fwd_httpd_release stops it) from loop. 0, or -errno (mhd is stopped). */
int fwd_httpd_attach(struct fwd_httpd *h, struct fwd_loop *loop, struct MHD_Daemon *mhd)
    __attribute__((warn_unused_result));
/* Stop watching and stop the daemon (its connections close). Not attached: nothing. */
void fwd_httpd_release(struct fwd_httpd *h);
/* An MHD_OPTION_EXTERNAL_LOGGER: MHD's messages as our debug lines. */
void fwd_httpd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

#endif
