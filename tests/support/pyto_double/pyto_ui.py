"""TEST DOUBLE of Pyto's pyto_ui (names and signatures as in Pyto's Lib/pyto_ui.py; no real UI)."""

from __future__ import annotations

from enum import Enum
from typing import Any


class PresentationMode(Enum):
    SHEET = 0
    FULL_SCREEN = 1
    WIDGET = 2


class TableViewStyle(Enum):
    PLAIN = 0
    GROUPED = 1
    INSET_GROUPED = 2


class TableViewCellStyle(Enum):
    DEFAULT = 0
    VALUE1 = 1
    VALUE2 = 2
    SUBTITLE = 3


class View:
    def __init__(self) -> None:
        self.subviews: list[View] = []
        self.title = ""

    def add_subview(self, view: View) -> None:
        self.subviews.append(view)


class StackView(View):
    pass


class HorizontalStackView(StackView):
    pass


class VerticalStackView(StackView):
    pass


class Label(View):
    def __init__(self, text: str = "") -> None:
        super().__init__()
        self.text = text
        self.number_of_lines = 1


class ImageView(View):
    def __init__(self, image: Any = None, symbol_name: str | None = None, url: str | None = None) -> None:
        super().__init__()
        self.image = image


class Control(View):
    def __init__(self) -> None:
        super().__init__()
        self.enabled = True
        self.action: Any = None


class Button(Control):
    def __init__(self, type: Any = "SYSTEM", title: str = "", image: Any = None) -> None:
        super().__init__()
        self.title = title
        self.image = image

    def tap(self) -> None:
        """Test helper: what a finger on the button does."""
        if self.enabled and self.action is not None:
            self.action(self)


class TextField(Control):
    def __init__(self, text: str = "", placeholder: str | None = None) -> None:
        super().__init__()
        self.text = text
        self.placeholder = placeholder


class TableViewCell(View):
    def __init__(self, style: TableViewCellStyle = TableViewCellStyle.SUBTITLE, text: str | None = None,
                 detail: str | None = None, image: Any = None) -> None:  # fmt: skip
        super().__init__()
        self.style = style
        self.text_label = Label(text or "")
        self.detail_text_label = Label(detail or "")


class TableViewSection:
    def __init__(self, title: str = "", cells: list[TableViewCell] | None = None) -> None:
        self.title = title
        self.cells = tuple(cells or ())


class TableView(View):
    def __init__(self, style: TableViewStyle = TableViewStyle.INSET_GROUPED,
                 sections: list[TableViewSection] | None = None) -> None:  # fmt: skip
        super().__init__()
        self.style = style
        self.sections = list(sections or [])


shown: list[View] = []


def show_view(view: View, mode: PresentationMode | None = None) -> None:
    shown.append(view)


def show_view_without_waiting(view: View, mode: PresentationMode) -> None:
    shown.append(view)
