"""The live model in the real window (offscreen): a scripted person whose taste differs from
the base model in one planted way (warm colours count as better) clicks pairs of the demo
folder through the Compare view's keys; measured on pairs the person labels but is never
shown, the live model agrees with the person more than the base does, "Train -> Use this
model" leaves it no worse beyond noise, "Use the live model" adopts the live head as a
reversible version, and a saved taste starts another folder of the same tower."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("pytestqt")

from conftest import open_window
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from joyq_studio.demo import make_demo_folder
from joyq_studio.metrics import WORSE, paired_comparison
from joyq_studio.taste import wilson_interval

T = 30_000

CLICKS = 300
TEST_PAIRS = 500
LAPSE = 0.10  # the person presses the other key this often
WARMTH = 1.0  # the planted taste: weight of warm colours, in SDs, against 1 for the base model's score


def warmth(path) -> float:
    """Mean red minus mean blue of the image (0..1 scale): how warm its colours are."""
    im = np.asarray(Image.open(path).convert("RGB").resize((64, 64)), dtype=np.float64) / 255.0
    return float(im[..., 0].mean() - im[..., 2].mean())


def _z(values: dict[str, float]) -> dict[str, float]:
    v = np.array(list(values.values()))
    return {h: (x - v.mean()) / v.std() for h, x in values.items()}


class Person:
    """Judges as the base model does, plus one planted taste the base lacks: warm colours
    count as better (``WARMTH`` SDs of warmth against one SD of the base score); presses the
    wrong key with probability ``LAPSE``.

    Why warmth and not a degradation (e.g. "blur is worse than the base thinks"): the demo
    tower shipped today keeps quality on essentially one axis of its embedding (the base
    score's), so no linear head can express a taste that splits the degradation kinds (the
    "noise" indicator: R^2 0.18 on the top 10 principal directions of this folder's
    embeddings), while colour is well expressed (warmth: R^2 0.96).
    """

    def __init__(self, session, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        base = _z({h: session.score_of(h) for h in session.hashes})
        warm = _z({h: warmth(session.path(h)) for h in session.hashes})
        self.taste = {h: base[h] + WARMTH * warm[h] for h in session.hashes}

    def answer(self, a: str, b: str) -> float:
        o = 1.0 if self.taste[a] > self.taste[b] else 0.0
        return 1.0 - o if self.rng.random() < LAPSE else o


def agreement(scores: dict[str, float], pairs, y: np.ndarray) -> tuple[float, float, float, np.ndarray]:
    """(accuracy, low, high, P(first wins)) of scores on labelled pairs."""
    d = np.array([scores[a] - scores[b] for a, b in pairs])
    k = float(np.sum((d > 0) == (y == 1.0)))
    lo, hi = wilson_interval(k, len(y))
    return k / len(y), lo, hi, 1.0 / (1.0 + np.exp(-d))


def fmt(name: str, acc) -> str:
    return f"{name} {100 * acc[0]:.1f}% (95% interval {100 * acc[1]:.1f}-{100 * acc[2]:.1f}%)"


def test_scripted_person_teaches_the_live_model_a_planted_taste(qtbot, demo_folder, monkeypatch):
    t0 = time.perf_counter()
    w = open_window(qtbot, demo_folder, model="demo")
    c, view = w.controller, w.compare
    s = c.session
    assert s.live is not None, s.live_note
    base = {h: s.score_of(h) for h in s.hashes}
    person = Person(s)
    shown: set[frozenset] = set()
    for _ in range(CLICKS):
        pair = view.current
        shown.add(frozenset((pair.left, pair.right)))
        key = Qt.Key.Key_Left if person.answer(pair.left, pair.right) == 1.0 else Qt.Key.Key_Right
        qtbot.keyClick(view, key)
        qtbot.waitUntil(view.ready, timeout=T)
    t_click = time.perf_counter() - t0
    assert s.project.comparison_count() == CLICKS
    assert len(s.live.history) == CLICKS
    # the status strip: accuracy on held-out pairs only, live next to base, with count
    held = s.compare_stats()
    assert held is not None and held.heldout_count == sum(1 for h in s.live.history if h[3] == "heldout") > 0
    # the strip catches up when the worker has learnt the last clicks
    qtbot.waitUntil(lambda: f"{held.heldout_count} held-out pair" in view.status.text(), timeout=T)
    text = view.status.text()
    assert "agrees with your last" not in text and "predicted before learning" in text
    assert ("too few to tell" in text) == (held.heldout_count < 30)

    # 500 pairs the person labels, never shown
    hashes = sorted(s.hashes)
    rest = [(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1 :] if frozenset((a, b)) not in shown]
    rng = np.random.default_rng(1)
    pairs = [rest[k] for k in rng.choice(len(rest), size=TEST_PAIRS, replace=False)]
    y = np.array([person.answer(a, b) for a, b in pairs])
    live = s.live_scores()
    acc_base, acc_live = agreement(base, pairs, y), agreement(live, pairs, y)
    change = paired_comparison(acc_base[3], acc_live[3], y)
    print(
        f"\n{CLICKS} clicks in {t_click:.1f} s; {held.heldout_count} held-out among them; "
        f"on {TEST_PAIRS} unseen pairs: "
        f"{fmt('live', acc_live)}, {fmt('base', acc_base)}; paired: {change['sentence']}"
    )
    assert acc_live[0] > acc_base[0]

    # Train -> Use this model: the adopted head is no worse than the starting model beyond noise
    w.show_tab(1)
    panel = w.train
    assert panel.quick.isChecked() and "Bayesian" in panel.quick.text()
    with qtbot.waitSignal(panel.trained, timeout=180_000):  # a loaded 2-core machine
        w.train_now()
    vid = panel.result.version_id
    # a result that is too few to tell is adopted after the app asks (answered yes here)
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    panel.use_button.click()
    qtbot.waitUntil(lambda: s.project.active_version == vid and not c.busy_scoring(), timeout=T)
    adopted = {h: s.score_of(h) for h in s.hashes}
    acc_adopted = agreement(adopted, pairs, y)
    after = paired_comparison(acc_live[3], acc_adopted[3], y)
    print(f"Train -> Use this model: {fmt('adopted', acc_adopted)}; against the live model: {after['sentence']}")
    # Known gap (issue 20's closing note): the live head's likelihood has a lapse rate that the
    # quick training (a plain logistic head with an evidence-chosen scale) does not share, and on
    # this demo the adopted head can fall behind the live one. What the user relies on here:
    # training from these clicks never leaves them below the model they started from.
    against_base = paired_comparison(acc_base[3], acc_adopted[3], y)
    assert against_base["verdict"] != WORSE, against_base["sentence"]
    assert paired_comparison(acc_base[3], acc_adopted[3], y)["verdict"] != WORSE
    # the live model now starts from the adopted head and has replayed every click
    assert s.live is not None and len(s.live.history) == CLICKS
    assert not w.message.isVisible(), w.message.label.text()
    print(f"whole test {time.perf_counter() - t0:.1f} s")


def test_use_the_live_model_adopts_its_head_reversibly_and_the_taste_travels(qtbot, demo_folder, tmp_path, monkeypatch):
    w = open_window(qtbot, demo_folder, model="demo")
    c, view = w.controller, w.compare
    s = c.session
    assert not view.b_live.isEnabled()  # nothing learnt yet
    person = Person(s, seed=3)
    for _ in range(40):
        pair = view.current
        qtbot.keyClick(view, Qt.Key.Key_Left if person.answer(pair.left, pair.right) == 1.0 else Qt.Key.Key_Right)
        qtbot.waitUntil(view.ready, timeout=T)
    assert s.live_changed() and view.b_live.isEnabled()
    # the rank view can put the least certain images (live posterior SD) first
    with qtbot.waitSignal(w.rank.ranked, timeout=T):
        w.show_tab(2)
    w.rank.order.setCurrentIndex(w.rank.order.findData("uncertain"))
    sd = s.live_sd()
    for row in w.rank.bucket_rows:
        v = [sd[r.hash] for r in row.model.rows]
        assert v == sorted(v, reverse=True)
    w.show_tab(0)
    view.toggle_scores()
    assert "live" in view.left.score.text() and "\u00b1" in view.left.score.text()
    live = s.live_scores()
    base_key = s.model_key
    asked: list[str] = []  # 40 clicks hold a few held-out pairs: too few to tell, so the app asks first
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or QMessageBox.StandardButton.Yes)
    view.b_live.click()
    assert len(asked) == 1 and "too few to tell" in asked[0]
    qtbot.waitUntil(lambda: s.project.active_version is not None and not c.busy_scoring(), timeout=T)
    v = s.project.version(s.project.active_version)
    assert v["mode"] == "live" and s.model_key == v["model_key"] != base_key
    assert v["metrics_after"]["n"] == v["counts"]["test"]
    # the ranking's scores are now the live head's (fp16 embeddings: equal up to rounding)
    for h in s.hashes:
        assert math.isclose(s.score_of(h), live[h], rel_tol=1e-3, abs_tol=1e-3)
    # a personal taste travels: saved under a name in the user's library
    saved = c.save_taste("  warm  colours ")
    assert saved is not None and saved.parent.name == "tastes"
    live_w = s.base_head[0].copy()  # the adopted live head is now the live model's prior centre
    # reversible like any version
    w.show_tab(1)
    w.train.base_button.click()
    qtbot.waitUntil(lambda: s.project.active_version is None and not c.busy_scoring(), timeout=T)
    assert s.model_key == base_key and s.live is not None
    # another folder with the same tower starts from the saved taste
    other = tmp_path / "other"
    make_demo_folder(other, count=10, seed=5, size=128)
    assert c.open_folder(str(other), "demo")
    qtbot.waitUntil(lambda: not c.busy_scoring(), timeout=T)
    tastes = c.saved_tastes()
    assert [(t["name"], t["matches"]) for t in tastes] == [("warm colours", True)]
    c.start_from_taste(tastes[0]["path"])
    qtbot.waitUntil(lambda: not c.busy_scoring() and c.session.model_spec == str(saved), timeout=T)
    s2 = c.session
    assert s2.project.base_model == str(saved) and s2.project.active_version is None
    assert s2.live is not None and np.allclose(s2.live.w0, live_w, atol=1e-5)
    assert not w.message.isVisible(), w.message.label.text()


def test_undo_reaches_the_live_model_and_without_a_head_pairs_fall_back(qtbot, tmp_path):
    folder = tmp_path / "small"
    make_demo_folder(folder, count=12, seed=4, size=96)
    w = open_window(qtbot, folder, model="tiny")
    c, view = w.controller, w.compare
    s = c.session
    assert s.live is not None and s.selector is None
    pairs = []
    for key in (Qt.Key.Key_Left, Qt.Key.Key_Right, Qt.Key.Key_T):
        pairs.append(view.current)
        qtbot.keyClick(view, key)
        qtbot.waitUntil(view.ready, timeout=T)
    assert [h[2] for h in s.live.history] == [1.0, 0.0, 0.5]
    held = [p for p in pairs if p.kind == "heldout"]
    assert s.live.n_fitted == 3 - len(held)  # held-out pairs are never fitted
    qtbot.keyClick(view, Qt.Key.Key_Backspace)  # the tie: gone from the store and the model
    qtbot.waitUntil(view.ready, timeout=T)
    assert [h[2] for h in s.live.history] == [1.0, 0.0] and s.project.comparison_count() == 2
    # a model whose head is unknown: today's selector on the scores, and the strip says why
    s.set_model(s.model_spec, s.model_key, s.tower, None)
    c.pairs_reseeded.emit()
    assert s.live is None and s.selector is not None and s.selector.n_comparisons == 2
    qtbot.waitUntil(view.ready, timeout=T)
    qtbot.keyClick(view, Qt.Key.Key_Left)
    qtbot.waitUntil(view.ready, timeout=T)
    assert s.project.comparison_count() == 3 and s.selector.n_comparisons == 3
    assert s.live_note and s.live_note in view.status.text()
    assert "too few to tell" in view.status.text()
