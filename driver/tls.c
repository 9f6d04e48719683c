/*
 * tls.c - TLS contexts, sessions and the plain-or-TLS transport (see fwd_tls.h).
 */
#include "fwd_tls.h"
#include "fwd_file.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* PEM files are small; a bigger one is not what the option should name. */
#define PEM_MAX (1u << 20)

/*
 * Read a PEM file named by a log-opt without blocking the loop on a FIFO or
 * device (fwd_file_read: O_NONBLOCK, O_NOFOLLOW, regular files only, bounded).
 * A memory BIO over it, or NULL with the reason in err.
 */
static BIO *pem_bio(const char *opt, const char *path, char **buf, char *err, size_t errlen)
{
    size_t len;
    int rc = fwd_file_read(path, PEM_MAX, buf, &len);
    BIO *bio;

    if (rc < 0) {
        snprintf(err, errlen, "log-opt %s=\"%s\": cannot read it: %s", opt, path,
                 rc == -EINVAL  ? "not a regular file"
                 : rc == -EFBIG ? "larger than 1 MiB"
                                : strerror(-rc));
        return NULL;
    }
    bio = BIO_new_mem_buf(*buf, (int)len);
    if (bio == NULL)
        snprintf(err, errlen, "out of memory");
    return bio;
}

/* Every certificate of the CA file goes into the context's store. 0 or -1 with err. */
static int load_ca(SSL_CTX *ctx, const char *path, char *err, size_t errlen)
{
    char *buf = NULL;
    BIO *bio = pem_bio("fluentd-tls-ca-file", path, &buf, err, errlen);
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    X509 *x;
    int n = 0;

    if (bio == NULL) {
        free(buf);
        return -1;
    }
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        n += X509_STORE_add_cert(store, x) == 1;
        X509_free(x);
    }
    ERR_clear_error(); /* the end of the file reads as an error */
    BIO_free(bio);
    free(buf);
    if (n == 0) {
        snprintf(err, errlen, "log-opt fluentd-tls-ca-file=\"%s\": cannot load CA certificates: %s",
                 path, "no PEM certificate in it");
        return -1;
    }
    return 0;
}

/* The client certificate and the chain after it. 0 or -1 with err. */
static int load_cert(SSL_CTX *ctx, const char *path, char *err, size_t errlen)
{
    char *buf = NULL, e[256];
    BIO *bio = pem_bio("fluentd-tls-cert-file", path, &buf, err, errlen);
    X509 *x;
    int rc = -1;

    if (bio == NULL) {
        free(buf);
        return -1;
    }
    x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    if (x == NULL || SSL_CTX_use_certificate(ctx, x) != 1)
        snprintf(err, errlen, "log-opt fluentd-tls-cert-file=\"%s\": %s", path,
                 tls_error(e, sizeof(e)));
    else
        rc = 0;
    X509_free(x);
    while (rc == 0 && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL)
        if (SSL_CTX_add0_chain_cert(ctx, x) != 1)
            X509_free(x);
    ERR_clear_error();
    BIO_free(bio);
    free(buf);
    return rc;
}

/* OpenSSL asks for the key's passphrase: fluentd-tls-key-password-file, never a tty. */
static int passphrase(char *out, int size, int rwflag, void *u)
{
    const char *pw = u;
    size_t n = strlen(pw);

    (void)rwflag;
    if (n == 0 || n >= (size_t)size)
        return 0;
    memcpy(out, pw, n);
    return (int)n;
}

/* The private key (decrypted with the password file's secret). 0 or -1 with err. */
static int load_key(SSL_CTX *ctx, const struct fwd_config *c, char *err, size_t errlen)
{
    char *buf = NULL, e[256];
    BIO *bio = pem_bio("fluentd-tls-key-file", c->tls_key_file, &buf, err, errlen);
    EVP_PKEY *key;
    int rc = -1;

    if (bio == NULL) {
        free(buf);
        return -1;
    }
    key = PEM_read_bio_PrivateKey(bio, NULL, passphrase, (void *)c->tls_key_password);
    if (key == NULL) {
        bool encrypted = strstr(buf, "ENCRYPTED") != NULL;

        if (encrypted && c->tls_key_password[0] == '\0')
            snprintf(err, errlen,
                     "log-opt fluentd-tls-key-file=\"%s\": the key is encrypted: give its "
                     "passphrase with fluentd-tls-key-password-file",
                     c->tls_key_file);
        else
            snprintf(err, errlen, "log-opt fluentd-tls-key-file=\"%s\": %s%s", c->tls_key_file,
                     encrypted ? "wrong passphrase (fluentd-tls-key-password-file)? "
                               : "not a PEM private key: ",
                     tls_error(e, sizeof(e)));
    } else if (SSL_CTX_use_PrivateKey(ctx, key) != 1 || SSL_CTX_check_private_key(ctx) != 1)
        snprintf(err, errlen,
                 "log-opt fluentd-tls-key-file=\"%s\": not the key of the certificate: %s",
                 c->tls_key_file, tls_error(e, sizeof(e)));
    else
        rc = 0;
    EVP_PKEY_free(key);
    BIO_free(bio);
    OPENSSL_cleanse(buf, strlen(buf));
    free(buf);
    return rc;
}

/*
 * Files are read into memory first (fwd_file_read), never opened by OpenSSL, so
 * a FIFO or device named by an option cannot block the loop, and an encrypted
 * key never prompts on a tty.
 */
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
    SSL_CTX_set_default_passwd_cb(ctx, passphrase);
    SSL_CTX_set_default_passwd_cb_userdata(ctx, (void *)"");
    if (c->tls_ca_file[0] ? load_ca(ctx, c->tls_ca_file, err, errlen) != 0
                          : SSL_CTX_set_default_verify_paths(ctx) != 1) {
        if (!c->tls_ca_file[0])
            snprintf(err, errlen,
                     "log-opt fluentd-tls-ca-file=\"(system store)\": cannot load CA "
                     "certificates: %s",
                     tls_error(e, sizeof(e)));
        goto fail;
    }
    if (c->tls_cert_file[0] &&
        (load_cert(ctx, c->tls_cert_file, err, errlen) != 0 || load_key(ctx, c, err, errlen) != 0))
        goto fail;
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
