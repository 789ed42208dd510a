"""Notifications for watch matches, through a small interface the desktop fills in (tray, D-Bus, in-window banner).

`NotificationCentre` shows each notification through the first backend that is available (the system tray where
there is one, desktop notifications over D-Bus, an in-window banner otherwise), plays the sound when asked, and
turns a click on any of them into `on_open(entry_index)` (the timeline entry the notification is about). Qt-free:
the backends are the desktop's (app/desktop/watch_panel.py); tests use a fake.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Notification:
    title: str
    text: str
    entry_index: int  # the timeline entry to open when it is clicked
    sound: bool = False


class Notifier(Protocol):
    name: str

    def available(self) -> bool: ...

    def show(self, notification: Notification, clicked: Callable[[int], None]) -> None:
        """Show it; call `clicked(entry_index)` if the user clicks it."""


class NotificationCentre:
    def __init__(
        self,
        backends: Sequence[Notifier],
        on_open: Callable[[int], None],
        beep: Callable[[], None] | None = None,
    ) -> None:
        self.backends = list(backends)
        self.on_open = on_open
        self.beep = beep
        self.shown: list[tuple[str, Notification]] = []

    def notify(self, notification: Notification) -> str:
        """Show `notification`; returns the name of the backend that showed it."""
        for backend in self.backends:
            if backend.available():
                backend.show(notification, self.on_open)
                if notification.sound and self.beep is not None:
                    self.beep()
                self.shown.append((backend.name, notification))
                return backend.name
        raise RuntimeError("no notification backend is available (the in-window banner always should be)")
