"""The notice area: notices queue by kind, clear when their cause is gone, carry one action, and say nothing about
libraries or errno codes; the window shows its problems there and names its status line for screen readers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QAccessible
from PySide6.QtWidgets import QVBoxLayout, QWidget

from app.desktop.notices import NoticeArea, user_text
from app.desktop.window import MainWindow
from tests.support.desktop import ask, wait_for_frame


@pytest.fixture
def area(qtbot) -> Iterator[NoticeArea]:
    host = QWidget()  # as in the window: the area shows itself only when it has a notice
    notices = NoticeArea()
    QVBoxLayout(host).addWidget(notices)
    qtbot.addWidget(host)
    host.show()
    qtbot.waitExposed(host)
    yield notices
    host.close()


def test_notices_queue_by_kind_and_clear_when_their_cause_is_gone(area):
    assert not area.isVisible()
    area.show_notice("camera", "No camera found: plug one in or choose another in Settings.")
    area.show_notice("model", "The model did not load: choose other files in Settings.")
    assert area.isVisible()
    assert area.text() == "The model did not load: choose other files in Settings."  # the newest shows
    assert (area.more_label.text(), area.more_label.isVisible()) == ("+1 more", True)
    assert [n.kind for n in area.notices] == ["model", "camera"]
    area.clear("model")  # the model loaded
    assert area.text() == "No camera found: plug one in or choose another in Settings."
    assert not area.more_label.isVisible()
    area.clear("history")  # nothing of that kind: nothing changes
    assert area.text() == "No camera found: plug one in or choose another in Settings."
    area.clear("camera")  # the camera is back
    assert (area.text(), area.isVisible(), area.notices) == ("", False, [])


def test_a_newer_notice_of_the_same_kind_replaces_the_older(area):
    area.show_notice("info", "That file is not an image: open a PNG or JPEG.")
    area.show_notice("camera", "No camera found: plug one in.")
    area.show_notice("info", "Nothing to use from the clipboard: it holds no image.")
    assert [(n.kind, n.message) for n in area.notices] == [
        ("info", "Nothing to use from the clipboard: it holds no image."),
        ("camera", "No camera found: plug one in."),
    ]


def test_dismiss_shows_the_next_notice(qtbot, area):
    area.show_notice("camera", "No camera found: plug one in.")
    area.show_notice("history", "The chat could not be saved: the disk is full.")
    qtbot.mouseClick(area.dismiss_button, Qt.MouseButton.LeftButton)
    assert area.text() == "No camera found: plug one in."
    area.dismiss()
    assert not area.isVisible()


def test_a_notice_has_one_action_button_when_given(qtbot, area):
    pressed: list[str] = []
    area.show_notice("engine", "The server does not answer: check it is running, or answer here.",
                     action="Use this computer", on_action=lambda: pressed.append("switch"))  # fmt: skip
    assert (area.action_button.text(), area.action_button.isVisible()) == ("Use this computer", True)
    with qtbot.waitSignal(area.action_triggered, timeout=1000) as triggered:
        area.action_button.click()
    assert pressed == ["switch"]
    assert triggered.args == ["engine"]
    area.show_notice("camera", "No camera found: plug one in.")
    assert not area.action_button.isVisible()  # the camera notice has no action
    area.clear("camera")
    assert area.action_button.text() == "Use this computer"  # the engine notice is back with its button


@pytest.mark.parametrize(("raw", "shown"), [
    ("Could not open the image: [Errno 2] No such file or directory: '/tmp/x.png'",
     "Could not open the image: No such file or directory: '/tmp/x.png'"),
    ("Could not open the image: cannot identify image file '/tmp/a.txt' (PIL.UnidentifiedImageError)",
     "Could not open the image: cannot identify image file '/tmp/a.txt'"),
    ("Pillow could not decode the file: open a PNG or JPEG instead.",
     "The image reader could not decode the file: open a PNG or JPEG instead."),
    ("The chat could not be saved: sqlite3.OperationalError: database is locked",
     "The chat could not be saved: database is locked"),
    ("The chat could not be saved: database or disk is full (errno 28)",
     "The chat could not be saved: database or disk is full"),
    ("OSError: [WinError 5] Access is denied", "Access is denied"),
    ("Connection failed: httpx.ConnectError: [Errno 111] Connection refused", "Connection failed: Connection refused"),
    ("llama_cpp could not load the model: choose other files in Settings.",
     "The model engine could not load the model: choose other files in Settings."),
    ("On llama-cpp-python's server: start it with --clip_model_path.",  # a server the user runs is named
     "On llama-cpp-python's server: start it with --clip_model_path."),
    ("The new model files were not used: /m/bad.gguf: not a GGUF file. tiny is still loaded.",
     "The new model files were not used: /m/bad.gguf: not a GGUF file. tiny is still loaded."),
    ("Camera \x1b[31m37 does not exist", "Camera \\x1b[31m37 does not exist"),
])  # fmt: skip
def test_a_notice_never_names_a_library_or_an_errno_code(area, raw, shown):
    assert user_text(raw) == shown
    area.show_notice("info", raw)
    assert area.text() == shown
    assert area.message_label.text() == shown


def test_a_notice_is_named_for_screen_readers_and_its_text_stays_readable(area):
    area.show_notice("camera", "No camera found: plug one in.")
    interface = QAccessible.queryAccessibleInterface(area.message_label)
    assert interface.text(QAccessible.Text.Name) == "Notice"
    assert interface.text(QAccessible.Text.Description) == "No camera found: plug one in."


# --- in the window ------------------------------------------------------------------------------------------------


def test_the_window_queues_its_problems_with_an_open_settings_button(
    qtbot, monkeypatch, make_window, settings, tmp_path
):
    opened: list[bool] = []
    monkeypatch.setattr(MainWindow, "open_settings", lambda self: opened.append(True))
    page = tmp_path / "download.gguf"
    page.write_text("<html><body>Too many requests</body></html>")
    window = make_window(replace(settings, model_path=str(page)), camera=str(tmp_path / "none.avi"), wait_model=False)
    qtbot.waitUntil(lambda: {n.kind for n in window.notice.notices} >= {"model", "camera"}, timeout=15000)
    failed = next(n for n in window.notice.notices if n.kind == "model")
    assert "download.gguf" in failed.message
    assert failed.action == "Open Settings"
    window.prompt_input.setPlainText("Hello?")
    window.send()  # no model: the notice of that kind says so again, with the way to fix it
    model = next(n for n in window.notice.notices if n.kind == "model")
    assert model.message == "The model is not loaded yet: choose one in Settings or wait for it to load."
    assert model.action == "Open Settings"
    assert [n.kind for n in window.notice.notices].count("model") == 1
    window.notice.clear("camera")
    assert window.notice.text() == model.message
    assert window.notice.action_button.isVisible()
    window.notice.action_button.click()
    assert opened == [True]


def test_the_status_line_is_named_and_its_text_readable(qtbot, make_window, settings):
    window = make_window(settings)
    wait_for_frame(qtbot, window)
    ask(qtbot, window, "What is this?")
    status = QAccessible.queryAccessibleInterface(window.status_label)
    assert status.text(QAccessible.Text.Name) == "Status"
    assert status.text(QAccessible.Text.Description) == window.status_label.text() == "Ready"
