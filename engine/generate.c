/* generate.c: eng_generate, a one-sequence prompt -> text loop for fp8ctl
 * and tests (the server batches through eng_forward instead).
 *
 * Text is produced by decoding all generated ids each step (quadratic, but
 * fine for a command-line tool) and emitted only up to a point that is
 * final: never inside an incomplete UTF-8 character, and never inside a
 * possible beginning of a stop string. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine-int.h"

void eng_gen_params_default(eng_gen_params *p)
{
    memset(p, 0, sizeof(*p));
    eng_sample_params_default(&p->sample);
    p->max_tokens = 128;
}

/* Length of the longest prefix of s[0..n) that ends on a UTF-8 character
 * boundary and not in a trailing U+FFFD (a decoder's "incomplete" mark). */
static size_t utf8_complete(const char *s, size_t n)
{
    size_t i = n, back = 0;
    while (i > 0 && back < 4 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) {
        i--;
        back++;
    }
    if (i > 0) {
        unsigned c = (unsigned char)s[i - 1];
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        if (need > back + 1)
            n = i - 1;
    }
    while (n >= 3 && memcmp(s + n - 3, "\xEF\xBF\xBD", 3) == 0)
        n -= 3;
    return n;
}

/* How much of text[0..n) is final: no suffix may start a stop string. */
static size_t stop_safe(const char *text, size_t n, const char *const *stop, size_t n_stop)
{
    size_t safe = n;
    for (size_t i = 0; i < n_stop; i++) {
        size_t sl = stop[i] ? strlen(stop[i]) : 0;
        for (size_t k = sl > 1 ? sl - 1 : 0; k > 0; k--)
            if (k <= n && memcmp(text + n - k, stop[i], k) == 0) {
                if (n - k < safe)
                    safe = n - k;
                break;
            }
    }
    return safe;
}

static bool is_eos(const eng_tokenizer *tok, int32_t id)
{
    const int32_t *eos;
    size_t n = tok ? eng_tokenizer_eos(tok, &eos) : 0;
    for (size_t i = 0; i < n; i++)
        if (eos[i] == id)
            return true;
    return false;
}

typedef struct gen_state {
    int32_t *ids;
    size_t   n_ids;
    char    *text;       /* decoded so far (owned) */
    size_t   text_len, emitted;
} gen_state;

/* Decodes ids, emits the final part through cb; 1 = stop string hit. */
static int gen_text(const eng_tokenizer *tok, const eng_gen_params *p, gen_state *g,
                    eng_token_cb cb, void *ud, int32_t id, bool last, int *cb_stop)
{
    char *t = NULL;
    size_t tl = 0, safe;
    long hit;
    int rc = eng_tokenizer_decode(tok, g->ids, g->n_ids, true, &t, &tl);
    if (rc < 0)
        return rc;
    free(g->text);
    g->text = t;
    g->text_len = tl;
    hit = eng_stop_find(t, tl, p->stop, p->n_stop);
    safe = hit >= 0 ? (size_t)hit : last ? tl : stop_safe(t, utf8_complete(t, tl), p->stop,
                                                            p->n_stop);
    if (safe < g->emitted)
        safe = g->emitted;
    if (cb != NULL && cb(id, t + g->emitted, safe - g->emitted, ud) != 0)
        *cb_stop = 1;
    g->emitted = safe;
    if (hit >= 0)
        g->text_len = safe;   /* = hit unless a decode rewrote text already streamed */
    return hit >= 0 ? 1 : 0;
}

int eng_generate(eng_model *m, const eng_tokenizer *tok, const int32_t *prompt,
                 size_t n_prompt, const eng_gen_params *p, eng_token_cb cb, void *ud,
                 int32_t **out_ids, size_t *n_out, char **out_text, size_t *text_len,
                 eng_stop_reason *reason, char *err, size_t errlen)
{
    size_t V = (size_t)m->cfg.vocab_size, n_ctx = n_prompt + (size_t)p->max_tokens;
    eng_seq *seq = NULL;
    eng_sampler *smp = NULL;
    float *logits = NULL;
    gen_state g = {0};
    eng_stop_reason why = ENG_STOP_LENGTH;
    int rc = 0, cb_stop = 0;

    *out_ids = NULL;
    *n_out = 0;
    if (out_text) {
        *out_text = NULL;
        *text_len = 0;
    }
    if (n_prompt == 0 || p->max_tokens <= 0) {
        kn_errf(err, errlen, "generate: empty prompt or max_tokens <= 0");
        return -EINVAL;
    }
    if (n_ctx > (size_t)m->cfg.max_pos)
        n_ctx = (size_t)m->cfg.max_pos;
    if (n_prompt >= n_ctx) {
        kn_errf(err, errlen, "generate: prompt of %zu tokens leaves no room in the model's "
                "context of %d", n_prompt, m->cfg.max_pos);
        return ENG_E_CONTEXT;
    }
    seq = eng_seq_new(m, n_ctx);
    smp = eng_sampler_new(&p->sample, V);
    logits = malloc(V * sizeof(float));
    g.ids = malloc((size_t)p->max_tokens * sizeof(int32_t));
    if (seq == NULL || smp == NULL || logits == NULL || g.ids == NULL) {
        kn_errf(err, errlen, "generate: out of memory or invalid sampling parameters");
        rc = smp == NULL && seq != NULL && logits != NULL ? -EINVAL : -ENOMEM;
        goto out;
    }
    size_t n_tok = tok != NULL ? eng_tokenizer_vocab_size(tok) : V;
    if (n_tok == 0 || n_tok > V)
        n_tok = V;
    eng_batch_item it = {seq, prompt, n_prompt, false, logits};
    if ((rc = eng_forward(m, &it, 1, err, errlen)) < 0)
        goto out;
    while (g.n_ids < (size_t)p->max_tokens) {
        /* Rows past the tokenizer's vocabulary (Qwen2.5 pads 151665 tokens
         * to 151936 rows) decode to nothing: never pick them
         * (model-formats.md §2.7, a deliberate deviation from HF). */
        for (size_t v = n_tok; v < V; v++)
            logits[v] = -INFINITY;
        int32_t id = eng_sampler_sample(smp, logits);
        bool eos = !p->ignore_eos && is_eos(tok, id);
        g.ids[g.n_ids++] = id;
        bool last = eos || g.n_ids == (size_t)p->max_tokens || eng_seq_len(seq) == n_ctx;
        if (tok != NULL) {
            if ((rc = gen_text(tok, p, &g, cb, ud, id, last, &cb_stop)) < 0) {
                kn_errf(err, errlen, "generate: decoding generated ids failed");
                goto out;
            }
            if (rc == 1) {
                why = ENG_STOP_STRING;
                rc = 0;
                break;
            }
        } else if (cb != NULL && cb(id, "", 0, ud) != 0) {
            cb_stop = 1;
        }
        if (eos) {
            why = ENG_STOP_EOS;
            break;
        }
        if (cb_stop) {
            why = ENG_STOP_CALLBACK;
            g.text_len = g.emitted;     /* the returned text is what was streamed */
            break;
        }
        if (last)
            break;
        it = (eng_batch_item){seq, &g.ids[g.n_ids - 1], 1, false, logits};
        if ((rc = eng_forward(m, &it, 1, err, errlen)) < 0)
            goto out;
    }
    if (out_text) {
        size_t tl = g.text ? g.text_len : 0;
        if ((*out_text = malloc(tl + 1)) == NULL) {
            rc = -ENOMEM;
            goto out;
        }
        if (tl > 0)
            memcpy(*out_text, g.text, tl);
        (*out_text)[tl] = '\0';
        *text_len = tl;
    }
    *out_ids = g.ids;
    *n_out = g.n_ids;
    g.ids = NULL;
    if (reason)
        *reason = why;
out:
    free(g.ids);
    free(g.text);
    free(logits);
    eng_sampler_free(smp);
    eng_seq_free(seq);
    return rc;
}
