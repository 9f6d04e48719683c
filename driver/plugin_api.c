/*
 * plugin_api.c - Docker plugin API over libmicrohttpd.
 *
 * MHD runs without threads of its own, driven by our loop (httpd.c), so
 * handlers run on the loop thread, between FIFO reads, which is what makes
 * StopLogging's drain simple.
 * Facts from moby (../shared/reference/docker-logging-plugin.md §1): dockerd
 * sends no Content-Type, JSON bodies with Content-Length, Host may be
 * anything; it decodes Capabilities as {"Cap":{...}}; any reply body must be
 * JSON. Bodies are capped at FWD_API_BODY_MAX (413).
 */
#define FWD_LOG_MODULE "api"
#include "fwd_plugin_api.h"
#include "fwd_buf.h"
#include "fwd_httpd.h"
#include "fwd_info.h"
#include "fwd_limits.h"
#include "fwd_log.h"
#include "fwd_scrape.h"

#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define CONTENT_TYPE "application/vnd.docker.plugins.v1.2+json"

struct fwd_plugin_api {
    struct fwd_httpd http;
    struct fwd_registry *reg;
    const struct fwd_observe *obs;
    char *path;
};

struct request {
    struct fwd_buf body;
    bool too_big;
};

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *body,
                             const char *ctype)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result ret;

    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", ctype);
    ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* {"Err": msg} with proper JSON escaping. */
static enum MHD_Result reply_err(struct MHD_Connection *conn, unsigned status, const char *msg)
{
    json_t *o = json_pack("{s:s}", "Err", msg);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    enum MHD_Result ret;

    ret = reply(conn, status, s ? s : "{\"Err\":\"out of memory\"}", CONTENT_TYPE);
    free(s);
    json_decref(o);
    return ret;
}

static enum MHD_Result start_logging(struct fwd_plugin_api *api, struct MHD_Connection *conn,
                                     struct request *req)
{
    struct fwd_info info;
    char *file = NULL, err[2048];
    char msg[2100];
    int rc;

    /* jansson would say "line -1 column -1: wrong arguments"; say what happened (an empty
     * StopLogging is dockerd's retry and answered with success, an empty start is not) */
    if (req->body.len == 0)
        return reply_err(conn, 400,
                         "fwdlog: empty request body: StartLogging needs {\"File\":...,"
                         "\"Info\":{...}}");
    rc = fwd_info_parse_start((const char *)req->body.data, req->body.len, &file, &info, err,
                              sizeof(err));
    if (rc < 0)
        return reply_err(conn, rc == -ENOMEM ? 500 : 400, err);
    rc = fwd_registry_start(api->reg, file, &info, (const char *)req->body.data, req->body.len, err,
                            sizeof(err));
    if (rc < 0) {
        /* dockerd shows this as: failed to initialize logging driver: <Err> */
        fwd_log(FWD_LOG_WARN, "StartLogging refused for %s: %s", file, err);
        snprintf(msg, sizeof(msg), "fwdlog: %s", err);
        free(file);
        return reply_err(conn, 200, msg);
    }
    free(file);
    return reply(conn, 200, "{\"Err\":\"\"}", CONTENT_TYPE);
}

static enum MHD_Result stop_logging(struct fwd_plugin_api *api, struct MHD_Connection *conn,
                                    struct request *req)
{
    char *file = NULL, err[512];

    if (req->body.len == 0) {
        /*
         * dockerd's plugin client retries a call whose connection broke (fwdlogd was
         * killed while the call waited) with the body reader the first attempt drained:
         * an empty body (moby pkg/plugins client.go callWithRetry). An error here would
         * make dockerd give up before it closes its end of the FIFO, which then never
         * reaches EOF. Answer success: dockerd closes the FIFO, and the stream ends at
         * its EOF, drained, as any stream whose writer left.
         */
        fwd_log(FWD_LOG_INFO, "StopLogging with an empty body (dockerd retrying a call a "
                              "restart cut off): that stream ends when dockerd closes it");
        return reply(conn, 200, "{\"Err\":\"\"}", CONTENT_TYPE);
    }
    if (fwd_info_parse_stop((const char *)req->body.data, req->body.len, &file, err, sizeof(err)) <
        0)
        return reply_err(conn, 400, err);
    fwd_registry_stop(api->reg, file);
    free(file);
    return reply(conn, 200, "{\"Err\":\"\"}", CONTENT_TYPE);
}

static enum MHD_Result dispatch(struct fwd_plugin_api *api, struct MHD_Connection *conn,
                                const char *url, const char *method, struct request *req)
{
    bool post = strcmp(method, "POST") == 0;

    if (fwd_scrape_path(url) && strcmp(method, "GET") == 0)
        return fwd_scrape_reply(api->obs, conn, url);
    if (strcmp(url, "/Plugin.Activate") != 0 && strcmp(url, "/LogDriver.Capabilities") != 0 &&
        strcmp(url, "/LogDriver.StartLogging") != 0 && strcmp(url, "/LogDriver.StopLogging") != 0) {
        char msg[300];
        snprintf(msg, sizeof(msg), "fwdlog: unknown endpoint %.200s", url);
        return reply_err(conn, 404, msg);
    }
    if (!post)
        return reply_err(conn, 405, "fwdlog: plugin API calls must be POST");
    if (req->too_big)
        return reply_err(conn, 413, "fwdlog: request body larger than 1 MiB");
    if (strcmp(url, "/Plugin.Activate") == 0)
        return reply(conn, 200, "{\"Implements\":[\"LogDriver\"]}", CONTENT_TYPE);
    if (strcmp(url, "/LogDriver.Capabilities") == 0)
        return reply(conn, 200, "{\"Cap\":{\"ReadLogs\":false},\"Err\":\"\"}", CONTENT_TYPE);
    if (strcmp(url, "/LogDriver.StartLogging") == 0)
        return start_logging(api, conn, req);
    return stop_logging(api, conn, req);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **req_cls)
{
    struct fwd_plugin_api *api = cls;
    struct request *req = *req_cls;

    (void)version;
    if (req == NULL) {
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");

        req = calloc(1, sizeof(*req));
        if (req == NULL)
            return MHD_NO;
        fwd_buf_init(&req->body, FWD_API_BODY_MAX);
        *req_cls = req;
        /* Too big: read and discard the body (nothing is stored), then answer 413, so the
         * client sees the reply instead of a connection reset mid-upload. */
        if (cl != NULL && strtoull(cl, NULL, 10) > FWD_API_BODY_MAX)
            req->too_big = true;
        return MHD_YES;
    }
    if (*upload_size > 0) {
        if (!req->too_big && fwd_buf_append(&req->body, upload_data, *upload_size) != 0) {
            req->too_big = true;
            fwd_buf_release(&req->body);
        }
        *upload_size = 0;
        return MHD_YES;
    }
    return dispatch(api, conn, url, method, req);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct request *req = *req_cls;

    (void)cls;
    (void)conn;
    (void)toe;
    if (req != NULL) {
        fwd_buf_release(&req->body);
        free(req);
        *req_cls = NULL;
    }
}

static int listen_unix(const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int fd, n;

    /* Bind a temporary name and rename it into place once listening, so the socket
     * appears atomically: a client that sees it can connect (no ECONNREFUSED window),
     * and a stale socket left by a crashed run is replaced. */
    n = snprintf(sun.sun_path, sizeof(sun.sun_path), "%s.%d.tmp", path, (int)getpid());
    if (n < 0 || (size_t)n >= sizeof(sun.sun_path)) {
        snprintf(err, errlen, "socket path %s is too long", path);
        return -1;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    unlink(sun.sun_path);
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1 || listen(fd, 128) == -1 ||
        chmod(sun.sun_path, 0660) == -1 || rename(sun.sun_path, path) == -1) {
        snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(errno));
        unlink(sun.sun_path);
        close(fd);
        return -1;
    }
    return fd;
}

struct fwd_plugin_api *fwd_plugin_api_create(struct fwd_loop *loop, const char *socket_path,
                                             struct fwd_registry *reg,
                                             const struct fwd_observe *obs, char *err,
                                             size_t errlen)
{
    struct fwd_plugin_api *api = calloc(1, sizeof(*api));
    struct MHD_Daemon *mhd;
    int lfd = -1;

    if (api == NULL || (api->path = strdup(socket_path)) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    api->reg = reg;
    api->obs = obs;
    lfd = listen_unix(socket_path, err, errlen);
    if (lfd < 0)
        goto fail;
    /* The external logger goes first, so every MHD message goes through our log. */
    mhd = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, api,
                           MHD_OPTION_EXTERNAL_LOGGER, fwd_httpd_log, NULL,
                           MHD_OPTION_LISTEN_SOCKET, (MHD_socket)lfd, MHD_OPTION_NOTIFY_COMPLETED,
                           on_completed, api, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)120,
                           MHD_OPTION_CONNECTION_LIMIT, (unsigned int)512, MHD_OPTION_END);
    if (mhd == NULL) {
        snprintf(err, errlen, "cannot start the HTTP server on %s", socket_path);
        goto fail;
    }
    lfd = -1; /* MHD owns it now */
    if (fwd_httpd_attach(&api->http, loop, mhd) < 0) {
        snprintf(err, errlen, "cannot watch the HTTP server");
        unlink(socket_path);
        goto fail;
    }
    return api;
fail:
    if (lfd >= 0)
        close(lfd);
    fwd_plugin_api_destroy(api);
    return NULL;
}

void fwd_plugin_api_destroy(struct fwd_plugin_api *api)
{
    if (api == NULL)
        return;
    if (api->http.mhd != NULL) {
        fwd_httpd_release(&api->http);
        unlink(api->path);
    }
    free(api->path);
    free(api);
}
