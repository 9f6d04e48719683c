/*
 * record.c - record templates and per-line packing.
 *
 * Attribute semantics follow moby daemon/logger/loginfo.go ExtraAttributes:
 * "labels" and "env" are comma lists of names (no trimming); "labels-regex"
 * and "env-regex" are unanchored regular expressions (Go RE2 there, PCRE2
 * here, which accepts the same common syntax); ContainerEnv entries without
 * '=' are ignored and a later duplicate wins; labels are applied first, so env
 * wins on a collision. Go keeps them in a map (random order); we keep the
 * order they were first set in, so output is deterministic.
 */
#include "fwd_record.h"
#include "fwd_buf.h"
#include "fwd_forward.h"
#include "fwd_limits.h"
#include "fwd_parse.h"
#include "fwd_re.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fwd_record_tmpl {
    bool subsecond;
    struct fwd_buf prefix; /* packed container_id and container_name pairs */
    struct fwd_buf extras; /* packed attribute pairs */
    size_t nextras;
    struct fwd_buf extras_np; /* the same without partial_* keys (for pieces) */
    size_t nextras_np;
    char *source_override; /* an attribute named "source" */
    char *log_override;    /* an attribute named "log" */
    /* parse, seq-key */
    bool keep_log;
    struct fwd_buf into; /* packed parse-into key; empty: the top level */
    struct fwd_buf seq;  /* packed seq-key key; empty: none */
    char **keys;         /* the top-level keys fwdlog sets (besides log) */
    size_t nkeys;
};

struct attrs {
    struct fwd_kv *kv;
    size_t n, cap;
};

static int attrs_set(struct attrs *a, const char *k, const char *v)
{
    for (size_t i = 0; i < a->n; i++) {
        if (strcmp(a->kv[i].key, k) == 0) {
            char *nv = strdup(v);
            if (nv == NULL)
                return -ENOMEM;
            free(a->kv[i].value);
            a->kv[i].value = nv;
            return 0;
        }
    }
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 8;
        struct fwd_kv *p = realloc(a->kv, nc * sizeof(*p));
        if (p == NULL)
            return -ENOMEM;
        a->kv = p;
        a->cap = nc;
    }
    a->kv[a->n].key = strdup(k);
    a->kv[a->n].value = strdup(v);
    a->n++;
    if (a->kv[a->n - 1].key == NULL || a->kv[a->n - 1].value == NULL)
        return -ENOMEM;
    return 0;
}

static void attrs_free(struct attrs *a)
{
    for (size_t i = 0; i < a->n; i++) {
        free(a->kv[i].key);
        free(a->kv[i].value);
    }
    free(a->kv);
}

/* Apply a comma list of names, looked up in kv[0..n) (last match wins). */
static int apply_list(struct attrs *a, const char *list, const struct fwd_kv *kv, size_t n)
{
    const char *p = list;
    int rc = 0;

    if (list[0] == '\0')
        return 0;
    while (rc == 0) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);

        for (size_t i = n; i-- > 0;) {
            if (strlen(kv[i].key) == len && memcmp(kv[i].key, p, len) == 0) {
                rc = attrs_set(a, kv[i].key, kv[i].value);
                break;
            }
        }
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return rc;
}

static int apply_regex(struct attrs *a, const char *opt, const char *re, const struct fwd_kv *kv,
                       size_t n, char *err, size_t errlen)
{
    pcre2_code *code;
    pcre2_match_data *md;
    int rc = 0;

    if (re[0] == '\0')
        return 0;
    code = fwd_re_compile(re, opt, err, errlen);
    if (code == NULL)
        return -EINVAL;
    md = pcre2_match_data_create_from_pattern(code, NULL);
    if (md == NULL) {
        pcre2_code_free(code);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (pcre2_match(code, (PCRE2_SPTR)kv[i].key, PCRE2_ZERO_TERMINATED, 0, 0, md, NULL) >= 0)
            rc = attrs_set(a, kv[i].key, kv[i].value);
    }
    pcre2_match_data_free(md);
    pcre2_code_free(code);
    return rc;
}

/* ContainerEnv "K=V" entries as key/value pairs (borrowing nothing). */
static int env_pairs(const struct fwd_info *info, struct fwd_kv **out, size_t *n)
{
    *n = 0;
    *out = calloc(info->nenv ? info->nenv : 1, sizeof(struct fwd_kv));
    if (*out == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < info->nenv; i++) {
        const char *eq = strchr(info->env[i], '=');
        if (eq == NULL)
            continue;
        (*out)[*n].key = strndup(info->env[i], (size_t)(eq - info->env[i]));
        (*out)[*n].value = strdup(eq + 1);
        (*n)++;
        if ((*out)[*n - 1].key == NULL || (*out)[*n - 1].value == NULL)
            return -ENOMEM;
    }
    return 0;
}

static const char *label(const struct fwd_info *info, const char *k)
{
    for (size_t i = info->nlabels; i-- > 0;)
        if (strcmp(info->labels[i].key, k) == 0)
            return info->labels[i].value;
    return NULL;
}

/* The entrypoint and args joined by spaces, as {{.Command}}. NULL on ENOMEM. */
static char *command(const struct fwd_info *info)
{
    size_t n = strlen(info->entrypoint) + 1;
    char *s;

    for (size_t i = 0; i < info->nargs; i++)
        n += strlen(info->args[i]) + 1;
    if ((s = malloc(n)) == NULL)
        return NULL;
    strcpy(s, info->entrypoint);
    for (size_t i = 0; i < info->nargs; i++) {
        if (s[0] != '\0')
            strcat(s, " ");
        strcat(s, info->args[i]);
    }
    return s;
}

/* metadata=: each name under its own key (compose: compose_project, compose_service). */
static int apply_metadata(struct attrs *a, unsigned bits, const struct fwd_info *info,
                          const char *host)
{
    const char *project = label(info, "com.docker.compose.project");
    const char *service = label(info, "com.docker.compose.service");
    int rc = 0;

    if (bits & FWD_META_IMAGE_NAME)
        rc = attrs_set(a, "image_name", info->image_name);
    if (rc == 0 && (bits & FWD_META_IMAGE_ID))
        rc = attrs_set(a, "image_id", info->image_id);
    if (rc == 0 && (bits & FWD_META_HOST))
        rc = attrs_set(a, "host", host);
    if (rc == 0 && (bits & FWD_META_COMMAND)) {
        char *cmd = command(info);

        rc = cmd ? attrs_set(a, "command", cmd) : -ENOMEM;
        free(cmd);
    }
    if (rc == 0 && (bits & FWD_META_CREATED))
        rc = attrs_set(a, "created", info->created);
    if (rc == 0 && (bits & FWD_META_COMPOSE) && project != NULL)
        rc = attrs_set(a, "compose_project", project);
    if (rc == 0 && (bits & FWD_META_COMPOSE) && service != NULL)
        rc = attrs_set(a, "compose_service", service);
    return rc;
}

static int pack_str(struct fwd_buf *b, const char *s, size_t len)
{
    msgpack_packer pk;

    msgpack_packer_init(&pk, b, fwd_buf_msgpack_write);
    if (msgpack_pack_str(&pk, len) != 0 || msgpack_pack_str_body(&pk, s, len) != 0)
        return -ENOMEM;
    return 0;
}

static int pack_pair(struct fwd_buf *b, const char *k, const char *v)
{
    int rc = pack_str(b, k, strlen(k));
    return rc ? rc : pack_str(b, v, strlen(v));
}

static bool is_partial_key(const char *k)
{
    return strcmp(k, "partial_message") == 0 || strcmp(k, "partial_id") == 0 ||
           strcmp(k, "partial_ordinal") == 0 || strcmp(k, "partial_last") == 0;
}

static int add_key(struct fwd_record_tmpl *t, const char *k)
{
    char **n = realloc(t->keys, (t->nkeys + 1) * sizeof(*n));

    if (n == NULL)
        return -ENOMEM;
    t->keys = n;
    if ((n[t->nkeys] = strdup(k)) == NULL)
        return -ENOMEM;
    t->nkeys++;
    return 0;
}

/* parse-into and seq-key: packed once; an attribute of the same name is an error. */
static int pipeline_keys(struct fwd_record_tmpl *t, const struct attrs *a,
                         const struct fwd_pipeline_cfg *pl, char *err, size_t errlen)
{
    const char *names[2] = {pl->parse != FWD_PARSE_NONE ? pl->parse_into : "", pl->seq_key};
    const char *opt[2] = {"parse-into", "seq-key"};
    struct fwd_buf *dst[2] = {&t->into, &t->seq};

    t->keep_log = pl->parse_keep_log;
    for (int i = 0; i < 2; i++) {
        if (names[i][0] == '\0')
            continue;
        for (size_t j = 0; j < a->n; j++) {
            if (strcmp(a->kv[j].key, names[i]) == 0) {
                snprintf(err, errlen,
                         "invalid log-opt %s=\"%s\": an attribute (labels, env or metadata) "
                         "has that name; pick another",
                         opt[i], names[i]);
                return -EINVAL;
            }
        }
        if (pack_str(dst[i], names[i], strlen(names[i])) != 0 || add_key(t, names[i]) != 0)
            return -ENOMEM;
    }
    return 0;
}

/*
 * Go: data[k] = v after the base keys, so an attribute replaces a base value.
 * Pack the attributes into t; *cid and *cname may be replaced. 0 or -ENOMEM.
 */
static int pack_attrs(struct fwd_record_tmpl *t, const struct attrs *a, const char **cid,
                      const char **cname)
{
    for (size_t i = 0; i < a->n; i++) {
        const char *k = a->kv[i].key, *v = a->kv[i].value;

        if (strcmp(k, "container_id") == 0)
            *cid = v;
        else if (strcmp(k, "container_name") == 0)
            *cname = v;
        else if (strcmp(k, "source") == 0 || strcmp(k, "log") == 0) {
            char **slot = k[0] == 's' ? &t->source_override : &t->log_override;
            free(*slot);
            if ((*slot = strdup(v)) == NULL)
                return -ENOMEM;
        } else {
            if (pack_pair(&t->extras, k, v) != 0)
                return -ENOMEM;
            t->nextras++;
            if (!is_partial_key(k)) {
                if (pack_pair(&t->extras_np, k, v) != 0)
                    return -ENOMEM;
                t->nextras_np++;
            }
        }
    }
    return 0;
}

struct fwd_record_tmpl *fwd_record_tmpl_create(const struct fwd_info *info,
                                               const struct fwd_config *cfg, const char *host,
                                               char *err, size_t errlen)
{
    struct fwd_record_tmpl *t = calloc(1, sizeof(*t));
    struct attrs a = {0};
    struct fwd_kv *envkv = NULL;
    size_t nenv = 0;
    const char *cid = info->container_id, *cname = info->container_name;
    int rc;

    if (t == NULL)
        goto enomem;
    t->subsecond = cfg->subsecond;
    fwd_buf_init(&t->prefix, 1u << 30);
    fwd_buf_init(&t->extras, 1u << 30);
    fwd_buf_init(&t->extras_np, 1u << 30);
    fwd_buf_init(&t->into, 1u << 10);
    fwd_buf_init(&t->seq, 1u << 10);
    rc = env_pairs(info, &envkv, &nenv);
    if (rc == 0)
        rc = apply_metadata(&a, cfg->pl.metadata, info, host);
    if (rc == 0)
        rc = apply_list(&a, cfg->labels, info->labels, info->nlabels);
    if (rc == 0)
        rc = apply_regex(&a, "labels-regex", cfg->labels_regex, info->labels, info->nlabels, err,
                         errlen);
    if (rc == 0)
        rc = apply_list(&a, cfg->env, envkv, nenv);
    if (rc == 0)
        rc = apply_regex(&a, "env-regex", cfg->env_regex, envkv, nenv, err, errlen);
    if (rc == 0)
        rc = pipeline_keys(t, &a, &cfg->pl, err, errlen);
    for (size_t i = 0; rc == 0 && i < a.n; i++)
        rc = strcmp(a.kv[i].key, "log") == 0 ? 0 : add_key(t, a.kv[i].key);
    if (rc == 0)
        rc = add_key(t, "container_id") || add_key(t, "container_name") || add_key(t, "source")
                 ? -ENOMEM
                 : 0;
    if (rc == -EINVAL)
        goto fail;
    if (rc != 0)
        goto enomem;

    if (pack_attrs(t, &a, &cid, &cname) != 0)
        goto enomem;
    if (pack_pair(&t->prefix, "container_id", cid) != 0 ||
        pack_pair(&t->prefix, "container_name", cname) != 0)
        goto enomem;
    attrs_free(&a);
    fwd_kv_free(envkv, nenv);
    return t;
enomem:
    snprintf(err, errlen, "out of memory");
fail:
    attrs_free(&a);
    fwd_kv_free(envkv, nenv);
    fwd_record_tmpl_destroy(t);
    return NULL;
}

void fwd_record_tmpl_destroy(struct fwd_record_tmpl *t)
{
    if (t == NULL)
        return;
    fwd_buf_release(&t->prefix);
    fwd_buf_release(&t->extras);
    fwd_buf_release(&t->extras_np);
    free(t->source_override);
    free(t->log_override);
    fwd_buf_release(&t->into);
    fwd_buf_release(&t->seq);
    for (size_t i = 0; i < t->nkeys; i++)
        free(t->keys[i]);
    free(t->keys);
    free(t);
}

size_t fwd_record_tmpl_keys(const struct fwd_record_tmpl *t, const char *const **keys,
                            bool *log_stays)
{
    *keys = (const char *const *)t->keys;
    *log_stays = t->keep_log || t->log_override != NULL;
    return t->nkeys;
}

bool fwd_record_parse_nested(const struct fwd_record_tmpl *t)
{
    return t->into.len > 0;
}

size_t fwd_record_nattrs(const struct fwd_record_tmpl *t)
{
    return t->nextras + (t->source_override != NULL) + (t->log_override != NULL);
}

size_t fwd_record_size_max(const struct fwd_record_tmpl *t, const struct fwd_line *l)
{
    return fwd_record_size_max_more(t, l, NULL);
}

size_t fwd_record_size_max_more(const struct fwd_record_tmpl *t, const struct fwd_line *l,
                                const struct fwd_record_more *m)
{
    size_t n = FWD_FORWARD_ENTRY_START_MAX + 5 + t->prefix.len + 12 + 9 + t->extras.len;

    n += t->source_override ? strlen(t->source_override) : l->source_len;
    n += t->log_override ? strlen(t->log_override) : l->len;
    if (l->piece)
        n += 4 * 21 + l->id_len + 12 + 5 + 5;
    if (m != NULL && m->parsed != NULL)
        n += t->into.len + 5 + m->parsed->len;
    if (m != NULL)
        n += t->seq.len + 9;
    return n;
}

size_t fwd_record_piece_room(const struct fwd_record_tmpl *t, size_t max_record)
{
    /* the largest record of an empty piece: the longest id and source a piece can have */
    struct fwd_line l = {.source_len = 31, .piece = true, .id_len = FWD_PARTIAL_ID_MAX};
    struct fwd_record_more m = {NULL, UINT64_MAX};
    size_t fixed = fwd_record_size_max_more(t, &l, &m);

    return max_record > fixed + FWD_RECORD_PIECE_MIN ? max_record - fixed : FWD_RECORD_PIECE_MIN;
}

static void raw(msgpack_packer *pk, const struct fwd_buf *b)
{
    if (b->len)
        pk->callback(pk->data, (const char *)b->data, b->len);
}

static void str(msgpack_packer *pk, const char *s, size_t len)
{
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, s, len);
}

static void pack_piece(const struct fwd_line *l, msgpack_packer *pk)
{
    char ord[12];
    int n = snprintf(ord, sizeof(ord), "%u", l->ordinal);

    str(pk, "partial_message", 15);
    str(pk, "true", 4);
    str(pk, "partial_id", 10);
    str(pk, l->id, l->id_len);
    str(pk, "partial_ordinal", 15);
    str(pk, ord, (size_t)n);
    str(pk, "partial_last", 12);
    if (l->last)
        str(pk, "true", 4);
    else
        str(pk, "false", 5);
}

/* The parsed fields: at the top level, or one map under parse-into. */
static void pack_parsed(const struct fwd_record_tmpl *t, const struct fwd_parsed *p,
                        msgpack_packer *pk)
{
    if (t->into.len > 0) {
        raw(pk, &t->into);
        msgpack_pack_map(pk, p->npairs);
    }
    if (p->len)
        pk->callback(pk->data, (const char *)p->pairs, p->len);
}

void fwd_record_pack(const struct fwd_record_tmpl *t, const struct fwd_line *l, msgpack_packer *pk)
{
    fwd_record_pack_more(t, l, NULL, pk);
}

void fwd_record_pack_more(const struct fwd_record_tmpl *t, const struct fwd_line *l,
                          const struct fwd_record_more *m, msgpack_packer *pk)
{
    const struct fwd_buf *extras = l->piece ? &t->extras_np : &t->extras;
    size_t nextras = l->piece ? t->nextras_np : t->nextras;
    const struct fwd_parsed *p = m ? m->parsed : NULL;
    bool log = p == NULL || t->keep_log || t->log_override != NULL;
    bool seq = m != NULL && t->seq.len > 0;
    size_t nparsed = p == NULL ? 0 : t->into.len > 0 ? 1 : p->npairs;

    fwd_forward_pack_entry_start(pk, p && p->has_time ? p->time_nano : l->time_nano, t->subsecond);
    msgpack_pack_map(pk, 3 + log + nparsed + nextras + (l->piece ? 4 : 0) + seq);
    raw(pk, &t->prefix);
    str(pk, "source", 6);
    if (t->source_override)
        str(pk, t->source_override, strlen(t->source_override));
    else
        str(pk, l->source_str, l->source_len);
    if (log) {
        str(pk, "log", 3);
        if (t->log_override)
            str(pk, t->log_override, strlen(t->log_override));
        else
            str(pk, (const char *)l->data, l->len);
    }
    if (p != NULL)
        pack_parsed(t, p, pk);
    raw(pk, extras);
    if (l->piece)
        pack_piece(l, pk);
    if (seq) {
        raw(pk, &t->seq);
        msgpack_pack_uint64(pk, m->seq);
    }
}
