"""Check GGUF model files in pure Python before llama.cpp sees them (it crashes on some malformed files).

A text model and its vision projector (mmproj) are checked on their own and as a pair: readable, really GGUF,
complete (every tensor's data inside the file), the right kind, and the projector's output as wide as the text
model's embeddings. Beyond that, what llama.cpp reads is checked the way it reads it (tools/mtmd/clip.cpp's
clip_model_loader, src/llama-model.cpp, src/llama-vocab.cpp): every key it reads with a fixed GGUF type has that
type (llama.cpp asserts, i.e. aborts the process, on a clip.* key of another type), the values are sane (no zero
sizes, head counts that divide the width, finite epsilons, a patch no larger than the image), and, per projector
type we know, the tensors llama.cpp dereferences without a null check are there with the shapes its graph needs
(a missing one is a segfault). Every problem is a ModelFileError that names the file and says what is wrong in one
bounded line (nothing from the file is shown raw).
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

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
    n_embd_inp: int = 0  # what an image embedding must be as wide as (llama_model_n_embd_inp); 0: n_embd

    @property
    def input_width(self) -> int:
        return self.n_embd_inp or self.n_embd


@dataclass(frozen=True)
class MmprojInfo:
    path: Path
    projector_type: str | None
    has_vision: bool
    output_embd: int | None
    image_size: int | None
    patch_size: int | None
    file_size: int
    merger_embd: int | None = None  # one merger's output width where the output is several concatenated


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
    _check_text(file, architecture, fields, tensors)
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
        n_embd_inp=text_input_width(fields, architecture, n_embd),
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
    if not isinstance(fields, _Fields):  # pragma: no cover - _read always returns one
        raise TypeError("fields")
    # clip.cpp reads clip.projector_type first and clip.vision.projector_type only when the first is absent.
    projector = _text(fields, "clip.projector_type") or _text(fields, "clip.vision.projector_type")
    _check_vision(file, fields, tensors, projector)
    output = _projector_output(projector, tensors)
    merger = output
    if output is not None and projector == "qwen3vl_merger":
        # Each deepstack layer's merger adds one more block of the same width (clip_n_mmproj_embd).
        deepstack = {name.split(".")[2] for name in tensors if name.startswith("v.deepstack.")}
        output *= 1 + len(deepstack)
    return MmprojInfo(
        path=file,
        projector_type=projector,
        has_vision=True,
        output_embd=output,
        merger_embd=merger,
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
    # mtmd compares clip_n_mmproj_embd with llama_model_n_embd_inp (wider than n_embd for Qwen3-VL's deepstack).
    fits = mmproj.output_embd is None or mmproj.output_embd == text.input_width
    if not fits and mmproj.projector_type == "qwen3vl_merger":
        fits = mmproj.merger_embd == text.n_embd  # the deepstack count is checked by mtmd itself, cleanly
    if not fits:
        raise ModelFileError(
            mmproj.path,
            f"the projector outputs {mmproj.output_embd}-wide embeddings but the text model {text.path.name} "
            f"takes {text.input_width}: they are not a pair",
        )
    return text, mmproj


# --- reading -----------------------------------------------------------------------------------------------------


def _read(file: Path) -> tuple[_Fields, dict[str, list[int]], int]:
    """(fields, tensors by name, file size) after the checks every GGUF must pass.

    `fields` is a _Fields: it also knows each key's GGUF type (`fields.kinds`).
    """
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


def _parse(file: Path) -> tuple[_Fields, dict[str, list[int]], list[int]]:
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
        fields = _Fields()
        for _ in range(n_fields):
            key = cur.string().decode("utf-8", errors="replace")
            kind = cur.unpack("<I")
            fields.kinds[key] = kind
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
                fields[key] = _ArrayLength(count, item_kind)
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
    """An array field, kept only as its length and item type (a 32000-entry vocabulary is not needed here)."""

    item_kind: int

    def __new__(cls, count: int, item_kind: int = -1) -> _ArrayLength:
        value = super().__new__(cls, count)
        value.item_kind = item_kind
        return value


class _Fields(dict):  # type: ignore[type-arg]
    """Metadata values by key, and each key's GGUF type in `kinds`."""

    def __init__(self) -> None:
        super().__init__()
        self.kinds: dict[str, int] = {}


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
    "qwen3vl_merger": "mm.2.weight",
    "minicpmv4_6": "mm.down.weight",
}


def _projector_output(projector: str | None, tensors: dict[str, list[int]]) -> int | None:
    """None for unfamiliar projectors: llama.cpp checks the size itself when it loads them."""
    shape = tensors.get(_PROJECTOR_OUTPUT_TENSOR.get(projector or "", ""))
    return shape[1] if shape is not None and len(shape) >= 2 else None


# --- what llama.cpp reads, and how ------------------------------------------------------------------------------

_U8, _I8, _U16, _I16, _U32, _I32, _F32, _BOOL, _U64, _I64, _F64 = 0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12
_KIND_NAMES = {0: "UINT8", 1: "INT8", 2: "UINT16", 3: "INT16", 4: "UINT32", 5: "INT32", 6: "FLOAT32", 7: "BOOL",
               8: "STRING", 9: "ARRAY", 10: "UINT64", 11: "INT64", 12: "FLOAT64"}  # fmt: skip

# clip.cpp reads these with gguf_get_val_<type>, which asserts on any other stored type (the process aborts).
_CLIP_KEY_KINDS = {
    "clip.projector_type": _STRING,
    "clip.vision.projector_type": _STRING,
    "clip.vision.mm_patch_merge_type": _STRING,
    "clip.has_vision_encoder": _BOOL,
    "clip.has_audio_encoder": _BOOL,
    "clip.use_gelu": _BOOL,
    "clip.use_silu": _BOOL,
    "clip.vision.embedding_length": _U32,
    "clip.vision.feed_forward_length": _U32,
    "clip.vision.block_count": _U32,
    "clip.vision.projection_dim": _U32,
    "clip.vision.attention.head_count": _U32,
    "clip.vision.attention.head_count_kv": _U32,
    "clip.vision.attention.head_dim": _U32,
    "clip.vision.attention.layer_norm_epsilon": _F32,
    "clip.vision.image_size": _U32,
    "clip.vision.patch_size": _U32,
    "clip.vision.preproc_image_size": _U32,
    "clip.vision.image_crop_resolution": _U32,
    "clip.vision.image_min_pixels": _U32,
    "clip.vision.image_max_pixels": _U32,
    "clip.vision.preproc_min_tiles": _U32,
    "clip.vision.preproc_max_tiles": _U32,
    "clip.vision.projector.scale_factor": _U32,
    "clip.vision.spatial_merge_size": _U32,
    "clip.vision.n_wa_pattern": _U32,
    "clip.vision.window_size": _U32,
    "clip.minicpmv_version": _I32,
    "clip.minicpmv_query_num": _U32,
}
# Arrays: (item type, minimum length). image_mean/std are read as three raw floats with no length check.
_CLIP_ARRAY_KINDS = {
    "clip.vision.image_mean": (_F32, 3),
    "clip.vision.image_std": (_F32, 3),
    "clip.vision.image_grid_pinpoints": (_I32, 0),
    "clip.vision.feature_layer": (_I32, 0),
    "clip.vision.wa_layer_indexes": (_I32, 0),
    "clip.vision.is_deepstack_layers": (_BOOL, 0),
}
# Read unconditionally for a vision encoder (a missing one is a load error, or for image_mean/std an abort).
_CLIP_REQUIRED = (
    "clip.vision.embedding_length", "clip.vision.attention.head_count", "clip.vision.feed_forward_length",
    "clip.vision.block_count", "clip.vision.attention.layer_norm_epsilon", "clip.vision.image_size",
    "clip.vision.patch_size", "clip.vision.image_mean", "clip.vision.image_std",
)  # fmt: skip

# Text architectures that are encoders (embeddings), not chat models: llama.cpp loads them, but cannot chat.
_ENCODER_ARCHITECTURES = ("bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3", "neo-bert",
                          "modern-bert", "t5encoder")  # fmt: skip
# llama-vocab.cpp's tokenizer.ggml.model values for a generative model's vocabulary.
_CHAT_TOKENIZERS = ("llama", "gpt2", "t5", "rwkv", "plamo2", "no_vocab", "none")
_WORDPIECE = "bert"


def _shown(value: object, limit: int = 40) -> str:
    """A value from the file, safe to show: printable, short."""
    text = "".join(c if c.isprintable() else "?" for c in str(value))
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _kind_problem(fields: _Fields, key: str, expected: int, *, item_min: int = 0, array_of: bool = False) -> str | None:
    kind = fields.kinds.get(key)
    if kind is None:
        return None
    if array_of:
        value = fields.get(key)
        if kind != _ARRAY or not isinstance(value, _ArrayLength):
            return (
                f"{key} is stored as {_KIND_NAMES.get(kind, kind)}, but llama.cpp reads an array of "
                f"{_KIND_NAMES[expected]}"
            )
        if value.item_kind != expected:
            return (
                f"{key} is an array of {_KIND_NAMES.get(value.item_kind, value.item_kind)}, but llama.cpp "
                f"reads {_KIND_NAMES[expected]}"
            )
        if int(value) < item_min:
            return f"{key} has {int(value)} values, llama.cpp reads {item_min}"
        return None
    if kind != expected:
        return (
            f"{key} is stored as {_KIND_NAMES.get(kind, kind)}, but llama.cpp reads it as "
            f"{_KIND_NAMES[expected]} (it would abort)"
        )
    return None


def _finite_positive(fields: _Fields, key: str) -> str | None:
    value = _value(fields, key)
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value) or value <= 0:
        return f"{key} is {value!r}: it must be a small positive number"
    return None


def _check_vision(file: Path, fields: _Fields, tensors: dict[str, list[int]], projector: str | None) -> None:
    """Keys, values and (for the projectors we know) tensors, as clip.cpp reads them."""

    def refuse(problem: str) -> NoReturn:
        raise ModelFileError(file, f"the vision projector is malformed: {problem}")

    for key, kind in _CLIP_KEY_KINDS.items():
        problem = _kind_problem(fields, key, kind)
        if problem:
            refuse(problem)
    for key, (kind, minimum) in _CLIP_ARRAY_KINDS.items():
        problem = _kind_problem(fields, key, kind, item_min=minimum, array_of=True)
        if problem:
            refuse(problem)
    pinpoints = fields.get("clip.vision.image_grid_pinpoints")
    if isinstance(pinpoints, _ArrayLength) and int(pinpoints) % 2:
        refuse("clip.vision.image_grid_pinpoints must hold width, height pairs (an odd count is read past its end)")
    for key in _CLIP_REQUIRED:
        if key not in fields:
            refuse(f"it has no {key}")
    if projector is None:
        refuse("it has no clip.projector_type")
    n_embd = _int(fields, "clip.vision.embedding_length") or 0
    n_head = _int(fields, "clip.vision.attention.head_count") or 0
    n_layer = _int(fields, "clip.vision.block_count") or 0
    n_ff = _int(fields, "clip.vision.feed_forward_length") or 0
    image = _int(fields, "clip.vision.image_size") or 0
    patch = _int(fields, "clip.vision.patch_size") or 0
    for key, value in (("clip.vision.embedding_length", n_embd), ("clip.vision.attention.head_count", n_head),
                       ("clip.vision.block_count", n_layer), ("clip.vision.feed_forward_length", n_ff),
                       ("clip.vision.image_size", image), ("clip.vision.patch_size", patch)):  # fmt: skip
        if value <= 0:
            refuse(f"{key} is 0")
    if "clip.vision.attention.head_dim" not in fields and n_embd % n_head:
        refuse(f"the head count ({n_head}) does not divide the width ({n_embd})")
    if patch > image:
        refuse(f"the patch ({patch} px) is larger than the image ({image} px)")
    if n_layer > 1024 or n_embd > 65536 or image > 16384:
        refuse("its sizes are implausibly large (block count, width or image size)")
    problem = _finite_positive(fields, "clip.vision.attention.layer_norm_epsilon")
    if problem:
        refuse(problem)
    if "v.patch_embd.weight" not in tensors:
        refuse("it has no v.patch_embd.weight tensor")
    if projector in _LLAVA_PROJECTORS:
        _check_llava_tensors(fields, tensors, n_embd, n_ff, n_layer, image, patch, refuse)
    if projector == "minicpmv4_6":
        _check_minicpmv46(fields, tensors, n_embd, image, patch, refuse)


_LLAVA_PROJECTORS = ("mlp", "mlp_norm")
# MiniCPM-V 4.6's graph looks up every patch's learned position on SigLIP's 70 x 70 grid (clip.cpp's position
# buckets): a shorter table, or none, is read out of bounds (a ggml assert, or a segfault).
MINICPMV46_POSITIONS = 70 * 70


def _check_minicpmv46(
    fields: _Fields, tensors: dict[str, list[int]], n_embd: int, image: int, patch: int,
    refuse: Callable[[str], NoReturn],
) -> None:  # fmt: skip
    """What clip.cpp's minicpmv4_6 loader and graph assert on (each an abort) or use without a null check."""
    merge = _int(fields, "clip.vision.projector.scale_factor")
    if merge is not None and merge not in (2, 4):
        refuse(f"clip.vision.projector.scale_factor is {merge}: MiniCPM-V 4.6 merges patches 2x2 or 4x4 only")
    # A small frame is encoded at image_size. Merging 4x4 (the ViT merger's 2x2, then the final 2x2) needs a whole
    # number of 4x4 groups of patches there (a reshape assert otherwise); merging 2x2 alone copes with any grid.
    if (merge or 4) == 4 and image % (patch * 4):
        refuse(f"the image size ({image} px) is not a multiple of the patch ({patch} px) times the merge (4), "
               "as MiniCPM-V 4.6's mergers need")  # fmt: skip
    position = tensors.get("v.position_embd.weight")
    if position is None:
        refuse("it has no v.position_embd.weight tensor")
    if len(position) != 2 or position[0] != n_embd:
        refuse(f"v.position_embd.weight has shape {position}, llama.cpp needs [{n_embd}, {MINICPMV46_POSITIONS}]")
    if position[1] < MINICPMV46_POSITIONS:
        refuse(f"the position embedding has {position[1]} positions, MiniCPM-V 4.6 needs {MINICPMV46_POSITIONS}")


def _check_llava_tensors(
    fields: _Fields,
    tensors: dict[str, list[int]],
    n_embd: int,
    n_ff: int,
    n_layer: int,
    image: int,
    patch: int,
    refuse: Callable[[str], NoReturn],
) -> None:
    """clip.cpp's LLaVA graph uses these without a null check; a wrong shape fails a ggml assert (an abort)."""

    def shape(name: str, expected: list[int] | None = None) -> list[int]:
        dims = tensors.get(name)
        if dims is None:
            refuse(f"it has no {name} tensor")
        if expected is not None and dims != expected:
            refuse(f"{name} has shape {dims}, llama.cpp needs {expected}")
        return dims

    shape("v.patch_embd.weight", [patch, patch, 3, n_embd])
    n_patches = (image // patch) ** 2 + (1 if "v.class_embd" in tensors else 0)
    if "v.class_embd" in tensors:
        shape("v.class_embd", [n_embd])
    position = shape("v.position_embd.weight")
    if len(position) != 2 or position[0] != n_embd:
        refuse(f"v.position_embd.weight has shape {position}, llama.cpp needs [{n_embd}, {n_patches}]")
    if position[1] < n_patches:
        refuse(f"the position embedding has {position[1]} positions, the image needs {n_patches}")
    for i in range(n_layer):
        for part in ("attn_q", "attn_k", "attn_v", "attn_out"):
            shape(f"v.blk.{i}.{part}.weight", [n_embd, n_embd])
        shape(f"v.blk.{i}.ffn_up.weight", [n_embd, n_ff])
        shape(f"v.blk.{i}.ffn_down.weight", [n_ff, n_embd])
    first = shape("mm.0.weight")
    if len(first) != 2 or first[0] % n_embd:
        refuse(f"mm.0.weight has shape {first}, its input must be the encoder width {n_embd}")
    hidden = first[1]
    shape("mm.0.bias", [hidden])
    second = shape("mm.2.weight")
    if len(second) != 2 or second[0] != hidden:
        refuse(f"mm.2.weight has shape {second}, its input must be mm.0's output {hidden}")
    shape("mm.2.bias", [second[1]])


def _check_text(file: Path, architecture: str, fields: _Fields, tensors: dict[str, list[int]]) -> None:
    """Keys, values and the vocabulary, as llama-model.cpp and llama-vocab.cpp read them."""

    def refuse(problem: str) -> NoReturn:
        raise ModelFileError(file, f"the text model is malformed: {problem}")

    if architecture in _ENCODER_ARCHITECTURES:
        raise ModelFileError(
            file, f"this is an embedding model ({_shown(architecture)}), not a chat model: it cannot answer"
        )
    arch = architecture
    for key in (f"{arch}.block_count", f"{arch}.embedding_length", f"{arch}.context_length"):
        problem = _kind_problem(fields, key, _U32)
        if problem:
            refuse(problem.replace(" (it would abort)", ""))
    for key in (f"{arch}.attention.layer_norm_rms_epsilon", f"{arch}.attention.layer_norm_epsilon"):
        problem = _kind_problem(fields, key, _F32) or _finite_positive(fields, key)
        if problem:
            refuse(problem.replace(" (it would abort)", ""))
    n_layer = _int(fields, f"{arch}.block_count")
    if n_layer is None:
        refuse(f"it has no {arch}.block_count")
    if not n_layer or n_layer > 4096:
        refuse(f"{arch}.block_count is {n_layer}: a model needs at least one layer")
    n_embd = _int(fields, f"{arch}.embedding_length") or 0
    if n_embd <= 0:
        refuse(f"{arch}.embedding_length is 0")
    # head_count may be one number or one per layer (an array); only the scalar case is checked here.
    n_head = _value(fields, f"{arch}.attention.head_count")
    n_head_kv = _value(fields, f"{arch}.attention.head_count_kv")
    if isinstance(n_head, int) and not isinstance(n_head, bool):
        if n_head <= 0:
            refuse(f"{arch}.attention.head_count is 0")
        if f"{arch}.attention.key_length" not in fields and n_embd % n_head:
            refuse(f"the head count ({n_head}) does not divide the width ({n_embd})")
        if isinstance(n_head_kv, int) and not isinstance(n_head_kv, bool) and n_head_kv > 0 and n_head % n_head_kv:
            refuse(f"the key/value head count ({n_head_kv}) does not divide the head count ({n_head})")
    tokenizer = _value(fields, "tokenizer.ggml.model")
    if "tokenizer.ggml.model" in fields and not isinstance(tokenizer, str):
        refuse("tokenizer.ggml.model is not a string")
    if tokenizer == _WORDPIECE:
        refuse("its tokenizer is 'bert' (WordPiece), which belongs to embedding models, not a chat model's "
               "vocabulary")  # fmt: skip
    if isinstance(tokenizer, str) and tokenizer not in _CHAT_TOKENIZERS:
        refuse(f"its tokenizer {_shown(tokenizer)} is not one llama.cpp knows")
    tokens = fields.get("tokenizer.ggml.tokens")
    if tokenizer not in (None, "no_vocab", "none"):
        if not isinstance(tokens, _ArrayLength) or tokens.item_kind != _STRING or int(tokens) == 0:
            refuse("tokenizer.ggml.tokens is missing or not a list of strings")
        for key, kind in (("tokenizer.ggml.scores", _F32), ("tokenizer.ggml.token_type", _I32)):
            problem = _kind_problem(fields, key, kind, array_of=True)
            if problem:
                refuse(problem)
            other = fields.get(key)
            if isinstance(other, _ArrayLength) and int(other) != int(tokens):
                refuse(f"{key} has {int(other)} entries for {int(tokens)} tokens")
        if tokenizer == "llama" and "tokenizer.ggml.scores" not in fields:
            refuse("a SentencePiece ('llama') vocabulary needs tokenizer.ggml.scores")
        if tokenizer == "gpt2":
            problem = _kind_problem(fields, "tokenizer.ggml.merges", _STRING, array_of=True)
            if problem or "tokenizer.ggml.merges" not in fields:
                refuse(problem or "a BPE ('gpt2') vocabulary needs tokenizer.ggml.merges")
        for key in ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
                    "tokenizer.ggml.padding_token_id"):  # fmt: skip
            problem = _kind_problem(fields, key, _U32)
            if problem:
                refuse(problem.replace(" (it would abort)", ""))
    embedding = tensors.get("token_embd.weight")
    if embedding is not None and (len(embedding) < 2 or embedding[0] != n_embd):
        refuse(f"token_embd.weight has shape {embedding}, the width is {n_embd}")


def text_input_width(fields: dict[str, Any], architecture: str, n_embd: int) -> int:
    """llama_model_n_embd_inp: Qwen3-VL takes the image's deepstack features beside the embedding."""
    deepstack = _int(fields, f"{architecture}.n_deepstack_layers") or 0
    return n_embd * (1 + max(deepstack, 0))
