"""Choose the model when JoyQuality is not downloaded: download it (progress, cancel),
pick a local checkpoint, or use the small demo model."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLayout,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ...errors import JoyqError
from ...settings import DEFAULT_MODEL
from ..util import Eta, demo_model_spec, format_bytes, format_seconds
from ..workers import Task, TaskRunner

CHECKPOINT_FILTER = "Checkpoints (*.safetensors *.pt *.pth *.bin);;All files (*)"


def download_repo(repo_id: str, report, cancelled) -> str:
    """hub.ensure (the one download of the CLI and the app): progress in bytes of every
    needed file from the first report (so never 100% after the small config), cancel
    between 64 KiB reads, resume from the bytes on disk; returns the repo id once cached."""
    from ... import hub

    try:
        hub.ensure(repo_id, progress=lambda done, total: report((done, total)), cancel=cancelled)
    except hub.HubError as e:
        if e.kind == "offline-flag":
            raise JoyqError(SWITCHED_OFF_SENTENCE.format(repo=repo_id)) from None
        if e.kind == "no-network":
            raise JoyqError(OFFLINE_SENTENCE.format(repo=repo_id)) from None
        raise JoyqError(str(e).replace(hub.SKIP, APP_SKIP)) from None
    return repo_id


APP_SKIP = "choose a checkpoint you already have, or use the small demo model"

OFFLINE_SENTENCE = (
    "There is no connection to Hugging Face, so {repo} could not be downloaded; connect to the "
    "internet and press Download again (it continues where it stopped), or choose a checkpoint you "
    "already have, or use the small demo model."
)


SWITCHED_OFF_SENTENCE = (
    "Downloads are switched off on this computer (HF_HUB_OFFLINE is set), so {repo} could not "
    "be downloaded; start the app without HF_HUB_OFFLINE and press Download again, or choose a "
    "checkpoint you already have, or use the small demo model."
)


TEXT_WIDTH = 480


def _fit_height(label: QLabel) -> None:
    """Reserve the height a wrapped label needs at its narrowest, so no sentence is cut."""
    label.setMinimumHeight(label.heightForWidth(max(label.minimumWidth(), 1)))


class ModelDialog(QDialog):
    """Offers, for ``repo_id`` (JoyQuality by default): download it (or use it, when it is
    downloaded already), a local checkpoint file or folder, or the demo model. The choice
    is in ``spec`` once the dialog is accepted."""

    def __init__(self, runner: TaskRunner, device: str, repo_id: str | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        repo_id = repo_id or DEFAULT_MODEL
        self.setWindowTitle("Choose a model - JoyQuality Studio")
        self.runner, self.repo_id = runner, repo_id
        self.spec: str | None = None
        self.task: Task | None = None
        self.eta = Eta()
        cpu = device == "CPU"
        text = QLabel(
            f"<p>JoyQuality (<code>{repo_id}</code>, about 1.7 GB) is not downloaded yet.</p>"
            f"<p>Compute device: <b>{device}</b>."
            + (
                " On a CPU the full model takes about 18-110 s per image (measured on a 2-core computer), so a "
                "few thousand images take a day, and a GPU is 1,000 times faster or more; scoring first estimates "
                "the folder's time from its first 20 images; the small demo model is instant."
                if cpu
                else ""
            )
            + "</p>",
            self,
        )
        text.setWordWrap(True)
        text.setTextFormat(Qt.TextFormat.RichText)
        self.text = text
        self.download = QPushButton("Download JoyQuality", self)
        self.download.setToolTip("Download from Hugging Face into its usual cache; cancel at any time")
        self.download.clicked.connect(self.start_download)
        self.local_file = QPushButton("Choose a checkpoint file...", self)
        self.local_file.setToolTip(".safetensors or .pt state dict (save_pretrained or original train.py keys)")
        self.local_file.clicked.connect(self.choose_file)
        self.local_dir = QPushButton("Choose a checkpoint folder...", self)
        self.local_dir.setToolTip("A save_pretrained folder (config.json + *.safetensors) or a model version folder")
        self.local_dir.clicked.connect(self.choose_folder)
        self.demo = QPushButton("Use the small demo model", self)
        self.demo.setToolTip("No download, instant on a CPU; fine for trying the app")
        self.demo.clicked.connect(self.use_demo)
        self.cancel = QPushButton("Cancel", self)
        self.cancel.clicked.connect(self.reject)
        self.progress = QProgressBar(self)
        self.progress.setVisible(False)
        self.status = QLabel(self)
        self.status.setWordWrap(True)
        for label in (text, self.status):
            label.setMinimumWidth(TEXT_WIDTH)  # wrapped at a known width: the height it needs is known
        _fit_height(text)
        lay = QVBoxLayout(self)
        lay.setSizeConstraint(QLayout.SizeConstraint.SetMinimumSize)  # grows with a wrapped sentence
        lay.addWidget(text)
        for b in (self.download, self.local_file, self.local_dir, self.demo):
            lay.addWidget(b)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.cancel)
        lay.addLayout(row)
        self.setMinimumWidth(520)
        self.adjustSize()
        self._offer_downloaded()

    def _offer_downloaded(self) -> None:
        from ...model import (
            is_downloaded,  # heavy (torch, transformers); imported in the background at start-up
        )

        if is_downloaded(self.repo_id):
            self.download.setText("Use JoyQuality (downloaded)")
            self.download.clicked.disconnect()
            self.download.clicked.connect(lambda: self._accept(self.repo_id))

    def _accept(self, spec: str) -> None:
        self.spec = spec
        self.accept()

    def use_demo(self) -> None:
        self._accept(demo_model_spec())

    def choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a checkpoint", "", CHECKPOINT_FILTER)
        if path:
            self._accept(path)

    def choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose a checkpoint folder")
        if path:
            self._accept(path)

    def start_download(self) -> None:
        if self.task is not None:
            return
        repo = self.repo_id
        task = Task("download", lambda report, cancelled: download_repo(repo, report, cancelled), self, 0.2)
        task.progress.connect(self._on_progress)
        task.succeeded.connect(self._accept)
        task.failed.connect(self._on_failed)
        task.cancelled_.connect(
            lambda: self.status.setText("Download cancelled; press Download again to continue where it stopped.")
        )
        task.done.connect(self._on_done)
        self.task = task
        for b in (self.download, self.local_file, self.local_dir, self.demo):
            b.setEnabled(False)
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        self.status.setText("Connecting...")
        self.cancel.setText("Cancel download")
        self.runner.start(task)

    def _on_progress(self, payload) -> None:
        done, total = payload
        if total:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * done / total))
            self.status.setText(
                f"{format_bytes(done)} of {format_bytes(total)}, ETA {format_seconds(self.eta(done, total))}"
            )

    def _on_failed(self, sentence: str) -> None:
        self.status.setText(sentence)
        _fit_height(self.status)

    def _on_done(self) -> None:
        self.task = None
        self.progress.setVisible(False)
        self.cancel.setText("Cancel")
        for b in (self.download, self.local_file, self.local_dir, self.demo):
            b.setEnabled(True)

    def reject(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.status.setText("Cancelling the download...")
            return  # closes once the task stops (the button becomes Cancel again)
        super().reject()
