"""A full-size image viewer dialog (fit, Z = 100%, wheel zoom, drag to pan, Esc closes)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QLabel, QVBoxLayout

from ..imagecache import ImageLoader
from ..util import format_name
from .canvas import ImageCanvas, ViewState


class ImageViewer(QDialog):
    def __init__(self, loader: ImageLoader, digest: str, path: Path, caption: str = "", parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"{path.name} - JoyQuality Studio")
        self.loader, self.digest, self.path = loader, digest, path
        self.view = ViewState()
        self.canvas = ImageCanvas(self.view, self)
        self.canvas.setToolTip("Z: 100% / fit  \u00b7  wheel: zoom  \u00b7  drag: pan  \u00b7  Esc: close")
        self.caption = QLabel(caption or f"{path.name}  \u00b7  {format_name(path)}", self)
        self.caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        lay = QVBoxLayout(self)
        lay.addWidget(self.canvas, 1)
        lay.addWidget(self.caption)
        self.resize(1000, 760)
        loader.ready.connect(self._on_ready)
        self._load()

    def _load(self) -> None:
        d = self.loader.request(self.digest, self.path, self.canvas.box())
        self.canvas.show_image(self.digest, d, d.error if d is not None and d.error else "")

    def _on_ready(self, d) -> None:
        if d.key == self.digest:
            self._load()

    def keyPressEvent(self, event) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Z:
            if self.view.zoom is None:
                self.view.set(1.0, 0.5, 0.5)
            else:
                self.view.fit()
            return
        if event.key() == Qt.Key.Key_Escape and self.view.zoom is not None:
            self.view.fit()
            return
        super().keyPressEvent(event)

    def done(self, r: int) -> None:
        try:
            self.loader.ready.disconnect(self._on_ready)
        except (RuntimeError, TypeError):
            pass
        super().done(r)
