/*
 * plugin_api.c - Docker plugin API over libmicrohttpd.
 *
 * MHD runs without threads of its own (MHD_USE_EPOLL, no internal polling):
 * its epoll fd sits in our loop, MHD_run() is called when it is readable, and
 * MHD_get_timeout() arms a loop timer. Handlers therefore run on the loop
 * thread, between FIFO reads, which is what makes StopLogging's drain simple.
 * Facts from moby (../shared/reference/docker-logging-plugin.md §1): dockerd
 * sends no Content-Type, JSON bodies with Content-Length, Host may be
 * anything; it decodes Capabilities as {"Cap":{...}}; any reply body must be
 * JSON. Bodies are capped at FWD_API_BODY_MAX (413).
 */
#define FWD_LOG_MODULE "api"
#include "fwd_plugin_api.h"
#include "fwd_buf.h"
#include "fwd_info.h"
#include "fwd_limits.h"
#include "fwd_log.h"

#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define CONTENT_TYPE "application/vnd.docker.plugins.v1.2+json"

struct fwd_plugin_api {
    struct fwd_loop *loop;
    struct MHD_Daemon *mhd;
    struct fwd_io io;
    struct fwd_timer timer;
    struct fwd_registry *reg;
    struct fwd_outputs *outputs;
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

static enum MHD_Result metrics(struct fwd_plugin_api *api, struct MHD_Connection *conn)
{
    struct fwd_registry_stats rs;
    struct fwd_output_stats os;
    struct fwd_buf out;
    char buf[3072];
    enum MHD_Result ret;

    fwd_registry_stats(api->reg, &rs);
    fwd_outputs_stats(api->outputs, &os);
    snprintf(buf, sizeof(buf),
             "fwdlog_containers %llu\n"
             "fwdlog_frames_total %llu\n"
             "fwdlog_records_total %llu\n"
             "fwdlog_fifo_bytes_total %llu\n"
             "fwdlog_corrupt_streams_total %llu\n"
             "fwdlog_discarded_bytes_total %llu\n"
             "fwdlog_records_lost_total %llu\n"
             "fwdlog_records_sent_total %llu\n"
             "fwdlog_batches_sent_total %llu\n"
             "fwdlog_bytes_sent_total %llu\n"
             "fwdlog_records_dropped_total %llu\n"
             "fwdlog_batches_dropped_total %llu\n"
             "fwdlog_connects_total %llu\n"
             "fwdlog_connection_failures_total %llu\n"
             "fwdlog_queued_bytes %llu\n"
             "fwdlog_destinations %llu\n"
             "fwdlog_memory_bytes %llu\n"
             "fwdlog_spool_bytes %llu\n"
             "fwdlog_spooled_batches_total %llu\n"
             "fwdlog_replayed_records_total %llu\n"
             "fwdlog_spool_corrupt_records_total %llu\n"
             "fwdlog_blocked_destinations %llu\n"
             "fwdlog_resyncs_total %llu\n"
             "fwdlog_restored_streams_total %llu\n"
             "fwdlog_stream_state_failures_total %llu\n"
             "fwdlog_records_rejected_total %llu\n"
             "fwdlog_batches_rejected_total %llu\n",
             (unsigned long long)rs.containers, (unsigned long long)rs.frames,
             (unsigned long long)rs.records, (unsigned long long)rs.bytes_read,
             (unsigned long long)rs.corrupt_streams, (unsigned long long)rs.discarded_bytes,
             (unsigned long long)rs.records_lost, (unsigned long long)os.records_sent,
             (unsigned long long)os.batches_sent, (unsigned long long)os.bytes_sent,
             (unsigned long long)os.records_dropped, (unsigned long long)os.batches_dropped,
             (unsigned long long)os.connects, (unsigned long long)os.connection_failures,
             (unsigned long long)os.queued_bytes, (unsigned long long)os.destinations,
             (unsigned long long)os.memory_bytes, (unsigned long long)os.spool_bytes,
             (unsigned long long)os.spooled_batches, (unsigned long long)os.replayed_records,
             (unsigned long long)os.spool_corrupt, (unsigned long long)os.blocked,
             (unsigned long long)rs.resyncs, (unsigned long long)rs.restored,
             (unsigned long long)rs.state_failures, (unsigned long long)os.records_rejected,
             (unsigned long long)os.batches_rejected);
    fwd_buf_init(&out, 4u * 1024u * 1024u);
    if (fwd_buf_append(&out, buf, strlen(buf)) != 0 || fwd_registry_metrics(api->reg, &out) != 0 ||
        fwd_buf_append(&out, "", 1) != 0) {
        fwd_buf_release(&out);
        return reply_err(conn, 500, "fwdlog: out of memory");
    }
    ret = reply(conn, 200, (const char *)out.data, "text/plain; version=0.0.4");
    fwd_buf_release(&out);
    return ret;
}

static enum MHD_Result dispatch(struct fwd_plugin_api *api, struct MHD_Connection *conn,
                                const char *url, const char *method, struct request *req)
{
    bool post = strcmp(method, "POST") == 0;

    if (strcmp(url, "/metrics") == 0 && strcmp(method, "GET") == 0)
        return metrics(api, conn);
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

static void on_mhd_timer(struct fwd_timer *t);

static void run_mhd(struct fwd_plugin_api *api)
{
    MHD_UNSIGNED_LONG_LONG ms;

    MHD_run(api->mhd);
    if (MHD_get_timeout(api->mhd, &ms) == MHD_YES)
        fwd_loop_timer_start(api->loop, &api->timer, ms, on_mhd_timer, api);
    else
        fwd_loop_timer_stop(api->loop, &api->timer);
}

static void on_mhd_timer(struct fwd_timer *t)
{
    run_mhd(t->ctx);
}

static void on_mhd_io(struct fwd_io *io, uint32_t events)
{
    (void)events;
    run_mhd(io->ctx);
}

__attribute__((format(printf, 2, 0))) static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];

    (void)cls;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    fwd_log(FWD_LOG_DEBUG, "libmicrohttpd: %s", msg);
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
                                             struct fwd_registry *reg, struct fwd_outputs *outputs,
                                             char *err, size_t errlen)
{
    struct fwd_plugin_api *api = calloc(1, sizeof(*api));
    const union MHD_DaemonInfo *di;
    int lfd = -1;

    if (api == NULL || (api->path = strdup(socket_path)) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    api->loop = loop;
    api->reg = reg;
    api->outputs = outputs;
    lfd = listen_unix(socket_path, err, errlen);
    if (lfd < 0)
        goto fail;
    /* The external logger goes first, so every MHD message goes through our log. */
    api->mhd = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, api,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)lfd,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, api, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned int)120, MHD_OPTION_CONNECTION_LIMIT, (unsigned int)512, MHD_OPTION_END);
    if (api->mhd == NULL) {
        snprintf(err, errlen, "cannot start the HTTP server on %s", socket_path);
        goto fail;
    }
    lfd = -1; /* MHD owns it now */
    di = MHD_get_daemon_info(api->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    if (di == NULL || fwd_loop_io_add(loop, &api->io, di->epoll_fd, EPOLLIN, on_mhd_io, api) < 0) {
        snprintf(err, errlen, "cannot watch the HTTP server");
        goto fail;
    }
    run_mhd(api);
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
    if (api->mhd != NULL) {
        fwd_loop_io_del(api->loop, &api->io);
        fwd_loop_timer_stop(api->loop, &api->timer);
        MHD_stop_daemon(api->mhd);
        unlink(api->path);
    }
    free(api->path);
    free(api);
}
