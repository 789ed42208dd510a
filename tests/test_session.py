"""ChatSession on the real tiny engine and a real history file: what is stored, what the engine is fed."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from PIL import Image

from app.core.errors import LlavaCamError
from app.core.history.store import MIGRATIONS, HistoryStore
from app.core.inference.engine import Engine, EngineConfig
from app.core.inference.images import load_image
from app.core.inference.sampling import GREEDY
from app.core.session import ChatSession, SessionBusy

SHORT = GREEDY.with_(max_tokens=8)
LONG = GREEDY.with_(max_tokens=400, ignore_eos=True)


@pytest.fixture(scope="module")
def engine(tiny_models):
    with Engine(tiny_models.text, tiny_models.mmproj, EngineConfig(n_ctx=2048, n_threads=2)) as eng:
        yield eng


@pytest.fixture
def store(tmp_path):
    opened = HistoryStore(tmp_path / "data")
    yield opened
    opened.close()


@pytest.fixture
def session(engine, store):
    chat = ChatSession(engine, store, model_id="tiny")
    chat.pin(load_image(Image.new("RGB", (40, 30), (200, 30, 30))), "camera 0")
    return chat


def rows(store: HistoryStore, chat_id: int) -> list[tuple]:
    return [(m.role, m.text, m.status, m.image is not None, m.chosen) for m in store.get_chat(chat_id).messages]


def test_send_records_question_frame_and_answer_and_feeds_the_engine(session, store, engine):
    first = session.send("What is this?", SHORT)
    second = session.send("And now?", SHORT)
    assert first.status == second.status == "complete"
    assert first.text
    assert second.text
    assert rows(store, session.chat_id) == [
        ("user", "What is this?", "complete", True, True),
        ("assistant", first.text, "complete", False, True),
        ("user", "And now?", "complete", False, True),  # the follow-up does not repeat the frame
        ("assistant", second.text, "complete", False, True),
    ]
    assert [(t.question, t.answer) for t in engine.history] == [("What is this?", first.text),
                                                                 ("And now?", second.text)]  # fmt: skip
    assert store.get_chat(session.chat_id).messages[1].timings["decode_tokens"] == first.stats.decode_tokens


def test_regenerate_keeps_versions_and_the_chosen_one_is_the_conversation(session, store, engine, tmp_path):
    first = session.send("What is this?", SHORT)
    again = session.regenerate(GREEDY.with_(max_tokens=5))
    turn = session.turns[-1]
    assert [v.text for v in turn.versions] == [first.text, again.text]
    assert turn.chosen == 1
    assert rows(store, session.chat_id) == [
        ("user", "What is this?", "complete", True, True),
        ("assistant", first.text, "complete", False, False),
        ("assistant", again.text, "complete", False, True),
    ]
    assert [t.answer for t in store.get_turns(session.chat_id)] == [again.text]
    exported = store.export(session.chat_id, tmp_path / "out").read_text()
    by = "(tiny-llama-64 · this computer)"  # the engine and model that gave each answer
    assert f"**LlavaCam** {by} *(other version, not in the conversation)*\n\n{first.text}\n" in exported
    assert f"**LlavaCam** {by}\n\n{again.text}\n" in exported

    reopened = ChatSession(engine, store)
    reopened.open_chat(session.chat_id)
    assert [(v.text, v.status) for v in reopened.turns[0].versions] == [(first.text, "complete"),
                                                                         (again.text, "complete")]  # fmt: skip
    assert reopened.turns[0].chosen == 1
    follow = reopened.send("More?", SHORT)
    assert [t.answer for t in engine.history] == [again.text, follow.text]  # the chosen version was fed

    reopened.choose(0, 0)
    assert [t.answer for t in store.get_turns(session.chat_id)] == [first.text, follow.text]


def test_migration_marks_earlier_duplicate_answers_as_not_chosen(tmp_path):
    base = tmp_path / "old"
    base.mkdir()
    conn = sqlite3.connect(base / "history.sqlite3")
    for number, script in enumerate(MIGRATIONS[:2], start=1):
        conn.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
    conn.execute("INSERT INTO chats (id, title, created_at, updated_at) VALUES (1, 'old', 0, 0)")
    for role, text in [("user", "Q1"), ("assistant", "discarded"), ("assistant", "kept"), ("user", "Q2"),
                       ("assistant", "only")]:  # fmt: skip
        conn.execute("INSERT INTO messages (chat_id, role, text, created_at, updated_at) VALUES (1, ?, ?, 0, 0)",
                     (role, text))  # fmt: skip
    conn.commit()
    conn.close()
    store = HistoryStore(base)
    try:
        assert [(m.text, m.chosen) for m in store.get_chat(1).messages] == [
            ("Q1", True), ("discarded", False), ("kept", True), ("Q2", True), ("only", True)]  # fmt: skip
        assert [(t.question, t.answer) for t in store.get_turns(1)] == [("Q1", "kept"), ("Q2", "only")]
    finally:
        store.close()


def test_new_chat_during_an_answer_keeps_that_answer_in_its_chat(session, store):
    seen = threading.Event()

    def on_event(event):
        if event.kind == "piece" and not seen.is_set():
            seen.set()
            session.new_chat()  # as the window's New chat button would, mid-answer

    session.subscribe(on_event)
    version = session.send("Tell me a long story.", LONG)
    chat_id = store.list_chats()[0].id
    assert version.status == "stopped"
    assert len(version.text) > 0
    assert rows(store, chat_id)[1] == ("assistant", version.text, "stopped", False, True)
    assert session.chat_id is None
    assert session.turns == []


def test_stop_while_the_question_is_being_saved_is_not_lost(session, store):
    session.subscribe(lambda event: event.kind == "turns" and session.stop())
    version = session.send("What is this?", LONG)
    assert (version.status, version.text) == ("stopped", "")
    assert rows(store, session.chat_id)[1] == ("assistant", "", "stopped", False, True)


def test_a_deleted_open_chat_stops_taking_questions(session, store):
    session.send("What is this?", SHORT)
    deleted = session.chat_id
    store.delete_chat(deleted)
    session.forget_chat(deleted)
    session.send("Where did it go?", SHORT)
    assert session.chat_id != deleted
    kept = store.get_chat(deleted, include_deleted=True).messages
    assert [m.text for m in kept if m.role == "user"] == ["What is this?"]
    assert [m.text for m in store.get_chat(session.chat_id).messages if m.role == "user"] == ["Where did it go?"]


def test_stop_from_another_thread_ends_the_answer_as_stopped(session, store):
    started = threading.Event()
    session.subscribe(lambda event: event.kind == "piece" and started.set())
    result: dict = {}
    worker = threading.Thread(target=lambda: result.setdefault("v", session.send("Go on.", LONG)))
    worker.start()
    assert started.wait(60)
    with pytest.raises(SessionBusy, match="still coming"):
        session.send("Another?", SHORT)
    session.stop()
    worker.join(60)
    version = result["v"]
    assert version.status == "stopped"
    assert version.stats.finish_reason == "cancelled"
    assert version.stats.decode_tokens < 400
    assert rows(store, session.chat_id)[1] == ("assistant", version.text, "stopped", False, True)


def test_choose_async_stores_the_choice_off_the_loop_and_tells_observers_on_it(session, store):
    import asyncio

    first = session.send("What is this?", SHORT)
    again = session.regenerate(GREEDY.with_(max_tokens=5))
    heard: list[tuple[str, int, bool]] = []

    def observer(event):
        chosen = store.get_chat(session.chat_id).messages[1].chosen
        heard.append((event.kind, session.turns[0].chosen, chosen))
        assert threading.current_thread() is threading.main_thread()

    session.subscribe(observer)

    asyncio.run(session.choose_async(0, 0))
    assert heard == [("turns", 0, True)]  # told once the choice is stored

    async def quick_clicks() -> None:
        await asyncio.gather(session.choose_async(0, 1), session.choose_async(0, 0))

    asyncio.run(quick_clicks())  # written in either order, history keeps the last
    answers = store.get_chat(session.chat_id).messages[1:]
    assert [(m.text, m.chosen) for m in answers] == [(first.text, True), (again.text, False)]
    with pytest.raises(LlavaCamError, match="there is no answer version 3"):
        asyncio.run(session.choose_async(0, 2))


def test_each_answer_is_stored_with_the_engine_and_model_that_gave_it(session, store, engine, tmp_path):
    from app.core.engine_choice import server_answering
    from app.core.inference.answerer import AnsweredBy
    from app.core.settings import Settings
    from app.server.app import create_app
    from tests.support.uvicorn_server import RunningServer

    local = session.send("What is this?", SHORT)
    running = RunningServer(create_app(engine, model_id="tiny-llava"))
    try:
        # As the window connects: no model named in Settings, so the one the server lists is what answers.
        answering = server_answering(Settings(engine="server", server_url=running.url), data_dir=tmp_path, token="")
        remote_session = ChatSession(answering.answerer, store, model_id=answering.label)
        remote_session.pin(load_image(Image.new("RGB", (40, 30), (30, 30, 200))), "camera 0")
        remote = remote_session.send("What is this?", SHORT)
        regenerated = remote_session.regenerate(SHORT)
    finally:
        running.stop()
    assert local.answered_by == AnsweredBy("this computer", "tiny-llama-64")
    assert remote.answered_by == regenerated.answered_by == AnsweredBy(f"127.0.0.1:{running.port}", "tiny-llava")
    stored = store.conn.execute("SELECT chat_id, engine, engine_model FROM messages WHERE role = 'assistant' "
                                "ORDER BY id").fetchall()  # fmt: skip
    assert [tuple(row) for row in stored] == [
        (session.chat_id, "this computer", "tiny-llama-64"),
        (remote_session.chat_id, f"127.0.0.1:{running.port}", "tiny-llava"),
        (remote_session.chat_id, f"127.0.0.1:{running.port}", "tiny-llava"),
    ]
    reopened = ChatSession(engine, store)
    reopened.open_chat(remote_session.chat_id)
    assert [v.answered_by.label for v in reopened.turns[0].versions] == [f"tiny-llava · 127.0.0.1:{running.port}"] * 2
