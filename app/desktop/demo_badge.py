"""The badge shown while the built-in demo pair is the loaded model: what it knows, and one click to a real model."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

from app.core.resources import is_demo_model_path

DEMO_BADGE_TEXT = "Demo model — knows only coloured shapes"
DEMO_BADGE_WHY = ("The built-in demo was trained on pictures of one coloured shape on a plain background. It answers "
                  "questions about their colour, shape and place; anything else gets its best short guess, which "
                  "will be wrong. Get a real model for real questions.")  # fmt: skip


class DemoBadge(QFrame):
    """Visible while the demo pair is loaded; `get_model` asks for the model dialog."""

    get_model = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("demoBadge")
        self.setAccessibleName("Demo model notice")
        self.setToolTip(DEMO_BADGE_WHY)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        self.label = QLabel(DEMO_BADGE_TEXT)
        self.label.setObjectName("demoBadgeLabel")
        self.label.setToolTip(DEMO_BADGE_WHY)
        self.label.setWordWrap(True)
        layout.addWidget(self.label, 1)
        self.button = QPushButton("Get a real model…")
        self.button.setObjectName("getModelButton")
        self.button.setAccessibleName("Get a real model")
        self.button.clicked.connect(self.get_model)
        layout.addWidget(self.button)
        self.setVisible(False)

    def show_for(self, text_model_path: str) -> None:
        """Show the badge when `text_model_path` (the model now loaded) is the demo's, hide it otherwise."""
        self.setVisible(bool(text_model_path) and is_demo_model_path(text_model_path))
