"""Issue 12's GUI items, driven offscreen: the newcomer's path (flicker tap, layout that does
not jump, Rank wheel, labels that belong to the folder, one-sentence offline error, bucket
numbers 0..9, CSV preview = file, counts that agree, plain status sentences), numbers with
their uncertainty in the Train panel, curation from the Rank view, undo after a restart,
and the pre-label menu."""

from __future__ import annotations

import csv
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("pytestqt")

from conftest import open_window, press  # the UI tests' shared helpers; folder40 is a fixture there
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QMessageBox

from joyq_studio.ui.window import MainWindow

T = 30_000


def show_rank(qtbot, w: MainWindow) -> None:
    with qtbot.waitSignal(w.rank.ranked, timeout=T):
        w.show_tab(2)


def rerank(qtbot, w: MainWindow) -> None:
    qtbot.waitUntil(lambda: w.controller.ranking.task is None, timeout=T)
    if w.controller.ranking.dirty:
        with qtbot.waitSignal(w.rank.ranked, timeout=T):
            w.controller.rank()


# -- the README path ------------------------------------------------------------------------
def test_flicker_tap_toggles_and_a_hold_swaps_back(qtbot, folder40):
    w = open_window(qtbot, folder40)
    c = w.compare
    pair = c.current
    qtbot.keyClick(c, Qt.Key.Key_F)  # a tap: swapped, and it stays swapped
    assert (c.left.canvas.digest, c.right.canvas.digest) == (pair.right, pair.left)
    qtbot.keyClick(c, Qt.Key.Key_F)  # another tap: back
    assert (c.left.canvas.digest, c.right.canvas.digest) == (pair.left, pair.right)
    qtbot.keyPress(c, Qt.Key.Key_F)  # hold-to-compare still works
    assert c.left.canvas.digest == pair.right
    c._flicker_pressed_at -= 1.0  # held for a second
    qtbot.keyRelease(c, Qt.Key.Key_F)
    assert c.left.canvas.digest == pair.left
    assert w.controller.session.project.comparison_count() == 0  # flicker is never a vote
    # a click while swapped judges what is on screen: the image shown on the left wins
    qtbot.keyClick(c, Qt.Key.Key_F)
    shown_left = c.left.canvas.digest
    press(qtbot, w, Qt.Key.Key_Left)
    [(_, a, b, outcome, _, _)] = w.controller.session.project.comparisons()
    assert (a if outcome == 1.0 else b) == shown_left
    assert not c.flicker  # the next pair starts unswapped


def test_welcome_title_stays_by_the_icon_without_recent_folders(qtbot):
    from PySide6.QtGui import QIcon, QPixmap

    pix = QPixmap(96, 96)
    pix.fill(Qt.GlobalColor.blue)
    w = MainWindow(icon=QIcon(pix))
    qtbot.addWidget(w)
    w.resize(1000, 760)
    w.show()
    qtbot.waitExposed(w)
    page = w.welcome
    assert not page.recent.isVisible()
    from PySide6.QtWidgets import QLabel

    labels = page.findChildren(QLabel)
    logo = next(x for x in labels if not x.pixmap().isNull()).geometry()
    title_label = next(x for x in labels if "<h1>" in x.text())
    title = title_label.geometry()
    # the title's text (centred in its label) sits beside the icon, not in stretched space below it
    assert title.height() <= title_label.sizeHint().height() + 8, (title, title_label.sizeHint())
    assert logo.top() <= title.center().y() <= logo.bottom(), (logo, title)


def test_a_hint_appearing_does_not_move_the_images(qtbot, folder40):
    w = open_window(qtbot, folder40)
    c = w.compare
    s = w.controller.session
    before = (c.left.canvas.geometry(), c.b_left.geometry())
    assert not c.hint.text()
    for i in range(30):  # 30 comparisons: the "enough to train" hint appears
        s.project.add_comparison(s.hashes[i], s.hashes[i + 1], 1.0)
    c.refresh_status()
    QApplication.processEvents()
    assert "enough to train" in c.hint.text()
    assert (c.left.canvas.geometry(), c.b_left.geometry()) == before


def test_rank_wheel_scrolls_the_page_not_the_strip(qtbot, folder40):
    w = open_window(qtbot, folder40)
    show_rank(qtbot, w)
    rank = w.rank
    page = rank.scroll_area.verticalScrollBar()
    qtbot.waitUntil(lambda: page.maximum() > 0, timeout=T)  # laid out: taller than the window
    row = next(r for r in rank.bucket_rows if r.model.rowCount())
    strip = row.list.horizontalScrollBar()
    v0, h0 = page.value(), strip.value()
    vp = row.list.viewport()
    pos = QPointF(10, 10)
    ev = QWheelEvent(
        pos,
        vp.mapToGlobal(pos),
        QPoint(0, 0),
        QPoint(0, -120),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(vp, ev)
    assert page.value() > v0 and strip.value() == h0


def test_bucket_numbers_labels_csv_preview_and_overwrite(qtbot, folder40, tmp_path, monkeypatch):
    w = open_window(qtbot, folder40)
    show_rank(qtbot, w)
    rank, c = w.rank, w.controller
    # numbers 0..9, the label beside the number
    assert rank.bucket_rows[0].title.text() == "<b>Bucket 9 (best)</b>"
    assert rank.bucket_rows[-1].title.text() == "<b>Bucket 0 (worst)</b>"
    assert [rank.bucket_filter.itemText(i) for i in (1, 10)] == [
        f"Bucket 9: {c.ranking.cal.labels[9]}",
        f"Bucket 0: {c.ranking.cal.labels[0]}",
    ]
    # a label typed and not yet committed is what the preview and the file show
    best = rank.bucket_rows[0]
    best.label.setText("keepers")
    w.export_csv()
    assert rank.bucket_filter.itemText(1) == "Bucket 9: keepers"
    m = best.model
    assert "bucket 9: keepers" in m.data(m.index(0), Qt.ItemDataRole.ToolTipRole)
    dlg = w.export_dialog
    qtbot.addWidget(dlg)
    cols = dlg.columns
    assert "bucket_0_to_9" in cols
    top = [
        dlg.table.item(i, cols.index("label")).text()
        for i in range(dlg.table.rowCount())
        if dlg.table.item(i, cols.index("bucket_0_to_9")).text() == "9"
    ]
    assert top and set(top) == {"keepers"}
    out = tmp_path / "ranking.csv"
    out.write_text("precious", encoding="utf-8")
    dlg.path.setText(str(out))
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a) or QMessageBox.StandardButton.No)
    dlg.export()
    assert asked and out.read_text(encoding="utf-8") == "precious"  # not overwritten without asking
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    dlg.export()
    qtbot.waitUntil(lambda: dlg.written is not None, timeout=T)
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    preview = {
        dlg.table.item(i, 0).text(): (
            dlg.table.item(i, cols.index("bucket_0_to_9")).text(),
            dlg.table.item(i, cols.index("label")).text(),
        )
        for i in range(dlg.table.rowCount())
    }
    assert {r["path"]: (r["bucket_0_to_9"], r["label"]) for r in rows} == preview


def test_bucket_label_belongs_to_the_folder(qtbot, folder40):
    w = open_window(qtbot, folder40)
    show_rank(qtbot, w)
    c = w.controller
    assert c.set_bucket_label(9, "keepers")
    key = c.session.model_key
    c.use_model("demo")  # another model, another calibration: the folder's label stays
    qtbot.waitUntil(lambda: not c.busy_scoring() and c.session.model_key != key, timeout=60_000)
    rerank(qtbot, w)
    assert c.ranking.cal.labels[9] == "keepers"
    assert w.rank.bucket_rows[0].label.text() == "keepers"
    c.use_model("tiny")
    qtbot.waitUntil(lambda: not c.busy_scoring() and c.session.model_key == key, timeout=60_000)
    rerank(qtbot, w)
    assert c.ranking.cal.labels[9] == "keepers"


def test_offline_download_is_one_sentence(qtbot, monkeypatch):
    import socket

    from joyq_studio.errors import JoyqError
    from joyq_studio.ui.dialogs.model import ModelDialog, download_repo
    from joyq_studio.ui.workers import TaskRunner

    with socket.socket() as s:  # a local port nothing listens on: no network, without touching it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(JoyqError) as e:  # downloads switched off by the environment (as in these tests)
        download_repo("org/model", lambda _: None, lambda: False)
    assert "HF_HUB_OFFLINE is set" in str(e.value)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(JoyqError) as e:
        download_repo("org/model", lambda _: None, lambda: False)
    text = str(e.value)
    assert "no connection" in text and "demo model" in text and "\n" not in text
    runner = TaskRunner()
    dlg = ModelDialog(runner, "CPU")
    qtbot.addWidget(dlg)
    dlg.show()
    dlg.download.click()
    qtbot.waitUntil(lambda: dlg.task is None, timeout=T)
    assert dlg.status.text().startswith("There is no connection") and "Unexpected" not in dlg.status.text()
    # the CPU warning and the sentence are shown whole (wrapped, never cut)
    QApplication.processEvents()
    for label in (dlg.text, dlg.status):
        assert label.height() >= label.heightForWidth(label.width()), label.text()
    assert "the small demo model is instant" in dlg.text.text()
    runner.cancel_all()


def test_counts_agree_when_files_share_their_bytes(qtbot, tmp_path):
    from joyq_studio.demo import make_demo_folder

    folder = tmp_path / "dups"
    make_demo_folder(folder, count=8, seed=1, size=96)
    first = sorted(folder.glob("*.png")) or sorted(folder.glob("*.*"))
    shutil.copy(first[0], folder / f"copy_of_{first[0].name}")
    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    infos = []
    w.controller.info.connect(infos.append)
    assert w.controller.open_folder(str(folder), "tiny")
    qtbot.waitUntil(lambda: not w.controller.busy_scoring(), timeout=T)
    files = len([p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in (".png", ".jpg", ".webp")])
    assert any(t.startswith(f"{files} images;") for t in infos), infos
    assert w.controller.image_count() == files
    show_rank(qtbot, w)
    assert len(w.controller.ranking.rows) == files and w.rank.status_text().startswith(f"{files} images ranked")


def test_rank_status_reads_as_plain_sentences(qtbot, folder40):
    w = open_window(qtbot, folder40)
    show_rank(qtbot, w)
    text = w.rank.notes.text()
    assert text.startswith("40 images ranked into buckets 0 (worst) to 9 (best).")
    assert "Quantile buckets were used (the default)" in text  # which method, and why (issue 25)
    assert "calibrated now" not in text and "; method" not in text
    # a ranking still in flight (a rescore after the live model's build) would take this request
    qtbot.waitUntil(lambda: w.controller.ranking.task is None, timeout=T)
    with qtbot.waitSignal(w.rank.ranked, timeout=T):
        w.controller.recalibrate("b")  # too few held-out comparisons: A, said in one sentence
    text = w.rank.notes.text()
    assert "was asked for, but" in text and "method A" in text
    assert not w.message.isVisible()  # a fallback is not an error banner
    for sentence in text.split(". "):
        assert sentence[:1].isupper() or sentence[:1].isdigit(), sentence


# -- numbers with their uncertainty -----------------------------------------------------------
def fake_result(verdict: str, n: int, acc0: float, acc1: float, more: int = 0, by: str | None = "accuracy"):
    def m(acc: float) -> dict:
        from joyq_studio.metrics import wilson_interval

        lo, hi = wilson_interval(acc * n, n)
        return {
            "accuracy": acc,
            "n": n,
            "n_decisive": n,
            "accuracy_low": lo,
            "accuracy_high": hi,
            "nll": 0.6,
            "nll_low": 0.5,
            "nll_high": 0.7,
            "ece": 0.1,
            "ece_low": 0.05,
            "ece_high": 0.2,
            "more_pairs_needed": more,
            "enough": n >= 30,
        }

    sentence = {
        "too few to tell": f"too few to tell: {n} held-out pairs",
        "worse": f"worse beyond noise: accuracy is {100 * (acc0 - acc1):.1f} points lower "
        f"(95% interval -30.0 to -5.0) on the same {n} held-out pairs",
    }.get(verdict, verdict)
    change = {
        "verdict": verdict,
        "by": by if verdict in ("better", "worse") else None,
        "n_decisive": n,
        "sentence": sentence,
    }
    record = {"change": change, "metrics_before": m(acc0), "metrics_after": m(acc1), "model_key": "x"}
    return SimpleNamespace(
        version_id="v1", path=Path("/nowhere"), before=m(acc0), after=m(acc1), record=record, history=[]
    )


def test_train_table_shows_counts_intervals_and_too_few(qtbot, folder40, monkeypatch):
    w = open_window(qtbot, folder40)
    panel = w.train
    w.show_tab(1)
    panel._on_done(fake_result("too few to tell", 7, 0.6, 0.4, more=330))
    acc_after = panel.table.item(0, 1).text()
    assert acc_after.startswith("40.0% of 7 (") and "\u25bc" not in acc_after and "\u25b2" not in acc_after
    assert panel.table.item(0, 1).foreground().color().name() != "#dc3c3c"  # no red on noise
    assert "(95%: 0.500\u20130.700)" in panel.table.item(1, 1).text()  # log loss with its bootstrap interval
    assert "(95%: 0.050\u20130.200)" in panel.table.item(2, 1).text()  # ECE too
    v = panel.verdict.text()
    assert v.startswith("Too few to tell: 7 held-out pairs") and "3100 more clicks" in v and "\u00b15 points" in v
    # worse beyond noise: an arrow, red, and adopting asks first, saying by how much
    panel._on_done(fake_result("worse", 120, 0.8, 0.6))
    assert "\u25bc" in panel.table.item(0, 1).text()
    assert "\u25bc" not in panel.table.item(1, 1).text()  # only the figure the verdict is about
    assert panel.verdict.text().startswith("Worse beyond noise: accuracy is 20.0 points lower")
    asked, adopted = [], []
    monkeypatch.setattr(w.controller, "adopt_version", adopted.append)
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or QMessageBox.StandardButton.No)
    panel.use_result()
    assert len(asked) == 1 and "20.0 points lower" in asked[0] and adopted == []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    panel.use_result()
    assert adopted == ["v1"]
    # a change beyond noise that is better is marked green without asking
    panel._on_done(fake_result("better", 120, 0.6, 0.8))
    assert "\u25b2" in panel.table.item(0, 1).text()


def test_versions_list_shows_intervals(qtbot, folder40):
    w = open_window(qtbot, folder40)
    s = w.controller.session
    rec = fake_result("too few to tell", 7, 0.6, 0.4).record
    version_dir = s.project.versions_dir / "v-test"
    s.project.add_version("v-test", version_dir, {**rec, "mode": "quick", "created": time.time()})
    w.show_tab(1)
    w.train.refresh()
    assert w.train.versions.rowCount() == 1
    assert w.train.versions.item(0, 3).text().startswith("40.0% of 7 (")
    assert w.train.versions.item(0, 4).text() == "too few to tell"


# -- curation from the Rank view ----------------------------------------------------------------
def test_rank_filter_override_file_manager_and_caption(qtbot, folder40, monkeypatch):
    w = open_window(qtbot, folder40)
    show_rank(qtbot, w)
    rank, c = w.rank, w.controller
    shown = lambda: sum(r.model.rowCount() for r in rank.bucket_rows)
    assert shown() == 40
    rank.search.setText("_CLEAN")  # by name, case does not matter
    n_clean = sum("_clean" in r.path for r in c.ranking.rows)
    assert 0 < shown() == n_clean < 40 and f"{n_clean} of them match the filter." in rank.notes.text()
    rank.search.setText("")
    b = c.ranking.rows[0].bucket
    rank.bucket_filter.setCurrentIndex(rank.bucket_filter.findData(b))
    assert shown() == sum(r.bucket == b for r in c.ranking.rows)
    rank.bucket_filter.setCurrentIndex(0)
    median = sorted(r.score for r in c.ranking.rows)[20]
    rank.min_score.setValue(round(median, 2) + 0.005)
    assert shown() == sum(r.score >= rank.min_score.value() for r in c.ranking.rows)
    rank.min_score.setValue(rank.min_score.minimum())
    assert shown() == 40
    # put the worst image in bucket 9 by hand (the context menu's action), and back
    worst = c.ranking.rows[-1]
    menu = rank.image_menu(worst)
    put = next(a for a in menu.actions() if a.text() == "Put in bucket").menu()
    with qtbot.waitSignal(rank.ranked, timeout=T):
        next(a for a in put.actions() if a.text().startswith("9:")).trigger()
    moved = next(r for r in c.ranking.rows if r.path == worst.path)
    assert moved.bucket == 9 and moved.overridden
    assert "set by hand" in rank.notes.text()
    top = rank.bucket_rows[0]
    i = next(i for i, r in enumerate(top.model.rows) if r.path == worst.path)
    tip = top.model.data(top.model.index(i), Qt.ItemDataRole.ToolTipRole)
    assert "bucket 9" in tip and "(set by hand)" in tip
    # the caption an export would write
    assert f"would write: {moved.label}" in tip
    (folder40 / Path(worst.path).with_suffix(".txt")).write_text("a red circle", encoding="utf-8")
    try:
        tip = top.model.data(top.model.index(i), Qt.ItemDataRole.ToolTipRole)
        assert f"would write: {moved.label}, a red circle" in tip
        # a quality label from an earlier export is replaced, as the export does, not repeated
        (folder40 / Path(worst.path).with_suffix(".txt")).write_text("worst quality, a red circle", encoding="utf-8")
        tip = top.model.data(top.model.index(i), Qt.ItemDataRole.ToolTipRole)
        assert f"would write: {moved.label}, a red circle\n" in tip
    finally:
        (folder40 / Path(worst.path).with_suffix(".txt")).unlink()
    menu = rank.image_menu(moved)
    with qtbot.waitSignal(rank.ranked, timeout=T):
        next(a for a in menu.actions() if a.text() == "Back to the model's bucket").trigger()
    assert not next(r for r in c.ranking.rows if r.path == worst.path).overridden
    # open in the file manager: its folder
    opened = []
    monkeypatch.setattr("joyq_studio.ui.views.rank.QDesktopServices.openUrl", lambda url: opened.append(url) or True)
    next(a for a in rank.image_menu(moved).actions() if a.text() == "Show in file manager").trigger()
    assert [u.toLocalFile() for u in opened] == [str((c.session.folder / moved.path).parent)]
    assert not w.message.isVisible(), w.message.label.text()


def test_put_chosen_buckets_into_a_folder_with_dry_run_and_undo(qtbot, folder40, tmp_path):
    w = open_window(qtbot, folder40)
    show_rank(qtbot, w)
    c = w.controller
    before = sorted(p.name for p in folder40.iterdir())
    w.rank.folder_button.click()
    dlg = w.export_dialog
    qtbot.addWidget(dlg)
    # a destination inside the image folder is refused in one sentence
    dlg.dest.setText(str(folder40 / "best"))
    dlg.preview()
    assert "inside the image folder" in dlg.status.text() and dlg.plan is None
    dest = tmp_path / "best"
    dlg.dest.setText(str(dest))
    assert dlg.chosen_buckets() == [9, 8]
    assert dlg.min_score.value() <= min(r.score for r in c.ranking.rows if r.bucket >= 8)  # the same images
    dlg.mode.setCurrentIndex(dlg.mode.findData("symlink"))
    dlg.preview()
    qtbot.waitUntil(lambda: dlg.plan is not None, timeout=T)
    want = sorted(r.path for r in c.ranking.rows if r.bucket >= 8)
    assert sorted(i.rel for i in dlg.plan.items) == want and not dest.exists()  # dry run: nothing written
    assert "Nothing was written" in dlg.status.text()
    dlg.apply()
    qtbot.waitUntil(lambda: dlg.applied is not None and dlg.task is None, timeout=T)
    made = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_symlink())
    assert made == want
    assert sorted(p.name for p in folder40.iterdir()) == before  # originals untouched
    dlg.undo()
    qtbot.waitUntil(lambda: dlg.task is None and "Undid" in dlg.status.text(), timeout=T)
    assert not any(dest.rglob("*"))
    # by score threshold, as copies
    dlg.by_score.setChecked(True)
    dlg.min_score.setValue(max(r.score for r in c.ranking.rows) - 1e-3)
    dlg.mode.setCurrentIndex(dlg.mode.findData("copy"))
    dlg.preview()
    qtbot.waitUntil(lambda: dlg.plan is not None, timeout=T)
    assert len(dlg.plan.items) >= 1 and dlg.plan.selection.startswith("score")


# -- undo history after a restart, pre-labelling ----------------------------------------------------
def test_undo_history_survives_a_restart(qtbot, folder40):
    w = open_window(qtbot, folder40)
    for key in (Qt.Key.Key_Left, Qt.Key.Key_Right, Qt.Key.Key_Left):
        press(qtbot, w, key)
    s = w.controller.session
    stored = s.project.comparisons()
    s.project.add_comparisons([(s.hashes[0], s.hashes[1], 1.0, "train", "import")])  # a pairs file, newest
    imported = s.project.comparisons()[-1]
    w.close()
    w2 = open_window(qtbot, folder40)
    assert w2.compare.b_undo.isEnabled()
    last = stored[-1]
    press(qtbot, w2, Qt.Key.Key_Backspace)  # the last click, not the imported pair
    assert w2.controller.session.project.comparisons() == [*stored[:-1], imported]
    assert (w2.compare.current.left, w2.compare.current.right) == (last[1], last[2])  # shown again
    press(qtbot, w2, Qt.Key.Key_Backspace)
    assert w2.controller.session.project.comparisons() == [*stored[:-2], imported]


def test_prelabel_menu_opens_the_dialog_and_refreshes_counts(qtbot, folder40, monkeypatch):
    w = open_window(qtbot, folder40)
    assert w.act_prelabel.isEnabled() and w.act_prelabel.text().startswith("&Pre-label")
    w.act_prelabel.trigger()
    dlg = w.export_dialog
    qtbot.addWidget(dlg)
    from joyq_studio.ui.dialogs.prelabel import PrelabelDialog

    assert isinstance(dlg, PrelabelDialog)
    s = w.controller.session
    n0 = s.project.comparison_count()
    for i in range(5):  # what a run stores: comparisons behind the session's back
        s.project.add_comparison(s.hashes[i], s.hashes[i + 5], 1.0)
    dlg.labels_added.emit(5)
    assert f"{n0 + 5} comparisons" in w.compare.status.text()
    w.controller.close_project()
    assert not w.act_prelabel.isEnabled()


def test_pairs_from_menu_switches_the_source_and_the_folder_remembers_it(qtbot, folder40):
    w = open_window(qtbot, folder40)
    s = w.controller.session
    assert s.pair_source == "live"
    w.sources_menu.aboutToShow.emit()
    assert [a.isChecked() for a in w.sources_menu.actions()] == [True, False, False]
    w.set_pair_source("fixed-k")
    assert s.pair_source == "fixed-k" and s.project.get_meta("pair_source") == "fixed-k"
    qtbot.waitUntil(lambda: not s.compare.building, timeout=30_000)  # built on the worker
    for _ in range(3):  # the pair on screen (and any fetched before the switch) were the live model's
        press(qtbot, w, Qt.Key.Key_Left)
    assert s.project.comparisons()[-1][5] in ("near", "random")
    w.close()
    w2 = open_window(qtbot, folder40)
    assert w2.controller.session.pair_source == "fixed-k"


def test_the_rank_view_follows_a_calibration_with_another_number_of_buckets(qtbot, folder40):
    """K != 10 end to end (issue 25): calibrated by `joyq calibrate --buckets 5`, shown as five buckets."""
    from joyq_studio.cli import main

    open_window(qtbot, folder40).close()
    assert main(["calibrate", str(folder40), "--buckets", "5"]) == 0
    w = open_window(qtbot, folder40)
    show_rank(qtbot, w)
    assert [r.title.text() for r in w.rank.bucket_rows][::4] == ["<b>Bucket 4 (best)</b>", "<b>Bucket 0 (worst)</b>"]
    assert len(w.rank.bucket_rows) == 5 and sum(w.rank.hist.counts) == 40


def test_forget_older_clicks_is_a_checkable_choice_the_folder_keeps(qtbot, folder40):
    w = open_window(qtbot, folder40)
    s = w.controller.session
    assert not s.forgetting and not w.act_forget.isChecked()
    w.act_forget.trigger()  # checks it and turns forgetting on
    assert s.forgetting and s.live is not None and s.live.forget_half_life == 100
    press(qtbot, w, Qt.Key.Key_Left)
    w.close()
    w2 = open_window(qtbot, folder40)
    assert w2.controller.session.forgetting
    w2.act_forget.trigger()
    assert not w2.controller.session.forgetting
