/*
 * handshake.c - the shared-key handshake state machine (see fwd_handshake.h).
 */
#include "fwd_handshake.h"
#include "fwd_log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void fwd_handshake_init(struct fwd_handshake *h, const char *shared_key, const char *username,
                        const char *password, const char *self_hostname)
{
    memset(h, 0, sizeof(*h));
    h->shared_key = shared_key;
    h->username = username;
    h->password = password;
    snprintf(h->host, sizeof(h->host), "%s", self_hostname);
    if (h->host[0] == '\0' && gethostname(h->host, sizeof(h->host) - 1) == -1)
        snprintf(h->host, sizeof(h->host), "fwdlog");
}

static int on_helo(struct fwd_handshake *h, const uint8_t *in, size_t len, size_t *used,
                   uint8_t *out, size_t *outlen, char *err, size_t errlen)
{
    int r = fwd_forward_parse_helo(in, len, used, &h->helo);

    if (r < 0) {
        snprintf(err, errlen, "handshake: expected HELO (does the aggregator use a shared key?)");
        return -EPROTO;
    }
    if (r == 0)
        return FWD_HANDSHAKE_MORE;
    if (h->helo.auth_len > 0 && h->username[0] == '\0') {
        /* the PING would carry an empty user name, and the server refuse it */
        snprintf(err, errlen,
                 "authentication failed: the aggregator asks for a user name and password (its "
                 "HELO carries an auth salt) and fluentd-username is not set: set "
                 "fluentd-username and fluentd-password (or fluentd-password-file)");
        return -EACCES;
    }
    if (fwd_forward_salt(h->salt) != 0) {
        snprintf(err, errlen, "handshake: no randomness for the PING salt");
        return -EIO;
    }
    *outlen = fwd_forward_ping(out, FWD_HANDSHAKE_PING_MAX, &h->helo, h->host, h->salt,
                               h->shared_key, h->username, h->password);
    if (*outlen == 0) {
        snprintf(err, errlen, "handshake: cannot build the PING");
        return -EIO;
    }
    h->pinged = true;
    return FWD_HANDSHAKE_SEND;
}

static int on_pong(struct fwd_handshake *h, const uint8_t *in, size_t len, size_t *used, char *err,
                   size_t errlen)
{
    struct fwd_pong pong;
    char why[400];
    int r = fwd_forward_parse_pong(in, len, used, &pong);

    if (r < 0) {
        snprintf(err, errlen, "handshake: expected PONG");
        return -EPROTO;
    }
    if (r == 0)
        return FWD_HANDSHAKE_MORE;
    /* checked against exactly what the PING said */
    if (fwd_forward_check_pong(&pong, &h->helo, h->host, h->salt, h->shared_key, why,
                               sizeof(why)) != 0) {
        snprintf(err, errlen, "authentication failed: %s", why);
        return -EACCES;
    }
    fwd_log_escape(h->peer, sizeof(h->peer), pong.host);
    return FWD_HANDSHAKE_DONE;
}

int fwd_handshake_feed(struct fwd_handshake *h, const uint8_t *in, size_t len, size_t *used,
                       uint8_t out[FWD_HANDSHAKE_PING_MAX], size_t *outlen, char *err,
                       size_t errlen)
{
    int r;

    *used = 0;
    *outlen = 0;
    r = h->pinged ? on_pong(h, in, len, used, err, errlen)
                  : on_helo(h, in, len, used, out, outlen, err, errlen);
    if (r == FWD_HANDSHAKE_MORE && len >= FWD_HANDSHAKE_MSG_MAX) {
        snprintf(err, errlen, "handshake: reply too long");
        return -EPROTO;
    }
    return r;
}

const char *fwd_handshake_closed_why(const struct fwd_handshake *h)
{
    if (!h->pinged)
        return "connection closed by the aggregator before its HELO";
    /* Fluent Bit refuses a PING this way; Fluentd would have sent PONG false with a reason */
    if (h->helo.auth_len > 0)
        return "authentication failed: the aggregator closed the connection after our PING, "
               "without a PONG (Fluent Bit refuses a wrong shared key, user name or password "
               "so): check fluentd-shared-key (or fluentd-shared-key-file), fluentd-username and "
               "fluentd-password (or fluentd-password-file)";
    return "authentication failed: the aggregator closed the connection after our PING, "
           "without a PONG (Fluent Bit refuses a wrong shared key so): check fluentd-shared-key "
           "(or fluentd-shared-key-file)";
}
