"""qasync under stress, as the window drives it: a long streamed answer, thousands of timer callbacks, calls from
threads, socket notifiers added and removed, garbage collection, and loops opened and closed (qasync#154 /
PYSIDE-3165 showed up as random crashes with PySide6 >= 6.8). Run in a child process, so a crash is a failure
with its signal, not a dead test session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CYCLES = 6


def test_the_windows_loop_survives_streaming_timers_notifiers_and_open_close_cycles(tiny_models):
    env = {**os.environ, "PYTHONPATH": str(REPO), "QT_QPA_PLATFORM": "offscreen", "OMP_WAIT_POLICY": "passive"}
    result = subprocess.run(
        [sys.executable, str(REPO / "tests" / "support" / "qasync_stress.py"), "ours", str(tiny_models.text),
         str(tiny_models.mmproj), str(CYCLES)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, f"the loop died (return code {result.returncode}): {result.stderr[-2000:]}"
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen == {**seen, "cycles": CYCLES, "timers": 3000 * CYCLES, "thread_calls": 500 * CYCLES,
                    "notifiers": 200 * CYCLES, "qtimers": 200 * CYCLES, "tokens": 300 * CYCLES}  # fmt: skip
    assert seen["pieces"] > 0
