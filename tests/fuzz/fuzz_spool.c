/*
 * libFuzzer target: a spool segment left on disk by an earlier run (damaged by a
 * crash, a full disk or anything else) is read at start: every record reported must
 * lie inside the file and read back with a good checksum, nothing else may happen.
 */
#include "fwd_log.h"
#include "fwd_spool.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t file_size, nrefs;
static struct fwd_spool_ref refs[4096];

static int on_item(void *ctx, const struct fwd_spool_item *it)
{
    (void)ctx;
    if (it->ref.off + it->ref.size > file_size || it->tag_len > FWD_SPOOL_TAG_MAX ||
        it->ref.len + it->tag_len + FWD_SPOOL_RECORD_OVERHEAD != it->ref.size)
        abort();
    if (nrefs < sizeof(refs) / sizeof(refs[0]))
        refs[nrefs++] = it->ref;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char dir[] = "/tmp/fwdlog-fuzz-spool-XXXXXX", path[128], err[512];
    struct fwd_spool *sp;
    struct fwd_buf b;
    int fd;

    fwd_log_level = -1; /* quiet */
    if (mkdtemp(dir) == NULL)
        abort();
    snprintf(path, sizeof(path), "%s/0000000000000001.seg", dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, data, size) != (ssize_t)size)
        abort();
    close(fd);
    file_size = size;
    nrefs = 0;
    if (fwd_spool_open(dir, NULL, &sp, on_item, NULL, err, sizeof(err)) != 0)
        abort();
    fwd_buf_init(&b, 16u << 20);
    for (size_t i = 0; i < nrefs; i++)
        if (fwd_spool_read(sp, &refs[i], &b) != 0 || b.len != refs[i].len)
            abort(); /* it was good a moment ago */
    fwd_buf_release(&b);
    fwd_spool_destroy(sp); /* removes the file and the directory */
    return 0;
}
