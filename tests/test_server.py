"""`llavacam serve` for real on 127.0.0.1 with the tiny model, driven by the official openai client."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from PIL import Image

from app.core.inference.engine import Engine, EngineConfig
from app.server.app import create_app
from app.server.messages import Limits
from tests.support.uvicorn_server import RunningServer

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def engine(tiny_models):
    with Engine(tiny_models.text, tiny_models.mmproj, EngineConfig(n_ctx=2048, n_threads=2)) as eng:
        yield eng


@pytest.fixture(scope="module")
def server(engine):
    running = RunningServer(create_app(engine, model_id="tiny-llava"))
    yield running
    running.stop()


@pytest.fixture
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def data_uri(color=(200, 30, 30), size=(48, 40)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def image_message(question: str, uri: str | None = None) -> dict:
    return {"role": "user", "content": [{"type": "image_url", "image_url": {"url": uri or data_uri()}},
                                         {"type": "text", "text": question}]}  # fmt: skip


def timings(completion) -> dict:
    return completion.model_extra["timings"]


def test_health_and_models(server, client):
    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ok"
    assert [m.id for m in client.models.list().data] == ["tiny-llava"]


def test_text_only_completion(client):
    completion = client.chat.completions.create(
        model="tiny-llava", messages=[{"role": "user", "content": "Hello?"}], max_tokens=8, temperature=0, seed=1
    )
    assert completion.choices[0].message.role == "assistant"
    assert completion.usage.completion_tokens >= 1
    assert completion.choices[0].finish_reason in {"stop", "length"}


def test_image_question_and_follow_up_without_re_encoding(client):
    uri = data_uri((20, 200, 60))
    first = client.chat.completions.create(model="tiny-llava", messages=[image_message("What is this?", uri)],
                                           max_tokens=8, temperature=0)  # fmt: skip
    assert timings(first)["image_encode_ms"] > 0
    follow = client.chat.completions.create(
        model="tiny-llava",
        messages=[image_message("What is this?", uri),
                  {"role": "assistant", "content": first.choices[0].message.content},
                  {"role": "user", "content": "What colour is it?"}],
        max_tokens=8, temperature=0,
    )  # fmt: skip
    assert timings(follow)["image_encode_ms"] == 0
    assert timings(follow)["image_cached"]
    assert timings(follow)["prompt_tokens"] < timings(first)["prompt_tokens"], "only the new tokens are evaluated"


def test_timings_are_also_in_headers(client):
    raw = client.chat.completions.with_raw_response.create(
        model="tiny-llava", messages=[image_message("What is this?")], max_tokens=4, temperature=0
    )
    assert float(raw.headers["x-llavacam-image-encode-ms"]) >= 0
    assert int(raw.headers["x-llavacam-prompt-tokens"]) > 0


def test_streaming_sends_pieces_then_usage(client):
    stream = client.chat.completions.create(model="tiny-llava", messages=[image_message("Describe it.")],
                                            max_tokens=12, temperature=0, stream=True)  # fmt: skip
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    last = chunks[-1]
    assert last.choices[0].finish_reason in {"stop", "length"}
    assert last.usage.completion_tokens >= 1
    assert "ttft_ms" in last.model_extra["timings"]
    assert len(chunks) > 3
    reference = client.chat.completions.create(model="tiny-llava", messages=[image_message("Describe it.")],
                                               max_tokens=12, temperature=0)  # fmt: skip
    assert text == reference.choices[0].message.content


def test_client_disconnect_cancels_generation(server, client, engine):
    stream = client.chat.completions.create(model="tiny-llava", messages=[image_message("Tell me everything.")],
                                            max_tokens=1500, temperature=0.9, seed=4, stream=True)  # fmt: skip
    for received, _chunk in enumerate(stream, start=1):
        if received == 3:
            break
    stream.close()
    deadline = time.monotonic() + 30
    while httpx.get(server.url + "/health").json()["busy"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not httpx.get(server.url + "/health").json()["busy"]
    history = engine.history
    assert history[-1].question == "Tell me everything."
    assert len(history[-1].answer) < 1500
    ok = client.chat.completions.create(model="tiny-llava", messages=[{"role": "user", "content": "Hi"}],
                                        max_tokens=3)  # fmt: skip
    assert ok.choices


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (json.dumps({"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}), 404, "model_not_found"),
        (json.dumps({"messages": [image_message("x", "data:text/plain;base64,aGVsbG8=")]}), 400, "invalid_image"),
        (
            json.dumps(
                {"messages": [image_message("x", "data:image/png;base64," + base64.b64encode(b"nope").decode())]}
            ),
            400,
            "invalid_image",
        ),
        (json.dumps({"messages": [image_message("x", "https://example.com/cat.png")]}), 400, "invalid_image"),
        (
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_uri()}}] * 2}
                    ]
                }
            ),
            400,
            "too_many_images",
        ),
        (
            json.dumps({"messages": [{"role": "user", "content": "why " * 4000}], "max_tokens": 8}),
            400,
            "context_length_exceeded",
        ),
        (
            json.dumps({"messages": [{"role": "user", "content": "why " * 4000}], "stream": True}),
            400,
            "context_length_exceeded",
        ),
        (json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000}), 400, None),
        (json.dumps({"messages": []}), 400, None),
    ],
)
def test_bad_requests_get_openai_style_errors_and_the_server_keeps_serving(server, client, payload, status, code):
    response = httpx.post(server.url + "/v1/chat/completions", content=payload,
                          headers={"content-type": "application/json"}, timeout=60)  # fmt: skip
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"]
    assert error["type"] == "invalid_request_error"
    if code:
        assert error["code"] == code
    assert client.chat.completions.create(model="tiny-llava", messages=[{"role": "user", "content": "Hi"}],
                                          max_tokens=2).choices  # fmt: skip


def test_oversized_body_is_refused(server):
    response = httpx.post(server.url + "/v1/chat/completions", content=b"x" * (21 * 1024 * 1024),
                          headers={"content-type": "application/json"}, timeout=60)  # fmt: skip
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_image_pixel_limit(engine):
    app = create_app(engine, model_id="tiny-llava", limits=Limits(max_image_pixels=1000))
    running = RunningServer(app)
    try:
        response = httpx.post(running.url + "/v1/chat/completions", timeout=60,
                              json={"messages": [image_message("x", data_uri(size=(64, 64)))]})  # fmt: skip
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "image_too_large"
    finally:
        running.stop()


def test_token_is_required_when_set(engine):
    running = RunningServer(create_app(engine, model_id="tiny-llava", token="s3cret"))
    try:
        anonymous = openai.OpenAI(base_url=running.url + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            anonymous.models.list()
        assert httpx.post(running.url + "/v1/chat/completions", json={}).status_code == 401
        trusted = openai.OpenAI(base_url=running.url + "/v1", api_key="s3cret", max_retries=0)
        assert trusted.chat.completions.create(model="tiny-llava", messages=[{"role": "user", "content": "Hi"}],
                                               max_tokens=2).choices  # fmt: skip
    finally:
        running.stop()


def test_binding_beyond_loopback_needs_a_token(tiny_models):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "app", "serve", "--model", str(tiny_models.text), "--host",
                             "0.0.0.0"], capture_output=True, text=True, timeout=60, env=env, cwd=REPO)  # fmt: skip
    assert result.returncode == 2
    assert "--token" in result.stderr


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_load_50_sequential_and_10_concurrent_requests(client):
    def one(i: int) -> str:
        reply = client.chat.completions.create(
            model="tiny-llava", messages=[image_message(f"Question {i}?", data_uri((i * 20 % 255, 80, 120)))],
            max_tokens=3, temperature=0,
        )  # fmt: skip
        return reply.choices[0].finish_reason

    for i in range(5):  # warm-up: allocator pools, caches
        one(i)
    before = rss_mb()
    sequential = [one(i) for i in range(50)]
    with ThreadPoolExecutor(max_workers=10) as pool:
        concurrent = list(pool.map(one, range(10)))
    after = rss_mb()
    assert len(sequential) == 50
    assert len(concurrent) == 10
    assert all(reason in {"stop", "length"} for reason in sequential + concurrent)
    print(f"\nRSS before {before:.0f} MB, after 60 requests {after:.0f} MB")
    assert after - before < 50, "memory stays flat under load"
