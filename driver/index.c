/*
 * index.c - string-keyed intrusive hash index (separate chaining, FNV-1a).
 *
 * Pure: no I/O, no logging. Invariants: nb is a power of two between
 * FWD_INDEX_MIN_BUCKETS and FWD_INDEX_MAX_BUCKETS; every node sits in bucket
 * hash & (nb - 1); n counts the nodes. Growth rehashes every node at once
 * (amortised O(1) per add: it happens when n passes nb, doubling nb).
 */
#include "fwd_index.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

int fwd_index_init(struct fwd_index *ix)
{
    ix->n = 0;
    ix->nb = FWD_INDEX_MIN_BUCKETS;
    ix->b = calloc(ix->nb, sizeof(*ix->b));
    return ix->b != NULL ? 0 : -ENOMEM;
}

void fwd_index_release(struct fwd_index *ix)
{
    if (ix == NULL)
        return;
    free(ix->b);
    ix->b = NULL;
    ix->nb = 0;
    ix->n = 0;
}

/* Double the buckets; on ENOMEM keep the old ones (longer chains, still correct). */
static void grow(struct fwd_index *ix)
{
    size_t nb = ix->nb * 2;
    struct fwd_index_node **b = calloc(nb, sizeof(*b));

    if (b == NULL)
        return;
    for (size_t i = 0; i < ix->nb; i++) {
        struct fwd_index_node *node = ix->b[i], *next;

        for (; node != NULL; node = next) {
            next = node->next;
            node->next = b[node->hash & (nb - 1)];
            b[node->hash & (nb - 1)] = node;
        }
    }
    free(ix->b);
    ix->b = b;
    ix->nb = nb;
}

void fwd_index_add(struct fwd_index *ix, struct fwd_index_node *node, const char *key)
{
    struct fwd_index_node **head;

    node->key = key;
    node->hash = hash_str(key);
    head = &ix->b[node->hash & (ix->nb - 1)];
    node->next = *head;
    *head = node;
    ix->n++;
    if (ix->n > ix->nb && ix->nb < FWD_INDEX_MAX_BUCKETS)
        grow(ix);
}

void fwd_index_del(struct fwd_index *ix, struct fwd_index_node *node)
{
    struct fwd_index_node **p = &ix->b[node->hash & (ix->nb - 1)];

    while (*p != NULL && *p != node)
        p = &(*p)->next;
    if (*p == NULL)
        return; /* not in the index: nothing to undo */
    *p = node->next;
    node->next = NULL;
    ix->n--;
}

struct fwd_index_node *fwd_index_find(const struct fwd_index *ix, const char *key)
{
    uint64_t h = hash_str(key);

    for (struct fwd_index_node *node = ix->b[h & (ix->nb - 1)]; node != NULL; node = node->next)
        if (node->hash == h && strcmp(node->key, key) == 0)
            return node;
    return NULL;
}
