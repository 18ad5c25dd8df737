/* bm_write.c: random-weight Hugging Face directories at a bm_shape:
 * config.json, model.safetensors (BF16 or F32; normal, std 0.02, never
 * zero; norms 1) and a tokenizer.json the engine's loader accepts, so that
 * the scheduler (which needs a tokenizer) can serve the model. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/bench/bm.h"

/* ---- random weights ---------------------------------------------------- */

/* 65536 normal values of std 0.02 (Box-Muller on a fixed seed), none
 * zero, in f32 and BF16 (round to nearest even); samples pick entries by
 * 16 random bits, 4 per xorshift draw (about 1 ns per weight). */
static float g_norm_f32[65536];
static uint16_t g_norm_bf16[65536];

static uint16_t f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

void bm_norm_table_init(void)
{
    uint64_t s = 0x5EED5EED12345678ull;
    for (int i = 0; i < 65536; i += 2) {
        double u1 = ((double)(bm_rng_next(&s) >> 11) + 1.0) / 9007199254740993.0;
        double u2 = (double)(bm_rng_next(&s) >> 11) / 9007199254740992.0;
        double r = sqrt(-2.0 * log(u1));
        for (int j = 0; j < 2; j++) {
            float v = (float)(0.02 * r * (j ? sin(2 * M_PI * u2) : cos(2 * M_PI * u2)));
            if (fabsf(v) < 1e-6f)
                v = v < 0 ? -1e-6f : 1e-6f;   /* never zero, in BF16 too */
            g_norm_f32[i + j] = v;
            g_norm_bf16[i + j] = f32_to_bf16(v);
        }
    }
}

/* One tensor of a shape; visit_tensors calls fn for each, in file order. */
typedef struct tensor_def {
    char name[96];
    int n_dims;
    int64_t shape[2];
    int ones;                  /* norm weight: all 1 */
} tensor_def;

typedef int (*tensor_fn)(const tensor_def *t, void *ud);

static int visit_tensors(const bm_shape *sh, tensor_fn fn, void *ud)
{
    int hs = sh->dim / sh->n_heads, qd = sh->n_heads * hs, kvd = sh->n_kv * hs, rc;
    tensor_def t;

#define T2_(nm, a, b) (snprintf(t.name, sizeof(t.name), "%s", nm), t.n_dims = 2, \
                       t.shape[0] = (a), t.shape[1] = (b), t.ones = 0, fn(&t, ud))
#define T1_(nm, a, o) (snprintf(t.name, sizeof(t.name), "%s", nm), t.n_dims = 1, \
                       t.shape[0] = (a), t.shape[1] = 1, t.ones = (o), fn(&t, ud))
    if ((rc = T2_("model.embed_tokens.weight", sh->vocab, sh->dim)) < 0 ||
        (rc = T1_("model.norm.weight", sh->dim, 1)) < 0)
        return rc;
    for (int l = 0; l < sh->n_layers; l++) {
        char p[64], n[96];
        snprintf(p, sizeof(p), "model.layers.%d.", l);
#define NM_(s) (snprintf(n, sizeof(n), "%s%s", p, s), n)
        if ((rc = T1_(NM_("input_layernorm.weight"), sh->dim, 1)) < 0 ||
            (rc = T1_(NM_("post_attention_layernorm.weight"), sh->dim, 1)) < 0 ||
            (rc = T2_(NM_("self_attn.q_proj.weight"), qd, sh->dim)) < 0 ||
            (rc = T2_(NM_("self_attn.k_proj.weight"), kvd, sh->dim)) < 0 ||
            (rc = T2_(NM_("self_attn.v_proj.weight"), kvd, sh->dim)) < 0 ||
            (rc = T2_(NM_("self_attn.o_proj.weight"), sh->dim, qd)) < 0 ||
            (rc = T2_(NM_("mlp.gate_proj.weight"), sh->ffn, sh->dim)) < 0 ||
            (rc = T2_(NM_("mlp.up_proj.weight"), sh->ffn, sh->dim)) < 0 ||
            (rc = T2_(NM_("mlp.down_proj.weight"), sh->dim, sh->ffn)) < 0)
            return rc;
        if (sh->qkv_bias &&
            ((rc = T1_(NM_("self_attn.q_proj.bias"), qd, 0)) < 0 ||
             (rc = T1_(NM_("self_attn.k_proj.bias"), kvd, 0)) < 0 ||
             (rc = T1_(NM_("self_attn.v_proj.bias"), kvd, 0)) < 0))
            return rc;
#undef NM_
    }
#undef T1_
#undef T2_
    return 0;
}

typedef struct writer {
    FILE *f;
    size_t esz;                /* 2 (BF16) or 4 (F32) */
    size_t off;                /* header: running data offset */
    char *hdr;
    size_t hdr_len, hdr_cap;
    uint64_t rng;
    void *buf;                 /* data: one chunk */
} writer;

#define CHUNK (1u << 20)

static int hdr_append(writer *w, const char *s)
{
    size_t n = strlen(s);
    if (w->hdr_len + n + 1 > w->hdr_cap) {
        size_t cap = (w->hdr_cap + n + 1) * 2;
        char *p = realloc(w->hdr, cap);
        if (p == NULL)
            return -ENOMEM;
        w->hdr = p;
        w->hdr_cap = cap;
    }
    memcpy(w->hdr + w->hdr_len, s, n + 1);
    w->hdr_len += n;
    return 0;
}

static int hdr_tensor(const tensor_def *t, void *ud)
{
    writer *w = ud;
    char e[256];
    size_t bytes = (size_t)t->shape[0] * (size_t)t->shape[1] * w->esz;
    if (t->n_dims == 2)
        snprintf(e, sizeof(e), ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld,%lld],"
                 "\"data_offsets\":[%zu,%zu]}", t->name, w->esz == 2 ? "BF16" : "F32",
                 (long long)t->shape[0], (long long)t->shape[1], w->off, w->off + bytes);
    else
        snprintf(e, sizeof(e), ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld],"
                 "\"data_offsets\":[%zu,%zu]}", t->name, w->esz == 2 ? "BF16" : "F32",
                 (long long)t->shape[0], w->off, w->off + bytes);
    w->off += bytes;
    return hdr_append(w, e);
}

static int data_tensor(const tensor_def *t, void *ud)
{
    writer *w = ud;
    size_t n = (size_t)t->shape[0] * (size_t)t->shape[1];
    for (size_t i = 0; i < n; i += CHUNK) {
        size_t c = n - i < CHUNK ? n - i : CHUNK;
        for (size_t j = 0; j < c; j += 4) {
            uint64_t r = bm_rng_next(&w->rng);
            for (size_t k = 0; k < 4 && j + k < c; k++, r >>= 16) {
                uint16_t ix = (uint16_t)r;
                if (w->esz == 2)
                    ((uint16_t *)w->buf)[j + k] = t->ones ? 0x3F80 : g_norm_bf16[ix];
                else
                    ((float *)w->buf)[j + k] = t->ones ? 1.0f : g_norm_f32[ix];
            }
        }
        if (fwrite(w->buf, w->esz, c, w->f) != c)
            return -EIO;
    }
    return 0;
}

/* fclose, and -EIO when any write to f failed (stdio errors are sticky). */
static int close_checked(FILE *f)
{
    int bad = ferror(f);
    return fclose(f) != 0 || bad ? -EIO : 0;
}

static int write_config(const bm_shape *sh, const char *dir, int f32)
{
    char path[4200], rope[256] = "";
    FILE *f;
    snprintf(path, sizeof(path), "%s/config.json", dir);
    if ((f = fopen(path, "w")) == NULL)
        return -errno;
    if (sh->llama3_rope)
        snprintf(rope, sizeof(rope), "  \"rope_scaling\": {\"factor\": 32.0, "
                 "\"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0, "
                 "\"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"},\n");
    fprintf(f, "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"%s\",\n"
            "  \"hidden_act\": \"silu\",\n  \"hidden_size\": %d,\n"
            "  \"intermediate_size\": %d,\n  \"num_hidden_layers\": %d,\n"
            "  \"num_attention_heads\": %d,\n  \"num_key_value_heads\": %d,\n"
            "  \"head_dim\": %d,\n  \"vocab_size\": %d,\n  \"max_position_embeddings\": %d,\n"
            "  \"rms_norm_eps\": %g,\n  \"rope_theta\": %.1f,\n%s"
            "  \"tie_word_embeddings\": true,\n  \"use_sliding_window\": false,\n"
            "  \"sliding_window\": null,\n  \"attention_bias\": %s,\n"
            "  \"bos_token_id\": %d,\n  \"eos_token_id\": %d,\n"
            "  \"torch_dtype\": \"%s\"\n}\n",
            sh->arch, sh->model_type, sh->dim, sh->ffn, sh->n_layers, sh->n_heads, sh->n_kv,
            sh->dim / sh->n_heads, sh->vocab, sh->max_pos, sh->rms_eps, sh->rope_theta, rope,
            sh->qkv_bias ? "true" : "false", sh->bos, sh->eos, f32 ? "float32" : "bfloat16");
    return close_checked(f);
}

/* Writes dir/config.json and dir/model.safetensors (BF16, or F32). */
int bm_write_model(const bm_shape *sh, const char *dir, int f32)
{
    writer w = {0};
    char path[4200], tmp[4300];
    int rc;
    uint64_t hlen;

    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return -errno;
    if ((rc = write_config(sh, dir, f32)) < 0)
        return rc;
    w.esz = f32 ? 4 : 2;
    if ((rc = hdr_append(&w, "{\"__metadata__\":{\"format\":\"pt\"}")) < 0 ||
        (rc = visit_tensors(sh, hdr_tensor, &w)) < 0 || (rc = hdr_append(&w, "}")) < 0)
        goto out;
    while (w.hdr_len % 8 != 0)
        if ((rc = hdr_append(&w, " ")) < 0)
            goto out;
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    w.rng = 0xC0FFEEull + (uint64_t)sh->dim;
    if ((w.buf = malloc(CHUNK * w.esz)) == NULL || (w.f = fopen(tmp, "wb")) == NULL) {
        rc = w.buf == NULL ? -ENOMEM : -errno;
        goto out;
    }
    hlen = w.hdr_len;   /* little-endian u64 (x86) */
    if (fwrite(&hlen, 8, 1, w.f) != 1 || fwrite(w.hdr, 1, w.hdr_len, w.f) != w.hdr_len) {
        rc = -EIO;
        goto out;
    }
    if ((rc = visit_tensors(sh, data_tensor, &w)) < 0)
        goto out;
    rc = fclose(w.f) == 0 ? 0 : -EIO;
    w.f = NULL;
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
out:
    if (w.f != NULL)
        fclose(w.f);
    if (rc < 0)
        unlink(tmp);
    free(w.buf);
    free(w.hdr);
    return rc;
}

/* ---- tokenizer.json ----------------------------------------------------- */

/* The GPT-2 byte-level stand-in of byte b (model-formats.md §4.7) as
 * UTF-8 into out (2 bytes at most); returns its length. */
static int byte_char(int b, char *out)
{
    unsigned cp;
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)
        cp = (unsigned)b;
    else
        cp = 0x100u + (unsigned)(b <= 0x20 ? b : b <= 0xA0 ? b - 0x7F + 0x21 : 0x43);
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

/* The piece of BPE id i: the byte stand-ins for i < 256, then made-up
 * lowercase words of two letters or more (bijective base 26 from "aa"),
 * every other one after a space ("Ġ"), so that a decode is text. */
static void bpe_piece(int i, char *out)
{
    char rev[16];
    int n = 0, k = i - 256;
    if (i < 256) {
        out[byte_char(i, out)] = '\0';
        return;
    }
    for (int v = k / 2 + 27; v > 0; v = (v - 1) / 26)
        rev[n++] = (char)('a' + (v - 1) % 26);
    if (k % 2)
        out += byte_char(' ', out);
    while (n > 0)
        *out++ = rev[--n];
    *out = '\0';
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s != '\0'; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

int bm_write_tokenizer(const bm_shape *sh, const char *dir)
{
    static const char bl[] = "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
                             "\"trim_offsets\": true, \"use_regex\": true}";
    char path[4200], tmp[4300], piece[32];
    FILE *f;
    int rc;

    snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if ((f = fopen(tmp, "w")) == NULL)
        return -errno;
    fprintf(f, "{\n\"version\": \"1.0\", \"truncation\": null, \"padding\": null,\n"
            "\"added_tokens\": [");
    for (int i = 0; i < sh->tok_special; i++) {
        int id = sh->tok_bpe + i;
        if (id == sh->eos)
            snprintf(piece, sizeof(piece), "<|endoftext|>");
        else if (id == sh->bos)
            snprintf(piece, sizeof(piece), "<|begin_of_text|>");
        else
            snprintf(piece, sizeof(piece), "<|special_%d|>", i);
        fprintf(f, "%s\n {\"id\": %d, \"content\": \"%s\", \"single_word\": false, "
                "\"lstrip\": false, \"rstrip\": false, \"normalized\": false, "
                "\"special\": true}", i ? "," : "", id, piece);
    }
    fprintf(f, "],\n\"normalizer\": null,\n\"pre_tokenizer\": %s,\n\"post_processor\": %s,\n"
            "\"decoder\": %s,\n\"model\": {\"type\": \"BPE\", \"dropout\": null, "
            "\"unk_token\": null, \"continuing_subword_prefix\": null, "
            "\"end_of_word_suffix\": null, \"fuse_unk\": false, \"byte_fallback\": false, "
            "\"ignore_merges\": false,\n\"vocab\": {", bl, bl, bl);
    for (int i = 0; i < sh->tok_bpe; i++) {
        bpe_piece(i, piece);
        fputs(i % 8 ? ", " : i ? ",\n" : "\n", f);
        json_str(f, piece);
        fprintf(f, ": %d", i);
    }
    fprintf(f, "},\n\"merges\": []}\n}\n");
    if ((rc = close_checked(f)) == 0 && rename(tmp, path) < 0)
        rc = -errno;
    if (rc < 0)
        unlink(tmp);
    return rc;
}
