/*
 * Batches: sealing into a PackedForward message (plain and gzip, with and
 * without a chunk id), read back with msgpack-c and zlib; per-source counts.
 */
#include "fwd_batch.h"
#include "fwd_output.h"
#include "unit.h"

#include <msgpack.h>
#include <string.h>
#include <zlib.h>

/* Entries of n records: [time, {"log": "line i"}]. */
static void fill(struct fwd_batch *b, unsigned n)
{
    msgpack_packer pk;

    msgpack_packer_init(&pk, &b->entries, fwd_buf_msgpack_write);
    for (unsigned i = 0; i < n; i++) {
        char line[32];
        int len = snprintf(line, sizeof(line), "line %u", i);

        msgpack_pack_array(&pk, 2);
        msgpack_pack_uint32(&pk, 1700000000u + i);
        msgpack_pack_map(&pk, 1);
        msgpack_pack_str_with_body(&pk, "log", 3);
        msgpack_pack_str_with_body(&pk, line, (size_t)len);
        b->count++;
    }
}

/* The message on the wire: header, entries, options, as one buffer. */
static size_t wire(const struct fwd_batch *b, char *out, size_t cap)
{
    size_t n = fwd_batch_wire_len(b);

    ck_assert_uint_le(n, cap);
    memcpy(out, b->hdr, b->hdr_len);
    memcpy(out + b->hdr_len, b->entries.data, b->entries.len);
    memcpy(out + b->hdr_len + b->entries.len, b->opt, b->opt_len);
    return n;
}

static const msgpack_object *opt(const msgpack_object *map, const char *key)
{
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;

        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(key) &&
            memcmp(k->via.str.ptr, key, k->via.str.size) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

/* Decode the sealed batch; the entries (inflated if gzip) into raw. */
static void decode(const struct fwd_batch *b, bool ack, bool gzip, char chunk[32], char *raw,
                   size_t *rawlen)
{
    static char buf[1 << 20];
    size_t n = wire(b, buf, sizeof(buf)), off = 0;
    msgpack_unpacked u;
    const msgpack_object *a, *o;

    msgpack_unpacked_init(&u);
    ck_assert_int_eq(msgpack_unpack_next(&u, buf, n, &off), MSGPACK_UNPACK_SUCCESS);
    ck_assert_uint_eq(off, n);
    a = u.data.via.array.ptr;
    ck_assert_uint_eq(u.data.via.array.size, 3);
    ck_assert_int_eq(a[0].type, MSGPACK_OBJECT_STR);
    ck_assert_int_eq(memcmp(a[0].via.str.ptr, "app.tag", 7), 0);
    ck_assert_int_eq(a[1].type, MSGPACK_OBJECT_BIN);
    o = opt(&a[2], "size");
    ck_assert_ptr_nonnull(o);
    ck_assert_uint_eq(o->via.u64, b->count);
    o = opt(&a[2], "chunk");
    ck_assert(ack ? o != NULL : o == NULL);
    if (o != NULL) {
        ck_assert_uint_eq(o->via.str.size, FWD_FORWARD_CHUNK_LEN);
        snprintf(chunk, 32, "%.*s", (int)o->via.str.size, o->via.str.ptr);
    }
    o = opt(&a[2], "compressed");
    ck_assert(gzip ? o != NULL && o->via.str.size == 4 : o == NULL);
    if (gzip) {
        z_stream z = {0};

        ck_assert_int_eq(inflateInit2(&z, 16 + MAX_WBITS), Z_OK);
        z.next_in = (Bytef *)a[1].via.bin.ptr;
        z.avail_in = a[1].via.bin.size;
        z.next_out = (Bytef *)raw;
        z.avail_out = 1 << 20;
        ck_assert_int_eq(inflate(&z, Z_FINISH), Z_STREAM_END);
        *rawlen = z.total_out;
        inflateEnd(&z);
    } else {
        memcpy(raw, a[1].via.bin.ptr, a[1].via.bin.size);
        *rawlen = a[1].via.bin.size;
    }
    msgpack_unpacked_destroy(&u);
}

static void check_seal(unsigned n, bool ack, bool gzip)
{
    static char raw[1 << 20], orig[1 << 20];
    struct fwd_batch *b = fwd_batch_new();
    char chunk[32] = "";
    size_t rawlen, origlen;

    fill(b, n);
    origlen = b->entries.len;
    memcpy(orig, b->entries.data, origlen);
    ck_assert_int_eq(fwd_batch_seal(b, "app.tag", 7, ack, gzip), 0);
    ck_assert_uint_eq(b->entries_len, b->entries.len);
    ck_assert_uint_eq(b->tag_len, 7);
    ck_assert_int_eq(memcmp(fwd_batch_tag(b), "app.tag", 7), 0);
    decode(b, ack, gzip, chunk, raw, &rawlen);
    ck_assert_uint_eq(rawlen, origlen);
    ck_assert_int_eq(memcmp(raw, orig, origlen), 0);
    if (ack)
        ck_assert_str_eq(chunk, b->chunk);
    if (gzip && n > 100)
        ck_assert_uint_lt(b->entries.len, origlen); /* held compressed */
    fwd_batch_free(b);
}

START_TEST(seal_plain)
{
    check_seal(1, false, false);
    check_seal(20, false, false);    /* entries < 256: bin8 */
    check_seal(3000, false, false);  /* bin16 */
    check_seal(30000, false, false); /* bin32 */
}
END_TEST

START_TEST(seal_gzip_and_chunks)
{
    check_seal(1, true, true);
    check_seal(5000, true, true);
    check_seal(5000, false, true);
    check_seal(5000, true, false);
}
END_TEST

/* Every batch gets its own chunk id, and a frame again (spool read-back) a new one. */
START_TEST(chunk_ids_unique)
{
    char seen[64][FWD_FORWARD_CHUNK_LEN + 1];

    for (int i = 0; i < 64; i++) {
        struct fwd_batch *b = fwd_batch_new();

        fill(b, 2);
        ck_assert_int_eq(fwd_batch_seal(b, "t", 1, true, false), 0);
        ck_assert_uint_eq(strlen(b->chunk), FWD_FORWARD_CHUNK_LEN);
        for (int j = 0; j < i; j++)
            ck_assert_str_ne(seen[j], b->chunk);
        memcpy(seen[i], b->chunk, sizeof(seen[i]));
        fwd_batch_free(b);
    }
}
END_TEST

START_TEST(sources)
{
    struct fwd_src *a = fwd_src_create("aaaaaaaaaaaaXXXX"), *c = fwd_src_create("cccccccccccc");
    struct fwd_batch *b = fwd_batch_new();
    size_t before;

    ck_assert_str_eq(a->cid, "aaaaaaaaaaaa"); /* 12 characters kept */
    for (int i = 0; i < 3; i++)
        fwd_batch_note_src(b, a);
    fwd_batch_note_src(b, c);
    fwd_batch_note_src(b, a);
    fwd_batch_note_src(b, NULL);
    ck_assert_uint_eq(b->nsrcs, 3); /* runs share an entry */
    ck_assert_str_eq(fwd_batch_first_cid(b), "aaaaaaaaaaaa");
    ck_assert_int_eq(a->refs, 3);
    fwd_batch_count_drop(b, false);
    ck_assert_uint_eq(fwd_src_dropped(a), 4);
    ck_assert_uint_eq(fwd_src_dropped(c), 1);
    fill(b, 10);
    ck_assert_int_eq(fwd_batch_seal(b, "t", 1, false, false), 0);
    before = fwd_batch_mem(b);
    b->spilled = true;
    ck_assert_uint_eq(fwd_batch_mem(b), before - b->entries_len);
    fwd_batch_free(b); /* releases its references */
    ck_assert_int_eq(a->refs, 1);
    fwd_src_log_drops(a);
    fwd_src_release(a);
    fwd_src_release(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("batch");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, seal_plain);
    tcase_add_test(tc, seal_gzip_and_chunks);
    tcase_add_test(tc, chunk_ids_unique);
    tcase_add_test(tc, sources);
    suite_add_tcase(s, tc);
    return fwd_test_run(s);
}
