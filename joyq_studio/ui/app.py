"""`joyq-studio [FOLDER]`: start the desktop app (also `python -m joyq_studio`).

The window is on screen before torch and transformers are imported: nothing the window
imports pulls them in, and once it has painted, the controller imports them on a worker
thread while it looks for the GPU (``python -m joyq_studio.ui.bench --startup`` measures it).
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import sys
from pathlib import Path
from typing import cast

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QGuiApplication, QIcon
from PySide6.QtWidgets import QApplication

from .. import __version__
from ..resources import resource_path
from .logfile import install_log_file
from .util import APP, ORG

APP_ID = "io.github.joyquality.Studio"  # reverse-DNS id: .desktop file, AppStream, Wayland app id


def app_icon() -> QIcon:
    icon = QIcon()
    svg = resource_path("icon.svg")
    if svg.exists():
        icon.addFile(str(svg))
    for size in (16, 32, 48, 64, 128, 256, 512):
        png = resource_path(f"icon-{size}.png")
        if png.exists():
            icon.addFile(str(png))
    if icon.isNull():
        icon = QIcon.fromTheme(APP_ID)
    return icon


def create_app(argv: list[str] | None = None) -> QApplication:
    """The QApplication with names, icon, high-DPI policy and the system theme."""
    existing = QApplication.instance()
    if existing is not None:
        return cast(QApplication, existing)
    QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
    app = QApplication(argv if argv is not None else sys.argv)
    app.setApplicationName(APP)
    app.setApplicationDisplayName(APP)
    app.setOrganizationName(ORG)
    app.setApplicationVersion(__version__)
    app.setDesktopFileName(APP_ID)
    app.setWindowIcon(app_icon())
    return app


def qt_binding_problem() -> str | None:
    """One sentence when this PySide6 build is known to crash here, else None.

    PySide6 6.12.0 returns None / True from void calls and ``Signal.emit`` without taking a
    reference; on Python < 3.12 (no immortal objects) the interpreter then frees None or
    True after a few thousand calls and aborts. Detected directly, not by version number.
    """
    if sys.version_info >= (3, 12):
        return None
    from PySide6 import __version__ as qt_version
    from PySide6.QtCore import QObject

    probe = QObject()
    before = sys.getrefcount(None)
    for _ in range(16):
        probe.setObjectName("probe")
    if sys.getrefcount(None) >= before:
        return None
    return (
        f"PySide6 {qt_version} has a reference-counting bug on Python "
        f"{sys.version_info.major}.{sys.version_info.minor} that crashes the app within minutes; "
        "install another version (pip install 'pyside6-essentials<6.12') or use Python 3.12 or newer."
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="joyq-studio", description="JoyQuality Studio: compare, train, rank, export.")
    p.add_argument("folder", nargs="?", help="a folder of images to open")
    p.add_argument("--model", help="model for this folder: HF repo id, a folder or .safetensors file, 'demo' or 'tiny'")
    p.add_argument("--demo", action="store_true", help="open the demo folder (generated on first use)")
    p.add_argument("--version", action="version", version=f"joyq-studio {__version__}")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    multiprocessing.freeze_support()  # standalone bundles: scoring workers re-enter here
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    log_file = install_log_file()
    logging.getLogger("joyq_studio.ui").info("joyq-studio %s starting; log file %s", __version__, log_file)
    app = create_app(sys.argv[:1] + (list(argv) if argv is not None else sys.argv[1:]))
    args = parse_args(app.arguments()[1:])
    problem = qt_binding_problem()
    if problem:
        print(f"joyq-studio: error: {problem}", file=sys.stderr)
        return 2
    from .window import MainWindow  # here, not at the top: `--help` and `--version` need no views

    window = MainWindow(app_icon())
    controller = window.controller
    if args.demo:
        window.first_painted.connect(lambda: QTimer.singleShot(0, controller.open_demo))
    elif args.folder:
        folder = str(Path(args.folder).expanduser())
        window.first_painted.connect(lambda: QTimer.singleShot(0, lambda: controller.open_folder(folder, args.model)))
    window.show()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
