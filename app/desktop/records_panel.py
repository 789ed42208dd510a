"""The window's Records: the records read from frames (camera to list), in an editable table.

It shows the records of the chat on screen ("This chat") or every record ("All records"), one kind at a time
(To-do, Expense, Contact, a user's schema), with each record's frame as a thumbnail. The records are the core's
(`RecordStore`, in the history's SQLite file); the table (records_model.py) only shows what was last read. Every read
and write — an edited cell, Done, Delete, an export — runs in the loop's executor (`asyncio.to_thread`), one at a
time in the order asked (an asyncio lock), and the table is updated on the GUI thread from what SQLite returned.
`loaded` says the table shows SQLite as it is now.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QImage, QKeyEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.core.errors import LlavaCamError, printable
from app.core.extract.schemas import PRESETS, Preset
from app.core.history.records import Record, RecordStore, to_csv, to_ics
from app.core.history.store import HistoryStore
from app.desktop.records_model import THUMBNAIL, KindColumns, RecordsModel, SortRole, columns_for

THIS_CHAT, ALL_RECORDS = "chat", "all"
EMPTY_CHAT = "No records in this chat yet: Extract → To-do (or Expense, Contact) reads them from the frame."
EMPTY_ALL = "No records yet: Extract → To-do (or Expense, Contact) reads them from the frame."
Spawn = Callable[[Coroutine[Any, Any, Any]], Any]


def read_records(table: RecordStore, chat_id: int | None, scope: str, known: set[str]) -> tuple[list[Record],
                                                                                                  dict[str, QImage]]:
    """The records in scope and the thumbnails of their frames not in `known` (runs in the executor: QImage, not
    QPixmap, may be made off the GUI thread)."""
    if scope == THIS_CHAT and chat_id is None:
        return [], {}
    records = table.list(chat_id=chat_id if scope == THIS_CHAT else None)
    thumbnails: dict[str, QImage] = {}
    for digest, path in table.frame_files([r for r in records if r.image_hash not in known]).items():
        image = QImage(str(path))
        if not image.isNull():
            thumbnails[digest] = image.scaled(THUMBNAIL, Qt.AspectRatioMode.KeepAspectRatio,
                                              Qt.TransformationMode.SmoothTransformation)  # fmt: skip
    return records, thumbnails


class RecordsTable(QTableView):
    """The table: Delete removes the selected records (when no cell is being edited)."""

    delete_pressed = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Delete and self.state() != QAbstractItemView.State.EditingState:
            self.delete_pressed.emit()
            return
        super().keyPressEvent(event)


class RecordsPanel(QWidget):
    """The records of the chat on screen (`show_chat`), or all of them; edits, Delete and exports."""

    message = Signal(str)  # what was done, for the status line ("Exported 3 records to todo.csv")
    problem = Signal(str)  # what went wrong and what to do, for a notice (a write that failed)
    loaded = Signal()  # the table shows what SQLite holds now (no read or write of the panel is still under way)
    deleted = Signal(list)  # the records just deleted, as they were (the window offers Undo: `restore`)

    def __init__(self, store: HistoryStore, spawn: Spawn) -> None:
        super().__init__()
        self.setObjectName("recordsPanel")
        self.store = store
        self.table_store = RecordStore(store)
        self.spawn = spawn
        self.presets: dict[str, Preset] = dict(PRESETS)  # kinds whose schema is known (a user's, once used)
        # Where an export goes (tests set it): (caption, suggested file name, filter) -> a path, or "" to cancel.
        self.choose_export_path: Callable[[str, str, str], str] = self._ask_export_path
        self.chat_id: int | None = None
        self._records: list[Record] = []
        self._thumbnails: dict[str, QImage] = {}
        self._wanted_kind = ""
        self._io: asyncio.Lock | None = None
        self._pending = 0

        self.scope = QComboBox()
        self.scope.setObjectName("recordsScope")
        self.scope.setAccessibleName("Which records")
        self.scope.addItem("This chat", THIS_CHAT)
        self.scope.addItem("All records", ALL_RECORDS)
        self.scope.currentIndexChanged.connect(lambda _index: self.refresh())
        self.kind = QComboBox()
        self.kind.setObjectName("recordsKind")
        self.kind.setAccessibleName("Kind of record")
        self.kind.currentIndexChanged.connect(self._kind_chosen)
        self.model = RecordsModel(self)
        self.model.edit_requested.connect(self._store_edit)
        self.model.refused.connect(self.problem)
        # Sorting (a header click) and the filter box work on a proxy; the rows stay the model's.
        self.shown = QSortFilterProxyModel(self)
        self.shown.setSourceModel(self.model)
        self.shown.setSortRole(SortRole)
        self.shown.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.shown.setFilterKeyColumn(-1)  # any field
        self.filter = QLineEdit()
        self.filter.setObjectName("recordsFilter")
        self.filter.setAccessibleName("Filter records")
        self.filter.setPlaceholderText("Filter…")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self.shown.setFilterFixedString)
        self.table = RecordsTable()
        self.table.setObjectName("recordsTable")
        self.table.setAccessibleName("Records")
        self.table.setModel(self.shown)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)  # the order they were read in
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked
                                   | QAbstractItemView.EditTrigger.EditKeyPressed
                                   | QAbstractItemView.EditTrigger.AnyKeyPressed)  # fmt: skip
        self.table.setIconSize(THUMBNAIL)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(THUMBNAIL.height() + 6)
        self.table.horizontalHeader().setStretchLastSection(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.delete_pressed.connect(self.delete_selected)
        self.empty = QLabel(EMPTY_CHAT)
        self.empty.setObjectName("recordsEmpty")
        self.empty.setWordWrap(True)
        self.delete_button = self._button("Delete", "recordsDeleteButton", "Delete the selected records",
                                          self.delete_selected)  # fmt: skip
        self.csv_button = self._button("Export CSV…", "recordsCsvButton", "Export these records as CSV",
                                       self.export_csv)  # fmt: skip
        self.ics_button = self._button("Export .ics…", "recordsIcsButton",
                                       "Export these to-dos as iCalendar tasks (VTODO)", self.export_ics)  # fmt: skip

        top = QHBoxLayout()
        top.addWidget(self.scope)
        top.addWidget(self.kind, 1)
        top.addWidget(self.filter, 1)
        top.addWidget(self.delete_button)
        top.addWidget(self.csv_button)
        top.addWidget(self.ics_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.empty)
        layout.addWidget(self.table, 1)
        self._show()

    def _button(self, text: str, name: str, description: str, slot: Callable[[], None]) -> QPushButton:
        button = QPushButton(text)
        button.setObjectName(name)
        button.setToolTip(description)
        button.setAccessibleDescription(description)
        button.clicked.connect(slot)
        return button

    # --- what the window tells it ------------------------------------------------------------------------------------

    def show_chat(self, chat_id: int | None) -> None:
        """The chat on screen changed (opened, new, created by its first answer)."""
        if chat_id == self.chat_id:
            return
        self.chat_id = chat_id
        if self.scope.currentData() == THIS_CHAT:
            self.refresh()

    def show_kind(self, kind: str, preset: Preset | None = None) -> None:
        """Records of `kind` were just read: show that kind (its schema, when it is a user's, gives the columns)."""
        if preset is not None:
            self.presets[kind] = preset
        self._wanted_kind = kind
        self.refresh()

    def show_all(self, kind: str, preset: Preset | None = None) -> None:
        """Every record of `kind`, whichever chat it came from (a watch filling a list)."""
        if preset is not None:
            self.presets[kind] = preset
        self._wanted_kind = kind
        if self.scope_name == ALL_RECORDS:
            self.refresh()
        else:
            self.scope.setCurrentIndex(self.scope.findData(ALL_RECORDS))  # reads them

    @property
    def scope_name(self) -> str:
        return str(self.scope.currentData())

    @property
    def columns(self) -> KindColumns:
        return self.model.columns

    # --- reading -----------------------------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read the records in scope again (in the executor) and show them."""
        self._run(self._read())

    async def _read(self) -> None:
        chat_id, scope = self.chat_id, self.scope_name
        records, thumbnails = await asyncio.to_thread(read_records, self.table_store, chat_id, scope,
                                                      set(self._thumbnails))  # fmt: skip
        if (chat_id, scope) != (self.chat_id, self.scope_name):
            return  # another chat or scope was chosen meanwhile: its own read follows this one
        self._thumbnails.update(thumbnails)
        self._records = records
        self._show()

    def _kinds(self) -> list[str]:
        """The kinds present, the most recently read first."""
        latest: dict[str, int] = {}
        for record in self._records:
            latest[record.kind] = max(latest.get(record.kind, 0), record.id)
        return sorted(latest, key=lambda kind: -latest[kind])

    def _show(self) -> None:
        kinds = self._kinds()
        current = self.kind.currentData()
        chosen = next((k for k in (self._wanted_kind, current) if k in kinds), kinds[0] if kinds else "")
        self._wanted_kind = ""
        self.kind.blockSignals(True)
        self.kind.clear()
        for kind in kinds:
            preset = self.presets.get(kind)
            count = sum(1 for r in self._records if r.kind == kind)
            self.kind.addItem(f"{preset.label if preset else kind} ({count})", kind)
        self.kind.setCurrentIndex(kinds.index(chosen) if chosen else -1)
        self.kind.blockSignals(False)
        self._show_kind(chosen)

    def _kind_chosen(self, _index: int) -> None:
        self._show_kind(str(self.kind.currentData() or ""))

    def _show_kind(self, kind: str) -> None:
        records = [r for r in self._records if r.kind == kind]
        columns = columns_for(kind, records, self.presets) if kind else KindColumns("", "", [], "")
        self.model.set_records(columns, records, {k: v for k, v in self._thumbnails.items()
                                                  if any(r.image_hash == k for r in records)})  # fmt: skip
        self.table.resizeColumnsToContents()
        for column in range(1, self.model.columnCount() - 1):  # long notes must not make the table scroll forever
            self.table.setColumnWidth(column, min(self.table.columnWidth(column), 260))
        has_records = bool(records)
        self.empty.setText(EMPTY_CHAT if self.scope_name == THIS_CHAT else EMPTY_ALL)
        self.empty.setVisible(not has_records)
        self.kind.setEnabled(has_records)
        self.delete_button.setEnabled(has_records)
        self.csv_button.setEnabled(has_records)
        self.ics_button.setEnabled(has_records and kind == "todo")

    # --- writing -----------------------------------------------------------------------------------------------------

    def _store_edit(self, record_id: int, data: dict[str, Any] | None, status: str | None) -> None:
        title_field = self.model.columns.title_field if data is not None else None
        self._run(self._write_edit(record_id, data, status, title_field))

    async def _write_edit(self, record_id: int, data: dict[str, Any] | None, status: str | None,
                          title_field: str | None) -> None:  # fmt: skip
        try:
            stored = await asyncio.to_thread(self.table_store.update, record_id, data=data, status=status,
                                             title_field=title_field or None)  # fmt: skip
        except KeyError:
            self.problem.emit("That record was deleted meanwhile: the change was not kept.")
            await self._read()
            return
        except LlavaCamError as exc:
            self.problem.emit(f"The change was not saved: {exc}")
            await self._read()  # the table shows what is stored, not what failed to be
            return
        self._records = [stored if r.id == stored.id else r for r in self._records]
        self.model.replace_record(stored)

    def selected_ids(self) -> list[int]:
        """The records selected in the table (else the one with the focus), in the model's terms."""
        indexes = self.table.selectionModel().selectedRows()
        if not indexes and self.table.currentIndex().isValid():
            indexes = [self.table.currentIndex()]
        rows = sorted({self.shown.mapToSource(index).row() for index in indexes})
        return [self.model.record_at(row).id for row in rows]

    def shown_records(self) -> list[Record]:
        """The records as the table shows them: filtered and in its order (what an export writes)."""
        return [self.model.record_at(self.shown.mapToSource(self.shown.index(row, 0)).row())
                for row in range(self.shown.rowCount())]  # fmt: skip

    def delete_selected(self) -> None:
        ids = self.selected_ids()
        if ids:
            self.delete_records(ids)

    def delete_records(self, ids: list[int]) -> None:
        self._run(self._delete(ids))

    async def _delete(self, ids: list[int]) -> None:
        gone = set(ids)
        records = [r for r in self._records if r.id in gone]

        def delete() -> None:
            for record_id in ids:
                self.table_store.delete(record_id)

        try:
            await asyncio.to_thread(delete)
        except LlavaCamError as exc:
            self.problem.emit(f"The records were not deleted: {exc}")
            await self._read()
            return
        self._records = [r for r in self._records if r.id not in gone]
        self.model.remove_records(gone)
        self._show()
        self.message.emit("Deleted 1 record" if len(ids) == 1 else f"Deleted {len(ids)} records")
        self.deleted.emit(records)

    def restore(self, records: list[Record]) -> None:
        """Undo a delete: the records back with their ids, data, status and frames."""
        fields = {r.kind: columns_for(r.kind, [r], self.presets).title_field for r in records}
        self._run(self._restore(records, fields))

    async def _restore(self, records: list[Record], title_fields: dict[str, str]) -> None:
        def restore() -> None:
            for record in records:
                self.table_store.restore(record, title_field=title_fields[record.kind])

        try:
            await asyncio.to_thread(restore)
        except LlavaCamError as exc:
            self.problem.emit(f"The records were not restored: {exc}")
        await self._read()
        self.message.emit("Restored 1 record" if len(records) == 1 else f"Restored {len(records)} records")

    # --- exports -----------------------------------------------------------------------------------------------------

    def _ask_export_path(self, caption: str, suggested: str, filter_text: str) -> str:
        path, _ = QFileDialog.getSaveFileName(self, caption, suggested, filter_text)
        return path

    def export_csv(self) -> None:
        """The records shown (this kind, this scope, the filter, the table's order) as CSV: one column per field,
        then status and capture time."""
        columns = self.model.columns
        path = self.choose_export_path("Export records as CSV", f"{columns.kind or 'records'}.csv",
                                       "CSV files (*.csv)")  # fmt: skip
        if path:
            self._run(self._export(Path(path), to_csv, self.shown_records(), list(columns.fields)))

    def export_ics(self) -> None:
        """The to-dos shown as an iCalendar file of VTODOs (due dates as resolved at capture time)."""
        if self.model.columns.kind != "todo":
            return
        path = self.choose_export_path("Export to-dos as iCalendar", "todo.ics", "iCalendar files (*.ics)")
        if path:
            self._run(self._export(Path(path), lambda records: to_ics(records), self.shown_records()))

    async def _export(self, path: Path, render: Callable[..., str], records: list[Record], *args: Any) -> None:
        def write() -> None:
            path.write_text(render(records, *args), encoding="utf-8", newline="")

        try:
            await asyncio.to_thread(write)
        except OSError as exc:
            self.problem.emit(f"Could not write {printable(path)}: {exc.strerror or exc}")
            return
        self.message.emit(f"Exported {len(records)} record{'s' if len(records) != 1 else ''} to {printable(path)}")

    # --- one job at a time, in order -------------------------------------------------------------------------------

    def _run(self, job: Coroutine[Any, Any, None]) -> None:
        self._pending += 1
        self.spawn(self._serialised(job))

    async def _serialised(self, job: Coroutine[Any, Any, None]) -> None:
        if self._io is None:
            self._io = asyncio.Lock()
        try:
            async with self._io:  # a write is stored before the read that shows it, edits in the order made
                await job
        finally:
            self._pending -= 1
            if self._pending == 0:
                self.loaded.emit()


__all__ = ["ALL_RECORDS", "THIS_CHAT", "RecordsPanel", "read_records"]
