/*
 * Unit tests for journal.c: a journal written, emptied and recovered from a
 * temporary directory; a record cut short by a crash ends what is recovered.
 */
#include "fwd_forward.h"
#include "fwd_journal.h"

#include "unit.h"

#include <check.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* n entries [i, {"log": "line i"}] packed back to back */
static size_t entries(char *out, size_t cap, int from, int n)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    size_t len;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    for (int i = from; i < from + n; i++) {
        char line[32];
        int l = snprintf(line, sizeof(line), "line %d", i);

        msgpack_pack_array(&pk, 2);
        msgpack_pack_int(&pk, i);
        msgpack_pack_map(&pk, 1);
        msgpack_pack_str_with_body(&pk, "log", 3);
        msgpack_pack_str_with_body(&pk, line, (size_t)l);
    }
    len = sb.size;
    ck_assert_uint_le(len, cap);
    memcpy(out, sb.data, len);
    msgpack_sbuffer_destroy(&sb);
    return len;
}

struct got {
    int calls;
    uint32_t count;
    size_t len;
    char tag[64];
};

static int on_journal(void *ctx, const char *tag, size_t tag_len, const uint8_t *e, size_t len,
                      uint32_t count)
{
    struct got *g = ctx;

    (void)e;
    g->calls++;
    g->count = count;
    g->len = len;
    snprintf(g->tag, sizeof(g->tag), "%.*s", (int)tag_len, tag);
    return 0;
}

static void tmpdir(char *d, size_t n)
{
    snprintf(d, n, "/tmp/fwdjrn-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(d));
}

START_TEST(test_journal_append_reset_recover)
{
    char dir[64], buf[4096];
    struct fwd_journal *j;
    struct got g = {0};
    size_t a = entries(buf, sizeof(buf), 0, 10), b;

    tmpdir(dir, sizeof(dir));
    ck_assert_int_eq(fwd_journal_create(dir, "app.web", 7, &j), 0);
    ck_assert_int_eq(fwd_journal_append(j, buf, a), 0);
    ck_assert_int_eq(fwd_journal_reset(j), 0); /* sealed into the spool */
    b = entries(buf, sizeof(buf), 10, 5);
    ck_assert_int_eq(fwd_journal_append(j, buf, b), 0);
    fwd_journal_close(j); /* a crash: the file stays */
    ck_assert_uint_eq(fwd_journal_recover(dir, 1 << 20, on_journal, &g), 1);
    ck_assert_int_eq(g.calls, 1);
    ck_assert_uint_eq(g.count, 5);
    ck_assert_uint_eq(g.len, b);
    ck_assert_str_eq(g.tag, "app.web");
    /* recovered: deleted */
    ck_assert_uint_eq(fwd_journal_recover(dir, 1 << 20, on_journal, &g), 0);
    ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

START_TEST(test_journal_cut_record_ends_it)
{
    char buf[4096];
    size_t used, len = entries(buf, sizeof(buf), 0, 3);

    ck_assert_uint_eq(fwd_forward_whole_entries((uint8_t *)buf, len, &used), 3);
    ck_assert_uint_eq(used, len);
    ck_assert_uint_eq(fwd_forward_whole_entries((uint8_t *)buf, len - 2, &used), 2);
    ck_assert_uint_lt(used, len - 2);
    {
        /* [EventTime ext, {"a": [<a header claiming 2^32-1 items>]}]: cut short, nothing
         * allocated for the claim */
        static const uint8_t huge[] = {0x92, 0xd7, 0x00, 0,   0,    0,    1,    0,    0,    0,
                                       2,    0x81, 0xa1, 'a', 0xdd, 0xff, 0xff, 0xff, 0xff, 0x01};
        static const uint8_t ok[] = {0x92, 0xd7, 0x00, 0, 0, 0, 1, 0, 0, 0, 2, 0x80};

        ck_assert_uint_eq(fwd_forward_whole_entries(huge, sizeof(huge), &used), 0);
        ck_assert_uint_eq(used, 0);
        ck_assert_uint_eq(fwd_forward_whole_entries(ok, sizeof(ok), &used), 1);
        ck_assert_uint_eq(used, sizeof(ok));
    }
    /* not an entry (a bare integer): nothing after it counts */
    buf[0] = 0x05;
    ck_assert_uint_eq(fwd_forward_whole_entries((uint8_t *)buf, len, &used), 0);
    ck_assert_uint_eq(used, 0);
}
END_TEST

START_TEST(test_journal_destroy_removes_and_names_do_not_collide)
{
    char dir[64];
    struct fwd_journal *j1, *j2;
    struct got g = {0};

    tmpdir(dir, sizeof(dir));
    ck_assert_int_eq(fwd_journal_create(dir, "a", 1, &j1), 0);
    ck_assert_int_eq(fwd_journal_create(dir, "b", 1, &j2), 0);
    fwd_journal_destroy(j1);
    fwd_journal_destroy(j2);
    ck_assert_uint_eq(fwd_journal_recover(dir, 1 << 20, on_journal, &g), 0);
    ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

static Suite *journal_suite(void)
{
    Suite *s = suite_create("journal");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_journal_append_reset_recover);
    tcase_add_test(tc, test_journal_cut_record_ends_it);
    tcase_add_test(tc, test_journal_destroy_removes_and_names_do_not_collide);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return fwd_test_run(journal_suite());
}
