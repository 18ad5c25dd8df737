#!/usr/bin/env python3
"""seeds.py: writes the seed inputs of tests/fuzz/corpus/<target>/ (seed-*
files): copies of real files of the project and ../shared/testdata, and
hand-written malformed cases.  Inputs that libFuzzer found (crashes kept as
regression cases, and the -merge=1 minimized corpus) sit beside them under
other names; this script never removes them.  Run from anywhere:
    python3 tests/fuzz/seeds.py
"""
import json
import os
import struct

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(os.path.dirname(TOP), "shared", "testdata")
OUT = os.path.join(TOP, "tests", "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def read(*parts):
    with open(os.path.join(*parts), "rb") as f:
        return f.read()


def opt_read(*parts):
    p = os.path.join(*parts)
    return read(p) if os.path.exists(p) else None


# ---- safetensors ---------------------------------------------------------

def st(header, data=b"", hlen=None, raw_header=None):
    h = raw_header if raw_header is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(h) if hlen is None else hlen) + h + data


def safetensors():
    put("safetensors", "stories260k_ref", read(TOP, "tests/data/models/stories260k_ref.safetensors"))
    real = read(TOP, "examples/models/shakespeare-tiny-bf16/model.safetensors")
    n = struct.unpack("<Q", real[:8])[0]
    put("safetensors", "shakespeare-header-only", real[:8 + n])       # data missing
    ok = {"__metadata__": {"format": "pt"},
          "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
          "b": {"dtype": "BF16", "shape": [3], "data_offsets": [16, 22]},
          "c": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [22, 24]},
          "e": {"dtype": "I64", "shape": [0, 5], "data_offsets": [24, 24]}}
    put("safetensors", "valid-small", st(ok, bytes(range(24))))
    un = {"x": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
          "y": {"dtype": "F32", "shape": [1], "data_offsets": [1, 5]}}
    put("safetensors", "valid-unaligned", st(un, b"\x07\x00\x00\x80\x3f"))
    put("safetensors", "empty", b"")
    put("safetensors", "short-length", b"\x02\x00\x00")
    put("safetensors", "zero-header", st(None, b"", hlen=0, raw_header=b""))
    put("safetensors", "huge-header-len", st(None, b"{}", hlen=(1 << 63) + 2, raw_header=b"{}"))
    put("safetensors", "header-past-end", st(None, b"", hlen=4096, raw_header=b"{}"))
    put("safetensors", "truncated-data", st(ok, bytes(10)))
    put("safetensors", "trailing-bytes", st(ok, bytes(30)))
    ov = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
          "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}
    put("safetensors", "overlap", st(ov, bytes(12)))
    hole = {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
            "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}
    put("safetensors", "hole", st(hole, bytes(12)))
    put("safetensors", "begin-after-end",
        st({"a": {"dtype": "U8", "shape": [0], "data_offsets": [4, 0]}}, bytes(4)))
    put("safetensors", "shape-overflow",
        st({"a": {"dtype": "F64", "shape": [2**47, 2**47, 2**47], "data_offsets": [0, 0]}}))
    put("safetensors", "shape-negative",
        st({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}}))
    put("safetensors", "shape-float",
        st({"a": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}}, bytes(4)))
    put("safetensors", "offsets-huge",
        st({"a": {"dtype": "U8", "shape": [16], "data_offsets": [2**64 - 16, 2**64]}}))
    put("safetensors", "dtype-unknown",
        st({"a": {"dtype": "F3", "shape": [1], "data_offsets": [0, 1]}}, b"\0"))
    put("safetensors", "dtype-subbyte",
        st({"a": {"dtype": "F4", "shape": [2], "data_offsets": [0, 1]}}, b"\0"))
    put("safetensors", "dtype-number",
        st({"a": {"dtype": 7, "shape": [1], "data_offsets": [0, 1]}}, b"\0"))
    put("safetensors", "extra-key",
        st({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1], "x": 1}}, b"\0"))
    put("safetensors", "nine-dims",
        st({"a": {"dtype": "U8", "shape": [1] * 9, "data_offsets": [0, 1]}}, b"\0"))
    put("safetensors", "reserved-name",
        st({"__x": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}, b"\0"))
    put("safetensors", "empty-name",
        st({"": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}, b"\0"))
    put("safetensors", "metadata-not-string", st({"__metadata__": {"a": 1}}))
    put("safetensors", "metadata-array", st({"__metadata__": [1]}))
    put("safetensors", "not-object", st(None, raw_header=b"[1, 2]"))
    put("safetensors", "invalid-utf8", st(None, raw_header=b'{"\xff\xfe": 1}'))
    put("safetensors", "duplicate-key", st(None, raw_header=(
        b'{"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},'
        b' "a": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}}'), data=b"\0\0"))
    put("safetensors", "nul-in-name", st(None, raw_header=(
        b'{"a\\u0000b": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}'), data=b"\0"))
    put("safetensors", "header-padded", st(None, raw_header=(
        b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}     '), data=bytes(4)))


# ---- config.json ---------------------------------------------------------

def model_config():
    seen = set()
    for base in (os.path.join(TOP, "tests/data/models"), os.path.join(TOP, "examples/models"),
                 os.path.join(SHARED, "models")):
        if not os.path.isdir(base):
            continue
        for m in sorted(os.listdir(base)):
            b = opt_read(base, m, "config.json")
            if b is not None and b not in seen:
                seen.add(b)
                put("model_config", m, b)
    base = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 256,
            "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5,
            "hidden_act": "silu"}

    def v(name, **kw):
        d = dict(base)
        for k, x in kw.items():
            if x is None:
                d.pop(k, None)
            else:
                d[k] = x
        put("model_config", name, json.dumps(d))
    v("llama-min")
    v("heads-exceed-dim", hidden_size=2, num_attention_heads=4, num_key_value_heads=4)
    v("kv-not-divisor", num_key_value_heads=3)
    v("zero-layers", num_hidden_layers=0)
    v("huge-vocab", vocab_size=2**40)
    v("string-dim", hidden_size="64")
    v("missing-vocab", vocab_size=None)
    v("eps-zero", rms_norm_eps=0)
    v("act-gelu", hidden_act="gelu")
    v("arch-unknown", architectures=["GPTNeoXForCausalLM"])
    v("arch-empty", architectures=[])
    v("rope-llama3", rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                   "high_freq_factor": 4.0,
                                   "original_max_position_embeddings": 8192})
    v("rope-yarn", rope_scaling={"type": "yarn", "factor": 4.0, "beta_fast": 32,
                                 "beta_slow": 1, "original_max_position_embeddings": 0})
    v("rope-linear-neg", rope_scaling={"type": "linear", "factor": -1})
    v("rope-params", rope_parameters={"rope_type": "dynamic", "rope_theta": 1e6, "factor": 2})
    v("rope-theta-zero", rope_theta=0)
    v("qwen3", architectures=["Qwen3ForCausalLM"], model_type="qwen3", head_dim=16)
    v("mistral-window", architectures=["MistralForCausalLM"], model_type="mistral",
      sliding_window=32)
    v("qwen2-layers", architectures=["Qwen2ForCausalLM"], model_type="qwen2",
      use_sliding_window=True, sliding_window=16, max_window_layers=1,
      layer_types=["full_attention", "sliding_attention"])
    v("layer-types-short", architectures=["Qwen2ForCausalLM"], use_sliding_window=True,
      sliding_window=16, layer_types=["sliding_attention"])
    v("partial-rotary", partial_rotary_factor=1.5)
    v("quantized", quantization_config={"quant_method": "fp8"})
    v("bos-huge", bos_token_id=2**40)
    put("model_config", "not-object", "[1, 2, 3]")
    put("model_config", "truncated", json.dumps(base)[:57])
    put("model_config", "duplicate", '{"vocab_size": 1, "vocab_size": 2}')
    put("model_config", "invalid-utf8", b'{"model_type": "\xc3\x28"}')
    put("model_config", "nan", json.dumps(base)[:-1] + ', "rms_norm_eps": NaN}')


# ---- tokenizer.json ------------------------------------------------------

def tokenizer_load():
    put("tokenizer_load", "stories260k", read(TOP, "tests/data/tokenizer/stories260k/tokenizer.json"))
    put("tokenizer_load", "shakespeare", read(TOP, "examples/models/shakespeare-tiny-bf16/tokenizer.json"))
    vocab = {"a": 0, "b": 1, "ab": 2, "\u0120": 3, "\u0120a": 4}
    bl = {"version": "1.0", "added_tokens": [
        {"id": 5, "content": "<|eot|>", "special": True, "single_word": False,
         "lstrip": False, "rstrip": False, "normalized": False}],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "vocab": vocab, "merges": ["a b", "\u0120 a"],
                  "byte_fallback": False, "ignore_merges": False}}
    put("tokenizer_load", "bytelevel-tiny", json.dumps(bl))

    def v(name, f):
        d = json.loads(json.dumps(bl))
        f(d)
        put("tokenizer_load", name, json.dumps(d))
    v("merge-unknown-token", lambda d: d["model"].__setitem__("merges", ["x y", "a"]))
    v("merges-pairs", lambda d: d["model"].__setitem__("merges", [["a", "b"]]))
    v("added-id-huge", lambda d: d["added_tokens"][0].__setitem__("id", 2**31))
    v("added-id-negative", lambda d: d["added_tokens"][0].__setitem__("id", -1))
    v("added-empty", lambda d: d["added_tokens"][0].__setitem__("content", ""))
    v("vocab-id-dup", lambda d: d["model"]["vocab"].__setitem__("b", 0))
    v("vocab-id-sparse", lambda d: d["model"]["vocab"].__setitem__("b", 1000000))
    v("vocab-string-id", lambda d: d["model"]["vocab"].__setitem__("b", "1"))
    v("wordpiece", lambda d: d["model"].__setitem__("type", "WordPiece"))
    v("model-missing", lambda d: d.pop("model"))
    v("split-bad-regex", lambda d: d.__setitem__("pre_tokenizer", {
        "type": "Split", "pattern": {"Regex": "(?<!"}, "behavior": "Isolated", "invert": False}))
    v("split-catastrophic", lambda d: d.__setitem__("pre_tokenizer", {
        "type": "Split", "pattern": {"Regex": "(a+)+$"}, "behavior": "Removed", "invert": True}))
    v("normalizer-nfkc", lambda d: d.__setitem__("normalizer", {"type": "NFKC"}))
    v("normalizer-replace", lambda d: d.__setitem__("normalizer", {
        "type": "Replace", "pattern": {"String": ""}, "content": "x"}))
    v("template-processing", lambda d: d.__setitem__("post_processor", {
        "type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<|eot|>", "type_id": 0}},
                                                 {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [], "special_tokens": {"<|eot|>": {"id": "<|eot|>", "ids": [99], "tokens": ["<|eot|>"]}}}))
    v("decoder-seq", lambda d: d.__setitem__("decoder", {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 5,
                                                      "stop": 0}]}))
    v("byte-fallback-no-bytes", lambda d: d["model"].__setitem__("byte_fallback", True))
    put("tokenizer_load", "truncated", json.dumps(bl)[:200])
    put("tokenizer_load", "invalid-utf8", json.dumps(bl).replace('"ab"', '"a\\udcff"').encode())
    put("tokenizer_load", "raw-invalid-utf8", json.dumps(bl).encode().replace(b'"ab"', b'"a\xff"'))
    put("tokenizer_load", "not-object", "null")


# ---- tokenizer encode ----------------------------------------------------

def tokenizer_encode():
    texts = ["", "ROMEO:\nBut soft, what light through yonder window breaks?",
             "<|begin_of_text|>Hi<|im_start|>user\nx<|im_end|>", "  leading and trailing  \n\n",
             "caf\u00e9 \u20ac 12345 \U0001F600 \u0000 nul", "<s>Once upon a time</s> <unk>",
             "It's we'll they'D 1234567 \r\n\t"]
    for path in ("tests/data/tokenizer/shakespeare-cases.json",):
        for c in json.load(open(os.path.join(TOP, path)))["cases"][:12]:
            texts.append(c["text"])
    eval_txt = opt_read(SHARED, "text", "eval.txt")
    if eval_txt is not None:
        texts.append(eval_txt[:2000].decode("utf-8", "ignore"))
    for i, t in enumerate(texts):
        for flags in (0, 1, 6, 7):
            put("tokenizer_encode", "text%02d-%d" % (i, flags), bytes([flags]) + t.encode())
    for flags in (0, 1):
        put("tokenizer_encode", "invalid-utf8-%d" % flags, bytes([flags]) + b"ab\xc3\x28 \xed\xa0\x80 \xf4\x90\x80\x80 \xe2\x82")
        put("tokenizer_encode", "ids-%d" % (flags | 8), bytes([flags | 8]) + struct.pack(
            "<12i", 0, 1, 2, 3, 100, 4095, 4096, -1, 2**31 - 1, -2**31, 0xE2, 0x82))
        put("tokenizer_encode", "ids-bytes-%d" % (flags | 8), bytes([flags | 8]) + struct.pack(
            "<6i", 3 + 0xE2, 3 + 0x82, 3 + 0xAC, 259, 260, 261))


# ---- chat templates ------------------------------------------------------

def chat():
    def msgs(*pairs):
        return b"".join(r.encode() + b"\0" + c.encode() + b"\0" for r, c in pairs)
    conv = msgs(("system", "You are a poet."), ("user", "Hello"), ("assistant", "Hail!"),
                ("user", "Write <|im_end|> a line"))
    for t in range(16):
        put("chat", "conv-t%02d" % t, bytes([t, 1]) + conv)
        put("chat", "tok-t%02d" % t, bytes([t, 1 | 16]) + conv)
    put("chat", "user-only", bytes([2, 0]) + msgs(("user", "Hi")))
    put("chat", "bad-role", bytes([0, 1]) + msgs(("wizard", "x")))
    put("chat", "assistant-first", bytes([9, 1]) + msgs(("assistant", "x"), ("user", "y")))
    put("chat", "two-users", bytes([9, 1]) + msgs(("user", "x"), ("user", "y")))
    put("chat", "empty", bytes([0, 0]))
    put("chat", "role-only", bytes([2, 1]) + b"user")
    put("chat", "qwen3-think", bytes([3, 1 | 4]) + msgs(("user", "<think>x</think>"),
                                                         ("assistant", "<think>\nhm\n</think>\n\nok")))
    put("chat", "invalid-utf8", bytes([2, 1 | 16]) + msgs(("user", "a")) + b"user\0\xff\xfe\0")
    for name, text in (("detect-chatml", "{% for m in messages %}<|im_start|>{{ m['role'] }}"),
                       ("detect-llama3", "<|start_header_id|>{{ role }}<|end_header_id|>"),
                       ("detect-none", "{{ messages }}")):
        put("chat", name, bytes([14, 1 | 8]) + text.encode() + b"\0" + conv)
    put("chat", "tok-detect", bytes([14, 1 | 16]) + conv)
    put("chat", "tok-sp-detect", bytes([14, 1 | 16 | 32]) + conv)


# ---- FP8Config -----------------------------------------------------------

def qt_config():
    for f in ("fp8-config.json", "fp8-config-gaudi.json"):
        put("qt_config", f[:-5], read(TOP, "examples", f))
    cases = {
        "measure": {"mode": "MEASURE", "observer": "maxabs", "dump_stats_path": "./out/m"},
        "quantize-pcs": {"mode": "QUANTIZE", "scale_method": "act_maxabs_pow2_weights_pcs_opt_pow2",
                         "fp8_config": "E5M2", "hp_dtype": "fp32"},
        "lists": {"allowlist": {"types": ["Linear", "torch.nn.Matmul"], "names": ["proj$"]},
                  "blocklist": {"types": ["Softmax"], "names": ["lm_head", "layers\\.1[0-9]"]}},
        "bad-regex": {"blocklist": {"names": ["(unclosed"]}},
        "catastrophic-regex": {"allowlist": {"names": ["(a*)*b"]}},
        "unknown-key": {"no_such_key": 1},
        "wrong-type": {"mode": 3},
        "unknown-enum": {"scale_method": "bogus"},
        "observer-save": {"observer": "save"},
        "inc-only-keys": {"measure_on_hpu": True, "use_qdq": False, "scale_format": "CONST",
                          "fake_quant": False, "recalc_scales": True},
        "backoff": {"scale_params": {"input_backoff": 0, "weight_backoff": -1}},
        "backoff-huge": {"scale_params": {"input_backoff": 1e300, "weight_backoff": 1e-300}},
        "unit-scale": {"scale_method": "unit_scale", "device_for_scales": "gaudi2"},
        "hw-aligned": {"scale_method": "hw_aligned_single_scale"},
        "measure-exclude": {"measure_exclude": "ALL"},
    }
    for k, v in cases.items():
        put("qt_config", k, json.dumps(v))
    put("qt_config", "not-object", "[]")
    put("qt_config", "truncated", '{"mode": "QUANT')
    put("qt_config", "duplicate", '{"mode": "MEASURE", "mode": "QUANTIZE"}')
    put("qt_config", "invalid-utf8", b'{"dump_stats_path": "\xff"}')


# ---- measurement files -------------------------------------------------

def qt_measure():
    r0 = {"GlobalRank": None, "LocalRank": 0, "Mode": "DynamicRange", "Nodes": {
        "model.layers.0.mlp.down_proj": {"inputs": [[[3.5]]], "params": {"weight": [[0.4375]]}},
        "model.layers.0.self_attn.matmul_qk": {"inputs": [[[12.0]], [[9.5]]]},
        "model.layers.0.self_attn.softmax": {"inputs": [[[30.25]]], "outputs": [[[1.0]]]}}}
    put("qt_measure", "two-rank-r0", json.dumps(r0))
    pc = {"GlobalRank": None, "LocalRank": 0, "Mode": "DynamicRange", "Nodes": {
        "model.layers.0.mlp.up_proj": {"inputs": [[[1.0], [5.0], [0.5]]],
                                       "params": {"weight": [[0.5], [0.125]]}}}}
    put("qt_measure", "per-channel", json.dumps(pc))
    sc = {"GlobalRank": None, "LocalRank": 0, "Mode": "Scale", "Nodes": {
        "l": {"inputs": [[[0.5]]], "params": {"weight": {"0": [[0.25], [0.5]], "1": [[1.0]]}}}}}
    put("qt_measure", "scale", json.dumps(sc))
    bad = {
        "nan": '{"Mode": "DynamicRange", "Nodes": {"a": {"inputs": [[[NaN]]]}}}',
        "inf": '{"Mode": "DynamicRange", "Nodes": {"a": {"inputs": [[[Infinity]]]}}}',
        "negative": '{"Mode": "DynamicRange", "Nodes": {"a": {"inputs": [[[-1.0]]]}}}',
        "huge": '{"Mode": "DynamicRange", "Nodes": {"a": {"inputs": [[[1e999]]]}}}',
        "not-nx1": '{"Mode": "DynamicRange", "Nodes": {"a": {"inputs": [[[1.0, 2.0]]]}}}',
        "empty-matrix": '{"Mode": "DynamicRange", "Nodes": {"a": {"inputs": [[]]}}}',
        "string-value": '{"Mode": "DynamicRange", "Nodes": {"a": {"inputs": [[["1"]]]}}}',
        "mode-unknown": '{"Mode": "Histogram", "Nodes": {}}',
        "mode-missing": '{"Nodes": {}}',
        "nodes-array": '{"Mode": "DynamicRange", "Nodes": []}',
        "rank-string": '{"LocalRank": "0", "Mode": "DynamicRange", "Nodes": {}}',
        "rank-huge": '{"LocalRank": 99999999999999, "Mode": "DynamicRange", "Nodes": {}}',
        "unknown-slot": '{"Mode": "DynamicRange", "Nodes": {"a": {"grads": [[[1.0]]]}}}',
        "weight-deep": '{"Mode": "Scale", "Nodes": {"a": {"params": {"weight": {"0": {"0": 1}}}}}}',
        "many-inputs": '{"Mode": "DynamicRange", "Nodes": {"a": {"inputs": [' +
                       ",".join(["[[1.0]]"] * 40) + ']}}}',
        "truncated": json.dumps(r0)[:90],
        "duplicate-node": '{"Mode": "DynamicRange", "Nodes": {"a": {}, "a": {}}}',
        "empty-name": '{"Mode": "DynamicRange", "Nodes": {"": {"inputs": [[[1.0]]]}}}',
        "not-object": '"DynamicRange"',
    }
    for k, v in bad.items():
        put("qt_measure", k, v)
    put("qt_measure", "invalid-utf8", b'{"Mode": "DynamicRange", "Nodes": {"\xc0\xaf": {}}}')


# ---- daemon config -------------------------------------------------------

def srv_config():
    put("srv_config", "fp8d", read(TOP, "examples/fp8d.json"))
    cases = {
        "port-high": '{"port": 65536}', "port-neg": '{"port": -1}',
        "port-string": '{"port": "8080"}', "port-float": '{"port": 80.5}',
        "port-huge": '{"port": 99999999999999999999}',
        "log-level-bad": '{"log_level": "trace"}', "log-level-int": '{"log_level": 7}',
        "log-format": '{"log_format": "json"}', "host-empty": '{"host": ""}',
        "host-long": '{"host": "' + "h" * 300 + '"}',
        "model-long": '{"model": "/' + "m" * 5000 + '"}',
        "unknown-key": '{"portt": 1}', "duplicate": '{"port": 1, "port": 2}',
        "not-object": "[]", "empty": "", "truncated": '{"host": "127.0',
        "null-value": '{"threads": null}', "nul-in-string": '{"host": "a\\u0000b"}',
        "body-limit": '{"max_body_bytes": 1073741825}',
        "all-max": '{"http_threads": 256, "max_connections": 65536, '
                   '"connection_timeout": 3600, "shutdown_timeout": 3600, "threads": 1024}',
        "all-zero": '{"http_threads": 0, "max_connections": 0, "connection_timeout": 0}',
    }
    for k, v in cases.items():
        put("srv_config", k, v)
    put("srv_config", "invalid-utf8", b'{"host": "\xfe"}')


# ---- HTTP API ------------------------------------------------------------

ROUTES = ["GET /health", "HEAD /v1/health", "GET /livez", "GET /readyz", "GET /metrics",
          "GET /v1/models", "POST /v1/completions", "POST /v1/chat/completions",
          "POST /tokenize", "POST /detokenize", "GET /calibrate", "POST /calibrate",
          "POST /health", "DELETE /v1/completions", "GET /metrics?x=1",
          "POST /calibrate/save", "POST /calibrate/load", "HEAD /calibrate"]


def api():
    R = {r: i for i, r in enumerate(ROUTES)}
    N = len(ROUTES)
    comp = {"model": "shakespeare-tiny-bf16", "prompt": "ROMEO:", "max_tokens": 4,
            "temperature": 0, "seed": 1, "stop": ["\n"]}
    chat_body = {"messages": [{"role": "system", "content": "Be brief."},
                              {"role": "user", "content": "Speak"}],
                 "max_tokens": 3, "stream": False}
    bodies = {
        "POST /v1/completions": [comp, dict(comp, stream=True), dict(comp, prompt=[0, 5, 9]),
                                 dict(comp, max_tokens=-1), dict(comp, temperature="hot"),
                                 dict(comp, prompt=None), dict(comp, logprobs=5, n=2, top_p=1.5)],
        "POST /v1/chat/completions": [chat_body, dict(chat_body, stream=True),
                                      dict(chat_body, messages=[]),
                                      dict(chat_body, messages=[{"role": "wizard"}]),
                                      dict(chat_body, messages="hi")],
        "POST /tokenize": [{"content": "ROMEO: <|im_start|>"}, {"content": 5},
                           {"content": "x", "add_special": True, "with_pieces": True}],
        "POST /detokenize": [{"tokens": [0, 1, 2, 3, 100]}, {"tokens": [-1, 2**40]},
                             {"tokens": "abc"}],
        "POST /calibrate": [{"mode": "measure", "dataset": ["ROMEO:", "JULIET: soft"]},
                            {"mode": "quantize"}, {"mode": "off", "reset": True},
                            {"mode": "measure", "config": {"observer": "maxabs",
                                                           "blocklist": {"names": ["lm_head"]}}},
                            {"mode": "bogus"}, {"mode": "measure", "dataset": []}, []],
        "POST /calibrate/save": [{"export": "run1"}, {"export": "../escape"}, {"export": "/etc/x"},
                                 {"export": ".hidden"}, {"export": "a" * 100}, {}],
        "POST /calibrate/load": [{}, {"export": "run1"}],
    }
    for r in ROUTES:
        put("api", "%02d-nobody" % R[r], bytes([R[r], 1]))
    for r, bl in bodies.items():
        for j, b in enumerate(bl):
            put("api", "%02d-body%d" % (R[r], j), bytes([R[r], 1]) + json.dumps(b).encode())
    for r in ("POST /v1/completions", "POST /tokenize"):
        put("api", "%02d-truncated" % R[r], bytes([R[r], 1]) + b'{"prompt": "ab')
        put("api", "%02d-invalid-utf8" % R[r], bytes([R[r], 1]) + b'{"prompt": "\xff", "content": "\xc3"}')
        put("api", "%02d-deep" % R[r], bytes([R[r], 1]) + b"[" * 5000 + b"]" * 5000)
        put("api", "%02d-loading" % R[r], bytes([R[r], 0]) + json.dumps(comp).encode())
    put("api", "raw-get-unknown", bytes([N, 1]) + b"GET /no/such/route\n")
    put("api", "raw-binary-path", bytes([N, 1]) + b"GET /\xff\x01\x7f?q=\xfe\n")
    put("api", "raw-long-path", bytes([N, 1]) + b"POST /" + b"a" * 2000 + b"\n{}")
    put("api", "raw-no-method", bytes([N, 1]) + b" /health\n")
    put("api", "raw-weird-method", bytes([N, 2]) + b"get /health\n")
    put("api", "raw-options", bytes([N, 1]) + b"OPTIONS /v1/chat/completions\n{}")


if __name__ == "__main__":
    for f in (safetensors, model_config, tokenizer_load, tokenizer_encode, chat, qt_config,
              qt_measure, srv_config, api):
        f()
    for t in sorted(os.listdir(OUT)):
        files = os.listdir(os.path.join(OUT, t))
        print("%-18s %4d files %8d bytes" % (t, len(files), sum(
            os.path.getsize(os.path.join(OUT, t, f)) for f in files)))
