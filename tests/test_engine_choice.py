"""Settings → Engine: one factory gives the local engine or a server's client, both `Answerer`s; a server's models
are listed from /v1/models; each failure a user can meet is a notice that says what to do. Servers are real HTTP
servers on 127.0.0.1 (a labelled stub, and `llavacam serve` on the tiny model)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from app.core.engine_choice import (
    NO_LOCAL_MODEL,
    THIS_COMPUTER,
    EngineChoiceError,
    answerer_for,
    close_answerer,
    describe,
    server_models,
)
from app.core.inference.answerer import Answerer
from app.core.inference.engine import Engine, EngineConfig
from app.core.inference.images import RGBImage, load_image
from app.core.inference.sampling import SamplingSettings
from app.core.session import ChatSession
from app.core.settings import Settings, save_server_token
from app.server.app import create_app
from tests.support.openai_stub import TOKEN, openai_stub
from tests.support.uvicorn_server import RunningServer, free_port

GREEDY = SamplingSettings(temperature=0.0, max_tokens=12)


def red_image() -> RGBImage:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buffer, format="PNG")
    return load_image(buffer.getvalue())


@pytest.fixture(scope="module")
def stub():
    running = RunningServer(openai_stub())
    yield running
    running.stop()


def on(server, **changes) -> Settings:
    return Settings(engine="server", server_url=server.url, **changes)


# --- a server ---------------------------------------------------------------------------------------------------------


def test_the_servers_models_are_listed_with_the_token(stub):
    assert server_models(on(stub), TOKEN) == ["llava-big", "words-only"]


def test_the_stored_token_is_used_and_a_server_answers_as_an_answerer(stub, tmp_path):
    save_server_token(tmp_path, TOKEN)
    answering = answerer_for(on(stub), data_dir=tmp_path)
    assert (answering.remote, answering.where, answering.model_id) == (True, f"127.0.0.1:{stub.port}", "llava-big")
    assert describe(answering) == f"frames go to 127.0.0.1:{stub.port} (llava-big)"
    assert isinstance(answering.answerer, Answerer)
    session = ChatSession(answering.answerer, model_id=answering.label)
    session.pin(red_image())
    session.send("What colour is it?", GREEDY)
    assert [(t.question, t.answer.text, t.answer.status) for t in session.turns] == [
        ("What colour is it?", "It is red.", "complete")
    ]
    close_answerer(answering.answerer)


@pytest.mark.parametrize(
    ("changes", "token", "kind", "message"),
    [
        ({}, "wrong", "unauthorized",
         "127.0.0.1:{port} refused the token (Invalid API key): give the token the server was started with. To go on: "
         "enter the token the server was started with in Settings → Engine, or switch back to This computer there."),
        ({}, None, "unauthorized",
         "127.0.0.1:{port} refused the token (Invalid API key): give the token the server was started with. To go on: "
         "enter the token the server was started with in Settings → Engine, or switch back to This computer there."),
        ({"server_model": "huge"}, TOKEN, "unknown_model",
         "The server has no model 'huge'; it serves 'llava-big', 'words-only': pick one of those. To go on: pick one "
         "of the server's models in Settings → Engine (Refresh lists them), or switch back to This computer there."),
        ({"server_model": "words-only"}, TOKEN, "no_vision",
         "The model on 127.0.0.1:{port} has no vision (the server says so): load a vision model with its projector "
         "there. To go on: pick a vision model in Settings → Engine, or switch back to This computer there."),
    ],
)  # fmt: skip
def test_what_a_server_refuses_is_a_notice_that_says_what_to_do(stub, tmp_path, changes, token, kind, message):
    with pytest.raises(EngineChoiceError) as caught:
        answerer_for(on(stub, **changes), data_dir=tmp_path, token=token)
    assert (caught.value.kind, str(caught.value)) == (kind, message.format(port=stub.port))


def test_an_unreachable_server_is_a_notice_that_says_what_to_do(tmp_path):
    port = free_port()
    with pytest.raises(EngineChoiceError) as caught:
        server_models(Settings(engine="server", server_url=f"http://127.0.0.1:{port}"), None)
    text = str(caught.value)
    assert caught.value.kind == "unreachable"
    assert text.startswith(f"Cannot reach 127.0.0.1:{port} (")
    assert text.endswith("is the computer on, and the server running at that address?. To go on: check the "
                         "server's address in Settings → Engine, or switch back to This computer there.")  # fmt: skip


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "No server address: enter one in Settings → Engine (such as http://192.168.1.20:8080), or choose This "
             "computer there."),
        ("gpu-box", "'gpu-box' is not a server address: give one such as http://192.168.1.20:8080. To go on: check "
                    "the server's address in Settings → Engine, or switch back to This computer there."),
    ],
)  # fmt: skip
def test_a_missing_or_malformed_address_says_what_to_give(tmp_path, url, message):
    with pytest.raises(EngineChoiceError) as caught:
        answerer_for(Settings(engine="server", server_url=url), data_dir=tmp_path)
    assert str(caught.value) == message


def test_a_ca_file_and_a_fingerprint_together_are_refused(tmp_path):
    settings = Settings(engine="server", server_url="https://box:8443", server_ca_file=str(tmp_path / "ca.pem"),
                        server_fingerprint="AA" * 32)  # fmt: skip
    with pytest.raises(EngineChoiceError) as caught:
        answerer_for(settings, data_dir=tmp_path, token="t")
    assert (caught.value.kind, str(caught.value)) == (
        "trust", "Give either a CA file or a certificate fingerprint, not both. To go on: check the CA file or "
                 "certificate fingerprint in Settings → Engine, or switch back to This computer there.")  # fmt: skip


def test_llavacam_serve_answers_what_this_computer_answers(tiny_models, tmp_path):
    """The same model through `llavacam serve` on 127.0.0.1 and on this computer: the same words."""
    config = EngineConfig(n_ctx=1024, n_threads=2)
    with Engine(tiny_models.text, tiny_models.mmproj, config) as engine:
        running = RunningServer(create_app(engine, model_id="tiny-llava", token=TOKEN))
        try:
            answering = answerer_for(on(running), data_dir=tmp_path, token=TOKEN)
            remote = answering.answerer.ask("What is it?", red_image(), GREEDY)
            remote_text = (remote.wait(), remote.text)[1]
        finally:
            running.stop()
        engine.new_chat().result()
        local = engine.ask("What is it?", red_image(), GREEDY)
        local.wait()
    assert answering.model_id == "tiny-llava"
    assert remote_text == local.text
    assert remote_text  # the tiny model says something


# --- this computer -------------------------------------------------------------------------------------------------


def test_this_computer_answers_with_the_model_in_settings(tiny_models, tmp_path):
    settings = Settings(model_path=str(tiny_models.text), mmproj_path=str(tiny_models.mmproj), n_ctx=1024, threads=2)
    answering = answerer_for(settings, data_dir=tmp_path)
    try:
        assert isinstance(answering.answerer, Engine)
        assert isinstance(answering.answerer, Answerer)
        assert (answering.remote, answering.where, answering.problem) == (False, THIS_COMPUTER, None)
        assert answering.info is not None
        assert answering.info.n_ctx == 1024
        assert describe(answering) == f"{answering.info.name} on this computer"
    finally:
        close_answerer(answering.answerer)


def test_this_computer_without_a_model_says_where_to_choose_one(tmp_path):
    with pytest.raises(EngineChoiceError) as caught:
        answerer_for(Settings(), data_dir=tmp_path)
    assert (caught.value.kind, str(caught.value)) == ("local", NO_LOCAL_MODEL)
    assert NO_LOCAL_MODEL == ("No model configured: choose the model files in Settings (Ctrl+,) or download a pair "
                              "in File → Models…")  # fmt: skip


def test_a_model_the_server_names_by_its_file_path_is_shown_by_the_files_name() -> None:
    # llama-cpp-python's server names its model by the path it loaded; a bubble showed all of it
    from app.core.inference.answerer import AnsweredBy

    assert AnsweredBy("h:1", "/srv/models/llava-v1.5-7b.Q4_K_M.gguf").label == "llava-v1.5-7b.Q4_K_M · h:1"
    assert AnsweredBy("h:1", "C:\\models\\demo-llama.gguf").label == "demo-llama · h:1"
    assert AnsweredBy("h:1", "qwen2-vl-2b").label == "qwen2-vl-2b · h:1"
    assert AnsweredBy("h:1", "").label == "h:1"
