"""test_run_torch: `ramtrain run` against a PyTorch twin training loop.

A small random Llama (grouped-query attention, untied head) is trained by the
real system — `ramtrain run` spawning the dataloader, the paramserver and the
worker, talking ZeroMQ over real sockets and sharing real shared memory — on
a u32 token file with data.shuffle false, AdamW with weight decay, gradient
clipping, grad_accum 2, 12 steps, fp32 on the CPU backend. The same training
runs in PyTorch: autograd of the float64 twin model (tests/torch_twin.py),
each micro-batch's mean cross-entropy divided by grad_accum, clip_grad_norm_,
torch.optim.AdamW (weight decay on tensors of two or more dimensions) with
the warmup + cosine schedule. The final checkpoint's weights must match the
twin's to 1e-4 relative (worst tensor), and the loss the run reports for
each step must match the twin's loss of that step.

Also: the step checkpoints are Hugging Face directories the twin can load,
metrics.jsonl has one line per step, and the trace is valid Chrome JSON with
copy and compute spans.

Exit 0 pass, 1 fail, 77 skip (no torch).
"""

import argparse
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
except ImportError:
    print("test_run_torch: torch not available, skipping")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_twin as tw  # noqa: E402

STEPS, K, B, T = 12, 2, 2, 16
OPT = dict(lr=3e-3, min_lr=3e-4, warmup=3, schedule="cosine", weight_decay=0.1, beta1=0.9,
           beta2=0.95, eps=1e-8, clip=0.5)

FAILS = []


def check(ok, what):
    print("%s: %s" % ("ok" if ok else "FAIL", what))
    if not ok:
        FAILS.append(what)


def lr_at(s):
    o = OPT
    if s < o["warmup"]:
        return o["lr"] * (s + 1) / o["warmup"]
    p = min(1.0, (s - o["warmup"]) / (STEPS - o["warmup"]))
    return o["min_lr"] + (o["lr"] - o["min_lr"]) * 0.5 * (1 + math.cos(math.pi * p))


def twin_train(cfg, w0, tokens):
    names = list(w0.keys())
    params = {n: torch.nn.Parameter(w0[n].to(torch.float32).clone()) for n in names}
    decay = [params[n] for n in names if params[n].dim() >= 2]
    no_decay = [params[n] for n in names if params[n].dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": OPT["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=OPT["lr"], betas=(OPT["beta1"], OPT["beta2"]), eps=OPT["eps"],
                            foreach=False)
    losses = []
    for s in range(STEPS):
        acc = {n: torch.zeros_like(params[n]) for n in names}
        step_loss = 0.0
        for m in range(K):
            k = s * K + m
            rows = [tokens[(k * B + r) * T:(k * B + r) * T + T + 1] for r in range(B)]
            loss, g = tw.loss_and_grads(cfg, {n: params[n].detach() for n in names}, rows)
            step_loss += loss
            for n in names:
                acc[n] += g[n].to(torch.float32) / K
        losses.append(step_loss / K)
        for n in names:
            params[n].grad = acc[n]
        g64 = [torch.nn.Parameter(torch.zeros(params[n].shape, dtype=torch.float64)) for n in names]
        for p64, n in zip(g64, names):
            p64.grad = params[n].grad.double()
        total = torch.nn.utils.clip_grad_norm_(g64, OPT["clip"])
        coef = torch.clamp(OPT["clip"] / (total + 1e-6), max=1.0).float()
        for n in names:
            params[n].grad.mul_(coef)
        for grp in opt.param_groups:
            grp["lr"] = lr_at(s)
        opt.step()
    return {n: params[n].detach() for n in names}, losses


def rel_err(a, b):
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / max(float(b.abs().max()), 1e-30))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ramtrain", required=True)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="ramtrain-run-torch-")
    ok = False
    try:
        import random
        rng = random.Random(5)
        cfg_d = tw.random_config(rng, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, vocab_size=97,
                                 max_position_embeddings=64, tie_word_embeddings=False)
        cfg_d.pop("head_dim", None)
        mdir = os.path.join(tmp, "model")
        os.makedirs(mdir)
        tw.write_config(os.path.join(mdir, "config.json"), cfg_d)
        cfg = tw.load_config(os.path.join(mdir, "config.json"))
        w0 = tw.init_weights(cfg, 11)
        tw.write_safetensors(os.path.join(mdir, "model.safetensors"), w0)
        n_tok = STEPS * K * B * T + 1
        g = np.random.default_rng(3)
        tokens = g.integers(0, cfg.vocab, size=n_tok, dtype=np.int64)
        with open(os.path.join(tmp, "tokens.u32"), "wb") as f:
            f.write(struct.pack("<%dI" % n_tok, *[int(t) for t in tokens]))
        run_yaml = os.path.join(tmp, "run.yaml")
        with open(run_yaml, "w") as f:
            f.write("""model:
  path: model
data:
  sources:
    - {path: tokens.u32, format: u32}
  shuffle: false
  eos_id: 0
train:
  steps: %d
  batch_size: %d
  seq_len: %d
  grad_accum: %d
  lr: %r
  min_lr: %r
  warmup: %d
  schedule: %s
  weight_decay: %r
  beta1: %r
  beta2: %r
  eps: %r
  clip: %r
compute: {device: cpu, dtype: fp32, prefetch: 2, resident: none}
checkpoint: {every: 5, keep: 0}
""" % (STEPS, B, T, K, OPT["lr"], OPT["min_lr"], OPT["warmup"], OPT["schedule"],
                OPT["weight_decay"], OPT["beta1"], OPT["beta2"], OPT["eps"], OPT["clip"]))
        run_dir = os.path.join(tmp, "run")
        trace = os.path.join(tmp, "trace.json")
        p = subprocess.run([args.ramtrain, "run", run_yaml, "--run-dir", run_dir, "--trace", trace],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
        print(p.stdout[-3000:])
        check(p.returncode == 0, "ramtrain run exits 0 (got %d)" % p.returncode)
        final = os.path.join(run_dir, "checkpoints", "step-%d" % STEPS)
        check(os.path.exists(os.path.join(final, "DONE")), "final checkpoint %s" % final)
        for s in (5, 10):
            check(os.path.exists(os.path.join(run_dir, "checkpoints", "step-%d" % s, "DONE")),
                  "checkpoint.every 5: step-%d" % s)
        ref, ref_losses = twin_train(cfg, w0, tokens)
        if os.path.exists(os.path.join(final, "DONE")):
            got, _, _ = tw.read_safetensors(os.path.join(final, "model.safetensors"))
            check(set(got) == set(ref), "checkpoint tensors are the model's Hugging Face names")
            worst, wname = 0.0, ""
            for n in ref:
                e = rel_err(got[n], ref[n])
                if e > worst:
                    worst, wname = e, n
            check(worst <= 1e-4, "weights after %d steps vs PyTorch twin: worst relative error "
                  "%.2e (%s), limit 1e-4" % (STEPS, worst, wname))
            moved = max(rel_err(ref[n], w0[n].float()) for n in ref)
            check(moved > 1e-3, "training moved the weights (%.2e relative)" % moved)
        mpath = os.path.join(run_dir, "metrics.jsonl")
        lines = [json.loads(l) for l in open(mpath)] if os.path.exists(mpath) else []
        check(len(lines) == STEPS, "metrics.jsonl has %d lines (%d steps)" % (len(lines), STEPS))
        if len(lines) == STEPS:
            worst = max(abs(l["loss"] - ref_losses[l["step"]]) / ref_losses[l["step"]] for l in lines)
            check(worst <= 1e-5, "step losses vs twin: worst relative error %.2e" % worst)
        try:
            events = json.load(open(trace))
            names = {e.get("name") for e in events}
            check("copy W" in names and "layer fwd" in names and "layer bwd" in names
                  and "copy G" in names, "trace is JSON with copy and compute spans")
        except (OSError, ValueError) as e:
            check(False, "trace: %s" % e)
        ok = not FAILS
    finally:
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("test_run_torch: kept %s" % tmp)
    print("test_run_torch: %s" % ("PASS" if ok else "FAIL: " + "; ".join(FAILS)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
