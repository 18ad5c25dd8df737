/* api_statedir.c: folders under the state directory that the calibration
 * routes write into, reached without following a symbolic link.
 *
 * Why: the engine writes exports and measurements by path with plain
 * fopen/rename, which follow links.  A link left under the state
 * directory (exports -> /etc, exports/NAME/config.json -> a file
 * elsewhere) would let POST /calibrate/save write outside it.  So before a
 * command is queued, each folder below the state directory is created or
 * opened with openat(O_NOFOLLOW | O_DIRECTORY) one component at a time,
 * and the last one must hold no link either.  The state directory itself
 * is the operator's path and may be a link: with DynamicUser=yes systemd
 * makes /var/lib/fp8d one, to /var/lib/private/fp8d.  Only the daemon's
 * user can write there, so the window between this check and the engine's
 * write is not open to HTTP clients. */
#include "config.h"

#include "api/api-int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* mkdir -p of the operator's state directory (links followed). */
static int mkdir_parents(const char *path)
{
    char buf[2048];

    if (strlen(path) >= sizeof(buf))
        return -ENAMETOOLONG;
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p != '\0'; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0750) < 0 && errno != EEXIST)
                return -errno;
            *p = '/';
        }
    if (mkdir(buf, 0750) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* -ELOOP when the folder open as fd holds a symbolic link (named in
 * *bad), 0 when none, or another negative errno. */
static int find_link(int fd, char *bad, size_t badlen)
{
    DIR *d;
    struct dirent *e;
    int dfd = dup(fd), rc = 0;

    if (dfd < 0)
        return -errno;
    if ((d = fdopendir(dfd)) == NULL) {
        rc = -errno;
        close(dfd);
        return rc;
    }
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
            snprintf(bad, badlen, "%s", e->d_name);
            rc = -ELOOP;
            break;
        }
    }
    closedir(d);
    return rc;
}

int api__state_subdir(const char *state_dir, const char *rel, char *msg, size_t msglen)
{
    char comp[256], bad[256] = "";
    const char *p = rel;
    int fd, rc;

    if ((rc = mkdir_parents(state_dir)) < 0) {
        snprintf(msg, msglen, "state directory %.200s: %s", state_dir, strerror(-rc));
        return rc;
    }
    if ((fd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        rc = -errno;
        snprintf(msg, msglen, "state directory %.200s: %s", state_dir, strerror(-rc));
        return rc;
    }
    while (*p != '\0') {
        size_t n = strcspn(p, "/");
        int upto = (int)(p - rel + n), next;   /* rel up to this component */
        if (n == 0 || n >= sizeof(comp)) {
            close(fd);
            snprintf(msg, msglen, "bad folder name under the state directory");
            return -EINVAL;
        }
        memcpy(comp, p, n);
        comp[n] = '\0';
        p += n + (p[n] == '/');
        if (mkdirat(fd, comp, 0750) < 0 && errno != EEXIST) {
            rc = -errno;
            close(fd);
            snprintf(msg, msglen, "%.200s/%.*s: %s", state_dir, upto, rel, strerror(-rc));
            return rc;
        }
        if ((next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
            struct stat st;
            rc = -errno;
            /* A link to a file is ENOTDIR rather than ELOOP: say "link" for both. */
            if (fstatat(fd, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
                rc = -ELOOP;
        }
        close(fd);
        if (next < 0) {
            snprintf(msg, msglen, "%.200s/%.*s: %s", state_dir, upto, rel,
                     rc == -ELOOP ? "is a symbolic link; fp8d writes under the state "
                     "directory only and follows no link there" : strerror(-rc));
            return rc;
        }
        fd = next;
    }
    rc = find_link(fd, bad, sizeof(bad));
    close(fd);
    if (rc == -ELOOP)
        snprintf(msg, msglen, "%.200s/%s/%.100s is a symbolic link; fp8d writes under the "
                 "state directory only and follows no link there", state_dir, rel, bad);
    else if (rc < 0)
        snprintf(msg, msglen, "%.200s/%s: %s", state_dir, rel, strerror(-rc));
    return rc;
}
