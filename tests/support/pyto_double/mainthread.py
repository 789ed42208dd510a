"""TEST DOUBLE of Pyto's mainthread: run_async/run_sync call the function at once (there is no UI thread here)."""

from __future__ import annotations

from typing import Any


def run_async(code: Any) -> None:
    code()


def run_sync(code: Any) -> Any:
    return code()


def mainthread(func: Any) -> Any:
    return func
