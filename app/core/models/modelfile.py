"""Check GGUF model files in pure Python before llama.cpp sees them (it crashes on some malformed files).

A text model and its vision projector (mmproj) are checked on their own and as a pair: readable, really GGUF,
complete (every tensor's data inside the file), the right kind, and the projector's output as wide as the text
model's embeddings. Every problem is a ModelFileError that names the file and says what is wrong.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.errors import ModelFileError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
_VISION_ARCHITECTURES = ("clip", "mmproj")


@dataclass(frozen=True)
class TextModelInfo:
    path: Path
    architecture: str
    name: str | None
    n_embd: int
    n_ctx_train: int | None
    vocab_size: int | None
    chat_template: str | None
    file_size: int


@dataclass(frozen=True)
class MmprojInfo:
    path: Path
    projector_type: str | None
    has_vision: bool
    output_embd: int | None
    image_size: int | None
    patch_size: int | None
    file_size: int


def inspect_text_model(path: str | os.PathLike[str]) -> TextModelInfo:
    """Read and check a text model GGUF; raises ModelFileError naming the file and the problem."""
    file = Path(path)
    fields, tensors, size = _read(file)
    architecture = _text(fields, "general.architecture")
    if architecture is None:
        raise ModelFileError(file, "the GGUF has no general.architecture: not a model file llama.cpp can load")
    if architecture in _VISION_ARCHITECTURES:
        raise ModelFileError(
            file,
            "this is a vision projector (mmproj), not a text model: give it as the mmproj and the text model first",
        )
    n_embd = _int(fields, f"{architecture}.embedding_length")
    if n_embd is None:
        raise ModelFileError(file, f"the model has no {architecture}.embedding_length: the file is incomplete")
    tokens = fields.get("tokenizer.ggml.tokens")
    return TextModelInfo(
        path=file,
        architecture=architecture,
        name=_text(fields, "general.name"),
        n_embd=n_embd,
        n_ctx_train=_int(fields, f"{architecture}.context_length"),
        vocab_size=int(tokens) if isinstance(tokens, _ArrayLength) else None,
        chat_template=_text(fields, "tokenizer.chat_template"),
        file_size=size,
    )


def inspect_mmproj(path: str | os.PathLike[str]) -> MmprojInfo:
    """Read and check a vision projector GGUF; raises ModelFileError naming the file and the problem."""
    file = Path(path)
    fields, tensors, size = _read(file)
    architecture = _text(fields, "general.architecture")
    if architecture not in _VISION_ARCHITECTURES:
        if architecture is not None:
            raise ModelFileError(
                file, f"this is a text model ({architecture}), not a vision projector (mmproj): swap the two files?"
            )
        raise ModelFileError(file, "the GGUF has no general.architecture: not a vision projector (mmproj)")
    has_vision = bool(_value(fields, "clip.has_vision_encoder")) or any(name.startswith("v.") for name in tensors)
    if not has_vision:
        raise ModelFileError(file, "this projector has no vision encoder (perhaps audio only): it cannot read images")
    projector = _text(fields, "clip.vision.projector_type") or _text(fields, "clip.projector_type")
    return MmprojInfo(
        path=file,
        projector_type=projector,
        has_vision=True,
        output_embd=_projector_output(projector, tensors),
        image_size=_int(fields, "clip.vision.image_size"),
        patch_size=_int(fields, "clip.vision.patch_size"),
        file_size=size,
    )


def check_pair(
    text_path: str | os.PathLike[str], mmproj_path: str | os.PathLike[str] | None
) -> tuple[TextModelInfo, MmprojInfo | None]:
    """Check both files and that they belong together."""
    text = inspect_text_model(text_path)
    if mmproj_path is None:
        return text, None
    mmproj = inspect_mmproj(mmproj_path)
    if mmproj.output_embd is not None and mmproj.output_embd != text.n_embd:
        raise ModelFileError(
            mmproj.path,
            f"the projector outputs {mmproj.output_embd}-wide embeddings but the text model {text.path.name} "
            f"takes {text.n_embd}: they are not a pair",
        )
    return text, mmproj


# --- reading -----------------------------------------------------------------------------------------------------


def _read(file: Path) -> tuple[dict[str, Any], dict[str, list[int]], int]:
    """(fields, tensors by name, file size) after the checks every GGUF must pass."""
    if not file.exists():
        raise ModelFileError(file, "no such file")
    if file.is_dir():
        raise ModelFileError(file, "is a folder, not a model file")
    try:
        size = file.stat().st_size
        with file.open("rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise ModelFileError(file, f"cannot be read ({exc.strerror or exc})") from exc
    if size == 0:
        raise ModelFileError(file, "the file is empty")
    if head[:4] != GGUF_MAGIC:
        start = head.lstrip()[:1]
        if start in (b"<", b"{"):
            raise ModelFileError(file, "not a GGUF model: it looks like a web page or an error message (HTML/JSON)")
        raise ModelFileError(file, "not a GGUF model file (wrong magic bytes)")
    if len(head) < 8:
        raise ModelFileError(file, "the file is truncated (shorter than a GGUF header)")
    version = struct.unpack("<I", head[4:8])[0]
    if version not in SUPPORTED_VERSIONS:
        raise ModelFileError(file, f"GGUF version {version} is not supported (expected 2 or 3)")
    try:
        fields, tensors, ends = _parse(file)
    except (_Damaged, struct.error, UnicodeDecodeError, OverflowError, ValueError) as exc:
        raise ModelFileError(file, f"the file is damaged or truncated (its GGUF header is unreadable: {exc})") from exc
    except OSError as exc:
        raise ModelFileError(file, f"cannot be read ({exc.strerror or exc})") from exc
    if not tensors:
        raise ModelFileError(file, "the GGUF holds no tensors: not a model")
    if max(ends) > size:
        raise ModelFileError(
            file, f"the file is truncated: its tensors need {max(ends)} bytes but it has {size} (download it again)"
        )
    return fields, tensors, size


# ggml tensor type -> (elements per block, bytes per block); gguf's own table is consulted for newer types.
_TYPE_SIZES = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 40),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82),
    23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2),
    34: (256, 54), 35: (256, 66), 39: (32, 17),
}  # fmt: skip
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class _Damaged(Exception):
    pass


class _Cursor:
    """Sequential little-endian reads that fail cleanly at the end of the file (no giant allocations)."""

    def __init__(self, handle: Any, size: int) -> None:
        self.handle = handle
        self.size = size

    def take(self, count: int) -> bytes:
        if count < 0 or self.handle.tell() + count > self.size:
            raise _Damaged("the header runs past the end of the file")
        return bytes(self.handle.read(count))

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> bytes:
        return self.take(self.unpack("<Q"))

    def skip(self, count: int) -> None:
        if count < 0 or self.handle.tell() + count > self.size:
            raise _Damaged("the header runs past the end of the file")
        self.handle.seek(count, os.SEEK_CUR)


def _parse(file: Path) -> tuple[dict[str, Any], dict[str, list[int]], list[int]]:
    """Read the GGUF header: metadata (arrays kept as their length), tensor shapes, where each tensor's data ends.

    A small reader of our own: gguf's GGUFReader builds an object per vocabulary entry, which costs seconds on a
    32k-token model, and this header is all we need.
    """
    size = file.stat().st_size
    with file.open("rb") as handle:
        cur = _Cursor(handle, size)
        cur.take(8)  # magic and version, checked by the caller
        n_tensors, n_fields = cur.unpack("<Q"), cur.unpack("<Q")
        if n_tensors > size or n_fields > size:
            raise _Damaged("the header's counts are impossible")
        fields: dict[str, Any] = {}
        for _ in range(n_fields):
            key = cur.string().decode("utf-8", errors="replace")
            kind = cur.unpack("<I")
            if kind == _STRING:
                fields[key] = cur.string().decode("utf-8", errors="replace")
            elif kind == _ARRAY:
                item_kind, count = cur.unpack("<I"), cur.unpack("<Q")
                if item_kind == _STRING:
                    for _ in range(count):
                        cur.skip(cur.unpack("<Q"))
                elif item_kind in _SCALARS:
                    cur.skip(count * struct.calcsize(_SCALARS[item_kind]))
                else:
                    raise _Damaged(f"unknown array item type {item_kind}")
                fields[key] = _ArrayLength(count)
            elif kind in _SCALARS:
                fields[key] = cur.unpack(_SCALARS[kind])
            else:
                raise _Damaged(f"unknown metadata type {kind} for {key}")
        infos = []
        for _ in range(n_tensors):
            name = cur.string().decode("utf-8", errors="replace")
            n_dims = cur.unpack("<I")
            if n_dims > 8:
                raise _Damaged(f"tensor {name} has {n_dims} dimensions")
            dims = [cur.unpack("<Q") for _ in range(n_dims)]
            infos.append((name, dims, cur.unpack("<I"), cur.unpack("<Q")))
        alignment = int(fields.get("general.alignment", 32) or 32)
        data_start = -(-handle.tell() // alignment) * alignment
    tensors: dict[str, list[int]] = {}
    ends: list[int] = []
    for name, dims, kind, offset in infos:
        block, block_bytes = _type_size(kind, name)
        elements = 1
        for d in dims:
            elements *= d
        tensors[name] = dims
        ends.append(data_start + offset + elements // block * block_bytes)
    return fields, tensors, ends


def _type_size(kind: int, name: str) -> tuple[int, int]:
    if kind in _TYPE_SIZES:
        return _TYPE_SIZES[kind]
    try:
        from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

        return tuple(GGML_QUANT_SIZES[GGMLQuantizationType(kind)])  # type: ignore[return-value]
    except (ImportError, ValueError, KeyError):
        raise _Damaged(f"tensor {name} has type {kind}, which this version does not know") from None


class _ArrayLength(int):
    """An array field, kept only as its length (a 32000-entry vocabulary is not needed here)."""


def _value(fields: dict[str, Any], key: str) -> Any:
    value = fields.get(key)
    return None if isinstance(value, _ArrayLength) else value


def _text(fields: dict[str, Any], key: str) -> str | None:
    value = _value(fields, key)
    return value if isinstance(value, str) else None


def _int(fields: dict[str, Any], key: str) -> int | None:
    value = _value(fields, key)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# The tensor whose output is the projector's output, per projector type (after llama.cpp's clip_n_mmproj_embd).
# GGUF lists a weight's dimensions input first, so its output size is the second one.
_PROJECTOR_OUTPUT_TENSOR = {
    "mlp": "mm.2.weight",
    "mlp_norm": "mm.3.weight",
    "pixtral": "mm.2.weight",
    "idefics3": "mm.model.fc.weight",
    "qwen2vl_merger": "mm.2.weight",
    "qwen2.5vl_merger": "mm.2.weight",
}


def _projector_output(projector: str | None, tensors: dict[str, list[int]]) -> int | None:
    """None for unfamiliar projectors: llama.cpp checks the size itself when it loads them."""
    shape = tensors.get(_PROJECTOR_OUTPUT_TENSOR.get(projector or "", ""))
    return shape[1] if shape is not None and len(shape) >= 2 else None
