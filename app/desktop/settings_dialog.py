"""Settings: model files, system prompt, sampling, threads, GPU layers, camera."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from app.core.inference.templates import TEMPLATE_FAMILIES
from app.desktop.settings import Settings


class SettingsDialog(QDialog):
    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("LlavaCam settings")
        self.setObjectName("settingsDialog")
        self._settings = settings
        form = QFormLayout(self)
        self.model_edit = self._file_row(form, "Text model (GGUF)", settings.model_path, "modelPath")
        self.mmproj_edit = self._file_row(form, "Vision projector (mmproj)", settings.mmproj_path, "mmprojPath")
        self.template_box = QComboBox()
        self.template_box.setObjectName("templateBox")
        self.template_box.setAccessibleName("Chat template")
        self.template_box.addItems(list(TEMPLATE_FAMILIES))
        self.template_box.setCurrentText(settings.template)
        form.addRow("Chat template", self.template_box)
        self.system_edit = QPlainTextEdit(settings.system_prompt)
        self.system_edit.setObjectName("systemPrompt")
        self.system_edit.setAccessibleName("System prompt")
        self.system_edit.setMaximumHeight(80)
        form.addRow("System prompt", self.system_edit)
        self.temperature = self._double(form, "Temperature", settings.temperature, 0.0, 2.0, "temperature")
        self.top_p = self._double(form, "Top-p", settings.top_p, 0.01, 1.0, "topP")
        self.max_tokens = self._int(form, "Max tokens", settings.max_tokens, 1, 8192, "maxTokens")
        self.seed = self._int(form, "Seed (-1: random)", -1 if settings.seed is None else settings.seed, -1,
                              2**31 - 1, "seed")  # fmt: skip
        self.threads = self._int(form, "Threads (0: automatic)", settings.threads, 0, 256, "threads")
        self.gpu_layers = self._int(form, "GPU layers (-1: all)", settings.gpu_layers, -1, 999, "gpuLayers")
        self.n_ctx = self._int(form, "Context tokens", settings.n_ctx, 512, 131072, "contextSize")
        self.camera_edit = QLineEdit(settings.camera)
        self.camera_edit.setObjectName("cameraSource")
        self.camera_edit.setAccessibleName("Camera index or video file")
        self.camera_edit.setPlaceholderText("automatic: the first webcam, else the sample video")
        form.addRow("Camera (index or file)", self.camera_edit)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _file_row(self, form: QFormLayout, label: str, value: str, name: str) -> QLineEdit:
        row = QHBoxLayout()
        edit = QLineEdit(value)
        edit.setObjectName(name)
        edit.setAccessibleName(label)
        row.addWidget(edit, 1)
        browse = QPushButton("Browse…")
        browse.setAccessibleName(f"Browse for {label}")
        browse.clicked.connect(lambda: self._browse(edit, label))
        row.addWidget(browse)
        form.addRow(label, row)
        return edit

    def _browse(self, edit: QLineEdit, label: str) -> None:
        path, _ = QFileDialog.getOpenFileName(self, label, edit.text(), "GGUF models (*.gguf);;All files (*)")
        if path:
            edit.setText(path)

    def _double(
        self, form: QFormLayout, label: str, value: float, low: float, high: float, name: str
    ) -> QDoubleSpinBox:
        box = QDoubleSpinBox()
        box.setObjectName(name)
        box.setAccessibleName(label)
        box.setRange(low, high)
        box.setSingleStep(0.05)
        box.setDecimals(2)
        box.setValue(value)
        form.addRow(label, box)
        return box

    def _int(self, form: QFormLayout, label: str, value: int, low: int, high: int, name: str) -> QSpinBox:
        box = QSpinBox()
        box.setObjectName(name)
        box.setAccessibleName(label)
        box.setRange(low, high)
        box.setValue(value)
        form.addRow(label, box)
        return box

    def result_settings(self) -> Settings:
        seed = self.seed.value()
        return replace(
            self._settings,
            model_path=self.model_edit.text().strip(),
            mmproj_path=self.mmproj_edit.text().strip(),
            template=self.template_box.currentText(),
            system_prompt=self.system_edit.toPlainText().strip(),
            temperature=self.temperature.value(),
            top_p=self.top_p.value(),
            max_tokens=self.max_tokens.value(),
            seed=None if seed < 0 else seed,
            threads=self.threads.value(),
            gpu_layers=self.gpu_layers.value(),
            n_ctx=self.n_ctx.value(),
            camera=self.camera_edit.text().strip(),  # empty: the automatic camera
        )
