"""test_vs_torch: `ramtrain grad` against the float64 PyTorch twin.

For each of a fixed list of small random models (fixed seeds, so every run is
the same) it makes a checkpoint, either with `ramtrain init` or with the
twin's own safetensors writer (F32, BF16, and F16 sharded over two files),
writes random uint32 token rows, runs `ramtrain grad`, and compares:
  - the printed `loss` with the twin's, relative error <= 1e-5;
  - the grads file: exactly the model's weight names, their shapes, F32;
  - every gradient: max|ours - ref| / max|ref| <= 1e-4.
For checkpoints from `ramtrain init` it also checks what init wrote: the
config.json reads back to the same model, every weight is there in F32,
norm weights are 1 and matrices look like normal(0, initializer_range).

Prints one line per config and one per failing tensor; exits 1 on any
failure (keeping its temp directory, whose path it prints), 0 otherwise.

Usage: test_vs_torch.py --ramtrain PATH
"""

import argparse
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402

import torch_twin as tw  # noqa: E402

GRAD_TOL = 1e-4
LOSS_TOL = 1e-5

LLAMA3_A = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 128}

# name, seed, config overrides, batch, seq, checkpoint source:
#   "init"              ramtrain init
#   ("twin", dtype, n)  the twin's writer, dtype, n files (1: model.safetensors)
CASES = [
    ("llama-mha-untied", 101,
     dict(model_type="llama", hidden_size=36, num_attention_heads=3, num_key_value_heads=3,
          head_dim=None, intermediate_size=50, vocab_size=97, num_hidden_layers=2,
          tie_word_embeddings=False, initializer_range=0.2),
     2, 7, "init"),
    ("llama-gqa2-tied-linear", 102,
     dict(model_type="llama", hidden_size=36, num_attention_heads=4, num_key_value_heads=2,
          head_dim=10, intermediate_size=50, vocab_size=61, num_hidden_layers=2,
          tie_word_embeddings=True, initializer_range=0.1,
          rope_scaling={"type": "linear", "factor": 2.0}),
     3, 13, "init"),
    ("mistral-gqa8-kv1", 103,
     dict(model_type="mistral", hidden_size=40, num_attention_heads=8, num_key_value_heads=1,
          head_dim=6, intermediate_size=44, vocab_size=101, num_hidden_layers=2,
          tie_word_embeddings=False, initializer_range=0.15, rope_theta=1000000.0,
          sliding_window=4096),
     1, 37, "init"),
    ("qwen2-gqa3-tied", 104,
     dict(model_type="qwen2", hidden_size=36, num_attention_heads=6, num_key_value_heads=2,
          head_dim=None, intermediate_size=50, vocab_size=97, num_hidden_layers=2,
          tie_word_embeddings=True, initializer_range=0.2, attention_bias=None),
     2, 13, "init"),
    ("llama-bias-gqa4-llama3-bf16", 105,
     dict(model_type="llama", attention_bias=True, hidden_size=28, num_attention_heads=4,
          num_key_value_heads=1, head_dim=8, intermediate_size=30, vocab_size=131,
          num_hidden_layers=2, tie_word_embeddings=False, initializer_range=0.2,
          rope_theta=10000.0, rope_scaling=LLAMA3_A),
     2, 29, ("twin", "BF16", 1)),
    ("llama-tied-ropeparams-f16-sharded", 106,
     dict(model_type="llama", hidden_size=44, num_attention_heads=4, num_key_value_heads=2,
          head_dim=12, intermediate_size=66, vocab_size=97, num_hidden_layers=3,
          tie_word_embeddings=True, initializer_range=0.2, rope_theta=None,
          rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                           "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                           "original_max_position_embeddings": 512}),
     3, 11, ("twin", "F16", 2)),
    ("qwen2-kv1-untied-f32", 107,
     dict(model_type="qwen2", hidden_size=20, num_attention_heads=2, num_key_value_heads=1,
          head_dim=14, intermediate_size=26, vocab_size=53, num_hidden_layers=1,
          tie_word_embeddings=False, initializer_range=0.3, attention_bias=None),
     4, 19, ("twin", "F32", 1)),
    ("llama-gqa4-3layers", 108,
     dict(model_type="llama", hidden_size=52, num_attention_heads=8, num_key_value_heads=2,
          head_dim=6, intermediate_size=70, vocab_size=89, num_hidden_layers=3,
          tie_word_embeddings=False, initializer_range=0.25, rms_norm_eps=1e-5,
          rope_theta=500000.0),
     2, 23, "init"),
]


class Case:
    def __init__(self, tmp, name):
        self.tmp, self.name, self.failures = tmp, name, []

    def fail(self, msg):
        self.failures.append(msg)


def run(cmd, timeout=120):
    try:
        return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def describe(cfg):
    return ("%s H=%d I=%d L=%d heads=%d/%d hd=%d V=%d tie=%d bias=%d%d rope=%s"
            % (cfg.model_type, cfg.hidden, cfg.intermediate, cfg.n_layers, cfg.n_heads,
               cfg.n_kv_heads, cfg.head_dim, cfg.vocab, cfg.tie_embeddings, cfg.qkv_bias,
               cfg.o_bias, cfg.rope_type))


def check_rope_branches(cfg, case):
    """A llama3 config here should exercise all three frequency bands."""
    if cfg.rope_type != "llama3":
        return
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, dtype=torch.float64) / cfg.head_dim))
    wl = 2 * math.pi / inv
    hi = (wl < cfg.rope_orig_max_pos / cfg.rope_high_freq_factor).any().item()
    lo = (wl > cfg.rope_orig_max_pos / cfg.rope_low_freq_factor).any().item()
    mid = (~(wl < cfg.rope_orig_max_pos / cfg.rope_high_freq_factor)
           & ~(wl > cfg.rope_orig_max_pos / cfg.rope_low_freq_factor)).any().item()
    if not (hi and lo and mid):
        case.fail("test bug: llama3 config does not cover all frequency bands")


def check_init_output(case, cfg_in, model_dir):
    """What `ramtrain init` wrote: config that reads back the same, all weights F32,
    norms 1, matrices ~ normal(0, initializer_range)."""
    try:
        cfg_out = tw.load_config(os.path.join(model_dir, "config.json"))
    except Exception as e:
        case.fail("init: %s/config.json: %s" % (model_dir, e))
        return None
    if cfg_out != cfg_in:
        diff = [k for k in cfg_in.__dict__ if getattr(cfg_in, k) != getattr(cfg_out, k)]
        for k in diff:
            case.fail("init: config.json %s: wrote %r, input had %r"
                      % (k, getattr(cfg_out, k), getattr(cfg_in, k)))
    try:
        w, dtypes = tw.load_checkpoint(model_dir)
    except Exception as e:
        case.fail("init: %s: %s" % (model_dir, e))
        return None
    shapes = tw.weight_shapes(cfg_in)
    for n in sorted(set(shapes) - set(w)):
        case.fail("init: missing tensor %s" % n)
    for n in sorted(set(w) - set(shapes)):
        case.fail("init: unexpected tensor %s" % n)
    for n in sorted(set(w) & set(shapes)):
        t = w[n]
        if tuple(t.shape) != tuple(shapes[n]):
            case.fail("init: %s shape %s, want %s" % (n, list(t.shape), list(shapes[n])))
            continue
        if dtypes[n] != "F32":
            case.fail("init: %s dtype %s, want F32" % (n, dtypes[n]))
        if tw.is_norm(n):
            if not torch.all(t == 1):
                case.fail("init: norm weight %s is not all ones" % n)
        elif not n.endswith(".bias"):
            std, mean, r = t.std().item(), t.mean().item(), cfg_in.init_range
            tol = 4.0 / t.numel() ** 0.5   # ~4 sigma of the sample std / mean
            if abs(std / r - 1) > max(tol * 1.5, 0.05) or abs(mean) > r * tol:
                case.fail("init: %s std %.4g mean %.3g, want normal(0, %g)" % (n, std, mean, r))
    return cfg_out


def make_twin_checkpoint(cfg, seed, model_dir, dtype, n_files):
    w = tw.init_weights(cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    for n in w:   # norms around 1 and biases nonzero, so both are really tested
        if tw.is_norm(n):
            w[n] = 1 + 0.2 * torch.randn(w[n].shape, generator=g)
        elif n.endswith(".bias"):
            w[n] = 0.2 * torch.randn(w[n].shape, generator=g)
    if n_files == 1:
        tw.write_safetensors(os.path.join(model_dir, "model.safetensors"), w, dtype,
                             {"format": "pt"})
    else:
        tw.write_sharded(model_dir, w, dtype, n_files, {"format": "pt"})


def run_case(ramtrain, tmp, name, seed, over, B, T, source):
    case = Case(tmp, name)
    rng = random.Random(seed)
    d = tw.random_config(rng, **over)
    cfg = tw.parse_config(d)
    check_rope_branches(cfg, case)
    model_dir = os.path.join(tmp, name)
    if source == "init":
        cfg_path = os.path.join(tmp, name + ".config.json")
        tw.write_config(cfg_path, d)
        r = run([ramtrain, "init", "--config", cfg_path, "--seed", str(seed), "--out", model_dir])
        if r is None or r.returncode != 0:
            case.fail("ramtrain init: %s\n%s" % ("timed out" if r is None else "exit %d" % r.returncode,
                                                 "" if r is None else r.stderr.strip()))
            return case, cfg, None
        check_init_output(case, cfg, model_dir)
        src = "init"
    else:
        _, dtype, n_files = source
        os.makedirs(model_dir)
        tw.write_config(os.path.join(model_dir, "config.json"), d)
        make_twin_checkpoint(cfg, seed, model_dir, dtype, n_files)
        src = "twin %s%s" % (dtype, " %d shards" % n_files if n_files > 1 else "")

    rows = tw.random_rows(rng, cfg.vocab, B, T)
    rows[0, 0], rows[-1, -1] = cfg.vocab - 1, 0   # both ends of the id range
    tok_path = os.path.join(tmp, name + ".tokens")
    tw.write_tokens(tok_path, rows)
    grads_path = os.path.join(tmp, name + ".grads.safetensors")
    r = run([ramtrain, "grad", "--model", model_dir, "--tokens", tok_path, "--batch", str(B),
             "--seq", str(T), "--out", grads_path])
    if r is None or r.returncode != 0:
        case.fail("ramtrain grad: %s\n%s" % ("timed out" if r is None else "exit %d" % r.returncode,
                                             "" if r is None else r.stderr.strip()))
        return case, cfg, src
    m = re.search(r"^loss\s+(\S+)\s*$", r.stdout, re.M)
    if not m:
        case.fail("ramtrain grad printed no 'loss <value>' line; stdout: %r" % r.stdout[-500:])
        return case, cfg, src
    try:
        our_loss = float(m.group(1))
    except ValueError:
        case.fail("loss value %r is not a number" % m.group(1))
        return case, cfg, src

    # the oracle, from the same checkpoint as ramtrain read, upcast to float64
    weights, _ = tw.load_checkpoint(model_dir)
    ref_cfg = tw.load_config(os.path.join(model_dir, "config.json"))
    ref_loss, ref_grads = tw.loss_and_grads(ref_cfg, weights, rows.astype("int64"))
    rel = abs(our_loss - ref_loss) / abs(ref_loss)
    case.loss = (our_loss, ref_loss, rel)
    if not rel <= LOSS_TOL:
        case.fail("loss %.9g, torch %.9g: relative error %.3g > %g" % (our_loss, ref_loss, rel, LOSS_TOL))

    try:
        grads, _, header = tw.read_safetensors(grads_path)
    except Exception as e:
        case.fail("grads file %s: %s" % (grads_path, e))
        return case, cfg, src
    for n in sorted(set(ref_grads) - set(grads)):
        case.fail("grads file lacks %s" % n)
    for n in sorted(set(grads) - set(ref_grads)):
        case.fail("grads file has unexpected tensor %s" % n)
    worst = (0.0, "")
    for n in sorted(set(grads) & set(ref_grads)):
        ours, ref = grads[n], ref_grads[n]
        if header[n]["dtype"] != "F32":
            case.fail("%s: grads dtype %s, want F32" % (n, header[n]["dtype"]))
        if tuple(ours.shape) != tuple(ref.shape):
            case.fail("%s: grads shape %s, want %s" % (n, list(ours.shape), list(ref.shape)))
            continue
        scale = ref.abs().max().item()
        err = (ours - ref).abs().max().item()
        rel_g = err / scale if scale > 0 else (0.0 if err == 0 else float("inf"))
        if not rel_g <= GRAD_TOL:   # also catches NaN
            case.fail("%s: max|ours-ref| %.3g / max|ref| %.3g = %.3g > %g"
                      % (n, err, scale, rel_g, GRAD_TOL))
        elif rel_g >= worst[0]:
            worst = (rel_g, n)
    case.worst = worst
    return case, cfg, src


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ramtrain", required=True, help="path of the ramtrain binary")
    args = ap.parse_args()
    ramtrain = os.path.abspath(args.ramtrain)
    if not os.access(ramtrain, os.X_OK):
        print("FAIL: %s is not an executable" % ramtrain)
        return 1
    torch.set_num_threads(1)
    tmp = tempfile.mkdtemp(prefix="ramtrain_vs_torch_")
    n_fail = 0
    for name, seed, over, B, T, source in CASES:
        try:
            case, cfg, src = run_case(ramtrain, tmp, name, seed, over, B, T, source)
        except Exception as e:   # a bug of the test itself: report, go on
            case, cfg, src = Case(tmp, name), None, "?"
            case.fail("test error: %s: %s" % (type(e).__name__, e))
        what = "%s [%s, B=%d T=%d, %s]" % (name, describe(cfg) if cfg else "?", B, T, src)
        if case.failures:
            n_fail += 1
            print("FAIL %s" % what)
            for f in case.failures:
                print("    %s" % f.replace("\n", "\n    "))
        else:
            ours, ref, rel = case.loss
            print("PASS %s: loss %.7f (rel err %.2g), worst grad rel err %.2g (%s)"
                  % (what, ours, rel, case.worst[0], case.worst[1]))
        sys.stdout.flush()
    if n_fail:
        print("%d of %d configs FAILED; temp dir kept: %s" % (n_fail, len(CASES), tmp))
        return 1
    shutil.rmtree(tmp)
    print("all %d configs passed" % len(CASES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
