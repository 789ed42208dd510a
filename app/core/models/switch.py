"""Switching the loaded model pair safely: check and probe the new pair first, then swap, and fall back if needed.

    result = switch_engine(current_engine, "new.gguf", "new-mmproj.gguf", config, data_dir=...)
    engine = result.engine          # what is loaded now: the new pair, the old one again, or None
    if result.error: show(result.error)   # one line saying why the new pair was not taken

Never two big models in memory at once: the new pair is checked (pure Python) and probed (in a child process,
modelfile.py and probe.py) while the old engine keeps serving; only then is the old engine closed and the new one
loaded. If that load fails anyway (out of memory, say), the old pair is loaded again.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.core.errors import LlavaCamError, LoadCancelled
from app.core.inference.engine import Engine, EngineConfig
from app.core.models.probe import ensure_pair_safe


@dataclass(frozen=True)
class SwitchResult:
    engine: Engine | None  # the engine loaded now (None: nothing could be loaded)
    switched: bool  # True: `engine` is the new pair
    error: str | None  # why the new pair was not taken (None when switched)
    old_restored: bool = False  # True: the old pair had been unloaded and was loaded again


def switch_engine(
    current: Engine | None,
    text: str | os.PathLike[str],
    mmproj: str | os.PathLike[str] | None,
    config: EngineConfig | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    load_progress: Callable[[float], bool | None] | None = None,
    probe_starting: Callable[[], object] | None = None,
    probe: Callable[..., object] = ensure_pair_safe,
    cancelled: Callable[[], bool] | None = None,
) -> SwitchResult:
    """Replace `current` with an engine on (text, mmproj). Never raises for a bad pair: see SwitchResult.

    `probe_starting` is called when the new pair is not yet known good and its test load in a child begins.
    `cancelled` is asked during the test load and the load (through `load_progress` returning False): once it says
    True, the work stops within moments and LoadCancelled is raised, with nothing loaded and the old engine closed
    if it had been (the caller is going away, or has chosen another pair)."""
    if cancelled is not None:
        progress = load_progress

        def load_progress(fraction: float) -> bool:
            if progress is not None:
                progress(fraction)
            return not cancelled()

    try:
        probe(text, mmproj, data_dir=data_dir, starting=probe_starting, cancelled=cancelled)
    except LoadCancelled:
        raise
    except LlavaCamError as exc:
        return SwitchResult(current, switched=False, error=str(exc))
    old: tuple[Path, Path | None, EngineConfig] | None = None
    if current is not None:
        old = (current.info.text_path, current.info.mmproj_path, current.config)
        current.close()
    try:
        engine = Engine(Path(text), Path(mmproj) if mmproj else None, config, load_progress=load_progress)
    except LoadCancelled:
        raise
    except Exception as exc:  # an unexpected native failure is still a reason to show, not a dead app
        reason = str(exc) if isinstance(exc, LlavaCamError) else f"the model could not be loaded: {exc}"
        if old is None:
            return SwitchResult(None, switched=False, error=reason)
        try:
            restored = Engine(old[0], old[1], old[2])
        except Exception as again:
            return SwitchResult(None, switched=False, error=f"{reason}; reloading the previous model failed too: "
                                                             f"{again}")  # fmt: skip
        return SwitchResult(restored, switched=False, error=reason, old_restored=True)
    return SwitchResult(engine, switched=True, error=None)
