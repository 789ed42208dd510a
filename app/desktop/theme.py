"""Light and dark: the window follows the system's palette ("system"), or the user's choice ("light", "dark").

`apply_theme(app, theme)` is the one entry point (the window calls it at start and when the `theme` setting
changes). The style sheet (resources/styles.qss) is a template whose `$name` colours come from the mode in use, so
bubbles, code blocks and notices stay readable in both; while the theme is "system", a change of the system's
palette or colour scheme applies the matching colours again.
"""

from __future__ import annotations

from string import Template

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

from app.core.resources import resource_path
from app.core.settings import THEMES  # the one list, with the setting

COLOURS: dict[str, dict[str, str]] = {
    "light": {
        "user_bg": "#2f6fde", "user_text": "#ffffff",
        "answer_bg": "#eef0f3", "answer_border": "#d6dae0", "answer_text": "#1b1f24",
        "code_bg": "#f8f9fb", "muted_text": "#5a636e", "accent": "#2f6fde",
        "notice_bg": "#fff4d6", "notice_text": "#5c4400", "notice_border": "#e8c766",
        "send_disabled": "#9db7e6",
        "badge_bg": "#e8f0fe", "badge_text": "#1a3d7c", "badge_border": "#9db7e6",
    },
    "dark": {
        "user_bg": "#2f6fde", "user_text": "#ffffff",
        "answer_bg": "#2a2e35", "answer_border": "#3b414a", "answer_text": "#e6e8eb",
        "code_bg": "#1b1d21", "muted_text": "#a4adb8", "accent": "#7aa7ff",
        "notice_bg": "#3b3116", "notice_text": "#f3dc9c", "notice_border": "#7a6420",
        "send_disabled": "#3d5688",
        "badge_bg": "#1c2940", "badge_text": "#b9cffb", "badge_border": "#3d5688",
    },
}  # fmt: skip


def dark_palette() -> QPalette:
    """The palette used when "dark" is chosen and the system's is light (or the platform has no dark palette)."""
    palette = QPalette()
    window, base, text, muted = QColor("#1f2125"), QColor("#26292e"), QColor("#e6e8eb"), QColor("#6b7178")
    roles = {
        QPalette.ColorRole.Window: window, QPalette.ColorRole.WindowText: text,
        QPalette.ColorRole.Base: base, QPalette.ColorRole.AlternateBase: QColor("#2a2e35"),
        QPalette.ColorRole.Text: text, QPalette.ColorRole.Button: QColor("#2c3036"),
        QPalette.ColorRole.ButtonText: text, QPalette.ColorRole.BrightText: QColor("#ffffff"),
        QPalette.ColorRole.Highlight: QColor("#2f6fde"), QPalette.ColorRole.HighlightedText: QColor("#ffffff"),
        QPalette.ColorRole.ToolTipBase: base, QPalette.ColorRole.ToolTipText: text,
        QPalette.ColorRole.PlaceholderText: QColor("#8a929c"), QPalette.ColorRole.Link: QColor("#8ab4ff"),
        QPalette.ColorRole.LinkVisited: QColor("#b59cff"), QPalette.ColorRole.Light: QColor("#3b414a"),
        QPalette.ColorRole.Midlight: QColor("#33383f"), QPalette.ColorRole.Mid: QColor("#2a2e35"),
        QPalette.ColorRole.Dark: QColor("#15171a"), QPalette.ColorRole.Shadow: QColor("#000000"),
    }  # fmt: skip
    for role, colour in roles.items():
        palette.setColor(role, colour)
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, muted)
    return palette


def palette_is_dark(palette: QPalette) -> bool:
    return palette.color(QPalette.ColorRole.Window).lightness() < 128


def system_is_dark(app: QGuiApplication) -> bool:
    """Whether the system asks for dark: its colour scheme when the platform says, else its palette."""
    scheme = app.styleHints().colorScheme()
    if scheme != Qt.ColorScheme.Unknown:
        return scheme == Qt.ColorScheme.Dark
    return palette_is_dark(app.palette())


def style_sheet(mode: str) -> str:
    """The app's style sheet with the colours of `mode` ("light" or "dark")."""
    template = Template(resource_path("styles.qss").read_text(encoding="utf-8"))
    return template.substitute(COLOURS[mode])


class _SystemFollower(QObject):
    """While the theme is "system", applies the matching colours again when the system's palette changes."""

    def __init__(self, app: QApplication) -> None:
        super().__init__(app)
        self.app = app
        self.theme = "system"
        self.applying = False
        # Signals, not an event filter: a filter on the application would see every event of every widget.
        # Bound methods of this QObject: Qt disconnects them when it is deleted (remove_theme).
        app.paletteChanged.connect(self._changed)
        app.styleHints().colorSchemeChanged.connect(self._changed)

    def _changed(self, *_: object) -> None:
        self.refresh()

    def refresh(self) -> None:
        if self.theme == "system" and not self.applying:
            mode = "dark" if system_is_dark(self.app) else "light"
            if self.app.property("themeMode") != mode:
                self.applying = True
                try:
                    _set_style(self.app, mode)
                finally:
                    self.applying = False


def _set_style(app: QApplication, mode: str) -> None:
    app.setProperty("themeMode", mode)
    app.setStyleSheet(style_sheet(mode))


def apply_theme(app: QApplication, theme: str = "system") -> str:
    """Apply `theme` ("system", "light" or "dark"; anything else counts as "system") to the whole app, and return
    the mode now in use: "light" or "dark"."""
    follower = app.findChild(_SystemFollower)
    if follower is None:
        follower = _SystemFollower(app)
    theme = theme if theme in THEMES else "system"
    follower.theme = theme
    follower.applying = True
    try:
        app.setPalette(QPalette())  # the system's own palette again (unset: Qt follows the platform's changes)
        mode = theme
        if theme == "system":
            mode = "dark" if system_is_dark(app) else "light"
        elif palette_is_dark(app.palette()) != (theme == "dark"):
            # The system's palette is the other mode: use ours (Fusion draws any palette faithfully).
            app.setStyle("Fusion")
            app.setPalette(dark_palette() if theme == "dark" else app.style().standardPalette())
        _set_style(app, mode)
    finally:
        follower.applying = False
    return mode


def remove_theme(app: QApplication) -> None:
    """Back to Qt's defaults: no style sheet, the system's palette, and no longer following it (for tests)."""
    follower = app.findChild(_SystemFollower)
    if follower is not None:
        follower.theme = ""
        follower.setParent(None)
        follower.deleteLater()
    app.setProperty("themeMode", None)
    app.setStyleSheet("")
    app.setPalette(QPalette())
