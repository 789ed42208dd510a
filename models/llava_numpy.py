"""llama.cpp's forward pass for a LLaVA-layout pair, written once with an array module `xp` (NumPy or jax.numpy).

The suite runs it with NumPy to check the committed demo pair against llama.cpp itself; the trainer
(`models/train_test_model.py`) runs the same functions under JAX to differentiate them. No JAX import here.

What llama.cpp does, as checked numerically against llama-cpp-python 0.3.36 (tests/test_demo_model.py):

Text (llama architecture): RMSNorm, grouped-query attention, RoPE in NORMAL mode (adjacent pairs rotate
together; the Hugging Face permutation is a converter's business), SwiGLU, weights stored (out, in).

Vision (`tools/mtmd/clip.cpp`, "mlp" projector): resize into `image_size` square with Pillow's bicubic filter
(non-square frames letterboxed, centred, on colour (122, 116, 104)), x/255, mean/std; the patch convolution runs
on fp16-rounded image and kernel; the class embedding goes *after* the patches; position rows 0..n_patches are
added in that order; pre-layernorm; only the first `block_count - 1` blocks run; quick-GELU in the blocks when
`clip.use_gelu` is false; no post-layernorm; the projector reads rows 1..n_patches (patch 0 is dropped, the class
token is the last image embedding), then mm.0 -> GELU (tanh form) -> mm.2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PAD_COLOUR = (122, 116, 104)  # clip.cpp's letterbox colour for LLaVA-1.5 style projectors
Params = dict[str, Any]


@dataclass(frozen=True)
class TextConfig:
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_vocab: int
    rope_base: float = 10000.0
    eps: float = 1e-5


@dataclass(frozen=True)
class VisionConfig:
    image_size: int
    patch_size: int
    n_embd: int
    n_ff: int
    n_layer: int  # block_count as written in the file; block_count - 1 blocks run
    n_head: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    use_gelu: bool = False
    eps: float = 1e-5

    @property
    def n_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


# --- pixels --------------------------------------------------------------------------------------------------------


def letterbox(rgb: np.ndarray, size: int) -> np.ndarray:
    """`rgb` (H, W, 3) uint8 fitted into a `size` square as clip.cpp does it for an "mlp" projector: resized with
    Pillow's bicubic filter to ceil(side * scale) (scale in float32), then pasted at the floor of the centring
    offset on PAD_COLOUR. Checked against mtmd's encoder for frames that need no resampling (bit for bit) and for
    larger ones in both orientations (to its fixed-point rounding). A bilinear resize here, as the trainer once
    had, differed by up to 7 % of the embeddings' range on a 48x27 frame.
    """
    h, w = rgb.shape[:2]
    scale = min(np.float32(size) / np.float32(w), np.float32(size) / np.float32(h))
    nw = min(size, int(np.ceil(np.float32(w) * scale)))
    nh = min(size, int(np.ceil(np.float32(h) * scale)))
    if (nw, nh) != (w, h):
        from PIL import Image

        rgb = np.asarray(Image.fromarray(rgb).resize((nw, nh), Image.BICUBIC))
    out = np.empty((size, size, 3), dtype=np.uint8)
    out[:] = PAD_COLOUR
    x0, y0 = (size - nw) // 2, (size - nh) // 2
    out[y0 : y0 + nh, x0 : x0 + nw] = rgb
    return out


def normalise(square: np.ndarray, cfg: VisionConfig, xp: Any = np) -> Any:
    """(size, size, 3) uint8 -> (3, size, size) float32: x/255, then (x - mean) / std."""
    x = xp.asarray(square, dtype=xp.float32) / 255.0
    x = (x - xp.asarray(cfg.mean, dtype=xp.float32)) / xp.asarray(cfg.std, dtype=xp.float32)
    return xp.transpose(x, (2, 0, 1))


# --- building blocks -----------------------------------------------------------------------------------------------


def _f16(x: Any, xp: Any) -> Any:
    return x.astype(xp.float16).astype(xp.float32)


def _layer_norm(x: Any, w: Any, b: Any, eps: float, xp: Any) -> Any:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / xp.sqrt(var + eps) * w + b


def _rms_norm(x: Any, w: Any, eps: float, xp: Any) -> Any:
    return x / xp.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def _softmax(x: Any, xp: Any) -> Any:
    e = xp.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _gelu_tanh(x: Any, xp: Any) -> Any:
    return 0.5 * x * (1.0 + xp.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))


def _quick_gelu(x: Any, xp: Any) -> Any:
    return x / (1.0 + xp.exp(-1.702 * x))


def _silu(x: Any, xp: Any) -> Any:
    return x / (1.0 + xp.exp(-x))


# --- vision --------------------------------------------------------------------------------------------------------


def image_embeddings(p: Params, pixels: Any, cfg: VisionConfig, xp: Any = np, *, round_f16: bool = True) -> Any:
    """(3, S, S) normalised pixels -> (n_patches, text n_embd) embeddings, as mtmd's encoder returns them."""
    ps, g = cfg.patch_size, cfg.image_size // cfg.patch_size
    img = _f16(pixels, xp) if round_f16 else pixels
    kernel = p["v.patch_embd.weight"]
    kernel = _f16(kernel, xp) if round_f16 else kernel
    patches = img.reshape(3, g, ps, g, ps).transpose(1, 3, 0, 2, 4).reshape(g * g, 3 * ps * ps)
    x = patches @ kernel.reshape(cfg.n_embd, 3 * ps * ps).T  # (n_patches, embd), row-major patch order
    x = xp.concatenate([x, p["v.class_embd"][None, :]], axis=0)  # class token after the patches
    x = x + p["v.position_embd.weight"][: cfg.n_patches + 1]
    x = _layer_norm(x, p["v.pre_ln.weight"], p["v.pre_ln.bias"], cfg.eps, xp)
    n, hd = x.shape[0], cfg.n_embd // cfg.n_head
    act = _gelu_tanh if cfg.use_gelu else _quick_gelu
    for i in range(cfg.n_layer - 1):  # LLaVA's penultimate-layer features
        b = f"v.blk.{i}."
        h = _layer_norm(x, p[b + "ln1.weight"], p[b + "ln1.bias"], cfg.eps, xp)
        q = (h @ p[b + "attn_q.weight"].T + p[b + "attn_q.bias"]).reshape(n, cfg.n_head, hd).transpose(1, 0, 2)
        k = (h @ p[b + "attn_k.weight"].T + p[b + "attn_k.bias"]).reshape(n, cfg.n_head, hd).transpose(1, 0, 2)
        v = (h @ p[b + "attn_v.weight"].T + p[b + "attn_v.bias"]).reshape(n, cfg.n_head, hd).transpose(1, 0, 2)
        a = _softmax(q @ k.transpose(0, 2, 1) / np.sqrt(hd), xp) @ v
        a = a.transpose(1, 0, 2).reshape(n, cfg.n_embd)
        x = x + a @ p[b + "attn_out.weight"].T + p[b + "attn_out.bias"]
        h = _layer_norm(x, p[b + "ln2.weight"], p[b + "ln2.bias"], cfg.eps, xp)
        h = act(h @ p[b + "ffn_up.weight"].T + p[b + "ffn_up.bias"], xp)
        x = x + h @ p[b + "ffn_down.weight"].T + p[b + "ffn_down.bias"]
    x = x[1 : cfg.n_patches + 1]  # patch 0 dropped; the class token is the last row
    x = _gelu_tanh(x @ p["mm.0.weight"].T + p["mm.0.bias"], xp)
    return x @ p["mm.2.weight"].T + p["mm.2.bias"]


# --- text ----------------------------------------------------------------------------------------------------------


def _rope(x: Any, positions: Any, base: float, xp: Any) -> Any:
    """NORMAL mode: dimensions (2i, 2i+1) rotate by pos * base^(-2i/d). x: (heads, T, d)."""
    d = x.shape[-1]
    inv = base ** (-xp.arange(0, d, 2, dtype=xp.float32) / d)
    angle = positions.astype(xp.float32)[:, None] * inv[None, :]
    cos, sin = xp.cos(angle), xp.sin(angle)
    even, odd = x[..., 0::2], x[..., 1::2]
    return xp.stack([even * cos - odd * sin, even * sin + odd * cos], axis=-1).reshape(x.shape)


def text_forward(p: Params, embeddings: Any, cfg: TextConfig, xp: Any = np, *, past: Any = None) -> tuple[Any, Any]:
    """(T, n_embd) input embeddings -> the final-normed hidden states (T, n_embd) and each layer's (K, V).

    `past` is the (K, V) list this returned for earlier tokens: the input then sits at positions after them and
    attends to them as llama.cpp's KV cache does (the trainer computes the prompt prefix every example shares once).
    """
    t = embeddings.shape[0]
    start = 0 if past is None else past[0][0].shape[1]
    hd = cfg.n_embd // cfg.n_head
    group = cfg.n_head // cfg.n_head_kv
    positions = xp.arange(start, start + t)
    mask = xp.tril(xp.ones((t, start + t), dtype=bool), k=start)
    x = embeddings
    kv = []
    for i in range(cfg.n_layer):
        b = f"blk.{i}."
        h = _rms_norm(x, p[b + "attn_norm.weight"], cfg.eps, xp)
        q = (h @ p[b + "attn_q.weight"].T).reshape(t, cfg.n_head, hd).transpose(1, 0, 2)
        k = (h @ p[b + "attn_k.weight"].T).reshape(t, cfg.n_head_kv, hd).transpose(1, 0, 2)
        v = (h @ p[b + "attn_v.weight"].T).reshape(t, cfg.n_head_kv, hd).transpose(1, 0, 2)
        q, k = _rope(q, positions, cfg.rope_base, xp), _rope(k, positions, cfg.rope_base, xp)
        if past is not None:
            k = xp.concatenate([past[i][0], k], axis=1)
            v = xp.concatenate([past[i][1], v], axis=1)
        kv.append((k, v))
        k, v = xp.repeat(k, group, axis=0), xp.repeat(v, group, axis=0)
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(hd)
        scores = xp.where(mask[None], scores, -1e30)
        a = (_softmax(scores, xp) @ v).transpose(1, 0, 2).reshape(t, cfg.n_embd)
        x = x + a @ p[b + "attn_output.weight"].T
        h = _rms_norm(x, p[b + "ffn_norm.weight"], cfg.eps, xp)
        h = _silu(h @ p[b + "ffn_gate.weight"].T, xp) * (h @ p[b + "ffn_up.weight"].T)
        x = x + h @ p[b + "ffn_down.weight"].T
    return _rms_norm(x, p["output_norm.weight"], cfg.eps, xp), kv


def text_logits(p: Params, embeddings: Any, cfg: TextConfig, xp: Any = np) -> Any:
    """(T, n_embd) input embeddings at positions 0..T-1 -> (T, n_vocab) logits, causal attention."""
    return text_forward(p, embeddings, cfg, xp)[0] @ p["output.weight"].T


# --- files ---------------------------------------------------------------------------------------------------------


def _field(reader: Any, key: str) -> Any:
    f = reader.fields[key]
    if len(f.data) == 1:
        value = f.parts[f.data[0]]
        return value.tobytes().decode() if value.dtype == np.uint8 else value[0].item()
    return [f.parts[i][0].item() for i in f.data]


def _tensors(reader: Any) -> Params:
    out: Params = {}
    for t in reader.tensors:
        shape = tuple(int(s) for s in reversed(t.shape.tolist()))
        out[t.name] = np.asarray(t.data, dtype=np.float32).reshape(shape)
    return out


def load_text(path: Path) -> tuple[Params, TextConfig]:
    import gguf

    r = gguf.GGUFReader(str(path))
    p = _tensors(r)
    cfg = TextConfig(
        n_embd=_field(r, "llama.embedding_length"),
        n_layer=_field(r, "llama.block_count"),
        n_head=_field(r, "llama.attention.head_count"),
        n_head_kv=_field(r, "llama.attention.head_count_kv"),
        n_ff=_field(r, "llama.feed_forward_length"),
        n_vocab=p["token_embd.weight"].shape[0],
        eps=_field(r, "llama.attention.layer_norm_rms_epsilon"),
    )
    return p, cfg


def load_vision(path: Path) -> tuple[Params, VisionConfig]:
    import gguf

    r = gguf.GGUFReader(str(path))
    p = _tensors(r)
    v = "clip.vision."
    cfg = VisionConfig(
        image_size=_field(r, v + "image_size"),
        patch_size=_field(r, v + "patch_size"),
        n_embd=_field(r, v + "embedding_length"),
        n_ff=_field(r, v + "feed_forward_length"),
        n_layer=_field(r, v + "block_count"),
        n_head=_field(r, v + "attention.head_count"),
        mean=tuple(_field(r, v + "image_mean")),  # type: ignore[arg-type]
        std=tuple(_field(r, v + "image_std")),  # type: ignore[arg-type]
        use_gelu=bool(_field(r, "clip.use_gelu")),
        eps=_field(r, v + "attention.layer_norm_epsilon"),
    )
    return p, cfg


def embed_image(path_or_params: Any, rgb: np.ndarray, cfg: VisionConfig | None = None) -> np.ndarray:
    """Image embeddings for an (H, W, 3) uint8 frame, with the letterbox done here."""
    if cfg is None:
        p, cfg = load_vision(path_or_params)
    else:
        p = path_or_params
    return np.asarray(image_embeddings(p, normalise(letterbox(rgb, cfg.image_size), cfg), cfg))
