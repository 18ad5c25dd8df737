/* qt_file.c: whole-file read with a size bound, and the atomic write used
 * for measurement files (temp file, fsync, rename, fsync of the folder),
 * so a crash leaves either the old file or the new one, never half. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quant/quant-int.h"

int qt__read_file(const char *path, size_t max_len, char **out, size_t *len, char *err,
                  size_t errlen)
{
    struct stat st;
    char *buf = NULL;
    size_t got = 0;
    int fd, rc;

    *out = NULL;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        rc = -errno;
        kn_errf(err, errlen, "%s: %s", path, strerror(-rc));
        return rc;
    }
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        kn_errf(err, errlen, "%s: %s", path, strerror(-rc));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
        kn_errf(err, errlen, "%s: not a regular file", path);
        goto fail;
    }
    if ((size_t)st.st_size > max_len) {
        rc = -EFBIG;
        kn_errf(err, errlen, "%s: %lld bytes, more than the %zu allowed", path,
                (long long)st.st_size, max_len);
        goto fail;
    }
    if ((buf = malloc((size_t)st.st_size + 1)) == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    while (got < (size_t)st.st_size) {
        ssize_t k = read(fd, buf + got, (size_t)st.st_size - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            rc = k < 0 ? -errno : -EIO;
            kn_errf(err, errlen, "%s: read: %s", path, k < 0 ? strerror(-rc) : "file shrank");
            goto fail;
        }
        got += (size_t)k;
    }
    buf[got] = '\0';
    close(fd);
    *out = buf;
    *len = got;
    return 0;

fail:
    free(buf);
    close(fd);
    return rc;
}

static int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t k = write(fd, data, len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -errno;
        data += k;
        len -= (size_t)k;
    }
    return 0;
}

int qt__write_file_atomic(const char *path, const char *data, size_t len, char *err,
                          size_t errlen)
{
    char dir[PATH_MAX], tmp[PATH_MAX];
    int fd = -1, dfd, rc;

    if (strlen(path) + 16 >= sizeof(tmp)) {
        kn_errf(err, errlen, "%s: path too long", path);
        return -ENAMETOOLONG;
    }
    strcpy(dir, path);
    {
        char *d = dirname(dir);  /* in place, or a static "." */
        memmove(dir, d, strlen(d) + 1);
    }
    if (mkdir(dir, 0777) < 0 && errno != EEXIST) {
        rc = -errno;
        kn_errf(err, errlen, "%s: cannot create folder %s: %s", path, dir, strerror(-rc));
        return rc;
    }
    snprintf(tmp, sizeof(tmp), "%s.tmpXXXXXX", path);
    if ((fd = mkstemp(tmp)) < 0) {
        rc = -errno;
        kn_errf(err, errlen, "%s: cannot create a temporary file: %s", path, strerror(-rc));
        return rc;
    }
    /* mkstemp makes 0600; measurement files are ordinary data files. */
    (void)fchmod(fd, 0644);
    if ((rc = write_all(fd, data, len)) < 0 || (fsync(fd) < 0 && (rc = -errno) < 0)) {
        kn_errf(err, errlen, "%s: write: %s", tmp, strerror(-rc));
        goto fail;
    }
    if (close(fd) < 0) {
        fd = -1;
        rc = -errno;
        kn_errf(err, errlen, "%s: close: %s", tmp, strerror(-rc));
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) < 0) {
        rc = -errno;
        kn_errf(err, errlen, "%s: rename from %s: %s", path, tmp, strerror(-rc));
        goto fail;
    }
    /* The rename is durable only once the folder's entry is on disk. */
    if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return 0;

fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return rc;
}
