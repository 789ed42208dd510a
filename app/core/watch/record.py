"""A watch kept in the history: a chat whose turns are the timeline's entries, each with its timestamped frame.

Each new timeline entry is one user message (the question, with the frame captured at that moment) and one
answer; a folded repeat adds nothing. A `FrameRetention` (the Watch settings, or `llavacam watch --max-frames N
--no-frames`) decides which frames are kept: at most `max_frames`, the newest (older entries keep their text), or
none at all; frames for records read during a watch follow `store_frames` too. The chat exports like any other
(`llavacam history export`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.core.history.store import HistoryStore
from app.core.inference.answerer import AnsweredBy
from app.core.inference.images import load_image
from app.core.watch.watcher import Answerer, Frame, WatchEvent

DEFAULT_MAX_FRAMES = 200
FRAME_SIDE = 1024  # stored frames are at most this long a side


@dataclass(frozen=True)
class FrameRetention:
    """Which of a watch's frames the history keeps: none (`store_frames=False`), or the newest `max_frames`."""

    store_frames: bool = True
    max_frames: int = DEFAULT_MAX_FRAMES

    def __post_init__(self) -> None:
        if isinstance(self.max_frames, bool) or not isinstance(self.max_frames, int) or self.max_frames < 1:
            raise ValueError(f"a watch keeps at least 1 frame (none: store_frames=False), not {self.max_frames!r}")


class WatchRecorder:
    def __init__(
        self,
        store: HistoryStore,
        title: str,
        *,
        source: str = "",
        model_id: str | None = None,
        retention: FrameRetention = FrameRetention(),  # noqa: B008 - frozen, shared safely
        answered_by: AnsweredBy | None = None,
    ) -> None:
        self.store = store
        self.source = source
        self.model_id = model_id
        self.retention = retention
        self.answered_by = answered_by  # stored with each answer, as chat answers are (else the answerer's own)
        self.title = title
        self._chat_id: int | None = None  # created with the first answer, on the thread that records it
        self._frames_kept = 0
        self._recent: dict[int, Frame] = {}

    @property
    def chat_id(self) -> int:
        if self._chat_id is None:
            self._chat_id = self.store.create_chat(self.title, self.model_id)
        return self._chat_id

    @property
    def store_frames(self) -> bool:
        return self.retention.store_frames

    @property
    def max_frames(self) -> int:
        return self.retention.max_frames

    @property
    def has_chat(self) -> bool:
        return self._chat_id is not None

    def remembering(self, answer: Answerer) -> Any:
        """`answer`, remembering the frames it is asked about, so `on_event` can store each answer's frame."""
        recent: dict[int, Frame] = self._recent
        if self.answered_by is None:  # the watch's engine or server says who answers (EngineAnswerer, --server)
            self.answered_by = getattr(answer, "answered_by", None)

        def ask(question: str, frame: Frame, grammar: str | None) -> str | None:
            recent[frame.index] = frame
            while len(recent) > 2:
                recent.pop(next(iter(recent)))
            return answer(question, frame, grammar)

        ask.cancel = getattr(answer, "cancel", None)  # type: ignore[attr-defined]
        return ask

    def on_event(self, event: WatchEvent) -> None:
        """A `Watcher` on_event that stores the event with the frame it is about (see `remembering`)."""
        self.record(event, self._recent.get(event.frame_index))

    def record(self, event: WatchEvent, frame: Frame | None) -> None:
        """Store an "answer" event (with its frame) or a "match" (a note in the chat); others are not stored."""
        if event.kind == "answer":
            image = None
            if self.store_frames and frame is not None:
                picture = load_image(frame.rgb, max_side=FRAME_SIDE)
                image = self.store.save_image(picture, source=self.source, captured_at=frame.captured_at.timestamp())
            self.store.add_user_message(self.chat_id, f"[{event.at.isoformat(timespec='seconds')}] {event.question}",
                                        image)  # fmt: skip
            writer = self.store.begin_answer(self.chat_id, self.model_id, answered_by=self.answered_by)
            writer.append(event.text)
            writer.finish("complete")
            if image is not None:
                self._frames_kept += 1
                if self._frames_kept > self.max_frames:
                    self._frames_kept -= self.store.forget_frames(self.chat_id, self.max_frames)
        elif event.kind == "match":
            self.store.add_user_message(self.chat_id, f"[{event.at.isoformat(timespec='seconds')}] "
                                        f"Matched: {event.text}")  # fmt: skip

    def frame_for_records(self, frame: Frame) -> str | None:
        """Store the frame records were read from and return its hash, or None when the watch keeps no frames."""
        if not self.store_frames:
            return None
        picture = load_image(frame.rgb, max_side=FRAME_SIDE)
        return self.store.save_image(picture, source=self.source, captured_at=frame.captured_at.timestamp()).hash
