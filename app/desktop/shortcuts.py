"""Every keyboard shortcut in one table: the menus and tooltips take their keys from it, and Help → Keyboard
shortcuts lists it, so what the window says and what it does cannot drift apart.

None of them fights typing: keys a question is typed with (Space, letters, Tab's neighbours) never act on the
window; Enter sends only from the question box, and Tab leaves it.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget


@dataclass(frozen=True)
class Shortcut:
    keys: str  # portable text (QKeySequence's), shown in the native form
    what: str

    @property
    def native(self) -> str:
        return QKeySequence(self.keys).toString(QKeySequence.SequenceFormat.NativeText)


SEND = Shortcut("Return", "Send the question (in the question box)")
NEW_LINE = Shortcut("Shift+Return", "New line in the question")
CAPTURE = Shortcut("Ctrl+P", "Capture: pin the live frame to ask about it")
UNPIN = Shortcut("Ctrl+U", "Unpin: back to the live camera")
STOP = Shortcut("Esc", "Stop the answer")
REGENERATE = Shortcut("Ctrl+R", "Regenerate the last answer")
COPY_ANSWER = Shortcut("Ctrl+Shift+C", "Copy the last answer")
NEW_CHAT = Shortcut("Ctrl+N", "New chat")
FOCUS_QUESTION = Shortcut("Ctrl+L", "Go to the question box")
OPEN_IMAGE = Shortcut("Ctrl+O", "Open an image to ask about")
PASTE_IMAGE = Shortcut("Ctrl+V", "Paste an image (also in the question box)")
MODELS = Shortcut("Ctrl+M", "Models: download or choose a model")
SETTINGS = Shortcut("Ctrl+,", "Settings")
WATCH = Shortcut("Ctrl+Shift+W", "Watch the camera with a standing question")
EXTRACT_TODO = Shortcut("Ctrl+Shift+T", "Extract to-dos from the pinned (or live) frame")
RECORDS = Shortcut("Ctrl+Shift+R", "Show or hide the records table")
SHORTCUTS = Shortcut("F1", "This list of keyboard shortcuts")
QUIT = Shortcut("Ctrl+Q", "Quit")

ALL = (SEND, NEW_LINE, CAPTURE, UNPIN, STOP, REGENERATE, COPY_ANSWER, NEW_CHAT, FOCUS_QUESTION, OPEN_IMAGE,
       PASTE_IMAGE, MODELS, SETTINGS, WATCH, EXTRACT_TODO, RECORDS, SHORTCUTS, QUIT)  # fmt: skip


def with_keys(text: str, shortcut: Shortcut) -> str:
    """A tooltip that names its key: "Stop the answer (Esc)"."""
    return f"{text} ({shortcut.native})"


class ShortcutsDialog(QDialog):
    """Help → Keyboard shortcuts."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.setObjectName("shortcutsDialog")
        layout = QVBoxLayout(self)
        self.table = QTableWidget(len(ALL), 2)
        self.table.setObjectName("shortcutsTable")
        self.table.setAccessibleName("Keyboard shortcuts")
        self.table.setHorizontalHeaderLabels(["Keys", "What it does"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for row, shortcut in enumerate(ALL):
            self.table.setItem(row, 0, QTableWidgetItem(shortcut.native))
            self.table.setItem(row, 1, QTableWidgetItem(shortcut.what))
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setStretchLastSection(True)
        layout.addWidget(self.table)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(520, 480)


__all__ = ["ALL", "Shortcut", "ShortcutsDialog", "with_keys"]
