"""The chat: a scrolling column of message bubbles. Questions on the right, answers on the left, never mixed.

An answer streams in as Markdown. Re-parsing all of it on every update costs the square of its length, so an answer
is a stack of blocks (`BlockSplitter`): a block that can no longer change (a paragraph followed by a blank line and
the start of something else, a closed code fence) is rendered once, and only the open block at the end is rendered
again as pieces arrive. Code blocks are their own widgets: a background, a Copy button, and lines that scroll inside
the block instead of widening the chat.

Nothing in an answer loads anything: its documents refuse every resource (`InertDocument`), raw HTML is off, and the
image syntax is shown as text. Text wraps anywhere it must (a long path or URL), so the chat never scrolls sideways.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QCoreApplication, QEvent, QPoint, QSize, Qt, QTimer, Signal
from PySide6.QtGui import (
    QFontDatabase,
    QGuiApplication,
    QImage,
    QPixmap,
    QResizeEvent,
    QTextDocument,
    QTextOption,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QTextEdit,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.core.inference.answerer import TurnStats
from app.desktop.accessible import DescribedLabel, WrappingLabel

COPIED_MS = 1500
ANSWER_MAX_WIDTH = 720
QUESTION_MAX_WIDTH = 560
EMPTY_CHAT_TEXT = (
    "Ask about what the camera sees: type a question below and press Enter. The live frame at that moment is the "
    "one the model looks at; follow-up questions ask about the same frame until you capture, open or paste another."
)


@dataclass(frozen=True)
class SeenTimes:
    """What the timing line says beyond the engine's own `TurnStats`: the turn as the person saw it (the session
    binding knows these; the engine does not)."""

    ttft_ms: float | None = None  # the first token counted from Send (None: the engine's own count)
    image_prepared: bool = False  # the image was read while the question was typed
    image_wait_ms: float = 0.0  # the answer waited this long for a preparation still under way


def format_timings(stats: TurnStats, seen: SeenTimes = SeenTimes()) -> str:
    """The small line under an answer: image encode (or "image cached"), time to first token, speed."""
    parts = []
    if seen.image_prepared:
        parts.append("image read while you typed")
    elif seen.image_wait_ms:
        parts.append(f"image {seen.image_wait_ms / 1000:.1f} s")
    elif stats.image_cached:
        parts.append("image cached")
    elif stats.image_encode_ms:
        parts.append(f"image {stats.image_encode_ms / 1000:.1f} s")
    ttft_ms = seen.ttft_ms if seen.ttft_ms is not None else stats.ttft_ms
    if ttft_ms:  # an answer stored without timings (a watch record, an extraction) was never timed
        parts.append(f"first token {ttft_ms / 1000:.2f} s")
    if stats.decode_tok_s:
        parts.append(f"{stats.decode_tok_s:.1f} tok/s")
    if stats.context_rebuilt:
        parts.append(f"context rebuilt ({stats.dropped_turns} old turns dropped)")
    return " · ".join(parts)


# --- splitting streamed Markdown into blocks (plain Python: no Qt) --------------------------------------------------

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_LIST_ITEM = re.compile(r"^ {0,3}(?:[-+*]|\d{1,9}[.)])(?:[ \t]|$)")


@dataclass(frozen=True)
class Block:
    """One block of an answer: "markdown" (its source) or "code" (the code inside a fence, and its language)."""

    kind: str
    text: str
    language: str = ""


def _fence(line: str) -> re.Match[str] | None:
    """The opening line of a fenced code block (a backtick fence's info string has no backtick)."""
    match = _FENCE.match(line)
    if match is None or (match.group(1)[0] == "`" and "`" in match.group(2)):
        return None
    return match


def _closing_fence(line: str, marker: str) -> bool:
    stripped = line.strip()
    return len(line) - len(line.lstrip(" ")) <= 3 and len(stripped) >= len(marker) and set(stripped) == {marker[0]}


def _decided(line: str, complete: bool, in_list: bool) -> bool:
    """Whether the first line after a blank one shows yet if it continues the block above (indented, or the next
    item of a list) — decided as soon as its first characters say so, to keep the open block short."""
    if complete:
        return True
    if not line or line[0] in " \t":
        return False
    return not in_list or line[0] not in "-+*0123456789"


def take_block(text: str, final: bool = False) -> tuple[Block | None, str]:
    """The first block of `text` if nothing arriving later can change it (any block when `final`), and the rest.
    (None, text) when the first block is still open."""
    lines = text.split("\n")
    complete = len(lines) if final else len(lines) - 1  # lines[:complete] are whole lines
    start = 0
    while start < len(lines) and not lines[start].strip():
        start += 1
    if start >= len(lines):
        return None, "" if final else text
    fence = _fence(lines[start])
    if fence is not None:
        if start >= complete:
            return None, text  # the opening line is still arriving
        marker, language = fence.group(1), fence.group(2).strip()
        for end in range(start + 1, complete):
            if _closing_fence(lines[end], marker):
                return Block("code", "\n".join(lines[start + 1 : end]), language), "\n".join(lines[end + 1 :])
        if final:
            return Block("code", "\n".join(lines[start + 1 :]).rstrip("\n"), language), ""
        return None, text
    in_list = _LIST_ITEM.match(lines[start]) is not None
    end = start + 1
    while end < complete:
        line = lines[end]
        if _fence(line) and not line.startswith((" ", "\t")):
            return Block("markdown", "\n".join(lines[start:end])), "\n".join(lines[end:])
        if line.strip():
            end += 1
            continue
        after = end + 1
        while after < complete and not lines[after].strip():
            after += 1
        if after >= len(lines) or not _decided(lines[after], after < complete, in_list):
            break  # what follows the blank line is not known yet
        following = lines[after]
        if following[:1] in (" ", "\t") or (in_list and _LIST_ITEM.match(following)):
            end = after  # an indented line or the next item: the same block goes on
            continue
        return Block("markdown", "\n".join(lines[start:end])), "\n".join(lines[after:])
    if final:
        return Block("markdown", "\n".join(lines[start:]).rstrip()), ""
    return None, text


def open_block(text: str) -> Block | None:
    """The block still arriving at the end of an answer, as it would render now (None: nothing but blank lines)."""
    stripped = text.lstrip("\n")
    if not stripped.strip():
        return None
    first, _, rest = stripped.partition("\n")
    fence = _fence(first)
    if fence is not None:
        return Block("code", rest, fence.group(2).strip())
    return Block("markdown", stripped.rstrip())


class BlockSplitter:
    """Feeds on an answer's pieces; hands out each block once it is closed. The text it keeps (`pending`) is only
    the open block, so each update costs that block's length, not the answer's."""

    def __init__(self) -> None:
        self.pending = ""

    def feed(self, piece: str) -> list[Block]:
        self.pending += piece
        return self._take(final=False)

    def close(self) -> list[Block]:
        """The answer ended: whatever is still open is final."""
        return self._take(final=True)

    def tail(self) -> Block | None:
        return open_block(self.pending)

    def _take(self, final: bool) -> list[Block]:
        closed: list[Block] = []
        while True:
            block, rest = take_block(self.pending, final)
            if block is None:
                self.pending = rest
                return closed
            closed.append(block)
            self.pending = rest


# --- rendering --------------------------------------------------------------------------------------------------

MARKDOWN_FEATURES = QTextDocument.MarkdownFeature.MarkdownDialectGitHub | QTextDocument.MarkdownFeature.MarkdownNoHTML


def inert_markdown(text: str) -> str:
    """Markdown whose image syntax shows as the text it is: a model's answer, or a stored chat, could name any local
    file or URL in `![alt](path)` (the documents refuse to load resources as well)."""
    return text.replace("![", "!\\[")


def render_markdown(document: QTextDocument, markdown: str) -> None:
    """Parse `markdown` into `document`: every Markdown parse of the chat goes through here (tests count them)."""
    document.setMarkdown(inert_markdown(markdown), MARKDOWN_FEATURES)


class InertDocument(QTextDocument):
    """A text document that loads nothing: no image, style sheet or other resource from disk or the network."""

    def loadResource(self, type: int, name: Any) -> Any:  # noqa: N802, A002 (Qt's names)
        return None


class TextBlock(QTextEdit):
    """A read-only block of text sized to its content: as wide as its longest line when there is room, squeezed
    to a few characters (wrapping anywhere, even inside a long URL) when there is not, and exactly as tall as it
    needs for the width it gets. Mouse and keyboard selection work; wheel events scroll the chat, not the block."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("textBlock")
        self.setDocument(InertDocument(self))
        self.document().setDocumentMargin(0)
        self.setReadOnly(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setWordWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        self.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.TextSelectableByKeyboard
        )
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)  # no Tab stop per paragraph; a click allows Ctrl+C
        self.viewport().setAutoFillBackground(False)
        policy = QSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)
        self._measure: QTextDocument | None = None
        self._natural: int | None = None
        self._heights: dict[int, int] = {}

    def show_markdown(self, markdown: str) -> None:
        render_markdown(self.document(), markdown)
        self._changed()

    def show_plain(self, text: str) -> None:
        self.document().setPlainText(text)
        self._changed()

    def text(self) -> str:
        return self.document().toPlainText()

    def _changed(self) -> None:
        self._measure = None
        self._natural = None
        self._heights.clear()
        self.updateGeometry()

    def _measuring(self) -> QTextDocument:
        # A copy to measure at any width without re-laying out the document on screen.
        if self._measure is None:
            self._measure = self.document().clone(self)
            self._measure.setDocumentMargin(0)
            self._measure.setDefaultTextOption(self.document().defaultTextOption())
            self._measure.setDefaultFont(self.font())
        return self._measure

    def natural_width(self) -> int:
        """The width of the longest line, unwrapped (cached until the text changes: layouts ask often)."""
        if self._natural is None:
            measure = self._measuring()
            measure.setTextWidth(-1)
            self._natural = math.ceil(measure.idealWidth()) + 2
        return self._natural

    def hasHeightForWidth(self) -> bool:  # noqa: N802
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802
        if width not in self._heights:
            measure = self._measuring()
            measure.setTextWidth(max(1, width))
            self._heights[width] = math.ceil(measure.size().height())
        return self._heights[width]

    def sizeHint(self) -> QSize:  # noqa: N802
        width = self.natural_width()
        return QSize(width, self.heightForWidth(width))

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        metrics = self.fontMetrics()
        return QSize(min(self.natural_width(), metrics.horizontalAdvance("M") * 3), metrics.height())

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        event.ignore()  # the chat scrolls (and Ctrl+wheel does not zoom one paragraph)


def flash_copied(button: QPushButton, label: str = "Copy") -> None:
    """Say a copy worked, then offer Copy again."""
    button.setText("Copied")
    QTimer.singleShot(COPIED_MS, button, lambda: button.setText(label))


class CodeScroll(QScrollArea):
    """The code's lines, scrolling sideways inside their block when they are wider than it."""

    def __init__(self, label: QLabel) -> None:
        super().__init__()
        self.setObjectName("codeScroll")
        self.setWidget(label)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        policy = QSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)
        self._label = label

    def hasHeightForWidth(self) -> bool:  # noqa: N802
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802
        hint = self._label.sizeHint()
        bar = self.horizontalScrollBar().sizeHint().height() if hint.width() > width else 0
        return hint.height() + bar

    def sizeHint(self) -> QSize:  # noqa: N802
        width = self._label.sizeHint().width()
        return QSize(width, self.heightForWidth(width))

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        return QSize(self.fontMetrics().horizontalAdvance("M") * 3, self.heightForWidth(0))

    def resizeEvent(self, event: Any) -> None:  # noqa: N802
        super().resizeEvent(event)
        self.setFixedHeight(self.heightForWidth(self.width()))  # room for the sideways scroll bar when it shows


class CodeBlock(QFrame):
    """A fenced code block: its language, a Copy button for just this code, and unwrapped lines."""

    def __init__(self, code: str = "", language: str = "") -> None:
        super().__init__()
        self.setObjectName("codeBlock")
        self.setAccessibleName("Code")
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 6)
        layout.setSpacing(2)
        header = QHBoxLayout()
        self.language_label = QLabel()
        self.language_label.setObjectName("codeLanguage")
        header.addWidget(self.language_label)
        header.addStretch(1)
        self.copy_button = QPushButton("Copy")
        self.copy_button.setObjectName("codeCopyButton")
        self.copy_button.setAccessibleName("Copy code")
        self.copy_button.setFlat(True)
        self.copy_button.clicked.connect(self.copy_code)
        header.addWidget(self.copy_button)
        layout.addLayout(header)
        self.code_label = QLabel()
        self.code_label.setObjectName("codeText")
        self.code_label.setTextFormat(Qt.TextFormat.PlainText)
        self.code_label.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.code_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.code_label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.code_scroll = CodeScroll(self.code_label)
        layout.addWidget(self.code_scroll)
        self.code = ""
        self.set_code(code, language)

    def set_code(self, code: str, language: str = "") -> None:
        # Plain text: updating a streaming code block parses nothing.
        self.code = code
        self.code_label.setText(code)
        self.language_label.setText(language)
        self.code_scroll.updateGeometry()

    def copy_code(self) -> None:
        QGuiApplication.clipboard().setText(self.code)
        flash_copied(self.copy_button)


class BlockStack(QWidget):
    """An answer's body: its closed blocks, each rendered once, and the open block at the end, rendered again on
    each update. `set_text` with a longer version of the same text feeds only the new part."""

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("answerBody")
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(6)
        self._splitter = BlockSplitter()
        self._source = ""
        self._final = False
        self.blocks: list[QWidget] = []  # closed blocks, in order
        self._tail: QWidget | None = None
        self._tail_block: Block | None = None
        self.set_text("")

    def set_text(self, text: str) -> None:
        if self._final or not text.startswith(self._source):
            self._reset()
        delta = text[len(self._source) :]
        self._source = text
        for block in self._splitter.feed(delta) if delta else []:
            self._add_closed(block)
        self._show_tail(self._splitter.tail())

    def finish(self) -> None:
        """The answer is complete: its open block is final too."""
        for block in self._splitter.close():
            self._add_closed(block)
        self._show_tail(None)
        if not self.blocks and isinstance(self._tail, TextBlock):
            self._tail.show_plain("(no answer)")  # the model ended before saying anything
        self._final = True

    def _reset(self) -> None:
        for widget in [*self.blocks, *([self._tail] if self._tail is not None else [])]:
            widget.setParent(None)
            widget.deleteLater()
        self.blocks = []
        self._tail = None
        self._tail_block = None
        self._splitter = BlockSplitter()
        self._source = ""
        self._final = False

    def _widget_for(self, block: Block, reuse: QWidget | None, shown: Block | None) -> QWidget:
        """A widget showing `block`: `reuse` if it is of the right kind (rendered again only if it shows something
        else), a new one otherwise."""
        if block.kind == "code":
            code = reuse if isinstance(reuse, CodeBlock) else CodeBlock()
            if shown != block:
                code.set_code(block.text, block.language)
            return code
        text = reuse if isinstance(reuse, TextBlock) else TextBlock()  # the "…" placeholder too: a new one costs
        if shown != block or text is not reuse:
            text.show_markdown(block.text)
        return text

    def _add_closed(self, block: Block) -> None:
        widget = self._widget_for(block, self._tail, self._tail_block)
        if widget is self._tail:
            self._tail = None
            self._tail_block = None
        else:
            self._layout.insertWidget(len(self.blocks), widget)
        self.blocks.append(widget)

    def _show_tail(self, block: Block | None) -> None:
        if block is None and self.blocks:
            if self._tail is not None:
                self._tail.setParent(None)
                self._tail.deleteLater()
            self._tail = None
            self._tail_block = None
            return
        if block is None:
            # Nothing yet: an ellipsis while the answer is coming (an empty final answer keeps it as well).
            placeholder = self._tail if isinstance(self._tail, TextBlock) and self._tail_block is None else None
            if placeholder is None:
                self._replace_tail(TextBlock())
                assert isinstance(self._tail, TextBlock)
                self._tail.show_plain("…")
            return
        widget = self._widget_for(block, self._tail, self._tail_block)
        if widget is not self._tail:
            self._replace_tail(widget)
        self._tail_block = block

    def _replace_tail(self, widget: QWidget) -> None:
        if self._tail is not None:
            self._tail.setParent(None)
            self._tail.deleteLater()
        self._tail = widget
        self._tail_block = None
        self._layout.addWidget(widget)

    def widgets(self) -> list[QWidget]:
        """Every block widget on screen, in order."""
        return [*self.blocks, *([self._tail] if self._tail is not None else [])]


def repolish(widget: QWidget) -> None:
    """Apply the style sheet again: Qt does not re-evaluate [property] selectors when a dynamic property changes."""
    style = widget.style()
    style.unpolish(widget)
    style.polish(widget)
    widget.update()


class Bubble(QWidget):
    """One message: `card` is the bubble drawn (its dynamic properties `role` — "user" or "assistant" — and
    `stopped`/`failed` pick its style); an answer has a line under it with its timings, the engine that gave it,
    its versions (‹ 1/2 ›) and Copy. The line is outside the card, so a short answer is not as wide as its timings.
    """

    version_requested = Signal(int)  # the answer version (0-based) the user asked to see

    def __init__(self, role: str, text: str = "", thumbnail: QPixmap | None = None, *, engine: str = "") -> None:
        super().__init__()
        self.role = role
        self.setProperty("role", role)
        self.setObjectName(f"{role}Message")
        self.setAccessibleName("Your question" if role == "user" else "Answer")
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(2)
        self.card = QFrame()
        self.card.setObjectName(f"{role}Bubble")
        self.card.setProperty("role", role)
        self.card.setFrameShape(QFrame.Shape.StyledPanel)
        self.card.setMaximumWidth(QUESTION_MAX_WIDTH if role == "user" else ANSWER_MAX_WIDTH)
        self.card.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Preferred)
        card_row = QHBoxLayout()
        card_row.setContentsMargins(0, 0, 0, 0)
        if role == "user":
            card_row.addStretch(1)
        card_row.addWidget(self.card)
        if role != "user":
            card_row.addStretch(1)
        outer.addLayout(card_row)
        layout = QVBoxLayout(self.card)
        layout.setContentsMargins(12, 8, 12, 8)
        self.thumbnail: QLabel | None = None
        self.frame_image: QImage | None = None  # what the thumbnail shows, to tell a follow-up about the same frame
        if thumbnail is not None:
            self.thumbnail = QLabel()
            self.thumbnail.setObjectName("bubbleThumbnail")
            self.thumbnail.setAccessibleName("The frame this question is about")
            self.thumbnail.setPixmap(thumbnail)
            self.frame_image = thumbnail.toImage()
            layout.addWidget(self.thumbnail)
        self._text = ""
        self.stopped = False
        self.question_text: TextBlock | None = None
        self.body: BlockStack | None = None
        if role == "user":
            self.question_text = TextBlock()  # shown as typed
            layout.addWidget(self.question_text)
        else:
            self.body = BlockStack()
            layout.addWidget(self.body)
            self._build_footer(outer)
            self.set_engine(engine)
            self.set_versions(0, 1)
        self.set_text(text)

    def _build_footer(self, outer: QVBoxLayout) -> None:
        # Under the card: the timing line (wrapping when the chat is narrow), then who answered, ‹ 1/2 › and Copy.
        self.timing_label = WrappingLabel("Answer timing")
        self.timing_label.setObjectName("timingLabel")
        self.timing_label.setContentsMargins(6, 0, 6, 0)
        timing_row = QHBoxLayout()
        timing_row.addWidget(self.timing_label)
        timing_row.addStretch(1)
        outer.addLayout(timing_row)
        footer = QHBoxLayout()
        footer.setContentsMargins(6, 0, 6, 0)
        footer.setSpacing(8)
        self.engine_label = WrappingLabel("Answered by")
        self.engine_label.setObjectName("engineLabel")
        footer.addWidget(self.engine_label)
        self.previous_version = QToolButton()
        self.previous_version.setText("‹")
        self.previous_version.setObjectName("previousVersion")
        self.previous_version.setAccessibleName("Previous answer version")
        self.previous_version.clicked.connect(lambda: self.version_requested.emit(self.version - 1))
        footer.addWidget(self.previous_version)
        self.version_label = DescribedLabel("Answer version")
        self.version_label.setObjectName("versionLabel")
        footer.addWidget(self.version_label)
        self.next_version = QToolButton()
        self.next_version.setText("›")
        self.next_version.setObjectName("nextVersion")
        self.next_version.setAccessibleName("Next answer version")
        self.next_version.clicked.connect(lambda: self.version_requested.emit(self.version + 1))
        footer.addWidget(self.next_version)
        self.copy_button = QPushButton("Copy")
        self.copy_button.setObjectName("copyButton")
        self.copy_button.setAccessibleName("Copy answer")
        self.copy_button.setFlat(True)
        self.copy_button.clicked.connect(self.copy_text)
        footer.addWidget(self.copy_button)
        footer.addStretch(1)
        outer.addLayout(footer)

    @property
    def text(self) -> str:
        return self._text

    def set_text(self, text: str) -> None:
        self._text = text
        if self.question_text is not None:
            self.question_text.show_plain(text)
        elif self.body is not None:
            self.body.set_text(text)

    def append(self, piece: str) -> None:
        self.set_text(self._text + piece)

    def set_engine(self, label: str) -> None:
        """Which engine and model gave this answer, e.g. "demo-llama · this computer" or "qwen · 192.168.1.5:8080"
        (`AnsweredBy.label`, as history stores it)."""
        self.engine_label.setText(label)
        self.engine_label.setVisible(bool(label))

    def set_versions(self, index: int, count: int) -> None:
        """Show ‹ index+1/count › when the question has more than one answer (the arrows ask for the neighbours
        through `version_requested`)."""
        self.version = index
        self.version_count = count
        shown = count > 1
        for widget in (self.previous_version, self.version_label, self.next_version):
            widget.setVisible(shown)
        self.version_label.setText(f"{index + 1}/{count}")
        self._enable_arrows()

    def lock_versions(self, locked: bool) -> None:
        """While an answer streams, the arrows are off: another version cannot be chosen under it."""
        self._versions_locked = locked
        self._enable_arrows()

    def _enable_arrows(self) -> None:
        locked = getattr(self, "_versions_locked", False)
        self.previous_version.setEnabled(not locked and self.version > 0)
        self.next_version.setEnabled(not locked and self.version < self.version_count - 1)

    def hide_thumbnail(self) -> None:
        """A follow-up about the frame already shown above: the picture is not repeated."""
        if self.thumbnail is not None:
            self.thumbnail.hide()

    def finish(self, stats: TurnStats, seen: SeenTimes = SeenTimes()) -> None:
        """The answer is complete (or stopped): its timing line under it."""
        self.stopped = stats.finish_reason == "cancelled"
        line = format_timings(stats, seen)
        if self.stopped:
            line = " · ".join(part for part in ("stopped", line) if part)
            if not self._text:
                self.set_text("*(stopped before the first word)*")
        if self.body is not None:
            self.body.finish()
        self.timing_label.setText(line)
        self._set_state("stopped", self.stopped)
        self._set_state("failed", False)  # a version shown again in a bubble that showed a failed one

    def fail(self, message: str) -> None:
        self.set_text((self._text + "\n\n" if self._text else "") + f"**Error:** {message}")
        if self.body is not None:
            self.body.finish()
        self.timing_label.setText("error")
        self._set_state("failed", True)

    def _set_state(self, name: str, value: bool) -> None:
        changed = bool(self.card.property(name)) != value
        self.setProperty(name, value)
        self.card.setProperty(name, value)
        if changed and self.card.testAttribute(Qt.WidgetAttribute.WA_WState_Polished):
            repolish(self.card)  # a card not polished yet is polished with its properties when it is first shown

    def code_blocks(self) -> list[CodeBlock]:
        return [w for w in self.body.widgets() if isinstance(w, CodeBlock)] if self.body is not None else []

    def copy_text(self) -> None:
        QGuiApplication.clipboard().setText(self._text)
        flash_copied(self.copy_button)


PAGE_BUBBLES = 8  # bubbles per page of the chat column (a render step's turns fill about one)
BUBBLE_SPACING = 10


class BubblePage(QWidget):
    """A few bubbles one above the other, laid out here rather than by a QLayout, with their height for each width
    remembered until one of them changes.

    The chat column's layout asks every item's height again whenever anything in it changes; with the bubbles as its
    items, Qt walked every bubble's own layouts (and each asked Python for its meta-object) on each of those passes,
    so each step of building a chat cost more the more bubbles were on screen (about 0.3 ms per bubble per step, the
    "Show N earlier turns" stall). A page answers from its cache, so a step costs what its own bubbles cost."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chatPage")
        policy = QSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)
        self._bubbles: list[QWidget] = []
        self._heights: dict[int, int] = {}
        self._hints: tuple[QSize, QSize] | None = None  # (sizeHint, minimumSizeHint), until a bubble changes

    def count(self) -> int:
        return len(self._bubbles)

    def index_of(self, bubble: QWidget) -> int:
        return self._bubbles.index(bubble)

    def insert_bubble(self, index: int, bubble: QWidget) -> None:
        bubble.setParent(self)
        self._bubbles.insert(index, bubble)
        if not (bubble.isHidden() and bubble.testAttribute(Qt.WidgetAttribute.WA_WState_ExplicitShowHide)):
            bubble.show()  # as a layout shows a widget added to it
        if self.isHidden() and self.testAttribute(Qt.WidgetAttribute.WA_WState_ExplicitShowHide):
            self.show()  # it was hidden when its last bubble was taken out
        # Laid out once for all the bubbles a step adds (posted LayoutRequests are merged into one).
        self._heights.clear()
        self._hints = None
        self.updateGeometry()
        self._fit_column()
        QCoreApplication.postEvent(self, QEvent(QEvent.Type.LayoutRequest))

    def _fit_column(self) -> None:
        """Make the column as tall as its content now, before its layout runs: laid out in its old height, every page
        would be squeezed a little and placed again once the scroll area made the column taller (two passes over
        every page each time the chat grows)."""
        column = self.parentWidget()
        if column is not None and self.isVisible():
            needed = column.heightForWidth(column.width())
            if needed > column.height():
                column.resize(column.width(), needed)

    def _shown(self) -> list[QWidget]:
        return [bubble for bubble in self._bubbles if not bubble.isHidden()]

    @staticmethod
    def _height_of(bubble: QWidget, width: int) -> int:
        height = bubble.heightForWidth(width) if bubble.hasHeightForWidth() else -1
        return height if height >= 0 else bubble.sizeHint().height()

    def heightForWidth(self, width: int) -> int:  # noqa: N802 (hasHeightForWidth: the size policy says so)
        if width not in self._heights:
            heights = [self._height_of(bubble, width) for bubble in self._shown()]
            self._heights[width] = sum(heights) + BUBBLE_SPACING * max(0, len(heights) - 1)
        return self._heights[width]

    def _size_hints(self) -> tuple[QSize, QSize]:
        if self._hints is None:
            shown = self._shown()
            width = max((b.sizeHint().width() for b in shown), default=0)
            minimum = max((b.minimumSizeHint().width() for b in shown), default=0)
            self._hints = QSize(width, self.heightForWidth(width)), QSize(minimum, 0)
        return self._hints

    def sizeHint(self) -> QSize:  # noqa: N802
        return self._size_hints()[0]

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        return self._size_hints()[1]

    def _place(self) -> None:
        width, top = self.width(), 0
        for bubble in self._shown():
            height = self._height_of(bubble, width)
            bubble.setGeometry(0, top, width, height)
            top += height + BUBBLE_SPACING

    def _relayout(self, force: bool = False) -> None:
        """A bubble changed (or was added, shown, hidden or taken out): heights again, the column told if they
        differ."""
        before = (self._heights.get(self.width()), self._hints)
        self._heights.clear()
        self._hints = None
        if not self.isVisible():  # not laid out yet (a new page): the column asks once it is shown
            self.updateGeometry()
            return
        after = (self.heightForWidth(self.width()), self._size_hints())
        self._place()
        if force or before != after:
            self.updateGeometry()
            self._fit_column()

    def event(self, event: QEvent) -> bool:
        kind = event.type()
        if kind == QEvent.Type.LayoutRequest:  # a bubble's size hint changed, or one was shown or hidden
            self._relayout()
            return True
        if kind == QEvent.Type.ChildRemoved:  # a bubble taken out (`setParent(None)`)
            children = self.children()
            self._bubbles = [b for b in self._bubbles if any(b is child for child in children)]
            if not self._bubbles:
                self.hide()
            self._relayout(force=True)
        elif kind == QEvent.Type.Show:  # changes made while hidden sent no LayoutRequest
            self._relayout(force=True)
        elif kind == QEvent.Type.Resize:
            assert isinstance(event, QResizeEvent)
            # Only a new width moves the bubbles. The column's layout gives every page a little less height, then
            # its full height again, each time the chat grows (it is laid out once before the scroll area makes it
            # taller): those passes cost nothing here.
            if event.size().width() != event.oldSize().width():
                self._place()
        return super().event(event)


class ChatView(QScrollArea):
    """The conversation, top to bottom. Never scrolls sideways: everything in it wraps or scrolls in its own block.
    Empty, it says what to do. Its bubbles are on pages of PAGE_BUBBLES (`BubblePage`), so adding one costs the same
    in a chat of ten turns as in one of three hundred."""

    earlier_requested = Signal()  # "Show earlier messages" pressed

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("chatView")
        self.setAccessibleName("Conversation")
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._column = QWidget()
        self._column.setObjectName("chatColumn")
        self._layout = QVBoxLayout(self._column)
        self._layout.setContentsMargins(12, 12, 12, 12)
        self._layout.setSpacing(BUBBLE_SPACING)
        self.empty_label = QLabel(EMPTY_CHAT_TEXT)
        self.empty_label.setObjectName("emptyChatLabel")
        self.empty_label.setWordWrap(True)
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setContentsMargins(24, 48, 24, 24)
        self._layout.addWidget(self.empty_label)
        # A long chat opens on its latest turns (building every bubble of hundreds of turns blocked the GUI thread
        # for seconds); the rest are one click away.
        self.earlier_button = QPushButton()
        self.earlier_button.setObjectName("earlierButton")
        self.earlier_button.setAccessibleName("Show earlier messages")
        self.earlier_button.clicked.connect(self.earlier_requested.emit)
        self.earlier_button.hide()
        self._layout.addWidget(self.earlier_button, 0, Qt.AlignmentFlag.AlignHCenter)
        self._layout.addStretch(1)
        self.setWidget(self._column)
        self.bubbles: list[Bubble] = []
        self._pages: list[BubblePage] = []  # the bubbles, PAGE_BUBBLES at a time, top to bottom
        self._doomed: list[BubblePage] = []  # pages of a cleared chat, deleted one per loop pass
        self._deleting = QTimer(self)
        self._deleting.setInterval(0)
        self._deleting.timeout.connect(self._delete_a_page)
        self._last_frame: QImage | None = None
        # Stay at the end while the conversation grows (a streaming answer, its timing line), unless the user
        # scrolled up to read: then the view stays where they are.
        self.following = True
        # While earlier turns go in above, the bubble that was at the top stays where it was on screen (`hold`).
        self._held: tuple[Bubble, int] | None = None
        self._restoring = False
        bar = self.verticalScrollBar()
        bar.valueChanged.connect(self._value_changed)
        bar.rangeChanged.connect(self._range_changed)

    def add(self, bubble: Bubble) -> Bubble:
        if bubble.frame_image is not None:
            if self._last_frame is not None and bubble.frame_image == self._last_frame:
                bubble.hide_thumbnail()  # a follow-up about the frame shown above
            self._last_frame = bubble.frame_image
        self._place(len(self.bubbles), bubble)
        self.bubbles.append(bubble)
        self.empty_label.setVisible(False)
        self.scroll_to_end()
        return bubble

    def insert(self, position: int, bubble: Bubble) -> Bubble:
        """Put `bubble` above the one at `position` (earlier turns shown on request); the view does not jump to the
        end. A frame the bubble above already shows is not repeated, as in `add`."""
        if bubble.frame_image is not None:
            above = next((b.frame_image for b in reversed(self.bubbles[:position]) if b.frame_image is not None), None)
            if above is not None and bubble.frame_image == above:
                bubble.hide_thumbnail()
        self._place(position, bubble)
        self.bubbles.insert(position, bubble)
        self.empty_label.setVisible(False)
        return bubble

    def _place(self, position: int, bubble: Bubble) -> None:
        """Put `bubble` on a page where `bubbles[position]` is now (the end: after the last one): the page of the
        bubble it goes above or below, or a new page when that one is full."""
        pages = self._pages
        if position >= len(self.bubbles):
            if not pages or pages[-1].count() >= PAGE_BUBBLES:
                self._new_page(len(pages))
            pages[-1].insert_bubble(pages[-1].count(), bubble)
            return
        below = self.bubbles[position]
        page = below.parentWidget()
        assert isinstance(page, BubblePage)
        offset = page.index_of(below)
        if offset > 0:
            page.insert_bubble(offset, bubble)
            return
        index = pages.index(page)
        if index > 0 and pages[index - 1].count() < PAGE_BUBBLES:  # the end of the page above
            pages[index - 1].insert_bubble(pages[index - 1].count(), bubble)
        else:
            self._new_page(index).insert_bubble(0, bubble)

    def _new_page(self, index: int) -> BubblePage:
        page = BubblePage()
        row = self._layout.indexOf(self._pages[index]) if index < len(self._pages) else self._layout.count() - 1
        self._layout.insertWidget(row, page)
        self._pages.insert(index, page)
        return page

    def joined_at(self, position: int) -> None:
        """Bubbles were inserted above `position`: the first frame below them is hidden if it is the frame just
        above it, as a chat built top to bottom shows it."""
        above = next((b.frame_image for b in reversed(self.bubbles[:position]) if b.frame_image is not None), None)
        below = next((b for b in self.bubbles[position:] if b.frame_image is not None), None)
        if above is not None and below is not None and below.frame_image == above:
            below.hide_thumbnail()

    def hold(self, bubble: Bubble | None) -> None:
        """Keep `bubble` at its place on screen while bubbles are inserted above it ("Show earlier"): the reader
        stays on the turn they were at, as chat apps do, rather than at the same pixel offset, which put the chat's
        first turn under them. None lets go."""
        bar = self.verticalScrollBar()
        self._held = None if bubble is None else (bubble, self._top_of(bubble) - bar.value())

    def _delete_a_page(self) -> None:
        if self._doomed:
            self._doomed.pop().deleteLater()
        if not self._doomed:
            self._deleting.stop()

    def bubble_at_top(self) -> Bubble | None:
        """The first bubble not wholly above the visible part of the conversation."""
        top = self.verticalScrollBar().value()
        return next((b for b in self.bubbles if self._top_of(b) + b.height() > top), None)

    def _value_changed(self, value: int) -> None:
        self.following = value >= self.verticalScrollBar().maximum()
        if not self._restoring:
            self._held = None  # the reader scrolled (or the view went to the end): they are where they want to be

    def _top_of(self, bubble: Bubble) -> int:
        return bubble.mapTo(self._column, QPoint(0, 0)).y()

    def _range_changed(self, _low: int, high: int) -> None:
        if self._held is not None:
            self._restore_held()
            QTimer.singleShot(0, self._restore_held)  # once the pages under the new height have their places
        elif self.following:
            self.verticalScrollBar().setValue(high)

    def _restore_held(self) -> None:
        if self._held is not None and self._held[0] in self.bubbles:
            bubble, offset = self._held
            self._restoring = True
            try:
                self.verticalScrollBar().setValue(self._top_of(bubble) - offset)
            finally:
                self._restoring = False

    def show_earlier(self, hidden_turns: int) -> None:
        """Say that `hidden_turns` earlier turns are not shown (0: all are)."""
        self.earlier_button.setText(f"Show {hidden_turns} earlier turn{'s' if hidden_turns != 1 else ''}")
        self.earlier_button.setVisible(hidden_turns > 0)

    def scroll_to_end(self) -> None:
        """Show the end of the conversation, and keep following it as it grows."""
        self.following = True  # the new height is not known until layout runs: rangeChanged then scrolls
        self.verticalScrollBar().setValue(self.verticalScrollBar().maximum())

    def clear(self) -> None:
        """Empty the conversation at once; its pages (with every bubble on them, also one a caller took out of
        `bubbles`) are hidden now and deleted a page per loop pass: the 600 bubbles of a 300-turn chat deleted in
        one go held the GUI thread for over 100 ms (bench.gui_actions, leave a large chat)."""
        for page in self._pages:
            page.hide()
            self._layout.removeWidget(page)
        self._doomed.extend(self._pages)
        if self._doomed and not self._deleting.isActive():
            self._deleting.start()
        self._pages.clear()
        self.bubbles.clear()
        self._held = None
        self._last_frame = None
        self.empty_label.setVisible(True)
