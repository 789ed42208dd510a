"""The window's settings, saved per user as JSON in the data dir (or --data-dir)."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from app.core.inference.sampling import SamplingSettings
from app.core.inference.templates import DEFAULT_SYSTEM_PROMPT


@dataclass
class Settings:
    model_path: str = ""
    mmproj_path: str = ""
    template: str = "auto"
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    temperature: float = 0.2
    top_p: float = 0.95
    max_tokens: int = 512
    seed: int | None = None
    threads: int = 0  # 0: automatic
    gpu_layers: int = -1
    n_ctx: int = 4096
    camera: str = ""  # "": the first webcam, else the sample video (app/desktop/camera.py)
    extra: dict[str, Any] = field(default_factory=dict)

    def sampling(self) -> SamplingSettings:
        return SamplingSettings(
            temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens, seed=self.seed
        )

    @property
    def has_model(self) -> bool:
        return bool(self.model_path)


def settings_path(data_dir: Path) -> Path:
    return data_dir / "settings.json"


# What each saved value must be, so a hand-edited or damaged settings.json cannot break Send or the Settings dialog.
_NUMBER_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 100.0), "top_p": (1e-9, 1.0), "max_tokens": (1, 1_000_000), "seed": (-(2**63), 2**64 - 1),
    "threads": (0, 512), "gpu_layers": (-1, 100_000), "n_ctx": (64, 10_000_000),
}  # fmt: skip


def _problem(name: str, value: Any, default: Any) -> str | None:
    """Why `value` cannot be the setting `name` (None when it can)."""
    if name == "seed" and value is None:
        return None
    if name == "extra":
        return None if isinstance(value, dict) else "not an object"
    if isinstance(default, str) or name == "camera":
        return None if isinstance(value, str) and "\x00" not in value else "not text"
    wants_int = isinstance(default, int) or name == "seed"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "not a number"
    if wants_int and not isinstance(value, int):
        return "not a whole number"
    if not math.isfinite(value):
        return "not a finite number"
    low, high = _NUMBER_RANGES.get(name, (-math.inf, math.inf))
    return None if low <= value <= high else f"outside {low:g}..{high:g}"


def load_settings(data_dir: Path) -> tuple[Settings, str | None]:
    """The saved settings (defaults where missing or invalid), and a warning saying what could not be used."""
    path = settings_path(data_dir)
    if not path.exists():
        return Settings(), None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return Settings(), f"Settings file {path} could not be read ({exc}); using defaults."
    if not isinstance(raw, dict):
        return Settings(), f"Settings file {path} does not hold an object; using defaults."
    defaults = Settings()
    kept: dict[str, Any] = {}
    reset: list[str] = []
    for f in fields(Settings):
        if f.name not in raw:
            continue
        problem = _problem(f.name, raw[f.name], getattr(defaults, f.name))
        if problem is None:
            kept[f.name] = raw[f.name]
        else:
            reset.append(f"{f.name} ({problem})")
    settings = Settings(**kept)
    try:
        settings.sampling()
    except ValueError as exc:
        for name in ("temperature", "top_p", "max_tokens", "seed"):
            setattr(settings, name, getattr(defaults, name))
        reset.append(f"sampling ({exc})")
    if not reset:
        return settings, None
    return settings, f"Settings file {path}: reset {', '.join(reset)} to the default; kept the rest."


def save_settings(data_dir: Path, settings: Settings) -> None:
    path = settings_path(data_dir)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(asdict(settings), indent=2), encoding="utf-8")
    os.replace(temporary, path)
