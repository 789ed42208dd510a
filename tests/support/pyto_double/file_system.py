"""TEST DOUBLE of Pyto's file_system (unused by the flow; present so the recorded module list resolves)."""

from __future__ import annotations


def pick_directory() -> None:
    return None
