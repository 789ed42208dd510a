"""GUI figures with the real window offscreen: the longest GUI-thread stall and the camera preview frame rate while an
answer is generated, against the idle frame rate. Runs in its own process (`python -m bench.gui ...`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def measure_gui(pair: Any, image: Path, *, quick: bool) -> dict[str, Any]:
    """Run the measurement in a child process (Qt wants its own) and return its figures."""
    command = [sys.executable, "-m", "bench.gui", "--model", str(pair.text), "--mmproj", str(pair.mmproj),
               "--max-tokens", "16" if quick else "24", "--idle-seconds", "1" if quick else "3"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "QT_QPA_PLATFORM": "offscreen", "OMP_WAIT_POLICY": "passive"}
    completed = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    if completed.returncode != 0:
        raise RuntimeError(f"GUI benchmark failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _run(args: argparse.Namespace) -> dict[str, Any]:
    import tempfile

    from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from app.desktop.loop import attach_loop, detach_loop
    from app.desktop.settings import Settings
    from app.desktop.window import MainWindow
    from tests.support.camera_video import write_test_video

    app = QApplication.instance() or QApplication([])
    loop = attach_loop(app)  # the window's asyncio loop runs whenever Qt's does (processEvents below)
    workdir = Path(tempfile.mkdtemp(prefix="llavacam-gui-bench-"))
    video = write_test_video(workdir / "camera.avi", frames=90, size=(640, 480), fps=30.0)
    settings = Settings(model_path=args.model, mmproj_path=args.mmproj, temperature=0.0,
                        max_tokens=args.max_tokens, n_ctx=2048)  # fmt: skip
    window = MainWindow(settings, workdir, camera_source=str(video))
    window.show()

    def spin_until(predicate: Any, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate() and time.monotonic() < deadline:
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)

    spin_until(lambda: window.model_ready and window.camera is not None and window.camera.frames_read > 5, 300)
    frames: list[float] = []
    assert window.camera is not None
    window.camera.frame_ready.connect(lambda: frames.append(time.perf_counter()))
    clock = QElapsedTimer()
    gaps: list[int] = []
    ticker = QTimer()
    ticker.setInterval(10)
    ticker.timeout.connect(lambda: gaps.append(clock.restart()))

    def rate(start: float, end: float) -> float:
        inside = [t for t in frames if start <= t <= end]
        return (len(inside) - 1) / (inside[-1] - inside[0]) if len(inside) > 1 else 0.0

    idle_start = time.perf_counter()
    spin_until(lambda: False, args.idle_seconds)
    idle_fps = rate(idle_start, time.perf_counter())

    done: list[bool] = []
    window.turn_finished.connect(lambda *_: done.append(True))
    window.prompt_input.setPlainText("What is in this picture?")
    clock.start()
    ticker.start()
    busy_start = time.perf_counter()
    window.send()
    spin_until(lambda: bool(done), 600)
    busy_end = time.perf_counter()
    ticker.stop()
    busy_fps = rate(busy_start, busy_end)
    window.close()
    spin_until(lambda: window.is_closed, 30)
    detach_loop(loop)
    longest = max(gaps[1:]) if len(gaps) > 1 else 0
    return {
        "gui_longest_stall_ms": max(0, longest - 10),
        "gui_timer_ticks": len(gaps),
        "preview_fps_idle": round(idle_fps, 1),
        "preview_fps_generating": round(busy_fps, 1),
        "preview_fps_ratio": round(busy_fps / idle_fps, 3) if idle_fps else 0.0,
        "answer_seconds": round(busy_end - busy_start, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--mmproj", required=True)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--idle-seconds", type=float, default=3.0)
    print(json.dumps(_run(parser.parse_args(argv))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
