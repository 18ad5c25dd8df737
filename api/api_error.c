/* api_error.c: the one table from HTTP statuses and error codes to the
 * OpenAI-shaped error body, plus the api_response helpers.
 *
 * Body: {"error":{"message":..., "type":..., "code":..., "status":N}}.
 * "type" uses llama.cpp's vocabulary (serving-anchors 2.4), "code" is a
 * string as OpenAI sends it, and the integer "status" is for llama.cpp
 * clients that read a numeric code. */
#include "config.h"

#include "api/api-int.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    int         status;
    const char *type;
    const char *code;
} error_table[] = {
    { 400, "invalid_request_error", "invalid_request" },
    { 401, "authentication_error",  "invalid_api_key" },
    { 403, "permission_error",      "forbidden" },
    { 404, "not_found_error",       "not_found" },
    { 405, "invalid_request_error", "method_not_allowed" },
    { 408, "timeout_error",         "request_timeout" },
    { 413, "invalid_request_error", "request_too_large" },
    { 429, "rate_limit_error",      "queue_full" },
    { 500, "server_error",          "internal_error" },
    { 501, "not_supported_error",   "not_supported" },
    { 503, "unavailable_error",     "unavailable" },
    { 504, "timeout_error",         "deadline_exceeded" },
    { 507, "server_error",          "insufficient_storage" },
};

static int find_status(int status)
{
    for (size_t i = 0; i < sizeof(error_table) / sizeof(error_table[0]); i++)
        if (error_table[i].status == status)
            return (int)i;
    return -1;
}

const char *api_error_type(int status)
{
    int i = find_status(status);
    if (i >= 0)
        return error_table[i].type;
    return status >= 400 && status < 500 ? "invalid_request_error" : "server_error";
}

const char *api_error_code(int status)
{
    int i = find_status(status);
    if (i >= 0)
        return error_table[i].code;
    return status >= 400 && status < 500 ? "invalid_request" : "internal_error";
}

int api_status_from_rc(int rc)
{
    switch (rc) {
    case -EINVAL:   return 400;
    case -ENOENT:   return 404;
    case -EMSGSIZE: return 413;
    case -EAGAIN:   return 503;
    default:        return 500;
    }
}

/* The last-resort answer when even the error body cannot be allocated. */
static int out_of_memory(api_response *out)
{
    out->status = 500;
    out->content_type = "application/json";
    out->body = NULL;
    out->body_len = 0;
    return -ENOMEM;
}

int api__json_response(api_response *out, int status, const char *json)
{
    size_t len = strlen(json);

    out->status = status;
    out->content_type = "application/json";
    if ((out->body = malloc(len + 1)) == NULL)
        return out_of_memory(out);
    memcpy(out->body, json, len + 1);
    out->body_len = len;
    return 0;
}

int api__json_reply(api_response *out, int status, json_t *o)
{
    char *s = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;

    json_decref(o);
    if (s == NULL)
        return api_error_response(out, 500, "out of memory building the response");
    out->status = status;
    out->content_type = "application/json";
    out->body = s;
    out->body_len = strlen(s);
    return 0;
}

/* Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlongs,
 * no surrogates, at most U+10FFFF), or 0 if the bytes there are not one. */
static size_t utf8_seq_len(const unsigned char *p, size_t avail)
{
    unsigned c = p[0];
    size_t n;
    unsigned lo = 0x80, hi = 0xBF;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 0;
    if (avail < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return n;
}

/* Messages may quote client bytes (jansson's parse errors do), and a JSON
 * string must be UTF-8: each byte that starts no valid sequence becomes
 * '?'.  Returns a malloc'd copy, or NULL when out of memory. */
static char *utf8_sanitize(const char *msg)
{
    size_t len = strlen(msg), i = 0;
    char *out = malloc(len + 1);

    if (out == NULL)
        return NULL;
    while (i < len) {
        size_t n = utf8_seq_len((const unsigned char *)msg + i, len - i);
        if (n == 0) {
            out[i++] = '?';
            continue;
        }
        memcpy(out + i, msg + i, n);
        i += n;
    }
    out[len] = '\0';
    return out;
}

int api_error_response(api_response *out, int status, const char *message)
{
    json_t *o;
    char *s, *clean;
    int rc;

    if ((clean = utf8_sanitize(message != NULL ? message : "")) == NULL)
        return out_of_memory(out);
    o = json_pack("{s:{s:s, s:s, s:s, s:i}}", "error",
                  "message", clean,
                  "type", api_error_type(status),
                  "code", api_error_code(status),
                  "status", status);
    free(clean);
    if (o == NULL)
        return out_of_memory(out);
    s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (s == NULL)
        return out_of_memory(out);
    rc = api__json_response(out, status, s);
    free(s);
    return rc;
}

void api_response_add_header(api_response *out, const char *name, const char *value)
{
    api_header *h;

    if (out->n_headers >= API_MAX_HEADERS)
        return;
    h = &out->headers[out->n_headers++];
    snprintf(h->name, sizeof(h->name), "%s", name);
    snprintf(h->value, sizeof(h->value), "%s", value);
}

void api_response_cleanup(api_response *out)
{
    if (out == NULL)
        return;
    free(out->body);
    out->body = NULL;
    out->body_len = 0;
    out->n_headers = 0;
}
