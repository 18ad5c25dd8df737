#!/bin/sh
# The served model, and the tokenizer endpoints (llama.cpp and vLLM shapes).
# Usage: examples/models.sh [http://127.0.0.1:8080]   (FP8D_KEY: API key, if any)
url=${1:-http://127.0.0.1:8080}
auth=${FP8D_KEY:+-HX-Api-Key:$FP8D_KEY}
curl -s $auth "$url/v1/models"; echo
# One model by its id (OpenAI's retrieve); an unknown id answers 404.
id=$(curl -s $auth "$url/v1/models" | sed -n 's/.*"data":\[{"id":"\([^"]*\)".*/\1/p')
curl -s $auth "$url/v1/models/$id"; echo
curl -s $auth -d '{"content": "ROMEO: speak", "with_pieces": true}' "$url/tokenize"; echo
curl -s $auth -d '{"prompt": "ROMEO: speak"}' "$url/tokenize"; echo
curl -s $auth -d '{"tokens": [1678, 29, 899]}' "$url/detokenize"; echo
