"""The welcome screen: recent projects, Open folder, Try the demo."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ..util import recent_folders


class WelcomePage(QWidget):
    open_requested = Signal()
    demo_requested = Signal()
    recent_requested = Signal(str)

    def __init__(self, device: str, icon: QIcon | None = None, parent=None):
        super().__init__(parent)
        self.logo = logo = QLabel(self)
        if icon is not None and not icon.isNull():
            logo.setPixmap(icon.pixmap(QSize(96, 96)))
        self.title = title = QLabel("<h1>JoyQuality Studio</h1>", self)
        blurb = QLabel(
            "Turn your own \u201cthis image is better than that one\u201d clicks into a personal image-quality "
            "model, and rank a folder with it.<br>Open a folder of images, compare pairs, train, then preview "
            "and export a calibrated 10-bucket ranking.",
            self,
        )
        blurb.setWordWrap(True)
        self.device = QLabel(f"Compute device: <b>{device}</b>", self)

        self.open_button = QPushButton("Open folder...", self)
        self.open_button.setToolTip("Open a folder of images (Ctrl+O)")
        self.open_button.clicked.connect(self.open_requested)
        self.demo_button = QPushButton("Try the demo", self)
        self.demo_button.setToolTip(
            "Generate a demo folder of images of known quality and open it with a small "
            "model: no GPU and no download needed"
        )
        self.demo_button.clicked.connect(self.demo_requested)
        for b in (self.open_button, self.demo_button):
            b.setMinimumHeight(40)
            b.setMinimumWidth(180)

        self.recent = QListWidget(self)
        self.recent.setToolTip("Recent folders: double-click or Enter to open")
        self.recent.itemActivated.connect(lambda item: self.recent_requested.emit(item.data(Qt.ItemDataRole.UserRole)))
        self.recent_label = QLabel("<b>Recent folders</b>", self)

        head = QHBoxLayout()
        head.addWidget(logo, 0, Qt.AlignmentFlag.AlignTop)
        titles = QVBoxLayout()
        titles.addWidget(title)
        titles.addWidget(blurb)
        titles.addStretch(1)
        head.addLayout(titles, 1)
        # Takes the room the recent list leaves when there is none, so the title stays by the icon.
        self.filler = QWidget(self)
        self.filler.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)
        buttons = QHBoxLayout()
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.demo_button)
        buttons.addStretch(1)
        inner = QVBoxLayout()
        inner.addLayout(head)
        inner.addSpacing(12)
        inner.addLayout(buttons)
        inner.addWidget(self.device)
        inner.addSpacing(12)
        inner.addWidget(self.recent_label)
        inner.addWidget(self.recent, 1)
        inner.addWidget(self.filler, 1)
        outer = QHBoxLayout(self)
        outer.addStretch(1)
        outer.addLayout(inner, 4)
        outer.addStretch(1)
        self.refresh()

    def refresh(self) -> None:
        self.recent.clear()
        folders = recent_folders()
        for f in folders:
            p = Path(f)
            item = QListWidgetItem(f"{p.name}    \u2014    {p.parent}")
            item.setData(Qt.ItemDataRole.UserRole, f)
            item.setToolTip(f)
            if not p.is_dir():
                item.setText(item.text() + "    (missing)")
            self.recent.addItem(item)
        if folders:
            self.recent.setCurrentRow(0)
        self.recent.setVisible(bool(folders))
        self.recent_label.setVisible(bool(folders))
        self.filler.setVisible(not folders)
