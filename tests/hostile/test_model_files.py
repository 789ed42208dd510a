"""Crafted model files: each is refused by `llavacam ask` with one line naming the file and the problem.

Each case is a copy of the tiny pair with one thing made hostile (tests/hostile/crafted.py). Every one of these
crashed llama.cpp (segfault or abort) or was accepted by `models add` before the checks in
app/core/models/modelfile.py; each runs the real CLI in a subprocess of its own and asserts a clean exit (code 2,
not a signal) with the one line. The last cases skip those checks inside the probe child, so the file meets
llama.cpp itself: the child crashes, the app reports it in one line and lives on (app/core/models/probe.py).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest

from app.core.models.probe import UNCHECKED_ENV, ProbeFailedError, ensure_pair_safe
from tests.hostile.crafted import DROP, rewrite

REPO = Path(__file__).resolve().parents[2]
T = gguf.GGUFValueType


def ask(text: Path, mmproj: Path, data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "ask", "--model", str(text), "--mmproj", str(mmproj), "-q", "Hi",
         "--max-tokens", "2", "--data-dir", str(data)],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip


def assert_one_clear_line(result: subprocess.CompletedProcess[str], file: Path, problem: str) -> None:
    assert result.returncode == 2, f"exit {result.returncode} (a negative code is a crash): {result.stderr[-400:]}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"llavacam: error: {file}: ")
    assert problem in lines[0]
    assert len(lines[0]) < 400


def mmproj_case(tiny_models, tmp_path, problem: str, **changes) -> None:
    bad = rewrite(tiny_models.mmproj, tmp_path / "bad-mmproj.gguf", **changes)
    assert_one_clear_line(ask(tiny_models.text, bad, tmp_path / "data"), bad, problem)


def text_case(tiny_models, tmp_path, problem: str, **changes) -> None:
    bad = rewrite(tiny_models.text, tmp_path / "bad-text.gguf", **changes)
    assert_one_clear_line(ask(bad, tiny_models.mmproj, tmp_path / "data"), bad, problem)


def test_mmproj_without_mm_0_bias(tiny_models, tmp_path):
    mmproj_case(tiny_models, tmp_path, "it has no mm.0.bias tensor", tensors={"mm.0.bias": DROP})


def test_mmproj_without_position_embedding(tiny_models, tmp_path):
    mmproj_case(tiny_models, tmp_path, "it has no v.position_embd.weight tensor",
                tensors={"v.position_embd.weight": DROP})  # fmt: skip


def test_mmproj_without_patch_embedding(tiny_models, tmp_path):
    mmproj_case(tiny_models, tmp_path, "it has no v.patch_embd.weight tensor", tensors={"v.patch_embd.weight": DROP})


def test_mmproj_without_mm_2_weight(tiny_models, tmp_path):
    mmproj_case(tiny_models, tmp_path, "it has no mm.2.weight tensor", tensors={"mm.2.weight": DROP})


def test_mmproj_head_count_zero(tiny_models, tmp_path):
    mmproj_case(tiny_models, tmp_path, "clip.vision.attention.head_count is 0",
                keys={"clip.vision.attention.head_count": (T.UINT32, 0)})  # fmt: skip


def test_mmproj_head_count_not_dividing_the_width(tiny_models, tmp_path):
    mmproj_case(tiny_models, tmp_path, "the head count (3) does not divide the width (32)",
                keys={"clip.vision.attention.head_count": (T.UINT32, 3)})  # fmt: skip


def test_mmproj_image_size_zero(tiny_models, tmp_path):
    mmproj_case(tiny_models, tmp_path, "clip.vision.image_size is 0", keys={"clip.vision.image_size": (T.UINT32, 0)})


def test_mmproj_patch_larger_than_the_image(tiny_models, tmp_path):
    mmproj_case(tiny_models, tmp_path, "the patch (64 px) is larger than the image (32 px)",
                keys={"clip.vision.patch_size": (T.UINT32, 64)})  # fmt: skip


def test_mmproj_position_embedding_too_short(tiny_models, tmp_path):
    mmproj_case(tiny_models, tmp_path, "the position embedding has 10 positions, the image needs 17",
                tensors={"v.position_embd.weight": np.zeros((10, 32), dtype=np.float32)})  # fmt: skip


def test_mmproj_projector_weight_of_the_wrong_shape(tiny_models, tmp_path):
    mmproj_case(tiny_models, tmp_path, "mm.2.weight has shape [40, 64], its input must be mm.0's output 64",
                tensors={"mm.2.weight": np.zeros((64, 40), dtype=np.float32)})  # fmt: skip


def test_mmproj_nan_epsilon(tiny_models, tmp_path):
    mmproj_case(tiny_models, tmp_path, "clip.vision.attention.layer_norm_epsilon is nan",
                keys={"clip.vision.attention.layer_norm_epsilon": (T.FLOAT32, math.nan)})  # fmt: skip


def test_mmproj_patch_size_stored_as_int32(tiny_models, tmp_path):
    mmproj_case(tiny_models, tmp_path, "clip.vision.patch_size is stored as INT32, but llama.cpp reads it as UINT32",
                keys={"clip.vision.patch_size": (T.INT32, 8)})  # fmt: skip


def test_mmproj_image_size_stored_as_uint64(tiny_models, tmp_path):
    mmproj_case(tiny_models, tmp_path, "clip.vision.image_size is stored as UINT64",
                keys={"clip.vision.image_size": (T.UINT64, 32)})  # fmt: skip


def test_mmproj_use_gelu_stored_as_uint8(tiny_models, tmp_path):
    mmproj_case(tiny_models, tmp_path, "clip.use_gelu is stored as UINT8, but llama.cpp reads it as BOOL",
                keys={"clip.use_gelu": (T.UINT8, 1)})  # fmt: skip


def test_mmproj_epsilon_stored_as_float64(tiny_models, tmp_path):
    mmproj_case(tiny_models, tmp_path, "layer_norm_epsilon is stored as FLOAT64, but llama.cpp reads it as FLOAT32",
                keys={"clip.vision.attention.layer_norm_epsilon": (T.FLOAT64, 1e-5)})  # fmt: skip


def test_mmproj_projector_type_stored_as_uint32(tiny_models, tmp_path):
    mmproj_case(tiny_models, tmp_path, "clip.projector_type is stored as UINT32, but llama.cpp reads it as STRING",
                keys={"clip.projector_type": (T.UINT32, 1)})  # fmt: skip


def test_mmproj_image_mean_with_two_values(tiny_models, tmp_path):
    mmproj_case(tiny_models, tmp_path, "clip.vision.image_mean has 2 values, llama.cpp reads 3",
                keys={"clip.vision.image_mean": (T.ARRAY, [0.5, 0.5], T.FLOAT32)})  # fmt: skip


def test_mmproj_grid_pinpoints_of_odd_count(tiny_models, tmp_path):
    mmproj_case(tiny_models, tmp_path, "clip.vision.image_grid_pinpoints must hold width, height pairs",
                keys={"clip.vision.image_grid_pinpoints": (T.ARRAY, [336, 672, 336], T.INT32)})  # fmt: skip


# MiniCPM-V 4.6's projector (minicpmv4_6): each of these aborted or segfaulted llama.cpp 0.3.36 before our checks.


@pytest.fixture(scope="module")
def minicpm_pair(tmp_path_factory):
    from models.families import write_minicpmv46

    return write_minicpmv46(tmp_path_factory.mktemp("minicpmv46"), 0)


def minicpm_case(pair, tmp_path, problem: str, **changes) -> None:
    bad = rewrite(pair.mmproj, tmp_path / "bad-mmproj.gguf", **changes)
    assert_one_clear_line(ask(pair.text, bad, tmp_path / "data"), bad, problem)


def test_minicpm_v46_mmproj_merging_3x3(minicpm_pair, tmp_path):  # GGML_ASSERT(n_merge == 2 || n_merge == 4)
    minicpm_case(minicpm_pair, tmp_path, "clip.vision.projector.scale_factor is 3: MiniCPM-V 4.6 merges patches "
                 "2x2 or 4x4 only", keys={"clip.vision.projector.scale_factor": (T.UINT32, 3)})  # fmt: skip


def test_minicpm_v46_mmproj_without_position_embedding(minicpm_pair, tmp_path):  # a segfault in the graph
    minicpm_case(minicpm_pair, tmp_path, "it has no v.position_embd.weight tensor",
                 tensors={"v.position_embd.weight": DROP})  # fmt: skip


def test_minicpm_v46_mmproj_position_table_short_of_the_70x70_grid(minicpm_pair, tmp_path):  # get_rows assert
    minicpm_case(minicpm_pair, tmp_path, "the position embedding has 64 positions, MiniCPM-V 4.6 needs 4900",
                 tensors={"v.position_embd.weight": np.zeros((64, 32), dtype=np.float32)})  # fmt: skip


def test_minicpm_v46_mmproj_image_size_not_a_multiple_of_the_merged_patch(minicpm_pair, tmp_path):  # reshape assert
    minicpm_case(minicpm_pair, tmp_path, "the image size (36 px) is not a multiple of the patch (4 px) times the "
                 "merge (4)", keys={"clip.vision.image_size": (T.UINT32, 36)})  # fmt: skip


def test_minicpm_v46_mmproj_patch_not_dividing_the_image(minicpm_pair, tmp_path):  # reshape assert
    minicpm_case(minicpm_pair, tmp_path, "the image size (32 px) is not a multiple of the patch (3 px) times the "
                 "merge (4)", keys={"clip.vision.patch_size": (T.UINT32, 3)})  # fmt: skip


def test_text_model_with_zero_blocks(tiny_models, tmp_path):
    text_case(tiny_models, tmp_path, "llama.block_count is 0", keys={"llama.block_count": (T.UINT32, 0)})


def test_text_model_with_a_bert_tokenizer_on_a_sentencepiece_vocabulary(tiny_models, tmp_path):
    text_case(tiny_models, tmp_path, "its tokenizer is 'bert' (WordPiece)",
              keys={"tokenizer.ggml.model": (T.STRING, "bert")})  # fmt: skip


def test_text_model_with_fewer_scores_than_tokens(tiny_models, tmp_path):
    text_case(tiny_models, tmp_path, "tokenizer.ggml.scores has 3 entries for",
              keys={"tokenizer.ggml.scores": (T.ARRAY, [0.0, 0.0, 0.0], T.FLOAT32)})  # fmt: skip


# --- the second defence: what the checks would miss crashes the probe child, not the app ----------------------


def probe_unchecked(monkeypatch, tiny_models, tmp_path, **changes) -> str:
    bad = rewrite(tiny_models.mmproj, tmp_path / "crashing-mmproj.gguf", **changes)
    monkeypatch.setenv(UNCHECKED_ENV, "1")  # only the child reads it
    import app.core.models.probe as probe

    monkeypatch.setattr(probe, "check_pair", lambda text, mmproj: None)  # the parent's checks too
    with pytest.raises(ProbeFailedError) as info:
        ensure_pair_safe(tiny_models.text, bad, data_dir=tmp_path / "data")
    message = str(info.value)
    assert message.startswith(f"{bad}: llama.cpp crashed (SIG")
    assert "\n" not in message
    assert os.getpid() > 0  # still here
    return message


def test_segfaulting_projector_is_one_line_from_the_probe(monkeypatch, tiny_models, tmp_path):
    message = probe_unchecked(monkeypatch, tiny_models, tmp_path, tensors={"mm.0.bias": DROP})
    assert "(SIGSEGV) loading this vision projector" in message


def test_aborting_projector_is_one_line_from_the_probe(monkeypatch, tiny_models, tmp_path):
    message = probe_unchecked(monkeypatch, tiny_models, tmp_path, keys={"clip.vision.patch_size": (T.INT32, 8)})
    assert "(SIGABRT) loading this vision projector" in message


# --- the other front ends: the same line from `serve` and `models add` ------------------------------------------


def test_serve_refuses_a_crafted_projector_with_the_one_line(tiny_models, tmp_path):
    bad = rewrite(tiny_models.mmproj, tmp_path / "bad-mmproj.gguf", tensors={"mm.0.bias": DROP})
    result = subprocess.run(
        [sys.executable, "-m", "app", "serve", "--model", str(tiny_models.text), "--mmproj", str(bad), "--port", "0",
         "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert_one_clear_line(result, bad, "it has no mm.0.bias tensor")


def test_models_add_refuses_a_crafted_text_model_with_the_one_line(tiny_models, tmp_path):
    bad = rewrite(tiny_models.text, tmp_path / "bad-text.gguf", keys={"llama.block_count": (T.UINT32, 0)})
    result = subprocess.run(
        [sys.executable, "-m", "app", "models", "add", "--model", str(bad), "--mmproj", str(tiny_models.mmproj),
         "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert_one_clear_line(result, bad, "llama.block_count is 0")
    assert "bad-text" not in subprocess.run(
        [sys.executable, "-m", "app", "models", "list", "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    ).stdout  # fmt: skip
