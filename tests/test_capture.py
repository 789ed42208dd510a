"""The shared OpenCV frame reader (app/capture.py): RGB out of OpenCV's BGR, files at the watcher's pace."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from app.capture import CameraFrames, CaptureError, to_rgb
from tests.support.watch_video import write_colour_video


def test_video_frames_arrive_as_rgb_one_per_call_then_the_end(tmp_path):
    video = write_colour_video(tmp_path / "v.avi", ["red"] * 3 + ["blue"] * 2)
    with CameraFrames(str(video)) as frames:
        got = []
        while (frame := frames.next_frame()) is not None:
            got.append(frame)
    assert [f.index for f in got] == [0, 1, 2, 3, 4]
    centre = [tuple(int(v) for v in f.rgb[24, 32]) for f in got]
    assert all(r > 180 and b < 80 for r, _, b in centre[:3])  # red is R in RGB (OpenCV gave BGR)
    assert all(b > 180 and r < 80 for r, _, b in centre[3:])
    assert got[0].captured_at.tzinfo is not None
    assert (got[1].captured_at - got[0].captured_at).total_seconds() == pytest.approx(0.1)


def test_a_still_image_is_one_frame(tmp_path):
    path = tmp_path / "still.png"
    Image.new("RGB", (40, 30), (10, 200, 20)).save(path)
    with CameraFrames(str(path)) as frames:
        first = frames.next_frame()
        assert frames.next_frame() is None
    assert first is not None
    assert tuple(first.rgb[0, 0]) == (10, 200, 20)


def test_to_rgb_converts_gray_and_bgra_and_refuses_empty_frames():
    assert to_rgb(np.full((2, 2), 7, np.uint8)).shape == (2, 2, 3)
    bgra = np.zeros((2, 2, 4), np.uint8)
    bgra[..., 0] = 255
    assert tuple(to_rgb(bgra)[0, 0]) == (0, 0, 255)
    with pytest.raises(CaptureError, match="the camera sent an empty picture"):
        to_rgb(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(CaptureError, match="the camera sent an empty picture"):
        to_rgb(None)
