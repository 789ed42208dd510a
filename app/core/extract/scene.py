"""Watch + a preset = the list that fills itself: each new scene a watch sees is read into records of the preset,
kept next to the watch's chat and merged by title into open records of their kind (a to-do seen twice is one
to-do). `SceneRecords` is a `Watcher`'s `on_scene`, for `llavacam watch --extract` and the window's watch alike; it
runs on the watch's thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.core.extract.extractor import ExtractError, ExtractInterrupted, extract, with_dates
from app.core.extract.schemas import Preset
from app.core.history.records import Record, RecordStore


@dataclass(frozen=True)
class SceneRead:
    """What one scene gave: its records as read (dates resolved), each as stored with whether it merged, or why
    nothing was read (`error`)."""

    frame: Any  # app.core.watch.Frame
    records: list[dict[str, Any]] = field(default_factory=list)
    stored: list[tuple[Record, bool]] = field(default_factory=list)
    error: str = ""


class SceneRecords:
    """`on_scene(frame)`: `preset`'s records from the frame, kept through `recorder` (a WatchRecorder, or None to
    keep nothing); `on_read(SceneRead)` is told each scene's outcome (on the watch's thread)."""

    def __init__(self, engine: Any, preset: Preset, recorder: Any = None,
                 on_read: Callable[[SceneRead], None] | None = None) -> None:  # fmt: skip
        self.engine = engine
        self.preset = preset
        self.recorder = recorder
        self.on_read = on_read
        self.table = RecordStore(recorder.store) if recorder is not None else None
        self._turn: Any = None

    def ask_aside(self, *args: Any, **kwargs: Any) -> Any:  # extract() asks through this, so cancel() can reach it
        self._turn = self.engine.ask_aside(*args, **kwargs)
        return self._turn

    def cancel(self) -> None:
        """Stop the extraction in flight within one token (the watch is stopping); safe from any thread."""
        cancel = getattr(self._turn, "cancel", None)  # a server's finished answer has nothing to cancel
        if cancel is not None:
            cancel()

    def __call__(self, frame: Any) -> bool:
        """False when a chat question pre-empted the reading (the watch asks about the newest frame again)."""
        try:
            result = extract(self, frame.rgb, self.preset)
        except ExtractInterrupted:
            return False
        except ExtractError as exc:
            self._tell(SceneRead(frame, error=str(exc)))
            return True
        finally:
            self._turn = None
        records = [with_dates(record, self.preset, frame.captured_at) for record in result.records]
        stored: list[tuple[Record, bool]] = []
        if self.table is not None and records:
            image_hash = self.recorder.frame_for_records(frame)
            stored = [self.table.add(self.preset.name, data, title_field=self.preset.title_field,
                                     chat_id=self.recorder.chat_id, image_hash=image_hash,
                                     captured_at=frame.captured_at) for data in records]  # fmt: skip
        self._tell(SceneRead(frame, records, stored))
        return True

    def _tell(self, read: SceneRead) -> None:
        if self.on_read is not None:
            self.on_read(read)


__all__ = ["SceneRead", "SceneRecords"]
