/* fuzz_srv_config.c: srv_config_load_file (the daemon's JSON config file)
 * on arbitrary bytes, read over the built-in defaults through a memfd.  An
 * accepted file must leave every field inside the bounds of the table in
 * server/srv_config.c (mirrored below: change both together) and both
 * strings non-empty and NUL-terminated inside their buffers. */
#include "config.h"

#include "kernels/kn_base.h"
#include "server/server.h"
#include "tests/fuzz/fuzz_util.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#define IN(v, lo, hi) ((v) >= (lo) && (v) <= (hi))

static void check_config(const srv_config *c)
{
    FUZZ_CHECK(memchr(c->host, '\0', sizeof(c->host)) != NULL && c->host[0] != '\0', "host");
    FUZZ_CHECK(memchr(c->model, '\0', sizeof(c->model)) != NULL && c->model[0] != '\0',
               "model");
    FUZZ_CHECK(IN(c->port, 0, 65535), "port %lld", (long long)c->port);
    FUZZ_CHECK(IN(c->threads, 0, 1024), "threads %lld", (long long)c->threads);
    FUZZ_CHECK(IN(c->http_threads, 1, 256), "http_threads %lld", (long long)c->http_threads);
    FUZZ_CHECK(IN(c->max_connections, 1, 65536), "max_connections %lld",
               (long long)c->max_connections);
    FUZZ_CHECK(IN(c->connection_timeout, 1, 3600), "connection_timeout %lld",
               (long long)c->connection_timeout);
    FUZZ_CHECK(c->log_level == KN_LOG_ERR || c->log_level == KN_LOG_WARN ||
               c->log_level == KN_LOG_INFO || c->log_level == KN_LOG_DEBUG,
               "log_level %lld", (long long)c->log_level);
    FUZZ_CHECK(c->log_format == SRV_LOG_TEXT || c->log_format == SRV_LOG_JSON,
               "log_format %lld", (long long)c->log_format);
    FUZZ_CHECK(IN(c->shutdown_timeout, 0, 3600), "shutdown_timeout %lld",
               (long long)c->shutdown_timeout);
    FUZZ_CHECK(IN(c->max_body_bytes, 0, INT64_C(1) << 30), "max_body_bytes %lld",
               (long long)c->max_body_bytes);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    srv_config cfg;
    char path[64], err[512] = "";
    int fd = fuzz_memfd(data, size, path, sizeof(path));
    int rc;

    srv_config_defaults(&cfg);
    rc = srv_config_load_file(&cfg, path, err, sizeof(err));
    close(fd);
    if (rc == 0)
        check_config(&cfg);
    else
        FUZZ_CHECK(rc == -EINVAL && err[0] != '\0', "rc %d (%s)", rc, err);
    return 0;
}
