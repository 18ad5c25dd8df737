/* api.h: the HTTP/JSON contract, without sockets.
 *
 * An api_service is the object the server creates at start with the parsed
 * configuration; it will own the model engine (engine/) and holds the
 * readiness state a model loader moves through (loading -> ready ->
 * stopping).  api_handle() is a pure function of (method, path, body): it
 * fills an api_response (status, headers, body) and never touches a
 * socket, so the server's transport (libmicrohttpd) and the tests drive it
 * alike.  The service also keeps the HTTP metrics that GET /metrics shows;
 * the transport reports each request's start and end through
 * api_metrics_request_begin/_end.
 *
 * Threads: api_service_new/_free on the main thread; everything else is
 * "Thread: any" (state and counters are atomics, nothing else is mutable).
 * Ownership: the caller owns each api_response and frees its body with
 * api_response_cleanup().
 */
#ifndef FP8D_API_H
#define FP8D_API_H

#include "engine/engine.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* api/ reserves -4000..-4999 for its own codes (none needed yet). */

typedef struct api_service api_service;  /* opaque; defined in api/api_service.c */

typedef enum api_state {
    API_STATE_LOADING = 0,   /* model not usable yet: /health and /readyz answer 503 */
    API_STATE_READY,         /* serving */
    API_STATE_STOPPING,      /* draining after SIGTERM: 503 again, in-flight work finishes */
    API_STATE_COUNT_
} api_state;

/* Plain parameters for api_service_new; fill with api_service_params_default. */
typedef struct api_service_params {
    const char *model_path;  /* Hugging Face model directory; borrowed for the call */
    int         threads;     /* compute threads for the engine; 0 = all cores */
    const char *version;     /* reported in fp8d:build_info; static string */
    /* Serving limits (0 = the default in brackets). */
    const char *served_model_name;    /* "model" answered by /v1/models [directory name] */
    size_t      max_queued_requests;  /* waiting requests before 429 [64] */
    size_t      max_queued_tokens;    /* waiting prompt tokens before 429 [1 << 20] */
    size_t      max_running;          /* sequences batched per step [16] */
    int64_t     request_timeout_ms;   /* default deadline of a request [600000] */
    int         max_tokens_limit;     /* largest max_tokens accepted [context length] */
    int         max_n;                /* largest n [16] */
    size_t      max_prompt_tokens;    /* longest prompt accepted [context length - 1] */
    const char *api_keys_file;        /* "KEY scope[,scope]" lines; NULL/"" = no keys */
    const char *cors_origins;         /* comma-separated allowed origins, "*"; NULL = CORS off */
    const char *fp8_config;           /* FP8Config file applied at start; NULL/"" = mode off */
    const char *state_dir;            /* calibration files live here [$STATE_DIRECTORY,
                                         else /var/lib/fp8d] */
} api_service_params;

void api_service_params_default(api_service_params *p);

/* Creates the service in API_STATE_LOADING.  Checks that p->model_path is
 * a directory holding a config.json that parses as a JSON object (the
 * model itself is not loaded yet).  Returns 0 and sets *out, or a negative
 * errno (-ENOENT missing directory or file, -ENOTDIR, -EINVAL bad
 * config.json, -ENOMEM) with a sentence in err naming the path.
 * Free with api_service_free.  Thread: main. */
int api_service_new(api_service **out, const api_service_params *p, char *err, size_t errlen);

/* Accepts NULL.  Thread: main, after the transport has stopped. */
void api_service_free(api_service *svc);

/* Starts the engine thread, which loads the model; the state stays
 * LOADING until api_service_poll sees the engine ready.  Returns 0 or a
 * negative errno with err.  Thread: main. */
int api_service_start(api_service *svc, char *err, size_t errlen);

/* Moves LOADING to READY once the engine has loaded the model.  Returns 1
 * when it just became ready, 0 when nothing changed, a negative errno
 * when loading failed (err says why).  Thread: main (a timer). */
int api_service_poll(api_service *svc, char *err, size_t errlen);

/* True while the engine thread shows life: loading, or its heartbeat is
 * younger than max_age_ms.  Gates the systemd watchdog.  Thread: any. */
bool api_service_alive(const api_service *svc, uint64_t max_age_ms);

/* Stops the engine: every queued or running request completes (with an
 * error when cut short) and the connections waiting on them are woken.
 * Stops an engine being reloaded and the retired ones too.  Call before
 * stopping the transport.  Thread: main. */
void api_service_stop_engine(api_service *svc);

/* Model reload (SIGHUP).  api_service_reload compares the files of the
 * model directory (names, inodes, sizes, mtimes) with those of the last
 * load or attempt: 0 when nothing changed; 1 when a new engine has
 * started loading them beside the running one; -EBUSY (err says why)
 * while the first load or another reload runs; a negative errno with err
 * when the new engine cannot start.  api_service_reload_poll, from a
 * timer until api_service_reload_pending is false: 1 when the new model
 * has just taken over (new requests go to it, the old engine finishes
 * the ones it holds and is freed), -EIO when it failed to load (err says
 * why; the running model stays), 0 otherwise.  The new engine starts in
 * the configured FP8 mode, as at start.  Thread: main. */
int  api_service_reload(api_service *svc, char *err, size_t errlen);
int  api_service_reload_poll(api_service *svc, char *err, size_t errlen);
bool api_service_reload_pending(const api_service *svc);

/* The readiness state (atomic).  Thread: any. */
void      api_service_set_state(api_service *svc, api_state st);
api_state api_service_state(const api_service *svc);
const char *api_state_name(api_state st);     /* "loading", "ready", "stopping" */

/* One response header; name and value are NUL-terminated copies. */
typedef struct api_header {
    char name[32];
    char value[96];
} api_header;

#define API_MAX_HEADERS 12

typedef struct api_response {
    int         status;                 /* HTTP status code */
    const char *content_type;           /* static string */
    char       *body;                   /* malloc'd, NUL-terminated; owned by the response */
    size_t      body_len;               /* bytes in body, without the NUL */
    api_header  headers[API_MAX_HEADERS];
    size_t      n_headers;
} api_response;

/* Routes one request.  method and path as sent ("GET", "/health"; a query
 * string after '?' is ignored); body may be NULL when body_len is 0.
 * Always fills *out (unknown route 404, wrong method 405 with Allow, ...)
 * and returns 0; returns -ENOMEM only when even the error body could not
 * be built, in which case out->status is 500 and out->body is NULL.
 * Thread: any. */
int api_handle(api_service *svc, const char *method, const char *path,
               const char *body, size_t body_len, api_response *out);

/* ---- requests answered later (inference) ------------------------------
 * api_handle_request is api_handle plus the headers the API needs and a
 * wake callback.  Routes that run the model do not answer at once: they
 * tokenize, submit to the engine and set *call; the transport then
 * suspends the connection and calls api_call_poll each time wake fires
 * (wake runs on the engine thread, must not block; it may fire before the
 * transport has suspended, so the transport must remember it).
 *   api_call_poll: API_CALL_PENDING (nothing yet), API_CALL_RESPONSE (out
 *   holds the whole answer), API_CALL_STREAM (out holds status and
 *   headers, no body: read the body with api_call_read).
 *   api_call_read: > 0 bytes copied, 0 none now (wait for wake), -1 end.
 *   api_call_release: the transport is done with the call (answered or the
 *   client went away: completed_ok false cancels the generation).  The
 *   call must not be used afterwards; wake is not called after it returns.
 * Thread: any (each call is driven by one transport thread at a time). */

typedef struct api_call api_call;           /* opaque; api/api_call.c */
typedef void (*api_wake_fn)(void *ud);

typedef struct api_request {
    const char *method, *path, *body;
    size_t      body_len;
    const char *authorization;   /* "Authorization" header or NULL */
    const char *api_key;         /* "X-Api-Key" header or NULL */
    const char *origin;          /* "Origin" header or NULL */
    const char *timeout;         /* "X-Request-Timeout" header (ms) or NULL */
    api_wake_fn wake;
    void       *wake_ud;
} api_request;

enum { API_CALL_PENDING = 0, API_CALL_RESPONSE = 1, API_CALL_STREAM = 2 };

int     api_handle_request(api_service *svc, const api_request *rq, api_response *out,
                           api_call **call);
int     api_call_poll(api_call *c, api_response *out);
ssize_t api_call_read(api_call *c, char *buf, size_t max);
void    api_call_release(api_call *c, bool completed_ok);

/* Fills *out with the OpenAI-shaped error body for an HTTP status:
 * {"error":{"message":msg,"type":<from the error table>,"code":<string>,
 * "status":<int>}}.  Used by api_handle and by the transport for errors it
 * detects itself (413 before the body is read).  Returns 0 or -ENOMEM as
 * api_handle.  Thread: any. */
int api_error_response(api_response *out, int status, const char *message);

/* The error table: OpenAI/llama.cpp "type" and our string "code" for an
 * HTTP status (unknown statuses map to server_error / internal_error). */
const char *api_error_type(int status);
const char *api_error_code(int status);

/* Maps a negative errno from a lower layer to an HTTP status: -EINVAL 400,
 * -ENOENT 404, -EMSGSIZE 413, -EAGAIN 503, others 500. */
int api_status_from_rc(int rc);

/* Adds a header to out (ignored when the table is full; values truncated
 * to fit).  Thread: any. */
void api_response_add_header(api_response *out, const char *name, const char *value);

/* Frees out->body; accepts a zeroed response.  Thread: any. */
void api_response_cleanup(api_response *out);

/* Metrics fed by the transport.  begin: a request arrived (in-flight +1).
 * end: its response was sent or it was dropped (in-flight -1, and the
 * request counter for the route label of path and status +1).  Thread: any. */
void api_metrics_request_begin(api_service *svc);
void api_metrics_request_end(api_service *svc, const char *path, int status);

/* Requests begun and not yet ended.  Thread: any. */
int64_t api_metrics_in_flight(const api_service *svc);

/* The fixed route label used in metrics for path: the route's own path
 * when it is known, "other" otherwise (keeps label cardinality bounded).
 * Returns a static string.  Thread: any. */
const char *api_route_label(const char *path);

#endif
