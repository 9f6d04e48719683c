/*
 * file.c - whole small files: bounded reads of regular files, full writes.
 */
#include "fwd_file.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

int fwd_file_read(const char *path, size_t max, char **buf, size_t *len)
{
    struct stat st;
    char *b = NULL;
    size_t got = 0;
    int rc = 0, fd = open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);

    *buf = NULL;
    *len = 0;
    if (fd == -1)
        return -errno;
    if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
        rc = -EINVAL;
        goto out;
    }
    if ((unsigned long long)st.st_size > max) {
        rc = -EFBIG;
        goto out;
    }
    b = malloc((size_t)st.st_size + 1);
    if (b == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, b + got, (size_t)st.st_size - got);

        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1) {
            rc = -errno;
            goto out;
        }
        if (n == 0)
            break; /* shorter than fstat said: take what is there */
        got += (size_t)n;
    }
    b[got] = '\0';
    *buf = b;
    *len = got;
    b = NULL;
out:
    free(b);
    close(fd);
    return rc;
}

int fwd_file_write_all(int fd, const void *p, size_t len)
{
    const char *c = p;

    while (len > 0) {
        ssize_t w = write(fd, c, len);

        if (w == -1 && errno == EINTR)
            continue;
        if (w == -1)
            return -errno;
        c += w;
        len -= (size_t)w;
    }
    return 0;
}

void fwd_pathf(char *out, size_t n, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(out, n, fmt, ap);
    va_end(ap);
}
