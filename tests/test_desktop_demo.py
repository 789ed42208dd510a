"""The window on a fresh machine: the sample video when no webcam opens, the built-in demo pair when no model is
installed, and right answers through the window from the trained pair (real llama.cpp, greedy): capture, ask,
follow-up, regenerate, a new frame in the same chat, a question typed while the frame is prepared, a reopened chat.

The sample video's frames go through the same OpenCV reader as a webcam's (BGR -> RGB), so "It is red." about its
red scene proves the channel order end to end: swapped, the demo says blue.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import app.desktop.camera as camera_module
from app.core.history.store import HistoryStore
from app.core.inference.images import RGBImage
from app.core.models.store import ModelStore
from app.core.resources import demo_model_files
from app.desktop.camera import AUTOMATIC, SAMPLE_LABEL
from app.desktop.demo_badge import DEMO_BADGE_TEXT
from app.desktop.model_setup import ModelSetupDialog
from app.desktop.settings import Settings, load_settings
from models.make_sample_video import SAMPLE_SCENES, scene_frame
from tests.support.camera_video import write_test_video
from tests.support.desktop import ask, close_window, open_chat

RED, BLUE = 0, 1  # scenes of the sample video (models/make_sample_video.py)
assert SAMPLE_SCENES[RED].colour == "red"
assert SAMPLE_SCENES[BLUE].colour == "blue"


@pytest.fixture(autouse=True)
def no_webcam(monkeypatch):
    """The automatic camera tries an index no machine has, so the fallback is what runs even beside a webcam."""
    monkeypatch.setattr(camera_module, "AUTOMATIC_INDEX", 37)


@pytest.fixture
def first_run() -> Settings:
    """Settings as on a fresh machine (no model configured, the automatic camera), greedy for exact answers."""
    return Settings(temperature=0.0, max_tokens=24, threads=2, n_ctx=1024)


def pixels(image: RGBImage | np.ndarray) -> np.ndarray:
    if isinstance(image, RGBImage):
        return np.frombuffer(image.pixels, np.uint8).reshape(image.height, image.width, 3)
    return image


def shows(image: RGBImage | np.ndarray, scene: int) -> bool:
    rgb = pixels(image)
    reference = scene_frame(scene)
    return rgb.shape == reference.shape and float(np.abs(rgb.astype(int) - reference.astype(int)).mean()) < 8


def scene_shown(image: RGBImage | np.ndarray) -> int:
    """Which sample scene a frame shows (-1: none)."""
    return next((i for i in range(len(SAMPLE_SCENES)) if shows(image, i)), -1)


def capture_scene(qtbot, window, scene: int) -> None:
    """Press Capture while the sample video shows `scene` (it loops every 18 s)."""

    def captured() -> bool:
        frame = window.camera.newest() if window.camera is not None else None
        if frame is None or not shows(frame, scene):
            return False
        window.capture_button.click()
        if window.pinned is not None and shows(window.pinned, scene):
            return True
        window.unpin()  # the next scene began between the two reads
        return False

    qtbot.waitUntil(captured, timeout=40000)


def answer_text(window) -> str:
    return window.chat_view.bubbles[-1].text


# --- the sample video -------------------------------------------------------------------------------------------


def test_with_no_webcam_the_camera_plays_the_sample_video_and_says_so(qtbot, make_window, settings, tmp_path):
    window = make_window(settings, camera="")  # "": the automatic camera, as Settings has by default
    qtbot.waitUntil(lambda: window.camera.is_sample and window.camera.newest() is not None, timeout=10000)
    assert window.camera_panel.camera_badge.isVisible()
    assert window.camera_panel.camera_badge.text() == "Sample video — no camera found"
    assert window.camera_picker.currentText() == SAMPLE_LABEL
    assert window.camera_picker.currentData() == ""
    assert not window.notice.isVisible(), "no error: the sample video is what the automatic camera shows"
    assert window.camera.name == "sample video"
    first = scene_shown(window.camera.newest())
    assert first >= 0, "a frame of one of the sample scenes"
    qtbot.waitUntil(lambda: scene_shown(window.camera.newest()) not in (first, -1), timeout=10000)  # every 3 s
    capture_scene(qtbot, window, BLUE)
    ask(qtbot, window, "What is this?")
    close_window(qtbot, window)
    store = HistoryStore(tmp_path)
    try:
        (chat,) = store.list_chats()
        (question,) = [m for m in store.get_chat(chat.id).messages if m.role == "user"]
        assert question.image is not None
        assert question.image.source == "sample video"
    finally:
        store.close()


def test_a_webcam_plugged_in_while_the_sample_plays_takes_over(qtbot, make_window, settings, tmp_path, monkeypatch):
    webcam = tmp_path / "webcam.avi"  # stands in for /dev/video0: absent first, then there
    monkeypatch.setattr(camera_module, "AUTOMATIC_INDEX", str(webcam))
    monkeypatch.setattr(camera_module, "WEBCAM_RECHECK_S", 0.2)
    window = make_window(settings, camera="")
    qtbot.waitUntil(lambda: window.camera.is_sample and window.camera_panel.camera_badge.isVisible(), timeout=10000)
    write_test_video(tmp_path / "partial.avi").rename(webcam)  # plugged in (whole, at once)
    qtbot.waitUntil(lambda: not window.camera.is_sample, timeout=10000)
    qtbot.waitUntil(lambda: (frame := window.camera.newest()) is not None and frame.shape == (120, 160, 3),
                    timeout=10000)  # fmt: skip
    assert not window.camera_panel.camera_badge.isVisible()
    assert window.camera_picker.currentData() == str(webcam)
    assert window.camera.name == "webcam.avi"


def test_a_camera_the_user_picked_that_fails_says_so_and_plays_no_sample(qtbot, make_window, settings):
    window = make_window(settings, camera="37", wait_model=False)
    qtbot.waitUntil(lambda: window.notice.isVisible(), timeout=15000)
    assert window.notice.text().startswith("No camera found at index 37")
    assert not window.camera.is_sample
    assert not window.camera_panel.camera_badge.isVisible()


def test_picking_the_sample_video_in_the_picker_keeps_the_automatic_camera(qtbot, make_window, settings, tmp_path,
                                                                          video):  # fmt: skip
    window = make_window(settings)  # on the test video
    assert not window.camera_panel.camera_badge.isVisible()
    index = window.camera_panel._add_source(AUTOMATIC)  # the entry a fallback earlier in this session left
    assert window.camera_picker.itemText(index) == SAMPLE_LABEL
    window.camera_picker.setCurrentIndex(index)
    window.camera_picker.activated.emit(index)  # the user chose it
    qtbot.waitUntil(lambda: window.camera.is_sample and window.camera_panel.camera_badge.isVisible(), timeout=10000)
    assert load_settings(tmp_path)[0].camera == "", "saved as the automatic camera: a webcam comes first next time"


# --- the demo pair on a first run --------------------------------------------------------------------------------


def test_a_first_run_starts_on_the_demo_with_its_badge_and_a_way_to_a_real_model(qtbot, make_window, first_run):
    window = make_window(first_run, camera="", wait_model=False)
    assert window.settings.model_path == str(demo_model_files()[0])
    assert window.demo_badge.isVisible(), "at once, while the demo loads"
    qtbot.waitUntil(lambda: window.model_ready, timeout=30000)
    assert window.demo_badge.isVisible()
    assert window.demo_badge.label.text() == DEMO_BADGE_TEXT == "Demo model — knows only coloured shapes"
    assert "best short guess" in window.demo_badge.toolTip()
    assert not window.notice.isVisible()
    assert window.status_label.text() == "Ready: LlavaCam demo - colours and shapes · template gguf"
    window.demo_badge.button.click()  # "Get a real model…"
    dialog = window.findChild(ModelSetupDialog)
    assert dialog is not None
    qtbot.waitUntil(dialog.isVisible, timeout=5000)
    dialog.reject()


def test_installed_pairs_but_none_configured_point_to_the_model_dialog(qtbot, make_window, tmp_path, tiny_models):
    ModelStore(tmp_path).add_local(str(tiny_models.text), str(tiny_models.mmproj))
    window = make_window(Settings(), wait_model=False)
    assert window.settings.model_path == ""
    assert "File → Models…" in window.notice.text()
    assert not window.demo_badge.isVisible()


def test_the_model_dialog_offers_the_demo_and_a_real_pair_hides_its_badge(qtbot, make_window, settings, tmp_path,
                                                                          tiny_models):  # fmt: skip
    window = make_window(settings)
    assert not window.demo_badge.isVisible()
    dialog = window.model_dialog()
    qtbot.addWidget(dialog)
    texts = [dialog.list.item(i).text() for i in range(dialog.list.count())]
    assert "Demo — colours and shapes (built in, a few MB)\n    built in · no download · knows only coloured shapes: " \
           "for trying LlavaCam, not for real questions" in texts  # fmt: skip
    dialog.select("demo")
    assert dialog.download_button.text() == "Use"
    assert not dialog.delete_button.isEnabled(), "the built-in pair cannot be deleted"
    assert dialog.demo_button.text() == "Try the built-in demo"
    dialog.demo_button.click()
    assert window.settings.model_path == str(demo_model_files()[0])
    qtbot.waitUntil(lambda: window.model_ready, timeout=30000)
    assert window.status_label.text() == "Ready: LlavaCam demo - colours and shapes · template gguf"
    assert window.demo_badge.isVisible()
    window.use_model(ModelStore(tmp_path).add_local(str(tiny_models.text), str(tiny_models.mmproj)))
    qtbot.waitUntil(lambda: window.model_ready and not window.demo_badge.isVisible(), timeout=30000)


# --- right answers through the window (the trained pair) --------------------------------------------------------


def test_capture_ask_follow_up_regenerate_and_a_new_frame_answer_right(qtbot, make_window, first_run, tmp_path):
    window = make_window(first_run, camera="")
    capture_scene(qtbot, window, RED)
    qtbot.waitUntil(lambda: window.pinned_ready, timeout=30000)
    ask(qtbot, window, "What colour is the shape?")
    assert answer_text(window) == "It is red."
    stats = ask(qtbot, window, "What colour is it?")  # a follow-up about the same frame
    assert answer_text(window) == "It is red."
    assert stats.image_cached
    with qtbot.waitSignal(window.turn_finished, timeout=30000):
        window.regenerate_button.click()
    assert [b.text for b in window.chat_view.bubbles] == [
        "What colour is the shape?", "It is red.", "What colour is it?", "It is red."]  # fmt: skip
    window.unpin()
    capture_scene(qtbot, window, BLUE)  # a new frame in the same chat is asked about, not the old one
    ask(qtbot, window, "What colour is the shape?")
    assert answer_text(window) == "It is blue."
    close_window(qtbot, window)
    store = HistoryStore(tmp_path)
    try:
        (chat,) = store.list_chats()
        answers = [m.text for m in store.get_chat(chat.id).messages if m.role == "assistant" and m.chosen]
        assert answers == ["It is red.", "It is red.", "It is blue."]
    finally:
        store.close()


def test_a_question_typed_while_the_frame_is_still_prepared_gets_the_right_answer(qtbot, make_window, first_run):
    window = make_window(first_run, camera="")
    capture_scene(qtbot, window, RED)
    assert window.pinned_badge.text() == "● pinned · reading the image…"
    assert not window.pinned_ready, "sent before the prepared frame came back"
    ask(qtbot, window, "What colour is the shape?")
    assert answer_text(window) == "It is red."


def test_a_reopened_chat_continues_with_the_right_answer(qtbot, make_window, first_run):
    window = make_window(first_run, camera="")
    capture_scene(qtbot, window, RED)
    ask(qtbot, window, "What colour is the shape?")
    assert answer_text(window) == "It is red."
    qtbot.waitUntil(lambda: len(window.history_panel.model.chat_ids()) == 1, timeout=10000)
    close_window(qtbot, window)

    reopened = make_window(replace(first_run), camera="")
    chat_id = reopened.history.list_chats()[0].id
    open_chat(qtbot, reopened, chat_id)
    qtbot.waitUntil(lambda: reopened.pinned is not None, timeout=10000)
    stats = ask(qtbot, reopened, "What colour is it?")
    assert answer_text(reopened) == "It is red."
    assert [b.text for b in reopened.chat_view.bubbles] == [
        "What colour is the shape?", "It is red.", "What colour is it?", "It is red."]  # fmt: skip
    assert stats.decode_tokens > 0


def test_a_question_outside_the_demos_world_gets_a_short_answer_and_the_badge_says_why(qtbot, make_window,
                                                                                        first_run):  # fmt: skip
    window = make_window(first_run, camera="")
    capture_scene(qtbot, window, RED)
    stats = ask(qtbot, window, "What is the capital of France?")
    assert stats.finish_reason == "stop", "its end of answer, not the token limit"
    assert stats.decode_tokens <= 10
    assert answer_text(window).endswith(".")
    assert window.demo_badge.isVisible()
    assert window.demo_badge.toolTip().startswith("The built-in demo was trained on pictures of one coloured shape")


def test_a_saved_demo_path_from_an_earlier_install_or_bundle_run_is_the_demo_here(tmp_path):
    from app.desktop.model_setup import startup_settings

    stale = Settings(model_path="/tmp/_MEIab12cd/app/demo/demo-llama.gguf", mmproj_path="/tmp/_MEIab12cd/app/demo/"
                     "demo-mmproj.gguf")  # fmt: skip
    text, mmproj = demo_model_files()
    assert startup_settings(stale, tmp_path) == replace(stale, model_path=str(text), mmproj_path=str(mmproj))
    own = Settings(model_path=str(tmp_path / "mine.gguf"))
    assert startup_settings(own, tmp_path) is own, "a model of the user's own is left alone, even a missing one"
