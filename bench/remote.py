"""`make bench` (remote part): first-token latency of `llavacam serve` on 127.0.0.1 against the local engine.

    python -m bench.remote [--quick] [--reps N] [--threads N] [--out bench/results/remote.json]

Same model files and threads on both sides, run one after the other (never at once): the local Engine in this
process, then `llavacam serve` in a subprocess asked by the remote client (app.core.remote.aio) from this process.
Each rep asks about a fresh image (one pixel changed, so no cache can reuse it) and then one follow-up. The remote
time runs from before the frame is JPEG-encoded to the first streamed piece, so the encode and HTTP are counted.
Goal: remote / local <= 1.1x for both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = Path(os.environ.get("LLAVACAM_BENCH_CACHE", Path.home() / ".cache" / "llavacam-bench"))
QUESTIONS = ("What is in this picture?", "What colour is the largest shape?")


def fresh_images(scene: Path, count: int) -> list[Any]:
    from PIL import Image

    from app.core.inference.images import load_image

    base = Image.open(scene).convert("RGB")
    images = []
    for index in range(count):
        copy = base.copy()
        copy.putpixel((index % copy.width, 0), (index * 37 % 256, 255 - index % 256, 17))
        images.append(load_image(copy))
    return images


def local_side(pair: Any, images: list[Any], args: argparse.Namespace) -> list[tuple[float, float]]:
    from app.core.inference.engine import Engine, EngineConfig
    from app.core.inference.sampling import SamplingSettings

    sampling = SamplingSettings(temperature=0.0, max_tokens=4)
    out = []
    with Engine(pair.text, pair.mmproj, EngineConfig(n_ctx=args.n_ctx, n_threads=args.threads)) as engine:
        engine.ask("Hello.", None, sampling).wait()  # warm-up, as the remote side gets
        for image in images:
            engine.new_chat().result()
            times = []
            for index, question in enumerate(QUESTIONS):
                started = time.perf_counter()
                turn = engine.ask(question, image if index == 0 else None, sampling)
                next(iter(turn), None)
                times.append((time.perf_counter() - started) * 1000)
                turn.wait()
            out.append((times[0], times[1]))
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def remote_side(pair: Any, images: list[Any], args: argparse.Namespace) -> list[tuple[float, float]]:
    import httpx

    from app.core.inference.sampling import SamplingSettings
    from app.core.remote.aio import RemoteEngine
    from app.core.remote.protocol import ServerConfig

    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_WAIT_POLICY": "passive"}
    server = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--model", str(pair.text), "--mmproj", str(pair.mmproj), "--port",
         str(port), "--threads", str(args.threads), "--n-ctx", str(args.n_ctx)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while True:
            assert server.poll() is None, server.stderr.read() if server.stderr else "serve exited"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)  # the server is loading the model; there is no event to wait on
            if time.monotonic() > deadline:
                raise RuntimeError("llavacam serve did not start")
        sampling = SamplingSettings(temperature=0.0, max_tokens=4)

        async def run() -> list[tuple[float, float]]:
            out = []
            async with RemoteEngine(ServerConfig(f"http://127.0.0.1:{port}")) as remote:
                await remote.connect()
                await remote.ask("Hello.", None, sampling).wait()  # warm-up: the connection and the server's engine
                for image in images:
                    remote.new_chat()
                    times = []
                    for index, question in enumerate(QUESTIONS):
                        started = time.perf_counter()  # before the JPEG encode in ask()
                        turn = remote.ask(question, image if index == 0 else None, sampling)
                        async for _piece in turn:
                            times.append((time.perf_counter() - started) * 1000)
                            break
                        await turn.wait()
                    out.append((times[0], times[1]))
            return out

        return asyncio.run(run())
    finally:
        server.terminate()
        server.wait(30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.remote", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="tiny test models, seconds; checks the plumbing")
    parser.add_argument("--reps", type=int, default=None, help="fresh images per side (default 3, quick 1)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "remote.json")
    args = parser.parse_args(argv)
    reps = args.reps or (1 if args.quick else 3)
    sys.path.insert(0, str(REPO))
    from bench.scene import write_scene
    from models.make_test_models import write_benchmark_pair, write_tiny_pair

    cache = args.cache_dir / ("tiny" if args.quick else "tinyllama-1.1b")
    pair = write_tiny_pair(cache) if args.quick else write_benchmark_pair(cache)
    images = fresh_images(write_scene(args.cache_dir / "scene-640x480.png"), 2 * reps)
    local = local_side(pair, images[:reps], args)  # distinct images per side: no cache anywhere can help
    remote = remote_side(pair, images[reps:], args)
    figures = {
        "local_turn1_ttft_ms": statistics.median(t[0] for t in local),
        "remote_turn1_ttft_ms": statistics.median(t[0] for t in remote),
        "local_followup_ttft_ms": statistics.median(t[1] for t in local),
        "remote_followup_ttft_ms": statistics.median(t[1] for t in remote),
    }
    ratios = [
        {"name": "serve turn-1 TTFT / local turn-1 TTFT",
         "ratio": figures["remote_turn1_ttft_ms"] / figures["local_turn1_ttft_ms"], "target": 1.1, "kind": "max"},
        {"name": "serve follow-up TTFT / local follow-up TTFT",
         "ratio": figures["remote_followup_ttft_ms"] / figures["local_followup_ttft_ms"], "target": 1.1,
         "kind": "max"},
    ]  # fmt: skip
    for row in ratios:
        row["met"] = row["ratio"] <= row["target"]
    for key, value in figures.items():
        print(f"{key:34} {value:10.1f}")
    for row in ratios:
        print(f"{row['name']:46} {row['ratio']:7.3f}  <= {row['target']:.2f}  {'yes' if row['met'] else 'NO'}")
    report = {"command": "python -m bench.remote" + (" --quick" if args.quick else "") + f" --reps {reps} "
              f"--threads {args.threads}", "models": {"text": str(pair.text), "mmproj": str(pair.mmproj)},
              "figures": figures, "ratios": ratios, "runs": {"local": local, "remote": remote}}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
