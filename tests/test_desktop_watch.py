"""The window's Watch panel: timeline rows, the indicator with pause/stop, and notifications through a fake backend
and the in-window banner. The watch answers with the labelled scripted `ColourReader` (these tests check the
panel, not inference; tests/test_watch.py and tests/test_cli_watch.py run the real engine)."""

from __future__ import annotations

import threading

import numpy as np
from PySide6.QtCore import Qt

from app.core.watch import Condition, ListSource, Watcher
from app.core.watch.notify import Notification, NotificationCentre
from app.desktop.watch_panel import CameraFrames, WatchPanel, WatchRunner
from tests.test_watch import FAST, ColourReader, scene


class FakeNotifier:
    """A notification backend that records what it was asked to show (stands in for the tray and D-Bus)."""

    name = "fake"

    def __init__(self, available: bool = True) -> None:
        self._available = available
        self.shown: list[Notification] = []
        self.clicked = None

    def available(self) -> bool:
        return self._available

    def show(self, notification, clicked) -> None:
        self.shown.append(notification)
        self.clicked = clicked


def run_panel(qtbot, watcher, source, notifiers=None):
    panel = WatchPanel()
    qtbot.addWidget(panel)
    panel.show()
    qtbot.waitExposed(panel)
    runner = WatchRunner(watcher, source)
    panel.attach(runner, notifiers)
    with qtbot.waitSignal(runner.ended, timeout=10000):
        runner.start()
    qtbot.waitUntil(lambda: panel.indicator.text().startswith("Watch ended"))
    return panel


def test_the_timeline_has_one_row_per_change_with_folded_repeats(qtbot):
    frames = [scene(c, noise_seed=i) for i, c in enumerate(["red"] * 4 + ["blue"] * 4 + ["red"] * 4)]
    frames += [np.roll(scene("red"), 8, axis=1)] * 3  # the square moves: asked again, the same answer folds
    watcher = Watcher(ColourReader(), "What colour is the shape?", change=FAST)
    panel = run_panel(qtbot, watcher, ListSource(frames))
    rows = [panel.timeline.item(i).text().split("  ", 1)[1] for i in range(panel.timeline.count())]
    assert rows == ["The shape is red.", "The shape is blue.", "The shape is red.  ×2"]
    assert panel.indicator.text() == "Watch ended (source ended): What colour is the shape?"
    assert not panel.stop_button.isEnabled()


def test_a_match_notifies_through_the_first_available_backend_and_a_click_opens_its_entry(qtbot):
    frames = [scene("blue")] * 4 + [scene("red")] * 4
    fake = FakeNotifier()
    watcher = Watcher(ColourReader(), condition=Condition("the shape is red"), change=FAST)
    panel = run_panel(qtbot, watcher, ListSource(frames), [FakeNotifier(available=False), fake])
    [shown] = fake.shown
    assert shown.title == "Watch"
    assert shown.text.startswith("the shape is red (at ")
    assert shown.entry_index == 1
    assert panel.banner.isHidden()
    fake.clicked(shown.entry_index)
    assert panel.timeline.currentRow() == 1
    assert panel.timeline.currentItem().text().endswith("Yes.")


def test_without_a_tray_or_dbus_the_banner_shows_the_match_and_opens_it(qtbot):
    frames = [scene("blue")] * 4 + [scene("red")] * 4
    watcher = Watcher(ColourReader(), condition=Condition("the shape is red"), change=FAST)
    panel = run_panel(qtbot, watcher, ListSource(frames), [])
    assert not panel.banner.isHidden()
    assert panel.banner.text().startswith("<b>Watch</b> — the shape is red (at ")
    qtbot.mouseClick(panel.banner, Qt.MouseButton.LeftButton)
    assert panel.timeline.currentRow() == 1
    assert panel.banner.isHidden()


class StillCamera:
    """The window camera's interface (`frames_read`, `newest`): a new noisy frame of one scene on every read."""

    def __init__(self) -> None:
        self.count = 0

    @property
    def frames_read(self) -> int:
        self.count += 1
        return self.count

    def newest(self):
        return scene("green", noise_seed=self.count % 5)


def test_pause_and_stop_and_stopping_says_so(qtbot):
    reader = ColourReader()
    stop = threading.Event()
    watcher = Watcher(reader, "What colour?", change=FAST)
    panel = WatchPanel()
    qtbot.addWidget(panel)
    runner = WatchRunner(watcher, CameraFrames(StillCamera(), stop, poll_s=0.001))
    panel.attach(runner)
    runner.start()
    qtbot.waitUntil(lambda: panel.timeline.count() == 1, timeout=10000)
    assert panel.indicator.text() == "● Watching: What colour?"
    qtbot.mouseClick(panel.pause_button, Qt.MouseButton.LeftButton)
    assert watcher.paused
    assert panel.indicator.text() == "Paused: What colour?"
    assert panel.pause_button.text() == "Resume"
    qtbot.mouseClick(panel.pause_button, Qt.MouseButton.LeftButton)
    assert not watcher.paused
    assert panel.stop() == "The watch (What colour?) was stopped."
    assert not runner.running
    assert panel.stop() == ""
    assert reader.asked == [0]  # a still scene: one question however long it ran


def test_the_centre_beeps_when_asked_and_names_the_backend():
    beeps = []
    opened = []
    fake = FakeNotifier()
    centre = NotificationCentre([fake], opened.append, beep=lambda: beeps.append(1))
    assert centre.notify(Notification("Watch", "red", 3, sound=True)) == "fake"
    assert centre.notify(Notification("Watch", "red", 4)) == "fake"
    assert beeps == [1]
    fake.clicked(4)
    assert opened == [4]


def test_the_window_watches_its_camera_aside_and_closing_stops_the_watch(qtbot, make_window, settings):
    from tests.support.desktop import close_window, wait_for_frame

    window = make_window(settings)
    wait_for_frame(qtbot, window)
    qtbot.waitUntil(lambda: window.model_ready, timeout=30000)
    window.start_watch("What is this?")
    panel = window.watch_panel
    qtbot.waitUntil(lambda: panel.timeline.count() >= 1, timeout=30000)
    assert panel.indicator.text() == "● Watching: What is this?"
    assert window.engine.history == []  # asked aside: the chat is untouched
    [chat] = [c for c in window.history.list_chats() if c.title == "Watch: What is this?"]
    [first, *_] = window.history.get_turns(chat.id)
    assert first.question.endswith("] What is this?")
    assert first.answer == panel.timeline.item(0).text().split("  ", 1)[1].split("  ×")[0]
    assert first.image_path is not None
    close_window(qtbot, window)
    assert not panel.runner.running
    assert window.statusBar().currentMessage() == "The watch (What is this?) was stopped."
