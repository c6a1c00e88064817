"""The app's XMP export dialog (dry run, apply, undo) and Import star ratings (offscreen)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from joyq_studio import xmp
from joyq_studio.ui.window import MainWindow

T = 30_000


@pytest.fixture
def folder(tmp_path) -> Path:
    from joyq_studio.demo import make_demo_folder

    f = tmp_path / "images"
    make_demo_folder(f, count=20, seed=0, size=128)
    return f


def test_xmp_dialog_dry_run_apply_undo_and_star_import(qtbot, folder):
    from joyq_studio.ranking import ensure_calibration
    from joyq_studio.ui.dialogs.export import StarImportDialog, XmpExportDialog

    w = MainWindow()
    qtbot.addWidget(w)
    c = w.controller
    assert c.open_folder(str(folder), "tiny"), c.last_error
    qtbot.waitUntil(lambda: not c.busy_scoring(), timeout=T)
    assert w.act_xmp.isEnabled() and w.act_import_stars.isEnabled()
    cal, _ = ensure_calibration(c.session.project)
    dt = (Path(__file__).parent / "data" / "xmp" / "darktable.CR3.xmp").read_bytes()
    (folder / "scene0000_clean.png.xmp").write_bytes(dt)
    dlg = XmpExportDialog(c, cal, w)
    qtbot.addWidget(dlg)
    dlg.reject_bucket.setCurrentIndex(1)  # bucket 0 rejected
    dlg.preview()
    qtbot.waitUntil(lambda: dlg.task is None and dlg.plan is not None, timeout=T)
    assert dlg.plan.naming == "darktable" and len(dlg.plan.changes) == 20
    assert "Nothing was written" in dlg.status.text() and len(list(folder.glob("*.xmp"))) == 1
    dlg.apply()
    qtbot.waitUntil(lambda: dlg.task is None, timeout=T)
    assert dlg.plan is None, dlg.status.text()
    assert len(list(folder.glob("*.xmp"))) == 20
    assert xmp.read((folder / "scene0000_clean.png.xmp").read_bytes()).stars in (-1, 1, 2, 3, 4, 5)
    # our own ratings are not taken back in as the user's
    imp = StarImportDialog(c, w)
    qtbot.addWidget(imp)
    imp.start()
    qtbot.waitUntil(lambda: imp.imported is not None, timeout=T)
    assert imp.imported.ratings.ours == 20 and imp.imported.pairs == 0
    dlg.undo()
    qtbot.waitUntil(lambda: dlg.task is None and "Undid" in dlg.status.text(), timeout=T)
    assert [p.name for p in folder.glob("*.xmp")] == ["scene0000_clean.png.xmp"]
    assert (folder / "scene0000_clean.png.xmp").read_bytes() == dt
    imp.start()
    qtbot.waitUntil(lambda: imp.task is None and imp.imported.ratings.ours == 0, timeout=T)
    assert "1 images have a rating (2 stars: 1)" in imp.status.text()
