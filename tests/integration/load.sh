#!/bin/sh
# load.sh: 64 concurrent connections against the daemon for a bounded time
# (FP8D_LOAD_SECONDS: 12 s in 'make check', 180 s in 'make load'), mixing
# /v1/completions, streamed /v1/chat/completions and /health.  tests/loadgen
# checks every answer (status, JSON, SSE frames and [DONE]) and samples the
# daemon's VmRSS; then the daemon's own counters must agree with what the
# client saw, nothing may be left running or waiting, and SIGTERM exits 0.
# The figures (requests by kind and status, errors by kind, p50/p90/p99/max
# latency, time to first token, RSS) are printed; no timing is asserted.
# RSS may grow at most FP8D_LOAD_RSS_SLACK percent (10) between the sample
# after the warm-up (FP8D_LOAD_WARMUP s: 4, 60 in 'make load') and the end.
. "$(dirname "$0")/lib.sh"

loadgen=$top_build/tests/loadgen
[ -x "$loadgen" ] || skip "tests/loadgen not built (configure found no libcurl)"
command -v python3 >/dev/null 2>&1 || skip "python3 not found"
secs=${FP8D_LOAD_SECONDS:-12}
warm=${FP8D_LOAD_WARMUP:-4}
slack=${FP8D_LOAD_RSS_SLACK:-10}
mult=${CK_TIMEOUT_MULTIPLIER:-1}
# Under ASan the allocator (its quarantine, its caches) keeps growing with
# the number of allocations long after the warm-up, so RSS says more about
# the sanitizer than about the daemon: it is printed, not checked, and
# LeakSanitizer checks the daemon's memory at its exit instead (exit 0).
rss_check="--rss-slack $slack"
if ldd "$FP8D" 2>/dev/null | grep -q libasan; then
    rss_check=""
    echo "load: ASan build: RSS printed, not checked (LeakSanitizer runs at exit)"
fi

# --max-queued-requests 32: 64 connections overflow it now and then, so
# 429 (and the client's Retry-After wait) runs under load too.
check "daemon starts" start_daemon "$work/log" --threads 1 --max-queued-requests 32
[ -n "$port" ] || { cat "$work/log"; finish; }
url="http://127.0.0.1:$port"
n=$((100 * mult))
while [ "$n" -gt 0 ] && [ "$(http GET /health)" != '200 {"status":"ok"}' ]; do
    sleep 0.1; n=$((n - 1))
done
curl -s -m 10 "$url/metrics" > "$work/m0"
echo "load: $secs s, 64 connections, warm-up $warm s, RSS slack $slack%"
# shellcheck disable=SC2086
"$loadgen" --url "$url" --conns 64 --duration "$secs" --warmup "$warm" --pid "$daemon_pid" \
    $rss_check --seed 8 > "$work/lg" 2>&1
rc=$?
cat "$work/lg"
check "loadgen: every answer well-formed, no transport error${rss_check:+, RSS within $slack% after warm-up}" \
    [ "$rc" = 0 ]
for k in completion chat_stream health; do
    check "$k: answered 200 under load" grep -Eq "^loadgen: $k +n=[0-9]+ +ok=[1-9]" "$work/lg"
done

# What the client counted per route and status is what the daemon counted
# (the difference of two /metrics snapshots around the run).  The daemon
# counts a request once its last byte is sent, which may be a moment after
# the client has read it: the second snapshot is retried for a while.
cat > "$work/agree.py" <<'EOF'
import re, sys
routes = {'completion': '/v1/completions', 'chat_stream': '/v1/chat/completions',
          'health': '/health'}
seen = {}
for line in open(sys.argv[1]):
    m = re.match(r'loadgen: (\w+) +n=\d+ .*\| status(.*)', line)
    if m:
        for kv in m.group(2).split():
            st, n = kv.split(':')
            seen[(routes[m.group(1)], st)] = int(n)
def counts(f):
    d = {}
    for line in open(f):
        m = re.match(r'fp8d:http_requests_total\{route="([^"]+)",status="(\d+)"\} (\d+)', line)
        if m and m.group(1) in routes.values():
            d[(m.group(1), m.group(2))] = int(m.group(3))
    return d
a, b = counts(sys.argv[2]), counts(sys.argv[3])
delta = {k: b[k] - a.get(k, 0) for k in b if b[k] != a.get(k, 0)}
if delta != seen:
    sys.exit('daemon %s, client %s' % (delta, seen))
print('load: daemon and client agree on', sum(seen.values()), 'requests')
EOF
agree() {
    n=$((50 * mult))
    while :; do
        curl -s -m 10 "$url/metrics" > "$work/m1"
        python3 "$work/agree.py" "$work/lg" "$work/m0" "$work/m1" 2>"$work/agree.err" && return 0
        n=$((n - 1))
        [ "$n" -gt 0 ] || { cat "$work/agree.err"; return 1; }
        sleep 0.1
    done
}
check "daemon's http_requests_total moved by the client's counts, per route and status" agree

metric() {
    sed -n "s/^$1{[^}]*} //p" "$work/m2" | head -n1
}
n=$((50 * mult))
while :; do
    curl -s -m 5 "$url/metrics" > "$work/m2"
    [ "$(metric fp8d:num_requests_running)" = 0 ] && [ "$(metric fp8d:num_requests_waiting)" = 0 ] && break
    n=$((n - 1)); [ "$n" -gt 0 ] || break
    sleep 0.1
done
check "after the run: no request running or waiting" \
    [ "$(metric fp8d:num_requests_running)/$(metric fp8d:num_requests_waiting)" = 0/0 ]
check "after the run: no KV cache held" [ "$(metric fp8d:kv_cache_tokens)" = 0 ]
r=$(http GET /health)
check "still serving after the run" [ "$r" = '200 {"status":"ok"}' ]
check "no error-level line in the daemon's log" sh -c "! grep -q '^[^ ]* error ' '$work/log'"
kill -TERM "$daemon_pid"
wait_exit "$daemon_pid" $((100 * mult))
check "SIGTERM after the run: exit 0" [ "$exit_code" = 0 ]
[ "$failed" -eq 0 ] || tail -n 20 "$work/log"
finish
