/* check_sched.c: the engine thread and its queue (engine/queue.c) on the
 * bundled model, against references computed here: prompt logprobs equal
 * the log softmax of a plain eng_forward's logits (computed in double in
 * this file); greedy ids of requests batched together equal a one-request
 * eng_forward loop; a full queue is -EAGAIN; cancel and deadline end a
 * running sequence early with -ECANCELED / -ETIMEDOUT. */
#include "config.h"

#include "engine/engine.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAXT 600

typedef struct sink {
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    int32_t  ids[MAXT];
    float    lps[MAXT];
    size_t   n;
    float    plp[MAXT];          /* prompt logprobs by position */
    int32_t  pid[MAXT];
    size_t   np;
    bool     done;
    int      rc;
    eng_stop_reason why;
    eng_request *r;              /* freed by sink_free once done */
} sink;

static char g_model[4096];

static void setup(void)
{
    const char *top = getenv("FP8D_TOP_SRCDIR");
    snprintf(g_model, sizeof(g_model), "%s/examples/models/shakespeare-tiny-bf16",
             top != NULL ? top : ".");
}

static void on_prompt(void *ud, size_t pos, const eng_token_info *t)
{
    sink *s = ud;
    s->plp[pos] = t->logprob;
    s->pid[pos] = t->id;
    s->np++;
}

static void on_token(void *ud, const eng_token_info *t)
{
    sink *s = ud;
    pthread_mutex_lock(&s->mu);
    if (s->n < MAXT) {
        s->ids[s->n] = t->id;
        s->lps[s->n] = t->logprob;
        s->n++;
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void on_done(void *ud, int rc, eng_stop_reason why)
{
    sink *s = ud;
    pthread_mutex_lock(&s->mu);
    s->done = true;
    s->rc = rc;
    s->why = why;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void sink_init(sink *s)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
}

/* Waits (at most 20 s) until done, or until n tokens when n > 0. */
static bool sink_wait(sink *s, size_t n)
{
    struct timespec ts;
    bool ok;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 20;
    pthread_mutex_lock(&s->mu);
    while (!(s->done || (n > 0 && s->n >= n)))
        if (pthread_cond_timedwait(&s->cv, &s->mu, &ts) != 0)
            break;
    ok = s->done || (n > 0 && s->n >= n);
    pthread_mutex_unlock(&s->mu);
    return ok;
}

static eng_engine *start(size_t max_running, size_t max_queued)
{
    eng_engine_params p;
    eng_engine *e;
    char err[512];

    eng_engine_params_default(&p);
    p.model_dir = g_model;
    p.model.n_threads = 1;
    if (max_running)
        p.max_running = max_running;
    if (max_queued)
        p.max_queued_requests = max_queued;
    ck_assert_msg(eng_engine_start(&e, &p, err, sizeof(err)) == 0, "%s", err);
    for (int i = 0; i < 2000 && eng_engine_get_state(e, NULL, 0) == ENG_ENGINE_LOADING; i++)
        usleep(5000);
    ck_assert_msg(eng_engine_get_state(e, err, sizeof(err)) == ENG_ENGINE_READY,
                  "engine not ready: %s (FP8D_TOP_SRCDIR set?)", err);
    return e;
}

static eng_request *submit(eng_engine *e, sink *s, const int32_t *ids, size_t n,
                           const eng_req_params *p)
{
    eng_request_cbs cbs = { on_prompt, on_token, on_done, s };
    eng_request *r = eng_request_new(ids, n, p, &cbs);

    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(eng_submit(e, r), 0);
    s->r = r;
    return r;
}

/* After on_done the request is ours again. */
static void sink_free(sink *s)
{
    ck_assert(s->done);
    eng_request_free(s->r);
    s->r = NULL;
}

/* Reference: one sequence alone through eng_forward, greedy argmax over
 * the tokenizer's ids; logits of every prompt row in *rows when asked. */
static size_t ref_greedy(const int32_t *prompt, size_t n, int max_tokens, int32_t *out,
                         float **rows)
{
    eng_model *m;
    eng_model_opts o;
    eng_tokenizer *tok;
    char err[512];
    size_t V, n_tok, k = 0;

    eng_model_opts_default(&o);
    o.n_threads = 1;
    ck_assert_msg(eng_model_load(&m, g_model, &o, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(eng_tokenizer_load(&tok, g_model, err, sizeof(err)), 0);
    V = (size_t)eng_model_get_config(m)->vocab_size;
    n_tok = eng_tokenizer_vocab_size(tok) < V ? eng_tokenizer_vocab_size(tok) : V;
    eng_seq *seq = eng_seq_new(m, n + (size_t)max_tokens);
    float *lg = malloc(n * V * sizeof(float));
    eng_batch_item it = { seq, prompt, n, true, lg };
    ck_assert_int_eq(eng_forward(m, &it, 1, err, sizeof(err)), 0);
    if (rows != NULL) {
        *rows = malloc(n * V * sizeof(float));
        memcpy(*rows, lg, n * V * sizeof(float));
    }
    float *row = lg + (n - 1) * V;
    for (;;) {
        int32_t best = 0;
        for (size_t v = 1; v < n_tok; v++)
            if (row[v] > row[best])
                best = (int32_t)v;
        out[k++] = best;
        if (eng_tokenizer_is_eos(tok, best) || k == (size_t)max_tokens)
            break;
        it = (eng_batch_item){ seq, &out[k - 1], 1, false, lg };
        ck_assert_int_eq(eng_forward(m, &it, 1, err, sizeof(err)), 0);
        row = lg;
    }
    free(lg);
    eng_seq_free(seq);
    eng_tokenizer_free(tok);
    eng_model_free(m);
    return k;
}

static const int32_t kPrompt[] = { 0, 1049, 1050, 263, 300, 17, 540 };

START_TEST(test_prompt_logprobs_equal_log_softmax)
{
    eng_engine *e = start(0, 0);
    eng_req_params p;
    sink s;
    float *rows;
    int32_t ref[8];
    size_t n = sizeof(kPrompt) / sizeof(kPrompt[0]), V = 4096;
    size_t k = ref_greedy(kPrompt, n, 4, ref, &rows);

    sink_init(&s);
    eng_req_params_default(&p);
    p.max_tokens = 4;
    p.prompt_logprobs = true;
    p.top_logprobs = 2;
    submit(e, &s, kPrompt, n, &p);
    ck_assert(sink_wait(&s, 0));
    ck_assert_int_eq(s.rc, 0);
    ck_assert_uint_eq(s.np, n - 1);
    for (size_t pos = 1; pos < n; pos++) {
        const float *r = rows + (pos - 1) * V;
        double mx = -INFINITY, sum = 0;
        for (size_t v = 0; v < V; v++)
            mx = r[v] > mx ? r[v] : mx;
        for (size_t v = 0; v < V; v++)
            sum += exp((double)r[v] - mx);
        double want = (double)r[kPrompt[pos]] - mx - log(sum);
        ck_assert_int_eq(s.pid[pos], kPrompt[pos]);
        ck_assert_msg(fabs(s.plp[pos] - want) < 1e-4, "pos %zu: %f vs %f", pos, s.plp[pos],
                      want);
    }
    ck_assert_uint_eq(s.n, k);
    for (size_t i = 0; i < k; i++)
        ck_assert_int_eq(s.ids[i], ref[i]);
    free(rows);
    sink_free(&s);
    eng_engine_free(e);
}
END_TEST

START_TEST(test_batched_requests_equal_one_at_a_time)
{
    enum { N = 6 };
    eng_engine *e = start(4, 0);    /* 6 requests through 4 slots: admission mid-flight */
    sink s[N];
    int32_t ref[64];
    eng_req_params p;

    for (int i = 0; i < N; i++) {
        sink_init(&s[i]);
        eng_req_params_default(&p);
        p.max_tokens = 8 + 5 * i;
        submit(e, &s[i], kPrompt + (i % 3), sizeof(kPrompt) / sizeof(kPrompt[0]) - (size_t)(i % 3),
               &p);
    }
    for (int i = 0; i < N; i++) {
        ck_assert(sink_wait(&s[i], 0));
        ck_assert_int_eq(s[i].rc, 0);
        size_t k = ref_greedy(kPrompt + (i % 3), sizeof(kPrompt) / sizeof(kPrompt[0]) -
                              (size_t)(i % 3), 8 + 5 * i, ref, NULL);
        ck_assert_uint_eq(s[i].n, k);
        for (size_t t = 0; t < k; t++)
            ck_assert_msg(s[i].ids[t] == ref[t], "request %d token %zu: %d vs %d", i, t,
                          s[i].ids[t], ref[t]);
    }
    eng_engine_stats st;
    eng_engine_get_stats(e, &st);
    ck_assert_uint_eq(st.kv_used, 0);
    ck_assert_uint_eq(st.running, 0);
    for (int i = 0; i < N; i++)
        sink_free(&s[i]);
    eng_engine_free(e);
}
END_TEST

START_TEST(test_full_queue_returns_eagain_and_cancel_ends_early)
{
    eng_engine *e = start(1, 2);
    sink a, b, c;
    eng_req_params p;
    eng_engine_stats st;
    eng_request *ra, *rd;
    eng_request_cbs cbs = { NULL, on_token, on_done, NULL };

    sink_init(&a);
    sink_init(&b);
    sink_init(&c);
    eng_req_params_default(&p);
    p.max_tokens = 500;
    p.ignore_eos = true;
    ra = submit(e, &a, kPrompt, 3, &p);
    ck_assert(sink_wait(&a, 1));             /* a runs: the one slot is taken */
    submit(e, &b, kPrompt, 3, &p);
    submit(e, &c, kPrompt, 3, &p);
    rd = eng_request_new(kPrompt, 3, &p, &cbs);
    ck_assert_int_eq(eng_submit(e, rd), -EAGAIN);
    eng_request_free(rd);
    eng_engine_get_stats(e, &st);
    ck_assert_uint_eq(st.queued, 2);
    ck_assert_uint_eq(st.rejected_full, 1);
    eng_request_cancel(ra);
    ck_assert(sink_wait(&a, 0));
    ck_assert_int_eq(a.rc, -ECANCELED);
    ck_assert_uint_lt(a.n, 500);
    eng_engine_stop(e);                       /* b and c: cancelled by the stop */
    ck_assert(b.done && c.done);
    ck_assert_int_eq(b.rc, -ECANCELED);
    ck_assert_int_eq(c.rc, -ECANCELED);
    sink_free(&a);
    sink_free(&b);
    sink_free(&c);
    eng_engine_free(e);
}
END_TEST

START_TEST(test_deadline_ends_with_etimedout)
{
    eng_engine *e = start(0, 0);
    sink a;
    eng_req_params p;
    struct timespec t;

    sink_init(&a);
    eng_req_params_default(&p);
    p.max_tokens = 500;
    p.ignore_eos = true;
    clock_gettime(CLOCK_MONOTONIC, &t);
    p.deadline_ms = (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u + 20;
    submit(e, &a, kPrompt, 3, &p);
    ck_assert(sink_wait(&a, 0));
    /* 500 tokens take longer than 20 ms on one thread; if not, say so. */
    if (a.rc == 0) {
        fprintf(stderr, "SKIP: 500 tokens finished within 20 ms\n");
    } else {
        ck_assert_int_eq(a.rc, -ETIMEDOUT);
        ck_assert_uint_lt(a.n, 500);
    }
    sink_free(&a);
    eng_engine_free(e);
}
END_TEST

START_TEST(test_submit_refused_after_stop_and_context)
{
    eng_engine *e = start(0, 0);
    eng_req_params p;
    sink s;
    int32_t *big = calloc(600, sizeof(int32_t));
    eng_request_cbs cbs = { NULL, on_token, on_done, &s };
    eng_request *r;

    sink_init(&s);
    eng_req_params_default(&p);
    r = eng_request_new(big, 600, &p, &cbs);       /* context is 512 */
    ck_assert_int_eq(eng_submit(e, r), ENG_E_CONTEXT);
    eng_engine_stop(e);
    ck_assert_int_eq(eng_submit(e, r), -ESHUTDOWN);
    ck_assert(!s.done);                               /* refused: no callback */
    eng_request_free(r);
    free(big);
    eng_engine_free(e);
}
END_TEST

/* An FP8 checkpoint (compressed-tensors) served with no FP8 config runs
 * in QUANTIZE, and the engine says so (X-FP8-Mode and the fingerprint
 * come from this): the model directory is llama_tiny_fp8_ct with the
 * stories260k tokenizer linked beside it. */
START_TEST(test_fp8_checkpoint_reports_quantize)
{
    const char *top = getenv("FP8D_TOP_SRCDIR");
    char dir[] = "/tmp/check_sched.XXXXXX", src[4096], dst[4200];
    static const char *const files[][2] = {
        { "tests/data/fp8models/llama_tiny_fp8_ct", "config.json" },
        { "tests/data/fp8models/llama_tiny_fp8_ct", "model.safetensors" },
        { "tests/data/models/stories260k", "tokenizer.json" },
        { "tests/data/models/stories260k", "tokenizer_config.json" },
    };
    eng_calib_status st;
    eng_engine *e;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(src, sizeof(src), "%s/%s/%s", top != NULL ? top : ".", files[i][0],
                 files[i][1]);
        snprintf(dst, sizeof(dst), "%s/%s", dir, files[i][1]);
        ck_assert_msg(symlink(src, dst) == 0, "symlink %s", dst);
    }
    snprintf(g_model, sizeof(g_model), "%s", dir);
    e = start(0, 0);
    eng_engine_calib_status(e, &st);
    ck_assert_int_eq(st.mode, QT_MODE_QUANTIZE);
    ck_assert_uint_eq(st.epoch, 1);
    eng_engine_stop(e);
    eng_engine_free(e);
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(dst, sizeof(dst), "%s/%s", dir, files[i][1]);
        unlink(dst);
    }
    rmdir(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sched");
    TCase *tc = tcase_create("queue");
    SRunner *sr;
    int failed;

    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_prompt_logprobs_equal_log_softmax);
    tcase_add_test(tc, test_batched_requests_equal_one_at_a_time);
    tcase_add_test(tc, test_full_queue_returns_eagain_and_cancel_ends_early);
    tcase_add_test(tc, test_deadline_ends_with_etimedout);
    tcase_add_test(tc, test_submit_refused_after_stop_and_context);
    tcase_add_test(tc, test_fp8_checkpoint_reports_quantize);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
