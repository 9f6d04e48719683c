/*
 * partial.c - partial-line reassembly (see fwd_partial.h for the contract).
 *
 * State is a fixed array of FWD_PARTIAL_SLOTS slots, one per id in flight
 * (normally at most two: stdout and stderr). When a ninth id arrives the
 * oldest slot is emitted as if it had timed out. Each slot's buffer is capped
 * at max_line and freed once its line is out, so an idle container holds no
 * line memory. Chunks of one id arrive in ordinal order (one copier goroutine
 * per stream writes them in sequence), so they are appended in arrival order.
 * Invariants: a used slot has id/source set; a tombstone slot has no data and
 * only remembers the piece count of an id whose pending data timed out.
 */
#include "fwd_partial.h"
#include "fwd_buf.h"
#include "fwd_limits.h"
#include "fwd_time.h"

#include <stdio.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct slot {
    bool used;
    bool tomb;
    bool legacy; /* pre-19.03 chunk without metadata: joined per source */
    char id[FWD_PARTIAL_ID_MAX + 1];
    size_t id_len;
    enum fwd_source source;
    char source_str[32];
    int64_t time_nano;
    uint32_t pieces; /* pieces already emitted */
    uint32_t chunks; /* chunks appended to this line */
    uint64_t deadline;
    uint64_t seq; /* allocation order, to evict the oldest */
    struct fwd_buf buf;
};

struct fwd_partial {
    size_t max_line;
    uint64_t timeout_ns;
    uint64_t seq;
    uint64_t dropped;
    uint64_t joins;
    struct slot slots[FWD_PARTIAL_SLOTS];
};

struct fwd_partial *fwd_partial_create(size_t max_line, uint64_t timeout_ns)
{
    struct fwd_partial *p = calloc(1, sizeof(*p));

    if (p == NULL)
        return NULL;
    p->max_line = max_line ? max_line : 1;
    p->timeout_ns = timeout_ns;
    for (int i = 0; i < FWD_PARTIAL_SLOTS; i++)
        fwd_buf_init(&p->slots[i].buf, p->max_line);
    return p;
}

static void slot_free(struct slot *s)
{
    fwd_buf_release(&s->buf);
    s->used = false;
    s->tomb = false;
    s->legacy = false;
}

void fwd_partial_destroy(struct fwd_partial *p)
{
    if (p == NULL)
        return;
    for (int i = 0; i < FWD_PARTIAL_SLOTS; i++)
        slot_free(&p->slots[i]);
    free(p);
}

static void line_from_slot(const struct slot *s, struct fwd_line *l)
{
    l->source = s->source;
    l->source_str = s->source_str;
    l->source_len = strlen(s->source_str);
    l->time_nano = s->time_nano;
    l->data = s->buf.data;
    l->len = s->buf.len;
    l->id = s->id;
    l->id_len = s->id_len;
}

/* Emit the slot's first n bytes as the next piece; the rest (a cut UTF-8 character) stays. */
static int emit_cut(struct slot *s, size_t n, bool last, fwd_line_cb cb, void *ctx)
{
    struct fwd_line l;
    int rc;

    line_from_slot(s, &l);
    l.len = n;
    l.piece = true;
    l.ordinal = ++s->pieces;
    l.last = last;
    rc = cb(ctx, &l);
    if (n < s->buf.len) {
        memmove(s->buf.data, s->buf.data + n, s->buf.len - n);
        s->buf.len -= n;
    } else {
        fwd_buf_reset(&s->buf);
    }
    return rc;
}

/* Emit the slot's data as the next piece. */
static int emit_piece(struct slot *s, bool last, fwd_line_cb cb, void *ctx)
{
    return emit_cut(s, s->buf.len, last, cb, ctx);
}

/* Emit the slot's data as one whole line. */
static int emit_whole(struct slot *s, fwd_line_cb cb, void *ctx)
{
    struct fwd_line l;
    int rc;

    line_from_slot(s, &l);
    l.piece = false;
    l.ordinal = 0;
    l.last = false;
    rc = cb(ctx, &l);
    fwd_buf_reset(&s->buf);
    return rc;
}

/* Pending data of a slot whose line will not be completed in time. */
static int emit_timeout(struct slot *s, uint64_t now_ns, fwd_line_cb cb, void *ctx)
{
    int rc = emit_piece(s, false, cb, ctx);

    fwd_buf_release(&s->buf);
    s->tomb = true;
    s->deadline = now_ns + FWD_MS_TO_NS(FWD_PARTIAL_TOMBSTONE_MS);
    return rc;
}

static struct slot *slot_find(struct fwd_partial *p, const char *id, size_t id_len, bool legacy,
                              enum fwd_source src)
{
    for (int i = 0; i < FWD_PARTIAL_SLOTS; i++) {
        struct slot *s = &p->slots[i];

        if (!s->used || s->legacy != legacy)
            continue;
        if (legacy ? s->source == src : s->id_len == id_len && memcmp(s->id, id, id_len) == 0)
            return s;
    }
    return NULL;
}

static struct slot *slot_get(struct fwd_partial *p, const struct fwd_entry *e, bool legacy,
                             uint64_t now_ns, fwd_line_cb cb, void *ctx, int *rc)
{
    struct slot *s = slot_find(p, e->partial_id, e->partial_id_len, legacy, e->source);
    struct slot *oldest = NULL;

    if (s != NULL)
        return s;
    for (int i = 0; i < FWD_PARTIAL_SLOTS; i++) {
        struct slot *c = &p->slots[i];

        if (!c->used) {
            s = c;
            break;
        }
        if (oldest == NULL || c->seq < oldest->seq)
            oldest = c;
    }
    if (s == NULL) {
        /* All slots busy: the oldest line is the least likely to complete. */
        s = oldest;
        if (!s->tomb)
            *rc = emit_timeout(s, now_ns, cb, ctx);
        slot_free(s);
    }
    s->used = true;
    s->tomb = false;
    s->legacy = legacy;
    s->id_len = legacy ? 0 : e->partial_id_len;
    memcpy(s->id, e->partial_id, s->id_len);
    s->id[s->id_len] = '\0';
    s->source = e->source;
    snprintf(s->source_str, sizeof(s->source_str), "%s", e->source_str);
    s->time_nano = e->time_nano; /* every chunk carries the first chunk's time */
    s->pieces = 0;
    s->chunks = 0;
    s->seq = ++p->seq;
    return s;
}

/* Append a chunk to a slot, emitting full pieces of max_line bytes as needed. */
static int slot_append(struct fwd_partial *p, struct slot *s, const uint8_t *data, size_t len,
                       fwd_line_cb cb, void *ctx)
{
    int rc = 0;

    if (++s->chunks == 2)
        p->joins++; /* a line made of several chunks: counted once */
    while (len > 0 && rc == 0) {
        size_t take;

        if (s->buf.len == p->max_line) {
            rc = emit_cut(s, fwd_partial_utf8_cut(s->buf.data, s->buf.len), false, cb, ctx);
            if (rc != 0)
                break;
        }
        take = p->max_line - s->buf.len;
        if (take > len)
            take = len;
        if (fwd_buf_append(&s->buf, data, take) != 0) {
            p->dropped += len;
            return -ENOMEM;
        }
        data += take;
        len -= take;
    }
    return rc;
}

static int whole_entry(const struct fwd_entry *e, fwd_line_cb cb, void *ctx)
{
    struct fwd_line l = {
        .source = e->source,
        .source_str = e->source_str,
        .source_len = e->source_len,
        .time_nano = e->time_nano,
        .data = e->line,
        .len = e->line_len,
        .piece = false,
    };

    return cb(ctx, &l);
}

int fwd_partial_feed(struct fwd_partial *p, const struct fwd_entry *e, uint64_t now_ns,
                     fwd_line_cb cb, void *ctx)
{
    struct slot *s;
    bool legacy = !e->has_meta;
    bool last;
    int rc = 0;

    if (legacy) {
        s = slot_find(p, "", 0, true, e->source);
        if (!e->partial && s == NULL)
            return whole_entry(e, cb, ctx);
        last = !e->partial;
    } else {
        if (e->partial_id_len > FWD_PARTIAL_ID_MAX || e->partial_id_len == 0) {
            /* Not an id Docker would send: keep the bytes as a line of their own. */
            return whole_entry(e, cb, ctx);
        }
        last = e->last;
    }
    s = slot_get(p, e, legacy, now_ns, cb, ctx, &rc);
    if (rc != 0)
        return rc;
    rc = slot_append(p, s, e->line, e->line_len, cb, ctx);
    if (rc != 0 && rc != -ENOMEM)
        return rc;
    if (last) {
        int rc2;

        if (s->pieces == 0)
            rc2 = emit_whole(s, cb, ctx);
        else
            rc2 = emit_piece(s, true, cb, ctx);
        slot_free(s);
        return rc ? rc : rc2;
    }
    s->tomb = false;
    s->deadline = now_ns + p->timeout_ns;
    return rc;
}

int fwd_partial_expire(struct fwd_partial *p, uint64_t now_ns, fwd_line_cb cb, void *ctx)
{
    int rc = 0;

    for (int i = 0; i < FWD_PARTIAL_SLOTS && rc == 0; i++) {
        struct slot *s = &p->slots[i];

        if (!s->used || s->deadline > now_ns)
            continue;
        if (s->tomb)
            slot_free(s);
        else
            rc = emit_timeout(s, now_ns, cb, ctx);
    }
    return rc;
}

int fwd_partial_flush(struct fwd_partial *p, fwd_line_cb cb, void *ctx)
{
    int rc = 0;

    for (int i = 0; i < FWD_PARTIAL_SLOTS; i++) {
        struct slot *s = &p->slots[i];
        int r;

        if (!s->used)
            continue;
        /* A line that never sent a piece is whole as far as anyone will know;
         * one that did gets its closing piece so downstream concat completes. */
        r = s->pieces == 0 ? emit_whole(s, cb, ctx) : emit_piece(s, true, cb, ctx);
        if (rc == 0)
            rc = r;
        slot_free(s);
    }
    return rc;
}

uint64_t fwd_partial_next_deadline(const struct fwd_partial *p)
{
    uint64_t d = 0;

    for (int i = 0; i < FWD_PARTIAL_SLOTS; i++) {
        const struct slot *s = &p->slots[i];

        if (s->used && (d == 0 || s->deadline < d))
            d = s->deadline;
    }
    return d;
}

size_t fwd_partial_pending_bytes(const struct fwd_partial *p)
{
    size_t n = 0;

    for (int i = 0; i < FWD_PARTIAL_SLOTS; i++)
        n += p->slots[i].buf.len;
    return n;
}

uint64_t fwd_partial_dropped(const struct fwd_partial *p)
{
    return p->dropped;
}

uint64_t fwd_partial_joins(const struct fwd_partial *p)
{
    return p->joins;
}

size_t fwd_partial_utf8_cut(const uint8_t *p, size_t len)
{
    size_t i = len, back = 0, need;

    while (i > 0 && back < 3 && (p[i - 1] & 0xC0) == 0x80) {
        i--;
        back++;
    }
    if (i <= 1 || p[i - 1] < 0xC0 || p[i - 1] >= 0xF8)
        return len; /* ASCII, invalid UTF-8, or nothing before the character: cut anywhere */
    need = p[i - 1] >= 0xF0 ? 4 : p[i - 1] >= 0xE0 ? 3 : 2;
    return back + 1 < need ? i - 1 : len;
}

int fwd_partial_split(const struct fwd_line *l, size_t max, uint64_t nonce, fwd_line_cb cb,
                      void *ctx)
{
    char id[33];
    struct fwd_line piece = *l;
    size_t off = 0;
    int rc = 0;

    snprintf(id, sizeof(id), "%016llx%016llx", (unsigned long long)l->time_nano,
             (unsigned long long)nonce);
    piece.piece = true;
    piece.id = id;
    piece.id_len = 32;
    piece.ordinal = 0;
    while (rc == 0 && off < l->len) {
        size_t n = l->len - off;

        if (n > max)
            n = fwd_partial_utf8_cut(l->data + off, max);
        piece.data = l->data + off;
        piece.len = n;
        piece.ordinal++;
        off += n;
        piece.last = off == l->len;
        rc = cb(ctx, &piece);
    }
    return rc;
}
