/* srv_systemd.c: the systemd notify protocol and socket activation,
 * without libsystemd (serving-anchors 4.1, 4.4).  A notification is one
 * AF_UNIX datagram of newline-separated KEY=VALUE lines sent to
 * $NOTIFY_SOCKET ('@' = abstract namespace).  Not under systemd (no
 * variable) every call is a no-op, so the daemon runs the same anywhere. */
#include "config.h"

#include "server/server.h"
#include "kernels/kn_base.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int                g_fd = -1;
static struct sockaddr_un g_addr;
static socklen_t          g_addr_len;
static uint64_t           g_watchdog_usec;

/* Parses a whole decimal string into *out; 0 or -EINVAL. */
static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (s == NULL || s[0] < '0' || s[0] > '9')
        return -EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (*end != '\0' || errno == ERANGE)
        return -EINVAL;
    *out = v;
    return 0;
}

static int init_watchdog(char *err, size_t errlen)
{
    const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
    uint64_t v, p;

    g_watchdog_usec = 0;
    if (usec == NULL)
        return 0;
    if (parse_u64(usec, &v) < 0 || v == 0) {
        kn_errf(err, errlen, "WATCHDOG_USEC=\"%.32s\": not a positive integer", usec);
        return -EINVAL;
    }
    /* WATCHDOG_PID names the process meant to ping; a child that inherited
     * the variable must not. */
    if (pid != NULL && (parse_u64(pid, &p) < 0 || p != (uint64_t)getpid()))
        return 0;
    g_watchdog_usec = v;
    return 0;
}

int srv_systemd_init(char *err, size_t errlen)
{
    const char *path = getenv("NOTIFY_SOCKET");
    size_t len;
    int rc;

    srv_systemd_cleanup();
    if ((rc = init_watchdog(err, errlen)) < 0)
        return rc;
    if (path == NULL || path[0] == '\0')
        return 0;
    len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof(g_addr.sun_path)) {
        kn_errf(err, errlen, "NOTIFY_SOCKET=\"%.64s\": not an absolute or abstract "
                "socket path that fits in sun_path", path);
        return -EINVAL;
    }
    memset(&g_addr, 0, sizeof(g_addr));
    g_addr.sun_family = AF_UNIX;
    memcpy(g_addr.sun_path, path, len);
    if (path[0] == '@')
        g_addr.sun_path[0] = '\0';
    g_addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    g_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (g_fd < 0) {
        rc = -errno;
        kn_errf(err, errlen, "NOTIFY_SOCKET: socket(): %s", strerror(-rc));
        return rc;
    }
    unsetenv("NOTIFY_SOCKET");
    return 0;
}

void srv_systemd_cleanup(void)
{
    if (g_fd >= 0)
        close(g_fd);
    g_fd = -1;
}

int srv_notify(const char *msg)
{
    ssize_t n;

    if (g_fd < 0)
        return 0;
    n = sendto(g_fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&g_addr, g_addr_len);
    if (n < 0)
        return -errno;
    return (size_t)n == strlen(msg) ? 0 : -EIO;
}

int srv_notify_status(const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    if (g_fd < 0)
        return 0;
    memcpy(msg, "STATUS=", 7);
    va_start(ap, fmt);
    vsnprintf(msg + 7, sizeof(msg) - 7, fmt, ap);
    va_end(ap);
    return srv_notify(msg);
}

int srv_notify_reloading(void)
{
    char msg[96];
    struct timespec ts;

    /* MONOTONIC_USEC lets Type=notify-reload match this to its request. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
    return srv_notify(msg);
}

uint64_t srv_watchdog_usec(void)
{
    return g_watchdog_usec;
}

int srv_listen_fds(char *err, size_t errlen)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    uint64_t p, n;

    if (pid == NULL || fds == NULL)
        return 0;
    if (parse_u64(pid, &p) < 0) {
        kn_errf(err, errlen, "LISTEN_PID=\"%.32s\": not a process id", pid);
        return -EINVAL;
    }
    if (p != (uint64_t)getpid())
        return 0;                   /* meant for another process */
    if (parse_u64(fds, &n) < 0 || n > 64) {
        kn_errf(err, errlen, "LISTEN_FDS=\"%.32s\": not a count of descriptors", fds);
        return -EINVAL;
    }
    for (int fd = 3; fd < 3 + (int)n; fd++) {
        if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
            int rc = -errno;
            kn_errf(err, errlen, "LISTEN_FDS=%d: descriptor %d: %s", (int)n, fd,
                    strerror(-rc));
            return rc;
        }
    }
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return (int)n;
}
