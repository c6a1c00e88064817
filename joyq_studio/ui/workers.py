"""QThread workers that wrap plain core calls.

A :class:`Task` runs ``fn(report, cancelled)`` on its own thread: ``report(payload)``
forwards progress to the GUI (throttled), ``cancelled()`` is the core's cancel callback.
The outcome arrives as exactly one of ``succeeded(result)``, ``failed(sentence)`` or
``cancelled_()``, always on the GUI thread (queued signals), then ``done``. A task stops
early by raising :class:`~joyq_studio.errors.Cancelled` (as the core does when its cancel
check says so); a task whose project was closed is *stale* and its outcome is dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QThread, Signal

from ..errors import Cancelled
from .util import error_sentence


class Hook:
    """A signal-like endpoint: ``hook.connect(fn)``. Callbacks run on the GUI thread and are
    skipped once the task is *stale* (its project was closed), so a late result can never
    land in the next project's views."""

    def __init__(self, task: Task):
        self.task = task
        self.callbacks: list[Callable] = []

    def connect(self, fn: Callable) -> None:
        self.callbacks.append(fn)

    def fire(self, *args) -> None:
        if self.task.stale:
            return
        for fn in list(self.callbacks):
            fn(*args)


class Task(QThread):
    _progress = Signal(object)
    _succeeded = Signal(object)
    _failed = Signal(str)
    _cancelled = Signal()
    _done = Signal()

    def __init__(
        self,
        name: str,
        fn: Callable[[Callable[[Any], None], Callable[[], bool]], Any],
        parent=None,
        min_interval: float = 0.05,
    ):
        super().__init__(parent)
        self.name = name
        self.fn = fn
        self._cancel = False
        self.stale = False
        self._last = 0.0
        self._min_interval = min_interval
        self.setObjectName(f"task-{name}")
        self.progress, self.succeeded, self.failed = Hook(self), Hook(self), Hook(self)
        self.cancelled_, self.done = Hook(self), Hook(self)
        # Emitted on the worker thread; the sender lives on the GUI thread, so these run there.
        self._progress.connect(self.progress.fire)
        self._succeeded.connect(self.succeeded.fire)
        self._failed.connect(self.failed.fire)
        self._cancelled.connect(self.cancelled_.fire)
        self._done.connect(self.done.fire)

    # called on the worker thread
    def report(self, payload: Any, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= self._min_interval:
            self._last = now
            self._progress.emit(payload)

    def is_cancelled(self) -> bool:
        return self._cancel

    def cancel(self) -> None:
        self._cancel = True

    def run(self) -> None:
        try:
            result = self.fn(self.report, self.is_cancelled)
        except BaseException as e:  # noqa: BLE001 - every outcome must reach the GUI
            if isinstance(e, Cancelled):
                self._cancelled.emit()
            else:
                self._failed.emit(error_sentence(e))
        else:
            if self._cancel:
                self._cancelled.emit()
            else:
                self._succeeded.emit(result)
        finally:
            self._done.emit()


class TaskRunner:
    """Keeps references to running tasks (a QThread must outlive its run) and stops them
    all on shutdown."""

    def __init__(self):
        self.tasks: set[Task] = set()

    def start(self, task: Task) -> Task:
        self.tasks.add(task)
        task.finished.connect(lambda t=task: self._forget(t))
        task.start()
        return task

    def _forget(self, task: Task) -> None:
        self.tasks.discard(task)
        task.deleteLater()

    def running(self, name: str) -> Task | None:
        return next((t for t in self.tasks if t.name == name and t.isRunning()), None)

    def cancel_all(self, wait_ms: int = 30000, stale: bool = True) -> None:
        """Cancel every task and wait for it; ``stale``: drop their pending results too."""
        for t in list(self.tasks):
            t.stale = stale
            t.cancel()
        for t in list(self.tasks):
            t.wait(wait_ms)
