"""The window's one notice area: problems that need the user (no camera, a model that did not load, history that
could not be saved, an engine that does not answer), each saying what to do next.

Notices queue by kind ("camera", "model", "history", "engine", "info", ...): one notice per kind, a newer one of the
same kind replacing it. The newest is shown, with how many more wait behind it; Dismiss or `clear(kind)` — called
when the cause is gone, e.g. the camera came back — reveals the next. A notice may carry one action button ("Open
Settings", "Use this computer"). Its text is what a person can act on: no library names, no errno codes
(`user_text`), and nothing a terminal or a label would mangle (`app.core.errors.printable`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAccessible, QAccessibleEvent
from PySide6.QtWidgets import QFrame, QHBoxLayout, QPushButton, QSizePolicy, QToolButton

from app.core.errors import printable
from app.desktop.accessible import DescribedLabel
from app.desktop.chat_view import repolish

# What a library is to the person reading the notice (dotted module paths such as PIL.Image count as the library).
_LIBRARIES = [
    (r"Pillow|PIL(?:\.\w+)*", "the image reader"),
    (r"OpenCV|cv2(?:\.\w+)*", "the camera reader"),
    # ...but not "llama-cpp-python's server": a server the user runs, and must start differently, is named as such.
    (r"llama[-_]cpp[-_]python(?!'s server)|llama_cpp(?:\.\w+)*|llama\.cpp|libmtmd|mtmd|ggml", "the model engine"),
    (r"sqlite3(?:\.\w+)*|SQLite", "the history database"),
    (r"huggingface_hub(?:\.\w+)*|httpx(?:\.\w+)*|urllib3(?:\.\w+)*|urllib(?:\.\w+)*", "the connection"),
    (r"PySide6(?:\.\w+)*|numpy|NumPy", "the app"),
]
_LIBRARY = re.compile(
    r"\b(?:" + "|".join(f"(?P<l{i}>{p})" for i, (p, _) in enumerate(_LIBRARIES)) + r")(?:\(\d[\w.-]*\))?(?![\w.])"
)  # a version after the name, as in "OpenCV(4.9.0)", goes with it
_ERRNO = re.compile(
    r"\[(?:Errno|WinError)\s*-?\d+\]\s*"  # [Errno 2] , [WinError 5]
    r"|\s*\((?:errno|os error|error code)\s*[=:]?\s*-?\d+\)"  # (errno 13), (os error 2)
    r"|\b(?:errno|os error)\s*[=:]?\s*-?\d+\b:?\s*",  # errno=13, errno 13:
    re.IGNORECASE,
)
# Long enough for our longest worded notice (a server's failure, what to do, and the way back to this computer) to end
# whole; a raw file's bytes are still cut.
NOTICE_LIMIT = 1000
_EXCEPTION_NAME = r"(?:(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Warning)|(?:[A-Za-z_]\w*\.)+error)"
_EXCEPTION_PREFIX = re.compile(r"(?:^|(?<=:\s))" + _EXCEPTION_NAME + r":\s*")  # "OSError: ", "cv2.error: "
_EXCEPTION_IN_PARENTHESES = re.compile(r"\s*\(" + _EXCEPTION_NAME + r"\)")  # " (PIL.UnidentifiedImageError)"


def user_text(message: object) -> str:
    """`message` as a notice shows it: without errno codes, exception class names or library names, and printable."""
    text = str(message)
    text = _ERRNO.sub(" ", text)
    text = _EXCEPTION_IN_PARENTHESES.sub("", text)
    text = _EXCEPTION_PREFIX.sub("", text.strip())
    text = _LIBRARY.sub(lambda m: next(_LIBRARIES[int(k[1:])][1] for k, v in m.groupdict().items() if v), text)
    text = re.sub(r"[ \t]{2,}", " ", text).strip()
    text = re.sub(r"\s+([.,:;])", r"\1", text)
    if text[:1].islower() and not str(message).lstrip().startswith(text[:20]):
        text = text[0].upper() + text[1:]  # a sentence that began with what was taken out or replaced
    return printable(text, limit=NOTICE_LIMIT)


@dataclass
class Notice:
    kind: str
    message: str
    action: str = ""  # the action button's text ("" for none)
    on_action: Callable[[], None] | None = None


class NoticeArea(QFrame):
    """One notice at a time, the newest first; hidden when there is none."""

    action_triggered = Signal(str)  # the kind of the notice whose action button was pressed
    changed = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("noticeArea")
        self.setAccessibleName("Notices")
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        self.message_label = DescribedLabel("Notice")
        self.message_label.setObjectName("noticeText")
        self.message_label.setWordWrap(True)
        self.message_label.setTextFormat(Qt.TextFormat.PlainText)
        self.message_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.message_label, 1)
        self.more_label = DescribedLabel("More notices")
        self.more_label.setObjectName("noticeMore")
        layout.addWidget(self.more_label)
        self.action_button = QPushButton()
        self.action_button.setObjectName("noticeAction")
        self.action_button.clicked.connect(self._act)
        layout.addWidget(self.action_button)
        self.dismiss_button = QToolButton()
        self.dismiss_button.setObjectName("noticeDismiss")
        self.dismiss_button.setText("✕")
        self.dismiss_button.setAccessibleName("Dismiss notice")
        self.dismiss_button.setToolTip("Dismiss this notice")
        self.dismiss_button.clicked.connect(self.dismiss)
        layout.addWidget(self.dismiss_button)
        self._queue: list[Notice] = []  # oldest first; the last one is shown
        self._refresh()

    # --- the queue ----------------------------------------------------------------------------------------------

    def show_notice(
        self, kind: str, message: str, *, action: str = "", on_action: Callable[[], None] | None = None
    ) -> Notice:
        """Show `message` (replacing an earlier notice of the same kind), with one action button when `action`."""
        notice = Notice(kind, user_text(message), action, on_action)
        self._queue = [n for n in self._queue if n.kind != kind] + [notice]
        self._refresh(announce=True)
        return notice

    def clear(self, kind: str) -> None:
        """The cause of `kind`'s notice is gone: remove it (the next one, if any, shows)."""
        before = len(self._queue)
        self._queue = [n for n in self._queue if n.kind != kind]
        if len(self._queue) != before:
            self._refresh()

    def clear_all(self) -> None:
        self._queue = []
        self._refresh()

    def dismiss(self) -> None:
        """The user closed the notice on screen."""
        if self._queue:
            self._queue.pop()
            self._refresh()

    @property
    def current(self) -> Notice | None:
        return self._queue[-1] if self._queue else None

    @property
    def notices(self) -> list[Notice]:
        """Every notice waiting, the one shown first."""
        return list(reversed(self._queue))

    def text(self) -> str:
        """The message on screen ("" when there is none)."""
        return self.current.message if self.current is not None else ""

    # --- showing ------------------------------------------------------------------------------------------------

    def _act(self) -> None:
        notice = self.current
        if notice is None:
            return
        if notice.on_action is not None:
            notice.on_action()
        self.action_triggered.emit(notice.kind)

    def _refresh(self, announce: bool = False) -> None:
        notice = self.current
        self.message_label.setText(notice.message if notice is not None else "")
        waiting = len(self._queue) - 1
        self.more_label.setText(f"+{waiting} more" if waiting > 0 else "")
        self.more_label.setVisible(waiting > 0)
        self.action_button.setText(notice.action if notice is not None else "")
        self.action_button.setVisible(bool(notice is not None and notice.action))
        self.setProperty("kind", notice.kind if notice is not None else "")
        repolish(self)
        self.setVisible(notice is not None)
        if announce and notice is not None:
            # Screen readers speak an alert without the user moving there.
            QAccessible.updateAccessibility(QAccessibleEvent(self.message_label, QAccessible.Event.Alert))
        self.changed.emit()
