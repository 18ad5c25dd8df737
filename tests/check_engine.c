/* check_engine.c: fast unit tests of engine/ and the forward-pass math in
 * kernels/ on committed data (tests/data/models, subsets of the shared
 * transformers references; see tests/data/README.md) and on files the
 * tests write themselves (malformed safetensors, bad configs). */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/engine.h"
#include "engine/engine-int.h"   /* tests only: RoPE tables */

static const char *g_data;   /* $FP8D_TEST_DATA */
static char g_tmp[256];      /* per-process scratch directory */

/* ---- helpers: write safetensors files ----------------------------------- */

/* Deterministic uniform [-1, 1) (an LCG: tests must not depend on libc rand). */
static float frand(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return (float)((*s >> 8) & 0xFFFF) / 32768.0f - 1.0f;
}


static void write_raw(const char *path, const void *a, size_t na, const void *b, size_t nb)
{
    FILE *f = fopen(path, "wb");
    ck_assert(f != NULL);
    ck_assert(fwrite(a, 1, na, f) == na);
    if (nb > 0)
        ck_assert(fwrite(b, 1, nb, f) == nb);
    fclose(f);
}

/* File = u64 len(header) + header + data_len bytes of data (0x11 filled). */
static const char *write_st(const char *name, const char *header, size_t data_len)
{
    static char path[512];
    size_t hl = strlen(header);
    unsigned char *buf = malloc(8 + hl + data_len + 1);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    memset(buf + 8 + hl, 0x11, data_len);
    snprintf(path, sizeof(path), "%s/%s", g_tmp, name);
    write_raw(path, buf, 8 + hl + data_len, NULL, 0);
    free(buf);
    return path;
}

static int open_st(const char *path, char *err, size_t errlen)
{
    eng_st_file *f = NULL;
    int rc = eng_st_open(&f, path, err, errlen);
    ck_assert(rc < 0 ? f == NULL : f != NULL);
    eng_st_close(f);
    return rc;
}

/* Expects rc and that err mentions every given fragment. */
static void expect_refused(const char *header, size_t data_len, int want_rc, const char *frag1,
                           const char *frag2)
{
    char err[512] = "";
    const char *p = write_st("bad.safetensors", header, data_len);
    int rc = open_st(p, err, sizeof(err));
    ck_assert_msg(rc == want_rc, "header %s: rc %d, want %d (%s)", header, rc, want_rc, err);
    ck_assert_msg(strstr(err, "bad.safetensors") != NULL, "error names no file: %s", err);
    ck_assert_msg(frag1 == NULL || strstr(err, frag1) != NULL, "'%s' not in: %s", frag1, err);
    ck_assert_msg(frag2 == NULL || strstr(err, frag2) != NULL, "'%s' not in: %s", frag2, err);
}

/* ---- safetensors --------------------------------------------------------- */

START_TEST(test_st_valid_file_fields)
{
    char err[512] = "";
    eng_st_file *f = NULL;
    const char *p = write_st("ok.safetensors",
        "{\"__metadata__\":{\"format\":\"pt\"},"
        "\"b\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[16,28]},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
        "\"s\":{\"dtype\":\"F8_E4M3\",\"shape\":[],\"data_offsets\":[28,29]},"
        "\"z\":{\"dtype\":\"F8_E5M2\",\"shape\":[0,5],\"data_offsets\":[29,29]}}   ", 29);
    ck_assert_msg(eng_st_open(&f, p, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(eng_st_count(f), 4);
    const eng_tensor *a = eng_st_find(f, "a"), *b = eng_st_find(f, "b");
    const eng_tensor *s = eng_st_find(f, "s"), *z = eng_st_find(f, "z");
    ck_assert(a && b && s && z && eng_st_find(f, "nope") == NULL);
    ck_assert(strcmp(eng_st_at(f, 0)->name, "a") == 0);      /* sorted by name */
    ck_assert(a->dtype == ENG_DT_F32 && a->n_elem == 4 && a->size == 16);
    ck_assert(b->dtype == ENG_DT_BF16 && b->n_dims == 2 && b->shape[1] == 3 && b->size == 12);
    ck_assert(s->n_dims == 0 && s->n_elem == 1 && s->dtype == ENG_DT_F8_E4M3);
    ck_assert(z->n_elem == 0 && z->size == 0);
    ck_assert((uintptr_t)a->data % 4 == 0 && (uintptr_t)b->data % 2 == 0);
    ck_assert(((const unsigned char *)b->data)[0] == 0x11);
    eng_st_close(f);
}
END_TEST

START_TEST(test_st_refuses_truncated_file)
{
    char err[512] = "";
    /* header promises 16 bytes of data, the file holds 10 */
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 10,
                   ENG_E_FORMAT, "\"a\"", "truncated");
    /* header length runs past the end */
    unsigned char hdr[12] = {200, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' '};
    char path[512];
    snprintf(path, sizeof(path), "%s/short.safetensors", g_tmp);
    write_raw(path, hdr, sizeof(hdr), NULL, 0);
    ck_assert_int_eq(open_st(path, err, sizeof(err)), ENG_E_FORMAT);
    ck_assert_msg(strstr(err, "short.safetensors") && strstr(err, "past the end"), "%s", err);
    write_raw(path, hdr, 5, NULL, 0);
    ck_assert_int_eq(open_st(path, err, sizeof(err)), ENG_E_FORMAT);
    write_raw(path, hdr, 0, NULL, 0);
    ck_assert_int_eq(open_st(path, err, sizeof(err)), ENG_E_FORMAT);
    snprintf(path, sizeof(path), "%s/absent.safetensors", g_tmp);
    ck_assert_int_eq(open_st(path, err, sizeof(err)), -ENOENT);
}
END_TEST

START_TEST(test_st_refuses_overlap_hole_trailing)
{
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                   "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", 24,
                   ENG_E_FORMAT, "\"b\"", "overlap");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[4,20]}}", 20,
                   ENG_E_FORMAT, "\"a\"", "hole");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 20,
                   ENG_E_FORMAT, "trailing", NULL);
}
END_TEST

START_TEST(test_st_refuses_huge_header)
{
    char err[512] = "", path[512];
    unsigned char hdr[16] = {0x01, 0xE1, 0xF5, 0x05, 0, 0, 0, 0, '{', '}'};  /* 100,000,001 */
    snprintf(path, sizeof(path), "%s/huge.safetensors", g_tmp);
    write_raw(path, hdr, sizeof(hdr), NULL, 0);
    ck_assert_int_eq(open_st(path, err, sizeof(err)), ENG_E_FORMAT);
    ck_assert_msg(strstr(err, "huge.safetensors") && strstr(err, "limit"), "%s", err);
    memset(hdr, 0xFF, 8);                                   /* 2^64-1: no overflow */
    write_raw(path, hdr, sizeof(hdr), NULL, 0);
    ck_assert_int_eq(open_st(path, err, sizeof(err)), ENG_E_FORMAT);
}
END_TEST

START_TEST(test_st_refuses_wrong_dtype_size)
{
    expect_refused("{\"w\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16,
                   ENG_E_FORMAT, "\"w\"", "needs 8 bytes");
    expect_refused("{\"w\":{\"dtype\":\"Q4_K\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16,
                   ENG_E_FORMAT, "\"w\"", "unknown dtype");
    expect_refused("{\"w\":{\"dtype\":\"F4\",\"shape\":[4],\"data_offsets\":[0,2]}}", 2,
                   ENG_E_UNSUPPORTED, "\"w\"", "F4");
    expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[4.0],\"data_offsets\":[0,16]}}", 16,
                   ENG_E_FORMAT, "\"w\"", "shape[0]");
    expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}}", 16,
                   ENG_E_FORMAT, "\"w\"", "shape[0]");
    expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,0]}}", 16,
                   ENG_E_FORMAT, "\"w\"", "BEGIN <= END");
    expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16],\"x\":1}}", 16,
                   ENG_E_FORMAT, "\"w\"", "exactly");
    expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[65536,65536,65536,65536],"
                   "\"data_offsets\":[0,16]}}", 16, ENG_E_FORMAT, "\"w\"", "overflow");
}
END_TEST

START_TEST(test_st_refuses_bad_json)
{
    expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}", 16,
                   ENG_E_FORMAT, "JSON", NULL);
    expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                   "\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16,
                   ENG_E_FORMAT, "JSON", NULL);                /* duplicate key */
    expect_refused("[1,2]   ", 0, ENG_E_FORMAT, "JSON object", NULL);
    expect_refused("{\"__metadata__\":{\"n\":1}}", 0, ENG_E_FORMAT, "__metadata__", NULL);
    expect_refused("{\"__x\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0,
                   ENG_E_FORMAT, "reserved", NULL);
    expect_refused("{\"a\":\"\xC3\x28\"}", 0, ENG_E_FORMAT, "UTF-8", NULL);
    expect_refused("{} x", 0, ENG_E_FORMAT, "JSON", NULL);      /* trailing garbage */
}
END_TEST

START_TEST(test_st_sharded_index)
{
    char dir[300], p[400], err[512] = "";
    eng_st_file *f = NULL;
    const char *h1 = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    const char *h2 = "{\"b\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    snprintf(dir, sizeof(dir), "%s/sharded", g_tmp);
    mkdir(dir, 0700);
    rename(write_st("x", h1, 8), (snprintf(p, sizeof(p), "%s/m-1.safetensors", dir), p));
    rename(write_st("x", h2, 4), (snprintf(p, sizeof(p), "%s/m-2.safetensors", dir), p));
    snprintf(p, sizeof(p), "%s/model.safetensors.index.json", dir);
    const char *idx = "{\"metadata\":{\"total_size\":12},\"weight_map\":"
                      "{\"a\":\"m-1.safetensors\",\"b\":\"m-2.safetensors\"}}";
    write_raw(p, idx, strlen(idx), NULL, 0);
    ck_assert_msg(eng_st_open_dir(&f, dir, err, sizeof(err)) == 0, "%s", err);
    ck_assert(eng_st_count(f) == 2 && eng_st_find(f, "b")->dtype == ENG_DT_I32);
    ck_assert(strstr(eng_st_find(f, "b")->file, "m-2.safetensors") != NULL);
    eng_st_close(f);
    /* a tensor mapped to the wrong shard */
    idx = "{\"weight_map\":{\"a\":\"m-2.safetensors\",\"b\":\"m-2.safetensors\"}}";
    write_raw(p, idx, strlen(idx), NULL, 0);
    ck_assert_int_eq(eng_st_open_dir(&f, dir, err, sizeof(err)), ENG_E_FORMAT);
    ck_assert_msg(strstr(err, "\"a\"") && strstr(err, "index.json"), "%s", err);
    /* path traversal */
    idx = "{\"weight_map\":{\"a\":\"../m-1.safetensors\"}}";
    write_raw(p, idx, strlen(idx), NULL, 0);
    ck_assert_int_eq(eng_st_open_dir(&f, dir, err, sizeof(err)), ENG_E_FORMAT);
    ck_assert_msg(strstr(err, "bare shard file name"), "%s", err);
    /* the same tensor in two shards */
    rename(write_st("x", h1, 8), (snprintf(p, sizeof(p), "%s/m-2.safetensors", dir), p));
    snprintf(p, sizeof(p), "%s/model.safetensors.index.json", dir);
    idx = "{\"weight_map\":{\"a\":\"m-1.safetensors\",\"c\":\"m-2.safetensors\"}}";
    write_raw(p, idx, strlen(idx), NULL, 0);
    ck_assert_int_eq(eng_st_open_dir(&f, dir, err, sizeof(err)), ENG_E_FORMAT);
    ck_assert_msg(strstr(err, "both"), "%s", err);
    snprintf(p, sizeof(p), "%s/nothing", g_tmp);
    mkdir(p, 0700);
    ck_assert_int_eq(eng_st_open_dir(&f, p, err, sizeof(err)), -ENOENT);
}
END_TEST

/* Random byte mutations of a valid file (header and data, and cuts of its
 * length): every result is either refused with an error that names the
 * file, or opens with every tensor inside the mapped bytes.  Never a crash
 * (run under --enable-asan to see overreads). */
START_TEST(test_st_mutations_never_crash)
{
    const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"},"
                      "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                      "\"b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[16,22]}}";
    size_t hl = strlen(hdr), total = 8 + hl + 22;
    unsigned char *good = malloc(total), *buf = malloc(total);
    char path[512], err[512];
    unsigned seed = 77;
    int opened = 0, refused = 0;
    for (int i = 0; i < 8; i++)
        good[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(good + 8, hdr, hl);
    memset(good + 8 + hl, 0x3F, 22);
    snprintf(path, sizeof(path), "%s/mut.safetensors", g_tmp);
    for (int it = 0; it < 3000; it++) {
        size_t len = total;
        memcpy(buf, good, total);
        int n_mut = 1 + (int)((frand(&seed) + 1) * 2);
        for (int k = 0; k < n_mut; k++) {
            frand(&seed);
            size_t pos = (seed >> 4) % total;
            buf[pos] = it % 3 == 0 ? (unsigned char)"0123456789[]{},:\"-.e "[(seed >> 12) % 21]
                                   : (unsigned char)((seed >> 12) & 0xFF);
        }
        if (it % 7 == 0) {
            frand(&seed);
            len = (seed >> 4) % (total + 1);
        }
        write_raw(path, buf, len, NULL, 0);
        eng_st_file *f = NULL;
        err[0] = '\0';
        int rc = eng_st_open(&f, path, err, sizeof(err));
        if (rc < 0) {
            ck_assert_msg(f == NULL && strstr(err, "mut.safetensors") != NULL,
                          "mutation %d: rc %d with error \"%s\"", it, rc, err);
            refused++;
            continue;
        }
        for (size_t t = 0; t < eng_st_count(f); t++) {
            const eng_tensor *ti = eng_st_at(f, t);
            ck_assert(ti->size == ti->n_elem * eng_dtype_size(ti->dtype) || ti->n_elem == 0);
            for (size_t b = 0; b < ti->size; b++)   /* touch every byte (ASan) */
                (void)*(volatile const unsigned char *)((const unsigned char *)ti->data + b);
        }
        opened++;
        eng_st_close(f);
    }
    ck_assert(opened > 0 && refused > 0);
    free(good);
    free(buf);
}
END_TEST

/* ---- config.json ---------------------------------------------------------- */

#define CFG_BASE "\"hidden_size\":64,\"intermediate_size\":96,\"num_hidden_layers\":4," \
                 "\"num_attention_heads\":4,\"vocab_size\":100,\"max_position_embeddings\":64"

static int parse_cfg(eng_model_config *c, const char *json, char *err, size_t errlen)
{
    return eng_model_config_parse(c, json, strlen(json), "test/config.json", err, errlen);
}

START_TEST(test_config_families)
{
    eng_model_config c;
    char err[512] = "";
    ck_assert_msg(parse_cfg(&c, "{\"architectures\":[\"LlamaForCausalLM\"]," CFG_BASE "}",
                            err, sizeof(err)) == 0, "%s", err);
    ck_assert(c.arch == ENG_ARCH_LLAMA && c.n_kv_heads == 4 && c.head_size == 16);
    ck_assert(!c.tie_embeddings && !c.attn_bias && fabsf(c.rms_eps - 1e-6f) < 1e-12f);
    ck_assert(c.rope_type == ENG_ROPE_DEFAULT && c.rope_theta == 10000.0);
    eng_model_config_cleanup(&c);
    ck_assert(parse_cfg(&c, "{\"architectures\":[\"Qwen2ForCausalLM\"]," CFG_BASE
                        ",\"num_key_value_heads\":2,\"use_sliding_window\":true,"
                        "\"sliding_window\":8,\"max_window_layers\":2}", err, sizeof(err)) == 0);
    ck_assert(c.attn_bias && !c.attn_out_bias && !c.qk_norm && c.n_kv_heads == 2);
    ck_assert(!c.layer_sliding[1] && c.layer_sliding[2] && c.sliding_window == 8);
    eng_model_config_cleanup(&c);
    ck_assert(parse_cfg(&c, "{\"model_type\":\"qwen3\"," CFG_BASE ",\"head_dim\":32,"
                        "\"rope_parameters\":{\"rope_type\":\"default\",\"rope_theta\":1e6}}",
                        err, sizeof(err)) == 0);
    ck_assert(c.arch == ENG_ARCH_QWEN3 && c.qk_norm && c.head_size == 32 && c.rope_theta == 1e6);
    eng_model_config_cleanup(&c);
    ck_assert(parse_cfg(&c, "{\"architectures\":[\"MistralForCausalLM\"]," CFG_BASE
                        ",\"sliding_window\":16}", err, sizeof(err)) == 0);
    ck_assert(c.layer_sliding[0] && c.layer_sliding[3] && c.sliding_window == 16);
    eng_model_config_cleanup(&c);
    ck_assert(parse_cfg(&c, "{\"architectures\":[\"MistralForCausalLM\"]," CFG_BASE
                        ",\"sliding_window\":null,\"layer_types\":[\"full_attention\","
                        "\"full_attention\",\"full_attention\",\"full_attention\"]}",
                        err, sizeof(err)) == 0);
    ck_assert(!c.layer_sliding[0]);
    eng_model_config_cleanup(&c);
}
END_TEST

static void expect_cfg_refused(const char *json, int want, const char *frag)
{
    eng_model_config c;
    char err[512] = "";
    int rc = parse_cfg(&c, json, err, sizeof(err));
    ck_assert_msg(rc == want, "rc %d want %d: %s", rc, want, err);
    ck_assert_msg(strstr(err, "test/config.json") && strstr(err, frag), "'%s' not in: %s",
                  frag, err);
}

START_TEST(test_config_refuses_bad)
{
    expect_cfg_refused("{\"architectures\":[\"GPT2LMHeadModel\"]," CFG_BASE "}",
                       ENG_E_UNSUPPORTED, "GPT2LMHeadModel");
    expect_cfg_refused("{\"architectures\":[\"LlamaForCausalLM\"]," CFG_BASE
                       ",\"hidden_act\":\"gelu\"}", ENG_E_UNSUPPORTED, "gelu");
    expect_cfg_refused("{\"architectures\":[\"LlamaForCausalLM\"]," CFG_BASE
                       ",\"rope_scaling\":{\"type\":\"longrope\"}}", ENG_E_UNSUPPORTED,
                       "longrope");
    expect_cfg_refused("{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64}",
                       ENG_E_FORMAT, "vocab_size");
    expect_cfg_refused("{\"architectures\":[\"LlamaForCausalLM\"]," CFG_BASE
                       ",\"num_key_value_heads\":3}", ENG_E_FORMAT, "num_key_value_heads");
    expect_cfg_refused("{\"architectures\":[\"LlamaForCausalLM\"]," CFG_BASE
                       ",\"rms_norm_eps\":\"small\"}", ENG_E_FORMAT, "rms_norm_eps");
    expect_cfg_refused("{\"architectures\":[\"LlamaForCausalLM\"]," CFG_BASE
                       ",\"rope_scaling\":{\"rope_type\":\"linear\"}}", ENG_E_FORMAT, "factor");
    expect_cfg_refused("{\"architectures\":[\"LlamaForCausalLM\"]," CFG_BASE
                       ",\"quantization_config\":{}}", ENG_E_UNSUPPORTED, "quantization_config");
    expect_cfg_refused("{\"architectures\":[\"LlamaForCausalLM\"] " CFG_BASE "}",
                       ENG_E_FORMAT, "line");
}
END_TEST

/* inv_freq of a config through rope.c, into m (caller frees m.inv_freq). */
static void rope_of(eng_model *m, const char *json)
{
    char err[512] = "";
    memset(m, 0, sizeof(*m));
    ck_assert_msg(parse_cfg(&m->cfg, json, err, sizeof(err)) == 0, "%s", err);
    ck_assert_msg(eng__rope_init(m, err, sizeof(err)) == 0, "%s", err);
}

/* Test vectors of model-formats.md §2.5 (double-precision formula values;
 * our float32 tables must agree to float rounding). */
START_TEST(test_rope_llama3_and_yarn_vectors)
{
    eng_model m;
    rope_of(&m, "{\"model_type\":\"llama\",\"hidden_size\":4096,\"intermediate_size\":8,"
                "\"num_hidden_layers\":1,\"num_attention_heads\":32,\"vocab_size\":8,"
                "\"max_position_embeddings\":131072,\"rope_theta\":500000,"
                "\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8,\"low_freq_factor\":1,"
                "\"high_freq_factor\":4,\"original_max_position_embeddings\":8192}}");
    ck_assert_int_eq(m.rot_dim, 128);
    ck_assert_float_eq_tol(m.inv_freq[0], 1.0f, 1e-6f);
    ck_assert_float_eq_tol(m.inv_freq[20], 1.656044e-02f, 1.656044e-02f * 2e-6f);
    ck_assert_float_eq_tol(m.inv_freq[40], 3.428102e-05f, 3.428102e-05f * 2e-6f);
    ck_assert_float_eq_tol(m.inv_freq[63], 3.068926e-07f, 3.068926e-07f * 2e-6f);
    ck_assert_float_eq(m.attn_factor, 1.0f);
    free(m.inv_freq);
    eng_model_config_cleanup(&m.cfg);
    rope_of(&m, "{\"model_type\":\"qwen3\",\"hidden_size\":1024,\"intermediate_size\":8,"
                "\"num_hidden_layers\":1,\"num_attention_heads\":8,\"vocab_size\":8,"
                "\"head_dim\":128,\"max_position_embeddings\":131072,"
                "\"rope_parameters\":{\"rope_type\":\"yarn\",\"rope_theta\":1000000,"
                "\"factor\":4,\"original_max_position_embeddings\":32768}}");
    ck_assert_float_eq_tol(m.attn_factor, 1.1386294f, 1e-6f);
    ck_assert_float_eq_tol(m.inv_freq[0], 1.0f, 1e-6f);
    ck_assert_float_eq_tol(m.inv_freq[10], 1.154782e-01f, 1.154782e-01f * 2e-6f);
    ck_assert_float_eq_tol(m.inv_freq[30], 1.064361e-03f, 1.064361e-03f * 2e-6f);
    ck_assert_float_eq_tol(m.inv_freq[40], 4.445699e-05f, 4.445699e-05f * 2e-6f);
    ck_assert_float_eq_tol(m.inv_freq[63], 3.102344e-07f, 3.102344e-07f * 2e-6f);
    free(m.inv_freq);
    eng_model_config_cleanup(&m.cfg);
    /* linear divides every frequency by the factor */
    rope_of(&m, "{\"model_type\":\"llama\"," CFG_BASE ",\"rope_scaling\":{\"type\":\"linear\","
                "\"factor\":4}}");
    ck_assert_float_eq_tol(m.inv_freq[0], 0.25f, 1e-7f);
    ck_assert_float_eq_tol(m.inv_freq[4], 0.25f / 100.0f, 1e-8f);   /* 1/10000^(8/16) */
    free(m.inv_freq);
    eng_model_config_cleanup(&m.cfg);
}
END_TEST

/* ---- kernels: math ------------------------------------------------------ */

START_TEST(test_widen_exact)
{
    ck_assert(kn_bf16_to_f32(0x3F80) == 1.0f && kn_bf16_to_f32(0xC040) == -3.0f);
    ck_assert(kn_f16_to_f32(0x3C00) == 1.0f && kn_f16_to_f32(0xC000) == -2.0f);
    ck_assert(kn_f16_to_f32(0x0001) == ldexpf(1.0f, -24));        /* smallest subnormal */
    ck_assert(kn_f16_to_f32(0x03FF) == ldexpf(1023.0f, -24));
    ck_assert(kn_f16_to_f32(0x7BFF) == 65504.0f && isinf(kn_f16_to_f32(0x7C00)));
    ck_assert(isnan(kn_f16_to_f32(0x7E00)) && signbit(kn_f16_to_f32(0x8000)));
}
END_TEST

/* Every variant against the reference on odd shapes and every weight type.
 * Tolerance: both accumulate K products of |x|,|w| <= 1 in f32; the sums
 * differ only in order, so |diff| <= 2 K eps sum|x w| <= 2 K^2 eps. */
START_TEST(test_linear_variants_match_ref)
{
    const kn_math_ops *ref = kn_math_variant(0), *v = kn_math_variant(_i);
    static const size_t Ms[] = {1, 3, 4, 5, 9}, Ns[] = {1, 4, 5, 17}, Ks[] = {1, 15, 16, 17, 63, 172};
    unsigned seed = 7;
    if (!kn_math_usable(v)) {
        printf("SKIP %s: not supported by this CPU\n", v->name);
        return;
    }
    for (int wt = 0; wt < 3; wt++)
        for (size_t a = 0; a < 5; a++)
            for (size_t b = 0; b < 4; b++)
                for (size_t c = 0; c < 6; c++) {
                    size_t M = Ms[a], N = Ns[b], K = Ks[c];
                    float *x = malloc(M * K * 4), *w32 = malloc(N * K * 4), *bias = malloc(N * 4);
                    uint16_t *w16 = malloc(N * K * 2);
                    float *y0 = malloc(M * N * 4), *y1 = malloc(M * N * 4);
                    for (size_t i = 0; i < M * K; i++)
                        x[i] = frand(&seed);
                    for (size_t i = 0; i < N * K; i++) {
                        w32[i] = frand(&seed);
                        frand(&seed);
                        w16[i] = wt == KN_W_BF16 ? (uint16_t)(0x3F00 | (seed & 0x7F)) | ((seed & 1) << 15)
                                                 : (uint16_t)(0x3800 | (seed & 0x3FF));
                    }
                    for (size_t i = 0; i < N; i++)
                        bias[i] = frand(&seed);
                    const void *w = wt == KN_W_F32 ? (const void *)w32 : (const void *)w16;
                    const float *bb = (c % 2) ? bias : NULL;
                    ref->linear(y0, N, x, K, M, w, (kn_wtype)wt, K, 0, N, bb);
                    /* two column ranges, as two threads would split them */
                    v->linear(y1, N, x, K, M, w, (kn_wtype)wt, K, 0, N / 2, bb);
                    v->linear(y1, N, x, K, M, w, (kn_wtype)wt, K, N / 2, N, bb);
                    for (size_t i = 0; i < M * N; i++)
                        ck_assert_msg(fabsf(y0[i] - y1[i]) <= 2.0f * K * K * 1.2e-7f + 1e-6f,
                                      "%s wt %d M %zu N %zu K %zu: %g vs %g", v->name, wt, M, N, K,
                                      y0[i], y1[i]);
                    ck_assert_float_eq_tol(v->dot(x, x, K), ref->dot(x, x, K), 2.0f * K * 1.2e-7f * K);
                    free(x); free(w32); free(bias); free(w16); free(y0); free(y1);
                }
}
END_TEST

/* Packed panels (kn_pack_weights + linear_packed) of every variant, the
 * reference's included, against the plain reference product; N values
 * cover partial panels, and the panel range is split as threads split it. */
START_TEST(test_linear_packed_matches_ref)
{
    const kn_math_ops *ref = kn_math_variant(0), *v = kn_math_variant(_i);
    static const size_t Ms[] = {1, 5, 7, 8, 11, 13, 25}, Ns[] = {1, 17, 32, 33, 70},
                        Ks[] = {1, 16, 17, 172};
    unsigned seed = 11;
    if (!kn_math_usable(v) || v->linear_packed == NULL) {
        printf("SKIP %s packed: not supported here\n", v->name);
        return;
    }
    for (int wt = 0; wt < 3; wt++)
        for (size_t a = 0; a < sizeof(Ms) / sizeof(Ms[0]); a++)
            for (size_t b = 0; b < 5; b++)
                for (size_t c = 0; c < 4; c++) {
                    size_t M = Ms[a], N = Ns[b], K = Ks[c], np = (N + KN_PANEL - 1) / KN_PANEL;
                    float *x = malloc(M * K * 4), *w32 = malloc(N * K * 4), *bias = malloc(N * 4);
                    uint16_t *w16 = malloc(N * K * 2);
                    float *y0 = malloc(M * N * 4), *y1 = calloc(M * N + 64, 4);
                    void *pk = kn_alloc(kn_packed_size((kn_wtype)wt, N, K));
                    for (size_t i = 0; i < M * K; i++)
                        x[i] = frand(&seed);
                    for (size_t i = 0; i < N * K; i++) {
                        w32[i] = frand(&seed);
                        frand(&seed);
                        w16[i] = wt == KN_W_BF16 ? (uint16_t)((0x3F00 | (seed & 0x7F)) | ((seed & 1) << 15))
                                                 : (uint16_t)(0x3800 | (seed & 0x3FF));
                    }
                    for (size_t i = 0; i < N; i++)
                        bias[i] = frand(&seed);
                    const void *w = wt == KN_W_F32 ? (const void *)w32 : (const void *)w16;
                    const float *bb = (c % 2) ? bias : NULL;
                    kn_pack_weights(pk, w, (kn_wtype)wt, N, K);
                    ref->linear(y0, N, x, K, M, w, (kn_wtype)wt, K, 0, N, bb);
                    v->linear_packed(y1, N, x, K, M, pk, (kn_wtype)wt, K, N, 0, np / 2, bb);
                    v->linear_packed(y1, N, x, K, M, pk, (kn_wtype)wt, K, N, np / 2, np, bb);
                    for (size_t i = 0; i < M * N; i++)
                        ck_assert_msg(fabsf(y0[i] - y1[i]) <= 2.0f * K * K * 1.2e-7f + 1e-6f,
                                      "%s packed wt %d M %zu N %zu K %zu: %g vs %g", v->name, wt,
                                      M, N, K, y0[i], y1[i]);
                    for (size_t i = M * N; i < M * N + 64; i++)
                        ck_assert_msg(y1[i] == 0.0f, "%s packed wrote past y", v->name);
                    free(x); free(w32); free(bias); free(w16); free(y0); free(y1); kn_free(pk);
                }
}
END_TEST

/* kn_packed_row gives back row n of the packed W exactly (the original
 * row widened element by element), for partial panels and every type. */
START_TEST(test_packed_row_gathers_rows)
{
    static const size_t Ns[] = {1, 31, 32, 33, 70}, Ks[] = {1, 17, 64};
    unsigned seed = 13;
    for (int wt = 0; wt < 3; wt++)
        for (size_t b = 0; b < 5; b++)
            for (size_t c = 0; c < 3; c++) {
                size_t N = Ns[b], K = Ks[c], esz = wt == KN_W_F32 ? 4 : 2;
                unsigned char *w = malloc(N * K * esz);
                float *got = malloc(K * 4), want;
                void *pk = kn_alloc(kn_packed_size((kn_wtype)wt, N, K));
                for (size_t i = 0; i < N * K * esz; i++) {
                    frand(&seed);
                    w[i] = (unsigned char)(seed >> 9);
                }
                kn_pack_weights(pk, w, (kn_wtype)wt, N, K);
                for (size_t n = 0; n < N; n++) {
                    kn_packed_row(got, pk, (kn_wtype)wt, K, n);
                    for (size_t k = 0; k < K; k++) {
                        uint16_t h;
                        memcpy(&h, w + (n * K + k) * esz, 2);
                        if (wt == KN_W_F32)
                            memcpy(&want, w + (n * K + k) * 4, 4);
                        else
                            want = wt == KN_W_BF16 ? kn_bf16_to_f32(h) : kn_f16_to_f32(h);
                        ck_assert_msg(memcmp(&got[k], &want, 4) == 0 || (isnan(want) &&
                                      isnan(got[k])), "wt %d N %zu K %zu row %zu col %zu: %g vs %g",
                                      wt, N, K, n, k, (double)got[k], (double)want);
                    }
                }
                free(w); free(got); kn_free(pk);
            }
}
END_TEST

START_TEST(test_norm_softmax_silu_rope_by_hand)
{
    float x[4] = {1, 2, 3, 4}, w[4] = {1, 1, 2, 0.5f}, y[4];
    kn_rmsnorm(y, x, w, 4, 0.0f);                      /* rms = sqrt(30/4) */
    float r = 1.0f / sqrtf(7.5f);
    ck_assert_float_eq_tol(y[2], 2 * 3 * r, 1e-6f);
    ck_assert_float_eq_tol(y[3], 0.5f * 4 * r, 1e-6f);
    float s[3] = {0, logf(2), logf(3)};
    kn_softmax(s, 3);
    ck_assert_float_eq_tol(s[0], 1.0f / 6, 1e-6f);
    ck_assert_float_eq_tol(s[2], 0.5f, 1e-6f);
    float g[2] = {0, 2}, u[2] = {5, 3};
    kn_silu_mul(g, u, 2);
    ck_assert_float_eq(g[0], 0.0f);
    ck_assert_float_eq_tol(g[1], 2.0f / (1 + expf(-2)) * 3, 1e-6f);
    float q[4] = {1, 2, 3, 4}, c[2] = {0, 1}, sn[2] = {1, 0};
    kn_rope_half(q, c, sn, 4);   /* pair 0 rotated 90 degrees: (1,3) -> (-3,1); pair 1 kept */
    ck_assert(q[0] == -3 && q[2] == 1 && q[1] == 2 && q[3] == 4);
}
END_TEST

/* ---- models on committed data ------------------------------------------ */

static eng_model *load_data_model(const char *name, const char *kernels)
{
    char path[512], err[512] = "";
    eng_model *m = NULL;
    eng_model_opts o;
    eng_model_opts_default(&o);
    o.kernels = kernels;
    o.n_threads = 2;
    snprintf(path, sizeof(path), "%s/models/%s", g_data, name);
    ck_assert_msg(eng_model_load(&m, path, &o, err, sizeof(err)) == 0, "%s", err);
    return m;
}

static eng_st_file *load_ref(const char *name)
{
    char path[512], err[512] = "";
    eng_st_file *f = NULL;
    snprintf(path, sizeof(path), "%s/models/%s", g_data, name);
    ck_assert_msg(eng_st_open(&f, path, err, sizeof(err)) == 0, "%s", err);
    return f;
}

static const eng_tensor *ref_t(const eng_st_file *f, const char *name)
{
    const eng_tensor *t = eng_st_find(f, name);
    ck_assert_msg(t != NULL, "%s missing", name);
    return t;
}

static float max_diff(const float *a, const float *b, size_t n)
{
    float mx = 0;
    for (size_t i = 0; i < n; i++)
        mx = fabsf(a[i] - b[i]) > mx || isnan(a[i]) ? fabsf(a[i] - b[i]) : mx;
    return mx;
}

static int argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b])
            b = i;
    return b;
}

static const struct {
    const char *dir, *ref;
} g_models[] = {
    {"llama_tiny_bf16", "llama_tiny_ref.safetensors"},
    {"qwen2_tiny_bf16", "qwen2_tiny_ref.safetensors"},
};

/* prompt1 and prompt2 in one batch, whole prompts, for each kernel
 * variant; then prompt2 token by token; then greedy through the cache. */
START_TEST(test_model_logits_batch_and_cache)
{
    for (int kv = 0; kv < kn_math_variant_count(); kv++) {
        const kn_math_ops *ops = kn_math_variant(kv);
        if (!kn_math_usable(ops))
            continue;
        eng_model *m = load_data_model(g_models[_i].dir, ops->name);
        eng_st_file *ref = load_ref(g_models[_i].ref);
        int V = eng_model_get_config(m)->vocab_size;
        const eng_tensor *id1 = ref_t(ref, "prompt1_ids"), *id2 = ref_t(ref, "prompt2_ids");
        const float *l1 = ref_t(ref, "prompt1_logits_bf16w")->data;
        const float *l2 = ref_t(ref, "prompt2_logits_bf16w")->data;
        const int32_t *g2 = ref_t(ref, "prompt2_greedy_ids_bf16w")->data;
        size_t n1 = id1->n_elem, n2 = id2->n_elem, ng = 32;
        char err[512] = "";
        eng_seq *s1 = eng_seq_new(m, n1), *s2 = eng_seq_new(m, n2 + ng);
        float *o1 = malloc(n1 * V * 4), *o2 = malloc(n2 * V * 4);
        eng_batch_item it[2] = {{s1, id1->data, n1, true, o1}, {s2, id2->data, n2, true, o2}};
        ck_assert_msg(eng_forward(m, it, 2, err, sizeof(err)) == 0, "%s", err);
        ck_assert_msg(max_diff(o1, l1, n1 * V) <= 1e-3f, "%s/%s prompt1", g_models[_i].dir, ops->name);
        ck_assert_msg(max_diff(o2, l2, n2 * V) <= 1e-3f, "%s/%s prompt2", g_models[_i].dir, ops->name);
        ck_assert(eng_seq_len(s1) == n1 && eng_seq_len(s2) == n2);
        /* last rows only, of many items at once: lm_head runs for up to
         * 16 of them per pass (forward.c), so 18 items take two passes */
        enum { NB = 18 };
        eng_seq *sb[NB];
        eng_batch_item ib[NB];
        float *ob = malloc((size_t)NB * V * 4);
        ck_assert_ptr_nonnull(ob);
        for (int b = 0; b < NB; b++) {
            sb[b] = eng_seq_new(m, n1 > n2 ? n1 : n2);
            ib[b] = (eng_batch_item){sb[b], b % 2 ? id2->data : id1->data, b % 2 ? n2 : n1,
                                     false, ob + (size_t)b * V};
        }
        ck_assert_msg(eng_forward(m, ib, NB, err, sizeof(err)) == 0, "%s", err);
        for (int b = 0; b < NB; b++) {
            const float *want = b % 2 ? l2 + (n2 - 1) * V : l1 + (n1 - 1) * V;
            ck_assert_msg(max_diff(ob + (size_t)b * V, want, V) <= 1e-3f,
                          "%s/%s batch of %d, item %d: last row", g_models[_i].dir, ops->name,
                          NB, b);
            eng_seq_free(sb[b]);
        }
        free(ob);
        /* The last layer runs on the rows whose logits are asked for
         * only (forward.c, keep_rows): a mix of last-row, no-logits,
         * empty and all-rows items, then the no-logits item's last token
         * through the cache it left (its last layer's keys and values
         * must hold every row). */
        {
            eng_seq *sm[5];
            float *om = malloc((size_t)(n2 + 3) * V * 4);
            ck_assert_ptr_nonnull(om);
            for (int b = 0; b < 5; b++)
                sm[b] = eng_seq_new(m, n1 > n2 ? n1 : n2);
            eng_batch_item im[5] = {
                {sm[0], id1->data, n1, false, om},
                {sm[1], id2->data, n2 - 1, false, NULL},
                {sm[2], id1->data, 0, false, om + V},
                {sm[3], id2->data, n2, true, om + 3 * (size_t)V},
                {sm[4], id1->data, 2, false, om + 2 * (size_t)V},
            };
            ck_assert_msg(eng_forward(m, im, 5, err, sizeof(err)) == 0, "%s", err);
            ck_assert_msg(max_diff(om, l1 + (n1 - 1) * V, V) <= 1e-3f, "%s mixed: last row",
                          ops->name);
            ck_assert_msg(max_diff(om + 2 * (size_t)V, l1 + V, V) <= 1e-3f,
                          "%s mixed: 2-token item", ops->name);
            ck_assert_msg(max_diff(om + 3 * (size_t)V, l2, n2 * V) <= 1e-3f,
                          "%s mixed: all rows", ops->name);
            ck_assert(eng_seq_len(sm[1]) == n2 - 1 && eng_seq_len(sm[2]) == 0);
            eng_batch_item last = {sm[1], (const int32_t *)id2->data + n2 - 1, 1, false, om};
            ck_assert_msg(eng_forward(m, &last, 1, err, sizeof(err)) == 0, "%s", err);
            ck_assert_msg(max_diff(om, l2 + (n2 - 1) * V, V) <= 1e-3f,
                          "%s mixed: step after a prompt without logits", ops->name);
            for (int b = 0; b < 5; b++)
                eng_seq_free(sm[b]);
            free(om);
        }
        /* token by token */
        eng_seq_truncate(s2, 0);
        for (size_t t = 0; t < n2; t++) {
            eng_batch_item one = {s2, (const int32_t *)id2->data + t, 1, false, o2};
            ck_assert(eng_forward(m, &one, 1, err, sizeof(err)) == 0);
            ck_assert_msg(max_diff(o2, l2 + t * V, V) <= 1e-3f, "%s step %zu", ops->name, t);
        }
        /* greedy 32 ids via the cache */
        for (size_t k = 0; k < ng; k++) {
            int32_t id = argmax(o2, V);
            ck_assert_msg(id == g2[k], "%s greedy %zu: %d vs %d", ops->name, k, id, g2[k]);
            eng_batch_item one = {s2, &g2[k], 1, false, o2};
            ck_assert(eng_forward(m, &one, 1, err, sizeof(err)) == 0);
        }
        free(o1); free(o2);
        eng_seq_free(s1); eng_seq_free(s2);
        eng_st_close(ref);
        eng_model_free(m);
    }
}
END_TEST

START_TEST(test_model_names_are_state_dict_paths)
{
    eng_model *m = load_data_model("qwen2_tiny_bf16", NULL);
    size_t n = eng_model_n_linears(m);
    ck_assert_uint_eq(n, 2 * 7 + 1);
    ck_assert_str_eq(eng_model_linear_name(m, 0), "model.layers.0.self_attn.q_proj");
    ck_assert_str_eq(eng_model_linear_name(m, 13), "model.layers.1.mlp.down_proj");
    ck_assert_str_eq(eng_model_linear_name(m, 14), "lm_head");     /* tied */
    ck_assert(eng_model_linear_name(m, 15) == NULL);
    eng_model_free(m);
}
END_TEST

START_TEST(test_forward_refuses_bad_batches)
{
    eng_model *m = load_data_model("stories260k", NULL);
    eng_seq *s = eng_seq_new(m, 4), *s2 = eng_seq_new(m, 4);
    int32_t ids[5] = {1, 2, 3, 4, 5}, bad = 512;
    char err[512] = "";
    eng_batch_item it = {s, ids, 5, false, NULL};
    ck_assert_int_eq(eng_forward(m, &it, 1, err, sizeof(err)), ENG_E_CONTEXT);
    ck_assert_msg(strstr(err, "context of 4"), "%s", err);
    ck_assert_uint_eq(eng_seq_len(s), 0);
    it = (eng_batch_item){s, &bad, 1, false, NULL};
    ck_assert_int_eq(eng_forward(m, &it, 1, err, sizeof(err)), -EINVAL);
    ck_assert_msg(strstr(err, "512"), "%s", err);
    eng_batch_item two[2] = {{s, ids, 1, false, NULL}, {s, ids, 1, false, NULL}};
    ck_assert_int_eq(eng_forward(m, two, 2, err, sizeof(err)), -EINVAL);
    ck_assert(eng_seq_new(m, 513) == NULL);              /* beyond max_position_embeddings */
    float lg[512];
    eng_batch_item empty = {s, ids, 0, false, lg};       /* nothing to do, nothing written */
    ck_assert_int_eq(eng_forward(m, &empty, 1, err, sizeof(err)), 0);
    ck_assert_uint_eq(eng_seq_len(s), 0);
    /* an error in item 1 leaves item 0's sequence untouched */
    two[1] = (eng_batch_item){s2, &bad, 1, false, NULL};
    ck_assert_int_eq(eng_forward(m, two, 2, err, sizeof(err)), -EINVAL);
    ck_assert_uint_eq(eng_seq_len(s), 0);
    eng_seq_free(s);
    eng_seq_free(s2);
    eng_model_free(m);
}
END_TEST

START_TEST(test_model_refuses_bad_dirs)
{
    char dir[400], p[500], err[512] = "";
    eng_model *m = NULL;
    snprintf(dir, sizeof(dir), "%s/badmodel", g_tmp);
    mkdir(dir, 0700);
    snprintf(p, sizeof(p), "%s/config.json", dir);
    const char *cfg = "{\"architectures\":[\"LlamaForCausalLM\"]," CFG_BASE "}";
    write_raw(p, cfg, strlen(cfg), NULL, 0);
    ck_assert_int_eq(eng_model_load(&m, dir, NULL, err, sizeof(err)), -ENOENT);
    ck_assert(m == NULL && strstr(err, "model.safetensors"));
    /* weights present but the architecture's tensors are not */
    snprintf(p, sizeof(p), "%s/model.safetensors", dir);
    rename(write_st("x", "{\"model.embed_tokens.weight\":{\"dtype\":\"F32\",\"shape\":[100,64],"
                    "\"data_offsets\":[0,25600]}}", 25600), p);
    ck_assert_int_eq(eng_model_load(&m, dir, NULL, err, sizeof(err)), ENG_E_FORMAT);
    ck_assert_msg(strstr(err, "model.layers.0.input_layernorm.weight") && strstr(err, "missing"),
                  "%s", err);
    /* wrong shape */
    rename(write_st("x", "{\"model.embed_tokens.weight\":{\"dtype\":\"F32\",\"shape\":[100,32],"
                    "\"data_offsets\":[0,12800]}}", 12800), p);
    ck_assert_int_eq(eng_model_load(&m, dir, NULL, err, sizeof(err)), ENG_E_FORMAT);
    ck_assert_msg(strstr(err, "model.embed_tokens.weight") && strstr(err, "[100, 64]"), "%s", err);
    /* FP8 weights are not for this engine yet */
    rename(write_st("x", "{\"model.embed_tokens.weight\":{\"dtype\":\"F8_E4M3\",\"shape\":[100,64],"
                    "\"data_offsets\":[0,6400]}}", 6400), p);
    ck_assert_int_eq(eng_model_load(&m, dir, NULL, err, sizeof(err)), ENG_E_UNSUPPORTED);
    ck_assert_msg(strstr(err, "F8_E4M3"), "%s", err);
}
END_TEST

/* ---- a naive reference forward, written here, for the families and
 * options the shared references do not cover (Qwen3 q/k norm, head_dim !=
 * dim/heads, sliding windows, o_proj and MLP biases, partial rotary, linear
 * RoPE scaling, F16 and BF16 weights).  Double precision, full recompute
 * per position, no cache, straight from model-formats.md §2.3-2.5. ------ */

typedef struct tiny_spec {
    const char *config;   /* config.json text */
    int dim, hidden, layers, heads, kv, hs, vocab;
    bool qkv_bias, o_bias, mlp_bias, qk_norm, tied;
    const char *dtype;    /* "F32", "F16", "BF16" */
    int window;           /* 0 = full */
    double theta, rope_div, partial;
} tiny_spec;

typedef struct tiny_tensor {
    char   name[96];
    int    d0, d1;        /* d1 0 = 1-D */
    double *val;          /* values as stored (after rounding to dtype) */
} tiny_tensor;

typedef struct tiny_model {
    tiny_tensor t[128];
    int n;
} tiny_model;

/* A 16-bit pattern of dtype near x's magnitude class, and its exact value. */
static double make_val(const char *dtype, unsigned *seed, uint16_t *bits, bool norm)
{
    double x = frand(seed) * 0.5;
    if (norm)
        x = 1.0 + x * 0.8;                   /* norm weights around 1 */
    if (strcmp(dtype, "BF16") == 0) {
        float f = (float)x;
        uint32_t u;
        memcpy(&u, &f, 4);
        *bits = (uint16_t)(u >> 16);         /* truncation: any bf16 value will do */
        u = (uint32_t)*bits << 16;
        memcpy(&f, &u, 4);
        return f;
    }
    if (strcmp(dtype, "F16") == 0) {         /* sign, exponent 9..15, 10-bit mantissa */
        unsigned e = 9 + (*seed >> 7) % 7, m = (*seed >> 13) & 1023, s = x < 0;
        *bits = (uint16_t)(s << 15 | e << 10 | m);
        return (s ? -1 : 1) * ldexp(1.0 + m / 1024.0, (int)e - 15);
    }
    return (float)x;
}

static tiny_tensor *tiny_add(tiny_model *tm, const char *name, int d0, int d1)
{
    tiny_tensor *t = &tm->t[tm->n++];
    ck_assert(tm->n <= 128);
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->d0 = d0;
    t->d1 = d1;
    t->val = calloc((size_t)d0 * (d1 ? d1 : 1), sizeof(double));
    return t;
}

static void tiny_build(tiny_model *tm, const tiny_spec *s)
{
    char n[96];
    int qd = s->heads * s->hs, kvd = s->kv * s->hs;
    memset(tm, 0, sizeof(*tm));
    tiny_add(tm, "model.embed_tokens.weight", s->vocab, s->dim);
    for (int l = 0; l < s->layers; l++) {
#define T(suffix, a, b) (snprintf(n, sizeof(n), "model.layers.%d.%s", l, suffix), tiny_add(tm, n, a, b))
        T("input_layernorm.weight", s->dim, 0);
        T("post_attention_layernorm.weight", s->dim, 0);
        T("self_attn.q_proj.weight", qd, s->dim);
        T("self_attn.k_proj.weight", kvd, s->dim);
        T("self_attn.v_proj.weight", kvd, s->dim);
        T("self_attn.o_proj.weight", s->dim, qd);
        T("mlp.gate_proj.weight", s->hidden, s->dim);
        T("mlp.up_proj.weight", s->hidden, s->dim);
        T("mlp.down_proj.weight", s->dim, s->hidden);
        if (s->qkv_bias) {
            T("self_attn.q_proj.bias", qd, 0);
            T("self_attn.k_proj.bias", kvd, 0);
            T("self_attn.v_proj.bias", kvd, 0);
        }
        if (s->o_bias)
            T("self_attn.o_proj.bias", s->dim, 0);
        if (s->mlp_bias) {
            T("mlp.gate_proj.bias", s->hidden, 0);
            T("mlp.up_proj.bias", s->hidden, 0);
            T("mlp.down_proj.bias", s->dim, 0);
        }
        if (s->qk_norm) {
            T("self_attn.q_norm.weight", s->hs, 0);
            T("self_attn.k_norm.weight", s->hs, 0);
        }
#undef T
    }
    tiny_add(tm, "model.norm.weight", s->dim, 0);
    if (!s->tied)
        tiny_add(tm, "lm_head.weight", s->vocab, s->dim);
}

/* Writes config.json and model.safetensors (values rounded to dtype). */
static void tiny_write(tiny_model *tm, const tiny_spec *s, const char *dir)
{
    size_t es = strcmp(s->dtype, "F32") == 0 ? 4 : 2, off = 0, hl = 0;
    char *hdr = malloc(65536), path[512];
    unsigned seed = 99;
    unsigned char *data = NULL;
    hl += (size_t)sprintf(hdr + hl, "{");
    for (int i = 0; i < tm->n; i++) {
        tiny_tensor *t = &tm->t[i];
        size_t ne = (size_t)t->d0 * (t->d1 ? t->d1 : 1);
        if (t->d1)
            hl += (size_t)sprintf(hdr + hl, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[%d,%d],"
                                  "\"data_offsets\":[%zu,%zu]}", i ? "," : "", t->name, s->dtype,
                                  t->d0, t->d1, off, off + ne * es);
        else
            hl += (size_t)sprintf(hdr + hl, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[%d],"
                                  "\"data_offsets\":[%zu,%zu]}", i ? "," : "", t->name, s->dtype,
                                  t->d0, off, off + ne * es);
        data = realloc(data, off + ne * es);
        bool norm = strstr(t->name, "norm") != NULL;
        for (size_t j = 0; j < ne; j++) {
            uint16_t b = 0;
            t->val[j] = make_val(s->dtype, &seed, &b, norm);
            if (es == 2) {
                memcpy(data + off + j * 2, &b, 2);
            } else {
                float f = (float)t->val[j];
                memcpy(data + off + j * 4, &f, 4);
            }
        }
        off += ne * es;
    }
    hl += (size_t)sprintf(hdr + hl, "}");
    mkdir(dir, 0700);
    snprintf(path, sizeof(path), "%s/config.json", dir);
    write_raw(path, s->config, strlen(s->config), NULL, 0);
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    FILE *f = fopen(path, "wb");
    ck_assert(f != NULL);
    ck_assert(fwrite(len8, 1, 8, f) == 8 && fwrite(hdr, 1, hl, f) == hl &&
              fwrite(data, 1, off, f) == off);
    fclose(f);
    free(hdr);
    free(data);
}

static const double *WG(const tiny_model *tm, const char *n)
{
    for (int i = 0; i < tm->n; i++)
        if (strcmp(tm->t[i].name, n) == 0)
            return tm->t[i].val;
    return NULL;
}

/* Tensor "model.layers.<l>.<suffix>" (NULL when the spec has none). */
static const double *WL(const tiny_model *tm, int l, const char *suffix)
{
    char n[96];
    snprintf(n, sizeof(n), "model.layers.%d.%s", l, suffix);
    return WG(tm, n);
}

static void nv_linear(double *y, const double *x, const double *w, const double *b, int no, int ni)
{
    for (int o = 0; o < no; o++) {
        double a = b ? b[o] : 0;
        for (int i = 0; i < ni; i++)
            a += w[(size_t)o * ni + i] * x[i];
        y[o] = a;
    }
}

static void nv_rms(double *y, const double *x, const double *w, int n, double eps)
{
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += x[i] * x[i];
    double r = 1 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++)
        y[i] = w[i] * x[i] * r;
}

static void nv_rope(double *x, int p, const tiny_spec *s)
{
    int R = (int)(s->hs * s->partial);
    for (int i = 0; i < R / 2; i++) {
        double inv = 1 / pow(s->theta, 2.0 * i / R) / s->rope_div, a = p * inv;
        double x0 = x[i], x1 = x[i + R / 2];
        x[i] = x0 * cos(a) - x1 * sin(a);
        x[i + R / 2] = x1 * cos(a) + x0 * sin(a);
    }
}

/* logits[T][vocab] for ids[0..T) */
static void nv_forward(const tiny_model *tm, const tiny_spec *s, const int32_t *ids, int T,
                       double *logits)
{
    int d = s->dim, qd = s->heads * s->hs, kvd = s->kv * s->hs, hs = s->hs;
    double *x = calloc((size_t)T * d, 8), *q = calloc((size_t)T * qd, 8);
    double *k = calloc((size_t)T * kvd, 8), *v = calloc((size_t)T * kvd, 8);
    double *a = calloc(d > s->hidden ? d : s->hidden, 8), *o = calloc(qd, 8), *t2 = calloc(d, 8);
    double *g = calloc(s->hidden, 8), *u = calloc(s->hidden, 8), *sc = calloc(T, 8);
    double eps = 1e-5;
    for (int p = 0; p < T; p++)
        memcpy(x + p * d, WG(tm, "model.embed_tokens.weight") + (size_t)ids[p] * d, d * 8);
    for (int l = 0; l < s->layers; l++) {
        for (int p = 0; p < T; p++) {
            nv_rms(a, x + p * d, WL(tm, l, "input_layernorm.weight"), d, eps);
            nv_linear(q + p * qd, a, WL(tm, l, "self_attn.q_proj.weight"),
                      WL(tm, l, "self_attn.q_proj.bias"), qd, d);
            nv_linear(k + p * kvd, a, WL(tm, l, "self_attn.k_proj.weight"),
                      WL(tm, l, "self_attn.k_proj.bias"), kvd, d);
            nv_linear(v + p * kvd, a, WL(tm, l, "self_attn.v_proj.weight"),
                      WL(tm, l, "self_attn.v_proj.bias"), kvd, d);
            for (int h = 0; h < s->heads; h++) {
                if (s->qk_norm)
                    nv_rms(q + p * qd + h * hs, q + p * qd + h * hs,
                           WL(tm, l, "self_attn.q_norm.weight"), hs, eps);
                nv_rope(q + p * qd + h * hs, p, s);
            }
            for (int h = 0; h < s->kv; h++) {
                if (s->qk_norm)
                    nv_rms(k + p * kvd + h * hs, k + p * kvd + h * hs,
                           WL(tm, l, "self_attn.k_norm.weight"), hs, eps);
                nv_rope(k + p * kvd + h * hs, p, s);
            }
        }
        for (int p = 0; p < T; p++) {
            for (int h = 0; h < s->heads; h++) {
                int gk = h / (s->heads / s->kv), t0 = s->window ? p - s->window + 1 : 0;
                double mx = -1e300, sum = 0;
                t0 = t0 < 0 ? 0 : t0;
                for (int t = t0; t <= p; t++) {
                    double dd = 0;
                    for (int i = 0; i < hs; i++)
                        dd += q[p * qd + h * hs + i] * k[t * kvd + gk * hs + i];
                    sc[t] = dd / sqrt(hs);
                    mx = sc[t] > mx ? sc[t] : mx;
                }
                for (int t = t0; t <= p; t++)
                    sum += (sc[t] = exp(sc[t] - mx));
                for (int i = 0; i < hs; i++) {
                    double acc = 0;
                    for (int t = t0; t <= p; t++)
                        acc += sc[t] / sum * v[t * kvd + gk * hs + i];
                    o[h * hs + i] = acc;
                }
            }
            nv_linear(t2, o, WL(tm, l, "self_attn.o_proj.weight"),
                      WL(tm, l, "self_attn.o_proj.bias"), d, qd);
            for (int i = 0; i < d; i++)
                x[p * d + i] += t2[i];
        }
        for (int p = 0; p < T; p++) {
            nv_rms(a, x + p * d, WL(tm, l, "post_attention_layernorm.weight"), d, eps);
            nv_linear(g, a, WL(tm, l, "mlp.gate_proj.weight"),
                      WL(tm, l, "mlp.gate_proj.bias"), s->hidden, d);
            nv_linear(u, a, WL(tm, l, "mlp.up_proj.weight"),
                      WL(tm, l, "mlp.up_proj.bias"), s->hidden, d);
            for (int i = 0; i < s->hidden; i++)
                g[i] = g[i] / (1 + exp(-g[i])) * u[i];
            nv_linear(t2, g, WL(tm, l, "mlp.down_proj.weight"),
                      WL(tm, l, "mlp.down_proj.bias"), d, s->hidden);
            for (int i = 0; i < d; i++)
                x[p * d + i] += t2[i];
        }
    }
    for (int p = 0; p < T; p++) {
        nv_rms(a, x + p * d, WG(tm, "model.norm.weight"), d, eps);
        nv_linear(logits + (size_t)p * s->vocab, a,
                  WG(tm, s->tied ? "model.embed_tokens.weight" : "lm_head.weight"), NULL,
                  s->vocab, d);
    }
    free(x); free(q); free(k); free(v); free(a); free(o); free(t2); free(g); free(u); free(sc);
}

static const tiny_spec g_tiny[] = {
    {"{\"architectures\":[\"Qwen3ForCausalLM\"],\"hidden_size\":48,\"intermediate_size\":40,"
     "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":16,"
     "\"vocab_size\":50,\"max_position_embeddings\":64,\"rms_norm_eps\":1e-5,"
     "\"tie_word_embeddings\":true,\"rope_parameters\":{\"rope_type\":\"default\","
     "\"rope_theta\":1000000.0}}",
     48, 40, 2, 4, 2, 16, 50, false, false, false, true, true, "F32", 0, 1e6, 1, 1},
    {"{\"architectures\":[\"MistralForCausalLM\"],\"hidden_size\":32,\"intermediate_size\":48,"
     "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":1,"
     "\"vocab_size\":40,\"max_position_embeddings\":64,\"rms_norm_eps\":1e-5,"
     "\"sliding_window\":3,\"attention_bias\":true,\"rope_theta\":10000.0}",
     32, 48, 2, 4, 1, 8, 40, true, true, false, false, false, "F16", 3, 1e4, 1, 1},
    {"{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":32,\"intermediate_size\":24,"
     "\"num_hidden_layers\":2,\"num_attention_heads\":2,\"num_key_value_heads\":2,"
     "\"vocab_size\":40,\"max_position_embeddings\":64,\"rms_norm_eps\":1e-5,"
     "\"mlp_bias\":true,\"partial_rotary_factor\":0.5,"
     "\"rope_scaling\":{\"type\":\"linear\",\"factor\":2.0},\"rope_theta\":500.0}",
     32, 24, 2, 2, 2, 16, 40, false, false, true, false, false, "BF16", 0, 500, 2, 0.5},
    /* a tied vocabulary of several packing runs (model.c packs 2048 rows
     * at a time) ending in a partial panel: embedding rows come from them */
    {"{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":16,\"intermediate_size\":16,"
     "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"num_key_value_heads\":1,"
     "\"vocab_size\":4200,\"max_position_embeddings\":64,\"rms_norm_eps\":1e-5,"
     "\"tie_word_embeddings\":true,\"rope_theta\":10000.0}",
     16, 16, 1, 2, 1, 8, 4200, false, false, false, false, true, "BF16", 0, 1e4, 1, 1},
};

/* The engine (both kernel variants, batched prefill and KV-cache steps)
 * against the naive double-precision forward; |diff| <= 1e-4 on logits of
 * magnitude ~1 (f32 vs f64 arithmetic over a few hundred terms). */
START_TEST(test_families_match_naive_forward)
{
    const tiny_spec *s = &g_tiny[_i];
    tiny_model tm;
    char dir[400], err[512] = "";
    int32_t ids[12];
    int T = 12;
    unsigned seed = 5 + (unsigned)_i;
    double *ref = malloc((size_t)T * s->vocab * sizeof(double));
    float *lg = malloc((size_t)T * s->vocab * sizeof(float));
    for (int i = 0; i < T; i++)
        ids[i] = (int32_t)((frand(&seed) + 1) * 0.5 * (s->vocab - 1));
    snprintf(dir, sizeof(dir), "%s/tiny%d", g_tmp, _i);
    tiny_build(&tm, s);
    tiny_write(&tm, s, dir);
    nv_forward(&tm, s, ids, T, ref);
    for (int kv = 0; kv < kn_math_variant_count(); kv++) {
        eng_model_opts o;
        eng_model *m = NULL;
        if (!kn_math_usable(kn_math_variant(kv)))
            continue;
        eng_model_opts_default(&o);
        o.kernels = kn_math_variant(kv)->name;
        ck_assert_msg(eng_model_load(&m, dir, &o, err, sizeof(err)) == 0, "%s", err);
        eng_seq *sq = eng_seq_new(m, (size_t)T);
        eng_batch_item it = {sq, ids, (size_t)T, true, lg};
        ck_assert_msg(eng_forward(m, &it, 1, err, sizeof(err)) == 0, "%s", err);
        double worst = 0;
        for (int i = 0; i < T * s->vocab; i++)
            worst = fmax(worst, fabs(lg[i] - ref[i]));
        ck_assert_msg(worst <= 1e-4, "family %d (%s) prefill: max |diff| %g", _i, o.kernels, worst);
        eng_seq_truncate(sq, 0);
        for (int p = 0; p < T; p++) {
            it = (eng_batch_item){sq, &ids[p], 1, false, lg};
            ck_assert(eng_forward(m, &it, 1, err, sizeof(err)) == 0);
            for (int i = 0; i < s->vocab; i++)
                ck_assert_msg(fabs(lg[i] - ref[p * s->vocab + i]) <= 1e-4,
                              "family %d (%s) step %d", _i, o.kernels, p);
        }
        eng_seq_free(sq);
        eng_model_free(m);
    }
    for (int i = 0; i < tm.n; i++)
        free(tm.t[i].val);
    free(ref);
    free(lg);
}
END_TEST

/* ---- sampling and generation ------------------------------------------- */

START_TEST(test_sampler_greedy_and_filters)
{
    float lg[5] = {0.1f, 2.0f, 1.9f, -1.0f, 2.0f};
    eng_sample_params p;
    eng_sample_params_default(&p);
    eng_sampler *s = eng_sampler_new(&p, 5);
    ck_assert_int_eq(eng_sampler_sample(s, lg), 1);          /* first maximum */
    eng_sampler_free(s);
    p.temperature = 1.0f;
    p.top_k = 1;
    s = eng_sampler_new(&p, 5);
    for (int i = 0; i < 50; i++)
        ck_assert_int_eq(eng_sampler_sample(s, lg), 1);     /* tie broken by smaller id */
    eng_sampler_free(s);
    p.top_k = 0;
    p.min_p = 1.0f;                                           /* only p == p_max survive */
    s = eng_sampler_new(&p, 5);
    for (int i = 0; i < 50; i++) {
        int id = eng_sampler_sample(s, lg);
        ck_assert(id == 1 || id == 4);
    }
    eng_sampler_free(s);
    p.min_p = -1;
    ck_assert(eng_sampler_new(&p, 5) == NULL);
    p.min_p = 0;
    p.temperature = NAN;
    ck_assert(eng_sampler_new(&p, 5) == NULL);
}
END_TEST

/* p = (0.5, 0.3, 0.2): frequencies over 20000 draws within 0.015 (about
 * 4 standard deviations); top_p 0.6 keeps {0, 1} renormalised 5:3. */
START_TEST(test_sampler_distribution_and_seed)
{
    float lg[3] = {logf(0.5f), logf(0.3f), logf(0.2f)};
    eng_sample_params p;
    int cnt[3] = {0}, N = 20000;
    int32_t a[64], b[64];
    eng_sample_params_default(&p);
    p.temperature = 1.0f;
    p.seed = 42;
    eng_sampler *s = eng_sampler_new(&p, 3);
    for (int i = 0; i < N; i++)
        cnt[eng_sampler_sample(s, lg)]++;
    eng_sampler_free(s);
    ck_assert_msg(fabs(cnt[0] / (double)N - 0.5) < 0.015 && fabs(cnt[2] / (double)N - 0.2) < 0.015,
                  "%d %d %d", cnt[0], cnt[1], cnt[2]);
    p.top_p = 0.6f;
    memset(cnt, 0, sizeof(cnt));
    s = eng_sampler_new(&p, 3);
    for (int i = 0; i < N; i++)
        cnt[eng_sampler_sample(s, lg)]++;
    eng_sampler_free(s);
    ck_assert_int_eq(cnt[2], 0);
    ck_assert_msg(fabs(cnt[0] / (double)N - 0.625) < 0.015, "%d %d", cnt[0], cnt[1]);
    /* same seed, same ids; another seed, other ids */
    p.top_p = 1.0f;
    for (int run = 0; run < 2; run++) {
        s = eng_sampler_new(&p, 3);
        for (int i = 0; i < 64; i++)
            (run ? b : a)[i] = eng_sampler_sample(s, lg);
        eng_sampler_free(s);
    }
    ck_assert(memcmp(a, b, sizeof(a)) == 0);
    p.seed = 43;
    s = eng_sampler_new(&p, 3);
    for (int i = 0; i < 64; i++)
        b[i] = eng_sampler_sample(s, lg);
    eng_sampler_free(s);
    ck_assert(memcmp(a, b, sizeof(a)) != 0);
}
END_TEST

/* top-k on a larger vocabulary: every draw is one of the k best (found
 * here by a plain scan), and each of them turns up; min-p without top-p
 * (the unsorted path) keeps p >= min_p * p_max: (0.5, 0.3, 0.2) with
 * min_p 0.5 keeps {0, 1}, renormalised 5:3. */
START_TEST(test_sampler_top_k_large_and_min_p)
{
    enum { V = 1000, K = 5 };
    float lg[V];
    int best[K], seen[K] = {0};
    unsigned seed = 3;
    eng_sample_params p;
    for (int i = 0; i < V; i++)
        lg[i] = frand(&seed) * 3.0f;
    lg[17] = lg[400] = 3.5f;                        /* a tie among the best */
    for (int k = 0; k < K; k++) {                   /* k-th best by repeated scans */
        int b = -1;
        for (int i = 0; i < V; i++) {
            bool taken = false;
            for (int j = 0; j < k; j++)
                taken |= best[j] == i;
            if (!taken && (b < 0 || lg[i] > lg[b]))
                b = i;
        }
        best[k] = b;
    }
    eng_sample_params_default(&p);
    p.temperature = 1.0f;
    p.top_k = K;
    p.seed = 9;
    eng_sampler *s = eng_sampler_new(&p, V);
    for (int n = 0; n < 5000; n++) {
        int id = eng_sampler_sample(s, lg), k;
        for (k = 0; k < K && best[k] != id; k++)
            ;
        ck_assert_msg(k < K, "draw %d: id %d is not among the top %d", n, id, K);
        seen[k]++;
    }
    eng_sampler_free(s);
    for (int k = 0; k < K; k++)
        ck_assert_msg(seen[k] > 0, "top-%d id %d never drawn", k + 1, best[k]);
    float three[3] = {logf(0.5f), logf(0.3f), logf(0.2f)};
    int cnt[3] = {0};
    eng_sample_params_default(&p);
    p.temperature = 1.0f;
    p.min_p = 0.5f;
    s = eng_sampler_new(&p, 3);
    for (int n = 0; n < 20000; n++)
        cnt[eng_sampler_sample(s, three)]++;
    eng_sampler_free(s);
    ck_assert_int_eq(cnt[2], 0);
    ck_assert_msg(fabs(cnt[0] / 20000.0 - 0.625) < 0.015, "%d %d", cnt[0], cnt[1]);
}
END_TEST

START_TEST(test_stop_find)
{
    const char *stops[] = {"\n\n", "END", ""};
    ck_assert_int_eq(eng_stop_find("abc END x\n\n", 11, stops, 3), 4);
    ck_assert_int_eq(eng_stop_find("abc\n\nEND", 8, stops, 3), 3);
    ck_assert_int_eq(eng_stop_find("abc EN", 6, stops, 3), -1);
    ck_assert_int_eq(eng_stop_find("abc", 3, NULL, 0), -1);
}
END_TEST

/* stories260k greedy from BOS + "Once upon a time": the 128 ids that
 * transformers (and run.c) produced, through eng_generate without a
 * tokenizer (no EOS stop), then with max_tokens cutting it short. */
START_TEST(test_generate_greedy_ids)
{
    eng_model *m = load_data_model("stories260k", NULL);
    eng_st_file *ref = load_ref("stories260k_ref.safetensors");
    const eng_tensor *pi = ref_t(ref, "prompt_ids"), *gi = ref_t(ref, "greedy_ids");
    eng_gen_params gp;
    int32_t *ids = NULL;
    size_t n = 0;
    eng_stop_reason why;
    char err[512] = "";
    eng_gen_params_default(&gp);
    gp.max_tokens = 128;
    ck_assert_msg(eng_generate(m, NULL, pi->data, pi->n_elem, &gp, NULL, NULL, &ids, &n, NULL,
                               NULL, &why, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(n, 128);
    ck_assert(why == ENG_STOP_LENGTH);
    ck_assert(memcmp(ids, gi->data, 128 * sizeof(int32_t)) == 0);
    free(ids);
    gp.max_tokens = 5;
    ck_assert(eng_generate(m, NULL, pi->data, pi->n_elem, &gp, NULL, NULL, &ids, &n, NULL, NULL,
                           &why, err, sizeof(err)) == 0);
    ck_assert(n == 5 && memcmp(ids, gi->data, 5 * sizeof(int32_t)) == 0);
    free(ids);
    eng_st_close(ref);
    eng_model_free(m);
}
END_TEST

typedef struct cat_buf {
    char   text[4096];
    size_t len;
    int    calls;
} cat_buf;

static int cat_cb(int32_t id, const char *text, size_t len, void *ud)
{
    cat_buf *b = ud;
    (void)id;
    ck_assert(b->len + len < sizeof(b->text));
    memcpy(b->text + b->len, text, len);
    b->len += len;
    b->text[b->len] = '\0';
    b->calls++;
    return 0;
}

/* With the tokenizer: the streamed pieces add up to the returned text, a
 * stop string cuts the text before it and nothing past the cut is ever
 * streamed (the held-back "Q" below is a prefix of the stop string "Q9").
 * Expected text: transformers' decode of the same greedy ids
 * ("Once upon a timeQQQQQQQ9pphe Onceleingenily upon...",
 * reference/stories260k.json decoded_prompt_plus_greedy). */
START_TEST(test_generate_text_and_stop_strings)
{
    eng_model *m = load_data_model("stories260k", NULL);
    eng_tokenizer *tok = NULL;
    char path[512], err[512] = "", *text = NULL;
    int32_t *prompt = NULL, *ids = NULL;
    size_t n_prompt = 0, n = 0, tl = 0;
    eng_gen_params gp;
    eng_stop_reason why;
    static const struct {
        const char *stop, *want;
        eng_stop_reason why;
    } cases[] = {
        {NULL, "QQQQQQQ9pphe Onceleingen", ENG_STOP_LENGTH},
        {"pphe", "QQQQQQQ9", ENG_STOP_STRING},
        {"Q9", "QQQQQQ", ENG_STOP_STRING},
    };
    snprintf(path, sizeof(path), "%s/models/stories260k", g_data);
    ck_assert_msg(eng_tokenizer_load(&tok, path, err, sizeof(err)) == 0, "%s", err);
    ck_assert(eng_tokenizer_encode(tok, "Once upon a time", 16, true, &prompt, &n_prompt) == 0);
    ck_assert_uint_eq(n_prompt, 5);                 /* BOS + 4: reference prompt_ids */
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        cat_buf cb = {{0}, 0, 0};
        eng_gen_params_default(&gp);
        gp.max_tokens = 14;
        gp.stop = &cases[c].stop;
        gp.n_stop = cases[c].stop ? 1 : 0;
        ck_assert_msg(eng_generate(m, tok, prompt, n_prompt, &gp, cat_cb, &cb, &ids, &n, &text,
                                   &tl, &why, err, sizeof(err)) == 0, "%s", err);
        ck_assert_msg(why == cases[c].why, "case %zu: stop reason %d", c, (int)why);
        ck_assert_msg(strncmp(text, cases[c].want, strlen(cases[c].want)) == 0 &&
                      (cases[c].stop == NULL || strlen(text) == strlen(cases[c].want)),
                      "case %zu: text \"%s\"", c, text);
        ck_assert_msg(cb.len == tl && memcmp(cb.text, text, tl) == 0,
                      "case %zu: streamed \"%s\" vs returned \"%s\"", c, cb.text, text);
        ck_assert_int_eq(cb.calls, (int)n);
        free(ids);
        free(text);
    }
    free(prompt);
    eng_tokenizer_free(tok);
    eng_model_free(m);
}
END_TEST

static void make_tmp(void)
{
    snprintf(g_tmp, sizeof(g_tmp), "/tmp/check_engine.XXXXXX");
    ck_assert(mkdtemp(g_tmp) != NULL);
}

static void rm_tmp(void)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", g_tmp);
}

static Suite *engine_suite(bool have_data)
{
    Suite *s = suite_create("engine");
    TCase *tc = tcase_create("safetensors");
    tcase_add_checked_fixture(tc, make_tmp, rm_tmp);
    tcase_add_test(tc, test_st_valid_file_fields);
    tcase_add_test(tc, test_st_refuses_truncated_file);
    tcase_add_test(tc, test_st_refuses_overlap_hole_trailing);
    tcase_add_test(tc, test_st_refuses_huge_header);
    tcase_add_test(tc, test_st_refuses_wrong_dtype_size);
    tcase_add_test(tc, test_st_refuses_bad_json);
    tcase_add_test(tc, test_st_sharded_index);
    tcase_add_test(tc, test_st_mutations_never_crash);
    suite_add_tcase(s, tc);
    tc = tcase_create("model_config");
    tcase_add_test(tc, test_config_families);
    tcase_add_test(tc, test_config_refuses_bad);
    tcase_add_test(tc, test_rope_llama3_and_yarn_vectors);
    suite_add_tcase(s, tc);
    tc = tcase_create("kn_math");
    tcase_add_test(tc, test_widen_exact);
    tcase_add_loop_test(tc, test_linear_variants_match_ref, 1, kn_math_variant_count());
    tcase_add_loop_test(tc, test_linear_packed_matches_ref, 0, kn_math_variant_count());
    tcase_add_test(tc, test_packed_row_gathers_rows);
    tcase_add_test(tc, test_norm_softmax_silu_rope_by_hand);
    suite_add_tcase(s, tc);
    tc = tcase_create("sampler");
    tcase_add_test(tc, test_sampler_greedy_and_filters);
    tcase_add_test(tc, test_sampler_distribution_and_seed);
    tcase_add_test(tc, test_sampler_top_k_large_and_min_p);
    tcase_add_test(tc, test_stop_find);
    suite_add_tcase(s, tc);
    tc = tcase_create("model");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, make_tmp, rm_tmp);
    tcase_add_test(tc, test_model_refuses_bad_dirs);
    tcase_add_loop_test(tc, test_families_match_naive_forward, 0,
                        (int)(sizeof(g_tiny) / sizeof(g_tiny[0])));
    if (have_data) {
        tcase_add_loop_test(tc, test_model_logits_batch_and_cache, 0, 2);
        tcase_add_test(tc, test_model_names_are_state_dict_paths);
        tcase_add_test(tc, test_forward_refuses_bad_batches);
        tcase_add_test(tc, test_generate_greedy_ids);
        tcase_add_test(tc, test_generate_text_and_stop_strings);
    }
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    char probe[512];
    bool have_data;
    SRunner *sr;
    int nf;

    g_data = getenv("FP8D_TEST_DATA");
    if (g_data == NULL)
        g_data = "tests/data";
    snprintf(probe, sizeof(probe), "%s/models/stories260k/config.json", g_data);
    have_data = access(probe, R_OK) == 0;
    if (!have_data)
        printf("SKIP: model tests: %s not found\n", probe);
    for (int i = 0; i < kn_math_variant_count(); i++)
        printf("kn_math variant %s: %s\n", kn_math_variant(i)->name,
               kn_math_usable(kn_math_variant(i)) ? "usable" : "not usable on this CPU");
    kn_log_set_level(KN_LOG_WARN);
    sr = srunner_create(engine_suite(have_data));
    srunner_run_all(sr, CK_NORMAL);
    nf = srunner_ntests_failed(sr);
    srunner_free(sr);
    return nf == 0 ? 0 : 1;
}
