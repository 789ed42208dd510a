"""TEST DOUBLE of Pyto's userkeys: get(key) / set(value, key) / delete(key) on a dict."""

from __future__ import annotations

from typing import Any

_values: dict[str, Any] = {}


def get(key: str) -> Any:
    return _values[key]


def set(value: Any, key: str) -> None:  # noqa: A001 (Pyto's name)
    _values[key] = value


def delete(key: str) -> None:
    del _values[key]
