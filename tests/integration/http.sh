#!/bin/sh
# http.sh: the real daemon over loopback with curl: health, livez, readyz,
# metrics, 404/405/413 as OpenAI error objects, request ids, and the daemon
# still serving after each bad request.
. "$(dirname "$0")/lib.sh"

check "daemon starts and logs its port" start_daemon "$work/log" --max-body-bytes 1000
[ -n "$port" ] || { cat "$work/log"; finish; }
check "model loaded (/readyz 200)" wait_ready

r=$(http GET /health)
check "GET /health 200 {\"status\":\"ok\"}" [ "$r" = '200 {"status":"ok"}' ]
r=$(http GET /livez)
check "GET /livez 200" [ "$r" = '200 {"status":"ok"}' ]
r=$(http GET /readyz)
check "GET /readyz 200 ready" [ "$r" = '200 {"status":"ready"}' ]

r=$(http GET /no/such/route)
check "unknown route 404 not_found_error" [ "$r" = '404 {"error":{"message":"no route for GET /no/such/route","type":"not_found_error","code":"not_found","status":404}}' ]
r=$(http POST /health -d '{}')
check "POST /health 405 method_not_allowed" \
    sh -c "echo '$r' | grep -q '^405 .*\"code\":\"method_not_allowed\"'"
allow=$(curl -s -m 5 -X DELETE -D - -o /dev/null "http://127.0.0.1:$port/metrics" | tr -d '\r' | sed -n 's/^Allow: //p')
check "405 carries Allow: GET, HEAD" [ "$allow" = "GET, HEAD" ]

head -c 1001 /dev/zero | tr '\0' 'a' > "$work/big"
r=$(http POST /health --data-binary @"$work/big")
check "1001-byte body over a 1000 limit: 413 request_too_large" \
    sh -c "echo '$r' | grep -q '^413 .*\"code\":\"request_too_large\"'"
r=$(http POST /health -H 'Transfer-Encoding: chunked' --data-binary @"$work/big")
check "chunked body over the limit: 413" sh -c "echo '$r' | grep -q '^413 '"
head -c 1000 "$work/big" > "$work/fits"
r=$(http POST /health --data-binary @"$work/fits")
check "body at the limit is read (405, not 413)" sh -c "echo '$r' | grep -q '^405 '"

r=$(http GET '/%ff%0a')
check "undecodable path: 404 with a JSON body" [ "$r" = '404 {"error":{"message":"no route for GET /??","type":"not_found_error","code":"not_found","status":404}}' ]
check "log line for it stays one line" wait_for "$work/log" 'GET /?? status=404' 20

# Garbage on the wire: MHD answers or closes; the daemon must survive it.
printf 'NOT HTTP AT ALL\r\n\r\n' | curl -s -m 2 "telnet://127.0.0.1:$port" >/dev/null 2>&1
r=$(http GET /health)
check "still serving after malformed requests" [ "$r" = '200 {"status":"ok"}' ]

rid=$(curl -s -m 5 -D - -o /dev/null "http://127.0.0.1:$port/livez" | tr -d '\r' | sed -n 's/^X-Request-Id: //p')
check "X-Request-Id header is a number" sh -c "echo '$rid' | grep -Eq '^[0-9]+$'"
check "log line names the request id" wait_for "$work/log" "req=$rid GET /livez status=200" 20

m=$(curl -s -m 5 "http://127.0.0.1:$port/metrics")
ct=$(curl -s -m 5 -D - -o /dev/null "http://127.0.0.1:$port/metrics" | tr -d '\r' | sed -n 's/^Content-Type: //p')
check "metrics content type 0.0.4" [ "$ct" = "text/plain; version=0.0.4; charset=utf-8" ]
check "metrics: build info" sh -c "echo '$m' | grep -q '^fp8d:build_info{version=\"[0-9.]*\"} 1$'"
check "metrics: uptime gauge" sh -c "echo '$m' | grep -Eq '^fp8d:uptime_seconds [0-9]+\.[0-9]+$'"
check "metrics: both GET /health counted" \
    sh -c "echo '$m' | grep -q '^fp8d:http_requests_total{route=\"/health\",status=\"200\"} 2$'"
check "metrics: both 404s under route other" \
    sh -c "echo '$m' | grep -q '^fp8d:http_requests_total{route=\"other\",status=\"404\"} 2$'"
check "metrics: 413 counted" \
    sh -c "echo '$m' | grep -q '^fp8d:http_requests_total{route=\"/health\",status=\"413\"} 2$'"
check "metrics: in-flight gauge counts this request" \
    sh -c "echo '$m' | grep -q '^fp8d:http_requests_in_flight 1$'"

kill -TERM "$daemon_pid"
wait_exit "$daemon_pid"
check "SIGTERM: exit 0" [ "$exit_code" = 0 ]
finish
