"""The main window: the welcome page or an open project (Compare / Train / Rank tabs), a
message bar for errors (one sentence, never a stack trace), a status bar with the
background task's progress, ETA and Cancel, the model and the compute device, and the
menus. Layout, menus and navigation only: the project's state and actions are the
:class:`~joyq_studio.ui.controller.Controller`'s."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QIcon, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from .. import __version__
from ..errors import JoyqError
from ..settings import DEFAULT_MODEL
from .controller import DEMO_COUNT, DEMO_SIZE, Controller, TaskStatus
from .dialogs.export import (
    CaptionExportDialog,
    CsvExportDialog,
    FolderExportDialog,
    StarImportDialog,
    XmpExportDialog,
)
from .dialogs.model import ModelDialog

if TYPE_CHECKING:
    from .dialogs.prelabel import PrelabelDialog
from .dialogs.unreadable import UnreadableDialog
from .session import Session
from .util import recent_folders, settings
from .views.compare import CompareView
from .views.message_bar import MessageBar
from .views.rank import RankView
from .views.train import TrainPanel
from .views.welcome import WelcomePage

#: The pair sources the Model menu offers (``compare.SOURCES``), in words.
PAIR_SOURCES = {
    "live": "The Live Model (the pair it learns most from)",
    "openskill": "The Model's Scores (OpenSkill)",
    "fixed-k": "Fixed-k Batches (every image in 4 pairs)",
}

TITLE = "JoyQuality Studio"

SHORTCUTS = """
<table cellspacing=4>
<tr><td colspan=2><b>Compare</b></td></tr>
<tr><td>Left or 1</td><td>left image is better</td></tr>
<tr><td>Right or 2</td><td>right image is better</td></tr>
<tr><td>Down or Space</td><td>skip this pair</td></tr>
<tr><td>T</td><td>tie (equally good)</td></tr>
<tr><td>Backspace or Ctrl+Z</td><td>undo (several steps)</td></tr>
<tr><td>F</td><td>flicker: swap the two images in place; tap again to swap back (or hold)</td></tr>
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


class MainWindow(QMainWindow):
    first_painted = Signal()  # the window is on screen: start what can wait

    def __init__(
        self,
        icon: QIcon | None = None,
        demo_count: int = DEMO_COUNT,
        demo_size: int = DEMO_SIZE,
        controller: Controller | None = None,
    ):
        super().__init__()
        self.setWindowTitle(TITLE)
        if icon is not None:
            self.setWindowIcon(icon)
        self.controller = c = controller or Controller(demo_count, demo_size, self)
        c.ask_model = self._ask_model
        self._painted = False
        self.export_dialog: QDialog | None = None
        self.unreadable_dialog: UnreadableDialog | None = None
        self.prelabel_dialog: PrelabelDialog | None = None
        self.subset_dialog: QDialog | None = None
        self._build_pages(icon)
        self._build_status_bar()
        self._build_menus()
        self._connect_controller()
        self._restore_settings()
        self._update_actions(False)
        # next event-loop turn: every first-paint listener runs before torch starts loading
        self.first_painted.connect(lambda: QTimer.singleShot(0, c.detect_device))

    # -- building ----------------------------------------------------------------------------
    def _build_pages(self, icon: QIcon | None) -> None:
        c = self.controller
        self.welcome = WelcomePage(c.device_text, icon, self)
        self.welcome.open_requested.connect(self.choose_folder)
        self.welcome.demo_requested.connect(c.open_demo)
        self.welcome.recent_requested.connect(c.open_folder)
        self.message = MessageBar(self)
        self.compare = CompareView(c, self)
        self.train = TrainPanel(c, self)
        self.rank = RankView(c, self)
        self.rank.export_csv_requested.connect(self.export_csv)
        self.rank.export_captions_requested.connect(self.export_captions)
        self.rank.export_folder_requested.connect(self.export_folder)
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
        self.project_page = QWidget(self)
        pl = QVBoxLayout(self.project_page)
        pl.setContentsMargins(6, 6, 6, 0)
        pl.addWidget(self.tabs, 1)
        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.welcome)
        self.stack.addWidget(self.project_page)
        central = QWidget(self)
        cl = QVBoxLayout(central)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.setSpacing(0)
        cl.addWidget(self.message)
        cl.addWidget(self.stack, 1)
        self.setCentralWidget(central)

    def _build_status_bar(self) -> None:
        sb = self.statusBar()
        self.task_label = QLabel(self)
        self.task_progress = QProgressBar(self)
        self.task_progress.setMaximumWidth(240)
        self.task_progress.setTextVisible(True)
        self.task_cancel = QPushButton("Cancel", self)
        self.task_cancel.setToolTip("Stop the background task; everything finished so far is kept")
        self.task_cancel.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.task_cancel.clicked.connect(self.controller.cancel_scoring)
        self.unreadable_button = QPushButton(self)
        self.unreadable_button.setFlat(True)
        self.unreadable_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.unreadable_button.setToolTip("Files that could not be read, with the reason")
        self.unreadable_button.clicked.connect(self.show_unreadable)
        self.model_status = QLabel(self)
        self.device_status = QLabel(f"Device: {self.controller.device_text}", self)
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
        c = self.controller
        mb = self.menuBar()
        m = mb.addMenu("&File")
        self.act_open = self._action(m, "&Open Folder...", self.choose_folder, QKeySequence.StandardKey.Open)
        self.act_demo = self._action(m, "Try the &Demo", c.open_demo)
        self.recent_menu = m.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        m.addSeparator()
        self.act_csv = self._action(m, "Export &CSV...", self.export_csv, "Ctrl+E", "Export the ranking as CSV")
        self.act_captions = self._action(
            m, "Export Ca&ptions...", self.export_captions, "Ctrl+Shift+E", "Write quality labels into caption files"
        )
        self.act_folder = self._action(
            m,
            "Put Images into a &Folder...",
            self.export_folder,
            None,
            "Copy or link chosen buckets into a folder of your choice",
        )
        self.act_xmp = self._action(  # issue 22
            m, "Export Star Ratings (&XMP)...", self.export_xmp, None, "Write stars into XMP sidecars"
        )
        self.act_import_stars = self._action(
            m, "&Import Star Ratings...", self.import_stars, None, "Turn the stars you already gave into comparisons"
        )
        self.act_undo_export = self._action(
            m, "&Undo Last Export", c.undo_caption_export, None, "Undo the newest caption export or export to a folder"
        )
        m.addSeparator()
        self.act_close = self._action(m, "&Close Folder", c.close_project, QKeySequence.StandardKey.Close)
        self._action(m, "&Quit", self.close, QKeySequence.StandardKey.Quit)

        m = mb.addMenu("&Edit")
        self.act_undo = self._action(
            m,
            "&Undo Comparison",
            self.compare.undo,
            QKeySequence.StandardKey.Undo,
            "Undo the last comparison (also Backspace)",
        )

        m = mb.addMenu("&View")
        self.act_tabs = [
            self._action(m, name, lambda _=False, i=i: self.show_tab(i), f"Ctrl+{i + 1}")
            for i, name in enumerate(("&Compare", "&Train", "&Rank"))
        ]
        m.addSeparator()
        self.act_scores = self._action(
            m,
            "Show Model &Scores",
            self.compare.toggle_scores,
            None,
            "Show or hide the model's scores under the images (S)",
        )
        self.act_unreadable = self._action(m, "Files That Could &Not Be Read...", self.show_unreadable)

        m = mb.addMenu("&Model")
        self.act_train = self._action(m, "&Train", self.train_now, "Ctrl+T", "Train a personal model now")
        self.act_choose_model = self._action(m, "&Choose Base Model...", self.choose_model)
        self.act_rescore = self._action(m, "&Score Remaining Images", c.rescore)
        self.act_save_taste = self._action(
            m,
            "Save This &Taste...",
            self.save_taste,
            None,
            "Save the adopted personal head under a name, for other folders",
        )
        self.tastes_menu = m.addMenu("Start From a Saved T&aste")
        self.tastes_menu.aboutToShow.connect(self._fill_tastes)
        self.sources_menu = m.addMenu("Pairs &From")
        self.sources_menu.aboutToShow.connect(self._fill_sources)
        self.act_forget = self._action(
            m,
            "Forget &Older Clicks (a Taste That Drifts)",
            self.toggle_forgetting,
            None,
            "The live model weighs recent clicks more (half-life 100 clicks); its held-out figure uses recent pairs",
        )
        self.act_forget.setCheckable(True)
        m.aboutToShow.connect(self._sync_model_menu)
        m.addSeparator()
        self.act_prelabel = self._action(
            m,
            "&Pre-label with an LLM...",
            self.prelabel,
            None,
            "Ask a vision LLM to label pairs (agreement check and cost estimate first)",
        )
        self.act_subset = self._action(  # issue 21
            m,
            "Choose a Diverse &Subset...",
            self.choose_subset,
            None,
            "Farthest-point selection on the embeddings: the pool pre-labelling can pick its pairs from",
        )

        m = mb.addMenu("&Help")
        self._action(m, "&Keyboard Shortcuts", self.show_shortcuts, QKeySequence.StandardKey.HelpContents)
        self._action(m, "&About", self.show_about)

    def _connect_controller(self) -> None:
        c = self.controller
        c.session_changed.connect(self._on_session_changed)
        c.project_opening.connect(self.message.hide)
        c.error.connect(lambda text: self.message.show_text(text, error=True))
        c.notice.connect(lambda text: self.message.show_text(text, error=False))
        c.info.connect(self.show_info)
        c.task_status.connect(self._on_task_status)
        c.model_changed.connect(self._on_model_changed)
        c.device_detected.connect(self._on_device)
        c.unreadable_changed.connect(self._on_unreadable)

    def save_taste(self) -> None:
        from PySide6.QtWidgets import QInputDialog

        if self.controller.session is None:
            return
        name, ok = QInputDialog.getText(self, "Save This Taste", "Name for this folder's personal taste:")
        if ok and name.strip():
            self.controller.save_taste(name)

    def _fill_tastes(self) -> None:
        """The user's saved tastes; one whose tower differs from this folder's is offered
        with a note (starting from it re-embeds the folder with its tower)."""
        self.tastes_menu.clear()
        c = self.controller
        tastes = c.saved_tastes() if c.session is not None else []
        for t in tastes:
            text = t["name"] if t["matches"] else f"{t['name']} (another tower: the folder is re-embedded)"
            a = self.tastes_menu.addAction(text)
            a.setToolTip(f"Saved from {t['saved_from'] or '?'}")
            a.triggered.connect(lambda _=False, p=t["path"]: c.start_from_taste(p))
        if not tastes:
            self.tastes_menu.addAction("(none saved yet)").setEnabled(False)

    def _sync_model_menu(self) -> None:
        s = self.controller.session
        self.act_forget.setChecked(s is not None and s.forgetting)

    def toggle_forgetting(self) -> None:
        s = self.controller.session
        if s is None:
            return
        on = not s.forgetting  # the folder's choice, whatever the menu showed
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            s.set_forgetting(on)
        finally:
            QApplication.restoreOverrideCursor()
        self.act_forget.setChecked(on)
        self.compare.reseed()

    def _fill_sources(self) -> None:
        """Where the next pairs come from (``compare.SOURCES``); the choice is saved per folder."""
        self.sources_menu.clear()
        s = self.controller.session
        for name, text in PAIR_SOURCES.items():
            a = self.sources_menu.addAction(text)
            a.setCheckable(True)
            a.setChecked(s is not None and s.pair_source == name)
            a.setEnabled(s is not None)
            a.triggered.connect(lambda _=False, n=name: self.set_pair_source(n))

    def set_pair_source(self, name: str) -> None:
        """Take the next pairs from the source called ``name`` (every click is replayed into it)."""
        s = self.controller.session
        if s is None:
            return
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            s.set_pair_source(name)
        except JoyqError as e:
            self.controller.report_error(str(e))
            return
        finally:
            QApplication.restoreOverrideCursor()
        self.compare.reseed()

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for f in recent_folders():
            a = self.recent_menu.addAction(f)
            a.triggered.connect(lambda _=False, f=f: self.controller.open_folder(f))
        if self.recent_menu.isEmpty():
            self.recent_menu.addAction("(none)").setEnabled(False)

    def _update_actions(self, has_project: bool) -> None:
        for a in (
            self.act_csv,
            self.act_captions,
            self.act_folder,
            self.act_xmp,
            self.act_import_stars,
            self.act_undo_export,
            self.act_close,
            self.act_undo,
            self.act_scores,
            self.act_unreadable,
            self.act_train,
            self.act_choose_model,
            self.act_rescore,
            self.act_prelabel,
            self.act_subset,
            self.act_forget,
            *self.act_tabs,
        ):
            a.setEnabled(has_project)

    # -- settings ----------------------------------------------------------------------------
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
        self.train.adv_toggle.setChecked(bool(s.value("train/advanced", False, type=bool)))

    def save_settings(self) -> None:
        s = settings()
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        s.setValue("train/advanced", self.train.adv_toggle.isChecked())
        s.setValue("compare/show_scores", self.compare.show_scores)
        s.sync()

    # -- the controller's news ----------------------------------------------------------------
    def _on_session_changed(self, session: Session | None) -> None:
        self._update_actions(session is not None)
        self.welcome.refresh()
        if session is None:
            self.stack.setCurrentWidget(self.welcome)
            self.setWindowTitle(TITLE)
            return
        self.stack.setCurrentWidget(self.project_page)
        self.setWindowTitle(f"{session.folder.name} - {TITLE}")
        self.tabs.setCurrentIndex(0)
        self.compare.setFocus()

    def _on_task_status(self, status: TaskStatus | None) -> None:
        widgets = (self.task_label, self.task_progress, self.task_cancel)
        if status is None:
            for w in widgets:
                w.hide()
            return
        self.task_label.setText(status.label)
        self.task_progress.setRange(0, status.total)
        self.task_progress.setValue(status.done)
        for w in widgets:
            w.show()

    def _on_model_changed(self) -> None:
        c = self.controller
        self.model_status.setText(f"Model: {c.model_label()}" if c.session is not None else "")

    def _on_device(self, text: str, has_cuda: bool) -> None:
        self.device_status.setText(f"Device: {text}")
        self.welcome.device.setText(f"Compute device: <b>{text}</b>")

    def _on_unreadable(self, n: int) -> None:
        self.unreadable_button.setText(f"\u26a0 {n} could not be read")
        self.unreadable_button.setVisible(n > 0)

    def show_info(self, text: str, timeout_ms: int = 8000) -> None:
        self.statusBar().showMessage(text, timeout_ms)

    # -- navigation --------------------------------------------------------------------------
    def show_tab(self, i: int) -> None:
        if self.controller.session is not None:
            self.tabs.setCurrentIndex(i)

    def _tab_changed(self, i: int) -> None:
        w = self.tabs.widget(i)
        if w is self.compare:
            self.compare.setFocus()
        elif w is self.train:
            self.train.refresh()

    def train_now(self) -> None:
        if self.controller.session is None:
            return
        self.tabs.setCurrentWidget(self.train)
        self.train.refresh()
        if self.train.train_button.isEnabled():
            self.train.start()

    # -- dialogs ------------------------------------------------------------------------------
    def choose_folder(self) -> None:
        s = self.controller.session
        start = str(s.folder) if s else str(Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of images", start)
        if folder:
            self.controller.open_folder(folder)

    def _ask_model(self, repo_id: str) -> str | None:
        dlg = ModelDialog(self.controller.runner, self.controller.device_text, repo_id, self)
        if dlg.exec() != QDialog.DialogCode.Accepted:
            return None
        return dlg.spec

    def choose_model(self) -> None:
        c = self.controller
        if c.session is None or c.busy_scoring():
            return
        spec = self._ask_model(DEFAULT_MODEL)
        if spec:
            c.use_model(spec)

    def show_unreadable(self) -> None:
        s = self.controller.session
        if s is None:
            return
        self.unreadable_dialog = UnreadableDialog(s.unreadable(), self)
        self.unreadable_dialog.show()

    def export_csv(self) -> None:
        c = self.controller
        self.rank.commit_label_edits()
        cal = c.calibration()
        if cal is None:
            return
        rows = c.ranking.rows if c.ranking.cal is cal and c.ranking.rows else None
        try:
            dlg = CsvExportDialog(c, cal, rows, self)
        except JoyqError as e:
            c.report_error(str(e))
            return
        self.export_dialog = dlg
        dlg.show()

    def export_folder(self) -> None:
        c = self.controller
        self.rank.commit_label_edits()
        cal = c.calibration()
        if cal is None:
            return
        rows = c.ranking.rows if c.ranking.cal is cal and c.ranking.rows else None
        try:
            dlg = FolderExportDialog(c, cal, rows, self)
        except JoyqError as e:
            c.report_error(str(e))
            return
        self.export_dialog = dlg
        dlg.show()

    def prelabel(self) -> QDialog | None:
        """Pre-label pairs with a vision LLM; the labels it adds refresh the counts and the
        pair selector."""
        c = self.controller
        if c.session is None:
            return None
        from .dialogs.prelabel import PrelabelDialog

        dlg = PrelabelDialog(c.session.folder, c.runner, self)
        dlg.labels_added.connect(c.comparisons_added)
        dlg.labels_added.connect(lambda _n: self.train.refresh())
        self.export_dialog = self.prelabel_dialog = dlg
        dlg.show()
        return dlg

    def choose_subset(self) -> QDialog | None:
        """Choose the folder's diverse subset; an open pre-label dialog offers it as its pool."""
        c = self.controller
        if c.session is None:
            return None
        from .dialogs.subset import SubsetDialog

        dlg = SubsetDialog(c.session.folder, c.runner, self)
        dlg.subset_saved.connect(lambda _n: self._subset_saved())
        self.subset_dialog = dlg
        dlg.show()
        return dlg

    def _subset_saved(self) -> None:
        pre = self.prelabel_dialog
        if pre is not None and pre.isVisible():
            pre.refresh_pool()
        s = self.controller.session
        if s is not None and s.pair_source == "fixed-k":  # its batches come from the subset
            s.set_pair_source("fixed-k")

    def export_captions(self) -> None:
        c = self.controller
        self.rank.commit_label_edits()
        cal = c.calibration()
        if cal is None:
            return
        dlg = CaptionExportDialog(c, cal, self)
        self.export_dialog = dlg
        dlg.show()

    def export_xmp(self) -> None:
        c = self.controller
        self.rank.commit_label_edits()
        cal = c.calibration()
        if cal is None:
            return
        self._show_dialog(lambda: XmpExportDialog(c, cal, self))

    def import_stars(self) -> None:
        self._show_dialog(lambda: StarImportDialog(self.controller, self))

    def _show_dialog(self, make) -> None:
        try:
            dlg = make()
        except JoyqError as e:
            self.controller.report_error(str(e))
            return
        self.export_dialog = dlg
        dlg.show()

    def show_shortcuts(self) -> None:
        QMessageBox.information(self, f"Keyboard shortcuts - {TITLE}", SHORTCUTS)

    def show_about(self) -> None:
        QMessageBox.about(
            self,
            f"About {TITLE}",
            f"<h3>{TITLE} {__version__}</h3><p>Personal image-quality models from your own "
            f"comparisons, built on JoyQuality (SigLIP 2).</p>"
            f"<p>Compute device: {self.controller.device_text}</p>",
        )

    # -- painting and shutdown -----------------------------------------------------------------
    def paintEvent(self, event) -> None:  # noqa: N802 - Qt naming
        super().paintEvent(event)
        if not self._painted:
            self._painted = True
            self.first_painted.emit()

    def closeEvent(self, event) -> None:  # noqa: N802
        self.save_settings()
        self.rank.shutdown()
        self.controller.shutdown()
        super().closeEvent(event)
