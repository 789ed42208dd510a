"""The LLaVA engine: one conversation, kept in llama.cpp's KV cache between turns.

How a turn works. The whole conversation is rendered with the chat template and matched, segment by segment,
against what was evaluated before (`_Seg`: a stretch of prompt text and its tokens, an image, or a generated
answer). Matching segments are reused as they are; only the remainder is tokenized. The resulting token/image
units are then compared with what the KV cache holds (`_kv`), the cache is cut back to the common prefix, and
only the rest is evaluated. So a follow-up evaluates just its new tokens, an image is encoded once (embeddings
are cached by pixel hash), and `prepare(image)` can evaluate everything up to the image before the question exists.

Threads. Every native call runs on one thread owned by the engine (the "inference thread"); public methods
only enqueue jobs, and `ask` returns a `Turn` that yields text pieces as they are decoded. Cancelling is a
`threading.Event` checked between any two tokens (and between prompt batches).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from app.core.errors import EngineError, LlavaCamError, PromptTooLongError
from app.core.inference.answerer import THIS_COMPUTER, AnsweredBy, Answerer, PastTurn, TurnStats
from app.core.inference.checkpoints import ImageCheckpoints
from app.core.inference.families import needs_for
from app.core.inference.images import ImageSource, RGBImage, load_image
from app.core.inference.sampling import SamplingSettings
from app.core.inference.stops import AnswerText
from app.core.inference.templates import DEFAULT_SYSTEM_PROMPT, IMAGE_MARKER, ChatMessage, ChatTemplate

T = TypeVar("T")

# The question stands in for the real one while `prepare` renders the prompt up to the image.
_PENDING_QUESTION = "?"


@dataclass(frozen=True)
class EngineConfig:
    n_ctx: int = 4096
    n_batch: int = 512
    n_threads: int | None = None  # None: one per physical core (see native.default_threads)
    n_gpu_layers: int = -1  # all layers on the GPU where there is one (Metal on Apple Silicon)
    template: str | None = None  # a built-in family ("tinyllama", "vicuna", "chatml"), or None/"auto"
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    image_cache_size: int = 8
    max_image_side: int | None = None  # None: twice the encoder's input size
    image_max_tokens: int | None = None  # None: the family's cap (families.py) for dynamic-resolution projectors
    flash_attn: bool | None = None  # None: on with a GPU, off on a CPU (where it decodes slower)
    extra_buffers: bool | None = None  # None: llama.cpp's repacked/AMX weight buffers, except with AMX (crashes)
    verbose: bool = False


@dataclass(frozen=True)
class ModelInfo:
    text_path: Path
    mmproj_path: Path | None
    name: str
    template_family: str
    n_ctx: int
    has_vision: bool
    image_size: int | None


@dataclass
class _TurnRecord:
    question: str
    image: RGBImage | None
    answer: str | None  # None while the turn is being answered


class _ImageUnit:
    """An image chunk in the token stream: compared by pixel hash and part; owns its mtmd chunk.

    An image is one chunk for most projectors; tiling ones (idefics3, LFM2, MiniCPM-V) give a large image several
    (tiles and an overview, with wrapper tokens between them): `part` numbers them in mtmd's order.
    """

    __slots__ = ("digest", "part", "chunk", "_free")

    def __init__(self, digest: str, chunk: Any, free: Callable[[Any], None], part: int = 0) -> None:
        self.digest = digest
        self.part = part
        self.chunk = chunk
        self._free = free

    def __del__(self) -> None:  # segments live only on the inference thread, so this runs there too
        with contextlib.suppress(Exception):
            self._free(self.chunk)


_Unit = Any  # int (a token) or _ImageUnit


@dataclass(eq=False)
class _Seg:
    text: str  # the rendered prompt text this segment stands for (an image's is the marker)
    units: list[_Unit]
    is_answer: bool = False


class _Cancelled(Exception):
    pass


_DONE = object()


class Turn:
    """A streaming answer. Iterate it for text pieces; `wait()` for the stats; `cancel()` from any thread."""

    def __init__(self, question: str, image: RGBImage | None) -> None:
        self.question = question
        self.image = image
        self.tokens: list[int] = []
        self.prompt_units = 0  # how many KV units (tokens/images) the prompt occupied when generation began
        self.stats: TurnStats | None = None
        self.error: BaseException | None = None
        self.submitted_at = time.perf_counter()
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._cancel = threading.Event()
        self._pieces: list[str] = []
        self._finished = False
        # While `stream()` runs, each event also wakes its event loop (the events stay in the one queue above).
        self._waker: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        # What the inference thread is doing for this turn, for a front end to show (read from any thread):
        # "queued" (behind other work, e.g. a preparation), "image" (encoding / evaluating the image), "question"
        # (evaluating the rest of the prompt), "answer" (generating; set at the first token). `stage_at` is the
        # perf_counter() time it began.
        self.stage = "queued"
        self.stage_at = self.submitted_at
        self.stage_times: dict[str, float] = {"queued": self.submitted_at}  # when each stage began

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def text(self) -> str:
        """The answer received so far (all of it once the turn has finished)."""
        return "".join(self._pieces)

    @property
    def finished(self) -> bool:
        return self._finished

    def __iter__(self) -> Iterator[str]:
        """The pieces, blocking for each (consume on a worker thread; on an event loop use `stream()`)."""
        while not self._finished:
            piece = self._take(*self._events.get())
            if piece is not None:
                yield piece

    async def stream(self) -> AsyncGenerator[str, None]:
        """The pieces as an async iterator on the running event loop — the one bridge out of the inference thread.

        The window consumes it on qasync's loop and the server on uvicorn's: each piece is handed to the loop
        with `call_soon_threadsafe` by the inference thread itself, so no relay thread is needed. Cancelling the
        consuming task, or leaving the loop early, cancels the turn: the engine stops between two tokens.
        What the stream did not read stays for `wait()` or another reader.
        """
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        self._waker = (loop, wake)
        try:
            while not self._finished:
                wake.clear()  # before looking: a piece posted after this sets it again
                try:
                    event = self._events.get_nowait()
                except queue.Empty:
                    await wake.wait()
                    continue
                piece = self._take(*event)
                if piece is not None:
                    yield piece
        finally:
            self._waker = None
            if not self._finished:
                self.cancel()

    def _take(self, kind: str, value: Any) -> str | None:
        if kind == "piece":
            self._pieces.append(value)
            return str(value)
        self._finished = True
        if kind == "done":
            self.stats = value
            return None
        self.error = value
        raise value

    def wait(self) -> TurnStats:
        """Consume the rest of the answer; returns its stats (raises what the turn raised)."""
        for _ in self:
            pass
        assert self.stats is not None
        return self.stats

    # Called on the inference thread.
    def _set_stage(self, stage: str) -> None:
        if stage != self.stage:
            self.stage_at = self.stage_times[stage] = time.perf_counter()
            self.stage = stage

    def _post(self, event: tuple[str, Any]) -> None:
        self._events.put(event)
        waker = self._waker
        if waker is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is listening there any more
                waker[0].call_soon_threadsafe(waker[1].set)

    def _emit(self, piece: str) -> None:
        self._post(("piece", piece))

    def _finish(self, stats: TurnStats) -> None:
        self._post(("done", stats))

    def _fail(self, error: BaseException) -> None:
        self._post(("error", error))


class Engine:
    """An `Answerer` (app.core.inference.answerer) running llama.cpp locally.

    A text GGUF + optional mmproj GGUF, answering questions about images, one conversation at a time.

    The constructor loads the model (blocking; validates both files first and raises ModelFileError
    naming the file and the problem). All other methods return at once.
    """

    # Inference-thread state, created by _load on that thread.
    _native: Any  # NativeModel (None after close)
    _template: ChatTemplate
    _system: str
    _turns: list[_TurnRecord]
    _segs: list[_Seg]
    _kv: list[_Unit]
    _kv_pos: list[int]
    _embeddings: OrderedDict[str, dict[int, Any]]  # by image digest, then chunk part
    _max_image_side: int
    _checkpoints: ImageCheckpoints

    def __init__(
        self,
        text_model: str | Path,
        mmproj: str | Path | None = None,
        config: EngineConfig | None = None,
        *,
        load_progress: Callable[[float], bool | None] | None = None,
    ) -> None:
        self.config = config or EngineConfig()
        # Called on the inference thread with 0.0 .. 1.0; returning False aborts the load (LoadCancelled).
        self._load_progress = load_progress
        self._jobs: queue.Queue[Any] = queue.Queue()
        self._lock = threading.Lock()
        self._prepare_generation = 0
        self._preparing_digest: str | None = None
        self._current_turn: Turn | None = None
        self._aside_turn: Turn | None = None  # a one-off question (watch) that any chat request pre-empts
        self._history: list[PastTurn] = []
        self._closed = False
        self._thread = threading.Thread(target=self._serve_jobs, name="llavacam-inference", daemon=True)
        self._thread.start()
        try:
            mmproj_path = Path(mmproj) if mmproj else None
            self.info: ModelInfo = self._call(lambda: self._load(Path(text_model), mmproj_path))
        except BaseException:
            self._stop_thread()
            raise

    # --- public API (any thread) -------------------------------------------------------------------------------

    def load_image(self, source: ImageSource) -> RGBImage:
        """Read and, if large, downscale an image the way the engine will use it."""
        return load_image(source, max_side=self._max_image_side)

    def ask(self, question: str, image: ImageSource | None = None, sampling: SamplingSettings | None = None) -> Turn:
        """Ask about `image` (or, with None, about the conversation so far). Returns a streaming Turn."""
        self._check_open()
        picture = self.load_image(image) if image is not None else None
        if picture is not None and not self.info.has_vision:
            raise EngineError("this model has no vision projector (mmproj): give one to ask about images")
        turn = Turn(question, picture)
        self._preempt_aside()
        with self._lock:
            if picture is None or picture.digest != self._preparing_digest:
                self._prepare_generation += 1  # a preparation for another image is now useless
            self._current_turn = turn
        self._jobs.put(lambda: self._answer(turn, sampling or SamplingSettings(), regenerate=False))
        return turn

    def regenerate(self, sampling: SamplingSettings | None = None) -> Turn:
        """Answer the last question again (its old answer is dropped)."""
        self._check_open()
        if not self._history:
            raise LlavaCamError("there is no answer to regenerate yet")
        last = self._history[-1]
        turn = Turn(last.question, last.image)
        self._preempt_aside()
        with self._lock:
            self._current_turn = turn
        self._jobs.put(lambda: self._answer(turn, sampling or SamplingSettings(), regenerate=True))
        return turn

    def prepare(self, image: ImageSource) -> Future[bool]:
        """Encode `image` and evaluate the prompt up to it now, before the question is typed.

        A question about the same image waits for this to finish; a new `prepare` or a question about another
        image abandons it. The future says whether the preparation completed.
        """
        self._check_open()
        picture = self.load_image(image)
        if not self.info.has_vision:
            raise EngineError("this model has no vision projector (mmproj): give one to ask about images")
        self._preempt_aside()
        with self._lock:
            self._prepare_generation += 1
            generation = self._prepare_generation
            self._preparing_digest = picture.digest
        return self._submit(lambda: self._prepare(picture, generation))

    def ask_aside(
        self, question: str, image: ImageSource | None = None, sampling: SamplingSettings | None = None
    ) -> Turn:
        """A one-turn question outside the conversation (watch mode, extraction): returns a streaming Turn.

        The conversation is untouched: its turns stay, and its KV cache is kept in a second sequence while this
        question borrows the first (shared cells, nothing copied), then put back, so the chat's next follow-up is
        as instant as before. Only the system prompt is shared. Policy: the chat comes first. Any `ask`,
        `regenerate` or `prepare` cancels a running or queued aside question within one token (its Turn ends with
        finish_reason "cancelled"); the caller asks again later. When the chat and this question do not fit in
        the context together, the question runs without the stash and the chat's next turn re-evaluates its
        prompt (image embeddings stay cached).
        """
        self._check_open()
        picture = self.load_image(image) if image is not None else None
        if picture is not None and not self.info.has_vision:
            raise EngineError("this model has no vision projector (mmproj): give one to ask about images")
        turn = Turn(question, picture)
        with self._lock:
            self._aside_turn = turn
        self._jobs.put(lambda: self._answer_aside(turn, sampling or SamplingSettings()))
        return turn

    def _preempt_aside(self) -> None:
        with self._lock:
            aside, self._aside_turn = self._aside_turn, None
        if aside is not None:
            aside.cancel()

    def cancel(self) -> None:
        """Stop the answer being generated (within one token) and any preparation."""
        with self._lock:
            self._prepare_generation += 1
            self._preparing_digest = None
            turn = self._current_turn
        if turn is not None:
            turn.cancel()

    @property
    def answered_by(self) -> AnsweredBy:
        """This computer, and the model file's name without .gguf (what history records with each answer)."""
        return AnsweredBy(THIS_COMPUTER, self.info.text_path.stem)

    def new_chat(self, system_prompt: str | None = None) -> Future[None]:
        """Forget the conversation (the system prompt stays evaluated in the cache for the next one)."""
        return self.set_history([], system_prompt)

    def set_history(self, turns: Sequence[PastTurn], system_prompt: str | None = None) -> Future[None]:
        """Replace the conversation, e.g. to continue a stored chat. Cached work is reused where it matches."""
        self._check_open()
        records = [_TurnRecord(t.question, t.image, t.answer) for t in turns]

        def apply() -> None:
            self._system = system_prompt if system_prompt is not None else self.config.system_prompt
            self._turns = records
            self._publish_history()

        return self._submit(apply)

    @property
    def history(self) -> list[PastTurn]:
        """The conversation as the engine holds it (after any rebuild dropped old turns)."""
        with self._lock:
            return list(self._history)

    def evaluated_units(self) -> list[int | str]:
        """What the KV cache holds, in order: token ids, and "image:<digest>" for each image."""
        return self._call(lambda: [u if isinstance(u, int) else f"image:{u.digest}" for u in self._kv])

    def close(self) -> None:
        """Cancel work, stop the inference thread and free the model."""
        if self._closed:
            return
        self.cancel()
        self._closed = True
        self._stop_thread()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- job plumbing ------------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise EngineError("the engine has been closed")

    def _submit(self, fn: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()

        def job() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        self._jobs.put(job)
        return future

    def _call(self, fn: Callable[[], T]) -> T:
        return self._submit(fn).result()

    def _serve_jobs(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _DONE:
                break
            job()
        self._release_native()

    def _stop_thread(self) -> None:
        self._jobs.put(_DONE)
        if threading.current_thread() is not self._thread:
            self._thread.join()

    # --- inference thread --------------------------------------------------------------------------------------

    def _load(self, text_path: Path, mmproj_path: Path | None) -> ModelInfo:
        from app.core.inference.native import NativeModel, default_threads
        from app.core.models.modelfile import check_pair

        text_info, mmproj_info = check_pair(text_path, mmproj_path)
        config = self.config
        needs = needs_for(mmproj_info.projector_type if mmproj_info else None)
        image_max_tokens = config.image_max_tokens or needs.image_max_tokens
        self._image_max_tokens = image_max_tokens
        n_batch = config.n_batch
        if needs.image_in_one_ubatch and image_max_tokens:
            n_batch = max(n_batch, image_max_tokens)  # one micro-batch holds a whole image
        self._native = NativeModel(
            text_path,
            mmproj_path,
            n_ctx=config.n_ctx,
            n_batch=n_batch,
            image_max_tokens=image_max_tokens,
            n_threads=config.n_threads or default_threads(),
            n_gpu_layers=config.n_gpu_layers,
            flash_attn=config.flash_attn,
            extra_buffers=config.extra_buffers,
            verbose=config.verbose,
            load_progress=self._load_progress,
        )
        native = self._native
        self._template = ChatTemplate.for_model(
            text_info.chat_template,
            family=config.template,
            model_names=(text_info.name, text_path.name),
            bos_token=native.bos_text,
            eos_token=native.eos_text,
        )
        self._system = config.system_prompt
        self._turns = []
        self._segs = []
        self._kv = []
        self._kv_pos = []  # positions each unit of _kv occupies
        self._embeddings = OrderedDict()
        self._checkpoints = ImageCheckpoints(native)
        image_size = mmproj_info.image_size if mmproj_info else None
        self._max_image_side = config.max_image_side or (2 * image_size if image_size else 1344)
        return ModelInfo(
            text_path=text_path,
            mmproj_path=mmproj_path,
            name=text_info.name or text_path.stem,
            template_family=self._template.family,
            n_ctx=native.n_ctx,
            has_vision=native.mctx is not None,
            image_size=image_size,
        )

    def _release_native(self) -> None:
        native = getattr(self, "_native", None)
        if native is None:
            return
        # Image units free their mtmd chunks when dropped; drop them before the context goes.
        self._segs = []
        self._kv = []
        # A load that failed after the native model opened (say, an unknown --template) never set the rest.
        embeddings = getattr(self, "_embeddings", None)
        if embeddings is not None:
            embeddings.clear()
        native.close()
        self._native = None

    def _publish_history(self) -> None:
        history = [PastTurn(t.question, t.answer, t.image) for t in self._turns if t.answer is not None]
        with self._lock:
            self._history = history

    def _answer(self, turn: Turn, sampling: SamplingSettings, *, regenerate: bool) -> None:
        stats = TurnStats()
        error: BaseException | None = None
        try:
            if regenerate and self._turns:
                self._turns.pop()
            self._generate(turn, sampling, stats)
        except BaseException as exc:
            error = exc
            if self._turns and self._turns[-1].answer is None:
                self._turns.pop()  # a failed turn must not leave a question without an answer behind
        # history first, then the turn's end: whoever wakes from `wait()` reads `history` with this turn in it
        self._publish_history()
        with self._lock:
            if self._current_turn is turn:
                self._current_turn = None
        if error is None:
            turn._finish(stats)
        else:
            turn._fail(error)

    def _answer_aside(self, turn: Turn, sampling: SamplingSettings) -> None:
        stats = TurnStats()
        native = self._native
        chat = (self._turns, self._segs, list(self._kv), list(self._kv_pos))
        stashed = False
        saved_state: bytes | None = None
        saved_checkpoint = None
        try:
            if turn._cancel.is_set():
                raise _Cancelled
            record = _TurnRecord(turn.question.replace(IMAGE_MARKER, ""), turn.image, None)
            images = [turn.image] if turn.image is not None else []
            segs = self._plan(self._render([record]), images)
            units = [u for s in segs for u in s.units]
            shared = 0
            while shared < min(len(units), len(self._kv)) and _same_unit(units[shared], self._kv[shared]):
                shared += 1
            needed = sum(self._positions(u) for u in units[shared:]) + min(sampling.max_tokens, native.n_ctx // 4)
            if not native.can_truncate or native.has_sliding_window:
                # A recurrent/hybrid cache cannot share cells between sequences, and a sliding window prunes
                # them: save the chat's whole state (llama_state_seq_*) and its image checkpoint, load them back.
                saved_state = native.save_state() if self._kv else None
                saved_checkpoint = self._checkpoints._latest
            elif sum(self._kv_pos) + needed <= native.n_ctx:
                native.stash()
                stashed = True
            self._turns, self._segs = [], segs  # planned once: _generate reuses these segments
            self._generate(turn, sampling, stats)
            turn._finish(stats)
        except _Cancelled:
            stats.finish_reason = "cancelled"
            turn._finish(stats)
        except BaseException as exc:
            turn._fail(exc)
        finally:
            self._turns, self._segs = chat[0], chat[1]
            if stashed:
                native.unstash()
                self._kv, self._kv_pos = chat[2], chat[3]
            elif saved_state is not None:
                if native.load_state(saved_state):
                    self._kv, self._kv_pos = chat[2], chat[3]
                    self._checkpoints._latest = saved_checkpoint
                else:  # the cache is then what the aside left, or empty: say so, never pretend
                    native.clear()
                    self._kv, self._kv_pos = [], []
                    self._checkpoints._latest = None
            with self._lock:
                if self._aside_turn is turn:
                    self._aside_turn = None

    def _generate(self, turn: Turn, sampling: SamplingSettings, stats: TurnStats) -> None:
        native = self._native
        question = turn.question.replace(IMAGE_MARKER, "")  # typed text must not open an image slot
        reserve = min(sampling.max_tokens, native.n_ctx // 4)
        try:
            turns, segs, dropped = self._fit(
                [*self._turns, _TurnRecord(question, turn.image, None)], reserve,
                should_stop=turn._cancel.is_set,
            )  # fmt: skip
        except _Cancelled:
            stats.finish_reason = "cancelled"
            return
        stats.context_rebuilt = dropped > 0
        stats.dropped_turns = dropped
        self._turns = turns
        current = turns[-1]
        try:
            self._evaluate(segs, need_logits=True, stats=stats, should_stop=turn._cancel.is_set,
                           on_stage=turn._set_stage)  # fmt: skip
        except _Cancelled:
            current.answer = ""
            stats.finish_reason = "cancelled"
            stats.ttft_ms = 0.0
            return

        turn.prompt_units = len(self._kv)
        sampler = native.make_sampler(
            temperature=sampling.temperature,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            min_p=sampling.min_p,
            repeat_penalty=sampling.repeat_penalty,
            seed=sampling.seed,
            ignore_eos=sampling.ignore_eos,
            grammar=sampling.grammar,
        )
        answer = AnswerText(sampling.stop)
        n_past = sum(self._kv_pos)
        first_at = last_at = 0.0
        finish = "length"
        try:
            for step in range(sampling.max_tokens):
                if turn._cancel.is_set():
                    finish = "cancelled"
                    break
                token = native.sample(sampler)
                last_at = time.perf_counter()
                if step == 0:
                    first_at = last_at
                    stats.ttft_ms = (first_at - turn.submitted_at) * 1000
                    turn._set_stage("answer")
                if native.is_end_of_generation(token):
                    finish = "stop"
                    break
                turn.tokens.append(token)
                visible, hit = answer.feed(native.piece(token))
                if visible:
                    turn._emit(visible)
                if hit:
                    finish = "stop"
                    break
                if step + 1 == sampling.max_tokens:
                    break
                if n_past >= native.n_ctx:
                    finish = "context"
                    break
                if turn._cancel.is_set():
                    finish = "cancelled"
                    break
                n_past = native.decode_tokens([token], n_past, logits_last=True)
                self._kv.append(token)
                self._kv_pos.append(1)
        finally:
            native.free_sampler(sampler)
        tail = answer.close(stopped=finish == "stop")
        if tail:
            turn._emit(tail)

        stats.finish_reason = finish
        stats.decode_tokens = len(turn.tokens)
        if len(turn.tokens) > 1 and last_at > first_at:
            stats.decode_tok_s = (len(turn.tokens) - 1) / (last_at - first_at)
        current.answer = answer.shown
        # The answer's tokens stay as generated (a re-tokenization could differ); the last one is fed on the
        # next turn, when the template's end-of-turn text follows it.
        self._segs.append(_Seg(answer.raw, list(turn.tokens), is_answer=True))

    def _prepare(self, image: RGBImage, generation: int) -> bool:
        def superseded() -> bool:
            return generation != self._prepare_generation

        if superseded():
            return False
        pending = [*self._turns, _TurnRecord(_PENDING_QUESTION, image, None)]
        text = self._render(pending)
        through_image = text[: text.rfind(IMAGE_MARKER) + len(IMAGE_MARKER)]
        segs = self._plan(through_image, [t.image for t in pending if t.image is not None])
        if sum(self._positions(u) for s in segs for u in s.units) + self._native.n_ctx // 4 > self._native.n_ctx:
            return False  # the question will need a rebuild of the context; nothing to gain now
        try:
            self._evaluate(segs, need_logits=False, stats=TurnStats(), should_stop=superseded)
        except _Cancelled:
            return False
        return True

    # --- planning -------------------------------------------------------------------------------------------------

    def _render(self, turns: Sequence[_TurnRecord]) -> str:
        messages: list[ChatMessage] = []
        for t in turns:
            messages.append(ChatMessage("user", t.question, image=t.image is not None))
            if t.answer is not None:
                messages.append(ChatMessage("assistant", t.answer))
        return self._template.render_with_system_fallback(self._system, messages, add_generation_prompt=True)

    def _fit(
        self, turns: list[_TurnRecord], reserve: int, *,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> tuple[list[_TurnRecord], list[_Seg], int]:  # fmt: skip
        """Plan the prompt for `turns`; drop the fewest oldest turns so it fits with `reserve` tokens to spare.

        The most recent image stays: if its turn is dropped it moves to the first turn kept. The number to drop
        is found by bisection, so a long conversation costs a few renders, not one per dropped turn.
        """
        n_ctx = self._native.n_ctx
        latest_image = next((t.image for t in reversed(turns) if t.image is not None), None)
        plans: dict[int, tuple[list[_TurnRecord], list[_Seg], int]] = {}

        def plan(dropped: int) -> tuple[list[_TurnRecord], list[_Seg], int]:
            if dropped not in plans:
                if should_stop():
                    raise _Cancelled
                kept = [_TurnRecord(t.question, t.image, t.answer) for t in turns[dropped:]]
                if latest_image is not None and all(t.image is not latest_image for t in kept):
                    kept[0].image = latest_image
                text = self._render(kept)
                segs = self._plan(text, [t.image for t in kept if t.image is not None])
                plans[dropped] = kept, segs, sum(self._positions(u) for s in segs for u in s.units)
            return plans[dropped]

        low, high = 0, len(turns) - 1  # the answer lies in [low, high]; high (the question alone) is the last resort
        if plan(0)[2] + reserve > n_ctx:
            low = min(1, high)
            while low < high:
                middle = (low + high) // 2
                if plan(middle)[2] + reserve <= n_ctx:
                    high = middle
                else:
                    low = middle + 1
        kept, segs, needed = plan(low)
        last_chance = low == len(turns) - 1
        if needed + reserve <= n_ctx or (last_chance and needed + 8 <= n_ctx):
            return kept, segs, low
        with_image = " with the image" if any(t.image is not None for t in kept) else ""
        raise PromptTooLongError(
            f"the question needs {needed} tokens{with_image}, but the model's context holds {n_ctx}: "
            "shorten the question (or raise the context size in Settings)"
        )

    def _plan(self, text: str, images: Sequence[RGBImage]) -> list[_Seg]:
        """Segments for `text`: reuse earlier segments while the text still matches them, tokenize the rest."""
        segs: list[_Seg] = []
        pos = 0
        image_index = 0
        for seg in self._segs:
            if seg.is_answer:
                # A UI or a stored chat may hold the answer trimmed, and a template may write a space before it
                # that its generation prompt lacks (SmolVLM's "Assistant:" then "Assistant: " + answer): the
                # tokens stay the model's own, generated right after the generation prompt.
                gap = len(text) - pos - len(text[pos:].lstrip())
                matched = next(
                    (
                        start + len(c)
                        for start in dict.fromkeys((pos, pos + gap))
                        for c in (seg.text, seg.text.lstrip(), seg.text.strip())
                        if c and text.startswith(c, start)
                    ),
                    None,
                )
                if matched is None:
                    break
                pos = matched
                segs.append(seg)
                continue
            seg_images = [u for u in seg.units if isinstance(u, _ImageUnit) and u.part == 0]
            if not text.startswith(seg.text, pos):
                break
            wanted = images[image_index : image_index + len(seg_images)]
            if [u.digest for u in seg_images] != [i.digest for i in wanted]:
                break
            pos += len(seg.text)
            image_index += len(seg_images)
            segs.append(seg)
        segs.extend(self._tokenize(text[pos:], images[image_index:], at_start=pos == 0))
        return segs

    def _tokenize(self, text: str, images: Sequence[RGBImage], *, at_start: bool) -> list[_Seg]:
        native = self._native
        parts = text.split(IMAGE_MARKER)
        if len(parts) - 1 != len(images):
            raise EngineError(f"the prompt has {len(parts) - 1} image slots for {len(images)} images")
        add_bos = at_start and not self._template.starts_with_bos_text
        segs: list[_Seg] = []
        for part, image in zip(parts[:-1], images, strict=True):
            units: list[_Unit] = []
            if add_bos and native.add_bos:
                units.append(native.bos)
            add_bos = False
            n_parts = 0
            for unit in native.image_chunks(part + IMAGE_MARKER, image):
                if isinstance(unit, int):
                    units.append(unit)
                else:
                    units.append(_ImageUnit(image.digest, unit, native.free_chunk, n_parts))
                    n_parts += 1
            segs.append(_Seg(part + IMAGE_MARKER, units))
        if parts[-1] or add_bos:
            segs.append(_Seg(parts[-1], native.tokenize(parts[-1], add_bos=add_bos)))
        return segs

    @staticmethod
    def _positions(unit: _Unit) -> int:
        return 1 if isinstance(unit, int) else int(unit.chunk.n_pos)

    # --- evaluation -----------------------------------------------------------------------------------------------

    def _evaluate(
        self,
        segs: list[_Seg],
        *,
        need_logits: bool,
        stats: TurnStats,
        should_stop: Callable[[], bool],
        on_stage: Callable[[str], None] | None = None,
    ) -> None:
        """Make the KV cache hold exactly `segs`, evaluating only what it does not already hold.

        `on_stage("image")` is called while an image still has to be evaluated, `on_stage("question")` once only
        text is left."""
        native = self._native
        self._segs = segs
        target = [u for s in segs for u in s.units]
        common = 0
        limit = min(len(self._kv), len(target))
        while common < limit and _same_unit(self._kv[common], target[common]):
            common += 1
        if need_logits and common == len(target) and common > 0:
            common -= 1  # the logits of the last token are gone: evaluate it again
        if common < len(self._kv):
            if not native.can_truncate or not native.truncate(sum(self._kv_pos[:common])):
                restored = self._checkpoints.restore(common)
                if restored is None:
                    native.clear()
                common = restored or 0
            self._checkpoints.forget_beyond(common)
            del self._kv[common:]
            del self._kv_pos[common:]

        n_past = sum(self._kv_pos)
        started = time.perf_counter()
        encode_seconds = 0.0
        evaluated = 0
        saw_image = False
        last_image = max((k for k in range(common, len(target)) if not isinstance(target[k], int)), default=-1)
        if on_stage is not None:
            on_stage("image" if last_image >= 0 else "question")
        i = common
        while i < len(target):
            if should_stop():
                raise _Cancelled
            if on_stage is not None:
                on_stage("image" if i <= last_image else "question")
            unit = target[i]
            if isinstance(unit, int):
                j = i
                while j < len(target) and isinstance(target[j], int) and j - i < native.n_batch:
                    j += 1
                tokens = target[i:j]
                n_past = native.decode_tokens(tokens, n_past, logits_last=need_logits and j == len(target))
                self._kv.extend(tokens)
                self._kv_pos.extend([1] * len(tokens))
                evaluated += len(tokens)
                i = j
                continue
            saw_image = True
            parts = self._embeddings.get(unit.digest)
            embedding = parts.get(unit.part) if parts is not None else None
            if embedding is None:
                t0 = time.perf_counter()
                embedding = native.encode_image(unit.chunk)
                encode_seconds += time.perf_counter() - t0
                self._embeddings.setdefault(unit.digest, {})[unit.part] = embedding
                while len(self._embeddings) > self.config.image_cache_size:
                    self._embeddings.popitem(last=False)
            self._embeddings.move_to_end(unit.digest)
            new_n_past = native.decode_image(unit.chunk, embedding, n_past)
            self._kv.append(unit)
            self._kv_pos.append(new_n_past - n_past)
            evaluated += new_n_past - n_past
            n_past = new_n_past
            i += 1
            if _last_chunk_of_image(target, i - 1):
                self._checkpoints.after_image(len(self._kv))
        elapsed = time.perf_counter() - started
        stats.image_encode_ms += encode_seconds * 1000
        stats.prefill_ms += (elapsed - encode_seconds) * 1000
        stats.prompt_tokens += evaluated
        has_image = saw_image or any(not isinstance(u, int) for u in target)
        stats.image_cached = has_image and stats.image_encode_ms == 0.0


def _last_chunk_of_image(units: Sequence[_Unit], index: int) -> bool:
    """Whether units[index], an image chunk, is its image's last (tiles come with wrapper tokens between them)."""
    image = units[index]
    for unit in units[index + 1 :]:
        if isinstance(unit, _ImageUnit):
            return not (unit.digest == image.digest and unit.part > image.part)
    return True


def _same_unit(a: _Unit, b: _Unit) -> bool:
    if isinstance(a, int) or isinstance(b, int):
        return a == b
    return bool(a.digest == b.digest and a.part == b.part)


__all__ = [
    "Engine",
    "EngineConfig",
    "ModelInfo",
    "PastTurn",
    "Turn",
    "TurnStats",
]


def _conforms(engine: Engine) -> Answerer:
    return engine  # mypy proves here that the local engine satisfies the Answerer protocol
