/*
 * replay.c - at start, the spools an earlier run left (state_dir/spool/NAME/),
 * and the names of spool directories (see fwd_outputs_replay in fwd_output.h).
 *
 * A spool is adopted by its path, whatever its name: its options.json says
 * which destination it belongs to. So a directory an older version named
 * (FNV-1a of its dest_key, 16 hex digits) is sent like one named by today's
 * spool_id (SHA-256, 64). options.json holds no secret value
 * (fwd_spooldir.h), so the destination is rebuilt with the secrets at hand
 * now: a *-file option reads its file again (a rotated key is the new one), a
 * plugin-wide default's secret comes from the daemon's environment now. A
 * secret that was given inline (or one whose variable is no longer set) is
 * not at hand: the spool is then never sent with a guess. It waits, untouched
 * on disk, until a destination of the same spool_id exists (a container logs
 * to that destination again, or another spool's options name it), and is sent
 * with that destination's credentials: the key in use now, never a stale one.
 */
#define FWD_LOG_MODULE "output"
#include "fwd_output.h"
#include "fwd_file.h"
#include "fwd_limits.h"
#include "fwd_log.h"
#include "fwd_queue.h"
#include "fwd_spooldir.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct fwd_waiting {
    struct fwd_waiting *next;
    char spool_id[65];
    char dir[FWD_PATH_MAX];
};

bool fwd_outputs_other_spool_name(const struct fwd_outputs *m, const struct fwd_config *cfg,
                                  char *out, size_t n)
{
    const char *state = fwd_outputs_state_dir(m);
    char id[80], h[65];
    unsigned i = 1;

    fwd_pathf(out, n, "%s/spool/%s", state, cfg->spool_id);
    while (fwd_outputs_dir_held(m, out)) {
        snprintf(id, sizeof(id), "%s#%u", cfg->spool_id, ++i);
        fwd_config_sha256_hex(h, id, strlen(id));
        fwd_pathf(out, n, "%s/spool/%s", state, h);
    }
    if (i == 1)
        return false;
    /* queue.c makes spool/ for the usual name only; an error shows when the spool opens */
    *strrchr(out, '/') = '\0';
    (void)mkdir(out, 0700);
    out[strlen(out)] = '/';
    return true;
}

void fwd_outputs_waiting_free(struct fwd_waiting *w)
{
    while (w != NULL) {
        struct fwd_waiting *next = w->next;

        free(w);
        w = next;
    }
}

void fwd_outputs_waiting_take(struct fwd_outputs *m, struct fwd_waiting **w, const char *spool_id)
{
    char err[2048] = "no destination";
    size_t n;

    for (struct fwd_waiting **pp = w; *pp != NULL;) {
        struct fwd_waiting *x = *pp;

        if (strcmp(x->spool_id, spool_id) != 0) {
            pp = &x->next;
            continue;
        }
        *pp = x->next; /* unlinked first: adopting creates destinations */
        if (fwd_outputs_adopt(m, NULL, spool_id, x->dir, &n, err, sizeof(err)) != 0)
            fwd_log(FWD_LOG_ERROR, "spool %s: %s: left alone", x->dir, err);
        else
            fwd_log(FWD_LOG_INFO,
                    "spool %s: its destination is back, with credentials: sending its %zu "
                    "batches",
                    x->dir, n);
        free(x);
        pp = w; /* the list may have changed under us */
    }
}

/* The addresses of cfg for a log line ("127.0.0.1:24224,unix:///run/f.sock"). */
static void addr_label(const struct fwd_config *cfg, char *out, size_t n)
{
    size_t off = 0;

    out[0] = '\0';
    for (unsigned i = 0; i < cfg->naddrs && off < n; i++) {
        const struct fwd_addr *a = &cfg->addrs[i];

        if (a->scheme == FWD_ADDR_UNIX)
            off += (size_t)snprintf(out + off, n - off, "%sunix://%s", i ? "," : "", a->path);
        else
            off += (size_t)snprintf(out + off, n - off, "%s%s%s:%u", i ? "," : "",
                                    a->scheme == FWD_ADDR_TLS ? "tls://" : "", a->host, a->port);
    }
}

/* The lists a spool's destination is rebuilt from (the strings are o's and defaults'). */
struct rebuild {
    struct fwd_kv *opts, *defs;
    size_t nopts, ndefs;
    char missing[256]; /* the secrets not at hand, for the log line */
};

/* A secret not at hand gets a stand-in: only its spool_id is computed from it, never sent. */
static char stand_in[] = "(not kept)";

static int rebuild_lists(const struct fwd_spooldir_opts *o, const struct fwd_kv *defaults,
                         size_t ndefaults, struct rebuild *rb)
{
    memset(rb, 0, sizeof(*rb));
    rb->opts = calloc(o->n + o->nsecrets + 1, sizeof(*rb->opts));
    rb->defs = calloc(o->nsecrets + 1, sizeof(*rb->defs));
    if (rb->opts == NULL || rb->defs == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < o->n; i++)
        rb->opts[rb->nopts++] = o->kv[i];
    for (size_t i = 0; i < o->nsecrets; i++) {
        const struct fwd_kv *s = &o->secrets[i];
        const struct fwd_kv *now = NULL;
        size_t off = strlen(rb->missing);

        for (size_t j = 0; s->value != NULL && j < ndefaults; j++)
            if (strcmp(defaults[j].key, s->key) == 0)
                now = &defaults[j];
        if (now != NULL) { /* as a plugin-wide default, as it was */
            rb->defs[rb->ndefs++] = *now;
            continue;
        }
        rb->opts[rb->nopts++] = (struct fwd_kv){s->key, stand_in};
        snprintf(rb->missing + off, sizeof(rb->missing) - off, "%s%s (%s%s)", off ? ", " : "",
                 s->key, s->value ? s->value : "given inline", s->value ? " is not set now" : "");
    }
    return 0;
}

/* One spool directory an earlier run left. The number of its batches queued now. */
static size_t replay_dir(struct fwd_outputs *m, const char *dir, const struct fwd_kv *defaults,
                         size_t ndefaults)
{
    struct fwd_spooldir_opts o;
    struct rebuild rb = {0};
    struct fwd_config cfg;
    struct fwd_waiting *w;
    char err[2048], where[1200];
    size_t n = 0;
    int rc = fwd_spooldir_read_options(dir, &o);

    if (rc != 0) {
        fwd_log(FWD_LOG_WARN, "spool %s: options.json: %s: left alone", dir,
                rc == -EINVAL ? "missing or not a JSON object" : strerror(-rc));
        goto out;
    }
    if (o.scrubbed)
        fwd_log(FWD_LOG_WARN,
                "spool %s: its options.json (an older version's) held secret values: written "
                "again without them",
                dir);
    if (rebuild_lists(&o, defaults, ndefaults, &rb) != 0 ||
        fwd_config_build(&cfg, rb.opts, rb.nopts, rb.defs, rb.ndefs, err, sizeof(err)) < 0) {
        fwd_log(FWD_LOG_ERROR, "spool %s: its options no longer work (%s): left alone", dir,
                rb.opts ? err : "out of memory");
        goto out;
    }
    rc = fwd_outputs_adopt(m, rb.missing[0] ? NULL : &cfg, cfg.spool_id, dir, &n, err, sizeof(err));
    if (rc == -ENOENT && (w = calloc(1, sizeof(*w))) != NULL) {
        memcpy(w->spool_id, cfg.spool_id, sizeof(w->spool_id));
        fwd_pathf(w->dir, sizeof(w->dir), "%s", dir);
        w->next = *fwd_outputs_waiting(m);
        *fwd_outputs_waiting(m) = w;
        addr_label(&cfg, where, sizeof(where));
        fwd_log(FWD_LOG_WARN,
                "spool %s: %s: secrets are not kept on disk, so its records wait here until a "
                "container logs to %s with these options again; they are then sent with that "
                "container's credentials",
                dir, rb.missing, where);
    } else if (rc != 0)
        fwd_log(FWD_LOG_ERROR, "spool %s: %s: left alone", dir,
                rc == -ENOENT ? "out of memory" : err);
    else if (rb.missing[0])
        fwd_log(FWD_LOG_INFO,
                "spool %s: %s: sent with the credentials of the destination running now", dir,
                rb.missing);
out:
    free(rb.opts);
    free(rb.defs);
    fwd_spooldir_opts_free(&o);
    return n;
}

size_t fwd_outputs_replay(struct fwd_outputs *m, const struct fwd_kv *defaults, size_t ndefaults)
{
    char base[FWD_PATH_MAX];
    DIR *dh;
    struct dirent *e;
    size_t found = 0;

    fwd_pathf(base, sizeof(base), "%s/spool", fwd_outputs_state_dir(m));
    dh = opendir(base);
    if (dh == NULL)
        return 0;
    while ((e = readdir(dh)) != NULL) {
        char dir[FWD_PATH_MAX];

        if (e->d_name[0] == '.' || strlen(base) + strlen(e->d_name) + 2 > sizeof(dir))
            continue;
        fwd_pathf(dir, sizeof(dir), "%s/%s", base, e->d_name);
        found += replay_dir(m, dir, defaults, ndefaults);
    }
    closedir(dh);
    return found;
}
