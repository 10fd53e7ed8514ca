"""test_data_prepare: `ramtrain data prepare` end to end, with the byte tokenizer.

The test writes a corpus in three sources (jsonl, blank-line text, an llm.c
uint16 shard) holding distinct long documents, exact duplicates (also across
sources, also of a near duplicate), near duplicates (3 words changed in a
400-word document: Jaccard >= 0.97 over 5-byte shingles) and "medium" copies
(words changed until Jaccard is 0.58-0.68). Its reference is the ideal rule
computed here with true Jaccard similarities over sets of 5-byte shingles: a
document is an exact duplicate when its bytes equal an earlier document's,
else a near duplicate when its Jaccard similarity with an earlier kept
document reaches the threshold. The corpus keeps every similarity away from
the thresholds used (0.8, 0.3) by more than MinHash's error, so ramtrain must
agree with it exactly; the test asserts that margin before relying on it.

Checks:
  - the counts on stdout and in prepare.json, for --dedup near (thresholds 0.8
    and 0.3, which removes the medium copies too), exact and none;
  - the shards: llm.c header (magic 20240520, version 1, count = file size),
    uint16 ids that decode (ids are bytes) to the kept documents in corpus
    order, each followed by EOS 257; --shard-tokens packs whole documents
    greedily and prepare.json lists each shard's tokens and documents;
  - the same bytes with --threads 1 and 2;
  - the shards read back through the data module (a data config of
    format llmc over them, prepared again with --dedup none) give the same
    documents and the same shards; ids past 65535 give uint32 shards (magic
    20240801, version 7) that round-trip too;
  - chat data warns that its untrained prompt tokens end up in the shards;
  - bad input: missing --data or --out, bad option values, a data config error,
    a missing data file, a non-empty --out (exit 2); an --out that cannot be
    created (exit 1); each with a message naming the culprit, and nothing left
    behind.
Prints one line per check and "N passed, M failed"; exits 1 if any failed
(keeping its temp directory), 0 otherwise.

Usage: test_data_prepare.py --ramtrain PATH
"""

import argparse
import array
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile

EOS = 257
NGRAM = 5


class Checks:
    def __init__(self):
        self.n_pass = self.n_fail = 0

    def check(self, name, ok, detail=""):
        if ok:
            self.n_pass += 1
            print("PASS %s" % name)
        else:
            self.n_fail += 1
            print("FAIL %s%s" % (name, (": " + str(detail)[:2000]) if detail else ""))
        sys.stdout.flush()
        return ok


def shingles(b):
    n = min(NGRAM, len(b))
    return {b[i:i + n] for i in range(len(b) - n + 1)}


def jaccard(a, b):
    return len(a & b) / len(a | b)


# ---- the corpus ---------------------------------------------------------------------

def make_corpus(rng):
    """[(source, bytes)] in corpus order, and the kinds of each document."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = sorted({"".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(6000)})

    def doc(nwords=400):
        return [rng.choice(vocab) for _ in range(nwords)]

    def text(words):
        return " ".join(words).encode()

    def change(words, k):
        w = list(words)
        for i in rng.sample(range(len(w)), k):
            w[i] = "Q" + rng.choice(vocab)  # an uppercase Q: no such word in the vocabulary
        return w

    def medium(words):
        """words changed one at a time until Jaccard drops to 0.58-0.68."""
        base = shingles(text(words))
        w, order = list(words), rng.sample(range(len(words)), len(words))
        for i in order:
            w[i] = "Q" + rng.choice(vocab)
            j = jaccard(base, shingles(text(w)))
            if j <= 0.66:
                assert j >= 0.58, j
                return w
        raise AssertionError("medium copy not reached")

    base = [doc() for _ in range(24)]
    near = {i: change(base[i], 3) for i in (0, 2, 5, 9, 13, 20)}
    med = {i: medium(base[i]) for i in (1, 4, 11, 17)}
    A = [text(base[i]) for i in range(12)]
    seq = []  # (source, words-as-bytes)
    # source 0: jsonl
    for i in range(10):
        seq.append((0, A[i]))
    seq.append((0, text(near[0])))
    seq.append((0, A[3]))                 # exact duplicate
    seq.append((0, text(med[1])))
    seq.append((0, text(near[2])))
    seq.append((0, text(near[2])))        # exact duplicate of a near duplicate
    seq.append((0, A[10]))
    # source 1: text, blank-line separated
    seq.append((1, A[0]))                 # exact duplicate across sources
    seq.append((1, A[11]))
    seq.append((1, text(near[5])))
    seq.append((1, text(med[4])))
    seq.append((1, text(med[4])))         # exact duplicate of a medium copy
    for i in range(12, 20):
        seq.append((1, text(base[i])))
    seq.append((1, text(near[13])))
    seq.append((1, text(med[11])))
    seq.append((1, text(near[9])))
    # source 2: an llm.c shard
    seq.append((2, text(base[20])))
    seq.append((2, A[7]))                 # exact duplicate
    seq.append((2, text(near[20])))
    seq.append((2, text(med[17])))
    seq.append((2, text(base[21])))
    seq.append((2, text(base[22])))
    seq.append((2, text(base[22])))
    return seq


def write_corpus(d, seq):
    with open(os.path.join(d, "a.jsonl"), "w") as f:
        for s, b in seq:
            if s == 0:
                f.write(json.dumps({"text": b.decode()}) + "\n")
    with open(os.path.join(d, "b.txt"), "wb") as f:
        f.write(b"\n\n".join(b for s, b in seq if s == 1) + b"\n")
    ids = []
    for s, b in seq:
        if s == 2:
            ids += list(b) + [EOS]
    write_llmc(os.path.join(d, "c.bin"), ids, 2)
    with open(os.path.join(d, "data.yaml"), "w") as f:
        f.write("seq_len: 64\nbatch_rows: 2\nsources:\n"
                "  - {path: a.jsonl}\n"
                "  - {path: b.txt, split: blank_lines}\n"
                "  - {path: c.bin}\n")


def write_llmc(path, ids, width):
    hdr = [20240520, 1, len(ids)] if width == 2 else [20240801, 7, len(ids)]
    hdr += [0] * (256 - len(hdr))
    with open(path, "wb") as f:
        f.write(struct.pack("<256i", *hdr))
        f.write(array.array("H" if width == 2 else "I", ids).tobytes())


def expected(seq, mode, threshold, margins):
    """Verdicts ('keep', 'exact', 'near') by the ideal rule; records into margins
    the largest similarity with a kept document for each decided document."""
    seen, kept, out = set(), [], []
    for _, b in seq:
        if mode != "none" and b in seen:
            out.append("exact")
            continue
        seen.add(b)
        if mode == "near":
            sh = shingles(b)
            best = max((jaccard(sh, k) for k in kept), default=0.0)
            margins.append(best)
            if best >= threshold:
                out.append("near")
                continue
            kept.append(sh)
        out.append("keep")
    return out


# ---- running and reading ---------------------------------------------------------------

def run(ramtrain, args, cwd=None):
    env = dict(os.environ, RAMTRAIN_LOG="warn")
    return subprocess.run([ramtrain] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                          universal_newlines=True, errors="replace", timeout=300, env=env)


def report_counts(stdout):
    keys = {"documents read": "documents_read", "exact duplicates removed": "exact_duplicates",
            "near duplicates removed": "near_duplicates", "documents kept": "documents_kept",
            "tokens written": "tokens_written", "shards": "shards"}
    out = {}
    for line in stdout.splitlines():
        m = re.match(r"^([a-z ]+): (\d+)\b", line)
        if m and m.group(1) in keys:
            out[keys[m.group(1)]] = int(m.group(2))
    return out


def read_shard(path):
    """(magic, version, ids) of an llm.c shard, checking its size."""
    with open(path, "rb") as f:
        data = f.read()
    hdr = struct.unpack("<256i", data[:1024])
    width = 2 if hdr[0] == 20240520 else 4
    body = data[1024:]
    ids = array.array("H" if width == 2 else "I")
    ids.frombytes(body[:len(body) // width * width])
    if len(body) != hdr[2] * width:
        raise AssertionError("%s: header says %d ids, body holds %d bytes" % (path, hdr[2], len(body)))
    return hdr[0], hdr[1], list(ids)


def shard_files(d):
    return sorted(f for f in os.listdir(d) if f.startswith("shard-") and f.endswith(".bin"))


def leftovers(parent):
    return [f for f in os.listdir(parent) if ".tmp-" in f]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ramtrain", required=True, help="path of the ramtrain binary")
    args = ap.parse_args()
    rt = os.path.abspath(args.ramtrain)
    tmp = tempfile.mkdtemp(prefix="rt_test_data_prepare_")
    C = Checks()

    seq = make_corpus(random.Random(20240520))
    write_corpus(tmp, seq)
    data = os.path.join(tmp, "data.yaml")

    # the premise: every similarity is far from the thresholds used
    for t, lo, hi in ((0.8, 0.68, 0.97), (0.3, 0.15, 0.58)):
        margins = []
        expected(seq, "near", t, margins)
        bad = [m for m in margins if lo < m < hi]
        C.check("corpus premise: no similarity with a kept document in (%.2f, %.2f) at threshold %.1f"
                % (lo, hi, t), not bad, bad)

    def prepare(name, out, extra, mode, threshold, check_stream=True):
        """Runs a prepare and checks its report, prepare.json and shards against
        the reference; returns the (stdout, prepare.json) or None."""
        r = run(rt, ["data", "prepare", "--data", data, "--out", out] + extra)
        if not C.check("%s: exit 0" % name, r.returncode == 0, r.stderr):
            return None
        verdicts = expected(seq, mode, threshold, [])
        kept = [b for (s, b), v in zip(seq, verdicts) if v == "keep"]
        want = {"documents_read": len(seq), "exact_duplicates": verdicts.count("exact"),
                "near_duplicates": verdicts.count("near"), "documents_kept": len(kept),
                "tokens_written": sum(len(b) + 1 for b in kept)}
        got = report_counts(r.stdout)
        C.check("%s: counts printed %s" % (name, want),
                all(got.get(k) == v for k, v in want.items()), r.stdout)
        with open(os.path.join(out, "prepare.json")) as f:
            pj = json.load(f)
        C.check("%s: counts in prepare.json" % name,
                all(pj["counts"][k] == v for k, v in want.items()) and
                pj["counts"]["shards"] == got.get("shards") == len(shard_files(out)), pj["counts"])
        per_src = [{"documents_read": 0, "exact_duplicates": 0, "near_duplicates": 0, "documents_kept": 0}
                   for _ in range(3)]
        names = {"keep": "documents_kept", "exact": "exact_duplicates", "near": "near_duplicates"}
        for (s, _), v in zip(seq, verdicts):
            per_src[s]["documents_read"] += 1
            per_src[s][names[v]] += 1
        C.check("%s: per-source counts in prepare.json" % name,
                [{k: x[k] for k in per_src[0]} for x in pj["sources"]] == per_src, pj["sources"])
        if not check_stream:
            return r.stdout, pj
        files = shard_files(out)
        stream, problems = [], []
        for i, (fname, entry) in enumerate(zip(files, pj["shards"])):
            try:
                magic, version, ids = read_shard(os.path.join(out, fname))
            except AssertionError as e:
                problems.append(str(e))
                continue
            if (magic, version) != (20240520, 1):
                problems.append("%s: magic %d version %d" % (fname, magic, version))
            if fname != "shard-%05d.bin" % i or entry["file"] != fname or entry["tokens"] != len(ids) or \
                    entry["documents"] != ids.count(EOS):
                problems.append("%s: prepare.json says %s, the file has %d ids, %d EOS" %
                                (fname, entry, len(ids), ids.count(EOS)))
            if not ids or ids[-1] != EOS:
                problems.append("%s does not end with EOS" % fname)
            stream += ids
        want_stream = []
        for b in kept:
            want_stream += list(b) + [EOS]
        C.check("%s: shards are well formed and listed in prepare.json" % name,
                not problems and len(files) == len(pj["shards"]), problems)
        C.check("%s: the shards hold the kept documents in corpus order, each followed by EOS" % name,
                stream == want_stream, "%d ids, want %d" % (len(stream), len(want_stream)))
        return r.stdout, pj

    out = os.path.join(tmp, "out")
    res = res08 = prepare("near 0.8", out, [], "near", 0.8)
    if res:
        pj = res[1]
        C.check("near 0.8: settings in prepare.json",
                pj["dedup"] == {"mode": "near", "threshold": 0.8, "num_perm": 128, "ngram": 5, "bands": 9,
                                "rows": 13, "seed": pj["dedup"].get("seed")} and
                pj["eos_id"] == EOS and pj["id_bytes"] == 2, pj["dedup"])
        C.check("near 0.8: every kind of duplicate was present and removed",
                pj["counts"]["exact_duplicates"] >= 5 and pj["counts"]["near_duplicates"] >= 6, pj["counts"])
    res3 = prepare("near 0.3", os.path.join(tmp, "out03"), ["--threshold", "0.3"], "near", 0.3)
    if res and res3:
        C.check("--threshold 0.3 removes the medium copies too",
                res3[1]["counts"]["near_duplicates"] == res[1]["counts"]["near_duplicates"] + 4,
                (res[1]["counts"], res3[1]["counts"]))
    prepare("exact", os.path.join(tmp, "outx"), ["--dedup", "exact"], "exact", 0)
    resn = prepare("none", os.path.join(tmp, "outn"), ["--dedup", "none"], "none", 0)
    if resn:
        C.check("--dedup none keeps everything", resn[1]["counts"]["documents_kept"] == len(seq))

    # small shards: whole documents packed greedily, same stream
    small = 20000
    outs = os.path.join(tmp, "outs")
    res = prepare("--shard-tokens %d" % small, outs, ["--shard-tokens", str(small)], "near", 0.8)
    if res:
        verdicts = expected(seq, "near", 0.8, [])
        sizes, cur = [], 0
        for (s, b), v in zip(seq, verdicts):
            if v != "keep":
                continue
            if cur and cur + len(b) + 1 > small:
                sizes.append(cur)
                cur = 0
            cur += len(b) + 1
        sizes.append(cur)
        got = [e["tokens"] for e in res[1]["shards"]]
        C.check("--shard-tokens: %d shards of whole documents, packed greedily" % len(sizes),
                got == sizes and all(x <= small for x in got), (got, sizes))

    # threads: the same bytes
    out1, out2 = os.path.join(tmp, "t1"), os.path.join(tmp, "t2")
    r1 = run(rt, ["data", "prepare", "--data", data, "--out", out1, "--threads", "1", "--shard-tokens", str(small)])
    r2 = run(rt, ["data", "prepare", "--data", data, "--out", out2, "--threads", "2", "--shard-tokens", str(small)])
    same = r1.returncode == 0 and r2.returncode == 0 and sorted(os.listdir(out1)) == sorted(os.listdir(out2))
    if same:
        for f in os.listdir(out1):
            with open(os.path.join(out1, f), "rb") as a, open(os.path.join(out2, f), "rb") as b:
                same = same and a.read() == b.read()
    C.check("--threads 1 and 2 write the same bytes", same, r1.stderr + r2.stderr)

    # the shards through the data module: prepared again, nothing removed, same shards
    with open(os.path.join(tmp, "round.yaml"), "w") as f:
        f.write("seq_len: 64\nbatch_rows: 1\ncache_dir: cache\nsources:\n  - {path: \"outs/shard-*.bin\"}\n")
    outr = os.path.join(tmp, "outr")
    r = run(rt, ["data", "prepare", "--data", os.path.join(tmp, "round.yaml"), "--out", outr, "--dedup", "none",
                 "--shard-tokens", str(small)])
    ok = r.returncode == 0 and shard_files(outr) == shard_files(outs)
    for f in shard_files(outs) if ok else []:
        with open(os.path.join(outs, f), "rb") as a, open(os.path.join(outr, f), "rb") as b:
            ok = ok and a.read() == b.read()
    kept_n = expected(seq, "near", 0.8, []).count("keep")
    C.check("the data module reads the shards back: %d documents, the same shards" % kept_n,
            ok and report_counts(r.stdout).get("documents_read") == kept_n, r.stdout + r.stderr)

    # ids past 65535: uint32 shards, which round-trip too
    u32 = [70000, 1, 2, EOS, 3, 65536, EOS, 4]
    with open(os.path.join(tmp, "big.u32"), "wb") as f:
        f.write(array.array("I", u32).tobytes())
    with open(os.path.join(tmp, "u32.yaml"), "w") as f:
        f.write("seq_len: 4\nbatch_rows: 1\nsources:\n  - {path: big.u32}\n")
    ou = os.path.join(tmp, "outu")
    r = run(rt, ["data", "prepare", "--data", os.path.join(tmp, "u32.yaml"), "--out", ou])
    ok = r.returncode == 0
    try:
        ok = ok and read_shard(os.path.join(ou, "shard-00000.bin")) == (20240801, 7, u32 + [EOS])
    except AssertionError as e:
        ok, r.stderr = False, str(e)
    C.check("ids past 65535: a uint32 shard (magic 20240801, version 7)", ok, r.stdout + r.stderr)
    with open(os.path.join(tmp, "u32r.yaml"), "w") as f:
        f.write("seq_len: 4\nbatch_rows: 1\ncache_dir: cache\nsources:\n  - {path: outu/shard-00000.bin}\n")
    our = os.path.join(tmp, "outur")
    r = run(rt, ["data", "prepare", "--data", os.path.join(tmp, "u32r.yaml"), "--out", our])
    ok = r.returncode == 0 and report_counts(r.stdout).get("documents_read") == 3
    if ok:
        with open(os.path.join(ou, "shard-00000.bin"), "rb") as a, \
                open(os.path.join(our, "shard-00000.bin"), "rb") as b:
            ok = a.read() == b.read()
    C.check("uint32 shards round-trip through the data module", ok, r.stdout + r.stderr)

    # chat data: the prompt tokens lose their mask, and the command says so
    with open(os.path.join(tmp, "chat.jsonl"), "w") as f:
        f.write(json.dumps({"instruction": "Add two and two", "output": "4"}) + "\n")
        f.write(json.dumps({"instruction": "Name a colour", "output": "blue"}) + "\n")
    with open(os.path.join(tmp, "chat.yaml"), "w") as f:
        f.write("seq_len: 8\nbatch_rows: 1\nsources:\n  - {path: chat.jsonl, format: alpaca}\n")
    oc = os.path.join(tmp, "outc")
    r = run(rt, ["data", "prepare", "--data", os.path.join(tmp, "chat.yaml"), "--out", oc])
    ok = r.returncode == 0 and "does not train" in r.stderr
    if ok:
        with open(os.path.join(oc, "prepare.json")) as f:
            ok = json.load(f)["counts"]["untrained_tokens_written"] > 50
    C.check("chat data: a warning about untrained prompt tokens", ok, r.stderr)

    # ---- bad input ----
    def bad(name, argv, code, needles, cwd=None):
        r = run(rt, argv, cwd=cwd)
        low = r.stderr.lower()
        problems = []
        if r.returncode != code:
            problems.append("exit %d, want %d" % (r.returncode, code))
        problems += ["stderr lacks %r" % n for n in needles if n.lower() not in low]
        if "sanitizer" in low or "runtime error" in low:
            problems.append("sanitizer report")
        C.check("bad input: %s -> exit %d" % (name, code), not problems,
                "; ".join(problems) + " | " + r.stderr.strip()[:600])

    nowhere = os.path.join(tmp, "never")
    bad("missing --data", ["data", "prepare", "--out", nowhere], 2, ["--data"])
    bad("missing --out", ["data", "prepare", "--data", data], 2, ["--out"])
    bad("no subcommand", ["data"], 2, ["usage"])
    bad("unknown subcommand", ["data", "frobnicate"], 2, ["frobnicate"])
    bad("unknown option", ["data", "prepare", "--data", data, "--out", nowhere, "--fuzzy"], 2, ["--fuzzy"])
    bad("--dedup fuzzy", ["data", "prepare", "--data", data, "--out", nowhere, "--dedup", "fuzzy"], 2,
        ["--dedup", "fuzzy"])
    bad("--threshold 1.5", ["data", "prepare", "--data", data, "--out", nowhere, "--threshold", "1.5"], 2,
        ["--threshold", "1.5"])
    bad("--threshold 0", ["data", "prepare", "--data", data, "--out", nowhere, "--threshold", "0"], 2,
        ["--threshold"])
    bad("--num-perm 0", ["data", "prepare", "--data", data, "--out", nowhere, "--num-perm", "0"], 2,
        ["--num-perm"])
    bad("--ngram x", ["data", "prepare", "--data", data, "--out", nowhere, "--ngram", "x"], 2, ["--ngram"])
    bad("--shard-tokens 0", ["data", "prepare", "--data", data, "--out", nowhere, "--shard-tokens", "0"], 2,
        ["--shard-tokens"])
    bad("--threshold with --dedup exact",
        ["data", "prepare", "--data", data, "--out", nowhere, "--dedup", "exact", "--threshold", "0.5"], 2,
        ["--threshold", "exact"])
    bad("--data that does not exist", ["data", "prepare", "--data", os.path.join(tmp, "nope.yaml"), "--out", nowhere],
        2, ["nope.yaml"])
    with open(os.path.join(tmp, "bad.yaml"), "w") as f:
        f.write("seq_len: 64\nbatch_rows: 2\nseqlen: 3\nsources:\n  - {path: a.jsonl}\n")
    bad("a data config error", ["data", "prepare", "--data", os.path.join(tmp, "bad.yaml"), "--out", nowhere], 2,
        ["bad.yaml:3", "seqlen"])
    with open(os.path.join(tmp, "missing.yaml"), "w") as f:
        f.write("seq_len: 64\nbatch_rows: 2\nsources:\n  - {path: gone.jsonl}\n")
    bad("a data file that does not exist",
        ["data", "prepare", "--data", os.path.join(tmp, "missing.yaml"), "--out", nowhere], 2, ["gone.jsonl"])
    with open(os.path.join(tmp, "broken.jsonl"), "w") as f:
        f.write('{"text": "fine"}\n{"text": oops}\n')
    with open(os.path.join(tmp, "broken.yaml"), "w") as f:
        f.write("seq_len: 2\nbatch_rows: 1\nsources:\n  - {path: broken.jsonl}\n")
    bad("a bad line in the data", ["data", "prepare", "--data", os.path.join(tmp, "broken.yaml"), "--out", nowhere],
        2, ["broken.jsonl:2"])
    bad("--out exists and is not empty", ["data", "prepare", "--data", data, "--out", out], 2, [out, "not empty"])
    with open(os.path.join(tmp, "afile"), "w") as f:
        f.write("x")
    bad("--out inside a regular file",
        ["data", "prepare", "--data", data, "--out", os.path.join(tmp, "afile", "out")], 1, ["afile"])
    if os.geteuid() != 0:
        ro = os.path.join(tmp, "ro")
        os.mkdir(ro)
        os.chmod(ro, 0o555)
        bad("--out in a read-only directory", ["data", "prepare", "--data", data, "--out", os.path.join(ro, "o")],
            1, ["ro/o"])
        os.chmod(ro, 0o755)
    C.check("failed runs leave nothing behind", not os.path.exists(nowhere) and not leftovers(tmp),
            leftovers(tmp))
    C.check("the earlier output is untouched", res08 is not None and shard_files(out) != [] and
            sorted(os.listdir(out)) == sorted(shard_files(out) + ["prepare.json"]), os.listdir(out))

    print("%d passed, %d failed" % (C.n_pass, C.n_fail))
    if C.n_fail:
        print("temp dir kept: %s" % tmp)
        return 1
    shutil.rmtree(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
