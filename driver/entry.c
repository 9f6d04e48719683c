/*
 * entry.c - LogEntry decoding with protobuf-c.
 *
 * protobuf-c allocates the message, the line bytes and the strings through a
 * ProtobufCAllocator. Ours is a bump arena that is reset before each decode,
 * so "free_unpacked" is free and a frame costs no malloc. Frames are capped at
 * FWD_FRAME_MAX before they reach us; protobuf-c's own allocations are
 * proportional to the input (plus its scanned-member slabs for many fields),
 * so anything that does not fit the fixed arena falls back to malloc and is
 * freed at the next reset.
 */
#include "fwd_entry.h"
#include "entry.pb-c.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_SIZE (64u * 1024u)

struct overflow {
    struct overflow *next;
    max_align_t data[];
};

struct fwd_entry_decoder {
    ProtobufCAllocator alloc;
    size_t used;
    struct overflow *big;
    _Alignas(max_align_t) unsigned char arena[ARENA_SIZE];
};

static void *arena_alloc(void *ctx, size_t size)
{
    struct fwd_entry_decoder *d = ctx;
    size_t a = _Alignof(max_align_t);
    size_t need = (size + a - 1) & ~(a - 1);
    struct overflow *o;

    if (need >= size && need <= ARENA_SIZE - d->used) {
        void *p = d->arena + d->used;
        d->used += need;
        return p;
    }
    o = malloc(sizeof(*o) + size);
    if (o == NULL)
        return NULL;
    o->next = d->big;
    d->big = o;
    return o->data;
}

static void arena_free(void *ctx, void *p)
{
    /* Everything is released at once by arena_reset(). */
    (void)ctx;
    (void)p;
}

static void arena_reset(struct fwd_entry_decoder *d)
{
    while (d->big != NULL) {
        struct overflow *o = d->big;
        d->big = o->next;
        free(o);
    }
    d->used = 0;
}

struct fwd_entry_decoder *fwd_entry_decoder_create(void)
{
    struct fwd_entry_decoder *d = malloc(sizeof(*d));

    if (d == NULL)
        return NULL;
    d->alloc.alloc = arena_alloc;
    d->alloc.free = arena_free;
    d->alloc.allocator_data = d;
    d->used = 0;
    d->big = NULL;
    return d;
}

void fwd_entry_decoder_destroy(struct fwd_entry_decoder *d)
{
    if (d == NULL)
        return;
    arena_reset(d);
    free(d);
}

int fwd_entry_decode(struct fwd_entry_decoder *d, const uint8_t *buf, size_t len,
                     struct fwd_entry *out)
{
    LogEntry *m;

    arena_reset(d);
    m = log_entry__unpack(&d->alloc, len, buf);
    if (m == NULL)
        return -EPROTO;

    out->source_str = m->source != NULL ? m->source : "";
    out->source_len = strlen(out->source_str);
    if (strcmp(out->source_str, "stdout") == 0)
        out->source = FWD_SOURCE_STDOUT;
    else if (strcmp(out->source_str, "stderr") == 0)
        out->source = FWD_SOURCE_STDERR;
    else
        out->source = FWD_SOURCE_OTHER;
    out->time_nano = m->time_nano;
    out->line = m->line.len ? m->line.data : NULL;
    out->line_len = m->line.len;
    out->partial = m->partial;
    out->has_meta = m->partial_log_metadata != NULL;
    if (out->has_meta) {
        out->last = m->partial_log_metadata->last;
        out->partial_id = m->partial_log_metadata->id ? m->partial_log_metadata->id : "";
        out->ordinal = m->partial_log_metadata->ordinal;
    } else {
        out->last = false;
        out->partial_id = "";
        out->ordinal = 0;
    }
    out->partial_id_len = strlen(out->partial_id);
    /* The message lives in the arena: nothing to free until the next reset. */
    return 0;
}

int fwd_entry_encode_frame(const struct fwd_entry *e, uint8_t **out, size_t *out_len)
{
    LogEntry m = LOG_ENTRY__INIT;
    PartialLogEntryMetadata meta = PARTIAL_LOG_ENTRY_METADATA__INIT;
    size_t n;
    uint8_t *p;

    m.source = (char *)e->source_str;
    m.time_nano = e->time_nano;
    m.line.data = (uint8_t *)e->line;
    m.line.len = e->line_len;
    m.partial = e->partial;
    if (e->has_meta) {
        meta.last = e->last;
        meta.id = (char *)e->partial_id;
        meta.ordinal = e->ordinal;
        m.partial_log_metadata = &meta;
    }
    n = log_entry__get_packed_size(&m);
    p = malloc(n + 4);
    if (p == NULL)
        return -ENOMEM;
    p[0] = (uint8_t)(n >> 24);
    p[1] = (uint8_t)(n >> 16);
    p[2] = (uint8_t)(n >> 8);
    p[3] = (uint8_t)n;
    log_entry__pack(&m, p + 4);
    *out = p;
    *out_len = n + 4;
    return 0;
}
