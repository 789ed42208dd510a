"""`make bench` (second part): many concurrent streaming clients against a real `llavacam serve` for two minutes.

    python -m bench.server_load [--seconds 120] [--clients 16] [--out bench/results/server_load.json]

Runs the server in a subprocess on the tiny test models (the server's own memory is what is measured, not the
model's), keeps `--clients` streaming clients busy on distinct conversations with images, and reports the server's
RSS after a warm-up and at the end (goal: growth under 50 MB), how many requests completed or got a 503 with
Retry-After, and whether /health kept answering.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str] | None = None) -> int:
    import httpx
    from PIL import Image

    sys.path.insert(0, str(REPO))
    from models.make_test_models import write_tiny_pair
    from tests.hostile.serving import ServeProcess

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--warm-up", type=float, default=15.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "server_load.json")
    args = parser.parse_args(argv)

    pair = write_tiny_pair(Path(tempfile.mkdtemp(prefix="llavacam-load-")))
    server = ServeProcess("--model", str(pair.text), "--mmproj", str(pair.mmproj), "--n-ctx", "2048")
    counts = {"completed": 0, "busy_503": 0, "other": 0, "health_ok": 0, "health_failed": 0}
    lock = threading.Lock()
    stop = threading.Event()

    def uri(i: int) -> str:
        buffer = io.BytesIO()
        Image.new("RGB", (64, 48), (i * 37 % 255, 90, 200 - i * 11 % 200)).save(buffer, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()

    def client(i: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            body = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": uri(i)}},
                                                              {"type": "text", "text": f"Client {i}, turn {n}?"}]}],
                    "max_tokens": 16, "stream": True}  # fmt: skip
            try:
                with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=120) as reply:
                    for _ in reply.iter_lines():
                        pass
                    kind = "completed" if reply.status_code == 200 else "busy_503" if (
                        reply.status_code == 503 and reply.headers.get("retry-after")) else "other"  # fmt: skip
            except httpx.HTTPError:
                kind = "other"
            with lock:
                counts[kind] += 1
            if kind == "busy_503":
                stop.wait(1.0)  # as Retry-After asks

    def health() -> None:
        while not stop.is_set():
            try:
                ok = httpx.get(server.url + "/health", timeout=10).status_code == 200
            except httpx.HTTPError:
                ok = False
            with lock:
                counts["health_ok" if ok else "health_failed"] += 1
            stop.wait(0.5)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    threads.append(threading.Thread(target=health))
    started = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        stop.wait(args.warm_up)
        after_warm_up = rss_mb(server.process.pid)
        stop.wait(max(0.0, args.seconds - args.warm_up))
        at_end = rss_mb(server.process.pid)
    finally:
        stop.set()
        for thread in threads:
            thread.join(180)
        alive = server.alive()
        server.stop()
    result: dict[str, Any] = {
        "seconds": round(time.monotonic() - started, 1), "clients": args.clients, **counts,
        "rss_after_warm_up_mb": round(after_warm_up, 1), "rss_at_end_mb": round(at_end, 1),
        "rss_growth_mb": round(at_end - after_warm_up, 1), "goal_growth_mb": 50, "server_alive": alive,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0 if alive and counts["other"] == 0 and counts["health_failed"] == 0 and result["rss_growth_mb"] < 50 else 1


if __name__ == "__main__":
    raise SystemExit(main())
