"""Hostile command lines and images: each is one clear line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from app.core.errors import ImageError, printable
from app.core.inference.images import load_image
from app.server.messages import Limits, to_conversation
from models.make_test_models import write_tiny_pair
from tests.hostile.serving import run_cli


def one_error_line(result) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert "unexpected error" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("llavacam: error: ")
    return lines[0]


def gif_claiming(width: int, height: int) -> bytes:
    """A 29-byte GIF whose header claims width x height."""
    return (b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00"
            + b"\x2c\x00\x00\x00\x00" + struct.pack("<HH", width, height) + b"\x00\x02\x02\x44\x01\x00;")  # fmt: skip


def test_unknown_template_family_is_one_line_not_a_thread_traceback(tiny_models):
    line = one_error_line(run_cli("ask", "--model", str(tiny_models.text), "-q", "hi", "--template", "foo"))
    assert "unknown template family 'foo'" in line


@pytest.mark.parametrize(("option", "value"), [("--temperature", "nan"), ("--temperature", "inf"),
                                               ("--top-p", "nan"), ("--temperature", "-1")])
def test_non_finite_sampling_option_is_one_line(tiny_models, option, value):
    line = one_error_line(run_cli("ask", "--model", str(tiny_models.text), "-q", "hi", option, value))
    assert line.startswith(f"llavacam: error: {option} ")


@pytest.mark.parametrize("option", ["-q", "--system"])
def test_command_line_text_that_is_not_utf8_is_one_line(tiny_models, option):
    """Undecodable argv bytes reach Python as lone surrogates ("caf\\udcff" is sent as the byte 0xff)."""
    extra = ["-q", "hi"] if option == "--system" else []
    line = one_error_line(run_cli("ask", "--model", str(tiny_models.text), *extra, option, "caf\udcff"))
    assert line == (f"llavacam: error: {option} is not valid UTF-8 text (byte 0xff at position 3): check the "
                    "terminal's encoding")


def test_absurd_thread_count_is_one_line(tiny_models):
    line = one_error_line(run_cli("ask", "--model", str(tiny_models.text), "-q", "hi", "--threads", "10000"))
    assert line.startswith("llavacam: error: --threads 10000: give 1 to ")


def test_absurd_thread_count_for_serve_is_one_line(tiny_models):
    line = one_error_line(run_cli("serve", "--model", str(tiny_models.text), "--threads", "10000"))
    assert "--threads 10000" in line


def test_gif_claiming_65535_squared_is_one_line(tiny_models, tmp_path):
    bomb = tmp_path / "bomb.gif"
    bomb.write_bytes(gif_claiming(65535, 65535))
    assert len(bomb.read_bytes()) == 29
    line = one_error_line(run_cli("ask", "--model", str(tiny_models.text), "--mmproj", str(tiny_models.mmproj),
                                  "--image", str(bomb), "-q", "What?"))  # fmt: skip
    assert "bomb.gif" in line
    assert "limit" in line


def test_small_png_of_12000_squared_is_refused_before_decoding(tiny_models, tmp_path):
    big = tmp_path / "big.png"
    Image.new("1", (12000, 12000)).save(big)  # a few KB that would decode to 432 MB of RGB
    line = one_error_line(run_cli("ask", "--model", str(tiny_models.text), "--mmproj", str(tiny_models.mmproj),
                                  "--image", str(big), "-q", "What?"))  # fmt: skip
    assert "12000x12000 (144 megapixels); the limit is 50 megapixels" in line


def test_model_with_a_hostile_chat_template_is_one_line_naming_it(tmp_path):
    pair = write_tiny_pair(tmp_path, chat_template="{% for i in range(100000) %}{% for j in range(100000) %}"
                                                   "{% endfor %}{% endfor %}")  # fmt: skip
    line = one_error_line(run_cli("ask", "--model", str(pair.text), "-q", "hi", timeout=60))
    assert "the chat template of " in line
    assert "takes more than" in line


def test_terminal_escapes_in_a_file_name_are_not_printed_raw(tiny_models, tmp_path):
    name = tmp_path / "\x1b]0;pwned\x07\x1b[2Jcat.png"
    line = one_error_line(run_cli("ask", "--model", str(tiny_models.text), "--mmproj", str(tiny_models.mmproj),
                                  "--image", str(name), "-q", "What?"))  # fmt: skip
    assert "\x1b" not in line
    assert "\x07" not in line
    assert "\\x1b]0;pwned\\x07\\x1b[2Jcat.png: no such file" in line


def test_error_messages_are_bounded():
    assert len(printable("x" * 238_000)) <= 501
    assert printable(b"\xff\xfe\x00tensor") == "\\xff\\xfe\\x00tensor"


def test_text_only_prompt_too_long_does_not_mention_an_image(tiny_models):
    line = one_error_line(run_cli("ask", "--model", str(tiny_models.text), "--n-ctx", "256", "-q", "why " * 300))
    assert "the question needs " in line
    assert "with the image" not in line


def test_16_bit_grayscale_png_is_scaled_not_clipped(tmp_path):
    gray = np.full((8, 8), 32768, dtype=np.uint16)
    path = tmp_path / "gray16.png"
    Image.fromarray(gray).save(path)
    assert Image.open(path).mode.startswith("I")
    image = load_image(path)
    assert set(image.pixels) == {128}


def test_default_pixel_cap_applies_where_no_cap_is_given(tmp_path):
    """The window opens, drops and pastes files through load_image(path): the default cap protects it too."""
    big = tmp_path / "window-drop.png"
    Image.new("1", (9000, 9000)).save(big)
    with pytest.raises(ImageError, match=r"9000x9000 \(81 megapixels\); the limit is 50 megapixels"):
        load_image(big)


def test_server_images_are_decoded_to_the_encoder_bound_before_queueing():
    buffer = io.BytesIO()
    Image.new("RGB", (3000, 2000), (90, 20, 200)).save(buffer, format="JPEG")
    import base64

    uri = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": uri}},
                                             {"type": "text", "text": "x"}]}]  # fmt: skip
    conversation = to_conversation(messages, Limits(), max_side=672)
    assert conversation.image is not None
    assert (conversation.image.width, conversation.image.height) == (672, 448)
