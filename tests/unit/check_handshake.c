/*
 * The shared-key handshake state machine: HELO with a bin nonce (Fluentd) and a
 * str nonce (Fluent Bit), user auth, bytes fed in pieces, and each refusal. The
 * expected digests are computed here with OpenSSL from the spec's formulas.
 */
#include "fwd_handshake.h"
#include "unit.h"

#include <errno.h>
#include <msgpack.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#define NONCE "0123456789abcdef"
#define KEY   "s3cret"

/* sha512 hex of the concatenation of up to four strings. */
static void sha512_hex(char out[129], const char *a, const char *b, const char *c, const char *d)
{
    unsigned char md[64];
    unsigned int len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    const char *parts[4] = {a, b, c, d};

    ck_assert_ptr_nonnull(ctx);
    ck_assert_int_eq(EVP_DigestInit_ex(ctx, EVP_sha512(), NULL), 1);
    for (int i = 0; i < 4; i++)
        if (parts[i] != NULL)
            ck_assert_int_eq(EVP_DigestUpdate(ctx, parts[i], strlen(parts[i])), 1);
    ck_assert_int_eq(EVP_DigestFinal_ex(ctx, md, &len), 1);
    EVP_MD_CTX_free(ctx);
    for (unsigned i = 0; i < len; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

/* ["HELO", {"nonce": nonce, "auth": auth, "keepalive": true}] with the nonce as bin or str. */
static void helo(msgpack_sbuffer *sb, bool bin_nonce, const char *auth)
{
    msgpack_packer pk;

    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 2);
    pack_str(&pk, "HELO");
    msgpack_pack_map(&pk, 3);
    pack_str(&pk, "nonce");
    if (bin_nonce) {
        msgpack_pack_bin(&pk, strlen(NONCE));
        msgpack_pack_bin_body(&pk, NONCE, strlen(NONCE));
    } else
        pack_str(&pk, NONCE);
    pack_str(&pk, "auth");
    msgpack_pack_bin(&pk, strlen(auth));
    msgpack_pack_bin_body(&pk, auth, strlen(auth));
    pack_str(&pk, "keepalive");
    msgpack_pack_true(&pk);
}

/* ["PONG", ok, reason, host, digest] */
static void pong(msgpack_sbuffer *sb, bool ok, const char *reason, const char *host,
                 const char *digest)
{
    msgpack_packer pk;

    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 5);
    pack_str(&pk, "PONG");
    if (ok)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
    pack_str(&pk, reason);
    pack_str(&pk, host);
    pack_str(&pk, digest);
}

/* The PING's fields, as strings. */
struct ping {
    char f[6][256];
    unsigned n;
};

static void parse_ping(const uint8_t *p, size_t len, struct ping *out)
{
    msgpack_unpacked u;
    size_t off = 0;

    msgpack_unpacked_init(&u);
    ck_assert_int_eq(msgpack_unpack_next(&u, (const char *)p, len, &off), MSGPACK_UNPACK_SUCCESS);
    ck_assert_uint_eq(off, len); /* the PING alone, whole */
    ck_assert_int_eq(u.data.type, MSGPACK_OBJECT_ARRAY);
    out->n = u.data.via.array.size;
    ck_assert_uint_eq(out->n, 6);
    for (unsigned i = 0; i < out->n; i++) {
        const msgpack_object *o = &u.data.via.array.ptr[i];

        ck_assert(o->type == MSGPACK_OBJECT_STR || o->type == MSGPACK_OBJECT_BIN);
        snprintf(out->f[i], sizeof(out->f[i]), "%.*s", (int)o->via.str.size, o->via.str.ptr);
    }
    msgpack_unpacked_destroy(&u);
}

/* Feed a HELO; the PING it answers with. */
static void do_helo(struct fwd_handshake *h, bool bin_nonce, const char *auth, struct ping *ping)
{
    msgpack_sbuffer sb;
    uint8_t out[FWD_HANDSHAKE_PING_MAX];
    size_t used, outlen;
    char err[256];

    helo(&sb, bin_nonce, auth);
    ck_assert_int_eq(
        fwd_handshake_feed(h, (uint8_t *)sb.data, sb.size, &used, out, &outlen, err, sizeof(err)),
        FWD_HANDSHAKE_SEND);
    ck_assert_uint_eq(used, sb.size);
    parse_ping(out, outlen, ping);
    msgpack_sbuffer_destroy(&sb);
}

static int feed_pong(struct fwd_handshake *h, bool ok, const char *reason, const char *host,
                     const char *digest, char *err, size_t errlen)
{
    msgpack_sbuffer sb;
    uint8_t out[FWD_HANDSHAKE_PING_MAX];
    size_t used, outlen;
    int r;

    pong(&sb, ok, reason, host, digest);
    r = fwd_handshake_feed(h, (uint8_t *)sb.data, sb.size, &used, out, &outlen, err, errlen);
    msgpack_sbuffer_destroy(&sb);
    return r;
}

static void check_style(bool bin_nonce)
{
    struct fwd_handshake h;
    struct ping ping;
    char want[129], err[256] = "";

    fwd_handshake_init(&h, KEY, "", "", "client.example");
    do_helo(&h, bin_nonce, "", &ping);
    ck_assert_str_eq(ping.f[0], "PING");
    ck_assert_str_eq(ping.f[1], "client.example");
    ck_assert_uint_eq(strlen(ping.f[2]), 32); /* the salt */
    sha512_hex(want, ping.f[2], "client.example", NONCE, KEY);
    ck_assert_str_eq(ping.f[3], want);
    ck_assert_str_eq(ping.f[4], ""); /* no user auth asked for */
    ck_assert_str_eq(ping.f[5], "");
    sha512_hex(want, ping.f[2], "server.example", NONCE, KEY);
    ck_assert_int_eq(feed_pong(&h, true, "", "server.example", want, err, sizeof(err)),
                     FWD_HANDSHAKE_DONE);
    ck_assert_str_eq(h.peer, "server.example");
}

START_TEST(fluentd_bin_nonce)
{
    check_style(true);
}
END_TEST

START_TEST(fluent_bit_str_nonce)
{
    check_style(false);
}
END_TEST

START_TEST(user_auth)
{
    struct fwd_handshake h;
    struct ping ping;
    char want[129];

    fwd_handshake_init(&h, KEY, "alice", "pw", "client.example");
    do_helo(&h, true, "authsalt", &ping);
    ck_assert_str_eq(ping.f[4], "alice");
    sha512_hex(want, "authsalt", "alice", "pw", NULL);
    ck_assert_str_eq(ping.f[5], want);
}
END_TEST

/* HELO and PONG in one buffer, fed one byte more at a time: MORE until each is whole. */
START_TEST(fed_in_pieces)
{
    struct fwd_handshake h;
    msgpack_sbuffer sb;
    uint8_t out[FWD_HANDSHAKE_PING_MAX];
    size_t used, outlen, n;
    char err[256];
    int r = FWD_HANDSHAKE_MORE;

    fwd_handshake_init(&h, KEY, "", "", "client.example");
    helo(&sb, true, "");
    for (n = 1; n <= sb.size; n++) {
        r = fwd_handshake_feed(&h, (uint8_t *)sb.data, n, &used, out, &outlen, err, sizeof(err));
        if (n < sb.size) {
            ck_assert_int_eq(r, FWD_HANDSHAKE_MORE);
            ck_assert_uint_eq(used, 0);
        }
    }
    ck_assert_int_eq(r, FWD_HANDSHAKE_SEND);
    msgpack_sbuffer_destroy(&sb);
    pong(&sb, true, "", "server.example", "00");
    ck_assert_int_eq(
        fwd_handshake_feed(&h, (uint8_t *)sb.data, sb.size - 1, &used, out, &outlen, err, 256),
        FWD_HANDSHAKE_MORE);
    msgpack_sbuffer_destroy(&sb);
}
END_TEST

START_TEST(refusals)
{
    struct fwd_handshake h;
    struct ping ping;
    char want[129], err[256];
    uint8_t out[FWD_HANDSHAKE_PING_MAX], big[FWD_HANDSHAKE_MSG_MAX + 8];
    size_t used, outlen;
    msgpack_sbuffer sb;

    /* PONG false: the server's reason is in the message */
    fwd_handshake_init(&h, KEY, "", "", "client.example");
    do_helo(&h, true, "", &ping);
    ck_assert_int_eq(feed_pong(&h, false, "shared_key mismatch", "server.example", "", err, 256),
                     -EACCES);
    ck_assert_ptr_nonnull(strstr(err, "shared_key mismatch"));
    /* what a peer says cannot forge log lines: control characters are escaped */
    fwd_handshake_init(&h, KEY, "", "", "client.example");
    do_helo(&h, true, "", &ping);
    ck_assert_int_eq(
        feed_pong(&h, false, "no\n2026-01-01 info forged\x1b[31m\\", "s", "", err, 256), -EACCES);
    ck_assert_ptr_nonnull(strstr(err, "no\\x0a2026-01-01 info forged\\x1b[31m\\\\"));
    for (const char *p = err; *p; p++)
        ck_assert_int_ge((unsigned char)*p, 0x20);
    /* nor the hostname of an accepted PONG */
    fwd_handshake_init(&h, KEY, "", "", "client.example");
    do_helo(&h, true, "", &ping);
    sha512_hex(want, ping.f[2], "evil\rhost", NONCE, KEY);
    ck_assert_int_eq(feed_pong(&h, true, "", "evil\rhost", want, err, 256), FWD_HANDSHAKE_DONE);
    ck_assert_str_eq(h.peer, "evil\\x0dhost");
    /* a digest that is not the one for our key */
    fwd_handshake_init(&h, KEY, "", "", "client.example");
    do_helo(&h, true, "", &ping);
    sha512_hex(want, ping.f[2], "server.example", NONCE, "other key");
    ck_assert_int_eq(feed_pong(&h, true, "", "server.example", want, err, 256), -EACCES);
    /* the server claims our own hostname */
    fwd_handshake_init(&h, KEY, "", "", "client.example");
    do_helo(&h, true, "", &ping);
    sha512_hex(want, ping.f[2], "client.example", NONCE, KEY);
    ck_assert_int_eq(feed_pong(&h, true, "", "client.example", want, err, 256), -EACCES);
    ck_assert_ptr_nonnull(strstr(err, "fluentd-self-hostname"));
    /* no HELO first: a server without a shared key answering with something else */
    fwd_handshake_init(&h, KEY, "", "", "client.example");
    pong(&sb, true, "", "server.example", "00");
    ck_assert_int_eq(
        fwd_handshake_feed(&h, (uint8_t *)sb.data, sb.size, &used, out, &outlen, err, sizeof(err)),
        -EPROTO);
    ck_assert_ptr_nonnull(strstr(err, "expected HELO"));
    /* a HELO where the PONG must come */
    fwd_handshake_init(&h, KEY, "", "", "client.example");
    do_helo(&h, true, "", &ping);
    msgpack_sbuffer_destroy(&sb);
    helo(&sb, true, "");
    ck_assert_int_eq(
        fwd_handshake_feed(&h, (uint8_t *)sb.data, sb.size, &used, out, &outlen, err, sizeof(err)),
        -EPROTO);
    ck_assert_ptr_nonnull(strstr(err, "expected PONG"));
    msgpack_sbuffer_destroy(&sb);
    /* a reply that never ends: a HELO whose map promises a string of 1 MiB */
    fwd_handshake_init(&h, KEY, "", "", "client.example");
    memset(big, 'x', sizeof(big));
    memcpy(big, "\x92\xa4HELO\x81\xa5nonce\xdb\x00\x10\x00\x00", 18);
    ck_assert_int_eq(
        fwd_handshake_feed(&h, big, sizeof(big), &used, out, &outlen, err, sizeof(err)), -EPROTO);
}
END_TEST

/*
 * A HELO that asks for user auth (an auth salt) while fluentd-username is unset:
 * no PING with an empty name that the server can only refuse, but an error
 * that says so and names the options. A close by the server says what it means
 * at each step (Fluent Bit closes after a PING it refuses) and names the options.
 */
START_TEST(test_issue_13_user_auth_asked_without_username)
{
    struct fwd_handshake h;
    struct ping ping;
    msgpack_sbuffer sb;
    uint8_t out[FWD_HANDSHAKE_PING_MAX];
    size_t used, outlen = 99;
    char err[512] = "";

    fwd_handshake_init(&h, KEY, "", "", "client.example");
    helo(&sb, true, "authsalt");
    ck_assert_int_eq(
        fwd_handshake_feed(&h, (uint8_t *)sb.data, sb.size, &used, out, &outlen, err, sizeof(err)),
        -EACCES);
    msgpack_sbuffer_destroy(&sb);
    ck_assert_uint_eq(outlen, 0); /* nothing to send */
    ck_assert_ptr_nonnull(strstr(err, "authentication failed: "));
    ck_assert_ptr_nonnull(strstr(err, "asks for a user name and password"));
    ck_assert_ptr_nonnull(strstr(err, "fluentd-username is not set"));
    ck_assert_ptr_nonnull(strstr(err, "fluentd-password"));

    fwd_handshake_init(&h, KEY, "", "", "client.example");
    ck_assert_ptr_nonnull(strstr(fwd_handshake_closed_why(&h), "before its HELO"));
    do_helo(&h, false, "", &ping);
    ck_assert_ptr_nonnull(strstr(fwd_handshake_closed_why(&h), "after our PING"));
    ck_assert_ptr_nonnull(strstr(fwd_handshake_closed_why(&h), "check fluentd-shared-key"));
    ck_assert_ptr_null(strstr(fwd_handshake_closed_why(&h), "fluentd-username"));
    fwd_handshake_init(&h, KEY, "alice", "pw", "client.example");
    do_helo(&h, false, "authsalt", &ping);
    ck_assert_ptr_nonnull(strstr(fwd_handshake_closed_why(&h), "fluentd-username"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("handshake");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, fluentd_bin_nonce);
    tcase_add_test(tc, fluent_bit_str_nonce);
    tcase_add_test(tc, user_auth);
    tcase_add_test(tc, fed_in_pieces);
    tcase_add_test(tc, refusals);
    tcase_add_test(tc, test_issue_13_user_auth_asked_without_username);
    suite_add_tcase(s, tc);
    return fwd_test_run(s);
}
