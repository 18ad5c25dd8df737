/* tok_config.c: the side files of a tokenizer: tokenizer_config.json
 * (BOS/EOS strings, add_bos_token/add_eos_token, chat_template,
 * split_special_tokens), chat_template.jinja, generation_config.json and
 * config.json (bos/eos ids, int or list), and the stop-id set built from
 * them (model-formats.md 4.10, 4.12, 4.13).  All files are optional. */
#include "config.h"

#include "engine/tok-int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char *dupn(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* A special-token entry: a string, null, or {"content": "..."} (also the
 * old {"__type": "AddedToken", "content": ...}).  *present tells whether
 * the key exists at all (null counts as present: "no such token"). */
static int token_str(json_t *cfg, const char *key, char **out, bool *present,
                     const char *path, char *err, size_t errlen)
{
    json_t *v = json_object_get(cfg, key);

    *out = NULL;
    *present = v != NULL;
    if (v == NULL || json_is_null(v))
        return 0;
    if (json_is_object(v))
        v = json_object_get(v, "content");
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        json_string_length(v) > TOK_MAX_PIECE_LEN) {
        kn_errf(err, errlen, "%s: %s must be a non-empty string, {\"content\": string} or null",
                path, key);
        return -EINVAL;
    }
    *out = dupn(json_string_value(v), json_string_length(v));
    return *out ? 0 : -ENOMEM;
}

/* chat_template: a string, or a list of {"name", "template"} ("default"). */
static int chat_template(json_t *cfg, char **out, const char *path, char *err, size_t errlen)
{
    json_t *v = json_object_get(cfg, "chat_template"), *it;
    size_t i;

    *out = NULL;
    if (v == NULL || json_is_null(v))
        return 0;
    if (json_is_array(v)) {
        json_t *found = NULL;
        json_array_foreach(v, i, it) {
            json_t *name = json_object_get(it, "name");
            if (!json_is_string(name) || !json_is_string(json_object_get(it, "template"))) {
                kn_errf(err, errlen, "%s: chat_template[%zu] must be {\"name\": string, "
                        "\"template\": string}", path, i);
                return -EINVAL;
            }
            if (strcmp(json_string_value(name), "default") == 0)
                found = json_object_get(it, "template");
        }
        v = found;
        if (v == NULL)
            return 0;
    }
    if (!json_is_string(v)) {
        kn_errf(err, errlen, "%s: chat_template must be a string or a list of named templates",
                path);
        return -EINVAL;
    }
    *out = dupn(json_string_value(v), json_string_length(v));
    return *out ? 0 : -ENOMEM;
}

static int read_text_file(const char *path, char **out, char *err, size_t errlen)
{
    struct stat st;
    FILE *f;
    char *buf;

    *out = NULL;
    if (stat(path, &st) != 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > TOK_MAX_FILE_SIZE) {
        kn_errf(err, errlen, "%s: not a regular file of at most %u bytes", path,
                TOK_MAX_FILE_SIZE);
        return -EINVAL;
    }
    if ((f = fopen(path, "rb")) == NULL) {
        kn_errf(err, errlen, "%s: %s", path, strerror(errno));
        return -errno;
    }
    if ((buf = malloc((size_t)st.st_size + 1)) == NULL) {
        fclose(f);
        return -ENOMEM;
    }
    size_t n = fread(buf, 1, (size_t)st.st_size, f);
    fclose(f);
    buf[n] = '\0';
    if (!eng__utf8_valid(buf, n)) {
        kn_errf(err, errlen, "%s: not valid UTF-8", path);
        free(buf);
        return -EINVAL;
    }
    *out = buf;
    return 0;
}

static int add_eos(eng_tokenizer *t, int32_t id)
{
    for (size_t i = 0; i < t->n_eos; i++)
        if (t->eos_ids[i] == id)
            return 0;
    int32_t *p = realloc(t->eos_ids, (t->n_eos + 1) * sizeof(*p));
    if (p == NULL)
        return -ENOMEM;
    t->eos_ids = p;
    /* Keep it sorted: insertion, the set is a handful of ids. */
    size_t i = t->n_eos++;
    while (i > 0 && p[i - 1] > id) {
        p[i] = p[i - 1];
        i--;
    }
    p[i] = id;
    return 0;
}

/* key: an id, a list of ids, null or absent.  ids go to eos (add_eos) or
 * to *first. */
static int id_field(eng_tokenizer *t, json_t *cfg, const char *key, bool to_eos,
                    int32_t *first, const char *path, char *err, size_t errlen)
{
    json_t *v = json_object_get(cfg, key), *it;
    size_t i, n;
    int rc;

    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_integer(v) && !json_is_array(v)) {
        kn_errf(err, errlen, "%s: %s must be an integer, a list of integers or null", path, key);
        return -EINVAL;
    }
    n = json_is_array(v) ? json_array_size(v) : 1;
    for (i = 0; i < n; i++) {
        it = json_is_array(v) ? json_array_get(v, i) : v;
        if (!json_is_integer(it) || json_integer_value(it) < 0 ||
            (uint64_t)json_integer_value(it) >= t->n_ids) {
            if (json_is_array(v))
                kn_errf(err, errlen, "%s: %s[%zu] is not an id of the vocabulary (%zu ids)",
                        path, key, i, t->n_ids);
            else
                kn_errf(err, errlen, "%s: %s is not an id of the vocabulary (%zu ids)",
                        path, key, t->n_ids);
            return -EINVAL;
        }
        int32_t id = (int32_t)json_integer_value(it);
        if (to_eos && (rc = add_eos(t, id)) < 0)
            return rc;
        if (first != NULL && *first < 0)
            *first = id;
    }
    return 0;
}

/* The id of a special-token string from tokenizer_config.json. */
static int text_id(const eng_tokenizer *t, const char *text, const char *key,
                   const char *path, int32_t *id, char *err, size_t errlen)
{
    *id = eng_tokenizer_piece_id(t, text, strlen(text));
    if (*id < 0) {
        kn_errf(err, errlen, "%s: %s \"%.60s\" is not a token of tokenizer.json", path, key,
                text);
        return -EINVAL;
    }
    return 0;
}

/* The end-of-turn tokens of the chat format, when the vocab has them, so
 * that generation stops at the end of the assistant turn (vLLM #4180). */
static int add_turn_end(eng_tokenizer *t)
{
    static const struct { eng_chat_format fmt; const char *tok; } kTurnEnd[] = {
        { ENG_CHAT_LLAMA3, "<|eot_id|>" }, { ENG_CHAT_LLAMA3, "<|eom_id|>" },
        { ENG_CHAT_LLAMA31, "<|eot_id|>" }, { ENG_CHAT_LLAMA31, "<|eom_id|>" },
        { ENG_CHAT_CHATML, "<|im_end|>" }, { ENG_CHAT_CHATML, "<|endoftext|>" },
        { ENG_CHAT_QWEN3, "<|im_end|>" }, { ENG_CHAT_QWEN3, "<|endoftext|>" },
        { ENG_CHAT_GEMMA, "<end_of_turn>" }, { ENG_CHAT_PHI3, "<|end|>" },
    };
    eng_chat_format fmt = eng_chat_detect(t->chat_template);
    int rc;

    for (size_t i = 0; i < sizeof(kTurnEnd) / sizeof(kTurnEnd[0]); i++) {
        if (kTurnEnd[i].fmt != fmt)
            continue;
        int32_t id = eng_tokenizer_piece_id(t, kTurnEnd[i].tok, strlen(kTurnEnd[i].tok));
        if (id >= 0 && (rc = add_eos(t, id)) < 0)
            return rc;
    }
    return 0;
}

static int bool_field(json_t *cfg, const char *key, int *out, const char *path, char *err,
                      size_t errlen)
{
    json_t *v = json_object_get(cfg, key);
    *out = -1;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_boolean(v)) {
        kn_errf(err, errlen, "%s: %s must be a boolean", path, key);
        return -EINVAL;
    }
    *out = json_is_true(v);
    return 0;
}

static int tokenizer_config(eng_tokenizer *t, const char *dir, bool *bos_known, char *err,
                            size_t errlen)
{
    char path[4096];
    json_t *cfg;
    bool eos_present;
    int add_bos, add_eos_tok, split, cleanup, rc;

    snprintf(path, sizeof(path), "%s/tokenizer_config.json", dir);
    if ((cfg = eng__tok_json_load(path, false, err, errlen, &rc)) == NULL)
        return rc;
    if ((rc = token_str(cfg, "bos_token", &t->bos_text, bos_known, path, err, errlen)) < 0 ||
        (rc = token_str(cfg, "eos_token", &t->eos_text, &eos_present, path, err, errlen)) < 0 ||
        (rc = chat_template(cfg, &t->chat_template, path, err, errlen)) < 0 ||
        (rc = bool_field(cfg, "add_bos_token", &add_bos, path, err, errlen)) < 0 ||
        (rc = bool_field(cfg, "add_eos_token", &add_eos_tok, path, err, errlen)) < 0 ||
        (rc = bool_field(cfg, "split_special_tokens", &split, path, err, errlen)) < 0 ||
        (rc = bool_field(cfg, "clean_up_tokenization_spaces", &cleanup, path, err,
                         errlen)) < 0)
        goto out;
    t->split_special = split == 1;
    t->cleanup_spaces = cleanup == 1;
    if (t->bos_text && (rc = text_id(t, t->bos_text, "bos_token", path, &t->bos_id, err,
                                     errlen)) < 0)
        goto out;
    int32_t eos_id = -1;
    if (t->eos_text) {
        if ((rc = text_id(t, t->eos_text, "eos_token", path, &eos_id, err, errlen)) < 0 ||
            (rc = add_eos(t, eos_id)) < 0)
            goto out;
    }
    /* transformers rebuilds the post-processor from these two keys for
     * the tokenizer classes that own them; they win over tokenizer.json. */
    if (add_bos >= 0 || add_eos_tok >= 0) {
        t->n_post_pre = t->n_post_post = 0;
        if (add_bos == 1 && t->bos_id >= 0) {
            if ((t->post_pre = realloc(t->post_pre, sizeof(int32_t))) == NULL)
                goto oom;
            t->post_pre[t->n_post_pre++] = t->bos_id;
        }
        if (add_eos_tok == 1 && eos_id >= 0) {
            if ((t->post_post = realloc(t->post_post, sizeof(int32_t))) == NULL)
                goto oom;
            t->post_post[t->n_post_post++] = eos_id;
        }
    }
    rc = 0;
    goto out;
oom:
    rc = -ENOMEM;
out:
    json_decref(cfg);
    return rc;
}

static int id_config(eng_tokenizer *t, const char *dir, const char *name, bool bos_known,
                     char *err, size_t errlen)
{
    char path[4096];
    json_t *cfg;
    int rc;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if ((cfg = eng__tok_json_load(path, false, err, errlen, &rc)) == NULL)
        return rc;
    rc = id_field(t, cfg, "eos_token_id", true, NULL, path, err, errlen);
    if (rc == 0)
        rc = id_field(t, cfg, "bos_token_id", false, bos_known ? NULL : &t->bos_id, path, err,
                      errlen);
    json_decref(cfg);
    return rc;
}

int eng__tok_load_side_files(eng_tokenizer *t, const char *dir, char *err, size_t errlen)
{
    char path[4096];
    char *jinja = NULL;
    bool bos_known = false;
    int rc;

    if ((rc = tokenizer_config(t, dir, &bos_known, err, errlen)) < 0)
        return rc;
    /* Newer repos keep the template in its own file; we prefer it. */
    snprintf(path, sizeof(path), "%s/chat_template.jinja", dir);
    if ((rc = read_text_file(path, &jinja, err, errlen)) < 0)
        return rc;
    if (jinja != NULL) {
        if (t->chat_template != NULL)
            ENG_TOK_LOG(KN_LOG_WARN, "%s: chat_template.jinja and tokenizer_config.json "
                        "both have a chat template; using chat_template.jinja", dir);
        free(t->chat_template);
        t->chat_template = jinja;
    }
    if ((rc = id_config(t, dir, "generation_config.json", bos_known, err, errlen)) < 0 ||
        (rc = id_config(t, dir, "config.json", bos_known, err, errlen)) < 0)
        return rc;
    if (!bos_known && t->bos_id < 0 && t->n_post_pre == 1)
        t->bos_id = t->post_pre[0];
    return add_turn_end(t);
}
