"""The benchmark's test picture: a 640x480 synthetic scene (what a webcam frame costs, no download)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw


def write_scene(path: Path, size: tuple[int, int] = (640, 480)) -> Path:
    if path.exists():
        return path
    image = Image.new("RGB", size, (180, 200, 220))
    draw = ImageDraw.Draw(image)
    width, height = size
    draw.rectangle((0, height * 2 // 3, width, height), fill=(120, 90, 60))  # a table
    draw.ellipse((width // 4, height // 3, width // 2, height * 3 // 4), fill=(220, 40, 40))  # an apple
    draw.rectangle((width * 3 // 5, height // 4, width * 4 // 5, height * 3 // 4), fill=(30, 60, 160))  # a mug
    for x in range(0, width, 16):
        draw.line((x, 0, x + 40, height // 3), fill=(200, 210, 230))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path
