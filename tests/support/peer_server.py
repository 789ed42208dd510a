"""A peer we did not write: llama-cpp-python's own OpenAI-compatible server (`python -m llama_cpp.server`, its
`server` extra) in a child process on a free 127.0.0.1 port, for tests that talk to it over HTTP."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from models.make_test_models import ModelPair
from tests.support.uvicorn_server import free_port


class PeerServer:
    """`python -m llama_cpp.server --model TEXT --clip_model_path MMPROJ ...EXTRA` on 127.0.0.1 until `stop()`;
    its output goes to `log`. It names its model by the path it was given (`model_id`)."""

    def __init__(self, pair: ModelPair, log: Path, *extra: str) -> None:
        self.port = free_port()
        self.model_id = str(pair.text)
        self.log = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(pair.text), "--clip_model_path",
             str(pair.mmproj), "--n_ctx", "2048", "--n_threads", "2", "--host", "127.0.0.1", "--port",
             str(self.port), *extra],
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.process.poll() is None, log.read_text(errors="replace")[-2000:]
            try:
                httpx.get(f"{self.url}/v1/models", timeout=2, headers={"Authorization": "Bearer peer"})
                return
            except httpx.HTTPError:
                time.sleep(0.2)  # a subprocess has no started-event to wait on
        self.stop()
        raise AssertionError("llama_cpp.server did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(20)
        self.log.close()
