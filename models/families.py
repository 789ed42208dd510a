"""Random-weight pairs for today's small vision-model families, as llama.cpp 0.3.36's libmtmd loads them.

    python -m models.families --out DIR [--family smolvlm2|lfm2|...]

Each family writes a text GGUF of the family's text architecture and an mmproj of its projector type, with the
tensors, shapes and `clip.*` keys that llama.cpp's tools/mtmd/clip.cpp reads for that type, and the family's real
chat template (its source named next to it, and in templates/README.md). Shapes are tiny (a few hundred kB) so the
suite runs every family.

The vocabulary is the tiny test vocabulary (byte-fallback SentencePiece) plus each family's special tokens: the
real models use byte-level BPE vocabularies, but the tokenizer is not what these pairs test: the projector, the
image's wrapper tokens, the text architecture's cache and the template are.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from models.gguf_writing import (
    Tensors,
    add_attention,
    add_clip_header,
    add_embeddings_and_output,
    add_gated_ffn,
    add_llama_blocks,
    add_spm_tokenizer,
    add_text_header,
    add_vit_block,
    gguf_file,
)
from models.make_test_models import ModelPair, TextShape, VisionShape, vocabulary

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class Family:
    """A model family this generator writes: what llama.cpp calls its text architecture and projector."""

    name: str  # our id, e.g. "smolvlm2"
    projector: str  # clip.projector_type
    text_arch: str  # general.architecture of the text model
    write: Callable[[Path, int], ModelPair]
    note: str = ""  # why the family cannot run here, when it cannot
    engine_config: dict[str, Any] = field(default_factory=dict)  # EngineConfig fields the family needs
    # The template writes earlier answers differently from how they were generated (Qwen3.5 drops the empty
    # <think></think> its generation prompt opens), so a follow-up must cut the cache back to that answer.
    rewrites_history: bool = False


TEXT = TextShape(n_ff=128, n_ctx_train=4096)  # every family's text model, unless it says otherwise
VISION = VisionShape(patch_size=4)  # every family's vision tower, unless it says otherwise
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)


def _special_vocabulary(specials: Sequence[str]) -> tuple[list[str], list[float], list[int]]:
    import gguf

    tokens, scores, types = vocabulary()
    for special in specials:
        tokens.append(special)
        scores.append(0.0)
        types.append(int(gguf.TokenType.CONTROL))
    return tokens, scores, types


def _text_header(writer: Any, shape: TextShape, *, name: str, n_layer: int | None = None, **overrides: Any) -> None:
    sizes: dict[str, Any] = {
        "n_ctx_train": shape.n_ctx_train, "n_embd": shape.n_embd, "n_layer": shape.n_layer, "n_ff": shape.n_ff,
        "n_head": shape.n_head, "n_head_kv": shape.n_head_kv, "eps": 1e-6,
    }  # fmt: skip
    if n_layer is not None:
        sizes["n_layer"] = n_layer
    add_text_header(writer, name=name, **{**sizes, **overrides})


def _clip_header(writer: Any, projector: str, vision: VisionShape, projection_dim: int, *, name: str) -> None:
    add_clip_header(
        writer, projector, name=name, image_size=vision.image_size, patch_size=vision.patch_size,
        n_embd=vision.n_embd, n_ff=vision.n_ff, n_layer=vision.n_layer, n_head=vision.n_head,
        projection_dim=projection_dim, eps=1e-6, mean=SIGLIP_MEAN, std=SIGLIP_STD,
    )  # fmt: skip


def _siglip_tower(t: Tensors, vision: VisionShape, n_positions: int) -> None:
    """SigLIP's encoder as clip.cpp names it: patch embedding with bias, learned positions, pre-norm blocks."""
    embd = vision.n_embd
    t.patch_kernel("v.patch_embd.weight", embd, vision.patch_size)
    t.zeros("v.patch_embd.bias", embd)
    t.matrix("v.position_embd.weight", n_positions, embd)
    for i in range(vision.n_layer):
        add_vit_block(t, i, n_embd=embd, n_ff=vision.n_ff)
    t.norm("v.post_ln", embd)


@contextmanager
def _pixel_shuffle_siglip(path: Path, projector: str, scale: int, *, name: str, seed: int) -> Iterator[Tensors]:
    """An mmproj of a SigLIP tower whose patches are merged `scale` x `scale` (`projector.scale_factor`); the
    projector's own tensors are added to the Tensors this yields."""
    with gguf_file(path, "clip") as writer:
        _clip_header(writer, projector, VISION, TEXT.n_embd, name=name)
        writer.add_uint32("clip.vision.projector.scale_factor", scale)
        t = Tensors(writer, np.random.default_rng(seed))
        side = VISION.image_size // VISION.patch_size
        _siglip_tower(t, VISION, side * side)
        yield t


# --- SmolVLM2 (llama text model; idefics3 projector) --------------------------------------------------------------

# SmolVLM2's chat template, as published: transformers src/transformers/models/smolvlm/processing_smolvlm.py
# (DEFAULT_CHAT_TEMPLATE), the same text as HuggingFaceTB/SmolVLM2-500M-Video-Instruct's chat_template.json.
SMOLVLM2_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% elif line['type'] == 'video' %}{{ '<video>' }}{% endif %}"
    "{% endfor %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
SMOLVLM2_SPECIALS = ("<|im_start|>", "<end_of_utterance>", "<image>", "<fake_token_around_image>", "<global-img>",
                     *(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)))  # fmt: skip
SMOLVLM2_SCALE = 2  # pixel-shuffle factor (SmolVLM2-500M: 4 on 512 px tiles of 16 px patches)


def _llama_text(path: Path, *, name: str, template: str, specials: Sequence[str], eos: str, seed: int) -> Path:
    """A llama-architecture text model (SmolVLM2's SmolLM2 is one) with `specials` as control tokens."""
    tokens, scores, types = _special_vocabulary(specials)
    with gguf_file(path, "llama") as writer:
        _text_header(writer, TEXT, name=name, eps=1e-5)
        writer.add_rope_dimension_count(TEXT.n_embd // TEXT.n_head)
        add_spm_tokenizer(writer, tokens, scores, types, eos=tokens.index(eos), add_bos=False, chat_template=template)
        t = Tensors(writer, np.random.default_rng(seed))
        add_embeddings_and_output(t, len(tokens), TEXT.n_embd)
        add_llama_blocks(t, n_layer=TEXT.n_layer, n_embd=TEXT.n_embd, n_head=TEXT.n_head, n_head_kv=TEXT.n_head_kv,
                         n_ff=TEXT.n_ff)  # fmt: skip
    return path


def write_smolvlm2(directory: Path, seed: int = 0) -> ModelPair:
    """SmolVLM2: a llama text model and an idefics3 (SigLIP + pixel shuffle + one linear layer) projector."""
    directory = Path(directory)
    text = _llama_text(
        directory / "smolvlm2-tiny.gguf", name="SmolVLM2 tiny test model", template=SMOLVLM2_TEMPLATE,
        specials=SMOLVLM2_SPECIALS, eos="<end_of_utterance>", seed=seed,
    )  # fmt: skip
    mmproj = directory / "mmproj-smolvlm2-tiny.gguf"
    name = "SmolVLM2 tiny test mmproj"
    with _pixel_shuffle_siglip(mmproj, "idefics3", SMOLVLM2_SCALE, name=name, seed=seed + 1) as t:
        t.matrix("mm.model.fc.weight", TEXT.n_embd, VISION.n_embd * SMOLVLM2_SCALE * SMOLVLM2_SCALE)
    return ModelPair(text, mmproj)


# --- LFM2-VL / LFM2.5-VL (lfm2 hybrid text model; lfm2 projector) -------------------------------------------------

# LFM2-VL's chat template, as published in LiquidAI/LFM2-VL-450M's chat_template.jinja (a public copy:
# github.com/varun00391/local-finetuned-model, "LiquidAI:LFM2-VL-450M/lfm2-450m/chat_template.jinja").
LFM2_VL_TEMPLATE = (
    "{{bos_token}}{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<image>' }}{% elif content['type'] == 'text' %}{{ content['text'] }}"
    "{% endif %}{% endfor %}{% endif %}{{'<|im_end|>\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{'<|im_start|>assistant\n' }}{% endif %}"
)
LFM2_SPECIALS = (
    "<|startoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<|image_start|>", "<|image_end|>",
    "<|img_thumbnail|>", *(f"<|img_row_{r}_col_{c}|>" for r in range(1, 5) for c in range(1, 5)),
)  # fmt: skip
LFM2_LAYERS = ("conv", "attention", "conv")  # LFM2-350M: 10 short-convolution and 6 attention blocks
LFM2_L_CACHE = 3  # the short convolution's kernel length (conv_L_cache)
LFM2_SCALE = 2  # downsample_factor (pixel unshuffle)
LFM2_PROJECTOR_HIDDEN = 96  # projector_hidden_size (2560 in LFM2-VL-450M)


def _lfm2_text(path: Path, *, seed: int) -> Path:
    """An `lfm2` hybrid text model: short-convolution blocks (recurrent state) and attention blocks (KV cache)."""
    tokens, scores, types = _special_vocabulary(LFM2_SPECIALS)
    n_embd, head_dim = TEXT.n_embd, TEXT.n_embd // TEXT.n_head
    with gguf_file(path, "lfm2") as writer:
        _text_header(writer, TEXT, name="LFM2-VL tiny test model", n_layer=len(LFM2_LAYERS), eps=1e-5,
                     n_head_kv=[TEXT.n_head_kv if kind == "attention" else 0 for kind in LFM2_LAYERS])  # fmt: skip
        writer.add_rope_freq_base(1_000_000.0)
        writer.add_uint32("lfm2.shortconv.l_cache", LFM2_L_CACHE)
        writer.add_vocab_size(len(tokens))
        bos = tokens.index("<|startoftext|>")
        add_spm_tokenizer(writer, tokens, scores, types, eos=tokens.index("<|im_end|>"), add_bos=False, bos=bos,
                          chat_template=LFM2_VL_TEMPLATE)  # fmt: skip
        t = Tensors(writer, np.random.default_rng(seed))
        t.matrix("token_embd.weight", len(tokens), n_embd)
        t.ones("token_embd_norm.weight", n_embd)  # LFM2's final norm
        for i, kind in enumerate(LFM2_LAYERS):
            block = f"blk.{i}"
            t.ones(f"{block}.attn_norm.weight", n_embd)
            t.ones(f"{block}.ffn_norm.weight", n_embd)
            add_gated_ffn(t, block, n_embd=n_embd, n_ff=TEXT.n_ff)
            if kind == "conv":
                t.matrix(f"{block}.shortconv.conv.weight", n_embd, LFM2_L_CACHE)
                t.matrix(f"{block}.shortconv.in_proj.weight", 3 * n_embd, n_embd)
                t.matrix(f"{block}.shortconv.out_proj.weight", n_embd, n_embd)
            else:
                add_attention(t, block, n_embd=n_embd, n_head=TEXT.n_head, n_head_kv=TEXT.n_head_kv,
                              head_dim=head_dim)  # fmt: skip
                t.ones(f"{block}.attn_q_norm.weight", head_dim)
                t.ones(f"{block}.attn_k_norm.weight", head_dim)
    return path


def write_lfm2(directory: Path, seed: int = 0) -> ModelPair:
    """LFM2-VL: an lfm2 hybrid text model and an lfm2 (SigLIP2 NaFlex + pixel unshuffle + 2-layer MLP) projector."""
    directory = Path(directory)
    text = _lfm2_text(directory / "lfm2-vl-tiny.gguf", seed=seed)
    mmproj = directory / "mmproj-lfm2-vl-tiny.gguf"
    with _pixel_shuffle_siglip(mmproj, "lfm2", LFM2_SCALE, name="LFM2-VL tiny test mmproj", seed=seed + 1) as t:
        merged = VISION.n_embd * LFM2_SCALE * LFM2_SCALE
        t.norm("mm.input_norm", merged)
        t.linear("mm.1", LFM2_PROJECTOR_HIDDEN, merged)
        t.linear("mm.2", TEXT.n_embd, LFM2_PROJECTOR_HIDDEN)
    return ModelPair(text, mmproj)


# --- Qwen3-VL (qwen3vl text model, qwen3vl_merger projector) ------------------------------------------------------

# Qwen3-VL's chat template, verbatim (source in templates/README.md): it renders this app's conversations (no tools)
# exactly as Qwen/Qwen3-VL-2B-Instruct's published template does.
QWEN3_VL_TEMPLATE = (TEMPLATES / "qwen3-vl.jinja").read_text(encoding="utf-8")
QWEN_VL_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                    "<|image_pad|>", "<|video_pad|>")  # fmt: skip
QWEN3_VL_DEEPSTACK = (True, False)  # which vision blocks feed a deepstack merger (Qwen3-VL-2B: 3 of 24)
QWEN3_VL_SECTIONS = (2, 3, 3, 0)  # M-RoPE sections (t, h, w, -) in rotary pairs: half the head size in all


def _qwen3_text(path: Path, arch: str, *, name: str, template: str, seed: int, deepstack: int = 0) -> Path:
    """A qwen3-family text model (q/k norms, no biases); `qwen3vl` adds M-RoPE sections and deepstack inputs."""
    tokens, scores, types = _special_vocabulary(QWEN_VL_SPECIALS)
    head_dim = TEXT.n_embd // TEXT.n_head
    with gguf_file(path, arch) as writer:
        _text_header(writer, TEXT, name=name)
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
        writer.add_rope_freq_base(5_000_000.0)
        if arch == "qwen3vl":
            writer.add_rope_dimension_sections(list(QWEN3_VL_SECTIONS))
            writer.add_uint32(f"{arch}.n_deepstack_layers", deepstack)
        add_spm_tokenizer(writer, tokens, scores, types, eos=tokens.index("<|im_end|>"), add_bos=False,
                          chat_template=template)  # fmt: skip
        t = Tensors(writer, np.random.default_rng(seed))
        add_embeddings_and_output(t, len(tokens), TEXT.n_embd)
        add_llama_blocks(t, n_layer=TEXT.n_layer, n_embd=TEXT.n_embd, n_head=TEXT.n_head, n_head_kv=TEXT.n_head_kv,
                         n_ff=TEXT.n_ff, qk_norm=True)  # fmt: skip
    return path


def _qwen3vl_mmproj(
    path: Path, *, name: str, text_n_embd: int, seed: int, vision: VisionShape,
    deepstack: tuple[bool, ...] = QWEN3_VL_DEEPSTACK,
) -> Path:  # fmt: skip
    """A qwen3vl_merger projector: two patch convolutions, fused-QKV blocks with M-RoPE, a 2x2 merger MLP and a
    deepstack merger for each block flagged in QWEN3_VL_DEEPSTACK (their outputs are concatenated)."""
    embd, merged = vision.n_embd, 4 * vision.n_embd
    with gguf_file(path, "clip") as writer:
        _clip_header(writer, "qwen3vl_merger", vision, text_n_embd, name=name)
        writer.add_uint32("clip.vision.spatial_merge_size", 2)
        writer.add_array("clip.vision.is_deepstack_layers", list(deepstack[: vision.n_layer]))
        t = Tensors(writer, np.random.default_rng(seed))
        for suffix in ("", ".1"):
            t.patch_kernel(f"v.patch_embd.weight{suffix}", embd, vision.patch_size)
        t.zeros("v.patch_embd.bias", embd)
        side = vision.image_size // vision.patch_size
        t.matrix("v.position_embd.weight", side * side, embd)
        for i in range(vision.n_layer):
            add_vit_block(t, i, n_embd=embd, n_ff=vision.n_ff, fused_qkv=True)
            if i < len(deepstack) and deepstack[i]:
                t.norm(f"v.deepstack.{i}.norm", merged)
                t.linear(f"v.deepstack.{i}.fc1", merged, merged)
                t.linear(f"v.deepstack.{i}.fc2", text_n_embd, merged)
        t.norm("v.post_ln", embd)
        t.linear("mm.0", merged, merged)
        t.linear("mm.2", text_n_embd, merged)
    return path


def write_qwen3vl(directory: Path, seed: int = 0) -> ModelPair:
    """Qwen3-VL: a qwen3vl text model (M-RoPE, deepstack inputs) and a qwen3vl_merger projector."""
    directory = Path(directory)
    vision = replace(VISION, n_layer=2)
    text = _qwen3_text(
        directory / "qwen3-vl-tiny.gguf", "qwen3vl", name="Qwen3-VL tiny test model", template=QWEN3_VL_TEMPLATE,
        seed=seed, deepstack=sum(QWEN3_VL_DEEPSTACK[: vision.n_layer]),
    )  # fmt: skip
    mmproj = _qwen3vl_mmproj(
        directory / "mmproj-qwen3-vl-tiny.gguf", name="Qwen3-VL tiny test mmproj", text_n_embd=TEXT.n_embd,
        seed=seed + 1, vision=vision,
    )  # fmt: skip
    return ModelPair(text, mmproj)


# --- Qwen3.5 (qwen35 hybrid text model: gated delta net + gated attention; qwen3vl_merger vision) ---------------

# Qwen3.5's chat template, as published in Qwen/Qwen3.5-0.8B and carried by its GGUF (the tokenizer.chat_template of
# unsloth/Qwen3.5-0.8B-GGUF, as shown in a public metadata dump); kept verbatim in templates/qwen3.5.jinja.
QWEN3_5_TEMPLATE = (TEMPLATES / "qwen3.5.jinja").read_text(encoding="utf-8")
QWEN3_5_SECTIONS = (2, 1, 1, 0)  # interleaved M-RoPE sections over the rotated half of each head (n_rot / 2)


def _qwen35_text(path: Path, *, seed: int, template: str, name: str = "Qwen3.5 tiny test model",
                 specials: Sequence[str] = QWEN_VL_SPECIALS) -> Path:  # fmt: skip
    """A `qwen35` text model: linear-attention (gated delta net) blocks with one full-attention block in every
    `full_attention_interval`, as Qwen3.5-0.8B (24 blocks, interval 4) with tiny sizes."""
    tokens, scores, types = _special_vocabulary(specials)
    n_layer, interval = 2, 2  # block 1 is full attention, block 0 linear
    d_conv, d_state, n_group, dt_rank, d_inner = 4, 8, 2, 2, 16
    n_embd, n_head, n_head_kv = TEXT.n_embd, TEXT.n_head, TEXT.n_head_kv
    head_k = n_embd // n_head  # attention head size (Qwen3.5: 256, of which 64 rotated)
    key_dim, value_dim, head_v = d_state * n_group, d_inner, d_inner // dt_rank
    conv_dim = 2 * key_dim + value_dim
    with gguf_file(path, "qwen35") as writer:
        _text_header(writer, TEXT, name=name, n_layer=n_layer)
        writer.add_key_length(head_k)
        writer.add_value_length(head_k)
        writer.add_rope_dimension_count(head_k // 2)
        writer.add_rope_dimension_sections(list(QWEN3_5_SECTIONS))
        writer.add_rope_freq_base(10_000_000.0)
        writer.add_uint32("qwen35.full_attention_interval", interval)
        writer.add_ssm_conv_kernel(d_conv)
        writer.add_ssm_state_size(d_state)
        writer.add_ssm_group_count(n_group)
        writer.add_ssm_time_step_rank(dt_rank)
        writer.add_ssm_inner_size(d_inner)
        add_spm_tokenizer(writer, tokens, scores, types, eos=tokens.index("<|im_end|>"), add_bos=False,
                          chat_template=template)  # fmt: skip
        t = Tensors(writer, np.random.default_rng(seed))
        add_embeddings_and_output(t, len(tokens), n_embd)
        for i in range(n_layer):
            block = f"blk.{i}"
            t.ones(f"{block}.attn_norm.weight", n_embd)
            t.ones(f"{block}.post_attention_norm.weight", n_embd)
            if (i + 1) % interval == 0:  # full (gated) attention: attn_q holds the query and its gate
                t.matrix(f"{block}.attn_q.weight", 2 * head_k * n_head, n_embd)
                t.matrix(f"{block}.attn_k.weight", head_k * n_head_kv, n_embd)
                t.matrix(f"{block}.attn_v.weight", head_k * n_head_kv, n_embd)
                t.matrix(f"{block}.attn_output.weight", n_embd, head_k * n_head)
                t.ones(f"{block}.attn_q_norm.weight", head_k)
                t.ones(f"{block}.attn_k_norm.weight", head_k)
            else:  # gated delta net
                t.matrix(f"{block}.attn_qkv.weight", conv_dim, n_embd)
                t.matrix(f"{block}.attn_gate.weight", value_dim, n_embd)
                t.matrix(f"{block}.ssm_conv1d.weight", conv_dim, d_conv)
                t.zeros(f"{block}.ssm_dt.bias", dt_rank)
                t.add(f"{block}.ssm_a", -np.ones(dt_rank, dtype=np.float32))
                t.matrix(f"{block}.ssm_beta.weight", dt_rank, n_embd)
                t.matrix(f"{block}.ssm_alpha.weight", dt_rank, n_embd)
                t.ones(f"{block}.ssm_norm.weight", head_v)
                t.matrix(f"{block}.ssm_out.weight", n_embd, value_dim)
            add_gated_ffn(t, block, n_embd=n_embd, n_ff=TEXT.n_ff)
    return path


def write_qwen35(directory: Path, seed: int = 0) -> ModelPair:
    """Qwen3.5: a qwen35 hybrid text model and its vision tower as a qwen3vl_merger mmproj (no deepstack)."""
    directory = Path(directory)
    text = _qwen35_text(directory / "qwen3.5-tiny.gguf", seed=seed, template=QWEN3_5_TEMPLATE)
    mmproj = _qwen3vl_mmproj(
        directory / "mmproj-qwen3.5-tiny.gguf", name="Qwen3.5 tiny test mmproj", text_n_embd=TEXT.n_embd,
        seed=seed + 1, vision=replace(VISION, n_layer=2), deepstack=(False, False),
    )  # fmt: skip
    return ModelPair(text, mmproj)


# --- Gemma 4 (gemma4 text model with per-layer embeddings and sliding-window layers; gemma4v projector) -----------

# Gemma 4's chat template, verbatim (source in templates/README.md).
GEMMA4_TEMPLATE = (TEMPLATES / "gemma4.jinja").read_text(encoding="utf-8")
GEMMA4_SPECIALS = ("<bos>", "<eos>", "<|turn>", "<turn|>", "<|image|>", "<|image>", "<image|>", "<|channel>",
                   "<channel|>")  # fmt: skip


def _gemma4_text(path: Path, *, seed: int) -> Path:
    """A `gemma4` text model: a sliding-window block and a global block, per-layer input embeddings (PLE)."""
    tokens, scores, types = _special_vocabulary(GEMMA4_SPECIALS)
    n_layer, ple, n_embd, head = 2, 16, TEXT.n_embd, TEXT.n_embd // TEXT.n_head
    with gguf_file(path, "gemma4") as writer:
        _text_header(writer, TEXT, name="Gemma 4 tiny test model", n_layer=n_layer)
        writer.add_key_length(head)
        writer.add_value_length(head)
        writer.add_uint32("gemma4.attention.key_length_swa", head)
        writer.add_uint32("gemma4.attention.value_length_swa", head)
        writer.add_float32("gemma4.rope.freq_base_swa", 10_000.0)
        writer.add_rope_freq_base(1_000_000.0)
        writer.add_uint32("gemma4.attention.sliding_window", 512)
        writer.add_array("gemma4.attention.sliding_window_pattern", [True, False])
        writer.add_uint32("gemma4.embedding_length_per_layer_input", ple)
        writer.add_uint32("gemma4.attention.shared_kv_layers", 0)
        bos, eos = tokens.index("<bos>"), tokens.index("<turn|>")
        add_spm_tokenizer(writer, tokens, scores, types, eos=eos, add_bos=True, bos=bos,
                          chat_template=GEMMA4_TEMPLATE)  # fmt: skip
        t = Tensors(writer, np.random.default_rng(seed))
        t.matrix("token_embd.weight", len(tokens), n_embd)
        t.matrix("per_layer_token_embd.weight", len(tokens), ple * n_layer)
        t.matrix("per_layer_model_proj.weight", ple * n_layer, n_embd)
        t.ones("per_layer_proj_norm.weight", ple)
        t.ones("rope_freqs.weight", head // 2)
        t.ones("output_norm.weight", n_embd)
        for i in range(n_layer):
            block = f"blk.{i}"
            t.ones(f"{block}.attn_norm.weight", n_embd)
            add_attention(t, block, n_embd=n_embd, n_head=TEXT.n_head, n_head_kv=TEXT.n_head_kv, head_dim=head)
            t.ones(f"{block}.attn_q_norm.weight", head)
            t.ones(f"{block}.attn_k_norm.weight", head)
            t.ones(f"{block}.post_attention_norm.weight", n_embd)
            t.ones(f"{block}.ffn_norm.weight", n_embd)
            add_gated_ffn(t, block, n_embd=n_embd, n_ff=TEXT.n_ff)
            t.ones(f"{block}.post_ffw_norm.weight", n_embd)
            t.matrix(f"{block}.inp_gate.weight", ple, n_embd)
            t.matrix(f"{block}.proj.weight", n_embd, ple)
            t.ones(f"{block}.post_norm.weight", n_embd)
    return path


def write_gemma4(directory: Path, seed: int = 0) -> ModelPair:
    """Gemma 4: a gemma4 text model and a gemma4v projector (RMS-norm ViT with 2-D RoPE, x/y position tables,
    average pooling, one input projection)."""
    directory = Path(directory)
    text = _gemma4_text(directory / "gemma4-tiny.gguf", seed=seed)
    vision = replace(VISION, image_size=64, patch_size=8)
    embd = vision.n_embd
    mmproj = directory / "mmproj-gemma4-tiny.gguf"
    with gguf_file(mmproj, "clip") as writer:
        _clip_header(writer, "gemma4v", vision, TEXT.n_embd, name="Gemma 4 tiny test mmproj")
        rng = np.random.default_rng(seed + 1)
        t = Tensors(writer, rng)
        t.patch_kernel("v.patch_embd.weight", embd, vision.patch_size)
        side = vision.image_size // vision.patch_size
        table = rng.standard_normal((2, side * side, embd), dtype=np.float32) / np.float32(np.sqrt(embd))
        t.add("v.position_embd.weight", table)  # an x table and a y table
        for i in range(vision.n_layer):
            block = f"v.blk.{i}"
            t.ones(f"{block}.ln1.weight", embd)
            t.ones(f"{block}.ln2.weight", embd)
            for part in ("q", "k", "v"):
                t.matrix(f"{block}.attn_{part}.weight", embd, embd)
            t.matrix(f"{block}.attn_out.weight", embd, embd)
            t.matrix(f"{block}.ffn_gate.weight", vision.n_ff, embd)
            t.matrix(f"{block}.ffn_up.weight", vision.n_ff, embd)
            t.matrix(f"{block}.ffn_down.weight", embd, vision.n_ff)
        t.matrix("mm.input_projection.weight", TEXT.n_embd, embd)
    return ModelPair(text, mmproj)


# --- MiniCPM-V 4.6 (qwen35 text model, as Qwen3.5-0.8B; minicpmv4_6 projector) ------------------------------------

# MiniCPM-V 4.6 is built on SigLIP2-400M and Qwen3.5-0.8B. Its own chat template was not found in a public copy
# (templates/README.md says what was searched); its GGUF's text model is Qwen3.5's, so the pair carries Qwen3.5's.
# mtmd writes the projector's wrapper tokens itself: <image>overview</image>, then <slice>tile</slice> per tile, with
# "\n" after each row of tiles, so they must be in the vocabulary.
MINICPMV46_SPECIALS = (*QWEN_VL_SPECIALS, "<image>", "</image>", "<slice>", "</slice>", "<image_id>", "</image_id>")
MINICPMV46_MERGE = 4  # clip.vision.projector.scale_factor: the ViT merger's 2x2 and the final merger's 2x2 ("16x")
MINICPMV46_INSERT_LAYER = 0  # the ViT merger runs after this block (clip.vision.wa_layer_indexes[0])
MINICPMV46_POSITIONS = 70 * 70  # clip.cpp maps every patch onto SigLIP's 70 x 70 grid of learned positions


def write_minicpmv46(directory: Path, seed: int = 0) -> ModelPair:
    """MiniCPM-V 4.6: a qwen35 hybrid text model and a minicpmv4_6 projector: SigLIP blocks with a ViT merger after
    block MINICPMV46_INSERT_LAYER (2x2 window attention, then a 2x2 downsampling MLP around the windows' mean), the
    remaining blocks on a quarter of the tokens, and a final 2x2 downsampling MLP into the text model's width."""
    directory = Path(directory)
    text = _qwen35_text(
        directory / "minicpm-v-4.6-tiny.gguf", seed=seed, template=QWEN3_5_TEMPLATE,
        name="MiniCPM-V 4.6 tiny test model", specials=MINICPMV46_SPECIALS,
    )  # fmt: skip
    vision = replace(VISION, n_layer=2)
    embd, merged, hidden = vision.n_embd, 4 * vision.n_embd, vision.n_ff
    mmproj = directory / "mmproj-minicpm-v-4.6-tiny.gguf"
    with gguf_file(mmproj, "clip") as writer:
        _clip_header(writer, "minicpmv4_6", vision, TEXT.n_embd, name="MiniCPM-V 4.6 tiny test mmproj")
        writer.add_uint32("clip.vision.projector.scale_factor", MINICPMV46_MERGE)
        writer.add_array("clip.vision.wa_layer_indexes", [MINICPMV46_INSERT_LAYER])
        t = Tensors(writer, np.random.default_rng(seed + 1))
        _siglip_tower(t, vision, MINICPMV46_POSITIONS)
        t.norm("v.vit_merger.ln1", embd)  # window attention over each 2x2 group of patches
        for part in ("attn_q", "attn_k", "attn_v", "attn_out"):
            t.linear(f"v.vit_merger.{part}", embd, embd)
        t.norm("v.vit_merger.ds_ln", merged)  # each 2x2 group concatenated, then an MLP back to the ViT's width
        t.linear("v.vit_merger.ds_ffn_up", hidden, merged)
        t.linear("v.vit_merger.ds_ffn_down", embd, hidden)
        t.norm("mm.input_norm", merged)  # the final merger: 2x2 concatenated, an MLP to the text width
        t.linear("mm.up", hidden, merged)
        t.linear("mm.down", TEXT.n_embd, hidden)
    return ModelPair(text, mmproj)


FAMILIES: dict[str, Family] = {
    "smolvlm2": Family("smolvlm2", "idefics3", "llama", write_smolvlm2),
    "lfm2": Family("lfm2", "lfm2", "lfm2", write_lfm2),
    "qwen3vl": Family("qwen3vl", "qwen3vl_merger", "qwen3vl", write_qwen3vl),
    "gemma4": Family("gemma4", "gemma4v", "gemma4", write_gemma4, rewrites_history=True),
    "qwen35": Family("qwen35", "qwen3vl_merger", "qwen35", write_qwen35, rewrites_history=True),
    "minicpmv46": Family("minicpmv46", "minicpmv4_6", "qwen35", write_minicpmv46, rewrites_history=True),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder to write the pairs into")
    parser.add_argument("--family", choices=sorted(FAMILIES), action="append", help="default: all")
    args = parser.parse_args(argv)
    for name in args.family or sorted(FAMILIES):
        pair = FAMILIES[name].write(args.out / name, 0)
        print(pair.text)
        print(pair.mmproj)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
