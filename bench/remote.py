"""`make bench` (remote part): first-token latency of `llavacam serve` on 127.0.0.1 against the local engine.

    python -m bench.remote [--quick] [--reps N] [--threads N] [--out bench/results/remote.json]

Same model files and threads on both sides, one question computing at a time (never both at once): the local
Engine in this process and `llavacam serve` in a subprocess, asked by the remote client (app.core.remote.aio) from
this process, take turns, alternating which goes first in each rep. Each rep asks each side about a fresh image
(one pixel changed, so no cache can reuse it) and then one follow-up. The remote time runs from before the frame is
JPEG-encoded to the first streamed piece, so the encode and HTTP are counted. Full mode (default, in `make bench`)
uses the real-size random-weight TinyLlama-1.1B / CLIP-L pair that `python -m bench` writes.
Goal: remote / local <= 1.1x for both. CPU time to the first piece (this process's, plus the server's for the
remote side) is reported next to the wall clock: on a machine shared with other work it is the steadier figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
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


def _process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of another process (the server), from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def local_rep(engine: Any, image: Any, sampling: Any) -> list[float]:
    """Wall and CPU milliseconds to the first piece, of a fresh image and its follow-up, through the local Engine:
    [turn-1 wall, follow-up wall, turn-1 CPU, follow-up CPU]."""
    engine.new_chat().result()
    walls, cpus = [], []
    for index, question in enumerate(QUESTIONS):
        started, cpu = time.perf_counter(), time.process_time()
        turn = engine.ask(question, image if index == 0 else None, sampling)
        next(iter(turn), None)
        walls.append((time.perf_counter() - started) * 1000)
        cpus.append((time.process_time() - cpu) * 1000)
        turn.wait()
    return walls + cpus


async def remote_rep(remote: Any, image: Any, sampling: Any, server_pid: int) -> list[float]:
    """The same through `llavacam serve`, from before the frame's JPEG encode to the first streamed piece; the CPU
    is this process's (encode, HTTP client) plus the server's."""
    remote.new_chat()
    walls, cpus = [], []
    for index, question in enumerate(QUESTIONS):
        started, cpu, server_cpu = time.perf_counter(), time.process_time(), _process_cpu_s(server_pid)
        turn = remote.ask(question, image if index == 0 else None, sampling)  # the JPEG encode happens here
        async for _piece in turn:
            walls.append((time.perf_counter() - started) * 1000)
            cpus.append((time.process_time() - cpu + _process_cpu_s(server_pid) - server_cpu) * 1000)
            break
        await turn.wait()
    return walls + cpus


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure(pair: Any, images: list[Any], args: argparse.Namespace, reps: int) -> tuple[list[Any], list[Any]]:
    with tempfile.TemporaryFile(mode="w+") as log:  # the server's output: a pipe nobody reads could fill, block it
        return _measure(pair, images, args, reps, log)


def _measure(pair: Any, images: list[Any], args: argparse.Namespace, reps: int, log: Any) -> tuple[Any, Any]:
    """Both sides loaded, one question computing at a time: each rep asks the local engine and the server in turn,
    alternating which goes first, so a machine that gets busier or quieter weighs on both alike."""
    import httpx

    from app.core.inference.engine import Engine, EngineConfig
    from app.core.inference.sampling import SamplingSettings
    from app.core.remote.aio import RemoteEngine
    from app.core.remote.protocol import ServerConfig

    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_WAIT_POLICY": "passive"}
    server = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--model", str(pair.text), "--mmproj", str(pair.mmproj), "--port",
         str(port), "--threads", str(args.threads), "--n-ctx", str(args.n_ctx)],
        stdout=log, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while True:
            if server.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"llavacam serve exited: {log.read()[-4000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)  # the server is loading the model; there is no event to wait on
            if time.monotonic() > deadline:
                raise RuntimeError("llavacam serve did not start")
        sampling = SamplingSettings(temperature=0.0, max_tokens=4)
        config = EngineConfig(n_ctx=args.n_ctx, n_threads=args.threads)
        with Engine(pair.text, pair.mmproj, config) as engine:
            engine.ask("Hello.", None, sampling).wait()  # warm-up, as the remote side gets

            async def run() -> tuple[list[Any], list[Any]]:
                local, remote_times = [], []
                async with RemoteEngine(ServerConfig(f"http://127.0.0.1:{port}")) as remote:
                    await remote.connect()
                    await remote.ask("Hello.", None, sampling).wait()  # warm-up: the connection, the server's engine
                    for rep in range(reps):
                        # Distinct images per side and rep: no cache anywhere can help.
                        if rep % 2 == 0:
                            local.append(local_rep(engine, images[2 * rep], sampling))
                            remote_times.append(await remote_rep(remote, images[2 * rep + 1], sampling, server.pid))
                        else:
                            remote_times.append(await remote_rep(remote, images[2 * rep + 1], sampling, server.pid))
                            local.append(local_rep(engine, images[2 * rep], sampling))
                        print(f"  rep {rep + 1}/{reps}: local {local[-1][0]:.0f}/{local[-1][1]:.0f} ms, "
                              f"serve {remote_times[-1][0]:.0f}/{remote_times[-1][1]:.0f} ms (wall, turn 1/follow-up)",
                              flush=True)  # fmt: skip
                return local, remote_times

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
    local, remote = measure(pair, images, args, reps)
    figures = {
        f"{side}_{what}_{clock}_ms": statistics.median(rep[column] for rep in runs)
        for clock, offset in (("ttft", 0), ("cpu", 2))
        for what, column in (("turn1", offset), ("followup", offset + 1))
        for side, runs in (("local", local), ("remote", remote))
    }
    ratios = [
        {"name": f"serve {label} / local {label}",
         "ratio": figures[f"remote_{key}_ms"] / figures[f"local_{key}_ms"], "target": 1.1, "kind": "max"}
        for label, key in (("turn-1 TTFT", "turn1_ttft"), ("follow-up TTFT", "followup_ttft"),
                           ("turn-1 CPU to first token", "turn1_cpu"), ("follow-up CPU to first token", "followup_cpu"))
    ]  # fmt: skip
    for row in ratios:
        row["met"] = row["ratio"] <= row["target"]
    for key, value in figures.items():
        print(f"{key:34} {value:10.1f}")
    for row in ratios:
        print(f"{row['name']:58} {row['ratio']:7.3f}  <= {row['target']:.2f}  {'yes' if row['met'] else 'NO'}")
    report = {"command": "python -m bench.remote" + (" --quick" if args.quick else "") + f" --reps {reps} "
              f"--threads {args.threads}", "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
              "models": {"text": str(pair.text), "mmproj": str(pair.mmproj)},
              "figures": figures, "ratios": ratios, "runs": {"local": local, "remote": remote}}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
