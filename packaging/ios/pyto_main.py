"""LlavaCam for iPhone, in Pyto: the phone is the camera, the chat and the history; a computer runs the model.

Run this file in Pyto. Set the server (e.g. `http://192.168.1.20:8765/v1`, from `llavacam serve --host 0.0.0.0
--token T` on your computer, or any OpenAI-compatible server) and its token under Server. Pyto cannot run
llama.cpp on the phone; see README_PYTO.md.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any

import mainthread
import photos
import pyto_ui as ui
import userkeys

from app.core.errors import LlavaCamError
from app.core.history.store import HistoryStore
from app.core.inference.answerer import AnsweredBy
from app.core.inference.images import RGBImage, load_image
from app.core.inference.sampling import SamplingSettings
from app.core.remote.protocol import RemoteError, ServerConfig
from app.core.remote.stdlib import RemoteAnswerer, RemoteChat, RemoteStream
from app.core.session import ChatSession, SessionEvent

SERVER_KEY = "llavacam.server"
TOKEN_KEY = "llavacam.token"
DEFAULT_SERVER = "http://192.168.1.20:8765/v1"


def _saved(key: str, default: str) -> str:
    try:
        return str(userkeys.get(key))
    except KeyError:
        return default


class ServerAnswerer(RemoteAnswerer):
    """The Answerer of the phone: any OpenAI-compatible server (the computer runs the model).

    The protocol and the blocking transport are the core's (app.core.remote); this only reads the server and token
    fields at each question."""

    def __init__(self, server: Any, token: Any) -> None:
        self._server = server  # callables: the fields are read at each question
        self._token = token
        super().__init__(RemoteChat(DEFAULT_SERVER))

    def ask(self, question: str, image: RGBImage | None = None, sampling: SamplingSettings | None = None
            ) -> RemoteStream:  # fmt: skip
        server, token = self._server(), self._token() or None
        if (server, token) != (self.chat.config.url, self.chat.config.token):
            self.chat = RemoteChat(server, token)
        return super().ask(question, image, sampling or SamplingSettings(max_tokens=512, temperature=0.2))

    @property
    def answered_by(self) -> AnsweredBy:
        """The server in the field now (the next question goes there), as history records it with the answer."""
        server = self._server()
        try:
            host = ServerConfig(server).host
        except RemoteError:
            host = str(server)
        return AnsweredBy(host, self.chat.config.model or "")


class PytoApp:
    """The front end: a table of separated question/answer cells, a text field, Send/Stop/Camera buttons.

    The conversation is a ChatSession (the same class as the desktop's): this class only shows it. Each Send runs
    the session on a thread; the session's events come on that thread and reach the UI via mainthread.run_async.
    """

    def __init__(self, data_dir: str | os.PathLike[str] | None = None) -> None:
        base = Path(data_dir) if data_dir else Path.home() / "Documents" / "LlavaCam"
        self.history = HistoryStore(base)
        self._build()
        answerer = ServerAnswerer(lambda: self.server_field.text, lambda: self.token_field.text)
        self.session = ChatSession(answerer, self.history, model_id="remote")
        self.session.subscribe(self._on_event)
        self.worker: threading.Thread | None = None
        self._answer_cell: Any = None

    # --- interface ----------------------------------------------------------------------------------------------

    def _build(self) -> None:
        self.view = ui.View()
        self.view.title = "LlavaCam"
        self.server_field = ui.TextField(text=_saved(SERVER_KEY, DEFAULT_SERVER), placeholder="Server URL (…/v1)")
        self.token_field = ui.TextField(text=_saved(TOKEN_KEY, ""), placeholder="Token")
        self.thumbnail = ui.ImageView()
        self.section = ui.TableViewSection("Chat", [])
        self.table = ui.TableView(style=ui.TableViewStyle.PLAIN, sections=[self.section])
        self.question_field = ui.TextField(placeholder="Ask about the photo…")
        self.question_field.action = self.send
        self.send_button = ui.Button(title="Send")
        self.send_button.action = self.send
        self.stop_button = ui.Button(title="Stop")
        self.stop_button.action = self.stop
        self.stop_button.enabled = False
        self.camera_button = ui.Button(title="Camera")
        self.camera_button.action = self.take_photo
        self.library_button = ui.Button(title="Photos")
        self.library_button.action = self.pick_photo
        self.new_button = ui.Button(title="New chat")
        self.new_button.action = self.new_chat
        self.status = ui.Label(text="Take a photo, then ask.")
        controls = ui.HorizontalStackView()
        for button in (self.camera_button, self.library_button, self.new_button, self.stop_button, self.send_button):
            controls.add_subview(button)
        column = ui.VerticalStackView()
        for part in (self.server_field, self.token_field, self.thumbnail, self.table, self.question_field, controls,
                     self.status):  # fmt: skip
            column.add_subview(part)
        self.view.add_subview(column)

    def show(self) -> None:
        ui.show_view(self.view, ui.PresentationMode.SHEET)

    def _set_status(self, text: str) -> None:
        mainthread.run_async(lambda: setattr(self.status, "text", text))

    def _add_cell(self, text: str, detail: str) -> Any:
        cell = ui.TableViewCell(style=ui.TableViewCellStyle.SUBTITLE, text=text, detail=detail)
        cell.text_label.number_of_lines = 0
        self.section.cells = [*self.section.cells, cell]
        return cell

    # --- actions ------------------------------------------------------------------------------------------------

    def take_photo(self, sender: Any = None) -> None:
        self._use_photo(photos.take_photo(), "camera")

    def pick_photo(self, sender: Any = None) -> None:
        self._use_photo(photos.pick_photo(), "photo library")

    def _use_photo(self, picture: Any, source: str) -> None:
        if picture is None:
            return  # the user closed the camera
        self.session.pin(load_image(picture, max_side=1344), source)
        self.thumbnail.image = picture
        self.status.text = "Photo ready: ask about it."

    def new_chat(self, sender: Any = None) -> None:
        self.session.new_chat()  # an answer still coming is stopped and kept in its chat
        self.section.cells = []

    def send(self, sender: Any = None) -> None:
        question = (self.question_field.text or "").strip()
        if not question:
            return
        if self.session.busy:
            self.status.text = "An answer is still coming: wait or press Stop."
            return
        userkeys.set(self.server_field.text, SERVER_KEY)
        userkeys.set(self.token_field.text, TOKEN_KEY)
        self.question_field.text = ""
        with_photo = self.session.pinned is not None and not self.session.asked_about_pinned
        self._add_cell(question, "You" + (" · with the photo" if with_photo else ""))
        self._answer_cell = self._add_cell("…", "LlavaCam")
        self.stop_button.enabled = True
        self.send_button.enabled = False
        self.worker = threading.Thread(target=self._answer, args=(question,), daemon=True)
        self.worker.start()

    def stop(self, sender: Any = None) -> None:
        self.session.stop()

    # --- background thread --------------------------------------------------------------------------------------

    def _answer(self, question: str) -> None:
        with contextlib.suppress(LlavaCamError):  # the "finished" event shows it
            self.session.send(question, SamplingSettings(max_tokens=512, temperature=0.2))

    def _on_event(self, event: SessionEvent) -> None:
        request, cell = event.request, self._answer_cell
        if request is None or cell is None:
            return
        if event.kind == "phase" and request.phase == "answering":
            self._set_status("Answering…")
        elif event.kind == "piece":
            text = request.version.text
            mainthread.run_async(lambda: setattr(cell.text_label, "text", text))
        elif event.kind == "finished":
            version = request.version
            if version.status == "error":
                message = version.error or "the answer failed"
                mainthread.run_async(lambda: setattr(cell.text_label, "text", f"Error: {message}"))
                self._set_status(message)
            else:
                text = version.text
                mainthread.run_async(lambda: setattr(cell.text_label, "text", text))
                self._set_status("Stopped." if version.status == "stopped" else "Ready.")

            def idle() -> None:
                self.stop_button.enabled = False
                self.send_button.enabled = True

            mainthread.run_async(idle)


def main() -> None:
    PytoApp().show()


if __name__ == "__main__":
    main()
