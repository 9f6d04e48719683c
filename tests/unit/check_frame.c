/* Unit tests for frame.c and entry.c: framing, short reads, caps, protobuf decoding. */
#include "fwd_entry.h"
#include "fwd_frame.h"
#include "fwd_limits.h"

#include "unit.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct seen {
    int n;
    size_t lens[64];
    uint8_t first[64];
};

static int collect(void *ctx, const uint8_t *p, size_t len)
{
    struct seen *s = ctx;

    s->lens[s->n] = len;
    s->first[s->n] = len ? p[0] : 0;
    s->n++;
    return 0;
}

static size_t put(uint8_t *b, const char *payload, size_t n)
{
    fwd_frame_put_len(b, (uint32_t)n);
    memcpy(b + 4, payload, n);
    return n + 4;
}

START_TEST(test_frame_splits_whole_frames)
{
    uint8_t b[64];
    size_t off = 0, used;
    struct seen s = {0};

    off += put(b + off, "abc", 3);
    off += put(b + off, "", 0);
    off += put(b + off, "xy", 2);
    ck_assert_int_eq(fwd_frame_split(b, off, 1024, collect, &s, &used), 0);
    ck_assert_int_eq(s.n, 3);
    ck_assert_uint_eq(s.lens[0], 3);
    ck_assert_uint_eq(s.lens[1], 0);
    ck_assert_uint_eq(s.lens[2], 2);
    ck_assert_uint_eq(used, off);
}
END_TEST

START_TEST(test_frame_short_reads_keep_tail)
{
    uint8_t b[64];
    size_t n = put(b, "hello", 5), used;

    for (size_t cut = 0; cut < n; cut++) {
        struct seen s = {0};
        ck_assert_int_eq(fwd_frame_split(b, cut, 1024, collect, &s, &used), 0);
        ck_assert_int_eq(s.n, 0);
        ck_assert_uint_eq(used, 0);
    }
}
END_TEST

START_TEST(test_frame_over_cap_is_emsgsize)
{
    uint8_t b[16];
    size_t used;
    struct seen s = {0};
    size_t off = put(b, "ok", 2);

    fwd_frame_put_len(b + off, 1025);
    ck_assert_int_eq(fwd_frame_split(b, off + 4, 1024, collect, &s, &used), -EMSGSIZE);
    ck_assert_int_eq(s.n, 1);
    ck_assert_uint_eq(used, off);
}
END_TEST

START_TEST(test_frame_cap_exactly_allowed)
{
    uint8_t *b = calloc(1, 1024 + 4);
    size_t used;
    struct seen s = {0};

    fwd_frame_put_len(b, 1024);
    ck_assert_int_eq(fwd_frame_split(b, 1028, 1024, collect, &s, &used), 0);
    ck_assert_int_eq(s.n, 1);
    free(b);
}
END_TEST

static struct fwd_entry mk(const char *src, const char *line, size_t len)
{
    struct fwd_entry e = {0};

    e.source_str = src;
    e.time_nano = 1700000000123456789LL;
    e.line = (const uint8_t *)line;
    e.line_len = len;
    e.partial_id = "";
    return e;
}

START_TEST(test_frame_find_start_skips_to_a_dockerd_frame)
{
    /* a frame as dockerd writes it: length, then field 1 (source) first */
    static const uint8_t f[] = {0, 0, 0, 10, 0x0a, 6, 's', 't', 'd', 'e', 'r', 'r', 0x10, 1};
    uint8_t buf[64];
    size_t off;

    memset(buf, 0xff, sizeof(buf));
    buf[3] = 20; /* a plausible length, then no source field: not a start */
    memcpy(buf + 17, f, sizeof(f));
    ck_assert_int_eq(fwd_frame_find_start(buf, sizeof(buf), FWD_FRAME_MAX, &off), 1);
    ck_assert_uint_eq(off, 17);
    /* the same start with a length over the cap is no start */
    ck_assert_int_eq(fwd_frame_find_start(buf, sizeof(buf), 9, &off), 0);
    ck_assert_uint_eq(off, sizeof(buf) - (FWD_FRAME_SIG_LEN - 1));
    /* too short to tell: nothing may be dropped yet */
    ck_assert_int_eq(fwd_frame_find_start(f, 11, FWD_FRAME_MAX, &off), 0);
    ck_assert_uint_eq(off, 0);
    ck_assert_int_eq(fwd_frame_find_start(f, 12, FWD_FRAME_MAX, &off), 1);
    ck_assert_uint_eq(off, 0);
}
END_TEST

START_TEST(test_entry_roundtrip)
{
    struct fwd_entry_decoder *d = fwd_entry_decoder_create();
    struct fwd_entry in = mk("stderr", "a\xff\0b", 4), out;
    uint8_t *buf;
    size_t n;

    in.partial = true;
    in.has_meta = true;
    in.partial_id = "abc";
    in.ordinal = 7;
    in.last = true;
    ck_assert_int_eq(fwd_entry_encode_frame(&in, &buf, &n), 0);
    ck_assert_int_eq(fwd_entry_decode(d, buf + 4, n - 4, &out), 0);
    ck_assert_int_eq(out.source, FWD_SOURCE_STDERR);
    ck_assert_int_eq(out.time_nano, in.time_nano);
    ck_assert_uint_eq(out.line_len, 4);
    ck_assert_mem_eq(out.line, "a\xff\0b", 4);
    ck_assert(out.partial && out.has_meta && out.last);
    ck_assert_str_eq(out.partial_id, "abc");
    ck_assert_int_eq(out.ordinal, 7);
    free(buf);
    fwd_entry_decoder_destroy(d);
}
END_TEST

START_TEST(test_entry_empty_and_unknown_fields)
{
    struct fwd_entry_decoder *d = fwd_entry_decoder_create();
    struct fwd_entry out;
    /* field 6 (attrs, docker v29.5) and an unknown varint field 9: both skipped */
    static const uint8_t msg[] = {0x0a, 6,    's', 't', 'd',  'o', 'u',  't', 0x32,
                                  5,    0x0a, 1,   'k', 0x12, 0,   0x48, 0x01};

    ck_assert_int_eq(fwd_entry_decode(d, (const uint8_t *)"", 0, &out), 0);
    ck_assert_int_eq(out.source, FWD_SOURCE_OTHER);
    ck_assert_uint_eq(out.line_len, 0);
    ck_assert(!out.has_meta);
    ck_assert_int_eq(fwd_entry_decode(d, msg, sizeof(msg), &out), 0);
    ck_assert_int_eq(out.source, FWD_SOURCE_STDOUT);
    fwd_entry_decoder_destroy(d);
}
END_TEST

START_TEST(test_entry_garbage_is_eproto)
{
    struct fwd_entry_decoder *d = fwd_entry_decoder_create();
    struct fwd_entry out;
    static const uint8_t bad[] = {0x1a, 0x7f, 'x'}; /* line claims 127 bytes, has 1 */

    ck_assert_int_eq(fwd_entry_decode(d, bad, sizeof(bad), &out), -EPROTO);
    fwd_entry_decoder_destroy(d);
}
END_TEST

START_TEST(test_entry_large_line_uses_overflow)
{
    struct fwd_entry_decoder *d = fwd_entry_decoder_create();
    size_t len = 300000;
    char *line = malloc(len);
    struct fwd_entry in, out;
    uint8_t *buf;
    size_t n;

    memset(line, 'q', len);
    in = mk("stdout", line, len);
    ck_assert_int_eq(fwd_entry_encode_frame(&in, &buf, &n), 0);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(fwd_entry_decode(d, buf + 4, n - 4, &out), 0);
        ck_assert_uint_eq(out.line_len, len);
        ck_assert_int_eq(out.line[len - 1], 'q');
    }
    free(buf);
    free(line);
    fwd_entry_decoder_destroy(d);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("frame");
    TCase *core = tcase_create("core"), *limits = tcase_create("limits");

    tcase_add_test(core, test_frame_splits_whole_frames);
    tcase_add_test(core, test_frame_find_start_skips_to_a_dockerd_frame);
    tcase_add_test(core, test_frame_short_reads_keep_tail);
    tcase_add_test(core, test_entry_roundtrip);
    tcase_add_test(core, test_entry_empty_and_unknown_fields);
    tcase_add_test(limits, test_frame_over_cap_is_emsgsize);
    tcase_add_test(limits, test_frame_cap_exactly_allowed);
    tcase_add_test(limits, test_entry_garbage_is_eproto);
    tcase_add_test(limits, test_entry_large_line_uses_overflow);
    suite_add_tcase(s, core);
    suite_add_tcase(s, limits);
    return fwd_test_run(s);
}
