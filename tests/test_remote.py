"""Engines on other machines: the protocol layer, token/TLS trust, and `llavacam ask --server` end to end against
real servers on 127.0.0.1: `llavacam serve` on the tiny model, llama-cpp-python's own server, and a labelled stub."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from app.cli import main
from app.core.inference.answerer import PastTurn
from app.core.inference.engine import Engine, EngineConfig
from app.core.inference.images import RGBImage, load_image
from app.core.inference.sampling import SamplingSettings
from app.core.remote import aio
from app.core.remote.protocol import (
    Conversation,
    RemoteError,
    SentTurn,
    ServerConfig,
    SSEDecoder,
    StreamState,
    check_image_seen,
    error_for_status,
    image_data_url,
    user_message,
    validate_json_output,
)
from app.core.remote.trust import TrustError, load_token, parse_fingerprint, pinned_context, save_token
from app.server.app import create_app
from tests.support.openai_stub import image_dropping_stub
from tests.support.peer_server import PEER_TOKEN
from tests.support.uvicorn_server import RunningServer, free_port

GREEDY = SamplingSettings(temperature=0.0, max_tokens=12)
CONFIG = ServerConfig("http://127.0.0.1:9")


def red_image(size=(640, 480)) -> RGBImage:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format="PNG")
    return load_image(buffer.getvalue())


# --- the protocol, no I/O ------------------------------------------------------------------------------------------


def test_the_frame_is_downscaled_jpeg_and_comes_before_the_question():
    url = image_data_url(red_image((2000, 1000)), max_side=512)
    header, data = url.split(",", 1)
    assert header == "data:image/jpeg;base64"
    decoded = Image.open(io.BytesIO(base64.b64decode(data)))
    assert (decoded.format, decoded.size) == ("JPEG", (512, 256))
    content = user_message("what colour?", url)["content"]
    assert [part["type"] for part in content] == ["image_url", "text"]
    assert content[1]["text"] == "what colour?"


def test_sse_decoder_reassembles_events_split_anywhere():
    stream = b'data: {"choices":[{"delta":{"content":"He"}}]}\r\n\r\n: ping\n\ndata: {"choices":[{"delta":' \
             b'{"content":"llo"},"finish_reason":"stop"}],"usage":{"prompt_tokens":170}}\n\ndata: [DONE]\n\n'
    for size in (1, 3, 7, len(stream)):
        decoder, state = SSEDecoder(), StreamState()
        pieces = [p for i in range(0, len(stream), size) for d in decoder.feed(stream[i : i + size])
                  for p in state.apply(d)]  # fmt: skip
        assert pieces == ["He", "llo"]
        assert (state.text, state.finish_reason, state.prompt_tokens, state.done) == ("Hello", "stop", 170, True)


def test_failures_become_our_own_errors_that_say_what_to_do():
    unauthorized = error_for_status(401, b'{"detail":"Invalid API key"}', CONFIG, sent_image=False)
    assert unauthorized.kind == "unauthorized"
    assert str(unauthorized) == ("127.0.0.1:9 refused the token (Invalid API key): give the token the server was "
                                 "started with")  # fmt: skip
    list_content = error_for_status(
        500, b'{"error":{"message":"can only concatenate str (not \\"list\\") to str"}}', CONFIG, sent_image=True
    )
    assert list_content.kind == "list_content"
    assert str(list_content).startswith("127.0.0.1:9 cannot read a message holding an image: its chat template "
                                        "joins text only")  # fmt: skip
    assert error_for_status(404, b'{"error":{"code":"model_not_found","message":"x"}}', CONFIG,
                            sent_image=False).kind == "unknown_model"  # fmt: skip


def test_a_prompt_too_small_for_an_image_means_the_server_dropped_it():
    conversation = Conversation(None, [SentTurn("what colour is it?", "data:image/jpeg;base64,AA==")])
    state = StreamState(usage={"prompt_tokens": 12})
    with pytest.raises(RemoteError, match="answered without looking at the frame: the prompt it read was 12 "
                       "tokens") as caught:  # fmt: skip
        check_image_seen(state, conversation, CONFIG)
    assert caught.value.kind == "image_ignored"
    check_image_seen(StreamState(usage={"prompt_tokens": 170}), conversation, CONFIG)  # an image fits: no error


def test_answers_that_ignore_the_json_schema_are_named():
    schema = {"type": "object", "required": ["colour"], "properties": {"colour": {"type": "string"}}}
    assert validate_json_output('{"colour": "red"}', schema) == {"colour": "red"}
    with pytest.raises(RemoteError, match="the server ignored the requested JSON format: its answer is not JSON"):
        validate_json_output("It is red.", schema)
    with pytest.raises(RemoteError, match="answer.colour should be string, not int"):
        validate_json_output('{"colour": 3}', schema)


# --- trust -----------------------------------------------------------------------------------------------------------


def test_the_token_file_is_readable_only_by_the_user(tmp_path):
    path = tmp_path / "server-token"
    os.umask(0o022)
    save_token(path, "s3cret\n")
    assert (path.stat().st_mode & 0o777, load_token(path)) == (0o600, "s3cret")
    path.chmod(0o644)
    with pytest.raises(TrustError, match="can be read by other users \\(mode 644\\)"):
        load_token(path)
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    path.unlink()
    path.symlink_to(target)
    save_token(path, "new")  # the planted link is replaced, not written through
    assert (target.read_text(), path.is_symlink(), load_token(path)) == ("keep", False, "new")


def test_a_pinned_fingerprint_must_match_the_presented_certificate():
    der = b"not really a certificate"
    with pytest.raises(TrustError, match="is not a SHA-256 fingerprint"):
        parse_fingerprint("AB:CD")
    with pytest.raises(TrustError, match="someone may be in between"):
        pinned_context(der, "00" * 32)


# --- end to end: llavacam serve on 127.0.0.1 ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(tiny_models):
    with Engine(tiny_models.text, tiny_models.mmproj, EngineConfig(n_ctx=2048, n_threads=2)) as eng:
        yield eng


@pytest.fixture(scope="module")
def llavacam_serve(engine):
    running = RunningServer(create_app(engine, model_id="tiny-llava", token="sek"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def red_png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("remote-images") / "red.png"
    Image.new("RGB", (640, 480), (200, 30, 30)).save(path)
    return path


def local_answers(engine: Engine, image: RGBImage, questions: list[str]) -> list[str]:
    """What this computer answers to the same JPEG frame (the server sees the client's JPEG, not the PNG)."""
    sent = load_image(base64.b64decode(image_data_url(image).split(",", 1)[1]))
    from app.core.inference.templates import DEFAULT_SYSTEM_PROMPT

    engine.new_chat(DEFAULT_SYSTEM_PROMPT).result()
    return [engine.ask(q, sent if i == 0 else None, GREEDY).wait() and engine.history[-1].answer
            for i, q in enumerate(questions)]  # fmt: skip


def ask_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["ask", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_ask_server_streams_the_same_answers_as_this_computer(llavacam_serve, engine, red_png, capsys):
    code, out, err = ask_cli(capsys, "--server", llavacam_serve.url, "--token", "sek", "--image", str(red_png),
                             "-q", "What colour is it?", "-q", "Where is it?", "--temperature", "0",
                             "--max-tokens", "12", "--json")  # fmt: skip
    assert (code, err) == (0, "")
    records = [json.loads(line) for line in out.splitlines()]
    expected = local_answers(engine, load_image(red_png), ["What colour is it?", "Where is it?"])
    assert [r["answer"] for r in records] == expected
    assert [r["model"] for r in records] == ["tiny-llava", "tiny-llava"]
    assert records[0]["prompt_tokens"] > 100  # the image was read (the tiny projector gives 144 positions)
    assert (records[0]["image_cached"], records[1]["image_cached"]) == (False, True)  # the server kept it


def test_follow_ups_send_the_conversation_with_each_image_encoded_once(llavacam_serve, engine, red_png,
                                                                        monkeypatch):  # fmt: skip
    from app.core.remote import protocol

    encoded: list[str] = []
    real = protocol.image_data_url
    monkeypatch.setattr(protocol, "image_data_url", lambda *a, **k: encoded.append("x") or real(*a, **k))
    bodies: list[dict] = []

    async def record(request: httpx.Request) -> None:
        if request.url.path.endswith("/chat/completions"):
            bodies.append(json.loads(request.content))

    async def run() -> list[str]:
        remote = aio.RemoteEngine(ServerConfig(llavacam_serve.url, "sek"))
        remote._client = httpx.AsyncClient(event_hooks={"request": [record]}, timeout=60)
        async with remote:
            await remote.connect()  # learns the encoder's input side from /v1/models
            answers = []
            for index, question in enumerate(["What colour?", "And the shape?", "Anything else?"]):
                turn = remote.ask(question, load_image(red_png) if index == 0 else None, GREEDY)
                await turn.wait()
                answers.append(turn.text)
            return answers

    answers = asyncio.run(run())
    assert len(encoded) == 1
    sent = bodies[0]["messages"][0]["content"][0]["image_url"]["url"]
    side = 2 * engine.info.image_size  # downscaled to what the model needs, as this computer keeps frames
    assert Image.open(io.BytesIO(base64.b64decode(sent.split(",", 1)[1]))).size == (side, side * 3 // 4)
    last = bodies[-1]["messages"]
    assert [m["role"] for m in last] == ["user", "assistant", "user", "assistant", "user"]
    assert last[0]["content"][0]["image_url"]["url"] == bodies[0]["messages"][0]["content"][0]["image_url"]["url"]
    assert [last[1]["content"], last[3]["content"], last[4]["content"]] == [*answers[:2], "Anything else?"]


def test_stop_closes_the_stream_and_the_server_answers_the_next_question(llavacam_serve, red_png):
    async def run() -> tuple[str, str, str]:
        async with aio.RemoteEngine(ServerConfig(llavacam_serve.url, "sek")) as remote:
            turn = remote.ask("Describe it at length.", load_image(red_png),
                              SamplingSettings(temperature=0.0, max_tokens=400))  # fmt: skip
            async for _piece in turn:
                turn.cancel()  # Stop after the first piece
            stats = await turn.wait()
            follow = remote.ask("Short?", None, GREEDY)
            await follow.wait()
            return stats.finish_reason, turn.text, follow.text

    finish, stopped, follow = asyncio.run(run())
    assert finish == "cancelled"
    assert len(stopped) > 0
    assert follow  # the server was freed for the next request


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--token", "wrong"], "llavacam: error: 127.0.0.1:{port} refused the token (Missing or wrong API key: "
                               "send 'Authorization: Bearer <token>'): give the token the server was started with"),
        (["--token", "sek", "--server-model", "big-one"], "llavacam: error: the server has no model 'big-one'; it "
                                                          "serves 'tiny-llava': pick one of those"),
    ],
)  # fmt: skip
def test_wrong_token_and_unknown_model_are_named(llavacam_serve, red_png, capsys, args, message):
    code, out, err = ask_cli(capsys, "--server", llavacam_serve.url, *args, "--image", str(red_png), "-q", "hi")
    assert (code, out, err.strip()) == (2, "", message.format(port=llavacam_serve.port))


def test_an_unreachable_server_is_named(capsys):
    port = free_port()
    code, out, err = ask_cli(capsys, "--server", f"http://127.0.0.1:{port}", "-q", "hi")
    assert code == 2
    assert err.startswith(f"llavacam: error: cannot reach 127.0.0.1:{port} (")
    assert err.strip().endswith("is the computer on, and the server running at that address?")


def test_a_model_without_vision_is_named_before_the_frame_is_sent(tiny_models, red_png, capsys):
    with Engine(tiny_models.text, None, EngineConfig(n_ctx=512, n_threads=1)) as text_only:
        running = RunningServer(create_app(text_only, model_id="text-only"))
        try:
            code, out, err = ask_cli(capsys, "--server", running.url, "--image", str(red_png), "-q", "hi")
        finally:
            running.stop()
    assert (code, err.strip()) == (2, f"llavacam: error: the model on 127.0.0.1:{running.port} has no vision (the "
                                      "server says so): load a vision model with its projector there")  # fmt: skip


# --- a labelled stub: a server that ignores the image ----------------------------------------------------------------


def test_a_server_that_ignores_the_image_is_named(red_png, capsys):
    running = RunningServer(image_dropping_stub())
    try:
        code, out, err = ask_cli(capsys, "--server", running.url, "--image", str(red_png), "-q", "What colour?")
        text_code, text_out, _ = ask_cli(capsys, "--server", running.url, "-q", "Say something.")
    finally:
        running.stop()
    assert (code, out) == (2, "It is blue.")  # streamed as it came, then the notice
    assert err.strip() == (f"llavacam: error: 127.0.0.1:{running.port} answered without looking at the frame: the "
                           "prompt it read was 9 tokens, too few to hold an image. The server drops images (a "
                           "text-only model, or a server without vision support): load a vision model with its "
                           "projector there, or ask without a frame")  # fmt: skip
    assert (text_code, text_out) == (0, "It is blue.\n")  # without a frame there is nothing to check


# --- end to end: a peer we did not write, llama-cpp-python's own server ---------------------------------------------


def test_peer_server_streams_what_it_answers_whole(peer_llava, red_png, capsys):
    code, out, err = ask_cli(capsys, "--server", peer_llava.url, "--image", str(red_png), "-q", "What colour?",
                             "-q", "Sure?", "--temperature", "0", "--max-tokens", "8", "--json")  # fmt: skip
    assert (code, err) == (0, "")
    records = [json.loads(line) for line in out.splitlines()]
    # The same conversation asked whole (not streamed) of the same server, greedy: the same words.
    url = image_data_url(load_image(red_png))
    from app.core.inference.templates import DEFAULT_SYSTEM_PROMPT

    messages = [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}, user_message("What colour?", url)]
    whole = httpx.post(f"{peer_llava.url}/v1/chat/completions", timeout=120, json={
        "messages": messages, "temperature": 0, "max_tokens": 8, "top_p": 0.95})  # fmt: skip
    assert records[0]["answer"] == whole.json()["choices"][0]["message"]["content"]
    assert records[0]["model"] == str(Path(peer_llava.process.args[4]))  # the peer names models by path
    assert records[1]["answer"]
    assert records[0]["finish_reason"] == "length"


def test_peer_stop_closes_the_stream(peer_llava, red_png):
    async def run() -> tuple[str, str]:
        async with aio.RemoteEngine(ServerConfig(peer_llava.url)) as remote:
            turn = remote.ask("Describe it.", load_image(red_png), SamplingSettings(temperature=0, max_tokens=300))
            async for _piece in turn:
                turn.cancel()
            stats = await turn.wait()
            follow = remote.ask("And?", None, GREEDY)
            await follow.wait()
            return stats.finish_reason, follow.text

    finish, follow = asyncio.run(run())
    assert finish == "cancelled"
    assert follow


def test_peer_with_mtmd_and_a_text_template_says_what_happened(peer_mtmd, red_png, capsys):
    code, out, err = ask_cli(capsys, "--server", peer_mtmd.url, "--token", "peer", "--image", str(red_png),
                             "-q", "What colour?")  # fmt: skip
    assert (code, out) == (2, "")
    assert err.startswith(f"llavacam: error: 127.0.0.1:{peer_mtmd.port} cannot read a message holding an image: "
                          "its chat template joins text only (the server said HTTP 500 'can only concatenate str "
                          "(not \"list\") to str').")  # fmt: skip
    assert "start it with --clip_model_path and a --chat_format that places images for this model" in err


def test_the_stdlib_client_names_the_peers_silent_failure_for_a_text_only_template(peer_mtmd, red_png):
    """The window's and the phone's transport meets what the CLI's does: the peer answers 200, sends nothing and
    says why only when asked whole (HTTP 500), so the client asks it whole."""
    from app.core.remote.stdlib import RemoteAnswerer, RemoteChat

    answerer = RemoteAnswerer(RemoteChat(peer_mtmd.url, PEER_TOKEN))
    stream = answerer.ask("What colour?", load_image(red_png), GREEDY)
    with pytest.raises(RemoteError) as caught:
        stream.wait()
    assert caught.value.kind == "list_content"
    assert str(caught.value) == (
        f"127.0.0.1:{peer_mtmd.port} cannot read a message holding an image: its chat template joins text only (the "
        "server said HTTP 500 'can only concatenate str (not \"list\") to str'). On llama-cpp-python's server this "
        "means the model's template cannot take an image: start it with --clip_model_path and a --chat_format that "
        "places images for this model (such as llava-1-5), or choose a server that reads the model's own template "
        "(llavacam serve, llama-server)")  # fmt: skip
    assert answerer.conversation.turns == []  # a failed turn is not part of the conversation


@pytest.fixture(scope="module")
def demo_red_square(tmp_path_factory) -> tuple[Path, Path]:
    """A red square of the demo's world, and the same picture with red and blue swapped (a blue square)."""
    import random

    from models.demo_scenes import Scene, draw

    rgb = draw(Scene("square", "red", "centre", (245, 245, 245), 64, 64), random.Random(7))
    folder = tmp_path_factory.mktemp("demo-scenes")
    Image.fromarray(rgb).save(folder / "red.png")
    Image.fromarray(rgb[..., ::-1].copy()).save(folder / "blue.png")
    return folder / "red.png", folder / "blue.png"


def test_ask_server_gets_right_answers_from_the_peer_on_the_demo_pair(peer_demo, demo_red_square, capsys):
    red, swapped = demo_red_square
    code, out, err = ask_cli(capsys, "--server", peer_demo.url, "--image", str(red), "-q", "What colour is the shape?",
                             "--temperature", "0", "--max-tokens", "24", "--json")  # fmt: skip
    assert (code, err) == (0, "")
    records = [json.loads(line) for line in out.splitlines()]
    assert [(r["answer"], r["model"], r["finish_reason"]) for r in records] == [
        ("It is red.", peer_demo.model_id, "stop")]
    code, out, err = ask_cli(capsys, "--server", peer_demo.url, "--image", str(swapped), "-q",
                             "What colour is the shape?", "--temperature", "0", "--max-tokens", "24")  # fmt: skip
    assert (code, out, err) == (0, "It is blue.\n", "")  # the frame reached the peer with its channels in order


def test_a_follow_up_through_the_peer_on_the_demo_pair_is_answered_right(peer_demo, demo_red_square, capsys):
    red, _ = demo_red_square
    code, out, err = ask_cli(capsys, "--server", peer_demo.url, "--image", str(red), "-q", "What colour is the shape?",
                             "-q", "What shape is it?", "--temperature", "0", "--max-tokens", "24")  # fmt: skip
    assert (code, out.splitlines(), err) == (
        0, ["> What colour is the shape?", "It is red.", "> What shape is it?", "It is a square."], "")


def test_peer_wrong_token(peer_mtmd, capsys):
    code, out, err = ask_cli(capsys, "--server", peer_mtmd.url, "--token", "nope", "-q", "hi")
    assert (code, err.strip()) == (2, f"llavacam: error: 127.0.0.1:{peer_mtmd.port} refused the token (Invalid API "
                                      "key): give the token the server was started with")  # fmt: skip


# --- constrained output: response_format ------------------------------------------------------------------------------

COLOUR_SCHEMA = {"type": "object", "properties": {"colour": {"enum": ["red", "green", "blue"]}}, "required": ["colour"]}
COLOUR_FORMAT = {"type": "json_schema", "json_schema": {"name": "colour", "schema": COLOUR_SCHEMA}}


def ask_with_format(url: str, token: str | None, image: RGBImage | None) -> aio.RemoteTurn:
    async def run() -> aio.RemoteTurn:
        async with aio.RemoteEngine(ServerConfig(url, token)) as remote:
            sampling = SamplingSettings(temperature=0.0, max_tokens=64)
            turn = remote.ask("What colour is it? Answer in JSON.", image, sampling, response_format=COLOUR_FORMAT)
            await turn.wait()
            return turn

    return asyncio.run(run())


def test_llavacam_serve_follows_a_json_schema(llavacam_serve, red_png):
    turn = ask_with_format(llavacam_serve.url, "sek", load_image(red_png))
    assert json.loads(turn.text) == turn.json
    assert turn.json["colour"] in ("red", "green", "blue")  # the random-weight model obeys the grammar, not sense
    assert set(turn.json) == {"colour"}


def test_an_unusable_schema_is_refused_by_llavacam_serve(llavacam_serve):
    reply = httpx.post(f"{llavacam_serve.url}/v1/chat/completions", headers={"Authorization": "Bearer sek"},
                       timeout=60, json={"messages": [{"role": "user", "content": "hi"}],
                                         "response_format": {"type": "xml"}})  # fmt: skip
    assert (reply.status_code, reply.json()["error"]["message"]) == (
        400, 'response_format.type must be "text", "json_object" or "json_schema"')


def test_a_server_that_ignores_the_schema_is_named():
    running = RunningServer(image_dropping_stub())
    try:
        with pytest.raises(RemoteError, match="^the server ignored the requested JSON format: its answer is not JSON "
                           "\\('It is blue.'\\)$") as caught:  # fmt: skip
            ask_with_format(running.url, None, None)
    finally:
        running.stop()
    assert caught.value.kind == "invalid_output"


# --- TLS: a home server's self-signed certificate -------------------------------------------------------------------


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory) -> tuple[Path, Path, str]:
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
               "-days", "2", "-subj", "/CN=home-server.lan"]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)
    printed = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(cert)], check=True,
                             capture_output=True, text=True).stdout  # fmt: skip
    return key, cert, printed.strip().split("=", 1)[1]


def test_a_pinned_self_signed_certificate_is_trusted_and_a_wrong_pin_sends_nothing(self_signed, capsys):
    import uvicorn

    key, cert, fingerprint = self_signed
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(image_dropping_stub(), host="127.0.0.1", port=port, log_level="warning",
                                           ssl_keyfile=str(key), ssl_certfile=str(cert)))  # fmt: skip
    import threading

    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)  # uvicorn has no started-event to wait on
        url = f"https://127.0.0.1:{port}"
        plain = ask_cli(capsys, "--server", url, "-q", "hi")
        pinned = ask_cli(capsys, "--server", url, "--fingerprint", fingerprint, "-q", "hi")
        wrong = ask_cli(capsys, "--server", url, "--fingerprint", "00" * 32, "-q", "hi")
    finally:
        server.should_exit = True
        thread.join(10)
    assert plain[0] == 2
    assert "CERTIFICATE_VERIFY_FAILED" in plain[2]  # not trusted without the pin
    assert pinned == (0, "It is blue.\n", "")
    assert wrong[0] == 2
    assert wrong[2].startswith("llavacam: error: the server's certificate has fingerprint " + fingerprint)


# --- the stdlib transport (Pyto) as an Answerer --------------------------------------------------------------------


def test_the_stdlib_answerer_gives_this_computers_answers_and_stops(llavacam_serve, engine):
    from app.core.inference.templates import DEFAULT_SYSTEM_PROMPT
    from app.core.remote.stdlib import RemoteAnswerer, RemoteChat

    green = red_image((320, 240)).to_pil().point(lambda v: 255 - v)  # a frame no other test sent
    answerer = RemoteAnswerer(RemoteChat(llavacam_serve.url, "sek"), DEFAULT_SYSTEM_PROMPT)
    first = answerer.ask("What colour is it?", load_image(green), GREEDY)
    first_stats = first.wait()
    # ChatSession hands over the conversation before every question: the frame is not encoded again.
    answerer.set_history([PastTurn("What colour is it?", first.text, load_image(green))], DEFAULT_SYSTEM_PROMPT)
    second = answerer.ask("Where is it?", None, GREEDY)
    second.wait()
    assert [first.text, second.text] == local_answers(engine, load_image(green), ["What colour is it?",
                                                                                  "Where is it?"])  # fmt: skip
    assert (first_stats.image_encode_ms > 0, first_stats.image_cached) == (True, False)  # the server encoded it
    assert answerer.images.encoded == 1
    long = answerer.ask("Tell me more.", None, SamplingSettings(temperature=0.0, max_tokens=400))
    for _piece in long:
        long.cancel()
    assert long.wait().finish_reason == "cancelled"


# --- llavacam watch --server ---------------------------------------------------------------------------------------


def test_watch_server_asks_the_condition_under_its_grammar(llavacam_serve, tmp_path, capsys):
    from tests.support.watch_video import write_colour_video

    video = write_colour_video(tmp_path / "v.avi", ["blue"] * 6 + ["red"] * 6 + ["green"] * 6)
    code = main(["watch", "--server", llavacam_serve.url, "--token", "sek", "--camera", str(video), "--when",
                 "the shape is red", "--json", "--max-rate", "0", "--no-history"])  # fmt: skip
    captured = capsys.readouterr()
    assert (code, captured.err) == (0, "")
    events = [json.loads(line) for line in captured.out.splitlines()]
    answers = [e for e in events if e["event"] in {"answer", "repeat"}]
    assert [e["frame"] for e in answers] == [0, 7, 13]
    assert {e["question"] for e in answers} == {"Is the shape red?"}
    assert {e["text"] for e in answers} <= {"Yes", "No", "Yes.", "No."}  # the random model, held by the grammar


def test_watch_server_says_a_wrong_token_before_the_first_frame(llavacam_serve, tmp_path, capsys):
    from tests.support.watch_video import write_colour_video

    video = write_colour_video(tmp_path / "v.avi", ["blue"] * 3)
    code = main(["watch", "--server", llavacam_serve.url, "--token", "nope", "--camera", str(video), "-q", "What?",
                 "--no-history"])  # fmt: skip
    captured = capsys.readouterr()
    assert (code, captured.out) == (2, "")
    assert captured.err.startswith(f"llavacam: error: 127.0.0.1:{llavacam_serve.port} refused the token")


def test_serve_refuses_a_grammar_it_cannot_parse(llavacam_serve):
    reply = httpx.post(f"{llavacam_serve.url}/v1/chat/completions", headers={"Authorization": "Bearer sek"},
                       timeout=60, json={"messages": [{"role": "user", "content": "hi"}], "grammar": "root ::= ("})
    assert reply.status_code == 400
    assert reply.json()["error"]["message"] == "the answer's grammar could not be parsed"


# --- llavacam extract --server ---------------------------------------------------------------------------------------


def test_extract_server_gives_records_of_the_schema(llavacam_serve, tmp_path, capsys):
    from app.core.extract.extractor import validate
    from app.core.extract.schemas import PRESETS, request_schema

    image = tmp_path / "note.png"
    Image.new("RGB", (64, 48), (230, 230, 230)).save(image)
    code = main(["extract", "--server", llavacam_serve.url, "--token", "sek", "--schema", "contact", "--image",
                 str(image), "--json", "--no-history"])  # fmt: skip
    captured = capsys.readouterr()
    assert (code, captured.err.replace("llavacam: no records found in the image\n", "")) == (0, "")
    records = [json.loads(line)["record"] for line in captured.out.splitlines()]
    validate({"records": records}, request_schema(PRESETS["contact"]))  # held by the grammar the server honoured


def test_extract_server_names_a_server_that_ignored_the_schema(tmp_path, capsys):
    image = tmp_path / "note.png"
    Image.new("RGB", (64, 48), (230, 230, 230)).save(image)
    running = RunningServer(image_dropping_stub(prompt_tokens=700))  # it reads the frame, ignores the grammar
    try:
        code = main(["extract", "--server", running.url, "--schema", "todo", "--image", str(image), "--no-history"])
    finally:
        running.stop()
    captured = capsys.readouterr()
    assert (code, captured.out) == (2, "")
    assert captured.err.strip() == ("llavacam: error: the server ignored the requested JSON format: its answer is "
                                    "not JSON ('It is blue.')")  # fmt: skip


def test_watch_server_with_a_preset_reads_each_new_scene_into_records(llavacam_serve, tmp_path, capsys):
    from app.core.extract.extractor import validate
    from app.core.extract.schemas import PRESETS, request_schema
    from tests.support.watch_video import write_colour_video

    video = write_colour_video(tmp_path / "v.avi", ["blue"] * 8 + ["red"] * 8)
    code = main(["watch", "--server", llavacam_serve.url, "--token", "sek", "--camera", str(video), "--extract",
                 "todo", "--json", "--max-rate", "0", "--no-history"])  # fmt: skip
    captured = capsys.readouterr()
    assert (code, captured.err) == (0, "")
    events = [json.loads(line) for line in captured.out.splitlines()]
    records = [e for e in events if e["event"] == "record"]
    # one reading per scene (the first frame, the red scene once it settled), as on this computer
    assert sorted({e["frame"] for e in records}) == [0, 9]
    assert events[-1]["event"] == "end"
    validate({"records": [e["record"] for e in records]}, request_schema(PRESETS["todo"]))


# --- Stop while the read waits for the server ------------------------------------------------------------------------


def test_stop_while_the_stdlib_client_waits_for_the_server_ends_the_read_at_once_and_tells_the_server():
    """STUB, not a real engine: a server that sends one piece, then holds (a slow server between two tokens, or
    reading a long prompt). Stop from another thread (the window's GUI thread) must not wait for its next token:
    the blocked read ends at once, as stopped rather than failed, and the server learns the client left."""
    import threading

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    from app.core.remote.stdlib import RemoteAnswerer, RemoteChat

    release, left, sent_more = threading.Event(), threading.Event(), threading.Event()

    async def chat(request: Request):
        async def events():
            # the server learns the client left either way Starlette tells it: its disconnect listener cancels this
            # stream, or the request reports the disconnect when asked (whichever reads uvicorn's message first)
            try:
                yield f"data: {json.dumps({'choices': [{'index': 0, 'delta': {'content': 'It is '}}]})}\n\n"
                await asyncio.to_thread(release.wait, 10)
                for _ in range(200):  # the client's close reaches uvicorn when its loop gets to it: poll
                    if await request.is_disconnected():
                        left.set()
                        break
                    await asyncio.sleep(0.05)
                sent_more.set()
                yield f"data: {json.dumps({'choices': [{'index': 0, 'delta': {'content': 'red.'}}]})}\n\n"
                yield "data: [DONE]\n\n"
            except (asyncio.CancelledError, GeneratorExit):
                left.set()
                raise

        return StreamingResponse(events(), media_type="text/event-stream")

    running = RunningServer(Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])]))
    try:
        answerer = RemoteAnswerer(RemoteChat(running.url, model="stub"))
        stream = answerer.ask("What colour is it?")
        pieces, failures = [], []
        first = threading.Event()

        def read() -> None:  # the window reads on the loop's executor, one piece at a time
            try:
                for piece in stream:
                    pieces.append(piece)
                    first.set()
            except Exception as exc:
                failures.append(exc)

        reader = threading.Thread(target=read)
        reader.start()
        assert first.wait(10)
        stream.cancel()  # the reader is (or is about to be) blocked reading, the server holding its next token
        reader.join(5)
        assert not sent_more.is_set(), "Stop waited for the server's next token"
        assert not reader.is_alive()
        release.set()
        assert (pieces, failures, stream.stats.finish_reason) == (["It is "], [], "cancelled")
        assert left.wait(10), "the server was not told the client left"
    finally:
        release.set()
        running.stop()
