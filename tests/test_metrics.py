"""Tests for joyq_studio.metrics: exactness against scipy / scikit-learn and pair conventions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import brier_score_loss, roc_auc_score

from joyq_studio import metrics as M

TOL = 1e-9


def _data(rng: np.random.Generator, n: int, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    if ties:
        x = rng.integers(0, 6, n).astype(float)
        y = x + rng.integers(0, 4, n)
    else:
        x = rng.normal(size=n)
        y = 0.6 * x + rng.normal(size=n)
    return x, y


# -- Bradley-Terry ------------------------------------------------------------------------


def test_bt_probability_values_and_stability() -> None:
    assert M.bt_probability(0.0, 0.0) == 0.5
    assert isinstance(M.bt_probability(1.0, 0.0), float)
    assert M.bt_probability(1.0, 0.0) == pytest.approx(1 / (1 + math.exp(-1)), abs=1e-15)
    a = np.array([-1000.0, -3.0, 0.0, 3.0, 1000.0])
    p = M.bt_probability(a, 0.0)
    assert np.all(np.isfinite(p))
    assert p[0] == 0.0 and p[-1] == 1.0
    np.testing.assert_allclose(p + M.bt_probability(0.0, a), 1.0, atol=1e-15)


# -- rank statistics vs scipy / sklearn -----------------------------------------------------


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("n", [2, 3, 17, 500, 5000])
def test_rank_correlations_match_scipy(n: int, ties: bool) -> None:
    rng = np.random.default_rng(n + 1000 * ties)
    x, y = _data(rng, n, ties)
    assert M.spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=TOL)
    assert M.kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=TOL)
    np.testing.assert_allclose(M.rankdata(x), stats.rankdata(x), atol=0)


def test_kendall_extremes_and_degenerate() -> None:
    x = np.arange(50.0)
    assert M.kendall_tau(x, x) == pytest.approx(1.0, abs=TOL)
    assert M.kendall_tau(x, -x) == pytest.approx(-1.0, abs=TOL)
    assert M.spearman(x, -x) == pytest.approx(-1.0, abs=TOL)
    assert math.isnan(M.kendall_tau(x, np.ones(50)))
    assert math.isnan(M.spearman(np.ones(50), x))
    assert math.isnan(M.kendall_tau([1.0], [2.0]))


def test_count_inversions_brute_force() -> None:
    rng = np.random.default_rng(3)
    for n in [0, 1, 2, 7, 64, 100]:
        v = rng.integers(0, 10, n)
        brute = sum(int(v[i] > v[j]) for i in range(n) for j in range(i + 1, n))
        assert M._count_inversions(v) == brute


@pytest.mark.parametrize("rounded", [False, True])
def test_auc_matches_sklearn(rounded: bool) -> None:
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 3000)
    scores = labels * 0.7 + rng.normal(size=3000)
    if rounded:  # many tied scores
        scores = np.round(scores)
    assert M.auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=TOL)


def test_auc_one_class_is_nan_and_bad_labels_raise() -> None:
    assert math.isnan(M.auc([0.1, 0.2], [1, 1]))
    with pytest.raises(ValueError):
        M.auc([0.1, 0.2], [1, 2])


def test_brier_matches_sklearn_weighted_and_not() -> None:
    rng = np.random.default_rng(6)
    y = rng.integers(0, 2, 1000)
    p = rng.uniform(size=1000)
    w = rng.uniform(0.1, 3.0, size=1000)
    assert M.brier_score(p, y) == pytest.approx(brier_score_loss(y, p), abs=TOL)
    assert M.brier_score(p, y, w) == pytest.approx(brier_score_loss(y, p, sample_weight=w), abs=TOL)


# -- pair metrics -------------------------------------------------------------------------


def test_pair_metrics_hand_example() -> None:
    p = np.array([0.9, 0.8, 0.3, 0.6, 0.5])
    y = np.array([1.0, 0.0, 0.0, 0.5, 1.0])
    m = M.pair_metrics(p, y)
    assert m["n"] == 5 and m["n_ties"] == 1
    # decisive: right, wrong, right, coin flip (p == 0.5) -> (1 + 0 + 1 + 0.5) / 4
    assert m["accuracy"] == pytest.approx(2.5 / 4)
    bce = -np.array(
        [math.log(0.9), math.log(0.2), math.log(0.7), 0.5 * math.log(0.6) + 0.5 * math.log(0.4), math.log(0.5)]
    )
    assert m["nll"] == pytest.approx(bce.mean())
    assert m["mcfadden_r2"] == pytest.approx(1 - bce.mean() / math.log(2))
    assert m["brier"] == pytest.approx(np.mean((p - y) ** 2))
    assert m["median_margin"] == pytest.approx(0.2)
    assert m["share_confident"] == pytest.approx(2 / 5)  # 0.4, 0.3 ; not 0.2, 0.1, 0
    sym_p = np.array([0.9, 0.8, 0.3, 0.5, 0.1, 0.2, 0.7, 0.5])
    sym_y = np.array([1, 0, 0, 1, 0, 1, 1, 0])
    assert m["auc"] == pytest.approx(roc_auc_score(sym_y, sym_p), abs=TOL)


def test_pair_metrics_invariant_to_pair_orientation() -> None:
    rng = np.random.default_rng(7)
    n = 400
    p = rng.uniform(size=n)
    y = (rng.uniform(size=n) < p).astype(float)
    y[::17] = 0.5
    flip = rng.uniform(size=n) < 0.5
    p2 = np.where(flip, 1 - p, p)
    y2 = np.where(flip, 1 - y, y)
    a, b = M.pair_metrics(p, y), M.pair_metrics(p2, y2)
    for key in a:
        assert a[key] == pytest.approx(b[key], abs=1e-12), key


def test_auc_defined_when_every_first_image_won() -> None:
    p = np.array([0.9, 0.6, 0.4, 0.7])
    y = np.ones(4)
    m = M.pair_metrics(p, y)
    assert 0.0 <= m["auc"] <= 1.0


def test_baseline_predictions() -> None:
    y = np.array([1.0, 0.0, 1.0, 0.5])
    m = M.pair_metrics(np.full(4, 0.5), y)
    assert m["nll"] == pytest.approx(math.log(2))
    assert m["mcfadden_r2"] == pytest.approx(0.0, abs=1e-15)
    assert m["accuracy"] == 0.5
    assert m["auc"] == 0.5
    assert m["ece"] == pytest.approx(0.0)


def _ece_as_in_reference_train_py(p: np.ndarray, y: np.ndarray, w: np.ndarray | None = None, bins: int = 15) -> float:
    """The JoyQuality reference's ECE (train.py ``_ece``), restated: confidence max(p, 1-p),
    bins from linspace(0, 1, bins + 1) found with digitize, clipped to the last bin, correct
    when (p >= 0.5) == (y == 1), each bin's |accuracy - confidence| weighted by its share."""
    conf = np.maximum(p, 1.0 - p)
    which = np.clip(np.digitize(conf, np.linspace(0.0, 1.0, bins + 1)) - 1, 0, bins - 1)
    hit = ((p >= 0.5) == (y == 1)).astype(float)
    w = np.ones(len(p)) if w is None else w
    total = 0.0
    for k in range(bins):
        inb = which == k
        if inb.any():
            share = w[inb].sum() / (w.sum() + 1e-12)
            total += share * abs(np.average(hit[inb], weights=w[inb]) - np.average(conf[inb], weights=w[inb]))
    return total


def test_ece_is_the_reference_definition_over_0_1() -> None:
    rng = np.random.default_rng(11)
    n = 5000
    p = rng.uniform(size=n)
    y = (rng.uniform(size=n) < p**1.5).astype(float)  # miscalibrated: a clear ECE
    w = rng.uniform(0.2, 2.0, size=n)
    m = M.pair_metrics(p, y, weights=w)
    assert m["ece"] == pytest.approx(_ece_as_in_reference_train_py(p, y), abs=1e-9)
    assert m["weighted_ece"] == pytest.approx(_ece_as_in_reference_train_py(p, y, w), abs=1e-9)
    # the two binnings really differ: [0, 1] puts 7/15..8/15 in one bin, [0.5, 1] splits it
    assert m["ece"] != pytest.approx(m["ece_fine"], abs=1e-6)
    # confidences on the bin edges k/15 go up one bin, as digitize puts them
    edges = np.array([8, 9, 10, 14, 15]) / 15
    p_edge = np.concatenate([edges, 1 - edges])
    y_edge = np.array([1, 0, 1, 1, 0, 0, 1, 0, 0, 1], dtype=float)
    assert M.expected_calibration_error(p_edge, y_edge) == pytest.approx(
        _ece_as_in_reference_train_py(p_edge, y_edge), abs=1e-12
    )


def _ece_fine_loop(p: np.ndarray, y: np.ndarray, w: np.ndarray, bins: int = 15) -> float:
    keep = y != 0.5
    p, y, w = p[keep], y[keep], w[keep]
    conf = np.maximum(p, 1 - p)
    correct = np.where(p == 0.5, 0.5, ((p > 0.5) == (y == 1)).astype(float))
    edges = np.linspace(0.5, 1.0, bins + 1)
    total = 0.0
    for k in range(bins):
        last = k == bins - 1
        inb = (conf >= edges[k]) & ((conf <= edges[k + 1]) if last else (conf < edges[k + 1]))
        if inb.any():
            wk = w[inb]
            gap = abs(np.average(correct[inb], weights=wk) - np.average(conf[inb], weights=wk))
            total += wk.sum() / w.sum() * gap
    return total


def test_ece_fine_matches_its_loop_and_both_are_small_when_calibrated() -> None:
    rng = np.random.default_rng(8)
    n = 20000
    p = rng.uniform(size=n)
    y = (rng.uniform(size=n) < p).astype(float)
    w = rng.uniform(0.2, 2.0, size=n)
    m = M.pair_metrics(p, y, weights=w)
    assert m["ece_fine"] == pytest.approx(_ece_fine_loop(p, y, np.ones(n)), abs=1e-12)
    assert M.expected_calibration_error_fine(p, y, weights=w) == pytest.approx(_ece_fine_loop(p, y, w), abs=1e-12)
    assert m["ece"] < 0.03 and m["ece_fine"] < 0.03
    overconfident = np.where(p > 0.5, 0.99, 0.01)
    assert M.pair_metrics(overconfident, y)["ece"] > 0.2


def test_aurc_hand_example_and_ordering() -> None:
    # confidence order 0.95, 0.8, 0.65, 0.6 ; errors 0, 0, 1, 1
    p = np.array([0.95, 0.2, 0.65, 0.4])
    y = np.array([1.0, 0.0, 0.0, 1.0])
    expected = np.mean([0 / 1, 0 / 2, 1 / 3, 2 / 4])
    assert M.aurc(p, y) == pytest.approx(expected)
    # Errors at the top are worse than errors at the bottom.
    p_bad = np.array([0.95, 0.8, 0.35, 0.6])  # errors on the two most confident
    y_bad = np.array([0.0, 0.0, 0.0, 1.0])
    assert M.aurc(p_bad, y_bad) > M.aurc(p, y)


def test_aurc_ties_in_confidence_use_expected_order() -> None:
    p = np.array([0.8, 0.8, 0.8, 0.8])
    y = np.array([1.0, 0.0, 1.0, 0.0])
    # Every ordering is equally likely: risk at each coverage is 0.5 in expectation.
    assert M.aurc(p, y) == pytest.approx(0.5)


def test_weighted_metrics_with_unit_weights_equal_plain() -> None:
    rng = np.random.default_rng(9)
    p = rng.uniform(size=300)
    y = (rng.uniform(size=300) < p).astype(float)
    m = M.pair_metrics(p, y, weights=np.ones(300))
    for key in ("accuracy", "nll", "brier", "ece"):
        assert m[f"weighted_{key}"] == pytest.approx(m[key], abs=1e-12)
    assert m["n_eff"] == pytest.approx(300)


def test_weighted_brier_matches_sklearn() -> None:
    rng = np.random.default_rng(10)
    p = rng.uniform(size=500)
    y = (rng.uniform(size=500) < p).astype(float)
    w = rng.uniform(0.1, 2, size=500)
    m = M.pair_metrics(p, y, weights=w)
    assert m["weighted_brier"] == pytest.approx(brier_score_loss(y, p, sample_weight=w), abs=TOL)


def test_pair_metrics_empty_and_all_ties() -> None:
    m = M.pair_metrics([], [])
    assert m["n"] == 0 and math.isnan(m["accuracy"]) and math.isnan(m["nll"])
    m = M.pair_metrics([0.7, 0.2], [0.5, 0.5])
    assert m["n_ties"] == 2
    assert math.isnan(m["accuracy"]) and math.isnan(m["auc"]) and math.isnan(m["ece"])
    assert math.isfinite(m["nll"]) and math.isfinite(m["brier"])


def test_pair_metrics_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        M.pair_metrics([0.5, 0.6], [1.0])
    with pytest.raises(ValueError):
        M.pair_metrics([1.5], [1.0])
    with pytest.raises(ValueError):
        M.pair_metrics([0.5], [0.3])
    with pytest.raises(ValueError):
        M.pair_metrics([np.nan], [1.0])


def test_score_pair_metrics_uses_bt_probability() -> None:
    sa, sb, y = np.array([2.0, 0.0]), np.array([0.0, 1.0]), np.array([1.0, 0.0])
    m = M.score_pair_metrics(sa, sb, y)
    assert m == M.pair_metrics(M.bt_probability(sa, sb), y)
    assert m["accuracy"] == 1.0


# -- distances and weights ----------------------------------------------------------------


def test_pair_distances_cosine() -> None:
    rng = np.random.default_rng(11)
    emb = rng.normal(size=(50, 8))
    emb[3] = 0.0
    i = rng.integers(0, 50, 200)
    j = rng.integers(0, 50, 200)
    d = M.pair_distances(emb, i, j, chunk=7)
    for k in range(200):
        a, b = emb[i[k]], emb[j[k]]
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        expected = 1.0 if na == 0 or nb == 0 else 1 - a @ b / (na * nb)
        assert d[k] == pytest.approx(np.clip(expected, 0, 2), abs=1e-12)
    assert M.pair_distances(emb, [5], [5])[0] == pytest.approx(0.0, abs=1e-12)


def test_distance_weights_correct_the_distribution() -> None:
    rng = np.random.default_rng(12)
    reference = rng.uniform(0.2, 1.0, size=20000)  # random pairs: spread out
    # Picked pairs, like the reference recipe: 70% nearest neighbours, 30% random.
    close = rng.beta(2, 8, size=3500) * 0.8 + 0.2
    test = np.concatenate([close, rng.uniform(0.2, 1.0, size=1500)])
    w = M.distance_weights(test, reference, bins=20)
    assert w.shape == test.shape
    assert w.mean() == pytest.approx(1.0)
    assert np.all(w > 0)
    # The weighted test mean moves to the reference mean.
    assert abs(np.average(test, weights=w) - reference.mean()) < 0.02
    assert abs(test.mean() - reference.mean()) > 0.1
    # Clipping bounds the spread of the weights (before the mean-1 rescale).
    assert w.max() / w.min() <= 10.0 * 10.0 + 1e-9


def test_distance_weights_identity_when_same_distribution() -> None:
    rng = np.random.default_rng(13)
    d = rng.uniform(size=1000)
    np.testing.assert_allclose(M.distance_weights(d, d), 1.0)
    np.testing.assert_allclose(M.distance_weights(np.full(5, 0.3), np.full(9, 0.3)), 1.0)
    assert M.distance_weights([], [0.1]).shape == (0,)


# -- table ---------------------------------------------------------------------------------


def test_format_metrics_table() -> None:
    before = {"n": 10, "accuracy": 0.75, "auc": float("nan")}
    after = {"n": 10, "accuracy": 0.8, "spearman": 0.5}
    text = M.format_metrics_table({"before": before, "after": after})
    lines = text.splitlines()
    assert [c.strip() for c in lines[0].split(" | ")] == ["metric", "before", "after"]
    assert set(lines[1]) <= {"-", "+"}
    rows = {line.split(" | ")[0].strip(): [c.strip() for c in line.split(" | ")[1:]] for line in lines[2:]}
    assert rows["accuracy"] == ["0.7500", "0.8000"]
    assert rows["n"] == ["10", "10"]
    assert rows["auc"] == ["n/a", "-"]
    assert rows["spearman"] == ["-", "0.5000"]
    assert [line.split(" | ")[0].strip() for line in lines[2:]] == ["n", "accuracy", "auc", "spearman"]
    only = M.format_metrics_table({"before": before}, keys=["accuracy"])
    assert len(only.splitlines()) == 3


def test_agreement_leaves_ties_out_and_counts_level_scores_half():
    from joyq_studio.metrics import agreement

    a = agreement([1.0, -2.0, 0.0, 3.0, 0.5], [1.0, 1.0, 0.0, 0.5, 0.0])
    # decisive: (1, won) right, (-2, won) wrong, (0, lost) half, (0.5, lost) wrong; the tie is left out
    assert (a.count, a.ties) == (4, 1)
    assert a.value == pytest.approx(1.5 / 4)
    assert a.low < a.value < a.high
    empty = agreement([0.2], [0.5])
    assert empty.count == 0 and empty.value != empty.value
