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
#define PCRE2_CODE_UNIT_WIDTH 8
#include "fwd_record.h"
#include "fwd_buf.h"
#include "fwd_forward.h"

#include <errno.h>
#include <pcre2.h>
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
    int errcode, rc = 0;
    PCRE2_SIZE erroff;

    if (re[0] == '\0')
        return 0;
    code = pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED, 0, &errcode, &erroff, NULL);
    if (code == NULL) {
        PCRE2_UCHAR msg[120];
        pcre2_get_error_message(errcode, msg, sizeof(msg));
        snprintf(err, errlen, "invalid log-opt %s=\"%s\": %s at offset %zu", opt, re, (char *)msg,
                 (size_t)erroff);
        return -EINVAL;
    }
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

struct fwd_record_tmpl *fwd_record_tmpl_create(const struct fwd_info *info,
                                               const struct fwd_config *cfg, char *err,
                                               size_t errlen)
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
    rc = env_pairs(info, &envkv, &nenv);
    if (rc == 0)
        rc = apply_list(&a, cfg->labels, info->labels, info->nlabels);
    if (rc == 0)
        rc = apply_regex(&a, "labels-regex", cfg->labels_regex, info->labels, info->nlabels, err,
                         errlen);
    if (rc == 0)
        rc = apply_list(&a, cfg->env, envkv, nenv);
    if (rc == 0)
        rc = apply_regex(&a, "env-regex", cfg->env_regex, envkv, nenv, err, errlen);
    if (rc == -EINVAL)
        goto fail;
    if (rc != 0)
        goto enomem;

    /* Go: data[k] = v after the base keys, so an attribute replaces a base value. */
    for (size_t i = 0; i < a.n; i++) {
        const char *k = a.kv[i].key, *v = a.kv[i].value;

        if (strcmp(k, "container_id") == 0)
            cid = v;
        else if (strcmp(k, "container_name") == 0)
            cname = v;
        else if (strcmp(k, "source") == 0 || strcmp(k, "log") == 0) {
            char **slot = k[0] == 's' ? &t->source_override : &t->log_override;
            free(*slot);
            if ((*slot = strdup(v)) == NULL)
                goto enomem;
        } else {
            if (pack_pair(&t->extras, k, v) != 0)
                goto enomem;
            t->nextras++;
            if (!is_partial_key(k)) {
                if (pack_pair(&t->extras_np, k, v) != 0)
                    goto enomem;
                t->nextras_np++;
            }
        }
    }
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
    free(t);
}

size_t fwd_record_nattrs(const struct fwd_record_tmpl *t)
{
    return t->nextras + (t->source_override != NULL) + (t->log_override != NULL);
}

size_t fwd_record_size_max(const struct fwd_record_tmpl *t, const struct fwd_line *l)
{
    size_t n = FWD_FORWARD_ENTRY_START_MAX + 5 + t->prefix.len + 12 + 9 + t->extras.len;

    n += t->source_override ? strlen(t->source_override) : l->source_len;
    n += t->log_override ? strlen(t->log_override) : l->len;
    if (l->piece)
        n += 4 * 21 + l->id_len + 12 + 5 + 5;
    return n;
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

void fwd_record_pack(const struct fwd_record_tmpl *t, const struct fwd_line *l, msgpack_packer *pk)
{
    const struct fwd_buf *extras = l->piece ? &t->extras_np : &t->extras;
    size_t nextras = l->piece ? t->nextras_np : t->nextras;

    fwd_forward_pack_entry_start(pk, l->time_nano, t->subsecond);
    msgpack_pack_map(pk, 4 + nextras + (l->piece ? 4 : 0));
    raw(pk, &t->prefix);
    str(pk, "source", 6);
    if (t->source_override)
        str(pk, t->source_override, strlen(t->source_override));
    else
        str(pk, l->source_str, l->source_len);
    str(pk, "log", 3);
    if (t->log_override)
        str(pk, t->log_override, strlen(t->log_override));
    else
        str(pk, (const char *)l->data, l->len);
    raw(pk, extras);
    if (l->piece) {
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
}
