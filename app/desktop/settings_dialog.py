"""Settings, grouped as people look for them: Camera, Model, Engine, Answers, Watch, Appearance; every field has a
tooltip that says what it does.

Engine: "This computer" (the model files under Model, run here) or "A server" (any OpenAI-compatible vision server:
its address, token, model and how to trust a self-signed certificate). Refresh lists the server's models from its
/v1/models on a short-lived thread, never on the GUI thread; the answer comes back as a queued signal. The token is
not a setting: it is saved apart, readable only by the user (app.core.settings.save_server_token), when OK is pressed.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.core.errors import LlavaCamError
from app.core.inference.templates import TEMPLATE_FAMILIES
from app.core.remote.trust import TrustError
from app.desktop.settings import (
    LOCAL_ENGINE,
    SERVER_ENGINE,
    THEMES,
    Settings,
    load_server_token,
    save_server_token,
)

GROUPS = ("Camera", "Model", "Engine", "Answers", "Watch", "Appearance")
THEME_LABELS = {"system": "Follow the system", "light": "Light", "dark": "Dark"}


class _ModelList(QObject):
    """Carries a model listing from its thread back to the GUI thread (a queued signal)."""

    done = Signal(object, object)  # the model ids (None on failure), the error message (None on success)


class SettingsDialog(QDialog):
    models_listed = Signal(object, object)  # the server's model ids (None on failure), the error text (None: fine)

    def __init__(self, settings: Settings, parent: QWidget | None = None, *, data_dir: Path | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("LlavaCam settings")
        self.setObjectName("settingsDialog")
        self._settings = settings
        self._data_dir = data_dir
        self._listing: threading.Thread | None = None
        self._bridge = _ModelList()
        self._bridge.done.connect(self._on_models_listed)
        self._stored_token, token_problem = self._read_token()
        self._opened_token = self._stored_token

        outer = QVBoxLayout(self)
        self.tabs = QTabWidget()
        self.tabs.setObjectName("settingsGroups")
        outer.addWidget(self.tabs)
        forms = {name: self._group(name) for name in GROUPS}

        # Camera
        self.camera_edit = self._line(forms["Camera"], "Camera (index or file)", settings.camera, "cameraSource",
                                      "Which camera to use: empty for the first webcam (or the sample video when "
                                      "there is none), a number for another webcam (0, 1, …), or a video or image "
                                      "file to use as the camera.")  # fmt: skip
        self.camera_edit.setAccessibleName("Camera index or video file")

        # Model (this computer's files)
        model = forms["Model"]
        self.model_edit = self._file_row(model, "Text model (GGUF)", settings.model_path, "modelPath",
                                         "The language model file (.gguf) this computer runs. File → Models… "
                                         "downloads one.")  # fmt: skip
        self.mmproj_edit = self._file_row(model, "Vision projector (mmproj)", settings.mmproj_path, "mmprojPath",
                                          "The vision projector file (mmproj .gguf) that lets the model see "
                                          "frames. Leave empty for text-only questions.")  # fmt: skip
        self.template_box = QComboBox()
        self.template_box.addItems(list(TEMPLATE_FAMILIES))
        self.template_box.setCurrentText(settings.template)
        self._add(model, "Chat template", self.template_box, "templateBox",
                  "How the conversation is written for the model: auto uses the model's own template (else a guess "
                  "from its name); choose a family only if answers look garbled.")  # fmt: skip

        # Engine: who answers
        engine = forms["Engine"]
        self.local_choice = QRadioButton("This computer")
        self.server_choice = QRadioButton("A server")
        self._choices = QButtonGroup(self)
        for button, name, tip in (
            (self.local_choice, "engineLocal", "Run the model files under Model here: frames never leave this "
                                               "computer."),
            (self.server_choice, "engineServer", "Ask an OpenAI-compatible vision server (llavacam serve, "
                                                 "llama-server, Ollama, LM Studio, vLLM): frames are sent to it."),
        ):  # fmt: skip
            button.setObjectName(name)
            button.setToolTip(tip)
            self._choices.addButton(button)
        row = QHBoxLayout()
        row.addWidget(self.local_choice)
        row.addWidget(self.server_choice)
        row.addStretch(1)
        engine.addRow("Who answers", row)
        (self.server_choice if settings.uses_server else self.local_choice).setChecked(True)
        self.threads = self._int(engine, "Threads (0: automatic)", settings.threads, 0, 256, "threads",
                                 "CPU threads this computer's engine uses; 0 picks one per physical core.")  # fmt: skip
        self.gpu_layers = self._int(engine, "GPU layers (-1: all)", settings.gpu_layers, -1, 999, "gpuLayers",
                                    "How many of the model's layers run on the GPU; -1 puts all of them there, 0 "
                                    "runs on the CPU only.")  # fmt: skip
        self.n_ctx = self._int(engine, "Context tokens", settings.n_ctx, 512, 131072, "contextSize",
                               "How much conversation (text and frames) the model keeps in mind; more needs more "
                               "memory. When it is full, the oldest turns are dropped.")  # fmt: skip
        self.server_url = self._line(engine, "Server address", settings.server_url, "serverUrl",
                                     "The server's address, such as http://192.168.1.20:8080 (with or without "
                                     "/v1).")  # fmt: skip
        self.server_url.setPlaceholderText("http://192.168.1.20:8080")
        self.server_token = self._line(engine, "Token", self._stored_token or "", "serverToken",
                                       "The server's API token, if it needs one. It is stored apart from the other "
                                       "settings, readable only by you, and never shown in logs.")  # fmt: skip
        self.server_token.setEchoMode(QLineEdit.EchoMode.Password)
        self.server_model = QComboBox()
        self.server_model.setEditable(True)
        self.server_model.addItem(settings.server_model)
        self.server_model.setCurrentText(settings.server_model)
        self.refresh_models = QPushButton("Refresh")
        self.refresh_models.setObjectName("refreshServerModels")
        self.refresh_models.setToolTip("Ask the server which models it serves (GET /v1/models).")
        self.refresh_models.clicked.connect(self.list_server_models)
        model_row = QHBoxLayout()
        model_row.addWidget(self.server_model, 1)
        model_row.addWidget(self.refresh_models)
        self._add(engine, "Server model", self.server_model, "serverModel",
                  "Which of the server's models answers; empty for the server's first. Refresh lists them.",
                  row=model_row)  # fmt: skip
        self.server_status = QLabel(token_problem or "")
        self.server_status.setObjectName("serverStatus")
        self.server_status.setWordWrap(True)
        self.server_status.setAccessibleName("Server check")
        engine.addRow("", self.server_status)
        self.server_ca_file = self._file_row(engine, "CA file", settings.server_ca_file, "serverCaFile",
                                             "For a home server with a self-signed certificate: the CA (or the "
                                             "certificate itself) as a PEM file, to trust it.",
                                             pattern="PEM certificates (*.pem *.crt);;All files (*)")  # fmt: skip
        self.server_fingerprint = self._line(engine, "Certificate fingerprint", settings.server_fingerprint,
                                             "serverFingerprint",
                                             "Or trust exactly one certificate: its SHA-256 fingerprint, as `openssl "
                                             "x509 -noout -fingerprint -sha256` prints it.")  # fmt: skip
        self._choices.buttonToggled.connect(lambda *_: self._show_engine())
        self._show_engine()

        # Answers
        answers = forms["Answers"]
        self.system_edit = QPlainTextEdit(settings.system_prompt)
        self.system_edit.setMaximumHeight(80)
        self._add(
            answers,
            "System prompt",
            self.system_edit,
            "systemPrompt",
            "Instructions the model reads before every conversation.",
        )
        self.temperature = self._double(answers, "Temperature", settings.temperature, 0.0, 2.0, "temperature",
                                        "How freely the model picks words: 0 always gives the same answer, higher "
                                        "is more varied.")  # fmt: skip
        self.top_p = self._double(answers, "Top-p", settings.top_p, 0.01, 1.0, "topP",
                                  "Only the most likely words that together reach this probability are "
                                  "considered; 1 considers all.")  # fmt: skip
        self.max_tokens = self._int(
            answers,
            "Max tokens",
            settings.max_tokens,
            1,
            8192,
            "maxTokens",
            "The longest answer, in tokens (about ¾ of a word each).",
        )
        self.seed = self._int(answers, "Seed (-1: random)", -1 if settings.seed is None else settings.seed, -1,
                              2**31 - 1, "seed",
                              "A fixed number makes varied answers repeatable; -1 draws a new one each "
                              "time.")  # fmt: skip

        # Watch
        watch = forms["Watch"]
        self.watch_sound = self._check(watch, "Play a sound when a “Tell me when” condition comes true",
                                       settings.watch_sound, "watchSound",
                                       "With each “Tell me when …” notification, also play the system's alert "
                                       "sound.")  # fmt: skip
        self.watch_store_frames = self._check(watch, "Keep each watch answer's frame in the history",
                                              settings.watch_store_frames, "watchStoreFrames",
                                              "Off: a watch keeps its answers in the history, but no camera "
                                              "frames at all.")  # fmt: skip
        self.watch_max_frames = self._int(watch, "Frames kept per watch", settings.watch_max_frames, 1, 100000,
                                          "watchMaxFrames",
                                          "A watch keeps at most this many frames, the newest; older answers keep "
                                          "their text.")  # fmt: skip
        self.watch_store_frames.toggled.connect(self.watch_max_frames.setEnabled)
        self.watch_max_frames.setEnabled(settings.watch_store_frames)

        # Appearance
        self.theme_box = QComboBox()
        for theme in THEMES:
            self.theme_box.addItem(THEME_LABELS[theme], theme)
        self.theme_box.setCurrentIndex(THEMES.index(settings.theme))
        self._add(
            forms["Appearance"],
            "Theme",
            self.theme_box,
            "themeBox",
            "Light or dark colours, or follow the system's setting.",
        )

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        outer.addWidget(buttons)

    # --- building ------------------------------------------------------------------------------------------------

    def _group(self, name: str) -> QFormLayout:
        page = QWidget()
        page.setObjectName(f"settings{name}")
        form = QFormLayout(page)
        self.tabs.addTab(page, name)
        return form

    def _add(self, form: QFormLayout, label: str, widget: QWidget, name: str, tip: str,
             row: QHBoxLayout | None = None) -> None:  # fmt: skip
        widget.setObjectName(name)
        widget.setAccessibleName(label)
        widget.setToolTip(tip)
        if row is not None:
            form.addRow(label, row)
        else:
            form.addRow(label, widget)
        label_widget = form.labelForField(row if row is not None else widget)
        if label_widget is not None:
            label_widget.setToolTip(tip)

    def _line(self, form: QFormLayout, label: str, value: str, name: str, tip: str) -> QLineEdit:
        edit = QLineEdit(value)
        self._add(form, label, edit, name, tip)
        return edit

    def _check(self, form: QFormLayout, label: str, value: bool, name: str, tip: str) -> QCheckBox:
        box = QCheckBox(label)
        box.setChecked(value)
        box.setObjectName(name)
        box.setAccessibleName(label)
        box.setToolTip(tip)
        form.addRow(box)
        return box

    def _file_row(self, form: QFormLayout, label: str, value: str, name: str, tip: str,
                  pattern: str = "GGUF models (*.gguf);;All files (*)") -> QLineEdit:  # fmt: skip
        row = QHBoxLayout()
        edit = QLineEdit(value)
        row.addWidget(edit, 1)
        browse = QPushButton("Browse…")
        browse.setAccessibleName(f"Browse for {label}")
        browse.setToolTip(f"Choose the {label[0].lower()}{label[1:]} file.")
        browse.clicked.connect(lambda: self._browse(edit, label, pattern))
        row.addWidget(browse)
        self._add(form, label, edit, name, tip, row=row)
        return edit

    def _browse(self, edit: QLineEdit, label: str, pattern: str) -> None:
        path, _ = QFileDialog.getOpenFileName(self, label, edit.text(), pattern)
        if path:
            edit.setText(path)

    def _double(self, form: QFormLayout, label: str, value: float, low: float, high: float, name: str,
                tip: str) -> QDoubleSpinBox:  # fmt: skip
        box = QDoubleSpinBox()
        box.setRange(low, high)
        box.setSingleStep(0.05)
        box.setDecimals(2)
        box.setValue(value)
        self._add(form, label, box, name, tip)
        return box

    def _int(self, form: QFormLayout, label: str, value: int, low: int, high: int, name: str,
             tip: str) -> QSpinBox:  # fmt: skip
        box = QSpinBox()
        box.setRange(low, high)
        box.setValue(value)
        self._add(form, label, box, name, tip)
        return box

    def fields(self) -> list[QWidget]:
        """Every input the dialog offers (what the tooltip test walks)."""
        kinds = (QLineEdit, QPlainTextEdit, QComboBox, QSpinBox, QDoubleSpinBox, QCheckBox, QRadioButton, QPushButton)
        return [w for w in self.tabs.findChildren(QWidget) if isinstance(w, kinds) and w.parent() is not None
                and not isinstance(w.parent(), (QComboBox, QSpinBox, QDoubleSpinBox))]  # fmt: skip

    # --- engine --------------------------------------------------------------------------------------------------

    def _show_engine(self) -> None:
        server = self.server_choice.isChecked()
        local: tuple[QWidget, ...] = (self.threads, self.gpu_layers, self.n_ctx)
        for widget in local:
            widget.setEnabled(not server)
        remote: tuple[QWidget, ...] = (self.server_url, self.server_token, self.server_model, self.refresh_models,
                                       self.server_ca_file, self.server_fingerprint)  # fmt: skip
        for widget in remote:
            widget.setEnabled(server)

    def _read_token(self) -> tuple[str | None, str | None]:
        if self._data_dir is None:
            return None, None
        try:
            return load_server_token(self._data_dir), None
        except (TrustError, OSError) as exc:
            return None, f"The stored token was not used: {exc}"

    @property
    def listing(self) -> bool:
        return self._listing is not None and self._listing.is_alive()

    def list_server_models(self) -> None:
        """Refresh: ask the server for its models on a thread of its own; the answer arrives as `models_listed`."""
        from app.core.engine_choice import server_models

        if self.listing:
            return
        settings, token = self.result_settings(), self.token()
        self.server_status.setText(f"Asking {settings.server_url or 'the server'} for its models…")
        self.refresh_models.setEnabled(False)
        bridge = self._bridge

        def work() -> None:
            try:
                models = server_models(settings, token)
            except LlavaCamError as exc:
                bridge.done.emit(None, str(exc))
            except Exception as exc:  # never a dead thread: one visible message instead
                bridge.done.emit(None, f"The server's models could not be listed: {exc}")
            else:
                bridge.done.emit(models, None)

        self._listing = threading.Thread(target=work, name="llavacam-list-models", daemon=True)
        self._listing.start()

    def _on_models_listed(self, models: list[str] | None, error: str | None) -> None:
        self.refresh_models.setEnabled(self.server_choice.isChecked())
        if models is None:
            self.server_status.setText(error or "")
        else:
            chosen = self.server_model.currentText().strip()
            self.server_model.clear()
            self.server_model.addItems(models)
            self.server_model.setCurrentText(chosen if chosen in models else (models[0] if models else ""))
            self.server_status.setText(
                f"The server serves {len(models)} model{'s' if len(models) != 1 else ''}."
                if models
                else "The server lists no models: load one on the server."
            )
        self.models_listed.emit(models, error)

    # --- results -------------------------------------------------------------------------------------------------

    def token(self) -> str | None:
        return self.server_token.text().strip() or None

    @property
    def token_changed(self) -> bool:
        """OK saved a token other than the one stored when the dialog opened."""
        return self._opened_token != self._stored_token

    def result_settings(self) -> Settings:
        seed = self.seed.value()
        return replace(
            self._settings,
            camera=self.camera_edit.text().strip(),
            model_path=self.model_edit.text().strip(),
            mmproj_path=self.mmproj_edit.text().strip(),
            template=self.template_box.currentText(),
            engine=SERVER_ENGINE if self.server_choice.isChecked() else LOCAL_ENGINE,
            threads=self.threads.value(),
            gpu_layers=self.gpu_layers.value(),
            n_ctx=self.n_ctx.value(),
            server_url=self.server_url.text().strip(),
            server_model=self.server_model.currentText().strip(),
            server_ca_file=self.server_ca_file.text().strip(),
            server_fingerprint=self.server_fingerprint.text().strip(),
            system_prompt=self.system_edit.toPlainText().strip(),
            temperature=self.temperature.value(),
            top_p=self.top_p.value(),
            max_tokens=self.max_tokens.value(),
            seed=None if seed < 0 else seed,
            watch_sound=self.watch_sound.isChecked(),
            watch_store_frames=self.watch_store_frames.isChecked(),
            watch_max_frames=self.watch_max_frames.value(),
            theme=str(self.theme_box.currentData()),
        )

    def accept(self) -> None:
        """OK: the token is saved apart (mode 0600) when it changed; the caller saves the settings."""
        if self._data_dir is not None and self.token() != self._stored_token:
            try:
                save_server_token(self._data_dir, self.token())
            except OSError as exc:
                self.server_status.setText(f"The token could not be saved: {exc.strerror or exc}")
                self.tabs.setCurrentIndex(GROUPS.index("Engine"))
                return
            self._stored_token = self.token()
        super().accept()
