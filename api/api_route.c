/* api_route.c: the routing table and api_handle, the one entry point the
 * transport calls.  Adding an endpoint = one row here plus its handler.
 * Matching is exact on the path (the query string is ignored), except
 * below a prefix route (its path ends in '/'); an unknown path is 404
 * whatever the method, a known path with the wrong method 405 with an
 * Allow header. */
#include "config.h"

#include "api/api-int.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define SC_ANY (API_SCOPE_INFERENCE | API_SCOPE_METRICS)

const api__route api__routes[] = {
    { "/health",              "GET, HEAD", api__health,  NULL, NULL, 0, NULL },
    { "/v1/health",           "GET, HEAD", api__health,  NULL, NULL, 0, NULL },
    { "/livez",               "GET, HEAD", api__livez,   NULL, NULL, 0, NULL },
    { "/readyz",              "GET, HEAD", api__readyz,  NULL, NULL, SC_ANY, NULL },
    { "/metrics",             "GET, HEAD", api__metrics, NULL, NULL, API_SCOPE_METRICS, NULL },
    { "/v1/models",           "GET, HEAD", api__models,  NULL, NULL, API_SCOPE_INFERENCE, NULL },
    /* OpenAI's "retrieve model"; an id may hold '/' ("org/name") */
    { "/v1/models/",          "GET, HEAD", NULL, NULL, NULL, API_SCOPE_INFERENCE, api__model_get },
    { "/v1/completions",      "POST",      NULL, NULL, api__completions, API_SCOPE_INFERENCE,
      NULL },
    { "/v1/chat/completions", "POST",      NULL, NULL, api__chat, API_SCOPE_INFERENCE, NULL },
    { "/tokenize",            "POST",      NULL, api__tokenize, NULL, API_SCOPE_INFERENCE, NULL },
    { "/detokenize",          "POST",      NULL, api__detokenize, NULL, API_SCOPE_INFERENCE, NULL },
    { "/calibrate",           "GET, HEAD, POST", api__calibrate_get, api__calibrate_post, NULL,
      API_SCOPE_ADMIN, NULL },
    { "/calibrate/save",      "POST",      NULL, api__calibrate_save, NULL, API_SCOPE_ADMIN, NULL },
    { "/calibrate/load",      "POST",      NULL, api__calibrate_load, NULL, API_SCOPE_ADMIN, NULL },
};
const size_t api__n_routes = sizeof(api__routes) / sizeof(api__routes[0]);

_Static_assert(sizeof(api__routes) / sizeof(api__routes[0]) + 1 == API_N_ROUTE_LABELS,
               "one metrics label per route plus \"other\"");

int api__route_find(const char *path, size_t path_len)
{
    for (size_t i = 0; i < api__n_routes; i++) {
        size_t n = strlen(api__routes[i].path);
        bool prefix = api__routes[i].path[n - 1] == '/';
        if ((prefix ? n < path_len : n == path_len) &&
            memcmp(api__routes[i].path, path, n) == 0)
            return (int)i;
    }
    return -1;
}

static size_t path_len_without_query(const char *path)
{
    const char *q = strchr(path, '?');
    return q != NULL ? (size_t)(q - path) : strlen(path);
}

const char *api_route_label(const char *path)
{
    int i = path != NULL ? api__route_find(path, path_len_without_query(path)) : -1;
    return i >= 0 ? api__routes[i].path : "other";
}

/* The transport hands us percent-decoded paths, which need not be valid
 * UTF-8 (jansson refuses those). */
const char *api__printable(char *buf, size_t len, const char *s, size_t n)
{
    size_t i = 0;

    for (; i < n && s[i] != '\0' && i + 1 < len; i++)
        buf[i] = (unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f ? '?' : s[i];
    buf[i] = '\0';
    return buf;
}

/* Constant-time comparison of a presented key with a configured one. */
static bool key_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    unsigned char d = (unsigned char)(alen != blen);

    for (size_t i = 0; i < blen; i++)
        d |= (unsigned char)((i < alen ? (unsigned char)a[i] : 0) ^ (unsigned char)b[i]);
    return d == 0;
}

/* The key a request presents, or NULL: "Authorization: Bearer KEY" (the
 * scheme is case-insensitive and may be followed by several spaces, RFC
 * 9110 11.4), else "X-Api-Key: KEY".  MHD strips the blanks before a
 * header value but not those after it, which RFC 9110 5.5 says are not
 * part of the value either: a key pasted with a trailing space still
 * matches.  An empty token matches no key (keys are never empty). */
static const char *presented_key(const api_request *rq, size_t *len)
{
    const char *k = NULL;

    if (rq->authorization != NULL && strncasecmp(rq->authorization, "Bearer ", 7) == 0)
        k = rq->authorization + 7 + strspn(rq->authorization + 7, " ");
    else if (rq->api_key != NULL)
        k = rq->api_key;
    if (k == NULL)
        return NULL;
    *len = strlen(k);
    while (*len > 0 && (k[*len - 1] == ' ' || k[*len - 1] == '\t'))
        (*len)--;
    return k;
}

/* 0 when rq may use a route needing scope, else 401 or 403. */
static int authorize(const api_service *svc, const api_request *rq, unsigned scope)
{
    const char *k;
    size_t klen = 0;
    unsigned have = 0;

    if (scope == 0)
        return 0;
    if (svc->n_keys == 0)
        return scope & API_SCOPE_ADMIN ? 403 : 0;
    if ((k = presented_key(rq, &klen)) == NULL)
        return 401;
    for (size_t i = 0; i < svc->n_keys; i++)
        if (key_equal(k, klen, svc->keys[i].key, svc->keys[i].len))
            have |= svc->keys[i].scopes;
    if (have == 0)
        return 401;
    if (have & API_SCOPE_ADMIN)
        have |= API_SCOPE_INFERENCE | API_SCOPE_METRICS;
    return (have & scope) != 0 ? 0 : 403;
}

/* The allowed origin to echo, or NULL (CORS off or origin not listed). */
static const char *cors_allowed(const api_service *svc, const char *origin)
{
    const char *p = svc->cors;
    size_t olen;

    if (p == NULL || origin == NULL)
        return NULL;
    olen = strlen(origin);
    while (*p != '\0') {
        size_t n = strcspn(p, ","), len;
        while (n > 0 && *p == ' ') {
            p++;
            n--;
        }
        for (len = n; len > 0 && p[len - 1] == ' '; len--)
            ;
        if ((len == 1 && *p == '*') || (len == olen && memcmp(p, origin, len) == 0))
            return origin;
        p += n;
        if (*p == ',')
            p++;
    }
    return NULL;
}

static void add_cors(const api_service *svc, const api_request *rq, api_response *out)
{
    const char *o = cors_allowed(svc, rq->origin);

    /* With CORS on, every answer depends on Origin, the refused ones too
     * (they lack Allow-Origin): a shared cache must not hand one origin's
     * answer to another. */
    if (svc->cors != NULL)
        api_response_add_header(out, "Vary", "Origin");
    if (o != NULL)
        api_response_add_header(out, "Access-Control-Allow-Origin", o);
}

int api_handle_request(api_service *svc, const api_request *rq, api_response *out,
                       api_call **call)
{
    const api__route *r;
    api__handler_fn fn = NULL;
    char msg[200], m[17], p[129];
    int i, rc, st;

    memset(out, 0, sizeof(*out));
    *call = NULL;
    if (rq->method == NULL || rq->path == NULL)
        return api_error_response(out, 400, "request has no method or path");
    i = api__route_find(rq->path, path_len_without_query(rq->path));
    if (i < 0) {
        snprintf(msg, sizeof(msg), "no route for %s %s",
                 api__printable(m, sizeof(m), rq->method, SIZE_MAX),
                 api__printable(p, sizeof(p), rq->path, SIZE_MAX));
        return api_error_response(out, 404, msg);
    }
    r = &api__routes[i];
    if (strcmp(rq->method, "OPTIONS") == 0 && cors_allowed(svc, rq->origin) != NULL) {
        /* CORS preflight: answered without a key (browsers send none). */
        out->status = 204;
        out->content_type = "text/plain";
        api_response_add_header(out, "Access-Control-Allow-Methods", r->methods);
        api_response_add_header(out, "Access-Control-Allow-Headers",
                                "Authorization, Content-Type, X-Api-Key, X-Request-Timeout");
        api_response_add_header(out, "Access-Control-Max-Age", "600");
        add_cors(svc, rq, out);
        return 0;
    }
    if ((st = authorize(svc, rq, r->scope)) != 0) {
        if (st == 401)
            rc = api_error_response(out, 401, "missing or invalid API key (send "
                                    "\"Authorization: Bearer KEY\" or \"X-Api-Key: KEY\")");
        else
            snprintf(msg, sizeof(msg), "this API key may not use %s (needs the %s scope)",
                     r->path, r->scope & API_SCOPE_ADMIN ? "admin" :
                     r->scope & API_SCOPE_INFERENCE ? "inference" : "metrics"),
            rc = api_error_response(out, 403, msg);
        if (st == 401)
            api_response_add_header(out, "WWW-Authenticate", "Bearer");
        add_cors(svc, rq, out);
        return rc;
    }
    bool get = strcmp(rq->method, "GET") == 0 || strcmp(rq->method, "HEAD") == 0;
    if (get)
        fn = r->get;
    else if (strcmp(rq->method, "POST") == 0)
        fn = r->post;
    /* The engine stays put while a handler uses it (api_engine.c). */
    pthread_rwlock_rdlock(&svc->swap_lock);
    if (strcmp(rq->method, "POST") == 0 && r->post_call != NULL) {
        rc = r->post_call(svc, rq, out, call);
    } else if (get && r->get_sub != NULL) {
        size_t n = strlen(r->path);
        rc = r->get_sub(svc, rq->path + n, path_len_without_query(rq->path) - n, out);
    } else if (fn == NULL) {
        snprintf(msg, sizeof(msg), "method %s not allowed on %s (allowed: %s)",
                 api__printable(m, sizeof(m), rq->method, SIZE_MAX), r->path, r->methods);
        rc = api_error_response(out, 405, msg);
        api_response_add_header(out, "Allow", r->methods);
    } else {
        rc = fn(svc, rq->body, rq->body_len, out);
    }
    pthread_rwlock_unlock(&svc->swap_lock);
    add_cors(svc, rq, out);
    return rc;
}

int api_handle(api_service *svc, const char *method, const char *path,
               const char *body, size_t body_len, api_response *out)
{
    api_request rq;
    api_call *call = NULL;
    int rc;

    memset(&rq, 0, sizeof(rq));
    rq.method = method;
    rq.path = path;
    rq.body = body;
    rq.body_len = body_len;
    rc = api_handle_request(svc, &rq, out, &call);
    if (call != NULL) {
        /* Without a transport to wait on, a call cannot be answered. */
        api_call_release(call, false);
        api_response_cleanup(out);
        return api_error_response(out, 500, "this route answers asynchronously; use "
                                  "api_handle_request");
    }
    return rc;
}
