"""The Settings dialog: grouped, a tooltip on every field, what it saves (settings.json and the 0600 token file), and
the server's models listed off the GUI thread."""

from __future__ import annotations

import json
import stat
import threading

import pytest
from PySide6.QtWidgets import QTabWidget

from app.desktop.settings import Settings, load_settings, save_settings
from app.desktop.settings_dialog import GROUPS, SettingsDialog
from tests.support.openai_stub import TOKEN, openai_stub
from tests.support.uvicorn_server import RunningServer


@pytest.fixture
def dialog(qtbot, tmp_path):
    def make(settings: Settings | None = None) -> SettingsDialog:
        made = SettingsDialog(settings or Settings(), data_dir=tmp_path)
        qtbot.addWidget(made)
        return made

    return make


def test_settings_are_grouped_and_every_field_says_what_it_does(dialog):
    shown = dialog()
    tabs = shown.findChild(QTabWidget, "settingsGroups")
    assert [tabs.tabText(i) for i in range(tabs.count())] == ["Camera", "Model", "Engine", "Answers", "Watch",
                                                              "Appearance"]  # fmt: skip
    assert list(GROUPS) == [tabs.tabText(i) for i in range(tabs.count())]
    fields = shown.fields()
    names = sorted(f.objectName() for f in fields if f.objectName())
    assert names == sorted([
        "cameraSource", "modelPath", "mmprojPath", "templateBox", "engineLocal", "engineServer", "threads",
        "gpuLayers", "contextSize", "serverUrl", "serverToken", "serverModel", "refreshServerModels", "serverCaFile",
        "serverFingerprint", "systemPrompt", "temperature", "topP", "maxTokens", "seed", "watchSound",
        "watchStoreFrames", "watchMaxFrames", "themeBox"])  # fmt: skip
    untipped = [f.objectName() or f.accessibleName() or type(f).__name__ for f in fields if not f.toolTip().strip()]
    assert untipped == []


def test_what_the_dialog_saves(dialog, tmp_path):
    shown = dialog(Settings(model_path="/m/text.gguf"))
    shown.camera_edit.setText(" 1 ")
    shown.server_choice.setChecked(True)
    shown.server_url.setText("https://gpu-box:8443")
    shown.server_token.setText("  sek-99 ")
    shown.server_model.setCurrentText("llava-big")
    shown.server_fingerprint.setText("AB:CD")
    shown.watch_sound.setChecked(False)
    shown.watch_store_frames.setChecked(False)
    shown.theme_box.setCurrentIndex(2)
    shown.accept()
    save_settings(tmp_path, shown.result_settings())  # what the window does with the result
    saved = json.loads((tmp_path / "settings.json").read_text(encoding="utf-8"))
    assert {k: saved[k] for k in ("camera", "model_path", "engine", "server_url", "server_model", "server_ca_file",
                                  "server_fingerprint", "watch_sound", "watch_store_frames", "watch_max_frames",
                                  "theme")} == {
        "camera": "1", "model_path": "/m/text.gguf", "engine": "server", "server_url": "https://gpu-box:8443",
        "server_model": "llava-big", "server_ca_file": "", "server_fingerprint": "AB:CD", "watch_sound": False,
        "watch_store_frames": False, "watch_max_frames": 200, "theme": "dark",
    }  # fmt: skip
    assert load_settings(tmp_path)[0] == shown.result_settings()
    token_file = tmp_path / "server-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600  # tests run as root: the mode is the protection
    assert token_file.read_text(encoding="utf-8") == "sek-99"
    assert "sek-99" not in (tmp_path / "settings.json").read_text(encoding="utf-8")
    assert dialog().server_token.text() == "sek-99"  # shown again (masked) the next time


def test_the_engine_choice_enables_its_own_fields(dialog):
    shown = dialog()
    assert (shown.local_choice.isChecked(), shown.threads.isEnabled(), shown.server_url.isEnabled()) == (
        True,
        True,
        False,
    )
    shown.server_choice.setChecked(True)
    assert (shown.threads.isEnabled(), shown.server_url.isEnabled(), shown.refresh_models.isEnabled()) == (
        False,
        True,
        True,
    )
    assert shown.watch_max_frames.isEnabled()  # frames are kept by default, so their cap applies
    shown.watch_store_frames.setChecked(False)
    assert not shown.watch_max_frames.isEnabled()


def test_refresh_lists_the_servers_models_without_blocking_the_gui_thread(qtbot, dialog):
    hold = threading.Event()
    running = RunningServer(openai_stub(hold))
    try:
        shown = dialog(Settings(engine="server", server_url=running.url, server_model="words-only"))
        shown.server_token.setText(TOKEN)
        with qtbot.waitSignal(shown.models_listed, timeout=20000) as listed:
            shown.refresh_models.click()
            # The click returned while the server still holds its answer: the listing is not on the GUI thread.
            assert (shown.listing, shown.refresh_models.isEnabled()) == (True, False)
            assert shown.server_status.text() == f"Asking {running.url} for its models…"
            hold.set()
        assert listed.args == [["llava-big", "words-only"], None]
        assert [shown.server_model.itemText(i) for i in range(shown.server_model.count())] == [
            "llava-big",
            "words-only",
        ]
        assert shown.server_model.currentText() == "words-only"  # the chosen one is kept
        assert shown.server_status.text() == "The server serves 2 models."
        qtbot.waitUntil(lambda: not shown.listing, timeout=5000)
    finally:
        hold.set()
        running.stop()


def test_a_wrong_token_on_refresh_says_what_to_do(qtbot, dialog):
    running = RunningServer(openai_stub())
    try:
        shown = dialog(Settings(engine="server", server_url=running.url))
        shown.server_token.setText("wrong")
        with qtbot.waitSignal(shown.models_listed, timeout=20000) as listed:
            shown.refresh_models.click()
        message = (f"127.0.0.1:{running.port} refused the token (Invalid API key): give the token the server was "
                   "started with. To go on: enter the token the server was started with in Settings → Engine, or "
                   "switch back to This computer there.")  # fmt: skip
        assert listed.args == [None, message]
        assert shown.server_status.text() == message
        qtbot.waitUntil(lambda: not shown.listing, timeout=5000)
    finally:
        running.stop()


def test_a_token_file_others_can_read_is_not_used_and_said(dialog, tmp_path):
    path = tmp_path / "server-token"
    path.write_text("leaky")
    path.chmod(0o644)
    shown = dialog()
    assert shown.server_token.text() == ""
    assert shown.server_status.text() == (
        f"The stored token was not used: {path} can be read by other users (mode "
        f"644): run `chmod 600 {path}` or delete it and enter the token again"
    )


def test_the_windows_watch_follows_the_watch_settings(qtbot, make_window, settings):
    """Watch settings reach the window's watch: no frames kept in the history; the sound with its notifications."""
    from dataclasses import replace

    from tests.support.desktop import close_window, wait_for_frame

    window = make_window(replace(settings, watch_store_frames=False, watch_sound=True))
    wait_for_frame(qtbot, window)
    window.start_watch("What is this?")
    panel = window.watch_panel
    qtbot.waitUntil(lambda: panel.timeline.count() >= 1, timeout=30000)
    assert panel.sound is True  # a panel attached without the setting plays none
    [chat] = [c for c in window.history.list_chats() if c.title == "Watch: What is this?"]
    qtbot.waitUntil(lambda: len(window.history.get_turns(chat.id)) >= 1, timeout=10000)
    [first, *_] = window.history.get_turns(chat.id)
    assert first.question.endswith("] What is this?")
    assert first.image_path is None  # the answer is kept, its frame is not
    assert list(window.history.images_dir.glob("*.jpg")) == []
    close_window(qtbot, window)
    assert not panel.runner.running


def test_the_window_answers_through_a_server_and_says_where_frames_go(qtbot, make_window, settings, tmp_path):
    from dataclasses import replace

    from app.desktop.settings import save_server_token
    from tests.support.desktop import ask

    running = RunningServer(openai_stub())
    try:
        save_server_token(tmp_path, TOKEN)  # the window's data dir
        window = make_window(replace(settings, engine="server", server_url=running.url))
        assert window.status_label.text() == f"Ready: frames go to 127.0.0.1:{running.port} (llava-big)"
        assert window.engine is None  # this computer's model is not loaded meanwhile
        ask(qtbot, window, "What colour is it?")
        assert [(t.question, t.answer.text) for t in window.session.turns] == [("What colour is it?", "It is red.")]
        assert window.session.model_id == f"llava-big on 127.0.0.1:{running.port}"
    finally:
        running.stop()


def test_a_server_that_refuses_is_a_notice_with_one_click_back_to_this_computer(qtbot, make_window, settings,
                                                                                tmp_path):  # fmt: skip
    from dataclasses import replace

    from app.desktop.settings import load_settings, save_server_token

    running = RunningServer(openai_stub())
    try:
        save_server_token(tmp_path, "wrong")
        window = make_window(replace(settings, engine="server", server_url=running.url), wait_model=False)
        qtbot.waitUntil(lambda: window.notice.isVisible() and "refused" in window.notice.text(), timeout=20000)
        assert window.notice.text() == (
            f"127.0.0.1:{running.port} refused the token (Invalid API key): give the token the server was started "
            "with. To go on: enter the token the server was started with in Settings → Engine, or switch back to "
            "This computer there.")  # fmt: skip
        assert (window.model_ready, window.engine) == (False, None)  # never a silent switch to this computer
        assert window.status_label.text() == "No engine: the server cannot answer"
        assert window.notice.action_button.text() == "Use this computer"
        window.notice.action_button.click()
        qtbot.waitUntil(lambda: window.model_ready, timeout=30000)
        assert window.engine is not None
        qtbot.waitUntil(lambda: load_settings(tmp_path)[0].engine == "local", timeout=10000)
    finally:
        running.stop()
