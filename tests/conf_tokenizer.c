/* conf_tokenizer.c: tokenizer conformance against the large reference
 * sets in $FP8D_SHARED_TESTDATA (run by `make conformance`):
 *  - eval.txt and calib.txt encoded whole without BOS equal eval_ids
 *    [62,344] and calib_ids [30,241] of
 *    models/reference/shakespeare-tokenizer.safetensors (made by HF
 *    tokenizers 0.23.2), and decode back to the file byte for byte, both
 *    at once and streamed id by id;
 *  - the 30 shakespeare cases (ids, byte-level token strings) through the
 *    tokenizer of each of the four shakespeare model directories, and the
 *    stories260k cases through models/stories260k.
 * Without the data it prints "SKIP: ... not found" and passes.
 */
#include "config.h"

#include "engine/tokenizer.h"

#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static char g_shared[4096];
static bool g_have;

static char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    long sz = ftell(f);
    ck_assert_int_ge(sz, 0);
    rewind(f);
    char *buf = malloc((size_t)sz + 1);
    ck_assert_uint_eq(fread(buf, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    buf[sz] = '\0';
    *n = (size_t)sz;
    return buf;
}

/* A tiny safetensors reader for one I32 vector (the format: u64 LE header
 * length, JSON header, data).  Every length and offset is checked. */
static int32_t *st_read_i32(const char *path, const char *name, size_t *n)
{
    size_t len;
    unsigned char *f = (unsigned char *)read_all(path, &len);
    uint64_t hlen = 0;
    ck_assert_uint_ge(len, 8);
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | f[i];
    ck_assert_msg(hlen <= len - 8 && hlen < (1u << 24), "%s: header length %llu", path,
                  (unsigned long long)hlen);
    json_error_t je;
    json_t *h = json_loadb((const char *)f + 8, hlen, 0, &je);
    ck_assert_msg(h != NULL, "%s: header JSON: %s", path, je.text);
    json_t *t = json_object_get(h, name);
    ck_assert_msg(json_is_object(t), "%s: no tensor %s", path, name);
    ck_assert_str_eq(json_string_value(json_object_get(t, "dtype")), "I32");
    json_t *shape = json_object_get(t, "shape"), *off = json_object_get(t, "data_offsets");
    ck_assert_uint_eq(json_array_size(shape), 1);
    ck_assert_uint_eq(json_array_size(off), 2);
    uint64_t count = (uint64_t)json_integer_value(json_array_get(shape, 0));
    uint64_t a = (uint64_t)json_integer_value(json_array_get(off, 0));
    uint64_t b = (uint64_t)json_integer_value(json_array_get(off, 1));
    ck_assert_msg(a <= b && b <= len - 8 - hlen && b - a == count * 4, "%s: %s offsets", path,
                  name);
    int32_t *v = malloc(count * 4 + 4);
    const unsigned char *d = f + 8 + hlen + a;
    for (uint64_t i = 0; i < count; i++)
        v[i] = (int32_t)((uint32_t)d[4 * i] | (uint32_t)d[4 * i + 1] << 8 |
                         (uint32_t)d[4 * i + 2] << 16 | (uint32_t)d[4 * i + 3] << 24);
    *n = count;
    json_decref(h);
    free(f);
    return v;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static eng_tokenizer *load(const char *rel)
{
    char dir[4400], err[512] = "";
    eng_tokenizer *t = NULL;
    snprintf(dir, sizeof(dir), "%s/%s", g_shared, rel);
    int rc = eng_tokenizer_load(&t, dir, err, sizeof(err));
    ck_assert_msg(rc == 0, "%s: %s", dir, err);
    return t;
}

static void whole_file(const char *text_name, const char *tensor)
{
    char path[4400];
    size_t tlen, n_ref, n;
    int32_t *ids, *ref;
    char *text, *back;
    size_t back_len;

    if (!g_have) {
        printf("SKIP: %s not found\n", g_shared);
        return;
    }
    eng_tokenizer *t = load("models/shakespeare-tiny");
    snprintf(path, sizeof(path), "%s/text/%s", g_shared, text_name);
    text = read_all(path, &tlen);
    snprintf(path, sizeof(path), "%s/models/reference/shakespeare-tokenizer.safetensors",
             g_shared);
    ref = st_read_i32(path, tensor, &n_ref);

    double t0 = now_s();
    ck_assert_int_eq(eng_tokenizer_encode(t, text, tlen, false, &ids, &n), 0);
    double t1 = now_s();
    size_t k = 0;
    while (k < n && k < n_ref && ids[k] == ref[k])
        k++;
    ck_assert_msg(n == n_ref && k == n, "%s: %zu ids vs %zu reference, first difference at %zu",
                  text_name, n, n_ref, k);
    ck_assert_int_eq(eng_tokenizer_decode(t, ref, n_ref, false, &back, &back_len), 0);
    double t2 = now_s();
    ck_assert_msg(back_len == tlen && memcmp(back, text, tlen) == 0, "%s: decode differs",
                  text_name);

    /* Streamed id by id, the pieces concatenate to the file. */
    eng_detok *d;
    const char *chunk;
    size_t clen, off = 0;
    ck_assert_int_eq(eng_detok_new(&d, t, false), 0);
    for (size_t i = 0; i <= n_ref; i++) {
        int rc = i < n_ref ? eng_detok_push(d, ref[i], &chunk, &clen)
                           : eng_detok_flush(d, &chunk, &clen);
        ck_assert_int_eq(rc, 0);
        ck_assert_msg(off + clen <= tlen && memcmp(text + off, chunk, clen) == 0,
                      "%s: stream differs after byte %zu (id %zu)", text_name, off, i);
        off += clen;
    }
    ck_assert_uint_eq(off, tlen);
    double t3 = now_s();
    printf("%s: %zu bytes -> %zu ids, encode %.3f s (%.0f tokens/s), decode %.3f s, "
           "stream %.3f s\n", text_name, tlen, n, t1 - t0, n / (t1 - t0), t2 - t1, t3 - t2);
    eng_detok_free(d);
    free(ids);
    free(ref);
    free(text);
    free(back);
    eng_tokenizer_free(t);
}

START_TEST(test_eval_txt_matches_eval_ids)
{
    whole_file("eval.txt", "eval_ids");
}
END_TEST

START_TEST(test_calib_txt_matches_calib_ids)
{
    whole_file("calib.txt", "calib_ids");
}
END_TEST

static const char *const kShkDirs[] = {
    "models/shakespeare-tiny", "models/shakespeare-tiny-bf16", "models/shakespeare-small",
    "models/shakespeare-small-bf16",
};

START_TEST(test_shakespeare_cases_every_dir)
{
    if (!g_have) {
        printf("SKIP: %s not found\n", g_shared);
        return;
    }
    char path[4400];
    json_error_t je;
    snprintf(path, sizeof(path), "%s/models/reference/shakespeare-tokenizer.json", g_shared);
    json_t *ref = json_load_file(path, 0, &je), *c;
    ck_assert_msg(ref != NULL, "%s: %s", path, je.text);
    eng_tokenizer *t = load(kShkDirs[_i]);
    size_t ci;
    json_array_foreach(json_object_get(ref, "cases"), ci, c) {
        json_t *text = json_object_get(c, "text"), *want = json_object_get(c, "ids_with_bos");
        json_t *toks = json_object_get(c, "tokens");
        int32_t *ids;
        size_t n;
        ck_assert_int_eq(eng_tokenizer_encode(t, json_string_value(text),
                                              json_string_length(text), true, &ids, &n), 0);
        ck_assert_uint_eq(n, json_array_size(want));
        ck_assert_uint_eq(n, json_array_size(toks) + 1);
        for (size_t i = 0; i < n; i++) {
            ck_assert_int_eq(ids[i], json_integer_value(json_array_get(want, i)));
            if (i > 0)
                ck_assert_str_eq(eng_tokenizer_piece(t, ids[i]),
                                 json_string_value(json_array_get(toks, i - 1)));
        }
        free(ids);
    }
    eng_tokenizer_free(t);
    json_decref(ref);
}
END_TEST

START_TEST(test_stories260k_cases)
{
    if (!g_have) {
        printf("SKIP: %s not found\n", g_shared);
        return;
    }
    char path[4400];
    json_error_t je;
    snprintf(path, sizeof(path), "%s/models/reference/stories260k.json", g_shared);
    json_t *ref = json_load_file(path, 0, &je), *c;
    ck_assert_msg(ref != NULL, "%s: %s", path, je.text);
    eng_tokenizer *t = load("models/stories260k");
    size_t ci, n;
    int32_t *ids;
    json_array_foreach(json_object_get(ref, "tokenizer_cases"), ci, c) {
        const char *text = json_string_value(json_object_get(c, "text"));
        json_t *want = json_object_get(c, "ids");
        ck_assert_int_eq(eng_tokenizer_encode(t, text, strlen(text), true, &ids, &n), 0);
        ck_assert_uint_eq(n, json_array_size(want));
        for (size_t i = 0; i < n; i++)
            ck_assert_int_eq(ids[i], json_integer_value(json_array_get(want, i)));
        free(ids);
    }
    /* The long prompt of the logits reference: BOS + 103 ids. */
    const char *lp = json_string_value(json_object_get(ref, "long_prompt"));
    json_t *want = json_object_get(ref, "long_prompt_ids");
    ck_assert_ptr_nonnull(lp);
    ck_assert_int_eq(eng_tokenizer_encode(t, lp, strlen(lp), true, &ids, &n), 0);
    ck_assert_uint_eq(n, json_array_size(want));
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(ids[i], json_integer_value(json_array_get(want, i)));
    free(ids);
    eng_tokenizer_free(t);
    json_decref(ref);
}
END_TEST

int main(void)
{
    const char *d = getenv("FP8D_SHARED_TESTDATA");
    struct stat st;
    snprintf(g_shared, sizeof(g_shared), "%s", d ? d : "../shared/testdata");
    g_have = stat(g_shared, &st) == 0 && S_ISDIR(st.st_mode);
    if (!g_have)
        printf("SKIP: %s not found (tokenizer conformance needs the shared test data)\n",
               g_shared);

    Suite *s = suite_create("tokenizer-conformance");
    TCase *tc = tcase_create("shakespeare");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_eval_txt_matches_eval_ids);
    tcase_add_test(tc, test_calib_txt_matches_calib_ids);
    tcase_add_loop_test(tc, test_shakespeare_cases_every_dir, 0,
                        (int)(sizeof(kShkDirs) / sizeof(kShkDirs[0])));
    suite_add_tcase(s, tc);
    tc = tcase_create("stories260k");
    tcase_add_test(tc, test_stories260k_cases);
    suite_add_tcase(s, tc);

    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
