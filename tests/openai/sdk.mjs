// sdk.mjs: the official OpenAI Node SDK (npm package "openai") against
// fp8d: a chat completion, a streamed one (the SDK parses the SSE), a
// legacy completion, model listing, and an error case (the SDK raises
// the right class with our status and message).  Prints one "ok:" or
// "FAIL:" line per check; exits 1 on any failure.
import OpenAI from 'openai';

const client = new OpenAI({ baseURL: process.env.FP8D_URL + '/v1', apiKey: 'unused',
                            maxRetries: 0, timeout: 20000 });
let failed = 0;
function check(name, cond, detail) {
    if (cond) console.log('ok: ' + name);
    else { failed++; console.log('FAIL: ' + name + (detail ? ' ' + JSON.stringify(detail) : '')); }
}

const messages = [{ role: 'user', content: 'Hello' }];
const chat = await client.chat.completions.create({ model: 'shakespeare-tiny-bf16', messages,
                                                   max_tokens: 8, temperature: 0 });
check('chat completion', chat.object === 'chat.completion' &&
      chat.choices[0].message.role === 'assistant' &&
      typeof chat.choices[0].message.content === 'string' &&
      chat.usage.completion_tokens > 0 && chat.system_fingerprint.startsWith('fp8d-'), chat);

const stream = await client.chat.completions.create({ model: 'shakespeare-tiny-bf16', messages,
                                                     max_tokens: 8, temperature: 0, stream: true,
                                                     stream_options: { include_usage: true } });
let text = '', finish = null, usage = null, chunks = 0;
for await (const chunk of stream) {
    chunks++;
    for (const c of chunk.choices) {
        text += c.delta.content ?? '';
        if (c.finish_reason) finish = c.finish_reason;
    }
    if (chunk.usage) usage = chunk.usage;
}
check('streamed chat = plain chat', text === chat.choices[0].message.content &&
      finish === chat.choices[0].finish_reason && chunks >= 2 &&
      usage && usage.completion_tokens === chat.usage.completion_tokens,
      { text, finish, usage, want: chat.choices[0].message.content });

const cmpl = await client.completions.create({ model: 'shakespeare-tiny-bf16', prompt: 'ROMEO:',
                                              max_tokens: 5, temperature: 0 });
check('completion', cmpl.choices[0].text.length > 0 && cmpl.usage.completion_tokens === 5, cmpl);

const models = await client.models.list();
check('models.list', models.data.length === 1 && models.data[0].id === 'shakespeare-tiny-bf16',
      models.data);
const model = await client.models.retrieve('shakespeare-tiny-bf16');
check('models.retrieve', model.id === 'shakespeare-tiny-bf16' && model.object === 'model', model);
try {
    await client.models.retrieve('no-such-model');
    check('models.retrieve of an unknown id throws', false, 'no exception');
} catch (e) {
    check('models.retrieve of an unknown id raises NotFoundError',
          e instanceof OpenAI.NotFoundError && e.status === 404, { name: e.name, msg: e.message });
}

try {
    await client.chat.completions.create({ model: 'no-such-model', messages });
    check('unknown model raises NotFoundError', false, 'no exception');
} catch (e) {
    check('unknown model raises NotFoundError (404, message names the model)',
          e instanceof OpenAI.NotFoundError && e.status === 404 &&
          String(e.message).includes('no-such-model'), { name: e.name, status: e.status, msg: e.message });
}
try {
    await client.chat.completions.create({ model: 'shakespeare-tiny-bf16', messages, max_tokens: -3 });
    check('bad max_tokens raises BadRequestError', false, 'no exception');
} catch (e) {
    check('bad max_tokens raises BadRequestError naming the field',
          e instanceof OpenAI.BadRequestError && String(e.message).includes('max_tokens'),
          { name: e.name, msg: e.message });
}
process.exit(failed ? 1 : 0);
