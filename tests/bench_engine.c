/* bench_engine.c: prefill and decode tokens/s of the engine on a real model
 * ($FP8D_BENCH_MODEL, default $FP8D_SHARED_TESTDATA/models/shakespeare-small
 * and its -bf16 twin), with 1 and 2 threads and the fastest kn_math
 * variant (every usable one with FP8D_BENCH_REF=1).  Run by 'make bench'; asserts nothing (timings are not tests).
 * Prints one line per figure:
 *   BENCH model=<dir> kernels=<v> threads=<n> phase=<prefill128|prefill256|decode> tokens_per_s=<x>
 * Each figure is the median of 5 runs (decode: 64 steps after a 64-token
 * prompt).  Token ids are a fixed pseudo-random sequence. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/engine.h"

#define REPS 5

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double prefill_tps(eng_model *m, const int32_t *ids, size_t n, float *lg)
{
    double t[REPS];
    char err[256];
    eng_seq *s = eng_seq_new(m, n);
    for (int r = 0; r < REPS; r++) {
        eng_seq_truncate(s, 0);
        eng_batch_item it = {s, ids, n, false, lg};
        double t0 = now_s();
        if (eng_forward(m, &it, 1, err, sizeof(err)) < 0) {
            fprintf(stderr, "bench: %s\n", err);
            exit(1);
        }
        t[r] = now_s() - t0;
    }
    eng_seq_free(s);
    qsort(t, REPS, sizeof(double), cmp_d);
    return (double)n / t[REPS / 2];
}

static double decode_tps(eng_model *m, const int32_t *ids, float *lg)
{
    double t[REPS];
    char err[256];
    eng_seq *s = eng_seq_new(m, 128);
    for (int r = 0; r < REPS; r++) {
        eng_seq_truncate(s, 0);
        eng_batch_item it = {s, ids, 64, false, lg};
        if (eng_forward(m, &it, 1, err, sizeof(err)) < 0)
            exit(1);
        double t0 = now_s();
        for (int k = 0; k < 64; k++) {
            it = (eng_batch_item){s, &ids[64 + k], 1, false, lg};
            if (eng_forward(m, &it, 1, err, sizeof(err)) < 0)
                exit(1);
        }
        t[r] = now_s() - t0;
    }
    eng_seq_free(s);
    qsort(t, REPS, sizeof(double), cmp_d);
    return 64.0 / t[REPS / 2];
}

static int bench_dir(const char *dir)
{
    int32_t ids[256];
    unsigned x = 12345;
    char err[512] = "";
    const char *name = strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;

    for (int v = 0; v < kn_math_variant_count(); v++) {
        const kn_math_ops *ops = kn_math_variant(v);
        /* the reference is the specification, not a speed: FP8D_BENCH_REF=1 adds it */
        if (!kn_math_usable(ops) || (v == 0 && kn_math_variant_count() > 1 &&
                                     getenv("FP8D_BENCH_REF") == NULL))
            continue;
        for (int th = 1; th <= 2; th++) {
            eng_model_opts o;
            eng_model *m = NULL;
            eng_model_opts_default(&o);
            o.n_threads = th;
            o.kernels = ops->name;
            if (eng_model_load(&m, dir, &o, err, sizeof(err)) < 0) {
                fprintf(stderr, "bench: %s\n", err);
                return 1;
            }
            int V = eng_model_get_config(m)->vocab_size;
            float *lg = malloc((size_t)V * sizeof(float));
            for (int i = 0; i < 256; i++) {
                x = x * 1103515245u + 12345u;
                ids[i] = (int32_t)((x >> 8) % (unsigned)V);
            }
            double p128 = prefill_tps(m, ids, 128, lg), p256 = prefill_tps(m, ids, 256, lg);
            double dec = decode_tps(m, ids, lg);
            printf("BENCH model=%s kernels=%s threads=%d phase=prefill128 tokens_per_s=%.1f\n",
                   name, ops->name, th, p128);
            printf("BENCH model=%s kernels=%s threads=%d phase=prefill256 tokens_per_s=%.1f\n",
                   name, ops->name, th, p256);
            printf("BENCH model=%s kernels=%s threads=%d phase=decode tokens_per_s=%.1f\n",
                   name, ops->name, th, dec);
            fflush(stdout);
            free(lg);
            eng_model_free(m);
        }
    }
    return 0;
}

int main(void)
{
    const char *env = getenv("FP8D_BENCH_MODEL"), *shared = getenv("FP8D_SHARED_TESTDATA");
    char a[1024], b[1040];
    FILE *f;

    kn_log_set_level(KN_LOG_WARN);
    if (env != NULL)
        return bench_dir(env);
    snprintf(a, sizeof(a), "%s/models/shakespeare-small", shared ? shared : "../shared/testdata");
    snprintf(b, sizeof(b), "%s-bf16", a);
    char probe[1100];
    snprintf(probe, sizeof(probe), "%s/config.json", a);
    if ((f = fopen(probe, "r")) == NULL) {
        printf("SKIP: bench_engine: %s not found (set FP8D_BENCH_MODEL)\n", a);
        return 0;
    }
    fclose(f);
    return bench_dir(a) || bench_dir(b);
}
