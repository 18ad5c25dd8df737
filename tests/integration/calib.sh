#!/bin/sh
# calib.sh: live calibration over HTTP on the bundled model: the
# configured AUTO mode at start (MEASURE without measurements), admin scope,
# 409 before anything is measured, measure on a dataset, quantize (epoch,
# fingerprint, X-FP8-* and logprobs change), save + export under the state
# directory only, then a restart with the saved state answering the same
# as before the restart, and /calibrate/load.
. "$(dirname "$0")/lib.sh"

command -v python3 >/dev/null 2>&1 || skip "python3 not found"
state=$work/state
mkdir -p "$state"
printf 'sk-adm admin\nsk-inf inference\n' > "$work/keys"
python3 -c "
import json; c = json.load(open('$top_src/examples/fp8-config.json'))
c['mode'] = 'AUTO'; c['dump_stats_path'] = '$state/measure/fp8d'
json.dump(c, open('$work/fp8.json', 'w'))"
mkdir -p "$state/measure"

start() {
    start_daemon "$work/log$1" --threads 1 --fp8-config "$work/fp8.json" --state-dir "$state" \
        --api-keys-file "$work/keys" || return 1
    n=50
    while [ "$n" -gt 0 ] && [ "$(http GET /health)" != '200 {"status":"ok"}' ]; do
        sleep 0.1; n=$((n - 1))
    done
    url="http://127.0.0.1:$port"
}
adm() {   # adm METHOD PATH [BODY]: status; body in $work/out
    if [ -n "$3" ]; then
        curl -s -m 20 -o "$work/out" -w '%{http_code}' -X "$1" -H 'X-Api-Key: sk-adm' -d "$3" "$url$2"
    else
        curl -s -m 20 -o "$work/out" -w '%{http_code}' -X "$1" -H 'X-Api-Key: sk-adm' "$url$2"
    fi
}
py() {
    python3 -c "
import json
j = json.load(open('$work/out'))
$1"
}
settle() {   # waits (5 s at most) for the pending transition to finish
    n=100
    while [ "$n" -gt 0 ]; do
        adm GET /calibrate > /dev/null
        py "assert j['transition'] is None" 2>/dev/null && return 0
        sleep 0.05; n=$((n - 1))
    done
    return 1
}
complete() {   # complete FILE: a greedy completion with logprobs (and headers)
    curl -s -m 20 -D "$1.h" -o "$1" -H 'X-Api-Key: sk-inf' \
        -d '{"prompt":"ROMEO:","max_tokens":8,"temperature":0,"logprobs":2}' "$url/v1/completions"
}

check "daemon A starts with an AUTO FP8 config" start A
[ -n "$port" ] || { cat "$work/logA"; finish; }
s=$(adm GET /calibrate)
check "AUTO without measurements: MEASURE, epoch 1" py "assert j['mode'] == 'measure' and j['epoch'] == 1 and j['transition'] is None and j['modules'] > 0, j"
s=$(curl -s -m 5 -o "$work/out" -w '%{http_code}' -H 'X-Api-Key: sk-inf' "$url/calibrate")
check "inference key on /calibrate: 403" [ "$s" = 403 ]
s=$(adm POST /calibrate '{"mode":"quantize"}')
check "quantize before anything was measured: 409" py "assert '$s' == '409' and 'nothing measured' in j['error']['message'], j"
s=$(adm POST /calibrate '{"mode":"fast"}')
check "bad mode: 400 naming mode" py "assert '$s' == '400' and 'mode' in j['error']['message'], j"
s=$(adm POST /calibrate '{"mode":"measure","config":{"dump_stats_path":"/etc/x"}}')
check "client dump_stats_path: 400 naming it" py "assert '$s' == '400' and 'dump_stats_path' in j['error']['message'], j"
s=$(adm POST /calibrate '{"mode":"measure","config":{"scale_method":"nope"}}')
check "bad FP8Config field: 400 naming it" py "assert '$s' == '400' and 'scale_method' in j['error']['message'], j"

# No "reset" below: the measurements of this request stay.  A dataset runs
# prefill only, which never reaches lm_head, and a measurement file
# without lm_head is refused at the next start (reported to the engine).
complete "$work/p0"
check "reference answer in MEASURE: fingerprint e1-measure" python3 -c "
import json; j = json.load(open('$work/p0')); assert j['system_fingerprint'].endswith('-e1-measure'), j"
s=$(adm POST /calibrate '{"mode":"measure","dataset":["ROMEO: What say you?","JULIET: O Romeo, Romeo!","KING: Speak, man."]}')
check "measure with a dataset: 202 to epoch 2" py "assert '$s' == '202' and j['to'] == {'mode': 'measure', 'epoch': 2}, j"
check "transition finishes" settle
check "epoch 2, dataset tokens observed" py "assert j['epoch'] == 2 and j['observed']['tokens'] > 10 and j['ready_to_quantize'] and j['last_error'] is None, j"
s=$(adm POST /calibrate '{"mode":"quantize"}')
check "quantize: 202" [ "$s" = 202 ]
check "transition finishes" settle
check "mode quantize, epoch 3" py "assert j['mode'] == 'quantize' and j['epoch'] == 3 and j['last_error'] is None, j"
complete "$work/q1"
check "quantized answer: fingerprint e3-quantize, X-FP8 headers" sh -c "
grep -q '\"system_fingerprint\":\"fp8d-[^\"]*-e3-quantize\"' '$work/q1' &&
tr -d '\r' < '$work/q1.h' | grep -q '^X-FP8-Mode: quantize$' && tr -d '\r' < '$work/q1.h' | grep -q '^X-FP8-Epoch: 3$'"
check "logprobs changed with FP8" python3 -c "
import json
a = json.load(open('$work/p0'))['choices'][0]['logprobs']['token_logprobs']
b = json.load(open('$work/q1'))['choices'][0]['logprobs']['token_logprobs']
assert any(abs(x - y) > 1e-6 for x, y in zip(a, b)), (a, b)"
s=$(adm POST /calibrate/save '{"export":"../../etc"}')
check "export outside the state directory: 400" py "assert '$s' == '400' and 'export' in j['error']['message'], j"
s=$(adm POST /calibrate/save '{"export":"e3"}')
check "save with export: 202" py "assert '$s' == '202' and j['export'] == '$state/exports/e3', j"
check "save finishes" settle
check "save: no error" py "assert j['last_error'] is None, j"
check "measurements written under the state directory" sh -c "ls '$state'/measure/fp8d_hooks_maxabs*.json >/dev/null"
check "FP8 checkpoint exported under the state directory" test -f "$state/exports/e3/config.json"
kill -TERM "$daemon_pid"
wait_exit "$daemon_pid"
check "A: SIGTERM exit 0" [ "$exit_code" = 0 ]

check "daemon B starts with the saved state" start B
s=$(adm GET /calibrate)
check "B: AUTO found the measurements: QUANTIZE at start" py "assert j['mode'] == 'quantize' and j['epoch'] == 1, j"
complete "$work/q2"
check "B answers as A did after quantize (text and logprobs)" python3 -c "
import json
a = json.load(open('$work/q1'))['choices'][0]; b = json.load(open('$work/q2'))['choices'][0]
assert a['text'] == b['text'] and a['logprobs'] == b['logprobs'], (a, b)"
s=$(adm POST /calibrate/load '{}')
check "load: 202 to quantize" py "assert '$s' == '202' and j['to']['mode'] == 'quantize', j"
check "load finishes" settle
check "after load: epoch 2, quantize" py "assert j['epoch'] == 2 and j['mode'] == 'quantize' and j['last_error'] is None, j"
complete "$work/q3"
check "after load: same answer" python3 -c "
import json
a = json.load(open('$work/q1'))['choices'][0]; b = json.load(open('$work/q3'))['choices'][0]
assert a['text'] == b['text'] and a['logprobs'] == b['logprobs'], (a, b)"
s=$(adm POST /calibrate '{"mode":"off"}')
check "off" settle
complete "$work/o1"
check "off again: the reference answer of the start" python3 -c "
import json
a = json.load(open('$work/p0'))['choices'][0]; b = json.load(open('$work/o1'))['choices'][0]
assert a['text'] == b['text'] and a['logprobs'] == b['logprobs'], (a, b)"
# A calibration on a dataset alone (reset: nothing from live traffic) must
# save a file that loads back: lm_head is measured by the dataset run too.
s=$(adm POST /calibrate '{"mode":"measure","reset":true,"dataset":["ROMEO: What say you?","JULIET: O Romeo, Romeo!"]}')
check "dataset-only measure (reset): 202" [ "$s" = 202 ]
check "transition finishes" settle
s=$(adm POST /calibrate '{"mode":"quantize"}')
check "quantize from the dataset-only measurements" settle
s=$(adm POST /calibrate/save '{}')
check "save finishes" settle
check "save: no error" py "assert j['last_error'] is None, j"
s=$(adm POST /calibrate/load '{}')
check "load of the dataset-only file: 202" [ "$s" = 202 ]
check "load finishes" settle
check "after load: quantize, no error" py "assert j['mode'] == 'quantize' and j['last_error'] is None, j"
kill -TERM "$daemon_pid"
wait_exit "$daemon_pid"
check "B: SIGTERM exit 0" [ "$exit_code" = 0 ]
[ "$failed" -eq 0 ] || tail -n 20 "$work/logB"
finish
