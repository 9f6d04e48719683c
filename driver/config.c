/*
 * config.c - log-opts and plugin-wide defaults -> a validated fwd_config,
 * driven by the option table (config_table.c).
 *
 * A row's type says how a value is parsed (config_value.c holds the Go- and
 * Docker-compatible syntaxes), its range and default are checked and applied
 * here, and what an error says is accepted is written from the row, so the
 * range in a message is the range enforced. Checks across options follow.
 * Plugin-wide defaults are validated at daemon start with the same code, and
 * their errors name the environment variable instead of the log-opt.
 *
 * Files named by *-file options are read with fwd_file_read (O_NONBLOCK,
 * O_NOFOLLOW, regular files only, bounded): StartLogging runs on the loop,
 * and a FIFO or a device must be refused at once, never waited on.
 */
#include "fwd_config.h"
#include "fwd_file.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

/*
 * Keys dockerd itself handles but still passes in Info.Config (moby
 * daemon/logger/loginfo.go, factory.go, loggerutils/cache). max-size,
 * max-file and compress are not generic, but for a plugin they configure
 * Docker's dual-logging cache (moby#45668), so rejecting them would break it.
 */
static const char *const docker_keys[] = {
    "mode", "max-buffer-size", "max-size", "max-file", "compress", NULL,
};

static const struct fwd_config_opt *find_opt(const char *name)
{
    size_t n;
    const struct fwd_config_opt *t = fwd_config_opts(&n);

    for (size_t i = 0; i < n; i++)
        if (strcmp(t[i].name, name) == 0)
            return &t[i];
    return NULL;
}

static bool is_docker_key(const char *name)
{
    if (strncmp(name, "cache-", 6) == 0)
        return true;
    for (int i = 0; docker_keys[i] != NULL; i++)
        if (strcmp(docker_keys[i], name) == 0)
            return true;
    return false;
}

const char *fwd_config_env_name(const char *option)
{
    const struct fwd_config_opt *d = find_opt(option);

    return d == NULL ? NULL : d->env;
}

/* Levenshtein distance, for "did you mean". Names are short. */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), prev[64], cur[64];

    if (la >= 63 || lb >= 63)
        return 99;
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, sizeof(size_t) * (lb + 1));
    }
    return prev[lb];
}

static void unknown_option(const char *key, char *err, size_t errlen)
{
    size_t n, bestd = 4, off;
    const struct fwd_config_opt *t = fwd_config_opts(&n);
    const char *best = NULL;

    for (size_t i = 0; i < n; i++) {
        size_t d = distance(key, t[i].name);
        if (d < bestd) {
            bestd = d;
            best = t[i].name;
        }
    }
    off = (size_t)snprintf(err, errlen, "unknown log-opt '%s'", key);
    if (best != NULL && off < errlen)
        off += (size_t)snprintf(err + off, errlen - off, " (did you mean '%s'?)", best);
    if (off < errlen)
        off += (size_t)snprintf(err + off, errlen - off, "; fwdlog accepts");
    for (size_t i = 0; i < n && off < errlen; i++)
        off += (size_t)snprintf(err + off, errlen - off, "%s %s", i ? "," : "", t[i].name);
    if (off < errlen)
        snprintf(err + off, errlen - off, " and Docker's mode, max-buffer-size, cache-*");
}

/* Where a value came from, for error messages. */
struct origin {
    const struct fwd_config_opt *d;
    bool from_env;
};

static void bad_value(char *err, size_t errlen, struct origin o, const char *v, const char *want)
{
    if (o.from_env)
        snprintf(err, errlen, "invalid %s=\"%s\" (plugin-wide default for log-opt %s): want %s",
                 o.d->env, v, o.d->name, want);
    else
        snprintf(err, errlen, "invalid log-opt %s=\"%s\": want %s", o.d->name, v, want);
}

/* A size as the largest binary unit that divides it (64k, 1t), as go-units reads it. */
static void fmt_size(char *b, size_t n, uint64_t v)
{
    static const char units[] = "ptgmk";
    int i;

    for (i = 0; i < 5; i++)
        if (v != 0 && v % (1ull << (10 * (5 - i))) == 0)
            break;
    if (i == 5)
        snprintf(b, n, "%" PRIu64, v);
    else
        snprintf(b, n, "%" PRIu64 "%c", v >> (10 * (5 - i)), units[i]);
}

/* Milliseconds as Go writes a round duration (100ms, 10s, 10m, 1h). */
static void fmt_ms(char *b, size_t n, uint64_t ms)
{
    if (ms != 0 && ms % 3600000 == 0)
        snprintf(b, n, "%" PRIu64 "h", ms / 3600000);
    else if (ms != 0 && ms % 60000 == 0)
        snprintf(b, n, "%" PRIu64 "m", ms / 60000);
    else if (ms != 0 && ms % 1000 == 0)
        snprintf(b, n, "%" PRIu64 "s", ms / 1000);
    else
        snprintf(b, n, "%" PRIu64 "ms", ms);
}

/* What option d accepts, written from its row: "a size in bytes from 16k to 64m, such as 1m". */
static void describe(const struct fwd_config_opt *d, char *want, size_t n)
{
    static const char *const noun[] = {
        [FWD_CONFIG_UINT] = "a whole number",
        [FWD_CONFIG_SIZE] = "a size in bytes",
        [FWD_CONFIG_DURATION] = "a duration",
    };
    char lo[32], hi[32];
    size_t off = 0;

    switch (d->type) {
        case FWD_CONFIG_UINT:
        case FWD_CONFIG_SIZE:
        case FWD_CONFIG_DURATION:
            if (d->type == FWD_CONFIG_UINT) {
                snprintf(lo, sizeof(lo), "%" PRIu64, d->min);
                snprintf(hi, sizeof(hi), "%" PRIu64, d->max);
            } else {
                void (*fmt)(char *, size_t, uint64_t) =
                    d->type == FWD_CONFIG_SIZE ? fmt_size : fmt_ms;
                fmt(lo, sizeof(lo), d->min);
                fmt(hi, sizeof(hi), d->max);
            }
            snprintf(want, n, "%s%s%s from %s to %s%s%s", d->zero ? d->zero : "",
                     d->zero ? " or " : "", noun[d->type], lo, hi, d->hint ? ", " : "",
                     d->hint ? d->hint : "");
            return;
        case FWD_CONFIG_ENUM:
            for (int i = 0; d->words[i] != NULL && off < n; i++)
                off += (size_t)snprintf(want + off, n - off, "%s%s",
                                        i == 0            ? ""
                                        : d->words[i + 1] ? ", "
                                                          : " or ",
                                        d->words[i]);
            if (d->hint != NULL && off < n)
                snprintf(want + off, n - off, " %s", d->hint);
            return;
        case FWD_CONFIG_STRING:
        case FWD_CONFIG_SECRET:
            snprintf(want, n, "%s%sat most %zu bytes", d->hint ? d->hint : "",
                     d->hint ? " of " : "", d->size - 1);
            return;
        case FWD_CONFIG_BOOL:
            snprintf(want, n, "true or false");
            return;
        default:
            snprintf(want, n, "a valid value");
            return;
    }
}

/* UINT, SIZE, DURATION: parse and check the row's range. */
static int parse_number(const struct fwd_config_opt *d, const char *v, uint64_t *u)
{
    int rc;

    if (d->type == FWD_CONFIG_UINT)
        rc = fwd_config_parse_uint(v, UINT64_MAX, u);
    else if (d->type == FWD_CONFIG_SIZE)
        rc = fwd_config_parse_size(v, u);
    else
        rc = fwd_config_parse_duration_ms(v, u);
    if (rc < 0)
        return rc;
    if (*u == 0 && d->zero != NULL)
        return 0;
    return *u < d->min || *u > d->max ? -EINVAL : 0;
}

/* Store u into an unsigned field of d->size bytes (the table's rows are 4 or 8). */
static void store_uint(void *field, size_t size, uint64_t u)
{
    if (size == sizeof(uint32_t)) {
        uint32_t v = (uint32_t)u;
        memcpy(field, &v, sizeof(v));
    } else {
        memcpy(field, &u, sizeof(u));
    }
}

/*
 * A secret from a file (so it need not appear in `docker inspect`): 1 to
 * size-1 bytes after one trailing newline is dropped. What is wrong goes to
 * want; never the content.
 */
static int read_secret(char *out, size_t size, const char *path, char *want, size_t wantlen)
{
    char *buf = NULL;
    size_t n = 0;
    int rc = fwd_file_read(path, size + 1, &buf, &n); /* room for "\r\n" */

    if (rc == 0) {
        if (n > 0 && buf[n - 1] == '\n')
            n--;
        if (n > 0 && buf[n - 1] == '\r')
            n--;
        if (n == 0 || n >= size)
            rc = -EFBIG;
        else if (memchr(buf, '\0', n) != NULL)
            rc = -EILSEQ;
    }
    if (rc == 0) {
        memcpy(out, buf, n);
        out[n] = '\0';
    } else if (rc == -EINVAL) {
        snprintf(want, wantlen, "a regular file (this is a FIFO, socket, device or directory)");
    } else if (rc == -ELOOP) {
        snprintf(want, wantlen, "a regular file, not a symbolic link (name the file it points to)");
    } else if (rc == -EILSEQ) {
        snprintf(want, wantlen, "a text file (this one holds a NUL byte)");
    } else if (rc == -EFBIG) {
        snprintf(want, wantlen, "a file holding a secret of 1 to %zu bytes", size - 1);
    } else {
        snprintf(want, wantlen, "a readable file (%s)", strerror(-rc));
    }
    if (buf != NULL)
        memset(buf, 0, n);
    free(buf);
    return rc < 0 ? -EINVAL : 0;
}

/*
 * A PEM file OpenSSL loads when the connection starts: readable and regular
 * now, so a FIFO or a device is refused here rather than block that load.
 */
static int check_path(char *out, size_t size, const char *v, char *want, size_t wantlen)
{
    struct stat st;

    if (strlen(v) >= size) {
        snprintf(want, wantlen, "a readable PEM file (path too long)");
        return -EINVAL;
    }
    if (access(v, R_OK) != 0 || stat(v, &st) != 0) {
        snprintf(want, wantlen, "a readable PEM file (%s)", strerror(errno));
        return -EINVAL;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(want, wantlen, "a readable PEM file (this is not a regular file)");
        return -EINVAL;
    }
    strcpy(out, v);
    return 0;
}

/* Parse v for row d into its field of c; want says what is accepted when it fails. */
static int set_value(struct fwd_config *c, const struct fwd_config_opt *d, const char *v,
                     char *want, size_t wantlen)
{
    void *field = (char *)c + d->off;
    uint64_t u;
    bool b;

    switch (d->type) {
        case FWD_CONFIG_BOOL:
            if (fwd_config_parse_bool(v, &b) < 0)
                return -EINVAL;
            *(bool *)field = b;
            return 0;
        case FWD_CONFIG_UINT:
        case FWD_CONFIG_SIZE:
        case FWD_CONFIG_DURATION:
            if (parse_number(d, v, &u) < 0)
                return -EINVAL;
            store_uint(field, d->size, u);
            return 0;
        case FWD_CONFIG_ENUM:
            for (int i = 0; d->words[i] != NULL; i++) {
                if (strcmp(v, d->words[i]) == 0) {
                    memcpy(field, &i, sizeof(i)); /* enums are int-sized (unit-tested) */
                    return 0;
                }
            }
            return -EINVAL;
        case FWD_CONFIG_STRING:
        case FWD_CONFIG_SECRET:
            if (strlen(v) >= d->size)
                return -EINVAL;
            strcpy(field, v);
            return 0;
        case FWD_CONFIG_TEXT:
            *(const char **)field = v[0] == '\0' && d->def != NULL ? d->def : v;
            return 0;
        case FWD_CONFIG_PATH:
            return check_path(field, d->size, v, want, wantlen);
        case FWD_CONFIG_SECRET_FILE:
            return read_secret(field, d->size, v, want, wantlen);
        case FWD_CONFIG_CUSTOM:
            return d->set(field, v, want, wantlen);
    }
    return -EINVAL;
}

static int apply(struct fwd_config *c, const struct fwd_config_opt *d, const char *v, bool from_env,
                 char *err, size_t errlen)
{
    struct origin o = {d, from_env};
    char want[512] = "";

    if (set_value(c, d, v, want, sizeof(want)) == 0)
        return 0;
    if (want[0] == '\0')
        describe(d, want, sizeof(want));
    /* never echo a secret back */
    bad_value(err, errlen, o, d->type == FWD_CONFIG_SECRET ? "..." : v, want);
    return -EINVAL;
}

/* Every row's default, through the row's own parser. */
static int set_defaults(struct fwd_config *c, char *err, size_t errlen)
{
    size_t n;
    const struct fwd_config_opt *t = fwd_config_opts(&n);

    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < n; i++) {
        if (t[i].def != NULL && apply(c, &t[i], t[i].def, false, err, errlen) < 0) {
            size_t off = strlen(err);
            snprintf(err + off, errlen - off, " (internal: the option table's default)");
            return -EINVAL;
        }
    }
    return 0;
}

/* One list of options (a container's log-opts, or the plugin-wide defaults) over c. */
static int apply_list(struct fwd_config *c, const struct fwd_kv *kv, size_t n, bool from_env,
                      char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        const struct fwd_config_opt *d = find_opt(kv[i].key);

        if (d == NULL && from_env) {
            snprintf(err, errlen, "internal: default for unknown option %s", kv[i].key);
            return -EINVAL;
        }
        if (d == NULL) {
            if (is_docker_key(kv[i].key))
                continue;
            unknown_option(kv[i].key, err, errlen);
            return -EINVAL;
        }
        if (apply(c, d, kv[i].value, from_env, err, errlen) < 0)
            return -EINVAL;
    }
    return 0;
}

/* Checks across options, after all are applied. */
static int check_combinations(const struct fwd_config *cfg, char *err, size_t errlen)
{
    if ((cfg->username[0] || cfg->password[0]) && !cfg->shared_key[0]) {
        snprintf(err, errlen,
                 "log-opt fluentd-username / fluentd-password need "
                 "fluentd-shared-key (or fluentd-shared-key-file): the Forward "
                 "handshake authenticates users only with a shared key");
        return -EINVAL;
    }
    if (!cfg->tls_cert_file[0] != !cfg->tls_key_file[0]) {
        snprintf(err, errlen,
                 "log-opt fluentd-tls-cert-file and fluentd-tls-key-file go "
                 "together: a client certificate needs its key");
        return -EINVAL;
    }
    if (cfg->tls_key_password[0] && !cfg->tls_key_file[0]) {
        snprintf(err, errlen,
                 "log-opt fluentd-tls-key-password-file needs fluentd-tls-key-file (and "
                 "fluentd-tls-cert-file): it is the passphrase of that key");
        return -EINVAL;
    }
    if (cfg->buffer_type == FWD_BUFFER_FILE && cfg->spool_limit == 0) {
        snprintf(err, errlen,
                 "log-opt buffer-type=file needs a spool: spool-limit must not be 0 (default "
                 "256m)");
        return -EINVAL;
    }
    return fwd_pipeline_cfg_check(&cfg->pl, err, errlen) != 0 ? -EINVAL : 0;
}

/* printf into the end of cfg->dest_key (truncated at its size, which holds any real key). */
#define key_add(cfg, ...)                                                                          \
    snprintf((cfg)->dest_key + strlen((cfg)->dest_key),                                            \
             sizeof((cfg)->dest_key) - strlen((cfg)->dest_key), __VA_ARGS__)

/*
 * Everything that changes how the connection behaves is part of its identity.
 * What identifies the destination (addresses, TLS paths, limits, whether a
 * shared key is used, the user and hostname: no secret value) is hashed into
 * spool_id, the name of its spool directory, so a rotated key or password
 * finds the spool an earlier key wrote. The secret values come after: equal
 * options with other credentials are another connection (in memory only).
 */
static void make_dest_key(struct fwd_config *cfg)
{
    bool tls = false;
    char h[65];

    cfg->dest_key[0] = '\0';
    for (unsigned i = 0; i < cfg->naddrs; i++) {
        const struct fwd_addr *a = &cfg->addrs[i];

        if (a->scheme == FWD_ADDR_UNIX)
            key_add(cfg, "%sunix://%s", i ? "," : "", a->path);
        else
            key_add(cfg, "%s%s://[%s]:%u", i ? "," : "", a->scheme == FWD_ADDR_TLS ? "tls" : "tcp",
                    a->host, a->port);
        tls |= a->scheme == FWD_ADDR_TLS;
    }
    if (tls)
        key_add(cfg, " ca=%s crt=%s key=%s sn=%s k=%d kp=%d", cfg->tls_ca_file, cfg->tls_cert_file,
                cfg->tls_key_file, cfg->tls_server_name, cfg->tls_insecure,
                cfg->tls_key_password[0] != '\0');
    key_add(cfg,
            " bl=%" PRIu64 " rw=%u/%u mr=%u wt=%u rt=%u ri=%u ack=%d gz=%d bal=%d bt=%d sl=%" PRIu64
            " of=%d",
            cfg->buffer_limit, cfg->retry_wait_ms, cfg->max_retry_wait_ms, cfg->max_retries,
            cfg->write_timeout_ms, cfg->read_timeout_ms, cfg->reconnect_interval_ms,
            cfg->request_ack, cfg->gzip, cfg->balance, cfg->buffer_type, cfg->spool_limit,
            cfg->overflow);
    if (cfg->shared_key[0])
        key_add(cfg, " auth host=%s user=%s", cfg->self_hostname, cfg->username);
    fwd_config_sha256_hex(cfg->spool_id, cfg->dest_key, strlen(cfg->dest_key));
    if (cfg->shared_key[0] || cfg->tls_key_password[0]) {
        /* Terminators separate the values; the hash never leaves memory. */
        char sec[3 * FWD_CONFIG_STR_MAX];
        int n = snprintf(sec, sizeof(sec), "%s%c%s%c%s", cfg->shared_key, '\0', cfg->password, '\0',
                         cfg->tls_key_password);

        fwd_config_sha256_hex(h, sec, (size_t)n);
        explicit_bzero(sec, sizeof(sec));
        key_add(cfg, " secrets=%s", h);
    }
}

int fwd_config_build(struct fwd_config *cfg, const struct fwd_kv *opts, size_t nopts,
                     const struct fwd_kv *defaults, size_t ndefaults, char *err, size_t errlen)
{
    if (set_defaults(cfg, err, errlen) < 0)
        return -EINVAL;
    cfg->opts = opts;
    cfg->nopts = nopts;
    cfg->defaults = defaults;
    cfg->ndefaults = ndefaults;
    if (apply_list(cfg, defaults, ndefaults, true, err, errlen) < 0 ||
        apply_list(cfg, opts, nopts, false, err, errlen) < 0 ||
        check_combinations(cfg, err, errlen) < 0)
        return -EINVAL;
    make_dest_key(cfg);
    return 0;
}

uint64_t fwd_config_hash(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;

    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

void fwd_config_sha256_hex(char out[65], const void *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;

    /* SHA-256 cannot fail short of a broken libcrypto: then a constant, never garbage */
    if (EVP_Digest(p, n, md, &len, EVP_sha256(), NULL) != 1 || len != 32)
        memset(md, 0, len = 32);
    for (unsigned i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
}

const struct fwd_config_opt *fwd_config_find_opt(const char *name)
{
    return find_opt(name);
}

/* The value of variable name in envp, or NULL (unset or empty). */
static const char *env_value(char *const *envp, const char *name)
{
    size_t len = strlen(name);

    for (char *const *e = envp; e != NULL && *e != NULL; e++)
        if (strncmp(*e, name, len) == 0 && (*e)[len] == '=' && (*e)[len + 1] != '\0')
            return *e + len + 1;
    return NULL;
}

int fwd_config_env_defaults(char *const *envp, struct fwd_kv **out, size_t *n)
{
    size_t nopts;
    const struct fwd_config_opt *t = fwd_config_opts(&nopts);
    struct fwd_kv *kv = calloc(nopts, sizeof(*kv));

    *out = NULL;
    *n = 0;
    if (kv == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < nopts; i++) {
        const char *v = t[i].env ? env_value(envp, t[i].env) : NULL;

        if (v == NULL)
            continue;
        kv[*n].key = strdup(t[i].name);
        kv[*n].value = strdup(v);
        (*n)++;
        if (kv[*n - 1].key == NULL || kv[*n - 1].value == NULL) {
            fwd_kv_free(kv, *n);
            *n = 0;
            return -ENOMEM;
        }
    }
    *out = kv;
    return 0;
}
