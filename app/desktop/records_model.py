"""The records table's model: a thin `QAbstractTableModel` over the core's records (app/core/history/records.py).

The records live in SQLite; this model only shows the rows of one kind that the panel last read (off the GUI
thread, records_panel.py): a frame thumbnail, the kind's fields, and Done. An edit does not write anything here: it
is shown at once and handed on as `edit_requested`; the panel writes it and puts back the record as stored
(`replace_record`), so the table always ends showing what SQLite holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, QSize, Qt, Signal
from PySide6.QtGui import QImage, QPixmap

from app.core.extract.schemas import PRESETS, Preset, resolve_date
from app.core.history.records import Record, captured_time

THUMBNAIL = QSize(64, 48)  # the frame column's picture
FRAME_COLUMN = 0
RecordIdRole = Qt.ItemDataRole.UserRole + 1
SortRole = Qt.ItemDataRole.UserRole + 2  # what a column sorts by: numbers as numbers, the frame column by age


@dataclass(frozen=True)
class KindColumns:
    """How one kind of record is shown: its fields in order, which are numbers and dates, and its title field."""

    kind: str
    label: str
    fields: list[str]
    title_field: str
    numbers: frozenset[str] = frozenset()
    integers: frozenset[str] = frozenset()
    date_fields: tuple[str, ...] = ()
    companions: dict[str, str] = field(default_factory=dict)  # "due_text" -> "due": what was written, not shown


def columns_for(kind: str, records: Sequence[Record], presets: dict[str, Preset] | None = None) -> KindColumns:
    """A preset's (or a user schema's) fields; for a kind no schema is known for any more (a user's schema from
    an earlier run), the fields its records have, in the order they first appear."""
    preset = (presets or {}).get(kind) or PRESETS.get(kind)
    if preset is not None:
        props: dict[str, Any] = preset.record.get("properties") or {}
        fields = list(props)
        numbers = frozenset(n for n, p in props.items() if isinstance(p, dict) and p.get("type") in ("number",
                                                                                                    "integer"))
        integers = frozenset(n for n, p in props.items() if isinstance(p, dict) and p.get("type") == "integer")
        return KindColumns(kind, preset.label, fields, preset.title_field, numbers, integers, preset.date_fields,
                           {f"{name}_text": name for name in preset.date_fields})  # fmt: skip
    seen: dict[str, None] = {}
    for record in records:
        for name in record.data:
            seen.setdefault(name, None)
    companions = {name: name[: -len("_text")] for name in seen if name.endswith("_text") and name[:-5] in seen}
    fields = [name for name in seen if name not in companions]
    numbers = frozenset(n for n in fields if any(_is_number(r.data.get(n)) for r in records)
                        and all(_is_number(r.data.get(n)) or r.data.get(n) in ("", None) for r in records))  # fmt: skip
    title = next((n for n in fields if n.lower() in ("title", "name")), fields[0] if fields else "")
    return KindColumns(kind, kind, fields, title, numbers, frozenset(), tuple(companions.values()), companions)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def heading(name: str) -> str:
    return name.replace("_", " ").capitalize()


class RecordsModel(QAbstractTableModel):
    """Rows: the records of one kind. Columns: Frame, the kind's fields, Done."""

    edit_requested = Signal(int, object, object)  # record id, the new data (or None), the new status (or None)
    refused = Signal(str)  # an edit that cannot be stored as typed (a total that is not a number)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.columns = KindColumns("", "", [], "")
        self._records: list[Record] = []
        self._thumbnails: dict[str, QImage] = {}
        self._pixmaps: dict[str, QPixmap] = {}

    # --- what the panel sets --------------------------------------------------------------------------------------

    def set_records(self, columns: KindColumns, records: list[Record], thumbnails: dict[str, QImage]) -> None:
        """Show `records` (already read) as `columns`; `thumbnails`: image hash -> its small frame."""
        self.beginResetModel()
        self.columns = columns
        self._records = list(records)
        self._thumbnails = thumbnails
        self._pixmaps = {k: v for k, v in self._pixmaps.items() if k in thumbnails}
        self.endResetModel()

    def replace_record(self, record: Record) -> None:
        """The record as stored after a write: its row shows it."""
        row = self.row_of(record.id)
        if row >= 0:
            self._records[row] = record
            self.dataChanged.emit(self.index(row, 0), self.index(row, self.columnCount() - 1))

    def remove_records(self, ids: set[int]) -> None:
        row = len(self._records) - 1
        while row >= 0:
            if self._records[row].id in ids:
                self.beginRemoveRows(QModelIndex(), row, row)
                del self._records[row]
                self.endRemoveRows()
            row -= 1

    def records(self) -> list[Record]:
        return list(self._records)

    def record_at(self, row: int) -> Record:
        return self._records[row]

    def row_of(self, record_id: int) -> int:
        return next((n for n, r in enumerate(self._records) if r.id == record_id), -1)

    @property
    def done_column(self) -> int:
        return len(self.columns.fields) + 1

    def column_of(self, field_name: str) -> int:
        return self.columns.fields.index(field_name) + 1

    # --- reading --------------------------------------------------------------------------------------------------

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self._records)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() or not self.columns.kind else len(self.columns.fields) + 2

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:  # noqa: N802
        if orientation != Qt.Orientation.Horizontal or role != Qt.ItemDataRole.DisplayRole:
            return super().headerData(section, orientation, role)
        if section == FRAME_COLUMN:
            return "Frame"
        if section == self.done_column:
            return "Done"
        return heading(self.columns.fields[section - 1])

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._records):
            return None
        record = self._records[index.row()]
        column = index.column()
        if role == RecordIdRole:
            return record.id
        if role == SortRole:
            return self._sort_key(record, column)
        if column == FRAME_COLUMN:
            return self._frame_data(record, role)
        if column == self.done_column:
            if role == Qt.ItemDataRole.CheckStateRole:
                return Qt.CheckState.Checked if record.status == "done" else Qt.CheckState.Unchecked
            if role == Qt.ItemDataRole.AccessibleTextRole:
                return "Done" if record.status == "done" else "Open"
            return None
        name = self.columns.fields[column - 1]
        value = record.data.get(name)
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.EditRole, Qt.ItemDataRole.AccessibleTextRole):
            return "" if value is None else str(value)
        if role == Qt.ItemDataRole.ToolTipRole:
            written = record.data.get(f"{name}_text")
            return f"Written as “{written}”" if written and name in self.columns.date_fields else None
        return None

    def _sort_key(self, record: Record, column: int) -> Any:
        if column == FRAME_COLUMN:
            return record.id  # the order they were read in
        if column == self.done_column:
            return int(record.status == "done")
        name = self.columns.fields[column - 1]
        value = record.data.get(name)
        if name in self.columns.numbers:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            return float("-inf")  # an empty total sorts first
        return "" if value is None else str(value).casefold()

    def _frame_data(self, record: Record, role: int) -> Any:
        if role == Qt.ItemDataRole.DecorationRole and record.image_hash:
            pixmap = self._pixmaps.get(record.image_hash)
            if pixmap is None and record.image_hash in self._thumbnails:
                pixmap = QPixmap.fromImage(self._thumbnails[record.image_hash])  # pixmaps: GUI thread only
                self._pixmaps[record.image_hash] = pixmap
            return pixmap
        if role == Qt.ItemDataRole.ToolTipRole:
            return "Captured " + captured_time(record).strftime("%Y-%m-%d %H:%M")
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return "Frame" if record.image_hash in self._thumbnails else "No frame kept"
        if role == Qt.ItemDataRole.SizeHintRole:
            return THUMBNAIL
        return None

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        base = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        if index.column() == FRAME_COLUMN:
            return base
        if index.column() == self.done_column:
            return base | Qt.ItemFlag.ItemIsUserCheckable
        return base | Qt.ItemFlag.ItemIsEditable

    # --- editing: shown at once, stored by the panel -----------------------------------------------------------------

    def setData(  # noqa: N802
        self, index: QModelIndex | QPersistentModelIndex, value: Any, role: int = Qt.ItemDataRole.EditRole
    ) -> bool:
        if not index.isValid() or not 0 <= index.row() < len(self._records):
            return False
        row, column = index.row(), index.column()
        record = self._records[row]
        if column == self.done_column and role == Qt.ItemDataRole.CheckStateRole:
            status = "done" if _checked(value) else "open"
            if status == record.status:
                return False
            self._show(row, _with(record, status=status))
            self.edit_requested.emit(record.id, None, status)
            return True
        if column in (FRAME_COLUMN, self.done_column) or role != Qt.ItemDataRole.EditRole:
            return False
        data = self.edited_data(record, self.columns.fields[column - 1], "" if value is None else str(value))
        if data is None or data == record.data:
            return False
        self._show(row, _with(record, data=data))
        self.edit_requested.emit(record.id, data, None)
        return True

    def edited_data(self, record: Record, name: str, text: str) -> dict[str, Any] | None:
        """The record's data with `name` set to what was typed (None when it cannot be stored: `refused` says why).
        Numbers are stored as numbers; a date field keeps what was written and, when it reads as a date
        ("tomorrow", "Friday"), the date it means at the frame's capture time — as the extraction did."""
        data = dict(record.data)
        text = text.strip()
        if name in self.columns.numbers:
            number = _number(text, integer=name in self.columns.integers)
            if number is None and text:
                self.refused.emit(f"“{text}” is not a number: {heading(name)} was not changed.")
                return None
            data[name] = number
            return data
        data[name] = text
        if name in self.columns.date_fields:
            resolved = resolve_date(text, captured_time(record)) if text else None
            companion = f"{name}_text"
            if resolved is not None and resolved.isoformat() != text:
                data[name], data[companion] = resolved.isoformat(), text
            else:
                data.pop(companion, None)
        return data

    def _show(self, row: int, record: Record) -> None:
        self._records[row] = record
        self.dataChanged.emit(self.index(row, 0), self.index(row, self.columnCount() - 1))


def _checked(value: Any) -> bool:
    if isinstance(value, Qt.CheckState):
        return value == Qt.CheckState.Checked
    return int(value) == Qt.CheckState.Checked.value


def _number(text: str, *, integer: bool) -> int | float | None:
    cleaned = text.replace(" ", "").replace("\u00a0", "")
    if cleaned.count(",") == 1 and "." not in cleaned:
        cleaned = cleaned.replace(",", ".")  # "3,50": a decimal comma
    try:
        number = float(cleaned)
    except ValueError:
        return None
    if number != number or number in (float("inf"), float("-inf")):
        return None
    if integer:
        return int(number) if number.is_integer() else None
    return int(number) if number.is_integer() and "." not in cleaned else number


def _with(record: Record, **changes: Any) -> Record:
    from dataclasses import replace

    return replace(record, **changes)


__all__ = ["FRAME_COLUMN", "THUMBNAIL", "KindColumns", "RecordIdRole", "RecordsModel", "SortRole", "columns_for",
           "heading"]
