"""The window's Extract menu: the pinned frame (or the live one, frozen) read into records of a preset.

The extraction is the core's (`app.core.extract.extractor.extract`): it asks the loaded engine aside from the chat
(`Engine.ask_aside`, on the engine's own inference thread, the one owner of llama.cpp) with the preset's JSON-schema
grammar, and waits for the answer in the loop's executor, never on the GUI thread. The result is kept the way
`llavacam extract` keeps it (`keep_extraction`): the question and the frame in the chat on screen (a new chat when
there is none), the model's answer after it, the records next to that chat. The chat is then read again, so the
conversation on screen and the engine's both include the extraction, and the Records panel shows its records.

One extraction at a time. The chat comes first: a question sent, or another frame pinned, meanwhile interrupts it,
and the notice says to extract again. No model, a server answering, the token limit: one notice each that says
what to do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from app.core.errors import LlavaCamError
from app.core.extract.extractor import ExtractInterrupted, TokenLimitReached, extract
from app.core.extract.keep import KeptExtraction, keep_extraction
from app.core.extract.schemas import Preset, load_schema_file
from app.core.inference.images import RGBImage

NO_MODEL = "The model is not loaded yet: extracting needs it. Choose one in File → Models…, or wait for it to load."
NO_VISION = "This model has no vision projector (mmproj), so it cannot read a frame: choose a pair with one."
ON_SERVER = ("Extract reads frames with this computer's model: switch Settings → Engine to This computer to use it "
             "(asking a server for records is `llavacam extract --server`).")  # fmt: skip
NO_FRAME = "No frame to read: capture the camera (Ctrl+P), or open, paste or drop an image first."
BUSY = "An answer is still coming: wait for it or press Stop (Esc), then extract."


class _OwnedAside:
    """The engine as `extract` sees it, remembering the aside turn it started so closing can cancel it."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.turn: Any = None

    def ask_aside(self, *args: Any, **kwargs: Any) -> Any:
        self.turn = self.engine.ask_aside(*args, **kwargs)
        return self.turn

    def cancel(self) -> None:
        turn = self.turn
        if turn is not None:
            turn.cancel()


class WindowExtraction(QObject):
    """Runs Extract → To-do / Expense / Contact / Your own schema… for the window."""

    started = Signal(str)  # the preset's label
    finished = Signal(object)  # a KeptExtraction, or None when nothing was kept (the notice says why)

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.window = window
        self.running = False
        self.closing = False
        self._aside: _OwnedAside | None = None
        # The user's schema file (tests set it): a path, or "" when the dialog was cancelled.
        self.choose_schema_file: Callable[[], str] = self._ask_schema_file

    def _ask_schema_file(self) -> str:
        from PySide6.QtWidgets import QFileDialog

        path, _ = QFileDialog.getOpenFileName(self.window, "Extract with your own JSON schema", "",
                                              "JSON schema (*.json)")  # fmt: skip
        return path

    def extract_preset(self, preset: Preset, *, max_tokens: int | None = None) -> None:
        """Read the pinned frame (or the live one, which is pinned) into `preset`'s records (a task)."""
        image = self._frame_to_read()
        if image is not None:
            self.window.tasks.spawn(self._extract_and_say(preset, image, max_tokens))

    def extract_own_schema(self) -> None:
        """Your own schema…: a JSON schema file of one record (read in the executor), then as a preset."""
        path = self.choose_schema_file()
        if path:
            self.window.tasks.spawn(self._extract_with_file(Path(path)))

    async def _extract_with_file(self, path: Path) -> None:
        try:
            preset = await asyncio.to_thread(load_schema_file, path)
        except LlavaCamError as exc:
            self._failed(f"That schema cannot be used: {exc}")
            return
        image = self._frame_to_read()
        if image is not None:
            await self._extract_and_say(preset, image, None)

    def _frame_to_read(self) -> RGBImage | None:
        """The pinned frame, else the live one frozen (pinned) now; None, with a notice, when extraction cannot
        start."""
        window = self.window
        problem = None
        host = window.model_host
        if self.running:
            window.set_status("An extraction is already running: its records come first.")
            return None
        if host.remote is not None:
            problem = ON_SERVER
        elif host.engine is None or not window.model_ready:
            problem = NO_MODEL
        elif not host.engine.info.has_vision:
            problem = NO_VISION
        elif window.binding.busy:
            window.set_status(BUSY)
            return None
        if problem is not None:
            self._failed(problem, kind="model")
            return None
        if window.binding.pinned is None:
            if window.camera_panel.newest_frame() is None:
                self._failed(NO_FRAME)
                return None
            window.capture()  # the frame read is the one the user sees frozen
        return window.binding.pinned

    async def _extract_and_say(self, preset: Preset, image: RGBImage, max_tokens: int | None) -> None:
        """`_extract`, whose unexpected failure is one notice too, and always ends with `finished`."""
        try:
            await self._extract(preset, image, max_tokens)
        except Exception as exc:
            self._failed(f"Something went wrong while extracting {preset.label} records: {exc}")

    async def _extract(self, preset: Preset, image: RGBImage, max_tokens: int | None) -> None:
        window = self.window
        engine = window.model_host.engine
        if engine is None:
            self._failed(NO_MODEL, kind="model")
            return
        self.running = True
        self.started.emit(preset.label)
        session = window.binding.session
        chat_id, source, model_id = session.chat_id, session.pinned_source, session.model_id
        captured = datetime.now().astimezone()
        window.set_status(f"Reading {preset.label} records from the frame…")
        aside = self._aside = _OwnedAside(engine)
        try:
            result = await asyncio.to_thread(extract, aside, image, preset, max_tokens=max_tokens)
        except TokenLimitReached as exc:
            self._failed(f"No {preset.label} records were kept: the answer reached its limit of {exc.budget} tokens "
                         "before they were complete. Try a frame with fewer items, or your own schema with shorter "
                         "fields (maxLength) or fewer of them (maxItems).")  # fmt: skip
            return
        except ExtractInterrupted:
            message = ("The extraction was interrupted: the chat comes first (a question was asked, or another frame "
                       "is being read). Extract again.")  # fmt: skip
            self._failed("" if self.closing else message)
            return
        except LlavaCamError as exc:
            self._failed(f"No {preset.label} records: {exc}")
            return
        finally:
            self.running = False
            self._aside = None
        if window.history.read_only:
            found = "; ".join(str(r.get(preset.title_field, "")) for r in result.records) or "none"
            self._failed(f"Records read ({found}) but not kept: {window.history.read_only_reason}")
            return
        try:
            kept = await asyncio.to_thread(keep_extraction, window.history, preset, image, result,
                                           captured_at=captured, chat_id=chat_id, source=source,
                                           model_id=model_id)  # fmt: skip
        except LlavaCamError as exc:
            self._failed(f"The {preset.label} records were not kept: {exc}")
            return
        await self._show(kept, preset, chat_id)

    async def _show(self, kept: KeptExtraction, preset: Preset, asked_in: int | None) -> None:
        window = self.window
        binding = window.binding
        # The chat on screen, or the one made for these records, is read again so it includes the extraction (and
        # the engine is fed it); not when another chat was opened meanwhile, or an answer is coming in this one.
        if binding.session.chat_id == asked_in and not binding.busy and not self.closing:
            window.history_panel.set_open_chat(kept.chat_id)
            await binding.open_chat_async(kept.chat_id)
        window.history_panel.refresh()
        window.hide_notice("extract")  # an earlier extraction's problem is over
        window.show_records(preset)
        merged = sum(1 for _record, was_merged in kept.stored if was_merged)
        count = len(kept.stored)
        if count == 0:
            text = f"No {preset.label} records found in the frame"
        else:
            text = f"Read {count} {preset.label} record{'s' if count != 1 else ''}"
            if merged:
                text += f" ({merged} merged into open ones with the same title)"
            text += ": they are in Records"
        window.set_status(text)
        self.finished.emit(kept)

    def _failed(self, message: str, kind: str = "extract") -> None:
        if message and not self.closing:
            self.window.show_notice(message, settings=kind == "model", kind=kind)
            self.window.set_status("Nothing extracted")
        self.finished.emit(None)

    def cancel(self) -> None:
        """Closing: the extraction in flight ends within one token, and says nothing."""
        self.closing = True
        aside = self._aside
        if aside is not None:
            aside.cancel()


__all__ = ["NO_FRAME", "NO_MODEL", "ON_SERVER", "WindowExtraction"]
