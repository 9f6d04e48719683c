/*
 * config.c - option table, value parsers and validation.
 *
 * Value syntax matches what Docker's built-in fluentd driver accepts, so a
 * user migrates by changing --log-driver only: booleans as Go strconv.ParseBool,
 * durations as Go time.ParseDuration, sizes as docker/go-units RAMInBytes
 * (binary multiples: 1k = 1024), addresses as moby's parseAddress.
 * Plugin-wide defaults are validated at daemon start with the same code, and
 * their errors name the environment variable instead of the log-opt.
 */
#include "fwd_config.h"
#include "fwd_limits.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum opt_id {
    O_ADDRESS = 0,
    O_ASYNC,
    O_ASYNC_CONNECT,
    O_RECONNECT_INTERVAL,
    O_BUFFER_LIMIT,
    O_RETRY_WAIT,
    O_MAX_RETRIES,
    O_MAX_RETRY_WAIT,
    O_SUBSECOND,
    O_REQUEST_ACK,
    O_WRITE_TIMEOUT,
    O_READ_TIMEOUT,
    O_COMPRESS,
    O_SHARED_KEY,
    O_SHARED_KEY_FILE,
    O_SELF_HOSTNAME,
    O_USERNAME,
    O_PASSWORD,
    O_PASSWORD_FILE,
    O_TLS_CA_FILE,
    O_TLS_CERT_FILE,
    O_TLS_KEY_FILE,
    O_TLS_SERVER_NAME,
    O_TLS_INSECURE,
    O_TAG,
    O_LABELS,
    O_LABELS_REGEX,
    O_ENV,
    O_ENV_REGEX,
    O_MAX_LINE,
    O_PARTIAL_TIMEOUT,
    O_FLUSH_INTERVAL,
    O_BATCH_SIZE,
    O_BALANCE,
    O_BUFFER_TYPE,
    O_SPOOL_LIMIT,
    O_OVERFLOW,
    O_PARSE,
    O_PARSE_INTO,
    O_PARSE_KEEP_LOG,
    O_PARSE_REGEX,
    O_TIME_KEY,
    O_TIME_FORMAT,
    O_TIME_KEEP,
    O_MULTILINE,
    O_MULTILINE_START,
    O_MULTILINE_MAX_LINES,
    O_MULTILINE_MAX_BYTES,
    O_MULTILINE_FLUSH,
    O_METADATA,
    O_SEQ_KEY,
    O_COUNT,
};

struct opt {
    const char *name;
    const char *env;
};

static const struct opt opts_table[O_COUNT] = {
    [O_ADDRESS] = {"fluentd-address", "FLUENTD_ADDRESS"},
    [O_ASYNC] = {"fluentd-async", "FLUENTD_ASYNC"},
    [O_ASYNC_CONNECT] = {"fluentd-async-connect", "FLUENTD_ASYNC_CONNECT"},
    [O_RECONNECT_INTERVAL] = {"fluentd-async-reconnect-interval",
                              "FLUENTD_ASYNC_RECONNECT_INTERVAL"},
    [O_BUFFER_LIMIT] = {"fluentd-buffer-limit", "FLUENTD_BUFFER_LIMIT"},
    [O_RETRY_WAIT] = {"fluentd-retry-wait", "FLUENTD_RETRY_WAIT"},
    [O_MAX_RETRIES] = {"fluentd-max-retries", "FLUENTD_MAX_RETRIES"},
    [O_MAX_RETRY_WAIT] = {"max-retry-wait", "FWDLOG_MAX_RETRY_WAIT"},
    [O_SUBSECOND] = {"fluentd-sub-second-precision", "FLUENTD_SUB_SECOND_PRECISION"},
    [O_REQUEST_ACK] = {"fluentd-request-ack", "FLUENTD_REQUEST_ACK"},
    [O_WRITE_TIMEOUT] = {"fluentd-write-timeout", "FLUENTD_WRITE_TIMEOUT"},
    [O_READ_TIMEOUT] = {"fluentd-read-timeout", "FLUENTD_READ_TIMEOUT"},
    [O_COMPRESS] = {"fluentd-compress", "FLUENTD_COMPRESS"},
    [O_SHARED_KEY] = {"fluentd-shared-key", "FLUENTD_SHARED_KEY"},
    [O_SHARED_KEY_FILE] = {"fluentd-shared-key-file", "FLUENTD_SHARED_KEY_FILE"},
    [O_SELF_HOSTNAME] = {"fluentd-self-hostname", "FLUENTD_SELF_HOSTNAME"},
    [O_USERNAME] = {"fluentd-username", "FLUENTD_USERNAME"},
    [O_PASSWORD] = {"fluentd-password", "FLUENTD_PASSWORD"},
    [O_PASSWORD_FILE] = {"fluentd-password-file", "FLUENTD_PASSWORD_FILE"},
    [O_TLS_CA_FILE] = {"fluentd-tls-ca-file", "FLUENTD_TLS_CA_FILE"},
    [O_TLS_CERT_FILE] = {"fluentd-tls-cert-file", "FLUENTD_TLS_CERT_FILE"},
    [O_TLS_KEY_FILE] = {"fluentd-tls-key-file", "FLUENTD_TLS_KEY_FILE"},
    [O_TLS_SERVER_NAME] = {"fluentd-tls-server-name", "FLUENTD_TLS_SERVER_NAME"},
    [O_TLS_INSECURE] = {"fluentd-tls-insecure-skip-verify", "FLUENTD_TLS_INSECURE_SKIP_VERIFY"},
    [O_TAG] = {"tag", "FWDLOG_TAG"},
    [O_LABELS] = {"labels", "FWDLOG_LABELS"},
    [O_LABELS_REGEX] = {"labels-regex", "FWDLOG_LABELS_REGEX"},
    [O_ENV] = {"env", "FWDLOG_ENV"},
    [O_ENV_REGEX] = {"env-regex", "FWDLOG_ENV_REGEX"},
    [O_MAX_LINE] = {"max-line-size", "FWDLOG_MAX_LINE_SIZE"},
    [O_PARTIAL_TIMEOUT] = {"partial-timeout", "FWDLOG_PARTIAL_TIMEOUT"},
    [O_FLUSH_INTERVAL] = {"flush-interval", "FWDLOG_FLUSH_INTERVAL"},
    [O_BATCH_SIZE] = {"batch-size", "FWDLOG_BATCH_SIZE"},
    [O_BALANCE] = {"balance", "FWDLOG_BALANCE"},
    [O_BUFFER_TYPE] = {"buffer-type", "FWDLOG_BUFFER_TYPE"},
    [O_SPOOL_LIMIT] = {"spool-limit", "FWDLOG_SPOOL_LIMIT"},
    [O_OVERFLOW] = {"overflow-policy", "FWDLOG_OVERFLOW_POLICY"},
    [O_PARSE] = {"parse", "FWDLOG_PARSE"},
    [O_PARSE_INTO] = {"parse-into", "FWDLOG_PARSE_INTO"},
    [O_PARSE_KEEP_LOG] = {"parse-keep-log", "FWDLOG_PARSE_KEEP_LOG"},
    [O_PARSE_REGEX] = {"parse-regex", "FWDLOG_PARSE_REGEX"},
    [O_TIME_KEY] = {"time-key", "FWDLOG_TIME_KEY"},
    [O_TIME_FORMAT] = {"time-format", "FWDLOG_TIME_FORMAT"},
    [O_TIME_KEEP] = {"time-keep", "FWDLOG_TIME_KEEP"},
    [O_MULTILINE] = {"multiline", "FWDLOG_MULTILINE"},
    [O_MULTILINE_START] = {"multiline-start", "FWDLOG_MULTILINE_START"},
    [O_MULTILINE_MAX_LINES] = {"multiline-max-lines", "FWDLOG_MULTILINE_MAX_LINES"},
    [O_MULTILINE_MAX_BYTES] = {"multiline-max-bytes", "FWDLOG_MULTILINE_MAX_BYTES"},
    [O_MULTILINE_FLUSH] = {"multiline-flush", "FWDLOG_MULTILINE_FLUSH"},
    [O_METADATA] = {"metadata", "FWDLOG_METADATA"},
    [O_SEQ_KEY] = {"seq-key", "FWDLOG_SEQ_KEY"},
};

/*
 * Keys dockerd itself handles but still passes in Info.Config (moby
 * daemon/logger/loginfo.go, factory.go, loggerutils/cache). max-size,
 * max-file and compress are not generic, but for a plugin they configure
 * Docker's dual-logging cache (moby#45668), so rejecting them would break it.
 */
static const char *const docker_keys[] = {
    "mode", "max-buffer-size", "max-size", "max-file", "compress", NULL,
};

static int find_opt(const char *name)
{
    for (int i = 0; i < O_COUNT; i++)
        if (strcmp(opts_table[i].name, name) == 0)
            return i;
    return -1;
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
    int i = find_opt(option);

    return i < 0 ? NULL : opts_table[i].env;
}

int fwd_config_parse_bool(const char *s, bool *b)
{
    static const char *const t[] = {"1", "t", "T", "TRUE", "true", "True", NULL};
    static const char *const f[] = {"0", "f", "F", "FALSE", "false", "False", NULL};

    for (int i = 0; t[i] != NULL; i++) {
        if (strcmp(s, t[i]) == 0) {
            *b = true;
            return 0;
        }
        if (strcmp(s, f[i]) == 0) {
            *b = false;
            return 0;
        }
    }
    return -EINVAL;
}

/* Go time.ParseDuration for non-negative values; rounds sub-millisecond up. */
int fwd_config_parse_duration_ms(const char *s, uint64_t *ms)
{
    static const struct {
        const char *u;
        uint64_t ns;
    } units[] = {
        {"ns", 1},           {"us", 1000},         {"\xc2\xb5s", 1000}, /* U+00B5 micro sign */
        {"\xce\xbcs", 1000},                                            /* U+03BC greek mu */
        {"ms", 1000000},     {"s", 1000000000ull}, {"m", 60000000000ull}, {"h", 3600000000000ull},
    };
    const char *p = s;
    double total = 0;

    if (*p == '+')
        p++;
    if (strcmp(p, "0") == 0) {
        *ms = 0;
        return 0;
    }
    if (*p == '\0')
        return -EINVAL;
    while (*p != '\0') {
        double v = 0, frac = 0.1;
        bool digits = false;
        size_t best = 0;
        uint64_t mult = 0;

        while (isdigit((unsigned char)*p)) {
            v = v * 10 + (*p++ - '0');
            digits = true;
        }
        if (*p == '.') {
            p++;
            while (isdigit((unsigned char)*p)) {
                v += (*p++ - '0') * frac;
                frac /= 10;
                digits = true;
            }
        }
        if (!digits)
            return -EINVAL;
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
            size_t n = strlen(units[i].u);
            if (n > best && strncmp(p, units[i].u, n) == 0) {
                best = n;
                mult = units[i].ns;
            }
        }
        if (best == 0)
            return -EINVAL; /* Go requires a unit on every number except a lone 0 */
        p += best;
        total += v * (double)mult;
        if (total > 9.2e18)
            return -EINVAL;
    }
    *ms = (uint64_t)((total + 999999.0) / 1000000.0);
    return 0;
}

/* docker/go-units RAMInBytes: ^(\d+(\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$, base 1024. */
int fwd_config_parse_size(const char *s, uint64_t *bytes)
{
    const char *p = s;
    double v = 0, frac = 0.1;
    uint64_t mult = 1;
    bool digits = false;

    while (isdigit((unsigned char)*p)) {
        v = v * 10 + (*p++ - '0');
        digits = true;
    }
    if (!digits)
        return -EINVAL;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return -EINVAL;
        while (isdigit((unsigned char)*p)) {
            v += (*p++ - '0') * frac;
            frac /= 10;
        }
    }
    if (*p == ' ')
        p++;
    switch (tolower((unsigned char)*p)) {
        case 'k':
            mult = 1ull << 10;
            p++;
            break;
        case 'm':
            mult = 1ull << 20;
            p++;
            break;
        case 'g':
            mult = 1ull << 30;
            p++;
            break;
        case 't':
            mult = 1ull << 40;
            p++;
            break;
        case 'p':
            mult = 1ull << 50;
            p++;
            break;
        default:
            break;
    }
    if (*p == 'i' || *p == 'I')
        p++;
    if (*p == 'b' || *p == 'B')
        p++;
    if (*p != '\0' || v * (double)mult > 1.8e19)
        return -EINVAL;
    *bytes = (uint64_t)(v * (double)mult);
    return 0;
}

static int parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (!isdigit((unsigned char)s[0]))
        return -EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

/* moby daemon/logger/fluentd/fluentd.go parseAddress, with "localhost" for an empty host. */
int fwd_config_parse_addr(const char *s, struct fwd_addr *out, char *err, size_t errlen)
{
    const char *rest = s, *sep = strstr(s, "://");
    const char *host, *hend, *port = NULL;
    size_t hlen;

    memset(out, 0, sizeof(*out));
    out->scheme = FWD_ADDR_TCP;
    out->port = FWD_DEFAULT_PORT;
    if (strchr(s, ',') != NULL) {
        snprintf(err, errlen, "one address, without commas");
        return -EINVAL;
    }
    if (sep != NULL) {
        size_t n = (size_t)(sep - s);

        if (n == 3 && strncmp(s, "tcp", 3) == 0)
            out->scheme = FWD_ADDR_TCP;
        else if (n == 3 && strncmp(s, "tls", 3) == 0)
            out->scheme = FWD_ADDR_TLS;
        else if (n == 4 && strncmp(s, "unix", 4) == 0)
            out->scheme = FWD_ADDR_UNIX;
        else {
            snprintf(err, errlen, "unsupported scheme '%.*s' (want tcp://, tls:// or unix://)",
                     (int)n, s);
            return -EINVAL;
        }
        rest = sep + 3;
    }
    if (out->scheme == FWD_ADDR_UNIX) {
        if (rest[0] != '/' || rest[strspn(rest, "/")] == '\0') {
            snprintf(err, errlen,
                     "unix:// needs an absolute socket path, as in unix:///var/run/fluent.sock");
            return -EINVAL;
        }
        if (strlen(rest) >= sizeof(out->path)) {
            snprintf(err, errlen, "unix socket path longer than %zu bytes", sizeof(out->path) - 1);
            return -EINVAL;
        }
        strcpy(out->path, rest);
        return 0;
    }
    if (strchr(rest, '/') != NULL || strchr(rest, '?') != NULL || strchr(rest, '#') != NULL) {
        snprintf(err, errlen, "should not contain a path element (want host:port)");
        return -EINVAL;
    }
    host = rest;
    if (host[0] == '[') {
        hend = strchr(host, ']');
        if (hend == NULL) {
            snprintf(err, errlen, "missing ']' in IPv6 address");
            return -EINVAL;
        }
        host++;
        if (hend[1] == ':')
            port = hend + 2;
        else if (hend[1] != '\0') {
            snprintf(err, errlen, "unexpected text after ']'");
            return -EINVAL;
        }
    } else {
        const char *colon = strrchr(host, ':');

        hend = colon ? colon : host + strlen(host);
        if (colon != NULL) {
            if (memchr(host, ':', (size_t)(colon - host)) != NULL) {
                snprintf(err, errlen, "IPv6 addresses need brackets, as in [::1]:24224");
                return -EINVAL;
            }
            port = colon + 1;
        }
    }
    hlen = (size_t)(hend - host);
    if (hlen >= sizeof(out->host)) {
        snprintf(err, errlen, "host name too long");
        return -EINVAL;
    }
    if (hlen == 0)
        strcpy(out->host, "localhost");
    else {
        memcpy(out->host, host, hlen);
        out->host[hlen] = '\0';
    }
    if (port != NULL && *port != '\0') {
        uint64_t v;

        if (parse_uint(port, 65535, &v) < 0) {
            snprintf(err, errlen, "invalid port '%s' (want 0-65535)", port);
            return -EINVAL;
        }
        out->port = (uint16_t)v;
    }
    return 0;
}

static bool same_addr(const struct fwd_addr *a, const struct fwd_addr *b)
{
    return a->scheme == b->scheme && a->port == b->port && strcmp(a->host, b->host) == 0 &&
           strcmp(a->path, b->path) == 0;
}

/*
 * A comma-separated list of addresses (spaces around them ignored), at most
 * FWD_MAX_ADDRS, none twice.
 */
int fwd_config_parse_addr_list(const char *s, struct fwd_addr *out, unsigned *n, char *err,
                               size_t errlen)
{
    const char *p = s;

    *n = 0;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char one[400], aerr[200];

        while (len > 0 && *p == ' ') {
            p++;
            len--;
        }
        while (len > 0 && p[len - 1] == ' ')
            len--;
        if (len == 0 || len >= sizeof(one)) {
            snprintf(err, errlen,
                     len ? "address too long"
                         : "an empty address in the list (want "
                           "host:port[,host:port...])");
            return -EINVAL;
        }
        if (*n == FWD_MAX_ADDRS) {
            snprintf(err, errlen, "at most %d addresses", FWD_MAX_ADDRS);
            return -EINVAL;
        }
        memcpy(one, p, len);
        one[len] = '\0';
        if (fwd_config_parse_addr(one, &out[*n], aerr, sizeof(aerr)) < 0) {
            snprintf(err, errlen, "'%s': %s", one, aerr);
            return -EINVAL;
        }
        for (unsigned i = 0; i < *n; i++) {
            if (same_addr(&out[i], &out[*n])) {
                snprintf(err, errlen, "'%s' is listed twice", one);
                return -EINVAL;
            }
        }
        (*n)++;
        if (end == NULL)
            return 0;
        p = end + 1;
    }
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
    const char *best = NULL;
    size_t bestd = 4, off;

    for (int i = 0; i < O_COUNT; i++) {
        size_t d = distance(key, opts_table[i].name);
        if (d < bestd) {
            bestd = d;
            best = opts_table[i].name;
        }
    }
    off = (size_t)snprintf(err, errlen, "unknown log-opt '%s'", key);
    if (best != NULL && off < errlen)
        off += (size_t)snprintf(err + off, errlen - off, " (did you mean '%s'?)", best);
    if (off < errlen)
        off += (size_t)snprintf(err + off, errlen - off, "; fwdlog accepts");
    for (int i = 0; i < O_COUNT && off < errlen; i++)
        off += (size_t)snprintf(err + off, errlen - off, "%s %s", i ? "," : "", opts_table[i].name);
    if (off < errlen)
        snprintf(err + off, errlen - off, " and Docker's mode, max-buffer-size, cache-*");
}

/* Where a value came from, for error messages. */
struct origin {
    const char *opt;
    bool from_env;
};

static void bad_value(char *err, size_t errlen, struct origin o, const char *v, const char *want)
{
    if (o.from_env)
        snprintf(err, errlen, "invalid %s=\"%s\" (plugin-wide default for log-opt %s): want %s",
                 fwd_config_env_name(o.opt), v, o.opt, want);
    else
        snprintf(err, errlen, "invalid log-opt %s=\"%s\": want %s", o.opt, v, want);
}

static int duration_in(const char *v, uint64_t min, uint64_t max, uint32_t *out, bool zero_ok)
{
    uint64_t ms;

    if (fwd_config_parse_duration_ms(v, &ms) < 0)
        return -EINVAL;
    if (!(zero_ok && ms == 0) && (ms < min || ms > max))
        return -EINVAL;
    *out = (uint32_t)ms;
    return 0;
}

static int size_in(const char *v, uint64_t min, uint64_t max, uint64_t *out)
{
    if (fwd_config_parse_size(v, out) < 0 || *out < min || *out > max)
        return -EINVAL;
    return 0;
}

/* Options that take one of a few words; a word's index is its enum value. */
static const struct {
    int id;
    const char *words[4];
    const char *want;
} enum_opts[] = {
    {O_BALANCE, {"failover", "round-robin"}, "failover or round-robin"},
    {O_BUFFER_TYPE, {"memory", "file"}, "memory or file"},
    {O_OVERFLOW, {"drop-oldest", "drop-newest", "block"}, "drop-oldest, drop-newest or block"},
};

/* v's index among option id's words, or -1 with *want saying what is accepted. */
static int parse_enum(int id, const char *v, const char **want)
{
    for (size_t i = 0; i < sizeof(enum_opts) / sizeof(enum_opts[0]); i++) {
        if (enum_opts[i].id != id)
            continue;
        for (int w = 0; w < 4 && enum_opts[i].words[w] != NULL; w++)
            if (strcmp(v, enum_opts[i].words[w]) == 0)
                return w;
        *want = enum_opts[i].want;
    }
    return -1;
}

/* The fixed-size string field of c that option id sets. */
static char *str_field(struct fwd_config *c, int id)
{
    switch (id) {
        case O_SHARED_KEY:
            return c->shared_key;
        case O_SELF_HOSTNAME:
            return c->self_hostname;
        case O_USERNAME:
            return c->username;
        case O_PASSWORD:
            return c->password;
        case O_TLS_CA_FILE:
            return c->tls_ca_file;
        case O_TLS_CERT_FILE:
            return c->tls_cert_file;
        case O_TLS_KEY_FILE:
            return c->tls_key_file;
        default:
            return c->tls_server_name;
    }
}

/* Copy v into a FWD_CONFIG_STR_MAX field; too long is an error showing `shown` (not a secret). */
static int set_str(char *dst, const char *v, const char *shown, const char *want, struct origin o,
                   char *err, size_t errlen)
{
    if (strlen(v) >= FWD_CONFIG_STR_MAX) {
        bad_value(err, errlen, o, shown, want);
        return -EINVAL;
    }
    strcpy(dst, v);
    return 0;
}

/*
 * A secret from a file (so it need not appear in `docker inspect`): at most 255 bytes,
 * one trailing newline removed. Errors name the option and the path, never the content.
 */
static int read_secret(char out[FWD_CONFIG_STR_MAX], const char *path, struct origin o, char *err,
                       size_t errlen)
{
    FILE *f = fopen(path, "re");
    size_t n;
    int extra;

    if (f == NULL) {
        char why[160];
        snprintf(why, sizeof(why), "a readable file (%s)", strerror(errno));
        bad_value(err, errlen, o, path, why);
        return -EINVAL;
    }
    n = fread(out, 1, FWD_CONFIG_STR_MAX - 1, f);
    extra = fgetc(f);
    fclose(f);
    out[n] = '\0';
    if (n > 0 && out[n - 1] == '\n')
        out[--n] = '\0';
    if (n > 0 && out[n - 1] == '\r')
        out[--n] = '\0';
    if (extra != EOF || n == 0) {
        memset(out, 0, FWD_CONFIG_STR_MAX);
        bad_value(err, errlen, o, path, "a file holding a secret of 1 to 255 bytes");
        return -EINVAL;
    }
    return 0;
}

static int apply(struct fwd_config *c, int id, const char *v, struct origin o, char *err,
                 size_t errlen)
{
    char aerr[160];
    uint64_t u;
    uint32_t ms;

    switch (id) {
        case O_ADDRESS:
            if (fwd_config_parse_addr_list(v, c->addrs, &c->naddrs, aerr, sizeof(aerr)) < 0) {
                bad_value(err, errlen, o, v, aerr);
                return -EINVAL;
            }
            return 0;
        case O_BALANCE:
        case O_BUFFER_TYPE:
        case O_OVERFLOW: {
            const char *want = "";
            int i = parse_enum(id, v, &want);

            if (i < 0) {
                bad_value(err, errlen, o, v, want);
                return -EINVAL;
            }
            if (id == O_BALANCE)
                c->balance = (enum fwd_balance)i;
            else if (id == O_BUFFER_TYPE)
                c->buffer_type = (enum fwd_buffer_type)i;
            else
                c->overflow = (enum fwd_overflow)i;
            return 0;
        }
        case O_SPOOL_LIMIT:
            if (strcmp(v, "0") != 0 &&
                size_in(v, FWD_MIN_SPOOL_LIMIT, FWD_MAX_SPOOL_LIMIT, &u) < 0) {
                bad_value(err, errlen, o, v,
                          "0 (no spool) or a size in bytes from 16m to 1t, such as 1g");
                return -EINVAL;
            }
            c->spool_limit = strcmp(v, "0") == 0 ? 0 : u;
            return 0;
        case O_ASYNC:
        case O_ASYNC_CONNECT:
        case O_SUBSECOND:
        case O_TLS_INSECURE:
        case O_REQUEST_ACK: {
            bool b;
            if (fwd_config_parse_bool(v, &b) < 0) {
                bad_value(err, errlen, o, v, "true or false");
                return -EINVAL;
            }
            if (id == O_SUBSECOND)
                c->subsecond = b;
            else if (id == O_REQUEST_ACK)
                c->request_ack = b;
            else if (id == O_TLS_INSECURE)
                c->tls_insecure = b;
            else
                c->async = b;
            return 0;
        }
        case O_RECONNECT_INTERVAL:
            if (duration_in(v, 100, 10000, &ms, true) < 0) {
                bad_value(err, errlen, o, v, "0 or a duration from 100ms to 10s");
                return -EINVAL;
            }
            c->reconnect_interval_ms = ms;
            return 0;
        case O_BUFFER_LIMIT:
            if (size_in(v, FWD_MIN_BUFFER_LIMIT, FWD_MAX_BUFFER_LIMIT, &u) < 0) {
                bad_value(err, errlen, o, v,
                          "a size in bytes from 64k to 64g, such as 8m (fwdlog counts bytes, "
                          "not messages)");
                return -EINVAL;
            }
            c->buffer_limit = u;
            return 0;
        case O_RETRY_WAIT:
            if (duration_in(v, 1, FWD_MAX_RETRY_WAIT, &ms, false) < 0) {
                bad_value(err, errlen, o, v, "a duration from 1ms to 10m, such as 1s");
                return -EINVAL;
            }
            c->retry_wait_ms = ms;
            return 0;
        case O_MAX_RETRY_WAIT:
            if (duration_in(v, 100, FWD_MAX_RETRY_WAIT, &ms, false) < 0) {
                bad_value(err, errlen, o, v, "a duration from 100ms to 10m, such as 5s");
                return -EINVAL;
            }
            c->max_retry_wait_ms = ms;
            return 0;
        case O_MAX_RETRIES:
            if (parse_uint(v, 2147483647u, &u) < 0) {
                bad_value(err, errlen, o, v, "a whole number from 0 to 2147483647");
                return -EINVAL;
            }
            c->max_retries = (uint32_t)u;
            return 0;
        case O_WRITE_TIMEOUT:
        case O_READ_TIMEOUT:
            if (duration_in(v, 1, 3600000, &ms, true) < 0) {
                bad_value(err, errlen, o, v, "0 (none) or a duration up to 1h, such as 10s");
                return -EINVAL;
            }
            if (id == O_WRITE_TIMEOUT)
                c->write_timeout_ms = ms;
            else
                c->read_timeout_ms = ms;
            return 0;
        case O_COMPRESS:
            /* "text" is what Fluentd's out_forward calls no compression. */
            if (strcmp(v, "gzip") == 0 || strcmp(v, "none") == 0 || strcmp(v, "text") == 0 ||
                v[0] == '\0') {
                c->gzip = strcmp(v, "gzip") == 0;
                return 0;
            }
            bad_value(err, errlen, o, v, "gzip or none");
            return -EINVAL;
        case O_SHARED_KEY:
        case O_SELF_HOSTNAME:
        case O_USERNAME:
        case O_PASSWORD:
            /* never echo a secret back */
            return set_str(str_field(c, id), v,
                           id == O_SELF_HOSTNAME || id == O_USERNAME ? v : "...",
                           "at most 255 bytes", o, err, errlen);
        case O_TLS_SERVER_NAME:
            return set_str(str_field(c, id), v, v, "a host name of at most 255 bytes", o, err,
                           errlen);
        case O_TLS_CA_FILE:
        case O_TLS_CERT_FILE:
        case O_TLS_KEY_FILE:
            if (strlen(v) < FWD_CONFIG_STR_MAX && access(v, R_OK) != 0) {
                char why[160];
                snprintf(why, sizeof(why), "a readable PEM file (%s)", strerror(errno));
                bad_value(err, errlen, o, v, why);
                return -EINVAL;
            }
            return set_str(str_field(c, id), v, v, "a readable PEM file (path too long)", o, err,
                           errlen);
        case O_SHARED_KEY_FILE:
        case O_PASSWORD_FILE:
            return read_secret(id == O_SHARED_KEY_FILE ? c->shared_key : c->password, v, o, err,
                               errlen);
        case O_TAG:
            c->tag = v[0] ? v : FWD_DEFAULT_TAG; /* Docker: an empty tag means the default */
            return 0;
        case O_LABELS:
            c->labels = v;
            return 0;
        case O_LABELS_REGEX:
            c->labels_regex = v;
            return 0;
        case O_ENV:
            c->env = v;
            return 0;
        case O_ENV_REGEX:
            c->env_regex = v;
            return 0;
        case O_MAX_LINE:
            if (size_in(v, FWD_MIN_MAX_LINE, FWD_MAX_MAX_LINE, &u) < 0) {
                bad_value(err, errlen, o, v, "a size from 16k to 64m, such as 1m");
                return -EINVAL;
            }
            c->max_line = (size_t)u;
            return 0;
        case O_PARTIAL_TIMEOUT:
            if (duration_in(v, 1, 3600000, &ms, false) < 0) {
                bad_value(err, errlen, o, v, "a duration from 1ms to 1h, such as 1s");
                return -EINVAL;
            }
            c->partial_timeout_ms = ms;
            return 0;
        case O_FLUSH_INTERVAL:
            if (duration_in(v, 1, FWD_MAX_FLUSH_MS, &ms, false) < 0) {
                bad_value(err, errlen, o, v, "a duration from 1ms to 10s, such as 100ms");
                return -EINVAL;
            }
            c->flush_interval_ms = ms;
            return 0;
        case O_BATCH_SIZE:
            if (size_in(v, FWD_MIN_BATCH_SIZE, FWD_MAX_BATCH_SIZE, &u) < 0) {
                bad_value(err, errlen, o, v, "a size from 4k to 4m, such as 512k");
                return -EINVAL;
            }
            c->batch_size = (size_t)u;
            return 0;
        default:
            break;
    }
    if (id >= O_PARSE && id < O_COUNT) {
        char want[200];
        int rc = fwd_pipeline_cfg_apply(&c->pl, opts_table[id].name, v, want, sizeof(want));

        if (rc < 0)
            bad_value(err, errlen, o, v, want);
        if (rc <= 0)
            return rc;
    }
    return -EINVAL;
}

static void set_defaults(struct fwd_config *c)
{
    char err[8];

    memset(c, 0, sizeof(*c));
    if (fwd_config_parse_addr_list(FWD_DEFAULT_ADDRESS, c->addrs, &c->naddrs, err, sizeof(err)) < 0)
        c->naddrs = 0; /* not reached: the default parses */
    c->spool_limit = FWD_DEFAULT_SPOOL_LIMIT;
    c->subsecond = true;
    c->buffer_limit = FWD_DEFAULT_BUFFER_LIMIT;
    c->retry_wait_ms = FWD_DEFAULT_RETRY_WAIT_MS;
    c->max_retry_wait_ms = FWD_BACKOFF_CAP_MS;
    c->max_retries = FWD_DEFAULT_MAX_RETRIES;
    c->write_timeout_ms = FWD_DEFAULT_WRITE_TIMEOUT_MS;
    c->partial_timeout_ms = FWD_DEFAULT_PARTIAL_TIMEOUT;
    c->flush_interval_ms = FWD_DEFAULT_FLUSH_INTERVAL;
    c->max_line = FWD_DEFAULT_MAX_LINE;
    c->batch_size = FWD_DEFAULT_BATCH_SIZE;
    c->tag = FWD_DEFAULT_TAG;
    c->labels = c->labels_regex = c->env = c->env_regex = "";
    fwd_pipeline_cfg_init(&c->pl);
}

int fwd_config_build(struct fwd_config *cfg, const struct fwd_kv *opts, size_t nopts,
                     const struct fwd_kv *defaults, size_t ndefaults, char *err, size_t errlen)
{
    size_t off;
    bool tls = false;

    set_defaults(cfg);
    cfg->opts = opts;
    cfg->nopts = nopts;
    cfg->defaults = defaults;
    cfg->ndefaults = ndefaults;
    for (size_t i = 0; i < ndefaults; i++) {
        int id = find_opt(defaults[i].key);
        struct origin o = {defaults[i].key, true};

        if (id < 0) {
            snprintf(err, errlen, "internal: default for unknown option %s", defaults[i].key);
            return -EINVAL;
        }
        if (apply(cfg, id, defaults[i].value, o, err, errlen) < 0)
            return -EINVAL;
    }
    for (size_t i = 0; i < nopts; i++) {
        int id = find_opt(opts[i].key);
        struct origin o = {opts[i].key, false};

        if (id < 0) {
            if (is_docker_key(opts[i].key))
                continue;
            unknown_option(opts[i].key, err, errlen);
            return -EINVAL;
        }
        if (apply(cfg, id, opts[i].value, o, err, errlen) < 0)
            return -EINVAL;
    }
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
    if (cfg->buffer_type == FWD_BUFFER_FILE && cfg->spool_limit == 0) {
        snprintf(err, errlen,
                 "log-opt buffer-type=file needs a spool: spool-limit must not be 0 (default "
                 "256m)");
        return -EINVAL;
    }
    if (fwd_pipeline_cfg_check(&cfg->pl, err, errlen) != 0)
        return -EINVAL;
    cfg->dest_key[0] = '\0';
    for (unsigned i = 0; i < cfg->naddrs; i++) {
        const struct fwd_addr *a = &cfg->addrs[i];

        off = strlen(cfg->dest_key);
        if (a->scheme == FWD_ADDR_UNIX)
            snprintf(cfg->dest_key + off, sizeof(cfg->dest_key) - off, "%sunix://%s", i ? "," : "",
                     a->path);
        else
            snprintf(cfg->dest_key + off, sizeof(cfg->dest_key) - off, "%s%s://[%s]:%u",
                     i ? "," : "", a->scheme == FWD_ADDR_TLS ? "tls" : "tcp", a->host, a->port);
        tls |= a->scheme == FWD_ADDR_TLS;
    }
    if (tls) {
        off = strlen(cfg->dest_key);
        snprintf(cfg->dest_key + off, sizeof(cfg->dest_key) - off,
                 " ca=%s crt=%s key=%s sn=%s k=%d", cfg->tls_ca_file, cfg->tls_cert_file,
                 cfg->tls_key_file, cfg->tls_server_name, cfg->tls_insecure);
    }
    /* Everything that changes how the connection behaves is part of its identity. */
    snprintf(cfg->dest_key + strlen(cfg->dest_key), sizeof(cfg->dest_key) - strlen(cfg->dest_key),
             " bl=%" PRIu64
             " rw=%u/%u mr=%u wt=%u rt=%u ri=%u ack=%d gz=%d bal=%d bt=%d sl=%" PRIu64 " of=%d",
             cfg->buffer_limit, cfg->retry_wait_ms, cfg->max_retry_wait_ms, cfg->max_retries,
             cfg->write_timeout_ms, cfg->read_timeout_ms, cfg->reconnect_interval_ms,
             cfg->request_ack, cfg->gzip, cfg->balance, cfg->buffer_type, cfg->spool_limit,
             cfg->overflow);
    if (cfg->shared_key[0]) {
        /* Different credentials are different connections; the key never goes in clear. */
        uint64_t h = FWD_HASH_INIT;
        const char *parts[] = {cfg->shared_key, cfg->self_hostname, cfg->username, cfg->password};

        for (int i = 0; i < 4; i++)
            h = fwd_config_hash(h, parts[i], strlen(parts[i]) + 1); /* terminators separate */
        snprintf(cfg->dest_key + strlen(cfg->dest_key),
                 sizeof(cfg->dest_key) - strlen(cfg->dest_key), " auth=%016" PRIx64, h);
    }
    return 0;
}

uint64_t fwd_config_hash(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;

    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

int fwd_config_env_defaults(char *const *envp, struct fwd_kv **out, size_t *n)
{
    struct fwd_kv *kv = calloc(O_COUNT, sizeof(*kv));

    *out = NULL;
    *n = 0;
    if (kv == NULL)
        return -ENOMEM;
    for (int i = 0; i < O_COUNT; i++) {
        size_t elen = strlen(opts_table[i].env);

        for (char *const *e = envp; e != NULL && *e != NULL; e++) {
            if (strncmp(*e, opts_table[i].env, elen) != 0 || (*e)[elen] != '=' ||
                (*e)[elen + 1] == '\0')
                continue;
            kv[*n].key = strdup(opts_table[i].name);
            kv[*n].value = strdup(*e + elen + 1);
            (*n)++;
            if (kv[*n - 1].key == NULL || kv[*n - 1].value == NULL) {
                fwd_kv_free(kv, *n);
                *n = 0;
                return -ENOMEM;
            }
            break;
        }
    }
    *out = kv;
    return 0;
}
