"""Hostile files given to `llavacam watch --camera`: each is one clear line (exit 2) before any model loads."""

from __future__ import annotations

import struct
import zlib

from app.cli import main
from tests.support.watch_video import write_colour_video

# No model is given: the camera is opened first, so a hostile camera file fails before the model matters.


def watch(camera, capsys):
    code = main(["watch", "--camera", str(camera), "-q", "What is this?", "--no-history"])
    err = capsys.readouterr().err
    return code, err


def test_a_zero_byte_video_is_one_line(tmp_path, capsys):
    video = tmp_path / "empty.avi"
    video.write_bytes(b"")
    code, err = watch(video, capsys)
    assert code == 2
    assert err == f"llavacam: error: Cannot open {video} as a video: the file is empty.\n"


def test_a_video_cut_inside_its_header_is_one_line(tmp_path, capsys):
    whole = write_colour_video(tmp_path / "whole.avi", ["red"] * 10).read_bytes()
    video = tmp_path / "cut.avi"
    video.write_bytes(whole[:200])
    code, err = watch(video, capsys)
    assert code == 2
    assert err in {
        f"llavacam: error: Cannot open {video} as a video.\n",
        f"llavacam: error: Cannot read a frame from {video}: the video is damaged.\n",
    }


def test_a_png_claiming_absurd_dimensions_is_refused_from_its_header(tmp_path, capsys):
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 200_000, 200_000, 8, 2, 0, 0, 0)
    image = tmp_path / "huge.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)))
    code, err = watch(image, capsys)
    assert code == 2
    assert err == f"llavacam: error: {image}: the image claims more pixels than the limit of 64 megapixels\n"


def test_a_text_file_named_png_is_one_line(tmp_path, capsys):
    image = tmp_path / "notes.png"
    image.write_text("not a picture")
    code, err = watch(image, capsys)
    assert code == 2
    assert err == f"llavacam: error: {image}: not an image file (or a format Pillow cannot read)\n"


def test_a_missing_camera_file_is_one_line(tmp_path, capsys):
    code, err = watch(tmp_path / "gone.mp4", capsys)
    assert code == 2
    assert err == f"llavacam: error: Camera source {tmp_path / 'gone.mp4'} does not exist.\n"
