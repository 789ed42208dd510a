"""The chat: a scrolling column of message bubbles. Questions on the right, answers on the left, never mixed."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QGuiApplication, QPixmap
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)


def format_timings(stats: dict[str, Any]) -> str:
    """The small line under an answer: image encode (or "image cached"), time to first token, speed."""
    parts = []
    if stats.get("image_cached"):
        parts.append("image cached")
    elif stats.get("image_encode_ms"):
        parts.append(f"image {stats['image_encode_ms'] / 1000:.1f} s")
    parts.append(f"first token {stats.get('ttft_ms', 0) / 1000:.2f} s")
    if stats.get("decode_tok_s"):
        parts.append(f"{stats['decode_tok_s']:.1f} tok/s")
    if stats.get("context_rebuilt"):
        parts.append(f"context rebuilt ({stats.get('dropped_turns', 0)} old turns dropped)")
    return " · ".join(parts)


class Bubble(QFrame):
    """One message. Its dynamic property `role` is "user" or "assistant" (for styles and automation)."""

    def __init__(self, role: str, text: str = "", thumbnail: QPixmap | None = None) -> None:
        super().__init__()
        self.role = role
        self.setProperty("role", role)
        self.setObjectName(f"{role}Bubble")
        self.setAccessibleName("Your question" if role == "user" else "Answer")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Minimum)
        self.setMaximumWidth(560)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 8)
        if thumbnail is not None:
            self.thumbnail = QLabel()
            self.thumbnail.setObjectName("bubbleThumbnail")
            self.thumbnail.setAccessibleName("The frame this question is about")
            self.thumbnail.setPixmap(thumbnail)
            layout.addWidget(self.thumbnail)
        self.text_label = QLabel()
        self.text_label.setObjectName("bubbleText")
        self.text_label.setWordWrap(True)
        self.text_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # Questions are shown as typed; answers are rendered as Markdown.
        self.text_label.setTextFormat(Qt.TextFormat.PlainText if role == "user" else Qt.TextFormat.MarkdownText)
        layout.addWidget(self.text_label)
        self._text = ""
        self.stopped = False
        if role == "assistant":
            footer = QHBoxLayout()
            self.timing_label = QLabel("")
            self.timing_label.setObjectName("timingLabel")
            self.timing_label.setAccessibleName("Timings")
            footer.addWidget(self.timing_label, 1)
            self.copy_button = QPushButton("Copy")
            self.copy_button.setObjectName("copyButton")
            self.copy_button.setAccessibleName("Copy answer")
            self.copy_button.setFlat(True)
            self.copy_button.clicked.connect(self.copy_text)
            footer.addWidget(self.copy_button)
            layout.addLayout(footer)
        self.set_text(text)

    @property
    def text(self) -> str:
        return self._text

    def set_text(self, text: str) -> None:
        self._text = text
        shown = text if self.role == "user" else inert_markdown(text)
        self.text_label.setText(shown if text or self.role == "user" else "…")

    def append(self, piece: str) -> None:
        self.set_text(self._text + piece)

    def finish(self, stats: dict[str, Any]) -> None:
        self.stopped = stats.get("finish_reason") == "cancelled"
        line = format_timings(stats)
        if self.stopped:
            line = "stopped · " + line
            if not self._text:
                self.set_text("*(stopped before the first word)*")
        self.timing_label.setText(line)
        self.setProperty("stopped", self.stopped)
        repolish(self)

    def fail(self, message: str) -> None:
        self.setProperty("failed", True)
        repolish(self)
        self.timing_label.setText("error")
        self.set_text((self._text + "\n\n" if self._text else "") + f"**Error:** {message}")

    def copy_text(self) -> None:
        QGuiApplication.clipboard().setText(self._text)
        # Say it worked, then offer Copy again.
        self.copy_button.setText("Copied")
        QTimer.singleShot(COPIED_MS, self, lambda: self.copy_button.setText("Copy"))


COPIED_MS = 1500


def inert_markdown(text: str) -> str:
    """Markdown that loads nothing: Qt's Markdown label reads `![alt](path)` images from disk (a model's answer,
    or a stored chat, could name any local file). The image syntax is escaped, so it shows as the text it is."""
    return text.replace("![", "!\\[")


def repolish(widget: QWidget) -> None:
    """Apply the style sheet again: Qt does not re-evaluate [property] selectors when a dynamic property changes."""
    style = widget.style()
    style.unpolish(widget)
    style.polish(widget)
    widget.update()


class ChatView(QScrollArea):
    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("chatView")
        self.setAccessibleName("Conversation")
        self.setWidgetResizable(True)
        self._column = QWidget()
        self._column.setObjectName("chatColumn")
        self._layout = QVBoxLayout(self._column)
        self._layout.setContentsMargins(12, 12, 12, 12)
        self._layout.setSpacing(10)
        self._layout.addStretch(1)
        self.setWidget(self._column)
        self.bubbles: list[Bubble] = []

    def add(self, bubble: Bubble) -> Bubble:
        row = QHBoxLayout()
        if bubble.role == "user":
            row.addStretch(1)
            row.addWidget(bubble)
        else:
            row.addWidget(bubble)
            row.addStretch(1)
        self._layout.insertLayout(self._layout.count() - 1, row)
        self.bubbles.append(bubble)
        self.scroll_to_end()
        return bubble

    def scroll_to_end(self) -> None:
        # After layout has run, or the new height is not known yet.
        QTimer.singleShot(0, lambda: self.verticalScrollBar().setValue(self.verticalScrollBar().maximum()))

    def clear(self) -> None:
        self.bubbles.clear()
        while self._layout.count() > 1:
            item = self._layout.takeAt(0)
            row = item.layout() if item is not None else None
            if row is not None:
                while row.count():
                    child = row.takeAt(0)
                    widget = child.widget() if child is not None else None
                    if widget is not None:
                        widget.deleteLater()
                row.deleteLater()
