"""A peer we did not write: llama-cpp-python's own OpenAI-compatible server (`python -m llama_cpp.server`, its
`server` extra) in a child process on a free 127.0.0.1 port, for tests that talk to it over HTTP.

A pytest plugin (see tests/conftest.py): its module-scoped fixtures start one peer per test module that asks for it
(`peer_demo` on the trained pair, `peer_mtmd` and `peer_llava` on the tiny random-weight pair, `peer_rambling` on a
random-weight pair with a larger vocabulary)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from models.make_test_models import ModelPair, TextShape, write_mmproj, write_text_model
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
            env={**os.environ, "PYTHONUNBUFFERED": "1"},  # its prints (a client that left) reach the log as they happen
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

    def log_text(self) -> str:
        """What the peer has printed so far."""
        return Path(self.log.name).read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:  # uvicorn waits for a stream still being generated: do not leave it behind
            self.process.kill()
            self.process.wait(10)
        finally:
            self.log.close()


@pytest.fixture(scope="module")
def peer_demo(trained_models, tmp_path_factory):
    """The peer on the trained demo pair: its template reads list content, so the mtmd handler places the image."""
    server = PeerServer(trained_models, tmp_path_factory.mktemp("peer") / "demo.log", "--chat_format", "mtmd")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def peer_llava(tiny_models, tmp_path_factory):
    """The peer on the tiny random-weight pair in Vicuna's format (llava-1-5): long answers of nonsense."""
    server = PeerServer(tiny_models, tmp_path_factory.mktemp("peer") / "llava.log", "--chat_format", "llava-1-5")
    yield server
    server.stop()


PEER_TOKEN = "peer"  # peer_mtmd's --api_key


@pytest.fixture(scope="module")
def peer_mtmd(tiny_models, tmp_path_factory):
    """The peer on the tiny pair with --chat_format mtmd: TinyLlama's template concatenates `content`, so any message
    holding an image fails in the peer (HTTP 500 "can only concatenate str (not "list") to str")."""
    server = PeerServer(tiny_models, tmp_path_factory.mktemp("peer") / "mtmd.log", "--chat_format", "mtmd",
                        "--api_key", PEER_TOKEN)  # fmt: skip
    yield server
    server.stop()


@pytest.fixture(scope="module")
def peer_rambling(tmp_path_factory):
    """The peer (llava-1-5) on a random-weight pair whose vocabulary is padded with word pieces to 4096: long answers
    of nonsense that arrive piece by piece, for Stop.

    On the tiny pair's vocabulary (about 400 pieces, 256 of them bytes) the peer's answers stall: it keeps back every
    piece while a UTF-8 lead byte is among the last three bytes, greedy answers fall into loops of byte tokens, and it
    then sends nothing until the end (nor notices a client that left, which it checks only as it sends)."""
    folder = tmp_path_factory.mktemp("rambling")
    pair = ModelPair(write_text_model(folder / "rambling-llama.gguf", TextShape(n_vocab=4096)),
                     write_mmproj(folder / "rambling-mmproj.gguf", seed=1))  # fmt: skip
    server = PeerServer(pair, folder / "peer.log", "--chat_format", "llava-1-5")
    yield server
    server.stop()
