"""Small test videos written with OpenCV: a stand-in for a webcam, read through the same capture class."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def write_test_video(path: Path, frames: int = 30, size: tuple[int, int] = (160, 120), fps: float = 15.0) -> Path:
    """A moving blue square on a red/green gradient, MJPG in AVI (always available in OpenCV builds)."""
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError("OpenCV cannot write MJPG video here")
    xs = np.linspace(0, 255, width, dtype=np.uint8)
    ys = np.linspace(0, 255, height, dtype=np.uint8)
    for i in range(frames):
        frame = np.zeros((height, width, 3), dtype=np.uint8)
        frame[:, :, 2] = xs[None, :]  # red grows to the right (BGR order)
        frame[:, :, 1] = ys[:, None]
        x = (i * 4) % (width - 30)
        frame[40:70, x : x + 30] = (255, 0, 0)  # blue square
        writer.write(frame)
    writer.release()
    return path
