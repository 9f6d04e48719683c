/*
 * faultshim.c - fault injection for the integration tests: an LD_PRELOAD
 * library that makes open, read, write, fsync or fdatasync fail with a chosen
 * errno, or stall for a chosen time, on the files whose path matches a glob.
 * Built by the Makefile as build/tests/faultshim.so (build/$(SAN)/tests/...).
 *
 *   LD_PRELOAD=build/tests/faultshim.so FAULTSHIM_PATH='*spool/[0-9a-f]*' \
 *   FAULTSHIM_OPS=fdatasync FAULTSHIM_DELAY_MS=500 build/fwdlogd ...
 *
 * Configured by environment variables, read once at the first call:
 *   FAULTSHIM_PATH      fnmatch(3) glob (no flags: `*` matches `/` too) the path
 *                       must match. open/openat: the path as passed (relative
 *                       to the cwd for openat with a dirfd other than
 *                       AT_FDCWD is not resolved); fd calls: the path
 *                       /proc/self/fd/N links to. Unset or empty: the shim
 *                       does nothing.
 *   FAULTSHIM_OPS       comma list of open, read, write, fsync, fdatasync
 *                       (default: all of them). write covers writev and
 *                       pwrite too.
 *   FAULTSHIM_ERRNO     the call fails with this errno: a name (EMFILE, ENFILE,
 *                       ENOSPC, EDQUOT, EIO, EACCES, EAGAIN, EINTR, ENOMEM,
 *                       EROFS) or a number. Unset: the call runs (after the
 *                       delay, if any).
 *   FAULTSHIM_DELAY_MS  sleep this long before the call (a stall: a hung disk,
 *                       a slow network mount). With FAULTSHIM_ERRNO: stall,
 *                       then fail.
 *   FAULTSHIM_SWITCH    a path: faults happen only while that file exists, so
 *                       a test turns them on and off while the process runs
 *                       (e.g. "the disk is full", then "space came back").
 *   FAULTSHIM_COUNT     at most this many faults in all (unset or 0: no limit).
 *   FAULTSHIM_LOG       a file each fault is appended to as "op path\n", so a
 *                       test can check that the shim fired where it meant it to.
 *
 * Under AddressSanitizer the program must run with
 * ASAN_OPTIONS=verify_asan_link_order=0 (this library comes before libasan);
 * the shim itself is built without sanitizers.
 * Not thread-safe in its configuration (read once) but safe to call from any
 * thread afterwards; it never allocates.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum op {
    OP_OPEN = 0,
    OP_READ,
    OP_WRITE,
    OP_FSYNC,
    OP_FDATASYNC,
    OP_COUNT,
};

static const char *const op_names[OP_COUNT] = {"open", "read", "write", "fsync", "fdatasync"};

static struct {
    const char *path;
    const char *sw;
    const char *log;
    unsigned ops; /* bit per enum op */
    int err;      /* 0: no failure */
    long delay_ms;
    long max;
    long done;
} cfg;

static pthread_once_t once = PTHREAD_ONCE_INIT;

static int (*real_open)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static ssize_t (*real_read)(int, void *, size_t);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);

static int errno_by_name(const char *s)
{
    static const struct {
        const char *name;
        int e;
    } names[] = {{"EMFILE", EMFILE}, {"ENFILE", ENFILE}, {"ENOSPC", ENOSPC}, {"EDQUOT", EDQUOT},
                 {"EIO", EIO},       {"EACCES", EACCES}, {"EAGAIN", EAGAIN}, {"EINTR", EINTR},
                 {"ENOMEM", ENOMEM}, {"EROFS", EROFS}};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(s, names[i].name) == 0)
            return names[i].e;
    return atoi(s);
}

static void setup(void)
{
    const char *ops = getenv("FAULTSHIM_OPS"), *e = getenv("FAULTSHIM_ERRNO");
    const char *d = getenv("FAULTSHIM_DELAY_MS"), *n = getenv("FAULTSHIM_COUNT");

    real_open = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
    real_openat = (int (*)(int, const char *, int, ...))dlsym(RTLD_NEXT, "openat");
    real_read = (ssize_t(*)(int, void *, size_t))dlsym(RTLD_NEXT, "read");
    real_write = (ssize_t(*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    real_writev = (ssize_t(*)(int, const struct iovec *, int))dlsym(RTLD_NEXT, "writev");
    real_pwrite = (ssize_t(*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite");
    real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    cfg.path = getenv("FAULTSHIM_PATH");
    if (cfg.path != NULL && cfg.path[0] == '\0')
        cfg.path = NULL;
    cfg.sw = getenv("FAULTSHIM_SWITCH");
    cfg.log = getenv("FAULTSHIM_LOG");
    cfg.err = e != NULL && e[0] != '\0' ? errno_by_name(e) : 0;
    cfg.delay_ms = d != NULL ? atol(d) : 0;
    cfg.max = n != NULL ? atol(n) : 0;
    if (ops == NULL || ops[0] == '\0') {
        cfg.ops = (1u << OP_COUNT) - 1;
        return;
    }
    for (int i = 0; i < OP_COUNT; i++) {
        size_t len = strlen(op_names[i]);

        for (const char *p = ops; (p = strstr(p, op_names[i])) != NULL; p += len)
            if ((p == ops || p[-1] == ',') && (p[len] == ',' || p[len] == '\0'))
                cfg.ops |= 1u << i;
    }
}

static void log_fault(enum op op, const char *path)
{
    char line[4200];
    int fd, n;

    if (cfg.log == NULL)
        return;
    n = snprintf(line, sizeof(line), "%s %s\n", op_names[op], path);
    fd = real_open(cfg.log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) {
        if (real_write(fd, line, (size_t)n) < 0) {
            /* nothing to do: the log is for the test's information */
        }
        close(fd);
    }
}

/*
 * Should this call be faulted? Stalls here when FAULTSHIM_DELAY_MS says so.
 * Returns the errno to fail with, 0 to run the call.
 */
static int fault(enum op op, const char *path)
{
    pthread_once(&once, setup);
    if (cfg.path == NULL || !(cfg.ops & (1u << op)) || path == NULL ||
        fnmatch(cfg.path, path, 0) != 0)
        return 0;
    if (cfg.sw != NULL && access(cfg.sw, F_OK) != 0)
        return 0;
    if (cfg.max > 0 && __atomic_add_fetch(&cfg.done, 1, __ATOMIC_RELAXED) > cfg.max)
        return 0;
    log_fault(op, path);
    if (cfg.delay_ms > 0) {
        struct timespec ts = {cfg.delay_ms / 1000, (cfg.delay_ms % 1000) * 1000000L};

        while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
            ;
    }
    return cfg.err;
}

/* The path fd refers to, into buf; NULL if unknown. */
static const char *fd_path(int fd, char *buf, size_t n)
{
    char link[64];
    ssize_t len;

    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    len = readlink(link, buf, n - 1);
    if (len < 0)
        return NULL;
    buf[len] = '\0';
    return buf;
}

static int fault_fd(enum op op, int fd)
{
    char buf[4096];

    pthread_once(&once, setup);
    if (cfg.path == NULL || !(cfg.ops & (1u << op)))
        return 0;
    return fault(op, fd_path(fd, buf, sizeof(buf)));
}

static mode_t mode_arg(int flags, va_list ap)
{
    return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

int __open_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen);

static int do_openat(int dirfd, const char *path, int flags, mode_t mode)
{
    int e = fault(OP_OPEN, path);

    if (e != 0) {
        errno = e;
        return -1;
    }
    return dirfd == AT_FDCWD ? real_open(path, flags, mode) : real_openat(dirfd, path, flags, mode);
}

int open(const char *path, int flags, ...)
{
    va_list ap;
    mode_t mode;

    va_start(ap, flags);
    mode = mode_arg(flags, ap);
    va_end(ap);
    return do_openat(AT_FDCWD, path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    mode_t mode;

    va_start(ap, flags);
    mode = mode_arg(flags, ap);
    va_end(ap);
    return do_openat(dirfd, path, flags, mode);
}

/* What _FORTIFY_SOURCE builds call instead of open/openat. */
int __open_2(const char *path, int flags)
{
    return do_openat(AT_FDCWD, path, flags, 0);
}

int __openat_2(int dirfd, const char *path, int flags)
{
    return do_openat(dirfd, path, flags, 0);
}

/* On x86_64 the *64 variants are the same calls. */
int open64(const char *path, int flags, ...) __attribute__((alias("open")));
int openat64(int dirfd, const char *path, int flags, ...) __attribute__((alias("openat")));
int __open64_2(const char *path, int flags) __attribute__((alias("__open_2")));
int __openat64_2(int dirfd, const char *path, int flags) __attribute__((alias("__openat_2")));

/* 0 to run the call; else errno is set and the call returns -1. */
static int faulted(enum op op, int fd)
{
    int e = fault_fd(op, fd);

    if (e != 0)
        errno = e;
    return e;
}

ssize_t read(int fd, void *buf, size_t n)
{
    return faulted(OP_READ, fd) ? -1 : real_read(fd, buf, n);
}

ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen)
{
    if (n > buflen)
        abort(); /* what glibc's __read_chk does (__chk_fail) */
    return read(fd, buf, n);
}

ssize_t write(int fd, const void *buf, size_t n)
{
    return faulted(OP_WRITE, fd) ? -1 : real_write(fd, buf, n);
}

ssize_t writev(int fd, const struct iovec *iov, int n)
{
    return faulted(OP_WRITE, fd) ? -1 : real_writev(fd, iov, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    return faulted(OP_WRITE, fd) ? -1 : real_pwrite(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) __attribute__((alias("pwrite")));

int fsync(int fd)
{
    return faulted(OP_FSYNC, fd) ? -1 : real_fsync(fd);
}

int fdatasync(int fd)
{
    return faulted(OP_FDATASYNC, fd) ? -1 : real_fdatasync(fd);
}
