// CPU benchmark: prompt processing and decode tokens/s of sluice against llama.cpp
// (node-llama-cpp 3.21.1, CPU prebuilt binary) on the same GGUF files and the same thread count.
//
// usage: node benchmarks/bench_cpu.mjs <path-to-sluice> [--threads 2] [--types Q8_0,Q4_0,Q4_K]
//          [--prompt 128] [--gen 64] [--reps 3] [--dim 1024] [--layers 8] [--heads 16]
//          [--kv-heads 4] [--ff 2816] [--vocab 8192] [--keep]
//
// The models are random-weight `llama` files written by `sluice mkmodel` (~100M parameters by
// default). Each side runs once as a warm-up, then --reps times; the best run is reported.
// sluice's numbers are its own `generate --json` timings (prompt_tokens_per_s,
// decode_tokens_per_s), with int8 activations (its default) and with f32 ones
// (--cpu-activations f32); the ratios are int8's. llama.cpp's are its own perf counters (llama_perf_context_print) over
// sequence.evaluate(): the prompt in one batch, then gen-1 single-token decode steps (the first
// generated token comes from the prompt's logits). llama.cpp runs with its defaults (F16 KV cache, flash attention "auto")
// except the thread count. Output: a markdown table on stdout, progress on stderr.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as L from '../tests/oracle/lib.mjs';

const argv = process.argv.slice(2);
const opt = (k, d) => { const i = argv.indexOf('--' + k); return i < 0 ? d : argv[i + 1]; };
const bin = argv[0] && !argv[0].startsWith('--') ? path.resolve(argv[0]) : null;
if (!bin) {
  console.error('usage: node benchmarks/bench_cpu.mjs <path-to-sluice> [--threads N] [--types T,..] [--prompt N] [--gen N] [--reps N]');
  process.exit(2);
}
const threads = +opt('threads', 2);
const types = opt('types', 'Q8_0,Q4_0,Q4_K').split(',');
const nPrompt = +opt('prompt', 128);
const nGen = +opt('gen', 64);
const reps = +opt('reps', 3);
const shape = {
  arch: 'llama', dim: +opt('dim', 1024), layers: +opt('layers', 8), heads: +opt('heads', 16),
  kvHeads: +opt('kv-heads', 4), ff: +opt('ff', 2816), vocab: +opt('vocab', 8192), ctx: 2048, seed: 1,
};
const log = (...a) => console.error(...a);

function params(s) {
  const hd = s.dim / s.heads;
  const layer = s.dim * hd * (2 * s.heads + 2 * s.kvHeads) + 3 * s.dim * s.ff + 2 * s.dim;
  return s.layers * layer + 2 * s.vocab * s.dim + s.dim;
}

async function benchSluice(file, prompt, act) {
  const runs = [];
  for (let r = 0; r <= reps; r++) {
    const j = await L.sluiceGenerate(bin, file, prompt, { n: nGen, threads, extra: ['--temperature', '0', '--cpu-activations', act] });
    if (j.tokens.length !== nGen) log(`  note: sluice generated ${j.tokens.length} tokens (finish ${j.finish_reason})`);
    if (r > 0) runs.push(j.timings);
  }
  return {
    pp: Math.max(...runs.map((t) => t.prompt_tokens_per_s)),
    tg: Math.max(...runs.map((t) => t.decode_tokens_per_s)),
  };
}

// llama.cpp's own timings (llama_perf_context_print, like sluice's --json timings), read from its
// log; the wall-clock rates around sequence.evaluate() are logged to stderr for comparison.
const perfLines = [];
L.llamaLogHooks.add((level, m) => { if (m.includes('llama_perf_context_print')) perfLines.push(m); });
function perfRate(re) {
  for (const m of perfLines) {
    const x = m.match(re);
    if (x) return +x[2] / (+x[1] / 1000);
  }
  return NaN;
}

async function benchLlama(file, prompt) {
  const llama = await L.getLlamaCpp({ logLevel: 'info' });
  const model = await llama.loadModel({ modelPath: file, gpuLayers: 0, useMmap: true });
  const context = await model.createContext({
    contextSize: nPrompt + nGen + 16, batchSize: nPrompt, sequences: 1, threads: { ideal: threads, min: threads },
    performanceTracking: true,
  });
  const seq = context.getSequence();
  let pp = 0, tg = 0, ppWall = 0, tgWall = 0;
  try {
    for (let r = 0; r <= reps; r++) {
      await seq.clearHistory();
      await context.printTimings(); // resets the counters
      const it = seq.evaluate(prompt, { temperature: 0 });
      const t0 = process.hrtime.bigint();
      let res = await it.next();
      const t1 = process.hrtime.bigint();
      let n = 1;
      while (n < nGen && !res.done) { res = await it.next(); n++; }
      const t2 = process.hrtime.bigint();
      await it.return();
      perfLines.length = 0;
      await context.printTimings();
      if (n < nGen) log(`  note: llama.cpp generated ${n} tokens`);
      if (r === 0) continue;
      pp = Math.max(pp, perfRate(/prompt eval time =\s*([\d.]+) ms \/\s*(\d+) tokens/));
      tg = Math.max(tg, perfRate(/\beval time =\s*([\d.]+) ms \/\s*(\d+) runs/));
      ppWall = Math.max(ppWall, nPrompt / (Number(t1 - t0) / 1e9));
      tgWall = Math.max(tgWall, (n - 1) / (Number(t2 - t1) / 1e9));
    }
  } finally {
    await context.dispose();
    await model.dispose();
  }
  if (!(pp > 0 && tg > 0)) throw new Error('could not read llama.cpp perf timings from its log');
  log(`  llama.cpp wall clock around evaluate(): pp ${ppWall.toFixed(1)}, tg ${tgWall.toFixed(1)} tok/s`);
  return { pp, tg };
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-'));
const rows = [];
try {
  await L.getLlamaCpp({ logLevel: 'info' });
  const prompt = L.randomPrompt(12345, nPrompt, shape.vocab);
  for (const type of types) {
    const file = path.join(dir, `bench-${type}.gguf`);
    log(`${type}: mkmodel ...`);
    await L.sluiceMkmodel(bin, file, { ...shape, type });
    const mb = fs.statSync(file).size / 2 ** 20;
    log(`${type}: ${mb.toFixed(0)} MiB; sluice ...`);
    const s = await benchSluice(file, prompt, 'int8');
    const s32 = await benchSluice(file, prompt, 'f32');
    log(`${type}: llama.cpp ...`);
    const l = await benchLlama(file, prompt);
    rows.push({ type, mb, s, s32, l });
    log(`${type}: pp ${s.pp.toFixed(1)} vs ${l.pp.toFixed(1)}, tg ${s.tg.toFixed(1)} vs ${l.tg.toFixed(1)} tok/s`);
    fs.rmSync(file);
  }
} finally {
  if (!argv.includes('--keep')) fs.rmSync(dir, { recursive: true, force: true });
}

const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
const f = (x) => x.toFixed(1);
console.log(`### CPU: sluice vs llama.cpp (node-llama-cpp 3.21.1), ${threads} threads\n`);
console.log(`${cpu}, ${os.cpus().length} logical CPUs, load average ${os.loadavg()[0].toFixed(2)} at the end. Model: mkmodel llama dim ${shape.dim}, ${shape.layers} layers, ` +
  `${shape.heads} heads / ${shape.kvHeads} KV heads, ff ${shape.ff}, vocab ${shape.vocab} ` +
  `(${(params(shape) / 1e6).toFixed(0)}M parameters). Prompt ${nPrompt} tokens, decode ${nGen} tokens, best of ${reps}.\n`);
console.log(`| type | file MiB | pp${nPrompt} sluice int8 | pp${nPrompt} sluice f32 | pp${nPrompt} llama.cpp | pp ratio | tg${nGen} sluice int8 | tg${nGen} sluice f32 | tg${nGen} llama.cpp | tg ratio |`);
console.log('|------|---------:|------:|------:|------:|------:|------:|------:|------:|------:|');
for (const { type, mb, s, s32, l } of rows)
  console.log(`| ${type} | ${mb.toFixed(0)} | ${f(s.pp)} | ${f(s32.pp)} | ${f(l.pp)} | ${(s.pp / l.pp).toFixed(2)} | ${f(s.tg)} | ${f(s32.tg)} | ${f(l.tg)} | ${(s.tg / l.tg).toFixed(2)} |`);
console.log('\nratio = sluice / llama.cpp (higher is better for sluice). Both sides\' own timings: prompt = one ' +
  `${nPrompt}-token prefill, decode = the ${nGen - 1} single-token steps after the first generated token.`);
if (os.loadavg()[0] > 0.5)
  console.log('\nNote: other processes were running; with as many threads as cores, llama.cpp\'s spinning ' +
    'thread barriers lose the most from that (compare --threads 1).');
