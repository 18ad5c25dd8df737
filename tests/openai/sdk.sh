#!/bin/sh
# sdk.sh: runs tests/openai/sdk.mjs (the official OpenAI Node SDK) against a
# real daemon.  npm installs the "openai" package once into a cache
# directory outside the source and build trees ($FP8D_SDK_DIR, default
# $TMPDIR/fp8d-openai-sdk-UID), where a copy of sdk.mjs runs so that its
# import resolves.  Without node/npm or the registry the test is skipped,
# saying why.
. "$(dirname "$0")/../integration/lib.sh"

command -v node >/dev/null 2>&1 || skip "node not found (apt-get install nodejs npm)"
command -v npm >/dev/null 2>&1 || skip "npm not found (apt-get install npm)"
# Pinned to the 4.x line: it supports Node 18 (Debian 12's nodejs), while
# later majors ask for newer Node releases.
sdk_version=4
sdk=${FP8D_SDK_DIR:-${TMPDIR:-/tmp}/fp8d-openai-sdk$sdk_version-$(id -u)}
mkdir -p "$sdk" || skip "cannot create $sdk"
if [ ! -f "$sdk/node_modules/openai/package.json" ]; then
    [ -f "$sdk/package.json" ] || echo '{"private": true}' > "$sdk/package.json"
    (cd "$sdk" && timeout 300 npm install --no-audit --no-fund --silent "openai@$sdk_version" >/dev/null 2>&1) ||
        skip "npm install openai failed (no registry access?)"
fi
cp "$top_src/tests/openai/sdk.mjs" "$sdk/run.mjs"

check "daemon starts" start_daemon "$work/log" --threads 1
[ -n "$port" ] || { cat "$work/log"; finish; }
n=50
while [ "$n" -gt 0 ] && [ "$(http GET /readyz)" != '200 {"status":"ready"}' ]; do
    sleep 0.1; n=$((n - 1))
done
FP8D_URL="http://127.0.0.1:$port" timeout 60 node "$sdk/run.mjs" > "$work/sdk.out" 2>&1
rc=$?
cat "$work/sdk.out"
passed=$((passed + $(grep -c '^ok:' "$work/sdk.out")))
failed=$((failed + $(grep -c '^FAIL:' "$work/sdk.out")))
check "node exits 0" [ "$rc" = 0 ]
kill -TERM "$daemon_pid"
wait_exit "$daemon_pid"
check "SIGTERM: exit 0" [ "$exit_code" = 0 ]
finish
