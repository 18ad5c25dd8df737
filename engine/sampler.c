/* sampler.c: next-token choice from logits: greedy, or temperature with
 * top-k, top-p and min-p filters (applied in that order, as the HF
 * warpers are), driven by a seeded xoshiro256** generator so that the
 * same params, seed and logits give the same ids on every run. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine-int.h"

struct eng_sampler {
    eng_sample_params p;
    size_t   n_vocab;
    uint64_t rng[4];
    int32_t *idx;      /* [n_vocab] candidate ids, best first */
    double  *prob;     /* [n_vocab] */
};

void eng_sample_params_default(eng_sample_params *p)
{
    memset(p, 0, sizeof(*p));
    p->temperature = 0.0f;
    p->top_k = 0;
    p->top_p = 1.0f;
    p->min_p = 0.0f;
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t next_u64(uint64_t *s)
{
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

eng_sampler *eng_sampler_new(const eng_sample_params *p, size_t n_vocab)
{
    eng_sampler *s;
    uint64_t x;

    if (p == NULL || n_vocab == 0 || isnan(p->temperature) || isnan(p->top_p) ||
        isnan(p->min_p) || p->temperature < 0 || p->top_p <= 0 || p->min_p < 0 || p->min_p > 1)
        return NULL;
    if ((s = calloc(1, sizeof(*s))) == NULL)
        return NULL;
    s->p = *p;
    s->n_vocab = n_vocab;
    x = p->seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix64(&x);
    s->idx = malloc(n_vocab * sizeof(*s->idx));
    s->prob = malloc(n_vocab * sizeof(*s->prob));
    if (s->idx == NULL || s->prob == NULL) {
        eng_sampler_free(s);
        return NULL;
    }
    return s;
}

void eng_sampler_free(eng_sampler *s)
{
    if (s == NULL)
        return;
    free(s->idx);
    free(s->prob);
    free(s);
}

static int32_t argmax(const float *x, size_t n)
{
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return (int32_t)best;
}

/* Descending logit, ties by smaller id: a total order, so runs agree. */
static int cmp_desc(const void *a, const void *b, void *ctx)
{
    const float *logits = ctx;
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    float x = logits[i], y = logits[j];
    if (x != y)
        return x > y ? -1 : 1;
    return (i > j) - (i < j);
}

/* Moves the k best ids (cmp_desc order) of idx[0..n) to idx[0..k), in no
 * particular order: quickselect, O(n) on average. */
static void select_top(int32_t *idx, size_t n, size_t k, const float *logits)
{
    size_t lo = 0, hi = n;           /* the k-th best lies in [lo, hi) */
    while (hi - lo > 1) {
        int32_t pivot = idx[lo + (hi - 1 - lo) / 2], t;   /* lower middle: j < hi - 1 */
        size_t i = lo, j = hi - 1;
        /* three-way-free Hoare partition around pivot */
        for (;;) {
            while (cmp_desc(&idx[i], &pivot, (void *)logits) < 0)
                i++;
            while (cmp_desc(&idx[j], &pivot, (void *)logits) > 0)
                j--;
            if (i >= j)
                break;
            t = idx[i];
            idx[i] = idx[j];
            idx[j] = t;
            i++;
            j--;
        }
        if (k - 1 <= j)
            hi = j + 1;
        else
            lo = j + 1;
    }
}

/* Candidate ids in idx[0..return): the top_k best (sorted, best first);
 * every id sorted when top-p needs the order; else every id in id order,
 * which spares a sort of the whole vocabulary for plain temperature and
 * min-p sampling. */
static size_t candidates(eng_sampler *s, const float *logits)
{
    const eng_sample_params *p = &s->p;
    size_t n = s->n_vocab;

    for (size_t i = 0; i < n; i++)
        s->idx[i] = (int32_t)i;
    if (p->top_k > 0 && (size_t)p->top_k < n) {
        select_top(s->idx, n, (size_t)p->top_k, logits);
        qsort_r(s->idx, (size_t)p->top_k, sizeof(*s->idx), cmp_desc, (void *)logits);
        return (size_t)p->top_k;
    }
    if (p->top_p < 1.0f)
        qsort_r(s->idx, n, sizeof(*s->idx), cmp_desc, (void *)logits);
    return n;
}

int32_t eng_sampler_sample(eng_sampler *s, const float *logits)
{
    const eng_sample_params *p = &s->p;
    size_t keep;
    double sum = 0.0, u, acc, mx = -INFINITY;

    if (p->temperature <= 0.0f)
        return argmax(logits, s->n_vocab);
    keep = candidates(s, logits);
    for (size_t i = 0; i < keep; i++)
        mx = logits[s->idx[i]] > mx ? logits[s->idx[i]] : mx;
    for (size_t i = 0; i < keep; i++) {
        s->prob[i] = exp(((double)logits[s->idx[i]] - mx) / p->temperature);
        sum += s->prob[i];
    }
    for (size_t i = 0; i < keep; i++)
        s->prob[i] /= sum;
    if (p->top_p < 1.0f) {       /* sorted here: smallest prefix whose mass reaches top_p */
        size_t k = 0;
        for (acc = 0.0; k < keep; k++) {
            acc += s->prob[k];
            if (acc >= p->top_p) {
                k++;
                break;
            }
        }
        keep = k > 0 ? k : 1;
    }
    if (p->min_p > 0.0f) {       /* p_max = 1/sum: the best candidate had exp(0) */
        double thr = p->min_p * (1.0 / sum);
        size_t k = 0;
        for (size_t i = 0; i < keep; i++)
            if (s->prob[i] >= thr) {
                s->idx[k] = s->idx[i];
                s->prob[k++] = s->prob[i];
            }
        keep = k > 0 ? k : 1;
    }
    sum = 0.0;
    for (size_t i = 0; i < keep; i++)
        sum += s->prob[i];
    u = (double)(next_u64(s->rng) >> 11) * 0x1.0p-53 * sum;
    acc = 0.0;
    for (size_t i = 0; i < keep; i++) {
        acc += s->prob[i];
        if (u < acc)
            return s->idx[i];
    }
    return s->idx[keep - 1];
}
