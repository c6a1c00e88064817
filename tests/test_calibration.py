"""Tests for joyq_studio.ranking.calibration: tau/b fitting, ranks, buckets, labels, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from joyq_studio.metrics import sigmoid
from joyq_studio.ranking.calibration import (
    QUALITY_PHRASES,
    Calibration,
    CalibrationError,
    calibrate,
    default_labels,
    fit_tau,
)


def _bt_pairs(tau: float, n: int, seed: int, spread: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n comparisons drawn from P(first wins) = sigmoid((s1 - s2) / tau)."""
    rng = np.random.default_rng(seed)
    s1 = rng.normal(0, spread, n)
    s2 = rng.normal(0, spread, n)
    y = (rng.uniform(size=n) < sigmoid((s1 - s2) / tau)).astype(float)
    return s1, s2, y


@pytest.mark.parametrize("tau", [0.5, 1.0, 2.5])
def test_tau_is_recovered(tau: float) -> None:
    pairs = _bt_pairs(tau, 20000, seed=int(tau * 10))
    folder = np.random.default_rng(1).normal(0.3, 1.0, 2000)
    cal = calibrate(folder, pairs, method="b")
    assert cal.tau == pytest.approx(tau, rel=0.05)
    assert cal.pairs_used == 20000
    assert cal.fit_nll is not None and 0 < cal.fit_nll < np.log(2)


def test_tau_scales_with_the_scores() -> None:
    s1, s2, y = _bt_pairs(1.0, 5000, seed=2)
    t1, _ = fit_tau(s1 - s2, y)
    t3, _ = fit_tau(3 * (s1 - s2), y)
    assert t3 == pytest.approx(3 * t1, rel=1e-6)


def test_tau_is_the_bce_minimum() -> None:
    s1, s2, y = _bt_pairs(0.8, 3000, seed=3)
    d = s1 - s2
    tau, loss = fit_tau(d, y)

    def nll(t: float) -> float:
        p = np.clip(sigmoid(d / t), 1e-15, 1 - 1e-15)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))

    assert loss == pytest.approx(nll(tau), rel=1e-9)
    for f in (0.97, 1.03):
        assert nll(tau * f) > nll(tau)


@pytest.mark.parametrize("target", [None, 2.0, 7.5])
def test_b_hits_target_mean(target: float | None) -> None:
    folder = np.random.default_rng(4).gamma(2.0, 1.5, 3000)  # skewed folder
    cal = calibrate(folder, _bt_pairs(1.0, 2000, seed=5), target_mean=target)
    ranks, buckets = cal.apply(folder)
    want = 5.0 if target is None else target
    assert ranks.mean() == pytest.approx(want, abs=1e-3)
    assert cal.target_mean == want
    assert buckets.dtype == np.int64


def test_ranks_monotonic_and_bucket_rule() -> None:
    folder = np.random.default_rng(6).normal(size=500)
    for cal in (calibrate(folder, _bt_pairs(0.7, 2000, seed=7)), calibrate(folder, method="a")):
        s = np.linspace(folder.min() - 3, folder.max() + 3, 2001)
        ranks, buckets = cal.apply(s)
        assert np.all(np.diff(ranks) >= 0)
        assert np.all(np.diff(buckets) >= 0)
        assert np.all((ranks >= 0) & (ranks <= 10))
        np.testing.assert_array_equal(buckets, np.minimum(np.floor(ranks), 9).astype(int))
        assert buckets.min() == 0 and buckets.max() == 9


def test_method_b_formula() -> None:
    cal = Calibration(method="b", k=10, tau=0.5, b=1.0)
    ranks, buckets = cal.apply([1.0, 2.0, 0.0, 100.0])
    np.testing.assert_allclose(ranks, 10 * sigmoid((np.array([1.0, 2.0, 0.0, 100.0]) - 1.0) / 0.5))
    assert list(buckets) == [5, 8, 1, 9]  # rank 10 (s >> b) goes to the top bucket


def test_method_a_bucket_boundaries() -> None:
    cal = calibrate([0.0, 10.0, 3.0], method="a", k=10)
    assert (cal.score_min, cal.score_max) == (0.0, 10.0)
    s = np.array([0.0, 0.999, 1.0, 4.5, 9.0, 9.999, 10.0, -5.0, 15.0])
    ranks, buckets = cal.apply(s)
    np.testing.assert_allclose(ranks, [0, 0.999, 1, 4.5, 9, 9.999, 10, 0, 10])
    assert list(buckets) == [0, 0, 1, 4, 9, 9, 9, 0, 9]
    cal5 = calibrate([2.0, 4.0], method="a", k=5)
    assert list(cal5.apply([2.0, 2.41, 2.81, 3.99, 4.0])[1]) == [0, 1, 2, 4, 4]
    assert cal5.pairs_used == 0 and cal5.tau is None


def test_all_equal_scores() -> None:
    cal = calibrate([3.0] * 7, method="a")
    ranks, buckets = cal.apply([3.0] * 7)
    assert np.all(np.isfinite(ranks)) and np.all(ranks == 5.0)
    assert set(buckets) == {5}
    calb = calibrate([3.0] * 7, _bt_pairs(1.0, 500, seed=8))
    ranks_b, _ = calb.apply([3.0] * 7)
    np.testing.assert_allclose(ranks_b, 5.0, atol=1e-6)
    assert calb.b == pytest.approx(3.0, abs=1e-6)


def test_single_image() -> None:
    cal = calibrate([0.42], method="a")
    assert list(cal.apply([0.42])[1]) == [5]
    calb = calibrate([0.42], _bt_pairs(1.0, 500, seed=9), target_mean=8.0)
    assert calb.apply([0.42])[0][0] == pytest.approx(8.0, abs=1e-6)


def test_errors() -> None:
    with pytest.raises(CalibrationError, match="no scores"):
        calibrate([], method="a")
    with pytest.raises(CalibrationError, match="method A or collect more labels"):
        calibrate([1.0, 2.0], pairs=None, method="b")
    with pytest.raises(CalibrationError, match="method A or collect more labels"):
        calibrate([1.0, 2.0], pairs=([], [], []), method="b")
    s1, s2, y = _bt_pairs(1.0, 2000, seed=10)
    for method in ("b", "reference"):
        with pytest.raises(CalibrationError, match="better than chance"):
            calibrate([1.0, 2.0], (s1, s2, 1 - y), method=method)  # scores predict the opposite
    # plain maximum likelihood (the reference) cannot fit these; the prior (method B) can
    with pytest.raises(CalibrationError, match="every held-out comparison correctly"):
        calibrate([1.0], ([2.0, 3.0], [1.0, 0.0], [1.0, 1.0]), method="reference")
    with pytest.raises(CalibrationError, match="equal scores"):
        calibrate([1.0], ([2.0, 3.0], [2.0, 3.0], [1.0, 0.0]), method="reference")
    assert 0.3 < calibrate([1.0], ([2.0, 3.0], [1.0, 0.0], [1.0, 1.0])).tau < 1.0
    assert calibrate([1.0], ([2.0, 3.0], [2.0, 3.0], [1.0, 0.0])).tau == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(CalibrationError, match="strictly between"):
        calibrate([1.0, 2.0], _bt_pairs(1.0, 500, seed=11), target_mean=10.0)
    with pytest.raises(CalibrationError, match="Unknown calibration method"):
        calibrate([1.0], method="c")
    with pytest.raises(CalibrationError, match="NaN"):
        calibrate([1.0, float("nan")], method="a")
    with pytest.raises(CalibrationError, match="Expected 10 bucket labels"):
        calibrate([1.0, 2.0], method="a", labels=["bad", "good"])
    with pytest.raises(CalibrationError, match="same length"):
        calibrate([1.0], ([1.0, 2.0], [1.0], [1.0]))


def test_ties_are_accepted() -> None:
    s1, s2, y = _bt_pairs(1.0, 4000, seed=12)
    y[::10] = 0.5
    cal = calibrate(s1, (s1, s2, y))
    assert cal.tau > 0 and cal.pairs_used == 4000


def test_to_dict_round_trip_with_edited_labels() -> None:
    labels = [f"q{i}" for i in range(10)]
    cal = calibrate(np.linspace(0, 1, 50), _bt_pairs(1.0, 1000, seed=13), labels=labels, model_version="v3")
    d = cal.to_dict()
    text = json.dumps(d)  # JSON-safe
    back = Calibration.from_dict(json.loads(text))
    assert back == cal
    assert back.labels == labels and back.label_for(9) == "q9"
    assert back.model_version == "v3" and back.method == "b"
    s = np.random.default_rng(14).normal(size=100)
    np.testing.assert_array_equal(back.apply(s)[0], cal.apply(s)[0])
    edited = cal.with_labels(["x"] * 10)
    assert edited.label_for(0) == "x" and cal.label_for(0) == "q0"
    a = calibrate([1.0, 2.0], method="a", k=4)
    assert Calibration.from_dict(json.loads(json.dumps(a.to_dict()))) == a


def test_from_dict_rejects_newer_format() -> None:
    d = calibrate([1.0, 2.0], method="a").to_dict()
    d["format"] = 99
    with pytest.raises(CalibrationError, match="newer version"):
        Calibration.from_dict(d)


def test_default_labels() -> None:
    assert default_labels(10) == list(QUALITY_PHRASES)
    assert default_labels(5) == ["worst quality", "low quality", "average quality", "high quality", "best quality"]
    assert default_labels(1) == ["average quality"]
    for k in range(1, 16):
        labels = default_labels(k)
        assert len(labels) == k and len(set(labels)) == k
    cal = calibrate([1.0, 2.0], method="a", k=3)
    assert [cal.label_for(b) for b in range(3)] == ["worst quality", "average quality", "best quality"]
    with pytest.raises(IndexError):
        cal.label_for(3)


def test_other_k_is_used_consistently() -> None:
    folder = np.random.default_rng(15).normal(size=1000)
    cal = calibrate(folder, _bt_pairs(1.0, 2000, seed=16), k=7)
    ranks, buckets = cal.apply(folder)
    assert ranks.max() <= 7 and buckets.max() <= 6
    assert ranks.mean() == pytest.approx(3.5, abs=1e-3)
    assert len(cal.labels) == 7
