/*
 * fwd_metrics.h - a writer for the Prometheus text exposition format 0.0.4
 * (https://prometheus.io/docs/instrumenting/exposition_formats/), and the
 * histogram the daemon keeps its latencies in.
 *
 * Pure: it appends to a struct fwd_buf and nothing else. A family is opened
 * with its HELP and TYPE lines, then its samples follow; label values are
 * escaped (backslash, double quote, newline), HELP text too (backslash,
 * newline). Errors are sticky: once an append fails (the buffer's cap),
 * every later call does nothing and fwd_metrics_finish reports it, so a
 * caller writes everything and checks once.
 * Names are the caller's constants and are not checked.
 */
#ifndef FWD_METRICS_H
#define FWD_METRICS_H

#include "fwd_buf.h"

#include <stddef.h>
#include <stdint.h>

enum fwd_metrics_type {
    FWD_METRICS_COUNTER = 1,
    FWD_METRICS_GAUGE,
    FWD_METRICS_HISTOGRAM,
};

struct fwd_metrics_label {
    const char *name;
    const char *value; /* any bytes but NUL; escaped on output */
};

/* A writer over a caller's buffer. Fields are the module's. */
struct fwd_metrics {
    struct fwd_buf *out;
    const char *family; /* the open family's name */
    int err;            /* 0, or the first append's negative errno */
};

#define FWD_HIST_MAX 16

/*
 * A histogram with fixed upper bounds (ascending, at most FWD_HIST_MAX; +Inf
 * is implied). bounds is borrowed for the histogram's life (a static array).
 */
struct fwd_hist {
    const double *bounds;
    size_t n;
    uint64_t counts[FWD_HIST_MAX]; /* per bucket, not cumulative; the rest is over the last */
    uint64_t count;
    double sum;
};

void fwd_hist_init(struct fwd_hist *h, const double *bounds, size_t n);
void fwd_hist_observe(struct fwd_hist *h, double v);

/* Start writing to out (appended to; its cap bounds the whole exposition). */
void fwd_metrics_init(struct fwd_metrics *w, struct fwd_buf *out);
/* Open a family: its # HELP and # TYPE lines. name is borrowed until the next family. */
void fwd_metrics_family(struct fwd_metrics *w, const char *name, enum fwd_metrics_type type,
                        const char *help);
/* One sample of the open family (counter or gauge): name{labels} value. */
void fwd_metrics_u64(struct fwd_metrics *w, const struct fwd_metrics_label *labels, size_t n,
                     uint64_t v);
void fwd_metrics_f64(struct fwd_metrics *w, const struct fwd_metrics_label *labels, size_t n,
                     double v);
/* The open histogram family's samples: _bucket{...,le} (cumulative), _sum and _count. */
void fwd_metrics_hist(struct fwd_metrics *w, const struct fwd_metrics_label *labels, size_t n,
                      const struct fwd_hist *h);
/* A family with one unlabelled sample, the common case. */
void fwd_metrics_one(struct fwd_metrics *w, const char *name, enum fwd_metrics_type type,
                     const char *help, uint64_t v);
/* 0, or the first error (-EMSGSIZE: the buffer's cap was reached, -ENOMEM). */
int fwd_metrics_finish(const struct fwd_metrics *w) __attribute__((warn_unused_result));

#endif
