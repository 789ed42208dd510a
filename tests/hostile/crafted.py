"""Crafted GGUF files: a copy of a good file with keys changed or removed and tensors removed or replaced.

Written with gguf's own writer, so each file is a well-formed GGUF whose *content* is hostile, as a careless
converter or a malicious download would make it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

DROP = object()  # a key or tensor value that removes it


def rewrite(
    source: Path,
    target: Path,
    *,
    keys: Mapping[str, Any] | None = None,
    tensors: Mapping[str, Any] | None = None,
) -> Path:
    """Copy `source` to `target`. `keys`: name -> DROP or (gguf.GGUFValueType, value[, array item type]);
    `tensors`: name -> DROP or a numpy array (in numpy order: the reverse of GGUF's dimensions)."""
    import gguf

    keys = dict(keys or {})
    tensors = dict(tensors or {})
    reader = gguf.GGUFReader(str(source))
    architecture = str(reader.fields["general.architecture"].contents())
    writer = gguf.GGUFWriter(str(target), architecture)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name in ("general.architecture", "general.alignment"):
            continue
        if name in keys:
            continue
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), kind, sub_type=sub)
    for name, change in keys.items():
        if change is DROP:
            continue
        kind, value, *sub = change
        writer.add_key_value(name, value, kind, sub_type=sub[0] if sub else None)
    for tensor in reader.tensors:
        change = tensors.pop(tensor.name, None)
        if change is DROP:
            continue
        if change is not None:
            writer.add_tensor(tensor.name, np.asarray(change))
            continue
        data = np.array(tensor.data)
        shape = tuple(int(d) for d in reversed(tensor.shape.tolist()))
        writer.add_tensor(tensor.name, data.reshape(shape) if data.dtype != np.uint8 else data,
                          raw_dtype=tensor.tensor_type if data.dtype == np.uint8 else None)  # fmt: skip
    for name, change in tensors.items():
        if change is not DROP:
            writer.add_tensor(name, np.asarray(change))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return target
