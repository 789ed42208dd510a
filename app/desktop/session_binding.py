"""The session binding: the window's `ChatSession`, shown in the chat view and driven by asyncio tasks.

napari's ViewerModel / QtViewer split: the conversation (chat id, turns, pinned frame, request in flight and its
phase) lives in `ChatSession`; this object observes it and renders bubbles, the status line and the pinned badge,
and runs what the buttons ask for as tasks on qasync's loop (the GUI thread):

- Send and Regenerate are tasks around `session.send_async` / `regenerate_async`; pieces come from the engine's
  `Turn.stream()` (the one bridge out of its inference thread), history writes in the loop's executor.
- Stop cancels the request: the engine stops between two tokens and the answer ends as "stopped" with its text.
- Opening a chat reads history and frames in the executor; the engine is fed the chosen answers.
- A question answered more than once shows ‹ 1/2 › under its answer: an arrow chooses another version (history
  writes the choice in the executor), its bubble shows it in place, and the engine is fed it.
- A pinned frame is prepared (encoded, prompt evaluated up to it) as soon as it is pinned, which the window does at
  the first keystroke of a question, so the typing hides the image encode.

While a request runs, a 5 Hz tick shows its phase with elapsed time — "Reading the image… 2 s", "Reading your
question… 1 s", then the answer with live tokens/s — in the status line and under the answer bubble.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import math
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

from PySide6.QtCore import QObject, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QPixmap

from app.core.errors import LlavaCamError
from app.core.history.store import HistoryStore
from app.core.inference.answerer import PastTurn, TurnStats
from app.core.inference.images import RGBImage
from app.core.inference.sampling import SamplingSettings
from app.core.session import AnswerVersion, ChatSession, Request, SessionEvent, SessionTurn
from app.desktop.camera_panel import CameraPanel, to_qimage
from app.desktop.chat_view import Bubble, ChatView, SeenTimes
from app.desktop.model_host import ModelHost

THUMBNAIL_SIZE = QSize(160, 120)
TICK_MS = 200
RECENT_TURNS = 40  # a reopened chat shows this many latest turns at first
# A chat is put on screen a few turns at a time, the loop running in between (building every bubble of a long chat
# in one go held the GUI thread for seconds): at most this many turns, or this long, per step. A turn of a stored chat
# costs the GUI thread 5-6 ms on the 2-core VM (its bubbles built, then polished and laid out once the loop runs), so
# there a step is one turn; a faster machine puts two in a step.
RENDER_STEP_TURNS = 2
RENDER_STEP_S = 0.004
# What a preparation of the pinned frame was made for: (engine, system prompt, the turns before the question, frame).
PreparationKey = tuple[int, "str | None", tuple[tuple[str, str, "str | None"], ...], str]


def thumbnail(image: RGBImage) -> QPixmap:
    return QPixmap.fromImage(to_qimage(image)).scaled(
        THUMBNAIL_SIZE, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
    )


def phase_text(request: Request, now: float, *, image_prepared: bool) -> str:
    """What the request is doing, for a person: its phase, with how long it has taken so far."""
    if request.phase == "saving":
        return "Saving your question…"
    if request.phase == "stopping":
        return "Stopping…"
    stream = request.stream
    stage = request.stage
    if request.phase == "answering" or stage == "answer":
        tokens = len(getattr(stream, "tokens", ()))
        since = getattr(stream, "stage_at", now)
        if tokens > 1 and now > since:
            return f"Answering · {(tokens - 1) / (now - since):.1f} tok/s"
        return "Answering…"
    image_to_read = request.turn.image is not None and not image_prepared
    if stage == "image" or (stage == "queued" and image_to_read):
        return f"Reading the image… {int(now - request.started_at)} s"
    since = getattr(stream, "stage_at", request.started_at) if stage == "question" else request.started_at
    return f"Reading your question… {int(now - since)} s"


class Tasks:
    """The window's running tasks: each one's failure becomes one visible message, never a silent dead task."""

    def __init__(self, on_error: Callable[[str], None]) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._on_error = on_error

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self._on_error(str(error) if isinstance(error, LlavaCamError) else f"Something went wrong: {error}")

    async def finish(self, timeout_s: float = 10.0) -> None:
        """Let the running tasks end (they were told to stop); cancel what is still running after `timeout_s`."""
        pending = set(self._tasks)
        if pending:
            _done, late = await asyncio.wait(pending, timeout=timeout_s)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)


class SessionBinding(QObject):
    """Shows a `ChatSession` in the chat view, status line and camera panel, and runs its tasks."""

    turn_finished = Signal(int, object)  # request number, its TurnStats (None after an error)
    answer_piece = Signal(str)  # a piece of the answer on screen, as it is shown
    prepared = Signal(bool)  # the pinned frame's preparation ended (True: completed)
    chat_opened = Signal(int)  # a stored chat is on screen and the engine has its turns
    rendered = Signal()  # every bubble of the chat (or of the earlier turns asked for) is on screen

    def __init__(
        self,
        host: ModelHost,
        history: HistoryStore | None,
        chat_view: ChatView,
        camera_panel: CameraPanel,
        *,
        set_status: Callable[[str], None],
        show_notice: Callable[[str], None],
        system_prompt: str | None,
        model_id: str | None,
    ) -> None:
        super().__init__()
        self.host = host
        self.chat_view = chat_view
        self._all_turns = False  # a long chat shows its latest RECENT_TURNS until "Show earlier" is pressed
        chat_view.earlier_requested.connect(self.show_all_turns)
        self.camera_panel = camera_panel
        self.set_status = set_status
        self.show_notice = show_notice
        self.session = ChatSession(host, history if history is not None and not history.read_only else None,
                                   model_id=model_id, system_prompt=system_prompt)  # fmt: skip
        self.session.subscribe(self._on_event)
        self.tasks = Tasks(show_notice)
        self.pinned_ready = False  # the pinned frame is encoded and in the cache: a question about it starts at once
        self._request_numbers = itertools.count(1)
        self._request_number = 0
        self._answer_task: asyncio.Task[Any] | None = None
        self._bubble: Bubble | None = None  # the answer being streamed (None once the chat on screen changed)
        self._answers: dict[int, Bubble] = {}  # turn index -> its answer bubble on screen (‹ 1/2 › asks by index)
        # Turns still to be put on screen (index, turn), oldest first, and the task putting them there a few at a
        # time.
        self._unrendered: collections.deque[tuple[int, SessionTurn]] = collections.deque()
        self._insert_at: int | None = None  # earlier turns go above the ones shown: the next one's bubble index
        self._first_shown = 0  # the first turn on screen (the ones above it wait for "Show earlier")
        self._render_task: asyncio.Task[None] | None = None
        self._pending: list[str] = []
        self._prepared_at_send = False
        self._engines = 0  # counts engines loaded: a new one holds nothing prepared
        self._preparation: PreparationKey | None = None  # the preparation under way or done (see _preparation_key)
        self._render_timer = QTimer(self)
        self._render_timer.setSingleShot(True)
        self._render_timer.setInterval(50)  # 20 updates a second reads as smooth streaming
        self._render_timer.timeout.connect(self._render_pending)
        self._tick = QTimer(self)
        self._tick.setInterval(TICK_MS)
        self._tick.timeout.connect(self._show_phase)

    # --- state the window reads -------------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """A request is in flight (from Send until its answer is stored): the session's state, nothing else."""
        return self.session.busy

    @property
    def pinned(self) -> RGBImage | None:
        return self.session.pinned

    @property
    def can_regenerate(self) -> bool:
        return not self.busy and bool(self.session.turns)

    # --- asking -------------------------------------------------------------------------------------------------------

    def send(self, question: str, sampling: SamplingSettings) -> None:
        """Ask `question` about the pinned frame (a task; the question is on screen and in flight at once)."""
        self._prepared_at_send = self.pinned_ready and not self.session.asked_about_pinned
        self._request_number = next(self._request_numbers)
        self._answer_task = self.tasks.spawn(self._answer(self.session.begin_send(question), sampling))

    def regenerate(self, sampling: SamplingSettings) -> None:
        """Answer the last question again, as a new version (a task)."""
        self._prepared_at_send = False
        self._request_number = next(self._request_numbers)
        self._answer_task = self.tasks.spawn(self._answer(self.session.begin_regenerate(), sampling))

    async def _answer(self, request: Request, sampling: SamplingSettings) -> None:
        with contextlib.suppress(LlavaCamError):  # an error is shown in its bubble (the "finished" event)
            await self.session.run_async(request, sampling)

    def stop(self) -> None:
        """Stop the answer in any phase; it ends as "stopped" with the text so far."""
        if self.session.busy:
            self.session.stop()

    def new_chat(self) -> None:
        """An empty chat; an answer still coming is stopped and kept in the chat it belongs to."""
        self.session.new_chat()
        self.tasks.spawn(self._fresh_conversation())

    async def _fresh_conversation(self) -> None:
        await asyncio.wrap_future(self.host.set_history([], self.session.system_prompt))
        self.prepare_pinned()  # a frame pinned since (the first keystroke) is being read for this chat already

    def open_chat(self, chat_id: int) -> None:
        self.tasks.spawn(self.open_chat_async(chat_id))

    async def open_chat_async(self, chat_id: int) -> None:
        """Show a stored chat and feed the engine its turns (an extraction kept in it, a chat chosen)."""
        await self.session.open_chat_async(chat_id)
        # Feed the engine now, so the first follow-up only evaluates its own tokens (while the bubbles are built).
        await asyncio.wrap_future(self.host.set_history(self.session.past_turns(), self.session.system_prompt))
        self.prepare_pinned()
        await self.render_done()
        self.set_status(f"Opened “{self.session.title}”: ask to continue it")
        self.chat_opened.emit(chat_id)

    def choose_version(self, turn_index: int, version: int) -> None:
        """Show another answer version of a turn (‹ 1/2 ›) and continue the chat with it (a task: history writes
        the choice in the executor, then the engine is fed the chosen answers)."""
        self.tasks.spawn(self._choose(turn_index, version))

    async def _choose(self, turn_index: int, version: int) -> None:
        await self.session.choose_async(turn_index, version)
        # The conversation the engine continues changed: feed it now, and read a pinned frame again for it.
        await asyncio.wrap_future(self.host.set_history(self.session.past_turns(), self.session.system_prompt))
        self.prepare_pinned()

    def forget_chat(self, chat_id: int) -> bool:
        """The chat was deleted: if it is the one on screen, a new chat replaces it (True)."""
        if chat_id != self.session.chat_id:
            return False
        self.new_chat()
        return True

    # --- the pinned frame ------------------------------------------------------------------------------------------

    def pin(self, image: RGBImage, source: str) -> None:
        self.session.pin(image, source)

    def unpin(self) -> None:
        self.session.pin(None)

    def prepare_again(self) -> None:
        """Another engine answers now (a model loaded): it holds nothing, so the pinned frame is read again."""
        self._engines += 1
        self.pinned_ready = False
        self.prepare_pinned()

    def _preparation_key(self, turns: list[PastTurn], image: RGBImage) -> PreparationKey:
        """What a preparation was made for: this engine, the conversation before the question (the system prompt and
        each turn's question, chosen answer and frame) and the frame. A question asked with the same key reuses it."""
        conversation = tuple((t.question, t.answer, t.image.digest if t.image is not None else None) for t in turns)
        return self._engines, self.session.system_prompt, conversation, image.digest

    def prepare_pinned(self) -> None:
        """Read the pinned frame now (encoded, and the prompt evaluated up to it) in the conversation the question
        will be asked in, unless that is done or under way already, or the frame is in the conversation."""
        image = self.session.pinned
        if image is None:
            return
        if self.session.busy:
            # The answer in flight is not in the conversation yet: the frame is read once it is (_on_finished). Read
            # now, it would be read for a conversation no question is asked in.
            return
        turns = self.session.past_turns()  # exactly what the next Send gives the engine before its question
        key = self._preparation_key(turns, image)
        if self.session.asked_about_pinned:
            if key != self._preparation:
                self._preparation = key
                self._prepared(key, True)
            return
        if self._preparation == key:
            if self.pinned_ready:
                self.camera_panel.set_badge("● pinned · ready")
            return  # being read, or read, for this conversation: a second preparation would only abandon the first
        # The engine is given the conversation with the frame, in one go: a preparation asked for before the new
        # chat's (or the opened chat's) history reached the engine would otherwise read the frame after the old
        # conversation, and the question would have to read it again.
        future = self.host.prepare(image, turns, self.session.system_prompt)
        self._preparation = key
        self.pinned_ready = False
        if future is None:  # no model yet, or no vision: the frame is asked about, just not early
            self._prepared(key, False)
            return
        self.camera_panel.set_badge("● pinned · reading the image…")
        self.tasks.spawn(self._await_preparation(key, future))

    async def _await_preparation(self, key: PreparationKey, future: Any) -> None:
        try:
            ok = bool(await asyncio.wrap_future(future))
        except LlavaCamError:
            ok = False
        self._prepared(key, ok)

    def _prepared(self, key: PreparationKey, ok: bool) -> None:
        pinned = self.session.pinned
        if key != self._preparation or pinned is None or pinned.digest != key[-1]:
            return  # a preparation for another frame or an earlier conversation: superseded, nothing to say
        if not ok:
            self._preparation = None  # the next chance (a model loaded, a new chat) tries again
        self.pinned_ready = ok
        # Not prepared (abandoned, no vision, no room): the frame is still pinned and asked about, just not early.
        self.camera_panel.set_badge("● pinned · ready" if ok else "● pinned")
        self.prepared.emit(ok)

    # --- rendering the session's events (on the loop's thread: the GUI thread) ----------------------------------

    def _on_event(self, event: SessionEvent) -> None:
        handler = getattr(self, f"_on_{event.kind}", None)
        if handler is not None:
            handler(event)

    def _on_turns(self, event: SessionEvent) -> None:
        request = event.request
        if request is None:  # another version was chosen: its answer is shown in place
            self._show_chosen_versions()
            self.prepare_pinned()  # the conversation the frame is asked in changed
            return
        self._render_now()  # a new question goes below every earlier turn, so those are all on screen first
        turn = request.turn
        if len(turn.versions) == 1:  # a new question (a regenerate adds a version to the last one)
            self.chat_view.add(Bubble("user", turn.question, thumbnail(turn.image) if turn.image is not None else None))
        elif self.chat_view.bubbles and self.chat_view.bubbles[-1].role == "assistant":
            last = self.chat_view.bubbles.pop()
            last.setParent(None)
            last.deleteLater()
        index = self.session.turns.index(turn) if turn in self.session.turns else len(self.session.turns) - 1
        self._bubble = self._add_answer(index, Bubble("assistant", engine=engine_text(request.version)))
        self._lock_versions(True)  # no other version is chosen while this answer streams
        self._pending.clear()
        self._tick.start()
        self._show_phase()

    def _on_phase(self, event: SessionEvent) -> None:
        self._show_phase()

    def _on_piece(self, event: SessionEvent) -> None:
        if self._bubble is None or event.request is not self.session.request:
            return  # the chat on screen changed: the piece is stored, not shown here
        self._pending.append(event.text)
        self.answer_piece.emit(event.text)
        # Coalesce: re-rendering the Markdown bubble per token would keep the GUI thread busy.
        if not self._render_timer.isActive():
            self._render_timer.start()

    def _render_pending(self) -> None:
        if self._pending and self._bubble is not None:
            self._bubble.append("".join(self._pending))  # the chat follows it unless scrolled up
        self._pending.clear()

    def _on_finished(self, event: SessionEvent) -> None:
        request = event.request
        assert request is not None
        self._tick.stop()
        version = request.version
        stats = version.stats
        if stats is None and version.status == "stopped":
            stats = TurnStats(finish_reason="cancelled")  # stopped before the engine said anything
        self._render_timer.stop()
        self._render_pending()
        bubble, self._bubble = self._bubble, None
        if bubble is not None:
            if version.status == "error":
                bubble.fail(version.error or "the answer failed")
            else:
                shown = stats if stats is not None else TurnStats(finish_reason="cancelled")
                bubble.finish(shown, self._seen_times(request, shown))
            bubble.set_versions(request.turn.chosen, len(request.turn.versions))  # ‹ 2/2 › after a Regenerate
        self._pending.clear()
        if bubble is None:
            pass  # the chat on screen changed meanwhile: its status line says so
        elif version.status == "error":
            self.set_status("Error: " + (version.error or "the answer failed"))
        else:
            self.set_status("Stopped" if version.status == "stopped" else "Ready")
        self._lock_versions(False)
        self.prepare_pinned()  # a frame pinned while the answer came is read now, after it
        self.turn_finished.emit(self._request_number, stats)

    def _seen_times(self, request: Request, stats: TurnStats) -> SeenTimes:
        """The timing line's facts as the person saw them, so it never contradicts itself: the first token counts
        from Send (also the wait for a preparation still under way, which the engine's own clock starts after); an
        image read while the question was typed says so, and one the answer waited for says how long that took."""
        times = getattr(request.stream, "stage_times", {})
        ttft_ms = (times["answer"] - request.started_at) * 1000 if "answer" in times else None
        if request.turn.image is None or stats.image_encode_ms:
            return SeenTimes(ttft_ms)  # a follow-up ("image cached"), or the engine's own encode time
        if self._prepared_at_send:
            return SeenTimes(ttft_ms, image_prepared=True)
        if "question" in times:
            # In whole tenths, rounded down: shown to 0.1 s beside a first token shown to 0.01 s, a wait rounded
            # up could read longer than the first token that came after it.
            waited = min(times["question"], times.get("answer", times["question"])) - request.started_at
            return SeenTimes(ttft_ms, image_wait_ms=math.floor(waited * 10) * 100)
        return SeenTimes(ttft_ms)

    def _on_chat(self, event: SessionEvent) -> None:
        self._bubble = None  # an answer still finishing belongs to the chat that was on screen
        self._pending.clear()
        self._all_turns = False
        self.render_chat()
        self.prepare_pinned()  # for the chat now on screen (a frame being read for the one before is not reused)

    def _on_pinned(self, event: SessionEvent) -> None:
        image = self.session.pinned
        if image is None or self._preparation is None or self._preparation[-1] != image.digest:
            self.pinned_ready = False
        if image is None:
            self.camera_panel.show_live()
            return
        self.camera_panel.show_pinned(image, "● pinned")  # "· reading the image…" once its preparation is asked for
        self.prepare_pinned()

    def render_chat(self) -> None:
        """The whole chat on screen again, from the session (a chat opened, a new chat): its latest RECENT_TURNS
        (all with "Show earlier"), built a few turns at a time with the loop running in between (`rendered`)."""
        self._stop_rendering()
        self.chat_view.clear()
        self._answers.clear()
        turns = self.session.turns
        first = 0 if self._all_turns else max(0, len(turns) - RECENT_TURNS)
        self.chat_view.show_earlier(first)
        self._first_shown = first
        self._render(list(enumerate(turns))[first:], insert_at=None)

    def show_all_turns(self) -> None:
        """ "Show N earlier turns": the turns above the ones shown are added above them, a few at a time."""
        self._all_turns = True
        self._render_now()
        earlier, self._first_shown = self._first_shown, 0
        self.chat_view.hold(self.chat_view.bubble_at_top())
        self.chat_view.show_earlier(0)
        self._render(list(enumerate(self.session.turns))[:earlier], insert_at=0)

    def _render(self, turns: list[tuple[int, SessionTurn]], *, insert_at: int | None) -> None:
        self._unrendered = collections.deque(turns)
        self._insert_at = insert_at
        self._render_step()  # the first step at once: a short chat is on screen before the loop runs again
        if self._unrendered:
            self._render_task = self.tasks.spawn(self._render_rest())
        else:
            self.rendered.emit()

    async def _render_rest(self) -> None:
        while self._unrendered:
            await asyncio.sleep(0)  # the loop runs: input, painting, timers, a streaming answer
            self._render_step()
        self._render_task = None
        self.rendered.emit()

    def _render_step(self) -> None:
        deadline = time.perf_counter() + RENDER_STEP_S
        for _ in range(RENDER_STEP_TURNS):
            if not self._unrendered:
                break
            self._render_turn(*self._unrendered.popleft())
            if time.perf_counter() >= deadline:
                break
        if not self._unrendered and self._insert_at is not None:
            self.chat_view.joined_at(self._insert_at)  # the first turn shown before may repeat the frame above it
            self._insert_at = None

    def _render_now(self) -> None:
        """Whatever is still to be shown goes on screen now (before anything is added below it)."""
        task, self._render_task = self._render_task, None
        if task is not None:
            task.cancel()
        if self._unrendered:
            while self._unrendered:
                self._render_step()
            self.rendered.emit()

    def _stop_rendering(self) -> None:
        task, self._render_task = self._render_task, None
        if task is not None:
            task.cancel()
        self._unrendered.clear()
        self._insert_at = None

    async def render_done(self) -> None:
        """Wait until the chat's bubbles are all on screen (a render replaced meanwhile: until the new one is)."""
        while (task := self._render_task) is not None:
            await asyncio.wait({task})
            if self._render_task is task:  # it ended without finishing (an error, shown as a notice)
                self._render_task = None

    def _render_turn(self, index: int, turn: SessionTurn) -> None:
        bubbles = [Bubble("user", turn.question, thumbnail(turn.image) if turn.image is not None else None)]
        answer = turn.answer
        if answer is not None and not (answer.status == "streaming" and self.session.request is not None):
            bubbles.append(Bubble("assistant"))
            self._connect_answer(index, bubbles[-1])
            self._show_answer(bubbles[-1], turn)
        for bubble in bubbles:
            if self._insert_at is None:
                self.chat_view.add(bubble)
            else:
                self.chat_view.insert(self._insert_at, bubble)
                self._insert_at += 1

    def _lock_versions(self, locked: bool) -> None:
        for bubble in self._answers.values():
            bubble.lock_versions(locked)

    def _add_answer(self, turn_index: int, bubble: Bubble) -> Bubble:
        self._connect_answer(turn_index, bubble)
        return self.chat_view.add(bubble)

    def _connect_answer(self, turn_index: int, bubble: Bubble) -> None:
        bubble.version_requested.connect(lambda version: self.choose_version(turn_index, version))
        self._answers[turn_index] = bubble

    @staticmethod
    def _show_answer(bubble: Bubble, turn: SessionTurn) -> None:
        """A stored answer version in its bubble: its text, its timing line, who gave it and ‹ chosen/count ›."""
        answer = turn.answer
        assert answer is not None
        bubble.set_text(answer.text)
        stats = answer.stats if answer.stats is not None else TurnStats()
        cancelled = answer.status in ("stopped", "incomplete")
        bubble.finish(replace(stats, finish_reason="cancelled" if cancelled else stats.finish_reason or "stop"))
        bubble.set_versions(turn.chosen, len(turn.versions))
        bubble.set_engine(engine_text(answer))  # as stored: who gave this version

    def _show_chosen_versions(self) -> None:
        """Each answer bubble showing another version than its turn's chosen one shows the chosen one instead (in
        place: the chat keeps its scroll position and the ‹ › arrows their focus)."""
        turns = self.session.turns
        for index, bubble in self._answers.items():
            if bubble is self._bubble or index >= len(turns):
                continue  # the answer still streaming shows itself
            turn = turns[index]
            if (bubble.version, bubble.version_count) != (turn.chosen, len(turn.versions)):
                self._show_answer(bubble, turn)

    def _show_phase(self) -> None:
        request = self.session.request
        if request is None:
            return
        text = phase_text(request, time.perf_counter(), image_prepared=self._prepared_at_send)
        self.set_status(text)
        if self._bubble is not None:
            self._bubble.timing_label.setText(text)

    # --- closing ------------------------------------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Stop the answer and let every task end (the answer is then stored as stopped, with its text)."""
        self._tick.stop()
        self._render_timer.stop()
        self._stop_rendering()
        self.session.stop()
        await self.tasks.finish()


def engine_text(version: AnswerVersion) -> str:
    """The bubble's "answered by" words for an answer version ("" when not known: stored before it was recorded)."""
    return version.answered_by.label if version.answered_by is not None else ""


__all__ = ["SessionBinding", "engine_text", "Tasks", "phase_text", "thumbnail"]
