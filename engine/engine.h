/* engine.h: models and the forward pass (the one public header of engine/).
 *
 * Main objects:
 *   eng_st_file  a set of mapped, validated safetensors files (one file or
 *                the shards of model.safetensors.index.json); read-only.
 *   eng_model    a loaded Hugging Face decoder (Llama, Mistral, Qwen2,
 *                Qwen3): config, weights in their stored precision, RoPE
 *                tables, scratch space for one forward call at a time.
 *   eng_seq      one sequence's KV cache (its positions 0..n_past).
 *   eng_sampler  sampling parameters plus the RNG state of one request.
 *
 * Threads: nothing here keeps global mutable state.  An eng_model may be
 * used by one thread at a time (the engine thread): eng_forward writes the
 * model's scratch buffers and opens its OpenMP team.  eng_seq and
 * eng_sampler belong to whoever created them.  Loading may happen on any
 * thread.
 *
 * Errors: negative errno or ENG_E_* (below); functions that can fail on
 * data take (char *err, size_t errlen) and write one sentence naming the
 * file, tensor or field and the fault.
 */
#ifndef FP8D_ENGINE_H
#define FP8D_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quant/quant.h"
#include "engine/tokenizer.h"

/* ---- errors -------------------------------------------------------- */

#define ENG_ERROR_LIST(X)                                                    \
    X(ENG_E_FORMAT,      -3001, "model file is malformed")                   \
    X(ENG_E_UNSUPPORTED, -3002, "model architecture or option not supported") \
    X(ENG_E_CONTEXT,     -3003, "sequence does not fit its context")

enum eng_error {
#define ENG_ERR_ENUM_(name, val, msg) name = (val),
    ENG_ERROR_LIST(ENG_ERR_ENUM_)
#undef ENG_ERR_ENUM_
};

/* Static message for rc; codes outside -3000s go down to kn_strerror. */
const char *eng_strerror(int rc);

/* ---- safetensors ---------------------------------------------------- */

/* Element types of the safetensors format (model-formats.md §1.3).
 * Stable numbering: append only. */
typedef enum eng_dtype {
    ENG_DT_BOOL = 0, ENG_DT_U8, ENG_DT_I8, ENG_DT_I16, ENG_DT_U16,
    ENG_DT_F16, ENG_DT_BF16, ENG_DT_I32, ENG_DT_U32, ENG_DT_F32,
    ENG_DT_F64, ENG_DT_I64, ENG_DT_U64, ENG_DT_C64,
    ENG_DT_F8_E4M3, ENG_DT_F8_E5M2, ENG_DT_F8_E4M3FNUZ, ENG_DT_F8_E5M2FNUZ,
    ENG_DT_F8_E8M0,
    ENG_DT_COUNT
} eng_dtype;

const char *eng_dtype_name(eng_dtype dt);   /* "BF16" */
size_t      eng_dtype_size(eng_dtype dt);   /* bytes per element */

#define ENG_MAX_DIMS 8
#define ENG_ST_MAX_HEADER 100000000u        /* reference MAX_HEADER_SIZE */

/* One tensor of a mapped file.  Borrowed from its eng_st_file: valid until
 * eng_st_close.  data is aligned to the element size (copied at open when
 * the file placed it unaligned). */
typedef struct eng_tensor {
    const char *name;
    const char *file;                 /* path of the file that holds it */
    eng_dtype   dtype;
    int         n_dims;
    int64_t     shape[ENG_MAX_DIMS];
    size_t      n_elem;
    size_t      size;                 /* bytes */
    const void *data;
} eng_tensor;

typedef struct eng_st_file eng_st_file;

/* Maps and validates one .safetensors file (every rule of
 * model-formats.md §1.4).  Returns 0, -errno for I/O, ENG_E_FORMAT for a
 * malformed file (err names the file, the tensor and the fault).
 * Free with eng_st_close.  Thread: any. */
int eng_st_open(eng_st_file **out, const char *path, char *err, size_t errlen);

/* Opens dir/model.safetensors, or else the shards listed by
 * dir/model.safetensors.index.json, as one set. */
int eng_st_open_dir(eng_st_file **out, const char *dir, char *err, size_t errlen);

void eng_st_close(eng_st_file *f);                           /* NULL ok */
size_t eng_st_count(const eng_st_file *f);
const eng_tensor *eng_st_at(const eng_st_file *f, size_t i); /* sorted by name */
const eng_tensor *eng_st_find(const eng_st_file *f, const char *name); /* NULL: absent */

/* ---- model configuration -------------------------------------------- */

typedef enum eng_arch { ENG_ARCH_LLAMA, ENG_ARCH_MISTRAL, ENG_ARCH_QWEN2, ENG_ARCH_QWEN3 } eng_arch;

typedef enum eng_rope_type {
    ENG_ROPE_DEFAULT, ENG_ROPE_LINEAR, ENG_ROPE_DYNAMIC, ENG_ROPE_LLAMA3, ENG_ROPE_YARN
} eng_rope_type;

/* Everything in config.json that changes the forward pass (§2.1). */
typedef struct eng_model_config {
    eng_arch arch;
    char     arch_name[48];          /* "LlamaForCausalLM" */
    int      vocab_size, dim, hidden_dim, n_layers, n_heads, n_kv_heads, head_size;
    int      max_pos;                /* max_position_embeddings */
    float    rms_eps;
    bool     tie_embeddings, attn_bias, attn_out_bias, mlp_bias, qk_norm;
    /* RoPE */
    eng_rope_type rope_type;
    double   rope_theta, rope_factor, rope_low_freq, rope_high_freq;
    int      rope_orig_max_pos;
    double   rope_beta_fast, rope_beta_slow, rope_attn_factor; /* attn_factor < 0: derive */
    double   rope_mscale, rope_mscale_all_dim;
    bool     rope_truncate;
    float    partial_rotary;         /* fraction of head_size rotated */
    /* sliding window: window > 0 and layer_sliding[i] for the layers that use it */
    int      sliding_window;
    uint8_t  *layer_sliding;         /* [n_layers], owned by the config */
    int32_t  bos_id;                 /* -1 if absent */
} eng_model_config;

/* Parses dir/config.json.  An architecture, activation or option we do
 * not support is refused by name (ENG_E_UNSUPPORTED); a missing or
 * ill-typed field gives ENG_E_FORMAT naming it.  Release with
 * eng_model_config_cleanup.  Thread: any. */
int  eng_model_config_load(eng_model_config *cfg, const char *path, char *err, size_t errlen);
/* The same from a JSON text (tests, other containers); path names it in errors. */
int  eng_model_config_parse(eng_model_config *cfg, const char *json, size_t len,
                            const char *path, char *err, size_t errlen);
void eng_model_config_cleanup(eng_model_config *cfg);

/* ---- models ------------------------------------------------------------ */

typedef struct eng_model eng_model;

typedef struct eng_model_opts {
    int         n_threads;   /* OpenMP team of eng_forward; 0 = omp default */
    const char *kernels;     /* force a kn_math variant ("ref"); NULL = $FP8D_KERNELS, else best */
} eng_model_opts;

void eng_model_opts_default(eng_model_opts *o);

/* Loads config.json and the weights of dir (mapped read-only; BF16/F16
 * linear weights stay in their stored precision).  Every tensor the
 * architecture needs must be present with the right shape and a float
 * dtype; unknown leftover tensors are an error.  Free with eng_model_free.
 * Thread: any. */
int  eng_model_load(eng_model **out, const char *dir, const eng_model_opts *opts,
                    char *err, size_t errlen);
void eng_model_free(eng_model *m);
/* Borrowed; valid until eng_model_free. */
const eng_model_config *eng_model_get_config(const eng_model *m);

/* Module names follow state-dict paths ("model.layers.3.self_attn.q_proj",
 * "lm_head"): the per-Linear hook point the FP8 work attaches to. */
size_t      eng_model_n_linears(const eng_model *m);
const char *eng_model_linear_name(const eng_model *m, size_t i);

/* ---- sequences and the forward pass ---------------------------------- */

typedef struct eng_seq eng_seq;

/* A KV cache (f32, allocated whole) for up to n_ctx positions, 0 meaning
 * max_position_embeddings, which is also the limit (rope.c says why).
 * Returns NULL when out of memory or n_ctx is out of range.  The sequence
 * borrows m: free it before the model. */
eng_seq *eng_seq_new(const eng_model *m, size_t n_ctx);
void     eng_seq_free(eng_seq *s);
size_t   eng_seq_len(const eng_seq *s);        /* positions already cached */
size_t   eng_seq_ctx(const eng_seq *s);
/* Forgets positions >= n (n <= len): rewind or reset (n = 0). */
void     eng_seq_truncate(eng_seq *s, size_t n);

/* One sequence's share of a batch: n_tokens new tokens appended at
 * positions len..len+n_tokens-1 of seq.  Logits (f32, vocab per row) are
 * written to logits for every new token when all_logits, else for the
 * last one only; logits NULL computes none (prefill for the cache only). */
typedef struct eng_batch_item {
    eng_seq       *seq;
    const int32_t *tokens;
    size_t         n_tokens;
    bool           all_logits;
    float         *logits;
} eng_batch_item;

/* Runs the model over every item at once (prefill and decode share this
 * path; each item has its own cache, no item sees another's tokens).
 * On success every seq grew by its n_tokens.  On error no seq changed:
 * ENG_E_CONTEXT (a sequence would overflow its n_ctx), -EINVAL (token id
 * out of range, same seq twice), -ENOMEM.  Thread: one caller per model. */
int eng_forward(eng_model *m, eng_batch_item *items, size_t n_items,
                char *err, size_t errlen);

/* ---- sampling ---------------------------------------------------------- */

typedef struct eng_sample_params {
    float    temperature;   /* <= 0: greedy (argmax, first maximum) */
    int      top_k;         /* <= 0: off */
    float    top_p;         /* >= 1: off */
    float    min_p;         /* <= 0: off; keep p >= min_p * p_max */
    uint64_t seed;
} eng_sample_params;

void eng_sample_params_default(eng_sample_params *p);  /* greedy, filters off, seed 0 */

typedef struct eng_sampler eng_sampler;

/* Copies p; NULL when out of memory or p is invalid (NaN, negative). */
eng_sampler *eng_sampler_new(const eng_sample_params *p, size_t n_vocab);
void         eng_sampler_free(eng_sampler *s);
/* Picks a token from logits[0..n_vocab) (not modified).  Same params,
 * seed and logits give the same sequence of ids. */
int32_t      eng_sampler_sample(eng_sampler *s, const float *logits);

/* ---- generation (fp8ctl; the server batches through eng_forward) ------ */

/* Declared again here (C11 allows it) so this header stands alone while
 * engine/tokenizer.h grows. */
typedef struct eng_tokenizer eng_tokenizer;

typedef struct eng_gen_params {
    eng_sample_params sample;
    int          max_tokens;           /* > 0 */
    const char  *const *stop;          /* stop strings, n_stop of them (borrowed) */
    size_t       n_stop;
    bool         ignore_eos;
} eng_gen_params;

void eng_gen_params_default(eng_gen_params *p);

typedef enum eng_stop_reason { ENG_STOP_LENGTH, ENG_STOP_EOS, ENG_STOP_STRING, ENG_STOP_CALLBACK } eng_stop_reason;

/* Called on the calling thread with each new id and the text that became
 * final with it (possibly empty: an incomplete UTF-8 character or a
 * possible start of a stop string is held back); text is borrowed for the
 * call.  Return nonzero to stop. */
typedef int (*eng_token_cb)(int32_t id, const char *text, size_t len, void *ud);

/* Prefills prompt (ids as given: the caller adds BOS), then samples up to
 * max_tokens (fewer if the model's context ends first), stopping after an
 * EOS id of tok (kept in *out_ids, not in the text) or when the text
 * contains a stop string (the text is cut before it).  *out_ids and
 * *out_text (NUL-terminated; out_text may be NULL) are malloc'd, the
 * caller frees them.  tok may be NULL: no text, stop strings or EOS; with
 * tok, ids past its vocabulary (padding rows of the embedding) are never
 * sampled.
 * The streamed pieces concatenate to *out_text.  Returns 0 (with *reason),
 * -EINVAL (empty prompt, bad params), ENG_E_CONTEXT (prompt fills the
 * context), -ENOMEM, or eng_forward's errors.  Thread: one caller per model. */
int eng_generate(eng_model *m, const eng_tokenizer *tok, const int32_t *prompt,
                 size_t n_prompt, const eng_gen_params *p, eng_token_cb cb, void *ud,
                 int32_t **out_ids, size_t *n_out, char **out_text, size_t *text_len,
                 eng_stop_reason *reason, char *err, size_t errlen);

/* Byte offset of the first stop string inside text[0..len), or -1.
 * (Pure helper, exposed for tests and the server's stream filter.) */
long eng_stop_find(const char *text, size_t len, const char *const *stop, size_t n_stop);

/* ---- scheduler: the engine thread (engine/queue.c; issue 6) -----------
 * eng_engine owns one model and its tokenizer and runs them on exactly one
 * thread (the engine thread), which loads them at start and then runs a
 * continuous-batching loop: every step is one eng_forward over the
 * sequences that decode one token plus the prompts admitted since the last
 * step.  Other threads hand work over with eng_submit (a bounded queue) and
 * hear back through the request's callbacks, which run on the engine
 * thread.  The DESIGN comment at the top of engine/queue.c is the
 * contract; each function says its thread. */

typedef struct eng_engine  eng_engine;    /* opaque; engine/queue.c */
typedef struct eng_request eng_request;   /* opaque; engine/queue.c */

typedef struct eng_engine_params {
    const char    *model_dir;          /* copied */
    eng_model_opts model;              /* threads, kernels */
    size_t max_queued_requests;        /* waiting requests; 0 = 64 */
    size_t max_queued_tokens;          /* prompt tokens waiting; 0 = 1 << 20 */
    size_t max_running;                /* sequences per step; 0 = 16 */
    size_t max_step_tokens;            /* prompt tokens prefilled per step; 0 = 2048 */
    const char *fp8_config_json;       /* FP8Config applied at load (its mode, AUTO
                                          too); NULL = mode off.  Copied */
    const struct eng_fp8_opts *fp8_opts; /* FP8 options (below) for every prepare (at
                                          load or by a calibration command), and set at
                                          load on an FP8 checkpoint (its activations:
                                          weight-only or dynamic); NULL = the defaults,
                                          and a checkpoint's own.  Copied */
} eng_engine_params;

void eng_engine_params_default(eng_engine_params *p);

typedef enum eng_engine_state {
    ENG_ENGINE_LOADING = 0, ENG_ENGINE_READY, ENG_ENGINE_FAILED, ENG_ENGINE_STOPPED
} eng_engine_state;

/* Starts the engine thread, which loads p->model_dir (model and
 * tokenizer).  Returns 0 (the thread runs; watch eng_engine_get_state) or
 * -ENOMEM/-EAGAIN.  Free with eng_engine_free.  Thread: main. */
int  eng_engine_start(eng_engine **out, const eng_engine_params *p, char *err, size_t errlen);

/* Refuses new submissions, cancels every queued and running request
 * (each completes with -ECANCELED) and joins the thread; the tokenizer
 * stays usable.  Accepts NULL; idempotent.  Thread: main. */
void eng_engine_stop(eng_engine *e);
/* Stops (if not yet) and frees model, tokenizer and e.  Accepts NULL.
 * Thread: main, after every user of the tokenizer has finished. */
void eng_engine_free(eng_engine *e);

/* State (atomic); err receives the load error when FAILED.  Thread: any. */
eng_engine_state eng_engine_get_state(const eng_engine *e, char *err, size_t errlen);

/* Read-only views, valid from READY until eng_engine_stop: the tokenizer
 * may be used from any thread; the model only for eng_model_get_config
 * and the linear names.  NULL before READY.  Thread: any. */
const eng_tokenizer *eng_engine_tokenizer(const eng_engine *e);
const eng_model     *eng_engine_model(const eng_engine *e);

/* CLOCK_MONOTONIC milliseconds of the engine thread's last sign of life
 * (after each step, and at least every 100 ms while idle or loading).
 * Thread: any. */
uint64_t eng_engine_heartbeat_ms(const eng_engine *e);

/* Counters and gauges for /metrics (atomics, read one by one).  Thread: any. */
typedef struct eng_engine_stats {
    uint64_t queued, queued_tokens, running;   /* gauges */
    uint64_t kv_used, kv_capacity;             /* cached positions, allocated positions */
    uint64_t steps, prompt_tokens, generated_tokens, rejected_full, cancelled, expired;
    uint64_t epoch;                            /* bumped by eng_engine_set_fp8_mode */
} eng_engine_stats;
void eng_engine_get_stats(const eng_engine *e, eng_engine_stats *st);

/* One sampled or prompt token as the callbacks see it.  text is the part
 * of the completion that became final with this token (UTF-8 complete,
 * never inside a possible stop string; may be empty); borrowed for the
 * call.  logprob is log softmax of the raw logits (no temperature) at id;
 * top ids/logprobs are the n_top best, descending. */
typedef struct eng_token_info {
    uint64_t       epoch;             /* FP8 epoch and mode the sequence runs in */
    int            fp8_mode;          /* qt_mode: OFF, MEASURE or QUANTIZE */
    int32_t        id;
    const char    *text;
    size_t         len;
    float          logprob;
    size_t         n_top;
    const int32_t *top_ids;
    const float   *top_logprobs;
} eng_token_info;

/* Callbacks, all on the engine thread: quick, never blocking, never
 * calling into the engine.  on_prompt (optional) runs once per prompt
 * token 1..n-1 when prompt_logprobs is set (pos = its index); on_token for
 * each generated token; on_done exactly once after a successful
 * eng_submit with rc 0 (and why), -ECANCELED (eng_request_cancel or
 * engine stop), -ETIMEDOUT (deadline), ENG_E_CONTEXT or -ENOMEM.  After
 * on_done the engine never touches the request again. */
typedef struct eng_request_cbs {
    void (*on_prompt)(void *ud, size_t pos, const eng_token_info *t);
    void (*on_token)(void *ud, const eng_token_info *t);
    void (*on_done)(void *ud, int rc, eng_stop_reason why);
    void  *ud;
} eng_request_cbs;

typedef struct eng_req_params {
    eng_sample_params sample;
    int          max_tokens;          /* > 0; capped by the model's context */
    const char  *const *stop;         /* copied */
    size_t       n_stop;
    bool         ignore_eos;
    int          top_logprobs;        /* alternatives per token, 0..20 */
    bool         prompt_logprobs;     /* call on_prompt for the prompt tokens */
    uint64_t     deadline_ms;         /* CLOCK_MONOTONIC ms; 0 = none */
} eng_req_params;

void eng_req_params_default(eng_req_params *p);   /* greedy, 16 tokens */

/* Copies prompt (used verbatim: no BOS is added) and p.  NULL when out of
 * memory, n_prompt is 0 or p is invalid.  Thread: any. */
eng_request *eng_request_new(const int32_t *prompt, size_t n_prompt, const eng_req_params *p,
                             const eng_request_cbs *cbs);
/* Accepts NULL.  Only by the owner (never between a successful submit
 * and on_done).  Thread: any. */
void eng_request_free(eng_request *r);

/* Queues r.  On 0 the engine owns r until on_done.  On error nothing ran
 * and the caller still owns r: -EAGAIN queue full (requests or prompt
 * tokens), -ESHUTDOWN engine not ready or stopping, ENG_E_CONTEXT the
 * prompt leaves no room in the model's context.  Never blocks.
 * Thread: any. */
int  eng_submit(eng_engine *e, eng_request *r);

/* Sets r's cancel flag (atomic); the engine finishes it with -ECANCELED
 * at its next step.  Safe until on_done has returned.  Thread: any. */
void eng_request_cancel(eng_request *r);

/* Live calibration.  A command is queued for the engine thread, which
 * stops admitting new sequences, lets the running ones finish in their
 * epoch, then runs it between two steps (so no sequence straddles two
 * epochs; requests that arrive meanwhile wait in the queue).  MODE
 * prepares the FP8 state on first use (config_json: an FP8Config text,
 * NULL = defaults), switches to mode (reset: MEASURE restarts from
 * empty maxima), runs the dataset through MEASURE if given, and bumps the
 * epoch; SAVE writes the measurements to the config's dump_stats_path and,
 * when path is set, the FP8 checkpoint into that directory; LOAD reads the
 * measurement file path and enters QUANTIZE (epoch + 1). */
enum { ENG_CALIB_MODE = 0, ENG_CALIB_SAVE, ENG_CALIB_LOAD };

typedef struct eng_calib_cmd {
    int              op;
    int              mode;            /* qt_mode, for MODE */
    const char      *config_json;     /* copied */
    bool             reset;
    const int32_t *const *seqs;       /* dataset (copied) */
    const size_t    *lens;
    size_t           n_seqs;
    const char      *path;            /* LOAD: measurement file; SAVE: export dir or NULL */
} eng_calib_cmd;

/* Queues cmd.  0, -EBUSY while another command is pending (the caller
 * answers 409), -ESHUTDOWN when not ready, -ENOMEM.  Thread: any. */
int eng_engine_calibrate(eng_engine *e, const eng_calib_cmd *cmd);

typedef struct eng_calib_status {
    int      mode;              /* qt_mode in force */
    uint64_t epoch;
    bool     busy;              /* a command is pending or running */
    bool     prepared;          /* FP8 state exists */
    int      last_rc;           /* of the last finished command; 0 ok */
    char     last_err[256];
    uint64_t tokens_observed;   /* tokens run in MEASURE since it was entered */
    uint64_t requests_observed;
    uint64_t transitions;
    bool     measured;          /* something to quantize with: observed or loaded */
} eng_calib_status;

void eng_engine_calib_status(const eng_engine *e, eng_calib_status *st);

/* ---- FP8 (issue 5; engine/fp8_*.c) ------------------------------------
 * A model runs in one mode at a time, switched between eng_forward calls
 * (so a batch never mixes modes):
 *   OFF       high precision, nothing observed (bit-identical to a fresh
 *             load: the high-precision weights are never modified);
 *   MEASURE   high precision; the observers of the selected modules record
 *             running maxima and amax histories in memory;
 *   QUANTIZE  selected Linears multiply FP8 weights (scales per tensor or
 *             per output row) with f32 (weight-only) or FP8 activations
 *             (static scales from the measurements, or per-token dynamic),
 *             exact FP8 products, f32 sums, then the descale; the KV cache
 *             optionally stored as E4M3 bytes with static k/v scales (for
 *             sequences created in QUANTIZE); optionally (qk_fp8) the
 *             operands of q.k^T rounded through FP8 with matmul_qk's
 *             static scales.  p.v stays f32.
 * MEASURE with a recipe: each eng_forward call is one step that rolls the
 * amax histories; QUANTIZE then takes the recipe's delayed scales.
 * FP8 checkpoints (compressed-tensors float-quantized, block-wise "fp8",
 * fbgemm_fp8, our exports) load straight into QUANTIZE; their OFF mode
 * uses the dequantized weights f32(fp8) * scale.
 * Thread: the engine thread (the model's one caller). */

typedef enum eng_fp8_act {
    ENG_FP8_ACT_STATIC = 0,   /* static input scales where known, else weight-only */
    ENG_FP8_ACT_NONE,         /* weight-only: activations stay f32 */
    ENG_FP8_ACT_DYNAMIC,      /* per-token scales amax(row) / F at run time */
} eng_fp8_act;

typedef enum eng_fp8_wscale {
    ENG_FP8_W_CONFIG = 0,      /* the FP8Config's scale_method (INC, fp8-semantics §4.7) */
    ENG_FP8_W_MINMAX_TENSOR,   /* compressed-tensors minmax: descale = amax / F, f32 division */
    ENG_FP8_W_MINMAX_CHANNEL,  /* the same per output row for weights */
} eng_fp8_wscale;

typedef struct eng_fp8_opts {
    eng_fp8_act    act;
    eng_fp8_wscale wscale;    /* also selects the activation rule: minmax = amax / F */
    bool           kv_fp8;    /* KV cache stored as E4M3 in QUANTIZE */
    bool           qk_fp8;    /* q and k of q.k^T rounded through FP8 with the static
                               * scales of matmul_qk (needs act STATIC) */
    bool           bf16_act;  /* weight-only Linears round their f32 activations to bf16
                               * (RNE) for the vdpbf16ps kernels: prefill several times
                               * faster, at up to 2^-8 * sum |x w| more error per output
                               * (kernels/kn_fp8mm.h), more than the f32 references of
                               * the weight-only tests allow; false: exact f32 products */
} eng_fp8_opts;

void eng_fp8_opts_default(eng_fp8_opts *o);   /* STATIC, CONFIG, f32 KV cache and q.k^T */

/* Creates the quantizer state of every module c selects (Linear by its
 * state-dict name, "model.layers.N.self_attn.{matmul_qk,matmul_av,
 * k_cache,v_cache}" for Matmul and KVCache), with amax histories when
 * recipe is not NULL (then QUANTIZE uses its delayed scales).  c and
 * recipe are copied.  The mode becomes qt_config_resolve_mode(c) (AUTO:
 * QUANTIZE when the measurement file exists, which is then loaded, else
 * MEASURE).  -EBUSY when already prepared.  Errors name the file/field. */
int     eng_fp8_prepare(eng_model *m, const qt_config *c, const qt_recipe *recipe,
                        const eng_fp8_opts *o, char *err, size_t errlen);
/* OFF, MEASURE (restarts the running maxima and observes weights) or
 * QUANTIZE (scales from the measurements in memory; selected modules
 * never measured stay high precision when the config ignores them, else
 * QT_E_NO_MEASURE naming one).  QT_E_MODE without prepare or an FP8
 * checkpoint. */
int     eng_fp8_set_mode(eng_model *m, qt_mode mode, char *err, size_t errlen);
qt_mode eng_fp8_mode(const eng_model *m);
/* Options for the next QUANTIZE (switch mode again to apply to a model in
 * QUANTIZE); act applies at once, also to FP8 checkpoints. */
int     eng_fp8_set_opts(eng_model *m, const eng_fp8_opts *o, char *err, size_t errlen);
/* Borrowed; NULL before prepare. */
qt_modset *eng_fp8_modset(eng_model *m);
/* Runs each sequence of ids alone through a fresh cache (MEASURE must be
 * the mode); errors as eng_forward. */
int     eng_fp8_calibrate(eng_model *m, const int32_t *const *seqs, const size_t *lens,
                          size_t n_seqs, char *err, size_t errlen);
/* Writes the measurement file and module list to the config's
 * dump_stats_path names (qt_measure_path), and the scale file when
 * scales were computed. */
int     eng_fp8_dump_measurements(eng_model *m, char *err, size_t errlen);
/* Replaces the in-memory measurements with those of path (validated: a
 * missing module, NaN or wrong shape is refused naming it). */
int     eng_fp8_load_measurements(eng_model *m, const char *path, char *err, size_t errlen);
/* Writes the QUANTIZE state as a Hugging Face directory: compressed-
 * tensors float-quantized (or block-wise "fp8" when block is true), our
 * fp8d_state.json (recipe, scales, histories, measurements), config.json
 * with quantization_config and src_dir's other files copied. */
int     eng_fp8_export(eng_model *m, const char *src_dir, const char *out_dir, bool block,
                       char *err, size_t errlen);

#endif
