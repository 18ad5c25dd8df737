/* fp8_mode.c: prepare (a quantizer state per selected module), the
 * OFF / MEASURE / QUANTIZE switch, calibration in memory and the
 * measurement files (fp8-semantics.md §4.4-4.8, §6.4).  QUANTIZE builds
 * FP8 weights from the mapped originals and frees the packed
 * high-precision copies of the Linears it runs in FP8; leaving QUANTIZE
 * packs them again from the same bytes (unless the file changed on disk:
 * then the switch is refused), so OFF after QUANTIZE computes exactly
 * what a fresh load does. */
#include "config.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/fp8-int.h"

void eng_fp8_opts_default(eng_fp8_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->act = ENG_FP8_ACT_STATIC;
    o->wscale = ENG_FP8_W_CONFIG;
}

int eng__fp8_load_begin(eng_model *m, const char *dir, char *err, size_t errlen)
{
    eng_qconfig qc;
    int rc;

    if ((rc = eng__qconfig_parse(&qc, dir, err, errlen)) < 0)
        return rc;
    if (qc.method == ENG_QC_NONE)
        return 0;
    if ((rc = eng__fp8_attach(m)) < 0) {
        eng__qconfig_cleanup(&qc);
        return rc;
    }
    m->fp8->qc = qc;
    /* Checkpoints declaring dynamic activations run weight-only unless
     * asked otherwise (model-formats.md §3.2: W8A16 on CPU). */
    m->fp8->opts.act = qc.static_act ? ENG_FP8_ACT_STATIC : ENG_FP8_ACT_NONE;
    return 0;
}

int eng__fp8_load_end(eng_model *m, const char *dir, char *err, size_t errlen)
{
    eng_fp8 *f;
    int rc;

    /* Our state file may give a high-precision export FP8 state too. */
    if ((rc = eng__fp8_state_load(m, dir, err, errlen)) < 0 || (f = m->fp8) == NULL)
        return rc;
    for (size_t i = 0; i < m->n_linears; i++)
        m->linears[i]->fp8 = &f->lins[i];
    if ((f->mm = kn_fp8mm_select(m->ops->name)) == NULL &&
        (f->mm = kn_fp8mm_select(NULL)) == NULL) {
        kn_errf(err, errlen, "%s: no FP8 matrix kernels usable on this CPU", dir);
        return -ENOTSUP;
    }
    return 0;
}

qt_mode eng_fp8_mode(const eng_model *m)
{
    return m->fp8 != NULL ? m->fp8->mode : QT_MODE_OFF;
}

qt_modset *eng_fp8_modset(eng_model *m)
{
    return m->fp8 != NULL ? m->fp8->set : NULL;
}

int eng_fp8_set_opts(eng_model *m, const eng_fp8_opts *o, char *err, size_t errlen)
{
    if ((unsigned)o->act > ENG_FP8_ACT_DYNAMIC || (unsigned)o->wscale > ENG_FP8_W_MINMAX_CHANNEL) {
        kn_errf(err, errlen, "FP8 options: act %d or wscale %d out of range", (int)o->act,
                (int)o->wscale);
        return -EINVAL;
    }
    if (m->fp8 == NULL) {
        kn_errf(err, errlen, "FP8 options: the model is neither prepared nor an FP8 checkpoint");
        return QT_E_MODE;
    }
    m->fp8->opts = *o;
    return 0;
}

static int add_module(eng_fp8 *f, const qt_config *c, const char *name, qt_mod_type t,
                      size_t rows, size_t cols, qt_module **out, char *err, size_t errlen)
{
    size_t n_ch = qt_config_observer(c) == QT_OBS_MAXABS_PER_CHANNEL ? cols : 0;
    *out = NULL;
    if (!qt_config_selects(c, name, t))
        return 0;
    return qt_modset_add(f->set, name, t, rows, cols, n_ch, out, err, errlen);
}

int eng_fp8_prepare(eng_model *m, const qt_config *c, const qt_recipe *recipe,
                    const eng_fp8_opts *o, char *err, size_t errlen)
{
    eng_fp8 *f;
    char name[128];
    int rc;

    if (m->fp8 != NULL && m->fp8->set != NULL) {
        kn_errf(err, errlen, "FP8 prepare: the model is already prepared");
        return -EBUSY;
    }
    if ((rc = eng__fp8_attach(m)) < 0)
        return rc;
    f = m->fp8;
    for (size_t i = 0; i < m->n_linears; i++)
        m->linears[i]->fp8 = &f->lins[i];
    if (f->mm == NULL && (f->mm = kn_fp8mm_select(m->ops->name)) == NULL &&
        (f->mm = kn_fp8mm_select(NULL)) == NULL) {
        kn_errf(err, errlen, "FP8 prepare: no FP8 matrix kernels usable on this CPU");
        return -ENOTSUP;
    }
    if (o != NULL)
        f->opts = *o;
    f->has_recipe = recipe != NULL;
    if (recipe != NULL)
        f->recipe = *recipe;
    else
        qt_recipe_default(&f->recipe);
    qt_scale_params_of(&f->params, c);
    f->ignore_unmeasured = qt_config_ignore_unmeasured(c);
    f->observer = qt_config_observer(c);
    f->exclude = qt_config_measure_exclude(c);
    snprintf(f->dump_stats_path, sizeof(f->dump_stats_path), "%s", qt_config_dump_stats_path(c));
    /* A recipe's Format decides (HYBRID: E4M3 forward, §2.1); else the
     * config's fp8_config.  Imported FP8 weights keep their format. */
    if (!f->imported)
        f->fmt = recipe != NULL ? qt_format_tensor(recipe->fp8_format, true)
                                : qt_config_fp8_format(c);
    if (qt_measure_path(c, QT_FILE_MEASURE, f->path_measure, sizeof(f->path_measure)) < 0 ||
        qt_measure_path(c, QT_FILE_MOD_LIST, f->path_modlist, sizeof(f->path_modlist)) < 0 ||
        qt_measure_path(c, QT_FILE_SCALE, f->path_scale, sizeof(f->path_scale)) < 0) {
        kn_errf(err, errlen, "FP8 config: dump_stats_path \"%s\" is too long",
                qt_config_dump_stats_path(c));
        return -ENAMETOOLONG;
    }
    if ((f->set = qt_modset_new(c, recipe)) == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < m->n_linears; i++) {
        eng_linear *l = m->linears[i];
        if ((rc = add_module(f, c, l->name, QT_MOD_LINEAR, (size_t)l->n_out, (size_t)l->n_in,
                             &f->lins[i].mod, err, errlen)) < 0)
            return rc;
    }
    /* Attention modules under INC's optimum-habana names.  Their
     * observers record per-tensor maxima (per-channel: not registered). */
    for (int i = 0; i < m->cfg.n_layers && qt_config_observer(c) == QT_OBS_MAXABS; i++) {
        size_t kvd = (size_t)m->cfg.n_kv_heads * m->cfg.head_size;
        snprintf(name, sizeof(name), "model.layers.%d.self_attn.matmul_qk", i);
        if ((rc = add_module(f, c, name, QT_MOD_MATMUL, 0, 0, &f->mm_mod[2 * i], err,
                             errlen)) < 0)
            return rc;
        snprintf(name, sizeof(name), "model.layers.%d.self_attn.k_cache", i);
        if ((rc = add_module(f, c, name, QT_MOD_KV_CACHE, 0, kvd, &f->kv_mod[2 * i], err,
                             errlen)) < 0)
            return rc;
        snprintf(name, sizeof(name), "model.layers.%d.self_attn.v_cache", i);
        if ((rc = add_module(f, c, name, QT_MOD_KV_CACHE, 0, kvd, &f->kv_mod[2 * i + 1], err,
                             errlen)) < 0)
            return rc;
    }
    return eng_fp8_set_mode(m, qt_config_mode(c), err, errlen);
}

static float row_amax(const float *w, size_t n);

/* Weights are observed once, when a measurement starts (INC: at patch
 * time). */
static int observe_weights(eng_model *m, char *err, size_t errlen)
{
    eng_fp8 *f = m->fp8;
    int rc;
    for (size_t i = 0; i < m->n_linears; i++) {
        eng_linear *l = m->linears[i];
        float *w;
        if (f->lins[i].mod == NULL)
            continue;
        if ((rc = eng__linear_widen(m, l, &w, err, errlen)) < 0)
            return rc;
        qt_module_observe(f->lins[i].mod, QT_SLOT_WEIGHT, 0, w, (size_t)l->n_out * l->n_in);
        f->lins[i].w_amax = row_amax(w, (size_t)l->n_out * l->n_in);
        free(w);
    }
    return 0;
}

/* compressed-tensors' minmax rule: amax / F in f32, at least f32 eps. */
static float minmax_scale(float amax, float fmax)
{
    float s = amax / fmax;
    return s >= FLT_EPSILON ? s : FLT_EPSILON;
}

static float row_amax(const float *w, size_t n)
{
    float a = 0.0f;
    for (size_t i = 0; i < n; i++)
        if (fabsf(w[i]) > a)
            a = fabsf(w[i]);
    return a;
}

/* The activation descale of a slot, by the scheme in use. */
static float act_descale(const eng_fp8 *f, qt_module *mod, qt_slot slot, int idx,
                         int hist_slot)
{
    if (f->has_recipe && qt_module_history(mod) != NULL)
        return qt_history_descale(qt_module_history(mod), hist_slot);
    if (f->opts.wscale != ENG_FP8_W_CONFIG)
        return minmax_scale(qt_module_measured(mod, slot, idx), kn_fp8_max(f->fmt));
    size_t n;
    const float *d = qt_module_descales(mod, slot, idx, &n);
    return d != NULL ? d[0] : 0.0f;
}

static int quantize_linear(eng_model *m, size_t i, char *err, size_t errlen)
{
    eng_fp8 *f = m->fp8;
    eng_fp8lin *fl = &f->lins[i];
    eng_linear *l = m->linears[i];
    size_t N = (size_t)l->n_out, K = (size_t)l->n_in;
    kn_fp8_scale_kind kind = KN_FP8_SCALE_TENSOR;
    float *w = NULL, *sc = NULL;
    uint8_t *codes = NULL;
    int rc = 0;

    if (fl->mod == NULL)
        return 0;                       /* imported weights stay as loaded */
    if (qt_module_history(fl->mod) != NULL)
        qt_history_update(qt_module_history(fl->mod), &f->recipe, NULL);
    if (isnan(qt_module_measured(fl->mod, QT_SLOT_INPUT, 0)) && !f->has_recipe) {
        if (!f->ignore_unmeasured) {
            kn_errf(err, errlen, "module \"%s\" was selected but never measured (set "
                    "ignore_modules_wo_measures to keep it in high precision)", l->name);
            return QT_E_NO_MEASURE;
        }
        ENG_LOG(KN_LOG_WARN, "module \"%s\" has no measurement: kept in high precision",
                l->name);
        /* An imported weight has no other form: it stays FP8, with f32
         * activations (weight-only) under static activation scales. */
        if (!fl->imported) {
            kn_fp8w_free(fl->w8);
            fl->w8 = NULL;
        }
        fl->in_scale = 0.0f;
        return 1;
    }
    if ((rc = eng__linear_widen(m, l, &w, err, errlen)) < 0)
        return rc;
    if ((sc = malloc(N * sizeof(float))) == NULL || (codes = malloc(N * K)) == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    if (f->has_recipe && qt_module_history(fl->mod) != NULL) {
        sc[0] = qt_history_descale(qt_module_history(fl->mod), 1);
    } else if (f->opts.wscale == ENG_FP8_W_MINMAX_TENSOR) {
        sc[0] = minmax_scale(row_amax(w, N * K), kn_fp8_max(f->fmt));
    } else if (f->opts.wscale == ENG_FP8_W_MINMAX_CHANNEL) {
        kind = KN_FP8_SCALE_CHANNEL;
        for (size_t n = 0; n < N; n++)
            sc[n] = minmax_scale(row_amax(w + n * K, K), kn_fp8_max(f->fmt));
    } else {
        size_t ns;
        const float *d;
        qt_scale_params p = f->params;
        p.fmt = f->fmt;
        if ((rc = qt_module_compute_scales(fl->mod, &p, w, err, errlen)) < 0)
            goto out;
        d = qt_module_descales(fl->mod, QT_SLOT_WEIGHT, 0, &ns);
        if (ns == N && N > 1)
            kind = KN_FP8_SCALE_CHANNEL;
        memcpy(sc, d, (ns < N ? ns : N) * sizeof(float));
    }
    if (!fl->imported) {
        for (size_t n = 0; n < N; n++)
            kn_active()->f32_to_fp8(codes + n * K, w + n * K, K, f->fmt,
                                    kind == KN_FP8_SCALE_CHANNEL ? sc[n] : sc[0],
                                    KN_FP8_DIVIDE | KN_FP8_SATURATE);
        kn_fp8w_free(fl->w8);
        fl->w8 = NULL;
        if ((rc = kn_fp8w_new(&fl->w8, codes, N, K, f->fmt, kind, sc, err, errlen)) < 0)
            goto out;
    }
    fl->in_scale = act_descale(f, fl->mod, QT_SLOT_INPUT, 0, 0);
    rc = 0;
out:
    free(w);
    free(sc);
    free(codes);
    return rc;
}

/* Frees l's packed copy once its FP8 weights exist, so that the
 * conversion's peak holds each weight about once.  A failure later in
 * quantize_all packs it again (eng__packed_sync to the current mode). */
static void drop_packed_early(eng_linear *l)
{
    const eng_fp8lin *fl = l->fp8;
    if (l->packed != NULL && fl != NULL && fl->w8 != NULL) {
        kn_free(l->packed);
        l->packed = NULL;
    }
}

static int quantize_all(eng_model *m, char *err, size_t errlen)
{
    eng_fp8 *f = m->fp8;
    int rc, n_hp = 0;

    /* Refused before anything changes when a file changed on disk. */
    if ((rc = eng__st_check_all(m->st, err, errlen)) < 0)
        return rc;
    for (size_t i = 0; i < m->n_linears; i++) {
        if ((rc = quantize_linear(m, i, err, errlen)) < 0)
            return rc;
        n_hp += rc;
        drop_packed_early(m->linears[i]);
    }
    for (int i = 0; i < 2 * m->cfg.n_layers; i++) {
        qt_module *mods[2] = {f->mm_mod[i], f->kv_mod[i]};
        for (int j = 0; j < 2; j++)
            if (mods[j] != NULL && qt_module_was_observed(mods[j]) &&
                qt_module_history(mods[j]) != NULL)
                qt_history_update(qt_module_history(mods[j]), &f->recipe, NULL);
    }
    if ((rc = eng__fp8_attn_scales(m, err, errlen)) < 0)
        return rc;
    if (f->opts.kv_fp8)
        for (int i = 0; i < m->cfg.n_layers; i++)
            if (!(f->k_scale[i] > 0.0f) || !(f->v_scale[i] > 0.0f)) {
                kn_errf(err, errlen, "FP8 KV cache: layer %d has no k/v scale (select and "
                        "measure model.layers.%d.self_attn.k_cache and v_cache)", i, i);
                return QT_E_NO_MEASURE;
            }
    if (n_hp > 0)
        ENG_LOG(KN_LOG_WARN, "QUANTIZE: %d selected modules without measurements stay in high "
                "precision", n_hp);
    return 0;
}

/* Outside QUANTIZE a conversion's FP8 weights are not used (QUANTIZE
 * builds them again from the measurements): they go, so OFF and MEASURE
 * hold each weight once.  An imported weight has no other form. */
static void drop_fp8_weights(eng_model *m)
{
    for (size_t i = 0; i < m->n_linears; i++) {
        eng_fp8lin *fl = &m->fp8->lins[i];
        if (!fl->imported && fl->w8 != NULL) {
            kn_fp8w_free(fl->w8);
            fl->w8 = NULL;
        }
    }
}

static bool file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

int eng_fp8_set_mode(eng_model *m, qt_mode mode, char *err, size_t errlen)
{
    eng_fp8 *f = m->fp8;
    int rc;

    if (f == NULL || (f->set == NULL && mode != QT_MODE_OFF && mode != QT_MODE_QUANTIZE)) {
        kn_errf(err, errlen, "FP8 mode: the model has no FP8 state (prepare it first)");
        return QT_E_MODE;
    }
    if (mode == QT_MODE_AUTO) {
        /* INC's AUTO: measurements present -> QUANTIZE from them. */
        if (!file_exists(f->path_measure))
            return eng_fp8_set_mode(m, QT_MODE_MEASURE, err, errlen);
        if ((rc = eng_fp8_load_measurements(m, f->path_measure, err, errlen)) < 0)
            return rc;
        mode = QT_MODE_QUANTIZE;
    }
    /* Leaving QUANTIZE packs the high-precision copies again first: when
     * that fails (file changed on disk, out of memory) the mode stays. */
    switch (mode) {
    case QT_MODE_OFF:
        if ((rc = eng__packed_sync(m, mode, err, errlen)) < 0)
            return rc;
        f->mode = QT_MODE_OFF;
        drop_fp8_weights(m);
        eng__heap_trim();
        return 0;
    case QT_MODE_MEASURE:
        if ((rc = eng__packed_sync(m, mode, err, errlen)) < 0)
            return rc;
        if (f->mode != QT_MODE_MEASURE) {
            qt_modset_reset_measurements(f->set);
            if ((rc = observe_weights(m, err, errlen)) < 0) {
                (void)eng__packed_sync(m, f->mode, NULL, 0);   /* frees only */
                return rc;
            }
        }
        f->mode = QT_MODE_MEASURE;
        drop_fp8_weights(m);
        eng__heap_trim();
        return 0;
    case QT_MODE_QUANTIZE:
        if (f->set != NULL && (rc = quantize_all(m, err, errlen)) < 0) {
            /* copies dropped early come back; the file was checked above */
            char e2[256];
            if (eng__packed_sync(m, f->mode, e2, sizeof(e2)) < 0)
                ENG_LOG(KN_LOG_ERR, "QUANTIZE failed, then re-packing failed: %s", e2);
            if (f->mode != QT_MODE_QUANTIZE)
                drop_fp8_weights(m);
            return rc;
        }
        f->mode = QT_MODE_QUANTIZE;
        /* frees the rest; packs a Linear that QUANTIZE left in high
         * precision (a module without measurements) */
        rc = eng__packed_sync(m, QT_MODE_QUANTIZE, err, errlen);
        eng__heap_trim();
        return rc;
    default:
        kn_errf(err, errlen, "FP8 mode %d is not a mode", (int)mode);
        return -EINVAL;
    }
}

int eng_fp8_calibrate(eng_model *m, const int32_t *const *seqs, const size_t *lens,
                      size_t n_seqs, char *err, size_t errlen)
{
    if (eng_fp8_mode(m) != QT_MODE_MEASURE) {
        kn_errf(err, errlen, "FP8 calibration needs MEASURE mode");
        return QT_E_MODE;
    }
    /* Logits at every position, as a calibration forward in transformers
     * computes them: otherwise lm_head sees no input, stays unmeasured and
     * the dumped file cannot be loaded back.  Chunks of CALIB_CHUNK tokens
     * bound the logits buffer for large vocabularies. */
    enum { CALIB_CHUNK = 64 };
    size_t vocab = (size_t)m->cfg.vocab_size;
    float *logits = malloc(CALIB_CHUNK * vocab * sizeof(float));
    int rc = 0;

    if (logits == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n_seqs && rc == 0; i++) {
        eng_seq *s;
        if (lens[i] == 0)
            continue;
        if ((s = eng_seq_new(m, lens[i])) == NULL) {
            kn_errf(err, errlen, "calibration sequence %zu: %zu tokens do not fit the model "
                    "(or out of memory)", i, lens[i]);
            rc = -EINVAL;
            break;
        }
        for (size_t off = 0; off < lens[i] && rc == 0; off += CALIB_CHUNK) {
            eng_batch_item it = {0};
            it.seq = s;
            it.tokens = seqs[i] + off;
            it.n_tokens = lens[i] - off < CALIB_CHUNK ? lens[i] - off : CALIB_CHUNK;
            it.all_logits = true;
            it.logits = logits;
            rc = eng_forward(m, &it, 1, err, errlen);
        }
        eng_seq_free(s);
    }
    free(logits);
    return rc < 0 ? rc : 0;
}

int eng_fp8_dump_measurements(eng_model *m, char *err, size_t errlen)
{
    eng_fp8 *f = m->fp8;
    qt_measure *ms;
    int rc;

    if (f == NULL || f->set == NULL) {
        kn_errf(err, errlen, "FP8 dump: the model is not prepared");
        return QT_E_MODE;
    }
    if ((ms = qt_measure_from_modset(f->set)) == NULL)
        return -ENOMEM;
    rc = qt_measure_write(ms, f->path_measure, err, errlen);
    qt_measure_free(ms);
    if (rc < 0 || (rc = qt_measure_write_mod_list(f->set, f->path_modlist, err, errlen)) < 0)
        return rc;
    if (f->mode == QT_MODE_QUANTIZE && f->opts.wscale == ENG_FP8_W_CONFIG && !f->has_recipe) {
        if ((ms = qt_measure_scales_from_modset(f->set)) == NULL)
            return -ENOMEM;
        rc = qt_measure_write(ms, f->path_scale, err, errlen);
        qt_measure_free(ms);
    }
    return rc;
}

int eng_fp8_load_measurements(eng_model *m, const char *path, char *err, size_t errlen)
{
    eng_fp8 *f = m->fp8;
    qt_measure *ms;
    int rc;

    if (f == NULL || f->set == NULL) {
        kn_errf(err, errlen, "FP8 load: the model is not prepared");
        return QT_E_MODE;
    }
    if ((rc = qt_measure_read(&ms, path, err, errlen)) < 0)
        return rc;
    qt_modset_reset_measurements(f->set);
    rc = qt_measure_apply(ms, f->set, false, err, errlen);
    qt_measure_free(ms);
    return rc < 0 ? rc : 0;
}

void eng__fp8_step_end(eng_model *m)
{
    eng_fp8 *f = m->fp8;

    if (f == NULL || f->mode != QT_MODE_MEASURE || f->set == NULL || !f->has_recipe)
        return;
    for (size_t i = 0; i < m->n_linears; i++)
        if (f->lins[i].mod != NULL)
            qt_module_record_amax(f->lins[i].mod, QT_SLOT_WEIGHT, 0, f->lins[i].w_amax);
    for (size_t i = 0; i < qt_modset_count(f->set); i++) {
        qt_history *h = qt_module_history(qt_modset_at(f->set, i));
        if (h != NULL)
            qt_history_update(h, &f->recipe, NULL);
    }
}

int eng__fp8_attn_scales(eng_model *m, char *err, size_t errlen)
{
    eng_fp8 *f = m->fp8;
    int rc;

    for (int i = 0; i < 2 * m->cfg.n_layers; i++) {
        qt_module *mods[2] = {f->mm_mod[i], f->kv_mod[i]};
        for (int j = 0; j < 2; j++)
            if (mods[j] != NULL && qt_module_was_observed(mods[j]) &&
                (rc = qt_module_compute_scales(mods[j], &f->params, NULL, err, errlen)) < 0)
                return rc;
        if (f->kv_mod[i] != NULL && qt_module_was_observed(f->kv_mod[i]))
            ((i & 1) ? f->v_scale : f->k_scale)[i / 2] =
                act_descale(f, f->kv_mod[i], QT_SLOT_INPUT, 0, 0);
    }
    /* matmul_qk (opts.qk_fp8): q and k rounded through FP8 with static
     * scales, only when activations are quantized statically. */
    for (int l = 0; l < m->cfg.n_layers; l++) {
        qt_module *mm = f->mm_mod[2 * l];
        bool on = mm != NULL && f->opts.qk_fp8 && f->opts.act == ENG_FP8_ACT_STATIC &&
                  m->cfg.head_size <= ENG_FP8_KV_MAX_HS &&
                  !isnan(qt_module_measured(mm, QT_SLOT_INPUT, 0)) &&
                  !isnan(qt_module_measured(mm, QT_SLOT_INPUT, 1));
        f->qk_scale[2 * l] = on ? act_descale(f, mm, QT_SLOT_INPUT, 0, 0) : 0.0f;
        f->qk_scale[2 * l + 1] = on ? act_descale(f, mm, QT_SLOT_INPUT, 1, 1) : 0.0f;
    }
    return 0;
}
