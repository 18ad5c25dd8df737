/* tok_load.c: eng_tokenizer_load for tokenizer.json (the BPE model, added
 * tokens, then the pipeline stages through tok_json.c and the side files
 * through tok_config.c), eng_tokenizer_free and the lookups.
 * tokenizer.json is untrusted: every type, id and length is checked and a
 * bad one refused with the file and the field named. */
#include "config.h"

#include "engine/tok-int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

json_t *eng__tok_json_load(const char *path, bool required, char *err, size_t errlen, int *rc)
{
    struct stat st;
    json_error_t je;
    json_t *j;

    *rc = 0;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT && !required)
            return NULL;
        *rc = -errno;
        kn_errf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > TOK_MAX_FILE_SIZE) {
        *rc = -EINVAL;
        kn_errf(err, errlen, "%s: not a regular file of at most %u bytes", path,
                TOK_MAX_FILE_SIZE);
        return NULL;
    }
    /* Duplicate keys would make "which id wins" depend on the parser. */
    j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (j == NULL) {
        *rc = -EINVAL;
        kn_errf(err, errlen, "%s: invalid JSON at line %d column %d: %s", path, je.line,
                je.column, je.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        *rc = -EINVAL;
        kn_errf(err, errlen, "%s: the top level must be a JSON object", path);
        json_decref(j);
        return NULL;
    }
    return j;
}

static char *dupn(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static int check_id(json_t *v, const char *path, const char *what, int32_t *id, char *err,
                    size_t errlen)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) >= TOK_MAX_ID) {
        kn_errf(err, errlen, "%s: %s must be an integer id in [0, %d)", path, what, TOK_MAX_ID);
        return -EINVAL;
    }
    *id = (int32_t)json_integer_value(v);
    return 0;
}

/* First pass over model.vocab and added_tokens: types, ranges, max id. */
static int scan_ids(json_t *vocab, json_t *added, const char *path, size_t *n_ids,
                    char *err, size_t errlen)
{
    const char *key;
    json_t *v, *a;
    size_t i;
    int32_t id, max = -1;
    int rc;

    json_object_foreach(vocab, key, v) {
        char what[128];
        snprintf(what, sizeof(what), "model.vocab[\"%.40s\"]", key);
        if ((rc = check_id(v, path, what, &id, err, errlen)) < 0)
            return rc;
        if (strlen(key) > TOK_MAX_PIECE_LEN || key[0] == '\0') {
            kn_errf(err, errlen, "%s: model.vocab has a token of %zu bytes (allowed 1..%d)",
                    path, strlen(key), TOK_MAX_PIECE_LEN);
            return -EINVAL;
        }
        if (id > max)
            max = id;
    }
    json_array_foreach(added, i, a) {
        char what[64];
        snprintf(what, sizeof(what), "added_tokens[%zu].id", i);
        if (!json_is_object(a)) {
            kn_errf(err, errlen, "%s: added_tokens[%zu] must be an object", path, i);
            return -EINVAL;
        }
        if ((rc = check_id(json_object_get(a, "id"), path, what, &id, err, errlen)) < 0)
            return rc;
        if (id > max)
            max = id;
    }
    if (max < 0) {
        kn_errf(err, errlen, "%s: model.vocab is empty", path);
        return -EINVAL;
    }
    *n_ids = (size_t)max + 1;
    return 0;
}

static int load_vocab(eng_tokenizer *t, json_t *vocab, const char *path, char *err,
                      size_t errlen)
{
    const char *key;
    json_t *v;
    int rc;

    if ((rc = eng__strmap_init(&t->vocab, json_object_size(vocab))) < 0)
        return rc;
    json_object_foreach(vocab, key, v) {
        int32_t id = (int32_t)json_integer_value(v);
        size_t len = strlen(key);
        if (t->vocab_piece[id] != NULL) {
            kn_errf(err, errlen, "%s: model.vocab gives id %d to both \"%.40s\" and \"%.40s\"",
                    path, id, t->vocab_piece[id], key);
            return -EINVAL;
        }
        if ((t->vocab_piece[id] = dupn(key, len)) == NULL)
            return -ENOMEM;
        t->vocab_len[id] = (uint32_t)len;
        if ((rc = eng__strmap_put(&t->vocab, t->vocab_piece[id], len, id)) < 0)
            return rc;
    }
    return 0;
}

static int opt_flag(json_t *o, const char *key, bool dflt, bool *out, const char *path,
                    size_t i, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    *out = dflt;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_boolean(v)) {
        kn_errf(err, errlen, "%s: added_tokens[%zu].%s must be a boolean", path, i, key);
        return -EINVAL;
    }
    *out = json_is_true(v);
    return 0;
}

static int load_added(eng_tokenizer *t, json_t *added, const char *path, char *err,
                      size_t errlen)
{
    json_t *a;
    size_t i;
    int rc;

    t->added = calloc(json_array_size(added) + 1, sizeof(*t->added));
    t->added_index = malloc(t->n_ids * sizeof(*t->added_index));
    if (t->added == NULL || t->added_index == NULL ||
        (rc = eng__strmap_init(&t->added_map, json_array_size(added))) < 0)
        return -ENOMEM;
    for (size_t k = 0; k < t->n_ids; k++)
        t->added_index[k] = -1;
    json_array_foreach(added, i, a) {
        tok_added *x = &t->added[t->n_added];
        json_t *c = json_object_get(a, "content");
        x->id = (int32_t)json_integer_value(json_object_get(a, "id"));
        if (!json_is_string(c) || json_string_length(c) == 0 ||
            json_string_length(c) > TOK_MAX_PIECE_LEN) {
            kn_errf(err, errlen, "%s: added_tokens[%zu].content must be a string of 1..%d "
                    "bytes", path, i, TOK_MAX_PIECE_LEN);
            return -EINVAL;
        }
        if ((rc = opt_flag(a, "special", false, &x->special, path, i, err, errlen)) < 0 ||
            (rc = opt_flag(a, "normalized", !x->special, &x->normalized, path, i, err,
                           errlen)) < 0 ||
            (rc = opt_flag(a, "lstrip", false, &x->lstrip, path, i, err, errlen)) < 0 ||
            (rc = opt_flag(a, "rstrip", false, &x->rstrip, path, i, err, errlen)) < 0 ||
            (rc = opt_flag(a, "single_word", false, &x->single_word, path, i, err,
                           errlen)) < 0)
            return rc;
        if (t->added_index[x->id] >= 0) {
            kn_errf(err, errlen, "%s: added_tokens[%zu]: id %d is listed twice", path, i,
                    x->id);
            return -EINVAL;
        }
        x->len = json_string_length(c);
        if ((x->content = dupn(json_string_value(c), x->len)) == NULL)
            return -ENOMEM;
        t->added_index[x->id] = (int32_t)t->n_added;
        t->added_first[(uint8_t)x->content[0]] = 1;
        t->n_added++;
        if ((rc = eng__strmap_put(&t->added_map, x->content, x->len, x->id)) < 0)
            return rc;
    }
    return 0;
}

/* One entry of model.merges: "A B" (legacy) or ["A", "B"]. */
static int merge_parts(json_t *m, size_t i, const char **a, size_t *alen, const char **b,
                       size_t *blen, const char *path, char *err, size_t errlen)
{
    if (json_is_string(m)) {
        const char *s = json_string_value(m);
        const char *sp = memchr(s, ' ', json_string_length(m));
        if (sp == NULL || memchr(sp + 1, ' ', json_string_length(m) - (size_t)(sp + 1 - s))) {
            kn_errf(err, errlen, "%s: model.merges[%zu] \"%.60s\" is not two tokens separated "
                    "by one space", path, i, s);
            return -EINVAL;
        }
        *a = s;
        *alen = (size_t)(sp - s);
        *b = sp + 1;
        *blen = json_string_length(m) - *alen - 1;
    } else if (json_is_array(m) && json_array_size(m) == 2 &&
               json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
        *a = json_string_value(json_array_get(m, 0));
        *alen = json_string_length(json_array_get(m, 0));
        *b = json_string_value(json_array_get(m, 1));
        *blen = json_string_length(json_array_get(m, 1));
    } else {
        kn_errf(err, errlen, "%s: model.merges[%zu] must be a string \"A B\" or an array "
                "[\"A\", \"B\"]", path, i);
        return -EINVAL;
    }
    if (*alen == 0 || *blen == 0 || *alen + *blen > TOK_MAX_PIECE_LEN) {
        kn_errf(err, errlen, "%s: model.merges[%zu] has an empty or too long token", path, i);
        return -EINVAL;
    }
    return 0;
}

static int load_merges(eng_tokenizer *t, json_t *merges, const char *path, char *err,
                       size_t errlen)
{
    char cat[2 * TOK_MAX_PIECE_LEN + 1];
    size_t plen = t->cont_prefix ? strlen(t->cont_prefix) : 0;
    json_t *m;
    size_t i;
    int rc;

    if ((rc = eng__pairmap_init(&t->merges, json_array_size(merges))) < 0)
        return rc;
    json_array_foreach(merges, i, m) {
        const char *a, *b;
        size_t alen, blen;
        int32_t ia, ib, im;
        if (i == 0 && json_is_string(m) && strncmp(json_string_value(m), "#version", 8) == 0)
            continue;
        if ((rc = merge_parts(m, i, &a, &alen, &b, &blen, path, err, errlen)) < 0)
            return rc;
        ia = eng__strmap_get(&t->vocab, a, alen);
        ib = eng__strmap_get(&t->vocab, b, blen);
        memcpy(cat, a, alen);
        /* With a continuing-subword prefix, "A" + "##B" merges into "AB". */
        if (plen > 0 && blen >= plen && memcmp(b, t->cont_prefix, plen) == 0) {
            memcpy(cat + alen, b + plen, blen - plen);
            im = eng__strmap_get(&t->vocab, cat, alen + blen - plen);
        } else {
            memcpy(cat + alen, b, blen);
            im = eng__strmap_get(&t->vocab, cat, alen + blen);
        }
        if (ia < 0 || ib < 0 || im < 0) {
            const char *miss = ia < 0 ? a : ib < 0 ? b : cat;
            int mlen = (int)(ia < 0 ? alen : ib < 0 ? blen : alen + blen);
            kn_errf(err, errlen, "%s: model.merges[%zu]: \"%.*s\" is not in model.vocab", path,
                    i, mlen > 60 ? 60 : mlen, miss);
            return -EINVAL;
        }
        if ((rc = eng__pairmap_put(&t->merges, ia, ib, (int32_t)i, im)) < 0)
            return rc;
    }
    return 0;
}

static int opt_model_str(json_t *model, const char *key, char **out, const char *path,
                         char *err, size_t errlen)
{
    json_t *v = json_object_get(model, key);
    *out = NULL;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_string(v) || json_string_length(v) > TOK_MAX_PIECE_LEN) {
        kn_errf(err, errlen, "%s: model.%s must be a string or null", path, key);
        return -EINVAL;
    }
    /* An empty prefix/suffix behaves like null (Qwen2 files carry ""). */
    if (json_string_length(v) == 0)
        return 0;
    *out = dupn(json_string_value(v), json_string_length(v));
    return *out ? 0 : -ENOMEM;
}

static int model_flag(json_t *model, const char *key, bool *out, const char *path,
                      char *err, size_t errlen)
{
    json_t *v = json_object_get(model, key);
    *out = false;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_boolean(v)) {
        kn_errf(err, errlen, "%s: model.%s must be a boolean", path, key);
        return -EINVAL;
    }
    *out = json_is_true(v);
    return 0;
}

static int load_model(eng_tokenizer *t, json_t *root, const char *path, char *err,
                      size_t errlen)
{
    json_t *model = json_object_get(root, "model");
    json_t *vocab, *merges, *added, *type, *dropout;
    char *unk = NULL;
    int rc;

    if (!json_is_object(model)) {
        kn_errf(err, errlen, "%s: \"model\" is missing or not an object", path);
        return -EINVAL;
    }
    type = json_object_get(model, "type");
    if (type != NULL && !json_is_string(type)) {
        kn_errf(err, errlen, "%s: model.type must be a string", path);
        return -EINVAL;
    }
    if (type != NULL && strcmp(json_string_value(type), "BPE") != 0) {
        kn_errf(err, errlen, "%s: model.type \"%s\" is not supported (only BPE)", path,
                json_string_value(type));
        return -ENOTSUP;
    }
    dropout = json_object_get(model, "dropout");
    if (dropout != NULL && !json_is_null(dropout) &&
        !(json_is_number(dropout) && json_number_value(dropout) == 0.0)) {
        kn_errf(err, errlen, "%s: model.dropout must be null (BPE dropout is for training)",
                path);
        return -ENOTSUP;
    }
    vocab = json_object_get(model, "vocab");
    merges = json_object_get(model, "merges");
    added = json_object_get(root, "added_tokens");
    if (!json_is_object(vocab)) {
        kn_errf(err, errlen, "%s: model.vocab is missing or not an object", path);
        return -EINVAL;
    }
    if (!json_is_array(merges)) {
        kn_errf(err, errlen, "%s: model.merges is missing or not an array", path);
        return -EINVAL;
    }
    if (added != NULL && !json_is_null(added) && !json_is_array(added)) {
        kn_errf(err, errlen, "%s: added_tokens must be an array", path);
        return -EINVAL;
    }
    if (json_is_null(added))
        added = NULL;
    if ((rc = scan_ids(vocab, added, path, &t->n_ids, err, errlen)) < 0)
        return rc;
    t->vocab_piece = calloc(t->n_ids, sizeof(*t->vocab_piece));
    t->vocab_len = calloc(t->n_ids, sizeof(*t->vocab_len));
    if (t->vocab_piece == NULL || t->vocab_len == NULL)
        return -ENOMEM;
    if ((rc = model_flag(model, "fuse_unk", &t->fuse_unk, path, err, errlen)) < 0 ||
        (rc = model_flag(model, "byte_fallback", &t->byte_fallback, path, err, errlen)) < 0 ||
        (rc = model_flag(model, "ignore_merges", &t->ignore_merges, path, err, errlen)) < 0 ||
        (rc = opt_model_str(model, "continuing_subword_prefix", &t->cont_prefix, path, err,
                            errlen)) < 0 ||
        (rc = opt_model_str(model, "end_of_word_suffix", &t->eow_suffix, path, err,
                            errlen)) < 0 ||
        (rc = opt_model_str(model, "unk_token", &unk, path, err, errlen)) < 0)
        return rc;
    if ((rc = load_vocab(t, vocab, path, err, errlen)) < 0 ||
        (rc = load_added(t, added, path, err, errlen)) < 0 ||
        (rc = load_merges(t, merges, path, err, errlen)) < 0)
        goto out;
    t->unk_id = -1;
    if (unk != NULL && (t->unk_id = eng__strmap_get(&t->vocab, unk, strlen(unk))) < 0) {
        kn_errf(err, errlen, "%s: model.unk_token \"%.40s\" is not in model.vocab", path, unk);
        rc = -EINVAL;
        goto out;
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof(name), "<0x%02X>", b);
        t->byte_ids[b] = eng__strmap_get(&t->vocab, name, 6);
    }
out:
    free(unk);
    return rc;
}

static void byte_tables(eng_tokenizer *t)
{
    for (size_t c = 0; c < sizeof(t->bl_dec) / sizeof(t->bl_dec[0]); c++)
        t->bl_dec[c] = -1;
    for (int b = 0; b < 256; b++) {
        uint32_t cp = eng__byte_to_cp((uint8_t)b);
        t->bl_enc_len[b] = (uint8_t)eng__utf8_put(t->bl_enc[b], cp);
        t->bl_dec[cp] = (int16_t)b;
    }
}

static int check_post_ids(const eng_tokenizer *t, const char *path, char *err, size_t errlen)
{
    for (size_t i = 0; i < t->n_post_pre + t->n_post_post; i++) {
        int32_t id = i < t->n_post_pre ? t->post_pre[i] : t->post_post[i - t->n_post_pre];
        if ((size_t)id >= t->n_ids) {
            kn_errf(err, errlen, "%s: post_processor special token id %d is outside the "
                    "vocabulary (%zu ids)", path, id, t->n_ids);
            return -EINVAL;
        }
    }
    return 0;
}

int eng_tokenizer_load(eng_tokenizer **out, const char *model_dir, char *err, size_t errlen)
{
    eng_tokenizer *t = NULL;
    json_t *root = NULL;
    char path[4096];
    int rc;

    *out = NULL;
    if (snprintf(path, sizeof(path), "%s/tokenizer.json", model_dir) >= (int)sizeof(path)) {
        kn_errf(err, errlen, "%s: model directory path too long", model_dir);
        return -ENAMETOOLONG;
    }
    if ((root = eng__tok_json_load(path, true, err, errlen, &rc)) == NULL)
        return rc;
    if ((t = calloc(1, sizeof(*t))) == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    t->bos_id = -1;
    t->unk_id = -1;
    byte_tables(t);
    if ((rc = load_model(t, root, path, err, errlen)) < 0 ||
        (rc = eng__tok_parse_normalizer(t, json_object_get(root, "normalizer"), path, err,
                                        errlen)) < 0 ||
        (rc = eng__tok_parse_pretokenizer(t, json_object_get(root, "pre_tokenizer"), path,
                                          err, errlen)) < 0 ||
        (rc = eng__tok_parse_decoder(t, json_object_get(root, "decoder"), path, err,
                                     errlen)) < 0 ||
        (rc = eng__tok_parse_post(t, json_object_get(root, "post_processor"), path, err,
                                  errlen)) < 0 ||
        (rc = check_post_ids(t, path, err, errlen)) < 0)
        goto fail;
    json_decref(root);
    root = NULL;
    if ((rc = eng__tok_load_side_files(t, model_dir, err, errlen)) < 0)
        goto fail;
    ENG_TOK_LOG(KN_LOG_DEBUG, "loaded %s ids=%zu merges=%u added=%zu", path, t->n_ids,
                t->merges.n, t->n_added);
    *out = t;
    return 0;

fail:
    if (rc == -ENOMEM)
        kn_errf(err, errlen, "%s: out of memory", path);
    json_decref(root);
    eng_tokenizer_free(t);
    return rc;
}

void eng_tokenizer_free(eng_tokenizer *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; t->vocab_piece && i < t->n_ids; i++)
        free(t->vocab_piece[i]);
    free(t->vocab_piece);
    free(t->vocab_len);
    eng__strmap_cleanup(&t->vocab);
    eng__pairmap_cleanup(&t->merges);
    for (size_t i = 0; i < t->n_added; i++)
        free(t->added[i].content);
    free(t->added);
    free(t->added_index);
    eng__strmap_cleanup(&t->added_map);
    free(t->cont_prefix);
    free(t->eow_suffix);
    eng__tok_stages_cleanup(t);
    free(t->eos_ids);
    free(t->bos_text);
    free(t->eos_text);
    free(t->chat_template);
    free(t);
}

size_t eng_tokenizer_vocab_size(const eng_tokenizer *t)
{
    return t->n_ids;
}

const char *eng_tokenizer_piece(const eng_tokenizer *t, int32_t id)
{
    if (id < 0 || (size_t)id >= t->n_ids)
        return NULL;
    if (t->added_index[id] >= 0)
        return t->added[t->added_index[id]].content;
    return t->vocab_piece[id];
}

int32_t eng_tokenizer_piece_id(const eng_tokenizer *t, const char *piece, size_t len)
{
    int32_t id = eng__strmap_get(&t->added_map, piece, len);
    return id >= 0 ? id : eng__strmap_get(&t->vocab, piece, len);
}

bool eng_tokenizer_is_special(const eng_tokenizer *t, int32_t id)
{
    if (id < 0 || (size_t)id >= t->n_ids || t->added_index[id] < 0)
        return false;
    return t->added[t->added_index[id]].special;
}

int32_t eng_tokenizer_bos(const eng_tokenizer *t)
{
    return t->bos_id;
}

size_t eng_tokenizer_eos(const eng_tokenizer *t, const int32_t **ids)
{
    *ids = t->eos_ids;
    return t->n_eos;
}

bool eng_tokenizer_is_eos(const eng_tokenizer *t, int32_t id)
{
    for (size_t i = 0; i < t->n_eos; i++)
        if (t->eos_ids[i] == id)
            return true;
    return false;
}

const char *eng_tokenizer_bos_text(const eng_tokenizer *t) { return t->bos_text; }
const char *eng_tokenizer_eos_text(const eng_tokenizer *t) { return t->eos_text; }
const char *eng_tokenizer_chat_template(const eng_tokenizer *t) { return t->chat_template; }
