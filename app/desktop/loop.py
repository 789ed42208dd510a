"""The window's asyncio loop: qasync's QEventLoop, started the way qasync documents for Python 3.10 to 3.13.

`run(main_coroutine)` is the one entry point: it installs the loop on the QApplication and runs the coroutine to
completion (the window's tasks — Send, Stop, Regenerate, history reads — all run on it; engine pieces arrive via
`Turn.stream()`). Code that spins Qt's event loop itself — pytest-qt's waits, the benchmark and screenshot scripts —
uses `attach_loop()` / `detach_loop()`: qasync's documented `already_running` mode, where any Qt event loop that
runs also runs the asyncio loop's callbacks. Blocking work the window awaits (`asyncio.to_thread`: history,
frames, files, model loads) runs on the loop's own small pool of "llavacam-io" threads, joined when it closes.

`EventLoop` is qasync 0.28.0's QEventLoop with the fix qasync made after that release for the random crashes
reported with PySide6 >= 6.8 (qasync#154, PYSIDE-3165): its timer object and its socket notifiers are parented
to the application and deleted with `deleteLater()` on the Qt side, never left for Python's garbage collector to
destroy while Qt may still deliver an event to them. `tests/test_qasync_stress.py` runs the stress that shows it.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QApplication

# qasync picks its Qt binding from QT_API, else from whichever binding was imported first, else the first it can
# import (PyQt5 before PySide6): the window is PySide6's, whatever another tool set QT_API to.
os.environ["QT_API"] = "pyside6"
import qasync  # noqa: E402

T = TypeVar("T")


class EventLoop(qasync.QEventLoop):  # type: ignore[misc]
    """qasync's loop whose Qt objects are owned by Qt (parented, deleted with deleteLater)."""

    def __init__(self, app: QApplication | None = None, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        application = app or QApplication.instance()
        self._timer.setParent(application)
        # Python threads, not qasync's default of ten QThreads started up front: joined when the loop closes.
        self.set_default_executor(ThreadPoolExecutor(max_workers=4, thread_name_prefix="llavacam-io"))

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


def attach_loop(app: QApplication) -> EventLoop:
    """A loop that runs whenever Qt's event loop runs (pytest-qt, scripts that call processEvents themselves)."""
    loop = EventLoop(app, already_running=True)
    asyncio.set_event_loop(loop)
    return loop


def detach_loop(loop: EventLoop) -> None:
    """Close a loop from `attach_loop` (its executor's threads are joined); the tasks should have ended first."""
    if loop.is_closed():
        return
    # Not loop.stop(): it calls QApplication.exit(), after which every nested Qt event loop (pytest-qt's waits, a
    # dialog's exec) returns at once. The loop is only marked as stopped, then finished as qasync does on aboutToQuit.
    loop._QEventLoop__is_running = False
    loop._after_run_forever()
    asyncio.events._set_running_loop(None)
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


__all__ = ["EventLoop", "attach_loop", "close_loop", "detach_loop", "open_loop", "run"]
