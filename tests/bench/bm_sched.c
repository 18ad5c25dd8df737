/* bm_sched.c: decode-b8 through the real scheduler (engine/queue.c): an
 * eng_engine serving BM_B8 requests at once, as the server does, so that
 * the figure holds what a step adds to the forward pass (sampling over the
 * vocabulary, detokenizing, the callbacks, the queue).
 *
 * Admitted together.  The engine admits whatever is queued when it takes
 * work, so requests submitted one after another from this thread could
 * land in different steps, and some steps would run fewer than BM_B8.  A
 * blocker request (BLOCKER prompt tokens, one token out) goes first; once
 * the engine runs it (its running gauge is 1) the BM_B8 requests queue
 * behind it and are admitted together at the next step.  The engine's
 * step counter checks it (blocker 1 step, the batch 1 + steps) and a run
 * that was split is repeated. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/bench/bm.h"

#define BLOCKER 64          /* tokens: a prefill long enough to queue behind */
#define CAL_LEN 32          /* live conversion: two calibration prompts of this length */
#define WAIT_S 1800.0       /* a request taking longer means the engine is stuck */

typedef struct req_state {
    bm_sched *s;
    double    t_first, t_last;   /* engine thread, until on_done */
    size_t    n_tok;
    int       rc, done;          /* under s->mu */
} req_state;

struct bm_sched {
    eng_engine     *e;
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    int             n_done;      /* under mu */
    int             n_ids;
    uint64_t        seed;
};

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static void on_token(void *ud, const eng_token_info *t)
{
    req_state *r = ud;
    double now = bm_now();
    (void)t;
    if (r->n_tok++ == 0)
        r->t_first = now;
    r->t_last = now;
}

static void on_done(void *ud, int rc, eng_stop_reason why)
{
    req_state *r = ud;
    (void)why;
    pthread_mutex_lock(&r->s->mu);
    r->rc = rc;
    r->done = 1;
    r->s->n_done++;
    pthread_cond_signal(&r->s->cv);
    pthread_mutex_unlock(&r->s->mu);
}

/* Submits n requests of len random tokens, max_tokens out, greedy, EOS
 * ignored.  *n_sub: how many the engine took (they all reach on_done,
 * also when a later one fails). */
static int submit(bm_sched *s, req_state *st, eng_request **rq, size_t n, size_t len,
                  int max_tokens, size_t *n_sub, char *err, size_t errlen)
{
    int32_t ids[BLOCKER];
    eng_req_params p;
    int rc;

    eng_req_params_default(&p);
    p.max_tokens = max_tokens;
    p.ignore_eos = true;
    for (size_t i = 0; i < n; i++) {
        eng_request_cbs cbs = {NULL, on_token, on_done, &st[i]};
        st[i] = (req_state){.s = s};
        bm_random_ids(ids, len, s->n_ids, s->seed++);
        if ((rq[i] = eng_request_new(ids, len, &p, &cbs)) == NULL) {
            snprintf(err, errlen, "eng_request_new: out of memory");
            return -ENOMEM;
        }
        if ((rc = eng_submit(s->e, rq[i])) < 0) {
            snprintf(err, errlen, "eng_submit: %s", eng_strerror(rc));
            eng_request_free(rq[i]);
            rq[i] = NULL;
            return rc;
        }
        (*n_sub)++;
    }
    return 0;
}

/* Waits until n requests have finished since n_done was reset. */
static int wait_done(bm_sched *s, int n, char *err, size_t errlen)
{
    struct timespec ts;
    int rc = 0;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)WAIT_S;
    pthread_mutex_lock(&s->mu);
    while (s->n_done < n && rc == 0)
        rc = pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    pthread_mutex_unlock(&s->mu);
    if (rc != 0)
        snprintf(err, errlen, "the engine did not finish %d requests in %.0f s", n, WAIT_S);
    return -rc;
}

/* Submits n requests, waits for them all and frees them; a request that
 * failed fails the call. */
static int run_requests(bm_sched *s, req_state *st, size_t n, size_t len, int max_tokens,
                        char *err, size_t errlen)
{
    eng_request *rq[BM_B8] = {0};
    size_t n_sub = 0;
    int rc;

    pthread_mutex_lock(&s->mu);
    s->n_done = 0;
    pthread_mutex_unlock(&s->mu);
    rc = submit(s, st, rq, n, len, max_tokens, &n_sub, err, errlen);
    if (wait_done(s, (int)n_sub, rc < 0 ? NULL : err, rc < 0 ? 0 : errlen) < 0 && rc == 0)
        rc = -ETIMEDOUT;
    for (size_t i = 0; i < n_sub && rc == 0; i++)
        if (st[i].rc < 0) {
            rc = st[i].rc;
            snprintf(err, errlen, "request failed: %s", eng_strerror(rc));
        }
    for (size_t i = 0; i < n_sub; i++)
        eng_request_free(rq[i]);
    return rc;
}

/* Live conversion: the engine started in MEASURE; two requests are served
 * (their prefill computes the last token's logits, so lm_head is
 * measured), then a calibration command enters QUANTIZE. */
static int calibrate(bm_sched *s, char *err, size_t errlen)
{
    req_state st[2];
    eng_calib_cmd cmd = {.op = ENG_CALIB_MODE, .mode = QT_MODE_QUANTIZE};
    eng_calib_status cs;
    int rc;

    if ((rc = run_requests(s, st, 2, CAL_LEN, 1, err, errlen)) < 0)
        return rc;
    if ((rc = eng_engine_calibrate(s->e, &cmd)) < 0) {
        snprintf(err, errlen, "eng_engine_calibrate: %s", eng_strerror(rc));
        return rc;
    }
    do {
        sleep_s(0.01);
        eng_engine_calib_status(s->e, &cs);
    } while (cs.busy);
    if (cs.last_rc < 0 || cs.mode != QT_MODE_QUANTIZE) {
        snprintf(err, errlen, "live conversion: %s", cs.last_rc < 0 ? cs.last_err
                 : "the engine is not in QUANTIZE");
        return cs.last_rc < 0 ? cs.last_rc : -EINVAL;
    }
    return 0;
}

int bm_sched_open(bm_sched **out, const char *dir, int nth, const eng_fp8_opts *fp8,
                  const char *live_json, int n_ids, double *load_s, char *err, size_t errlen)
{
    eng_engine_params p;
    bm_sched *s;
    double t0 = bm_now();
    int rc;

    *out = NULL;
    if ((s = calloc(1, sizeof(*s))) == NULL)
        return -ENOMEM;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->n_ids = n_ids;
    s->seed = 4242;
    eng_engine_params_default(&p);
    p.model_dir = dir;
    p.model.n_threads = nth;
    p.fp8_opts = fp8;
    p.fp8_config_json = live_json;
    if ((rc = eng_engine_start(&s->e, &p, err, errlen)) < 0)
        goto fail;
    eng_engine_state st;
    while ((st = eng_engine_get_state(s->e, err, errlen)) == ENG_ENGINE_LOADING)
        sleep_s(0.01);
    if (st != ENG_ENGINE_READY) {
        rc = -EIO;   /* err holds the load error */
        goto fail;
    }
    if (live_json != NULL && (rc = calibrate(s, err, errlen)) < 0)
        goto fail;
    *load_s = bm_now() - t0;
    *out = s;
    return 0;
fail:
    bm_sched_close(s);
    return rc;
}

double bm_sched_decode8(bm_sched *s, int steps, char *err, size_t errlen)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        req_state st[BM_B8 + 1];
        eng_request *rq[BM_B8 + 1] = {0};
        eng_engine_stats a, b;
        size_t n_sub = 0;
        int rc, done = 0;

        pthread_mutex_lock(&s->mu);
        s->n_done = 0;
        pthread_mutex_unlock(&s->mu);
        eng_engine_get_stats(s->e, &a);
        rc = submit(s, st, rq, 1, BLOCKER, 1, &n_sub, err, errlen);
        /* until the engine runs the blocker (or is already past it) */
        while (rc == 0 && !done) {
            eng_engine_get_stats(s->e, &b);
            pthread_mutex_lock(&s->mu);
            done = b.running > 0 || st[0].done;
            pthread_mutex_unlock(&s->mu);
            if (!done)
                sleep_s(50e-6);
        }
        if (rc == 0)
            rc = submit(s, st + 1, rq + 1, BM_B8, BM_DEC_PROMPT, steps + 1, &n_sub, err, errlen);
        if (wait_done(s, (int)n_sub, rc < 0 ? NULL : err, rc < 0 ? 0 : errlen) < 0 && rc == 0)
            rc = -ETIMEDOUT;
        eng_engine_get_stats(s->e, &b);
        double t_a = 0, t_b = 0, tokens = 0;
        for (size_t i = 0; i < n_sub && rc == 0; i++) {
            if (st[i].rc < 0) {
                rc = st[i].rc;
                snprintf(err, errlen, "request failed: %s", eng_strerror(rc));
            } else if (i > 0) {
                t_a = st[i].t_first > t_a ? st[i].t_first : t_a;
                t_b = st[i].t_last > t_b ? st[i].t_last : t_b;
                tokens += (double)st[i].n_tok - 1;
            }
        }
        for (size_t i = 0; i < n_sub; i++)
            eng_request_free(rq[i]);
        if (rc < 0)
            return rc;
        if (tokens != (double)BM_B8 * steps) {
            snprintf(err, errlen, "decode-b8: %.0f tokens generated, %d expected", tokens,
                     BM_B8 * steps);
            return -EINVAL;
        }
        if (b.steps - a.steps == 2 + (uint64_t)steps && t_b > t_a)
            return tokens / (t_b - t_a);
    }
    snprintf(err, errlen, "decode-b8: the %d requests were not admitted in one step "
             "(3 tries)", BM_B8);
    return -EAGAIN;
}

void bm_sched_close(bm_sched *s)
{
    if (s == NULL)
        return;
    eng_engine_free(s->e);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}
