/* bm.h: what the parts of the end-to-end benchmark share (tests/bench_model.c
 * and tests/bench/bm_*.c; issue 7): the model shapes and their byte and
 * FLOP counts (bm_shape.c), the random models and their tokenizer
 * (bm_write.c), this machine's limits and this process's memory
 * (bm_hw.c), decode through the scheduler (bm_sched.c), and the
 * persistent children that interleave the modes' repetitions (bm_worker.c).
 * One program links these files; nothing here keeps global state but the
 * random-weight table of bm_write.c (filled once by bm_norm_table_init)
 * and bm_worker.c's list of live workers.
 * Errors: negative errno, with a sentence in err where the call takes one. */
#ifndef FP8D_TESTS_BM_H
#define FP8D_TESTS_BM_H

#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"
#include "tests/bench/bm_hw.h"

/* ---- shapes, modes, phases (bm_shape.c) ---------------------------- */

typedef struct bm_shape {
    const char *name;                  /* as in the BENCH lines */
    const char *arch, *model_type;
    int dim, n_layers, n_heads, n_kv, ffn, vocab, max_pos;
    double rope_theta, rms_eps;
    int qkv_bias;                      /* Qwen2: q/k/v projections carry a bias */
    int llama3_rope;
    int tok_bpe, tok_special;          /* tokenizer ids: BPE entries, then added specials */
    int bos, eos;                      /* config.json ids (specials) */
} bm_shape;

extern const bm_shape bm_shapes[];
extern const size_t bm_n_shapes;

enum { BM_F32, BM_BF16, BM_FP8, BM_W8A8, BM_N_MODES };
enum { BM_DECODE, BM_DECODE8, BM_PRE128, BM_PRE512, BM_N_PHASES };
extern const char *const bm_mode_name[BM_N_MODES];
extern const char *const bm_phase_name[BM_N_PHASES];

#define BM_B8 8              /* sequences of decode-b8 */
#define BM_DEC_PROMPT 16     /* prompt tokens before a decode run */

/* Bytes of weights one decode step reads in mode: every Linear of every
 * layer plus the tied embedding once as lm_head (fp8: 1 byte a weight and
 * a 4-byte scale a row; lm_head so too when fp8_head, else BF16); norms,
 * biases and the KV cache are left out (under 0.1%). */
double bm_decode_bytes(const bm_shape *sh, int mode, int fp8_head);
/* FLOPs of one prefill of n tokens with the logits of the last only, as
 * the engine does them: 2 per weight per token for the Linears, 2 per
 * weight for lm_head once, and causal attention, 2 * head_size * n *
 * (n + 1) per head and layer (q.k and p.v); the last layer runs o, the
 * MLP and attention for the last token alone (engine/forward.c,
 * keep_rows). */
double bm_prefill_flops(const bm_shape *sh, size_t n);

/* ---- small helpers (bm_shape.c; the clock and median: bm_hw.h) ------- */

uint64_t bm_rng_next(uint64_t *s);            /* xorshift64* */
/* n ids in [0, V) from seed. */
void     bm_random_ids(int32_t *ids, size_t n, int V, uint64_t seed);

/* ---- random models (bm_write.c) ------------------------------------- */

/* Fills the table of normal values (std 0.02, none zero) that every
 * weight is drawn from; call once before bm_write_model. */
void bm_norm_table_init(void);
/* Writes dir/config.json and dir/model.safetensors (BF16, or F32 when
 * f32) with random weights; dir is created if missing. */
int  bm_write_model(const bm_shape *sh, const char *dir, int f32);
/* Writes dir/tokenizer.json: a byte-level BPE that names every id the
 * tokenizer of the real model has (the 256 bytes, made-up words, the
 * special tokens with bos and eos among them) and no merges. */
int  bm_write_tokenizer(const bm_shape *sh, const char *dir);

/* ---- decode through the scheduler (bm_sched.c) ------------------------ */

typedef struct bm_sched bm_sched;

/* Starts an engine (engine/queue.c) on dir with nth compute threads and
 * waits until it is ready.  fp8: options for an FP8 checkpoint, or for
 * live conversion when live_json is set: an FP8Config in MEASURE, after
 * which two requests of random tokens are served (MEASURE with logits)
 * and a calibration command switches to QUANTIZE.  n_ids: prompts are
 * drawn from [0, n_ids).  *load_s: seconds to ready (calibration
 * included).  Free with bm_sched_close. */
int    bm_sched_open(bm_sched **out, const char *dir, int nth, const eng_fp8_opts *fp8,
                     const char *live_json, int n_ids, double *load_s, char *err,
                     size_t errlen);
/* Submits BM_B8 requests of BM_DEC_PROMPT random tokens (max_tokens
 * steps + 1, greedy, EOS ignored) so that they are admitted in one step,
 * and returns the tokens/s of the steady phase: the BM_B8 * steps tokens
 * after every request's first one, over the time from the last first
 * token to the last token.  < 0 on error (err says). */
double bm_sched_decode8(bm_sched *s, int steps, char *err, size_t errlen);
void   bm_sched_close(bm_sched *s);                 /* NULL ok */

/* ---- persistent children (bm_worker.c) -------------------------------- */

/* What a worker runs, in a forked child (or in this process when inproc,
 * for a debugger).  open sets *state up from ctx (a model loaded, say);
 * rep runs repetition r at thread-count index ti and fills out[rep_size];
 * close fills out[fin_size] with the summary (out NULL: none wanted) and
 * frees the state.  open and rep return 0 or a negative errno with a
 * sentence in err; open frees what it set up when it fails. */
typedef struct bm_worker_ops {
    int    (*open)(const void *ctx, void **state, char *err, size_t errlen);
    int    (*rep)(void *state, int ti, int r, void *out, char *err, size_t errlen);
    void   (*close)(void *state, void *out);
    size_t rep_size, fin_size;
} bm_worker_ops;

typedef struct bm_worker bm_worker;

/* Forks a worker and waits until its open returned; ctx is read in the
 * child only (it must stay valid until then, no longer).  Everything that
 * opens an OpenMP team belongs in a worker: libgomp's thread pool does
 * not survive fork, so the parent never starts one.  Sets SIGPIPE to
 * SIG_IGN in this process (a dead worker's pipe then gives EPIPE). */
int  bm_worker_start(bm_worker **out, const bm_worker_ops *ops, const void *ctx, int inproc,
                     char *err, size_t errlen);
/* One repetition; out: rep_size bytes.  A worker that died gives -ECHILD
 * and err says how (a signal, out of memory?). */
int  bm_worker_rep(bm_worker *w, int ti, int r, void *out, char *err, size_t errlen);
/* The summary (fin: fin_size bytes); the worker exits and w is freed,
 * whatever the result. */
int  bm_worker_finish(bm_worker *w, void *fin, char *err, size_t errlen);
/* Ends a worker without its summary (on an error elsewhere); NULL ok. */
void bm_worker_kill(bm_worker *w);

#endif
