"""test_run_restart: a run survives any one of its processes dying.

The same small run (a random Llama on a u32 token file, grad_accum 2, bf16
weights and gradients in the blocks, checkpoints every 4 steps) is trained
three ways with `ramtrain run`:

  reference   uninterrupted;
  kills       SIGKILL of the dataloader, the paramserver and the worker at
              random moments (several kills, each service at least once,
              each at a random delay after a random step's report), the
              orchestrator restarting each;
  restart     `ramtrain restart worker` twice on request, mid-run.

Each must finish by itself with exit 0, and its final checkpoint's
model.safetensors and optimizer.safetensors must be bitwise those of the
reference. Afterwards no process of the run is left and no shared-memory
object of the run remains.

Exit 0 pass, 1 fail.
"""

import argparse
import glob
import hashlib
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

STEPS = 40
FAILS = []


def check(ok, what):
    print("%s: %s" % ("ok" if ok else "FAIL", what), flush=True)
    if not ok:
        FAILS.append(what)


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def write_inputs(tmp):
    cfg = ('{"model_type": "llama", "hidden_size": 128, "intermediate_size": 344, '
           '"num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, '
           '"vocab_size": 211, "max_position_embeddings": 128, "rms_norm_eps": 1e-5, '
           '"rope_theta": 10000.0, "tie_word_embeddings": true, "initializer_range": 0.02}')
    with open(os.path.join(tmp, "config.json"), "w") as f:
        f.write(cfg)
    rng = random.Random(7)
    n = 200000
    with open(os.path.join(tmp, "tokens.u32"), "wb") as f:
        f.write(struct.pack("<%dI" % n, *[rng.randrange(211) for _ in range(n)]))
    with open(os.path.join(tmp, "run.yaml"), "w") as f:
        f.write("""model:
  config: config.json
  seed: 3
data:
  sources: [{path: tokens.u32, format: u32}]
  shuffle: true
  seed: 9
  eos_id: 0
train: {steps: %d, batch_size: 8, seq_len: 64, grad_accum: 2, lr: 2e-3, warmup: 2, clip: 1.0}
compute: {device: cpu, dtype: bf16, prefetch: 2, resident: none}
checkpoint: {every: 4, keep: 2}
""" % STEPS)


def procs_of(run_id):
    """{pid: cmdline} of live processes whose command line names the run id."""
    out = {}
    for d in glob.glob("/proc/[0-9]*"):
        try:
            with open(d + "/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(d + "/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if run_id in cmd and state not in ("Z", "X"):
            out[int(d.split("/")[-1])] = cmd
    return out


def service_pid(run_id, name):
    for pid, cmd in procs_of(run_id).items():
        if ("ramtrain-" + name) in cmd.split(" ")[0]:
            return pid
    return None


def steps_reported(run_dir):
    try:
        with open(os.path.join(run_dir, "metrics.jsonl")) as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


def run_id_of(run_dir, deadline):
    while time.time() < deadline:
        try:
            with open(os.path.join(run_dir, "run_id")) as f:
                rid = f.read().strip()
            if rid:
                return rid
        except OSError:
            pass
        time.sleep(0.05)
    return None


def start(args, tmp, name):
    run_dir = os.path.join(tmp, name)
    log = open(os.path.join(tmp, name + ".out"), "w")
    p = subprocess.Popen([args.ramtrain, "run", os.path.join(tmp, "run.yaml"), "--run-dir", run_dir],
                         stdout=log, stderr=subprocess.STDOUT)
    return p, run_dir


def finish(p, run_dir, tmp, name, rid, timeout=300):
    try:
        rc = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = -9
    check(rc == 0, "%s: ramtrain run exits 0 (got %s; see %s.out)" % (name, rc, name))
    final = os.path.join(run_dir, "checkpoints", "step-%d" % STEPS)
    if rid:
        time.sleep(0.2)
        left = procs_of(rid)
        check(not left, "%s: no process of the run left (%s)" % (name, left))
        shm = glob.glob("/dev/shm/*%s*" % rid) + glob.glob("/dev/hugepages/*%s*" % rid)
        check(not shm, "%s: no shared memory of the run left (%s)" % (name, shm))
    return final


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ramtrain", required=True)
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    args = ap.parse_args()
    print("test_run_restart: seed %d" % args.seed)
    rng = random.Random(args.seed)
    tmp = tempfile.mkdtemp(prefix="ramtrain-run-restart-")
    ok = False
    try:
        write_inputs(tmp)
        # reference
        p, rd = start(args, tmp, "reference")
        rid = run_id_of(rd, time.time() + 30)
        ref = finish(p, rd, tmp, "reference", rid)
        ref_hash = {f: sha(os.path.join(ref, f)) for f in ("model.safetensors", "optimizer.safetensors")} \
            if os.path.exists(os.path.join(ref, "DONE")) else None
        check(ref_hash is not None, "reference: final checkpoint written")

        # kills: each service at least once, then a few more at random
        p, rd = start(args, tmp, "kills")
        rid = run_id_of(rd, time.time() + 30)
        victims = ["dataloader", "paramserver", "worker"]
        rng.shuffle(victims)
        victims += [rng.choice(["dataloader", "paramserver", "worker"]) for _ in range(2)]
        at = sorted(rng.sample(range(1, STEPS - 2), len(victims)))
        killed = []
        for v, step in zip(victims, at):
            while p.poll() is None and steps_reported(rd) < step:
                time.sleep(0.01)
            time.sleep(rng.uniform(0, 0.15))
            pid = service_pid(rid, v) if rid else None
            deadline = time.time() + 20
            while pid is None and p.poll() is None and time.time() < deadline:
                time.sleep(0.05)
                pid = service_pid(rid, v)
            if pid is None or p.poll() is not None:
                break
            os.kill(pid, signal.SIGKILL)
            killed.append("%s@%d" % (v, steps_reported(rd)))
            # the next victim waits until this one is back, so kills do not pile up
            deadline = time.time() + 30
            while p.poll() is None and time.time() < deadline:
                q = service_pid(rid, v)
                if q is not None and q != pid:
                    break
                time.sleep(0.05)
        print("killed: %s" % ", ".join(killed))
        check(len(killed) == len(victims) and {k.split("@")[0] for k in killed} ==
              {"dataloader", "paramserver", "worker"},
              "killed each service at least once (%d kills)" % len(killed))
        final = finish(p, rd, tmp, "kills", rid)
        if ref_hash and os.path.exists(os.path.join(final, "DONE")):
            for f, h in ref_hash.items():
                check(sha(os.path.join(final, f)) == h,
                      "kills: %s bitwise equal to the uninterrupted run" % f)
        else:
            check(False, "kills: final checkpoint written")

        # restart on request
        p, rd = start(args, tmp, "restart")
        rid = run_id_of(rd, time.time() + 30)
        for step in sorted(rng.sample(range(2, STEPS - 2), 2)):
            while p.poll() is None and steps_reported(rd) < step:
                time.sleep(0.01)
            old = service_pid(rid, "worker")
            r = subprocess.run([args.ramtrain, "restart", "worker", "--run-dir", rd],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
            check(r.returncode == 0, "ramtrain restart worker at step %d: %s" % (step, r.stdout.strip()))
            deadline = time.time() + 30
            new = old
            while p.poll() is None and time.time() < deadline and new in (old, None):
                time.sleep(0.05)
                new = service_pid(rid, "worker")
            check(new not in (old, None), "a new worker replaced pid %s (now %s)" % (old, new))
        final = finish(p, rd, tmp, "restart", rid)
        if ref_hash and os.path.exists(os.path.join(final, "DONE")):
            for f, h in ref_hash.items():
                check(sha(os.path.join(final, f)) == h,
                      "restart: %s bitwise equal to the uninterrupted run" % f)
        else:
            check(False, "restart: final checkpoint written")
        ok = not FAILS
    finally:
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("test_run_restart: kept %s" % tmp)
    print("test_run_restart: %s" % ("PASS" if ok else "FAIL: " + "; ".join(FAILS)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
