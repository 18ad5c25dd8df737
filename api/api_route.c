/* api_route.c: the routing table and api_handle, the one entry point the
 * transport calls.  Adding an endpoint = one row here plus its handler.
 * Matching is exact on the path (the query string is ignored); an unknown
 * path is 404 whatever the method, a known path with the wrong method 405
 * with an Allow header. */
#include "config.h"

#include "api/api-int.h"

#include <stdio.h>
#include <string.h>

const api__route api__routes[] = {
    { "/health",    "GET, HEAD", api__health,  NULL },
    { "/v1/health", "GET, HEAD", api__health,  NULL },
    { "/livez",     "GET, HEAD", api__livez,   NULL },
    { "/readyz",    "GET, HEAD", api__readyz,  NULL },
    { "/metrics",   "GET, HEAD", api__metrics, NULL },
};
const size_t api__n_routes = sizeof(api__routes) / sizeof(api__routes[0]);

_Static_assert(sizeof(api__routes) / sizeof(api__routes[0]) + 1 == API_N_ROUTE_LABELS,
               "one metrics label per route plus \"other\"");

int api__route_find(const char *path, size_t path_len)
{
    for (size_t i = 0; i < api__n_routes; i++)
        if (strlen(api__routes[i].path) == path_len &&
            memcmp(api__routes[i].path, path, path_len) == 0)
            return (int)i;
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

/* Copies s into buf for an error message, replacing control characters and
 * non-ASCII bytes with '?': the transport hands us percent-decoded paths,
 * which need not be valid UTF-8 (jansson refuses those). */
static const char *printable(char *buf, size_t len, const char *s)
{
    size_t i = 0;

    for (; s[i] != '\0' && i + 1 < len; i++)
        buf[i] = (unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f ? '?' : s[i];
    buf[i] = '\0';
    return buf;
}

int api_handle(api_service *svc, const char *method, const char *path,
               const char *body, size_t body_len, api_response *out)
{
    const api__route *r;
    api__handler_fn fn = NULL;
    char msg[200], m[17], p[129];
    int i;

    memset(out, 0, sizeof(*out));
    if (method == NULL || path == NULL)
        return api_error_response(out, 400, "request has no method or path");
    i = api__route_find(path, path_len_without_query(path));
    if (i < 0) {
        snprintf(msg, sizeof(msg), "no route for %s %s", printable(m, sizeof(m), method),
                 printable(p, sizeof(p), path));
        return api_error_response(out, 404, msg);
    }
    r = &api__routes[i];
    if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
        fn = r->get;
    else if (strcmp(method, "POST") == 0)
        fn = r->post;
    if (fn == NULL) {
        int rc;
        snprintf(msg, sizeof(msg), "method %s not allowed on %s (allowed: %s)",
                 printable(m, sizeof(m), method), r->path, r->methods);
        rc = api_error_response(out, 405, msg);
        api_response_add_header(out, "Allow", r->methods);
        return rc;
    }
    return fn(svc, body, body_len, out);
}
