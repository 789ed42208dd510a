"""When is the scene different enough to ask again? A change detector on small downscaled frames.

Each frame is shrunk to a thumbnail of at most `THUMB_SIDE` pixels (block means: cheap, and averaging is what
removes sensor noise) and divided by its own mean brightness, so a light that dims or brightens the whole room
is not a change while a new object or a new colour is. A thumbnail is compared with the *reference* (the frame
last asked about), not with the previous frame, so a slow drift adds up and is noticed once.

A difference must also *settle*: it has to hold for `settle_frames` consecutive frames that agree with each other
before it counts. A flickering lamp, a one-frame glitch or a looping video's seam (a frame or two that jump and
then the same scene again) therefore never asks; a hand moving through the picture asks once it stops. On top,
`min_interval` caps the re-ask rate: a scene that keeps changing is asked about at most once per interval, on the
newest frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

THUMB_SIDE = 32


def thumbnail(frame: np.ndarray, side: int = THUMB_SIDE) -> np.ndarray:
    """An RGB frame (H, W, 3, uint8) as a float thumbnail of at most `side` px a side, brightness-normalised."""
    if frame.ndim != 3 or frame.shape[2] < 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
        raise ValueError(f"a frame must be an (H, W, 3) RGB array, not {frame.shape}")
    h, w = frame.shape[:2]
    step = max(1, -(-max(h, w) // side))  # ceil: the thumbnail's long side is at most `side`
    th, tw = max(1, h // step), max(1, w // step)
    # Average a 4x4 grid of samples per cell, not every pixel: as good against noise, a fraction of the CPU.
    stride = max(1, step // 4)
    per_cell = step // stride
    sampled = frame[: th * step : stride, : tw * step : stride, :3].astype(np.float32)
    small = sampled.reshape(th, per_cell, tw, per_cell, 3).mean(axis=(1, 3))
    brightness = float(small.mean())
    return small / max(brightness, 8.0)  # a black frame stays black instead of amplifying noise


def difference(a: np.ndarray, b: np.ndarray) -> float:
    """The fraction of thumbnail cells that changed visibly (0.0 .. 1.0); different shapes count as 1.0."""
    if a.shape != b.shape:
        return 1.0
    cell_change = np.abs(a - b).max(axis=2)  # the largest relative change of any channel in the cell
    return float((cell_change > _CELL_THRESHOLD).mean())


_CELL_THRESHOLD = 0.25  # relative to mean brightness: well above sensor noise after block averaging


@dataclass(frozen=True)
class ChangeSettings:
    """`sensitivity` 0..1: the share of the picture that must change is 1 - sensitivity, scaled (0.5 → 4 %)."""

    sensitivity: float = 0.5
    settle_frames: int = 2
    min_interval: float = 2.0  # seconds between two asks at most once (the maximum re-ask rate)

    def __post_init__(self) -> None:
        if not 0.0 <= self.sensitivity <= 1.0:
            raise ValueError("sensitivity must be between 0 and 1")
        if self.settle_frames < 1:
            raise ValueError("settle_frames must be at least 1")
        if self.min_interval < 0:
            raise ValueError("min_interval must be 0 or more")

    @property
    def changed_fraction(self) -> float:
        # 0.0 → 40 % of the cells, 0.5 → 4 %, 1.0 → 0.4 % (one cell in a 32x16 thumbnail is 0.2 %)
        return float(0.4 * 10 ** (-2 * self.sensitivity))


class ChangeDetector:
    """Feed every frame to `observe`; it says whether this frame should be asked about now.

    Not thread-safe: one watcher owns one detector. Times are the caller's clock (seconds), so tests can use counts.
    """

    def __init__(self, settings: ChangeSettings | None = None) -> None:
        self.settings = settings or ChangeSettings()
        self._reference: np.ndarray | None = None
        self._candidate: np.ndarray | None = None
        self._settled = 0
        self._last_ask: float | None = None

    @property
    def has_reference(self) -> bool:
        return self._reference is not None

    def observe(self, frame: np.ndarray, now: float) -> bool:
        """True when `frame` should be asked about: the first frame, or a settled change past the rate limit."""
        thumb = thumbnail(frame)
        if self._reference is None:
            return self._due(now)
        threshold = self.settings.changed_fraction
        if difference(thumb, self._reference) <= threshold:
            self._candidate, self._settled = None, 0  # back to the scene already answered
            return False
        if self._candidate is not None and difference(thumb, self._candidate) <= threshold:
            self._settled += 1
        else:
            self._settled = 1
        self._candidate = thumb
        return self._settled >= self.settings.settle_frames and self._due(now)

    def asked(self, frame: np.ndarray, now: float) -> None:
        """`frame` is being asked about: it becomes the reference."""
        self._reference = thumbnail(frame)
        self._candidate, self._settled = None, 0
        self._last_ask = now

    def forget(self) -> None:
        """The last question about the reference did not complete: the next frame is asked about."""
        self._reference = None
        self._candidate, self._settled = None, 0
        self._last_ask = None

    def _due(self, now: float) -> bool:
        return self._last_ask is None or now - self._last_ask >= self.settings.min_interval
