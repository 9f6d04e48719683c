/* check_index: the registry's hash index (FIFO path / container id -> container). */
#include "fwd_index.h"
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct item {
    char key[80];
    struct fwd_index_node node;
};

static struct item *item_of(struct fwd_index_node *n)
{
    return n ? (struct item *)((char *)n - offsetof(struct item, node)) : NULL;
}

START_TEST(test_index_add_find_del)
{
    struct fwd_index ix;
    struct item a = {"/run/docker/logging/aa", {0}}, b = {"/run/docker/logging/bb", {0}};

    ck_assert_int_eq(fwd_index_init(&ix), 0);
    ck_assert_ptr_null(fwd_index_find(&ix, a.key));
    fwd_index_add(&ix, &a.node, a.key);
    fwd_index_add(&ix, &b.node, b.key);
    ck_assert_ptr_eq(item_of(fwd_index_find(&ix, "/run/docker/logging/aa")), &a);
    ck_assert_ptr_eq(item_of(fwd_index_find(&ix, "/run/docker/logging/bb")), &b);
    ck_assert_ptr_null(fwd_index_find(&ix, "/run/docker/logging/a"));
    fwd_index_del(&ix, &a.node);
    ck_assert_ptr_null(fwd_index_find(&ix, a.key));
    ck_assert_ptr_eq(item_of(fwd_index_find(&ix, b.key)), &b);
    fwd_index_del(&ix, &a.node); /* not in it any more: left alone */
    ck_assert_uint_eq(ix.n, 1);
    fwd_index_del(&ix, &b.node);
    ck_assert_uint_eq(ix.n, 0);
    fwd_index_release(&ix);
    fwd_index_release(&ix);
}
END_TEST

/* Lookups stay O(1): the buckets grow with the nodes, so chains stay short. */
START_TEST(test_index_grows_and_chains_stay_short)
{
    enum { N = 100000 };
    struct fwd_index ix;
    struct item *items = calloc(N, sizeof(*items));
    size_t longest = 0;

    ck_assert_ptr_nonnull(items);
    ck_assert_int_eq(fwd_index_init(&ix), 0);
    for (int i = 0; i < N; i++) {
        snprintf(items[i].key, sizeof(items[i].key), "%064x", i);
        fwd_index_add(&ix, &items[i].node, items[i].key);
    }
    ck_assert_uint_eq(ix.n, N);
    ck_assert_uint_ge(ix.nb, N);
    ck_assert_uint_le(ix.nb, FWD_INDEX_MAX_BUCKETS);
    for (size_t b = 0; b < ix.nb; b++) {
        size_t len = 0;

        for (struct fwd_index_node *n = ix.b[b]; n != NULL; n = n->next)
            len++;
        if (len > longest)
            longest = len;
    }
    ck_assert_uint_le(longest, 12);
    for (int i = 0; i < N; i += 7)
        ck_assert_ptr_eq(item_of(fwd_index_find(&ix, items[i].key)), &items[i]);
    for (int i = 0; i < N; i += 2)
        fwd_index_del(&ix, &items[i].node);
    ck_assert_uint_eq(ix.n, N / 2);
    for (int i = 0; i < N; i++)
        ck_assert_ptr_eq(item_of(fwd_index_find(&ix, items[i].key)), i % 2 ? &items[i] : NULL);
    fwd_index_release(&ix);
    free(items);
}
END_TEST

/* Past FWD_INDEX_MAX_BUCKETS the table stops growing (bounded memory) and stays right. */
START_TEST(test_index_bounded_buckets)
{
    struct fwd_index ix;
    size_t n = FWD_INDEX_MAX_BUCKETS + 1000;
    struct item *items = calloc(n, sizeof(*items));

    ck_assert_ptr_nonnull(items);
    ck_assert_int_eq(fwd_index_init(&ix), 0);
    for (size_t i = 0; i < n; i++) {
        snprintf(items[i].key, sizeof(items[i].key), "c%zu", i);
        fwd_index_add(&ix, &items[i].node, items[i].key);
    }
    ck_assert_uint_eq(ix.nb, FWD_INDEX_MAX_BUCKETS);
    ck_assert_ptr_eq(item_of(fwd_index_find(&ix, "c0")), &items[0]);
    ck_assert_ptr_eq(item_of(fwd_index_find(&ix, items[n - 1].key)), &items[n - 1]);
    fwd_index_release(&ix);
    free(items);
}
END_TEST

static Suite *index_suite(void)
{
    Suite *s = suite_create("index");
    TCase *core = tcase_create("core"), *limits = tcase_create("limits");

    tcase_add_test(core, test_index_add_find_del);
    tcase_add_test(core, test_index_grows_and_chains_stay_short);
    tcase_add_test(limits, test_index_bounded_buckets);
    tcase_set_timeout(limits, 30);
    suite_add_tcase(s, core);
    suite_add_tcase(s, limits);
    return s;
}

int main(void)
{
    return fwd_test_run(index_suite());
}
