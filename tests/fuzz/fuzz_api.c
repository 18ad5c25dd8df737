/* fuzz_api.c: api_handle, the HTTP/JSON contract, with arbitrary request
 * bodies on every route.  The service is created once on the bundled model
 * (examples/models/shakespeare-tiny-bf16).
 *
 * Input: a route byte, a state byte, then the body.
 *   route byte (mod N+1): one of k_routes below (routes that do not exist
 *     yet answer 404, and start being fuzzed the day they exist); N: the
 *     body starts with "METHOD PATH\n" (arbitrary bytes) and the rest is
 *     the body
 *   state byte (mod 3): loading, ready, stopping
 * Every answer must be well formed: rc 0, a status in 100..599, a content
 * type, a NUL-terminated body of body_len bytes, at most API_MAX_HEADERS
 * headers; a JSON body must parse, and an error status must carry the
 * {"error": {"message": ...}} shape of api.h.  The metrics hooks run around
 * each request and must return in-flight to zero.
 *
 * Left out on purpose: POST /calibrate/save and /calibrate/load take file
 * paths; fuzzing them writes where the input says.  They belong here once
 * the service takes a state directory the harness can point at a
 * temporary one (the path rules have their own tests, issue 8). */
#include "config.h"

#include "api/api.h"
#include "kernels/kn_base.h"
#include "tests/fuzz/fuzz_util.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *method, *path;
} k_routes[] = {
    { "GET", "/health" },   { "HEAD", "/v1/health" }, { "GET", "/livez" },
    { "GET", "/readyz" },   { "GET", "/metrics" },    { "GET", "/v1/models" },
    { "POST", "/v1/completions" }, { "POST", "/v1/chat/completions" },
    { "POST", "/tokenize" }, { "POST", "/detokenize" },
    { "GET", "/calibrate" }, { "POST", "/calibrate" },
    { "POST", "/health" },  { "DELETE", "/v1/completions" }, { "GET", "/metrics?x=1" },
};
#define N_ROUTES (sizeof(k_routes) / sizeof(k_routes[0]))

static api_service *g_svc;

static void quiet(int level, const char *module, const char *msg, void *ud)
{
}

static void free_service(void)
{
    api_service_free(g_svc);
    g_svc = NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    api_service_params p;
    char dir[4096], err[512] = "";
    int rc;

    kn_log_set(quiet, NULL, 0);
    api_service_params_default(&p);
    p.model_path = fuzz_path(dir, sizeof(dir), "examples/models/shakespeare-tiny-bf16");
    p.threads = 1;
    rc = api_service_new(&g_svc, &p, err, sizeof(err));
    FUZZ_CHECK(rc == 0, "api_service_new(%s): %s", dir, err);
    atexit(free_service);
    return 0;
}

static void check_response(const api_response *r, const char *method, const char *path)
{
    json_error_t jerr;
    json_t *root, *e;

    FUZZ_CHECK(r->status >= 100 && r->status <= 599, "%s %s: status %d", method, path,
               r->status);
    FUZZ_CHECK(r->content_type != NULL, "%s %s: no content type", method, path);
    FUZZ_CHECK(r->body != NULL && strlen(r->body) == r->body_len,
               "%s %s: body_len %zu, strlen %zu", method, path, r->body_len,
               r->body != NULL ? strlen(r->body) : 0);
    FUZZ_CHECK(r->n_headers <= API_MAX_HEADERS, "%s %s: %zu headers", method, path,
               r->n_headers);
    if (strncmp(r->content_type, "application/json", 16) != 0)
        return;
    root = json_loadb(r->body, r->body_len, 0, &jerr);
    FUZZ_CHECK(root != NULL, "%s %s: status %d, body is not JSON (%s): %.200s", method, path,
               r->status, jerr.text, r->body);
    if (r->status >= 400) {
        e = json_object_get(root, "error");
        FUZZ_CHECK(json_is_object(e) && json_is_string(json_object_get(e, "message")),
                   "%s %s: status %d without an error message: %.200s", method, path,
                   r->status, r->body);
    }
    json_decref(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char method[64] = "", path[1024] = "";
    const char *body;
    size_t body_len;
    api_response r;
    int rc;

    if (size < 2)
        return 0;
    unsigned route = data[0] % (N_ROUTES + 1);
    api_service_set_state(g_svc, (api_state)(data[1] % 3));
    body = (const char *)data + 2;
    body_len = size - 2;
    if (route < N_ROUTES) {
        snprintf(method, sizeof(method), "%s", k_routes[route].method);
        snprintf(path, sizeof(path), "%s", k_routes[route].path);
    } else {
        /* "METHOD PATH\n": each part cut at the first NUL, as a C string. */
        const char *nl = memchr(body, '\n', body_len), *sp;
        size_t line = nl != NULL ? (size_t)(nl - body) : body_len;
        sp = memchr(body, ' ', line);
        size_t m_len = sp != NULL ? (size_t)(sp - body) : line;
        snprintf(method, sizeof(method), "%.*s", (int)m_len, body);
        if (sp != NULL)
            snprintf(path, sizeof(path), "%.*s", (int)(line - m_len - 1), sp + 1);
        body += line + (nl != NULL);
        body_len -= line + (nl != NULL);
    }
    api_metrics_request_begin(g_svc);
    rc = api_handle(g_svc, method, path, body_len > 0 ? body : NULL, body_len, &r);
    FUZZ_CHECK(rc == 0, "%s %s: api_handle rc %d", method, path, rc);
    check_response(&r, method, path);
    api_metrics_request_end(g_svc, path, r.status);
    FUZZ_CHECK(api_metrics_in_flight(g_svc) == 0, "in flight %lld after the request",
               (long long)api_metrics_in_flight(g_svc));
    api_response_cleanup(&r);
    return 0;
}
