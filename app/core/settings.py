"""The app's settings as one typed dataclass, saved per user as settings.json in the data dir (or --data-dir).

`Settings` is what every consumer reads: the engine gets an `EngineConfig` from `engine_config()`, an answer its
`SamplingSettings` from `sampling()`, a watch its `FrameRetention` from `watch_retention()`; nobody reads a dict
with `.get`. The JSON file is flat (one key per field) and is read defensively: a value of the wrong type or out of
range is reset to its default and named in a warning, unknown keys are ignored.

The server's token is not a setting: it lives in its own file next to settings.json, readable only by the user
(`token_path`, written by `app.core.remote.trust.save_token`), and never in settings.json or a log.

Standard library only (plus our own core), Python 3.10: the phone build can read the same file.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.core.inference.sampling import SamplingSettings
from app.core.inference.templates import DEFAULT_SYSTEM_PROMPT, TEMPLATE_FAMILIES

if TYPE_CHECKING:  # the engine module is not imported on the phone
    from app.core.inference.engine import EngineConfig
    from app.core.watch.record import FrameRetention

LOCAL_ENGINE = "local"  # "This computer": llama.cpp in this process
SERVER_ENGINE = "server"  # "A server": any OpenAI-compatible vision server
ENGINE_CHOICES: tuple[str, ...] = (LOCAL_ENGINE, SERVER_ENGINE)
THEMES: tuple[str, ...] = ("system", "light", "dark")
DEFAULT_WATCH_MAX_FRAMES = 200  # the same cap as `llavacam watch --max-frames`
SETTINGS_FILE = "settings.json"
TOKEN_FILE = "server-token"


@dataclass
class Settings:
    """Every setting the window offers, grouped as the Settings dialog shows them."""

    # Camera
    camera: str = ""  # "": the first webcam, else the sample video (app/desktop/camera.py); an index or a file
    # Model (this computer's files)
    model_path: str = ""
    mmproj_path: str = ""
    template: str = "auto"  # one of TEMPLATE_FAMILIES
    # Engine: who answers
    engine: str = LOCAL_ENGINE  # one of ENGINE_CHOICES
    threads: int = 0  # 0: automatic
    gpu_layers: int = -1  # -1: all
    n_ctx: int = 4096
    server_url: str = ""
    server_model: str = ""  # "": the server's first model
    server_ca_file: str = ""  # trust the server's certificate through this CA (or self-signed) PEM file ...
    server_fingerprint: str = ""  # ... or exactly the certificate with this SHA-256 fingerprint
    # Answers
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    temperature: float = 0.2
    top_p: float = 0.95
    max_tokens: int = 512
    seed: int | None = None
    # Watch
    watch_sound: bool = True  # a sound with each "Tell me when" notification
    watch_store_frames: bool = True  # keep each watch answer's frame in the history
    watch_max_frames: int = DEFAULT_WATCH_MAX_FRAMES  # the newest frames a watch keeps (older answers keep their text)
    # Appearance
    theme: str = "system"  # one of THEMES

    def sampling(self) -> SamplingSettings:
        return SamplingSettings(
            temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens, seed=self.seed
        )

    def engine_config(self) -> EngineConfig:
        """What the local engine is started with."""
        from app.core.inference.engine import EngineConfig

        return EngineConfig(
            n_ctx=self.n_ctx,
            n_threads=self.threads or None,
            n_gpu_layers=self.gpu_layers,
            template=None if self.template == "auto" else self.template,
            system_prompt=self.system_prompt or DEFAULT_SYSTEM_PROMPT,
        )

    def watch_retention(self) -> FrameRetention:
        """Which of a watch's frames the history keeps."""
        from app.core.watch.record import FrameRetention

        return FrameRetention(store_frames=self.watch_store_frames, max_frames=self.watch_max_frames)

    @property
    def uses_server(self) -> bool:
        return self.engine == SERVER_ENGINE

    @property
    def has_model(self) -> bool:
        """A local model file is chosen."""
        return bool(self.model_path)

    @property
    def can_answer(self) -> bool:
        """Something is chosen to answer: a server's address, or this computer's model file."""
        return bool(self.server_url.strip()) if self.uses_server else self.has_model


def engine_key(settings: Settings) -> tuple[object, ...]:
    """What decides who answers and how: when it changes, the engine is loaded (or the server connected) again."""
    return (settings.engine, settings.model_path, settings.mmproj_path, settings.n_ctx, settings.threads,
            settings.gpu_layers, settings.template, settings.server_url, settings.server_model,
            settings.server_ca_file, settings.server_fingerprint)  # fmt: skip


def settings_path(data_dir: Path) -> Path:
    return data_dir / SETTINGS_FILE


def token_path(data_dir: Path) -> Path:
    """The server token's file (mode 0600), kept apart from settings.json."""
    return data_dir / TOKEN_FILE


# What each saved value must be, so a hand-edited or damaged settings.json cannot break Send or the Settings dialog.
_NUMBER_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 100.0), "top_p": (1e-9, 1.0), "max_tokens": (1, 1_000_000), "seed": (-(2**63), 2**64 - 1),
    "threads": (0, 512), "gpu_layers": (-1, 100_000), "n_ctx": (64, 10_000_000), "watch_max_frames": (1, 100_000),
}  # fmt: skip
_CHOICES: dict[str, tuple[str, ...]] = {"engine": ENGINE_CHOICES, "theme": THEMES, "template": TEMPLATE_FAMILIES}


def _problem(name: str, value: Any, default: Any) -> str | None:
    """Why `value` cannot be the setting `name` (None when it can)."""
    if name == "seed" and value is None:
        return None
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "not true or false"
    if isinstance(default, str):
        if not isinstance(value, str) or "\x00" in value:
            return "not text"
        choices = _CHOICES.get(name)
        return None if choices is None or value in choices else f"not one of {', '.join(choices)}"
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
    """Write settings.json atomically (a crash mid-write leaves the previous file)."""
    path = settings_path(data_dir)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(asdict(settings), indent=2), encoding="utf-8")
    os.replace(temporary, path)


def load_server_token(data_dir: Path) -> str | None:
    """The stored server token (None: none stored). Raises TrustError for a file others can read."""
    from app.core.remote.trust import load_token

    return load_token(token_path(data_dir))


def save_server_token(data_dir: Path, token: str | None) -> None:
    """Store the token readable only by this user (mode 0600); an empty token deletes the file."""
    from app.core.remote.trust import save_token

    path = token_path(data_dir)
    if token and token.strip():
        save_token(path, token)
    else:
        path.unlink(missing_ok=True)
