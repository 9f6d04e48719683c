/*
 * fwd_multiline.h - join the lines of one event (a stack trace, a panic)
 * before they are parsed and become records: multiline-start=REGEX or
 * multiline=java|python|go.
 *
 * Per stream (stdout and stderr never mix): a line that starts an event
 * emits the stream's open event and opens a new one; any other line is
 * appended to the open event with '\n'. With multiline-start, a line that
 * matches starts an event. The presets know their runtime's traces:
 *   java    "\tat ...", "Caused by: ...", "Suppressed: ...", "\t... N more",
 *           "... N common frames omitted" continue the line before them;
 *   python  "Traceback (most recent call last):" starts an event, indented
 *           lines continue it, the first unindented line (the exception) ends
 *           it; chained tracebacks ("During handling...", "The above
 *           exception...") stay in it;
 *   go      "panic: ..." or "fatal error: ..." starts an event that takes
 *           blank lines, "goroutine N [...]:", frames, "\t/file.go:N" and
 *           "created by ..." lines, and "exit status N".
 * An event is emitted when the next one starts, at multiline-max-lines or
 * multiline-max-bytes (what follows then starts a new event), when it has
 * been open for multiline-flush, and at end of stream. An event keeps its
 * first line's time. A piece of a line longer than max-line-size passes
 * through alone (its stream's open event is emitted first).
 * Pure: no fds, no clocks (callers pass now_ns).
 */
#ifndef FWD_MULTILINE_H
#define FWD_MULTILINE_H

#include "fwd_partial.h"

#include <stddef.h>
#include <stdint.h>

enum fwd_multiline_mode {
    FWD_MULTILINE_OFF = 0,
    FWD_MULTILINE_JAVA,
    FWD_MULTILINE_PYTHON,
    FWD_MULTILINE_GO,
    FWD_MULTILINE_START, /* multiline-start=REGEX */
};

struct fwd_multiline_opts {
    enum fwd_multiline_mode mode;
    const char *start; /* FWD_MULTILINE_START: the pattern */
    uint32_t max_lines;
    size_t max_bytes;
    uint64_t flush_ns;
};

struct fwd_multiline;

/* NULL with the reason in err (a bad multiline-start names the option, or "out of memory"). */
struct fwd_multiline *fwd_multiline_create(const struct fwd_multiline_opts *o, char *err,
                                           size_t errlen);
/* Frees open events without emitting them (fwd_multiline_flush first to keep them). */
void fwd_multiline_destroy(struct fwd_multiline *m);

/*
 * Feed one line; cb gets each event that is complete (borrowed for the call).
 * 0, a callback's non-zero value, or -ENOMEM (the line is passed through alone).
 */
int fwd_multiline_feed(struct fwd_multiline *m, const struct fwd_line *l, uint64_t now_ns,
                       fwd_line_cb cb, void *ctx);
/* Emit the events open since before now_ns - flush. */
int fwd_multiline_expire(struct fwd_multiline *m, uint64_t now_ns, fwd_line_cb cb, void *ctx);
/* End of stream: emit every open event. */
int fwd_multiline_flush(struct fwd_multiline *m, fwd_line_cb cb, void *ctx);
/* When the oldest open event is due (monotonic ns), or 0 when none is open. */
uint64_t fwd_multiline_next_deadline(const struct fwd_multiline *m);
/* Bytes of the open events (for memory accounting). */
size_t fwd_multiline_pending_bytes(const struct fwd_multiline *m);
/* Events emitted that joined two or more lines. */
uint64_t fwd_multiline_joins(const struct fwd_multiline *m);

#endif
