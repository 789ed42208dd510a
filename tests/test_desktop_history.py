"""The window keeps every chat: the sidebar lists it, reopening shows it, asking again continues it."""

from __future__ import annotations

from dataclasses import replace

from app.core.history.store import HistoryStore
from tests.support.desktop import ask, wait_for_frame


def test_chat_is_stored_listed_reopened_and_continued(qtbot, make_window, settings, tmp_path):
    window = make_window(settings)
    wait_for_frame(qtbot, window)
    ask(qtbot, window, "What is on the table?")
    qtbot.waitUntil(lambda: window.history_panel.list.count() == 1, timeout=10000)
    assert "What is on the table?" in window.history_panel.list.item(0).text()
    window.close()

    reopened = make_window(settings)
    qtbot.waitUntil(lambda: reopened.history_panel.list.count() == 1, timeout=10000)
    chat_id = reopened.history.list_chats()[0].id
    reopened.open_chat(chat_id)
    assert [b.role for b in reopened.chat_view.bubbles] == ["user", "assistant"]
    qtbot.waitUntil(lambda: reopened.pinned is not None, timeout=10000)
    stats = ask(qtbot, reopened, "And what colour is it?")
    assert stats["decode_tokens"] > 0
    reopened.close()
    store = HistoryStore(tmp_path)
    try:
        questions = [m.text for m in store.get_chat(chat_id).messages if m.role == "user"]
        assert questions == ["What is on the table?", "And what colour is it?"]
    finally:
        store.close()


def test_delete_with_undo(qtbot, make_window, settings):
    window = make_window(settings)
    wait_for_frame(qtbot, window)
    ask(qtbot, window, "First chat")
    qtbot.waitUntil(lambda: window.history_panel.list.count() == 1, timeout=10000)
    chat_id = window.history.list_chats()[0].id
    window.history_panel.delete(chat_id)
    assert window.history_panel.list.count() == 0
    assert "Undo" in window.notice.text()
    window.history_panel.undo_delete()
    assert window.history_panel.list.count() == 1


def test_closing_mid_answer_keeps_the_partial_answer_marked_stopped(qtbot, make_window, settings, tmp_path):
    window = make_window(replace(settings, temperature=0.8, seed=5, max_tokens=400))
    wait_for_frame(qtbot, window)
    window.prompt_input.setPlainText("Tell me a long story.")
    with qtbot.waitSignal(window.worker.token, timeout=30000):
        window.send_button.click()
    window.close()
    store = HistoryStore(tmp_path)
    try:
        (chat,) = store.list_chats()
        user, answer = store.get_chat(chat.id).messages
        assert user.text == "Tell me a long story."
        assert answer.status in {"stopped", "complete"}
    finally:
        store.close()


def test_deleted_chat_is_purged_with_its_frames_after_the_undo_window(qtbot, tmp_path, monkeypatch):
    from PIL import Image

    from app.core.inference.images import load_image
    from app.desktop import history_panel

    monkeypatch.setattr(history_panel, "UNDO_WINDOW_S", 0.0)  # the timer then fires after one second
    store = HistoryStore(tmp_path)
    try:
        chat = store.create_chat()
        store.add_user_message(chat, "Q", store.save_image(load_image(Image.new("RGB", (8, 8), (1, 2, 3)))))
        panel = history_panel.HistoryPanel(store)
        qtbot.addWidget(panel)
        panel.delete(chat)
        assert panel.undoDeleteButton.isEnabled()
        qtbot.waitUntil(lambda: not panel.undoDeleteButton.isEnabled(), timeout=5000)
        assert store.conn.execute("SELECT count(*) FROM chats").fetchone()[0] == 0
        assert list(store.images_dir.glob("*.jpg")) == []
    finally:
        store.close()
