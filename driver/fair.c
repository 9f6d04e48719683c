/*
 * fair.c - a queue's batches per source and the heaviest source (see
 * fwd_fair.h). The lists are intrusive (struct fwd_blink in the batch), so
 * nothing is allocated per batch; only the heap grows, by doubling.
 */
#include "fwd_fair.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define LINK(b, off) ((struct fwd_blink *)((char *)(b) + (off)))
#define BY_MEM       offsetof(struct fwd_batch, by_mem)
#define BY_SRC       offsetof(struct fwd_batch, by_src)
#define BY_SRCMEM    offsetof(struct fwd_batch, by_srcmem)

/* ---- ordered intrusive lists ------------------------------------------------------------ */

/* Insert b by seq, looking for its place from the head (front) or from the tail. */
static void l_insert(struct fwd_blist *l, size_t off, struct fwd_batch *b, bool front)
{
    struct fwd_blink *k = LINK(b, off);
    struct fwd_batch *at; /* b goes before it; NULL: at the tail */

    if (front) {
        at = l->head;
        while (at != NULL && at->seq < b->seq)
            at = LINK(at, off)->next;
    } else {
        struct fwd_batch *p = l->tail;

        while (p != NULL && p->seq > b->seq)
            p = LINK(p, off)->prev;
        at = p != NULL ? LINK(p, off)->next : l->head;
    }
    k->next = at;
    k->prev = at != NULL ? LINK(at, off)->prev : l->tail;
    if (k->prev != NULL)
        LINK(k->prev, off)->next = b;
    else
        l->head = b;
    if (at != NULL)
        LINK(at, off)->prev = b;
    else
        l->tail = b;
    l->n++;
}

static void l_remove(struct fwd_blist *l, size_t off, struct fwd_batch *b)
{
    struct fwd_blink *k = LINK(b, off);

    if (k->prev != NULL)
        LINK(k->prev, off)->next = k->next;
    else
        l->head = k->next;
    if (k->next != NULL)
        LINK(k->next, off)->prev = k->prev;
    else
        l->tail = k->prev;
    k->prev = k->next = NULL;
    l->n--;
}

/* ---- the heap of sources, by bytes ------------------------------------------------------- */

static void h_set(struct fwd_fair *f, size_t i, struct fwd_qsrc *s)
{
    f->heap[i] = s;
    s->slot = i + 1;
}

static void h_up(struct fwd_fair *f, size_t i)
{
    struct fwd_qsrc *s = f->heap[i];

    while (i > 0 && f->heap[(i - 1) / 2]->bytes < s->bytes) {
        h_set(f, i, f->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    h_set(f, i, s);
}

static void h_down(struct fwd_fair *f, size_t i)
{
    struct fwd_qsrc *s = f->heap[i];

    for (;;) {
        size_t c = 2 * i + 1;

        if (c >= f->nheap)
            break;
        if (c + 1 < f->nheap && f->heap[c + 1]->bytes > f->heap[c]->bytes)
            c++;
        if (f->heap[c]->bytes <= s->bytes)
            break;
        h_set(f, i, f->heap[c]);
        i = c;
    }
    h_set(f, i, s);
}

/* s's bytes changed: move it, take it out (no batches left) or put it in. */
static void h_fix(struct fwd_fair *f, struct fwd_qsrc *s)
{
    if (s->slot == 0) {
        f->heap[f->nheap++] = s;
        h_up(f, f->nheap - 1);
    } else if (s->all.n == 0) {
        size_t i = s->slot - 1;
        struct fwd_qsrc *last = f->heap[--f->nheap];

        s->slot = 0;
        if (i < f->nheap) {
            h_set(f, i, last);
            h_up(f, i);
            h_down(f, last->slot - 1);
        }
    } else {
        h_up(f, s->slot - 1);
        h_down(f, s->slot - 1);
    }
}

int fwd_fair_init(struct fwd_fair *f)
{
    *f = (struct fwd_fair){.cap = 8};
    f->heap = malloc(f->cap * sizeof(*f->heap));
    return f->heap != NULL ? 0 : -ENOMEM;
}

void fwd_fair_release(struct fwd_fair *f)
{
    free(f->heap);
    f->heap = NULL;
    f->nheap = f->cap = 0;
}

/* Whose bytes b counts in: its main source while the heap has a slot for a new one. */
static struct fwd_qsrc *owner_of(struct fwd_fair *f, const struct fwd_batch *b)
{
    struct fwd_src *src = fwd_batch_main_src(b);

    if (src == NULL)
        return &f->anon;
    if (src->q.slot == 0 && f->nheap + 1 >= f->cap) {
        struct fwd_qsrc **h = realloc(f->heap, 2 * f->cap * sizeof(*h));

        if (h == NULL)
            return &f->anon; /* still dropped in turn, only with the other unknown ones */
        f->heap = h;
        f->cap *= 2;
    }
    return &src->q;
}

void fwd_fair_add(struct fwd_fair *f, struct fwd_batch *b, bool front)
{
    struct fwd_qsrc *s = owner_of(f, b);

    b->owner = s;
    l_insert(&s->all, BY_SRC, b, front);
    if (!b->spilled) {
        l_insert(&s->mem, BY_SRCMEM, b, front);
        l_insert(&f->resident, BY_MEM, b, front);
    }
    s->bytes += fwd_batch_wire_len(b);
    h_fix(f, s);
}

void fwd_fair_evict(struct fwd_fair *f, struct fwd_batch *b)
{
    l_remove(&b->owner->mem, BY_SRCMEM, b);
    l_remove(&f->resident, BY_MEM, b);
}

void fwd_fair_remove(struct fwd_fair *f, struct fwd_batch *b)
{
    struct fwd_qsrc *s = b->owner;

    if (!b->spilled)
        fwd_fair_evict(f, b);
    l_remove(&s->all, BY_SRC, b);
    s->bytes -= fwd_batch_wire_len(b);
    h_fix(f, s);
    b->owner = NULL;
}

const struct fwd_qsrc *fwd_fair_heaviest(const struct fwd_fair *f)
{
    return f->nheap > 0 ? f->heap[0] : NULL;
}

struct fwd_batch *fwd_fair_victim(const struct fwd_fair *f, enum fwd_fair_kind kind, bool newest)
{
    const struct fwd_qsrc *s = fwd_fair_heaviest(f);
    struct fwd_batch *b;

    if (s == NULL)
        return NULL;
    if (kind == FWD_FAIR_IN_MEMORY)
        return newest ? s->mem.tail : s->mem.head;
    b = newest ? s->all.tail : s->all.head;
    /* in the spool: every batch with buffer-type=file; otherwise the spilled, mostly the oldest */
    while (kind == FWD_FAIR_IN_SPOOL && b != NULL && b->ref.seg == NULL)
        b = newest ? b->by_src.prev : b->by_src.next;
    return b;
}

/* ---- invariants (tests) ------------------------------------------------------------------ */

static const char *check_list(const struct fwd_blist *l, size_t off, const struct fwd_qsrc *owner,
                              bool resident, size_t *bytes)
{
    size_t n = 0;
    const struct fwd_batch *prev = NULL;

    for (const struct fwd_batch *b = l->head; b != NULL; prev = b, b = LINK(b, off)->next) {
        if (LINK(b, off)->prev != prev || (prev != NULL && prev->seq >= b->seq))
            return "a list is out of order or badly linked";
        if ((owner != NULL && b->owner != owner) || (resident && b->spilled))
            return "a batch is in the wrong list";
        n++;
        *bytes += fwd_batch_wire_len(b);
    }
    return prev != l->tail || n != l->n ? "a list's tail or count is wrong" : NULL;
}

const char *fwd_fair_check(const struct fwd_fair *f, const struct fwd_batch *head)
{
    size_t total = 0, in_lists = 0, resident = 0, queued_resident = 0, bytes = 0;
    const char *why;

    for (size_t i = 0; i < f->nheap; i++) {
        const struct fwd_qsrc *s = f->heap[i];
        size_t sb = 0, mb = 0;

        if (s->slot != i + 1)
            return "a source's heap slot is wrong";
        if (i > 0 && f->heap[(i - 1) / 2]->bytes < s->bytes)
            return "the heap is out of order";
        if ((why = check_list(&s->all, BY_SRC, s, false, &sb)) != NULL ||
            (why = check_list(&s->mem, BY_SRCMEM, s, true, &mb)) != NULL)
            return why;
        if (sb != s->bytes || s->all.n == 0)
            return "a source's bytes are not its batches' bytes";
        in_lists += s->all.n;
        resident += s->mem.n;
    }
    if (f->nheap > f->cap || (f->anon.slot == 0 && f->nheap >= f->cap))
        return "no slot left in the heap for the unknown source";
    if ((why = check_list(&f->resident, BY_MEM, NULL, true, &bytes)) != NULL)
        return why;
    for (const struct fwd_batch *b = head; b != NULL; b = b->next) {
        if (b->owner == NULL || b->owner->slot == 0)
            return "a queued batch counts against no source";
        total++;
        queued_resident += !b->spilled;
    }
    if (total != in_lists || resident != f->resident.n || queued_resident != resident)
        return "the sources' lists do not hold exactly the queued batches";
    return NULL;
}
