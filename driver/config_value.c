/*
 * config_value.c - the value syntaxes of log-opts, as Docker's built-in
 * fluentd driver reads them: booleans as Go strconv.ParseBool, durations as
 * Go time.ParseDuration, sizes as docker/go-units RAMInBytes (binary
 * multiples: 1k = 1024), addresses as moby's parseAddress.
 *
 * Pure functions over strings: no option names, ranges or defaults here
 * (those are rows of config_table.c), no I/O.
 */
#include "fwd_config.h"
#include "fwd_limits.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int fwd_config_parse_uint(const char *s, uint64_t max, uint64_t *out)
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

/* After "unix://": an absolute socket path that fits sun_path. */
static int unix_path(const char *rest, struct fwd_addr *out, char *err, size_t errlen)
{
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

/* host[:port] or [v6]:port: the host's end into *hend, the port's text (or NULL) into *port. */
static int split_host_port(const char *host, const char **hend, const char **port, char *err,
                           size_t errlen)
{
    *port = NULL;
    if (host[0] == '[') {
        *hend = strchr(host, ']');
        if (*hend == NULL) {
            snprintf(err, errlen, "missing ']' in IPv6 address");
            return -EINVAL;
        }
        if ((*hend)[1] == ':')
            *port = *hend + 2;
        else if ((*hend)[1] != '\0') {
            snprintf(err, errlen, "unexpected text after ']'");
            return -EINVAL;
        }
    } else {
        const char *colon = strrchr(host, ':');

        *hend = colon ? colon : host + strlen(host);
        if (colon != NULL) {
            if (memchr(host, ':', (size_t)(colon - host)) != NULL) {
                snprintf(err, errlen, "IPv6 addresses need brackets, as in [::1]:24224");
                return -EINVAL;
            }
            *port = colon + 1;
        }
    }
    return 0;
}

/* After the scheme: host[:port], "localhost" for an empty host. */
static int host_port(const char *rest, struct fwd_addr *out, char *err, size_t errlen)
{
    const char *host = rest, *hend, *port;
    size_t hlen;

    if (strchr(rest, '/') != NULL || strchr(rest, '?') != NULL || strchr(rest, '#') != NULL) {
        snprintf(err, errlen, "should not contain a path element (want host:port)");
        return -EINVAL;
    }
    if (split_host_port(host, &hend, &port, err, errlen) < 0)
        return -EINVAL;
    if (host[0] == '[')
        host++;
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

        if (fwd_config_parse_uint(port, 65535, &v) < 0) {
            snprintf(err, errlen, "invalid port '%s' (want 0-65535)", port);
            return -EINVAL;
        }
        out->port = (uint16_t)v;
    }
    return 0;
}

/* moby daemon/logger/fluentd/fluentd.go parseAddress, with "localhost" for an empty host. */
int fwd_config_parse_addr(const char *s, struct fwd_addr *out, char *err, size_t errlen)
{
    const char *rest = s, *sep = strstr(s, "://");

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
    if (out->scheme == FWD_ADDR_UNIX)
        return unix_path(rest, out, err, errlen);
    return host_port(rest, out, err, errlen);
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
