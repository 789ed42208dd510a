"""Records extracted from frames (camera to list), kept in the history's SQLite file next to their chat.

Plain Python 3.10 and the standard library only: the Pyto bundle ships this module with the history. A record is
its preset's fields as JSON, with the frame it came from, its capture time and time zone. A new record whose
normalised title matches an open record of the same kind is merged into it (empty fields filled, the newer frame
kept), not added. Exports: CSV (one column per field) and iCalendar VTODO for to-dos (RFC 5545, written by hand:
the bundle has no calendar library), with due dates already resolved against the capture time.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from app.core.history.store import HistoryStore


@dataclass
class Record:
    id: int
    chat_id: int | None
    kind: str
    data: dict[str, Any]
    image_hash: str | None
    status: str
    captured_at: float
    time_zone: str


def normalise_title(text: str) -> str:
    words = re.findall(r"\w+", str(text).casefold())
    return " ".join(w for w in words if w not in {"a", "an", "the"})


class RecordStore:
    """Records in a `HistoryStore`'s database (its connection, lock and error handling)."""

    def __init__(self, store: HistoryStore) -> None:
        self.store = store

    def add(
        self,
        kind: str,
        data: dict[str, Any],
        *,
        title_field: str,
        chat_id: int | None = None,
        image_hash: str | None = None,
        captured_at: datetime | None = None,
    ) -> tuple[Record, bool]:
        """Store `data`, or merge it into the open record of `kind` with the same normalised title.
        Returns (the record, whether it was merged)."""
        when = captured_at or datetime.now().astimezone()
        key = normalise_title(data.get(title_field, ""))
        now = time.time()
        with self.store._write() as conn:
            row = None
            if key:
                row = conn.execute(
                    "SELECT * FROM records WHERE kind = ? AND status = 'open' AND title_key = ? ORDER BY id LIMIT 1",
                    (kind, key),
                ).fetchone()
            if row is not None:
                merged = json.loads(row["data"])
                for name, value in data.items():
                    if value not in ("", None) and merged.get(name) in ("", None):
                        merged[name] = value
                conn.execute(
                    "UPDATE records SET data = ?, image_hash = COALESCE(?, image_hash), updated_at = ? WHERE id = ?",
                    (json.dumps(merged, ensure_ascii=False), image_hash, now, row["id"]),
                )
                record_id, is_merged = int(row["id"]), True
            else:
                cursor = conn.execute(
                    "INSERT INTO records (chat_id, kind, title_key, data, image_hash, captured_at, time_zone, "
                    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (chat_id, kind, key, json.dumps(data, ensure_ascii=False), image_hash, when.timestamp(),
                     when.strftime("%z"), now, now),
                )  # fmt: skip
                record_id, is_merged = int(cursor.lastrowid or 0), False
        return self.get(record_id), is_merged

    def get(self, record_id: int) -> Record:
        with self.store._reading() as conn:
            row = conn.execute("SELECT * FROM records WHERE id = ?", (record_id,)).fetchone()
        if row is None:
            raise KeyError(record_id)
        return _record(row)

    def list(self, kind: str | None = None, chat_id: int | None = None) -> list[Record]:
        query, args = "SELECT * FROM records WHERE 1=1", list[Any]()
        if kind is not None:
            query, args = query + " AND kind = ?", [*args, kind]
        if chat_id is not None:
            query, args = query + " AND chat_id = ?", [*args, chat_id]
        with self.store._reading() as conn:
            return [_record(row) for row in conn.execute(query + " ORDER BY id", args)]

    def update(self, record_id: int, *, data: dict[str, Any] | None = None, status: str | None = None,
               title_field: str | None = None) -> Record:  # fmt: skip
        """Edit a record (the table's cell edits) or mark it done."""
        current = self.get(record_id)
        new_data = current.data if data is None else data
        key = normalise_title(new_data.get(title_field, "")) if title_field else None
        with self.store._write() as conn:
            conn.execute(
                "UPDATE records SET data = ?, status = ?, title_key = COALESCE(?, title_key), updated_at = ? "
                "WHERE id = ?",
                (json.dumps(new_data, ensure_ascii=False), status or current.status, key, time.time(), record_id),
            )
        return self.get(record_id)

    def delete(self, record_id: int) -> None:
        with self.store._write() as conn:
            conn.execute("DELETE FROM records WHERE id = ?", (record_id,))

    def restore(self, record: Record, *, title_field: str) -> Record:
        """Put a deleted record back as it was, with its id (Undo in the window); if its chat is gone meanwhile,
        the record stays, with no chat."""
        row = (record.id, record.chat_id, record.kind, normalise_title(record.data.get(title_field, "")),
               json.dumps(record.data, ensure_ascii=False), record.image_hash, record.status, record.captured_at,
               record.time_zone, time.time(), time.time())  # fmt: skip
        insert = ("INSERT INTO records (id, chat_id, kind, title_key, data, image_hash, status, captured_at, "
                  "time_zone, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")  # fmt: skip
        with self.store._write() as conn:
            if conn.execute("SELECT 1 FROM records WHERE id = ?", (record.id,)).fetchone() is not None:
                return self.get(record.id)  # already back
            chat = record.chat_id
            if chat is not None and conn.execute("SELECT 1 FROM chats WHERE id = ?", (chat,)).fetchone() is None:
                row = (row[0], None, *row[2:])
            if record.image_hash is not None and conn.execute(
                "SELECT 1 FROM images WHERE hash = ?", (record.image_hash,)
            ).fetchone() is None:
                row = (*row[:5], None, *row[6:])  # its frame was purged meanwhile
            conn.execute(insert, row)
        return self.get(record.id)

    def frame_files(self, records: Sequence[Record]) -> dict[str, Path]:
        """Where the frames of `records` are (image hash -> file inside the images folder); a frame whose file is
        gone, or whose name would reach outside the folder, is left out."""
        hashes = sorted({r.image_hash for r in records if r.image_hash})
        found: dict[str, Path] = {}
        with self.store._reading() as conn:
            for start in range(0, len(hashes), 500):  # SQLite's bound on the variables of one statement
                chunk = hashes[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for row in conn.execute(f"SELECT hash, file FROM images WHERE hash IN ({marks})", chunk):
                    path = self.store.frame_path(row["file"])
                    if path is not None and path.is_file():
                        found[row["hash"]] = path
        return found


def _record(row: Any) -> Record:
    return Record(int(row["id"]), row["chat_id"], row["kind"], json.loads(row["data"]), row["image_hash"],
                  row["status"], float(row["captured_at"]), row["time_zone"])  # fmt: skip


def to_csv(records: list[Record], fields: list[str]) -> str:
    """One row per record: its fields, then status and capture time (ISO, with its zone)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*fields, "status", "captured_at"])
    for record in records:
        writer.writerow([_cell(record.data.get(f, "")) for f in fields] + [record.status, _captured(record)])
    return out.getvalue()


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text  # no formula runs when a sheet opens it


def captured_time(record: Record) -> datetime:
    """When the record's frame was captured, in the time zone it was captured in (relative dates resolve here)."""
    zone = record.time_zone
    offset = timezone.utc
    if re.fullmatch(r"[+-]\d{4}", zone):
        sign = 1 if zone[0] == "+" else -1
        offset = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[3:])))
    return datetime.fromtimestamp(record.captured_at, offset)


def _captured(record: Record) -> str:
    return captured_time(record).isoformat(timespec="seconds")


def _ics_text(value: Any) -> str:
    text = str(value or "")
    text = text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
    return re.sub(r"\r\n|\r|\n", "\\\\n", text)


def _fold(line: str) -> str:
    """RFC 5545 line folding: at most 75 octets a line, continuation lines start with a space."""
    data = line.encode("utf-8")
    if len(data) <= 75:
        return line
    parts: list[str] = []
    chunk = b""
    for char in line:
        encoded = char.encode("utf-8")
        if len(chunk) + len(encoded) > (75 if not parts else 74):
            parts.append(chunk.decode("utf-8"))
            chunk = b""
        chunk += encoded
    parts.append(chunk.decode("utf-8"))
    return "\r\n ".join(parts)


def to_ics(records: list[Record], *, title_field: str = "title", due_field: str = "due",
           notes_field: str = "notes") -> str:  # fmt: skip
    """A VCALENDAR of VTODOs: SUMMARY, DUE (a date, when the record's due date was resolved), DESCRIPTION."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//LlavaCam//Camera to list//EN"]
    for record in records:
        lines += ["BEGIN:VTODO", f"UID:{uuid.uuid5(uuid.NAMESPACE_URL, f'llavacam-record-{record.id}')}@llavacam",
                  f"DTSTAMP:{stamp}", f"SUMMARY:{_ics_text(record.data.get(title_field, ''))}"]  # fmt: skip
        due = str(record.data.get(due_field) or "")
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", due):
            lines.append(f"DUE;VALUE=DATE:{due.replace('-', '')}")
        notes = record.data.get(notes_field)
        if notes:
            lines.append(f"DESCRIPTION:{_ics_text(notes)}")
        lines.append("STATUS:" + ("COMPLETED" if record.status == "done" else "NEEDS-ACTION"))
        lines.append("END:VTODO")
    lines.append("END:VCALENDAR")
    return "\r\n".join(_fold(line) for line in lines) + "\r\n"
