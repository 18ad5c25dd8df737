/* qt_recipe_json.c: the DelayedScaling recipe as JSON, with the Python
 * field names (§2.2, §6.1 "extra state"): parse with validation, format. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "quant/quant-int.h"

static const qt__enum_name k_formats[] = {
    {"E4M3", QT_FORMAT_E4M3}, {"E5M2", QT_FORMAT_E5M2}, {"HYBRID", QT_FORMAT_HYBRID}, {NULL, 0},
};
static const qt__enum_name k_algos[] = {
    {"max", QT_AMAX_MAX}, {"most_recent", QT_AMAX_MOST_RECENT}, {NULL, 0},
};
static const qt__enum_name k_rules[] = {
    {"pow2_down", QT_SCALE_POW2_DOWN}, {"exact", QT_SCALE_EXACT}, {NULL, 0},
};

/* An int field within [lo, hi]; JSON reals with an integral value are
 * refused too: Python's dataclass holds ints. */
static int get_int(json_t *v, const char *key, long lo, long hi, int *out, char *err,
                   size_t errlen)
{
    if (!json_is_integer(v)) {
        kn_errf(err, errlen, "recipe field \"%s\": expected an integer", key);
        return QT_E_CONFIG;
    }
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi) {
        kn_errf(err, errlen, "recipe field \"%s\": %lld is outside [%ld, %ld]", key,
                (long long)x, lo, hi);
        return QT_E_CONFIG;
    }
    *out = (int)x;
    return 0;
}

static int get_enum(json_t *v, const char *key, const qt__enum_name *tab, int *out,
                    char *err, size_t errlen)
{
    char allowed[128];
    int e;

    qt__enum_list(tab, allowed, sizeof(allowed));
    if (!json_is_string(v)) {
        kn_errf(err, errlen, "recipe field \"%s\": expected a string (%s)", key, allowed);
        return QT_E_CONFIG;
    }
    if ((e = qt__enum_lookup(tab, json_string_value(v))) < 0) {
        kn_errf(err, errlen, "recipe field \"%s\": unknown value \"%s\" (expected %s)", key,
                json_string_value(v), allowed);
        return QT_E_CONFIG;
    }
    *out = e;
    return 0;
}

static int parse_field(qt_recipe *r, const char *key, json_t *v, char *err, size_t errlen)
{
    int e = 0, rc;

    if (strcmp(key, "margin") == 0)
        return get_int(v, key, -64, 64, &r->margin, err, errlen);
    if (strcmp(key, "interval") == 0)   /* accepted, never read (§2.2) */
        return get_int(v, key, INT_MIN, INT_MAX, &r->interval, err, errlen);
    if (strcmp(key, "amax_history_len") == 0)
        return get_int(v, key, 1, 1 << 20, &r->amax_history_len, err, errlen);
    if (strcmp(key, "fp8_format") == 0) {
        if ((rc = get_enum(v, key, k_formats, &e, err, errlen)) == 0)
            r->fp8_format = (qt_format)e;
        return rc;
    }
    if (strcmp(key, "amax_compute_algo") == 0) {
        if ((rc = get_enum(v, key, k_algos, &e, err, errlen)) == 0)
            r->amax_compute_algo = (qt_amax_algo)e;
        return rc;
    }
    if (strcmp(key, "scale_rule") == 0) {
        if ((rc = get_enum(v, key, k_rules, &e, err, errlen)) == 0)
            r->scale_rule = (qt_scale_rule)e;
        return rc;
    }
    if (strcmp(key, "reduce_amax") == 0) {
        if (!json_is_boolean(v)) {
            kn_errf(err, errlen, "recipe field \"reduce_amax\": expected true or false");
            return QT_E_CONFIG;
        }
        r->reduce_amax = json_is_true(v);
        return 0;
    }
    kn_errf(err, errlen, "recipe: unknown field \"%s\" (expected margin, interval, fp8_format, "
            "amax_history_len, amax_compute_algo, scale_rule, reduce_amax)", key);
    return QT_E_UNKNOWN_KEY;
}

int qt_recipe_parse(qt_recipe *r, const char *json_text, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root, *v;
    const char *key;
    qt_recipe tmp;
    int rc = 0;

    qt_recipe_default(&tmp);
    if ((root = json_loads(json_text, JSON_REJECT_DUPLICATES, &je)) == NULL) {
        kn_errf(err, errlen, "recipe: line %d column %d: %s", je.line, je.column, je.text);
        return -EINVAL;
    }
    if (!json_is_object(root)) {
        kn_errf(err, errlen, "recipe: expected a JSON object");
        json_decref(root);
        return QT_E_CONFIG;
    }
    json_object_foreach(root, key, v) {
        if ((rc = parse_field(&tmp, key, v, err, errlen)) < 0)
            break;
    }
    json_decref(root);
    if (rc < 0)
        return rc;
    if (tmp.fp8_format == QT_FORMAT_E5M2)
        QT_LOG(KN_LOG_WARN, "recipe fp8_format E5M2: accepted (IPEX), TE rejects it for training");
    *r = tmp;
    return 0;
}

int qt_recipe_format(const qt_recipe *r, char *buf, size_t buf_size)
{
    int k = snprintf(buf, buf_size,
                     "{\"margin\": %d, \"interval\": %d, \"fp8_format\": \"%s\", "
                     "\"amax_history_len\": %d, \"amax_compute_algo\": \"%s\", "
                     "\"scale_rule\": \"%s\", \"reduce_amax\": %s}",
                     r->margin, r->interval, qt_format_name(r->fp8_format), r->amax_history_len,
                     qt__enum_label(k_algos, (int)r->amax_compute_algo),
                     qt__enum_label(k_rules, (int)r->scale_rule),
                     r->reduce_amax ? "true" : "false");
    if (k < 0 || (size_t)k >= buf_size)
        return -ENOSPC;
    return k;
}
