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
    except ModelFileError:
        raise
    except Exception as exc:  # the gguf reader raises many kinds of errors on damaged files
        raise ModelFileError(file, f"the file is damaged or truncated (the GGUF header cannot be read: {exc})") from exc
    if not tensors:
        raise ModelFileError(file, "the GGUF holds no tensors: not a model")
    if max(ends) > size:
        raise ModelFileError(
            file, f"the file is truncated: its tensors need {max(ends)} bytes but it has {size} (download it again)"
        )
    return fields, tensors, size


def _parse(file: Path) -> tuple[dict[str, Any], dict[str, list[int]], list[int]]:
    """Copy what we need out of gguf's reader, so its memory map (and the open file) goes with it."""
    from gguf import GGUFReader, GGUFValueType

    reader = GGUFReader(str(file), "r")
    fields: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if not field.types or not field.data:
            continue
        kind = field.types[0]
        if kind == GGUFValueType.ARRAY:
            fields[key] = _ArrayLength(len(field.data))
        elif kind == GGUFValueType.STRING:
            fields[key] = bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")
        else:
            fields[key] = field.parts[field.data[0]].tolist()[0]
    tensors = {t.name: [int(x) for x in t.shape] for t in reader.tensors}
    ends = [int(t.data_offset) + int(t.n_bytes) for t in reader.tensors]
    return fields, tensors, ends


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
