#!/bin/sh
# signals.sh: SIGHUP reloads (good file applied, restart-only key kept,
# bad file refused with the old config kept) and SIGTERM/SIGINT drain
# (in-flight request finished, shutdown_timeout honoured, second signal).
. "$(dirname "$0")/lib.sh"

conf=$work/fp8d.json
printf '{"port": 0, "model": "%s", "max_body_bytes": 1000}\n' "$model" > "$conf"
check "daemon starts" start_daemon "$work/log" --config "$conf"
[ -n "$port" ] || { cat "$work/log"; finish; }
head -c 600 /dev/zero | tr '\0' 'a' > "$work/600"

r=$(http POST /health --data-binary @"$work/600")
check "600 bytes under a 1000 limit: not 413" sh -c "echo '$r' | grep -q '^405 '"

# Good reload: max_body_bytes (reloadable) drops to 500; http_threads needs
# a restart.
printf '{"port": 0, "model": "%s", "max_body_bytes": 500, "http_threads": 3}\n' "$model" > "$conf"
kill -HUP "$daemon_pid"
check "reload logs the applied key" wait_for "$work/log" 'reload: "max_body_bytes" changed, applied'
check "reload logs the restart-only key" wait_for "$work/log" 'reload: "http_threads" changed but needs a restart'
r=$(http POST /health --data-binary @"$work/600")
check "new limit in force after SIGHUP: 413" sh -c "echo '$r' | grep -q '^413 '"
r=$(http GET /health)
check "still on the old port after a restart-only change" [ "$r" = '200 {"status":"ok"}' ]

# Bad reload: the error names file and key, the running config stays.
printf '{"port": 0, "model": "%s", "max_body_bytes": "big"}\n' "$model" > "$conf"
kill -HUP "$daemon_pid"
check "bad reload refused with file and key" \
    wait_for "$work/log" "reload failed, keeping the running configuration: config file $conf: key \"max_body_bytes\": expected an integer"
r=$(http POST /health --data-binary @"$work/600")
check "limit unchanged after the bad reload" sh -c "echo '$r' | grep -q '^413 '"
check "daemon alive after the bad reload" kill -0 "$daemon_pid"

# Drain: an upload in flight (slowed to ~1.5 s) still gets its answer.
printf '{"port": 0, "model": "%s", "shutdown_timeout": 20}\n' "$model" > "$conf"
kill -HUP "$daemon_pid"
wait_for "$work/log" 'reload: "shutdown_timeout" changed' 50
head -c 3000 /dev/zero | tr '\0' 'b' > "$work/3000"
curl -s -m 10 --limit-rate 2000 -o "$work/slow" -w '%{http_code}' \
    --data-binary @"$work/3000" "http://127.0.0.1:$port/health" > "$work/slowcode" &
curl_pid=$!
sleep 0.5
kill -TERM "$daemon_pid"
check "SIGTERM logs the drain" wait_for "$work/log" 'draining 1 in-flight request' 30
wait "$curl_pid"
check "in-flight request answered during the drain" [ "$(cat "$work/slowcode")" = 405 ]
wait_exit "$daemon_pid" 50
check "drained SIGTERM: exit 0" [ "$exit_code" = 0 ]
check "drain completed, not timed out" grep -q 'drain complete' "$work/log"

# shutdown_timeout: a client that never finishes does not hold the exit.
start_daemon "$work/log2" --shutdown-timeout 1
curl -s -m 20 --limit-rate 100 -o /dev/null --data-binary @"$work/3000" \
    "http://127.0.0.1:$port/health" &
curl_pid=$!
sleep 0.5
t0=$(date +%s)
kill -TERM "$daemon_pid"
wait_exit "$daemon_pid" 50
t1=$(date +%s)
check "shutdown_timeout reached: exit 0" [ "$exit_code" = 0 ]
check "shutdown_timeout of 1 s: exited within 3 s" [ $((t1 - t0)) -le 3 ]
check "timeout logged" grep -q 'shutdown_timeout (1 s) reached with 1 request' "$work/log2"
kill "$curl_pid" 2>/dev/null; wait "$curl_pid" 2>/dev/null

# A second signal during the drain exits at once with status 1.
start_daemon "$work/log3" --shutdown-timeout 30
curl -s -m 20 --limit-rate 100 -o /dev/null --data-binary @"$work/3000" \
    "http://127.0.0.1:$port/health" &
curl_pid=$!
sleep 0.5
kill -TERM "$daemon_pid"
wait_for "$work/log3" 'draining' 30
kill -INT "$daemon_pid"
wait_exit "$daemon_pid" 30
check "second signal: exit 1 at once" [ "$exit_code" = 1 ]
kill "$curl_pid" 2>/dev/null; wait "$curl_pid" 2>/dev/null
finish
