/*
 * fwd_scrape.h - the HTTP side of fwd_observe.h: GET /metrics and GET
 * /healthz answered on a libmicrohttpd connection (the plugin socket uses
 * fwd_scrape_reply too), and the scrape listener FWDLOG_METRICS_ADDRESS
 * names, which serves those two and nothing else.
 *
 * The listener is libmicrohttpd in external-epoll mode on the daemon's loop,
 * as the plugin API is: at most FWD_SCRAPE_CONNECTIONS connections, each
 * closed after FWD_SCRAPE_TIMEOUT_S idle, request headers within MHD's
 * per-connection memory limit, bodies (1 MiB at most) thrown away. Any method but GET and
 * HEAD, and any other path, is 405, so no plugin API call can be made on it.
 */
#ifndef FWD_SCRAPE_H
#define FWD_SCRAPE_H

#include "fwd_loop.h"
#include "fwd_observe.h"

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>

struct fwd_scrape;

/* True for the paths fwd_scrape_reply answers (/metrics, /healthz). */
bool fwd_scrape_path(const char *url);
/*
 * Queue the answer to GET url (a fwd_scrape_path) on conn: the exposition
 * (200, text/plain; version=0.0.4), the health verdict (200 or 503, JSON), or
 * 500 with a JSON {"Err":...} when it cannot be made.
 */
enum MHD_Result fwd_scrape_reply(const struct fwd_observe *o, struct MHD_Connection *conn,
                                 const char *url);

/*
 * Listen on address (host:port or tcp://host:port with an IP address, [::1]:port
 * for IPv6, or unix:///path) and serve scrapes from loop. o is borrowed for the
 * listener's life. NULL with a message naming FWDLOG_METRICS_ADDRESS in err.
 */
struct fwd_scrape *fwd_scrape_create(struct fwd_loop *loop, const char *address,
                                     const struct fwd_observe *o, char *err, size_t errlen);
/* Stop serving and close every connection (a unix socket file is removed). NULL is fine. */
void fwd_scrape_destroy(struct fwd_scrape *s);

#endif
