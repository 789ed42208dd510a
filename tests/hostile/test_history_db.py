"""Hostile history databases: crafted paths, corruption, another program's lock, read-only and full disks.

A healthy database is never moved aside or emptied; afterwards it still holds every chat.
"""

from __future__ import annotations

import sqlite3
import warnings
from pathlib import Path

import pytest
from PIL import Image

from app.core.history.store import (
    UNDO_WINDOW_S,
    HistoryError,
    HistoryReadError,
    HistoryStore,
    HistoryWriteError,
    MissingFrameWarning,
)
from app.core.inference.images import load_image
from tests.support.mounts import fill, read_only, small_disk


def frame(color=(200, 40, 40)):
    return load_image(Image.new("RGB", (40, 30), color))


def fill_history(data: Path, chats: int = 5, text: str = "") -> list[str]:
    """`chats` chats, each a question (the first with a frame) and an answer; returns their titles."""
    store = HistoryStore(data)
    titles = []
    for n in range(chats):
        chat = store.create_chat()
        store.add_user_message(chat, f"question {n} {text}".strip(), store.save_image(frame()) if n == 0 else None)
        writer = store.begin_answer(chat)
        writer.append(f"answer {n}")
        writer.finish()
        titles.append(store.get_chat(chat).title)
    store.close()
    return sorted(titles)


def titles_in(data: Path) -> list[str]:
    store = HistoryStore(data)
    try:
        assert not store.read_only, store.notice
        return sorted(c.title for c in store.list_chats())
    finally:
        store.close()


@pytest.fixture
def victim(tmp_path) -> Path:
    target = tmp_path / "victim.jpg"
    target.write_bytes(b"not yours")
    return target


def crafted_frame_path(data: Path, file: str) -> int:
    """A chat whose frame row says `file` (as an attacker's history.sqlite3 would)."""
    store = HistoryStore(data)
    chat = store.create_chat()
    store.add_user_message(chat, "what is this?", store.save_image(frame()))
    with store.conn:
        store.conn.execute("UPDATE images SET file = ?", (file,))
    store.close()
    return chat


@pytest.mark.parametrize("kind", ["dot-dot", "absolute"])
def test_crafted_frame_path_is_not_read_copied_or_deleted(tmp_path, victim, kind):
    data = tmp_path / "data"
    chat = crafted_frame_path(data, "../../victim.jpg" if kind == "dot-dot" else str(victim))
    store = HistoryStore(data)
    try:
        image = store.get_chat(chat).messages[0].image
        assert image is not None
        assert image.path.parent == store.images_dir
        assert not image.path.exists()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            written = store.export(chat, tmp_path / "out")
        assert [type(w.message) for w in caught] == [MissingFrameWarning]
        assert not (tmp_path / "out" / "images").exists()
        assert "is missing from the history" in written.read_text()
        store.delete_chat(chat)
        assert store.purge_deleted() == [chat]
    finally:
        store.close()
    assert victim.read_bytes() == b"not yours"


def test_frame_symlinked_outside_the_images_folder_is_not_copied(tmp_path, victim):
    data = tmp_path / "data"
    chat = crafted_frame_path(data, "evil.jpg")
    (data / "images" / "evil.jpg").symlink_to(victim)
    store = HistoryStore(data)
    try:
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            store.export(chat, tmp_path / "out", "json")
        assert not (tmp_path / "out" / "images").exists()
    finally:
        store.close()
    assert victim.read_bytes() == b"not yours"


def test_file_that_is_not_a_database_is_moved_aside_and_kept(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    garbage = b"this is not a database" * 100
    (data / "history.sqlite3").write_bytes(garbage)
    store = HistoryStore(data)
    try:
        assert store.moved_to is not None
        assert store.moved_to.read_bytes() == garbage
        assert store.notice == (f"The chat history was damaged (file is not a database): 0 of 0 chats were copied "
                                f"into a new one; the damaged file was moved aside to {store.moved_to}.")  # fmt: skip
        assert store.create_chat("new") > 0
    finally:
        store.close()


def test_one_bad_page_costs_only_the_chats_on_it(tmp_path):
    data = tmp_path / "data"
    titles = fill_history(data, chats=120, text="x" * 1500)  # about one chat per page
    path = data / "history.sqlite3"
    page_size = 4096
    raw = bytearray(path.read_bytes())
    middle = (len(raw) // page_size // 2) * page_size
    raw[middle:middle + page_size] = b"\xff" * page_size
    path.write_bytes(bytes(raw))
    store = HistoryStore(data)
    try:
        recovered = sorted(c.title for c in store.list_chats())
        assert store.moved_to is not None
        assert store.moved_to.exists()
        assert f"{len(recovered)} of " in (store.notice or "")
        assert str(store.moved_to) in (store.notice or "")
        assert len(recovered) >= 110, store.notice
        assert set(recovered) <= set(titles)
        chat = store.list_chats()[-1]
        assert [m.text for m in store.get_chat(chat.id).messages][1].startswith("answer ")
    finally:
        store.close()


def test_locked_by_another_program_is_read_only_not_replaced(tmp_path):
    data = tmp_path / "data"
    titles = fill_history(data)
    other = sqlite3.connect(data / "history.sqlite3", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another program in the middle of a write
    try:
        store = HistoryStore(data, busy_timeout_s=0.2)
        try:
            assert store.read_only
            assert (store.notice or "").startswith("The chat history is locked by another program")
            assert sorted(c.title for c in store.list_chats()) == titles
            with pytest.raises(HistoryWriteError, match="read-only here .another program has it locked"):
                store.create_chat()
        finally:
            store.close()
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert not list(data.glob("*.corrupt-*"))
    assert titles_in(data) == titles


def test_locked_so_that_nothing_can_be_read_is_an_error_not_an_empty_history(tmp_path):
    data = tmp_path / "data"
    titles = fill_history(data)
    other = sqlite3.connect(data / "history.sqlite3", isolation_level=None)
    other.execute("PRAGMA journal_mode=DELETE")
    other.execute("BEGIN EXCLUSIVE")  # a rollback-journal writer: readers are blocked too
    try:
        store = HistoryStore(data, busy_timeout_s=0.2)
        try:
            with pytest.raises(HistoryReadError, match="is locked by another program: try again when it is done"):
                store.list_chats()
        finally:
            store.close()
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert not list(data.glob("*.corrupt-*"))
    assert titles_in(data) == titles


def test_read_only_folder_is_read_only_mode_said_once(tmp_path):
    data = tmp_path / "data"
    titles = fill_history(data)
    with read_only(data):
        store = HistoryStore(data)
        try:
            assert store.read_only
            assert store.notice == (f"The chat history is read-only here ({data}: Read-only file system): chats are "
                                    "shown, but nothing new is saved.")  # fmt: skip
            assert sorted(c.title for c in store.list_chats()) == titles
            with pytest.raises(HistoryWriteError, match="read-only"):
                store.add_user_message(store.list_chats()[0].id, "more")
        finally:
            store.close()
    assert not list(data.glob("*.corrupt-*"))
    assert titles_in(data) == titles


def test_read_only_database_file_is_read_only_mode(tmp_path):
    data = tmp_path / "data"
    titles = fill_history(data)
    with read_only(data / "history.sqlite3"):
        store = HistoryStore(data, busy_timeout_s=0.2)
        try:
            assert store.read_only
            assert "read-only" in (store.notice or "")
            assert sorted(c.title for c in store.list_chats()) == titles
        finally:
            store.close()
    assert not list(data.glob("*.corrupt-*"))
    assert titles_in(data) == titles


def test_database_full_is_a_write_error_rolled_back(tmp_path):
    data = tmp_path / "data"
    titles = fill_history(data)
    store = HistoryStore(data)
    try:
        chat = store.list_chats()[0].id
        pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
        store.conn.execute(f"PRAGMA max_page_count = {pages}")  # a real SQLITE_FULL
        with pytest.raises(HistoryWriteError, match="the disk is full: the chat could not be saved"):
            store.add_user_message(chat, "y" * 100_000)
        assert len(store.get_chat(chat).messages) == 2
    finally:
        store.close()
    assert not list(data.glob("*.corrupt-*"))
    assert titles_in(data) == titles


def test_disk_full_when_opening_is_read_only_nothing_moved(tmp_path):
    disk = tmp_path / "disk"
    with small_disk(disk, "2m"):
        data = disk / "data"
        titles = fill_history(data)
        fill(disk)
        store = HistoryStore(data, busy_timeout_s=0.2)
        try:
            assert store.read_only
            assert store.notice == ("The disk is full: the chat history is read-only until space is freed (nothing "
                                    "was lost).")  # fmt: skip
            assert sorted(c.title for c in store.list_chats()) == titles
        finally:
            store.close()
        assert not list(data.glob("*.corrupt-*"))
        (disk / "filler").unlink()
        assert titles_in(data) == titles


def test_frame_write_on_a_full_disk_is_a_write_error_and_leaves_nothing(tmp_path):
    data = tmp_path / "data"
    titles = fill_history(data)
    with small_disk(data / "images", "64k") as images:
        fill(images)
        store = HistoryStore(data)
        try:
            with pytest.raises(HistoryWriteError, match="the frame could not be saved: No space left on device"):
                store.save_image(frame((10, 200, 10)))
            assert [p.name for p in images.iterdir()] == ["filler"]
        finally:
            store.close()
    assert titles_in(data) == titles


def test_deleted_chat_is_not_shown_and_is_purged_with_its_frames_on_start(tmp_path):
    data = tmp_path / "data"
    fill_history(data, chats=2)
    store = HistoryStore(data)
    chat = store.list_chats()[-1].id  # the first chat, the one with the frame
    store.delete_chat(chat)
    with pytest.raises(HistoryError, match=f"there is no chat {chat} .it was deleted"):
        store.get_chat(chat)
    with pytest.raises(HistoryError, match=f"there is no chat {chat}"):
        store.export(chat, tmp_path / "out")
    with store.conn:  # deleted longer ago than the undo window
        store.conn.execute("UPDATE chats SET deleted_at = deleted_at - ?", (UNDO_WINDOW_S + 1,))
    store.close()
    reopened = HistoryStore(data)
    try:
        assert reopened.conn.execute("SELECT count(*) FROM chats WHERE id = ?", (chat,)).fetchone()[0] == 0
        assert list(reopened.images_dir.glob("*.jpg")) == []
        assert len(reopened.list_chats()) == 1
    finally:
        reopened.close()


def test_crafted_json_columns_do_not_break_reading_a_chat(tmp_path):
    data = tmp_path / "data"
    fill_history(data, chats=1)
    store = HistoryStore(data)
    try:
        with store.conn:
            store.conn.execute("UPDATE messages SET sampling = '{not json', timings = '[1, 2]'")
        assert [(m.text, m.sampling, m.timings) for m in store.get_chat(1).messages] == [
            ("question 0", None, None), ("answer 0", None, None)]
        assert store.export(1, tmp_path / "out", "json").exists()
    finally:
        store.close()


def test_planted_symlink_for_a_frame_is_replaced_not_written_through(tmp_path, victim):
    data = tmp_path / "data"
    store = HistoryStore(data)
    try:
        picture = frame((1, 2, 3))
        (store.images_dir / f"{picture.digest}.jpg").symlink_to(victim)
        record = store.save_image(picture)
        assert not record.path.is_symlink()
        assert record.path.read_bytes()[:2] == b"\xff\xd8"  # a JPEG of ours
    finally:
        store.close()
    assert victim.read_bytes() == b"not yours"


def test_bad_page_salvage_keeps_rows_of_tables_later_migrations_add(tmp_path, monkeypatch):
    from app.core.history import store as history_store

    monkeypatch.setattr(history_store, "MIGRATIONS", [*history_store.MIGRATIONS, """
        CREATE TABLE notes (id INTEGER PRIMARY KEY,
                            message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE, text TEXT);"""])
    data = tmp_path / "data"
    fill_history(data, chats=60, text="x" * 1500)
    store = HistoryStore(data)
    with store.conn:
        store.conn.execute("INSERT INTO notes (message_id, text) SELECT id, 'note' FROM messages")
    store.close()
    path = data / "history.sqlite3"
    raw = bytearray(path.read_bytes())
    middle = len(raw) // 2 // 4096 * 4096
    raw[middle:middle + 4096] = b"\xff" * 4096
    path.write_bytes(bytes(raw))
    store = HistoryStore(data)
    try:
        assert store.moved_to is not None
        notes = store.conn.execute("SELECT count(*) FROM notes").fetchone()[0]
        messages = store.conn.execute("SELECT count(*) FROM messages").fetchone()[0]
        assert notes == messages > 100
        assert store.conn.execute("SELECT count(*) FROM notes WHERE message_id NOT IN (SELECT id FROM messages)"
                                  ).fetchone()[0] == 0  # fmt: skip
    finally:
        store.close()


def test_disk_filling_up_while_writing_is_a_write_error_nothing_moved(tmp_path):
    disk = tmp_path / "disk"
    with small_disk(disk, "2m"):
        data = disk / "data"
        titles = fill_history(data)
        store = HistoryStore(data)
        try:
            assert not store.read_only
            fill(disk)
            chat = store.list_chats()[0].id
            def write_until_full() -> None:
                for _ in range(50):  # until the WAL needs a page the disk does not have
                    store.add_user_message(chat, "z" * 20_000)

            with pytest.raises(HistoryWriteError, match="the disk is full: the chat could not be saved"):
                write_until_full()
        finally:
            store.close()
        (disk / "filler").unlink()
        assert not list(data.glob("*.corrupt-*"))
        assert titles_in(data) == titles


def test_purge_keeps_a_file_another_frame_row_still_names(tmp_path):
    data = tmp_path / "data"
    store = HistoryStore(data)
    try:
        kept_chat, gone_chat = store.create_chat(), store.create_chat()
        kept = store.save_image(frame((9, 9, 9)))
        store.add_user_message(kept_chat, "keep", kept)
        store.add_user_message(gone_chat, "go", store.save_image(frame((7, 7, 7))))
        with store.conn:  # a crafted row: the deleted chat's frame names the kept chat's file
            store.conn.execute("UPDATE images SET file = ? WHERE hash != ?", (kept.path.name, kept.hash))
        store.delete_chat(gone_chat)
        assert store.purge_deleted() == [gone_chat]
        assert kept.path.exists()
        image = store.get_chat(kept_chat).messages[0].image
        assert image is not None
        assert image.path == kept.path
    finally:
        store.close()
