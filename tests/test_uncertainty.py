"""Every held-out number with its count and interval; paired before/after verdicts (issue 12)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from joyq_studio.cli import main
from joyq_studio.metrics import (
    MIN_PAIRS_TO_TELL,
    SAME,
    TOO_FEW,
    WORSE,
    format_accuracy,
    held_out_summary,
    paired_comparison,
    pairs_for_half_width,
    wilson_interval,
)
from joyq_studio.store import Project
from joyq_studio.training.versions import adoption_warning, no_comparisons_message


def test_wilson_interval_has_one_home():
    from joyq_studio.prelabel import agreement

    assert agreement.wilson_interval is wilson_interval
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)


def test_pairs_for_half_width_reaches_five_points():
    for k, n in [(6, 7), (0, 0), (3, 3), (50, 80)]:
        more = pairs_for_half_width(k, n)
        assert more > 0
        p = (k + 2) / (n + 4)
        lo, hi = wilson_interval(p * (n + more), n + more)
        assert (hi - lo) / 2 <= 0.05 + 1e-9
        lo, hi = wilson_interval(p * (n + more - 1), n + more - 1)
        assert (hi - lo) / 2 > 0.05  # the smallest such number
    assert pairs_for_half_width(300, 400) == 0  # 75% of 400: half-width 4.2 points already


def test_held_out_summary_intervals_cover_and_are_reproducible():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 120).astype(float)
    p = np.clip(0.5 + (y - 0.5) * 0.5 + rng.normal(0, 0.2, 120), 0.01, 0.99)
    s = held_out_summary(p, y)
    assert s["n_decisive"] == 120 and s["enough"]
    acc = s["correct"] / 120
    assert s["accuracy_low"] < acc < s["accuracy_high"]
    nll = float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))))
    assert s["nll_low"] < nll < s["nll_high"]
    assert s["ece_low"] <= s["ece_high"]
    assert held_out_summary(p, y) == s  # seeded
    few = held_out_summary(p[:7], y[:7])
    assert not few["enough"] and few["more_pairs_needed"] > 100


def test_paired_comparison_says_too_few_below_thirty_and_sees_a_real_change():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300).astype(float)
    weak = np.clip(0.5 + (y - 0.5) * 0.1 + rng.normal(0, 0.2, 300), 0.01, 0.99)
    strong = np.clip(0.5 + (y - 0.5) * 0.7 + rng.normal(0, 0.2, 300), 0.01, 0.99)
    # the case: 60% -> 40% on 7 pairs must not be called a change
    assert paired_comparison(strong[:7], weak[:7], y[:7])["verdict"] == TOO_FEW
    assert MIN_PAIRS_TO_TELL == 30
    worse = paired_comparison(strong, weak, y)
    assert worse["verdict"] == WORSE and worse["by"] == "accuracy"
    assert worse["accuracy_change"] < 0 and worse["accuracy_change_high"] < 0
    assert "points lower" in worse["sentence"]
    assert paired_comparison(strong, strong.copy(), y)["verdict"] == SAME
    twin = np.clip(0.5 + (y - 0.5) * 0.7 + rng.normal(0, 0.2, 300), 0.01, 0.99)  # as good, other noise
    assert paired_comparison(strong, twin, y)["verdict"] == SAME


def test_adoption_warning_only_for_worse_beyond_noise():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200).astype(float)
    good = np.where(y == 1, 0.8, 0.2)
    bad = np.where(rng.random(200) < 0.4, 1 - good, good)
    assert adoption_warning({"change": paired_comparison(bad, good, y)}) is None
    text = adoption_warning({"change": paired_comparison(good, bad, y)})
    assert text and "worse" in text and "points lower" in text
    assert adoption_warning({}) is None  # records from before this change


def test_format_accuracy_names_count_and_interval():
    assert format_accuracy(0.625, 40) == "62.5% of 40 (47-76%)"
    assert format_accuracy(math.nan, 0) == "n/a"


def test_train_without_comparisons_says_how_to_add_some(tmp_path, capsys):
    folder = tmp_path / "demo"
    assert main(["demo", str(folder), "--count", "20"]) == 0
    assert main(["score", str(folder), "--model", "demo", "--workers", "0"]) == 0
    with Project(folder) as p:
        assert p.base_model == "demo"  # train starts from the model the folder was scored with
    capsys.readouterr()
    assert main(["train", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "has no comparisons yet" in err and f"joyq import-pairs {folder} {folder / 'pairs.json'}" in err
    assert "tiny" not in err and err.count("\n") == 1  # one sentence
    assert "FILE.json" in no_comparisons_message(tmp_path)


def test_train_and_versions_print_counts_and_intervals_never_arrows(tmp_path, capsys):
    folder = tmp_path / "demo"
    assert main(["demo", str(folder), "--count", "40"]) == 0
    assert main(["score", str(folder), "--model", "demo", "--workers", "0"]) == 0
    assert main(["import-pairs", str(folder), str(folder / "pairs.json")]) == 0
    capsys.readouterr()
    assert main(["train", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "held-out accuracy (95% interval): before " in out and "% of " in out
    assert "too few to tell" in out and "more held-out comparisons" in out
    assert "→" not in out and "->" not in out
    with Project(folder) as p:
        v = p.versions()[-1]
    assert v["change"]["verdict"] == TOO_FEW
    after = v["metrics_after"]
    assert after["n_decisive"] > 0 and after["accuracy_low"] <= after["accuracy"] <= after["accuracy_high"]
    assert "held-out log loss (95% interval): before " in out
    assert main(["versions", str(folder)]) == 0
    listing = capsys.readouterr().out
    assert f"of {after['n_decisive']} (" in listing and "too few to tell" in listing and "→" not in listing

    # adopting a version that is worse beyond noise warns, saying by how much
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200).astype(float)
    good = np.where(y == 1, 0.8, 0.2)
    bad = np.where(rng.random(200) < 0.4, 1 - good, good)
    with Project(folder) as p:
        p.update_version_record(v["id"], change=paired_comparison(good, bad, y))
    assert main(["adopt", str(folder), v["id"]]) == 0
    err = capsys.readouterr().err
    assert "warning: this version is worse than the model it was trained from, beyond noise: accuracy is" in err
    assert "points lower" in err


def test_gui_helpers_clicks_and_when_to_colour():
    from joyq_studio.metrics import clicks_needed, held_out_sentences, shows_change

    assert clicks_needed(28, 0.1) == 280 and clicks_needed(0, 0.1) == 0
    assert not shows_change(None) and not shows_change({"verdict": TOO_FEW}) and not shows_change({"verdict": SAME})
    assert shows_change({"verdict": WORSE})
    lines = held_out_sentences(
        {"accuracy": 0.6, "n_decisive": 7},
        {"accuracy": 0.4, "n_decisive": 7},
        {"sentence": "too few to tell: 7 held-out pairs"},
    )
    assert lines[0] == (
        f"held-out accuracy (95% interval): before {format_accuracy(0.6, 7)}, after {format_accuracy(0.4, 7)}"
    )
    assert "60.0% of 7 (" in lines[0] and "→" not in "".join(lines)
    assert lines[-1] == "change: too few to tell: 7 held-out pairs."
