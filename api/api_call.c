/* api_call.c: one inference request in flight between the transport and
 * the engine (serving-anchors 2.1, 2.2): the choices it submitted, the
 * engine callbacks that fill them, and the OpenAI bodies built from them:
 * a whole JSON answer, or SSE frames ("data: {...}\n\n" ... "data:
 * [DONE]\n\n").
 *
 * Threads and locking: the engine callbacks (engine thread) append to a
 * choice under c->mu and call the transport's wake under it; the transport
 * thread polls and reads under c->mu.  c->refs counts the transport (1)
 * plus every submitted choice whose on_done has not run; the last one to
 * drop its reference frees the call, so neither side waits for the other.
 * Lock order: c->mu, then the transport's own lock inside wake. */
#include "config.h"

#include "api/api-infer.h"
#include "kernels/kn_base.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double api__now(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int api__buf_add(api__buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        char *p;
        while (cap < b->len + n + 1)
            cap *= 2;
        if ((p = realloc(b->s, cap)) == NULL)
            return -ENOMEM;
        b->s = p;
        b->cap = cap;
    }
    if (n > 0)
        memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
    return 0;
}

static int tok_add(api__choice *ch, const eng_token_info *t, bool null_lp)
{
    api__tokrec *r;

    if (ch->n_toks == ch->cap_toks) {
        size_t cap = ch->cap_toks ? ch->cap_toks * 2 : 32;
        api__tokrec *p = realloc(ch->toks, cap * sizeof(*p));
        if (p == NULL)
            return -ENOMEM;
        ch->toks = p;
        ch->cap_toks = cap;
    }
    r = &ch->toks[ch->n_toks++];
    memset(r, 0, sizeof(*r));
    r->id = t->id;
    r->lp = null_lp ? NAN : t->logprob;
    r->n_top = null_lp ? 0 : (uint8_t)(t->n_top < API_MAX_TOP ? t->n_top : API_MAX_TOP);
    for (size_t i = 0; i < r->n_top; i++) {
        r->top_ids[i] = t->top_ids[i];
        r->top_lp[i] = t->top_logprobs[i];
    }
    return 0;
}

int api__choice_prompt_first(api__choice *ch, int32_t id)
{
    eng_token_info t = { .id = id };
    return tok_add(ch, &t, true);
}

static void wake(api_call *c)
{
    if (c->wake != NULL)
        c->wake(c->wake_ud);
}

/* ---- engine callbacks (engine thread) ----------------------------------- */

static void on_prompt(void *ud, size_t pos, const eng_token_info *t)
{
    api__choice *ch = ud;

    pthread_mutex_lock(&ch->c->mu);
    if (tok_add(ch, t, false) < 0)
        ch->oom = true;
    pthread_mutex_unlock(&ch->c->mu);
}

static void on_token(void *ud, const eng_token_info *t)
{
    api__choice *ch = ud;
    api_call *c = ch->c;
    double now = api__now();

    pthread_mutex_lock(&c->mu);
    if (!c->have_epoch) {
        /* The epoch cannot change while a sequence runs: this token's is
         * the one the answer was computed in. */
        c->have_epoch = true;
        c->fp8_mode = t->fp8_mode;
        c->epoch = t->epoch;
        snprintf(c->fingerprint, sizeof(c->fingerprint), "fp8d-%s-%.8s-e%llu-%s",
                 c->svc->version, c->pin->hash, (unsigned long long)t->epoch,
                 api__mode_name(t->fp8_mode));
    }
    if (ch->n_gen == 0) {
        ch->t_first = now;
        api__hist_observe(&c->svc->ttft, now - c->t_start);
    } else {
        api__hist_observe(&c->svc->itl, now - ch->t_last);
    }
    ch->t_last = now;
    ch->n_gen++;
    if (api__buf_add(&ch->text, t->text, t->len) < 0 ||
        (c->logprobs >= 0 && tok_add(ch, t, false) < 0))
        ch->oom = true;
    /* Streams wake on every token.  A plain request is woken at most every
     * 100 ms as well, so the transport can notice a client that hung up
     * (libmicrohttpd does not watch a suspended connection's socket). */
    if (c->stream || now - c->t_wake >= 0.1) {
        c->t_wake = now;
        wake(c);
    }
    pthread_mutex_unlock(&c->mu);
}

static void call_free(api_call *c)
{
    for (size_t i = 0; i < c->n_choices; i++) {
        eng_request_free(c->ch[i].req);
        free(c->ch[i].text.s);
        free(c->ch[i].toks);
    }
    for (size_t i = 0; i < c->n_prompts; i++)
        free(c->prompts[i].ids);
    free(c->prompts);
    free(c->ch);
    free(c->out.s);
    pthread_mutex_destroy(&c->mu);
    api__unpin(c->pin);
    free(c);
}

static void on_done(void *ud, int rc, eng_stop_reason why)
{
    api__choice *ch = ud;
    api_call *c = ch->c;
    int refs;

    pthread_mutex_lock(&c->mu);
    ch->done = true;
    ch->rc = rc == 0 && ch->oom ? -ENOMEM : rc;
    ch->why = why;
    c->n_done++;
    if (rc == 0)
        atomic_fetch_add(&c->svc->finished[why == ENG_STOP_LENGTH ? API_FIN_LENGTH
                                                                  : API_FIN_STOP], 1);
    else if (rc == -ETIMEDOUT)
        atomic_fetch_add(&c->svc->cancelled[API_CANCEL_DEADLINE], 1);
    else if (rc == -ECANCELED && !c->refused)
        atomic_fetch_add(&c->svc->cancelled[c->released ? API_CANCEL_DISCONNECT
                                                        : API_CANCEL_SHUTDOWN], 1);
    else if (rc == -ECANCELED)
        ;   /* the rest of a request refused at submit (429): counted there */
    else
        atomic_fetch_add(&c->svc->finished[API_FIN_ABORT], 1);
    if (c->n_done == c->n_submitted)
        api__hist_observe(&c->svc->e2e, api__now() - c->t_start);
    if (c->stream || c->n_done == c->n_submitted)
        wake(c);
    refs = --c->refs;
    pthread_mutex_unlock(&c->mu);
    if (refs == 0)
        call_free(c);
}

/* ---- creation and submission (transport thread) ------------------------- */

api_call *api__call_new(api_service *svc, size_t n_prompts, size_t n_choices)
{
    api_call *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    c->prompts = calloc(n_prompts, sizeof(*c->prompts));
    c->ch = calloc(n_choices, sizeof(*c->ch));
    if (c->prompts == NULL || c->ch == NULL) {
        free(c->prompts);
        free(c->ch);
        free(c);
        return NULL;
    }
    c->n_prompts = n_prompts;
    c->n_choices = n_choices;
    c->svc = svc;
    c->pin = api__pin(svc);
    c->refs = 1;
    c->logprobs = -1;
    c->t_start = api__now();
    pthread_mutex_init(&c->mu, NULL);
    for (size_t i = 0; i < n_choices; i++) {
        c->ch[i].c = c;
        c->ch[i].index = i;
    }
    return c;
}

int api__call_submit(api_call *c, const eng_req_params *base, bool prompt_lp)
{
    eng_request_cbs cbs = { prompt_lp ? on_prompt : NULL, on_token, on_done, NULL };
    size_t per = c->n_choices / c->n_prompts;
    int rc = 0;

    for (size_t i = 0; i < c->n_choices; i++) {
        api__choice *ch = &c->ch[i];
        api__prompt *pr = &c->prompts[i / per];
        eng_req_params p = *base;
        p.sample.seed = base->sample.seed + (uint64_t)(i % per);
        p.prompt_logprobs = prompt_lp;
        cbs.ud = ch;
        if ((ch->req = eng_request_new(pr->ids, pr->n_ids, &p, &cbs)) == NULL)
            return -ENOMEM;
        pthread_mutex_lock(&c->mu);
        c->refs++;
        c->n_submitted++;
        pthread_mutex_unlock(&c->mu);
        if ((rc = eng_submit(c->pin->eng, ch->req)) < 0) {
            pthread_mutex_lock(&c->mu);
            c->refs--;
            c->n_submitted--;
            pthread_mutex_unlock(&c->mu);
            return rc;
        }
    }
    return 0;
}

void api_call_release(api_call *c, bool completed_ok)
{
    int refs;

    pthread_mutex_lock(&c->mu);
    c->wake = NULL;
    c->released = true;
    /* A choice whose on_done has not run is still the engine's: only its
     * cancel flag may be touched, and on_done cannot run while we hold mu. */
    for (size_t i = 0; i < c->n_submitted; i++)
        if (!c->ch[i].done)
            eng_request_cancel(c->ch[i].req);
    refs = --c->refs;
    pthread_mutex_unlock(&c->mu);
    if (refs == 0)
        call_free(c);
}

/* ---- bodies --------------------------------------------------------------- */

static const char *finish_name(const api__choice *ch)
{
    return ch->why == ENG_STOP_LENGTH ? "length" : "stop";
}

/* The text of one token for logprobs (special tokens kept), malloc'd. */
static char *tok_text(const api_call *c, int32_t id)
{
    char *t = NULL;
    size_t n = 0;

    if (eng_tokenizer_decode(c->tok, &id, 1, false, &t, &n) < 0)
        return NULL;
    return t;
}

static json_t *bytes_of(const char *s)
{
    json_t *a = json_array();
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
        json_array_append_new(a, json_integer(*p));
    return a;
}

/* Chat logprobs "content" entries for toks[from..to). */
static json_t *chat_logprobs(const api_call *c, const api__choice *ch, size_t from, size_t to)
{
    json_t *content = json_array();

    for (size_t i = from; i < to; i++) {
        const api__tokrec *r = &ch->toks[i];
        char *t = tok_text(c, r->id);
        json_t *tops = json_array(), *e;
        for (size_t k = 0; k < r->n_top && k < (size_t)c->logprobs; k++) {
            char *tt = tok_text(c, r->top_ids[k]);
            json_array_append_new(tops, json_pack("{s:s, s:f, s:o}", "token", tt ? tt : "",
                                                  "logprob", (double)r->top_lp[k],
                                                  "bytes", bytes_of(tt ? tt : "")));
            free(tt);
        }
        e = json_pack("{s:s, s:f, s:o, s:o}", "token", t ? t : "", "logprob", (double)r->lp,
                      "bytes", bytes_of(t ? t : ""), "top_logprobs", tops);
        json_array_append_new(content, e);
        free(t);
    }
    return json_pack("{s:o}", "content", content);
}

/* Completions logprobs for toks[from..to); *offset is the running text
 * offset of the choice. */
static json_t *cmpl_logprobs(const api_call *c, const api__choice *ch, size_t from, size_t to,
                             size_t *offset)
{
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(),
           *offs = json_array();

    for (size_t i = from; i < to; i++) {
        const api__tokrec *r = &ch->toks[i];
        char *t = tok_text(c, r->id);
        json_array_append_new(tokens, json_string(t ? t : ""));
        json_array_append_new(offs, json_integer((json_int_t)*offset));
        *offset += t ? strlen(t) : 0;
        if (isnan(r->lp)) {
            json_array_append_new(lps, json_null());
            json_array_append_new(tops, json_null());
        } else {
            json_t *o = json_object();
            json_array_append_new(lps, json_real(r->lp));
            for (size_t k = 0; k < r->n_top && k < (size_t)c->logprobs; k++) {
                char *tt = tok_text(c, r->top_ids[k]);
                if (json_object_get(o, tt ? tt : "") == NULL)
                    json_object_set_new(o, tt ? tt : "", json_real(r->top_lp[k]));
                free(tt);
            }
            json_array_append_new(tops, o);
        }
        free(t);
    }
    return json_pack("{s:o, s:o, s:o, s:o}", "tokens", tokens, "token_logprobs", lps,
                     "top_logprobs", tops, "text_offset", offs);
}

static json_t *usage(const api_call *c)
{
    size_t pt = 0, ct = 0;

    for (size_t i = 0; i < c->n_prompts; i++)
        pt += c->prompts[i].n_ids;
    for (size_t i = 0; i < c->n_choices; i++)
        ct += c->ch[i].n_gen;
    return json_pack("{s:I, s:I, s:I}", "prompt_tokens", (json_int_t)pt,
                     "completion_tokens", (json_int_t)ct, "total_tokens", (json_int_t)(pt + ct));
}

static json_t *envelope(const api_call *c, bool chunk)
{
    return json_pack("{s:s, s:s, s:I, s:s, s:s}", "id", c->id, "object",
                     c->chat ? (chunk ? "chat.completion.chunk" : "chat.completion")
                             : "text_completion",
                     "created", (json_int_t)c->created, "model", c->svc->model_name,
                     "system_fingerprint", c->fingerprint);
}

/* First failed choice's status and message, or 0. */
static int call_error(const api_call *c, char *msg, size_t len)
{
    for (size_t i = 0; i < c->n_choices; i++) {
        int rc = c->ch[i].done ? c->ch[i].rc : 0;
        if (rc == 0)
            continue;
        if (rc == -ETIMEDOUT) {
            snprintf(msg, len, "deadline exceeded: the request did not finish within "
                     "timeout_ms (%lld ms)", (long long)c->timeout_ms);
            return 504;
        }
        if (rc == -ECANCELED) {
            snprintf(msg, len, "the server is shutting down; the request was cancelled");
            return 503;
        }
        if (rc == ENG_E_CONTEXT) {
            snprintf(msg, len, "prompt does not fit the model's context");
            return 400;
        }
        snprintf(msg, len, "generation failed: %s", eng_strerror(rc));
        return 500;
    }
    return 0;
}

static int whole_response(api_call *c, api_response *out)
{
    json_t *o = envelope(c, false), *choices = json_array();

    for (size_t i = 0; i < c->n_choices; i++) {
        api__choice *ch = &c->ch[i];
        json_t *lp = json_null(), *e;
        if (c->logprobs >= 0) {
            size_t off = 0;
            lp = c->chat ? chat_logprobs(c, ch, 0, ch->n_toks)
                         : cmpl_logprobs(c, ch, 0, ch->n_toks, &off);
        }
        if (c->chat)
            e = json_pack("{s:I, s:{s:s, s:s%, s:n}, s:o, s:s}", "index", (json_int_t)i,
                          "message", "role", "assistant", "content",
                          ch->text.s ? ch->text.s : "", ch->text.len, "refusal",
                          "logprobs", lp, "finish_reason", finish_name(ch));
        else
            e = json_pack("{s:I, s:s%, s:o, s:s}", "index", (json_int_t)i, "text",
                          ch->text.s ? ch->text.s : "", ch->text.len, "logprobs", lp,
                          "finish_reason", finish_name(ch));
        json_array_append_new(choices, e);
    }
    json_object_set_new(o, "choices", choices);
    json_object_set_new(o, "usage", usage(c));
    return api__json_reply(out, 200, o);
}

int api_call_poll(api_call *c, api_response *out)
{
    char msg[256];
    int st = API_CALL_PENDING, status;
    bool any_token = false;

    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->n_choices; i++)
        any_token |= c->ch[i].n_gen > 0;
    if (c->stream && any_token) {
        out->status = 200;
        out->content_type = "text/event-stream";
        api_response_add_header(out, "Cache-Control", "no-cache");
        api_response_add_header(out, "X-Accel-Buffering", "no");
        st = API_CALL_STREAM;
    } else if (c->n_done == c->n_submitted) {
        if ((status = call_error(c, msg, sizeof(msg))) != 0)
            api_error_response(out, status, msg);
        else
            whole_response(c, out);
        st = API_CALL_RESPONSE;
    }
    if (st != API_CALL_PENDING) {
        eng_calib_status cs = { 0 };
        /* Not c->svc's engine: a reload may have swapped it since. */
        if (!c->have_epoch)
            eng_engine_calib_status(c->pin->eng, &cs);
        api__fp8_headers_at(out, c->have_epoch ? c->fp8_mode : cs.mode,
                            c->have_epoch ? c->epoch : cs.epoch);
    }
    pthread_mutex_unlock(&c->mu);
    return st;
}

/* Appends "data: <o>\n\n" to c->out and drops o. */
static void sse(api_call *c, json_t *o)
{
    char *s = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;

    json_decref(o);
    if (s == NULL) {
        c->oom = true;
        return;
    }
    if (api__buf_add(&c->out, "data: ", 6) < 0 || api__buf_add(&c->out, s, strlen(s)) < 0 ||
        api__buf_add(&c->out, "\n\n", 2) < 0)
        c->oom = true;
    free(s);
}

static json_t *chunk_choice(api_call *c, api__choice *ch, const char *text, size_t len,
                            bool role, json_t *lp, const char *finish)
{
    json_t *e;

    if (lp == NULL)
        lp = json_null();
    if (c->chat) {
        json_t *delta = json_object();
        if (role)
            json_object_set_new(delta, "role", json_string("assistant"));
        if (text != NULL)
            json_object_set_new(delta, "content", json_stringn(text, len));
        e = json_pack("{s:I, s:o, s:o, s:o}", "index", (json_int_t)ch->index, "delta", delta,
                      "logprobs", lp, "finish_reason",
                      finish ? json_string(finish) : json_null());
    } else {
        e = json_pack("{s:I, s:s%, s:o, s:o}", "index", (json_int_t)ch->index, "text",
                      text ? text : "", text ? len : 0, "logprobs", lp, "finish_reason",
                      finish ? json_string(finish) : json_null());
    }
    return e;
}

static void emit_chunk(api_call *c, json_t *choice)
{
    json_t *o = envelope(c, true), *arr = json_array();

    json_array_append_new(arr, choice);
    json_object_set_new(o, "choices", arr);
    if (c->include_usage)
        json_object_set_new(o, "usage", json_null());
    sse(c, o);
}

/* Turns what the engine produced since the last call into frames. */
static void produce(api_call *c)
{
    char msg[256];
    int status;
    bool all_done = c->n_done == c->n_submitted;

    for (size_t i = 0; i < c->n_choices; i++) {
        api__choice *ch = &c->ch[i];
        bool news = ch->text.len > ch->sent || ch->n_toks > ch->toks_sent;
        if (news || (c->chat && !ch->role_sent && ch->n_gen > 0)) {
            json_t *lp = NULL;
            if (c->logprobs >= 0 && ch->n_toks > ch->toks_sent)
                lp = c->chat ? chat_logprobs(c, ch, ch->toks_sent, ch->n_toks)
                             : cmpl_logprobs(c, ch, ch->toks_sent, ch->n_toks, &ch->offset);
            emit_chunk(c, chunk_choice(c, ch, ch->text.s + ch->sent, ch->text.len - ch->sent,
                                       c->chat && !ch->role_sent, lp, NULL));
            ch->role_sent = true;
            ch->sent = ch->text.len;
            ch->toks_sent = ch->n_toks;
        }
        if (ch->done && ch->rc == 0 && !ch->finish_sent) {
            emit_chunk(c, chunk_choice(c, ch, NULL, 0, false, NULL, finish_name(ch)));
            ch->finish_sent = true;
        }
    }
    if (!all_done || c->ended)
        return;
    if ((status = call_error(c, msg, sizeof(msg))) != 0) {
        /* After the 200 header an error travels as an event (2.1). */
        sse(c, json_pack("{s:{s:s, s:s, s:s, s:i}}", "error", "message", msg, "type",
                         api_error_type(status), "code", api_error_code(status), "status",
                         status));
    } else if (c->include_usage) {
        json_t *o = envelope(c, true);
        json_object_set_new(o, "choices", json_array());
        json_object_set_new(o, "usage", usage(c));
        sse(c, o);
    }
    api__buf_add(&c->out, "data: [DONE]\n\n", 14);
    c->ended = true;
}

ssize_t api_call_read(api_call *c, char *buf, size_t max)
{
    ssize_t n;

    pthread_mutex_lock(&c->mu);
    if (c->out_off == c->out.len) {
        c->out.len = c->out_off = 0;
        produce(c);
    }
    if (c->out_off < c->out.len) {
        size_t k = c->out.len - c->out_off;
        if (k > max)
            k = max;
        memcpy(buf, c->out.s + c->out_off, k);
        c->out_off += k;
        n = (ssize_t)k;
    } else {
        n = c->ended || c->oom ? -1 : 0;
    }
    pthread_mutex_unlock(&c->mu);
    return n;
}
