"""The Rank view: the folder by calibrated quality bucket.

A histogram of images per bucket (numbered 0 = worst .. 9 = best, as the CSV), then one
row of lazily loaded thumbnails per bucket (best first), each scrollable sideways (the mouse
wheel scrolls the page), double-click to open at full size; a context menu puts an image in
another bucket by hand, opens its folder, or copies its path; the tooltip shows the caption
an export would write. Filter by name, bucket and score. Method A / B switch, editable
bucket labels, "Recalibrate" (refit on held-out comparisons), and buttons for the export
dialogs (CSV, captions, chosen images into a folder). The controller ranks on a worker
thread with the core's ranking functions; this view renders :attr:`Controller.ranking`
when it is visible.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path

from PySide6.QtCore import QAbstractListModel, QEvent, QModelIndex, QObject, QRectF, QSize, Qt, QUrl, Signal
from PySide6.QtGui import QColor, QDesktopServices, QGuiApplication, QPainter, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QComboBox,
    QDoubleSpinBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QMenu,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QStyle,
    QStyledItemDelegate,
    QVBoxLayout,
    QWidget,
)

from ...export import caption_path, edit_caption
from ...export.captions import TagFinder
from ...ranking import QUALITY_PHRASES, RankedImage, default_labels
from ..controller import Controller
from ..imagecache import ThumbnailLoader
from .viewer import ImageViewer

THUMB = 128  # logical px of a thumbnail cell
CELL = QSize(THUMB + 12, THUMB + 24)


class BucketModel(QAbstractListModel):
    """RankedImage rows of one bucket; the decoration (thumbnail) is loaded on demand."""

    def __init__(self, thumbs: ThumbnailLoader, folder, parent=None):
        super().__init__(parent)
        self.thumbs, self.folder = thumbs, folder
        self.rows: list = []
        self.labels: list[str] = []  # the calibration's labels (what a caption export looks for)
        self.by_hash: dict[str, list[int]] = {}
        thumbs.ready.connect(self._on_thumb)

    def set_rows(self, rows: list) -> None:
        self.beginResetModel()
        self.rows = rows
        self.by_hash = {}
        for i, r in enumerate(rows):
            self.by_hash.setdefault(r.hash, []).append(i)
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self.rows)

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        r = self.rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return r.path.rsplit("/", 1)[-1]
        if role == Qt.ItemDataRole.DecorationRole:
            return self.thumbs.get(r.hash, self.folder / r.path)
        if role == Qt.ItemDataRole.ToolTipRole:
            err = self.thumbs.errors.get(r.hash)
            hand = " (set by hand)" if r.overridden else ""
            return (
                f"{r.path}\nbucket {r.bucket}: {r.label}{hand} \u00b7 score {r.score:+.3f} \u00b7 "
                f"rank {r.rank:.2f} of 10"
                + (f"\n{err}" if err else "")
                + f"\nA caption export (prepend) would write: {caption_preview(self.folder, r, self.labels)}"
                + "\nDouble-click (or Enter) to open at full size; right-click for more"
            )
        if role == Qt.ItemDataRole.UserRole:
            return r
        return None

    def _on_thumb(self, digest: str) -> None:
        for i in self.by_hash.get(digest, ()):
            idx = self.index(i)
            self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole])


def caption_preview(
    folder: Path, r: RankedImage, labels: list[str] | tuple[str, ...] = (), separator: str = ", ", limit: int = 160
) -> str:
    """The caption a default caption export (prepend, ", ") would write for ``r``, by the
    export's own rule (:func:`joyq_studio.export.edit_caption`: a quality label already in the
    caption is replaced, not repeated); one line, shortened."""
    try:
        old: str | None = caption_path(Path(folder) / r.path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        old = None
    k = len(labels) or 10
    finder = TagFinder([*labels, *QUALITY_PHRASES, *default_labels(k)], [separator])
    new = edit_caption(old, r.label, "prepend", separator, finder)
    text = (new if new is not None else old or "").strip().replace("\r", " ").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


class ThumbDelegate(QStyledItemDelegate):
    """Paints a thumbnail fitted into a fixed cell, the file name under it."""

    def sizeHint(self, option, index) -> QSize:  # noqa: N802
        return CELL

    def paint(self, painter: QPainter, option, index) -> None:
        painter.save()
        pal = option.palette
        rect = option.rect.adjusted(3, 3, -3, -3)
        if option.state & QStyle.StateFlag.State_Selected:
            painter.fillRect(option.rect, pal.color(QPalette.ColorRole.Highlight))
        img = index.data(Qt.ItemDataRole.DecorationRole)
        box = QRectF(rect.left(), rect.top(), rect.width(), rect.height() - 18)
        if img is not None and not img.isNull():
            s = min(box.width() / img.width(), box.height() / img.height())
            w, h = img.width() * s, img.height() * s
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawImage(QRectF(box.center().x() - w / 2, box.center().y() - h / 2, w, h), img)
        else:
            c = pal.color(QPalette.ColorRole.Mid)
            c.setAlpha(60)
            painter.fillRect(box, c)
        painter.setPen(
            pal.color(
                QPalette.ColorRole.HighlightedText
                if option.state & QStyle.StateFlag.State_Selected
                else QPalette.ColorRole.Text
            )
        )
        name = painter.fontMetrics().elidedText(str(index.data()), Qt.TextElideMode.ElideMiddle, int(rect.width()))
        painter.drawText(QRectF(rect.left(), rect.bottom() - 16, rect.width(), 16), Qt.AlignmentFlag.AlignCenter, name)
        painter.restore()


class Histogram(QWidget):
    """Images per bucket; click a bar to jump to that bucket's row."""

    bucket_clicked = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.counts: list[int] = [0] * 10
        self.labels: list[str] = [""] * 10
        self.setMinimumHeight(120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip("Images per quality bucket (worst left, best right); click a bar to jump to it")

    def set_data(self, counts: list[int], labels: list[str]) -> None:
        self.counts, self.labels = counts, labels
        self.update()

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(600, 140)

    def _bars(self):
        k = max(1, len(self.counts))
        fm = self.fontMetrics()
        top, bottom = fm.height() + 4, 2 * fm.height() + 8
        w = self.width() / k
        return k, w, top, bottom

    def paintEvent(self, event) -> None:  # noqa: N802
        p = QPainter(self)
        pal = self.palette()
        p.fillRect(self.rect(), pal.color(QPalette.ColorRole.Base))
        k, w, top, bottom = self._bars()
        peak = max(self.counts) if self.counts and max(self.counts) > 0 else 1
        area_h = self.height() - top - bottom
        accent = pal.color(QPalette.ColorRole.Highlight)
        fm = p.fontMetrics()
        for i, c in enumerate(self.counts):
            h = area_h * c / peak
            x = i * w
            col = QColor(accent)
            col.setAlphaF(0.35 + 0.65 * (i + 1) / k)
            p.fillRect(QRectF(x + 4, top + area_h - h, w - 8, h), col)
            p.setPen(pal.color(QPalette.ColorRole.Text))
            centre = Qt.AlignmentFlag.AlignCenter
            p.drawText(QRectF(x, top + area_h - h - fm.height() - 2, w, fm.height()), centre, str(c))
            p.drawText(QRectF(x, self.height() - bottom + 4, w, fm.height()), Qt.AlignmentFlag.AlignCenter, str(i))
            text = self.labels[i] if i < len(self.labels) else ""
            label = fm.elidedText(text, Qt.TextElideMode.ElideRight, int(w - 4))
            p.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
            p.drawText(QRectF(x, self.height() - bottom + 4 + fm.height(), w, fm.height()), centre, label)
        p.end()

    def mousePressEvent(self, event) -> None:  # noqa: N802
        k, w, _, _ = self._bars()
        i = int(event.position().x() // w)
        if 0 <= i < k:
            self.bucket_clicked.emit(i)


class _WheelToPage(QObject):
    """Vertical wheel turns over a bucket strip scroll the page, not the strip sideways
    (a horizontal wheel or touchpad swipe still scrolls the strip)."""

    def __init__(self, page: QScrollArea, parent=None):
        super().__init__(parent)
        self.page = page

    def eventFilter(self, obj, event) -> bool:  # noqa: N802
        if event.type() == QEvent.Type.Wheel:
            d = event.angleDelta()
            if abs(d.y()) > abs(d.x()):
                QApplication.sendEvent(self.page.verticalScrollBar(), event)
                return True
        return False


class BucketRow(QFrame):
    label_edited = Signal(int, str)
    open_image = Signal(object)  # RankedImage
    context_menu = Signal(object, object)  # RankedImage, global QPoint

    def __init__(self, bucket: int, k: int, thumbs: ThumbnailLoader, folder, parent=None):
        super().__init__(parent)
        self.bucket = bucket
        self.setFrameShape(QFrame.Shape.NoFrame)
        title = f"Bucket {bucket}" + (" (best)" if bucket == k - 1 else " (worst)" if bucket == 0 else "")
        self.title = QLabel(f"<b>{title}</b>", self)
        self.title.setMinimumWidth(130)
        self.label = QLineEdit(self)
        self.label.setToolTip("The label written into captions and the CSV for this bucket; edit to rename")
        self.label.setMaximumWidth(320)
        self.label.editingFinished.connect(lambda: self.label_edited.emit(self.bucket, self.label.text()))
        self.count = QLabel(self)
        self.model = BucketModel(thumbs, folder, self)
        self.list = QListView(self)
        self.list.setModel(self.model)
        self.list.setItemDelegate(ThumbDelegate(self.list))
        self.list.setFlow(QListView.Flow.LeftToRight)
        self.list.setWrapping(False)
        self.list.setUniformItemSizes(True)
        self.list.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.list.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        sb = self.list.horizontalScrollBar().sizeHint().height()
        self.list.setFixedHeight(CELL.height() + sb + 6)
        self.list.doubleClicked.connect(lambda idx: self.open_image.emit(idx.data(Qt.ItemDataRole.UserRole)))
        self.list.activated.connect(lambda idx: self.open_image.emit(idx.data(Qt.ItemDataRole.UserRole)))
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._context_menu)
        self.empty = QLabel("No images in this bucket.", self)
        self.empty.setEnabled(False)
        head = QHBoxLayout()
        head.addWidget(self.title)
        head.addWidget(self.label, 1)
        head.addWidget(self.count)
        head.addStretch(1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 4, 0, 4)
        lay.addLayout(head)
        lay.addWidget(self.list)
        lay.addWidget(self.empty)

    def _context_menu(self, pos) -> None:
        idx = self.list.indexAt(pos)
        if idx.isValid():
            self.context_menu.emit(idx.data(Qt.ItemDataRole.UserRole), self.list.viewport().mapToGlobal(pos))

    def set_rows(self, rows: list, label: str, total: int | None = None) -> None:
        self.model.set_rows(rows)
        if not self.label.hasFocus():
            self.label.setText(label)
        n = f"{len(rows)} image{'s' if len(rows) != 1 else ''}"
        self.count.setText(n if total is None or total == len(rows) else f"{n} shown of {total}")
        self.list.setVisible(bool(rows))
        self.empty.setText("No images in this bucket." if not total else "No image of this bucket matches the filter.")
        self.empty.setVisible(not rows)


METHODS = (("q", "Q: equal shares"), ("a", "A: equal score ranges"), ("b", "B: calibrated"))


ANY_SCORE = -100.0  # the min-score filter's "any score" value


class RankView(QWidget):
    ranked = Signal()  # the ranking on screen was redrawn
    export_csv_requested = Signal()
    export_captions_requested = Signal()
    export_folder_requested = Signal()

    def __init__(self, controller: Controller, parent: QWidget | None = None):
        super().__init__(parent)
        self.c = controller
        self.thumbs = ThumbnailLoader(size=192, max_items=1000, parent=self)
        self.viewer: ImageViewer | None = None
        self.bucket_rows: list[BucketRow] = []
        self._build_bar()
        self._build_rows()
        self._build_filter()
        lay = QVBoxLayout(self)
        lay.addLayout(self._bar)
        lay.addLayout(self._filter_bar)
        lay.addWidget(self.notes)
        lay.addWidget(self.hist)
        lay.addWidget(self.scroll_area, 1)
        controller.session_changed.connect(self._on_session_changed)
        controller.ranking_stale.connect(self._on_stale)
        controller.ranking_message.connect(self.notes.setText)
        controller.ranked.connect(self._on_ranked)
        controller.ranking_failed.connect(self._on_failed)

    def _build_bar(self) -> None:
        self.method = QComboBox(self)
        for key, text in METHODS:
            self.method.addItem(text, key)
        self.method.setToolTip(
            "Q (default): about a tenth of the folder in each bucket, in score order. "
            "A: the score range split into 10 equal parts. "
            "B: ranks from a sigmoid whose temperature is fitted on your held-out comparisons."
        )
        self.method.activated.connect(self._method_chosen)
        self.recal = QPushButton("Recalibrate", self)
        self.recal.setToolTip("Refit the calibration on the held-out comparisons so far")
        self.recal.clicked.connect(lambda: self.c.recalibrate(self.current_method()))
        self.csv_button = QPushButton("Export CSV...", self)
        self.csv_button.setToolTip("Write the ranking to a CSV file (Ctrl+E)")
        self.csv_button.clicked.connect(self.export_csv_requested)
        self.cap_button = QPushButton("Export captions...", self)
        self.cap_button.setToolTip(
            "Write the quality label into caption .txt files, with a dry-run preview (Ctrl+Shift+E)"
        )
        self.cap_button.clicked.connect(self.export_captions_requested)
        self.folder_button = QPushButton("Put into folder...", self)
        self.folder_button.setToolTip(
            "Copy or link chosen buckets (or images above a score) into a folder of your "
            "choice, with a dry run; the originals are never moved"
        )
        self.folder_button.clicked.connect(self.export_folder_requested)
        self.undo_button = QPushButton("Undo last export", self)
        self.undo_button.setToolTip(
            "Undo the newest caption export or export to a folder: restore the caption "
            "files it changed, or remove the files it put into the folder"
        )
        self.undo_button.clicked.connect(lambda: self.c.undo_caption_export())
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Method:", self))
        bar.addWidget(self.method)
        bar.addWidget(self.recal)
        bar.addStretch(1)
        bar.addWidget(self.csv_button)
        bar.addWidget(self.cap_button)
        bar.addWidget(self.folder_button)
        bar.addWidget(self.undo_button)
        self._bar = bar

    def _build_filter(self) -> None:
        self.search = QLineEdit(self)
        self.search.setPlaceholderText("Filter by name...")
        self.search.setClearButtonEnabled(True)
        self.search.setToolTip("Show only images whose path contains this text (case does not matter)")
        self.search.textChanged.connect(self._render)
        self.bucket_filter = QComboBox(self)
        self.bucket_filter.setToolTip("Show one bucket only")
        self.bucket_filter.addItem("All buckets", None)
        self.bucket_filter.currentIndexChanged.connect(self._render)
        self.min_score = QDoubleSpinBox(self)
        self.min_score.setRange(ANY_SCORE, 100.0)
        self.min_score.setDecimals(2)
        self.min_score.setSingleStep(0.1)
        self.min_score.setValue(ANY_SCORE)
        self.min_score.setSpecialValueText("any score")
        self.min_score.setToolTip("Show only images with at least this model score")
        self.min_score.valueChanged.connect(self._render)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Show:", self))
        bar.addWidget(self.search, 2)
        bar.addWidget(self.bucket_filter, 1)
        bar.addWidget(QLabel("score at least", self))
        bar.addWidget(self.min_score)
        self.order = QComboBox(self)
        self.order.addItem("Best first", "score")
        self.order.addItem("Least certain first", "uncertain")
        self.order.setToolTip(
            "Order within each bucket. \u201cLeast certain first\u201d: by the live model's "
            "score uncertainty (posterior SD), the images to compare next"
        )
        self.order.currentIndexChanged.connect(self._render)
        bar.addWidget(self.order)
        bar.addStretch(1)
        self._filter_bar = bar

    def _fill_bucket_filter(self, cal) -> None:
        want = [None, *reversed(range(cal.k))]
        texts = ["All buckets", *(f"Bucket {b}: {cal.labels[b]}" for b in reversed(range(cal.k)))]
        have = [self.bucket_filter.itemText(i) for i in range(self.bucket_filter.count())]
        if have == texts:
            return
        current = self.bucket_filter.currentData()
        self.bucket_filter.blockSignals(True)
        self.bucket_filter.clear()
        for data, text in zip(want, texts, strict=True):
            self.bucket_filter.addItem(text, data)
        i = self.bucket_filter.findData(current)
        self.bucket_filter.setCurrentIndex(max(0, i))
        self.bucket_filter.blockSignals(False)

    def filtering(self) -> bool:
        return (
            bool(self.search.text().strip())
            or self.bucket_filter.currentData() is not None
            or self.min_score.value() > ANY_SCORE
        )

    def matches(self, r: RankedImage) -> bool:
        """Whether ``r`` passes the name / bucket / score filter."""
        text = self.search.text().strip().lower()
        bucket = self.bucket_filter.currentData()
        low = self.min_score.value()
        return (
            (not text or text in r.path.lower())
            and (bucket is None or r.bucket == bucket)
            and (low <= ANY_SCORE or r.score >= low)
        )

    def _build_rows(self) -> None:
        self.notes = QLabel(self)
        self.notes.setWordWrap(True)
        self.hist = Histogram(self)
        self.hist.bucket_clicked.connect(self.scroll_to_bucket)
        self.rows_widget = QWidget(self)
        self.rows_layout = QVBoxLayout(self.rows_widget)
        self.rows_layout.setContentsMargins(4, 4, 4, 4)
        self.scroll_area = QScrollArea(self)
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setWidget(self.rows_widget)
        self._wheel = _WheelToPage(self.scroll_area, self)

    def _on_session_changed(self, session) -> None:
        if session is None:
            self.reset()

    def reset(self) -> None:
        """Forget the previous project's ranking (the project was closed)."""
        self._clear_rows()
        self.hist.set_data([0] * 10, [""] * 10)
        self.notes.setText("")

    def _clear_rows(self) -> None:
        for r in self.bucket_rows:
            r.setParent(None)
            r.deleteLater()
        self.bucket_rows = []
        while self.rows_layout.count():
            self.rows_layout.takeAt(0)

    def current_method(self) -> str:
        return self.method.currentData()

    def _ensure_rows(self, k: int) -> None:
        if len(self.bucket_rows) == k or self.c.session is None:
            return
        self._clear_rows()
        folder = self.c.session.folder
        for b in reversed(range(k)):  # best first
            row = BucketRow(b, k, self.thumbs, folder, self.rows_widget)
            row.label_edited.connect(self._label_edited)
            row.open_image.connect(self._open)
            row.context_menu.connect(self._context_menu)
            row.list.viewport().installEventFilter(self._wheel)
            self.rows_layout.addWidget(row)
            self.bucket_rows.append(row)
        self.rows_layout.addStretch(1)

    # -- rendering the controller's ranking ------------------------------------------------------
    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if self.c.ranking.dirty:
            self.c.rank()

    def _on_stale(self) -> None:
        if self.isVisible():  # ranked when shown, not while hidden
            self.c.rank()

    def _on_failed(self, sentence: str) -> None:
        self.notes.setText(sentence)
        if self.c.ranking.cal is not None:
            self._select_method(self.c.ranking.cal.method)

    def _on_ranked(self) -> None:
        cal = self.c.ranking.cal
        if cal is None:
            return
        self._select_method(cal.method)
        self._ensure_rows(cal.k)
        self._fill_bucket_filter(cal)
        self._render()
        self.ranked.emit()

    def _render(self) -> None:
        """Draw the ranking through the filter: rows, histogram (the whole folder), status."""
        r = self.c.ranking
        cal, rows = r.cal, r.rows
        if cal is None or len(self.bucket_rows) != cal.k:
            return
        every: list[list[RankedImage]] = [[] for _ in range(cal.k)]
        shown: list[list[RankedImage]] = [[] for _ in range(cal.k)]
        for image in rows:
            every[image.bucket].append(image)
            if self.matches(image):
                shown[image.bucket].append(image)
        if self.order.currentData() == "uncertain" and self.c.session is not None:
            sd = self.c.session.live_sd()  # the live model's posterior SD of each score
            for b in shown:
                b.sort(key=lambda x: -sd.get(x.hash, -1.0))
        for row in self.bucket_rows:
            row.model.labels = list(cal.labels)
            row.set_rows(shown[row.bucket], cal.labels[row.bucket], len(every[row.bucket]))
            row.setVisible(bool(shown[row.bucket]) or not self.filtering())
        self.hist.set_data([len(b) for b in every], list(cal.labels))
        self.notes.setText(self.status_text())

    def status_text(self) -> str:
        """Plain sentences: how many images, which calibration method and why, other notes."""
        r = self.c.ranking
        cal, rows = r.cal, r.rows
        if cal is None:
            return ""
        n = len(rows)
        sentences = [f"{n} image{'s' if n != 1 else ''} ranked into buckets 0 (worst) to {cal.k - 1} (best)."]
        notes = [t.strip() for t in r.notes if t and t.strip()]
        reason = (cal.reason or "").strip()
        if reason and reason not in notes:
            notes.insert(0, reason)
        if not reason and not any(t.lower().startswith("method") for t in notes):
            notes.insert(0, f"The saved calibration is used: {cal.describe()}.")
        for t in notes:
            t = t.replace(" (see `joyq calibrate`)", "")
            sentences.append(t if t.endswith((".", "!", "?")) else t + ".")
        hand = sum(1 for x in rows if x.overridden)
        if hand:
            sentences.append(f"{hand} image{'s are' if hand != 1 else ' is'} in a bucket set by hand.")
        if self.filtering():
            k = sum(1 for x in rows if self.matches(x))
            sentences.append(f"{k} of them match the filter.")
        return " ".join(sentences)

    def _select_method(self, method: str) -> None:
        i = self.method.findData(method)
        if i >= 0:
            self.method.setCurrentIndex(i)

    def _method_chosen(self, index: int) -> None:
        method = self.method.itemData(index)
        cal = self.c.ranking.cal
        if cal is None or method != cal.method:
            self.c.recalibrate(method)

    def _label_edited(self, bucket: int, text: str) -> None:
        cal = self.c.ranking.cal
        if cal is None:
            return
        if self.c.set_bucket_label(bucket, text):
            new = self.c.ranking.cal
            self.hist.set_data(self.hist.counts, list(new.labels if new else ()))
            if new is not None:
                self._fill_bucket_filter(new)  # "Bucket 9: <new label>"
                row = self.bucket_rows[new.k - 1 - bucket]  # its tooltips and caption preview: the new label
                row.model.rows = [dataclasses.replace(r, label=new.labels[bucket]) for r in row.model.rows]
        elif not text.strip():
            self.bucket_rows[cal.k - 1 - bucket].label.setText(cal.labels[bucket])

    def commit_label_edits(self) -> None:
        """Save a label still being typed (an export opened before the field lost focus)."""
        cal = self.c.ranking.cal
        if cal is None:
            return
        for row in self.bucket_rows:
            text = row.label.text()
            if text.strip() and " ".join(text.split()) != cal.labels[row.bucket]:
                self._label_edited(row.bucket, text)
                cal = self.c.ranking.cal
                if cal is None:
                    return

    def scroll_to_bucket(self, bucket: int) -> None:
        for row in self.bucket_rows:
            if row.bucket == bucket:
                self.scroll_area.ensureWidgetVisible(row, 0, 0)
                row.list.setFocus()

    def _open(self, r: RankedImage | None) -> None:
        s = self.c.session
        if r is None or s is None:
            return
        dlg = ImageViewer(
            self.c.loader,
            r.hash,
            s.folder / r.path,
            f"{r.path}  \u00b7  bucket {r.bucket}: {r.label}  \u00b7  score {r.score:+.3f}",
            self,
        )
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.show()
        self.viewer = dlg

    # -- acting on one image ------------------------------------------------------------------
    def image_menu(self, r: RankedImage) -> QMenu:
        """Open / show in the file manager / copy the path / put in a bucket by hand."""
        m = QMenu(self)
        m.addAction("Open at full size", lambda: self._open(r))
        m.addAction("Show in file manager", lambda: self.show_in_file_manager(r))
        m.addAction("Copy path", lambda: self.copy_path(r))
        m.addSeparator()
        sub = m.addMenu("Put in bucket")
        cal = self.c.ranking.cal
        for b in reversed(range(cal.k if cal else 10)):
            a = sub.addAction(f"{b}: {cal.labels[b] if cal else ''}", partial(self.c.set_bucket_override, r.path, b))
            a.setCheckable(True)
            a.setChecked(r.overridden and r.bucket == b)
        clear = m.addAction("Back to the model's bucket", lambda: self.c.set_bucket_override(r.path, None))
        clear.setEnabled(r.overridden)
        return m

    def _context_menu(self, r: RankedImage | None, where) -> None:
        if r is not None:
            self.image_menu(r).exec(where)

    def show_in_file_manager(self, r: RankedImage) -> bool:
        s = self.c.session
        if s is None:
            return False
        return QDesktopServices.openUrl(QUrl.fromLocalFile(str((s.folder / r.path).parent)))

    def copy_path(self, r: RankedImage) -> None:
        s = self.c.session
        if s is not None:
            QGuiApplication.clipboard().setText(str(s.folder / r.path))

    def shutdown(self) -> None:
        self.thumbs.shutdown()
