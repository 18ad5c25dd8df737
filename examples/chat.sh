#!/bin/sh
# OpenAI chat completions against a running fp8d: plain with logprobs,
# then streamed.  Usage: examples/chat.sh [http://127.0.0.1:8080]   (FP8D_KEY: API key, if any)
url=${1:-http://127.0.0.1:8080}
auth=${FP8D_KEY:+-HX-Api-Key:$FP8D_KEY}
msgs='[{"role": "system", "content": "You are a player."}, {"role": "user", "content": "Speak the speech."}]'
curl -s $auth -d "{\"messages\": $msgs, \"max_completion_tokens\": 24, \"temperature\": 0, \"logprobs\": true, \"top_logprobs\": 2}" \
     "$url/v1/chat/completions"
echo
curl -sN $auth -d "{\"messages\": $msgs, \"max_tokens\": 24, \"stream\": true}" "$url/v1/chat/completions"
