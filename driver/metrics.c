/*
 * metrics.c - the Prometheus text exposition format 0.0.4, written into a
 * bounded buffer (see fwd_metrics.h).
 *
 * What it does not do: collect anything (observe.c does), or check names.
 * Invariant: a sample is only ever written under the family opened last, so
 * every family's samples are contiguous, as the format requires.
 * Numbers: integers print exactly; floats with %.17g (round-trips), and the
 * format's +Inf, -Inf and NaN spellings.
 */
#include "fwd_metrics.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

void fwd_hist_init(struct fwd_hist *h, const double *bounds, size_t n)
{
    memset(h, 0, sizeof(*h));
    h->bounds = bounds;
    h->n = n < FWD_HIST_MAX ? n : FWD_HIST_MAX;
}

void fwd_hist_observe(struct fwd_hist *h, double v)
{
    size_t i = 0;

    while (i < h->n && v > h->bounds[i])
        i++;
    if (i < h->n)
        h->counts[i]++;
    h->count++;
    h->sum += v;
}

void fwd_metrics_init(struct fwd_metrics *w, struct fwd_buf *out)
{
    w->out = out;
    w->family = "";
    w->err = 0;
}

static void put(struct fwd_metrics *w, const char *p, size_t n)
{
    if (w->err == 0 && n > 0)
        w->err = fwd_buf_append(w->out, p, n);
}

static void puts_(struct fwd_metrics *w, const char *s)
{
    put(w, s, strlen(s));
}

/* s with the characters the format escapes in this context escaped. */
static void put_escaped(struct fwd_metrics *w, const char *s, int quote)
{
    const char *run = s;

    for (; *s != '\0'; s++) {
        const char *esc = NULL;

        if (*s == '\\')
            esc = "\\\\";
        else if (*s == '\n')
            esc = "\\n";
        else if (*s == '"' && quote)
            esc = "\\\"";
        if (esc == NULL)
            continue;
        put(w, run, (size_t)(s - run));
        puts_(w, esc);
        run = s + 1;
    }
    put(w, run, (size_t)(s - run));
}

static const char *type_name(enum fwd_metrics_type t)
{
    switch (t) {
        case FWD_METRICS_COUNTER:
            return "counter";
        case FWD_METRICS_HISTOGRAM:
            return "histogram";
        default:
            return "gauge";
    }
}

void fwd_metrics_family(struct fwd_metrics *w, const char *name, enum fwd_metrics_type type,
                        const char *help)
{
    w->family = name;
    puts_(w, "# HELP ");
    puts_(w, name);
    puts_(w, " ");
    put_escaped(w, help, 0);
    puts_(w, "\n# TYPE ");
    puts_(w, name);
    puts_(w, " ");
    puts_(w, type_name(type));
    puts_(w, "\n");
}

/* name{a="x",b="y"[,le="bound"]} */
static void put_series(struct fwd_metrics *w, const char *suffix,
                       const struct fwd_metrics_label *labels, size_t n, const char *le)
{
    puts_(w, w->family);
    puts_(w, suffix);
    if (n == 0 && le == NULL)
        return;
    puts_(w, "{");
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            puts_(w, ",");
        puts_(w, labels[i].name);
        puts_(w, "=\"");
        put_escaped(w, labels[i].value, 1);
        puts_(w, "\"");
    }
    if (le != NULL) {
        puts_(w, n > 0 ? ",le=\"" : "le=\"");
        puts_(w, le);
        puts_(w, "\"");
    }
    puts_(w, "}");
}

static void put_u64(struct fwd_metrics *w, uint64_t v)
{
    char num[32];

    snprintf(num, sizeof(num), " %llu\n", (unsigned long long)v);
    puts_(w, num);
}

static void format_f64(char *num, size_t len, double v)
{
    if (isnan(v))
        snprintf(num, len, "NaN");
    else if (isinf(v))
        snprintf(num, len, v > 0 ? "+Inf" : "-Inf");
    else
        snprintf(num, len, "%.17g", v);
}

static void put_f64(struct fwd_metrics *w, double v)
{
    char num[40];

    format_f64(num, sizeof(num), v);
    puts_(w, " ");
    puts_(w, num);
    puts_(w, "\n");
}

void fwd_metrics_u64(struct fwd_metrics *w, const struct fwd_metrics_label *labels, size_t n,
                     uint64_t v)
{
    put_series(w, "", labels, n, NULL);
    put_u64(w, v);
}

void fwd_metrics_f64(struct fwd_metrics *w, const struct fwd_metrics_label *labels, size_t n,
                     double v)
{
    put_series(w, "", labels, n, NULL);
    put_f64(w, v);
}

void fwd_metrics_hist(struct fwd_metrics *w, const struct fwd_metrics_label *labels, size_t n,
                      const struct fwd_hist *h)
{
    uint64_t cum = 0;
    char le[40];

    for (size_t i = 0; i < h->n; i++) {
        cum += h->counts[i];
        /* %g: the bound as written in the source (0.005, not 0.0050000000000000001) */
        snprintf(le, sizeof(le), "%g", h->bounds[i]);
        put_series(w, "_bucket", labels, n, le);
        put_u64(w, cum);
    }
    put_series(w, "_bucket", labels, n, "+Inf");
    put_u64(w, h->count);
    put_series(w, "_sum", labels, n, NULL);
    put_f64(w, h->sum);
    put_series(w, "_count", labels, n, NULL);
    put_u64(w, h->count);
}

void fwd_metrics_one(struct fwd_metrics *w, const char *name, enum fwd_metrics_type type,
                     const char *help, uint64_t v)
{
    fwd_metrics_family(w, name, type, help);
    fwd_metrics_u64(w, NULL, 0, v);
}

int fwd_metrics_finish(const struct fwd_metrics *w)
{
    return w->err;
}
