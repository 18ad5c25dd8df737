/* engine-int.h: structures shared by the files of engine/ (never included
 * from outside engine/).  Shapes follow llama2.c's words: dim, hidden_dim,
 * n_heads, n_kv_heads, head_size; weights are [out, in] row-major as in the
 * Hugging Face state dict. */
#ifndef FP8D_ENGINE_INT_H
#define FP8D_ENGINE_INT_H

#include "engine/engine.h"
#include "kernels/kernels.h"

#define ENG_LOG(lvl, ...) \
    do { if (kn_log_enabled(lvl)) kn_log((lvl), "engine", __VA_ARGS__); } while (0)

/* One nn.Linear: the hook point for FP8 (issue 5 hangs a quantizer state
 * on it by name).  y[n_out] = x[n_in] . W^T (+ bias). */
typedef struct eng_linear {
    char        name[64];    /* state-dict path without ".weight" */
    const void *w;           /* [n_out, n_in], stored precision, borrowed from the map;
                              * NULL for an FP8 weight of the checkpoint (fp8 holds it) */
    kn_wtype    wtype;
    const eng_tensor *src;   /* w's tensor in m->st (the embedding when tied) */
    const float *bias;       /* [n_out] widened to f32 (owned by the model), or NULL */
    int         n_in, n_out;
    void       *packed;      /* kn_pack_weights panels of w (owned), or NULL: never
                              * for an FP8 weight, and freed while QUANTIZE runs this
                              * Linear from FP8 weights (eng__packed_sync) */
    void       *fp8;         /* FP8 state, NULL until issue 5 */
} eng_linear;

typedef struct eng_layer {
    const float *attn_norm;         /* [dim] */
    const float *ffn_norm;          /* [dim] */
    const float *q_norm, *k_norm;   /* [head_size], Qwen3 only, else NULL */
    eng_linear   q, k, v, o;        /* q: [n_heads*hs, dim]; k,v: [n_kv*hs, dim]; o: [dim, n_heads*hs] */
    eng_linear   gate, up, down;    /* gate,up: [hidden_dim, dim]; down: [dim, hidden_dim] */
    int          window;            /* sliding window in keys (0 = full attention) */
} eng_layer;

/* Scratch for one eng_forward call, grown (outside the layer loop) to the
 * largest batch seen. */
typedef struct eng_scratch {
    size_t cap_rows;
    float *x;        /* [rows, dim] residual stream */
    float *xb;       /* [rows, dim] normed input */
    float *q;        /* [rows, n_heads*hs] */
    float *k, *v;    /* [rows, n_kv*hs] */
    float *att_out;  /* [rows, n_heads*hs] */
    float *hb, *hb2; /* [rows, hidden_dim] */
    float *att;      /* [n_threads, max_ctx] attention scores */
    size_t att_cap;
    int   *row_pos;  /* [rows] absolute position of each row */
    int   *row_item; /* [rows] batch item of each row */
    float *logits;   /* [LOGITS_GROUP, vocab] lm_head rows of a batch (forward.c), or NULL */
    struct eng_batch_item *kept;   /* [kept_cap] the last layer's items after pruning (forward.c) */
    size_t kept_cap;
} eng_scratch;

struct eng_model {
    eng_model_config cfg;
    eng_st_file     *st;
    const kn_math_ops *ops;
    int              n_threads;
    const void      *embed;        /* [vocab, dim], stored precision, in the map: never
                                    * read there (eng__embed_row) */
    const eng_tensor *embed_t;     /* its tensor */
    kn_wtype         embed_type;
    void            *embed_row;    /* [dim] stored-precision bytes: one row read from the file */
    eng_layer       *layers;       /* [n_layers] */
    const float     *final_norm;   /* [dim] */
    eng_linear       lm_head;      /* W = embed when tied */
    eng_linear     **linears;      /* every Linear, in state-dict order */
    size_t           n_linears;
    int              rot_dim;      /* rotated dims of a head (partial rotary) */
    float           *inv_freq;     /* [rot_dim/2] */
    float            attn_factor;  /* multiplies cos and sin (yarn) */
    float          **f32_bufs;     /* widened norm weights and biases (owned) */
    size_t           n_f32_bufs;
    eng_scratch      s;
    struct eng_fp8  *fp8;          /* FP8 state (engine/fp8-int.h), NULL when none */
};

struct eng_seq {
    const eng_model *m;
    size_t n_ctx, len;
    size_t kv_dim;        /* n_kv_heads * head_size */
    float *k, *v;         /* [n_layers][n_ctx][kv_dim], keys after RoPE */
    /* FP8 KV cache (fp8_linear.c decides at creation, for the sequence's
     * whole life): E4M3 codes in k/v's layout instead of k/v, and the
     * layers' [k, v] descales; NULL otherwise. */
    uint8_t *k8, *v8;
    float   *kv_scale;    /* [n_layers][2] */
};

/* safetensors.c: reads of a file after eng_st_open, through the
 * descriptor kept open.  eng__st_check/_check_all fail with -ESTALE and a
 * message naming the file when it changed on disk since it was opened
 * (its fstat identity: st_dev, st_ino, st_size, st_mtim); a caller checks
 * before reading a tensor's mapped bytes again, since a file truncated in
 * place raises SIGBUS on access to the mapping.  eng__st_release drops the
 * resident pages of t's page-aligned interior (read-only MAP_PRIVATE:
 * touched again they come back from the page cache); _range those of
 * bytes [off, off + len) of t, _all those of every file.  eng__st_read copies bytes [off, off + len) of t with
 * pread() after the check (a copied tensor from its copy): a short read
 * is an error naming the file, never a signal.  Thread: the model's. */
int  eng__st_check(const eng_st_file *f, const eng_tensor *t, char *err, size_t errlen);
int  eng__st_check_all(const eng_st_file *f, char *err, size_t errlen);
void eng__st_release(const eng_st_file *f, const eng_tensor *t);
void eng__st_release_range(const eng_st_file *f, const eng_tensor *t, size_t off, size_t len);
void eng__st_release_all(const eng_st_file *f);
int  eng__st_read(const eng_st_file *f, const eng_tensor *t, size_t off, void *dst, size_t len,
                  char *err, size_t errlen);

/* model.c */
/* Makes the packed copies match what mode runs: a Linear that runs from
 * FP8 weights in mode (an FP8 weight of the checkpoint always; one with
 * QUANTIZE weights in QUANTIZE) holds none, every other one holds its
 * panels, re-packed from the mapping after eng__st_check and released
 * from it.  On failure (-ESTALE, -ENOMEM) the copies this call made are
 * freed again, so the packed state still matches the current mode. */
int  eng__packed_sync(eng_model *m, qt_mode mode, char *err, size_t errlen);
/* l's weight widened to f32 [n_out][n_in] in *out (malloc'd, caller
 * frees): from the mapping after eng__st_check (pages released after), or
 * decode(code) * scale for an FP8 weight of the checkpoint. */
int  eng__linear_widen(const eng_model *m, const eng_linear *l, float **out, char *err,
                       size_t errlen);
/* Gives the heap's free pages back to the system (glibc malloc_trim):
 * after a mode switch or an export, which free hundreds of MB in blocks
 * that glibc keeps in its heap once its mmap threshold has grown, so that
 * RSS shows what the model holds (measured: OFF after QUANTIZE 44 MB ->
 * 30 MB, a fresh load's, on shakespeare-small). */
void eng__heap_trim(void);
/* Embedding row tok (checked by the caller) widened to f32 dst[dim]: from
 * the tied lm_head's packed copy when it is resident, else read from the
 * file (eng__st_read); never from the mapping. */
int  eng__embed_row(eng_model *m, int32_t tok, float *dst, char *err, size_t errlen);

/* rope.c: inverse frequencies and attention factor for cfg (§2.4-2.5). */
int eng__rope_init(eng_model *m, char *err, size_t errlen);
/* cos/sin of position pos for the model's rot_dim/2 frequencies. */
void eng__rope_cos_sin(const eng_model *m, int pos, float *cos_out, float *sin_out);

/* forward.c */
int  eng__scratch_reserve(eng_model *m, size_t rows, size_t max_ctx);
void eng__scratch_free(eng_scratch *s);

#endif
