// Shared harness of the oracle tests: run sluice, run llama.cpp (node-llama-cpp 3.21.1, CPU
// prebuilt binary only) and compare next-token distributions.
//
// Conventions. A "sequence" is a list of token ids t[0..n-1]. dist[i] is the next-token
// distribution after t[0..i] (i = 0..n-1), as log-probabilities. llama.cpp gives the full
// softmax (a Float64Array of vocab log-probs); sluice gives its top K as [[id, logprob], ...].
//
// Also here, for diagnosis only: a GGUF reader with the ggml dequantizers (shared/FORMATS.md §2)
// and a float64 reference forward pass of llama/qwen2/qwen3 (FORMATS.md §4), which serves as a
// third opinion when sluice and llama.cpp disagree.

import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ORACLE_DIR = path.dirname(fileURLToPath(import.meta.url));

// ---- llama.cpp ------------------------------------------------------------------------------

// Never build from source and never download anything at run time.
process.env.NODE_LLAMA_CPP_SKIP_DOWNLOAD = 'true';
process.env.NODE_LLAMA_CPP_GPU = 'false';

let llamaPromise = null;

// Hooks that see every llama.cpp log line at or above the instance's level (e.g. to read
// llama_perf_context_print's timings, printed at level "info").
export const llamaLogHooks = new Set();

// The node-llama-cpp module, resolved from tests/oracle/node_modules whatever the caller's cwd.
export async function importNodeLlamaCpp() {
  const require = createRequire(path.join(ORACLE_DIR, 'package.json'));
  let entry;
  try {
    entry = require.resolve('node-llama-cpp');
  } catch {
    entry = path.join(ORACLE_DIR, 'node_modules/node-llama-cpp/dist/index.js');
  }
  if (!fs.existsSync(entry))
    throw new Error(`node-llama-cpp not installed in ${ORACLE_DIR}/node_modules (run scripts/setup.sh)`);
  return import(pathToFileURL(entry).href);
}

// One Llama instance per process (loading the backend takes ~1 s). CPU only, prebuilt binary.
// maxThreads 0: a context's `threads` is the exact thread count. The options of the first call win.
export function getLlamaCpp({ maxThreads = 0, logLevel = 'error' } = {}) {
  if (!llamaPromise) {
    llamaPromise = (async () => {
      const { getLlama, LlamaLogLevel } = await importNodeLlamaCpp();
      return getLlama({
        gpu: false,
        build: 'never',
        usePrebuiltBinaries: true,
        skipDownload: true,
        progressLogs: false,
        maxThreads,
        logLevel: LlamaLogLevel[logLevel],
        logger: (level, message) => {
          for (const h of llamaLogHooks) h(level, message);
          if (level === 'error' || level === 'fatal') process.stderr.write(`[llama.cpp] ${message}\n`);
        },
      });
    })();
  }
  return llamaPromise;
}

// node-llama-cpp itself warns through console.warn when a toy vocabulary does not round-trip
// text; that is expected for generated test vocabularies.
const origWarn = console.warn;
console.warn = (...args) => {
  const s = args.map(String).join(' ');
  if (s.includes('resulted in a different text')) return;
  origWarn(...args);
};

// Open a model file in llama.cpp with the settings that make it a tight oracle (DESIGN.md
// "Testing"): F32 KV cache, no flash attention, a context that holds the whole sequence.
export async function llamaOpen(file, { nTokens = 256, threads = 1, batchSize } = {}) {
  const llama = await getLlamaCpp();
  const model = await llama.loadModel({ modelPath: file, gpuLayers: 0, useMmap: true });
  let context;
  try {
    context = await model.createContext({
      contextSize: Math.max(256, nTokens),
      batchSize: batchSize ?? Math.max(nTokens, 1),
      sequences: 1,
      threads: { ideal: threads, min: threads },
      flashAttention: false,
      experimentalKvCacheKeyType: 'F32',
      experimentalKvCacheValueType: 'F32',
    });
  } catch (e) {
    await model.dispose();
    throw e;
  }
  if (context.contextSize < nTokens) throw new Error(`llama.cpp context ${context.contextSize} < ${nTokens}`);
  const sequence = context.getSequence();
  return {
    model, context, sequence,
    async close() { await context.dispose(); await model.dispose(); },
  };
}

function probsToLogprobs(map, nVocab) {
  const lp = new Float64Array(nVocab).fill(-Infinity);
  for (const [tok, p] of map) lp[tok] = Math.log(p);
  return lp;
}

// Next-token log-probabilities (full vocabulary) after each prefix t[0..i] of tokens.
export async function llamaDists(file, tokens, opts = {}) {
  const h = await llamaOpen(file, { nTokens: tokens.length + 8, ...opts });
  try {
    const res = await h.sequence.controlledEvaluate(tokens.map((t) => [t, { generateNext: { probabilities: true } }]));
    const nVocab = Math.max(...res.map((r) => r.next.probabilities.size));
    return tokens.map((_, i) => probsToLogprobs(res[i].next.probabilities, nVocab));
  } finally {
    await h.close();
  }
}

// Greedy generation with llama.cpp, one decode step at a time (the real decode path).
export async function llamaGreedy(file, prompt, n, opts = {}) {
  const h = await llamaOpen(file, { nTokens: prompt.length + n + 8, ...opts });
  try {
    const out = [];
    let input = prompt;
    for (let k = 0; k < n; k++) {
      const items = input.map((t, i) => (i === input.length - 1 ? [t, { generateNext: { token: true, options: { temperature: 0 } } }] : t));
      const res = await h.sequence.controlledEvaluate(items);
      const tok = res[input.length - 1].next.token;
      out.push(tok);
      input = [tok];
    }
    return out;
  } finally {
    await h.close();
  }
}

// ---- sluice ---------------------------------------------------------------------------------

export function runCmd(bin, args, { timeoutMs = 120000 } = {}) {
  return new Promise((resolve, reject) => {
    execFile(bin, args, { maxBuffer: 256 << 20, timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err) {
        err.message = `${path.basename(bin)} ${args.join(' ')} failed (${err.code ?? err.signal}):\n${stderr}${stdout.slice(0, 2000)}`;
        reject(err);
      } else resolve({ stdout, stderr });
    });
  });
}

export async function sluiceMkmodel(bin, out, o) {
  const args = ['mkmodel', '--out', out, '--arch', o.arch, '--type', o.type];
  for (const k of ['dim', 'layers', 'heads', 'kvHeads', 'headDim', 'ff', 'vocab', 'ctx', 'seed']) {
    if (o[k] != null) args.push('--' + k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase()), String(o[k]));
  }
  if (o.tied) args.push('--tied');
  if (o.ropeFreqs) args.push('--rope-freqs');
  if (o.twin) args.push('--twin', o.twin);
  await runCmd(bin, args);
}

// Runs `sluice generate --json` and returns the parsed object.
export async function sluiceGenerate(bin, file, prompt, { n = 1, logprobs, echo = false, threads, extra = [] } = {}) {
  const args = ['generate', '--model', file, '--prompt-tokens', prompt.join(','), '-n', String(n), '--json'];
  if (logprobs != null) args.push('--logprobs', String(logprobs));
  if (echo) args.push('--echo');
  if (threads != null) args.push('--threads', String(threads));
  args.push(...extra);
  const { stdout } = await runCmd(bin, args);
  try {
    return JSON.parse(stdout);
  } catch (e) {
    throw new Error(`sluice generate: stdout is not one JSON object: ${e.message}\n${stdout.slice(0, 500)}`);
  }
}

// sluice's distributions aligned with llamaDists over seq = prompt + generated tokens:
// dist[i] (after t[0..i]) is prompt_logprobs[i+1] for i < n_prompt-1, then logprobs[j].
// Each entry: { top: [[id, lp], ...] (best first), map: Map(id -> lp) }.
export function sluiceDists(j) {
  const P = j.prompt_tokens.length;
  if (!Array.isArray(j.prompt_logprobs) || j.prompt_logprobs.length !== P)
    throw new Error(`prompt_logprobs: expected ${P} entries, got ${j.prompt_logprobs?.length}`);
  if (j.prompt_logprobs[0] !== null) throw new Error('prompt_logprobs[0] must be null');
  if (!Array.isArray(j.logprobs) || j.logprobs.length !== j.tokens.length)
    throw new Error(`logprobs: expected ${j.tokens.length} entries, got ${j.logprobs?.length}`);
  const entries = [...j.prompt_logprobs.slice(1), ...j.logprobs];
  const seq = [...j.prompt_tokens, ...j.tokens];
  for (let i = 1; i < P; i++)
    if (j.prompt_logprobs[i].token !== seq[i]) throw new Error(`prompt_logprobs[${i}].token ${j.prompt_logprobs[i].token} != ${seq[i]}`);
  for (let i = 0; i < j.tokens.length; i++)
    if (j.logprobs[i].token !== j.tokens[i]) throw new Error(`logprobs[${i}].token ${j.logprobs[i].token} != ${j.tokens[i]}`);
  return entries.map((e) => ({ top: e.top, map: new Map(e.top), token: e.token, logprob: e.logprob }));
}

// ---- comparison -----------------------------------------------------------------------------

export function topk(lp, k) {
  const idx = Array.from(lp.keys());
  idx.sort((a, b) => lp[b] - lp[a] || a - b);
  return idx.slice(0, k);
}

// llama.cpp hands out probabilities as f32 (softmax in f32): below log(FLT_MIN) ≈ -87.3 they are
// subnormal, and below ≈ -103 they are 0 (log -Infinity). Reference log-probabilities under
// LP_FLOOR therefore carry no information beyond "< LP_FLOOR"; such a token only counts when
// the other side puts it above the floor (Δ = how far above).
export const LP_FLOOR = -80;

// Compare sluice's distribution s (top-K) with a full reference distribution ref at one position.
// Returns the max |Δ logprob| over the union of both top-k sets (a token in the reference top k
// that is missing from sluice's top K counts as Infinity, unless both are under LP_FLOOR), top-1
// of each side and the gaps between the two top-1 candidates in each distribution.
export function comparePosition(s, ref, k = 5) {
  const rTop = topk(ref, k);
  const sTop = s.top.slice(0, k).map((p) => p[0]);
  const sLast = s.top[s.top.length - 1][1]; // a token missing from sluice's top K is at most this
  let maxd = 0, worst = -1;
  for (const t of new Set([...rTop, ...sTop])) {
    const sl = s.map.get(t);
    let d;
    if (ref[t] < LP_FLOOR) d = Math.max(0, (sl ?? sLast) - LP_FLOOR);
    else d = sl === undefined ? Infinity : Math.abs(sl - ref[t]);
    if (!(d <= maxd)) { maxd = d; worst = t; }
  }
  const r1 = rTop[0], s1 = s.top[0][0];
  return {
    maxd, worst, r1, s1, agree: r1 === s1,
    // how far apart the two candidates are, in each distribution
    refGap: ref[r1] - ref[s1],
    sGap: s.map.has(r1) ? s.map.get(s1) - s.map.get(r1) : Infinity,
    refMargin: ref[r1] - ref[rTop[1]],
  };
}

export function compareDists(sd, rd, k = 5) {
  if (sd.length > rd.length) throw new Error(`sluice has ${sd.length} positions, reference ${rd.length}`);
  return sd.map((s, i) => comparePosition(s, rd[i], k));
}

export function summarize(cmp) {
  let maxd = 0, at = -1, agree = 0;
  cmp.forEach((c, i) => { if (!(c.maxd <= maxd)) { maxd = c.maxd; at = i; } if (c.agree) agree++; });
  return { maxd, at, agree, n: cmp.length, disagree: cmp.map((c, i) => [i, c]).filter(([, c]) => !c.agree) };
}

// ---- deterministic random -------------------------------------------------------------------

export function rng(seed) {
  let s = (BigInt(seed) * 0x9E3779B97F4A7C15n + 1n) & 0xffffffffffffffffn;
  return () => {
    s ^= s << 13n; s &= 0xffffffffffffffffn; s ^= s >> 7n; s ^= s << 17n; s &= 0xffffffffffffffffn;
    return Number(s >> 11n) / 2 ** 53;
  };
}

export function randomPrompt(seed, n, vocab, lo = 3) {
  const r = rng(seed);
  return Array.from({ length: n }, () => lo + Math.floor(r() * (vocab - lo)));
}

export function tmpDir(prefix = 'sluice-oracle-') {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

// ---- GGUF reader + ggml dequantizers (FORMATS.md §1-2) --------------------------------------

export const GGML = {
  F32: 0, F16: 1, Q4_0: 2, Q4_1: 3, Q5_0: 6, Q5_1: 7, Q8_0: 8, Q4_K: 12, Q5_K: 13, Q6_K: 14, BF16: 30,
};
const BLOCK = { 0: [1, 4], 1: [1, 2], 2: [32, 18], 3: [32, 20], 6: [32, 22], 7: [32, 24], 8: [32, 34], 12: [256, 144], 13: [256, 176], 14: [256, 210], 30: [1, 2] };
export const GGML_NAME = Object.fromEntries(Object.entries(GGML).map(([k, v]) => [v, k]));

export function readGguf(file) {
  const buf = fs.readFileSync(file);
  let o = 0;
  const u32 = () => { const v = buf.readUInt32LE(o); o += 4; return v; };
  const u64 = () => { const v = Number(buf.readBigUInt64LE(o)); o += 8; return v; };
  const str = () => { const n = u64(); const s = buf.toString('utf8', o, o + n); o += n; return s; };
  const val = (t) => {
    switch (t) {
      case 0: return buf.readUInt8(o++);
      case 1: return buf.readInt8(o++);
      case 2: o += 2; return buf.readUInt16LE(o - 2);
      case 3: o += 2; return buf.readInt16LE(o - 2);
      case 4: return u32();
      case 5: o += 4; return buf.readInt32LE(o - 4);
      case 6: o += 4; return buf.readFloatLE(o - 4);
      case 7: return buf.readUInt8(o++) !== 0;
      case 8: return str();
      case 9: { const et = u32(); const n = u64(); const a = new Array(n); for (let i = 0; i < n; i++) a[i] = val(et); return a; }
      case 10: return u64();
      case 11: o += 8; return Number(buf.readBigInt64LE(o - 8));
      case 12: o += 8; return buf.readDoubleLE(o - 8);
      default: throw new Error(`gguf: bad value type ${t}`);
    }
  };
  if (buf.toString('latin1', 0, 4) !== 'GGUF') throw new Error(`${file}: not GGUF`);
  o = 4;
  const version = u32();
  const nT = u64(), nKV = u64();
  const kv = {};
  for (let i = 0; i < nKV; i++) { const k = str(); kv[k] = val(u32()); }
  const tensors = {};
  const order = [];
  for (let i = 0; i < nT; i++) {
    const name = str(); const nd = u32(); const ne = []; for (let d = 0; d < nd; d++) ne.push(u64());
    const type = u32(); const offset = u64();
    tensors[name] = { name, ne, type, offset }; order.push(name);
  }
  const align = kv['general.alignment'] ?? 32;
  const dataStart = Math.ceil(o / align) * align;
  for (const t of Object.values(tensors)) {
    const [blk, bytes] = BLOCK[t.type] ?? (() => { throw new Error(`gguf: type ${t.type}`); })();
    t.nel = t.ne.reduce((a, b) => a * b, 1);
    t.nbytes = t.nel / blk * bytes;
    t.data = buf.subarray(dataStart + t.offset, dataStart + t.offset + t.nbytes);
  }
  return { version, kv, tensors, order };
}

const f16tab = (() => {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 31, m = h & 1023;
    t[h] = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
  }
  return t;
})();
const f16 = (b, o) => f16tab[b[o] | (b[o + 1] << 8)];
const fr = Math.fround;

// Dequantize a whole tensor to a Float32Array (ggml's f32 arithmetic, FORMATS.md §2).
export function dequant(t) {
  const b = t.data, n = t.nel, y = new Float32Array(n);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  switch (t.type) {
    case 0: for (let i = 0; i < n; i++) y[i] = dv.getFloat32(4 * i, true); break;
    case 1: for (let i = 0; i < n; i++) y[i] = f16(b, 2 * i); break;
    case 30: for (let i = 0; i < n; i++) y[i] = new Float32Array(new Uint32Array([dv.getUint16(2 * i, true) << 16]).buffer)[0]; break;
    case 8: for (let k = 0; k < n / 32; k++) { const o = 34 * k, d = f16(b, o); for (let e = 0; e < 32; e++) y[32 * k + e] = fr(d * dv.getInt8(o + 2 + e)); } break;
    case 2: case 3: {
      const bs = t.type === 2 ? 18 : 20, qo = t.type === 2 ? 2 : 4;
      for (let k = 0; k < n / 32; k++) {
        const o = bs * k, d = f16(b, o), m = t.type === 3 ? f16(b, o + 2) : 0;
        for (let e = 0; e < 16; e++) {
          const q0 = b[o + qo + e] & 15, q1 = b[o + qo + e] >> 4;
          if (t.type === 2) { y[32 * k + e] = fr(d * (q0 - 8)); y[32 * k + e + 16] = fr(d * (q1 - 8)); }
          else { y[32 * k + e] = fr(fr(d * q0) + m); y[32 * k + e + 16] = fr(fr(d * q1) + m); }
        }
      }
      break;
    }
    case 6: case 7: {
      const bs = t.type === 6 ? 22 : 24, ho = t.type === 6 ? 2 : 4, qo = ho + 4;
      for (let k = 0; k < n / 32; k++) {
        const o = bs * k, d = f16(b, o), m = t.type === 7 ? f16(b, o + 2) : 0, H = dv.getUint32(o + ho, true);
        for (let e = 0; e < 16; e++) {
          const q0 = (b[o + qo + e] & 15) | (((H >>> e) & 1) << 4), q1 = (b[o + qo + e] >> 4) | (((H >>> (e + 16)) & 1) << 4);
          if (t.type === 6) { y[32 * k + e] = fr(d * (q0 - 16)); y[32 * k + e + 16] = fr(d * (q1 - 16)); }
          else { y[32 * k + e] = fr(fr(d * q0) + m); y[32 * k + e + 16] = fr(fr(d * q1) + m); }
        }
      }
      break;
    }
    case 12: case 13: {
      const bs = t.type === 12 ? 144 : 176;
      for (let k = 0; k < n / 256; k++) {
        const o = bs * k, d = f16(b, o), dmin = f16(b, o + 2), s = b.subarray(o + 4, o + 16);
        const qh = b.subarray(o + 16, o + 48), qs = b.subarray(o + (t.type === 12 ? 16 : 48));
        for (let e = 0; e < 256; e++) {
          const j = e >> 5;
          const sc = j < 4 ? s[j] & 63 : (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
          const mm = j < 4 ? s[j + 4] & 63 : (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
          const c = e >> 6, r = e & 63;
          let q = qs[32 * c + (r & 31)]; q = r < 32 ? q & 15 : q >> 4;
          if (t.type === 13) q |= ((qh[e & 31] >> j) & 1) << 4;
          y[256 * k + e] = fr(fr(fr(d * sc) * q) - fr(dmin * mm));
        }
      }
      break;
    }
    case 14:
      for (let k = 0; k < n / 256; k++) {
        const o = 210 * k, ql = b.subarray(o, o + 128), qh = b.subarray(o + 128, o + 192), d = f16(b, o + 208);
        for (let e = 0; e < 256; e++) {
          const h = e >> 7, r = e & 127, kk = r >> 5, l = r & 31;
          let lo = ql[64 * h + l + 32 * (kk & 1)]; lo = kk < 2 ? lo & 15 : lo >> 4;
          const hi = (qh[32 * h + l] >> (2 * kk)) & 3;
          y[256 * k + e] = fr(fr(d * dv.getInt8(o + 192 + (e >> 4))) * ((lo | (hi << 4)) - 32));
        }
      }
      break;
    default: throw new Error(`dequant: type ${t.type}`);
  }
  return y;
}

// Check that `twin` holds exactly the dequantized weights of `quant` (same names and shapes).
// Returns { tensors, maxAbs, nonExact, worst, types }.
export function checkTwin(quantFile, twinFile) {
  const q = readGguf(quantFile), t = readGguf(twinFile);
  const qn = Object.keys(q.tensors).sort(), tn = Object.keys(t.tensors).sort();
  if (qn.join() !== tn.join()) throw new Error(`twin tensor names differ: ${qn} vs ${tn}`);
  let maxAbs = 0, nonExact = 0, worst = '';
  const types = {};
  for (const name of qn) {
    const a = q.tensors[name], b = t.tensors[name];
    if (a.ne.join() !== b.ne.join()) throw new Error(`${name}: shape ${a.ne} vs ${b.ne}`);
    if (b.type !== GGML.F32) throw new Error(`twin ${name} is type ${GGML_NAME[b.type]}, not F32`);
    types[GGML_NAME[a.type]] = (types[GGML_NAME[a.type]] ?? 0) + 1;
    const x = dequant(a), y = dequant(b);
    for (let i = 0; i < x.length; i++) {
      if (x[i] !== y[i]) {
        nonExact++;
        const d = Math.abs(x[i] - y[i]);
        if (!(d <= maxAbs)) { maxAbs = d; worst = `${name}[${i}] ${x[i]} vs ${y[i]}`; }
      }
    }
  }
  return { tensors: qn.length, maxAbs, nonExact, worst, types };
}

// ---- float64 reference forward pass (FORMATS.md §4), for diagnosis --------------------------

export function refModel(file) {
  const g = readGguf(file);
  const A = g.kv['general.architecture'];
  const k = (s, d) => g.kv[`${A}.${s}`] ?? d;
  const W = {};
  for (const [name, t] of Object.entries(g.tensors)) W[name] = { ne: t.ne, w: Float64Array.from(dequant(t)) };
  const E = k('embedding_length'), H = k('attention.head_count'), Hkv = k('attention.head_count_kv', H);
  const Dk = k('attention.key_length', E / H);
  return {
    g, A, W, E, H, Hkv, Dk, L: k('block_count'), F: k('feed_forward_length'),
    eps: k('attention.layer_norm_rms_epsilon'), base: k('rope.freq_base', 10000), nRot: k('rope.dimension_count', Dk),
    V: W['token_embd.weight'].ne[1],
  };
}

function matvec(Wt, x) { // Wt: {ne:[in,out]}, y[r] = sum_c W[r*in + c] * x[c]
  const [n, m] = Wt.ne, w = Wt.w, y = new Float64Array(m);
  for (let r = 0; r < m; r++) { let s = 0; const o = r * n; for (let c = 0; c < n; c++) s += w[o + c] * x[c]; y[r] = s; }
  return y;
}
function rmsnorm(x, g, eps, off = 0, n = x.length) {
  let ss = 0; for (let i = 0; i < n; i++) ss += x[off + i] * x[off + i];
  const s = 1 / Math.sqrt(ss / n + eps);
  for (let i = 0; i < n; i++) x[off + i] = x[off + i] * s * (g ? g[i] : 1);
}

// Log-probabilities after each prefix of tokens (full vocab, Float64Array each).
export function refDists(m, tokens) {
  const { W, E, H, Hkv, Dk, L, eps, base, nRot, A } = m;
  const neox = A !== 'llama';
  const ff = W['rope_freqs.weight']?.w;
  const Ks = Array.from({ length: L }, () => []), Vs = Array.from({ length: L }, () => []);
  const out = [];
  for (let p = 0; p < tokens.length; p++) {
    const emb = W['token_embd.weight'];
    const x = emb.w.slice(tokens[p] * E, tokens[p] * E + E);
    for (let l = 0; l < L; l++) {
      const P = (s) => W[`blk.${l}.${s}`];
      const h = x.slice(); rmsnorm(h, P('attn_norm.weight').w, eps);
      const q = matvec(P('attn_q.weight'), h), kk = matvec(P('attn_k.weight'), h), v = matvec(P('attn_v.weight'), h);
      if (P('attn_q.bias')) { for (let i = 0; i < q.length; i++) q[i] += P('attn_q.bias').w[i]; for (let i = 0; i < kk.length; i++) kk[i] += P('attn_k.bias').w[i]; for (let i = 0; i < v.length; i++) v[i] += P('attn_v.bias').w[i]; }
      if (P('attn_q_norm.weight')) {
        for (let hh = 0; hh < H; hh++) rmsnorm(q, P('attn_q_norm.weight').w, eps, hh * Dk, Dk);
        for (let hh = 0; hh < Hkv; hh++) rmsnorm(kk, P('attn_k_norm.weight').w, eps, hh * Dk, Dk);
      }
      const rope = (vec, nh) => {
        for (let hh = 0; hh < nh; hh++) for (let i = 0; i < nRot / 2; i++) {
          const th = p * Math.pow(base, -2 * i / nRot) / (ff ? ff[i] : 1);
          const c = Math.cos(th), s = Math.sin(th);
          const i0 = hh * Dk + (neox ? i : 2 * i), i1 = hh * Dk + (neox ? i + nRot / 2 : 2 * i + 1);
          const a = vec[i0], b = vec[i1];
          vec[i0] = a * c - b * s; vec[i1] = a * s + b * c;
        }
      };
      rope(q, H); rope(kk, Hkv);
      Ks[l].push(kk); Vs[l].push(v);
      const att = new Float64Array(H * Dk);
      for (let hh = 0; hh < H; hh++) {
        const kh = Math.floor(hh / (H / Hkv));
        const sc = new Float64Array(p + 1);
        let mx = -Infinity;
        for (let t = 0; t <= p; t++) { let s = 0; for (let d = 0; d < Dk; d++) s += q[hh * Dk + d] * Ks[l][t][kh * Dk + d]; sc[t] = s / Math.sqrt(Dk); mx = Math.max(mx, sc[t]); }
        let sum = 0; for (let t = 0; t <= p; t++) { sc[t] = Math.exp(sc[t] - mx); sum += sc[t]; }
        for (let t = 0; t <= p; t++) for (let d = 0; d < Dk; d++) att[hh * Dk + d] += sc[t] / sum * Vs[l][t][kh * Dk + d];
      }
      const o = matvec(P('attn_output.weight'), att);
      for (let i = 0; i < E; i++) x[i] += o[i];
      const h2 = x.slice(); rmsnorm(h2, P('ffn_norm.weight').w, eps);
      const gt = matvec(P('ffn_gate.weight'), h2), up = matvec(P('ffn_up.weight'), h2);
      for (let i = 0; i < gt.length; i++) gt[i] = gt[i] / (1 + Math.exp(-gt[i])) * up[i];
      const dn = matvec(P('ffn_down.weight'), gt);
      for (let i = 0; i < E; i++) x[i] += dn[i];
    }
    rmsnorm(x, W['output_norm.weight'].w, eps);
    const logits = matvec(W['output.weight'] ?? W['token_embd.weight'], x);
    let mx = -Infinity; for (const z of logits) mx = Math.max(mx, z);
    let s = 0; for (const z of logits) s += Math.exp(z - mx);
    const lse = mx + Math.log(s);
    out.push(logits.map((z) => z - lse));
  }
  return out;
}

// Reference distributions in sluice's format (top K), to compare with comparePosition.
export function asTopK(lp, k) {
  const top = topk(lp, k).map((t) => [t, lp[t]]);
  return { top, map: new Map(top) };
}

export function fmt(x, d = 2) {
  if (x === Infinity) return 'inf';
  if (x === 0) return '0';
  return Math.abs(x) < 1e-2 ? x.toExponential(d - 1) : x.toFixed(d + 1);
}
