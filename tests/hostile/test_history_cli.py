"""`llavacam history ...` against hostile data: one clear line and a non-zero exit, or the right result."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from app.core.history.store import HistoryStore
from tests.hostile.test_history_db import fill_history, titles_in
from tests.support.mounts import read_only

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=60)  # fmt: skip


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    assert "unexpected error" not in result.stderr, result.stderr
    return result.stderr.strip().splitlines()[-1]


def test_show_an_id_beyond_sqlite_integers(tmp_path):
    data = tmp_path / "data"
    fill_history(data, chats=1)
    result = cli("history", "show", "99999999999999999999999", "--data-dir", str(data))
    assert result.returncode == 2
    assert last_line(result) == "llavacam: error: there is no chat 99999999999999999999999"


def test_export_into_a_read_only_folder(tmp_path):
    data = tmp_path / "data"
    fill_history(data, chats=1)
    out = tmp_path / "out"
    out.mkdir()
    with read_only(out):
        result = cli("history", "export", "1", "--out", str(out), "--data-dir", str(data))
    assert result.returncode == 2
    assert last_line(result) == f"llavacam: error: cannot write the export to {out}: Read-only file system"


def test_export_over_an_existing_file(tmp_path):
    data = tmp_path / "data"
    fill_history(data, chats=1)
    taken = tmp_path / "notes.txt"
    taken.write_text("mine")
    result = cli("history", "export", "1", "--out", str(taken), "--data-dir", str(data))
    assert result.returncode == 2
    assert last_line(result) == (f"llavacam: error: cannot export to {taken}: it is a file, not a folder (give a "
                                 "folder with --out)")  # fmt: skip
    assert taken.read_text() == "mine"


def test_export_a_chat_whose_frames_are_missing_warns_and_links_nothing(tmp_path):
    data = tmp_path / "data"
    fill_history(data, chats=1)
    for jpeg in (data / "images").glob("*.jpg"):
        jpeg.unlink()
    out = tmp_path / "out"
    result = cli("history", "export", "1", "--out", str(out), "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    assert f"llavacam: warning: 1 frame(s) of chat 1 are no longer in {data / 'images'}" in result.stderr
    markdown = (out / "chat-1.md").read_text()
    assert "](images/" not in markdown
    assert "is missing from the history" in markdown


def test_read_only_data_dir_lists_every_chat(tmp_path):
    data = tmp_path / "data"
    titles = fill_history(data, chats=3)
    with read_only(data):
        result = cli("history", "list", "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    assert sorted(line.strip().split("  ", 2)[2] for line in result.stdout.splitlines()) == titles
    assert result.stderr.count("read-only") == 1
    assert titles_in(data) == titles


def test_read_only_data_dir_with_nothing_in_it_is_a_clear_line(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    with read_only(data):
        result = cli("models", "list", "--data-dir", str(data))
    assert result.returncode == 2
    assert last_line(result).startswith(f"llavacam: error: cannot create the models folder {data / 'models'}: "
                                        "Read-only file system")  # fmt: skip


def test_history_that_cannot_be_read_exits_non_zero_with_the_reason(tmp_path):
    data = tmp_path / "data"
    titles = fill_history(data, chats=2)
    other = sqlite3.connect(data / "history.sqlite3", isolation_level=None)
    other.execute("PRAGMA journal_mode=DELETE")
    other.execute("BEGIN EXCLUSIVE")
    try:
        result = cli("history", "list", "--data-dir", str(data))
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert result.returncode == 2
    assert last_line(result) == (f"llavacam: error: the chat history {data / 'history.sqlite3'} is locked by another "
                                 "program: try again when it is done")  # fmt: skip
    assert result.stdout == ""
    assert titles_in(data) == titles


def test_damaged_history_says_where_the_old_file_is_and_lists_what_was_saved(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "history.sqlite3").write_bytes(b"\0garbage" * 512)
    result = cli("history", "list", "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    moved = next(data.glob("history.sqlite3.corrupt-*"))
    assert f"the damaged file was moved aside to {moved}" in result.stderr


def test_deleted_chat_is_not_shown_or_exported(tmp_path):
    data = tmp_path / "data"
    fill_history(data, chats=2)
    store = HistoryStore(data)
    store.delete_chat(1)
    store.close()
    shown = cli("history", "show", "1", "--data-dir", str(data))
    assert shown.returncode == 2
    assert last_line(shown) == "llavacam: error: there is no chat 1 (it was deleted)"
    exported = cli("history", "export", "1", "--out", str(tmp_path / "out"), "--data-dir", str(data))
    assert exported.returncode == 2
    assert not (tmp_path / "out").exists()


def test_damaged_history_in_a_read_only_folder_is_left_alone_and_said(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    garbage = b"\0garbage" * 512
    (data / "history.sqlite3").write_bytes(garbage)
    with read_only(data):
        result = cli("history", "list", "--data-dir", str(data))
    assert result.returncode == 2
    assert last_line(result) == (f"llavacam: error: the chat history {data / 'history.sqlite3'} cannot be read (file "
                                 "is not a database)")  # fmt: skip
    assert (data / "history.sqlite3").read_bytes() == garbage
