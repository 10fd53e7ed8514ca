"""The main job: `ramtrain demo` trains the embedded model, its loss falls,
and the checkpoint it writes is a Hugging Face checkpoint that `ramtrain
grad` and the PyTorch twin's reader both load."""
import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_twin  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ramtrain", required=True)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="ramtrain-demo-")
    ok = True
    out = os.path.join(tmp, "model")
    p = subprocess.run([a.ramtrain, "demo", "--steps", "40", "--out", out],
                       capture_output=True, text=True)
    print(p.stdout, end="")
    losses = [float(x) for x in re.findall(r"^step +\d+ +loss ([0-9.]+)", p.stdout, re.M)]
    if p.returncode != 0 or len(losses) < 3:
        print("FAIL: demo exited %d: %s" % (p.returncode, p.stderr))
        ok = False
    elif not losses[-1] < losses[0] - 1.0:
        print("FAIL: loss did not fall by 1 nat: %s" % losses)
        ok = False
    if ok:
        cfg = torch_twin.load_config(os.path.join(out, "config.json"))
        weights, _, _ = torch_twin.read_safetensors(os.path.join(out, "model.safetensors"))
        names = set(torch_twin.weight_shapes(cfg))
        if set(weights) != names:
            print("FAIL: checkpoint tensors differ from the config's: %s" % (set(weights) ^ names))
            ok = False
        tok = os.path.join(tmp, "tok.bin")
        torch_twin.write_tokens(tok, torch_twin.random_rows(random.Random(1), cfg.vocab, 2, 16))
        g = subprocess.run([a.ramtrain, "grad", "--model", out, "--tokens", tok, "--batch", "2",
                            "--seq", "16", "--out", os.path.join(tmp, "g.safetensors")],
                           capture_output=True, text=True)
        if g.returncode != 0:
            print("FAIL: grad on the demo's checkpoint: %s" % g.stderr)
            ok = False
    if ok:
        shutil.rmtree(tmp)
        print("1 passed, 0 failed")
        return 0
    print("kept %s" % tmp)
    print("0 passed, 1 failed")
    return 1


if __name__ == "__main__":
    sys.exit(main())
