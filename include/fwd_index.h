/*
 * fwd_index.h - a string-keyed hash index over caller-owned nodes (intrusive,
 * chained): the registry finds a container by FIFO path or container id in
 * O(1) amortised instead of walking its list.
 *
 * The index never copies or frees keys or nodes: a node embeds struct
 * fwd_index_node, its key is borrowed and must stay unchanged while the node
 * is in the index. Keys are unique only if the caller keeps them so; find
 * returns one node with the key. The bucket array doubles when there are more
 * nodes than buckets, up to FWD_INDEX_MAX_BUCKETS; past that (or when growing
 * fails for memory) chains get longer, lookups stay correct.
 */
#ifndef FWD_INDEX_H
#define FWD_INDEX_H

#include <stddef.h>
#include <stdint.h>

#define FWD_INDEX_MIN_BUCKETS 64u
#define FWD_INDEX_MAX_BUCKETS (1u << 18)

struct fwd_index_node {
    struct fwd_index_node *next;
    const char *key;
    uint64_t hash;
};

struct fwd_index {
    struct fwd_index_node **b;
    size_t nb; /* buckets, a power of two */
    size_t n;  /* nodes */
};

/* An empty index (FWD_INDEX_MIN_BUCKETS buckets). 0 or -ENOMEM. */
int fwd_index_init(struct fwd_index *ix) __attribute__((warn_unused_result));
/* Free the buckets (the nodes are the caller's). NULL or a released index is fine. */
void fwd_index_release(struct fwd_index *ix);
/* Add node under key (borrowed until fwd_index_del). Never fails. */
void fwd_index_add(struct fwd_index *ix, struct fwd_index_node *node, const char *key);
/* Remove node (a node that is not in ix is left alone). */
void fwd_index_del(struct fwd_index *ix, struct fwd_index_node *node);
/* A node whose key is key, or NULL. */
struct fwd_index_node *fwd_index_find(const struct fwd_index *ix, const char *key);

#endif
