"""Camera to list: bounded schemas, grammar-constrained extraction with the real tiny llama.cpp models, records
in the history (merge, edit, export) and the .ics parsed by a calendar library."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime, timedelta, timezone

import icalendar
import numpy as np
import pytest

from app.cli import main
from app.core.extract.extractor import ExtractError, extract, grammar_for, validate, with_dates
from app.core.extract.schemas import PRESETS, SchemaError, bounded, load_schema_file, request_schema, resolve_date
from app.core.history.records import RecordStore, to_csv, to_ics
from app.core.history.store import HistoryStore
from app.core.inference.engine import Engine, EngineConfig

CET = timezone(timedelta(hours=1))
FRIDAY_EVENING = datetime(2026, 12, 4, 23, 30, tzinfo=CET)  # a Friday, 22:30 UTC


@pytest.fixture(scope="module")
def engine(tiny_models):
    with Engine(tiny_models.text, tiny_models.mmproj, EngineConfig(n_ctx=4096, n_threads=2)) as eng:
        yield eng


def frame() -> np.ndarray:
    pixels = np.full((48, 64, 3), 230, np.uint8)
    pixels[10:20, 8:56] = 20
    return pixels


@pytest.mark.parametrize("name", ["todo", "expense", "contact"])
def test_every_preset_yields_valid_json_for_its_schema_from_a_random_weight_model(engine, name):
    result = extract(engine, frame(), PRESETS[name])
    assert result.finish_reason == "stop"
    assert set(json.loads(result.raw)) == {"records"}  # the raw answer is whole JSON
    validate({"records": result.records}, request_schema(PRESETS[name]))
    for record in result.records:
        assert list(record) == list(PRESETS[name].record["properties"])


def test_a_users_schema_is_bounded_and_used(engine, tmp_path):
    path = tmp_path / "plant.json"
    path.write_text(json.dumps({"type": "object", "description": "plants", "properties": {
        "name": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}}}))  # fmt: skip
    preset = load_schema_file(path)
    record = bounded(preset.record)
    assert record["properties"]["name"]["maxLength"] == 120
    assert record["properties"]["tags"]["maxItems"] == 8
    assert record["properties"]["tags"]["items"]["maxLength"] == 120
    result = extract(engine, frame(), preset)
    validate({"records": result.records}, request_schema(preset))


def test_the_token_limit_is_a_clear_error_never_half_a_record(engine):
    with pytest.raises(ExtractError, match=r"^the answer reached the limit of 12 tokens before its records were "
                       r"complete; nothing was kept"):  # fmt: skip
        extract(engine, frame(), PRESETS["todo"], max_tokens=12)


def test_the_grammar_bounds_strings_and_allows_no_raw_control_characters():
    gbnf = grammar_for(request_schema(PRESETS["contact"]))
    assert 'char ::= [^"\\\\\\x7F\\x00-\\x1F] | "\\\\" (["\\\\/bfnrt])' in gbnf
    assert "records ::=" in gbnf


@pytest.mark.parametrize(
    ("text", "expected"),
    [("tomorrow", date(2026, 12, 5)), ("Today", date(2026, 12, 4)), ("friday", date(2026, 12, 11)),
     ("next Monday", date(2026, 12, 7)), ("in 3 days", date(2026, 12, 7)), ("2026-12-24", date(2026, 12, 24)),
     ("someday", None), ("", None)],
)  # fmt: skip
def test_relative_dates_resolve_against_the_frames_local_capture_time(text, expected):
    # 23:30 in UTC+1 is still Friday there (22:30 UTC): "tomorrow" is Saturday the 5th
    assert resolve_date(text, FRIDAY_EVENING) == expected


def test_bad_schema_files_are_one_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("[1, 2]")
    with pytest.raises(SchemaError, match=r"give a schema of one record"):
        load_schema_file(path)
    path.write_text("{not json")
    with pytest.raises(SchemaError, match=r"bad.json: not a JSON file"):
        load_schema_file(path)


def test_records_merge_edit_and_export_to_csv_and_ics_that_a_calendar_library_reads(tmp_path):
    store = HistoryStore(tmp_path)
    table = RecordStore(store)
    chat = store.create_chat("To-do: desk.jpg")
    todo = PRESETS["todo"]
    first, merged = table.add("todo", with_dates({"title": "Buy milk", "due": "tomorrow", "notes": ""}, todo,
                                                 FRIDAY_EVENING), title_field="title", chat_id=chat,
                              captured_at=FRIDAY_EVENING)  # fmt: skip
    assert not merged
    again, merged = table.add("todo", {"title": "  buy the MILK!", "due": "", "notes": "2 litres"},
                              title_field="title", chat_id=chat, captured_at=FRIDAY_EVENING)  # fmt: skip
    assert merged
    assert again.id == first.id
    assert again.data == {"title": "Buy milk", "due": "2026-12-05", "due_text": "tomorrow", "notes": "2 litres"}
    table.add("todo", {"title": "Call Ana; ask, about =SUM(A1)", "due": "", "notes": "line one\nline two"},
              title_field="title", chat_id=chat, captured_at=FRIDAY_EVENING)  # fmt: skip
    edited = table.update(first.id, data={**again.data, "notes": "3 litres"}, title_field="title")
    assert edited.data["notes"] == "3 litres"
    done = table.update(first.id, status="done")
    assert done.status == "done"
    # a done item no longer absorbs a new one with its title
    _, merged = table.add("todo", {"title": "buy milk", "due": "", "notes": ""}, title_field="title")
    assert not merged
    records = table.list("todo")
    assert [r.data["title"] for r in records] == ["Buy milk", "Call Ana; ask, about =SUM(A1)", "buy milk"]

    rows = list(csv.reader(io.StringIO(to_csv(records, ["title", "due", "notes"]))))
    assert rows[0] == ["title", "due", "notes", "status", "captured_at"]
    assert rows[1] == ["Buy milk", "2026-12-05", "3 litres", "done", "2026-12-04T23:30:00+01:00"]
    assert rows[2][0] == "Call Ana; ask, about =SUM(A1)"
    assert rows[2][2] == "line one\nline two"

    calendar = icalendar.Calendar.from_ical(to_ics(records))
    todos = [c for c in calendar.walk() if c.name == "VTODO"]
    assert [str(t["SUMMARY"]) for t in todos] == ["Buy milk", "Call Ana; ask, about =SUM(A1)", "buy milk"]
    assert todos[0]["DUE"].dt == date(2026, 12, 5)
    assert str(todos[0]["STATUS"]) == "COMPLETED"
    assert str(todos[1]["DESCRIPTION"]) == "line one\nline two"
    assert "DUE" not in todos[1]
    assert len({str(t["UID"]) for t in todos}) == 3


def test_the_csv_never_starts_a_cell_with_a_formula(tmp_path):
    table = RecordStore(HistoryStore(tmp_path))
    table.add("expense", {"merchant": "=HYPERLINK(\"x\")", "date": "", "total": 3.5, "currency": "EUR"},
              title_field="merchant")  # fmt: skip
    rows = list(csv.reader(io.StringIO(to_csv(table.list("expense"), ["merchant", "total"]))))
    assert rows[1][:2] == ["'=HYPERLINK(\"x\")", "3.5"]


def test_extract_cli_prints_json_records_and_keeps_them_with_the_frame(tiny_models, tmp_path, capsys):
    image = tmp_path / "note.png"
    from PIL import Image

    Image.fromarray(frame()).save(image)
    data = tmp_path / "data"
    args = ["extract", "--schema", "contact", "--image", str(image), "--json", "--data-dir", str(data),
            "--model", str(tiny_models.text), "--mmproj", str(tiny_models.mmproj), "--threads", "2"]  # fmt: skip
    assert main(args) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    store = HistoryStore(data)
    kept = RecordStore(store).list("contact")
    assert [line["record"] for line in lines] == [r.data for r in kept]
    assert all(line["kind"] == "contact" for line in lines)
    [chat] = store.list_chats()
    assert chat.title == f"Contact: {image}"
    assert all(r.chat_id == chat.id and r.image_hash for r in kept)
    store.close()
    out = tmp_path / "contacts.csv"
    assert main(["extract", "--schema", "contact", "--export-csv", str(out), "--data-dir", str(data)]) == 0
    assert out.read_text().splitlines()[0] == "name,phone,email,status,captured_at"


def test_a_records_frame_outlives_the_watch_retention_cap_and_purges(tmp_path):
    from app.core.inference.images import load_image

    store = HistoryStore(tmp_path)
    chat = store.create_chat("Watch: desk")
    picture = store.save_image(load_image(frame()), source="camera 0")
    store.add_user_message(chat, "What is on the desk?", picture)
    RecordStore(store).add("todo", {"title": "Buy milk", "due": "", "notes": ""}, title_field="title",
                           image_hash=picture.hash)  # fmt: skip
    assert store.forget_frames(chat, keep_last=0) == 1
    store.delete_chat(chat)
    store.purge_deleted()
    assert picture.path.is_file()


def test_a_deleted_record_comes_back_with_its_id_and_merges_again_even_if_its_chat_was_purged(tmp_path):
    store = HistoryStore(tmp_path)
    table = RecordStore(store)
    chat = store.create_chat("To-do: desk.jpg")
    record, _ = table.add("todo", {"title": "Buy milk", "due": "", "notes": "2 litres"}, title_field="title",
                          chat_id=chat, captured_at=FRIDAY_EVENING)  # fmt: skip
    table.update(record.id, status="done")
    done = table.get(record.id)
    table.delete(record.id)
    assert table.restore(done, title_field="title") == done
    assert table.restore(done, title_field="title") == done  # twice is once
    table.delete(record.id)
    store.delete_chat(chat)
    store.purge_deleted()
    back = table.restore(done, title_field="title")
    assert (back.id, back.chat_id, back.data, back.status) == (done.id, None, done.data, "done")
    table.update(back.id, status="open")
    _, merged = table.add("todo", {"title": "buy the milk", "due": "", "notes": ""}, title_field="title")
    assert merged  # its title key came back with it
    store.close()
