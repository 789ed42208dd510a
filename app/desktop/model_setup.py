"""The model dialog: pick a catalog pair and download it (two progress bars, speed, ETA, Cancel), use files on
disk, try the built-in demo pair, or switch between / delete installed pairs.

On a first run with no model installed the window does not wait for this dialog: it starts on the built-in demo
(`startup_settings`), which needs no download, and its badge leads here for a real model. The dialog opens at start
only when pairs are installed but none is configured.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.core.errors import DownloadCancelled, LlavaCamError
from app.core.models.advice import recommend, this_machine
from app.core.models.download import Progress
from app.core.models.store import DownloadPlan, InstalledModel, ModelStore
from app.core.resources import is_demo_model_path
from app.desktop.settings import Settings

DEMO_SUMMARY = "built in · no download · knows only coloured shapes: for trying LlavaCam, not for real questions"


def startup_settings(settings: Settings, data_dir: Path, catalog: str | None = None) -> Settings:
    """The settings to start the window with: the built-in demo pair when no model is configured and none is
    installed (a first run needs no download), the demo's files where they are now when the saved path is the
    demo's (a bundle unpacks to a new folder each start), else `settings` as they are."""
    demo = ModelStore.builtin()
    if not demo:
        return settings
    if settings.has_model and not is_demo_model_path(settings.model_path):
        return settings
    if not settings.has_model:
        try:
            if ModelStore(data_dir, catalog).installed():
                return settings  # pairs to choose from: the model dialog offers them
        except LlavaCamError:
            pass  # an unreadable models folder: the demo still works
    model = demo[0]
    return replace(settings, model_path=str(model.text), mmproj_path=str(model.mmproj or ""), template="auto")


def _size(n: int | None) -> str:
    return "size unknown" if n is None else f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


class DownloadJob(QObject):
    """Runs ModelStore.download on a plain thread; reports through queued signals."""

    progress = Signal(str, object)  # "text" | "mmproj", Progress
    planned = Signal(object)  # DownloadPlan: the sizes and hashes the host stated, before the first byte
    installed = Signal(object)  # InstalledModel
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, store: ModelStore, model_id: str) -> None:
        super().__init__()
        self.store = store
        self.model_id = model_id
        self.cancel_event = threading.Event()
        self.runner = threading.Thread(target=self._run, name="llavacam-download", daemon=True)

    def start(self) -> None:
        self.runner.start()

    def cancel(self) -> None:
        self.cancel_event.set()

    def _run(self) -> None:
        try:
            plan = self.store.plan(self.model_id)  # the hub's metadata: network, so here and not on the GUI thread
            self.planned.emit(plan)
            model = self.store.download(
                self.model_id, progress=lambda part, p: self.progress.emit(part, p), cancel=self.cancel_event,
                plan=plan,
            )  # fmt: skip
        except DownloadCancelled:
            self.cancelled.emit()
        except LlavaCamError as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # never a silent dead thread
            self.failed.emit(f"The download failed: {exc}")
        else:
            self.installed.emit(model)


class ModelSetupDialog(QDialog):
    """Emits `chosen(InstalledModel)` when a pair is ready to load."""

    chosen = Signal(object)

    def __init__(self, store: ModelStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("LlavaCam models")
        self.setObjectName("modelSetupDialog")
        self.resize(640, 420)
        self.store = store
        self.job: DownloadJob | None = None
        layout = QVBoxLayout(self)
        intro = QLabel("Choose a model pair (a text model and its vision projector). It is downloaded once, "
                       "checked, and kept on this computer. Or try the built-in demo first: it needs no download "
                       "but knows only coloured shapes.")  # fmt: skip
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.machine = QLabel("")
        self.machine.setObjectName("machineAdvice")
        self.machine.setWordWrap(True)
        layout.addWidget(self.machine)
        self.list = QListWidget()
        self.list.setObjectName("catalogList")
        self.list.setAccessibleName("Model pairs")
        layout.addWidget(self.list, 1)
        self.text_bar = self._bar("textProgress", "Text model download")
        self.mmproj_bar = self._bar("mmprojProgress", "Vision projector download")
        for label, bar in (("Text model", self.text_bar), ("Vision projector", self.mmproj_bar)):
            row = QHBoxLayout()
            row.addWidget(QLabel(label))
            row.addWidget(bar, 1)
            layout.addLayout(row)
        self.status = QLabel("")
        self.status.setObjectName("downloadStatus")
        self.status.setAccessibleName("Download status")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        buttons = QHBoxLayout()
        self.demo_button = self._button("Try the built-in demo", "tryDemoButton", self.use_demo)
        self.demo_button.setToolTip(DEMO_SUMMARY)
        buttons.addWidget(self.demo_button)
        self.use_files_button = self._button("Use files on disk…", "useFilesButton", self.use_files)
        self.delete_button = self._button("Delete", "deleteModelButton", self.delete_selected)
        self.cancel_button = self._button("Cancel download", "cancelDownloadButton", self.cancel_download)
        self.download_button = self._button("Download and use", "downloadButton", self.download_or_use)
        for button in (self.use_files_button, self.delete_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.download_button)
        layout.addLayout(buttons)
        self.list.currentItemChanged.connect(lambda *_: self._update_buttons())
        self.refresh()

    def _bar(self, name: str, accessible: str) -> QProgressBar:
        bar = QProgressBar()
        bar.setObjectName(name)
        bar.setAccessibleName(accessible)
        bar.setRange(0, 1000)
        bar.setValue(0)
        return bar

    def _button(self, text: str, name: str, slot: Any) -> QPushButton:
        button = QPushButton(text)
        button.setObjectName(name)
        button.setAccessibleName(text.rstrip("…"))
        button.clicked.connect(slot)
        return button

    def refresh(self) -> None:
        self.list.clear()
        installed = {m.id: m for m in self.store.installed()}
        try:
            entries = self.store.catalog_entries()
        except LlavaCamError as exc:
            entries = []
            self.status.setText(str(exc))
        machine = this_machine()
        best = recommend(entries, machine)
        self.machine.setText(f"This computer: {machine.describe()}."
                             + (f" Recommended here: {best.name}." if best else ""))  # fmt: skip
        for entry in entries:
            size = f"~{_size(entry.total_size)} download" if entry.total_size else "size read from the host"
            mark = "installed" if entry.id in installed else size
            memory = f" · needs ~{entry.memory_gb:.1f} GB memory" if entry.memory_gb else ""
            star = " ★ recommended" if best is not None and entry.id == best.id else ""
            lines = [f"{entry.name}{star}", f"    {mark}{memory} · {entry.licence}",
                     f"    {entry.best_for + ' · ' if entry.best_for else ''}{entry.status}"]  # fmt: skip
            item = QListWidgetItem("\n".join(lines))
            item.setData(Qt.ItemDataRole.UserRole, ("catalog", entry.id))
            item.setToolTip(entry.notes)
            self.list.addItem(item)
        for model in self.store.builtin():  # next to the downloads, honestly labelled
            item = QListWidgetItem(f"{model.name}\n    {DEMO_SUMMARY}")
            item.setData(Qt.ItemDataRole.UserRole, (model.origin, model.id))
            self.list.addItem(item)
        known = {e.id for e in entries}
        for model in installed.values():
            if model.origin != "catalog" or model.id not in known:  # a pair gone from the catalog stays usable
                origin = f"{model.origin} files" if model.origin != "catalog" else "no longer in the catalog"
                item = QListWidgetItem(f"{model.name}\n    {origin} · {_size(model.size)}")
                item.setData(Qt.ItemDataRole.UserRole, (model.origin, model.id))
                self.list.addItem(item)
        if self.list.count():
            self.list.setCurrentRow(0)
        self._update_buttons()

    def _selected(self) -> tuple[str, str] | None:
        item = self.list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def _is_installed(self, model_id: str) -> bool:
        return any(m.id == model_id for m in self.store.installed() + self.store.builtin())

    def _update_buttons(self) -> None:
        busy = self.job is not None
        selected = self._selected()
        installed = selected is not None and self._is_installed(selected[1])
        self.download_button.setEnabled(not busy and selected is not None)
        self.download_button.setText("Use" if installed else "Download and use")
        self.delete_button.setEnabled(not busy and installed and selected is not None and selected[0] != "builtin")
        self.cancel_button.setEnabled(busy)
        self.use_files_button.setEnabled(not busy)
        self.demo_button.setEnabled(not busy and bool(self.store.builtin()))

    def use_demo(self) -> None:
        """Use the built-in demo pair (package data: nothing to download)."""
        demo = self.store.builtin()
        if not demo:  # a damaged install without app/demo
            self.status.setText("The built-in demo is missing from this installation: download a pair instead.")
            return
        self._use(demo[0])

    def select(self, model_id: str) -> None:
        for row in range(self.list.count()):
            if self.list.item(row).data(Qt.ItemDataRole.UserRole)[1] == model_id:
                self.list.setCurrentRow(row)
                return

    def download_or_use(self) -> None:
        selected = self._selected()
        if selected is None:
            return
        model_id = selected[1]
        if self._is_installed(model_id):
            self._use(self.store.get(model_id))
            return
        entry = next((e for e in self.store.catalog_entries() if e.id == model_id), None)
        if entry is not None and entry.licence_terms and not self.accept_terms(entry.name, entry.licence_terms):
            self.status.setText(f"{entry.name}: not downloaded (licence terms not accepted).")
            return
        self.text_bar.setValue(0)
        self.mmproj_bar.setValue(0)
        self.status.setText("Asking the host for the files' sizes…")
        self.job = DownloadJob(self.store, model_id)
        self.job.planned.connect(self._on_planned)
        self.job.progress.connect(self._on_progress)
        self.job.installed.connect(self._on_installed)
        self.job.failed.connect(self._on_failed)
        self.job.cancelled.connect(self._on_cancelled)
        self.job.start()
        self._update_buttons()

    def accept_terms(self, name: str, terms: str) -> bool:
        """Shown before downloading a pair whose catalog entry has licence terms (Gemma's)."""
        answer = QMessageBox.question(self, "Licence terms", f"{name}\n\n{terms}\n\nAccept and download?")
        return answer == QMessageBox.StandardButton.Yes

    def _on_planned(self, plan: DownloadPlan) -> None:
        hashes = "checked against the host's SHA-256" if all(f.sha256 for f in plan.files) else "no host SHA-256"
        self.status.setText(f"Downloading {_size(plan.total_size)} ({hashes})…")

    def cancel_download(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.status.setText("Cancelling…")

    def _on_progress(self, part: str, progress: Progress) -> None:
        bar = self.text_bar if part == "text" else self.mmproj_bar
        if progress.fraction is not None:
            bar.setValue(int(progress.fraction * 1000))
        eta = f", about {progress.eta_s:.0f} s left" if progress.eta_s is not None else ""
        self.status.setText(
            f"Downloading the {'text model' if part == 'text' else 'vision projector'}: {_size(progress.done)} "
            f"of {_size(progress.total)} at {progress.bytes_per_s / 1e6:.1f} MB/s{eta}"
        )

    def _finish_job(self) -> None:
        if self.job is not None:
            self.job.runner.join(5)
        self.job = None
        self._update_buttons()

    def _on_installed(self, model: InstalledModel) -> None:
        self._finish_job()
        self.text_bar.setValue(1000)
        self.mmproj_bar.setValue(1000)
        self.status.setText(f"Installed and checked: {model.name}")
        self._use(model)

    def _on_failed(self, message: str) -> None:
        self._finish_job()
        self.status.setText(f"Download failed: {message}")

    def _on_cancelled(self) -> None:
        self._finish_job()
        self.status.setText("Download cancelled. Downloading again resumes where it stopped.")

    def use_files(self) -> None:
        text, _ = QFileDialog.getOpenFileName(self, "Text model (GGUF)", "", "GGUF models (*.gguf)")
        if not text:
            return
        mmproj, _ = QFileDialog.getOpenFileName(self, "Vision projector (mmproj GGUF)", str(Path(text).parent),
                                                "GGUF models (*.gguf)")  # fmt: skip
        self.add_files(text, mmproj or None)

    def add_files(self, text: str, mmproj: str | None) -> None:
        try:
            model = self.store.add_local(text, mmproj)
        except LlavaCamError as exc:
            self.status.setText(str(exc))
            return
        self._use(model)

    def delete_selected(self) -> None:
        selected = self._selected()
        if selected is None:
            return
        answer = QMessageBox.question(self, "Delete model", f"Delete {selected[1]} from this computer?")
        if answer == QMessageBox.StandardButton.Yes:
            self.delete(selected[1])

    def delete(self, model_id: str) -> None:
        try:
            self.store.delete(model_id)
        except LlavaCamError as exc:
            self.status.setText(str(exc))
        self.refresh()

    def _use(self, model: InstalledModel) -> None:
        self.chosen.emit(model)
        self.accept()

    def reject(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self._finish_job()
        super().reject()
