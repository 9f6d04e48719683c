/*
 * fwd_config.h - log-opts and plugin-wide defaults -> a validated fwd_config.
 *
 * A container's options come from its log-opts (Info.Config); an option it
 * does not set takes the plugin-wide default from the environment (set with
 * `docker plugin set fwdlog FLUENTD_ADDRESS=...`), else the built-in default.
 * Option names and value syntax are those of Docker's built-in fluentd driver
 * (moby daemon/logger/fluentd/fluentd.go) plus fwdlog's own. Docker's generic
 * keys (mode, max-buffer-size, cache-*, tag, labels, labels-regex, env,
 * env-regex) are always accepted. An unknown key or a bad value is an error
 * that names the option, the value and what is accepted.
 */
#ifndef FWD_CONFIG_H
#define FWD_CONFIG_H

#include "fwd_config_pipeline.h"
#include "fwd_info.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum fwd_addr_scheme {
    FWD_ADDR_TCP = 1,
    FWD_ADDR_TLS = 2,
    FWD_ADDR_UNIX = 3,
};

struct fwd_addr {
    enum fwd_addr_scheme scheme;
    char host[256]; /* tcp/tls: name or literal, without IPv6 brackets */
    uint16_t port;
    char path[108]; /* unix: socket path (sun_path size) */
};

/* Aggregators in one fluentd-address list, at most. */
#define FWD_MAX_ADDRS 8

/* How batches are spread over several aggregators (balance). */
enum fwd_balance {
    FWD_BALANCE_FAILOVER = 0, /* the first healthy one takes everything; the others stand by */
    FWD_BALANCE_ROUND_ROBIN,  /* each batch to the next healthy one */
};

/* buffer-type */
enum fwd_buffer_type {
    FWD_BUFFER_MEMORY = 0, /* in memory; spilled to the spool when memory is full or all are down */
    FWD_BUFFER_FILE,       /* every batch written to the spool before it is sent */
};

/* overflow-policy: what happens when the memory and spool limits are both reached. */
enum fwd_overflow {
    FWD_OVERFLOW_DROP_OLDEST = 0,
    FWD_OVERFLOW_DROP_NEWEST,
    FWD_OVERFLOW_BLOCK, /* stop reading the containers' FIFOs: back-pressure reaches them */
};

/* Size of the fixed string fields below (paths, names, secrets), terminator included. */
#define FWD_CONFIG_STR_MAX 256

struct fwd_config {
    struct fwd_addr addrs[FWD_MAX_ADDRS]; /* fluentd-address, in the order given */
    unsigned naddrs;
    enum fwd_balance balance;
    enum fwd_buffer_type buffer_type;
    enum fwd_overflow overflow;
    uint64_t spool_limit; /* bytes of spool per destination; 0: no spool (memory only) */
    uint64_t rate_limit;  /* bytes of lines per second per container; 0: off */
    uint64_t rate_burst;  /* its bucket; 0: rate_limit */
    bool async;           /* accepted for compatibility: fwdlog never blocks a container */
    bool subsecond;       /* EventTime with nanoseconds (default true) */
    bool request_ack;
    bool gzip; /* fluentd-compress=gzip: CompressedPackedForward */
    /* Shared-key handshake (empty shared_key: none). Secrets: never log them. */
    char shared_key[FWD_CONFIG_STR_MAX];
    char self_hostname[FWD_CONFIG_STR_MAX]; /* empty: the host's name */
    char username[FWD_CONFIG_STR_MAX];
    char password[FWD_CONFIG_STR_MAX];
    /* tls:// (paths; empty: the system's CA store, no client certificate) */
    char tls_ca_file[FWD_CONFIG_STR_MAX];
    char tls_cert_file[FWD_CONFIG_STR_MAX];
    char tls_key_file[FWD_CONFIG_STR_MAX];
    /* fluentd-tls-key-password-file: passphrase of an encrypted tls_key_file ("": none). Secret. */
    char tls_key_password[FWD_CONFIG_STR_MAX];
    char tls_server_name[FWD_CONFIG_STR_MAX]; /* empty: the address's host */
    bool tls_insecure;                        /* skip certificate verification (explicit opt-in) */
    uint64_t buffer_limit;                    /* bytes buffered in memory per destination */
    uint32_t retry_wait_ms;
    uint32_t max_retry_wait_ms; /* back-off cap */
    uint32_t max_retries;
    uint32_t write_timeout_ms; /* 0: none */
    uint32_t read_timeout_ms;
    uint32_t reconnect_interval_ms; /* 0: keep the connection */
    uint32_t partial_timeout_ms;
    uint32_t flush_interval_ms;
    size_t max_line;
    size_t max_record; /* max-record-size: an encoded record above it is sent in pieces */
    size_t batch_size;
    /* Borrowed from the option lists passed to fwd_config_build. */
    const char *tag;
    const char *labels;
    const char *labels_regex;
    const char *env;
    const char *env_regex;
    struct fwd_pipeline_cfg pl; /* parse*, time-*, multiline*, metadata, seq-key */
    /* The lists it was built from (borrowed), recorded with a spool so a later run can send it. */
    const struct fwd_kv *opts;
    size_t nopts;
    const struct fwd_kv *defaults;
    size_t ndefaults;
    /*
     * Identifies the aggregator connection: containers whose key is equal share
     * one. It ends with a hash of the secret values, so it stays in memory.
     */
    char dest_key[4096];
    /*
     * SHA-256 (hex) of the destination's identity without secret values: the
     * name of its spool directory, the same after a key or password changes.
     */
    char spool_id[65];
};

/*
 * Build *cfg from a container's log-opts (may be NULL/0) over the plugin-wide
 * defaults (may be NULL/0). Returns 0, or -EINVAL with a user-facing message
 * in err naming the option or environment variable.
 */
int fwd_config_build(struct fwd_config *cfg, const struct fwd_kv *opts, size_t nopts,
                     const struct fwd_kv *defaults, size_t ndefaults, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/*
 * FNV-1a over n bytes, continuing from h (FWD_HASH_INIT to begin): names of the
 * stream state files (state.c). Not for anything derived from a secret, and no
 * longer for spool directories (fwd_config.spool_id; an older version named
 * them with this hash of its dest_key, and such a directory is still adopted,
 * by its options.json, at start).
 */
#define FWD_HASH_INIT 1469598103934665603ull
uint64_t fwd_config_hash(uint64_t h, const void *p, size_t n);

/*
 * Collect the plugin-wide defaults from envp (NULL-terminated "K=V" array):
 * for each option its variable (FLUENTD_ADDRESS, FWDLOG_TAG, ...), skipping
 * empty values. *out is a malloc'd array of {option-name, value} pairs (keys
 * are option names, not variable names; free with fwd_kv_free). 0 or -ENOMEM.
 */
int fwd_config_env_defaults(char *const *envp, struct fwd_kv **out, size_t *n)
    __attribute__((warn_unused_result));

/* SHA-256 of p[0..n) as 64 lowercase hex digits and a terminator. */
void fwd_config_sha256_hex(char out[65], const void *p, size_t n);

/* The environment variable that sets option's plugin-wide default, or NULL. */
const char *fwd_config_env_name(const char *option);

/*
 * The option table (config_table.c): one row per option, and parsing,
 * defaults, range checks and error messages are all driven by it.
 */
enum fwd_config_type {
    FWD_CONFIG_BOOL = 1,    /* Go strconv.ParseBool, into a bool */
    FWD_CONFIG_UINT,        /* a whole number in [min, max], into a uint32_t or uint64_t */
    FWD_CONFIG_SIZE,        /* docker/go-units bytes in [min, max], into a uint64_t or size_t */
    FWD_CONFIG_DURATION,    /* Go duration, as milliseconds in [min, max], into a uint32_t */
    FWD_CONFIG_ENUM,        /* one of words[], stored as its index into an enum field */
    FWD_CONFIG_STRING,      /* copied into a char[size] field */
    FWD_CONFIG_SECRET,      /* the same, never shown in an error */
    FWD_CONFIG_TEXT,        /* borrowed into a const char * field; "" takes the default */
    FWD_CONFIG_PATH,        /* a readable regular file's path, copied into a char[size] field */
    FWD_CONFIG_SECRET_FILE, /* the secret read from the regular file named, into char[size] */
    FWD_CONFIG_CUSTOM,      /* set() parses and stores */
};

/*
 * A custom option's parser: store v (borrowed for the config's life) into
 * field, or return -EINVAL with what is accepted in want.
 */
typedef int (*fwd_config_set_cb)(void *field, const char *v, char *want, size_t wantlen);

struct fwd_config_opt {
    const char *name; /* the log-opt */
    const char *env;  /* the variable of its plugin-wide default, or NULL */
    enum fwd_config_type type;
    size_t off, size;         /* the field in struct fwd_config */
    uint64_t min, max;        /* UINT, SIZE, DURATION (milliseconds) */
    const char *zero;         /* UINT, SIZE, DURATION: 0 is accepted too, and means this */
    const char *def;          /* the default, as a value; NULL: zero */
    const char *const *words; /* ENUM: NULL-terminated */
    const char *hint;         /* added to what is accepted ("such as 1m"); STRING: the noun */
    fwd_config_set_cb set;    /* CUSTOM */
    const char *doc;          /* one line */
};

/* The option table, *n rows; static storage. */
const struct fwd_config_opt *fwd_config_opts(size_t *n);
/* The row of log-opt name, or NULL. */
const struct fwd_config_opt *fwd_config_find_opt(const char *name);

/* Parsers shared with main.c and tests. 0 or -EINVAL. */
int fwd_config_parse_addr(const char *s, struct fwd_addr *out, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* fluentd-address: one or more comma-separated addresses into out[FWD_MAX_ADDRS]. */
int fwd_config_parse_addr_list(const char *s, struct fwd_addr *out, unsigned *n, char *err,
                               size_t errlen) __attribute__((warn_unused_result));
int fwd_config_parse_duration_ms(const char *s, uint64_t *ms) __attribute__((warn_unused_result));
int fwd_config_parse_size(const char *s, uint64_t *bytes) __attribute__((warn_unused_result));
int fwd_config_parse_bool(const char *s, bool *b) __attribute__((warn_unused_result));
/* Decimal digits only, at most max. */
int fwd_config_parse_uint(const char *s, uint64_t max, uint64_t *out)
    __attribute__((warn_unused_result));

#endif
