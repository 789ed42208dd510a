"""Camera frames without Qt: one OpenCV reader shared by the window's camera and the command line.

Both front ends read frames the same way: `open_source` opens a camera index, a video file or an image file,
`to_rgb` turns whatever OpenCV returned into a checked RGB array (OpenCV's BGR, or gray, or BGRA; an empty or
absurdly large frame is refused), and a hostile file (truncated, zero bytes, a header claiming absurd dimensions)
is a `CaptureError` with a message a person can act on, never a crash. cv2 stays out of `app/core`.

`CameraFrames` is the command line's watch source (`app.core.watch.FrameSource`): a live camera is read on its
own thread into one slot (the newest frame only, never a queue); a video or image file is read at the watcher's
own pace, every frame once, so a recorded video gives the same answers on a slow and a fast machine.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from app.core.errors import ImageError, LlavaCamError, printable
from app.core.inference.images import image_header_size
from app.core.watch import Frame

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
MAX_SIDE = 16384  # larger frames are not a camera's: refuse them before they fill memory
MAX_PIXELS = 64_000_000


class CaptureError(LlavaCamError):
    """The camera or the file given as the camera cannot be read."""


def parse_source(text: str | int | None) -> int | str:
    """ "0" -> camera index 0; anything else is a file path."""
    if text is None or text == "":
        return 0
    if isinstance(text, int):
        return text
    return int(text) if text.strip().isdigit() else text


def is_image_file(source: int | str) -> bool:
    return isinstance(source, str) and Path(source).suffix.lower() in IMAGE_SUFFIXES


def to_rgb(frame: Any) -> np.ndarray:
    """A frame from OpenCV (BGR, BGRA or gray; 8 or 16 bit) as a contiguous uint8 RGB array, or CaptureError."""
    if not isinstance(frame, np.ndarray) or frame.ndim not in (2, 3) or frame.size == 0:
        raise CaptureError("the camera sent an empty picture")
    h, w = frame.shape[:2]
    if h > MAX_SIDE or w > MAX_SIDE or h * w > MAX_PIXELS:
        raise CaptureError(f"the picture is {w}×{h} pixels, far larger than a camera's: use a smaller file")
    if frame.dtype == np.uint16:
        frame = (frame >> 8).astype(np.uint8)
    elif frame.dtype != np.uint8:
        raise CaptureError("the camera sent pictures in a format LlavaCam cannot read")
    if frame.ndim == 2 or frame.shape[2] == 1:
        return np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB))
    if frame.shape[2] == 4:
        return np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB))
    if frame.shape[2] != 3:
        raise CaptureError("the camera sent pictures in a format LlavaCam cannot read")
    return np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))


def read_still(path: Path) -> np.ndarray:
    """An image file as RGB, with its size checked from the header before any pixels are decoded."""
    name = printable(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise CaptureError(f"Cannot read {name}: {exc.strerror or 'no such file'}.") from exc
    if size == 0:
        raise CaptureError(f"Cannot read {name} as an image: the file is empty.")
    try:
        w, h = image_header_size(path, name, MAX_PIXELS)  # the same header check as every other image we read
    except ImageError as exc:
        raise CaptureError(str(exc)) from exc
    if w > MAX_SIDE or h > MAX_SIDE:
        raise CaptureError(f"{name}: the image is {w}×{h} pixels, far larger than a camera's")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise CaptureError(f"Cannot read {name} as an image: it is damaged or truncated.")
    return to_rgb(bgr)


def open_video(source: int | str) -> Any:
    """An opened cv2.VideoCapture with sane dimensions, or CaptureError."""
    if isinstance(source, str):
        path = Path(source)
        if not path.exists():
            raise CaptureError(f"Camera source {printable(source)} does not exist.")
        if path.is_file() and path.stat().st_size == 0:
            raise CaptureError(f"Cannot open {printable(source)} as a video: the file is empty.")
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        capture.release()
        if isinstance(source, str):
            raise CaptureError(f"Cannot open {printable(source)} as a video.")
        raise CaptureError(f"No camera found at index {source}, or permission to use it was denied.")
    w = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
    h = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
    if w > MAX_SIDE or h > MAX_SIDE or w * h > MAX_PIXELS:
        capture.release()
        raise CaptureError(f"Cannot use {printable(source)}: its frames claim to be {w}×{h} pixels.")
    return capture


def frame_period(capture: Any) -> float:
    fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
    return 1.0 / fps if 1.0 <= fps <= 120.0 else 0.0


class CameraFrames:
    """A watch source over a camera index, a video file or an image file (see the module docstring)."""

    def __init__(self, source: int | str, *, start: datetime | None = None) -> None:
        self.source = source
        self.name = f"camera {source}" if isinstance(source, int) else Path(str(source)).name
        self._start = (start or datetime.now()).astimezone()
        self._index = 0
        self._closed = threading.Event()
        self._still: np.ndarray | None = None
        self._capture: Any = None
        self._period = 0.0
        # a live camera: a reader thread keeps the newest frame in one slot
        self._slot: np.ndarray | None = None
        self._slot_number = 0
        self._taken_number = 0
        self._failure: str | None = None
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        if is_image_file(source):
            self._still = read_still(Path(str(source)))
        else:
            self._capture = open_video(source)
            self._period = frame_period(self._capture)
            if isinstance(source, int):
                self._thread = threading.Thread(target=self._read_live, name="llavacam-capture", daemon=True)
                self._thread.start()

    def next_frame(self) -> Frame | None:
        if self._closed.is_set():
            return None
        if self._still is not None:
            if self._index > 0:
                return None  # a still image is one frame
            return self._frame(self._still, datetime.now().astimezone())
        if self._thread is None:
            ok, raw = self._capture.read()
            if not ok:
                if self._index == 0:
                    raise CaptureError(f"Cannot read a frame from {printable(self.source)}: the video is damaged.")
                return None  # the end of the file (or a truncated tail: what came before was read)
            rgb = to_rgb(raw)
            return self._frame(rgb, self._start + timedelta(seconds=self._index * (self._period or 1 / 30)))
        with self._changed:
            while self._slot_number == self._taken_number and self._failure is None and not self._closed.is_set():
                self._changed.wait(0.5)
            if self._failure is not None and self._slot_number == self._taken_number:
                raise CaptureError(self._failure)
            if self._closed.is_set():
                return None
            self._taken_number = self._slot_number
            newest = self._slot
        assert newest is not None
        return self._frame(newest, datetime.now().astimezone())

    def _frame(self, rgb: np.ndarray, at: datetime) -> Frame:
        frame = Frame(rgb, self._index, at)
        self._index += 1
        return frame

    def _read_live(self) -> None:
        capture = self._capture
        while not self._closed.is_set():
            ok, raw = capture.read()
            try:
                if not ok:
                    raise CaptureError(f"The camera ({self.name}) stopped sending pictures: unplugged?")
                rgb = to_rgb(raw)
            except CaptureError as exc:
                with self._changed:
                    self._failure = str(exc)
                    self._changed.notify_all()
                return
            with self._changed:
                self._slot = rgb
                self._slot_number += 1
                self._changed.notify_all()

    def close(self) -> None:
        self._closed.set()
        with self._changed:
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def __enter__(self) -> CameraFrames:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
