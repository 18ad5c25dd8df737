/* bench_fp8mm.c: FP8 weight products against the memory and compute
 * limits of this machine ('make bench').  In one run, with 1 and 2
 * threads:
 *  - read bandwidth: 1 stream and 4 concurrent streams (the 'read4' that
 *    bounds a GEMV, perf-anchors.md 1) over FP8D_BENCH_MB (default 1024)
 *    MiB;
 *  - GEMV (M = 1) at Llama-3.2-1B layer shapes, weights cycled through
 *    enough copies (>= FP8D_BENCH_MB / 2 MiB of FP8) that every call
 *    streams from DRAM: GB/s of weights, ratio to read4, and FP8 vs BF16
 *    (kn_math's packed kernel) speedup in matrices per second;
 *  - the same summed over the matrices one Llama-3.2-1B token reads:
 *    tokens/s of the weight products alone, against the ceiling
 *    read4 / bytes per token (its own bytes for BF16);
 *  - prefill GFLOP/s at M = 128 and 512 against a measured vdpbf16ps peak.
 * FP8D_BENCH_THREADS=1 skips the 2-thread figures (a quick run).
 * Threads split the output panels as the engine does (kn_fp8w_split),
 * with a barrier after each matrix as a forward pass needs.  Figures are
 * medians of 5 repetitions after a warm-up; printed, never asserted. */
#include "config.h"

#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "kernels/kernels.h"
#include "tests/bench/bm_hw.h"

#define REPS 5

static int g_max_threads = 2;   /* FP8D_BENCH_THREADS: 1 for a quick run */

/* Large buffers on 2 MiB boundaries with the huge page hint, as
 * kn_fp8w_new does for the FP8 codes, so that every figure pays the
 * same TLB costs.  Free with free(). */
static void *big_alloc(size_t size)
{
    void *p = NULL;
    size = (size + (2u << 20) - 1) / (2u << 20) * (2u << 20);
    if (posix_memalign(&p, 2u << 20, size) != 0)
        return NULL;
    (void)madvise(p, size, MADV_HUGEPAGE);
    return p;
}

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd32(void)
{
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return (uint32_t)((g_rng * 0x2545F4914F6CDD1Dull) >> 32);
}

/* ---- read bandwidth and peak (one-off target attributes, taken only
 * after __builtin_cpu_supports; style.md Part 2 section 8) ----------- */

__attribute__((target("avx512f"))) static uint64_t read_avx512(const uint8_t *p, size_t len,
                                                               int streams, size_t pf)
{
    __m512i acc[8];
    const int per = 8 / streams;   /* lines per stream per step */
    size_t part = len / (size_t)streams / 512 * 512;
    for (int i = 0; i < 8; i++)
        acc[i] = _mm512_setzero_si512();
    for (size_t off = 0; off < part; off += (size_t)per * 64)
        for (int s = 0; s < streams; s++)
            for (int j = 0; j < per; j++) {
                const uint8_t *q = p + (size_t)s * part + off + (size_t)j * 64;
                if (pf)
                    _mm_prefetch((const char *)q + pf, _MM_HINT_T0);
                acc[s * per + j] = _mm512_add_epi64(acc[s * per + j], _mm512_load_si512(q));
            }
    for (int i = 1; i < 8; i++)
        acc[0] = _mm512_add_epi64(acc[0], acc[i]);
    return (uint64_t)_mm512_reduce_add_epi64(acc[0]);
}

static volatile uint64_t g_sink;

/* GB/s of one pass reading buf with nth threads, each its own slice;
 * streams 1 or 4; pf: software prefetch distance (0: none). */
static double read_once(const uint8_t *buf, size_t len, int nth, int streams, size_t pf)
{
    double t0 = bm_now();
#pragma omp parallel num_threads(nth)
    {
        size_t sl = len / (size_t)nth / 4096 * 4096;
        g_sink += read_avx512(buf + sl * (size_t)omp_get_thread_num(), sl, streams, pf);
    }
    return (double)len / (bm_now() - t0) * 1e-9;
}

static double read_bw(const uint8_t *buf, size_t len, int nth, int streams, size_t pf)
{
    double t[REPS + 1];
    for (int r = 0; r <= REPS; r++)
        t[r] = read_once(buf, len, nth, streams, pf);
    return bm_median(t + 1, REPS);
}

/* ---- GEMV ----------------------------------------------------------- */

typedef struct shape {
    const char *name;
    size_t N, K;
} shape;

static const shape kShapes[] = {
    {"2048x2048", 2048, 2048},     /* q_proj, o_proj */
    {"512x2048", 512, 2048},       /* k_proj, v_proj */
    {"8192x2048", 8192, 2048},     /* gate, up */
    {"2048x8192", 2048, 8192},     /* down */
    {"128256x2048", 128256, 2048}, /* lm_head (tied embedding) */
};
/* Matrices of each shape read per token by Llama-3.2-1B: 16 layers of
 * q, o (2048x2048), k, v, gate, up, down, and the lm_head once. */
static const double kPerToken[] = {32, 32, 32, 16, 1};
#define N_SHAPES (sizeof(kShapes) / sizeof(kShapes[0]))

enum kind { K_FP8_F32, K_FP8_BF16, K_FP8_W8A8, K_BF16, N_KINDS };
static const char *const kKindName[] = {"fp8-f32", "fp8-bf16", "fp8-w8a8", "bf16-packed"};

typedef struct gemv_set {
    const shape *sh;
    size_t       copies;
    kn_fp8w    **w8;        /* [copies] */
    void       **wb;        /* [copies] kn_pack_weights BF16 */
    float       *x, *y;
    uint8_t     *xq;
    float        xs;
} gemv_set;

static int set_make(gemv_set *s, const shape *sh, size_t fp8_bytes)
{
    size_t nk = sh->N * sh->K;
    uint8_t *codes = malloc(nk);
    uint16_t *bf = malloc(nk * 2);
    float *scales = malloc(sh->N * sizeof(float));
    char err[200];

    memset(s, 0, sizeof(*s));
    s->sh = sh;
    s->copies = (fp8_bytes + nk - 1) / nk;
    s->w8 = calloc(s->copies, sizeof(*s->w8));
    s->wb = calloc(s->copies, sizeof(*s->wb));
    s->x = kn_alloc(sh->K * sizeof(float));
    s->xq = kn_alloc(sh->K);
    s->y = kn_alloc(sh->N * sizeof(float));
    if (!codes || !bf || !scales || !s->w8 || !s->wb || !s->x || !s->xq || !s->y)
        return -1;
    /* never zeros: E4M3 codes of N(0, ~0.02 * 448 / amax)-like spread */
    for (size_t i = 0; i < nk; i++) {
        uint8_t c = (uint8_t)(rnd32() % 0x70 + 0x08);
        codes[i] = (uint8_t)(c | (rnd32() & 0x80));
        bf[i] = (uint16_t)(0x3C00 + rnd32() % 0x300) | (uint16_t)(rnd32() & 0x8000);
    }
    for (size_t n = 0; n < sh->N; n++)
        scales[n] = 0.02f / 448.0f * (1.0f + (float)(rnd32() % 100) / 100.0f);
    for (size_t k = 0; k < sh->K; k++)
        s->x[k] = (float)((int)(rnd32() % 2001) - 1000) / 1000.0f;
    kn_fp8_act_quantize(s->xq, sh->K, &s->xs, s->x, sh->K, 1, sh->K, KN_FP8_E4M3, NULL);
    for (size_t c = 0; c < s->copies; c++) {
        if (kn_fp8w_new(&s->w8[c], codes, sh->N, sh->K, KN_FP8_E4M3, KN_FP8_SCALE_CHANNEL, scales,
                        err, sizeof(err)) < 0) {
            fprintf(stderr, "bench_fp8mm: %s\n", err);
            return -1;
        }
        if ((s->wb[c] = big_alloc(kn_packed_size(KN_W_BF16, sh->N, sh->K))) == NULL)
            return -1;
        kn_pack_weights(s->wb[c], bf, KN_W_BF16, sh->N, sh->K);
    }
    free(codes), free(bf), free(scales);
    return 0;
}

static void set_free(gemv_set *s)
{
    for (size_t c = 0; c < s->copies; c++) {
        kn_fp8w_free(s->w8[c]);
        free(s->wb[c]);
    }
    free(s->w8), free(s->wb);
    kn_free(s->x), kn_free(s->xq), kn_free(s->y);
}

/* One thread's share of one product of kind k on copy c. */
static void gemv_one(const gemv_set *s, const kn_fp8mm_ops *f, const kn_math_ops *mo, int k,
                     size_t c, int ith, int nth)
{
    const shape *sh = s->sh;
    size_t p0, p1;
    if (k == K_BF16) {
        size_t np = (sh->N + KN_PANEL - 1) / KN_PANEL;
        p0 = np * (size_t)ith / (size_t)nth, p1 = np * (size_t)(ith + 1) / (size_t)nth;
        mo->linear_packed(s->y, sh->N, s->x, sh->K, 1, s->wb[c], KN_W_BF16, sh->K, sh->N, p0, p1,
                          NULL);
        return;
    }
    kn_fp8w_split(s->w8[c], ith, nth, &p0, &p1);
    switch (k) {
    case K_FP8_F32: f->linear(s->y, sh->N, s->x, sh->K, 1, s->w8[c], p0, p1, NULL); break;
    case K_FP8_BF16: f->linear_bf16(s->y, sh->N, s->x, sh->K, 1, s->w8[c], p0, p1, NULL); break;
    default:
        f->linear_w8a8(s->y, sh->N, s->xq, sh->K, KN_FP8_E4M3, &s->xs, 1, s->w8[c], p0, p1, NULL);
        break;
    }
}

/* Seconds per matrix over one pass through all copies. */
static double gemv_pass(const gemv_set *s, const kn_fp8mm_ops *f, const kn_math_ops *mo, int k,
                        int nth)
{
    double t0 = bm_now();
#pragma omp parallel num_threads(nth)
    for (size_t c = 0; c < s->copies; c++) {
        gemv_one(s, f, mo, k, c, omp_get_thread_num(), nth);
#pragma omp barrier
    }
    return (bm_now() - t0) / (double)s->copies;
}

/* ---- prefill -------------------------------------------------------- */

static double prefill_gflops(const kn_fp8mm_ops *f, const kn_fp8w *w, const float *x,
                             const uint8_t *xq, const float *xs, float *y, size_t M, int nth,
                             bool w8)
{
    size_t N = kn_fp8w_rows(w), K = kn_fp8w_cols(w);
    void *scratch[2] = {NULL, NULL};
    double t[4];
    /* per-thread scratch allocated once, as the engine does at load */
    for (int i = 0; i < nth; i++)
        if ((scratch[i] = kn_alloc(kn_fp8mm_scratch_size(w))) == NULL)
            return 0.0;
    for (int r = 0; r < 4; r++) {
        double t0 = bm_now();
#pragma omp parallel num_threads(nth)
        {
            size_t p0, p1;
            int i = omp_get_thread_num();
            kn_fp8w_split(w, i, nth, &p0, &p1);
            if (w8)
                f->prefill_w8a8(y, N, xq, K, KN_FP8_E4M3, xs, M, w, p0, p1, NULL, scratch[i],
                                false);
            else
                f->prefill_bf16(y, N, x, K, M, w, p0, p1, NULL, scratch[i], false);
        }
        t[r] = 2.0 * (double)M * (double)N * (double)K / (bm_now() - t0) * 1e-9;
    }
    kn_free(scratch[0]), kn_free(scratch[1]);
    return bm_median(t + 1, 3);
}

static double prefill_bf16_packed(const kn_math_ops *mo, const void *wb, size_t N, size_t K,
                                  const float *x, float *y, size_t M, int nth)
{
    double t[4];
    size_t np = (N + KN_PANEL - 1) / KN_PANEL;
    for (int r = 0; r < 4; r++) {
        double t0 = bm_now();
#pragma omp parallel num_threads(nth)
        {
            int i = omp_get_thread_num();
            mo->linear_packed(y, N, x, K, M, wb, KN_W_BF16, K, N, np * (size_t)i / (size_t)nth,
                              np * (size_t)(i + 1) / (size_t)nth, NULL);
        }
        t[r] = 2.0 * (double)M * (double)N * (double)K / (bm_now() - t0) * 1e-9;
    }
    return bm_median(t + 1, 3);
}

static void bench_prefill(const kn_fp8mm_ops *f, const kn_math_ops *mo, const double peak[3])
{
    static const shape pre[] = {{"2048x2048", 2048, 2048}, {"8192x2048", 8192, 2048},
                                {"2048x8192", 2048, 8192}};
    static const size_t Ms[] = {128, 512};
    printf("\nprefill GFLOP/s (2*M*N*K / time; ratio to the measured vdpbf16ps peak)\n");
    printf("%-11s %4s %3s %14s %14s %14s\n", "shape", "M", "thr", "fp8-bf16", "fp8-w8a8",
           "bf16-packed");
    for (size_t s = 0; s < sizeof(pre) / sizeof(pre[0]); s++) {
        size_t N = pre[s].N, K = pre[s].K, Mmax = 512;
        uint8_t *codes = malloc(N * K), *xq = kn_alloc(Mmax * K);
        uint16_t *bf = malloc(N * K * 2);
        float *x = kn_alloc(Mmax * K * sizeof(float)), *y = kn_alloc(Mmax * N * sizeof(float));
        float *xs = malloc(Mmax * sizeof(float)), sc = 1.0f / 448;
        void *wb = kn_alloc(kn_packed_size(KN_W_BF16, N, K));
        kn_fp8w *w = NULL;
        if (!codes || !xq || !bf || !x || !y || !xs || !wb)
            return;
        for (size_t i = 0; i < N * K; i++) {
            codes[i] = (uint8_t)((rnd32() % 0x70 + 0x08) | (rnd32() & 0x80));
            bf[i] = (uint16_t)(0x3C00 + rnd32() % 0x300);
        }
        for (size_t i = 0; i < Mmax * K; i++)
            x[i] = (float)((int)(rnd32() % 2001) - 1000) / 1000.0f;
        kn_fp8_act_quantize(xq, K, xs, x, K, Mmax, K, KN_FP8_E4M3, NULL);
        kn_pack_weights(wb, bf, KN_W_BF16, N, K);
        if (kn_fp8w_new(&w, codes, N, K, KN_FP8_E4M3, KN_FP8_SCALE_TENSOR, &sc, NULL, 0) < 0)
            return;
        for (size_t mi = 0; mi < 2; mi++)
            for (int nth = 1; nth <= g_max_threads; nth++) {
                size_t M = Ms[mi];
                double g[3] = {prefill_gflops(f, w, x, xq, xs, y, M, nth, false),
                               prefill_gflops(f, w, x, xq, xs, y, M, nth, true),
                               prefill_bf16_packed(mo, wb, N, K, x, y, M, nth)};
                printf("%-11s %4zu %3d", pre[s].name, M, nth);
                for (int k = 0; k < 3; k++)
                    printf(" %7.1f (%3.0f%%)", g[k], 100.0 * g[k] / peak[nth]);
                printf("\n");
                static const char *const kn[] = {"prefill-fp8-bf16", "prefill-fp8-w8a8",
                                                 "prefill-bf16-packed"};
                for (int k = 0; k < 3; k++)
                    printf("BENCH kernel=%s shape=%s M=%zu threads=%d gflops=%.1f ratio=%.3f\n",
                           kn[k], pre[s].name, M, nth, g[k], g[k] / peak[nth]);
            }
        kn_fp8w_free(w);
        free(codes), free(bf), free(xs);
        kn_free(xq), kn_free(x), kn_free(y), kn_free(wb);
    }
}

int main(void)
{
    const char *mb_env = getenv("FP8D_BENCH_MB");
    size_t mb = mb_env != NULL && atoi(mb_env) > 0 ? (size_t)atoi(mb_env) : 1024;
    double rd[3] = {0}, rd4[3] = {0}, rdpf[3] = {0}, peak[3] = {0};

    kn_log_set_level(KN_LOG_WARN);
    if (kn_init(NULL) < 0)
        return 1;
    if (getenv("FP8D_BENCH_THREADS") != NULL && atoi(getenv("FP8D_BENCH_THREADS")) == 1)
        g_max_threads = 1;
    const kn_fp8mm_ops *f = kn_fp8mm_select(NULL);
    const kn_math_ops *mo = kn_math_select(NULL);
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bf16") ||
        strcmp(f->name, "avx512") != 0) {
        printf("SKIP bench_fp8mm: needs AVX-512 BF16 (fp8mm variant here: %s)\n", f->name);
        return 0;
    }
    printf("bench_fp8mm: fp8mm=%s math=%s, buffers %zu MiB\n", f->name, mo->name, mb);

    uint8_t *buf = big_alloc(mb << 20);
    if (buf == NULL)
        return 1;
    memset(buf, 1, mb << 20);
    for (int nth = 1; nth <= g_max_threads; nth++) {
        rd[nth] = read_bw(buf, mb << 20, nth, 1, 0);
        rd4[nth] = read_bw(buf, mb << 20, nth, 4, 0);
        rdpf[nth] = read_bw(buf, mb << 20, nth, 1, 4096);
        peak[nth] = bm_peak_bf16(nth);
        printf("threads=%d read %.1f GB/s, read4 %.1f GB/s, read+prefetch %.1f GB/s, "
               "vdpbf16ps peak %.0f GFLOP/s\n", nth, rd[nth], rd4[nth], rdpf[nth], peak[nth]);
        printf("BENCH kernel=read threads=%d gbps=%.2f ratio=1\n", nth, rd[nth]);
        printf("BENCH kernel=read4 threads=%d gbps=%.2f ratio=1\n", nth, rd4[nth]);
        printf("BENCH kernel=read-prefetch threads=%d gbps=%.2f ratio=1\n", nth, rdpf[nth]);
        printf("BENCH kernel=peak-bf16 threads=%d gflops=%.1f ratio=1\n", nth, peak[nth]);
    }

    printf("\nGEMV M=1: GB/s of weights (ratio to read4 measured interleaved with the same\n"
           "repetitions: the 'rd4' column); speedup = BF16 time / FP8 (bf16 path) time\n");
    printf("%-12s %3s %5s %5s %15s %15s %15s %15s %6s\n", "shape", "thr", "cpy", "rd4",
           kKindName[0], kKindName[1], kKindName[2], kKindName[3], "fp8/bf16");
    double tok_t[3][N_KINDS] = {{0}}, tok_bw[3] = {0}, tok_bytes = 0;
    for (size_t s = 0; s < N_SHAPES; s++) {
        gemv_set set;
        if (set_make(&set, &kShapes[s], (mb << 20) / 2) < 0) {
            fprintf(stderr, "bench_fp8mm: out of memory for %s\n", kShapes[s].name);
            return 1;
        }
        for (int nth = 1; nth <= g_max_threads; nth++) {
            double t[N_KINDS], gb[N_KINDS], tr[N_KINDS][REPS + 1], r4[REPS + 1], bw;
            double nk = (double)kShapes[s].N * (double)kShapes[s].K;
            /* interleaved: the host is shared, bandwidth drifts (perf-anchors.md) */
            for (int r = 0; r <= REPS; r++) {
                r4[r] = read_once(buf, mb << 20, nth, 4, 0);
                for (int k = 0; k < N_KINDS; k++)
                    tr[k][r] = gemv_pass(&set, f, mo, k, nth);
            }
            bw = bm_median(r4 + 1, REPS);
            for (int k = 0; k < N_KINDS; k++) {
                t[k] = bm_median(tr[k] + 1, REPS);
                gb[k] = nk * (k == K_BF16 ? 2.0 : 1.0) / t[k] * 1e-9;
            }
            printf("%-12s %3d %5zu %5.1f", kShapes[s].name, nth, set.copies, bw);
            for (int k = 0; k < N_KINDS; k++)
                printf(" %7.1f (%4.0f%%)", gb[k], 100.0 * gb[k] / bw);
            printf(" %6.2f\n", t[K_BF16] / t[K_FP8_BF16]);
            for (int k = 0; k < N_KINDS; k++)
                tok_t[nth][k] += kPerToken[s] * t[k];
            /* the ceiling below uses the bandwidth averaged over the
             * shapes, weighted by the bytes each contributes */
            tok_bw[nth] += kPerToken[s] * nk / (bw * 1e9);   /* seconds */
            if (nth == 1)
                tok_bytes += kPerToken[s] * nk;
            for (int k = 0; k < N_KINDS; k++)
                printf("BENCH kernel=gemv-%s shape=%s threads=%d gbps=%.2f ratio=%.3f "
                       "speedup_vs_bf16=%.2f\n",
                       kKindName[k], kShapes[s].name, nth, gb[k], gb[k] / bw,
                       t[K_BF16] / t[k]);
        }
        set_free(&set);
    }
    free(buf);
    printf("\nLlama-3.2-1B matrices per token (weights only, %.0f M FP8 bytes): tokens/s, "
           "ratio to the FP8 ceiling (read4 / bytes), speedup vs bf16-packed\n", tok_bytes * 1e-6);
    for (int nth = 1; nth <= g_max_threads; nth++) {
        double ceil_fp8 = 1.0 / tok_bw[nth];   /* tokens/s at the measured read4 */
        printf("threads=%d ceiling %.1f tok/s:", nth, ceil_fp8);
        for (int k = 0; k < N_KINDS; k++) {
            double tps = 1.0 / tok_t[nth][k];
            double ceil_k = k == K_BF16 ? ceil_fp8 / 2 : ceil_fp8;
            printf("  %s %.1f (%.0f%%, x%.2f)", kKindName[k], tps, 100.0 * tps / ceil_k,
                   tok_t[nth][K_BF16] / tok_t[nth][k]);
            printf("%s", k == N_KINDS - 1 ? "\n" : "");
        }
        for (int k = 0; k < N_KINDS; k++)
            printf("BENCH kernel=tokens-%s shape=llama-3.2-1b threads=%d tokens_per_s=%.2f "
                   "ratio=%.3f speedup_vs_bf16=%.2f\n",
                   kKindName[k], nth, 1.0 / tok_t[nth][k],
                   (1.0 / tok_t[nth][k]) / (k == K_BF16 ? ceil_fp8 / 2 : ceil_fp8),
                   tok_t[nth][K_BF16] / tok_t[nth][k]);
    }
    bench_prefill(f, mo, peak);
    return 0;
}
