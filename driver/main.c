/*
 * main.c - fwdlogd: arguments and environment, signals, wiring, shutdown.
 *
 * Start order: log level, plugin-wide defaults (validated: a bad default is a
 * start error naming the variable), state directory (made private and locked:
 * a second fwdlogd on it exits at once), loop, outputs, registry, the scrape
 * listener (FWDLOG_METRICS_ADDRESS, when set: before the plugin socket, so a bad
 * one stops the start first), plugin API socket. Shutdown (SIGTERM/SIGINT) runs
 * in reverse: stop accepting API calls, drain every FIFO and seal every batch,
 * keep the loop running until the aggregators took everything, then free and
 * exit 0. The whole path is bounded from the signal on (dockerd sends SIGKILL
 * 10 s after SIGTERM): draining ends at FWD_SHUTDOWN_DRAIN_MS even if a FIFO is
 * still being written, sending at FWD_SHUTDOWN_FLUSH_MS, closing connections at
 * FWD_SHUTDOWN_MS.
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

int main(int argc, char **argv)
{
    struct opts o;
    struct fwd_kv *defaults = NULL;
    size_t ndefaults = 0;
    struct fwd_config probe;
    struct fwd_loop *loop = NULL;
    struct fwd_outputs *outputs = NULL;
    struct fwd_registry *reg = NULL;
    struct fwd_plugin_api *api = NULL;
    struct fwd_observe *obs = NULL;
    struct fwd_scrape *scrape = NULL;
    struct fwd_io sigio = {0};
    char err[2048], hostname[256] = "";
    sigset_t mask;
    uint64_t t0, close_by;
    int sfd = -1, lock_fd = -1, rc = 1, lvl;

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

    if (fwd_config_env_defaults(environ, &defaults, &ndefaults) < 0) {
        fwd_log(FWD_LOG_ERROR, "out of memory");
        goto out;
    }
    if (fwd_config_build(&probe, NULL, 0, defaults, ndefaults, err, sizeof(err)) < 0) {
        fwd_log(FWD_LOG_ERROR, "plugin-wide settings: %s", err);
        rc = 2;
        goto out;
    }
    if (fwd_state_dir_open(o.state_dir, &lock_fd, err, sizeof(err)) < 0) {
        fwd_log(FWD_LOG_ERROR, "%s", err);
        goto out;
    }

    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) == -1 ||
        (sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) == -1) {
        fwd_log(FWD_LOG_ERROR, "signalfd: %s", strerror(errno));
        goto out;
    }
    loop = fwd_loop_create();
    outputs = loop ? fwd_outputs_create(loop, o.state_dir, err, sizeof(err)) : NULL;
    if (loop != NULL && outputs == NULL) {
        fwd_log(FWD_LOG_ERROR, "cannot initialise: %s", err);
        goto out;
    }
    reg = outputs ? fwd_registry_create(loop, outputs, defaults, ndefaults, hostname, o.state_dir,
                                        o.fifo_dir)
                  : NULL;
    if (reg == NULL || fwd_loop_io_add(loop, &sigio, sfd, EPOLLIN, on_signal, NULL) < 0) {
        fwd_log(FWD_LOG_ERROR, "cannot initialise: %s", strerror(errno ? errno : ENOMEM));
        goto out;
    }
    /* Before the API answers (dockerd never sends StartLogging again to a restarted
     * plugin): the streams an earlier run read are read again. */
    fwd_registry_restore(reg);
    obs = fwd_observe_create(loop, reg, outputs, o.health_window_ms);
    if (obs == NULL) {
        fwd_log(FWD_LOG_ERROR, "cannot initialise: out of memory");
        goto out;
    }
    /* Before the plugin socket appears: a listener that cannot start stops fwdlogd first. */
    if (o.metrics_address != NULL &&
        (scrape = fwd_scrape_create(loop, o.metrics_address, obs, err, sizeof(err))) == NULL) {
        fwd_log(FWD_LOG_ERROR, "%s", err);
        rc = 2;
        goto out;
    }
    api = fwd_plugin_api_create(loop, o.socket, reg, obs, err, sizeof(err));
    if (api == NULL) {
        fwd_log(FWD_LOG_ERROR, "%s", err);
        goto out;
    }
    /* Before the API answers: what an earlier run spooled goes out first. */
    fwd_outputs_replay(outputs);
    fwd_log(FWD_LOG_INFO,
            "fwdlogd %s listening on %s (default aggregator %s, %zu plugin-wide "
            "defaults)",
            FWD_VERSION, o.socket,
            probe.addrs[0].scheme == FWD_ADDR_UNIX ? probe.addrs[0].path : probe.addrs[0].host,
            ndefaults);
    if (scrape != NULL)
        fwd_log(FWD_LOG_INFO, "serving GET /metrics and GET /healthz on %s", o.metrics_address);

    while (!stopping) {
        if (fwd_loop_run_once(loop, -1) < 0) {
            fwd_log(FWD_LOG_ERROR, "event loop: %s", strerror(errno));
            goto out;
        }
    }

    /* Every step from here is bounded from t0: dockerd SIGKILLs 10 s after SIGTERM. */
    t0 = fwd_time_mono_ns();
    fwd_log(FWD_LOG_INFO, "stopping: draining FIFOs and flushing buffered records");
    fwd_scrape_destroy(scrape);
    scrape = NULL;
    fwd_plugin_api_destroy(api);
    api = NULL;
    fwd_registry_stop_all(reg, t0 + FWD_MS_TO_NS(FWD_SHUTDOWN_DRAIN_MS));
    fwd_outputs_flush_all(outputs);
    run_while(loop, flushing, outputs, t0 + FWD_MS_TO_NS(FWD_SHUTDOWN_FLUSH_MS));
    if (!fwd_outputs_idle(outputs)) {
        struct fwd_output_stats st;

        fwd_outputs_stats(outputs, &st);
        fwd_log(FWD_LOG_WARN, "exiting with %llu bytes of records not delivered",
                (unsigned long long)st.queued_bytes);
        fwd_outputs_persist(outputs);
    }
    /* Connections close gracefully, so aggregators read everything before our close. */
    fwd_outputs_close_all(outputs);
    close_by = fwd_time_mono_ns() + FWD_MS_TO_NS(FWD_SHUTDOWN_CLOSE_MS);
    if (close_by > t0 + FWD_MS_TO_NS(FWD_SHUTDOWN_MS))
        close_by = t0 + FWD_MS_TO_NS(FWD_SHUTDOWN_MS);
    run_while(loop, fwd_outputs_closing, outputs, close_by);
    rc = 0;
out:
    fwd_scrape_destroy(scrape);
    fwd_plugin_api_destroy(api);
    fwd_observe_destroy(obs);
    if (sigio.active)
        fwd_loop_io_del(loop, &sigio);
    fwd_registry_destroy(reg);
    fwd_outputs_destroy(outputs);
    fwd_loop_destroy(loop);
    if (sfd >= 0)
        close(sfd);
    fwd_kv_free(defaults, ndefaults);
    if (lock_fd >= 0)
        close(lock_fd);
    return rc;
}
