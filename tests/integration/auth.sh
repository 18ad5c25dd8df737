#!/bin/sh
# auth.sh: API keys with scopes (from a file, Bearer or X-Api-Key), the
# routes left open (/livez, /health), /calibrate always admin, and CORS
# only for the configured origin.
. "$(dirname "$0")/lib.sh"

printf '# test keys\nsk-inf inference\nsk-met metrics\nsk-adm admin\n' > "$work/keys"
check "daemon starts with a key file" start_daemon "$work/log" --threads 1 \
    --api-keys-file "$work/keys" --cors-origins "http://ok.example"
[ -n "$port" ] || { cat "$work/log"; finish; }
url="http://127.0.0.1:$port"
n=50
while [ "$n" -gt 0 ] && [ "$(http GET /health)" != '200 {"status":"ok"}' ]; do
    sleep 0.1; n=$((n - 1))
done
code() {   # code METHOD PATH [curl args]: the status only
    m=$1; p=$2; shift 2
    curl -s -m 10 -o "$work/body" -w '%{http_code}' -X "$m" "$@" "$url$p"
}
check "/livez needs no key" [ "$(code GET /livez)" = 200 ]
check "/health needs no key" [ "$(code GET /health)" = 200 ]
check "/v1/models without a key: 401" [ "$(code GET /v1/models)" = 401 ]
check "401 body is authentication_error" grep -q '"type":"authentication_error"' "$work/body"
check "wrong key: 401" [ "$(code GET /v1/models -H 'Authorization: Bearer sk-nope')" = 401 ]
check "prefix of a key: 401" [ "$(code GET /v1/models -H 'Authorization: Bearer sk-in')" = 401 ]
check "inference key (Bearer): 200" [ "$(code GET /v1/models -H 'Authorization: Bearer sk-inf')" = 200 ]
check "inference key (X-Api-Key): completion 200" \
    [ "$(code POST /v1/completions -H 'X-Api-Key: sk-inf' -d '{"prompt":"a","max_tokens":2}')" = 200 ]
check "metrics key on a completion: 403" \
    [ "$(code POST /v1/completions -H 'X-Api-Key: sk-met' -d '{"prompt":"a","max_tokens":2}')" = 403 ]
check "403 body names the scope" grep -q 'inference scope' "$work/body"
check "/metrics with the inference key: 403" [ "$(code GET /metrics -H 'X-Api-Key: sk-inf')" = 403 ]
check "/metrics with the metrics key: 200" [ "$(code GET /metrics -H 'X-Api-Key: sk-met')" = 200 ]
check "admin key may do everything" [ "$(code GET /metrics -H 'X-Api-Key: sk-adm')" = 200 ]
check "/readyz needs a key: 401" [ "$(code GET /readyz)" = 401 ]

h=$(curl -s -m 5 -D - -o /dev/null -X OPTIONS -H 'Origin: http://ok.example' \
    -H 'Access-Control-Request-Method: POST' "$url/v1/completions" | tr -d '\r')
check "CORS preflight from the listed origin: 204 with Allow-Origin" \
    sh -c "echo '$h' | grep -q '^HTTP/1.1 204' && echo '$h' | grep -q '^Access-Control-Allow-Origin: http://ok.example$'"
h=$(curl -s -m 5 -D - -o /dev/null -H 'Origin: http://evil.example' -H 'X-Api-Key: sk-inf' \
    "$url/v1/models" | tr -d '\r')
check "other origin: no Access-Control-Allow-Origin" sh -c "! echo '$h' | grep -qi '^Access-Control-Allow-Origin'"
h=$(curl -s -m 5 -D - -o /dev/null -H 'Origin: http://ok.example' -H 'X-Api-Key: sk-inf' \
    "$url/v1/models" | tr -d '\r')
check "listed origin on a GET: Allow-Origin and Vary" \
    sh -c "echo '$h' | grep -q '^Access-Control-Allow-Origin: http://ok.example$' && echo '$h' | grep -q '^Vary: Origin$'"
kill -TERM "$daemon_pid"
wait_exit "$daemon_pid"
check "SIGTERM: exit 0" [ "$exit_code" = 0 ]

check "bad scope in the key file: refused at start naming the line" sh -c "
printf 'sk-x wizard\n' > '$work/badkeys'
'$FP8D' --port 0 --model '$model' --api-keys-file '$work/badkeys' > '$work/out' 2>&1
[ \$? -eq 1 ] && grep -q 'line 1: unknown scope \"wizard\"' '$work/out'"
finish
