/*
 * fwd_info.h - the plugin API request bodies dockerd sends, parsed with
 * jansson: StartLogging {File, Info{12 fields}}, StopLogging {File}.
 * Pure: bytes in, structs out.
 */
#ifndef FWD_INFO_H
#define FWD_INFO_H

#include <stddef.h>

struct fwd_kv {
    char *key;
    char *value;
};

/* Free n malloc'd pairs and the malloc'd array holding them. NULL is fine. */
void fwd_kv_free(struct fwd_kv *kv, size_t n);

/* moby daemon/logger/loginfo.go Info. Every string is non-NULL ("" when absent). */
struct fwd_info {
    struct fwd_kv *config; /* log-opts, in the order the JSON gave them */
    size_t nconfig;
    char *container_id;
    char *container_name; /* with its leading '/' */
    char *entrypoint;
    char **args;
    size_t nargs;
    char *image_id;
    char *image_name;
    char *created;
    char **env; /* "K=V" as given; may hold secrets: never log */
    size_t nenv;
    struct fwd_kv *labels;
    size_t nlabels;
    char *log_path;
    char *daemon_name;
};

/*
 * Parse a StartLogging body into *file (malloc'd) and *info. Arrays and maps
 * may be null or missing. Returns 0, or -EINVAL with a message in err (the
 * JSON error or the field that has the wrong type), or -ENOMEM. On failure
 * nothing is left allocated.
 */
int fwd_info_parse_start(const char *body, size_t len, char **file, struct fwd_info *info,
                         char *err, size_t errlen) __attribute__((warn_unused_result));
/* Parse a StopLogging body into *file (malloc'd). Same errors. */
int fwd_info_parse_stop(const char *body, size_t len, char **file, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* Free everything inside info and zero it. NULL is fine. */
void fwd_info_release(struct fwd_info *info);
/* The value of log-opt key, or NULL. */
const char *fwd_info_opt(const struct fwd_info *info, const char *key);

#endif
