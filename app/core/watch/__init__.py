"""Watch mode: change detection, the watch loop, its timeline and conditions (no Qt, no cv2)."""

from __future__ import annotations

from app.core.watch.change import ChangeDetector, ChangeSettings
from app.core.watch.watcher import (
    YES_NO_GRAMMAR,
    Condition,
    EngineAnswerer,
    Frame,
    FrameSource,
    ListSource,
    Timeline,
    TimelineEntry,
    Watcher,
    WatchEvent,
    condition_question,
)

__all__ = [
    "YES_NO_GRAMMAR",
    "ChangeDetector",
    "ChangeSettings",
    "Condition",
    "EngineAnswerer",
    "Frame",
    "FrameSource",
    "ListSource",
    "Timeline",
    "TimelineEntry",
    "WatchEvent",
    "Watcher",
    "condition_question",
]
