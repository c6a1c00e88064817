"""Export dialogs: CSV (with a preview of the first rows, the same columns and bucket
numbers 0..9 as the file; an existing file is replaced only when the user says so),
captions (with a dry run that lists every file that would change, before anything is
written) and chosen images into a destination folder (copies, hard links or symbolic
links, with a dry run and undo). All run the core export functions on a worker thread."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...errors import Cancelled, JoyqError
from ...export import (
    apply_caption_export,
    apply_link_export,
    check_destination,
    csv_header,
    plan_caption_export,
    plan_link_export,
    undo_last_export,
    undo_last_link_export,
    write_csv,
)
from ...ranking import Calibration, RankedImage, bucket_counts, ranked_images
from ...store import Project
from ..controller import Controller
from ..util import undo_summary
from ..workers import Task

PREVIEW_ROWS = 500


def _table(headers: list[str], parent) -> QTableWidget:
    t = QTableWidget(0, len(headers), parent)
    t.setHorizontalHeaderLabels(headers)
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    t.verticalHeader().setVisible(False)
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    t.horizontalHeader().setStretchLastSection(True)
    return t


def _fill(t: QTableWidget, rows: list[list[str]]) -> None:
    t.setRowCount(len(rows))
    for i, row in enumerate(rows):
        for j, text in enumerate(row):
            item = QTableWidgetItem(text)
            item.setToolTip(text)
            t.setItem(i, j, item)
    t.resizeColumnsToContents()


def _oneline(text: str | None, limit: int = 120) -> str:
    if text is None:
        return "(no file)"
    t = text.replace("\r\n", "\u21b5").replace("\n", "\u21b5")
    return t if len(t) <= limit else t[: limit - 1] + "\u2026"


class _TaskDialog(QDialog):
    """A dialog that runs one task at a time with a progress bar and Cancel."""

    def __init__(self, controller: Controller, title: str, parent: QWidget | None = None):
        super().__init__(parent)
        if controller.session is None:
            raise JoyqError("Open a folder first.")
        self.c = controller
        self.session = controller.session
        self.folder = controller.session.folder
        self.task: Task | None = None
        self.setWindowTitle(title)
        self.progress = QProgressBar(self)
        self.progress.setVisible(False)
        self.status = QLabel(self)
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

    def run(self, name: str, job, on_done) -> None:
        if self.task is not None:
            return
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        task = Task(name, job, self)
        task.progress.connect(self._on_progress)
        task.succeeded.connect(on_done)
        task.failed.connect(self._on_failed)
        task.cancelled_.connect(lambda: self.status.setText("Cancelled; nothing was changed."))
        task.done.connect(lambda t=task: self._on_task_done(t))
        self.task = task
        self._set_busy(True)
        self.c.runner.start(task)

    def _on_progress(self, payload) -> None:
        done, total = payload
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)

    def _on_failed(self, sentence: str) -> None:
        self.status.setText(sentence)

    def _on_task_done(self, task) -> None:
        if self.task is not task:
            return
        self.task = None
        self.progress.setVisible(False)
        self._set_busy(False)

    def _set_busy(self, busy: bool) -> None:
        pass

    def reject(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task.wait(10000)
        super().reject()


class CsvExportDialog(_TaskDialog):
    def __init__(
        self,
        controller: Controller,
        cal: Calibration,
        rows: list[RankedImage] | None = None,
        parent: QWidget | None = None,
    ):
        super().__init__(controller, "Export CSV - JoyQuality Studio", parent)
        self.cal = cal
        self.rows = rows
        folder = self.folder
        self.path = QLineEdit(str(folder.parent / f"{folder.name}-quality.csv"), self)
        browse = QPushButton("Browse...", self)
        browse.clicked.connect(self._browse)
        self.min_bucket = QComboBox(self)
        self.min_bucket.addItem("All images", None)
        for b in reversed(range(cal.k)):
            self.min_bucket.addItem(f"Bucket {b} ({cal.labels[b]}) and better", b)
        self.min_bucket.currentIndexChanged.connect(self.preview)
        header = csv_header(cal.k)
        self.columns = [c for c in header if c not in ("hash", "model_version")]
        self.table = _table(self.columns, self)
        self.buttons = QDialogButtonBox(self)
        self.export_button = self.buttons.addButton("Export", QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.export_button.clicked.connect(self.export)
        self.buttons.rejected.connect(self.reject)
        pathrow = QHBoxLayout()
        pathrow.addWidget(self.path, 1)
        pathrow.addWidget(browse)
        form = QFormLayout()
        form.addRow("Save to", pathrow)
        form.addRow("Include", self.min_bucket)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(QLabel("Preview (best first):", self))
        lay.addWidget(self.table, 1)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addWidget(self.buttons)
        self.resize(760, 520)
        self.written = None
        self.preview()

    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export CSV", self.path.text(), "CSV files (*.csv)")
        if path:
            self.path.setText(path)

    def preview(self) -> None:
        if self.rows is None:
            self.rows = ranked_images(self.session.project, self.cal)
        mb = self.min_bucket.currentData()
        rows = [r for r in self.rows if mb is None or r.bucket >= mb]
        # the labels of this calibration (one edited a moment ago too), the file's bucket numbers
        _fill(
            self.table,
            [
                [
                    r.path,
                    f"{r.score:+.4f}",
                    f"{r.rank:.2f}",
                    str(r.bucket),
                    self.cal.labels[r.bucket],
                    "1" if getattr(r, "overridden", False) else "0",
                ][: len(self.columns)]
                for r in rows[:PREVIEW_ROWS]
            ],
        )
        more = f" (first {PREVIEW_ROWS} shown)" if len(rows) > PREVIEW_ROWS else ""
        self.status.setText(f"{len(rows)} rows would be written{more}.")

    def confirm_replace(self, out: Path) -> bool:
        """An existing file is replaced only when the user says so."""
        if not out.exists():
            return True
        answer = QMessageBox.question(
            self,
            "Replace the file? - JoyQuality Studio",
            f"{out} already exists. Replace it with the new ranking?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def export(self) -> None:
        out = Path(self.path.text()).expanduser()
        if not self.confirm_replace(out):
            self.status.setText(f"{out} was left as it was; choose another file name or confirm to replace it.")
            return
        folder, cal, mb = self.folder, self.cal, self.min_bucket.currentData()

        def job(report, cancelled):
            with Project(folder) as p:
                return write_csv(p, out, cal, mb)

        self.run("csv", job, self._done)

    def _done(self, report) -> None:
        self.written = report
        self.status.setText(f"Wrote {report.rows} rows to {report.path}.")

    def _set_busy(self, busy: bool) -> None:
        self.export_button.setEnabled(not busy)


MODES = (
    ("prepend", "Prepend: label first, then the caption (files created when missing)"),
    ("append", "Append: caption, then the label (files created when missing)"),
    ("replace", "Replace: swap an existing quality label only"),
    ("new", "New files only: create missing captions, leave existing ones alone"),
)


class _PlanApplyDialog(_TaskDialog):
    """Dry run first: the table lists every file the export would create or change; Apply
    writes exactly that plan (backed up, undoable); Undo takes the last one back. A subclass
    adds its options to ``form`` and says how to plan, apply and undo, and in which words."""

    noun = "files"  # what the export writes, for the status lines

    def __init__(self, controller: Controller, title: str, headers: list[str], undo_text: str, parent=None):
        super().__init__(controller, title, parent)
        self.plan = None
        self.table = _table(headers, self)
        self.preview_button = QPushButton("Preview (dry run)", self)
        self.preview_button.setToolTip("List what would change; nothing is written")
        self.preview_button.clicked.connect(self.preview)
        self.apply_button = QPushButton("Apply", self)
        self.apply_button.setToolTip("Write the previewed changes (backed up; undo restores them)")
        self.apply_button.clicked.connect(self.apply)
        self.apply_button.setEnabled(False)
        self.undo_button = QPushButton(undo_text, self)
        self.undo_button.clicked.connect(self.undo)
        self.form = QFormLayout()

    def _lay_out(self, width: int, height: int) -> None:
        close = QPushButton("Close", self)
        close.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addWidget(self.undo_button)
        buttons.addStretch(1)
        buttons.addWidget(self.preview_button)
        buttons.addWidget(self.apply_button)
        buttons.addWidget(close)
        lay = QVBoxLayout(self)
        lay.addLayout(self.form)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addLayout(buttons)
        self.resize(width, height)
        self.status.setText(f"Press Preview to see which {self.noun} would change; nothing is written until Apply.")

    # -- what a subclass gives ---------------------------------------------------------------
    def planner(self) -> Callable[[Project, Callable[[int, int], None]], Any]:
        """Read the options (on the GUI thread); return what plans with them (on the worker)."""
        raise NotImplementedError

    def applier(self) -> Callable[..., Any]:
        """``apply(project, plan, progress=)``: writes a plan, returns its manifest or None."""
        raise NotImplementedError

    def undoer(self) -> Callable[..., Any]:
        """``undo(project, progress=)``: takes the newest export of this kind back."""
        raise NotImplementedError

    def row(self, change) -> list[str]:
        raise NotImplementedError

    def planned_text(self, plan) -> str:
        raise NotImplementedError

    def undone_text(self, report) -> str:
        raise NotImplementedError

    # -- the steps ---------------------------------------------------------------------------
    def _invalidate(self, *_) -> None:
        self.plan = None
        self.apply_button.setEnabled(False)

    def preview(self) -> None:
        folder, plan = self.folder, self.planner()

        def job(report, cancelled):
            def progress(done, total):
                if cancelled():
                    raise Cancelled()
                report((done, total))

            with Project(folder) as p:
                return plan(p, progress)

        self.run("export-plan", job, self._planned)

    def _planned(self, plan) -> None:
        self.plan = plan
        rows = [self.row(c) for c in plan.changes[:PREVIEW_ROWS]]
        rows += [[rel, "left alone", why, ""] for rel, why in plan.skipped[: max(0, PREVIEW_ROWS - len(rows))]]
        _fill(self.table, rows)
        self.status.setText(self.planned_text(plan))
        self.apply_button.setEnabled(len(plan.changes) > 0)

    def apply(self) -> None:
        if self.plan is None:
            return
        folder, plan, write = self.folder, self.plan, self.applier()

        def job(report, cancelled):
            with Project(folder) as p:
                return write(p, plan, progress=lambda d, t: report((d, t)))

        self.run("export-apply", job, self._applied)

    def _applied(self, manifest) -> None:
        n = len(self.plan.changes) if self.plan else 0
        self._invalidate()
        self.status.setText(f"Wrote {n} {self.noun} (backups and manifest: {manifest}). Undo restores them.")

    def undo(self) -> None:
        folder, take_back = self.folder, self.undoer()

        def job(report, cancelled):
            with Project(folder) as p:
                return take_back(p, progress=lambda d, t: report((d, t)))

        self.run("export-undo", job, self._undone)

    def _undone(self, report) -> None:
        self._invalidate()
        self.status.setText(self.undone_text(report))

    def _set_busy(self, busy: bool) -> None:
        self.preview_button.setEnabled(not busy)
        self.undo_button.setEnabled(not busy)
        self.apply_button.setEnabled(not busy and self.plan is not None and len(self.plan.changes) > 0)


class CaptionExportDialog(_PlanApplyDialog):
    """Captions: the table lists every caption file that would be created or changed (before
    and after)."""

    noun = "caption files"

    def __init__(self, controller: Controller, cal: Calibration, parent: QWidget | None = None):
        headers = ["caption file", "action", "before", "after"]
        super().__init__(controller, "Export captions - JoyQuality Studio", headers, "Undo last export", parent)
        self.cal = cal
        self.mode = QComboBox(self)
        for key, text in MODES:
            self.mode.addItem(text, key)
        self.separator = QLineEdit(", ", self)
        self.separator.setToolTip("Between the label and the rest of the caption, e.g. ', ' or a newline (type \\n)")
        self.mode.currentIndexChanged.connect(self._invalidate)
        self.separator.textChanged.connect(self._invalidate)
        self.form.addRow("Mode", self.mode)
        self.form.addRow("Separator", self.separator)
        self._lay_out(900, 560)

    def separator_text(self) -> str:
        return self.separator.text().replace("\\n", "\n")

    def planner(self):
        cal, mode, sep = self.cal, self.mode.currentData(), self.separator_text()
        return lambda p, progress: plan_caption_export(p, cal, mode, sep, progress=progress)

    def applier(self):
        return apply_caption_export

    def undoer(self):
        return undo_last_export

    def row(self, c) -> list[str]:
        return [c.rel, c.action, _oneline(c.old_text), _oneline(c.new_text)]

    def planned_text(self, plan) -> str:
        return (
            f"Dry run: {plan.created} caption files would be created and {plan.modified} modified; "
            f"{plan.unchanged} need no change; {len(plan.skipped)} left alone. Nothing was written."
        )

    def undone_text(self, report) -> str:
        return undo_summary(report)


LINK_MODE_TEXT = (
    ("copy", "Copies (independent files)"),
    ("hardlink", "Hard links (no extra space; same file system only)"),
    ("symlink", "Symbolic links (point at the originals)"),
)


class FolderExportDialog(_TaskDialog):
    """Put chosen buckets (or images above a score) into a destination folder outside the
    image folder: a dry run lists what would be created; Apply creates exactly that (the
    originals are never moved or changed); Undo removes what the newest such export made."""

    def __init__(
        self,
        controller: Controller,
        cal: Calibration,
        rows: list[RankedImage] | None = None,
        parent: QWidget | None = None,
    ):
        super().__init__(controller, "Put images into a folder - JoyQuality Studio", parent)
        self.cal = cal
        self.plan = None
        self.applied = None
        folder = self.folder
        counts = bucket_counts(rows, cal.k) if rows is not None else None
        self.dest = QLineEdit(str(folder.parent / f"{folder.name}-chosen"), self)
        self.dest.textChanged.connect(self._invalidate)
        browse = QPushButton("Browse...", self)
        browse.clicked.connect(self._browse)
        self.by_bucket = QRadioButton("Buckets:", self)
        self.by_score = QRadioButton("Score at least:", self)
        self.by_bucket.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.by_bucket)
        group.addButton(self.by_score)
        self.by_bucket.toggled.connect(self._invalidate)
        self.buckets = QListWidget(self)
        for b in reversed(range(cal.k)):
            n = f" ({counts[b]} images)" if counts is not None else ""
            item = QListWidgetItem(f"{b}: {cal.labels[b]}{n}")
            item.setData(Qt.ItemDataRole.UserRole, b)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if b >= cal.k - 2 else Qt.CheckState.Unchecked)
            self.buckets.addItem(item)
        self.buckets.itemChanged.connect(self._invalidate)
        self.buckets.setMaximumHeight(180)
        self.min_score = QDoubleSpinBox(self)
        self.min_score.setRange(-1000.0, 1000.0)
        self.min_score.setDecimals(3)
        self.min_score.setSingleStep(0.1)
        top = [r.score for r in rows or () if r.bucket >= cal.k - 2]
        if top:  # start where the two best buckets start
            self.min_score.setValue(math.floor(min(top) * 1000) / 1000)
        self.min_score.valueChanged.connect(self._invalidate)
        self.mode = QComboBox(self)
        for key, text in LINK_MODE_TEXT:
            self.mode.addItem(text, key)
        self.mode.currentIndexChanged.connect(self._invalidate)
        self.table = _table(["image", "bucket", "what happens"], self)
        self.preview_button = QPushButton("Preview (dry run)", self)
        self.preview_button.setToolTip("List what would be created; nothing is written")
        self.preview_button.clicked.connect(self.preview)
        self.apply_button = QPushButton("Apply", self)
        self.apply_button.setToolTip("Create the previewed files (undo removes them again)")
        self.apply_button.clicked.connect(self.apply)
        self.apply_button.setEnabled(False)
        self.undo_button = QPushButton("Undo last export to a folder", self)
        self.undo_button.clicked.connect(self.undo)
        close = QPushButton("Close", self)
        close.clicked.connect(self.reject)
        destrow = QHBoxLayout()
        destrow.addWidget(self.dest, 1)
        destrow.addWidget(browse)
        form = QFormLayout()
        form.addRow("Destination folder", destrow)
        form.addRow(self.by_bucket, self.buckets)
        form.addRow(self.by_score, self.min_score)
        form.addRow("As", self.mode)
        buttons = QHBoxLayout()
        buttons.addWidget(self.undo_button)
        buttons.addStretch(1)
        buttons.addWidget(self.preview_button)
        buttons.addWidget(self.apply_button)
        buttons.addWidget(close)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addLayout(buttons)
        self.resize(820, 640)
        self.status.setText(
            "Choose what to put where, then Preview: nothing is written until Apply. The destination "
            "must be outside the image folder; the originals are never moved or changed."
        )

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Destination folder", self.dest.text())
        if path:
            self.dest.setText(path)

    def _invalidate(self, *_) -> None:
        self.plan = None
        self.apply_button.setEnabled(False)

    def chosen_buckets(self) -> list[int]:
        return [
            self.buckets.item(i).data(Qt.ItemDataRole.UserRole)
            for i in range(self.buckets.count())
            if self.buckets.item(i).checkState() == Qt.CheckState.Checked
        ]

    def selection(self) -> dict:
        if self.by_score.isChecked():
            return {"min_score": self.min_score.value()}
        return {"buckets": self.chosen_buckets()}

    def preview(self) -> None:
        folder, cal, mode, sel = self.folder, self.cal, self.mode.currentData(), self.selection()
        if "buckets" in sel and not sel["buckets"]:
            self.status.setText("Tick at least one bucket, or choose images by score.")
            return
        dest = Path(self.dest.text().strip()).expanduser()
        try:
            check_destination(self.session.project, dest)
        except JoyqError as e:
            self.status.setText(str(e))
            return

        def job(report, cancelled):
            def progress(done, total):
                if cancelled():
                    raise Cancelled()
                report((done, total))

            with Project(folder) as p:
                return plan_link_export(p, cal, dest, mode, progress=progress, **sel)

        self.run("folder-plan", job, self._planned)

    def _planned(self, plan) -> None:
        self.plan = plan
        rows = [[i.rel, f"{i.bucket}: {i.label}", f"create {i.target}"] for i in plan.items[:PREVIEW_ROWS]]
        rows += [[rel, "", "already there"] for rel in plan.unchanged[: max(0, PREVIEW_ROWS - len(rows))]]
        rows += [[rel, "", f"left alone: {why}"] for rel, why in plan.skipped[: max(0, PREVIEW_ROWS - len(rows))]]
        _fill(self.table, rows)
        what = dict(LINK_MODE_TEXT)[plan.mode].split(" (")[0].lower()
        self.status.setText(
            f"Dry run: {plan.selected} images chosen ({plan.selection}); {len(plan.items)} would be created in "
            f"{plan.dest} as {what}, {len(plan.unchanged)} are there already, {len(plan.skipped)} left alone. "
            "Nothing was written."
        )
        self.apply_button.setEnabled(len(plan.items) > 0)

    def apply(self) -> None:
        if self.plan is None:
            return
        folder, plan = self.folder, self.plan

        def job(report, cancelled):
            with Project(folder) as p:
                return apply_link_export(p, plan, progress=lambda d, t: report((d, t)))

        self.run("folder-apply", job, self._applied)

    def _applied(self, manifest) -> None:
        n = len(self.plan.items) if self.plan else 0
        dest = self.plan.dest if self.plan else ""
        self.applied = manifest
        self.plan = None
        self.apply_button.setEnabled(False)
        self.status.setText(
            f"Put {n} images into {dest}. The originals were not touched; Undo removes the files this export made."
        )

    def undo(self) -> None:
        folder = self.folder

        def job(report, cancelled):
            with Project(folder) as p:
                return undo_last_link_export(p, progress=lambda d, t: report((d, t)))

        self.run("folder-undo", job, self._undone)

    def _undone(self, report) -> None:
        self._invalidate()
        self.status.setText(undo_summary(report))

    def _set_busy(self, busy: bool) -> None:
        self.preview_button.setEnabled(not busy)
        self.undo_button.setEnabled(not busy)
        if busy:
            self.apply_button.setEnabled(False)
        else:
            self.apply_button.setEnabled(self.plan is not None and len(self.plan.items) > 0)


# -- issue 22: star ratings into XMP sidecars, and existing star ratings in --------------------
XMP_NAMING_TEXT = (
    ("auto", "Follow the sidecars already in the folder"),
    ("darktable", "IMG_1.JPG.xmp (darktable, digiKam)"),
    ("adobe", "IMG_1.xmp (Lightroom, Bridge, Capture One)"),
)


class XmpExportDialog(_PlanApplyDialog):
    """Stars into XMP sidecars: the dry run also says which naming, and why; only the rating
    and our keyword change."""

    noun = "sidecars"

    def __init__(self, controller: Controller, cal: Calibration, parent: QWidget | None = None):
        from PySide6.QtWidgets import QCheckBox

        headers = ["sidecar", "action", "stars", "bucket"]
        title = "Export star ratings (XMP) - JoyQuality Studio"
        super().__init__(controller, title, headers, "Undo last XMP export", parent)
        self.cal = cal
        self.naming = QComboBox(self)
        for key, text in XMP_NAMING_TEXT:
            self.naming.addItem(text, key)
        self.reject_bucket = QComboBox(self)
        self.reject_bucket.addItem("None", None)
        for b in range(cal.k - 1):
            self.reject_bucket.addItem(f"Buckets 0..{b} (up to {cal.labels[b]})", b)
        self.keyword = QCheckBox("Also write the keyword joyq|quality|BUCKET", self)
        for w in (self.naming, self.reject_bucket):
            w.currentIndexChanged.connect(self._invalidate)
        self.keyword.toggled.connect(self._invalidate)
        self.form.addRow("Sidecar names", self.naming)
        self.form.addRow("Mark as rejected", self.reject_bucket)
        self.form.addRow("", self.keyword)
        self._lay_out(820, 520)

    def planner(self):
        from ...export.xmp import plan_xmp_export, stars_mapping

        cal = self.cal
        naming, reject, keyword = self.naming.currentData(), self.reject_bucket.currentData(), self.keyword.isChecked()
        stars = stars_mapping(cal.k, None, reject)
        return lambda p, progress: plan_xmp_export(p, cal, naming, stars, keyword, progress=progress)

    def applier(self):
        from ...export.xmp import apply_xmp_export

        return apply_xmp_export

    def undoer(self):
        from ...export.xmp import undo_last_xmp_export

        return undo_last_xmp_export

    def row(self, c) -> list[str]:
        return [c.rel, c.action, str(c.stars), str(c.bucket)]

    def planned_text(self, plan) -> str:
        return (
            f"Dry run, naming {plan.naming} ({plan.why}): {plan.created} sidecars would be created and "
            f"{plan.modified} modified; {plan.unchanged} need no change; {len(plan.skipped)} left alone; "
            f"{plan.not_scored} images are not scored yet. Nothing was written."
        )

    def undone_text(self, report) -> str:
        return f"Undid the XMP export: {report.restored} sidecars restored, {report.deleted} created ones deleted" + (
            f"; {len(report.changed_since)} edited since were left alone." if report.changed_since else "."
        )


STAR_NAMES = {-1: "rejected", 1: "1 star", 2: "2 stars", 3: "3 stars", 4: "4 stars", 5: "5 stars"}


class StarImportDialog(_TaskDialog):
    """Existing star ratings in as comparisons (kind 'stars'), with the weight training gives
    them, and the current ranking's agreement with the held-out stars."""

    def __init__(self, controller: Controller, parent: QWidget | None = None):
        super().__init__(controller, "Import star ratings - JoyQuality Studio", parent)
        self.origin = QComboBox(self)
        for key, text in (
            ("both", "XMP sidecars, then ratings inside the images"),
            ("xmp", "XMP sidecars only"),
            ("embedded", "Ratings inside the images only (XMP, EXIF)"),
        ):
            self.origin.addItem(text, key)
        self.weight = QDoubleSpinBox(self)
        self.weight.setRange(0.5, 1.0)
        self.weight.setSingleStep(0.05)
        self.weight.setValue(1.0)
        self.weight.setToolTip("How much training trusts a star pair: 0.5 not at all, 1 as much as your click")
        self.import_button = QPushButton("Import", self)
        self.import_button.clicked.connect(self.start)
        close = QPushButton("Close", self)
        close.clicked.connect(self.reject)
        form = QFormLayout()
        form.addRow("Read", self.origin)
        form.addRow("Weight", self.weight)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.import_button)
        buttons.addWidget(close)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.progress)
        lay.addWidget(self.status, 1)
        lay.addLayout(buttons)
        self.resize(620, 320)
        self.imported = None
        self.status.setText(
            "Images with different stars become comparisons for training; one rated image in five is "
            "kept apart to measure how well the ranking agrees with your stars."
        )

    def start(self) -> None:
        from ...export.stars import import_star_ratings

        folder, origin, weight = self.folder, self.origin.currentData(), self.weight.value()

        def job(report, cancelled):
            with Project(folder) as p:
                return import_star_ratings(p, origin, weight, progress=lambda d, t: report((d, t)))

        self.run("stars-import", job, self._done)

    def _done(self, result) -> None:
        from ...export.stars import describe

        self.imported = result
        r = result.ratings
        per = ", ".join(f"{STAR_NAMES.get(s, s)}: {n}" for s, n in r.per_star().items())
        self.status.setText(
            f"{len(r.stars)} images have a rating ({per or 'none'}); {r.ours} written by this app were ignored; "
            f"{len(r.unreadable)} could not be read. Made {result.pairs} star pairs for training "
            f"(replacing {result.replaced}); {result.held_out} images held out. Agreement of the current "
            f"ranking with your held-out stars: {describe(result.agreement)}."
        )

    def _set_busy(self, busy: bool) -> None:
        self.import_button.setEnabled(not busy)
