"""Small helpers shared by the window, the controller and the views: formatting, settings,
error sentences, model names."""

from __future__ import annotations

import logging
import math
import time
import traceback
from pathlib import Path

from PySide6.QtCore import QSettings

from ..errors import JoyqError
from ..export.xmp import files_word
from ..resources import DEMO_MODEL_DIR
from ..settings import DEFAULT_MODEL
from ..store import data_dir
from .logfile import install_log_file

log = logging.getLogger("joyq_studio.ui")

ORG = "JoyQuality"
APP = "JoyQuality Studio"
MAX_RECENT = 8


def settings() -> QSettings:
    """Persistent settings: an ini file in the data dir (follows $JOYQ_DATA_DIR, so tests
    and portable installs keep their settings with their data)."""
    path = data_dir() / "settings.ini"
    path.parent.mkdir(parents=True, exist_ok=True)
    return QSettings(str(path), QSettings.Format.IniFormat)


def recent_folders() -> list[str]:
    value = settings().value("recent", [])
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    return [str(v) for v in items if v]


def add_recent_folder(folder: str | Path) -> None:
    folder = str(folder)
    items = [f for f in recent_folders() if f != folder]
    s = settings()
    s.setValue("recent", [folder, *items][:MAX_RECENT])
    s.sync()


def remove_recent_folder(folder: str | Path) -> None:
    s = settings()
    s.setValue("recent", [f for f in recent_folders() if f != str(folder)])
    s.sync()


def error_sentence(exc: BaseException) -> str:
    """One sentence for the window: JoyqError messages as they are; anything else is a bug,
    logged with its traceback to the log file, and shown as one line that names that file."""
    if isinstance(exc, JoyqError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "Out of memory; close other programs or use a smaller model and try again."
    path = install_log_file()
    log.error("unexpected error:\n%s", "".join(traceback.format_exception(exc)))
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    where = f"details are in the log file {path}" if path else "details were printed to the console"
    return f"Unexpected error ({type(exc).__name__}{': ' + text if text else ''}); {where}."


def demo_model_spec() -> str:
    """The small demo model when it ships with this installation, else the tiny random one."""
    return "demo" if DEMO_MODEL_DIR.exists() else "tiny"


def looks_like_repo(spec: str) -> bool:
    """A Hugging Face repo id (``org/name``) rather than a local file or folder."""
    return spec.count("/") == 1 and not spec.startswith((".", "/", "~")) and not Path(spec).expanduser().exists()


def is_version_path(spec: str) -> bool:
    """A personal model version folder (it has a version.json)."""
    p = Path(spec)
    return p.is_dir() and (p / "version.json").exists()


def model_label(spec: str | None) -> str:
    """The model's name for the status bar and the Train panel."""
    if not spec:
        return "no model"
    if spec == DEFAULT_MODEL:
        return "JoyQuality"
    if spec == "demo":
        return "demo model"
    if spec == "tiny":
        return "tiny test model (random)"
    p = Path(spec)
    if (p / "version.json").exists():
        return f"personal version {p.name}"
    return p.name or spec


def undo_summary(report) -> str:
    """One sentence on an undone export: captions (an :class:`~joyq_studio.export.UndoReport`)
    or images put into a folder (a :class:`~joyq_studio.export.LinkUndoReport`)."""
    if hasattr(report, "removed"):
        text = f"Undid the export to {report.dest}: {report.removed} files removed" + (
            f", {report.already_gone} were already gone" if report.already_gone else ""
        )
    else:
        what = files_word(report)  # captions, or XMP sidecars
        text = (
            f"Undid the {'XMP' if what == 'sidecars' else 'caption'} export: {report.restored} {what} restored, "
            f"{report.deleted} created ones deleted"
        )
    if report.changed_since:
        text += (
            f"; {len(report.changed_since)} edited since the export were left alone "
            f"({', '.join(report.changed_since[:3])}{'...' if len(report.changed_since) > 3 else ''})"
        )
    return text + "."


def format_seconds(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "--"
    s = max(0, int(round(s)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def format_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    if n < 1024:
        return f"{n} B"
    x = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        x /= 1024.0
        if x < 1024 or unit == "TiB":
            return f"{x:.1f} {unit}" if x < 100 else f"{x:.0f} {unit}"
    return f"{x:.0f} TiB"


FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jfif": "JPEG",
    ".png": "PNG",
    ".webp": "WebP",
    ".bmp": "BMP",
    ".gif": "GIF",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".avif": "AVIF",
    ".heic": "HEIC",
}


def format_name(path: str | Path) -> str:
    return FORMATS.get(Path(path).suffix.lower(), Path(path).suffix.lstrip(".").upper() or "?")


def percent(x: float | None) -> str:
    return "--" if x is None or not math.isfinite(x) else f"{100 * x:.0f}%"


class Eta:
    """ETA from a progress stream: the rate over the whole run so far (robust, no jitter)."""

    def __init__(self):
        self._clock = time.monotonic
        self.t0 = self._clock()
        self.first: int | None = None

    def __call__(self, done: int, total: int) -> float | None:
        now = self._clock()
        if self.first is None:
            self.first = done
            self.t0 = now
            return None
        moved = done - self.first
        elapsed = now - self.t0
        if moved <= 0 or elapsed <= 0:
            return None
        return (total - done) * elapsed / moved
