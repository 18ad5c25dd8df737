/* api-int.h: what the api/ files share: the service struct, the route
 * table and the metrics counters.  Never included from outside api/. */
#ifndef FP8D_API_INT_H
#define FP8D_API_INT_H

#include "api/api.h"

#include <stdatomic.h>
#include <time.h>

/* Route labels for metrics: the routes of the table plus "other". */
#define API_N_ROUTE_LABELS 6
#define API_STATUS_MIN 100
#define API_STATUS_MAX 599
#define API_N_STATUS (API_STATUS_MAX - API_STATUS_MIN + 1)

struct api_service {
    _Atomic int     state;              /* api_state */
    const char     *version;            /* static */
    struct timespec started;            /* CLOCK_MONOTONIC at api_service_new */
    double          started_unix;       /* wall clock at start, for process_start_time */
    _Atomic int64_t in_flight;
    /* requests[route label][status - API_STATUS_MIN] */
    _Atomic uint64_t requests[API_N_ROUTE_LABELS][API_N_STATUS];
};

typedef int (*api__handler_fn)(api_service *svc, const char *body, size_t body_len,
                               api_response *out);

typedef struct api__route {
    const char     *path;     /* exact match */
    const char     *methods;  /* for the Allow header: "GET, HEAD" */
    api__handler_fn get;      /* GET and HEAD (the transport drops HEAD bodies) */
    api__handler_fn post;     /* NULL when the route has no POST */
} api__route;

/* The route table (api_route.c); index i is also the metrics label i,
 * and label n_routes is "other". */
extern const api__route api__routes[];
extern const size_t     api__n_routes;

/* Route index of path (without query), or -1. */
int api__route_find(const char *path, size_t path_len);

/* Handlers that live in their own files. */
int api__health(api_service *svc, const char *body, size_t body_len, api_response *out);
int api__livez(api_service *svc, const char *body, size_t body_len, api_response *out);
int api__readyz(api_service *svc, const char *body, size_t body_len, api_response *out);
int api__metrics(api_service *svc, const char *body, size_t body_len, api_response *out);

/* Fills out with status and a copy of json (a NUL-terminated string). */
int api__json_response(api_response *out, int status, const char *json);

#endif
