"""Frame → typed records with JSON-schema-constrained decoding (llama.cpp's grammar sampler).

The schema (bounded, schemas.py) becomes a GBNF grammar with llama-cpp-python's `json_schema_to_gbnf`; our string
character rule replaces its own so that no raw control character (invalid JSON) and no `\\uXXXX` escape (six
tokens a character) can be produced, which keeps the token bound honest. The answer is asked aside (the chat's
cache stays), parsed, checked against the schema, and returned as whole records: if the token limit is reached
anyway, `ExtractError` — never half a record.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.core.errors import LlavaCamError
from app.core.extract.schemas import Preset, request_schema, resolve_date

SAFE_CHAR_RULE = r'char ::= [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt])'


class ExtractError(LlavaCamError):
    """The model's answer did not make whole records."""


class TokenLimitReached(ExtractError):
    """The answer reached its token budget before its records were complete (nothing was kept)."""

    def __init__(self, message: str, budget: int) -> None:
        super().__init__(message)
        self.budget = budget


class ExtractInterrupted(ExtractError):
    """A chat question pre-empted the extraction (the chat comes first): ask again."""


def grammar_for(schema: dict[str, Any]) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    gbnf = json_schema_to_gbnf(json.dumps(schema))
    gbnf, count = re.subn(r"^char ::= .*$", SAFE_CHAR_RULE.replace("\\", "\\\\"), gbnf, count=1, flags=re.M)
    if count == 0 and "char" in gbnf:
        raise ExtractError("the schema's grammar has no character rule to bound")  # a llama-cpp-python change
    return gbnf


def token_budget(schema: Any) -> int:
    """The most tokens a JSON value of `schema` can take (a generous count: one token a character)."""
    if not isinstance(schema, dict):
        return 64
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return 4 + sum(len(name) + 6 + token_budget(child) for name, child in props.items())
    if kind == "array":
        return 4 + int(schema.get("maxItems", 8)) * (2 + token_budget(schema.get("items")))
    if kind == "string":
        return 4 + int(schema.get("maxLength", 120)) * 2  # an escape is two characters
    if kind in ("number", "integer"):
        return 40
    if "enum" in schema:
        return 4 + max((len(json.dumps(v)) for v in schema["enum"]), default=4)
    return 64


@dataclass
class Extraction:
    records: list[dict[str, Any]]
    raw: str
    finish_reason: str


def validate(value: Any, schema: dict[str, Any], where: str = "record") -> None:
    """The checks the grammar already guarantees, kept as a guard: types, required keys, bounds."""
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            raise ExtractError(f"{where} is not an object")
        for name in schema.get("required", []):
            if name not in value:
                raise ExtractError(f"{where} has no {name}")
        for name, child in (schema.get("properties") or {}).items():
            if name in value:
                validate(value[name], child, f"{where}.{name}")
    elif kind == "array":
        if not isinstance(value, list) or len(value) > int(schema.get("maxItems", 10**9)):
            raise ExtractError(f"{where} is not a list within its bound")
        for item in value:
            validate(item, schema.get("items") or {}, f"{where}[]")
    elif kind == "string":
        if not isinstance(value, str) or len(value) > int(schema.get("maxLength", 10**9)):
            raise ExtractError(f"{where} is not a string within its bound")
    elif kind in ("number", "integer") and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ExtractError(f"{where} is not a number")


def _clean(value: Any, schema: dict[str, Any]) -> Any:
    """Strings without U+FFFD: the grammar bounds characters, but a byte a model emits that is not valid UTF-8 is
    decoded as a replacement character (random-weight models do this), which would also overrun maxLength."""
    kind = schema.get("type")
    if kind == "object" and isinstance(value, dict):
        props = schema.get("properties") or {}
        return {k: _clean(v, props[k]) if k in props else v for k, v in value.items()}
    if kind == "array" and isinstance(value, list):
        return [_clean(v, schema.get("items") or {}) for v in value]
    if kind == "string" and isinstance(value, str):
        return value.replace("\ufffd", "")[: int(schema.get("maxLength", len(value)))]
    return value


def extract(engine: Any, image: Any, preset: Preset, *, max_tokens: int | None = None) -> Extraction:
    """Ask `engine` (aside from its chat) for `preset`'s records about `image`."""
    from app.core.inference.sampling import GREEDY

    schema = request_schema(preset)
    budget = max_tokens or min(token_budget(schema), 4096)
    question = f"{preset.instruction} Answer with JSON only."
    turn = engine.ask_aside(question, image, GREEDY.with_(max_tokens=budget, grammar=grammar_for(schema)))
    stats = turn.wait()
    text = turn.text.strip()
    if stats.finish_reason == "cancelled":
        raise ExtractInterrupted("the extraction was interrupted by a chat question: ask again")
    if stats.finish_reason != "stop":
        raise TokenLimitReached(
            f"the answer reached the limit of {budget} tokens before its records were complete; nothing was kept "
            "(raise --max-tokens, or give the schema smaller maxLength/maxItems)",
            budget,
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExtractError(f"the answer is not whole JSON ({exc.msg}); nothing was kept") from exc
    data = _clean(data, schema)
    validate(data, schema, "answer")
    return Extraction(list(data["records"]), text, stats.finish_reason)


def with_dates(record: dict[str, Any], preset: Preset, captured_at: datetime) -> dict[str, Any]:
    """Relative dates in `preset.date_fields` resolved against the capture time: {"due": "2026-12-02",
    "due_text": "tomorrow"}; a date that cannot be read stays as written."""
    out = dict(record)
    for name in preset.date_fields:
        value = out.get(name)
        if isinstance(value, str) and value.strip():
            resolved = resolve_date(value, captured_at)
            if resolved is not None:
                out[f"{name}_text"] = value
                out[name] = resolved.isoformat()
    return out
