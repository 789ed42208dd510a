"""The main window: it composes the parts and routes between them, and decides nothing itself.

    chat list (history_panel.py) │ camera panel (camera_panel.py) │ chat view (chat_view.py) + question box
                                                                      (question_box.py)
    Records dock (records_panel.py over records_model.py), filled by the Extract menu (extraction.py)
The conversation lives in a `ChatSession` that the session binding (session_binding.py) shows and drives with
asyncio tasks on qasync's loop — the GUI thread. The model is a `ModelHost` (model_host.py): loads are awaitables
that closing aborts, and the engine's own inference thread is the only code that touches llama.cpp; its answers
come back through `Turn.stream()`. Camera frames are read on the camera's thread; image files, history, settings
and the window's layout file are read and written in the loop's executor. Menus and shortcuts: shortcuts.py.

Closing is asynchronous and deterministic: the window hides at once, then the answer is stopped and stored, a load
is aborted, the engine's thread, the camera and the executor are joined, and `closed` is emitted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QFontMetrics,
    QKeySequence,
    QPainter,
    QPaintEvent,
)
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QMainWindow,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.core.errors import ImageError, LoadCancelled
from app.core.extract.schemas import PRESETS
from app.core.history.store import HistoryStore
from app.core.inference.answerer import TurnStats
from app.core.inference.engine import Engine
from app.core.inference.images import RGBImage, load_image
from app.desktop import shortcuts as keys
from app.desktop.accessible import DescribedLabel
from app.desktop.camera import CameraSource, camera_setting
from app.desktop.camera_panel import CameraPanel
from app.desktop.chat_view import ChatView
from app.desktop.demo_badge import DemoBadge
from app.desktop.extraction import WindowExtraction
from app.desktop.history_panel import HistoryPanel
from app.desktop.image_intake import IMAGE_FILTER, picture_in
from app.desktop.model_host import LoadOutcome, ModelHost
from app.desktop.model_setup import startup_settings
from app.desktop.notices import NoticeArea
from app.desktop.question_box import QuestionBox
from app.desktop.records_panel import RecordsPanel
from app.desktop.session_binding import SessionBinding
from app.desktop.settings import LOCAL_ENGINE, Settings, engine_key, save_settings

LAYOUT_FILE = "window.json"  # the window's size and splitter positions, in the data dir
MINIMUM_SIZE = (800, 600)


class StatusLine(DescribedLabel):
    """The status line: a one-line label that elides what does not fit (its full text stays its text, its tooltip
    and its accessible description): a long status must never make the window wider."""

    def __init__(self, text: str = "") -> None:
        super().__init__("Status", text)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(40)

    def setText(self, text: str) -> None:  # noqa: N802 (Qt's name)
        super().setText(text)
        self.setToolTip(text)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        painter = QPainter(self)
        metrics = QFontMetrics(self.font())
        shown = metrics.elidedText(self.text(), Qt.TextElideMode.ElideRight, self.contentsRect().width())
        painter.drawText(self.contentsRect(), int(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft), shown)
        painter.end()


class SceneReads(QObject):
    """A watched scene's records, from the watch's thread to the GUI thread (a queued signal)."""

    read = Signal(object)  # app.core.extract.scene.SceneRead


class MainWindow(QMainWindow):
    turn_finished = Signal(int, object)  # request number, its TurnStats (None after an error): the bubble is complete
    model_changed = Signal(bool)  # a load ended: whether a model is ready
    closed = Signal()  # everything is stopped and joined

    def __init__(
        self,
        settings: Settings,
        data_dir: Path,
        camera_source: str | int | None = None,
        *,
        catalog: str | None = None,
        offer_setup: bool = False,
        history: HistoryStore | None = None,
    ) -> None:
        """`history`: the data dir's store, already opened (`open_window` opens it off the GUI thread); the window
        closes it at shutdown."""
        super().__init__()
        # No model installed: start on the built-in demo pair at once (its badge leads to a real model).
        settings = startup_settings(settings, data_dir, catalog)
        self.settings = settings
        self.data_dir = data_dir
        self.catalog = catalog
        self.setWindowTitle("LlavaCam")
        self.setAcceptDrops(True)
        self.model_ready = False
        self.is_closed = False
        self._closing: asyncio.Task[None] | None = None
        self._settings_written = asyncio.Lock()
        self.history = history if history is not None else HistoryStore(data_dir)
        self.model_host = ModelHost()
        self._build()
        self.binding = SessionBinding(
            self.model_host, self.history, self.chat_view, self.camera_panel, set_status=self.set_status,
            show_notice=self.show_notice, system_prompt=settings.system_prompt or None,
            model_id=Path(settings.model_path).name or None,
        )  # fmt: skip
        self.binding.turn_finished.connect(self._turn_finished)
        self.binding.session.subscribe(self._on_session_event)
        self.tasks = self.binding.tasks
        self._build_records()
        self._restore_layout()
        if self.history.notice:
            self.show_notice(self.history.notice, kind="history")
        self.start_camera(camera_source if camera_source is not None else settings.camera)
        self.tasks.spawn(self.camera_panel.find_cameras())
        self.prompt_input.setFocus()
        self._update_buttons()
        if settings.can_answer:
            self.load_model()
        else:
            self.set_status("No model loaded")
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

        right = QWidget()
        right.setObjectName("chatPanel")
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        self.demo_badge = DemoBadge()
        self.demo_badge.get_model.connect(self.open_models)
        right_layout.addWidget(self.demo_badge)
        self.notice = NoticeArea()
        right_layout.addWidget(self.notice)
        self.chat_view = ChatView()
        right_layout.addWidget(self.chat_view, 1)
        self.prompt_input = QuestionBox()
        self.prompt_input.image_pasted.connect(lambda mime: self.accept_mime(mime, source="clipboard"))
        self.prompt_input.typing_started.connect(self._typing_started)
        self.prompt_input.setPlaceholderText("Ask about the frame… (Enter sends, Shift+Enter: new line)")
        self.prompt_input.setMaximumHeight(90)
        self.prompt_input.submitted.connect(self.send)
        right_layout.addWidget(self.prompt_input)
        buttons = QHBoxLayout()
        self.new_chat_button = self._button("New chat", "newChatButton", "New chat", self.new_chat, keys.NEW_CHAT)
        self.regenerate_button = self._button("Regenerate", "regenerateButton", "Regenerate answer", self.regenerate,
                                              keys.REGENERATE)  # fmt: skip
        self.stop_button = self._button("Stop", "stopButton", "Stop answer", self.stop, keys.STOP)
        self.send_button = self._button("Send", "sendButton", "Send question", self.send, keys.SEND)
        self.extract_button = QPushButton("Extract")
        self.extract_button.setObjectName("extractButton")
        self.extract_button.setAccessibleName("Extract records from the frame")
        self.extract_button.setToolTip("Read to-dos, an expense or a contact from the pinned (or live) frame")
        for button in (self.new_chat_button, self.regenerate_button, self.extract_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.send_button)
        right_layout.addLayout(buttons)

        self.history_panel = HistoryPanel(self.history)
        self.history_panel.open_requested.connect(self.open_chat)
        self.history_panel.deleted.connect(self._chat_deleted)
        self.history_panel.message.connect(lambda text: self.show_notice(text, kind="history"))
        self.splitter = QSplitter()
        self.splitter.setObjectName("mainSplitter")
        self.splitter.setChildrenCollapsible(False)
        self.splitter.addWidget(self.history_panel)
        self.splitter.addWidget(self.camera_panel)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setStretchFactor(2, 2)
        self.splitter.setSizes([220, 420, 540])
        self.setCentralWidget(self.splitter)
        self.status_label = StatusLine("Starting…")
        self.status_label.setObjectName("statusLabel")
        self.statusBar().addWidget(self.status_label, 1)
        self._build_actions()
        self.setMinimumSize(*MINIMUM_SIZE)
        self.resize(1180, 720)

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
        self._build_extract_menu()
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

    def _build_extract_menu(self) -> None:
        menu = self.menuBar().addMenu("E&xtract")
        self.extract_menu = menu
        for name, text in (("todo", "&To-do"), ("expense", "&Expense"), ("contact", "&Contact")):
            shortcut = keys.EXTRACT_TODO if name == "todo" else None
            self._action(menu, text, shortcut, lambda _checked=False, preset=PRESETS[name]: self.extract(preset))
        self._action(menu, "Your own &schema…", None, lambda: self.extraction.extract_own_schema())
        menu.addSeparator()
        fill = menu.addMenu("&Watch and fill a list")
        for name in ("todo", "expense", "contact"):
            self._action(fill, PRESETS[name].label, None,
                         lambda _checked=False, preset=PRESETS[name]: self.watch_and_fill(preset))  # fmt: skip
        menu.addSeparator()
        self.extract_button.setMenu(menu)

    def _build_records(self) -> None:
        """The Records dock (hidden until records are read, or Extract → Records)."""
        self.extraction = WindowExtraction(self)
        self._scene_reads = SceneReads(self)
        self._scene_reads.read.connect(self._on_scene_read)
        self.records_panel = RecordsPanel(self.history, self.tasks.spawn)
        self.records_panel.message.connect(self.set_status)
        self.records_panel.problem.connect(lambda text: self.show_notice(text, kind="records"))
        self.records_panel.deleted.connect(self._records_deleted)
        self.records_dock = QDockWidget("Records", self)
        self.records_dock.setObjectName("recordsDock")
        self.records_dock.setWidget(self.records_panel)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.records_dock)
        self.records_dock.hide()
        toggle = self.records_dock.toggleViewAction()
        toggle.setText("&Records")
        toggle.setShortcut(QKeySequence(keys.RECORDS.keys))
        toggle.setToolTip(keys.with_keys(keys.RECORDS.what, keys.RECORDS))
        self.extract_menu.addAction(toggle)

    def _records_deleted(self, records: list[Any]) -> None:
        count = "1 record" if len(records) == 1 else f"{len(records)} records"
        def undo() -> None:
            self.hide_notice("records")
            self.records_panel.restore(records)

        self.notice.show_notice("records", f"Deleted {count}.", action="Undo", on_action=undo)

    def extract(self, preset: Any, *, max_tokens: int | None = None) -> None:
        """Extract → a preset: the pinned frame (or the live one, frozen) read into records, shown in Records."""
        self.extraction.extract_preset(preset, max_tokens=max_tokens)

    def show_records(self, preset: Any = None) -> None:
        """Show the Records dock (on the kind just read, when `preset` is given)."""
        self.records_dock.show()
        self.records_dock.raise_()
        if preset is not None:
            self.records_panel.show_kind(preset.name, preset)
        else:
            self.records_panel.refresh()

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

    def _layout_path(self) -> Path:
        return self.data_dir / LAYOUT_FILE

    def _restore_layout(self) -> None:
        """The size and splitter positions the window had when it was last closed (a small file, read once)."""
        try:
            saved = json.loads(self._layout_path().read_text(encoding="utf-8"))
            width, height = int(saved["width"]), int(saved["height"])
            sizes = [int(size) for size in saved["splitter"]]
            maximized = bool(saved.get("maximized", False))
        except (OSError, ValueError, KeyError, TypeError):
            return  # none yet, or unreadable: the defaults
        self.resize(max(width, MINIMUM_SIZE[0]), max(height, MINIMUM_SIZE[1]))
        if len(sizes) == self.splitter.count() and all(size > 0 for size in sizes):
            self.splitter.setSizes(sizes)
        if maximized:
            self.setWindowState(self.windowState() | Qt.WindowState.WindowMaximized)

    def _layout(self) -> dict[str, Any]:
        size = self.normalGeometry().size() if self.isMaximized() else self.size()
        return {"width": size.width(), "height": size.height(), "maximized": self.isMaximized(),
                "splitter": self.splitter.sizes()}  # fmt: skip

    # --- the model -------------------------------------------------------------------------------------------

    @property
    def engine(self) -> Engine | None:
        """The loaded engine (the watch asks it aside from the chat)."""
        return self.model_host.engine

    def load_model(self) -> None:
        self.model_ready = False
        self.binding.stop()
        self._update_buttons()
        self.set_status("Loading the model…")
        self.demo_badge.show_for(self.settings.model_path)  # at once: the demo's first load may take a few seconds
        self.tasks.spawn(self._load_model())

    async def _load_model(self) -> None:
        s = self.settings
        if s.uses_server:
            await self._connect_server()
            return
        if not s.model_path:
            await self.model_host.unload()
            self._on_model_failed("No model configured: choose the model files in Settings (Ctrl+,).")
            return
        try:
            outcome = await self.model_host.load(s.model_path, s.mmproj_path, s.engine_config(),
                                                 data_dir=self.data_dir, on_status=self.set_status)  # fmt: skip
        except LoadCancelled:
            return  # closing, or another pair was chosen: that one reports
        await self._on_model_loaded(outcome)

    async def _on_model_loaded(self, outcome: LoadOutcome) -> None:
        info = outcome.info
        if info is None:
            self._on_model_failed(outcome.error or "The model could not be loaded.")
            return
        if outcome.refused:
            # Settings point at the working model again (saved before the model counts as ready), so the next
            # start does not try the refused files.
            self.settings = replace(self.settings, model_path=str(info.text_path),
                                    mmproj_path=str(info.mmproj_path or ""))  # fmt: skip
            await self._save_settings()
        # The engine starts empty: give it the conversation on screen and ask it to read the pinned frame before
        # the window says Ready. That reading pre-empts aside questions (the chat comes first), so an extraction or
        # watch check asked the moment Ready shows would otherwise be cancelled by it.
        session = self.binding.session
        await asyncio.wrap_future(self.model_host.set_history(session.past_turns(), session.system_prompt))
        self.binding.prepare_again()
        self.model_ready = True
        self.demo_badge.show_for(str(info.text_path))
        vision = "" if info.has_vision else " (text only: no mmproj)"
        self.set_status(f"Ready: {info.name} · template {info.template_family}{vision}")
        self.binding.session.model_id = info.text_path.name
        if outcome.refused:
            # Say what is wrong with the new files and that the working model is back.
            self.show_notice(f"The new model files were not used: {outcome.refused}. {info.name} is still loaded.",
                             settings=True, kind="model")  # fmt: skip
        else:
            self.hide_notice("model")
        self._update_buttons()
        self.model_changed.emit(True)

    async def _connect_server(self) -> None:
        """Settings → Engine → A server: connect off the GUI thread (its token, model and vision checked before any
        frame goes). A failure is a notice with a one-click way back, never a silent switch to this computer."""
        from app.core.engine_choice import EngineChoiceError, answerer_for, describe

        self.set_status(f"Connecting to {self.settings.server_url}…")
        try:
            answering = await asyncio.to_thread(answerer_for, self.settings, data_dir=self.data_dir)
        except EngineChoiceError as exc:
            await self.model_host.unload()  # the user chose where the frames go: this computer does not answer
            self.model_ready = False
            self._server_notice(exc)
            self.set_status("No engine: the server cannot answer")
            self._update_buttons()
            self.model_changed.emit(False)
            return
        await self.model_host.use_server(answering.answerer)
        session = self.binding.session  # the server's client holds the chat on screen before Ready shows
        await asyncio.wrap_future(self.model_host.set_history(session.past_turns(), session.system_prompt))
        self.model_ready = True
        self.demo_badge.show_for("")
        self.binding.session.model_id = answering.label
        self.set_status(f"Ready: {describe(answering)}")
        self.hide_notice("model")
        self._update_buttons()
        self.model_changed.emit(True)

    def _server_notice(self, problem: Exception) -> None:
        """The server cannot answer (connecting, or a question it failed): a notice saying what happened and what to
        do, worded by app.core.engine_choice for both, with the one click back to this computer."""
        self.notice.show_notice("model", str(problem), action="Use this computer", on_action=self.use_this_computer)

    def _answer_failed(self, failure: BaseException) -> None:
        """A server failed a question (it ignored the frame, its template cannot take one, it went away): the same
        notice as when connecting fails, the answer stays failed, and nothing switches to this computer by itself."""
        from app.core.engine_choice import choice_error
        from app.core.remote.protocol import RemoteError

        if isinstance(failure, RemoteError):
            self._server_notice(choice_error(failure))

    def use_this_computer(self) -> None:
        """The server notice's one click back: Settings → Engine → This computer, and its model loads."""
        self.apply_settings(replace(self.settings, engine=LOCAL_ENGINE))

    def _on_model_failed(self, message: str) -> None:
        self.model_ready = False
        self.show_notice(message, settings=True, kind="model")
        self.set_status("No model loaded")
        self._update_buttons()
        self.model_changed.emit(False)

    # --- camera and pinned frame ----------------------------------------------------------------------------

    @property
    def camera(self) -> CameraSource | None:
        return self.camera_panel.camera

    @property
    def pinned(self) -> RGBImage | None:
        return self.binding.pinned

    @property
    def pinned_ready(self) -> bool:
        return self.binding.pinned_ready

    @property
    def session(self) -> Any:
        return self.binding.session

    def start_camera(self, source: str | int | None) -> None:
        self.camera_panel.start_camera(source)

    def remember_camera(self, source: str) -> None:
        """The user chose a camera in the drop-down: remember it (Settings shows it too)."""
        self.settings = replace(self.settings, camera=source)
        self.tasks.spawn(self._save_settings())

    def _on_camera_recovered(self) -> None:
        self.hide_notice("camera")
        if not self.binding.busy and self.model_ready:
            self.set_status("Camera on")

    def capture(self) -> None:
        frame = self.camera_panel.newest_frame()
        if frame is None:
            self.show_notice("No camera frame to capture: open, paste or drop an image instead.")
            return
        self.pin(load_image(frame), self.camera_panel.source_name)

    def _typing_started(self) -> None:
        """The first keystroke of a question: freeze the live frame and start reading it while the rest is typed."""
        if self.binding.pinned is None and self.camera_panel.newest_frame() is not None:
            self.capture()

    def pin(self, image: RGBImage, source: str = "") -> None:
        self.binding.pin(image, source or (Path(image.source).name if image.source else "image"))

    def unpin(self) -> None:
        self.binding.unpin()

    # --- images from files, the clipboard and drops ---------------------------------------------------------

    def open_image(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open image", "", IMAGE_FILTER)
        if path:
            self.load_image_file(path)

    def load_image_file(self, path: str) -> None:
        self.set_status(f"Opening {Path(path).name}…")
        self.tasks.spawn(self._load_image_file(path))

    async def _load_image_file(self, path: str) -> None:
        try:
            image = await asyncio.to_thread(load_image, path)
        except ImageError as exc:
            self.show_notice(str(exc))
            self.set_status("Image not opened")
            return
        except Exception as exc:
            self.show_notice(f"Could not open the image: {exc}")
            self.set_status("Image not opened")
            return
        self.hide_notice()
        self.set_status(f"Pinned {Path(path).name}")
        self.pin(image, Path(path).name)

    def paste_image(self) -> None:
        self.accept_mime(QApplication.clipboard().mimeData(), source="clipboard")

    def accept_mime(self, mime: Any, source: str) -> bool:
        """Take an image from a drop or the clipboard; say clearly when it is not one."""
        try:
            found = picture_in(mime, source)
        except ImageError as exc:
            self.show_notice(str(exc))
            return True
        if isinstance(found, RGBImage):
            self.pin(found, source)
            return True
        if isinstance(found, str):
            self.load_image_file(found)
            return True
        if mime is not None:
            self.show_notice(f"Nothing to use from the {source}: it holds no image.")
        return False

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
        if self.binding.busy:
            self.set_status("An answer is still coming: wait for it or press Stop (Esc).")
            return
        if not self.model_ready:
            self.show_notice("The model is not loaded yet: choose one in Settings or wait for it to load.",
                             settings=True, kind="model")  # fmt: skip
            return
        if self.binding.pinned is None and self.camera_panel.newest_frame() is not None:
            self.capture()  # nothing pinned: the live frame at this moment is the one asked about
        self.prompt_input.clear()
        if self.windowTitle() == "LlavaCam":
            self.setWindowTitle(f"LlavaCam — {question[:60]}")
        self.binding.send(question, self.settings.sampling())
        self._update_buttons()

    def regenerate(self) -> None:
        if not self.binding.can_regenerate or not self.model_ready:
            return
        self.binding.regenerate(self.settings.sampling())
        self._update_buttons()

    def stop(self) -> None:
        if self.binding.busy:
            self.binding.stop()
            self.set_status("Stopping…")

    def _turn_finished(self, number: int, stats: TurnStats | None) -> None:
        self._update_buttons()
        self.turn_finished.emit(number, stats)

    def open_chat(self, chat_id: int) -> None:
        """Show a stored chat and continue it: the engine is given its turns with the chosen answers."""
        if self.binding.busy:
            self.set_status("Stop the current answer before opening another chat.")
            return
        self.history_panel.set_open_chat(chat_id)
        self.binding.open_chat(chat_id)

    def _on_session_event(self, event: Any) -> None:
        if event.kind == "chat":
            session = self.binding.session
            self.setWindowTitle(f"LlavaCam — {session.title}" if session.chat_id is not None else "LlavaCam")
            self.records_panel.show_chat(session.chat_id)
        if event.kind in ("turns", "finished", "chat"):
            self._update_buttons()
        if event.kind == "finished":
            if event.request is not None and event.request.failure is not None:
                self._answer_failed(event.request.failure)
            chat_id = self.binding.session.chat_id
            if chat_id is not None and self.history_panel.open_chat_id != chat_id:
                self.history_panel.set_open_chat(chat_id)  # the first answer created the chat
            self.history_panel.refresh()
            self.records_panel.show_chat(chat_id)

    def new_chat(self) -> None:
        self.binding.new_chat()
        self.history_panel.set_open_chat(None)
        self.set_status("New chat")

    def _chat_deleted(self, chat_id: int) -> None:
        """A deleted chat must not stay on screen taking questions that would be stored in it, unseen."""
        if self.binding.forget_chat(chat_id):
            self.history_panel.set_open_chat(None)
            self.set_status("The chat on screen was deleted (Undo brings it back): this is a new chat")

    def _update_buttons(self) -> None:
        busy = self.binding.busy
        self.send_button.setEnabled(not busy)
        self.stop_button.setEnabled(busy)
        self.regenerate_button.setEnabled(self.model_ready and self.binding.can_regenerate)

    # --- settings, notices, status ------------------------------------------------------------------------------

    def open_settings(self) -> None:
        from app.desktop.settings_dialog import SettingsDialog

        dialog = SettingsDialog(self.settings, self, data_dir=self.data_dir)  # the token is saved next to settings
        if dialog.exec():
            before = None if dialog.token_changed else engine_key(self.settings)  # a new token: connect again
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
        camera_before, theme_before = self.settings.camera, self.settings.theme
        self.settings = settings
        if settings.theme != theme_before:  # Settings → Appearance
            from app.desktop.theme import apply_theme

            apply_theme(cast(QApplication, QApplication.instance()), settings.theme)
        self.binding.session.system_prompt = settings.system_prompt or None
        self.tasks.spawn(self._save_settings())
        if reload is None or reload != engine_key(settings):
            self.load_model()
        # Only a camera changed in Settings switches it: saving other settings or choosing model files keeps the
        # camera on screen (which may be one picked in the drop-down or given with --camera).
        if camera_setting(settings.camera) != camera_setting(camera_before):
            self.start_camera(settings.camera)

    async def _save_settings(self) -> None:
        async with self._settings_written:  # one write at a time, each of the settings as they are then
            try:
                await asyncio.to_thread(save_settings, self.data_dir, self.settings)
            except OSError as exc:
                self.show_notice(f"Settings could not be saved: {exc}")

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

    # --- watch --------------------------------------------------------------------------------------------------

    def ask_watch(self) -> None:
        """File → Watch…: a standing question (or "Tell me when …") about the live camera."""
        from PySide6.QtWidgets import QInputDialog

        text, ok = QInputDialog.getText(self, "Watch", "Question, or “Tell me when …”:")
        if ok and text.strip():
            self.start_watch(text.strip())

    def start_watch(self, text: str = "", *, preset: Any = None) -> None:
        """Watch the camera in a Watch panel (one at a time), asking the engine aside from the chat. With `preset`
        (Extract → Watch and fill a list), each new scene is also read into its records, merged by title into open
        ones — the list that fills itself, shown in Records."""
        from PySide6.QtWidgets import QDockWidget

        from app.core.extract.scene import SceneRecords
        from app.core.watch import Condition, EngineAnswerer, Watcher
        from app.core.watch.record import WatchRecorder
        from app.desktop.watch_panel import CameraFrames, DBusNotifier, TrayNotifier, WatchPanel, WatchRunner

        engine = self.engine
        if engine is None or self.camera is None:
            self.show_notice("Watching needs a model and a camera: choose them in File → Models… and Settings.")
            return
        self.stop_watch()
        is_condition = text.lower().startswith(("tell me when", "let me know when", "notify me when"))
        answer: Any = EngineAnswerer(engine)
        recorder = None
        what = text or (f"{preset.label} list" if preset is not None else "")
        if not self.history.read_only:  # the watch is a chat with its timestamped frames (written on its thread)
            recorder = WatchRecorder(self.history, f"Watch: {what}", source=self.camera.name,
                                     retention=self.settings.watch_retention())  # fmt: skip
            answer = recorder.remembering(answer)
        on_scene = None
        if preset is not None:  # read on the watch's thread; each outcome reaches the GUI thread as a queued signal
            on_scene = SceneRecords(engine, preset, recorder, on_read=self._scene_reads.read.emit)
            self.records_dock.show()
            self.records_panel.show_all(preset.name, preset)
        watcher = Watcher(answer, None if is_condition else (text or None),
                          condition=Condition(text) if is_condition else None, on_scene=on_scene,
                          on_event=recorder.on_event if recorder is not None else None)  # fmt: skip
        stop = threading.Event()
        runner = WatchRunner(watcher, CameraFrames(self.camera, stop), self)
        runner.source.stop = stop
        panel = WatchPanel()
        panel.attach(runner, [TrayNotifier(self), DBusNotifier()], sound=self.settings.watch_sound, what=what)
        old_dock = getattr(self, "watch_dock", None)
        if old_dock is not None:  # one watch at a time: the stopped one's panel goes with it
            self.removeDockWidget(old_dock)
            old_dock.deleteLater()
        dock = QDockWidget("Watch", self)
        dock.setObjectName("watchDock")
        dock.setWidget(panel)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        self.watch_dock = dock
        self.watch_panel = panel
        self._watched_preset = preset
        runner.start()

    def watch_and_fill(self, preset: Any) -> None:
        """Extract → Watch and fill a list: the camera watched, each new scene read into `preset`'s records."""
        self.start_watch(preset=preset)

    def _on_scene_read(self, read: Any) -> None:
        """A watched scene was read into records (on the GUI thread): Records shows them as stored."""
        preset = getattr(self, "_watched_preset", None)
        label = preset.label if preset is not None else "records"
        if read.error:
            self.show_notice(f"The watch could not read {label} records from a scene: {read.error}", kind="extract")
            return
        merged = sum(1 for _record, was_merged in read.stored if was_merged)
        added = len(read.stored) - merged
        self.set_status(f"Watch: {added} new {label} record{'s' if added != 1 else ''}, {merged} merged")
        self.records_panel.refresh()

    def stop_watch(self) -> str:
        panel = getattr(self, "watch_panel", None)
        return panel.stop() if panel is not None else ""

    # --- closing ------------------------------------------------------------------------------------------------

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if self.is_closed:
            event.accept()
            return
        event.ignore()
        self.hide()  # the window goes at once; the shutdown below takes moments
        if self._closing is None:
            self._closing = asyncio.ensure_future(self.shutdown())

    async def shutdown(self) -> None:
        """Stop the answer (it is stored as stopped), abort a load, stop the camera and the engine, and wait for
        them all; then `closed`."""
        stopped = self.stop_watch()  # closing the window stops the watch
        self.extraction.cancel()  # an extraction in flight ends within one token
        if stopped:
            self.statusBar().showMessage(stopped)
        layout = self._layout()
        self.model_host.abort()
        await self.binding.shutdown()
        await self.model_host.close()
        readers = self.camera_panel.stop_readers()
        await asyncio.to_thread(_join_all, readers)
        with contextlib.suppress(OSError):
            await asyncio.to_thread(self._write_layout, layout)
        self.history_panel.shutdown()  # its reads stop, its writes (a rename, a delete) finish before the close
        await asyncio.to_thread(self.history.close)
        self.is_closed = True
        self.closed.emit()
        self.close()

    def _write_layout(self, layout: dict[str, Any]) -> None:
        self._layout_path().parent.mkdir(parents=True, exist_ok=True)
        self._layout_path().write_text(json.dumps(layout), encoding="utf-8")


async def open_window(
    settings: Settings,
    data_dir: Path,
    camera_source: str | int | None = None,
    *,
    catalog: str | None = None,
    offer_setup: bool = False,
) -> MainWindow:
    """Build the window on the loop's thread once what it first reads from disk has been read in the loop's
    executor: the history (opening it runs SQLite's integrity check, which grows with the history) and, with no
    model configured, the models folder."""
    opened, history = await asyncio.gather(asyncio.to_thread(startup_settings, settings, data_dir, catalog),
                                           asyncio.to_thread(HistoryStore, data_dir))  # fmt: skip
    try:
        return MainWindow(opened, data_dir, camera_source, catalog=catalog, offer_setup=offer_setup, history=history)
    except BaseException:
        history.close()
        raise


def _join_all(readers: list[CameraSource]) -> None:
    for reader in readers:
        reader.stop()


__all__ = ["MINIMUM_SIZE", "MainWindow", "StatusLine", "open_window"]
