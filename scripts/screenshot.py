"""Run the real window under Xvfb as a new user first sees it: the built-in demo pair answering about the sample
video (what the camera shows when there is no webcam). Asks two questions and saves a screenshot.

    python scripts/screenshot.py [--out docs/screenshot.png] [--size 1280x800] [--theme light|dark]

Runs itself under xvfb-run (Debian: apt-get install xvfb) unless DISPLAY is already set.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshot.png")
    parser.add_argument("--size", default="1280x800", help="window size, WIDTHxHEIGHT")
    parser.add_argument(
        "--theme",
        choices=["light", "dark"],
        default="light",
        help="the window's theme (dark: Fusion with the app's dark palette)",
    )
    args = parser.parse_args()
    if not os.environ.get("DISPLAY"):
        if shutil.which("xvfb-run") is None:
            print("Xvfb is not installed (Debian: apt-get install xvfb)", file=sys.stderr)
            return 1
        # xvfb-run starts a private X server, waits for it to be ready, and stops it afterwards.
        command = ["xvfb-run", "-a", "-s", "-screen 0 1280x800x24", sys.executable, __file__, "--out", str(args.out),
                   "--size", args.size, "--theme", args.theme]  # fmt: skip
        return subprocess.run(command).returncode
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    width, height = (int(n) for n in args.size.lower().split("x"))
    return shoot(args.out, (width, height), args.theme)


def shoot(out: Path, size: tuple[int, int] = (1280, 800), theme: str = "light") -> int:
    sys.path.insert(0, str(REPO))
    from PySide6.QtCore import QEventLoop
    from PySide6.QtWidgets import QApplication

    from app.core.resources import demo_model_files, sample_video_path
    from app.desktop.loop import attach_loop, detach_loop
    from app.desktop.settings import Settings
    from app.desktop.theme import apply_theme
    from app.desktop.window import MainWindow

    work = Path(tempfile.mkdtemp(prefix="llavacam-shot-"))
    text, mmproj = demo_model_files()
    app = QApplication.instance() or QApplication([])
    apply_theme(app, theme)  # what the window's theme setting does (Fusion and our dark palette for "dark")
    loop = attach_loop(app)  # the window's asyncio loop runs whenever Qt's does (processEvents below)
    settings = Settings(model_path=str(text), mmproj_path=str(mmproj), temperature=0.0, max_tokens=40,
                        n_ctx=2048)  # fmt: skip
    window = MainWindow(settings, work / "data", camera_source=str(sample_video_path()))
    window.resize(*size)
    window.show()

    def spin(predicate, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not predicate() and time.monotonic() < deadline:
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 30)

    spin(lambda: window.model_ready and window.camera is not None and window.camera.frames_read > 10, 60)
    window.capture()
    spin(lambda: window.pinned_ready, 30)
    done: list[bool] = []
    window.turn_finished.connect(lambda *_: done.append(True))
    window.prompt_input.setPlainText("What is this?")
    window.send()
    spin(lambda: bool(done), 60)
    window.prompt_input.setPlainText("What colour is it?")
    done.clear()
    window.send()
    spin(lambda: bool(done), 60)
    spin(lambda: False, 0.5)
    out.parent.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(out))
    window.close()
    spin(lambda: window.is_closed, 30)
    detach_loop(loop)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
