"""The camera: an OpenCV capture on its own thread that keeps only the newest frame.

Like Qt's mandelbrot example, nothing queues: the reader overwrites one slot and the GUI takes whatever is newest
when it is ready to paint, so a slow paint never builds a backlog and the preview never lags behind. A video file
or an image file is a valid source (tests and demos use them); a video loops.

The automatic camera (the setting "", the default) is the first webcam; when none opens at start (servers, CI,
many VMs) it plays the built-in sample video of demo scenes instead, read by the same OpenCV code, and says so,
and switches to the webcam once one is plugged in (a real webcam always comes first). A camera the user picked that
fails still says it failed.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PySide6.QtCore import QObject, Signal

from app.capture import IMAGE_SUFFIXES, CaptureError, open_video, parse_source, read_still, to_rgb
from app.core.resources import sample_video_path

__all__ = [
    "AUTOMATIC",
    "IMAGE_SUFFIXES",
    "SAMPLE_LABEL",
    "CameraSource",
    "camera_for",
    "camera_label",
    "camera_setting",
    "list_cameras",
    "parse_source",
]

AUTOMATIC = ""  # the camera setting that means: the first webcam, else the sample video
AUTOMATIC_INDEX = 0  # the webcam the automatic camera tries
SAMPLE_NAME = "sample video"  # the camera's name in the history
SAMPLE_LABEL = "Sample video — no camera found"  # on screen, and in the camera picker
WEBCAM_RECHECK_S = 5.0  # while the sample plays, how often to look for a webcam plugged in since

V4L_NAMES = Path("/sys/class/video4linux")


def camera_label(source: int | str) -> str:
    """A name a person recognises: "Camera 0 (Integrated Webcam)" where Linux names the device, "Camera 0"
    elsewhere, and a file's own name for a video or image file."""
    if isinstance(source, int):
        try:
            device = (V4L_NAMES / f"video{source}" / "name").read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            device = ""
        return f"Camera {source} ({device})" if device else f"Camera {source}"
    return Path(source).name or str(source)


def list_cameras(max_index: int = 4) -> list[int]:
    """Camera indices that open (slow on some systems: call it off the GUI thread)."""
    found = []
    for index in range(max_index):
        capture = cv2.VideoCapture(index)
        try:
            if capture.isOpened():
                found.append(index)
        finally:
            capture.release()
    return found


def _opens(source: int | str) -> bool:
    """Whether a webcam (or file) opens now; on Linux a missing /dev/videoN is not even tried (no log line each
    time the sample video looks for a webcam)."""
    if isinstance(source, int) and sys.platform.startswith("linux") and not Path(f"/dev/video{source}").exists():
        return False
    if isinstance(source, str) and not Path(source).exists():
        return False
    capture = cv2.VideoCapture(source)
    try:
        return bool(capture.isOpened())
    finally:
        capture.release()


def camera_setting(text: str | int | None) -> str:
    """A camera as the settings keep it: "" for the automatic camera, else the index or the path."""
    if text is None or (isinstance(text, str) and text.strip() == AUTOMATIC):
        return AUTOMATIC
    return str(parse_source(text))


def camera_for(setting: str | int | None, parent: QObject | None = None) -> CameraSource:
    """The camera a setting or --camera names: "" (or None) is the automatic camera, else an index or a file."""
    if camera_setting(setting) == AUTOMATIC:
        return CameraSource(AUTOMATIC_INDEX, parent, fallback=sample_video_path())
    return CameraSource(parse_source(setting), parent)


class CameraSource(QObject):
    """Reads frames on a worker thread. `newest()` returns the latest RGB frame (or None), never a queue."""

    frame_ready = Signal()  # a new frame is waiting; emitted at most once per frame taken
    failed = Signal(str)  # a message a person can act on (no camera, permission, unplugged)
    recovered = Signal()
    fell_back = Signal()  # no webcam opened at start: the sample video plays instead (`is_sample` is now True)

    def __init__(self, source: int | str, parent: QObject | None = None, *, fallback: Path | None = None) -> None:
        super().__init__(parent)
        self.source = source
        self.fallback = fallback  # played when the webcam `source` does not open at start
        self.is_sample = False
        self._lock = threading.Lock()
        self._frame: np.ndarray | None = None
        self._frame_number = 0
        self._taken_number = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._times: list[float] = []
        self.name = camera_label(source)

    # --- GUI side ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="llavacam-camera", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Tell the reader to stop, without waiting for it (a camera read can take seconds to return)."""
        self._stop.set()

    def stop(self) -> None:
        """Stop the reader and wait for it (at shutdown: no thread may outlive the window)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)

    @property
    def reading(self) -> bool:
        """Whether the reader thread is still running (a stopped one may take a moment to return)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def newest(self) -> np.ndarray | None:
        with self._lock:
            self._taken_number = self._frame_number
            return self._frame

    @property
    def fps(self) -> float:
        with self._lock:
            times = list(self._times)
        if len(times) < 2 or times[-1] == times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    @property
    def frames_read(self) -> int:
        with self._lock:
            return self._frame_number

    # --- reader thread ----------------------------------------------------------------------------------------

    def _publish(self, rgb: np.ndarray) -> None:
        now = time.perf_counter()
        with self._lock:
            self._frame = rgb
            self._frame_number += 1
            notify = self._taken_number == self._frame_number - 1  # the GUI took the previous one
            self._times.append(now)
            if len(self._times) > 30:
                del self._times[0]
        if notify:
            self.frame_ready.emit()

    def _run(self) -> None:
        source = self.source
        if isinstance(source, str) and Path(source).suffix.lower() in IMAGE_SUFFIXES:
            self._run_still(Path(source))
            return
        if isinstance(source, str) and not Path(source).exists() and self.fallback is None:
            self.failed.emit(f"Camera source {source} does not exist.")
            return
        backoff = 0.5
        opened_once = False
        while not self._stop.is_set():
            capture = cv2.VideoCapture(source)
            if not capture.isOpened():
                capture.release()
                if self.fallback is not None and not opened_once:
                    if not self._run_sample(self.fallback):
                        return
                    with self._lock:  # a webcam appeared: it comes first
                        self.is_sample = False
                        self.name = camera_label(source)
                    continue
                self.failed.emit(self._open_failure_message())
                if isinstance(source, str):
                    return
                if self._stop.wait(backoff):
                    return
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.5
            opened_once = True
            self.recovered.emit()
            period = self._frame_period(capture)
            self._read_until_failure(capture, period, loop=isinstance(source, str))
            capture.release()
            if not self._stop.is_set() and isinstance(source, int):
                self.failed.emit(f"The camera ({self.name}) stopped sending pictures: unplugged? Retrying…")
                self._stop.wait(backoff)

    def _open_failure_message(self) -> str:
        if isinstance(self.source, str):
            return f"Cannot open {self.source} as a video."
        return (
            f"No camera found at index {self.source}, or permission to use it was denied. "
            "You can still open, paste or drop an image."
        )

    @staticmethod
    def _frame_period(capture: Any) -> float:
        fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
        return 1.0 / fps if 1.0 <= fps <= 120.0 else 0.0

    def _run_sample(self, path: Path) -> bool:
        """No webcam: play the sample video, looping, through the same OpenCV reader as any video file, until the
        camera stops (False) or the webcam opens (True)."""
        try:
            capture = open_video(str(path))
        except CaptureError as exc:  # a broken install: say so as any camera failure
            self.failed.emit(f"No camera found, and the sample video cannot be played: {exc}")
            return False
        with self._lock:
            self.is_sample = True
            self.name = SAMPLE_NAME
        self.fell_back.emit()
        checked_at = [time.perf_counter()]

        def webcam_appeared() -> bool:
            if time.perf_counter() - checked_at[0] < WEBCAM_RECHECK_S:
                return False
            checked_at[0] = time.perf_counter()
            return _opens(self.source)

        try:
            return self._read_until_failure(capture, self._frame_period(capture), loop=True, until=webcam_appeared)
        finally:
            capture.release()

    def _read_until_failure(self, capture: Any, period: float, *, loop: bool, until: Any = None) -> bool:
        """Publish frames until the stream ends, fails or the camera stops (False), or `until()` holds (True)."""
        next_at = time.perf_counter()
        while not self._stop.is_set():
            if until is not None and until():
                return True
            ok, bgr = capture.read()
            if not ok:
                if loop and capture.set(cv2.CAP_PROP_POS_FRAMES, 0):
                    ok, bgr = capture.read()  # a video file loops
                if not ok:
                    return False
            try:
                rgb = to_rgb(bgr)  # the same conversion and checks as the command line's frames
            except CaptureError as exc:
                self.failed.emit(f"{exc}.")
                return False
            self._publish(rgb)
            if period:  # files play at their own frame rate; a live camera paces itself
                next_at += period
                delay = next_at - time.perf_counter()
                if delay > 0:
                    self._stop.wait(delay)
                else:
                    next_at = time.perf_counter()
        return False

    def _run_still(self, path: Path) -> None:
        try:
            rgb = read_still(path)
        except CaptureError as exc:
            self.failed.emit(str(exc))
            return
        self._publish(rgb)
