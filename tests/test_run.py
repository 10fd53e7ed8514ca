"""test_run: `ramtrain run` with the real services, end to end.

A small random Llama (inline model.config) trains on a u32 token file the
test writes. Checks:
  - 8 steps: exit 0, metrics.jsonl with one line per step (0..7, every
    field), checkpoints/step-4 and step-8 with DONE, the summary; then
    --resume from step-4 with --set train.steps=10 records steps 8, 9 only;
  - the default run directory (runs/run-..., runs/latest) and `ramtrain
    status` without --run-dir while it runs; `ramtrain restart worker`,
    `restart paramserver` and a data loader killed with SIGKILL mid-run: the
    run still finishes, each step recorded once, in order;
  - `ramtrain stop` mid-run: exit 0 with a checkpoint of the step it stopped
    at and no shared memory left; `--resume` continues from it to the end;
  - a worker stopped with SIGSTOP (hung: no heartbeats) is killed and
    restarted, and the run finishes;
  - SIGINT once: a graceful stop as `ramtrain stop`; twice: everything
    stops at once (exit 130);
  - SIGKILL to `ramtrain run`: no service survives it (PDEATHSIG), the
    layer blocks stay in shared memory, and `--resume` re-attaches to them
    and finishes;
and after every run: no process of the run alive, no shared memory left.

Usage: test_run.py --bin-dir DIR   (DIR holds ramtrain and the services)
"""

import argparse
import os
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from run_common import (Ctx, check_clean, metrics, output, procs_with, run_id_of,  # noqa: E402
                        sanitizer_free, shm_left, wait, wait_metrics, write_config,
                        write_tokens)

FIELDS = ["step", "loss", "lr", "grad_norm", "tokens", "tokens_seen", "seconds", "tokens_per_s",
          "compute_s", "wait_weights_s", "wait_optimizer_s", "wait_data_s", "time"]
LONG = 40  # steps of the runs that are interrupted on the way


def long_config(ctx, name, tokens):
    """About 0.1 s a step on 2 cores: long enough to act on mid-run."""
    p = ctx.path(name + ".yaml")
    write_config(p, tokens, steps=LONG, hidden=256, layers=4, batch=4, seq=64, accum=2, every=0)
    return p


def done_ckpt(run_dir, step):
    return os.path.isfile(os.path.join(run_dir, "checkpoints", "step-%d" % step, "DONE"))


def service_pid(run_id, binary):
    for pid, cmd in procs_with(run_id):
        if cmd.split()[0].endswith("/" + binary):
            return pid
    return None


def check_steps(ctx, what, run_dir, total, allow_missing=0):
    m = metrics(run_dir)
    steps = [x["step"] for x in m]
    increasing = all(b > a for a, b in zip(steps, steps[1:]))
    ok = increasing and steps and steps[-1] == total - 1 and len(steps) >= total - allow_missing
    ctx.check(ok, "%s: metrics.jsonl has each step once, in order, up to %d (%d lines)" %
              (what, total - 1, len(steps)), repr(steps))
    return m


def case_small(ctx, tokens):
    cfg = ctx.path("small.yaml")
    write_config(cfg, tokens, steps=8, every=4)
    d = ctx.path("small")
    r = ctx.run(["run", cfg, "--run-dir", d])
    ok = r is not None and r.returncode == 0
    ctx.check(ok, "8 steps: exit 0", (r.stdout + r.stderr) if r else "timeout")
    if r is None:
        return
    ctx.check("finished: 8 steps" in r.stdout and "step-8" in r.stdout, "8 steps: summary",
              r.stdout)
    ctx.check(sanitizer_free(r.stderr), "8 steps: no sanitizer report", r.stderr)
    m = metrics(d)
    ctx.check([x["step"] for x in m] == list(range(8)), "8 steps: metrics.jsonl has steps 0..7",
              repr([x.get("step") for x in m]))
    missing = [f for f in FIELDS if any(f not in x for x in m)]
    ctx.check(not missing, "8 steps: every metrics line has %s" % ", ".join(FIELDS), repr(missing))
    ctx.check(any(x.get("checkpoint", "").endswith("step-4") for x in m),
              "8 steps: the checkpoint of step 4 is in the metrics")
    ctx.check(done_ckpt(d, 4) and done_ckpt(d, 8), "8 steps: checkpoints/step-4 and step-8 with DONE")
    for name in ("config.yaml", "model/config.json", "run_id", "lock", "logs/orchestrator.log",
                 "logs/worker.log", "logs/paramserver.log", "logs/dataloader.log"):
        ctx.check(os.path.exists(os.path.join(d, name)), "8 steps: %s exists" % name)
    check_clean(ctx, d, "8 steps")
    # more steps from an older checkpoint: steps 4..7 are redone, not recorded twice
    shutil.rmtree(os.path.join(d, "checkpoints", "step-8"))
    r = ctx.run(["run", "--resume", "--run-dir", d, "--set", "train.steps=10"])
    ctx.check(r is not None and r.returncode == 0 and done_ckpt(d, 10),
              "resume from step-4 with train.steps=10: exit 0, checkpoints/step-10",
              (r.stdout + r.stderr) if r else "timeout")
    ctx.check([x["step"] for x in metrics(d)] == list(range(10)),
              "resume from step-4: metrics.jsonl has steps 0..9 once each",
              repr([x.get("step") for x in metrics(d)]))
    check_clean(ctx, d, "resume from step-4")


def case_restarts(ctx, tokens):
    cfg = long_config(ctx, "restarts", tokens)
    p = ctx.start(["run", cfg])  # default directory: runs/run-..., runs/latest
    latest = ctx.path("runs", "latest")
    deadline = time.time() + 30
    while time.time() < deadline and run_id_of(latest) is None:
        time.sleep(0.05)
    d = os.path.realpath(latest)
    ctx.check(os.path.basename(d).startswith("run-") and os.path.dirname(d) == ctx.path("runs"),
              "default run directory %s, runs/latest points at it" % d)
    if not wait_metrics(d, 2, p):
        ctx.check(False, "restarts: the run got going", output(p))
        wait(p, 5)
        return
    st = ctx.run(["status"])  # runs/latest from the current directory
    text = st.stdout if st else ""
    ctx.check(st is not None and st.returncode == 0 and all(
        w in text for w in ("paramserver", "dataloader", "worker", "ready", "step ", "/%d" % LONG)),
        "status while running", text + (st.stderr if st else "timeout"))
    r = ctx.run(["restart", "worker"])
    ctx.check(r is not None and r.returncode == 0 and "restarting worker" in r.stdout,
              "restart worker: accepted", (r.stdout + r.stderr) if r else "timeout")
    n = len(metrics(d))
    wait_metrics(d, n + 3, p)
    r = ctx.run(["restart", "paramserver", "--run-dir", d])
    ctx.check(r is not None and r.returncode == 0, "restart paramserver: accepted",
              (r.stdout + r.stderr) if r else "timeout")
    rc = wait(p, 120)
    out = output(p)
    ctx.check(rc == 0, "restarts: the run finishes with exit 0 (%s)" % rc, out)
    ctx.check(done_ckpt(d, LONG), "restarts: checkpoints/step-%d/DONE" % LONG)
    # a worker stopped on the way may have committed a step it could not report
    check_steps(ctx, "restarts", d, LONG, allow_missing=4)
    logs = {s: open(os.path.join(d, "logs", s + ".log")).read() for s in ("worker", "paramserver")}
    for s, text in logs.items():
        # the worker may also fail once while the paramserver restarts
        ctx.check(text.count("starting %s" % s) >= 2, "restarts: %s started again" % s,
                  "\n".join(l for l in text.splitlines() if "starting" in l))
    orch = open(os.path.join(d, "logs", "orchestrator.log")).read()
    ctx.check("restart of worker" in orch and "restart of paramserver" in orch,
              "restarts: orchestrator.log tells of the restarts", orch[-3000:])
    check_clean(ctx, d, "restarts")


def case_dataloader_killed(ctx, tokens):
    cfg = long_config(ctx, "dlkill", tokens)
    d = ctx.path("dlkill")
    p = ctx.start(["run", cfg, "--run-dir", d])
    if not wait_metrics(d, 3, p):
        ctx.check(False, "data loader killed: the run got going", output(p))
        wait(p, 5)
        return
    dl = service_pid(run_id_of(d), "ramtrain-dataloader")
    if dl is not None:
        os.kill(dl, signal.SIGKILL)
    ctx.check(dl is not None, "found the data loader (pid %s) and killed it" % dl)
    rc = wait(p, 120)
    out = output(p)
    ctx.check(rc == 0, "data loader killed: the run finishes with exit 0 (%s)" % rc, out)
    ctx.check("dataloader (pid %d) died" % dl in out and "restarting it" in out,
              "data loader killed: restarted with a log line", out)
    ctx.check(done_ckpt(d, LONG), "data loader killed: checkpoints/step-%d/DONE" % LONG)
    check_steps(ctx, "data loader killed", d, LONG, allow_missing=2)
    check_clean(ctx, d, "data loader killed")


def case_stop_resume(ctx, tokens):
    cfg = long_config(ctx, "stop", tokens)
    d = ctx.path("stop")
    p = ctx.start(["run", cfg, "--run-dir", d])
    if not wait_metrics(d, 3, p):
        ctx.check(False, "stop: the run got going", output(p))
        wait(p, 5)
        return
    r = ctx.run(["stop", "--run-dir", d])
    ctx.check(r is not None and r.returncode == 0 and "has ended" in r.stdout,
              "stop: waits for the end", (r.stdout + r.stderr) if r else "timeout")
    ctx.check(p.poll() is not None, "stop: ramtrain run has exited when stop returns")
    rc = wait(p, 60)
    out = output(p)
    ctx.check(rc == 0, "stop: exit 0 (%s)" % rc, out)
    n = len(metrics(d))
    ctx.check(0 < n < LONG and done_ckpt(d, n), "stop: checkpoint of the step it stopped at (step-%d)" % n,
              "%s\n%s" % (os.listdir(os.path.join(d, "checkpoints")), out))
    ctx.check("stopped after %d of %d steps" % (n, LONG) in out, "stop: summary", out)
    check_clean(ctx, d, "stop")
    r = ctx.run(["run", "--resume", "--run-dir", d], timeout=120)
    ctx.check(r is not None and r.returncode == 0, "resume: exit 0",
              (r.stdout + r.stderr) if r else "timeout")
    m = check_steps(ctx, "stop + resume", d, LONG)
    ctx.check(len(m) > n and m[n]["step"] == n, "resume: continues at step %d" % n,
              repr([x["step"] for x in m]))
    ctx.check(done_ckpt(d, LONG), "resume: checkpoints/step-%d/DONE" % LONG)
    ps_log = open(os.path.join(d, "logs", "paramserver.log")).read()
    ctx.check("--resume-from" in ps_log, "resume: the paramserver started from the checkpoint")
    check_clean(ctx, d, "resume")


def case_hang(ctx, tokens):
    cfg = long_config(ctx, "hang", tokens)
    d = ctx.path("hang")
    p = ctx.start(["run", cfg, "--run-dir", d])
    if not wait_metrics(d, 2, p):
        ctx.check(False, "hang: the run got going", output(p))
        wait(p, 5)
        return
    w = service_pid(run_id_of(d), "ramtrain-worker")
    if w is not None:
        os.kill(w, signal.SIGSTOP)
    t0 = time.time()
    rc = wait(p, 120)
    out = output(p)
    ctx.check(rc == 0, "hang: the run finishes (exit %s)" % rc, out)
    ctx.check("worker (pid %d) silent" % w in out, "hang: the stopped worker was found hung", out)
    ctx.check(time.time() - t0 > 4, "hang: found after the heartbeat intervals, not before")
    check_steps(ctx, "hang", d, LONG, allow_missing=1)
    check_clean(ctx, d, "hang")


def case_sigint_once(ctx, tokens):
    cfg = long_config(ctx, "sigint1", tokens)
    d = ctx.path("sigint1")
    p = ctx.start(["run", cfg, "--run-dir", d])
    if not wait_metrics(d, 2, p):
        ctx.check(False, "SIGINT: the run got going", output(p))
        wait(p, 5)
        return
    p.send_signal(signal.SIGINT)
    rc = wait(p, 60)
    out = output(p)
    n = len(metrics(d))
    ctx.check(rc == 0 and n < LONG and done_ckpt(d, n),
              "SIGINT once: a graceful stop, exit 0 (%s) with checkpoints/step-%d" % (rc, n), out)
    check_clean(ctx, d, "SIGINT once")


def case_sigint_twice(ctx, tokens):
    cfg = long_config(ctx, "sigint", tokens)
    d = ctx.path("sigint")
    p = ctx.start(["run", cfg, "--run-dir", d])
    if not wait_metrics(d, 2, p):
        ctx.check(False, "SIGINT: the run got going", output(p))
        wait(p, 5)
        return
    p.send_signal(signal.SIGINT)
    time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    rc = wait(p, 60)
    out = output(p)
    ctx.check(rc == 130, "SIGINT twice: exit 130 (%s)" % rc, out)
    ctx.check(len(metrics(d)) < LONG, "SIGINT twice: stopped before the end")
    check_clean(ctx, d, "SIGINT twice")


def case_orchestrator_killed(ctx, tokens):
    cfg = long_config(ctx, "killed", tokens)
    d = ctx.path("killed")
    p = ctx.start(["run", cfg, "--run-dir", d])
    if not wait_metrics(d, 2, p):
        ctx.check(False, "SIGKILL: the run got going", output(p))
        wait(p, 5)
        return
    rid = run_id_of(d)
    p.send_signal(signal.SIGKILL)
    p.wait()
    deadline = time.time() + 10
    while procs_with(rid) and time.time() < deadline:
        time.sleep(0.05)
    ctx.check(not procs_with(rid), "SIGKILL to ramtrain run: no service survives it",
              repr(procs_with(rid)))
    ctx.check(bool(shm_left(ctx, rid)), "SIGKILL to ramtrain run: the blocks stay for --resume")
    r = ctx.run(["run", "--resume", "--run-dir", d], timeout=120)
    ctx.check(r is not None and r.returncode == 0, "resume after SIGKILL: exit 0",
              (r.stdout + r.stderr) if r else "timeout")
    ps_log = open(os.path.join(d, "logs", "paramserver.log")).read()
    ctx.check("attached" in ps_log, "resume after SIGKILL: the paramserver re-attached to its blocks",
              ps_log[-2000:])
    ctx.check(done_ckpt(d, LONG), "resume after SIGKILL: checkpoints/step-%d/DONE" % LONG)
    check_steps(ctx, "SIGKILL + resume", d, LONG, allow_missing=3)
    check_clean(ctx, d, "resume after SIGKILL")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    args = ap.parse_args()
    ctx = Ctx(args.bin_dir, "rt-run-")
    for s in ("ramtrain-paramserver", "ramtrain-dataloader", "ramtrain-worker"):
        if not os.access(os.path.join(ctx.bin, s), os.X_OK):
            print("skip: %s not built" % s)
            return 77
    tokens = ctx.path("tokens.u32")
    write_tokens(tokens)
    t0 = time.time()
    try:
        for case in (case_small, case_restarts, case_dataloader_killed, case_stop_resume, case_hang, case_sigint_once, case_sigint_twice,
                     case_orchestrator_killed):
            t = time.time()
            case(ctx, tokens)
            print("  (%s: %.1f s)" % (case.__name__, time.time() - t), flush=True)
    except Exception as e:  # noqa: BLE001 — any failure is a failed check, with its text
        import traceback
        traceback.print_exc()
        ctx.check(False, "error: %s" % e)
    print("%.1f s in all" % (time.time() - t0))
    return ctx.finish()


if __name__ == "__main__":
    sys.exit(main())
