/* quality_report.c: 'make quality': the FP8 engine's quality on
 * shakespeare-small against F32 (issue 5's table).
 *
 * Data (../shared/testdata, SKIP without it): the perplexity windows of
 * reference/shakespeare-small.safetensors (eval_window_ids: BOS + 255
 * tokens of eval.txt, 244 windows; the first --windows N are used,
 * default 40) and the calibration ids of reference/
 * shakespeare-tokenizer.safetensors (calib.txt encoded; cut into windows
 * of BOS + 255, the first 16 used).  Every configuration is its own model
 * in one process; per window, each one's logits are compared with F32's:
 * perplexity over the scored tokens, mean KL(P_f32 || Q) per position and
 * top-1 agreement.  lm_head stays high precision everywhere (as in the
 * testdata FP8 checkpoints and our converter).  Not a test: it prints. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/engine.h"

#define SPAN 256
#define N_CALIB 16

typedef struct qcase {
    const char  *name;
    const char  *dir;          /* "f32" / "bf16" model directory */
    bool         fp8;
    const char  *config;       /* FP8Config JSON (lm_head always blocklisted) */
    const char  *recipe;       /* DelayedScaling JSON or NULL */
    eng_fp8_act  act;
    eng_fp8_wscale wscale;
    bool         kv, qk;
} qcase;

#define CFG(x) "{\"mode\": \"MEASURE\", \"dump_stats_path\": \"/tmp/fp8d_quality/m\", " \
               "\"blocklist\": {\"names\": [\"lm_head\"], \"types\": []}" x "}"

static const qcase k_cases[] = {
    {"F32 (reference)", "f32", false, NULL, NULL, 0, 0, false, false},
    {"BF16 weights", "bf16", false, NULL, NULL, 0, 0, false, false},
    {"E4M3 weight-only, per-channel", "f32", true, CFG(""), NULL, ENG_FP8_ACT_NONE,
     ENG_FP8_W_MINMAX_CHANNEL, false, false},
    {"E4M3 W8A8 per-tensor (minmax)", "f32", true, CFG(""), NULL, ENG_FP8_ACT_STATIC,
     ENG_FP8_W_MINMAX_TENSOR, false, false},
    {"E4M3 W8A8 per-channel (minmax)", "f32", true, CFG(""), NULL, ENG_FP8_ACT_STATIC,
     ENG_FP8_W_MINMAX_CHANNEL, false, false},
    {"E4M3 W8A8 per-channel, dynamic act", "f32", true, CFG(""), NULL, ENG_FP8_ACT_DYNAMIC,
     ENG_FP8_W_MINMAX_CHANNEL, false, false},
    {"E5M2 W8A8 per-channel (minmax)", "f32", true, CFG(", \"fp8_config\": \"E5M2\""), NULL,
     ENG_FP8_ACT_STATIC, ENG_FP8_W_MINMAX_CHANNEL, false, false},
    {"HYBRID recipe (delayed, pow2_down)", "f32", true, CFG(""),
     "{\"fp8_format\": \"HYBRID\", \"amax_history_len\": 16}", ENG_FP8_ACT_STATIC,
     ENG_FP8_W_CONFIG, false, false},
    {"INC maxabs_hw", "f32", true, CFG(", \"scale_method\": \"maxabs_hw\""), NULL,
     ENG_FP8_ACT_STATIC, ENG_FP8_W_CONFIG, false, false},
    {"INC maxabs_pow2", "f32", true, CFG(", \"scale_method\": \"maxabs_pow2\""), NULL,
     ENG_FP8_ACT_STATIC, ENG_FP8_W_CONFIG, false, false},
    {"INC maxabs_arbitrary", "f32", true, CFG(", \"scale_method\": \"maxabs_arbitrary\""), NULL,
     ENG_FP8_ACT_STATIC, ENG_FP8_W_CONFIG, false, false},
    {"INC act_maxabs_pow2_weights_pcs_maxabs_pow2", "f32", true,
     CFG(", \"scale_method\": \"act_maxabs_pow2_weights_pcs_maxabs_pow2\""), NULL,
     ENG_FP8_ACT_STATIC, ENG_FP8_W_CONFIG, false, false},
    {"INC unit_scale", "f32", true, CFG(", \"scale_method\": \"unit_scale\""), NULL,
     ENG_FP8_ACT_STATIC, ENG_FP8_W_CONFIG, false, false},
    {"E4M3 W8A8 per-channel + FP8 KV cache", "f32", true, CFG(""), NULL, ENG_FP8_ACT_STATIC,
     ENG_FP8_W_MINMAX_CHANNEL, true, false},
    {"E4M3 W8A8 per-channel + FP8 KV + FP8 q.k^T", "f32", true, CFG(""), NULL,
     ENG_FP8_ACT_STATIC, ENG_FP8_W_MINMAX_CHANNEL, true, true},
};
#define N_CASES (sizeof(k_cases) / sizeof(*k_cases))

typedef struct stats {
    double nll, kl;
    long   agree, n;
} stats;

static void log_softmax(const float *x, double *out, int V)
{
    double mx = x[0], s = 0;
    for (int v = 1; v < V; v++)
        mx = x[v] > mx ? x[v] : mx;
    for (int v = 0; v < V; v++)
        s += exp((double)x[v] - mx);
    double ls = mx + log(s);
    for (int v = 0; v < V; v++)
        out[v] = (double)x[v] - ls;
}

static int argmax(const float *x, int V)
{
    int b = 0;
    for (int v = 1; v < V; v++)
        if (x[v] > x[b])
            b = v;
    return b;
}

int main(int argc, char **argv)
{
    const char *shared = getenv("FP8D_SHARED_TESTDATA");
    char p[1024], err[1024] = "";
    eng_st_file *ref = NULL, *tokref = NULL;
    eng_model *models[N_CASES] = {0};
    stats st[N_CASES];
    long n_windows = 40;
    int rc = 1;

    if (argc == 3 && strcmp(argv[1], "--windows") == 0)
        n_windows = strtol(argv[2], NULL, 10);
    if (shared == NULL)
        shared = "../shared/testdata";
    snprintf(p, sizeof(p), "%s/models/reference/shakespeare-small.safetensors", shared);
    struct stat sb;
    if (stat(p, &sb) != 0) {
        printf("SKIP: quality report: %s not found\n", p);
        return 0;
    }
    kn_init(NULL);
    kn_log_set_level(KN_LOG_WARN);
    if (eng_st_open(&ref, p, err, sizeof(err)) < 0)
        goto fail;
    snprintf(p, sizeof(p), "%s/models/reference/shakespeare-tokenizer.safetensors", shared);
    if (eng_st_open(&tokref, p, err, sizeof(err)) < 0)
        goto fail;
    const eng_tensor *win = eng_st_find(ref, "eval_window_ids");
    const eng_tensor *cal = eng_st_find(tokref, "calib_ids");
    if (win == NULL || cal == NULL || win->n_dims != 2 || win->shape[1] != SPAN) {
        snprintf(err, sizeof(err), "reference tensors eval_window_ids / calib_ids missing");
        goto fail;
    }
    if (n_windows <= 0 || n_windows > win->shape[0])
        n_windows = win->shape[0];
    const int32_t *wids = win->data;
    int32_t bos = wids[0];

    /* calibration windows: BOS + 255 consecutive calib ids */
    int32_t calib[N_CALIB][SPAN];
    const int32_t *cseq[N_CALIB];
    size_t clen[N_CALIB];
    for (int i = 0; i < N_CALIB; i++) {
        calib[i][0] = bos;
        memcpy(&calib[i][1], (const int32_t *)cal->data + (size_t)i * (SPAN - 1),
               (SPAN - 1) * sizeof(int32_t));
        cseq[i] = calib[i];
        clen[i] = SPAN;
    }
    for (size_t c = 0; c < N_CASES; c++) {
        const qcase *q = &k_cases[c];
        eng_model_opts mo;
        qt_config *cfg = NULL;
        qt_recipe r;
        eng_fp8_opts fo;
        eng_model_opts_default(&mo);
        mo.n_threads = 2;
        snprintf(p, sizeof(p), "%s/models/shakespeare-small%s", shared,
                 strcmp(q->dir, "bf16") == 0 ? "-bf16" : "");
        if (eng_model_load(&models[c], p, &mo, err, sizeof(err)) < 0)
            goto fail;
        if (!q->fp8)
            continue;
        eng_fp8_opts_default(&fo);
        fo.act = q->act;
        fo.wscale = q->wscale;
        fo.kv_fp8 = q->kv;
        fo.qk_fp8 = q->qk;
        if (qt_config_parse(&cfg, q->config, q->name, err, sizeof(err)) < 0 ||
            (q->recipe != NULL && qt_recipe_parse(&r, q->recipe, err, sizeof(err)) < 0) ||
            eng_fp8_prepare(models[c], cfg, q->recipe ? &r : NULL, &fo, err, sizeof(err)) < 0 ||
            eng_fp8_calibrate(models[c], cseq, clen, N_CALIB, err, sizeof(err)) < 0 ||
            eng_fp8_set_mode(models[c], QT_MODE_QUANTIZE, err, sizeof(err)) < 0) {
            qt_config_free(cfg);
            fprintf(stderr, "case %s: ", q->name);
            goto fail;
        }
        qt_config_free(cfg);
    }

    int V = eng_model_get_config(models[0])->vocab_size;
    float *lg = malloc((size_t)N_CASES * SPAN * V * sizeof(float));
    double *lp = malloc((size_t)V * sizeof(double)), *lq = malloc((size_t)V * sizeof(double));
    memset(st, 0, sizeof(st));
    for (long w = 0; w < n_windows; w++) {
        const int32_t *ids = wids + (size_t)w * SPAN;
        for (size_t c = 0; c < N_CASES; c++) {
            eng_seq *s = eng_seq_new(models[c], SPAN);
            eng_batch_item it = {s, ids, SPAN, true, lg + c * SPAN * (size_t)V};
            if (s == NULL || eng_forward(models[c], &it, 1, err, sizeof(err)) < 0)
                goto fail;
            eng_seq_free(s);
        }
        for (int t = 0; t + 1 < SPAN; t++) {
            const float *f = lg + (size_t)t * V;
            int top = argmax(f, V);
            log_softmax(f, lp, V);
            for (size_t c = 0; c < N_CASES; c++) {
                const float *g = lg + (c * SPAN + (size_t)t) * V;
                double kl = 0;
                log_softmax(g, lq, V);
                for (int v = 0; v < V; v++)
                    kl += exp(lp[v]) * (lp[v] - lq[v]);
                st[c].nll -= lq[ids[t + 1]];
                st[c].kl += kl;
                st[c].agree += argmax(g, V) == top;
                st[c].n++;
            }
        }
    }
    double ppl0 = exp(st[0].nll / st[0].n), ppl_bf16 = exp(st[1].nll / st[1].n);
    printf("FP8 quality on shakespeare-small: %ld of 244 eval windows (BOS + 255 tokens, %ld "
           "scored tokens); calibration: %d windows of calib.txt; lm_head high precision\n",
           n_windows, st[0].n, N_CALIB);
    printf("%-44s %10s %9s %9s %12s %8s\n", "configuration", "perplexity", "vs F32", "vs BF16",
           "mean KL", "top-1");
    for (size_t c = 0; c < N_CASES; c++) {
        double ppl = exp(st[c].nll / st[c].n);
        printf("%-44s %10.4f %+8.3f%% %+8.3f%% %12.3e %7.2f%%\n", k_cases[c].name, ppl,
               100 * (ppl / ppl0 - 1), 100 * (ppl / ppl_bf16 - 1), st[c].kl / st[c].n,
               100.0 * st[c].agree / st[c].n);
    }
    free(lg);
    free(lp);
    free(lq);
    rc = 0;
fail:
    if (rc != 0)
        fprintf(stderr, "quality report: %s\n", err);
    for (size_t c = 0; c < N_CASES; c++)
        eng_model_free(models[c]);
    eng_st_close(ref);
    eng_st_close(tokref);
    return rc;
}
