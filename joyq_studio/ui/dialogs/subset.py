"""Choose a diverse subset of the folder (issue 21): farthest-point selection on the stored
embeddings, run by the core (:func:`joyq_studio.subset.select_subset`, then
:func:`~joyq_studio.subset.save_subset`) on a worker thread with progress and cancel, as
`joyq subset` does. The subset becomes the folder's pool for pre-labelling (the pre-label
dialog's "from" choice), for the fixed-k pair source and for `joyq pairs --pool subset`; a
new one replaces it.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ...console import format_duration
from ...pairing.fixedk import default_tower
from ...store import Project
from ...subset import (
    SubsetReport,
    projected_seconds,
    save_subset,
    select_subset,
    subset_hashes,
    subset_info,
)
from ..workers import Task, TaskRunner
from .folder_task import FolderTaskDialog

INTRO = (
    "Farthest-point selection on the images' embeddings: it starts from one random image, then "
    "keeps adding the image least like any chosen so far, so the subset covers the whole folder "
    "with few near-duplicates. It becomes this folder's pool for pre-labelling (Model > Pre-label "
    "with an LLM: label new pairs from the diverse subset), for Model > Pairs From > Fixed-k "
    "Batches and for `joyq pairs --pool subset`; making a new one replaces it."
)
NO_EMBEDDINGS = (
    "This folder has no image embeddings yet, and the subset is chosen by them: let scoring finish "
    "(Model > Score Remaining Images), then choose the subset."
)
DEFAULT_COUNT = 500  # at most; half the embedded images on a small folder
DEFAULT_DIMS = 128


class SubsetDialog(FolderTaskDialog):
    """``subset_saved(n)`` fires after a subset of ``n`` images was stored."""

    subset_saved = Signal(int)

    def __init__(self, folder: str | Path, runner: TaskRunner | None = None, parent: QWidget | None = None):
        super().__init__(folder, runner, parent)
        self.report: SubsetReport | None = None
        self.setWindowTitle("Choose a Diverse Subset - JoyQuality Studio")

        intro = QLabel(INTRO, self)
        intro.setWordWrap(True)
        self.count = QSpinBox(self)
        self.count.setRange(1, 10_000_000)
        self.count.setSuffix(" images")
        self.seed = QSpinBox(self)
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setToolTip("Picks the random first image; the same seed gives the same subset")
        self.use_dims = QCheckBox("Select in", self)
        self.use_dims.setToolTip(
            "A random projection to fewer dimensions: faster on a large folder, a slightly less "
            "spread subset (`joyq bench subset` measures it). Off: the full embedding."
        )
        self.dims = QSpinBox(self)
        self.dims.setRange(1, 100_000)
        self.dims.setValue(DEFAULT_DIMS)
        self.dims.setSuffix(" random dimensions")
        self.dims.setEnabled(False)
        self.use_dims.toggled.connect(self.dims.setEnabled)
        self.sizes = QLabel(self)
        self.sizes.setObjectName("sizes")
        self.sizes.setWordWrap(True)
        self.current = QLabel(self)
        self.current.setObjectName("current")
        self.current.setWordWrap(True)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.FieldsStayAtSizeHint)
        form.addRow("Subset size", self.count)
        form.addRow("Seed", self.seed)
        dims_row = QHBoxLayout()
        dims_row.addWidget(self.use_dims)
        dims_row.addWidget(self.dims)
        dims_row.addStretch(1)
        form.addRow("Projection", dims_row)
        for w in (self.count, self.dims):
            w.valueChanged.connect(self._update_sizes)
        self.use_dims.toggled.connect(self._update_sizes)

        self.progress = QProgressBar(self)
        self.progress.setVisible(False)
        self.status = QLabel(self)
        self.status.setObjectName("status")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.run_button = QPushButton("Choose", self)
        self.run_button.setDefault(True)
        self.run_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button = QPushButton("Close", self)
        self.close_button.clicked.connect(self.reject)

        outer = QVBoxLayout(self)
        outer.addWidget(intro)
        outer.addLayout(form)
        outer.addWidget(self.sizes)
        outer.addWidget(self.current)
        outer.addWidget(self.progress)
        outer.addWidget(self.status)
        outer.addStretch(1)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.run_button)
        row.addWidget(self.cancel_button)
        row.addWidget(self.close_button)
        outer.addLayout(row)
        self.setMinimumSize(560, 400)
        self.resize(660, 430)
        self.refresh()

    # -- what the folder has ----------------------------------------------------------------
    def refresh(self) -> None:
        """Read the folder's sizes (readable, embedded, dimensions) and its current subset."""
        with Project(self.folder) as p:
            readable = [h for h, _ in p.image_paths()]
            self.tower = default_tower(p)
            embedded = p.embedded_hashes(self.tower) if self.tower else set()
            self.pool = sum(1 for h in readable if h in embedded)
            self.readable = len(readable)
            first = next((h for h in readable if h in embedded), None)
            self.embedding_dims = p.embeddings(self.tower, [first])[1].shape[1] if self.tower and first else 0
            info, current = subset_info(p), len(subset_hashes(p))
        self.has_embeddings = self.pool > 0
        if self.has_embeddings and not self.report:
            self.count.setValue(min(DEFAULT_COUNT, max(1, self.pool // 2)))  # a subset, not all
        self.run_button.setEnabled(self.has_embeddings and self.task is None)
        if not self.has_embeddings:
            self.status.setText(NO_EMBEDDINGS)
        if current and info:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(info.get("created", 0))))
            self.current.setText(
                f"Current subset: {current} images (seed {info.get('seed')}, made {when}); choosing again replaces it."
            )
        else:
            self.current.setText("No subset made yet: pre-labelling picks pairs among every image.")
        self._update_sizes()

    def _update_sizes(self) -> None:
        if not self.has_embeddings:
            self.sizes.setText(f"{self.readable} readable images, none with an embedding.")
            return
        k, n = self.count.value(), self.pool
        dims = self.dims.value() if self.use_dims.isChecked() and self.dims.value() < self.embedding_dims else None
        width = self.embedding_dims
        space = f"{dims} of the {width} embedding dimensions" if dims else f"all {width} embedding dimensions"
        text = f"Chooses {min(k, n)} of the {n} images with an embedding, in {space}."
        if k >= n:
            text = f"Takes all {n} images with an embedding ({k} is not below {n}), in farthest-point order."
        if self.readable > n:
            text += f" {self.readable - n} readable images have no embedding yet and are left out."
        secs = projected_seconds(n, min(k, n), dims or width)
        text += f" About {format_duration(secs)} on a 2-core computer (n \u00d7 k \u00d7 d)."
        self.sizes.setText(text)

    # -- the selection ----------------------------------------------------------------------
    def start(self) -> None:
        if self.task is not None or not self.has_embeddings:
            return
        folder, count, seed = self.folder, self.count.value(), self.seed.value()
        dims = self.dims.value() if self.use_dims.isChecked() else None

        def job(report, cancelled):
            with Project(folder) as p:
                rep = select_subset(
                    p,
                    default_tower(p),
                    count,
                    seed=seed,
                    dims=dims,
                    progress=lambda done, total: report((done, total)),
                    cancel=cancelled,
                )
                save_subset(p, rep)
                return rep

        task = Task("subset", job, self, 0.1)
        task.progress.connect(self._on_progress)
        task.succeeded.connect(self._done)
        task.failed.connect(self.status.setText)
        task.cancelled_.connect(lambda: self.status.setText("Cancelled; the folder's subset was left as it was."))
        task.done.connect(self._finished)
        self.task = task
        self.status.setText("Choosing...")
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.runner.start(task)

    def _on_progress(self, p) -> None:
        done, total = p
        self.progress.setRange(0, total)
        self.progress.setValue(done)
        self.status.setText(f"Chosen {done} of {total} images...")

    def _done(self, rep: SubsetReport) -> None:
        self.report = rep
        space = f"{rep.dims} random dimensions" if rep.dims else "the full embedding"
        took = (
            f"Took all {rep.pool} images with an embedding ({rep.requested} is not below {rep.pool})"
            if rep.took_all
            else f"Chose {len(rep.hashes)} of {rep.pool} images with an embedding"
        )
        radius = ""
        if math.isfinite(rep.radius):
            radius = f"; every other image lies within {rep.radius:.3f} of one chosen"
        self.status.setText(
            f"{took} in {rep.seconds:.1f} s ({space}, seed {rep.seed}){radius}. Saved as this folder's subset: "
            "pre-labelling can pick its pairs from it (Pre-label dialog: label new pairs from the diverse subset), "
            "and Pairs From > Fixed-k Batches does."
            + (f" {rep.without_embedding} images without an embedding were left out." if rep.without_embedding else "")
        )
        self.subset_saved.emit(len(rep.hashes))

    def _finished(self) -> None:
        self.task = None
        self.progress.setVisible(False)
        self.cancel_button.setEnabled(False)
        self.refresh_keep_status()

    def refresh_keep_status(self) -> None:
        text = self.status.text()
        self.refresh()
        self.status.setText(text)
