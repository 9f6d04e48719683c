/*
 * restore.c - at start, re-attach the streams an earlier run kept (state.c):
 * each kept StartLogging body is started again with its FIFO (see
 * fwd_registry_restore in fwd_container.h).
 */
#define FWD_LOG_MODULE "container"
#include "fwd_container.h"
#include "fwd_info.h"
#include "fwd_log.h"
#include "fwd_state.h"

#include <errno.h>
#include <stdlib.h>

struct restore_ctx {
    struct fwd_registry *r;
    size_t ok, gone;
};

static int restore_one(void *ctx, const char *body, size_t len)
{
    struct restore_ctx *x = ctx;
    struct fwd_info info;
    char *file = NULL, err[2048];
    int rc = fwd_info_parse_start(body, len, &file, &info, err, sizeof(err));

    if (rc < 0) {
        fwd_log(FWD_LOG_WARN, "a kept stream state does not parse (%s): ignored", err);
        return 0; /* its file is named by the FIFO path we cannot read: left for a human */
    }
    rc = fwd_registry_start(x->r, file, &info, NULL, 0, err, sizeof(err));
    if (rc == 0) {
        x->ok++;
    } else {
        /* The FIFO is gone (its container ended while we were down), or the options no
         * longer start: nothing will come of it, so it is forgotten. */
        fwd_log(rc == -ENOENT ? FWD_LOG_INFO : FWD_LOG_ERROR, "not resuming %s: %s", file, err);
        fwd_state_forget(fwd_registry_state_dir(x->r), file);
        x->gone++;
    }
    free(file);
    return 0;
}

size_t fwd_registry_restore(struct fwd_registry *r)
{
    struct restore_ctx x = {.r = r};
    size_t bad = 0;
    char err[512];

    if (fwd_state_init(fwd_registry_state_dir(r), err, sizeof(err)) != 0) {
        fwd_log(FWD_LOG_ERROR, "%s: streams cannot be kept across restarts", err);
        return 0;
    }
    fwd_state_each(fwd_registry_state_dir(r), restore_one, &x, &bad);
    if (x.ok + x.gone + bad > 0)
        fwd_log(FWD_LOG_INFO, "resumed %zu streams of an earlier run (%zu gone, %zu unreadable)",
                x.ok, x.gone, bad);
    return x.ok;
}
