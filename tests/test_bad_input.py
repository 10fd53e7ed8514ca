"""test_bad_input: ramtrain must refuse bad input cleanly.

Each check runs ramtrain on one broken input (a checkpoint, config.json,
tokens file or command line made by corrupting a good one) and wants:
  - exit status > 0 (an error exit, not a crash: death by a signal fails);
  - a message on stderr that names the file (or option) at fault and has a
    word about the problem;
  - no "Sanitizer" or "runtime error" text on stderr (ASan/UBSan builds).
It also checks that `ramtrain grad --out EXISTING` failing on bad tokens
leaves EXISTING untouched.

Prints one line per check; exits 1 if any fails (keeping its temp directory),
0 otherwise.

Usage: test_bad_input.py --ramtrain PATH
"""

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch_twin as tw  # noqa: E402

B, T = 2, 5

# words that say what is wrong, per kind of problem (matched case-insensitively)
W_SIZE = ["truncat", "short", "past", "beyond", "exceed", "end of", "size", "small",
          "bound", "outside", "incomplete", "larger", "length"]
W_OVERLAP = ["overlap", "alias", "hole", "gap", "offset", "contiguous"]
W_DTYPE = ["dtype", "type", "float", "unsupported"]
W_MISSING = ["missing", "not found", "absent", "lack", "no tensor", "no such"]
W_SHAPE = ["shape", "dimension", "expected", "mismatch", "want", "disagree", "size"]
W_JSON = ["json", "parse", "invalid", "syntax", "expected", "unexpected", "malformed", "end of"]
W_RANGE = ["vocab", "range", "exceed", "out of", "invalid", "too large", ">="]
W_OPTION = ["unknown", "unrecognized", "unrecognised", "invalid", "unsupported", "usage"]
W_REQUIRED = ["missing", "required", "requires", "must", "need", "expected", "usage"]
W_VALUE = ["invalid", "integer", "number", "positive", "must", "expected", "bad", "range", "> 0", ">= 1"]
W_NOFILE = ["no such", "not found", "cannot", "can't", "could not", "failed", "exist", "open"]


def opt_names(opt):
    """Ways a message may name option --opt."""
    return ["--" + opt, "'%s'" % opt, '"%s"' % opt, "`%s`" % opt]


class Runner:
    def __init__(self, ramtrain, tmp):
        self.ramtrain, self.tmp, self.n_fail, self.n = ramtrain, tmp, 0, 0

    def path(self, *p):
        return os.path.join(self.tmp, *p)

    def run(self, args, timeout=60):
        try:
            return subprocess.run([self.ramtrain] + list(args), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, universal_newlines=True,
                                  timeout=timeout, errors="replace")
        except subprocess.TimeoutExpired:
            return None

    def report(self, name, problems, detail=""):
        self.n += 1
        if problems:
            self.n_fail += 1
            print("FAIL %s: %s" % (name, "; ".join(problems)))
            if detail:
                print("    stderr: %s" % detail.strip().replace("\n", "\n            ")[:1500])
        else:
            print("PASS %s%s" % (name, ": " + detail.strip().splitlines()[0][:160] if detail.strip() else ""))
        sys.stdout.flush()

    def expect_fail(self, name, args, names, words, after=None):
        """Runs ramtrain args; wants an error exit, stderr naming one of names and
        holding one of words, and no sanitizer report. after(): extra problems."""
        r = self.run(args)
        problems = []
        if r is None:
            self.report(name, ["timed out (60 s)"])
            return
        err = r.stderr
        low = err.lower()
        if r.returncode < 0:
            problems.append("killed by signal %d" % -r.returncode)
        elif r.returncode == 0:
            problems.append("exit status 0")
        if "sanitizer" in low or "runtime error" in low:
            problems.append("sanitizer report on stderr")
        if not err.strip():
            problems.append("nothing on stderr")
        else:
            if not any(n.lower() in low for n in names):
                problems.append("stderr names none of %s" % names)
            if not any(w.lower() in low for w in words):
                problems.append("stderr has none of the words %s" % words)
        if after:
            problems += after()
        self.report(name, problems, err)


def repack(header, data, drop=()):
    """The tensors of (header, data) laid out again contiguously, without drop."""
    meta = header.get("__metadata__")
    entries = sorted((e["data_offsets"][0], n) for n, e in header.items() if n != "__metadata__")
    out_h, chunks, pos = {}, [], 0
    if meta is not None:
        out_h["__metadata__"] = meta
    for _, n in entries:
        if n in drop:
            continue
        e = dict(header[n])
        b, end = e["data_offsets"]
        chunks.append(data[b:end])
        e["data_offsets"] = [pos, pos + end - b]
        pos += end - b
        out_h[n] = e
    return out_h, b"".join(chunks)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ramtrain", required=True, help="path of the ramtrain binary")
    args = ap.parse_args()
    ramtrain = os.path.abspath(args.ramtrain)
    if not os.access(ramtrain, os.X_OK):
        print("FAIL: %s is not an executable" % ramtrain)
        return 1
    tmp = tempfile.mkdtemp(prefix="ramtrain_bad_input_")
    R = Runner(ramtrain, tmp)
    P = R.path

    # ---- a good model and good tokens, and proof that they work -------------
    rng = random.Random(7)
    good_cfg = tw.random_config(rng, model_type="llama", hidden_size=20, intermediate_size=30,
                                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                head_dim=6, vocab_size=50, tie_word_embeddings=False)
    cfg = tw.parse_config(good_cfg)
    V = cfg.vocab
    tw.write_config(P("good_config.json"), good_cfg)
    r = R.run(["init", "--config", P("good_config.json"), "--seed", "1", "--out", P("good")])
    if r is None or r.returncode != 0:
        R.report("setup: ramtrain init of a good model", ["failed"], "" if r is None else r.stderr)
        print("temp dir kept: %s" % tmp)
        return 1
    rows = tw.random_rows(rng, V, B, T)
    tw.write_tokens(P("good.tokens"), rows)

    def grad(model, tokens, out=None, batch=B, seq=T):
        return ["grad", "--model", model, "--tokens", tokens, "--batch", str(batch),
                "--seq", str(seq), "--out", out or P("grads.safetensors")]

    r = R.run(grad(P("good"), P("good.tokens")))
    R.report("setup: grad on the good model and tokens succeeds",
             [] if r is not None and r.returncode == 0 else ["failed"],
             "" if r is None or r.returncode == 0 else r.stderr)
    if R.n_fail:
        print("temp dir kept: %s" % tmp)
        return 1

    def clone(slug):
        shutil.copytree(P("good"), P(slug))
        return P(slug), P(slug, "model.safetensors")

    def model_check(name, mutate, words, extra_names=(), allow_dir=False):
        """A copy of the good model broken by mutate(dir, safetensors path). The
        message should name model.safetensors (or, with allow_dir, the model
        directory, as for a missing tensor)."""
        slug = "bad_" + re.sub(r"\W+", "_", name).strip("_")
        d, st = clone(slug)
        mutate(d, st)
        R.expect_fail(name, grad(d, P("good.tokens")),
                      ["model.safetensors"] + list(extra_names) + ([slug] if allow_dir else []),
                      words)

    # ---- broken safetensors ---------------------------------------------------
    def truncate_half(d, st):
        blob = open(st, "rb").read()
        open(st, "wb").write(blob[:len(blob) // 2])
    model_check("truncated safetensors (half the file)", truncate_half, W_SIZE)

    def truncate_header(d, st):
        blob = open(st, "rb").read()
        open(st, "wb").write(blob[:20])
    model_check("truncated safetensors (inside the header)", truncate_header, W_SIZE + ["header"])

    def truncate_len(d, st):
        open(st, "wb").write(b"\x10\x00\x00")
    model_check("truncated safetensors (3 bytes)", truncate_len, W_SIZE + ["header"])

    def overlap(d, st):
        h, data = tw.read_raw(st)
        ents = sorted((e["data_offsets"][0], n) for n, e in h.items() if n != "__metadata__")
        (_, a), (_, b) = ents[0], ents[1]
        b0, b1 = h[b]["data_offsets"]
        start = h[a]["data_offsets"][1] - 4
        h[b]["data_offsets"] = [start, start + (b1 - b0)]
        tw.write_raw(st, h, data)
    model_check("data_offsets overlap", overlap, W_OVERLAP)

    def past_end(d, st):
        h, data = tw.read_raw(st)
        last = max((n for n in h if n != "__metadata__"), key=lambda n: h[n]["data_offsets"][1])
        b0, b1 = h[last]["data_offsets"]
        h[last]["data_offsets"] = [b0 + len(data), b1 + len(data)]
        tw.write_raw(st, h, data)
    model_check("data_offsets run past the file", past_end, W_SIZE)

    def set_dtype(dt):
        def mutate(d, st):
            h, data = tw.read_raw(st)
            h["model.layers.0.mlp.up_proj.weight"]["dtype"] = dt
            tw.write_raw(st, h, data)
        return mutate
    model_check("weight stored as I32", set_dtype("I32"), W_DTYPE + ["i32", "int"])
    model_check("unknown dtype Q7", set_dtype("Q7"), W_DTYPE + ["q7", "unknown", "invalid"])

    def missing(d, st):
        h, data = tw.read_raw(st)
        h, data = repack(h, data, drop={"model.layers.1.mlp.up_proj.weight"})
        tw.write_raw(st, h, data)
    model_check("missing tensor", missing, W_MISSING + ["model.layers.1.mlp.up_proj.weight"],
                extra_names=["config.json"], allow_dir=True)

    def transposed(d, st):
        h, data = tw.read_raw(st)
        e = h["model.layers.0.mlp.gate_proj.weight"]
        e["shape"] = e["shape"][::-1]          # [I, H] -> [H, I]: same bytes, wrong shape
        tw.write_raw(st, h, data)
    model_check("tensor shape disagrees with config.json (transposed)", transposed, W_SHAPE,
                extra_names=["config.json"], allow_dir=True)

    def config_disagrees(d, st):
        c = dict(good_cfg)
        c["intermediate_size"] += 2
        tw.write_config(os.path.join(d, "config.json"), c)
    model_check("config.json intermediate_size disagrees with the tensors", config_disagrees,
                W_SHAPE, extra_names=["config.json"], allow_dir=True)

    # ---- broken config.json, for grad --model and for init --config -----------
    bad_configs = [
        ("invalid JSON", lambda: json.dumps(good_cfg)[:-25], W_JSON),
        ("valid JSON without hidden_size",
         lambda: json.dumps({k: v for k, v in good_cfg.items() if k != "hidden_size"}),
         ["hidden_size"]),
        ("unsupported model_type gpt2", lambda: json.dumps(dict(good_cfg, model_type="gpt2")),
         ["gpt2", "model_type"]),
        ("unsupported rope_scaling type yarn",
         lambda: json.dumps(dict(good_cfg, rope_scaling={"rope_type": "yarn", "factor": 4.0,
                                                         "original_max_position_embeddings": 512})),
         ["yarn"]),
    ]
    for i, (what, text, words) in enumerate(bad_configs):
        d, _ = clone("bad_config_%d" % i)
        with open(os.path.join(d, "config.json"), "w") as f:
            f.write(text())
        R.expect_fail("grad: config.json %s" % what, grad(d, P("good.tokens")), ["config.json"], words)
        cpath = P("init_config_%d.json" % i)
        with open(cpath, "w") as f:
            f.write(text())
        R.expect_fail("init: --config %s" % what,
                      ["init", "--config", cpath, "--out", P("init_out_%d" % i)],
                      [os.path.basename(cpath)], words)

    # ---- bad tokens -------------------------------------------------------------
    def tokens(name, arr=None, raw=None):
        p = P(name)
        if raw is not None:
            open(p, "wb").write(raw)
        else:
            tw.write_tokens(p, arr)
        return p

    bad = rows.copy()
    bad[1, 3] = V
    t_vocab = tokens("tokens_id_is_vocab.bin", bad)
    R.expect_fail("token id == vocab_size", grad(P("good"), t_vocab), ["tokens_id_is_vocab.bin"],
                  W_RANGE)
    bad = rows.copy()
    bad[0, 0] = 0xFFFFFFFF
    R.expect_fail("token id 0xffffffff", grad(P("good"), tokens("tokens_id_max.bin", bad)),
                  ["tokens_id_max.bin"], W_RANGE)
    raw = rows.astype("<u4").tobytes()
    R.expect_fail("tokens file one token short",
                  grad(P("good"), tokens("tokens_short.bin", raw=raw[:-4])),
                  ["tokens_short.bin"], W_SIZE + ["expected", "bytes"])
    R.expect_fail("tokens file size not a multiple of 4",
                  grad(P("good"), tokens("tokens_odd.bin", raw=raw + b"\x01\x02")),
                  ["tokens_odd.bin"], W_SIZE + ["expected", "bytes", "multiple"])
    R.expect_fail("tokens file for another --seq",
                  grad(P("good"), P("good.tokens"), seq=T + 1),
                  ["good.tokens"], W_SIZE + ["expected", "bytes"])

    # ---- missing files ------------------------------------------------------------
    R.expect_fail("grad --model of a directory that does not exist",
                  grad(P("no_such_model_dir"), P("good.tokens")), ["no_such_model_dir"], W_NOFILE)
    R.expect_fail("grad --tokens of a file that does not exist",
                  grad(P("good"), P("no_such_tokens.bin")), ["no_such_tokens.bin"], W_NOFILE)

    # ---- command line -------------------------------------------------------------
    R.expect_fail("ramtrain --bogus-option", ["--bogus-option"], ["bogus-option"], W_OPTION)
    R.expect_fail("ramtrain grad --bogus-option", grad(P("good"), P("good.tokens")) + ["--bogus-option", "1"],
                  ["bogus-option"], W_OPTION)
    R.expect_fail("ramtrain init --bogus-option",
                  ["init", "--bogus-option", "--config", P("good_config.json"), "--out", P("init_bogus")],
                  ["bogus-option"], W_OPTION)
    R.expect_fail("ramtrain frobnicate (unknown command)", ["frobnicate"], ["frobnicate"],
                  W_OPTION + ["command"])
    full = grad(P("good"), P("good.tokens"))
    for opt in ("model", "tokens", "batch", "seq", "out"):
        i = full.index("--" + opt)
        R.expect_fail("ramtrain grad without --%s" % opt, full[:i] + full[i + 2:], opt_names(opt),
                      W_REQUIRED)
    R.expect_fail("ramtrain init without --config", ["init", "--out", P("init_noconfig")],
                  opt_names("config"), W_REQUIRED)
    R.expect_fail("ramtrain init without --out", ["init", "--config", P("good_config.json")],
                  opt_names("out"), W_REQUIRED)
    R.expect_fail("ramtrain grad --batch notanumber",
                  grad(P("good"), P("good.tokens"), batch="notanumber"),
                  opt_names("batch") + ["notanumber"], W_VALUE)
    R.expect_fail("ramtrain grad --seq 0", grad(P("good"), P("good.tokens"), seq=0),
                  opt_names("seq"), W_VALUE)

    # ---- a failing grad leaves an existing --out alone -----------------------------
    existing = P("existing_grads.safetensors")
    precious = b"precious bytes that must survive\n" * 10
    open(existing, "wb").write(precious)

    def untouched():
        p = []
        if open(existing, "rb").read() != precious:
            p.append("%s was changed" % existing)
        left = [f for f in os.listdir(tmp) if f.startswith("existing_grads.safetensors") and
                P(f) != existing]
        if left:
            p.append("left behind %s" % left)
        return p
    R.expect_fail("grad --out EXISTING with bad tokens leaves EXISTING untouched",
                  grad(P("good"), t_vocab, out=existing), ["tokens_id_is_vocab.bin"], W_RANGE,
                  after=untouched)

    if R.n_fail:
        print("%d of %d checks FAILED; temp dir kept: %s" % (R.n_fail, R.n, tmp))
        return 1
    shutil.rmtree(tmp)
    print("all %d checks passed" % R.n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
