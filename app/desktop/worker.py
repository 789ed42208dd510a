"""InferenceWorker: owns the Engine on its own QThread; slots in, signals out, every signal tagged with a request id.

Stop does not go through a queued slot (it would wait until the answer ends): `cancel()` is called directly from
the GUI thread and sets the engine's cancel Event, which the inference thread checks between any two tokens.
"""

from __future__ import annotations

import threading
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from app.core.errors import LlavaCamError
from app.core.inference.engine import Engine, EngineConfig, TurnStats
from app.core.inference.images import RGBImage
from app.core.inference.sampling import SamplingSettings
from app.core.models.switch import switch_engine


class InferenceWorker(QObject):
    # Python objects travel as they are (a `dict` signal would be converted to a QVariantMap and back).
    model_loaded = Signal(object)  # {"name", "template", "has_vision", "n_ctx"}
    model_failed = Signal(str)
    status = Signal(str)
    token = Signal(int, str)  # request id, text piece
    finished = Signal(int, object)  # request id, TurnStats as a dict
    error = Signal(int, str)  # request id, message
    prepared = Signal(str, bool)  # image digest, whether the preparation completed

    def __init__(self) -> None:
        super().__init__()
        self._engine: Engine | None = None
        self._engine_lock = threading.Lock()  # guards the reference, not the engine (it has its own thread)
        self._stopped_requests: set[int] = set()  # Stop pressed before the request reached the engine

    # --- called directly from the GUI thread ---------------------------------------------------------------

    def cancel(self, request_id: int | None = None) -> None:
        """Stop the current answer within one token. Safe from any thread. With `request_id`, that request is
        stopped even if it is still queued behind other work here (a history load): it will not start."""
        with self._engine_lock:
            if request_id is not None:
                self._stopped_requests.add(request_id)
            engine = self._engine
        if engine is not None:
            engine.cancel()

    @property
    def engine(self) -> Engine | None:
        """The loaded engine (its methods are safe from any thread): the watch asks it aside from the chat."""
        with self._engine_lock:
            return self._engine

    # --- slots (run on the worker's QThread) ----------------------------------------------------------------

    @Slot(str, str, object)
    def load_model(self, text_path: str, mmproj_path: str, options: dict) -> None:
        """Load a pair, or switch to it: core's switch_engine checks and probes it first, keeps the old model
        if it is refused, and reloads the old one if the new one fails to load."""
        if not text_path:
            self._close_engine()
            self.model_failed.emit("No model configured: choose the model files in Settings (Ctrl+,).")
            return
        name = text_path.rsplit("/", 1)[-1]
        self.status.emit(f"Loading {name}…")
        shown = [-1]

        def progress(fraction: float) -> None:
            percent = int(fraction * 100)
            if percent // 5 != shown[0] // 5:  # every 5%: a status line, not a signal storm
                shown[0] = percent
                self.status.emit(f"Loading {name}… {percent}%")

        config = EngineConfig(
            n_ctx=int(options.get("n_ctx", 4096)),
            n_threads=int(options.get("threads") or 0) or None,
            n_gpu_layers=int(options.get("gpu_layers", -1)),
            template=options.get("template") or None,
            system_prompt=options.get("system_prompt") or EngineConfig().system_prompt,
        )
        with self._engine_lock:
            current = self._engine
        try:
            result = switch_engine(
                current, text_path, mmproj_path or None, config, data_dir=options.get("data_dir"),
                load_progress=progress,
                probe_starting=lambda: self.status.emit(f"First use of {name}: test-loading it in a separate process…"),
            )  # fmt: skip
        except Exception as exc:  # a bug: say it, keep the window alive
            self._close_engine()
            self.model_failed.emit(f"The model could not be loaded: {exc}")
            return
        with self._engine_lock:
            self._engine = result.engine
        engine = result.engine
        if engine is None:
            self.model_failed.emit(result.error or "The model could not be loaded.")
            return
        # result.error with an engine: the new pair was refused; the previous one is still (or again) loaded.
        self._emit_loaded(engine.info, refused=result.error)

    def _emit_loaded(self, info: Any, refused: str | None = None) -> None:
        self.model_loaded.emit(
            {
                "name": info.name,
                "template": info.template_family,
                "has_vision": info.has_vision,
                "n_ctx": info.n_ctx,
                "text_path": str(info.text_path),
                "mmproj_path": str(info.mmproj_path or ""),
                "refused": refused,  # why the pair asked for was not taken (None: it was)
            }
        )

    @Slot(object)
    def prepare(self, image: RGBImage) -> None:
        engine = self._engine
        digest = image.digest
        if engine is None or not engine.info.has_vision:
            self.prepared.emit(digest, False)  # nothing to prepare: the window must not wait for it
            return
        try:
            future = engine.prepare(image)
        except LlavaCamError:
            self.prepared.emit(digest, False)
            return
        future.add_done_callback(lambda f: self.prepared.emit(digest, bool(not f.exception() and f.result())))

    @Slot(int, str, object, object, bool)
    def ask(
        self, request_id: int, question: str, image: RGBImage | None, sampling: SamplingSettings, regenerate: bool
    ) -> None:
        engine = self._engine
        if engine is None:
            self.error.emit(request_id, "No model is loaded yet: choose one in Settings, or wait for it to load.")
            return
        if self._was_stopped(request_id):
            self.finished.emit(request_id, TurnStats(finish_reason="cancelled").to_dict())
            return
        try:
            if regenerate:
                turn = engine.regenerate(sampling)
            else:
                turn = engine.ask(question, image if engine.info.has_vision else None, sampling)
            if self._was_stopped(request_id):
                turn.cancel()  # Stop came while the turn was being submitted
            for piece in turn:
                self.token.emit(request_id, piece)
            assert turn.stats is not None
            self.finished.emit(request_id, turn.stats.to_dict())
        except LlavaCamError as exc:
            self.error.emit(request_id, str(exc))
        except Exception as exc:  # never a dead thread: one visible message instead
            self.error.emit(request_id, f"Something went wrong while answering: {exc}")

    def _was_stopped(self, request_id: int) -> bool:
        with self._engine_lock:
            return request_id in self._stopped_requests

    @Slot(str)
    def new_chat(self, system_prompt: str) -> None:
        engine = self._engine
        if engine is not None:
            engine.new_chat(system_prompt or None).result()

    @Slot(object, str)
    def set_history(self, turns: Any, system_prompt: str) -> None:
        engine = self._engine
        if engine is not None:
            engine.set_history(turns, system_prompt or None).result()

    @Slot()
    def shutdown(self) -> None:
        self._close_engine()

    def _close_engine(self) -> None:
        with self._engine_lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()


class WorkerThread:
    """The worker and its QThread, started together and stopped deterministically: cancel, quit, wait."""

    def __init__(self) -> None:
        self.thread = QThread()
        self.thread.setObjectName("llavacam-inference-qthread")
        self.worker = InferenceWorker()
        self.worker.moveToThread(self.thread)
        self.thread.start()

    def stop(self, timeout_ms: int = 10000) -> bool:
        self.worker.cancel()
        # Close the engine on the worker thread (it owns it), after whatever turn it is finishing.
        from PySide6.QtCore import QMetaObject, Qt

        if self.thread.isRunning():
            QMetaObject.invokeMethod(self.worker, "shutdown", Qt.ConnectionType.BlockingQueuedConnection)
        self.thread.quit()
        return self.thread.wait(timeout_ms)
