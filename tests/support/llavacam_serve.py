"""`llavacam serve` itself, in a child process on a free 127.0.0.1 port, for tests that talk to it over HTTP."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.uvicorn_server import free_port

REPO = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def llavacam_serve(data_dir: Path, *args: str, model_id: str | None = "demo", n_ctx: int = 1024) -> Iterator[str]:
    """Run `python -m app serve --model-id MODEL_ID ...ARGS` (the built-in demo pair by default; None: ARGS name
    the files with --model and --mmproj) until the block ends; yields its base URL (http://127.0.0.1:PORT) once it
    accepts connections."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    model = ["--model-id", model_id] if model_id is not None else []
    server = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", *model, "--data-dir", str(data_dir), "--port", str(port), "--n-ctx",
         str(n_ctx), "--threads", "2", *args],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert "serving" in line, (line, server.stderr.read() if server.stderr else "")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)  # uvicorn prints before it listens; poll the port
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(30)
        for stream in (server.stdout, server.stderr):
            if stream is not None:
                stream.close()
