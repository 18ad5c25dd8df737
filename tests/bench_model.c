/* bench_model.c: end-to-end tokens/s of the engine at real model shapes
 * against this machine's memory-bandwidth ceiling ('make bench'; issue 7).
 *
 * 1. Writes random-weight Hugging Face directories (config.json +
 *    model.safetensors; normal, std 0.02, never zero; norms 1) at the
 *    shapes of Qwen2.5-0.5B and Llama-3.2-1B, in BF16 and (for mode f32)
 *    F32, under a temporary folder removed at exit.
 * 2. Measures the read bandwidth as tests/bench_fp8mm.c does ('read4':
 *    4 concurrent streams, the bound of a GEMV; perf-anchors.md 1) with 1
 *    and 2 threads: once before each shape (printed), and interleaved
 *    with every repetition of every configuration (the host is shared and
 *    its bandwidth drifts: the ceilings use these).
 * 3. For each shape and mode, in a forked child (so that ru_maxrss is the
 *    peak RSS of that configuration alone: taken after the first warm-up,
 *    before the bandwidth buffer), loads the model and measures
 *    with each thread count (omp_set_num_threads; the model is loaded with
 *    n_threads 0 = the OpenMP default):
 *      decode     batch 1: 16-token prompt, then STEPS one-token forwards
 *                 with the logits of each (as generation needs them);
 *      decode-b8  8 sequences per eng_forward call (what one scheduler
 *                 step runs; see below), STEPS steps, 8 tokens each;
 *      prefill128/prefill512  one forward of the prompt, logits of its
 *                 last token only.
 *    Modes: f32 (the F32 model), bf16 (the BF16 model), fp8 (BF16 model,
 *    E4M3 weights with per-channel minmax scales, f32 activations) and
 *    fp8-w8a8 (the same weights, E4M3 activations with per-token dynamic
 *    scales; FP8D_BENCH_W8A8=static uses static scales calibrated on the
 *    random calibration tokens).  FP8 modes quantize every Linear,
 *    lm_head (the tied embedding) included, after MEASURE over 2 random
 *    sequences of 32 tokens (run with logits, so that lm_head is measured
 *    too: eng_fp8_calibrate computes none and leaves lm_head in BF16).
 * Decode ceiling = read4 bandwidth (the median of the configuration's
 * interleaved measurements) / bytes of weights one decode step
 * reads: every Linear (q,k,v,o,gate,up,down) of every layer plus the tied
 * embedding read once as lm_head, at the mode's bytes per weight (fp8: 1
 * byte plus a 4-byte scale per output row); norms, biases and the KV cache
 * are ignored (under 0.1%).  Each decode figure's ceiling_ratio is against
 * its own mode's ceiling (decode-b8: 8 tokens per pass over the weights).
 * decode-b8 does not go through eng_engine/eng_submit: the scheduler
 * needs a tokenizer, samples and detokenizes on its thread, and its FP8
 * path takes only the default options (no weight-only mode), so the
 * figure is the engine's batched step, 8 items per eng_forward.
 *
 * Output: a table per shape, then one line per figure
 *   BENCH shape=<s> mode=<m> threads=<n> phase=<p> tokens_per_s=<x> [ceiling_ratio=<y>]
 * (ceiling_ratio for the decode phases only), and the inputs of the table
 * as BENCH-BW (interleaved read4 GB/s per mode and thread count) and
 * BENCH-RSS (peak RSS per mode) lines.
 * Figures are medians of REPS repetitions after a warm-up; nothing is
 * asserted (timings are not tests).
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
 *   FP8D_BENCH_DIR      parent of the temporary folder (default $TMPDIR, /tmp)
 *   FP8D_BENCH_KEEP=<dir>  write the models into <dir> (reused when present,
 *                       never deleted): saves the generation on reruns
 *   FP8D_BENCH_MB       bandwidth buffer, MiB (default 1024)
 *   FP8D_BENCH_INPROC=1 run every configuration in this process (for a
 *                       debugger; peak RSS is then not reported)
 */
#include "config.h"

#include <errno.h>
#include <immintrin.h>
#include <math.h>
#include <signal.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine.h"

/* ---- shapes ------------------------------------------------------------ */

typedef struct shape_def {
    const char *name;          /* as in the BENCH lines */
    const char *arch, *model_type;
    int dim, n_layers, n_heads, n_kv, ffn, vocab, max_pos;
    double rope_theta, rms_eps;
    int qkv_bias;              /* Qwen2: q/k/v projections carry a bias */
    int llama3_rope;
} shape_def;

static const shape_def kShapes[] = {
    {"qwen2.5-0.5b", "Qwen2ForCausalLM", "qwen2", 896, 24, 14, 2, 4864, 151936, 32768,
     1000000.0, 1e-6, 1, 0},
    {"llama-3.2-1b", "LlamaForCausalLM", "llama", 2048, 16, 32, 8, 8192, 128256, 131072,
     500000.0, 1e-5, 0, 1},
};
#define N_SHAPES (sizeof(kShapes) / sizeof(kShapes[0]))

enum { M_F32, M_BF16, M_FP8, M_W8A8, N_MODES };
static const char *const kModeName[N_MODES] = {"f32", "bf16", "fp8", "fp8-w8a8"};

enum { P_DECODE, P_DECODE8, P_PRE128, P_PRE512, N_PHASES };
static const char *const kPhaseName[N_PHASES] = {"decode", "decode-b8", "prefill128",
                                                 "prefill512"};

#define MAX_THREADS 8
#define B8 8
#define DEC_PROMPT 16

/* ---- options ---------------------------------------------------------- */

static struct {
    int shapes[N_SHAPES], modes[N_MODES];
    int threads[MAX_THREADS], n_threads;
    int reps, steps, w8a8_static;
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
    const char *s = getenv("FP8D_BENCH_SHAPES"), *m = getenv("FP8D_BENCH_MODES");
    const char *t = getenv("FP8D_BENCH_THREADS"), *w = getenv("FP8D_BENCH_W8A8");
    const char *skip = getenv("FP8D_BENCH_SKIP_F32");

    for (size_t i = 0; i < N_SHAPES; i++)
        g_opt.shapes[i] = s == NULL || list_has(s, kShapes[i].name);
    for (int i = 0; i < N_MODES; i++)
        g_opt.modes[i] = m == NULL || list_has(m, kModeName[i]);
    if (skip != NULL && atoi(skip) != 0)
        g_opt.modes[M_F32] = 0;
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
    g_opt.reps = env_int("FP8D_BENCH_REPS", 3);
    g_opt.steps = env_int("FP8D_BENCH_STEPS", 32);
    g_opt.bw_mb = (size_t)env_int("FP8D_BENCH_MB", 1024);
    g_opt.w8a8_static = w != NULL && strcmp(w, "static") == 0;
    g_opt.keep = getenv("FP8D_BENCH_KEEP");
}

/* ---- helpers ----------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* xorshift64*: fast, seeded, good enough for weights and token ids. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

/* ---- random weights ---------------------------------------------------- */

/* 65536 normal values of std 0.02 (Box-Muller on a fixed seed), none
 * zero, in f32 and BF16 (round to nearest even); samples pick entries by
 * 16 random bits, 4 per xorshift draw (about 1 ns per weight). */
static float g_norm_f32[65536];
static uint16_t g_norm_bf16[65536];

static uint16_t f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

static void norm_table_init(void)
{
    uint64_t s = 0x5EED5EED12345678ull;
    for (int i = 0; i < 65536; i += 2) {
        double u1 = ((double)(rng_next(&s) >> 11) + 1.0) / 9007199254740993.0;
        double u2 = (double)(rng_next(&s) >> 11) / 9007199254740992.0;
        double r = sqrt(-2.0 * log(u1));
        for (int j = 0; j < 2; j++) {
            float v = (float)(0.02 * r * (j ? sin(2 * M_PI * u2) : cos(2 * M_PI * u2)));
            if (fabsf(v) < 1e-6f)
                v = v < 0 ? -1e-6f : 1e-6f;   /* never zero, in BF16 too */
            g_norm_f32[i + j] = v;
            g_norm_bf16[i + j] = f32_to_bf16(v);
        }
    }
}

/* One tensor of a shape; visit_tensors calls fn for each, in file order. */
typedef struct tensor_def {
    char name[96];
    int n_dims;
    int64_t shape[2];
    int ones;                  /* norm weight: all 1 */
} tensor_def;

typedef int (*tensor_fn)(const tensor_def *t, void *ud);

static int visit_tensors(const shape_def *sh, tensor_fn fn, void *ud)
{
    int hs = sh->dim / sh->n_heads, qd = sh->n_heads * hs, kvd = sh->n_kv * hs, rc;
    tensor_def t;

#define T2_(nm, a, b) (snprintf(t.name, sizeof(t.name), "%s", nm), t.n_dims = 2, \
                       t.shape[0] = (a), t.shape[1] = (b), t.ones = 0, fn(&t, ud))
#define T1_(nm, a, o) (snprintf(t.name, sizeof(t.name), "%s", nm), t.n_dims = 1, \
                       t.shape[0] = (a), t.shape[1] = 1, t.ones = (o), fn(&t, ud))
    if ((rc = T2_("model.embed_tokens.weight", sh->vocab, sh->dim)) < 0 ||
        (rc = T1_("model.norm.weight", sh->dim, 1)) < 0)
        return rc;
    for (int l = 0; l < sh->n_layers; l++) {
        char p[64], n[96];
        snprintf(p, sizeof(p), "model.layers.%d.", l);
#define NM_(s) (snprintf(n, sizeof(n), "%s%s", p, s), n)
        if ((rc = T1_(NM_("input_layernorm.weight"), sh->dim, 1)) < 0 ||
            (rc = T1_(NM_("post_attention_layernorm.weight"), sh->dim, 1)) < 0 ||
            (rc = T2_(NM_("self_attn.q_proj.weight"), qd, sh->dim)) < 0 ||
            (rc = T2_(NM_("self_attn.k_proj.weight"), kvd, sh->dim)) < 0 ||
            (rc = T2_(NM_("self_attn.v_proj.weight"), kvd, sh->dim)) < 0 ||
            (rc = T2_(NM_("self_attn.o_proj.weight"), sh->dim, qd)) < 0 ||
            (rc = T2_(NM_("mlp.gate_proj.weight"), sh->ffn, sh->dim)) < 0 ||
            (rc = T2_(NM_("mlp.up_proj.weight"), sh->ffn, sh->dim)) < 0 ||
            (rc = T2_(NM_("mlp.down_proj.weight"), sh->dim, sh->ffn)) < 0)
            return rc;
        if (sh->qkv_bias &&
            ((rc = T1_(NM_("self_attn.q_proj.bias"), qd, 0)) < 0 ||
             (rc = T1_(NM_("self_attn.k_proj.bias"), kvd, 0)) < 0 ||
             (rc = T1_(NM_("self_attn.v_proj.bias"), kvd, 0)) < 0))
            return rc;
#undef NM_
    }
#undef T1_
#undef T2_
    return 0;
}

typedef struct writer {
    FILE *f;
    size_t esz;                /* 2 (BF16) or 4 (F32) */
    size_t off;                /* header: running data offset */
    char *hdr;
    size_t hdr_len, hdr_cap;
    uint64_t rng;
    void *buf;                 /* data: one chunk */
} writer;

#define CHUNK (1u << 20)

static int hdr_append(writer *w, const char *s)
{
    size_t n = strlen(s);
    if (w->hdr_len + n + 1 > w->hdr_cap) {
        size_t cap = (w->hdr_cap + n + 1) * 2;
        char *p = realloc(w->hdr, cap);
        if (p == NULL)
            return -ENOMEM;
        w->hdr = p;
        w->hdr_cap = cap;
    }
    memcpy(w->hdr + w->hdr_len, s, n + 1);
    w->hdr_len += n;
    return 0;
}

static int hdr_tensor(const tensor_def *t, void *ud)
{
    writer *w = ud;
    char e[256];
    size_t bytes = (size_t)t->shape[0] * (size_t)t->shape[1] * w->esz;
    if (t->n_dims == 2)
        snprintf(e, sizeof(e), ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld,%lld],"
                 "\"data_offsets\":[%zu,%zu]}", t->name, w->esz == 2 ? "BF16" : "F32",
                 (long long)t->shape[0], (long long)t->shape[1], w->off, w->off + bytes);
    else
        snprintf(e, sizeof(e), ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld],"
                 "\"data_offsets\":[%zu,%zu]}", t->name, w->esz == 2 ? "BF16" : "F32",
                 (long long)t->shape[0], w->off, w->off + bytes);
    w->off += bytes;
    return hdr_append(w, e);
}

static int data_tensor(const tensor_def *t, void *ud)
{
    writer *w = ud;
    size_t n = (size_t)t->shape[0] * (size_t)t->shape[1];
    for (size_t i = 0; i < n; i += CHUNK) {
        size_t c = n - i < CHUNK ? n - i : CHUNK;
        for (size_t j = 0; j < c; j += 4) {
            uint64_t r = rng_next(&w->rng);
            for (size_t k = 0; k < 4 && j + k < c; k++, r >>= 16) {
                uint16_t ix = (uint16_t)r;
                if (w->esz == 2)
                    ((uint16_t *)w->buf)[j + k] = t->ones ? 0x3F80 : g_norm_bf16[ix];
                else
                    ((float *)w->buf)[j + k] = t->ones ? 1.0f : g_norm_f32[ix];
            }
        }
        if (fwrite(w->buf, w->esz, c, w->f) != c)
            return -EIO;
    }
    return 0;
}

static int write_config(const shape_def *sh, const char *dir, int f32)
{
    char path[4200], rope[256] = "";
    FILE *f;
    snprintf(path, sizeof(path), "%s/config.json", dir);
    if ((f = fopen(path, "w")) == NULL)
        return -errno;
    if (sh->llama3_rope)
        snprintf(rope, sizeof(rope), "  \"rope_scaling\": {\"factor\": 32.0, "
                 "\"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0, "
                 "\"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"},\n");
    fprintf(f, "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"%s\",\n"
            "  \"hidden_act\": \"silu\",\n  \"hidden_size\": %d,\n"
            "  \"intermediate_size\": %d,\n  \"num_hidden_layers\": %d,\n"
            "  \"num_attention_heads\": %d,\n  \"num_key_value_heads\": %d,\n"
            "  \"head_dim\": %d,\n  \"vocab_size\": %d,\n  \"max_position_embeddings\": %d,\n"
            "  \"rms_norm_eps\": %g,\n  \"rope_theta\": %.1f,\n%s"
            "  \"tie_word_embeddings\": true,\n  \"use_sliding_window\": false,\n"
            "  \"sliding_window\": null,\n  \"attention_bias\": %s,\n"
            "  \"bos_token_id\": 1,\n  \"eos_token_id\": 2,\n"
            "  \"torch_dtype\": \"%s\"\n}\n",
            sh->arch, sh->model_type, sh->dim, sh->ffn, sh->n_layers, sh->n_heads, sh->n_kv,
            sh->dim / sh->n_heads, sh->vocab, sh->max_pos, sh->rms_eps, sh->rope_theta, rope,
            sh->qkv_bias ? "true" : "false", f32 ? "float32" : "bfloat16");
    return fclose(f) == 0 ? 0 : -EIO;
}

/* Writes dir/config.json and dir/model.safetensors (BF16, or F32). */
static int write_model(const shape_def *sh, const char *dir, int f32)
{
    writer w = {0};
    char path[4200], tmp[4300];
    int rc;
    uint64_t hlen;

    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return -errno;
    if ((rc = write_config(sh, dir, f32)) < 0)
        return rc;
    w.esz = f32 ? 4 : 2;
    if ((rc = hdr_append(&w, "{\"__metadata__\":{\"format\":\"pt\"}")) < 0 ||
        (rc = visit_tensors(sh, hdr_tensor, &w)) < 0 || (rc = hdr_append(&w, "}")) < 0)
        goto out;
    while (w.hdr_len % 8 != 0)
        if ((rc = hdr_append(&w, " ")) < 0)
            goto out;
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    w.rng = 0xC0FFEEull + (uint64_t)sh->dim;
    if ((w.buf = malloc(CHUNK * w.esz)) == NULL || (w.f = fopen(tmp, "wb")) == NULL) {
        rc = w.buf == NULL ? -ENOMEM : -errno;
        goto out;
    }
    hlen = w.hdr_len;   /* little-endian u64 (x86) */
    if (fwrite(&hlen, 8, 1, w.f) != 1 || fwrite(w.hdr, 1, w.hdr_len, w.f) != w.hdr_len) {
        rc = -EIO;
        goto out;
    }
    if ((rc = visit_tensors(sh, data_tensor, &w)) < 0)
        goto out;
    rc = fclose(w.f) == 0 ? 0 : -EIO;
    w.f = NULL;
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
out:
    if (w.f != NULL)
        fclose(w.f);
    if (rc < 0)
        unlink(tmp);
    free(w.buf);
    free(w.hdr);
    return rc;
}

/* Bytes of weights one decode step reads at bytes-per-weight bpw (plus
 * per-row scale bytes), lm_head = the tied embedding once. */
static double decode_bytes(const shape_def *sh, double bpw, double row_extra)
{
    double hs = sh->dim / sh->n_heads, qd = sh->n_heads * hs, kvd = sh->n_kv * hs;
    double d = sh->dim, f = sh->ffn;
    double per_layer_w = qd * d + 2 * kvd * d + d * qd + 3 * f * d;
    double per_layer_rows = qd + 2 * kvd + d + 2 * f + d;
    double w = sh->n_layers * per_layer_w + (double)sh->vocab * d;
    double rows = sh->n_layers * per_layer_rows + sh->vocab;
    return w * bpw + rows * row_extra;
}

static double mode_bytes(const shape_def *sh, int mode)
{
    switch (mode) {
    case M_F32:  return decode_bytes(sh, 4, 0);
    case M_BF16: return decode_bytes(sh, 2, 0);
    default:     return decode_bytes(sh, 1, 4);
    }
}

/* ---- read bandwidth (tests/bench_fp8mm.c's 'read4'; one-off target
 * attribute, taken only after __builtin_cpu_supports) ------------------- */

__attribute__((target("avx512f"))) static uint64_t read_avx512(const uint8_t *p, size_t len,
                                                               int streams)
{
    __m512i acc[8];
    const int per = 8 / streams;
    size_t part = len / (size_t)streams / 512 * 512;
    for (int i = 0; i < 8; i++)
        acc[i] = _mm512_setzero_si512();
    for (size_t off = 0; off < part; off += (size_t)per * 64)
        for (int s = 0; s < streams; s++)
            for (int j = 0; j < per; j++)
                acc[s * per + j] = _mm512_add_epi64(
                    acc[s * per + j], _mm512_load_si512(p + (size_t)s * part + off + j * 64));
    for (int i = 1; i < 8; i++)
        acc[0] = _mm512_add_epi64(acc[0], acc[i]);
    return (uint64_t)_mm512_reduce_add_epi64(acc[0]);
}

static uint64_t read_plain(const uint8_t *p, size_t len)
{
    uint64_t acc[8] = {0};
    for (size_t i = 0; i + 64 <= len; i += 64)
        for (int j = 0; j < 8; j++) {
            uint64_t v;
            memcpy(&v, p + i + 8 * j, 8);
            acc[j] += v;
        }
    return acc[0] + acc[1] + acc[2] + acc[3] + acc[4] + acc[5] + acc[6] + acc[7];
}

static volatile uint64_t g_sink;

static double read_once(const uint8_t *buf, size_t len, int nth, int streams)
{
    int avx512 = __builtin_cpu_supports("avx512f");
    double t0 = now_s();
#pragma omp parallel num_threads(nth)
    {
        size_t sl = len / (size_t)nth / 4096 * 4096;
        const uint8_t *p = buf + sl * (size_t)omp_get_thread_num();
        g_sink += avx512 ? read_avx512(p, sl, streams) : read_plain(p, sl);
    }
    return (double)len / (now_s() - t0) * 1e-9;
}

/* Median GB/s of 7 passes after one warm-up: rd1 1 stream, rd4 4 streams. */
static int measure_bw(int nth, double *rd1, double *rd4)
{
    size_t len = g_opt.bw_mb << 20;
    uint8_t *buf = NULL;
    double a[7], b[7];
    if (posix_memalign((void **)&buf, 2u << 20, len) != 0)
        return -ENOMEM;
    (void)madvise(buf, len, MADV_HUGEPAGE);
    memset(buf, 1, len);
    read_once(buf, len, nth, 4);
    for (int r = 0; r < 7; r++) {
        a[r] = read_once(buf, len, nth, 1);
        b[r] = read_once(buf, len, nth, 4);
    }
    free(buf);
    *rd1 = median(a, 7);
    *rd4 = median(b, 7);
    return 0;
}

/* ---- one configuration (in the child) ---------------------------------- */

typedef struct cfg_result {
    int ok;
    double tps[MAX_THREADS][N_PHASES];
    double rd4[MAX_THREADS];   /* read4 GB/s measured between the repetitions */
    long rss_kb;               /* ru_maxrss before the bandwidth buffer */
    double load_s, quant_s;
    char err[256];
} cfg_result;

static void random_ids(int32_t *ids, size_t n, int V, uint64_t seed)
{
    for (size_t i = 0; i < n; i++)
        ids[i] = (int32_t)(rng_next(&seed) % (uint64_t)V);
}

static int fp8_setup(eng_model *m, int mode, const char *tmp, int V, char *err, size_t errlen)
{
    char json[4400];
    qt_config *c = NULL;
    eng_fp8_opts o;
    int32_t cal[2][32];
    const int32_t *seqs[2] = {cal[0], cal[1]};
    size_t lens[2] = {32, 32};
    int rc;

    /* MEASURE from the start; the measurement file path is never written */
    snprintf(json, sizeof(json), "{\"mode\": \"MEASURE\", \"dump_stats_path\": \"%s/measure\"}",
             tmp);
    if ((rc = qt_config_parse(&c, json, "bench config", err, errlen)) < 0)
        return rc;
    eng_fp8_opts_default(&o);
    o.wscale = ENG_FP8_W_MINMAX_CHANNEL;
    o.act = mode == M_FP8 ? ENG_FP8_ACT_NONE
          : g_opt.w8a8_static ? ENG_FP8_ACT_STATIC : ENG_FP8_ACT_DYNAMIC;
    random_ids(cal[0], 32, V, 777);
    random_ids(cal[1], 32, V, 778);
    rc = eng_fp8_prepare(m, c, NULL, &o, err, errlen);
    qt_config_free(c);
    if (rc == 0 && eng_fp8_mode(m) != QT_MODE_MEASURE)
        rc = eng_fp8_set_mode(m, QT_MODE_MEASURE, err, errlen);
    /* Not eng_fp8_calibrate: it computes no logits, so lm_head would
     * never be measured and would stay in BF16 under QUANTIZE. */
    float *lg = rc == 0 ? malloc((size_t)V * sizeof(float)) : NULL;
    if (rc == 0 && lg == NULL)
        rc = -ENOMEM;
    for (int i = 0; rc == 0 && i < 2; i++) {
        eng_seq *s = eng_seq_new(m, lens[i]);
        eng_batch_item it = {s, seqs[i], lens[i], false, lg};
        rc = s != NULL ? eng_forward(m, &it, 1, err, errlen) : -ENOMEM;
        eng_seq_free(s);
    }
    free(lg);
    if (rc == 0)
        rc = eng_fp8_set_mode(m, QT_MODE_QUANTIZE, err, errlen);
    return rc;
}

static double time_prefill(eng_model *m, eng_seq *s, const int32_t *ids, size_t n, float *lg,
                           char *err, size_t errlen)
{
    eng_batch_item it = {s, ids, n, false, lg};
    eng_seq_truncate(s, 0);
    double t0 = now_s();
    if (eng_forward(m, &it, 1, err, errlen) < 0)
        return -1;
    return (double)n / (now_s() - t0);
}

/* nb sequences, DEC_PROMPT-token prompts (untimed), then steps of one
 * token each, logits for every sequence. */
static double time_decode(eng_model *m, eng_seq **s, size_t nb, const int32_t *ids, float *lg,
                          size_t V, char *err, size_t errlen)
{
    eng_batch_item it[B8];
    int steps = g_opt.steps;
    for (size_t b = 0; b < nb; b++) {
        eng_seq_truncate(s[b], 0);
        it[b] = (eng_batch_item){s[b], ids + b * 64, DEC_PROMPT, false, lg + b * V};
    }
    if (eng_forward(m, it, nb, err, errlen) < 0)
        return -1;
    double t0 = now_s();
    for (int k = 0; k < steps; k++) {
        for (size_t b = 0; b < nb; b++)
            it[b] = (eng_batch_item){s[b], ids + b * 64 + DEC_PROMPT + k, 1, false, lg + b * V};
        if (eng_forward(m, it, nb, err, errlen) < 0)
            return -1;
    }
    return (double)(steps * nb) / (now_s() - t0);
}

static void run_config(const shape_def *sh, int mode, const char *dir, const char *tmp,
                       cfg_result *res)
{
    eng_model_opts o;
    eng_model *m = NULL;
    eng_seq *s[B8] = {0}, *sp = NULL;
    int32_t *ids = NULL;
    uint8_t *bw_buf = NULL;
    float *lg = NULL;
    size_t V = (size_t)sh->vocab, n_ids = B8 * 64 + 512;
    char *err = res->err;
    size_t el = sizeof(res->err);
    double t0 = now_s();
    int reps = g_opt.reps;

    eng_model_opts_default(&o);
    o.n_threads = 0;   /* the OpenMP default: omp_set_num_threads picks per figure */
    if (eng_model_load(&m, dir, &o, err, el) < 0)
        goto out;
    res->load_s = now_s() - t0;
    t0 = now_s();
    if ((mode == M_FP8 || mode == M_W8A8) && fp8_setup(m, mode, tmp, sh->vocab, err, el) < 0)
        goto out;
    res->quant_s = now_s() - t0;
    ids = malloc(n_ids * sizeof(int32_t));
    lg = malloc(B8 * V * sizeof(float));
    sp = eng_seq_new(m, 512 + 8);
    for (int b = 0; b < B8; b++)
        s[b] = eng_seq_new(m, DEC_PROMPT + (size_t)g_opt.steps + 8);
    if (ids == NULL || lg == NULL || sp == NULL || s[B8 - 1] == NULL) {
        snprintf(err, el, "out of memory");
        goto out;
    }
    random_ids(ids, n_ids, sh->vocab, 4242);
    size_t bw_len = g_opt.bw_mb << 20;
    for (int ti = 0; ti < g_opt.n_threads; ti++) {
        double t[N_PHASES][64], bw[64];
        int nr = reps < 64 ? reps : 64;
        omp_set_num_threads(g_opt.threads[ti]);
        /* warm-up: scratch for 512 rows, pages touched, OpenMP team up */
        if (time_prefill(m, sp, ids + B8 * 64, 512, lg, err, el) < 0 ||
            time_decode(m, s, B8, ids, lg, V, err, el) < 0)
            goto out;
        if (bw_buf == NULL) {
            /* the peak RSS of the configuration: load, quantization and
             * every phase's buffers, before the bandwidth buffer */
            struct rusage ru;
            getrusage(RUSAGE_SELF, &ru);
            res->rss_kb = ru.ru_maxrss;
            if (posix_memalign((void **)&bw_buf, 2u << 20, bw_len) != 0) {
                bw_buf = NULL;
                snprintf(err, el, "out of memory");
                goto out;
            }
            (void)madvise(bw_buf, bw_len, MADV_HUGEPAGE);
            memset(bw_buf, 1, bw_len);
        }
        /* phases interleaved per repetition: the host is shared */
        for (int r = 0; r < nr; r++) {
            double b3[3];
            for (int k = 0; k < 3; k++)
                b3[k] = read_once(bw_buf, bw_len, g_opt.threads[ti], 4);
            bw[r] = median(b3, 3);
            if ((t[P_DECODE][r] = time_decode(m, s, 1, ids, lg, V, err, el)) < 0 ||
                (t[P_DECODE8][r] = time_decode(m, s, B8, ids, lg, V, err, el)) < 0 ||
                (t[P_PRE128][r] = time_prefill(m, sp, ids + B8 * 64, 128, lg, err, el)) < 0 ||
                (t[P_PRE512][r] = time_prefill(m, sp, ids + B8 * 64, 512, lg, err, el)) < 0)
                goto out;
            fprintf(stderr, "  %s %s threads=%d rep %d: read4 %.1f GB/s, decode %.2f b8 %.2f "
                    "p128 %.1f p512 %.1f tok/s\n", sh->name, kModeName[mode], g_opt.threads[ti],
                    r, bw[r], t[P_DECODE][r], t[P_DECODE8][r], t[P_PRE128][r], t[P_PRE512][r]);
        }
        for (int p = 0; p < N_PHASES; p++)
            res->tps[ti][p] = median(t[p], nr);
        res->rd4[ti] = median(bw, nr);
    }
    res->ok = 1;
out:
    for (int b = 0; b < B8; b++)
        eng_seq_free(s[b]);
    eng_seq_free(sp);
    free(ids);
    free(lg);
    free(bw_buf);
    eng_model_free(m);
}

/* Runs fn(ctx, out) in a forked child and copies its out[size] back
 * through a pipe; *rss_kb is the child's peak RSS.  Everything that opens
 * an OpenMP team runs in a child: libgomp's thread pool does not survive
 * fork, so the parent never starts one.  -ECHILD when the child died
 * before writing (out is then zeroed). */
static int in_child(void (*fn)(const void *ctx, void *out), const void *ctx, void *out,
                    size_t size, long *rss_kb)
{
    int fd[2], status;
    struct rusage ru;
    pid_t pid;
    ssize_t got = 0, r;

    memset(out, 0, size);
    if (getenv("FP8D_BENCH_INPROC") != NULL) {   /* debugging: no fork, no RSS */
        fn(ctx, out);
        if (rss_kb != NULL)
            *rss_kb = 0;
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
    if (wait4(pid, &status, 0, &ru) < 0)
        return -errno;
    if (rss_kb != NULL)
        *rss_kb = ru.ru_maxrss;
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

typedef struct config_ctx {
    const shape_def *sh;
    int mode;
    const char *dir, *tmp;
} config_ctx;

static void config_child(const void *ctx, void *out)
{
    const config_ctx *c = ctx;
    run_config(c->sh, c->mode, c->dir, c->tmp, out);
}

typedef struct bw_result {
    int ok;
    double rd1[MAX_THREADS], rd4[MAX_THREADS];
} bw_result;

static void bw_child(const void *ctx, void *out)
{
    bw_result *b = out;
    (void)ctx;
    for (int ti = 0; ti < g_opt.n_threads; ti++)
        if (measure_bw(g_opt.threads[ti], &b->rd1[ti], &b->rd4[ti]) < 0)
            return;
    b->ok = 1;
}

/* ---- main -------------------------------------------------------------- */

static char g_tmp[4096];
static int g_tmp_made;

static void rm_tree(void)
{
    char cmd[4200];
    if (!g_tmp_made)
        return;
    /* our own mkdtemp folder: two model dirs of two files each */
    for (size_t i = 0; i < N_SHAPES; i++)
        for (int f32 = 0; f32 < 2; f32++) {
            snprintf(cmd, sizeof(cmd), "%s/%s-%s/model.safetensors", g_tmp, kShapes[i].name,
                     f32 ? "f32" : "bf16");
            unlink(cmd);
            snprintf(cmd, sizeof(cmd), "%s/%s-%s/model.safetensors.tmp", g_tmp,
                     kShapes[i].name, f32 ? "f32" : "bf16");
            unlink(cmd);
            snprintf(cmd, sizeof(cmd), "%s/%s-%s/config.json", g_tmp, kShapes[i].name,
                     f32 ? "f32" : "bf16");
            unlink(cmd);
            snprintf(cmd, sizeof(cmd), "%s/%s-%s", g_tmp, kShapes[i].name,
                     f32 ? "f32" : "bf16");
            rmdir(cmd);
        }
    rmdir(g_tmp);
}

static int ensure_model(const shape_def *sh, int f32, char *dir, size_t dlen)
{
    char probe[4300];
    struct stat st;
    snprintf(dir, dlen, "%s/%s-%s", g_tmp, sh->name, f32 ? "f32" : "bf16");
    snprintf(probe, sizeof(probe), "%s/model.safetensors", dir);
    if (stat(probe, &st) == 0)
        return 0;   /* FP8D_BENCH_KEEP: written by an earlier run */
    double t0 = now_s();
    int rc = write_model(sh, dir, f32);
    if (rc == 0)
        fprintf(stderr, "bench_model: wrote %s (%.1f s)\n", dir, now_s() - t0);
    return rc;
}

int main(void)
{
    double rd1[MAX_THREADS], rd4[MAX_THREADS];
    int status = 0;

    kn_log_set_level(KN_LOG_WARN);
    if (kn_init(NULL) < 0) {
        fprintf(stderr, "bench_model: kn_init failed\n");
        return 1;
    }
    parse_opts();
    norm_table_init();
    if (g_opt.keep != NULL) {
        snprintf(g_tmp, sizeof(g_tmp), "%s", g_opt.keep);
        if (mkdir(g_tmp, 0755) < 0 && errno != EEXIST) {
            perror(g_tmp);
            return 1;
        }
    } else {
        const char *base = getenv("FP8D_BENCH_DIR");
        if (base == NULL)
            base = getenv("TMPDIR");
        snprintf(g_tmp, sizeof(g_tmp), "%s/fp8d-bench-XXXXXX", base ? base : "/tmp");
        if (mkdtemp(g_tmp) == NULL) {
            perror(g_tmp);
            return 1;
        }
        g_tmp_made = 1;
        atexit(rm_tree);
    }
    printf("bench_model: models in %s%s; threads", g_tmp, g_opt.keep ? " (kept)" : "");
    for (int i = 0; i < g_opt.n_threads; i++)
        printf(" %d", g_opt.threads[i]);
    printf("; %d reps x %d decode steps; w8a8 activations %s; f32 %s\n", g_opt.reps,
           g_opt.steps, g_opt.w8a8_static ? "static (calibrated)" : "dynamic (per token)",
           g_opt.modes[M_F32] ? "on" : "off");

    for (size_t si = 0; si < N_SHAPES; si++) {
        const shape_def *sh = &kShapes[si];
        cfg_result res[N_MODES];
        long rss[N_MODES] = {0};
        int ran[N_MODES] = {0};
        char dir[2][4200];

        if (!g_opt.shapes[si])
            continue;
        /* bandwidth first, with no model resident */
        bw_result bw;
        if (in_child(bw_child, NULL, &bw, sizeof(bw), NULL) < 0 || !bw.ok) {
            fprintf(stderr, "bench_model: bandwidth measurement failed\n");
            return 1;
        }
        memcpy(rd1, bw.rd1, sizeof(rd1));
        memcpy(rd4, bw.rd4, sizeof(rd4));
        for (int mode = 0; mode < N_MODES; mode++) {
            int f32 = mode == M_F32;
            if (!g_opt.modes[mode])
                continue;
            if (ensure_model(sh, f32, dir[f32], sizeof(dir[f32])) < 0) {
                fprintf(stderr, "bench_model: cannot write %s: %s\n", dir[f32],
                        strerror(errno));
                return 1;
            }
            fprintf(stderr, "bench_model: %s %s\n", sh->name, kModeName[mode]);
            config_ctx cc = {sh, mode, dir[f32], g_tmp};
            int rc = in_child(config_child, &cc, &res[mode], sizeof(res[mode]), &rss[mode]);
            if (rc < 0 && rc != -ECHILD)
                return 1;
            if (rc == -ECHILD)
                snprintf(res[mode].err, sizeof(res[mode].err), "the child process died");
            ran[mode] = 1;
            if (res[mode].rss_kb > 0)
                rss[mode] = res[mode].rss_kb;   /* without the bandwidth buffer */
            if (!res[mode].ok) {
                fprintf(stderr, "bench_model: %s %s: %s\n", sh->name, kModeName[mode],
                        res[mode].err);
                status = 1;
            }
        }

        /* the table */
        printf("\n%s: hidden %d, %d layers, %d/%d heads, ffn %d, vocab %d, tied; "
               "decode reads %.0f MB (f32) / %.0f MB (bf16) / %.0f MB (fp8) per token\n",
               sh->name, sh->dim, sh->n_layers, sh->n_heads, sh->n_kv, sh->ffn, sh->vocab,
               mode_bytes(sh, M_F32) * 1e-6, mode_bytes(sh, M_BF16) * 1e-6,
               mode_bytes(sh, M_FP8) * 1e-6);
        for (int ti = 0; ti < g_opt.n_threads; ti++)
            printf("threads=%d before the shape: read %.1f GB/s, read4 %.1f GB/s: decode ceiling "
                   "f32 %.1f, bf16 %.1f, fp8 %.1f tokens/s\n", g_opt.threads[ti], rd1[ti],
                   rd4[ti], rd4[ti] * 1e9 / mode_bytes(sh, M_F32),
                   rd4[ti] * 1e9 / mode_bytes(sh, M_BF16), rd4[ti] * 1e9 / mode_bytes(sh, M_FP8));
        printf("%-9s %3s %6s %5s %6s | %8s %5s %5s | %8s %5s %5s | %8s %5s | %8s %5s\n",
               "mode", "thr", "RSS MB", "rd4", "ceil", "decode", "ceil", "/bf16", "dec-b8",
               "ceil", "/bf16", "pre128", "/bf16", "pre512", "/bf16");
        for (int ti = 0; ti < g_opt.n_threads; ti++)
            for (int mode = 0; mode < N_MODES; mode++) {
                if (!ran[mode] || !res[mode].ok)
                    continue;
                const double *x = res[mode].tps[ti];
                const double *bf = ran[M_BF16] && res[M_BF16].ok ? res[M_BF16].tps[ti] : NULL;
                double ceil1 = res[mode].rd4[ti] * 1e9 / mode_bytes(sh, mode);
                char rel[N_PHASES][16];
                for (int p = 0; p < N_PHASES; p++) {
                    if (bf != NULL)
                        snprintf(rel[p], sizeof(rel[p]), "%5.2f", x[p] / bf[p]);
                    else
                        snprintf(rel[p], sizeof(rel[p]), "%5s", "-");
                }
                printf("%-9s %3d %6ld %5.1f %6.1f | %8.2f %5.2f %s | %8.2f %5.2f %s | %8.1f %s | "
                       "%8.1f %s\n", kModeName[mode], g_opt.threads[ti], rss[mode] / 1024,
                       res[mode].rd4[ti], ceil1, x[P_DECODE],
                       x[P_DECODE] / ceil1, rel[P_DECODE], x[P_DECODE8],
                       x[P_DECODE8] / (B8 * ceil1), rel[P_DECODE8], x[P_PRE128], rel[P_PRE128],
                       x[P_PRE512], rel[P_PRE512]);
            }
        printf("(rd4: read4 GB/s measured between this configuration's repetitions; ceil "
               "(tokens/s) = rd4 / the mode's bytes per token, and the ratio to it; dec-b8: "
               "ceiling x8; /bf16: ratio to our bf16 mode; RSS: peak of the configuration's "
               "process)\n");
        for (int mode = 0; mode < N_MODES; mode++)
            if (ran[mode] && res[mode].ok)
                printf("%s %s: load %.1f s, fp8 quantize %.1f s\n", sh->name, kModeName[mode],
                       res[mode].load_s, res[mode].quant_s);
        for (int ti = 0; ti < g_opt.n_threads; ti++) {
            for (int mode = 0; mode < N_MODES; mode++) {
                if (!ran[mode] || !res[mode].ok)
                    continue;
                printf("BENCH-BW shape=%s mode=%s threads=%d read4_gbps=%.2f\n", sh->name,
                       kModeName[mode], g_opt.threads[ti], res[mode].rd4[ti]);
                double ceil1 = res[mode].rd4[ti] * 1e9 / mode_bytes(sh, mode);
                for (int p = 0; p < N_PHASES; p++) {
                    double v = res[mode].tps[ti][p];
                    printf("BENCH shape=%s mode=%s threads=%d phase=%s tokens_per_s=%.2f",
                           sh->name, kModeName[mode], g_opt.threads[ti], kPhaseName[p], v);
                    if (p == P_DECODE || p == P_DECODE8)
                        printf(" ceiling_ratio=%.3f", v / (ceil1 * (p == P_DECODE8 ? B8 : 1)));
                    printf("\n");
                }
                printf("BENCH-RSS shape=%s mode=%s peak_rss_mb=%ld\n", sh->name, kModeName[mode],
                       rss[mode] / 1024);
            }
        }
        fflush(stdout);
        /* the shape's models are not needed any more: free the disk */
        if (!g_opt.keep) {
            for (int f32 = 0; f32 < 2; f32++) {
                char p[4300];
                snprintf(p, sizeof(p), "%s/%s-%s/model.safetensors", g_tmp, sh->name,
                         f32 ? "f32" : "bf16");
                unlink(p);
            }
        }
    }
    return status;
}
