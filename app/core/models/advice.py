"""Which catalog pair suits this machine: its memory (RAM) and whether llama.cpp can use a GPU here."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from app.core.models.catalog import CatalogEntry

HEADROOM = 1.6  # a pair should need at most RAM / HEADROOM: the OS, the camera and the window need the rest


@dataclass(frozen=True)
class Machine:
    ram_gb: float | None
    gpu: str | None  # "NVIDIA GPU", "Apple GPU (Metal)", or None when none is detected or llama.cpp cannot use it

    def describe(self) -> str:
        ram = f"{self.ram_gb:.0f} GB RAM" if self.ram_gb else "unknown RAM"
        return f"{ram}, {self.gpu or 'no GPU detected (CPU only)'}"


def this_machine() -> Machine:
    ram = None
    with contextlib.suppress(ValueError, OSError, AttributeError):  # not POSIX (Windows): unknown, not a guess
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    return Machine(ram, _gpu())


def _gpu() -> str | None:
    try:
        import llama_cpp

        if not llama_cpp.llama_supports_gpu_offload():
            return None  # a GPU llama.cpp was not built for is no help
    except Exception:  # noqa: BLE001 (no native library here: say nothing about a GPU)
        return None
    if sys.platform == "darwin":
        return "Apple GPU (Metal)"
    if Path("/proc/driver/nvidia/gpus").is_dir():
        return "NVIDIA GPU"
    return "a GPU llama.cpp can use"


def recommend(entries: Sequence[CatalogEntry], machine: Machine) -> CatalogEntry | None:
    """The biggest pair that fits this machine's memory with room to spare (bigger answers better; with a GPU
    speed matters less), else the smallest; None when no entry says how much memory it needs."""
    sized = [e for e in entries if e.memory_gb is not None]
    if not sized:
        return None
    if machine.ram_gb is None:
        return min(sized, key=lambda e: e.memory_gb or 0)
    limit = machine.ram_gb / HEADROOM
    if machine.gpu is None:
        limit = min(limit, 4.0)  # on a CPU alone a bigger model answers too slowly to talk with the camera
    fitting = [e for e in sized if (e.memory_gb or 0) <= limit]
    return max(fitting, key=lambda e: e.memory_gb or 0) if fitting else min(sized, key=lambda e: e.memory_gb or 0)
