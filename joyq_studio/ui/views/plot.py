"""A tiny line plot drawn with QPainter (we ship PySide6-Essentials: no QtCharts).

Two series against training step: the loss (left axis, auto-scaled) and held-out
accuracy (right axis, 0..100%).
"""

from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPalette, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

LOSS_COLOR = QColor(52, 120, 220)
ACC_COLOR = QColor(230, 120, 20)


class TrainPlot(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.loss: list[tuple[float, float]] = []  # (step, loss)
        self.acc: list[tuple[float, float]] = []  # (step, accuracy 0..1)
        self.total_steps = 1
        self.setMinimumHeight(160)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setToolTip("Training loss (blue, left axis) and held-out accuracy (orange, right axis)")

    def clear(self, total_steps: int = 1) -> None:
        self.loss, self.acc = [], []
        self.total_steps = max(1, total_steps)
        self.update()

    def add(self, step: int, loss: float | None, accuracy: float | None, total_steps: int | None = None) -> None:
        if total_steps:
            self.total_steps = max(1, total_steps)
        if loss is not None and math.isfinite(loss):
            self.loss.append((step, loss))
        if accuracy is not None and math.isfinite(accuracy):
            self.acc.append((step, accuracy))
        self.update()

    def set_history(self, history: list[dict], total_steps: int | None = None) -> None:
        """Replace the series with a finished run's complete history."""
        self.loss = [(h["step"], h["loss"]) for h in history if h.get("loss") is not None and math.isfinite(h["loss"])]
        self.acc = [
            (h["step"], h["test_accuracy"])
            for h in history
            if h.get("test_accuracy") is not None and math.isfinite(h["test_accuracy"])
        ]
        if total_steps:
            self.total_steps = max(1, total_steps)
        elif history:
            self.total_steps = max(1, max(h["step"] for h in history))
        self.update()

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(480, 200)

    def paintEvent(self, event) -> None:  # noqa: N802
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        p.fillRect(self.rect(), pal.color(QPalette.ColorRole.Base))
        fm = p.fontMetrics()
        left = fm.horizontalAdvance("0.000") + 12
        right = fm.horizontalAdvance("100%") + 12
        top, bottom = fm.height() + 10, fm.height() + 10
        area = QRectF(left, top, max(10, self.width() - left - right), max(10, self.height() - top - bottom))
        text = pal.color(QPalette.ColorRole.Text)
        grid = QColor(text)
        grid.setAlpha(40)

        losses = [v for _, v in self.loss]
        lo, hi = (min(losses), max(losses)) if losses else (0.0, 1.0)
        if hi - lo < 1e-6:
            lo, hi = lo - 0.05, hi + 0.05
        pad = 0.05 * (hi - lo)
        lo, hi = max(0.0, lo - pad), hi + pad

        def x_of(step: float) -> float:
            return area.left() + area.width() * step / self.total_steps

        def y_loss(v: float) -> float:
            return area.bottom() - area.height() * (v - lo) / (hi - lo)

        def y_acc(v: float) -> float:
            return area.bottom() - area.height() * v

        # grid and axes
        p.setPen(QPen(grid, 1))
        for k in range(5):
            y = area.top() + area.height() * k / 4
            p.drawLine(QPointF(area.left(), y), QPointF(area.right(), y))
        p.setPen(text)
        for k in range(5):
            frac = k / 4
            y = area.bottom() - area.height() * frac
            p.setPen(LOSS_COLOR)
            p.drawText(
                QRectF(0, y - fm.height() / 2, left - 6, fm.height()),
                Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                f"{lo + frac * (hi - lo):.3f}",
            )
            p.setPen(ACC_COLOR)
            p.drawText(
                QRectF(area.right() + 6, y - fm.height() / 2, right - 6, fm.height()),
                Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                f"{100 * frac:.0f}%",
            )
        p.setPen(text)
        p.drawText(
            QRectF(area.left(), area.bottom() + 4, area.width(), fm.height()),
            Qt.AlignmentFlag.AlignCenter,
            f"step (of {self.total_steps})",
        )
        # legend
        p.setPen(LOSS_COLOR)
        p.drawText(
            QRectF(area.left(), 2, area.width() / 2, fm.height()), Qt.AlignmentFlag.AlignLeft, "\u2014 training loss"
        )
        p.setPen(ACC_COLOR)
        p.drawText(
            QRectF(area.left() + area.width() / 2, 2, area.width() / 2, fm.height()),
            Qt.AlignmentFlag.AlignRight,
            "held-out accuracy \u2014",
        )

        p.setClipRect(area.adjusted(-2, -2, 2, 2))
        for series, y_of, color in ((self.loss, y_loss, LOSS_COLOR), (self.acc, y_acc, ACC_COLOR)):
            if not series:
                continue
            path = QPainterPath(QPointF(x_of(series[0][0]), y_of(series[0][1])))
            for s, v in series[1:]:
                path.lineTo(QPointF(x_of(s), y_of(v)))
            p.setPen(QPen(color, 2))
            p.drawPath(path)
            if len(series) < 40:
                p.setBrush(color)
                for s, v in series:
                    p.drawEllipse(QPointF(x_of(s), y_of(v)), 2.5, 2.5)
                p.setBrush(Qt.BrushStyle.NoBrush)
        if not self.loss and not self.acc:
            p.setClipping(False)
            p.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
            p.drawText(area, Qt.AlignmentFlag.AlignCenter, "The loss and held-out accuracy appear here while training.")
        p.end()
