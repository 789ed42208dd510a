"""Chat history on a real SQLite file: round trips, streaming writes, crashes, locks, corruption, export."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from app.core.history.store import MIGRATIONS, HistoryStore, HistoryWriteError
from app.core.inference.images import load_image

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path):
    opened = HistoryStore(tmp_path / "data")
    yield opened
    opened.close()


def frame(color=(200, 40, 40)):
    return load_image(Image.new("RGB", (40, 30), color))


def test_round_trip_with_frame_sampling_and_timings(store):
    chat = store.create_chat(model_id="tiny")
    record = store.save_image(frame(), source="camera 0")
    store.add_user_message(chat, "What is this?", record)
    writer = store.begin_answer(chat, "tiny", {"temperature": 0.2})
    for piece in ("A red ", "square."):
        writer.append(piece)
    writer.finish("complete", {"ttft_ms": 12.5})
    loaded = store.get_chat(chat)
    assert loaded.title == "What is this?"
    user, answer = loaded.messages
    assert user.image is not None
    assert user.image.path.exists()
    assert user.image.source == "camera 0"
    assert answer.text == "A red square."
    assert answer.status == "complete"
    assert answer.sampling == {"temperature": 0.2}
    assert answer.timings == {"ttft_ms": 12.5}
    assert [t.question for t in store.get_turns(chat)] == ["What is this?"]


def test_same_frame_is_stored_once(store):
    first = store.save_image(frame())
    second = store.save_image(frame())
    assert first.path == second.path
    assert len(list(store.images_dir.glob("*.jpg"))) == 1


def test_answer_is_on_disk_while_it_streams(store, tmp_path, monkeypatch):
    monkeypatch.setattr("app.core.history.store.FLUSH_SECONDS", 0.0)
    chat = store.create_chat()
    store.add_user_message(chat, "Q")
    writer = store.begin_answer(chat)
    writer.append("partial answ")
    other = sqlite3.connect(tmp_path / "data" / "history.sqlite3")
    text, status = other.execute("SELECT text, status FROM messages WHERE role = 'assistant'").fetchone()
    other.close()
    assert (text, status) == ("partial answ", "streaming")


def test_killed_mid_answer_leaves_an_intact_database_with_the_partial_answer(tmp_path, tiny_models):
    image_path = tmp_path / "receipt.png"
    Image.new("RGB", (64, 48), (240, 240, 230)).save(image_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.support.history_crash_writer", str(tmp_path / "data"), str(tiny_models.text),
         str(tiny_models.mmproj), str(image_path)],
        stdout=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "flushed"
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
    store = HistoryStore(tmp_path / "data")
    try:
        assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        (chat,) = store.list_chats()
        user, answer = store.get_chat(chat.id).messages
        assert user.text == "What is on the receipt?"
        assert user.image is not None
        assert answer.text, "the partial answer was kept"
        assert answer.status == "incomplete"
    finally:
        store.close()


def test_reopen_and_continue_a_chat_with_the_engine(store, tiny_models):
    from app.core.inference.engine import Engine, EngineConfig, PastTurn
    from app.core.inference.sampling import GREEDY

    chat = store.create_chat()
    picture = frame((20, 120, 220))
    store.add_user_message(chat, "What is this?", store.save_image(picture))
    with Engine(tiny_models.text, tiny_models.mmproj, EngineConfig(n_ctx=2048, n_threads=2)) as engine:
        first = engine.ask("What is this?", picture, GREEDY.with_(max_tokens=8))
        writer = store.begin_answer(chat)
        for piece in first:
            writer.append(piece)
        writer.finish()
    turns = store.get_turns(chat)
    with Engine(tiny_models.text, tiny_models.mmproj, EngineConfig(n_ctx=2048, n_threads=2)) as engine:
        engine.set_history([PastTurn(t.question, t.answer, load_image(t.image_path) if t.image_path else None)
                            for t in turns]).result()  # fmt: skip
        follow = engine.ask("And the colour?", None, GREEDY.with_(max_tokens=8))
        follow.wait()
        assert [t.question for t in engine.history] == ["What is this?", "And the colour?"]
        stats = follow.stats
        assert stats is not None
        assert stats.image_encode_ms > 0, "a fresh engine encodes the stored frame once"
    assert turns[0].answer == first.text


def test_export_markdown_and_json_round_trip(store, tmp_path):
    chat = store.create_chat()
    store.add_user_message(chat, "What is this?", store.save_image(frame(), source="paste"))
    writer = store.begin_answer(chat)
    writer.append("A **red** square.")
    writer.finish()
    md = store.export(chat, tmp_path / "out", "md")
    text = md.read_text()
    assert "**You**" in text
    assert "A **red** square." in text
    link = text.split("](")[1].split(")")[0]
    assert (md.parent / link).exists()
    exported = json.loads(store.export(chat, tmp_path / "out", "json").read_text())
    assert [m["text"] for m in exported["messages"]] == ["What is this?", "A **red** square."]
    assert (tmp_path / "out" / exported["messages"][0]["image"]["file"]).exists()
    assert exported["messages"][0]["image"]["source"] == "paste"


def test_migrates_from_the_first_schema(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    old = sqlite3.connect(data / "history.sqlite3")
    old.executescript(MIGRATIONS[0] + "; PRAGMA user_version = 1;")
    old.execute("INSERT INTO chats (title, created_at, updated_at) VALUES ('old chat', 1, 1)")
    old.commit()
    old.close()
    store = HistoryStore(data)
    try:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert [c.title for c in store.list_chats()] == ["old chat"]
        store.delete_chat(store.list_chats()[0].id)  # uses the column migration 2 added
        assert store.list_chats() == []
    finally:
        store.close()


def test_delete_can_be_undone_and_purge_removes_frames(store):
    chat = store.create_chat()
    store.add_user_message(chat, "Q", store.save_image(frame()))
    store.delete_chat(chat)
    assert store.list_chats() == []
    store.restore_chat(chat)
    assert [c.id for c in store.list_chats()] == [chat]
    store.delete_chat(chat)
    store.purge_deleted()
    assert not list(store.images_dir.glob("*.jpg"))


def test_rename_and_search_with_wildcards_escaped(store):
    chat = store.create_chat()
    store.add_user_message(chat, "How much is 100% of the receipt_total?")
    store.rename_chat(chat, "Receipt")
    assert store.list_chats()[0].title == "Receipt"
    assert len(store.search("100%")) == 1
    assert store.search("receipt_t")[0][1].text.startswith("How much")
    assert store.search("1000") == []


def test_second_instance_is_read_only(store, tmp_path):
    store.create_chat("mine")
    second = HistoryStore(tmp_path / "data")
    try:
        assert second.read_only
        assert "read-only" in (second.notice or "")
        assert [c.title for c in second.list_chats()] == ["mine"]
        with pytest.raises(HistoryWriteError, match="read-only"):
            second.create_chat()
    finally:
        second.close()


def test_corrupt_database_is_moved_aside_and_a_new_one_started(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "history.sqlite3").write_bytes(b"this is not a database" * 100)
    store = HistoryStore(data)
    try:
        assert "moved aside" in (store.notice or "")
        assert list(data.glob("history.sqlite3.corrupt-*"))
        assert store.create_chat() > 0
    finally:
        store.close()


def test_disk_full_is_a_clear_error_and_nothing_half_written(store):
    chat = store.create_chat()
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    store.conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(HistoryWriteError, match="disk is full"):
        store.add_user_message(chat, "x" * 200_000)
    store.conn.execute("PRAGMA max_page_count = 1073741823")
    assert store.get_chat(chat).messages == []
    assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_markdown_export_lists_the_messages_in_the_order_they_were_said(store, tmp_path):
    chat = store.create_chat()
    said = [("First question?", "First answer."), ("Second question?", "Second answer."), ("Third?", "Third.")]
    for question, answer in said:
        store.add_user_message(chat, question)
        writer = store.begin_answer(chat)
        writer.append(answer)
        writer.finish()
    lines = store.export(chat, tmp_path / "out", "md").read_text().split("\n")
    body = [line for line in lines[4:] if line]
    expected = []
    for question, answer in said:
        expected += ["**You**", question, "**LlavaCam**", answer]
    assert body == expected


# --- which engine and model gave each answer (migration 5) ---------------------------------------------------------


def answer(store, chat, text, answered_by=None, *, new_version=False):
    writer = store.begin_answer(chat, "m", new_version=new_version, answered_by=answered_by)
    writer.append(text)
    writer.finish()


def test_each_answer_keeps_its_engine_and_model_in_show_and_both_exports(store, tmp_path):
    from app.core.inference.answerer import AnsweredBy

    chat = store.create_chat()
    store.add_user_message(chat, "What colour is it?", store.save_image(frame()))
    answer(store, chat, "It is red.", AnsweredBy("this computer", "demo-llama"))
    answer(store, chat, "Red.", AnsweredBy("192.168.1.5:8080", "llava-big"), new_version=True)
    row = store.conn.execute("SELECT engine, engine_model FROM messages WHERE role = 'assistant' ORDER BY id")
    assert [tuple(r) for r in row] == [("this computer", "demo-llama"), ("192.168.1.5:8080", "llava-big")]
    local, remote = store.get_chat(chat).messages[1:]
    assert (local.answered_by, remote.answered_by) == (AnsweredBy("this computer", "demo-llama"),
                                                       AnsweredBy("192.168.1.5:8080", "llava-big"))  # fmt: skip
    assert remote.answered_by.label == "llava-big · 192.168.1.5:8080"
    md = store.export(chat, tmp_path / "out", "md").read_text()
    assert ("**LlavaCam** (demo-llama · this computer) *(other version, not in the conversation)*\n\nIt is red.\n"
            in md)  # fmt: skip
    assert "**LlavaCam** (llava-big · 192.168.1.5:8080)\n\nRed.\n" in md
    exported = json.loads(store.export(chat, tmp_path / "out", "json").read_text())
    assert [m["answered_by"] for m in exported["messages"]] == [
        None, {"engine": "this computer", "model": "demo-llama"}, {"engine": "192.168.1.5:8080", "model": "llava-big"}]


def old_database(data: Path, version: int) -> None:
    """A history file as LlavaCam wrote it at schema `version`: one chat, a question and its answer."""
    data.mkdir()
    old = sqlite3.connect(data / "history.sqlite3")
    for number, script in enumerate(MIGRATIONS[:version], start=1):
        old.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
    old.execute("INSERT INTO chats (id, title, created_at, updated_at) VALUES (1, 'old chat', 1, 1)")
    for role, text in (("user", "What is it?"), ("assistant", "A cat.")):
        old.execute("INSERT INTO messages (chat_id, role, text, model_id, created_at, updated_at) "
                    "VALUES (1, ?, ?, 'demo-llama.gguf', 1, 1)", (role, text))  # fmt: skip
    old.commit()
    old.close()


def test_a_version_4_database_gains_the_engine_columns_and_old_answers_have_no_label(tmp_path):
    from app.core.inference.answerer import AnsweredBy

    data = tmp_path / "data"
    old_database(data, 4)
    store = HistoryStore(data)
    try:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) == 5
        _question, old_answer = store.get_chat(1).messages
        assert (old_answer.text, old_answer.answered_by) == ("A cat.", None)
        store.add_user_message(1, "And now?")
        answer(store, 1, "A dog.", AnsweredBy("this computer", "demo-llama"))
        assert [m.answered_by for m in store.get_chat(1).messages] == [
            None, None, None, AnsweredBy("this computer", "demo-llama")]  # fmt: skip
    finally:
        store.close()


def test_a_version_4_database_opened_read_only_before_its_migration_still_shows_its_chats(tmp_path):
    import fcntl

    data = tmp_path / "data"
    old_database(data, 4)
    with (data / "history.lock").open("a+") as held:  # another LlavaCam holds it: this one reads, never migrates
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        store = HistoryStore(data)
        try:
            assert store.read_only
            assert store.conn.execute("PRAGMA user_version").fetchone()[0] == 4  # no engine columns
            assert [(m.text, m.answered_by) for m in store.get_chat(1).messages] == [("What is it?", None),
                                                                                     ("A cat.", None)]  # fmt: skip
        finally:
            store.close()
