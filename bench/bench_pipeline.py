#!/usr/bin/python3
"""bench_pipeline: the worker's streaming pipeline on the CPU backend.

Runs the same training with `ramtrain run` (the real services) three ways and
prints the median step time of each, after warm-up steps:

  P = 1       one weight buffer: every block's copy and its compute take turns;
  P = 2       two buffers: block i+1 is copied while block i computes;
  resident    every block kept resident in the worker: each block is copied
              once per step (the reference: no streaming cost at all).

Ratios printed: P=1 / resident and P=2 / resident (1.0 = streaming costs
nothing), and P=2 / P=1. From the P=2 run's trace (Chrome trace-event JSON,
--trace) it also measures how much of the copy-in time ran while the compute
path was busy, the overlap the pipeline exists for.

The model is chosen so that copying matters: bf16 blocks (the copy converts
to fp32) and few tokens per micro-batch. Usage:
  bench/bench_pipeline.py [--ramtrain build/bin/ramtrain] [--steps N] [--hidden H]
"""

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile


def write_inputs(tmp, a):
    heads = max(1, a.hidden // 64)
    cfg = {"model_type": "llama", "hidden_size": a.hidden, "intermediate_size": a.hidden * 8 // 3 // 64 * 64,
           "num_hidden_layers": a.layers, "num_attention_heads": heads,
           "num_key_value_heads": max(1, heads // 2), "vocab_size": 4096,
           "max_position_embeddings": 1024, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
           "tie_word_embeddings": False, "initializer_range": 0.02}
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(cfg, f)
    n = (a.steps + 2) * a.batch * a.seq * 2 + 1
    with open(os.path.join(tmp, "tokens.u32"), "wb") as f:
        f.write(struct.pack("<%dI" % n, *[(i * 2654435761) % 4096 for i in range(n)]))
    with open(os.path.join(tmp, "run.yaml"), "w") as f:
        f.write("""model: {config: config.json, seed: 1}
data:
  sources: [{path: tokens.u32, format: u32}]
  shuffle: false
  eos_id: 0
train: {steps: %d, batch_size: %d, seq_len: %d, grad_accum: 2, lr: 1e-4, clip: 1.0}
compute: {device: cpu, dtype: bf16}
checkpoint: {every: 0, keep: 1}
""" % (a.steps, a.batch, a.seq))
    n_params = (a.hidden * a.hidden * 3 + 3 * a.hidden * cfg["intermediate_size"]) * a.layers
    return cfg, n_params


def run(a, tmp, name, sets, trace=None):
    rd = os.path.join(tmp, name)
    cmd = [a.ramtrain, "run", os.path.join(tmp, "run.yaml"), "--run-dir", rd]
    for s in sets:
        cmd += ["--set", s]
    if trace:
        cmd += ["--trace", trace]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        sys.exit("bench_pipeline: %s failed:\n%s" % (name, p.stdout[-3000:]))
    lines = [json.loads(l) for l in open(os.path.join(rd, "metrics.jsonl"))]
    secs = [l["seconds"] for l in lines if l["step"] >= a.warmup]
    comp = [l["compute_s"] for l in lines if l["step"] >= a.warmup]
    wait = [l["wait_weights_s"] for l in lines if l["step"] >= a.warmup]
    return statistics.median(secs), statistics.median(comp), statistics.median(wait)


def overlap(trace):
    ev = [e for e in json.load(open(trace)) if e.get("ph") == "X"]
    comp = sorted((e["ts"], e["ts"] + e["dur"]) for e in ev if e["tid"] == 1 and e["name"] != "wait weights")
    copy = [(e["ts"], e["ts"] + e["dur"]) for e in ev if e["tid"] == 2 and e["name"] == "copy W"]
    total = sum(b - a for a, b in copy)
    inside = 0.0
    for a, b in copy:
        for c, d in comp:
            if c >= b:
                break
            if d > a:
                inside += min(b, d) - max(a, c)
    return total, inside


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--ramtrain", default=os.path.join(here, "..", "build", "bin", "ramtrain"))
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seq", type=int, default=64)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-pipeline-")
    try:
        cfg, n_params = write_inputs(tmp, a)
        print("bench_pipeline: llama hidden %d, %d layers (%.1fM layer params), bf16 blocks, "
              "%d x %d tokens x 2 micro-batches, %d steps (median after %d)"
              % (a.hidden, a.layers, n_params / 1e6, a.batch, a.seq, a.steps, a.warmup))
        trace = os.path.join(tmp, "p2.trace.json")
        r1 = run(a, tmp, "p1", ["compute.prefetch=1", "compute.resident=none"])
        r2 = run(a, tmp, "p2", ["compute.prefetch=2", "compute.resident=none"], trace)
        rr = run(a, tmp, "resident", ["compute.prefetch=2", "compute.resident=all"])
        print("%-10s %10s %10s %14s" % ("mode", "step s", "compute s", "wait weights s"))
        for name, r in (("P = 1", r1), ("P = 2", r2), ("resident", rr)):
            print("%-10s %10.4f %10.4f %14.4f" % (name, r[0], r[1], r[2]))
        total, inside = overlap(trace)
        print("P = 2 trace: copy-in %.1f ms, of it %.1f ms (%.0f%%) while compute ran"
              % (total / 1e3, inside / 1e3, 100 * inside / max(total, 1e-9)))
        print("ratio P=1 / resident: %.3f" % (r1[0] / rr[0]))
        print("ratio P=2 / resident: %.3f" % (r2[0] / rr[0]))
        print("ratio P=2 / P=1: %.3f" % (r2[0] / r1[0]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
