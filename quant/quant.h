/* quant.h: FP8 quantization policy: formats, the DelayedScaling recipe
 * (TE/IPEX) with its amax history, the INC FP8Config, the scale methods,
 * module selection (allowlist/blocklist), the maxabs observers, per-module
 * quantizer state and INC measurement files.  The spec is
 * ../shared/docs/fp8-semantics.md; section numbers below refer to it.
 *
 * Scale conventions (§6.2.1): TE/IPEX use a multiplier ("mult":
 * q = fp8(x * mult)); INC uses a divisor ("descale": q = fp8(x / s),
 * x ~ q * s).  Every scale here is stored as both, descale = 1 / mult;
 * INC files hold descales.
 *
 * Main objects:
 *   qt_recipe   plain struct: DelayedScaling fields (§2.2)
 *   qt_history  opaque: one scaling group (n slots, amax history, scales)
 *   qt_config   opaque: a parsed, validated FP8Config (§4.2)
 *   qt_modset   opaque: quantizer state of every selected module of a model
 *   qt_module   opaque: one module's state (borrowed from its qt_modset)
 *   qt_measure  opaque: an INC measurement file in memory (§4.6)
 * Pure functions (scale methods, observers) work on caller buffers.
 *
 * Ownership: the creator frees (_new/_free, _free accepts NULL).  Strings
 * passed in are copied.  Thread: quant/ is called from the engine thread
 * only, except qt_history_record and qt_module_record_amax, which may be
 * called concurrently from several threads (atomic max).  Nothing here
 * starts threads or parallel regions.
 */
#ifndef FP8D_QUANT_H
#define FP8D_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"

/* ---------------------------------------------------------------- errors */

#define QT_ERROR_LIST(X)                                                       \
    X(QT_E_CONFIG,       -2001, "invalid FP8 configuration")                   \
    X(QT_E_UNKNOWN_KEY,  -2002, "unknown configuration key")                   \
    X(QT_E_UNSUPPORTED,  -2003, "configuration value not supported on CPU")    \
    X(QT_E_BAD_MEASURE,  -2004, "measurement file is malformed")               \
    X(QT_E_NO_MEASURE,   -2005, "module has no measurement")                   \
    X(QT_E_SHAPE,        -2006, "measurement shape does not match the module") \
    X(QT_E_NONFINITE,    -2007, "measurement holds a NaN, infinite or negative value") \
    X(QT_E_MISMATCH,     -2008, "measurement files do not describe the same modules") \
    X(QT_E_MODE,         -2009, "operation not allowed in this mode")          \
    X(QT_E_DUPLICATE,    -2010, "module registered twice")

enum qt_error {
#define QT_ERR_ENUM_(name, val, msg) name = (val),
    QT_ERROR_LIST(QT_ERR_ENUM_)
#undef QT_ERR_ENUM_
};

/* Static string for rc; codes outside -2000..-2999 go to kn_strerror(). */
const char *qt_strerror(int rc);

/* --------------------------------------------------------------- formats */

/* Stable numbering (stored in files); append only. */
typedef enum qt_format {
    QT_FORMAT_E4M3   = 0,   /* every tensor E4M3 (448, 448) */
    QT_FORMAT_E5M2   = 1,   /* every tensor E5M2 (57344, 57344) */
    QT_FORMAT_HYBRID = 2,   /* forward E4M3, backward (grad) E5M2 */
} qt_format;

/* The codec format of a forward (input, weight, output) or backward
 * (grad_output, grad_input) tensor under fmt (§2.1). */
kn_fp8_format qt_format_tensor(qt_format fmt, bool forward);
float         qt_format_max_fwd(qt_format fmt);   /* 448 or 57344 */
float         qt_format_max_bwd(qt_format fmt);
const char   *qt_format_name(qt_format fmt);       /* "E4M3", "E5M2", "HYBRID" */

/* --------------------------------------------- DelayedScaling (§2.2-2.6) */

typedef enum qt_amax_algo { QT_AMAX_MAX = 0, QT_AMAX_MOST_RECENT = 1 } qt_amax_algo;
typedef enum qt_scale_rule {
    QT_SCALE_POW2_DOWN = 0,  /* IPEX / TE before PR #427: 2^floor(log2(F/amax)) - margin */
    QT_SCALE_EXACT     = 1,  /* TE main: F * 2^-margin / amax */
} qt_scale_rule;

/* Plain data; fill with qt_recipe_default() and change fields.  JSON names
 * (qt_recipe_parse/format) are the Python ones: margin, interval,
 * fp8_format, amax_history_len, amax_compute_algo, plus ours scale_rule
 * ("pow2_down" | "exact") and reduce_amax. */
typedef struct qt_recipe {
    int           margin;            /* default 0; headroom 2^-margin */
    int           interval;          /* default 1; accepted and ignored (never read by TE/IPEX) */
    qt_format     fp8_format;        /* default HYBRID */
    int           amax_history_len;  /* default 1024; >= 1 */
    qt_amax_algo  amax_compute_algo; /* default MAX */
    qt_scale_rule scale_rule;        /* default POW2_DOWN (IPEX, §6.2.2) */
    bool          reduce_amax;       /* default true; no-op in one process */
} qt_recipe;

void qt_recipe_default(qt_recipe *r);

/* Parses a JSON object with the fields above (any subset; the rest keep
 * their defaults); enum values case-insensitive ("E4M3", "max").  An
 * unknown key or bad value is an error naming it (-EINVAL / QT_E_*).
 * Writes E5M2 warnings (TE rejects it for training) through kn_log. */
int qt_recipe_parse(qt_recipe *r, const char *json_text, char *err, size_t errlen);

/* Writes the recipe as one JSON object into buf (NUL terminated).
 * Returns the length, or -ENOSPC when buf is too small. */
int qt_recipe_format(const qt_recipe *r, char *buf, size_t buf_size);

/* The next multiplier from amax (§2.6 with TE's guards, §6.1):
 * amax 0, NaN or inf keeps old_mult; a result beyond FLT_MAX (tiny amax)
 * clamps to FLT_MAX (EXACT) or 2^127 (POW2_DOWN).  fmax = F of the slot. */
float qt_recipe_mult(const qt_recipe *r, float amax, float fmax, float old_mult);

/* One scaling group ("fp8_meta" scaling_fwd or scaling_bwd, §2.3):
 * n_slots tensors, each with an amax accumulator for the current step,
 * len-1 completed steps, the scale in use (mult, descale), and counters.
 * Slots start with mult = descale = 1 and zero history. */
typedef struct qt_history qt_history;

/* fmax[n_slots]: F of each slot (copied).  Returns NULL on bad arguments
 * (n_slots < 1, len < 1) or out of memory. */
qt_history *qt_history_new(int n_slots, int len, const float *fmax);
void        qt_history_free(qt_history *h);
int         qt_history_len(const qt_history *h);
int         qt_history_slots(const qt_history *h);

/* Atomic max of amax into the slot's current accumulator.  NaN is not
 * recorded but counted; +inf is recorded and counted (§1.5, §6.2.10).
 * Thread: any (concurrent callers allowed). */
void qt_history_record(qt_history *h, int slot, float amax);

/* The update step for every slot (§2.4, fixing IPEX's L = 1 bug):
 * 1. select: max over the accumulator and the len-1 completed values
 *    (MAX) or the accumulator (MOST_RECENT), copied before clearing;
 * 2. roll: the accumulator becomes the newest completed value, the oldest
 *    drops out; clear the accumulator;
 * 3. mult = qt_recipe_mult(r, selected, fmax, mult); descale = 1/mult.
 * amax_sel (may be NULL) receives the n_slots selected values.
 * r->amax_history_len must equal the group's len (else -EINVAL). */
int qt_history_update(qt_history *h, const qt_recipe *r, float *amax_sel);

/* Export/import in IPEX's row order: rows[len][n_slots] row-major, row 0
 * the current accumulator, rows 1..len-1 oldest -> newest (§2.4, §3.4). */
void qt_history_export(const qt_history *h, float *rows);
/* Rejects NaN and negative values with -EINVAL naming row and slot. */
int  qt_history_import(qt_history *h, const float *rows, char *err, size_t errlen);

float    qt_history_mult(const qt_history *h, int slot);
float    qt_history_descale(const qt_history *h, int slot);
/* Sets mult (and descale = 1/mult); mult must be finite and > 0. */
int      qt_history_set_mult(qt_history *h, int slot, float mult);
uint64_t qt_history_nan_count(const qt_history *h, int slot);
uint64_t qt_history_inf_count(const qt_history *h, int slot);

/* ------------------------------------------------------- module types */

/* Stable numbering; append only.  Names are INC's class names. */
typedef enum qt_mod_type {
    QT_MOD_LINEAR     = 0,   /* "Linear": 1 input, weight [out,in], 1 output */
    QT_MOD_MATMUL     = 1,   /* "Matmul": 2 inputs, 1 output */
    QT_MOD_KV_CACHE   = 2,   /* "KVCache": 1 input, 1 output */
    QT_MOD_SOFTMAX    = 3,   /* "Softmax": 1 input, 1 output (always measured) */
    QT_MOD_FUSED_SDPA = 4,   /* "ModuleFusedSDPA": q,k,v; output and softmax amax */
    QT_MOD_COUNT
} qt_mod_type;

const char *qt_mod_type_name(qt_mod_type t);
/* Accepts INC's class names, case-insensitive, with an optional dotted
 * prefix ("torch.nn.Linear"), and "FusedSDPA".  -EINVAL if not ours. */
int qt_mod_type_parse(const char *s, qt_mod_type *out);
int qt_mod_type_inputs(qt_mod_type t);    /* 1, 2, 1, 1, 3 */
int qt_mod_type_outputs(qt_mod_type t);   /* 1, 1, 1, 1, 2 */
bool qt_mod_type_has_weight(qt_mod_type t);

/* ------------------------------------------------------ FP8Config (§4.2) */

typedef enum qt_mode {
    QT_MODE_OFF = 0,        /* high precision, nothing observed (INC "NONE") */
    QT_MODE_MEASURE = 1,
    QT_MODE_QUANTIZE = 2,
    QT_MODE_AUTO = 3,       /* measurements present -> QUANTIZE, else MEASURE */
} qt_mode;
typedef enum qt_hp_dtype { QT_HP_BF16 = 0, QT_HP_FP16 = 1, QT_HP_FP32 = 2 } qt_hp_dtype;
typedef enum qt_observer { QT_OBS_MAXABS = 0, QT_OBS_MAXABS_PER_CHANNEL = 1 } qt_observer;
typedef enum qt_measure_exclude {
    QT_EXCL_NONE = 0, QT_EXCL_OUTPUT = 1, QT_EXCL_INPUT = 2, QT_EXCL_ALL = 3, QT_EXCL_PARAMS = 4,
} qt_measure_exclude;
typedef enum qt_device { QT_DEV_GAUDI3 = 0, QT_DEV_GAUDI2 = 1 } qt_device;

/* Stable numbering; append only.  Strings are INC's config values. */
typedef enum qt_scale_method {
    QT_SM_UNIT_SCALE = 0,                          /* "unit_scale" (and "without_scale") */
    QT_SM_MAXABS_HW,                               /* "maxabs_hw" (default) */
    QT_SM_MAXABS_POW2,                             /* "maxabs_pow2" */
    QT_SM_MAXABS_ARBITRARY,                        /* "maxabs_arbitrary" */
    QT_SM_MAXABS_HW_OPT_WEIGHT,                    /* "maxabs_hw_opt_weight" */
    QT_SM_MAXABS_POW2_OPT_WEIGHT,                  /* "maxabs_pow2_opt_weight" */
    QT_SM_ACT_MAXABS_HW_WEIGHTS_PCS_MAXABS_POW2,   /* per-output-channel weights */
    QT_SM_ACT_MAXABS_HW_WEIGHTS_PCS_OPT_POW2,
    QT_SM_ACT_MAXABS_POW2_WEIGHTS_PCS_MAXABS_POW2,
    QT_SM_ACT_MAXABS_POW2_WEIGHTS_PCS_OPT_POW2,
    QT_SM_HW_ALIGNED_SINGLE_SCALE,                 /* INC >= 3.1: first HW scale (16 / 128) */
    QT_SM_COUNT
} qt_scale_method;

const char *qt_scale_method_name(qt_scale_method m);        /* "maxabs_hw" */
const char *qt_scale_method_enum_name(qt_scale_method m);   /* "MAXABS_HW": scale file names */
bool        qt_scale_method_per_channel(qt_scale_method m);

typedef struct qt_config qt_config;

/* Defaults of INC's FP8Config (§4.2, §6.1): dump_stats_path
 * "./hqt_output/measure", E4M3, bf16, maxabs, mode AUTO, maxabs_hw,
 * measure_exclude OUTPUT, allowlist types = every type we support,
 * blocklist empty, device_for_scales gaudi3, backoffs 0.25 / 0.5,
 * ignore_modules_wo_measures true (§6.1 "unmeasured modules").
 * Returns NULL when out of memory. */
qt_config *qt_config_new_default(void);

/* Parses and validates an FP8Config JSON text.  source names the text in
 * messages (a file name).  Keys INC defines that have no effect on a CPU
 * (measure_on_hpu, use_qdq, scale_format, fake_quant, recalc_scales, ...)
 * are accepted with one warning each naming the key, written through
 * kn_log and counted (qt_config_warning_count).  A key neither we nor
 * INC define, a value of the wrong type, an unknown enum string or a bad
 * regex is an error naming the key and value: QT_E_UNKNOWN_KEY,
 * QT_E_CONFIG, QT_E_UNSUPPORTED (INC values we cannot honour, e.g.
 * observer "save"), or -EINVAL for text that is not JSON.  *out is NULL
 * on error. */
int qt_config_parse(qt_config **out, const char *json_text, const char *source,
                    char *err, size_t errlen);
/* Reads path and parses it (-errno from open/read). */
int qt_config_load(qt_config **out, const char *path, char *err, size_t errlen);
void qt_config_free(qt_config *c);

qt_mode            qt_config_mode(const qt_config *c);
kn_fp8_format      qt_config_fp8_format(const qt_config *c);
qt_hp_dtype        qt_config_hp_dtype(const qt_config *c);
qt_observer        qt_config_observer(const qt_config *c);
qt_measure_exclude qt_config_measure_exclude(const qt_config *c);
qt_scale_method    qt_config_scale_method(const qt_config *c);
qt_device          qt_config_device(const qt_config *c);
const char        *qt_config_dump_stats_path(const qt_config *c); /* borrowed */
float              qt_config_input_backoff(const qt_config *c);
float              qt_config_weight_backoff(const qt_config *c);
bool               qt_config_ignore_unmeasured(const qt_config *c);
int                qt_config_warning_count(const qt_config *c);

/* Selection (§4.3, main's rule, §6.2.11): true when type is not in
 * blocklist.types, and (type is in allowlist.types, or an allowlist name
 * regex matches, or both allowlist lists are empty), and no blocklist
 * name regex matches.  Regexes are POSIX ERE searched anywhere in name
 * (an unescaped '.' matches any character).  Blocklist wins. */
bool qt_config_selects(const qt_config *c, const char *name, qt_mod_type type);

/* Whether the output of a module of type t is observed: softmax and fused
 * SDPA always; others unless measure_exclude is OUTPUT or ALL (§4.5). */
bool qt_config_measures_output(const qt_config *c, qt_mod_type t);

/* ----------------------------------------------- scale methods (§4.7) */

/* The parameters of a scale computation (fill with qt_scale_params_of). */
typedef struct qt_scale_params {
    qt_scale_method method;
    kn_fp8_format   fmt;             /* target format of the tensor */
    qt_device       device;          /* HW scale set and E4M3 F (gaudi2: 240) */
    float           input_backoff;   /* activations: default 0.25 */
    float           weight_backoff;  /* weights: default 0.5 */
} qt_scale_params;

void qt_scale_params_of(qt_scale_params *p, const qt_config *c);

/* INC's full scale F: 57344 (E5M2), 448 (E4M3) or 240 (E4M3, gaudi2). */
float qt_fullscale(kn_fp8_format fmt, qt_device dev);
/* 2^ceil(log2 s) for finite s > 0 (exact); 0 for s <= 0, inf for inf. */
float qt_pow2up(float s);
/* INC's hw_aligned(s): pow2up, then to the device's exponent step,
 * clamped to [2^-8, 2^4] (gaudi2) or [2^-55, 2^7] (gaudi3). */
float qt_hw_align(float s, qt_device dev);

/* The activation descale (divisor) for measured maxabs m under p.
 * Degenerate m (0, NaN, inf) or a result whose inverse is not finite
 * gives 1.0 and sets *degenerate (may be NULL) (§6.2.5). */
float qt_scale_act(const qt_scale_params *p, float m, bool *degenerate);

/* Weight descales for w[rows][cols] (row-major, rows = output channels).
 * Per-tensor methods write scales[0]; per-channel methods scales[rows].
 * Opt methods run the MSE search with the saturating codec from
 * kn_active() (kn_init must have run).  Returns the number of degenerate
 * (zero / non-finite) tensors or rows that got 1.0, or -ENOMEM. */
int qt_scale_weight(const qt_scale_params *p, const float *w, size_t rows, size_t cols,
                    float *scales);

/* ------------------------------------------------ observers (§4.5) */

/* maxabs over x[n]: NaN ignored and counted into *n_nan (may be NULL). */
float qt_observe_maxabs(const float *x, size_t n, size_t *n_nan);
/* Per-channel running max: x viewed as [outer][n_ch][inner] row-major;
 * state[c] = max(state[c], max |x[o][c][i]|).  Axis -1 of [rows, n_ch]:
 * outer = rows, inner = 1; axis 0 of a weight [out,in]: outer = 1,
 * inner = in; axis -2 of [b, r, c]: outer = b, inner = c.
 * Returns the number of NaNs seen (not recorded). */
size_t qt_observe_maxabs_channels(float *state, const float *x, size_t outer,
                                  size_t n_ch, size_t inner);

/* ------------------------------------------ per-module state (issue 5) */

typedef struct qt_modset qt_modset;
typedef struct qt_module qt_module;

typedef enum qt_slot { QT_SLOT_INPUT = 0, QT_SLOT_WEIGHT = 1, QT_SLOT_OUTPUT = 2 } qt_slot;

/* Creates an empty set using c's observer, measure_exclude and scale
 * parameters (c is copied where needed; it may be freed afterwards) and,
 * if recipe is not NULL, a delayed-scaling history per module (slots:
 * inputs..., weight, outputs..., F from the recipe's forward format).
 * Returns NULL when out of memory. */
qt_modset *qt_modset_new(const qt_config *c, const qt_recipe *recipe);
void       qt_modset_free(qt_modset *s);

/* Adds module name (state-dict path, copied) of type t; w_rows/w_cols
 * the weight shape for Linear (ignored otherwise).  n_ch_in: channel
 * count of inputs for the per-channel observer (0 with maxabs).  Does not
 * consult the allowlist: call qt_config_selects() first.
 * QT_E_DUPLICATE if the name exists.  *out (may be NULL) borrowed, valid
 * until qt_modset_free. */
int qt_modset_add(qt_modset *s, const char *name, qt_mod_type t, size_t w_rows,
                  size_t w_cols, size_t n_ch_in, qt_module **out, char *err, size_t errlen);
qt_module *qt_modset_find(const qt_modset *s, const char *name);
size_t     qt_modset_count(const qt_modset *s);
qt_module *qt_modset_at(const qt_modset *s, size_t i);
/* Resets every observed maximum (start of a MEASURE run). */
void       qt_modset_reset_measurements(qt_modset *s);

const char *qt_module_name(const qt_module *m);
qt_mod_type qt_module_type(const qt_module *m);
/* The delayed-scaling group, or NULL without a recipe. */
qt_history *qt_module_history(qt_module *m);

/* MEASURE: running maxabs of tensor idx of the slot (INC maxabs observer:
 * max over all calls; NaN ignored and counted).  x[n]; for the
 * per-channel observer x is [n / n_ch, n_ch] for inputs/outputs and
 * [rows, cols] for the weight.  Output calls are ignored when the output
 * is not measured.  -EINVAL on a bad slot/idx or shape. */
int qt_module_observe(qt_module *m, qt_slot slot, int idx, const float *x, size_t n);
/* Same with a precomputed amax (per-tensor only); also feeds the
 * delayed-scaling accumulator.  Thread: any. */
void qt_module_record_amax(qt_module *m, qt_slot slot, int idx, float amax);
/* Measured per-tensor maxabs; NAN if the slot was never observed. */
float qt_module_measured(const qt_module *m, qt_slot slot, int idx);
/* NaN elements seen (and not recorded) by the slot's observer. */
uint64_t qt_module_nan_count(const qt_module *m, qt_slot slot, int idx);
bool  qt_module_was_observed(const qt_module *m);

/* QUANTIZE: computes the static descales of every slot with p from the
 * measurements (inputs/outputs) and from the weight tensor w[rows][cols]
 * (Linear; NULL otherwise), per §4.7's table.  QT_E_NO_MEASURE names the
 * module when an activation it needs was never measured (unit_scale needs
 * none).  Every method applies its activation rule to every type (INC 3.0
 * defines maxabs_pow2 for Linear and Matmul only); KVCache scales always
 * use E4M3's full scale (the cache is E4M3).  fused SDPA: outputs[1] (the
 * softmax amax) gets INC's 4th input scale.  Returns the number of
 * degenerate tensors given scale 1. */
int qt_module_compute_scales(qt_module *m, const qt_scale_params *p, const float *w,
                             char *err, size_t errlen);
/* Descales (divisors) of a slot: *n = 1, or rows for per-channel weights
 * and Linear outputs.  Borrowed; NULL before compute_scales. */
const float *qt_module_descales(const qt_module *m, qt_slot slot, int idx, size_t *n);

/* ------------------------------------- measurement files (§4.6, §4.9) */

typedef struct qt_measure qt_measure;

/* File names under dump_stats_path P: "P_hooks_<observer>.json",
 * "P_hooks_<observer>_mod_list.json" and the scale file
 * "P_hooks_<observer>_<METHOD_ENUM>.json" (one daemon = one rank: no
 * rank suffix).  Returns the length or -ENAMETOOLONG. */
typedef enum qt_measure_file { QT_FILE_MEASURE, QT_FILE_MOD_LIST, QT_FILE_SCALE } qt_measure_file;
int qt_measure_path(const qt_config *c, qt_measure_file which, char *buf, size_t buf_size);

/* The mode to run at start-up: AUTO becomes QUANTIZE when the measurement
 * file (QT_FILE_MEASURE) exists and MEASURE otherwise, as INC's AUTO;
 * other modes are returned as configured.  Thread: engine. */
qt_mode qt_config_resolve_mode(const qt_config *c);

/* Snapshot of a set's measurements (Mode "DynamicRange"; modules never
 * observed are left out, as INC does).  NULL when out of memory. */
qt_measure *qt_measure_from_modset(const qt_modset *s);
/* Snapshot of computed scales (Mode "Scale"; per-channel weight as
 * {"0": out_scales, "1": in_scales}). */
qt_measure *qt_measure_scales_from_modset(const qt_modset *s);
void        qt_measure_free(qt_measure *m);
size_t      qt_measure_count(const qt_measure *m);
const char *qt_measure_node_name(const qt_measure *m, size_t i);
const char *qt_measure_mode(const qt_measure *m);      /* "DynamicRange", "Scale" */
int         qt_measure_local_rank(const qt_measure *m, bool *is_null);
/* Element j of tensor idx of a node's slot; NAN when absent.  *n_out
 * (may be NULL) receives the element count (0 when absent). */
float qt_measure_value(const qt_measure *m, const char *node, qt_slot slot, int idx,
                       size_t j, size_t *n_out);

/* Writes m as INC's JSON (§4.6) atomically: a temp file in the same
 * folder, fsync, rename, fsync of the folder.  Creates the folder (one
 * level) if missing.  -errno naming the path on failure. */
int qt_measure_write(const qt_measure *m, const char *path, char *err, size_t errlen);
/* Writes the JSON list of module names of s (atomically). */
int qt_measure_write_mod_list(const qt_modset *s, const char *path, char *err, size_t errlen);

/* Reads and validates a file: envelope keys, Mode, every node's
 * inputs/outputs/params.weight as lists of [n,1] matrices of finite
 * non-negative numbers (NaN/Infinity literals are rejected with a clear
 * message).  Errors name the file and the node/field. */
int qt_measure_read(qt_measure **out, const char *path, char *err, size_t errlen);
int qt_measure_parse(qt_measure **out, const char *json_text, const char *source,
                     char *err, size_t errlen);

/* Loads measurements into the set: every module of s must have a node
 * (else QT_E_NO_MEASURE naming it, unless ignore_missing: then it is left
 * unobserved and counted in the return value) with the slots and shapes
 * its type needs (QT_E_SHAPE naming module, field and sizes); Mode must
 * be "DynamicRange" (QT_E_BAD_MEASURE).  Nodes of m with no module in s
 * (e.g. the blocklist changed) are skipped with a warning naming them.
 * Returns the number of modules left without a measurement. */
int qt_measure_apply(const qt_measure *m, qt_modset *s, bool ignore_missing,
                     char *err, size_t errlen);

/* INC's unify (optimum-habana unify_measurements.py): element-wise max of
 * n >= 1 files of the same Mode with the same nodes and shapes (a node
 * missing from one file, or a different shape, is QT_E_MISMATCH naming the
 * node and both files); node order is in[0]'s; NumSamples is dropped;
 * result LocalRank -1, GlobalRank null. */
int qt_measure_merge(qt_measure **out, const qt_measure *const *in, size_t n,
                     char *err, size_t errlen);

#endif
