"""Where the GUI thread stalls: a sampler thread that reads the GUI thread's Python stack while it is late.

The GUI thread's timer calls `beat()`; when no beat has come for `threshold_ms`, the sampler records the GUI
thread's stack every `sample_ms` until the next beat, and the GUI thread's CPU time over the stall (busy on the
GUI thread, or waiting: for the GIL, for a lock, or for a core on a loaded machine). `report()` lists the longest
stalls of each action with their most frequent stacks. `python -m bench.gui_actions --stall-report` prints it.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Stall:
    label: str
    started: float
    cpu_started: int
    queued_started: int = 0
    duration_ms: float = 0.0
    cpu_ms: float = 0.0
    queued_ms: float = 0.0  # runnable but not running: waiting for a core (the machine is loaded)
    samples: list[tuple[str, ...]] = field(default_factory=list)


def _frames(frame: object) -> tuple[str, ...]:
    """The stack as "file:line function" lines, outermost first; frames of the repo kept in full, others by name."""
    lines = []
    for entry in traceback.extract_stack(frame):  # type: ignore[arg-type]
        path = Path(entry.filename)
        try:
            shown = str(path.resolve().relative_to(REPO))
        except ValueError:
            shown = path.name
        lines.append(f"{shown}:{entry.lineno} {entry.name}")
    return tuple(lines)


class StallProbe:
    def __init__(self, threshold_ms: float = 20.0, sample_ms: float = 2.0) -> None:
        self.threshold = threshold_ms / 1000
        self.sample = sample_ms / 1000
        self.main = threading.get_ident()
        self.clock = time.pthread_getcpuclockid(self.main)
        self._schedstat = Path(f"/proc/self/task/{threading.get_native_id()}/schedstat")
        self.label = ""
        self.stalls: list[Stall] = []
        self._last = time.perf_counter()
        self._current: Stall | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stall-probe", daemon=True)
        self._thread.start()

    def beat(self) -> None:
        now = time.perf_counter()
        with self._lock:
            current, self._current = self._current, None
            if current is not None:
                current.duration_ms = (now - current.started) * 1000
                current.cpu_ms = (time.clock_gettime_ns(self.clock) - current.cpu_started) / 1e6
                current.queued_ms = (self._queued_ns() - current.queued_started) / 1e6
                self.stalls.append(current)
            self._last = now

    def _queued_ns(self) -> int:
        """The GUI thread's time runnable but waiting for a core, so far (Linux schedstat; 0 elsewhere)."""
        try:
            return int(self._schedstat.read_text().split()[1])
        except (OSError, IndexError, ValueError):
            return 0

    def start(self, label: str) -> None:
        self.label = label
        self.beat()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.sample):
            now = time.perf_counter()
            with self._lock:
                if now - self._last < self.threshold or not self.label:
                    continue
                if self._current is None:
                    self._current = Stall(self.label, self._last, time.clock_gettime_ns(self.clock),
                                          self._queued_ns())  # fmt: skip
                frame = sys._current_frames().get(self.main)
                if frame is not None:
                    self._current.samples.append(_frames(frame))

    def report(self, top: int = 3, depth: int = 14) -> str:
        by_label: dict[str, list[Stall]] = collections.defaultdict(list)
        for stall in self.stalls:
            by_label[stall.label].append(stall)
        out = []
        for label, stalls in by_label.items():
            stalls.sort(key=lambda s: -s.duration_ms)
            busiest = max(stall.cpu_ms for stall in stalls)  # on a loaded machine, what the GUI thread itself spent
            out.append(f"=== {label}: {len(stalls)} stalls over {self.threshold * 1000:.0f} ms, longest "
                       f"{stalls[0].duration_ms:.0f} ms, most on a core {busiest:.0f} ms")  # fmt: skip
            for stall in stalls[:top]:
                blocked = stall.duration_ms - stall.cpu_ms - stall.queued_ms
                out.append(f"--- {stall.duration_ms:.0f} ms: GUI thread on a core {stall.cpu_ms:.0f} ms, waiting for a "
                           f"core {stall.queued_ms:.0f} ms, blocked (GIL, locks, I/O) {blocked:.0f} ms; "
                           f"{len(stall.samples)} samples")  # fmt: skip
                counts = collections.Counter(stack[-depth:] for stack in stall.samples)
                for stack, count in counts.most_common(3):
                    out.append(f"  [{count}x]")
                    out.extend(f"    {line}" for line in stack)
        return "\n".join(out)


__all__ = ["Stall", "StallProbe"]
