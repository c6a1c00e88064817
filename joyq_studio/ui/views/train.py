"""The Train panel: one big button with defaults derived from the data, live progress with
ETA and a loss / held-out accuracy plot, a before/after table, adopt or discard, and the
list of model versions for rollback. The controller runs the training on a worker thread
(the UI stays usable); this panel renders its task's progress and outcome.

Every held-out figure carries its count and 95% interval (Wilson for accuracy, bootstrap for
log loss and ECE); arrows and colours appear only where the paired before/after comparison
says the change is beyond noise, and below 30 held-out pairs the table says there are too
few to tell and about how many more clicks would narrow the accuracy to +-5 points."""

from __future__ import annotations

import datetime
import math
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ...compare.stats import Schedule, describe, more_clicks_sentence, stored_agreement
from ...metrics import BETTER, MIN_PAIRS_TO_TELL, TARGET_HALF_WIDTH, TOO_FEW, WORSE, format_accuracy, robustness_text
from ..controller import DETECTING, Controller
from ..util import format_seconds
from .plot import TrainPlot

METRIC_ROWS = (
    # label, key, higher is better, format
    ("Accuracy on held-out pairs", "accuracy", True, "pct"),
    ("Log loss (NLL)", "nll", False, "f3"),
    ("Calibration error (ECE)", "ece", False, "f3"),
    ("JPEG robustness", "jpeg_accuracy", True, "pct"),
    ("Low-res robustness", "lowres_accuracy", True, "pct"),
    ("Held-out pairs", "n", None, "int"),
)


def _fmt(v, kind: str) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if kind == "pct":
        return f"{100 * v:.1f}%"
    if kind == "int":
        return str(int(v))
    return f"{v:.3f}"


def _finite(*xs) -> bool:
    return all(isinstance(x, (int, float)) and math.isfinite(x) for x in xs)


def _num(x) -> float | None:
    """``x`` as a float when it is a finite number, else None."""
    return float(x) if _finite(x) else None


def metric_text(m: dict, key: str, kind: str) -> str:
    """One held-out figure with its count and 95% interval: accuracy as ``62.5% of 40
    (47-76%)`` (Wilson), log loss and ECE as ``0.612 (95%: 0.551-0.680)`` (bootstrap)."""
    v = m.get(key)
    if key == "accuracy":
        n = _num(m.get("n_decisive", m.get("n")))
        return format_accuracy(v, None if n is None else int(n), m.get("accuracy_low"), m.get("accuracy_high"))
    if key in ("jpeg_accuracy", "lowres_accuracy"):  # with its pair count, interval and "too few to tell"
        return robustness_text(m, key.removesuffix("_accuracy"))
    if key == "n":
        n, d = _num(m.get("n")), _num(m.get("n_decisive"))
        return _fmt(n, "int") + (f" ({int(d)} with a winner)" if n is not None and d is not None and d != n else "")
    text = _fmt(v, kind)
    lo, hi = m.get(f"{key}_low"), m.get(f"{key}_high")
    if text != "n/a" and _finite(lo, hi):
        text += f" (95%: {lo:.3f}\u2013{hi:.3f})"
    return text


def verdict_text(change: dict | None, after: dict, schedule: Schedule | None = None) -> str:
    """The paired before/after verdict in words; below 30 pairs: too few to tell, and how
    many more clicks would bring the accuracy interval to +-5 points."""
    n = _num((change or {}).get("n_decisive", after.get("n_decisive", after.get("n"))))
    more = _num(after.get("more_pairs_needed"))
    points = f"\u00b1{100 * TARGET_HALF_WIDTH:.0f} points"
    need = ""
    if more is not None and more > 0:
        clicks = more_clicks_sentence(int(more), schedule or Schedule(), "would narrow the accuracy interval to")
        need = f" {clicks[:1].upper()}{clicks[1:]} {points}."
    if change is None:
        return "No paired comparison was recorded for this version." + need
    if change.get("verdict") == TOO_FEW:
        nn = 0 if n is None else int(n)
        return (
            f"Too few to tell: {nn} held-out pair{'s' if nn != 1 else ''} with a winner; at least "
            f"{MIN_PAIRS_TO_TELL} are needed to tell a change from noise.{need}"
        )
    sentence = str(change.get("sentence") or change.get("verdict") or "")
    return (sentence[:1].upper() + sentence[1:]).rstrip(".") + "." + need


class TrainPanel(QWidget):
    trained = Signal(object)  # TrainResult

    def __init__(self, controller: Controller, parent: QWidget | None = None):
        super().__init__(parent)
        self.c = controller
        self.result = None  # the TrainResult under review (adopt or discard)
        self.summary = QLabel(self)
        self.summary.setWordWrap(True)
        self._build_modes()
        self._build_buttons()
        self._build_advanced()
        self._build_progress()
        self._build_results()
        self._build_versions()
        self._build_layout()
        controller.session_changed.connect(self._on_session_changed)
        controller.busy_changed.connect(self._on_busy_changed)
        controller.device_detected.connect(self._on_device)
        controller.version_adopted.connect(self._on_adopted)
        self._on_device(controller.device_text, controller.has_cuda)

    # -- building ------------------------------------------------------------------------
    def _build_modes(self) -> None:
        self.quick = QRadioButton("Quick: Bayesian personal head (seconds, any computer)", self)
        self.quick.setToolTip(
            "Fit the quality head on the cached image embeddings (frozen tower) as a Bayesian "
            "logistic regression: its prior is centred on the current head, with a strength "
            "chosen by your data, so a few clicks move it a little and many consistent clicks "
            "move it far. The same model as the live model in Compare."
        )
        self.reference = QRadioButton("Reference recipe (SGD head, as the original JoyQuality script)", self)
        self.reference.setToolTip(
            "Retrain the head with the original personal recipe (AdamW, one-cycle, early "
            "stopping on validation pairs), for parity with the reference"
        )
        self.full = QRadioButton("Full (whole vision tower, CUDA GPU)", self)
        self.quick.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.quick)
        group.addButton(self.reference)
        group.addButton(self.full)
        self.quick.toggled.connect(self._update_defaults)
        self.reference.toggled.connect(self._update_defaults)

    def _build_buttons(self) -> None:
        self.train_button = QPushButton("Train", self)
        self.train_button.setToolTip("Train a personal model on your comparisons (Ctrl+T)")
        f = self.train_button.font()
        f.setPointSizeF(f.pointSizeF() * 1.5)
        f.setBold(True)
        self.train_button.setFont(f)
        self.train_button.setMinimumHeight(48)
        self.train_button.setMinimumWidth(180)
        self.train_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setToolTip("Stop training; nothing is saved (Esc)")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        esc = QShortcut(QKeySequence(Qt.Key.Key_Escape), self, self.cancel)
        esc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)

    def _build_advanced(self) -> None:
        self.adv_toggle = QToolButton(self)
        self.adv_toggle.setText("Advanced")
        self.adv_toggle.setCheckable(True)
        self.adv_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.adv_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.adv_toggle.toggled.connect(self._toggle_advanced)
        self.advanced = QWidget(self)
        self.samples = QSpinBox(self)
        self.samples.setRange(0, 10_000_000)
        self.samples.setSingleStep(1000)
        self.batch = QSpinBox(self)
        self.batch.setRange(1, 65536)
        self.batch.setValue(256)
        self.batch.valueChanged.connect(self._update_defaults)
        self.lr = QDoubleSpinBox(self)
        self.lr.setDecimals(6)
        self.lr.setRange(0.0, 1.0)
        self.lr.setSingleStep(0.0005)
        self.schedule = QComboBox(self)  # filled by _fill_schedules (the list comes with torch)
        self.seed = QSpinBox(self)
        self.seed.setRange(0, 2**31 - 1)
        self.freeze = QSpinBox(self)
        self.freeze.setRange(0, 64)
        self.checkpointing = QCheckBox("Gradient checkpointing (less GPU memory, slower)", self)
        form = QFormLayout(self.advanced)
        form.addRow("Pairs seen in total", self.samples)
        form.addRow("Batch size (pairs)", self.batch)
        form.addRow("Peak learning rate", self.lr)
        form.addRow("Schedule", self.schedule)
        form.addRow("Seed", self.seed)
        form.addRow("Frozen lowest layers (full)", self.freeze)
        form.addRow("", self.checkpointing)
        self.advanced.setVisible(False)

    def _build_progress(self) -> None:
        self.progress = QProgressBar(self)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        self.eta = QLabel("", self)
        self.message = QLabel("", self)
        self.message.setWordWrap(True)
        self.plot = TrainPlot(self)

    def _build_results(self) -> None:
        self.results_box = QGroupBox("Result: before and after, on your held-out comparisons", self)
        self.table = QTableWidget(len(METRIC_ROWS), 2, self)
        self.table.setHorizontalHeaderLabels(["Before", "After"])
        self.table.setVerticalHeaderLabels([r[0] for r in METRIC_ROWS])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.table.setMinimumHeight(self.table.verticalHeader().length() + self.table.horizontalHeader().height() + 4)
        self.use_button = QPushButton("Use this model", self)
        self.use_button.setToolTip("Make the new model active, rescore the folder and re-seed pair selection")
        self.use_button.clicked.connect(self.use_result)
        self.discard_button = QPushButton("Discard", self)
        self.discard_button.setToolTip("Keep the current model; the new version is hidden from the list")
        self.discard_button.clicked.connect(self.discard_result)
        self.verdict = QLabel(self)
        self.verdict.setWordWrap(True)
        rl = QVBoxLayout(self.results_box)
        rl.addWidget(self.table)
        rl.addWidget(self.verdict)
        rl.addLayout(_right_aligned(self.discard_button, self.use_button))
        self.results_box.setVisible(False)

    def _build_versions(self) -> None:
        self.versions_box = QGroupBox("Model versions", self)
        self.versions = QTableWidget(0, 6, self)
        self.versions.setHorizontalHeaderLabels(["Version", "Created", "Mode", "Accuracy (95%)", "Change", "Status"])
        self.versions.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.versions.horizontalHeader().setStretchLastSection(True)
        self.versions.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.versions.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.versions.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.versions.verticalHeader().setVisible(False)
        self.rollback_button = QPushButton("Use selected version", self)
        self.rollback_button.setToolTip("Roll back (or forward) to the selected version and rescore")
        self.rollback_button.clicked.connect(self.use_selected)
        self.base_button = QPushButton("Use base model", self)
        self.base_button.setToolTip("Go back to the model you started from")
        self.base_button.clicked.connect(self.c.use_base_model)
        vl = QVBoxLayout(self.versions_box)
        vl.addWidget(self.versions)
        vl.addLayout(_right_aligned(self.base_button, self.rollback_button))

    def _build_layout(self) -> None:
        modes = QVBoxLayout()
        modes.addWidget(self.quick)
        modes.addWidget(self.reference)
        modes.addWidget(self.full)
        top = QHBoxLayout()
        top.addLayout(modes, 1)
        top.addWidget(self.train_button)
        prog = QHBoxLayout()
        prog.addWidget(self.progress, 1)
        prog.addWidget(self.eta)
        prog.addWidget(self.cancel_button)
        left = QVBoxLayout()
        left.addWidget(self.summary)
        left.addLayout(top)
        left.addWidget(self.adv_toggle, 0, Qt.AlignmentFlag.AlignLeft)
        left.addWidget(self.advanced)
        left.addLayout(prog)
        left.addWidget(self.message)
        left.addWidget(self.plot, 1)
        right = QVBoxLayout()
        right.addWidget(self.results_box)
        right.addWidget(self.versions_box, 1)
        lay = QHBoxLayout(self)
        lay.addLayout(left, 3)
        lay.addLayout(right, 2)

    # -- state ---------------------------------------------------------------------------
    def _on_session_changed(self, session) -> None:
        if session is None:
            self.reset()

    def reset(self) -> None:
        """Forget the previous project's run (the project was closed)."""
        self.result = None
        self.results_box.setVisible(False)
        self.plot.clear()
        self.message.setText("")
        self._reset_progress()
        self.cancel_button.setEnabled(False)
        self.versions.setRowCount(0)

    def _on_busy_changed(self, name: str, on: bool) -> None:
        if name != "train":
            self.refresh()

    def _on_device(self, text: str, has_cuda: bool) -> None:
        self.full.setEnabled(has_cuda)
        if has_cuda:
            self.full.setToolTip(
                "Finetune the whole SigLIP tower as well: better with many comparisons; needs a CUDA GPU"
            )
        elif text == DETECTING:
            self.full.setToolTip("Looking for a CUDA GPU...")
        else:
            self.full.setToolTip("No CUDA GPU was found; quick mode works on any computer.")

    def _on_adopted(self, version_id: str) -> None:
        self.refresh()
        self.message.setText(f"Now using version {version_id}; the folder was rescored.")

    @property
    def session(self):
        return self.c.session

    def running(self) -> bool:
        return self.c.training_running()

    def refresh(self) -> None:
        s = self.session
        if s is None:
            return
        from ...training import (
            MIN_PAIRS,  # heavy (torch); imported in the background at start-up
        )

        self._fill_schedules()
        n = s.project.comparison_count()
        n_test = len(s.project.comparisons(split="test"))
        text = (
            f"<b>{n}</b> comparisons ({n_test} held-out pair{'s' if n_test != 1 else ''} for testing). "
            f"Model: {self.c.model_label()}."
        )
        if n < MIN_PAIRS:
            text += f" Compare at least {MIN_PAIRS} pairs before training."
        self.summary.setText(text)
        self.train_button.setEnabled(not self.running() and n >= MIN_PAIRS and not self.c.busy_scoring())
        self._update_defaults()
        self._refresh_versions()

    def _update_defaults(self) -> None:
        s = self.session
        if s is None:
            return
        from ...training import (
            default_config,  # heavy (torch); imported in the background at start-up
        )

        n = s.project.comparison_count()
        cfg = default_config(int(n * 0.8), self.mode(), batch_size=self.batch.value())
        self.samples.setSpecialValueText(f"auto ({cfg.total_samples:,})")
        self.lr.setSpecialValueText(f"auto ({cfg.lr:g})")

    def mode(self) -> str:
        return "full" if self.full.isChecked() else "reference" if self.reference.isChecked() else "quick"

    def _fill_schedules(self) -> None:
        if self.schedule.count() == 0:
            from ...training import (
                SCHEDULES,  # heavy (torch); imported in the background at start-up
            )

            self.schedule.addItems(list(SCHEDULES))

    def _toggle_advanced(self, on: bool) -> None:
        self.advanced.setVisible(on)
        self.adv_toggle.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)

    def config(self):
        from ...training import (
            TrainConfig,  # heavy (torch); imported in the background at start-up
        )

        self._fill_schedules()
        return TrainConfig(
            mode=self.mode(),
            total_samples=self.samples.value() or None,
            batch_size=self.batch.value(),
            lr=self.lr.value() or None,
            schedule=self.schedule.currentText(),
            seed=self.seed.value(),
            freeze_layers=self.freeze.value() if self.mode() == "full" else 0,
            grad_checkpointing=self.checkpointing.isChecked() and self.mode() == "full",
        )

    # -- training --------------------------------------------------------------------------
    def start(self) -> None:
        if self.running() or self.session is None:
            return
        cfg = self.config()
        self.result = None
        self.results_box.setVisible(False)
        self.plot.clear()
        self.progress.setRange(0, 0)
        self.eta.setText("")
        self.message.setText("Preparing...")
        task = self.c.start_training(cfg)
        if task is None:
            return
        task.progress.connect(self._on_progress)
        task.succeeded.connect(self._on_done)
        task.failed.connect(self._on_failed)
        task.cancelled_.connect(self._on_cancelled)
        task.done.connect(self._finish)
        self.train_button.setEnabled(False)
        self.cancel_button.setEnabled(True)

    def cancel(self) -> None:
        if self.c.cancel_training():
            self.message.setText("Cancelling...")

    def _on_progress(self, tp) -> None:
        if tp.phase == "message":
            self.message.setText(tp.message)
            return
        total = max(1, tp.total_steps)
        self.progress.setRange(0, total)
        self.progress.setValue(min(tp.step, total))
        if tp.phase == "embedding":
            self.progress.setFormat(f"{tp.message or 'embedding'} %v/%m")
        else:
            self.progress.setFormat("step %v/%m")
            acc = tp.eval.get("accuracy") if tp.eval else None
            self.plot.add(tp.step, tp.loss, acc, total)
        self.eta.setText(f"ETA {format_seconds(tp.eta_s)}" if tp.eta_s is not None else "")

    def _on_done(self, result) -> None:
        self.result = result
        self.plot.set_history(result.history)
        self.message.setText(
            f"Trained version {result.version_id}. Compare before and after, then use it or discard it."
        )
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self.progress.setFormat("done")
        self.eta.setText("")
        self._show_table(result.before, result.after, (result.record or {}).get("change"))
        self.results_box.setVisible(True)
        self.use_button.setEnabled(True)
        self.discard_button.setEnabled(True)
        self.trained.emit(result)

    def _on_failed(self, sentence: str) -> None:
        self.message.setText("Training failed.")  # the sentence itself is in the message bar
        self._reset_progress()

    def _on_cancelled(self) -> None:
        self.message.setText("Training was cancelled; no model version was written.")
        self._reset_progress()

    def _reset_progress(self) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.eta.setText("")

    def _finish(self) -> None:
        self.cancel_button.setEnabled(False)
        self.refresh()

    def _schedule(self) -> Schedule:
        """Where the folder's clicks stand in the held-out schedule (the one "more clicks" rule)."""
        session = self.session
        return Schedule.of_project(session.project) if session is not None else Schedule()

    def _show_table(self, before: dict, after: dict, change: dict | None = None) -> None:
        """Before and after with counts and intervals; an arrow and a colour only on the
        figure the paired comparison found beyond noise (accuracy or log loss)."""
        verdict = (change or {}).get("verdict")
        by = (change or {}).get("by")
        marked = {"accuracy": "accuracy", "nll": "nll"}.get(by or "") if verdict in (BETTER, WORSE) else None
        for row, (_, key, _higher, kind) in enumerate(METRIC_ROWS):
            old = QTableWidgetItem(metric_text(before, key, kind))
            item = QTableWidgetItem(metric_text(after, key, kind))
            b, a = _num(before.get(key)), _num(after.get(key))
            if key == marked and a is not None and b is not None:
                better = verdict == BETTER
                item.setText(item.text() + ("  \u25b2" if a > b else "  \u25bc"))
                item.setForeground(QColor(40, 160, 70) if better else QColor(220, 60, 60))  # legible on light and dark
                item.setToolTip(f"{verdict} beyond noise")
            elif key.endswith("_accuracy"):
                item.setToolTip("On synthetic pairs made from the held-out images (clean beats degraded)")
            for col, cell in enumerate((old, item)):
                cell.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                self.table.setItem(row, col, cell)
        self.verdict.setText(verdict_text(change, after, self._schedule()))

    def confirm_adopt(self, record: dict | None) -> bool:
        """A version worse than its starting model beyond noise is adopted only when the
        user confirms, told by how much."""
        from ...training.versions import adoption_warning  # heavy (torch); imported at start-up

        warning = adoption_warning(record or {})
        if warning is None:
            return True
        answer = QMessageBox.question(
            self,
            "Use this model? - JoyQuality Studio",
            f"{warning[:1].upper() + warning[1:]}\n\nUse it anyway?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def use_result(self) -> None:
        if self.result is None:
            return
        vid = self.result.version_id
        if not self.confirm_adopt(self.result.record):
            self.message.setText(f"Version {vid} was not adopted; the current model is unchanged.")
            return
        self.use_button.setEnabled(False)
        self.discard_button.setEnabled(False)
        self.c.adopt_version(vid)
        self.message.setText(f"Using version {vid}: rescoring the folder...")

    def discard_result(self) -> None:
        if self.result is None:
            return
        vid = self.result.version_id
        self.c.discard_version(vid)
        self.result = None
        self.results_box.setVisible(False)
        self.message.setText(f"Discarded version {vid}; the current model is unchanged.")
        self.refresh()

    # -- versions ----------------------------------------------------------------------------
    def _refresh_versions(self) -> None:
        s = self.session
        versions = s.project.versions()
        active = s.project.active_version
        self.versions.setRowCount(len(versions))
        for row, v in enumerate(reversed(versions)):
            after: dict[str, Any] = v.get("metrics_after") or {}
            change = v.get("change") if isinstance(v.get("change"), dict) else None
            cells = [
                v["id"],
                datetime.datetime.fromtimestamp(v.get("created", 0)).strftime("%Y-%m-%d %H:%M"),
                v.get("mode", "?"),
                describe(stored_agreement(after)),
                str(change.get("verdict")) if change else "",
                "active" if v["id"] == active else "",
            ]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, v["id"])
                if change and col == 4:
                    item.setToolTip(verdict_text(change, after, self._schedule()))
                if v["id"] == active:
                    f = item.font()
                    f.setBold(True)
                    item.setFont(f)
                self.versions.setItem(row, col, item)
        busy = self.c.busy_scoring() or self.running()
        self.rollback_button.setEnabled(bool(versions) and not busy)
        self.base_button.setEnabled(active is not None and not busy)

    def use_selected(self) -> None:
        items = self.versions.selectedItems()
        if not items:
            self.c.report_error("Select a version in the list first.")
            return
        vid = items[0].data(Qt.ItemDataRole.UserRole)
        if vid == self.session.project.active_version:
            return
        if not self.confirm_adopt(self.session.project.version(vid)):
            return
        self.c.adopt_version(vid)


def _right_aligned(*buttons: QPushButton) -> QHBoxLayout:
    row = QHBoxLayout()
    row.addStretch(1)
    for b in buttons:
        row.addWidget(b)
    return row
