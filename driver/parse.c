/*
 * parse.c - parse=json|logfmt|regex: a line in, packed MessagePack pairs out.
 *
 * JSON goes through yajl's callback parser straight into MessagePack, with no
 * tree in between (jansson, which serves the plugin API, takes about 4 µs to
 * build a tree for a 200-byte line; see the README). Nested maps and arrays
 * get a 32-bit header that is filled in when they close, since their sizes
 * are known only then (map32/array32 are valid MessagePack at any size).
 * yajl allocates from a per-parser arena reset for every line, so a line
 * costs no malloc. Top-level fields are tracked as spans of the output, so a
 * duplicate key or a consumed time field is cut out at the end.
 * Invariant: the output holds exactly the live spans once a run returns 0.
 */
#include "fwd_parse.h"
#include "fwd_buf.h"
#include "fwd_re.h"

#include <errno.h>
#include <inttypes.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#define ARENA_SIZE (16u * 1024u)

struct span {
    size_t start, end; /* the pair in out */
    size_t koff, klen; /* its key bytes in out */
    bool dead;
};

struct group {
    uint32_t n;
    const char *name; /* in the pattern's name table */
};

struct arena_hdr {
    size_t size;
    size_t heap; /* 1: malloc'd (did not fit) */
};

struct fwd_parser {
    enum fwd_parse_kind kind;
    char *time_key;
    size_t time_key_len;
    struct fwd_timefmt time_format;
    bool time_keep;
    char **reserved;
    size_t *reserved_len;
    size_t nreserved;
    struct fwd_buf out;
    struct fwd_buf tmp; /* logfmt: a quoted value, unescaped */
    msgpack_packer pk;
    struct span *spans;
    size_t nspans, ndead;
    bool cur_time; /* the field being written is time_key */
    bool has_time;
    int64_t time_nano;
    int err;
    /* json */
    int depth;
    size_t hdr[FWD_PARSE_MAX_DEPTH + 1];
    uint32_t cnt[FWD_PARSE_MAX_DEPTH + 1];
    bool is_map[FWD_PARSE_MAX_DEPTH + 1];
    size_t arena_used;
    _Alignas(16) uint8_t arena[ARENA_SIZE];
    /* regex */
    pcre2_code *re;
    pcre2_match_data *md;
    uint32_t nnames;
    struct group *groups; /* named groups in the order of the pattern */
};

/* ---- fields ------------------------------------------------------------------------------ */

/*
 * msgpack_packer write callback: a copy while there is room (run() reserves
 * room for the usual case up front), fwd_buf_append's checks otherwise.
 */
static int out_write(void *data, const char *s, size_t n)
{
    struct fwd_buf *b = data;

    if (n <= b->cap - b->len) { /* cap <= max: the cap holds */
        memcpy(b->data + b->len, s, n);
        b->len += n;
        return 0;
    }
    return fwd_buf_append(b, s, n) == 0 ? 0 : -1;
}

static bool is_reserved(const struct fwd_parser *p, const char *k, size_t n)
{
    for (size_t i = 0; i < p->nreserved; i++)
        if (p->reserved_len[i] == n && memcmp(p->reserved[i], k, n) == 0)
            return true;
    return false;
}

static int field_begin(struct fwd_parser *p, const char *k, size_t n)
{
    bool rename = is_reserved(p, k, n);
    struct span *s;
    int rc = 0;

    if (p->nspans == FWD_PARSE_MAX_FIELDS)
        return -EMSGSIZE;
    s = &p->spans[p->nspans];
    s->start = p->out.len;
    s->dead = false;
    p->cur_time = p->time_key != NULL && n == p->time_key_len && memcmp(k, p->time_key, n) == 0;
    rc |= msgpack_pack_str(&p->pk, n + rename);
    s->koff = p->out.len;
    s->klen = n + rename;
    if (rename)
        rc |= msgpack_pack_str_body(&p->pk, "_", 1);
    rc |= msgpack_pack_str_body(&p->pk, k, n);
    if (rc != 0)
        return -EMSGSIZE;
    for (size_t i = 0; i < p->nspans; i++) {
        struct span *o = &p->spans[i];

        if (!o->dead && o->klen == s->klen &&
            memcmp(p->out.data + o->koff, p->out.data + s->koff, s->klen) == 0) {
            o->dead = true; /* the last value of a duplicate key wins */
            p->ndead++;
        }
    }
    return 0;
}

/* The value of the current field is a string or number: maybe it is the time. */
static void field_time(struct fwd_parser *p, const char *v, size_t n)
{
    int64_t ns;

    if (!p->cur_time || fwd_timefmt_parse(&p->time_format, v, n, &ns) != 0)
        return;
    p->has_time = true;
    p->time_nano = ns;
    if (!p->time_keep) {
        p->spans[p->nspans].dead = true;
        p->ndead++;
    }
}

static void field_end(struct fwd_parser *p)
{
    p->spans[p->nspans].end = p->out.len;
    p->nspans++;
    p->cur_time = false;
}

/* One string field (logfmt, regex). */
static int field_str(struct fwd_parser *p, const char *k, size_t kn, const char *v, size_t vn)
{
    int rc = field_begin(p, k, kn);

    if (rc != 0)
        return rc;
    if (msgpack_pack_str(&p->pk, vn) != 0 || msgpack_pack_str_body(&p->pk, v, vn) != 0)
        return -EMSGSIZE;
    field_time(p, v, vn);
    field_end(p);
    return 0;
}

static void reset(struct fwd_parser *p)
{
    fwd_buf_reset(&p->out);
    p->nspans = p->ndead = 0;
    p->cur_time = p->has_time = false;
    p->err = 0;
    p->depth = 0;
    p->arena_used = 0;
}

/* Cut dead spans out and describe the result. */
static void finish(struct fwd_parser *p, struct fwd_parsed *o)
{
    if (p->ndead > 0) {
        size_t w = 0;

        for (size_t i = 0; i < p->nspans; i++) {
            const struct span *s = &p->spans[i];

            if (s->dead)
                continue;
            memmove(p->out.data + w, p->out.data + s->start, s->end - s->start);
            w += s->end - s->start;
        }
        p->out.len = w;
    }
    o->pairs = p->out.data;
    o->len = p->out.len;
    o->npairs = (uint32_t)(p->nspans - p->ndead);
    o->has_time = p->has_time;
    o->time_nano = p->time_nano;
}

/* ---- json (yajl callbacks) --------------------------------------------------------------- */

static void *arena_malloc(void *ctx, size_t sz)
{
    struct fwd_parser *p = ctx;
    size_t need = sizeof(struct arena_hdr) + ((sz + 15) & ~(size_t)15);
    struct arena_hdr *h;

    if (need <= ARENA_SIZE - p->arena_used) {
        h = (struct arena_hdr *)(void *)(p->arena + p->arena_used);
        p->arena_used += need;
        h->heap = 0;
    } else {
        h = malloc(sizeof(*h) + sz);
        if (h == NULL)
            return NULL;
        h->heap = 1;
    }
    h->size = sz;
    return h + 1;
}

static void arena_free(void *ctx, void *ptr)
{
    (void)ctx;
    if (ptr != NULL && ((struct arena_hdr *)ptr - 1)->heap)
        free((struct arena_hdr *)ptr - 1);
}

static void *arena_realloc(void *ctx, void *ptr, size_t sz)
{
    size_t old;
    void *n;

    if (ptr == NULL)
        return arena_malloc(ctx, sz);
    old = ((struct arena_hdr *)ptr - 1)->size;
    if (sz <= old)
        return ptr;
    n = arena_malloc(ctx, sz);
    if (n != NULL) {
        memcpy(n, ptr, old);
        arena_free(ctx, ptr);
    }
    return n;
}

static int fail(struct fwd_parser *p, int err)
{
    if (p->err == 0)
        p->err = err;
    return 0; /* yajl: cancel */
}

/* A value starts at the current depth (arrays count their elements here). */
static int value_begin(struct fwd_parser *p)
{
    if (p->depth == 0)
        return -EPROTO; /* the top level must be an object */
    if (p->depth > 1 && !p->is_map[p->depth])
        p->cnt[p->depth]++;
    return 0;
}

static int value_end(struct fwd_parser *p, int packrc)
{
    if (packrc != 0)
        return fail(p, -EMSGSIZE);
    if (p->depth == 1)
        field_end(p);
    return 1;
}

static int j_null(void *ctx)
{
    struct fwd_parser *p = ctx;

    if (value_begin(p) != 0)
        return fail(p, -EPROTO);
    return value_end(p, msgpack_pack_nil(&p->pk));
}

static int j_bool(void *ctx, int b)
{
    struct fwd_parser *p = ctx;

    if (value_begin(p) != 0)
        return fail(p, -EPROTO);
    return value_end(p, b ? msgpack_pack_true(&p->pk) : msgpack_pack_false(&p->pk));
}

/* int64 if it fits, else uint64 if it fits, else float64. */
static int pack_number(msgpack_packer *pk, const char *s, size_t n)
{
    char text[512], *end;

    if (n >= sizeof(text))
        return -1;
    memcpy(text, s, n);
    text[n] = '\0';
    if (strpbrk(text, ".eE") == NULL) {
        long long v;

        errno = 0;
        v = strtoll(text, &end, 10);
        if (errno == 0)
            return msgpack_pack_int64(pk, v);
        if (text[0] != '-') {
            unsigned long long u;

            errno = 0;
            u = strtoull(text, &end, 10);
            if (errno == 0)
                return msgpack_pack_uint64(pk, u);
        }
    }
    return msgpack_pack_double(pk, strtod(text, &end));
}

static int j_number(void *ctx, const char *s, size_t n)
{
    struct fwd_parser *p = ctx;

    if (value_begin(p) != 0)
        return fail(p, -EPROTO);
    if (p->depth == 1)
        field_time(p, s, n);
    return value_end(p, pack_number(&p->pk, s, n));
}

static int j_string(void *ctx, const unsigned char *s, size_t n)
{
    struct fwd_parser *p = ctx;
    int rc;

    if (value_begin(p) != 0)
        return fail(p, -EPROTO);
    if (p->depth == 1)
        field_time(p, (const char *)s, n);
    rc = msgpack_pack_str(&p->pk, n);
    rc |= msgpack_pack_str_body(&p->pk, s, n);
    return value_end(p, rc);
}

static int j_key(void *ctx, const unsigned char *s, size_t n)
{
    struct fwd_parser *p = ctx;
    int rc;

    if (p->depth == 1) {
        rc = field_begin(p, (const char *)s, n);
        return rc == 0 ? 1 : fail(p, rc);
    }
    p->cnt[p->depth]++;
    rc = msgpack_pack_str(&p->pk, n);
    rc |= msgpack_pack_str_body(&p->pk, s, n);
    return rc == 0 ? 1 : fail(p, -EMSGSIZE);
}

static int open_container(struct fwd_parser *p, bool map)
{
    static const uint8_t map32[5] = {0xdf, 0, 0, 0, 0}, arr32[5] = {0xdd, 0, 0, 0, 0};

    if (p->depth == 0 && map) {
        p->depth = 1; /* the top-level object: its pairs go out bare */
        return 1;
    }
    if (value_begin(p) != 0)
        return fail(p, -EPROTO);
    if (p->depth == FWD_PARSE_MAX_DEPTH)
        return fail(p, -EMSGSIZE);
    p->depth++;
    p->hdr[p->depth] = p->out.len;
    p->cnt[p->depth] = 0;
    p->is_map[p->depth] = map;
    if (fwd_buf_append(&p->out, map ? map32 : arr32, 5) != 0)
        return fail(p, -EMSGSIZE);
    return 1;
}

static int close_container(struct fwd_parser *p)
{
    uint8_t *h;
    uint32_t c;

    if (p->depth == 1) {
        p->depth = 0;
        return 1;
    }
    h = p->out.data + p->hdr[p->depth] + 1;
    c = p->cnt[p->depth];
    h[0] = (uint8_t)(c >> 24);
    h[1] = (uint8_t)(c >> 16);
    h[2] = (uint8_t)(c >> 8);
    h[3] = (uint8_t)c;
    p->depth--;
    return value_end(p, 0);
}

static int j_start_map(void *ctx)
{
    return open_container(ctx, true);
}

static int j_start_array(void *ctx)
{
    return open_container(ctx, false);
}

static int j_end(void *ctx)
{
    return close_container(ctx);
}

static const yajl_callbacks json_cb = {
    .yajl_null = j_null,
    .yajl_boolean = j_bool,
    .yajl_number = j_number,
    .yajl_string = j_string,
    .yajl_start_map = j_start_map,
    .yajl_map_key = j_key,
    .yajl_end_map = j_end,
    .yajl_start_array = j_start_array,
    .yajl_end_array = j_end,
};

static int run_json(struct fwd_parser *p, const uint8_t *line, size_t len)
{
    yajl_alloc_funcs af = {arena_malloc, arena_realloc, arena_free, p};
    yajl_handle h = yajl_alloc(&json_cb, &af, p);
    int rc = 0;

    if (h == NULL)
        return -ENOMEM;
    if (yajl_parse(h, line, len) != yajl_status_ok || yajl_complete_parse(h) != yajl_status_ok)
        rc = p->err ? p->err : -EPROTO;
    yajl_free(h);
    return rc;
}

/* ---- logfmt ------------------------------------------------------------------------------ */

static bool blank(char c)
{
    return c == ' ' || c == '\t';
}

/* \" \\ \n \r \t; 0 for any other. */
static char unescape(char e)
{
    switch (e) {
        case '"':
        case '\\':
            return e;
        case 'n':
            return '\n';
        case 'r':
            return '\r';
        case 't':
            return '\t';
        default:
            return 0;
    }
}

/* A "quoted" value at *pp (after the quote) unescaped into p->tmp; *pp past the closing quote. */
static int quoted(struct fwd_parser *p, const char **pp, const char *end)
{
    const char *s = *pp;

    fwd_buf_reset(&p->tmp);
    while (s < end && *s != '"') {
        char c = *s++;

        if (c == '\\' && s < end) {
            char e = *s++;

            c = unescape(e);
            if (c == 0) { /* an unknown escape stays as it was written */
                if (fwd_buf_append(&p->tmp, "\\", 1) != 0)
                    return -EMSGSIZE;
                c = e;
            }
        }
        if (fwd_buf_append(&p->tmp, &c, 1) != 0)
            return -EMSGSIZE;
    }
    if (s == end)
        return -EPROTO; /* no closing quote */
    *pp = s + 1;
    return 0;
}

static int run_logfmt(struct fwd_parser *p, const uint8_t *line, size_t len)
{
    const char *s = (const char *)line, *end = s + len;
    int rc = 0;

    while (s < end && blank(*s))
        s++;
    if (s == end)
        return -EPROTO;
    while (rc == 0 && s < end) {
        const char *k = s, *v;
        size_t kn, vn;

        while (s < end && !blank(*s) && *s != '=' && *s != '"')
            s++;
        kn = (size_t)(s - k);
        if (kn == 0 || s == end || *s != '=')
            return -EPROTO; /* a bare word: not logfmt */
        s++;
        if (s < end && *s == '"') {
            s++;
            if ((rc = quoted(p, &s, end)) != 0)
                return rc;
            if (s < end && !blank(*s))
                return -EPROTO;
            v = (const char *)p->tmp.data;
            vn = p->tmp.len;
        } else {
            for (v = s; s < end && !blank(*s); s++)
                if (*s == '"')
                    return -EPROTO;
            vn = (size_t)(s - v);
        }
        rc = field_str(p, k, kn, v ? v : "", vn);
        while (s < end && blank(*s))
            s++;
    }
    return rc;
}

/* ---- regex ------------------------------------------------------------------------------- */

static int by_group(const void *a, const void *b)
{
    const struct group *x = a, *y = b;

    return x->n < y->n ? -1 : x->n > y->n;
}

/* The name table is sorted by name; fields come out in the pattern's order. */
static void name_groups(struct fwd_parser *p)
{
    uint32_t size;
    PCRE2_SPTR table;

    pcre2_pattern_info(p->re, PCRE2_INFO_NAMEENTRYSIZE, &size);
    pcre2_pattern_info(p->re, PCRE2_INFO_NAMETABLE, &table);
    for (uint32_t i = 0; i < p->nnames; i++) {
        PCRE2_SPTR e = table + (size_t)i * size;

        p->groups[i].n = (uint32_t)e[0] << 8 | e[1];
        p->groups[i].name = (const char *)e + 2;
    }
    qsort(p->groups, p->nnames, sizeof(*p->groups), by_group);
}

static int regex_compile(struct fwd_parser *p, const char *re, char *err, size_t errlen)
{
    if ((p->re = fwd_re_compile(re, "parse-regex", err, errlen)) == NULL)
        return -EINVAL;
    pcre2_pattern_info(p->re, PCRE2_INFO_NAMECOUNT, &p->nnames);
    if (p->nnames == 0) {
        snprintf(err, errlen,
                 "invalid log-opt parse-regex=\"%s\": it has no named group; name the fields, "
                 "as in (?<level>\\w+) (?<msg>.*)",
                 re);
        return -EINVAL;
    }
    p->md = pcre2_match_data_create_from_pattern(p->re, NULL);
    p->groups = calloc(p->nnames, sizeof(*p->groups));
    if (p->md == NULL || p->groups == NULL)
        return -ENOMEM;
    name_groups(p);
    return 0;
}

static int run_regex(struct fwd_parser *p, const uint8_t *line, size_t len)
{
    PCRE2_SIZE *ov;
    int rc = pcre2_match(p->re, line, len, 0, 0, p->md, NULL);

    if (rc < 0)
        return -EPROTO; /* no match, or a match limit */
    ov = pcre2_get_ovector_pointer(p->md);
    for (uint32_t i = 0; i < p->nnames && rc >= 0; i++) {
        uint32_t g = p->groups[i].n;
        const char *name = p->groups[i].name;

        if (ov[2 * g] == PCRE2_UNSET)
            continue;
        rc = field_str(p, name, strlen(name), (const char *)line + ov[2 * g],
                       ov[2 * g + 1] - ov[2 * g]);
    }
    return rc < 0 ? rc : 0;
}

/* ---- the parser -------------------------------------------------------------------------- */

struct fwd_parser *fwd_parser_create(const struct fwd_parse_opts *o, char *err, size_t errlen)
{
    struct fwd_parser *p = calloc(1, sizeof(*p));

    if (p == NULL)
        goto enomem;
    p->kind = o->kind;
    p->time_format = o->time_format;
    p->time_keep = o->time_keep;
    fwd_buf_init(&p->out, o->max_out);
    fwd_buf_init(&p->tmp, o->max_out);
    msgpack_packer_init(&p->pk, &p->out, out_write);
    p->spans = calloc(FWD_PARSE_MAX_FIELDS, sizeof(*p->spans));
    p->reserved = calloc(o->nreserved + 1, sizeof(char *));
    p->reserved_len = calloc(o->nreserved + 1, sizeof(size_t));
    if (p->spans == NULL || p->reserved == NULL || p->reserved_len == NULL)
        goto enomem;
    for (; p->nreserved < o->nreserved; p->nreserved++) {
        if ((p->reserved[p->nreserved] = strdup(o->reserved[p->nreserved])) == NULL)
            goto enomem;
        p->reserved_len[p->nreserved] = strlen(o->reserved[p->nreserved]);
    }
    if (o->time_key != NULL && o->time_key[0] != '\0') {
        if ((p->time_key = strdup(o->time_key)) == NULL)
            goto enomem;
        p->time_key_len = strlen(p->time_key);
    }
    if (o->kind == FWD_PARSE_REGEX) {
        int rc = regex_compile(p, o->regex ? o->regex : "", err, errlen);

        if (rc == -ENOMEM)
            goto enomem;
        if (rc != 0)
            goto fail;
    }
    return p;
enomem:
    snprintf(err, errlen, "out of memory");
fail:
    fwd_parser_destroy(p);
    return NULL;
}

void fwd_parser_destroy(struct fwd_parser *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->nreserved; i++)
        free(p->reserved[i]);
    free(p->reserved);
    free(p->reserved_len);
    free(p->spans);
    free(p->time_key);
    fwd_buf_release(&p->out);
    fwd_buf_release(&p->tmp);
    free(p->groups);
    pcre2_match_data_free(p->md);
    pcre2_code_free(p->re);
    free(p);
}

int fwd_parser_run(struct fwd_parser *p, const uint8_t *line, size_t len, struct fwd_parsed *out)
{
    int rc;

    reset(p);
    memset(out, 0, sizeof(*out));
    /* room for what a line usually becomes, so out_write rarely checks (best effort) */
    (void)!fwd_buf_reserve(&p->out, len + 64 < p->out.max ? len + 64 : p->out.max);
    switch (p->kind) {
        case FWD_PARSE_JSON:
            rc = run_json(p, line, len);
            break;
        case FWD_PARSE_LOGFMT:
            rc = run_logfmt(p, line, len);
            break;
        case FWD_PARSE_REGEX:
            rc = run_regex(p, line, len);
            break;
        default:
            rc = -EPROTO;
            break;
    }
    if (rc == 0)
        finish(p, out);
    return rc;
}
