"""The sample video the window's camera falls back to when no webcam opens: demo scenes, a few seconds each.

    python -m models.make_sample_video                  # writes app/demo/sample-video.mp4 (`make sample-video`)

The scenes come from models/demo_scenes.py, the world the demo pair was trained on, so the demo answers right about
every frame. The file is committed (about 50 KB of MPEG-4: a still scene costs next to nothing between key frames)
beside the demo pair in app/demo, so pip and the desktop bundle carry it; tests/test_sample_video.py checks that
the committed frames are these scenes. The scene list and timing are fixed; the encoder's bytes may differ between
OpenCV builds, which is why the test compares pixels, not bytes.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np

from models.demo_scenes import Scene, draw

WIDTH, HEIGHT = 320, 240  # 4:3 like most webcams: the encoder letterboxes it, as it does a real camera's frames
FPS = 10
SECONDS_PER_SCENE = 3
FRAMES_PER_SCENE = FPS * SECONDS_PER_SCENE
# Red first: the window's right-answer tests ask about the first scene. Every colour once, every shape and position.
SAMPLE_SCENES = (
    Scene("square", "red", "centre", (245, 245, 245), WIDTH, HEIGHT),
    Scene("circle", "blue", "left", (70, 70, 70), WIDTH, HEIGHT),
    Scene("triangle", "yellow", "right", (15, 15, 15), WIDTH, HEIGHT),
    Scene("circle", "green", "top", (200, 200, 200), WIDTH, HEIGHT),
    Scene("square", "purple", "bottom", (245, 245, 245), WIDTH, HEIGHT),
    Scene("triangle", "orange", "centre", (70, 70, 70), WIDTH, HEIGHT),
)


def scene_frame(index: int) -> np.ndarray:
    """Scene `index` of SAMPLE_SCENES as the RGB frame written for all its frames: the training scenes' jitter of
    size, place and colour, with the first seed whose background stays grey (the jitter can tint a white
    background pink, which looks like a colour bug to a person)."""
    seed = 1000 * (index + 1)
    while True:
        frame = draw(SAMPLE_SCENES[index], random.Random(seed))
        corner = frame[0, 0].astype(int)
        if corner.max() - corner.min() <= 4:
            return frame
        seed += 1


def scene_at(frame_number: int) -> Scene:
    """The scene a frame of the video shows (frame numbers count from 0; the video loops)."""
    return SAMPLE_SCENES[(frame_number // FRAMES_PER_SCENE) % len(SAMPLE_SCENES)]


def write_sample_video(path: Path) -> Path:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise RuntimeError("OpenCV cannot write MPEG-4 (mp4v) video here")
    try:
        for index in range(len(SAMPLE_SCENES)):
            bgr = np.ascontiguousarray(scene_frame(index)[:, :, ::-1])  # OpenCV writes BGR
            for _ in range(FRAMES_PER_SCENE):
                writer.write(bgr)
    finally:
        writer.release()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "app" / "demo"
                        / "sample-video.mp4")  # fmt: skip
    args = parser.parse_args()
    path = write_sample_video(args.out)
    print(f"{path}: {path.stat().st_size} bytes, {len(SAMPLE_SCENES)} scenes of {SECONDS_PER_SCENE} s")


if __name__ == "__main__":
    main()
