"""The main window: welcome screen or an open project (Compare / Train / Rank tabs), a
message bar for errors (one sentence, never a stack trace), and a status bar with the
background task's progress, ETA and Cancel, the model and the compute device."""

from __future__ import annotations

import os
import time
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QIcon, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..errors import JoyqError
from ..store import data_dir
from .compare import CompareView
from .imagecache import ImageLoader
from .model_dialog import ModelDialog, demo_model_spec, looks_like_repo
from .rank import RankView
from .session import Session
from .train import TrainPanel
from .util import Eta, add_recent_folder, default_model, format_seconds, settings
from .welcome import WelcomePage
from .workers import Task, TaskRunner

DEMO_COUNT = 200
DEMO_SIZE = 512
SCORE_REFRESH_S = 0.5

SHORTCUTS = """
<table cellspacing=4>
<tr><td colspan=2><b>Compare</b></td></tr>
<tr><td>Left or 1</td><td>left image is better</td></tr>
<tr><td>Right or 2</td><td>right image is better</td></tr>
<tr><td>Down or Space</td><td>skip this pair</td></tr>
<tr><td>T</td><td>tie (equally good)</td></tr>
<tr><td>Backspace or Ctrl+Z</td><td>undo (several steps)</td></tr>
<tr><td>F (hold)</td><td>flicker: swap the two images in place</td></tr>
<tr><td>Z / mouse wheel</td><td>zoom to 100% (synchronised pan; drag to pan)</td></tr>
<tr><td>Esc</td><td>back to fit</td></tr>
<tr><td>S</td><td>show / hide model scores</td></tr>
<tr><td colspan=2><b>Everywhere</b></td></tr>
<tr><td>Ctrl+O</td><td>open a folder</td></tr>
<tr><td>Ctrl+1 / 2 / 3</td><td>Compare / Train / Rank</td></tr>
<tr><td>Ctrl+T</td><td>train</td></tr>
<tr><td>Ctrl+E / Ctrl+Shift+E</td><td>export CSV / captions</td></tr>
<tr><td>Ctrl+W</td><td>close the folder</td></tr>
</table>
"""


def model_label(spec: str | None) -> str:
    if not spec:
        return "no model"
    if spec == default_model():
        return "JoyQuality"
    if spec == "demo":
        return "demo model"
    if spec == "tiny":
        return "tiny test model (random)"
    p = Path(spec)
    if (p / "version.json").exists():
        return f"personal version {p.name}"
    return p.name or spec


class MessageBar(QFrame):
    """One sentence at the top of the window; stays until closed or replaced."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setObjectName("messageBar")
        # translucent red reads well on light and dark themes alike
        self.setStyleSheet("#messageBar { background: rgba(220, 60, 60, 45); border: 1px solid rgba(220, 60, 60, 120); }")
        self.label = QLabel(self)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton(self)
        close.setText("\u2715")
        close.setToolTip("Dismiss")
        close.setAutoRaise(True)
        close.clicked.connect(self.hide)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 4, 4, 4)
        lay.addWidget(self.label, 1)
        lay.addWidget(close)
        self.hide()

    def show_text(self, text: str, error: bool = True) -> None:
        self.label.setText(("\u26a0  " if error else "") + text)
        colour = "220, 60, 60" if error else "60, 140, 220"
        self.setStyleSheet(f"#messageBar {{ background: rgba({colour}, 45); border: 1px solid rgba({colour}, 120); }}")
        self.show()


class MainWindow(QMainWindow):
    project_opened = Signal()
    scoring_finished = Signal()

    def __init__(self, icon: QIcon | None = None, demo_count: int = DEMO_COUNT, demo_size: int = DEMO_SIZE):
        super().__init__()
        self.setWindowTitle("JoyQuality Studio")
        if icon is not None:
            self.setWindowIcon(icon)
        self.device_text = "detecting..."
        self.demo_count, self.demo_size = demo_count, demo_size
        self.session: Session | None = None
        self.runner = TaskRunner()
        self.loader = ImageLoader(parent=self)
        self.busy: set[str] = set()
        self.score_task: Task | None = None
        self._last_refresh = 0.0
        self._eta = Eta()
        self.last_error = ""

        self.welcome = WelcomePage(self.device_text, icon, self)
        self.welcome.open_requested.connect(self.choose_folder)
        self.welcome.demo_requested.connect(self.open_demo)
        self.welcome.recent_requested.connect(self.open_folder)

        self.message = MessageBar(self)
        self.compare = CompareView(self.loader, self)
        self.compare.error.connect(self.show_error)
        self.train = TrainPanel(self, self)
        self.rank = RankView(self, self)
        self.tabs = QTabWidget(self)
        self.tabs.setDocumentMode(True)
        self.tabs.tabBar().setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.tabs.addTab(self.compare, "Compare")
        self.tabs.addTab(self.train, "Train")
        self.tabs.addTab(self.rank, "Rank")
        self.tabs.setTabToolTip(0, "Compare pairs (Ctrl+1)")
        self.tabs.setTabToolTip(1, "Train a personal model (Ctrl+2; Ctrl+T starts training)")
        self.tabs.setTabToolTip(2, "The folder by quality bucket, and exports (Ctrl+3)")
        self.tabs.currentChanged.connect(self._tab_changed)
        project = QWidget(self)
        pl = QVBoxLayout(project)
        pl.setContentsMargins(6, 6, 6, 0)
        pl.addWidget(self.tabs, 1)
        self.project_page = project

        central = QWidget(self)
        cl = QVBoxLayout(central)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.setSpacing(0)
        cl.addWidget(self.message)
        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.welcome)
        self.stack.addWidget(project)
        cl.addWidget(self.stack, 1)
        self.setCentralWidget(central)

        self._build_status_bar()
        self._build_menus()
        self._restore_settings()
        self._update_actions()
        self._detect_device()

    def _detect_device(self) -> None:
        """Import torch / transformers and find the GPU on a worker thread: the window is up at once."""

        def job(report, cancelled):
            from ..model import describe_device, pick_device

            return describe_device(pick_device())

        task = Task("device", job, self)
        task.succeeded.connect(self._on_device)
        task.failed.connect(lambda _: self._on_device("CPU"))
        self.runner.start(task)

    def _on_device(self, text: str) -> None:
        self.device_text = text
        self.device_status.setText(f"Device: {text}")
        self.welcome.device.setText(f"Compute device: <b>{text}</b>")

    # -- chrome ----------------------------------------------------------------------------
    def _build_status_bar(self) -> None:
        sb = self.statusBar()
        self.task_label = QLabel(self)
        self.task_progress = QProgressBar(self)
        self.task_progress.setMaximumWidth(240)
        self.task_progress.setTextVisible(True)
        self.task_cancel = QPushButton("Cancel", self)
        self.task_cancel.setToolTip("Stop the background task; everything finished so far is kept")
        self.task_cancel.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.task_cancel.clicked.connect(self.cancel_scoring)
        self.unreadable_button = QPushButton(self)
        self.unreadable_button.setFlat(True)
        self.unreadable_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.unreadable_button.setToolTip("Files that could not be read, with the reason")
        self.unreadable_button.clicked.connect(self.show_unreadable)
        self.model_status = QLabel(self)
        self.device_status = QLabel(f"Device: {self.device_text}", self)
        self.device_status.setToolTip("Where the model runs")
        for w in (self.task_label, self.task_progress, self.task_cancel):
            sb.addWidget(w)
            w.hide()
        sb.addPermanentWidget(self.unreadable_button)
        sb.addPermanentWidget(self.model_status)
        sb.addPermanentWidget(self.device_status)
        self.unreadable_button.hide()

    def _action(self, menu, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        a = QAction(text, self)
        if shortcut:
            a.setShortcut(QKeySequence(shortcut))
        if tip or shortcut:
            name = QKeySequence(shortcut).toString(QKeySequence.SequenceFormat.NativeText) if shortcut else ""
            a.setToolTip(f"{tip or text} ({name})" if name else tip)
            a.setStatusTip(tip)
        a.triggered.connect(slot)
        menu.addAction(a)
        self.addAction(a)
        return a

    def _build_menus(self) -> None:
        mb = self.menuBar()
        m = mb.addMenu("&File")
        self.act_open = self._action(m, "&Open Folder...", self.choose_folder, QKeySequence.StandardKey.Open)
        self.act_demo = self._action(m, "Try the &Demo", self.open_demo)
        self.recent_menu = m.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        m.addSeparator()
        self.act_csv = self._action(m, "Export &CSV...", self.export_csv, "Ctrl+E", "Export the ranking as CSV")
        self.act_captions = self._action(m, "Export Ca&ptions...", self.export_captions, "Ctrl+Shift+E",
                                         "Write quality labels into caption files")
        self.act_undo_export = self._action(m, "&Undo Last Caption Export", self.undo_caption_export)
        m.addSeparator()
        self.act_close = self._action(m, "&Close Folder", self.close_project, QKeySequence.StandardKey.Close)
        self._action(m, "&Quit", self.close, QKeySequence.StandardKey.Quit)

        m = mb.addMenu("&Edit")
        self.act_undo = self._action(m, "&Undo Comparison", self.compare.undo, QKeySequence.StandardKey.Undo,
                                     "Undo the last comparison (also Backspace)")

        m = mb.addMenu("&View")
        self.act_tabs = [self._action(m, name, lambda _=False, i=i: self.show_tab(i), f"Ctrl+{i + 1}")
                         for i, name in enumerate(("&Compare", "&Train", "&Rank"))]
        m.addSeparator()
        self.act_scores = self._action(m, "Show Model &Scores", self.compare.toggle_scores, None,
                                       "Show or hide the model's scores under the images (S)")
        self.act_unreadable = self._action(m, "Files That Could &Not Be Read...", self.show_unreadable)

        m = mb.addMenu("&Model")
        self.act_train = self._action(m, "&Train", self.train_now, "Ctrl+T", "Train a personal model now")
        self.act_choose_model = self._action(m, "&Choose Base Model...", self.choose_model)
        self.act_rescore = self._action(m, "&Score Remaining Images", self.rescore)

        m = mb.addMenu("&Help")
        self._action(m, "&Keyboard Shortcuts", self.show_shortcuts, QKeySequence.StandardKey.HelpContents)
        self._action(m, "&About", self.show_about)

    def _fill_recent(self) -> None:
        from .util import recent_folders

        self.recent_menu.clear()
        for f in recent_folders():
            a = self.recent_menu.addAction(f)
            a.triggered.connect(lambda _=False, f=f: self.open_folder(f))
        if self.recent_menu.isEmpty():
            self.recent_menu.addAction("(none)").setEnabled(False)

    def _update_actions(self) -> None:
        has = self.session is not None
        for a in (self.act_csv, self.act_captions, self.act_undo_export, self.act_close, self.act_undo,
                  self.act_scores, self.act_unreadable, self.act_train, self.act_choose_model, self.act_rescore,
                  *self.act_tabs):
            a.setEnabled(has)

    def _restore_settings(self) -> None:
        s = settings()
        geo = s.value("window/geometry")
        if geo is not None:
            self.restoreGeometry(geo)
        else:
            self.resize(1280, 860)
        state = s.value("window/state")
        if state is not None:
            self.restoreState(state)
        if s.value("compare/show_scores", False, type=bool):
            self.compare.toggle_scores()
        self.train.adv_toggle.setChecked(s.value("train/advanced", False, type=bool))

    def save_settings(self) -> None:
        s = settings()
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        s.setValue("train/advanced", self.train.adv_toggle.isChecked())
        s.setValue("compare/show_scores", self.compare.show_scores)
        s.sync()

    def show_tab(self, i: int) -> None:
        if self.session is not None:
            self.tabs.setCurrentIndex(i)

    def _tab_changed(self, i: int) -> None:
        w = self.tabs.widget(i)
        if w is self.compare:
            self.compare.setFocus()
        elif w is self.train:
            self.train.refresh()

    # -- messages --------------------------------------------------------------------------
    def show_error(self, text: str) -> None:
        self.last_error = text
        self.message.show_text(text, error=True)

    def show_info(self, text: str, timeout_ms: int = 8000) -> None:
        self.statusBar().showMessage(text, timeout_ms)

    def model_label(self) -> str:
        return model_label(self.session.model_spec if self.session else None)

    def busy_scoring(self) -> bool:
        return "score" in self.busy

    def set_busy(self, name: str, on: bool) -> None:
        (self.busy.add if on else self.busy.discard)(name)
        self.train.refresh() if self.session is not None and name != "train" else None

    # -- opening -----------------------------------------------------------------------------
    def choose_folder(self) -> None:
        start = str(self.session.folder) if self.session else str(Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of images", start)
        if folder:
            self.open_folder(folder)

    def open_demo(self) -> bool:
        """Generate the demo folder (once) in the data dir and open it with the demo model."""
        from ..demo import make_demo_folder

        folder = data_dir() / "demo"
        if not (folder / "pairs.json").exists():
            self.show_info("Generating the demo folder...")
            count, size = self.demo_count, self.demo_size

            def job(report, cancelled):
                make_demo_folder(folder, count=count, seed=0, size=size)
                return folder

            task = Task("demo", job, self)
            task.succeeded.connect(lambda f: self.open_folder(f, demo_model_spec()))
            task.failed.connect(self.show_error)
            self.runner.start(task)
            return True
        return self.open_folder(folder, demo_model_spec())

    def open_folder(self, folder, model_spec: str | None = None) -> bool:
        """Open (or switch to) a folder: scan and score in the background; comparing starts
        as soon as two images are scored."""
        self.close_project()
        self.message.hide()
        try:
            session = Session(folder, self)
        except JoyqError as e:
            self.show_error(str(e))
            return False
        spec = model_spec or session.resolve_model_spec()
        if looks_like_repo(spec):
            from ..model import is_downloaded

            if not is_downloaded(spec):
                dlg = ModelDialog(self.runner, self.device_text, spec, self)
                if dlg.exec() != QDialog.DialogCode.Accepted or not dlg.spec:
                    session.close()
                    self.show_info("No model chosen; the folder was not opened.")
                    return False
                spec = dlg.spec
        if not _is_version_path(spec) and spec != session.base_model_spec():
            try:
                session.remember_base_model(spec)
            except JoyqError as e:
                self.show_error(str(e))
        self.session = session
        session.model_spec = spec
        self.compare.set_session(session)
        session.scores_changed.connect(self.rank.mark_dirty)
        self.rank.dirty = True
        self.stack.setCurrentWidget(self.project_page)
        self.setWindowTitle(f"{session.folder.name} - JoyQuality Studio")
        self.model_status.setText(f"Model: {self.model_label()}")
        add_recent_folder(session.folder)
        self.welcome.refresh()
        self._update_actions()
        self.tabs.setCurrentIndex(0)
        self.compare.setFocus()
        self.start_scoring(spec)
        self.project_opened.emit()
        return True

    def close_project(self) -> None:
        if self.session is None:
            return
        self.runner.cancel_all()
        self.score_task = None
        self.train.reset()
        self.rank.reset()
        self.compare.set_session(None)
        self.session.close()
        self.session.deleteLater()
        self.session = None
        self.loader.clear()
        self.busy.clear()
        self.stack.setCurrentWidget(self.welcome)
        self.welcome.refresh()
        self.setWindowTitle("JoyQuality Studio")
        self.model_status.setText("")
        self.unreadable_button.hide()
        self._hide_task()
        self._update_actions()

    # -- scanning and scoring -------------------------------------------------------------------
    def start_scoring(self, spec: str) -> None:
        """Scan the folder, load the model and score what is not scored yet (resumable)."""
        from ..model import load_model, model_id, pick_device
        from ..scoring import score_project
        from ..store import Project

        if self.session is None or self.busy_scoring():
            return
        folder = self.session.folder

        def job(report, cancelled):
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
                report(("model", spec, mid.key, mid.tower), force=True)
                device = pick_device()
                small = model.embed_dim < 512
                workers = 0 if small or device.type == "cpu" and (os.cpu_count() or 1) <= 2 else min(4, os.cpu_count() or 1)
                summary = score_project(p, model, device=device, batch_size=32, workers=workers,
                                        progress=lambda d, t, r: report(("score", d, t, r)), cancel=cancelled)
                return rep, summary

        task = Task("score", job, self)
        task.progress.connect(self._on_score_progress)
        task.succeeded.connect(self._on_scored)
        task.failed.connect(self._on_score_failed)
        task.cancelled_.connect(lambda: self.show_info("Scoring cancelled; what was scored is kept."))
        task.done.connect(lambda t=task: self._on_score_done(t))
        self.score_task = task
        self._eta = Eta()
        self._show_task("Scanning files...")
        self.set_busy("score", True)
        self.runner.start(task)

    def _show_task(self, text: str) -> None:
        self.task_label.setText(text)
        self.task_progress.setRange(0, 0)
        for w in (self.task_label, self.task_progress, self.task_cancel):
            w.show()

    def _hide_task(self) -> None:
        for w in (self.task_label, self.task_progress, self.task_cancel):
            w.hide()

    def _on_score_progress(self, msg) -> None:
        if self.session is None:
            return
        kind = msg[0]
        if kind == "scan":
            _, d, t = msg
            self.task_label.setText("Scanning files...")
            if t:
                self.task_progress.setRange(0, t)
                self.task_progress.setValue(d)
        elif kind == "scanned":
            rep = msg[1]
            self.session.scan_unreadable = list(rep.unreadable)
            self.session.reload_images()
            self._update_unreadable()
            if rep.total == 0:
                self.show_error(f"{self.session.folder}: no images found (looked for .jpg, .png, .webp, ... "
                                "in all subfolders).")
            self.compare.reseed()
        elif kind == "loading":
            self.task_label.setText(f"Loading {model_label(msg[1])}...")
            self.task_progress.setRange(0, 0)
        elif kind == "model":
            _, spec, key, tower = msg
            self.session.set_model(spec, key, tower)
            self.model_status.setText(f"Model: {self.model_label()}")
            self._eta = Eta()
            self.compare.reseed()
        elif kind == "score":
            _, d, t, rate = msg
            self.task_progress.setRange(0, max(1, t))
            self.task_progress.setValue(d)
            eta = (t - d) / rate if rate else None
            self.task_label.setText(f"Scoring {d}/{t} images, {rate:.1f}/s, ETA {format_seconds(eta)}")
            now = time.monotonic()
            if now - self._last_refresh >= SCORE_REFRESH_S:
                t0 = time.monotonic()
                newly = self.session.refresh_scores()
                self._last_refresh = now + (time.monotonic() - t0) * 2  # back off on huge folders
                if newly and self.compare.current is None:
                    self.compare.advance()
                self.compare.refresh_status()

    def _on_scored(self, result) -> None:
        if self.session is None:
            return
        rep, summary = result
        if summary is not None and summary.failed:
            self.session.reload_images()  # files that failed to decode leave the comparable set
        self.session.refresh_scores(rebuild=True)
        self.compare.reseed()
        self._update_unreadable()
        if summary is not None:
            failed = f", {len(summary.failed)} could not be read" if summary.failed else ""
            self.show_info(f"{len(self.session.hashes)} images; scored {summary.scored} new in "
                           f"{summary.seconds:.1f} s{failed}.")
        self.scoring_finished.emit()

    def _on_score_failed(self, sentence: str) -> None:
        self.show_error(sentence)

    def _on_score_done(self, task) -> None:
        if self.score_task is not task:
            return
        self.score_task = None
        self._hide_task()
        self.set_busy("score", False)
        if self.session is not None:
            self.session.refresh_scores()
            self.compare.refresh_status()
            self.rank.mark_dirty()

    def cancel_scoring(self) -> None:
        if self.score_task is not None:
            self.score_task.cancel()
            self.task_label.setText("Cancelling...")

    def rescore(self) -> None:
        if self.session is not None and self.session.model_spec:
            self.start_scoring(self.session.model_spec)

    def _update_unreadable(self) -> None:
        if self.session is None:
            return
        n = len(self.session.unreadable())
        self.unreadable_button.setText(f"\u26a0 {n} could not be read")
        self.unreadable_button.setVisible(n > 0)

    def show_unreadable(self) -> None:
        if self.session is None:
            return
        rows = self.session.unreadable()
        dlg = QDialog(self)
        dlg.setWindowTitle("Files that could not be read - JoyQuality Studio")
        t = QTableWidget(len(rows), 2, dlg)
        t.setHorizontalHeaderLabels(["File", "Reason"])
        t.verticalHeader().setVisible(False)
        t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        t.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        t.horizontalHeader().setStretchLastSection(True)
        for i, (path, why) in enumerate(rows):
            t.setItem(i, 0, QTableWidgetItem(str(path)))
            t.setItem(i, 1, QTableWidgetItem(why))
        lay = QVBoxLayout(dlg)
        lay.addWidget(QLabel(f"{len(rows)} files could not be read; they are skipped and never block the rest.", dlg))
        lay.addWidget(t)
        dlg.resize(820, 400)
        self.unreadable_dialog = dlg
        dlg.show()

    # -- models ---------------------------------------------------------------------------------
    def choose_model(self) -> None:
        if self.session is None or self.busy_scoring():
            return
        from ..model import DEFAULT_MODEL, is_downloaded

        dlg = ModelDialog(self.runner, self.device_text, DEFAULT_MODEL, self)
        if is_downloaded(DEFAULT_MODEL):
            dlg.download.setText("Use JoyQuality (downloaded)")
            dlg.download.clicked.disconnect()
            dlg.download.clicked.connect(lambda: dlg._accept(DEFAULT_MODEL))
        if dlg.exec() == QDialog.DialogCode.Accepted and dlg.spec:
            try:
                self.session.remember_base_model(dlg.spec)
                self.session.project.set_active_version(None)
            except JoyqError as e:
                self.show_error(str(e))
                return
            self.session.model_spec = dlg.spec
            self.start_scoring(dlg.spec)

    def train_now(self) -> None:
        if self.session is None:
            return
        self.tabs.setCurrentWidget(self.train)
        self.train.refresh()
        if self.train.train_button.isEnabled():
            self.train.start()

    def adopt_version(self, version_id: str) -> None:
        """Make a version active, rescore the folder (cached embeddings: fast) and re-seed
        pair selection."""
        from ..model import pick_device
        from ..store import Project
        from ..training import adopt

        if self.session is None or self.busy_scoring():
            return
        folder = self.session.folder
        device = str(pick_device())

        def job(report, cancelled):
            with Project(folder) as p:
                adopt(p, version_id, device=device, progress=lambda d, t, r: report(("score", d, t, r)),
                      cancel=cancelled)
                v = p.version(version_id)
                p.set_current_model_key(v["model_key"])
                return v

        task = Task("score", job, self)
        task.progress.connect(self._on_score_progress)
        task.succeeded.connect(self._on_adopted)
        task.failed.connect(self.show_error)
        task.done.connect(lambda t=task: self._on_score_done(t))
        self.score_task = task
        self._show_task(f"Switching to version {version_id}...")
        self.set_busy("score", True)
        self.runner.start(task)

    def _on_adopted(self, v: dict) -> None:
        if self.session is None:
            return
        self.session.set_model(v["path"], v["model_key"], v.get("tower") or self.session.tower)
        self.compare.reseed()
        self.rank.mark_dirty()
        self.model_status.setText(f"Model: {self.model_label()}")
        self.train.refresh()
        self.train.message.setText(f"Now using version {v['id']}; the folder was rescored.")
        self.show_info(f"Now using version {v['id']}.")

    def use_base_model(self) -> None:
        if self.session is None or self.busy_scoring():
            return
        try:
            self.session.project.set_active_version(None)
        except JoyqError as e:
            self.show_error(str(e))
            return
        spec = self.session.base_model_spec()
        self.session.model_spec = spec
        self.start_scoring(spec)

    # -- exports --------------------------------------------------------------------------------
    def _calibration(self):
        if self.session is None:
            return None
        if self.rank.cal is None:
            from ..export import ensure_calibration

            try:
                cal, _ = ensure_calibration(self.session.project)
            except JoyqError as e:
                self.show_error(str(e))
                return None
            return cal
        return self.rank.cal

    def export_csv(self) -> None:
        from .export_dialogs import CsvExportDialog

        cal = self._calibration()
        if cal is None:
            return
        rows = self.rank.rows if self.rank.cal is cal and self.rank.rows else None
        try:
            dlg = CsvExportDialog(self, cal, rows, self)
        except JoyqError as e:
            self.show_error(str(e))
            return
        self.export_dialog = dlg
        dlg.show()

    def export_captions(self) -> None:
        from .export_dialogs import CaptionExportDialog

        cal = self._calibration()
        if cal is None:
            return
        dlg = CaptionExportDialog(self, cal, self)
        self.export_dialog = dlg
        dlg.show()

    def undo_caption_export(self) -> None:
        from ..export import undo_last_export
        from ..store import Project
        from .export_dialogs import undo_summary

        if self.session is None:
            return
        folder = self.session.folder

        def job(report, cancelled):
            with Project(folder) as p:
                return undo_last_export(p)

        task = Task("caption-undo", job, self)
        task.succeeded.connect(lambda r: self.message.show_text(undo_summary(r), error=False))
        task.failed.connect(self.show_error)
        self.runner.start(task)

    # -- help -------------------------------------------------------------------------------------
    def show_shortcuts(self) -> None:
        QMessageBox.information(self, "Keyboard shortcuts - JoyQuality Studio", SHORTCUTS)

    def show_about(self) -> None:
        from .. import __version__

        QMessageBox.about(self, "About JoyQuality Studio",
                          f"<h3>JoyQuality Studio {__version__}</h3><p>Personal image-quality models from your own "
                          f"comparisons, built on JoyQuality (SigLIP 2).</p><p>Compute device: {self.device_text}</p>")

    # -- shutdown ---------------------------------------------------------------------------------
    def closeEvent(self, event) -> None:  # noqa: N802
        self.save_settings()
        self.runner.cancel_all()
        self.loader.shutdown()
        self.rank.shutdown()
        if self.session is not None:
            self.compare.set_session(None)  # late decode results must not reach a closed database
            self.session.close()
            self.session = None
        super().closeEvent(event)


def _is_version_path(spec: str) -> bool:
    p = Path(spec)
    return p.is_dir() and (p / "version.json").exists()

