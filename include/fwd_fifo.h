/*
 * fwd_fifo.h - opening the FIFO dockerd hands the plugin for a container.
 *
 * StartLogging may name any path. It is confined to the FIFO directory
 * (--fifo-dir, FWDLOG_FIFO_DIR: where dockerd makes the plugin's FIFOs),
 * resolved with realpath (symlinks and `..` followed) and must end up directly
 * in it; the resolved path is opened O_RDONLY|O_NONBLOCK|O_NOFOLLOW and must be
 * a FIFO. Errors name the path, the directory and the fix (an EMFILE names
 * RLIMIT_NOFILE).
 */
#ifndef FWD_FIFO_H
#define FWD_FIFO_H

#include <stddef.h>

/* The FIFO's descriptor, or -errno with the reason in err. */
int fwd_fifo_open(const char *fifo_dir, const char *file, char *err, size_t errlen)
    __attribute__((warn_unused_result));

#endif
