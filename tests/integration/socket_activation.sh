#!/bin/sh
# socket_activation.sh: fp8d serving on a socket passed by
# systemd-socket-activate (LISTEN_FDS), as under fp8d.socket.
. "$(dirname "$0")/lib.sh"

command -v systemd-socket-activate >/dev/null 2>&1 || skip "systemd-socket-activate not found"

# systemd-socket-activate needs a fixed port: try a few random ones.
tries=0
while [ $tries -lt 5 ]; do
    tries=$((tries + 1))
    port=$(awk -v s="$$$tries" 'BEGIN { srand(s); print 20000 + int(rand() * 40000) }')
    systemd-socket-activate -l "127.0.0.1:$port" \
        "$FP8D" --port 1 --model "$model" 2> "$work/log" &
    daemon_pid=$!
    if wait_for "$work/log" "Listening on" 30; then break; fi
    wait "$daemon_pid" 2>/dev/null
done
check "systemd-socket-activate listening" grep -q "Listening on 127.0.0.1:$port" "$work/log"

# The first connection makes it exec fp8d with the socket as fd 3; it
# answers 503 while the model loads, then 200 (bounded: 5 s).
n=50
r=$(http GET /health)
while [ "$n" -gt 0 ] && [ "$r" != '200 {"status":"ok"}' ]; do
    sleep 0.1
    n=$((n - 1))
    r=$(http GET /health)
done
check "GET /health through the passed socket" [ "$r" = '200 {"status":"ok"}' ]
check "fp8d used fd 3, not --port 1" \
    grep -q "listening on socket-activated fd 3 (port $port)" "$work/log"
r=$(http GET /nope)
check "second request on the same socket: 404" sh -c "echo '$r' | grep -q '^404 '"
kill -TERM "$daemon_pid"
wait_exit "$daemon_pid"
check "SIGTERM: exit 0" [ "$exit_code" = 0 ]
finish
