/* Unit tests for record.c and forward.c: record keys, attributes, EventTime, PackedForward. */
#include "fwd_buf.h"
#include "fwd_forward.h"
#include "fwd_record.h"
#include "fwd_limits.h"

#include "unit.h"

#include <check.h>
#include <errno.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define KV(k, v)                                                                                   \
    {                                                                                              \
        (char *)(k), (char *)(v)                                                                   \
    }
#define CID "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static char err[1024];

static struct fwd_info mkinfo(struct fwd_kv *labels, size_t nl, char **env, size_t ne)
{
    struct fwd_info in = {0};

    in.container_id = (char *)CID;
    in.container_name = (char *)"/web";
    in.labels = labels;
    in.nlabels = nl;
    in.env = env;
    in.nenv = ne;
    return in;
}

static struct fwd_line mkline(const char *log, int64_t t)
{
    struct fwd_line l = {0};

    l.source = FWD_SOURCE_STDOUT;
    l.source_str = "stdout";
    l.source_len = 6;
    l.time_nano = t;
    l.data = (const uint8_t *)log;
    l.len = strlen(log);
    return l;
}

/* Pack one entry and return it as "k=v;k=v;" in wire order, checking the size bound. */
static void pack_to_string(struct fwd_record_tmpl *t, const struct fwd_line *l, char *out,
                           size_t outlen)
{
    struct fwd_buf b;
    msgpack_packer pk;
    msgpack_unpacked u;
    size_t off = 0, max = fwd_record_size_max(t, l);

    fwd_buf_init(&b, 1 << 24);
    ck_assert_int_eq(fwd_buf_reserve(&b, max), 0);
    msgpack_packer_init(&pk, &b, fwd_buf_msgpack_write_reserved);
    fwd_record_pack(t, l, &pk);
    ck_assert_uint_le(b.len, max);
    msgpack_unpacked_init(&u);
    ck_assert_int_eq(msgpack_unpack_next(&u, (const char *)b.data, b.len, &off),
                     MSGPACK_UNPACK_SUCCESS);
    ck_assert_uint_eq(off, b.len);
    ck_assert_int_eq(u.data.type, MSGPACK_OBJECT_ARRAY);
    ck_assert_uint_eq(u.data.via.array.size, 2);
    msgpack_object rec = u.data.via.array.ptr[1];
    ck_assert_int_eq(rec.type, MSGPACK_OBJECT_MAP);
    out[0] = '\0';
    for (uint32_t i = 0; i < rec.via.map.size; i++) {
        msgpack_object k = rec.via.map.ptr[i].key, v = rec.via.map.ptr[i].val;
        size_t n = strlen(out);
        ck_assert_int_eq(k.type, MSGPACK_OBJECT_STR);
        ck_assert_int_eq(v.type, MSGPACK_OBJECT_STR);
        snprintf(out + n, outlen - n, "%.*s=%.*s;", (int)k.via.str.size, k.via.str.ptr,
                 (int)v.via.str.size, v.via.str.ptr);
    }
    msgpack_unpacked_destroy(&u);
    fwd_buf_release(&b);
}

START_TEST(test_record_base_keys)
{
    struct fwd_info in = mkinfo(NULL, 0, NULL, 0);
    struct fwd_config c;
    struct fwd_record_tmpl *t;
    struct fwd_line l = mkline("hello", 1);
    char s[4096];

    ck_assert_int_eq(fwd_config_build(&c, NULL, 0, NULL, 0, err, sizeof(err)), 0);
    t = fwd_record_tmpl_create(&in, &c, "host1", err, sizeof(err));
    ck_assert_ptr_nonnull(t);
    pack_to_string(t, &l, s, sizeof(s));
    ck_assert_str_eq(s, "container_id=" CID ";container_name=/web;source=stdout;log=hello;");
    fwd_record_tmpl_destroy(t);
}
END_TEST

START_TEST(test_record_attributes_env_wins_and_overrides)
{
    struct fwd_kv labels[] = {KV("a", "la"), KV("b", "lb"), KV("c", "lc"), KV("log", "L")};
    char *env[] = {(char *)"a=ea",
                   (char *)"X_1=1",
                   (char *)"X_1=2",
                   (char *)"NOEQ",
                   (char *)"container_name=evil",
                   (char *)"X_2=",
                   (char *)"Y=y=z"};
    struct fwd_info in = mkinfo(labels, 4, env, 7);
    struct fwd_kv opts[] = {KV("labels", "a,b,zz"), KV("labels-regex", "^l"), KV("env", "a,Y"),
                            KV("env-regex", "^(X_|container_)")};
    struct fwd_config c;
    struct fwd_record_tmpl *t;
    struct fwd_line l = mkline("line", 1);
    char s[4096];

    ck_assert_int_eq(fwd_config_build(&c, opts, 4, NULL, 0, err, sizeof(err)), 0);
    t = fwd_record_tmpl_create(&in, &c, "host1", err, sizeof(err));
    ck_assert_ptr_nonnull(t);
    pack_to_string(t, &l, s, sizeof(s));
    /* labels a,b then labels-regex ^l (log), then env a,Y, then env-regex; env a wins;
     * the attribute named log replaces the line and container_name the name (Go map
     * assignment after the base keys). */
    ck_assert_str_eq(s, "container_id=" CID ";container_name=evil;source=stdout;log=L;a=ea;"
                        "b=lb;Y=y=z;X_1=2;X_2=;");
    ck_assert_uint_eq(fwd_record_nattrs(t), 6);
    fwd_record_tmpl_destroy(t);
}
END_TEST

START_TEST(test_record_bad_regex_names_option)
{
    struct fwd_info in = mkinfo(NULL, 0, NULL, 0);
    struct fwd_kv opts[] = {KV("env-regex", "a(")};
    struct fwd_config c;

    ck_assert_int_eq(fwd_config_build(&c, opts, 1, NULL, 0, err, sizeof(err)), 0);
    ck_assert_ptr_null(fwd_record_tmpl_create(&in, &c, "host1", err, sizeof(err)));
    ck_assert_ptr_nonnull(strstr(err, "invalid log-opt env-regex=\"a(\""));
}
END_TEST

START_TEST(test_record_partial_keys)
{
    struct fwd_info in = mkinfo(NULL, 0, NULL, 0);
    struct fwd_config c;
    struct fwd_record_tmpl *t;
    struct fwd_line l = mkline("piece", 1);
    char s[4096];

    ck_assert_int_eq(fwd_config_build(&c, NULL, 0, NULL, 0, err, sizeof(err)), 0);
    t = fwd_record_tmpl_create(&in, &c, "host1", err, sizeof(err));
    l.piece = true;
    l.id = "abc";
    l.id_len = 3;
    l.ordinal = 12;
    l.last = true;
    pack_to_string(t, &l, s, sizeof(s));
    ck_assert_str_eq(s, "container_id=" CID ";container_name=/web;source=stdout;log=piece;"
                        "partial_message=true;partial_id=abc;partial_ordinal=12;"
                        "partial_last=true;");
    fwd_record_tmpl_destroy(t);
}
END_TEST

START_TEST(test_issue_13_piece_room_keeps_records_within_max)
{
    struct fwd_kv labels[] = {KV("team", "payments"), KV("tier", "1")};
    struct fwd_info in = mkinfo(labels, 2, NULL, 0);
    struct fwd_kv opts[] = {KV("labels", "team,tier"), KV("seq-key", "seq")};
    struct fwd_config c;
    struct fwd_record_tmpl *t;
    struct fwd_record_more m = {NULL, UINT64_MAX};
    struct fwd_line l = mkline("", 1);
    size_t room;

    ck_assert_int_eq(fwd_config_build(&c, opts, 2, NULL, 0, err, sizeof(err)), 0);
    t = fwd_record_tmpl_create(&in, &c, "host1", err, sizeof(err));
    ck_assert_ptr_nonnull(t);
    room = fwd_record_piece_room(t, 65536);
    /* a piece of room bytes with the longest id: its record's bound is exactly the max */
    l.piece = true;
    l.id_len = FWD_PARTIAL_ID_MAX;
    l.source_len = 31;
    l.len = room;
    ck_assert_uint_eq(fwd_record_size_max_more(t, &l, &m), 65536);
    ck_assert_uint_gt(room, 65536 - 512);
    /* attributes that take it all: a piece still carries FWD_RECORD_PIECE_MIN bytes */
    ck_assert_uint_eq(fwd_record_piece_room(t, 300), FWD_RECORD_PIECE_MIN);
    fwd_record_tmpl_destroy(t);
}
END_TEST

START_TEST(test_forward_eventtime_bytes)
{
    struct fwd_buf b;
    msgpack_packer pk;
    /* 2011-01-02 13:14:15.123456789 UTC, the spec-derived example */
    static const uint8_t want[] = {0x92, 0xd7, 0x00, 0x4d, 0x20, 0x7a,
                                   0x27, 0x07, 0x5b, 0xcd, 0x15};

    fwd_buf_init(&b, 64);
    msgpack_packer_init(&pk, &b, fwd_buf_msgpack_write);
    fwd_forward_pack_entry_start(&pk, 1293974055123456789LL, true);
    ck_assert_uint_eq(b.len, sizeof(want));
    ck_assert_mem_eq(b.data, want, sizeof(want));
    fwd_buf_reset(&b);
    fwd_forward_pack_entry_start(&pk, 1293974055999999999LL, false);
    ck_assert_uint_eq(b.len, 6); /* fixarray, uint32 0xce + 4 bytes */
    ck_assert_int_eq(b.data[1], 0xce);
    fwd_buf_reset(&b);
    /* seconds past 2^31 stay unsigned; nanoseconds 999999999 */
    fwd_forward_pack_entry_start(&pk, 3000000000999999999LL, true);
    ck_assert_mem_eq(b.data + 3, "\xb2\xd0\x5e\x00\x3b\x9a\xc9\xff", 8);
    fwd_buf_release(&b);
}
END_TEST

START_TEST(test_forward_packed_header_and_options)
{
    uint8_t h[64], o[FWD_FORWARD_OPTIONS_MAX];
    size_t n;

    n = fwd_forward_packed_header(h, sizeof(h), "tag", 3, 300);
    ck_assert_uint_eq(n, 1 + 4 + 3); /* fixarray3, fixstr "tag", bin16 hdr */
    ck_assert_mem_eq(h, "\x93\xa3tag\xc5\x01\x2c", 8);
    n = fwd_forward_packed_header(h, sizeof(h), "t", 1, 100000);
    ck_assert_mem_eq(h + 3, "\xc6\x00\x01\x86\xa0", 5); /* bin32 */
    ck_assert_uint_eq(fwd_forward_packed_header(h, 4, "tag", 3, 1), 0);
    n = fwd_forward_packed_options(o, sizeof(o), 5, NULL, false);
    ck_assert_mem_eq(o, "\x81\xa4size\x05", n);
    n = fwd_forward_packed_options(o, sizeof(o), 2, "p8n9gmxTQVC8/nh2wlKKeQ==", true);
    ck_assert_uint_le(n, FWD_FORWARD_OPTIONS_MAX);
    ck_assert_int_eq(o[0], 0x83);
    ck_assert_mem_eq(o + 1,
                     "\xa5"
                     "chunk",
                     6);
}
END_TEST

START_TEST(test_forward_chunk_id_is_base64_of_16_bytes)
{
    char a[FWD_FORWARD_CHUNK_LEN + 1], b[FWD_FORWARD_CHUNK_LEN + 1];

    ck_assert_int_eq(fwd_forward_chunk_id(a), 0);
    ck_assert_int_eq(fwd_forward_chunk_id(b), 0);
    ck_assert_uint_eq(strlen(a), 24);
    ck_assert_str_eq(a + 22, "==");
    ck_assert_uint_eq(strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"),
                      22);
    ck_assert_str_ne(a, b);
}
END_TEST

START_TEST(test_forward_parse_ack)
{
    /* {"ack": "p8n9gmxTQVC8/nh2wlKKeQ=="} as Fluentd and Fluent Bit send it */
    static const uint8_t ok[] = "\x81\xa3"
                                "ack"
                                "\xb8"
                                "p8n9gmxTQVC8/nh2wlKKeQ==";
    /* extra keys with scalar values, bin value, map16 */
    static const uint8_t extra[] = "\xde\x00\x03\xa1x\xc0\xa1y\xcd\x01\x02\xa3"
                                   "ack"
                                   "\xc4\x02id";
    static const uint8_t noack[] = "\x81\xa4"
                                   "nack"
                                   "\xa1x";
    static const uint8_t nested[] = "\x82\xa1x\x90\xa3"
                                    "ack\xa1i";
    static const uint8_t lying[] = "\xdf\xff\xff\xff\xff";
    char id[FWD_FORWARD_ACK_MAX + 1];
    size_t used, idlen;

    ck_assert_int_eq(fwd_forward_parse_ack(ok, sizeof(ok) - 1, &used, id, &idlen), 1);
    ck_assert_uint_eq(used, sizeof(ok) - 1);
    ck_assert_str_eq(id, "p8n9gmxTQVC8/nh2wlKKeQ==");
    ck_assert_uint_eq(idlen, 24);
    for (size_t cut = 0; cut < sizeof(ok) - 1; cut++)
        ck_assert_int_eq(fwd_forward_parse_ack(ok, cut, &used, id, &idlen), 0);
    ck_assert_int_eq(fwd_forward_parse_ack(extra, sizeof(extra) - 1, &used, id, &idlen), 1);
    ck_assert_str_eq(id, "id");
    ck_assert_uint_eq(used, sizeof(extra) - 1);
    ck_assert_int_eq(fwd_forward_parse_ack(noack, sizeof(noack) - 1, &used, id, &idlen), -EPROTO);
    ck_assert_int_eq(fwd_forward_parse_ack(nested, sizeof(nested) - 1, &used, id, &idlen), -EPROTO);
    ck_assert_int_eq(fwd_forward_parse_ack(lying, sizeof(lying) - 1, &used, id, &idlen), -EPROTO);
    ck_assert_int_eq(fwd_forward_parse_ack((const uint8_t *)"\xc0", 1, &used, id, &idlen), -EPROTO);
}
END_TEST

START_TEST(test_forward_gzip_roundtrip)
{
    struct fwd_buf in, gz;
    uint8_t back[20000];
    z_stream z;

    fwd_buf_init(&in, 1 << 20);
    fwd_buf_init(&gz, 1 << 20);
    for (int i = 0; i < 1000; i++)
        ck_assert_int_eq(fwd_buf_append(&in, "log line 0123456789\n", 20), 0);
    ck_assert_int_eq(fwd_forward_gzip(in.data, in.len, Z_DEFAULT_COMPRESSION, &gz), 0);
    ck_assert_uint_lt(gz.len, in.len / 10);
    ck_assert_int_eq(gz.data[0], 0x1f); /* gzip magic */
    ck_assert_int_eq(gz.data[1], 0x8b);
    memset(&z, 0, sizeof(z));
    ck_assert_int_eq(inflateInit2(&z, 15 + 16), Z_OK);
    z.next_in = gz.data;
    z.avail_in = (uInt)gz.len;
    z.next_out = back;
    z.avail_out = sizeof(back);
    ck_assert_int_eq(inflate(&z, Z_FINISH), Z_STREAM_END);
    ck_assert_uint_eq(z.total_out, in.len);
    ck_assert_mem_eq(back, in.data, in.len);
    inflateEnd(&z);
    /* an empty batch is still a valid member */
    ck_assert_int_eq(fwd_forward_gzip(NULL, 0, 1, &gz), 0);
    ck_assert_uint_gt(gz.len, 0);
    fwd_buf_release(&in);
    fwd_buf_release(&gz);
}
END_TEST

#define CLIENT_DIGEST                                                                              \
    "f1d44130686be50938f43b4434d5e7b432b00bfc041472ccc01f26bd970e22b1bfe8427e3a0854d94855843d1be3" \
    "e0d9662a3d66fcfdad018692a579dc1d9aab"
#define SERVER_DIGEST                                                                              \
    "425b6ff87d7d93d13c669b57e690463181336c11cf658c15d2ef7eb19017ddab09c5056d93d171a0729000ee6a59" \
    "b87d2cef44bead8db6c729eecfb68303535b"
#define PASSWORD_DIGEST                                                                            \
    "e5cd89b7c548e5f363851d39004e22337077e52505a6f2d77c68d3f77dedd8fbe5c5f44448d6d955ec7fe5a81626" \
    "4beb63eef4c9f5e3a0ff5aec75c69ad49b05"

START_TEST(test_handshake_helo_bin_and_str)
{
    /* Fluentd: ["HELO", {"nonce": bin, "auth": bin(empty), "keepalive": true}] */
    static const uint8_t fluentd[] = "\x92\xa4HELO\x83\xa5nonce\xc4\x05n\x00nce\xa4"
                                     "auth"
                                     "\xc4\x00\xa9keepalive\xc3";
    /* Fluent Bit: ["HELO", {"nonce": str, "auth": str}], no keepalive */
    static const uint8_t fluentbit[] = "\x92\xa4HELO\x82\xa5nonce\xa5n\x00nce\xa4"
                                       "auth\xa4"
                                       "AUTH";
    struct fwd_helo h;
    size_t used;

    ck_assert_int_eq(fwd_forward_parse_helo(fluentd, sizeof(fluentd) - 1, &used, &h), 1);
    ck_assert_uint_eq(used, sizeof(fluentd) - 1);
    ck_assert_uint_eq(h.nonce_len, 5);
    ck_assert_mem_eq(h.nonce, "n\0nce", 5);
    ck_assert_uint_eq(h.auth_len, 0);
    ck_assert(h.keepalive);
    for (size_t cut = 0; cut < sizeof(fluentd) - 1; cut++)
        ck_assert_int_eq(fwd_forward_parse_helo(fluentd, cut, &used, &h), 0);
    ck_assert_int_eq(fwd_forward_parse_helo(fluentbit, sizeof(fluentbit) - 1, &used, &h), 1);
    ck_assert_uint_eq(h.auth_len, 4);
    ck_assert_int_eq(fwd_forward_parse_helo((const uint8_t *)"\x92\xa4PONG\x80", 7, &used, &h),
                     -EPROTO);
    ck_assert_int_eq(fwd_forward_parse_helo((const uint8_t *)"\x92\xa4HELO\x80", 7, &used, &h),
                     -EPROTO); /* no nonce */
}
END_TEST

START_TEST(test_handshake_ping_digests)
{
    struct fwd_helo h = {.nonce = "n\0nce", .nonce_len = 5};
    uint8_t out[1024];
    size_t n = fwd_forward_ping(out, sizeof(out), &h, "client", "salt", "key", "alice", "pw");
    msgpack_unpacked u;
    size_t off = 0;

    ck_assert_uint_gt(n, 0);
    msgpack_unpacked_init(&u);
    ck_assert_int_eq(msgpack_unpack_next(&u, (const char *)out, n, &off), MSGPACK_UNPACK_SUCCESS);
    ck_assert_uint_eq(u.data.via.array.size, 6);
    for (int i = 0; i < 6; i++) /* Fluent Bit refuses any element that is not a str */
        ck_assert_int_eq(u.data.via.array.ptr[i].type, MSGPACK_OBJECT_STR);
    ck_assert_mem_eq(u.data.via.array.ptr[3].via.str.ptr, CLIENT_DIGEST, 128);
    ck_assert_uint_eq(u.data.via.array.ptr[4].via.str.size, 0); /* no auth salt: no user */
    msgpack_unpacked_destroy(&u);

    memcpy(h.auth, "AUTH", 4);
    h.auth_len = 4;
    n = fwd_forward_ping(out, sizeof(out), &h, "client", "salt", "key", "alice", "pw");
    off = 0;
    msgpack_unpacked_init(&u);
    ck_assert_int_eq(msgpack_unpack_next(&u, (const char *)out, n, &off), MSGPACK_UNPACK_SUCCESS);
    ck_assert_mem_eq(u.data.via.array.ptr[4].via.str.ptr, "alice", 5);
    ck_assert_mem_eq(u.data.via.array.ptr[5].via.str.ptr, PASSWORD_DIGEST, 128);
    msgpack_unpacked_destroy(&u);
}
END_TEST

START_TEST(test_handshake_pong_checks)
{
    struct fwd_helo h = {.nonce = "n\0nce", .nonce_len = 5};
    struct fwd_pong p = {.ok = true, .host = "server", .digest = SERVER_DIGEST};
    uint8_t wire[400];
    size_t used, n;
    char why[256];

    ck_assert_int_eq(fwd_forward_check_pong(&p, &h, "client", "salt", "key", why, sizeof(why)), 0);
    ck_assert_int_eq(fwd_forward_check_pong(&p, &h, "client", "salt", "other", why, sizeof(why)),
                     -EACCES);
    ck_assert_ptr_nonnull(strstr(why, "digest"));
    ck_assert_int_eq(fwd_forward_check_pong(&p, &h, "server", "salt", "key", why, sizeof(why)),
                     -EACCES);
    ck_assert_ptr_nonnull(strstr(why, "our own"));
    p.ok = false;
    snprintf(p.reason, sizeof(p.reason), "shared_key mismatch");
    ck_assert_int_eq(fwd_forward_check_pong(&p, &h, "client", "salt", "key", why, sizeof(why)),
                     -EACCES);
    ck_assert_ptr_nonnull(strstr(why, "shared_key mismatch"));

    /* the wire form, with an oversized reason kept as a prefix */
    n = 0;
    wire[n++] = 0x95;
    memcpy(wire + n, "\xa4PONG\xc3\xd9\x2c", 8);
    n += 8;
    memset(wire + n, 'r', 300 - 256); /* a 44-byte reason */
    n += 44;
    memcpy(wire + n, "\xa6server\xd9\x80", 9);
    n += 9;
    memcpy(wire + n, SERVER_DIGEST, 128);
    n += 128;
    ck_assert_int_eq(fwd_forward_parse_pong(wire, n, &used, &p), 1);
    ck_assert_uint_eq(used, n);
    ck_assert(p.ok);
    ck_assert_str_eq(p.host, "server");
    ck_assert_str_eq(p.digest, SERVER_DIGEST);
    ck_assert_int_eq(fwd_forward_parse_pong(wire, n - 1, &used, &p), 0);
    wire[0] = 0x94;
    ck_assert_int_eq(fwd_forward_parse_pong(wire, n, &used, &p), -EPROTO);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("record");
    TCase *core = tcase_create("core");

    tcase_add_test(core, test_record_base_keys);
    tcase_add_test(core, test_record_attributes_env_wins_and_overrides);
    tcase_add_test(core, test_record_bad_regex_names_option);
    tcase_add_test(core, test_record_partial_keys);
    tcase_add_test(core, test_issue_13_piece_room_keeps_records_within_max);
    tcase_add_test(core, test_forward_eventtime_bytes);
    tcase_add_test(core, test_forward_packed_header_and_options);
    tcase_add_test(core, test_forward_chunk_id_is_base64_of_16_bytes);
    tcase_add_test(core, test_forward_parse_ack);
    tcase_add_test(core, test_forward_gzip_roundtrip);
    tcase_add_test(core, test_handshake_helo_bin_and_str);
    tcase_add_test(core, test_handshake_ping_digests);
    tcase_add_test(core, test_handshake_pong_checks);
    suite_add_tcase(s, core);
    return fwd_test_run(s);
}
