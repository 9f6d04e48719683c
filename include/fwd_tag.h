/*
 * fwd_tag.h - Docker's log tag templates ({{.ID}}, {{.Name}}, ...).
 *
 * Docker runs the "tag" log-opt through Go text/template against its Info
 * (moby daemon/logger/loggerutils/log_tag.go). Every field a template can name
 * is fixed for a container's lifetime, so the tag is rendered once, at
 * StartLogging. Supported: literal text with {{.Field}} actions (spaces
 * inside the braces allowed) for ID, FullID, Name, ImageID, ImageFullID,
 * ImageName, DaemonName, Command, Hostname and the string fields of Info
 * (ContainerID, ContainerName, ContainerEntrypoint, ContainerImageID,
 * ContainerImageName, ContainerCreated, LogPath). Anything else (functions,
 * pipelines, comments) is an error that names it: a start error beats a tag
 * that silently differs from Docker's.
 */
#ifndef FWD_TAG_H
#define FWD_TAG_H

#include "fwd_info.h"

#include <stddef.h>

/*
 * Render tmpl for info on host hostname. Returns a malloc'd NUL-terminated tag,
 * or NULL with the reason in err (NULL with err "out of memory" on ENOMEM).
 */
char *fwd_tag_render(const char *tmpl, const struct fwd_info *info, const char *hostname, char *err,
                     size_t errlen);

#endif
