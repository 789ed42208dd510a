"""The window, offscreen, with the real tiny model and a generated video as the camera."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QMimeData, Qt, QTimer, QUrl
from PySide6.QtGui import QImage

from app.desktop.settings import Settings, load_settings
from tests.support.desktop import ask, wait_for_frame

REPO = Path(__file__).resolve().parents[1]


def test_controls_have_names_and_focus_starts_in_the_prompt(make_window, settings):
    window = make_window(settings)
    for name in ("cameraView", "captureButton", "promptInput", "sendButton", "stopButton", "chatView",
                 "newChatButton"):  # fmt: skip
        widget = window.findChild(object, name)
        assert widget is not None, name
        assert widget.accessibleName(), f"{name} has no accessible name"
    assert window.focusWidget() is window.prompt_input
    assert window.windowTitle() == "LlavaCam"


def test_asking_about_a_pinned_frame_streams_an_answer_bubble(qtbot, make_window, settings):
    window = make_window(settings)
    wait_for_frame(qtbot, window)
    window.capture_button.click()
    assert window.pinned is not None
    qtbot.waitUntil(lambda: window.pinned_ready, timeout=30000)
    assert "ready" in window.pinned_badge.text()
    pieces: list[str] = []
    window.binding.answer_piece.connect(pieces.append)
    stats = ask(qtbot, window, "What is this?")
    user, answer = window.chat_view.bubbles
    assert user.property("role") == "user"
    assert user.text == "What is this?"
    assert user.findChild(object, "bubbleThumbnail") is not None
    assert answer.property("role") == "assistant"
    assert len(pieces) > 1
    assert answer.text == "".join(pieces)
    assert stats.image_encode_ms == 0, "the frame was encoded while the question was typed"
    assert "first token" in answer.timing_label.text()
    assert window.windowTitle() == "LlavaCam — What is this?"


def test_sending_without_a_pinned_frame_pins_the_live_one(qtbot, make_window, settings):
    window = make_window(settings)
    wait_for_frame(qtbot, window)
    ask(qtbot, window, "What do you see?")
    assert window.pinned is not None
    assert window.session.asked_about_pinned, "the live frame at Send is the one the conversation is about"


def test_follow_up_shows_image_cached(qtbot, make_window, settings):
    window = make_window(settings)
    wait_for_frame(qtbot, window)
    ask(qtbot, window, "What is this?")
    stats = ask(qtbot, window, "What colour is it?")
    assert stats.image_cached
    assert "image cached" in window.chat_view.bubbles[-1].timing_label.text()


def test_stop_keeps_the_partial_answer_marked_stopped(qtbot, make_window, settings):
    window = make_window(replace(settings, temperature=0.8, seed=11, max_tokens=400))
    wait_for_frame(qtbot, window)
    window.prompt_input.setPlainText("Tell me everything.")
    received: list[str] = []
    window.binding.answer_piece.connect(received.append)
    with qtbot.waitSignal(window.binding.answer_piece, timeout=30000):
        window.send_button.click()
    assert window.stop_button.isEnabled()
    with qtbot.waitSignal(window.turn_finished, timeout=30000) as blocker:
        window.stop_button.click()
    assert blocker.args[1].finish_reason == "cancelled"
    answer = window.chat_view.bubbles[-1]
    assert answer.stopped
    assert received, "a token had arrived before Stop"
    assert answer.text == "".join(received)  # the partial answer, not a placeholder
    assert "stopped" in answer.timing_label.text()
    assert window.send_button.isEnabled()


def test_sending_while_an_answer_streams_is_refused(qtbot, make_window, settings):
    window = make_window(replace(settings, temperature=0.8, seed=2, max_tokens=200))
    wait_for_frame(qtbot, window)
    window.prompt_input.setPlainText("First question")
    with qtbot.waitSignal(window.binding.answer_piece, timeout=30000):
        window.send_button.click()
    window.prompt_input.setPlainText("Second question")
    window.send()
    assert "still coming" in window.status_label.text()
    assert [b.role for b in window.chat_view.bubbles] == ["user", "assistant"]
    with qtbot.waitSignal(window.turn_finished, timeout=30000):
        window.stop()


def test_new_chat_clears_the_conversation(qtbot, make_window, settings):
    window = make_window(settings)
    wait_for_frame(qtbot, window)
    ask(qtbot, window, "What is this?")
    window.new_chat_button.click()
    assert window.chat_view.bubbles == []
    assert window.session.turns == []
    assert not window.session.asked_about_pinned, "a new chat asks about the frame again"
    stats = ask(qtbot, window, "And now?")
    assert not stats.image_cached or stats.image_encode_ms == 0


def test_drop_and_paste_pin_images_and_non_images_get_a_message(qtbot, make_window, settings, tmp_path):
    window = make_window(settings)
    image = QImage(40, 30, QImage.Format.Format_RGB888)
    image.fill(0x3366CC)
    mime = QMimeData()
    mime.setImageData(image)
    assert window.accept_mime(mime, source="clipboard")
    assert window.pinned is not None
    assert (window.pinned.width, window.pinned.height) == (40, 30)

    photo = tmp_path / "photo.png"
    image.save(str(photo))
    dropped = QMimeData()
    dropped.setUrls([QUrl.fromLocalFile(str(photo))])
    window.unpin()
    assert window.accept_mime(dropped, source="drop")
    qtbot.waitUntil(lambda: window.pinned is not None, timeout=10000)

    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    bad = QMimeData()
    bad.setUrls([QUrl.fromLocalFile(str(notes))])
    window.accept_mime(bad, source="drop")
    qtbot.waitUntil(lambda: window.notice.isVisible() and "not an image" in window.notice.text(), timeout=10000)

    text_only = QMimeData()
    text_only.setText("hello")
    assert not window.accept_mime(text_only, source="clipboard")
    assert "holds no image" in window.notice.text()


def test_missing_camera_says_so_and_the_window_still_works(qtbot, make_window, settings, tmp_path):
    window = make_window(settings, camera=str(tmp_path / "no-such-camera.avi"))
    qtbot.waitUntil(lambda: window.notice.isVisible(), timeout=10000)
    assert "does not exist" in window.notice.text()
    photo = tmp_path / "photo.png"
    image = QImage(32, 32, QImage.Format.Format_RGB888)
    image.fill(0x22AA44)
    image.save(str(photo))
    window.load_image_file(str(photo))
    qtbot.waitUntil(lambda: window.pinned is not None, timeout=10000)
    stats = ask(qtbot, window, "What is this?")
    assert stats.decode_tokens > 0


def test_camera_index_that_does_not_exist(qtbot, make_window, settings):
    window = make_window(settings, camera="37", wait_model=False)
    qtbot.waitUntil(lambda: window.notice.isVisible(), timeout=15000)
    assert "No camera found" in window.notice.text()


def test_no_model_configured_points_to_settings(qtbot, make_window, tmp_path, tiny_models):
    from app.core.models.store import ModelStore

    ModelStore(tmp_path).add_local(str(tiny_models.text), str(tiny_models.mmproj))  # else it starts on the demo
    window = make_window(Settings(), wait_model=False)
    assert window.notice.isVisible()
    assert "Settings" in window.notice.text()
    window.prompt_input.setPlainText("Hello?")
    window.send()
    assert window.chat_view.bubbles == []


def test_bad_model_file_shows_the_core_error_and_keeps_running(qtbot, make_window, settings, tmp_path):
    page = tmp_path / "download.gguf"
    page.write_text("<html><body>Too many requests</body></html>")
    window = make_window(replace(settings, model_path=str(page)), wait_model=False)
    qtbot.waitUntil(lambda: "download.gguf" in window.notice.text(), timeout=15000)
    assert "web page" in window.notice.text()
    window.apply_settings(settings)
    qtbot.waitUntil(lambda: window.model_ready, timeout=30000)


def test_settings_are_saved_per_user(qtbot, make_window, settings, tmp_path):
    window = make_window(settings)
    window.apply_settings(replace(settings, temperature=0.7, system_prompt="Be brief."), reload=None)
    qtbot.waitUntil(lambda: load_settings(tmp_path)[0].temperature == 0.7, timeout=5000)  # written off the GUI thread
    saved, warning = load_settings(tmp_path)
    assert warning is None
    assert saved.temperature == 0.7
    assert saved.system_prompt == "Be brief."


def test_closing_mid_answer_cancels_and_joins_threads(qtbot, make_window, settings):
    window = make_window(replace(settings, temperature=0.8, seed=5, max_tokens=400))
    wait_for_frame(qtbot, window)
    window.prompt_input.setPlainText("Tell me a long story.")
    with qtbot.waitSignal(window.binding.answer_piece, timeout=30000):
        window.send_button.click()
    engine = window.engine
    window.close()
    assert not window.isVisible(), "the window goes at once"
    qtbot.waitUntil(lambda: window.is_closed, timeout=10000)
    assert window.engine is None
    assert not engine._thread.is_alive(), "the engine's inference thread was joined"
    assert window.camera is not None
    assert window.camera._thread is None


def test_gui_thread_keeps_servicing_events_while_an_answer_streams(qtbot, make_window, settings, monkeypatch):
    """Timer ticks keep firing between the first token and the end of a long answer.

    The answer cannot end early (EOS is ignored and the token limit is far off), so the only way for the ticks not
    to arrive while it streams is the GUI thread blocking on inference: then they would all come after the turn.
    The test used to sample a random-weight answer that sometimes hit EOS within 60 ms and failed one run in four.
    """
    window = make_window(replace(settings, max_tokens=1500))
    long_answer = replace(settings, max_tokens=1500).sampling().with_(ignore_eos=True)
    monkeypatch.setattr(window.settings, "sampling", lambda: long_answer)
    wait_for_frame(qtbot, window)
    ticks = 0
    finished: list[int] = []
    window.turn_finished.connect(lambda request_id, _stats: finished.append(request_id))

    def tick() -> None:
        nonlocal ticks
        ticks += 1

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    window.prompt_input.setPlainText("Describe everything you see.")
    with qtbot.waitSignal(window.binding.answer_piece, timeout=30000):
        window.send_button.click()
    timer.start()
    qtbot.waitUntil(lambda: ticks >= 5 or bool(finished), timeout=30000)
    timer.stop()
    assert not finished, "the answer finished before the GUI thread serviced its timer: it blocked on inference"
    assert ticks >= 5
    with qtbot.waitSignal(window.turn_finished, timeout=30000):
        window.stop_button.click()


def test_sigterm_closes_the_app_cleanly(tiny_models, video, tmp_path):
    ready = tmp_path / "ready"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "LLAVACAM_READY_FILE": str(ready), "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "--model", str(tiny_models.text), "--mmproj", str(tiny_models.mmproj),
         "--camera", str(video), "--data-dir", str(tmp_path / "data")],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not ready.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # a subprocess, not the Qt loop under test: polling a file is the way to wait
    assert ready.exists(), process.stderr.read() if process.poll() is not None else "window never came up"
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 0, process.stderr.read()


def test_signal_emit_keeps_reference_counts(qapp):
    """PySide6 6.12.0 dropped a reference to True/False on every emit(), crashing long answers; pinned out."""
    from PySide6.QtCore import QObject, Signal

    class Emitter(QObject):
        ping = Signal()

    emitter = Emitter()
    emitter.ping.connect(lambda: None)
    before = sys.getrefcount(True), sys.getrefcount(False)
    for _ in range(200):
        emitter.ping.emit()
    assert (sys.getrefcount(True), sys.getrefcount(False)) == before


def test_regenerate_replaces_the_last_answer_bubble(qtbot, make_window, settings):
    window = make_window(replace(settings, temperature=0.9, seed=None, max_tokens=12))
    wait_for_frame(qtbot, window)
    ask(qtbot, window, "What is this?")
    assert [b.role for b in window.chat_view.bubbles] == ["user", "assistant"]
    with qtbot.waitSignal(window.turn_finished, timeout=30000) as blocker:
        window.regenerate_button.click()
    assert blocker.args[1].decode_tokens > 0
    assert [b.role for b in window.chat_view.bubbles] == ["user", "assistant"], "one question, its new answer"
    assert [t.question for t in window.engine.history] == ["What is this?"]


def test_space_is_typed_and_the_capture_shortcut_pins_the_live_frame_even_while_typing(qtbot, make_window, settings):
    window = make_window(settings)
    wait_for_frame(qtbot, window)
    window.chat_view.setFocus()
    qtbot.keyClick(window.chat_view, Qt.Key.Key_Space)
    assert window.pinned is None, "Space does not capture: it is for typing and scrolling"
    window.prompt_input.setFocus()
    qtbot.keyClick(window.prompt_input, Qt.Key.Key_Space)
    assert window.pinned is None, "a space typed in the question is just a space"
    assert window.prompt_input.toPlainText() == " "
    qtbot.keyClick(window.prompt_input, Qt.Key.Key_P, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: window.pinned is not None, timeout=5000)
    assert window.prompt_input.toPlainText() == " ", "the shortcut typed nothing"
    assert window.capture_button.toolTip() == "Freeze the live frame to ask about it (Ctrl+P)"


def test_saving_settings_or_choosing_model_files_keeps_the_camera_on_screen(qtbot, make_window, settings, tmp_path,
                                                                             video):  # fmt: skip
    window = make_window(settings)  # on the test video, given as --camera would be
    wait_for_frame(qtbot, window)
    window.apply_settings(replace(window.settings), reload=(settings.model_path, settings.mmproj_path,
                          settings.n_ctx, settings.threads, settings.gpu_layers, settings.template))  # fmt: skip
    assert window.camera.source == str(video)
    assert window.camera_picker.currentData() == str(video)
    assert window.camera_picker.currentText() == "camera.avi", "the picker shows a name, not a path"


def test_the_camera_picked_in_the_drop_down_is_saved_and_kept(qtbot, make_window, settings, tmp_path, video,
                                                               monkeypatch):  # fmt: skip
    from PySide6.QtWidgets import QFileDialog

    from app.desktop.camera_panel import CHOOSE_FILE

    window = make_window(settings, camera="0")
    assert window.camera_picker.currentText() == "Camera 0"
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *_a, **_k: (str(video), ""))
    choose = window.camera_picker.findData(CHOOSE_FILE)
    window.camera_picker.setCurrentIndex(choose)
    window.camera_picker.activated.emit(choose)  # the user chose "Video or image file…", then the video
    wait_for_frame(qtbot, window)
    qtbot.waitUntil(lambda: load_settings(tmp_path)[0].camera == str(video), timeout=5000)
    window.apply_settings(replace(window.settings, temperature=0.5))  # Save in Settings, camera field unchanged
    assert window.camera.source == str(video)


def test_a_bad_model_file_in_settings_says_what_is_wrong_and_keeps_the_working_model(qtbot, make_window, settings,
                                                                                     tmp_path):  # fmt: skip
    window = make_window(settings)
    bad = tmp_path / "not-a-model.gguf"
    bad.write_bytes(b"this is not a GGUF file" * 100)
    window.apply_settings(replace(window.settings, model_path=str(bad)))
    qtbot.waitUntil(lambda: window.model_ready, timeout=30000)
    notice = window.notice.text()
    assert notice.startswith("The new model files were not used: ")
    assert "not-a-model.gguf" in notice
    assert " is still loaded." in notice
    assert window.notice.isVisible()
    assert window.settings.model_path == settings.model_path
    assert load_settings(tmp_path)[0].model_path == settings.model_path
    stats = ask(qtbot, window, "Still answering?")
    assert stats.decode_tokens > 0


def test_stop_while_the_question_waits_behind_other_work_is_not_lost(qtbot, make_window, settings):
    import threading

    window = make_window(replace(settings, temperature=0.8, seed=4, max_tokens=400))
    wait_for_frame(qtbot, window)
    release = threading.Event()
    window.engine._submit(lambda: release.wait(30))  # the engine is busy (as with a history load or a preparation)
    window.prompt_input.setPlainText("Tell me everything.")
    window.send_button.click()
    window.stop_button.click()
    with qtbot.waitSignal(window.turn_finished, timeout=30000) as blocker:
        release.set()
    assert blocker.args[1].finish_reason == "cancelled"
    assert blocker.args[1].decode_tokens == 0
    assert window.send_button.isEnabled()


def test_a_pinned_image_that_cannot_be_prepared_does_not_stay_encoding(qtbot, make_window, settings):
    from PIL import Image

    from app.core.inference.images import load_image

    window = make_window(replace(settings, mmproj_path=""))  # text only: nothing to encode
    picture = load_image(Image.new("RGB", (40, 30), (10, 200, 30)))
    window.pin(picture)
    qtbot.waitUntil(lambda: window.pinned_badge.text() == "● pinned", timeout=10000)  # not "· encoding…" for good
    assert not window.pinned_ready


def test_closing_during_a_model_load_aborts_it_and_the_window_closes_at_once(qtbot, make_window, settings,
                                                                              monkeypatch):  # fmt: skip
    from app.core.models import probe

    # The first use of a pair test-loads it in a child; this one would take a minute.
    monkeypatch.setattr(probe, "probe_command", lambda *_a: [sys.executable, "-c", "import time; time.sleep(60)"])
    window = make_window(settings, wait_model=False)
    qtbot.waitUntil(lambda: window.status_label.text().startswith("First use of "), timeout=10000)
    assert window.model_host.loading
    began = time.monotonic()
    window.close()
    assert not window.isVisible()
    qtbot.waitUntil(lambda: window.is_closed, timeout=2000)
    assert time.monotonic() - began < 2.0
    assert window.engine is None
    assert not window.model_ready
