"""A dialog over one project folder whose work runs as tasks on a :class:`TaskRunner`
(its own when none is given): Cancel stops the task in flight, closing waits for it."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QDialog, QLabel, QWidget

from ..workers import Task, TaskRunner


class FolderTaskDialog(QDialog):
    """The subset and pre-label dialogs' common part; subclasses make ``self.status``."""

    cancelling_text = "Cancelling..."
    status: QLabel

    def __init__(self, folder: str | Path, runner: TaskRunner | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.folder = Path(folder)
        self.runner = runner or TaskRunner()
        self._own_runner = runner is None
        self.task: Task | None = None

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.status.setText(self.cancelling_text)

    def reject(self) -> None:
        if self.task is not None:
            self.cancel()
            self.task.wait(60_000)
        if self._own_runner:
            self.runner.cancel_all(stale=False)
        super().reject()
