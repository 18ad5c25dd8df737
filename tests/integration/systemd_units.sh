#!/bin/sh
# systemd_units.sh: 'systemd-analyze verify' on the units make generated,
# with their paths rewritten to this build's binary (verify checks that
# ExecStart= exists).  The socket and template are verified too.  The
# services' 'systemd-analyze security' exposure must not rise above the
# level the hardening reached, and fp8d must work under the settings that
# could break it: MemoryDenyWriteExecute=yes (no code generated at run
# time) and ProcSubset=pid / ProtectProc=invisible (no /proc file read).
. "$(dirname "$0")/lib.sh"

command -v systemd-analyze >/dev/null 2>&1 || skip "systemd-analyze not found"
[ -f "$top_build/systemd/fp8d.service" ] || { bad "systemd/fp8d.service not generated"; finish; }

mkdir "$work/units"
for u in fp8d.service fp8d@.service; do
    sed -e "s|^\(Exec[A-Za-z]*=\)[^ ]*/fp8d |\1$FP8D |" "$top_build/systemd/$u" \
        > "$work/units/$u"
done
cp "$top_src/systemd/fp8d.socket" "$work/units/"
cp "$work/units/fp8d@.service" "$work/units/fp8d@test.service"

check "units name the installed binary" grep -q '^ExecStart=/.*/fp8d --config /.*/fp8d/fp8d.json$' \
    "$top_build/systemd/fp8d.service"
check "no @placeholder@ left" sh -c "! grep -n '@[a-z]*@' '$top_build/systemd/fp8d.service' '$top_build/systemd/fp8d@.service'"
check "Type=notify with a watchdog" sh -c "grep -q '^Type=notify$' '$work/units/fp8d.service' && grep -q '^WatchdogSec=' '$work/units/fp8d.service'"
check "MemoryDenyWriteExecute=yes" grep -q '^MemoryDenyWriteExecute=yes$' "$work/units/fp8d.service"

# verify loads units from the paths given; SYSTEMD_UNIT_PATH lets the
# socket find its service.
for u in fp8d.service fp8d.socket fp8d@test.service; do
    if SYSTEMD_UNIT_PATH="$work/units:" systemd-analyze verify --man=no "$work/units/$u" \
        > "$work/verify" 2>&1 && ! grep -q "$u" "$work/verify"; then
        ok "systemd-analyze verify $u"
    else
        bad "systemd-analyze verify $u: $(cat "$work/verify")"
    fi
done

# The exposure level of the services with systemd 252 (Debian 12), reached
# by the hardening of the units; another systemd weighs its checks
# differently, so there the level is printed only.  Offline mode reads the
# unit file alone: the same file gives the same number.
max_exposure=1.4
sd_version=$(systemd-analyze --version | sed -n 's/^systemd \([0-9]*\).*/\1/p')
for u in fp8d.service fp8d@test.service; do
    level=""
    if SYSTEMD_UNIT_PATH="$work/units:" systemd-analyze security --offline=yes --no-pager \
        "$work/units/$u" > "$work/security" 2>&1; then
        level=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' "$work/security")
    fi
    echo "systemd-analyze security --offline=yes $u: ${level:-?} (systemd $sd_version)"
    if [ -z "$level" ]; then
        bad "systemd-analyze security $u: $(tail -n 3 "$work/security")"
    elif [ "$sd_version" = 252 ]; then
        check "$u exposure $level <= $max_exposure" \
            awk -v l="$level" -v m="$max_exposure" 'BEGIN { exit !(l + 0 <= m + 0) }'
    else
        echo "$u: the limit $max_exposure is for systemd 252 only"
    fi
done

# MemoryDenyWriteExecute=yes: oneDNN JIT-compiles its x86 kernels, which
# that setting forbids; fp8d must call none of it.  (Undefined symbols,
# not NEEDED entries: the sanitizer build links libdnnl without
# --as-needed although nothing uses it.)
if command -v nm >/dev/null 2>&1; then
    check "fp8d calls no oneDNN function (MemoryDenyWriteExecute=yes would break its JIT)" \
        sh -c "nm -D -u '$FP8D' > '$work/undef' && ! grep -q ' dnnl_' '$work/undef'"
fi

# fp8d as the unit confines it, as far as a test can: under the kernel's
# MDWE (prctl PR_SET_MDWE, Linux 6.3+: what systemd 253+ applies for
# MemoryDenyWriteExecute=yes; 252 uses a seccomp filter with the same
# rule) and, where a private mount namespace can be made, with /proc
# mounted as ProcSubset=pid and ProtectProc=invisible mount it.  One
# completion, one streamed chat, MEASURE -> QUANTIZE -> save -> OFF.
command -v python3 >/dev/null 2>&1 || { echo "no python3: confined run skipped"; finish; }
cat > "$work/mdwe.py" <<'EOF'
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:      # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.exit("PR_SET_MDWE: " + os.strerror(ctypes.get_errno()))
os.execv(sys.argv[1], sys.argv[1:])
EOF
if ! python3 "$work/mdwe.py" /bin/true 2>/dev/null; then
    echo "kernel $(uname -r) has no PR_SET_MDWE: confined run skipped"
    finish
fi
pre=""
procmode="the usual /proc (no private mount namespace here)"
if unshare -m sh -c 'mount -t proc -o subset=pid,hidepid=invisible proc /proc' 2>/dev/null; then
    pre="unshare -m sh -c 'mount -t proc -o subset=pid,hidepid=invisible proc /proc && exec \"\$@\"' sh"
    procmode="/proc mounted subset=pid,hidepid=invisible"
fi
cat > "$work/confined" <<EOF
#!/bin/sh
exec $pre python3 '$work/mdwe.py' '$FP8D' "\$@"
EOF
chmod +x "$work/confined"
FP8D=$work/confined
printf 'sk-adm admin\n' > "$work/keys"
check "fp8d starts under MDWE, $procmode" start_daemon "$work/log" --threads 2 \
    --state-dir "$work/state" --api-keys-file "$work/keys"
[ -n "$port" ] || { cat "$work/log"; finish; }
url="http://127.0.0.1:$port"
n=100
while [ "$n" -gt 0 ] && [ "$(curl -s -m 5 "$url/health")" != '{"status":"ok"}' ]; do
    sleep 0.1; n=$((n - 1))
done
post() {   # post PATH BODY: the status
    curl -s -m 60 -o "$work/out" -w '%{http_code}' -H 'X-Api-Key: sk-adm' -d "$2" "$url$1"
}
settle() { calib_settle sk-adm; }
check "confined: completion 200" [ "$(post /v1/completions '{"prompt":"ROMEO:","max_tokens":4}')" = 200 ]
check "confined: streamed chat ends with [DONE]" sh -c "curl -sN -m 60 -H 'X-Api-Key: sk-adm' \
    -d '{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":4,\"stream\":true}' \
    '$url/v1/chat/completions' | grep -q '^data: \[DONE\]'"
check "confined: MEASURE 202" [ "$(post /calibrate '{"mode":"measure"}')" = 202 ]
check "confined: MEASURE done" settle
check "confined: completion in MEASURE 200" \
    [ "$(post /v1/completions '{"prompt":"JULIET:","max_tokens":4}')" = 200 ]
check "confined: QUANTIZE 202" [ "$(post /calibrate '{"mode":"quantize"}')" = 202 ]
check "confined: QUANTIZE done" settle
check "confined: quantized completion 200" \
    [ "$(post /v1/completions '{"prompt":"ROMEO:","max_tokens":4}')" = 200 ]
check "confined: save with an export 202" [ "$(post /calibrate/save '{"export":"c"}')" = 202 ]
check "confined: save done" settle
check "confined: OFF 202" [ "$(post /calibrate '{"mode":"off"}')" = 202 ]
check "confined: OFF done" settle
check "confined: no calibration error, export written" sh -c "
grep -q '\"mode\":\"off\".*\"last_error\":null' '$work/cal' &&
test -f '$work/state/exports/c/model.safetensors'"
kill -TERM "$daemon_pid"
wait_exit "$daemon_pid"
check "confined: SIGTERM exit 0" [ "$exit_code" = 0 ]
finish
