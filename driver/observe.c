/*
 * observe.c - GET /metrics and GET /healthz (see fwd_observe.h).
 *
 * A scrape takes a snapshot of every container and destination (arrays of
 * borrowed pointers, valid because nothing else runs on the loop meanwhile)
 * and writes each family from it, so a family's samples are contiguous as the
 * format requires. Series exist only for what exists now: there is no cache
 * here that could keep a stopped container's series.
 * What it does not do: count anything (the modules count; this reads), or
 * talk to a socket (plugin_api.c and scrape.c do).
 */
#include "fwd_observe.h"
#include "fwd_limits.h"
#include "fwd_metrics.h"
#include "fwd_time.h"

#include <errno.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct fwd_observe {
    struct fwd_loop *loop;
    struct fwd_registry *reg;
    struct fwd_outputs *outputs;
    uint64_t window_ns;
};

struct snap {
    struct fwd_container_stats *c;
    size_t nc;
    struct fwd_dest_stats *d;
    size_t nd, capd;
    int err;
};

struct fwd_observe *fwd_observe_create(struct fwd_loop *loop, struct fwd_registry *reg,
                                       struct fwd_outputs *outputs, uint64_t health_window_ms)
{
    struct fwd_observe *o = calloc(1, sizeof(*o));

    if (o == NULL)
        return NULL;
    o->loop = loop;
    o->reg = reg;
    o->outputs = outputs;
    o->window_ns = FWD_MS_TO_NS(health_window_ms);
    return o;
}

void fwd_observe_destroy(struct fwd_observe *o)
{
    free(o);
}

static void on_dest(void *ctx, const struct fwd_dest_stats *d)
{
    struct snap *s = ctx;

    if (s->err != 0)
        return;
    if (s->nd == s->capd) {
        size_t nc = s->capd ? 2 * s->capd : 8;
        struct fwd_dest_stats *p = realloc(s->d, nc * sizeof(*p));

        if (p == NULL) {
            s->err = -ENOMEM;
            return;
        }
        s->d = p;
        s->capd = nc;
    }
    s->d[s->nd++] = *d;
}

static int snap_take(const struct fwd_observe *o, struct snap *s)
{
    struct fwd_registry_stats rs;

    memset(s, 0, sizeof(*s));
    fwd_registry_stats(o->reg, &rs);
    if (rs.containers > 0 && (s->c = calloc(rs.containers, sizeof(*s->c))) == NULL)
        return -ENOMEM;
    s->nc = s->c ? fwd_registry_snapshot(o->reg, s->c, rs.containers) : 0;
    fwd_outputs_each_dest(o->outputs, on_dest, s);
    return s->err;
}

static void snap_release(struct snap *s)
{
    free(s->c);
    free(s->d);
}

/* ---- /metrics: global families ---------------------------------------------------------- */

/* Resident set size from /proc/self/statm (procfs answers at once: no disk behind it). */
static uint64_t rss_bytes(void)
{
    unsigned long long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "re");

    if (f == NULL)
        return 0;
    if (fscanf(f, "%llu %llu", &size, &resident) != 2)
        resident = 0;
    fclose(f);
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

#define C FWD_METRICS_COUNTER
#define G FWD_METRICS_GAUGE

/* A family with one unlabelled sample: the uint64_t at off in a stats struct. */
struct global {
    const char *name;
    enum fwd_metrics_type type;
    const char *help;
    size_t off;
};

#define RS(f) offsetof(struct fwd_registry_stats, f)
#define OS(f) offsetof(struct fwd_output_stats, f)

static const struct global registry_globals[] = {
    {"fwdlog_containers", G, "Containers being logged now.", RS(containers)},
    {"fwdlog_frames_total", C, "LogEntry frames read from FIFOs.", RS(frames)},
    {"fwdlog_records_total", C, "Records made and queued for delivery.", RS(records)},
    {"fwdlog_fifo_bytes_total", C, "Bytes read from FIFOs.", RS(bytes_read)},
    {"fwdlog_corrupt_streams_total", C, "Times a container's stream lost its framing.",
     RS(corrupt_streams)},
    {"fwdlog_discarded_bytes_total", C, "FIFO bytes skipped to find the framing again.",
     RS(discarded_bytes)},
    {"fwdlog_resyncs_total", C, "Times a stream's framing was found again.", RS(resyncs)},
    {"fwdlog_records_lost_total", C, "Records lost because memory ran out while packing them.",
     RS(records_lost)},
    {"fwdlog_records_rate_limited_total", C, "Lines over their container's rate-limit, dropped.",
     RS(rate_limited)},
    {"fwdlog_restored_streams_total", C, "Streams of an earlier run opened again at start.",
     RS(restored)},
    {"fwdlog_stream_state_failures_total", C,
     "Streams whose state could not be kept for a restart.", RS(state_failures)},
};

static const struct global output_globals[] = {
    {"fwdlog_records_sent_total", C, "Records delivered to aggregators.", OS(records_sent)},
    {"fwdlog_batches_sent_total", C, "Forward messages delivered.", OS(batches_sent)},
    {"fwdlog_bytes_sent_total", C,
     "Bytes written to aggregators (a batch resent after a failure counts again).", OS(bytes_sent)},
    {"fwdlog_records_dropped_total", C,
     "Records dropped: memory and spool full, or retries given up.", OS(records_dropped)},
    {"fwdlog_batches_dropped_total", C, "Forward messages dropped.", OS(batches_dropped)},
    {"fwdlog_connects_total", C, "Connections to aggregators made ready.", OS(connects)},
    {"fwdlog_connection_failures_total", C,
     "Connects, handshakes and live connections that failed.", OS(connection_failures)},
    {"fwdlog_queued_bytes", G, "Bytes of records waiting for delivery.", OS(queued_bytes)},
    {"fwdlog_destinations", G, "Destinations (address lists) in use.", OS(destinations)},
    {"fwdlog_memory_bytes", G,
     "Bytes held in memory by queued and open batches and by containers' pending lines.",
     OS(memory_bytes)},
    {"fwdlog_spool_bytes", G, "Bytes of spool files on disk.", OS(spool_bytes)},
    {"fwdlog_spooled_batches_total", C, "Batches written to a spool.", OS(spooled_batches)},
    {"fwdlog_replayed_records_total", C, "Records found in spools at start and sent again.",
     OS(replayed_records)},
    {"fwdlog_spool_corrupt_records_total", C, "Spool records skipped as cut short or damaged.",
     OS(spool_corrupt)},
    {"fwdlog_records_rejected_total", C,
     "Records set aside in state/rejected/ after failed sends (an aggregator refusing them).",
     OS(records_rejected)},
    {"fwdlog_batches_rejected_total", C, "Forward messages set aside in state/rejected/.",
     OS(batches_rejected)},
    {"fwdlog_blocked_destinations", G,
     "Destinations holding their containers back (overflow-policy=block).", OS(blocked)},
};

static void globals(struct fwd_metrics *w, const struct global *t, size_t n, const void *st)
{
    for (size_t i = 0; i < n; i++)
        fwd_metrics_one(w, t[i].name, t[i].type, t[i].help,
                        *(const uint64_t *)((const char *)st + t[i].off));
}

static void global_process(struct fwd_metrics *w, const struct fwd_observe *o, const struct snap *s)
{
    struct fwd_metrics_label v[] = {{"version", FWD_VERSION}};
    uint64_t backlog = 0;

    for (size_t i = 0; i < s->nc; i++)
        backlog += s->c[i].backlog;
    fwd_metrics_family(w, "fwdlog_build_info", G, "Always 1; the version in a label.");
    fwd_metrics_u64(w, v, 1, 1);
    fwd_metrics_one(w, "fwdlog_open_fifos", G, "Log FIFOs open now.", s->nc);
    fwd_metrics_one(w, "fwdlog_fifo_backlog_bytes", G,
                    "Bytes written to all FIFOs and not read yet (FIONREAD).", backlog);
    fwd_metrics_family(w, "fwdlog_loop_lag_seconds", FWD_METRICS_HISTOGRAM,
                       "Time from a timer's deadline to its run on the event loop.");
    fwd_metrics_hist(w, NULL, 0, fwd_loop_lag(o->loop));
    fwd_metrics_one(w, "process_resident_memory_bytes", G, "Resident memory size in bytes.",
                    rss_bytes());
}

/* ---- /metrics: per container ------------------------------------------------------------ */

enum only { ALL = 1, PARSING, MULTILINE };

/* One family with a sample per container: the uint64_t at off in its stats. */
static void per_container(struct fwd_metrics *w, const struct snap *s, const char *name,
                          enum fwd_metrics_type type, const char *help, size_t off, enum only only)
{
    fwd_metrics_family(w, name, type, help);
    for (size_t i = 0; i < s->nc; i++) {
        const struct fwd_container_stats *c = &s->c[i];
        char id[13];
        struct fwd_metrics_label l[] = {{"container_id", id}, {"container_name", c->name}};

        if ((only == PARSING && !c->parsing) || (only == MULTILINE && !c->multiline))
            continue;
        snprintf(id, sizeof(id), "%.12s", c->id);
        fwd_metrics_u64(w, l, 2, *(const uint64_t *)((const char *)c + off));
    }
}

#define CS(f) offsetof(struct fwd_container_stats, f)

static void containers(struct fwd_metrics *w, const struct snap *s)
{
    per_container(w, s, "fwdlog_container_records_total", C, "Records read from the container.",
                  CS(n.records), ALL);
    per_container(w, s, "fwdlog_container_fifo_bytes_total", C,
                  "Bytes read from the container's FIFO.", CS(n.bytes_read), ALL);
    fwd_metrics_family(w, "fwdlog_container_records_dropped_total", C,
                       "The container's records dropped, by reason: overflow (memory and spool "
                       "full, or retries given up), rejected (refused by the aggregator, set "
                       "aside in state/rejected/), out_of_memory, rate_limit (lines over its "
                       "rate-limit).");
    for (int reason = 0; reason < 4; reason++)
        for (size_t i = 0; i < s->nc; i++) {
            const struct fwd_container_stats *c = &s->c[i];
            static const char *const names[] = {"overflow", "rejected", "out_of_memory",
                                                "rate_limit"};
            uint64_t v[] = {c->dropped - c->rejected - c->rate_limited, c->rejected,
                            c->n.records_lost, c->rate_limited};
            char id[13];
            struct fwd_metrics_label l[] = {
                {"container_id", id}, {"container_name", c->name}, {"reason", names[reason]}};

            snprintf(id, sizeof(id), "%.12s", c->id);
            fwd_metrics_u64(w, l, 3, v[reason]);
        }
    per_container(w, s, "fwdlog_container_corrupt_streams_total", C,
                  "Times the container's stream lost its framing.", CS(n.corrupt_streams), ALL);
    per_container(w, s, "fwdlog_container_discarded_bytes_total", C,
                  "Bytes of the container's FIFO skipped as not a frame.", CS(n.discarded_bytes),
                  ALL);
    per_container(w, s, "fwdlog_container_parse_failures_total", C,
                  "Lines parse= could not parse (sent as they were).", CS(parse_failures), PARSING);
    per_container(w, s, "fwdlog_container_partial_joins_total", C,
                  "Lines joined from Docker's 16 KiB chunks.", CS(partial_joins), ALL);
    per_container(w, s, "fwdlog_container_multiline_joins_total", C,
                  "Events multiline joined from two or more lines.", CS(multiline_joins),
                  MULTILINE);
    per_container(w, s, "fwdlog_container_fifo_backlog_bytes", G,
                  "Bytes in the container's FIFO not read yet.", CS(backlog), ALL);
    per_container(w, s, "fwdlog_container_pending_bytes", G,
                  "Bytes read from the container's FIFO that are not records yet (a frame "
                  "cut by a read, lines being joined, open multiline events).",
                  CS(pending), ALL);
}

/* ---- /metrics: per destination ---------------------------------------------------------- */

static const char *const conn_state_names[FWD_OUTPUT_CONN_STATES] = {
    "idle", "resolving", "connecting", "handshake", "connected", "backoff"};

#define DS(f) offsetof(struct fwd_dest_stats, f)

static void per_dest(struct fwd_metrics *w, const struct snap *s, const char *name,
                     enum fwd_metrics_type type, const char *help, size_t off)
{
    fwd_metrics_family(w, name, type, help);
    for (size_t i = 0; i < s->nd; i++) {
        struct fwd_metrics_label l[] = {{"destination", s->d[i].label},
                                        {"destination_id", s->d[i].id}};

        fwd_metrics_u64(w, l, 2, *(const uint64_t *)((const char *)&s->d[i] + off));
    }
}

static void dest_times(struct fwd_metrics *w, const struct snap *s, uint64_t now)
{
    fwd_metrics_family(w, "fwdlog_destination_oldest_queued_age_seconds", G,
                       "Age of the oldest record waiting for delivery (0: none waits).");
    for (size_t i = 0; i < s->nd; i++) {
        const struct fwd_dest_stats *d = &s->d[i];
        struct fwd_metrics_label l[] = {{"destination", d->label}, {"destination_id", d->id}};
        uint64_t age = d->oldest_ns && now > d->oldest_ns ? now - d->oldest_ns : 0;

        fwd_metrics_f64(w, l, 2, (double)age / 1e9);
    }
    fwd_metrics_family(w, "fwdlog_destination_last_send_timestamp_seconds", G,
                       "Unix time of the last delivery (0: never).");
    for (size_t i = 0; i < s->nd; i++) {
        struct fwd_metrics_label l[] = {{"destination", s->d[i].label},
                                        {"destination_id", s->d[i].id}};

        fwd_metrics_f64(w, l, 2, (double)s->d[i].last_send_unix_ns / 1e9);
    }
    fwd_metrics_family(w, "fwdlog_destination_ack_rtt_seconds", FWD_METRICS_HISTOGRAM,
                       "Time from a batch's last byte written to its ack.");
    for (size_t i = 0; i < s->nd; i++) {
        struct fwd_metrics_label l[] = {{"destination", s->d[i].label},
                                        {"destination_id", s->d[i].id}};

        fwd_metrics_hist(w, l, 2, s->d[i].ack);
    }
}

static void dests(struct fwd_metrics *w, const struct snap *s, uint64_t now)
{
    fwd_metrics_family(w, "fwdlog_destination_connections", G,
                       "The destination's connections (one per address) in each state.");
    for (size_t i = 0; i < s->nd; i++)
        for (int st = 0; st < FWD_OUTPUT_CONN_STATES; st++) {
            struct fwd_metrics_label l[] = {{"destination", s->d[i].label},
                                            {"destination_id", s->d[i].id},
                                            {"state", conn_state_names[st]}};

            fwd_metrics_u64(w, l, 3, s->d[i].conns[st]);
        }
    per_dest(w, s, "fwdlog_destination_connects_total", C, "Connections made ready.", DS(connects));
    per_dest(w, s, "fwdlog_destination_connection_failures_total", C,
             "Connects, handshakes and live connections that failed.", DS(failures));
    per_dest(w, s, "fwdlog_destination_records_sent_total", C, "Records delivered.",
             DS(records_sent));
    per_dest(w, s, "fwdlog_destination_bytes_sent_total", C,
             "Bytes written (a batch resent after a failure counts again).", DS(bytes_sent));
    per_dest(w, s, "fwdlog_destination_records_dropped_total", C,
             "Records dropped: memory and spool full, or retries given up.", DS(records_dropped));
    per_dest(w, s, "fwdlog_destination_records_rejected_total", C,
             "Records set aside in state/rejected/ after failed sends.", DS(records_rejected));
    per_dest(w, s, "fwdlog_destination_queued_bytes", G,
             "Bytes of records waiting for delivery, in memory or spool.", DS(queued_bytes));
    per_dest(w, s, "fwdlog_destination_memory_bytes", G,
             "Bytes held in memory by the destination's batches and its containers' pending lines.",
             DS(memory_bytes));
    per_dest(w, s, "fwdlog_destination_spool_bytes", G,
             "Bytes of the destination's spool files on disk.", DS(spool_bytes));
    per_dest(w, s, "fwdlog_destination_acks_pending", G, "Batches sent and waiting for their ack.",
             DS(acks_pending));
    dest_times(w, s, now);
}

int fwd_observe_metrics(const struct fwd_observe *o, struct fwd_buf *out)
{
    struct fwd_registry_stats rs;
    struct fwd_output_stats os;
    struct fwd_metrics w;
    struct snap s;
    int rc = snap_take(o, &s);

    if (rc == 0) {
        fwd_registry_stats(o->reg, &rs);
        fwd_outputs_stats(o->outputs, &os);
        fwd_metrics_init(&w, out);
        globals(&w, registry_globals, sizeof(registry_globals) / sizeof(registry_globals[0]), &rs);
        globals(&w, output_globals, sizeof(output_globals) / sizeof(output_globals[0]), &os);
        global_process(&w, o, &s);
        containers(&w, &s);
        dests(&w, &s, fwd_time_mono_ns());
        rc = fwd_metrics_finish(&w);
    }
    snap_release(&s);
    return rc;
}

/* ---- /healthz --------------------------------------------------------------------------- */

/*
 * Failing: it holds data and delivered nothing within the window, counted from
 * the last delivery or, when later, from when its oldest record came (new data
 * after a quiet spell gets a window's grace). Dropping records since the last
 * delivery takes that grace away: drop-oldest keeps the oldest record young.
 */
static bool failing(const struct fwd_observe *o, const struct fwd_dest_stats *d, uint64_t now)
{
    uint64_t sent = d->last_send_mono_ns;
    uint64_t since = sent > d->oldest_ns ? sent : d->oldest_ns;

    if (d->queued_bytes == 0)
        return false;
    if (d->last_drop_mono_ns > sent)
        since = sent;
    return now > since && now - since > o->window_ns;
}

static json_t *dest_json(const struct fwd_dest_stats *d, uint64_t now)
{
    double age = d->oldest_ns && now > d->oldest_ns ? (double)(now - d->oldest_ns) / 1e9 : 0;
    double since = d->last_send_mono_ns ? (double)(now - d->last_send_mono_ns) / 1e9 : -1;
    const char *state = "idle";

    for (int st = FWD_OUTPUT_CONN_STATES - 1; st > 0; st--)
        if (d->conns[st] > 0) {
            state = conn_state_names[st];
            break;
        }
    return json_pack("{s:s,s:s,s:s,s:I,s:f,s:f,s:s}", "destination", d->label, "destination_id",
                     d->id, "state", state, "queued_bytes", (json_int_t)d->queued_bytes,
                     "oldest_queued_age_seconds", age, "seconds_since_last_send", since,
                     "last_error", d->last_error);
}

int fwd_observe_health(const struct fwd_observe *o, struct fwd_buf *out, unsigned *status)
{
    uint64_t now = fwd_time_mono_ns();
    json_t *root = NULL, *all = json_array(), *bad = json_array();
    char *text = NULL;
    struct snap s;
    int rc = snap_take(o, &s);

    for (size_t i = 0; rc == 0 && i < s.nd; i++) {
        json_t *j = dest_json(&s.d[i], now);

        if (j == NULL || json_array_append(all, j) != 0 ||
            (failing(o, &s.d[i], now) && json_array_append(bad, j) != 0))
            rc = -ENOMEM;
        json_decref(j);
    }
    *status = json_array_size(bad) > 0 ? 503 : 200;
    if (rc == 0 && all != NULL && bad != NULL)
        root = json_pack("{s:s,s:f,s:O,s:O}", "status", *status == 200 ? "ok" : "failing",
                         "window_seconds", (double)o->window_ns / 1e9, "failing", bad,
                         "destinations", all);
    text = root ? json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    if (text == NULL || fwd_buf_append(out, text, strlen(text) + 1) != 0)
        rc = -ENOMEM;
    free(text);
    json_decref(root);
    json_decref(all);
    json_decref(bad);
    snap_release(&s);
    return rc;
}
