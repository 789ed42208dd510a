"""A question sent while its frame is still being prepared reuses that preparation: the image is encoded and
evaluated once, before the question, and the answer evaluates only the question.

Counted on the tiny generated pair, never timed: the calls into the real encoder (`encode_image`) and into the
real evaluation of image embeddings (`decode_image`) are counted, and the engine's own stats of the turn are read.
"""

from __future__ import annotations

import threading

import numpy as np

from tests.support.desktop import ask, wait_for_frame


def count_image_work(engine) -> dict[str, int]:
    """Count the engine's calls into llama.cpp's vision encoder and its image evaluation (they still run)."""
    native = engine._native
    counts = {"encode": 0, "decode": 0}
    encode, decode = native.encode_image, native.decode_image

    def counted_encode(chunk):
        counts["encode"] += 1
        return encode(chunk)

    def counted_decode(chunk, embedding, n_past):
        counts["decode"] += 1
        return decode(chunk, embedding, n_past)

    native.encode_image, native.decode_image = counted_encode, counted_decode
    return counts


def hold_engine(window) -> threading.Event:
    """Keep the inference thread busy until the event is set: what is submitted meanwhile waits in its queue, as
    behind a real-size image encode."""
    release = threading.Event()
    window.engine._submit(lambda: release.wait(30))
    return release


def settle(qtbot, window) -> None:
    """Every task of the window has ended and the engine has done everything it was asked."""
    qtbot.waitUntil(lambda: not window.binding.tasks._tasks, timeout=20000)
    window.engine._call(lambda: None)


def only_image_of(window) -> list[str]:
    return [u for u in window.engine.evaluated_units() if isinstance(u, str)]


def test_a_question_sent_mid_preparation_reads_the_image_once(qtbot, make_window, settings):
    window = make_window(settings)
    wait_for_frame(qtbot, window)
    counts = count_image_work(window.engine)
    release = hold_engine(window)
    window.prompt_input.setPlainText("W")  # the first keystroke freezes the frame; its preparation queues
    frozen = window.pinned.digest
    window.prompt_input.setPlainText("What is this?")
    with qtbot.waitSignal(window.turn_finished, timeout=30000) as finished:
        window.send_button.click()  # sent while the preparation has not finished (it has not even started)
        release.set()
    settle(qtbot, window)
    stats = finished.args[1]
    assert counts == {"encode": 1, "decode": 1}, "the image is encoded and evaluated once, by the preparation"
    assert stats.image_cached is True
    assert stats.image_encode_ms == 0.0
    assert only_image_of(window) == [f"image:{window.engine.load_image(window.pinned).digest}"]
    assert window.pinned.digest == frozen


def test_a_question_typed_right_after_new_chat_and_sent_mid_preparation_reads_the_image_once(qtbot, make_window,
                                                                                             settings):  # fmt: skip
    window = make_window(settings)
    wait_for_frame(qtbot, window)
    ask(qtbot, window, "What is this?")  # the engine holds a conversation with another frame
    asked_by_now = window.camera.newest().copy()
    window.unpin()
    # a later, different frame: the same pixels would be the engine's cached image, and nothing would be encoded
    qtbot.waitUntil(lambda: not np.array_equal(window.camera.newest(), asked_by_now), timeout=10000)
    counts = count_image_work(window.engine)
    release = hold_engine(window)
    # Ctrl+N and the first keystroke in one go: the new chat's conversation has not reached the engine yet when
    # the frame is frozen and its preparation is asked for.
    window.new_chat()
    window.prompt_input.setPlainText("W")
    window.prompt_input.setPlainText("What colour is it?")
    with qtbot.waitSignal(window.turn_finished, timeout=30000) as finished:
        window.send_button.click()
        release.set()
    settle(qtbot, window)
    stats = finished.args[1]
    assert counts == {"encode": 1, "decode": 1}, (
        "prepared for the new chat's conversation: the answer evaluates only the question, and the frame it asked "
        "about is not prepared a second time behind it"
    )
    assert stats.image_cached is True
    assert stats.image_encode_ms == 0.0
    assert len(only_image_of(window)) == 1, "the cache holds the new chat: one image, then the question and answer"
    assert window.engine.history[0].question == "What colour is it?"
