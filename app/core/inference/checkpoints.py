"""A state checkpoint right after the latest image, for models whose cache cannot be cut back.

Recurrent and hybrid models (LFM2, Qwen3.5) keep a recurrent state for the latest position only, so llama.cpp
cannot remove the tail of their cache (a partial `llama_memory_seq_rm` fails); sliding-window models lose old
cells once the window has moved past them. A follow-up that only appends is
incremental anyway; a regenerate or an edited question would have to evaluate the whole conversation again,
image included. Instead the engine saves the sequence's state (`llama_state_seq_get_data`) right after it
evaluates an image, and goes back to it (`llama_state_seq_set_data`) when the new prompt still starts with
everything up to that image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Checkpoint:
    n_units: int  # how many KV units (tokens and image chunks) the state holds
    state: bytes


class ImageCheckpoints:
    """The one checkpoint kept (after the most recent image); unused when the cache can be truncated."""

    def __init__(self, native: Any) -> None:
        self._native = native
        # Sliding-window models (Gemma 4) can cut back while the window still holds the image, not after.
        self.enabled = not native.can_truncate or native.has_sliding_window
        self._latest: Checkpoint | None = None
        self.restores = 0  # how often a cut-back was served by a checkpoint (tests and stats read it)

    def after_image(self, n_units: int) -> None:
        """The cache now holds `n_units` units, the last an image chunk: remember the state here."""
        if self.enabled:
            self._latest = Checkpoint(n_units, self._native.save_state())

    def restore(self, common: int) -> int | None:
        """Go back to the latest checkpoint within the first `common` (still matching) units.

        Returns how many units the cache then holds, or None when there is no usable checkpoint.
        """
        latest = self._latest
        if latest is None or latest.n_units > common:
            return None
        if not self._native.load_state(latest.state):
            self._latest = None
            return None
        self.restores += 1
        return latest.n_units

    def forget_beyond(self, n_units: int) -> None:
        """The cache was cut to `n_units` by other means: a checkpoint past it no longer describes it."""
        if self._latest is not None and self._latest.n_units > n_units:
            self._latest = None
