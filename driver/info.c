/*
 * info.c - plugin API request parsing.
 *
 * Go marshals nil slices and maps as null, so every array and object may be
 * null; a field of the wrong JSON type is an error naming the field, because
 * silently treating it as empty would drop labels or env attributes. Unknown
 * fields are ignored (dockerd may add some). The body is untrusted input; it
 * is capped at FWD_API_BODY_MAX before it gets here.
 */
#include "fwd_info.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int dup_str(json_t *obj, const char *field, char **out, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, field);

    if (v == NULL || json_is_null(v)) {
        *out = strdup("");
    } else if (!json_is_string(v)) {
        snprintf(err, errlen, "field %s must be a string", field);
        return -EINVAL;
    } else {
        *out = strdup(json_string_value(v));
    }
    return *out ? 0 : -ENOMEM;
}

static int dup_array(json_t *obj, const char *field, char ***out, size_t *n, char *err,
                     size_t errlen)
{
    json_t *v = json_object_get(obj, field);
    size_t i, count;

    *out = NULL;
    *n = 0;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_array(v)) {
        snprintf(err, errlen, "field %s must be an array of strings or null", field);
        return -EINVAL;
    }
    count = json_array_size(v);
    if (count == 0)
        return 0;
    *out = calloc(count, sizeof(char *));
    if (*out == NULL)
        return -ENOMEM;
    for (i = 0; i < count; i++) {
        json_t *e = json_array_get(v, i);

        if (!json_is_string(e)) {
            snprintf(err, errlen, "field %s must be an array of strings or null", field);
            return -EINVAL;
        }
        (*out)[i] = strdup(json_string_value(e));
        if ((*out)[i] == NULL)
            return -ENOMEM;
        *n = i + 1;
    }
    return 0;
}

static int dup_map(json_t *obj, const char *field, struct fwd_kv **out, size_t *n, char *err,
                   size_t errlen)
{
    json_t *v = json_object_get(obj, field);
    const char *k;
    json_t *e;

    *out = NULL;
    *n = 0;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_object(v)) {
        snprintf(err, errlen, "field %s must be an object of strings or null", field);
        return -EINVAL;
    }
    if (json_object_size(v) == 0)
        return 0;
    *out = calloc(json_object_size(v), sizeof(struct fwd_kv));
    if (*out == NULL)
        return -ENOMEM;
    json_object_foreach(v, k, e)
    {
        struct fwd_kv *kv = &(*out)[*n];

        if (!json_is_string(e)) {
            snprintf(err, errlen, "field %s.%s must be a string", field, k);
            return -EINVAL;
        }
        kv->key = strdup(k);
        kv->value = strdup(json_string_value(e));
        (*n)++;
        if (kv->key == NULL || kv->value == NULL)
            return -ENOMEM;
    }
    return 0;
}

static json_t *load(const char *body, size_t len, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr);

    if (root == NULL) {
        snprintf(err, errlen, "malformed JSON at line %d column %d: %s", jerr.line, jerr.column,
                 jerr.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        snprintf(err, errlen, "request body must be a JSON object");
        json_decref(root);
        return NULL;
    }
    return root;
}

static int parse_file(json_t *root, char **file, char *err, size_t errlen)
{
    json_t *f = json_object_get(root, "File");

    if (!json_is_string(f) || json_string_length(f) == 0) {
        snprintf(err, errlen, "field File must be a non-empty string");
        return -EINVAL;
    }
    *file = strdup(json_string_value(f));
    return *file ? 0 : -ENOMEM;
}

int fwd_info_parse_start(const char *body, size_t len, char **file, struct fwd_info *info,
                         char *err, size_t errlen)
{
    json_t *root, *in;
    int rc;

    memset(info, 0, sizeof(*info));
    *file = NULL;
    root = load(body, len, err, errlen);
    if (root == NULL)
        return -EINVAL;
    rc = parse_file(root, file, err, errlen);
    if (rc < 0)
        goto out;
    in = json_object_get(root, "Info");
    if (!json_is_object(in)) {
        snprintf(err, errlen, "field Info must be an object");
        rc = -EINVAL;
        goto out;
    }
    if ((rc = dup_map(in, "Config", &info->config, &info->nconfig, err, errlen)) < 0 ||
        (rc = dup_str(in, "ContainerID", &info->container_id, err, errlen)) < 0 ||
        (rc = dup_str(in, "ContainerName", &info->container_name, err, errlen)) < 0 ||
        (rc = dup_str(in, "ContainerEntrypoint", &info->entrypoint, err, errlen)) < 0 ||
        (rc = dup_array(in, "ContainerArgs", &info->args, &info->nargs, err, errlen)) < 0 ||
        (rc = dup_str(in, "ContainerImageID", &info->image_id, err, errlen)) < 0 ||
        (rc = dup_str(in, "ContainerImageName", &info->image_name, err, errlen)) < 0 ||
        (rc = dup_str(in, "ContainerCreated", &info->created, err, errlen)) < 0 ||
        (rc = dup_array(in, "ContainerEnv", &info->env, &info->nenv, err, errlen)) < 0 ||
        (rc = dup_map(in, "ContainerLabels", &info->labels, &info->nlabels, err, errlen)) < 0 ||
        (rc = dup_str(in, "LogPath", &info->log_path, err, errlen)) < 0 ||
        (rc = dup_str(in, "DaemonName", &info->daemon_name, err, errlen)) < 0)
        goto out;
    if (info->container_id[0] == '\0') {
        snprintf(err, errlen, "field Info.ContainerID must be a non-empty string");
        rc = -EINVAL;
    }
out:
    if (rc == -ENOMEM)
        snprintf(err, errlen, "out of memory");
    if (rc < 0) {
        fwd_info_release(info);
        free(*file);
        *file = NULL;
    }
    json_decref(root);
    return rc;
}

int fwd_info_parse_stop(const char *body, size_t len, char **file, char *err, size_t errlen)
{
    json_t *root = load(body, len, err, errlen);
    int rc;

    *file = NULL;
    if (root == NULL)
        return -EINVAL;
    rc = parse_file(root, file, err, errlen);
    json_decref(root);
    return rc;
}

void fwd_kv_free(struct fwd_kv *kv, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(kv[i].key);
        free(kv[i].value);
    }
    free(kv);
}

static void free_strs(char **s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(s[i]);
    free(s);
}

void fwd_info_release(struct fwd_info *info)
{
    if (info == NULL)
        return;
    fwd_kv_free(info->config, info->nconfig);
    fwd_kv_free(info->labels, info->nlabels);
    free_strs(info->args, info->nargs);
    free_strs(info->env, info->nenv);
    free(info->container_id);
    free(info->container_name);
    free(info->entrypoint);
    free(info->image_id);
    free(info->image_name);
    free(info->created);
    free(info->log_path);
    free(info->daemon_name);
    memset(info, 0, sizeof(*info));
}

const char *fwd_info_opt(const struct fwd_info *info, const char *key)
{
    for (size_t i = 0; i < info->nconfig; i++)
        if (strcmp(info->config[i].key, key) == 0)
            return info->config[i].value;
    return NULL;
}
