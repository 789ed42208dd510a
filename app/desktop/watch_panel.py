"""The window's Watch: a timeline of answers, a "watching" indicator with pause and stop, and notifications.

`WatchRunner` runs one `app.core.watch.Watcher` on a thread of its own (the watch loop waits on answers; the GUI
thread never does) and hands its events to the GUI thread through a queued signal. `WatchPanel` shows them: one
row per timeline entry (thumbnail, time, answer, "×n" when answers were folded), the indicator, Pause/Resume and
Stop. A condition's match goes through `NotificationCentre` (system tray, else D-Bus desktop notifications, else
the in-window banner), with `QApplication.beep()` as the sound; clicking a notification selects its entry.
`CameraFrames` adapts the window's `CameraSource` (the newest frame only) to the watch's frame source.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSystemTrayIcon,
    QVBoxLayout,
    QWidget,
)

from app.core.watch import Frame, Watcher, WatchEvent
from app.core.watch.notify import Notification, NotificationCentre


class CameraFrames:
    """A watch frame source over the window's camera: waits (on the watch's thread) for a frame it has not seen."""

    def __init__(self, camera: Any, stop: threading.Event, poll_s: float = 0.03) -> None:
        self.camera = camera
        self.stop = stop
        self.poll_s = poll_s
        self._seen = -1
        self._index = 0

    def next_frame(self) -> Frame | None:
        while not self.stop.is_set():
            number = self.camera.frames_read
            if number != self._seen:
                rgb = self.camera.newest()
                if rgb is not None:
                    self._seen = number
                    frame = Frame(rgb, self._index, datetime.now().astimezone())
                    self._index += 1
                    return frame
            self.stop.wait(self.poll_s)
        return None


@dataclass(frozen=True)
class TimelineRow:
    """A timeline entry as it was when its event happened (the watch thread may add more before it is shown)."""

    index: int
    at: datetime
    answer: str
    repeats: int
    thumbnail: np.ndarray


class WatchRunner(QObject):
    watch_event = Signal(object)  # (WatchEvent, TimelineRow | None), on the GUI thread (queued)
    ended = Signal(str)

    def __init__(self, watcher: Watcher, source: Any, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.watcher = watcher
        self.source = source
        self._thread: threading.Thread | None = None
        previous = watcher._on_event

        def forward(event: WatchEvent) -> None:  # on the watch's thread: take what the row needs now
            if previous is not None:
                previous(event)
            entries = watcher.timeline.entries
            entry = entries[-1] if entries else None
            row = None
            if entry is not None:
                row = TimelineRow(len(entries) - 1, entry.at, entry.answer, entry.repeats, entry.thumbnail)
            self.watch_event.emit((event, row))

        watcher._on_event = forward

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="llavacam-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        reason = self.watcher.run(self.source)
        self.ended.emit(reason)

    def stop(self, timeout: float = 5.0) -> None:
        self.watcher.stop()
        for asking in (self.watcher._answer, self.watcher._on_scene):  # a question, or a preset's extraction
            cancel = getattr(asking, "cancel", None)
            if cancel is not None:
                cancel()  # what is in flight ends within one token: closing never waits for an answer
        stop = getattr(self.source, "stop", None)
        if isinstance(stop, threading.Event):
            stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


def _icon(thumbnail: np.ndarray) -> QIcon:
    rgb = np.ascontiguousarray(thumbnail[:, :, :3])
    h, w = rgb.shape[:2]
    image = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
    return QIcon(QPixmap.fromImage(image))


class BannerNotifier(QLabel):
    """The in-window banner: always available; a click opens the entry."""

    name = "banner"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("watchBanner")
        self.setAccessibleName("Watch notification")
        self.setWordWrap(True)
        self.hide()
        self._entry = -1
        self._clicked: Any = None

    def available(self) -> bool:
        return True

    def show(self, notification: Notification | None = None, clicked: Any = None) -> None:  # type: ignore[override]
        if notification is None:
            super().show()
            return
        self.setText(f"<b>{notification.title}</b> — {notification.text} (click to see it)")
        self._entry, self._clicked = notification.entry_index, clicked
        super().show()

    def mousePressEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        if self._clicked is not None:
            self._clicked(self._entry)
        self.hide()


class TrayNotifier:
    """The system tray's balloon, where a tray exists."""

    name = "tray"

    def __init__(self, parent: QObject | None = None) -> None:
        self._tray: QSystemTrayIcon | None = None
        self._parent = parent
        self._entry = -1
        self._clicked: Any = None

    def available(self) -> bool:
        return QSystemTrayIcon.isSystemTrayAvailable()

    def show(self, notification: Notification, clicked: Any) -> None:
        if self._tray is None:
            self._tray = QSystemTrayIcon(QApplication.windowIcon(), self._parent)
            self._tray.messageClicked.connect(lambda: self._clicked and self._clicked(self._entry))
            self._tray.show()
        self._entry, self._clicked = notification.entry_index, clicked
        self._tray.showMessage(notification.title, notification.text)


class DBusNotifier:
    """org.freedesktop.Notifications on the session bus (Linux desktops without a tray)."""

    name = "dbus"

    def __init__(self) -> None:
        from PySide6.QtDBus import QDBusConnection, QDBusInterface

        bus = QDBusConnection.sessionBus()
        self._interface = None
        if bus.isConnected():
            name = "org.freedesktop.Notifications"
            self._interface = QDBusInterface(name, "/org/freedesktop/Notifications", name, bus)

    def available(self) -> bool:
        return self._interface is not None and self._interface.isValid()

    def show(self, notification: Notification, clicked: Any) -> None:
        from PySide6.QtDBus import QDBus

        assert self._interface is not None
        self._interface.callWithArgumentList(QDBus.CallMode.NoBlock, "Notify", [
            "LlavaCam", 0, "", notification.title, notification.text, [], {}, 10000])  # fmt: skip


class WatchPanel(QWidget):
    """Shows one watch; `attach(runner, notifiers)` binds it (the window owns the runner's lifetime)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("watchPanel")
        self.indicator = QLabel("Not watching")
        self.indicator.setObjectName("watchIndicator")
        self.indicator.setAccessibleName("Watch status")
        self.pause_button = QPushButton("Pause")
        self.stop_button = QPushButton("Stop")
        self.timeline = QListWidget()
        self.timeline.setObjectName("watchTimeline")
        self.timeline.setAccessibleName("Watch timeline")
        self.timeline.setIconSize(QSize(48, 48))
        self.banner = BannerNotifier(self)
        top = QHBoxLayout()
        top.addWidget(self.indicator, 1)
        top.addWidget(self.pause_button)
        top.addWidget(self.stop_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.banner)
        layout.addWidget(self.timeline, 1)
        self.pause_button.clicked.connect(self._toggle_pause)
        self.stop_button.clicked.connect(self.stop)
        self.runner: WatchRunner | None = None
        self.centre: NotificationCentre | None = None
        self._rows: dict[int, QListWidgetItem] = {}  # timeline entry index → row
        self._set_running(False)

    def attach(self, runner: WatchRunner, notifiers: list[Any] | None = None, *, sound: bool = False,
               what: str = "") -> None:  # fmt: skip
        """Show `runner`'s watch; `what` names it in the indicator (default: its condition or question)."""
        self.runner = runner
        self.sound = sound
        backends = [*(notifiers if notifiers is not None else []), self.banner]
        self.centre = NotificationCentre(backends, self.open_entry, beep=QApplication.beep)
        runner.watch_event.connect(self._on_event, Qt.ConnectionType.QueuedConnection)
        runner.ended.connect(self._on_ended, Qt.ConnectionType.QueuedConnection)
        asked = runner.watcher.condition.text if runner.watcher.condition else runner.watcher.question
        self._what = what or asked or "the camera"
        self._set_running(True)

    def _set_running(self, running: bool) -> None:
        self.pause_button.setEnabled(running)
        self.stop_button.setEnabled(running)
        if running:
            self.indicator.setText(f"● Watching: {self._what}")

    def _toggle_pause(self) -> None:
        if self.runner is None:
            return
        watcher = self.runner.watcher
        if watcher.paused:
            watcher.resume()
            self.pause_button.setText("Pause")
            self.indicator.setText(f"● Watching: {self._what}")
        else:
            watcher.pause()
            self.pause_button.setText("Resume")
            self.indicator.setText(f"Paused: {self._what}")

    def stop(self) -> str:
        """Stop the watch (also when the window closes); returns what to tell the user, or "" if none ran."""
        runner = self.runner
        if runner is None or not runner.running:
            return ""
        runner.stop()
        self._set_running(False)
        self.indicator.setText(f"Watch stopped: {self._what}")
        return f"The watch ({self._what}) was stopped."

    def _on_event(self, item: tuple[WatchEvent, TimelineRow | None]) -> None:
        event, entry = item
        if entry is None:
            return
        if event.kind in {"answer", "repeat"}:
            label = f"{entry.at.strftime('%H:%M:%S')}  {entry.answer}" + (f"  ×{entry.repeats}" if entry.repeats > 1
                                                                          else "")  # fmt: skip
            row = self._rows.get(entry.index)
            if row is None:
                row = QListWidgetItem(_icon(entry.thumbnail), label)
                self.timeline.addItem(row)
                self._rows[entry.index] = row
            else:
                row.setText(label)
        elif event.kind == "match" and self.centre is not None:
            self.centre.notify(Notification("Watch", f"{event.text} (at {event.at.strftime('%H:%M:%S')})",
                                            entry.index, sound=self.sound))  # fmt: skip

    def open_entry(self, index: int) -> None:
        row = self._rows.get(index)
        if row is not None:
            self.timeline.setCurrentItem(row)
            self.timeline.scrollToItem(row)

    def _on_ended(self, reason: str) -> None:
        self._set_running(False)
        self.indicator.setText(f"Watch ended ({reason}): {self._what}")


__all__ = ["BannerNotifier", "CameraFrames", "DBusNotifier", "TrayNotifier", "WatchPanel", "WatchRunner"]
