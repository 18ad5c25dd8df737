# lib.sh: helpers shared by the fp8d integration scripts (sourced).
# Each script counts checks with ok/bad, ends with `finish`, which prints
# "N passed, N failed" as the last line and sets the exit status.  Every
# wait is bounded.  A script that cannot run prints "SKIP: ..." and exits 77.
top_src=${FP8D_TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
top_build=${FP8D_TOP_BUILDDIR:-$top_src}
FP8D=$top_build/server/fp8d
passed=0
failed=0
work=$(mktemp -d "${TMPDIR:-/tmp}/fp8d-it.XXXXXX")
daemon_pid=""

cleanup() {
    if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
        kill -KILL "$daemon_pid" 2>/dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT

ok()  { passed=$((passed + 1)); echo "ok: $*"; }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }
check() {   # check DESCRIPTION COMMAND...
    d=$1; shift
    if "$@"; then ok "$d"; else bad "$d"; fi
}
finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit $?
}
skip() { echo "SKIP: $*"; echo "0 passed, 0 failed"; exit 77; }

command -v curl >/dev/null 2>&1 || skip "curl not found"

# The system python3 when there is one: a version manager's shim on PATH
# can cost a second per start, and the scripts start python3 often.
if [ -x /usr/bin/python3 ]; then
    python3() { /usr/bin/python3 "$@"; }
fi
[ -x "$FP8D" ] || { echo "server/fp8d not built at $FP8D"; echo "0 passed, 1 failed"; exit 1; }

# The bundled model: the daemon loads it at start (thousands of tokens/s).
model=$top_src/examples/models/shakespeare-tiny-bf16

# wait_for FILE PATTERN [TENTHS]: wait until FILE contains PATTERN (default 10 s).
wait_for() {
    n=${3:-100}
    while [ "$n" -gt 0 ]; do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
        n=$((n - 1))
    done
    return 1
}

# wait_exit PID [TENTHS]: wait for the daemon to exit; sets exit_code.
wait_exit() {
    n=${2:-100}
    while [ "$n" -gt 0 ]; do
        if ! kill -0 "$1" 2>/dev/null; then
            wait "$1"
            exit_code=$?
            return 0
        fi
        sleep 0.1
        n=$((n - 1))
    done
    exit_code=timeout
    return 1
}

# start_daemon LOG ARGS...: starts fp8d on an ephemeral port; sets
# daemon_pid and port (from the "listening on" log line).
start_daemon() {
    log=$1; shift
    "$FP8D" --host 127.0.0.1 --port 0 --model "$model" "$@" 2>"$log" &
    daemon_pid=$!
    port=""
    if wait_for "$log" 'listening on'; then
        port=$(sed -n 's/.*listening on http:\/\/[^ ]*:\([0-9][0-9]*\).*/\1/p' "$log" | head -n1)
    fi
    [ -n "$port" ]
}

# wait_ready [TENTHS]: polls /readyz until the model is loaded (default
# 30 s: "listening on" comes before the load ends, and a sanitizer build
# on a busy machine loads slowly).  Fails when it never gets ready.
wait_ready() {
    n=${1:-300}
    while [ "$n" -gt 0 ]; do
        [ "$(http GET /readyz)" = '200 {"status":"ready"}' ] && return 0
        sleep 0.1
        n=$((n - 1))
    done
    return 1
}

# http METHOD PATH [curl args...]: prints "STATUS BODY" on one line.
http() {
    m=$1; p=$2; shift 2
    curl -s -m 5 -X "$m" -o "$work/body" -w '%{http_code}' "$@" "http://127.0.0.1:$port$p" \
        > "$work/code"
    printf '%s %s\n' "$(cat "$work/code")" "$(cat "$work/body")"
}

# calib_settle KEY [TENTHS]: waits until GET /calibrate (with admin key
# KEY) shows no pending transition (default 10 s); the last answer is left
# in $work/cal.
calib_settle() {
    n=${2:-100}
    while [ "$n" -gt 0 ]; do
        curl -s -m 30 -o "$work/cal" -H "X-Api-Key: $1" "http://127.0.0.1:$port/calibrate"
        grep -q '"transition":null' "$work/cal" && return 0
        sleep 0.1
        n=$((n - 1))
    done
    return 1
}
