// The official `openai` npm SDK (pinned in package.json) against `sluice serve` on a tiny
// random model: models, completions and chat, streaming and not, n > 1, logprobs, stop, usage,
// and errors as the SDK's exception classes. Greedy results must equal `sluice generate` (one
// sequence, no server) for the same prompt.
//
//   node tests/oracle/test_openai.mjs build/sluice

import { spawn, execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { ORACLE_DIR } from './lib.mjs';

const require = createRequire(path.join(ORACLE_DIR, 'package.json'));
const { default: OpenAI } = await import(require.resolve('openai'));

const sluice = path.resolve(process.argv[2] ?? 'build/sluice');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-openai-'));
const model = path.join(tmp, 'tiny.gguf');
const servers = [];

// Starts `sluice serve` on a free port; resolves once /health says 200.
async function serve(extra = []) {
  const child = spawn(sluice, ['serve', '--model', model, '--port', '0', '--threads', '1', '--served-model-name', 'tiny',
    '--chat-template', 'chatml', '--kv-cache-space', '0.05', ...extra], { stdio: ['ignore', 'pipe', 'inherit'] });
  servers.push(child);
  const port = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error('sluice serve did not start')), 20000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    });
    child.on('exit', (code) => reject(new Error(`sluice serve exited with ${code}`)));
  });
  for (let i = 0; i < 500; i++) {
    const r = await fetch(`http://127.0.0.1:${port}/health`).catch(() => null);
    if (r?.status === 200) return { child, port };
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('sluice serve never became ready');
}

function stop(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    child.on('exit', (code) => resolve(code));
    child.kill('SIGTERM');
  });
}

let client, port;

before(async () => {
  execFileSync(sluice, ['mkmodel', '--out', model, '--dim', '64', '--layers', '2', '--heads', '4', '--kv-heads', '2',
    '--ff', '128', '--vocab', '320', '--ctx', '512']);
  ({ port } = await serve());
  client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'unused', maxRetries: 0 });
});

after(async () => {
  for (const c of servers) assert.equal(await stop(c), 0, 'sluice serve exits 0 on SIGTERM');
  fs.rmSync(tmp, { recursive: true, force: true });
});

// `sluice generate`'s greedy text for a text prompt.
function generateText(prompt, n) {
  const out = execFileSync(sluice, ['generate', '--model', model, '--prompt', prompt, '-n', String(n), '--ignore-eos',
    '--json', '--threads', '1']);
  return JSON.parse(out).text;
}

test('models.list', async () => {
  const page = await client.models.list();
  assert.equal(page.data.length, 1);
  assert.equal(page.data[0].id, 'tiny');
  assert.equal(page.data[0].object, 'model');
  assert.equal(page.data[0].owned_by, 'sluice');
  assert.equal(page.data[0].root, model);
  const one = await client.models.retrieve('tiny');
  assert.equal(one.id, 'tiny');
});

test('completions: greedy text equals sluice generate; streaming equals non-streaming', async () => {
  const prompt = 'The quick brown fox';
  const want = generateText(prompt, 10);
  const r = await client.completions.create({ model: 'tiny', prompt, max_tokens: 10, temperature: 0, ignore_eos: true });
  assert.equal(r.object, 'text_completion');
  assert.match(r.id, /^cmpl-/);
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].text, want);
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 10);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + 10);
  assert.equal(typeof r.usage.prompt_tokens_details.cached_tokens, 'number');

  const stream = await client.completions.create({ model: 'tiny', prompt, max_tokens: 10, temperature: 0,
    ignore_eos: true, stream: true, stream_options: { include_usage: true } });
  let text = '', usage = null, finish = null, chunks = 0;
  for await (const c of stream) {
    if (c.usage) usage = c.usage;
    for (const ch of c.choices) {
      chunks++;
      text += ch.text;
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  assert.equal(text, want);
  assert.equal(finish, 'length');
  assert.ok(chunks >= 2);
  assert.equal(usage.completion_tokens, 10);
  assert.equal(usage.prompt_tokens, r.usage.prompt_tokens);
  // the same prompt again: its full blocks come from the prefix cache
  assert.ok(usage.prompt_tokens_details.cached_tokens > 0);
});

test('completions: several prompts, n > 1, seeds, logprobs', async () => {
  const r = await client.completions.create({ model: 'tiny', prompt: ['one', 'two'], n: 2, max_tokens: 4,
    temperature: 0.9, seed: 7, logprobs: 3, ignore_eos: true });
  assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2, 3]);
  for (const c of r.choices) {
    assert.equal(c.logprobs.tokens.length, 4);
    assert.equal(c.logprobs.token_logprobs.length, 4);
    assert.equal(c.logprobs.text_offset.length, 4);
    for (const t of c.logprobs.top_logprobs) assert.ok(Object.keys(t).length >= 1 && Object.keys(t).length <= 4);
    for (const lp of c.logprobs.token_logprobs) assert.ok(lp <= 0);
  }
  assert.equal(r.usage.completion_tokens, 16);
  const again = await client.completions.create({ model: 'tiny', prompt: ['one', 'two'], n: 2, max_tokens: 4,
    temperature: 0.9, seed: 7, logprobs: 3, ignore_eos: true });
  assert.deepEqual(again.choices.map((c) => c.text), r.choices.map((c) => c.text), 'a seed makes sampling repeatable');
  const ids = await client.completions.create({ model: 'tiny', prompt: [5, 6, 7, 8], max_tokens: 2, temperature: 0 });
  assert.equal(ids.usage.prompt_tokens, 4);
});

test('completions: stop strings', async () => {
  const base = await client.completions.create({ model: 'tiny', prompt: 'stop here', max_tokens: 12, temperature: 0,
    ignore_eos: true });
  const text = base.choices[0].text;
  const i = [...text].findIndex((ch, k) => k > 0 && /[a-z]/.test(ch));
  if (i < 0) return; // nothing usable as a stop string in this random text
  const stop = [...text][i];
  const r = await client.completions.create({ model: 'tiny', prompt: 'stop here', max_tokens: 12, temperature: 0,
    ignore_eos: true, stop: [stop] });
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.equal(r.choices[0].text, text.slice(0, text.indexOf(stop)));
});

test('chat: non-streaming and streaming agree; logprobs', async () => {
  const messages = [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Say hi' }];
  const r = await client.chat.completions.create({ model: 'tiny', messages, max_completion_tokens: 8, temperature: 0,
    ignore_eos: true, logprobs: true, top_logprobs: 2 });
  assert.equal(r.object, 'chat.completion');
  assert.match(r.id, /^chatcmpl-/);
  const msg = r.choices[0].message;
  assert.equal(msg.role, 'assistant');
  assert.equal(typeof msg.content, 'string');
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 8);
  assert.equal(r.choices[0].logprobs.content.length, 8);
  for (const e of r.choices[0].logprobs.content) {
    assert.equal(e.top_logprobs.length, 2);
    assert.ok(Array.isArray(e.bytes));
    assert.ok(e.top_logprobs[0].logprob >= e.top_logprobs[1].logprob);
  }
  const stream = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 8, temperature: 0,
    ignore_eos: true, stream: true, stream_options: { include_usage: true } });
  let content = '', role = null, usage = null, finish = null;
  for await (const c of stream) {
    if (c.usage) usage = c.usage;
    for (const ch of c.choices) {
      if (ch.delta.role) role = ch.delta.role;
      content += ch.delta.content ?? '';
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  assert.equal(role, 'assistant');
  assert.equal(content, msg.content);
  assert.equal(finish, 'length');
  assert.equal(usage.completion_tokens, 8);
  assert.equal(usage.prompt_tokens, r.usage.prompt_tokens);
});

test('errors come as the SDK exception classes with OpenAI fields', async () => {
  await assert.rejects(client.completions.create({ model: 'tiny', prompt: 'x', temperature: 5 }), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError);
    assert.equal(e.status, 400);
    assert.equal(e.param, 'temperature');
    assert.equal(e.type, 'invalid_request_error');
    return true;
  });
  await assert.rejects(client.chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'x' }] }),
    (e) => {
      assert.ok(e instanceof OpenAI.NotFoundError);
      assert.equal(e.code, 'model_not_found');
      assert.equal(e.param, 'model');
      return true;
    });
  await assert.rejects(client.completions.create({ model: 'tiny', prompt: [1, 2, 3], max_tokens: 100000 }), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError);
    assert.equal(e.code, 'context_length_exceeded');
    assert.match(e.message, /maximum context length is 512 tokens/);
    return true;
  });
  await assert.rejects(client.completions.create({ model: 'tiny', prompt: 'x', suffix: 'y' }),
    (e) => e instanceof OpenAI.BadRequestError && /suffix/.test(e.message));
});

test('api key: 401 as AuthenticationError; the right key works', async () => {
  const { port: p2 } = await serve(['--api-key', 'k-123', '--max-num-seqs', '1', '--max-queue', '0']);
  const bad = new OpenAI({ baseURL: `http://127.0.0.1:${p2}/v1`, apiKey: 'wrong', maxRetries: 0 });
  await assert.rejects(bad.models.list(), (e) => {
    assert.ok(e instanceof OpenAI.AuthenticationError);
    assert.equal(e.code, 'invalid_api_key');
    return true;
  });
  const good = new OpenAI({ baseURL: `http://127.0.0.1:${p2}/v1`, apiKey: 'k-123', maxRetries: 0 });
  assert.equal((await good.models.list()).data[0].id, 'tiny');
  // one sequence at most, no queue: n = 2 is refused with 429
  await assert.rejects(good.completions.create({ model: 'tiny', prompt: 'x', n: 2, temperature: 1 }), (e) => {
    assert.ok(e instanceof OpenAI.RateLimitError);
    assert.equal(e.headers.get('retry-after'), '1');
    return true;
  });
});
