#!/bin/sh
# faults.sh: the daemon under faults, one case per block, each printing
# what it checked:
#   e. clients hanging up at random points of many requests (streams after
#      a random number of bytes, plain completions after a random time):
#      nothing left running or waiting, no KV cache held, RSS back near
#      the level after a warm-up run;
#   a. SIGTERM while 64 connections wait on long generations: every
#      request ends whole or with an explicit error (503 JSON, or the
#      stream's error event then [DONE]), exit 0 within shutdown_timeout
#      plus a margin;
#   c. a full, then a read-only state directory (a 64 KiB tmpfs mount):
#      POST /calibrate/save reports the path and the errno text, and the
#      daemon keeps serving;
#   b. a crash in the middle of POST /calibrate/save's write (file-size
#      limit), then SIGKILL again and again at varied delays: the
#      measurement file under its final name is never partial (same bytes
#      as before) and the next start (AUTO) quantizes from it;
#   d. model files changed under the daemon, then SIGHUP: a truncated
#      model.safetensors renamed over the file is refused and logged and the
#      old model answers as before; the good file renamed back loads and
#      takes over under load with no request failing; the file truncated in
#      place is refused too, and the daemon keeps answering (no SIGBUS).
# Waits scale with CK_TIMEOUT_MULTIPLIER (4 under ASan in CI).
. "$(dirname "$0")/lib.sh"

loadgen=$top_build/tests/loadgen
[ -x "$loadgen" ] || skip "tests/loadgen not built (configure found no libcurl)"
command -v python3 >/dev/null 2>&1 || skip "python3 not found"
mult=${CK_TIMEOUT_MULTIPLIER:-1}
# As in load.sh: under ASan RSS is the sanitizer's, printed and not
# checked; LeakSanitizer checks at each daemon's exit (exit 0).
asan=false
ldd "$FP8D" 2>/dev/null | grep -q libasan && asan=true

# metric NAME: one series' value from the last /metrics snapshot.
snap() { curl -s -m 5 "$url/metrics" > "$work/metrics"; }
metric() { sed -n "s/^$1{[^}]*} //p" "$work/metrics" | head -n1; }
metric_plain() { sed -n "s/^$1 //p" "$work/metrics" | head -n1; }
rss() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$1/status"; }
ready() {   # ready [TENTHS]: wait until /health answers 200
    n=${1:-$((100 * mult))}
    url="http://127.0.0.1:$port"
    while [ "$n" -gt 0 ] && [ "$(http GET /health)" != '200 {"status":"ok"}' ]; do
        sleep 0.1; n=$((n - 1))
    done
    [ "$n" -gt 0 ]
}
# settled: wait (5 s, scaled) until no request runs or waits and only the
# /metrics request itself is in flight.
settled() {
    n=$((50 * mult))
    while :; do
        snap
        [ "$(metric fp8d:num_requests_running)/$(metric fp8d:num_requests_waiting)/$(metric_plain fp8d:http_requests_in_flight)" = 0/0/1 ] && return 0
        n=$((n - 1))
        [ "$n" -gt 0 ] || return 1
        sleep 0.1
    done
}
now_ms() { date +%s%3N; }
t_case=$(now_ms)
lap() {   # lap TITLE: how long the previous case took, then the next title
    echo "(case took $(( ($(now_ms) - t_case) / 1000 )) s)"; t_case=$(now_ms); echo "== $1"
}
complete_ok() {   # a greedy completion answers 200 with a choice (text in $work/cmpl)
    r=$(curl -s -m 20 -o "$work/cmpl" -w '%{http_code}' -H 'X-Api-Key: sk-adm' \
        -d '{"prompt":"ROMEO:","max_tokens":8,"temperature":0}' "$url/v1/completions")
    [ "$r" = 200 ] && grep -q '"finish_reason"' "$work/cmpl"
}
# A tmpfs mounted by case c must go before lib.sh's cleanup removes $work.
mounted=""
# Every daemon started here is killed at exit, not only the last one
# (lib.sh's cleanup knows daemon_pid alone; a case that stops early may
# leave an earlier daemon running).  Only while it is still our child: a
# pid already reaped may belong to someone else by then.
started=""
start_daemon_tracked() { start_daemon "$@"; sd_rc=$?; started="$started $daemon_pid"; return $sd_rc; }
kill_started() {
    for p in $started; do
        [ "$(ps -o ppid= -p "$p" 2>/dev/null | tr -d ' ')" = "$$" ] && kill -KILL "$p" 2>/dev/null
    done
}
trap 'kill_started; [ -z "$mounted" ] || umount "$mounted"; cleanup' EXIT

# ---- e. clients hanging up mid-request -------------------------------------
lap "e. random client disconnects"
check "e: daemon starts" start_daemon_tracked "$work/log_e" --threads 1
ready || { cat "$work/log_e"; finish; }
# The warm-up is the same load (everyone hangs up) once before: its RSS
# is the level the second round must come back to, so memory kept per
# abandoned request would show as growth.
"$loadgen" --url "$url" --conns 64 --duration 3 --mix 1:3:0 --max-tokens 64:256 \
    --abort-pct 100 --seed 5 > "$work/lg_e0" 2>&1
check "e: warm-up round of hang-ups without failures" [ $? = 0 ]
check "e: after the warm-up round nothing runs or waits" settled
base=$(rss "$daemon_pid")
"$loadgen" --url "$url" --conns 64 --duration 4 --mix 1:3:0 --max-tokens 64:256 \
    --abort-pct 100 --seed 6 > "$work/lg_e" 2>&1
rc=$?
cat "$work/lg_e"
check "e: every request either answered well-formed or abandoned by the client" [ "$rc" = 0 ]
aborted=$(sed -n 's/^loadgen: chat_stream .* aborted=\([0-9]*\) .*/\1/p' "$work/lg_e")
check "e: ${aborted:-0} streams abandoned mid-way by the client (>= 20)" [ "${aborted:-0}" -ge 20 ]
check "e: within 5 s nothing runs or waits and only /metrics is in flight" settled
check "e: no KV cache held" [ "$(metric fp8d:kv_cache_tokens)" = 0 ]
c=$(sed -n 's/^fp8d:requests_cancelled_total{[^}]*reason="client_disconnect"} //p' "$work/metrics")
check "e: $c sequences cancelled for client_disconnect" [ "${c:-0}" -ge 1 ]
after=$(rss "$daemon_pid")
echo "e: RSS after the warm-up round ${base} kB, after the second round ${after} kB"
# The allowance is 10% plus 4 MiB: 64 connections' worth of what the
# server may hold between rounds without owning it for a request (each
# connection's 32 KiB libmicrohttpd pool and a response buffer, cached
# by malloc rather than returned).  The RSS of the same daemon wanders by
# that much from round to round with no trend (seen here: 8 rounds within
# 1.5 MB of 24 MB), so 10% alone failed now and then under 'make -j2
# check'.  A leaked KV cache, or 8 KiB leaked per abandoned request (the
# round abandons ~1600), is still well above it.
if $asan; then
    echo "e: ASan build: RSS not checked"
else
    check "e: RSS within 10% + 4 MiB of the level after the warm-up round" \
        [ "$after" -le $((base + base / 10 + 4096)) ]
fi
check "e: a completion still succeeds" complete_ok
kill -TERM "$daemon_pid"
wait_exit "$daemon_pid" $((100 * mult))
check "e: SIGTERM exit 0" [ "$exit_code" = 0 ]

# ---- a. SIGTERM while every connection waits on a long generation ------------
lap "a. SIGTERM under load"
# One sequence per step (--max-batch 1): 64 requests of 400-480 tokens
# each are over 25000 steps, which no machine runs within the 2 s of
# shutdown_timeout: the drain finishes the first few whole and the stop
# cuts the rest, so both endings are seen.
check "a: daemon starts (max_batch 1, shutdown_timeout 2)" start_daemon_tracked "$work/log_a" \
    --threads 1 --max-batch 1 --shutdown-timeout 2
ready || { cat "$work/log_a"; finish; }
"$loadgen" --url "$url" --conns 64 --count 64 --mix 1:1:0 --max-tokens 400:480 --ignore-eos \
    --drain --seed 7 > "$work/lg_a" 2>&1 &
lg_pid=$!
n=$((100 * mult))
while [ "$n" -gt 0 ]; do
    snap
    done_n=$(sed -n 's/^fp8d:request_success_total{[^}]*} //p' "$work/metrics" | awk '{ s += $1 } END { print s + 0 }')
    [ $(($(metric fp8d:num_requests_running) + $(metric fp8d:num_requests_waiting) + done_n)) -ge 64 ] && break
    sleep 0.05; n=$((n - 1))
done
check "a: all 64 requests accepted (running $(metric fp8d:num_requests_running), waiting $(metric fp8d:num_requests_waiting), done $done_n)" [ "$n" -gt 0 ]
t0=$(now_ms)
kill -TERM "$daemon_pid"
sleep 0.2
s=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$url/health")
check "a: a new request during the drain is refused (connection or 503): got $s" \
    sh -c "[ '$s' = 000 ] || [ '$s' = 503 ]"
wait_exit "$daemon_pid" $((100 * mult))
t1=$(now_ms)
wait "$lg_pid"
rc=$?
cat "$work/lg_a"
check "a: every request ended whole, with a 503 or with a stream error event + [DONE]" [ "$rc" = 0 ]
check "a: all 64 answered, no transport error" grep -q '^loadgen: total=64 failures=0' "$work/lg_a"
cut=$(sed -n 's/^loadgen: \(completion\|chat_stream\) .* rejected=\([0-9]*\) cut=\([0-9]*\) .*/\2 \3/p' \
      "$work/lg_a" | awk '{ s += $1 + $2 } END { print s + 0 }')
check "a: $cut of them cut by the stop with an explicit error" [ "$cut" -ge 1 ]
check "a: SIGTERM exit 0" [ "$exit_code" = 0 ]
margin=$((3000 * mult))
echo "a: exit $((t1 - t0)) ms after SIGTERM (shutdown_timeout 2000 ms, margin $margin ms)"
check "a: exited within shutdown_timeout + margin" [ $((t1 - t0)) -le $((2000 + margin)) ]
check "a: the log names the timeout" grep -q 'shutdown_timeout (2 s) reached' "$work/log_a"

# ---- shared by c and b: an AUTO FP8 config and an admin key ------------------
printf 'sk-adm admin\n' > "$work/keys"
fp8_config() {   # fp8_config STATE_DIR OUT: AUTO, measurements under STATE_DIR/measure
    python3 -c "
import json; c = json.load(open('$top_src/examples/fp8-config.json'))
c['mode'] = 'AUTO'; c['dump_stats_path'] = '$1/measure/fp8d'
json.dump(c, open('$2', 'w'))"
}
adm() {   # adm METHOD PATH [BODY]: prints the status; body in $work/out
    curl -s -m 20 -o "$work/out" -w '%{http_code}' -X "$1" -H 'X-Api-Key: sk-adm' \
        ${3:+-d "$3"} "$url$2"
}
settle() {   # waits until no calibration command is pending; GET /calibrate in $work/out
    n=$((100 * mult))
    while [ "$n" -gt 0 ]; do
        adm GET /calibrate > /dev/null
        python3 -c "import json, sys; sys.exit(json.load(open('$work/out'))['transition'] is not None)" \
            2>/dev/null && return 0
        sleep 0.05; n=$((n - 1))
    done
    return 1
}
# save_error STATUS WANT: POST /calibrate/save fails naming the
# measurement folder and the errno text WANT: at once with the JSON error
# STATUS, or (STATUS 202) in GET /calibrate's last_error once the engine
# ran the queued save.
save_error() {
    s=$(adm POST /calibrate/save '{}')
    if [ "$s" = 202 ]; then
        settle || return 1
        msg=$(python3 -c "import json; print(json.load(open('$work/out'))['last_error'] or '')")
    else
        msg=$(python3 -c "
import json; j = json.load(open('$work/out'))
assert j['error']['status'] == $s, j
print(j['error']['message'])" 2>/dev/null)
    fi
    echo "c: save answered $s: $msg"
    [ "$s" = "$1" ] || return 1
    case $msg in *"$mnt/measure"*"$2"*) return 0 ;; esac
    return 1
}

# ---- c. full and read-only state directory --------------------------------------
lap "c. full, then read-only state directory"
mnt=$work/state_c
mkdir -p "$mnt"
if ! mount -t tmpfs -o size=64k fp8d-faults "$mnt" 2>"$work/mount.err"; then
    echo "SKIP: c: cannot mount a tmpfs here ($(cat "$work/mount.err")); the full and read-only state directory are not tested"
else
    mounted=$mnt
    fp8_config "$mnt" "$work/fp8_c.json"
    check "c: daemon starts with its state directory on a 64 KiB tmpfs" start_daemon_tracked "$work/log_c" \
        --threads 1 --fp8-config "$work/fp8_c.json" --state-dir "$mnt" --api-keys-file "$work/keys"
    ready || { cat "$work/log_c"; finish; }
    check "c: a measured completion" complete_ok
    # Nearly full: one free page, less than the file needs; the save is
    # queued (202) and fails in the write.
    mkdir -p "$mnt/measure"
    dd if=/dev/zero of="$mnt/fill" bs=4k count=$(( $(stat -f -c %a "$mnt") - 1 )) 2>/dev/null
    echo "c: nearly full: $(df -k "$mnt" | tail -n1)"
    check "c: one page left: the queued save fails, last_error names the file and 'No space left on device'" \
        save_error 202 'No space left on device'
    check "c: one page left: the daemon keeps serving (a completion succeeds)" complete_ok
    dd if=/dev/zero of="$mnt/fill2" bs=4k 2>/dev/null
    echo "c: full: $(df -k "$mnt" | tail -n1)"
    check "c: full: save refused at once, 507 naming the folder and 'No space left on device'" \
        save_error 507 'No space left on device'
    check "c: full: the daemon keeps serving (a completion succeeds)" complete_ok
    check "c: no measurement file half-written under its final name" \
        sh -c "! ls '$mnt/measure/' 2>/dev/null | grep -q '^fp8d_hooks_maxabs[a-z_]*\.json$'"
    rm -f "$mnt/fill" "$mnt/fill2"
    mount -o remount,ro "$mnt"
    check "c: read-only: save refused at once, 500 naming the folder and 'Read-only file system'" \
        save_error 500 'Read-only file system'
    check "c: read-only: the daemon keeps serving (a completion succeeds)" complete_ok
    mount -o remount,rw "$mnt"
    s=$(adm POST /calibrate/save '{}')
    settle
    check "c: writable again: the save succeeds ($s, no last_error, the file written)" \
        python3 -c "
import json, os
assert '$s' == '202' and json.load(open('$work/out'))['last_error'] is None
json.load(open('$mnt/measure/fp8d_hooks_maxabs.json'))"
    r=$(http GET /health)
    check "c: /health still 200" [ "$r" = '200 {"status":"ok"}' ]
    kill -TERM "$daemon_pid"
    wait_exit "$daemon_pid" $((100 * mult))
    check "c: SIGTERM exit 0" [ "$exit_code" = 0 ]
    umount "$mnt" && mounted=""
fi

# ---- b. SIGKILL during POST /calibrate/save ---------------------------------------
lap "b. SIGKILL during a measurement save"
state=$work/state_b
meas=$state/measure
mkdir -p "$meas"
fp8_config "$state" "$work/fp8_b.json"
start_b() {   # start_b NAME [FLAGS...]
    l=$1; shift
    start_daemon_tracked "$work/log_b$l" --threads 1 --fp8-config "$work/fp8_b.json" --state-dir "$state" \
        --api-keys-file "$work/keys" "$@" && ready
}
check "b: daemon starts (AUTO, nothing saved: MEASURE)" start_b 0
complete_ok
s=$(adm POST /calibrate/save '{}')
settle
check "b: the first save writes the measurement files" python3 -c "
import json; assert '$s' == '202' and json.load(open('$work/out'))['last_error'] is None
json.load(open('$meas/fp8d_hooks_maxabs.json')); json.load(open('$meas/fp8d_hooks_maxabs_mod_list.json'))"
kill -TERM "$daemon_pid"
wait_exit "$daemon_pid" $((100 * mult))
(cd "$meas" && sha256sum fp8d_hooks_maxabs.json fp8d_hooks_maxabs_mod_list.json) > "$work/sums"
# killer.py PORT PID DIR MODE ARG: POST /calibrate/save, then SIGKILL the
# daemon ARG microseconds after the 202 (MODE delay), or as soon as a
# temporary file shows up in DIR, that is in the middle of the write
# (MODE watch; ARG is the longest wait in microseconds).  Prints what the
# kill interrupted: "mid-write" when it left a new temporary file behind.
cat > "$work/killer.py" <<'EOF'
import os, signal, socket, sys, time
port, pid, d, mode, arg = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
s = socket.create_connection(('127.0.0.1', port))
s.sendall(b'POST /calibrate/save HTTP/1.1\r\nHost: x\r\nX-Api-Key: sk-adm\r\n'
          b'Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}')
before = {f for f in os.listdir(d) if '.tmp' in f}
head = s.recv(4096)
t_end = time.monotonic() + arg / 1e6
if mode == 'watch':
    while time.monotonic() < t_end and not {f for f in os.listdir(d) if '.tmp' in f} - before:
        pass
else:
    while time.monotonic() < t_end:
        pass
os.kill(pid, signal.SIGKILL)
tmp = {f for f in os.listdir(d) if '.tmp' in f} - before
print(head.split(b'\r\n')[0].decode(), 'mid-write' if tmp else 'outside-write')
EOF
# First a crash in the middle of the write on any file system: with its
# file-size limit (RLIMIT_FSIZE) under the measurement file's size, the
# daemon writes part of the temporary file and SIGXFSZ ends it.  The limit
# leaves its log file (a file too) room for the few lines still to come.
check "b: daemon starts for a crash by file-size limit" start_b xfsz
full=$(stat -c %s "$meas/fp8d_hooks_maxabs.json")
lim=$(( $(stat -c %s "$work/log_bxfsz") + 1024 ))
prlimit --pid "$daemon_pid" --fsize="$lim" --core=0
s=$(adm POST /calibrate/save '{}')
wait_exit "$daemon_pid" $((100 * mult))
check "b: save sent (HTTP $s), then SIGXFSZ ended the daemon in the write (status $exit_code)" \
    [ "$exit_code" = 153 ]
check "b: it left a partial temporary file ($lim of $full bytes, not JSON)" python3 -c "
import glob, json, os
t = glob.glob('$meas/*.tmp*')
assert $lim < $full and len(t) == 1 and os.path.getsize(t[0]) == $lim, \
    [(f, os.path.getsize(f)) for f in t]
try:
    json.load(open(t[0]))
except ValueError:
    pass
else:
    raise SystemExit('a complete file')"
check "b: the files under their final names are the ones saved before" \
    sh -c "cd '$meas' && sha256sum -c --quiet '$work/sums'"
rounds=${FP8D_FAULTS_KILL_ROUNDS:-8}
i=0; mid=0; bad=0
while [ "$i" -lt "$rounds" ]; do
    i=$((i + 1))
    if ! start_b "$i"; then bad=$((bad + 1)); echo "b: round $i: the daemon did not start"; break; fi
    adm GET /calibrate > /dev/null
    grep -q '"mode":"quantize"' "$work/out" ||
        { bad=$((bad + 1)); echo "b: round $i: the AUTO start did not quantize: $(cat "$work/out")"; }
    # Odd rounds kill when the temporary file appears; even rounds after a
    # delay stepping through 0..~50 ms, around and past the write.
    if [ $((i % 2)) = 1 ]; then
        how="watch 2000000"
    else
        how="delay $(( (i / 2 - 1) * 50000 / (rounds / 2) ))"
    fi
    res=$(python3 "$work/killer.py" "$port" "$daemon_pid" "$meas" $how)
    wait "$daemon_pid" 2>/dev/null
    case $res in *mid-write*) mid=$((mid + 1)) ;; esac
    echo "b: round $i ($how us): $res"
    (cd "$meas" && sha256sum -c --quiet "$work/sums") || { bad=$((bad + 1)); echo "b: round $i: files changed"; }
    python3 -c "
import glob, json
for f in glob.glob('$meas/fp8d_hooks_maxabs*.json'):
    json.load(open(f))" || { bad=$((bad + 1)); echo "b: round $i: a file under its final name does not parse"; }
done
echo "b: $i rounds of SIGKILL, $mid in the middle of a write"
check "b: after every SIGKILL the files under their final names parse and hold the same bytes" \
    [ "$bad" = 0 ]
check "b: every restart (AUTO) quantized from the saved file" [ "$bad" = 0 ]
# With fsync the write lasts milliseconds and the watch rounds land in it;
# on tmpfs it lasts microseconds, which polling from a script may miss
# (the SIGXFSZ round above covers the middle of a write there).
if [ "$(stat -f -c %T "$meas")" = tmpfs ]; then
    echo "b: state directory on tmpfs: SIGKILL mid-write not required"
else
    check "b: at least one SIGKILL landed in the middle of a write ($mid of $i)" [ "$mid" -ge 1 ]
fi
# The kills orphan temporary files (nothing removes them): they must not
# confuse the next start.
echo "b: temporary files the kills left behind: $(ls "$meas" | grep -c '\.tmp')"
check "b: the next start reads the file" start_b last
s=$(adm POST /calibrate/load '{}')
settle
check "b: and /calibrate/load reads it: quantize, no error" python3 -c "
import json; j = json.load(open('$work/out'))
assert '$s' == '202' and j['mode'] == 'quantize' and j['last_error'] is None, j"
check "b: a completion after the load" complete_ok
kill -TERM "$daemon_pid"
wait_exit "$daemon_pid" $((100 * mult))
check "b: SIGTERM exit 0" [ "$exit_code" = 0 ]

# ---- d. model files changed under the daemon, then SIGHUP ------------------------
lap "d. model files changed under the daemon, then SIGHUP"
md=$work/model_d
cp -r "$model" "$md"
orig=$model/model.safetensors
size=$(stat -c %s "$orig")
text() { python3 -c "import json; print(repr(json.load(open('$work/cmpl'))['choices'][0]['text']))"; }
count_for() {   # count_for FILE PATTERN N: wait until PATTERN is on N lines of FILE
    n=$((100 * mult))
    while [ "$n" -gt 0 ] && [ "$(grep -c "$2" "$1")" -lt "$3" ]; do
        sleep 0.1; n=$((n - 1))
    done
    [ "$n" -gt 0 ]
}
failed_reload='reload: loading model .* failed, keeping the running model: .*model.safetensors'
bundled=$model
model=$md
check "d: daemon starts on a copy of the model" start_daemon_tracked "$work/log_d" --threads 1
model=$bundled
ready || { cat "$work/log_d"; finish; }
complete_ok
t0=$(text)
echo "d: reference answer: $t0"

# (i) a truncated copy renamed over model.safetensors
head -c $((size / 2)) "$orig" > "$md/.half"
mv "$md/.half" "$md/model.safetensors"
kill -HUP "$daemon_pid"
check "d(i): the reload of the truncated file is refused and logged" \
    count_for "$work/log_d" "$failed_reload" 1
grep "$failed_reload" "$work/log_d" | tail -n1
same_answer() { complete_ok && [ "$(text)" = "$t0" ]; }
check "d(i): the old model keeps serving the same answer" same_answer
kill -HUP "$daemon_pid"
check "d(i): SIGHUP with the files unchanged since: no new attempt" \
    count_for "$work/log_d" 'files of model .* are unchanged since the last load' 1

# The good file back (renamed over) while 32 connections keep it busy: the
# new model takes over with no request failing, and the counters go on.
snap
g0=$(metric fp8d:generation_tokens_total)
"$loadgen" --url "$url" --conns 32 --duration 4 --max-tokens 8:64 --seed 9 > "$work/lg_d" 2>&1 &
lg_pid=$!
sleep 1
cp "$orig" "$md/.good"
mv "$md/.good" "$md/model.safetensors"
kill -HUP "$daemon_pid"
check "d: the restored file loads beside the running model and takes over" \
    count_for "$work/log_d" 'reload: model .* loaded: new requests go to it' 1
wait "$lg_pid"
rc=$?
grep -E '^loadgen: (total|errors|completion|chat_stream|health) ' "$work/lg_d"
check "d: no request failed across the swap (under load)" [ "$rc" = 0 ]
check "d: after the swap nothing runs or waits" settled
check "d: counters did not go back across the swap" \
    [ "$(metric fp8d:generation_tokens_total)" -ge "$g0" ]
check "d: the new model gives the same answer" same_answer

# (ii) the file the running model was loaded from, truncated in place
truncate -s $((size / 2)) "$md/model.safetensors"
kill -HUP "$daemon_pid"
check "d(ii): the reload of the file truncated in place is refused and logged" \
    count_for "$work/log_d" "$failed_reload" 2
r=$(http GET /health)
check "d(ii): /health still 200" [ "$r" = '200 {"status":"ok"}' ]
# The engine must not read weights from the mapping after the load (a
# truncated mapping is SIGBUS): a completion answers, or fails with a JSON
# error, and the daemon lives on.
ok_n=0; err_n=0; i=0
while [ "$i" -lt 5 ]; do
    i=$((i + 1))
    if same_answer; then
        ok_n=$((ok_n + 1))
    elif python3 -c "import json; assert json.load(open('$work/cmpl'))['error']['message']" 2>/dev/null; then
        err_n=$((err_n + 1))
    fi
done
echo "d(ii): 5 completions after the truncation: $ok_n with the same answer, $err_n clear JSON errors"
check "d(ii): completions answer the same text or a JSON error" [ $((ok_n + err_n)) = 5 ]
check "d(ii): the daemon is alive (no SIGBUS)" kill -0 "$daemon_pid"
kill -TERM "$daemon_pid"
wait_exit "$daemon_pid" $((100 * mult))
check "d: SIGTERM exit 0" [ "$exit_code" = 0 ]
lap "done"
finish
