"""The chat sidebar on its own (a real history store in a temporary folder, no model): groups, in-place updates,
elided titles, debounced search off the GUI thread with highlighted snippets, the menu, inline rename, buttons,
undo, selection and what a screen reader is told."""

from __future__ import annotations

import datetime
import threading
import time

import pytest
from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt, QTimer
from PySide6.QtGui import QAccessible, QContextMenuEvent
from PySide6.QtWidgets import QApplication, QLineEdit, QStyleOptionViewItem

from app.core.history.store import HistoryStore
from app.desktop import history_panel
from app.desktop.history_panel import MARK_BACKGROUND, ChatIdRole, HistoryPanel, SnippetRole, ms_until_next_day

NOW = datetime.datetime(2026, 3, 10, 15, 0).timestamp()  # a Tuesday afternoon, local time
HOUR = 3600.0


@pytest.fixture
def store(tmp_path):
    store = HistoryStore(tmp_path)
    yield store
    store.close()


def add_chat(store: HistoryStore, question: str, updated: float, answer: str = "", title: str | None = None) -> int:
    chat = store.create_chat(title=title or "")
    store.add_user_message(chat, question)
    if answer:
        writer = store.begin_answer(chat)
        writer.append(answer)
        writer.finish()
    with store.lock, store.conn:  # the test decides when each chat was last used
        store.conn.execute("UPDATE chats SET updated_at = ? WHERE id = ?", (updated, chat))
    return chat


@pytest.fixture
def make_panel(qtbot, store):
    panels: list[HistoryPanel] = []

    def make(width: int = 260) -> HistoryPanel:
        panel = HistoryPanel(store)
        panel.now = lambda: NOW  # set before the first read comes back: "Today" is 10 March 2026
        panels.append(panel)
        qtbot.addWidget(panel)
        panel.resize(width, 480)
        with qtbot.waitSignal(panel.loaded, timeout=5000):
            panel.show()
        return panel

    yield make
    for panel in panels:
        panel.shutdown()


def titles(panel: HistoryPanel) -> list[str]:
    return [row.title for row in panel.model.rows()]


def index_of(panel: HistoryPanel, chat_id: int) -> QModelIndex:
    return panel.model.index(panel.model.row_of(chat_id))


def option_for(panel: HistoryPanel, index: QModelIndex) -> QStyleOptionViewItem:
    option = QStyleOptionViewItem()
    option.initFrom(panel.view.viewport())
    option.rect = panel.view.visualRect(index)
    option.font = panel.view.font()
    return option


def search(qtbot, panel: HistoryPanel, text: str) -> None:
    with qtbot.waitSignal(panel.loaded, timeout=5000):
        panel.search.setText(text)


@pytest.fixture
def three_days(store):
    """Two chats today, one yesterday, one last month."""
    return {
        "trip": add_chat(store, "Plan the trip", NOW - 30 * 24 * HOUR),
        "bike": add_chat(store, "Is the bike chain rusty?", NOW - 20 * HOUR),  # 19:00 the day before
        "coffee": add_chat(store, "How full is the coffee cup?", NOW - 5 * HOUR),
        "lunch": add_chat(store, "What is on the lunch plate?", NOW - 0.5 * HOUR),
    }


def test_chats_are_grouped_today_yesterday_earlier_newest_first(make_panel, three_days):
    panel = make_panel()
    assert titles(panel) == ["Today", "What is on the lunch plate?", "How full is the coffee cup?",
                             "Yesterday", "Is the bike chain rusty?", "Earlier", "Plan the trip"]  # fmt: skip
    assert [row.when for row in panel.model.rows()] == ["", "14:30", "10:00", "", "19:00", "", "8 Feb"]
    headers = [panel.model.index(n) for n in (0, 3, 5)]
    assert [bool(panel.model.flags(h) & Qt.ItemFlag.ItemIsSelectable) for h in headers] == [False] * 3


def test_new_and_changed_chats_are_merged_in_place_keeping_rows_and_selection(qtbot, make_panel, store, three_days):
    panel = make_panel()
    panel.set_open_chat(three_days["bike"])
    resets, inserted, moved = [], [], []
    panel.model.modelReset.connect(lambda: resets.append(1))
    panel.model.rowsInserted.connect(lambda _parent, first, last: inserted.append((first, last)))
    panel.model.rowsMoved.connect(lambda *args: moved.append((args[1], args[4])))
    kept = QPersistentModelIndex(index_of(panel, three_days["trip"]))
    newest = add_chat(store, "A brand new question", NOW - 60)
    with qtbot.waitSignal(panel.loaded, timeout=5000):
        panel.refresh()
    assert titles(panel)[:3] == ["Today", "A brand new question", "What is on the lunch plate?"]
    assert resets == []
    assert inserted == [(1, 1)]  # one row, under "Today": nothing else was rebuilt
    assert kept.isValid()
    assert kept.data(ChatIdRole) == three_days["trip"]
    assert panel.selected_chat_id() == three_days["bike"]
    # The trip chat is used again: its row moves to the top (a move, not a remove and an insert).
    with store.lock, store.conn:
        store.conn.execute("UPDATE chats SET updated_at = ? WHERE id = ?", (NOW - 1, three_days["trip"]))
    with qtbot.waitSignal(panel.loaded, timeout=5000):
        panel.refresh()
    assert titles(panel) == ["Today", "Plan the trip", "A brand new question", "What is on the lunch plate?",
                             "How full is the coffee cup?", "Yesterday", "Is the bike chain rusty?"]  # fmt: skip
    assert kept.row() == 1
    assert resets == []
    assert newest in panel.model.chat_ids()
    assert panel.selected_chat_id() == three_days["bike"]


def test_a_long_title_is_elided_to_the_row_and_kept_whole_in_tooltip_and_for_screen_readers(make_panel, store):
    long_title = "Which of the books on the second shelf from the top has the red spine and the torn dust jacket?"
    chat = add_chat(store, long_title, NOW - 60, title=long_title)
    panel = make_panel(width=240)
    index = index_of(panel, chat)
    option = option_for(panel, index)
    shown = panel.delegate.title_text(option, index)
    assert shown.endswith("…")
    assert long_title.startswith(shown[:-1])
    assert len(shown) < len(long_title) // 2
    assert panel.view.fontMetrics().horizontalAdvance(shown) <= option.rect.width() - 2 * panel.delegate.PAD_X
    assert index.data(Qt.ItemDataRole.ToolTipRole) == long_title
    row = QAccessible.queryAccessibleInterface(panel.view).child(1)  # row 0 is the "Today" header
    assert row.text(QAccessible.Text.Name) == long_title
    assert panel.view.horizontalScrollBar().maximum() == 0


def test_search_waits_for_typing_to_pause_and_reads_off_the_gui_thread(qtbot, make_panel, store, three_days,
                                                                       monkeypatch):  # fmt: skip
    panel = make_panel()
    calls: list[tuple[str, bool]] = []
    real_search = store.search

    def spy(query: str):
        calls.append((query, threading.current_thread() is threading.main_thread()))
        return real_search(query)

    monkeypatch.setattr(store, "search", spy)
    with qtbot.waitSignal(panel.loaded, timeout=5000):
        qtbot.keyClicks(panel.search, "coffee")
        assert calls == []  # six keystrokes, no search yet: it waits SEARCH_DEBOUNCE_MS after the last one
    assert calls == [("coffee", False)]  # one search, for the whole word, not on the GUI thread
    assert titles(panel) == ["Today", "How full is the coffee cup?"]


def test_the_list_is_read_off_the_gui_thread(qtbot, store, three_days, monkeypatch):
    threads: list[bool] = []
    real_list = store.list_chats

    def spy():
        threads.append(threading.current_thread() is threading.main_thread())
        return real_list()

    monkeypatch.setattr(store, "list_chats", spy)
    panel = HistoryPanel(store)
    qtbot.addWidget(panel)
    try:
        assert panel.model.rowCount() == 0  # the constructor only asked for the read
        qtbot.waitSignal(panel.loaded, timeout=5000).wait()
        assert threads == [False]
        assert panel.model.chat_ids() == [three_days[k] for k in ("lunch", "coffee", "bike", "trip")]
    finally:
        panel.shutdown()


def test_a_search_result_shows_the_words_around_the_match_with_the_match_marked(qtbot, make_panel, store):
    chat = add_chat(store, "Describe the room", NOW - 60,
                    answer="There is a sofa by the window, and on the low wooden table in front of it stands a blue "
                           "vase with three tulips.")  # fmt: skip
    add_chat(store, "Is it raining?", NOW - 120, answer="No, the street is dry.")
    panel = make_panel(width=300)
    unmarked = panel.view.viewport().grab().toImage()
    search(qtbot, panel, "wooden TABLE")
    assert titles(panel) == ["Today", "Describe the room"]
    index = index_of(panel, chat)
    snippet = index.data(SnippetRole)
    assert snippet.text == "…sofa by the window, and on the low wooden table in front of it stands a blue vase…"
    assert snippet.match == "wooden table"
    before, match, after = panel.delegate.snippet_parts(option_for(panel, index), snippet)
    assert match == "wooden table"
    assert before.endswith("low ")
    narrow = option_for(panel, index)
    narrow.rect.setWidth(200)
    before, match, after = panel.delegate.snippet_parts(narrow, snippet)
    assert match == "wooden table"  # still whole; the words before it give way, whole words only
    assert before.startswith("…")
    assert before[1:].split(" ")[0] in ["sofa", "by", "the", "window,", "and", "on", "the", "low"]
    assert after.endswith("…")
    assert after.startswith(" in front")
    assert index.data(Qt.ItemDataRole.AccessibleDescriptionRole) == f"14:59. {snippet.text}"

    def marked_pixels(image, rect) -> int:
        return sum(image.pixelColor(x, y) == MARK_BACKGROUND
                   for x in range(rect.left(), rect.right()) for y in range(rect.top(), rect.bottom()))  # fmt: skip

    rect = panel.view.visualRect(index)
    assert marked_pixels(panel.view.viewport().grab().toImage(), rect) > 100  # the match is painted on yellow
    assert marked_pixels(unmarked, unmarked.rect()) == 0


def test_a_chat_found_by_its_title_has_no_snippet(qtbot, make_panel, store):
    chat = add_chat(store, "What colour is the mug?", NOW - 60, answer="It is green.", title="Kitchen")
    panel = make_panel()
    search(qtbot, panel, "kitchen")
    assert titles(panel) == ["Today", "Kitchen"]
    assert index_of(panel, chat).data(SnippetRole) is None


def test_no_chats_match_says_so_and_the_list_comes_back_when_the_search_is_cleared(qtbot, make_panel, three_days):
    panel = make_panel()
    assert not panel.empty_label.isVisible()
    search(qtbot, panel, "zebra")
    assert panel.model.rowCount() == 0
    assert panel.empty_label.isVisible()
    assert not panel.view.isVisible()  # the message takes the list's place
    assert panel.empty_label.text() == "No chats match “zebra”"
    # Screen readers read what it says (no name set over it).
    read = QAccessible.queryAccessibleInterface(panel.empty_label).text(QAccessible.Text.Name)
    assert read == "No chats match “zebra”"
    search(qtbot, panel, "")
    assert not panel.empty_label.isVisible()
    assert panel.view.isVisible()
    assert len(panel.model.chat_ids()) == 4


def test_escape_in_the_search_box_clears_the_search(qtbot, make_panel, three_days):
    panel = make_panel()
    search(qtbot, panel, "bike")
    assert titles(panel) == ["Yesterday", "Is the bike chain rusty?"]
    with qtbot.waitSignal(panel.loaded, timeout=5000):
        qtbot.keyClick(panel.search, Qt.Key.Key_Escape)
    assert panel.search.text() == ""
    assert len(panel.model.chat_ids()) == 4


def test_the_gui_keeps_running_while_another_thread_holds_the_history(qtbot, make_panel, store, three_days):
    panel = make_panel()
    held, release = threading.Event(), threading.Event()

    def writer() -> None:  # as the window's history writer does during a long write, or a locked database
        with store.lock:
            held.set()
            release.wait(20)

    holder = threading.Thread(target=writer, name="holds-the-history")
    holder.start()
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    try:
        held.wait(5)
        timer.start(20)
        panel.search.setText("coffee")
        qtbot.waitUntil(lambda: len(ticks) >= 30, timeout=3000)  # well past the debounce: the search is waiting
        gaps = [later - earlier for earlier, later in zip(ticks, ticks[1:], strict=False)]
        assert max(gaps) < 0.5  # and the GUI thread kept running meanwhile (a read on it would stall 20 s)
        assert len(panel.model.chat_ids()) == 4  # the search has not come back: the list is unchanged
        with qtbot.waitSignal(panel.loaded, timeout=5000):
            release.set()
        assert titles(panel) == ["Today", "How full is the coffee cup?"]
    finally:
        release.set()
        holder.join()
        timer.stop()


def test_at_midnight_todays_chats_become_yesterdays(qtbot, store):
    late = datetime.datetime(2026, 3, 10, 23, 59, 59).timestamp()
    add_chat(store, "A late question", late - 60)
    clock = [late]
    panel = HistoryPanel(store)
    panel.now = lambda: clock[0]
    qtbot.addWidget(panel)
    try:
        qtbot.waitSignal(panel.loaded, timeout=5000).wait()
        assert titles(panel) == ["Today", "A late question"]
        assert ms_until_next_day(late) == 2000  # one second to midnight, and one past it
        clock[0] = late + 2
        with qtbot.waitSignal(panel.loaded, timeout=5000):
            pass  # nothing is done: the panel regroups by itself when the day changes
        assert titles(panel) == ["Yesterday", "A late question"]
    finally:
        panel.shutdown()


def test_an_empty_history_explains_itself(make_panel):
    panel = make_panel()
    assert panel.empty_label.isVisible()
    assert panel.empty_label.text() == "No chats yet. Ask a question about the camera and it is kept here."


def test_right_click_menu_acts_on_its_row_and_leaves_the_chat_on_screen_selected(qtbot, make_panel, store,
                                                                                 three_days):  # fmt: skip
    panel = make_panel()
    panel.set_open_chat(three_days["lunch"])
    rect = panel.view.visualRect(index_of(panel, three_days["bike"]))
    qtbot.mouseClick(panel.view.viewport(), Qt.MouseButton.RightButton, pos=rect.center())
    # The window system follows a right-click with a context-menu event (QTest's click alone does not).
    viewport = panel.view.viewport()
    QApplication.sendEvent(viewport, QContextMenuEvent(QContextMenuEvent.Reason.Mouse, rect.center(),
                                                       viewport.mapToGlobal(rect.center())))  # fmt: skip
    menu = panel.menu
    assert menu is not None
    assert menu.isVisible()
    assert [a.text() for a in menu.actions()] == ["Open", "Rename", "Export…", "", "Delete"]
    assert panel.selected_chat_id() == three_days["lunch"]  # the right-click did not move the highlight
    opened: list[int] = []
    panel.open_requested.connect(opened.append)
    next(a for a in menu.actions() if a.text() == "Open").trigger()
    assert opened == [three_days["bike"]]
    with qtbot.waitSignal(panel.deleted, timeout=5000) as deleted:
        next(a for a in menu.actions() if a.text() == "Delete").trigger()
    assert deleted.args == [three_days["bike"]]
    assert [c.id for c in store.list_chats()] == [three_days[k] for k in ("lunch", "coffee", "trip")]
    assert titles(panel) == ["Today", "What is on the lunch plate?", "How full is the coffee cup?",
                             "Earlier", "Plan the trip"]  # fmt: skip  # its empty "Yesterday" went with it
    assert panel.selected_chat_id() == three_days["lunch"]
    menu.close()


def test_the_menu_of_the_chat_on_screen_cannot_open_it_again(make_panel, three_days):
    panel = make_panel()
    panel.set_open_chat(three_days["lunch"])
    enabled = {a.text(): a.isEnabled() for a in panel.menu_for(three_days["lunch"]).actions() if a.text()}
    assert enabled == {"Open": False, "Rename": True, "Export…": True, "Delete": True}


def test_inline_rename_saves_the_title_and_keeps_the_chat_selected(qtbot, make_panel, store, three_days):
    panel = make_panel()
    panel.set_open_chat(three_days["coffee"])
    panel.renameChatButton.click()
    editor = panel.view.findChild(QLineEdit, "chatTitleEditor")
    assert editor is not None
    assert editor.isVisible()
    assert editor.text() == "How full is the coffee cup?"
    assert QAccessible.queryAccessibleInterface(editor).text(QAccessible.Text.Name) == "Chat title"
    editor.selectAll()
    qtbot.keyClicks(editor, "Morning coffee")
    at_commit: list[tuple[str, int | None]] = []  # what the list shows when the editor commits, before any write
    panel.model.title_edited.connect(lambda *_: at_commit.append((titles(panel)[2], panel.selected_chat_id())))
    with qtbot.waitSignal(panel.loaded, timeout=5000):
        qtbot.keyClick(editor, Qt.Key.Key_Return)
    assert at_commit == [("Morning coffee", three_days["coffee"])]
    assert store.get_chat(three_days["coffee"]).title == "Morning coffee"
    assert titles(panel)[1:3] == ["What is on the lunch plate?", "Morning coffee"]
    assert panel.selected_chat_id() == three_days["coffee"]


def test_renaming_to_nothing_keeps_the_old_title(qtbot, make_panel, store, three_days):
    panel = make_panel()
    panel.start_rename(three_days["coffee"])
    editor = panel.view.findChild(QLineEdit, "chatTitleEditor")
    editor.clear()
    qtbot.keyClick(editor, Qt.Key.Key_Return)
    assert titles(panel)[2] == "How full is the coffee cup?"
    assert store.get_chat(three_days["coffee"]).title == "How full is the coffee cup?"


def test_buttons_are_enabled_only_when_there_is_something_to_act_on(qtbot, make_panel, three_days):
    panel = make_panel()

    def enabled() -> dict[str, bool]:
        return {b.text(): b.isEnabled() for b in (panel.renameChatButton, panel.deleteChatButton,
                                                  panel.undoDeleteButton, panel.exportChatButton)}  # fmt: skip

    assert enabled() == {"Rename": False, "Delete": False, "Undo": False, "Export": False}  # a new, unsaved chat
    panel.set_open_chat(three_days["coffee"])
    assert enabled() == {"Rename": True, "Delete": True, "Undo": False, "Export": True}
    panel.deleted.connect(lambda chat_id: panel.set_open_chat(None))  # as the window does: a new chat
    with qtbot.waitSignal(panel.deleted, timeout=5000):
        panel.deleteChatButton.click()
    assert enabled() == {"Rename": False, "Delete": False, "Undo": True, "Export": False}
    with qtbot.waitSignal(panel.loaded, timeout=5000):
        panel.undoDeleteButton.click()
    assert enabled()["Undo"] is False


def test_a_read_only_history_offers_no_rename_or_delete(qtbot, tmp_path, three_days, store):
    second = HistoryStore(tmp_path)  # another LlavaCam holds the lock: this one is read-only
    panel = HistoryPanel(second)
    qtbot.addWidget(panel)
    try:
        qtbot.waitSignal(panel.loaded, timeout=5000).wait()
        panel.set_open_chat(three_days["coffee"])
        assert second.read_only
        assert (panel.renameChatButton.isEnabled(), panel.deleteChatButton.isEnabled(),
                panel.exportChatButton.isEnabled()) == (False, False, True)  # fmt: skip
        enabled = {a.text(): a.isEnabled() for a in panel.menu_for(three_days["bike"]).actions() if a.text()}
        assert enabled == {"Open": True, "Rename": False, "Export…": True, "Delete": False}
    finally:
        panel.shutdown()
        second.close()


def test_undo_of_another_chat_keeps_the_chat_on_screen_selected(qtbot, make_panel, store, three_days):
    panel = make_panel()
    panel.set_open_chat(three_days["lunch"])
    with qtbot.waitSignal(panel.deleted, timeout=5000):
        panel.delete(three_days["coffee"])
    assert three_days["coffee"] not in panel.model.chat_ids()
    opened: list[int] = []
    panel.open_requested.connect(opened.append)
    with qtbot.waitSignal(panel.loaded, timeout=5000):
        panel.undo_delete()
    assert titles(panel)[1:3] == ["What is on the lunch plate?", "How full is the coffee cup?"]
    assert opened == []
    assert panel.selected_chat_id() == three_days["lunch"]


def test_undo_of_the_chat_on_screen_opens_it_again_selected(qtbot, make_panel, store, three_days):
    panel = make_panel()
    panel.deleted.connect(lambda chat_id: panel.set_open_chat(None))  # as the window does: a new chat
    panel.open_requested.connect(panel.set_open_chat)  # as the window does once it shows the chat
    panel.set_open_chat(three_days["coffee"])
    with qtbot.waitSignal(panel.deleted, timeout=5000):
        panel.delete_selected()
    assert panel.selected_chat_id() is None
    with qtbot.waitSignal(panel.open_requested, timeout=5000) as reopened:
        panel.undo_delete()
    assert reopened.args == [three_days["coffee"]]
    qtbot.waitUntil(lambda: panel.selected_chat_id() == three_days["coffee"], timeout=5000)
    assert [c.id for c in store.list_chats()] == [three_days[k] for k in ("lunch", "coffee", "bike", "trip")]


def test_a_click_opens_a_chat_once_and_arrow_keys_only_move_the_focus(qtbot, make_panel, three_days):
    panel = make_panel()
    panel.open_requested.connect(panel.set_open_chat)
    opened: list[int] = []
    panel.open_requested.connect(opened.append)
    index = index_of(panel, three_days["coffee"])
    qtbot.mouseClick(panel.view.viewport(), Qt.MouseButton.LeftButton, pos=panel.view.visualRect(index).center())
    panel.view.activated.emit(index)  # styles that activate on a single click send this for the same click
    qtbot.mouseDClick(panel.view.viewport(), Qt.MouseButton.LeftButton, pos=panel.view.visualRect(index).center())
    assert opened == [three_days["coffee"]]
    assert panel.selected_chat_id() == three_days["coffee"]
    panel.view.setFocus()
    qtbot.keyClick(panel.view, Qt.Key.Key_Down)  # steps over the "Yesterday" header to the bike chat
    assert panel.view.currentIndex().data(ChatIdRole) == three_days["bike"]
    assert panel.selected_chat_id() == three_days["coffee"]  # the highlight stays on the chat on screen
    assert opened == [three_days["coffee"]]
    qtbot.keyClick(panel.view, Qt.Key.Key_Return)
    assert opened == [three_days["coffee"], three_days["bike"]]
    assert panel.selected_chat_id() == three_days["bike"]


def test_accessible_names_describe_each_control_and_rows_read_their_titles(make_panel, three_days):
    panel = make_panel()

    def name(widget) -> str:
        return QAccessible.queryAccessibleInterface(widget).text(QAccessible.Text.Name)

    assert name(panel.search) == "Search chats"
    assert name(panel.view) == "Chat list"
    buttons = (panel.renameChatButton, panel.deleteChatButton, panel.undoDeleteButton, panel.exportChatButton)
    assert [name(b) for b in buttons] == ["Rename chat", "Delete chat", "Undo delete", "Export chat"]
    assert [b.text() for b in buttons] == ["Rename", "Delete", "Undo", "Export"]  # names include what they show
    listed = QAccessible.queryAccessibleInterface(panel.view)
    assert [listed.child(n).text(QAccessible.Text.Name) for n in range(listed.childCount())] == titles(panel)
    assert listed.child(1).text(QAccessible.Text.Description) == "14:30"


def test_deleted_chat_is_purged_after_the_undo_window(qtbot, make_panel, store, monkeypatch):
    monkeypatch.setattr(history_panel, "UNDO_WINDOW_S", 0.0)  # the purge timer then fires after one second
    chat = add_chat(store, "Q", NOW - 60)
    panel = make_panel()
    with qtbot.waitSignal(panel.deleted, timeout=5000):
        panel.delete(chat)
    assert panel.undoDeleteButton.isEnabled()
    qtbot.waitUntil(lambda: not panel.undoDeleteButton.isEnabled(), timeout=5000)
    assert store.conn.execute("SELECT count(*) FROM chats").fetchone()[0] == 0


def test_export_writes_the_chat_off_the_gui_thread_and_says_where(qtbot, make_panel, store, three_days, tmp_path):
    panel = make_panel()
    panel.choose_folder = lambda: str(tmp_path / "out")
    with qtbot.waitSignal(panel.message, timeout=5000) as said:
        panel.menu_for(three_days["bike"]).actions()[2].trigger()
    target = tmp_path / "out" / f"chat-{three_days['bike']}.md"
    assert said.args == [f"Exported to {target}"]
    assert "Is the bike chain rusty?" in target.read_text(encoding="utf-8")


def test_the_sidebar_can_be_narrow_and_its_buttons_still_show_their_words(qtbot, make_panel, three_days):
    panel = make_panel()
    narrowest = panel.minimumSizeHint().width()
    assert narrowest <= 240  # of an 800 px window (four push buttons in a row made it 338)
    panel.resize(narrowest, 400)
    qtbot.waitUntil(lambda: panel.width() == narrowest, timeout=2000)
    buttons = (panel.renameChatButton, panel.deleteChatButton, panel.undoDeleteButton, panel.exportChatButton)
    for button in buttons:
        assert button.width() >= button.fontMetrics().horizontalAdvance(button.text())
    assert panel.view.horizontalScrollBar().maximum() == 0


def _chat_row(chat_id: int, title: str = "") -> history_panel.Row:
    return history_panel.Row(("chat", chat_id), title or f"Chat {chat_id}", "10:00", chat_id)


def test_merging_rows_in_place_reaches_exactly_the_new_list_in_few_steps(qtbot):
    import random

    model = history_panel.ChatListModel()
    steps: list[str] = []
    model.rowsRemoved.connect(lambda *_: steps.append("remove"))
    model.rowsInserted.connect(lambda *_: steps.append("insert"))
    model.rowsMoved.connect(lambda *_: steps.append("move"))
    model.modelReset.connect(lambda: steps.append("reset"))
    many = [_chat_row(n) for n in range(1, 2001)]
    model.set_rows(many)
    assert steps == ["insert"]  # the first load: one insertion of all rows
    steps.clear()
    model.set_rows([many[5], many[900], many[1999]])  # a search narrows 2000 chats to 3
    assert model.rows() == [many[5], many[900], many[1999]]
    assert len(steps) <= 4
    assert "reset" not in steps
    steps.clear()
    model.set_rows(many)  # the search is cleared
    assert model.rows() == many
    assert len(steps) <= 4
    steps.clear()
    moved = [many[1500], *many[:1500], *many[1501:]]  # a chat used again goes to the top
    model.set_rows(moved)
    assert model.rows() == moved
    assert steps == ["move"]
    generator = random.Random(7)
    for _ in range(30):  # any mix of removals, moves, changes and new chats ends as the new list, never a reset
        chosen = generator.sample(range(1, 60), generator.randint(0, 40))
        new = [_chat_row(n, f"Title {n} {generator.randint(0, 1)}") for n in chosen]
        steps.clear()
        model.set_rows(new)
        assert model.rows() == new
        assert "reset" not in steps
