"""Clients that leave, and many clients at once, against the server app on a real engine (in this process, so the
test can see each Turn the engine ran: how it finished and what it generated)."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from app.core.inference.engine import Engine, EngineConfig
from app.server.app import create_app
from app.server.messages import Limits
from tests.support.uvicorn_server import RunningServer


@pytest.fixture(scope="module")
def engine(tiny_models):
    with Engine(tiny_models.text, tiny_models.mmproj, EngineConfig(n_ctx=2048, n_threads=2)) as eng:
        yield eng


@pytest.fixture(scope="module")
def turns(engine):
    """Every Turn the server starts, in order (the engine's own `ask`, observed, not replaced)."""
    started = []
    original = engine.ask

    def recording(*args, **kwargs):
        turn = original(*args, **kwargs)
        started.append(turn)
        return turn

    engine.ask = recording
    yield started
    del engine.ask


@pytest.fixture(scope="module")
def server(engine, turns):
    running = RunningServer(create_app(engine, model_id="tiny", limits=Limits(max_queue=6)))
    yield running
    running.stop()


def wait_idle(url: str) -> None:
    deadline = time.monotonic() + 60
    while httpx.get(url + "/health").json()["busy"] and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the server's own busy flag
    assert not httpx.get(url + "/health").json()["busy"]


def send_and_leave(port: int, body: dict) -> None:
    """Send a whole request, then close the connection without reading the answer."""
    data = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)  # fmt: skip


LONG_PROMPT = "Tell me everything about this long story. " * 33  # about 1,400 tokens: a long prompt evaluation


def test_non_streaming_client_that_leaves_cancels_its_answer(server, turns):
    before = len(turns)
    send_and_leave(server.port, {"messages": [{"role": "user", "content": "Tell me everything."}],
                                 "max_tokens": 4000, "temperature": 0.9, "seed": 4})  # fmt: skip
    wait_idle(server.url)
    assert len(turns) <= before + 1  # the client may be seen leaving before its turn even starts
    for turn in turns[before:]:
        turn.wait()
        assert turn.stats.finish_reason == "cancelled"


def test_streaming_client_that_leaves_during_prompt_evaluation_cancels_it(server, turns):
    before = len(turns)
    data = json.dumps({"messages": [{"role": "user", "content": LONG_PROMPT}], "max_tokens": 400, "stream": True})
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data.encode())  # fmt: skip
    wait_idle(server.url)
    for turn in turns[before:]:
        turn.wait()
        assert turn.stats.finish_reason == "cancelled"
        assert turn.tokens == []  # not one token generated for a client that was gone
    reply = httpx.post(server.url + "/v1/chat/completions", timeout=60,
                       json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})  # fmt: skip
    assert reply.status_code == 200


def test_many_streaming_clients_complete_or_get_503_and_never_mix(server):
    """24 concurrent streaming clients over 4 conversations (queue cap 6): each completes with its own answer or
    gets a 503 with Retry-After; /health answers throughout. Counts, not timings."""
    questions = [f"Conversation {i}: what is {i} plus {i}?" for i in range(4)]
    reference = []
    for question in questions:
        reply = httpx.post(server.url + "/v1/chat/completions", timeout=60, json={
            "messages": [{"role": "user", "content": question}], "max_tokens": 12, "temperature": 0})  # fmt: skip
        reference.append(reply.json()["choices"][0]["message"]["content"])

    def stream(i: int) -> tuple[int, str, str | None]:
        body = {"messages": [{"role": "user", "content": questions[i % 4]}], "max_tokens": 12, "temperature": 0,
                "stream": True}  # fmt: skip
        with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=120) as response:
            if response.status_code != 200:
                response.read()
                return response.status_code, response.json()["error"]["code"], response.headers.get("retry-after")
            text = ""
            for line in response.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    delta = json.loads(line[6:])["choices"][0]["delta"]
                    text += delta.get("content") or ""
            return 200, text, None

    health: list[int] = []
    stop = threading.Event()

    def poll_health() -> None:
        while not stop.is_set():
            health.append(httpx.get(server.url + "/health", timeout=10).status_code)

    poller = threading.Thread(target=poll_health)
    poller.start()
    try:
        with ThreadPoolExecutor(max_workers=24) as pool:
            results = list(pool.map(stream, range(24)))
    finally:
        stop.set()
        poller.join()
    completed = [(i, text) for i, (status, text, _) in enumerate(results) if status == 200]
    refused = [r for r in results if r[0] != 200]
    assert len(completed) + len(refused) == 24
    assert len(completed) >= 6
    assert all(status == 503 and code == "server_busy" and retry and int(retry) >= 1 for status, code, retry in refused)
    assert all(text == reference[i % 4] for i, text in completed), "each client got its own conversation's answer"
    assert health
    assert set(health) == {200}
