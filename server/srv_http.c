/* srv_http.c: the HTTP transport on libmicrohttpd.  It turns MHD's
 * callbacks into api_handle calls; every JSON shape lives in api/.
 *
 * How MHD is driven: MHD runs its own epoll thread pool
 * (MHD_USE_EPOLL_INTERNAL_THREAD + MHD_OPTION_THREAD_POOL_SIZE), not
 * external polling from the libuv loop.  The main thread then stays free
 * for signals, the watchdog and reloads even when a handler is slow, and
 * the engine (later) can resume suspended connections from its own thread,
 * which is how MHD's flow-control chapter expects suspend/resume to be used
 * (MHD_ALLOW_SUSPEND_RESUME, which also gives the inter-thread channel
 * MHD_quiesce_daemon needs for the drain).  The cost: handlers run on MHD
 * threads, so everything they share with the main thread is atomic.
 *
 * We bind the listening socket ourselves (or take systemd's) and pass it
 * with MHD_OPTION_LISTEN_SOCKET, so bind errors name the address and the
 * socket-activation path is the same code.
 *
 * Per request: the first callback allocates a conn_ctx and refuses with 413
 * at once when Content-Length is over the limit; body chunks are appended
 * until the limit.  A chunked body that passes it is answered 413 and its
 * connection closed at once (refuse_mid_body), so it is never buffered
 * whole nor read to its end. */
#include "config.h"

#include "server/server.h"
#include "kernels/kn_base.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct srv_http {
    struct MHD_Daemon *d;
    api_service       *svc;
    _Atomic int64_t    max_body;
    _Atomic uint64_t   next_id;
    _Atomic int        n_suspended; /* connections suspended and not yet resumed */
    int                listen_fd;   /* ours until MHD_quiesce_daemon hands it back */
    int                port;
    bool               quiesced;
};

typedef struct conn_ctx {
    uint64_t        id;
    struct timespec start;
    char            method[16];
    char            path[256];      /* truncated copy, for the log and metrics */
    char           *body;
    size_t          body_len, body_cap;
    bool            too_large;
    int             status;         /* 0 until a response is queued */
    /* A request answered later (api_call): the engine thread wakes us. */
    srv_http              *h;
    struct MHD_Connection *conn;
    api_call              *call;
    pthread_mutex_t        mu;      /* guards suspended and woken */
    bool                   suspended, woken;
} conn_ctx;

static double ms_since(const struct timespec *t0)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) * 1e3 + (double)(now.tv_nsec - t0->tv_nsec) / 1e6;
}

static enum MHD_Result queue(struct MHD_Connection *c, conn_ctx *ctx, api_response *r)
{
    struct MHD_Response *resp;
    enum MHD_Result ok;
    char id[24];

    resp = MHD_create_response_from_buffer(r->body_len, r->body != NULL ? r->body : "",
                                           MHD_RESPMEM_MUST_COPY);
    if (resp == NULL) {
        api_response_cleanup(r);
        return MHD_NO;               /* MHD closes the connection */
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
    snprintf(id, sizeof(id), "%llu", (unsigned long long)ctx->id);
    MHD_add_response_header(resp, "X-Request-Id", id);
    for (size_t i = 0; i < r->n_headers; i++)
        MHD_add_response_header(resp, r->headers[i].name, r->headers[i].value);
    ok = MHD_queue_response(c, (unsigned int)r->status, resp);
    MHD_destroy_response(resp);
    if (ok == MHD_YES)
        ctx->status = r->status;
    api_response_cleanup(r);
    return ok;
}

static enum MHD_Result queue_413(struct MHD_Connection *c, conn_ctx *ctx, int64_t limit,
                                 const char *what)
{
    api_response r;
    char msg[160];

    memset(&r, 0, sizeof(r));
    snprintf(msg, sizeof(msg), "request body %s is larger than max_body_bytes (%lld bytes)",
             what, (long long)limit);
    api_error_response(&r, 413, msg);
    /* The unread body stays on the wire: close instead of keeping alive. */
    api_response_add_header(&r, "Connection", "close");
    return queue(c, ctx, &r);
}

/* 413 for a chunked body that passed the limit while it is still
 * arriving.  libmicrohttpd 0.9.75 (Debian 12) refuses MHD_queue_response
 * until the whole body has been read, and reading it to the end would let
 * a client stream forever; so the answer is written straight to the
 * socket (plain HTTP only, as fp8d serves: MHD has nothing of its own in
 * flight while a body arrives), and MHD_NO makes MHD close the
 * connection.  A short write just leaves the client with the close. */
static enum MHD_Result refuse_mid_body(struct MHD_Connection *c, conn_ctx *ctx, int64_t limit)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    api_response r;
    char msg[160], head[256];
    int n;

    memset(&r, 0, sizeof(r));
    snprintf(msg, sizeof(msg), "request body received is larger than max_body_bytes "
             "(%lld bytes)", (long long)limit);
    if (ci != NULL && api_error_response(&r, 413, msg) == 0) {
        n = snprintf(head, sizeof(head), "HTTP/1.1 413 Content Too Large\r\nConnection: close\r\n"
                     "Content-Type: %s\r\nX-Request-Id: %llu\r\nContent-Length: %zu\r\n\r\n",
                     r.content_type, (unsigned long long)ctx->id, r.body_len);
        if (n > 0 && (size_t)n < sizeof(head) &&
            send(ci->connect_fd, head, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) == n)
            (void)send(ci->connect_fd, r.body, r.body_len, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    api_response_cleanup(&r);
    ctx->status = 413;          /* for the log line and the metrics */
    return MHD_NO;
}

static conn_ctx *conn_begin(srv_http *h, const char *url, const char *method)
{
    conn_ctx *ctx = calloc(1, sizeof(*ctx));

    if (ctx == NULL)
        return NULL;
    ctx->h = h;
    pthread_mutex_init(&ctx->mu, NULL);
    ctx->id = atomic_fetch_add(&h->next_id, 1);
    clock_gettime(CLOCK_MONOTONIC, &ctx->start);
    snprintf(ctx->method, sizeof(ctx->method), "%s", method);
    snprintf(ctx->path, sizeof(ctx->path), "%s", url);
    /* MHD percent-decodes the path: keep "%0a" from splitting a log line
     * and "%ff" from making a JSON log line invalid UTF-8. */
    for (char *c = ctx->path; *c != '\0'; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
            *c = '?';
    for (char *c = ctx->method; *c != '\0'; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
            *c = '?';
    api_metrics_request_begin(h->svc);
    return ctx;
}

/* Appends a chunk, or drops the body once it passes the limit. */
static void body_append(conn_ctx *ctx, const char *data, size_t n, int64_t limit)
{
    if (ctx->too_large)
        return;
    if ((int64_t)(ctx->body_len + n) > limit) {
        ctx->too_large = true;
        free(ctx->body);
        ctx->body = NULL;
        ctx->body_len = ctx->body_cap = 0;
        return;
    }
    if (ctx->body_len + n + 1 > ctx->body_cap) {
        size_t cap = ctx->body_cap ? ctx->body_cap : 1024;
        char *p;
        while (cap < ctx->body_len + n + 1)
            cap *= 2;
        if ((p = realloc(ctx->body, cap)) == NULL) {
            /* Treated like an oversized body: refused, never half-kept. */
            ctx->too_large = true;
            free(ctx->body);
            ctx->body = NULL;
            ctx->body_len = ctx->body_cap = 0;
            return;
        }
        ctx->body = p;
        ctx->body_cap = cap;
    }
    memcpy(ctx->body + ctx->body_len, data, n);
    ctx->body_len += n;
    ctx->body[ctx->body_len] = '\0';
}

/* Suspend/resume handshake.  wake may run (engine thread) before the
 * transport thread gets to suspend: it then only sets woken, and the
 * transport polls again instead of suspending.  Lock order: the call's
 * lock (held by the api around wake), then ctx->mu, then MHD's own. */
static void on_wake(void *ud)
{
    conn_ctx *ctx = ud;

    pthread_mutex_lock(&ctx->mu);
    ctx->woken = true;
    if (ctx->suspended) {
        ctx->suspended = false;
        atomic_fetch_sub(&ctx->h->n_suspended, 1);
        MHD_resume_connection(ctx->conn);
    }
    pthread_mutex_unlock(&ctx->mu);
}

static void clear_woken(conn_ctx *ctx)
{
    pthread_mutex_lock(&ctx->mu);
    ctx->woken = false;
    pthread_mutex_unlock(&ctx->mu);
}

/* Suspends unless a wake came since clear_woken; true when suspended. */
static bool suspend_unless_woken(conn_ctx *ctx)
{
    bool s = false;

    pthread_mutex_lock(&ctx->mu);
    if (!ctx->woken) {
        MHD_suspend_connection(ctx->conn);
        ctx->suspended = true;
        atomic_fetch_add(&ctx->h->n_suspended, 1);
        s = true;
    }
    pthread_mutex_unlock(&ctx->mu);
    return s;
}

/* MHD content reader of a streamed (SSE) answer. */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    conn_ctx *ctx = cls;

    for (int tries = 0; tries < 1000; tries++) {
        ssize_t n;
        clear_woken(ctx);
        n = api_call_read(ctx->call, buf, max);
        if (n > 0)
            return n;
        if (n < 0)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (suspend_unless_woken(ctx))
            return 0;       /* MHD calls again after the resume */
    }
    return 0;
}

static enum MHD_Result queue_stream(struct MHD_Connection *c, conn_ctx *ctx, api_response *r)
{
    struct MHD_Response *resp;
    enum MHD_Result ok;
    char id[24];

    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, ctx, NULL);
    if (resp == NULL) {
        api_response_cleanup(r);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
    snprintf(id, sizeof(id), "%llu", (unsigned long long)ctx->id);
    MHD_add_response_header(resp, "X-Request-Id", id);
    for (size_t i = 0; i < r->n_headers; i++)
        MHD_add_response_header(resp, r->headers[i].name, r->headers[i].value);
    ok = MHD_queue_response(c, (unsigned int)r->status, resp);
    MHD_destroy_response(resp);
    if (ok == MHD_YES)
        ctx->status = r->status;
    api_response_cleanup(r);
    return ok;
}

/* True when the client closed its end (EOF on a non-blocking peek). */
static bool peer_closed(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    char b;

    return ci != NULL && recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

/* Polls the call: answers, starts the stream, or suspends until woken.
 * A client found gone while waiting has its generation cancelled. */
static enum MHD_Result drive(struct MHD_Connection *c, conn_ctx *ctx)
{
    api_response r;

    for (int tries = 0; tries < 1000; tries++) {
        int st;
        clear_woken(ctx);
        st = api_call_poll(ctx->call, &r);
        if (st == API_CALL_RESPONSE)
            return queue(c, ctx, &r);
        if (st == API_CALL_STREAM)
            return queue_stream(c, ctx, &r);
        if (peer_closed(c)) {
            api_call_release(ctx->call, false);
            ctx->call = NULL;
            return MHD_NO;
        }
        if (suspend_unless_woken(ctx))
            return MHD_YES;
    }
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    srv_http *h = cls;
    conn_ctx *ctx = *req_cls;
    int64_t limit = atomic_load(&h->max_body);
    api_response r;

    if (ctx == NULL) {
        const char *cl;
        if ((ctx = conn_begin(h, url, method)) == NULL)
            return MHD_NO;
        *req_cls = ctx;
        cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl != NULL && strtoull(cl, NULL, 10) > (unsigned long long)limit)
            return queue_413(c, ctx, limit, "announced by Content-Length");
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (ctx->status == 0)
            body_append(ctx, upload_data, *upload_data_size, limit);
        *upload_data_size = 0;
        if (ctx->too_large && ctx->status == 0)
            return refuse_mid_body(c, ctx, limit);
        return MHD_YES;
    }
    if (ctx->status != 0)
        return MHD_YES;
    if (ctx->call != NULL)
        return drive(c, ctx);           /* resumed */
    {
        api_request rq;
        memset(&rq, 0, sizeof(rq));
        rq.method = method;
        rq.path = url;
        rq.body = ctx->body;
        rq.body_len = ctx->body_len;
        rq.authorization = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
        rq.api_key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Api-Key");
        rq.origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
        rq.timeout = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Request-Timeout");
        rq.wake = on_wake;
        rq.wake_ud = ctx;
        ctx->conn = c;
        api_handle_request(h->svc, &rq, &r, &ctx->call);
    }
    if (ctx->call != NULL)
        return drive(c, ctx);
    return queue(c, ctx, &r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    srv_http *h = cls;
    conn_ctx *ctx = *req_cls;
    /* 499: the client went away before an answer (nginx's convention). */
    int status = ctx != NULL && ctx->status != 0 ? ctx->status : 499;

    if (ctx == NULL)
        return;
    srv_log_req(status >= 500 ? KN_LOG_WARN : KN_LOG_INFO, ctx->id,
                "%s %s status=%d ms=%.3f%s", ctx->method, ctx->path, status,
                ms_since(&ctx->start),
                toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " terminated=early");
    api_metrics_request_end(h->svc, ctx->path, status);
    /* After release the api never calls on_wake for this ctx again; a
     * connection closed early cancels the generation. */
    if (ctx->call != NULL)
        api_call_release(ctx->call, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK);
    pthread_mutex_destroy(&ctx->mu);
    free(ctx->body);
    free(ctx);
    *req_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    size_t n;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    kn_log(KN_LOG_WARN, "mhd", "%s", msg);
}

/* Binds and listens on host:port; returns the fd or a negative errno. */
static int open_listener(const char *host, int port, char *err, size_t errlen)
{
    struct addrinfo hints, *ai = NULL;
    char service[8];
    int fd = -1, one = 1, rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(service, sizeof(service), "%d", port);
    if ((rc = getaddrinfo(host, service, &hints, &ai)) != 0) {
        kn_errf(err, errlen, "host \"%s\": %s", host, gai_strerror(rc));
        return -EINVAL;
    }
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) {
        rc = -errno;
        kn_errf(err, errlen, "listen on %s:%d: socket: %s", host, port, strerror(-rc));
        goto fail;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 511) < 0) {
        rc = -errno;
        kn_errf(err, errlen, "listen on %s:%d: %s", host, port, strerror(-rc));
        goto fail;
    }
    freeaddrinfo(ai);
    return fd;
fail:
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    return rc;
}

static int bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;                                    /* a unix socket has no port */
}

int srv_http_start(srv_http **out, api_service *svc, const srv_config *cfg, int listen_fd,
                   char *err, size_t errlen)
{
    srv_http *h;
    unsigned int flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME |
                         MHD_USE_ERROR_LOG;
    int rc;

    *out = NULL;
    if ((h = calloc(1, sizeof(*h))) == NULL) {
        kn_errf(err, errlen, "http: out of memory");
        return -ENOMEM;
    }
    h->svc = svc;
    atomic_init(&h->max_body, cfg->max_body_bytes);
    atomic_init(&h->next_id, 1);
    if (listen_fd >= 0) {
        /* systemd's socket may be blocking; MHD's thread pool needs it not to be. */
        int fl = fcntl(listen_fd, F_GETFL);
        if (fl < 0 || fcntl(listen_fd, F_SETFL, fl | O_NONBLOCK) < 0) {
            rc = -errno;
            kn_errf(err, errlen, "socket activation: fd %d: %s", listen_fd, strerror(-rc));
            free(h);
            return rc;
        }
        h->listen_fd = listen_fd;
    } else if ((h->listen_fd = open_listener(cfg->host, (int)cfg->port, err, errlen)) < 0) {
        rc = h->listen_fd;
        free(h);
        return rc;
    }
    h->port = bound_port(h->listen_fd);
    h->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h,
                            /* first, or MHD logs its own way until it sees it */
                            MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
                            MHD_OPTION_LISTEN_SOCKET, (MHD_socket)h->listen_fd,
                            MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)cfg->http_threads,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned int)cfg->max_connections,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)cfg->connection_timeout,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                            MHD_OPTION_END);
    if (h->d == NULL) {
        kn_errf(err, errlen, "http: libmicrohttpd failed to start on %s:%d (see the mhd "
                "log line above)", cfg->host, h->port);
        close(h->listen_fd);
        free(h);
        return -EIO;
    }
    *out = h;
    return 0;
}

int srv_http_port(const srv_http *h)
{
    return h->port;
}

int srv_http_suspended(const srv_http *h)
{
    return atomic_load(&((srv_http *)h)->n_suspended);
}

void srv_http_set_max_body(srv_http *h, int64_t max_body_bytes)
{
    atomic_store(&h->max_body, max_body_bytes);
}

void srv_http_quiesce(srv_http *h)
{
    MHD_socket fd;

    if (h == NULL || h->quiesced)
        return;
    h->quiesced = true;
    /* MHD hands the listening socket back; closing it refuses new
     * connections.  Under socket activation systemd keeps its own copy, so
     * the port stays open for the next instance. */
    fd = MHD_quiesce_daemon(h->d);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
}

void srv_http_stop(srv_http *h)
{
    if (h == NULL)
        return;
    /* MHD refuses to stop with a suspended connection; the engine has been
     * stopped first, so every waiting call has finished and woken its
     * connection.  Bounded wait for the last resumes. */
    for (int i = 0; i < 300 && atomic_load(&h->n_suspended) > 0; i++) {
        struct timespec ts = { 0, 10 * 1000000L };
        nanosleep(&ts, NULL);
    }
    if (atomic_load(&h->n_suspended) > 0)
        SRV_LOG(KN_LOG_ERR, "%d connection(s) still suspended at stop",
                atomic_load(&h->n_suspended));
    MHD_stop_daemon(h->d);
    free(h);
}
