/* qt_measure_io.c: INC measurement files (§4.6) as JSON: snapshot of a
 * qt_modset, atomic write, validated read, load into a qt_modset, and the
 * element-wise-max merge of optimum-habana's unify_measurements (§4.9).
 *
 * FORMAT (INC's JSON layout, one file per rank):
 *   {"GlobalRank": null | int, "LocalRank": null | int,
 *    "Mode": "DynamicRange" | "Scale", ["NumSamples": int,]
 *    "Nodes": {"<module name>": {"inputs": [M, ...], "outputs": [M, ...],
 *                                "params": {"weight": M}}}}
 * where M is a [n,1] matrix ([[x0],[x1],...]; n = 1 per tensor, n = the
 * channel count per channel) of float32 values written as JSON numbers.
 * In Scale files a per-channel weight is {"0": out_scales, "1": in_scales}.
 * On read a plain number or a flat list is accepted for M as well.
 * outputs appear only if measured; params only for modules with weights.
 * INC itself reads only the .npz twin (§6.2.12); we read and write JSON. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "quant/quant-int.h"

#define MAX_T 8   /* tensors per slot in a file node */

typedef struct mtensor {
    float *v;
    size_t n;
} mtensor;

typedef struct mnode {
    char   *name;
    int     n_t[3];          /* tensors per slot (qt_slot order) */
    bool    has_outputs;     /* "outputs" key present */
    bool    weight_dict;     /* Scale files: {"0": ..., "1": ...} */
    mtensor t[3][MAX_T];
} mnode;

struct qt_measure {
    char   *source;          /* file name for messages */
    char   *mode;            /* "DynamicRange" | "Scale" */
    bool    global_null, local_null;
    int     global_rank, local_rank;
    long    num_samples;     /* < 0: absent */
    mnode  *nodes;
    size_t  n, cap;
};

static const char *const k_slot_key[3] = {"inputs", "params.weight", "outputs"};

static void node_cleanup(mnode *nd)
{
    free(nd->name);
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < MAX_T; i++)
            free(nd->t[s][i].v);
}

void qt_measure_free(qt_measure *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n; i++)
        node_cleanup(&m->nodes[i]);
    free(m->nodes);
    free(m->source);
    free(m->mode);
    free(m);
}

static qt_measure *measure_new(const char *source, const char *mode)
{
    qt_measure *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    m->source = strdup(source);
    m->mode = strdup(mode);
    m->global_null = true;
    m->local_null = true;
    m->num_samples = -1;
    if (m->source == NULL || m->mode == NULL) {
        qt_measure_free(m);
        return NULL;
    }
    return m;
}

static mnode *node_add(qt_measure *m, const char *name)
{
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 32;
        mnode *nodes = realloc(m->nodes, cap * sizeof(*nodes));
        if (nodes == NULL)
            return NULL;
        m->nodes = nodes;
        m->cap = cap;
    }
    mnode *nd = &m->nodes[m->n];
    memset(nd, 0, sizeof(*nd));
    if ((nd->name = strdup(name)) == NULL)
        return NULL;
    m->n++;
    return nd;
}

static const mnode *node_find(const qt_measure *m, const char *name)
{
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->nodes[i].name, name) == 0)
            return &m->nodes[i];
    return NULL;
}

static int tensor_set(mtensor *t, const float *v, size_t n)
{
    if ((t->v = malloc((n ? n : 1) * sizeof(float))) == NULL)
        return -ENOMEM;
    memcpy(t->v, v, n * sizeof(float));
    t->n = n;
    return 0;
}

size_t qt_measure_count(const qt_measure *m) { return m->n; }
const char *qt_measure_node_name(const qt_measure *m, size_t i)
{
    return i < m->n ? m->nodes[i].name : NULL;
}
const char *qt_measure_mode(const qt_measure *m) { return m->mode; }
int qt_measure_local_rank(const qt_measure *m, bool *is_null)
{
    if (is_null != NULL)
        *is_null = m->local_null;
    return m->local_rank;
}

float qt_measure_value(const qt_measure *m, const char *node, qt_slot slot, int idx, size_t j,
                       size_t *n_out)
{
    const mnode *nd = node_find(m, node);
    if (n_out != NULL)
        *n_out = 0;
    if (nd == NULL || (unsigned)slot > 2 || idx < 0 || idx >= nd->n_t[slot])
        return NAN;
    const mtensor *t = &nd->t[slot][idx];
    if (n_out != NULL)
        *n_out = t->n;
    return j < t->n ? t->v[j] : NAN;
}

/* ------------------------------------------------------------ snapshot */

qt_measure *qt_measure_from_modset(const qt_modset *s)
{
    qt_measure *m = measure_new("memory", "DynamicRange");
    if (m == NULL)
        return NULL;
    for (size_t i = 0; i < qt_modset_count(s); i++) {
        const qt_module *mod = qt_modset_at(s, i);
        if (!qt_module_was_observed(mod))
            continue;     /* INC leaves never-called modules out */
        mnode *nd = node_add(m, qt_module_name(mod));
        if (nd == NULL)
            goto fail;
        for (int sl = 0; sl < 3; sl++) {
            int nt = qt__module_n_tensors(mod, (qt_slot)sl);
            for (int k = 0; k < nt; k++) {
                size_t n;
                float one;
                const float *v = qt__module_measured_vec(mod, (qt_slot)sl, k, &n, &one);
                if (v == NULL)
                    break;        /* unobserved tensor: list ends here */
                if (tensor_set(&nd->t[sl][k], v, n) < 0)
                    goto fail;
                nd->n_t[sl] = k + 1;
            }
        }
        nd->has_outputs = nd->n_t[QT_SLOT_OUTPUT] > 0;
    }
    return m;

fail:
    qt_measure_free(m);
    return NULL;
}

qt_measure *qt_measure_scales_from_modset(const qt_modset *s)
{
    qt_measure *m = measure_new("memory", "Scale");
    if (m == NULL)
        return NULL;
    for (size_t i = 0; i < qt_modset_count(s); i++) {
        const qt_module *mod = qt_modset_at(s, i);
        size_t n;
        if (qt_module_descales(mod, QT_SLOT_INPUT, 0, &n) == NULL)
            continue;     /* no scales computed */
        mnode *nd = node_add(m, qt_module_name(mod));
        if (nd == NULL)
            goto fail;
        for (int sl = 0; sl < 3; sl++) {
            int nt = sl == QT_SLOT_OUTPUT ? qt_mod_type_outputs(qt_module_type(mod))
                                          : qt__module_n_tensors(mod, (qt_slot)sl);
            for (int k = 0; k < nt; k++) {
                const float *v = qt_module_descales(mod, (qt_slot)sl, k, &n);
                if (v == NULL)
                    break;
                if (tensor_set(&nd->t[sl][k], v, n) < 0)
                    goto fail;
                nd->n_t[sl] = k + 1;
            }
        }
        nd->has_outputs = nd->n_t[QT_SLOT_OUTPUT] > 0;
        if (nd->n_t[QT_SLOT_WEIGHT] == 1 && nd->t[QT_SLOT_WEIGHT][0].n > 1) {
            /* Per-channel weight: {0: out-channel scales, 1: in-channel
             * scales (all 1: only output channels are scaled)}. */
            float *ones = malloc(sizeof(float));
            if (ones == NULL)
                goto fail;
            ones[0] = 1.0f;
            nd->t[QT_SLOT_WEIGHT][1].v = ones;
            nd->t[QT_SLOT_WEIGHT][1].n = 1;
            nd->n_t[QT_SLOT_WEIGHT] = 2;
            nd->weight_dict = true;
        }
    }
    return m;

fail:
    qt_measure_free(m);
    return NULL;
}

/* --------------------------------------------------------------- write */

static json_t *matrix_json(const mtensor *t)
{
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < t->n; i++) {
        json_t *row = json_array();
        if (row == NULL || json_array_append_new(row, json_real((double)t->v[i])) < 0 ||
            json_array_append_new(a, row) < 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static json_t *measure_json(const qt_measure *m)
{
    json_t *root = json_object(), *nodes = json_object();
    bool ok = root != NULL && nodes != NULL;

    ok = ok && json_object_set_new(root, "GlobalRank", m->global_null ? json_null()
                                   : json_integer(m->global_rank)) == 0;
    ok = ok && json_object_set_new(root, "LocalRank", m->local_null ? json_null()
                                   : json_integer(m->local_rank)) == 0;
    ok = ok && json_object_set_new(root, "Mode", json_string(m->mode)) == 0;
    if (ok && m->num_samples >= 0)
        ok = json_object_set_new(root, "NumSamples", json_integer(m->num_samples)) == 0;
    for (size_t i = 0; ok && i < m->n; i++) {
        const mnode *nd = &m->nodes[i];
        json_t *o = json_object(), *ins = json_array();
        ok = o != NULL && ins != NULL && json_object_set_new(o, "inputs", ins) == 0;
        for (int k = 0; ok && k < nd->n_t[QT_SLOT_INPUT]; k++)
            ok = json_array_append_new(ins, matrix_json(&nd->t[QT_SLOT_INPUT][k])) == 0;
        if (ok && nd->has_outputs) {
            json_t *outs = json_array();
            ok = outs != NULL && json_object_set_new(o, "outputs", outs) == 0;
            for (int k = 0; ok && k < nd->n_t[QT_SLOT_OUTPUT]; k++)
                ok = json_array_append_new(outs, matrix_json(&nd->t[QT_SLOT_OUTPUT][k])) == 0;
        }
        if (ok && nd->n_t[QT_SLOT_WEIGHT] > 0) {
            json_t *params = json_object(), *w;
            if (nd->weight_dict) {
                w = json_object();
                for (int k = 0; w != NULL && k < nd->n_t[QT_SLOT_WEIGHT]; k++) {
                    char key[16];
                    snprintf(key, sizeof(key), "%d", k);
                    json_object_set_new(w, key, matrix_json(&nd->t[QT_SLOT_WEIGHT][k]));
                }
            } else {
                w = matrix_json(&nd->t[QT_SLOT_WEIGHT][0]);
            }
            ok = params != NULL && w != NULL && json_object_set_new(params, "weight", w) == 0 &&
                 json_object_set_new(o, "params", params) == 0;
        }
        ok = ok && json_object_set_new(nodes, nd->name, o) == 0;
    }
    ok = ok && json_object_set_new(root, "Nodes", nodes) == 0;
    if (!ok) {
        json_decref(root);
        return NULL;
    }
    return root;
}

static int write_json(json_t *root, const char *path, char *err, size_t errlen)
{
    char *text;
    int rc;

    if (root == NULL)
        return -ENOMEM;
    text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (text == NULL)
        return -ENOMEM;
    size_t len = strlen(text);
    text[len] = '\0';
    /* End with a newline, as Python's json.dump does not but editors like. */
    char *full = malloc(len + 2);
    if (full == NULL) {
        free(text);
        return -ENOMEM;
    }
    memcpy(full, text, len);
    full[len] = '\n';
    full[len + 1] = '\0';
    free(text);
    rc = qt__write_file_atomic(path, full, len + 1, err, errlen);
    free(full);
    return rc;
}

int qt_measure_write(const qt_measure *m, const char *path, char *err, size_t errlen)
{
    return write_json(measure_json(m), path, err, errlen);
}

int qt_measure_write_mod_list(const qt_modset *s, const char *path, char *err, size_t errlen)
{
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < qt_modset_count(s); i++) {
        if (json_array_append_new(a, json_string(qt_module_name(qt_modset_at(s, i)))) < 0) {
            json_decref(a);
            a = NULL;
        }
    }
    return write_json(a, path, err, errlen);
}

int qt_measure_path(const qt_config *c, qt_measure_file which, char *buf, size_t buf_size)
{
    const char *p = qt_config_dump_stats_path(c);
    const char *obs = qt_config_observer(c) == QT_OBS_MAXABS_PER_CHANNEL ? "maxabs_per_channel"
                                                                         : "maxabs";
    int k;

    switch (which) {
    case QT_FILE_MEASURE:
        k = snprintf(buf, buf_size, "%s_hooks_%s.json", p, obs);
        break;
    case QT_FILE_MOD_LIST:
        k = snprintf(buf, buf_size, "%s_hooks_%s_mod_list.json", p, obs);
        break;
    case QT_FILE_SCALE:
        k = snprintf(buf, buf_size, "%s_hooks_%s_%s.json", p, obs,
                     qt_scale_method_enum_name(qt_config_scale_method(c)));
        break;
    default:
        return -EINVAL;
    }
    if (k < 0 || (size_t)k >= buf_size)
        return -ENAMETOOLONG;
    return k;
}

qt_mode qt_config_resolve_mode(const qt_config *c)
{
    char path[4096];

    if (qt_config_mode(c) != QT_MODE_AUTO)
        return qt_config_mode(c);
    if (qt_measure_path(c, QT_FILE_MEASURE, path, sizeof(path)) < 0)
        return QT_MODE_MEASURE;
    return access(path, R_OK) == 0 ? QT_MODE_QUANTIZE : QT_MODE_MEASURE;
}

/* ---------------------------------------------------------------- read */

/* One measurement matrix: [n,1] list of lists, or a flat list, or a
 * number.  Values must be finite and >= 0 (> 0 for scales). */
static int parse_matrix(mtensor *t, json_t *v, bool scale, const char *src, const char *node,
                        const char *field, char *err, size_t errlen)
{
    size_t n = json_is_array(v) ? json_array_size(v) : 1, i;
    json_t *row;

    if (!json_is_array(v) && !json_is_number(v)) {
        kn_errf(err, errlen, "%s: node \"%s\": %s: expected a [n,1] list of numbers", src, node,
                field);
        return QT_E_BAD_MEASURE;
    }
    if (n == 0) {
        kn_errf(err, errlen, "%s: node \"%s\": %s: empty list", src, node, field);
        return QT_E_SHAPE;
    }
    if ((t->v = malloc(n * sizeof(float))) == NULL)
        return -ENOMEM;
    t->n = n;
    for (i = 0; i < n; i++) {
        json_t *x = json_is_array(v) ? json_array_get(v, i) : v;
        row = x;
        if (json_is_array(row)) {
            if (json_array_size(row) != 1) {
                kn_errf(err, errlen, "%s: node \"%s\": %s: row %zu has %zu columns, expected "
                        "a [n,1] matrix", src, node, field, i, json_array_size(row));
                return QT_E_SHAPE;
            }
            x = json_array_get(row, 0);
        }
        if (!json_is_number(x)) {
            kn_errf(err, errlen, "%s: node \"%s\": %s[%zu]: expected a number", src, node,
                    field, i);
            return QT_E_BAD_MEASURE;
        }
        double d = json_number_value(x);
        float f = (float)d;
        if (!isfinite(f) || d < 0.0 || (scale && !(f > 0.0f))) {
            kn_errf(err, errlen, "%s: node \"%s\": %s[%zu] = %g: %s", src, node, field, i, d,
                    scale ? "a scale must be finite and > 0"
                          : "a maxabs must be finite and >= 0 (float32)");
            return QT_E_NONFINITE;
        }
        t->v[i] = f;
    }
    return 0;
}

static int parse_tensor_list(mnode *nd, qt_slot sl, json_t *v, bool scale, const char *src,
                             char *err, size_t errlen)
{
    char field[48];
    size_t i;
    json_t *x;
    int rc;

    if (!json_is_array(v)) {
        kn_errf(err, errlen, "%s: node \"%s\": \"%s\": expected a list of matrices", src,
                nd->name, k_slot_key[sl]);
        return QT_E_BAD_MEASURE;
    }
    if (json_array_size(v) > MAX_T) {
        kn_errf(err, errlen, "%s: node \"%s\": \"%s\": %zu tensors, at most %d", src, nd->name,
                k_slot_key[sl], json_array_size(v), MAX_T);
        return QT_E_SHAPE;
    }
    json_array_foreach(v, i, x) {
        snprintf(field, sizeof(field), "%s[%zu]", k_slot_key[sl], i);
        if ((rc = parse_matrix(&nd->t[sl][i], x, scale, src, nd->name, field, err, errlen)) < 0)
            return rc;
        nd->n_t[sl] = (int)i + 1;
    }
    return 0;
}

static int parse_node(mnode *nd, json_t *o, bool scale, const char *src, char *err, size_t errlen)
{
    const char *key;
    json_t *v;
    int rc;

    if (!json_is_object(o)) {
        kn_errf(err, errlen, "%s: node \"%s\": expected an object", src, nd->name);
        return QT_E_BAD_MEASURE;
    }
    json_object_foreach(o, key, v) {
        if (strcmp(key, "inputs") == 0) {
            rc = parse_tensor_list(nd, QT_SLOT_INPUT, v, scale, src, err, errlen);
        } else if (strcmp(key, "outputs") == 0) {
            nd->has_outputs = true;
            rc = parse_tensor_list(nd, QT_SLOT_OUTPUT, v, scale, src, err, errlen);
        } else if (strcmp(key, "params") == 0) {
            json_t *w = json_object_get(v, "weight");
            if (!json_is_object(v) || w == NULL || json_object_size(v) != 1) {
                kn_errf(err, errlen, "%s: node \"%s\": \"params\": expected {\"weight\": ...}",
                        src, nd->name);
                return QT_E_BAD_MEASURE;
            }
            if (json_is_object(w) && scale) {
                /* Per-channel scale: {"0": out, "1": in}. */
                json_t *w0 = json_object_get(w, "0"), *w1 = json_object_get(w, "1");
                if (w0 == NULL || json_object_size(w) != (size_t)(w1 ? 2 : 1)) {
                    kn_errf(err, errlen, "%s: node \"%s\": params.weight: expected "
                            "{\"0\": out_scales, \"1\": in_scales}", src, nd->name);
                    return QT_E_BAD_MEASURE;
                }
                nd->weight_dict = true;
                rc = parse_matrix(&nd->t[QT_SLOT_WEIGHT][0], w0, true, src, nd->name,
                                  "params.weight.0", err, errlen);
                nd->n_t[QT_SLOT_WEIGHT] = 1;
                if (rc == 0 && w1 != NULL) {
                    rc = parse_matrix(&nd->t[QT_SLOT_WEIGHT][1], w1, true, src, nd->name,
                                      "params.weight.1", err, errlen);
                    nd->n_t[QT_SLOT_WEIGHT] = 2;
                }
            } else {
                rc = parse_matrix(&nd->t[QT_SLOT_WEIGHT][0], w, scale, src, nd->name,
                                  "params.weight", err, errlen);
                nd->n_t[QT_SLOT_WEIGHT] = 1;
            }
        } else {
            kn_errf(err, errlen, "%s: node \"%s\": unknown key \"%s\" (expected inputs, "
                    "outputs, params)", src, nd->name, key);
            return QT_E_BAD_MEASURE;
        }
        if (rc < 0)
            return rc;
    }
    if (json_object_get(o, "inputs") == NULL) {
        kn_errf(err, errlen, "%s: node \"%s\": missing \"inputs\"", src, nd->name);
        return QT_E_BAD_MEASURE;
    }
    return 0;
}

static int get_rank(json_t *v, const char *key, bool *is_null, int *rank, const char *src,
                    char *err, size_t errlen)
{
    if (v == NULL || json_is_null(v)) {
        *is_null = true;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < -1 || json_integer_value(v) > 1 << 20) {
        kn_errf(err, errlen, "%s: \"%s\": expected null or an integer >= -1", src, key);
        return QT_E_BAD_MEASURE;
    }
    *is_null = false;
    *rank = (int)json_integer_value(v);
    return 0;
}

int qt_measure_parse(qt_measure **out, const char *json_text, const char *source, char *err,
                     size_t errlen)
{
    const char *src = source != NULL ? source : "measurement";
    json_error_t je;
    json_t *root, *nodes, *mode, *v;
    qt_measure *m = NULL;
    const char *key;
    int rc;

    *out = NULL;
    if ((root = json_loads(json_text, JSON_REJECT_DUPLICATES, &je)) == NULL) {
        /* Python's json writes NaN/Infinity literals for non-finite
         * floats; JSON (and jansson) has none. */
        bool lit = strstr(je.text, "NaN") || strstr(je.text, "Infinity") ||
                   strstr(je.text, "'N'") || strstr(je.text, "'I'");
        kn_errf(err, errlen, "%s: line %d column %d: %s%s", src, je.line, je.column, je.text,
                lit ? " (a NaN or Infinity value: the measurement is not finite)" : "");
        return lit ? QT_E_NONFINITE : QT_E_BAD_MEASURE;
    }
    rc = QT_E_BAD_MEASURE;
    if (!json_is_object(root)) {
        kn_errf(err, errlen, "%s: expected a JSON object at the top level", src);
        goto fail;
    }
    json_object_foreach(root, key, v) {
        if (strcmp(key, "GlobalRank") && strcmp(key, "LocalRank") && strcmp(key, "Mode") &&
            strcmp(key, "Nodes") && strcmp(key, "NumSamples")) {
            kn_errf(err, errlen, "%s: unknown top-level key \"%s\" (expected GlobalRank, "
                    "LocalRank, Mode, NumSamples, Nodes)", src, key);
            goto fail;
        }
    }
    mode = json_object_get(root, "Mode");
    if (!json_is_string(mode) || (strcmp(json_string_value(mode), "DynamicRange") != 0 &&
                                  strcmp(json_string_value(mode), "Scale") != 0)) {
        kn_errf(err, errlen, "%s: \"Mode\": expected \"DynamicRange\" or \"Scale\"%s%s%s", src,
                json_is_string(mode) ? ", got \"" : "",
                json_is_string(mode) ? json_string_value(mode) : "",
                json_is_string(mode) ? "\"" : "");
        goto fail;
    }
    nodes = json_object_get(root, "Nodes");
    if (!json_is_object(nodes)) {
        kn_errf(err, errlen, "%s: \"Nodes\": missing or not an object", src);
        goto fail;
    }
    rc = -ENOMEM;
    if ((m = measure_new(src, json_string_value(mode))) == NULL)
        goto fail;
    rc = QT_E_BAD_MEASURE;
    if (get_rank(json_object_get(root, "GlobalRank"), "GlobalRank", &m->global_null,
                 &m->global_rank, src, err, errlen) < 0 ||
        get_rank(json_object_get(root, "LocalRank"), "LocalRank", &m->local_null,
                 &m->local_rank, src, err, errlen) < 0)
        goto fail;
    if ((v = json_object_get(root, "NumSamples")) != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < 0) {
            kn_errf(err, errlen, "%s: \"NumSamples\": expected an integer >= 0", src);
            goto fail;
        }
        m->num_samples = (long)json_integer_value(v);
    }
    bool scale = strcmp(m->mode, "Scale") == 0;
    json_object_foreach(nodes, key, v) {
        mnode *nd = node_add(m, key);
        if (nd == NULL) {
            rc = -ENOMEM;
            goto fail;
        }
        if ((rc = parse_node(nd, v, scale, src, err, errlen)) < 0)
            goto fail;
    }
    json_decref(root);
    *out = m;
    return 0;

fail:
    json_decref(root);
    qt_measure_free(m);
    return rc;
}

int qt_measure_read(qt_measure **out, const char *path, char *err, size_t errlen)
{
    char *text;
    size_t len;
    int rc;

    *out = NULL;
    /* Large models with per-channel stats reach tens of MB; 1 GiB bounds
     * an accident. */
    if ((rc = qt__read_file(path, (size_t)1 << 30, &text, &len, err, errlen)) < 0)
        return rc;
    if (strlen(text) != len) {
        kn_errf(err, errlen, "%s: contains a NUL byte at offset %zu", path, strlen(text));
        free(text);
        return QT_E_BAD_MEASURE;
    }
    rc = qt_measure_parse(out, text, path, err, errlen);
    free(text);
    return rc;
}

/* --------------------------------------------------------------- apply */

int qt_measure_apply(const qt_measure *m, qt_modset *s, bool ignore_missing, char *err,
                     size_t errlen)
{
    int n_missing = 0, rc;

    if (strcmp(m->mode, "DynamicRange") != 0) {
        kn_errf(err, errlen, "%s: Mode \"%s\" is not a measurement file (expected "
                "\"DynamicRange\")", m->source, m->mode);
        return QT_E_BAD_MEASURE;
    }
    /* Validate everything before changing any module, so that a bad file
     * leaves the set as it was. */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < qt_modset_count(s); i++) {
            qt_module *mod = qt_modset_at(s, i);
            const char *name = qt_module_name(mod);
            const mnode *nd = node_find(m, name);
            if (nd == NULL) {
                if (!ignore_missing) {
                    kn_errf(err, errlen, "%s: no measurement for module \"%s\"", m->source,
                            name);
                    return QT_E_NO_MEASURE;
                }
                n_missing += pass;
                continue;
            }
            for (int sl = 0; sl < 3; sl++) {
                int want = sl == QT_SLOT_OUTPUT ? qt_mod_type_outputs(qt_module_type(mod))
                                                : qt__module_n_tensors(mod, (qt_slot)sl);
                bool need = sl == QT_SLOT_INPUT ||
                            (sl == QT_SLOT_OUTPUT && qt__module_measures_output(mod));
                int have = nd->n_t[sl];
                if (have == 0 && !need)
                    continue;
                if (have != want) {
                    kn_errf(err, errlen, "%s: module \"%s\" (%s): \"%s\" has %d tensors, "
                            "expected %d", m->source, name,
                            qt_mod_type_name(qt_module_type(mod)), k_slot_key[sl], have, want);
                    return QT_E_SHAPE;
                }
                for (int k = 0; k < have; k++) {
                    size_t exp = qt__module_expected_len(mod, (qt_slot)sl, k);
                    if (pass == 0 && exp != 0 && nd->t[sl][k].n != exp) {
                        kn_errf(err, errlen, "%s: module \"%s\": \"%s[%d]\" is [%zu,1], "
                                "expected [%zu,1]", m->source, name, k_slot_key[sl], k,
                                nd->t[sl][k].n, exp);
                        return QT_E_SHAPE;
                    }
                    if (pass == 1 &&
                        (rc = qt__module_set_measured(mod, (qt_slot)sl, k, nd->t[sl][k].v,
                                                      nd->t[sl][k].n, err, errlen)) < 0)
                        return rc;
                }
            }
        }
    }
    for (size_t i = 0; i < m->n; i++)
        if (qt_modset_find(s, m->nodes[i].name) == NULL)
            QT_LOG(KN_LOG_WARN, "%s: node \"%s\" matches no selected module; skipped",
                   m->source, m->nodes[i].name);
    return n_missing;
}

/* --------------------------------------------------------------- merge */

int qt_measure_merge(qt_measure **out, const qt_measure *const *in, size_t n, char *err,
                     size_t errlen)
{
    qt_measure *m;
    int rc;

    *out = NULL;
    if (n == 0) {
        kn_errf(err, errlen, "merge: no input files");
        return -EINVAL;
    }
    for (size_t f = 1; f < n; f++) {
        if (strcmp(in[f]->mode, in[0]->mode) != 0) {
            kn_errf(err, errlen, "merge: %s has Mode \"%s\", %s has \"%s\"", in[0]->source,
                    in[0]->mode, in[f]->source, in[f]->mode);
            return QT_E_MISMATCH;
        }
        /* unify_measurements fails on a node missing in another file; we
         * check both directions so the order of arguments does not matter. */
        for (size_t i = 0; i < in[f]->n; i++) {
            if (node_find(in[0], in[f]->nodes[i].name) == NULL) {
                kn_errf(err, errlen, "merge: node \"%s\" is in %s but not in %s",
                        in[f]->nodes[i].name, in[f]->source, in[0]->source);
                return QT_E_MISMATCH;
            }
        }
    }
    if ((m = measure_new("merged", in[0]->mode)) == NULL)
        return -ENOMEM;
    m->local_null = false;
    m->local_rank = -1;          /* unify: a single group */
    for (size_t i = 0; i < in[0]->n; i++) {
        const mnode *a = &in[0]->nodes[i];
        mnode *nd = node_add(m, a->name);
        rc = -ENOMEM;
        if (nd == NULL)
            goto fail;
        nd->has_outputs = a->has_outputs;
        nd->weight_dict = a->weight_dict;
        for (int sl = 0; sl < 3; sl++) {
            nd->n_t[sl] = a->n_t[sl];
            for (int k = 0; k < a->n_t[sl]; k++)
                if (tensor_set(&nd->t[sl][k], a->t[sl][k].v, a->t[sl][k].n) < 0)
                    goto fail;
        }
        for (size_t f = 1; f < n; f++) {
            const mnode *b = node_find(in[f], a->name);
            rc = QT_E_MISMATCH;
            if (b == NULL) {
                kn_errf(err, errlen, "merge: node \"%s\" is in %s but not in %s", a->name,
                        in[0]->source, in[f]->source);
                goto fail;
            }
            for (int sl = 0; sl < 3; sl++) {
                if (b->n_t[sl] != a->n_t[sl] || b->weight_dict != a->weight_dict) {
                    kn_errf(err, errlen, "merge: node \"%s\": \"%s\" has %d tensors in %s and "
                            "%d in %s", a->name, k_slot_key[sl], a->n_t[sl], in[0]->source,
                            b->n_t[sl], in[f]->source);
                    goto fail;
                }
                for (int k = 0; k < a->n_t[sl]; k++) {
                    mtensor *t = &nd->t[sl][k];
                    if (b->t[sl][k].n != t->n) {
                        kn_errf(err, errlen, "merge: node \"%s\": \"%s[%d]\" is [%zu,1] in %s "
                                "and [%zu,1] in %s", a->name, k_slot_key[sl], k, t->n,
                                in[0]->source, b->t[sl][k].n, in[f]->source);
                        goto fail;
                    }
                    for (size_t j = 0; j < t->n; j++)
                        t->v[j] = fmaxf(t->v[j], b->t[sl][k].v[j]);
                }
            }
        }
    }
    *out = m;
    return 0;

fail:
    qt_measure_free(m);
    return rc;
}
