"""Chat history in SQLite: chats, messages (written as they stream) and the frames they were about.

- WAL journal, foreign keys, every write in a transaction; `PRAGMA user_version` + a list of migrations.
- Frames are JPEG files in `images/<pixel digest>.jpg` (written atomically, stored once per picture); the database
  keeps their capture time and source. Blobs would bloat the database and every backup of it.
- An answer is written while it streams (at most about once a second, and at the end), so a crash leaves the
  question and the partial answer; the next open marks such answers `incomplete`.
- A second running instance gets the history read-only (an exclusive lock file tells); a corrupt database is moved
  aside (kept) and a fresh one started, with a notice for the UI; a full disk is a HistoryWriteError, rolled back.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.errors import LlavaCamError
from app.core.inference.images import RGBImage
from app.core.paths import data_dir

DB_NAME = "history.sqlite3"
FLUSH_SECONDS = 1.0

MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE chats (
        id INTEGER PRIMARY KEY,
        title TEXT NOT NULL DEFAULT '',
        model_id TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE images (
        hash TEXT PRIMARY KEY,
        file TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        captured_at REAL NOT NULL,
        source TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        chat_id INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
        text TEXT NOT NULL DEFAULT '',
        image_hash TEXT REFERENCES images(hash),
        model_id TEXT,
        sampling TEXT,
        timings TEXT,
        status TEXT NOT NULL DEFAULT 'complete',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX messages_by_chat ON messages(chat_id, id);
    """,
    # 2: deleting a chat can be undone (soft delete; purged later)
    """
    ALTER TABLE chats ADD COLUMN deleted_at REAL;
    CREATE INDEX chats_by_update ON chats(deleted_at, updated_at);
    """,
]


class HistoryError(LlavaCamError):
    pass


class HistoryWriteError(HistoryError):
    """A write failed (disk full, read-only): nothing was half-written."""


@dataclass(frozen=True)
class ImageRecord:
    hash: str
    path: Path
    width: int
    height: int
    captured_at: float
    source: str


@dataclass(frozen=True)
class Message:
    id: int
    chat_id: int
    role: str
    text: str
    image: ImageRecord | None
    model_id: str | None
    sampling: dict[str, Any] | None
    timings: dict[str, Any] | None
    status: str
    created_at: float


@dataclass(frozen=True)
class Chat:
    id: int
    title: str
    model_id: str | None
    created_at: float
    updated_at: float
    messages: list[Message] = field(default_factory=list)


@dataclass(frozen=True)
class StoredTurn:
    question: str
    answer: str
    image_path: Path | None


class _FileLock:
    """An exclusive lock held for the store's lifetime: tells a second running instance to stay read-only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle: Any = None

    def acquire(self) -> bool:
        self.handle = self.path.open("a+")
        try:
            if os.name == "nt":
                import msvcrt

                msvcrt.locking(self.handle.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
            else:
                import fcntl

                fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            self.handle.close()
            self.handle = None
            return False

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


class HistoryStore:
    def __init__(self, base: str | os.PathLike[str] | None = None) -> None:
        self.base = data_dir(base)
        self.path = self.base / DB_NAME
        self.images_dir = self.base / "images"
        self.images_dir.mkdir(exist_ok=True)
        self.notice: str | None = None
        # One connection serves the UI's reads and a background writer: transactions must not interleave.
        self.lock = threading.RLock()
        self._file_lock = _FileLock(self.base / "history.lock")
        self.read_only = not self._file_lock.acquire()
        if self.read_only:
            self.notice = "Another LlavaCam is running: the chat history is read-only in this window."
        self.conn = self._connect()

    # --- opening ------------------------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self.read_only:
            if not self.path.exists():
                return self._open_memory()
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, timeout=5)
            conn.row_factory = sqlite3.Row
            return conn
        try:
            conn = self._open_writable()
        except sqlite3.DatabaseError as exc:
            moved = self._move_aside()
            self.notice = (f"The chat history was damaged ({exc}); it was moved aside to {moved.name} and a new one "
                           "started.")  # fmt: skip
            conn = self._open_writable()
        return conn

    def _open_memory(self) -> sqlite3.Connection:
        conn = sqlite3.connect(":memory:", check_same_thread=False)
        conn.row_factory = sqlite3.Row
        self._migrate(conn)
        return conn

    def _open_writable(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, timeout=5)
        try:
            conn.row_factory = sqlite3.Row
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {check}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._migrate(conn)
            with conn:
                conn.execute("UPDATE messages SET status = 'incomplete' WHERE status = 'streaming'")
        except BaseException:
            conn.close()
            raise
        return conn

    def _move_aside(self) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(str(self.path) + suffix)
            if source.exists():
                shutil.move(str(source), str(target) + suffix)
        return target

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS, start=1):
            if number > version:  # each migration and its version bump commit together, or not at all
                conn.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")

    def close(self) -> None:
        with self.lock:
            self.conn.close()
        self._file_lock.release()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        if self.read_only:
            raise HistoryWriteError("the chat history is read-only here (another LlavaCam is running)")
        try:
            with self.lock, self.conn:
                yield self.conn
        except sqlite3.OperationalError as exc:
            if "full" in str(exc).lower():
                raise HistoryWriteError("the disk is full: the chat could not be saved (nothing was lost "
                                        "from what was already saved)") from exc  # fmt: skip
            raise HistoryWriteError(f"the chat could not be saved: {exc}") from exc

    # --- writing ------------------------------------------------------------------------------------------------

    def create_chat(self, title: str = "", model_id: str | None = None) -> int:
        now = time.time()
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO chats (title, model_id, created_at, updated_at) VALUES (?, ?, ?, ?)",
                (title, model_id, now, now),
            )
        return int(cursor.lastrowid or 0)

    def save_image(self, image: RGBImage, *, source: str = "", captured_at: float | None = None) -> ImageRecord:
        """Store a frame once per picture (by pixel digest). Encodes JPEG: call it off the GUI thread."""
        file = self.images_dir / f"{image.digest}.jpg"
        if not file.exists():
            temporary = file.with_suffix(".tmp")
            try:
                temporary.write_bytes(image.to_jpeg(quality=90))
                os.replace(temporary, file)
            except OSError as exc:
                temporary.unlink(missing_ok=True)
                raise HistoryWriteError(f"the frame could not be saved: {exc.strerror or exc}") from exc
        record = ImageRecord(image.digest, file, image.width, image.height, captured_at or time.time(), source)
        with self._write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO images (hash, file, width, height, captured_at, source) VALUES (?,?,?,?,?,?)",
                (record.hash, file.name, record.width, record.height, record.captured_at, source),
            )
        return record

    def add_user_message(self, chat_id: int, text: str, image: ImageRecord | None = None) -> int:
        now = time.time()
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO messages (chat_id, role, text, image_hash, created_at, updated_at) "
                "VALUES (?, 'user', ?, ?, ?, ?)",
                (chat_id, text, image.hash if image else None, now, now),
            )
            conn.execute(
                "UPDATE chats SET updated_at = ?, title = CASE WHEN title = '' THEN ? ELSE title END WHERE id = ?",
                (now, _title_from(text), chat_id),
            )
        return int(cursor.lastrowid or 0)

    def begin_answer(self, chat_id: int, model_id: str | None = None, sampling: dict[str, Any] | None = None
                     ) -> AnswerWriter:  # fmt: skip
        now = time.time()
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO messages (chat_id, role, text, model_id, sampling, status, created_at, updated_at) "
                "VALUES (?, 'assistant', '', ?, ?, 'streaming', ?, ?)",
                (chat_id, model_id, json.dumps(sampling) if sampling else None, now, now),
            )
        return AnswerWriter(self, int(cursor.lastrowid or 0), chat_id)

    def rename_chat(self, chat_id: int, title: str) -> None:
        with self._write() as conn:
            conn.execute("UPDATE chats SET title = ? WHERE id = ?", (title.strip(), chat_id))

    def delete_chat(self, chat_id: int) -> None:
        """Hide a chat (undo with restore_chat); purge_deleted removes it for good."""
        with self._write() as conn:
            conn.execute("UPDATE chats SET deleted_at = ? WHERE id = ?", (time.time(), chat_id))

    def restore_chat(self, chat_id: int) -> None:
        with self._write() as conn:
            conn.execute("UPDATE chats SET deleted_at = NULL WHERE id = ?", (chat_id,))

    def purge_deleted(self, older_than_s: float = 0.0) -> None:
        cutoff = time.time() - older_than_s
        with self._write() as conn:
            conn.execute("DELETE FROM chats WHERE deleted_at IS NOT NULL AND deleted_at <= ?", (cutoff,))
            orphans = conn.execute(
                "SELECT hash, file FROM images WHERE hash NOT IN "
                "(SELECT image_hash FROM messages WHERE image_hash IS NOT NULL)"
            ).fetchall()
            conn.executemany("DELETE FROM images WHERE hash = ?", [(row["hash"],) for row in orphans])
        for row in orphans:
            (self.images_dir / row["file"]).unlink(missing_ok=True)

    # --- reading ------------------------------------------------------------------------------------------------

    def list_chats(self) -> list[Chat]:
        with self.lock:
            rows = self.conn.execute(
                "SELECT * FROM chats WHERE deleted_at IS NULL ORDER BY updated_at DESC, id DESC"
            ).fetchall()
        return [Chat(r["id"], r["title"], r["model_id"], r["created_at"], r["updated_at"]) for r in rows]

    def get_chat(self, chat_id: int) -> Chat:
        with self.lock:
            return self._get_chat(chat_id)

    def _get_chat(self, chat_id: int) -> Chat:
        row = self.conn.execute("SELECT * FROM chats WHERE id = ?", (chat_id,)).fetchone()
        if row is None:
            raise HistoryError(f"there is no chat {chat_id}")
        messages = [self._message(m) for m in self.conn.execute(
            "SELECT m.*, i.file, i.width, i.height, i.captured_at, i.source FROM messages m "
            "LEFT JOIN images i ON i.hash = m.image_hash WHERE m.chat_id = ? ORDER BY m.id", (chat_id,))]  # fmt: skip
        return Chat(row["id"], row["title"], row["model_id"], row["created_at"], row["updated_at"], messages)

    def _message(self, row: sqlite3.Row) -> Message:
        image = None
        if row["image_hash"]:
            image = ImageRecord(row["image_hash"], self.images_dir / row["file"], row["width"], row["height"],
                                row["captured_at"], row["source"])  # fmt: skip
        sampling = json.loads(row["sampling"]) if row["sampling"] else None
        timings = json.loads(row["timings"]) if row["timings"] else None
        return Message(row["id"], row["chat_id"], row["role"], row["text"], image, row["model_id"], sampling,
                       timings, row["status"], row["created_at"])  # fmt: skip

    def get_turns(self, chat_id: int) -> list[StoredTurn]:
        """Question/answer pairs in order, with the frame each question was about: to continue a chat."""
        turns: list[StoredTurn] = []
        pending: Message | None = None
        for message in self.get_chat(chat_id).messages:
            if message.role == "user":
                pending = message
            elif pending is not None:
                turns.append(StoredTurn(pending.text, message.text, pending.image.path if pending.image else None))
                pending = None
        return turns

    def search(self, query: str) -> list[tuple[Chat, Message]]:
        pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self.lock:
            return self._search(pattern)

    def _search(self, pattern: str) -> list[tuple[Chat, Message]]:
        rows = self.conn.execute(
            "SELECT m.chat_id, m.id FROM messages m JOIN chats c ON c.id = m.chat_id "
            "WHERE c.deleted_at IS NULL AND (m.text LIKE ? ESCAPE '\\' OR c.title LIKE ? ESCAPE '\\') "
            "ORDER BY m.created_at DESC",
            (pattern, pattern),
        ).fetchall()
        results = []
        chats: dict[int, Chat] = {}
        for row in rows:
            chat = chats.get(row["chat_id"]) or chats.setdefault(row["chat_id"], self._get_chat(row["chat_id"]))
            message = next(m for m in chat.messages if m.id == row["id"])
            results.append((chat, message))
        return results

    # --- export -------------------------------------------------------------------------------------------------

    def export(self, chat_id: int, out: Path, fmt: str = "md") -> Path:
        """Write the chat as Markdown (frames as files beside it) or JSON; returns the written file."""
        chat = self.get_chat(chat_id)
        out.mkdir(parents=True, exist_ok=True)
        frames = out / "images"
        for message in chat.messages:
            if message.image is not None and message.image.path.exists():
                frames.mkdir(exist_ok=True)
                shutil.copy2(message.image.path, frames / message.image.path.name)
        stem = f"chat-{chat.id}"
        if fmt == "json":
            target = out / f"{stem}.json"
            target.write_text(json.dumps(chat_to_dict(chat), indent=2, ensure_ascii=False), encoding="utf-8")
            return target
        if fmt != "md":
            raise HistoryError(f"unknown export format {fmt!r}: use md or json")
        lines = [f"# {chat.title or 'Chat'}", "", f"*{_when(chat.created_at)}*", ""]
        for message in chat.messages:
            who = "You" if message.role == "user" else "LlavaCam"
            marker = "" if message.status == "complete" else f" *({message.status})*"
            lines += [f"**{who}**{marker}", ""]
            if message.image is not None:
                lines += [f"![frame captured {_when(message.image.captured_at)}](images/{message.image.path.name})", ""]
            lines += [message.text, ""]
        target = out / f"{stem}.md"
        target.write_text("\n".join(lines), encoding="utf-8")
        return target


def chat_to_dict(chat: Chat) -> dict[str, Any]:
    return {
        "id": chat.id, "title": chat.title, "model_id": chat.model_id,
        "created_at": chat.created_at, "updated_at": chat.updated_at,
        "messages": [
            {"id": m.id, "role": m.role, "text": m.text, "status": m.status, "model_id": m.model_id,
             "sampling": m.sampling, "timings": m.timings, "created_at": m.created_at,
             "image": None if m.image is None else {
                 "file": f"images/{m.image.path.name}", "hash": m.image.hash, "width": m.image.width,
                 "height": m.image.height, "captured_at": m.image.captured_at, "source": m.image.source}}
            for m in chat.messages
        ],
    }  # fmt: skip


class AnswerWriter:
    """Appends streamed pieces to an assistant message, writing at most about once a second and at the end."""

    def __init__(self, store: HistoryStore, message_id: int, chat_id: int) -> None:
        self.store = store
        self.message_id = message_id
        self.chat_id = chat_id
        self.text = ""
        self._flushed_at = time.monotonic()
        self._dirty = False

    def append(self, piece: str) -> None:
        self.text += piece
        self._dirty = True
        if time.monotonic() - self._flushed_at >= FLUSH_SECONDS:
            self.flush()

    def flush(self, status: str = "streaming", timings: dict[str, Any] | None = None) -> None:
        now = time.time()
        with self.store._write() as conn:
            conn.execute(
                "UPDATE messages SET text = ?, status = ?, timings = COALESCE(?, timings), updated_at = ? WHERE id = ?",
                (self.text, status, json.dumps(timings) if timings else None, now, self.message_id),
            )
            conn.execute("UPDATE chats SET updated_at = ? WHERE id = ?", (now, self.chat_id))
        self._flushed_at = time.monotonic()
        self._dirty = False

    def finish(self, status: str = "complete", timings: dict[str, Any] | None = None) -> None:
        self.flush(status, timings)


def _title_from(text: str) -> str:
    first = " ".join(text.split())
    return first if len(first) <= 60 else first[:57] + "…"


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


def open_history(base: str | os.PathLike[str] | None = None) -> HistoryStore:
    return HistoryStore(base)
