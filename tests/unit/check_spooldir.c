/*
 * Unit tests for spooldir.c and the spool directory's name (config.c
 * spool_id): options.json never holds a secret value, reads back what replay
 * needs, and an older version's file with secret values is scrubbed; the
 * directory is named by SHA-256 of the destination without its secrets.
 */
#include "fwd_config.h"
#include "fwd_spooldir.h"

#include "unit.h"

#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KV(k, v)                                                                                   \
    {                                                                                              \
        (char *)(k), (char *)(v)                                                                   \
    }
#define N(a) (sizeof(a) / sizeof((a)[0]))

static char err[2048];

/* SHA-256 hex of s, computed here with OpenSSL. */
static void sha256_hex(char out[65], const char *s, size_t n)
{
    unsigned char md[32];
    unsigned int len = 0;

    ck_assert_int_eq(EVP_Digest(s, n, md, &len, EVP_sha256(), NULL), 1);
    ck_assert_uint_eq(len, 32);
    for (unsigned i = 0; i < len; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void build(struct fwd_config *c, struct fwd_kv *opts, size_t n, struct fwd_kv *defs,
                  size_t nd)
{
    int rc = fwd_config_build(c, opts, n, defs, nd, err, sizeof(err));

    ck_assert_msg(rc == 0, "%s", err);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "re");
    char *buf = calloc(1, 65536);
    size_t n;

    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(buf);
    n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "we");

    ck_assert_ptr_nonnull(f);
    ck_assert_int_ge(fputs(text, f), 0);
    fclose(f);
}

/*
 * Issue 13: the spool directory was FNV-1a over a key holding (a hash of) the
 * secrets, so a rotated key named another directory. Now: SHA-256 of the
 * destination's identity up to where the secrets' hash starts, equal for
 * another key or password, other for another user or address.
 */
START_TEST(test_issue_13_spool_id_is_sha256_without_secrets)
{
    struct fwd_config a, b, c, d, plain;
    struct fwd_kv ka[] = {KV("fluentd-address", "127.0.0.1:24224"),
                          KV("fluentd-shared-key", "first-key"), KV("fluentd-username", "u"),
                          KV("fluentd-password", "first-pw")};
    struct fwd_kv kb[] = {KV("fluentd-address", "127.0.0.1:24224"),
                          KV("fluentd-shared-key", "rotated-key"), KV("fluentd-username", "u"),
                          KV("fluentd-password", "rotated-pw")};
    struct fwd_kv kc[] = {KV("fluentd-address", "127.0.0.1:24224"),
                          KV("fluentd-shared-key", "first-key"), KV("fluentd-username", "other")};
    struct fwd_kv kd[] = {KV("fluentd-address", "127.0.0.1:24225"),
                          KV("fluentd-shared-key", "first-key"), KV("fluentd-username", "u")};
    char want[65];
    const char *cut;

    build(&a, ka, N(ka), NULL, 0);
    build(&b, kb, N(kb), NULL, 0);
    build(&c, kc, N(kc), NULL, 0);
    build(&d, kd, N(kd), NULL, 0);
    build(&plain, ka, 1, NULL, 0);
    ck_assert_uint_eq(strlen(a.spool_id), 64);
    ck_assert_uint_eq(strspn(a.spool_id, "0123456789abcdef"), 64);
    cut = strstr(a.dest_key, " secrets=");
    ck_assert_ptr_nonnull(cut);
    sha256_hex(want, a.dest_key, (size_t)(cut - a.dest_key));
    ck_assert_str_eq(a.spool_id, want);
    sha256_hex(want, plain.dest_key, strlen(plain.dest_key)); /* no secret: all of it */
    ck_assert_str_eq(plain.spool_id, want);
    ck_assert_ptr_null(strstr(plain.dest_key, "secrets="));
    /* a rotated key and password: the same directory, another connection */
    ck_assert_str_eq(a.spool_id, b.spool_id);
    ck_assert_str_ne(a.dest_key, b.dest_key);
    ck_assert_str_ne(a.spool_id, c.spool_id);
    ck_assert_str_ne(a.spool_id, d.spool_id);
    ck_assert_str_ne(a.spool_id, plain.spool_id);
    ck_assert_ptr_null(strstr(a.dest_key, "first"));
}
END_TEST

/* What options.json is made of: no secret value, and only the option that won. */
START_TEST(test_issue_13_options_json_holds_no_secret_value)
{
    char dir[] = "/tmp/fwdsd-XXXXXX", key[64];
    struct fwd_config c;
    struct fwd_kv defs[] = {KV("fluentd-address", "127.0.0.1:1"),
                            KV("fluentd-shared-key", "ENV-KEY-VALUE")};
    struct fwd_kv opts[] = {KV("fluentd-username", "alice"),
                            KV("fluentd-password", "INLINE-PW-VALUE"), KV("mode", "non-blocking")};
    struct fwd_kv over[] = {KV("fluentd-shared-key-file", key)};
    struct fwd_kv defs2[] = {KV("fluentd-shared-key-file", key)};
    struct fwd_kv over2[] = {KV("fluentd-shared-key", "INLINE-KEY-VALUE")};
    json_t *o;
    char *text;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(key, sizeof(key), "%s/key", dir);
    write_text(key, "FILE-KEY-VALUE\n");

    build(&c, opts, N(opts), defs, N(defs));
    o = fwd_spooldir_options(&c);
    ck_assert_ptr_nonnull(o);
    text = json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT);
    ck_assert_str_eq(text, "{\"fluentd-address\":\"127.0.0.1:1\","
                           "\"fluentd-password\":{\"inline\":true},"
                           "\"fluentd-shared-key\":{\"env\":\"FLUENTD_SHARED_KEY\"},"
                           "\"fluentd-username\":\"alice\",\"mode\":\"non-blocking\"}");
    free(text);
    json_decref(o);

    /* a -file log-opt over a plugin-wide key: only the path, which is read at replay */
    build(&c, over, N(over), defs, N(defs));
    o = fwd_spooldir_options(&c);
    text = json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT);
    ck_assert_ptr_null(strstr(text, "ENV-KEY"));
    ck_assert_ptr_null(strstr(text, "FILE-KEY"));
    ck_assert_ptr_null(strstr(text, "\"fluentd-shared-key\""));
    ck_assert_ptr_nonnull(strstr(text, "\"fluentd-shared-key-file\":\""));
    free(text);
    json_decref(o);

    /* an inline key over a plugin-wide -file: its -file is not written (it lost) */
    build(&c, over2, N(over2), defs2, N(defs2));
    o = fwd_spooldir_options(&c);
    text = json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT);
    ck_assert_str_eq(text, "{\"fluentd-shared-key\":{\"inline\":true}}");
    free(text);
    json_decref(o);
    unlink(key);
    rmdir(dir);
}
END_TEST

/* Written, then read back as replay needs it: options, and the secrets to find again. */
START_TEST(test_spooldir_options_round_trip)
{
    char dir[] = "/tmp/fwdsd-XXXXXX", path[64];
    struct fwd_config c;
    struct fwd_kv defs[] = {KV("fluentd-shared-key", "ENV-KEY-VALUE")};
    struct fwd_kv opts[] = {KV("fluentd-address", "127.0.0.1:1"),
                            KV("fluentd-password", "INLINE-PW-VALUE"),
                            KV("fluentd-username", "alice")};
    struct fwd_spooldir_opts o;
    json_t *j;
    char *text;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    build(&c, opts, N(opts), defs, N(defs));
    j = fwd_spooldir_options(&c);
    ck_assert_int_eq(fwd_spooldir_write_options(dir, j, NULL), 0);
    json_decref(j);
    snprintf(path, sizeof(path), "%s/options.json", dir);
    text = slurp(path);
    ck_assert_ptr_null(strstr(text, "VALUE"));
    free(text);
    ck_assert_int_eq(fwd_spooldir_read_options(dir, &o), 0);
    ck_assert(!o.scrubbed);
    ck_assert_uint_eq(o.n, 2);
    ck_assert_uint_eq(o.nsecrets, 2);
    for (size_t i = 0; i < o.nsecrets; i++) {
        if (strcmp(o.secrets[i].key, "fluentd-shared-key") == 0)
            ck_assert_str_eq(o.secrets[i].value, "FLUENTD_SHARED_KEY");
        else {
            ck_assert_str_eq(o.secrets[i].key, "fluentd-password");
            ck_assert_ptr_null(o.secrets[i].value); /* inline: not kept */
        }
    }
    fwd_spooldir_opts_free(&o);
    unlink(path);
    rmdir(dir);
}
END_TEST

/*
 * An older version wrote the values (sorted, replayed in that order, so a
 * -file twin won). Reading such a file rewrites it without them: a value
 * with a -file twin is dropped, the others count as inline (not used).
 */
START_TEST(test_issue_13_old_options_json_is_scrubbed)
{
    char dir[] = "/tmp/fwdsd-XXXXXX", path[64];
    struct fwd_spooldir_opts o;
    char *text;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/options.json", dir);
    write_text(path, "{\"fluentd-address\": \"127.0.0.1:1\", \"fluentd-password\": \"OLD-PW\", "
                     "\"fluentd-password-file\": \"/etc/pw\", \"fluentd-shared-key\": "
                     "\"OLD-KEY\", \"fluentd-username\": \"bob\"}");
    ck_assert_int_eq(fwd_spooldir_read_options(dir, &o), 0);
    ck_assert(o.scrubbed);
    ck_assert_uint_eq(o.n, 3); /* address, password-file, username */
    ck_assert_uint_eq(o.nsecrets, 1);
    ck_assert_str_eq(o.secrets[0].key, "fluentd-shared-key");
    ck_assert_ptr_null(o.secrets[0].value);
    fwd_spooldir_opts_free(&o);
    text = slurp(path);
    ck_assert_ptr_null(strstr(text, "OLD-"));
    ck_assert_ptr_nonnull(strstr(text, "\"fluentd-shared-key\": {\"inline\": true}"));
    ck_assert_ptr_null(strstr(text, "\"fluentd-password\""));
    free(text);
    /* read again: nothing left to scrub */
    ck_assert_int_eq(fwd_spooldir_read_options(dir, &o), 0);
    ck_assert(!o.scrubbed);
    ck_assert_uint_eq(o.nsecrets, 1);
    fwd_spooldir_opts_free(&o);
    write_text(path, "[1]");
    ck_assert_int_eq(fwd_spooldir_read_options(dir, &o), -EINVAL);
    fwd_spooldir_opts_free(&o);
    unlink(path);
    rmdir(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("spooldir");
    TCase *core = tcase_create("core");

    tcase_add_test(core, test_issue_13_spool_id_is_sha256_without_secrets);
    tcase_add_test(core, test_issue_13_options_json_holds_no_secret_value);
    tcase_add_test(core, test_spooldir_options_round_trip);
    tcase_add_test(core, test_issue_13_old_options_json_is_scrubbed);
    suite_add_tcase(s, core);
    return fwd_test_run(s);
}
