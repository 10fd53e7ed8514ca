"""test_tokenizer_js: `ramtrain tokenize` against tokenizers the project did not write.

Builds a corpus (tests/tokenizer_corpus.py: over 1 MiB of real text from the
machine plus generated Unicode, whitespace, digits, contractions, special
tokens and invalid UTF-8), builds seven tokenizer.json files from data inside
the npm packages (tests/js/reftok.mjs: GPT-2, Llama-3, cl100k, o200k, and a
SentencePiece-style byte-fallback BPE in three spellings: Llama-2's
normalizers, Mistral's Metaspace, and Llama-2's with NFKC and added tokens
with lstrip / rstrip, normalized and not), then for each:
  - the references agree with each other: Tokenizers.js with gpt-3-encoder
    and js-tiktoken (GPT-2), llama3-tokenizer-js (Llama-3), js-tiktoken
    (cl100k, o200k); for the last three, lines with U+0085 or U+FEFF are
    left out here only (the second opinions match \\s as JavaScript does,
    Tokenizers.js's Split as Oniguruma does: see reftok.mjs);
  - Tokenizers.js decodes its own ids back to the text (where the
    tokenizer.json can: byte-level always; SentencePiece not across special
    or added tokens, a literal '▁', with Metaspace a leading space, with
    NFKC text that NFKC changes);
  - `ramtrain tokenize --no-special` prints, line for line, the ids
    Tokenizers.js gives with add_special_tokens=False, and `ramtrain
    tokenize` the ids of encode(text) (add_special_tokens=True);
  - the default adds exactly the BOS of the post-processor (Llama-3
    <|begin_of_text|>, SentencePiece <s>) or nothing (GPT-2, cl100k, o200k)
    to what --no-special prints;
  - `ramtrain tokenize --decode` of its own ids gives the text back
    (decode(encode(x)) == x, x being the line after TextDecoder's U+FFFD
    replacement) where the tokenizer can, and otherwise what the reference
    decoders give (Tokenizers.js, or Hugging Face Rust's Metaspace rule,
    which drops every '▁' of the first token);
  - `ramtrain tokenize --decode` gives what Tokenizers.js's decode gives on
    random id sequences (byte tokens that make invalid UTF-8, special and
    added tokens anywhere).
A failing comparison prints its first mismatching lines with the first
differing ids and their token texts, and shrinks the first one to a minimal
input that still fails.

Prints one line per check; exits 1 if any fails (keeping its temp
directory), 77 if node or the npm packages (deploy/install-deps.sh) are
missing, 0 otherwise.

Usage: test_tokenizer_js.py --ramtrain PATH [--node PATH] [--only NAME,...]
                            [--jobs N] [--seed N] [--keep]
"""

import argparse
import concurrent.futures
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import tokenizer_corpus  # noqa: E402

JS = os.path.join(HERE, "js")
REFTOK = os.path.join(JS, "reftok.mjs")
NAMES = ["gpt2", "llama3", "cl100k", "o200k", "sp", "spm", "spx"]
SECOND = {"gpt2": ["gpt3enc", "tiktoken"], "llama3": ["llama3js"], "cl100k": ["tiktoken"],
          "o200k": ["tiktoken"], "sp": [], "spm": [], "spx": []}
REF_NAMES = {"tjs": "Tokenizers.js", "gpt3enc": "gpt-3-encoder", "tiktoken": "js-tiktoken",
             "llama3js": "llama3-tokenizer-js"}
BOS = {"llama3": 128000, "sp": 1, "spm": 1, "spx": 1}
SPLIT_REGEX = {"llama3", "cl100k", "o200k"}  # the tokenizer.json has a Split regex
SENTENCEPIECE = {"sp", "spm", "spx"}
SP_SPECIALS = ["<unk>", "<s>", "</s>"]
SPX_ADDED = ["<mask>", "<|im_start|>", "hello world", "ﬁx", "fix", "[raw]"]  # "fix": NFKC of "ﬁx"
SHOW = 3              # mismatching lines printed per check
RANDOM_LINES = 3000   # lines of random ids decoded per tokenizer
MINIMIZE_BUDGET = 150  # seconds spent shrinking failing lines, all checks together
SANITIZER = re.compile(r"Sanitizer|runtime error:")


def run(cmd, stdin_path=None, stdout_path=None, timeout=600):
    """Runs cmd; returns (rc, stderr text, seconds). stdout to stdout_path."""
    t = time.monotonic()
    fin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    fout = open(stdout_path, "wb") if stdout_path else subprocess.PIPE
    try:
        p = subprocess.run(cmd, stdin=fin, stdout=fout, stderr=subprocess.PIPE, timeout=timeout)
        rc, err = p.returncode, p.stderr.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        rc, err = None, "timed out after %d s" % timeout
    finally:
        if stdin_path:
            fin.close()
        if stdout_path:
            fout.close()
    return rc, err, time.monotonic() - t


def lines_of(path):
    with open(path, "rb") as f:
        data = f.read()
    out = data.split(b"\n")
    if out and out[-1] == b"":
        out.pop()
    return out


class Vocab:
    """id -> token text of a tokenizer.json, for messages."""

    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            j = json.load(f)
        self.text = {v: k for k, v in j["model"]["vocab"].items()}
        for t in j["added_tokens"]:
            self.text[t["id"]] = t["content"]
        self.byte_level = "Ġ" in j["model"]["vocab"]

    def nbytes(self, ids):
        """About how many input bytes ids stand for (to find them in a line)."""
        n = 0
        for i in ids:
            t = self.text.get(int(i), "")
            if re.fullmatch(r"<0x[0-9A-F]{2}>", t):
                n += 1
            elif self.byte_level:
                n += len(t)
            else:
                n += len(t.replace("\u2581", " ").encode())
        return n

    def show(self, ids):
        return " ".join("%s%s" % (i, json.dumps(self.text.get(int(i), "?"), ensure_ascii=False))
                        for i in ids if i.lstrip("-").isdigit())


class Side:
    """All outputs for one tokenizer on one corpus file (one line each)."""

    def __init__(self, name, corpus, prefix):
        self.name, self.corpus, self.prefix = name, corpus, prefix
        self.errors = []

    def reference(self, node, tokdir, tjs_only=False):
        cmd = [node, REFTOK, "encode", tokdir, self.name, self.corpus, self.prefix]
        rc, err, dt = run(cmd + (["--tjs-only"] if tjs_only else []), timeout=600)
        if rc != 0:
            self.errors.append("reftok encode %s: exit %s: %s" % (self.name, rc, err.strip()[-800:]))
        self.node_s = dt

    def random_ids(self, tokfile, count, seed):
        """Writes count lines of random ids (none that decodes to a newline),
        half of them among the first 300 ids (bytes: invalid UTF-8)."""
        with open(tokfile, encoding="utf-8") as f:
            j = json.load(f)
        nl = {v for k, v in j["model"]["vocab"].items() if "\u010a" in k or "\n" in k or k == "<0x0A>"}
        ids = sorted((set(j["model"]["vocab"].values()) | {t["id"] for t in j["added_tokens"]}) - nl)
        low = [i for i in ids if i < 300]
        rng = random.Random("%s/%d" % (self.name, seed))
        with open(self.prefix + ".rand.ids", "w") as f:
            for _ in range(count):
                pool = low if rng.random() < 0.5 else ids
                f.write(" ".join(str(rng.choice(pool)) for _ in range(rng.randint(0, 12))) + "\n")

    def reference_decode(self, node, tokdir):
        rc, err, _ = run([node, REFTOK, "decode", tokdir, self.name, self.prefix + ".rand.ids",
                          self.prefix + ".rand.tjs"])
        if rc != 0:
            self.errors.append("reftok decode %s: exit %s: %s" % (self.name, rc, err.strip()[-800:]))

    def ramtrain(self, exe, tokfile):
        self.rt_s = {}
        runs = [("special", [], self.corpus),
                ("plain", ["--no-special"], self.corpus),
                ("decode", ["--decode"], self.prefix + ".rt.plain")]
        if os.path.exists(self.prefix + ".rand.ids"):
            runs.append(("rand", ["--decode"], self.prefix + ".rand.ids"))
        for mode, args, src in runs:
            out = "%s.rt.%s" % (self.prefix, mode)
            rc, err, dt = run([exe, "tokenize", "--tokenizer", tokfile] + args, src, out, timeout=600)
            self.rt_s[mode] = dt
            what = "ramtrain tokenize %s" % " ".join(args or ["(default)"])
            if rc is None or rc != 0:
                self.errors.append("%s: %s: %s" % (what, "timed out" if rc is None else
                                                   ("killed by signal %d" % -rc if rc < 0 else "exit %d" % rc),
                                                   err.strip()[-800:]))
            elif SANITIZER.search(err):
                self.errors.append("%s: sanitizer report: %s" % (what, err.strip()[-800:]))

    def load(self):
        """Reads every output; a missing one reads as None."""
        def get(suffix, parse):
            p = self.prefix + suffix
            return parse(p) if os.path.exists(p) else None
        as_text = lambda p: [b.decode("utf-8", "replace") for b in lines_of(p)]  # noqa: E731
        as_json = lambda p: [json.loads(b) for b in lines_of(p)]  # noqa: E731
        self.raw = lines_of(self.corpus)
        self.x = [b.decode("utf-8", "replace") for b in self.raw]
        self.td = get(".text", as_json)
        self.tjs = get(".tjs.ids", as_text)
        self.tjs_special = get(".tjs.special", as_text)
        self.tjs_decode = get(".tjs.decode", as_json)
        self.second = {r: get(".%s.ids" % r, as_text) for r in SECOND[self.name]}
        self.rt_special = get(".rt.special", as_text)
        self.rt_plain = get(".rt.plain", as_text)
        self.rt_decode = get(".rt.decode", lambda p: lines_of(p))
        self.rand = get(".rand.ids", as_text)
        self.rand_tjs = get(".rand.tjs", as_json)
        self.rt_rand = get(".rt.rand", lambda p: lines_of(p))
        return self


def reversible(name, x):
    """Whether the tokenizer can give x back from its ids."""
    if name not in SENTENCEPIECE:
        return True
    if "\u2581" in x or any(s in x for s in SP_SPECIALS):
        return False
    if name == "spx":
        return not any(s in x for s in SPX_ADDED) and unicodedata.normalize("NFKC", x) == x
    return not (name == "spm" and x.startswith(" "))


def metaspace_rust(vocab, ids, tjs_text):
    """Hugging Face Rust's Metaspace decoder drops every '▁' of the first
    token (Tokenizers.js only a leading one): tjs_text redone that way."""
    if not ids:
        return tjs_text
    tok = vocab.text.get(int(ids[0]), "")
    if re.fullmatch(r"<0x[0-9A-F]{2}>", tok) or tok in SP_SPECIALS:
        return tjs_text
    js = tok.replace("\u2581", " ")
    js = js[1:] if js.startswith(" ") else js
    return tok.replace("\u2581", "") + tjs_text[len(js):]


def first_diff(a, b):
    a, b = a.split(), b.split()
    k = 0
    while k < min(len(a), len(b)) and a[k] == b[k]:
        k += 1
    return k, a, b


def clip(s, n=200, at=0):
    """repr of s, or of a window of it around index at when s is long."""
    r = repr(s)
    if len(r) <= n:
        return r
    lo = max(0, min(at - n // 4, len(s) - n // 2))
    return "%s%s...(%d in all)" % ("[%d:] " % lo if lo else "", repr(s[lo:lo + n // 2]), len(s))


def describe_ids(vocab, i, raw, got, want, got_name, want_name):
    k, a, b = first_diff(got, want)
    lo = max(0, k - 3)
    return ["line %d: %s" % (i + 1, clip(raw, at=vocab.nbytes(b[:k]))),
            "  first difference at id #%d (of %d / %d):" % (k, len(a), len(b)),
            "  %-14s ...%s" % (got_name + ":", vocab.show(a[lo:k + 4])),
            "  %-14s ...%s" % (want_name + ":", vocab.show(b[lo:k + 4]))]


class Test:
    def __init__(self, args):
        self.args, self.n, self.n_fail = args, 0, 0
        self.minimize_left = MINIMIZE_BUDGET

    def report(self, name, problems, detail=None):
        self.n += 1
        if problems:
            self.n_fail += 1
            print("FAIL %s: %s" % (name, "; ".join(problems)))
            for d in detail or []:
                print("    " + d)
        else:
            print("PASS %s%s" % (name, ": " + detail[0] if detail else ""))
        sys.stdout.flush()

    # ---- shrinking a failing line

    def shrink(self, side, i, fails):
        """A smaller line than side.raw[i] for which fails(side2, 0) holds."""
        units = re.findall(rb"[\x00-\x7f]|[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}"
                           rb"|[\xf0-\xf4][\x80-\xbf]{3}|[\x80-\xff]", side.raw[i])
        n, rounds, t0 = 2, 0, time.monotonic()
        work = tempfile.mkdtemp(prefix="shrink-", dir=self.tmp)
        while len(units) >= 2 and rounds < 60 and self.minimize_left > time.monotonic() - t0:
            rounds += 1
            size = -(-len(units) // n)
            cands = [units[:k] + units[k + size:] for k in range(0, len(units), size)]
            cands = [c for c in cands if c] or [units[:1]]
            hit = self.first_failing(side.name, work, rounds, [b"".join(c) for c in cands], fails)
            if hit is not None:
                units = cands[hit]
                n = max(n - 1, 2)
            elif n >= len(units):
                break
            else:
                n = min(len(units), 2 * n)
        self.minimize_left -= time.monotonic() - t0
        return b"".join(units)

    def first_failing(self, name, work, k, lines, fails):
        corpus = os.path.join(work, "c%d.txt" % k)
        with open(corpus, "wb") as f:
            f.write(b"".join(ln + b"\n" for ln in lines))
        s = Side(name, corpus, os.path.join(work, "c%d" % k))
        s.reference(self.args.node, self.tokdir, tjs_only=True)
        s.ramtrain(self.args.ramtrain, os.path.join(self.tokdir, name, "tokenizer.json"))
        s.load()
        for j in range(len(lines)):
            try:
                if fails(s, j):
                    return j
            except (TypeError, IndexError):
                return None
        return None

    def run_alone(self, name, line, work):
        """Side with the outputs for line as the only line of a corpus."""
        corpus = os.path.join(work, "m.txt")
        with open(corpus, "wb") as f:
            f.write(line + b"\n")
        s = Side(name, corpus, os.path.join(work, "m"))
        s.reference(self.args.node, self.tokdir, tjs_only=True)
        s.ramtrain(self.args.ramtrain, os.path.join(self.tokdir, name, "tokenizer.json"))
        return s.load()

    def minimal(self, side, i, fails, show):
        if self.minimize_left <= 0:
            return ["(no time left to shrink line %d)" % (i + 1)]
        s = self.run_alone(side.name, side.raw[i], tempfile.mkdtemp(prefix="alone-", dir=self.tmp))
        try:
            alone = fails(s, 0)
        except (TypeError, IndexError):
            alone = True
        if not alone:
            return ["line %d passes when it is the only line: the result depends on the lines "
                    "before it (state kept from line to line?)" % (i + 1)]
        m = self.shrink(side, i, fails)
        s = self.run_alone(side.name, m, tempfile.mkdtemp(prefix="minimal-", dir=self.tmp))
        return ["minimal input: %r (UTF-8 bytes; printf '%%s\\n' it into `ramtrain tokenize`)" % m] + \
            ["  " + ln for ln in show(s, 0)]

    # ---- the checks of one tokenizer

    def check_lines(self, side, title, bad, total, fails, show, extra=""):
        if not bad:
            self.report(title, [], ["%d lines%s" % (total, extra)])
            return
        detail = []
        for i in bad[:SHOW]:
            detail += show(side, i)
        detail += self.minimal(side, bad[0], fails, show)
        self.report(title, ["%d of %d lines differ%s" % (len(bad), total, extra)], detail)

    def check(self, side):
        name, v = side.name, Vocab(os.path.join(self.tokdir, side.name, "tokenizer.json"))
        n = len(side.raw)
        if side.errors:
            self.report(name + ": runs", side.errors)
        if any(o is None or len(o) != n for o in (side.tjs, side.tjs_special, side.tjs_decode)):
            self.report(name + ": Tokenizers.js output", ["missing or short"])
            return
        self.check_references(side, v)
        self.check_ids(side, v, "rt_plain", "tjs", "ramtrain tokenize --no-special == "
                       "Tokenizers.js encode(x, add_special_tokens=False)")
        self.check_ids(side, v, "rt_special", "tjs_special", "ramtrain tokenize == Tokenizers.js encode(x)")
        self.check_bos(side)
        self.check_decode(side, v)
        self.check_random_decode(side, v)

    def check_references(self, side, v):
        """The references among themselves, and Tokenizers.js's round trip."""
        name, n = side.name, len(side.raw)
        skip = set(i for i in range(n) if name in SPLIT_REGEX and
                   ("\x85" in side.x[i] or "\ufeff" in side.x[i]))
        for r in SECOND[name]:
            title = "%s: references agree: Tokenizers.js == %s" % (name, REF_NAMES[r])
            o = side.second[r]
            if o is None or len(o) != n:
                self.report(title, ["no output"])
                continue
            bad = [i for i in range(n) if i not in skip and o[i] != side.tjs[i]]
            if bad:
                self.report(title, ["%d lines differ" % len(bad)], [
                    ln for i in bad[:SHOW]
                    for ln in describe_ids(v, i, side.x[i], o[i], side.tjs[i], REF_NAMES[r], "Tokenizers.js")])
            else:
                self.report(title, [], ["%d lines%s" % (n - len(skip), " (%d with U+0085/U+FEFF left out)"
                                                        % len(skip) if skip else "")])
        rev = [i for i in range(n) if reversible(name, side.x[i])]
        bad = [i for i in rev if side.tjs_decode[i] != side.x[i]]
        title = name + ": Tokenizers.js decode(encode(x)) == x"
        if bad:
            self.report(title, ["%d lines differ" % len(bad)], [
                "line %d: %s -> %s" % (i + 1, clip(side.x[i]), clip(side.tjs_decode[i])) for i in bad[:SHOW]])
        else:
            self.report(title, [], ["%d of %d lines%s" % (
                len(rev), n, "" if len(rev) == n else " (the others cannot come back by design)")])

    def check_ids(self, side, v, got_attr, want_attr, what):
        """ramtrain's ids (side.<got_attr>) against the reference's, line by line."""
        title, n = "%s: %s" % (side.name, what), len(side.raw)
        got, want = getattr(side, got_attr), getattr(side, want_attr)
        if got is None or len(got) != n:
            self.report(title, ["ramtrain printed %s lines for %d" % ("no" if got is None else len(got), n)])
            return

        def fails(s, j):
            return getattr(s, got_attr)[j] != getattr(s, want_attr)[j]

        def show(s, j):
            return describe_ids(v, j, s.raw[j], getattr(s, got_attr)[j], getattr(s, want_attr)[j],
                                "ramtrain", "Tokenizers.js")
        self.check_lines(side, title, [i for i in range(n) if got[i] != want[i]], n, fails, show)

    def check_bos(self, side):
        """The default prints --no-special's ids after the BOS of the post-processor."""
        name, n = side.name, len(side.raw)
        plain, special = side.rt_plain, side.rt_special
        if plain is None or special is None or not len(plain) == n == len(special):
            return  # check_ids said so
        pre = "%d " % BOS[name] if name in BOS else ""
        bad = [i for i in range(n) if special[i] != (pre + plain[i]).strip()]
        self.report("%s: default adds %s to --no-special" % (name, "BOS %d" % BOS[name] if pre else "nothing"),
                    ["%d lines differ" % len(bad)] if bad else [],
                    ["line %d: default %r / --no-special %r" % (i + 1, special[i][:80], plain[i][:80])
                     for i in bad[:SHOW]] if bad else ["%d lines" % n])

    def check_decode(self, side, v):
        """ramtrain --decode of ramtrain's own ids: x back, or what the reference decoders give."""
        name, n, dec = side.name, len(side.raw), side.rt_decode
        if side.rt_plain is None or len(side.rt_plain) != n:
            return  # check_ids said so
        if dec is None or len(dec) != n:
            self.report(name + ": ramtrain tokenize --decode", ["printed %s lines for %d" % (
                "no" if dec is None else len(dec), n)])
            return

        def fails(s, j):
            return reversible(name, s.x[j]) and s.rt_decode[j] != s.x[j].encode()

        def show(s, j):
            d, w = s.rt_decode[j], s.x[j].encode()
            k = next((q for q in range(min(len(d), len(w))) if d[q] != w[q]), min(len(d), len(w)))
            return ["line %d: %s" % (j + 1, clip(w, at=k)),
                    "  decoded %s (first difference at byte %d)" % (clip(d, at=k), k),
                    "  ids     %s" % v.show(s.rt_plain[j].split()[:12])]
        rev = [i for i in range(n) if reversible(name, side.x[i])]
        self.check_lines(side, name + ": ramtrain decode(encode(x)) == x",
                         [i for i in rev if fails(side, i)], len(rev), fails, show,
                         "" if len(rev) == n else " (reversible lines)")
        if name not in SENTENCEPIECE:
            return

        def ok(s, j):
            if s.rt_plain[j] != s.tjs[j]:
                return True  # other ids: check_ids said so
            d = s.rt_decode[j].decode("utf-8", "surrogateescape")
            return d == s.tjs_decode[j] or (name == "spm" and
                                            d == metaspace_rust(v, s.tjs[j].split(), s.tjs_decode[j]))

        def show2(s, j):
            return show(s, j) + ["  Tokenizers.js decodes %s" % clip(s.tjs_decode[j])]
        self.check_lines(side, name + ": ramtrain --decode == reference decoders",
                         [i for i in range(n) if not ok(side, i)], n, lambda s, j: not ok(s, j), show2)

    def check_random_decode(self, side, v):
        title = "%s: ramtrain --decode == Tokenizers.js decode on random ids" % side.name
        if side.rand is None or side.rand_tjs is None or len(side.rand_tjs) != len(side.rand):
            self.report(title, ["no reference output"])
            return
        n = len(side.rand)
        if side.rt_rand is None or len(side.rt_rand) != n:
            self.report(title, ["ramtrain printed %s lines for %d" % (
                "no" if side.rt_rand is None else len(side.rt_rand), n)])
            return

        def ok(i):
            d = side.rt_rand[i].decode("utf-8", "surrogateescape")
            return d == side.rand_tjs[i] or (side.name == "spm" and d == metaspace_rust(
                v, side.rand[i].split(), side.rand_tjs[i]))
        bad = [i for i in range(n) if not ok(i)]
        self.report(title, ["%d of %d lines differ" % (len(bad), n)] if bad else [],
                    [ln for i in bad[:SHOW] for ln in [
                        "ids %s" % v.show(side.rand[i].split()),
                        "  ramtrain      %s" % clip(side.rt_rand[i]),
                        "  Tokenizers.js %s" % clip(side.rand_tjs[i])]]
                    if bad else ["%d lines of up to 12 ids (invalid UTF-8, special and byte tokens)" % n])

    # ---- main

    def main(self):
        a = self.args
        names = a.only.split(",") if a.only else NAMES
        if any(nm not in NAMES for nm in names):
            print("test_tokenizer_js: --only takes names among %s" % ",".join(NAMES))
            return 2
        self.tmp = tempfile.mkdtemp(prefix="ramtrain-tokjs-")
        t0 = time.monotonic()
        corpus = os.path.join(self.tmp, "corpus.txt")
        lines, info = tokenizer_corpus.build(seed=a.seed)
        with open(corpus, "wb") as f:
            f.write(b"".join(ln + b"\n" for ln in lines))
        size = os.path.getsize(corpus)
        sources = ", ".join("%s %d" % kv for kv in sorted(info["by_source"].items()))
        self.report("corpus has over 1 MiB of real text", [] if info["real"] >= 1 << 20 else
                    ["only %d bytes of real text on this machine" % info["real"]],
                    ["%d bytes, %d lines: real %d (%s), generated %d" % (
                        size, info["lines"], info["real"], sources, info["generated"])])
        self.tokdir = os.path.join(self.tmp, "tok")
        rc, err, dt = run([a.node, REFTOK, "build", self.tokdir, corpus])
        self.report("reftok build: tokenizer.json files from the npm packages",
                    [] if rc == 0 else ["exit %s: %s" % (rc, err.strip()[-1500:])], ["%.1f s" % dt])
        if rc != 0:
            return self.finish(t0)
        sides = {nm: Side(nm, corpus, os.path.join(self.tmp, nm)) for nm in names}
        for nm, s in sides.items():
            s.random_ids(os.path.join(self.tokdir, nm, "tokenizer.json"), RANDOM_LINES, a.seed)
        with concurrent.futures.ThreadPoolExecutor(max_workers=a.jobs) as ex:
            futs = [ex.submit(s.reference, a.node, self.tokdir) for s in sides.values()]
            futs += [ex.submit(s.reference_decode, a.node, self.tokdir) for s in sides.values()]
            futs += [ex.submit(s.ramtrain, a.ramtrain, os.path.join(self.tokdir, nm, "tokenizer.json"))
                     for nm, s in sides.items()]
            for f in futs:
                f.result()
        first = True
        for nm in names:
            s = sides[nm].load()
            if first and s.td is not None:
                bad = [i for i in range(len(s.x)) if s.td[i] != s.x[i]]
                self.report("corpus: Python's and TextDecoder's U+FFFD replacement agree",
                            ["%d lines differ, e.g. line %d: %r" % (len(bad), bad[0] + 1, s.raw[bad[0]][:80])]
                            if bad else [],
                            ["%d lines, %d of them holding U+FFFD" % (
                                len(s.x), sum("\ufffd" in x for x in s.x))])
                first = False
            self.check(s)
            print("    (%s: references %.1f s, ramtrain %s)" % (nm, getattr(s, "node_s", 0), ", ".join(
                "%s %.1f s" % kv for kv in getattr(s, "rt_s", {}).items())))
        return self.finish(t0)

    def finish(self, t0):
        print("%d checks, %d failed, %.0f s" % (self.n, self.n_fail, time.monotonic() - t0))
        if self.n_fail or self.args.keep:
            print("temp directory kept: %s" % self.tmp)
            return 1 if self.n_fail else 0
        shutil.rmtree(self.tmp, ignore_errors=True)
        return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ramtrain", required=True)
    ap.add_argument("--node", default=shutil.which("node") or shutil.which("nodejs"))
    ap.add_argument("--only", help="comma-separated subset of " + ",".join(NAMES))
    ap.add_argument("--jobs", type=int, default=max(2, min(4, os.cpu_count() or 2)))
    ap.add_argument("--keep", action="store_true", help="keep the temp directory")
    ap.add_argument("--seed", type=int, default=4, help="corpus seed (default 4)")
    a = ap.parse_args()
    if not a.node:
        print("SKIP: no node on PATH (deploy/install-deps.sh installs it)")
        return 77
    missing = [p for p in ["@huggingface/tokenizers", "gpt-3-encoder", "js-tiktoken", "llama3-tokenizer-js"]
               if not os.path.isdir(os.path.join(JS, "node_modules", p))]
    if missing:
        print("SKIP: npm packages missing in tests/js/node_modules: %s (run deploy/install-deps.sh, "
              "or `npm ci` in tests/js)" % ", ".join(missing))
        return 77
    v = subprocess.run([a.node, "--version"], stdout=subprocess.PIPE, universal_newlines=True).stdout.strip()
    if not re.match(r"v(1[89]|[2-9]\d)\.", v):
        print("SKIP: node %s is older than 18" % v)
        return 77
    return Test(a).main()


if __name__ == "__main__":
    sys.exit(main())
