"""The window's asyncio loop: qasync's QEventLoop, started the way qasync documents for Python 3.10 to 3.13.

`run(main_coroutine)` is the one entry point: it installs the loop on the QApplication and runs the coroutine to
completion (the window's tasks — Send, Stop, Regenerate, history reads — all run on it; engine pieces arrive via
`Turn.stream()`). Tests use `open_loop()` / `close_loop()` around `loop.run_until_complete(...)`.

`EventLoop` is qasync 0.28.0's QEventLoop with the fix qasync made after that release for the random crashes
reported with PySide6 >= 6.8 (qasync#154, PYSIDE-3165): its timer object and its socket notifiers are parented
to the application and deleted with `deleteLater()` on the Qt side, never left for Python's garbage collector to
destroy while Qt may still deliver an event to them. `tests/test_qasync_stress.py` runs the stress that shows it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

import qasync
from PySide6.QtCore import QObject
from PySide6.QtWidgets import QApplication

T = TypeVar("T")


class EventLoop(qasync.QEventLoop):  # type: ignore[misc]
    """qasync's loop whose Qt objects are owned by Qt (parented, deleted with deleteLater)."""

    def __init__(self, app: QApplication | None = None, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        application = app or QApplication.instance()
        self._timer.setParent(application)

    def _own(self, notifiers: dict[Any, QObject], fd: Any) -> None:
        notifier = notifiers.get(fd)
        if notifier is not None and notifier.parent() is None:
            notifier.setParent(self._timer)

    def _add_reader(self, fd: Any, callback: Any, *args: Any) -> None:
        previous = self._read_notifiers.get(fd)
        super()._add_reader(fd, callback, *args)
        self._own(self._read_notifiers, fd)
        if previous is not None and previous is not self._read_notifiers.get(fd):
            previous.deleteLater()

    def _add_writer(self, fd: Any, callback: Any, *args: Any) -> None:
        previous = self._write_notifiers.get(fd)
        super()._add_writer(fd, callback, *args)
        self._own(self._write_notifiers, fd)
        if previous is not None and previous is not self._write_notifiers.get(fd):
            previous.deleteLater()

    def _remove_reader(self, fd: Any) -> bool:
        notifier = self._read_notifiers.get(fd)
        removed = bool(super()._remove_reader(fd))
        if removed and notifier is not None:
            notifier.deleteLater()
        return removed

    def _remove_writer(self, fd: Any) -> bool:
        notifier = self._write_notifiers.get(fd)
        removed = bool(super()._remove_writer(fd))
        if removed and notifier is not None:
            notifier.deleteLater()
        return removed

    def close(self) -> None:
        if self.is_closed():
            return
        notifiers = [*self._read_notifiers.values(), *self._write_notifiers.values()]
        timer = self._timer
        super().close()
        for notifier in notifiers:
            notifier.deleteLater()
        timer.deleteLater()


def open_loop(app: QApplication) -> EventLoop:
    loop = EventLoop(app)
    asyncio.set_event_loop(loop)
    return loop


def close_loop(loop: EventLoop) -> None:
    if not loop.is_closed():
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    asyncio.set_event_loop(None)


def run(main: Coroutine[Any, Any, T], app: QApplication) -> T:
    """Run `main` on the window's loop until it returns (qasync's documented start for our Python versions)."""
    if sys.version_info >= (3, 12):
        with asyncio.Runner(loop_factory=lambda: EventLoop(app)) as runner:
            return runner.run(main)
    loop = open_loop(app)
    try:
        return loop.run_until_complete(main)
    finally:
        close_loop(loop)


__all__ = ["EventLoop", "close_loop", "open_loop", "run"]
