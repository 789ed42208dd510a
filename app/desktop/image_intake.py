"""Pictures that come from outside the camera: the clipboard, a drop, or an image file.

`picture_in(mime)` says what a paste or a drop holds — an image already in memory (pinned at once) or a file to
read (read in the loop's executor by the window, never on the GUI thread) — with the same pixel cap as files
opened from disk, the command line and the server.
"""

from __future__ import annotations

from PySide6.QtCore import QMimeData
from PySide6.QtGui import QImage

from app.core.inference.images import RGBImage, check_pixels

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.webp *.gif *.tif *.tiff);;All files (*)"


def picture_in(mime: QMimeData | None, source: str) -> RGBImage | str | None:
    """The picture a paste or drop carries: an RGBImage, the path of a local file to read, or None.

    Raises ImageError for an image too large to use (the message says so)."""
    if mime is None:
        return None
    if mime.hasImage():
        pasted = QImage(mime.imageData())
        check_pixels(pasted.width(), pasted.height(), f"the {source}'s image")
        qimage = pasted.convertToFormat(QImage.Format.Format_RGB888)
        if not qimage.isNull():
            return rgb_from_qimage(qimage, source)
    if mime.hasUrls():
        local = [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]
        if local:
            return local[0]
    return None


def rgb_from_qimage(qimage: QImage, source: str = "clipboard") -> RGBImage:
    """An RGB888 QImage's pixels without its row padding."""
    width, height = qimage.width(), qimage.height()
    stride = qimage.bytesPerLine()
    raw = bytes(qimage.constBits())[: stride * height]
    rows = b"".join(raw[y * stride : y * stride + width * 3] for y in range(height))
    return RGBImage(width, height, rows, source=source)


__all__ = ["IMAGE_FILTER", "picture_in", "rgb_from_qimage"]
