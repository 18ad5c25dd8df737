/* fuzz_model_config.c: eng_model_config_parse on arbitrary bytes (the
 * input is the whole config.json).  On success every size the forward pass
 * divides by or allocates with must be at least 1 (a scaled RoPE's
 * original_max_position_embeddings too), heads must group evenly, the
 * floats must have survived their conversion, and layer_sliding, when
 * present, must hold n_layers entries (read here, so ASan sees a short
 * allocation). */
#include "config.h"

#include "engine/engine.h"
#include "tests/fuzz/fuzz_util.h"

#include <errno.h>
#include <math.h>

static void check_config(const eng_model_config *c)
{
    unsigned sum = 0;

    FUZZ_CHECK(c->vocab_size >= 1 && c->dim >= 1 && c->hidden_dim >= 1 && c->n_layers >= 1,
               "vocab %d dim %d hidden %d layers %d", c->vocab_size, c->dim, c->hidden_dim,
               c->n_layers);
    FUZZ_CHECK(c->n_heads >= 1 && c->n_kv_heads >= 1 && c->n_heads % c->n_kv_heads == 0,
               "heads %d kv_heads %d", c->n_heads, c->n_kv_heads);
    FUZZ_CHECK(c->head_size >= 1, "head_size %d (hidden_size %d, %d heads)", c->head_size,
               c->dim, c->n_heads);
    FUZZ_CHECK(c->max_pos >= 1, "max_position_embeddings %d", c->max_pos);
    FUZZ_CHECK(c->rms_eps > 0 && isfinite(c->rms_eps), "rms_eps %g", (double)c->rms_eps);
    FUZZ_CHECK(c->partial_rotary > 0 && c->partial_rotary <= 1, "partial_rotary %g",
               (double)c->partial_rotary);
    FUZZ_CHECK(isfinite(c->rope_theta), "rope_theta %g", c->rope_theta);
    FUZZ_CHECK(c->rope_type == ENG_ROPE_DEFAULT || c->rope_orig_max_pos >= 1,
               "rope type %d with original_max_position_embeddings %d", (int)c->rope_type,
               c->rope_orig_max_pos);
    if (c->layer_sliding != NULL)
        for (int i = 0; i < c->n_layers; i++)
            sum += c->layer_sliding[i];
    __asm__ volatile("" : : "r"(sum));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    eng_model_config cfg;
    char err[512] = "";
    int rc = eng_model_config_parse(&cfg, (const char *)data, size, "config.json", err,
                                    sizeof(err));

    if (rc == 0)
        check_config(&cfg);
    else
        FUZZ_CHECK(rc == -ENOMEM || err[0] != '\0', "rc %d with an empty error message", rc);
    eng_model_config_cleanup(&cfg);
    return 0;
}
