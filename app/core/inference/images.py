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

# Images are refused above this many pixels before they are decoded: a 140 KB PNG can claim 12000 x 12000 and
# take 1.7 GB once decoded. 50 MP is more than any phone camera's photo.
DEFAULT_MAX_PIXELS = 50_000_000

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


def load_image(source: ImageSource, *, max_side: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> RGBImage:
    """Read `source` as RGB, apply EXIF orientation, and downscale so the long side is at most `max_side`.

    Images already within `max_side` pass through unchanged (no resampling, so no loss). An encoded image is
    decoded straight to `max_side` (so only the small copy is kept), and refused from its header alone when it
    claims more than `max_pixels`. Raises ImageError with a message naming the problem for empty, missing,
    oversized or non-image input.
    """
    image = source if isinstance(source, RGBImage) else _to_rgb_image(source, max_side, max_pixels)
    if max_side is not None and max(image.width, image.height) > max_side:
        image = _downscale(image, max_side)
    return image


def image_header_size(data: bytes | Path, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """The size an encoded image claims, read from its header only; ImageError when it is not an image or claims
    more than `max_pixels` (nothing is decoded)."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # Our own cap (below) decides; Pillow's warning would only print a second, noisier line.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            probe = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)
        with probe:
            width, height = probe.size
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{name}: the image claims more pixels than the limit of {_megapixels(max_pixels)}") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name}: not an image file (or a format Pillow cannot read)") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{name}: the image is damaged or truncated ({_short(exc)})") from exc
    check_pixels(width, height, name, max_pixels)
    return width, height


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.3g} megapixels"


def _short(exc: BaseException) -> str:
    from app.core.errors import printable

    return printable(str(exc), limit=120)


def check_pixels(width: int, height: int, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """ImageError when an image of width x height (already decoded elsewhere, e.g. by Qt) is over the cap."""
    if width * height > max_pixels:
        raise ImageError(f"{name}: the image is {width}x{height} ({_megapixels(width * height)}); "
                         f"the limit is {_megapixels(max_pixels)}")  # fmt: skip


def _to_rgb_image(source: Any, max_side: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> RGBImage:
    from PIL import Image

    if isinstance(source, Image.Image):
        check_pixels(source.width, source.height, "image", max_pixels)
        return _from_pil(source, "image", max_side)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise ImageError("the image is empty (0 bytes)")
        return _from_encoded(data, "pasted image", max_side, max_pixels)
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
        return _from_encoded(data, str(path), max_side, max_pixels)
    if hasattr(source, "shape") and hasattr(source, "dtype"):
        return _from_array(source)
    raise ImageError(f"cannot use a {type(source).__name__} as an image")


def _from_encoded(data: bytes, name: str, max_side: int | None, max_pixels: int) -> RGBImage:
    from PIL import Image, UnidentifiedImageError

    image_header_size(data, name, max_pixels)
    try:
        with Image.open(io.BytesIO(data)) as opened:
            if max_side is not None:
                opened.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced scale (no-op otherwise)
            opened.load()
            return _from_pil(opened, name, max_side)
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{name}: the image claims more pixels than the limit of {_megapixels(max_pixels)}") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name}: not an image file (or a format Pillow cannot read)") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{name}: the image is damaged or truncated ({_short(exc)})") from exc


def _deep_to_8bit(image: PILImage.Image) -> PILImage.Image:
    """16-bit (and 32-bit) grayscale scaled to 8 bits; Pillow's convert("RGB") would clip it to near white."""
    import numpy as np
    from PIL import Image

    values = np.asarray(image)
    if image.mode.startswith("I;16"):
        gray = (values.astype(np.uint16) >> 8).astype(np.uint8)
    else:
        peak = float(values.max()) if values.size else 0.0
        if image.mode == "F" and peak <= 1.0:
            peak = 1.0
        elif peak <= 255:
            peak = 255.0
        elif peak <= 65535:
            peak = 65535.0
        gray = (np.clip(values, 0, peak) * (255.0 / peak)).astype(np.uint8)
    return Image.fromarray(gray, "L")


def _from_pil(image: PILImage.Image, name: str, max_side: int | None = None) -> RGBImage:
    from PIL import Image, ImageOps

    oriented = ImageOps.exif_transpose(image) or image
    if oriented.mode.startswith("I;16") or oriented.mode in ("I", "F"):
        oriented = _deep_to_8bit(oriented)
    if oriented.mode in ("RGBA", "LA", "PA") or (oriented.mode == "P" and "transparency" in oriented.info):
        # Transparent areas become white, as a viewer shows them, rather than black.
        rgba = oriented.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        rgb = background
    else:
        rgb = oriented.convert("RGB")
    if max_side is not None and max(rgb.size) > max_side:
        # The same resampling as _downscale, before the full-size pixels are ever copied out.
        scale = max_side / max(rgb.size)
        size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
        rgb = rgb.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
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


def downscale(image: RGBImage, max_side: int) -> RGBImage:
    """`image` with its longer side at most `max_side` (the same image when it already fits)."""
    return image if max(image.width, image.height) <= max_side else _downscale(image, max_side)
