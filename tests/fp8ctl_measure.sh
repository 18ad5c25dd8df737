#!/bin/sh
# fp8ctl_measure.sh: 'fp8ctl measure merge' on hand-written INC measurement
# files: the merged values (element-wise max, worked out below by hand),
# the envelope (LocalRank -1), and each usage / bad-input error with its
# exit status (2 usage, 1 bad input) and a message naming the problem.
top_build=${FP8D_TOP_BUILDDIR:-$(cd "$(dirname "$0")/.." && pwd)}
ctl=$top_build/server/fp8ctl
if [ ! -x "$ctl" ]; then
    echo "fp8ctl_measure: $ctl not built" >&2
    exit 1
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fp8ctl_measure.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM
pass=0
fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# Rank 0 and rank 1 of a 2-rank run (INC layout, §4.6).
cat > "$tmp/r0.json" <<'J'
{"GlobalRank": null, "LocalRank": 0, "Mode": "DynamicRange", "Nodes": {
  "model.layers.0.mlp.down_proj": {"inputs": [[[3.5]]], "params": {"weight": [[0.4375]]}},
  "model.layers.0.self_attn.matmul_qk": {"inputs": [[[12.0]], [[9.5]]]},
  "model.layers.0.self_attn.softmax": {"inputs": [[[30.25]]], "outputs": [[[1.0]]]}}}
J
cat > "$tmp/r1.json" <<'J'
{"GlobalRank": null, "LocalRank": 1, "Mode": "DynamicRange", "Nodes": {
  "model.layers.0.self_attn.softmax": {"inputs": [[[31.0]]], "outputs": [[[0.5]]]},
  "model.layers.0.self_attn.matmul_qk": {"inputs": [[[11.0]], [[10.25]]]},
  "model.layers.0.mlp.down_proj": {"inputs": [[[4.0]]], "params": {"weight": [[0.25]]}}}}
J
# Per-channel (maxabs_per_channel) files: 3 input channels, 2 weight rows.
cat > "$tmp/c0.json" <<'J'
{"GlobalRank": null, "LocalRank": 0, "Mode": "DynamicRange", "Nodes": {
  "model.layers.0.mlp.up_proj": {"inputs": [[[1.0], [5.0], [0.5]]], "params": {"weight": [[0.5], [0.125]]}}}}
J
cat > "$tmp/c1.json" <<'J'
{"GlobalRank": null, "LocalRank": 1, "Mode": "DynamicRange", "Nodes": {
  "model.layers.0.mlp.up_proj": {"inputs": [[[2.0], [4.0], [0.75]]], "params": {"weight": [[0.25], [0.375]]}}}}
J
cat > "$tmp/c2.json" <<'J'
{"GlobalRank": null, "LocalRank": 2, "Mode": "DynamicRange", "Nodes": {
  "model.layers.0.mlp.up_proj": {"inputs": [[[0.0], [6.0], [0.25]]], "params": {"weight": [[0.0625], [0.0625]]}}}}
J

compact() { tr -d ' \n\t' < "$1"; }

# 1. Two ranks: max per entry, in r0's node order.
#    down_proj: max(3.5, 4.0) = 4.0, weight max(0.4375, 0.25) = 0.4375
#    matmul_qk: max(12, 11) = 12.0, max(9.5, 10.25) = 10.25
#    softmax:   max(30.25, 31) = 31.0, output max(1, 0.5) = 1.0
"$ctl" measure merge "$tmp/r0.json" "$tmp/r1.json" -o "$tmp/out/merged.json" > "$tmp/log" 2>&1
rc=$?
want='{"GlobalRank":null,"LocalRank":-1,"Mode":"DynamicRange","Nodes":{"model.layers.0.mlp.down_proj":{"inputs":[[[4.0]]],"params":{"weight":[[0.4375]]}},"model.layers.0.self_attn.matmul_qk":{"inputs":[[[12.0]],[[10.25]]]},"model.layers.0.self_attn.softmax":{"inputs":[[[31.0]]],"outputs":[[[1.0]]]}}}'
if [ $rc -eq 0 ] && [ "$(compact "$tmp/out/merged.json")" = "$want" ]; then ok; else
    bad "two-rank merge (rc $rc): $(cat "$tmp/log"; compact "$tmp/out/merged.json" 2>&1)"; fi
# No temporary file left beside the output.
[ "$(ls "$tmp/out" | wc -l)" -eq 1 ] && ok || bad "extra files in output folder: $(ls "$tmp/out")"

# 2. Three per-channel files: channel-wise max.
#    inputs: max(1,2,0) = 2, max(5,4,6) = 6, max(0.5,0.75,0.25) = 0.75
#    weight: max(0.5,0.25,0.0625) = 0.5, max(0.125,0.375,0.0625) = 0.375
"$ctl" measure merge "$tmp/c0.json" "$tmp/c1.json" "$tmp/c2.json" --output "$tmp/pc.json" > "$tmp/log" 2>&1
rc=$?
want='{"GlobalRank":null,"LocalRank":-1,"Mode":"DynamicRange","Nodes":{"model.layers.0.mlp.up_proj":{"inputs":[[[2.0],[6.0],[0.75]]],"params":{"weight":[[0.5],[0.375]]}}}}'
if [ $rc -eq 0 ] && [ "$(compact "$tmp/pc.json")" = "$want" ]; then ok; else
    bad "per-channel merge (rc $rc): $(cat "$tmp/log"; compact "$tmp/pc.json" 2>&1)"; fi

# 3. The merged file is itself valid input (merging it with r1 changes nothing).
"$ctl" measure merge "$tmp/out/merged.json" "$tmp/r1.json" -o "$tmp/again.json" > /dev/null 2>&1 &&
    [ "$(compact "$tmp/again.json")" = "$(compact "$tmp/out/merged.json")" ] && ok ||
    bad "merging the merged file again"

# expect STATUS NEEDLE ARGS...: exit status and a message containing NEEDLE.
expect() {
    want_rc=$1; needle=$2; shift 2
    "$ctl" "$@" > "$tmp/log" 2>&1
    got=$?
    if [ $got -ne "$want_rc" ]; then
        bad "fp8ctl $*: exit $got, expected $want_rc: $(cat "$tmp/log")"
    elif ! grep -q -- "$needle" "$tmp/log"; then
        bad "fp8ctl $*: message lacks '$needle': $(cat "$tmp/log")"
    else
        ok
    fi
}

# Usage errors: exit 2.
expect 2 "usage: fp8ctl measure merge" measure
expect 2 "unknown subcommand 'split'" measure split a.json
expect 2 "no output file" measure merge "$tmp/r0.json" "$tmp/r1.json"
expect 2 "no input files" measure merge -o "$tmp/x.json"
expect 2 "-o needs a file name" measure merge "$tmp/r0.json" -o
expect 2 "-o given twice" measure merge "$tmp/r0.json" -o "$tmp/x.json" -o "$tmp/y.json"
expect 2 "-o given twice" measure merge "$tmp/r0.json" -o "$tmp/x.json" --output="$tmp/y.json"
expect 2 "unknown option '--max'" measure merge --max "$tmp/r0.json" -o "$tmp/x.json"
expect 0 "usage: fp8ctl measure merge" measure merge --help

# Bad input: exit 1, message naming the file and the problem.
printf '{"GlobalRank": null, "LocalRank": 0, "Mode": "DynamicRange", "Nodes": {"model.layers.0.mlp.down_proj": {"inputs": [[[NaN]]], "params": {"weight": [[0.25]]}}}}\n' > "$tmp/nan.json"
expect 1 "nan.json.*NaN" measure merge "$tmp/r0.json" "$tmp/nan.json" -o "$tmp/x.json"
expect 1 "missing.json: No such file" measure merge "$tmp/r0.json" "$tmp/missing.json" -o "$tmp/x.json"
printf '{"GlobalRank": null, "LocalRank": 1, "Mode": "DynamicRange", "Nodes": {"model.layers.0.mlp.down_proj": {"inputs": [[[1.0]]], "params": {"weight": [[0.25]]}}}}\n' > "$tmp/short.json"
expect 1 'node "model.layers.0.self_attn.matmul_qk" is in .*r0.json but not in .*short.json' \
    measure merge "$tmp/r0.json" "$tmp/short.json" -o "$tmp/x.json"
expect 1 'but not in' measure merge "$tmp/short.json" "$tmp/r0.json" -o "$tmp/x.json"
cat > "$tmp/c_bad.json" <<'J'
{"GlobalRank": null, "LocalRank": 1, "Mode": "DynamicRange", "Nodes": {
  "model.layers.0.mlp.up_proj": {"inputs": [[[2.0], [4.0]]], "params": {"weight": [[0.25], [0.375]]}}}}
J
expect 1 'inputs\[0\]" is \[3,1\] in .*c0.json and \[2,1\] in .*c_bad.json' \
    measure merge "$tmp/c0.json" "$tmp/c_bad.json" -o "$tmp/x.json"
printf '{"Mode": "Scale", "Nodes": {}}\n' > "$tmp/scale.json"
expect 1 'r0.json has Mode "DynamicRange", .*scale.json has "Scale"' measure merge "$tmp/r0.json" "$tmp/scale.json" -o "$tmp/x.json"
printf 'not json\n' > "$tmp/junk.json"
expect 1 "junk.json: line 1" measure merge "$tmp/junk.json" -o "$tmp/x.json"
expect 1 "$tmp/no/such/dir/x.json" measure merge "$tmp/r0.json" -o "$tmp/no/such/dir/x.json"
# None of the failures left an output behind.
[ ! -e "$tmp/x.json" ] && [ ! -e "$tmp/y.json" ] && ok || bad "a failed merge wrote output"

echo "fp8ctl_measure: $pass passed, $fail failed"
[ $fail -eq 0 ]
