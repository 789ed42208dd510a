"""Random-weight pairs for today's small vision-model families, as llama.cpp 0.3.36's libmtmd loads them.

    python -m models.families --out DIR [--family idefics3|lfm2|...]

Each family writes a text GGUF of the family's text architecture and an mmproj of its projector type, with the
tensors, shapes and `clip.*` keys that llama.cpp's tools/mtmd/clip.cpp reads for that type, and the family's real
chat template (its source named next to it). Shapes are tiny (a few hundred kB) so the suite runs every family.

The vocabulary is the tiny test vocabulary (byte-fallback SentencePiece) plus each family's special tokens: the
real models use byte-level BPE vocabularies, but the tokenizer is not what these pairs test: the projector, the
image's wrapper tokens, the text architecture's cache and the template are.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.make_test_models import ModelPair, _atomic_target, _finish, _weights, vocabulary

# SmolVLM2's chat template, as published: transformers src/transformers/models/smolvlm/processing_smolvlm.py
# (DEFAULT_CHAT_TEMPLATE), the same text as HuggingFaceTB/SmolVLM2-500M-Video-Instruct's chat_template.json.
SMOLVLM2_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% elif line['type'] == 'video' %}{{ '<video>' }}{% endif %}"
    "{% endfor %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


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


def _special_vocabulary(specials: Sequence[str]) -> tuple[list[str], list[float], list[int]]:
    import gguf

    tokens, scores, types = vocabulary()
    for special in specials:
        tokens.append(special)
        scores.append(0.0)
        types.append(int(gguf.TokenType.CONTROL))
    return tokens, scores, types


@dataclass(frozen=True)
class _Text:
    n_embd: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_head_kv: int = 2
    n_ff: int = 128
    n_ctx_train: int = 4096


def _llama_text(
    path: Path, *, name: str, template: str, specials: Sequence[str], eos: str, seed: int, shape: _Text = _Text()
) -> Path:
    """A llama-architecture text model (SmolVLM2's SmolLM2 is one) with `specials` as control tokens."""
    import gguf

    rng = np.random.default_rng(seed)
    tokens, scores, types = _special_vocabulary(specials)
    temporary = _atomic_target(path)
    writer = gguf.GGUFWriter(str(temporary), "llama")
    writer.add_name(name)
    writer.add_context_length(shape.n_ctx_train)
    writer.add_embedding_length(shape.n_embd)
    writer.add_block_count(shape.n_layer)
    writer.add_feed_forward_length(shape.n_ff)
    writer.add_head_count(shape.n_head)
    writer.add_head_count_kv(shape.n_head_kv)
    writer.add_rope_dimension_count(shape.n_embd // shape.n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    _add_tokenizer(writer, tokens, scores, types, eos=tokens.index(eos), add_bos=False)
    writer.add_chat_template(template)
    n_vocab, n_embd, head_dim = len(tokens), shape.n_embd, shape.n_embd // shape.n_head
    writer.add_tensor("token_embd.weight", _weights(rng, n_vocab, n_embd))
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    writer.add_tensor("output.weight", _weights(rng, n_vocab, n_embd))
    for i in range(shape.n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.attn_q.weight", _weights(rng, n_embd, n_embd))
        writer.add_tensor(f"blk.{i}.attn_k.weight", _weights(rng, head_dim * shape.n_head_kv, n_embd))
        writer.add_tensor(f"blk.{i}.attn_v.weight", _weights(rng, head_dim * shape.n_head_kv, n_embd))
        writer.add_tensor(f"blk.{i}.attn_output.weight", _weights(rng, n_embd, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", _weights(rng, shape.n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", _weights(rng, shape.n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", _weights(rng, n_embd, shape.n_ff))
    return _finish(writer, temporary, path)


def _add_tokenizer(
    writer: Any, tokens: list[str], scores: list[float], types: list[int], *, eos: int, add_bos: bool, bos: int = 1
) -> None:
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(bos)
    writer.add_eos_token_id(eos)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(add_bos)
    writer.add_add_eos_token(False)


@dataclass(frozen=True)
class _Vision:
    image_size: int = 32
    patch_size: int = 4
    n_embd: int = 32
    n_ff: int = 64
    n_layer: int = 1
    n_head: int = 2


SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)


def _clip_header(writer: Any, projector: str, vision: _Vision, projection_dim: int, *, name: str) -> None:
    writer.add_name(name)
    writer.add_bool("clip.has_vision_encoder", True)
    writer.add_bool("clip.has_text_encoder", False)
    writer.add_string("clip.projector_type", projector)
    writer.add_bool("clip.use_gelu", True)
    for key, value in (
        ("image_size", vision.image_size),
        ("patch_size", vision.patch_size),
        ("embedding_length", vision.n_embd),
        ("feed_forward_length", vision.n_ff),
        ("block_count", vision.n_layer),
        ("projection_dim", projection_dim),
        ("attention.head_count", vision.n_head),
    ):
        writer.add_uint32(f"clip.vision.{key}", value)
    writer.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    writer.add_array("clip.vision.image_mean", list(SIGLIP_MEAN))
    writer.add_array("clip.vision.image_std", list(SIGLIP_STD))


def _vit_tensors(writer: Any, rng: np.random.Generator, vision: _Vision, n_positions: int) -> None:
    """SigLIP's encoder as clip.cpp names it: patch embedding with bias, learned positions, pre-norm blocks."""
    embd, p = vision.n_embd, vision.patch_size
    fan_in = 3 * p * p
    patch = rng.standard_normal((embd, 3, p, p), dtype=np.float32) / np.float32(np.sqrt(fan_in))
    writer.add_tensor("v.patch_embd.weight", patch)
    writer.add_tensor("v.patch_embd.bias", np.zeros(embd, dtype=np.float32))
    writer.add_tensor("v.position_embd.weight", _weights(rng, n_positions, embd))
    for i in range(vision.n_layer):
        for part in ("q", "k", "v"):
            writer.add_tensor(f"v.blk.{i}.attn_{part}.weight", _weights(rng, embd, embd))
            writer.add_tensor(f"v.blk.{i}.attn_{part}.bias", np.zeros(embd, dtype=np.float32))
        writer.add_tensor(f"v.blk.{i}.attn_out.weight", _weights(rng, embd, embd))
        writer.add_tensor(f"v.blk.{i}.attn_out.bias", np.zeros(embd, dtype=np.float32))
        for norm in ("ln1", "ln2"):
            writer.add_tensor(f"v.blk.{i}.{norm}.weight", np.ones(embd, dtype=np.float32))
            writer.add_tensor(f"v.blk.{i}.{norm}.bias", np.zeros(embd, dtype=np.float32))
        writer.add_tensor(f"v.blk.{i}.ffn_up.weight", _weights(rng, vision.n_ff, embd))
        writer.add_tensor(f"v.blk.{i}.ffn_up.bias", np.zeros(vision.n_ff, dtype=np.float32))
        writer.add_tensor(f"v.blk.{i}.ffn_down.weight", _weights(rng, embd, vision.n_ff))
        writer.add_tensor(f"v.blk.{i}.ffn_down.bias", np.zeros(embd, dtype=np.float32))
    writer.add_tensor("v.post_ln.weight", np.ones(embd, dtype=np.float32))
    writer.add_tensor("v.post_ln.bias", np.zeros(embd, dtype=np.float32))


# --- SmolVLM2 (idefics3) ---------------------------------------------------------------------------------------

# Qwen3.5's chat template, as published in Qwen/Qwen3.5-0.8B and carried by its GGUF (the tokenizer.chat_template of
# unsloth/Qwen3.5-0.8B-GGUF, as shown in a public metadata dump); kept verbatim in templates/qwen3.5.jinja.
QWEN3_5_TEMPLATE = (Path(__file__).parent / "templates" / "qwen3.5.jinja").read_text(encoding="utf-8")

SMOLVLM2_SPECIALS = ("<|im_start|>", "<end_of_utterance>", "<image>", "<fake_token_around_image>", "<global-img>",
                     *(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)))  # fmt: skip
SMOLVLM2_SCALE = 2  # pixel-shuffle factor (SmolVLM2-500M: 4 on 512 px tiles of 16 px patches)


def write_smolvlm2(directory: Path, seed: int = 0) -> ModelPair:
    """SmolVLM2: a llama text model and an idefics3 (SigLIP + pixel shuffle + one linear layer) projector."""
    import gguf

    directory = Path(directory)
    text_shape = _Text()
    text = _llama_text(
        directory / "smolvlm2-tiny.gguf", name="SmolVLM2 tiny test model", template=SMOLVLM2_TEMPLATE,
        specials=SMOLVLM2_SPECIALS, eos="<end_of_utterance>", seed=seed, shape=text_shape,
    )  # fmt: skip
    vision = _Vision()
    rng = np.random.default_rng(seed + 1)
    path = directory / "mmproj-smolvlm2-tiny.gguf"
    temporary = _atomic_target(path)
    writer = gguf.GGUFWriter(str(temporary), "clip")
    _clip_header(writer, "idefics3", vision, text_shape.n_embd, name="SmolVLM2 tiny test mmproj")
    writer.add_uint32("clip.vision.projector.scale_factor", SMOLVLM2_SCALE)
    side = vision.image_size // vision.patch_size
    _vit_tensors(writer, rng, vision, side * side)
    merged = vision.n_embd * SMOLVLM2_SCALE * SMOLVLM2_SCALE
    writer.add_tensor("mm.model.fc.weight", _weights(rng, text_shape.n_embd, merged))
    return ModelPair(text, _finish(writer, temporary, path))


# --- LFM2-VL / LFM2.5-VL (lfm2) ----------------------------------------------------------------------------------

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


def _lfm2_text(path: Path, *, seed: int, shape: _Text = _Text()) -> Path:
    """An `lfm2` hybrid text model: short-convolution blocks (recurrent state) and attention blocks (KV cache)."""
    import gguf

    rng = np.random.default_rng(seed)
    tokens, scores, types = _special_vocabulary(LFM2_SPECIALS)
    temporary = _atomic_target(path)
    writer = gguf.GGUFWriter(str(temporary), "lfm2")
    writer.add_name("LFM2-VL tiny test model")
    writer.add_context_length(shape.n_ctx_train)
    writer.add_embedding_length(shape.n_embd)
    writer.add_block_count(len(LFM2_LAYERS))
    writer.add_feed_forward_length(shape.n_ff)
    writer.add_head_count(shape.n_head)
    writer.add_head_count_kv([shape.n_head_kv if kind == "attention" else 0 for kind in LFM2_LAYERS])
    writer.add_rope_freq_base(1_000_000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_uint32("lfm2.shortconv.l_cache", LFM2_L_CACHE)
    writer.add_vocab_size(len(tokens))
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    bos = tokens.index("<|startoftext|>")
    _add_tokenizer(writer, tokens, scores, types, eos=tokens.index("<|im_end|>"), add_bos=False, bos=bos)
    writer.add_chat_template(LFM2_VL_TEMPLATE)
    n_vocab, n_embd, head_dim = len(tokens), shape.n_embd, shape.n_embd // shape.n_head
    writer.add_tensor("token_embd.weight", _weights(rng, n_vocab, n_embd))
    writer.add_tensor("token_embd_norm.weight", np.ones(n_embd, dtype=np.float32))  # LFM2's final norm
    for i, kind in enumerate(LFM2_LAYERS):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", _weights(rng, shape.n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", _weights(rng, shape.n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", _weights(rng, n_embd, shape.n_ff))
        if kind == "conv":
            writer.add_tensor(f"blk.{i}.shortconv.conv.weight", _weights(rng, n_embd, LFM2_L_CACHE))
            writer.add_tensor(f"blk.{i}.shortconv.in_proj.weight", _weights(rng, 3 * n_embd, n_embd))
            writer.add_tensor(f"blk.{i}.shortconv.out_proj.weight", _weights(rng, n_embd, n_embd))
        else:
            writer.add_tensor(f"blk.{i}.attn_q.weight", _weights(rng, n_embd, n_embd))
            writer.add_tensor(f"blk.{i}.attn_k.weight", _weights(rng, head_dim * shape.n_head_kv, n_embd))
            writer.add_tensor(f"blk.{i}.attn_v.weight", _weights(rng, head_dim * shape.n_head_kv, n_embd))
            writer.add_tensor(f"blk.{i}.attn_output.weight", _weights(rng, n_embd, n_embd))
            writer.add_tensor(f"blk.{i}.attn_q_norm.weight", np.ones(head_dim, dtype=np.float32))
            writer.add_tensor(f"blk.{i}.attn_k_norm.weight", np.ones(head_dim, dtype=np.float32))
    return _finish(writer, temporary, path)


LFM2_SCALE = 2  # downsample_factor (pixel unshuffle)
LFM2_PROJECTOR_HIDDEN = 96  # projector_hidden_size (2560 in LFM2-VL-450M)


def write_lfm2(directory: Path, seed: int = 0) -> ModelPair:
    """LFM2-VL: an lfm2 hybrid text model and an lfm2 (SigLIP2 NaFlex + pixel unshuffle + 2-layer MLP) projector."""
    import gguf

    directory = Path(directory)
    text_shape = _Text()
    text = _lfm2_text(directory / "lfm2-vl-tiny.gguf", seed=seed, shape=text_shape)
    vision = _Vision()
    rng = np.random.default_rng(seed + 1)
    path = directory / "mmproj-lfm2-vl-tiny.gguf"
    temporary = _atomic_target(path)
    writer = gguf.GGUFWriter(str(temporary), "clip")
    _clip_header(writer, "lfm2", vision, text_shape.n_embd, name="LFM2-VL tiny test mmproj")
    writer.add_uint32("clip.vision.projector.scale_factor", LFM2_SCALE)
    side = vision.image_size // vision.patch_size
    _vit_tensors(writer, rng, vision, side * side)
    merged = vision.n_embd * LFM2_SCALE * LFM2_SCALE
    writer.add_tensor("mm.input_norm.weight", np.ones(merged, dtype=np.float32))
    writer.add_tensor("mm.input_norm.bias", np.zeros(merged, dtype=np.float32))
    writer.add_tensor("mm.1.weight", _weights(rng, LFM2_PROJECTOR_HIDDEN, merged))
    writer.add_tensor("mm.1.bias", np.zeros(LFM2_PROJECTOR_HIDDEN, dtype=np.float32))
    writer.add_tensor("mm.2.weight", _weights(rng, text_shape.n_embd, LFM2_PROJECTOR_HIDDEN))
    writer.add_tensor("mm.2.bias", np.zeros(text_shape.n_embd, dtype=np.float32))
    return ModelPair(text, _finish(writer, temporary, path))


# --- Qwen3-VL (qwen3vl text model, qwen3vl_merger projector) ------------------------------------------------------

# Qwen3-VL's chat template, as published in Qwen/Qwen3-VL-2B-Instruct's chat_template.json, without its tool-call
# branches (this app sends no tools); the image, video and text parts are handled exactly as there.
QWEN3_VL_TEMPLATE = (
    "{%- set image_count = namespace(value=0) -%}{%- set video_count = namespace(value=0) -%}"
    "{%- if messages[0].role == 'system' -%}{{- '<|im_start|>system\n' -}}"
    "{%- if messages[0].content is string -%}{{- messages[0].content -}}"
    "{%- else -%}{%- for content in messages[0].content -%}{%- if 'text' in content -%}{{- content.text -}}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}{{- '<|im_end|>\n' -}}{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- if message.role == 'user' or (message.role == 'system' and not loop.first) -%}"
    "{{- '<|im_start|>' + message.role + '\n' -}}"
    "{%- if message.content is string -%}{{- message.content -}}{%- else -%}{%- for content in message.content -%}"
    "{%- if content.type == 'image' or 'image' in content or 'image_url' in content -%}"
    "{%- set image_count.value = image_count.value + 1 -%}"
    "{%- if add_vision_id -%}Picture {{ image_count.value }}: {% endif -%}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{%- elif content.type == 'video' or 'video' in content -%}{%- set video_count.value = video_count.value + 1 -%}"
    "{%- if add_vision_id -%}Video {{ video_count.value }}: {% endif -%}<|vision_start|><|video_pad|><|vision_end|>"
    "{%- elif 'text' in content -%}{{- content.text -}}{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\n' -}}"
    "{%- elif message.role == 'assistant' -%}{{- '<|im_start|>' + message.role + '\n' -}}"
    "{%- if message.content is string -%}{{- message.content -}}{%- else -%}{%- for content_item in message.content -%}"
    "{%- if 'text' in content_item -%}{{- content_item.text -}}{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\n' -}}{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}"
)
QWEN_VL_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                    "<|image_pad|>", "<|video_pad|>")  # fmt: skip
QWEN3_VL_DEEPSTACK = (True, False)  # which vision blocks feed a deepstack merger (Qwen3-VL-2B: 3 of 24)
QWEN3_VL_SECTIONS = (2, 3, 3, 0)  # M-RoPE sections (t, h, w, -) in rotary pairs: half the head size in all


def _qwen3_text(
    path: Path, arch: str, *, name: str, template: str, seed: int, shape: _Text = _Text(), deepstack: int = 0
) -> Path:
    """A qwen3-family text model (q/k norms, no biases); `qwen3vl` adds M-RoPE sections and deepstack inputs."""
    import gguf

    rng = np.random.default_rng(seed)
    tokens, scores, types = _special_vocabulary(QWEN_VL_SPECIALS)
    temporary = _atomic_target(path)
    writer = gguf.GGUFWriter(str(temporary), arch)
    writer.add_name(name)
    writer.add_context_length(shape.n_ctx_train)
    writer.add_embedding_length(shape.n_embd)
    writer.add_block_count(shape.n_layer)
    writer.add_feed_forward_length(shape.n_ff)
    writer.add_head_count(shape.n_head)
    writer.add_head_count_kv(shape.n_head_kv)
    head_dim = shape.n_embd // shape.n_head
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_freq_base(5_000_000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    if arch == "qwen3vl":
        writer.add_rope_dimension_sections(list(QWEN3_VL_SECTIONS))
        writer.add_uint32(f"{arch}.n_deepstack_layers", deepstack)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    _add_tokenizer(writer, tokens, scores, types, eos=tokens.index("<|im_end|>"), add_bos=False)
    writer.add_chat_template(template)
    n_vocab, n_embd = len(tokens), shape.n_embd
    writer.add_tensor("token_embd.weight", _weights(rng, n_vocab, n_embd))
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    writer.add_tensor("output.weight", _weights(rng, n_vocab, n_embd))
    for i in range(shape.n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.attn_q.weight", _weights(rng, head_dim * shape.n_head, n_embd))
        writer.add_tensor(f"blk.{i}.attn_k.weight", _weights(rng, head_dim * shape.n_head_kv, n_embd))
        writer.add_tensor(f"blk.{i}.attn_v.weight", _weights(rng, head_dim * shape.n_head_kv, n_embd))
        writer.add_tensor(f"blk.{i}.attn_output.weight", _weights(rng, n_embd, head_dim * shape.n_head))
        writer.add_tensor(f"blk.{i}.attn_q_norm.weight", np.ones(head_dim, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.attn_k_norm.weight", np.ones(head_dim, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", _weights(rng, shape.n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", _weights(rng, shape.n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", _weights(rng, n_embd, shape.n_ff))
    return _finish(writer, temporary, path)


def _qwen3vl_mmproj(
    path: Path, *, name: str, text_n_embd: int, seed: int, vision: _Vision,
    deepstack: tuple[bool, ...] = QWEN3_VL_DEEPSTACK,
) -> Path:  # fmt: skip
    """A qwen3vl_merger projector: two patch convolutions, fused-QKV blocks with M-RoPE, a 2x2 merger MLP and a
    deepstack merger for each block flagged in QWEN3_VL_DEEPSTACK (their outputs are concatenated)."""
    import gguf

    rng = np.random.default_rng(seed)
    temporary = _atomic_target(path)
    writer = gguf.GGUFWriter(str(temporary), "clip")
    _clip_header(writer, "qwen3vl_merger", vision, text_n_embd, name=name)
    writer.add_uint32("clip.vision.spatial_merge_size", 2)
    writer.add_array("clip.vision.is_deepstack_layers", list(deepstack[: vision.n_layer]))
    embd, p = vision.n_embd, vision.patch_size
    for suffix in ("", ".1"):
        kernel = rng.standard_normal((embd, 3, p, p), dtype=np.float32) / np.float32(np.sqrt(3 * p * p))
        writer.add_tensor(f"v.patch_embd.weight{suffix}", kernel)
    writer.add_tensor("v.patch_embd.bias", np.zeros(embd, dtype=np.float32))
    side = vision.image_size // p
    writer.add_tensor("v.position_embd.weight", _weights(rng, side * side, embd))
    merged = 4 * embd
    for i in range(vision.n_layer):
        writer.add_tensor(f"v.blk.{i}.attn_qkv.weight", _weights(rng, 3 * embd, embd))
        writer.add_tensor(f"v.blk.{i}.attn_qkv.bias", np.zeros(3 * embd, dtype=np.float32))
        writer.add_tensor(f"v.blk.{i}.attn_out.weight", _weights(rng, embd, embd))
        writer.add_tensor(f"v.blk.{i}.attn_out.bias", np.zeros(embd, dtype=np.float32))
        for norm in ("ln1", "ln2"):
            writer.add_tensor(f"v.blk.{i}.{norm}.weight", np.ones(embd, dtype=np.float32))
            writer.add_tensor(f"v.blk.{i}.{norm}.bias", np.zeros(embd, dtype=np.float32))
        writer.add_tensor(f"v.blk.{i}.ffn_up.weight", _weights(rng, vision.n_ff, embd))
        writer.add_tensor(f"v.blk.{i}.ffn_up.bias", np.zeros(vision.n_ff, dtype=np.float32))
        writer.add_tensor(f"v.blk.{i}.ffn_down.weight", _weights(rng, embd, vision.n_ff))
        writer.add_tensor(f"v.blk.{i}.ffn_down.bias", np.zeros(embd, dtype=np.float32))
        if i < len(deepstack) and deepstack[i]:
            writer.add_tensor(f"v.deepstack.{i}.norm.weight", np.ones(merged, dtype=np.float32))
            writer.add_tensor(f"v.deepstack.{i}.norm.bias", np.zeros(merged, dtype=np.float32))
            writer.add_tensor(f"v.deepstack.{i}.fc1.weight", _weights(rng, merged, merged))
            writer.add_tensor(f"v.deepstack.{i}.fc1.bias", np.zeros(merged, dtype=np.float32))
            writer.add_tensor(f"v.deepstack.{i}.fc2.weight", _weights(rng, text_n_embd, merged))
            writer.add_tensor(f"v.deepstack.{i}.fc2.bias", np.zeros(text_n_embd, dtype=np.float32))
    writer.add_tensor("v.post_ln.weight", np.ones(embd, dtype=np.float32))
    writer.add_tensor("v.post_ln.bias", np.zeros(embd, dtype=np.float32))
    writer.add_tensor("mm.0.weight", _weights(rng, merged, merged))
    writer.add_tensor("mm.0.bias", np.zeros(merged, dtype=np.float32))
    writer.add_tensor("mm.2.weight", _weights(rng, text_n_embd, merged))
    writer.add_tensor("mm.2.bias", np.zeros(text_n_embd, dtype=np.float32))
    return _finish(writer, temporary, path)


def write_qwen3vl(directory: Path, seed: int = 0) -> ModelPair:
    """Qwen3-VL: a qwen3vl text model (M-RoPE, deepstack inputs) and a qwen3vl_merger projector."""
    directory = Path(directory)
    shape = _Text()
    vision = _Vision(n_layer=2)
    deepstack = sum(QWEN3_VL_DEEPSTACK[: vision.n_layer])
    text = _qwen3_text(
        directory / "qwen3-vl-tiny.gguf", "qwen3vl", name="Qwen3-VL tiny test model", template=QWEN3_VL_TEMPLATE,
        seed=seed, shape=shape, deepstack=deepstack,
    )  # fmt: skip
    mmproj = _qwen3vl_mmproj(
        directory / "mmproj-qwen3-vl-tiny.gguf", name="Qwen3-VL tiny test mmproj", text_n_embd=shape.n_embd,
        seed=seed + 1, vision=vision,
    )  # fmt: skip
    return ModelPair(text, mmproj)


# --- Qwen3.5 (qwen35 hybrid text model: gated delta net + gated attention; qwen3vl_merger vision) ---------------

QWEN3_5_SECTIONS = (2, 1, 1, 0)  # interleaved M-RoPE sections over the rotated half of each head (n_rot / 2)


def _qwen35_text(path: Path, *, seed: int, template: str, shape: _Text = _Text()) -> Path:
    """A `qwen35` text model: linear-attention (gated delta net) blocks with one full-attention block in every
    `full_attention_interval`, as Qwen3.5-0.8B (24 blocks, interval 4) with tiny sizes."""
    import gguf

    rng = np.random.default_rng(seed)
    tokens, scores, types = _special_vocabulary(QWEN_VL_SPECIALS)
    n_layer, interval = 2, 2  # block 1 is full attention, block 0 linear
    d_conv, d_state, n_group, dt_rank, d_inner = 4, 8, 2, 2, 16
    head_k = shape.n_embd // shape.n_head  # attention head size (Qwen3.5: 256, of which 64 rotated)
    n_rot = head_k // 2
    temporary = _atomic_target(path)
    writer = gguf.GGUFWriter(str(temporary), "qwen35")
    writer.add_name("Qwen3.5 tiny test model")
    writer.add_context_length(shape.n_ctx_train)
    writer.add_embedding_length(shape.n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(shape.n_ff)
    writer.add_head_count(shape.n_head)
    writer.add_head_count_kv(shape.n_head_kv)
    writer.add_key_length(head_k)
    writer.add_value_length(head_k)
    writer.add_rope_dimension_count(n_rot)
    writer.add_rope_dimension_sections(list(QWEN3_5_SECTIONS))
    writer.add_rope_freq_base(10_000_000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_uint32("qwen35.full_attention_interval", interval)
    writer.add_ssm_conv_kernel(d_conv)
    writer.add_ssm_state_size(d_state)
    writer.add_ssm_group_count(n_group)
    writer.add_ssm_time_step_rank(dt_rank)
    writer.add_ssm_inner_size(d_inner)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    _add_tokenizer(writer, tokens, scores, types, eos=tokens.index("<|im_end|>"), add_bos=False)
    writer.add_chat_template(template)
    n_vocab, n_embd = len(tokens), shape.n_embd
    key_dim, value_dim, head_v = d_state * n_group, d_inner, d_inner // dt_rank
    conv_dim = 2 * key_dim + value_dim
    writer.add_tensor("token_embd.weight", _weights(rng, n_vocab, n_embd))
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    writer.add_tensor("output.weight", _weights(rng, n_vocab, n_embd))
    for i in range(n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.post_attention_norm.weight", np.ones(n_embd, dtype=np.float32))
        if (i + 1) % interval == 0:  # full (gated) attention: attn_q holds the query and its gate
            writer.add_tensor(f"blk.{i}.attn_q.weight", _weights(rng, 2 * head_k * shape.n_head, n_embd))
            writer.add_tensor(f"blk.{i}.attn_k.weight", _weights(rng, head_k * shape.n_head_kv, n_embd))
            writer.add_tensor(f"blk.{i}.attn_v.weight", _weights(rng, head_k * shape.n_head_kv, n_embd))
            writer.add_tensor(f"blk.{i}.attn_output.weight", _weights(rng, n_embd, head_k * shape.n_head))
            writer.add_tensor(f"blk.{i}.attn_q_norm.weight", np.ones(head_k, dtype=np.float32))
            writer.add_tensor(f"blk.{i}.attn_k_norm.weight", np.ones(head_k, dtype=np.float32))
        else:  # gated delta net
            writer.add_tensor(f"blk.{i}.attn_qkv.weight", _weights(rng, conv_dim, n_embd))
            writer.add_tensor(f"blk.{i}.attn_gate.weight", _weights(rng, value_dim, n_embd))
            writer.add_tensor(f"blk.{i}.ssm_conv1d.weight", _weights(rng, conv_dim, d_conv))
            writer.add_tensor(f"blk.{i}.ssm_dt.bias", np.zeros(dt_rank, dtype=np.float32))
            writer.add_tensor(f"blk.{i}.ssm_a", -np.ones(dt_rank, dtype=np.float32))
            writer.add_tensor(f"blk.{i}.ssm_beta.weight", _weights(rng, dt_rank, n_embd))
            writer.add_tensor(f"blk.{i}.ssm_alpha.weight", _weights(rng, dt_rank, n_embd))
            writer.add_tensor(f"blk.{i}.ssm_norm.weight", np.ones(head_v, dtype=np.float32))
            writer.add_tensor(f"blk.{i}.ssm_out.weight", _weights(rng, n_embd, value_dim))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", _weights(rng, shape.n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", _weights(rng, shape.n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", _weights(rng, n_embd, shape.n_ff))
    return _finish(writer, temporary, path)


def write_qwen35(directory: Path, seed: int = 0) -> ModelPair:
    """Qwen3.5: a qwen35 hybrid text model and its vision tower as a qwen3vl_merger mmproj (no deepstack)."""
    directory = Path(directory)
    shape = _Text()
    text = _qwen35_text(directory / "qwen3.5-tiny.gguf", seed=seed, template=QWEN3_5_TEMPLATE, shape=shape)
    mmproj = _qwen3vl_mmproj(
        directory / "mmproj-qwen3.5-tiny.gguf", name="Qwen3.5 tiny test mmproj", text_n_embd=shape.n_embd,
        seed=seed + 1, vision=_Vision(n_layer=2), deepstack=(False, False),
    )  # fmt: skip
    return ModelPair(text, mmproj)


# --- Gemma 4 (gemma4 text model with per-layer embeddings and sliding-window layers; gemma4v projector) -----------

# Gemma 4's chat template reduced to what this app sends (system, user with image parts, model turns): the turn
# markers, the image part's '<|image|>' and the generation prompt with its empty thought channel are those of
# google/gemma-4-E2B-it's published template (386 lines, mostly tool-call formatting, not embedded verbatim here:
# no public copy of the whole file could be read from this machine).
GEMMA4_TEMPLATE = (
    "{{- bos_token -}}{%- for message in messages -%}"
    "{{- '<|turn>' + ('model' if message['role'] == 'assistant' else message['role']) + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] | trim -}}{%- else -%}"
    "{%- for item in message['content'] -%}{%- if item['type'] == 'text' -%}{{- item['text'] | trim -}}"
    "{%- elif item['type'] == 'image' -%}{{- '<|image|>' -}}{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{- '<turn|>\\n' -}}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|turn>model\\n' -}}"
    "{%- if not enable_thinking | default(false) -%}{{- '<|channel>thought\\n<channel|>' -}}{%- endif -%}"
    "{%- endif -%}"
)
GEMMA4_SPECIALS = ("<bos>", "<eos>", "<|turn>", "<turn|>", "<|image|>", "<|image>", "<image|>", "<|channel>",
                   "<channel|>")  # fmt: skip


def _gemma4_text(path: Path, *, seed: int, shape: _Text = _Text()) -> Path:
    """A `gemma4` text model: a sliding-window block and a global block, per-layer input embeddings (PLE)."""
    import gguf

    rng = np.random.default_rng(seed)
    tokens, scores, types = _special_vocabulary(GEMMA4_SPECIALS)
    n_layer, ple, head = 2, 16, shape.n_embd // shape.n_head
    temporary = _atomic_target(path)
    writer = gguf.GGUFWriter(str(temporary), "gemma4")
    writer.add_name("Gemma 4 tiny test model")
    writer.add_context_length(shape.n_ctx_train)
    writer.add_embedding_length(shape.n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(shape.n_ff)
    writer.add_head_count(shape.n_head)
    writer.add_head_count_kv(shape.n_head_kv)
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
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    bos, eos = tokens.index("<bos>"), tokens.index("<turn|>")
    _add_tokenizer(writer, tokens, scores, types, eos=eos, add_bos=True, bos=bos)
    writer.add_chat_template(GEMMA4_TEMPLATE)
    n_vocab, n_embd = len(tokens), shape.n_embd

    def ones(name: str, size: int) -> None:
        writer.add_tensor(name, np.ones(size, dtype=np.float32))

    writer.add_tensor("token_embd.weight", _weights(rng, n_vocab, n_embd))
    writer.add_tensor("per_layer_token_embd.weight", _weights(rng, n_vocab, ple * n_layer))
    writer.add_tensor("per_layer_model_proj.weight", _weights(rng, ple * n_layer, n_embd))
    ones("per_layer_proj_norm.weight", ple)
    ones("rope_freqs.weight", head // 2)
    ones("output_norm.weight", n_embd)
    for i in range(n_layer):
        b = f"blk.{i}."
        ones(b + "attn_norm.weight", n_embd)
        writer.add_tensor(b + "attn_q.weight", _weights(rng, shape.n_head * head, n_embd))
        writer.add_tensor(b + "attn_k.weight", _weights(rng, shape.n_head_kv * head, n_embd))
        writer.add_tensor(b + "attn_v.weight", _weights(rng, shape.n_head_kv * head, n_embd))
        writer.add_tensor(b + "attn_output.weight", _weights(rng, n_embd, shape.n_head * head))
        ones(b + "attn_q_norm.weight", head)
        ones(b + "attn_k_norm.weight", head)
        ones(b + "post_attention_norm.weight", n_embd)
        ones(b + "ffn_norm.weight", n_embd)
        writer.add_tensor(b + "ffn_gate.weight", _weights(rng, shape.n_ff, n_embd))
        writer.add_tensor(b + "ffn_up.weight", _weights(rng, shape.n_ff, n_embd))
        writer.add_tensor(b + "ffn_down.weight", _weights(rng, n_embd, shape.n_ff))
        ones(b + "post_ffw_norm.weight", n_embd)
        writer.add_tensor(b + "inp_gate.weight", _weights(rng, ple, n_embd))
        writer.add_tensor(b + "proj.weight", _weights(rng, n_embd, ple))
        ones(b + "post_norm.weight", n_embd)
    return _finish(writer, temporary, path)


def write_gemma4(directory: Path, seed: int = 0) -> ModelPair:
    """Gemma 4: a gemma4 text model and a gemma4v projector (RMS-norm ViT with 2-D RoPE, x/y position tables,
    average pooling, one input projection)."""
    import gguf

    directory = Path(directory)
    shape = _Text()
    text = _gemma4_text(directory / "gemma4-tiny.gguf", seed=seed, shape=shape)
    vision = _Vision(image_size=64, patch_size=8)
    rng = np.random.default_rng(seed + 1)
    path = directory / "mmproj-gemma4-tiny.gguf"
    temporary = _atomic_target(path)
    writer = gguf.GGUFWriter(str(temporary), "clip")
    _clip_header(writer, "gemma4v", vision, shape.n_embd, name="Gemma 4 tiny test mmproj")
    embd, p = vision.n_embd, vision.patch_size
    kernel = rng.standard_normal((embd, 3, p, p), dtype=np.float32) / np.float32(np.sqrt(3 * p * p))
    writer.add_tensor("v.patch_embd.weight", kernel)
    side = vision.image_size // p
    table = rng.standard_normal((2, side * side, embd), dtype=np.float32) / np.float32(np.sqrt(embd))
    writer.add_tensor("v.position_embd.weight", table)  # an x table and a y table
    for i in range(vision.n_layer):
        b = f"v.blk.{i}."
        for norm in ("ln1", "ln2"):
            writer.add_tensor(b + f"{norm}.weight", np.ones(embd, dtype=np.float32))
        for part in ("q", "k", "v"):
            writer.add_tensor(b + f"attn_{part}.weight", _weights(rng, embd, embd))
        writer.add_tensor(b + "attn_out.weight", _weights(rng, embd, embd))
        writer.add_tensor(b + "ffn_gate.weight", _weights(rng, vision.n_ff, embd))
        writer.add_tensor(b + "ffn_up.weight", _weights(rng, vision.n_ff, embd))
        writer.add_tensor(b + "ffn_down.weight", _weights(rng, embd, vision.n_ff))
    writer.add_tensor("mm.input_projection.weight", _weights(rng, shape.n_embd, embd))
    return ModelPair(text, _finish(writer, temporary, path))


FAMILIES: dict[str, Family] = {
    "smolvlm2": Family("smolvlm2", "idefics3", "llama", write_smolvlm2),
    "lfm2": Family("lfm2", "lfm2", "lfm2", write_lfm2),
    "qwen3vl": Family("qwen3vl", "qwen3vl_merger", "qwen3vl", write_qwen3vl),
    "gemma4": Family("gemma4", "gemma4v", "gemma4", write_gemma4, rewrites_history=True),
    "qwen35": Family("qwen35", "qwen3vl_merger", "qwen35", write_qwen35, rewrites_history=True),
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
