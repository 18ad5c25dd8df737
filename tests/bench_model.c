/* bench_model.c: end-to-end tokens/s of the engine at real model shapes
 * against this machine's memory-bandwidth ceiling ('make bench',
 * 'make bench-model'; issue 7).  The parts live in tests/bench/ (bm.h).
 *
 * 1. Writes random-weight Hugging Face directories (config.json,
 *    model.safetensors: normal, std 0.02, never zero, norms 1; and a
 *    byte-level BPE tokenizer.json naming every id of the real tokenizer,
 *    which the scheduler needs) at the shapes of Qwen2.5-0.5B and
 *    Llama-3.2-1B, in BF16 and (for mode f32) F32, under a temporary folder
 *    removed at exit.
 * 2. Prints the context of the figures: the CPU, and per thread count the
 *    read bandwidth ('read4': 4 concurrent streams, the bound of a GEMV,
 *    perf-anchors.md 1; and 1 stream) measured with no model resident
 *    and the decode ceilings they give, and the vdpbf16ps compute peak
 *    (the best of that measurement and of every round below).
 * 3. For each shape, in forked children (so that each memory figure is
 *    that process's alone):
 *      fp8 modes, by default, first a converter child each, one after the
 *      other: the BF16 model,
 *      MEASURE over 2 random sequences of 32 tokens, QUANTIZE (E4M3,
 *      per-channel minmax weight scales) of every Linear but lm_head (the
 *      tied embedding stays BF16, as 'fp8ctl convert' leaves it:
 *      model-formats.md 3.8), eng_fp8_export into an FP8 directory; the
 *      measured children then load that directory fresh, as a deployment
 *      would, with the mode's activations set (fp8: weight-only, f32
 *      activations; fp8-w8a8: E4M3 activations with per-token dynamic
 *      scales, or static calibrated ones with FP8D_BENCH_W8A8=static).
 *      FP8D_BENCH_FP8=live converts in the measured children instead,
 *      lm_head included (MEASURE runs with logits so that it is measured).
 *    Then two phases, each with one worker child per mode (bm_worker.c),
 *    the modes' models resident side by side, and one read4 worker.  Per
 *    thread count, REPS rounds: read4, then one repetition of every mode
 *    in turn.  Every mode's r-th figure is thus taken within the same
 *    seconds: the host is shared and its bandwidth drifts by 20% over
 *    minutes, which mode-after-mode runs turned into differences between
 *    modes (the /bf16 ratios).  The ceilings use the medians of the
 *    read4 rounds.
 *    The direct workers load the model (eng_model_load, n_threads 0: the
 *    OpenMP default, set per thread count by omp_set_num_threads) and
 *    measure, per thread count:
 *      decode      batch 1: 16-token prompt, then STEPS one-token
 *                  eng_forward calls with the logits of each;
 *      prefill128/prefill512  one forward of the prompt, logits of its
 *                  last token only; also as GFLOP/s (bm_prefill_flops)
 *                  and a fraction of the vdpbf16ps peak.
 *    The scheduler workers run decode-b8 through engine/queue.c: per thread
 *    count an eng_engine on the directory (model.n_threads = the count,
 *    the FP8 options through eng_engine_params.fp8_opts; live: MEASURE
 *    through two served requests, then a calibration command), 8 requests
 *    of 16 random prompt tokens, max_tokens STEPS + 1, greedy, EOS
 *    ignored, admitted in one step; the figure is the 8 * STEPS tokens
 *    after the first ones over their time (bm_sched.c).
 *    Each worker warms up once per thread count (scratch for 512 rows,
 *    pages touched, OpenMP team up) before its first repetition.
 * Decode ceiling = read4 / bytes of weights one decode step reads
 * (bm_decode_bytes: every Linear plus the tied embedding once as lm_head,
 * at the mode's bytes per weight, lm_head BF16 in an fp8 export); each
 * decode figure's ceiling_ratio is against its own mode's ceiling
 * (decode-b8: 8 tokens per pass over the weights, so ceiling x8).
 * Memory per mode: resident when ready (VmRSS after load or conversion,
 * before any forward), peak (VmHWM of the direct worker at its end: load,
 * conversion and every phase's buffers), the scheduler worker's peak, and
 * the converter's peak.  The machine needs the sum of the modes' memory
 * at once (Llama-1B: ~10 GB f32, 2.4 GB bf16, 1.5 GB per fp8 mode, plus
 * the 1 GiB bandwidth buffer).
 *
 * Output: per shape the context lines, a decode table, a prefill table and
 * a memory table, then one line per figure
 *   BENCH shape=<s> mode=<m> threads=<n> phase=<p> tokens_per_s=<x> [ceiling_ratio=<y>]
 * (ceiling_ratio for the decode phases only), and the inputs of the
 * tables as BENCH-HW (bandwidth and peak per thread count), BENCH-BW
 * (interleaved read4 per mode and thread count), BENCH-PREFILL (GFLOP/s)
 * and BENCH-RSS lines.  Figures are medians of REPS repetitions after a
 * warm-up; nothing is asserted (timings are not tests).
 *
 * Environment knobs:
 *   FP8D_BENCH_SHAPES   qwen2.5-0.5b,llama-3.2-1b (default both)
 *   FP8D_BENCH_MODES    f32,bf16,fp8,fp8-w8a8 (default all)
 *   FP8D_BENCH_THREADS  1,2 (default)
 *   FP8D_BENCH_REPS     repetitions per figure (default 3)
 *   FP8D_BENCH_STEPS    decode steps per repetition (default 32)
 *   FP8D_BENCH_SKIP_F32=1  no f32 mode (the F32 Llama-1B is ~5 GB on disk
 *                       and ~10 GB resident: file map + packed copy)
 *   FP8D_BENCH_W8A8     dynamic (default) or static
 *   FP8D_BENCH_BF16_ACT=1  mode fp8 (weight-only) rounds its activations to
 *                       bf16 (eng_fp8_opts.bf16_act: the vdpbf16ps kernels;
 *                       default: the exact f32 product)
 *   FP8D_BENCH_FP8      export (default: convert once to an FP8 directory,
 *                       measure it loaded fresh) or live (convert in the
 *                       measured process: its peak holds the BF16 model,
 *                       which the conversion then drops from memory)
 *   FP8D_BENCH_DIR      parent of the temporary folder (default $TMPDIR, /tmp)
 *   FP8D_BENCH_KEEP=<dir>  write the models (and FP8 exports) into <dir>,
 *                       reused when present, never deleted
 *   FP8D_BENCH_MB       bandwidth buffer, MiB (default 1024)
 *   FP8D_BENCH_SMOKE=1  a quick end-to-end run: qwen2.5-0.5b, 1 thread, 1
 *                       repetition of 4 steps, 256 MiB (the knobs above
 *                       still win); its figures mean nothing
 *   FP8D_BENCH_INPROC=1 run every child's work in this process (for a
 *                       debugger; memory figures are then not the mode's)
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/bench/bm.h"

#define MAX_THREADS 8
#define MAX_REPS 64

/* ---- options ---------------------------------------------------------- */

static struct {
    int shapes[8], modes[BM_N_MODES];
    int threads[MAX_THREADS], n_threads;
    int reps, steps, w8a8_static, live, bf16_act;
    size_t bw_mb;
    const char *keep;
} g_opt;

static int list_has(const char *list, const char *item)
{
    size_t n = strlen(item);
    for (const char *p = list; (p = strstr(p, item)) != NULL; p += n)
        if ((p == list || p[-1] == ',') && (p[n] == '\0' || p[n] == ','))
            return 1;
    return 0;
}

static int env_int(const char *name, int def)
{
    const char *v = getenv(name);
    return v != NULL && atoi(v) > 0 ? atoi(v) : def;
}

static void parse_opts(void)
{
    int smoke = env_int("FP8D_BENCH_SMOKE", 0);
    const char *s = getenv("FP8D_BENCH_SHAPES"), *m = getenv("FP8D_BENCH_MODES");
    const char *t = getenv("FP8D_BENCH_THREADS"), *w = getenv("FP8D_BENCH_W8A8");
    const char *skip = getenv("FP8D_BENCH_SKIP_F32"), *f = getenv("FP8D_BENCH_FP8");

    if (smoke && s == NULL)
        s = "qwen2.5-0.5b";
    if (smoke && t == NULL)
        t = "1";
    for (size_t i = 0; i < bm_n_shapes; i++)
        g_opt.shapes[i] = s == NULL || list_has(s, bm_shapes[i].name);
    for (int i = 0; i < BM_N_MODES; i++)
        g_opt.modes[i] = m == NULL || list_has(m, bm_mode_name[i]);
    if (skip != NULL && atoi(skip) != 0)
        g_opt.modes[BM_F32] = 0;
    g_opt.n_threads = 0;
    for (const char *p = t != NULL ? t : "1,2"; *p != '\0' && g_opt.n_threads < MAX_THREADS;) {
        int n = atoi(p);
        if (n > 0)
            g_opt.threads[g_opt.n_threads++] = n;
        p += strcspn(p, ",");
        p += *p == ',';
    }
    if (g_opt.n_threads == 0)
        g_opt.threads[g_opt.n_threads++] = 1;
    g_opt.reps = env_int("FP8D_BENCH_REPS", smoke ? 1 : 3);
    g_opt.reps = g_opt.reps < MAX_REPS ? g_opt.reps : MAX_REPS;
    g_opt.steps = env_int("FP8D_BENCH_STEPS", smoke ? 4 : 32);
    g_opt.bw_mb = (size_t)env_int("FP8D_BENCH_MB", smoke ? 256 : 1024);
    g_opt.w8a8_static = w != NULL && strcmp(w, "static") == 0;
    g_opt.bf16_act = getenv("FP8D_BENCH_BF16_ACT") != NULL &&
                     strcmp(getenv("FP8D_BENCH_BF16_ACT"), "1") == 0;
    g_opt.live = f != NULL && strcmp(f, "live") == 0;
    g_opt.keep = getenv("FP8D_BENCH_KEEP");
}

static int is_fp8(int mode)
{
    return mode == BM_FP8 || mode == BM_W8A8;
}

/* The FP8 options of a mode: per-channel minmax weight scales, and its
 * activations. */
static eng_fp8_opts fp8_opts_of(int mode)
{
    eng_fp8_opts o;
    eng_fp8_opts_default(&o);
    o.wscale = ENG_FP8_W_MINMAX_CHANNEL;
    o.act = mode == BM_FP8 ? ENG_FP8_ACT_NONE
          : g_opt.w8a8_static ? ENG_FP8_ACT_STATIC : ENG_FP8_ACT_DYNAMIC;
    o.bf16_act = mode == BM_FP8 && g_opt.bf16_act;
    return o;
}

/* The FP8Config of a conversion: MEASURE from the start (the measurement
 * file is never written).  An export keeps lm_head, the tied embedding,
 * in BF16, as 'fp8ctl convert' does (model-formats.md 3.8: never quantize
 * a tied head; our loader reads no FP8 head of a tied model); live
 * conversion quantizes it too. */
static void measure_json(char *buf, size_t len, const char *tmp)
{
    snprintf(buf, len, "{\"mode\": \"MEASURE\", \"dump_stats_path\": \"%s/measure\"%s}", tmp,
             g_opt.live ? "" : ", \"blocklist\": {\"names\": [\"lm_head\"], \"types\": []}");
}

/* Bytes of weights a decode step reads in mode (lm_head in FP8 when
 * converted live). */
static double mode_bytes(const bm_shape *sh, int mode)
{
    return bm_decode_bytes(sh, mode, g_opt.live);
}

/* ---- one configuration (in the children) -------------------------------- */

/* The context of a configuration, shared by its children. */
typedef struct config_ctx {
    const bm_shape *sh;
    int mode;
    const char *src;           /* the high-precision model (BF16 or F32) */
    const char *dir;           /* what the measured children load */
    const char *tmp;
} config_ctx;

/* Converts the loaded high-precision model in place: MEASURE over two
 * random prompts, QUANTIZE. */
static int fp8_convert(eng_model *m, const bm_shape *sh, int mode, const char *tmp, char *err,
                       size_t errlen)
{
    char json[4400];
    qt_config *c = NULL;
    eng_fp8_opts o = fp8_opts_of(mode);
    int32_t cal[2][32];
    int rc;

    measure_json(json, sizeof(json), tmp);
    if ((rc = qt_config_parse(&c, json, "bench config", err, errlen)) < 0)
        return rc;
    bm_random_ids(cal[0], 32, sh->tok_bpe, 777);
    bm_random_ids(cal[1], 32, sh->tok_bpe, 778);
    rc = eng_fp8_prepare(m, c, NULL, &o, err, errlen);
    qt_config_free(c);
    if (rc == 0 && eng_fp8_mode(m) != QT_MODE_MEASURE)
        rc = eng_fp8_set_mode(m, QT_MODE_MEASURE, err, errlen);
    /* Not eng_fp8_calibrate: it computes no logits, so lm_head would
     * never be measured and would stay in BF16 under QUANTIZE. */
    float *lg = rc == 0 ? malloc((size_t)sh->vocab * sizeof(float)) : NULL;
    if (rc == 0 && lg == NULL)
        rc = -ENOMEM;
    for (int i = 0; rc == 0 && i < 2; i++) {
        eng_seq *s = eng_seq_new(m, 32);
        eng_batch_item it = {s, cal[i], 32, false, lg};
        rc = s != NULL ? eng_forward(m, &it, 1, err, errlen) : -ENOMEM;
        eng_seq_free(s);
    }
    free(lg);
    if (rc == 0)
        rc = eng_fp8_set_mode(m, QT_MODE_QUANTIZE, err, errlen);
    return rc;
}

typedef struct convert_result {
    int ok;
    double seconds;
    long peak_kb;
    char err[256];
} convert_result;

/* The converter child: the high-precision model to an FP8 directory. */
static void convert_child(const void *ctx, void *out)
{
    const config_ctx *c = ctx;
    convert_result *res = out;
    eng_model_opts o;
    eng_model *m = NULL;
    double t0 = bm_now();
    long rss;

    eng_model_opts_default(&o);
    if (eng_model_load(&m, c->src, &o, res->err, sizeof(res->err)) == 0 &&
        fp8_convert(m, c->sh, c->mode, c->tmp, res->err, sizeof(res->err)) == 0 &&
        eng_fp8_export(m, c->src, c->dir, false, res->err, sizeof(res->err)) == 0) {
        res->seconds = bm_now() - t0;
        if (bm_mem_kb(&rss, &res->peak_kb) < 0)
            snprintf(res->err, sizeof(res->err), "cannot read /proc/self/status");
        else
            res->ok = 1;
    }
    eng_model_free(m);
}

/* ---- the workers: one per mode and phase, and one for read4 --------------- */

/* What the parent keeps of a mode's direct worker: the medians of its
 * repetitions and its summary. */
typedef struct direct_result {
    int ok;
    double tps[MAX_THREADS][BM_N_PHASES];   /* decode, prefill128, prefill512 */
    double rd4[MAX_THREADS];                 /* read4 GB/s in the same rounds */
    long ready_kb, peak_kb;
    double load_s, quant_s;
    char err[256];
} direct_result;

static double time_prefill(eng_model *m, eng_seq *s, const int32_t *ids, size_t n, float *lg,
                           char *err, size_t errlen)
{
    eng_batch_item it = {s, ids, n, false, lg};
    eng_seq_truncate(s, 0);
    double t0 = bm_now();
    if (eng_forward(m, &it, 1, err, errlen) < 0)
        return -1;
    return (double)n / (bm_now() - t0);
}

/* A BM_DEC_PROMPT-token prompt (untimed), then steps of one token each
 * with its logits. */
static double time_decode(eng_model *m, eng_seq *s, const int32_t *ids, float *lg, char *err,
                          size_t errlen)
{
    eng_batch_item it = {s, ids, BM_DEC_PROMPT, false, lg};
    eng_seq_truncate(s, 0);
    if (eng_forward(m, &it, 1, err, errlen) < 0)
        return -1;
    double t0 = bm_now();
    for (int k = 0; k < g_opt.steps; k++) {
        it = (eng_batch_item){s, ids + BM_DEC_PROMPT + k, 1, false, lg};
        if (eng_forward(m, &it, 1, err, errlen) < 0)
            return -1;
    }
    return (double)g_opt.steps / (bm_now() - t0);
}

/* Loads what the measured children run: the directory, converted in
 * place (live) or with the mode's activations set (an FP8 export). */
static int load_for_mode(const config_ctx *c, eng_model **m, double *load_s, double *quant_s,
                         char *err, size_t errlen)
{
    eng_model_opts o;
    eng_fp8_opts fo = fp8_opts_of(c->mode);
    double t0 = bm_now();
    int rc;

    eng_model_opts_default(&o);
    o.n_threads = 0;   /* the OpenMP default: omp_set_num_threads picks per figure */
    if ((rc = eng_model_load(m, c->dir, &o, err, errlen)) < 0)
        return rc;
    *load_s = bm_now() - t0;
    t0 = bm_now();
    if (is_fp8(c->mode) && g_opt.live)
        rc = fp8_convert(*m, c->sh, c->mode, c->tmp, err, errlen);
    else if (is_fp8(c->mode) && (rc = eng_fp8_set_opts(*m, &fo, err, errlen)) == 0 &&
             eng_fp8_mode(*m) != QT_MODE_QUANTIZE) {
        snprintf(err, errlen, "%s did not load in QUANTIZE", c->dir);
        rc = -EINVAL;
    }
    *quant_s = bm_now() - t0;
    return rc;
}

/* The direct worker: the model loaded once; per repetition decode,
 * prefill128 and prefill512 by eng_forward. */
typedef struct direct_state {
    config_ctx c;
    eng_model *m;
    eng_seq *s, *sp;
    int32_t *ids;              /* the decode run's, then the prefill's 512 */
    size_t n_dec;
    float *lg;
    int ti;                    /* the thread count warmed up (index), -1: none */
    long ready_kb;
    double load_s, quant_s;
} direct_state;

typedef struct direct_fin {
    long ready_kb, peak_kb;
    double load_s, quant_s;
} direct_fin;

static void direct_close(void *state, void *out)
{
    direct_state *st = state;
    direct_fin *f = out;
    long rss;

    if (f != NULL && bm_mem_kb(&rss, &f->peak_kb) == 0) {
        f->ready_kb = st->ready_kb;
        f->load_s = st->load_s;
        f->quant_s = st->quant_s;
    }
    eng_seq_free(st->s);
    eng_seq_free(st->sp);
    free(st->ids);
    free(st->lg);
    eng_model_free(st->m);
    free(st);
}

static int direct_open(const void *ctx, void **state, char *err, size_t el)
{
    direct_state *st = calloc(1, sizeof(*st));
    long hwm;
    int rc;

    if (st == NULL) {
        snprintf(err, el, "out of memory");
        return -ENOMEM;
    }
    st->c = *(const config_ctx *)ctx;
    st->ti = -1;
    st->n_dec = BM_DEC_PROMPT + (size_t)g_opt.steps;
    if ((rc = load_for_mode(&st->c, &st->m, &st->load_s, &st->quant_s, err, el)) < 0)
        goto fail;
    if (bm_mem_kb(&st->ready_kb, &hwm) < 0) {
        snprintf(err, el, "cannot read /proc/self/status");
        rc = -EIO;
        goto fail;
    }
    st->ids = malloc((st->n_dec + 512) * sizeof(int32_t));
    st->lg = malloc((size_t)st->c.sh->vocab * sizeof(float));
    st->sp = eng_seq_new(st->m, 512 + 8);
    st->s = eng_seq_new(st->m, st->n_dec + 8);
    if (st->ids == NULL || st->lg == NULL || st->sp == NULL || st->s == NULL) {
        snprintf(err, el, "out of memory");
        rc = -ENOMEM;
        goto fail;
    }
    bm_random_ids(st->ids, st->n_dec + 512, st->c.sh->tok_bpe, 4242);
    *state = st;
    return 0;
fail:
    direct_close(st, NULL);
    return rc;
}

/* out: double[BM_N_PHASES] (decode, -, prefill128, prefill512).  A new
 * thread count is warmed up first (scratch for 512 rows, pages touched,
 * the OpenMP team up). */
static int direct_rep(void *state, int ti, int r, void *out, char *err, size_t el)
{
    direct_state *st = state;
    const int32_t *pre = st->ids + st->n_dec;
    double *t = out;

    if (ti != st->ti) {
        omp_set_num_threads(g_opt.threads[ti]);
        if (time_prefill(st->m, st->sp, pre, 512, st->lg, err, el) < 0 ||
            time_decode(st->m, st->s, st->ids, st->lg, err, el) < 0)
            return -EIO;
        st->ti = ti;
    }
    if ((t[BM_DECODE] = time_decode(st->m, st->s, st->ids, st->lg, err, el)) < 0 ||
        (t[BM_PRE128] = time_prefill(st->m, st->sp, pre, 128, st->lg, err, el)) < 0 ||
        (t[BM_PRE512] = time_prefill(st->m, st->sp, pre, 512, st->lg, err, el)) < 0)
        return -EIO;
    fprintf(stderr, "  %s %s threads=%d rep %d: decode %.2f, p128 %.1f, p512 %.1f tok/s\n",
            st->c.sh->name, bm_mode_name[st->c.mode], g_opt.threads[ti], r, t[BM_DECODE],
            t[BM_PRE128], t[BM_PRE512]);
    return 0;
}

static const bm_worker_ops direct_ops = {
    direct_open, direct_rep, direct_close, BM_N_PHASES * sizeof(double), sizeof(direct_fin),
};

typedef struct sched_result {
    int ok;
    double tps[MAX_THREADS];    /* decode-b8 */
    double rd4[MAX_THREADS];
    long peak_kb;
    double load_s;              /* the first engine's: start to ready */
    char err[256];
} sched_result;

/* The scheduler worker: an engine per thread count (its compute threads
 * are fixed at start), decode-b8 per repetition. */
typedef struct sched_state {
    config_ctx c;
    eng_fp8_opts fo;
    char json[4400];
    bm_sched *s;
    int ti;
    double load_s;
} sched_state;

typedef struct sched_fin {
    long peak_kb;
    double load_s;
} sched_fin;

static int sched_open(const void *ctx, void **state, char *err, size_t el)
{
    sched_state *st = calloc(1, sizeof(*st));
    if (st == NULL) {
        snprintf(err, el, "out of memory");
        return -ENOMEM;
    }
    st->c = *(const config_ctx *)ctx;
    st->fo = fp8_opts_of(st->c.mode);
    st->ti = -1;
    st->load_s = -1;
    measure_json(st->json, sizeof(st->json), st->c.tmp);
    *state = st;
    return 0;
}

/* out: one double, decode-b8 tokens/s.  A new thread count starts its
 * engine and warms it up with one untimed run. */
static int sched_rep(void *state, int ti, int r, void *out, char *err, size_t el)
{
    sched_state *st = state;
    int fp8 = is_fp8(st->c.mode);
    double load_s, *t = out;

    if (ti != st->ti) {
        bm_sched_close(st->s);
        st->s = NULL;
        st->ti = -1;
        if (bm_sched_open(&st->s, st->c.dir, g_opt.threads[ti], fp8 ? &st->fo : NULL,
                          fp8 && g_opt.live ? st->json : NULL, st->c.sh->tok_bpe, &load_s,
                          err, el) < 0 ||
            bm_sched_decode8(st->s, g_opt.steps, err, el) < 0)
            return -EIO;
        if (st->load_s < 0)
            st->load_s = load_s;
        st->ti = ti;
    }
    if ((*t = bm_sched_decode8(st->s, g_opt.steps, err, el)) < 0)
        return -EIO;
    fprintf(stderr, "  %s %s threads=%d rep %d: decode-b8 %.2f tok/s (scheduler)\n",
            st->c.sh->name, bm_mode_name[st->c.mode], g_opt.threads[ti], r, *t);
    return 0;
}

static void sched_close(void *state, void *out)
{
    sched_state *st = state;
    sched_fin *f = out;
    long rss;

    if (f != NULL && bm_mem_kb(&rss, &f->peak_kb) == 0)
        f->load_s = st->load_s;
    bm_sched_close(st->s);
    free(st);
}

static const bm_worker_ops sched_ops = {
    sched_open, sched_rep, sched_close, sizeof(double), sizeof(sched_fin),
};

/* The read4 worker: a buffer of FP8D_BENCH_MB MiB; per round read4 (the
 * median of 3 passes) and the vdpbf16ps peak (the best of 12 short
 * passes), taken between the modes' repetitions: the decode ceilings
 * follow the host's bandwidth as it drifts, and the compute peak is the
 * best seen in any round (another tenant only lowers it, and a low peak
 * would flatter every %pk). */
typedef struct bw_state {
    uint8_t *buf;
    size_t len;
} bw_state;

static int bw_open(const void *ctx, void **state, char *err, size_t el)
{
    bw_state *st = calloc(1, sizeof(*st));
    (void)ctx;
    if (st != NULL) {
        st->len = g_opt.bw_mb << 20;
        st->buf = bm_bw_buffer(st->len);
    }
    if (st == NULL || st->buf == NULL) {
        free(st);
        snprintf(err, el, "out of memory (the %zu MiB bandwidth buffer)", g_opt.bw_mb);
        return -ENOMEM;
    }
    *state = st;
    return 0;
}

/* out: double[2], read4 GB/s and peak GFLOP/s. */
static int bw_rep(void *state, int ti, int r, void *out, char *err, size_t el)
{
    bw_state *st = state;
    double b3[3], *o = out;
    (void)r, (void)err, (void)el;
    for (int k = 0; k < 3; k++)
        b3[k] = bm_read_once(st->buf, st->len, g_opt.threads[ti], 4);
    o[0] = bm_median(b3, 3);
    o[1] = bm_peak_bf16(g_opt.threads[ti]);
    return 0;
}

static void bw_close(void *state, void *out)
{
    bw_state *st = state;
    (void)out;
    free(st->buf);
    free(st);
}

static const bm_worker_ops bw_ops = {bw_open, bw_rep, bw_close, 2 * sizeof(double), 0};

/* Runs fn(ctx, out) in a forked child and copies its out[size] back
 * through a pipe.  Everything that opens an OpenMP team runs in a child:
 * libgomp's thread pool does not survive fork, so the parent never
 * starts one.  -ECHILD when the child died before writing (out is then
 * zeroed). */
static int in_child(void (*fn)(const void *ctx, void *out), const void *ctx, void *out,
                    size_t size)
{
    int fd[2], status;
    pid_t pid;
    ssize_t got = 0, r;

    memset(out, 0, size);
    if (getenv("FP8D_BENCH_INPROC") != NULL) {   /* debugging: no fork */
        fn(ctx, out);
        return 0;
    }
    fflush(stdout);
    fflush(stderr);
    if (pipe(fd) < 0)
        return -errno;
    if ((pid = fork()) < 0)
        return -errno;
    if (pid == 0) {
        close(fd[0]);
        fn(ctx, out);
        r = write(fd[1], out, size);
        _exit(r == (ssize_t)size ? 0 : 1);
    }
    close(fd[1]);
    while (got < (ssize_t)size && (r = read(fd[0], (char *)out + got, size - (size_t)got)) > 0)
        got += r;
    close(fd[0]);
    if (waitpid(pid, &status, 0) < 0)
        return -errno;
    if (got != (ssize_t)size) {
        memset(out, 0, size);
        if (WIFSIGNALED(status))
            fprintf(stderr, "bench_model: child killed by signal %d (%s)%s\n", WTERMSIG(status),
                    strsignal(WTERMSIG(status)),
                    WTERMSIG(status) == SIGKILL ? ": out of memory?" : "");
        else
            fprintf(stderr, "bench_model: child exited with status %d\n", WEXITSTATUS(status));
        return -ECHILD;
    }
    return 0;
}

/* in_child for one configuration: a child that died leaves its result
 * not ok, with err saying so, and is no error of this process. */
static int run_child(void (*fn)(const void *ctx, void *out), const config_ctx *c, void *out,
                     size_t size, char *err, size_t errlen)
{
    int rc = in_child(fn, c, out, size);
    if (rc == -ECHILD)
        snprintf(err, errlen, "the child process died");
    return rc == -ECHILD ? 0 : rc;
}

typedef struct hw_result {
    int ok;
    double rd1[MAX_THREADS], rd4[MAX_THREADS], peak[MAX_THREADS];
} hw_result;

static void hw_child(const void *ctx, void *out)
{
    hw_result *h = out;
    (void)ctx;
    for (int ti = 0; ti < g_opt.n_threads; ti++) {
        if (bm_measure_bw(g_opt.threads[ti], g_opt.bw_mb, &h->rd1[ti], &h->rd4[ti]) < 0)
            return;
        h->peak[ti] = bm_peak_bf16(g_opt.threads[ti]);
    }
    h->ok = 1;
}

/* ---- the report ------------------------------------------------------- */

typedef struct mode_runs {
    int ok;
    direct_result d;
    sched_result s;
    convert_result cv;          /* ok 0 when there was no conversion */
} mode_runs;

static const char *ratio(char *buf, double x, double ref)
{
    if (ref > 0)
        snprintf(buf, 16, "%5.2f", x / ref);
    else
        snprintf(buf, 16, "%5s", "-");
    return buf;
}

static void print_context(const bm_shape *sh, const hw_result *hw)
{
    char cpu[256];
    bm_cpu_name(cpu, sizeof(cpu));
    printf("\n%s: hidden %d, %d layers, %d/%d heads, ffn %d, vocab %d, tied; decode reads "
           "%.0f MB (f32) / %.0f MB (bf16) / %.0f MB (fp8, lm_head %s) of weights per token\n",
           sh->name,
           sh->dim, sh->n_layers, sh->n_heads, sh->n_kv, sh->ffn, sh->vocab,
           mode_bytes(sh, BM_F32) * 1e-6, mode_bytes(sh, BM_BF16) * 1e-6,
           mode_bytes(sh, BM_FP8) * 1e-6, g_opt.live ? "fp8" : "bf16");
    printf("CPU %s\n", cpu);
    for (int ti = 0; ti < g_opt.n_threads; ti++) {
        printf("threads=%d, no model resident: read %.1f GB/s, read4 %.1f GB/s (decode "
               "ceiling f32 %.1f, bf16 %.1f, fp8 %.1f tokens/s); vdpbf16ps peak %.0f GFLOP/s "
               "(the best of this and every round)\n",
               g_opt.threads[ti], hw->rd1[ti], hw->rd4[ti],
               hw->rd4[ti] * 1e9 / mode_bytes(sh, BM_F32),
               hw->rd4[ti] * 1e9 / mode_bytes(sh, BM_BF16),
               hw->rd4[ti] * 1e9 / mode_bytes(sh, BM_FP8), hw->peak[ti]);
        printf("BENCH-HW shape=%s threads=%d read_gbps=%.2f read4_gbps=%.2f "
               "peak_bf16_gflops=%.1f\n", sh->name, g_opt.threads[ti], hw->rd1[ti], hw->rd4[ti],
               hw->peak[ti]);
    }
}

static void print_tables(const bm_shape *sh, const mode_runs *mr, const hw_result *hw)
{
    char a[16], b[16];
    printf("\ndecode tokens/s (ceil: tokens/s = rd4, read4 GB/s measured between the "
           "repetitions, / the mode's bytes per token, and the ratio to it; decode-b8: 8 "
           "requests through the scheduler, ceiling x8; /bf16: ratio to our bf16 mode)\n");
    printf("%-9s %3s | %5s %6s %8s %5s %5s | %5s %8s %5s %5s\n", "mode", "thr", "rd4", "ceil",
           "decode", "ceil", "/bf16", "rd4", "dec-b8", "ceil", "/bf16");
    for (int ti = 0; ti < g_opt.n_threads; ti++)
        for (int m = 0; m < BM_N_MODES; m++) {
            if (!mr[m].ok)
                continue;
            const mode_runs *bf = mr[BM_BF16].ok ? &mr[BM_BF16] : NULL;
            double c1 = mr[m].d.rd4[ti] * 1e9 / mode_bytes(sh, m);
            double c8 = BM_B8 * mr[m].s.rd4[ti] * 1e9 / mode_bytes(sh, m);
            double x1 = mr[m].d.tps[ti][BM_DECODE], x8 = mr[m].s.tps[ti];
            printf("%-9s %3d | %5.1f %6.1f %8.2f %5.2f %s | %5.1f %8.2f %5.2f %s\n",
                   bm_mode_name[m], g_opt.threads[ti], mr[m].d.rd4[ti], c1, x1, x1 / c1,
                   ratio(a, x1, bf ? bf->d.tps[ti][BM_DECODE] : 0), mr[m].s.rd4[ti], x8,
                   x8 / c8, ratio(b, x8, bf ? bf->s.tps[ti] : 0));
        }
    printf("\nprefill tokens/s (GFLOP/s: the prefill's FLOPs / its time; %%pk: of the "
           "vdpbf16ps peak at that thread count; /bf16: ratio to our bf16 mode)\n");
    printf("%-9s %3s | %8s %5s %7s %4s | %8s %5s %7s %4s\n", "mode", "thr", "pre128", "/bf16",
           "GFLOP/s", "%pk", "pre512", "/bf16", "GFLOP/s", "%pk");
    for (int ti = 0; ti < g_opt.n_threads; ti++)
        for (int m = 0; m < BM_N_MODES; m++) {
            if (!mr[m].ok)
                continue;
            printf("%-9s %3d", bm_mode_name[m], g_opt.threads[ti]);
            for (int p = BM_PRE128; p <= BM_PRE512; p++) {
                size_t n = p == BM_PRE128 ? 128 : 512;
                double x = mr[m].d.tps[ti][p], g = bm_prefill_flops(sh, n) * x / n * 1e-9;
                printf(" | %8.1f %s %7.1f %4.0f", x,
                       ratio(a, x, mr[BM_BF16].ok ? mr[BM_BF16].d.tps[ti][p] : 0), g,
                       hw->peak[ti] > 0 ? 100.0 * g / hw->peak[ti] : 0.0);
            }
            printf("\n");
        }
    printf("\nmemory MB (ready: VmRSS once loaded%s, before any forward; peak: VmHWM of the "
           "direct process; b8 peak: of the scheduler's; convert peak: of the converter) and "
           "seconds\n", g_opt.live ? " and converted" : "");
    printf("%-9s | %6s %6s %7s %12s | %6s %7s %9s %7s\n", "mode", "ready", "peak", "b8 peak",
           "convert peak", "load", "convert", "fp8 setup", "engine");
    for (int m = 0; m < BM_N_MODES; m++)
        if (mr[m].ok)
            printf("%-9s | %6ld %6ld %7ld %12ld | %6.1f %7.1f %9.1f %7.1f\n", bm_mode_name[m],
                   mr[m].d.ready_kb / 1024, mr[m].d.peak_kb / 1024, mr[m].s.peak_kb / 1024,
                   mr[m].cv.peak_kb / 1024, mr[m].d.load_s, mr[m].cv.seconds,
                   mr[m].d.quant_s, mr[m].s.load_s);
}

static void print_lines(const bm_shape *sh, const mode_runs *mr, const hw_result *hw)
{
    for (int ti = 0; ti < g_opt.n_threads; ti++)
        for (int m = 0; m < BM_N_MODES; m++) {
            if (!mr[m].ok)
                continue;
            double c1 = mr[m].d.rd4[ti] * 1e9 / mode_bytes(sh, m);
            double c8 = BM_B8 * mr[m].s.rd4[ti] * 1e9 / mode_bytes(sh, m);
            printf("BENCH-BW shape=%s mode=%s threads=%d read4_gbps=%.2f read4_b8_gbps=%.2f\n",
                   sh->name, bm_mode_name[m], g_opt.threads[ti], mr[m].d.rd4[ti],
                   mr[m].s.rd4[ti]);
            for (int p = 0; p < BM_N_PHASES; p++) {
                double v = p == BM_DECODE8 ? mr[m].s.tps[ti] : mr[m].d.tps[ti][p];
                printf("BENCH shape=%s mode=%s threads=%d phase=%s tokens_per_s=%.2f", sh->name,
                       bm_mode_name[m], g_opt.threads[ti], bm_phase_name[p], v);
                if (p == BM_DECODE || p == BM_DECODE8)
                    printf(" ceiling_ratio=%.3f", v / (p == BM_DECODE ? c1 : c8));
                printf("\n");
            }
            for (int p = BM_PRE128; p <= BM_PRE512; p++) {
                size_t n = p == BM_PRE128 ? 128 : 512;
                double g = bm_prefill_flops(sh, n) * mr[m].d.tps[ti][p] / n * 1e-9;
                printf("BENCH-PREFILL shape=%s mode=%s threads=%d phase=%s gflops=%.1f "
                       "peak_ratio=%.3f\n", sh->name, bm_mode_name[m], g_opt.threads[ti],
                       bm_phase_name[p], g, hw->peak[ti] > 0 ? g / hw->peak[ti] : 0.0);
            }
        }
    for (int m = 0; m < BM_N_MODES; m++)
        if (mr[m].ok)
            printf("BENCH-RSS shape=%s mode=%s load=%s ready_rss_mb=%ld peak_rss_mb=%ld "
                   "b8_peak_rss_mb=%ld convert_peak_rss_mb=%ld\n", sh->name, bm_mode_name[m],
                   !is_fp8(m) ? "hp" : g_opt.live ? "live" : "export",
                   mr[m].d.ready_kb / 1024, mr[m].d.peak_kb / 1024, mr[m].s.peak_kb / 1024,
                   mr[m].cv.peak_kb / 1024);
    fflush(stdout);
}

/* ---- the folder of models ------------------------------------------------- */

static char g_tmp[4096];
static int g_tmp_made;

/* Removes dir and the files in it (our own folders: no subfolders). */
static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[8400];
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        unlink(p);
    }
    if (d != NULL)
        closedir(d);
    rmdir(dir);
}

/* A folder of the shape: "<tmp>/<shape>-<what>". */
static void model_dir(char *buf, size_t len, const bm_shape *sh, const char *what)
{
    snprintf(buf, len, "%s/%s-%s", g_tmp, sh->name, what);
}

static void rm_shape(const bm_shape *sh)
{
    static const char *const what[] = {"bf16", "f32", "fp8", "fp8-w8a8", "fp8-w8a8-static"};
    char d[4400];
    for (size_t i = 0; i < sizeof(what) / sizeof(what[0]); i++) {
        model_dir(d, sizeof(d), sh, what[i]);
        rm_dir(d);
    }
}

static void rm_tree(void)
{
    if (!g_tmp_made)
        return;
    for (size_t i = 0; i < bm_n_shapes; i++)
        rm_shape(&bm_shapes[i]);
    rmdir(g_tmp);
}

static int file_exists(const char *dir, const char *name)
{
    char p[4600];
    struct stat st;
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    return stat(p, &st) == 0;
}

static int ensure_model(const bm_shape *sh, int f32, char *dir, size_t dlen)
{
    double t0 = bm_now();
    int rc = 0;
    model_dir(dir, dlen, sh, f32 ? "f32" : "bf16");
    /* FP8D_BENCH_KEEP: an earlier run may have written them */
    if (!file_exists(dir, "model.safetensors") && (rc = bm_write_model(sh, dir, f32)) == 0)
        fprintf(stderr, "bench_model: wrote %s (%.1f s)\n", dir, bm_now() - t0);
    if (rc == 0 && !file_exists(dir, "tokenizer.json"))
        rc = bm_write_tokenizer(sh, dir);
    return rc;
}

/* ---- main ------------------------------------------------------------ */

/* A mode's folders: src the high-precision model, dir what its workers
 * load (src itself, or the FP8 export written here first).  mr->cv.err
 * says why when the conversion failed (the mode is then left out). */
static int prepare_mode(const bm_shape *sh, int mode, char *src, char *dir, size_t len,
                        mode_runs *mr)
{
    config_ctx cc = {sh, mode, src, src, g_tmp};
    int rc;

    if ((rc = ensure_model(sh, mode == BM_F32, src, len)) < 0) {
        fprintf(stderr, "bench_model: cannot write %s: %s\n", src, strerror(-rc));
        return rc;
    }
    snprintf(dir, len, "%s", src);
    if (!is_fp8(mode) || g_opt.live)
        return 0;
    /* static W8A8 exports carry input scales: a folder of their own */
    model_dir(dir, len, sh, mode == BM_W8A8 && g_opt.w8a8_static
                            ? "fp8-w8a8-static" : bm_mode_name[mode]);
    cc.dir = dir;
    if (file_exists(dir, "fp8d_state.json"))
        return 0;
    fprintf(stderr, "bench_model: %s %s: converting\n", sh->name, bm_mode_name[mode]);
    if ((rc = run_child(convert_child, &cc, &mr->cv, sizeof(mr->cv), mr->cv.err,
                        sizeof(mr->cv.err))) < 0)
        return rc;
    if (!mr->cv.ok)
        fprintf(stderr, "bench_model: %s %s: conversion: %s\n", sh->name, bm_mode_name[mode],
                mr->cv.err);
    return 0;
}

/* One phase (0: direct, 1: the scheduler's decode-b8) of every mode in
 * on[]: a worker per mode, loaded one after the other, and the read4
 * worker; then per thread count, REPS rounds, each read4 and the peak,
 * then one repetition of every mode in turn.  peak[ti] rises to the best
 * peak of a round.  A mode whose worker fails is reported and left out of
 * the rest (on[mode] = 0). */
static int run_phase(int phase, const config_ctx *cc, int *on, mode_runs *mr, double *peak)
{
    const bm_worker_ops *ops = phase ? &sched_ops : &direct_ops;
    int inproc = getenv("FP8D_BENCH_INPROC") != NULL;
    bm_worker *w[BM_N_MODES] = {0}, *bw = NULL;
    static double t[BM_N_MODES][BM_N_PHASES][MAX_REPS];
    double rd[MAX_REPS];
    char err[256];
    int rc;

    for (int m = 0; m < BM_N_MODES; m++) {
        char *e = phase ? mr[m].s.err : mr[m].d.err;
        size_t el = phase ? sizeof(mr[m].s.err) : sizeof(mr[m].d.err);
        if (on[m] && bm_worker_start(&w[m], ops, &cc[m], inproc, e, el) < 0) {
            fprintf(stderr, "bench_model: %s %s%s: %s\n", cc[m].sh->name, bm_mode_name[m],
                    phase ? " (scheduler)" : "", e);
            on[m] = 0;
        }
    }
    if ((rc = bm_worker_start(&bw, &bw_ops, NULL, inproc, err, sizeof(err))) < 0) {
        fprintf(stderr, "bench_model: read4: %s\n", err);
        goto out;
    }
    for (int ti = 0; ti < g_opt.n_threads; ti++) {
        for (int r = 0; r < g_opt.reps; r++) {
            double hw[2];
            if ((rc = bm_worker_rep(bw, ti, r, hw, err, sizeof(err))) < 0) {
                fprintf(stderr, "bench_model: read4: %s\n", err);
                goto out;
            }
            rd[r] = hw[0];
            peak[ti] = hw[1] > peak[ti] ? hw[1] : peak[ti];
            fprintf(stderr, "  threads=%d round %d: read4 %.1f GB/s, vdpbf16ps peak %.0f "
                    "GFLOP/s\n", g_opt.threads[ti], r, hw[0], hw[1]);
            for (int m = 0; m < BM_N_MODES; m++) {
                double x[BM_N_PHASES];
                char *e = phase ? mr[m].s.err : mr[m].d.err;
                size_t el = phase ? sizeof(mr[m].s.err) : sizeof(mr[m].d.err);
                if (w[m] == NULL)
                    continue;
                if (bm_worker_rep(w[m], ti, r, x, e, el) < 0) {
                    fprintf(stderr, "bench_model: %s %s%s: %s\n", cc[m].sh->name,
                            bm_mode_name[m], phase ? " (scheduler)" : "", e);
                    bm_worker_kill(w[m]);
                    w[m] = NULL;
                    on[m] = 0;
                    continue;
                }
                for (int p = 0; p < (phase ? 1 : BM_N_PHASES); p++)
                    t[m][p][r] = x[p];
            }
        }
        double rd4 = bm_median(rd, g_opt.reps);
        for (int m = 0; m < BM_N_MODES; m++) {
            if (w[m] == NULL)
                continue;
            if (phase) {
                mr[m].s.tps[ti] = bm_median(t[m][0], g_opt.reps);
                mr[m].s.rd4[ti] = rd4;
                continue;
            }
            for (int p = 0; p < BM_N_PHASES; p++)
                if (p != BM_DECODE8)
                    mr[m].d.tps[ti][p] = bm_median(t[m][p], g_opt.reps);
            mr[m].d.rd4[ti] = rd4;
        }
    }
out:
    bm_worker_kill(bw);
    for (int m = 0; m < BM_N_MODES; m++) {
        if (w[m] == NULL)
            continue;
        if (rc < 0) {
            bm_worker_kill(w[m]);
            continue;
        }
        if (phase) {
            sched_fin f;
            if (bm_worker_finish(w[m], &f, mr[m].s.err, sizeof(mr[m].s.err)) == 0) {
                mr[m].s.peak_kb = f.peak_kb;
                mr[m].s.load_s = f.load_s;
                mr[m].s.ok = 1;
            }
        } else {
            direct_fin f;
            if (bm_worker_finish(w[m], &f, mr[m].d.err, sizeof(mr[m].d.err)) == 0) {
                mr[m].d.ready_kb = f.ready_kb;
                mr[m].d.peak_kb = f.peak_kb;
                mr[m].d.load_s = f.load_s;
                mr[m].d.quant_s = f.quant_s;
                mr[m].d.ok = 1;
            }
        }
    }
    return rc;
}

/* Every mode of a shape: the folders (conversions first, one at a time),
 * then the direct phase, then the scheduler's, each interleaving the
 * modes; mr[m].ok when both phases of m succeeded.  peak: as run_phase. */
static int run_shape(const bm_shape *sh, mode_runs *mr, double *peak)
{
    static char src[BM_N_MODES][4400], dir[BM_N_MODES][4400];
    config_ctx cc[BM_N_MODES];
    int on[BM_N_MODES], rc;

    memset(mr, 0, BM_N_MODES * sizeof(*mr));
    for (int m = 0; m < BM_N_MODES; m++) {
        on[m] = 0;
        if (!g_opt.modes[m])
            continue;
        if ((rc = prepare_mode(sh, m, src[m], dir[m], sizeof(src[m]), &mr[m])) < 0)
            return rc;
        on[m] = !is_fp8(m) || g_opt.live || file_exists(dir[m], "fp8d_state.json");
        cc[m] = (config_ctx){sh, m, src[m], dir[m], g_tmp};
    }
    fprintf(stderr, "bench_model: %s: direct phase\n", sh->name);
    if ((rc = run_phase(0, cc, on, mr, peak)) < 0)
        return rc;
    fprintf(stderr, "bench_model: %s: scheduler phase\n", sh->name);
    if ((rc = run_phase(1, cc, on, mr, peak)) < 0)
        return rc;
    for (int m = 0; m < BM_N_MODES; m++)
        mr[m].ok = mr[m].d.ok && mr[m].s.ok;
    return 0;
}

static int make_tmp(void)
{
    if (g_opt.keep != NULL) {
        snprintf(g_tmp, sizeof(g_tmp), "%s", g_opt.keep);
        if (mkdir(g_tmp, 0755) < 0 && errno != EEXIST) {
            perror(g_tmp);
            return -1;
        }
        return 0;
    }
    const char *base = getenv("FP8D_BENCH_DIR");
    if (base == NULL)
        base = getenv("TMPDIR");
    snprintf(g_tmp, sizeof(g_tmp), "%s/fp8d-bench-XXXXXX", base ? base : "/tmp");
    if (mkdtemp(g_tmp) == NULL) {
        perror(g_tmp);
        return -1;
    }
    g_tmp_made = 1;
    atexit(rm_tree);
    return 0;
}

int main(void)
{
    int status = 0;

    kn_log_set_level(KN_LOG_WARN);
    if (kn_init(NULL) < 0) {
        fprintf(stderr, "bench_model: kn_init failed\n");
        return 1;
    }
    parse_opts();
    bm_norm_table_init();
    if (make_tmp() < 0)
        return 1;
    printf("bench_model: models in %s%s; threads", g_tmp, g_opt.keep ? " (kept)" : "");
    for (int i = 0; i < g_opt.n_threads; i++)
        printf(" %d", g_opt.threads[i]);
    printf("; %d reps x %d decode steps; fp8 %s; fp8 weight-only activations %s; w8a8 "
           "activations %s; f32 %s\n", g_opt.reps,
           g_opt.steps, g_opt.live ? "converted live in the measured process"
                                   : "exported once, loaded fresh",
           g_opt.bf16_act ? "bf16" : "f32 (exact)",
           g_opt.w8a8_static ? "static (calibrated)" : "dynamic (per token)",
           g_opt.modes[BM_F32] ? "on" : "off");

    for (size_t si = 0; si < bm_n_shapes; si++) {
        const bm_shape *sh = &bm_shapes[si];
        mode_runs mr[BM_N_MODES];
        hw_result hw;

        if (!g_opt.shapes[si])
            continue;
        /* the machine first, with no model resident */
        if (in_child(hw_child, NULL, &hw, sizeof(hw)) < 0 || !hw.ok) {
            fprintf(stderr, "bench_model: bandwidth measurement failed\n");
            return 1;
        }
        if (run_shape(sh, mr, hw.peak) < 0)
            return 1;
        for (int mode = 0; mode < BM_N_MODES; mode++)
            if (g_opt.modes[mode] && !mr[mode].ok)
                status = 1;
        print_context(sh, &hw);
        print_tables(sh, mr, &hw);
        print_lines(sh, mr, &hw);
        if (!g_opt.keep)
            rm_shape(sh);   /* the disk: the next shape writes its own */
    }
    return status;
}
