"""Test videos for watch mode: a square that changes colour at known frames, written with OpenCV (MJPG AVI)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

BGR = {"red": (30, 30, 220), "blue": (220, 40, 30), "green": (40, 200, 30), "yellow": (30, 220, 230)}


def write_colour_video(path: Path, colours: list[str], size: tuple[int, int] = (64, 48), fps: float = 10.0) -> Path:
    """One frame per entry of `colours`: a square of that colour on grey (OpenCV writes BGR)."""
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError("OpenCV cannot write MJPG video here")
    for colour in colours:
        frame = np.full((height, width, 3), 128, np.uint8)
        frame[height // 4 : 3 * height // 4, width // 3 : 2 * width // 3] = BGR[colour]
        writer.write(frame)
    writer.release()
    return path
