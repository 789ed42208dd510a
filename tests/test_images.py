"""Image intake: bytes, paths and frames in; orientation, downscaling and clear errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app.core.errors import ImageError
from app.core.inference.images import RGBImage, load_image


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_small_image_passes_unchanged_and_hashes_like_the_same_pixels_as_an_array():
    original = Image.new("RGB", (30, 20), (10, 200, 30))
    original.putpixel((3, 4), (255, 0, 0))
    from_bytes = load_image(png_bytes(original), max_side=672)
    from_array = load_image(np.asarray(original), max_side=672)
    assert (from_bytes.width, from_bytes.height) == (30, 20)
    assert from_bytes.pixels == original.tobytes(), "no resampling below the bound: lossless"
    assert from_bytes.digest == from_array.digest


def test_large_image_is_downscaled_to_the_bound_keeping_aspect():
    big = Image.new("RGB", (2000, 1000), (1, 2, 3))
    image = load_image(png_bytes(big), max_side=672)
    assert (image.width, image.height) == (672, 336)


def test_exif_orientation_is_applied(tmp_path):
    wide = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    path = tmp_path / "rotated.jpg"
    wide.save(path, format="JPEG", exif=exif.tobytes())
    image = load_image(path)
    assert (image.width, image.height) == (20, 40)


def test_transparent_areas_become_white():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    image = load_image(png_bytes(rgba))
    assert image.pixels[:3] == b"\xff\xff\xff"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_text("this is not a picture"), "not an image"),
        (lambda p: p.write_bytes(png_bytes(Image.new("RGB", (50, 50)))[:60]), "damaged or truncated|not an image"),
    ],
)
def test_bad_files_raise_image_error_naming_the_file(tmp_path, make, message):
    path = tmp_path / "input.png"
    make(path)
    with pytest.raises(ImageError, match=message) as info:
        load_image(path)
    assert "input.png" in str(info.value)


def test_missing_file_and_folder_are_named(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


def test_empty_bytes_and_wrong_arrays_are_refused():
    with pytest.raises(ImageError, match="empty"):
        load_image(b"")
    with pytest.raises(ImageError, match="uint8"):
        load_image(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ImageError, match="shape"):
        load_image(np.zeros((4, 4, 2), dtype=np.uint8))


def test_rgb_image_round_trips_through_jpeg():
    image = RGBImage(2, 1, b"\x00\x00\x00\xff\xff\xff")
    decoded = Image.open(io.BytesIO(image.to_jpeg()))
    assert decoded.size == (2, 1)
