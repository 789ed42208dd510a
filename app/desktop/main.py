"""Start the window: `llavacam` / `python -m app` with no subcommand.

The window runs on qasync's loop (`app.desktop.loop.run`, started the way qasync documents for our Python versions):
one coroutine shows it and returns when its shutdown has joined every thread, which ends the process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from dataclasses import replace
from typing import Any, cast

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from app.core.paths import data_dir


def _debug_stall_watchdog(app: QApplication) -> QTimer:
    """With LLAVACAM_DEBUG set, log every GUI-thread stall over 200 ms (Anki does the same for its backend)."""
    timer = QTimer(app)
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gap = now - last[0]
        last[0] = now
        if gap > 0.25:  # 50 ms tick + 200 ms stall
            print(f"llavacam: GUI thread stalled {gap * 1000 - 50:.0f} ms", file=sys.stderr)

    timer.timeout.connect(tick)
    timer.start(50)
    return timer


def run_window(args: argparse.Namespace) -> int:
    from app.desktop.platform_check import check_platform

    if QApplication.instance() is None:
        advice = check_platform()  # before Qt aborts with "could not load the Qt platform plugin"
        if advice:
            print(advice, file=sys.stderr)
            return 2

    from app.core.models.resolve import resolve_model_files
    from app.desktop.loop import run
    from app.desktop.settings import LOCAL_ENGINE, load_settings

    base = data_dir(getattr(args, "data_dir", None))
    settings, warning = load_settings(base)
    # --model/--mmproj/--model-id follow the same rules as every command's (core's resolve_model_files).
    chosen = resolve_model_files(getattr(args, "model", None), getattr(args, "mmproj", None),
                                 getattr(args, "model_id", None), data_dir=base,
                                 catalog=getattr(args, "catalog", None))  # fmt: skip
    if chosen is not None:
        settings = replace(settings, model_path=str(chosen.text), mmproj_path=str(chosen.mmproj or ""),
                           template=chosen.template or "auto", engine=LOCAL_ENGINE)  # fmt: skip
    app = cast(QApplication, QApplication.instance() or QApplication(sys.argv[:1]))
    app.setApplicationName("LlavaCam")
    from app.desktop.theme import apply_theme

    apply_theme(app, settings.theme)  # the style sheet too; "system" follows the desktop
    app.setQuitOnLastWindowClosed(False)  # the window's own shutdown (async: it joins threads) ends the app
    return run(_show_window(app, settings, base, args, warning), app)


async def _show_window(app: QApplication, settings: Any, base: Any, args: argparse.Namespace,
                       warning: str | None) -> int:  # fmt: skip
    """The app's one coroutine, on qasync's loop: show the window, and return once it has closed for good."""
    from app.desktop.window import open_window

    window = await open_window(settings, base, camera_source=getattr(args, "camera", None),
                               catalog=getattr(args, "catalog", None), offer_setup=True)  # fmt: skip
    closed: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def on_closed() -> None:
        if not closed.done():
            closed.set_result(0)

    window.closed.connect(on_closed)
    if warning:
        window.show_notice(warning)
    window.show()

    # Ctrl+C / SIGTERM close the window like the close button: cancel, join threads, exit 0.
    def request_close(*_: Any) -> None:
        QTimer.singleShot(0, window.close)

    signal.signal(signal.SIGINT, request_close)
    signal.signal(signal.SIGTERM, request_close)
    heartbeat = QTimer()  # lets the Python interpreter run signal handlers while Qt's loop waits
    heartbeat.timeout.connect(lambda: None)
    heartbeat.start(200)
    watchdog = _debug_stall_watchdog(app) if os.environ.get("LLAVACAM_DEBUG") else None
    ready_file = os.environ.get("LLAVACAM_READY_FILE")  # for automation: written once the window is up
    if ready_file:
        QTimer.singleShot(0, lambda: open(ready_file, "w").close())
    try:
        return int(await closed)
    finally:
        heartbeat.stop()
        if watchdog is not None:
            watchdog.stop()
