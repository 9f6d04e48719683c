/*
 * tag.c - tag template rendering.
 *
 * Field semantics follow moby daemon/logger/loginfo.go: ID is the first 12
 * characters of ContainerID, Name drops the leading '/', ImageID is
 * stringid.TruncateID (text after the last ':' cut to 12), Command is the
 * entrypoint and args joined by single spaces.
 */
#include "fwd_tag.h"
#include "fwd_buf.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TAG_MAX (64u * 1024u)

static int put(struct fwd_buf *b, const char *s, size_t n)
{
    return fwd_buf_append(b, s, n);
}

static int put_str(struct fwd_buf *b, const char *s)
{
    return put(b, s, strlen(s));
}

static int put_trunc12(struct fwd_buf *b, const char *s)
{
    size_t n = strlen(s);

    return put(b, s, n > 12 ? 12 : n);
}

static int put_field(struct fwd_buf *b, const char *f, size_t flen, const struct fwd_info *info,
                     const char *hostname)
{
#define IS(name) (flen == sizeof(name) - 1 && memcmp(f, name, flen) == 0)
    if (IS("ID"))
        return put_trunc12(b, info->container_id);
    if (IS("FullID") || IS("ContainerID"))
        return put_str(b, info->container_id);
    if (IS("Name")) {
        const char *n = info->container_name;
        return put_str(b, n[0] == '/' ? n + 1 : n);
    }
    if (IS("ContainerName"))
        return put_str(b, info->container_name);
    if (IS("ImageID")) {
        const char *colon = strrchr(info->image_id, ':');
        return put_trunc12(b, colon ? colon + 1 : info->image_id);
    }
    if (IS("ImageFullID") || IS("ContainerImageID"))
        return put_str(b, info->image_id);
    if (IS("ImageName") || IS("ContainerImageName"))
        return put_str(b, info->image_name);
    if (IS("DaemonName"))
        return put_str(b, info->daemon_name);
    if (IS("Hostname"))
        return put_str(b, hostname);
    if (IS("ContainerEntrypoint"))
        return put_str(b, info->entrypoint);
    if (IS("ContainerCreated"))
        return put_str(b, info->created);
    if (IS("LogPath"))
        return put_str(b, info->log_path);
    if (IS("Command")) {
        int rc = put_str(b, info->entrypoint);
        for (size_t i = 0; rc == 0 && i < info->nargs; i++) {
            rc = put(b, " ", 1);
            if (rc == 0)
                rc = put_str(b, info->args[i]);
        }
        return rc;
    }
#undef IS
    return 1; /* unknown field */
}

char *fwd_tag_render(const char *tmpl, const struct fwd_info *info, const char *hostname, char *err,
                     size_t errlen)
{
    struct fwd_buf b;
    const char *p = tmpl;
    char *out = NULL;
    int rc = 0;

    fwd_buf_init(&b, TAG_MAX);
    while (*p != '\0' && rc == 0) {
        const char *open = strstr(p, "{{");
        const char *close, *s, *e;

        if (open == NULL) {
            rc = put_str(&b, p);
            break;
        }
        rc = put(&b, p, (size_t)(open - p));
        if (rc != 0)
            break;
        close = strstr(open + 2, "}}");
        if (close == NULL) {
            snprintf(err, errlen, "tag template \"%s\": unclosed action (missing \"}}\")", tmpl);
            goto fail;
        }
        s = open + 2;
        e = close;
        while (s < e && isspace((unsigned char)*s))
            s++;
        while (e > s && isspace((unsigned char)e[-1]))
            e--;
        if (e - s < 2 || *s != '.' || !isupper((unsigned char)s[1])) {
            snprintf(err, errlen,
                     "tag template \"%s\": unsupported action \"%.*s\" (fwdlog renders "
                     "{{.ID}} {{.FullID}} {{.Name}} {{.ImageID}} {{.ImageFullID}} {{.ImageName}} "
                     "{{.DaemonName}} {{.Command}} {{.Hostname}} with literal text around them)",
                     tmpl, (int)(close + 2 - open), open);
            goto fail;
        }
        for (const char *c = s + 1; c < e; c++) {
            if (!isalnum((unsigned char)*c)) {
                snprintf(err, errlen, "tag template \"%s\": unsupported action \"%.*s\"", tmpl,
                         (int)(close + 2 - open), open);
                goto fail;
            }
        }
        rc = put_field(&b, s + 1, (size_t)(e - s - 1), info, hostname);
        if (rc == 1) {
            snprintf(err, errlen,
                     "tag template \"%s\": unknown field \"%.*s\" (known: ID FullID Name ImageID "
                     "ImageFullID ImageName DaemonName Command Hostname)",
                     tmpl, (int)(e - s), s);
            goto fail;
        }
        p = close + 2;
    }
    if (rc == 0)
        rc = put(&b, "", 1);
    if (rc != 0) {
        snprintf(err, errlen, "tag template \"%s\": rendered tag too long or out of memory", tmpl);
        goto fail;
    }
    out = (char *)b.data;
    return out;
fail:
    fwd_buf_release(&b);
    return NULL;
}
