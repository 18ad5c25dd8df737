/* fuzz_api.c: api_handle_request, the HTTP/JSON contract, with arbitrary
 * request bodies on every route.  The service is created once on the
 * bundled model (examples/models/shakespeare-tiny-bf16) with its engine
 * started and small limits (max_tokens 4, n 2, 64 prompt tokens) so each
 * input stays cheap; a route that answers later is driven to the end the
 * way the transport does (wake, api_call_poll, api_call_read).
 *
 * Input: a route byte, a state byte, then the body.
 *   route byte (mod N+1): one of k_routes below (routes that do not exist
 *     yet answer 404, and start being fuzzed the day they exist); N: the
 *     body starts with "METHOD PATH\n" (arbitrary bytes) and the rest is
 *     the body
 *   state byte: bits 0-1 (mod 3) loading, ready, stopping; bits 2-3 the
 *     key sent: 0-1 the key with every scope, 2 none, 3 a wrong one
 * Every answer must be well formed: rc 0, a status in 100..599, a content
 * type, a NUL-terminated body of body_len bytes, at most API_MAX_HEADERS
 * headers; a JSON body must parse, and an error status must carry the
 * {"error": {"message": ...}} shape of api.h (health probes excepted); a stream must be SSE events
 * "data: <JSON object>" or "data: [DONE]" and end within 10 s.  The
 * metrics hooks run around each request and must return in-flight to
 * zero.
 *
 * The calibration routes write under the service's state directory, here
 * a temporary one (removed at exit).
 */
#include "config.h"

#include "api/api.h"
#include "kernels/kernels.h"
#include "kernels/kn_base.h"
#include "tests/fuzz/fuzz_util.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const struct {
    const char *method, *path;
} k_routes[] = {
    { "GET", "/health" },   { "HEAD", "/v1/health" }, { "GET", "/livez" },
    { "GET", "/readyz" },   { "GET", "/metrics" },    { "GET", "/v1/models" },
    { "POST", "/v1/completions" }, { "POST", "/v1/chat/completions" },
    { "POST", "/tokenize" }, { "POST", "/detokenize" },
    { "GET", "/calibrate" }, { "POST", "/calibrate" },
    { "POST", "/health" },  { "DELETE", "/v1/completions" }, { "GET", "/metrics?x=1" },
    { "POST", "/calibrate/save" }, { "POST", "/calibrate/load" }, { "HEAD", "/calibrate" },
};
#define N_ROUTES (sizeof(k_routes) / sizeof(k_routes[0]))

static api_service *g_svc;
static const char k_keys[] = "fuzz-key-all inference,metrics,admin\n";
static const char *const k_auth[4] = {
    "Bearer fuzz-key-all", "Bearer fuzz-key-all", NULL, "Bearer not-the-key",
};

static void quiet(int level, const char *module, const char *msg, void *ud)
{
}

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_woken;

static void free_service(void)
{
    api_service_stop_engine(g_svc);
    api_service_free(g_svc);
    g_svc = NULL;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    api_service_params p;
    static char keys[4200];
    char dir[4096], err[512] = "";
    int rc;

    kn_log_set(quiet, NULL, 0);
    /* as fp8d's main does: the engine's FP8 paths use the active kernels */
    FUZZ_CHECK(kn_init(NULL) == 0, "kn_init");
    api_service_params_default(&p);
    p.model_path = fuzz_path(dir, sizeof(dir), "examples/models/shakespeare-tiny-bf16");
    p.threads = 1;
    p.max_tokens_limit = 4;
    p.max_n = 2;
    p.max_prompt_tokens = 64;
    p.request_timeout_ms = 5000;
    p.state_dir = fuzz_tmpdir();
    fuzz_write_file(p.state_dir, "keys", k_keys, strlen(k_keys));
    snprintf(keys, sizeof(keys), "%s/keys", p.state_dir);
    p.api_keys_file = keys;
    rc = api_service_new(&g_svc, &p, err, sizeof(err));
    FUZZ_CHECK(rc == 0, "api_service_new(%s): %s", dir, err);
    atexit(free_service);
    rc = api_service_start(g_svc, err, sizeof(err));
    FUZZ_CHECK(rc == 0, "api_service_start: %s", err);
    for (int i = 0; (rc = api_service_poll(g_svc, err, sizeof(err))) == 0; i++) {
        FUZZ_CHECK(i < 6000, "the model did not load in 60 s");
        sleep_ms(10);
    }
    FUZZ_CHECK(rc == 1, "loading the model: %s", err);
    return 0;
}

/* Health probes answer 503 with {"status": ...}, not the error shape. */
static bool is_probe(const char *path)
{
    static const char *const probes[] = { "/health", "/v1/health", "/livez", "/readyz" };
    size_t n = strcspn(path, "?");

    for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++)
        if (strlen(probes[i]) == n && strncmp(path, probes[i], n) == 0)
            return true;
    return false;
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
    if (r->status >= 400 && !is_probe(path)) {
        e = json_object_get(root, "error");
        FUZZ_CHECK(json_is_object(e) && json_is_string(json_object_get(e, "message")),
                   "%s %s: status %d without an error message: %.200s", method, path,
                   r->status, r->body);
    }
    json_decref(root);
}

/* wake: may run on the engine thread before we wait; g_woken remembers. */
static void wake(void *ud)
{
    pthread_mutex_lock(&g_mu);
    g_woken = 1;
    pthread_cond_signal(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static void wait_wake(const char *method, const char *path)
{
    struct timespec dl;

    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    pthread_mutex_lock(&g_mu);
    while (!g_woken)
        FUZZ_CHECK(pthread_cond_timedwait(&g_cv, &g_mu, &dl) == 0 || g_woken,
                   "%s %s: no wake-up in 10 s", method, path);
    g_woken = 0;
    pthread_mutex_unlock(&g_mu);
}

/* Checks that text[0..len) is a sequence of SSE events whose data is a
 * JSON object or [DONE]. */
static void check_sse(const char *text, size_t len, const char *method, const char *path)
{
    const char *p = text, *end = text + len;

    while (p < end) {
        const char *e = memmem(p, (size_t)(end - p), "\n\n", 2);
        FUZZ_CHECK(e != NULL, "%s %s: stream ends inside an event: %.200s", method, path, p);
        if (*p != ':') {
            json_error_t jerr;
            json_t *o;
            FUZZ_CHECK(e - p >= 6 && memcmp(p, "data: ", 6) == 0, "%s %s: event %.200s",
                       method, path, p);
            if (!(e - p == 12 && memcmp(p + 6, "[DONE]", 6) == 0)) {
                o = json_loadb(p + 6, (size_t)(e - p - 6), 0, &jerr);
                FUZZ_CHECK(json_is_object(o), "%s %s: event data is not a JSON object (%s): "
                           "%.200s", method, path, jerr.text, p);
                json_decref(o);
            }
        }
        p = e + 2;
    }
}

/* Drives a call to its end as the transport does; fills *r with the answer
 * (a stream's body is collected into r->body). */
static void finish_call(api_call *call, api_response *r, const char *method, const char *path)
{
    char buf[4096];
    char *all = NULL;
    size_t n_all = 0;
    int st;

    for (;;) {
        pthread_mutex_lock(&g_mu);
        g_woken = 0;
        pthread_mutex_unlock(&g_mu);
        if ((st = api_call_poll(call, r)) != API_CALL_PENDING)
            break;
        wait_wake(method, path);
    }
    if (st == API_CALL_STREAM) {
        FUZZ_CHECK(r->body == NULL, "%s %s: a stream with a body", method, path);
        for (;;) {
            ssize_t n;
            pthread_mutex_lock(&g_mu);
            g_woken = 0;
            pthread_mutex_unlock(&g_mu);
            if ((n = api_call_read(call, buf, sizeof(buf))) < 0)
                break;
            if (n == 0) {
                wait_wake(method, path);
                continue;
            }
            FUZZ_CHECK((size_t)n <= sizeof(buf), "%s %s: read %zd", method, path, n);
            all = realloc(all, n_all + (size_t)n + 1);
            FUZZ_CHECK(all != NULL, "out of memory");
            memcpy(all + n_all, buf, (size_t)n);
            n_all += (size_t)n;
            all[n_all] = '\0';
        }
        check_sse(all != NULL ? all : "", n_all, method, path);
        free(all);
        r->body = NULL;
    }
    api_call_release(call, true);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char method[64] = "", path[1024] = "";
    const char *body;
    size_t body_len;
    api_request rq;
    api_response r;
    api_call *call = NULL;
    int rc;

    if (size < 2)
        return 0;
    unsigned route = data[0] % (N_ROUTES + 1);
    api_service_set_state(g_svc, (api_state)((data[1] & 3) % 3));
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
    memset(&rq, 0, sizeof(rq));
    rq.method = method;
    rq.path = path;
    rq.body = body_len > 0 ? body : NULL;
    rq.body_len = body_len;
    rq.authorization = k_auth[(data[1] >> 2) & 3];
    rq.wake = wake;
    api_metrics_request_begin(g_svc);
    rc = api_handle_request(g_svc, &rq, &r, &call);
    FUZZ_CHECK(rc == 0, "%s %s: api_handle_request rc %d", method, path, rc);
    if (call != NULL) {
        api_response_cleanup(&r);
        finish_call(call, &r, method, path);
    }
    if (r.body != NULL || r.status != 200 || call == NULL)
        check_response(&r, method, path);
    api_metrics_request_end(g_svc, path, r.status);
    FUZZ_CHECK(api_metrics_in_flight(g_svc) == 0, "in flight %lld after the request",
               (long long)api_metrics_in_flight(g_svc));
    api_response_cleanup(&r);
    return 0;
}
