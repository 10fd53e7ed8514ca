"""PyTorch reference for bench_model: the same LLaMA model in fp32 eager
PyTorch, forward + backward of one micro-batch, timed the same way.

Prints one line "tokens_per_s <x>" for bench_model to read. Run by
bench/bench_model with the same config, batch, sequence length and thread
count as the C side; not meant to be run alone (but it can be).
"""
import argparse
import json
import math
import time

import torch
import torch.nn.functional as F


class Block(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        H, I = c["hidden_size"], c["intermediate_size"]
        self.nh, self.nkv = c["num_attention_heads"], c["num_key_value_heads"]
        self.hd = c.get("head_dim", H // self.nh)
        self.eps = c["rms_norm_eps"]
        self.n1 = torch.nn.Parameter(torch.ones(H))
        self.n2 = torch.nn.Parameter(torch.ones(H))
        self.q = torch.nn.Linear(H, self.nh * self.hd, bias=False)
        self.k = torch.nn.Linear(H, self.nkv * self.hd, bias=False)
        self.v = torch.nn.Linear(H, self.nkv * self.hd, bias=False)
        self.o = torch.nn.Linear(self.nh * self.hd, H, bias=False)
        self.gate = torch.nn.Linear(H, I, bias=False)
        self.up = torch.nn.Linear(H, I, bias=False)
        self.down = torch.nn.Linear(I, H, bias=False)

    def rms(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * w

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        h = self.rms(x, self.n1)
        q = self.q(h).view(B, T, self.nh, self.hd).transpose(1, 2)
        k = self.k(h).view(B, T, self.nkv, self.hd).transpose(1, 2)
        v = self.v(h).view(B, T, self.nkv, self.hd).transpose(1, 2)
        half = self.hd // 2

        def rot(t):
            return torch.cat([-t[..., half:], t[..., :half]], -1)

        q = q * cos + rot(q) * sin
        k = k * cos + rot(k) * sin
        g = self.nh // self.nkv
        k = k.repeat_interleave(g, 1)
        v = v.repeat_interleave(g, 1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd) + mask
        a = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, T, -1)
        x = x + self.o(a)
        h2 = self.rms(x, self.n2)
        return x + self.down(F.silu(self.gate(h2)) * self.up(h2))


class Model(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed = torch.nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.blocks = torch.nn.ModuleList(Block(c) for _ in range(c["num_hidden_layers"]))
        self.norm = torch.nn.Parameter(torch.ones(c["hidden_size"]))
        self.tied = c.get("tie_word_embeddings", False)
        if not self.tied:
            self.head = torch.nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        for p in self.parameters():
            if p.dim() >= 2:
                torch.nn.init.normal_(p, 0.0, 0.02)

    def forward(self, ids, targets):
        B, T = ids.shape
        c = self.c
        hd = c.get("head_dim", c["hidden_size"] // c["num_attention_heads"])
        inv = 1.0 / (c.get("rope_theta", 10000.0) ** (torch.arange(0, hd, 2).float() / hd))
        fr = torch.outer(torch.arange(T).float(), inv)
        emb = torch.cat([fr, fr], -1)
        cos, sin = emb.cos(), emb.sin()
        mask = torch.full((T, T), float("-inf")).triu(1)
        x = self.embed(ids)
        for b in self.blocks:
            x = b(x, cos, sin, mask)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + c["rms_norm_eps"]) * self.norm
        w = self.embed.weight if self.tied else self.head.weight
        return F.cross_entropy((x @ w.t()).reshape(B * T, -1), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--seq", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--iters", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    c = json.load(open(a.config))
    m = Model(c)
    ids = torch.randint(0, c["vocab_size"], (a.batch, a.seq + 1))
    best = float("inf")
    for it in range(a.iters + 1):
        m.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        m(ids[:, :-1], ids[:, 1:]).backward()
        dt = time.perf_counter() - t0
        if it > 0:  # the first iteration warms up allocator and thread pool
            best = min(best, dt)
    print("tokens_per_s %.1f" % (a.batch * a.seq / best), flush=True)


if __name__ == "__main__":
    main()
