/*
 * fwd_conn.h - one aggregator connection of a destination.
 *
 * States:
 *   IDLE -> (data queued) RESOLVING -> CONNECTING [-> TLS] [-> HANDSHAKE] -> CONNECTED
 *   any failure -> BACKOFF -> RESOLVING ...
 * Names are resolved again on every connect (an aggregator that moves is found
 * again) by c-ares on the loop (resolve.c). Every resolved address is tried in
 * order before a connect counts as failed. Back-off is retry_wait * 2^(n-1),
 * capped at max-retry-wait, with jitter (a random wait in [w/2, w]).
 *
 * A connection takes batches from its destination's queue while it has room
 * (fwd_conn_take): at most LOOKAHEAD unwritten ones (ACK_WINDOW with acks), so
 * nearly everything queued stays where the overflow policy can reach it.
 * Without acks a batch counts as delivered once the kernel took all of it;
 * with acks, once its ack came, oldest first. When the connection fails, its
 * batches go back to the queue in order (a cut message is sent again whole:
 * the receiver discards one it could not read to the end).
 *
 * It reports to its owner through ops and never frees the owner or itself
 * from a callback; the owner frees it with fwd_conn_destroy from its own turn.
 * A connection that is done (destroyed, a planned reconnect) is closed
 * gracefully by the closer (closer.c); one that failed is closed at once.
 */
#ifndef FWD_CONN_H
#define FWD_CONN_H

#include "fwd_batch.h"
#include "fwd_buf.h"
#include "fwd_closer.h"
#include "fwd_config.h"
#include "fwd_handshake.h"
#include "fwd_loop.h"
#include "fwd_output.h"
#include "fwd_queue.h"
#include "fwd_resolve.h"

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>

enum fwd_conn_state {
    FWD_CONN_IDLE = 0,
    FWD_CONN_RESOLVING,
    FWD_CONN_CONNECTING,
    FWD_CONN_TLS,       /* tls://: the TLS handshake is under way */
    FWD_CONN_HANDSHAKE, /* shared key: waiting for HELO, then PONG; nothing else is written */
    FWD_CONN_CONNECTED,
    FWD_CONN_BACKOFF,
};

struct fwd_conn;

/* What a connection tells its owner (the destination). */
struct fwd_conn_ops {
    void (*ready)(struct fwd_conn *c);      /* connected: it may take batches */
    void (*failed)(struct fwd_conn *c);     /* failed (in BACKOFF), its batches back in the queue */
    void (*take_more)(struct fwd_conn *c);  /* it wrote what it took, or reconnects: feed it */
    bool (*has_data)(struct fwd_conn *c);   /* is anything queued for the destination? */
    void (*maybe_done)(struct fwd_conn *c); /* went quiet: the destination may be drained */
};

/* What the connections of a destination share. */
struct fwd_conn_env {
    struct fwd_loop *loop;
    struct fwd_resolver *resolver;
    struct fwd_closer *closer;
    const struct fwd_config *cfg;
    SSL_CTX *tls_ctx; /* NULL without tls:// */
    struct fwd_queue *q;
    struct fwd_output_stats *st;
    const struct fwd_conn_ops *ops;
    void *owner;
};

struct fwd_conn {
    const struct fwd_conn_env *env;
    struct fwd_addr addr;
    char label[300]; /* address for log lines */
    /*
     * Batches taken from the queue, oldest first. With acks, those before unsent
     * are written and wait for their ack (inflight of them); without, unsent is
     * always qhead.
     */
    struct fwd_batch *qhead, *qtail, *unsent;
    unsigned inflight, nq;
    struct fwd_buf reply; /* handshake and acks: bytes of a reply not yet complete */
    struct fwd_handshake hs;
    SSL *tls; /* tls://: this connection's session, NULL otherwise */
    enum fwd_conn_state state;
    int fd;
    struct fwd_io io;
    struct fwd_timer timer;
    uint32_t failures; /* in a row, since it was last connected */
    bool one_request;  /* HELO keepalive=false: one request per connection, then reconnect */
    unsigned written;  /* batches written whole on this connection */
    uint64_t connected_at;
    uint64_t last_progress;
    struct fwd_resolve_req *lookup; /* RESOLVING: the pending lookup */
    struct fwd_resolved addrs;      /* what the name resolved to */
    unsigned next_addr;             /* of those, the next to try */
};

void fwd_conn_init(struct fwd_conn *c, const struct fwd_conn_env *env, const struct fwd_addr *addr);
/* Close (gracefully when connected); its batches go back to the queue. */
void fwd_conn_destroy(struct fwd_conn *c);
/* Start connecting if it is IDLE. */
void fwd_conn_start(struct fwd_conn *c);
/* Connected, with room for one more batch. */
bool fwd_conn_has_room(const struct fwd_conn *c);
/* Take b (popped from the queue); fwd_conn_kick once done taking. */
void fwd_conn_take(struct fwd_conn *c, struct fwd_batch *b);
/* Write what was taken. */
void fwd_conn_kick(struct fwd_conn *c);
/* Everything taken and not delivered goes back to the queue (shutdown). */
void fwd_conn_give_back(struct fwd_conn *c);
/* The lowest sequence number it holds, or UINT64_MAX. */
uint64_t fwd_conn_oldest_seq(const struct fwd_conn *c);
/* Its state as the metrics name it. */
enum fwd_output_conn_state fwd_conn_output_state(const struct fwd_conn *c);

/*
 * ---- inside the module only: conn.c (the state machine) and conn_io.c (writes,
 * acks, replies) share these; nothing else calls them.
 */
/* Batches written but not yet acknowledged, at most: bounds what a reconnect resends. */
#define FWD_CONN_ACK_WINDOW 32
/* Unwritten batches a connection takes from the queue ahead of writing them (without acks). */
#define FWD_CONN_LOOKAHEAD 4
/* Reply bytes buffered while waiting for a whole ack. */
#define FWD_CONN_REPLY_MAX (64u * 1024u)

static inline bool conn_ack_mode(const struct fwd_conn *c)
{
    return c->env->cfg->request_ack;
}
/* Fail the connection: closed at once, its batches back in the queue, back-off. */
void conn_fail(struct fwd_conn *c, const char *what, int err);
/* The same, logged at lvl (FWD_LOG_ERROR: a refusal that a retry will not fix). */
void conn_fail_at(struct fwd_conn *c, int lvl, const char *what, int err);
/* Connected: may carry records. */
void conn_ready(struct fwd_conn *c);
/* Batches may be written now (with acks, only while the window has room). */
bool conn_can_write(const struct fwd_conn *c);
/* Wait for what the state asks and re-arm the timer. 0, or -1 after failing. */
int conn_rewatch(struct fwd_conn *c);
/* Close gracefully and connect again (planned reconnect, or one request done). */
void conn_reconnect(struct fwd_conn *c);
/* Feed the handshake what was read; it ends in conn_ready or conn_fail. */
void conn_handshake_step(struct fwd_conn *c);
/* Write what is unsent, within the write budget. */
void conn_do_write(struct fwd_conn *c);
/* Read replies. 0 while connected, -1 if the connection failed or was replaced. */
int conn_do_read(struct fwd_conn *c);

#endif
