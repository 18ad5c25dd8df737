#!/bin/sh
# Probe a running fp8d: liveness, readiness, llama.cpp-style health.
# Usage: examples/health.sh [http://127.0.0.1:8080]
url=${1:-http://127.0.0.1:8080}
curl -s -w ' (HTTP %{http_code})\n' "$url/livez"
curl -s -w ' (HTTP %{http_code})\n' "$url/readyz"
curl -s -w ' (HTTP %{http_code})\n' "$url/health"
