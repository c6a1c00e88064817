"""Planning a CPU run: the folder's time estimated from its first images, a stratified
random sample scored first, and the CPU variants' deviation check of `joyq bench cpu`."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from joyq_studio.model import load_model
from joyq_studio.scoring import ESTIMATE_IMAGES, make_estimate, score_project, stratified_sample
from joyq_studio.store import Project


def test_stratified_sample_spreads_over_subfolders():
    items = [(f"h{i}", f"a/{i:03d}.jpg") for i in range(80)]
    items += [(f"k{i}", f"b/c/{i:03d}.jpg") for i in range(19)]
    items += [("z0", "lonely/0.jpg")]
    sample = stratified_sample(items, 20, seed=1)
    assert len(sample) == 20 and len(set(sample)) == 20 and set(sample) <= set(items)
    counts = Counter(str(Path(rel).parent) for _, rel in sample)
    assert counts == {"a": 16, "b/c": 3, "lonely": 1}  # in proportion, every subfolder present
    assert sample == sorted(sample, key=lambda item: item[1])
    assert stratified_sample(items, 20, seed=1) == sample  # reproducible
    assert stratified_sample(items, 20, seed=2) != sample  # and random
    assert stratified_sample(items, 500) == items


def test_estimate_leaves_out_the_start_up_batch():
    e = make_estimate([(5, 9.0), (5, 1.0), (5, 1.5), (5, 0.5)], remaining=1000)
    assert e.measured == 20 and e.seconds_per_image == pytest.approx(3.0 / 15)
    assert (e.low, e.high) == (pytest.approx(0.1), pytest.approx(0.3))
    assert e.seconds_left == pytest.approx(200.0)
    assert "first 20 images" in e.sentence() and "1000 images left" in e.sentence()


@pytest.fixture
def folder(tmp_path, demo_folder):
    out = tmp_path / "photos"
    images = sorted(p for p in demo_folder.iterdir() if p.suffix in (".png", ".jpg"))
    for i, p in enumerate(images[:48]):
        sub = out / ("trip" if i % 3 else "home")
        sub.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, sub / p.name)
    return out


def test_score_estimates_first_then_scores_the_rest(folder):
    model = load_model("tiny")
    seen = []
    with Project(folder) as project:
        project.scan()
        summary = score_project(project, model, batch_size=8, workers=0, on_estimate=seen.append)
        assert summary.scored == 48 and not summary.failed
        assert len(seen) == 1 and seen[0].measured == ESTIMATE_IMAGES and seen[0].remaining == 48 - ESTIMATE_IMAGES
        assert 0 < seen[0].low <= seen[0].seconds_per_image <= seen[0].high


def test_sample_first_then_the_rest(folder):
    model = load_model("tiny")
    with Project(folder) as project:
        project.scan()
        first = score_project(project, model, batch_size=8, workers=0, sample=12)
        assert first.scored == 12 and first.left_out == 36
        rest = score_project(project, model, batch_size=8, workers=0)
        assert rest.already_done == 12 and rest.scored == 36 and rest.left_out == 0


def test_cli_sample_and_estimate(folder, capsys):
    from joyq_studio.cli.main import main

    assert main(["score", str(folder), "--model", "tiny", "--workers", "0", "--sample", "30"]) == 0
    captured = capsys.readouterr()
    assert "estimate: 10 images left" in captured.err and "first 20 images" in captured.err
    assert "18 images are left for" in captured.out


def test_bench_cpu_deviation_flags_a_variant_outside_tolerance():
    from joyq_studio.bench.cpu import spearman, tolerance

    rows = {r["variant"]: r for r in tolerance("tiny", ["fp32", "bf16"], 12)}
    assert rows["fp32"]["spearman"] == pytest.approx(1.0) and rows["fp32"]["max_abs_diff"] == 0
    assert rows["bf16"]["max_abs_diff"] > 0  # bf16 does change scores; the check sees it
    assert spearman(np.arange(5.0), np.arange(5.0)[::-1]) == pytest.approx(-1.0)


def test_app_shows_the_estimate(qtbot, folder):
    pytest.importorskip("PySide6")
    from joyq_studio.ui.window import MainWindow

    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    infos: list[str] = []
    w.controller.info.connect(infos.append)
    assert w.controller.open_folder(str(folder), "tiny")
    qtbot.waitUntil(lambda: not w.controller.busy_scoring(), timeout=60_000)
    estimates = [t for t in infos if t.startswith("Estimate:")]
    assert len(estimates) == 1 and "first 20 images" in estimates[0] and "28 images left" in estimates[0]
