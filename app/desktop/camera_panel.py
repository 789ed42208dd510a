"""The camera panel: the live preview (or the frozen frame the question is about), the camera picker, Capture and
Unpin, and the pinned badge. With no webcam, the automatic camera plays the sample video, labelled as such above
the preview and in the picker.

It owns the `CameraSource` and shows whatever it is told to; it decides nothing about the conversation. Capture and
Unpin are requests (`capture_requested`, `unpin_requested`) that the window turns into changes of the session's
pinned frame, which then comes back here through `show_pinned` / `show_live`.
"""

from __future__ import annotations

import asyncio

import numpy as np
from PySide6.QtCore import QRect, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPaintEvent
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from app.core.inference.images import RGBImage
from app.desktop.accessible import WrappingLabel
from app.desktop.camera import (
    AUTOMATIC,
    SAMPLE_LABEL,
    CameraSource,
    camera_for,
    camera_label,
    camera_setting,
    list_cameras,
    parse_source,
)

CHOOSE_FILE = "\x00choose-file"  # the picker's last entry opens a file dialog instead of naming a source


def to_qimage(image: RGBImage | np.ndarray) -> QImage:
    if isinstance(image, RGBImage):
        qimage = QImage(image.pixels, image.width, image.height, image.width * 3, QImage.Format.Format_RGB888)
    else:
        height, width = image.shape[:2]
        qimage = QImage(image.data, width, height, width * 3, QImage.Format.Format_RGB888)
    return qimage.copy()  # own the pixels: the buffer behind them may go away


class Preview(QWidget):
    """A picture at its own aspect ratio: the widget asks the layout for the height that fits its width (no tall box
    with black bars), and paints in device pixels, so the frame stays crisp on HiDPI screens."""

    BACKGROUND = QColor("#15181c")

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("cameraView")
        self.setAccessibleName("Camera view")
        self._image: QImage | None = None
        self._aspect = 3 / 4  # height / width, until a frame says otherwise
        self.message = "Starting camera…"
        policy = QSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)
        self.setMinimumSize(160, 120)

    def show_image(self, image: QImage) -> None:
        self._image = image
        aspect = image.height() / image.width() if image.width() else self._aspect
        if abs(aspect - self._aspect) > 1e-3:
            self._aspect = aspect
            self.updateGeometry()  # a new shape: ask the layout again
        self.update()

    def show_message(self, text: str) -> None:
        self._image = None
        self.message = text
        self.update()

    @property
    def aspect(self) -> float:
        return self._aspect

    def hasHeightForWidth(self) -> bool:  # noqa: N802 (Qt's name)
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802
        return max(self.minimumHeight(), round(width * self._aspect))

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(480, round(480 * self._aspect))

    def image_rect(self) -> QRect:
        """Where the picture is drawn: the largest rectangle of its aspect ratio inside the widget, centred."""
        area = self.rect()
        width = min(area.width(), round(area.height() / self._aspect))
        height = round(width * self._aspect)
        return QRect(area.x() + (area.width() - width) // 2, area.y() + (area.height() - height) // 2, width, height)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        painter = QPainter(self)
        painter.fillRect(self.rect(), self.BACKGROUND)
        if self._image is not None:
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawImage(self.image_rect(), self._image)
        else:
            painter.setPen(QColor("#c8ccd2"))
            painter.drawText(self.rect().adjusted(12, 12, -12, -12),
                             Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.message)  # fmt: skip
        painter.end()


class CameraPanel(QWidget):
    """Preview, picker, Capture / Unpin and the pinned badge; owns the camera reader."""

    capture_requested = Signal()
    unpin_requested = Signal()
    camera_chosen = Signal(str)  # the user picked a source in the drop-down (to remember in Settings)
    camera_failed = Signal(str)  # a message a person can act on
    camera_recovered = Signal()

    def __init__(self, capture_shortcut: str = "") -> None:
        super().__init__()
        self.setObjectName("cameraPanel")
        self.camera: CameraSource | None = None
        self._retired: list[CameraSource] = []  # stopped readers, joined at shutdown (never on a switch)
        self._frozen = False  # showing a pinned frame, not the live one
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.camera_badge = WrappingLabel("Camera source", SAMPLE_LABEL)  # while the sample video stands in
        self.camera_badge.setObjectName("cameraBadge")
        self.camera_badge.setVisible(False)
        layout.addWidget(self.camera_badge)
        self.preview = Preview()
        layout.addWidget(self.preview)
        info_row = QHBoxLayout()
        self.fps_label = QLabel("")
        self.fps_label.setObjectName("fpsLabel")
        self.fps_label.setAccessibleName("Camera frame rate")
        info_row.addWidget(self.fps_label)
        self.pinned_badge = WrappingLabel("Pinned frame status")  # its text is its accessible description
        self.pinned_badge.setObjectName("pinnedBadge")
        self.pinned_badge.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        info_row.addWidget(self.pinned_badge, 1)
        layout.addLayout(info_row)
        # The picker on a row of its own, Capture and Unpin under it: the panel stays narrow enough for an
        # 800 px window with the chat list and the chat beside it.
        picker_row = QHBoxLayout()
        controls = QHBoxLayout()
        self.camera_picker = QComboBox()
        self.camera_picker.setObjectName("cameraPicker")
        self.camera_picker.setAccessibleName("Camera")
        self.camera_picker.setToolTip("The camera to show, or a video or image file")
        self.camera_picker.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.camera_picker.setMinimumContentsLength(8)  # a long file name is elided, not a wider window
        self.camera_picker.addItem("Video or image file…", CHOOSE_FILE)
        self.camera_picker.activated.connect(self._picked)
        picker_row.addWidget(self.camera_picker, 1)
        layout.addLayout(picker_row)
        shortcut = f" ({capture_shortcut})" if capture_shortcut else ""
        self.capture_button = QPushButton("Capture")
        self.capture_button.setObjectName("captureButton")
        self.capture_button.setAccessibleName("Capture frame")
        self.capture_button.setToolTip(f"Freeze the live frame to ask about it{shortcut}")
        self.capture_button.clicked.connect(self.capture_requested)
        controls.addWidget(self.capture_button)
        self.unpin_button = QPushButton("Unpin")
        self.unpin_button.setObjectName("unpinButton")
        self.unpin_button.setAccessibleName("Unpin frame")
        self.unpin_button.setToolTip("Back to the live camera")
        self.unpin_button.clicked.connect(self.unpin_requested)
        self.unpin_button.setEnabled(False)
        controls.addWidget(self.unpin_button)
        controls.addStretch(1)
        layout.addLayout(controls)
        layout.addStretch(1)  # spare height goes below the controls, not into black bars around the picture
        self._fps_timer = QTimer(self)
        self._fps_timer.timeout.connect(self._show_fps)
        self._fps_timer.start(1000)

    # --- the camera -----------------------------------------------------------------------------------------------

    def start_camera(self, source: str | int | None) -> None:
        """Show `source` (an index, a video or an image file; "" is the automatic camera: the first webcam, else
        the sample video). The old reader stops without the GUI waiting."""
        old = self.camera
        if old is not None:
            old.request_stop()
            for signal in (old.frame_ready, old.failed, old.recovered, old.fell_back):
                signal.disconnect()  # a last frame or message of the old camera is not shown
            self._retired = [c for c in self._retired if c.reading]
            self._retired.append(old)
        self.camera = camera_for(source, self)
        self.camera.frame_ready.connect(self._show_frame)
        self.camera.failed.connect(self._on_failed)
        self.camera.recovered.connect(self._on_recovered)
        self.camera.fell_back.connect(self._on_fell_back)
        self.camera_badge.setVisible(False)
        self._select(str(self.camera.source))
        if not self._frozen:
            self.preview.show_message("Starting camera…")
        self.camera.start()

    async def find_cameras(self) -> None:
        """List the camera indices that open (a second each on some systems: in the loop's executor)."""
        self.add_cameras(await asyncio.to_thread(list_cameras))

    def add_cameras(self, indices: list[int]) -> None:
        for index in indices:
            self._add_source(str(index))

    def newest_frame(self) -> np.ndarray | None:
        return self.camera.newest() if self.camera is not None else None

    @property
    def source_name(self) -> str:
        return self.camera.name if self.camera is not None else ""

    def stop_readers(self) -> list[CameraSource]:
        """Closing: tell every reader to stop and return them, to be joined off the GUI thread (`CameraSource.stop`
        waits for its thread)."""
        self._fps_timer.stop()
        readers = [*self._retired, *([self.camera] if self.camera is not None else [])]
        for reader in readers:
            reader.request_stop()
        self._retired.clear()
        return readers

    # --- the picker ------------------------------------------------------------------------------------------------

    def _add_source(self, source: str) -> int:
        index = self.camera_picker.findData(source)
        if index < 0:
            index = self.camera_picker.count() - 1  # before "Video or image file…"
            label = SAMPLE_LABEL if source == AUTOMATIC else camera_label(parse_source(source))
            self.camera_picker.insertItem(index, label, source)
            self.camera_picker.setItemData(index, source, Qt.ItemDataRole.ToolTipRole)
        return index

    def _select(self, source: str) -> None:
        self.camera_picker.setCurrentIndex(self._add_source(source))

    @property
    def current_source(self) -> str:
        return str(self.camera.source) if self.camera is not None else ""

    def _picked(self, index: int) -> None:
        source = self.camera_picker.itemData(index)
        if source == CHOOSE_FILE:
            filters = "Videos and images (*.avi *.mp4 *.mkv *.mov *.webm *.png *.jpg *.jpeg *.bmp);;All files (*)"
            path, _ = QFileDialog.getOpenFileName(self, "Use a video or image as the camera", "", filters)
            if not path:
                self._select(self.current_source)
                return
            source = path
        self.choose(str(source))

    def choose(self, source: str) -> None:
        """The user chose `source`: show it and say so (the window remembers it)."""
        self.start_camera(source)
        self.camera_chosen.emit(camera_setting(source))  # the sample video's entry is the automatic camera: ""

    # --- what is shown ------------------------------------------------------------------------------------------------

    def show_pinned(self, image: RGBImage, badge: str) -> None:
        self._frozen = True
        self.preview.show_image(to_qimage(image))
        self.pinned_badge.setText(badge)
        self.unpin_button.setEnabled(True)

    def set_badge(self, text: str) -> None:
        self.pinned_badge.setText(text)

    def show_live(self) -> None:
        self._frozen = False
        self.pinned_badge.setText("")
        self.unpin_button.setEnabled(False)
        frame = self.newest_frame()
        if frame is not None:
            self.preview.show_image(to_qimage(frame))

    def _show_frame(self) -> None:
        frame = self.newest_frame()
        if frame is None or self._frozen:
            return
        self.preview.show_image(to_qimage(frame))

    def _show_fps(self) -> None:
        if self.camera is not None and self.camera.frames_read:
            self.fps_label.setText(f"{self.camera.fps:.0f} fps")

    def _on_fell_back(self) -> None:
        """No webcam opened: the sample video plays, and says so."""
        self.camera_badge.setVisible(True)
        self._select(AUTOMATIC)

    def _on_recovered(self) -> None:
        """The camera opened (again); for the automatic camera, a webcam took over from the sample video."""
        if self.camera is not None and self.camera_badge.isVisibleTo(self):
            self.camera_badge.setVisible(False)
            self._select(str(self.camera.source))
        self.camera_recovered.emit()

    def _on_failed(self, message: str) -> None:
        if not self._frozen:
            self.preview.show_message("No camera\n\nOpen (Ctrl+O), paste (Ctrl+V) or drop an image instead.")
        self.camera_failed.emit(message)


__all__ = ["CameraPanel", "Preview", "to_qimage"]
