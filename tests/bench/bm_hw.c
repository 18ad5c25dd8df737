/* bm_hw.c: this machine's limits as the benchmark states them beside its
 * figures: read bandwidth ('read4', as tests/bench_fp8mm.c measures it),
 * the vdpbf16ps compute peak, the CPU's name; and this process's resident
 * memory.  AVX-512 code is compiled per function (target attribute) and
 * run only after __builtin_cpu_supports says the CPU has it. */
#include "config.h"

#include <errno.h>
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "tests/bench/bm_hw.h"

double bm_now(void)
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

double bm_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Sums 8 vectors a step from `streams` places at once (four: the
 * 'read4' that bounds a GEMV, perf-anchors.md 1). */
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

/* Keeps the sums alive so the reads are not optimized away. */
static _Atomic uint64_t g_sink;

double bm_read_once(const uint8_t *buf, size_t len, int nth, int streams)
{
    int avx512 = __builtin_cpu_supports("avx512f");
    double t0 = bm_now();
#pragma omp parallel num_threads(nth)
    {
        size_t sl = len / (size_t)nth / 4096 * 4096;
        const uint8_t *p = buf + sl * (size_t)omp_get_thread_num();
        g_sink += avx512 ? read_avx512(p, sl, streams) : read_plain(p, sl);
    }
    return (double)len / (bm_now() - t0) * 1e-9;
}

uint8_t *bm_bw_buffer(size_t len)
{
    uint8_t *buf = NULL;
    if (posix_memalign((void **)&buf, 2u << 20, len) != 0)
        return NULL;
    (void)madvise(buf, len, MADV_HUGEPAGE);   /* a hint: without it, the same figures */
    memset(buf, 1, len);
    return buf;
}

int bm_measure_bw(int nth, size_t mb, double *rd1, double *rd4)
{
    size_t len = mb << 20;
    uint8_t *buf = bm_bw_buffer(len);
    double a[7], b[7];
    if (buf == NULL)
        return -ENOMEM;
    bm_read_once(buf, len, nth, 4);
    for (int r = 0; r < 7; r++) {
        a[r] = bm_read_once(buf, len, nth, 1);
        b[r] = bm_read_once(buf, len, nth, 4);
    }
    free(buf);
    *rd1 = bm_median(a, 7);
    *rd4 = bm_median(b, 7);
    return 0;
}

/* vdpbf16ps with 24 independent chains, registers only. */
__attribute__((target("avx512f,avx512bf16"))) static float peak_loop(long iters)
{
    __m512 acc[24];
    __m512bh a = (__m512bh)_mm512_set1_epi32(0x3F803F80);   /* bf16 pairs (1, 1) */
    __m512bh b = (__m512bh)_mm512_set1_epi32(0x3F003F00);   /* (0.5, 0.5) */
    for (int i = 0; i < 24; i++)
        acc[i] = _mm512_setzero_ps();
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 24
        for (int i = 0; i < 24; i++)
            acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
        __asm__ volatile("" : "+v"(a));   /* keep the loop from being folded */
    }
    for (int i = 1; i < 24; i++)
        acc[0] = _mm512_add_ps(acc[0], acc[i]);
    return _mm512_reduce_add_ps(acc[0]);
}

double bm_peak_bf16(int nth)
{
    const long iters = 2000000;   /* ~10 ms a pass: short enough to find a quiet slot */
    double best = 0;
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bf16"))
        return 0;
    for (int r = 0; r < 12; r++) {
        double t0 = bm_now(), g;
#pragma omp parallel num_threads(nth)
        g_sink += (uint64_t)peak_loop(iters);
        /* 24 chains x 16 lanes x 2 products x 2 FLOPs */
        g = (double)iters * 24 * 64 * nth / (bm_now() - t0) * 1e-9;
        /* a ceiling: the best repetition (another tenant only lowers
         * some, and a low peak would flatter every ratio); the first is
         * a warm-up like the others */
        best = g > best ? g : best;
    }
    return best;
}

void bm_cpu_name(char *buf, size_t len)
{
    char line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    const char *isa = __builtin_cpu_supports("avx512bf16") ? "AVX-512 BF16"
                    : __builtin_cpu_supports("avx512f") ? "AVX-512, no BF16" : "no AVX-512";
    snprintf(buf, len, "unknown (%s)", isa);
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        char *c = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && c != NULL) {
            c += 1 + strspn(c + 1, " \t");
            c[strcspn(c, "\n")] = '\0';
            snprintf(buf, len, "%s (%s)", c, isa);
            break;
        }
    }
    if (f != NULL)
        fclose(f);
}

int bm_mem_kb(long *rss_kb, long *hwm_kb)
{
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");
    int found = 0;
    if (f == NULL)
        return -errno;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "VmRSS: %ld", rss_kb) == 1 || sscanf(line, "VmHWM: %ld", hwm_kb) == 1)
            found++;
    }
    fclose(f);
    return found == 2 ? 0 : -ENOENT;
}
