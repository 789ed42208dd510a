"""Watch mode's costs: `python -m bench.watch [--quick] [--seconds S] [--threads N]`.

1. CPU time over S seconds of a static scene from a 10 fps camera: watch mode (change detection, one question at
   the start) against a fixed 1 s interval (how the anchors' pages do it: a full question every second). Goal
   <= 0.05x.
2. Scene change → first token of the watch's answer, asked aside while a chat holds the cache (its KV stashed in
   a second sequence), against a fresh turn on the same new frame after `new_chat`. Goal <= 1.2x.

Full mode uses the random-weight TinyLlama-1.1B / CLIP-L pair (`write_benchmark_pair`, as `make bench`); random
weights cost what real ones cost. `--quick` runs the same code on the tiny models in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = Path(os.environ.get("LLAVACAM_BENCH_CACHE", Path.home() / ".cache" / "llavacam-bench"))


def _scene(colour: tuple[int, int, int], seed: int) -> np.ndarray:
    frame = np.full((480, 640, 3), 128, np.float32)
    frame[120:360, 220:420] = colour
    frame += np.random.default_rng(seed).normal(0, 4, frame.shape)
    return np.clip(frame, 0, 255).astype(np.uint8)


class LiveStatic:
    """A 10 fps camera filming a still scene (sensor noise on each frame) for `seconds`; the newest frame only."""

    def __init__(self, seconds: float, fps: float = 10.0) -> None:
        self.frames = [_scene((200, 40, 40), seed) for seed in range(8)]
        self.end = time.monotonic() + seconds
        self.period = 1.0 / fps
        self.start = time.monotonic()
        self.index = -1

    def next_frame(self):  # type: ignore[no-untyped-def]
        from app.core.watch import Frame

        now = time.monotonic()
        if now >= self.end:
            return None
        wanted = int((now - self.start) / self.period)
        if wanted <= self.index:  # wait for the camera's next frame
            time.sleep((wanted + 1) * self.period - (now - self.start))
            wanted += 1
        self.index = wanted
        return Frame(self.frames[wanted % len(self.frames)], wanted, datetime.now(timezone.utc))


def cpu_static(engine, seconds: float, interval: float | None) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from app.core.watch import EngineAnswerer, Watcher

    watcher = Watcher(EngineAnswerer(engine, max_tokens=32), "What is this?", interval=interval)
    cpu0, wall0 = time.process_time(), time.monotonic()
    watcher.run(LiveStatic(seconds))
    return {"cpu_s": time.process_time() - cpu0, "wall_s": time.monotonic() - wall0,
            "engine_calls": watcher.engine_calls}  # fmt: skip


def change_ttft(engine, reps: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from app.core.inference.sampling import GREEDY

    sampling = GREEDY.with_(max_tokens=4)
    aside, fresh = [], []
    for rep in range(reps):
        engine.new_chat().result()
        engine.ask("What is this?", _scene((40, 40, 200), 100 + rep), sampling).wait()
        engine.ask("And its colour?", None, sampling).wait()  # a chat holding its cache
        changed = _scene((40, 200, 40), 200 + rep)  # the scene changes: a new frame, never encoded
        aside.append(engine.ask_aside("What is this?", changed, sampling).wait().ttft_ms)
        engine.new_chat().result()
        other = _scene((200, 200, 40), 300 + rep)
        fresh.append(engine.ask("What is this?", other, sampling).wait().ttft_ms)
    return {"watch_ttft_ms": statistics.median(aside), "fresh_ttft_ms": statistics.median(fresh)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.watch")
    parser.add_argument("--quick", action="store_true", help="tiny models (seconds), for the suite")
    parser.add_argument("--seconds", type=float, default=None, help="length of the static-scene run")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from app.core.inference.engine import Engine, EngineConfig
    from models.make_test_models import write_benchmark_pair, write_tiny_pair

    seconds = args.seconds or (3.0 if args.quick else 30.0)
    reps = args.reps or (3 if args.quick else 3)
    cache = args.cache_dir / ("tiny" if args.quick else "real")
    cache.mkdir(parents=True, exist_ok=True)
    pair = write_tiny_pair(cache) if args.quick else write_benchmark_pair(cache)
    with Engine(pair.text, pair.mmproj, EngineConfig(n_ctx=2048, n_threads=args.threads)) as engine:
        watch = cpu_static(engine, seconds, None)
        fixed = cpu_static(engine, seconds, 1.0)
        ttft = change_ttft(engine, reps)
    report = {
        "size": "tiny" if args.quick else "real (TinyLlama-1.1B / CLIP-L shapes, random weights)",
        "threads": args.threads,
        "static_seconds": seconds,
        "watch": watch,
        "fixed_1s_interval": fixed,
        "static_cpu_ratio": watch["cpu_s"] / fixed["cpu_s"] if fixed["cpu_s"] else None,
        "static_cpu_goal": 0.05,
        **ttft,
        "change_ttft_ratio": ttft["watch_ttft_ms"] / ttft["fresh_ttft_ms"],
        "change_ttft_goal": 1.2,
        "threads_alive": threading.active_count(),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
