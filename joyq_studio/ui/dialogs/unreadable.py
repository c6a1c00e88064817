"""The files that could not be read, with the reason for each."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)


class UnreadableDialog(QDialog):
    def __init__(self, rows: list[tuple[str, str]], parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Files that could not be read - JoyQuality Studio")
        t = QTableWidget(len(rows), 2, self)
        t.setHorizontalHeaderLabels(["File", "Reason"])
        t.verticalHeader().setVisible(False)
        t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        t.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        t.horizontalHeader().setStretchLastSection(True)
        for i, (path, why) in enumerate(rows):
            t.setItem(i, 0, QTableWidgetItem(str(path)))
            t.setItem(i, 1, QTableWidgetItem(why))
        self.table = t
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel(f"{len(rows)} files could not be read; they are skipped and never block the rest.", self))
        lay.addWidget(t)
        self.resize(820, 400)
