"""Keeping an extraction in the history: the question and its frame in a chat, the model's answer after it, and the
records next to that chat (merged by title into open records of their kind). One function for every front end —
`llavacam extract` and the window's Extract menu store an extraction the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.core.extract.extractor import Extraction, with_dates
from app.core.extract.schemas import Preset
from app.core.history.records import Record, RecordStore
from app.core.history.store import HistoryStore
from app.core.inference.images import RGBImage


@dataclass(frozen=True)
class KeptExtraction:
    chat_id: int
    read: list[dict[str, Any]]  # the records as read, their relative dates resolved
    stored: list[tuple[Record, bool]]  # each as stored, and whether it was merged into an open record


def extraction_question(preset: Preset) -> str:
    """The user message an extraction is kept as in its chat."""
    return f"Extract {preset.label}"


def keep_extraction(
    store: HistoryStore,
    preset: Preset,
    image: RGBImage,
    extraction: Extraction,
    *,
    captured_at: datetime,
    chat_id: int | None = None,
    title: str = "",
    source: str = "",
    model_id: str | None = None,
) -> KeptExtraction:
    """Store `extraction` of `image` in chat `chat_id` (a new chat titled `title` when None). Writes SQLite and the
    frame's JPEG: call it off the GUI thread."""
    read = [with_dates(record, preset, captured_at) for record in extraction.records]
    if chat_id is None:
        chat_id = store.create_chat(title or f"{preset.label}: {source or 'image'}", model_id)
    frame = store.save_image(image, source=source, captured_at=captured_at.timestamp())
    store.add_user_message(chat_id, extraction_question(preset), frame)
    writer = store.begin_answer(chat_id, model_id)
    writer.append(extraction.raw)
    writer.finish("complete")
    table = RecordStore(store)
    stored = [table.add(preset.name, record, title_field=preset.title_field, chat_id=chat_id, image_hash=frame.hash,
                        captured_at=captured_at) for record in read]  # fmt: skip
    return KeptExtraction(chat_id, read, stored)


__all__ = ["KeptExtraction", "extraction_question", "keep_extraction"]
