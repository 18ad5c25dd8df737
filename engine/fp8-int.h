/* fp8-int.h: the FP8 engine's internal state (issue 5), shared by the
 * engine/fp8_*.c files and the two hook points in model.c and forward.c.
 * Never included from outside engine/.
 *
 * One eng_fp8 per model (m->fp8), created at load for FP8 checkpoints and
 * by eng_fp8_prepare for high-precision ones; one eng_fp8lin per Linear
 * (l->fp8 points into fp8->lins).  Thread: the engine thread, like the
 * model; the forward hooks run outside OpenMP regions and open their own.
 */
#ifndef FP8D_ENGINE_FP8_INT_H
#define FP8D_ENGINE_FP8_INT_H

#include <limits.h>

#include "engine/engine-int.h"

struct json_t;

/* Weight granularity of an imported checkpoint or of a conversion. */
typedef struct eng_fp8lin {
    qt_module        *mod;       /* selected module (prepare), or NULL */
    kn_fp8w          *w8;        /* FP8 weights used in QUANTIZE, or NULL (stays high precision);
                                  * imported: the weight itself, in every mode (OFF and
                                  * MEASURE multiply it by f32 activations exactly) */
    float             in_scale;  /* static activation descale (x ~ q * in_scale); 0 = none */
    bool              imported;  /* the checkpoint stored this weight as FP8 */
    float             w_amax;    /* max |W|, taken when MEASURE starts (fed to the history each step) */
} eng_fp8lin;

/* What config.json's quantization_config says (model-formats.md §3). */
typedef enum eng_qc_method { ENG_QC_NONE = 0, ENG_QC_CT, ENG_QC_FP8, ENG_QC_FBGEMM } eng_qc_method;

typedef struct eng_qconfig {
    eng_qc_method     method;
    kn_fp8_scale_kind wkind;     /* declared weight granularity */
    bool              wkind_known;
    bool              static_act;  /* activations declared static (input_scale stored) */
    bool              dynamic_act; /* activations declared dynamic */
    size_t            n_ignore;
    char            **ignore;    /* exact names or "re:" patterns */
    bool              kv_scheme; /* kv_cache_scheme present */
    bool              ours;      /* fp8d_state.json next to the weights */
} eng_qconfig;

/* Model-level FP8 state. */
typedef struct eng_fp8 {
    qt_mode           mode;      /* OFF, MEASURE or QUANTIZE (AUTO is resolved) */
    eng_fp8_opts      opts;
    qt_config        *cfg;       /* prepare's config (owned), NULL for a plain import */
    qt_recipe         recipe;
    bool              has_recipe;
    qt_modset        *set;       /* selected modules (owned), or NULL */
    eng_fp8lin       *lins;      /* [m->n_linears] */
    eng_qconfig       qc;        /* the checkpoint's quantization_config */
    bool              imported;  /* some Linear came as FP8 */
    kn_fp8_format     fmt;       /* forward format of weights and activations */
    const kn_fp8mm_ops *mm;
    qt_scale_params   params;    /* prepare's config: scale method, format, backoffs */
    bool              ignore_unmeasured;
    qt_observer       observer;
    qt_measure_exclude exclude;
    char              dump_stats_path[PATH_MAX];
    char              path_measure[PATH_MAX], path_modlist[PATH_MAX], path_scale[PATH_MAX];
    /* KV cache: per layer static descales of k and v (0 = not quantized). */
    float            *k_scale, *v_scale;    /* [n_layers] */
    qt_module       **kv_mod;               /* [2 * n_layers]: k_cache, v_cache or NULL */
    qt_module       **mm_mod;               /* [2 * n_layers]: matmul_qk, matmul_av or NULL */
    float            *qk_scale;  /* [n_layers][2]: q, k descales of matmul_qk in QUANTIZE (0: f32) */
    /* activation scratch, grown to the largest call */
    uint8_t          *xq;
    float            *xs;
    size_t            xq_cap, xs_cap;
    void             *mm_scratch;           /* prefill scratch, one slice per thread */
    size_t            mm_scratch_each, mm_scratch_n;
} eng_fp8;

/* fp8_import.c */
/* Accepts the FP8 methods of §3.7 and refuses every other method by name. */
int  eng__qconfig_check(const struct json_t *qc, const char *path, char *err, size_t errlen);
int  eng__qconfig_parse(eng_qconfig *q, const char *dir, char *err, size_t errlen);
void eng__qconfig_cleanup(eng_qconfig *q);
/* Whether the checkpoint's ignore list names module name. */
bool eng__qconfig_ignores(const eng_qconfig *q, const char *name);
/* Binds Linear l whose weight t is FP8: finds its scales (marking every
 * tensor it uses in used[]) and builds the FP8 weights, the one form the
 * weight has in memory (l->w stays NULL; t's mapped pages are released). */
int  eng__fp8_bind_linear(eng_model *m, eng_linear *l, const eng_tensor *t, bool *used,
                          char *err, size_t errlen);
/* After binding: KV scales (self_attn.k_scale / v_scale), marking them used. */
int  eng__fp8_bind_kv(eng_model *m, bool *used, char *err, size_t errlen);
/* Load hooks of eng_model_load: begin reads quantization_config (before
 * the tensors are bound), end links every Linear to its state and loads
 * our fp8d_state.json when the directory has one. */
int  eng__fp8_load_begin(eng_model *m, const char *dir, char *err, size_t errlen);
int  eng__fp8_load_end(eng_model *m, const char *dir, char *err, size_t errlen);
/* fp8_state.c: our FP8 state file (fp8d_state.json) of an export:
 * recipe, per-module scales, amax histories and measurements.  Loading
 * one prepares the model with the saved selection and restores it. */
int  eng__fp8_state_load(eng_model *m, const char *dir, char *err, size_t errlen);
int  eng__fp8_state_save(eng_model *m, const char *path, char *err, size_t errlen);
/* Creates m->fp8 (once) with lins for every Linear. */
int  eng__fp8_attach(eng_model *m);
void eng__fp8_free(eng_model *m);

/* fp8_linear.c: the forward hooks.  eng__fp8_linears runs Linears that
 * read the same input x [rows][ldx] (q/k/v, gate/up, or one alone): in
 * QUANTIZE it computes those with FP8 weights in one parallel region
 * (the activations quantized once for all) and sets done[j] (in other
 * modes only a checkpoint's FP8 weights without an f32 form, l->w NULL,
 * exactly); in MEASURE it observes the input of each.  The caller runs
 * the high-precision product of the rest.  Returns how many it computed. */
#define ENG_LIN_GROUP_MAX 4
typedef struct eng_lin_job {
    const eng_linear *l;
    float            *y;     /* [rows][ldy] output */
    size_t            ldy;
} eng_lin_job;
int  eng__fp8_linears(eng_model *m, const float *x, size_t ldx, size_t rows,
                      const eng_lin_job *jobs, int n, bool *done);
void eng__fp8_linear_out(eng_model *m, const float *y, size_t ldy, size_t rows,
                         const eng_linear *l);
/* Attention hooks for layer li: q [rows][qd], k, v [rows][kvd] after RoPE,
 * before the cache store.  Observes (MEASURE) or rounds k and v through
 * E4M3 with the layer's static scales (QUANTIZE with the FP8 KV cache). */
void eng__fp8_attn(eng_model *m, int li, float *q, float *k, float *v, size_t rows);
/* Static scales of the attention modules (matmul_qk operands, k/v cache)
 * from the measurements or histories in memory, without a history step:
 * QUANTIZE and a restored export compute the same values. */
int  eng__fp8_attn_scales(eng_model *m, char *err, size_t errlen);
/* End of an eng_forward call (one engine step): in MEASURE, the weight
 * amaxes are recorded again and every module's amax history rolls
 * (fp8-semantics §6.4 step 2; the scales in use do not change). */
void eng__fp8_step_end(eng_model *m);
/* Whether a sequence created now stores its KV cache as E4M3 (QUANTIZE
 * with kv_fp8 and every layer's k/v scale known; head_size <=
 * ENG_FP8_KV_MAX_HS), and those scales ([n_layers][2] k, v). */
#define ENG_FP8_KV_MAX_HS 512
bool eng__fp8_kv_cache(const eng_model *m);
void eng__fp8_kv_scales(const eng_model *m, float *dst);
/* x[i] = decode(fp8(x[i] / s)) * s (saturating, one f32 division). */
void eng__fp8_round(float *x, size_t n, float s, kn_fp8_format fmt);

#endif
