/* fp8_export.c: a QUANTIZE model written as a Hugging Face directory
 * (model-formats.md §3.8): compressed-tensors "float-quantized" (FP8
 * weights, weight_scale per channel [N,1] or tensor [1], static
 * input_scale [1], k/v scales with the FP8 KV cache, the ignore list) or
 * block-wise "fp8" (128x128 weight_scale_inv, dynamic activations);
 * every other tensor copied byte for byte; config.json with
 * quantization_config; the source's other files copied; and our state
 * (fp8_state.c) so that loading the export restores the same numerics. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "engine/fp8-int.h"
#include "engine/st_write.h"

/* Buffers the writer borrows until it has written. */
typedef struct bufs {
    void  **p;
    size_t  n;
} bufs;

static void *keep(bufs *b, void *p)
{
    void **np;
    if (p == NULL || (np = realloc(b->p, (b->n + 1) * sizeof(*np))) == NULL) {
        free(p);
        return NULL;
    }
    b->p = np;
    np[b->n++] = p;
    return p;
}

static void bufs_free(bufs *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->p[i]);
    free(b->p);
}

static bool quantized(const eng_linear *l)
{
    const eng_fp8lin *fl = l->fp8;
    return fl != NULL && fl->w8 != NULL;
}

/* Whether tensor name belongs to a quantized Linear or to the KV scales
 * (they are written from the state in memory, not copied). */
static bool replaced(const eng_model *m, const char *name)
{
    static const char *const sfx[] = {".weight", ".weight_scale", ".weight_scale_inv",
                                      ".input_scale", ".activation_scale"};
    for (size_t i = 0; i < m->n_linears; i++) {
        const eng_linear *l = m->linears[i];
        size_t n = strlen(l->name);
        if (!quantized(l) || strncmp(name, l->name, n) != 0)
            continue;
        for (size_t j = 0; j < sizeof(sfx) / sizeof(*sfx); j++)
            if (strcmp(name + n, sfx[j]) == 0)
                return true;
    }
    const char *p = strstr(name, ".self_attn.");
    return p != NULL && (strcmp(p, ".self_attn.k_scale") == 0 ||
                         strcmp(p, ".self_attn.v_scale") == 0 ||
                         strcmp(p, ".self_attn.kv_scale") == 0);
}

static float fp8_block_amax(const float *w, size_t K, size_t r0, size_t r1, size_t c0, size_t c1)
{
    float a = 0.0f;
    for (size_t r = r0; r < r1; r++)
        for (size_t c = c0; c < c1; c++)
            a = fabsf(w[r * K + c]) > a ? fabsf(w[r * K + c]) : a;
    return a;
}

/* Block layout: 128x128 scales amax / 448 from the high-precision weight
 * (1.0 for an all-zero block, §3.1's guard). */
static int add_block(eng_stw *w, bufs *b, const eng_model *m, const eng_linear *l, char *err,
                     size_t errlen)
{
    size_t N = (size_t)l->n_out, K = (size_t)l->n_in, bn = (N + 127) / 128, bk = (K + 127) / 128;
    float *hp;
    uint8_t *codes;
    float *s;
    char name[160];
    int rc;

    if ((rc = eng__linear_widen(m, l, &hp, err, errlen)) < 0)
        return rc;
    codes = keep(b, malloc(N * K));
    s = keep(b, malloc(bn * bk * sizeof(float)));
    if (codes == NULL || s == NULL) {
        free(hp);
        return -ENOMEM;
    }
    for (size_t i = 0; i < bn; i++)
        for (size_t j = 0; j < bk; j++) {
            size_t r1 = (i + 1) * 128 < N ? (i + 1) * 128 : N, c1 = (j + 1) * 128 < K ? (j + 1) * 128 : K;
            float a = fp8_block_amax(hp, K, i * 128, r1, j * 128, c1);
            s[i * bk + j] = a > 0.0f ? a / 448.0f : 1.0f;
            for (size_t r = i * 128; r < r1; r++)
                kn_active()->f32_to_fp8(codes + r * K + j * 128, hp + r * K + j * 128,
                                        c1 - j * 128, KN_FP8_E4M3, s[i * bk + j],
                                        KN_FP8_DIVIDE | KN_FP8_SATURATE);
        }
    free(hp);
    snprintf(name, sizeof(name), "%s.weight", l->name);
    if ((rc = eng_stw_add(w, name, ENG_DT_F8_E4M3, 2, (int64_t[]){(int64_t)N, (int64_t)K}, codes,
                          N * K)) < 0)
        goto fail;
    snprintf(name, sizeof(name), "%s.weight_scale_inv", l->name);
    if ((rc = eng_stw_add(w, name, ENG_DT_F32, 2, (int64_t[]){(int64_t)bn, (int64_t)bk}, s,
                          bn * bk * sizeof(float))) < 0)
        goto fail;
    return 0;
fail:
    kn_errf(err, errlen, "export: tensor %s: %s", name, strerror(-rc));
    return rc;
}

static int add_ct(eng_stw *w, bufs *b, const eng_model *m, const eng_linear *l, char *err,
                  size_t errlen)
{
    const eng_fp8lin *fl = l->fp8;
    size_t N = (size_t)l->n_out, K = (size_t)l->n_in;
    kn_fp8_scale_kind kind = kn_fp8w_scale_kind(fl->w8);
    size_t ns = kn_fp8_scale_count(kind, N, K);
    uint8_t *codes = keep(b, malloc(N * K));
    float *s = keep(b, malloc(ns * sizeof(float)));
    char name[160];
    int rc;

    if (codes == NULL || s == NULL)
        return -ENOMEM;
    if (kind == KN_FP8_SCALE_BLOCK) {
        kn_errf(err, errlen, "export: %s has 128x128 block scales; export it with the block "
                "layout", l->name);
        return -EINVAL;
    }
    kn_fp8w_unpack(fl->w8, codes);
    memcpy(s, kn_fp8w_scales(fl->w8), ns * sizeof(float));
    for (size_t i = 0; i < ns; i++)
        if (!isfinite(s[i]) || !(s[i] > 0.0f)) {
            kn_errf(err, errlen, "export: %s: weight scale %zu = %g is not finite and positive",
                    l->name, i, (double)s[i]);
            return -EINVAL;
        }
    snprintf(name, sizeof(name), "%s.weight", l->name);
    rc = eng_stw_add(w, name, kn_fp8w_format(fl->w8) == KN_FP8_E5M2 ? ENG_DT_F8_E5M2
                                                                      : ENG_DT_F8_E4M3,
                     2, (int64_t[]){(int64_t)N, (int64_t)K}, codes, N * K);
    if (rc == 0) {
        snprintf(name, sizeof(name), "%s.weight_scale", l->name);
        if (kind == KN_FP8_SCALE_CHANNEL)
            rc = eng_stw_add(w, name, ENG_DT_F32, 2, (int64_t[]){(int64_t)N, 1}, s,
                             N * sizeof(float));
        else
            rc = eng_stw_add(w, name, ENG_DT_F32, 1, (int64_t[]){1}, s, sizeof(float));
    }
    if (rc == 0 && m->fp8->opts.act == ENG_FP8_ACT_STATIC && fl->in_scale > 0.0f) {
        snprintf(name, sizeof(name), "%s.input_scale", l->name);
        rc = eng_stw_add(w, name, ENG_DT_F32, 1, (int64_t[]){1}, &fl->in_scale, sizeof(float));
    }
    if (rc < 0)
        kn_errf(err, errlen, "export: tensor %s: %s", name, strerror(-rc));
    return rc;
}

/* quantization_config for what was written. */
static json_t *qconfig_json(const eng_model *m, bool block, kn_fp8_scale_kind kind,
                            bool any_static)
{
    const eng_fp8 *f = m->fp8;
    json_t *q = json_object(), *ign = json_array();

    for (size_t i = 0; i < m->n_linears; i++)
        if (!quantized(m->linears[i]))
            json_array_append_new(ign, json_string(m->linears[i]->name));
    if (block) {
        json_object_set_new(q, "quant_method", json_string("fp8"));
        json_object_set_new(q, "fmt", json_string("e4m3"));
        json_object_set_new(q, "activation_scheme", json_string("dynamic"));
        json_object_set_new(q, "weight_block_size", json_pack("[ii]", 128, 128));
        json_object_set_new(q, "modules_to_not_convert", ign);
        return q;
    }
    json_t *wt = json_pack("{s:n, s:n, s:b, s:n, s:i, s:s, s:o, s:s, s:b, s:s}", "actorder",
                           "block_structure", "dynamic", 0, "group_size", "num_bits", 8,
                           "observer", "minmax", "observer_kwargs", json_object(), "strategy",
                           kind == KN_FP8_SCALE_CHANNEL ? "channel" : "tensor", "symmetric", 1,
                           "type", "float");
    json_t *act = json_null();
    if (f->opts.act == ENG_FP8_ACT_DYNAMIC)
        act = json_pack("{s:n, s:n, s:b, s:n, s:i, s:n, s:o, s:s, s:b, s:s}", "actorder",
                        "block_structure", "dynamic", 1, "group_size", "num_bits", 8,
                        "observer", "observer_kwargs", json_object(), "strategy", "token",
                        "symmetric", 1, "type", "float");
    else if (any_static)
        act = json_pack("{s:n, s:n, s:b, s:n, s:i, s:s, s:o, s:s, s:b, s:s}", "actorder",
                        "block_structure", "dynamic", 0, "group_size", "num_bits", 8,
                        "observer", "minmax", "observer_kwargs", json_object(), "strategy",
                        "tensor", "symmetric", 1, "type", "float");
    json_object_set_new(q, "config_groups",
                        json_pack("{s:{s:o, s:n, s:[s], s:o}}", "group_0", "input_activations",
                                  act, "output_activations", "targets", "Linear", "weights",
                                  wt));
    json_object_set_new(q, "format", json_string("float-quantized"));
    json_object_set_new(q, "ignore", ign);
    json_object_set_new(q, "kv_cache_scheme",
                        f->opts.kv_fp8 ? json_pack("{s:i, s:s, s:s, s:b, s:b}", "num_bits", 8,
                                                   "type", "float", "strategy", "tensor",
                                                   "dynamic", 0, "symmetric", 1)
                                       : json_null());
    json_object_set_new(q, "quant_method", json_string("compressed-tensors"));
    json_object_set_new(q, "quantization_status", json_string("compressed"));
    return q;
}

static int copy_file(const char *from, const char *to, char *err, size_t errlen)
{
    FILE *a = fopen(from, "rb"), *b = NULL;
    char buf[65536];
    size_t n;
    int rc = 0;

    if (a == NULL || (b = fopen(to, "wb")) == NULL) {
        rc = -errno;
        kn_errf(err, errlen, "export: copy %s -> %s: %s", from, to, strerror(errno));
        if (a)
            fclose(a);
        return rc;
    }
    while ((n = fread(buf, 1, sizeof(buf), a)) > 0)
        if (fwrite(buf, 1, n, b) != n) {
            rc = -EIO;
            kn_errf(err, errlen, "export: write %s failed", to);
            break;
        }
    fclose(a);
    if (fclose(b) != 0 && rc == 0)
        rc = -EIO;
    return rc;
}

/* Tokenizer, generation config, chat template...: everything but the
 * weights, config.json and our own state. */
static int copy_others(const char *src, const char *dst, char *err, size_t errlen)
{
    DIR *d = opendir(src);
    struct dirent *e;
    int rc = 0;

    if (d == NULL) {
        kn_errf(err, errlen, "export: %s: %s", src, strerror(errno));
        return -errno;
    }
    while (rc == 0 && (e = readdir(d)) != NULL) {
        char a[PATH_MAX], b[PATH_MAX];
        struct stat st;
        size_t n = strlen(e->d_name);
        if (e->d_name[0] == '.' || strcmp(e->d_name, "config.json") == 0 ||
            (n > 12 && strcmp(e->d_name + n - 12, ".safetensors") == 0) ||
            strcmp(e->d_name, "model.safetensors.index.json") == 0 ||
            strncmp(e->d_name, "fp8d_", 5) == 0)
            continue;
        snprintf(a, sizeof(a), "%s/%s", src, e->d_name);
        snprintf(b, sizeof(b), "%s/%s", dst, e->d_name);
        if (stat(a, &st) == 0 && S_ISREG(st.st_mode))
            rc = copy_file(a, b, err, errlen);
    }
    closedir(d);
    return rc;
}

int eng_fp8_export(eng_model *m, const char *src_dir, const char *out_dir, bool block,
                   char *err, size_t errlen)
{
    eng_fp8 *f = m->fp8;
    eng_stw *w = NULL;
    bufs b = {0};
    char path[PATH_MAX];
    json_t *cfg = NULL;
    json_error_t je;
    kn_fp8_scale_kind kind = KN_FP8_SCALE_TENSOR;
    bool have_kind = false, any_static = false;
    int rc;

    if (f == NULL || f->mode != QT_MODE_QUANTIZE) {
        kn_errf(err, errlen, "export: the model must be in QUANTIZE mode");
        return QT_E_MODE;
    }
    if (block && f->fmt != KN_FP8_E4M3) {
        kn_errf(err, errlen, "export: the block-wise fp8 layout is E4M3 only");
        return -EINVAL;
    }
    /* The tensors copied as they are are read from the mapping. */
    if ((rc = eng__st_check_all(m->st, err, errlen)) < 0)
        return rc;
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST) {
        kn_errf(err, errlen, "export: %s: %s", out_dir, strerror(errno));
        return -errno;
    }
    if ((w = eng_stw_new()) == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < eng_st_count(m->st); i++) {
        const eng_tensor *t = eng_st_at(m->st, i);
        if (replaced(m, t->name))
            continue;
        if ((rc = eng_stw_add(w, t->name, t->dtype, t->n_dims, t->shape, t->data, t->size)) < 0) {
            kn_errf(err, errlen, "export: tensor %s: %s", t->name, strerror(-rc));
            goto out;
        }
    }
    for (size_t i = 0; i < m->n_linears; i++) {
        const eng_linear *l = m->linears[i];
        const eng_fp8lin *fl = l->fp8;
        if (!quantized(l))
            continue;
        if (block) {
            rc = add_block(w, &b, m, l, err, errlen);
        } else {
            kn_fp8_scale_kind k = kn_fp8w_scale_kind(fl->w8);
            if (have_kind && k != kind) {
                kn_errf(err, errlen, "export: %s has %s weight scales, earlier modules %s: "
                        "compressed-tensors holds one strategy per group", l->name,
                        k == KN_FP8_SCALE_CHANNEL ? "per-channel" : "per-tensor",
                        kind == KN_FP8_SCALE_CHANNEL ? "per-channel" : "per-tensor");
                rc = -EINVAL;
                goto out;
            }
            kind = k;
            have_kind = true;
            any_static |= f->opts.act == ENG_FP8_ACT_STATIC && fl->in_scale > 0.0f;
            rc = add_ct(w, &b, m, l, err, errlen);
        }
        if (rc < 0)
            goto out;
    }
    if (f->opts.kv_fp8 && !block)
        for (int i = 0; i < m->cfg.n_layers; i++) {
            char name[96];
            snprintf(name, sizeof(name), "model.layers.%d.self_attn.k_scale", i);
            if ((rc = eng_stw_add(w, name, ENG_DT_F32, 1, (int64_t[]){1}, &f->k_scale[i], 4)) < 0)
                goto out;
            snprintf(name, sizeof(name), "model.layers.%d.self_attn.v_scale", i);
            if ((rc = eng_stw_add(w, name, ENG_DT_F32, 1, (int64_t[]){1}, &f->v_scale[i], 4)) < 0)
                goto out;
        }
    if (f->fmt == KN_FP8_E5M2 && !block)
        ENG_LOG(KN_LOG_WARN, "export: E5M2 weights: other loaders read compressed-tensors "
                "8-bit float as E4M3; fp8d reads the tensor dtype");
    eng_stw_meta(w, "fp8d", block ? "block-wise fp8 128x128, dynamic activations"
                                  : "compressed-tensors float-quantized");
    snprintf(path, sizeof(path), "%s/model.safetensors", out_dir);
    if ((rc = eng_stw_write(w, path, err, errlen)) < 0)
        goto out;
    snprintf(path, sizeof(path), "%s/config.json", src_dir);
    if ((cfg = json_load_file(path, JSON_PRESERVE_ORDER, &je)) == NULL) {
        kn_errf(err, errlen, "%s: %s", path, je.text);
        rc = ENG_E_FORMAT;
        goto out;
    }
    json_object_del(cfg, "compression_config");
    /* A quantized lm_head tied to the embedding is written as its own FP8
     * tensor beside the embedding: the export is untied, or a loader
     * would use the embedding and find lm_head's tensors unused. */
    if (m->cfg.tie_embeddings && quantized(&m->lm_head))
        json_object_set_new(cfg, "tie_word_embeddings", json_false());
    json_object_set_new(cfg, "quantization_config", qconfig_json(m, block, kind, any_static));
    snprintf(path, sizeof(path), "%s/config.json", out_dir);
    if (json_dump_file(cfg, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0) {
        kn_errf(err, errlen, "export: cannot write %s", path);
        rc = -EIO;
        goto out;
    }
    if ((rc = copy_others(src_dir, out_dir, err, errlen)) < 0)
        goto out;
    /* Our state describes the compressed-tensors numerics; the block
     * layout requantizes, so it carries none. */
    if (!block) {
        snprintf(path, sizeof(path), "%s/fp8d_state.json", out_dir);
        rc = eng__fp8_state_save(m, path, err, errlen);
    }
out:
    /* the tensors written as they are were read through the mapping */
    eng__st_release_all(m->st);
    json_decref(cfg);
    eng_stw_free(w);
    bufs_free(&b);
    eng__heap_trim();
    return rc;
}
