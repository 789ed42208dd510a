"""Chat history in SQLite: chats, messages (written as they stream) and the frames they were about.

- WAL journal, foreign keys, every write in a transaction; `PRAGMA user_version` + a list of migrations.
- Each answer keeps who gave it: `engine` ("this computer" or a server's host:port) and `engine_model` (migration
  5; NULL for answers stored before, which show no label).
- Frames are JPEG files in `images/<pixel digest>.jpg` (written atomically, stored once per picture); the database
  keeps their capture time and source. Blobs would bloat the database and every backup of it.
- An answer is written while it streams (at most about once a second, and at the end), so a crash leaves the
  question and the partial answer; the next open marks such answers `incomplete`.
- A second running instance gets the history read-only (an exclusive lock file tells). So does a database that
  another program keeps locked (after a busy timeout), a read-only file or folder, and a full disk: each with one
  notice, nothing moved. Only genuine corruption (SQLite says "not a database"/"malformed" and integrity_check
  agrees) moves the file aside (kept); every chat still readable is copied into the new database and the notice says
  where the old file is. A write that fails (disk full) is a HistoryWriteError, rolled back.
- Paths read from the database (a frame's `file`) are plain names inside images/; anything else is refused.
- Deleted chats stay for UNDO_WINDOW_S (undo), then purge_deleted removes them and their frames; each open purges
  what was deleted longer ago than that.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.errors import LlavaCamError
from app.core.inference.answerer import AnsweredBy
from app.core.inference.images import RGBImage
from app.core.paths import data_dir

DB_NAME = "history.sqlite3"
FLUSH_SECONDS = 1.0
BUSY_TIMEOUT_S = 5.0  # how long to wait for another program's lock before going read-only
UNDO_WINDOW_S = 30.0  # a deleted chat can be restored for this long; then it is purged with its frames
_MAX_ROWID = 2**63 - 1

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
    # 3: regenerated answers are versions of one question; exactly one per question is chosen (fed to the engine)
    """
    ALTER TABLE messages ADD COLUMN chosen INTEGER NOT NULL DEFAULT 1;
    UPDATE messages SET chosen = 0 WHERE role = 'assistant' AND EXISTS (
        SELECT 1 FROM messages later WHERE later.chat_id = messages.chat_id AND later.role = 'assistant'
        AND later.id > messages.id AND NOT EXISTS (
            SELECT 1 FROM messages q WHERE q.chat_id = messages.chat_id AND q.role = 'user'
            AND q.id > messages.id AND q.id < later.id));
    """,
    # 4: records extracted from frames (camera to list), next to the chat they came from (records.py)
    """
    CREATE TABLE records (
        id INTEGER PRIMARY KEY,
        chat_id INTEGER REFERENCES chats(id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        title_key TEXT NOT NULL DEFAULT '',
        data TEXT NOT NULL,
        image_hash TEXT REFERENCES images(hash),
        status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'done')),
        captured_at REAL NOT NULL,
        time_zone TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX records_by_kind ON records(kind, status, title_key);
    """,
    # 5: which engine gave each answer ("this computer" or the server's host:port) and its model there; NULL for
    # answers stored before (shown without a label)
    """
    ALTER TABLE messages ADD COLUMN engine TEXT;
    ALTER TABLE messages ADD COLUMN engine_model TEXT;
    """,
]


class HistoryError(LlavaCamError):
    pass


class HistoryWriteError(HistoryError):
    """A write failed (disk full, read-only): nothing was half-written."""


class HistoryReadError(HistoryError):
    """The history cannot be read at all (locked by another program, unreadable file)."""


class MissingFrameWarning(UserWarning):
    """An exported chat refers to frames that are no longer in the images folder."""


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
    chosen: bool = True  # False: a regenerated-away answer version, kept but not part of the conversation
    answered_by: AnsweredBy | None = None  # an answer's engine and model (None: a question, or stored before v5)


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

    def acquire(self) -> str | None:
        """None when held; else why not: "held" (another instance) or the reason the file cannot be opened."""
        try:
            self.handle = self.path.open("a+")
        except OSError as exc:
            return f"{exc.strerror or exc}"
        try:
            if os.name == "nt":
                import msvcrt

                msvcrt.locking(self.handle.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
            else:
                import fcntl

                fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return None
        except OSError:
            self.handle.close()
            self.handle = None
            return "held"

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


class HistoryStore:
    def __init__(self, base: str | os.PathLike[str] | None = None, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self.base = data_dir(base)
        self.path = self.base / DB_NAME
        self.images_dir = self.base / "images"
        self.busy_timeout_s = busy_timeout_s
        self.notice: str | None = None  # one message for the user about the state of the history, said once
        self.moved_to: Path | None = None  # where a corrupt database was moved
        self.read_only = False
        self.read_only_reason = ""
        self._unreadable: str | None = None
        # One connection serves the UI's reads and a background writer: transactions must not interleave.
        self.lock = threading.RLock()
        self._file_lock = _FileLock(self.base / "history.lock")
        problem = self._file_lock.acquire()
        if problem == "held":
            self._go_read_only("another LlavaCam is running",
                               "Another LlavaCam is running: the chat history is read-only in this window.")
        elif problem is not None:
            self._read_only_folder(problem)
        if not self.read_only:
            try:
                self.images_dir.mkdir(exist_ok=True)
            except OSError as exc:
                self._read_only_folder(exc.strerror or str(exc))
        self.conn = self._connect()
        if not self.read_only:
            with contextlib.suppress(HistoryError):  # deletions older than the undo window, frames included
                self.purge_deleted(UNDO_WINDOW_S)

    # --- opening ------------------------------------------------------------------------------------------------

    def _go_read_only(self, reason: str, notice: str) -> None:
        if not self.read_only:  # the first reason is the one the user is told, once
            self.read_only, self.read_only_reason, self.notice = True, reason, notice

    def _read_only_folder(self, problem: str) -> None:
        self._go_read_only(f"{self.base} is read-only",
                           f"The chat history is read-only here ({self.base}: {problem}): chats are shown, but nothing "
                           "new is saved.")  # fmt: skip

    def _connect(self) -> sqlite3.Connection:
        if not self.read_only:
            try:
                return self._open_writable()
            except sqlite3.DatabaseError as exc:
                kind = self._kind(exc)
                if kind == "corrupt" and self._confirm_corrupt():
                    return self._replace_corrupt(exc)
                if kind == "busy":
                    self._go_read_only("another program has it locked",
                                       f"The chat history is locked by another program ({self.path}): it is read-only "
                                       "in this window; nothing new is saved until that program lets go and LlavaCam "
                                       "is reopened.")  # fmt: skip
                elif kind == "full":
                    self._go_read_only("the disk is full",
                                       "The disk is full: the chat history is read-only until space is freed "
                                       "(nothing was lost).")  # fmt: skip
                elif kind == "readonly":
                    self._read_only_folder(str(exc))
                else:
                    self._go_read_only(f"it cannot be opened for writing ({exc})",
                                       f"The chat history cannot be opened for writing ({exc}): it is read-only in "
                                       "this window.")  # fmt: skip
        return self._open_read_only()

    def _kind(self, exc: sqlite3.DatabaseError) -> str:
        kind = _kind_of(exc)
        if kind == "other" and "i/o" in str(exc).lower():  # a full disk can surface as an I/O error (-shm, -wal)
            try:
                if shutil.disk_usage(self.base).free < 1 << 20:
                    return "full"
            except OSError:
                pass
        return kind

    def _open_memory(self) -> sqlite3.Connection:
        conn = sqlite3.connect(":memory:", check_same_thread=False)
        conn.row_factory = sqlite3.Row
        self._migrate(conn)
        return conn

    def _open_read_only(self) -> sqlite3.Connection:
        if not self.path.exists():
            return self._open_memory()
        last: sqlite3.DatabaseError | None = None
        waited = self.read_only_reason == "another program has it locked"  # once is enough
        # immutable=1 reads a file in a read-only folder (no -shm can be made); never used past a lock.
        for query in ("mode=ro", "immutable=1"):
            conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?{query}", uri=True, check_same_thread=False,
                                   timeout=0.1 if waited else self.busy_timeout_s)  # fmt: skip
            conn.row_factory = sqlite3.Row
            try:
                conn.execute("SELECT count(*) FROM chats").fetchone()
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
                return conn
            except sqlite3.DatabaseError as exc:
                conn.close()
                last = exc
                if _kind_of(exc) == "busy":
                    break
        self._unreadable = (f"the chat history {self.path} is locked by another program: try again when it is done"
                            if last is not None and _kind_of(last) == "busy"
                            else f"the chat history {self.path} cannot be read ({last})")  # fmt: skip
        if self.notice is None or self.read_only_reason == "another LlavaCam is running":
            self.notice = self._unreadable[0].upper() + self._unreadable[1:] + "."
        return self._open_memory()

    def _open_writable(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, timeout=self.busy_timeout_s)
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

    def _confirm_corrupt(self) -> bool:
        """A second opinion before anything is moved: integrity_check on a fresh read-only connection."""
        if not self.path.exists():
            return False
        try:
            probe = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=self.busy_timeout_s)
        except sqlite3.DatabaseError as exc:
            return _kind_of(exc) == "corrupt"
        try:
            return bool(probe.execute("PRAGMA integrity_check").fetchone()[0] != "ok")
        except sqlite3.DatabaseError as exc:
            return _kind_of(exc) == "corrupt"
        finally:
            probe.close()

    def _replace_corrupt(self, problem: sqlite3.DatabaseError) -> sqlite3.Connection:
        try:
            moved = self._move_aside()
        except OSError as exc:
            self._go_read_only("it is damaged", f"The chat history is damaged ({problem}) and could not be moved "
                               f"aside ({exc.strerror or exc}): it is read-only.")  # fmt: skip
            return self._open_read_only()
        conn = self._open_writable()
        recovered, total = _salvage(moved, conn)
        self.moved_to = moved
        self.notice = (f"The chat history was damaged ({problem}): {recovered} of {total} chats were copied into a new "
                       f"one; the damaged file was moved aside to {moved}.")  # fmt: skip
        return conn

    def _move_aside(self) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        number = 1
        while target.exists():
            number += 1
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{number}")
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
            raise HistoryWriteError(f"the chat history is read-only here ({self.read_only_reason})")
        try:
            with self.lock, self.conn:
                yield self.conn
        except sqlite3.DatabaseError as exc:
            if self._kind(exc) == "full":
                raise HistoryWriteError("the disk is full: the chat could not be saved (nothing was lost "
                                        "from what was already saved)") from exc  # fmt: skip
            raise HistoryWriteError(f"the chat could not be saved: {exc}") from exc

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        if self._unreadable is not None:
            raise HistoryReadError(self._unreadable)
        try:
            with self.lock:
                yield self.conn
        except sqlite3.DatabaseError as exc:
            what = "is locked by another program" if _kind_of(exc) == "busy" else f"cannot be read ({exc})"
            raise HistoryReadError(f"the chat history {self.path} {what}") from exc

    def frame_path(self, file: object) -> Path | None:
        """Where a frame named in the database lives: a plain file name inside images/ (resolved, symlinks
        included), or None. A crafted `file` ('../../x', '/etc/x') must never reach outside the data dir."""
        if not isinstance(file, str) or not file or file.startswith(".") or "\0" in file:
            return None
        if "/" in file or "\\" in file or Path(file).name != file:
            return None
        candidate = self.images_dir / file
        try:
            resolved = candidate.resolve()
            inside = resolved.parent == self.images_dir.resolve()
        except (OSError, RuntimeError):
            return None
        return candidate if inside else None

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
        if self.read_only:
            raise HistoryWriteError(f"the chat history is read-only here ({self.read_only_reason})")
        file = self.images_dir / f"{image.digest}.jpg"
        if file.is_symlink() or not file.is_file():  # a planted link is replaced, never written through
            temporary: Path | None = None
            try:
                handle, name = tempfile.mkstemp(dir=self.images_dir, prefix=f".{image.digest}.", suffix=".tmp")
                temporary = Path(name)
                with os.fdopen(handle, "wb") as out:
                    out.write(image.to_jpeg(quality=90))
                os.replace(temporary, file)
            except OSError as exc:
                if temporary is not None:
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

    def begin_answer(self, chat_id: int, model_id: str | None = None, sampling: dict[str, Any] | None = None,
                     *, new_version: bool = False, answered_by: AnsweredBy | None = None) -> AnswerWriter:  # fmt: skip
        """Start the answer to the chat's last question. `new_version`: a regenerate — the question's earlier
        answers stay stored but are no longer chosen (one transaction, so exactly one stays chosen).
        `answered_by`: the engine and model giving it, stored with it (the bubble shows it when the chat reopens)."""
        now = time.time()
        with self._write() as conn:
            if new_version:
                conn.execute(
                    "UPDATE messages SET chosen = 0 WHERE chat_id = ? AND role = 'assistant' AND id > "
                    "(SELECT COALESCE(MAX(id), 0) FROM messages WHERE chat_id = ? AND role = 'user')",
                    (chat_id, chat_id),
                )
            cursor = conn.execute(
                "INSERT INTO messages (chat_id, role, text, model_id, sampling, status, created_at, updated_at, "
                "engine, engine_model) VALUES (?, 'assistant', '', ?, ?, 'streaming', ?, ?, ?, ?)",
                (chat_id, model_id, json.dumps(sampling) if sampling else None, now, now,
                 answered_by.engine if answered_by else None, answered_by.model if answered_by else None),
            )
        return AnswerWriter(self, int(cursor.lastrowid or 0), chat_id)

    def choose_answer(self, message_id: int) -> None:
        """Make this answer version the chosen one of its question (the others of that question are not)."""
        with self._write() as conn:
            row = conn.execute("SELECT chat_id FROM messages WHERE id = ? AND role = 'assistant'",
                               (message_id,)).fetchone()  # fmt: skip
            if row is None:
                raise HistoryError(f"there is no answer {message_id}")
            chat_id = row["chat_id"]
            question = conn.execute("SELECT COALESCE(MAX(id), 0) FROM messages WHERE chat_id = ? AND role = 'user' "
                                    "AND id < ?", (chat_id, message_id)).fetchone()[0]  # fmt: skip
            following = conn.execute("SELECT MIN(id) FROM messages WHERE chat_id = ? AND role = 'user' AND id > ?",
                                     (chat_id, message_id)).fetchone()[0]  # fmt: skip
            conn.execute(
                "UPDATE messages SET chosen = (id = ?) WHERE chat_id = ? AND role = 'assistant' AND id > ? "
                "AND id < ?",
                (message_id, chat_id, question, following if following is not None else 2**62),
            )

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

    def purge_deleted(self, older_than_s: float = 0.0) -> list[int]:
        """Remove for good the chats deleted at least `older_than_s` ago, and the frames no chat uses any more.
        Returns the purged chat ids. The window calls it when the undo window has passed (UNDO_WINDOW_S)."""
        if self.read_only:
            return []
        cutoff = time.time() - older_than_s
        with self._write() as conn:
            purged = [row[0] for row in conn.execute(
                "SELECT id FROM chats WHERE deleted_at IS NOT NULL AND deleted_at <= ?", (cutoff,))]  # fmt: skip
            if not purged:
                return []
            conn.execute("DELETE FROM chats WHERE deleted_at IS NOT NULL AND deleted_at <= ?", (cutoff,))
            orphans = conn.execute(
                "SELECT hash, file FROM images WHERE hash NOT IN "
                "(SELECT image_hash FROM messages WHERE image_hash IS NOT NULL) AND hash NOT IN "
                "(SELECT image_hash FROM records WHERE image_hash IS NOT NULL)"  # a record keeps its frame
            ).fetchall()
            conn.executemany("DELETE FROM images WHERE hash = ?", [(row["hash"],) for row in orphans])
            still_used = {row[0] for row in conn.execute("SELECT file FROM images")}
        for row in orphans:
            path = self.frame_path(row["file"])
            # A crafted path is never unlinked (its row is gone all the same), nor a file another frame row names.
            if path is not None and row["file"] not in still_used:
                path.unlink(missing_ok=True)
        return purged

    def forget_frames(self, chat_id: int, keep_last: int) -> int:
        """Keep only the newest `keep_last` frames of a chat (a watch's retention cap): older messages keep their
        text and lose their frame; frame files no chat uses any more are deleted. Returns how many were dropped."""
        if self.read_only:
            return 0
        with self._write() as conn:
            rows = conn.execute(
                "SELECT id FROM messages WHERE chat_id = ? AND image_hash IS NOT NULL ORDER BY id DESC LIMIT -1 "
                "OFFSET ?", (chat_id, max(0, keep_last))).fetchall()  # fmt: skip
            conn.executemany("UPDATE messages SET image_hash = NULL WHERE id = ?", [(row["id"],) for row in rows])
            orphans = conn.execute(
                "SELECT hash, file FROM images WHERE hash NOT IN "
                "(SELECT image_hash FROM messages WHERE image_hash IS NOT NULL) AND hash NOT IN "
                "(SELECT image_hash FROM records WHERE image_hash IS NOT NULL)"  # a record keeps its frame
            ).fetchall()
            conn.executemany("DELETE FROM images WHERE hash = ?", [(row["hash"],) for row in orphans])
            still_used = {row[0] for row in conn.execute("SELECT file FROM images")}
        for row in orphans:
            path = self.frame_path(row["file"])
            if path is not None and row["file"] not in still_used:
                path.unlink(missing_ok=True)
        return len(rows)

    # --- reading ------------------------------------------------------------------------------------------------

    def list_chats(self) -> list[Chat]:
        with self._reading():
            rows = self.conn.execute(
                "SELECT * FROM chats WHERE deleted_at IS NULL ORDER BY updated_at DESC, id DESC"
            ).fetchall()
        return [Chat(r["id"], r["title"], r["model_id"], r["created_at"], r["updated_at"]) for r in rows]

    def get_chat(self, chat_id: int, *, include_deleted: bool = False) -> Chat:
        """A stored chat with its messages; a deleted one (waiting for purge) only with include_deleted."""
        with self._reading():
            return self._get_chat(chat_id, include_deleted)

    def _get_chat(self, chat_id: int, include_deleted: bool = False) -> Chat:
        row = (self.conn.execute("SELECT * FROM chats WHERE id = ?", (chat_id,)).fetchone()
               if -_MAX_ROWID <= chat_id <= _MAX_ROWID else None)  # fmt: skip
        if row is None or (row["deleted_at"] is not None and not include_deleted):
            raise HistoryError(f"there is no chat {chat_id}" + (" (it was deleted)" if row is not None else ""))
        messages = [self._message(m) for m in self.conn.execute(
            "SELECT m.*, i.file, i.width, i.height, i.captured_at, i.source FROM messages m "
            "LEFT JOIN images i ON i.hash = m.image_hash WHERE m.chat_id = ? ORDER BY m.id", (chat_id,))]  # fmt: skip
        return Chat(row["id"], row["title"], row["model_id"], row["created_at"], row["updated_at"], messages)

    def _message(self, row: sqlite3.Row) -> Message:
        image = None
        if row["image_hash"]:
            # A refused or absent path becomes a frame that does not exist (shown as missing), never a path outside.
            path = self.frame_path(row["file"]) or self.images_dir / "missing-frame.jpg"
            image = ImageRecord(row["image_hash"], path, row["width"] or 0, row["height"] or 0,
                                row["captured_at"] or 0.0, row["source"] or "")  # fmt: skip
        sampling, timings = _json_object(row["sampling"]), _json_object(row["timings"])
        return Message(row["id"], row["chat_id"], row["role"], row["text"], image, row["model_id"], sampling,
                       timings, row["status"], row["created_at"], bool(row["chosen"]), _answered_by(row))  # fmt: skip

    def get_turns(self, chat_id: int) -> list[StoredTurn]:
        """Question/answer pairs in order, with the frame each question was about: to continue a chat."""
        turns: list[StoredTurn] = []
        pending: Message | None = None
        for message in self.get_chat(chat_id).messages:
            if message.role == "user":
                pending = message
            elif pending is not None and message.chosen:
                turns.append(StoredTurn(pending.text, message.text, pending.image.path if pending.image else None))
                pending = None
        return turns

    def search(self, query: str) -> list[tuple[Chat, Message]]:
        pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self._reading():
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
        """Write the chat as Markdown (frames as files beside it) or JSON; returns the written file.
        Frames no longer on disk are named as missing (and a MissingFrameWarning says how many), never linked."""
        if fmt not in ("md", "json"):
            raise HistoryError(f"unknown export format {fmt!r}: use md or json")
        chat = self.get_chat(chat_id)
        if out.exists() and not out.is_dir():
            raise HistoryError(f"cannot export to {out}: it is a file, not a folder (give a folder with --out)")
        present = {m.id for m in chat.messages if m.image is not None and m.image.path.is_file()}
        missing = sum(1 for m in chat.messages if m.image is not None and m.id not in present)
        try:
            out.mkdir(parents=True, exist_ok=True)
            frames = out / "images"
            for message in chat.messages:
                if message.image is not None and message.id in present:
                    frames.mkdir(exist_ok=True)
                    shutil.copyfile(message.image.path, frames / message.image.path.name)
            target = out / f"chat-{chat.id}.{fmt}"
            if fmt == "json":
                exported = chat_to_dict(chat)
                for entry in exported["messages"]:
                    if entry["image"] is not None and entry["id"] not in present:
                        entry["image"] = {**entry["image"], "file": None, "missing": True}
                target.write_text(json.dumps(exported, indent=2, ensure_ascii=False), encoding="utf-8")
            else:
                target.write_text(_markdown(chat, present), encoding="utf-8")
        except OSError as exc:
            raise HistoryError(f"cannot write the export to {out}: {exc.strerror or exc}") from exc
        if missing:
            warnings.warn(f"{missing} frame(s) of chat {chat.id} are no longer in {self.images_dir}: the export names "
                          "them as missing", MissingFrameWarning, stacklevel=2)  # fmt: skip
        return target


def _markdown(chat: Chat, present: set[int]) -> str:
    lines = [f"# {chat.title or 'Chat'}", "", f"*{_when(chat.created_at)}*", ""]
    for message in chat.messages:
        who = "You" if message.role == "user" else "LlavaCam"
        by = f" ({message.answered_by.label})" if message.answered_by is not None else ""  # which engine and model
        marker = by + ("" if message.status == "complete" else f" *({message.status})*")
        if not message.chosen:
            marker += " *(other version, not in the conversation)*"
        lines += [f"**{who}**{marker}", ""]
        if message.image is not None:
            when = _when(message.image.captured_at)
            lines += [f"![frame captured {when}](images/{message.image.path.name})" if message.id in present
                      else f"*(the frame captured {when} is missing from the history)*", ""]  # fmt: skip
        lines += [message.text, ""]
    return "\n".join(lines)


def chat_to_dict(chat: Chat) -> dict[str, Any]:
    return {
        "id": chat.id, "title": chat.title, "model_id": chat.model_id,
        "created_at": chat.created_at, "updated_at": chat.updated_at,
        "messages": [
            {"id": m.id, "role": m.role, "text": m.text, "status": m.status, "model_id": m.model_id,
             "sampling": m.sampling, "timings": m.timings, "created_at": m.created_at, "chosen": m.chosen,
             "answered_by": None if m.answered_by is None else {
                 "engine": m.answered_by.engine, "model": m.answered_by.model},
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

    def append(self, piece: str) -> None:
        self.text += piece
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

    def finish(self, status: str = "complete", timings: dict[str, Any] | None = None) -> None:
        self.flush(status, timings)


def _title_from(text: str) -> str:
    first = " ".join(text.split())
    return first if len(first) <= 60 else first[:57] + "…"


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


def _answered_by(row: sqlite3.Row) -> AnsweredBy | None:
    """Who gave a stored answer; None before it was recorded (an old row, or a database opened read-only before
    migration 5 added the columns)."""
    keys = row.keys()
    engine = row["engine"] if "engine" in keys else None
    if not isinstance(engine, str) or not engine:
        return None
    model = row["engine_model"] if "engine_model" in keys else None
    return AnsweredBy(engine, model if isinstance(model, str) else "")


def _json_object(text: object) -> dict[str, Any] | None:
    """A JSON object column (sampling, timings); anything else a crafted or damaged row holds reads as None."""
    if not isinstance(text, str) or not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _kind_of(exc: sqlite3.DatabaseError) -> str:
    """What an SQLite error means for the file: "busy", "full", "readonly", "corrupt" or "other"."""
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return "busy"
    if "full" in text:
        return "full"
    if "readonly" in text or "read-only" in text or "unable to open" in text:
        return "readonly"
    if "not a database" in text or "malformed" in text or "integrity check" in text:
        return "corrupt"
    return "other"


_CHAT_TABLES = ("chats", "images", "messages")  # copied chat by chat; any other table row by row afterwards


def _salvage(old: Path, new: sqlite3.Connection) -> tuple[int, int]:
    """Copy every chat of a damaged database that can still be read (one by one: a bad page costs only the chats on
    it) into `new`. Returns (recovered, chats seen)."""
    try:
        src = sqlite3.connect(f"{old.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.DatabaseError:
        return 0, 0
    src.row_factory = sqlite3.Row
    try:
        ids = _chat_ids(src)
        recovered = 0
        for chat_id in ids:
            try:
                chat = src.execute("SELECT * FROM chats WHERE id = ?", (chat_id,)).fetchone()
                if chat is None:
                    continue
                try:
                    messages = src.execute("SELECT * FROM messages WHERE chat_id = ? ORDER BY id",
                                           (chat_id,)).fetchall()  # fmt: skip
                except sqlite3.DatabaseError:  # a damaged index: scan the table itself
                    messages = src.execute("SELECT * FROM messages NOT INDEXED WHERE chat_id = ? ORDER BY id",
                                           (chat_id,)).fetchall()  # fmt: skip
                hashes = {m["image_hash"] for m in messages if m["image_hash"]}
                images = [row for h in sorted(hashes)
                          for row in src.execute("SELECT * FROM images WHERE hash = ?", (h,)).fetchall()]  # fmt: skip
                with new:
                    _copy_row(new, "chats", chat)
                    for image in images:
                        _copy_row(new, "images", image, "INSERT OR IGNORE")
                    for message in messages:
                        _copy_row(new, "messages", message)
                recovered += 1
            except sqlite3.DatabaseError:
                continue
        _copy_other_tables(src, new)
        return recovered, len(ids)
    finally:
        src.close()


def _copy_other_tables(src: sqlite3.Connection, new: sqlite3.Connection) -> None:
    """Rows of the tables later migrations add (answer versions, records...): each row that can still be read and
    still fits (its chat or message was recovered) is copied; the rest are skipped."""
    tables = [row[0] for row in new.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
                                            "'sqlite_%'")]  # fmt: skip
    for table in tables:
        if table in _CHAT_TABLES:
            continue
        try:
            rows = src.execute(f'SELECT * FROM "{table}"')
        except sqlite3.DatabaseError:
            continue
        while True:
            try:
                row = rows.fetchone()
            except sqlite3.DatabaseError:  # a bad page: keep what came before it
                break
            if row is None:
                break
            try:
                with new:
                    _copy_row(new, table, row, "INSERT OR IGNORE")
            except sqlite3.DatabaseError:
                continue


def _chat_ids(src: sqlite3.Connection) -> list[int]:
    try:
        return [row[0] for row in src.execute("SELECT id FROM chats ORDER BY id")]
    except sqlite3.DatabaseError:
        pass
    try:  # the table scan breaks on a bad page: probe ids one by one up to the largest (the B-tree's right edge)
        highest = src.execute("SELECT max(id) FROM chats").fetchone()[0] or 0
    except sqlite3.DatabaseError:
        return []
    found = []
    for chat_id in range(1, min(int(highest), 100_000) + 1):
        try:
            if src.execute("SELECT 1 FROM chats WHERE id = ?", (chat_id,)).fetchone():
                found.append(chat_id)
        except sqlite3.DatabaseError:
            continue
    return found


def _copy_row(conn: sqlite3.Connection, table: str, row: sqlite3.Row, verb: str = "INSERT") -> None:
    wanted = [info[1] for info in conn.execute(f'PRAGMA table_info("{table}")')]
    columns = [c for c in wanted if c in row.keys()]  # noqa: SIM118 (`in row` tests values)
    names = ", ".join('"' + c + '"' for c in columns)
    marks = ", ".join("?" * len(columns))
    conn.execute(f'{verb} INTO "{table}" ({names}) VALUES ({marks})', [row[c] for c in columns])
