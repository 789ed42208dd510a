"""The window by keyboard: Tab leaves the question box, Ctrl+V pastes an image there, every shortcut is listed in
Help → Keyboard shortcuts and named in its tooltip; and the preview keeps the camera's shape."""

from __future__ import annotations

from PySide6.QtCore import QMimeData, Qt
from PySide6.QtGui import QGuiApplication, QImage, QTextCursor
from PySide6.QtWidgets import QApplication

from app.desktop import shortcuts
from tests.support.desktop import wait_for_frame


def test_tab_leaves_the_question_box_without_typing_a_tab(qtbot, make_window, settings):
    window = make_window(settings)
    window.prompt_input.setFocus()
    qtbot.keyClick(window.prompt_input, Qt.Key.Key_Tab)
    assert window.prompt_input.toPlainText() == ""
    assert QApplication.focusWidget() is not window.prompt_input


def test_ctrl_v_with_an_image_in_the_clipboard_pins_it_from_the_question_box(qtbot, make_window, settings):
    window = make_window(settings)
    image = QImage(48, 36, QImage.Format.Format_RGB888)
    image.fill(0xCC3322)
    mime = QMimeData()
    mime.setImageData(image)
    QGuiApplication.clipboard().setMimeData(mime)
    window.prompt_input.setFocus()
    window.prompt_input.setPlainText("What is")
    window.prompt_input.moveCursor(QTextCursor.MoveOperation.End)
    qtbot.keyClick(window.prompt_input, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: window.pinned is not None and window.pinned.width == 48, timeout=5000)
    assert (window.pinned.width, window.pinned.height) == (48, 36)
    assert window.prompt_input.toPlainText() == "What is", "the image is pinned, nothing is typed"
    QGuiApplication.clipboard().setText("plain words")
    qtbot.keyClick(window.prompt_input, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    assert window.prompt_input.toPlainText() == "What isplain words", "text still pastes as text"


def test_every_shortcut_is_listed_in_help_and_the_buttons_name_their_keys(qtbot, make_window, settings):
    window = make_window(settings)
    menus = {a.text().replace("&", "") for a in window.menuBar().actions()}
    assert menus == {"File", "Extract", "Chat", "Help"}
    dialog = shortcuts.ShortcutsDialog(window)
    qtbot.addWidget(dialog)
    listed = {(dialog.table.item(r, 0).text(), dialog.table.item(r, 1).text()) for r in range(dialog.table.rowCount())}
    assert ("Ctrl+P", "Capture: pin the live frame to ask about it") in listed
    assert ("Esc", "Stop the answer") in listed
    assert window.stop_button.toolTip() == "Stop the answer (Esc)"
    assert window.send_button.toolTip() == "Send the question (in the question box) (Return)"
    assert window.regenerate_button.toolTip() == "Regenerate the last answer (Ctrl+R)"
    bound = {a.shortcut().toString() for m in window.menuBar().actions() for a in m.menu().actions()}
    menu_only = set(shortcuts.ALL) - {shortcuts.SEND, shortcuts.NEW_LINE}  # those two are the question box's keys
    assert {s.native for s in menu_only} <= bound, "a listed shortcut that no menu action binds"


def test_the_preview_takes_the_cameras_shape(qtbot, make_window, settings):
    window = make_window(settings)  # the test video is 4:3
    wait_for_frame(qtbot, window)
    preview = window.camera_panel.preview
    qtbot.waitUntil(lambda: abs(preview.aspect - 0.75) < 0.01, timeout=5000)
    assert preview.heightForWidth(400) == 300
    shown = preview.image_rect()
    assert abs(shown.height() / shown.width() - 0.75) < 0.02


def test_the_pinned_badge_is_named_for_a_screen_reader_and_its_text_is_its_description(qtbot, make_window, settings):
    from PySide6.QtGui import QAccessible

    window = make_window(settings)
    wait_for_frame(qtbot, window)
    with qtbot.waitSignal(window.binding.prepared, timeout=30000):
        window.capture_button.click()
    badge = QAccessible.queryAccessibleInterface(window.pinned_badge)
    assert badge.text(QAccessible.Text.Name) == "Pinned frame status"
    assert badge.text(QAccessible.Text.Description) == window.pinned_badge.text() == "● pinned · ready"
    window.unpin_button.click()  # the description follows the text: a reader does not hear a stale "ready"
    assert (badge.text(QAccessible.Text.Name), badge.text(QAccessible.Text.Description)) == ("Pinned frame status", "")
    assert window.pinned_badge.text() == ""
