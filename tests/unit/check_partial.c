/* Unit tests for partial.c: joining, ordinals, caps, timeouts, interleaving, flush. */
#include "fwd_partial.h"
#include "fwd_time.h"

#include "unit.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct out {
    int n;
    struct {
        char data[70000];
        size_t len;
        bool piece, last;
        uint32_t ordinal;
        int64_t t;
        enum fwd_source src;
        char id[80];
    } l[16];
};

static int collect(void *ctx, const struct fwd_line *l)
{
    struct out *o = ctx;

    ck_assert_int_lt(o->n, 16);
    ck_assert_uint_le(l->len, sizeof(o->l[0].data));
    if (l->len)
        memcpy(o->l[o->n].data, l->data, l->len);
    o->l[o->n].len = l->len;
    o->l[o->n].piece = l->piece;
    o->l[o->n].last = l->last;
    o->l[o->n].ordinal = l->ordinal;
    o->l[o->n].t = l->time_nano;
    o->l[o->n].src = l->source;
    if (l->piece)
        snprintf(o->l[o->n].id, sizeof(o->l[0].id), "%.*s", (int)l->id_len, l->id);
    o->n++;
    return 0;
}

static struct fwd_entry chunk(enum fwd_source src, const char *id, int ord, bool last,
                              const char *data, size_t len, int64_t t)
{
    struct fwd_entry e = {0};

    e.source = src;
    e.source_str = src == FWD_SOURCE_STDOUT ? "stdout" : "stderr";
    e.source_len = 6;
    e.time_nano = t;
    e.line = (const uint8_t *)data;
    e.line_len = len;
    e.partial = id != NULL;
    e.has_meta = id != NULL;
    e.partial_id = id ? id : "";
    e.partial_id_len = strlen(e.partial_id);
    e.ordinal = ord;
    e.last = last;
    return e;
}

static char *filled(size_t n, char c)
{
    char *p = malloc(n);
    memset(p, c, n);
    return p;
}

START_TEST(test_partial_whole_line_passes_through)
{
    struct fwd_partial *p = fwd_partial_create(1 << 20, FWD_MS_TO_NS(1000));
    struct out o = {0};
    struct fwd_entry e = chunk(FWD_SOURCE_STDOUT, NULL, 0, false, "hi", 2, 5);

    ck_assert_int_eq(fwd_partial_feed(p, &e, 0, collect, &o), 0);
    ck_assert_int_eq(o.n, 1);
    ck_assert(!o.l[0].piece);
    ck_assert_uint_eq(o.l[0].len, 2);
    ck_assert_uint_eq(fwd_partial_next_deadline(p), 0);
    ck_assert_uint_eq(fwd_partial_joins(p), 0);
    fwd_partial_destroy(p);
}
END_TEST

START_TEST(test_partial_joins_in_ordinal_order)
{
    struct fwd_partial *p = fwd_partial_create(1 << 20, FWD_MS_TO_NS(1000));
    struct out o = {0};
    char *a = filled(16384, 'a'), *b = filled(16384, 'b');
    struct fwd_entry e1 = chunk(FWD_SOURCE_STDOUT, "id1", 1, false, a, 16384, 100);
    struct fwd_entry e2 = chunk(FWD_SOURCE_STDOUT, "id1", 2, false, b, 16384, 100);
    struct fwd_entry e3 = chunk(FWD_SOURCE_STDOUT, "id1", 3, true, "end", 3, 100);

    fwd_partial_feed(p, &e1, 0, collect, &o);
    fwd_partial_feed(p, &e2, 0, collect, &o);
    ck_assert_int_eq(o.n, 0);
    ck_assert_uint_eq(fwd_partial_pending_bytes(p), 32768);
    fwd_partial_feed(p, &e3, 0, collect, &o);
    ck_assert_int_eq(o.n, 1);
    ck_assert(!o.l[0].piece);
    ck_assert_uint_eq(o.l[0].len, 32771);
    ck_assert_int_eq(o.l[0].data[16383], 'a');
    ck_assert_int_eq(o.l[0].data[16384], 'b');
    ck_assert_mem_eq(o.l[0].data + 32768, "end", 3);
    ck_assert_int_eq(o.l[0].t, 100);
    ck_assert_uint_eq(fwd_partial_pending_bytes(p), 0);
    ck_assert_uint_eq(fwd_partial_joins(p), 1); /* three chunks, one joined line */
    free(a);
    free(b);
    fwd_partial_destroy(p);
}
END_TEST

START_TEST(test_partial_empty_last_chunk)
{
    struct fwd_partial *p = fwd_partial_create(1 << 20, FWD_MS_TO_NS(1000));
    struct out o = {0};
    char *a = filled(16384, 'a');
    struct fwd_entry e1 = chunk(FWD_SOURCE_STDOUT, "x", 1, false, a, 16384, 1);
    struct fwd_entry e2 = chunk(FWD_SOURCE_STDOUT, "x", 2, true, NULL, 0, 1);

    fwd_partial_feed(p, &e1, 0, collect, &o);
    fwd_partial_feed(p, &e2, 0, collect, &o);
    ck_assert_int_eq(o.n, 1);
    ck_assert_uint_eq(o.l[0].len, 16384);
    free(a);
    fwd_partial_destroy(p);
}
END_TEST

START_TEST(test_partial_interleaved_ids)
{
    struct fwd_partial *p = fwd_partial_create(1 << 20, FWD_MS_TO_NS(1000));
    struct out o = {0};
    struct fwd_entry a1 = chunk(FWD_SOURCE_STDOUT, "A", 1, false, "a1", 2, 1);
    struct fwd_entry b1 = chunk(FWD_SOURCE_STDERR, "B", 1, false, "b1", 2, 2);
    struct fwd_entry a2 = chunk(FWD_SOURCE_STDOUT, "A", 2, true, "a2", 2, 1);
    struct fwd_entry w = chunk(FWD_SOURCE_STDOUT, NULL, 0, false, "w", 1, 3);
    struct fwd_entry b2 = chunk(FWD_SOURCE_STDERR, "B", 2, true, "b2", 2, 2);

    fwd_partial_feed(p, &a1, 0, collect, &o);
    fwd_partial_feed(p, &b1, 0, collect, &o);
    fwd_partial_feed(p, &a2, 0, collect, &o);
    fwd_partial_feed(p, &w, 0, collect, &o);
    fwd_partial_feed(p, &b2, 0, collect, &o);
    ck_assert_int_eq(o.n, 3);
    ck_assert_mem_eq(o.l[0].data, "a1a2", 4);
    ck_assert_int_eq(o.l[0].src, FWD_SOURCE_STDOUT);
    ck_assert_mem_eq(o.l[1].data, "w", 1);
    ck_assert_mem_eq(o.l[2].data, "b1b2", 4);
    ck_assert_int_eq(o.l[2].src, FWD_SOURCE_STDERR);
    ck_assert_int_eq(o.l[2].t, 2);
    fwd_partial_destroy(p);
}
END_TEST

START_TEST(test_partial_over_max_emits_pieces)
{
    struct fwd_partial *p = fwd_partial_create(20000, FWD_MS_TO_NS(1000));
    struct out o = {0};
    char *a = filled(16384, 'a');
    struct fwd_entry e1 = chunk(FWD_SOURCE_STDOUT, "id", 1, false, a, 16384, 9);
    struct fwd_entry e2 = chunk(FWD_SOURCE_STDOUT, "id", 2, false, a, 16384, 9);
    struct fwd_entry e3 = chunk(FWD_SOURCE_STDOUT, "id", 3, true, a, 10, 9);

    fwd_partial_feed(p, &e1, 0, collect, &o);
    fwd_partial_feed(p, &e2, 0, collect, &o);
    ck_assert_int_eq(o.n, 1); /* 32768 > 20000: the first full piece is out at once */
    ck_assert_uint_eq(fwd_partial_pending_bytes(p), 32768 - 20000);
    fwd_partial_feed(p, &e3, 0, collect, &o);
    ck_assert_int_eq(o.n, 2);
    ck_assert(o.l[0].piece && !o.l[0].last);
    ck_assert_uint_eq(o.l[0].ordinal, 1);
    ck_assert_uint_eq(o.l[0].len, 20000);
    ck_assert(o.l[1].piece && o.l[1].last);
    ck_assert_uint_eq(o.l[1].ordinal, 2);
    ck_assert_uint_eq(o.l[1].len, 32778 - 20000);
    ck_assert_str_eq(o.l[1].id, "id");
    free(a);
    fwd_partial_destroy(p);
}
END_TEST

START_TEST(test_partial_exactly_max_is_whole)
{
    struct fwd_partial *p = fwd_partial_create(16384, FWD_MS_TO_NS(1000));
    struct out o = {0};
    char *a = filled(16384, 'a');
    struct fwd_entry e1 = chunk(FWD_SOURCE_STDOUT, "id", 1, false, a, 16384, 9);
    struct fwd_entry e2 = chunk(FWD_SOURCE_STDOUT, "id", 2, true, NULL, 0, 9);

    fwd_partial_feed(p, &e1, 0, collect, &o);
    fwd_partial_feed(p, &e2, 0, collect, &o);
    ck_assert_int_eq(o.n, 1);
    ck_assert(!o.l[0].piece);
    free(a);
    fwd_partial_destroy(p);
}
END_TEST

START_TEST(test_partial_timeout_then_late_chunk)
{
    struct fwd_partial *p = fwd_partial_create(1 << 20, FWD_MS_TO_NS(1000));
    struct out o = {0};
    struct fwd_entry e1 = chunk(FWD_SOURCE_STDOUT, "id", 1, false, "first", 5, 9);
    struct fwd_entry e2 = chunk(FWD_SOURCE_STDOUT, "id", 2, true, "last", 4, 9);
    uint64_t t0 = FWD_MS_TO_NS(5000);

    fwd_partial_feed(p, &e1, t0, collect, &o);
    ck_assert_uint_eq(fwd_partial_next_deadline(p), t0 + FWD_MS_TO_NS(1000));
    fwd_partial_expire(p, t0 + FWD_MS_TO_NS(999), collect, &o);
    ck_assert_int_eq(o.n, 0);
    fwd_partial_expire(p, t0 + FWD_MS_TO_NS(1000), collect, &o);
    ck_assert_int_eq(o.n, 1);
    ck_assert(o.l[0].piece && !o.l[0].last);
    ck_assert_uint_eq(o.l[0].ordinal, 1);
    fwd_partial_feed(p, &e2, t0 + FWD_MS_TO_NS(2000), collect, &o);
    ck_assert_int_eq(o.n, 2);
    ck_assert(o.l[1].piece && o.l[1].last);
    ck_assert_uint_eq(o.l[1].ordinal, 2);
    ck_assert_mem_eq(o.l[1].data, "last", 4);
    fwd_partial_destroy(p);
}
END_TEST

START_TEST(test_partial_flush_at_end_of_stream)
{
    struct fwd_partial *p = fwd_partial_create(1 << 20, FWD_MS_TO_NS(1000));
    struct out o = {0};
    struct fwd_entry e1 = chunk(FWD_SOURCE_STDOUT, "id", 1, false, "cut", 3, 9);

    fwd_partial_feed(p, &e1, 0, collect, &o);
    fwd_partial_flush(p, collect, &o);
    ck_assert_int_eq(o.n, 1);
    ck_assert(!o.l[0].piece); /* nothing of it went out before: whole */
    ck_assert_uint_eq(fwd_partial_next_deadline(p), 0);
    fwd_partial_destroy(p);
}
END_TEST

START_TEST(test_partial_slots_evict_oldest)
{
    struct fwd_partial *p = fwd_partial_create(1 << 20, FWD_MS_TO_NS(1000));
    struct out o = {0};
    char id[8];

    for (int i = 0; i < 9; i++) {
        struct fwd_entry e;
        snprintf(id, sizeof(id), "id%d", i);
        e = chunk(FWD_SOURCE_STDOUT, id, 1, false, "x", 1, 1);
        fwd_partial_feed(p, &e, (uint64_t)i, collect, &o);
    }
    ck_assert_int_eq(o.n, 1);
    ck_assert_str_eq(o.l[0].id, "id0");
    fwd_partial_flush(p, collect, &o);
    ck_assert_int_eq(o.n, 1 + 8); /* id0's slot was reused for id8: 8 pending lines */
    fwd_partial_destroy(p);
}
END_TEST

START_TEST(test_partial_legacy_without_metadata)
{
    struct fwd_partial *p = fwd_partial_create(1 << 20, FWD_MS_TO_NS(1000));
    struct out o = {0};
    struct fwd_entry e1 = chunk(FWD_SOURCE_STDOUT, NULL, 0, false, "ab", 2, 1);
    struct fwd_entry e2 = chunk(FWD_SOURCE_STDOUT, NULL, 0, false, "cd", 2, 1);

    e1.partial = true; /* pre-19.03: partial flag, no metadata, final chunk unflagged */
    fwd_partial_feed(p, &e1, 0, collect, &o);
    ck_assert_int_eq(o.n, 0);
    fwd_partial_feed(p, &e2, 0, collect, &o);
    ck_assert_int_eq(o.n, 1);
    ck_assert_mem_eq(o.l[0].data, "abcd", 4);
    fwd_partial_destroy(p);
}
END_TEST

START_TEST(test_partial_bad_id_kept_as_line)
{
    struct fwd_partial *p = fwd_partial_create(1 << 20, FWD_MS_TO_NS(1000));
    struct out o = {0};
    struct fwd_entry e = chunk(FWD_SOURCE_STDOUT, "", 1, false, "orphan", 6, 1);

    e.has_meta = true;
    fwd_partial_feed(p, &e, 0, collect, &o);
    ck_assert_int_eq(o.n, 1);
    ck_assert(!o.l[0].piece);
    fwd_partial_destroy(p);
}
END_TEST

START_TEST(test_partial_utf8_cut)
{
    const uint8_t ascii[] = "abcd";
    const uint8_t two[] = {'a', 0xc3, 0xa9};        /* a é */
    const uint8_t cut2[] = {'a', 'b', 0xc3};        /* é cut after its lead byte */
    const uint8_t cut4[] = {'a', 0xf0, 0x9f, 0x98}; /* 😀 missing its last byte */
    const uint8_t bad[] = {'a', 0x80, 0x80, 0x80, 0x80};

    ck_assert_uint_eq(fwd_partial_utf8_cut(ascii, 4), 4);
    ck_assert_uint_eq(fwd_partial_utf8_cut(two, 3), 3);
    ck_assert_uint_eq(fwd_partial_utf8_cut(two, 2), 1);
    ck_assert_uint_eq(fwd_partial_utf8_cut(cut2, 3), 2);
    ck_assert_uint_eq(fwd_partial_utf8_cut(cut4, 4), 1);
    ck_assert_uint_eq(fwd_partial_utf8_cut(bad, 5), 5);      /* not UTF-8: cut where asked */
    ck_assert_uint_eq(fwd_partial_utf8_cut(cut4 + 1, 3), 3); /* nothing before it */
}
END_TEST

START_TEST(test_issue_13_split_pieces_within_max)
{
    struct out o = {0};
    char *data = filled(25000, 'x');
    struct fwd_line l = {.source = FWD_SOURCE_STDERR,
                         .source_str = "stderr",
                         .source_len = 6,
                         .time_nano = 0x1234,
                         .data = (const uint8_t *)data,
                         .len = 25000};
    size_t total = 0;

    /* a 2-byte character straddles the first cut: it moves whole into piece 2 */
    data[9999] = (char)0xc3;
    data[10000] = (char)0xa9;
    ck_assert_int_eq(fwd_partial_split(&l, 10000, 7, collect, &o), 0);
    ck_assert_int_eq(o.n, 3);
    ck_assert_uint_eq(o.l[0].len, 9999);
    ck_assert_uint_eq(o.l[1].len, 10000);
    ck_assert_uint_eq(o.l[2].len, 5001);
    for (int i = 0; i < 3; i++) {
        ck_assert(o.l[i].piece);
        ck_assert_uint_eq(o.l[i].ordinal, (uint32_t)i + 1);
        ck_assert(o.l[i].last == (i == 2));
        ck_assert_str_eq(o.l[i].id, "00000000000012340000000000000007");
        ck_assert_int_eq(o.l[i].t, 0x1234);
        ck_assert_int_eq(o.l[i].src, FWD_SOURCE_STDERR);
        ck_assert_mem_eq(o.l[i].data, data + total, o.l[i].len);
        total += o.l[i].len;
    }
    ck_assert_uint_eq(total, 25000);
    free(data);
}
END_TEST

START_TEST(test_issue_13_partial_pieces_cut_between_characters)
{
    struct fwd_partial *p = fwd_partial_create(20000, FWD_MS_TO_NS(1000));
    struct out o = {0};
    char *data = filled(30000, 'y');
    struct fwd_entry e1, e2;

    data[19999] = (char)0xe2; /* € (e2 82 ac) across the 20000-byte piece boundary */
    data[20000] = (char)0x82;
    data[20001] = (char)0xac;
    e1 = chunk(FWD_SOURCE_STDOUT, "id", 1, false, data, 16384, 1);
    e2 = chunk(FWD_SOURCE_STDOUT, "id", 2, true, data + 16384, 30000 - 16384, 1);
    ck_assert_int_eq(fwd_partial_feed(p, &e1, 0, collect, &o), 0);
    ck_assert_int_eq(fwd_partial_feed(p, &e2, 0, collect, &o), 0);
    ck_assert_int_eq(o.n, 2);
    ck_assert_uint_eq(o.l[0].len, 19999);
    ck_assert_uint_eq(o.l[1].len, 10001);
    ck_assert(!o.l[0].last && o.l[1].last);
    ck_assert_mem_eq(o.l[1].data, data + 19999, 10001);
    fwd_partial_destroy(p);
    free(data);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("partial");
    TCase *core = tcase_create("core"), *limits = tcase_create("limits");

    tcase_add_test(core, test_partial_whole_line_passes_through);
    tcase_add_test(core, test_partial_joins_in_ordinal_order);
    tcase_add_test(core, test_partial_empty_last_chunk);
    tcase_add_test(core, test_partial_interleaved_ids);
    tcase_add_test(core, test_partial_flush_at_end_of_stream);
    tcase_add_test(core, test_partial_legacy_without_metadata);
    tcase_add_test(limits, test_partial_over_max_emits_pieces);
    tcase_add_test(limits, test_partial_exactly_max_is_whole);
    tcase_add_test(limits, test_partial_timeout_then_late_chunk);
    tcase_add_test(limits, test_partial_slots_evict_oldest);
    tcase_add_test(limits, test_partial_bad_id_kept_as_line);
    tcase_add_test(limits, test_partial_utf8_cut);
    tcase_add_test(limits, test_issue_13_split_pieces_within_max);
    tcase_add_test(limits, test_issue_13_partial_pieces_cut_between_characters);
    suite_add_tcase(s, core);
    suite_add_tcase(s, limits);
    return fwd_test_run(s);
}
