"""The PyInstaller bundle builds, answers headless on the tiny model, and its window starts and closes cleanly."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.support.bundle import build_bundle

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bundle")
    return build_bundle(root / "dist", root / "work")


def test_bundle_layout(bundle):
    executable = bundle / "LlavaCam"
    assert executable.exists()
    assert os.access(executable, os.X_OK)
    assert (bundle / "llavacam.desktop").exists()
    assert list(bundle.rglob("libllama.so*")), "llama.cpp's shared library is collected"
    assert list(bundle.rglob("libmtmd.so*")), "the multimodal library is collected"
    bundled = sorted(path.name for path in bundle.rglob("*.gguf"))
    assert bundled == ["demo-llama.gguf", "demo-mmproj.gguf"], "weights are never bundled, but the few-MB demo pair"
    videos = [path.name for path in bundle.rglob("sample-video.mp4")]
    assert videos == ["sample-video.mp4"], "the camera's sample video travels with the demo pair"
    validator = shutil.which("desktop-file-validate")
    if validator:
        assert subprocess.run([validator, str(bundle / "llavacam.desktop")]).returncode == 0


def test_bundled_ask_answers_on_the_tiny_model(bundle, tiny_models, tmp_path):
    photo = tmp_path / "photo.png"
    Image.new("RGB", (40, 30), (10, 200, 10)).save(photo)
    result = subprocess.run(
        [str(bundle / "LlavaCam"), "ask", "--model", str(tiny_models.text), "--mmproj", str(tiny_models.mmproj),
         "--image", str(photo), "-q", "What is this?", "--max-tokens", "4", "--json", "--temperature", "0"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["decode_tokens"] >= 1
    assert answer["image_encode_ms"] > 0


def test_bundled_app_is_its_own_probe_child(bundle, tiny_models, tmp_path):
    """In the bundle sys.executable is the app: with --llavacam-probe first it loads, encodes and evaluates a pair
    (app/core/models/probe.py), and a crafted file crashes only that child."""
    from tests.hostile.crafted import DROP, rewrite

    good = subprocess.run([str(bundle / "LlavaCam"), "--llavacam-probe", str(tiny_models.text),
                           str(tiny_models.mmproj)], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert good.returncode == 0, good.stderr
    assert good.stdout.splitlines()[-1] == '{"ok": true}'
    bad = rewrite(tiny_models.mmproj, tmp_path / "no-bias.gguf", tensors={"mm.0.bias": DROP})
    refused = subprocess.run([str(bundle / "LlavaCam"), "ask", "--model", str(tiny_models.text), "--mmproj",
                              str(bad), "-q", "Hi", "--data-dir", str(tmp_path / "data")],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert refused.returncode == 2
    assert refused.stderr.strip() == (f"llavacam: error: {bad}: the vision projector is malformed: "
                                      "it has no mm.0.bias tensor")  # fmt: skip


def test_bundled_window_starts_offscreen_and_closes_cleanly(bundle, tiny_models, tmp_path):
    ready = tmp_path / "ready"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "LLAVACAM_READY_FILE": str(ready)}
    process = subprocess.Popen(
        [str(bundle / "LlavaCam"), "--model", str(tiny_models.text), "--mmproj", str(tiny_models.mmproj),
         "--camera", str(tmp_path / "no-camera.avi"), "--data-dir", str(tmp_path / "data")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 90
    while not ready.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)  # a separate process: a ready file is how it says it is up
    assert ready.exists(), process.stderr.read() if process.poll() is not None else "window never came up"
    process.send_signal(signal.SIGTERM)
    try:
        assert process.wait(timeout=30) == 0, process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
    assert sys.platform.startswith("linux")
