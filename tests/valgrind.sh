#!/bin/sh
# valgrind.sh ('make valgrind'): fp8d under valgrind memcheck with the
# bundled model, for one completion, one streamed chat, a few error
# answers and one calibration cycle (MEASURE over three requests ->
# QUANTIZE -> a quantized completion -> /calibrate/save with an export
# -> OFF), then SIGTERM.  Passes with zero memcheck errors and zero
# definitely or indirectly lost bytes (--errors-for-leak-kinds turns those
# into errors, so valgrind's exit status 99 says it too).
#
# Not in 'make check': memcheck runs the engine many times slower.  The
# CPU valgrind shows the program has no AVX-512, so the kernels take their
# other paths here; the sanitizer build runs the AVX-512 ones.
# No suppression file: libgomp, libuv, libmicrohttpd and jansson need none.
. "$(dirname "$0")/integration/lib.sh"

command -v valgrind >/dev/null 2>&1 || skip "valgrind not found (Debian package valgrind)"

t0=$(date +%s)
state=$work/state
printf 'sk-inf inference\nsk-adm admin\n' > "$work/keys"
# --threads 2: the OpenMP team runs too, not only the calling thread.
valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=99 \
    --log-file="$work/vg.log" \
    "$FP8D" --host 127.0.0.1 --port 0 --model "$model" --threads 2 --state-dir "$state" \
    --api-keys-file "$work/keys" 2> "$work/log" &
daemon_pid=$!
port=""
if wait_for "$work/log" 'listening on' 1200; then
    port=$(sed -n 's/.*listening on http:\/\/[^ ]*:\([0-9][0-9]*\).*/\1/p' "$work/log" | head -n1)
fi
check "fp8d starts under valgrind" [ -n "$port" ]
[ -n "$port" ] || { cat "$work/log" "$work/vg.log"; finish; }
url="http://127.0.0.1:$port"
n=1200
while [ "$n" -gt 0 ] && [ "$(curl -s -m 10 "$url/health")" != '{"status":"ok"}' ]; do
    sleep 0.1; n=$((n - 1))
done
check "the model loads (/health 200)" [ "$n" -gt 0 ]

post() {   # post KEY PATH BODY: status; body in $work/out
    curl -s -m 300 -o "$work/out" -w '%{http_code}' -H "X-Api-Key: $1" -d "$3" "$url$2"
}
settle() { calib_settle sk-adm 1200; }   # 120 s: valgrind is slow
check "completion: 200" [ "$(post sk-inf /v1/completions \
    '{"prompt":"ROMEO:","max_tokens":8,"logprobs":2,"n":2,"seed":1}')" = 200 ]
check "streamed chat: 200, ends with [DONE]" sh -c "
curl -sN -m 300 -H 'X-Api-Key: sk-inf' -d '{\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],\"max_tokens\":8,\"stream\":true,\"stream_options\":{\"include_usage\":true}}' \
    '$url/v1/chat/completions' > '$work/sse' && grep -q '^data: \[DONE\]' '$work/sse'"
check "bad request: 400" [ "$(post sk-inf /v1/completions '{"prompt":"a","max_tokens":-1}')" = 400 ]
check "unknown route: 404" [ "$(post sk-inf /nope '{}')" = 404 ]
check "tokenize: 200" [ "$(post sk-inf /tokenize '{"content":"ROMEO: hi","with_pieces":true}')" = 200 ]
check "MEASURE: 202" [ "$(post sk-adm /calibrate '{"mode":"measure"}')" = 202 ]
check "MEASURE switch done" settle
for i in 1 2 3; do
    check "completion $i in MEASURE: 200" [ "$(post sk-inf /v1/completions \
        "{\"prompt\":\"JULIET: O Romeo $i\",\"max_tokens\":6}")" = 200 ]
done
check "QUANTIZE: 202" [ "$(post sk-adm /calibrate '{"mode":"quantize"}')" = 202 ]
check "QUANTIZE switch done" settle
check "QUANTIZE: mode quantize, no error" grep -q '"mode":"quantize".*"last_error":null' "$work/cal"
check "completion in QUANTIZE: 200, fingerprint -quantize" sh -c "
[ \"\$(curl -s -m 300 -o '$work/q' -w '%{http_code}' -H 'X-Api-Key: sk-inf' \
    -d '{\"prompt\":\"ROMEO:\",\"max_tokens\":6}' '$url/v1/completions')\" = 200 ] &&
grep -q 'quantize\"' '$work/q'"
check "/calibrate/save with export: 202" [ "$(post sk-adm /calibrate/save '{"export":"vg"}')" = 202 ]
settle
check "save done, no error, files written" sh -c "
grep -q '\"last_error\":null' '$work/cal' && test -f '$state/exports/vg/model.safetensors'"
check "OFF: 202" [ "$(post sk-adm /calibrate '{"mode":"off"}')" = 202 ]
settle
check "OFF: mode off" grep -q '"mode":"off"' "$work/cal"

kill -TERM "$daemon_pid"
wait_exit "$daemon_pid" 1200
check "SIGTERM: exit 0 (valgrind exits 99 on an error or a definite/indirect leak)" \
    [ "$exit_code" = 0 ]
errors=$(sed -n 's/.*ERROR SUMMARY: \([0-9,]*\) errors.*/\1/p' "$work/vg.log" | tail -n1)
definite=$(sed -n 's/.*definitely lost: \([0-9,]*\) bytes.*/\1/p' "$work/vg.log" | tail -n1)
indirect=$(sed -n 's/.*indirectly lost: \([0-9,]*\) bytes.*/\1/p' "$work/vg.log" | tail -n1)
possible=$(sed -n 's/.*possibly lost: \([0-9,]*\) bytes.*/\1/p' "$work/vg.log" | tail -n1)
reachable=$(sed -n 's/.*still reachable: \([0-9,]*\) bytes.*/\1/p' "$work/vg.log" | tail -n1)
# "All heap blocks were freed" replaces the leak lines when nothing is left.
grep -q 'All heap blocks were freed' "$work/vg.log" && definite=0 indirect=0 possible=0 reachable=0
check "memcheck: ${errors:-?} errors" [ "$errors" = 0 ]
check "memcheck: ${definite:-?} bytes definitely lost, ${indirect:-?} indirectly" \
    [ "$definite:$indirect" = 0:0 ]
echo "valgrind: errors=$errors definitely_lost=$definite indirectly_lost=$indirect" \
     "possibly_lost=$possible still_reachable=$reachable run_s=$(( $(date +%s) - t0 ))"
[ "$failed" -eq 0 ] || { tail -n 80 "$work/vg.log"; tail -n 20 "$work/log"; }
finish
