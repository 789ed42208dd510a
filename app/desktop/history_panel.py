"""The chat sidebar: stored chats grouped Today / Yesterday / Earlier, search with snippets, rename, delete (with
undo), export.

- `ChatListModel` (a `QAbstractListModel`) holds the rows; each load is merged into it in place (rows inserted,
  removed, moved or changed), so the selection, the scroll position and an open rename editor survive a refresh.
- Every SQLite read and write of the panel runs on its own one-thread pool (`_Background`), in order, never on the
  GUI thread; results come back as queued signals. Search waits SEARCH_DEBOUNCE_MS after the last keystroke.
- The highlighted row is always the chat on screen: clicks and keys move only the keyboard focus (the selection
  is set by `set_open_chat`), so the buttons, which act on the chat on screen, never act on a row that only looks
  chosen. The right-click menu acts on the row it was opened on.
"""

from __future__ import annotations

import contextlib
import datetime
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from PySide6.QtCore import (
    QAbstractListModel,
    QEvent,
    QItemSelectionModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QPoint,
    QRect,
    QSize,
    Qt,
    QThreadPool,
    QTimer,
    Signal,
)
from PySide6.QtGui import QColor, QFont, QFontMetrics, QKeyEvent, QPainter, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QFileDialog,
    QGridLayout,
    QLabel,
    QLineEdit,
    QListView,
    QMenu,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from app.core.history.snippet import Snippet, chat_matches
from app.core.history.store import UNDO_WINDOW_S, HistoryError, HistoryStore, MissingFrameWarning

SEARCH_DEBOUNCE_MS = 250  # typing a word runs one search, not one per keystroke
UNTITLED = "Untitled chat"
GROUPS = ("Today", "Yesterday", "Earlier")
MARK_BACKGROUND = QColor(255, 214, 64)  # the search match, like a browser's <mark>: dark text on yellow in any theme
MARK_TEXT = QColor(0, 0, 0)

ChatIdRole = Qt.ItemDataRole.UserRole + 1
KindRole = Qt.ItemDataRole.UserRole + 2  # "group" (a Today/Yesterday/Earlier header) or "chat"
WhenRole = Qt.ItemDataRole.UserRole + 3  # "14:05", "3 Nov"...
SnippetRole = Qt.ItemDataRole.UserRole + 4  # a Snippet while searching, else None


class Row(NamedTuple):
    """One row of the list: a group header (chat_id None) or a chat. (A tuple: thousands compare at C speed.)"""

    key: tuple[str, Any]
    title: str
    when: str = ""
    chat_id: int | None = None
    snippet: Snippet | None = None


def group_of(stamp: float, now: float) -> str:
    """Today, Yesterday or Earlier, by the local calendar day of `stamp` seen at `now`."""
    day = datetime.date.fromtimestamp(stamp)
    today = datetime.date.fromtimestamp(now)
    if day >= today:
        return "Today"
    return "Yesterday" if day == today - datetime.timedelta(days=1) else "Earlier"


def when_text(stamp: float, now: float) -> str:
    """The time for today's and yesterday's chats, the date for older ones (the year only when it is not this one)."""
    moment = datetime.datetime.fromtimestamp(stamp)
    if group_of(stamp, now) != "Earlier":
        return moment.strftime("%H:%M")
    date = f"{moment.day} {moment.strftime('%b')}"
    return date if moment.year == datetime.date.fromtimestamp(now).year else f"{date} {moment.year}"


def ms_until_next_day(now: float) -> int:
    """Milliseconds from `now` to one second past the next local midnight."""
    tomorrow = datetime.date.fromtimestamp(now) + datetime.timedelta(days=1)
    midnight = datetime.datetime.combine(tomorrow, datetime.time.min).timestamp()
    return max(1000, int((midnight - now) * 1000) + 1000)


def rows_for(chats: Sequence[tuple[int, str, float, Snippet | None]], now: float) -> list[Row]:
    """The list's rows for chats (id, title, updated_at, snippet) newest first: a header before each group."""
    rows: list[Row] = []
    current = None
    for chat_id, title, updated, snippet in chats:
        group = group_of(updated, now)
        if group != current:
            rows.append(Row(("group", group), group))
            current = group
        rows.append(Row(("chat", chat_id), title or UNTITLED, when_text(updated, now), chat_id, snippet))
    return rows


class ChatListModel(QAbstractListModel):
    """The sidebar's rows, merged in place by `set_rows`."""

    title_edited = Signal(int, str)  # chat id, new title (the inline editor committed it)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._rows: list[Row] = []

    # --- reading ------------------------------------------------------------------------------------------------

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row = self._rows[index.row()]
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.EditRole):
            return row.title
        if role == Qt.ItemDataRole.ToolTipRole:
            return row.title if row.chat_id is not None else None
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return row.title
        if role == Qt.ItemDataRole.AccessibleDescriptionRole:
            if row.chat_id is None:
                return None
            return f"{row.when}. {row.snippet.text}" if row.snippet is not None else row.when
        if role == ChatIdRole:
            return row.chat_id
        if role == KindRole:
            return "chat" if row.chat_id is not None else "group"
        if role == WhenRole:
            return row.when
        if role == SnippetRole:
            return row.snippet
        return None

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        if self._rows[index.row()].chat_id is None:
            return Qt.ItemFlag.ItemIsEnabled  # a header: read, never chosen
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEditable

    def setData(
        self, index: QModelIndex | QPersistentModelIndex, value: Any, role: int = Qt.ItemDataRole.EditRole
    ) -> bool:
        """The inline editor's title: shown at once, saved by whoever listens to title_edited."""
        if role != Qt.ItemDataRole.EditRole or not index.isValid():
            return False
        row = self._rows[index.row()]
        title = " ".join(str(value).split())
        if row.chat_id is None or not title or title == row.title:
            return False  # an emptied title keeps the old one
        self.set_title(row.chat_id, title)
        self.title_edited.emit(row.chat_id, title)
        return True

    def row_of(self, chat_id: int | None) -> int:
        """The row showing chat_id, or -1."""
        if chat_id is None:
            return -1
        return next((number for number, row in enumerate(self._rows) if row.chat_id == chat_id), -1)

    def chat_ids(self) -> list[int]:
        return [row.chat_id for row in self._rows if row.chat_id is not None]

    def rows(self) -> list[Row]:
        return list(self._rows)

    # --- changing -----------------------------------------------------------------------------------------------

    def set_title(self, chat_id: int, title: str) -> None:
        number = self.row_of(chat_id)
        if number >= 0:
            self._rows[number] = self._rows[number]._replace(title=title)
            self.dataChanged.emit(self.index(number), self.index(number))

    def set_rows(self, new: list[Row]) -> None:
        """Merge `new` in place: rows gone are removed, rows that moved are moved, new ones inserted, changed ones
        updated, so views keep their selection and scroll position (a reset would lose both). Runs of removed or
        inserted rows go in one step each: a search that narrows thousands of chats to three is one removal."""
        if self._rows == new:
            return
        if not self._rows:
            self.beginInsertRows(QModelIndex(), 0, len(new) - 1)
            self._rows = list(new)
            self.endInsertRows()
            return
        wanted = {row.key for row in new}
        number = len(self._rows) - 1
        while number >= 0:
            if self._rows[number].key in wanted:
                number -= 1
                continue
            last = number
            while number >= 0 and self._rows[number].key not in wanted:
                number -= 1
            self.beginRemoveRows(QModelIndex(), number + 1, last)
            del self._rows[number + 1 : last + 1]
            self.endRemoveRows()
        present = {row.key for row in self._rows}
        number = 0
        while number < len(new):
            row = new[number]
            here = self._rows[number].key if number < len(self._rows) else None
            if here != row.key:
                if row.key not in present:
                    end = number
                    while end < len(new) and new[end].key not in present:
                        end += 1
                    self.beginInsertRows(QModelIndex(), number, end - 1)
                    self._rows[number:number] = new[number:end]
                    self.endInsertRows()
                    number = end
                    continue
                # Rows before `number` already match, so the row is further down: move it up.
                found = next(later for later in range(number + 1, len(self._rows)) if self._rows[later].key == row.key)
                self.beginMoveRows(QModelIndex(), found, found, QModelIndex(), number)
                self._rows.insert(number, self._rows.pop(found))
                self.endMoveRows()
                if self._rows[number] != row:
                    self._rows[number] = row
                    self.dataChanged.emit(self.index(number), self.index(number))
                if len(self._rows) == len(new) and self._rows[number + 1 :] == new[number + 1 :]:
                    return  # one chat moved to the top (the usual change): the rest is as it was
            elif self._rows[number] != row:
                self._rows[number] = row
                self.dataChanged.emit(self.index(number), self.index(number))
            number += 1


class ChatDelegate(QStyledItemDelegate):
    """Paints a header or a chat: its elided title, its time, and while searching a snippet with the match marked.
    Text is drawn as plain text (a title is whatever the user typed: never interpreted as markup)."""

    PAD_X, PAD_Y, GAP = 8, 4, 8

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        # The view asks every row's size when it lays out (thousands of chats): fonts and heights are made once.
        self._font_cache: dict[str, tuple[QFont, QFont, QFont, int, int]] = {}

    def _font_set(self, option: QStyleOptionViewItem) -> tuple[QFont, QFont, QFont, int, int]:
        key = option.font.key()  # type: ignore[attr-defined]
        cached = self._font_cache.get(key)
        if cached is None:
            title = QFont(option.font)  # type: ignore[attr-defined]
            small = QFont(title)
            small.setPointSizeF(max(6.0, title.pointSizeF() * 0.85))
            bold = QFont(small)
            bold.setBold(True)
            cached = (title, small, bold, QFontMetrics(title).height(), QFontMetrics(small).height())
            self._font_cache[key] = cached
        return cached

    def _fonts(self, option: QStyleOptionViewItem) -> tuple[QFont, QFont, QFont]:
        title, small, bold, _line, _small_line = self._font_set(option)
        return title, small, bold

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        _title, _small, _bold, line, small_line = self._font_set(option)
        if index.data(KindRole) == "group":
            return QSize(0, small_line + 2 * self.PAD_Y + 4)
        height = line + 2 * self.PAD_Y
        if index.data(SnippetRole) is not None:
            height += small_line + 2
        return QSize(0, height + 2)  # width 0: rows take the view's width and never scroll sideways

    def title_text(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> str:
        """The title as painted: elided to the room left beside the time."""
        title, small, _bold = self._fonts(option)
        room = option.rect.width() - 2 * self.PAD_X
        when = index.data(WhenRole) or ""
        if when:
            room -= QFontMetrics(small).horizontalAdvance(when) + self.GAP
        return QFontMetrics(title).elidedText(index.data(Qt.ItemDataRole.DisplayRole) or "",
                                              Qt.TextElideMode.ElideRight, max(0, room))  # fmt: skip

    def snippet_parts(self, option: QStyleOptionViewItem, snippet: Snippet) -> tuple[str, str, str]:
        """(before, match, after) as painted in the row's width: the match stays whole when it fits, the text
        before it gives way first (elided on the left), then the text after it (elided on the right)."""
        _title, small, bold = self._fonts(option)
        plain, strong = QFontMetrics(small), QFontMetrics(bold)
        room = option.rect.width() - 2 * self.PAD_X
        before = snippet.text[: snippet.start]
        match = snippet.match
        after = snippet.text[snippet.start + snippet.length :]
        match_width = strong.horizontalAdvance(match)
        if match_width >= room:
            return "", strong.elidedText(match, Qt.TextElideMode.ElideRight, max(0, room)), ""
        rest = room - match_width
        after_width = plain.horizontalAdvance(after)
        before_room = min(plain.horizontalAdvance(before), max(rest - after_width, rest // 3))
        shown_before = before
        words = before.lstrip("…").split(" ")
        while words and plain.horizontalAdvance(shown_before) > before_room:  # drop whole words, not half of one
            words.pop(0)
            shown_before = "…" + " ".join(words) if words else ""
        shown_after = plain.elidedText(after, Qt.TextElideMode.ElideRight,
                                       rest - plain.horizontalAdvance(shown_before))  # fmt: skip
        return shown_before, match, shown_after

    def paint(
        self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        title_font, small, bold = self._fonts(opt)
        widget = opt.widget  # type: ignore[attr-defined]
        style = widget.style() if widget is not None else QApplication.style()
        palette = opt.palette  # type: ignore[attr-defined]
        rect: QRect = opt.rect  # type: ignore[attr-defined]
        painter.save()
        try:
            if index.data(KindRole) == "group":
                header = QFont(bold)
                painter.setFont(header)
                painter.setPen(palette.color(QPalette.ColorRole.PlaceholderText))
                area = rect.adjusted(self.PAD_X, self.PAD_Y + 4, -self.PAD_X, 0)
                name = QFontMetrics(header).elidedText(index.data() or "", Qt.TextElideMode.ElideRight, area.width())
                painter.drawText(area, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, name)
                return
            opt.text = ""  # type: ignore[attr-defined]  # the style paints the background, selection and focus only
            style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, widget)
            selected = bool(opt.state & QStyle.StateFlag.State_Selected)  # type: ignore[attr-defined]
            text_colour = palette.color(QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text)
            faint = QColor(text_colour)
            faint.setAlphaF(0.7)
            line = QFontMetrics(title_font).height()
            top = rect.top() + self.PAD_Y
            inner = rect.adjusted(self.PAD_X, 0, -self.PAD_X, 0)
            when = index.data(WhenRole) or ""
            painter.setFont(small)
            painter.setPen(faint)
            painter.drawText(QRect(inner.left(), top, inner.width(), line),
                             Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, when)  # fmt: skip
            painter.setFont(title_font)
            painter.setPen(text_colour)
            left = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
            painter.drawText(QRect(inner.left(), top, inner.width(), line), left, self.title_text(opt, index))
            snippet = index.data(SnippetRole)
            if snippet is not None:
                self._paint_snippet(painter, opt, snippet, QRect(inner.left(), top + line + 2, inner.width(),
                                                                 QFontMetrics(small).height()), faint)  # fmt: skip
        finally:
            painter.restore()

    def _paint_snippet(self, painter: QPainter, option: QStyleOptionViewItem, snippet: Snippet, area: QRect,
                       colour: QColor) -> None:  # fmt: skip
        _title, small, bold = self._fonts(option)
        before, match, after = self.snippet_parts(option, snippet)
        x = area.left()
        centre = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
        painter.setFont(small)
        painter.setPen(colour)
        painter.drawText(QRect(x, area.top(), area.width(), area.height()), centre, before)
        x += QFontMetrics(small).horizontalAdvance(before)
        match_width = QFontMetrics(bold).horizontalAdvance(match)
        painter.fillRect(QRect(x, area.top(), match_width, area.height()), MARK_BACKGROUND)
        painter.setFont(bold)
        painter.setPen(MARK_TEXT)
        painter.drawText(QRect(x, area.top(), match_width, area.height()), centre, match)
        x += match_width
        painter.setFont(small)
        painter.setPen(colour)
        painter.drawText(QRect(x, area.top(), max(0, area.right() - x), area.height()), centre, after)

    def createEditor(
        self, parent: QWidget, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QWidget:
        editor = QLineEdit(parent)
        editor.setObjectName("chatTitleEditor")
        editor.setAccessibleName("Chat title")
        editor.setFrame(False)
        return editor

    def updateEditorGeometry(
        self, editor: QWidget, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        rect: QRect = option.rect  # type: ignore[attr-defined]
        line = QFontMetrics(option.font).height() + 2 * self.PAD_Y  # type: ignore[attr-defined]
        editor.setGeometry(QRect(rect.left() + 2, rect.top(), rect.width() - 4, min(rect.height(), line + 2)))


class ChatListView(QListView):
    """A list whose selection only `HistoryPanel.set_open_chat` sets (the chat on screen): a click opens a chat, a
    right-click opens the menu, arrow keys move the focus, Enter opens the focused chat, F2 renames it."""

    open_requested = Signal(QModelIndex)

    def selectionCommand(
        self, index: QModelIndex | QPersistentModelIndex, event: QEvent | None = None
    ) -> QItemSelectionModel.SelectionFlag:
        return QItemSelectionModel.SelectionFlag.NoUpdate

    def moveCursor(self, action: QAbstractItemView.CursorAction, modifiers: Qt.KeyboardModifier) -> QModelIndex:
        """Arrow keys step over the Today / Yesterday / Earlier headers."""
        index = super().moveCursor(action, modifiers)
        model = self.model()
        if not index.isValid() or model is None or index.data(KindRole) != "group":
            return index
        up = action in (QAbstractItemView.CursorAction.MoveUp, QAbstractItemView.CursorAction.MovePrevious,
                        QAbstractItemView.CursorAction.MovePageUp, QAbstractItemView.CursorAction.MoveEnd)  # fmt: skip
        step = -1 if up and index.row() > 0 else 1
        beside = model.index(index.row() + step, 0)
        return beside if beside.isValid() else self.currentIndex()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if (
            event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
            and self.state() != QAbstractItemView.State.EditingState
        ):
            if self.currentIndex().isValid():
                self.open_requested.emit(self.currentIndex())
            return
        super().keyPressEvent(event)


class _Background(QObject):
    """The panel's SQLite and file work, one job at a time in submission order on a pool thread; each callback
    runs on the GUI thread with (result, error)."""

    _done = Signal(object)
    idle = Signal()  # the last job asked for has been answered

    def __init__(self, parent: QObject) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)  # in order: a rename is written before the reload that shows it
        self.pool.setExpiryTimeout(2000)
        self._done.connect(self._deliver)
        self.closed = False
        self.pending = 0

    def run(self, fn: Callable[[], Any], callback: Callable[[Any, Exception | None], None]) -> None:
        if self.closed:
            return

        def job() -> None:
            packed: tuple[Callable[[Any, Exception | None], None], Any, Exception | None]
            try:
                packed = (callback, fn(), None)
            except Exception as exc:  # a worker's exception becomes one notice, never a dead job
                packed = (callback, None, exc)
            with contextlib.suppress(RuntimeError):  # the panel is gone: nobody is waiting for this any more
                self._done.emit(packed)

        self.pending += 1
        self.pool.start(job)

    def _deliver(self, packed: tuple[Callable[[Any, Exception | None], None], Any, Exception | None]) -> None:
        self.pending -= 1
        if self.closed:
            return
        callback, result, error = packed
        callback(result, error)
        if self.pending == 0:
            self.idle.emit()

    def shutdown(self, timeout_ms: int = 10000) -> None:
        """Finish the jobs already asked for (a delete or rename the user made must be saved), drop the replies."""
        self.closed = True
        self.pool.waitForDone(timeout_ms)


class HistoryPanel(QWidget):
    """The sidebar. The window tells it which chat is on screen (`set_open_chat`) and when the history changed
    (`refresh`); it asks the window to open a chat (`open_requested`) and says when a chat was deleted (`deleted`)."""

    renameChatButton: QPushButton  # object names double as attributes (set in __init__)
    deleteChatButton: QPushButton
    undoDeleteButton: QPushButton
    exportChatButton: QPushButton

    open_requested = Signal(int)  # chat id
    deleted = Signal(int)  # chat id: if it is on screen, the window starts a new chat
    message = Signal(str)  # something to tell the user (errors, "deleted — Undo")
    loaded = Signal()  # the list shows the history as it is now (no read or write of the panel is still under way)

    def __init__(self, store: HistoryStore) -> None:
        super().__init__()
        self.store = store
        self.setObjectName("historyPanel")
        self.now: Callable[[], float] = time.time  # what "Today" means (tests set it)
        self.choose_folder: Callable[[], str] = lambda: QFileDialog.getExistingDirectory(self, "Export chat to folder")
        self.last_deleted: int | None = None
        self._deleted_was_open = False
        self._open_chat_id: int | None = None  # the chat on screen: the buttons act on it, the list highlights it
        self._background = _Background(self)
        self._background.idle.connect(self._announce)
        self._reading = False
        self._read_again = False
        self._unannounced = False  # a read was shown while other jobs were still running

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.search = QLineEdit()
        self.search.setObjectName("historySearch")
        self.search.setAccessibleName("Search chats")
        self.search.setPlaceholderText("Search all chats…")
        self.search.setClearButtonEnabled(True)
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(SEARCH_DEBOUNCE_MS)
        self._search_timer.timeout.connect(self._load)
        self.search.textChanged.connect(lambda _text: self._search_timer.start())
        layout.addWidget(self.search)

        self.empty_label = QLabel()  # its text is its accessible name: a screen reader reads what it says
        self.empty_label.setObjectName("chatListEmpty")
        self.empty_label.setWordWrap(True)
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setVisible(False)
        layout.addWidget(self.empty_label, 1)  # in the list's place while there is nothing to list

        self.model = ChatListModel(self)
        self.model.title_edited.connect(self.rename)
        self.delegate = ChatDelegate(self)
        self.view = ChatListView()
        self.view.setObjectName("chatList")
        self.view.setAccessibleName("Chat list")
        self.view.setModel(self.model)
        self.view.setItemDelegate(self.delegate)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.EditKeyPressed)
        self.view.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.view.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.view.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.view.setMouseTracking(True)
        self.view.setMinimumWidth(140)
        self.view.setLayoutMode(QListView.LayoutMode.Batched)  # thousands of chats are laid out a batch at a time
        self.view.setBatchSize(100)
        # A click opens (not `activated` as well: some styles send both for one click, and it opened twice).
        self.view.clicked.connect(self._open_index)
        self.view.open_requested.connect(self._open_index)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._show_menu)
        self.menu: QMenu | None = None
        layout.addWidget(self.view, 1)

        row = QGridLayout()  # two by two: the sidebar stays narrow enough for an 800 px window
        for place, (text, name, slot, tip) in enumerate(
            (
                ("Rename", "renameChatButton", self.rename_selected, "Rename the chat on screen (F2 in the list)"),
                ("Delete", "deleteChatButton", self.delete_selected, "Delete the chat on screen (Undo brings it back)"),
                ("Undo", "undoDeleteButton", self.undo_delete, "Bring back the chat just deleted"),
                ("Export", "exportChatButton", self.export_selected, "Save the chat on screen as Markdown"),
            )
        ):
            button = QPushButton(text)
            button.setObjectName(name)
            button.setAccessibleName("Undo delete" if text == "Undo" else f"{text} chat")
            button.setToolTip(tip)
            button.clicked.connect(slot)
            row.addWidget(button, place // 2, place % 2)
            setattr(self, name, button)
        layout.addLayout(row)
        self._purge_timer = QTimer(self)
        self._purge_timer.setSingleShot(True)
        self._purge_timer.timeout.connect(self.purge_expired)
        self._day_timer = QTimer(self)  # at midnight today's chats become yesterday's: group them again
        self._day_timer.setSingleShot(True)
        self._day_timer.timeout.connect(self.refresh)
        self.search.installEventFilter(self)
        self._update_buttons()
        QTimer.singleShot(0, self, self.refresh)  # the first read starts once the event loop runs (after setup)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """Escape in the search box clears the search (the whole list comes back)."""
        if (watched is self.search and event.type() == QEvent.Type.KeyPress and isinstance(event, QKeyEvent)
                and event.key() == Qt.Key.Key_Escape and self.search.text()):  # fmt: skip
            self.search.clear()
            return True
        return super().eventFilter(watched, event)

    # --- what is on screen --------------------------------------------------------------------------------------

    @property
    def open_chat_id(self) -> int | None:
        return self._open_chat_id

    @open_chat_id.setter
    def open_chat_id(self, chat_id: int | None) -> None:
        self.set_open_chat(chat_id)

    def set_open_chat(self, chat_id: int | None) -> None:
        """The window shows `chat_id` (None: a new, unsaved chat): its row is the selected one."""
        self._open_chat_id = chat_id
        self._show_open()
        self._update_buttons()

    def selected_chat_id(self) -> int | None:
        """The chat whose row is selected (highlighted), if any."""
        rows = self.view.selectionModel().selectedRows()
        return rows[0].data(ChatIdRole) if rows else None

    def _show_open(self) -> None:
        number = self.model.row_of(self._open_chat_id)
        selection = self.view.selectionModel()
        if number < 0:
            selection.clearSelection()
            return
        index = self.model.index(number)
        if not selection.isSelected(index):
            selection.select(index, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        if self.view.state() != QAbstractItemView.State.EditingState:
            selection.setCurrentIndex(index, QItemSelectionModel.SelectionFlag.NoUpdate)

    def _update_buttons(self) -> None:
        has_chat = self._open_chat_id is not None
        writable = not self.store.read_only
        self.renameChatButton.setEnabled(has_chat and writable and self.model.row_of(self._open_chat_id) >= 0)
        self.deleteChatButton.setEnabled(has_chat and writable)
        self.exportChatButton.setEnabled(has_chat)
        self.undoDeleteButton.setEnabled(self.last_deleted is not None and writable)

    # --- loading ------------------------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read the history again (off the GUI thread) and merge it into the list; the search typed still applies."""
        self._search_timer.stop()
        self._load()

    def _load(self) -> None:
        if self._reading:  # one read at a time: the newest state is read once the current read is back
            self._read_again = True
            return
        self._reading = True
        self._read_again = False
        query = self.search.text().strip()
        store = self.store

        now = self.now()

        def read() -> list[Row]:  # the rows are built here too: thousands of dates are formatted off the GUI thread
            if not query:
                return rows_for([(chat.id, chat.title, chat.updated_at, None) for chat in store.list_chats()], now)
            return rows_for([(found.chat.id, found.chat.title, found.chat.updated_at, found.snippet)
                             for found in chat_matches(store.search(query), query)], now)  # fmt: skip

        self._background.run(read, lambda result, error: self._loaded(query, now, result, error))

    def _loaded(self, query: str, now: float, rows: list[Row] | None, error: Exception | None) -> None:
        self._reading = False
        if self._read_again or query != self.search.text().strip():
            self._load()  # the history or the search changed meanwhile: this read is already out of date
            return
        if error is not None:
            if isinstance(error, HistoryError):  # the history cannot be read (locked by another program)
                self.message.emit(str(error))
            else:
                self.message.emit(f"The chat list could not be read: {error}")
            return
        assert rows is not None
        self.model.set_rows(rows)
        self._day_timer.start(ms_until_next_day(now))
        self._show_open()
        if not rows:
            nothing = "No chats yet. Ask a question about the camera and it is kept here."
            self.empty_label.setText(f"No chats match “{query}”" if query else nothing)
        self.empty_label.setVisible(not rows)
        self.view.setVisible(bool(rows))
        self._update_buttons()
        self._unannounced = True  # `loaded` once the jobs queued behind this read (a restore...) are done too

    def _announce(self) -> None:
        if self._unannounced and not self._reading:
            self._unannounced = False
            self.loaded.emit()

    # --- opening, the menu --------------------------------------------------------------------------------------

    def _open_index(self, index: QModelIndex) -> None:
        chat_id = index.data(ChatIdRole)
        if chat_id is None or chat_id == self._open_chat_id:
            return  # a header, or the chat already on screen (a second signal for the same click opens nothing)
        self.open_requested.emit(int(chat_id))

    def menu_for(self, chat_id: int) -> QMenu:
        """The right-click menu of one chat's row: its actions act on that chat (not the one on screen)."""
        menu = QMenu(self)
        menu.setObjectName("chatMenu")
        writable = not self.store.read_only
        open_action = menu.addAction("Open")
        open_action.setEnabled(chat_id != self._open_chat_id)
        open_action.triggered.connect(lambda: self.open_requested.emit(chat_id))
        rename = menu.addAction("Rename")
        rename.setEnabled(writable)
        rename.triggered.connect(lambda: self.start_rename(chat_id))
        export = menu.addAction("Export…")
        export.triggered.connect(lambda: self.export(chat_id))
        menu.addSeparator()
        delete = menu.addAction("Delete")
        delete.setEnabled(writable)
        delete.triggered.connect(lambda: self.delete(chat_id))
        return menu

    def _show_menu(self, pos: QPoint) -> None:
        chat_id = self.view.indexAt(pos).data(ChatIdRole)
        if chat_id is None:
            return
        if self.menu is not None:
            self.menu.deleteLater()
        self.menu = self.menu_for(int(chat_id))
        self.menu.popup(self.view.viewport().mapToGlobal(pos))

    # --- rename -------------------------------------------------------------------------------------------------

    def rename_selected(self) -> None:
        """The Rename button: edit the title of the chat on screen in its row."""
        if self._open_chat_id is not None:
            self.start_rename(self._open_chat_id)

    def start_rename(self, chat_id: int) -> None:
        number = self.model.row_of(chat_id)
        if number >= 0:
            index = self.model.index(number)
            self.view.scrollTo(index)
            self.view.setFocus()
            self.view.edit(index)

    def rename(self, chat_id: int, title: str) -> None:
        """Save a chat's new title (shown at once; written off the GUI thread)."""
        title = " ".join(title.split())
        if not title:
            return
        self.model.set_title(chat_id, title)
        store = self.store

        def saved(_result: Any, error: Exception | None) -> None:
            if error is not None:
                self.message.emit(str(error) if isinstance(error, HistoryError) else f"The chat could not be "
                                  f"renamed: {error}")  # fmt: skip
            self.refresh()

        self._background.run(lambda: store.rename_chat(chat_id, title), saved)

    # --- delete and undo ----------------------------------------------------------------------------------------

    def delete_selected(self) -> None:
        """The Delete button: delete the chat on screen."""
        if self._open_chat_id is not None:
            self.delete(self._open_chat_id)

    def delete(self, chat_id: int) -> None:
        """Delete a chat (its row goes at once; Undo brings it back for UNDO_WINDOW_S)."""
        rows = [row for row in self.model.rows() if row.chat_id != chat_id]
        self.model.set_rows([row for number, row in enumerate(rows) if row.chat_id is not None or (
            number + 1 < len(rows) and rows[number + 1].chat_id is not None)])  # fmt: skip  # no empty group
        store = self.store

        def done(_result: Any, error: Exception | None) -> None:
            if error is not None:
                self.message.emit(str(error) if isinstance(error, HistoryError) else f"The chat could not be "
                                  f"deleted: {error}")  # fmt: skip
                self.refresh()
                return
            self.last_deleted = chat_id
            self._deleted_was_open = chat_id == self._open_chat_id
            self._update_buttons()
            self.deleted.emit(chat_id)  # the window starts a new chat if it was on screen
            self.message.emit("Chat deleted. Press Undo to bring it back.")
            self.refresh()
            # After the undo window the chat and its frames are removed for good (the store also purges on start).
            self._purge_timer.start(int((UNDO_WINDOW_S + 1) * 1000))

        self._background.run(lambda: store.delete_chat(chat_id), done)

    def undo_delete(self) -> None:
        """Bring back the chat just deleted; if it was on screen and the window still shows the blank chat its
        delete left, it is opened again (selected, as before the delete)."""
        chat_id = self.last_deleted
        if chat_id is None:
            return
        self.last_deleted = None
        self._update_buttons()
        store = self.store

        def done(_result: Any, error: Exception | None) -> None:
            if error is not None:
                self.message.emit(str(error) if isinstance(error, HistoryError) else f"The chat could not be "
                                  f"brought back: {error}")  # fmt: skip
                return
            self.message.emit("Chat brought back.")
            if self._deleted_was_open and self._open_chat_id is None:
                self.open_requested.emit(chat_id)
            self.refresh()

        self._background.run(lambda: store.restore_chat(chat_id), done)

    def purge_expired(self) -> None:
        store = self.store

        def done(purged: list[int] | None, error: Exception | None) -> None:
            if error is not None:
                self.message.emit(str(error))
                return
            if purged and self.last_deleted in purged:
                self.last_deleted = None
                self._update_buttons()

        self._background.run(lambda: store.purge_deleted(UNDO_WINDOW_S), done)

    # --- export -------------------------------------------------------------------------------------------------

    def export_selected(self) -> None:
        """The Export button: export the chat on screen."""
        if self._open_chat_id is not None:
            self.export(self._open_chat_id)

    def export(self, chat_id: int) -> None:
        folder = self.choose_folder()
        if not folder:
            return
        store = self.store

        def write() -> tuple[Path, int]:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", MissingFrameWarning)
                written = store.export(chat_id, Path(folder), "md")
            return written, len([w for w in caught if issubclass(w.category, MissingFrameWarning)])

        def done(result: tuple[Path, int] | None, error: Exception | None) -> None:
            if error is not None:  # an unwritable folder, a file in the way
                self.message.emit(str(error) if isinstance(error, HistoryError) else f"The chat could not be "
                                  f"exported: {error}")  # fmt: skip
                return
            assert result is not None
            written, missing = result
            self.message.emit(f"Exported to {written}" + (" (some of its frames are no longer in the history)"
                                                          if missing else ""))  # fmt: skip

        self._background.run(write, done)

    # --- closing ------------------------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Before the store closes: stop the timers, let the writes asked for finish, drop what they would show."""
        self._search_timer.stop()
        self._purge_timer.stop()
        self._day_timer.stop()
        self._background.shutdown()
