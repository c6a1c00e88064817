"""The message bar at the top of the window: one sentence, an error or good news; it stays
until closed or replaced."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QWidget

ERROR_RGB = "220, 60, 60"  # translucent red and blue read well on light and dark themes alike
NOTICE_RGB = "60, 140, 220"


class MessageBar(QFrame):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setObjectName("messageBar")
        self._colour(ERROR_RGB)
        self.label = QLabel(self)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton(self)
        close.setText("\u2715")
        close.setToolTip("Dismiss")
        close.setAutoRaise(True)
        close.clicked.connect(self.hide)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 4, 4, 4)
        lay.addWidget(self.label, 1)
        lay.addWidget(close)
        self.hide()

    def _colour(self, rgb: str) -> None:
        self.setStyleSheet(f"#messageBar {{ background: rgba({rgb}, 45); border: 1px solid rgba({rgb}, 120); }}")

    def show_text(self, text: str, error: bool = True) -> None:
        self.label.setText(("\u26a0  " if error else "") + text)
        self._colour(ERROR_RGB if error else NOTICE_RGB)
        self.show()
