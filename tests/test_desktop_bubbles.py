"""Chat bubbles as drawn with the app's style sheet: a stopped or failed answer gets its border."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QVBoxLayout, QWidget

from app.core.resources import resource_path
from app.desktop.chat_view import Bubble

STOPPED_BORDER = (0xD9, 0xA4, 0x00)  # resources/styles.qss
FAILED_BORDER = (0xC6, 0x28, 0x28)


def border_colour(qtbot, change) -> tuple[int, int, int]:
    host = QWidget()
    host.setStyleSheet(resource_path("styles.qss").read_text(encoding="utf-8"))
    layout = QVBoxLayout(host)
    bubble = Bubble("assistant", "An answer")
    layout.addWidget(bubble)
    qtbot.addWidget(host)
    host.resize(400, 200)
    host.show()
    qtbot.waitExposed(host)
    change(bubble)  # after the bubble was first shown, as a streamed answer ends
    image = bubble.grab().toImage()
    pixel = image.pixelColor(image.width() // 2, 0)
    return pixel.red(), pixel.green(), pixel.blue()


@pytest.mark.parametrize(("change", "colour"), [
    (lambda b: b.finish({"finish_reason": "cancelled"}), STOPPED_BORDER),
    (lambda b: b.fail("the model stopped working"), FAILED_BORDER),
])  # fmt: skip
def test_a_stopped_or_failed_answer_is_drawn_with_its_border(qtbot, change, colour):
    assert border_colour(qtbot, change) == colour


def test_copy_puts_the_answer_on_the_clipboard_and_says_copied(qtbot):
    from PySide6.QtGui import QGuiApplication

    bubble = Bubble("assistant", "A red square.")
    qtbot.addWidget(bubble)
    bubble.copy_button.click()
    assert QGuiApplication.clipboard().text() == "A red square."
    assert bubble.copy_button.text() == "Copied"
    qtbot.waitUntil(lambda: bubble.copy_button.text() == "Copy", timeout=5000)


def test_markdown_in_an_answer_loads_no_local_image(qtbot, tmp_path):
    from PySide6.QtGui import QImage

    picture = tmp_path / "private.png"
    image = QImage(300, 300, QImage.Format.Format_RGB32)
    image.fill(0xFF0000)
    assert image.save(str(picture))
    for link in (str(picture), picture.as_uri()):
        bubble = Bubble("assistant", f"See ![x]({link})")
        qtbot.addWidget(bubble)
        assert bubble.text_label.sizeHint().height() < 150, link  # the 300 px picture was not read
        assert bubble.text == f"See ![x]({link})"  # Copy still gives the answer as written
