/* api_health.c: /health, /livez and /readyz, all read from the one
 * readiness state.  /livez never depends on the model (the process and
 * its loop answer); /health follows llama.cpp (200 {"status":"ok"}, or 503
 * unavailable_error while loading); /readyz is the probe for load
 * balancers (503 + Retry-After with {"status":"<state>"}). */
#include "config.h"

#include "api/api-int.h"

#include <stdio.h>

/* Seconds a client should wait before asking again while not ready. */
#define RETRY_AFTER_S "5"

int api__health(api_service *svc, const char *body, size_t body_len, api_response *out)
{
    api_state st = api_service_state(svc);
    int rc;

    if (st == API_STATE_READY)
        return api__json_response(out, 200, "{\"status\":\"ok\"}");
    rc = api_error_response(out, 503, st == API_STATE_LOADING
                                      ? "model is loading"
                                      : "server is shutting down");
    api_response_add_header(out, "Retry-After", RETRY_AFTER_S);
    return rc;
}

int api__livez(api_service *svc, const char *body, size_t body_len, api_response *out)
{
    return api__json_response(out, 200, "{\"status\":\"ok\"}");
}

int api__readyz(api_service *svc, const char *body, size_t body_len, api_response *out)
{
    api_state st = api_service_state(svc);
    char json[64];
    int rc;

    snprintf(json, sizeof(json), "{\"status\":\"%s\"}", api_state_name(st));
    if (st == API_STATE_READY)
        return api__json_response(out, 200, json);
    rc = api__json_response(out, 503, json);
    api_response_add_header(out, "Retry-After", RETRY_AFTER_S);
    return rc;
}
