"""test_dataloader: the real ramtrain-dataloader over ZeroMQ and its ring.

Starts the service binary on an ipc socket with its ring in a private
shared-memory directory (RAMTRAIN_SHM_DIR), asks for batches with GetBatch
(raw protobuf over pyzmq), and reads them out of the ring as a worker would.

Checks:
  - shuffle off, one u32 source: batch k, row r is the T + 1 tokens starting
    at token (k*B + r)*T, for batches asked in order and out of order;
  - backpressure: the loader never fills past its window of n_slots batches;
  - a loader killed with SIGKILL mid-ring and restarted serves the same bytes;
  - a shuffled mixture of two text sources gives the same batches with 1 and 3
    producer threads and across a restart;
  - a malformed request, an unknown body and GetBatch without its field get
    an ErrorReply; the service keeps serving.
Usage: test_dataloader.py --dataloader BIN
"""

import argparse
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import zmq

HDR = struct.Struct("<QII64sIIIIQQQQQQ")
SLOT = struct.Struct("<QII")
GET_BATCH, BATCH_READY, HELLO, READY, ERROR = 20, 21, 16, 17, 19


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field_str(f, s):
    s = s.encode()
    return varint(f << 3 | 2) + varint(len(s)) + s


def envelope(run_id, req, body_field, body=b""):
    return (field_str(1, run_id) + field_str(2, "test") + varint(3 << 3) + varint(req) +
            varint(4 << 3) + varint(1) + varint(body_field << 3 | 2) + varint(len(body)) + body)


def parse(buf):
    """{field: value} of a message: varints as ints, length-delimited as bytes."""
    out, i = {}, 0

    def rv(i):
        v, s = 0, 0
        while True:
            b = buf[i]
            i += 1
            v |= (b & 0x7F) << s
            s += 7
            if not b & 0x80:
                return v, i
    while i < len(buf):
        key, i = rv(i)
        f, wt = key >> 3, key & 7
        if wt == 0:
            v, i = rv(i)
        elif wt == 2:
            n, i = rv(i)
            v, i = buf[i:i + n], i + n
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        else:
            v, i = buf[i:i + 4], i + 4
        out[f] = v
    return out


class Ctx:
    def __init__(self, args):
        self.bin = args.dataloader
        self.tmp = tempfile.mkdtemp(prefix="rt-dl-")
        self.shm = tempfile.mkdtemp(prefix="rt-dl-shm-", dir="/dev/shm")
        self.n = self.fail = 0
        self.zc = zmq.Context()

    def check(self, ok, what):
        self.n += 1
        print("%s  %s" % ("ok  " if ok else "FAIL", what), flush=True)
        if not ok:
            self.fail += 1
        return ok

    def env(self):
        e = dict(os.environ)
        e["RAMTRAIN_SHM_DIR"] = self.shm
        return e


class Loader:
    def __init__(self, ctx, run_id, data_yaml, slots=4, threads=2):
        self.ctx, self.run_id = ctx, run_id
        self.run_dir = os.path.join(ctx.tmp, "run-" + run_id)
        self.args = [ctx.bin, "--run-id", run_id, "--run-dir", self.run_dir, "--data", data_yaml,
                     "--slots", str(slots), "--threads", str(threads), "--heartbeat-ms", "200"]
        self.log = os.path.join(ctx.tmp, "dl-%s.log" % run_id)
        self.req = 0
        self.start()

    def start(self):
        self.proc = subprocess.Popen(self.args, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
                                     env=self.ctx.env())
        self.sock = self.ctx.zc.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect("ipc://" + os.path.join(self.run_dir, "sock", "dataloader"))
        # wait until it answers (the index may be built first)
        for _ in range(600):
            r = self.call(HELLO, field_str(1, "worker"), timeout=100)
            if r is not None:
                return
            if self.proc.poll() is not None:
                raise RuntimeError("dataloader exited %d:\n%s" % (self.proc.returncode, open(self.log).read()))
        raise RuntimeError("dataloader did not answer:\n" + open(self.log).read())

    def call(self, body_field, body=b"", timeout=30000, raw=None):
        self.req += 1
        self.sock.send(raw if raw is not None else envelope(self.run_id, self.req, body_field, body))
        deadline = time.time() + timeout / 1000.0
        while time.time() < deadline:
            if not self.sock.poll(max(1, int((deadline - time.time()) * 1000))):
                return None
            m = parse(self.sock.recv())
            if 18 in m:  # heartbeat
                continue
            if m.get(3) == self.req or raw is not None:
                return m
        return None

    def get(self, k):
        """GetBatch(k) -> (tokens [B][T+1], mask [B][T], doc [B][T+1]) read from the ring."""
        m = self.call(GET_BATCH, varint(1 << 3) + varint(k))
        if m is None or BATCH_READY not in m:
            raise RuntimeError("GetBatch(%d): %r\n%s" % (k, m, open(self.log).read()[-2000:]))
        br = parse(m[BATCH_READY])
        slot = br[2]
        return self.read_slot(slot, k)

    def read_slot(self, slot, k=None):
        path = os.path.join(self.ctx.shm, "ramtrain.%s.ring" % self.run_id)
        with open(path, "rb") as f:
            data = f.read()
        h = HDR.unpack_from(data, 0)
        n_slots, rows, seq, slot_bytes, slots_off, t_off, m_off, d_off = h[4], h[5], h[6], h[8], h[9], h[10], h[11], h[12]
        batch, state, _ = SLOT.unpack_from(data, HDR.size + SLOT.size * slot)
        if k is not None and batch != k:
            raise RuntimeError("slot %d holds batch %d, not %d" % (slot, batch, k))
        base = slots_off + slot * slot_bytes
        tok = np.frombuffer(data, dtype="<i4", count=rows * (seq + 1), offset=base + t_off).reshape(rows, seq + 1)
        mask = np.frombuffer(data, dtype="u1", count=rows * seq, offset=base + m_off).reshape(rows, seq)
        doc = np.frombuffer(data, dtype="<u4", count=rows * (seq + 1), offset=base + d_off).reshape(rows, seq + 1)
        return tok.copy(), mask.copy(), doc.copy()

    def slot_batches(self):
        path = os.path.join(self.ctx.shm, "ramtrain.%s.ring" % self.run_id)
        data = open(path, "rb").read()
        n_slots = HDR.unpack_from(data, 0)[4]
        return [SLOT.unpack_from(data, HDR.size + SLOT.size * s)[:2] for s in range(n_slots)]

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.sock.close()

    def stop(self):
        self.sock.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def write_yaml(path, text):
    with open(path, "w") as f:
        f.write(text)


def case_u32(ctx):
    B, T = 4, 16
    rng = np.random.default_rng(1)
    toks = rng.integers(0, 256, size=20000, dtype=np.uint32)
    data = os.path.join(ctx.tmp, "stream.u32")
    toks.astype("<u4").tofile(data)
    y = os.path.join(ctx.tmp, "u32.yaml")
    write_yaml(y, "seq_len: %d\nbatch_rows: %d\nshuffle: false\nsources:\n  - path: stream.u32\n" % (T, B))
    ld = Loader(ctx, "u%d" % os.getpid(), y, slots=4, threads=2)
    try:
        bad = []
        order = list(range(12)) + [40, 3, 41, 2]
        for k in order:
            tok, mask, _ = ld.get(k)
            for r in range(B):
                start = (k * B + r) * T
                if not np.array_equal(tok[r], toks[start:start + T + 1].astype(np.int32)):
                    bad.append((k, r))
        ctx.check(not bad, "u32, shuffle off: batch k row r = tokens from (k*B + r)*T, asked in "
                  "order and out of order (%d batches%s)" % (len(order), ", wrong: %r" % bad[:4] if bad else ""))
        time.sleep(0.5)
        batches = [b for b, state in ld.slot_batches() if state != 0]
        # the last request (2) moved the window back from [40, 44) to [2, 6): a
        # worker asking for an older batch restarted and uses nothing newer
        ctx.check(sorted(batches) == [2, 3, 4, 5],
                  "backpressure: after GetBatch(41) then GetBatch(2) the ring holds exactly "
                  "the window [2, 6): %s" % sorted(batches))
        before = {k: ld.get(k)[0] for k in (5, 6, 7)}
        ld.kill()
        ld.start()
        after = {k: ld.get(k)[0] for k in (7, 5, 6)}
        ctx.check(all(np.array_equal(before[k], after[k]) for k in before),
                  "SIGKILL mid-ring and restart: batches 5..7 served again, identical")
        # broken requests
        for label, raw, field in (("malformed bytes", b"\xff\xfe junk", None),
                                  ("GetBatch without its batch field", None, GET_BATCH),
                                  ("an unknown body", None, 99)):
            if raw is not None:
                m = ld.call(0, raw=raw)
            else:
                m = ld.call(field, b"")
            ctx.check(m is not None and ERROR in m and ld.proc.poll() is None,
                      "messages: %s -> ErrorReply, service alive" % label)
        ctx.check(np.array_equal(ld.get(5)[0], before[5]), "messages: still serving after them")
    finally:
        ld.stop()


def case_mixture(ctx):
    d = os.path.join(ctx.tmp, "mix")
    os.makedirs(d)
    rnd = random.Random(3)
    words = ["alpha", "beta", "gamma", "delta", "épsilon", "ζήτα", "日本語", "🙂"]
    for name, n in (("a.txt", 300), ("b.txt", 120)):
        with open(os.path.join(d, name), "w") as f:
            for _ in range(n):
                f.write(" ".join(rnd.choice(words) for _ in range(rnd.randint(3, 40))) + "\n\n")
    y = os.path.join(d, "mix.yaml")
    write_yaml(y, "seq_len: 32\nbatch_rows: 3\nshuffle: true\nseed: 7\nsources:\n"
               "  - path: a.txt\n    split: blank_lines\n    weight: 0.7\n"
               "  - path: b.txt\n    split: blank_lines\n    weight: 0.3\n")
    got = []
    for threads in (1, 3):
        ld = Loader(ctx, "m%d_%d" % (threads, os.getpid()), y, slots=3, threads=threads)
        try:
            got.append([ld.get(k) for k in range(10)])
            if threads == 3:
                ld.kill()
                ld.start()
                got.append([ld.get(k) for k in (9, 0, 4)])
        finally:
            ld.stop()
    same = all(np.array_equal(x, y) for a, b in zip(got[0], got[1]) for x, y in zip(a, b))
    ctx.check(same, "shuffled mixture: 1 and 3 producer threads give identical batches 0..9")
    again = [got[0][k] for k in (9, 0, 4)]
    same = all(np.array_equal(x, y) for a, b in zip(again, got[2]) for x, y in zip(a, b))
    ctx.check(same, "shuffled mixture: identical after SIGKILL and restart")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataloader", required=True)
    args = ap.parse_args()
    ctx = Ctx(args)
    try:
        case_u32(ctx)
        case_mixture(ctx)
    except Exception as e:  # noqa: BLE001 — any failure is a failed check, with its text
        ctx.check(False, "error: %s" % e)
    left = [n for n in os.listdir(ctx.shm)]
    for n in left:
        os.unlink(os.path.join(ctx.shm, n))
    ctx.zc.term()
    print("%d checks, %d failed" % (ctx.n, ctx.fail))
    if ctx.fail:
        print("kept %s" % ctx.tmp)
        return 1
    shutil.rmtree(ctx.tmp, ignore_errors=True)
    shutil.rmtree(ctx.shm, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
