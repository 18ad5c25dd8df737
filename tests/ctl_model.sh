#!/bin/sh
# ctl_model.sh: fp8ctl perplexity and generate end to end on the committed
# stories260k (tests/data/models).  Expected values come from transformers'
# outputs, not from this code:
#  - perplexity of "Once upon a time" with --ctx 5 = one window, BOS + 4
#    tokens, all scored: nll/token 13.088809 = (1/4) sum -log softmax of
#    reference prompt_logits rows 0..3 at prompt_ids 1..4 (computed from
#    tests/data/models/stories260k_ref.safetensors with a plain-Python
#    log-sum-exp: total 52.355237);
#  - greedy text after "Once upon a time", 14 tokens: the start of
#    decoded_prompt_plus_greedy in ../shared/testdata/models/reference/stories260k.json.
# Prints "N passed, M failed"; exit 1 on any failure.
top_build=${FP8D_TOP_BUILDDIR:-.}
data=${FP8D_TEST_DATA:-$(dirname "$0")/data}
ctl=$top_build/server/fp8ctl
model=$data/models/stories260k
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok: $1"; }
bad() { fail=$((fail + 1)); echo "FAIL: $1"; }

if [ ! -x "$ctl" ] || [ ! -f "$model/config.json" ]; then
    echo "SKIP: ctl_model.sh: $ctl or $model not found"
    exit 0
fi

printf 'Once upon a time' > "$tmp/once.txt"
out=$("$ctl" perplexity --model "$model" --text "$tmp/once.txt" --ctx 5 2>/dev/null)
nll=$(printf '%s\n' "$out" | sed -n 's/.*nll\/token \([0-9.]*\).*/\1/p')
if [ -n "$nll" ] && awk -v x="$nll" 'BEGIN { d = x - 13.088809; if (d < 0) d = -d; exit !(d <= 13.088809e-4) }'; then
    ok "perplexity nll/token $nll (reference 13.088809)"
else
    bad "perplexity: got '$out'"
fi
case $out in *"windows 1 x 4 scored tokens (ctx 5, BOS first)"*) ok "perplexity window layout" ;;
     *) bad "perplexity window layout: '$out'" ;; esac

gen=$("$ctl" generate --model "$model" --prompt "Once upon a time" --max-tokens 14 2>/dev/null)
if [ "$gen" = "Once upon a timeQQQQQQQ9pphe Onceleingen" ]; then
    ok "generate greedy text"
else
    bad "generate: got '$gen'"
fi
gen=$("$ctl" generate --model "$model" --prompt "Once upon a time" --max-tokens 14 --stop pphe 2>/dev/null)
[ "$gen" = "Once upon a timeQQQQQQQ9" ] && ok "generate --stop" || bad "generate --stop: got '$gen'"

"$ctl" generate --model "$model" >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] && ok "missing --prompt is a usage error" || bad "missing --prompt: exit $rc"
"$ctl" perplexity --model "$model" --text "$tmp/once.txt" --ctx zero >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] && ok "bad --ctx is a usage error" || bad "bad --ctx: exit $rc"
msg=$("$ctl" generate --model "$tmp/none" --prompt x 2>&1); rc=$?
case $rc:$msg in 1:*"$tmp/none"*) ok "missing model named in the error" ;;
     *) bad "missing model: exit $rc, '$msg'" ;; esac

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
