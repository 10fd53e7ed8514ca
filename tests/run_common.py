"""run_common: what the `ramtrain run` tests share.

A Ctx holds the binaries' directory, a temp directory and a private
shared-memory directory (RAMTRAIN_SHM_DIR) for the services' objects, and
counts checks. Helpers write run configs (a small random Llama on a u32
token file), start `ramtrain run` and look for what a run may leave behind:
processes whose command line names its run id, and its shared-memory
objects.
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time

import numpy as np

VOCAB = 256


class Ctx:
    def __init__(self, bin_dir, prefix):
        self.bin = os.path.abspath(bin_dir)
        self.ramtrain = os.path.join(self.bin, "ramtrain")
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        self.shm = tempfile.mkdtemp(prefix=prefix + "shm-", dir="/dev/shm")
        self.n = self.fail = 0

    def check(self, ok, what, detail=""):
        self.n += 1
        print("%s  %s" % ("ok  " if ok else "FAIL", what), flush=True)
        if not ok:
            self.fail += 1
            if detail:
                print("    " + detail.strip().replace("\n", "\n    ")[-3000:], flush=True)
        return ok

    def path(self, *p):
        return os.path.join(self.tmp, *p)

    def env(self, **extra):
        e = dict(os.environ)
        e["RAMTRAIN_SHM_DIR"] = self.shm
        e["RAMTRAIN_HUNG_S"] = "0"  # the hang tests freeze a worker: 5 heartbeats are enough
        e.pop("RAMTRAIN_BIN_DIR", None)
        e.update(extra)
        return e

    def run(self, args, timeout=120, **env):
        """ramtrain ARGS to the end: CompletedProcess (text), or None on timeout."""
        try:
            return subprocess.run([self.ramtrain] + list(args), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, universal_newlines=True,
                                  errors="replace", timeout=timeout, env=self.env(**env),
                                  cwd=self.tmp)
        except subprocess.TimeoutExpired:
            return None

    def start(self, args, **env):
        """ramtrain ARGS in the background; its output goes to files."""
        out = open(self.path("run-%d.out" % time.monotonic_ns()), "w+")
        p = subprocess.Popen([self.ramtrain] + list(args), stdout=out, stderr=subprocess.STDOUT,
                             universal_newlines=True, env=self.env(**env), cwd=self.tmp)
        p.out = out
        return p

    def finish(self):
        for n in os.listdir(self.shm):
            os.unlink(os.path.join(self.shm, n))
        print("%d checks, %d failed" % (self.n, self.fail))
        if self.fail:
            print("kept %s" % self.tmp)
            return 1
        shutil.rmtree(self.tmp, ignore_errors=True)
        shutil.rmtree(self.shm, ignore_errors=True)
        return 0


def output(p):
    """All a background run printed so far."""
    p.out.flush()
    p.out.seek(0)
    return p.out.read()


def wait(p, timeout):
    """Exit status of background run p, or None (and it is killed) after timeout."""
    try:
        return p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.wait()
        return None


def write_tokens(path, n=40000, seed=1):
    rng = np.random.default_rng(seed)
    # a learnable stream: a repeating pattern with some noise
    base = np.tile(np.arange(0, 64, dtype=np.uint32), n // 64 + 1)[:n]
    noise = rng.integers(0, VOCAB, size=n, dtype=np.uint32)
    keep = rng.random(n) < 0.8
    np.where(keep, base, noise).astype("<u4").tofile(path)


def write_config(path, tokens, steps=8, hidden=64, layers=2, batch=4, seq=32, accum=2, every=4,
                 extra=""):
    with open(path, "w") as f:
        f.write("""model:
  config:
    model_type: llama
    vocab_size: %d
    hidden_size: %d
    intermediate_size: %d
    num_hidden_layers: %d
    num_attention_heads: 4
    num_key_value_heads: 2
    max_position_embeddings: 256
    rms_norm_eps: 1.0e-5
    rope_theta: 10000.0
    tie_word_embeddings: false
  seed: 7
data:
  sources:
    - {path: %s, format: u32}
  shuffle: false
  eos_id: 0
train:
  steps: %d
  batch_size: %d
  seq_len: %d
  grad_accum: %d
  lr: 3.0e-3
  schedule: constant
  clip: 1.0
checkpoint:
  every: %d
%s""" % (VOCAB, hidden, hidden * 2, layers, tokens, steps, batch, seq, accum, every, extra))


def run_id_of(run_dir):
    try:
        return open(os.path.join(run_dir, "run_id")).read().strip()
    except OSError:
        return None


def procs_with(text):
    """[(pid, cmdline)] of live processes whose command line contains text."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            cmd = open("/proc/%s/cmdline" % d, "rb").read().replace(b"\0", b" ").decode(errors="replace")
            stat = open("/proc/%s/stat" % d).read()
        except OSError:
            continue
        if text in cmd and stat.split(")")[-1].split()[0] != "Z":
            found.append((int(d), cmd.strip()))
    return found


def shm_left(ctx, run_id):
    """Shared-memory objects of run_id in the private directory and /dev/shm."""
    left = []
    for d in (ctx.shm, "/dev/shm"):
        try:
            left += [os.path.join(d, n) for n in os.listdir(d) if n.startswith("ramtrain.%s." % run_id)]
        except OSError:
            pass
    return left


def check_clean(ctx, run_dir, what, run_id=None):
    """No process of the run alive (after a moment), no shared memory left, and no
    sanitizer report in the run's logs."""
    rid = run_id or run_id_of(run_dir)
    if rid is None:
        ctx.check(True, "%s: no run id, so nothing of it can be left" % what)
        return
    deadline = time.time() + 5
    procs = procs_with(rid)
    while procs and time.time() < deadline:
        time.sleep(0.1)
        procs = procs_with(rid)
    ctx.check(not procs, "%s: no process of run %s alive" % (what, rid), repr(procs))
    left = shm_left(ctx, rid)
    ctx.check(not left, "%s: no shared memory of run %s left" % (what, rid), repr(left))
    logs = os.path.join(run_dir, "logs")
    bad = []
    for n in sorted(os.listdir(logs)) if os.path.isdir(logs) else []:
        text = open(os.path.join(logs, n), errors="replace").read()
        if not sanitizer_free(text):
            bad.append("%s:\n%s" % (n, text[-3000:]))
    ctx.check(not bad, "%s: no sanitizer report in the services' logs" % what, "\n".join(bad))


def metrics(run_dir):
    import json
    try:
        return [json.loads(l) for l in open(os.path.join(run_dir, "metrics.jsonl")) if l.strip()]
    except OSError:
        return []


def wait_metrics(run_dir, n, p, timeout=60):
    """Waits until metrics.jsonl has n lines (True), or p exits / timeout (False)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(metrics(run_dir)) >= n:
            return True
        if p.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def sanitizer_free(text):
    return "Sanitizer" not in text and "runtime error" not in text
