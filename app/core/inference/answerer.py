"""What a conversation needs from whatever answers it: the `Answerer` protocol and the data it exchanges.

Two things satisfy it: the local `Engine` (llama.cpp on its own inference thread) and a remote client (an
OpenAI-compatible server, used by the iPhone build where llama.cpp cannot run). `ChatSession` talks only to this
protocol, so it never imports the native engine and the Pyto bundle can ship it.

The contract, small on purpose:
- `set_history(turns)` replaces the conversation the answerer continues (a stored chat, a new chat, or the
  conversation minus its last turn before a regenerate). It returns a future; the next `ask` is ordered after it.
- `ask(question, image, sampling)` starts one answer and returns an `AnswerStream` at once. Iterating the stream
  blocks for the next text piece (so consume it on a worker thread, or through the
  async adapter `pieces` `pieces`); `wait()` returns the `TurnStats`; a failure is raised from the iteration.
- `cancel()` (any thread) stops the answer being generated between two tokens; the stream then ends normally with
  `finish_reason == "cancelled"`.
- `answered_by` says who answers (`AnsweredBy`: this computer or a server's host:port, and the model): history
  records it with each answer and the bubble shows it.

This module is standard library only (it ships to the phone).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

from app.core.inference.images import RGBImage
from app.core.inference.sampling import SamplingSettings

THIS_COMPUTER = "this computer"  # AnsweredBy.engine of the local engine


@dataclass(frozen=True)
class AnsweredBy:
    """Who gave an answer: `engine` is THIS_COMPUTER or the server's "host:port"; `model` is the model's name there
    (the local model file's name without .gguf, or the server's model id)."""

    engine: str
    model: str

    @property
    def label(self) -> str:
        """The bubble's words: "demo-llama · this computer", "llava · 192.168.1.5:8080" (the model left out when the
        server did not name it)."""
        name = model_name(self.model)
        return f"{name} · {self.engine}" if name else self.engine


def model_name(model_id: str) -> str:
    """A model id as people read it: a server that names its model by the file it loaded (llama-cpp-python's does,
    "/srv/models/llava-v1.5-7b-q4.gguf") is shown by the file's name without .gguf ("llava-v1.5-7b-q4")."""
    if "/" not in model_id and "\\" not in model_id:
        return model_id
    name = model_id.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    return name[: -len(".gguf")] if name.lower().endswith(".gguf") else name or model_id


@dataclass(frozen=True)
class PastTurn:
    """One question and its answer, as a UI or a stored chat knows them."""

    question: str
    answer: str
    image: RGBImage | None = None


@dataclass
class TurnStats:
    """Wall-clock timings of one turn (llama.cpp's own counters fold the image encode into prompt eval).

    A remote answerer fills what it knows (the server's timings) and leaves the rest at zero.
    """

    image_encode_ms: float = 0.0
    image_cached: bool = False
    prompt_tokens: int = 0  # positions evaluated for this turn (text tokens + image embeddings)
    prefill_ms: float = 0.0  # evaluating those positions, not counting the image encode
    ttft_ms: float = 0.0  # from ask() to the first generated token
    decode_tokens: int = 0
    decode_tok_s: float = 0.0
    context_rebuilt: bool = False
    dropped_turns: int = 0
    finish_reason: str = ""  # "stop" | "length" | "context" | "cancelled"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class AnswerStream(Protocol):
    """One answer being produced: iterate it for text pieces (blocking); `cancel()` from any thread."""

    question: str
    image: RGBImage | None

    @property
    def text(self) -> str:
        """The answer received so far (all of it once the stream has ended)."""
        ...

    @property
    def finished(self) -> bool: ...

    def cancel(self) -> None: ...

    def __iter__(self) -> Iterator[str]: ...

    def wait(self) -> TurnStats:
        """Consume the rest of the answer and return its stats (raises what the answer raised)."""
        ...


@runtime_checkable
class Answerer(Protocol):
    """Something that continues a conversation: the local `Engine`, or a client of a remote server."""

    def ask(
        self, question: str, image: RGBImage | None = None, sampling: SamplingSettings | None = None
    ) -> AnswerStream:
        """Answer `question` about `image` (None: about the conversation so far), after the history."""
        ...

    def set_history(self, turns: Sequence[PastTurn], system_prompt: str | None = None) -> Future[None]:
        """Replace the conversation the next `ask` continues."""
        ...

    def cancel(self) -> None:
        """Stop the answer in progress between two tokens (and any preparation)."""
        ...

    @property
    def answered_by(self) -> AnsweredBy | None:
        """Who answers the next `ask` (None: nothing can answer yet, e.g. no model loaded)."""
        ...


async def pieces(stream: AnswerStream) -> AsyncIterator[str]:
    """An answer's pieces as an async iterator on the running loop, whatever produced them.

    The engine's `Turn.stream()` needs no thread; any other stream (a remote client's blocking reads) is read one
    piece at a time on the loop's default executor. Cancelling the consumer cancels the stream.
    """
    native = getattr(stream, "stream", None)
    if native is not None:
        async for piece in native():
            yield piece
        return
    loop = asyncio.get_running_loop()
    iterator = iter(stream)
    done = object()
    try:
        while True:
            piece = await loop.run_in_executor(None, next, iterator, done)
            if piece is done:
                return
            yield piece
    finally:
        if not stream.finished:
            stream.cancel()


def completed(value: Any = None) -> Future[Any]:
    """A future that is already done: for answerers whose `set_history` has nothing to wait for."""
    future: Future[Any] = Future()
    future.set_result(value)
    return future


__all__ = ["THIS_COMPUTER", "AnswerStream", "AnsweredBy", "Answerer", "PastTurn", "TurnStats", "completed", "pieces"]
