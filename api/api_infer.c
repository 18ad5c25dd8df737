/* api_infer.c: the OpenAI and llama.cpp/vLLM routes that use the model:
 * POST /v1/completions, POST /v1/chat/completions (parse, validate,
 * tokenize, submit), GET /v1/models, POST /tokenize, POST /detokenize,
 * and the accountability fields (system_fingerprint, X-FP8-* headers).
 *
 * Every refusal names the field: {"error":{"message":"max_tokens must be
 * an integer from 1 to 512", ...}} with status 400 (404 for an unknown
 * model, 429 for a full queue, 503 while loading or stopping).
 *
 * Decisions the issue leaves to us: a prompt string is encoded with the
 * tokenizer's special tokens (BOS) as vLLM does, token-id prompts are used
 * verbatim; prompt + max_tokens past the context is not an error, the
 * generation ends there with finish_reason "length"; penalties,
 * logit_bias, tools and response_format are refused (400), never ignored;
 * choice i of a request with a seed samples with seed + i. */
#include "config.h"

#include "api/api-infer.h"
#include "kernels/kn_base.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_STOP 16

const char *api__mode_name(int mode)
{
    return mode == QT_MODE_MEASURE ? "measure" : mode == QT_MODE_QUANTIZE ? "quantize" : "off";
}

void api__fingerprint(api_service *svc, char *buf, size_t len)
{
    eng_calib_status st = { 0 };

    if (svc->eng != NULL)
        eng_engine_calib_status(svc->eng, &st);
    snprintf(buf, len, "fp8d-%s-%.8s-e%llu-%s", svc->version, svc->model_hash,
             (unsigned long long)st.epoch, api__mode_name(st.mode));
}

void api__fp8_headers_at(api_response *out, int mode, uint64_t epoch)
{
    char v[32];

    api_response_add_header(out, "X-FP8-Mode", api__mode_name(mode));
    snprintf(v, sizeof(v), "%llu", (unsigned long long)epoch);
    api_response_add_header(out, "X-FP8-Epoch", v);
}

void api__fp8_headers(api_service *svc, api_response *out)
{
    eng_calib_status st = { 0 };

    if (svc->eng != NULL)
        eng_engine_calib_status(svc->eng, &st);
    api__fp8_headers_at(out, st.mode, st.epoch);
}

/* ---- validation helpers -------------------------------------------------- */

typedef struct vctx {
    int  status;
    char msg[320];
} vctx;

__attribute__((format(printf, 3, 4)))
static int verr(vctx *v, int status, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(v->msg, sizeof(v->msg), fmt, ap);
    va_end(ap);
    v->status = status;
    return -1;
}

/* Integer field in [lo, hi]; absent or null leaves *out. */
static int get_int(vctx *v, json_t *o, const char *name, long long lo, long long hi,
                   long long *out)
{
    json_t *j = json_object_get(o, name);

    if (j == NULL || json_is_null(j))
        return 0;
    if (!json_is_integer(j) || json_integer_value(j) < lo || json_integer_value(j) > hi)
        return verr(v, 400, "%s must be an integer from %lld to %lld", name, lo, hi);
    *out = json_integer_value(j);
    return 0;
}

static int get_num(vctx *v, json_t *o, const char *name, double lo, double hi, double *out)
{
    json_t *j = json_object_get(o, name);

    if (j == NULL || json_is_null(j))
        return 0;
    if (!json_is_number(j) || !(json_number_value(j) >= lo && json_number_value(j) <= hi))
        return verr(v, 400, "%s must be a number from %g to %g", name, lo, hi);
    *out = json_number_value(j);
    return 0;
}

static int get_bool(vctx *v, json_t *o, const char *name, bool *out)
{
    json_t *j = json_object_get(o, name);

    if (j == NULL || json_is_null(j))
        return 0;
    if (!json_is_boolean(j))
        return verr(v, 400, "%s must be true or false", name);
    *out = json_is_true(j);
    return 0;
}

static json_t *parse_body(vctx *v, const char *body, size_t len)
{
    json_error_t e;
    json_t *o;

    if (body == NULL || len == 0) {
        verr(v, 400, "request body is empty; expected a JSON object");
        return NULL;
    }
    if ((o = json_loadb(body, len, 0, &e)) == NULL) {
        verr(v, 400, "request body is not valid JSON: line %d column %d: %s", e.line,
             e.column, e.text);
        return NULL;
    }
    if (!json_is_object(o)) {
        json_decref(o);
        verr(v, 400, "request body must be a JSON object");
        return NULL;
    }
    return o;
}

/* 503 while the model loads or the server stops (with Retry-After). */
static int unavailable(api_service *svc, api_response *out)
{
    api_state st = api_service_state(svc);
    char msg[96];
    int rc;

    if (st == API_STATE_READY && svc->eng != NULL &&
        eng_engine_tokenizer(svc->eng) != NULL)
        return 0;
    atomic_fetch_add(&svc->rejected_unready, 1);
    snprintf(msg, sizeof(msg), "the server is %s; retry later",
             st == API_STATE_STOPPING ? "shutting down" : "loading the model");
    rc = api_error_response(out, 503, msg);
    api_response_add_header(out, "Retry-After", "1");
    return rc < 0 ? rc : 1;
}

static int error_out(api_response *out, const vctx *v)
{
    return api_error_response(out, v->status ? v->status : 400, v->msg);
}

static int check_model(vctx *v, api_service *svc, json_t *req)
{
    json_t *m = json_object_get(req, "model");

    if (m == NULL || json_is_null(m))
        return 0;
    if (!json_is_string(m))
        return verr(v, 400, "model must be a string");
    if (strcmp(json_string_value(m), svc->model_name) != 0)
        return verr(v, 404, "model \"%.100s\" does not exist; this server serves \"%s\"",
                    json_string_value(m), svc->model_name);
    return 0;
}

/* Refuses what we cannot honour instead of ignoring it. */
static int check_unsupported(vctx *v, json_t *req)
{
    static const char *num0[] = { "presence_penalty", "frequency_penalty" };
    static const char *absent[] = { "tools", "tool_choice", "functions", "logit_bias",
                                    "response_format", "suffix" };

    for (size_t i = 0; i < sizeof(num0) / sizeof(num0[0]); i++) {
        json_t *j = json_object_get(req, num0[i]);
        if (j != NULL && !json_is_null(j) && !(json_is_number(j) && json_number_value(j) == 0))
            return verr(v, 400, "%s is not supported by this server (only 0)", num0[i]);
    }
    for (size_t i = 0; i < sizeof(absent) / sizeof(absent[0]); i++) {
        json_t *j = json_object_get(req, absent[i]);
        if (j != NULL && !json_is_null(j) &&
            !(strcmp(absent[i], "response_format") == 0 && json_is_object(j) &&
              json_is_string(json_object_get(j, "type")) &&
              strcmp(json_string_value(json_object_get(j, "type")), "text") == 0))
            return verr(v, 400, "%s is not supported by this server", absent[i]);
    }
    return 0;
}

/* Sampling, length, stop and deadline fields shared by both routes. */
static int common_params(vctx *v, api_service *svc, const api_request *rq, json_t *req,
                         bool chat, eng_req_params *p, const char **stops, size_t *n_stop,
                         long long *n, long long *timeout_ms, bool *stream,
                         bool *include_usage)
{
    const eng_model_config *cfg = eng_model_get_config(eng_engine_model(svc->eng));
    long long limit = svc->p.max_tokens_limit > 0 ? svc->p.max_tokens_limit : cfg->max_pos;
    long long mt = -1, seed = -1, top_k = 0, best_of = -1;
    double temp = 1.0, top_p = 1.0, min_p = 0.0;
    json_t *stop, *so;

    eng_req_params_default(p);
    if (check_model(v, svc, req) < 0 || check_unsupported(v, req) < 0)
        return -1;
    if (chat && get_int(v, req, "max_completion_tokens", 1, limit, &mt) < 0)
        return -1;
    if (mt < 0 && get_int(v, req, "max_tokens", 1, limit, &mt) < 0)
        return -1;
    if (get_num(v, req, "temperature", 0.0, 2.0, &temp) < 0 ||
        get_num(v, req, "top_p", 0.0, 1.0, &top_p) < 0 ||
        get_num(v, req, "min_p", 0.0, 1.0, &min_p) < 0 ||
        get_int(v, req, "top_k", -1, 1 << 30, &top_k) < 0 ||
        get_int(v, req, "seed", INT64_MIN, INT64_MAX, &seed) < 0 ||
        get_int(v, req, "n", 1, svc->p.max_n, n) < 0 ||
        get_int(v, req, "best_of", 1, svc->p.max_n, &best_of) < 0 ||
        get_int(v, req, "timeout_ms", 1, 86400000, timeout_ms) < 0 ||
        get_bool(v, req, "stream", stream) < 0 ||
        get_bool(v, req, "ignore_eos", &p->ignore_eos) < 0)
        return -1;
    if (best_of >= 0 && best_of != *n)
        return verr(v, 400, "best_of must equal n (other values are not supported)");
    if (top_p <= 0.0)
        return verr(v, 400, "top_p must be a number from 0 (exclusive) to 1");
    if ((so = json_object_get(req, "stream_options")) != NULL && !json_is_null(so)) {
        if (!json_is_object(so))
            return verr(v, 400, "stream_options must be an object");
        if (get_bool(v, so, "include_usage", include_usage) < 0)
            return verr(v, 400, "stream_options.include_usage must be true or false");
    }
    stop = json_object_get(req, "stop");
    *n_stop = 0;
    if (json_is_string(stop)) {
        stops[(*n_stop)++] = json_string_value(stop);
    } else if (json_is_array(stop)) {
        if (json_array_size(stop) > MAX_STOP)
            return verr(v, 400, "stop may hold at most %d strings", MAX_STOP);
        for (size_t i = 0; i < json_array_size(stop); i++) {
            json_t *s = json_array_get(stop, i);
            if (!json_is_string(s))
                return verr(v, 400, "stop[%zu] must be a string", i);
            stops[(*n_stop)++] = json_string_value(s);
        }
    } else if (stop != NULL && !json_is_null(stop)) {
        return verr(v, 400, "stop must be a string or an array of strings");
    }
    for (size_t i = 0; i < *n_stop; i++)
        if (stops[i][0] == '\0')
            return verr(v, 400, "stop strings must not be empty");
    if (rq->timeout != NULL && *timeout_ms <= 0) {
        char *end;
        long long t = strtoll(rq->timeout, &end, 10);
        if (*end != '\0' || t < 1 || t > 86400000)
            return verr(v, 400, "X-Request-Timeout must be milliseconds from 1 to 86400000");
        *timeout_ms = t;
    }
    if (*timeout_ms <= 0)
        *timeout_ms = svc->p.request_timeout_ms;
    p->max_tokens = (int)(mt > 0 ? mt : chat ? limit : 16 < limit ? 16 : limit);
    p->sample.temperature = (float)temp;
    p->sample.top_p = (float)top_p;
    p->sample.min_p = (float)min_p;
    p->sample.top_k = (int)top_k;
    if (seed >= 0 || json_is_integer(json_object_get(req, "seed")))
        p->sample.seed = (uint64_t)seed;
    else
        p->sample.seed = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull +
                         atomic_fetch_add(&svc->next_call, 1);
    p->stop = stops;
    p->n_stop = *n_stop;
    p->deadline_ms = (uint64_t)(api__now() * 1000.0) + (uint64_t)*timeout_ms;
    return 0;
}

/* Token ids from a JSON array, each checked against the vocabulary. */
static int ids_from_json(vctx *v, json_t *a, size_t vocab, const char *field, api__prompt *pr)
{
    size_t n = json_array_size(a);

    if (n == 0)
        return verr(v, 400, "%s must not be empty", field);
    if ((pr->ids = malloc(n * sizeof(int32_t))) == NULL)
        return verr(v, 500, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(a, i);
        if (!json_is_integer(t) || json_integer_value(t) < 0 ||
            json_integer_value(t) >= (json_int_t)vocab)
            return verr(v, 400, "%s[%zu] must be a token id from 0 to %zu", field, i,
                        vocab - 1);
        pr->ids[i] = (int32_t)json_integer_value(t);
    }
    pr->n_ids = n;
    return 0;
}

static int ids_from_text(vctx *v, const eng_tokenizer *tok, const char *s, size_t len,
                         bool add_special, const char *field, api__prompt *pr)
{
    int rc = eng_tokenizer_encode(tok, s, len, add_special, &pr->ids, &pr->n_ids);

    if (rc == -EILSEQ)
        return verr(v, 400, "%s is not valid UTF-8", field);
    if (rc < 0)
        return verr(v, 500, "tokenizing %s failed: %s", field, eng_strerror(rc));
    if (pr->n_ids == 0)
        return verr(v, 400, "%s is empty after tokenization", field);
    return 0;
}

static int check_len(vctx *v, api_service *svc, const api__prompt *pr, const char *field)
{
    size_t ctx = (size_t)eng_model_get_config(eng_engine_model(svc->eng))->max_pos;
    size_t lim = svc->p.max_prompt_tokens > 0 && svc->p.max_prompt_tokens < ctx
                 ? svc->p.max_prompt_tokens : ctx - 1;

    if (pr->n_ids > lim)
        return verr(v, 400, "%s has %zu tokens; the limit is %zu (model context %zu)", field,
                    pr->n_ids, lim, ctx);
    return 0;
}

/* Builds the call for prompts (owned by the call from here on), submits
 * it and fills *call, or answers at once in out. */
static int submit_call(api_service *svc, const api_request *rq, api_call *c,
                       const eng_req_params *p, bool prompt_lp, api_response *out,
                       api_call **call)
{
    char msg[200];
    int rc;

    c->tok = eng_engine_tokenizer(c->pin->eng);
    c->created = (long long)time(NULL);
    snprintf(c->id, sizeof(c->id), "%s-%llx%06llx", c->chat ? "chatcmpl" : "cmpl",
             (unsigned long long)c->created,
             (unsigned long long)atomic_fetch_add(&svc->next_call, 1) & 0xffffff);
    api__fingerprint(svc, c->fingerprint, sizeof(c->fingerprint));
    c->wake = rq->wake;
    c->wake_ud = rq->wake_ud;
    rc = api__call_submit(c, p, prompt_lp);
    if (rc == 0) {
        *call = c;
        return 0;
    }
    pthread_mutex_lock(&c->mu);
    c->refused = true;
    pthread_mutex_unlock(&c->mu);
    api_call_release(c, false);
    if (rc == -EAGAIN) {
        atomic_fetch_add(&svc->rejected_full, 1);
        rc = api_error_response(out, 429, "the request queue is full (max_queued_requests or "
                                "max_queued_tokens); retry later");
        api_response_add_header(out, "Retry-After", "1");
        return rc;
    }
    if (rc == -ESHUTDOWN) {
        rc = api_error_response(out, 503, "the server is shutting down");
        api_response_add_header(out, "Retry-After", "1");
        return rc;
    }
    if (rc == ENG_E_CONTEXT)
        return api_error_response(out, 400, "prompt does not fit the model's context");
    snprintf(msg, sizeof(msg), "cannot queue the request: %s", eng_strerror(rc));
    return api_error_response(out, 500, msg);
}

/* ---- POST /v1/completions ---------------------------------------------- */

int api__completions(api_service *svc, const api_request *rq, api_response *out,
                     api_call **call)
{
    vctx v = { 0 };
    json_t *req = NULL, *prompt;
    const char *stops[MAX_STOP];
    size_t n_stop = 0, n_prompts = 0;
    long long n = 1, timeout_ms = 0, logprobs = -1;
    bool stream = false, usage = false, echo = false, single;
    eng_req_params p;
    api_call *c = NULL;
    const eng_tokenizer *tok;
    size_t vocab;
    int rc;

    if ((rc = unavailable(svc, out)) != 0)
        return rc < 0 ? rc : 0;
    tok = eng_engine_tokenizer(svc->eng);
    vocab = (size_t)eng_model_get_config(eng_engine_model(svc->eng))->vocab_size;
    if ((req = parse_body(&v, rq->body, rq->body_len)) == NULL)
        return error_out(out, &v);
    if (common_params(&v, svc, rq, req, false, &p, stops, &n_stop, &n, &timeout_ms, &stream,
                      &usage) < 0 ||
        get_int(&v, req, "logprobs", 0, 5, &logprobs) < 0 ||
        get_bool(&v, req, "echo", &echo) < 0)
        goto fail;
    prompt = json_object_get(req, "prompt");
    /* string | [string] | [int] | [[int]] */
    single = json_is_string(prompt) || (json_is_array(prompt) && json_array_size(prompt) > 0 &&
                                        json_is_integer(json_array_get(prompt, 0)));
    if (single)
        n_prompts = 1;
    else if (json_is_array(prompt) && json_array_size(prompt) > 0)
        n_prompts = json_array_size(prompt);
    else {
        verr(&v, 400, "prompt must be a string, an array of strings, an array of token ids or "
             "an array of token-id arrays (not empty)");
        goto fail;
    }
    if (n_prompts * (size_t)n > 64) {
        verr(&v, 400, "n times the number of prompts must be at most 64");
        goto fail;
    }
    if ((c = api__call_new(svc, n_prompts, n_prompts * (size_t)n)) == NULL) {
        verr(&v, 500, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n_prompts; i++) {
        json_t *pi = single ? prompt : json_array_get(prompt, i);
        char field[32];
        snprintf(field, sizeof(field), single ? "prompt" : "prompt[%zu]", i);
        if (json_is_string(pi)) {
            if (ids_from_text(&v, tok, json_string_value(pi), json_string_length(pi), true,
                              field, &c->prompts[i]) < 0)
                goto fail;
        } else if (json_is_array(pi)) {
            if (ids_from_json(&v, pi, vocab, field, &c->prompts[i]) < 0)
                goto fail;
        } else {
            verr(&v, 400, "%s must be a string or an array of token ids", field);
            goto fail;
        }
        if (check_len(&v, svc, &c->prompts[i], field) < 0)
            goto fail;
        if (echo && logprobs >= 0 && c->prompts[i].n_ids * vocab > ((size_t)1 << 28)) {
            verr(&v, 400, "%s is too long for echo with logprobs", field);
            goto fail;
        }
    }
    c->stream = stream;
    c->include_usage = usage;
    c->logprobs = (int)logprobs;
    c->timeout_ms = timeout_ms;
    p.top_logprobs = logprobs > 0 ? (int)logprobs : 0;
    for (size_t i = 0; i < c->n_choices; i++) {
        api__prompt *pr = &c->prompts[i / (size_t)n];
        if (!echo)
            continue;
        char *t = NULL;
        size_t tl = 0;
        json_t *pi = single ? prompt : json_array_get(prompt, i / (size_t)n);
        if (json_is_string(pi)) {
            api__buf_add(&c->ch[i].text, json_string_value(pi), json_string_length(pi));
        } else if (eng_tokenizer_decode(tok, pr->ids, pr->n_ids, false, &t, &tl) == 0) {
            api__buf_add(&c->ch[i].text, t, tl);
        }
        free(t);
        if (logprobs >= 0)
            api__choice_prompt_first(&c->ch[i], pr->ids[0]);
    }
    /* p.stop points into req: submit (which copies) before dropping it. */
    rc = submit_call(svc, rq, c, &p, echo && logprobs >= 0, out, call);
    json_decref(req);
    return rc;
fail:
    if (c != NULL)
        api_call_release(c, false);
    json_decref(req);
    return error_out(out, &v);
}

/* ---- POST /v1/chat/completions ----------------------------------------- */

/* messages -> eng_chat_msg (contents borrowed from req, or joined text
 * parts kept in bufs). */
static int chat_messages(vctx *v, json_t *msgs, eng_chat_msg *out, char **bufs)
{
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        json_t *m = json_array_get(msgs, i), *role, *content;
        if (!json_is_object(m))
            return verr(v, 400, "messages[%zu] must be an object", i);
        role = json_object_get(m, "role");
        content = json_object_get(m, "content");
        if (!json_is_string(role))
            return verr(v, 400, "messages[%zu].role must be a string", i);
        out[i].role = json_string_value(role);
        if (strcmp(out[i].role, "developer") == 0)
            out[i].role = "system";
        if (strcmp(out[i].role, "system") != 0 && strcmp(out[i].role, "user") != 0 &&
            strcmp(out[i].role, "assistant") != 0)
            return verr(v, 400, "messages[%zu].role must be system, developer, user or "
                        "assistant", i);
        if (json_is_string(content)) {
            out[i].content = json_string_value(content);
        } else if (json_is_array(content)) {
            api__buf b = { 0 };
            for (size_t k = 0; k < json_array_size(content); k++) {
                json_t *part = json_array_get(content, k);
                json_t *ty = json_object_get(part, "type"), *tx = json_object_get(part, "text");
                if (!json_is_string(ty) || strcmp(json_string_value(ty), "text") != 0 ||
                    !json_is_string(tx)) {
                    free(b.s);
                    return verr(v, 400, "messages[%zu].content[%zu] must be a text part "
                                "{\"type\":\"text\",\"text\":...}", i, k);
                }
                api__buf_add(&b, json_string_value(tx), json_string_length(tx));
            }
            if (b.s == NULL)
                api__buf_add(&b, "", 0);
            bufs[i] = b.s;
            out[i].content = b.s != NULL ? b.s : "";
        } else if (json_is_null(content) && strcmp(out[i].role, "assistant") == 0) {
            out[i].content = "";
        } else {
            return verr(v, 400, "messages[%zu].content must be a string or an array of text "
                        "parts", i);
        }
    }
    return 0;
}

int api__chat(api_service *svc, const api_request *rq, api_response *out, api_call **call)
{
    vctx v = { 0 };
    json_t *req = NULL, *msgs;
    const char *stops[MAX_STOP];
    size_t n_stop = 0, n_msgs = 0;
    long long n = 1, timeout_ms = 0, top = 0;
    bool stream = false, usage = false, logprobs = false;
    eng_req_params p;
    api_call *c = NULL;
    eng_chat_msg *cm = NULL;
    char **bufs = NULL, err[256];
    int rc;

    if ((rc = unavailable(svc, out)) != 0)
        return rc < 0 ? rc : 0;
    if ((req = parse_body(&v, rq->body, rq->body_len)) == NULL)
        return error_out(out, &v);
    if (common_params(&v, svc, rq, req, true, &p, stops, &n_stop, &n, &timeout_ms, &stream,
                      &usage) < 0 ||
        get_bool(&v, req, "logprobs", &logprobs) < 0 ||
        get_int(&v, req, "top_logprobs", 0, API_MAX_TOP, &top) < 0)
        goto fail;
    if (top > 0 && !logprobs) {
        verr(&v, 400, "top_logprobs requires logprobs to be true");
        goto fail;
    }
    msgs = json_object_get(req, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        verr(&v, 400, "messages must be a non-empty array");
        goto fail;
    }
    n_msgs = json_array_size(msgs);
    cm = calloc(n_msgs, sizeof(*cm));
    bufs = calloc(n_msgs, sizeof(*bufs));
    if (cm == NULL || bufs == NULL || (c = api__call_new(svc, 1, (size_t)n)) == NULL) {
        verr(&v, 500, "out of memory");
        goto fail;
    }
    c->chat = true;
    if (chat_messages(&v, msgs, cm, bufs) < 0)
        goto fail;
    rc = eng_chat_encode(eng_engine_tokenizer(svc->eng), cm, n_msgs, true, NULL,
                         &c->prompts[0].ids, &c->prompts[0].n_ids, err, sizeof(err));
    if (rc < 0) {
        verr(&v, rc == -ENOMEM ? 500 : 400, "messages: %s", err[0] ? err : eng_strerror(rc));
        goto fail;
    }
    if (check_len(&v, svc, &c->prompts[0], "messages") < 0)
        goto fail;
    c->stream = stream;
    c->include_usage = usage;
    c->logprobs = logprobs ? (int)top : -1;
    c->timeout_ms = timeout_ms;
    p.top_logprobs = (int)top;
    for (size_t i = 0; i < n_msgs; i++)
        free(bufs[i]);
    free(bufs);
    free(cm);
    rc = submit_call(svc, rq, c, &p, false, out, call);
    json_decref(req);
    return rc;
fail:
    if (c != NULL)
        api_call_release(c, false);
    for (size_t i = 0; bufs != NULL && i < n_msgs; i++)
        free(bufs[i]);
    free(bufs);
    free(cm);
    json_decref(req);
    return error_out(out, &v);
}

/* ---- GET /v1/models, GET /v1/models/{id} --------------------------------- */

/* The served model as OpenAI's model object, with llama.cpp's
 * max_model_len and our meta (hash, FP8 mode, calibration epoch). */
static json_t *model_object(api_service *svc)
{
    const eng_model_config *c = eng_model_get_config(eng_engine_model(svc->eng));
    eng_calib_status cs;
    json_t *meta;

    eng_engine_calib_status(svc->eng, &cs);
    meta = json_pack("{s:s, s:i, s:i, s:s, s:s, s:I}", "architecture", c->arch_name, "n_vocab",
                     c->vocab_size, "n_ctx_train", c->max_pos, "model_hash", svc->model_hash,
                     "fp8_mode", api__mode_name(cs.mode), "calibration_epoch",
                     (json_int_t)cs.epoch);
    return json_pack("{s:s, s:s, s:I, s:s, s:i, s:o}", "id", svc->model_name, "object", "model",
                     "created", (json_int_t)svc->started_unix, "owned_by", "fp8d",
                     "max_model_len", c->max_pos, "meta", meta);
}

int api__models(api_service *svc, const char *body, size_t body_len, api_response *out)
{
    int rc;

    (void)body;
    (void)body_len;
    if ((rc = unavailable(svc, out)) != 0)
        return rc < 0 ? rc : 0;
    rc = api__json_reply(out, 200, json_pack("{s:s, s:[o]}", "object", "list", "data",
                                             model_object(svc)));
    api__fp8_headers(svc, out);
    return rc;
}

int api__model_get(api_service *svc, const char *id, size_t id_len, api_response *out)
{
    char msg[400], shown[101];
    int rc;

    if ((rc = unavailable(svc, out)) != 0)
        return rc < 0 ? rc : 0;
    if (id_len != strlen(svc->model_name) || memcmp(id, svc->model_name, id_len) != 0) {
        /* as /v1/completions answers an unknown "model" */
        snprintf(msg, sizeof(msg), "model \"%s\" does not exist; this server serves \"%s\"",
                 api__printable(shown, sizeof(shown), id, id_len), svc->model_name);
        return api_error_response(out, 404, msg);
    }
    rc = api__json_reply(out, 200, model_object(svc));
    api__fp8_headers(svc, out);
    return rc;
}

/* ---- POST /tokenize, /detokenize (llama.cpp and vLLM shapes) ------------- */

int api__tokenize(api_service *svc, const char *body, size_t body_len, api_response *out)
{
    vctx v = { 0 };
    json_t *req, *text, *toks, *o;
    const eng_tokenizer *tok;
    bool add_special, parse_special = true, pieces = false, has_as = false;
    api__prompt pr = { 0 };
    int rc;

    if ((rc = unavailable(svc, out)) != 0)
        return rc < 0 ? rc : 0;
    tok = eng_engine_tokenizer(svc->eng);
    if ((req = parse_body(&v, body, body_len)) == NULL)
        return error_out(out, &v);
    /* llama.cpp: content (+ add_special, default false); vLLM: prompt (+
     * add_special_tokens, default true). */
    text = json_object_get(req, "content");
    add_special = false;
    if (text == NULL) {
        text = json_object_get(req, "prompt");
        add_special = true;
    }
    if (get_bool(&v, req, "add_special", &add_special) < 0 ||
        get_bool(&v, req, "add_special_tokens", &add_special) < 0 ||
        get_bool(&v, req, "parse_special", &parse_special) < 0 ||
        get_bool(&v, req, "with_pieces", &pieces) < 0 || check_model(&v, svc, req) < 0)
        goto fail;
    (void)has_as;
    if (!json_is_string(text)) {
        verr(&v, 400, "content (or prompt) must be a string");
        goto fail;
    }
    rc = eng_tokenizer_encode_ex(tok, json_string_value(text), json_string_length(text),
                                 add_special, parse_special, &pr.ids, &pr.n_ids);
    if (rc < 0) {
        verr(&v, rc == -EILSEQ ? 400 : 500, rc == -EILSEQ ? "content is not valid UTF-8"
                                                          : "tokenization failed");
        goto fail;
    }
    toks = json_array();
    for (size_t i = 0; i < pr.n_ids; i++) {
        if (pieces) {
            char *t = NULL;
            size_t tl = 0;
            eng_tokenizer_decode(tok, &pr.ids[i], 1, false, &t, &tl);
            json_array_append_new(toks, json_pack("{s:i, s:s}", "id", pr.ids[i],
                                                  "piece", t ? t : ""));
            free(t);
        } else {
            json_array_append_new(toks, json_integer(pr.ids[i]));
        }
    }
    o = json_pack("{s:o, s:I, s:i}", "tokens", toks, "count", (json_int_t)pr.n_ids,
                  "max_model_len", eng_model_get_config(eng_engine_model(svc->eng))->max_pos);
    free(pr.ids);
    json_decref(req);
    return api__json_reply(out, 200, o);
fail:
    free(pr.ids);
    json_decref(req);
    return error_out(out, &v);
}

int api__detokenize(api_service *svc, const char *body, size_t body_len, api_response *out)
{
    vctx v = { 0 };
    json_t *req, *toks, *o;
    api__prompt pr = { 0 };
    char *t = NULL;
    size_t tl = 0;
    int rc;

    if ((rc = unavailable(svc, out)) != 0)
        return rc < 0 ? rc : 0;
    if ((req = parse_body(&v, body, body_len)) == NULL)
        return error_out(out, &v);
    toks = json_object_get(req, "tokens");
    if (check_model(&v, svc, req) < 0)
        goto fail;
    if (!json_is_array(toks)) {
        verr(&v, 400, "tokens must be an array of token ids");
        goto fail;
    }
    if (json_array_size(toks) > 0 &&
        ids_from_json(&v, toks, eng_tokenizer_vocab_size(eng_engine_tokenizer(svc->eng)),
                      "tokens", &pr) < 0)
        goto fail;
    if (eng_tokenizer_decode(eng_engine_tokenizer(svc->eng), pr.ids, pr.n_ids, false, &t,
                             &tl) < 0) {
        verr(&v, 500, "decoding failed");
        goto fail;
    }
    o = json_pack("{s:s%, s:s%}", "content", t, tl, "prompt", t, tl);
    free(t);
    free(pr.ids);
    json_decref(req);
    return api__json_reply(out, 200, o);
fail:
    free(pr.ids);
    json_decref(req);
    return error_out(out, &v);
}
