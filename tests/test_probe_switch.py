"""The probe remembers pairs known good; a model switch probes the new pair first and keeps or restores the old."""

from __future__ import annotations

import os

from app.core.inference.engine import EngineConfig
from app.core.inference.sampling import SamplingSettings
from app.core.models.probe import VERDICTS, ensure_pair_safe, probe_command
from app.core.models.switch import switch_engine
from tests.hostile.crafted import DROP, rewrite


def test_a_pair_is_probed_once_then_known_good_until_a_file_changes(tiny_models, tmp_path):
    data = tmp_path / "data"
    first = ensure_pair_safe(tiny_models.text, tiny_models.mmproj, data_dir=data)
    assert first.cached is False
    assert (data / VERDICTS).exists()
    assert ensure_pair_safe(tiny_models.text, tiny_models.mmproj, data_dir=data).cached is True
    copy = tmp_path / "copy.gguf"
    copy.write_bytes(tiny_models.mmproj.read_bytes())
    assert ensure_pair_safe(tiny_models.text, copy, data_dir=data).cached is False
    stat = copy.stat()
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # same bytes, touched: probed again
    assert ensure_pair_safe(tiny_models.text, copy, data_dir=data).cached is False
    assert ensure_pair_safe(tiny_models.text, copy, data_dir=data, force=True).cached is False


def test_the_frozen_app_probes_through_its_own_executable(monkeypatch, tiny_models):
    import sys

    monkeypatch.setattr(sys, "frozen", True, raising=False)
    command = probe_command(tiny_models.text, tiny_models.mmproj)
    assert command == [sys.executable, "--llavacam-probe", str(tiny_models.text), str(tiny_models.mmproj)]


def answer(engine) -> str:
    return engine.ask("Hi", None, SamplingSettings(temperature=0.0, max_tokens=3)).wait() and "answered"


def test_switch_to_a_refused_pair_keeps_the_old_model_loaded(tiny_models, tmp_path):
    from app.core.inference.engine import Engine

    bad = rewrite(tiny_models.mmproj, tmp_path / "no-bias.gguf", tensors={"mm.0.bias": DROP})
    old = Engine(tiny_models.text, tiny_models.mmproj, EngineConfig(n_ctx=512))
    try:
        result = switch_engine(old, tiny_models.text, bad, EngineConfig(n_ctx=512), data_dir=tmp_path / "data")
        assert result.switched is False
        assert result.engine is old
        assert result.error == f"{bad}: the vision projector is malformed: it has no mm.0.bias tensor"
        assert answer(old) == "answered"  # still loaded, still answering
    finally:
        old.close()


def test_switch_to_a_good_pair_replaces_the_old_one(tiny_models, tiny_models_no_template, tmp_path):
    from app.core.inference.engine import Engine

    old = Engine(tiny_models.text, tiny_models.mmproj, EngineConfig(n_ctx=512))
    announced: list[str] = []
    result = switch_engine(old, tiny_models_no_template.text, tiny_models_no_template.mmproj,
                           EngineConfig(n_ctx=512), data_dir=tmp_path / "data",
                           probe_starting=lambda: announced.append("probe"))  # fmt: skip
    try:
        assert announced == ["probe"]  # a new pair: its test load in a child was announced
        assert result.switched is True
        assert result.error is None
        assert result.engine is not None
        assert result.engine is not old
        assert result.engine.info.text_path == tiny_models_no_template.text
        assert old._closed is True  # the old one was unloaded before the new one loaded
    finally:
        if result.engine is not None:
            result.engine.close()


def test_switch_reloads_the_old_pair_when_the_new_one_fails_to_load(tiny_models, tmp_path):
    from app.core.inference.engine import Engine

    bad = rewrite(tiny_models.mmproj, tmp_path / "no-bias.gguf", tensors={"mm.0.bias": DROP})
    old = Engine(tiny_models.text, tiny_models.mmproj, EngineConfig(n_ctx=512))
    # A probe that passes (as if the failure showed only in this process, e.g. out of memory).
    result = switch_engine(old, tiny_models.text, bad, EngineConfig(n_ctx=512), probe=lambda *a, **k: None)
    try:
        assert result.switched is False
        assert result.old_restored is True
        assert result.error is not None
        assert result.error.endswith("it has no mm.0.bias tensor")
        assert result.engine is not None
        assert result.engine.info.mmproj_path == tiny_models.mmproj
        assert answer(result.engine) == "answered"
    finally:
        if result.engine is not None:
            result.engine.close()


def test_a_load_whose_progress_says_stop_is_abandoned_by_llama_cpp(tiny_models):
    import pytest

    from app.core.errors import LoadCancelled
    from app.core.inference.engine import Engine

    seen: list[float] = []

    def stop_at_once(fraction: float) -> bool:
        seen.append(fraction)
        return False

    with pytest.raises(LoadCancelled, match="the load was cancelled"):
        Engine(tiny_models.text, tiny_models.mmproj, EngineConfig(n_ctx=512), load_progress=stop_at_once)
    assert seen, "llama.cpp asked the progress callback"
    assert max(seen) < 1.0, "it stopped before the end"


def test_a_cancelled_test_load_kills_its_child_and_switches_to_nothing(tiny_models, tmp_path, monkeypatch):
    import subprocess
    import sys
    import threading
    import time

    import pytest

    from app.core.errors import LoadCancelled
    from app.core.models import probe

    started: list[subprocess.Popen] = []
    real_popen = subprocess.Popen

    def remembered(*args, **kwargs):
        child = real_popen(*args, **kwargs)
        started.append(child)
        return child

    monkeypatch.setattr(probe, "probe_command", lambda *_a: [sys.executable, "-c", "import time; time.sleep(60)"])
    monkeypatch.setattr(probe.subprocess, "Popen", remembered)
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    began = time.monotonic()
    with pytest.raises(LoadCancelled):
        switch_engine(None, tiny_models.text, tiny_models.mmproj, EngineConfig(n_ctx=512), data_dir=tmp_path,
                      cancelled=cancel.is_set)  # fmt: skip
    assert time.monotonic() - began < 2.0
    assert started, "the test load started a child"
    assert started[0].poll() is not None, "the test-load child was killed"
    assert not (tmp_path / VERDICTS).exists(), "a cancelled probe is no verdict"
