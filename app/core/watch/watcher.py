"""Watch mode: a standing question about a live camera, asked again only when the scene changes.

Driven by one loop (`Watcher.run`, on a thread of the caller's choosing): take the newest frame from the source,
let the change detector decide, and if the frame is due, ask and wait for the answer. Only one request is ever in
flight, and it is always about the newest frame: a camera source overwrites one slot while the answer runs, so a
slow engine skips frames instead of building a backlog. A static scene costs one question, the first.

Answers go to a `Timeline` (time, thumbnail, answer; an answer identical to the previous one is folded into it).
A condition ("Tell me when the shape is red") is asked as a yes/no question whose answer a grammar constrains; it
fires when the answer changes to yes, not again until it has gone back to no, and never within `cooldown` of the
last firing. The watch can end on its first match, after a time limit, when the source ends, or on `stop()`.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

import numpy as np

from app.core.watch.change import ChangeDetector, ChangeSettings

YES_NO_GRAMMAR = 'root ::= ("Yes" | "No") "."?'
THUMB_PIXELS = 96


@dataclass(frozen=True)
class Frame:
    """One camera frame: RGB pixels, its number in the source, and when it was captured (aware, local zone)."""

    rgb: np.ndarray
    index: int
    captured_at: datetime


class FrameSource(Protocol):
    def next_frame(self) -> Frame | None:
        """The newest frame not yet returned (waiting for one if needed); None when the source has ended."""


class Answerer(Protocol):
    def __call__(self, question: str, frame: Frame, grammar: str | None) -> str | None:
        """The answer about `frame`, or None when the question was pre-empted (the chat came first)."""


@dataclass
class TimelineEntry:
    answer: str
    question: str
    frame_index: int
    at: datetime
    thumbnail: np.ndarray
    last_frame_index: int
    last_at: datetime
    repeats: int = 1  # how many answers were folded into this entry


@dataclass
class WatchEvent:
    """One line of the watch's output: an answer (new entry), a repeat (folded), a match, or the end."""

    kind: str  # "answer" | "repeat" | "match" | "end"
    text: str
    frame_index: int
    at: datetime
    question: str = ""

    def to_dict(self) -> dict[str, object]:
        return {"event": self.kind, "text": self.text, "frame": self.frame_index, "time": self.at.isoformat(),
                "question": self.question}  # fmt: skip


@dataclass
class Timeline:
    entries: list[TimelineEntry] = field(default_factory=list)

    def add(self, question: str, answer: str, frame: Frame) -> tuple[TimelineEntry, bool]:
        """Append an answer, or fold it into the last entry when it says the same. Returns (entry, is_new)."""
        last = self.entries[-1] if self.entries else None
        if last is not None and last.question == question and _same_answer(last.answer, answer):
            last.repeats += 1
            last.last_frame_index, last.last_at = frame.index, frame.captured_at
            return last, False
        entry = TimelineEntry(answer, question, frame.index, frame.captured_at, small_thumbnail(frame.rgb),
                              frame.index, frame.captured_at)  # fmt: skip
        self.entries.append(entry)
        return entry, True


def _same_answer(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def small_thumbnail(rgb: np.ndarray, side: int = THUMB_PIXELS) -> np.ndarray:
    step = max(1, -(-max(rgb.shape[0], rgb.shape[1]) // side))
    return np.ascontiguousarray(rgb[::step, ::step, :3])


_CONDITION_LEAD = re.compile(r"^\s*(?:please\s+)?(?:tell|let)\s+me\s+(?:know\s+)?(?:when|if)\s+|^\s*(?:when|if)\s+",
                             re.IGNORECASE)  # fmt: skip
_COPULA = re.compile(r"^(?P<subject>.+?)\s+(?P<verb>is|are|has|have)\s+(?P<rest>.+)$", re.IGNORECASE)


def condition_question(condition: str) -> str:
    """ "Tell me when the shape is red" → "Is the shape red?" (the yes/no question the model is asked)."""
    text = _CONDITION_LEAD.sub("", condition).strip().rstrip(".!?").strip()
    if not text:
        raise ValueError("the condition is empty: say what to watch for, e.g. 'the shape is red'")
    match = _COPULA.match(text)
    if match and match["verb"].lower() in {"is", "are"}:
        subject = match["subject"]
        subject = subject[0].lower() + subject[1:] if subject[:1].isupper() and subject[1:2].islower() else subject
        return f"{match['verb'].capitalize()} {subject} {match['rest']}?"
    return f"Is it true that {text[0].lower() + text[1:]}?"


def is_yes(answer: str) -> bool:
    return answer.strip().lower().startswith("yes")


@dataclass(frozen=True)
class Condition:
    text: str
    cooldown: float = 30.0  # seconds on the watch's clock between two firings at least
    end_on_match: bool = False

    @property
    def question(self) -> str:
        return condition_question(self.text)


class Watcher:
    """Runs one watch. `question` and/or `condition`; `interval` (seconds) asks on a timer instead of on change."""

    def __init__(
        self,
        answer: Answerer,
        question: str | None = None,
        *,
        condition: Condition | None = None,
        change: ChangeSettings | None = None,
        interval: float | None = None,
        time_limit: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_event: Callable[[WatchEvent], None] | None = None,
        on_scene: Callable[[Frame], bool] | None = None,
    ) -> None:
        """`on_scene(frame)` runs once for each frame asked about (after the questions), e.g. an extraction preset
        that fills a list; it returns False when it was pre-empted, so the frame is asked about again."""
        if not question and condition is None and on_scene is None:
            raise ValueError("a watch needs a question, a condition or something to extract")
        if interval is not None and interval < 0:
            raise ValueError("the interval must be 0 seconds or more")
        self._answer = answer
        self.question = question
        self.condition = condition
        self.detector = ChangeDetector(change)
        self.interval = interval
        self.time_limit = time_limit
        self._clock = clock
        self._on_event = on_event
        self._on_scene = on_scene
        self.timeline = Timeline()
        self.events: list[WatchEvent] = []
        self.engine_calls = 0
        self.frames_seen = 0
        self.end_reason = ""
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._condition_yes = False
        self._last_fired: float | None = None
        self._last_interval_ask: float | None = None

    # --- control (any thread) ---------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def pause(self) -> None:
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    # --- the loop ---------------------------------------------------------------------------------------------

    def run(self, source: FrameSource) -> str:
        """Watch until stopped, matched, timed out or the source ends; returns why it ended."""
        started = self._clock()
        reason = "stopped"
        try:
            while not self._stop.is_set():
                if self.time_limit is not None and self._clock() - started >= self.time_limit:
                    reason = "time limit"
                    break
                frame = source.next_frame()
                if frame is None:
                    reason = "source ended"
                    break
                if self._stop.is_set():
                    break
                if self._paused.is_set():
                    continue
                if self.step(frame):
                    reason = "matched"
                    break
        except KeyboardInterrupt:  # Ctrl+C in a terminal: the question in flight was cancelled by the answerer
            reason = "interrupted"
        self.end_reason = reason
        last = self.timeline.entries[-1] if self.timeline.entries else None
        self._emit(WatchEvent("end", reason, last.last_frame_index if last else -1, datetime.now(timezone.utc)))
        return reason

    def step(self, frame: Frame) -> bool:
        """Consider one frame (asking about it if due). True when a condition that ends the watch matched."""
        self.frames_seen += 1
        now = self._clock()
        if self.interval is not None:
            due = self._last_interval_ask is None or now - self._last_interval_ask >= self.interval
        else:
            due = self.detector.observe(frame.rgb, now)
        if not due:
            return False
        self.detector.asked(frame.rgb, now)
        self._last_interval_ask = now
        if self.condition is not None:
            answer = self._ask(self.condition.question, frame, YES_NO_GRAMMAR)
            if answer is None:
                return False
            if self._record(self.condition.question, answer, frame) and self.condition.end_on_match:
                return True
        if self.question:
            answer = self._ask(self.question, frame, None)
            if answer is not None:
                self._record(self.question, answer, frame)
        if self._on_scene is not None:
            self.engine_calls += 1
            if not self._on_scene(frame):
                self.detector.forget()
                self._last_interval_ask = None
        return False

    def _ask(self, question: str, frame: Frame, grammar: str | None) -> str | None:
        self.engine_calls += 1
        answer = self._answer(question, frame, grammar)
        if answer is None:
            self.detector.forget()  # pre-empted: the newest frame is asked about next
            self._last_interval_ask = None
        return answer

    def _record(self, question: str, answer: str, frame: Frame) -> bool:
        """Timeline + events for one answer; True when it is a condition's match."""
        entry, is_new = self.timeline.add(question, answer, frame)
        self._emit(WatchEvent("answer" if is_new else "repeat", answer, frame.index, frame.captured_at, question))
        if self.condition is None or question != self.condition.question:
            return False
        yes = is_yes(answer)
        fired = False
        if yes and not self._condition_yes:
            now = self._clock()
            if self._last_fired is None or now - self._last_fired >= self.condition.cooldown:
                self._last_fired = now
                fired = True
                self._emit(WatchEvent("match", self.condition.text, frame.index, frame.captured_at, question))
        self._condition_yes = yes
        return fired

    def _emit(self, event: WatchEvent) -> None:
        self.events.append(event)
        if self._on_event is not None:
            self._on_event(event)


class EngineAnswerer:
    """Asks an `Engine` outside its conversation (`ask_aside`), so the chat's cache stays as it was."""

    def __init__(self, engine: object, max_tokens: int = 64) -> None:
        from app.core.inference.sampling import GREEDY

        self.engine = engine
        self.sampling = GREEDY.with_(max_tokens=max_tokens)
        self._turn: Any = None

    def cancel(self) -> None:
        """Stop the question in flight within one token (a watch being stopped); safe from any thread."""
        turn = self._turn
        if turn is not None:
            turn.cancel()

    @property
    def answered_by(self) -> Any:
        """Who answers: the engine's `AnsweredBy` (this computer and its model), stored with each watch answer."""
        return getattr(self.engine, "answered_by", None)

    def __call__(self, question: str, frame: Frame, grammar: str | None) -> str | None:
        turn = self.engine.ask_aside(question, frame.rgb, self.sampling.with_(grammar=grammar))  # type: ignore[attr-defined]
        self._turn = turn
        try:
            stats = turn.wait()
        except BaseException:
            turn.cancel()  # Ctrl+C, or the engine failed: nothing is left running for this watch
            raise
        if stats.finish_reason == "cancelled":
            return None
        return str(turn.text).strip()


class ListSource:
    """Frames from a list, one per call: a source fed at the watcher's own pace (tests, benchmarks)."""

    def __init__(self, frames: list[np.ndarray], start: datetime | None = None, seconds_per_frame: float = 1.0):
        self._frames = frames
        self._next = 0
        self._start = start or datetime(2026, 1, 1, 9, 0, tzinfo=timezone.utc)
        self._step = seconds_per_frame

    def next_frame(self) -> Frame | None:
        if self._next >= len(self._frames):
            return None
        index = self._next
        self._next += 1
        return Frame(self._frames[index], index, self._start + timedelta(seconds=index * self._step))
