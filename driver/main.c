/*
 * main.c - fwdlogd: arguments and environment, signals, wiring, shutdown.
 *
 * Start order: log level, plugin-wide defaults (validated: a bad default is a
 * start error naming the variable), state directory (made private and locked:
 * a second fwdlogd on it exits at once), loop, the sync thread (after the
 * signal mask: it blocks every signal anyway), outputs, registry, the scrape
 * listener (FWDLOG_METRICS_ADDRESS, when set: before the plugin socket, so a bad
 * one stops the start first), plugin API socket. Shutdown (SIGTERM/SIGINT) runs
 * in reverse: stop accepting API calls, drain every FIFO and seal every batch,
 * keep the loop running until the aggregators took everything, then free and
 * exit 0. The whole path is bounded from the signal on (dockerd sends SIGKILL
 * 10 s after SIGTERM): draining ends at FWD_SHUTDOWN_DRAIN_MS even if a FIFO is
 * still being written, sending at FWD_SHUTDOWN_FLUSH_MS, closing connections at
 * FWD_SHUTDOWN_MS; the syncs still pending then (a hung disk) are given up at
 * FWD_SHUTDOWN_MS too, the spools' files closed without them.
 */
#define FWD_LOG_MODULE "main"
#include "fwd_config.h"
#include "fwd_container.h"
#include "fwd_limits.h"
#include "fwd_log.h"
#include "fwd_loop.h"
#include "fwd_observe.h"
#include "fwd_output.h"
#include "fwd_plugin_api.h"
#include "fwd_scrape.h"
#include "fwd_state.h"
#include "fwd_syncer.h"
#include "fwd_time.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

#define DEFAULT_SOCKET    "/run/docker/plugins/fwdlog.sock"
#define DEFAULT_STATE_DIR "/var/lib/fwdlog"
/* Where dockerd creates a plugin's FIFOs (moby daemon/logger/plugin.go: the plugin's
 * ScopedPath of /run/docker/logging, which is this path as the plugin sees it). */
#define DEFAULT_FIFO_DIR "/run/docker/logging"

struct opts {
    const char *socket;
    const char *state_dir;
    const char *fifo_dir;
    const char *log_level;
    const char *metrics_address; /* FWDLOG_METRICS_ADDRESS; NULL: no scrape listener */
    uint64_t health_window_ms;   /* FWDLOG_HEALTH_WINDOW */
};

static volatile sig_atomic_t stopping;

static void usage(FILE *f)
{
    fprintf(
        f,
        "Usage: fwdlogd [--socket PATH] [--state-dir DIR] [--fifo-dir DIR] [--log-level LEVEL]\n"
        "\n"
        "fwdlog: a Docker logging driver plugin that ships container logs to Fluentd or\n"
        "Fluent Bit over the Forward protocol.\n"
        "\n"
        "  --socket PATH      plugin API socket (env FWDLOG_SOCKET; default %s)\n"
        "  --state-dir DIR    state directory (env FWDLOG_STATE_DIR; default %s)\n"
        "  --fifo-dir DIR     the only directory StartLogging may name FIFOs in (env\n"
        "                     FWDLOG_FIFO_DIR; default %s, where dockerd makes them)\n"
        "  --log-level LEVEL  error|warn|info|debug (env FWDLOG_LOG_LEVEL; default info)\n"
        "  --help             this text\n"
        "  --version          the version\n"
        "\n"
        "Plugin-wide defaults for log-opts come from the environment: FLUENTD_ADDRESS,\n"
        "FLUENTD_BUFFER_LIMIT, FLUENTD_RETRY_WAIT, ..., FWDLOG_TAG, FWDLOG_MAX_LINE_SIZE,\n"
        "... (see README.md). A container's own --log-opt wins over them.\n"
        "\n"
        "FWDLOG_METRICS_ADDRESS (e.g. 127.0.0.1:9880 or unix:///run/fwdlog-metrics.sock)\n"
        "serves GET /metrics and GET /healthz there too; FWDLOG_HEALTH_WINDOW (default\n"
        "60s): /healthz fails for a destination holding data that delivered nothing so long.\n",
        DEFAULT_SOCKET, DEFAULT_STATE_DIR, DEFAULT_FIFO_DIR);
}

static const char *env_or(const char *name, const char *def)
{
    const char *v = getenv(name);

    return v != NULL && v[0] != '\0' ? v : def;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    static const struct option longopts[] = {
        {"socket", required_argument, NULL, 's'},
        {"state-dir", required_argument, NULL, 'd'},
        {"log-level", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {"fifo-dir", required_argument, NULL, 'f'},
        {NULL, 0, NULL, 0},
    };
    int c;

    o->socket = env_or("FWDLOG_SOCKET", DEFAULT_SOCKET);
    o->state_dir = env_or("FWDLOG_STATE_DIR", DEFAULT_STATE_DIR);
    o->fifo_dir = env_or("FWDLOG_FIFO_DIR", DEFAULT_FIFO_DIR);
    o->log_level = env_or("FWDLOG_LOG_LEVEL", "info");
    o->metrics_address = env_or("FWDLOG_METRICS_ADDRESS", NULL);
    o->health_window_ms = FWD_HEALTH_WINDOW_MS;
    if (env_or("FWDLOG_HEALTH_WINDOW", NULL) != NULL &&
        (fwd_config_parse_duration_ms(getenv("FWDLOG_HEALTH_WINDOW"), &o->health_window_ms) != 0 ||
         o->health_window_ms == 0)) {
        fprintf(stderr,
                "fwdlogd: invalid FWDLOG_HEALTH_WINDOW=\"%s\": want a duration above 0 such as "
                "60s or 5m\n",
                getenv("FWDLOG_HEALTH_WINDOW"));
        return -1;
    }
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
            case 's':
                o->socket = optarg;
                break;
            case 'd':
                o->state_dir = optarg;
                break;
            case 'f':
                o->fifo_dir = optarg;
                break;
            case 'l':
                o->log_level = optarg;
                break;
            case 'h':
                usage(stdout);
                exit(0);
            case 'V':
                printf("fwdlogd %s\n", FWD_VERSION);
                exit(0);
            default:
                usage(stderr);
                return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "fwdlogd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return -1;
    }
    return 0;
}

static void on_signal(struct fwd_io *io, uint32_t events)
{
    struct signalfd_siginfo si;

    (void)events;
    while (read(io->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
            stopping = 1;
    }
}

static bool flushing(const struct fwd_outputs *m)
{
    return !fwd_outputs_idle(m);
}

/* Shutdown: run the loop while busy(m), until deadline (fwd_time_mono_ns). */
static void run_while(struct fwd_loop *loop, bool (*busy)(const struct fwd_outputs *),
                      const struct fwd_outputs *m, uint64_t deadline)
{
    while (busy(m) && fwd_time_mono_ns() < deadline)
        if (fwd_loop_run_once(loop, 50) < 0)
            break;
}

/* What main owns, torn down in one place. */
struct daemon {
    struct fwd_kv *defaults;
    size_t ndefaults;
    struct fwd_loop *loop;
    struct fwd_outputs *outputs;
    struct fwd_registry *reg;
    struct fwd_plugin_api *api;
    struct fwd_observe *obs;
    struct fwd_scrape *scrape;
    struct fwd_syncer *syncer;
    struct fwd_io sigio;
    int sfd, lock_fd;
    uint64_t stop_by; /* fwd_time_mono_ns: when everything ends (0: not stopping) */
};

/* SIGTERM and SIGINT arrive through a signalfd on the loop. 0 or -1 (logged). */
static int watch_signals(struct daemon *dm)
{
    sigset_t mask;

    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) == -1 ||
        (dm->sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) == -1) {
        fwd_log(FWD_LOG_ERROR, "signalfd: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/*
 * Everything up to the loop, in the order restarts need: the streams an earlier run
 * read are re-attached and its spool queued before the plugin socket answers. 0, or
 * the exit status (logged).
 */
static int start(struct daemon *dm, const struct opts *o, const char *hostname)
{
    char err[2048];

    dm->loop = fwd_loop_create();
    dm->syncer = dm->loop ? fwd_syncer_create(FWD_SYNC_QUEUE, err, sizeof(err)) : NULL;
    if (dm->loop != NULL && dm->syncer == NULL) {
        fwd_log(FWD_LOG_ERROR, "cannot initialise: %s", err);
        return 1;
    }
    dm->outputs =
        dm->loop ? fwd_outputs_create(dm->loop, dm->syncer, o->state_dir, err, sizeof(err)) : NULL;
    if (dm->loop != NULL && dm->outputs == NULL) {
        fwd_log(FWD_LOG_ERROR, "cannot initialise: %s", err);
        return 1;
    }
    dm->reg = dm->outputs ? fwd_registry_create(dm->loop, dm->outputs, dm->defaults, dm->ndefaults,
                                                hostname, o->state_dir, o->fifo_dir)
                          : NULL;
    if (dm->reg == NULL ||
        fwd_loop_io_add(dm->loop, &dm->sigio, dm->sfd, EPOLLIN, on_signal, NULL) < 0) {
        fwd_log(FWD_LOG_ERROR, "cannot initialise: %s", strerror(errno ? errno : ENOMEM));
        return 1;
    }
    /* Before the API answers (dockerd never sends StartLogging again to a restarted
     * plugin): the streams an earlier run read are read again. */
    fwd_registry_restore(dm->reg);
    dm->obs = fwd_observe_create(dm->loop, dm->reg, dm->outputs, o->health_window_ms);
    if (dm->obs == NULL) {
        fwd_log(FWD_LOG_ERROR, "cannot initialise: out of memory");
        return 1;
    }
    /* Before the plugin socket appears: a listener that cannot start stops fwdlogd first. */
    if (o->metrics_address != NULL &&
        (dm->scrape = fwd_scrape_create(dm->loop, o->metrics_address, dm->obs, err, sizeof(err))) ==
            NULL) {
        fwd_log(FWD_LOG_ERROR, "%s", err);
        return 2;
    }
    dm->api = fwd_plugin_api_create(dm->loop, o->socket, dm->reg, dm->obs, err, sizeof(err));
    if (dm->api == NULL) {
        fwd_log(FWD_LOG_ERROR, "%s", err);
        return 1;
    }
    /* Before the API answers: what an earlier run spooled goes out first. */
    fwd_outputs_replay(dm->outputs, dm->defaults, dm->ndefaults);
    return 0;
}

/* SIGTERM: every step is bounded from t0, since dockerd SIGKILLs 10 s after it. */
static void shut_down(struct daemon *dm)
{
    uint64_t t0 = fwd_time_mono_ns(), close_by;

    dm->stop_by = t0 + FWD_MS_TO_NS(FWD_SHUTDOWN_MS);
    fwd_log(FWD_LOG_INFO, "stopping: draining FIFOs and flushing buffered records");
    fwd_scrape_destroy(dm->scrape);
    dm->scrape = NULL;
    fwd_plugin_api_destroy(dm->api);
    dm->api = NULL;
    fwd_registry_stop_all(dm->reg, t0 + FWD_MS_TO_NS(FWD_SHUTDOWN_DRAIN_MS));
    fwd_outputs_flush_all(dm->outputs);
    run_while(dm->loop, flushing, dm->outputs, t0 + FWD_MS_TO_NS(FWD_SHUTDOWN_FLUSH_MS));
    if (!fwd_outputs_idle(dm->outputs)) {
        struct fwd_output_stats st;

        fwd_outputs_stats(dm->outputs, &st);
        fwd_log(FWD_LOG_WARN, "exiting with %llu bytes of records not delivered",
                (unsigned long long)st.queued_bytes);
        fwd_outputs_persist(dm->outputs);
    }
    /* Connections close gracefully, so aggregators read everything before our close. */
    fwd_outputs_close_all(dm->outputs);
    close_by = fwd_time_mono_ns() + FWD_MS_TO_NS(FWD_SHUTDOWN_CLOSE_MS);
    if (close_by > t0 + FWD_MS_TO_NS(FWD_SHUTDOWN_MS))
        close_by = t0 + FWD_MS_TO_NS(FWD_SHUTDOWN_MS);
    run_while(dm->loop, fwd_outputs_closing, dm->outputs, close_by);
}

static void tear_down(struct daemon *dm)
{
    fwd_scrape_destroy(dm->scrape);
    fwd_plugin_api_destroy(dm->api);
    fwd_observe_destroy(dm->obs);
    if (dm->sigio.active)
        fwd_loop_io_del(dm->loop, &dm->sigio);
    fwd_registry_destroy(dm->reg);
    fwd_outputs_destroy(dm->outputs);
    /* after the outputs, whose spools hand it their last segments; bounded (a hung disk) */
    fwd_syncer_destroy(dm->syncer, dm->stop_by
                                       ? dm->stop_by
                                       : fwd_time_mono_ns() + FWD_MS_TO_NS(FWD_SHUTDOWN_CLOSE_MS));
    fwd_loop_destroy(dm->loop);
    if (dm->sfd >= 0)
        close(dm->sfd);
    fwd_kv_free(dm->defaults, dm->ndefaults);
    if (dm->lock_fd >= 0)
        close(dm->lock_fd);
}

int main(int argc, char **argv)
{
    struct opts o;
    struct daemon dm = {.sfd = -1, .lock_fd = -1};
    struct fwd_config probe;
    char err[2048], hostname[256] = "";
    int rc = 1, lvl;

    if (parse_args(argc, argv, &o) < 0)
        return 2;
    if (fwd_log_parse_level(o.log_level, &lvl) < 0) {
        fprintf(stderr, "fwdlogd: invalid log level '%s' (want error, warn, info or debug)\n",
                o.log_level);
        return 2;
    }
    fwd_log_level = lvl;
    srandom((unsigned)(fwd_time_mono_ns() ^ (uint64_t)getpid()));
    signal(SIGPIPE, SIG_IGN);
    if (gethostname(hostname, sizeof(hostname) - 1) == -1)
        snprintf(hostname, sizeof(hostname), "localhost");
    if (fwd_config_env_defaults(environ, &dm.defaults, &dm.ndefaults) < 0) {
        fwd_log(FWD_LOG_ERROR, "out of memory");
        goto out;
    }
    if (fwd_config_build(&probe, NULL, 0, dm.defaults, dm.ndefaults, err, sizeof(err)) < 0) {
        fwd_log(FWD_LOG_ERROR, "plugin-wide settings: %s", err);
        rc = 2;
        goto out;
    }
    if (fwd_state_dir_open(o.state_dir, &dm.lock_fd, err, sizeof(err)) < 0) {
        fwd_log(FWD_LOG_ERROR, "%s", err);
        goto out;
    }
    if (watch_signals(&dm) < 0 || (rc = start(&dm, &o, hostname)) != 0) {
        rc = rc ? rc : 1;
        goto out;
    }
    fwd_log(FWD_LOG_INFO,
            "fwdlogd %s listening on %s (default aggregator %s, %zu plugin-wide defaults)",
            FWD_VERSION, o.socket,
            probe.addrs[0].scheme == FWD_ADDR_UNIX ? probe.addrs[0].path : probe.addrs[0].host,
            dm.ndefaults);
    if (dm.scrape != NULL)
        fwd_log(FWD_LOG_INFO, "serving GET /metrics and GET /healthz on %s", o.metrics_address);
    rc = 1;
    while (!stopping) {
        if (fwd_loop_run_once(dm.loop, -1) < 0) {
            fwd_log(FWD_LOG_ERROR, "event loop: %s", strerror(errno));
            goto out;
        }
    }
    shut_down(&dm);
    rc = 0;
out:
    tear_down(&dm);
    return rc;
}
