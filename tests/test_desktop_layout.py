"""The window at 800×600: nothing is cut; and its size and splitter positions are remembered."""

from __future__ import annotations

from PySide6.QtWidgets import QAbstractButton, QApplication, QComboBox, QLabel

from app.desktop.window import MINIMUM_SIZE
from tests.support.desktop import close_window, wait_for_frame


def cut_widgets(window) -> list[str]:
    """Visible controls narrower or shorter than their own minimum size hint: their text would be cut."""
    cut = []
    for widget in window.findChildren(QAbstractButton) + window.findChildren(QComboBox) + window.findChildren(QLabel):
        if not widget.isVisibleTo(window) or widget.width() == 0:
            continue
        if isinstance(widget, QLabel) and (widget.wordWrap() or widget.objectName() == "statusLabel"):
            continue  # wraps, or elides with its full text as tooltip
        hint = widget.minimumSizeHint()
        if widget.width() < hint.width() or widget.height() < hint.height():
            cut.append(f"{type(widget).__name__} {widget.objectName() or widget.text()!r}: "
                       f"{widget.width()}×{widget.height()} < {hint.width()}×{hint.height()}")  # fmt: skip
    return cut


def test_the_window_fits_800_by_600_with_nothing_cut(qtbot, make_window, settings):
    window = make_window(settings)
    wait_for_frame(qtbot, window)
    window.set_status("Ready: a model with a very long name indeed · template chatml (text only: no mmproj) " * 3)
    window.resize(*MINIMUM_SIZE)
    qtbot.waitUntil(lambda: (window.width(), window.height()) == MINIMUM_SIZE, timeout=5000)
    QApplication.processEvents()
    hint = window.minimumSizeHint()
    assert hint.width() <= 800, f"minimum width {hint.width()}"
    assert hint.height() <= 600, f"minimum height {hint.height()}"
    assert all(size > 0 for size in window.splitter.sizes()), window.splitter.sizes()
    assert cut_widgets(window) == []
    preview = window.camera_panel.preview
    shown = preview.image_rect()
    assert shown.width() >= 150, "a preview one can see"
    assert abs(shown.height() / shown.width() - 0.75) < 0.02, "the preview keeps the camera's shape"


def test_window_size_and_splitter_positions_are_remembered(qtbot, make_window, settings, tmp_path):
    window = make_window(settings, wait_model=False)
    window.resize(1000, 700)
    qtbot.waitUntil(lambda: (window.width(), window.height()) == (1000, 700), timeout=5000)
    window.splitter.setSizes([180, 300, 500])
    QApplication.processEvents()
    sizes = window.splitter.sizes()
    close_window(qtbot, window)
    assert (tmp_path / "window.json").exists()

    again = make_window(settings, wait_model=False)
    qtbot.waitUntil(lambda: (again.width(), again.height()) == (1000, 700), timeout=5000)
    assert again.splitter.sizes() == sizes
