/* bm_shape.c: the two model shapes of the benchmark (the published
 * config.json of Qwen2.5-0.5B and Llama-3.2-1B), the bytes a decode step
 * reads and the FLOPs a prefill does at each, and the RNG of the random
 * models and ids. */
#include "config.h"

#include <stdlib.h>

#include "tests/bench/bm.h"

/* tok_bpe + tok_special: the ids of the real tokenizers (Qwen2.5: 151643
 * BPE entries and 22 added tokens, the embedding padded to 151936;
 * Llama 3: 128000 and 256 specials); bos/eos as in their config.json. */
const bm_shape bm_shapes[] = {
    {"qwen2.5-0.5b", "Qwen2ForCausalLM", "qwen2", 896, 24, 14, 2, 4864, 151936, 32768,
     1000000.0, 1e-6, 1, 0, 151643, 22, 151643, 151643},
    {"llama-3.2-1b", "LlamaForCausalLM", "llama", 2048, 16, 32, 8, 8192, 128256, 131072,
     500000.0, 1e-5, 0, 1, 128000, 256, 128000, 128001},
};
const size_t bm_n_shapes = sizeof(bm_shapes) / sizeof(bm_shapes[0]);

const char *const bm_mode_name[BM_N_MODES] = {"f32", "bf16", "fp8", "fp8-w8a8"};
const char *const bm_phase_name[BM_N_PHASES] = {"decode", "decode-b8", "prefill128",
                                                "prefill512"};

/* Weights and output rows of one layer's seven Linears. */
static void layer_counts(const bm_shape *sh, double *weights, double *rows)
{
    double hs = sh->dim / sh->n_heads, qd = sh->n_heads * hs, kvd = sh->n_kv * hs;
    double d = sh->dim, f = sh->ffn;
    *weights = qd * d + 2 * kvd * d + d * qd + 3 * f * d;
    *rows = qd + 2 * kvd + d + 2 * f + d;
}

double bm_decode_bytes(const bm_shape *sh, int mode, int fp8_head)
{
    double lw, lr, head = (double)sh->vocab * sh->dim;
    layer_counts(sh, &lw, &lr);
    double w = sh->n_layers * lw, rows = sh->n_layers * lr;
    switch (mode) {
    case BM_F32:  return (w + head) * 4;
    case BM_BF16: return (w + head) * 2;
    default:      return w + rows * 4 + (fp8_head ? head + sh->vocab * 4.0 : head * 2);
    }
}

double bm_prefill_flops(const bm_shape *sh, size_t n)
{
    double lw, lr, hs = sh->dim / sh->n_heads, t = (double)n;
    double qkv = (sh->n_heads + 2.0 * sh->n_kv) * hs * sh->dim;
    layer_counts(sh, &lw, &lr);
    /* every layer but the last on every token; the last one's q, k and v
     * on every token, its o, MLP and attention on the last token only */
    return 2.0 * t * (sh->n_layers - 1) * lw + 2.0 * t * qkv + 2.0 * (lw - qkv) +
           2.0 * (double)sh->vocab * sh->dim +
           (sh->n_layers - 1.0) * sh->n_heads * 2.0 * hs * t * (t + 1) +
           sh->n_heads * 4.0 * hs * t;
}

/* xorshift64*: fast, seeded, good enough for weights and token ids. */
uint64_t bm_rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

void bm_random_ids(int32_t *ids, size_t n, int V, uint64_t seed)
{
    for (size_t i = 0; i < n; i++)
        ids[i] = (int32_t)(bm_rng_next(&seed) % (uint64_t)V);
}
