"""LlavaCam for iPhone, in Pyto: the phone is the camera, the chat and the history; a computer runs the model.

Run this file in Pyto. Set the server (e.g. `http://192.168.1.20:8765/v1`, from `llavacam serve --host 0.0.0.0
--token T` on your computer, or any OpenAI-compatible server) and its token under Server. Pyto cannot run
llama.cpp on the phone; see README_PYTO.md.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import mainthread
import photos
import pyto_ui as ui
import userkeys

from app.core.history.store import HistoryStore
from app.core.inference.images import RGBImage, load_image
from app.core.remote import RemoteChat, RemoteError, user_message

SERVER_KEY = "llavacam.server"
TOKEN_KEY = "llavacam.token"
DEFAULT_SERVER = "http://192.168.1.20:8765/v1"


def _saved(key: str, default: str) -> str:
    try:
        return str(userkeys.get(key))
    except KeyError:
        return default


class PytoApp:
    """The front end: a table of separated question/answer cells, a text field, Send/Stop/Camera buttons."""

    def __init__(self, data_dir: str | os.PathLike[str] | None = None) -> None:
        base = Path(data_dir) if data_dir else Path.home() / "Documents" / "LlavaCam"
        self.history = HistoryStore(base)
        self.chat_id: int | None = None
        self.image: RGBImage | None = None
        self.image_source = "camera"
        self.image_sent = False
        self.messages: list[dict[str, Any]] = []
        self.turn: Any = None
        self.worker: threading.Thread | None = None
        self._build()

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
        self.image = load_image(picture, max_side=1344)
        self.image_sent = False
        self.image_source = source
        self.thumbnail.image = picture
        self.status.text = "Photo ready: ask about it."

    def new_chat(self, sender: Any = None) -> None:
        self.stop()
        self.chat_id = None
        self.messages = []
        self.image_sent = False
        self.section.cells = []

    def send(self, sender: Any = None) -> None:
        question = (self.question_field.text or "").strip()
        if not question:
            return
        if self.worker is not None and self.worker.is_alive():
            self.status.text = "An answer is still coming: wait or press Stop."
            return
        userkeys.set(self.server_field.text, SERVER_KEY)
        userkeys.set(self.token_field.text, TOKEN_KEY)
        self.question_field.text = ""
        image = self.image if not self.image_sent else None
        self._add_cell(question, "You" + (" · with the photo" if image is not None else ""))
        answer_cell = self._add_cell("…", "LlavaCam")
        self.stop_button.enabled = True
        self.send_button.enabled = False
        self.worker = threading.Thread(target=self._answer, args=(question, image, answer_cell), daemon=True)
        self.worker.start()

    def stop(self, sender: Any = None) -> None:
        if self.turn is not None:
            self.turn.cancel()

    # --- background thread --------------------------------------------------------------------------------------

    def _answer(self, question: str, image: RGBImage | None, cell: Any) -> None:
        history = self.history
        writer = None
        try:
            if self.chat_id is None:
                self.chat_id = history.create_chat()
            frame = history.save_image(image, source=self.image_source) if image is not None else None
            history.add_user_message(self.chat_id, question, frame)
            writer = history.begin_answer(self.chat_id, "remote")
            client = RemoteChat(self.server_field.text, self.token_field.text or None)
            self.messages.append(user_message(question, image))
            self.turn = client.stream(self.messages, max_tokens=512)
            if image is not None:
                self.image_sent = True
            self._set_status("Answering…")
            for piece in self.turn:
                writer.append(piece)
                text = self.turn.text
                mainthread.run_async(lambda text=text: setattr(cell.text_label, "text", text))
            stopped = self.turn.cancelled
            self.messages.append({"role": "assistant", "content": self.turn.text})
            writer.finish("stopped" if stopped else "complete", self.turn.timings or None)
            self._set_status("Stopped." if stopped else "Ready.")
        except RemoteError as exc:
            if writer is not None:
                writer.finish("error")
            if self.messages and self.messages[-1]["role"] == "user":
                self.messages.pop()
            message = str(exc)  # the UI runs later, on the main thread, after `exc` is gone
            mainthread.run_async(lambda: setattr(cell.text_label, "text", f"Error: {message}"))
            self._set_status(message)
        finally:
            self.turn = None

            def idle() -> None:
                self.stop_button.enabled = False
                self.send_button.enabled = True

            mainthread.run_async(idle)


def main() -> None:
    PytoApp().show()


if __name__ == "__main__":
    main()
