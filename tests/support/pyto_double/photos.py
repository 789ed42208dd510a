"""TEST DOUBLE of Pyto's photos: take_photo()/pick_photo() return the next queued PIL image (None: cancelled)."""

from __future__ import annotations

from typing import Any

queued: list[Any] = []


def take_photo() -> Any:
    return queued.pop(0) if queued else None


def pick_photo() -> Any:
    return queued.pop(0) if queued else None


def save_image(image: Any) -> None:
    pass
