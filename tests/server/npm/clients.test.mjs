// The real npm clients against a live `lokal serve`: LOKAL_BIN (the built binary) and
// LOKAL_SHARED (test data) come from the environment; the server is started here.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { Ollama } from 'ollama';

const BIN = process.env.LOKAL_BIN ?? '../../../build/bin/lokal';
const SHARED = process.env.LOKAL_SHARED ?? '../../../../shared';
const PORT = 21000 + (process.pid % 10000);
const BASE = `http://127.0.0.1:${PORT}`;
let server;
const STORE = mkdtempSync(join(tmpdir(), 'lokal-npm-store-'));  // never the user's ~/.lokal

before(async () => {
  server = spawn(BIN, ['serve', '--port', String(PORT), '--models-dir', `${SHARED}/models`, '-m', 'stories260K',
                       '-c', '1024', '-t', '1', '--store', STORE], { stdio: ['ignore', 'ignore', 'inherit'] });
  for (let i = 0; i < 100; i++) {
    try { if ((await fetch(`${BASE}/health`)).ok) return; } catch {}
    await new Promise(r => setTimeout(r, 100));
  }
  throw new Error('lokal serve did not start');
});
after(() => {
  server?.kill('SIGTERM');
  rmSync(STORE, { recursive: true, force: true });
});

const openai = () => new OpenAI({ baseURL: `${BASE}/v1`, apiKey: 'unused', maxRetries: 0 });
const ollama = () => new Ollama({ host: BASE });

test('openai: chat, completion, streaming, models, embeddings', async () => {
  const c = openai();
  const chat = await c.chat.completions.create({ model: 'stories260K', messages: [{ role: 'user', content: 'Hi' }],
                                                 max_tokens: 8, temperature: 0 });
  assert.equal(chat.choices[0].finish_reason, 'length');
  assert.equal(chat.usage.completion_tokens, 8);
  const cmpl = await c.completions.create({ model: 'stories260K', prompt: 'Once upon', max_tokens: 6 });
  assert.ok(cmpl.choices[0].text.length > 0);
  const stream = await c.chat.completions.create({ model: 'stories260K', messages: [{ role: 'user', content: 'Hi' }],
                                                   max_tokens: 8, temperature: 0, stream: true });
  let text = '';
  for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
  assert.equal(text, chat.choices[0].message.content);
  const models = await c.models.list();
  assert.ok(models.data.some(m => m.id === 'stories260K'));
  const emb = await c.embeddings.create({ model: 'stories260K', input: ['a cat', 'a dog'] });
  assert.equal(emb.data.length, 2);
});

test('openai: abort mid-stream and error cases', async () => {
  const c = openai();
  const stream = await c.chat.completions.create({ model: 'stories260K', messages: [{ role: 'user', content: 'Hi' }],
                                                   max_tokens: 200, stream: true });
  let n = 0;
  for await (const _ of stream) { if (++n === 3) { stream.controller.abort(); break; } }
  await assert.rejects(c.chat.completions.create({ model: 'stories260K', messages: [{ role: 'user', content: 'x' }],
                                                   functions: [{ name: 'f' }] }),
                       e => e.status === 400 && /functions/.test(e.message));
  await assert.rejects(c.chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'x' }] }),
                       e => e.status === 404);
});

test('ollama: generate, chat stream, abort, list, embed, errors', async () => {
  const o = ollama();
  const g = await o.generate({ model: 'stories260K', prompt: 'Once', raw: true, options: { num_predict: 5 } });
  assert.equal(g.done, true);
  assert.equal(g.eval_count, 5);
  const s = await o.chat({ model: 'stories260K', messages: [{ role: 'user', content: 'Hi' }], stream: true,
                           options: { num_predict: 6 } });
  let parts = 0, last;
  for await (const part of s) { parts++; last = part; }
  assert.ok(parts >= 2);
  assert.equal(last.done, true);
  const long = await o.generate({ model: 'stories260K', prompt: 'Once', stream: true, options: { num_predict: 200 } });
  let k = 0;
  for await (const _ of long) { if (++k === 2) { long.abort(); break; } }
  const list = await o.list();
  assert.ok(list.models.some(m => m.name === 'stories260K'));
  const e = await o.embed({ model: 'stories260K', input: 'a cat' });
  assert.equal(e.embeddings.length, 1);
  await assert.rejects(o.generate({ model: 'nope', prompt: 'x' }), err => err.status_code === 404);
});

// Structured output through the clients' own request shapes: the answer parses as JSON of
// the schema's shape (properties in the schema's order), even from this tiny model.
const PET = { type: 'object', additionalProperties: false, required: ['name', 'legs', 'tame'],
              properties: { name: { type: 'string', maxLength: 12 }, legs: { type: 'integer' },
                            tame: { type: 'boolean' } } };
const checkPet = text => {
  const pet = JSON.parse(text);
  assert.deepEqual(Object.keys(pet), ['name', 'legs', 'tame']);
  assert.equal(typeof pet.name, 'string');
  assert.ok(Number.isInteger(pet.legs));
  assert.equal(typeof pet.tame, 'boolean');
};

test('structured output: openai response_format, ollama format', async () => {
  const chat = await openai().chat.completions.create({
    model: 'stories260K', messages: [{ role: 'user', content: 'A pet?' }], max_tokens: 150, seed: 1,
    response_format: { type: 'json_schema', json_schema: { name: 'pet', strict: true, schema: PET } } });
  assert.equal(chat.choices[0].finish_reason, 'stop');
  checkPet(chat.choices[0].message.content);
  const g = await ollama().generate({ model: 'stories260K', prompt: 'A pet?', format: PET, stream: false,
                                      options: { seed: 2, num_predict: 150 } });
  assert.equal(g.done_reason, 'stop');
  checkPet(g.response);
  const j = await ollama().chat({ model: 'stories260K', messages: [{ role: 'user', content: 'Hi' }], format: 'json',
                                  options: { seed: 3, num_predict: 150 } });
  assert.equal(j.message.content[0], '{');
  await assert.rejects(openai().chat.completions.create({
    model: 'stories260K', messages: [{ role: 'user', content: 'x' }],
    response_format: { type: 'json_schema', json_schema: { name: 'p', schema: { type: 'string', pattern: 'a+' } } } }),
    e => e.status === 400 && /pattern/.test(e.message));
});

test('tools: openai forced call, ollama tools accepted', async () => {
  const tools = [{ type: 'function', function: { name: 'adopt', description: 'Adopt a pet', parameters: PET } }];
  const r = await openai().chat.completions.create({
    model: 'stories260K', messages: [{ role: 'user', content: 'Adopt a cat' }], tools, tool_choice: 'required',
    max_tokens: 200, seed: 4 });
  assert.equal(r.choices[0].finish_reason, 'tool_calls');
  const call = r.choices[0].message.tool_calls[0];
  assert.equal(call.type, 'function');
  assert.equal(call.function.name, 'adopt');
  checkPet(call.function.arguments);
  // The result goes back as a tool message.
  const next = await openai().chat.completions.create({
    model: 'stories260K', tools, max_tokens: 4,
    messages: [{ role: 'user', content: 'Adopt a cat' }, r.choices[0].message,
               { role: 'tool', tool_call_id: call.id, content: 'adopted' }] });
  assert.ok(next.choices[0].message);
  const o = await ollama().chat({ model: 'stories260K', messages: [{ role: 'user', content: 'Hi' }], tools,
                                  options: { num_predict: 4 } });
  assert.equal(o.done, true);
});

test('ollama: create, streamed create, copy, delete', async () => {
  const o = ollama();
  const made = await o.create({ model: 'teller', from: 'stories260K', system: 'Tell a story.',
                                parameters: { temperature: 0.3, stop: ['THE END'] } });
  assert.equal(made.status, 'success');
  const stream = await o.create({ model: 'teller2', from: 'teller', template: '{{ messages }}', stream: true });
  const statuses = [];
  for await (const p of stream) statuses.push(p.status);
  assert.equal(statuses.at(-1), 'success');
  await o.copy({ source: 'teller', destination: 'teller-copy' });
  let names = (await o.list()).models.map(m => m.name);
  assert.ok(names.includes('teller:latest') && names.includes('teller-copy:latest'), names.join());
  const shown = await o.show({ model: 'teller' });
  assert.equal(shown.system, 'Tell a story.');
  const g = await o.generate({ model: 'teller-copy', prompt: 'Once', raw: true, options: { num_predict: 3 } });
  assert.equal(g.eval_count, 3);
  await o.delete({ model: 'teller-copy' });
  await o.delete({ model: 'teller2' });
  names = (await o.list()).models.map(m => m.name);
  assert.ok(!names.includes('teller-copy:latest') && names.includes('teller:latest'), names.join());
  await assert.rejects(o.delete({ model: 'teller-copy' }), err => err.status_code === 404);
  // Pulling from an unreachable registry: the error comes back in the stream.
  await assert.rejects(o.pull({ model: '127.0.0.1:9/x/y:z', insecure: true }), err => /error|refused|connect/i.test(err.message));
});
