/*
 * fwd_file.h - small local files read and written whole: stream states,
 * journals. A read opens with O_NONBLOCK|O_NOFOLLOW and takes regular files
 * only, up to a bound, so a FIFO, a symlink or a huge file named by mistake
 * never blocks or floods the loop.
 */
#ifndef FWD_FILE_H
#define FWD_FILE_H

#include <stddef.h>

/*
 * Read the regular file at path, at most max bytes, into *buf (malloc'd, NUL
 * after the data) and *len. 0, or -errno: -EINVAL not a regular file, -EFBIG
 * over max, -ENOENT, -ENOMEM, ...
 */
int fwd_file_read(const char *path, size_t max, char **buf, size_t *len)
    __attribute__((warn_unused_result));
/*
 * snprintf for paths built under a directory checked to be short enough
 * (the state dir is at most FWD_PATH_MAX - 200 bytes): one place for the
 * truncation that cannot happen, so callers need no check of their own.
 */
void fwd_pathf(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* write(2) until all of p is written (EINTR retried). 0 or -errno. */
int fwd_file_write_all(int fd, const void *p, size_t len) __attribute__((warn_unused_result));

#endif
