/* queue.c: the engine thread, its bounded queue and the request object.
 *
 * DESIGN
 * ------
 * Threads.  Exactly one engine thread per eng_engine.  It loads the model
 * and tokenizer, then owns the model, every eng_seq (KV cache), sampler
 * and detokenizer for the life of the engine: nothing else calls
 * eng_forward, so there is one OpenMP team and no locking around the
 * model.  HTTP threads (or tests) create requests, copying what they need
 * (ids, parameters, stop strings), and never touch the model.
 *
 * The two crossing points, and the only ones:
 *   1. eng_submit (any thread -> engine): appends to a FIFO guarded by
 *      e->mu and signals e->cv.  It never blocks: a full queue (by
 *      requests or by prompt tokens) is -EAGAIN at once.
 *   2. The request's callbacks (engine -> owner): on_prompt / on_token /
 *      on_done run on the engine thread, between two steps.  They must be
 *      quick and must not call back into the engine; the server copies the
 *      token into its own buffer under its own lock and resumes the
 *      suspended connection.  on_done runs exactly once per accepted
 *      request, after the engine has released everything it held for it:
 *      from then on the owner may free the request.
 * The one exception to "nobody touches what they do not own" is the
 * atomic cancel flag (eng_request_cancel), read by the engine at each step.
 *
 * The loop (continuous batching).  Each iteration: drop cancelled or
 * expired requests (queued or running) with -ECANCELED / -ETIMEDOUT; admit
 * queued requests while fewer than max_running sequences run and the
 * step's prefill budget (max_step_tokens) allows, the first always fits;
 * then one eng_forward over every running sequence: new ones with their
 * whole prompt, the others with their last sampled token.  Then each
 * sequence samples, detokenizes, checks EOS / stop strings / length and
 * reports.  Each sequence has its own cache and sampler, so a request's
 * ids do not depend on what it was batched with (as long as the kernels
 * compute a row independently of the batch, which check_sched verifies).
 * Idle, the thread waits on e->cv with a 100 ms timeout and refreshes the
 * heartbeat, which the server's watchdog reads.
 *
 * Stop.  eng_engine_stop sets e->stopping; the thread completes every
 * queued and running request with -ECANCELED and exits. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/engine-int.h"

#define IDLE_WAIT_MS 100
#define MAX_TOP 20

struct eng_request {
    eng_request    *next;           /* queue link, under e->mu */
    int32_t        *prompt;
    size_t          n_prompt;
    eng_req_params  p;              /* p.stop points at stop_copy */
    char          **stop_copy;
    size_t          max_stop;       /* longest stop string */
    eng_request_cbs cbs;
    _Atomic int     cancel;
    /* Engine thread only, from admission to on_done. */
    eng_seq        *seq;
    eng_sampler    *smp;
    eng_detok      *dt;
    float          *logits;         /* [V], or [n_prompt, V] while prefilling with prompt logprobs */
    size_t          n_ctx;
    bool            prefilled;
    int32_t         last;
    size_t          n_gen;
    char           *text;           /* completion text decoded so far */
    size_t          text_len, text_cap, emitted;
};

struct eng_engine {
    char              model_dir[4096];
    eng_engine_params p;
    pthread_t         thread;
    bool              joined;
    pthread_mutex_t   mu;            /* guards the queue, stopping, load_err */
    pthread_cond_t    cv;
    eng_request      *q_head, *q_tail;
    size_t            q_n, q_tokens;
    bool              stopping;
    char              load_err[512];
    _Atomic int       state;         /* eng_engine_state */
    eng_model        *m;             /* set before state becomes READY */
    eng_tokenizer    *tok;
    size_t            max_pos;       /* model context, published with READY */
    _Atomic uint64_t  heartbeat;
    _Atomic uint64_t  s_running, s_kv_used, s_kv_cap, s_steps, s_prompt, s_gen,
                      s_rejected, s_cancelled, s_expired, s_epoch;
    /* Calibration: the pending command (under mu) and its status. */
    char             *fp8_json;      /* start-up FP8Config, owned */
    eng_fp8_opts      fp8_opts;      /* eng_engine_params.fp8_opts, or the defaults */
    bool              has_fp8_opts;
    struct calib_cmd *calib;         /* pending, under mu */
    _Atomic int       calib_busy, mode, prepared, measured;
    int               last_rc;       /* under mu */
    char              last_err[256]; /* under mu */
    _Atomic uint64_t  obs_tokens, obs_requests, transitions;
    /* Engine thread only. */
    eng_request     **run;
    size_t            n_run;
    eng_batch_item   *items;
    size_t            V, n_tok;      /* logits per row; ids the tokenizer knows */
    int32_t           top_ids[MAX_TOP];
    float             top_lp[MAX_TOP];
};

/* An owned copy of an eng_calib_cmd. */
typedef struct calib_cmd {
    int       op, mode;
    bool      reset;
    char     *config_json, *path;
    int32_t **seqs;
    size_t   *lens, n_seqs;
} calib_cmd;

static void calib_free(calib_cmd *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n_seqs; i++)
        free(c->seqs[i]);
    free(c->seqs);
    free(c->lens);
    free(c->config_json);
    free(c->path);
    free(c);
}

static uint64_t now_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

/* ---- requests ----------------------------------------------------------- */

void eng_req_params_default(eng_req_params *p)
{
    memset(p, 0, sizeof(*p));
    eng_sample_params_default(&p->sample);
    p->max_tokens = 16;
}

eng_request *eng_request_new(const int32_t *prompt, size_t n_prompt, const eng_req_params *p,
                             const eng_request_cbs *cbs)
{
    eng_request *r;

    if (prompt == NULL || n_prompt == 0 || p == NULL || cbs == NULL || cbs->on_done == NULL ||
        p->max_tokens <= 0 || p->top_logprobs < 0 || p->top_logprobs > MAX_TOP ||
        (p->n_stop > 0 && p->stop == NULL))
        return NULL;
    if ((r = calloc(1, sizeof(*r))) == NULL)
        return NULL;
    r->p = *p;
    r->cbs = *cbs;
    atomic_init(&r->cancel, 0);
    if ((r->prompt = malloc(n_prompt * sizeof(int32_t))) == NULL)
        goto fail;
    memcpy(r->prompt, prompt, n_prompt * sizeof(int32_t));
    r->n_prompt = n_prompt;
    r->p.stop = NULL;
    if (p->n_stop > 0) {
        if ((r->stop_copy = calloc(p->n_stop, sizeof(char *))) == NULL)
            goto fail;
        for (size_t i = 0; i < p->n_stop; i++) {
            if (p->stop[i] == NULL || (r->stop_copy[i] = strdup(p->stop[i])) == NULL)
                goto fail;
            if (strlen(p->stop[i]) > r->max_stop)
                r->max_stop = strlen(p->stop[i]);
        }
        r->p.stop = (const char *const *)r->stop_copy;
    }
    return r;
fail:
    eng_request_free(r);
    return NULL;
}

void eng_request_free(eng_request *r)
{
    if (r == NULL)
        return;
    if (r->stop_copy != NULL)
        for (size_t i = 0; i < r->p.n_stop; i++)
            free(r->stop_copy[i]);
    free(r->stop_copy);
    free(r->prompt);
    free(r);
}

void eng_request_cancel(eng_request *r)
{
    atomic_store(&r->cancel, 1);
}

/* ---- crossing point 1: submit ------------------------------------------- */

int eng_submit(eng_engine *e, eng_request *r)
{
    int rc = 0;

    pthread_mutex_lock(&e->mu);
    if (e->stopping || atomic_load(&e->state) != ENG_ENGINE_READY) {
        rc = -ESHUTDOWN;
    } else if (r->n_prompt >= e->max_pos) {
        rc = ENG_E_CONTEXT;
    } else if (e->q_n >= e->p.max_queued_requests ||
               (e->q_n > 0 && e->q_tokens + r->n_prompt > e->p.max_queued_tokens)) {
        /* A lone request longer than the token budget still queues: the
         * budget bounds waiting work, not the size of one prompt. */
        rc = -EAGAIN;
        atomic_fetch_add(&e->s_rejected, 1);
    } else {
        r->next = NULL;
        if (e->q_tail != NULL)
            e->q_tail->next = r;
        else
            e->q_head = r;
        e->q_tail = r;
        e->q_n++;
        e->q_tokens += r->n_prompt;
        pthread_cond_signal(&e->cv);
    }
    pthread_mutex_unlock(&e->mu);
    return rc;
}

/* ---- crossing point 2: completion --------------------------------------- */

/* Releases the engine's per-request state, then hands r back through
 * on_done; r must not be touched afterwards. */
static void finish(eng_engine *e, eng_request *r, int rc, eng_stop_reason why)
{
    if (r->seq != NULL) {
        atomic_fetch_sub(&e->s_kv_used, eng_seq_len(r->seq));
        atomic_fetch_sub(&e->s_kv_cap, r->n_ctx);
    }
    eng_seq_free(r->seq);
    eng_sampler_free(r->smp);
    eng_detok_free(r->dt);
    free(r->logits);
    free(r->text);
    r->seq = NULL;
    r->smp = NULL;
    r->dt = NULL;
    r->logits = NULL;
    r->text = NULL;
    if (rc == -ECANCELED)
        atomic_fetch_add(&e->s_cancelled, 1);
    else if (rc == -ETIMEDOUT)
        atomic_fetch_add(&e->s_expired, 1);
    r->cbs.on_done(r->cbs.ud, rc, why);
}

/* ---- engine thread ------------------------------------------------------ */

/* log softmax of row[0..n) at id, and the k best entries (descending). */
static float log_softmax_at(const float *row, size_t n, int32_t id, size_t k, int32_t *top_ids,
                            float *top_lp)
{
    double mx = -INFINITY, sum = 0.0, lse;
    size_t have = 0;

    for (size_t v = 0; v < n; v++)
        if (row[v] > mx)
            mx = row[v];
    for (size_t v = 0; v < n; v++)
        sum += exp((double)row[v] - mx);
    lse = mx + log(sum);
    for (size_t v = 0; v < n && k > 0; v++) {
        float x = row[v];
        size_t j;
        if (have == k && x <= top_lp[k - 1])
            continue;
        j = have < k ? have++ : k - 1;
        while (j > 0 && top_lp[j - 1] < x) {
            top_lp[j] = top_lp[j - 1];
            top_ids[j] = top_ids[j - 1];
            j--;
        }
        top_lp[j] = x;
        top_ids[j] = (int32_t)v;
    }
    for (size_t j = 0; j < have; j++)
        top_lp[j] = (float)((double)top_lp[j] - lse);
    return (float)((double)row[id] - lse);
}

static int text_append(eng_request *r, const char *s, size_t n)
{
    if (r->text_len + n + 1 > r->text_cap) {
        size_t cap = r->text_cap ? r->text_cap * 2 : 256;
        char *t;
        while (cap < r->text_len + n + 1)
            cap *= 2;
        if ((t = realloc(r->text, cap)) == NULL)
            return -ENOMEM;
        r->text = t;
        r->text_cap = cap;
    }
    memcpy(r->text + r->text_len, s, n);
    r->text_len += n;
    r->text[r->text_len] = '\0';
    return 0;
}

/* How much of text[0..n) is final: no suffix may start a stop string. */
static size_t stop_safe(const char *text, size_t n, const char *const *stop, size_t n_stop)
{
    size_t safe = n;

    for (size_t i = 0; i < n_stop; i++) {
        size_t sl = strlen(stop[i]);
        for (size_t k = sl > 1 ? sl - 1 : 0; k > 0; k--)
            if (k <= n && memcmp(text + n - k, stop[i], k) == 0) {
                if (n - k < safe)
                    safe = n - k;
                break;
            }
    }
    return safe;
}

static int admit(eng_engine *e, eng_request *r)
{
    size_t V = e->V;

    r->n_ctx = r->n_prompt + (size_t)r->p.max_tokens;
    if (r->n_ctx > e->max_pos)
        r->n_ctx = e->max_pos;
    r->seq = eng_seq_new(e->m, r->n_ctx);
    r->smp = eng_sampler_new(&r->p.sample, V);
    r->logits = malloc((r->p.prompt_logprobs ? r->n_prompt : 1) * V * sizeof(float));
    if (r->seq == NULL || r->smp == NULL || r->logits == NULL ||
        eng_detok_new(&r->dt, e->tok, true) < 0)
        return -ENOMEM;
    atomic_fetch_add(&e->s_kv_cap, r->n_ctx);
    return 0;
}

/* Reports the prompt logprobs from the prefill's rows. */
static void report_prompt(eng_engine *e, eng_request *r)
{
    for (size_t pos = 1; pos < r->n_prompt; pos++) {
        eng_token_info t = {0};
        size_t k = (size_t)r->p.top_logprobs;
        t.epoch = atomic_load(&e->s_epoch);
        t.fp8_mode = atomic_load(&e->mode);
        t.id = r->prompt[pos];
        t.text = "";
        t.logprob = log_softmax_at(r->logits + (pos - 1) * e->V, e->n_tok, t.id, k,
                                   e->top_ids, e->top_lp);
        t.n_top = k;
        t.top_ids = e->top_ids;
        t.top_logprobs = e->top_lp;
        if (r->cbs.on_prompt != NULL)
            r->cbs.on_prompt(r->cbs.ud, pos, &t);
    }
}

/* Samples one token for r from row, reports it; returns 1 when r is done
 * (*why set), 0 to go on, or a negative errno. */
static int step_one(eng_engine *e, eng_request *r, float *row, eng_stop_reason *why)
{
    eng_token_info t = {0};
    size_t k = (size_t)r->p.top_logprobs, safe, old_len = r->text_len;
    t.epoch = atomic_load(&e->s_epoch);
    t.fp8_mode = atomic_load(&e->mode);
    const char *piece;
    size_t plen;
    long hit = -1;
    bool last;
    int32_t id;

    /* Rows past the tokenizer's vocabulary are never picked (generate.c). */
    for (size_t v = e->n_tok; v < e->V; v++)
        row[v] = -INFINITY;
    id = eng_sampler_sample(r->smp, row);
    t.id = id;
    t.logprob = log_softmax_at(row, e->n_tok, id, k, e->top_ids, e->top_lp);
    t.n_top = k;
    t.top_ids = e->top_ids;
    t.top_logprobs = e->top_lp;
    r->n_gen++;
    r->last = id;
    atomic_fetch_add(&e->s_gen, 1);
    *why = ENG_STOP_LENGTH;
    bool eos = !r->p.ignore_eos && eng_tokenizer_is_eos(e->tok, id);
    last = eos || r->n_gen >= (size_t)r->p.max_tokens || eng_seq_len(r->seq) >= r->n_ctx;
    if (eos)
        *why = ENG_STOP_EOS;
    if (eng_detok_push(r->dt, id, &piece, &plen) < 0 || text_append(r, piece, plen) < 0)
        return -ENOMEM;
    if (last && (eng_detok_flush(r->dt, &piece, &plen) < 0 || text_append(r, piece, plen) < 0))
        return -ENOMEM;
    if (r->p.n_stop > 0) {
        /* A new match ends in the new text, so it starts at most
         * max_stop - 1 bytes before it. */
        size_t from = old_len > r->max_stop ? old_len - r->max_stop : 0;
        long h = eng_stop_find(r->text + from, r->text_len - from, r->p.stop, r->p.n_stop);
        if (h >= 0)
            hit = (long)from + h;
    }
    if (hit >= 0) {
        safe = (size_t)hit > r->emitted ? (size_t)hit : r->emitted;
        last = true;
        *why = ENG_STOP_STRING;
    } else {
        safe = last ? r->text_len : stop_safe(r->text, r->text_len, r->p.stop, r->p.n_stop);
        if (safe < r->emitted)
            safe = r->emitted;
    }
    t.text = r->text + r->emitted;
    t.len = safe - r->emitted;
    r->emitted = safe;
    r->cbs.on_token(r->cbs.ud, &t);
    return last ? 1 : 0;
}

static void remove_running(eng_engine *e, size_t i)
{
    memmove(&e->run[i], &e->run[i + 1], (e->n_run - i - 1) * sizeof(e->run[0]));
    e->n_run--;
    atomic_store(&e->s_running, e->n_run);
}

/* Takes cancelled or expired requests out of the queue (under the lock)
 * and finishes them outside it; then the running ones. */
static void reap(eng_engine *e, uint64_t now)
{
    eng_request *dead = NULL, **pp, *r;

    pthread_mutex_lock(&e->mu);
    for (pp = &e->q_head; (r = *pp) != NULL;) {
        if (atomic_load(&r->cancel) || (r->p.deadline_ms != 0 && now >= r->p.deadline_ms)) {
            *pp = r->next;
            e->q_n--;
            e->q_tokens -= r->n_prompt;
            r->next = dead;
            dead = r;
        } else {
            pp = &r->next;
        }
    }
    e->q_tail = NULL;
    for (r = e->q_head; r != NULL; r = r->next)
        e->q_tail = r;
    pthread_mutex_unlock(&e->mu);
    while ((r = dead) != NULL) {
        dead = r->next;
        finish(e, r, atomic_load(&r->cancel) ? -ECANCELED : -ETIMEDOUT, ENG_STOP_CALLBACK);
    }
    for (size_t i = 0; i < e->n_run;) {
        r = e->run[i];
        if (atomic_load(&r->cancel) || (r->p.deadline_ms != 0 && now >= r->p.deadline_ms)) {
            remove_running(e, i);
            finish(e, r, atomic_load(&r->cancel) ? -ECANCELED : -ETIMEDOUT, ENG_STOP_CALLBACK);
        } else {
            i++;
        }
    }
}

/* Moves queued requests into the running set; waits when there is
 * nothing to do.  Returns false when the engine is stopping. */
static bool take_work(eng_engine *e, calib_cmd **cmd)
{
    size_t budget = e->p.max_step_tokens, used = 0;
    eng_request *admitted[64];
    size_t n_adm = 0;

    *cmd = NULL;
    pthread_mutex_lock(&e->mu);
    while (!e->stopping && e->n_run == 0 && e->q_head == NULL && e->calib == NULL) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += IDLE_WAIT_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&e->cv, &e->mu, &ts);
        atomic_store(&e->heartbeat, now_ms());
    }
    if (e->stopping) {
        pthread_mutex_unlock(&e->mu);
        return false;
    }
    /* A calibration command waits for the running sequences to finish in
     * their epoch; meanwhile nothing new is admitted. */
    if (e->calib != NULL && e->n_run == 0) {
        *cmd = e->calib;
        e->calib = NULL;
    }
    while (e->calib == NULL && *cmd == NULL && e->q_head != NULL &&
           e->n_run + n_adm < e->p.max_running && n_adm < 64 &&
           (n_adm == 0 || used + e->q_head->n_prompt <= budget)) {
        eng_request *r = e->q_head;
        e->q_head = r->next;
        if (e->q_head == NULL)
            e->q_tail = NULL;
        e->q_n--;
        e->q_tokens -= r->n_prompt;
        used += r->n_prompt;
        admitted[n_adm++] = r;
    }
    pthread_mutex_unlock(&e->mu);
    for (size_t i = 0; i < n_adm; i++) {
        eng_request *r = admitted[i];
        int rc = admit(e, r);
        if (rc < 0) {
            finish(e, r, rc, ENG_STOP_CALLBACK);
            continue;
        }
        e->run[e->n_run++] = r;
        if (atomic_load(&e->mode) == QT_MODE_MEASURE)
            atomic_fetch_add(&e->obs_requests, 1);
    }
    atomic_store(&e->s_running, e->n_run);
    return true;
}

static int fp8_prepare(eng_engine *e, const char *json, char *err, size_t errlen)
{
    qt_config *c = NULL;
    eng_fp8_opts o;
    int rc;

    if (json != NULL)
        rc = qt_config_parse(&c, json, "FP8 config", err, errlen);
    else
        rc = (c = qt_config_new_default()) != NULL ? 0 : -ENOMEM;
    if (rc < 0)
        return rc;
    if (e->has_fp8_opts)
        o = e->fp8_opts;
    else
        eng_fp8_opts_default(&o);
    rc = eng_fp8_prepare(e->m, c, NULL, &o, err, errlen);
    qt_config_free(c);
    if (rc == 0)
        atomic_store(&e->prepared, 1);
    return rc;
}

/* Runs one calibration command on the engine thread, no sequence running. */
static void run_calib(eng_engine *e, calib_cmd *c)
{
    char err[256] = "";
    int rc = 0, before = atomic_load(&e->mode);
    bool bump = false;

    if (!atomic_load(&e->prepared) && c->op != ENG_CALIB_SAVE)
        rc = fp8_prepare(e, c->config_json, err, sizeof(err));
    if (rc == 0 && c->op == ENG_CALIB_MODE) {
        if (c->reset && eng_fp8_mode(e->m) == QT_MODE_MEASURE)
            rc = eng_fp8_set_mode(e->m, QT_MODE_OFF, err, sizeof(err));
        if (rc == 0)
            rc = eng_fp8_set_mode(e->m, (qt_mode)c->mode, err, sizeof(err));
        if (rc == 0 && c->mode == QT_MODE_MEASURE &&
            (before != QT_MODE_MEASURE || c->reset)) {
            atomic_store(&e->obs_tokens, 0);
            atomic_store(&e->obs_requests, 0);
        }
        if (rc == 0 && c->n_seqs > 0) {
            rc = eng_fp8_calibrate(e->m, (const int32_t *const *)c->seqs, c->lens, c->n_seqs,
                                   err, sizeof(err));
            for (size_t i = 0; rc == 0 && i < c->n_seqs; i++)
                atomic_fetch_add(&e->obs_tokens, c->lens[i]);
            if (rc == 0) {
                atomic_fetch_add(&e->obs_requests, c->n_seqs);
                atomic_store(&e->measured, 1);
            }
        }
        bump = true;
    } else if (rc == 0 && c->op == ENG_CALIB_SAVE) {
        if (!atomic_load(&e->prepared)) {
            rc = QT_E_MODE;
            kn_errf(err, sizeof(err), "calibration: nothing measured yet");
        } else {
            rc = eng_fp8_dump_measurements(e->m, err, sizeof(err));
        }
        if (rc == 0 && c->path != NULL)
            rc = eng_fp8_export(e->m, e->model_dir, c->path, false, err, sizeof(err));
    } else if (rc == 0 && c->op == ENG_CALIB_LOAD) {
        rc = eng_fp8_load_measurements(e->m, c->path, err, sizeof(err));
        if (rc == 0)
            rc = eng_fp8_set_mode(e->m, QT_MODE_QUANTIZE, err, sizeof(err));
        if (rc == 0)
            atomic_store(&e->measured, 1);
        bump = true;
    }
    if (atomic_load(&e->prepared))
        atomic_store(&e->mode, (int)eng_fp8_mode(e->m));
    if (bump && (rc == 0 || atomic_load(&e->mode) != before)) {
        atomic_fetch_add(&e->s_epoch, 1);
        atomic_fetch_add(&e->transitions, 1);
    }
    if (rc < 0)
        ENG_LOG(KN_LOG_WARN, "calibration command failed: %s", err);
    else
        ENG_LOG(KN_LOG_INFO, "calibration: mode %d, epoch %llu", atomic_load(&e->mode),
                (unsigned long long)atomic_load(&e->s_epoch));
    pthread_mutex_lock(&e->mu);
    e->last_rc = rc;
    snprintf(e->last_err, sizeof(e->last_err), "%s", rc < 0 ? err : "");
    pthread_mutex_unlock(&e->mu);
    atomic_store(&e->calib_busy, 0);
    calib_free(c);
}

int eng_engine_calibrate(eng_engine *e, const eng_calib_cmd *cmd)
{
    calib_cmd *c = calloc(1, sizeof(*c));
    int rc = 0;

    if (c == NULL)
        return -ENOMEM;
    c->op = cmd->op;
    c->mode = cmd->mode;
    c->reset = cmd->reset;
    if ((cmd->config_json != NULL && (c->config_json = strdup(cmd->config_json)) == NULL) ||
        (cmd->path != NULL && (c->path = strdup(cmd->path)) == NULL))
        goto oom;
    if (cmd->n_seqs > 0) {
        if ((c->seqs = calloc(cmd->n_seqs, sizeof(*c->seqs))) == NULL ||
            (c->lens = calloc(cmd->n_seqs, sizeof(*c->lens))) == NULL)
            goto oom;
        c->n_seqs = cmd->n_seqs;
        for (size_t i = 0; i < cmd->n_seqs; i++) {
            if ((c->seqs[i] = malloc(cmd->lens[i] * sizeof(int32_t) + 1)) == NULL)
                goto oom;
            memcpy(c->seqs[i], cmd->seqs[i], cmd->lens[i] * sizeof(int32_t));
            c->lens[i] = cmd->lens[i];
        }
    }
    pthread_mutex_lock(&e->mu);
    if (e->stopping || atomic_load(&e->state) != ENG_ENGINE_READY)
        rc = -ESHUTDOWN;
    else if (atomic_load(&e->calib_busy))
        rc = -EBUSY;
    else {
        e->calib = c;
        atomic_store(&e->calib_busy, 1);
        pthread_cond_signal(&e->cv);
    }
    pthread_mutex_unlock(&e->mu);
    if (rc < 0)
        calib_free(c);
    return rc;
oom:
    calib_free(c);
    return -ENOMEM;
}

void eng_engine_calib_status(const eng_engine *e, eng_calib_status *st)
{
    eng_engine *me = (eng_engine *)e;

    memset(st, 0, sizeof(*st));
    st->mode = atomic_load(&me->mode);
    st->epoch = atomic_load(&me->s_epoch);
    st->busy = atomic_load(&me->calib_busy) != 0;
    st->prepared = atomic_load(&me->prepared) != 0;
    st->tokens_observed = atomic_load(&me->obs_tokens);
    st->requests_observed = atomic_load(&me->obs_requests);
    st->transitions = atomic_load(&me->transitions);
    pthread_mutex_lock(&me->mu);
    st->last_rc = me->last_rc;
    snprintf(st->last_err, sizeof(st->last_err), "%s", me->last_err);
    pthread_mutex_unlock(&me->mu);
    st->measured = atomic_load(&me->measured) != 0;
}

static void set_item(eng_batch_item *it, eng_request *r)
{
    if (!r->prefilled)
        *it = (eng_batch_item){r->seq, r->prompt, r->n_prompt, r->p.prompt_logprobs, r->logits};
    else
        *it = (eng_batch_item){r->seq, &r->last, 1, false, r->logits};
}

/* One forward over every running sequence; on an error (no sequence
 * changed) each item is retried alone so one bad request fails alone. */
static void step(eng_engine *e)
{
    char err[256];
    int rc;

    for (size_t i = 0; i < e->n_run; i++)
        set_item(&e->items[i], e->run[i]);
    rc = eng_forward(e->m, e->items, e->n_run, err, sizeof(err));
    if (rc < 0) {
        ENG_LOG(KN_LOG_WARN, "step of %zu sequences failed (%s); retrying one by one", e->n_run,
                err);
        for (size_t i = 0; i < e->n_run;) {
            eng_request *r = e->run[i];
            set_item(&e->items[0], r);
            if ((rc = eng_forward(e->m, &e->items[0], 1, err, sizeof(err))) < 0) {
                ENG_LOG(KN_LOG_WARN, "sequence failed: %s", err);
                remove_running(e, i);
                finish(e, r, rc, ENG_STOP_CALLBACK);
                continue;
            }
            i++;
        }
    }
    atomic_fetch_add(&e->s_steps, 1);
    if (atomic_load(&e->mode) == QT_MODE_MEASURE) {
        size_t nt = 0;
        for (size_t i = 0; i < e->n_run; i++)
            nt += e->run[i]->prefilled ? 1 : e->run[i]->n_prompt;
        atomic_fetch_add(&e->obs_tokens, nt);
        atomic_store(&e->measured, 1);
    }
    for (size_t i = 0; i < e->n_run;) {
        eng_request *r = e->run[i];
        eng_stop_reason why;
        float *row = r->logits;
        size_t grew = r->prefilled ? 1 : r->n_prompt;
        atomic_fetch_add(&e->s_kv_used, grew);
        if (!r->prefilled) {
            atomic_fetch_add(&e->s_prompt, r->n_prompt);
            if (r->p.prompt_logprobs) {
                report_prompt(e, r);
                row = r->logits + (r->n_prompt - 1) * e->V;
            }
            r->prefilled = true;
        }
        rc = step_one(e, r, row, &why);
        if (row != r->logits)
            memmove(r->logits, row, e->V * sizeof(float));   /* one row from now on */
        if (rc != 0) {
            remove_running(e, i);
            finish(e, r, rc > 0 ? 0 : rc, why);
            continue;
        }
        i++;
    }
}

static void *engine_main(void *arg)
{
    eng_engine *e = arg;
    char err[512] = "";
    int rc;

    atomic_store(&e->heartbeat, now_ms());
    rc = eng_model_load(&e->m, e->model_dir, &e->p.model, err, sizeof(err));
    if (rc == 0)
        rc = eng_tokenizer_load(&e->tok, e->model_dir, err, sizeof(err));
    if (rc == 0) {
        const eng_model_config *c = eng_model_get_config(e->m);
        e->V = (size_t)c->vocab_size;
        e->n_tok = eng_tokenizer_vocab_size(e->tok);
        if (e->n_tok == 0 || e->n_tok > e->V)
            e->n_tok = e->V;
        e->max_pos = (size_t)c->max_pos;
        e->run = calloc(e->p.max_running, sizeof(e->run[0]));
        e->items = calloc(e->p.max_running, sizeof(e->items[0]));
        if (e->run == NULL || e->items == NULL) {
            rc = -ENOMEM;
            kn_errf(err, sizeof(err), "engine: out of memory");
        }
    }
    /* An FP8 checkpoint loads in QUANTIZE with the activations it
     * declares (dynamic ones run weight-only); the caller's options
     * choose instead (benchmarks run both). */
    if (rc == 0 && e->has_fp8_opts && eng_fp8_mode(e->m) != QT_MODE_OFF)
        rc = eng_fp8_set_opts(e->m, &e->fp8_opts, err, sizeof(err));
    /* The configured FP8 mode applies from the start (AUTO included). */
    if (rc == 0 && e->fp8_json != NULL && (rc = fp8_prepare(e, e->fp8_json, err,
                                                             sizeof(err))) == 0 &&
        eng_fp8_mode(e->m) == QT_MODE_QUANTIZE)
        atomic_store(&e->measured, 1);
    /* The mode the model runs in, an FP8 checkpoint's QUANTIZE included
     * (what X-FP8-Mode and the fingerprint report). */
    if (rc == 0) {
        atomic_store(&e->mode, (int)eng_fp8_mode(e->m));
        if (atomic_load(&e->mode) != QT_MODE_OFF)
            atomic_store(&e->s_epoch, 1);
    }
    pthread_mutex_lock(&e->mu);
    if (rc < 0)
        snprintf(e->load_err, sizeof(e->load_err), "%s", err);
    atomic_store(&e->state, rc < 0 ? ENG_ENGINE_FAILED : ENG_ENGINE_READY);
    pthread_mutex_unlock(&e->mu);
    if (rc < 0) {
        ENG_LOG(KN_LOG_ERR, "loading %s failed: %s", e->model_dir, err);
        return NULL;
    }
    ENG_LOG(KN_LOG_INFO, "model %s loaded: vocab %zu, context %zu", e->model_dir, e->V,
            e->max_pos);
    for (calib_cmd *cmd = NULL; take_work(e, &cmd);) {
        if (cmd != NULL)
            run_calib(e, cmd);
        reap(e, now_ms());
        if (e->n_run > 0)
            step(e);
        atomic_store(&e->heartbeat, now_ms());
    }
    /* Stopping: everything still held completes with -ECANCELED. */
    for (size_t i = e->n_run; i > 0; i--)
        atomic_store(&e->run[i - 1]->cancel, 1);
    pthread_mutex_lock(&e->mu);
    for (eng_request *r = e->q_head; r != NULL; r = r->next)
        atomic_store(&r->cancel, 1);
    pthread_mutex_unlock(&e->mu);
    reap(e, now_ms());
    atomic_store(&e->state, ENG_ENGINE_STOPPED);
    return NULL;
}

/* ---- lifecycle ---------------------------------------------------------- */

void eng_engine_params_default(eng_engine_params *p)
{
    memset(p, 0, sizeof(*p));
    eng_model_opts_default(&p->model);
    p->max_queued_requests = 64;
    p->max_queued_tokens = (size_t)1 << 20;
    p->max_running = 16;
    p->max_step_tokens = 2048;
}

int eng_engine_start(eng_engine **out, const eng_engine_params *p, char *err, size_t errlen)
{
    eng_engine *e;
    int rc;

    *out = NULL;
    if (p == NULL || p->model_dir == NULL || strlen(p->model_dir) >= sizeof(e->model_dir)) {
        kn_errf(err, errlen, "engine: no model directory, or its path is too long");
        return -EINVAL;
    }
    if ((e = calloc(1, sizeof(*e))) == NULL) {
        kn_errf(err, errlen, "engine: out of memory");
        return -ENOMEM;
    }
    e->p = *p;
    if (p->fp8_config_json != NULL && (e->fp8_json = strdup(p->fp8_config_json)) == NULL) {
        free(e);
        return -ENOMEM;
    }
    e->p.fp8_config_json = NULL;
    if (p->fp8_opts != NULL) {
        e->fp8_opts = *p->fp8_opts;
        e->has_fp8_opts = true;
    }
    e->p.fp8_opts = NULL;
    snprintf(e->model_dir, sizeof(e->model_dir), "%s", p->model_dir);
    e->p.model_dir = e->model_dir;
    if (e->p.max_queued_requests == 0)
        e->p.max_queued_requests = 64;
    if (e->p.max_queued_tokens == 0)
        e->p.max_queued_tokens = (size_t)1 << 20;
    if (e->p.max_running == 0)
        e->p.max_running = 16;
    if (e->p.max_step_tokens == 0)
        e->p.max_step_tokens = 2048;
    atomic_init(&e->state, ENG_ENGINE_LOADING);
    atomic_init(&e->heartbeat, now_ms());
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    if ((rc = pthread_create(&e->thread, NULL, engine_main, e)) != 0) {
        kn_errf(err, errlen, "engine: cannot start its thread: %s", strerror(rc));
        pthread_mutex_destroy(&e->mu);
        pthread_cond_destroy(&e->cv);
        free(e);
        return -rc;
    }
    *out = e;
    return 0;
}

void eng_engine_stop(eng_engine *e)
{
    if (e == NULL || e->joined)
        return;
    pthread_mutex_lock(&e->mu);
    e->stopping = true;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->thread, NULL);
    e->joined = true;
    if (atomic_load(&e->state) == ENG_ENGINE_READY)
        atomic_store(&e->state, ENG_ENGINE_STOPPED);
}

void eng_engine_free(eng_engine *e)
{
    if (e == NULL)
        return;
    eng_engine_stop(e);
    eng_tokenizer_free(e->tok);
    eng_model_free(e->m);
    free(e->run);
    free(e->items);
    free(e->fp8_json);
    calib_free(e->calib);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}

eng_engine_state eng_engine_get_state(const eng_engine *e, char *err, size_t errlen)
{
    eng_engine *me = (eng_engine *)e;
    int st = atomic_load(&me->state);

    if (st == ENG_ENGINE_FAILED && err != NULL && errlen > 0) {
        pthread_mutex_lock(&me->mu);
        snprintf(err, errlen, "%s", me->load_err);
        pthread_mutex_unlock(&me->mu);
    }
    return (eng_engine_state)st;
}

const eng_tokenizer *eng_engine_tokenizer(const eng_engine *e)
{
    int st = atomic_load(&((eng_engine *)e)->state);
    return st == ENG_ENGINE_READY || st == ENG_ENGINE_STOPPED ? e->tok : NULL;
}

const eng_model *eng_engine_model(const eng_engine *e)
{
    int st = atomic_load(&((eng_engine *)e)->state);
    return st == ENG_ENGINE_READY || st == ENG_ENGINE_STOPPED ? e->m : NULL;
}

uint64_t eng_engine_heartbeat_ms(const eng_engine *e)
{
    return atomic_load(&((eng_engine *)e)->heartbeat);
}

void eng_engine_get_stats(const eng_engine *e, eng_engine_stats *st)
{
    eng_engine *me = (eng_engine *)e;

    memset(st, 0, sizeof(*st));
    pthread_mutex_lock(&me->mu);
    st->queued = me->q_n;
    st->queued_tokens = me->q_tokens;
    pthread_mutex_unlock(&me->mu);
    st->running = atomic_load(&me->s_running);
    st->kv_used = atomic_load(&me->s_kv_used);
    st->kv_capacity = atomic_load(&me->s_kv_cap);
    st->steps = atomic_load(&me->s_steps);
    st->prompt_tokens = atomic_load(&me->s_prompt);
    st->generated_tokens = atomic_load(&me->s_gen);
    st->rejected_full = atomic_load(&me->s_rejected);
    st->cancelled = atomic_load(&me->s_cancelled);
    st->expired = atomic_load(&me->s_expired);
    st->epoch = atomic_load(&me->s_epoch);
}
