"""PyTorch baseline for `pnpm perf tiny-flux-pytorch`: the tiny FLUX-Kontext velocity in eager PyTorch.

Usage: python3 tiny_flux_torch.py <folder>. The folder (written by tiny-flux-pytorch.mjs) holds manifest.json
and data.bin: the transformer config, every weight and input as float32 at an offset, and the engine's own
velocity, loss and gradient norms for the parity check. Prints one JSON line: parity figures and per-call
times (ms) of the forward and of forward + backward (the loss mean(v^2) differentiated for every weight).

The model is written here from the FLUX transformer's definition (diffusers' FluxTransformer2DModel layout
and key names: AdaLayerNormZero modulation, RMS-normed q/k, 3-axis interleaved RoPE, tanh-GELU MLPs,
single blocks with parallel attention and MLP), so it needs only torch; the parity check against the engine
proves it computes the same function.
"""

import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

folder = sys.argv[1]
manifest = json.load(open(os.path.join(folder, "manifest.json")))
raw = open(os.path.join(folder, "data.bin"), "rb").read()
torch.set_num_threads(manifest.get("threads") or os.cpu_count())


def tensor(entry):
    count = math.prod(entry["shape"])
    flat = torch.frombuffer(bytearray(raw[entry["offset"] : entry["offset"] + 4 * count]), dtype=torch.float32)
    return flat.reshape(entry["shape"])


W = {name: tensor(e).requires_grad_(True) for name, e in manifest["weights"].items()}
X = {name: tensor(e) for name, e in manifest["inputs"].items()}
cfg = manifest["config"]
heads, head_dim = cfg["num_attention_heads"], cfg["attention_head_dim"]
inner = heads * head_dim


def linear(name, x):
    return F.linear(x, W[name + ".weight"], W.get(name + ".bias"))


def layer_norm(x):
    return F.layer_norm(x, x.shape[-1:], eps=1e-6)


def rms_norm(x, weight):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * weight


def rope_tables(ids):
    cos, sin = [], []
    for axis, dim in enumerate(cfg["axes_dims_rope"]):
        freqs = 1.0 / (10000 ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
        angles = ids[:, axis].double()[:, None] * freqs[None]
        cos.append(angles.cos().repeat_interleave(2, dim=1))
        sin.append(angles.sin().repeat_interleave(2, dim=1))
    return torch.cat(cos, 1).float(), torch.cat(sin, 1).float()


def rotate(x, cos, sin):
    pairs = x.reshape(*x.shape[:-1], -1, 2)
    rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], -1).flatten(-2)
    return x * cos + rotated * sin


def split_heads(x):
    b, n, _ = x.shape
    return x.reshape(b, n, heads, head_dim).transpose(1, 2)


def attention(q, k, v, rope):
    q, k = rotate(q, *rope), rotate(k, *rope)
    scores = (q * (1 / math.sqrt(head_dim))) @ k.transpose(-1, -2)
    out = scores.softmax(-1) @ v
    b, h, n, d = out.shape
    return out.transpose(1, 2).reshape(b, n, h * d)


def qkv(prefix, x, q_key, k_key, v_key, nq, nk):
    q = rms_norm(split_heads(linear(f"{prefix}.{q_key}", x)), W[f"{prefix}.{nq}.weight"])
    k = rms_norm(split_heads(linear(f"{prefix}.{k_key}", x)), W[f"{prefix}.{nk}.weight"])
    return q, k, split_heads(linear(f"{prefix}.{v_key}", x))


def modulated(x, shift, scale):
    return layer_norm(x) * (1 + scale[:, None]) + shift[:, None]


def feed_forward(prefix, x):
    return linear(f"{prefix}.net.2", F.gelu(linear(f"{prefix}.net.0.proj", x), approximate="tanh"))


def double_block(i, x, c, temb_act, rope):
    p = f"transformer_blocks.{i}"
    sx, cx, gx, smx, cmx, gmx = linear(f"{p}.norm1.linear", temb_act).chunk(6, -1)
    sc, cc, gc, smc, cmc, gmc = linear(f"{p}.norm1_context.linear", temb_act).chunk(6, -1)
    nx, nc = modulated(x, sx, cx), modulated(c, sc, cc)
    a = f"{p}.attn"
    q, k, v = qkv(a, nx, "to_q", "to_k", "to_v", "norm_q", "norm_k")
    cq, ck, cv = qkv(a, nc, "add_q_proj", "add_k_proj", "add_v_proj", "norm_added_q", "norm_added_k")
    joint = attention(torch.cat([cq, q], 2), torch.cat([ck, k], 2), torch.cat([cv, v], 2), rope)
    text = c.shape[1]
    x = x + gx[:, None] * linear(f"{a}.to_out.0", joint[:, text:])
    c = c + gc[:, None] * linear(f"{a}.to_add_out", joint[:, :text])
    x = x + gmx[:, None] * feed_forward(f"{p}.ff", modulated(x, smx, cmx))
    c = c + gmc[:, None] * feed_forward(f"{p}.ff_context", modulated(c, smc, cmc))
    return x, c


def single_block(i, s, temb_act, rope):
    p = f"single_transformer_blocks.{i}"
    shift, scale, gate = linear(f"{p}.norm.linear", temb_act).chunk(3, -1)
    ns = modulated(s, shift, scale)
    attn = attention(*qkv(f"{p}.attn", ns, "to_q", "to_k", "to_v", "norm_q", "norm_k"), rope)
    mlp = F.gelu(linear(f"{p}.proj_mlp", ns), approximate="tanh")
    return s + gate[:, None] * linear(f"{p}.proj_out", torch.cat([attn, mlp], 2))


def timestep_features(sigma):
    half = 128
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    angles = (sigma * 1000)[:, None] * freqs[None]
    return torch.cat([angles.cos(), angles.sin()], -1)


def velocity():
    xt, context, text, sigma = X["xt"], X["context"], X["text"], X["t"]
    b, n, _ = xt.shape
    # The tiny text encoder: word embedding + learned positions; pooled = mean of the non-pad words.
    words = text @ W["text_embedding.weight"]
    mask = 1 - text[..., :1]
    pooled = (words * mask).sum(1) / mask.sum(1).clamp(min=1)
    encoder = words + W["text_position.weight"]
    x = linear("x_embedder", torch.cat([xt, context], 1))
    c = linear("context_embedder", encoder)
    temb = linear(
        "time_text_embed.timestep_embedder.linear_2",
        F.silu(linear("time_text_embed.timestep_embedder.linear_1", timestep_features(sigma))),
    ) + linear(
        "time_text_embed.text_embedder.linear_2",
        F.silu(linear("time_text_embed.text_embedder.linear_1", pooled)),
    )
    temb_act = F.silu(temb)
    rope = rope_tables(ids(text.shape[1], n))
    for i in range(cfg["num_layers"]):
        x, c = double_block(i, x, c, temb_act, rope)
    s = torch.cat([c, x], 1)
    for i in range(cfg["num_single_layers"]):
        s = single_block(i, s, temb_act, rope)
    x = s[:, text.shape[1] :]
    scale, shift = linear("norm_out.linear", temb_act).chunk(2, -1)
    out = linear("proj_out", layer_norm(x) * (1 + scale[:, None]) + shift[:, None])
    return out[:, :n]


def ids(text_tokens, image_tokens):
    # Text (0, 0, 0); target tokens (0, r, c), then the source's (1, r, c) on the same grid (FLUX-Kontext).
    grid = int(math.isqrt(image_tokens))
    rc = torch.stack(torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij"), -1).reshape(-1, 2)
    image = [torch.cat([torch.full((grid * grid, 1), k), rc], 1) for k in (0, 1)]
    return torch.cat([torch.zeros(text_tokens, 3, dtype=torch.long), *image], 0)


def forward_only():
    with torch.no_grad():
        return velocity()


def forward_backward():
    for w in W.values():
        w.grad = None
    loss = velocity().pow(2).mean()
    loss.backward()
    return loss


# Parity with the engine (same weights and inputs).
ref = manifest["reference"]
v = forward_only()
engine_v = tensor(manifest["reference"]["velocity"])
loss = forward_backward()
grad_norms = {k: float(W[k].grad.norm()) for k in ref["gradient_norms"]}
parity = {
    "velocity_max_abs_diff": float((v - engine_v).abs().max()),
    "velocity_scale": float(engine_v.abs().max()),
    "loss_rel_diff": abs(float(loss) - ref["loss"]) / abs(ref["loss"]),
    "gradient_norm_max_rel_diff": max(
        abs(grad_norms[k] - n) / max(n, 1e-30) for k, n in ref["gradient_norms"].items()
    ),
}

times = {"forward": [], "forward_backward": []}
for fn in (forward_only, forward_backward):
    fn()
for _ in range(manifest["reps"]):
    for key, fn in (("forward", forward_only), ("forward_backward", forward_backward)):
        t = time.perf_counter()
        fn()
        times[key].append((time.perf_counter() - t) * 1000)
print(
    json.dumps(
        {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "parity": parity,
            "median_ms": {k: statistics.median(xs) for k, xs in times.items()},
        }
    )
)
