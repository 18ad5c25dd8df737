/* server.h: the fp8d process: configuration table, log sink, systemd
 * notify protocol, the libmicrohttpd transport and the libuv main loop.
 *
 * Startup order (main.c): srv_config_load -> srv_log_init ->
 * srv_systemd_init -> api_service_new -> srv_http_start -> srv_loop_run.
 * Only main.c exits the process; everything here returns negative errno
 * codes with a sentence in err naming the file, key or address.
 *
 * Threads: the main thread runs the libuv loop (signals, timers, reload)
 * and owns srv_config; libmicrohttpd's own threads run the request
 * handlers, which read the reloadable limits through atomics only.
 * Exposed in one header so tests can drive each piece without a process.
 */
#ifndef FP8D_SERVER_H
#define FP8D_SERVER_H

#include "api/api.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- configuration (srv_config.c) ------------------------------------ */

enum srv_log_format { SRV_LOG_TEXT = 0, SRV_LOG_JSON = 1 };

/* Plain data: every field is one row of the table in srv_config.c. */
typedef struct srv_config {
    char    host[256];          /* address to bind */
    int64_t port;               /* 0 = ephemeral (the bound port is logged) */
    char    model[4096];        /* model directory */
    int64_t threads;            /* engine compute threads, 0 = all cores */
    int64_t http_threads;       /* libmicrohttpd worker threads */
    int64_t max_connections;    /* concurrent HTTP connections */
    int64_t connection_timeout; /* seconds an idle connection stays open */
    int64_t log_level;          /* syslog number: 3 error .. 7 debug */
    int64_t log_format;         /* enum srv_log_format */
    int64_t shutdown_timeout;   /* seconds SIGTERM waits for in-flight requests */
    int64_t max_body_bytes;     /* larger request bodies get 413 */
    /* serving (issue 6) */
    char    served_model_name[256]; /* "" = the model directory's name */
    int64_t max_queued_requests;  /* waiting requests before 429 */
    int64_t max_queued_tokens;    /* waiting prompt tokens before 429 */
    int64_t max_batch;            /* sequences decoded together per step */
    int64_t request_timeout_ms;   /* default per-request deadline */
    int64_t max_tokens_limit;     /* largest max_tokens accepted, 0 = context */
    int64_t max_n;                /* largest n */
    int64_t max_prompt_tokens;    /* longest prompt, 0 = context - 1 */
    char    api_keys_file[4096];  /* "" = no keys (open) */
    char    cors_origins[1024];   /* "" = CORS off */
    char    fp8_config[4096];     /* FP8Config file applied at start; "" = mode off */
    char    state_dir[2048];      /* "" = $STATE_DIRECTORY, else /var/lib/fp8d */
} srv_config;

/* What the command line asked for besides configuration. */
typedef enum srv_action {
    SRV_RUN = 0,
    SRV_HELP,          /* --help: print srv_config_help and exit 0 */
    SRV_VERSION,       /* --version */
    SRV_CHECK_CONFIG,  /* --check-config: validate and exit 0/1 */
} srv_action;

/* Built-in defaults (the "default" column of the table). */
void srv_config_defaults(srv_config *cfg);

/* Builds the configuration from defaults, then the JSON config file
 * (--config PATH, else the default path, which may be absent), then the
 * other flags (--key value or --key=value), validating every value
 * against the table.  *action and config_path (when not NULL; the file
 * actually read, or "" when none) are filled for the caller.  argv is not
 * modified and may be kept for a reload.  Returns 0, or -EINVAL/-ENOENT/
 * -EIO with one sentence in err naming the file or flag, the key and the
 * reason.  Thread: main. */
int srv_config_load(srv_config *cfg, int argc, char *const argv[], srv_action *action,
                    char *config_path, size_t config_path_len, char *err, size_t errlen);

/* Reads a JSON config file over cfg (keys absent from the file keep their
 * value).  Unknown keys, wrong JSON types, values out of bounds, bad enum
 * names, duplicated keys and malformed JSON are errors naming path and
 * key.  On error cfg may be partly updated: load into a copy.
 * Thread: any (touches nothing shared). */
int srv_config_load_file(srv_config *cfg, const char *path, char *err, size_t errlen);

/* The path read when no --config is given. */
const char *srv_config_default_path(void);

/* Writes the --help text generated from the table to f. */
void srv_config_help(FILE *f, const char *argv0);

/* For each key whose value differs between a and b calls fn(key,
 * reloadable, ud).  Returns the number of differing keys. */
int srv_config_diff(const srv_config *a, const srv_config *b,
                    void (*fn)(const char *key, bool reloadable, void *ud), void *ud);

/* Name of a log level number ("info") or log format ("json"). */
const char *srv_log_level_name(int level);

/* ---- logging (srv_log.c) ---------------------------------------------- */

/* Installs the one log sink (stderr) as the kn_log hook.  When
 * $JOURNAL_STREAM is set (stderr goes to journald) lines start with the
 * syslog priority "<N>" instead of a timestamp.  Thread: main, at start. */
void srv_log_init(int level, int format);

/* Changes level and format at run time (SIGHUP).  Thread: any. */
void srv_log_reconfigure(int level, int format);

/* Logs one line for request req_id (0 = none): text "req=N msg", JSON with
 * a "request_id" field.  Thread: any. */
void srv_log_req(int level, uint64_t req_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define SRV_LOG(lvl, ...) \
    do { if (kn_log_enabled(lvl)) kn_log((lvl), "server", __VA_ARGS__); } while (0)

/* ---- systemd (srv_systemd.c) ------------------------------------------ */

/* Reads $NOTIFY_SOCKET and $WATCHDOG_USEC/$WATCHDOG_PID once; then
 * unsets NOTIFY_SOCKET so children do not inherit it.  Without
 * NOTIFY_SOCKET every srv_notify call is a no-op returning 0.
 * Returns 0 or a negative errno with err naming the variable.
 * Thread: main, at start. */
int  srv_systemd_init(char *err, size_t errlen);
void srv_systemd_cleanup(void);

/* Sends msg (newline-separated KEY=VALUE lines) as one datagram.
 * Returns 0, or a negative errno (the daemon logs it and carries on).
 * Thread: main. */
int srv_notify(const char *msg);
int srv_notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "RELOADING=1\nMONOTONIC_USEC=<CLOCK_MONOTONIC in us>" */
int srv_notify_reloading(void);

/* The watchdog interval systemd asked for in microseconds, 0 if none. */
uint64_t srv_watchdog_usec(void);

/* Socket activation: when $LISTEN_PID is our pid and $LISTEN_FDS >= 1,
 * returns the number of passed descriptors (they start at fd 3; FD_CLOEXEC
 * is set on them) and unsets the LISTEN_* variables; 0 when not socket
 * activated; negative errno with err naming the variable when malformed. */
int srv_listen_fds(char *err, size_t errlen);

/* ---- HTTP transport (srv_http.c) --------------------------------------- */

typedef struct srv_http srv_http;  /* opaque; defined in srv_http.c */

/* Starts libmicrohttpd serving svc on cfg->host:cfg->port, or on
 * listen_fd when >= 0 (socket activation).  Returns 0 or a negative
 * errno with err naming the address.  Thread: main. */
int srv_http_start(srv_http **out, api_service *svc, const srv_config *cfg, int listen_fd,
                   char *err, size_t errlen);

/* The bound TCP port (useful with port 0).  Thread: any. */
int srv_http_port(const srv_http *h);

/* Reloadable limit (SIGHUP).  Thread: any. */
void srv_http_set_max_body(srv_http *h, int64_t max_body_bytes);

/* Stops accepting new connections; requests already received go on.
 * Thread: main. */
void srv_http_quiesce(srv_http *h);

/* Stops MHD, closing every connection, and frees h.  Accepts NULL.
 * Thread: main. */
void srv_http_stop(srv_http *h);

/* Connections suspended while their request waits on the engine.
 * Thread: any. */
int srv_http_suspended(const srv_http *h);

/* ---- main loop (srv_loop.c) -------------------------------------------- */

typedef struct srv_loop_ctx {
    srv_config   *cfg;          /* live configuration; replaced on reload */
    int           argc;         /* the command line, re-read on SIGHUP */
    char *const  *argv;
    api_service  *svc;
    srv_http     *http;
} srv_loop_ctx;

/* Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (and so in the
 * threads it creates later); srv_loop_run unblocks them on the main thread
 * once its handlers are installed.  Thread: main, before any other thread. */
void srv_signals_block(void);
void srv_signals_unblock(void);

/* Runs the libuv loop until shutdown: SIGTERM/SIGINT drain (stop
 * accepting, wait for in-flight requests up to cfg->shutdown_timeout), a
 * second signal stops at once; SIGHUP reloads; the watchdog timer pings
 * systemd.  Returns the process exit status (0 after a drain, 1 after a
 * forced stop or a loop error).  Thread: main. */
int srv_loop_run(srv_loop_ctx *ctx);

#endif
