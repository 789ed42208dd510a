"""The headless `llavacam ask` contract, end to end in a subprocess (as scripts and benchmarks use it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("LLAVACAM_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "app", *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO
    )


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "photo.png"
    image = Image.new("RGB", (64, 48), (200, 30, 30))
    image.paste((20, 20, 220), (10, 10, 40, 30))
    image.save(path)
    return path


def test_json_has_one_object_per_turn_and_follow_up_reuses_the_image(tiny_models, photo):
    result = run_cli(
        "ask",
        "--model",
        str(tiny_models.text),
        "--mmproj",
        str(tiny_models.mmproj),
        "--image",
        str(photo),
        "-q",
        "What is this?",
        "-q",
        "What colour is it?",
        "--max-tokens",
        "12",
        "--temperature",
        "0",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2
    turns = [json.loads(line) for line in lines]
    keys = {
        "turn",
        "question",
        "answer",
        "tokens",
        "image_encode_ms",
        "prompt_tokens",
        "prefill_ms",
        "ttft_ms",
        "decode_tokens",
        "decode_tok_s",
    }
    for number, turn in enumerate(turns, start=1):
        assert keys <= set(turn)
        assert turn["turn"] == number
        assert all(isinstance(t, int) for t in turn["tokens"])
        assert turn["decode_tokens"] == len(turn["tokens"])
    assert turns[0]["question"] == "What is this?"
    assert turns[0]["image_encode_ms"] > 0
    assert turns[1]["image_encode_ms"] == 0
    assert turns[1]["prompt_tokens"] < turns[0]["prompt_tokens"]


def test_greedy_json_is_deterministic_across_runs(tiny_models, photo):
    args = (
        "ask",
        "--model",
        str(tiny_models.text),
        "--mmproj",
        str(tiny_models.mmproj),
        "--image",
        str(photo),
        "-q",
        "What is this?",
        "--max-tokens",
        "10",
        "--temperature",
        "0",
        "--json",
    )
    first, second = run_cli(*args), run_cli(*args)
    assert first.returncode == second.returncode == 0
    assert json.loads(first.stdout)["tokens"] == json.loads(second.stdout)["tokens"]


def test_plain_output_streams_the_answer_text(tiny_models, photo):
    result = run_cli(
        "ask",
        "--model",
        str(tiny_models.text),
        "--mmproj",
        str(tiny_models.mmproj),
        "--image",
        str(photo),
        "-q",
        "What is this?",
        "--max-tokens",
        "10",
        "--temperature",
        "0",
    )
    assert result.returncode == 0, result.stderr
    json_result = run_cli(
        "ask",
        "--model",
        str(tiny_models.text),
        "--mmproj",
        str(tiny_models.mmproj),
        "--image",
        str(photo),
        "-q",
        "What is this?",
        "--max-tokens",
        "10",
        "--temperature",
        "0",
        "--json",
    )
    assert result.stdout == json.loads(json_result.stdout)["answer"] + "\n"


def test_text_only_question_needs_no_image_or_mmproj(tiny_models):
    result = run_cli(
        "ask", "--model", str(tiny_models.text), "-q", "Hello?", "--max-tokens", "5", "--json", "--temperature", "0"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["image_encode_ms"] == 0


def test_python_dash_m_app_and_data_dir_after_the_subcommand(tiny_models, tmp_path):
    result = run_cli(
        "ask", "--data-dir", str(tmp_path), "--model", str(tiny_models.text), "-q", "Hi", "--max-tokens", "3", "--json"
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing-model", "missing.gguf"),
        ("not-an-image", "not an image"),
        ("missing-image", "no such file"),
        ("html-model", "page.gguf"),
        ("swapped-pair", "mmproj"),
        ("no-model", "give a model"),
        ("bad-temperature", "temperature"),
    ],
)
def test_bad_input_exits_nonzero_with_one_clear_line(tiny_models, photo, tmp_path, case, expected):
    text, mmproj = str(tiny_models.text), str(tiny_models.mmproj)
    notes = tmp_path / "notes.png"
    notes.write_text("just some text")
    html = tmp_path / "page.gguf"
    html.write_text("<html><body>Error 404</body></html>")
    args = {
        "missing-model": ["--model", str(tmp_path / "missing.gguf"), "--mmproj", mmproj, "--image", str(photo)],
        "not-an-image": ["--model", text, "--mmproj", mmproj, "--image", str(notes)],
        "missing-image": ["--model", text, "--mmproj", mmproj, "--image", str(tmp_path / "gone.jpg")],
        "html-model": ["--model", str(html), "--mmproj", mmproj, "--image", str(photo)],
        "swapped-pair": ["--model", mmproj, "--mmproj", text, "--image", str(photo)],
        "no-model": ["--image", str(photo)],
        "bad-temperature": ["--model", text, "--temperature", "-1"],
    }[case]
    result = run_cli("ask", *args, "-q", "What is this?", "--max-tokens", "3")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected.lower() in lines[0].lower()
