"""Turn whatever the user gives us (bytes, a path, a camera frame) into RGB pixels the encoder can take.

The engine keys its image cache on `RGBImage.digest`, a hash of the pixels, so the same frame given twice
(pasted, then captured again) is encoded once.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from app.core.errors import ImageError

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image as PILImage

ImageSource = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]", "np.ndarray", "PILImage.Image", "RGBImage"]


@dataclass(frozen=True)
class RGBImage:
    """Tightly packed 8-bit RGB pixels, row-major."""

    width: int
    height: int
    pixels: bytes = field(repr=False)
    source: str = ""

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ImageError(f"image has no pixels ({self.width}x{self.height})")
        if len(self.pixels) != self.width * self.height * 3:
            raise ImageError(
                f"image data is {len(self.pixels)} bytes, expected {self.width * self.height * 3} for "
                f"{self.width}x{self.height} RGB"
            )

    @property
    def digest(self) -> str:
        """SHA-256 of size and pixels: equal for equal pictures whatever file they came from."""
        cached = self.__dict__.get("_digest")
        if cached is None:
            h = hashlib.sha256(f"{self.width}x{self.height}:".encode())
            h.update(self.pixels)
            cached = h.hexdigest()
            object.__setattr__(self, "_digest", cached)
        return cached

    def to_pil(self) -> PILImage.Image:
        from PIL import Image

        return Image.frombytes("RGB", (self.width, self.height), self.pixels)

    def to_jpeg(self, quality: int = 90) -> bytes:
        buffer = io.BytesIO()
        self.to_pil().save(buffer, format="JPEG", quality=quality)
        return buffer.getvalue()

    def to_png(self) -> bytes:
        buffer = io.BytesIO()
        self.to_pil().save(buffer, format="PNG")
        return buffer.getvalue()


def load_image(source: ImageSource, *, max_side: int | None = None) -> RGBImage:
    """Read `source` as RGB, apply EXIF orientation, and downscale so the long side is at most `max_side`.

    Images already within `max_side` pass through unchanged (no resampling, so no loss).
    Raises ImageError with a message naming the problem for empty, missing or non-image input.
    """
    image = source if isinstance(source, RGBImage) else _to_rgb_image(source)
    if max_side is not None and max(image.width, image.height) > max_side:
        image = _downscale(image, max_side)
    return image


def _to_rgb_image(source: Any) -> RGBImage:
    from PIL import Image

    if isinstance(source, Image.Image):
        return _from_pil(source, "image")
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise ImageError("the image is empty (0 bytes)")
        return _from_encoded(data, "pasted image")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise ImageError(f"{path}: no such file")
        if path.is_dir():
            raise ImageError(f"{path}: is a folder, not an image")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ImageError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
        if not data:
            raise ImageError(f"{path}: the file is empty")
        return _from_encoded(data, str(path))
    if hasattr(source, "shape") and hasattr(source, "dtype"):
        return _from_array(source)
    raise ImageError(f"cannot use a {type(source).__name__} as an image")


def _from_encoded(data: bytes, name: str) -> RGBImage:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            return _from_pil(opened, name)
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name}: not an image file (or a format Pillow cannot read)") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{name}: the image is damaged or truncated ({exc})") from exc


def _from_pil(image: PILImage.Image, name: str) -> RGBImage:
    from PIL import ImageOps

    oriented = ImageOps.exif_transpose(image) or image
    if oriented.mode in ("RGBA", "LA", "PA") or (oriented.mode == "P" and "transparency" in oriented.info):
        # Transparent areas become white, as a viewer shows them, rather than black.
        rgba = oriented.convert("RGBA")
        from PIL import Image

        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        rgb = background
    else:
        rgb = oriented.convert("RGB")
    width, height = rgb.size
    return RGBImage(width, height, rgb.tobytes(), source=name)


def _from_array(array: Any) -> RGBImage:
    import numpy as np

    arr = np.asarray(array)
    if arr.dtype != np.uint8:
        raise ImageError(f"camera frame has dtype {arr.dtype}, expected uint8")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ImageError(f"camera frame has shape {arr.shape}, expected height x width x 3 (RGB)")
    arr = np.ascontiguousarray(arr[:, :, :3])
    height, width = arr.shape[:2]
    return RGBImage(int(width), int(height), arr.tobytes(), source="frame")


def _downscale(image: RGBImage, max_side: int) -> RGBImage:
    from PIL import Image

    scale = max_side / max(image.width, image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    resized = image.to_pil().resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
    return RGBImage(size[0], size[1], resized.tobytes(), source=image.source)
