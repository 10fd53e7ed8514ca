"""test_paramserver: the real ramtrain-paramserver against torch.optim.AdamW.

Every case starts the real service binary on a real ipc socket, with its
layer blocks in real shared memory (a private directory under /dev/shm given
through RAMTRAIN_SHM_DIR), and drives it with tests/ps_driver (which plays the
worker and the orchestrator: FetchLayer, gradients written into the G slots,
GradReady, GradNorm, ApplyStep, Checkpoint). Gradients come from files this
script writes, so PyTorch sees exactly the same ones.

Cases:
  torch_f32    20 steps x 2 micro-batches, clipping, weight decay on >= 2-D
               tensors only, warmup + cosine schedule, against torch.optim.AdamW
               + clip_grad_norm_: weights, exp_avg, exp_avg_sq <= 1e-6 relative
  torch_bf16   the same with bf16 compute: master fp32 vs torch, and W (as the
               worker reads it) == PyTorch's bf16 rounding of the master, bitwise
  threads      1, 2 and 3 optimizer threads: checkpoint files byte-identical
  sigkill      the paramserver SIGKILLed between GradReady messages and
               restarted: byte-identical to the uninterrupted run; the resent
               GradReady is acknowledged as a duplicate
  crash_inside the paramserver SIGKILLed (RAMTRAIN_FAULT) inside an
               accumulation (micro 0, micro 1), inside a resident block's step,
               inside a spilled block's step and in the middle of a spill
               write-back, restarted with 1 or 3 threads: the undo journal /
               spill slots recover it, byte-identical to the uninterrupted run
  checkpoint   resume from step-10 and train on: identical to uninterrupted;
               resume and re-save: identical files
  spill        ram_budget below the state size: optimizer state spilled to a
               file, results identical to RAM mode (io_uring and pread/pwrite)
  io_kinds     io_uring and pread/pwrite write identical checkpoint files
  errors       corrupt block header, layout that disagrees with the config,
               truncated checkpoint, checkpoint without DONE: clear errors
  messages     malformed, oversized, unknown-body and wrong-run messages get an
               ErrorReply and the service keeps serving

Prints one line per check; exits 1 if any fails (keeping the temp directory).
Usage: test_paramserver.py --paramserver BIN --driver BIN [--ramtrain BIN]
"""

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import torch_twin as tw  # noqa: E402

STEPS, MICRO = 20, 2
OPT = dict(lr=2e-2, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1,
           warmup=5, total=STEPS, min_lr=2e-3, max_norm=0.5, schedule="cosine")


class Fail(Exception):
    pass


class Ctx:
    def __init__(self, args, tmp):
        self.ps, self.driver, self.tmp = args.paramserver, args.driver, tmp
        self.ramtrain = args.ramtrain
        self.shm = tempfile.mkdtemp(prefix="rt-ps-test-", dir="/dev/shm")
        self.n_checks = 0
        self.n_fail = 0
        self.runs = 0

    def path(self, *p):
        return os.path.join(self.tmp, *p)

    def clean_shm(self, run_id):
        for name in os.listdir(self.shm):
            if name.startswith("ramtrain.%s." % run_id):
                os.unlink(os.path.join(self.shm, name))

    def check(self, ok, what):
        self.n_checks += 1
        print("%s  %s" % ("ok  " if ok else "FAIL", what), flush=True)
        if not ok:
            self.n_fail += 1
        return ok

    def env(self):
        e = dict(os.environ)
        e["RAMTRAIN_SHM_DIR"] = self.shm
        return e

    def ps_args(self, run_id, source, compute="f32", threads=2, extra=()):
        a = [self.ps, "--run-id", run_id, "--run-dir", self.path("run-" + run_id),
             "--compute", compute, "--threads", str(threads),
             "--lr", repr(OPT["lr"]), "--beta1", repr(OPT["beta1"]), "--beta2", repr(OPT["beta2"]),
             "--eps", repr(OPT["eps"]), "--weight-decay", repr(OPT["weight_decay"]),
             "--schedule", OPT["schedule"], "--warmup-steps", str(OPT["warmup"]),
             "--total-steps", str(OPT["total"]), "--min-lr", repr(OPT["min_lr"]),
             "--micro-batches", str(MICRO), "--heartbeat-ms", "200"]
        return a + list(source) + list(extra)

    def endpoint(self, run_id):
        return "ipc://" + self.path("run-" + run_id, "sock", "paramserver")

    def start(self, args, log, fault=None):
        f = open(log, "ab")
        env = self.env()
        if fault:
            env["RAMTRAIN_FAULT"] = fault
        return subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, env=env)

    def drive(self, run_id, ps_args, steps, ckpt=None, kill_after=None, dump_w=None,
              shutdown=True, remove=True, grads=None, fault=None, restart_args=None):
        """Runs the paramserver and the driver; restarts the paramserver when it
        dies of SIGKILL (the driver's --kill-after, or RAMTRAIN_FAULT=fault, set
        for the first start only), with restart_args when given. Returns (driver
        stdout, number of restarts)."""
        log = self.path("ps-%s.log" % run_id)
        ps = self.start(ps_args, log, fault)
        d = [self.driver, "--endpoint", self.endpoint(run_id), "--run-id", run_id,
             "--grads", grads or self.path("grads"), "--steps", str(steps), "--micro", str(MICRO),
             "--max-grad-norm", repr(OPT["max_norm"]), "--timeout-ms", "60000"]
        if ckpt:
            d += ["--checkpoint", ckpt]
        if kill_after:
            d += ["--kill-after", str(kill_after)]
        if dump_w:
            d += ["--dump-w", dump_w]
        if shutdown:
            d += ["--shutdown"] + (["--remove-state"] if remove else [])
        drv = subprocess.Popen(d, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env())
        restarts = 0
        deadline = time.time() + 600
        while drv.poll() is None and time.time() < deadline:
            if ps.poll() is not None and ps.returncode == -signal.SIGKILL:
                restarts += 1
                ps = self.start(restart_args or ps_args, log)
            time.sleep(0.02)
        out, err = drv.communicate(timeout=30)
        try:
            ps.wait(timeout=30)
        except subprocess.TimeoutExpired:
            ps.kill()
            ps.wait()
        if drv.returncode != 0:
            if ps.poll() is None:
                ps.kill()
                ps.wait()
            self.clean_shm(run_id)
            raise Fail("driver failed (%d): %s\nparamserver log %s:\n%s" % (
                drv.returncode, err.decode()[-2000:], log, open(log).read()[-3000:]))
        if shutdown and ps.returncode != 0:
            raise Fail("paramserver exited %d; log %s:\n%s" % (ps.returncode, log,
                                                                 open(log).read()[-3000:]))
        return out.decode(), restarts


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def ckpt_files_equal(a, b):
    return all(sha(os.path.join(a, f)) == sha(os.path.join(b, f))
               for f in ("model.safetensors", "optimizer.safetensors"))


def lr_at(step):
    """The schedule as ramtrain documents it: linear warmup over `warmup` steps
    (step s gets (s+1)/warmup of lr), then cosine or linear decay to min_lr at
    `total`, or constant."""
    o = OPT
    if step < o["warmup"]:
        return o["lr"] * (step + 1) / o["warmup"]
    if o["schedule"] == "constant":
        return o["lr"]
    p = min(1.0, (step - o["warmup"]) / (o["total"] - o["warmup"]))
    f = 0.5 * (1 + math.cos(math.pi * p)) if o["schedule"] == "cosine" else 1.0 - p
    return o["min_lr"] + (o["lr"] - o["min_lr"]) * f


def bf16_round(t):
    return t.to(torch.bfloat16).to(torch.float32)


def make_model(ctx, name, cfg_dict, seed):
    d = ctx.path(name)
    os.makedirs(d)
    tw.write_config(os.path.join(d, "config.json"), cfg_dict)
    cfg = tw.load_config(os.path.join(d, "config.json"))
    w = tw.init_weights(cfg, seed)
    tw.write_safetensors(os.path.join(d, "model.safetensors"), w)
    return d, cfg, w


def make_grads(ctx, cfg, seed, bf16):
    """Gradients of every (step, micro): random, of a few scales so that clipping
    is active on some steps and not on others. bf16: exactly representable."""
    d = ctx.path("grads-bf16" if bf16 else "grads")
    os.makedirs(d, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    grads = {}
    for s in range(STEPS):
        scale = [0.001, 0.02, 0.3][s % 3]
        for m in range(MICRO):
            gm = {}
            for name, shape in tw.weight_shapes(cfg).items():
                t = torch.randn(shape, generator=g, dtype=torch.float32) * scale
                gm[name] = bf16_round(t) if bf16 else t
            grads[(s, m)] = gm
            tw.write_safetensors(os.path.join(d, "step-%d-micro-%d.safetensors" % (s, m)), gm)
    return d, grads


def torch_reference(w0, grads, steps):
    """torch.optim.AdamW + clip_grad_norm_ over the given gradients, fp32."""
    names = list(w0.keys())
    params = {n: torch.nn.Parameter(w0[n].clone()) for n in names}
    decay = [params[n] for n in names if params[n].dim() >= 2]
    no_decay = [params[n] for n in names if params[n].dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": OPT["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=OPT["lr"], betas=(OPT["beta1"], OPT["beta2"]), eps=OPT["eps"],
                            foreach=False)
    for s in range(steps):
        for n in names:
            acc = grads[(s, 0)][n].clone()
            for m in range(1, MICRO):
                acc += grads[(s, m)][n]
            params[n].grad = acc / MICRO
        # clip_grad_norm_ on float64 copies: its fp32 norm is off by ~4e-7
        # relative at these sizes (ours is reduced in double), and v goes with
        # the square of the clip factor. The factor is applied to the fp32
        # gradients as clip_grad_norm_ applies it.
        g64 = [torch.nn.Parameter(torch.zeros(w0[n].shape, dtype=torch.float64)) for n in names]
        for p64, n in zip(g64, names):
            p64.grad = params[n].grad.double()
        total = torch.nn.utils.clip_grad_norm_(g64, OPT["max_norm"])
        coef = torch.clamp(OPT["max_norm"] / (total + 1e-6), max=1.0).float()
        for n in names:
            params[n].grad.mul_(coef)
        for grp in opt.param_groups:
            grp["lr"] = lr_at(s)
        opt.step()
    state = {n: opt.state[params[n]] for n in names}
    return ({n: params[n].detach() for n in names},
            {n: state[n]["exp_avg"] for n in names},
            {n: state[n]["exp_avg_sq"] for n in names})


def rel_err(a, b):
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / max(float(b.abs().max()), 1e-30))


def compare_torch(ctx, label, ck, ref, limit=1e-6):
    w, m, v = ref
    model, _, _ = tw.read_safetensors(os.path.join(ck, "model.safetensors"))
    optim, _, _ = tw.read_safetensors(os.path.join(ck, "optimizer.safetensors"))
    worst = {"weight": (0, ""), "exp_avg": (0, ""), "exp_avg_sq": (0, "")}
    for n in w:
        for kind, ours, theirs in (("weight", model[n], w[n]),
                                   ("exp_avg", optim[n + ".exp_avg"], m[n]),
                                   ("exp_avg_sq", optim[n + ".exp_avg_sq"], v[n])):
            e = rel_err(ours, theirs)
            if e > worst[kind][0]:
                worst[kind] = (e, n)
    for kind, (e, n) in worst.items():
        ctx.check(e <= limit, "%s: %s vs torch.optim.AdamW: worst relative error %.2e (%s), "
                  "limit %.0e" % (label, kind, e, n, limit))


# ----------------------------------------------------------------------------

def base_config(**over):
    d = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 48,
         "intermediate_size": 80, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "head_dim": 12, "vocab_size": 97, "rms_norm_eps": 1e-5,
         "rope_theta": 10000.0, "max_position_embeddings": 256, "tie_word_embeddings": False,
         "attention_bias": False, "initializer_range": 0.02, "torch_dtype": "float32",
         "hidden_act": "silu"}
    d.update(over)
    return d


def case_torch(ctx, compute, model_dir, w0, grads, grads_dir):
    run = "t%s%d" % (compute, os.getpid())
    ck = ctx.path("ck-" + run)
    dump = ctx.path("w-%s.safetensors" % run)
    out, _ = ctx.drive(run, ctx.ps_args(run, ["--model", model_dir], compute=compute), STEPS,
                       ckpt=ck, dump_w=dump, grads=grads_dir)
    clipped = sum(1 for line in out.splitlines() if "clip" in line and float(line.split()[-1]) < 1)
    ctx.check(0 < clipped < STEPS, "%s: clipping active on %d of %d steps" % (compute, clipped, STEPS))
    step_dir = os.path.join(ck, "step-%d" % STEPS)
    ctx.check(os.path.exists(os.path.join(step_dir, "DONE")), "%s: checkpoint %s has DONE" % (compute, step_dir))
    ref = torch_reference(w0, grads, STEPS)
    compare_torch(ctx, compute, step_dir, ref)
    try:
        import transformers  # noqa: F401  (not packaged in Debian 12; used where installed)
        m = transformers.AutoModelForCausalLM.from_pretrained(step_dir)
        sd = m.state_dict()
        model, _, _ = tw.read_safetensors(os.path.join(step_dir, "model.safetensors"))
        ctx.check(all(torch.equal(sd[n].float(), t.float()) for n, t in model.items()),
                  "%s: Hugging Face transformers loads step-%d with the same weights" % (compute, STEPS))
    except ImportError:
        print("skip  %s: Hugging Face transformers is not installed (not packaged in Debian 12)" % compute)
    if ctx.ramtrain:
        # the checkpoint is a Hugging Face model: `ramtrain grad --model` loads it,
        # and its loss is the float64 twin's on the same weights
        rows = tw.random_rows(random.Random(5), tw.load_config(os.path.join(step_dir, "config.json")).vocab, 2, 6)
        tok = ctx.path("tok-%s.bin" % compute)
        tw.write_tokens(tok, rows)
        p = subprocess.run([ctx.ramtrain, "grad", "--model", step_dir, "--tokens", tok, "--batch", "2",
                            "--seq", "6", "--out", ctx.path("g-%s.safetensors" % compute)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        text = p.stdout.decode()
        cfg = tw.load_config(os.path.join(step_dir, "config.json"))
        model, _, _ = tw.read_safetensors(os.path.join(step_dir, "model.safetensors"))
        want = float(tw.loss_and_grads(cfg, {n: t.double() for n, t in model.items()}, rows)[0])
        got = float(text.split("loss")[1].split()[0]) if p.returncode == 0 and "loss" in text else float("nan")
        ctx.check(abs(got - want) <= 1e-5 * abs(want),
                  "%s: `ramtrain grad --model step-%d` loads the checkpoint: loss %.7f, twin %.7f"
                  % (compute, STEPS, got, want))
    if compute == "bf16":
        model, _, _ = tw.read_safetensors(os.path.join(step_dir, "model.safetensors"))
        header = tw.read_raw(dump)[0]
        wv, _, _ = tw.read_safetensors(dump)
        bad = []
        for n, t in model.items():
            if header[n]["dtype"] != "BF16":
                bad.append(n + " not BF16")
                continue
            ours = wv[n].to(torch.float32)
            want = t.to(torch.float32).to(torch.bfloat16).to(torch.float32)
            if not torch.equal(ours, want):
                bad.append(n)
        ctx.check(not bad, "bf16: W as the worker reads it == PyTorch's bf16 rounding of the "
                  "master weights, bitwise (%d tensors%s)" % (len(model), ", differ: " + ", ".join(bad[:3]) if bad else ""))
        # Against torch's own master (equal to ours to ~1e-7), rounding may
        # differ only where the two sit on either side of a rounding boundary:
        # then by one bf16 step, and rarely.
        mism, far, total = 0, 0, 0
        for n, t in ref[0].items():
            ours = wv[n].to(torch.float32)
            theirs = t.to(torch.bfloat16).to(torch.float32)
            diff = ours != theirs
            mism += int(diff.sum())
            total += t.numel()
            if diff.any():
                ulp = theirs[diff].abs() * 2.0 ** -7
                far += int(((ours[diff] - theirs[diff]).abs() > ulp * 1.01).sum())
        ctx.check(far == 0 and mism <= max(2, total // 2000),
                  "bf16: W vs torch's own master rounded to bf16: %d of %d elements differ, "
                  "%d by more than one bf16 step" % (mism, total, far))
    return step_dir


def case_schedules(ctx, model_dir, w0, grads, grads_dir):
    """The other schedules, shorter: linear decay past its end (held at the
    floor), and constant without warmup."""
    saved = dict(OPT)
    try:
        for sched, warmup, total, steps in (("linear", 3, 7, 9), ("constant", 0, 0, 6)):
            OPT.update(schedule=sched, warmup=warmup, total=total)
            run = "s%s%d" % (sched[:3], os.getpid())
            ck = ctx.path("ck-" + run)
            ctx.drive(run, ctx.ps_args(run, ["--model", model_dir]), steps, ckpt=ck, grads=grads_dir)
            compare_torch(ctx, "%s schedule" % sched, os.path.join(ck, "step-%d" % steps),
                          torch_reference(w0, grads, steps))
    finally:
        OPT.clear()
        OPT.update(saved)


def case_threads(ctx, model_dir, ref_ck):
    for threads in (1, 3):
        run = "th%d_%d" % (threads, os.getpid())
        ck = ctx.path("ck-" + run)
        ctx.drive(run, ctx.ps_args(run, ["--model", model_dir], threads=threads), STEPS, ckpt=ck)
        ctx.check(ckpt_files_equal(os.path.join(ck, "step-%d" % STEPS), ref_ck),
                  "threads: %d optimizer threads give files byte-identical to 2 threads" % threads)


def case_sigkill(ctx, model_dir, ref_ck):
    n_blocks = 4
    for kill_after in (3, 2 * n_blocks * MICRO * 3 + 5):
        run = "k%d_%d" % (kill_after, os.getpid())
        ck = ctx.path("ck-" + run)
        _, restarts = ctx.drive(run, ctx.ps_args(run, ["--model", model_dir]), STEPS, ckpt=ck,
                                kill_after=kill_after)
        ctx.check(restarts == 1, "sigkill: paramserver killed after GradReady #%d and restarted "
                  "(%d restarts)" % (kill_after, restarts))
        ctx.check(ckpt_files_equal(os.path.join(ck, "step-%d" % STEPS), ref_ck),
                  "sigkill: result byte-identical to the uninterrupted run")


def crash_run(ctx, label, run, args, restart_args, fault, steps, first, ref, grads=None):
    """Trains `first` steps, then on to `steps` with the paramserver started
    with RAMTRAIN_FAULT=fault (killed inside an operation) and restarted with
    restart_args; checks the restart recovered it and the files equal ref."""
    ck = ctx.path("ck-" + run)
    ctx.drive(run, args, first, remove=False, grads=grads)
    out, restarts = ctx.drive(run, args, steps, ckpt=ck, fault=fault, restart_args=restart_args,
                              grads=grads)
    log = open(ctx.path("ps-%s.log" % run)).read()
    recovered = [ln.split(": ", 1)[-1][:110] for ln in log.splitlines()
                 if "undo journal: block" in ln or "after the restart" in ln
                 or ("spill slot" in ln and "fault injection" not in ln)]
    ctx.check(restarts == 1 and "fault injection: SIGKILL" in log and "restarts 1" in out
              and recovered,
              "crash_inside: %s: killed inside it (%s), restarted (%d), recovered: %s"
              % (label, fault, restarts, "; ".join(recovered[:2]) or "NOTHING"))
    ctx.check(ckpt_files_equal(os.path.join(ck, "step-%d" % steps), ref),
              "crash_inside: %s: byte-identical to the uninterrupted run" % label)


def case_crash_inside(ctx, model_dir, ref_ck):
    """Blocks: 0 embed (1 chunk), 1 and 2 decoder layers (9 chunks), 3 norm +
    lm_head (2 chunks). The fault fires at step 7, so m and v are not zero."""
    src = ["--model", model_dir]
    for k, (label, fault, threads) in enumerate((
            ("accumulation of micro 0, block 1", "accum:1:0:3", 1),
            ("accumulation of micro 1, block 2", "accum:2:1:4", 3),
            ("accumulation of micro 0, block 3 (after its last chunk)", "accum:3:0:2", 3),
            ("step of resident block 1", "step:1:5", 3),
            ("step of resident block 2", "step:2:2", 1))):
        run = "ci%d_%d" % (k, os.getpid())
        crash_run(ctx, label + ", restart with %d threads" % threads, run,
                  ctx.ps_args(run, src), ctx.ps_args(run, src, threads=threads), fault,
                  STEPS, 7, ref_ck)


def case_crash_spill(ctx, spill_model, ref, budget, gdir):
    """The spill model: block 0 resident, blocks 1..7 spilled; 4 steps."""
    src = ["--model", spill_model]
    extra = ["--ram-budget", str(budget), "--spill-dir", ctx.path()]
    for k, (label, fault, threads) in enumerate((("step of spilled block 3", "step:3:2", 1),
                                  ("spill write-back of block 5", "spillwrite:5", 3),
                                  ("step of spilled block 1 (first spilled)", "step:1:1", 3))):
        run = "cs%d_%d" % (k, os.getpid())
        crash_run(ctx, label + ", restart with %d threads" % threads, run,
                  ctx.ps_args(run, src, extra=extra),
                  ctx.ps_args(run, src, threads=threads, extra=extra), fault, 4, 2, ref,
                  grads=gdir)


def case_checkpoint(ctx, model_dir, ref_ck):
    run = "c1_%d" % os.getpid()
    ck = ctx.path("ck-" + run)
    ctx.drive(run, ctx.ps_args(run, ["--model", model_dir]), 10, ckpt=ck)
    half = os.path.join(ck, "step-10")
    run2 = "c2_%d" % os.getpid()
    ck2 = ctx.path("ck-" + run2)
    ctx.drive(run2, ctx.ps_args(run2, ["--resume-from", half]), STEPS, ckpt=ck2)
    ctx.check(ckpt_files_equal(os.path.join(ck2, "step-%d" % STEPS), ref_ck),
              "checkpoint: resume from step-10 and train to %d: byte-identical to uninterrupted" % STEPS)
    run3 = "c3_%d" % os.getpid()
    ck3 = ctx.path("ck-" + run3)
    ctx.drive(run3, ctx.ps_args(run3, ["--resume-from", ck2]), STEPS, ckpt=ck3)
    ctx.check(ckpt_files_equal(os.path.join(ck3, "step-%d" % STEPS), ref_ck),
              "checkpoint: save -> load -> save gives byte-identical files")
    return ck


def layout_bytes(cfg, compute_size=4, gslots=2):
    """Mirror of lb_layout_finish: (resident, total, slot) bytes per block; slot:
    one slot of a spilled block's extent (what a staging buffer holds): m, v and
    the fp32 master (in the layout's optimizer section with bf16 compute, added
    to the slot with fp32 compute)."""
    out = []
    shapes = tw.weight_shapes(cfg)
    blocks = [["model.embed_tokens.weight"]]
    for i in range(cfg.n_layers):
        blocks.append([n for n in shapes if n.startswith("model.layers.%d." % i)])
    blocks.append([n for n in shapes if n in ("model.norm.weight", "lm_head.weight")])
    al = lambda x, a: (x + a - 1) // a * a  # noqa: E731
    for names in blocks:
        w = sum(al(int(np.prod(shapes[n])) * compute_size, 4096) for n in names)
        f = sum(al(int(np.prod(shapes[n])) * 4, 4096) for n in names)
        pos = 4096 + w * (1 + gslots) + f
        opt = f * (2 if compute_size == 4 else 3)
        out.append((al(pos, 2 << 20), al(pos + opt, 2 << 20), 3 * f))
    return out


def case_spill(ctx):
    # big enough that spilling saves more than its three staging buffers cost
    cfg_d = base_config(hidden_size=192, intermediate_size=384, num_attention_heads=3,
                        num_key_value_heads=3, head_dim=64, vocab_size=512, num_hidden_layers=6)
    model_dir, cfg, w0 = make_model(ctx, "spill-model", cfg_d, 11)
    gdir, grads = make_grads_dir(ctx, cfg, 12, "grads-spill", 4)
    lay = layout_bytes(cfg)
    need = sum(r for r, _, _ in lay) + 3 * max(o for _, _, o in lay)
    budget = need + (lay[0][1] - lay[0][0])  # block 0 fits whole; the rest spill
    results = []
    for label, extra in (("ram", []),
                         ("spill io_uring", ["--ram-budget", str(budget), "--spill-dir", ctx.path(), "--io", "uring"]),
                         ("spill pread", ["--ram-budget", str(budget), "--spill-dir", ctx.path(), "--io", "sync"])):
        run = "sp%d_%d" % (len(results), os.getpid())
        ck = ctx.path("ck-" + run)
        ctx.drive(run, ctx.ps_args(run, ["--model", model_dir], extra=extra), 4, ckpt=ck,
                  grads=gdir)
        log = open(ctx.path("ps-%s.log" % run)).read()
        if extra:
            ctx.check("spill:" in log and "of %d blocks keep" % len(lay) in log,
                      "spill (%s): the log says which blocks spilled" % label)
        results.append(os.path.join(ck, "step-4"))
    for i in (1, 2):
        ctx.check(ckpt_files_equal(results[0], results[i]),
                  "spill: ram_budget below the state, %s: byte-identical to RAM mode" %
                  ("io_uring" if i == 1 else "pread/pwrite"))
    ref = torch_reference(w0, grads, 4)
    compare_torch(ctx, "spill", results[1], ref)
    return model_dir, results[0], budget, gdir


def make_grads_dir(ctx, cfg, seed, name, steps):
    d = ctx.path(name)
    os.makedirs(d, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    grads = {}
    for s in range(steps):
        for m in range(MICRO):
            gm = {n: torch.randn(shape, generator=g) * 0.05
                  for n, shape in tw.weight_shapes(cfg).items()}
            grads[(s, m)] = gm
            tw.write_safetensors(os.path.join(d, "step-%d-micro-%d.safetensors" % (s, m)), gm)
    return d, grads


def case_io_kinds(ctx, model_dir, ref_ck):
    run = "io_%d" % os.getpid()
    ck = ctx.path("ck-" + run)
    ctx.drive(run, ctx.ps_args(run, ["--model", model_dir], extra=["--io", "sync"]), STEPS, ckpt=ck)
    log = open(ctx.path("ps-%s.log" % run)).read()
    ctx.check("pread" in log, "io_kinds: --io sync runs the pread/pwrite engine and says so")
    ctx.check(ckpt_files_equal(os.path.join(ck, "step-%d" % STEPS), ref_ck),
              "io_kinds: pread/pwrite and io_uring write byte-identical checkpoint files")


def run_expect_error(ctx, label, args, words):
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ctx.env(),
                       timeout=120)
    text = p.stdout.decode()
    ok = p.returncode == 2 and any(w.lower() in text.lower() for w in words) \
        and "Sanitizer" not in text and "runtime error" not in text
    ctx.check(ok, "errors: %s -> exit %d, %s" % (label, p.returncode,
                                                 text.strip().splitlines()[-1][:200] if text.strip() else "(no output)"))


def case_errors(ctx, model_dir, ck_root):
    # a run left in shared memory, then damaged
    run = "e_%d" % os.getpid()
    args = ctx.ps_args(run, ["--model", model_dir])
    ctx.drive(run, args, 2, shutdown=True, remove=False)
    blk = os.path.join(ctx.shm, "ramtrain.%s.0.1" % run)
    ctx.check(os.path.exists(blk), "errors: the blocks outlive the paramserver (%s)" % blk)
    ctx.check(os.stat(blk).st_mode & 0o777 == 0o600, "errors: block objects have mode 0600")
    jrn = os.path.join(ctx.shm, "ramtrain.%s.0.journal" % run)
    ctx.check(os.path.exists(jrn) and os.stat(jrn).st_mode & 0o777 == 0o600,
              "errors: the shard's undo journal outlives it too, mode 0600 (%s)" % jrn)
    # restart on intact blocks continues from the committed step
    out, _ = ctx.drive(run, args, 3, shutdown=True, remove=False)
    ctx.check(out.count("step ") == 1 and out.startswith("step 2"),
              "errors: a restarted paramserver re-attaches and continues at step 2")
    # a layout that disagrees with the config
    other = ctx.path("other-model")
    os.makedirs(other)
    cfg2 = base_config(intermediate_size=96)
    tw.write_config(os.path.join(other, "config.json"), cfg2)
    run_expect_error(ctx, "blocks whose layout disagrees with config.json",
                     ctx.ps_args(run, ["--config", os.path.join(other, "config.json")]),
                     ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "layout"])
    # corrupt header
    with open(blk, "r+b") as f:
        f.seek(0)
        f.write(b"XXXXXXXX")
    run_expect_error(ctx, "a block with a corrupt header",
                     ctx.ps_args(run, ["--config", os.path.join(model_dir, "config.json")]),
                     ["magic", "not a ramtrain"])
    if ctx.ramtrain:
        p = subprocess.run([ctx.ramtrain, "clean", "--run-id", run], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, env=ctx.env())
        left = [n for n in os.listdir(ctx.shm) if n.startswith("ramtrain.%s." % run)]
        ctx.check(p.returncode == 0 and not left and "5 objects" in p.stdout.decode()
                  and "journal" in p.stdout.decode(),
                  "errors: `ramtrain clean --run-id` removes the run's 4 blocks and journal (%s)"
                  % p.stdout.decode().strip().splitlines()[-1])
    ctx.clean_shm(run)
    # checkpoints: truncated, without DONE
    src = os.path.join(ck_root, "step-10")
    for label, damage, words in (
            ("a truncated checkpoint", "truncate", ["truncat", "size", "short", "past", "end"]),
            ("a checkpoint without DONE", "done", ["DONE"])):
        bad = ctx.path("bad-ck-" + damage, "step-10")
        shutil.copytree(src, bad)
        if damage == "truncate":
            p = os.path.join(bad, "model.safetensors")
            os.truncate(p, os.path.getsize(p) - 100)
        else:
            os.unlink(os.path.join(bad, "DONE"))
        r = "b%s_%d" % (damage[:2], os.getpid())
        run_expect_error(ctx, label, ctx.ps_args(r, ["--resume-from", bad]), words)
        left = [n for n in os.listdir(ctx.shm) if n.startswith("ramtrain.%s." % r)]
        ctx.check(not left, "errors: a refused start leaves no blocks behind (%s)" % label)


def case_cli(ctx, model_dir):
    """Bad command lines: exit 2 and a message naming the option."""
    cfg = os.path.join(model_dir, "config.json")
    base = [ctx.ps, "--run-id", "cli", "--run-dir", ctx.path("run-cli")]
    for label, args, words in (
            ("unknown option", base + ["--config", cfg, "--frobnicate"], ["--frobnicate"]),
            ("missing --run-id", [ctx.ps, "--run-dir", ctx.path("x"), "--config", cfg], ["--run-id"]),
            ("no model source", base, ["--config", "--model"]),
            ("two model sources", base + ["--config", cfg, "--model", model_dir], ["exactly one"]),
            ("--lr not a number", base + ["--config", cfg, "--lr", "fast"], ["--lr"]),
            ("--beta2 out of range", base + ["--config", cfg, "--beta2", "1.5"], ["--beta2"]),
            ("--gslots out of range", base + ["--config", cfg, "--gslots", "9"], ["--gslots"]),
            # no model source either: accepted, the seed would fail on that, not hang
            ("--seed negative after a space", base + ["--seed", " -1"], ["--seed"]),
            ("--ram-budget not a size", base + ["--config", cfg, "--ram-budget", "lots"], ["--ram-budget"]),
            ("--schedule unknown", base + ["--config", cfg, "--schedule", "sawtooth"], ["--schedule"]),
            ("cosine without --total-steps", base + ["--config", cfg, "--schedule", "cosine"], ["--total-steps"]),
            ("--compute unknown", base + ["--config", cfg, "--compute", "fp8"], ["--compute"]),
            ("--model not a directory", base + ["--model", ctx.path("nope")], ["nope"]),
            ("--resume-from nothing there", base + ["--resume-from", ctx.path("nope")], ["nope"]),
            ("bad run id", [ctx.ps, "--run-id", "../etc", "--run-dir", ctx.path("x"), "--config", cfg],
             ["run id", "run_id", "../etc"]),
            ("budget below W+G", base + ["--config", cfg, "--ram-budget", "1M", "--spill-dir", ctx.path()],
             ["ram_budget", "budget"]),
            ("budget below state, no spill dir", base + ["--config", cfg, "--ram-budget", "1M"],
             ["spill"])):
        run_expect_error(ctx, "command line: " + label, args, words)
    ctx.clean_shm("cli")


def pb_varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def pb_str(field, s):
    s = s.encode()
    return pb_varint(field << 3 | 2) + pb_varint(len(s)) + s


def envelope(run_id, req, body_field, body=b"", version=1):
    return (pb_str(1, run_id) + pb_str(2, "test") + pb_varint(3 << 3) + pb_varint(req) +
            pb_varint(4 << 3) + pb_varint(version) +
            pb_varint(body_field << 3 | 2) + pb_varint(len(body)) + body)


def pb_fields(buf):
    """Top-level field numbers of a protobuf message (varint and length-delimited)."""
    out, i = set(), 0
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wt = key >> 3, key & 7
        if wt == 0:
            _, i = _varint(buf, i)
        elif wt == 2:
            n, i = _varint(buf, i)
            i += n
        elif wt == 1:
            i += 8
        elif wt == 5:
            i += 4
        else:
            break
        out.add(field)
    return out


def _varint(buf, i):
    v, shift = 0, 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, i


def case_messages(ctx, model_dir):
    import zmq
    run = "m_%d" % os.getpid()
    ps = ctx.start(ctx.ps_args(run, ["--model", model_dir]), ctx.path("ps-%s.log" % run))
    zc = zmq.Context()
    s = zc.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(ctx.endpoint(run))
    STATUS, ERROR = 32, 19

    def ask(frames, label, want_error=True):
        s.send_multipart(frames)
        deadline = time.time() + 30
        body = None
        while time.time() < deadline and s.poll(1000):
            fields = pb_fields(s.recv_multipart()[0])
            body = max(f for f in fields if f >= 16) if any(f >= 16 for f in fields) else None
            if body != 18:  # not a heartbeat
                break
        ctx.check(body is not None and (body == ERROR) == want_error and ps.poll() is None,
                  "messages: %s -> %s, service alive" % (
                      label, {None: "no reply", ERROR: "ErrorReply"}.get(body, "body %s" % body)))

    try:
        time.sleep(0.5)
        ask([envelope(run, 1, STATUS)], "a valid Status", want_error=False)
        ask([b"\xff\xff\xff garbage"], "malformed bytes")
        ask([b"x" * (2 << 20)], "an oversized message (2 MiB)")
        ask([envelope("another-run", 2, STATUS)], "a message of another run")
        ask([envelope(run, 3, 99)], "an unknown body")
        ask([envelope(run, 4, STATUS, version=7)], "another protocol version")
        ask([envelope(run, 5, STATUS), b"extra"], "two frames")
        ask([envelope(run, 6, 24, pb_varint(1 << 3) + pb_varint(1))], "GradReady with fields missing")
        ask([envelope(run, 7, 22, pb_varint(1 << 3) + pb_varint(999) + pb_varint(2 << 3) + pb_varint(0))],
            "FetchLayer of a block that does not exist")
        ask([envelope(run, 8, STATUS)], "a valid Status after all that", want_error=False)
        # a peer that said Hello gets heartbeats (every 200 ms here)
        s.send_multipart([envelope(run, 9, 16, pb_str(1, "worker"))])
        seen = set()
        deadline = time.time() + 5
        while time.time() < deadline and 18 not in seen and s.poll(500):
            fields = pb_fields(s.recv_multipart()[0])
            seen |= {f for f in fields if f >= 16}
        ctx.check(17 in seen and 18 in seen, "messages: Hello gets Ready, then heartbeats arrive")
        log = open(ctx.path("ps-%s.log" % run)).read()
        ctx.check(log.count("refused") >= 8, "messages: every refusal is logged (%d lines)" % log.count("refused"))
    finally:
        s.close()
        zc.term()
        ps.send_signal(signal.SIGTERM)
        ps.wait(timeout=30)
        for name in os.listdir(ctx.shm):
            if name.startswith("ramtrain.%s." % run):
                os.unlink(os.path.join(ctx.shm, name))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--paramserver", required=True)
    ap.add_argument("--driver", required=True)
    ap.add_argument("--ramtrain")
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="rt-ps-")
    ctx = Ctx(args, tmp)
    torch.manual_seed(0)
    only = set(args.only.split(",")) if args.only else None
    try:
        model_dir, cfg, w0 = make_model(ctx, "model", base_config(), 1)
        gdir, grads = make_grads(ctx, cfg, 2, False)
        ref_ck = case_torch(ctx, "f32", model_dir, w0, grads, gdir)
        if not only or "bf16" in only:
            gdir16, grads16 = make_grads(ctx, cfg, 3, True)
            case_torch(ctx, "bf16", model_dir, w0, grads16, gdir16)
        if not only or "schedules" in only:
            case_schedules(ctx, model_dir, w0, grads, gdir)
        if not only or "threads" in only:
            case_threads(ctx, model_dir, ref_ck)
        if not only or "sigkill" in only:
            case_sigkill(ctx, model_dir, ref_ck)
        ck_root = None
        if not only or "checkpoint" in only or "errors" in only:
            ck_root = case_checkpoint(ctx, model_dir, ref_ck)
        if not only or "io" in only:
            case_io_kinds(ctx, model_dir, ref_ck)
        if not only or "crash_inside" in only:
            case_crash_inside(ctx, model_dir, ref_ck)
        if not only or "spill" in only or "crash_inside" in only:
            spill = case_spill(ctx)
            if not only or "crash_inside" in only:
                case_crash_spill(ctx, *spill)
        if not only or "errors" in only:
            case_errors(ctx, model_dir, ck_root)
        if not only or "messages" in only:
            case_messages(ctx, model_dir)
        if not only or "cli" in only:
            case_cli(ctx, model_dir)
    except Fail as e:
        ctx.check(False, str(e))
    leftover = os.listdir(ctx.shm)
    ctx.check(not leftover, "no shared-memory objects left behind (%s)" % ", ".join(leftover[:4]))
    print("%d checks, %d failed" % (ctx.n_checks, ctx.n_fail))
    if ctx.n_fail:
        print("kept %s and %s" % (tmp, ctx.shm))
        return 1
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(ctx.shm, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
