#!/bin/sh
# Live FP8 calibration walkthrough against a running fp8d started with an
# admin key, e.g.
#   printf 'sk-admin admin\n' > /tmp/keys
#   ./server/fp8d --model examples/models/shakespeare-tiny-bf16 \
#       --api-keys-file /tmp/keys --state-dir /tmp/fp8d-state
#   FP8D_KEY=sk-admin examples/calibrate.sh
# Steps: state -> measure on a small dataset (plus live traffic) ->
# quantize -> compare an answer -> save (and export an FP8 checkpoint under
# the state directory) -> back to off.  Each switch is queued (202) and
# happens between batches; GET /calibrate shows "transition": "pending"
# until it is done.
url=${1:-http://127.0.0.1:8080}
key=${FP8D_KEY:?set FP8D_KEY to an admin key}
adm() { curl -s -H "Authorization: Bearer $key" "$@"; echo; }
wait_done() {
    i=0
    while [ $i -lt 100 ] && adm "$url/calibrate" | grep -q '"transition":"pending"'; do
        sleep 0.1; i=$((i + 1))
    done
}
ask() {
    curl -s -H "Authorization: Bearer $key" \
         -d '{"prompt": "ROMEO:", "max_tokens": 8, "temperature": 0, "logprobs": 1}' "$url/v1/completions" |
        sed -n 's/.*"system_fingerprint":"\([^"]*\)".*"text":"\([^"]*\)".*/fingerprint \1: \2/p'
    echo
}
echo "== state";                adm "$url/calibrate"
echo "== answer in mode off";   ask
echo "== measure";              adm -d '{"mode": "measure", "dataset": ["ROMEO: What say you?", "JULIET: O Romeo, Romeo!"]}' "$url/calibrate"
wait_done
ask >/dev/null                   # live traffic is measured too
echo "== quantize";             adm -d '{"mode": "quantize"}' "$url/calibrate"
wait_done
adm "$url/calibrate"
echo "== answer in FP8";        ask
echo "== save + export";        adm -d '{"export": "walkthrough"}' "$url/calibrate/save"
wait_done
adm "$url/calibrate"
echo "== back to off";          adm -d '{"mode": "off"}' "$url/calibrate"
wait_done
ask
