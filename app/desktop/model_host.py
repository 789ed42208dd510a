"""The window's model: the loaded `Engine`, loaded and switched as an awaitable, and the `Answerer` the chat uses.

Loading runs `switch_engine` (check, probe in a child, swap, fall back) in the loop's executor: the coroutine the
window awaits ends when the pair is loaded, refused or failed, and nothing waits on the GUI thread. `abort()` stops a
load within moments — the probe child is killed, and llama.cpp's load progress callback returns False — so closing
the window during a load closes it at once.

`ModelHost` is the `Answerer` the `ChatSession` talks to: it forwards to whichever engine is loaded, so the session
outlives model switches. The engine's own inference thread stays the only code that touches llama.cpp; no thread
here relays anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from app.core.errors import LlavaCamError, LoadCancelled
from app.core.inference.answerer import AnsweredBy, Answerer, AnswerStream, PastTurn, completed
from app.core.inference.engine import Engine, EngineConfig, ModelInfo
from app.core.inference.images import RGBImage
from app.core.inference.sampling import SamplingSettings
from app.core.models.switch import switch_engine

NO_MODEL = "No model is loaded yet: choose one in File → Models…, or wait for it to load."


@dataclass(frozen=True)
class LoadOutcome:
    """What a load left loaded. `refused`: why the pair asked for was not taken while `info` (the previous pair)
    is still, or again, loaded; `error`: why nothing is loaded (info is None)."""

    info: ModelInfo | None
    refused: str | None = None
    error: str | None = None


class ModelHost:
    """Holds the engine; loads pairs as awaitables; forwards the `Answerer` calls to the loaded engine."""

    def __init__(self) -> None:
        self._engine: Engine | None = None
        self._remote: Answerer | None = None  # a server's client (Settings → Engine → A server), instead of _engine
        self._cancel = threading.Event()
        self._load: asyncio.Future[LoadOutcome] | None = None

    @property
    def engine(self) -> Engine | None:
        """The loaded engine (None while loading or when nothing is loaded): its methods are safe from any thread."""
        return self._engine

    @property
    def remote(self) -> Answerer | None:
        """The server's client answering instead of a local engine (None: this computer answers)."""
        return self._remote

    async def use_server(self, answerer: Answerer) -> None:
        """Answer through a server from now on (app.core.engine_choice.answerer_for): the local model is freed."""
        await self.close()
        self._remote = answerer

    @property
    def loading(self) -> bool:
        return self._load is not None and not self._load.done()

    async def load(
        self,
        text_path: str,
        mmproj_path: str,
        config: EngineConfig,
        *,
        data_dir: Path | None = None,
        on_status: Callable[[str], None] = lambda _text: None,
    ) -> LoadOutcome:
        """Load (text_path, mmproj_path), or switch to it. Raises LoadCancelled if `abort()` was called meanwhile.

        `on_status` gets a line to show (progress every 5 %, the first-use test load), on the loop's thread."""
        if self._load is not None and not self._load.done():
            self.abort()  # a newer choice wins; the older load ends as cancelled
            with contextlib.suppress(BaseException):
                await self._load
        self._cancel = cancel = threading.Event()
        self._drop_remote()  # this computer answers again
        loop = asyncio.get_running_loop()
        name = Path(text_path).name

        def say(text: str) -> None:  # from the executor or the inference thread
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is looking
                loop.call_soon_threadsafe(on_status, text)

        shown = [-1]

        def progress(fraction: float) -> None:
            percent = int(fraction * 100)
            if percent // 5 != shown[0] // 5:  # every 5 %: a status line, not a storm of callbacks
                shown[0] = percent
                say(f"Loading {name}… {percent}%")

        current, self._engine = self._engine, None  # nothing answers while the pair changes
        say(f"Loading {name}…")

        def switch() -> LoadOutcome:
            try:
                result = switch_engine(
                    current, text_path, mmproj_path or None, config, data_dir=data_dir, load_progress=progress,
                    probe_starting=lambda: say(f"First use of {name}: test-loading it in a separate process…"),
                    cancelled=cancel.is_set,
                )  # fmt: skip
            except LoadCancelled:
                if current is not None:
                    current.close()  # cancelled during the test load: the old engine was still open
                raise
            self._engine = result.engine
            if result.engine is None:
                return LoadOutcome(None, error=result.error or "the model could not be loaded")
            return LoadOutcome(result.engine.info, refused=result.error)

        self._load = asyncio.ensure_future(asyncio.to_thread(switch))
        return await self._load

    def abort(self) -> None:
        """Stop a load in progress within moments (it then raises LoadCancelled); safe from any thread."""
        self._cancel.set()

    async def close(self) -> None:
        """Abort any load, cancel the answer, and free the model (the engine's thread is joined, off the loop)."""
        self.abort()
        self._drop_remote()
        if self._load is not None:
            with contextlib.suppress(BaseException):
                await self._load
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.cancel()
            await asyncio.to_thread(engine.close)

    async def unload(self) -> None:
        """No model: free the loaded one (Settings without model files)."""
        await self.close()

    # --- the Answerer the chat talks to -----------------------------------------------------------------------------

    def _drop_remote(self) -> None:
        remote, self._remote = self._remote, None
        if remote is not None:
            remote.cancel()

    def _loaded(self) -> Engine:
        engine = self._engine
        if engine is None:
            raise LlavaCamError(NO_MODEL)
        return engine

    def ask(
        self, question: str, image: RGBImage | None = None, sampling: SamplingSettings | None = None
    ) -> AnswerStream:
        if self._remote is not None:
            return self._remote.ask(question, image, sampling)
        engine = self._loaded()
        return engine.ask(question, image if engine.info.has_vision else None, sampling)

    def set_history(self, turns: Sequence[PastTurn], system_prompt: str | None = None) -> Future[None]:
        if self._remote is not None:
            return self._remote.set_history(turns, system_prompt)
        engine = self._engine
        return engine.set_history(turns, system_prompt) if engine is not None else completed()

    def cancel(self) -> None:
        if self._remote is not None:
            self._remote.cancel()
        engine = self._engine
        if engine is not None:
            engine.cancel()

    @property
    def answered_by(self) -> AnsweredBy | None:
        """Whichever answers now: the server's client, or the loaded engine (None while nothing is loaded)."""
        if self._remote is not None:
            return self._remote.answered_by
        engine = self._engine
        return engine.answered_by if engine is not None else None

    def prepare(
        self, image: RGBImage, turns: Sequence[PastTurn], system_prompt: str | None = None
    ) -> Future[bool] | None:
        """Encode `image` and evaluate the prompt up to it now, after the conversation `turns` (what the question
        will be asked after): None when there is nothing to prepare (no model, no vision).

        The conversation goes to the engine first, in the same breath: its jobs run in order, so the preparation
        reads the frame where the question will need it, whatever was sent to the engine before."""
        engine = self._engine
        if engine is None or not engine.info.has_vision:
            return None
        try:
            engine.set_history(turns, system_prompt)
            return engine.prepare(image)
        except LlavaCamError:
            return None


__all__ = ["NO_MODEL", "LoadCancelled", "LoadOutcome", "ModelHost"]
