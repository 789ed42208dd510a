"""The chat list: stored chats with titles and dates, search, rename, delete (with undo), export."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.core.history.store import UNDO_WINDOW_S, HistoryError, HistoryStore


class HistoryPanel(QWidget):
    renameChatButton: QPushButton  # object names double as attributes (set in __init__)
    deleteChatButton: QPushButton
    undoDeleteButton: QPushButton
    exportChatButton: QPushButton

    open_requested = Signal(int)  # chat id
    deleted = Signal(int)  # chat id: if it is on screen, the window starts a new chat
    message = Signal(str)  # something to tell the user (errors, "deleted — Undo")

    def __init__(self, store: HistoryStore) -> None:
        super().__init__()
        self.store = store
        self.setObjectName("historyPanel")
        self.last_deleted: int | None = None
        self.open_chat_id: int | None = None  # the chat on screen: the buttons act on it, the list highlights it
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.search = QLineEdit()
        self.search.setObjectName("historySearch")
        self.search.setAccessibleName("Search chats")
        self.search.setPlaceholderText("Search all chats…")
        self.search.textChanged.connect(self.refresh)
        layout.addWidget(self.search)
        self.list = QListWidget()
        self.list.setObjectName("chatList")
        self.list.setAccessibleName("Chats")
        self.list.itemActivated.connect(self._activated)
        self.list.itemClicked.connect(self._activated)
        layout.addWidget(self.list, 1)
        row = QHBoxLayout()
        for text, name, slot in (("Rename", "renameChatButton", self.rename_selected),
                                 ("Delete", "deleteChatButton", self.delete_selected),
                                 ("Undo", "undoDeleteButton", self.undo_delete),
                                 ("Export", "exportChatButton", self.export_selected)):  # fmt: skip
            button = QPushButton(text)
            button.setObjectName(name)
            button.setAccessibleName(f"{text} chat")
            button.clicked.connect(slot)
            row.addWidget(button)
            setattr(self, name, button)
        layout.addLayout(row)
        self.undoDeleteButton.setEnabled(False)
        self.refresh()

    def refresh(self) -> None:
        try:
            self._refresh()
        except HistoryError as exc:  # the history cannot be read (locked by another program): say so, keep going
            self.message.emit(str(exc))

    def _refresh(self) -> None:
        query = self.search.text().strip()
        self.list.clear()
        if query:
            seen: set[int] = set()
            for chat, message in self.store.search(query):
                if chat.id in seen:
                    continue
                seen.add(chat.id)
                self._add(chat.id, chat.title, chat.updated_at, f"…{message.text[:50]}")
        else:
            for chat in self.store.list_chats():
                self._add(chat.id, chat.title, chat.updated_at)
        self._highlight_open()

    def _add(self, chat_id: int, title: str, updated: float, extra: str = "") -> None:
        when = time.strftime("%d %b %H:%M", time.localtime(updated))
        item = QListWidgetItem(f"{title or '(untitled)'}\n{when}{'  ' + extra if extra else ''}")
        item.setData(Qt.ItemDataRole.UserRole, chat_id)
        self.list.addItem(item)

    def _selected(self) -> int | None:
        """The chat the buttons act on: the one on screen (a right-click or arrow key only highlights a row)."""
        if self.open_chat_id is not None:
            return self.open_chat_id
        item = self.list.currentItem()
        return int(item.data(Qt.ItemDataRole.UserRole)) if item is not None else None

    def set_open_chat(self, chat_id: int | None) -> None:
        """The window shows `chat_id` (None: a new, unsaved chat)."""
        self.open_chat_id = chat_id
        self._highlight_open()

    def _highlight_open(self) -> None:
        for row in range(self.list.count()):
            item = self.list.item(row)
            if item.data(Qt.ItemDataRole.UserRole) == self.open_chat_id:
                self.list.setCurrentItem(item)
                return
        self.list.setCurrentRow(-1)
        self.list.clearSelection()

    def _activated(self, item: QListWidgetItem) -> None:
        chat_id = int(item.data(Qt.ItemDataRole.UserRole))
        if chat_id == self.open_chat_id:
            return  # itemClicked and itemActivated both come for one click on some styles: open it once
        self.open_requested.emit(chat_id)

    def rename_selected(self) -> None:
        chat_id = self._selected()
        if chat_id is None:
            return
        title, ok = QInputDialog.getText(self, "Rename chat", "Title:", text=self.store.get_chat(chat_id).title)
        if ok:
            self.rename(chat_id, title)

    def rename(self, chat_id: int, title: str) -> None:
        try:
            self.store.rename_chat(chat_id, title)
        except HistoryError as exc:
            self.message.emit(str(exc))
        self.refresh()

    def delete_selected(self) -> None:
        chat_id = self._selected()
        if chat_id is not None:
            self.delete(chat_id)

    def delete(self, chat_id: int) -> None:
        try:
            self.store.delete_chat(chat_id)
        except HistoryError as exc:
            self.message.emit(str(exc))
            return
        self.last_deleted = chat_id
        if chat_id == self.open_chat_id:
            self.open_chat_id = None
        self.deleted.emit(chat_id)
        self.undoDeleteButton.setEnabled(True)
        self.message.emit("Chat deleted. Press Undo to bring it back.")
        self.refresh()
        # After the undo window the chat and its frames are removed for good (the store also purges on start).
        QTimer.singleShot(int((UNDO_WINDOW_S + 1) * 1000), self, self.purge_expired)

    def purge_expired(self) -> None:
        try:
            purged = self.store.purge_deleted(UNDO_WINDOW_S)
        except HistoryError as exc:
            self.message.emit(str(exc))
            return
        if self.last_deleted in purged:
            self.last_deleted = None
            self.undoDeleteButton.setEnabled(False)

    def undo_delete(self) -> None:
        if self.last_deleted is None:
            return
        self.store.restore_chat(self.last_deleted)
        self.last_deleted = None
        self.undoDeleteButton.setEnabled(False)
        self.refresh()

    def export_selected(self) -> None:
        chat_id = self._selected()
        if chat_id is None:
            return
        folder = QFileDialog.getExistingDirectory(self, "Export chat to folder")
        if folder:
            from pathlib import Path

            try:
                written = self.store.export(chat_id, Path(folder), "md")
            except HistoryError as exc:  # an unwritable folder, a file in the way
                self.message.emit(str(exc))
                return
            self.message.emit(f"Exported to {written}")
