/* qt_select.c: module types and the allowlist/blocklist rule (§4.3 in
 * INC main's form, §6.2.11): POSIX ERE searched anywhere in the
 * state-dict name, allowlist types honoured, blocklist wins. */
#include "config.h"

#include <errno.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "quant/quant-int.h"

static const struct {
    const char *name;
    int inputs, outputs;
    bool weight;
} k_types[QT_MOD_COUNT] = {
    [QT_MOD_LINEAR]     = {"Linear", 1, 1, true},
    [QT_MOD_MATMUL]     = {"Matmul", 2, 1, false},
    [QT_MOD_KV_CACHE]   = {"KVCache", 1, 1, false},
    [QT_MOD_SOFTMAX]    = {"Softmax", 1, 1, false},
    [QT_MOD_FUSED_SDPA] = {"ModuleFusedSDPA", 3, 2, false},
};

/* Class names INC knows (v3.0 FP8_WHITE_LIST and the module table, plus
 * main's additions): accepted in configs, never matched by our modules. */
static const char *const k_inc_types[] = {
    "FalconLinear", "RowParallelLinear", "ColumnParallelLinear", "MergedColumnParallelLinear",
    "QKVParallelLinear", "Conv2d", "LoRACompatibleLinear", "LoRACompatibleConv", "LinearLayer",
    "LinearAllreduce", "ScopedLinearAllReduce", "LmHeadLinearAllreduce", "VLLMKVCache", "BMM",
    "B2BMatmul", "ParallelLMHead", "BlockSoftmaxConstMax", "ReplicatedLinear", "EmbeddingBag",
    "MoeMatmul", "MoeFP8Matmul", "DynamicMoeRuntimeDequantFP8", "VllmMixtureOfExpertsOp",
    "VllmMixtureOfExpertsOpFP8", "GaudiMixtralSparseMoeBlock", "RowParallelLinearAllreduce",
    "FusedMoE", "MixtralSparseMoeBlock", NULL,
};

const char *qt_mod_type_name(qt_mod_type t)
{
    return (unsigned)t < QT_MOD_COUNT ? k_types[t].name : "?";
}

static const char *strip_prefix(const char *s)   /* "torch.nn.Linear" -> "Linear" */
{
    const char *dot = strrchr(s, '.');
    return dot != NULL ? dot + 1 : s;
}

int qt_mod_type_parse(const char *s, qt_mod_type *out)
{
    const char *b = strip_prefix(s);
    for (int t = 0; t < QT_MOD_COUNT; t++) {
        if (strcasecmp(b, k_types[t].name) == 0) {
            *out = (qt_mod_type)t;
            return 0;
        }
    }
    if (strcasecmp(b, "FusedSDPA") == 0) {
        *out = QT_MOD_FUSED_SDPA;
        return 0;
    }
    return -EINVAL;
}

int qt_mod_type_inputs(qt_mod_type t) { return k_types[t].inputs; }
int qt_mod_type_outputs(qt_mod_type t) { return k_types[t].outputs; }
bool qt_mod_type_has_weight(qt_mod_type t) { return k_types[t].weight; }

void qt__filter_cleanup(qt__filter *f)
{
    regex_t *re = f->regexes;
    for (size_t i = 0; i < f->n_names; i++) {
        regfree(&re[i]);
        free(f->patterns[i]);
    }
    free(f->patterns);
    free(f->regexes);
    memset(f, 0, sizeof(*f));
}

/* Module-name patterns are short.  glibc's regcomp takes minutes and
 * gigabytes on stacked quantifiers ("a++++..."; found by fuzzing), and a
 * pattern can arrive over POST /calibrate: refuse long patterns and a
 * quantifier that directly follows another (outside brackets, unescaped). */
#define QT_PATTERN_MAX 256

static bool pattern_is_tame(const char *p, const char **why)
{
    bool prev_quant = false;

    if (strlen(p) > QT_PATTERN_MAX) {
        *why = "longer than 256 characters";
        return false;
    }
    for (; *p != '\0'; p++) {
        bool quant = false;
        if (*p == '\\') {
            if (p[1] != '\0')
                p++;
        } else if (*p == '[') {                    /* skip a bracket expression */
            p++;
            if (*p == '^') p++;
            if (*p == ']') p++;
            while (*p != '\0' && *p != ']') p++;
            if (*p == '\0') break;
        } else if (*p == '*' || *p == '+' || *p == '?' || *p == '{') {
            if (prev_quant) {
                *why = "a quantifier follows another quantifier";
                return false;
            }
            if (*p == '{')
                while (p[1] != '\0' && *p != '}') p++;
            quant = true;
        }
        prev_quant = quant;
    }
    return true;
}

int qt__filter_add_name(qt__filter *f, const char *pattern, const char *what, char *err,
                        size_t errlen)
{
    regex_t *re;
    char **pats;
    char msg[128];
    int rc;

    if ((re = realloc(f->regexes, (f->n_names + 1) * sizeof(regex_t))) == NULL)
        return -ENOMEM;
    f->regexes = re;
    if ((pats = realloc(f->patterns, (f->n_names + 1) * sizeof(char *))) == NULL)
        return -ENOMEM;
    f->patterns = pats;
    const char *why;
    if (!pattern_is_tame(pattern, &why)) {
        kn_errf(err, errlen, "%s: regular expression \"%.64s\" refused: %s", what, pattern, why);
        return QT_E_CONFIG;
    }
    /* REG_NOSUB: only "does it match anywhere" is needed (re.search). */
    if ((rc = regcomp(&re[f->n_names], pattern, REG_EXTENDED | REG_NOSUB)) != 0) {
        regerror(rc, &re[f->n_names], msg, sizeof(msg));
        regfree(&re[f->n_names]);
        kn_errf(err, errlen, "%s: invalid regular expression \"%s\": %s", what, pattern, msg);
        return QT_E_CONFIG;
    }
    if ((pats[f->n_names] = strdup(pattern)) == NULL) {
        regfree(&re[f->n_names]);
        return -ENOMEM;
    }
    f->n_names++;
    return 0;
}

int qt__filter_add_type(qt__filter *f, const char *type, const char *what, char *err,
                        size_t errlen)
{
    qt_mod_type t;

    f->n_types++;
    if (qt_mod_type_parse(type, &t) == 0) {
        f->type_bits |= 1u << t;
        return 0;
    }
    for (const char *const *p = k_inc_types; *p != NULL; p++)
        if (strcasecmp(strip_prefix(type), *p) == 0)
            return 0;
    kn_errf(err, errlen, "%s: unknown module type \"%s\" (ours: Linear, Matmul, KVCache, "
            "Softmax, ModuleFusedSDPA; or another INC class name)", what, type);
    return QT_E_CONFIG;
}

bool qt__filter_name_matches(const qt__filter *f, const char *name)
{
    const regex_t *re = f->regexes;
    for (size_t i = 0; i < f->n_names; i++)
        if (regexec(&re[i], name, 0, NULL, 0) == 0)
            return true;
    return false;
}

bool qt__select(const qt__filter *allow, const qt__filter *block, const char *name,
                qt_mod_type t)
{
    if ((unsigned)t >= QT_MOD_COUNT || (block->type_bits & (1u << t)))
        return false;
    bool allowed = (allow->type_bits & (1u << t)) || qt__filter_name_matches(allow, name) ||
                   (allow->n_names == 0 && allow->n_types == 0);
    return allowed && !qt__filter_name_matches(block, name);
}
