"""The window answered by other machines (#15): `llavacam serve` on the trained demo pair answering a camera frame
right, each answer's bubble saying which engine and model gave it — live and when the chat is reopened, as history
stored it — and a home server's self-signed certificate trusted by its fingerprint (a wrong one is a clear notice).
The same end to end against a peer we did not write, llama-cpp-python's own server (tests/support/peer_server.py):
right streamed answers, Stop, and its failure for a template that cannot take an image."""

from __future__ import annotations

import random
import subprocess
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.core.history.store import HistoryStore, Message
from app.core.inference.answerer import AnsweredBy
from app.core.inference.engine import Engine, EngineConfig, Turn
from app.desktop.settings import Settings, save_server_token
from app.server.app import create_app
from models.demo_scenes import Scene, draw
from tests.support.desktop import ask, close_window, open_chat, wait_for_frame
from tests.support.llavacam_serve import llavacam_serve
from tests.support.openai_stub import TOKEN, image_dropping_stub, list_content_stub, openai_stub
from tests.support.peer_server import PEER_TOKEN, PeerServer
from tests.support.uvicorn_server import RunningServer

WHITE = (245, 245, 245)


def answers(window) -> list[tuple[str, str]]:
    """Each answer bubble on screen: its text and its "answered by" label ("" when hidden)."""
    return [(b.text, b.engine_label.text() if b.engine_label.isVisibleTo(b) else "")
            for b in window.chat_view.bubbles if b.role == "assistant"]  # fmt: skip


def stored(data_dir: Path, chat_id: int) -> list[tuple[str, str, str]]:
    """Each stored answer's text and the engine and model columns history keeps for it."""
    store = HistoryStore(data_dir)
    try:
        rows = store.conn.execute("SELECT text, engine, engine_model FROM messages WHERE chat_id = ? AND role = "
                                  "'assistant' ORDER BY id", (chat_id,)).fetchall()  # fmt: skip
    finally:
        store.close()
    return [tuple(row) for row in rows]


# --- a reopened chat shows what history stored ---------------------------------------------------------------------


def test_a_reopened_chat_shows_each_answers_stored_engine_and_none_for_older_answers(qtbot, make_window, settings,
                                                                                    tmp_path):  # fmt: skip
    store = HistoryStore(tmp_path)
    chat = store.create_chat()
    for question, text, by in (("Q1", "Stored before engines were recorded.", None),
                               ("Q2", "It is red.", AnsweredBy("192.168.1.5:8080", "llava-big"))):  # fmt: skip
        store.add_user_message(chat, question)
        writer = store.begin_answer(chat, answered_by=by)
        writer.append(text)
        writer.finish()
    store.close()
    window = make_window(settings)
    open_chat(qtbot, window, chat)
    assert answers(window) == [("Stored before engines were recorded.", ""),
                               ("It is red.", "llava-big · 192.168.1.5:8080")]  # fmt: skip
    ask(qtbot, window, "And now?")  # this computer's tiny model continues the chat: its answer says so
    assert answers(window)[-1][1] == "tiny-llama-64 · this computer"
    assert [row[1:] for row in stored(tmp_path, chat)] == [
        (None, None), ("192.168.1.5:8080", "llava-big"), ("this computer", "tiny-llama-64")]  # fmt: skip


# --- end to end: llavacam serve on the demo pair, a video camera ---------------------------------------------------


@pytest.fixture
def red_circle_video(tmp_path) -> Path:
    """A camera that shows one red circle on white (a scene of the demo's world) for as long as it plays."""
    rgb = draw(Scene("circle", "red", "left", WHITE, 96, 96), random.Random(7))
    path = tmp_path / "red-circle.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (96, 96))
    assert writer.isOpened()
    for _ in range(20):
        writer.write(np.ascontiguousarray(rgb[:, :, ::-1]))  # OpenCV writes BGR
    writer.release()
    return path


def test_llavacam_serve_on_the_demo_pair_answers_the_windows_frame_right_and_the_bubble_names_it(
    qtbot, make_window, tmp_path, red_circle_video
):
    demo_server = Settings(engine="server", temperature=0.0, max_tokens=24)
    with llavacam_serve(tmp_path / "server-data") as url:
        host = url.removeprefix("http://")
        window = make_window(replace(demo_server, server_url=url), camera=str(red_circle_video))
        assert window.status_label.text() == f"Ready: frames go to {host} (demo)"
        assert window.engine is None, "this computer's model is not loaded"
        wait_for_frame(qtbot, window)
        window.capture_button.click()
        ask(qtbot, window, "What colour is the shape?")
        ask(qtbot, window, "What shape is it?")  # a follow-up: the server is sent the conversation
        assert answers(window) == [("It is red.", f"demo · {host}"), ("It is a circle.", f"demo · {host}")]
        chat = window.session.chat_id
        close_window(qtbot, window)
        assert stored(tmp_path, chat) == [("It is red.", host, "demo"), ("It is a circle.", host, "demo")]

        reopened = make_window(replace(demo_server, server_url=url), camera=str(red_circle_video))
        open_chat(qtbot, reopened, chat)
        assert answers(reopened) == [("It is red.", f"demo · {host}"), ("It is a circle.", f"demo · {host}")]
        ask(qtbot, reopened, "What colour is it?")  # the stored frame goes with the reopened conversation
        assert answers(reopened)[-1] == ("It is red.", f"demo · {host}")


# --- TLS: a home server's self-signed certificate, pinned by its fingerprint ---------------------------------------


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory) -> tuple[Path, Path, str]:
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=home-server.lan"], check=True,
                   capture_output=True)  # fmt: skip
    printed = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(cert)], check=True,
                             capture_output=True, text=True).stdout  # fmt: skip
    return key, cert, printed.strip().split("=", 1)[1]


def test_a_self_signed_server_is_trusted_by_its_fingerprint_and_a_wrong_one_is_a_clear_notice(
    qtbot, make_window, settings, tmp_path, self_signed
):
    key, cert, fingerprint = self_signed
    running = RunningServer(openai_stub(), ssl_keyfile=str(key), ssl_certfile=str(cert))  # STUB, not a real engine
    try:
        save_server_token(tmp_path, TOKEN)
        url = f"https://127.0.0.1:{running.port}"
        pinned = make_window(replace(settings, engine="server", server_url=url, server_fingerprint=fingerprint))
        assert pinned.status_label.text() == f"Ready: frames go to 127.0.0.1:{running.port} (llava-big)"
        ask(qtbot, pinned, "What colour is it?")
        assert answers(pinned) == [("It is red.", f"llava-big · 127.0.0.1:{running.port}")]
        close_window(qtbot, pinned)

        wrong = make_window(replace(settings, engine="server", server_url=url, server_fingerprint="00" * 32),
                            wait_model=False)  # fmt: skip
        qtbot.waitUntil(lambda: wrong.notice.isVisible() and "fingerprint" in wrong.notice.text(), timeout=20000)
        assert wrong.notice.text() == (
            f"The server's certificate has fingerprint {fingerprint}, not the one you gave: if you did not change "
            "the server's certificate, someone may be in between. To go on: check the CA file or certificate "
            "fingerprint in Settings → Engine, or switch back to This computer there.")  # fmt: skip
        assert (wrong.model_ready, wrong.engine) == (False, None)  # nothing sent, no silent switch
        assert wrong.notice.action_button.text() == "Use this computer"
        assert wrong.session.turns == []
    finally:
        running.stop()


# --- a server that fails a question: the same notice as when connecting fails ----------------------------------------

IGNORED_IMAGE = ("{host} answered without looking at the frame: the prompt it read was 9 tokens, too few to hold an "
                 "image. The server drops images (a text-only model, or a server without vision support): load a "
                 "vision model with its projector there, or ask without a frame. To go on: pick a vision model in "
                 "Settings → Engine, or switch back to This computer there.")  # fmt: skip
TEXT_ONLY_TEMPLATE = (
    "{host} cannot read a message holding an image: its chat template joins text only (the server said HTTP 500 "
    "'can only concatenate str (not \"list\") to str'). On llama-cpp-python's server this means the model's template "
    "cannot take an image: start it with --clip_model_path and a --chat_format that places images for this model "
    "(such as llava-1-5), or choose a server that reads the model's own template (llavacam serve, llama-server). To "
    "go on: start the server as said, or choose another server in Settings → Engine, or switch back to This "
    "computer there.")  # fmt: skip


@pytest.mark.parametrize(
    ("stub", "shown", "notice"),
    [(image_dropping_stub, "It is blue.", IGNORED_IMAGE), (list_content_stub, "", TEXT_ONLY_TEMPLATE)],
    ids=["ignores-the-image", "mtmd-on-a-text-template"],
)
def test_a_question_the_server_fails_is_a_notice_with_one_click_back_and_no_silent_fallback(
    qtbot, make_window, settings, tmp_path, stub, shown, notice
):
    running = RunningServer(stub())
    try:
        host = f"127.0.0.1:{running.port}"
        window = make_window(replace(settings, engine="server", server_url=running.url))
        assert_a_failed_question_is_a_notice_with_one_click_back(qtbot, window, tmp_path, host, shown,
                                                                 notice.format(host=host))  # fmt: skip
    finally:
        running.stop()


def assert_a_failed_question_is_a_notice_with_one_click_back(qtbot, window, data_dir: Path, host: str, shown: str,
                                                             notice: str) -> None:  # fmt: skip
    """Ask about the live frame; the server fails it: the notice says `notice`, the question and what was shown stay
    (on screen and in history, the answer "error"), nothing switches to this computer until the notice's click."""
    wait_for_frame(qtbot, window)
    ask(qtbot, window, "What colour is it?")  # the live frame goes with it
    qtbot.waitUntil(lambda: window.notice.current is not None and window.notice.current.kind == "model")
    assert window.notice.text() == notice
    assert window.notice.action_button.text() == "Use this computer"
    turn = window.session.turns[0]
    assert (turn.question, turn.answer.status, turn.answer.text) == ("What colour is it?", "error", shown)
    chat = window.session.chat_id
    assert stored_status(data_dir, chat) == [(shown, "error", host)]
    assert [(m.role, m.text, m.image is not None) for m in stored_messages(data_dir, chat)] == [
        ("user", "What colour is it?", True), ("assistant", shown, False)]  # fmt: skip
    # Still the server's: this computer's model was not loaded behind the user's back.
    assert (window.engine, window.model_host.remote is not None, window.settings.engine) == (None, True, "server")

    window.notice.action_button.click()
    qtbot.waitUntil(lambda: window.model_ready and window.engine is not None, timeout=30000)
    assert (window.settings.engine, window.model_host.remote) == ("local", None)
    assert window.notice.current is None


def stored_messages(data_dir: Path, chat_id: int) -> list[Message]:
    """The chat as the history store gives it back (questions and answers, in order)."""
    store = HistoryStore(data_dir)
    try:
        return store.get_chat(chat_id).messages
    finally:
        store.close()


def stored_status(data_dir: Path, chat_id: int) -> list[tuple[str, str, str]]:
    store = HistoryStore(data_dir)
    try:
        rows = store.conn.execute("SELECT text, status, engine FROM messages WHERE chat_id = ? AND role = 'assistant' "
                                  "ORDER BY id", (chat_id,)).fetchall()  # fmt: skip
    finally:
        store.close()
    return [tuple(row) for row in rows]


# --- Stop during a streamed answer from llavacam serve ------------------------------------------------------------


def test_stop_during_a_servers_streamed_answer_keeps_what_was_shown_and_ends_the_servers_turn(
    qtbot, make_window, settings, tmp_path, tiny_models, monkeypatch
):
    """llavacam serve (the tiny random-weight model, in this process) streams a long sampled answer; Stop in the
    window stores it "stopped" with exactly the text on screen, the stream closes so the server's own turn ends
    cancelled, and the server answers the next question."""
    with Engine(tiny_models.text, tiny_models.mmproj, EngineConfig(n_ctx=4096, n_threads=2)) as engine:
        server_turns: list[Turn] = []
        ask_engine = engine.ask

        def recorded_ask(*args, **kwargs) -> Turn:  # the server's turns, to read how each one ended
            turn = ask_engine(*args, **kwargs)
            server_turns.append(turn)
            return turn

        monkeypatch.setattr(engine, "ask", recorded_ask)
        running = RunningServer(create_app(engine, model_id="tiny-llava"))
        try:
            host = f"127.0.0.1:{running.port}"
            window = make_window(replace(settings, engine="server", server_url=running.url, temperature=0.8,
                                         max_tokens=3500))  # fmt: skip
            stop_a_long_answer_and_check_what_was_kept(qtbot, window, tmp_path, host)
            # How the server's own turn ended (the engine has posted its end; a server that kept generating for
            # nobody would end it on its own: a stop token or the token limit).
            server_stats = server_turns[0].wait()
            assert server_stats.finish_reason == "cancelled"  # the server stopped generating for nobody
            assert server_stats.decode_tokens < 3500

            window.settings = replace(window.settings, max_tokens=6)
            ask(qtbot, window, "And now?")
            last = window.session.turns[-1].answer
            assert (last.status, len(server_turns), server_turns[1].stats.finish_reason) == ("complete", 2, "length")
            assert last.text == server_turns[1].text  # what the server generated, whole
            close_window(qtbot, window)
        finally:
            running.stop()


def stop_a_long_answer_and_check_what_was_kept(qtbot, window, data_dir: Path, host: str) -> None:
    """Ask for a long answer about the live frame, press Stop after 3 pieces: the turn ends "cancelled", stored
    "stopped" with exactly the text on screen."""
    wait_for_frame(qtbot, window)
    pieces: list[str] = []
    window.binding.answer_piece.connect(pieces.append)
    window.prompt_input.setPlainText("Tell me everything.")
    with qtbot.waitSignal(window.turn_finished, timeout=30000) as finished:
        window.send_button.click()
        qtbot.waitUntil(lambda: len(pieces) >= 3, timeout=20000)
        window.stop_button.click()
    window.binding.answer_piece.disconnect(pieces.append)
    assert finished.args[1].finish_reason == "cancelled"
    answer = window.session.turns[0].answer
    shown = window.chat_view.bubbles[-1].text
    assert (answer.status, answer.text) == ("stopped", shown)
    assert shown.startswith("".join(pieces[:3]))
    assert stored_status(data_dir, window.session.chat_id) == [(shown, "stopped", host)]


# --- end to end: a peer we did not write, llama-cpp-python's own server ----------------------------------------------


def test_llama_cpp_pythons_server_on_the_demo_pair_streams_right_answers_to_the_windows_frame_and_is_named(
    qtbot, make_window, tmp_path, red_circle_video, peer_demo: PeerServer
):
    """The peer (--chat_format mtmd on the trained pair) answers the captured frame and a follow-up that it only gets
    through the conversation; each answer arrives in pieces, its bubble names the peer's model (the peer names it
    by its path; the bubble shows the file's name) and host, and history stores the exact texts with who answered."""
    host, model = peer_demo.host, peer_demo.model_id
    assert model.endswith("/demo-llama.gguf")
    window = make_window(Settings(engine="server", server_url=peer_demo.url, temperature=0.0, max_tokens=24),
                         camera=str(red_circle_video))  # fmt: skip
    assert window.status_label.text() == f"Ready: frames go to {host} (demo-llama)"
    assert window.engine is None, "this computer's model is not loaded"
    wait_for_frame(qtbot, window)
    window.capture_button.click()
    pieces: list[list[str]] = []
    window.binding.answer_piece.connect(lambda piece: pieces[-1].append(piece))
    for question in ("What colour is the shape?", "What shape is it?"):
        pieces.append([])
        ask(qtbot, window, question)
    assert answers(window) == [("It is red.", f"demo-llama · {host}"), ("It is a circle.", f"demo-llama · {host}")]
    assert ["".join(p) for p in pieces] == ["It is red.", "It is a circle."]
    assert min(len(p) for p in pieces) >= 3, f"not streamed: {pieces}"  # token by token, not one whole reply
    chat = window.session.chat_id
    close_window(qtbot, window)
    by = AnsweredBy(host, model)
    rows = [(m.role, m.text, m.status, m.answered_by, m.image is not None) for m in stored_messages(tmp_path, chat)]
    assert rows == [("user", "What colour is the shape?", "complete", None, True),  # the captured frame with it
                    ("assistant", "It is red.", "complete", by, False),
                    ("user", "What shape is it?", "complete", None, False),
                    ("assistant", "It is a circle.", "complete", by, False)]  # fmt: skip


def test_stop_during_the_peers_streamed_answer_keeps_what_was_shown_and_closes_the_peers_stream(
    qtbot, make_window, settings, tmp_path, red_circle_video, peer_rambling: PeerServer
):
    """The peer on a random-weight pair writes a long answer of nonsense (greedy, about a still frame: the same words
    each run); Stop in the window stores it "stopped" with the text on screen, the peer hears the client leave (it
    prints so) long before it would have finished, and answers the next question whole."""
    left = "Disconnected from client"  # what llama_cpp.server prints when the client closes a stream it still writes
    before = peer_rambling.log_text().count(left)
    window = make_window(replace(settings, engine="server", server_url=peer_rambling.url, temperature=0.0,
                                 max_tokens=1500), camera=str(red_circle_video))  # fmt: skip
    stop_a_long_answer_and_check_what_was_kept(qtbot, window, tmp_path, peer_rambling.host)
    qtbot.waitUntil(lambda: peer_rambling.log_text().count(left) > before, timeout=15000)

    window.settings = replace(window.settings, max_tokens=6)
    stats = ask(qtbot, window, "And now?")
    last = window.session.turns[-1].answer
    assert (last.status, stats.finish_reason, bool(last.text)) == ("complete", "length", True)  # the token limit
    assert stored_status(tmp_path, window.session.chat_id)[-1] == (last.text, "complete", peer_rambling.host)


def test_the_peers_failure_for_a_template_that_cannot_take_an_image_is_the_notice_that_says_so(
    qtbot, make_window, settings, tmp_path, peer_mtmd: PeerServer
):
    """The peer (--chat_format mtmd) on a model whose template concatenates `content` (TinyLlama's) fails inside the
    stream it answered 200 to: the window names the cause and the fix, as for the stub that answers HTTP 500."""
    save_server_token(tmp_path, PEER_TOKEN)
    window = make_window(replace(settings, engine="server", server_url=peer_mtmd.url))
    assert_a_failed_question_is_a_notice_with_one_click_back(qtbot, window, tmp_path, peer_mtmd.host, "",
                                                             TEXT_ONLY_TEMPLATE.format(host=peer_mtmd.host))
