#!/bin/sh
# What bad requests get: OpenAI error objects naming the field, and the
# daemon keeps serving.  Usage: examples/errors.sh [http://127.0.0.1:8080]
url=${1:-http://127.0.0.1:8080}
auth=${FP8D_KEY:+-HX-Api-Key:$FP8D_KEY}
for body in '{"prompt": "a",' '{"prompt": 5}' '{"prompt": "a", "max_tokens": -1}' \
            '{"model": "gpt-4", "prompt": "a"}' '{"prompt": "a", "timeout_ms": 1, "max_tokens": 400}'; do
    curl -s $auth -w ' (HTTP %{http_code})\n' -d "$body" "$url/v1/completions"
done
