"""The main window: the chat list, the camera panel (camera_panel.py) and the chat with its question box
(question_box.py); menus and shortcuts (shortcuts.py).

The GUI thread only paints and routes: camera reads happen on the camera thread, image decoding on a small
background pool, and everything llama.cpp does on the engine's own inference thread (the InferenceWorker's QThread
only relays its answers as signals, until the window moves onto `Turn.stream()` on qasync's loop).
"""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QImage, QKeySequence, QPixmap
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QHBoxLayout,
    QMainWindow,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.core.errors import ImageError, LlavaCamError
from app.core.history.store import HistoryStore
from app.core.inference.engine import PastTurn
from app.core.inference.images import RGBImage, check_pixels, load_image
from app.desktop import shortcuts as keys
from app.desktop.accessible import DescribedLabel
from app.desktop.camera import CameraSource, camera_setting
from app.desktop.camera_panel import CameraPanel, to_qimage
from app.desktop.chat_view import Bubble, ChatView
from app.desktop.demo_badge import DemoBadge
from app.desktop.history_panel import HistoryPanel
from app.desktop.notices import NoticeArea
from app.desktop.question_box import QuestionBox
from app.desktop.settings import Settings, save_settings
from app.desktop.worker import WorkerThread

THUMBNAIL_SIZE = QSize(160, 120)


def thumbnail(image: RGBImage) -> QPixmap:
    return QPixmap.fromImage(to_qimage(image)).scaled(
        THUMBNAIL_SIZE, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
    )


class _Background(QObject):
    """Runs small blocking jobs (decoding a dropped photo) off the GUI thread; results come back as a signal."""

    done = Signal(object, object, object)  # callback, result, error

    def __init__(self) -> None:
        super().__init__()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llavacam-io")
        self._closed = False
        self.done.connect(lambda callback, result, error: callback(result, error))

    def run(self, fn: Any, callback: Any) -> None:
        if self._closed:
            return

        def job() -> None:
            try:
                self.done.emit(callback, fn(), None)
            except Exception as exc:
                self.done.emit(callback, None, exc)

        self._pool.submit(job)

    def shutdown(self) -> None:
        self._closed = True
        self._pool.shutdown(wait=True)  # pending history writes finish: nothing is lost


class MainWindow(QMainWindow):
    ask_requested = Signal(int, str, object, object, bool)  # id, question, image, sampling, regenerate
    prepare_requested = Signal(object)
    load_requested = Signal(str, str, object)
    new_chat_requested = Signal(str)
    history_requested = Signal(object, str)  # [PastTurn], system prompt
    turn_finished = Signal(int, object)  # request id, stats dict (None after an error): the bubble is complete

    def __init__(
        self,
        settings: Settings,
        data_dir: Path,
        camera_source: str | int | None = None,
        *,
        catalog: str | None = None,
        offer_setup: bool = False,
    ) -> None:
        super().__init__()
        from app.desktop.model_setup import startup_settings

        # No model installed: start on the built-in demo pair at once (its badge leads to a real model).
        settings = startup_settings(settings, data_dir, catalog)
        self.settings = settings
        self.data_dir = data_dir
        self.catalog = catalog
        self.setWindowTitle("LlavaCam")
        self.setAcceptDrops(True)
        self.resize(1180, 720)
        self._request_ids = itertools.count(1)
        self.active_request: int | None = None
        self.active_bubble: Bubble | None = None
        self.pinned: RGBImage | None = None
        self.pinned_ready = False
        self.conversation_image: str | None = None  # digest of the image the conversation is about
        self.model_ready = False
        self.last_question: tuple[str, RGBImage | None] | None = None
        self._background = _Background()
        self._closing = False
        self.history = HistoryStore(data_dir)
        # The stored chat: read and written only by the background writer, in order.
        self._chat: dict[str, Any] = {"id": None}
        self._answer: dict[str, Any] = {}
        self._build()
        if self.history.notice:
            self.show_notice(self.history.notice, kind="history")
        self._worker = WorkerThread()
        self._connect_worker()
        self.start_camera(camera_source if camera_source is not None else settings.camera)
        self.camera_panel.find_cameras()
        self.prompt_input.setFocus()
        if settings.has_model:
            self.load_model()
        else:
            self.show_notice("No model configured yet: choose one in File → Models…, or the files in Settings.",
                             kind="model")  # fmt: skip
            if offer_setup:
                QTimer.singleShot(0, self.open_models)

    # --- layout -----------------------------------------------------------------------------------------------

    def _build(self) -> None:
        self.camera_panel = CameraPanel(capture_shortcut=keys.CAPTURE.native)
        self.camera_panel.capture_requested.connect(self.capture)
        self.camera_panel.unpin_requested.connect(self.unpin)
        self.camera_panel.camera_chosen.connect(self.remember_camera)
        self.camera_panel.camera_failed.connect(lambda message: self.show_notice(message, kind="camera"))
        self.camera_panel.camera_recovered.connect(self._on_camera_recovered)
        self.camera_view = self.camera_panel.preview
        self.camera_picker = self.camera_panel.camera_picker
        self.capture_button = self.camera_panel.capture_button
        self.unpin_button = self.camera_panel.unpin_button
        self.pinned_badge = self.camera_panel.pinned_badge
        left = self.camera_panel

        right = QWidget()
        right_layout = QVBoxLayout(right)
        self.demo_badge = DemoBadge()
        self.demo_badge.get_model.connect(self.open_models)
        right_layout.addWidget(self.demo_badge)
        self.notice = NoticeArea()
        right_layout.addWidget(self.notice)
        self.chat_view = ChatView()
        right_layout.addWidget(self.chat_view, 1)
        self.prompt_input = QuestionBox()
        self.prompt_input.image_pasted.connect(lambda mime: self.accept_mime(mime, source="clipboard"))
        self.prompt_input.setPlaceholderText("Ask about the frame… (Enter sends, Shift+Enter for a new line)")
        self.prompt_input.setMaximumHeight(90)
        self.prompt_input.submitted.connect(self.send)
        right_layout.addWidget(self.prompt_input)
        buttons = QHBoxLayout()
        self.new_chat_button = self._button("New chat", "newChatButton", "New chat", self.new_chat, keys.NEW_CHAT)
        self.regenerate_button = self._button("Regenerate", "regenerateButton", "Regenerate answer", self.regenerate,
                                              keys.REGENERATE)  # fmt: skip
        self.stop_button = self._button("Stop", "stopButton", "Stop answer", self.stop, keys.STOP)
        self.send_button = self._button("Send", "sendButton", "Send question", self.send, keys.SEND)
        for button in (self.new_chat_button, self.regenerate_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.send_button)
        right_layout.addLayout(buttons)

        self.history_panel = HistoryPanel(self.history)
        self.history_panel.open_requested.connect(self.open_chat)
        self.history_panel.deleted.connect(self._chat_deleted)
        self.history_panel.message.connect(lambda text: self.show_notice(text, kind="history"))
        splitter = QSplitter()
        splitter.addWidget(self.history_panel)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setStretchFactor(2, 1)
        splitter.setSizes([200, 460, 520])
        self.setCentralWidget(splitter)
        self.status_label = DescribedLabel("Status", "Starting…")
        self.status_label.setObjectName("statusLabel")
        self.statusBar().addWidget(self.status_label, 1)
        self._build_actions()
        self._update_buttons()
        self._pending_text: list[str] = []
        self._render_timer = QTimer(self)
        self._render_timer.setSingleShot(True)
        self._render_timer.setInterval(50)  # 20 updates a second reads as smooth streaming
        self._render_timer.timeout.connect(self._render_pending)

    def _button(self, text: str, name: str, accessible: str, slot: Any, shortcut: keys.Shortcut) -> QPushButton:
        button = QPushButton(text)
        button.setObjectName(name)
        button.setAccessibleName(accessible)
        button.setToolTip(keys.with_keys(shortcut.what, shortcut))
        button.clicked.connect(slot)
        return button

    def _action(self, menu: Any, text: str, shortcut: keys.Shortcut | None, slot: Any) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut.keys))
            action.setToolTip(keys.with_keys(shortcut.what, shortcut))
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_actions(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self._action(file_menu, "&Open image…", keys.OPEN_IMAGE, self.open_image)
        paste = self._action(file_menu, "&Paste image", keys.PASTE_IMAGE, self.paste_image)
        # Ctrl+V pastes into the question box when it has focus (an image there pins it, text is typed), and an
        # image everywhere else.
        paste.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.camera_panel.addAction(paste)
        self.chat_view.addAction(paste)
        file_menu.addSeparator()
        self._action(file_menu, "&Models…", keys.MODELS, self.open_models)
        self._action(file_menu, "&Settings…", keys.SETTINGS, self.open_settings)
        self._action(file_menu, "&Watch…", keys.WATCH, self.ask_watch)
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", keys.QUIT, self.close)
        chat_menu = self.menuBar().addMenu("&Chat")
        self._action(chat_menu, "&New chat", keys.NEW_CHAT, self.new_chat)
        self._action(chat_menu, "&Capture frame", keys.CAPTURE, self.capture)
        self._action(chat_menu, "&Unpin frame", keys.UNPIN, self.unpin)
        self._action(chat_menu, "&Regenerate answer", keys.REGENERATE, self.regenerate)
        self._action(chat_menu, "&Stop answer", keys.STOP, self.stop)
        self._action(chat_menu, "Copy &last answer", keys.COPY_ANSWER, self.copy_last_answer)
        self._action(chat_menu, "Go to the &question", keys.FOCUS_QUESTION, self.prompt_input.setFocus)
        help_menu = self.menuBar().addMenu("&Help")
        self._action(help_menu, "&Keyboard shortcuts", keys.SHORTCUTS, self.show_shortcuts)
        self._action(help_menu, "&About LlavaCam", None, self.show_about)

    def show_shortcuts(self) -> None:
        keys.ShortcutsDialog(self).open()

    def show_about(self) -> None:
        from PySide6.QtWidgets import QMessageBox

        from app import __version__

        QMessageBox.about(self, "About LlavaCam",
                          f"<b>LlavaCam {__version__}</b><p>Ask questions about what your camera sees. The model "
                          "runs on this computer (llama.cpp): frames and chats stay here.</p>"
                          f"<p>Chats and models are kept in {self.data_dir}.</p>")  # fmt: skip

    def copy_last_answer(self) -> None:
        answers = [b for b in self.chat_view.bubbles if b.role == "assistant"]
        if answers:
            answers[-1].copy_text()
            self.set_status("Copied the last answer")

    # --- worker ---------------------------------------------------------------------------------------------

    def _connect_worker(self) -> None:
        worker = self._worker.worker
        self.ask_requested.connect(worker.ask)
        self.prepare_requested.connect(worker.prepare)
        self.load_requested.connect(worker.load_model)
        self.new_chat_requested.connect(worker.new_chat)
        self.history_requested.connect(worker.set_history)
        worker.token.connect(self._on_token)
        worker.finished.connect(self._on_finished)
        worker.error.connect(self._on_error)
        worker.status.connect(self.set_status)
        worker.model_loaded.connect(self._on_model_loaded)
        worker.model_failed.connect(self._on_model_failed)
        worker.prepared.connect(self._on_prepared)

    @property
    def worker(self) -> Any:
        return self._worker.worker

    def load_model(self) -> None:
        self.model_ready = False
        self._update_buttons()
        s = self.settings
        options = {
            "n_ctx": s.n_ctx,
            "threads": s.threads,
            "gpu_layers": s.gpu_layers,
            "template": "" if s.template == "auto" else s.template,
            "system_prompt": s.system_prompt,
            "data_dir": str(self.data_dir),  # where the probe remembers pairs known good
        }
        self.set_status("Loading the model…")
        self.demo_badge.show_for(s.model_path)  # at once: the demo's first load may take a few seconds
        self.load_requested.emit(s.model_path, s.mmproj_path, options)

    def _on_model_loaded(self, info: dict) -> None:
        self.model_ready = True
        self.demo_badge.show_for(info.get("text_path", ""))
        vision = "" if info["has_vision"] else " (text only: no mmproj)"
        self.set_status(f"Ready: {info['name']} · template {info['template']}{vision}")
        refused = info.get("refused")
        if refused:
            # Say what is wrong with the new files and that the working model is back; Settings point at it again,
            # so the next start does not try the refused files.
            self.show_notice(f"The new model files were not used: {refused}. {info['name']} is still loaded.",
                             settings=True, kind="model")  # fmt: skip
            self.settings = replace(self.settings, model_path=info["text_path"], mmproj_path=info["mmproj_path"])
            try:
                save_settings(self.data_dir, self.settings)
            except OSError as exc:
                self.show_notice(f"Settings could not be saved: {exc}")
        else:
            self.hide_notice("model")
        self._update_buttons()
        if self.pinned is not None:
            self._prepare(self.pinned)

    def _on_model_failed(self, message: str) -> None:
        self.model_ready = False
        self.show_notice(message, settings=True, kind="model")
        self.set_status("No model loaded")
        self._update_buttons()

    # --- camera and pinned frame ----------------------------------------------------------------------------

    @property
    def camera(self) -> CameraSource | None:
        return self.camera_panel.camera

    def start_camera(self, source: str | int | None) -> None:
        self.camera_panel.start_camera(source)

    def remember_camera(self, source: str) -> None:
        """The user chose a camera in the drop-down: remember it (Settings shows it too)."""
        self.settings = replace(self.settings, camera=source)
        try:
            save_settings(self.data_dir, self.settings)
        except OSError as exc:
            self.show_notice(f"Settings could not be saved: {exc}")

    def _on_camera_recovered(self) -> None:
        self.hide_notice("camera")
        self.set_status("Camera on")

    def capture(self) -> None:
        frame = self.camera.newest() if self.camera is not None else None
        if frame is None:
            self.show_notice("No camera frame to capture: open, paste or drop an image instead.")
            return
        self.pin(load_image(frame))

    def pin(self, image: RGBImage) -> None:
        self.pinned = image
        self.pinned_ready = False
        self.camera_panel.show_pinned(image, "● pinned · encoding…" if self.model_ready else "● pinned")
        self._prepare(image)

    def _prepare(self, image: RGBImage) -> None:
        if self.model_ready and image.digest != self.conversation_image:
            self.prepare_requested.emit(image)
        elif image.digest == self.conversation_image:
            self._on_prepared(image.digest, True)

    def _on_prepared(self, digest: str, ok: bool) -> None:
        if self.pinned is None or self.pinned.digest != digest:
            return
        self.pinned_ready = ok
        # Not prepared (abandoned, no vision, no room): the frame is still pinned and asked about, just not early.
        self.camera_panel.set_badge("● pinned · ready" if ok else "● pinned")

    def unpin(self) -> None:
        self.pinned = None
        self.pinned_ready = False
        self.camera_panel.show_live()

    # --- images from files, the clipboard and drops ---------------------------------------------------------

    def open_image(self) -> None:
        filters = "Images (*.png *.jpg *.jpeg *.bmp *.webp *.gif *.tif *.tiff);;All files (*)"
        path, _ = QFileDialog.getOpenFileName(self, "Open image", "", filters)
        if path:
            self.load_image_file(path)

    def load_image_file(self, path: str) -> None:
        self.set_status(f"Opening {Path(path).name}…")
        self._background.run(lambda: load_image(path), self._on_image_loaded)

    def paste_image(self) -> None:
        mime = QApplication.clipboard().mimeData()
        self.accept_mime(mime, source="clipboard")

    def accept_mime(self, mime: Any, source: str) -> bool:
        """Take an image from a drop or the clipboard; say clearly when it is not one."""
        if mime is None:
            return False
        if mime.hasImage():
            pasted = QImage(mime.imageData())
            try:  # the same pixel cap as opened files, the CLI and the server
                check_pixels(pasted.width(), pasted.height(), f"the {source}'s image")
            except ImageError as exc:
                self.show_notice(str(exc))
                return True
            qimage = pasted.convertToFormat(QImage.Format.Format_RGB888)
            if not qimage.isNull():
                self.pin(_rgb_from_qimage(qimage))
                return True
        if mime.hasUrls():
            local = [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]
            if local:
                self.load_image_file(local[0])
                return True
        self.show_notice(f"Nothing to use from the {source}: it holds no image.")
        return False

    def _on_image_loaded(self, image: RGBImage | None, error: Exception | None) -> None:
        if error is not None:
            message = str(error) if isinstance(error, ImageError) else f"Could not open the image: {error}"
            self.show_notice(message)
            self.set_status("Image not opened")
            return
        assert image is not None
        self.hide_notice()
        self.set_status(f"Pinned {Path(image.source).name or 'image'}")
        self.pin(image)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if event.mimeData().hasUrls() or event.mimeData().hasImage():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        if self.accept_mime(event.mimeData(), source="drop"):
            event.acceptProposedAction()

    # --- asking -------------------------------------------------------------------------------------------------

    def send(self) -> None:
        question = self.prompt_input.toPlainText().strip()
        if not question:
            return
        if self.active_request is not None:
            self.set_status("An answer is still coming: wait for it or press Stop (Esc).")
            return
        if not self.model_ready:
            self.show_notice("The model is not loaded yet: choose one in Settings or wait for it to load.",
                             settings=True, kind="model")  # fmt: skip
            return
        if self.pinned is None and self.camera is not None and self.camera.newest() is not None:
            self.capture()  # nothing pinned: the live frame at this moment is the one asked about
        image = self.pinned
        self.prompt_input.clear()
        self._start_turn(question, image, regenerate=False)

    def _start_turn(self, question: str, image: RGBImage | None, *, regenerate: bool) -> None:
        request_id = next(self._request_ids)
        self.active_request = request_id
        self.last_question = (question, image)
        if not regenerate:
            self.chat_view.add(Bubble("user", question, thumbnail(image) if image is not None else None))
        engine = f"{Path(self.settings.model_path).stem} · this computer"
        self.active_bubble = self.chat_view.add(Bubble("assistant", engine=engine))
        # The same picture as the conversation's: a follow-up (no image), so the cached encoding is reused.
        new_image = image if image is not None and image.digest != self.conversation_image else None
        if image is not None:
            self.conversation_image = image.digest
        if self.windowTitle() == "LlavaCam":
            self.setWindowTitle(f"LlavaCam — {question[:60]}")
        self.set_status("Generating…")
        self._update_buttons()
        self._record_question(question, image if not regenerate else None, regenerate)
        self.ask_requested.emit(request_id, question, new_image, self.settings.sampling(), regenerate)

    def regenerate(self) -> None:
        if self.active_request is not None or self.last_question is None or not self.chat_view.bubbles:
            return
        last = self.chat_view.bubbles[-1]
        if last.role == "assistant":
            self.chat_view.bubbles.pop()
            last.setParent(None)
            last.deleteLater()
        question, image = self.last_question
        self._start_turn(question, image, regenerate=True)

    def stop(self) -> None:
        if self.active_request is not None:
            self.worker.cancel(self.active_request)
            self.set_status("Stopping…")

    # --- history: every write runs on the background writer, in order, off the GUI thread -----------------------

    def _record_question(self, question: str, image: RGBImage | None, regenerate: bool) -> None:
        chat, store = self._chat, self.history
        answer: dict[str, Any] = {"writer": None}
        self._answer = answer
        model = self.settings.model_path.rsplit("/", 1)[-1] or None
        sampling = self.settings.sampling().to_dict()

        def record() -> None:
            if chat["id"] is None:
                chat["id"] = store.create_chat(model_id=model)
            if not regenerate:
                frame = store.save_image(image, source=self.camera_name(image)) if image is not None else None
                store.add_user_message(chat["id"], question, frame)
            answer["writer"] = store.begin_answer(chat["id"], model, sampling, new_version=regenerate)

        self._history_job(record)

    def camera_name(self, image: RGBImage) -> str:
        if image.source == "frame" and self.camera is not None:
            return self.camera.name
        return Path(image.source).name if image.source else "image"

    def _history_job(self, fn: Any, refresh: bool = True) -> None:
        def done(_result: Any, error: Exception | None) -> None:
            if self._closing:
                return
            if isinstance(error, LlavaCamError):
                self.show_notice(str(error), kind="history")
            elif error is not None:
                self.show_notice(f"The chat could not be saved: {error}", kind="history")
            if refresh:
                self.history_panel.open_chat_id = self._chat["id"]  # set by the writer once the chat exists
                self.history_panel.refresh()

        if not self.history.read_only:
            self._background.run(fn, done)

    def _record_piece(self, piece: str) -> None:
        answer = self._answer
        self._history_job(lambda: answer["writer"] and answer["writer"].append(piece), refresh=False)

    def _record_end(self, status: str, stats: dict | None) -> None:
        answer = self._answer
        self._history_job(lambda: answer["writer"] and answer["writer"].finish(status, stats))

    def open_chat(self, chat_id: int) -> None:
        """Show a stored chat and continue it: the engine rebuilds its context from the stored turns."""
        if self.active_request is not None:
            self.set_status("Stop the current answer before opening another chat.")
            return
        chat = self.history.get_chat(chat_id)
        self.chat_view.clear()
        for message in chat.messages:
            if not message.chosen:
                continue  # a regenerated-away version (the session model will offer ‹ 1/2 ›)
            if message.role == "user":
                picture = None
                if message.image is not None and message.image.path.exists():
                    picture = QPixmap(str(message.image.path)).scaled(
                        THUMBNAIL_SIZE, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
                    )
                self.chat_view.add(Bubble("user", message.text, picture))
            else:
                bubble = self.chat_view.add(Bubble("assistant", message.text))
                bubble.finish({**(message.timings or {}), "finish_reason": "cancelled"
                               if message.status in ("stopped", "incomplete") else "stop"})  # fmt: skip
        self._chat = {"id": chat_id}
        self.history_panel.set_open_chat(chat_id)
        self.setWindowTitle(f"LlavaCam — {chat.title}")
        turns = self.history.get_turns(chat_id)
        questions = [m for m in chat.messages if m.role == "user"]
        self.last_question = (questions[-1].text, None) if questions else None

        def load() -> tuple[list[PastTurn], RGBImage | None]:
            past = []
            latest = None
            for turn in turns:
                picture = load_image(turn.image_path) if turn.image_path and turn.image_path.exists() else None
                latest = picture or latest
                past.append(PastTurn(turn.question, turn.answer, picture))
            return past, latest

        def loaded(result: Any, error: Exception | None) -> None:
            if error is not None:
                self.show_notice(f"The chat's frames could not be read: {error}", kind="history")
                return
            past, latest = result
            self.history_requested.emit(past, self.settings.system_prompt)
            self.conversation_image = latest.digest if latest is not None else None
            if latest is not None:
                self.pin(latest)
            self.set_status(f"Opened “{chat.title}”: ask to continue it")

        self._background.run(load, loaded)
        self._update_buttons()

    def _on_token(self, request_id: int, piece: str) -> None:
        if request_id != self.active_request or self.active_bubble is None:
            return  # a late token of a stopped request
        self._record_piece(piece)
        # Coalesce: re-rendering the Markdown bubble per token would keep the GUI thread (and the GIL) busy.
        self._pending_text.append(piece)
        if not self._render_timer.isActive():
            self._render_timer.start()

    def _render_pending(self) -> None:
        if self._pending_text and self.active_bubble is not None:
            self.active_bubble.append("".join(self._pending_text))  # the chat follows it unless scrolled up
        self._pending_text.clear()

    def _on_finished(self, request_id: int, stats: dict) -> None:
        if request_id != self.active_request or self.active_bubble is None:
            return
        self._render_pending()
        self.active_bubble.finish(stats)
        self._record_end("stopped" if stats.get("finish_reason") == "cancelled" else "complete", stats)
        self._end_turn("Stopped" if stats.get("finish_reason") == "cancelled" else "Ready", stats)

    def _on_error(self, request_id: int, message: str) -> None:
        if request_id != self.active_request or self.active_bubble is None:
            return
        self._render_pending()
        self.active_bubble.fail(message)
        self._record_end("error", None)
        self._end_turn("Error: " + message, None)

    def _end_turn(self, status: str, stats: dict | None) -> None:
        request_id = self.active_request
        self.active_request = None
        self.active_bubble = None
        self.set_status(status)
        self._update_buttons()
        self.turn_finished.emit(request_id, stats)

    def new_chat(self) -> None:
        if self.active_request is not None:
            # The answer so far stays in the chat it belongs to, marked stopped (its late tokens are dropped).
            self.stop()
            self._record_end("stopped", None)
        self.active_request = None
        self.active_bubble = None
        self.chat_view.clear()
        self.conversation_image = None
        self.last_question = None
        self._chat = {"id": None}
        self.history_panel.set_open_chat(None)
        self.setWindowTitle("LlavaCam")
        self.new_chat_requested.emit(self.settings.system_prompt)
        if self.pinned is not None:
            self._prepare(self.pinned)
        self.set_status("New chat")
        self._update_buttons()

    def _chat_deleted(self, chat_id: int) -> None:
        """A deleted chat must not stay on screen taking questions that would be stored in it, unseen."""
        if chat_id == self._chat["id"]:
            self.new_chat()
            self.set_status("The chat on screen was deleted (Undo brings it back): this is a new chat")

    def _update_buttons(self) -> None:
        busy = self.active_request is not None
        self.send_button.setEnabled(not busy)
        self.stop_button.setEnabled(busy)
        self.regenerate_button.setEnabled(not busy and self.last_question is not None)

    # --- settings, notices, status, closing ------------------------------------------------------------------

    def open_settings(self) -> None:
        from app.desktop.settings_dialog import SettingsDialog

        dialog = SettingsDialog(self.settings, self)
        if dialog.exec():
            before = (self.settings.model_path, self.settings.mmproj_path, self.settings.n_ctx,
                      self.settings.threads, self.settings.gpu_layers, self.settings.template)  # fmt: skip
            self.apply_settings(dialog.result_settings(), reload=before)

    def model_dialog(self) -> Any:
        from app.core.models.store import ModelStore
        from app.desktop.model_setup import ModelSetupDialog

        dialog = ModelSetupDialog(ModelStore(self.data_dir, self.catalog), self)
        dialog.chosen.connect(self.use_model)
        return dialog

    def open_models(self) -> None:
        self.model_dialog().open()

    def use_model(self, model: Any) -> None:
        """Switch to an installed pair (from the model dialog) and load it."""
        mmproj = str(model.mmproj) if model.mmproj else ""
        template = model.template or "auto"
        self.apply_settings(replace(self.settings, model_path=str(model.text), mmproj_path=mmproj, template=template))

    def apply_settings(self, settings: Settings, reload: tuple | None = None) -> None:
        camera_before = self.settings.camera
        self.settings = settings
        try:
            save_settings(self.data_dir, settings)
        except OSError as exc:
            self.show_notice(f"Settings could not be saved: {exc}")
        after = (settings.model_path, settings.mmproj_path, settings.n_ctx, settings.threads,
                 settings.gpu_layers, settings.template)  # fmt: skip
        if reload is None or reload != after:
            self.conversation_image = None
            self.load_model()
        # Only a camera changed in Settings switches it: saving other settings or choosing model files keeps the
        # camera on screen (which may be one picked in the drop-down or given with --camera).
        if camera_setting(settings.camera) != camera_setting(camera_before):
            self.start_camera(settings.camera)

    def show_notice(self, message: str, settings: bool = False, kind: str = "info") -> None:
        """Queue a notice (one per kind, the newest shown); `settings`: with an "Open Settings" button."""
        if settings:
            self.notice.show_notice(kind, message, action="Open Settings", on_action=self.open_settings)
        else:
            self.notice.show_notice(kind, message)

    def hide_notice(self, kind: str = "info") -> None:
        """The cause of `kind`'s notice is gone (a loaded model does not hide a camera problem)."""
        self.notice.clear(kind)

    def set_status(self, text: str) -> None:
        self.status_label.setText(text)

    def ask_watch(self) -> None:
        """File → Watch…: a standing question (or "Tell me when …") about the live camera."""
        from PySide6.QtWidgets import QInputDialog

        text, ok = QInputDialog.getText(self, "Watch", "Question, or “Tell me when …”:")
        if ok and text.strip():
            self.start_watch(text.strip())

    def start_watch(self, text: str) -> None:
        """Watch the camera in a Watch panel (one at a time), asking the engine aside from the chat."""
        from PySide6.QtWidgets import QDockWidget

        from app.core.watch import Condition, EngineAnswerer, Watcher
        from app.core.watch.record import WatchRecorder
        from app.desktop.watch_panel import CameraFrames, DBusNotifier, TrayNotifier, WatchPanel, WatchRunner

        engine = self.worker.engine
        if engine is None or self.camera is None:
            self.show_notice("Watching needs a model and a camera: choose them in File → Models… and Settings.")
            return
        self.stop_watch()
        is_condition = text.lower().startswith(("tell me when", "let me know when", "notify me when"))
        answer: Any = EngineAnswerer(engine)
        recorder = None
        if not self.history.read_only:  # the watch is a chat with its timestamped frames (written on its thread)
            recorder = WatchRecorder(self.history, f"Watch: {text}", source=self.camera.name)
            answer = recorder.remembering(answer)
        watcher = Watcher(answer, None if is_condition else text, condition=Condition(text) if is_condition else None,
                          on_event=recorder.on_event if recorder is not None else None)  # fmt: skip
        stop = threading.Event()
        runner = WatchRunner(watcher, CameraFrames(self.camera, stop), self)
        runner.source.stop = stop
        panel = WatchPanel()
        panel.attach(runner, [TrayNotifier(self), DBusNotifier()])
        dock = QDockWidget("Watch", self)
        dock.setObjectName("watchDock")
        dock.setWidget(panel)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        self.watch_panel = panel
        runner.start()

    def stop_watch(self) -> str:
        panel = getattr(self, "watch_panel", None)
        return panel.stop() if panel is not None else ""

    def shutdown(self) -> None:
        """Cancel the answer, stop the camera and the worker thread, and wait for them."""
        if self._closing:
            return
        stopped = self.stop_watch()  # closing the window stops the watch
        if stopped:
            self.statusBar().showMessage(stopped)
        self.worker.cancel()
        self.camera_panel.stop()
        self._worker.stop()
        # Deliver the worker's last queued signals (the stopped answer), so the history records them.
        QApplication.processEvents()
        self._closing = True
        self.history_panel.shutdown()  # its reads stop, its writes (a rename, a delete) finish before the close
        self._background.shutdown()
        self.history.close()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        self.shutdown()
        event.accept()


def _rgb_from_qimage(qimage: QImage) -> RGBImage:
    width, height = qimage.width(), qimage.height()
    stride = qimage.bytesPerLine()
    raw = bytes(qimage.constBits())[: stride * height]
    rows = b"".join(raw[y * stride : y * stride + width * 3] for y in range(height))
    return RGBImage(width, height, rows, source="clipboard")
