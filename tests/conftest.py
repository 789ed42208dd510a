"""Session-wide fixtures: tiny real GGUF models (generated in well under a second) and Qt set to offscreen."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from models.make_test_models import ModelPair, write_mmproj, write_tiny_pair  # noqa: E402

pytest_plugins = ["tests.support.desktop", "tests.support.peer_server"]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> ModelPair:
    """A tiny LLaVA pair: llama text model with TinyLlama's chat template + CLIP "mlp" mmproj."""
    return write_tiny_pair(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def trained_models() -> ModelPair:
    """The committed demo pair (app/demo): it really answers questions about one coloured shape (see
    models/demo_scenes.py for its world and exact answers). Read-only: copy it before changing anything."""
    from app.core.resources import demo_model_files

    text, mmproj = demo_model_files()
    return ModelPair(text, mmproj)


@pytest.fixture(scope="session")
def tiny_models_no_template(tmp_path_factory: pytest.TempPathFactory) -> ModelPair:
    """The same pair without tokenizer.chat_template, for the built-in template path."""
    return write_tiny_pair(tmp_path_factory.mktemp("tiny-models-no-template"), chat_template=False)


@pytest.fixture(scope="session")
def mismatched_mmproj(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A projector whose output (96) does not fit the tiny text model's embeddings (64)."""
    return write_mmproj(tmp_path_factory.mktemp("mismatched") / "mmproj-96.gguf", text_n_embd=96)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Core tests first, Qt tests after: a core failure shows up before any window is opened."""
    items.sort(key=lambda item: "test_desktop_" in item.nodeid or "test_bench_quick" in item.nodeid)



def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """`hostile inputs: H/N handled`: each test under tests/hostile/ is one case, handled when its call passed
    (a skip, a setup error or a failure is not handled; tests/hostile/README.md)."""
    handled: dict[str, bool] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            nodeid = getattr(report, "nodeid", "")
            if nodeid.startswith("tests/hostile/") and getattr(report, "when", None) in {"setup", "call"}:
                handled[nodeid] = handled.get(nodeid, False) or (report.when == "call" and report.passed)
    if handled:
        terminalreporter.write_line(f"hostile inputs: {sum(handled.values())}/{len(handled)} handled")
