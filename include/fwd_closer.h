/*
 * fwd_closer.h - graceful close of aggregator connections that are done.
 *
 * Closing a socket whose receive queue still holds bytes makes the kernel send
 * RST instead of FIN, and a peer that gets RST throws away what it had not
 * read yet: the tail of what we sent. TLS 1.3 servers send session tickets
 * right after the handshake, so without acks there are nearly always such
 * bytes. A connection handed to the closer gets close_notify (TLS), then
 * shutdown(SHUT_WR); what the peer still sends is read and discarded until
 * its EOF or a deadline, and only then is the socket closed.
 */
#ifndef FWD_CLOSER_H
#define FWD_CLOSER_H

#include "fwd_loop.h"

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

struct fwd_closer;

/* NULL on ENOMEM. */
struct fwd_closer *fwd_closer_create(struct fwd_loop *loop);
/* Closes what is still open at once. NULL is fine. */
void fwd_closer_destroy(struct fwd_closer *c);

/*
 * Close fd (and its TLS session, or NULL) gracefully within timeout_ms. Both
 * are consumed on every path: without memory, they are closed at once.
 */
void fwd_closer_add(struct fwd_closer *c, int fd, SSL *tls, uint64_t timeout_ms);
/* Connections still closing. */
size_t fwd_closer_pending(const struct fwd_closer *c);

#endif
