"""test_eval_generate: `ramtrain eval` and `ramtrain generate` against PyTorch.

The oracle is the float64 PyTorch twin of the model (torch_twin.py), not our
own code. The rows eval must see are derived here from the data loader's
documented contract (data.h, data.c: a source of n tokens has
ceil((n - 1) / T) rows, row j is tokens [jT, jT + T], padded past the end with
untrained targets; a text file is one document, its bytes then EOS, with the
built-in byte tokenizer), and the loss is the mean cross-entropy of the twin
over every trained target of one epoch.

Checks:
  - eval loss vs torch (relative error <= 1e-4): a GQA model with an untied
    head made by `ramtrain init` on a .u32 file and on a .txt file; a tied
    Qwen2 model (q/k/v biases) written by the twin as a sharded BF16
    checkpoint, on a text file through a data YAML (shuffled: one epoch is
    the same rows in any order) and with --seq-len/--batch overriding it;
    perplexity = exp(loss); tokens and batches counts; --max-batches;
  - generate: greedy ids equal torch's argmax, step by step, for 20 tokens on
    both models (a mismatch is only accepted at an exact near-tie of torch's
    logits); the text output is the prompt plus the decoded ids; temperature
    sampling repeats for a seed and differs for another; top-k 1 and a tiny
    top-p equal greedy; top-k 3 only picks torch's 3 best;
  - bad input: missing model dir, missing data file, negative temperature,
    top-p > 1 or 0, negative top-k, a prompt longer than
    max_position_embeddings, --seq-len past it: exit 2 and one line
    "ramtrain <cmd>: ..." on stderr, no crash and no sanitizer report.

Prints one line per check; exits 1 if any fails (keeping its temp
directory), 0 otherwise.

Usage: test_eval_generate.py --ramtrain PATH
"""

import argparse
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import torch_twin as tw  # noqa: E402

LOSS_TOL = 1e-4          # relative, fp32 forward vs float64
TIE_TOL = 1e-4           # a greedy pick may differ from torch's only within this of its max logit
BYTE_BOS, BYTE_EOS = 256, 257   # the built-in byte tokenizer's specials
PROMPT = "The quick brown fox"
N_NEW = 20

MODEL_A = dict(model_type="llama", hidden_size=32, intermediate_size=48, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, head_dim=8, vocab_size=259,
               max_position_embeddings=256, tie_word_embeddings=False, initializer_range=0.3,
               rms_norm_eps=1e-5, rope_theta=10000.0)
MODEL_B = dict(model_type="qwen2", hidden_size=24, intermediate_size=40, num_hidden_layers=3,
               num_attention_heads=2, num_key_value_heads=1, head_dim=12, vocab_size=259,
               max_position_embeddings=256, tie_word_embeddings=True, initializer_range=0.3,
               rms_norm_eps=1e-6, rope_theta=500000.0, attention_bias=None)
MODEL_C = dict(MODEL_A, max_position_embeddings=16)

TEXT = ("It was the best of times, it was the worst of times, it was the age of wisdom, "
        "it was the age of foolishness, it was the epoch of belief, it was the epoch of "
        "incredulity, it was the season of Light, it was the season of Darkness.\n"
        "Caf\u00e9 na\u00efve \u2014 r\u00e9sum\u00e9.\n")


class Runner:
    def __init__(self, ramtrain, tmp):
        self.ramtrain, self.tmp, self.n, self.n_fail = ramtrain, tmp, 0, 0

    def path(self, *p):
        return os.path.join(self.tmp, *p)

    def run(self, args, timeout=120):
        try:
            return subprocess.run([self.ramtrain] + [str(a) for a in args],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def report(self, name, problems, detail=""):
        self.n += 1
        if problems:
            self.n_fail += 1
            print("FAIL %s: %s" % (name, "; ".join(problems)))
        else:
            print("PASS %s%s" % (name, ": " + detail if detail else ""))
        sys.stdout.flush()

    def ok_run(self, name, args):
        """Runs ramtrain; returns stdout text, or None after reporting a failure."""
        r = self.run(args)
        if r is None:
            self.report(name, ["timed out: ramtrain %s" % " ".join(map(str, args))])
            return None
        if r.returncode != 0:
            self.report(name, ["exit %d: %s" % (r.returncode,
                                                r.stderr.decode("utf-8", "replace").strip()[-800:])])
            return None
        return r.stdout.decode("utf-8", "replace")


# ----------------------------------------------------------------------------
# the oracle
# ----------------------------------------------------------------------------


def forward_logits(cfg, w, inp):
    """The twin's forward (torch_twin.forward_loss) up to the logits: inp int64
    [B, T] -> float64 logits [B, T, vocab]."""
    B, T = inp.shape
    nh, nkv, hd = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    cos, sin = tw.rope_cos_sin(cfg, T)
    allowed = torch.arange(T).view(1, T) <= torch.arange(T).view(T, 1)
    x = w["model.embed_tokens.weight"][inp]
    for layer in range(cfg.n_layers):
        p = "model.layers.%d." % layer
        a = p + "self_attn."
        h = tw.rms_norm(x, w[p + "input_layernorm.weight"], cfg.rms_eps)
        q = tw.linear(h, w[a + "q_proj.weight"], w.get(a + "q_proj.bias"))
        k = tw.linear(h, w[a + "k_proj.weight"], w.get(a + "k_proj.bias"))
        v = tw.linear(h, w[a + "v_proj.weight"], w.get(a + "v_proj.bias"))
        q = q.view(B, T, nh, hd).transpose(1, 2)
        k = k.view(B, T, nkv, hd).transpose(1, 2)
        v = v.view(B, T, nkv, hd).transpose(1, 2)
        q = q * cos + tw.rotate_half(q) * sin
        k = k * cos + tw.rotate_half(k) * sin
        k = k.repeat_interleave(nh // nkv, dim=1)
        v = v.repeat_interleave(nh // nkv, dim=1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        s = s.masked_fill(~allowed, float("-inf"))
        o = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(B, T, nh * hd)
        x = x + tw.linear(o, w[a + "o_proj.weight"], w.get(a + "o_proj.bias"))
        h = tw.rms_norm(x, w[p + "post_attention_layernorm.weight"], cfg.rms_eps)
        m = F.silu(tw.linear(h, w[p + "mlp.gate_proj.weight"])) * tw.linear(h, w[p + "mlp.up_proj.weight"])
        x = x + tw.linear(m, w[p + "mlp.down_proj.weight"])
    x = tw.rms_norm(x, w["model.norm.weight"], cfg.rms_eps)
    head = w["model.embed_tokens.weight"] if cfg.tie_embeddings else w["lm_head.weight"]
    return x @ head.t()


def load_model(model_dir):
    cfg = tw.load_config(os.path.join(model_dir, "config.json"))
    w, _ = tw.load_checkpoint(model_dir)
    return cfg, {n: t.to(torch.float64) for n, t in w.items()}


def stream_rows(stream, T):
    """The rows of one source's token stream: (tokens [rows, T+1], mask [rows, T])."""
    n = len(stream)
    rows = (n - 2) // T + 1
    tokens = np.zeros((rows, T + 1), dtype=np.int64)
    mask = np.zeros((rows, T), dtype=bool)
    for j in range(rows):
        part = stream[j * T:j * T + T + 1]
        tokens[j, :len(part)] = part
        mask[j, :len(part) - 1] = True
    return tokens, mask


def torch_loss(cfg, w, tokens, mask):
    """Mean cross-entropy over the trained targets of rows tokens [R, T+1]."""
    tot, cnt = 0.0, 0
    for r0 in range(0, len(tokens), 8):
        t = torch.as_tensor(tokens[r0:r0 + 8])
        m = torch.as_tensor(mask[r0:r0 + 8])
        logits = forward_logits(cfg, w, t[:, :-1])
        ce = F.cross_entropy(logits.reshape(-1, cfg.vocab), t[:, 1:].reshape(-1), reduction="none")
        tot += ce[m.reshape(-1)].sum().item()
        cnt += int(m.sum())
    return tot / cnt, cnt


def last_logits(cfg, w, seq):
    return forward_logits(cfg, w, torch.tensor([seq], dtype=torch.int64))[0, -1]


# ----------------------------------------------------------------------------
# model and data files
# ----------------------------------------------------------------------------


def make_init_model(rt, name, over, seed):
    path, cfg_path = rt.path(name), rt.path(name + ".config.json")
    tw.write_config(cfg_path, tw.random_config(random.Random(seed), **over))
    r = rt.run(["init", "--config", cfg_path, "--seed", seed, "--out", path])
    if r is None or r.returncode != 0:
        raise RuntimeError("ramtrain init %s failed: %s" % (name, "" if r is None else r.stderr))
    return path


def make_twin_model(rt, name, over, seed, dtype, n_files):
    """A checkpoint written by the twin, with norms around 1 and nonzero biases."""
    path = rt.path(name)
    os.makedirs(path)
    d = tw.random_config(random.Random(seed), **over)
    tw.write_config(os.path.join(path, "config.json"), d)
    cfg = tw.parse_config(d)
    w = tw.init_weights(cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    for n in w:
        if tw.is_norm(n):
            w[n] = 1 + 0.2 * torch.randn(w[n].shape, generator=g)
        elif n.endswith(".bias"):
            w[n] = 0.2 * torch.randn(w[n].shape, generator=g)
    if n_files == 1:
        tw.write_safetensors(os.path.join(path, "model.safetensors"), w, dtype, {"format": "pt"})
    else:
        tw.write_sharded(path, w, dtype, n_files, {"format": "pt"})
    return path


def parse_eval(out):
    vals = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2:
            vals[parts[0]] = parts[1]
    return vals


# ----------------------------------------------------------------------------
# checks
# ----------------------------------------------------------------------------


def check_eval(rt, name, model, args, ref_tokens, ref_mask, B, max_batches=None):
    out = rt.ok_run(name, ["eval", "--model", model] + args)
    if out is None:
        return
    cfg, w = load_model(model)
    n_batches = -(-len(ref_tokens) // B)
    if max_batches is not None:
        n_batches = min(n_batches, max_batches)
        ref_tokens, ref_mask = ref_tokens[:n_batches * B], ref_mask[:n_batches * B]
    ref, cnt = torch_loss(cfg, w, ref_tokens, ref_mask)
    v, problems = parse_eval(out), []
    try:
        loss, ppl = float(v["loss"]), float(v["perplexity"])
        tokens, batches = int(v["tokens"]), int(v["batches"])
    except (KeyError, ValueError):
        rt.report(name, ["output lacks loss/perplexity/tokens/batches lines: %r" % out])
        return
    rel = abs(loss - ref) / abs(ref)
    if not rel <= LOSS_TOL:
        problems.append("loss %.9g, torch %.9g: relative error %.3g > %g" % (loss, ref, rel, LOSS_TOL))
    if not abs(ppl - math.exp(loss)) <= 1e-6 * math.exp(loss):
        problems.append("perplexity %.9g is not exp(loss %.9g) = %.9g" % (ppl, loss, math.exp(loss)))
    if tokens != cnt:
        problems.append("tokens %d, expected %d trained targets" % (tokens, cnt))
    if batches != n_batches:
        problems.append("batches %d, expected %d" % (batches, n_batches))
    rt.report(name, problems, "loss %.7f torch %.7f (rel %.2g), %d tokens, %d batches"
              % (loss, ref, rel, tokens, batches))


def prompt_ids(text):
    return [BYTE_BOS] + list(text.encode("utf-8"))


def gen_ids(rt, name, model, extra):
    out = rt.ok_run(name, ["generate", "--model", model, "--prompt", PROMPT, "--max-new-tokens",
                           N_NEW, "--ids"] + extra)
    if out is None:
        return None
    try:
        return [int(x) for x in out.split()]
    except ValueError:
        rt.report(name, ["--ids output is not a line of integers: %r" % out])
        return None


def check_length(ids, problems):
    if BYTE_EOS in ids[:-1]:
        problems.append("continued past EOS: %s" % ids)
    if len(ids) != N_NEW and (not ids or ids[-1] != BYTE_EOS):
        problems.append("%d ids, expected %d (or fewer ending at EOS %d)" % (len(ids), N_NEW, BYTE_EOS))


def check_greedy(rt, name, model):
    """Greedy ids vs torch's argmax at each step, given the same prefix."""
    ids = gen_ids(rt, name, model, [])
    if ids is None:
        return None
    cfg, w = load_model(model)
    seq, problems, ties = prompt_ids(PROMPT), [], 0
    torch_seq = []
    for i, t in enumerate(ids):
        lg = last_logits(cfg, w, seq)
        best = int(torch.argmax(lg))
        torch_seq.append(best)
        if not 0 <= t < cfg.vocab:
            problems.append("step %d: id %d out of range" % (i, t))
            break
        if t != best:
            gap = (lg[best] - lg[t]).item()
            if gap > TIE_TOL * lg.abs().max().item():
                problems.append("step %d: picked %d (logit %.6f), torch's argmax is %d (%.6f)"
                                % (i, t, lg[t].item(), best, lg[best].item()))
                break
            ties += 1
        seq.append(t)
    check_length(ids, problems)
    rt.report(name, problems, "%d ids equal torch's greedy%s: %s"
              % (len(ids), " (%d near-ties)" % ties if ties else "", " ".join(map(str, ids))))
    return ids


def check_text(rt, name, model, greedy):
    r = rt.run(["generate", "--model", model, "--prompt", PROMPT, "--max-new-tokens", N_NEW])
    if r is None or r.returncode != 0:
        rt.report(name, ["exit %s: %s" % (None if r is None else r.returncode,
                                          "" if r is None else r.stderr.decode("utf-8", "replace"))])
        return
    want = PROMPT.encode() + bytes(i for i in greedy if i < 256) + b"\n"
    problems = [] if r.stdout == want else ["stdout %r, expected %r" % (r.stdout, want)]
    rt.report(name, problems, "%d bytes" % len(r.stdout))


def check_sampling(rt, model, greedy):
    cfg, w = load_model(model)
    a = gen_ids(rt, "sample: temperature 1.5 seed 7", model, ["--temperature", "1.5", "--seed", "7"])
    b = gen_ids(rt, "sample: temperature 1.5 seed 7 again", model, ["--temperature", "1.5", "--seed", "7"])
    c = gen_ids(rt, "sample: temperature 1.5 seed 8", model, ["--temperature", "1.5", "--seed", "8"])
    if a is not None and b is not None and c is not None:
        problems = []
        if a != b:
            problems.append("seed 7 gave %s then %s" % (a, b))
        if a == c:
            problems.append("seeds 7 and 8 gave the same ids %s" % a)
        if a == greedy:
            problems.append("temperature 1.5 gave exactly the greedy ids")
        for ids in (a, c):
            check_length(ids, problems)
            if any(not 0 <= i < cfg.vocab for i in ids):
                problems.append("id out of range in %s" % ids)
        rt.report("sample: deterministic per seed, different across seeds", problems,
                  "seed 7: %s / seed 8: %s" % (" ".join(map(str, a)), " ".join(map(str, c))))
    for label, extra in (("top-k 1", ["--temperature", "1.0", "--top-k", "1", "--seed", "3"]),
                         ("top-p 1e-6", ["--temperature", "1.0", "--top-p", "1e-6", "--seed", "3"])):
        ids = gen_ids(rt, "sample: " + label, model, extra)
        if ids is not None:
            rt.report("sample: %s equals greedy" % label,
                      [] if ids == greedy else ["%s, greedy %s" % (ids, greedy)])
    ids = gen_ids(rt, "sample: top-k 3", model, ["--temperature", "2.0", "--top-k", "3", "--seed", "11"])
    if ids is not None:
        seq, problems = prompt_ids(PROMPT), []
        for i, t in enumerate(ids):
            lg = last_logits(cfg, w, seq)
            third = torch.topk(lg, 3).values[-1].item()
            if not 0 <= t < cfg.vocab or lg[t].item() < third - TIE_TOL * lg.abs().max().item():
                problems.append("step %d: id %d is not among torch's 3 best" % (i, t))
                break
            seq.append(t)
        if ids == greedy:
            problems.append("top-k 3 at temperature 2 gave exactly the greedy ids")
        rt.report("sample: top-k 3 picks only torch's 3 best", problems, " ".join(map(str, ids)))


def expect_error(rt, name, cmd, args, words):
    r = rt.run([cmd] + args)
    if r is None:
        rt.report(name, ["timed out"])
        return
    err = r.stderr.decode("utf-8", "replace")
    lines = [l for l in err.splitlines() if l.strip()]
    problems = []
    if r.returncode != 2:
        problems.append("exit %d, expected 2" % r.returncode)
    if "Sanitizer" in err or "runtime error" in err:
        problems.append("sanitizer report")
    if len(lines) != 1 or not lines[0].startswith("ramtrain %s: " % cmd):
        problems.append("stderr is not one line 'ramtrain %s: ...': %r" % (cmd, err[-600:]))
    elif not any(wd.lower() in lines[0].lower() for wd in words):
        problems.append("message names none of %s: %r" % (words, lines[0]))
    if r.stdout:
        problems.append("stdout not empty: %r" % r.stdout[:200])
    rt.report(name, problems, lines[0] if lines else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ramtrain", required=True, help="path of the ramtrain binary")
    args = ap.parse_args()
    ramtrain = os.path.abspath(args.ramtrain)
    if not os.access(ramtrain, os.X_OK):
        print("FAIL: %s is not an executable" % ramtrain)
        return 1
    torch.set_num_threads(1)
    tmp = tempfile.mkdtemp(prefix="ramtrain_eval_gen_")
    rt = Runner(ramtrain, tmp)
    try:
        model_a = make_init_model(rt, "llama-gqa-untied", MODEL_A, 41)
        model_b = make_twin_model(rt, "qwen2-tied-bf16", MODEL_B, 42, "BF16", 2)
        model_c = make_init_model(rt, "llama-maxpos16", MODEL_C, 43)

        # data: a .u32 file of random ids, a text file and a YAML naming it
        rng = np.random.default_rng(5)
        u32 = rng.integers(0, MODEL_A["vocab_size"], size=1000).astype("<u4")
        u32_path = rt.path("ids.u32")
        u32.tofile(u32_path)
        txt_path = rt.path("book.txt")
        with open(txt_path, "wb") as f:
            f.write(TEXT.encode("utf-8"))
        text_stream = list(TEXT.encode("utf-8")) + [BYTE_EOS]
        yaml_path = rt.path("data.yaml")
        with open(yaml_path, "w") as f:
            f.write("seq_len: 20\nbatch_rows: 4\nshuffle: true\nseed: 5\nsources:\n  - path: book.txt\n")

        tk, mk = stream_rows(u32.tolist(), 32)
        check_eval(rt, "eval u32 file, GQA untied (init F32), T=32 B=3", model_a,
                   ["--data", u32_path, "--seq-len", 32, "--batch", 3], tk, mk, 3)
        check_eval(rt, "eval u32 file --max-batches 4", model_a,
                   ["--data", u32_path, "--seq-len", 32, "--batch", 3, "--max-batches", 4], tk, mk, 3,
                   max_batches=4)
        tk, mk = stream_rows(text_stream, 24)
        check_eval(rt, "eval text file, GQA untied, T=24 B=2", model_a,
                   ["--data", txt_path, "--seq-len", 24, "--batch", 2, "--threads", 2], tk, mk, 2)
        tk, mk = stream_rows(text_stream, 20)
        check_eval(rt, "eval data YAML (text, shuffled), qwen2 tied sharded BF16", model_b,
                   ["--data", yaml_path], tk, mk, 4)
        tk, mk = stream_rows(text_stream, 16)
        check_eval(rt, "eval data YAML with --seq-len 16 --batch 3 overriding it", model_b,
                   ["--data", yaml_path, "--seq-len", 16, "--batch", 3], tk, mk, 3)

        greedy_a = check_greedy(rt, "generate greedy vs torch, GQA untied", model_a)
        greedy_b = check_greedy(rt, "generate greedy vs torch, qwen2 tied BF16", model_b)
        if greedy_a is not None:
            check_text(rt, "generate text = prompt + decoded ids", model_a, greedy_a)
            check_sampling(rt, model_a, greedy_a)
        if greedy_b is not None:
            ids = gen_ids(rt, "generate --top-k 1 on the tied model", model_b,
                          ["--temperature", "0.7", "--top-k", "1"])
            if ids is not None:
                rt.report("generate --top-k 1 on the tied model equals greedy",
                          [] if ids == greedy_b else ["%s, greedy %s" % (ids, greedy_b)])

        missing = rt.path("no-such-model")
        expect_error(rt, "eval: missing model directory", "eval",
                     ["--model", missing, "--data", u32_path], ["no-such-model"])
        expect_error(rt, "eval: missing data file", "eval",
                     ["--model", model_a, "--data", rt.path("no-such.u32")], ["no-such.u32"])
        expect_error(rt, "eval: missing data YAML", "eval",
                     ["--model", model_a, "--data", rt.path("no-such.yaml")], ["no-such.yaml"])
        expect_error(rt, "eval: --seq-len past max_position_embeddings", "eval",
                     ["--model", model_c, "--data", u32_path, "--seq-len", 17], ["max_position"])
        expect_error(rt, "eval: --batch 0", "eval",
                     ["--model", model_a, "--data", u32_path, "--batch", 0], ["--batch"])
        expect_error(rt, "eval: --max-batches -1", "eval",
                     ["--model", model_a, "--data", u32_path, "--max-batches", -1], ["--max-batches"])
        expect_error(rt, "generate: missing model directory", "generate",
                     ["--model", missing, "--prompt", "hi"], ["no-such-model"])
        for opt, val in (("--temperature", "-1"), ("--temperature", "nan"), ("--top-p", "1.5"),
                         ("--top-p", "0"), ("--top-k", "-2"), ("--max-new-tokens", "x")):
            expect_error(rt, "generate: %s %s" % (opt, val), "generate",
                         ["--model", model_a, "--prompt", "hi", opt, val], [opt])
        expect_error(rt, "generate: prompt longer than max_position_embeddings", "generate",
                     ["--model", model_c, "--prompt", "x" * 40], ["max_position_embeddings"])
    except Exception as e:   # a bug of the test itself: report it as a failure
        rt.report("test error", ["%s: %s" % (type(e).__name__, e)])
    if rt.n_fail:
        print("%d of %d checks FAILED; temp dir kept: %s" % (rt.n_fail, rt.n, tmp))
        return 1
    shutil.rmtree(tmp)
    print("all %d checks passed" % rt.n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
