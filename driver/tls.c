/*
 * tls.c - TLS contexts, sessions and the plain-or-TLS transport (see fwd_tls.h).
 */
#include "fwd_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <unistd.h>

/* The last OpenSSL error as text (for messages that name the option at fault). */
static const char *tls_error(char *buf, size_t n)
{
    unsigned long e = ERR_get_error();

    ERR_clear_error();
    if (e == 0)
        snprintf(buf, n, "unknown error");
    else
        ERR_error_string_n(e, buf, n);
    return buf;
}

SSL_CTX *fwd_tls_context(const struct fwd_config *c, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    char e[256];

    if (ctx == NULL) {
        snprintf(err, errlen, "TLS: %s", tls_error(e, sizeof(e)));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* Batches are written from wherever a short write stopped: partial writes, moving buffer. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (c->tls_ca_file[0] ? SSL_CTX_load_verify_locations(ctx, c->tls_ca_file, NULL) != 1
                          : SSL_CTX_set_default_verify_paths(ctx) != 1) {
        snprintf(err, errlen, "log-opt fluentd-tls-ca-file=\"%s\": cannot load CA certificates: %s",
                 c->tls_ca_file[0] ? c->tls_ca_file : "(system store)", tls_error(e, sizeof(e)));
        goto fail;
    }
    if (c->tls_cert_file[0]) {
        if (SSL_CTX_use_certificate_chain_file(ctx, c->tls_cert_file) != 1) {
            snprintf(err, errlen, "log-opt fluentd-tls-cert-file=\"%s\": %s", c->tls_cert_file,
                     tls_error(e, sizeof(e)));
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, c->tls_key_file, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            snprintf(err, errlen,
                     "log-opt fluentd-tls-key-file=\"%s\": not the key of the certificate: %s",
                     c->tls_key_file, tls_error(e, sizeof(e)));
            goto fail;
        }
    }
    SSL_CTX_set_verify(ctx, c->tls_insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

static bool ip_literal(const char *s)
{
    unsigned char b[16];

    return inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1;
}

SSL *fwd_tls_session(SSL_CTX *ctx, int fd, const char *name, bool insecure, char *err,
                     size_t errlen)
{
    SSL *tls = SSL_new(ctx);

    if (tls == NULL || SSL_set_fd(tls, fd) != 1) {
        snprintf(err, errlen, "TLS: cannot create a session");
        SSL_free(tls);
        return NULL;
    }
    if (!ip_literal(name))
        SSL_set_tlsext_host_name(tls, name);
    if (!insecure) {
        /* the certificate must name the aggregator, not just chain to a trusted CA */
        int ok = ip_literal(name) ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(tls), name)
                                  : SSL_set1_host(tls, name);
        if (ok != 1) {
            snprintf(err, errlen, "TLS: cannot set the name to verify");
            SSL_free(tls);
            return NULL;
        }
    }
    return tls;
}

int fwd_tls_handshake(SSL *tls, uint32_t *events, char *err, size_t errlen)
{
    int r, e;
    long v;
    char buf[256];

    ERR_clear_error();
    r = SSL_connect(tls);
    if (r == 1)
        return 0;
    e = SSL_get_error(tls, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        *events = e == SSL_ERROR_WANT_READ ? EPOLLIN | EPOLLRDHUP : EPOLLOUT;
        return -EAGAIN;
    }
    v = SSL_get_verify_result(tls);
    if (v != X509_V_OK)
        snprintf(err, errlen,
                 "TLS: certificate verification failed: %s (check fluentd-tls-ca-file and "
                 "fluentd-tls-server-name)",
                 X509_verify_cert_error_string(v));
    else
        snprintf(err, errlen, "TLS handshake failed: %s", tls_error(buf, sizeof(buf)));
    return -EPROTO;
}

ssize_t fwd_transport_read(int fd, SSL *tls, void *buf, size_t len)
{
    int r, e;

    if (tls == NULL)
        return read(fd, buf, len);
    /* SSL_ERROR_SYSCALL reports through errno: a stale EAGAIN must not survive into it. */
    ERR_clear_error();
    errno = 0;
    r = SSL_read(tls, buf, len > INT_MAX ? INT_MAX : (int)len);
    if (r > 0)
        return r;
    e = SSL_get_error(tls, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        errno = EAGAIN;
        return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN ||
        (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && (errno == 0 || errno == ECONNRESET)))
        return 0; /* close_notify, or the peer just went away */
    errno = e == SSL_ERROR_SYSCALL && errno != 0 ? errno : EPROTO;
    return -1;
}

ssize_t fwd_transport_writev(int fd, SSL *tls, const struct msghdr *msg)
{
    ssize_t total = 0;

    if (tls == NULL)
        return sendmsg(fd, msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    for (size_t i = 0; i < msg->msg_iovlen; i++) {
        size_t len = msg->msg_iov[i].iov_len;
        int r, e;

        ERR_clear_error();
        errno = 0;
        r = SSL_write(tls, msg->msg_iov[i].iov_base, len > INT_MAX ? INT_MAX : (int)len);
        if (r > 0) {
            total += r;
            if ((size_t)r < len)
                break;
            continue;
        }
        e = SSL_get_error(tls, r);
        if (total > 0)
            break;
        errno = e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? EAGAIN
                : e == SSL_ERROR_SYSCALL && errno != 0                ? errno
                                                                      : EPIPE;
        return -1;
    }
    return total;
}
