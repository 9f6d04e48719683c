/*
 * multiline.c - events of several lines (see fwd_multiline.h).
 *
 * One open event per stream (stdout, stderr, any other), each a bounded
 * buffer. Every line is classified by the mode into one of four verdicts:
 * START (emit the open event, open one with this line), APPEND (join the
 * open event), END (join it and emit it) and ALONE (emit the open event,
 * then this line by itself, without waiting: Python and Go lines outside a
 * trace cannot be continued). Patterns are PCRE2, JIT-compiled when possible.
 * Invariant: an open event holds 1..max_lines lines and at most max_bytes.
 */
#include "fwd_multiline.h"
#include "fwd_buf.h"
#include "fwd_re.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum verdict {
    V_START = 0,
    V_APPEND,
    V_END,
    V_ALONE,
};

/* Java: a line that continues the one before it. */
#define JAVA_CONT                                                                                  \
    "^(?:\\s+at\\s|\\s*Caused by:|\\s*Suppressed:|\\s+\\.\\.\\. \\d+ more$|"                       \
    "\\s*\\.\\.\\. \\d+ common frames omitted$)"
#define PY_START "^Traceback \\(most recent call last\\):$"
#define GO_START "^(?:panic: |fatal error: )"
/* Go: inside a panic, the goroutine dump's lines. */
#define GO_CONT                                                                                    \
    "^(?:$|goroutine \\d+ \\[.*\\]:$|\\t|created by |\\[signal |exit status \\d+$|"                \
    "\\s*panic: |\\S.*\\(.*\\)$)"

struct event {
    struct fwd_buf buf;
    uint32_t lines;
    int64_t time_nano;
    uint64_t opened_ns;
    bool in_trace; /* python: in a traceback; go: in a panic */
    enum fwd_source source;
    char source_str[32];
    size_t source_len;
};

struct fwd_multiline {
    enum fwd_multiline_mode mode;
    uint32_t max_lines;
    uint64_t flush_ns;
    pcre2_code *start, *cont;
    pcre2_match_data *md;
    struct event ev[3]; /* by enum fwd_source */
    uint64_t joins;     /* events emitted with more than one line */
};

struct fwd_multiline *fwd_multiline_create(const struct fwd_multiline_opts *o, char *err,
                                           size_t errlen)
{
    struct fwd_multiline *m = calloc(1, sizeof(*m));
    const char *start = NULL, *cont = NULL;

    if (m == NULL)
        goto enomem;
    m->mode = o->mode;
    m->max_lines = o->max_lines ? o->max_lines : 1;
    m->flush_ns = o->flush_ns;
    for (int i = 0; i < 3; i++)
        fwd_buf_init(&m->ev[i].buf, o->max_bytes);
    if (o->mode == FWD_MULTILINE_JAVA)
        cont = JAVA_CONT;
    else if (o->mode == FWD_MULTILINE_PYTHON)
        start = PY_START;
    else if (o->mode == FWD_MULTILINE_GO) {
        start = GO_START;
        cont = GO_CONT;
    } else
        start = o->start ? o->start : "";
    if (start != NULL && (m->start = fwd_re_compile(start, "multiline-start", err, errlen)) == NULL)
        goto fail;
    if (cont != NULL && (m->cont = fwd_re_compile(cont, "multiline", err, errlen)) == NULL)
        goto fail;
    m->md = pcre2_match_data_create(1, NULL);
    if (m->md == NULL)
        goto enomem;
    return m;
enomem:
    snprintf(err, errlen, "out of memory");
fail:
    fwd_multiline_destroy(m);
    return NULL;
}

void fwd_multiline_destroy(struct fwd_multiline *m)
{
    if (m == NULL)
        return;
    for (int i = 0; i < 3; i++)
        fwd_buf_release(&m->ev[i].buf);
    pcre2_code_free(m->start);
    pcre2_code_free(m->cont);
    pcre2_match_data_free(m->md);
    free(m);
}

static bool match(struct fwd_multiline *m, const pcre2_code *re, const struct fwd_line *l)
{
    return pcre2_match(re, l->len ? l->data : (PCRE2_SPTR) "", l->len, 0, 0, m->md, NULL) >= 0;
}

static enum verdict classify(struct fwd_multiline *m, struct event *e, const struct fwd_line *l)
{
    bool open = e->lines > 0;

    switch (m->mode) {
        case FWD_MULTILINE_JAVA:
            return open && match(m, m->cont, l) ? V_APPEND : V_START;
        case FWD_MULTILINE_PYTHON:
            if (match(m, m->start, l))
                return V_START;
            if (!open || !e->in_trace)
                return V_ALONE;
            if (l->len == 0 || l->data[0] == ' ' || l->data[0] == '\t')
                return V_APPEND;
            return V_END; /* the exception line */
        case FWD_MULTILINE_GO:
            if (match(m, m->start, l))
                return V_START;
            return open && e->in_trace && match(m, m->cont, l) ? V_APPEND : V_ALONE;
        default:
            return !open || match(m, m->start, l) ? V_START : V_APPEND;
    }
}

static int emit(struct fwd_multiline *m, struct event *e, fwd_line_cb cb, void *ctx)
{
    struct fwd_line out = {0};

    if (e->lines == 0)
        return 0;
    if (e->lines > 1)
        m->joins++;
    out.source = e->source;
    out.source_str = e->source_str;
    out.source_len = e->source_len;
    out.time_nano = e->time_nano;
    out.data = e->buf.data;
    out.len = e->buf.len;
    e->lines = 0;
    e->in_trace = false;
    fwd_buf_reset(&e->buf);
    return cb(ctx, &out);
}

/* Open e with l. -EMSGSIZE when l alone is over max_bytes, -ENOMEM. */
static int open_event(struct event *e, const struct fwd_line *l, uint64_t now_ns)
{
    int rc = fwd_buf_append(&e->buf, l->data, l->len);

    if (rc != 0)
        return rc;
    e->lines = 1;
    e->time_nano = l->time_nano;
    e->opened_ns = now_ns;
    e->source = l->source;
    e->source_len = l->source_len;
    memcpy(e->source_str, l->source_str, l->source_len);
    e->source_str[l->source_len] = '\0';
    return 0;
}

static int append(struct fwd_multiline *m, struct event *e, const struct fwd_line *l)
{
    if (e->lines >= m->max_lines || e->buf.len + 1 + l->len > e->buf.max)
        return -EMSGSIZE;
    if (fwd_buf_reserve(&e->buf, 1 + l->len) != 0)
        return -ENOMEM;
    e->buf.data[e->buf.len++] = '\n';
    if (l->len)
        memcpy(e->buf.data + e->buf.len, l->data, l->len);
    e->buf.len += l->len;
    e->lines++;
    return 0;
}

int fwd_multiline_feed(struct fwd_multiline *m, const struct fwd_line *l, uint64_t now_ns,
                       fwd_line_cb cb, void *ctx)
{
    struct event *e = &m->ev[l->source <= FWD_SOURCE_OTHER ? l->source : FWD_SOURCE_OTHER];
    enum verdict v;
    int rc;

    /* a piece of an over-long line, or a source name that does not fit: not joined */
    if (l->piece || l->source_len >= sizeof(e->source_str) ||
        (e->lines > 0 && (e->source_len != l->source_len ||
                          memcmp(e->source_str, l->source_str, l->source_len) != 0))) {
        rc = emit(m, e, cb, ctx);
        return rc ? rc : cb(ctx, l);
    }
    v = classify(m, e, l);
    if (v == V_APPEND || v == V_END) {
        bool trace = e->in_trace;

        rc = append(m, e, l);
        if (rc == -EMSGSIZE) { /* full: what follows starts a new event */
            rc = emit(m, e, cb, ctx);
            if (rc == 0 && (rc = open_event(e, l, now_ns)) == 0)
                e->in_trace = trace;
        }
        if (rc == 0 && v == V_END)
            rc = emit(m, e, cb, ctx);
        return rc == -ENOMEM || rc == -EMSGSIZE ? cb(ctx, l) : rc;
    }
    if ((rc = emit(m, e, cb, ctx)) != 0)
        return rc;
    if (v == V_ALONE)
        return cb(ctx, l);
    if (open_event(e, l, now_ns) != 0)
        return cb(ctx, l); /* over max_bytes by itself (or no memory): alone */
    e->in_trace = m->mode == FWD_MULTILINE_PYTHON || m->mode == FWD_MULTILINE_GO;
    return 0;
}

int fwd_multiline_expire(struct fwd_multiline *m, uint64_t now_ns, fwd_line_cb cb, void *ctx)
{
    int rc = 0;

    for (int i = 0; i < 3 && rc == 0; i++)
        if (m->ev[i].lines > 0 && m->ev[i].opened_ns + m->flush_ns <= now_ns)
            rc = emit(m, &m->ev[i], cb, ctx);
    return rc;
}

int fwd_multiline_flush(struct fwd_multiline *m, fwd_line_cb cb, void *ctx)
{
    int rc = 0;

    for (int i = 0; i < 3 && rc == 0; i++)
        rc = emit(m, &m->ev[i], cb, ctx);
    return rc;
}

uint64_t fwd_multiline_joins(const struct fwd_multiline *m)
{
    return m->joins;
}

size_t fwd_multiline_pending_bytes(const struct fwd_multiline *m)
{
    size_t n = 0;

    for (int i = 0; i < 3; i++)
        n += m->ev[i].buf.len;
    return n;
}

uint64_t fwd_multiline_next_deadline(const struct fwd_multiline *m)
{
    uint64_t d = 0;

    for (int i = 0; i < 3; i++) {
        uint64_t t = m->ev[i].opened_ns + m->flush_ns;

        if (m->ev[i].lines > 0 && (d == 0 || t < d))
            d = t;
    }
    return d;
}
