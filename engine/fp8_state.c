/* fp8_state.c: our FP8 state file of an export (fp8d_state.json,
 * fp8-semantics.md §3.4 "extra state" and §6.1): the options, the scale
 * configuration, the recipe, and per module (keyed "<name>._extra_state")
 * its type, amax history (IPEX row order), multipliers and descales,
 * plus the running maxima in INC's measurement layout (fp8d_measure.json
 * beside it).  Weights, weight scales, input and KV scales live in the
 * safetensors file; this file restores everything else, so the loaded
 * export computes what the exporting run computed and can go on
 * measuring or re-quantizing. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "engine/fp8-int.h"

#define STATE_VERSION 1

static const char *const k_act[] = {"static", "none", "dynamic"};
static const char *const k_wscale[] = {"config", "minmax_tensor", "minmax_channel"};
static const char *const k_obs[] = {"maxabs", "maxabs_per_channel"};
static const char *const k_excl[] = {"NONE", "OUTPUT", "INPUT", "ALL", "PARAMS"};
static const char *const k_dev[] = {"gaudi3", "gaudi2"};

static int find_name(const char *const *names, int n, const char *s)
{
    for (int i = 0; s != NULL && i < n; i++)
        if (strcmp(names[i], s) == 0)
            return i;
    return -1;
}

/* ---- save --------------------------------------------------------------- */

static json_t *floats(const float *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_real((double)v[i]));
    return a;
}

static json_t *module_json(qt_module *mod, float in_descale)
{
    json_t *o = json_object();
    qt_history *h = qt_module_history(mod);

    json_object_set_new(o, "type", json_string(qt_mod_type_name(qt_module_type(mod))));
    if (in_descale > 0.0f)
        json_object_set_new(o, "input_descale", json_real(in_descale));
    if (h != NULL) {
        int L = qt_history_len(h), S = qt_history_slots(h);
        float *rows = malloc((size_t)L * S * sizeof(float)), mult[16], inv[16];
        json_t *hist = json_array();
        if (rows == NULL || S > 16) {
            free(rows);
            json_decref(hist);
            json_decref(o);
            return NULL;
        }
        qt_history_export(h, rows);
        for (int r = 0; r < L; r++)
            json_array_append_new(hist, floats(rows + (size_t)r * S, (size_t)S));
        for (int s = 0; s < S; s++) {
            mult[s] = qt_history_mult(h, s);
            inv[s] = qt_history_descale(h, s);
        }
        json_object_set_new(o, "scale_fwd", floats(mult, (size_t)S));
        json_object_set_new(o, "scale_inv_fwd", floats(inv, (size_t)S));
        json_object_set_new(o, "amax_history_fwd", hist);
        free(rows);
    }
    return o;
}

int eng__fp8_state_save(eng_model *m, const char *path, char *err, size_t errlen)
{
    eng_fp8 *f = m->fp8;
    json_t *root = json_object(), *mods = json_object(), *cfg;
    char mpath[PATH_MAX], rbuf[512];
    int rc = 0;

    json_object_set_new(root, "fp8d_state", json_integer(STATE_VERSION));
    json_object_set_new(root, "opts", json_pack("{s:s, s:s, s:b, s:b}", "act",
                                                k_act[f->opts.act], "wscale",
                                                k_wscale[f->opts.wscale], "kv_fp8",
                                                f->opts.kv_fp8, "qk_fp8", f->opts.qk_fp8));
    json_object_set_new(root, "format", json_string(f->fmt == KN_FP8_E5M2 ? "E5M2" : "E4M3"));
    if (f->set != NULL) {
        cfg = json_pack("{s:s, s:s, s:s, s:s, s:{s:f, s:f}, s:b}",
                        "fp8_config", f->params.fmt == KN_FP8_E5M2 ? "E5M2" : "E4M3",
                        "scale_method", qt_scale_method_name(f->params.method),
                        "device_for_scales", k_dev[f->params.device],
                        "dump_stats_path", f->dump_stats_path,
                        "scale_params", "input_backoff", (double)f->params.input_backoff,
                        "weight_backoff", (double)f->params.weight_backoff,
                        "ignore_modules_wo_measures", f->ignore_unmeasured);
        json_object_set_new(cfg, "observer", json_string(k_obs[f->observer]));
        json_object_set_new(cfg, "measure_exclude", json_string(k_excl[f->exclude]));
        json_object_set_new(root, "config", cfg);
    }
    if (f->has_recipe && qt_recipe_format(&f->recipe, rbuf, sizeof(rbuf)) > 0)
        json_object_set_new(root, "recipe", json_loads(rbuf, 0, NULL));
    for (size_t i = 0; f->set != NULL && i < qt_modset_count(f->set); i++) {
        qt_module *mod = qt_modset_at(f->set, i);
        char key[160];
        float ind = 0.0f;
        for (size_t j = 0; j < m->n_linears; j++)
            if (f->lins[j].mod == mod)
                ind = f->lins[j].in_scale;
        json_t *mj = module_json(mod, ind);
        if (mj == NULL) {
            rc = -ENOMEM;
            goto out;
        }
        snprintf(key, sizeof(key), "%s._extra_state", qt_module_name(mod));
        json_object_set_new(mods, key, mj);
    }
    json_object_set(root, "modules", mods);
    if (f->set != NULL) {
        qt_measure *ms = qt_measure_from_modset(f->set);
        char *slash;
        if (ms == NULL) {
            rc = -ENOMEM;
            goto out;
        }
        snprintf(mpath, sizeof(mpath), "%s", path);
        slash = strrchr(mpath, '/');
        snprintf(slash ? slash + 1 : mpath, sizeof(mpath) - (size_t)(slash ? slash + 1 - mpath : 0),
                 "fp8d_measure.json");
        rc = qt_measure_count(ms) > 0 ? qt_measure_write(ms, mpath, err, errlen) : 0;
        if (qt_measure_count(ms) > 0)
            json_object_set_new(root, "measurements", json_string("fp8d_measure.json"));
        qt_measure_free(ms);
        if (rc < 0)
            goto out;
    }
    if (json_dump_file(root, path, JSON_INDENT(1)) != 0) {
        kn_errf(err, errlen, "%s: cannot write the FP8 state", path);
        rc = -EIO;
    }
out:
    json_decref(mods);
    json_decref(root);
    return rc;
}

/* ---- load --------------------------------------------------------------- */

static int bad(char *err, size_t errlen, const char *path, const char *what)
{
    kn_errf(err, errlen, "%s: %s", path, what);
    return ENG_E_FORMAT;
}

static int load_floats(const json_t *a, float *dst, size_t n)
{
    if (!json_is_array(a) || json_array_size(a) != n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(a, i);
        if (!json_is_number(v) || !isfinite(json_number_value(v)))
            return -1;
        dst[i] = (float)json_number_value(v);
    }
    return 0;
}

static int restore_history(qt_module *mod, const json_t *mj, const char *path, const char *key,
                           char *err, size_t errlen)
{
    qt_history *h = qt_module_history(mod);
    const json_t *hist = json_object_get(mj, "amax_history_fwd");
    int L, S, rc = 0;
    float *rows, mult[16];

    if (h == NULL || hist == NULL)
        return 0;
    L = qt_history_len(h);
    S = qt_history_slots(h);
    if (!json_is_array(hist) || json_array_size(hist) != (size_t)L || S > 16) {
        kn_errf(err, errlen, "%s: modules.%s.amax_history_fwd: expected %d rows of %d", path, key,
                L, S);
        return ENG_E_FORMAT;
    }
    if ((rows = malloc((size_t)L * S * sizeof(float))) == NULL)
        return -ENOMEM;
    for (int r = 0; r < L && rc == 0; r++)
        if (load_floats(json_array_get(hist, (size_t)r), rows + (size_t)r * S, (size_t)S) < 0) {
            kn_errf(err, errlen, "%s: modules.%s.amax_history_fwd[%d]: expected %d finite "
                    "numbers", path, key, r, S);
            rc = ENG_E_FORMAT;
        }
    if (rc == 0 && (rc = qt_history_import(h, rows, err, errlen)) == 0) {
        if (load_floats(json_object_get(mj, "scale_fwd"), mult, (size_t)S) < 0) {
            kn_errf(err, errlen, "%s: modules.%s.scale_fwd: expected %d finite numbers", path,
                    key, S);
            rc = ENG_E_FORMAT;
        }
        for (int s = 0; rc == 0 && s < S; s++)
            if (qt_history_set_mult(h, s, mult[s]) < 0) {
                kn_errf(err, errlen, "%s: modules.%s.scale_fwd[%d] = %g is not a positive "
                        "multiplier", path, key, s, (double)mult[s]);
                rc = ENG_E_FORMAT;
            }
    }
    free(rows);
    return rc;
}

/* The module object of name: a Linear, or an attention module. */
static int attach_module(eng_model *m, qt_module *mod, const char *name)
{
    eng_fp8 *f = m->fp8;
    int layer;
    char what[32];

    for (size_t i = 0; i < m->n_linears; i++)
        if (strcmp(m->linears[i]->name, name) == 0) {
            f->lins[i].mod = mod;
            return 0;
        }
    if (sscanf(name, "model.layers.%d.self_attn.%31s", &layer, what) == 2 && layer >= 0 &&
        layer < m->cfg.n_layers) {
        if (strcmp(what, "matmul_qk") == 0)
            f->mm_mod[2 * layer] = mod;
        else if (strcmp(what, "k_cache") == 0)
            f->kv_mod[2 * layer] = mod;
        else if (strcmp(what, "v_cache") == 0)
            f->kv_mod[2 * layer + 1] = mod;
        else
            return -1;
        return 0;
    }
    return -1;
}

static int restore(eng_model *m, const json_t *root, const char *dir, const char *path,
                   char *err, size_t errlen)
{
    eng_fp8 *f = m->fp8;
    const json_t *opts = json_object_get(root, "opts"), *cfgj = json_object_get(root, "config");
    const json_t *mods = json_object_get(root, "modules"), *rj = json_object_get(root, "recipe");
    const json_t *mj;
    const char *key;
    qt_config *c = NULL;
    qt_recipe r;
    char *text;
    int a, w, rc;

    if (json_integer_value(json_object_get(root, "fp8d_state")) != STATE_VERSION)
        return bad(err, errlen, path, "fp8d_state: not version 1");
    a = find_name(k_act, 3, json_string_value(json_object_get(opts, "act")));
    w = find_name(k_wscale, 3, json_string_value(json_object_get(opts, "wscale")));
    if (a < 0 || w < 0 || !json_is_boolean(json_object_get(opts, "kv_fp8")))
        return bad(err, errlen, path, "opts: act, wscale or kv_fp8 missing or unknown");
    f->opts.act = (eng_fp8_act)a;
    f->opts.wscale = (eng_fp8_wscale)w;
    f->opts.kv_fp8 = json_is_true(json_object_get(opts, "kv_fp8"));
    f->opts.qk_fp8 = json_is_true(json_object_get(opts, "qk_fp8"));   /* absent: false */
    if (!json_is_object(cfgj))
        return 0;                       /* no module state was saved */
    if ((text = json_dumps(cfgj, JSON_COMPACT)) == NULL)
        return -ENOMEM;
    rc = qt_config_parse(&c, text, path, err, errlen);
    free(text);
    if (rc < 0)
        return rc;
    f->has_recipe = rj != NULL && !json_is_null(rj);
    qt_recipe_default(&r);
    if (f->has_recipe) {
        if ((text = json_dumps(rj, JSON_COMPACT)) == NULL) {
            rc = -ENOMEM;
            goto out;
        }
        rc = qt_recipe_parse(&r, text, err, errlen);
        free(text);
        if (rc < 0)
            goto out;
    }
    f->recipe = r;
    qt_scale_params_of(&f->params, c);
    f->ignore_unmeasured = qt_config_ignore_unmeasured(c);
    f->observer = qt_config_observer(c);
    f->exclude = qt_config_measure_exclude(c);
    snprintf(f->dump_stats_path, sizeof(f->dump_stats_path), "%s", qt_config_dump_stats_path(c));
    qt_measure_path(c, QT_FILE_MEASURE, f->path_measure, sizeof(f->path_measure));
    qt_measure_path(c, QT_FILE_MOD_LIST, f->path_modlist, sizeof(f->path_modlist));
    qt_measure_path(c, QT_FILE_SCALE, f->path_scale, sizeof(f->path_scale));
    if ((f->set = qt_modset_new(c, f->has_recipe ? &r : NULL)) == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    if (!json_is_object(mods)) {
        rc = bad(err, errlen, path, "modules: missing");
        goto out;
    }
    json_object_foreach((json_t *)mods, key, mj) {
        char name[160];
        size_t kl = strlen(key);
        qt_mod_type t;
        qt_module *mod;
        size_t rows = 0, cols = 0;
        const char *tn = json_string_value(json_object_get(mj, "type"));
        if (kl < 13 || kl - 13 >= sizeof(name) || strcmp(key + kl - 13, "._extra_state") != 0 ||
            tn == NULL || qt_mod_type_parse(tn, &t) < 0) {
            kn_errf(err, errlen, "%s: modules.%s: not \"<module>._extra_state\" with a known type",
                    path, key);
            rc = ENG_E_FORMAT;
            goto out;
        }
        memcpy(name, key, kl - 13);
        name[kl - 13] = 0;
        for (size_t i = 0; i < m->n_linears; i++)
            if (strcmp(m->linears[i]->name, name) == 0) {
                rows = (size_t)m->linears[i]->n_out;
                cols = (size_t)m->linears[i]->n_in;
            }
        if (t == QT_MOD_KV_CACHE)
            cols = (size_t)m->cfg.n_kv_heads * m->cfg.head_size;
        if ((rc = qt_modset_add(f->set, name, t, rows, cols,
                                f->observer == QT_OBS_MAXABS_PER_CHANNEL ? cols : 0, &mod, err,
                                errlen)) < 0)
            goto out;
        if (attach_module(m, mod, name) < 0) {
            kn_errf(err, errlen, "%s: modules.%s: no such module in this model", path, key);
            rc = ENG_E_FORMAT;
            goto out;
        }
        if ((rc = restore_history(mod, mj, path, key, err, errlen)) < 0)
            goto out;
    }
    if (json_is_string(json_object_get(root, "measurements"))) {
        char mp[PATH_MAX];
        qt_measure *ms;
        snprintf(mp, sizeof(mp), "%s/%s", dir, json_string_value(json_object_get(root,
                                                                                 "measurements")));
        if ((rc = qt_measure_read(&ms, mp, err, errlen)) < 0)
            goto out;
        rc = qt_measure_apply(ms, f->set, true, err, errlen);
        qt_measure_free(ms);
        if (rc < 0)
            goto out;
    }
    /* matmul_qk scales are not tensors of the checkpoint: recomputed from
     * the restored measurements and histories, as QUANTIZE computed them */
    if ((rc = eng__fp8_attn_scales(m, err, errlen)) < 0)
        goto out;
    rc = 0;
out:
    qt_config_free(c);
    return rc;
}

int eng__fp8_state_load(eng_model *m, const char *dir, char *err, size_t errlen)
{
    char path[PATH_MAX];
    struct stat st;
    json_error_t je;
    json_t *root;
    int rc;

    snprintf(path, sizeof(path), "%s/fp8d_state.json", dir);
    if (stat(path, &st) != 0)
        return 0;
    if ((root = json_load_file(path, 0, &je)) == NULL) {
        kn_errf(err, errlen, "%s: line %d: %s", path, je.line, je.text);
        return ENG_E_FORMAT;
    }
    if ((rc = eng__fp8_attach(m)) == 0) {
        for (size_t i = 0; i < m->n_linears; i++)
            m->linears[i]->fp8 = &m->fp8->lins[i];
        rc = restore(m, root, dir, path, err, errlen);
    }
    json_decref(root);
    if (rc == 0)
        m->fp8->mode = QT_MODE_QUANTIZE;
    return rc;
}
