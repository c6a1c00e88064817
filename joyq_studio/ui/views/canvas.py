"""One image on screen, fitted or zoomed: :class:`ViewState` (zoom and pan shared by the
panes that show it) and :class:`ImageCanvas` (paints a decoded image, drag pans, wheel
zooms around the cursor). Used by the Compare view and the full-size viewer."""

from __future__ import annotations

import math

from PySide6.QtCore import QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPalette
from PySide6.QtWidgets import QSizePolicy, QWidget

from ..imagecache import Decoded, fit_size

MAX_ZOOM = 16.0
WHEEL_STEP = 1.25


class ViewState(QObject):
    """Zoom and pan shared by both panes: zoom None = fit, else device px per image px;
    (cx, cy) = the image point (as a fraction of its size) at the centre of the pane."""

    changed = Signal()

    def __init__(self):
        super().__init__()
        self.zoom: float | None = None
        self.cx = 0.5
        self.cy = 0.5

    def fit(self) -> None:
        self.zoom, self.cx, self.cy = None, 0.5, 0.5
        self.changed.emit()

    def set(self, zoom: float | None, cx: float, cy: float) -> None:
        self.zoom = zoom
        self.cx, self.cy = min(max(cx, 0.0), 1.0), min(max(cy, 0.0), 1.0)
        self.changed.emit()


class ImageCanvas(QWidget):
    """Paints one decoded image, fitted (high quality, pre-scaled off-thread) or zoomed."""

    clicked = Signal()
    painted = Signal(str)  # digest, after a real image was painted

    def __init__(self, view: ViewState, parent: QWidget | None = None):
        super().__init__(parent)
        self.view = view
        self.digest: str | None = None
        self.decoded: Decoded | None = None
        self.message = ""
        self._scaled: tuple[str, int, int, QImage] | None = None
        self._press: QPointF | None = None
        self._last: QPointF | None = None
        self._dragged = False
        self.setMinimumSize(120, 120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.setMouseTracking(True)
        view.changed.connect(self._on_view)

    def box(self) -> tuple[int, int]:
        dpr = self.devicePixelRatioF()
        return max(1, int(self.width() * dpr)), max(1, int(self.height() * dpr))

    def show_image(self, digest: str | None, decoded: Decoded | None, message: str = "") -> None:
        self.digest, self.decoded, self.message = digest, decoded, message
        self._on_view()
        self.update()

    def _on_view(self) -> None:
        zoomed = self.view.zoom is not None
        self.setCursor(Qt.CursorShape.OpenHandCursor if zoomed else Qt.CursorShape.PointingHandCursor)
        self.update()

    # -- geometry ----------------------------------------------------------------------
    def image(self) -> QImage | None:
        """The decoded image at full size, or None (loading, or unreadable)."""
        return self.decoded.full if self.decoded is not None else None

    def has_image(self) -> bool:
        return self.image() is not None

    def fit_scale(self) -> float:
        full = self.image()
        if full is None:
            return 1.0
        bw, bh = self.box()
        return min(bw / full.width(), bh / full.height())

    def effective_zoom(self) -> float:
        return self.view.zoom if self.view.zoom is not None else self.fit_scale()

    def _fitted(self, full: QImage) -> QImage:
        """``full`` fitted to the pane: the copy decoded off-thread when its size is right,
        else scaled here once and kept."""
        fw, fh = fit_size(full.width(), full.height(), *self.box(), upscale=True)
        if (fw, fh) == (full.width(), full.height()):
            return full
        d = self.decoded
        if d is not None and d.fitted is not None and (d.fitted.width(), d.fitted.height()) == (fw, fh):
            return d.fitted
        key = d.key if d is not None else ""
        if self._scaled and self._scaled[:3] == (key, fw, fh):
            return self._scaled[3]
        img = full.scaled(fw, fh, Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.SmoothTransformation)
        self._scaled = (key, fw, fh, img)
        return img

    # -- painting ------------------------------------------------------------------------
    def paintEvent(self, event) -> None:  # noqa: N802 - Qt naming
        p = QPainter(self)
        pal = self.palette()
        bg = pal.color(QPalette.ColorRole.Base)
        bg = bg.darker(112) if bg.lightness() > 128 else bg.lighter(130)
        p.fillRect(self.rect(), bg)
        full = self.image()
        if full is None:
            p.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
            text = self.message or ("Loading..." if self.digest else "")
            p.drawText(
                self.rect().adjusted(12, 12, -12, -12), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, text
            )
            return
        dpr = self.devicePixelRatioF()
        w, h = self.width(), self.height()
        if self.view.zoom is None:
            img = self._fitted(full)
            lw, lh = img.width() / dpr, img.height() / dpr
            p.drawImage(QRectF((w - lw) / 2, (h - lh) / 2, lw, lh), img)
        else:
            s = self.view.zoom
            iw, ih = full.width(), full.height()
            tlx = w / 2 - self.view.cx * iw * s / dpr
            tly = h / 2 - self.view.cy * ih * s / dpr
            k = dpr / s  # image px per logical px
            x0, y0 = max(0.0, -tlx * k), max(0.0, -tly * k)
            x1, y1 = min(float(iw), (w - tlx) * k), min(float(ih), (h - tly) * k)
            if x1 > x0 and y1 > y0:
                p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, s < 1.0)
                p.translate(tlx, tly)
                p.scale(1 / k, 1 / k)
                fx, fy = math.floor(x0), math.floor(y0)
                src = QRectF(fx, fy, math.ceil(x1) - fx, math.ceil(y1) - fy)
                p.drawImage(src, full, src)
                p.resetTransform()
            p.setPen(pal.color(QPalette.ColorRole.Text))
            label = f"{100 * s:.0f}%"
            r = p.fontMetrics().boundingRect(label).adjusted(-6, -3, 6, 3)
            r.moveTopLeft(self.rect().topLeft() + QPointF(8, 8).toPoint())
            p.fillRect(r, QColor(0, 0, 0, 140))
            p.setPen(QColor(255, 255, 255))
            p.drawText(r, Qt.AlignmentFlag.AlignCenter, label)
        p.end()
        self.painted.emit(self.digest or "")

    # -- mouse ---------------------------------------------------------------------------
    def mousePressEvent(self, event) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.LeftButton:
            self._press = self._last = event.position()
            self._dragged = False
            if self.view.zoom is not None:
                self.setCursor(Qt.CursorShape.ClosedHandCursor)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        full = self.image()
        if self._press is None or self._last is None or full is None:
            return
        pos = event.position()
        if (pos - self._press).manhattanLength() > 6:
            self._dragged = True
        if self.view.zoom is not None and self._dragged:
            d = pos - self._last
            s, dpr = self.view.zoom, self.devicePixelRatioF()
            self.view.set(
                s, self.view.cx - d.x() * dpr / (s * full.width()), self.view.cy - d.y() * dpr / (s * full.height())
            )
        self._last = pos

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        if event.button() != Qt.MouseButton.LeftButton or self._press is None:
            return
        dragged = self._dragged
        self._press = None
        self._on_view()
        if not dragged:
            self.clicked.emit()

    def wheelEvent(self, event) -> None:  # noqa: N802
        if not self.has_image():
            return
        steps = event.angleDelta().y() / 120.0
        if steps == 0:
            return
        self.zoom_at(event.position(), WHEEL_STEP**steps)
        event.accept()

    def zoom_at(self, pos: QPointF, factor: float) -> None:
        """Zoom by ``factor`` keeping the image point under ``pos`` in place."""
        full = self.image()
        if full is None:
            return
        dpr = self.devicePixelRatioF()
        s0 = self.effective_zoom()
        cx, cy = (self.view.cx, self.view.cy) if self.view.zoom is not None else (0.5, 0.5)
        s1 = min(s0 * factor, MAX_ZOOM)
        if s1 <= self.fit_scale() * 1.0001:
            self.view.fit()
            return
        ox, oy = pos.x() - self.width() / 2, pos.y() - self.height() / 2
        ux = cx * full.width() + ox * dpr / s0
        uy = cy * full.height() + oy * dpr / s0
        self.view.set(s1, (ux - ox * dpr / s1) / full.width(), (uy - oy * dpr / s1) / full.height())
