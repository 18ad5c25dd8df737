/* api-int.h: what the api/ files share: the service struct, the route
 * table and the metrics counters.  Never included from outside api/. */
#ifndef FP8D_API_INT_H
#define FP8D_API_INT_H

#include "api/api.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

/* Route labels for metrics: the routes of the table plus "other". */
#define API_N_ROUTE_LABELS 15
#define API_STATUS_MIN 100
#define API_STATUS_MAX 599
#define API_N_STATUS (API_STATUS_MAX - API_STATUS_MIN + 1)

/* A Prometheus histogram with fixed upper bounds (atomics). */
#define API_HIST_MAX 24
typedef struct api_hist {
    const double    *bounds;            /* n ascending upper bounds; +Inf implied */
    size_t           n;
    _Atomic uint64_t count[API_HIST_MAX + 1];
    _Atomic uint64_t sum_us;            /* sum in microseconds (or units * 1e6) */
} api_hist;
void api__hist_observe(api_hist *h, double v);

enum { API_SCOPE_INFERENCE = 1, API_SCOPE_METRICS = 2, API_SCOPE_ADMIN = 4 };

typedef struct api_key {
    char    *key;
    size_t   len;
    unsigned scopes;
} api_key;

/* Why requests ended early, for fp8d:requests_*_total. */
enum { API_FIN_STOP, API_FIN_LENGTH, API_FIN_ABORT, API_FIN_COUNT_ };
enum { API_CANCEL_DISCONNECT, API_CANCEL_DEADLINE, API_CANCEL_SHUTDOWN, API_CANCEL_COUNT_ };

/* One engine and the hash of the model files it loaded (api_engine.c).
 * An api_call pins the engine it submits to until the call is freed: a
 * retired engine is freed only once nothing pins it. */
typedef struct api__eng {
    struct eng_engine *eng;
    char               hash[17];
    _Atomic int        pins;
    struct api__eng   *next;            /* the retired list */
} api__eng;

struct api_service {
    _Atomic int     state;              /* api_state */
    api_service_params p;               /* strings below replace the borrowed ones */
    char            model_dir[4096];
    char            model_name[256];
    char            model_hash[17];     /* 16 hex digits of FNV-1a 64 */
    char           *cors;               /* copy of cors_origins or NULL */
    char           *fp8_json;           /* text of the fp8_config file or NULL */
    char            state_dir[2048];
    api_key        *keys;
    size_t          n_keys;
    struct eng_engine *eng;             /* cur->eng; NULL until api_service_start */
    /* Model reload (api_engine.c).  Handlers run with swap_lock held for
     * reading, so eng, model_hash and cur stay put for one handler; the
     * main thread holds it for writing to swap engines or drop a retired
     * one.  loading and files_id: main thread only. */
    pthread_rwlock_t swap_lock;
    api__eng        *cur, *loading, *retired;
    uint64_t         files_id;          /* the model files last loaded or tried */
    eng_engine_stats gone;              /* counters of the engines freed after a reload */
    _Atomic uint64_t next_call;
    api_hist        ttft, itl, e2e, queue_time;
    _Atomic uint64_t finished[API_FIN_COUNT_];
    _Atomic uint64_t cancelled[API_CANCEL_COUNT_];
    _Atomic uint64_t rejected_full, rejected_unready;
    const char     *version;            /* static */
    struct timespec started;            /* CLOCK_MONOTONIC at api_service_new */
    double          started_unix;       /* wall clock at start, for process_start_time */
    _Atomic int64_t in_flight;
    /* requests[route label][status - API_STATUS_MIN] */
    _Atomic uint64_t requests[API_N_ROUTE_LABELS][API_N_STATUS];
};

typedef int (*api__handler_fn)(api_service *svc, const char *body, size_t body_len,
                               api_response *out);
typedef int (*api__call_fn)(api_service *svc, const api_request *rq, api_response *out,
                            api_call **call);

/* GET and HEAD of a path below a prefix route: rest is what follows the
 * prefix (not empty, not NUL-terminated, may hold '/'). */
typedef int (*api__sub_fn)(api_service *svc, const char *rest, size_t rest_len,
                           api_response *out);

typedef struct api__route {
    const char     *path;     /* exact match; a prefix when it ends in '/' */
    const char     *methods;  /* for the Allow header: "GET, HEAD" */
    api__handler_fn get;      /* GET and HEAD (the transport drops HEAD bodies) */
    api__handler_fn post;     /* NULL when the route has no POST */
    api__call_fn    post_call;/* POST answered later (inference); NULL when none */
    unsigned        scope;    /* API_SCOPE_* a key needs; 0 = open (livez, health) */
    api__sub_fn     get_sub;  /* a prefix route's GET and HEAD; NULL for the others */
} api__route;

/* The route table (api_route.c); index i is also the metrics label i,
 * and label n_routes is "other". */
extern const api__route api__routes[];
extern const size_t     api__n_routes;

/* Copies the first n bytes of s (at most len - 1, up to a NUL) into buf for
 * an error message, control characters and non-ASCII bytes as '?'; buf. */
const char *api__printable(char *buf, size_t len, const char *s, size_t n);

/* Route index of path (without query), or -1: an exact route, or the
 * prefix route path lies below. */
int api__route_find(const char *path, size_t path_len);

/* api_engine.c.  pin: the current engine, pinned for an api_call (call
 * with swap_lock held for reading, as handlers are); NULL before start.
 * engine_stats: the counters and gauges of the current engine plus the
 * retired ones (swap_lock held for reading).  engines_free: every engine
 * (api_service_free). */
api__eng *api__pin(api_service *svc);
void      api__unpin(api__eng *h);
void      api__engine_stats(api_service *svc, eng_engine_stats *st);
void      api__engines_free(api_service *svc);

/* Handlers that live in their own files. */
int api__health(api_service *svc, const char *body, size_t body_len, api_response *out);
int api__livez(api_service *svc, const char *body, size_t body_len, api_response *out);
int api__readyz(api_service *svc, const char *body, size_t body_len, api_response *out);
int api__metrics(api_service *svc, const char *body, size_t body_len, api_response *out);

/* api_infer.c / api_call.c */
int api__completions(api_service *svc, const api_request *rq, api_response *out, api_call **call);
int api__chat(api_service *svc, const api_request *rq, api_response *out, api_call **call);
int api__models(api_service *svc, const char *body, size_t body_len, api_response *out);
int api__model_get(api_service *svc, const char *id, size_t id_len, api_response *out);
int api__tokenize(api_service *svc, const char *body, size_t body_len, api_response *out);
int api__detokenize(api_service *svc, const char *body, size_t body_len, api_response *out);
int api__calibrate_get(api_service *svc, const char *body, size_t body_len, api_response *out);
int api__calibrate_post(api_service *svc, const char *body, size_t body_len, api_response *out);
int api__calibrate_save(api_service *svc, const char *body, size_t body_len, api_response *out);
int api__calibrate_load(api_service *svc, const char *body, size_t body_len, api_response *out);
const char *api__mode_name(int qt_mode);    /* "off", "measure", "quantize" */
void api__fp8_headers_at(api_response *out, int mode, uint64_t epoch);
/* The fingerprint fp8d-<version>-<hash8>-e<epoch>-<mode>, and the
 * X-FP8-* headers on out. */
void api__fingerprint(api_service *svc, char *buf, size_t len);
void api__fp8_headers(api_service *svc, api_response *out);

/* Creates or opens state_dir/rel (rel: "a" or "a/b") one folder at a
 * time without following a symbolic link below state_dir, and checks the
 * last folder holds no link (api_statedir.c).  0, or a negative errno
 * (-ELOOP for a link) with msg naming the path. */
int api__state_subdir(const char *state_dir, const char *rel, char *msg, size_t msglen);

/* Fills out with status and a copy of json (a NUL-terminated string). */
int api__json_response(api_response *out, int status, const char *json);
/* Fills out with status and o serialized compactly; takes o (NULL allowed:
 * a failed json_pack upstream) and answers 500 when out of memory. */
int api__json_reply(api_response *out, int status, json_t *o);

#endif
