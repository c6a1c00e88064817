"""Issue 25: quantile buckets (the default calibration), a folder's own bucket labels kept
through recalibration and retraining, `joyq labels`, and rank / bucket agreement for any K."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from joyq_studio.cli import main
from joyq_studio.ranking import (
    Calibration,
    CalibrationError,
    LabelError,
    calibrate,
    calibrate_project,
    default_labels,
    ensure_calibration,
    folder_labels,
    load_calibration,
    quantile_edges,
    ranked_images,
    reset_folder_labels,
    save_calibration,
    set_folder_label,
)
from joyq_studio.store import Project

N = 30


@pytest.fixture
def scored(tmp_path) -> Path:
    """N images with heavy-tailed scores (a confident model: most far from the middle)."""
    f = tmp_path / "pics"
    f.mkdir()
    rng = np.random.default_rng(1)
    for i in range(N):
        Image.fromarray(np.full((4, 4, 3), i, dtype=np.uint8)).save(f / f"img{i:02d}.png")
    scores = np.sign(rng.normal(size=N)) * rng.uniform(6, 12, N)  # two far-apart clusters
    with Project(f) as p:
        p.scan()
        p.save_scores("m1", [(p.hash_of(f"img{i:02d}.png"), float(s)) for i, s in enumerate(scores)])
        p.set_current_model_key("m1")
    return f


# -- quantile buckets -----------------------------------------------------------------------------
@pytest.mark.parametrize("k", [10, 7, 3])
def test_quantile_buckets_hold_equal_shares_and_keep_the_order(k):
    rng = np.random.default_rng(0)
    s = np.concatenate([rng.normal(-8, 0.5, 140), rng.normal(8, 0.5, 140)])  # B would crowd 0 and K-1
    cal = calibrate(s, method="q", k=k)
    ranks, buckets = cal.apply(s)
    counts = np.bincount(buckets, minlength=k)
    assert counts.max() - counts.min() <= 1 and counts.sum() == len(s)
    order = np.argsort(s)
    assert np.all(np.diff(ranks[order]) >= 0)  # monotone in the score
    assert np.array_equal(buckets, np.minimum(np.floor(ranks), k - 1))
    assert ranks.min() == 0.0 and ranks.max() == k


def test_quantile_ties_share_a_rank_and_equal_scores_sit_in_the_middle():
    s = np.array([0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 3.0])
    cal = calibrate(s, method="q", k=4)
    ranks = cal.ranks(s)
    assert len(set(ranks[1:6])) == 1  # tied scores, one rank
    flat = calibrate(np.full(5, 2.5), method="q")
    assert np.all(flat.ranks([2.5, 0.0, 9.0]) == 5.0)
    assert calibrate([4.0], method="q").apply([4.0])[1].tolist() == [5]


def test_quantile_calibration_round_trips_and_applies_to_new_scores():
    cal = calibrate(np.arange(11.0), method="q", k=10)
    back = Calibration.from_dict(cal.to_dict())
    assert back.to_dict() == cal.to_dict() and back.edges == quantile_edges(np.arange(11.0), 10)
    assert back.ranks([-5.0, 0.0, 4.5, 10.0, 99.0]).tolist() == [0.0, 0.0, 4.5, 10.0, 10.0]
    assert "quantile buckets" in back.describe() and "K = 10" in back.describe()
    with pytest.raises(CalibrationError, match="11 bucket edges"):
        Calibration(method="q", k=10, edges=[0.0, 1.0])
    with pytest.raises(CalibrationError, match="increasing order"):
        Calibration(method="q", k=2, edges=[0.0, 2.0, 1.0])


def test_default_is_quantile_and_b_would_crowd_this_folder(scored):
    with Project(scored) as p:
        cal, notes = calibrate_project(p)
        assert cal.method == "q" and notes == [cal.reason]
        assert cal.reason == (
            f"Quantile buckets were used (the default): each of the 10 buckets holds about a tenth of the {N} "
            "scored images, in score order."
        )
        counts = np.bincount([r.bucket for r in ranked_images(p, cal)], minlength=10)
        assert np.sort(counts)[-2:].sum() <= N / 2
        a, _ = calibrate_project(p, "a")  # two clusters: equal-width ranges leave the middle empty
        counts_a = np.bincount([r.bucket for r in ranked_images(p, a)], minlength=10)
        assert np.sort(counts_a)[-2:].sum() > N / 2


# -- a folder's own labels ------------------------------------------------------------------------
def test_a_label_outlives_recalibration_and_retraining(scored):
    with Project(scored) as p:
        cal, _ = ensure_calibration(p)
        set_folder_label(p, 9, "  keeper\nshot ", 10)
        assert folder_labels(p, 10)[9] == "keeper shot"
        assert load_calibration(p).labels[9] == "keeper shot"  # the saved calibration shows it at once
        for method in ("q", "a", "b"):  # recalibration brings no default label back
            new, _ = calibrate_project(p, method)
            save_calibration(p, new)
            assert load_calibration(p).labels[9] == "keeper shot"
        # retraining: another model, never calibrated
        p.save_scores("m2", [(h, float(i)) for i, (_, h) in enumerate(p.file_hashes())])
        p.set_current_model_key("m2")
        assert load_calibration(p) is None
        cal2, _ = ensure_calibration(p)
        assert cal2.labels[9] == "keeper shot" and ranked_images(p, cal2)[0].label == "keeper shot"
        # another K: the defaults of that K, the folder's ten kept for later
        five, _ = calibrate_project(p, k=5)
        assert five.labels == default_labels(5)
        reset_folder_labels(p)
        assert load_calibration(p).labels == default_labels(10)


def test_labels_given_to_calibrate_become_the_folders(scored):
    with Project(scored) as p:
        cal, _ = calibrate_project(p, "a", k=4, labels=["bad", "meh", "ok", "great"])
        save_calibration(p, cal)
        again, _ = calibrate_project(p, k=4)
        assert again.labels == ["bad", "meh", "ok", "great"]


def test_bad_labels_are_one_sentence(scored):
    with Project(scored) as p:
        with pytest.raises(LabelError, match=r"Bucket 10 is outside 0\.\.9"):
            set_folder_label(p, 10, "x", 10)
        with pytest.raises(LabelError, match="must not be empty"):
            set_folder_label(p, 3, "  ", 10)
        assert folder_labels(p, 10) == default_labels(10)


def test_cli_labels_lists_renames_and_resets(scored, capsys):
    assert main(["labels", str(scored)]) == 0
    out = capsys.readouterr().out
    assert "10 bucket labels (the defaults), 0 = worst .. 9 = best:" in out and "9 best quality" in out
    assert main(["labels", str(scored), "9", "portfolio"]) == 0
    assert "bucket 9 is now called 'portfolio'." in capsys.readouterr().out
    assert main(["calibrate", str(scored)]) == 0
    assert "9 portfolio" in capsys.readouterr().out  # `joyq calibrate` keeps it
    csv_path = scored.parent / "ranked.csv"
    assert main(["export", str(scored), "--csv", str(csv_path)]) == 0
    with csv_path.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert {r["label"] for r in rows if r["bucket_0_to_9"] == "9"} == {"portfolio"}
    assert main(["labels", str(scored), "12", "x"]) == 2
    assert "outside 0..9" in capsys.readouterr().err
    assert main(["labels", str(scored), "--reset"]) == 0
    assert "9 best quality" in capsys.readouterr().out


def test_csv_rank_and_bucket_agree_for_any_k(scored, capsys):
    """bucket = min(floor(rank), K - 1): the folder's top image has rank K in bucket K - 1."""
    for k in (10, 4):
        csv_path = scored.parent / f"ranked{k}.csv"
        assert main(["calibrate", str(scored), "--buckets", str(k)]) == 0
        assert main(["export", str(scored), "--csv", str(csv_path)]) == 0
        with csv_path.open(encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            bucket_col = next(c for c in reader.fieldnames or [] if c.startswith("bucket_"))
        assert bucket_col == f"bucket_0_to_{k - 1}"
        for r in rows:
            assert int(r[bucket_col]) == min(int(float(r["rank"])), k - 1)
        assert {int(r[bucket_col]) for r in rows} == set(range(k))
    capsys.readouterr()


def test_bench_calibration_planted_folder_table():
    """`joyq bench calibration`'s planted folder: q spreads exactly, b-capped keeps its caps."""
    from joyq_studio.bench.calibration import planted

    lines = planted(n=200, sd=3.0, tau=1.0, m=40, seed=0)
    rows = {line.split(" | ")[0].lstrip("| ").split(" (")[0]: line for line in lines if line.startswith("| ")}
    assert rows["q"].startswith("| q | 0.10 | 0.20 | 0.10 / 0.10 | — |")
    two = float(rows["b-capped"].split(" | ")[2])
    assert two <= 0.5 and "tau" in rows["b"]
