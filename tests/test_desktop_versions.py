"""Regenerate keeps every answer version (‹ 1/2 ›): the arrows show another one, and it is the one the chat
continues with, stored as chosen and shown when the chat is reopened."""

from __future__ import annotations

from dataclasses import replace

from app.core.history.store import HistoryStore
from tests.support.desktop import ask, close_window, open_chat, wait_for_frame


def test_regenerate_shows_2_of_2_and_the_arrow_brings_back_and_chooses_the_first_answer(
        qtbot, make_window, settings, tmp_path):  # fmt: skip
    window = make_window(replace(settings, temperature=0.9, seed=1, max_tokens=12))
    wait_for_frame(qtbot, window)
    ask(qtbot, window, "What is this?")
    first = window.chat_view.bubbles[-1].text
    assert not window.chat_view.bubbles[-1].version_label.isVisible(), "one answer: no ‹ 1/1 ›"
    window.settings = replace(window.settings, seed=2)  # another seed: the new version says something else
    with qtbot.waitSignal(window.turn_finished, timeout=30000):
        window.regenerate_button.click()
    bubble = window.chat_view.bubbles[-1]
    second = bubble.text
    assert second != first
    assert bubble.version_label.text() == "2/2"
    assert bubble.version_label.isVisible()
    assert (bubble.previous_version.isEnabled(), bubble.next_version.isEnabled()) == (True, False)

    bubble.previous_version.click()
    qtbot.waitUntil(lambda: bubble.version_label.text() == "1/2", timeout=10000)
    assert bubble.text == first
    assert [(b.role, b.text) for b in window.chat_view.bubbles] == [("user", "What is this?"), ("assistant", first)]
    assert (bubble.previous_version.isEnabled(), bubble.next_version.isEnabled()) == (False, True)
    qtbot.waitUntil(lambda: [t.answer for t in window.engine.history] == [first], timeout=10000)
    close_window(qtbot, window)

    store = HistoryStore(tmp_path)
    try:
        (chat,) = store.list_chats()
        stored = [(m.role, m.text, m.chosen) for m in store.get_chat(chat.id).messages]
        assert stored == [("user", "What is this?", True), ("assistant", first, True), ("assistant", second, False)]
    finally:
        store.close()
    reopened = make_window(settings)
    open_chat(qtbot, reopened, chat.id)
    assert [(b.role, b.text) for b in reopened.chat_view.bubbles] == [("user", "What is this?"), ("assistant", first)]
    assert reopened.chat_view.bubbles[-1].version_label.text() == "1/2"
    qtbot.waitUntil(lambda: [t.answer for t in reopened.engine.history] == [first], timeout=10000)


def test_the_version_arrows_are_off_while_an_answer_streams_and_back_after(qtbot, make_window, settings):
    import threading

    window = make_window(replace(settings, temperature=0.9, seed=1, max_tokens=12))
    wait_for_frame(qtbot, window)
    ask(qtbot, window, "What is this?")
    window.settings = replace(window.settings, seed=2)
    with qtbot.waitSignal(window.turn_finished, timeout=30000):
        window.regenerate_button.click()
    answered = window.chat_view.bubbles[-1]
    assert answered.version_label.text() == "2/2"
    assert answered.previous_version.isEnabled()
    release = threading.Event()
    window.engine._submit(lambda: release.wait(30))  # the follow-up's answer is in flight until released
    window.prompt_input.setPlainText("And its colour?")
    window.send_button.click()
    assert window.binding.busy
    assert (answered.previous_version.isEnabled(), answered.next_version.isEnabled()) == (False, False)
    with qtbot.waitSignal(window.turn_finished, timeout=30000):
        release.set()
    assert (answered.previous_version.isEnabled(), answered.next_version.isEnabled()) == (True, False)
    assert answered.version_label.text() == "2/2"
