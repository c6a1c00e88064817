"""Calibration that survives few labels (issue 12): tau with a prior on the unbiased labels,
method A with a sentence when labels are too few, never a folder in one or two buckets
because of a handful of comparisons, and the original recipe by name."""

from __future__ import annotations

import math

import numpy as np
import pytest

from joyq_studio.metrics import sigmoid
from joyq_studio.ranking import (
    MIN_LABELS_B,
    calibrate,
    calibrate_project,
    ensure_calibration,
    fit_tau_map,
    ranked_images,
)
from joyq_studio.store import Project

PLANTED_TAU = 2.5


def _folder_with_labels(
    tmp_path, n_labels: int, tau: float = PLANTED_TAU, seed: int = 0, n_images: int = 200, spread: float = 2.0
):
    """A project of ``n_images`` tiny files with scores N(0, spread^2) and ``n_labels`` held-out
    comparisons drawn from P(first wins) = sigmoid((s1 - s2) / tau)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder = tmp_path / f"f{n_labels}"
    folder.mkdir()
    for i in range(n_images):
        Image.fromarray(np.full((4, 4, 3), i % 256, dtype=np.uint8)).save(folder / f"img{i:03d}_{i // 256}.png")
        if i >= 256:
            raise ValueError("keep n_images <= 256 so every file differs")
    p = Project(folder)
    p.scan()
    hashes = [h for _, h in p.file_hashes()]
    scores = rng.normal(0.0, spread, len(hashes))
    p.save_scores("m", list(zip(hashes, scores.tolist())))
    p.set_current_model_key("m")
    rows = []
    for _ in range(n_labels):
        i, j = rng.choice(len(hashes), 2, replace=False)
        win = rng.uniform() < sigmoid((scores[i] - scores[j]) / tau)
        rows.append((hashes[i], hashes[j], 1.0 if win else 0.0, "test", "uniform"))
    p.add_comparisons(rows)
    return p, scores


@pytest.mark.parametrize("n_labels", [5, 20, 200])
def test_planted_tau_with_5_20_and_200_labels(tmp_path, n_labels):
    p, scores = _folder_with_labels(tmp_path, n_labels)
    with p:
        cal, notes = calibrate_project(p, "b")
        counts = np.bincount(cal.apply(scores)[1], minlength=10)
        assert counts.max() < 0.5 * len(scores) and (counts > 0).sum() >= 6  # never one or two buckets
        assert notes[0] == cal.reason and cal.reason.endswith(".")
        if n_labels < MIN_LABELS_B:
            assert cal.method == "a"
            assert cal.reason == (
                "Method B (sigmoid ranks) was asked for, but there are only 5 held-out "
                "comparisons with a winner and sigmoid ranks need at least 10 to fit their "
                "temperature; method A (equal-width score ranges) was used instead."
            )
        elif n_labels == 20:
            assert cal.method == "b" and cal.pairs_used == 20
            assert 1.0 <= cal.tau <= PLANTED_TAU * 1.3  # between the prior and the truth
        else:
            assert cal.method == "b" and abs(math.log(cal.tau / PLANTED_TAU)) < 0.25
            assert "with a prior centred on 1" in cal.reason


def test_a_handful_of_perfectly_ordered_labels_does_not_collapse_the_folder():
    rng = np.random.default_rng(3)
    folder = rng.normal(0, 2, 200)
    s1, s2 = np.sort(rng.normal(0, 2, (2, 12)), axis=0)[::-1]
    y = np.ones(12)  # every pair ordered as the scores say: plain maximum likelihood wants tau -> 0
    cal = calibrate(folder, (s1, s2, y))
    counts = np.bincount(cal.apply(folder)[1], minlength=10)
    assert 0.3 < cal.tau < 1.5 and counts[[0, 9]].sum() < 0.5 * len(folder)
    # seven noisy labels no longer send tau to 11.9 (the whole folder into buckets 4-5)
    d = np.array([0.3, -0.2, 0.1, 0.4, -0.1, 0.2, -0.3])
    tau, _ = fit_tau_map(d, np.array([0, 1, 0, 1, 1, 0, 0.0]))
    assert tau < 3.0


def test_a_confident_model_still_spreads_over_the_buckets_by_default(tmp_path):
    """Issue 25: sigmoid ranks crowd a confident model's folder into the end buckets; the
    default (quantile buckets) never puts more than half the folder into two buckets."""
    p, scores = _folder_with_labels(tmp_path, 200, tau=0.05, spread=8.0)  # scores far apart for tau ~ 1
    with p:
        cal, notes = calibrate_project(p)
        assert cal.method == "q" and notes == [cal.reason]
        assert cal.reason.startswith("Quantile buckets were used (the default): each of the 10 buckets holds about")
        counts = np.bincount(cal.apply(scores)[1], minlength=10)
        assert np.sort(counts)[-2:].sum() <= 0.5 * len(scores) and counts[9] <= 0.15 * len(scores)
        asked, notes = calibrate_project(p, "b")  # asked for: used, with a note
        assert asked.method == "b" and any(n.startswith("Note that sigmoid ranks with tau = ") for n in notes)
        crowded = np.sort(np.bincount(asked.apply(scores)[1], minlength=10))[-2:].sum()
        assert crowded > 0.5 * len(scores)  # what the default avoids


def test_reference_method_reproduces_the_original_mean_rank():
    rng = np.random.default_rng(5)
    folder = rng.normal(0, 1.5, 3000)
    s1, s2 = rng.normal(0, 1.5, (2, 4000))
    y = (rng.uniform(size=4000) < sigmoid(s1 - s2)).astype(float)
    ours = calibrate(folder, (s1, s2, y), method="b")
    ref = calibrate(folder, (s1, s2, y), method="reference")
    assert ours.ranks(folder).mean() == pytest.approx(5.0, abs=1e-3)
    assert ref.ranks(folder).mean() == pytest.approx(50 / 9, abs=1e-3)  # 9 sigmoid searched, 10 sigmoid ranked
    assert ref.mean_rank_target() == pytest.approx(50 / 9) and ref.tau_prior_sd is None
    assert "reference" in ref.describe() and "mean rank 5.56" in ref.describe()
    assert ref.apply(folder)[1].max() <= 9  # buckets 0-9 (int(rank), clipped)


def test_status_notes_are_plain_sentences(tmp_path):
    p, _ = _folder_with_labels(tmp_path, 0)
    with p:
        cal, notes = ensure_calibration(p)
        assert notes == [
            "This folder had no calibration for the current model yet, so one was made now and saved.",
            cal.reason,
        ]
        assert all(n[0].isupper() and n.endswith(".") and "; method A was used:" not in n for n in notes)
        assert ensure_calibration(p)[1] == []
        assert {r.bucket for r in ranked_images(p, cal)} <= set(range(10))
