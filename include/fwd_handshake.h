/*
 * fwd_handshake.h - the shared-key handshake of Forward v1, as a state machine.
 *
 * The server speaks first: HELO (nonce, auth salt, keepalive). We answer with
 * PING (our hostname, a random salt, the digest of salt, hostname, nonce and
 * key, and the user credentials when the HELO asked for them), and the server
 * answers PONG, whose digest is checked against exactly what our PING said.
 * Fluentd sends its nonce as bin, Fluent Bit as str; both are accepted.
 * Fluentd refuses a wrong key with PONG false; Fluent Bit just closes. Pure:
 * fed bytes, it says what to send; the caller owns the socket.
 */
#ifndef FWD_HANDSHAKE_H
#define FWD_HANDSHAKE_H

#include "fwd_forward.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The most bytes a PING takes. */
#define FWD_HANDSHAKE_PING_MAX 1024

struct fwd_handshake {
    const char *shared_key, *username, *password; /* the caller's; outlive the handshake */
    struct fwd_helo helo;                         /* what the server sent */
    char salt[33];                                /* our PING salt */
    char host[256];                               /* the hostname our PING named */
    bool pinged;                                  /* PING built, waiting for PONG */
    char peer[FWD_HANDSHAKE_FIELD_MAX + 1];       /* the server's hostname, from PONG */
};

enum fwd_handshake_step {
    FWD_HANDSHAKE_MORE = 0, /* feed more bytes */
    FWD_HANDSHAKE_SEND = 1, /* send out[0..*outlen) whole, then feed the rest again */
    FWD_HANDSHAKE_DONE = 2, /* authenticated: records may follow */
};

/*
 * self_hostname: what our PING names (empty: the host's name). The strings
 * must outlive h.
 */
void fwd_handshake_init(struct fwd_handshake *h, const char *shared_key, const char *username,
                        const char *password, const char *self_hostname);
/*
 * Feed the bytes received so far (in[0..len)); *used of them were taken.
 * Returns an enum fwd_handshake_step, or a negative errno with the reason in
 * err: -EPROTO (not a HELO or PONG, or too long), -EACCES (the server refused
 * us, its digest is wrong, or its HELO asks for a user and username is
 * empty), -EIO (no randomness for the salt).
 */
int fwd_handshake_feed(struct fwd_handshake *h, const uint8_t *in, size_t len, size_t *used,
                       uint8_t out[FWD_HANDSHAKE_PING_MAX], size_t *outlen, char *err,
                       size_t errlen) __attribute__((warn_unused_result));
/*
 * What it means that the server closed the connection at this step (before
 * its HELO, or after our PING: a refusal without a reason, naming the options
 * to check). Static storage.
 */
const char *fwd_handshake_closed_why(const struct fwd_handshake *h);

#endif
