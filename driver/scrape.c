/*
 * scrape.c - GET /metrics and GET /healthz over HTTP, and the scrape
 * listener of FWDLOG_METRICS_ADDRESS (see fwd_scrape.h).
 *
 * The listener is a second libmicrohttpd daemon on the loop (httpd.c). Every answer is made whole
 * at once (fwd_observe into a buffer capped at FWD_METRICS_MAX) and handed to MHD, which writes it
 * as the socket takes it: a slow scraper holds its connection (until the timeout), never the loop.
 * A request other than GET or HEAD of our two paths is answered 405 once its
 * body (at most 1 MiB, thrown away) is read.
 */
#define FWD_LOG_MODULE "scrape"
#include "fwd_scrape.h"
#include "fwd_buf.h"
#include "fwd_config.h"
#include "fwd_httpd.h"
#include "fwd_limits.h"
#include "fwd_log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

struct fwd_scrape {
    const struct fwd_observe *obs;
    struct fwd_httpd http;
    char *unix_path; /* removed at destroy; NULL for TCP */
};

bool fwd_scrape_path(const char *url)
{
    return strcmp(url, "/metrics") == 0 || strcmp(url, "/healthz") == 0;
}

/* Hand b's bytes (len of them) to MHD, which frees them. b is empty afterwards. */
static enum MHD_Result reply_buf(struct MHD_Connection *conn, unsigned status, struct fwd_buf *b,
                                 size_t len, const char *ctype)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, b->data ? b->data : (void *)"", MHD_RESPMEM_MUST_FREE);
    enum MHD_Result ret;

    if (r == NULL) {
        fwd_buf_release(b);
        return MHD_NO;
    }
    *b = (struct fwd_buf){0}; /* MHD owns the storage now */
    MHD_add_response_header(r, "Content-Type", ctype);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply_static(struct MHD_Connection *conn, unsigned status, const char *body,
                                    const char *allow)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret;

    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "application/json");
    if (allow != NULL)
        MHD_add_response_header(r, "Allow", allow);
    ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

enum MHD_Result fwd_scrape_reply(const struct fwd_observe *o, struct MHD_Connection *conn,
                                 const char *url)
{
    struct fwd_buf b;
    unsigned status = 200;
    int rc;

    fwd_buf_init(&b, FWD_METRICS_MAX);
    if (strcmp(url, "/healthz") == 0) {
        rc = fwd_observe_health(o, &b, &status);
        if (rc == 0)
            return reply_buf(conn, status, &b, b.len - 1, "application/json");
    } else {
        rc = fwd_observe_metrics(o, &b);
        if (rc == 0)
            return reply_buf(conn, 200, &b, b.len, "text/plain; version=0.0.4; charset=utf-8");
    }
    fwd_buf_release(&b);
    fwd_log_rl(FWD_LOG_ERROR, NULL, "cannot answer GET %s: %s", url,
               rc == -EMSGSIZE ? "the exposition is over its 64 MiB cap" : "out of memory");
    return reply_static(conn, 500,
                        rc == -EMSGSIZE ? "{\"Err\":\"fwdlog: the exposition is over its cap\"}"
                                        : "{\"Err\":\"fwdlog: out of memory\"}",
                        NULL);
}

/*
 * MHD calls this with the headers, then with each piece of a body, then once
 * more with none. A body is read and thrown away (a client that is still
 * sending when the answer comes would see a reset instead of it), up to
 * FWD_API_BODY_MAX (what the plugin API takes): past that the connection is
 * closed. *req_cls counts it.
 */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **req_cls)
{
    struct fwd_scrape *s = cls;
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    uintptr_t seen = (uintptr_t)*req_cls; /* 0: the first call; then 1 + body bytes seen */

    (void)version;
    (void)upload_data;
    if (seen == 0 || *upload_size > 0) {
        seen = (seen ? seen : 1) + *upload_size;
        *upload_size = 0;
        *req_cls = (void *)seen; /* a count, not a pointer: nothing to free */
        return seen - 1 <= FWD_API_BODY_MAX ? MHD_YES : MHD_NO;
    }
    if (!get || !fwd_scrape_path(url)) {
        return reply_static(conn, 405,
                            "{\"Err\":\"fwdlog: this listener serves only GET /metrics and "
                            "GET /healthz\"}",
                            "GET, HEAD");
    }
    return fwd_scrape_reply(s->obs, conn, url);
}

/* A listening TCP socket on a's IP literal. The fd, or -1 with err set. */
static int listen_tcp(const struct fwd_addr *a, const char *address, char *err, size_t errlen)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    socklen_t len;
    int fd, one = 1;

    if (inet_pton(AF_INET, a->host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(a->port);
        len = sizeof(*in4);
    } else if (inet_pton(AF_INET6, a->host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(a->port);
        len = sizeof(*in6);
    } else {
        /* no DNS at start: a name could mean a different interface on every boot */
        snprintf(err, errlen,
                 "invalid FWDLOG_METRICS_ADDRESS=\"%s\": the host must be an IP address "
                 "(127.0.0.1:9880, [::1]:9880, 0.0.0.0:9880) or use unix:///path",
                 address);
        return -1;
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        snprintf(err, errlen, "FWDLOG_METRICS_ADDRESS: socket: %s", strerror(errno));
        return -1;
    }
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, len) == -1 || listen(fd, 64) == -1) {
        snprintf(err, errlen, "cannot listen on FWDLOG_METRICS_ADDRESS=\"%s\": %s", address,
                 strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* A listening unix socket at path (a stale file is replaced), mode 0666: it only reads. */
static int listen_path(const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int fd;

    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        snprintf(err, errlen, "FWDLOG_METRICS_ADDRESS: socket: %s", strerror(errno));
        return -1;
    }
    unlink(path);
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1 || chmod(path, 0666) == -1 ||
        listen(fd, 64) == -1) {
        snprintf(err, errlen, "cannot listen on FWDLOG_METRICS_ADDRESS=\"unix://%s\": %s", path,
                 strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int open_listener(struct fwd_scrape *s, const char *address, char *err, size_t errlen)
{
    struct fwd_addr a;
    const char *host = strstr(address, "://"), *colon, *bracket;
    char why[256];

    if (fwd_config_parse_addr(address, &a, why, sizeof(why)) != 0 || a.scheme == FWD_ADDR_TLS) {
        snprintf(err, errlen,
                 "invalid FWDLOG_METRICS_ADDRESS=\"%s\": %s (want 127.0.0.1:9880, "
                 "tcp://127.0.0.1:9880 or unix:///path)",
                 address, a.scheme == FWD_ADDR_TLS ? "no TLS here" : why);
        return -1;
    }
    if (a.scheme == FWD_ADDR_UNIX) {
        if ((s->unix_path = strdup(a.path)) == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        return listen_path(a.path, err, errlen);
    }
    host = host ? host + 3 : address;
    colon = strrchr(host, ':');
    bracket = strrchr(host, ']');
    if (colon == NULL || (bracket != NULL && colon < bracket) || colon[1] == '\0') {
        snprintf(err, errlen,
                 "invalid FWDLOG_METRICS_ADDRESS=\"%s\": give the port, as in 127.0.0.1:9880",
                 address);
        return -1;
    }
    return listen_tcp(&a, address, err, errlen);
}

struct fwd_scrape *fwd_scrape_create(struct fwd_loop *loop, const char *address,
                                     const struct fwd_observe *o, char *err, size_t errlen)
{
    struct fwd_scrape *s = calloc(1, sizeof(*s));
    struct MHD_Daemon *mhd;
    int lfd = -1;

    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->obs = o;
    if ((lfd = open_listener(s, address, err, errlen)) < 0)
        goto fail;
    mhd = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, s,
                           MHD_OPTION_EXTERNAL_LOGGER, fwd_httpd_log, NULL,
                           MHD_OPTION_LISTEN_SOCKET, (MHD_socket)lfd, MHD_OPTION_CONNECTION_TIMEOUT,
                           (unsigned int)FWD_SCRAPE_TIMEOUT_S, MHD_OPTION_CONNECTION_LIMIT,
                           (unsigned int)FWD_SCRAPE_CONNECTIONS, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                           (size_t)(32 * 1024), MHD_OPTION_END);
    if (mhd == NULL) {
        snprintf(err, errlen, "cannot start the HTTP server on FWDLOG_METRICS_ADDRESS=\"%s\"",
                 address);
        goto fail;
    }
    lfd = -1; /* MHD owns it now */
    if (fwd_httpd_attach(&s->http, loop, mhd) < 0) {
        snprintf(err, errlen, "cannot watch the scrape listener");
        goto fail;
    }
    return s;
fail:
    if (lfd >= 0)
        close(lfd);
    fwd_scrape_destroy(s);
    return NULL;
}

void fwd_scrape_destroy(struct fwd_scrape *s)
{
    if (s == NULL)
        return;
    fwd_httpd_release(&s->http);
    if (s->unix_path != NULL)
        unlink(s->unix_path);
    free(s->unix_path);
    free(s);
}
