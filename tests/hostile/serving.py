"""A real `llavacam serve` in a subprocess on the tiny models, and raw HTTP requests to it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.uvicorn_server import free_port

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("LLAVACAM_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=REPO)  # fmt: skip


class ServeProcess:
    """`python -m app serve ...` on a free port; ready once it printed its "serving" line."""

    def __init__(self, *args: str, port: int | None = None) -> None:
        self.port = port or free_port()
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_WAIT_POLICY": "passive"}
        env.pop("LLAVACAM_DEBUG", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--port", str(self.port), "--threads", "2", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
        )  # fmt: skip
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if "serving" not in line:
            self.process.kill()
            errors = self.process.stderr.read() if self.process.stderr else ""
            raise AssertionError(f"serve did not start: {line!r} {errors}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)  # uvicorn is still starting; there is no event to wait on
        raise AssertionError("serve never answered /health")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def post(self, body: bytes | str, *, headers: dict[str, str] | None = None, path: str = "/v1/chat/completions",
             timeout: float = 60) -> httpx.Response:  # fmt: skip
        sent = {"content-type": "application/json", **(headers or {})}
        return httpx.post(self.url + path, content=body, headers=sent, timeout=timeout)

    def alive(self) -> bool:
        """Still running and still answering a real question."""
        if self.process.poll() is not None:
            return False
        reply = self.post('{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}',
                          headers=self.auth_headers)  # fmt: skip
        return reply.status_code == 200 and reply.json()["choices"][0]["message"]["role"] == "assistant"

    auth_headers: dict[str, str] = {}

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
