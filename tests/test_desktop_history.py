"""The window keeps every chat: the sidebar lists it, reopening shows it, asking again continues it."""

from __future__ import annotations

from dataclasses import replace

from app.core.history.store import HistoryStore
from tests.support.desktop import ask, close_window, open_chat, wait_for_frame


def chat_titles(window) -> list[str]:
    """The sidebar's chat rows (not its Today / Yesterday / Earlier headers)."""
    return [row.title for row in window.history_panel.model.rows() if row.chat_id is not None]


def test_chat_is_stored_listed_reopened_and_continued(qtbot, make_window, settings, tmp_path):
    window = make_window(settings)
    wait_for_frame(qtbot, window)
    ask(qtbot, window, "What is on the table?")
    qtbot.waitUntil(lambda: chat_titles(window) == ["What is on the table?"], timeout=10000)
    assert [row.title for row in window.history_panel.model.rows()] == ["Today", "What is on the table?"]
    close_window(qtbot, window)

    reopened = make_window(settings)
    qtbot.waitUntil(lambda: chat_titles(reopened) == ["What is on the table?"], timeout=10000)
    chat_id = reopened.history.list_chats()[0].id
    open_chat(qtbot, reopened, chat_id)
    assert [b.role for b in reopened.chat_view.bubbles] == ["user", "assistant"]
    assert reopened.history_panel.selected_chat_id() == chat_id
    qtbot.waitUntil(lambda: reopened.pinned is not None, timeout=10000)
    stats = ask(qtbot, reopened, "And what colour is it?")
    assert stats.decode_tokens > 0
    close_window(qtbot, reopened)
    store = HistoryStore(tmp_path)
    try:
        questions = [m.text for m in store.get_chat(chat_id).messages if m.role == "user"]
        assert questions == ["What is on the table?", "And what colour is it?"]
    finally:
        store.close()


def test_delete_with_undo_brings_the_chat_back_on_screen_and_selected(qtbot, make_window, settings):
    window = make_window(settings)
    wait_for_frame(qtbot, window)
    ask(qtbot, window, "First chat")
    panel = window.history_panel
    qtbot.waitUntil(lambda: chat_titles(window) == ["First chat"], timeout=10000)
    chat_id = window.history.list_chats()[0].id
    assert panel.selected_chat_id() == chat_id
    with qtbot.waitSignal(panel.deleted, timeout=10000):
        panel.delete(chat_id)
    assert chat_titles(window) == []
    assert window.notice.text() == "Chat deleted. Press Undo to bring it back."
    assert window.chat_view.bubbles == []
    with qtbot.waitSignal(panel.loaded, timeout=10000), qtbot.waitSignal(window.binding.chat_opened, timeout=10000):
        panel.undo_delete()  # the chat that was on screen comes back on screen
    assert chat_titles(window) == ["First chat"]
    assert [(b.role, b.text) for b in window.chat_view.bubbles][0] == ("user", "First chat")
    assert panel.selected_chat_id() == chat_id
    assert window.history_panel.open_chat_id == chat_id


def test_closing_mid_answer_keeps_the_partial_answer_marked_stopped(qtbot, make_window, settings, tmp_path):
    window = make_window(replace(settings, temperature=0.8, seed=5, max_tokens=400))
    wait_for_frame(qtbot, window)
    window.prompt_input.setPlainText("Tell me a long story.")
    received: list[str] = []
    window.binding.answer_piece.connect(received.append)
    with qtbot.waitSignal(window.binding.answer_piece, timeout=30000):
        window.send_button.click()
    close_window(qtbot, window)  # 400 tokens asked for: the answer is far from done
    store = HistoryStore(tmp_path)
    try:
        (chat,) = store.list_chats()
        user, answer = store.get_chat(chat.id).messages
        assert user.text == "Tell me a long story."
        assert answer.status == "stopped"
        assert answer.text
        assert answer.text == "".join(received)[: len(answer.text)]
    finally:
        store.close()


def test_deleted_chat_is_purged_with_its_frames_after_the_undo_window(qtbot, tmp_path, monkeypatch):
    from PIL import Image

    from app.core.inference.images import load_image
    from app.desktop import history_panel

    monkeypatch.setattr(history_panel, "UNDO_WINDOW_S", 0.0)  # the timer then fires after one second
    store = HistoryStore(tmp_path)
    panel = None
    try:
        chat = store.create_chat()
        store.add_user_message(chat, "Q", store.save_image(load_image(Image.new("RGB", (8, 8), (1, 2, 3)))))
        panel = history_panel.HistoryPanel(store)
        qtbot.addWidget(panel)
        with qtbot.waitSignal(panel.deleted, timeout=5000):
            panel.delete(chat)
        assert panel.undoDeleteButton.isEnabled()
        qtbot.waitUntil(lambda: not panel.undoDeleteButton.isEnabled(), timeout=5000)
        assert store.conn.execute("SELECT count(*) FROM chats").fetchone()[0] == 0
        assert list(store.images_dir.glob("*.jpg")) == []
    finally:
        if panel is not None:
            panel.shutdown()
        store.close()


def test_deleting_the_open_chat_clears_it_and_the_next_question_goes_to_a_new_chat(qtbot, make_window, settings,
                                                                                  tmp_path):  # fmt: skip
    window = make_window(settings)
    wait_for_frame(qtbot, window)
    ask(qtbot, window, "Kept question")
    qtbot.waitUntil(lambda: chat_titles(window) == ["Kept question"], timeout=10000)
    deleted = window.history.list_chats()[0].id
    with qtbot.waitSignal(window.history_panel.deleted, timeout=10000):
        window.history_panel.delete_selected()  # the Delete button: acts on the chat on screen
    assert window.chat_view.bubbles == []
    assert window.status_label.text().startswith("The chat on screen was deleted")
    assert window.history_panel.selected_chat_id() is None
    ask(qtbot, window, "After the delete")
    qtbot.waitUntil(lambda: chat_titles(window) == ["After the delete"], timeout=10000)
    close_window(qtbot, window)
    store = HistoryStore(tmp_path)
    try:
        old = store.get_chat(deleted, include_deleted=True)
        assert [m.text for m in old.messages if m.role == "user"] == ["Kept question"]
        (chat,) = store.list_chats()
        assert chat.id != deleted
        assert [m.text for m in store.get_chat(chat.id).messages if m.role == "user"] == ["After the delete"]
    finally:
        store.close()


def test_delete_acts_on_the_chat_on_screen_not_a_highlighted_row(qtbot, make_window, settings):
    window = make_window(settings)
    wait_for_frame(qtbot, window)
    ask(qtbot, window, "First chat")
    window.new_chat()
    ask(qtbot, window, "Second chat")
    qtbot.waitUntil(lambda: chat_titles(window) == ["Second chat", "First chat"], timeout=10000)
    by_title = {c.title: c.id for c in window.history.list_chats()}
    panel = window.history_panel
    first = panel.model.index(panel.model.row_of(by_title["First chat"]))
    panel.view.setCurrentIndex(first)  # as an arrow key does: the focus moves, the chat on screen does not
    assert panel.selected_chat_id() == by_title["Second chat"]
    with qtbot.waitSignal(panel.deleted, timeout=10000):
        panel.delete_selected()
    assert [c.title for c in window.history.list_chats()] == ["First chat"]


def test_one_click_on_a_chat_opens_it_once(qtbot, make_window, settings):
    from PySide6.QtCore import Qt

    window = make_window(settings)
    wait_for_frame(qtbot, window)
    ask(qtbot, window, "Open me")
    window.new_chat()
    qtbot.waitUntil(lambda: chat_titles(window) == ["Open me"], timeout=10000)
    panel = window.history_panel
    opened: list[int] = []
    panel.open_requested.connect(opened.append)
    index = panel.model.index(panel.model.row_of(window.history.list_chats()[0].id))
    with qtbot.waitSignal(window.binding.chat_opened, timeout=10000):
        qtbot.mouseClick(panel.view.viewport(), Qt.MouseButton.LeftButton, pos=panel.view.visualRect(index).center())
        panel.view.activated.emit(index)  # styles that activate on a single click send this for the same click
    assert opened == [window.history.list_chats()[0].id]
    assert [b.role for b in window.chat_view.bubbles] == ["user", "assistant"]
    assert panel.selected_chat_id() == opened[0]


def test_new_chat_during_an_answer_keeps_that_answer_stopped_with_its_text(qtbot, make_window, settings, tmp_path):
    window = make_window(replace(settings, temperature=0.8, seed=5, max_tokens=400))
    wait_for_frame(qtbot, window)
    window.prompt_input.setPlainText("Tell me a long story.")
    received: list[str] = []
    shown: list[str] = []  # what had arrived when New chat was pressed

    def press_new_chat_at_the_third_piece(piece: str) -> None:
        # Pressed as the piece is shown, so the answer is certainly still coming. Polling for the third piece could
        # see it after the end: on a busy machine the loop takes a burst of pieces at once (even the whole answer,
        # which the tiny model may end early), and an answer that ended before New chat is rightly "complete".
        received.append(piece)
        if len(received) == 3:
            shown.append("".join(received))
            window.new_chat()

    window.binding.answer_piece.connect(press_new_chat_at_the_third_piece)
    with qtbot.waitSignal(window.turn_finished, timeout=60000):
        window.send_button.click()
    assert shown, f"the answer ended after {len(received)} piece(s), before New chat could be pressed"
    assert "".join(received) == shown[0]  # nothing of the stopped answer is shown after New chat
    close_window(qtbot, window)
    store = HistoryStore(tmp_path)
    try:
        (chat,) = store.list_chats()
        user, answer = store.get_chat(chat.id).messages
        assert user.text == "Tell me a long story."
        assert answer.status == "stopped"
        assert len(answer.text) > 0
        assert answer.text == shown[0]  # stored as shown: the pieces after Stop are dropped
    finally:
        store.close()


def test_regenerated_answer_is_a_new_version_and_a_reopened_chat_shows_and_feeds_the_chosen_one(
        qtbot, make_window, settings, tmp_path):  # fmt: skip
    window = make_window(replace(settings, temperature=0.9, seed=None, max_tokens=12))
    wait_for_frame(qtbot, window)
    ask(qtbot, window, "What is this?")
    first = window.chat_view.bubbles[-1].text
    with qtbot.waitSignal(window.turn_finished, timeout=30000):
        window.regenerate_button.click()
    second = window.chat_view.bubbles[-1].text
    close_window(qtbot, window)

    store = HistoryStore(tmp_path)
    try:
        (chat,) = store.list_chats()
        stored = [(m.role, m.text, m.chosen) for m in store.get_chat(chat.id).messages]
        assert stored == [("user", "What is this?", True), ("assistant", first, False), ("assistant", second, True)]
    finally:
        store.close()
    reopened = make_window(settings)
    open_chat(qtbot, reopened, chat.id)
    assert [(b.role, b.text) for b in reopened.chat_view.bubbles] == [("user", "What is this?"),
                                                                       ("assistant", second)]  # fmt: skip
    qtbot.waitUntil(lambda: [t.answer for t in reopened.engine.history] == [second], timeout=10000)


def test_a_long_chat_opens_on_its_latest_turns_and_shows_the_rest_on_request(qtbot, make_window, settings, tmp_path):
    # building every bubble of a 300-turn chat held the GUI thread for seconds (bench.gui_actions)
    from app.desktop.session_binding import RECENT_TURNS

    store = HistoryStore(tmp_path)
    try:
        chat_id = store.create_chat("Long")
        for i in range(RECENT_TURNS + 5):
            store.add_user_message(chat_id, f"Question {i}")
            writer = store.begin_answer(chat_id)
            writer.append(f"Answer {i}")
            writer.finish()
    finally:
        store.close()
    window = make_window(settings)
    open_chat(qtbot, window, chat_id)
    shown = [b.text for b in window.chat_view.bubbles if b.role == "assistant"]
    assert shown == [f"Answer {i}" for i in range(5, RECENT_TURNS + 5)]
    button = window.chat_view.earlier_button
    assert button.isVisibleTo(window)
    assert button.text() == "Show 5 earlier turns"
    with qtbot.waitSignal(window.binding.rendered, timeout=20000):
        button.click()
    shown = [b.text for b in window.chat_view.bubbles if b.role == "assistant"]
    assert shown == [f"Answer {i}" for i in range(RECENT_TURNS + 5)]
    assert [b.text for b in window.chat_view.bubbles if b.role == "user"] == [f"Question {i}"
                                                                              for i in range(RECENT_TURNS + 5)]
    assert not button.isVisibleTo(window)
    close_window(qtbot, window)


def store_long_chat(path, turns: int, frame_every: int = 0) -> int:
    """A stored chat of `turns` questions and answers; with `frame_every`, every frame_every-th question has a
    frame, each frame asked about twice in a row (on turns 0 and frame_every, then 2 and 3 times frame_every...)."""
    import numpy as np

    from app.core.inference.images import load_image

    store = HistoryStore(path)
    try:
        chat_id = store.create_chat("Long")
        for i in range(turns):
            image = None
            if frame_every and i % frame_every == 0:
                pixels = np.full((48, 64, 3), (i // (2 * frame_every) * 37) % 256, dtype=np.uint8)
                image = store.save_image(load_image(pixels), source="test")
            store.add_user_message(chat_id, f"Question {i}", image)
            writer = store.begin_answer(chat_id)
            writer.append(f"Answer {i}")
            writer.finish()
    finally:
        store.close()
    return chat_id


def bubble_counts_while(qtbot, window, action, signal) -> list[int]:
    """How many bubbles the chat had each time a 0 ms GUI timer fired while `action` ran, until `signal`."""
    from PySide6.QtCore import QTimer

    seen: list[int] = []
    timer = QTimer()
    timer.setInterval(0)
    timer.timeout.connect(lambda: seen.append(len(window.chat_view.bubbles)))
    try:
        with qtbot.waitSignal(signal, timeout=20000):
            timer.start()
            action()
    finally:
        timer.stop()
    return seen


def test_a_long_chat_is_built_a_few_turns_at_a_time_with_the_loop_running_between(qtbot, make_window, settings,
                                                                                    tmp_path):  # fmt: skip
    # its 40 latest turns built in one go held the GUI thread (bench.gui_actions: open a large chat)
    from app.desktop.session_binding import RECENT_TURNS

    chat_id = store_long_chat(tmp_path, RECENT_TURNS + 5)
    window = make_window(settings)
    seen = bubble_counts_while(qtbot, window, lambda: window.open_chat(chat_id), window.binding.chat_opened)
    assert any(0 < count < 2 * RECENT_TURNS for count in seen)  # a timer fired with the chat half built
    assert [b.text for b in window.chat_view.bubbles][-2:] == [f"Question {RECENT_TURNS + 4}",
                                                               f"Answer {RECENT_TURNS + 4}"]  # fmt: skip
    assert len(window.chat_view.bubbles) == 2 * RECENT_TURNS
    seen = bubble_counts_while(qtbot, window, window.chat_view.earlier_button.click, window.binding.rendered)
    assert any(2 * RECENT_TURNS < count < 2 * (RECENT_TURNS + 5) for count in seen)  # the same for earlier turns
    assert [b.text for b in window.chat_view.bubbles] == [text for i in range(RECENT_TURNS + 5)
                                                          for text in (f"Question {i}", f"Answer {i}")]  # fmt: skip
    close_window(qtbot, window)


def test_show_earlier_keeps_the_reader_on_the_turn_they_were_at(qtbot, make_window, settings, tmp_path):
    # the view kept its pixel offset, so the 30 turns put above landed the reader on the chat's first turn
    from app.desktop.session_binding import RECENT_TURNS

    chat_id = store_long_chat(tmp_path, RECENT_TURNS + 30)
    window = make_window(settings)
    window.resize(900, 700)
    open_chat(qtbot, window, chat_id)
    view = window.chat_view
    bar = view.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0, timeout=5000)
    bar.setValue(0)  # scrolled up to the button
    first = view.bubbles[0]
    assert first.text == "Question 30"

    def on_screen(bubble) -> int:
        return bubble.mapTo(view.viewport(), bubble.rect().topLeft()).y()

    before = on_screen(first)
    with qtbot.waitSignal(window.binding.rendered, timeout=20000):
        view.earlier_button.click()
    assert view.bubbles[0].text == "Question 0"
    qtbot.waitUntil(lambda: abs(on_screen(first) - before) <= 1, timeout=5000)
    assert bar.value() > 0
    bar.setValue(0)  # the reader scrolls up to the turns just shown: the view lets go
    assert view.bubble_at_top() is view.bubbles[0]
    close_window(qtbot, window)


def test_leaving_a_long_chat_empties_the_view_at_once_and_deletes_its_bubbles_over_several_passes(
    qtbot, make_window, settings, tmp_path
):
    # the 600 bubbles of a 300-turn chat deleted in one go held the GUI thread (bench.gui_actions: leave_large_chat)
    from PySide6.QtCore import QTimer
    from shiboken6 import isValid

    from app.desktop.session_binding import RECENT_TURNS

    chat_id = store_long_chat(tmp_path, RECENT_TURNS)
    window = make_window(settings)
    open_chat(qtbot, window, chat_id)
    view = window.chat_view
    bubbles = list(view.bubbles)
    assert len(bubbles) == 2 * RECENT_TURNS
    alive: list[int] = []
    timer = QTimer()
    timer.setInterval(0)
    timer.timeout.connect(lambda: alive.append(sum(isValid(b) for b in bubbles)))
    timer.start()
    try:
        window.new_chat()
        assert view.bubbles == []
        assert not any(b.isVisibleTo(window) for b in bubbles)
        assert view.empty_label.isVisibleTo(window)
        qtbot.waitUntil(lambda: not any(isValid(b) for b in bubbles), timeout=10000)
    finally:
        timer.stop()
    assert any(0 < n < len(bubbles) for n in alive), alive  # the loop ran with some deleted and some not yet
    close_window(qtbot, window)


def test_earlier_turns_shown_later_repeat_no_frame_a_chat_built_at_once_would_not(qtbot, make_window, settings,
                                                                                  tmp_path):  # fmt: skip
    from app.desktop.session_binding import RECENT_TURNS

    # Frames on turns 0, 4, 8...: turns 0 and 4 ask about one frame, 8 and 12 about the next. The chat opens on
    # turns 4 onwards, so turn 4 shows its frame until turn 0 comes above it with the same one.
    chat_id = store_long_chat(tmp_path, RECENT_TURNS + 4, frame_every=4)
    window = make_window(settings)
    open_chat(qtbot, window, chat_id)

    def shown() -> list[int]:
        questions = [b for b in window.chat_view.bubbles if b.role == "user"]
        first = int(questions[0].text.split()[1])
        return [first + i for i, b in enumerate(questions)
                if b.thumbnail is not None and b.thumbnail.isVisibleTo(window)]  # fmt: skip

    # a widget added to a shown layout is shown once the loop runs
    qtbot.waitUntil(lambda: all(b.isVisibleTo(window) for b in window.chat_view.bubbles), timeout=5000)
    assert shown() == [4, *range(8, RECENT_TURNS + 4, 8)]
    with qtbot.waitSignal(window.binding.rendered, timeout=20000):
        window.chat_view.earlier_button.click()
    qtbot.waitUntil(lambda: all(b.isVisibleTo(window) for b in window.chat_view.bubbles), timeout=5000)
    assert shown() == list(range(0, RECENT_TURNS + 4, 8))  # each frame once, where it was first asked about
    close_window(qtbot, window)


def test_a_question_sent_while_a_chat_is_still_being_built_goes_below_all_of_it(qtbot, make_window, settings,
                                                                                tmp_path):  # fmt: skip
    from app.desktop.session_binding import RECENT_TURNS

    chat_id = store_long_chat(tmp_path, RECENT_TURNS)
    window = make_window(settings)
    open_chat(qtbot, window, chat_id)
    wait_for_frame(qtbot, window)
    window.binding.render_chat()  # built again: the first few turns are on screen, the rest still to come
    assert 0 < len(window.chat_view.bubbles) < 2 * RECENT_TURNS
    ask(qtbot, window, "One more?")
    texts = [b.text for b in window.chat_view.bubbles]
    assert texts[:-1] == [text for i in range(RECENT_TURNS) for text in (f"Question {i}", f"Answer {i}")] + [
        "One more?"]  # fmt: skip
    assert window.chat_view.bubbles[-1].role == "assistant"
    close_window(qtbot, window)


def test_the_window_opens_its_history_off_the_gui_thread(qtbot, settings, tmp_path, video, monkeypatch):
    # opening the history runs SQLite's integrity check, which grows with it: it ran inside the window's constructor
    import asyncio
    import threading

    import app.desktop.window as window_module

    chat_id = store_long_chat(tmp_path, 2)
    opened_on: list[int] = []

    class Recorded(HistoryStore):
        def __init__(self, *args, **kwargs) -> None:
            opened_on.append(threading.get_ident())
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(window_module, "HistoryStore", Recorded)
    building = asyncio.ensure_future(window_module.open_window(settings, tmp_path, camera_source=str(video)))
    qtbot.waitUntil(building.done, timeout=20000)
    window = building.result()
    window.show()
    try:
        assert opened_on
        assert threading.get_ident() not in opened_on
        assert isinstance(window.history, Recorded)
        qtbot.waitUntil(lambda: chat_titles(window) == ["Long"], timeout=10000)
        open_chat(qtbot, window, chat_id)
        assert [b.text for b in window.chat_view.bubbles] == ["Question 0", "Answer 0", "Question 1", "Answer 1"]
    finally:
        close_window(qtbot, window)
