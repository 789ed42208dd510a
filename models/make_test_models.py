"""Random-weight GGUF models that llama.cpp loads and runs: a tiny LLaVA pair for tests, a real-size one for benchmarks.

    python -m models.make_test_models --out DIR [--size tiny|real-size]

`real-size` (also `tinyllama`) writes TinyLLaVA's shapes, what `make bench` runs on: TinyLlama-1.1B-Chat as Q4_0
(620 MB) and LLaVA's CLIP ViT-L/14-336 "mlp" mmproj as F16 (595 MB), in about a minute and 0.7 GB of memory.

The text model is a llama-architecture model with a byte-fallback SentencePiece vocabulary and TinyLlama's chat
template; the projector is a CLIP "mlp" mmproj whose output size equals the text model's embedding size. Weights
are N(0, 1/sqrt(fan_in)) from a seeded generator, so answers are deterministic and a different image changes them.
Random weights cost exactly what trained ones cost, which is all a benchmark needs.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.core.inference.templates import TINYLLAMA_TEMPLATE
from models.gguf_writing import (
    Tensors,
    add_clip_header,
    add_embeddings_and_output,
    add_llama_blocks,
    add_spm_tokenizer,
    add_text_header,
    add_vit_block,
    gguf_file,
)

TINYLLAMA_CHAT_TEMPLATE = TINYLLAMA_TEMPLATE
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_WORD_TEXT = (
    "the a an is are was this that it its of and or to in on at with for from by as what which who where "
    "how there here image picture photo shows show see looks look like color colour red green blue "
    "yellow black white gray brown orange pink purple small large big little round square object person "
    "man woman cat dog car table cup mug apple book phone hand face light dark background front left "
    "right top bottom side near next I you he she we they one two three some many more most very not no "
    "yes can could would should will has have had be been being do does did made make camera screen "
    "window wall floor room desk chair paper "
    # The default system prompt and the benchmark's questions: a real 32k vocabulary holds all these words.
    "chat between curious human artificial intelligence assistant gives helpful detailed polite answers "
    "questions describe rest scene thing round A The What Describe"
)
_WORDS = tuple(_WORD_TEXT.split())
_PIECES = (
    "<", "|", ">", "<|", "|>", "user", "system", "assistant", "/", "s", "?", ".", ",", "!", ":", ";", "'", '"',
    "(", ")", "-", "\n", "\n\n", "ing", "ed", "er", "ly", "es", "tion",
)  # fmt: skip


@dataclass(frozen=True)
class TextShape:
    n_embd: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_head_kv: int = 2
    n_ff: int = 160
    n_vocab: int | None = None  # None: just the built-in vocabulary; larger values pad it with filler pieces
    n_ctx_train: int = 2048
    quantize: bool = False  # Q4_0 for 2-D weights (as the benchmark's TinyLlama-1.1B Q4_0)
    name: str = "TinyLlama tiny test model"


@dataclass(frozen=True)
class VisionShape:
    image_size: int = 32
    patch_size: int = 8
    n_embd: int = 32
    n_ff: int = 64
    n_layer: int = 1
    n_head: int = 2
    f16: bool = False
    name: str = "tiny test mmproj"


TINY_TEXT = TextShape()
TINY_VISION = VisionShape()
TINYLLAMA_1_1B = TextShape(
    n_embd=2048, n_layer=22, n_head=32, n_head_kv=4, n_ff=5632, n_vocab=32000, quantize=True,
    name="TinyLlama-1.1B-Chat random-weight benchmark model",
)  # fmt: skip
# LLaVA's mmproj keeps 23 of CLIP ViT-L/14-336's 24 blocks (features come from the second-to-last layer).
CLIP_VIT_L_336 = VisionShape(
    image_size=336, patch_size=14, n_embd=1024, n_ff=4096, n_layer=23, n_head=16, f16=True,
    name="CLIP ViT-L/14-336 random-weight benchmark mmproj",
)  # fmt: skip


@dataclass(frozen=True)
class ModelPair:
    text: Path
    mmproj: Path


def vocabulary(n_vocab: int | None = None) -> tuple[list[str], list[float], list[int]]:
    """SPM pieces, scores and token types: unk, bos, eos, 256 byte tokens, then words and pieces."""
    import gguf

    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + [gguf.TokenType.BYTE] * 256
    normal = ["▁"] + [f"▁{w}" for w in _WORDS] + list(_PIECES) + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    normal += [chr(c) for c in range(ord("A"), ord("Z") + 1)] + [str(d) for d in range(10)]
    seen: set[str] = set()
    normal = [p for p in normal if not (p in seen or seen.add(p))]  # type: ignore[func-returns-value]
    if n_vocab is not None:
        filler = n_vocab - len(tokens) - len(normal)
        normal += [f"▁w{i:05d}" for i in range(max(filler, 0))]
    tokens += normal
    types += [gguf.TokenType.NORMAL] * len(normal)
    scores = [0.0] * 259 + [-float(i) for i in range(len(normal))]
    return tokens, scores, [int(t) for t in types]


def write_text_model(
    path: Path,
    shape: TextShape = TINY_TEXT,
    *,
    seed: int = 0,
    chat_template: bool | str = True,
) -> Path:
    """A llama-architecture GGUF with random weights. Written to a temporary name, then renamed."""
    tokens, scores, types = vocabulary(shape.n_vocab)
    with gguf_file(path, "llama") as writer:
        add_text_header(
            writer, name=shape.name, n_ctx_train=shape.n_ctx_train, n_embd=shape.n_embd, n_layer=shape.n_layer,
            n_ff=shape.n_ff, n_head=shape.n_head, n_head_kv=shape.n_head_kv, eps=1e-5, quantize=shape.quantize,
        )  # fmt: skip
        writer.add_rope_dimension_count(shape.n_embd // shape.n_head)
        template = TINYLLAMA_CHAT_TEMPLATE if chat_template is True else chat_template or None
        add_spm_tokenizer(writer, tokens, scores, types, eos=2, add_bos=True, chat_template=template)
        t = Tensors(writer, np.random.default_rng(seed), quantize=shape.quantize)
        add_embeddings_and_output(t, len(tokens), shape.n_embd)
        add_llama_blocks(
            t, n_layer=shape.n_layer, n_embd=shape.n_embd, n_head=shape.n_head, n_head_kv=shape.n_head_kv,
            n_ff=shape.n_ff,
        )  # fmt: skip
    return path


def write_mmproj(
    path: Path, shape: VisionShape = TINY_VISION, *, text_n_embd: int = TINY_TEXT.n_embd, seed: int = 1
) -> Path:
    """A CLIP "mlp" (LLaVA-1.5 style) projector whose output size is `text_n_embd`."""
    embd, n_patches = shape.n_embd, (shape.image_size // shape.patch_size) ** 2
    with gguf_file(path, "clip") as writer:
        add_clip_header(
            writer, "mlp", name=shape.name, image_size=shape.image_size, patch_size=shape.patch_size, n_embd=embd,
            n_ff=shape.n_ff, n_layer=shape.n_layer, n_head=shape.n_head, projection_dim=text_n_embd, eps=1e-5,
            mean=CLIP_MEAN, std=CLIP_STD, llava_projector=True,
        )  # fmt: skip
        rng = np.random.default_rng(seed)
        t = Tensors(writer, rng, dtype=np.float16 if shape.f16 else np.float32)
        # The kernel is scaled by a float64 root here (the families' by a float32 one): the tiny pair keeps its bytes.
        kernel = rng.standard_normal((embd, 3, shape.patch_size, shape.patch_size), dtype=np.float32)
        t.add("v.patch_embd.weight", (kernel / np.sqrt(3 * shape.patch_size**2)).astype(t.dtype))
        t.add("v.class_embd", rng.standard_normal(embd, dtype=np.float32) / np.float32(np.sqrt(embd)))
        t.matrix("v.position_embd.weight", n_patches + 1, embd)
        t.norm("v.pre_ln", embd)
        for i in range(shape.n_layer):
            add_vit_block(t, i, n_embd=embd, n_ff=shape.n_ff)
        t.linear("mm.0", text_n_embd, embd)
        t.linear("mm.2", text_n_embd, text_n_embd)
    return path


def write_tiny_pair(
    directory: Path, *, seed: int = 0, chat_template: bool | str = True, text_n_embd: int | None = None
) -> ModelPair:
    """The test suite's LLaVA pair (~0.5 MB + ~0.1 MB). `text_n_embd` makes a text model of another width."""
    directory = Path(directory)
    shape = TINY_TEXT if text_n_embd is None else TextShape(n_embd=text_n_embd)
    suffix = "" if chat_template is True else "-no-template" if chat_template is False else "-custom-template"
    text = write_text_model(
        directory / f"tiny-llama{suffix}-{shape.n_embd}.gguf", shape, seed=seed, chat_template=chat_template
    )
    mmproj = write_mmproj(directory / f"tiny-mmproj-{shape.n_embd}.gguf", text_n_embd=shape.n_embd, seed=seed + 1)
    return ModelPair(text, mmproj)


def write_benchmark_pair(directory: Path) -> ModelPair:
    """TinyLlama-1.1B-Chat (Q4_0) and CLIP ViT-L/14-336 (F16) shaped models; reused when already written."""
    directory = Path(directory)
    text = directory / "tinyllama-1.1b-chat-random-q4_0.gguf"
    mmproj = directory / "mmproj-clip-vit-l-14-336-random-f16.gguf"
    if not text.exists():
        write_text_model(text, TINYLLAMA_1_1B, seed=0)
    if not mmproj.exists():
        write_mmproj(mmproj, CLIP_VIT_L_336, text_n_embd=TINYLLAMA_1_1B.n_embd, seed=1)
    return ModelPair(text, mmproj)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder to write the pair into")
    parser.add_argument("--size", choices=["tiny", "real-size", "tinyllama"], default="tiny",
                        help="real-size (= tinyllama): TinyLLaVA's shapes, ~1.2 GB, reused")  # fmt: skip
    args = parser.parse_args(argv)
    pair = write_tiny_pair(args.out) if args.size == "tiny" else write_benchmark_pair(args.out)
    print(pair.text)
    print(pair.mmproj)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
