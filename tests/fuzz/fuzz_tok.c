/* fuzz_tok.c: see fuzz_tok.h. */
#include "config.h"

#include "tests/fuzz/fuzz_tok.h"
#include "tests/fuzz/fuzz_util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

bool fuzz_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < n) {
        unsigned c = p[i], need, lo = 0x80, hi = 0xBF;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF)
            need = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            lo = c == 0xE0 ? 0xA0 : 0x80;
            hi = c == 0xED ? 0x9F : 0xBF;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            lo = c == 0xF0 ? 0x90 : 0x80;
            hi = c == 0xF4 ? 0x8F : 0xBF;
        } else
            return false;
        if (n - i <= need)
            return false;
        if (p[i + 1] < lo || p[i + 1] > hi)
            return false;
        for (unsigned k = 2; k <= need; k++)
            if (p[i + k] < 0x80 || p[i + k] > 0xBF)
                return false;
        i += need + 1;
    }
    return true;
}

eng_tokenizer *fuzz_tok_load(const char *rel)
{
    char dir[4096], err[512] = "";
    eng_tokenizer *tok = NULL;
    int rc = eng_tokenizer_load(&tok, fuzz_path(dir, sizeof(dir), rel), err, sizeof(err));

    FUZZ_CHECK(rc == 0, "loading %s: %s", dir, err);
    return tok;
}

/* Streams ids through a detokenizer and compares with the full decode. */
static void check_stream(const eng_tokenizer *tok, const int32_t *ids, size_t n_ids,
                         bool skip_special, const char *full, size_t full_len)
{
    eng_detok *d = NULL;
    size_t at = 0, len;
    const char *piece;

    FUZZ_CHECK(eng_detok_new(&d, tok, skip_special) == 0, "eng_detok_new");
    for (size_t i = 0; i <= n_ids; i++) {
        int rc = i < n_ids ? eng_detok_push(d, ids[i], &piece, &len)
                           : eng_detok_flush(d, &piece, &len);
        FUZZ_CHECK(rc == 0, "detok %s: rc %d", i < n_ids ? "push" : "flush", rc);
        FUZZ_CHECK(len <= full_len - at && (len == 0 || memcmp(full + at, piece, len) == 0),
                   "streamed text leaves the full decode at byte %zu (id #%zu = %d, "
                   "skip_special %d)", at, i, i < n_ids ? ids[i] : -1, (int)skip_special);
        at += len;
    }
    FUZZ_CHECK(at == full_len, "streamed %zu bytes, full decode %zu (skip_special %d)", at,
               full_len, (int)skip_special);
    eng_detok_free(d);
}

void fuzz_tok_check_decode(const eng_tokenizer *tok, const int32_t *ids, size_t n_ids)
{
    for (int skip = 0; skip <= 1; skip++) {
        char *text = NULL;
        size_t len = 0;
        int rc = eng_tokenizer_decode(tok, ids, n_ids, skip, &text, &len);

        FUZZ_CHECK(rc == 0, "decode of %zu ids: rc %d", n_ids, rc);
        FUZZ_CHECK(text != NULL && strlen(text) <= len && text[len] == '\0',
                   "decode text not NUL-terminated at its length %zu", len);
        FUZZ_CHECK(fuzz_utf8_valid(text, len), "decode is not valid UTF-8 (%zu bytes)", len);
        check_stream(tok, ids, n_ids, skip, text, len);
        free(text);
    }
}

void fuzz_tok_exercise(const eng_tokenizer *tok, const char *text, size_t len,
                       bool add_special, bool parse_special, bool roundtrip)
{
    int32_t *ids = NULL;
    size_t n_ids = 0, vocab = eng_tokenizer_vocab_size(tok);
    bool valid = fuzz_utf8_valid(text, len);
    int rc = eng_tokenizer_encode_ex(tok, text, len, add_special, parse_special, &ids, &n_ids);

    FUZZ_CHECK(rc == (valid ? 0 : -EILSEQ), "encode of %zu bytes (%s UTF-8): rc %d", len,
               valid ? "valid" : "invalid", rc);
    if (rc < 0) {
        free(ids);
        return;
    }
    for (size_t i = 0; i < n_ids; i++)
        FUZZ_CHECK(ids[i] >= 0 && (size_t)ids[i] < vocab, "id #%zu = %d, vocab %zu", i, ids[i],
                   vocab);
    fuzz_tok_check_decode(tok, ids, n_ids);
    if (roundtrip) {
        char *back = NULL;
        size_t back_len = 0;
        FUZZ_CHECK(eng_tokenizer_decode(tok, ids, n_ids, false, &back, &back_len) == 0, "decode");
        FUZZ_CHECK(back_len == len && memcmp(back, text, len) == 0,
                   "decode(encode(text)) differs: %zu bytes in, %zu out", len, back_len);
        free(back);
    }
    free(ids);
}
