/*
 * conn_io.c - a connection's writes and reads: batches out (with the ack window),
 * acks and handshake replies in (see fwd_conn.h).
 */
#define FWD_LOG_MODULE "output"
#include "fwd_conn.h"
#include "fwd_limits.h"
#include "fwd_log.h"
#include "fwd_time.h"
#include "fwd_tls.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define IOV_BATCHES 32
/* Bytes read from the aggregator in one wakeup (a chatty peer cannot hold the loop). */
#define READ_PER_WAKEUP (256u * 1024u)

/* ---- writing --------------------------------------------------------------------------- */

static uint64_t ack_timeout_ms(const struct fwd_conn *c)
{
    return c->env->cfg->read_timeout_ms ? c->env->cfg->read_timeout_ms : FWD_DEFAULT_ACK_TIMEOUT_MS;
}

/* The oldest batch is delivered (written, or acknowledged with acks). */
static void delivered(struct fwd_conn *c)
{
    struct fwd_batch *b = c->qhead;
    struct fwd_dest_counts *dc = &c->env->q->dc;

    c->env->st->records_sent += b->count;
    c->env->st->batches_sent++;
    dc->records_sent += b->count;
    dc->last_send_mono = fwd_loop_now(c->env->loop);
    dc->last_send_unix = fwd_time_real_ns();
    if (b->written_at != 0) /* ack mode: the round trip */
        fwd_hist_observe(&dc->ack, (double)(dc->last_send_mono - b->written_at) / 1e9);
    if (b == c->unsent)
        c->unsent = b->next;
    else
        c->inflight--;
    c->qhead = b->next;
    if (c->qhead == NULL)
        c->qtail = NULL;
    c->nq--;
    fwd_queue_done(c->env->q, b);
}

/* Account written bytes against the batches from unsent on. */
static void advance(struct fwd_conn *c, size_t w)
{
    while (w > 0 && c->unsent != NULL) {
        struct fwd_batch *b = c->unsent;
        size_t left = fwd_batch_wire_len(b) - b->sent;

        if (w < left) {
            b->sent += w;
            return;
        }
        w -= left;
        c->written++;
        if (!conn_ack_mode(c)) {
            delivered(c); /* without acks, written is as delivered as it gets */
            continue;
        }
        b->sent += left;
        b->written_at = fwd_loop_now(c->env->loop);
        b->ack_deadline = b->written_at + FWD_MS_TO_NS(ack_timeout_ms(c));
        c->unsent = b->next;
        c->inflight++;
    }
}

static void add_iov(struct iovec *iov, int *niov, const uint8_t *p, size_t len, size_t *skip)
{
    if (*skip >= len) {
        *skip -= len;
        return;
    }
    iov[*niov].iov_base = (void *)(p + *skip);
    iov[*niov].iov_len = len - *skip;
    (*niov)++;
    *skip = 0;
}

/* fluentd-async-reconnect-interval: reconnect (and re-resolve) between messages. */
static bool reconnect_due(const struct fwd_conn *c)
{
    uint64_t every = c->env->cfg->reconnect_interval_ms;

    return every != 0 && c->inflight == 0 && c->unsent->sent == 0 &&
           fwd_loop_now(c->env->loop) - c->connected_at >= FWD_MS_TO_NS(every);
}

/* Its one request is done (written, and acknowledged with acks). */
static bool request_done(const struct fwd_conn *c)
{
    return c->one_request && c->written > 0 && c->inflight == 0;
}

/* One sendmsg of what is unsent (up to the ack window). Bytes written, or -1 with errno. */
static ssize_t write_some(struct fwd_conn *c)
{
    struct iovec iov[IOV_BATCHES * 3];
    struct msghdr msg = {.msg_iov = iov};
    unsigned window = c->one_request     ? 1
                      : conn_ack_mode(c) ? FWD_CONN_ACK_WINDOW - c->inflight
                                         : IOV_BATCHES;
    int niov = 0;

    /* A batch adds up to three iovecs (fewer for the half-written one): room for three
     * must be left before each one. */
    for (struct fwd_batch *b = c->unsent; b != NULL && niov + 3 <= IOV_BATCHES * 3 && window > 0;
         b = b->next, window--) {
        size_t skip = b->sent;

        add_iov(iov, &niov, b->hdr, b->hdr_len, &skip);
        add_iov(iov, &niov, b->entries.data, b->entries.len, &skip);
        add_iov(iov, &niov, b->opt, b->opt_len, &skip);
    }
    msg.msg_iovlen = (size_t)niov;
    return fwd_transport_writev(c->fd, c->tls, &msg);
}

void conn_do_write(struct fwd_conn *c)
{
    size_t budget = FWD_WRITE_PER_WAKEUP;

    while (conn_can_write(c) && budget > 0) {
        ssize_t w;

        if (reconnect_due(c)) {
            conn_reconnect(c);
            return;
        }
        w = write_some(c);
        if (w == -1) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            conn_fail(c, "write", errno);
            return;
        }
        c->env->st->bytes_sent += (uint64_t)w;
        c->env->q->dc.bytes_sent += (uint64_t)w;
        c->last_progress = fwd_loop_now(c->env->loop);
        advance(c, (size_t)w);
        if (request_done(c)) {
            conn_reconnect(c);
            return;
        }
        if (c->unsent == NULL)
            c->env->ops->take_more(c); /* take more from the destination's queue */
        budget = (size_t)w >= budget ? 0 : budget - (size_t)w;
    }
    if (conn_rewatch(c) == 0)
        c->env->ops->maybe_done(c);
}

/* ---- reading: acks and the handshake ----------------------------------------------------- */

/*
 * Match the replies buffered so far against the batches waiting for their ack. The
 * oldest must be acknowledged first: an ack that does not match it, or a reply that is
 * not an ack, makes the connection untrustworthy (Fluentd #4057: acks offset by one on
 * a reused socket), so it is discarded and everything unacknowledged is sent again.
 * Returns 0, or -1 after failing the connection.
 */
static int take_acks(struct fwd_conn *c)
{
    size_t off = 0;

    while (off < c->reply.len) {
        char id[FWD_FORWARD_ACK_MAX + 1];
        size_t used, idlen;
        int r = fwd_forward_parse_ack(c->reply.data + off, c->reply.len - off, &used, id, &idlen);

        if (r == 0)
            break;
        if (r < 0) {
            conn_fail(c, "aggregator sent something that is not an ack", EPROTO);
            return -1;
        }
        off += used;
        if (c->inflight == 0 || idlen != FWD_FORWARD_CHUNK_LEN ||
            memcmp(id, c->qhead->chunk, FWD_FORWARD_CHUNK_LEN) != 0) {
            conn_fail(c, "ack does not match the oldest unacknowledged batch", EPROTO);
            return -1;
        }
        delivered(c);
        if (request_done(c)) {
            fwd_buf_consume(&c->reply, off);
            conn_reconnect(c);
            return -1; /* this connection is gone: read nothing more from it */
        }
        if (c->unsent == NULL)
            c->env->ops->take_more(c);
    }
    fwd_buf_consume(&c->reply, off);
    if (c->reply.len == FWD_CONN_REPLY_MAX) {
        conn_fail(c, "aggregator reply too long", EPROTO);
        return -1;
    }
    return 0;
}

/* Bytes read: the handshake's, acks, or (no acks) nothing that matters. 0, or -1 (failed). */
static int on_reply(struct fwd_conn *c, const char *buf, size_t n)
{
    if (c->state != FWD_CONN_HANDSHAKE && !conn_ack_mode(c))
        return 0; /* no acks requested: nothing a receiver says matters */
    if (fwd_buf_append(&c->reply, buf, n) != 0) {
        conn_fail(c, "aggregator reply too long", EPROTO);
        return -1;
    }
    if (c->state == FWD_CONN_HANDSHAKE) {
        conn_handshake_step(c);
        if (c->state == FWD_CONN_HANDSHAKE)
            return 0;
        if (c->state != FWD_CONN_CONNECTED)
            return -1;
        if (!conn_ack_mode(c)) {
            fwd_buf_reset(&c->reply);
            return 0;
        }
        /* with acks, what followed the PONG (nothing, normally) is read as acks */
    }
    return take_acks(c);
}

/* Read replies, up to READ_PER_WAKEUP. 0 while connected, -1 if the connection failed. */
int conn_do_read(struct fwd_conn *c)
{
    size_t budget = READ_PER_WAKEUP;

    while (budget > 0) {
        char buf[4096];
        ssize_t r = fwd_transport_read(c->fd, c->tls, buf, sizeof(buf));

        if (r > 0) {
            budget = (size_t)r >= budget ? 0 : budget - (size_t)r;
            if (on_reply(c, buf, (size_t)r) < 0)
                return -1;
            continue;
        }
        if (r == 0) {
            if (c->state == FWD_CONN_HANDSHAKE) /* after our PING: a refusal, an error */
                conn_fail_at(c, c->hs.pinged ? FWD_LOG_ERROR : FWD_LOG_WARN,
                             fwd_handshake_closed_why(&c->hs), 0);
            else
                conn_fail(c, "connection closed by aggregator", 0);
            return -1;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            conn_fail(c, "read", errno);
            return -1;
        }
        break;
    }
    if (conn_ack_mode(c) && c->state == FWD_CONN_CONNECTED) {
        /* Acks open the window (more may be written) and move the ack deadline. (Not
         * during the handshake: its timer and its read-only interest stand until PONG.) */
        if (conn_rewatch(c) < 0)
            return -1;
        c->env->ops->maybe_done(c);
    }
    return 0;
}
