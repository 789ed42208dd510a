"""Model files are checked in pure Python before llama.cpp sees them: every bad case is a clear ModelFileError."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from app.core.errors import ModelFileError
from app.core.models.modelfile import check_pair, inspect_mmproj, inspect_text_model


def test_tiny_pair_passes_and_reports_what_the_engine_needs(tiny_models):
    text, mmproj = check_pair(tiny_models.text, tiny_models.mmproj)
    assert text.architecture == "llama"
    assert text.n_embd == 64
    assert text.chat_template
    assert "<|assistant|>" in text.chat_template
    assert mmproj is not None
    assert mmproj.projector_type == "mlp"
    assert mmproj.output_embd == text.n_embd
    assert mmproj.image_size == 32


def test_model_without_template_reports_none(tiny_models_no_template):
    assert inspect_text_model(tiny_models_no_template.text).chat_template is None


def truncated_copy(source: Path, target: Path, keep: float) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * keep)])
    return target


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp, models: tmp / "absent.gguf", "no such file"),
        (lambda tmp, models: tmp, "folder"),
        (lambda tmp, models: _write(tmp / "empty.gguf", b""), "empty"),
        (lambda tmp, models: _write(tmp / "page.gguf", b"<!DOCTYPE html><html>Quota exceeded</html>"), "web page"),
        (lambda tmp, models: _write(tmp / "random.gguf", bytes(range(256)) * 4), "not a GGUF"),
        (lambda tmp, models: _write(tmp / "v9.gguf", b"GGUF\x09\x00\x00\x00" + b"\x00" * 64), "version 9"),
        (
            lambda tmp, models: _write(tmp / "junk.gguf", b"GGUF\x03\x00\x00\x00" + b"\xff" * 200),
            "damaged or truncated",
        ),
        (lambda tmp, models: truncated_copy(models.text, tmp / "half.gguf", 0.5), "truncated"),
        (lambda tmp, models: truncated_copy(models.text, tmp / "header.gguf", 0.01), "damaged or truncated"),
        (lambda tmp, models: models.mmproj, "vision projector"),
    ],
)
def test_bad_text_model_files(tmp_path, tiny_models, make, message):
    path = make(tmp_path, tiny_models)
    with pytest.raises(ModelFileError, match=message) as info:
        inspect_text_model(path)
    assert str(path) in str(info.value), "the message names the file"


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_text_model_given_as_mmproj(tiny_models):
    with pytest.raises(ModelFileError, match="text model .*not a vision projector"):
        inspect_mmproj(tiny_models.text)


def test_mismatched_pair_names_both_sizes(tiny_models, mismatched_mmproj):
    with pytest.raises(ModelFileError, match="outputs 96-wide .* takes 64: they are not a pair"):
        check_pair(tiny_models.text, mismatched_mmproj)


def test_truncated_mmproj(tmp_path, tiny_models):
    with pytest.raises(ModelFileError, match="truncated"):
        inspect_mmproj(truncated_copy(tiny_models.mmproj, tmp_path / "mmproj-cut.gguf", 0.7))


def test_checked_file_is_not_held_open(tmp_path, tiny_models):
    copy = tmp_path / "copy.gguf"
    copy.write_bytes(tiny_models.text.read_bytes())
    inspect_text_model(copy)
    copy.rename(tmp_path / "renamed.gguf")  # would fail on Windows with a live memory map
    import os

    fds = os.listdir("/proc/self/fd") if Path("/proc/self/fd").exists() else []
    assert not any(os.path.realpath(f"/proc/self/fd/{fd}").endswith("copy.gguf") for fd in fds)


CRASH_PROBE = textwrap.dedent(
    """
    import sys, llama_cpp
    llama_cpp.llama_backend_init()
    llama_cpp.llama_log_set(llama_cpp.llama_log_callback(lambda *a: None), None)
    model = llama_cpp.llama_model_load_from_file(sys.argv[1].encode(), llama_cpp.llama_model_default_params())
    print("loaded" if model else "refused")
    """
)


@pytest.mark.parametrize("keep", [0.02, 0.3, 0.97])
def test_validation_rejects_truncated_files_before_llama_cpp_sees_them(tmp_path, tiny_models, keep):
    """llama.cpp is run on the same file in a child process, so a crash there fails one test, not the run."""
    damaged = truncated_copy(tiny_models.text, tmp_path / f"cut-{keep}.gguf", keep)
    with pytest.raises(ModelFileError, match="truncated"):
        inspect_text_model(damaged)
    child = subprocess.run([sys.executable, "-c", CRASH_PROBE, str(damaged)], capture_output=True, text=True,
                           timeout=120)  # fmt: skip
    # Whatever llama.cpp does with it (refuse, or die by a signal), it never loads as a model.
    assert child.returncode != 0 or child.stdout.strip() == "refused"


def test_engine_refuses_mismatched_pair_in_a_child_process_without_crashing(tiny_models, mismatched_mmproj):
    code = textwrap.dedent(
        f"""
        from app.core.inference.engine import Engine
        from app.core.errors import ModelFileError
        try:
            Engine({str(tiny_models.text)!r}, {str(mismatched_mmproj)!r})
        except ModelFileError as exc:
            print("refused:", exc)
        """
    )
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                           cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    assert child.returncode == 0, child.stderr
    assert "refused:" in child.stdout
    assert "not a pair" in child.stdout


def test_header_reader_agrees_with_gguf_reader(tiny_models):
    """Our fast header reader must find the same tensors, shapes and data extents as gguf's own reader."""
    from gguf import GGUFReader

    from app.core.models.modelfile import _parse

    for path in (tiny_models.text, tiny_models.mmproj):
        fields, tensors, ends = _parse(path)
        reader = GGUFReader(str(path))
        assert tensors == {t.name: [int(x) for x in t.shape] for t in reader.tensors}
        assert ends == [int(t.data_offset) + int(t.n_bytes) for t in reader.tensors]
        assert fields["general.architecture"] == bytes(reader.fields["general.architecture"].parts[-1]).decode()


def test_qwen3vl_projector_wider_than_the_embedding_is_a_pair(tmp_path):
    """Qwen3-VL's deepstack mergers make the projector's output wider than embedding_length; llama.cpp compares it
    with llama_model_n_embd_inp (embedding_length x (1 + deepstack layers)), and so do we."""
    from models.families import write_qwen3vl

    pair = write_qwen3vl(tmp_path)
    text, mmproj = check_pair(pair.text, pair.mmproj)
    assert mmproj is not None
    assert mmproj.projector_type == "qwen3vl_merger"
    assert mmproj.output_embd is not None
    assert mmproj.output_embd > text.n_embd
    assert mmproj.output_embd == text.input_width


def test_every_generated_family_pair_passes_the_checks(tmp_path):
    from models.families import FAMILIES

    for name, family in FAMILIES.items():
        pair = family.write(tmp_path / name, 0)
        check_pair(pair.text, pair.mmproj)


def test_minicpm_v46_merging_2x2_accepts_a_grid_that_4x4_refuses(tmp_path):
    """llama.cpp 0.3.36 encodes a 36 px view of 4 px patches (9 x 9) when the projector merges 2x2 only, and aborts
    when it merges 4x4: the check refuses only the second."""
    import gguf

    from models.families import write_minicpmv46
    from tests.hostile.crafted import rewrite

    pair = write_minicpmv46(tmp_path, 0)
    size = {"clip.vision.image_size": (gguf.GGUFValueType.UINT32, 36)}
    merge_2 = {"clip.vision.projector.scale_factor": (gguf.GGUFValueType.UINT32, 2)}
    two = rewrite(pair.mmproj, tmp_path / "merge-2.gguf", keys={**size, **merge_2})
    four = rewrite(pair.mmproj, tmp_path / "merge-4.gguf", keys=size)
    check_pair(pair.text, two)
    with pytest.raises(ModelFileError, match=r"the image size \(36 px\) is not a multiple of the patch \(4 px\) times"):
        check_pair(pair.text, four)
