#!/bin/sh
# Print fp8d's Prometheus metrics without the HELP/TYPE comment lines.
# Usage: examples/metrics.sh [http://127.0.0.1:8080]
url=${1:-http://127.0.0.1:8080}
curl -s "$url/metrics" | grep -v '^#'
