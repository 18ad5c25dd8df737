/* bench_codec.c: FP8 codec throughput ('make bench').
 * For each kernel variant and conversion: GB/s of memory traffic (bytes
 * read + bytes written, STREAM's way of counting, no write-allocate),
 * beside a plain read (1 stream, 8 zmm accumulators) and copy (memcpy)
 * bandwidth measured in the same run on the same buffers, interleaved
 * with the codec runs, and the ratio codec / read.  Buffers are
 * FP8D_BENCH_MB (default 1024) MiB of f32, far larger than the last-level
 * cache; the reference variant runs on 1/128 of that (it is compute bound
 * at well under 1 GB/s, so its figures say nothing about memory; its read
 * column is then measured on that smaller, partly cached slice).  1 and 2 threads: the bench splits each buffer
 * into per-thread slices (kernels never open parallel regions).
 * Each figure is the median of 5 timed repetitions after one warm-up.
 * Timings are printed, never asserted. */
#include "config.h"

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels.h"
#include "tests/bench/bm_hw.h"

#define REPS 5

typedef struct bench_bufs {
    float    *f32;   /* n floats; also the decode output */
    uint16_t *h16;   /* n halves/bf16 */
    uint8_t  *q;     /* n fp8 codes */
    float    *copy;  /* n floats: memcpy destination */
    size_t    n;
} bench_bufs;

/* Slice [lo, hi) of n for thread ith of nth, in multiples of 64 elements
 * so that no two threads share a cache line of the fp8 output. */
static void slice(size_t n, int ith, int nth, size_t *lo, size_t *hi)
{
    size_t blocks = (n + 63) / 64, per = (blocks + (size_t)nth - 1) / (size_t)nth;
    *lo = per * 64 * (size_t)ith;
    *hi = *lo + per * 64;
    if (*lo > n)
        *lo = n;
    if (*hi > n)
        *hi = n;
}

enum op {
    OP_READ, OP_COPY, OP_F32_E4M3, OP_F32_E5M2, OP_F32_E4M3_DIV, OP_BF16_E4M3, OP_F16_E4M3,
    OP_E4M3_F32, OP_E5M2_F32, OP_AMAX_F32, OP_AMAX_BF16, OP_F32_E4M3_AMAX, N_OPS
};
static const struct { const char *name; size_t in_bytes, out_bytes; } kOps[N_OPS] = {
    [OP_READ]         = {"read", 4, 0},
    [OP_COPY]         = {"copy (memcpy)", 4, 4},
    [OP_F32_E4M3]     = {"f32->e4m3 sat", 4, 1},
    [OP_F32_E5M2]     = {"f32->e5m2 sat", 4, 1},
    [OP_F32_E4M3_DIV] = {"f32/s->e4m3 sat", 4, 1},
    [OP_BF16_E4M3]    = {"bf16->e4m3 sat", 2, 1},
    [OP_F16_E4M3]     = {"f16->e4m3 sat", 2, 1},
    [OP_E4M3_F32]     = {"e4m3->f32 *s", 1, 4},
    [OP_E5M2_F32]     = {"e5m2->f32 *s", 1, 4},
    [OP_AMAX_F32]     = {"amax f32", 4, 0},
    [OP_AMAX_BF16]    = {"amax bf16", 2, 0},
    [OP_F32_E4M3_AMAX] = {"f32->e4m3+amax", 4, 1},
};

static volatile uint64_t g_sink; /* keeps the read loop and amax results alive */

/* The plain read, as perf-anchors.md 1 measures it: a 1-stream sum kept
 * in 8 independent zmm accumulators (xor here: no FP latency chain).
 * A one-off target attribute (style.md Part 2 section 8), taken only when
 * the CPU has AVX-512F; otherwise a portable 8-way loop. */
__attribute__((target("avx512f"))) static uint64_t read_sum_avx512(const float *p, size_t n)
{
    __m512i a[8];
    size_t i = 0;
    for (int k = 0; k < 8; k++)
        a[k] = _mm512_setzero_si512();
    for (; i + 128 <= n; i += 128)
        for (int k = 0; k < 8; k++)
            a[k] = _mm512_xor_si512(a[k], _mm512_loadu_si512((const void *)(p + i + 16 * (size_t)k)));
    for (int k = 1; k < 8; k++)
        a[0] = _mm512_xor_si512(a[0], a[k]);
    uint64_t r = (uint64_t)_mm512_reduce_or_epi64(a[0]);
    for (; i < n; i++) {
        uint32_t u;
        memcpy(&u, p + i, sizeof(u));
        r ^= u;
    }
    return r;
}

static uint64_t read_sum_portable(const float *p, size_t n)
{
    const uint64_t *u = (const uint64_t *)p;
    uint64_t a[8] = {0};
    size_t m = n / 2, i = 0;
    for (; i + 8 <= m; i += 8)
        for (int k = 0; k < 8; k++)
            a[k] ^= u[i + (size_t)k];
    for (; i < m; i++)
        a[0] ^= u[i];
    return a[0] ^ a[1] ^ a[2] ^ a[3] ^ a[4] ^ a[5] ^ a[6] ^ a[7];
}

static int g_have_avx512f;

static uint64_t read_sum(const float *p, size_t n)
{
    return g_have_avx512f ? read_sum_avx512(p, n) : read_sum_portable(p, n);
}

static void run_slice(const kn_ops *ops, enum op op, bench_bufs *b, size_t lo, size_t hi)
{
    size_t n = hi - lo;
    size_t nan;
    switch (op) {
    case OP_READ:         g_sink += read_sum(b->f32 + lo, n); break;
    case OP_COPY:         memcpy(b->copy + lo, b->f32 + lo, n * sizeof(float)); break;
    case OP_F32_E4M3:     ops->f32_to_fp8(b->q + lo, b->f32 + lo, n, KN_FP8_E4M3, 0.5f, KN_FP8_SATURATE); break;
    case OP_F32_E5M2:     ops->f32_to_fp8(b->q + lo, b->f32 + lo, n, KN_FP8_E5M2, 0.5f, KN_FP8_SATURATE); break;
    case OP_F32_E4M3_DIV: ops->f32_to_fp8(b->q + lo, b->f32 + lo, n, KN_FP8_E4M3, 3.0f,
                                          KN_FP8_SATURATE | KN_FP8_DIVIDE); break;
    case OP_BF16_E4M3:    ops->bf16_to_fp8(b->q + lo, b->h16 + lo, n, KN_FP8_E4M3, 0.5f, KN_FP8_SATURATE); break;
    case OP_F16_E4M3:     ops->f16_to_fp8(b->q + lo, b->h16 + lo, n, KN_FP8_E4M3, 0.5f, KN_FP8_SATURATE); break;
    case OP_E4M3_F32:     ops->fp8_to_f32(b->copy + lo, b->q + lo, n, KN_FP8_E4M3, 2.0f); break;
    case OP_E5M2_F32:     ops->fp8_to_f32(b->copy + lo, b->q + lo, n, KN_FP8_E5M2, 2.0f); break;
    case OP_AMAX_F32:     g_sink += (uint64_t)ops->amax_f32(b->f32 + lo, n, &nan) + nan; break;
    case OP_AMAX_BF16:    g_sink += (uint64_t)ops->amax_bf16(b->h16 + lo, n, &nan) + nan; break;
    case OP_F32_E4M3_AMAX:
        g_sink += (uint64_t)ops->f32_to_fp8_amax(b->q + lo, b->f32 + lo, n, KN_FP8_E4M3, 0.5f,
                                                 KN_FP8_SATURATE, &nan) + nan;
        break;
    default:              break;
    }
}

static double time_once(const kn_ops *ops, enum op op, bench_bufs *b, size_t n, int nth)
{
    double t0 = bm_now();
#pragma omp parallel num_threads(nth)
    {
        size_t lo, hi;
        slice(n, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
        run_slice(ops, op, b, lo, hi);
    }
    return bm_now() - t0;
}

/* Median GB/s of op over n elements with nth threads, and in *read_gbs
 * the median read bandwidth over the same n elements, each read run
 * right before an op run: on a shared machine the load then hits both
 * alike and the ratio stays meaningful. */
static double measure(const kn_ops *ops, enum op op, bench_bufs *b, size_t n, int nth,
                      double *read_gbs)
{
    double t[REPS], tr[REPS];
    for (int r = -1; r < REPS; r++) {
        double dr = time_once(NULL, OP_READ, b, n, nth);
        double d = time_once(ops, op, b, n, nth);
        if (r >= 0) {
            tr[r] = dr;
            t[r] = d;
        }
    }
    *read_gbs = (double)n * (double)kOps[OP_READ].in_bytes / bm_median(tr, REPS) / 1e9;
    return (double)n * (double)(kOps[op].in_bytes + kOps[op].out_bytes) / bm_median(t, REPS) / 1e9;
}

/* Values an activation tensor could hold: sign * 2^U(-12, 10) with a
 * random mantissa; every 1000th a NaN so amax counts something. */
static void fill(bench_bufs *b)
{
    uint64_t s = 0x243F6A8885A308D3ull;
#pragma omp parallel for schedule(static) firstprivate(s)
    for (size_t i = 0; i < b->n; i++) {
        uint64_t z = s + i * 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 31)) * 0xBF58476D1CE4E5B9ull;
        z ^= z >> 29;
        float v = ldexpf(1.0f + (float)(z & 0xFFFFF) * 0x1p-20f, (int)((z >> 20) % 23) - 12);
        v = (z >> 63) ? -v : v;
        if (i % 1000 == 999)
            v = NAN;
        b->f32[i] = v;
        uint32_t bits;
        memcpy(&bits, &v, sizeof(bits));
        b->h16[i] = (uint16_t)(bits >> 16); /* bf16 by truncation; also a valid f16 pattern */
        b->q[i] = (uint8_t)z;
        b->copy[i] = 0.0f;
    }
}

int main(void)
{
    const char *mb_env = getenv("FP8D_BENCH_MB");
    size_t mb = mb_env != NULL ? strtoul(mb_env, NULL, 10) : 1024;
    bench_bufs b;

    if (mb < 16)
        mb = 16;
    kn_log_set_level(KN_LOG_WARN);
    g_have_avx512f = __builtin_cpu_supports("avx512f");
    if (kn_init(NULL) < 0) {
        fprintf(stderr, "bench_codec: kn_init failed\n");
        return 1;
    }
    b.n = mb * 1024 * 1024 / sizeof(float);
    b.f32 = kn_alloc(b.n * sizeof(float));
    b.copy = kn_alloc(b.n * sizeof(float));
    b.h16 = kn_alloc(b.n * sizeof(uint16_t));
    b.q = kn_alloc(b.n);
    if (b.f32 == NULL || b.copy == NULL || b.h16 == NULL || b.q == NULL) {
        fprintf(stderr, "bench_codec: cannot allocate %zu MiB (set FP8D_BENCH_MB lower)\n",
                mb * 2 + mb / 2 + mb / 4);
        return 1;
    }
    fill(&b);
    printf("FP8 codec bench: %zu Mi elements (f32 buffer %zu MiB), median of %d reps; "
           ""
           "GB/s = (bytes read + bytes written) / s, 1e9 bytes; read = 1-stream read GB/s "
           "measured just before each figure; ratio = GB/s / read\n",
           b.n >> 20, mb, REPS);
    printf("%-8s %-17s %7s %10s %8s %8s %8s\n", "variant", "conversion", "threads", "elements",
           "GB/s", "read", "ratio");
    for (int nth = 1; nth <= 2; nth++) {
        double rd, c = measure(NULL, OP_COPY, &b, b.n, nth, &rd);
        printf("%-8s %-17s %7d %10zu %8.1f %8.1f %7.2fx\n", "-", kOps[OP_COPY].name, nth, b.n, c,
               rd, c / rd);
    }
    for (int v = 0; v < kn_variant_count(); v++) {
        const kn_ops *ops = kn_variant(v);
        if (!kn_variant_usable(ops)) {
            printf("SKIP %s: not supported by this CPU\n", ops->name);
            continue;
        }
        size_t n = v == 0 ? b.n / 128 : b.n;
        for (int nth = 1; nth <= 2; nth++)
            for (int op = OP_F32_E4M3; op < N_OPS; op++) {
                double rd, g = measure(ops, (enum op)op, &b, n, nth, &rd);
                printf("%-8s %-17s %7d %10zu %8.1f %8.1f %7.2fx\n", ops->name, kOps[op].name, nth,
                       n, g, rd, g / rd);
            }
    }
    kn_free(b.f32);
    kn_free(b.copy);
    kn_free(b.h16);
    kn_free(b.q);
    return 0;
}
