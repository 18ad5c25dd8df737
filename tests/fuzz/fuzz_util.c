/* fuzz_util.c: see fuzz_util.h. */
#include "config.h"

#include "tests/fuzz/fuzz_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

const char *fuzz_srcdir(void)
{
    const char *s = getenv("FP8D_TOP_SRCDIR");
    return s != NULL && s[0] != '\0' ? s : FUZZ_TOP_SRCDIR;
}

const char *fuzz_path(char *buf, size_t len, const char *rel)
{
    if ((size_t)snprintf(buf, len, "%s/%s", fuzz_srcdir(), rel) >= len)
        fuzz_fail(__FILE__, __LINE__, "path fits", "%s/%s: path too long", fuzz_srcdir(), rel);
    return buf;
}

void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s:%d: invariant failed: %s: ", file, line, cond);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

char *fuzz_strndup(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);

    if (s == NULL)
        fuzz_fail(__FILE__, __LINE__, "malloc", "out of memory (%zu bytes)", size + 1);
    if (size > 0)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

static void write_all(int fd, const uint8_t *data, size_t size, const char *what)
{
    while (size > 0) {
        ssize_t n = write(fd, data, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            fuzz_fail(__FILE__, __LINE__, "write", "%s: %s", what, strerror(errno));
        data += n;
        size -= (size_t)n;
    }
}

int fuzz_memfd(const uint8_t *data, size_t size, char *path, size_t pathlen)
{
    int fd = memfd_create("fuzz-input", MFD_CLOEXEC);

    if (fd < 0)
        fuzz_fail(__FILE__, __LINE__, "memfd_create", "%s", strerror(errno));
    write_all(fd, data, size, "memfd");
    snprintf(path, pathlen, "/proc/self/fd/%d", fd);
    return fd;
}

void fuzz_write_file(const char *dir, const char *name, const void *data, size_t size)
{
    char path[4096];
    int fd;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        fuzz_fail(__FILE__, __LINE__, "open", "%s: %s", path, strerror(errno));
    write_all(fd, data, size, path);
    close(fd);
}

static char tmpdir[4096];

static void remove_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    char path[4096 + 256];

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", tmpdir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(tmpdir);
}

const char *fuzz_tmpdir(void)
{
    const char *base = getenv("TMPDIR");

    if (tmpdir[0] != '\0')
        return tmpdir;
    snprintf(tmpdir, sizeof(tmpdir), "%s/fp8d-fuzz-XXXXXX",
             base != NULL && base[0] != '\0' ? base : "/tmp");
    if (mkdtemp(tmpdir) == NULL)
        fuzz_fail(__FILE__, __LINE__, "mkdtemp", "%s: %s", tmpdir, strerror(errno));
    atexit(remove_tmpdir);
    return tmpdir;
}
