"""The generator writes small, valid, deterministic models; interrupted writes never leave a finished name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from models.make_test_models import write_text_model, write_tiny_pair


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
