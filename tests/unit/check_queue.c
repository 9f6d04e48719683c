/*
 * The destination queue against a temporary state directory: admission in
 * memory, each overflow policy, spilling to the spool and reading back, the
 * spool of an earlier run (and its delivered mark), drops counted per source.
 */
#include "fwd_queue.h"
#include "unit.h"

#include <dirent.h>
#include <errno.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct fixture {
    char dir[64];
    struct fwd_config cfg;
    struct fwd_output_stats st;
    struct fwd_queue q;
};

static void setup(struct fixture *f, size_t buffer_limit, size_t spool_limit,
                  enum fwd_overflow policy, bool file)
{
    char err[256];

    memset(f, 0, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/fwdqueue-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(f->dir));
    ck_assert_int_eq(fwd_config_build(&f->cfg, NULL, 0, NULL, 0, err, sizeof(err)), 0);
    f->cfg.buffer_limit = buffer_limit;
    f->cfg.spool_limit = spool_limit;
    f->cfg.overflow = policy;
    f->cfg.buffer_type = file ? FWD_BUFFER_FILE : FWD_BUFFER_MEMORY;
    ck_assert_int_eq(fwd_queue_init(&f->q, &f->cfg, "test", f->dir, NULL, &f->st, NULL, NULL), 0);
}

/* Reopen the same state directory as a later run would. */
static void restart(struct fixture *f)
{
    fwd_queue_fini(&f->q);
    memset(&f->st, 0, sizeof(f->st));
    ck_assert_int_eq(fwd_queue_init(&f->q, &f->cfg, "test", f->dir, NULL, &f->st, NULL, NULL), 0);
}

static void teardown(struct fixture *f)
{
    char cmd[128];

    fwd_queue_fini(&f->q);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* A batch of n records of src, each 100 bytes of payload tagged with its id. */
static struct fwd_batch *batch(unsigned id, unsigned n, struct fwd_src *src)
{
    struct fwd_batch *b = fwd_batch_new();
    msgpack_packer pk;
    char line[100];

    msgpack_packer_init(&pk, &b->entries, fwd_buf_msgpack_write);
    memset(line, 'a' + id % 26, sizeof(line));
    for (unsigned i = 0; i < n; i++) {
        msgpack_pack_array(&pk, 2);
        msgpack_pack_uint32(&pk, id);
        msgpack_pack_str_with_body(&pk, line, sizeof(line));
        b->count++;
        fwd_batch_note_src(b, src);
    }
    return b;
}

/* The id the records of a popped batch carry. */
static unsigned id_of(const struct fwd_batch *b)
{
    ck_assert_uint_gt(b->entries.len, 3);
    return b->entries.data[1]; /* array(2), then a positive fixint id */
}

static unsigned drain(struct fixture *f, unsigned *ids, unsigned max)
{
    unsigned n = 0;
    struct fwd_batch *b;

    while ((b = fwd_queue_pop(&f->q)) != NULL) {
        ck_assert_uint_lt(n, max);
        ck_assert(!b->spilled);
        ck_assert_uint_eq(b->entries.len, b->entries_len);
        ids[n++] = id_of(b);
        fwd_queue_done(&f->q, b);
    }
    ck_assert_uint_eq(f->q.qbytes, 0);
    ck_assert_uint_eq(f->q.mem, 0);
    return n;
}

START_TEST(in_memory_in_order)
{
    struct fixture f;
    unsigned ids[16];

    setup(&f, 1 << 20, 0, FWD_OVERFLOW_DROP_OLDEST, false);
    for (unsigned i = 1; i <= 5; i++)
        ck_assert_int_eq(fwd_queue_seal(&f.q, batch(i, 10, NULL), "t", 1), 0);
    ck_assert_uint_eq(f.q.fair.resident.n, 5);
    ck_assert_uint_gt(f.q.mem, 5 * 10 * 100);
    ck_assert(fwd_queue_has_data(&f.q));
    ck_assert_uint_eq(drain(&f, ids, 16), 5);
    for (unsigned i = 0; i < 5; i++)
        ck_assert_uint_eq(ids[i], i + 1);
    ck_assert(!fwd_queue_has_data(&f.q));
    ck_assert_uint_eq(f.st.records_dropped, 0);
    teardown(&f);
}
END_TEST

/* A taken batch that comes back goes before what was queued after it. */
START_TEST(returned_in_order)
{
    struct fixture f;
    struct fwd_batch *a, *b;
    unsigned ids[16];

    setup(&f, 1 << 20, 0, FWD_OVERFLOW_DROP_OLDEST, false);
    for (unsigned i = 1; i <= 4; i++)
        ck_assert_int_eq(fwd_queue_seal(&f.q, batch(i, 1, NULL), "t", 1), 0);
    a = fwd_queue_pop(&f.q);
    b = fwd_queue_pop(&f.q);
    a->next = b;
    b->next = NULL;
    fwd_queue_return(&f.q, a);
    ck_assert_uint_eq(drain(&f, ids, 16), 4);
    for (unsigned i = 0; i < 4; i++)
        ck_assert_uint_eq(ids[i], i + 1);
    teardown(&f);
}
END_TEST

/* What a sealed batch of n records (batch()) holds in memory. */
static size_t mem_of(unsigned n)
{
    struct fwd_src *src = fwd_src_create("cccccccccccc");
    struct fwd_batch *b = batch(1, n, src);
    size_t mem;

    ck_assert_int_eq(fwd_batch_seal(b, "t", 1, false, false), 0);
    mem = fwd_batch_mem(b);
    fwd_batch_free(b);
    fwd_src_release(src);
    return mem;
}

/*
 * Issue 13 item 7. No spool, memory for three big batches and three small ones: a
 * floods with big batches while b writes a small one now and then. drop-oldest takes
 * a's oldest batches, never b's, and charges the drops to a.
 */
START_TEST(test_issue_13_drop_oldest_takes_from_the_heaviest)
{
    struct fixture f;
    struct fwd_src *a = fwd_src_create("aaaaaaaaaaaa"), *b = fwd_src_create("bbbbbbbbbbbb");
    size_t big = mem_of(10), small = mem_of(1);
    unsigned ids[64], n, nb = 0, keep;

    setup(&f, 3 * big + 3 * small + 100, 0, FWD_OVERFLOW_DROP_OLDEST, false);
    for (unsigned i = 1; i <= 20; i++) {
        ck_assert_int_eq(fwd_queue_seal(&f.q, batch(i, 10, a), "t", 1), 0);
        if (i % 4 == 0 && i < 20)
            ck_assert_int_eq(fwd_queue_seal(&f.q, batch(40 + nb++, 1, b), "t", 1), 0);
        ck_assert_uint_le(f.q.mem, f.cfg.buffer_limit);
    }
    keep = (unsigned)((f.cfg.buffer_limit - nb * small) / big); /* a's newest that fit */
    ck_assert_uint_eq(nb, 4);
    ck_assert_uint_eq(keep, 2);
    n = drain(&f, ids, 64);
    ck_assert_uint_eq(n, nb + keep);
    for (unsigned i = 0, k = 0; i < n; i++) {
        if (ids[i] >= 40)
            ck_assert_uint_eq(ids[i], 40 + k++); /* every one of b's, in order */
        else
            ck_assert_uint_gt(ids[i], 20 - keep);
    }
    ck_assert_uint_eq(fwd_src_dropped(b), 0);
    ck_assert_uint_eq(fwd_src_dropped(a), 10 * (20 - keep));
    ck_assert_uint_eq(f.st.records_dropped, 10 * (20 - keep));
    ck_assert_uint_eq(f.st.batches_dropped, 20 - keep);
    teardown(&f);
    fwd_src_release(a);
    fwd_src_release(b);
}
END_TEST

/*
 * drop-newest: a new batch of the source holding the most is refused; a quiet
 * source's new batch is kept, and the heavy source's newest batch makes room for it.
 */
START_TEST(test_issue_13_drop_newest_refuses_the_heaviest)
{
    struct fixture f;
    struct fwd_src *a = fwd_src_create("aaaaaaaaaaaa"), *b = fwd_src_create("bbbbbbbbbbbb");
    size_t big = mem_of(10);
    unsigned ids[16];

    setup(&f, 3 * big + 100, 0, FWD_OVERFLOW_DROP_NEWEST, false);
    for (unsigned i = 1; i <= 5; i++)
        ck_assert_int_eq(fwd_queue_seal(&f.q, batch(i, 10, a), "t", 1), i <= 3 ? 0 : -ENOBUFS);
    ck_assert_int_eq(fwd_queue_seal(&f.q, batch(40, 1, b), "t", 1), 0);
    ck_assert_int_eq(fwd_queue_seal(&f.q, batch(41, 1, b), "t", 1), 0);
    ck_assert_uint_eq(drain(&f, ids, 16), 4);
    ck_assert_uint_eq(ids[0], 1);
    ck_assert_uint_eq(ids[1], 2);
    ck_assert_uint_eq(ids[2], 40);
    ck_assert_uint_eq(ids[3], 41);
    ck_assert_uint_eq(fwd_src_dropped(a), 30); /* 4 and 5 refused, 3 gave way to b */
    ck_assert_uint_eq(fwd_src_dropped(b), 0);
    ck_assert_uint_eq(f.st.records_dropped, 30);
    teardown(&f);
    fwd_src_release(a);
    fwd_src_release(b);
}
END_TEST

/*
 * Every aggregator down, so batches go to the spool first, and the spool is full:
 * drop-oldest frees spool space from the heaviest source too, never the quiet one.
 */
START_TEST(test_issue_13_spool_full_takes_from_the_heaviest)
{
    struct fixture f;
    struct fwd_src *a = fwd_src_create("aaaaaaaaaaaa"), *b = fwd_src_create("bbbbbbbbbbbb");
    unsigned ids[64], n, kept_a = 0;

    setup(&f, 1 << 20, 5 * (FWD_SPOOL_RECORD_OVERHEAD + 1 + 1040), FWD_OVERFLOW_DROP_OLDEST, false);
    f.q.down = true;
    for (unsigned i = 1; i <= 20; i++) {
        ck_assert_int_eq(fwd_queue_seal(&f.q, batch(i, 10, a), "t", 1), 0);
        if (i % 5 == 0)
            ck_assert_int_eq(fwd_queue_seal(&f.q, batch(39 + i / 5, 1, b), "t", 1), 0);
        ck_assert_ptr_null(fwd_queue_check(&f.q));
    }
    ck_assert_uint_eq(f.q.fair.resident.n, 0); /* all spilled */
    n = drain(&f, ids, 64);
    for (unsigned i = 0, k = 0; i < n; i++) {
        if (ids[i] >= 40)
            ck_assert_uint_eq(ids[i], 40 + k++);
        else
            kept_a++;
    }
    ck_assert_uint_eq(n - kept_a, 4); /* every one of b's */
    ck_assert_uint_ge(kept_a, 3);
    ck_assert_uint_eq(ids[n - 2], 20); /* a's newest kept, its oldest dropped */
    ck_assert_uint_eq(fwd_src_dropped(b), 0);
    ck_assert_uint_eq(fwd_src_dropped(a), 10 * (20 - kept_a));
    teardown(&f);
    fwd_src_release(a);
    fwd_src_release(b);
}
END_TEST

/* The heaviest source by the queue's own count: what the heap must agree with. */
static size_t heaviest_bytes(const struct fwd_queue *q, struct fwd_src **srcs, unsigned n)
{
    size_t max = q->fair.anon.bytes;

    for (unsigned i = 0; i < n; i++) {
        size_t bytes = 0;

        for (const struct fwd_batch *b = q->head; b != NULL; b = b->next)
            if (b->owner == &srcs[i]->q)
                bytes += fwd_batch_wire_len(b);
        ck_assert_uint_eq(bytes, srcs[i]->q.bytes);
        if (bytes > max)
            max = bytes;
    }
    return max;
}

/*
 * The per-source lists and the heap stay consistent through every path a batch takes:
 * sealed, spilled, popped, returned, dropped, delivered; 1,000 sources and unknown ones.
 */
START_TEST(test_issue_13_fair_invariants)
{
    enum { NSRC = 1000 };
    struct fixture f;
    struct fwd_src *srcs[NSRC];
    struct fwd_batch *taken = NULL, **tail = &taken;
    unsigned seed = 13, ntaken = 0;
    char cid[13];

    for (unsigned i = 0; i < NSRC; i++) {
        snprintf(cid, sizeof(cid), "%012u", i);
        srcs[i] = fwd_src_create(cid);
    }
    setup(&f, 400 * 1024, 16 << 20, FWD_OVERFLOW_DROP_OLDEST, false);
    for (unsigned step = 0; step < 6000; step++) {
        unsigned r = (seed = seed * 1103515245u + 12345u) >> 8, i = r % NSRC;
        const struct fwd_qsrc *h;

        if (r % 7 == 0 && ntaken < 32) {
            struct fwd_batch *b = fwd_queue_pop(&f.q);

            if (b != NULL) {
                *tail = b; /* taken by a connection: by seq */
                tail = &b->next;
                ntaken++;
            }
        } else if (r % 97 == 0) {
            fwd_queue_return(&f.q, taken); /* the connection failed */
            taken = NULL;
            tail = &taken;
            ntaken = 0;
        } else {
            /* a few heavy sources, many light ones, some batches of no known source */
            unsigned n = i < 10 ? 60 : 1 + r % 3;
            int rc = fwd_queue_seal(&f.q, batch(1, n, i % 50 == 1 ? NULL : srcs[i]), "t", 1);

            /* dropped at once when its source holds the most (and it is that one's oldest) */
            ck_assert(rc == 0 || rc == -ENOBUFS);
        }
        ck_assert_ptr_null(fwd_queue_check(&f.q));
        h = fwd_fair_heaviest(&f.q.fair);
        if (step % 100 == 0)
            ck_assert_uint_eq(h ? h->bytes : 0, heaviest_bytes(&f.q, srcs, NSRC));
    }
    ck_assert_ptr_nonnull(f.q.spool); /* the spool was used: spilled batches were in the lists */
    ck_assert_uint_gt(f.st.records_dropped, 0);
    while (taken != NULL) {
        struct fwd_batch *b = taken;

        taken = b->next;
        fwd_queue_done(&f.q, b);
    }
    teardown(&f);
    for (unsigned i = 0; i < NSRC; i++) {
        ck_assert_uint_eq(srcs[i]->q.bytes, 0);
        ck_assert_uint_eq(srcs[i]->q.slot, 0);
        fwd_src_release(srcs[i]);
    }
}
END_TEST

static int woken;
static void wake(struct fwd_waiter *w)
{
    (void)w;
    woken++;
}

START_TEST(block_holds_back_and_wakes)
{
    struct fixture f;
    struct fwd_waiter w = {.wake = wake};
    struct fwd_batch *b;

    woken = 0;
    setup(&f, 3 * 1300, 0, FWD_OVERFLOW_BLOCK, false);
    ck_assert_int_eq(fwd_queue_seal(&f.q, batch(1, 10, NULL), "t", 1), 0);
    ck_assert(!fwd_queue_wait(&f.q, &w));
    for (unsigned i = 2; !f.q.blocked; i++) {
        ck_assert_uint_lt(i, 10);
        ck_assert_int_eq(fwd_queue_seal(&f.q, batch(i, 10, NULL), "t", 1), 0);
    }
    ck_assert_uint_eq(f.st.records_dropped, 0); /* nothing dropped: held back instead */
    ck_assert(fwd_queue_wait(&f.q, &w));
    ck_assert(w.waiting);
    b = fwd_queue_pop(&f.q);
    fwd_queue_done(&f.q, b); /* room again */
    ck_assert(!f.q.blocked);
    ck_assert_int_eq(woken, 1);
    ck_assert(!w.waiting);
    /* a waiter that goes away is not woken */
    for (unsigned i = 5; i <= 6; i++)
        ck_assert_int_eq(fwd_queue_seal(&f.q, batch(i, 10, NULL), "t", 1), 0);
    ck_assert(fwd_queue_wait(&f.q, &w));
    fwd_queue_unwait(&f.q, &w);
    while ((b = fwd_queue_pop(&f.q)) != NULL)
        fwd_queue_done(&f.q, b);
    ck_assert_int_eq(woken, 1);
    teardown(&f);
}
END_TEST

/* Over memory, batches spill to the spool oldest first and come back whole, in order. */
START_TEST(spill_and_load_back)
{
    struct fixture f;
    unsigned ids[64];

    setup(&f, 3 * 11000, 1 << 20, FWD_OVERFLOW_DROP_OLDEST, false);
    for (unsigned i = 1; i <= 20; i++)
        ck_assert_int_eq(fwd_queue_seal(&f.q, batch(i, 100, NULL), "t", 1), 0);
    ck_assert_ptr_nonnull(f.q.spool);
    ck_assert_uint_lt(f.q.fair.resident.n, 20);
    ck_assert_uint_le(f.q.mem, f.cfg.buffer_limit);
    ck_assert_uint_eq(f.st.spooled_batches, 20 - f.q.fair.resident.n);
    ck_assert_uint_eq(drain(&f, ids, 64), 20);
    for (unsigned i = 0; i < 20; i++)
        ck_assert_uint_eq(ids[i], i + 1);
    ck_assert_uint_eq(f.st.records_dropped, 0);
    teardown(&f);
}
END_TEST

/* The spool full too: drop-oldest gives way in the spool first. */
START_TEST(spool_full_drops_oldest)
{
    struct fixture f;
    unsigned ids[64], n;

    setup(&f, 2 * 1300, 4 * 1100, FWD_OVERFLOW_DROP_OLDEST, false);
    for (unsigned i = 1; i <= 12; i++)
        ck_assert_int_eq(fwd_queue_seal(&f.q, batch(i, 10, NULL), "t", 1), 0);
    n = drain(&f, ids, 64);
    ck_assert_uint_eq(f.st.records_dropped, 10 * (12 - n));
    ck_assert_uint_ge(n, 4);
    ck_assert_uint_eq(ids[n - 1], 12); /* the newest is kept */
    for (unsigned i = 1; i < n; i++)
        ck_assert_uint_gt(ids[i], ids[i - 1]); /* what is kept stays in order */
    teardown(&f);
}
END_TEST

/* buffer-type=file: what a run left queued comes back in the next, minus what it delivered. */
START_TEST(file_mode_survives_a_restart)
{
    struct fixture f;
    char err[256];
    unsigned ids[16];
    struct fwd_batch *b;

    setup(&f, 1 << 20, 1 << 20, FWD_OVERFLOW_DROP_OLDEST, true);
    ck_assert_int_eq(fwd_queue_open_spool(&f.q, err, sizeof(err)), 0);
    for (unsigned i = 1; i <= 5; i++)
        ck_assert_int_eq(fwd_queue_seal(&f.q, batch(i, 10, NULL), "t", 1), 0);
    ck_assert_uint_eq(f.st.spooled_batches, 5);
    for (int i = 0; i < 2; i++) {
        b = fwd_queue_pop(&f.q);
        fwd_queue_done(&f.q, b); /* delivered */
    }
    restart(&f);
    ck_assert_int_eq(fwd_queue_open_spool(&f.q, err, sizeof(err)), 0);
    ck_assert_uint_eq(f.st.replayed_records, 30);
    ck_assert_uint_eq(drain(&f, ids, 16), 3);
    ck_assert_uint_eq(ids[0], 3);
    ck_assert_uint_eq(ids[2], 5);
    /* new batches are numbered after the old ones */
    ck_assert_int_eq(fwd_queue_seal(&f.q, batch(9, 1, NULL), "t", 1), 0);
    ck_assert_uint_gt(f.q.head->seq, 5);
    teardown(&f);
}
END_TEST

START_TEST(spool_limit_zero_is_an_error)
{
    struct fixture f;
    char err[256] = "";

    setup(&f, 1 << 20, 0, FWD_OVERFLOW_DROP_OLDEST, true);
    ck_assert_int_eq(fwd_queue_open_spool(&f.q, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "spool-limit is 0");
    teardown(&f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("queue");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, in_memory_in_order);
    tcase_add_test(tc, returned_in_order);
    tcase_add_test(tc, test_issue_13_drop_oldest_takes_from_the_heaviest);
    tcase_add_test(tc, test_issue_13_drop_newest_refuses_the_heaviest);
    tcase_add_test(tc, test_issue_13_spool_full_takes_from_the_heaviest);
    tcase_add_test(tc, test_issue_13_fair_invariants);
    tcase_add_test(tc, block_holds_back_and_wakes);
    tcase_add_test(tc, spill_and_load_back);
    tcase_add_test(tc, spool_full_drops_oldest);
    tcase_add_test(tc, file_mode_survives_a_restart);
    tcase_add_test(tc, spool_limit_zero_is_an_error);
    suite_add_tcase(s, tc);
    return fwd_test_run(s);
}
