/*
 * fwd_observe.h - what an operator sees: the Prometheus exposition served as
 * GET /metrics and the health verdict served as GET /healthz, on the plugin
 * socket and on the scrape listener (fwd_scrape.h) alike.
 *
 * It reads the loop, the registry and the outputs when asked and keeps no
 * series of its own, so a container's series go when its StopLogging does.
 */
#ifndef FWD_OBSERVE_H
#define FWD_OBSERVE_H

#include "fwd_buf.h"
#include "fwd_container.h"
#include "fwd_loop.h"
#include "fwd_output.h"

#include <stdint.h>

struct fwd_observe;

/*
 * Everything borrowed for the observer's life. health_window_ms: a
 * destination holding data that delivered nothing for this long is failing
 * (FWDLOG_HEALTH_WINDOW). NULL on ENOMEM.
 */
struct fwd_observe *fwd_observe_create(struct fwd_loop *loop, struct fwd_registry *reg,
                                       struct fwd_outputs *outputs, uint64_t health_window_ms);
void fwd_observe_destroy(struct fwd_observe *o);

/*
 * The exposition (text format 0.0.4) appended to out, which bounds it.
 * 0, -EMSGSIZE (out's cap), -ENOMEM.
 */
int fwd_observe_metrics(const struct fwd_observe *o, struct fwd_buf *out)
    __attribute__((warn_unused_result));
/*
 * The health verdict: *status 200 ({"status":"ok",...}) or 503
 * ({"status":"failing","failing":[...]}), a NUL-terminated JSON body in out.
 * 0 or -ENOMEM.
 */
int fwd_observe_health(const struct fwd_observe *o, struct fwd_buf *out, unsigned *status)
    __attribute__((warn_unused_result));

#endif
