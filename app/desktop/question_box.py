"""The question box: Enter sends, Shift+Enter starts a new line, Tab leaves it, Ctrl+V with an image pins it.

Its first keystroke of a question is a signal (`typing_started`): the window freezes the live frame then and starts
preparing it, so the typing hides the image encode.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMimeData, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QPlainTextEdit

from app.desktop.camera import IMAGE_SUFFIXES


def holds_image(mime: QMimeData | None) -> bool:
    """Whether a paste or a drop carries a picture: image data, or local image files."""
    if mime is None:
        return False
    if mime.hasImage():
        return True
    return mime.hasUrls() and any(u.isLocalFile() and Path(u.toLocalFile()).suffix.lower() in IMAGE_SUFFIXES
                                  for u in mime.urls())  # fmt: skip


class QuestionBox(QPlainTextEdit):
    submitted = Signal()
    typing_started = Signal()  # the box was empty and now holds text
    image_pasted = Signal(object)  # QMimeData with a picture, pasted into the box (Ctrl+V, or the context menu)

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("promptInput")
        self.setAccessibleName("Question")
        self.setTabChangesFocus(True)  # Tab moves on to the buttons; a question needs no tab characters
        self._was_empty = True
        self.textChanged.connect(self._changed)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt's name)
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not (
            event.modifiers() & Qt.KeyboardModifier.ShiftModifier
        ):
            self.submitted.emit()
            return
        super().keyPressEvent(event)

    def canInsertFromMimeData(self, source: QMimeData) -> bool:  # noqa: N802
        return holds_image(source) or super().canInsertFromMimeData(source)

    def insertFromMimeData(self, source: QMimeData) -> None:  # noqa: N802
        if holds_image(source):
            self.image_pasted.emit(source)  # the picture is what the question is about: pin it, type nothing
            return
        super().insertFromMimeData(source)

    def _changed(self) -> None:
        empty = not self.toPlainText().strip()
        if self._was_empty and not empty:
            self.typing_started.emit()
        self._was_empty = empty


__all__ = ["QuestionBox", "holds_image"]
