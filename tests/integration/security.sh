#!/bin/sh
# security.sh: the daemon's security contract on a real daemon.
#  1. keys: every route of the table in api/api_route.c (read from the
#     source, not listed here) against no key, a wrong key and each scope;
#     the open routes; /calibrate* admin only; Bearer parsing edge cases;
#     bad key files refused at start.
#  2. /calibrate/save cannot write outside the state directory: names
#     with "..", "/", NUL, odd encodings; symbolic links below the state
#     directory (folder, export folder, final file, measurement folder).
#  3. limits: Content-Length over max_body_bytes answered before any body,
#     a chunked body passing it cut off with 413 and a close, huge and
#     numerous headers refused, the daemon serving on.
#  4. CORS: preflight from a listed origin, nothing for others, nothing
#     when unconfigured, Vary: Origin whenever the answer depends on it.
. "$(dirname "$0")/lib.sh"

command -v python3 >/dev/null 2>&1 || skip "python3 not found"

state=$work/state
outside=$work/outside
mkdir -p "$state" "$outside/dir"
printf 'original\n' > "$outside/victim.txt"
printf '# test keys\nsk-inf inference\nsk-met metrics\nsk-adm admin\n' > "$work/keys"

wait_health() {   # until /health answers 200 (10 s at most)
    n=100
    while [ "$n" -gt 0 ] && [ "$(http GET /health)" != '200 {"status":"ok"}' ]; do
        sleep 0.1; n=$((n - 1))
    done
    [ "$n" -gt 0 ]
}
# The checks written in Python print "ok: ..." or "FAIL: ..." lines; they
# are counted here like the others.
tally() {
    while IFS= read -r line; do
        case $line in
            ok:*) ok "${line#ok: }" ;;
            FAIL:*) bad "${line#FAIL: }" ;;
            *) echo "$line" ;;
        esac
    done
}
cat > "$work/sec.py" <<'EOF'
import http.client, json, os, re, socket, sys, time

port = int(os.environ["PORT"])

def say(good, what):
    print(("ok: " if good else "FAIL: ") + what, flush=True)

def req(method, path, headers=None, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, data

def routes(src):
    """The route table of api/api_route.c: (path, [methods], scope).  The
    scope is a row's last field but one (get_sub follows it); a prefix
    route (path ending in '/') is asked for a path below it."""
    text = open(src).read()
    table = text[text.index("api__routes[] = {"):]
    table = table[:table.index("\n};")]
    rows = re.findall(r'\{\s*"(/[^"]*)",\s*"([^"]*)",[^{}]*?,\s*(\w+),\s*\w+\s*\}', table)
    return [(p + "x" if p.endswith("/") else p, [m.strip() for m in ms.split(",")], sc)
            for p, ms, sc in rows]

def error_shape(data, status, typ):
    try:
        e = json.loads(data)["error"]
        return e["status"] == status and e["type"] == typ and e["message"]
    except Exception:
        return False

def keys(src, labels):
    rt = routes(src)
    n_labels = int(re.search(r"#define API_N_ROUTE_LABELS (\d+)", open(labels).read()).group(1))
    say(len(rt) == n_labels - 1, "route table read from api_route.c: %d routes (%d metric labels "
        "less \"other\")" % (len(rt), n_labels))
    open_paths = sorted(p for p, _, sc in rt if sc == "0")
    say(open_paths == ["/health", "/livez", "/v1/health"],
        "the only routes without a scope are /livez, /health, /v1/health: %s" % open_paths)
    calib = [(p, sc) for p, _, sc in rt if p.startswith("/calibrate")]
    say(len(calib) >= 3 and all(sc == "API_SCOPE_ADMIN" for _, sc in calib),
        "every /calibrate* route is admin only: %s" % calib)
    allowed = {"API_SCOPE_INFERENCE": {"sk-inf", "sk-adm"}, "API_SCOPE_METRICS": {"sk-met", "sk-adm"},
               "SC_ANY": {"sk-inf", "sk-met", "sk-adm"}, "API_SCOPE_ADMIN": {"sk-adm"}}
    for path, methods, sc in rt:
        for m in methods:
            body = "{}" if m == "POST" else None
            res = []
            if sc == "0":
                st, _, _ = req(m, path, body=body)
                say(st == 200, "%s %s without a key: %d" % (m, path, st))
                continue
            for hdr, what in (({}, "no key"), ({"Authorization": "Bearer sk-nope"}, "wrong key"),
                              ({"X-Api-Key": "sk-nope"}, "wrong X-Api-Key")):
                st, h, data = req(m, path, hdr, body)
                good = st == 401 and h.get("www-authenticate") == "Bearer" and \
                    (m == "HEAD" or error_shape(data, 401, "authentication_error"))
                res.append((good, "%s %d" % (what, st)))
            for k in ("sk-inf", "sk-met", "sk-adm"):
                st, h, data = req(m, path, {"Authorization": "Bearer " + k}, body)
                if k in allowed[sc]:
                    good = st not in (401, 403)
                else:
                    good = st == 403 and (m == "HEAD" or error_shape(data, 403, "permission_error"))
                res.append((good, "%s %d" % (k, st)))
            say(all(g for g, _ in res), "%s %s (%s): %s" % (m, path, sc, ", ".join(w for _, w in res)))

def bearer():
    cases = [
        ("authorization: bearer sk-inf", {"authorization": "bearer sk-inf"}, 200),
        ("BEARER in capitals", {"Authorization": "BEARER sk-inf"}, 200),
        ("several spaces after Bearer", {"Authorization": "Bearer    sk-inf"}, 200),
        ("trailing blanks after the key", {"Authorization": "Bearer sk-inf  \t"}, 200),
        ("X-Api-Key with trailing blanks", {"X-Api-Key": "sk-inf  "}, 200),
        ("empty token", {"Authorization": "Bearer "}, 401),
        ("scheme only", {"Authorization": "Bearer"}, 401),
        ("no space after Bearer", {"Authorization": "Bearersk-inf"}, 401),
        ("Basic scheme", {"Authorization": "Basic sk-inf"}, 401),
        ("prefix of a key", {"Authorization": "Bearer sk-in"}, 401),
        ("key plus a character", {"Authorization": "Bearer sk-inf2"}, 401),
        ("key in another case", {"Authorization": "Bearer SK-INF"}, 401),
        ("two keys in one header", {"Authorization": "Bearer sk-inf sk-adm"}, 401),
        ("8 KB token", {"Authorization": "Bearer " + "k" * 8192}, 401),
        ("wrong Bearer wins over a good X-Api-Key", {"Authorization": "Bearer sk-nope",
                                                     "X-Api-Key": "sk-inf"}, 401),
    ]
    for what, hdr, want in cases:
        st, _, data = req("GET", "/v1/models", hdr)
        say(st == want and (st == 200 or error_shape(data, 401, "authentication_error")),
            "Bearer parsing, %s: %d (want %d)" % (what, st, want))
    st, _, _ = req("GET", "/calibrate", {"Authorization": "Bearer sk-inf", "X-Api-Key": "sk-adm"})
    say(st == 403, "an inference Bearer key and an admin X-Api-Key: the Bearer one counts (%d)" % st)
    st, _, data = req("GET", "/v1/models", {"Authorization": "Bearer " + "k" * 100000})
    say(st in (400, 413, 431), "100 KB token: refused by the header limit (%d)" % st)
    st, _, _ = req("GET", "/v1/models", {"X-Api-Key": "sk-inf"})
    say(st == 200, "serving after the oversized header (%d)" % st)

def snapshot(top):
    out = []
    for d, dirs, files in os.walk(top):
        for n in sorted(dirs + files):
            p = os.path.join(d, n)
            st = os.lstat(p)
            data = open(p, "rb").read() if os.path.isfile(p) and not os.path.islink(p) else b""
            out.append((p, st.st_mtime_ns, st.st_size, data))
    return sorted(out)

def paths(state, outside):
    before = snapshot(outside)
    adm = {"X-Api-Key": "sk-adm", "Content-Type": "application/json"}
    def save(body, want, needle, what, raw=False):
        st, _, data = req("POST", "/calibrate/save", adm, body if raw else json.dumps(body))
        try:
            msg = json.loads(data)["error"]["message"]
        except Exception:
            msg = ""
        good = st == want and needle in msg and snapshot(outside) == before
        say(good, "save %s: %d naming \"%s\", nothing changed outside (%s)" % (what, st, needle, msg[:90]))
    save({"export": "../outside/x"}, 400, "export", "export \"../outside/x\"")
    save({"export": ".."}, 400, "export", "export \"..\"")
    save({"export": "/tmp/abs"}, 400, "export", "an absolute export path")
    save({"export": "a/../../x"}, 400, "export", "export with / and ..")
    save({"export": "..%2f..%2fx"}, 400, "export", "percent-encoded ../")
    save(b'{"export": "\\u002e\\u002e"}', 400, "export", "\\u002e\\u002e (\"..\" in escapes)", raw=True)
    save(b'{"export": "ok\\u0000/../../x"}', 400, "export", "NUL byte in the name", raw=True)
    save({"export": "a\u2215b"}, 400, "export", "U+2215 division slash")
    save({"export": "x" * 65}, 400, "export", "65-character name")
    save({"export": 7}, 400, "export", "number as name")
    save(b'{"export": "\xc0\xaf\xc0\xae"}', 400, "not valid JSON", "overlong UTF-8 \"/.\" (body refused)", raw=True)
    # Links planted below the state directory.
    exports = os.path.join(state, "exports")
    os.symlink(outside, exports)
    save({"export": "e1"}, 400, "symbolic link", "exports/ a link to a folder outside")
    os.remove(exports)
    os.makedirs(exports)
    os.symlink(os.path.join(outside, "dir"), os.path.join(exports, "e2"))
    save({"export": "e2"}, 400, "symbolic link", "exports/e2 a link to a folder outside")
    os.makedirs(os.path.join(exports, "e3"))
    os.symlink(os.path.join(outside, "victim.txt"), os.path.join(exports, "e3", "config.json"))
    save({"export": "e3"}, 400, "symbolic link", "exports/e3/config.json a link to a file outside")
    with open(os.path.join(exports, "e4"), "w") as f:
        f.write("a file")
    save({"export": "e4"}, 400, "export", "exports/e4 a plain file")
    measure = os.path.join(state, "measure")
    os.rename(measure, measure + ".real")
    os.symlink(outside, measure)
    save({}, 500, "symbolic link", "measure/ a link to a folder outside")
    os.remove(measure)
    os.rename(measure + ".real", measure)
    victim = os.path.join(measure, "fp8d_hooks_maxabs.json")
    os.rename(victim, victim + ".real")
    os.symlink(os.path.join(outside, "victim.txt"), victim)
    save({}, 500, "symbolic link", "measure/fp8d_hooks_maxabs.json a link to a file outside")
    os.remove(victim)
    os.rename(victim + ".real", victim)

def raw(data, timeout=10):
    """Sends data, reads until the server closes (or timeout); the answer."""
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(timeout)
    s.sendall(data)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                return out, "closed"
            out += b
    except socket.timeout:
        return out, "timeout"
    except ConnectionResetError:
        return out, "closed"
    finally:
        s.close()

def rss(pid, key="VmRSS"):
    for line in open("/proc/%d/status" % pid):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0

def limits(pid, limit):
    out, how = raw(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Content-Length: 1000000000\r\n\r\n")
    say(out.startswith(b"HTTP/1.1 413") and b'"code":"request_too_large"' in out and how == "closed",
        "Content-Length 1e9, no body sent: 413 request_too_large before any body, then the "
        "connection closed (%s)" % out[:12])
    # A chunked body that never ends: the answer must come while it is sent.
    pid, limit = int(pid), int(limit)
    r0 = rss(pid)
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (65536, b"a" * 65536)
    sent, answer, how = 0, b"", "stayed open: all 64 MiB sent"
    s.settimeout(10)
    try:
        while sent < 64 << 20:
            s.sendall(chunk)
            sent += 65536
    except (BrokenPipeError, ConnectionResetError):
        how = "closed while sending"
    except socket.timeout:
        how = "stalled (no longer read) while sending"
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            answer += b
    except OSError:
        pass
    s.close()
    r1 = rss(pid)
    say(answer.startswith(b"HTTP/1.1 413") and b'"code":"request_too_large"' in answer and
        how == "closed while sending",
        "endless chunked body: 413 and the connection %s after %d KiB (limit %d KiB)"
        % (how, sent >> 10, limit >> 10))
    say(r1 - r0 < 16 << 20, "RSS grew %d KiB while the chunked body was sent (< 16 MiB)"
        % ((r1 - r0) >> 10))
    big = b"X-Big: " + b"a" * 200000 + b"\r\n"
    out, how = raw(b"GET /livez HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n")
    say(re.match(rb"HTTP/1.1 (431|400|413)", out) is not None,
        "a 200 KB header line: refused (%s)" % out[:32])
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(5000))
    out, how = raw(b"GET /livez HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    say(re.match(rb"HTTP/1.1 (431|400|413)", out) is not None,
        "5000 headers: refused (%s)" % out[:32])
    st, _, _ = req("GET", "/livez")
    say(st == 200, "serving after the oversized requests (%d)" % st)

def cors(configured):
    pre = {"Origin": "http://ok.example", "Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "authorization, content-type"}
    st, h, _ = req("OPTIONS", "/v1/completions", pre)
    acx = {k: v for k, v in h.items() if k.startswith("access-control-")}
    if not configured:
        say(not acx and "origin" not in h.get("vary", "").lower(),
            "CORS off: a preflight gets no Access-Control-* header and no Vary: Origin (%d %s)"
            % (st, acx))
        st, h, _ = req("GET", "/livez", {"Origin": "http://ok.example"})
        say(not any(k.startswith("access-control-") for k in h),
            "CORS off: a GET with Origin gets no Access-Control-* header")
        return
    say(st == 204 and h.get("access-control-allow-origin") == "http://ok.example" and
        "POST" in h.get("access-control-allow-methods", "") and
        "authorization" in h.get("access-control-allow-headers", "").lower() and
        "content-type" in h.get("access-control-allow-headers", "").lower() and
        h.get("vary") == "Origin" and "access-control-allow-credentials" not in h,
        "preflight from a listed origin: 204 with Allow-Origin, -Methods, -Headers, Vary: Origin, "
        "no credentials (%s)" % acx)
    st, h, _ = req("OPTIONS", "/calibrate", dict(pre, Origin="http://two.example"))
    say(st == 204 and h.get("access-control-allow-origin") == "http://two.example" and
        h.get("access-control-allow-methods") == "GET, HEAD, POST",
        "preflight from the second listed origin to /calibrate: its methods (%s)"
        % h.get("access-control-allow-methods"))
    for origin in ("http://evil.example", "http://ok.example.evil.example", "http://ok.exampl",
                   "https://ok.example", "null", "*"):
        st, h, _ = req("OPTIONS", "/v1/completions", dict(pre, Origin=origin))
        acx = {k: v for k, v in h.items() if k.startswith("access-control-")}
        say(st != 204 and not acx and h.get("vary") == "Origin",
            "preflight from %s: %d, no Access-Control-* header, Vary: Origin" % (origin, st))
    st, h, _ = req("GET", "/v1/models", {"Origin": "http://ok.example", "X-Api-Key": "sk-inf"})
    say(st == 200 and h.get("access-control-allow-origin") == "http://ok.example" and
        h.get("vary") == "Origin", "GET from a listed origin: Allow-Origin and Vary: Origin")
    st, h, _ = req("GET", "/v1/models", {"Origin": "http://ok.example"})
    say(st == 401 and h.get("access-control-allow-origin") == "http://ok.example",
        "401 to a listed origin carries Allow-Origin (the page can read the error)")
    st, h, _ = req("GET", "/v1/models", {"Origin": "http://evil.example", "X-Api-Key": "sk-inf"})
    say(st == 200 and "access-control-allow-origin" not in h and h.get("vary") == "Origin",
        "GET from another origin: no Allow-Origin, Vary: Origin")
    st, h, _ = req("GET", "/v1/models", {"X-Api-Key": "sk-inf"})
    say(h.get("vary") == "Origin" and "access-control-allow-origin" not in h,
        "GET without Origin, CORS on: Vary: Origin, no Allow-Origin")

globals()[sys.argv[1]](*sys.argv[2:])
EOF
sec() {   # sec FUNCTION ARGS...: one group of the Python checks
    PORT=$port python3 "$work/sec.py" "$@" > "$work/sec.out" 2>&1
    rc=$?
    tally < "$work/sec.out"
    [ "$rc" -eq 0 ] || bad "sec.py $1 stopped with status $rc"
}

# ---- daemon A: keys, CORS, state directory -------------------------------
check "daemon A starts with keys, CORS origins and a state directory" start_daemon "$work/logA" \
    --threads 1 --api-keys-file "$work/keys" --state-dir "$state" \
    --cors-origins "http://ok.example , http://two.example"
[ -n "$port" ] || { cat "$work/logA"; finish; }
check "A serves" wait_health
sec keys "$top_src/api/api_route.c" "$top_src/api/api-int.h"
sec bearer
sec cors 1

# Something measured and quantized, so that /calibrate/save gets as far as
# its paths; a dataset-only measurement saves a file that loads back.
adm() {   # adm PATH BODY: status; body in $work/out
    curl -s -m 20 -o "$work/out" -w '%{http_code}' -H 'X-Api-Key: sk-adm' -d "$2" "$url$1"
}
settle() { calib_settle sk-adm; }
url="http://127.0.0.1:$port"
check "measure on a dataset: 202" [ "$(adm /calibrate '{"mode":"measure","dataset":["ROMEO: What say you?","JULIET: O Romeo!"]}')" = 202 ]
check "measure finishes" settle
check "quantize: 202" [ "$(adm /calibrate '{"mode":"quantize"}')" = 202 ]
check "quantize finishes" settle
check "quantize: no error" grep -q '"mode":"quantize".*"last_error":null' "$work/cal"
check "save without export: 202" [ "$(adm /calibrate/save '{}')" = 202 ]
settle
check "measurements saved under the state directory" sh -c "ls '$state'/measure/fp8d_hooks_maxabs*.json >/dev/null"
sec paths "$state" "$outside"
check "a plain export still works: 202" [ "$(adm /calibrate/save '{"export":"good"}')" = 202 ]
settle
check "the export landed under state/exports/good, no error" sh -c "
test -f '$state/exports/good/config.json' && test -f '$state/exports/good/model.safetensors' &&
grep -q '\"last_error\":null' '$work/cal'"
check "A still serves after the refused saves" [ "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$url/livez")" = 200 ]
kill -TERM "$daemon_pid"
wait_exit "$daemon_pid"
check "A: SIGTERM exit 0" [ "$exit_code" = 0 ]

# ---- daemon B: no keys, no CORS, a small body limit ----------------------
check "daemon B starts without keys or CORS, max_body_bytes 65536" start_daemon "$work/logB" \
    --threads 1 --max-body-bytes 65536 --state-dir "$state"
[ -n "$port" ] || { cat "$work/logB"; finish; }
check "B serves" wait_health
s=$(curl -s -m 5 -o "$work/out" -w '%{http_code}' "http://127.0.0.1:$port/calibrate")
check "no keys configured: /calibrate refused with 403" sh -c "[ '$s' = 403 ] && grep -q permission_error '$work/out'"
sec cors ""
sec limits "$daemon_pid" 65536
check "the 413 mid-body is logged as 413" wait_for "$work/logB" 'POST /v1/completions status=413.*terminated=early' 20
kill -TERM "$daemon_pid"
wait_exit "$daemon_pid"
check "B: SIGTERM exit 0" [ "$exit_code" = 0 ]

# ---- key files refused at start -------------------------------------------
# (timeout: a daemon that wrongly accepts the file would serve until killed)
check "bad scope in the key file: refused at start naming the line" sh -c "
printf 'sk-x wizard\n' > '$work/badkeys'
timeout 60 '$FP8D' --port 0 --model '$model' --api-keys-file '$work/badkeys' > '$work/o1' 2>&1
[ \$? -eq 1 ] && grep -q 'line 1: unknown scope \"wizard\"' '$work/o1'"
check "a key line longer than 1022 characters: refused at start naming the line" sh -c "
{ echo '# long'; head -c 1500 /dev/zero | tr '\0' k; echo ' admin'; } > '$work/longkeys'
timeout 60 '$FP8D' --port 0 --model '$model' --api-keys-file '$work/longkeys' > '$work/o2' 2>&1
[ \$? -eq 1 ] && grep -q 'line 2: longer than 1022 characters' '$work/o2'"
finish
