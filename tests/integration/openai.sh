#!/bin/sh
# openai.sh: the OpenAI routes of a real daemon on the bundled model, over
# loopback with curl: completions and chat, plain and streamed (the SSE
# transcript parsed frame by frame), token-id prompts used verbatim, n > 1,
# stop strings, seeds, 8 concurrent requests against the same requests
# sent one at a time, tokenize/detokenize, /v1/models, fingerprint and
# X-FP8-* headers, and every kind of bad input answered 4xx naming the
# field while the daemon goes on serving.  python3 parses the JSON.
. "$(dirname "$0")/lib.sh"

command -v python3 >/dev/null 2>&1 || skip "python3 not found"

check "daemon starts" start_daemon "$work/log" --threads 1 --max-batch 8
[ -n "$port" ] || { cat "$work/log"; finish; }
check "ready after loading" wait_ready

url="http://127.0.0.1:$port"
# post PATH JSON [curl args]: body to $work/out, status printed.
post() {
    p=$1; b=$2; shift 2
    curl -s -m 20 -o "$work/out" -w '%{http_code}' -H 'Content-Type: application/json' \
        -d "$b" "$@" "$url$p"
}
# py EXPR-SCRIPT: runs python3 with the last body as `j` (JSON) and `raw`.
py() {
    python3 -c "
import json, sys
raw = open('$work/out', 'rb').read().decode()
try: j = json.loads(raw)
except Exception: j = None
$1"
}

# ---- completions ------------------------------------------------------
s=$(post /v1/completions '{"model":"shakespeare-tiny-bf16","prompt":"ROMEO:","max_tokens":12,"temperature":0}')
check "completion 200" [ "$s" = 200 ]
check "completion shape, usage and finish_reason length" py "
c = j['choices'][0]
assert j['object'] == 'text_completion' and j['id'].startswith('cmpl-'), j
assert c['index'] == 0 and c['finish_reason'] == 'length' and len(c['text']) > 0, c
u = j['usage']
assert u['completion_tokens'] == 12 and u['total_tokens'] == u['prompt_tokens'] + 12, u
assert j['system_fingerprint'] == 'fp8d-' + j['system_fingerprint'].split('-')[1] + '-' + j['system_fingerprint'].split('-')[2] + '-e0-off', j['system_fingerprint']
"
cp "$work/out" "$work/plain.json"
hdr=$(curl -s -m 20 -D - -o /dev/null -d '{"prompt":"a","max_tokens":1}' "$url/v1/completions" | tr -d '\r')
check "X-FP8-Mode: off and X-FP8-Epoch: 0" sh -c "echo '$hdr' | grep -q '^X-FP8-Mode: off$' && echo '$hdr' | grep -q '^X-FP8-Epoch: 0$'"

# Token ids are used verbatim: the prompt string's ids (with BOS from
# /tokenize) give the same completion; without BOS, prompt_tokens is one less.
s=$(post /tokenize '{"prompt":"ROMEO:"}')
ids=$(py "print(json.dumps(j['tokens']))")
check "tokenize (vLLM shape) gives ids starting with BOS 0" py "assert j['tokens'][0] == 0 and j['count'] == len(j['tokens']), j"
s=$(post /v1/completions "{\"prompt\":$ids,\"max_tokens\":12,\"temperature\":0}")
check "token-id prompt = string prompt" py "
p = json.load(open('$work/plain.json'))
assert j['choices'][0]['text'] == p['choices'][0]['text'], (j, p)
assert j['usage']['prompt_tokens'] == p['usage']['prompt_tokens']"
noboss=$(python3 -c "import json; print(json.dumps($ids[1:]))")
s=$(post /v1/completions "{\"prompt\":$noboss,\"max_tokens\":1,\"temperature\":0}")
check "ids without BOS: no BOS added" py "assert j['usage']['prompt_tokens'] == len($ids) - 1, j"
s=$(post /detokenize "{\"tokens\":$noboss}")
check "detokenize gives the text back (content and prompt)" py "assert j['content'] == 'ROMEO:' and j['prompt'] == 'ROMEO:', j"
s=$(post /tokenize '{"content":"ROMEO:","with_pieces":true}')
check "tokenize (llama.cpp shape): no BOS by default, pieces" py "
assert [t['id'] for t in j['tokens']] == $noboss and ''.join(t['piece'] for t in j['tokens']) == 'ROMEO:', j"

# ---- streaming -----------------------------------------------------------
curl -s -N -m 20 -o "$work/out" -d '{"prompt":"ROMEO:","max_tokens":12,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}' "$url/v1/completions"
check "stream: exact SSE framing, text = non-streamed, usage chunk, [DONE] last" py "
assert raw.endswith('data: [DONE]\n\n'), raw[-40:]
frames = raw.split('\n\n')
assert frames[-1] == '' and frames[-2] == 'data: [DONE]'
evs = [json.loads(f[6:]) for f in frames[:-2]]
assert all(f.startswith('data: ') for f in frames[:-1])
ids = {e['id'] for e in evs}; assert len(ids) == 1
text = ''.join(c['text'] for e in evs for c in e['choices'])
p = json.load(open('$work/plain.json'))
assert text == p['choices'][0]['text'], (text, p)
assert evs[-1]['choices'] == [] and evs[-1]['usage'] == p['usage'], evs[-1]
assert all(e['usage'] is None for e in evs[:-1])
fin = [c['finish_reason'] for e in evs for c in e['choices'] if c['finish_reason']]
assert fin == ['length'], fin"
curl -s -N -m 20 -o "$work/out" -d '{"prompt":"ROMEO:","max_tokens":3,"stream":true}' "$url/v1/completions"
check "stream without include_usage: no usage key" py "
evs = [json.loads(f[6:]) for f in raw.split('\n\n')[:-2]]
assert all('usage' not in e for e in evs), evs"

curl -s -N -m 20 -o "$work/out" -d '{"prompt":"ROMEO:","max_tokens":12,"temperature":0,"stream":true,"n":2}' "$url/v1/completions"
check "stream with n=2: each index streams the greedy text and finishes once" py "
evs = [json.loads(f[6:]) for f in raw.split('\n\n')[:-2]]
p = json.load(open('$work/plain.json'))['choices'][0]['text']
for i in (0, 1):
    cs = [c for e in evs for c in e['choices'] if c['index'] == i]
    assert ''.join(c['text'] for c in cs) == p, (i, cs)
    assert [c['finish_reason'] for c in cs if c['finish_reason']] == ['length'], cs"

# ---- stop strings, n, seeds ------------------------------------------------
p=$(python3 -c "import json; print(json.load(open('$work/plain.json'))['choices'][0]['text'])" | head -c 200)
stop=$(python3 -c "import json; t=json.load(open('$work/plain.json'))['choices'][0]['text']; print(json.dumps(t[3:6]))")
s=$(post /v1/completions "{\"prompt\":\"ROMEO:\",\"max_tokens\":12,\"temperature\":0,\"stop\":[$stop]}")
check "stop string cuts the text before it, finish_reason stop" py "
full = json.load(open('$work/plain.json'))['choices'][0]['text']
c = j['choices'][0]
assert c['finish_reason'] == 'stop' and c['text'] == full[:full.index($stop)], (c, full)"
s=$(post /v1/completions '{"prompt":"ROMEO:","max_tokens":8,"temperature":1.0,"seed":7,"n":3}')
cp "$work/out" "$work/seed1.json"
s=$(post /v1/completions '{"prompt":"ROMEO:","max_tokens":8,"temperature":1.0,"seed":7,"n":3}')
check "n=3 with a seed: three choices, reproducible" py "
a = json.load(open('$work/seed1.json'))
assert [c['index'] for c in j['choices']] == [0, 1, 2]
assert [c['text'] for c in j['choices']] == [c['text'] for c in a['choices']], (j, a)
assert j['usage']['completion_tokens'] == 24"
s=$(post /v1/completions '{"prompt":["ROMEO:","JULIET:"],"max_tokens":4,"temperature":0,"n":2}')
check "two prompts x n=2: four choices, prompt-major" py "
t = [c['text'] for c in j['choices']]
assert len(t) == 4 and t[0] == t[1] and t[2] == t[3], t"

# ---- echo + logprobs ---------------------------------------------------------
s=$(post /v1/completions "{\"prompt\":$ids,\"max_tokens\":2,\"temperature\":0,\"echo\":true,\"logprobs\":2}")
check "echo+logprobs: prompt tokens first (first null), then 2 generated" py "
lp = j['choices'][0]['logprobs']
n = len($ids)
assert len(lp['tokens']) == n + 2 and lp['token_logprobs'][0] is None and lp['top_logprobs'][0] is None, lp
assert all(x < 0 for x in lp['token_logprobs'][1:]) and all(len(t) == 2 for t in lp['top_logprobs'][1:])
assert j['choices'][0]['text'].startswith('<|begin_of_text|>ROMEO:')  # ids decoded, specials kept (vLLM)
# greedy: each generated token is its step's best alternative
for k in (n, n + 1):
    assert abs(max(lp['top_logprobs'][k].values()) - lp['token_logprobs'][k]) < 1e-6"

# ---- chat ----------------------------------------------------------------
s=$(post /v1/chat/completions '{"model":"shakespeare-tiny-bf16","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello"}],"max_completion_tokens":10,"temperature":0,"logprobs":true,"top_logprobs":3}')
check "chat 200 with message, logprobs and usage" py "
c = j['choices'][0]
assert j['object'] == 'chat.completion' and j['id'].startswith('chatcmpl-')
assert c['message']['role'] == 'assistant' and c['finish_reason'] in ('stop', 'length')
lc = c['logprobs']['content']
assert len(lc) == j['usage']['completion_tokens'] and all(len(t['top_logprobs']) == 3 for t in lc)
assert ''.join(t['token'] for t in lc if t['token'] != '<|im_end|>') == c['message']['content'] or c['finish_reason'] == 'stop'
assert all(bytes(t['bytes']).decode('utf-8', 'replace') == t['token'] for t in lc)"
cp "$work/out" "$work/chat.json"
curl -s -N -m 20 -o "$work/out" -d '{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello"}],"max_tokens":10,"temperature":0,"stream":true}' "$url/v1/chat/completions"
check "chat stream: role first, content = non-streamed, finish chunk, [DONE]" py "
frames = raw.split('\n\n'); assert frames[-2] == 'data: [DONE]'
evs = [json.loads(f[6:]) for f in frames[:-2]]
assert all(e['object'] == 'chat.completion.chunk' for e in evs)
assert evs[0]['choices'][0]['delta']['role'] == 'assistant'
text = ''.join(e['choices'][0]['delta'].get('content', '') for e in evs)
p = json.load(open('$work/chat.json'))
assert text == p['choices'][0]['message']['content'], (text, p)
assert evs[-1]['choices'][0]['delta'] == {} and evs[-1]['choices'][0]['finish_reason'] == p['choices'][0]['finish_reason']"
s=$(post /v1/chat/completions '{"messages":[{"role":"user","content":[{"type":"text","text":"Hel"},{"type":"text","text":"lo"}]}],"max_tokens":3,"temperature":0}')
check "chat content as text parts" [ "$s" = 200 ]

# ---- concurrency: 8 parallel = one at a time ------------------------------
i=0
while [ $i -lt 8 ]; do
    echo "{\"prompt\":\"$(echo 'ROMEO: JULIET: KING: QUEEN: First Citizen: MENENIUS: HAMLET: LEAR:' | cut -d' ' -f$((i + 1)))\",\"max_tokens\":$((10 + i * 3)),\"temperature\":0}" > "$work/req$i"
    curl -s -m 20 -d @"$work/req$i" "$url/v1/completions" > "$work/seq$i"
    i=$((i + 1))
done
i=0
pids=""
while [ $i -lt 8 ]; do
    curl -s -m 30 -d @"$work/req$i" "$url/v1/completions" > "$work/par$i" &
    pids="$pids $!"
    i=$((i + 1))
done
for p in $pids; do wait "$p"; done
check "8 concurrent requests = the same 8 sent one at a time" python3 -c "
import json
for i in range(8):
    a = json.load(open('$work/seq%d' % i)); b = json.load(open('$work/par%d' % i))
    assert a['choices'][0]['text'] == b['choices'][0]['text'] and a['usage'] == b['usage'], (i, a, b)"
m=$(curl -s -m 5 "$url/metrics")
check "metrics: steps batched more than one sequence (fewer steps than tokens)" python3 -c "
import re
m = '''$m'''
steps = float(re.search(r'^fp8d:engine_steps_total\{[^}]*\} (\S+)$', m, re.M).group(1))
gen = float(re.search(r'^fp8d:generation_tokens_total\{[^}]*\} (\S+)$', m, re.M).group(1))
assert steps < gen, (steps, gen)"

# ---- bad input: 4xx naming the field, then the daemon serves on -----------
bad_req() {   # bad_req DESC STATUS FIELD BODY [PATH] (not bad: lib.sh's, which check calls)
    d=$1; st=$2; f=$3; b=$4; p=${5:-/v1/completions}
    s=$(post "$p" "$b")
    check "$d: $st naming $f" py "
assert '$s' == '$st', ('$s', raw)
e = j['error']
assert '$f' in e['message'] and e['type'] and e['code'] and e['status'] == $st, e"
}
bad_req "malformed JSON" 400 "not valid JSON" '{"prompt": "a",'
bad_req "body not an object" 400 "JSON object" '[1,2]'
bad_req "prompt of the wrong type" 400 "prompt" '{"prompt": 5}'
bad_req "max_tokens a string" 400 "max_tokens" '{"prompt": "a", "max_tokens": "ten"}'
bad_req "negative max_tokens" 400 "max_tokens" '{"prompt": "a", "max_tokens": -1}'
bad_req "huge max_tokens" 400 "max_tokens" '{"prompt": "a", "max_tokens": 100000000}'
bad_req "temperature out of range" 400 "temperature" '{"prompt": "a", "temperature": 3}'
bad_req "n too large" 400 "n must" '{"prompt": "a", "n": 1000}'
bad_req "unknown model" 404 "no-such-model" '{"model": "no-such-model", "prompt": "a"}'
bad_req "token id out of range" 400 "prompt[1]" '{"prompt": [1, 99999]}'
bad_req "stop not strings" 400 "stop" '{"prompt": "a", "stop": [1]}'
bad_req "penalties refused, not ignored" 400 "presence_penalty" '{"prompt": "a", "presence_penalty": 1}'
long=$(python3 -c "print(' '.join(['the'] * 900))")
bad_req "over-long prompt" 400 "prompt has" "{\"prompt\": \"$long\"}"
bad_req "chat without messages" 400 "messages" '{"max_tokens": 3}' /v1/chat/completions
bad_req "chat bad role" 400 "messages[0].role" '{"messages": [{"role": "wizard", "content": "x"}]}' /v1/chat/completions
bad_req "chat image part" 400 "messages[0].content[0]" '{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}' /v1/chat/completions
bad_req "top_logprobs without logprobs" 400 "top_logprobs" '{"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}' /v1/chat/completions
bad_req "detokenize bad tokens" 400 "tokens" '{"tokens": "abc"}' /detokenize
r=$(http GET /v1/completions)
check "GET on a POST route: 405" sh -c "echo '$r' | grep -q '^405 '"
s=$(post /v1/completions '{"prompt":"ROMEO:","max_tokens":12,"temperature":0}')
check "still serving the same answer after the bad requests" py "
assert j['choices'][0]['text'] == json.load(open('$work/plain.json'))['choices'][0]['text']"

s=$(post /v1/models '{}')
check "POST /v1/models: 405" [ "$s" = 405 ]
r=$(curl -s -m 5 "$url/v1/models")
check "/v1/models lists the served model with its context" python3 -c "
import json; j = json.loads('''$r''')
d = j['data'][0]
assert j['object'] == 'list' and d['id'] == 'shakespeare-tiny-bf16' and d['max_model_len'] == 512 and d['owned_by'] == 'fp8d', j"
r1=$(curl -s -m 5 "$url/v1/models/shakespeare-tiny-bf16")
check "GET /v1/models/{id}: the list's model object" python3 -c "
import json; assert json.loads('''$r1''') == json.loads('''$r''')['data'][0], '''$r1'''"
for id in no-such-model shakespeare-tiny-bf16x org/shakespeare-tiny-bf16; do
    s=$(curl -s -m 5 -o "$work/out" -w '%{http_code}' "$url/v1/models/$id")
    check "GET /v1/models/$id: 404 naming it and the served model" py "
e = j['error']
assert '$s' == '404' and e['type'] == 'not_found_error', ('$s', e)
assert e['message'] == 'model \"$id\" does not exist; this server serves \"shakespeare-tiny-bf16\"', e"
done

kill -TERM "$daemon_pid"
wait_exit "$daemon_pid"
check "SIGTERM: exit 0" [ "$exit_code" = 0 ]
finish
