/*
 * fwd_tls.h - TLS for aggregator connections: the SSL_CTX of a destination
 * (CA store, client certificate, verification), one session per connection,
 * and the read/writev transport that is plain or TLS alike.
 */
#ifndef FWD_TLS_H
#define FWD_TLS_H

#include "fwd_config.h"

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

/* The context for cfg's tls:// addresses. NULL with the reason (naming the option) in err. */
SSL_CTX *fwd_tls_context(const struct fwd_config *cfg, char *err, size_t errlen);
/*
 * A client session on fd that verifies name (a host name, or an IP literal:
 * then verified as an IP and sent without SNI) unless insecure. NULL with the
 * reason in err.
 */
SSL *fwd_tls_session(SSL_CTX *ctx, int fd, const char *name, bool insecure, char *err,
                     size_t errlen);
/*
 * One step of the TLS handshake. 0: established; -EAGAIN: wait for *events
 * (EPOLLIN or EPOLLOUT) and call again; -EPROTO with the reason in err.
 */
int fwd_tls_handshake(SSL *tls, uint32_t *events, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* read(2) or SSL_read: >0 bytes, 0 at the peer's close, -1 with errno (EAGAIN: later). */
ssize_t fwd_transport_read(int fd, SSL *tls, void *buf, size_t len);
/* sendmsg(2) or one SSL_write per piece: bytes written, or -1 with errno (EAGAIN: later). */
ssize_t fwd_transport_writev(int fd, SSL *tls, const struct msghdr *msg);

#endif
