/*
 * fwd_plugin_api.h - the Docker plugin API, HTTP over a unix socket
 * (libmicrohttpd in external-epoll mode, driven by the fwd_loop):
 *   POST /Plugin.Activate            {"Implements":["LogDriver"]}
 *   POST /LogDriver.Capabilities     {"Cap":{"ReadLogs":false}}
 *   POST /LogDriver.StartLogging     {"Err":""} or {"Err":"why"}
 *   POST /LogDriver.StopLogging      {"Err":""}
 *   GET  /metrics                    Prometheus text format 0.0.4 (fwd_observe.h)
 *   GET  /healthz                    200 or 503 with a JSON verdict
 * Every reply has a JSON body (dockerd fails a call with an empty one).
 */
#ifndef FWD_PLUGIN_API_H
#define FWD_PLUGIN_API_H

#include "fwd_container.h"
#include "fwd_loop.h"
#include "fwd_observe.h"

struct fwd_plugin_api;

/*
 * Listen on socket_path (a stale socket file is replaced) and serve requests
 * from loop. reg and obs are borrowed for the API's life. NULL with the reason in err.
 */
struct fwd_plugin_api *fwd_plugin_api_create(struct fwd_loop *loop, const char *socket_path,
                                             struct fwd_registry *reg,
                                             const struct fwd_observe *obs, char *err,
                                             size_t errlen);
/* Stop serving, close connections and remove the socket file. NULL is fine. */
void fwd_plugin_api_destroy(struct fwd_plugin_api *api);

#endif
