#!/bin/sh
# systemd_units.sh: 'systemd-analyze verify' on the units make generated,
# with their paths rewritten to this build's binary (verify checks that
# ExecStart= exists).  The socket and template are verified too.
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
check "MemoryDenyWriteExecute stays off" grep -q '^MemoryDenyWriteExecute=no$' "$work/units/fp8d.service"

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
finish
