"""Render joyq_studio/resources/icon.svg to the PNG sizes the .desktop file, Windows and macOS need.

python packaging/make_icons.py        # writes joyq_studio/resources/icon-{16..512}.png (+ icon.ico)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

SIZES = (16, 32, 48, 64, 128, 256, 512)
RES = Path(__file__).resolve().parent.parent / "joyq_studio" / "resources"


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 - needed by QPainter
    renderer = QSvgRenderer(str(RES / "icon.svg"))
    if not renderer.isValid():
        print(f"{RES / 'icon.svg'}: not a valid SVG", file=sys.stderr)
        return 1
    for size in SIZES:
        img = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
        img.fill(Qt.GlobalColor.transparent)
        p = QPainter(img)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(p)
        p.end()
        img.save(str(RES / f"icon-{size}.png"))
    try:  # a Windows icon for the PyInstaller bundle, when Pillow is there
        from PIL import Image

        Image.open(RES / "icon-256.png").save(RES / "icon.ico", sizes=[(s, s) for s in (16, 32, 48, 64, 128, 256)])
    except ImportError:
        pass
    print(f"wrote {len(SIZES)} PNG sizes to {RES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
