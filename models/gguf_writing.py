"""Writing the generated test models' GGUF files: what every generator here needs, written once.

- `gguf_file` writes under a temporary name and renames only a finished file, so an interrupted run never leaves a
  half-written model under a real name.
- `Tensors` adds random matrices (N(0, 1/fan_in) from a seeded generator, so the same call writes the same bytes)
  and constant vectors (norm weights 1, biases 0).
- The header helpers write the keys llama.cpp reads for a text model, its SentencePiece vocabulary and a `clip`
  projector; the block helpers write the tensors of a llama-style text block and of a CLIP/SigLIP vision block.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def weights(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """A (rows, cols) float32 matrix, N(0, 1/cols): activations keep their scale through random layers."""
    return rng.standard_normal((rows, cols), dtype=np.float32) * np.float32(1.0 / np.sqrt(cols))


def atomic_target(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(path.name + ".partial")


def finish(writer: Any, temporary: Path, path: Path) -> Path:
    """Write the file under its temporary name, then rename: an interrupted run never leaves a finished name."""
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(temporary, path)
    return path


@contextmanager
def gguf_file(path: Path, architecture: str) -> Iterator[Any]:
    """A `gguf.GGUFWriter` for `path`; the file appears under its name only when the block completes."""
    import gguf

    temporary = atomic_target(path)
    writer = gguf.GGUFWriter(str(temporary), architecture)
    try:
        yield writer
    except BaseException:
        writer.close()
        temporary.unlink(missing_ok=True)
        raise
    finish(writer, temporary, path)


@dataclass
class Tensors:
    """Adds tensors to `writer`: matrices drawn from `rng` in call order, vectors of ones or zeros (float32)."""

    writer: Any
    rng: np.random.Generator
    dtype: Any = np.float32  # the matrices' type (float16 for an F16 benchmark projector)
    quantize: bool = False  # Q4_0 matrices (the benchmark's Q4_0 text model)

    def add(self, name: str, array: np.ndarray) -> None:
        self.writer.add_tensor(name, array)

    def matrix(self, name: str, rows: int, cols: int) -> None:
        values = weights(self.rng, rows, cols)
        if self.quantize:
            import gguf

            quantized = gguf.quants.quantize(values, gguf.GGMLQuantizationType.Q4_0)
            self.writer.add_tensor(name, quantized, raw_dtype=gguf.GGMLQuantizationType.Q4_0)
        else:
            self.writer.add_tensor(name, values.astype(self.dtype, copy=False))

    def ones(self, name: str, size: int) -> None:
        self.writer.add_tensor(name, np.ones(size, dtype=np.float32))

    def zeros(self, name: str, size: int) -> None:
        self.writer.add_tensor(name, np.zeros(size, dtype=np.float32))

    def linear(self, prefix: str, rows: int, cols: int) -> None:
        """`prefix.weight` (rows, cols) and a zero `prefix.bias`."""
        self.matrix(f"{prefix}.weight", rows, cols)
        self.zeros(f"{prefix}.bias", rows)

    def norm(self, prefix: str, size: int) -> None:
        """A layer norm: `prefix.weight` of ones and `prefix.bias` of zeros."""
        self.ones(f"{prefix}.weight", size)
        self.zeros(f"{prefix}.bias", size)

    def patch_kernel(self, name: str, n_out: int, patch: int) -> None:
        """A (n_out, 3, patch, patch) patch-embedding convolution, N(0, 1/fan_in)."""
        fan_in = 3 * patch * patch
        kernel = self.rng.standard_normal((n_out, 3, patch, patch), dtype=np.float32) / np.float32(np.sqrt(fan_in))
        self.writer.add_tensor(name, kernel.astype(self.dtype, copy=False))


# --- text models ---------------------------------------------------------------------------------------------------


def add_text_header(
    writer: Any, *, name: str, n_ctx_train: int, n_embd: int, n_layer: int, n_ff: int, n_head: int,
    n_head_kv: int | Sequence[int], eps: float, quantize: bool = False,
) -> None:  # fmt: skip
    """The keys every text architecture here reads: sizes, head counts, the RMS-norm epsilon, the file type."""
    import gguf

    writer.add_name(name)
    writer.add_context_length(n_ctx_train)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv if isinstance(n_head_kv, int) else list(n_head_kv))
    writer.add_layer_norm_rms_eps(eps)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0 if quantize else gguf.LlamaFileType.ALL_F32)


def add_spm_tokenizer(
    writer: Any, tokens: list[str], scores: list[float], types: list[int], *, eos: int, add_bos: bool,
    bos: int = 1, chat_template: str | None = None,
) -> None:  # fmt: skip
    """A SentencePiece ("llama") vocabulary with its special ids, and the chat template when there is one."""
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(bos)
    writer.add_eos_token_id(eos)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(add_bos)
    writer.add_add_eos_token(False)
    if chat_template:
        writer.add_chat_template(chat_template)


def add_embeddings_and_output(t: Tensors, n_vocab: int, n_embd: int) -> None:
    """Token embeddings, the final norm and an untied output matrix."""
    t.matrix("token_embd.weight", n_vocab, n_embd)
    t.ones("output_norm.weight", n_embd)
    t.matrix("output.weight", n_vocab, n_embd)


def add_attention(t: Tensors, block: str, *, n_embd: int, n_head: int, n_head_kv: int, head_dim: int) -> None:
    """Separate q/k/v projections and the output projection of one attention block (`block` = "blk.N")."""
    t.matrix(f"{block}.attn_q.weight", head_dim * n_head, n_embd)
    t.matrix(f"{block}.attn_k.weight", head_dim * n_head_kv, n_embd)
    t.matrix(f"{block}.attn_v.weight", head_dim * n_head_kv, n_embd)
    t.matrix(f"{block}.attn_output.weight", n_embd, head_dim * n_head)


def add_gated_ffn(t: Tensors, block: str, *, n_embd: int, n_ff: int) -> None:
    t.matrix(f"{block}.ffn_gate.weight", n_ff, n_embd)
    t.matrix(f"{block}.ffn_up.weight", n_ff, n_embd)
    t.matrix(f"{block}.ffn_down.weight", n_embd, n_ff)


def add_llama_blocks(
    t: Tensors, *, n_layer: int, n_embd: int, n_head: int, n_head_kv: int, n_ff: int, qk_norm: bool = False
) -> None:
    """Pre-norm attention + SwiGLU blocks (llama; with `qk_norm`, qwen3's per-head q/k RMS norms)."""
    head_dim = n_embd // n_head
    for i in range(n_layer):
        block = f"blk.{i}"
        t.ones(f"{block}.attn_norm.weight", n_embd)
        add_attention(t, block, n_embd=n_embd, n_head=n_head, n_head_kv=n_head_kv, head_dim=head_dim)
        if qk_norm:
            t.ones(f"{block}.attn_q_norm.weight", head_dim)
            t.ones(f"{block}.attn_k_norm.weight", head_dim)
        t.ones(f"{block}.ffn_norm.weight", n_embd)
        add_gated_ffn(t, block, n_embd=n_embd, n_ff=n_ff)


# --- vision projectors ---------------------------------------------------------------------------------------------


def add_clip_header(
    writer: Any, projector: str, *, name: str, image_size: int, patch_size: int, n_embd: int, n_ff: int,
    n_layer: int, n_head: int, projection_dim: int, eps: float, mean: Sequence[float], std: Sequence[float],
    llava_projector: bool = False, use_gelu: bool = True,
) -> None:  # fmt: skip
    """The `clip.*` keys tools/mtmd/clip.cpp reads for every projector, each with the GGUF type it reads."""
    writer.add_name(name)
    writer.add_bool("clip.has_vision_encoder", True)
    writer.add_bool("clip.has_text_encoder", False)
    if llava_projector:
        writer.add_bool("clip.has_llava_projector", True)
    writer.add_string("clip.projector_type", projector)
    writer.add_bool("clip.use_gelu", use_gelu)
    for key, value in (
        ("image_size", image_size),
        ("patch_size", patch_size),
        ("embedding_length", n_embd),
        ("feed_forward_length", n_ff),
        ("block_count", n_layer),
        ("projection_dim", projection_dim),
        ("attention.head_count", n_head),
    ):
        writer.add_uint32(f"clip.vision.{key}", value)
    writer.add_float32("clip.vision.attention.layer_norm_epsilon", eps)
    writer.add_array("clip.vision.image_mean", list(mean))
    writer.add_array("clip.vision.image_std", list(std))


def add_vit_block(t: Tensors, i: int, *, n_embd: int, n_ff: int, fused_qkv: bool = False) -> None:
    """One pre-norm ViT block as clip.cpp names it, every projection with a bias (`fused_qkv`: Qwen-VL's attn_qkv)."""
    block = f"v.blk.{i}"
    if fused_qkv:
        t.linear(f"{block}.attn_qkv", 3 * n_embd, n_embd)
    else:
        for part in ("q", "k", "v"):
            t.linear(f"{block}.attn_{part}", n_embd, n_embd)
    t.linear(f"{block}.attn_out", n_embd, n_embd)
    t.norm(f"{block}.ln1", n_embd)
    t.norm(f"{block}.ln2", n_embd)
    t.linear(f"{block}.ffn_up", n_ff, n_embd)
    t.linear(f"{block}.ffn_down", n_embd, n_ff)
