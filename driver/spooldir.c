/*
 * spooldir.c - the files beside a destination's spool segments (see fwd_spooldir.h).
 *
 * options.json never holds a secret value. Each option is written as it was
 * given, except the secrets given as values (fluentd-shared-key,
 * fluentd-password: FWD_CONFIG_SECRET rows): one from a plugin-wide default
 * is written as {"env": VARIABLE}, one given as a log-opt as {"inline": true}.
 * A *-file option is a path, written as it is, and read again when the spool
 * is replayed, so a rotated file's new content is what replay uses.
 *
 * options.json is written as options.json.tmp on the caller's thread; its
 * fsync and the rename onto options.json are the syncer's (the loop never
 * waits for the disk), so an earlier options.json stays in place until the new
 * one is on disk.
 */
#include "fwd_spooldir.h"
#include "fwd_file.h"
#include "fwd_limits.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define META_FILE  "options.json"
#define TMP_SUFFIX ".tmp"
/* The sequence number up to which every batch was delivered or dropped (8 bytes). */
#define DELIVERED_FILE "delivered"

/* Does an option after rows[i] set the same field (a secret and its -file twin, a repeat)? */
static bool overridden(const struct fwd_config_opt *const *rows, size_t n, size_t i)
{
    for (size_t j = i + 1; j < n; j++)
        if (rows[i] != NULL && rows[j] != NULL && rows[j]->off == rows[i]->off)
            return true;
    return false;
}

static json_t *option_value(const struct fwd_config_opt *d, const char *value, bool from_env)
{
    if (d == NULL || d->type != FWD_CONFIG_SECRET)
        return json_string(value);
    if (from_env && d->env != NULL)
        return json_pack("{ss}", "env", d->env);
    return json_pack("{sb}", "inline", 1);
}

json_t *fwd_spooldir_options(const struct fwd_config *cfg)
{
    size_t n = cfg->ndefaults + cfg->nopts;
    const struct fwd_kv **list = calloc(n + 1, sizeof(*list));
    const struct fwd_config_opt **rows = calloc(n + 1, sizeof(*rows));
    json_t *o = json_object();

    if (list == NULL || rows == NULL || o == NULL) {
        json_decref(o);
        o = NULL;
        n = 0;
    }
    /* in the order fwd_config_build applied them: defaults, then log-opts */
    for (size_t i = 0; i < n; i++) {
        list[i] = i < cfg->ndefaults ? &cfg->defaults[i] : &cfg->opts[i - cfg->ndefaults];
        rows[i] = fwd_config_find_opt(list[i]->key);
    }
    for (size_t i = 0; i < n; i++) {
        json_t *v;

        /* only the option that won: replay applies them in another order */
        if (overridden(rows, n, i))
            continue;
        v = option_value(rows[i], list[i]->value, i < cfg->ndefaults);
        if (v == NULL || json_object_set_new(o, list[i]->key, v) != 0) {
            json_decref(o);
            o = NULL;
            break;
        }
    }
    free(list);
    free(rows);
    return o;
}

int fwd_spooldir_write_options(const char *dir, json_t *options, struct fwd_syncer *syncer)
{
    char path[FWD_PATH_MAX], tmp[FWD_PATH_MAX + 8];
    int fd;

    if (options == NULL)
        return -ENOMEM;
    fwd_pathf(path, sizeof(path), "%s/" META_FILE, dir);
    fwd_pathf(tmp, sizeof(tmp), "%s" TMP_SUFFIX, path);
    /* 0600: the destination's addresses and paths are the owner's business */
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    errno = 0; /* what a failed write leaves (ENOSPC, say) */
    if (json_dumpfd(options, fd, JSON_SORT_KEYS) != 0) {
        int e = errno ? errno : EIO;

        close(fd);
        unlink(tmp);
        return -e;
    }
    fwd_syncer_rename(syncer, fd, tmp, path); /* fsync, close, rename: off the loop */
    return 0;
}

void fwd_spooldir_opts_free(struct fwd_spooldir_opts *o)
{
    fwd_kv_free(o->kv, o->n);
    fwd_kv_free(o->secrets, o->nsecrets);
    memset(o, 0, sizeof(*o));
}

/* Append {k, v} (v may be NULL) to *kv. 0 or -1. */
static int kv_add(struct fwd_kv **kv, size_t *n, size_t cap, const char *k, const char *v)
{
    if (*kv == NULL && (*kv = calloc(cap + 1, sizeof(**kv))) == NULL)
        return -1;
    (*kv)[*n].key = strdup(k);
    (*kv)[*n].value = v != NULL ? strdup(v) : NULL;
    (*n)++;
    return (*kv)[*n - 1].key == NULL || (v != NULL && (*kv)[*n - 1].value == NULL) ? -1 : 0;
}

/* Is the field of secret row d also set by one of o's options (its -file twin)? */
static bool set_by_file(const struct fwd_spooldir_opts *o, const struct fwd_config_opt *d)
{
    for (size_t i = 0; i < o->n; i++) {
        const struct fwd_config_opt *r = fwd_config_find_opt(o->kv[i].key);

        if (r != NULL && r->off == d->off)
            return true;
    }
    return false;
}

/*
 * An older version wrote secret values in clear. They are not used (they may
 * be stale: replay waits for a key as for an inline one) and the file is
 * written again without them at once. Its replay applied the options sorted,
 * so a -file twin (which sorts after) won: such a value is dropped outright.
 */
static int scrub(const char *dir, json_t *root, struct fwd_spooldir_opts *o)
{
    const char *k;
    json_t *v;
    void *tmp;

    json_object_foreach_safe(root, tmp, k, v)
    {
        const struct fwd_config_opt *d = fwd_config_find_opt(k);

        if (d == NULL || d->type != FWD_CONFIG_SECRET || !json_is_string(v))
            continue;
        if (set_by_file(o, d)) {
            json_object_del(root, k);
            continue;
        }
        if (kv_add(&o->secrets, &o->nsecrets, json_object_size(root), k, NULL) != 0 ||
            json_object_set_new(root, k, json_pack("{sb}", "inline", 1)) != 0)
            return -ENOMEM;
    }
    o->scrubbed = true;
    /* once per spool an older version left, at start: synced here, not by the syncer */
    return fwd_spooldir_write_options(dir, root, NULL);
}

/* One option of options.json into o; *legacy: a secret value in clear (an older version). */
static int read_one(struct fwd_spooldir_opts *o, size_t cap, const char *k, json_t *v, bool *legacy)
{
    const struct fwd_config_opt *d = fwd_config_find_opt(k);
    json_t *env = json_is_object(v) ? json_object_get(v, "env") : NULL;

    if (json_is_string(v) && d != NULL && d->type == FWD_CONFIG_SECRET) {
        *legacy = true;
        return 0;
    }
    if (json_is_string(v))
        return kv_add(&o->kv, &o->n, cap, k, json_string_value(v));
    if (d == NULL || d->type != FWD_CONFIG_SECRET || !json_is_object(v))
        return 0; /* not ours to understand: left out, as before */
    return kv_add(&o->secrets, &o->nsecrets, cap, k,
                  json_is_string(env) ? json_string_value(env) : NULL);
}

int fwd_spooldir_read_options(const char *dir, struct fwd_spooldir_opts *o)
{
    char path[FWD_PATH_MAX];
    json_error_t jerr;
    json_t *root, *v;
    const char *k;
    bool legacy = false;
    int rc = 0;

    memset(o, 0, sizeof(*o));
    fwd_pathf(path, sizeof(path), "%s/" META_FILE, dir);
    root = json_load_file(path, 0, &jerr);
    if (root == NULL || !json_is_object(root)) {
        json_decref(root);
        return -EINVAL;
    }
    json_object_foreach(root, k, v)
    {
        if (read_one(o, json_object_size(root), k, v, &legacy) != 0) {
            rc = -ENOMEM;
            break;
        }
    }
    if (rc == 0 && legacy)
        rc = scrub(dir, root, o);
    json_decref(root);
    return rc;
}

int fwd_spooldir_open_mark(const char *dir, uint64_t *upto)
{
    char path[FWD_PATH_MAX];
    int fd;

    fwd_pathf(path, sizeof(path), "%s/" DELIVERED_FILE, dir);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 || pread(fd, upto, sizeof(*upto), 0) != (ssize_t)sizeof(*upto))
        *upto = 0;
    return fd < 0 ? -errno : fd;
}

int fwd_spooldir_write_mark(int fd, uint64_t upto)
{
    if (fd < 0)
        return -EBADF;
    return pwrite(fd, &upto, sizeof(upto), 0) == (ssize_t)sizeof(upto) ? 0 : -EIO;
}

void fwd_spooldir_forget(const char *dir)
{
    char path[FWD_PATH_MAX];

    /* The temporary file first: that withdraws a rename the syncer has not done yet (it
     * finds no tmp), and one it did before is undone by the unlink after. */
    fwd_pathf(path, sizeof(path), "%s/" META_FILE TMP_SUFFIX, dir);
    unlink(path);
    fwd_pathf(path, sizeof(path), "%s/" META_FILE, dir);
    unlink(path);
    fwd_pathf(path, sizeof(path), "%s/" DELIVERED_FILE, dir);
    unlink(path);
}
