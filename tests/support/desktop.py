"""Desktop test fixtures (a pytest plugin, see tests/conftest.py): a window on the tiny model with a video camera,
the window's asyncio loop for every Qt test, and a check that no test leaves a QThread or a thread running.

The loop is the app's own (`app.desktop.loop.EventLoop`) in qasync's `already_running` mode: pytest-qt's waits spin
Qt's event loop, which runs the loop's callbacks and tasks — so tests drive the window on the same loop the app
runs on, and wait on Qt signals as ever."""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from pathlib import Path

import pytest
from PySide6.QtCore import QThread
from PySide6.QtWidgets import QApplication

from app.desktop.loop import attach_loop, detach_loop
from app.desktop.settings import Settings
from app.desktop.window import MainWindow
from tests.support.camera_video import write_test_video

_threads: list[weakref.ref[QThread]] = []
_original_init = QThread.__init__


def _tracking_init(self: QThread, *args: object, **kwargs: object) -> None:
    _original_init(self, *args, **kwargs)
    _threads.append(weakref.ref(self))


LEAK_GRACE_S = 5.0  # a thread told to stop during teardown may take a moment to return


@pytest.fixture(autouse=True)
def no_dangling_qthreads(monkeypatch, request):
    """Fail any test that leaves a QThread or a Python thread running (napari's _dangling_qthreads, extended to
    threading.enumerate(), for the tests that drive Qt). Threads that were already running when the test started
    (session and module fixtures) are not the test's."""
    monkeypatch.setattr(QThread, "__init__", _tracking_init)
    _threads.clear()
    before = set(threading.enumerate())
    yield
    running = [t for ref in _threads if (t := ref()) is not None and t.isRunning()]
    assert not running, f"test left {len(running)} QThread(s) running"
    if "qtbot" not in request.fixturenames:
        return  # Python threads: checked for the Qt tests (core tests' servers keep idle connection threads)
    deadline = time.monotonic() + LEAK_GRACE_S
    # QThreads that ran Python code show up as dummy threads (never "ended" for Python): the check above has them.
    # An event loop's default-executor workers ("asyncio_N") belong to the loop: a loop the test ran with asyncio.run
    # shuts them down itself, and a server fixture's loop outlives the test on purpose.
    left = [t for t in threading.enumerate() if t not in before and not isinstance(t, threading._DummyThread)
            and not t.name.startswith("asyncio_")]
    for thread in left:
        thread.join(max(0.0, deadline - time.monotonic()))
    alive = sorted(t.name for t in left if t.is_alive())
    assert not alive, f"test left Python thread(s) running: {', '.join(alive)}"


@pytest.fixture(autouse=True)
def window_loop(request, no_dangling_qthreads):
    """The window's asyncio loop, for the tests that drive Qt (set up after the leak check, closed before it)."""
    if "qtbot" not in request.fixturenames:
        yield None
        return
    qtbot = request.getfixturevalue("qtbot")
    loop = attach_loop(QApplication.instance())
    yield loop
    try:
        # Every task must have ended (a window closed without waiting finishes its shutdown here).
        qtbot.waitUntil(lambda: not asyncio.all_tasks(loop), timeout=20000)
    finally:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        detach_loop(loop)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_test_video(tmp_path_factory.mktemp("camera") / "camera.avi")


@pytest.fixture
def settings(tiny_models) -> Settings:
    return Settings(
        model_path=str(tiny_models.text),
        mmproj_path=str(tiny_models.mmproj),
        temperature=0.0,
        max_tokens=12,
        threads=2,
        n_ctx=2048,
    )


@pytest.fixture
def make_window(qtbot, tmp_path, video):
    windows: list[MainWindow] = []

    def make(settings: Settings, camera: str | None = None, wait_model: bool = True) -> MainWindow:
        window = MainWindow(settings, tmp_path, camera_source=camera if camera is not None else str(video))
        windows.append(window)
        window.show()
        qtbot.waitExposed(window)
        if wait_model:
            qtbot.waitUntil(lambda: window.model_ready, timeout=30000)
        return window

    yield make
    for window in windows:
        close_window(qtbot, window)
        window.deleteLater()
    QApplication.processEvents()


def close_window(qtbot, window: MainWindow) -> None:
    """Close the window as the user does and wait until its shutdown has stopped and joined everything."""
    if window.is_closed:
        return
    window.close()
    qtbot.waitUntil(lambda: window.is_closed, timeout=20000)


def wait_for_frame(qtbot, window: MainWindow) -> None:
    qtbot.waitUntil(lambda: window.camera is not None and window.camera.newest() is not None, timeout=10000)


def ask(qtbot, window: MainWindow, question: str, timeout: int = 30000) -> dict:
    """Type `question`, press Send, and wait for the answer's bubble to be complete; returns its stats."""
    window.prompt_input.setPlainText(question)
    with qtbot.waitSignal(window.turn_finished, timeout=timeout) as blocker:
        window.send_button.click()
    return blocker.args[1]


def open_chat(qtbot, window: MainWindow, chat_id: int) -> None:
    """Open a stored chat and wait until it is on screen and the engine has its turns."""
    with qtbot.waitSignal(window.binding.chat_opened, timeout=20000):
        window.open_chat(chat_id)
