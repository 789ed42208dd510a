"""The camera's sample video (app/demo/sample-video.mp4): the committed file is the demo scenes the generator draws,
read through the same OpenCV reader as any camera or video file."""

from __future__ import annotations

import numpy as np

from app.capture import CameraFrames
from app.core.resources import sample_video_path
from models.make_sample_video import FPS, FRAMES_PER_SCENE, SAMPLE_SCENES, scene_at, scene_frame, write_sample_video


def frames_of(path) -> list[np.ndarray]:
    with CameraFrames(str(path)) as frames:
        return [frame.rgb for frame in iter(frames.next_frame, None)]


def closest_scene(rgb: np.ndarray) -> int:
    errors = [np.abs(rgb.astype(int) - scene_frame(i).astype(int)).mean() for i in range(len(SAMPLE_SCENES))]
    return int(np.argmin(errors)) if min(errors) < 8 else -1


def test_the_committed_sample_video_shows_each_demo_scene_for_three_seconds():
    path = sample_video_path()
    assert path.is_file()
    assert path.stat().st_size < 200_000, "a small file: it ships in the wheel and the bundle"
    frames = frames_of(path)
    assert len(frames) == len(SAMPLE_SCENES) * FRAMES_PER_SCENE == 180
    assert FRAMES_PER_SCENE == 3 * FPS
    assert frames[0].shape == (240, 320, 3)
    shown = [closest_scene(rgb) for rgb in frames]
    assert shown == [n // FRAMES_PER_SCENE for n in range(180)]
    assert [scene_at(n).colour for n in (0, 30, 60, 90, 120, 150, 180)] == [
        "red", "blue", "yellow", "green", "purple", "orange", "red"]  # fmt: skip


def test_the_generator_writes_the_same_scenes_again(tmp_path):
    again = frames_of(write_sample_video(tmp_path / "again.mp4"))
    committed = frames_of(sample_video_path())
    assert len(again) == len(committed)
    worst = max(np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(again, committed, strict=True))
    assert worst < 1.0  # the same pictures (an encoder of another OpenCV build may differ in the last bits)
