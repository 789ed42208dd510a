"""The chat view: bubbles as drawn with the app's style sheet (light and dark), streamed Markdown rendered in bounded
work per update, nothing loaded from a document, no sideways scrolling, code blocks, thumbnails, versions, names."""

from __future__ import annotations

from collections import Counter

import pytest
import shiboken6
from PySide6.QtGui import QAccessible, QColor, QGuiApplication, QImage, QPixmap
from PySide6.QtWidgets import QApplication, QVBoxLayout, QWidget

from app.core.inference.answerer import TurnStats
from app.desktop import chat_view
from app.desktop.chat_view import (
    EMPTY_CHAT_TEXT,
    Block,
    BlockSplitter,
    Bubble,
    ChatView,
    CodeBlock,
    TextBlock,
)
from app.desktop.theme import COLOURS, apply_theme, dark_palette, remove_theme

STOPPED_BORDER = (0xD9, 0xA4, 0x00)  # resources/styles.qss
FAILED_BORDER = (0xC6, 0x28, 0x28)
STATS = TurnStats(image_encode_ms=312.0, ttft_ms=845.0, decode_tok_s=23.4, finish_reason="stop",
                  context_rebuilt=True, dropped_turns=2)  # fmt: skip
TIMING_LINE = "image 0.3 s · first token 0.84 s · 23.4 tok/s · context rebuilt (2 old turns dropped)"


@pytest.fixture
def themed(qtbot):
    """The app styled as the window styles it; Qt's defaults again afterwards."""
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    yield lambda theme: apply_theme(app, theme)
    remove_theme(app)


def rgb(colour: QColor) -> tuple[int, int, int]:
    return colour.red(), colour.green(), colour.blue()


def hex_rgb(name: str) -> tuple[int, int, int]:
    return rgb(QColor(name))


def shown(qtbot, widget: QWidget, width: int = 500, height: int = 400) -> QWidget:
    qtbot.addWidget(widget)
    widget.resize(width, height)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def border_colour(qtbot, change) -> tuple[int, int, int]:
    host = QWidget()
    layout = QVBoxLayout(host)
    bubble = Bubble("assistant", "An answer")
    layout.addWidget(bubble)
    shown(qtbot, host, 400, 200)
    change(bubble)  # after the bubble was first shown, as a streamed answer ends
    image = bubble.card.grab().toImage()
    return rgb(image.pixelColor(image.width() // 2, 0))


@pytest.mark.parametrize(("change", "colour"), [
    (lambda b: b.finish(TurnStats(finish_reason="cancelled")), STOPPED_BORDER),
    (lambda b: b.fail("the model stopped working"), FAILED_BORDER),
])  # fmt: skip
@pytest.mark.parametrize("theme", ["light", "dark"])
def test_a_stopped_or_failed_answer_is_drawn_with_its_border(qtbot, themed, change, colour, theme):
    themed(theme)
    assert border_colour(qtbot, change) == colour


def test_an_answer_shows_an_ellipsis_until_its_first_word_and_says_when_there_was_none(qtbot):
    bubble = Bubble("assistant")
    qtbot.addWidget(bubble)
    assert [w.text() for w in bubble.body.widgets()] == ["…"]
    bubble.append("It")
    assert [w.text() for w in bubble.body.widgets()] == ["It"]
    empty = Bubble("assistant")
    qtbot.addWidget(empty)
    empty.finish(TurnStats(finish_reason="stop"))
    assert [w.text() for w in empty.body.widgets()] == ["(no answer)"]
    stopped = Bubble("assistant")
    qtbot.addWidget(stopped)
    stopped.finish(TurnStats(finish_reason="cancelled"))
    assert [w.text() for w in stopped.body.widgets()] == ["(stopped before the first word)"]


def test_copy_puts_the_answer_on_the_clipboard_and_says_copied(qtbot):
    bubble = Bubble("assistant", "A red square.")
    qtbot.addWidget(bubble)
    bubble.copy_button.click()
    assert QGuiApplication.clipboard().text() == "A red square."
    assert bubble.copy_button.text() == "Copied"
    qtbot.waitUntil(lambda: bubble.copy_button.text() == "Copy", timeout=5000)


def test_markdown_in_an_answer_loads_no_local_image(qtbot, tmp_path):
    picture = tmp_path / "private.png"
    image = QImage(300, 300, QImage.Format.Format_RGB32)
    image.fill(0xFF0000)
    assert image.save(str(picture))
    for answer in (f"See ![x]({picture})", f"See ![x]({picture.as_uri()})", f'See <img src="{picture}">',
                   f'See <img src="{picture.as_uri()}">', f"See ![x][p]\n\n[p]: {picture.as_uri()}"):  # fmt: skip
        bubble = Bubble("assistant", answer)
        bubble.finish(TurnStats(finish_reason="stop"))
        shown(qtbot, bubble, 500, 400)
        assert bubble.card.sizeHint().height() < 150, answer  # the 300 px picture was not read
        assert bubble.text == answer  # Copy still gives the answer as written
        if "<img" in answer:
            assert bubble.body.widgets()[0].text() == answer  # raw HTML is shown as the text it is


def test_a_document_in_the_chat_refuses_every_resource(qtbot, tmp_path):
    picture = tmp_path / "private.png"
    QImage(4, 4, QImage.Format.Format_RGB32).save(str(picture))
    block = TextBlock()
    qtbot.addWidget(block)
    document = block.document()
    from PySide6.QtCore import QUrl
    from PySide6.QtGui import QTextDocument

    for url in (QUrl.fromLocalFile(str(picture)), QUrl("https://example.com/tracker.png")):
        assert document.resource(QTextDocument.ResourceType.ImageResource, url) is None


# --- streaming: bounded work per update ---------------------------------------------------------------------------

PARAGRAPHS = [f"Paragraph {n} says **{n}** things about the frame, one after the other." for n in range(60)]


@pytest.fixture
def parses(monkeypatch) -> list[str]:
    """Every Markdown text the chat parses, in order."""
    seen: list[str] = []
    real = chat_view.render_markdown

    def recording(document, markdown: str) -> None:
        seen.append(markdown)
        real(document, markdown)

    monkeypatch.setattr(chat_view, "render_markdown", recording)
    return seen


def stream(bubble: Bubble, text: str, size: int) -> None:
    for start in range(0, len(text), size):
        bubble.append(text[start : start + size])


def test_a_streaming_answer_parses_only_its_open_block_on_each_update(qtbot, parses):
    answer = "\n\n".join(PARAGRAPHS)
    bubble = Bubble("assistant")
    qtbot.addWidget(bubble)
    stream(bubble, answer, 5)
    bubble.finish(TurnStats(finish_reason="stop"))
    updates = len(range(0, len(answer), 5))
    # One parse per update (and one per paragraph closed in it) at most, never more than the paragraph still
    # arriving: the work per update does not grow with the answer (re-rendering all of it on each update would
    # parse ~len(answer)**2 / 10 characters in total).
    assert len(parses) <= updates + len(PARAGRAPHS)  # a paragraph that ends inside a piece: its last render too
    assert max(len(text) for text in parses) == max(len(p) for p in PARAGRAPHS)
    assert sum(len(text) for text in parses) < 12 * len(answer)
    counts = Counter(parses)
    assert [counts[p] for p in PARAGRAPHS] == [1] * len(PARAGRAPHS)  # each finished paragraph rendered once
    assert [w.text() for w in bubble.body.widgets()] == [p.replace("**", "") for p in PARAGRAPHS]


def test_a_streamed_answer_renders_as_the_same_answer_given_at_once(qtbot):
    answer = ("Intro with a [link](https://example.com).\n\n```python\nx = 1\n\n\ny = 2\n```\n\n- one\n- two\n\n"
              "- three, loose\n\n1. first\n\n2. second\n   continued\n\n~~~\ntilde code\n~~~\nAfter.\n\n| a | b |\n"
              "|---|---|\n| 1 | 2 |\n\nThe end.")  # fmt: skip

    def blocks(bubble: Bubble) -> list[tuple[str, str]]:
        return [("code", w.code) if isinstance(w, CodeBlock) else ("text", w.text()) for w in bubble.body.widgets()]

    whole = Bubble("assistant", answer)
    whole.finish(TurnStats(finish_reason="stop"))
    for size in (1, 3, 17):
        streamed = Bubble("assistant")
        stream(streamed, answer, size)
        streamed.finish(TurnStats(finish_reason="stop"))
        assert blocks(streamed) == blocks(whole), size
    qtbot.addWidget(whole)
    kinds = [kind for kind, _ in blocks(whole)]
    assert kinds == ["text", "code", "text", "code", "text", "text", "text"]  # the lists stay one block
    assert blocks(whole)[1] == ("code", "x = 1\n\n\ny = 2")
    assert blocks(whole)[2] == ("text", "one\ntwo\nthree, loose\nfirst\nsecond continued")
    assert blocks(whole)[3] == ("code", "tilde code")


@pytest.mark.parametrize(("text", "closed", "open_kind"), [
    ("One.\n\nTw", [Block("markdown", "One.")], "markdown"),
    ("One.\n\n", [], "markdown"),  # what follows the blank line is not known yet
    ("- a\n\n- b\n\nAfter", [Block("markdown", "- a\n\n- b")], "markdown"),
    ("- a\n\n-", [], "markdown"),  # "-" may be the next item
    ("Text\n```py\nx\n\ny\n```\nMore", [Block("markdown", "Text"), Block("code", "x\n\ny", "py")], "markdown"),
    ("```\nopen code\n\nstill", [], "code"),
    ("````\n```\n````\n", [Block("code", "```")], None),
    ("Para\n    indented\n\n    more indented\n\nNext", [Block("markdown", "Para\n    indented\n\n    more indented")],
     "markdown"),
])  # fmt: skip
def test_the_splitter_closes_a_block_only_when_nothing_later_can_change_it(text, closed, open_kind):
    splitter = BlockSplitter()
    assert splitter.feed(text) == closed
    tail = splitter.tail()
    assert (tail.kind if tail is not None else None) == open_kind


def test_an_unclosed_fence_at_the_end_is_code(qtbot):
    splitter = BlockSplitter()
    assert splitter.feed("```sh\nls -l\n") == []
    assert splitter.close() == [Block("code", "ls -l", "sh")]


# --- layout: nothing scrolls sideways -----------------------------------------------------------------------------

LONG_PATH = "/home/someone/" + "a-very-long-directory-name/" * 8 + "frame.png"
LONG_URL = "https://example.com/?q=" + "x" * 200
LONG_CODE = "print('" + "and on " * 60 + "')"


@pytest.mark.parametrize("width", [320, 800])
def test_the_chat_never_scrolls_sideways_and_long_code_scrolls_in_its_block(qtbot, themed, width):
    themed("light")
    view = ChatView()
    view.add(Bubble("user", "Where is " + LONG_PATH + "?"))
    answer = view.add(Bubble("assistant"))
    stream(answer, f"It is at {LONG_PATH}, see {LONG_URL}.\n\n```python\n{LONG_CODE}\nx = 1\n```\n\nDone.", 9)
    answer.finish(STATS)
    short = view.add(Bubble("assistant", "Red."))
    short.finish(STATS)
    shown(qtbot, view, width, 700)
    qtbot.waitUntil(lambda: view.widget().width() == view.viewport().width(), timeout=2000)
    viewport = view.viewport().width()
    for bubble in view.bubbles:
        right = bubble.card.mapTo(view.viewport(), bubble.card.rect().topRight()).x()
        assert 0 <= right < viewport, (bubble.role, right, viewport)
        assert bubble.width() <= viewport
    prose = answer.body.widgets()[0]
    assert isinstance(prose, TextBlock)
    assert prose.height() >= 3 * prose.fontMetrics().height()  # the path and URL wrapped inside the bubble
    assert prose.text() == f"It is at {LONG_PATH}, see {LONG_URL}."
    for block in (prose, view.bubbles[0].question_text):
        assert block.document().idealWidth() <= block.viewport().width()  # wrapped, not cut off at the right
    (code,) = answer.code_blocks()
    assert code.code == f"{LONG_CODE}\nx = 1"
    qtbot.waitUntil(code.code_scroll.horizontalScrollBar().isVisible, timeout=2000)
    assert code.code_scroll.horizontalScrollBar().maximum() > 0  # the long line scrolls inside its block
    assert code.code_scroll.viewport().height() >= code.code_label.sizeHint().height()  # both lines stay in view
    # The timings sit under the card: a short answer is not as wide as its one-line timing text.
    assert short.timing_label.text() == TIMING_LINE
    assert not short.card.isAncestorOf(short.timing_label)
    assert short.card.width() < short.timing_label.sizeHint().width()
    assert short.timing_label.width() <= viewport


def test_a_code_block_has_its_own_copy_and_a_background(qtbot, themed):
    themed("light")
    bubble = Bubble("assistant", "Run this:\n\n```sh\nls -l /tmp\n```\n\nThen that.")
    bubble.finish(TurnStats(finish_reason="stop"))
    shown(qtbot, bubble, 500, 300)
    (code,) = bubble.code_blocks()
    assert code.language_label.text() == "sh"
    code.copy_button.click()
    assert QGuiApplication.clipboard().text() == "ls -l /tmp"
    assert code.copy_button.text() == "Copied"
    assert bubble.copy_button.text() == "Copy"
    qtbot.waitUntil(lambda: code.copy_button.text() == "Copy", timeout=5000)
    image = code.grab().toImage()
    assert rgb(image.pixelColor(image.width() - 4, image.height() - 4)) == hex_rgb(COLOURS["light"]["code_bg"])
    card = bubble.card.grab().toImage()
    assert rgb(card.pixelColor(card.width() // 2, 4)) == hex_rgb(COLOURS["light"]["answer_bg"])


# --- light and dark -----------------------------------------------------------------------------------------------


def luminance(colour: tuple[int, int, int]) -> float:
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in colour)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def text_contrast(widget: QWidget, background: tuple[int, int, int]) -> float:
    """The contrast of the drawn text with its background: the pixel that differs most from it."""
    image = widget.grab().toImage()
    pixels = {rgb(image.pixelColor(x, y)) for x in range(image.width()) for y in range(image.height())}
    return max(contrast(p, background) for p in pixels)


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_bubbles_are_readable_in_light_and_dark(qtbot, themed, theme):
    assert themed(theme) == theme
    view = ChatView()
    question = view.add(Bubble("user", "What colour is the square?"))
    answer = view.add(Bubble("assistant", "It is **red**.\n\n```\ncode\n```"))
    answer.finish(STATS)
    shown(qtbot, view, 500, 400)
    colours = COLOURS[theme]
    card = answer.card.grab().toImage()
    background = rgb(card.pixelColor(card.width() // 2, 3))
    assert background == hex_rgb(colours["answer_bg"])
    assert (luminance(background) < 0.1) == (theme == "dark")
    assert text_contrast(answer.body.widgets()[0], background) >= 7
    assert text_contrast(answer.code_blocks()[0].code_label, hex_rgb(colours["code_bg"])) >= 7
    assert text_contrast(answer.timing_label, rgb(view.viewport().palette().window().color())) >= 4.5
    user_card = question.card.grab().toImage()
    user_background = rgb(user_card.pixelColor(user_card.width() // 2, 3))
    assert user_background == hex_rgb(colours["user_bg"])
    assert text_contrast(question.question_text, user_background) >= 4.5


def test_the_system_theme_follows_a_change_of_the_system_palette(qtbot, themed):
    app = QApplication.instance()
    assert themed("system") == "light"  # the offscreen platform's palette is light
    bubble = Bubble("assistant", "It is red.")
    shown(qtbot, bubble, 400, 200)
    app.setPalette(dark_palette())  # what a platform does when the user switches the desktop to dark
    qtbot.waitUntil(lambda: app.property("themeMode") == "dark", timeout=2000)
    card = bubble.card.grab().toImage()
    assert rgb(card.pixelColor(card.width() // 2, 3)) == hex_rgb(COLOURS["dark"]["answer_bg"])
    assert themed("light") == "light"  # a chosen theme wins over the system's palette
    assert app.palette().window().color().lightness() > 128
    card = bubble.card.grab().toImage()
    assert rgb(card.pixelColor(card.width() // 2, 3)) == hex_rgb(COLOURS["light"]["answer_bg"])


# --- the conversation ---------------------------------------------------------------------------------------------


def frame(colour: str) -> QPixmap:
    pixmap = QPixmap(160, 120)
    pixmap.fill(QColor(colour))
    return pixmap


def test_a_follow_up_about_the_same_frame_does_not_repeat_its_thumbnail(qtbot):
    view = shown(qtbot, ChatView())
    first = view.add(Bubble("user", "What is this?", frame("red")))
    follow_up = view.add(Bubble("user", "And its shape?", frame("red")))
    other = view.add(Bubble("user", "And now?", frame("blue")))
    back = view.add(Bubble("user", "And this one?", frame("red")))
    assert [b.thumbnail is not None and b.thumbnail.isVisibleTo(b) for b in (first, follow_up, other, back)] == [
        True, False, True, True]  # fmt: skip
    view.clear()
    again = view.add(Bubble("user", "What is this?", frame("red")))
    assert again.thumbnail is not None
    assert again.thumbnail.isVisibleTo(again)


def test_an_empty_chat_says_what_to_do(qtbot):
    view = shown(qtbot, ChatView())
    assert view.empty_label.isVisible()
    assert view.empty_label.text() == EMPTY_CHAT_TEXT
    view.add(Bubble("user", "What is this?"))
    assert not view.empty_label.isVisible()
    view.clear()
    assert view.empty_label.isVisible()
    assert view.bubbles == []


def test_an_answer_shows_which_engine_gave_it(qtbot):
    local = shown(qtbot, Bubble("assistant", "Red.", engine="demo-llama · this computer"))
    assert local.engine_label.text() == "demo-llama · this computer"
    assert local.engine_label.isVisible()
    remote = shown(qtbot, Bubble("assistant", "Blue."))
    assert not remote.engine_label.isVisible()
    remote.set_engine("qwen · 192.168.1.5:8080")
    assert remote.engine_label.text() == "qwen · 192.168.1.5:8080"
    assert remote.engine_label.isVisible()


def test_the_version_switcher_shows_and_asks_for_the_neighbouring_answer(qtbot):
    bubble = shown(qtbot, Bubble("assistant", "Red."))
    assert not bubble.version_label.isVisible()  # one answer: no switcher
    bubble.set_versions(0, 2)
    assert (bubble.version_label.text(), bubble.version_label.isVisible()) == ("1/2", True)
    assert (bubble.previous_version.isEnabled(), bubble.next_version.isEnabled()) == (False, True)
    with qtbot.waitSignal(bubble.version_requested, timeout=1000) as asked:
        bubble.next_version.click()
    assert asked.args == [1]
    bubble.set_versions(1, 2)
    assert bubble.version_label.text() == "2/2"
    assert (bubble.previous_version.isEnabled(), bubble.next_version.isEnabled()) == (True, False)
    with qtbot.waitSignal(bubble.version_requested, timeout=1000) as asked:
        bubble.previous_version.click()
    assert asked.args == [0]


def test_timing_lines_have_a_describing_name_and_readable_text(qtbot):
    bubble = shown(qtbot, Bubble("assistant", "Red."))
    bubble.finish(STATS)
    interface = QAccessible.queryAccessibleInterface(bubble.timing_label)
    assert interface.text(QAccessible.Text.Name) == "Answer timing"
    assert interface.text(QAccessible.Text.Description) == TIMING_LINE
    assert bubble.timing_label.text() == TIMING_LINE
    versions = QAccessible.queryAccessibleInterface(bubble.version_label)
    bubble.set_versions(0, 3)
    assert (versions.text(QAccessible.Text.Name), versions.text(QAccessible.Text.Description)) == (
        "Answer version", "1/3")  # fmt: skip


def test_the_view_follows_the_end_including_timings_unless_scrolled_up(qtbot):
    view = shown(qtbot, ChatView(), 400, 300)
    bar = view.verticalScrollBar()
    for n in range(6):
        view.add(Bubble("user", f"Question {n}?"))
        view.add(Bubble("assistant", "\n\n".join(PARAGRAPHS[:3]))).finish(STATS)
    answer = view.add(Bubble("assistant"))
    qtbot.waitUntil(lambda: bar.maximum() > 0 and bar.value() == bar.maximum(), timeout=2000)
    stream(answer, "\n\n".join(PARAGRAPHS[:4]), 25)
    end = bar.maximum()
    answer.finish(STATS)  # the timing line adds a row at the very end
    qtbot.waitUntil(lambda: bar.maximum() > end, timeout=2000)
    assert bar.value() == bar.maximum()
    assert answer.timing_label.mapTo(view.viewport(), answer.timing_label.rect().bottomLeft()).y() < (
        view.viewport().height())  # fmt: skip
    streaming = view.add(Bubble("assistant"))
    stream(streaming, PARAGRAPHS[0], 25)
    qtbot.waitUntil(lambda: bar.value() == bar.maximum(), timeout=2000)
    bar.setValue(0)  # the user scrolls up to read while the answer streams on
    end = bar.maximum()
    stream(streaming, "\n\n" + "\n\n".join(PARAGRAPHS[1:5]), 25)
    streaming.finish(STATS)
    qtbot.waitUntil(lambda: bar.maximum() > end, timeout=2000)  # laid out: the conversation grew
    assert bar.value() == 0
    view.scroll_to_end()  # a new question goes to the end again
    qtbot.waitUntil(lambda: bar.value() == bar.maximum(), timeout=2000)


def stacked_in_order(view: ChatView) -> bool:
    """Every bubble where a column of them puts it: in `bubbles` order, as wide as the column inside its margins,
    as tall as it needs at that width, 10 px below the one above, and the column tall enough for the last one."""
    column = view.widget()
    top = None
    for bubble in view.bubbles:
        corner = bubble.mapTo(column, bubble.rect().topLeft())
        if not bubble.isVisibleTo(column) or bubble.width() != column.width() - 24:
            return False
        if bubble.height() != bubble.heightForWidth(bubble.width()) or top not in (None, corner.y()):
            return False
        top = corner.y() + bubble.height() + 10
    return top is None or column.heightForWidth(column.width()) == top - 10 + 12


def test_bubbles_stay_stacked_in_order_as_they_are_added_inserted_above_grow_shrink_and_go(qtbot):
    # The chat lays its bubbles out on pages of its own (a QVBoxLayout of hundreds of bubbles re-measured them all
    # on every change: the "Show N earlier turns" stall); each change must move the bubbles below it.
    view = shown(qtbot, ChatView(), 500, 400)
    pixmap = QPixmap(160, 120)
    pixmap.fill(QColor("teal"))
    for n in range(12):  # 24 bubbles: three pages
        view.add(Bubble("user", f"Question {n}?", pixmap if n == 5 else None))
        view.add(Bubble("assistant", PARAGRAPHS[n])).finish(STATS)
    qtbot.waitUntil(lambda: stacked_in_order(view), timeout=5000)
    for n in range(3):  # earlier turns, put above the ones shown as "Show earlier turns" does
        view.insert(2 * n, Bubble("user", f"Earlier question {n}?"))
        view.insert(2 * n + 1, Bubble("assistant", f"Earlier answer {n}.")).finish(STATS)
    assert [b.text for b in view.bubbles] == [
        *[text for n in range(3) for text in (f"Earlier question {n}?", f"Earlier answer {n}.")],
        *[text for n in range(12) for text in (f"Question {n}?", PARAGRAPHS[n])],
    ]
    qtbot.waitUntil(lambda: stacked_in_order(view), timeout=5000)

    growing = view.bubbles[6 + 2 * 6 + 1]  # the answer to question 6, on the second page
    before = growing.height()
    growing.set_text("\n\n".join(PARAGRAPHS[20:26]))
    qtbot.waitUntil(lambda: growing.height() > before and stacked_in_order(view), timeout=5000)

    with_frame = view.bubbles[6 + 2 * 5]
    assert with_frame.text == "Question 5?"
    before = with_frame.height()
    with_frame.hide_thumbnail()
    qtbot.waitUntil(lambda: with_frame.height() < before and stacked_in_order(view), timeout=5000)

    height = view.widget().heightForWidth(view.widget().width())
    last = view.bubbles.pop()  # a regenerated answer's old bubble goes, as session_binding takes it out
    last.setParent(None)
    last.deleteLater()
    qtbot.waitUntil(lambda: view.widget().heightForWidth(view.widget().width()) < height, timeout=5000)
    assert stacked_in_order(view)
    assert view.bubbles[-1].text == "Question 11?"
    qtbot.waitUntil(lambda: not shiboken6.isValid(last), timeout=5000)
    view.add(Bubble("assistant", "The answer again.")).finish(STATS)
    view.resize(380, 400)  # every page again, at a width where the paragraphs wrap more
    qtbot.waitUntil(lambda: view.bubbles[-1].width() == view.widget().width() - 24 and stacked_in_order(view),
                    timeout=5000)  # fmt: skip
    assert [b.text for b in view.bubbles[-2:]] == ["Question 11?", "The answer again."]


def test_an_answer_stored_without_timings_shows_none_rather_than_a_zero_first_token() -> None:
    # watch records and extractions are stored without timings: the window said "first token 0.00 s"
    from app.core.inference.answerer import TurnStats
    from app.desktop.chat_view import SeenTimes, format_timings

    assert format_timings(TurnStats()) == ""
    assert format_timings(TurnStats(image_cached=True)) == "image cached"
    assert format_timings(TurnStats(ttft_ms=1234.0, decode_tok_s=20.0)) == "first token 1.23 s · 20.0 tok/s"
    assert format_timings(TurnStats(), SeenTimes(ttft_ms=50.0)) == "first token 0.05 s"
