"""Labels a screen reader can use: the accessible name says what the label is ("Answer timing", "Status"), and the
text it shows stays readable as the accessible description (a name set on a QLabel replaces its text otherwise, so
a screen reader would announce "Status" and never what it says)."""

from __future__ import annotations

from PySide6.QtCore import QSize
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import QLabel, QWidget


class DescribedLabel(QLabel):
    """A QLabel whose accessible name is fixed (what it is) and whose description follows its text (what it says)."""

    def __init__(self, name: str, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName(name)
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 (Qt's name)
        super().setText(text)
        # QWidget.setAccessibleDescription sends QAccessible's DescriptionChanged, so a reader hears the new text.
        self.setAccessibleDescription(text)


class WrappingLabel(DescribedLabel):
    """A word-wrapped label that asks for one line's width but can be squeezed to a word's: it never makes its
    container wider than the container's own content (the timing line under a short answer wraps instead)."""

    def __init__(self, name: str, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(name, text, parent)
        self.setWordWrap(True)

    def sizeHint(self) -> QSize:  # noqa: N802
        metrics = QFontMetrics(self.font())
        margins = self.contentsMargins()
        width = metrics.horizontalAdvance(self.text()) + margins.left() + margins.right() + 2
        return QSize(width, self.heightForWidth(width))

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        metrics = QFontMetrics(self.font())
        return QSize(min(self.sizeHint().width(), metrics.horizontalAdvance("M") * 4), metrics.height())
