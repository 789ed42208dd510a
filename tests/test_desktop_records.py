"""The window's Records: Extract → a preset reads the pinned frame with the real tiny llama.cpp models (random
weights: the grammar still makes whole records), the records land in the table with their frame, next to the chat;
edits, Done and Delete are stored in SQLite (read back through the core's RecordStore); CSV and .ics exports carry
the edits (the .ics parsed by the icalendar library). Panel and model tests without a model come first."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

import icalendar
import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap

from app.core.extract.schemas import PRESETS
from app.core.history.records import RecordStore
from app.core.history.store import HistoryStore
from app.core.inference.images import load_image
from app.desktop.extraction import NO_FRAME, NO_MODEL
from app.desktop.records_model import FRAME_COLUMN
from app.desktop.records_panel import RecordsPanel

CET = timezone(timedelta(hours=1))
FRIDAY_EVENING = datetime(2026, 12, 4, 23, 30, tzinfo=CET)


def note_frame() -> np.ndarray:
    """The frame tests/test_extract.py reads: the tiny random-weight model reads to-dos from it."""
    pixels = np.full((48, 64, 3), 230, np.uint8)
    pixels[10:20, 8:56] = 20
    return pixels


# --- the panel and its model over a history (no model needed) ---------------------------------------------------


@pytest.fixture
def store(tmp_path):
    history = HistoryStore(tmp_path)
    yield history
    history.close()


@pytest.fixture
def panel(qtbot, store):
    import asyncio

    widget = RecordsPanel(store, asyncio.ensure_future)
    qtbot.addWidget(widget)
    return widget


def wait_loaded(qtbot, panel, action) -> None:
    with qtbot.waitSignal(panel.loaded, timeout=10000):
        action()


def add_todo(store, chat_id, title, due="", notes="", image_hash=None):
    record, _merged = RecordStore(store).add("todo", {"title": title, "due": due, "notes": notes},
                                             title_field="title", chat_id=chat_id, image_hash=image_hash,
                                             captured_at=FRIDAY_EVENING)  # fmt: skip
    return record


def test_the_panel_shows_this_chats_records_or_all_of_them_one_kind_at_a_time(qtbot, panel, store):
    desk, kitchen = store.create_chat("Desk"), store.create_chat("Kitchen")
    add_todo(store, desk, "Call Ana")
    add_todo(store, kitchen, "Buy milk")
    RecordStore(store).add("expense", {"merchant": "Bakery", "date": "", "total": 3.5, "currency": "EUR"},
                           title_field="merchant", chat_id=kitchen, captured_at=FRIDAY_EVENING)  # fmt: skip
    wait_loaded(qtbot, panel, lambda: panel.show_chat(kitchen))
    assert [panel.kind.itemText(i) for i in range(panel.kind.count())] == ["Expense (1)", "To-do (1)"]
    model = panel.model
    headers = [model.headerData(c, Qt.Orientation.Horizontal) for c in range(model.columnCount())]
    assert headers == ["Frame", "Merchant", "Date", "Total", "Currency", "Done"]
    assert model.data(model.index(0, model.column_of("total"))) == "3.5"
    panel.kind.setCurrentIndex(1)
    assert [r.data["title"] for r in model.records()] == ["Buy milk"]
    wait_loaded(qtbot, panel, lambda: panel.scope.setCurrentIndex(1))  # All records
    assert panel.kind.currentText() == "To-do (2)"  # the kind stays chosen
    assert [r.data["title"] for r in model.records()] == ["Call Ana", "Buy milk"]
    wait_loaded(qtbot, panel, lambda: panel.scope.setCurrentIndex(0))
    wait_loaded(qtbot, panel, lambda: panel.show_chat(None))
    assert model.rowCount() == 0
    assert panel.empty.isVisibleTo(panel)
    assert not panel.csv_button.isEnabled()


def test_a_typed_total_is_stored_as_a_number_and_a_word_is_refused(qtbot, panel, store):
    chat = store.create_chat("Receipt")
    RecordStore(store).add("expense", {"merchant": "Bakery", "date": "", "total": 3.5, "currency": "EUR"},
                           title_field="merchant", chat_id=chat, captured_at=FRIDAY_EVENING)  # fmt: skip
    wait_loaded(qtbot, panel, lambda: panel.show_chat(chat))
    model = panel.model
    cell = model.index(0, model.column_of("total"))
    wait_loaded(qtbot, panel, lambda: model.setData(cell, "12,40"))
    [stored] = RecordStore(store).list(chat_id=chat)
    assert stored.data["total"] == 12.4
    with qtbot.waitSignal(panel.problem, timeout=1000) as refused:
        assert not model.setData(cell, "twelve")
    assert refused.args == ["“twelve” is not a number: Total was not changed."]
    assert RecordStore(store).get(stored.id).data["total"] == 12.4
    assert model.data(cell) == "12.4"


def test_a_typed_relative_due_date_resolves_against_the_frames_capture_time(qtbot, panel, store):
    chat = store.create_chat("Desk")
    record = add_todo(store, chat, "Call Ana")
    wait_loaded(qtbot, panel, lambda: panel.show_chat(chat))
    model = panel.model
    wait_loaded(qtbot, panel, lambda: model.setData(model.index(0, model.column_of("due")), "tomorrow"))
    stored = RecordStore(store).get(record.id)
    assert stored.data == {"title": "Call Ana", "due": "2026-12-05", "due_text": "tomorrow", "notes": ""}
    assert model.data(model.index(0, model.column_of("due")), Qt.ItemDataRole.ToolTipRole) == "Written as “tomorrow”"
    wait_loaded(qtbot, panel, lambda: model.setData(model.index(0, model.column_of("due")), "someday"))
    assert RecordStore(store).get(record.id).data == {"title": "Call Ana", "due": "someday", "notes": ""}


def test_an_edited_title_is_the_one_a_new_record_merges_into(qtbot, panel, store):
    chat = store.create_chat("Desk")
    record = add_todo(store, chat, "Call Ana")
    wait_loaded(qtbot, panel, lambda: panel.show_chat(chat))
    model = panel.model
    wait_loaded(qtbot, panel, lambda: model.setData(model.index(0, model.column_of("title")), "Buy milk"))
    again, merged = RecordStore(store).add("todo", {"title": "buy the milk", "due": "", "notes": "2 litres"},
                                           title_field="title")  # fmt: skip
    assert merged
    assert again.id == record.id


def test_sorting_by_total_is_numeric_the_filter_narrows_and_export_and_delete_follow_what_is_shown(
        qtbot, panel, store, tmp_path):  # fmt: skip
    chat = store.create_chat("Receipts")
    for merchant, total in (("Bakery", 3.5), ("Garage", 100), ("Grocer", 12.4)):
        RecordStore(store).add("expense", {"merchant": merchant, "date": "", "total": total, "currency": "EUR"},
                               title_field="merchant", chat_id=chat, captured_at=FRIDAY_EVENING)  # fmt: skip
    wait_loaded(qtbot, panel, lambda: panel.show_chat(chat))
    assert [r.data["merchant"] for r in panel.shown_records()] == ["Bakery", "Garage", "Grocer"]  # as read
    panel.table.sortByColumn(panel.model.column_of("total"), Qt.SortOrder.DescendingOrder)
    assert [r.data["total"] for r in panel.shown_records()] == [100, 12.4, 3.5]  # not "3.5" > "12.4" > "100"
    panel.table.selectRow(1)  # Grocer, second as shown, third in the model
    wait_loaded(qtbot, panel, panel.delete_button.click)
    assert [r.data["merchant"] for r in RecordStore(store).list(chat_id=chat)] == ["Bakery", "Garage"]
    qtbot.keyClicks(panel.filter, "GAR")
    assert [r.data["merchant"] for r in panel.shown_records()] == ["Garage"]
    out = tmp_path / "expense.csv"
    panel.choose_export_path = lambda caption, suggested, kind: str(out)
    wait_loaded(qtbot, panel, panel.csv_button.click)
    rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [row[:4] for row in rows] == [["merchant", "date", "total", "currency"], ["Garage", "", "100", "EUR"]]


# --- the window: Extract with the real tiny models --------------------------------------------------------------


@pytest.fixture
def roomy(settings):
    return replace(settings, n_ctx=4096)  # the to-do preset's bounded answer and the system prompt fit


def extract_in_window(qtbot, window, preset, **options):
    with qtbot.waitSignal(window.extraction.finished, timeout=60000) as done:
        window.extract(preset, **options)
    kept = done.args[0]
    panel = window.records_panel
    qtbot.waitUntil(lambda: panel._pending == 0, timeout=10000)
    return kept


def pin_note(qtbot, window):
    with qtbot.waitSignal(window.binding.prepared, timeout=30000):
        window.pin(load_image(note_frame()), "note.png")


def cells(model, row):
    return [model.data(model.index(row, column)) for column in range(1, model.columnCount() - 1)]


def test_extract_todo_from_the_window_lands_records_with_every_field_in_the_table(qtbot, make_window, roomy):
    window = make_window(roomy)
    pin_note(qtbot, window)
    frame = window.pinned
    kept = extract_in_window(qtbot, window, PRESETS["todo"])
    assert kept is not None
    assert len(kept.stored) >= 1, "the tiny model reads records from this frame (tests/test_extract.py)"
    stored = RecordStore(window.history).list(chat_id=kept.chat_id)
    assert [r.id for r in stored] == [r.id for r, _merged in kept.stored]
    assert all({"title", "due", "notes"} <= set(r.data) and r.kind == "todo" for r in stored)
    panel = window.records_panel
    model = panel.model
    assert window.records_dock.isVisible()
    assert panel.kind.currentText() == f"To-do ({len(stored)})"
    headers = [model.headerData(c, Qt.Orientation.Horizontal) for c in range(model.columnCount())]
    assert headers == ["Frame", "Title", "Due", "Notes", "Done"]
    assert [cells(model, row) for row in range(model.rowCount())] == [
        [r.data["title"], r.data["due"], r.data["notes"]] for r in stored]  # fmt: skip
    picture = model.data(model.index(0, FRAME_COLUMN), Qt.ItemDataRole.DecorationRole)
    assert isinstance(picture, QPixmap)
    assert not picture.isNull()
    # Next to the chat they came from, with the frame: the chat on screen is the extraction's, and holds it.
    assert window.session.chat_id == kept.chat_id
    assert window.session.title == "To-do: note.png"
    assert window.windowTitle() == "LlavaCam — To-do: note.png"
    assert window.session.turns[-1].question == "Extract To-do"
    assert json.loads(window.session.turns[-1].answer.text)["records"]
    assert all(r.image_hash == frame.digest for r in stored)
    assert window.status_label.text() == f"Read {len(stored)} To-do record{'s' if len(stored) > 1 else ''}: " \
                                         "they are in Records"
    # The engine continues this chat with the extraction in it (a follow-up can ask about the records).
    qtbot.waitUntil(lambda: [t.question for t in window.engine.history] == ["Extract To-do"], timeout=10000)


def test_edit_done_delete_and_exports_are_stored_and_round_trip(qtbot, make_window, roomy, tmp_path):
    window = make_window(roomy)
    pin_note(qtbot, window)
    kept = extract_in_window(qtbot, window, PRESETS["todo"])
    panel = window.records_panel
    model = panel.model
    table = RecordStore(window.history)
    first = model.record_at(0)
    notes = model.index(0, model.column_of("notes"))
    wait_loaded(qtbot, panel, lambda: model.setData(notes, "  2 litres, semi-skimmed  "))
    assert table.get(first.id).data["notes"] == "2 litres, semi-skimmed"
    title = model.index(0, model.column_of("title"))
    wait_loaded(qtbot, panel, lambda: model.setData(title, "Buy milk"))
    due = model.index(0, model.column_of("due"))
    wait_loaded(qtbot, panel, lambda: model.setData(due, "tomorrow"))
    captured = datetime.fromtimestamp(first.captured_at).astimezone().date()
    assert table.get(first.id).data["due"] == (captured + timedelta(days=1)).isoformat()
    done = model.index(0, model.done_column)
    wait_loaded(qtbot, panel, lambda: model.setData(done, Qt.CheckState.Checked.value, Qt.ItemDataRole.CheckStateRole))
    assert table.get(first.id).status == "done"
    assert model.data(model.index(0, model.column_of("notes"))) == "2 litres, semi-skimmed"

    csv_path, ics_path = tmp_path / "todo.csv", tmp_path / "todo.ics"
    panel.choose_export_path = lambda caption, suggested, kind: str(csv_path if suggested.endswith(".csv")
                                                                    else ics_path)  # fmt: skip
    wait_loaded(qtbot, panel, panel.csv_button.click)
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text(encoding="utf-8"))))
    assert list(rows[0]) == ["title", "due", "notes", "status", "captured_at"]
    assert rows[0]["title"] == "Buy milk"
    assert rows[0]["notes"] == "2 litres, semi-skimmed"
    assert rows[0]["due"] == (captured + timedelta(days=1)).isoformat()
    assert rows[0]["status"] == "done"
    assert len(rows) == len(kept.stored)
    assert window.status_label.text() == f"Exported {len(rows)} record{'s' if len(rows) > 1 else ''} to {csv_path}"
    wait_loaded(qtbot, panel, panel.ics_button.click)
    calendar = icalendar.Calendar.from_ical(ics_path.read_text(encoding="utf-8"))
    todos = [c for c in calendar.walk() if c.name == "VTODO"]
    assert str(todos[0]["SUMMARY"]) == "Buy milk"
    assert str(todos[0]["DESCRIPTION"]) == "2 litres, semi-skimmed"
    assert todos[0]["DUE"].dt == captured + timedelta(days=1)
    assert str(todos[0]["STATUS"]) == "COMPLETED"
    assert len(todos) == len(kept.stored)

    before = model.rowCount()
    kept_before = table.get(first.id)
    panel.table.selectRow(0)
    wait_loaded(qtbot, panel, panel.delete_button.click)
    with pytest.raises(KeyError):
        table.get(first.id)
    assert model.rowCount() == before - 1
    assert first.id not in [r.id for r in model.records()]
    assert window.status_label.text() == "Deleted 1 record"
    assert (window.notice.text(), window.notice.action_button.text()) == ("Deleted 1 record.", "Undo")
    wait_loaded(qtbot, panel, window.notice.action_button.click)
    restored = table.get(first.id)
    assert (restored.data, restored.status, restored.image_hash, restored.chat_id) == (
        kept_before.data, "done", kept_before.image_hash, kept_before.chat_id)  # fmt: skip
    assert model.record_at(0).id == first.id
    assert window.notice.text() == ""
    assert window.status_label.text() == "Restored 1 record"


def test_the_live_frame_is_frozen_and_read_when_nothing_is_pinned(qtbot, make_window, roomy):
    from tests.support.desktop import wait_for_frame

    window = make_window(roomy)
    wait_for_frame(qtbot, window)
    assert window.pinned is None
    with qtbot.waitSignal(window.extraction.finished, timeout=60000) as done:
        window.extract(PRESETS["contact"])
        frozen = window.pinned
        assert frozen is not None  # frozen at once: the frame read is the one on screen
    kept = done.args[0]
    assert kept is not None, window.notice.text()
    [chat] = window.history.list_chats()
    assert chat.id == kept.chat_id
    [turn] = window.history.get_turns(chat.id)
    assert turn.question == "Extract Contact"
    assert turn.image_path is not None
    assert turn.image_path.name == f"{frozen.digest}.jpg"


def test_an_extraction_asked_the_moment_the_model_is_ready_is_not_interrupted(qtbot, make_window, roomy):
    """The window says Ready (model_changed) only once the new engine holds the chat and has been asked to read the
    pinned frame: that reading pre-empts aside questions, so an extraction asked as soon as Ready shows used to be
    cancelled as if a chat question had come (CI, one run in many)."""
    from tests.support.desktop import wait_for_frame

    window = make_window(roomy, wait_model=False)
    wait_for_frame(qtbot, window)
    asked: list[bool] = []

    def extract_at_once(ready: bool) -> None:
        if ready and not asked:
            asked.append(True)
            window.extract(PRESETS["contact"])

    window.model_changed.connect(extract_at_once)
    with qtbot.waitSignal(window.extraction.finished, timeout=60000) as done:
        qtbot.waitUntil(lambda: bool(asked), timeout=30000)
    assert done.args[0] is not None, window.notice.text()
    assert window.notice.text() == ""


def test_a_question_sent_during_an_extraction_comes_first_and_the_notice_says_so(qtbot, make_window, roomy):
    import threading

    from tests.support.desktop import wait_for_frame

    window = make_window(roomy)
    wait_for_frame(qtbot, window)
    gate = threading.Event()
    window.model_host.engine._submit(gate.wait)  # the extraction's question waits in the engine's queue
    try:
        with qtbot.waitSignal(window.extraction.finished, timeout=60000) as done:
            window.extract(PRESETS["contact"])
            qtbot.waitUntil(lambda: window.extraction._aside is not None and window.extraction._aside.turn is not None)
            window.prompt_input.setPlainText("What is this?")
            window.send_button.click()
            qtbot.waitUntil(lambda: window.extraction._aside.turn._cancel.is_set(), timeout=10000)
            gate.set()
    finally:
        gate.set()
    assert done.args[0] is None
    assert window.notice.text() == ("The extraction was interrupted: the chat comes first (a question was asked, or "
                                    "another frame is being read). Extract again.")  # fmt: skip
    qtbot.waitUntil(lambda: not window.binding.busy, timeout=30000)
    [chat] = window.history.list_chats()
    assert [t.question for t in window.history.get_turns(chat.id)] == ["What is this?"]
    assert RecordStore(window.history).list() == []


def test_extract_in_an_open_chat_keeps_the_records_in_it(qtbot, make_window, roomy):
    from tests.support.desktop import ask

    window = make_window(roomy)
    pin_note(qtbot, window)
    ask(qtbot, window, "What is this?")
    chat_id = window.session.chat_id
    kept = extract_in_window(qtbot, window, PRESETS["todo"])
    assert kept.chat_id == chat_id
    turns = window.history.get_turns(chat_id)
    assert [t.question for t in turns] == ["What is this?", "Extract To-do"]
    assert [t.question for t in window.session.turns] == ["What is this?", "Extract To-do"]
    assert window.records_panel.model.rowCount() == len(kept.stored)
    window.new_chat()
    qtbot.waitUntil(lambda: window.records_panel.model.rowCount() == 0, timeout=10000)


def test_your_own_schema_gives_the_tables_columns(qtbot, make_window, roomy, tmp_path):
    path = tmp_path / "plant.json"
    path.write_text(json.dumps({"type": "object", "description": "plants", "properties": {
        "species": {"type": "string", "maxLength": 30}, "height_cm": {"type": "number"}}}))  # fmt: skip
    window = make_window(roomy)
    pin_note(qtbot, window)
    window.extraction.choose_schema_file = lambda: str(path)
    with qtbot.waitSignal(window.extraction.finished, timeout=60000) as done:
        window.extraction.extract_own_schema()
    kept = done.args[0]
    assert kept is not None
    qtbot.waitUntil(lambda: window.records_panel._pending == 0, timeout=10000)
    model = window.records_panel.model
    headers = [model.headerData(c, Qt.Orientation.Horizontal) for c in range(model.columnCount())]
    assert headers == ["Frame", "Species", "Height cm", "Done"]
    assert model.rowCount() == len(kept.stored)
    assert all(r.kind == "plant" for r, _merged in kept.stored)


def test_the_token_limit_is_a_notice_and_nothing_is_kept(qtbot, make_window, roomy):
    window = make_window(roomy)
    pin_note(qtbot, window)
    assert extract_in_window(qtbot, window, PRESETS["todo"], max_tokens=12) is None
    assert window.notice.text() == ("No To-do records were kept: the answer reached its limit of 12 tokens before "
                                    "they were complete. Try a frame with fewer items, or your own schema with "
                                    "shorter fields (maxLength) or fewer of them (maxItems).")  # fmt: skip
    assert window.status_label.text() == "Nothing extracted"
    assert RecordStore(window.history).list() == []
    assert window.history.list_chats() == []


def test_without_a_model_extract_says_what_to_do(qtbot, make_window, roomy):
    window = make_window(replace(roomy, model_path="", mmproj_path=""), wait_model=False)
    with qtbot.waitSignal(window.extraction.finished, timeout=5000) as done:
        window.extract(PRESETS["todo"])
    assert done.args == [None]
    assert window.notice.text() == NO_MODEL
    assert RecordStore(window.history).list() == []


def test_without_a_frame_extract_says_what_to_do(qtbot, make_window, roomy, tmp_path):
    window = make_window(roomy, camera=str(tmp_path / "no-such-camera.avi"))
    qtbot.waitUntil(lambda: window.model_ready, timeout=30000)
    with qtbot.waitSignal(window.extraction.finished, timeout=5000) as done:
        window.extract(PRESETS["todo"])
    assert done.args == [None]
    assert [n.message for n in window.notice.notices if n.kind == "extract"] == [NO_FRAME]


def test_a_date_typed_in_the_window_is_today_at_the_frames_time_zone():
    """Guard for the edit path's date: a record captured late in UTC+1 resolves "today" to its own local day."""
    from app.core.history.records import Record
    from app.desktop.records_model import RecordsModel, columns_for

    record = Record(1, None, "todo", {"title": "x", "due": "", "notes": ""}, None, "open",
                    FRIDAY_EVENING.timestamp(), "+0100")  # fmt: skip
    model = RecordsModel()
    model.set_records(columns_for("todo", [record]), [record], {})
    assert model.edited_data(record, "due", "today") == {"title": "x", "due": date(2026, 12, 4).isoformat(),
                                                         "due_text": "today", "notes": ""}  # fmt: skip


def test_watch_and_fill_a_list_reads_a_scene_into_records_shown_from_every_chat(qtbot, make_window, roomy, tmp_path):
    from PIL import Image

    from tests.support.desktop import close_window, wait_for_frame

    path = tmp_path / "note.png"
    Image.fromarray(note_frame()).save(path)
    window = make_window(roomy, camera=str(path))
    wait_for_frame(qtbot, window)
    with qtbot.waitSignal(window._scene_reads.read, timeout=60000) as blocker:
        window.watch_and_fill(PRESETS["todo"])
    read = blocker.args[0]
    assert read.error == ""
    assert read.stored, "the tiny model reads to-dos from this frame"
    panel = window.records_panel
    qtbot.waitUntil(lambda: panel._pending == 0 and panel.model.rowCount() > 0, timeout=10000)
    [chat] = [c for c in window.history.list_chats() if c.title == "Watch: To-do list"]
    stored = RecordStore(window.history).list("todo")
    assert {r.id for r, _merged in read.stored} == {r.id for r in stored}
    assert all(r.chat_id == chat.id and r.image_hash for r in stored)
    assert window.records_dock.isVisible()
    assert panel.scope.currentText() == "All records"  # the list fills from the watch's chat, not the one on screen
    assert [r.id for r in panel.model.records()] == [r.id for r in stored]
    assert window.watch_panel.indicator.text() == "● Watching: To-do list"
    added = len({r.id for r, merged in read.stored if not merged})
    assert window.status_label.text() == (f"Watch: {added} new To-do record{'s' if added != 1 else ''}, "
                                          f"{len(read.stored) - added} merged")  # fmt: skip
    close_window(qtbot, window)
    assert not window.watch_panel.runner.running


def test_the_window_with_records_shown_still_fits_800_by_600_with_nothing_cut(qtbot, make_window, settings):
    from PySide6.QtWidgets import QApplication

    from app.desktop.window import MINIMUM_SIZE
    from tests.test_desktop_layout import cut_widgets

    window = make_window(settings, wait_model=False)
    chat = window.history.create_chat("Desk")
    add_todo(window.history, chat, "Call Ana about the long list of things on the whiteboard", "tomorrow", "x" * 200)
    panel = window.records_panel
    wait_loaded(qtbot, panel, lambda: panel.show_all("todo"))
    window.show_records()
    window.resize(*MINIMUM_SIZE)
    qtbot.waitUntil(lambda: (window.width(), window.height()) == MINIMUM_SIZE, timeout=5000)
    QApplication.processEvents()
    hint = window.minimumSizeHint()
    assert hint.width() <= 800, f"minimum width {hint.width()}"
    assert hint.height() <= 600, f"minimum height {hint.height()}"
    assert panel.model.rowCount() == 1
    assert cut_widgets(window) == []
    assert window.records_dock.height() >= 120, "a row of records one can see"
