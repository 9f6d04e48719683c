/*
 * fwd_resolve.h - asynchronous name resolution on the event loop (c-ares).
 *
 * One resolver per process holds a c-ares channel whose sockets and timeouts
 * are driven by the loop: no helper thread, no polling, and nothing blocks on
 * the network. A lookup reports through its callback, from the loop, with
 * every address of the name in the order to try them. A lookup can be
 * cancelled at any time; its callback is then never called.
 *
 * /etc/hosts is read by c-ares at each lookup (a small local file, as glibc
 * does); /etc/resolv.conf when the channel is made, and again when the file
 * changed and no lookup is under way.
 */
#ifndef FWD_RESOLVE_H
#define FWD_RESOLVE_H

#include "fwd_loop.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Addresses one lookup reports, at most (the rest are not tried). */
#define FWD_RESOLVE_MAX 16

struct fwd_resolver;
struct fwd_resolve_req;

struct fwd_sockaddr {
    struct sockaddr_storage sa;
    socklen_t len;
};

/* The answer of a lookup: n addresses, each with the port asked for. */
struct fwd_resolved {
    struct fwd_sockaddr addr[FWD_RESOLVE_MAX];
    unsigned n;
};

/*
 * status: 0 with res holding at least one address, or a negative errno
 * (-ENOENT: no such name, -ETIMEDOUT, -ECANCELED at resolver destruction, ...)
 * with why saying it for a person. res and why are borrowed for the call.
 */
typedef void (*fwd_resolve_cb)(void *ctx, int status, const struct fwd_resolved *res,
                               const char *why);

/* NULL with the reason in err. */
struct fwd_resolver *fwd_resolver_create(struct fwd_loop *loop, char *err, size_t errlen);
/* Pending lookups end with -ECANCELED (uncancelled ones). NULL is fine. */
void fwd_resolver_destroy(struct fwd_resolver *r);

/*
 * Look host up (a name or an address literal) for TCP port. A literal
 * answers at once: cb runs before this returns, and *out is NULL. Otherwise
 * *out is the pending lookup, valid until cb runs or fwd_resolve_cancel.
 * 0, or a negative errno (then cb is not called).
 */
int fwd_resolve_start(struct fwd_resolver *r, const char *host, uint16_t port, fwd_resolve_cb cb,
                      void *ctx, struct fwd_resolve_req **out) __attribute__((warn_unused_result));
/* Forget a pending lookup: its callback is never called. NULL is fine. */
void fwd_resolve_cancel(struct fwd_resolve_req *q);

#endif
