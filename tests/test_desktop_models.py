"""The model dialog drives a real download from a 127.0.0.1 server to a loaded model in the window."""

from __future__ import annotations

import pytest

from app.core.models.store import ModelStore
from app.desktop.model_setup import ModelSetupDialog
from app.desktop.settings import Settings
from app.desktop.window import MainWindow
from tests.support.desktop import close_window
from tests.support.http_server import Route, serve_tiny_pair
from tests.test_download import write_catalog


@pytest.fixture
def served(tiny_models, tmp_path):
    server = serve_tiny_pair(tiny_models.text.read_bytes(), tiny_models.mmproj.read_bytes())
    yield server, write_catalog(tmp_path / "catalog.toml", server.url)
    server.stop()


def test_first_run_starts_on_the_demo_and_the_dialog_downloads_a_real_pair(qtbot, served, tmp_path):
    _server, catalog = served
    window = MainWindow(Settings(n_ctx=2048, threads=2), tmp_path / "data", camera_source=str(tmp_path / "none.avi"),
                        catalog=str(catalog))  # fmt: skip
    try:
        qtbot.waitUntil(lambda: window.model_ready, timeout=30000)  # nothing installed: the built-in demo, at once
        assert window.demo_badge.isVisibleTo(window)  # (the window itself is not shown)
        dialog = window.model_dialog()
        dialog.select("tiny")
        assert dialog.download_button.text() == "Download and use"
        progress_seen = []
        dialog.text_bar.valueChanged.connect(progress_seen.append)
        with qtbot.waitSignal(dialog.chosen, timeout=30000):
            dialog.download_button.click()
        assert progress_seen
        assert dialog.mmproj_bar.value() == 1000
        qtbot.waitUntil(lambda: window.model_ready and not window.demo_badge.isVisibleTo(window), timeout=30000)
        assert window.settings.template == "tinyllama"
        assert (tmp_path / "data" / "models" / "tiny" / "tiny.gguf").exists()
    finally:
        close_window(qtbot, window)


def test_download_failure_is_shown_and_nothing_is_installed(qtbot, served, tmp_path):
    server, catalog = served
    server.routes["/mmproj.gguf"] = Route(status=404)
    dialog = ModelSetupDialog(ModelStore(tmp_path / "data", catalog))
    qtbot.addWidget(dialog)
    dialog.select("tiny")
    dialog.download_or_use()
    qtbot.waitUntil(lambda: dialog.job is None, timeout=30000)
    assert "404" in dialog.status.text()
    assert not ModelStore(tmp_path / "data", catalog).installed()


def test_cancel_stops_the_download(qtbot, served, tmp_path):
    server, catalog = served
    server.routes["/tiny.gguf"] = Route(endless=True)  # it can only end by Cancel
    dialog = ModelSetupDialog(ModelStore(tmp_path / "data", catalog))
    qtbot.addWidget(dialog)
    dialog.select("tiny")
    dialog.download_or_use()
    dialog.cancel_download()
    qtbot.waitUntil(lambda: dialog.job is None, timeout=30000)
    assert dialog.status.text() == "Download cancelled. Downloading again resumes where it stopped."
    assert not ModelStore(tmp_path / "data", catalog).installed()


def test_files_on_disk_are_checked_and_used(qtbot, tmp_path, tiny_models, mismatched_mmproj):
    dialog = ModelSetupDialog(ModelStore(tmp_path / "data"))
    qtbot.addWidget(dialog)
    dialog.add_files(str(tiny_models.text), str(mismatched_mmproj))
    assert "not a pair" in dialog.status.text()
    with qtbot.waitSignal(dialog.chosen, timeout=5000) as blocker:
        dialog.add_files(str(tiny_models.text), str(tiny_models.mmproj))
    assert blocker.args[0].text == tiny_models.text
    again = ModelSetupDialog(ModelStore(tmp_path / "data"))
    qtbot.addWidget(again)
    again.select(blocker.args[0].id)
    assert again.download_button.text() == "Use"
    again.delete(blocker.args[0].id)
    assert not ModelStore(tmp_path / "data").installed() or all(
        m.origin == "checkout" for m in ModelStore(tmp_path / "data").installed()
    )


def test_picker_shows_status_memory_recommendation_and_pairs_gone_from_the_catalog(qtbot, tmp_path, tiny_models):
    store = ModelStore(tmp_path / "data")  # the built-in catalog
    store.add_local(tiny_models.text, tiny_models.mmproj, model_id="local-tiny")
    dialog = ModelSetupDialog(store)
    qtbot.addWidget(dialog)
    texts = [dialog.list.item(i).text() for i in range(dialog.list.count())]
    qwen = next(t for t in texts if t.startswith("Qwen3-VL 2B Instruct"))
    assert qwen.splitlines()[1:] == [
        "    ~2.28 GB download · needs ~2.6 GB memory · Apache-2.0",
        "    best answers under 3 GB (previous generation) · not yet downloaded and run by us",
    ]
    assert dialog.machine.text().startswith("This computer: ")
    assert " Recommended here: " in dialog.machine.text()
    assert sum("★ recommended" in t for t in texts) == 1
    assert any("\n    local files · " in t for t in texts)


def test_licence_terms_are_accepted_before_the_download_starts(qtbot, served, tmp_path):
    server, catalog = served
    catalog.write_text(catalog.read_text().replace('licence = "MIT"', 'licence = "MIT"\nlicence_terms = "Be kind."'))
    dialog = ModelSetupDialog(ModelStore(tmp_path / "data", catalog))
    qtbot.addWidget(dialog)
    shown = []
    dialog.accept_terms = lambda name, terms: shown.append((name, terms)) or False  # the user says No
    dialog.select("tiny")
    dialog.download_or_use()
    assert shown == [("Tiny test pair", "Be kind.")]
    assert dialog.status.text() == "Tiny test pair: not downloaded (licence terms not accepted)."
    assert dialog.job is None
    assert server.requests == []
