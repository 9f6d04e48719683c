/* Spool segments: append, reopen and replay in order, release and delete, and damage. */
#include "fwd_limits.h"
#include "fwd_spool.h"
#include "unit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct seen {
    size_t n;
    uint64_t seq[4096];
    uint32_t count[4096];
    char tag[4096][16];
    struct fwd_spool_ref ref[4096];
    size_t stop_after; /* 0: never stop */
};

static int on_item(void *ctx, const struct fwd_spool_item *it)
{
    struct seen *s = ctx;

    ck_assert_uint_lt(s->n, 4096);
    s->seq[s->n] = it->seq;
    s->count[s->n] = it->count;
    snprintf(s->tag[s->n], sizeof(s->tag[0]), "%.*s", (int)it->tag_len, it->tag);
    s->ref[s->n] = it->ref;
    s->n++;
    return s->stop_after && s->n == s->stop_after ? -1 : 0;
}

static char *tmpdir(void)
{
    static char dir[64];

    snprintf(dir, sizeof(dir), "/tmp/fwdspool-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    return dir;
}

static size_t count_segments(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = 0;

    if (d == NULL)
        return 0;
    while ((e = readdir(d)) != NULL)
        n += strstr(e->d_name, ".seg") != NULL;
    closedir(d);
    return n;
}

static char *first_segment(const char *dir)
{
    static char path[256];
    DIR *d = opendir(dir);
    struct dirent *e;

    path[0] = '\0';
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".seg") != NULL &&
            (path[0] == '\0' || strcmp(e->d_name, strrchr(path, '/') + 1) < 0))
            snprintf(path, sizeof(path), "%.40s/%.200s", dir, e->d_name);
    closedir(d);
    return path;
}

static void cleanup(const char *dir)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

START_TEST(test_spool_roundtrip_in_order)
{
    char *dir = tmpdir(), err[256];
    struct fwd_spool *sp;
    struct fwd_spool_ref ref;
    struct fwd_buf b;
    static struct seen seen;
    char entries[100];

    memset(&seen, 0, sizeof(seen));
    ck_assert_int_eq(fwd_spool_open(dir, NULL, &sp, on_item, &seen, err, sizeof(err)), 0);
    ck_assert_uint_eq(seen.n, 0);
    for (int i = 0; i < 10; i++) {
        memset(entries, 'a' + i, sizeof(entries));
        ck_assert_int_eq(
            fwd_spool_append(sp, 100 + i, i + 1, 0, "app.x", 5, entries, 10u * i, &ref), 0);
        ck_assert_uint_eq(ref.len, 10u * i);
    }
    ck_assert_uint_eq(fwd_spool_bytes(sp), 10 * (FWD_SPOOL_RECORD_OVERHEAD + 5) + 450);
    fwd_buf_init(&b, 1 << 20);
    ck_assert_int_eq(fwd_spool_read(sp, &ref, &b), 0);
    ck_assert_uint_eq(b.len, 90);
    ck_assert_int_eq(b.data[0], 'j');
    fwd_spool_close(sp); /* a restart */

    ck_assert_int_eq(fwd_spool_open(dir, NULL, &sp, on_item, &seen, err, sizeof(err)), 0);
    ck_assert_uint_eq(seen.n, 10);
    for (int i = 0; i < 10; i++) {
        ck_assert_uint_eq(seen.seq[i], 100 + i);
        ck_assert_uint_eq(seen.count[i], i + 1);
        ck_assert_str_eq(seen.tag[i], "app.x");
    }
    ck_assert_int_eq(fwd_spool_read(sp, &seen.ref[3], &b), 0);
    ck_assert_uint_eq(b.len, 30);
    ck_assert_int_eq(b.data[29], 'd');
    /* new records go to a new segment */
    ck_assert_int_eq(fwd_spool_append(sp, 200, 1, 0, "t", 1, "xy", 2, &ref), 0);
    ck_assert_uint_eq(count_segments(dir), 2);
    for (int i = 0; i < 10; i++)
        fwd_spool_release(sp, &seen.ref[i]);
    ck_assert_uint_eq(count_segments(dir), 1); /* the old one is gone, the open one stays */
    fwd_spool_release(sp, &ref);
    fwd_spool_close(sp);
    ck_assert_uint_eq(count_segments(dir), 0); /* released and closed: deleted */
    fwd_buf_release(&b);
    cleanup(dir);
}
END_TEST

START_TEST(test_spool_segments_rotate_and_go)
{
    char *dir = tmpdir(), err[256];
    struct fwd_spool *sp;
    static struct fwd_spool_ref refs[64];
    static char big[256 * 1024];
    size_t per = FWD_SPOOL_RECORD_OVERHEAD + 1 + sizeof(big);

    ck_assert_int_eq(fwd_spool_open(dir, NULL, &sp, on_item, NULL, err, sizeof(err)), 0);
    for (int i = 0; i < 40; i++)
        ck_assert_int_eq(fwd_spool_append(sp, i, 1, 0, "t", 1, big, sizeof(big), &refs[i]), 0);
    /* 16 records make a full segment, so 40 take three */
    ck_assert_uint_eq(count_segments(dir), 3);
    ck_assert_uint_eq(fwd_spool_bytes(sp), 40 * per);
    for (int i = 0; i < 16; i++)
        fwd_spool_release(sp, &refs[i]);
    ck_assert_uint_eq(count_segments(dir), 2);
    ck_assert_uint_eq(fwd_spool_bytes(sp), 24 * per);
    fwd_spool_destroy(sp);
    ck_assert_int_eq(access(dir, F_OK), -1); /* the directory went with it */
}
END_TEST

START_TEST(test_spool_truncated_segment_is_skipped_past)
{
    char *dir = tmpdir(), err[256], *seg;
    struct fwd_spool *sp;
    struct fwd_spool_ref ref;
    static struct seen seen;
    struct stat st;

    memset(&seen, 0, sizeof(seen));
    ck_assert_int_eq(fwd_spool_open(dir, NULL, &sp, on_item, &seen, err, sizeof(err)), 0);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(fwd_spool_append(sp, i, 1, 0, "t", 1, "0123456789", 10, &ref), 0);
    fwd_spool_close(sp);
    /* a crash in the middle of the fifth record */
    seg = first_segment(dir);
    ck_assert_int_eq(stat(seg, &st), 0);
    ck_assert_int_eq(truncate(seg, st.st_size - 4), 0);
    ck_assert_int_eq(fwd_spool_open(dir, NULL, &sp, on_item, &seen, err, sizeof(err)), 0);
    ck_assert_uint_eq(seen.n, 4);
    ck_assert_uint_eq(seen.seq[3], 3);
    ck_assert_uint_eq(fwd_spool_corrupt(sp), 1);
    /* and a later segment is still read */
    ck_assert_int_eq(fwd_spool_append(sp, 9, 1, 0, "t", 1, "z", 1, &ref), 0);
    fwd_spool_close(sp);
    memset(&seen, 0, sizeof(seen));
    ck_assert_int_eq(fwd_spool_open(dir, NULL, &sp, on_item, &seen, err, sizeof(err)), 0);
    ck_assert_uint_eq(seen.n, 5);
    ck_assert_uint_eq(seen.seq[4], 9);
    fwd_spool_destroy(sp);
}
END_TEST

START_TEST(test_spool_checksum_catches_a_flipped_byte)
{
    char *dir = tmpdir(), err[256], *seg;
    struct fwd_spool *sp;
    struct fwd_spool_ref r1, r2;
    static struct seen seen;
    struct fwd_buf b;
    int fd;

    memset(&seen, 0, sizeof(seen));
    fwd_buf_init(&b, 1 << 20);
    ck_assert_int_eq(fwd_spool_open(dir, NULL, &sp, on_item, &seen, err, sizeof(err)), 0);
    ck_assert_int_eq(fwd_spool_append(sp, 1, 1, 0, "t", 1, "first", 5, &r1), 0);
    ck_assert_int_eq(fwd_spool_append(sp, 2, 1, 0, "t", 1, "second", 6, &r2), 0);
    seg = first_segment(dir);
    fd = open(seg, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pwrite(fd, "X", 1, (off_t)(r2.off + r2.size - 1)), 1);
    close(fd);
    ck_assert_int_eq(fwd_spool_read(sp, &r1, &b), 0);
    ck_assert_int_eq(fwd_spool_read(sp, &r2, &b), -EBADMSG);
    fwd_spool_close(sp);
    ck_assert_int_eq(fwd_spool_open(dir, NULL, &sp, on_item, &seen, err, sizeof(err)), 0);
    ck_assert_uint_eq(seen.n, 1);
    ck_assert_uint_eq(fwd_spool_corrupt(sp), 1);
    fwd_spool_destroy(sp);
    fwd_buf_release(&b);
}
END_TEST

START_TEST(test_spool_stopping_the_scan_keeps_the_rest)
{
    char *dir = tmpdir(), err[256];
    struct fwd_spool *sp;
    struct fwd_spool_ref ref;
    static struct seen seen;

    memset(&seen, 0, sizeof(seen));
    ck_assert_int_eq(fwd_spool_open(dir, NULL, &sp, on_item, &seen, err, sizeof(err)), 0);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(fwd_spool_append(sp, i, 1, 0, "t", 1, "r", 1, &ref), 0);
    fwd_spool_close(sp);
    seen.stop_after = 2;
    ck_assert_int_eq(fwd_spool_open(dir, NULL, &sp, on_item, &seen, err, sizeof(err)), 0);
    ck_assert_uint_eq(seen.n, 2);
    fwd_spool_close(sp);
    ck_assert_uint_eq(count_segments(dir), 1);
    memset(&seen, 0, sizeof(seen));
    ck_assert_int_eq(fwd_spool_open(dir, NULL, &sp, on_item, &seen, err, sizeof(err)), 0);
    ck_assert_uint_eq(seen.n, 3);
    fwd_spool_destroy(sp);
}
END_TEST

START_TEST(test_spool_unwritable_dir_is_an_error)
{
    struct fwd_spool *sp;
    char err[256];

    ck_assert_int_lt(
        fwd_spool_open("/proc/nonexistent/spool", NULL, &sp, on_item, NULL, err, sizeof(err)), 0);
    ck_assert_ptr_nonnull(strstr(err, "/proc/nonexistent/spool"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("spool");
    TCase *core = tcase_create("core");

    tcase_set_timeout(core, 30);
    tcase_add_test(core, test_spool_roundtrip_in_order);
    tcase_add_test(core, test_spool_segments_rotate_and_go);
    tcase_add_test(core, test_spool_truncated_segment_is_skipped_past);
    tcase_add_test(core, test_spool_checksum_catches_a_flipped_byte);
    tcase_add_test(core, test_spool_stopping_the_scan_keeps_the_rest);
    tcase_add_test(core, test_spool_unwritable_dir_is_an_error);
    suite_add_tcase(s, core);
    return fwd_test_run(s);
}
