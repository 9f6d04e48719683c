/*
 * batch.c - batches, their sources and their sealing (see fwd_batch.h).
 */
#define FWD_LOG_MODULE "batch"
#include "fwd_batch.h"
#include "fwd_log.h"
#include "fwd_output.h"
#include "fwd_time.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* ---- sources ---------------------------------------------------------------------------- */

struct fwd_src *fwd_src_create(const char *cid)
{
    struct fwd_src *src = calloc(1, sizeof(*src));

    if (src != NULL) {
        src->refs = 1;
        snprintf(src->cid, sizeof(src->cid), "%s", cid);
    }
    return src;
}

void fwd_src_release(struct fwd_src *src)
{
    if (src == NULL || --src->refs > 0)
        return;
    if (src->dropped > src->logged)
        fwd_log_c(FWD_LOG_WARN, src->cid,
                  "%llu more records of this container were dropped after it stopped (%llu in "
                  "all)",
                  (unsigned long long)(src->dropped - src->logged),
                  (unsigned long long)src->dropped);
    free(src);
}

void fwd_src_log_drops(struct fwd_src *src)
{
    if (src->dropped > 0)
        fwd_log_c(FWD_LOG_WARN, src->cid,
                  "%llu records of this container were dropped so far (%llu over its "
                  "rate-limit, %llu with memory and spool full: see overflow-policy)",
                  (unsigned long long)src->dropped, (unsigned long long)src->rate_limited,
                  (unsigned long long)(src->dropped - src->rate_limited));
    src->logged = src->dropped;
}

void fwd_src_count_rate_drop(struct fwd_src *src)
{
    src->dropped++;
    src->rate_limited++;
}

uint64_t fwd_src_rate_limited(const struct fwd_src *src)
{
    return src->rate_limited;
}

uint64_t fwd_src_rejected(const struct fwd_src *src)
{
    return src->rejected;
}

uint64_t fwd_src_dropped(const struct fwd_src *src)
{
    return src->dropped;
}

/* ---- batches ---------------------------------------------------------------------------- */

struct fwd_batch *fwd_batch_new(void)
{
    struct fwd_batch *b = calloc(1, sizeof(*b));

    if (b != NULL) {
        fwd_buf_init(&b->entries, SIZE_MAX / 2);
        b->born = fwd_time_mono_ns(); /* for the age of the oldest queued record */
    }
    return b;
}

void fwd_batch_free(struct fwd_batch *b)
{
    if (b == NULL)
        return;
    for (uint32_t i = 0; i < b->nsrcs; i++)
        fwd_src_release(b->srcs[i].src);
    free(b->srcs);
    fwd_buf_release(&b->entries);
    free(b->hdr);
    free(b);
}

/* The tag ends where the entries' bin header begins. */
const char *fwd_batch_tag(const struct fwd_batch *b)
{
    size_t bin = b->entries_len < 256 ? 2 : b->entries_len < 65536 ? 3 : 5;

    return (const char *)b->hdr + b->hdr_len - bin - b->tag_len;
}

size_t fwd_batch_wire_len(const struct fwd_batch *b)
{
    return b->hdr_len + b->entries_len + b->opt_len;
}

size_t fwd_batch_mem(const struct fwd_batch *b)
{
    return sizeof(*b) + b->hdr_len + b->srccap * sizeof(struct fwd_src_count) +
           (b->spilled ? 0 : b->entries_len);
}

const char *fwd_batch_first_cid(const struct fwd_batch *b)
{
    return b->nsrcs > 0 ? b->srcs[0].src->cid : NULL;
}

struct fwd_src *fwd_batch_main_src(const struct fwd_batch *b)
{
    uint32_t best = 0;

    for (uint32_t i = 1; i < b->nsrcs; i++)
        if (b->srcs[i].n > b->srcs[best].n)
            best = i;
    return b->nsrcs > 0 ? b->srcs[best].src : NULL;
}

void fwd_batch_note_src(struct fwd_batch *b, struct fwd_src *src)
{
    if (src == NULL)
        return;
    if (b->nsrcs > 0 && b->srcs[b->nsrcs - 1].src == src) {
        b->srcs[b->nsrcs - 1].n++;
        return;
    }
    if (b->nsrcs == b->srccap) {
        uint32_t cap = b->srccap ? b->srccap * 2 : 2;
        struct fwd_src_count *t = realloc(b->srcs, cap * sizeof(*t));

        if (t == NULL)
            return; /* the record still goes; only its drop would not be counted per container */
        b->srcs = t;
        b->srccap = cap;
    }
    src->refs++;
    b->srcs[b->nsrcs++] = (struct fwd_src_count){src, 1};
}

void fwd_batch_count_drop(struct fwd_batch *b, bool rejected)
{
    for (uint32_t i = 0; i < b->nsrcs; i++) {
        b->srcs[i].src->dropped += b->srcs[i].n;
        if (rejected)
            b->srcs[i].src->rejected += b->srcs[i].n;
    }
}

int fwd_batch_frame(struct fwd_batch *b, const char *tag, size_t tag_len, bool ack, bool gzip)
{
    free(b->hdr);
    b->hdr = malloc(tag_len + FWD_FORWARD_HEADER_OVERHEAD);
    if (b->hdr == NULL)
        return -ENOMEM;
    b->hdr_len = fwd_forward_packed_header(b->hdr, tag_len + FWD_FORWARD_HEADER_OVERHEAD, tag,
                                           tag_len, b->entries_len);
    b->tag_len = tag_len;
    if (ack && fwd_forward_chunk_id(b->chunk) != 0) {
        /* No randomness (getrandom failed): still unique within this process. */
        static uint64_t seq;
        snprintf(b->chunk, sizeof(b->chunk), "fwdlog%018llu", (unsigned long long)++seq);
    }
    b->opt_len =
        fwd_forward_packed_options(b->opt, sizeof(b->opt), b->count, ack ? b->chunk : NULL, gzip);
    return 0;
}

int fwd_batch_seal(struct fwd_batch *b, const char *tag, size_t tag_len, bool ack, bool gzip)
{
    if (gzip) {
        /* sealed batches are held compressed: the buffer limit counts what is in memory */
        struct fwd_buf gz;

        fwd_buf_init(&gz, SIZE_MAX / 2);
        if (fwd_forward_gzip(b->entries.data, b->entries.len, Z_DEFAULT_COMPRESSION, &gz) != 0) {
            fwd_buf_release(&gz);
            return -ENOMEM;
        }
        fwd_buf_release(&b->entries);
        b->entries = gz;
    }
    b->entries_len = b->entries.len;
    return fwd_batch_frame(b, tag, tag_len, ack, gzip);
}
