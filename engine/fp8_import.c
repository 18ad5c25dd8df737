/* fp8_import.c: FP8 checkpoints in (model-formats.md §3.7): which
 * quant_method values we accept, the module ignore lists, and per Linear
 * the FP8 weight with its scale tensor (weight_scale_inv, then
 * weight_scale), the static input_scale and the KV scales.  Granularity
 * comes from quantization_config and the scale's shape must agree with
 * it; only when the config says nothing is it inferred from the shape. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "engine/fp8-int.h"

static const char *str_of(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

int eng__qconfig_check(const json_t *qc, const char *path, char *err, size_t errlen)
{
    const char *meth = json_is_object(qc) ? str_of(qc, "quant_method") : NULL;

    if (meth == NULL) {
        kn_errf(err, errlen, "%s: quantization_config without a quant_method string is not "
                "supported (FP8 methods only: compressed-tensors, fp8, fbgemm_fp8)", path);
        return ENG_E_UNSUPPORTED;
    }
    if (strcmp(meth, "compressed-tensors") == 0) {
        const char *fmt = str_of(qc, "format");
        if (fmt == NULL || (strcmp(fmt, "float-quantized") != 0 &&
                            strcmp(fmt, "naive-quantized") != 0)) {
            kn_errf(err, errlen, "%s: quantization_config.format \"%s\" is not supported "
                    "(compressed-tensors float-quantized or naive-quantized FP8 only)", path,
                    fmt ? fmt : "(missing)");
            return ENG_E_UNSUPPORTED;
        }
        return 0;
    }
    if (strcmp(meth, "fp8") == 0 || strcmp(meth, "fbgemm_fp8") == 0)
        return 0;
    kn_errf(err, errlen, "%s: quantization_config.quant_method \"%s\" is not supported (FP8 "
            "methods only: compressed-tensors, fp8, fbgemm_fp8)", path, meth);
    return ENG_E_UNSUPPORTED;
}

static int add_ignores(eng_qconfig *q, const json_t *arr, const char *path, const char *field,
                       char *err, size_t errlen)
{
    size_t i;
    const json_t *v;

    if (arr == NULL || json_is_null(arr))
        return 0;
    if (!json_is_array(arr)) {
        kn_errf(err, errlen, "%s: quantization_config.%s is not a list", path, field);
        return ENG_E_FORMAT;
    }
    json_array_foreach(arr, i, v) {
        char **ni;
        if (!json_is_string(v)) {
            kn_errf(err, errlen, "%s: quantization_config.%s[%zu] is not a string", path,
                    field, i);
            return ENG_E_FORMAT;
        }
        if ((ni = realloc(q->ignore, (q->n_ignore + 1) * sizeof(*ni))) == NULL)
            return -ENOMEM;
        q->ignore = ni;
        if ((ni[q->n_ignore] = strdup(json_string_value(v))) == NULL)
            return -ENOMEM;
        q->n_ignore++;
    }
    return 0;
}

/* compressed-tensors: the group that targets Linear decides the weight
 * strategy and the activation scheme. */
static int parse_ct(eng_qconfig *q, const json_t *qc, const char *path, char *err, size_t errlen)
{
    const json_t *groups = json_object_get(qc, "config_groups"), *g;
    const char *gname;

    if (!json_is_object(groups)) {
        kn_errf(err, errlen, "%s: quantization_config.config_groups is missing", path);
        return ENG_E_FORMAT;
    }
    json_object_foreach((json_t *)groups, gname, g) {
        const json_t *w = json_object_get(g, "weights"), *a = json_object_get(g, "input_activations");
        const char *st;
        json_int_t nb = json_integer_value(json_object_get(w, "num_bits"));
        if (!json_is_object(w)) {
            kn_errf(err, errlen, "%s: quantization_config.config_groups.%s.weights is missing",
                    path, gname);
            return ENG_E_FORMAT;
        }
        if (nb != 8 || str_of(w, "type") == NULL || strcmp(str_of(w, "type"), "float") != 0) {
            kn_errf(err, errlen, "%s: quantization_config.config_groups.%s.weights: only 8-bit "
                    "float (FP8) is supported", path, gname);
            return ENG_E_UNSUPPORTED;
        }
        st = str_of(w, "strategy");
        if (st == NULL)
            st = json_integer_value(json_object_get(w, "group_size")) == -1 ? "channel" : "tensor";
        q->wkind_known = true;
        if (strcmp(st, "tensor") == 0)
            q->wkind = KN_FP8_SCALE_TENSOR;
        else if (strcmp(st, "channel") == 0)
            q->wkind = KN_FP8_SCALE_CHANNEL;
        else if (strcmp(st, "block") == 0)
            q->wkind = KN_FP8_SCALE_BLOCK;
        else {
            kn_errf(err, errlen, "%s: quantization_config.config_groups.%s.weights.strategy "
                    "\"%s\" is not supported (tensor, channel, block)", path, gname, st);
            return ENG_E_UNSUPPORTED;
        }
        if (json_is_object(a)) {
            if (json_is_true(json_object_get(a, "dynamic")))
                q->dynamic_act = true;
            else
                q->static_act = true;
        }
    }
    q->kv_scheme = json_is_object(json_object_get(qc, "kv_cache_scheme"));
    return add_ignores(q, json_object_get(qc, "ignore"), path, "ignore", err, errlen);
}

static int parse_fp8(eng_qconfig *q, const json_t *qc, const char *path, char *err, size_t errlen)
{
    const json_t *bs = json_object_get(qc, "weight_block_size");
    const char *as = str_of(qc, "activation_scheme");
    int rc;

    if (json_is_array(bs)) {
        if (json_array_size(bs) != 2 ||
            json_integer_value(json_array_get(bs, 0)) != KN_FP8W_BLOCK ||
            json_integer_value(json_array_get(bs, 1)) != KN_FP8W_BLOCK) {
            kn_errf(err, errlen, "%s: quantization_config.weight_block_size: only [128, 128] is "
                    "supported", path);
            return ENG_E_UNSUPPORTED;
        }
        q->wkind = KN_FP8_SCALE_BLOCK;
    } else {
        q->wkind = KN_FP8_SCALE_TENSOR;     /* legacy per-tensor (§3.5) */
    }
    q->wkind_known = true;
    if (as != NULL && strcmp(as, "static") == 0)
        q->static_act = true;
    else
        q->dynamic_act = true;
    if (str_of(qc, "fmt") != NULL && strcmp(str_of(qc, "fmt"), "e4m3") != 0) {
        kn_errf(err, errlen, "%s: quantization_config.fmt \"%s\" is not supported (e4m3)", path,
                str_of(qc, "fmt"));
        return ENG_E_UNSUPPORTED;
    }
    if ((rc = add_ignores(q, json_object_get(qc, "modules_to_not_convert"), path,
                          "modules_to_not_convert", err, errlen)) < 0)
        return rc;
    return add_ignores(q, json_object_get(qc, "ignored_layers"), path, "ignored_layers", err,
                       errlen);
}

int eng__qconfig_parse(eng_qconfig *q, const char *dir, char *err, size_t errlen)
{
    char path[PATH_MAX];
    json_error_t je;
    json_t *root, *qc;
    const char *meth;
    int rc = 0;

    memset(q, 0, sizeof(*q));
    snprintf(path, sizeof(path), "%s/config.json", dir);
    if ((root = json_load_file(path, 0, &je)) == NULL) {
        kn_errf(err, errlen, "%s: %s", path, je.text);
        return ENG_E_FORMAT;
    }
    qc = json_object_get(root, "quantization_config");
    if (qc == NULL)
        qc = json_object_get(root, "compression_config");
    if (qc == NULL || json_is_null(qc))
        goto out;
    if ((rc = eng__qconfig_check(qc, path, err, errlen)) < 0)
        goto out;
    meth = str_of(qc, "quant_method");
    if (strcmp(meth, "compressed-tensors") == 0) {
        q->method = ENG_QC_CT;
        rc = parse_ct(q, qc, path, err, errlen);
    } else if (strcmp(meth, "fp8") == 0) {
        q->method = ENG_QC_FP8;
        rc = parse_fp8(q, qc, path, err, errlen);
    } else {
        q->method = ENG_QC_FBGEMM;
        q->wkind = KN_FP8_SCALE_CHANNEL;
        q->wkind_known = true;
        q->dynamic_act = true;
        rc = add_ignores(q, json_object_get(qc, "modules_to_not_convert"), path,
                         "modules_to_not_convert", err, errlen);
    }
out:
    json_decref(root);
    if (rc < 0)
        eng__qconfig_cleanup(q);
    return rc;
}

void eng__qconfig_cleanup(eng_qconfig *q)
{
    for (size_t i = 0; i < q->n_ignore; i++)
        free(q->ignore[i]);
    free(q->ignore);
    q->ignore = NULL;
    q->n_ignore = 0;
}

/* "re:" entries are Python re.match: anchored at the start only. */
bool eng__qconfig_ignores(const eng_qconfig *q, const char *name)
{
    for (size_t i = 0; i < q->n_ignore; i++) {
        const char *e = q->ignore[i];
        if (strncmp(e, "re:", 3) == 0) {
            regex_t re;
            regmatch_t mt;
            bool hit;
            if (regcomp(&re, e + 3, REG_EXTENDED) != 0)
                continue;
            hit = regexec(&re, name, 1, &mt, 0) == 0 && mt.rm_so == 0;
            regfree(&re);
            if (hit)
                return true;
        } else if (strcmp(e, name) == 0) {
            return true;
        }
    }
    return false;
}

static const eng_tensor *find_mark(eng_model *m, bool *used, const char *name)
{
    const eng_tensor *t = eng_st_find(m->st, name);
    if (t != NULL)
        used[t - eng_st_at(m->st, 0)] = true;
    return t;
}

/* A scale tensor as f32 values (F32, BF16 or F16 accepted: §3.3). */
static int scale_values(const eng_tensor *t, float *dst, char *err, size_t errlen)
{
    if (t->dtype == ENG_DT_F32)
        memcpy(dst, t->data, t->n_elem * sizeof(float));
    else if (t->dtype == ENG_DT_BF16)
        kn_widen(dst, t->data, KN_W_BF16, t->n_elem);
    else if (t->dtype == ENG_DT_F16)
        kn_widen(dst, t->data, KN_W_F16, t->n_elem);
    else {
        kn_errf(err, errlen, "%s: tensor \"%s\": scale dtype %s is not supported (F32, BF16, "
                "F16)", t->file, t->name, eng_dtype_name(t->dtype));
        return ENG_E_UNSUPPORTED;
    }
    for (size_t i = 0; i < t->n_elem; i++)
        if (!isfinite(dst[i]) || !(dst[i] > 0.0f)) {
            kn_errf(err, errlen, "%s: tensor \"%s\": element %zu = %g is not a finite positive "
                    "scale", t->file, t->name, i, (double)dst[i]);
            return ENG_E_FORMAT;
        }
    return 0;
}

static const char *kind_name(kn_fp8_scale_kind k)
{
    return k == KN_FP8_SCALE_TENSOR ? "per-tensor" : k == KN_FP8_SCALE_CHANNEL ? "per-channel"
                                                                             : "128x128 block";
}

static bool shape_is(const eng_tensor *s, kn_fp8_scale_kind k, size_t N, size_t K)
{
    switch (k) {
    case KN_FP8_SCALE_TENSOR:
        return s->n_elem == 1 && s->n_dims <= 1;
    case KN_FP8_SCALE_CHANNEL:
        return s->n_dims == 2 && (size_t)s->shape[0] == N && s->shape[1] == 1;
    default:
        return s->n_dims == 2 && (size_t)s->shape[0] == (N + 127) / 128 &&
               (size_t)s->shape[1] == (K + 127) / 128;
    }
}

int eng__fp8_bind_linear(eng_model *m, eng_linear *l, const eng_tensor *t, bool *used,
                         char *err, size_t errlen)
{
    eng_fp8 *f;
    eng_fp8lin *fl;
    char name[160];
    const eng_tensor *st, *is;
    size_t N = (size_t)l->n_out, K = (size_t)l->n_in, ns;
    kn_fp8_scale_kind kind;
    kn_fp8_format fmt = t->dtype == ENG_DT_F8_E5M2 ? KN_FP8_E5M2 : KN_FP8_E4M3;
    float *sc = NULL;
    uint8_t *codes;
    int rc;

    if ((rc = eng__fp8_attach(m)) < 0)
        return rc;
    f = m->fp8;
    fl = &f->lins[m->n_linears];   /* bind_linear appends l after this */
    snprintf(name, sizeof(name), "%s.weight_scale_inv", l->name);
    if ((st = find_mark(m, used, name)) == NULL) {
        snprintf(name, sizeof(name), "%s.weight_scale", l->name);
        st = find_mark(m, used, name);
    }
    if (st == NULL) {
        kn_errf(err, errlen, "%s: tensor \"%s.weight\" is FP8 but neither %s.weight_scale_inv "
                "nor %s.weight_scale is present", t->file, l->name, l->name, l->name);
        return ENG_E_FORMAT;
    }
    if (f->qc.wkind_known) {
        kind = f->qc.wkind;
    } else {
        kind = st->n_elem == 1 ? KN_FP8_SCALE_TENSOR
             : shape_is(st, KN_FP8_SCALE_CHANNEL, N, K) ? KN_FP8_SCALE_CHANNEL
                                                        : KN_FP8_SCALE_BLOCK;
        ENG_LOG(KN_LOG_INFO, "%s: no weight granularity in quantization_config; %s inferred "
                "from the scale's shape", l->name, kind_name(kind));
    }
    if (!shape_is(st, kind, N, K)) {
        kn_errf(err, errlen, "%s: tensor \"%s\": shape does not match %s scales of a [%zu, %zu] "
                "weight", st->file, st->name, kind_name(kind), N, K);
        return ENG_E_FORMAT;
    }
    ns = st->n_elem;
    if ((sc = malloc(ns * sizeof(float))) == NULL)
        return -ENOMEM;
    if ((rc = scale_values(st, sc, err, errlen)) < 0)
        goto out;
    codes = (uint8_t *)t->data;
    if ((rc = kn_fp8w_new(&fl->w8, codes, N, K, fmt, kind, sc, err, errlen)) < 0)
        goto out;
    /* No high-precision copy: OFF and MEASURE run these FP8 weights with
     * f32 activations (exact products, the scale last), so the weight is
     * held once, in FP8, and the mapped codes are not needed again. */
    eng__st_release(m->st, t);
    l->w = NULL;
    l->wtype = KN_W_F32;
    fl->imported = true;
    f->imported = true;
    f->fmt = fmt;
    snprintf(name, sizeof(name), "%s.input_scale", l->name);
    if ((is = find_mark(m, used, name)) == NULL) {
        snprintf(name, sizeof(name), "%s.activation_scale", l->name);
        is = find_mark(m, used, name);
    }
    if (is != NULL) {
        if (is->n_elem != 1) {
            kn_errf(err, errlen, "%s: tensor \"%s\": %zu elements, a per-tensor input scale has "
                    "1", is->file, is->name, is->n_elem);
            rc = ENG_E_FORMAT;
            goto out;
        }
        if ((rc = scale_values(is, &fl->in_scale, err, errlen)) < 0)
            goto out;
    }
    rc = 0;
out:
    free(sc);
    return rc;
}

int eng__fp8_bind_kv(eng_model *m, bool *used, char *err, size_t errlen)
{
    eng_fp8 *f = m->fp8;
    char name[128];

    if (f == NULL)
        return 0;
    for (int i = 0; i < m->cfg.n_layers; i++) {
        static const char *const kn[2] = {"k", "v"};
        for (int j = 0; j < 2; j++) {
            const eng_tensor *t;
            float v;
            int rc;
            snprintf(name, sizeof(name), "model.layers.%d.self_attn.%s_scale", i, kn[j]);
            if ((t = find_mark(m, used, name)) == NULL) {
                snprintf(name, sizeof(name), "model.layers.%d.self_attn.kv_scale", i);
                if ((t = find_mark(m, used, name)) == NULL)
                    continue;
            }
            if (t->n_elem != 1) {
                kn_errf(err, errlen, "%s: tensor \"%s\": %zu elements; only per-tensor KV "
                        "scales are supported", t->file, t->name, t->n_elem);
                return ENG_E_UNSUPPORTED;
            }
            if ((rc = scale_values(t, &v, err, errlen)) < 0)
                return rc;
            (j == 0 ? f->k_scale : f->v_scale)[i] = v;
            f->opts.kv_fp8 = true;
        }
    }
    return 0;
}

int eng__fp8_attach(eng_model *m)
{
    eng_fp8 *f = m->fp8;
    /* lins is indexed like m->linears: 7 per layer plus lm_head. */
    size_t cap = 7 * (size_t)m->cfg.n_layers + 1;

    if (f == NULL) {
        if ((f = calloc(1, sizeof(*f))) == NULL)
            return -ENOMEM;
        m->fp8 = f;
        f->mode = QT_MODE_QUANTIZE;
        eng_fp8_opts_default(&f->opts);
        f->fmt = KN_FP8_E4M3;
        if ((f->k_scale = calloc((size_t)m->cfg.n_layers, sizeof(float))) == NULL ||
            (f->v_scale = calloc((size_t)m->cfg.n_layers, sizeof(float))) == NULL ||
            (f->kv_mod = calloc(2 * (size_t)m->cfg.n_layers, sizeof(*f->kv_mod))) == NULL ||
            (f->mm_mod = calloc(2 * (size_t)m->cfg.n_layers, sizeof(*f->mm_mod))) == NULL ||
            (f->qk_scale = calloc(2 * (size_t)m->cfg.n_layers, sizeof(float))) == NULL ||
            (f->lins = calloc(cap, sizeof(*f->lins))) == NULL)
            return -ENOMEM;
    }
    return 0;
}

void eng__fp8_free(eng_model *m)
{
    eng_fp8 *f = m->fp8;

    if (f == NULL)
        return;
    for (size_t i = 0; f->lins && i < 7 * (size_t)m->cfg.n_layers + 1; i++)
        kn_fp8w_free(f->lins[i].w8);
    free(f->lins);
    qt_modset_free(f->set);
    qt_config_free(f->cfg);
    eng__qconfig_cleanup(&f->qc);
    free(f->k_scale);
    free(f->v_scale);
    free(f->kv_mod);
    free(f->mm_mod);
    free(f->qk_scale);
    kn_free(f->xq);
    kn_free(f->xs);
    kn_free(f->mm_scratch);
    free(f);
    m->fp8 = NULL;
}
