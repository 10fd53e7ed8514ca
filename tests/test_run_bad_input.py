"""test_run_bad_input: `ramtrain run` refuses bad input and gives up cleanly.

Each case wants an error exit (not death by a signal), a message that names
what is wrong, no sanitizer report, and afterwards no process of the run
alive and nothing of it in shared memory:
  - config errors (unknown key, wrong type, missing data file, missing model
    directory, a bad --set): exit 2 and the run directory never created;
  - a run directory in use by another `ramtrain run` (its lock): "in use by
    pid N", exit 2, the directory untouched; a non-empty directory without
    --resume, and --resume with nothing to resume: exit 2;
  - a missing service binary (RAMTRAIN_BIN_DIR with two of the three);
  - a data loader that dies at start-up every time (a fake that exits 1):
    the orchestrator gives up naming it, and the real paramserver's blocks
    are gone;
  - a worker that exits 2 (bad input): the run stops with its message;
  - status / stop / restart on a directory with no run: exit 1.
Services that must not matter are fakes (shell scripts in a private
RAMTRAIN_BIN_DIR) that keep the run id in their command line.

Usage: test_run_bad_input.py --bin-dir DIR   (DIR holds ramtrain and the services)
"""

import argparse
import os
import signal
import stat
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from run_common import (Ctx, check_clean, output, run_id_of, sanitizer_free,  # noqa: E402
                        wait, write_config, write_tokens)

SERVICES = ["ramtrain-paramserver", "ramtrain-dataloader", "ramtrain-worker"]


def fake_bin(ctx, name, fakes):
    """A RAMTRAIN_BIN_DIR: the real services, except fakes {binary: shell body} (None: absent)."""
    d = ctx.path("bin-" + name)
    os.makedirs(d)
    for s in SERVICES:
        if s in fakes:
            if fakes[s] is None:
                continue
            p = os.path.join(d, s)
            with open(p, "w") as f:
                f.write("#!/bin/sh\n" + fakes[s] + "\n")
            os.chmod(p, os.stat(p).st_mode | stat.S_IXUSR)
        else:
            os.symlink(os.path.join(ctx.bin, s), os.path.join(d, s))
    return d


def expect_fail(ctx, name, args, words, code=None, created=None, env=None):
    """ramtrain ARGS (`run` unless ARGS starts with another command) must fail with a
    message holding every word of words."""
    if args[0] not in ("status", "stop", "restart"):
        args = ["run"] + list(args)
    r = ctx.run(args, timeout=120, **(env or {}))
    if r is None:
        ctx.check(False, "%s: timed out" % name)
        return None
    err = r.stderr
    ok = r.returncode > 0 and (code is None or r.returncode == code)
    ctx.check(ok, "%s: exit %d%s" % (name, r.returncode, "" if code is None else " (want %d)" % code),
              err)
    missing = [w for w in words if w.lower() not in err.lower()]
    ctx.check(not missing, "%s: message names %s" % (name, ", ".join(words)),
              "missing %r in: %s" % (missing, err))
    ctx.check(sanitizer_free(err), "%s: no sanitizer report" % name, err)
    if created is not None:
        ctx.check(not os.path.exists(created), "%s: %s not created" % (name, created))
    return r


def case_config(ctx, tokens):
    good = ctx.path("good.yaml")
    write_config(good, tokens)
    text = open(good).read()

    def variant(name, new):
        p = ctx.path(name + ".yaml")
        with open(p, "w") as f:
            f.write(new)
        return p

    d = ctx.path("never")
    expect_fail(ctx, "unknown key", [variant("unknown", text.replace("  lr: 3.0e-3\n", "  lr: 3.0e-3\n  learning_rat: 1\n")),
                                     "--run-dir", d], ["learning_rat"], 2, d)
    expect_fail(ctx, "wrong type", [variant("type", text.replace("steps: 8", "steps: many")),
                                    "--run-dir", d], ["train.steps", "many"], 2, d)
    expect_fail(ctx, "missing data file", [variant("nodata", text.replace(tokens, ctx.path("absent.u32"))),
                                           "--run-dir", d], ["absent.u32"], 2, d)
    no_model = text[:text.index("model:")] + "model:\n  path: %s\n" % ctx.path("no-model-dir") + \
        text[text.index("data:"):]
    expect_fail(ctx, "missing model dir", [variant("nomodel", no_model), "--run-dir", d],
                ["no-model-dir"], 2, d)
    expect_fail(ctx, "bad --set", [good, "--run-dir", d, "--set", "train.lr=fast"],
                ["train.lr", "fast"], 2, d)
    expect_fail(ctx, "missing CONFIG file", [ctx.path("nope.yaml"), "--run-dir", d], ["nope.yaml"], 2, d)


def case_in_use(ctx, tokens):
    """A run whose services never answer holds its directory; a second run must not touch it."""
    cfg = ctx.path("inuse.yaml")
    write_config(cfg, tokens)
    idle = "while true; do sleep 0.1; done"
    bins = fake_bin(ctx, "idle", {s: idle for s in SERVICES})
    d = ctx.path("inuse")
    first = ctx.start(["run", cfg, "--run-dir", d], RAMTRAIN_BIN_DIR=bins)
    deadline = time.time() + 20
    while time.time() < deadline and run_id_of(d) is None:
        time.sleep(0.05)
    time.sleep(0.3)
    before = sorted(os.listdir(d)) if os.path.isdir(d) else None
    mtimes = {n: os.stat(os.path.join(d, n)).st_mtime_ns for n in before or []}
    r = expect_fail(ctx, "run directory in use", [cfg, "--run-dir", d], ["in use by pid %d" % first.pid], 2)
    after = sorted(os.listdir(d))
    same = before == after and all(os.stat(os.path.join(d, n)).st_mtime_ns == mtimes[n] for n in after)
    ctx.check(same, "run directory in use: left untouched", "%r -> %r" % (before, after))
    if r is not None:
        ctx.check("status" not in r.stdout, "run directory in use: nothing printed on stdout", r.stdout)
    st = ctx.run(["status", "--run-dir", d])
    ctx.check(st is not None and st.returncode == 0 and "starting" in st.stdout,
              "status of a starting run answers", st.stdout + st.stderr if st else "timeout")
    first.send_signal(signal.SIGTERM)
    rc = wait(first, 60)
    ctx.check(rc is not None and rc == 0, "SIGTERM before training started: exit %s" % rc, output(first))
    check_clean(ctx, d, "stopped before training")
    # the directory now holds a run: without --resume it is refused
    expect_fail(ctx, "non-empty run dir without --resume", [cfg, "--run-dir", d], ["--resume"], 2)
    expect_fail(ctx, "--resume with nothing to resume", ["--resume", "--run-dir", d],
                ["nothing to resume"], 2)


def case_binaries(ctx, tokens):
    cfg = ctx.path("bins.yaml")
    write_config(cfg, tokens)
    bins = fake_bin(ctx, "two", {"ramtrain-worker": None})
    d = ctx.path("nobin")
    expect_fail(ctx, "missing service binary", [cfg, "--run-dir", d], ["ramtrain-worker"],
                created=d, env={"RAMTRAIN_BIN_DIR": bins})


def case_crash_at_start(ctx, tokens):
    cfg = ctx.path("crash.yaml")
    write_config(cfg, tokens)
    bins = fake_bin(ctx, "crash", {"ramtrain-dataloader": 'echo "fake dataloader: cannot start" >&2; exit 1'})
    d = ctx.path("crash")
    t0 = time.time()
    expect_fail(ctx, "data loader crashing at start-up", [cfg, "--run-dir", d],
                ["dataloader", "exit status 1", "fake dataloader: cannot start"], 1,
                env={"RAMTRAIN_BIN_DIR": bins})
    ctx.check(time.time() - t0 < 60, "gave up in %.1f s" % (time.time() - t0))
    log = open(os.path.join(d, "logs", "dataloader.log")).read()
    ctx.check(log.count("starting dataloader") == 3, "started the data loader 3 times",
              log)
    check_clean(ctx, d, "data loader crashing")


def case_worker_bad_input(ctx, tokens):
    cfg = ctx.path("wbad.yaml")
    write_config(cfg, tokens)
    bins = fake_bin(ctx, "wbad", {"ramtrain-worker":
                                  'echo "ramtrain-worker: train.batch_size: too large for the model" >&2; exit 2'})
    d = ctx.path("wbad")
    expect_fail(ctx, "worker exits 2", [cfg, "--run-dir", d],
                ["worker", "bad input", "too large for the model"], 2,
                env={"RAMTRAIN_BIN_DIR": bins})
    log = open(os.path.join(d, "logs", "worker.log")).read()
    ctx.check(log.count("starting worker") == 1, "a worker that exits 2 is not restarted", log)
    check_clean(ctx, d, "worker bad input")


def case_no_run(ctx):
    empty = ctx.path("not-a-run")
    os.makedirs(empty)
    for cmd in (["status"], ["stop"], ["restart", "worker"]):
        expect_fail(ctx, "%s on a directory that is no run" % cmd[0], cmd + ["--run-dir", empty],
                    ["not a run directory"], 1)
    # a run directory whose run has ended (left by case_in_use)
    ended = ctx.path("inuse")
    for cmd in (["status"], ["stop"], ["restart", "worker"]):
        expect_fail(ctx, "%s on a run that has ended" % cmd[0], cmd + ["--run-dir", ended],
                    ["no run is active"], 1)
    expect_fail(ctx, "restart of an unknown service", ["restart", "gpu", "--run-dir", ended],
                ["gpu"], 2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    args = ap.parse_args()
    ctx = Ctx(args.bin_dir, "rt-runbad-")
    for s in SERVICES[:2]:
        if not os.access(os.path.join(ctx.bin, s), os.X_OK):
            print("skip: %s not built" % s)
            return 77
    tokens = ctx.path("tokens.u32")
    write_tokens(tokens)
    try:
        case_config(ctx, tokens)
        case_binaries(ctx, tokens)
        case_in_use(ctx, tokens)
        case_crash_at_start(ctx, tokens)
        case_worker_bad_input(ctx, tokens)
        case_no_run(ctx)
    except Exception as e:  # noqa: BLE001 — any failure is a failed check, with its text
        import traceback
        traceback.print_exc()
        ctx.check(False, "error: %s" % e)
    return ctx.finish()


if __name__ == "__main__":
    sys.exit(main())
