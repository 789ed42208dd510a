"""Extraction presets (To-do, Expense, Contact) and users' own JSON schemas, bounded so any output parses.

A schema describes one record; the model is asked for `{"records": [record, ...]}`. Every string gets a
`maxLength` and every array a `maxItems` (a user's schema without them gets ours), so the grammar built from the
schema (extractor.py) ends within a known number of tokens whatever the model does. Plain Python (no llama.cpp):
the history's records and the Pyto bundle can read these too.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from app.core.errors import LlavaCamError, printable

DEFAULT_MAX_LENGTH = 120
DEFAULT_MAX_ITEMS = 8
MAX_RECORDS = 5
SCHEMA_FILE_LIMIT = 64 * 1024


class SchemaError(LlavaCamError):
    """A user's schema file cannot be used."""


@dataclass(frozen=True)
class Preset:
    name: str
    label: str
    instruction: str
    record: dict[str, Any]
    title_field: str  # the field whose normalised value merges a new record into an open one
    date_fields: tuple[str, ...] = ()  # relative dates here ("tomorrow") are resolved against the capture time


def _string(max_length: int, description: str) -> dict[str, Any]:
    return {"type": "string", "maxLength": max_length, "description": description}


PRESETS: dict[str, Preset] = {
    "todo": Preset(
        "todo", "To-do",
        "List the to-do items you can read in the image (notes, whiteboards, labels).",
        {"type": "object", "properties": {
            "title": _string(80, "what to do"),
            "due": _string(24, "when it is due, as written (a date, 'tomorrow', 'Friday'), or empty"),
            "notes": _string(120, "anything else written with it, or empty"),
        }, "required": ["title", "due", "notes"]},
        "title", ("due",),
    ),
    "expense": Preset(
        "expense", "Expense",
        "Read the receipt or bill in the image.",
        {"type": "object", "properties": {
            "merchant": _string(60, "the shop or company"),
            "date": _string(24, "the date on it, as written, or empty"),
            "total": {"type": "number", "description": "the total amount paid"},
            "currency": _string(3, "ISO 4217 code such as EUR or USD, or empty"),
        }, "required": ["merchant", "date", "total", "currency"]},
        "merchant", ("date",),
    ),
    "contact": Preset(
        "contact", "Contact",
        "Read the contact details (business card, sign, letterhead) in the image.",
        {"type": "object", "properties": {
            "name": _string(60, "the person's or company's name"),
            "phone": _string(24, "a phone number, or empty"),
            "email": _string(80, "an email address, or empty"),
        }, "required": ["name", "phone", "email"]},
        "name",
    ),
}  # fmt: skip


def bounded(schema: Any, *, where: str = "record") -> dict[str, Any]:
    """A copy of `schema` in which every string has a maxLength and every array a maxItems."""
    if not isinstance(schema, dict):
        raise SchemaError(f"{where}: a schema must be a JSON object")
    out = copy.deepcopy(schema)

    def walk(node: Any, path: str) -> None:
        if not isinstance(node, dict):
            return
        kind = node.get("type")
        kinds = kind if isinstance(kind, list) else [kind]
        if "string" in kinds and not ("enum" in node or "const" in node):
            node["maxLength"] = min(int(node.get("maxLength", DEFAULT_MAX_LENGTH)), 1000)
        if "array" in kinds:
            node["maxItems"] = min(int(node.get("maxItems", DEFAULT_MAX_ITEMS)), 50)
        for key in ("properties", "$defs", "definitions"):
            for name, child in (node.get(key) or {}).items():
                walk(child, f"{path}.{name}")
        for key in ("items", "additionalProperties"):
            walk(node.get(key), f"{path}[]")
        for key in ("anyOf", "oneOf", "allOf"):
            for child in node.get(key) or []:
                walk(child, path)

    walk(out, where)
    return out


def load_schema_file(path: Path) -> Preset:
    """A user's JSON schema (one record, an object with properties) as a preset; SchemaError says what is wrong."""
    name = printable(path)
    try:
        if path.stat().st_size > SCHEMA_FILE_LIMIT:
            raise SchemaError(f"{name}: a schema file is at most 64 KB")
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SchemaError(f"{name}: cannot read it ({exc.strerror or exc})") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError(f"{name}: not a JSON file ({printable(exc, limit=120)})") from exc
    if not isinstance(data, dict) or data.get("type") != "object" or not isinstance(data.get("properties"), dict):
        raise SchemaError(f"{name}: give a schema of one record: {{\"type\": \"object\", \"properties\": {{...}}}}")
    if not data["properties"]:
        raise SchemaError(f"{name}: the schema has no properties")
    properties = list(data["properties"])
    title = next((p for p in properties if p.lower() in {"title", "name"}), properties[0])
    description = str(data.get("description") or data.get("title") or "the records").strip()
    preset = Preset(path.stem, path.stem, f"Extract {printable(description, limit=200)} from the image.",
                    data, title)  # fmt: skip
    return preset


def request_schema(preset: Preset, max_records: int = MAX_RECORDS) -> dict[str, Any]:
    """The whole answer's schema: `{"records": [...]}` with at most `max_records` bounded records."""
    return {
        "type": "object",
        "properties": {"records": {"type": "array", "maxItems": max_records, "items": bounded(preset.record)}},
        "required": ["records"],
    }


_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


def resolve_date(text: str, captured_at: datetime) -> date | None:
    """A written date ("tomorrow", "Friday", "next week", "in 3 days", "2026-12-03") against the frame's local
    capture time; None when it is not a date we can read."""
    raw = " ".join(text.casefold().split()).strip(" .,!")
    today = captured_at.date()
    if not raw:
        return None
    simple = {"today": 0, "tonight": 0, "this evening": 0, "tomorrow": 1, "yesterday": -1,
              "day after tomorrow": 2, "the day after tomorrow": 2, "next week": 7}  # fmt: skip
    if raw in simple:
        return today + timedelta(days=simple[raw])
    match = re.fullmatch(r"in (\d{1,3}) (day|days|week|weeks)", raw)
    if match:
        n = int(match[1]) * (7 if match[2].startswith("week") else 1)
        return today + timedelta(days=n)
    match = re.fullmatch(r"(?:on |next |this )?(monday|tuesday|wednesday|thursday|friday|saturday|sunday)", raw)
    if match:
        ahead = (_WEEKDAYS.index(match[1]) - today.weekday()) % 7 or 7  # "Friday" said on a Friday: next week's
        return today + timedelta(days=ahead)
    for pattern in ("%Y-%m-%d", "%d.%m.%Y", "%d/%m/%Y", "%Y/%m/%d"):
        try:
            return datetime.strptime(raw, pattern).date()
        except ValueError:
            continue
    return None
