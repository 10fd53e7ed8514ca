"""test_run_default: the README's main job, `ramtrain run` with no config.

It writes its generated corpus into the run directory, trains the embedded
small byte-level Llama on it with the three services, and prints a sample.
Checked: exit 0; the resolved config and the corpus are in the run
directory; the final loss is well below the unigram baseline (the entropy,
in nats, of the corpus's byte frequencies: what a model that ignores context
can reach); the loss in metrics.jsonl falls; a sample follows the summary;
the final checkpoint loads in `ramtrain eval` with the same loss order.

In a sanitizer build (10x slower) the run is cut to 40 steps and only the
falling loss is checked.

Exit 0 pass, 1 fail.
"""

import argparse
import collections
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

FAILS = []


def check(ok, what):
    print("%s: %s" % ("ok" if ok else "FAIL", what), flush=True)
    if not ok:
        FAILS.append(what)


def sanitized(binary):
    try:
        out = subprocess.run(["ldd", binary], stdout=subprocess.PIPE, text=True).stdout
    except OSError:
        return False
    return "libasan" in out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ramtrain", required=True)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="ramtrain-run-default-")
    ok = False
    try:
        short = sanitized(args.ramtrain)
        rd = os.path.join(tmp, "run")
        cmd = [args.ramtrain, "run", "--run-dir", rd]
        if short:
            cmd += ["--set", "train.steps=40", "--set", "train.warmup=5"]
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=1800)
        print(p.stdout[-2500:])
        check(p.returncode == 0, "ramtrain run exits 0 (got %d)" % p.returncode)
        corpus = os.path.join(rd, "data", "corpus.txt")
        check(os.path.exists(os.path.join(rd, "config.yaml")), "resolved config.yaml in the run dir")
        check(os.path.getsize(corpus) > 100000 if os.path.exists(corpus) else False,
              "generated corpus in the run dir")
        lines = [json.loads(l) for l in open(os.path.join(rd, "metrics.jsonl"))]
        check(len(lines) >= 40, "metrics.jsonl has a line per step (%d)" % len(lines))
        last = float("nan")
        if len(lines) >= 40:
            first = sum(l["loss"] for l in lines[:5]) / 5
            last = sum(l["loss"] for l in lines[-5:]) / 5
            check(last < first * 0.8, "loss falls: %.3f -> %.3f" % (first, last))
            if not short:
                data = open(corpus, "rb").read()
                counts = collections.Counter(data)
                n = len(data)
                unigram = -sum(c / n * math.log(c / n) for c in counts.values())
                check(last < 0.6 * unigram, "final loss %.3f nats well below the unigram baseline "
                      "%.3f nats (limit 0.6x)" % (last, unigram))
        ck = os.path.join(rd, "checkpoints", "step-%d" % len(lines))
        dy = os.path.join(tmp, "eval.yaml")
        with open(dy, "w") as f:
            f.write("seq_len: 128\nbatch_rows: 8\nshuffle: false\neos_id: 10\nsources:\n"
                    "  - {path: \"%s\", format: text, split: blank_lines}\n" % corpus)
        e = subprocess.run([args.ramtrain, "eval", "--model", ck, "--data", dy, "--max-batches", "4"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
        ev = dict(l.split(None, 1) for l in e.stdout.splitlines() if " " in l)
        check(e.returncode == 0 and "loss" in ev and len(lines) >= 5 and
              abs(float(ev["loss"]) - last) < 0.5 * last,
              "ramtrain eval of the final checkpoint: loss %s (training's last %.3f)"
              % (ev.get("loss"), last if len(lines) >= 5 else float("nan")))
        check("sample (ramtrain generate" in p.stdout and "Once upon a time" in p.stdout.split("sample (")[-1],
              "a generated sample follows the summary")
        ok = not FAILS
    finally:
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("test_run_default: kept %s" % tmp)
    print("test_run_default: %s" % ("PASS" if ok else "FAIL: " + "; ".join(FAILS)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
