/* model_config.c: config.json of LlamaForCausalLM, MistralForCausalLM,
 * Qwen2ForCausalLM and Qwen3ForCausalLM (model-formats.md §2.1, §2.4-2.6).
 * Every field that changes the forward pass is read; an architecture,
 * activation or RoPE type we do not implement is refused by name rather
 * than run wrongly. */
#include "config.h"

#include <errno.h>
#include <jansson.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/fp8-int.h"

static const struct {
    const char *cls, *type;
    eng_arch    arch;
} g_archs[] = {
    {"LlamaForCausalLM", "llama", ENG_ARCH_LLAMA},
    {"MistralForCausalLM", "mistral", ENG_ARCH_MISTRAL},
    {"Qwen2ForCausalLM", "qwen2", ENG_ARCH_QWEN2},
    {"Qwen3ForCausalLM", "qwen3", ENG_ARCH_QWEN3},
};

/* Reads a positive integer field; absent -> def (def < 0: required). */
static int get_int(const json_t *o, const char *key, long def, long max, int *out,
                   const char *path, char *err, size_t errlen)
{
    const json_t *v = json_object_get(o, key);
    if (v == NULL || json_is_null(v)) {
        if (def < 0) {
            kn_errf(err, errlen, "%s: required field \"%s\" is missing", path, key);
            return ENG_E_FORMAT;
        }
        *out = (int)def;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > max) {
        kn_errf(err, errlen, "%s: \"%s\" must be an integer in [1, %ld]", path, key, max);
        return ENG_E_FORMAT;
    }
    *out = (int)json_integer_value(v);
    return 0;
}

static int get_num(const json_t *o, const char *key, double def, double *out,
                   const char *path, char *err, size_t errlen)
{
    const json_t *v = json_object_get(o, key);
    if (v == NULL || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_number(v) || !isfinite(json_number_value(v))) {
        kn_errf(err, errlen, "%s: \"%s\" must be a finite number", path, key);
        return ENG_E_FORMAT;
    }
    *out = json_number_value(v);
    return 0;
}

static int get_bool(const json_t *o, const char *key, bool def, bool *out,
                    const char *path, char *err, size_t errlen)
{
    const json_t *v = json_object_get(o, key);
    if (v == NULL || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_boolean(v)) {
        kn_errf(err, errlen, "%s: \"%s\" must be true or false", path, key);
        return ENG_E_FORMAT;
    }
    *out = json_is_true(v);
    return 0;
}

static int parse_arch(eng_model_config *c, const json_t *root, const char *path,
                      char *err, size_t errlen)
{
    const json_t *archs = json_object_get(root, "architectures");
    const json_t *mt = json_object_get(root, "model_type");
    const char *cls = NULL, *type = json_is_string(mt) ? json_string_value(mt) : NULL;

    if (json_is_array(archs) && json_array_size(archs) > 0) {
        if (!json_is_string(json_array_get(archs, 0))) {
            kn_errf(err, errlen, "%s: architectures[0] is not a string", path);
            return ENG_E_FORMAT;
        }
        cls = json_string_value(json_array_get(archs, 0));
    }
    if (cls == NULL && type == NULL) {
        kn_errf(err, errlen, "%s: neither \"architectures\" nor \"model_type\" is given", path);
        return ENG_E_FORMAT;
    }
    for (size_t i = 0; i < sizeof(g_archs) / sizeof(g_archs[0]); i++)
        if ((cls != NULL && strcmp(cls, g_archs[i].cls) == 0) ||
            (cls == NULL && strcmp(type, g_archs[i].type) == 0)) {
            c->arch = g_archs[i].arch;
            snprintf(c->arch_name, sizeof(c->arch_name), "%s", g_archs[i].cls);
            return 0;
        }
    kn_errf(err, errlen, "%s: architecture \"%s\" is not supported (supported: LlamaForCausalLM, "
            "MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM)", path, cls ? cls : type);
    return ENG_E_UNSUPPORTED;
}

/* RoPE from rope_parameters (transformers 5) or rope_theta + rope_scaling. */
static int parse_rope(eng_model_config *c, const json_t *root, const char *path,
                      char *err, size_t errlen)
{
    const json_t *rp = json_object_get(root, "rope_parameters");
    const json_t *rs = json_object_get(root, "rope_scaling");
    const json_t *d = NULL, *t;
    const char *type = "default";
    double theta;
    int rc;

    if ((rc = get_num(root, "rope_theta", 10000.0, &theta, path, err, errlen)) < 0)
        return rc;
    if (rp != NULL && !json_is_null(rp)) {
        if (!json_is_object(rp)) {
            kn_errf(err, errlen, "%s: rope_parameters is not an object", path);
            return ENG_E_FORMAT;
        }
        if (json_object_get(rp, "full_attention") || json_object_get(rp, "sliding_attention")) {
            kn_errf(err, errlen, "%s: per-layer-type rope_parameters are not supported", path);
            return ENG_E_UNSUPPORTED;
        }
        d = rp;
        if ((rc = get_num(rp, "rope_theta", theta, &theta, path, err, errlen)) < 0)
            return rc;
    } else if (rs != NULL && !json_is_null(rs)) {
        if (!json_is_object(rs)) {
            kn_errf(err, errlen, "%s: rope_scaling is not an object", path);
            return ENG_E_FORMAT;
        }
        d = rs;
    }
    if (d != NULL) {
        t = json_object_get(d, "rope_type");
        if (t == NULL)
            t = json_object_get(d, "type");      /* older files */
        if (t != NULL && !json_is_string(t)) {
            kn_errf(err, errlen, "%s: rope type is not a string", path);
            return ENG_E_FORMAT;
        }
        if (t != NULL)
            type = json_string_value(t);
    }
    if (!(theta > 0)) {
        kn_errf(err, errlen, "%s: rope_theta must be positive", path);
        return ENG_E_FORMAT;
    }
    c->rope_theta = theta;
    if (strcmp(type, "default") == 0 || strcmp(type, "mrope") == 0)
        c->rope_type = ENG_ROPE_DEFAULT;
    else if (strcmp(type, "linear") == 0)
        c->rope_type = ENG_ROPE_LINEAR;
    else if (strcmp(type, "dynamic") == 0)
        c->rope_type = ENG_ROPE_DYNAMIC;
    else if (strcmp(type, "llama3") == 0)
        c->rope_type = ENG_ROPE_LLAMA3;
    else if (strcmp(type, "yarn") == 0)
        c->rope_type = ENG_ROPE_YARN;
    else {
        kn_errf(err, errlen, "%s: rope type \"%s\" is not supported (default, linear, dynamic, "
                "llama3, yarn)", path, type);
        return ENG_E_UNSUPPORTED;
    }
    if (c->rope_type == ENG_ROPE_DEFAULT)
        return 0;
    double orig;
    if ((rc = get_num(d, "factor", -1.0, &c->rope_factor, path, err, errlen)) < 0 ||
        (rc = get_num(d, "low_freq_factor", 1.0, &c->rope_low_freq, path, err, errlen)) < 0 ||
        (rc = get_num(d, "high_freq_factor", 4.0, &c->rope_high_freq, path, err, errlen)) < 0 ||
        (rc = get_num(d, "original_max_position_embeddings", c->max_pos, &orig, path, err,
                      errlen)) < 0 ||
        (rc = get_num(d, "beta_fast", 32.0, &c->rope_beta_fast, path, err, errlen)) < 0 ||
        (rc = get_num(d, "beta_slow", 1.0, &c->rope_beta_slow, path, err, errlen)) < 0 ||
        (rc = get_num(d, "attention_factor", -1.0, &c->rope_attn_factor, path, err, errlen)) < 0 ||
        (rc = get_num(d, "mscale", 0.0, &c->rope_mscale, path, err, errlen)) < 0 ||
        (rc = get_num(d, "mscale_all_dim", 0.0, &c->rope_mscale_all_dim, path, err, errlen)) < 0 ||
        (rc = get_bool(d, "truncate", true, &c->rope_truncate, path, err, errlen)) < 0)
        return rc;
    /* Checked before the cast: an out-of-range double to int is undefined. */
    if (!(orig >= 1 && orig <= (double)(1 << 24)) || orig != floor(orig)) {
        kn_errf(err, errlen, "%s: rope %s original_max_position_embeddings must be an integer "
                "in [1, %d]", path, type, 1 << 24);
        return ENG_E_FORMAT;
    }
    c->rope_orig_max_pos = (int)orig;
    if (c->rope_factor < 0 && c->rope_type == ENG_ROPE_YARN && orig > 0)
        c->rope_factor = (double)c->max_pos / orig;   /* current HF rule: only when absent */
    if (!(c->rope_factor > 0) || !(orig > 0) ||
        (c->rope_type == ENG_ROPE_LLAMA3 && !(c->rope_high_freq > c->rope_low_freq))) {
        kn_errf(err, errlen, "%s: rope %s needs factor > 0, original_max_position_embeddings > 0"
                " and high_freq_factor > low_freq_factor", path, type);
        return ENG_E_FORMAT;
    }
    return 0;
}

static int parse_window(eng_model_config *c, const json_t *root, const char *path,
                        char *err, size_t errlen)
{
    const json_t *lt = json_object_get(root, "layer_types");
    bool use = c->arch == ENG_ARCH_MISTRAL;
    int window = 0, mwl = c->n_layers;
    int rc;

    if ((c->layer_sliding = calloc((size_t)c->n_layers, 1)) == NULL)
        return -ENOMEM;
    if ((rc = get_int(root, "sliding_window", 0, 1 << 30, &window, path, err, errlen)) < 0)
        return rc;
    if (c->arch == ENG_ARCH_QWEN2 || c->arch == ENG_ARCH_QWEN3) {
        if ((rc = get_bool(root, "use_sliding_window", false, &use, path, err, errlen)) < 0 ||
            (rc = get_int(root, "max_window_layers", c->n_layers, 1 << 20, &mwl, path, err,
                          errlen)) < 0)
            return rc;
    } else if (c->arch == ENG_ARCH_LLAMA) {
        use = false;
    }
    if (lt != NULL && !json_is_null(lt)) {
        if (!json_is_array(lt) || json_array_size(lt) != (size_t)c->n_layers) {
            kn_errf(err, errlen, "%s: layer_types must list %d layers", path, c->n_layers);
            return ENG_E_FORMAT;
        }
        for (int i = 0; i < c->n_layers; i++) {
            const char *s = json_string_value(json_array_get(lt, (size_t)i));
            if (s == NULL || (strcmp(s, "full_attention") != 0 &&
                              strcmp(s, "sliding_attention") != 0)) {
                kn_errf(err, errlen, "%s: layer_types[%d] is not full_attention or "
                        "sliding_attention", path, i);
                return s == NULL ? ENG_E_FORMAT : ENG_E_UNSUPPORTED;
            }
            c->layer_sliding[i] = strcmp(s, "sliding_attention") == 0;
        }
    } else if (use && window > 0) {
        for (int i = 0; i < c->n_layers; i++)
            c->layer_sliding[i] = c->arch == ENG_ARCH_MISTRAL || i >= mwl;
    }
    c->sliding_window = window;
    for (int i = 0; i < c->n_layers; i++)
        if (c->layer_sliding[i] && window <= 0) {
            kn_errf(err, errlen, "%s: layer %d uses sliding attention but sliding_window is "
                    "not set", path, i);
            return ENG_E_FORMAT;
        }
    return 0;
}

static int parse_root(eng_model_config *c, const json_t *root, const char *path,
                      char *err, size_t errlen)
{
    const json_t *act = json_object_get(root, "hidden_act");
    const json_t *bos = json_object_get(root, "bos_token_id");
    double eps, prf;
    int rc;

    if ((rc = parse_arch(c, root, path, err, errlen)) < 0)
        return rc;
    if (act != NULL && !(json_is_string(act) && strcmp(json_string_value(act), "silu") == 0)) {
        kn_errf(err, errlen, "%s: hidden_act \"%s\" is not supported (silu only)", path,
                json_is_string(act) ? json_string_value(act) : "?");
        return ENG_E_UNSUPPORTED;
    }
    /* FP8 checkpoints (fp8_import.c reads the details at load); any
     * other quantization method is refused by name. */
    if (json_object_get(root, "quantization_config") != NULL &&
        !json_is_null(json_object_get(root, "quantization_config")) &&
        (rc = eng__qconfig_check(json_object_get(root, "quantization_config"), path, err,
                                 errlen)) < 0)
        return rc;
    if ((rc = get_int(root, "vocab_size", -1, 1 << 24, &c->vocab_size, path, err, errlen)) < 0 ||
        (rc = get_int(root, "hidden_size", -1, 1 << 16, &c->dim, path, err, errlen)) < 0 ||
        (rc = get_int(root, "intermediate_size", -1, 1 << 20, &c->hidden_dim, path, err, errlen)) < 0 ||
        (rc = get_int(root, "num_hidden_layers", -1, 1024, &c->n_layers, path, err, errlen)) < 0 ||
        (rc = get_int(root, "num_attention_heads", -1, 1024, &c->n_heads, path, err, errlen)) < 0 ||
        (rc = get_int(root, "num_key_value_heads", c->n_heads, 1024, &c->n_kv_heads, path, err,
                      errlen)) < 0 ||
        (rc = get_int(root, "max_position_embeddings", 2048, 1 << 24, &c->max_pos, path, err,
                      errlen)) < 0 ||
        (rc = get_int(root, "head_dim", c->arch == ENG_ARCH_QWEN3 ? 128 : c->dim / c->n_heads,
                      4096, &c->head_size, path, err, errlen)) < 0)
        return rc;
    if (c->head_size < 1) {   /* the default dim / n_heads rounds to 0 */
        kn_errf(err, errlen, "%s: hidden_size %d is smaller than num_attention_heads %d and "
                "head_dim is absent: head size would be 0", path, c->dim, c->n_heads);
        return ENG_E_FORMAT;
    }
    if (c->n_heads % c->n_kv_heads != 0) {
        kn_errf(err, errlen, "%s: num_attention_heads %d is not a multiple of "
                "num_key_value_heads %d", path, c->n_heads, c->n_kv_heads);
        return ENG_E_FORMAT;
    }
    if ((rc = get_num(root, "rms_norm_eps", 1e-6, &eps, path, err, errlen)) < 0 ||
        (rc = get_num(root, "partial_rotary_factor", 1.0, &prf, path, err, errlen)) < 0 ||
        (rc = get_bool(root, "tie_word_embeddings", false, &c->tie_embeddings, path, err,
                       errlen)) < 0 ||
        (rc = get_bool(root, "attention_bias", false, &c->attn_bias, path, err, errlen)) < 0 ||
        (rc = get_bool(root, "mlp_bias", false, &c->mlp_bias, path, err, errlen)) < 0)
        return rc;
    /* eps is used as a float: it must stay a normal, finite float. */
    if (!(eps >= FLT_MIN && eps <= 1.0) || !(prf > 0 && prf <= 1)) {
        kn_errf(err, errlen, "%s: rms_norm_eps must be in [%g, 1] and partial_rotary_factor "
                "in (0, 1]", path, (double)FLT_MIN);
        return ENG_E_FORMAT;
    }
    c->rms_eps = (float)eps;
    c->partial_rotary = (float)prf;
    c->attn_out_bias = c->attn_bias;
    if (c->arch == ENG_ARCH_QWEN2) {        /* hard-wired: q/k/v biased, o never */
        c->attn_bias = true;
        c->attn_out_bias = false;
    }
    if (c->arch != ENG_ARCH_LLAMA)
        c->mlp_bias = false;
    c->qk_norm = c->arch == ENG_ARCH_QWEN3;
    c->bos_id = json_is_integer(bos) ? (int32_t)json_integer_value(bos) : -1;
    if ((rc = parse_rope(c, root, path, err, errlen)) < 0)
        return rc;
    return parse_window(c, root, path, err, errlen);
}

int eng_model_config_parse(eng_model_config *cfg, const char *json, size_t len,
                           const char *path, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root;
    int rc;

    memset(cfg, 0, sizeof(*cfg));
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL || !json_is_object(root)) {
        kn_errf(err, errlen, "%s: %s (line %d)", path, root ? "not a JSON object" : jerr.text,
                jerr.line);
        json_decref(root);
        return ENG_E_FORMAT;
    }
    rc = parse_root(cfg, root, path, err, errlen);
    json_decref(root);
    if (rc < 0)
        eng_model_config_cleanup(cfg);
    return rc;
}

int eng_model_config_load(eng_model_config *cfg, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;
    int rc;

    memset(cfg, 0, sizeof(*cfg));
    if (f == NULL) {
        rc = -errno;
        kn_errf(err, errlen, "%s: %s", path, strerror(-rc));
        return rc;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || n > (1 << 24) ||
        fseek(f, 0, SEEK_SET) != 0) {
        kn_errf(err, errlen, "%s: unreadable or larger than 16 MiB", path);
        fclose(f);
        return ENG_E_FORMAT;
    }
    if ((buf = malloc((size_t)n + 1)) == NULL) {
        fclose(f);
        return -ENOMEM;
    }
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        kn_errf(err, errlen, "%s: short read", path);
        free(buf);
        fclose(f);
        return -EIO;
    }
    fclose(f);
    rc = eng_model_config_parse(cfg, buf, (size_t)n, path, err, errlen);
    free(buf);
    return rc;
}

void eng_model_config_cleanup(eng_model_config *cfg)
{
    if (cfg == NULL)
        return;
    free(cfg->layer_sliding);
    cfg->layer_sliding = NULL;
}
