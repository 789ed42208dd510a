"""`ChatSession`: one conversation as data — what the window and the phone show, and what history records.

It owns the chat id, the turns (each question with its frame and every answer version, one of them chosen), the
pinned image, and the request in flight with its phase. It records to history itself, so no front end writes that
flow again, and it talks to whatever answers through the `Answerer` protocol (the local `Engine`, or a remote
client): it never imports llama.cpp, so the Pyto bundle ships this same class.

How it is driven. The same steps run two ways:
- Desktop: `send_async`, `regenerate_async` and `open_chat_async` are coroutines run as asyncio tasks on qasync's
  loop (the GUI thread). Pieces arrive through the answerer's async stream (`answerer.pieces`: the engine's
  `Turn.stream()`, the one bridge out of its inference thread); history writes, frame reads and the answerer's
  blocking calls are awaited in the loop's executor (`asyncio.to_thread`), so the GUI thread never waits.
  Observers are called on the loop's thread, so the desktop binding touches widgets directly.
- Phone (Pyto): `send`, `regenerate` and `open_chat` run to completion on the thread that calls them; the front end
  starts a `threading.Thread` per Send, observers wrap UI updates in Pyto's `mainthread.run_async`, and Stop runs on
  Pyto's main thread.
`stop()`, `snapshot`-style reads (`turns`, `request`) and `subscribe` are safe from any thread; only one request
runs at a time (a second `send` while one runs raises `SessionBusy`).

History. A question is stored with its frame before it is asked; the answer is written while it streams and
finished as complete, stopped or error — never lost to a New chat, a chat switch or a delete (those stop the
request, which then finishes into the chat it belongs to). A regenerated answer is a new version of the same
question: the old ones stay stored, marked not chosen, and the engine is fed the chosen one. Each answer is stored
with who gave it (`Answerer.answered_by`, read as the question is sent: this computer or a server, and the model).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from app.core.errors import LlavaCamError
from app.core.history.store import FLUSH_SECONDS, AnswerWriter, Chat, HistoryError, HistoryStore
from app.core.inference.answerer import AnsweredBy, Answerer, AnswerStream, PastTurn, TurnStats, pieces
from app.core.inference.images import RGBImage, load_image
from app.core.inference.sampling import SamplingSettings

# Phases of a request, in order. "saving": the question goes to history; "waiting": asked, no piece yet (the
# engine reads the image and the question); "answering": pieces arrive; "stopping": Stop pressed, not ended yet.
PHASES = ("saving", "waiting", "answering", "stopping")


class SessionBusy(LlavaCamError):
    """A question was sent while another answer is still coming."""


@dataclass
class AnswerVersion:
    """One answer to a question. `status`: streaming, complete, stopped, error or incomplete (a crash)."""

    text: str = ""
    status: str = "streaming"
    stats: TurnStats | None = None
    message_id: int | None = None
    error: str | None = None
    answered_by: AnsweredBy | None = None  # the engine and model that gave it (None: not known, or stored before)


@dataclass
class SessionTurn:
    question: str
    image: RGBImage | None = None  # the frame this question was about (None: a follow-up)
    versions: list[AnswerVersion] = field(default_factory=list)
    chosen: int = 0  # index into versions

    @property
    def answer(self) -> AnswerVersion | None:
        return self.versions[self.chosen] if self.versions else None


@dataclass
class Request:
    """The request in flight: which chat and turn it belongs to, its phase, and the stream once asked."""

    chat_id: int | None
    turn: SessionTurn
    version: AnswerVersion
    phase: str = "saving"
    stream: AnswerStream | None = None
    stop_requested: bool = False
    regenerate: bool = False  # a new answer version of the last question (the question is stored already)
    asked_digest: str | None = None  # the pinned frame's digest, once asked about
    # Why the answer failed, as raised (a server's RemoteError keeps its kind, so a front end can say what to do).
    failure: BaseException | None = None
    started_at: float = field(default_factory=time.perf_counter)

    @property
    def stage(self) -> str:
        """What the answerer is doing while the phase is "waiting": "queued", "image" (reading the image),
        "question" (reading the question) or "answer"; "" when the answerer does not say (a remote one)."""
        stream = self.stream
        return str(getattr(stream, "stage", "")) if stream is not None else "queued"


@dataclass(frozen=True)
class SessionEvent:
    """What changed. kind: "turns" (a turn or version added/chosen), "phase", "piece" (text = the new piece),
    "finished" (the request ended; the version holds its status), "chat" (another chat or a new one), "pinned"."""

    kind: str
    request: Request | None = None
    text: str = ""


Observer = Callable[[SessionEvent], None]


class ChatSession:
    def __init__(
        self,
        answerer: Answerer,
        history: HistoryStore | None = None,
        *,
        model_id: str | None = None,
        system_prompt: str | None = None,
    ) -> None:
        self.answerer = answerer
        self.history = history
        self.model_id = model_id
        self.system_prompt = system_prompt
        self.chat_id: int | None = None
        self.title = ""
        self.turns: list[SessionTurn] = []
        self.pinned: RGBImage | None = None
        self.pinned_source = ""
        self.request: Request | None = None
        self._sent_pinned: str | None = None  # digest of the pinned frame already asked about in this chat
        self._lock = threading.RLock()
        self._choice_lock = threading.Lock()  # one choice written at a time
        self._observers: list[Observer] = []

    # --- observing ----------------------------------------------------------------------------------------------

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """Call `observer` on every change (on the thread that made it). Returns an unsubscribe function."""
        self._observers.append(observer)
        return lambda: self._observers.remove(observer)

    def _notify(self, kind: str, request: Request | None = None, text: str = "") -> None:
        event = SessionEvent(kind, request, text)
        for observer in list(self._observers):
            observer(event)

    @property
    def busy(self) -> bool:
        return self.request is not None

    @property
    def asked_about_pinned(self) -> bool:
        """Whether the pinned frame was already asked about in this chat (a follow-up does not send it again)."""
        return self.pinned is not None and self.pinned.digest == self._sent_pinned

    # --- the pinned image ---------------------------------------------------------------------------------------

    def pin(self, image: RGBImage | None, source: str = "") -> None:
        """The frame the next question is about (None: ask about the conversation so far)."""
        with self._lock:
            self.pinned = image
            self.pinned_source = source
        self._notify("pinned")

    # --- asking -------------------------------------------------------------------------------------------------

    def send(self, question: str, sampling: SamplingSettings | None = None) -> AnswerVersion:
        """Ask `question` about the pinned frame (if not already asked about in this chat); blocks until answered.

        Returns the answer version (status complete, stopped or error; errors are also raised)."""
        return self._run(self.begin_send(question), sampling)

    async def send_async(self, question: str, sampling: SamplingSettings | None = None) -> AnswerVersion:
        """`send` as a coroutine on the running loop (the desktop's tasks): nothing in it blocks the loop."""
        return await self.run_async(self.begin_send(question), sampling)

    def regenerate(self, sampling: SamplingSettings | None = None) -> AnswerVersion:
        """Answer the last question again, as a new version (the earlier ones are kept, not chosen)."""
        return self._run(self.begin_regenerate(), sampling)

    async def regenerate_async(self, sampling: SamplingSettings | None = None) -> AnswerVersion:
        """`regenerate` as a coroutine on the running loop."""
        return await self.run_async(self.begin_regenerate(), sampling)

    def begin_send(self, question: str) -> Request:
        """The first, instant half of `send`: the turn is added and the request is in flight (so a Stop pressed
        before `run_async` has started is not lost). Then `await run_async(request, sampling)`."""
        question = question.strip()
        if not question:
            raise LlavaCamError("type a question first")
        with self._lock:
            self._check_idle()
            image = self.pinned if not self.asked_about_pinned else None
            turn = SessionTurn(question, image)
            version = AnswerVersion(answered_by=self.answerer.answered_by)
            turn.versions.append(version)
            self.turns.append(turn)
            request = self.request = Request(self.chat_id, turn, version)
        self._notify("turns", request)
        return request

    def begin_regenerate(self) -> Request:
        """The first, instant half of `regenerate` (see `begin_send`)."""
        with self._lock:
            self._check_idle()
            if not self.turns:
                raise LlavaCamError("there is no answer to regenerate yet")
            turn = self.turns[-1]
            version = AnswerVersion(answered_by=self.answerer.answered_by)
            turn.versions.append(version)
            turn.chosen = len(turn.versions) - 1
            request = self.request = Request(self.chat_id, turn, version, regenerate=True)
        self._notify("turns", request)
        return request

    def choose(self, turn_index: int, version: int) -> None:
        """Show and continue with another answer version of a turn (‹ 1/2 ›); history remembers the choice."""
        turn = self._set_chosen(turn_index, version)
        self._store_choice(turn)
        self._notify("turns")

    async def choose_async(self, turn_index: int, version: int) -> None:
        """`choose` as a coroutine: the choice is made at once, history writes it in the loop's executor, and
        observers hear of it on the loop's thread once it is stored."""
        turn = self._set_chosen(turn_index, version)
        await asyncio.to_thread(self._store_choice, turn)
        self._notify("turns")

    def _set_chosen(self, turn_index: int, version: int) -> SessionTurn:
        with self._lock:
            self._check_idle()
            turn = self.turns[turn_index]
            if not 0 <= version < len(turn.versions):
                raise LlavaCamError(f"there is no answer version {version + 1}")
            turn.chosen = version
        return turn

    def _store_choice(self, turn: SessionTurn) -> None:
        # The turn's choice as it is when written (not as it was asked for): two quick clicks written in either
        # order still leave history with the last one.
        with self._choice_lock:
            with self._lock:
                message_id = turn.versions[turn.chosen].message_id
            if self.history is not None and message_id is not None and not self.history.read_only:
                self.history.choose_answer(message_id)

    def stop(self) -> None:
        """Stop the request in flight (any thread, any phase): it ends as "stopped" with the text so far."""
        with self._lock:
            request = self.request
            if request is None:
                return
            request.stop_requested = True
            request.phase = "stopping"
            stream = request.stream
        if stream is not None:
            stream.cancel()
        self.answerer.cancel()
        self._notify("phase", request)

    # --- chats --------------------------------------------------------------------------------------------------

    def new_chat(self) -> None:
        """Start an empty chat. An answer still coming is stopped and kept (finished in its own chat)."""
        self.stop()
        with self._lock:
            self.chat_id = None
            self.title = ""
            self.turns = []
            self._sent_pinned = None
        self._notify("chat")

    def open_chat(self, chat_id: int) -> None:
        """Show a stored chat to continue it (reads history and the frames: call it off the GUI thread)."""
        self.stop()
        self._show_chat(*self._read_chat(chat_id))

    async def open_chat_async(self, chat_id: int) -> None:
        """`open_chat` as a coroutine: history and frames are read in the loop's executor."""
        self.stop()
        self._show_chat(*await asyncio.to_thread(self._read_chat, chat_id))

    def _read_chat(self, chat_id: int) -> tuple[Chat, list[SessionTurn], RGBImage | None]:
        if self.history is None:
            raise LlavaCamError("there is no history to open a chat from")
        chat = self.history.get_chat(chat_id)
        turns: list[SessionTurn] = []
        frames: dict[str, RGBImage] = {}
        latest: RGBImage | None = None
        for message in chat.messages:
            if message.role == "user":
                picture = None
                if message.image is not None and message.image.path.exists():
                    try:
                        picture = frames.get(message.image.hash) or load_image(message.image.path)
                    except LlavaCamError:
                        picture = None  # a damaged frame file: the turn is kept, the image is not
                    if picture is not None:
                        frames[message.image.hash] = picture
                        latest = picture
                turns.append(SessionTurn(message.text, picture))
            elif turns:
                turn = turns[-1]
                turn.versions.append(AnswerVersion(message.text, message.status, _stats(message.timings), message.id,
                                                   answered_by=message.answered_by))  # fmt: skip
                if message.chosen:
                    turn.chosen = len(turn.versions) - 1
        return chat, turns, latest

    def _show_chat(self, chat: Chat, turns: list[SessionTurn], latest: RGBImage | None) -> None:
        with self._lock:
            self.chat_id = chat.id
            self.title = chat.title
            self.turns = turns
            self.pinned = latest
            self._sent_pinned = latest.digest if latest is not None else None
        self._notify("chat")
        self._notify("pinned")

    def forget_chat(self, chat_id: int) -> None:
        """The chat was deleted elsewhere (sidebar, another window): if it is on screen, start a new one."""
        if chat_id == self.chat_id:
            self.new_chat()

    def past_turns(self, *, upto: int | None = None) -> list[PastTurn]:
        """The conversation as the answerer is fed it: each question with its chosen answer."""
        with self._lock:
            turns = self.turns[:upto]
            return [PastTurn(t.question, t.answer.text if t.answer else "", t.image) for t in turns]

    # --- one request, start to end (the calling thread blocks) --------------------------------------------------

    def _check_idle(self) -> None:
        if self.request is not None:
            raise SessionBusy("an answer is still coming: wait for it or press Stop")

    def _run(self, request: Request, sampling: SamplingSettings | None) -> AnswerVersion:
        version = request.version
        writer = None
        try:
            writer = self._record_question(request, sampling)
            if request.stop_requested:
                version.status = "stopped"
            else:
                self._set_phase(request, "waiting")
                self.answerer.set_history(self._history_before(request), self.system_prompt).result()
                stream = self._attach(request, self.answerer.ask(request.turn.question, request.turn.image, sampling))
                for piece in stream:
                    if self._take(request, piece) and writer is not None:
                        writer.append(piece)
                self._settle(request, stream.wait())
        except BaseException as exc:
            self._failed(request, exc)
            raise
        finally:
            if writer is not None:
                self._finish_writer(writer, version)
            self._end(request)
        return version

    async def run_async(self, request: Request, sampling: SamplingSettings | None = None) -> AnswerVersion:
        """The second half of `send_async` / `regenerate_async`: store the question, ask, stream, store the answer.
        Cancelling the task ends the answer as stopped (stored with its text), as `stop()` does."""
        version = request.version
        writer = None
        try:
            writer = await asyncio.to_thread(self._record_question, request, sampling)
            if request.stop_requested:
                version.status = "stopped"
            else:
                self._set_phase(request, "waiting")
                # Not awaited: the protocol orders the next `ask` after it, so the question goes in at once.
                self.answerer.set_history(self._history_before(request), self.system_prompt)
                turn = request.turn
                stream = self._attach(request, await asyncio.to_thread(self.answerer.ask, turn.question, turn.image,
                                                                       sampling))  # fmt: skip
                flushed = time.monotonic()
                async for piece in pieces(stream):
                    if self._take(request, piece) and writer is not None:
                        writer.text += piece
                        if time.monotonic() - flushed >= FLUSH_SECONDS:  # about once a second, off the loop
                            await asyncio.to_thread(writer.flush)
                            flushed = time.monotonic()
                self._settle(request, stream.wait() if stream.finished else await asyncio.to_thread(stream.wait))
        except BaseException as exc:  # CancelledError too: the task was cancelled (the window is closing)
            self._failed(request, exc)
            raise
        finally:
            if writer is not None:
                await asyncio.to_thread(self._finish_writer, writer, version)
            self._end(request)
        return version

    # The steps both drivers share (none of them blocks).

    def _history_before(self, request: Request) -> list[PastTurn]:
        index = self.turns.index(request.turn) if request.turn in self.turns else len(self.turns) - 1
        return self.past_turns(upto=index)

    def _attach(self, request: Request, stream: AnswerStream) -> AnswerStream:
        turn = request.turn
        with self._lock:
            if turn.image is not None:
                request.asked_digest = turn.image.digest
                # The image as the answerer uses it (the engine downscales a large frame): the conversation is fed
                # back in that form, so the engine finds it in its cache instead of reading it again.
                turn.image = getattr(stream, "image", None) or turn.image
            request.stream = stream
            stop_now = request.stop_requested
        if stop_now:
            stream.cancel()  # Stop came while the question was being saved or the history set
        return stream

    def _take(self, request: Request, piece: str) -> bool:
        """Add a piece to the answer, unless Stop was pressed: a late piece of a stopped answer is dropped, so what
        is stored is what was shown."""
        if request.stop_requested:
            return False
        if request.phase == "waiting":
            self._set_phase(request, "answering")
        request.version.text += piece
        self._notify("piece", request, piece)
        return True

    def _settle(self, request: Request, stats: TurnStats) -> None:
        version = request.version
        version.stats = stats
        stopped = request.stop_requested or stats.finish_reason == "cancelled"
        version.status = "stopped" if stopped else "complete"
        if request.asked_digest is not None and request.chat_id == self.chat_id:
            self._sent_pinned = request.asked_digest

    def _failed(self, request: Request, exc: BaseException) -> None:
        version = request.version
        if isinstance(exc, asyncio.CancelledError):
            version.status = "stopped"
            stream = request.stream
            if stream is not None and not stream.finished:
                stream.cancel()
            return
        version.status = "error"
        request.failure = exc
        version.error = str(exc) if isinstance(exc, LlavaCamError) else f"the answer failed: {exc}"

    @staticmethod
    def _finish_writer(writer: AnswerWriter, version: AnswerVersion) -> None:
        timings = version.stats.to_dict() if version.stats is not None else None
        try:
            writer.text = version.text
            writer.finish(version.status, timings)
        except HistoryError as exc:
            version.error = version.error or str(exc)

    def _end(self, request: Request) -> None:
        with self._lock:
            if self.request is request:
                self.request = None
        self._notify("finished", request)

    def _set_phase(self, request: Request, phase: str) -> None:
        with self._lock:
            if request.phase == "stopping":
                return
            request.phase = phase
        self._notify("phase", request)

    def _record_question(self, request: Request, sampling: SamplingSettings | None) -> AnswerWriter | None:
        store = self.history
        if store is None or store.read_only:
            return None
        turn = request.turn
        if request.chat_id is None:
            request.chat_id = store.create_chat(model_id=self.model_id)
            with self._lock:
                if self.request is request and self.chat_id is None:
                    self.chat_id = request.chat_id  # not if New chat was pressed meanwhile
        regenerate = request.regenerate
        if not regenerate:
            frame = store.save_image(turn.image, source=self.pinned_source) if turn.image is not None else None
            store.add_user_message(request.chat_id, turn.question, frame)
        settings = sampling.to_dict() if sampling is not None else None
        writer = store.begin_answer(request.chat_id, self.model_id, settings, new_version=regenerate,
                                    answered_by=request.version.answered_by)  # fmt: skip
        request.version.message_id = writer.message_id
        return writer


def _stats(timings: dict[str, Any] | None) -> TurnStats | None:
    """A stored answer's timings as TurnStats (keys this version does not know are left out)."""
    if not timings:
        return None
    known = {f.name for f in fields(TurnStats)}
    return TurnStats(**{k: v for k, v in timings.items() if k in known})


__all__ = ["PHASES", "AnswerVersion", "ChatSession", "Request", "SessionBusy", "SessionEvent", "SessionTurn"]
