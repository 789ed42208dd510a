"""Sampling settings shared by the window, the CLI and the server."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from app.core.errors import SettingsError


@dataclass(frozen=True)
class SamplingSettings:
    """How the next token is chosen. `temperature == 0` is plain greedy: argmax, no penalties."""

    temperature: float = 0.2
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    seed: int | None = None
    max_tokens: int = 512
    stop: tuple[str, ...] = field(default_factory=tuple)
    ignore_eos: bool = False  # for benchmarks: always generate max_tokens
    grammar: str | None = None  # GBNF (root rule `root`): the answer is constrained to it (watch, extract)

    def __post_init__(self) -> None:
        for name in ("temperature", "top_p", "min_p", "repeat_penalty"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise SettingsError(f"{name} must be a finite number, not {value!r}")
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int):
            raise SettingsError(f"max_tokens must be a whole number, not {self.max_tokens!r}")
        if self.temperature < 0:
            raise SettingsError("temperature must be 0 or more")
        if not 0.0 < self.top_p <= 1.0:
            raise SettingsError("top_p must be in (0, 1]")
        if self.max_tokens < 1:
            raise SettingsError("max_tokens must be at least 1")
        if self.repeat_penalty <= 0:
            raise SettingsError("repeat_penalty must be positive")

    def with_(self, **changes: Any) -> SamplingSettings:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stop"] = list(self.stop)
        return data


GREEDY = SamplingSettings(temperature=0.0)
