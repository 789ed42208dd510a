"""The window's settings, saved per user as JSON in the data dir (or --data-dir)."""

from __future__ import annotations

import json
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
    camera: str = "0"
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


def load_settings(data_dir: Path) -> tuple[Settings, str | None]:
    """The saved settings (defaults where missing), and a warning if the file could not be used."""
    path = settings_path(data_dir)
    if not path.exists():
        return Settings(), None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        known = {f.name for f in fields(Settings)}
        return Settings(**{k: v for k, v in raw.items() if k in known}), None
    except (OSError, ValueError, TypeError) as exc:
        return Settings(), f"Settings file {path} could not be read ({exc}); using defaults."


def save_settings(data_dir: Path, settings: Settings) -> None:
    path = settings_path(data_dir)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(asdict(settings), indent=2), encoding="utf-8")
    os.replace(temporary, path)
