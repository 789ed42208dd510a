"""Child process: stress qasync's loop the way the window uses it, then print a JSON summary.

    python qasync_stress.py {ours|stock} TEXT_GGUF MMPROJ_GGUF CYCLES
Each cycle opens a loop, streams a long answer from the real tiny engine through `Turn.stream()` while thousands
of timer callbacks, cross-thread calls and socket-notifier add/remove cycles run, collects garbage, and closes
the loop. A crash (qasync#154 / PYSIDE-3165) kills the process: the parent sees the signal in its return code.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import socket
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import qasync  # noqa: E402
from PIL import Image  # noqa: E402
from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from app.core.inference.engine import Engine, EngineConfig  # noqa: E402
from app.core.inference.sampling import GREEDY  # noqa: E402
from app.desktop.loop import EventLoop  # noqa: E402

TIMERS = 3000
THREAD_CALLS = 500
NOTIFIER_CYCLES = 200


async def one_cycle(engine: Engine, loop: asyncio.AbstractEventLoop) -> dict[str, int]:
    counts = {"timers": 0, "thread_calls": 0, "notifiers": 0, "qtimers": 0}

    def tick() -> None:
        counts["timers"] += 1

    for i in range(TIMERS):
        loop.call_later((i % 50) / 10000, tick)
    done_from_threads = asyncio.Event()

    def from_thread() -> None:
        counts["thread_calls"] += 1
        if counts["thread_calls"] == THREAD_CALLS:
            done_from_threads.set()

    def hammer() -> None:
        for _ in range(THREAD_CALLS):
            loop.call_soon_threadsafe(from_thread)

    worker = loop.run_in_executor(None, hammer)

    def qtick() -> None:
        counts["qtimers"] += 1

    for _ in range(200):
        QTimer.singleShot(0, qtick)

    async def notifiers() -> None:
        a, b = socket.socketpair()
        try:
            for _ in range(NOTIFIER_CYCLES):
                readable = asyncio.Event()
                loop.add_reader(a.fileno(), readable.set)
                b.send(b"x")
                await readable.wait()
                loop.remove_reader(a.fileno())
                a.recv(1)
                counts["notifiers"] += 1
                if counts["notifiers"] % 50 == 0:
                    gc.collect()
        finally:
            a.close()
            b.close()

    turn = engine.ask("Tell me everything.", Image.new("RGB", (32, 32), "red"),
                      GREEDY.with_(max_tokens=300, ignore_eos=True))  # fmt: skip
    pieces = 0

    async def read() -> None:
        nonlocal pieces
        async for _piece in turn.stream():
            pieces += 1
            if pieces % 100 == 0:
                gc.collect()

    await asyncio.gather(read(), notifiers(), worker, done_from_threads.wait())
    while counts["timers"] < TIMERS or counts["qtimers"] < 200:
        await asyncio.sleep(0.005)
    counts["tokens"] = len(turn.tokens)
    counts["pieces"] = pieces
    return counts


def main(kind: str, text: str, mmproj: str, cycles: int) -> None:
    app = QApplication.instance() or QApplication([])
    factory = EventLoop if kind == "ours" else qasync.QEventLoop
    totals: dict[str, int] = {}
    with Engine(text, mmproj, EngineConfig(n_ctx=1024, n_threads=1)) as engine:
        for _ in range(cycles):
            loop = factory(app)
            asyncio.set_event_loop(loop)
            counts = loop.run_until_complete(one_cycle(engine, loop))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            asyncio.set_event_loop(None)
            app.processEvents()  # deleteLater'd objects go here
            gc.collect()
            engine.new_chat().result()
            for key, value in counts.items():
                totals[key] = totals.get(key, 0) + value
    totals["cycles"] = cycles
    print(json.dumps(totals))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
