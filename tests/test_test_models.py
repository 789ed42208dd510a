"""The generator writes small, valid, deterministic models; interrupted writes never leave a finished name."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from pathlib import Path

from models.make_test_models import CLIP_VIT_L_336, TINYLLAMA_1_1B, write_text_model, write_tiny_pair


def test_tiny_pair_is_small(tiny_models):
    assert tiny_models.text.stat().st_size < 800_000
    assert tiny_models.mmproj.stat().st_size < 200_000


def test_generation_is_deterministic(tmp_path):
    first = write_tiny_pair(tmp_path / "a")
    second = write_tiny_pair(tmp_path / "b")
    assert first.text.read_bytes() == second.text.read_bytes()
    assert first.mmproj.read_bytes() == second.mmproj.read_bytes()


def test_no_partial_file_is_left_under_the_final_name(tmp_path):
    target = tmp_path / "model.gguf"
    write_text_model(target)
    assert target.exists()
    assert not list(tmp_path.glob("*.partial"))


def test_command_line_writes_the_pair(tmp_path):
    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-m", "models.make_test_models", "--out", str(tmp_path)],
                            capture_output=True, text=True, cwd=repo, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    written = [Path(line) for line in result.stdout.split()]
    assert len(written) == 2
    assert all(p.exists() for p in written)


class _ShapeRecorder:
    """Stands in for gguf's writer: keeps each tensor's name and shape, accepts every header call."""

    def __init__(self) -> None:
        self.shapes: dict[str, tuple[int, ...]] = {}

    def add_tensor(self, name, array, raw_dtype=None):
        self.shapes[name] = tuple(array.shape)

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def _real_size_shapes(monkeypatch, write) -> dict[str, tuple[int, ...]]:
    """The tensors the real-size generator writes, from its own code, without drawing 1.1 billion numbers."""
    import contextlib

    import numpy as np

    import models.make_test_models as generator

    recorder = _ShapeRecorder()

    class ShapesOnly(generator.Tensors):
        def matrix(self, name, rows, cols):
            self.writer.add_tensor(name, np.broadcast_to(np.float32(0), (rows, cols)))

    monkeypatch.setattr(generator, "gguf_file", lambda path, arch: contextlib.nullcontext(recorder))
    monkeypatch.setattr(generator, "Tensors", ShapesOnly)
    write(generator)
    return recorder.shapes


def test_real_size_text_model_has_tinyllama_1_1b_shapes(monkeypatch, tmp_path):
    # The benchmark's speed is only as real as these shapes (2048 wide, 22 layers, 32/4 heads, ff 5632, 32k vocab).
    shapes = _real_size_shapes(
        monkeypatch,
        lambda g: g.write_text_model(tmp_path / "t.gguf", dataclasses.replace(g.TINYLLAMA_1_1B, quantize=False)),
    )
    assert shapes["token_embd.weight"] == shapes["output.weight"] == (32000, 2048)
    assert shapes["blk.21.attn_q.weight"] == shapes["blk.21.attn_output.weight"] == (2048, 2048)
    assert shapes["blk.21.attn_k.weight"] == shapes["blk.21.attn_v.weight"] == (256, 2048)  # 4 kv heads of 64
    assert shapes["blk.21.ffn_gate.weight"] == shapes["blk.21.ffn_up.weight"] == (5632, 2048)
    assert shapes["blk.21.ffn_down.weight"] == (2048, 5632)
    assert "blk.22.attn_q.weight" not in shapes
    assert sum(math.prod(shape) for shape in shapes.values()) == 1_100_048_384  # TinyLlama-1.1B's parameter count
    assert TINYLLAMA_1_1B.quantize, "the benchmark's text model is written as Q4_0"


def test_real_size_mmproj_has_llavas_clip_vit_l_336_shapes(monkeypatch, tmp_path):
    shapes = _real_size_shapes(
        monkeypatch, lambda g: g.write_mmproj(tmp_path / "m.gguf", g.CLIP_VIT_L_336, text_n_embd=2048)
    )
    assert shapes["v.patch_embd.weight"] == (1024, 3, 14, 14)
    assert shapes["v.position_embd.weight"] == (577, 1024)  # (336 / 14)^2 patches + the class embedding
    assert shapes["v.blk.22.attn_q.weight"] == (1024, 1024)
    assert shapes["v.blk.22.ffn_up.weight"] == (4096, 1024)
    assert "v.blk.23.ffn_up.weight" not in shapes  # LLaVA's mmproj leaves out CLIP's last block
    assert shapes["mm.0.weight"] == (2048, 1024)
    assert shapes["mm.2.weight"] == (2048, 2048)
    assert CLIP_VIT_L_336.f16, "the benchmark's mmproj is written as F16, as the real one is"
