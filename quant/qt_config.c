/* qt_config.c: INC's FP8Config (§4.2) from JSON: every key with its
 * FP8Config default, case-insensitive enums, an error naming any key or
 * value we do not know, warnings for INC keys that only mean something on
 * Gaudi.  Selection itself is in qt_select.c. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "quant/quant-int.h"

struct qt_config {
    qt_mode            mode;
    kn_fp8_format      fmt;
    qt_hp_dtype        hp_dtype;
    qt_observer        observer;
    qt_measure_exclude exclude;
    qt_scale_method    method;
    qt_device          device;
    float              input_backoff;
    float              weight_backoff;
    bool               ignore_unmeasured;
    char              *dump_stats_path;
    qt__filter         allow;
    qt__filter         block;
    int                n_warnings;
};

static const qt__enum_name k_fp8[] = {{"E4M3", KN_FP8_E4M3}, {"E5M2", KN_FP8_E5M2}, {NULL, 0}};
static const qt__enum_name k_hp[] = {
    {"bf16", QT_HP_BF16}, {"fp16", QT_HP_FP16}, {"fp32", QT_HP_FP32}, {NULL, 0},
};
/* -1: INC defines the value, we cannot honour it. */
static const qt__enum_name k_obs[] = {
    {"maxabs", QT_OBS_MAXABS}, {"maxabs_per_channel", QT_OBS_MAXABS_PER_CHANNEL},
    {"shape", -2}, {"save", -2}, {NULL, 0},
};
static const qt__enum_name k_mode[] = {
    {"AUTO", QT_MODE_AUTO}, {"MEASURE", QT_MODE_MEASURE}, {"QUANTIZE", QT_MODE_QUANTIZE},
    {"NONE", QT_MODE_OFF}, {"SHAPE", -2}, {"LOAD", -2}, {NULL, 0},
};
static const qt__enum_name k_excl[] = {
    {"NONE", QT_EXCL_NONE}, {"OUTPUT", QT_EXCL_OUTPUT}, {"INPUT", QT_EXCL_INPUT},
    {"ALL", QT_EXCL_ALL}, {"PARAMS", QT_EXCL_PARAMS}, {NULL, 0},
};
static const qt__enum_name k_dev[] = {{"gaudi3", QT_DEV_GAUDI3}, {"gaudi2", QT_DEV_GAUDI2}, {NULL, 0}};
static const qt__enum_name k_methods[] = {
    {"unit_scale", QT_SM_UNIT_SCALE},
    {"without_scale", QT_SM_UNIT_SCALE},   /* §6.2.13: documented by INC 3.0 as a plain cast */
    {"maxabs_hw", QT_SM_MAXABS_HW},
    {"maxabs_pow2", QT_SM_MAXABS_POW2},
    {"maxabs_arbitrary", QT_SM_MAXABS_ARBITRARY},
    {"maxabs_hw_opt_weight", QT_SM_MAXABS_HW_OPT_WEIGHT},
    {"maxabs_pow2_opt_weight", QT_SM_MAXABS_POW2_OPT_WEIGHT},
    {"act_maxabs_hw_weights_pcs_maxabs_pow2", QT_SM_ACT_MAXABS_HW_WEIGHTS_PCS_MAXABS_POW2},
    {"act_maxabs_hw_weights_pcs_opt_pow2", QT_SM_ACT_MAXABS_HW_WEIGHTS_PCS_OPT_POW2},
    {"act_maxabs_pow2_weights_pcs_maxabs_pow2", QT_SM_ACT_MAXABS_POW2_WEIGHTS_PCS_MAXABS_POW2},
    {"act_maxabs_pow2_weights_pcs_opt_pow2", QT_SM_ACT_MAXABS_POW2_WEIGHTS_PCS_OPT_POW2},
    {"hw_aligned_single_scale", QT_SM_HW_ALIGNED_SINGLE_SCALE},
    {"smoothquant_weights_opt_pow2", -2}, {"smoothquant_weights_maxabs_pow2", -2},
    {"weaksmoothquant_weights_maxabs_pow2", -2}, {"smoothquant_opt", -2}, {NULL, 0},
};

/* INC keys with no effect here: accepted with a warning naming them. */
static const struct {
    const char *key;
    const char *why;
} k_gaudi_keys[] = {
    {"method", "legacy HQT key (\"HOOKS\")"},
    {"measure_on_hpu", "Gaudi-only: measurement always runs on the CPU here"},
    {"use_qdq", "CPU FP8 always runs quantize-dequantize here"},
    {"scale_format", "Gaudi graph option: scales are always plain floats here"},
    {"fake_quant", "training option of INC, no training here"},
    {"recalc_scales", "scales are always computed from the measurements here (no scale-file cache)"},
    {"seperate_measure_files", "one daemon is one rank: no per-rank files"},
    {"dynamic_quantization", "dynamic quantization is not implemented: static scales are used"},
    {"row_parallel_linear_allreduce_quantization", "multi-device option, one device here"},
    {"calibration_sample_interval", "automatic periodic dumps are not implemented"},
    {"white_list", "FP8Config's op-type mapping list, not an engine key"},
};

static int config_defaults(qt_config *c)
{
    c->mode = QT_MODE_AUTO;
    c->fmt = KN_FP8_E4M3;
    c->hp_dtype = QT_HP_BF16;
    c->observer = QT_OBS_MAXABS;
    c->exclude = QT_EXCL_OUTPUT;
    c->method = QT_SM_MAXABS_HW;
    c->device = QT_DEV_GAUDI3;      /* F = 448 (§6.2.4) */
    c->input_backoff = 0.25f;       /* INC's activation backoff */
    c->weight_backoff = 0.5f;       /* INC's weight backoff */
    c->ignore_unmeasured = true;    /* §6.1: keep unmeasured modules in high precision */
    memset(&c->allow, 0, sizeof(c->allow));
    memset(&c->block, 0, sizeof(c->block));
    /* FP8Config's allowlist types = the whole white list: every type. */
    c->allow.type_bits = (1u << QT_MOD_COUNT) - 1;
    c->allow.n_types = QT_MOD_COUNT;
    c->n_warnings = 0;
    return (c->dump_stats_path = strdup("./hqt_output/measure")) == NULL ? -ENOMEM : 0;
}

qt_config *qt_config_new_default(void)
{
    qt_config *c = calloc(1, sizeof(*c));
    if (c != NULL && config_defaults(c) < 0) {
        qt_config_free(c);
        return NULL;
    }
    return c;
}

void qt_config_free(qt_config *c)
{
    if (c == NULL)
        return;
    qt__filter_cleanup(&c->allow);
    qt__filter_cleanup(&c->block);
    free(c->dump_stats_path);
    free(c);
}

static int get_enum(const char *src, const char *key, json_t *v, const qt__enum_name *tab,
                    int *out, char *err, size_t errlen)
{
    char allowed[400];
    int e;

    qt__enum_list(tab, allowed, sizeof(allowed));
    if (!json_is_string(v)) {
        kn_errf(err, errlen, "%s: key \"%s\": expected a string, one of %s", src, key, allowed);
        return QT_E_CONFIG;
    }
    e = qt__enum_lookup(tab, json_string_value(v));
    if (e == -1) {
        kn_errf(err, errlen, "%s: key \"%s\": unknown value \"%s\" (expected one of %s)", src,
                key, json_string_value(v), allowed);
        return QT_E_CONFIG;
    }
    if (e == -2) {
        kn_errf(err, errlen, "%s: key \"%s\": value \"%s\" is defined by INC but not "
                "supported by fp8d", src, key, json_string_value(v));
        return QT_E_UNSUPPORTED;
    }
    *out = e;
    return 0;
}

/* allowlist / blocklist: {"names": [regex...], "types": [class name...]}. */
static int parse_filter(qt__filter *f, const char *src, const char *key, json_t *v, char *err,
                        size_t errlen)
{
    const char *sub;
    json_t *list, *item;
    size_t i;
    char what[96];
    int rc;

    qt__filter_cleanup(f);   /* an explicit list replaces the default */
    if (!json_is_object(v)) {
        kn_errf(err, errlen, "%s: key \"%s\": expected an object {\"names\": [...], "
                "\"types\": [...]}", src, key);
        return QT_E_CONFIG;
    }
    json_object_foreach(v, sub, list) {
        bool names = strcmp(sub, "names") == 0;
        if (!names && strcmp(sub, "types") != 0) {
            kn_errf(err, errlen, "%s: key \"%s.%s\": unknown key (expected names, types)", src,
                    key, sub);
            return QT_E_UNKNOWN_KEY;
        }
        if (!json_is_array(list)) {
            kn_errf(err, errlen, "%s: key \"%s.%s\": expected a list of strings", src, key, sub);
            return QT_E_CONFIG;
        }
        json_array_foreach(list, i, item) {
            snprintf(what, sizeof(what), "%s: key \"%s.%s[%zu]\"", src, key, sub, i);
            if (!json_is_string(item)) {
                kn_errf(err, errlen, "%s: expected a string", what);
                return QT_E_CONFIG;
            }
            rc = names ? qt__filter_add_name(f, json_string_value(item), what, err, errlen)
                       : qt__filter_add_type(f, json_string_value(item), what, err, errlen);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

static int get_backoff(const char *src, const char *key, json_t *v, float *out, char *err,
                       size_t errlen)
{
    double d = json_is_number(v) ? json_number_value(v) : NAN;
    /* A backoff is the fraction of F the maxabs maps to: > 0, and > 1
     * would deliberately overflow, which INC allows, so only bound it. */
    if (!(d > 0.0) || d > 1e6) {
        kn_errf(err, errlen, "%s: key \"scale_params.%s\": expected a number in (0, 1e6]", src,
                key);
        return QT_E_CONFIG;
    }
    *out = (float)d;
    return 0;
}

static void warn_key(qt_config *c, const char *src, const char *key, const char *why)
{
    c->n_warnings++;
    QT_LOG(KN_LOG_WARN, "%s: key \"%s\" ignored: %s", src, key, why);
}

static int parse_scale_params(qt_config *c, const char *src, json_t *v, char *err, size_t errlen)
{
    const char *key;
    json_t *x;
    int rc;

    if (!json_is_object(v)) {
        kn_errf(err, errlen, "%s: key \"scale_params\": expected an object", src);
        return QT_E_CONFIG;
    }
    json_object_foreach(v, key, x) {
        if (strcmp(key, "input_backoff") == 0)
            rc = get_backoff(src, key, x, &c->input_backoff, err, errlen);
        else if (strcmp(key, "weight_backoff") == 0)
            rc = get_backoff(src, key, x, &c->weight_backoff, err, errlen);
        else if (strcmp(key, "alpha") == 0 || strcmp(key, "weight_scales") == 0) {
            warn_key(c, src, key, "smoothquant parameter, smoothquant is not implemented");
            rc = 0;
        } else {
            kn_errf(err, errlen, "%s: key \"scale_params.%s\": unknown parameter (expected "
                    "input_backoff, weight_backoff)", src, key);
            rc = QT_E_UNKNOWN_KEY;
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int parse_key(qt_config *c, const char *src, const char *key, json_t *v, char *err,
                     size_t errlen)
{
    int e = 0, rc;

    if (strcmp(key, "dump_stats_path") == 0) {
        if (!json_is_string(v) || json_string_length(v) == 0) {
            kn_errf(err, errlen, "%s: key \"dump_stats_path\": expected a non-empty string", src);
            return QT_E_CONFIG;
        }
        free(c->dump_stats_path);
        return (c->dump_stats_path = strdup(json_string_value(v))) ? 0 : -ENOMEM;
    }
#define ENUM_KEY(name, tab, field, type)                                   \
    if (strcmp(key, name) == 0) {                                          \
        if ((rc = get_enum(src, key, v, tab, &e, err, errlen)) == 0)       \
            c->field = (type)e;                                            \
        return rc;                                                         \
    }
    ENUM_KEY("fp8_config", k_fp8, fmt, kn_fp8_format)
    ENUM_KEY("hp_dtype", k_hp, hp_dtype, qt_hp_dtype)
    ENUM_KEY("observer", k_obs, observer, qt_observer)
    ENUM_KEY("mode", k_mode, mode, qt_mode)
    ENUM_KEY("measure_exclude", k_excl, exclude, qt_measure_exclude)
    ENUM_KEY("device_for_scales", k_dev, device, qt_device)
#undef ENUM_KEY
    if (strcmp(key, "scale_method") == 0) {
        if (json_is_object(v)) {
            kn_errf(err, errlen, "%s: key \"scale_method\": the dict form (INC main) is not "
                    "supported by fp8d; use one of the method names", src);
            return QT_E_UNSUPPORTED;
        }
        if ((rc = get_enum(src, key, v, k_methods, &e, err, errlen)) == 0)
            c->method = (qt_scale_method)e;
        return rc;
    }
    if (strcmp(key, "allowlist") == 0 || strcmp(key, "whitelist") == 0)
        return parse_filter(&c->allow, src, key, v, err, errlen);
    if (strcmp(key, "blocklist") == 0 || strcmp(key, "blacklist") == 0)
        return parse_filter(&c->block, src, key, v, err, errlen);
    if (strcmp(key, "scale_params") == 0)
        return parse_scale_params(c, src, v, err, errlen);
    if (strcmp(key, "ignore_modules_wo_measures") == 0) {
        if (!json_is_boolean(v)) {
            kn_errf(err, errlen, "%s: key \"%s\": expected true or false", src, key);
            return QT_E_CONFIG;
        }
        c->ignore_unmeasured = json_is_true(v);
        return 0;
    }
    if (strcmp(key, "mod_dict") == 0) {
        if (!json_is_object(v) || json_object_size(v) != 0) {
            kn_errf(err, errlen, "%s: key \"mod_dict\": custom module types are not supported "
                    "(must be {})", src);
            return QT_E_UNSUPPORTED;
        }
        return 0;
    }
    for (size_t i = 0; i < sizeof(k_gaudi_keys) / sizeof(k_gaudi_keys[0]); i++) {
        if (strcmp(key, k_gaudi_keys[i].key) == 0) {
            warn_key(c, src, key, k_gaudi_keys[i].why);
            return 0;
        }
    }
    kn_errf(err, errlen, "%s: unknown key \"%s\" (neither fp8d nor INC's FP8Config defines it)",
            src, key);
    return QT_E_UNKNOWN_KEY;
}

int qt_config_parse(qt_config **out, const char *json_text, const char *source, char *err,
                    size_t errlen)
{
    const char *src = source != NULL ? source : "fp8 config";
    json_error_t je;
    json_t *root = NULL, *v;
    const char *key;
    qt_config *c = NULL;
    int rc = 0;

    *out = NULL;
    if ((root = json_loads(json_text, JSON_REJECT_DUPLICATES, &je)) == NULL) {
        kn_errf(err, errlen, "%s: line %d column %d: %s", src, je.line, je.column, je.text);
        return -EINVAL;
    }
    if (!json_is_object(root)) {
        kn_errf(err, errlen, "%s: expected a JSON object at the top level", src);
        rc = QT_E_CONFIG;
        goto fail;
    }
    if (json_object_get(root, "allowlist") && json_object_get(root, "whitelist")) {
        kn_errf(err, errlen, "%s: both \"allowlist\" and its legacy alias \"whitelist\" given", src);
        rc = QT_E_CONFIG;
        goto fail;
    }
    if (json_object_get(root, "blocklist") && json_object_get(root, "blacklist")) {
        kn_errf(err, errlen, "%s: both \"blocklist\" and its legacy alias \"blacklist\" given", src);
        rc = QT_E_CONFIG;
        goto fail;
    }
    if ((c = qt_config_new_default()) == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    json_object_foreach(root, key, v) {
        if ((rc = parse_key(c, src, key, v, err, errlen)) < 0)
            goto fail;
    }
    if (c->allow.n_names > 0 && c->allow.type_bits == (1u << QT_MOD_COUNT) - 1)
        QT_LOG(KN_LOG_WARN, "%s: allowlist.names has no effect while allowlist.types lists "
               "every supported type (INC main's rule)", src);
    json_decref(root);
    *out = c;
    return 0;

fail:
    json_decref(root);
    qt_config_free(c);
    return rc;
}

int qt_config_load(qt_config **out, const char *path, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len;
    int rc;

    *out = NULL;
    /* Configs are small; 1 MiB bounds what an accident can make us read. */
    if ((rc = qt__read_file(path, 1u << 20, &text, &len, err, errlen)) < 0)
        return rc;
    if (strlen(text) != len) {
        kn_errf(err, errlen, "%s: contains a NUL byte at offset %zu", path, strlen(text));
        free(text);
        return -EINVAL;
    }
    rc = qt_config_parse(out, text, path, err, errlen);
    free(text);
    return rc;
}

qt_mode qt_config_mode(const qt_config *c) { return c->mode; }
kn_fp8_format qt_config_fp8_format(const qt_config *c) { return c->fmt; }
qt_hp_dtype qt_config_hp_dtype(const qt_config *c) { return c->hp_dtype; }
qt_observer qt_config_observer(const qt_config *c) { return c->observer; }
qt_measure_exclude qt_config_measure_exclude(const qt_config *c) { return c->exclude; }
qt_scale_method qt_config_scale_method(const qt_config *c) { return c->method; }
qt_device qt_config_device(const qt_config *c) { return c->device; }
const char *qt_config_dump_stats_path(const qt_config *c) { return c->dump_stats_path; }
float qt_config_input_backoff(const qt_config *c) { return c->input_backoff; }
float qt_config_weight_backoff(const qt_config *c) { return c->weight_backoff; }
bool qt_config_ignore_unmeasured(const qt_config *c) { return c->ignore_unmeasured; }
int qt_config_warning_count(const qt_config *c) { return c->n_warnings; }

bool qt_config_selects(const qt_config *c, const char *name, qt_mod_type type)
{
    return qt__select(&c->allow, &c->block, name, type);
}

bool qt_config_measures_output(const qt_config *c, qt_mod_type t)
{
    if (t == QT_MOD_SOFTMAX || t == QT_MOD_FUSED_SDPA)
        return true;     /* their output scales are needed (§4.5) */
    return c->exclude != QT_EXCL_OUTPUT && c->exclude != QT_EXCL_ALL;
}

const char *qt_scale_method_name(qt_scale_method m)
{
    /* The first table row of a value is its canonical name. */
    return (unsigned)m < QT_SM_COUNT ? qt__enum_label(k_methods, (int)m) : "?";
}
