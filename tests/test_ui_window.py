"""The desktop app, driven for real (offscreen): open, compare with keys and clicks, undo,
skip, tie, kill-and-reopen, train + adopt, rank, exports with dry run and undo."""

from __future__ import annotations

import csv
import math
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from conftest import open_window, press  # the UI tests' shared helpers; folder40 is a fixture there
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QMessageBox

import joyq_studio
from joyq_studio.ui.window import MainWindow

T = 30_000  # generous timeouts (ms): a busy CI box must not flake


def outcomes(w: MainWindow) -> list[tuple[str, str, float, str, str]]:
    return [(a, b, o, s, k) for _, a, b, o, s, k in w.controller.session.project.comparisons()]


def test_keys_clicks_skip_tie_undo_are_durable(qtbot, folder40):
    w = open_window(qtbot, folder40)
    s = w.controller.session
    assert len(s.hashes) == 40 and s.n_scored() == 40
    expected = []
    for key, outcome in (
        (Qt.Key.Key_Left, 1.0),
        (Qt.Key.Key_Right, 0.0),
        (Qt.Key.Key_1, 1.0),
        (Qt.Key.Key_2, 0.0),
        (Qt.Key.Key_T, 0.5),
    ):
        pair = w.compare.current
        press(qtbot, w, key)
        expected.append((pair.left, pair.right, outcome))
        # committed the moment it is made: a second connection sees it at once
        from joyq_studio.store import Project

        with Project(folder40) as other:
            assert other.comparison_count() == len(expected)
    # skips write nothing
    for key in (Qt.Key.Key_Space, Qt.Key.Key_Down):
        press(qtbot, w, key)
    assert [(a, b, o) for a, b, o, _, _ in outcomes(w)] == expected
    # a mouse click on the right image: right wins
    pair = w.compare.current
    qtbot.mouseClick(w.compare.right.canvas, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(w.compare.ready, timeout=T)
    expected.append((pair.left, pair.right, 0.0))
    assert [(a, b, o) for a, b, o, _, _ in outcomes(w)] == expected
    # held-out pairs are stored in the test split, and only they
    for _, _, _, split, kind in outcomes(w):
        assert (split == "test") == (kind == "heldout")
        assert kind in ("info", "near", "heldout", "repeat", "random")  # random: shown while the model was busy
    # undo several steps: two skips, then the clicks, newest first; the undone pair is shown again
    press(qtbot, w, Qt.Key.Key_Backspace)  # the mouse click
    assert (w.compare.current.left, w.compare.current.right) == expected[-1][:2]
    expected.pop()
    assert len(outcomes(w)) == len(expected)
    press(qtbot, w, Qt.Key.Key_Backspace)  # skip (Down): nothing to delete
    press(qtbot, w, Qt.Key.Key_Backspace)  # skip (Space)
    assert len(outcomes(w)) == len(expected)
    press(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # the tie
    expected.pop()
    assert [(a, b, o) for a, b, o, _, _ in outcomes(w)] == expected
    # status strip counts what is stored
    assert f"{len(expected)} comparisons" in w.compare.status.text()
    # the window never showed an error
    assert not w.message.isVisible(), w.message.label.text()


def test_kill_and_reopen_keeps_every_click(qtbot, folder40):
    w = open_window(qtbot, folder40)
    for key in (Qt.Key.Key_Left, Qt.Key.Key_Right, Qt.Key.Key_T, Qt.Key.Key_Left):
        press(qtbot, w, key)
    before = outcomes(w)
    assert len(before) == 4
    w.close()
    w2 = open_window(qtbot, folder40)
    assert outcomes(w2) == before
    assert len(w2.controller.session.live.history) == 4  # replayed into the live model
    assert "4 comparisons" in w2.compare.status.text()
    press(qtbot, w2, Qt.Key.Key_Right)
    assert len(outcomes(w2)) == 5


def test_flicker_zoom_and_scores(qtbot, folder40):
    w = open_window(qtbot, folder40)
    c = w.compare
    pair = c.current
    assert not c.left.score.isVisible()  # scores hidden by default (no anchoring)
    qtbot.keyClick(c, Qt.Key.Key_F)  # a tap swaps (and stays swapped)
    assert c.left.canvas.digest == pair.right and c.right.canvas.digest == pair.left
    qtbot.keyClick(c, Qt.Key.Key_F)  # the next tap swaps back
    assert c.left.canvas.digest == pair.left and c.right.canvas.digest == pair.right
    assert len(outcomes(w)) == 0  # flicker is not a vote
    qtbot.keyClick(c, Qt.Key.Key_Z)
    assert c.view.zoom == 1.0
    # drag pans both images together
    canvas = c.left.canvas
    cx0 = c.view.cx
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=QPoint(100, 100))
    qtbot.mouseMove(canvas, QPoint(160, 100))
    qtbot.mouseMove(canvas, QPoint(200, 100))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=QPoint(200, 100))
    assert c.view.cx < cx0
    assert len(outcomes(w)) == 0  # a drag is not a click
    qtbot.keyClick(c, Qt.Key.Key_Escape)
    assert c.view.zoom is None
    # wheel zooms in around the cursor
    pos = QPointF(canvas.width() / 2, canvas.height() / 2)
    ev = QWheelEvent(
        pos,
        canvas.mapToGlobal(pos),
        QPoint(0, 0),
        QPoint(0, 240),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(canvas, ev)
    assert c.view.zoom is not None and c.view.zoom > canvas.fit_scale()
    qtbot.keyClick(c, Qt.Key.Key_Escape)
    qtbot.keyClick(c, Qt.Key.Key_S)
    assert c.left.score.isVisible() and "model score" in c.left.score.text()


def clean_wins(w: MainWindow) -> float:
    """A consistent 'user': the clean version of a scene beats a degraded one."""
    p = w.compare.current
    left, right = w.controller.session.rel(p.left), w.controller.session.rel(p.right)
    lc, rc = "_clean" in left, "_clean" in right
    if lc != rc:
        return 1.0 if lc else 0.0
    return 0.5 if left[:9] == right[:9] else (1.0 if left < right else 0.0)


def judge(qtbot, w: MainWindow, n: int) -> None:
    keys = {1.0: Qt.Key.Key_Left, 0.0: Qt.Key.Key_Right, 0.5: Qt.Key.Key_T}
    for _ in range(n):
        press(qtbot, w, keys[clean_wins(w)])


def test_train_quick_adopt_and_rollback(qtbot, folder40, monkeypatch):
    w = open_window(qtbot, folder40)
    c = w.controller
    judge(qtbot, w, 40)
    assert c.session.project.comparison_count() == 40
    w.show_tab(1)
    panel = w.train
    assert panel.train_button.isEnabled()
    assert panel.quick.isChecked()
    with qtbot.waitSignal(panel.trained, timeout=60_000):
        w.train_now()
        # the UI stays usable while training: comparing goes on
        press(qtbot, w, Qt.Key.Key_Left)
    result = panel.result
    assert result is not None and panel.results_box.isVisible()
    assert panel.plot.loss  # the live plot got the history
    assert panel.table.item(0, 0).text() and panel.table.item(0, 1).text()
    old_key = c.session.model_key
    asked: list[str] = []  # 40 clicks hold a few held-out pairs: too few to tell, so the app asks first
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or QMessageBox.StandardButton.Yes)
    panel.use_button.click()
    assert len(asked) == 1 and "too few" in asked[0].lower()
    qtbot.waitUntil(lambda: c.session.project.active_version == result.version_id and not c.busy_scoring(), timeout=T)
    assert c.session.model_key == result.record["model_key"] != old_key
    assert c.session.n_scored() == 40
    assert c.session.project.current_model_key() == result.record["model_key"]
    assert "personal version" in w.model_status.text()
    # versions list and rollback to the base model
    assert panel.versions.rowCount() == 1
    panel.base_button.click()
    qtbot.waitUntil(lambda: c.session.project.active_version is None and not c.busy_scoring(), timeout=T)
    assert c.session.model_key == old_key
    panel.versions.selectRow(0)
    panel.rollback_button.click()
    qtbot.waitUntil(lambda: c.session.project.active_version == result.version_id and not c.busy_scoring(), timeout=T)
    assert not w.message.isVisible(), w.message.label.text()


def test_train_cancel_and_discard(qtbot, folder40):
    w = open_window(qtbot, folder40)
    judge(qtbot, w, 16)
    panel = w.train
    w.show_tab(1)
    panel.start()
    panel.cancel()  # cancelled before its first step: nothing is written
    qtbot.waitUntil(lambda: not panel.running(), timeout=60_000)
    assert panel.result is None and w.controller.session.project.versions() == []
    assert "cancelled" in panel.message.text()
    assert not w.message.isVisible()  # a cancel is not an error
    panel.start()
    qtbot.waitUntil(lambda: not panel.running(), timeout=60_000)
    assert panel.result is not None, (w.controller.last_error, panel.message.text())
    vid = panel.result.version_id
    path = panel.result.path
    panel.discard_button.click()
    assert w.controller.session.project.active_version is None
    assert w.controller.session.project.version(vid) is None and not path.exists()  # discarded for good
    assert panel.versions.rowCount() == 0


def test_rank_view_and_exports(qtbot, folder40, tmp_path):
    w = open_window(qtbot, folder40)
    judge(qtbot, w, 12)
    rank = w.rank
    ranking = w.controller.ranking
    with qtbot.waitSignal(rank.ranked, timeout=T):
        w.show_tab(2)
    assert len(rank.bucket_rows) == 10
    assert [r.bucket for r in rank.bucket_rows] == list(range(9, -1, -1))  # best first
    assert sum(rank.hist.counts) == 40
    assert sum(r.model.rowCount() for r in rank.bucket_rows) == 40
    # thumbnails load lazily and land in the disk cache
    first = next(r for r in rank.bucket_rows if r.model.rowCount())
    first.model.data(first.model.index(0), Qt.ItemDataRole.DecorationRole)
    digest = first.model.rows[0].hash
    qtbot.waitUntil(lambda: digest in rank.thumbs.cache, timeout=T)
    from joyq_studio.ui.imagecache import thumbnail_path

    assert thumbnail_path(digest, rank.thumbs.size).exists()
    # method A, then edit a label
    other = "a" if ranking.cal.method == "b" else "b"
    rank.method.setCurrentIndex(rank.method.findData(other))
    rank.method.activated.emit(rank.method.currentIndex())
    qtbot.waitUntil(lambda: ranking.task is None, timeout=T)
    if other == "b" and ranking.cal.method == "a":  # too few held-out pairs: A, said in a sentence, no banner
        assert "method A" in rank.notes.text() and not w.message.isVisible()
    else:
        assert ranking.cal.method == other
    with qtbot.waitSignal(rank.ranked, timeout=T):
        w.controller.recalibrate("a")
    assert ranking.cal.method == "a" and rank.method.currentData() == "a"
    best = rank.bucket_rows[0]
    best.label.setText("masterpiece")
    best.label.editingFinished.emit()
    from joyq_studio.ranking import load_calibration

    assert load_calibration(w.controller.session.project).labels[9] == "masterpiece"

    # CSV
    from joyq_studio.ui.dialogs.export import CaptionExportDialog, CsvExportDialog

    out = tmp_path / "ranking.csv"
    dlg = CsvExportDialog(w.controller, ranking.cal, ranking.rows, w)
    qtbot.addWidget(dlg)
    assert dlg.table.rowCount() == 40
    dlg.path.setText(str(out))
    dlg.export()
    qtbot.waitUntil(lambda: dlg.written is not None, timeout=T)
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(rows) == 40 and rows[0]["label"] in ranking.cal.labels
    dlg.min_bucket.setCurrentIndex(1)  # best bucket only
    assert dlg.table.rowCount() == rank.hist.counts[9]

    # captions: dry run writes nothing; apply writes; undo restores
    (folder40 / "scene0000_clean.txt").write_text("a red circle", encoding="utf-8")
    cap = CaptionExportDialog(w.controller, ranking.cal, w)
    qtbot.addWidget(cap)
    cap.preview()
    qtbot.waitUntil(lambda: cap.plan is not None, timeout=T)
    assert len(cap.plan.changes) == 40 and cap.table.rowCount() >= 40
    assert len(list(folder40.glob("*.txt"))) == 1  # dry run: nothing written
    cap.apply()
    qtbot.waitUntil(lambda: cap.task is None and cap.plan is None, timeout=T)
    assert len(list(folder40.glob("*.txt"))) == 40
    edited = (folder40 / "scene0000_clean.txt").read_text(encoding="utf-8")
    assert edited.endswith(", a red circle") and edited != "a red circle"
    cap.undo()
    qtbot.waitUntil(lambda: cap.task is None and "Undid" in cap.status.text(), timeout=T)
    assert [p.name for p in folder40.glob("*.txt")] == ["scene0000_clean.txt"]
    assert (folder40 / "scene0000_clean.txt").read_text(encoding="utf-8") == "a red circle"
    (folder40 / "scene0000_clean.txt").unlink()
    assert not w.message.isVisible(), w.message.label.text()


def test_corrupt_files_never_stop_loading(qtbot, tmp_path):
    from joyq_studio.demo import make_demo_folder

    folder = tmp_path / "mixed"
    make_demo_folder(folder, count=6, seed=3, size=128)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (folder / "empty.png").write_bytes(b"")
    good = (folder / "scene0000_jpeg.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 3])  # header fine, decoding fails
    w = open_window(qtbot, folder)
    bad = w.controller.session.unreadable()
    assert {Path(p).name for p, _ in bad} == {"broken.jpg", "empty.png", "truncated.jpg"}
    assert all(reason for _, reason in bad)
    assert len(w.controller.session.hashes) == 6 and w.controller.session.n_scored() == 6
    assert w.unreadable_button.isVisible() and "3 could not be read" in w.unreadable_button.text()
    w.show_unreadable()
    assert w.unreadable_dialog.findChild(type(w.train.table)).rowCount() == 3
    press(qtbot, w, Qt.Key.Key_Left)
    assert w.controller.session.project.comparison_count() == 1


def test_errors_are_one_sentence_in_the_window(qtbot, tmp_path):
    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    assert not w.controller.open_folder(str(tmp_path / "nope"))
    assert w.message.isVisible()
    text = w.message.label.text()
    assert "no such folder" in text and "Traceback" not in text and text.count("\n") == 0
    from joyq_studio.ui.logfile import log_path
    from joyq_studio.ui.util import error_sentence

    try:
        raise RuntimeError("boom\nline two")
    except RuntimeError as e:
        sentence = error_sentence(e)
    assert "Traceback" not in sentence and sentence.count("\n") == 0
    # a bug's sentence says where its details are, and they are there (in this test's own dir)
    path = log_path()
    assert str(path) in sentence and path.is_relative_to(Path(os.environ["JOYQ_DATA_DIR"]).parent)
    logged = path.read_text(encoding="utf-8")
    assert "Traceback" in logged and "RuntimeError: boom" in logged


def test_welcome_demo_and_recent(qtbot, monkeypatch):
    monkeypatch.setattr("joyq_studio.ui.controller.demo_model_spec", lambda: "tiny")
    w = MainWindow(demo_count=12, demo_size=128)
    qtbot.addWidget(w)
    w.show()
    assert w.stack.currentWidget() is w.welcome
    assert not w.welcome.recent.isVisible()
    with qtbot.waitSignal(w.controller.project_opened, timeout=T):
        w.welcome.demo_button.click()
    qtbot.waitUntil(lambda: not w.controller.busy_scoring() and w.compare.ready(), timeout=T)
    assert w.controller.session.folder.name == "demo" and len(w.controller.session.hashes) == 12
    press(qtbot, w, Qt.Key.Key_Left)
    w.controller.close_project()
    assert w.stack.currentWidget() is w.welcome
    assert w.welcome.recent.count() == 1
    item = w.welcome.recent.item(0)
    w.welcome.recent.itemActivated.emit(item)
    qtbot.waitUntil(lambda: w.controller.session is not None and not w.controller.busy_scoring(), timeout=T)
    assert w.controller.session.project.comparison_count() == 1


def test_model_dialog_offers_the_demo_model(qtbot):
    from joyq_studio.ui.dialogs.model import ModelDialog
    from joyq_studio.ui.workers import TaskRunner

    dlg = ModelDialog(TaskRunner(), "CPU")
    qtbot.addWidget(dlg)
    assert "not downloaded" in dlg.findChildren(type(dlg.status))[0].text()
    dlg.demo.click()
    assert dlg.spec in ("demo", "tiny") and dlg.result() == dlg.DialogCode.Accepted


def test_settings_persist(qtbot, folder40):
    w = open_window(qtbot, folder40)
    w.resize(790, 560)  # fits the 800x600 offscreen screen (restoreGeometry clamps to it)
    size = w.size()
    qtbot.keyClick(w.compare, Qt.Key.Key_S)
    w.show_tab(2)
    w.close()
    w2 = MainWindow()
    qtbot.addWidget(w2)
    assert w2.compare.show_scores
    assert w2.size().height() == size.height()  # (the width is clamped to the 800 px offscreen screen)
    from joyq_studio.ui.util import recent_folders

    assert recent_folders()[0] == str(folder40.resolve())


def test_latency_benchmark_runs(qtbot, folder40):
    from joyq_studio.ui.bench import measure

    w = open_window(qtbot, folder40)
    r = measure(clicks=5, think_ms=50, window=w)
    assert r["clicks"] == 5 and math.isfinite(r["p95_ms"])


def test_python_m_entry_point_parses(monkeypatch):
    from joyq_studio.ui import app

    a = app.parse_args(["/some/folder", "--model", "tiny"])
    assert a.folder == "/some/folder" and a.model == "tiny"
    # `python -m joyq_studio` runs the app's main and exits with its status
    calls = []
    monkeypatch.setattr(app, "main", lambda argv=None: calls.append(argv) or 7)
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("joyq_studio", run_name="__main__")
    assert calls == [None] and exit_.value.code == 7
    # and for real, in a fresh process: --version answers without starting the GUI
    r = subprocess.run([sys.executable, "-m", "joyq_studio", "--version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == f"joyq-studio {joyq_studio.__version__}", r.stderr


def test_window_paints_before_torch_is_imported():
    """Start-up: the window is on screen before torch and transformers are imported (they
    load on a worker thread afterwards), measured on a real launch."""
    from joyq_studio.ui.bench import startup_times

    [(seconds, heavy)] = startup_times(runs=1)
    assert heavy == "-" and seconds > 0


def test_qt_binding_has_no_refcount_bug():
    """PySide6 6.12.0 on Python 3.11 frees None after a few thousand Qt calls (see app.py)."""
    from joyq_studio.ui.app import qt_binding_problem

    assert qt_binding_problem() is None


def test_download_reports_bytes_and_cancels(monkeypatch, tmp_path):
    """The app's download (hub.py against a local Hub-protocol server): the first report
    already counts the weights' bytes; a cancel stops it within one read."""
    import sys

    from joyq_studio.errors import Cancelled
    from joyq_studio.model import save_model, tiny_model
    from joyq_studio.ui.dialogs.model import download_repo

    sys.path.insert(0, str(Path(__file__).parent))
    from fake_hub_server import FakeHub

    save_model(tiny_model(), tmp_path / "ckpt")
    hub = FakeHub()
    hub.add_folder("org/model", tmp_path / "ckpt")
    hub.start()
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_OFFLINE")
    total = sum(p.stat().st_size for p in (tmp_path / "ckpt").iterdir())
    seen = []
    with pytest.raises(Cancelled):
        download_repo("org/model", seen.append, lambda: bool(seen))
    assert seen and seen[0][1] == total and seen[-1][0] < total
    seen.clear()
    assert download_repo("org/model", seen.append, lambda: False) == "org/model"
    assert seen[-1] == (total, total) and all(t == total for _, t in seen)
    hub.stop()


def test_missing_joyquality_asks_for_a_model_and_remembers_it(qtbot, folder40, monkeypatch):
    from joyq_studio.ui.dialogs import model as model_dialog

    asked = []

    def fake_exec(dlg):
        asked.append(dlg)
        dlg.spec = "tiny"
        return dlg.DialogCode.Accepted

    monkeypatch.setattr(model_dialog.ModelDialog, "exec", fake_exec)
    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    assert w.controller.open_folder(str(folder40))  # no model given: JoyQuality, which is not downloaded here
    assert len(asked) == 1
    qtbot.waitUntil(lambda: not w.controller.busy_scoring() and w.compare.ready(), timeout=T)
    assert w.controller.session.model_spec == "tiny" and w.controller.session.base_model_spec() == "tiny"
    w.controller.close_project()
    assert w.controller.open_folder(str(folder40))  # remembered: no second question
    assert len(asked) == 1 and w.controller.session.model_spec == "tiny"
    qtbot.waitUntil(lambda: not w.controller.busy_scoring(), timeout=T)
