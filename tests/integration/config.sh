#!/bin/sh
# config.sh: the real daemon's command line and config file handling:
# --help/--version, bad files and flags refused with the file, key and
# reason, a missing model directory, --check-config, the JSON log format and
# journald priority prefixes.
. "$(dirname "$0")/lib.sh"

"$FP8D" --help > "$work/help" 2>&1
check "--help exits 0" [ $? -eq 0 ]
check "--help lists --max-body-bytes" grep -q -- '--max-body-bytes N' "$work/help"
v=$("$FP8D" --version)
check "--version prints the version" sh -c "echo '$v' | grep -Eq '^fp8d [0-9]+\.[0-9]+\.[0-9]+$'"

# refused CONFIG_TEXT EXPECTED_WORDS: fp8d must exit 2 naming file and reason.
refused() {
    printf '%s' "$1" > "$work/bad.json"
    "$FP8D" --config "$work/bad.json" --model "$model" --port 0 > "$work/out" 2>&1
    rc=$?
    if [ $rc -eq 2 ] && grep -q "$work/bad.json" "$work/out" && grep -q -- "$2" "$work/out"; then
        ok "bad config refused: $2"
    else
        bad "bad config '$1': rc=$rc, output: $(cat "$work/out")"
    fi
}
refused '{"port": "80"}' 'key "port": expected an integer, got a string'
refused '{"port": 99999}' 'key "port": 99999 is out of range 0..65535'
refused '{"prot": 1}' 'key "prot": unknown key'
refused '{"log_level": "loud"}' '"loud" is not one of error, warn, info, debug'
refused '{"port": 1,' 'line 1'
refused '["port"]' 'top level must be a JSON object'

"$FP8D" --config "$work/none.json" > "$work/out" 2>&1
rc=$?
check "missing --config file: exit 2 naming it" \
    sh -c "[ $rc -eq 2 ] && grep -q '$work/none.json: No such file' '$work/out'"
"$FP8D" --port 0 --model "$work/nomodel" > "$work/out" 2>&1
rc=$?
check "missing model directory: exit 1 naming it" \
    sh -c "[ $rc -eq 1 ] && grep -q 'model directory $work/nomodel: No such file' '$work/out'"
mkdir "$work/empty"
"$FP8D" --port 0 --model "$work/empty" > "$work/out" 2>&1
rc=$?
check "model directory without config.json: exit 1" \
    sh -c "[ $rc -eq 1 ] && grep -q 'config.json: No such file' '$work/out'"
"$FP8D" --port banana > "$work/out" 2>&1
rc=$?
check "bad flag: exit 2 naming it" \
    sh -c "[ $rc -eq 2 ] && grep -q -- '--port: \"banana\" is not an integer' '$work/out'"

printf '{"port": 0, "model": "%s"}\n' "$model" > "$work/good.json"
"$FP8D" --check-config --config "$work/good.json" > "$work/out" 2>&1
check "--check-config on a good file: exit 0" [ $? -eq 0 ]
"$FP8D" --check-config --config "$work/good.json" --model "$work/nomodel" > "$work/out" 2>&1
check "--check-config with a bad model: exit 1" [ $? -eq 1 ]

# JSON lines, and the <N> prefixes when stderr goes to journald.
start_daemon "$work/jlog" --config "$work/good.json" --log-format json
curl -s -m 5 "http://127.0.0.1:$port/livez" >/dev/null
check "json log: request line" \
    wait_for "$work/jlog" '"level":"info","module":"http","msg":"GET /livez status=200' 20
check "json log: request_id field" grep -q '"request_id":1' "$work/jlog"
kill -TERM "$daemon_pid"; wait_exit "$daemon_pid"
if command -v python3 >/dev/null 2>&1; then
check "every json log line parses" python3 -c '
import json, sys
for line in open(sys.argv[1]):
    json.loads(line)
' "$work/jlog"
else
    echo "SKIP: python3 not found: json log lines not parsed"
fi

JOURNAL_STREAM=8:12345 start_daemon "$work/slog" --config "$work/good.json"
check "journald: info lines start with <6>" grep -q '^<6>info server: listening on' "$work/slog"
kill -TERM "$daemon_pid"; wait_exit "$daemon_pid"
finish
