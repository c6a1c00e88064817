"""The controller: the open project and every action on it, with no widgets.

The window and the views call its methods and render what its signals say (Qt's
model/view split: views render, the controller owns state, signals carry change).
Everything slow runs as a :class:`~joyq_studio.ui.workers.Task` on a worker thread, with
the core's progress and cancel callbacks: scanning and scoring, adopting a version,
training, ranking, undoing a caption export, and finding the compute device (which also
imports torch and transformers, so the window is up before they are).

Signals, all on the GUI thread:

* ``session_changed(Session | None)``: a folder was opened (the new session) or closed
  (None, sent before the old session's database closes). ``project_opening()`` comes
  before an open; ``project_opened()`` once it has started scoring.
* ``error(str)``, ``notice(str)``, ``info(str)``: one sentence for the message bar (an
  error, or good news) or for the status bar (transient).
* ``task_status(TaskStatus | None)``: the scan / score / adopt task for the status bar.
* ``busy_changed(str, bool)``, ``model_changed()``, ``device_detected(str, bool)``,
  ``unreadable_changed(int)``, ``scoring_finished()``, ``version_adopted(str)``.
* ``pairs_reseeded()``: new scores or a new selector (drop prefetched pairs);
  ``scores_updated(int)``: images newly scored while scoring runs.
* ``ranking_stale()``, ``ranking_message(str)``, ``ranked()``, ``ranking_failed(str)``:
  the calibrated ranking in :attr:`Controller.ranking`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal

from ..demo import make_demo_folder
from ..errors import JoyqError
from ..export import undo_latest_export
from ..images import same_content_note
from ..metrics import AGREEMENT_KEY
from ..ranking import (
    Calibration,
    RankedImage,
    calibrate_project,
    ensure_calibration,
    ranked_images,
    save_calibration,
    set_bucket_override,
    set_folder_label,
    with_folder_labels,
)
from ..store import Project, data_dir
from ..tastes import list_tastes, save_taste
from .imagecache import ImageLoader
from .session import Session
from .util import (
    add_recent_folder,
    demo_model_spec,
    error_sentence,
    format_seconds,
    is_version_path,
    looks_like_repo,
    model_label,
    undo_summary,
)
from .workers import Task, TaskRunner

if TYPE_CHECKING:
    from ..training import TrainConfig

DETECTING = "detecting..."  # the device text until the device task answers
DEMO_COUNT = 200
DEMO_SIZE = 512
SCORE_REFRESH_S = 0.5

ModelChooser = Callable[[str], "str | None"]
"""Asked when a folder's model is a Hugging Face repo that is not downloaded: the repo id
in, the model spec to use out (None: the user chose none, the folder is not opened)."""


@dataclass(frozen=True)
class TaskStatus:
    """The status bar's view of the scan / score / adopt task: ``total`` 0 = no known end."""

    label: str
    done: int = 0
    total: int = 0


@dataclass
class Ranking:
    """The folder's calibrated ranking, as the Rank view and the exports use it."""

    cal: Calibration | None = None
    rows: list[RankedImage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    dirty: bool = True  # scores changed since it was computed
    task: Task | None = None


class Controller(QObject):
    session_changed = Signal(object)  # Session | None
    project_opening = Signal()
    project_opened = Signal()
    error = Signal(str)
    notice = Signal(str)
    info = Signal(str)
    task_status = Signal(object)  # TaskStatus | None
    busy_changed = Signal(str, bool)
    model_changed = Signal()
    device_detected = Signal(str, bool)  # description, CUDA available
    unreadable_changed = Signal(int)
    scoring_finished = Signal()
    version_adopted = Signal(str)
    pairs_reseeded = Signal()
    scores_updated = Signal(int)
    ranking_stale = Signal()
    ranking_message = Signal(str)
    ranked = Signal()
    ranking_failed = Signal(str)

    def __init__(self, demo_count: int = DEMO_COUNT, demo_size: int = DEMO_SIZE, parent: QObject | None = None):
        super().__init__(parent)
        self.demo_count, self.demo_size = demo_count, demo_size
        self.session: Session | None = None
        self.runner = TaskRunner()  # the open project's tasks: cancelled (and made stale) when it closes
        self._app_tasks = TaskRunner()  # tasks of the app as a whole (the device), stopped at shutdown
        self.loader = ImageLoader(parent=self)
        self.ask_model: ModelChooser | None = None
        self.busy: set[str] = set()
        self.score_task: Task | None = None
        self.train_task: Task | None = None
        self.ranking = Ranking()
        self.status: TaskStatus | None = None
        self.device_text = DETECTING
        self.has_cuda = False
        self.last_error = ""
        self._last_refresh = 0.0

    # -- messages and state ------------------------------------------------------------------
    def report_error(self, text: str) -> None:
        self.last_error = text
        self.error.emit(text)

    def report_info(self, text: str) -> None:
        self.info.emit(text)

    def model_label(self) -> str:
        return model_label(self.session.model_spec if self.session else None)

    def busy_scoring(self) -> bool:
        return "score" in self.busy

    def set_busy(self, name: str, on: bool) -> None:
        (self.busy.add if on else self.busy.discard)(name)
        self.busy_changed.emit(name, on)

    def _set_status(self, status: TaskStatus | None) -> None:
        self.status = status
        self.task_status.emit(status)

    def detect_device(self) -> None:
        """Import torch and transformers and find the GPU on a worker thread (the window is
        already up); later model, scoring and training imports are then instant."""

        def job(report, cancelled):
            # heavy (torch, transformers): imported here, off the GUI thread
            from .. import scoring, training  # noqa: F401 - warm the import cache
            from ..model import describe_device, pick_device

            device = pick_device()
            return describe_device(device), device.type == "cuda"

        task = Task("device", job, self)
        task.succeeded.connect(lambda r: self._on_device(*r))
        task.failed.connect(lambda _: self._on_device("CPU", False))
        self._app_tasks.start(task)

    def _on_device(self, text: str, has_cuda: bool) -> None:
        self.device_text, self.has_cuda = text, has_cuda
        self.device_detected.emit(text, has_cuda)

    # -- opening and closing -------------------------------------------------------------------
    def open_demo(self) -> bool:
        """Generate the demo folder (once) in the data dir and open it with the demo model."""
        folder = data_dir() / "demo"
        if (folder / "pairs.json").exists():
            return self.open_folder(folder, demo_model_spec())
        self.report_info("Generating the demo folder...")
        count, size = self.demo_count, self.demo_size

        def job(report, cancelled):
            make_demo_folder(folder, count=count, seed=0, size=size)
            return folder

        task = Task("demo", job, self)
        task.succeeded.connect(lambda f: self.open_folder(f, demo_model_spec()))
        task.failed.connect(self.report_error)
        self.runner.start(task)
        return True

    def open_folder(self, folder: str | Path, model_spec: str | None = None) -> bool:
        """Open (or switch to) a folder: scan and score in the background; comparing starts
        as soon as two images are scored."""
        self.close_project()
        self.project_opening.emit()
        try:
            session = Session(folder, self)
        except JoyqError as e:
            self.report_error(str(e))
            return False
        spec = self._choose_model(model_spec or session.resolve_model_spec())
        if spec is None:
            session.close()
            self.report_info("No model chosen; the folder was not opened.")
            return False
        if not is_version_path(spec) and spec != session.base_model_spec():
            try:
                session.remember_base_model(spec)
            except JoyqError as e:
                self.report_error(str(e))
        session.model_spec = spec
        session.scores_changed.connect(self.mark_ranking_dirty)
        self.session = session
        self.ranking = Ranking()
        add_recent_folder(session.folder)
        self.session_changed.emit(session)
        self.model_changed.emit()
        self.start_scoring(spec)
        self.project_opened.emit()
        return True

    def _choose_model(self, spec: str) -> str | None:
        """``spec``, or what the user chose instead when it is a repo not downloaded yet."""
        if not looks_like_repo(spec) or self.ask_model is None:
            return spec
        from ..model import (
            is_downloaded,  # heavy (torch, transformers); imported by detect_device already
        )

        return spec if is_downloaded(spec) else self.ask_model(spec)

    def close_project(self) -> None:
        session = self.session
        if session is None:
            return
        self.runner.cancel_all()
        self.score_task = self.train_task = None
        self.ranking = Ranking()
        self.session = None
        self.session_changed.emit(None)  # views let go before the database closes
        session.close()
        session.deleteLater()
        self.loader.clear()
        self.busy.clear()
        self._set_status(None)
        self.unreadable_changed.emit(0)
        self.model_changed.emit()

    def shutdown(self) -> None:
        """Stop every task and close the project (the window is closing)."""
        self.runner.cancel_all()
        self._app_tasks.cancel_all()
        self.loader.shutdown()
        session, self.session = self.session, None
        if session is not None:
            self.session_changed.emit(None)  # late decode results must not reach a closed database
            session.close()

    # -- scanning and scoring -------------------------------------------------------------------
    def start_scoring(self, spec: str) -> None:
        """Scan the folder, load the model and score what is not scored yet (resumable)."""
        if self.session is None or self.busy_scoring():
            return
        folder = self.session.folder

        def job(report, cancelled):
            # heavy (torch, transformers): imported on the worker thread
            from ..model import load_model, model_id, pick_device
            from ..scoring import score_project
            from ..training.versions import head_of

            with Project(folder) as p:
                report(("scan", 0, 0), force=True)
                rep = p.scan(progress=lambda d, t: report(("scan", d, t)), cancel=cancelled)
                report(("scanned", rep), force=True)
                if cancelled():
                    return rep, None
                report(("loading", spec), force=True)
                model = load_model(spec)
                mid = model_id(model)
                p.set_current_model_key(mid.key)
                report(("model", spec, mid.key, mid.tower, head_of(model)), force=True)
                device = pick_device()
                small = model.embed_dim < 512
                cpus = os.cpu_count() or 1
                workers = 0 if small or device.type == "cpu" and cpus <= 2 else min(4, cpus)
                summary = score_project(
                    p,
                    model,
                    device=device,
                    batch_size=32,
                    workers=workers,
                    progress=lambda d, t, r: report(("score", d, t, r)),
                    cancel=cancelled,
                    on_estimate=lambda e: report(("estimate", e.sentence()), force=True),  # issue 23
                )
                return rep, summary

        task = Task("score", job, self)
        task.progress.connect(self._on_score_progress)
        task.succeeded.connect(self._on_scored)
        task.failed.connect(self.report_error)
        task.cancelled_.connect(lambda: self.report_info("Scoring cancelled; what was scored is kept."))
        task.done.connect(lambda t=task: self._on_score_done(t))
        self._start_score_task(task, "Scanning files...")

    def _start_score_task(self, task: Task, label: str) -> None:
        self.score_task = task
        self._set_status(TaskStatus(label))
        self.set_busy("score", True)
        self.runner.start(task)

    def _on_score_progress(self, msg: tuple) -> None:
        s = self.session
        if s is None:
            return
        kind = msg[0]
        if kind == "scan":
            _, d, t = msg
            self._set_status(TaskStatus("Scanning files...", d, t))
        elif kind == "scanned":
            rep = msg[1]
            s.scan_unreadable = list(rep.unreadable)
            s.reload_images()
            self.unreadable_changed.emit(len(s.unreadable()))
            if rep.total == 0:
                self.report_error(f"{s.folder}: no images found (looked for .jpg, .png, .webp, ... in all subfolders).")
            self.pairs_reseeded.emit()
        elif kind == "loading":
            self._set_status(TaskStatus(f"Loading {model_label(msg[1])}..."))
        elif kind == "model":
            _, spec, key, tower, head = msg
            s.set_model(spec, key, tower, head)
            self.model_changed.emit()
            self.pairs_reseeded.emit()
        elif kind == "estimate":  # issue 23: the folder's time, from its first 20 images
            self.report_info(msg[1][0].upper() + msg[1][1:] + "; Cancel keeps what is scored.")
        elif kind == "score":
            _, d, t, rate = msg
            eta = (t - d) / rate if rate else None
            self._set_status(
                TaskStatus(f"Scoring {d}/{t} images, {rate:.1f}/s, ETA {format_seconds(eta)}", d, max(1, t))
            )
            now = time.monotonic()
            if now - self._last_refresh >= SCORE_REFRESH_S:
                t0 = time.monotonic()
                newly = s.refresh_scores()
                self._last_refresh = now + (time.monotonic() - t0) * 2  # back off on huge folders
                self.scores_updated.emit(newly)

    def _on_scored(self, result: tuple) -> None:
        s = self.session
        if s is None:
            return
        rep, summary = result
        if summary is not None and summary.failed:
            s.reload_images()  # files that failed to decode leave the comparable set
        s.refresh_scores(rebuild=True)
        self.pairs_reseeded.emit()
        self.unreadable_changed.emit(len(s.unreadable()))
        if summary is not None:
            failed = f", {len(summary.failed)} could not be read" if summary.failed else ""
            same = same_content_note(s.project.file_hashes())  # issue 24: say when two files are one image
            self.report_info(
                f"{self.image_count()} images; scored {summary.scored} new in {summary.seconds:.1f} s{failed}."
                + (f" {same}" if same else "")
            )
        self.scoring_finished.emit()

    def _on_score_done(self, task: Task) -> None:
        if self.score_task is not task:
            return
        self.score_task = None
        self._set_status(None)
        self.set_busy("score", False)
        if self.session is not None:
            self.scores_updated.emit(self.session.refresh_scores())
            self.mark_ranking_dirty()

    def image_count(self) -> int:
        """Image files of the open folder, every path counted (files with the same bytes too),
        as the Rank view and every export count them; content identity is internal."""
        if self.session is None:
            return 0
        return len(self.session.project.file_hashes())

    def comparisons_added(self, n: int = 0) -> None:
        """Comparisons were stored behind the session's back (pre-labelling, an import):
        rebuild the pair selector from the store and refresh every count."""
        s = self.session
        if s is None:
            return
        s.refresh_scores(rebuild=True)
        self.pairs_reseeded.emit()
        s.changed.emit()
        if n:
            self.report_info(f"{n} comparison{'s' if n != 1 else ''} added.")

    def cancel_scoring(self) -> None:
        if self.score_task is not None:
            self.score_task.cancel()
            st = self.status or TaskStatus("")
            self._set_status(TaskStatus("Cancelling...", st.done, st.total))

    def rescore(self) -> None:
        if self.session is not None and self.session.model_spec:
            self.start_scoring(self.session.model_spec)

    # -- models ----------------------------------------------------------------------------------
    def use_model(self, spec: str) -> None:
        """Make ``spec`` this folder's base model (no personal version active) and rescore."""
        if self.session is None or self.busy_scoring():
            return
        try:
            self.session.remember_base_model(spec)
            self.session.project.set_active_version(None)
        except JoyqError as e:
            self.report_error(str(e))
            return
        self.session.model_spec = spec
        self.start_scoring(spec)

    def use_base_model(self) -> None:
        if self.session is None or self.busy_scoring():
            return
        try:
            self.session.project.set_active_version(None)
        except JoyqError as e:
            self.report_error(str(e))
            return
        spec = self.session.base_model_spec()
        self.session.model_spec = spec
        self.start_scoring(spec)

    def adopt_version(self, version_id: str) -> None:
        """Make a version active, rescore the folder (cached embeddings: fast) and re-seed
        pair selection."""
        if self.session is None or self.busy_scoring():
            return
        self._adopt(self.session.folder, lambda p: version_id, f"Switching to version {version_id}...")

    def use_live_model(self) -> bool:
        """Adopt the live model's head (one click): it is written as a head-only version on
        the current model's tower, made active and the folder rescored, so the ranking,
        calibration and exports use it; reversible like any version (Train: "Use selected
        version" / "Use base model"). False when there is nothing to adopt."""
        s = self.session
        if s is None or s.live is None or self.busy_scoring() or not s.model_spec:
            return False
        w, b = s.live.head()
        held = s.compare_stats()
        if held is None:
            return False
        spec = s.model_spec

        def metrics(a) -> dict:  # metrics.agreement, under its key (the old "accuracy" key kept for readers)
            return {
                AGREEMENT_KEY: a.value,
                "accuracy": a.value,
                "n": a.count,
                "n_decisive": a.count,
                "accuracy_low": a.low,
                "accuracy_high": a.high,
            }

        record = {
            "metrics_before": metrics(held.heldout_base),
            "metrics_after": metrics(held.heldout_live),
            "counts": {"train": s.live.n_fitted, "test": held.heldout_count, "images": s.live.n},
            "alpha": float(s.live.alpha),
        }

        def write(p: Project) -> str:
            from ..training.versions import save_head_version  # heavy (torch): on the worker thread

            return save_head_version(p, spec, w, b, mode="live", record=record)

        self._adopt(s.folder, write, "Saving the live model as a version...")
        return True

    def _adopt(self, folder, version_of: Callable[[Project], str], label: str) -> None:
        def job(report, cancelled):
            # heavy (torch): imported on the worker thread
            from ..model import pick_device
            from ..training import adopt
            from ..training.versions import version_head

            device = str(pick_device())
            with Project(folder) as p:
                version_id = version_of(p)
                adopt(
                    p, version_id, device=device, progress=lambda d, t, r: report(("score", d, t, r)), cancel=cancelled
                )
                v = p.version(version_id)
                assert v is not None  # adopt() just made it the active version
                p.set_current_model_key(v["model_key"])
                return {**v, "_head": version_head(v["path"])}

        task = Task("score", job, self)
        task.progress.connect(self._on_score_progress)
        task.succeeded.connect(self._on_adopted)
        task.failed.connect(self.report_error)
        task.done.connect(lambda t=task: self._on_score_done(t))
        self._start_score_task(task, label)

    def _on_adopted(self, v: dict) -> None:
        s = self.session
        if s is None:
            return
        s.set_model(v["path"], v["model_key"], v.get("tower") or s.tower, v.get("_head"))
        self.pairs_reseeded.emit()
        self.mark_ranking_dirty()
        self.model_changed.emit()
        self.version_adopted.emit(v["id"])
        self.report_info(f"Now using version {v['id']}.")

    # -- the user's library of tastes ---------------------------------------------------------
    def saved_tastes(self) -> list[dict]:
        """The user's named heads (``tastes_dir()``): name, path, tower key, and whether the
        open folder's tower is the same (then starting from it is a rescore, not a re-embedding)."""
        tower = self.session.tower if self.session is not None else None
        return [{**t, "matches": tower is not None and t["tower"] == tower} for t in list_tastes()]

    def save_taste(self, name: str) -> Path | None:
        """Save the adopted personal head under ``name`` in the user's library, so another
        folder can start from it. Head-only versions (quick training, the live model) only."""
        s = self.session
        if s is None:
            return None
        vid = s.project.active_version
        v = s.project.version(vid) if vid else None
        if v is None:
            self.report_error(
                "Adopt a personal model first (Train, or \u201cUse the live model\u201d in Compare): "
                "the base model is not a personal taste."
            )
            return None
        try:
            path = save_taste(Path(v["path"]), name, source=str(s.folder))
        except (OSError, ValueError) as e:
            self.report_error(error_sentence(e))
            return None
        self.notice.emit(
            f"Saved this folder's taste as \u201c{name.strip()}\u201d; another folder can start from it "
            "(Model \u2192 Start From a Saved Taste)."
        )
        return path

    def start_from_taste(self, path: str | Path) -> None:
        """Make a saved taste this folder's base model (no personal version active) and rescore:
        its head becomes the live model's prior; the folder's clicks are replayed on top of it."""
        self.use_model(str(path))

    def discard_version(self, version_id: str) -> bool:
        """Delete a trained version the user does not want; False (and an error) on failure."""
        if self.session is None:
            return False
        try:
            self.session.project.delete_version(version_id)
        except Exception as e:  # noqa: BLE001 - shown as one sentence, logged when unexpected
            self.report_error(error_sentence(e))
            return False
        return True

    # -- training --------------------------------------------------------------------------------
    def training_running(self) -> bool:
        return self.train_task is not None  # cleared by this task's own `done`, never by a stale one

    def start_training(self, cfg: TrainConfig) -> Task | None:
        """Train on the folder's comparisons from the current model; the caller connects to
        the task's progress, succeeded, failed, cancelled_ and done (errors are also reported
        here). None when a training already runs or no folder is open."""
        if self.train_task is not None or self.session is None:
            return None
        folder, spec = self.session.folder, self.session.model_spec

        def job(report, cancelled):
            from ..training import (
                train_project,  # heavy (torch): imported on the worker thread
            )

            with Project(folder) as p:
                return train_project(
                    p,
                    cfg,
                    cancel=cancelled,
                    start_spec=spec,
                    progress=lambda tp: report(tp, force=tp.eval is not None or tp.phase != "training"),
                )

        task = Task("train", job, self)
        task.failed.connect(self.report_error)
        task.done.connect(lambda t=task: self._on_training_done(t))
        self.train_task = task
        self.runner.start(task)
        self.set_busy("train", True)
        return task

    def cancel_training(self) -> bool:
        if self.train_task is None:
            return False
        self.train_task.cancel()
        return True

    def _on_training_done(self, task: Task) -> None:
        if self.train_task is not task:
            return
        self.train_task = None
        self.set_busy("train", False)

    # -- ranking ---------------------------------------------------------------------------------
    def mark_ranking_dirty(self) -> None:
        self.ranking.dirty = True
        self.ranking_stale.emit()

    def rank(self) -> None:
        """Load the saved calibration (calibrating once if needed) and rank the folder."""
        if self.session is None:
            return
        if self.session.n_scored() == 0:
            self.ranking_message.emit("Nothing is scored yet; the ranking appears once scoring has started.")
            self.ranking.dirty = True
            return
        folder = self.session.folder

        def job(report, cancelled):
            with Project(folder) as p:
                cal, notes = ensure_calibration(p)
                return cal, notes, ranked_images(p, cal)

        self._run_ranking(job)

    def recalibrate(self, method: str) -> None:
        """Refit the calibration with ``method`` ("a" or "b") on the held-out comparisons."""
        if self.session is None:
            return
        folder = self.session.folder
        labels = list(self.ranking.cal.labels) if self.ranking.cal is not None else None

        def job(report, cancelled):
            with Project(folder) as p:
                cal, notes = calibrate_project(p, method, labels=labels)
                save_calibration(p, cal)
                return cal, notes, ranked_images(p, cal)

        self._run_ranking(job)

    def _run_ranking(self, job) -> None:
        r = self.ranking
        if r.task is not None:
            r.dirty = True
            return
        r.dirty = False
        self.ranking_message.emit("Ranking...")
        task = Task("rank", job, self)
        task.succeeded.connect(self._on_ranked)
        task.failed.connect(self._on_ranking_failed)
        task.done.connect(lambda t=task: self._on_ranking_done(t))
        r.task = task
        self.runner.start(task)

    def _on_ranked(self, result: tuple) -> None:
        r = self.ranking
        r.cal, r.notes, r.rows = result
        self.ranked.emit()

    def _on_ranking_failed(self, sentence: str) -> None:
        self.ranking_failed.emit(sentence)
        self.report_error(sentence)

    def _on_ranking_done(self, task: Task) -> None:
        r = self.ranking
        if r.task is not task:
            return
        r.task = None
        if r.dirty:
            self.ranking_stale.emit()

    def set_bucket_label(self, bucket: int, text: str) -> bool:
        """Rename a bucket (the folder's labels, kept through recalibration and retraining:
        ``ranking.labels``); False when nothing was saved."""
        cal = self.ranking.cal
        if cal is None or self.session is None:
            return False
        if " ".join(text.split()) == cal.labels[bucket]:
            return False
        try:
            labels = set_folder_label(self.session.project, bucket, text, cal.k)
        except Exception as e:  # noqa: BLE001 - shown as one sentence, logged when unexpected
            self.report_error(error_sentence(e))
            return False
        self.ranking.cal = with_folder_labels(self.session.project, cal)
        self.ranking.rows = [
            dataclasses.replace(r, label=labels[r.bucket]) if r.bucket == bucket else r for r in self.ranking.rows
        ]
        return True

    def set_bucket_override(self, path: str, bucket: int | None) -> bool:
        """Put one image (path relative to the folder) in ``bucket`` by hand, or back in the
        model's bucket (None); kept through recalibration and retraining. Re-ranks."""
        if self.session is None:
            return False
        k = self.ranking.cal.k if self.ranking.cal is not None else 10
        try:
            set_bucket_override(self.session.project, path, bucket, k)
        except Exception as e:  # noqa: BLE001 - shown as one sentence, logged when unexpected
            self.report_error(error_sentence(e))
            return False
        name = path.rsplit("/", 1)[-1]
        self.report_info(
            f"{name} is now in bucket {bucket} (set by hand)."
            if bucket is not None
            else f"{name} is back in the model's bucket."
        )
        self.mark_ranking_dirty()
        return True

    # -- exports ---------------------------------------------------------------------------------
    def calibration(self) -> Calibration | None:
        """The ranking's calibration, else the saved one (calibrating once if needed)."""
        if self.session is None:
            return None
        if self.ranking.cal is not None:
            return self.ranking.cal
        try:
            cal, _ = ensure_calibration(self.session.project)
        except JoyqError as e:
            self.report_error(str(e))
            return None
        return cal

    def undo_caption_export(self) -> None:
        if self.session is None:
            return
        folder = self.session.folder

        def job(report, cancelled):
            with Project(folder) as p:
                return undo_latest_export(p)

        task = Task("caption-undo", job, self)
        task.succeeded.connect(lambda r: self.notice.emit(undo_summary(r)))
        task.failed.connect(self.report_error)
        self.runner.start(task)
