/* check_api.c: api/ without sockets: the route table, the error table and
 * bodies (404/405/413/503), readiness semantics, the model directory check
 * and the Prometheus text format of /metrics.  Expected bodies are written
 * out by hand here and compared with json_equal. */
#include "config.h"

#include "api/api.h"

#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <regex.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[64];          /* a model directory holding config.json */
static api_service *g_svc;

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

static void setup(void)
{
    char path[128], err[256];
    api_service_params p;

    strcpy(g_dir, "/tmp/check_api.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
    snprintf(path, sizeof(path), "%s/config.json", g_dir);
    write_file(path, "{\"architectures\": [\"LlamaForCausalLM\"]}");
    api_service_params_default(&p);
    p.model_path = g_dir;
    ck_assert_int_eq(api_service_new(&g_svc, &p, err, sizeof(err)), 0);
}

static void teardown(void)
{
    char cmd[128];

    api_service_free(g_svc);
    g_svc = NULL;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
    ck_assert_int_eq(system(cmd), 0);
}

static json_t *body_json(const api_response *r)
{
    json_error_t e;
    json_t *j;

    ck_assert_ptr_nonnull(r->body);
    ck_assert_uint_eq(strlen(r->body), r->body_len);
    j = json_loads(r->body, 0, &e);
    ck_assert_msg(j != NULL, "body is not JSON: %s (%s)", r->body, e.text);
    return j;
}

static void assert_json_body(const api_response *r, const char *expected)
{
    json_t *got = body_json(r), *want = json_loads(expected, 0, NULL);

    ck_assert_ptr_nonnull(want);
    ck_assert_msg(json_equal(got, want), "body %s, expected %s", r->body, expected);
    json_decref(got);
    json_decref(want);
}

static const char *header(const api_response *r, const char *name)
{
    for (size_t i = 0; i < r->n_headers; i++)
        if (strcmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

static void call(const char *method, const char *path, api_response *r)
{
    ck_assert_int_eq(api_handle(g_svc, method, path, NULL, 0, r), 0);
    ck_assert_ptr_nonnull(r->content_type);
    if (strcmp(path, "/metrics") != 0 || r->status != 200)
        ck_assert_str_eq(r->content_type, "application/json");
}

/* ---- routes ---------------------------------------------------------- */

START_TEST(test_health_ok_when_ready)
{
    api_response r;

    api_service_set_state(g_svc, API_STATE_READY);
    call("GET", "/health", &r);
    ck_assert_int_eq(r.status, 200);
    assert_json_body(&r, "{\"status\":\"ok\"}");
    api_response_cleanup(&r);
    call("GET", "/v1/health", &r);
    ck_assert_int_eq(r.status, 200);
    api_response_cleanup(&r);
}
END_TEST

START_TEST(test_health_503_unavailable_while_loading)
{
    api_response r;

    ck_assert_int_eq(api_service_state(g_svc), API_STATE_LOADING);   /* the initial state */
    call("GET", "/health", &r);
    ck_assert_int_eq(r.status, 503);
    assert_json_body(&r, "{\"error\":{\"message\":\"model is loading\","
                         "\"type\":\"unavailable_error\",\"code\":\"unavailable\","
                         "\"status\":503}}");
    ck_assert_str_eq(header(&r, "Retry-After"), "5");
    api_response_cleanup(&r);
}
END_TEST

START_TEST(test_readyz_follows_state_with_retry_after)
{
    static const struct { api_state st; int status; const char *body; } cases[] = {
        { API_STATE_LOADING,  503, "{\"status\":\"loading\"}" },
        { API_STATE_READY,    200, "{\"status\":\"ready\"}" },
        { API_STATE_STOPPING, 503, "{\"status\":\"stopping\"}" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        api_response r;
        api_service_set_state(g_svc, cases[i].st);
        call("GET", "/readyz", &r);
        ck_assert_int_eq(r.status, cases[i].status);
        assert_json_body(&r, cases[i].body);
        if (cases[i].status == 503)
            ck_assert_str_eq(header(&r, "Retry-After"), "5");
        else
            ck_assert_ptr_null(header(&r, "Retry-After"));
        api_response_cleanup(&r);
    }
}
END_TEST

START_TEST(test_livez_ok_in_every_state)
{
    for (int st = 0; st < API_STATE_COUNT_; st++) {
        api_response r;
        api_service_set_state(g_svc, (api_state)st);
        call("GET", "/livez", &r);
        ck_assert_int_eq(r.status, 200);
        assert_json_body(&r, "{\"status\":\"ok\"}");
        api_response_cleanup(&r);
    }
}
END_TEST

START_TEST(test_health_503_names_shutdown_when_stopping)
{
    api_response r;
    json_t *j;

    api_service_set_state(g_svc, API_STATE_STOPPING);
    call("GET", "/health", &r);
    ck_assert_int_eq(r.status, 503);
    j = body_json(&r);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "error"), "message")),
                     "server is shutting down");
    json_decref(j);
    api_response_cleanup(&r);
}
END_TEST

START_TEST(test_unknown_route_404_openai_shape)
{
    api_response r;

    call("GET", "/nope", &r);
    ck_assert_int_eq(r.status, 404);
    assert_json_body(&r, "{\"error\":{\"message\":\"no route for GET /nope\","
                         "\"type\":\"not_found_error\",\"code\":\"not_found\",\"status\":404}}");
    api_response_cleanup(&r);
    /* Unknown is unknown whatever the method, and a near miss is not a match. */
    call("DELETE", "/health/", &r);
    ck_assert_int_eq(r.status, 404);
    api_response_cleanup(&r);
}
END_TEST

START_TEST(test_404_for_undecodable_path_is_valid_json)
{
    api_response r;

    /* What MHD hands over for GET /%ff%0a: not UTF-8, with a newline. */
    call("GET", "/\xff\n", &r);
    ck_assert_int_eq(r.status, 404);
    assert_json_body(&r, "{\"error\":{\"message\":\"no route for GET /??\","
                         "\"type\":\"not_found_error\",\"code\":\"not_found\",\"status\":404}}");
    api_response_cleanup(&r);
}
END_TEST

START_TEST(test_wrong_method_405_with_allow)
{
    static const char *methods[] = { "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW" };
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        api_response r;
        json_t *j, *e;
        call(methods[i], "/metrics", &r);
        ck_assert_int_eq(r.status, 405);
        ck_assert_str_eq(header(&r, "Allow"), "GET, HEAD");
        j = body_json(&r);
        e = json_object_get(j, "error");
        ck_assert_str_eq(json_string_value(json_object_get(e, "type")), "invalid_request_error");
        ck_assert_str_eq(json_string_value(json_object_get(e, "code")), "method_not_allowed");
        ck_assert_int_eq(json_integer_value(json_object_get(e, "status")), 405);
        ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(e, "message")),
                                     methods[i]));
        json_decref(j);
        api_response_cleanup(&r);
    }
}
END_TEST

START_TEST(test_query_string_ignored_and_head_allowed)
{
    api_response r;

    api_service_set_state(g_svc, API_STATE_READY);
    call("GET", "/health?verbose=1", &r);
    ck_assert_int_eq(r.status, 200);
    api_response_cleanup(&r);
    call("HEAD", "/livez", &r);
    ck_assert_int_eq(r.status, 200);
    api_response_cleanup(&r);
}
END_TEST

START_TEST(test_route_labels_bounded)
{
    ck_assert_str_eq(api_route_label("/health"), "/health");
    ck_assert_str_eq(api_route_label("/metrics?x"), "/metrics");
    ck_assert_str_eq(api_route_label("/v1/chat/anything"), "other");
    ck_assert_str_eq(api_route_label("/healthz"), "other");
    /* one label for every id below the prefix route, none for the bare prefix */
    ck_assert_str_eq(api_route_label("/v1/models"), "/v1/models");
    ck_assert_str_eq(api_route_label("/v1/models/a"), "/v1/models/");
    ck_assert_str_eq(api_route_label("/v1/models/org/name?x=1"), "/v1/models/");
    ck_assert_str_eq(api_route_label("/v1/models/"), "other");
    ck_assert_str_eq(api_route_label("/v1/models/?x"), "other");
    ck_assert_str_eq(api_route_label("/v1/modelsx"), "other");
}
END_TEST

/* GET /v1/models/{id}: below the prefix route, other methods 405 with its
 * Allow; before a model is loaded 503 like every inference route. */
START_TEST(test_model_retrieve_route)
{
    api_response r;

    call("POST", "/v1/models/m", &r);
    ck_assert_int_eq(r.status, 405);
    ck_assert_str_eq(header(&r, "Allow"), "GET, HEAD");
    api_response_cleanup(&r);
    call("GET", "/v1/models/m", &r);
    ck_assert_int_eq(r.status, 503);
    ck_assert_str_eq(header(&r, "Retry-After"), "1");
    api_response_cleanup(&r);
    call("GET", "/v1/models/", &r);
    ck_assert_int_eq(r.status, 404);
    api_response_cleanup(&r);
}
END_TEST

/* ---- error table ----------------------------------------------------- */

START_TEST(test_error_table_types_and_codes)
{
    static const struct { int status; const char *type, *code; } cases[] = {
        { 400, "invalid_request_error", "invalid_request" },
        { 404, "not_found_error",       "not_found" },
        { 405, "invalid_request_error", "method_not_allowed" },
        { 413, "invalid_request_error", "request_too_large" },
        { 429, "rate_limit_error",      "queue_full" },
        { 500, "server_error",          "internal_error" },
        { 501, "not_supported_error",   "not_supported" },
        { 503, "unavailable_error",     "unavailable" },
        { 418, "invalid_request_error", "invalid_request" },  /* not in the table: 4xx */
        { 599, "server_error",          "internal_error" },   /* not in the table: 5xx */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ck_assert_str_eq(api_error_type(cases[i].status), cases[i].type);
        ck_assert_str_eq(api_error_code(cases[i].status), cases[i].code);
    }
}
END_TEST

START_TEST(test_413_body_and_message_escaping)
{
    api_response r;

    memset(&r, 0, sizeof(r));
    ck_assert_int_eq(api_error_response(&r, 413, "body \"x\" over 10 bytes"), 0);
    ck_assert_int_eq(r.status, 413);
    ck_assert_str_eq(r.content_type, "application/json");
    assert_json_body(&r, "{\"error\":{\"message\":\"body \\\"x\\\" over 10 bytes\","
                         "\"type\":\"invalid_request_error\",\"code\":\"request_too_large\","
                         "\"status\":413}}");
    api_response_cleanup(&r);
}
END_TEST

START_TEST(test_status_from_rc)
{
    ck_assert_int_eq(api_status_from_rc(-EINVAL), 400);
    ck_assert_int_eq(api_status_from_rc(-ENOENT), 404);
    ck_assert_int_eq(api_status_from_rc(-EMSGSIZE), 413);
    ck_assert_int_eq(api_status_from_rc(-EAGAIN), 503);
    ck_assert_int_eq(api_status_from_rc(-EIO), 500);
    ck_assert_int_eq(api_status_from_rc(-ENOMEM), 500);
}
END_TEST

START_TEST(test_header_table_full_is_ignored)
{
    api_response r;

    memset(&r, 0, sizeof(r));
    for (int i = 0; i < API_MAX_HEADERS + 3; i++)
        api_response_add_header(&r, "X-Test", "v");
    ck_assert_uint_eq(r.n_headers, API_MAX_HEADERS);
}
END_TEST

/* ---- auth, CORS, inference without an engine ---------------------------- */

static int call_rq(api_service *svc, const char *method, const char *path, const char *body,
                const char *key, const char *origin, api_response *r)
{
    api_request rq;
    api_call *c = NULL;
    int rc;

    memset(&rq, 0, sizeof(rq));
    rq.method = method;
    rq.path = path;
    rq.body = body;
    rq.body_len = body != NULL ? strlen(body) : 0;
    rq.api_key = key;
    rq.origin = origin;
    rc = api_handle_request(svc, &rq, r, &c);
    ck_assert_ptr_null(c);          /* no engine: nothing is ever submitted */
    return rc;
}

static api_service *keyed_service(const char *keys, const char *cors)
{
    char path[128], err[256];
    api_service_params p;
    api_service *svc;

    snprintf(path, sizeof(path), "%s/keys", g_dir);
    write_file(path, keys);
    api_service_params_default(&p);
    p.model_path = g_dir;
    p.api_keys_file = path;
    p.cors_origins = cors;
    ck_assert_msg(api_service_new(&svc, &p, err, sizeof(err)) == 0, "%s", err);
    api_service_set_state(svc, API_STATE_READY);
    return svc;
}

START_TEST(test_key_scopes)
{
    api_service *svc = keyed_service("# comment\nsk-i inference\nsk-m metrics\n\nsk-a admin\n",
                                     NULL);
    static const struct { const char *m, *path, *key; int status; } cases[] = {
        { "GET", "/livez", NULL, 200 },       { "GET", "/health", NULL, 503 },
        { "GET", "/metrics", NULL, 401 },     { "GET", "/metrics", "sk-x", 401 },
        { "GET", "/metrics", "sk-i", 403 },   { "GET", "/metrics", "sk-m", 200 },
        { "GET", "/metrics", "sk-a", 200 },   { "GET", "/metrics", "sk-", 401 },
        { "GET", "/metrics", "sk-mm", 401 },  { "GET", "/calibrate", "sk-i", 403 },
        { "GET", "/calibrate", "sk-m", 403 }, { "POST", "/v1/completions", "sk-m", 403 },
    };
    api_response r;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        /* /health is open: with no engine it reports loading (503), not 401. */
        if (strcmp(cases[i].path, "/health") == 0)
            api_service_set_state(svc, API_STATE_LOADING);
        call_rq(svc, cases[i].m, cases[i].path, "{}", cases[i].key, NULL, &r);
        ck_assert_msg(r.status == cases[i].status, "%s %s key %s: %d, expected %d",
                      cases[i].m, cases[i].path, cases[i].key ? cases[i].key : "-", r.status,
                      cases[i].status);
        if (r.status == 401)
            ck_assert_str_eq(header(&r, "WWW-Authenticate"), "Bearer");
        api_response_cleanup(&r);
        api_service_set_state(svc, API_STATE_READY);
    }
    api_service_free(svc);
}
END_TEST

START_TEST(test_calibrate_forbidden_without_keys_and_inference_503_without_engine)
{
    api_response r;

    api_service_set_state(g_svc, API_STATE_READY);
    call_rq(g_svc, "GET", "/calibrate", NULL, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 403);
    api_response_cleanup(&r);
    call_rq(g_svc, "POST", "/v1/completions", "{\"prompt\":\"a\"}", NULL, NULL, &r);
    ck_assert_int_eq(r.status, 503);
    ck_assert_str_eq(header(&r, "Retry-After"), "1");
    assert_json_body(&r, "{\"error\":{\"message\":\"the server is loading the model; retry "
                         "later\",\"type\":\"unavailable_error\",\"code\":\"unavailable\","
                         "\"status\":503}}");
    api_response_cleanup(&r);
    call_rq(g_svc, "GET", "/v1/completions", NULL, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 405);
    ck_assert_str_eq(header(&r, "Allow"), "POST");
    api_response_cleanup(&r);
}
END_TEST

START_TEST(test_cors_only_for_listed_origins)
{
    api_service *svc = keyed_service("sk-i inference\n", "http://a.example, http://b.example");
    api_response r;

    call_rq(svc, "OPTIONS", "/v1/completions", NULL, NULL, "http://b.example", &r);
    ck_assert_int_eq(r.status, 204);
    ck_assert_str_eq(header(&r, "Access-Control-Allow-Origin"), "http://b.example");
    ck_assert_str_eq(header(&r, "Access-Control-Allow-Methods"), "POST");
    api_response_cleanup(&r);
    call_rq(svc, "OPTIONS", "/v1/completions", NULL, NULL, "http://c.example", &r);
    ck_assert_int_eq(r.status, 401);          /* not a preflight: a key is needed */
    ck_assert_ptr_null(header(&r, "Access-Control-Allow-Origin"));
    api_response_cleanup(&r);
    call_rq(svc, "GET", "/livez", NULL, NULL, "http://a.example", &r);
    ck_assert_str_eq(header(&r, "Access-Control-Allow-Origin"), "http://a.example");
    ck_assert_str_eq(header(&r, "Vary"), "Origin");
    api_response_cleanup(&r);
    call_rq(g_svc, "GET", "/livez", NULL, NULL, "http://a.example", &r);   /* CORS off */
    ck_assert_ptr_null(header(&r, "Access-Control-Allow-Origin"));
    api_response_cleanup(&r);
    api_service_free(svc);
}
END_TEST

/* ---- model directory check -------------------------------------------- */

static int new_service(const char *dir, char *err, size_t errlen)
{
    api_service_params p;
    api_service *svc = NULL;
    int rc;

    api_service_params_default(&p);
    p.model_path = dir;
    rc = api_service_new(&svc, &p, err, errlen);
    ck_assert(rc == 0 ? svc != NULL : svc == NULL);
    api_service_free(svc);
    return rc;
}

START_TEST(test_model_dir_errors_name_the_path)
{
    char sub[128], path[160], err[512];

    ck_assert_int_eq(new_service("/nonexistent/fp8d-model", err, sizeof(err)), -ENOENT);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/fp8d-model"));

    snprintf(path, sizeof(path), "%s/config.json", g_dir);
    ck_assert_int_eq(new_service(path, err, sizeof(err)), -ENOTDIR);   /* a file, not a dir */
    ck_assert_ptr_nonnull(strstr(err, "not a directory"));

    snprintf(sub, sizeof(sub), "%s/empty", g_dir);
    ck_assert_int_eq(mkdir(sub, 0700), 0);
    ck_assert_int_eq(new_service(sub, err, sizeof(err)), -ENOENT);
    ck_assert_ptr_nonnull(strstr(err, "config.json"));
    ck_assert_ptr_nonnull(strstr(err, sub));

    snprintf(path, sizeof(path), "%s/config.json", sub);
    write_file(path, "{\"hidden_size\": 128,\n  oops}");
    ck_assert_int_eq(new_service(sub, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "line 2"));

    write_file(path, "[1, 2]");
    ck_assert_int_eq(new_service(sub, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "not a JSON object"));

    ck_assert_int_eq(new_service("", err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(new_service(g_dir, err, sizeof(err)), 0);
}
END_TEST

/* ---- /metrics text format --------------------------------------------- */

/* Checks the exposition format line by line (Prometheus text 0.0.4):
 * HELP/TYPE comments, then samples whose family was TYPE'd before, names
 * and labels well formed, values numbers, counters named *_total. */
static void check_exposition(const char *text)
{
    regex_t sample, help, type;
    char line[512], fam[128][96];
    bool histo[128];
    size_t n_fam = 0;
    const char *p = text;

    ck_assert_int_eq(regcomp(&sample, "^([a-zA-Z_:][a-zA-Z0-9_:]*)"
                             "(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\""
                             "(,[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\")*\\})? "
                             "(-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?)$", REG_EXTENDED), 0);
    ck_assert_int_eq(regcomp(&help, "^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .+$", REG_EXTENDED), 0);
    ck_assert_int_eq(regcomp(&type, "^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram)$",
                             REG_EXTENDED), 0);
    ck_assert_msg(text[strlen(text) - 1] == '\n', "exposition must end with a newline");
    while (*p != '\0') {
        size_t len = strcspn(p, "\n");
        regmatch_t m[3];
        ck_assert_uint_lt(len, sizeof(line));
        memcpy(line, p, len);
        line[len] = '\0';
        p += len + (p[len] == '\n');
        if (strncmp(line, "# HELP ", 7) == 0) {
            ck_assert_msg(regexec(&help, line, 0, NULL, 0) == 0, "bad HELP: %s", line);
        } else if (strncmp(line, "# TYPE ", 7) == 0) {
            ck_assert_msg(regexec(&type, line, 3, m, 0) == 0, "bad TYPE: %s", line);
            ck_assert_uint_lt(n_fam, 128);
            histo[n_fam] = strncmp(line + m[2].rm_so, "histogram", 9) == 0;
            snprintf(fam[n_fam++], sizeof(fam[0]), "%.*s", (int)(m[1].rm_eo - m[1].rm_so),
                     line + m[1].rm_so);
            if (strncmp(line + m[2].rm_so, "counter", 7) == 0)
                ck_assert_msg(m[1].rm_eo > 6 && strncmp(line + m[1].rm_eo - 6, "_total", 6) == 0,
                              "counter not named *_total: %s", line);
        } else {
            int known = 0;
            ck_assert_msg(regexec(&sample, line, 2, m, 0) == 0, "bad sample: '%s'", line);
            for (size_t i = 0; i < n_fam; i++) {
                size_t nl = (size_t)(m[1].rm_eo - m[1].rm_so), fl = strlen(fam[i]);
                if (strncmp(line, fam[i], fl) != 0)
                    continue;
                /* A histogram's samples: NAME_bucket{le=...}, NAME_sum, NAME_count. */
                if (nl == fl || (histo[i] && ((nl == fl + 7 && !strncmp(line + fl, "_bucket", 7)) ||
                                              (nl == fl + 4 && !strncmp(line + fl, "_sum", 4)) ||
                                              (nl == fl + 6 && !strncmp(line + fl, "_count", 6)))))
                    known = 1;
            }
            ck_assert_msg(known, "sample before its # TYPE: %s", line);
        }
    }
    regfree(&sample);
    regfree(&help);
    regfree(&type);
}

static int has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p += n)
        if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
            return 1;
    return 0;
}

START_TEST(test_metrics_exposition_format)
{
    api_response r;

    api_service_set_state(g_svc, API_STATE_READY);
    api_metrics_request_begin(g_svc);
    api_metrics_request_begin(g_svc);
    api_metrics_request_begin(g_svc);
    api_metrics_request_begin(g_svc);
    api_metrics_request_end(g_svc, "/health", 200);
    api_metrics_request_end(g_svc, "/health?x=1", 200);
    api_metrics_request_end(g_svc, "/v1/nothing", 404);
    ck_assert_int_eq(api_metrics_in_flight(g_svc), 1);
    call("GET", "/metrics", &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
    check_exposition(r.body);
    ck_assert_msg(has_line(r.body, "fp8d:build_info{version=\"" PACKAGE_VERSION "\"} 1"),
                  "%s", r.body);
    ck_assert(has_line(r.body, "fp8d:http_requests_total{route=\"/health\",status=\"200\"} 2"));
    ck_assert(has_line(r.body, "fp8d:http_requests_total{route=\"other\",status=\"404\"} 1"));
    ck_assert(has_line(r.body, "fp8d:http_requests_in_flight 1"));
    ck_assert(has_line(r.body, "fp8d:server_state{state=\"ready\"} 1"));
    ck_assert(has_line(r.body, "fp8d:server_state{state=\"loading\"} 0"));
    ck_assert(has_line(r.body, "# TYPE fp8d:uptime_seconds gauge"));
    /* Nothing was counted for a route that saw no request. */
    ck_assert_ptr_null(strstr(r.body, "route=\"/readyz\""));
    api_response_cleanup(&r);
}
END_TEST

START_TEST(test_metrics_uptime_grows)
{
    api_response r1, r2;
    double u1, u2;
    const char *p;

    call("GET", "/metrics", &r1);
    usleep(20000);
    call("GET", "/metrics", &r2);
    ck_assert_ptr_nonnull(p = strstr(r1.body, "\nfp8d:uptime_seconds "));
    u1 = strtod(p + 21, NULL);
    ck_assert_ptr_nonnull(p = strstr(r2.body, "\nfp8d:uptime_seconds "));
    u2 = strtod(p + 21, NULL);
    ck_assert_msg(u1 >= 0 && u2 - u1 >= 0.015 && u2 - u1 < 5, "uptime %f then %f", u1, u2);
    api_response_cleanup(&r1);
    api_response_cleanup(&r2);
}
END_TEST

static Suite *api_suite(void)
{
    Suite *s = suite_create("api");
    TCase *routes = tcase_create("routes"), *errors = tcase_create("errors");
    TCase *service = tcase_create("service"), *metrics = tcase_create("metrics");

    tcase_add_checked_fixture(routes, setup, teardown);
    tcase_add_test(routes, test_health_ok_when_ready);
    tcase_add_test(routes, test_health_503_unavailable_while_loading);
    tcase_add_test(routes, test_readyz_follows_state_with_retry_after);
    tcase_add_test(routes, test_livez_ok_in_every_state);
    tcase_add_test(routes, test_health_503_names_shutdown_when_stopping);
    tcase_add_test(routes, test_unknown_route_404_openai_shape);
    tcase_add_test(routes, test_404_for_undecodable_path_is_valid_json);
    tcase_add_test(routes, test_wrong_method_405_with_allow);
    tcase_add_test(routes, test_query_string_ignored_and_head_allowed);
    tcase_add_test(routes, test_route_labels_bounded);
    tcase_add_test(routes, test_model_retrieve_route);
    suite_add_tcase(s, routes);

    tcase_add_test(errors, test_error_table_types_and_codes);
    tcase_add_test(errors, test_413_body_and_message_escaping);
    tcase_add_test(errors, test_status_from_rc);
    tcase_add_test(errors, test_header_table_full_is_ignored);
    suite_add_tcase(s, errors);

    tcase_add_checked_fixture(service, setup, teardown);
    tcase_add_test(service, test_model_dir_errors_name_the_path);
    tcase_add_test(service, test_key_scopes);
    tcase_add_test(service, test_calibrate_forbidden_without_keys_and_inference_503_without_engine);
    tcase_add_test(service, test_cors_only_for_listed_origins);
    suite_add_tcase(s, service);

    tcase_add_checked_fixture(metrics, setup, teardown);
    tcase_add_test(metrics, test_metrics_exposition_format);
    tcase_add_test(metrics, test_metrics_uptime_grows);
    suite_add_tcase(s, metrics);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(api_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
