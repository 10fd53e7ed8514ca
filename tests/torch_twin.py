"""torch_twin: the independent numerical oracle of the ramtrain tests.

A plain PyTorch (float64) re-implementation of the Hugging Face Llama /
Mistral / Qwen2 decoder that ramtrain trains, written from the Hugging Face
modeling code and sharing nothing with the C sources. test_vs_torch.py runs
`ramtrain grad` and compares its loss and gradients with loss_and_grads()
below; test_bad_input.py uses the safetensors helpers to build broken inputs.

Contents:
  parse_config(d)             config.json dict -> Config (raises ValueError)
  weight_shapes(cfg)          {Hugging Face tensor name: shape}, in model order
  read_safetensors(path)      {name: float64 tensor}, metadata, header
  load_checkpoint(dir)        a model directory (single file or sharded)
  write_safetensors(...)      our own writer (F32, F16, BF16, F64)
  write_sharded(...)          the same split over n files + index.json
  read_raw / write_raw        header dict + data bytes, for corrupting files
  init_weights(cfg, seed)     normal(0, initializer_range), norms 1, biases 0
  loss_and_grads(cfg, w, rows)  float64 loss and autograd gradients
  random_config(rng, ...)     a small random config.json dict
  write_config(path, d)

Run `python3 torch_twin.py` for a self-check: gradcheck of the float64 model
on a tiny config and a safetensors write/read round trip in every dtype.

Requires only Python 3, numpy and torch (no safetensors, no transformers).
"""

import json
import math
import os
import random
import struct
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")

# ----------------------------------------------------------------------------
# config.json
# ----------------------------------------------------------------------------


@dataclass
class Config:
    model_type: str
    hidden: int
    intermediate: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab: int
    rms_eps: float
    rope_theta: float
    rope_type: str            # "default", "linear" or "llama3"
    rope_factor: float        # linear, llama3
    rope_low_freq_factor: float   # llama3
    rope_high_freq_factor: float  # llama3
    rope_orig_max_pos: int        # llama3
    max_pos: int
    tie_embeddings: bool
    qkv_bias: bool
    o_bias: bool
    init_range: float
    sliding_window: int       # 0 when none


def _req_int(d, key):
    if key not in d or d[key] is None:
        raise ValueError("config: missing %s" % key)
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ValueError("config: %s must be a positive integer, got %r" % (key, v))
    return v


def parse_config(d):
    """Parses a Hugging Face config.json dict the way Transformers reads it."""
    if not isinstance(d, dict):
        raise ValueError("config: not a JSON object")
    mt = d.get("model_type")
    if mt not in SUPPORTED_MODEL_TYPES:
        raise ValueError("config: unsupported model_type %r" % (mt,))
    hidden = _req_int(d, "hidden_size")
    inter = _req_int(d, "intermediate_size")
    n_layers = _req_int(d, "num_hidden_layers")
    n_heads = _req_int(d, "num_attention_heads")
    vocab = _req_int(d, "vocab_size")
    n_kv = d.get("num_key_value_heads")
    n_kv = n_heads if n_kv is None else n_kv
    if n_heads % n_kv != 0:
        raise ValueError("config: num_attention_heads %d not a multiple of num_key_value_heads %d"
                         % (n_heads, n_kv))
    head_dim = d.get("head_dim")
    if head_dim is None:
        if hidden % n_heads != 0:
            raise ValueError("config: hidden_size not divisible by num_attention_heads")
        head_dim = hidden // n_heads
    if head_dim % 2 != 0:
        raise ValueError("config: head_dim must be even for RoPE")
    if d.get("mlp_bias"):
        raise ValueError("config: mlp_bias is not supported")

    # RoPE: newer Transformers put everything in rope_parameters; older ones
    # use rope_theta plus an optional rope_scaling dict.
    rp = d.get("rope_parameters")
    if rp is not None:
        scaling = rp
        theta = rp.get("rope_theta", d.get("rope_theta", 10000.0))
    else:
        scaling = d.get("rope_scaling") or {}
        theta = d.get("rope_theta", 10000.0)
    rope_type = scaling.get("rope_type", scaling.get("type", "default")) or "default"
    if rope_type not in ("default", "linear", "llama3"):
        raise ValueError("config: unsupported rope_scaling type %r" % (rope_type,))
    factor = float(scaling.get("factor", 1.0)) if rope_type != "default" else 1.0
    low = float(scaling.get("low_freq_factor", 1.0))
    high = float(scaling.get("high_freq_factor", 4.0))
    orig = int(scaling.get("original_max_position_embeddings",
                           d.get("max_position_embeddings", 2048)))

    if mt == "qwen2":
        qkv_bias, o_bias = True, False
    elif mt == "llama":
        qkv_bias = o_bias = bool(d.get("attention_bias", False))
    else:  # mistral
        qkv_bias = o_bias = False

    window = 0
    if mt == "mistral" and d.get("sliding_window") is not None:
        window = int(d["sliding_window"])
    if mt == "qwen2" and d.get("use_sliding_window"):
        raise ValueError("config: qwen2 use_sliding_window is not modelled by the twin")

    return Config(
        model_type=mt, hidden=hidden, intermediate=inter, n_layers=n_layers,
        n_heads=n_heads, n_kv_heads=n_kv, head_dim=head_dim, vocab=vocab,
        rms_eps=float(d.get("rms_norm_eps", 1e-6)), rope_theta=float(theta),
        rope_type=rope_type, rope_factor=factor, rope_low_freq_factor=low,
        rope_high_freq_factor=high, rope_orig_max_pos=orig,
        max_pos=int(d.get("max_position_embeddings", 2048)),
        tie_embeddings=bool(d.get("tie_word_embeddings", False)),
        qkv_bias=qkv_bias, o_bias=o_bias,
        init_range=float(d.get("initializer_range", 0.02)),
        sliding_window=window)


def load_config(path):
    with open(path) as f:
        return parse_config(json.load(f))


def weight_shapes(cfg):
    """Every weight of the model under its Hugging Face name, with its shape."""
    H, I, V = cfg.hidden, cfg.intermediate, cfg.vocab
    q, kv = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
    s = {"model.embed_tokens.weight": (V, H)}
    for i in range(cfg.n_layers):
        p = "model.layers.%d." % i
        s[p + "input_layernorm.weight"] = (H,)
        s[p + "self_attn.q_proj.weight"] = (q, H)
        s[p + "self_attn.k_proj.weight"] = (kv, H)
        s[p + "self_attn.v_proj.weight"] = (kv, H)
        s[p + "self_attn.o_proj.weight"] = (H, q)
        if cfg.qkv_bias:
            s[p + "self_attn.q_proj.bias"] = (q,)
            s[p + "self_attn.k_proj.bias"] = (kv,)
            s[p + "self_attn.v_proj.bias"] = (kv,)
        if cfg.o_bias:
            s[p + "self_attn.o_proj.bias"] = (H,)
        s[p + "post_attention_layernorm.weight"] = (H,)
        s[p + "mlp.gate_proj.weight"] = (I, H)
        s[p + "mlp.up_proj.weight"] = (I, H)
        s[p + "mlp.down_proj.weight"] = (H, I)
    s["model.norm.weight"] = (H,)
    if not cfg.tie_embeddings:
        s["lm_head.weight"] = (V, H)
    return s


def is_norm(name):
    return name.endswith("layernorm.weight") or name == "model.norm.weight"


# ----------------------------------------------------------------------------
# safetensors (our own reader and writer)
# ----------------------------------------------------------------------------

DTYPE_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2,
              "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
              "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")


class SafetensorsError(Exception):
    pass


def read_raw(path):
    """Returns (header dict including any __metadata__, data section bytes)."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise SafetensorsError("%s: shorter than the 8-byte header length" % path)
    (n,) = struct.unpack("<Q", blob[:8])
    if 8 + n > len(blob):
        raise SafetensorsError("%s: header length %d runs past the file" % (path, n))
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    return header, blob[8 + n:]


def write_raw(path, header, data, align=True):
    """Writes header (dict, serialized as given) and data bytes. No checks, so
    it can write broken files on purpose."""
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    if align:
        hj += b" " * ((8 - (8 + len(hj)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        f.write(data)


def _decode(dtype, buf, shape):
    n = int(np.prod(shape)) if len(shape) else 1
    if dtype == "F32":
        a = np.frombuffer(buf, dtype="<f4", count=n).astype(np.float64)
    elif dtype == "F64":
        a = np.frombuffer(buf, dtype="<f8", count=n).copy()
    elif dtype == "F16":
        a = np.frombuffer(buf, dtype="<f2", count=n).astype(np.float64)
    elif dtype == "BF16":
        u = np.frombuffer(buf, dtype="<u2", count=n).astype(np.uint32) << 16
        a = u.view(np.float32).astype(np.float64)
    else:
        raise SafetensorsError("dtype %s is not a float type" % dtype)
    return torch.from_numpy(a.reshape(shape))


def _encode(dtype, t):
    t = torch.as_tensor(t).detach().cpu()
    if dtype == "F32":
        return t.to(torch.float32).contiguous().numpy().astype("<f4").tobytes()
    if dtype == "F64":
        return t.to(torch.float64).contiguous().numpy().astype("<f8").tobytes()
    if dtype == "F16":
        return t.to(torch.float16).contiguous().numpy().astype("<f2").tobytes()
    if dtype == "BF16":  # round to nearest even, done by torch
        b = t.to(torch.float32).to(torch.bfloat16).contiguous().view(torch.int16)
        return b.numpy().astype("<i2").tobytes()
    raise SafetensorsError("cannot write dtype %s" % dtype)


def read_safetensors(path):
    """Reads one file strictly. Returns ({name: float64 tensor}, metadata, header);
    header maps names to their {dtype, shape, data_offsets}."""
    header, data = read_raw(path)
    meta = header.pop("__metadata__", None) or {}
    spans = []
    out = {}
    for name, e in header.items():
        dtype, shape, (b, end) = e["dtype"], tuple(e["shape"]), e["data_offsets"]
        if dtype not in DTYPE_SIZE:
            raise SafetensorsError("%s: %s: unknown dtype %s" % (path, name, dtype))
        nbytes = DTYPE_SIZE[dtype] * (int(np.prod(shape)) if shape else 1)
        if not (0 <= b <= end <= len(data)) or end - b != nbytes:
            raise SafetensorsError("%s: %s: bad data_offsets %r for %s %r"
                                   % (path, name, [b, end], dtype, list(shape)))
        spans.append((b, end, name))
        out[name] = _decode(dtype, data[b:end], shape)
    pos = 0
    for b, end, name in sorted(spans):
        if b != pos:
            raise SafetensorsError("%s: %s: data_offsets overlap or leave a hole" % (path, name))
        pos = end
    if pos != len(data):
        raise SafetensorsError("%s: %d trailing bytes after the last tensor" % (path, len(data) - pos))
    return out, meta, header


def write_safetensors(path, tensors, dtype="F32", metadata=None):
    """tensors: {name: tensor}; dtype: one for all, or {name: dtype}."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    chunks, pos = [], 0
    for name, t in tensors.items():
        dt = dtype[name] if isinstance(dtype, dict) else dtype
        raw = _encode(dt, t)
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [pos, pos + len(raw)]}
        chunks.append(raw)
        pos += len(raw)
    write_raw(path, header, b"".join(chunks))


def write_sharded(dirpath, tensors, dtype="F32", n_shards=2, metadata=None):
    """Splits tensors (in order) over n_shards files model-0000k-of-0000n.safetensors
    and writes model.safetensors.index.json next to them."""
    names = list(tensors)
    per = -(-len(names) // n_shards)
    weight_map, total = {}, 0
    for k in range(n_shards):
        part = names[k * per:(k + 1) * per]
        fname = "model-%05d-of-%05d.safetensors" % (k + 1, n_shards)
        write_safetensors(os.path.join(dirpath, fname), {n: tensors[n] for n in part},
                          dtype, metadata)
        for n in part:
            weight_map[n] = fname
            dt = dtype[n] if isinstance(dtype, dict) else dtype
            total += DTYPE_SIZE[dt] * tensors[n].numel()
    with open(os.path.join(dirpath, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def load_checkpoint(dirpath):
    """Reads the weights of a model directory: model.safetensors or the shards
    of model.safetensors.index.json. Returns ({name: float64 tensor}, {name: dtype})."""
    idx = os.path.join(dirpath, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    weights, dtypes = {}, {}
    for fn in files:
        t, _, h = read_safetensors(os.path.join(dirpath, fn))
        for n in t:
            if n in weights:
                raise SafetensorsError("%s: tensor %s appears twice" % (dirpath, n))
            weights[n] = t[n]
            dtypes[n] = h[n]["dtype"]
    return weights, dtypes


# ----------------------------------------------------------------------------
# weights
# ----------------------------------------------------------------------------


def init_weights(cfg, seed):
    """fp32 weights as Hugging Face initializes them: normal(0, initializer_range)
    matrices, zero biases, norm weights 1. Deterministic in seed (not the same
    numbers as `ramtrain init`)."""
    g = torch.Generator().manual_seed(seed)
    w = {}
    for name, shape in weight_shapes(cfg).items():
        if is_norm(name):
            w[name] = torch.ones(shape, dtype=torch.float32)
        elif name.endswith(".bias"):
            w[name] = torch.zeros(shape, dtype=torch.float32)
        else:
            w[name] = torch.randn(shape, generator=g, dtype=torch.float32) * cfg.init_range
    return w


# ----------------------------------------------------------------------------
# the model, in float64
# ----------------------------------------------------------------------------


def rope_inv_freq(cfg):
    """inv_freq[head_dim/2] after rope scaling, as Transformers' ROPE_INIT_FUNCTIONS."""
    d = cfg.head_dim
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    if cfg.rope_type == "linear":
        inv = inv / cfg.rope_factor
    elif cfg.rope_type == "llama3":
        factor, low, high = cfg.rope_factor, cfg.rope_low_freq_factor, cfg.rope_high_freq_factor
        old_ctx = cfg.rope_orig_max_pos
        low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
        wavelen = 2 * math.pi / inv
        inv_l = torch.where(wavelen > low_wavelen, inv / factor, inv)
        smooth = (old_ctx / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
        medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
        inv = torch.where(medium, smoothed, inv_l)
    return inv


def rope_cos_sin(cfg, T):
    pos = torch.arange(T, dtype=torch.float64)
    freqs = torch.outer(pos, rope_inv_freq(cfg))
    emb = torch.cat([freqs, freqs], dim=-1)          # [T, head_dim]
    return emb.cos(), emb.sin()


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def linear(x, w, b=None):
    y = x @ w.t()
    return y if b is None else y + b


def forward_loss(cfg, w, rows):
    """w: {name: float64 tensor}; rows: int64 tensor [B, T+1]. Returns the mean
    cross-entropy of predicting rows[:, 1:] from rows[:, :-1]."""
    inp, tgt = rows[:, :-1], rows[:, 1:]
    B, T = inp.shape
    nh, nkv, hd = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    cos, sin = rope_cos_sin(cfg, T)
    i = torch.arange(T).view(T, 1)
    j = torch.arange(T).view(1, T)
    allowed = j <= i
    if cfg.sliding_window:
        allowed = allowed & (i - j < cfg.sliding_window)
    x = w["model.embed_tokens.weight"][inp]          # [B, T, H]
    for layer in range(cfg.n_layers):
        p = "model.layers.%d." % layer
        a = p + "self_attn."
        h = rms_norm(x, w[p + "input_layernorm.weight"], cfg.rms_eps)
        q = linear(h, w[a + "q_proj.weight"], w.get(a + "q_proj.bias"))
        k = linear(h, w[a + "k_proj.weight"], w.get(a + "k_proj.bias"))
        v = linear(h, w[a + "v_proj.weight"], w.get(a + "v_proj.bias"))
        q = q.view(B, T, nh, hd).transpose(1, 2)     # [B, nh, T, hd]
        k = k.view(B, T, nkv, hd).transpose(1, 2)
        v = v.view(B, T, nkv, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(nh // nkv, dim=1)   # HF repeat_kv: head h uses kv head h // n_rep
        v = v.repeat_interleave(nh // nkv, dim=1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        s = s.masked_fill(~allowed, float("-inf"))
        o = torch.softmax(s, dim=-1) @ v             # [B, nh, T, hd]
        o = o.transpose(1, 2).reshape(B, T, nh * hd)
        x = x + linear(o, w[a + "o_proj.weight"], w.get(a + "o_proj.bias"))
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], cfg.rms_eps)
        m = F.silu(linear(h, w[p + "mlp.gate_proj.weight"])) * linear(h, w[p + "mlp.up_proj.weight"])
        x = x + linear(m, w[p + "mlp.down_proj.weight"])
    x = rms_norm(x, w["model.norm.weight"], cfg.rms_eps)
    head = w["model.embed_tokens.weight"] if cfg.tie_embeddings else w["lm_head.weight"]
    logits = x @ head.t()
    return F.cross_entropy(logits.reshape(B * T, -1), tgt.reshape(B * T), ignore_index=-100)


def loss_and_grads(cfg, weights, rows):
    """weights: {name: tensor} (any float dtype, upcast to float64); rows: [B, T+1]
    integer array-like. Returns (loss float, {name: float64 gradient})."""
    expected = weight_shapes(cfg)
    if set(weights) != set(expected):
        raise ValueError("weights do not match the config: missing %s, extra %s"
                         % (sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))))
    w = {}
    for n, t in weights.items():
        if tuple(t.shape) != tuple(expected[n]):
            raise ValueError("%s: shape %r, config wants %r" % (n, tuple(t.shape), expected[n]))
        w[n] = t.detach().to(torch.float64).clone().requires_grad_(True)
    rows = torch.as_tensor(np.asarray(rows, dtype=np.int64))
    loss = forward_loss(cfg, w, rows)
    loss.backward()
    return loss.item(), {n: t.grad for n, t in w.items()}


# ----------------------------------------------------------------------------
# random configs and token files
# ----------------------------------------------------------------------------


def random_config(rng, **over):
    """A small random config.json dict; keyword arguments override keys (a value
    of None deletes the key). rng: random.Random."""
    n_kv = rng.choice([1, 2, 3])
    n_heads = n_kv * rng.choice([1, 2, 4])
    head_dim = rng.choice([4, 6, 8, 10, 12])
    d = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": rng.choice([20, 28, 36, 44]),
        "intermediate_size": rng.choice([30, 50, 66]),
        "num_hidden_layers": rng.choice([1, 2, 3]),
        "num_attention_heads": n_heads,
        "num_key_value_heads": n_kv,
        "head_dim": head_dim,
        "vocab_size": rng.choice([61, 97, 131]),
        "rms_norm_eps": rng.choice([1e-5, 1e-6]),
        "rope_theta": rng.choice([10000.0, 500000.0]),
        "max_position_embeddings": 2048,
        "tie_word_embeddings": rng.random() < 0.5,
        "attention_bias": False,
        "initializer_range": 0.02,
        "torch_dtype": "float32",
        "hidden_act": "silu",
    }
    for k, v in over.items():
        if v is None:
            d.pop(k, None)
        else:
            d[k] = v
    arch = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
            "qwen2": "Qwen2ForCausalLM"}.get(d.get("model_type"))
    if arch and "architectures" not in over:
        d["architectures"] = [arch]
    return d


def write_config(path, d):
    with open(path, "w") as f:
        json.dump(d, f, indent=2)


def random_rows(rng, vocab, B, T):
    """B rows of T+1 token ids in [0, vocab), as a uint32 numpy array."""
    return np.array([[rng.randrange(vocab) for _ in range(T + 1)] for _ in range(B)], dtype=np.uint32)


def write_tokens(path, rows):
    np.ascontiguousarray(rows, dtype="<u4").tofile(path)


# ----------------------------------------------------------------------------
# self-check
# ----------------------------------------------------------------------------


def _naive_loss(cfg, w, rows):
    """A slow, loop-by-loop second reading of the model for the self-check:
    RoPE as explicit rotations of the pairs (i, i + head_dim/2), GQA as an
    index computation, causal softmax per query."""
    w = {n: t.detach().double() for n, t in w.items()}
    hd, half = cfg.head_dim, cfg.head_dim // 2
    inv = [1.0 / cfg.rope_theta ** (2 * i / hd) for i in range(half)]
    if cfg.rope_type == "linear":
        inv = [f / cfg.rope_factor for f in inv]
    elif cfg.rope_type == "llama3":
        out = []
        for f in inv:
            wl = 2 * math.pi / f
            if wl < cfg.rope_orig_max_pos / cfg.rope_high_freq_factor:
                out.append(f)
            elif wl > cfg.rope_orig_max_pos / cfg.rope_low_freq_factor:
                out.append(f / cfg.rope_factor)
            else:
                sm = (cfg.rope_orig_max_pos / wl - cfg.rope_low_freq_factor) / \
                    (cfg.rope_high_freq_factor - cfg.rope_low_freq_factor)
                out.append((1 - sm) * f / cfg.rope_factor + sm * f)
        inv = out

    def rope(vec, pos):
        r = vec.clone()
        for i in range(half):
            c, s = math.cos(pos * inv[i]), math.sin(pos * inv[i])
            r[i] = vec[i] * c - vec[i + half] * s
            r[i + half] = vec[i + half] * c + vec[i] * s
        return r

    def norm(v, g):
        return v / math.sqrt(float((v * v).mean()) + cfg.rms_eps) * g

    def lin(v, name):
        y = w[name + ".weight"] @ v
        return y + w[name + ".bias"] if name + ".bias" in w else y

    total, count = 0.0, 0
    for row in rows.tolist():
        T = len(row) - 1
        xs = [w["model.embed_tokens.weight"][row[t]].clone() for t in range(T)]
        for layer in range(cfg.n_layers):
            p = "model.layers.%d." % layer
            hs = [norm(x, w[p + "input_layernorm.weight"]) for x in xs]
            qs = [rope(lin(h, p + "self_attn.q_proj").view(cfg.n_heads, hd)[hh], t)
                  for t, h in enumerate(hs) for hh in range(cfg.n_heads)]
            ks = [rope(lin(h, p + "self_attn.k_proj").view(cfg.n_kv_heads, hd)[kk], t)
                  for t, h in enumerate(hs) for kk in range(cfg.n_kv_heads)]
            vs = [lin(h, p + "self_attn.v_proj").view(cfg.n_kv_heads, hd)[kk]
                  for h in hs for kk in range(cfg.n_kv_heads)]
            group = cfg.n_heads // cfg.n_kv_heads
            new = []
            for t in range(T):
                heads = []
                for hh in range(cfg.n_heads):
                    kk = hh // group
                    q = qs[t * cfg.n_heads + hh]
                    sc = [float(q @ ks[u * cfg.n_kv_heads + kk]) / math.sqrt(hd) for u in range(t + 1)]
                    mx = max(sc)
                    e = [math.exp(s - mx) for s in sc]
                    o = sum(e[u] / sum(e) * vs[u * cfg.n_kv_heads + kk] for u in range(t + 1))
                    heads.append(o)
                x = xs[t] + lin(torch.cat(heads), p + "self_attn.o_proj")
                h = norm(x, w[p + "post_attention_layernorm.weight"])
                g, u = lin(h, p + "mlp.gate_proj"), lin(h, p + "mlp.up_proj")
                new.append(x + lin(g / (1 + torch.exp(-g)) * u, p + "mlp.down_proj"))
            xs = new
        head = w["model.embed_tokens.weight"] if cfg.tie_embeddings else w["lm_head.weight"]
        for t in range(T):
            z = head @ norm(xs[t], w["model.norm.weight"])
            total += float(torch.logsumexp(z, 0) - z[row[t + 1]])
            count += 1
    return total / count


def _bf16_rne(t):
    """fp32 -> bf16 bits, round to nearest even, done by hand with integers."""
    b = t.to(torch.float32).numpy().view(np.uint32).astype(np.uint64)
    return ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)


def _selfcheck():
    import tempfile
    rng = random.Random(1)
    ok = True
    for d in (random_config(rng, hidden_size=10, intermediate_size=14, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, head_dim=4, vocab_size=11,
                            model_type="qwen2", tie_word_embeddings=True,
                            rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                          "high_freq_factor": 4.0,
                                          "original_max_position_embeddings": 8}),
              random_config(rng, hidden_size=9, intermediate_size=7, num_hidden_layers=1,
                            num_attention_heads=3, num_key_value_heads=1, head_dim=6, vocab_size=13,
                            attention_bias=True, tie_word_embeddings=False,
                            rope_scaling={"type": "linear", "factor": 2.0})):
        cfg = parse_config(d)
        w = init_weights(cfg, 3)
        g = torch.Generator().manual_seed(5)
        for n in w:   # nontrivial norms and biases, larger weights
            w[n] = (w[n] * 10 if not (is_norm(n) or n.endswith(".bias")) else w[n]) + \
                0.3 * torch.randn(w[n].shape, generator=g)
        rows = torch.as_tensor(random_rows(rng, cfg.vocab, 2, 5).astype(np.int64))
        names = list(w)

        def f(*ts):
            return forward_loss(cfg, dict(zip(names, ts)), rows)
        inputs = tuple(w[n].double().requires_grad_(True) for n in names)
        r = torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)
        print("gradcheck %s tie=%s bias=%s rope=%s: %s"
              % (cfg.model_type, cfg.tie_embeddings, cfg.qkv_bias, cfg.rope_type, r))
        ok &= bool(r)
        fast, slow = forward_loss(cfg, {n: t.double() for n, t in w.items()}, rows).item(), \
            _naive_loss(cfg, w, rows)
        print("vectorized vs loop-by-loop loss: %.15g %.15g" % (fast, slow))
        ok &= abs(fast - slow) <= 1e-12 * abs(slow)
        with tempfile.TemporaryDirectory() as td:
            for dt in ("F32", "F64", "F16", "BF16"):
                p = os.path.join(td, "m.safetensors")
                write_safetensors(p, w, dt, {"format": "pt"})
                back, meta, hdr = read_safetensors(p)
                for n in names:
                    exp = _decode(dt, _encode(dt, w[n]), tuple(w[n].shape))
                    if not torch.equal(back[n], exp) or hdr[n]["dtype"] != dt:
                        print("round trip %s %s: MISMATCH" % (dt, n))
                        ok = False
                if dt == "BF16":
                    raw = np.frombuffer(_encode(dt, w[names[0]]), dtype="<u2")
                    same = np.array_equal(raw, _bf16_rne(w[names[0]]).ravel())
                    print("bf16 encoding matches integer round-to-nearest-even: %s" % same)
                    ok &= same
                err = max((back[n] - w[n].double()).abs().max().item() for n in names)
                print("round trip %s: max abs change %.3g, metadata %s" % (dt, err, meta))
                ok &= meta == {"format": "pt"}
            write_sharded(td, w, "BF16", 2)
            back, dts = load_checkpoint(td)
            ok &= set(back) == set(names) and set(dts.values()) == {"BF16"}
            print("sharded round trip: %d tensors" % len(back))
    print("selfcheck", "OK" if ok else "FAILED")
    return ok


if __name__ == "__main__":
    import sys
    sys.exit(0 if _selfcheck() else 1)
