#!/bin/sh
# limits.sh: back-pressure and deadlines on the real daemon with one
# sequence per step (--max-batch 1) so work queues: a full queue answers
# 429 with Retry-After, an expired deadline 504 (or an error event inside a
# started stream), a client that disconnects mid-stream has its sequences
# cancelled (fewer tokens generated, counted by reason), and SIGTERM lets
# a running request finish before exit 0.
. "$(dirname "$0")/lib.sh"

command -v python3 >/dev/null 2>&1 || skip "python3 not found"

check "daemon starts" start_daemon "$work/log" --threads 1 --max-batch 1 --max-queued-requests 4
[ -n "$port" ] || { cat "$work/log"; finish; }
url="http://127.0.0.1:$port"
wait_ready || true   # checked by the requests below
# metric NAME: the value of an unlabelled-but-model_name series.
metric() {
    curl -s -m 5 "$url/metrics" | sed -n "s/^$1{[^}]*} //p" | head -n1
}
long='{"prompt":"ROMEO:","max_tokens":480,"ignore_eos":true,"temperature":0,"n":4}'

# ---- 429: four sequences of one request fill the queue of 4 ---------------
curl -s -m 30 -o "$work/a.json" -d "$long" "$url/v1/completions" &
a_pid=$!
n=300
while [ "$n" -gt 0 ] && [ "$(metric fp8d:num_requests_waiting)" = 0 ]; do
    sleep 0.01; n=$((n - 1))
done
curl -s -m 10 -D "$work/h429" -o "$work/b.json" -w '%{http_code}' -d "$long" "$url/v1/completions" > "$work/code"
check "queue full: 429 queue_full" python3 -c "
import json; j = json.load(open('$work/b.json'))
assert open('$work/code').read() == '429' and j['error']['code'] == 'queue_full' and j['error']['type'] == 'rate_limit_error', j"
check "429 carries Retry-After" grep -qi '^Retry-After: 1' "$work/h429"
wait "$a_pid"
check "the queued request still completes: 4 x 480 tokens" python3 -c "
import json; j = json.load(open('$work/a.json'))
assert j['usage']['completion_tokens'] == 1920 and all(c['finish_reason'] == 'length' for c in j['choices']), j"
check "metrics: one queue_full rejection" sh -c "curl -s '$url/metrics' | grep -q 'fp8d:requests_rejected_total{model_name=\"shakespeare-tiny-bf16\",reason=\"queue_full\"} 1'"

# ---- deadlines -------------------------------------------------------------
s=$(curl -s -m 10 -o "$work/d.json" -w '%{http_code}' -d '{"prompt":"ROMEO:","max_tokens":480,"ignore_eos":true,"timeout_ms":5}' "$url/v1/completions")
check "deadline: 504 deadline_exceeded naming timeout_ms" python3 -c "
import json; j = json.load(open('$work/d.json'))
assert '$s' == '504' and j['error']['code'] == 'deadline_exceeded' and 'timeout_ms' in j['error']['message'], j"
s=$(curl -s -m 10 -o "$work/d.json" -w '%{http_code}' -H 'X-Request-Timeout: 5' -d '{"prompt":"ROMEO:","max_tokens":480,"ignore_eos":true}' "$url/v1/completions")
check "X-Request-Timeout header: 504" [ "$s" = 504 ]
curl -s -N -m 10 -o "$work/s.txt" -d '{"prompt":"ROMEO:","max_tokens":480,"ignore_eos":true,"timeout_ms":60,"stream":true}' "$url/v1/completions"
check "deadline mid-stream: error event, then [DONE]" python3 -c "
import json
f = open('$work/s.txt').read().split('\n\n')
assert f[-1] == '' and f[-2] == 'data: [DONE]', f[-3:]
e = json.loads(f[-3][6:])
assert e['error']['code'] == 'deadline_exceeded' and e['error']['status'] == 504, e
assert 'choices' in json.loads(f[0][6:])"
check "metrics: deadlines counted" sh -c "curl -s '$url/metrics' | grep -Eq 'fp8d:requests_cancelled_total\{model_name=\"shakespeare-tiny-bf16\",reason=\"deadline\"\} [3-9]'"

# ---- client disconnect mid-stream ------------------------------------------
cancelled() {
    curl -s -m 5 "$url/metrics" | sed -n 's/^fp8d:requests_cancelled_total{[^}]*reason="client_disconnect"} //p'
}
settled() {
    n=100
    while [ "$n" -gt 0 ] && { [ "$(metric fp8d:num_requests_running)" != 0 ] || [ "$(metric fp8d:num_requests_waiting)" != 0 ]; }; do
        sleep 0.05; n=$((n - 1))
    done
}
g0=$(metric fp8d:generation_tokens_total)
c0=$(cancelled)
curl -s -N -m 0.3 -o /dev/null -d '{"prompt":"ROMEO:","max_tokens":480,"ignore_eos":true,"n":4,"stream":true}' "$url/v1/completions"
settled
g1=$(metric fp8d:generation_tokens_total)
c1=$(cancelled)
check "disconnect mid-stream: sequences stopped early ($((g1 - g0)) of 1920 tokens)" [ $((g1 - g0)) -lt 1920 ]
check "metrics: $((c1 - c0)) sequence(s) cancelled for client_disconnect" [ $((c1 - c0)) -ge 1 ]
curl -s -m 0.3 -o /dev/null -d "$long" "$url/v1/completions"
settled
g2=$(metric fp8d:generation_tokens_total)
c2=$(cancelled)
check "disconnect while waiting (not streamed): stopped early ($((g2 - g1)) of 1920 tokens)" [ $((g2 - g1)) -lt 1920 ]
check "metrics: $((c2 - c1)) more cancelled for client_disconnect" [ $((c2 - c1)) -ge 1 ]
r=$(http GET /health)
check "still serving after the disconnects" [ "$r" = '200 {"status":"ok"}' ]

# ---- SIGTERM drains a running request --------------------------------------
curl -s -m 30 -o "$work/t.json" -d '{"prompt":"ROMEO:","max_tokens":480,"ignore_eos":true,"n":2}' "$url/v1/completions" &
t_pid=$!
n=300
while [ "$n" -gt 0 ] && [ "$(metric fp8d:num_requests_running)" = 0 ]; do
    sleep 0.01; n=$((n - 1))
done
kill -TERM "$daemon_pid"
wait "$t_pid"
check "SIGTERM: the running request finished whole" python3 -c "
import json; j = json.load(open('$work/t.json'))
assert j['usage']['completion_tokens'] == 960, j"
wait_exit "$daemon_pid"
check "SIGTERM: exit 0" [ "$exit_code" = 0 ]

# ---- SIGTERM past shutdown_timeout: the engine stops, waiting calls end -----
check "daemon starts (shutdown_timeout 0)" start_daemon "$work/log2" --threads 1 --max-batch 1 --shutdown-timeout 0
url="http://127.0.0.1:$port"
wait_ready || true   # checked by the requests below
curl -s -m 20 -o "$work/cut.json" -w '%{http_code}' -d "$long" "$url/v1/completions" > "$work/cut.code" &
c_pid=$!
n=300
while [ "$n" -gt 0 ] && [ "$(metric fp8d:num_requests_running)" = 0 ]; do
    sleep 0.01; n=$((n - 1))
done
kill -TERM "$daemon_pid"
wait "$c_pid"
check "cut short by the stop: 503 naming the shutdown" python3 -c "
import json; j = json.load(open('$work/cut.json'))
assert open('$work/cut.code').read() == '503' and 'shutting down' in j['error']['message'], j"
wait_exit "$daemon_pid"
check "and exit 0" [ "$exit_code" = 0 ]
finish
