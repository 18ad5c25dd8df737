#!/bin/sh
# OpenAI completions against a running fp8d: plain, token ids, echo with
# logprobs, n with a seed, and a stream with a usage chunk.
# Usage: examples/completions.sh [http://127.0.0.1:8080]   (FP8D_KEY: API key, if any)
url=${1:-http://127.0.0.1:8080}
auth=${FP8D_KEY:+-HX-Api-Key:$FP8D_KEY}
post() { curl -s $auth -H 'Content-Type: application/json' -d "$2" "$url$1"; echo; }
post /v1/completions '{"prompt": "ROMEO:", "max_tokens": 24, "temperature": 0}'
post /v1/completions '{"prompt": [0, 1678, 29], "max_tokens": 8, "temperature": 0}'
post /v1/completions '{"prompt": "ROMEO:", "max_tokens": 4, "temperature": 0, "echo": true, "logprobs": 2}'
post /v1/completions '{"prompt": "ROMEO:", "max_tokens": 12, "temperature": 0.8, "seed": 42, "n": 2, "stop": ["\n\n"]}'
curl -sN $auth -d '{"prompt": "ROMEO:", "max_tokens": 12, "stream": true, "stream_options": {"include_usage": true}}' \
     "$url/v1/completions"
