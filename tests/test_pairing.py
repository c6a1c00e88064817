"""Tests for joyq_studio.pairing (active pair selection) and the pairing benchmark helpers."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
from openskill.models import BradleyTerryFull

from joyq_studio.bench import pairing as bp
from joyq_studio.pairing import (
    KINDS,
    PairMix,
    PairSelector,
    expected_info_gain,
    fit_temperature,
    model_agreement,
    prior_from_scores,
    self_agreement,
    win_probability,
)


def _rater(truth: np.ndarray, seed: int = 0):
    """Noisy logistic rater: P(i beats j) = sigmoid(t_i - t_j)."""
    rng = np.random.default_rng(seed)

    def judge(i: int, j: int) -> float:
        return float(rng.random() < 1.0 / (1.0 + math.exp(-(truth[i] - truth[j]))))

    return judge


def _run(sel: PairSelector, judge, steps: int) -> list[tuple[int, int, str]]:
    out = []
    for _ in range(steps):
        i, j, kind = sel.next_pair_with_kind()
        out.append((i, j, kind))
        sel.record(i, j, judge(i, j))
    return out


# ----------------------------------------------------------------------------- maths


def test_win_probability_is_logistic_once_sigma_is_small():
    p = win_probability(1.3, 1e-6, 0.3, 1e-6)
    assert p == pytest.approx(1.0 / (1.0 + math.exp(-1.0)), abs=1e-9)
    # uncertainty pulls the prediction towards 1/2
    assert 0.5 < win_probability(1.3, 2.0, 0.3, 2.0) < p


def test_expected_info_gain_prefers_uncertain_coin_flips():
    base = expected_info_gain(0.0, 1.0, 0.0, 1.0)
    assert expected_info_gain(0.0, 2.0, 0.0, 2.0) > base  # more uncertain
    assert expected_info_gain(3.0, 1.0, 0.0, 1.0) < base  # predictable outcome
    assert base == pytest.approx(math.log1p(2.0 * 0.25))


def test_fit_temperature_recovers_planted_temperature():
    rng = np.random.default_rng(0)
    d = rng.normal(0.0, 3.0, 4000)
    o = (rng.random(d.size) < 1.0 / (1.0 + np.exp(-d / 2.0))).astype(float)
    assert fit_temperature(d, o) == pytest.approx(2.0, rel=0.1)
    # a useless score: slope ~ 0, temperature huge (or inf)
    o_rand = (rng.random(d.size) < 0.5).astype(float)
    assert fit_temperature(d, o_rand) > 10.0
    # no labels: the prior temperature
    assert fit_temperature([], []) == pytest.approx(1.0)


def test_prior_from_scores_splits_explained_and_remaining_variance():
    s = np.random.default_rng(1).normal(0.0, 1.5, 1000)
    mu0, sd0 = prior_from_scores(s, 0.0)
    assert np.allclose(mu0, 0.0) and np.allclose(sd0, 1.5)
    mu_weak, sd_weak = prior_from_scores(s, 0.3)
    mu_sharp, sd_sharp = prior_from_scores(s, 0.8)
    assert mu_sharp.std() > mu_weak.std() > 0
    assert sd_sharp[0] < sd_weak[0] < 1.5
    assert np.all(np.argsort(mu_sharp) == np.argsort(s))  # never reorders the model


def test_record_matches_openskill_and_ties_pull_together():
    sel = PairSelector(4, prior_mu=[0.5, -0.2, 0.0, 0.0], prior_sigma=[0.8, 0.5, 1.0, 1.0])
    ref = BradleyTerryFull(mu=0, sigma=1, beta=1 / math.sqrt(2), tau=0)
    a, b = ref.rating(mu=0.5, sigma=0.8), ref.rating(mu=-0.2, sigma=0.5)
    [[ra], [rb]] = ref.rate([[a], [b]], ranks=[1, 0])  # item 1 won
    sel.record(0, 1, 0.0)
    assert sel.mu[0] == pytest.approx(ra.mu) and sel.sigma[0] == pytest.approx(ra.sigma)
    assert sel.mu[1] == pytest.approx(rb.mu) and sel.sigma[1] == pytest.approx(rb.sigma)
    gap = sel.mu[0] - sel.mu[1]
    sel.record(0, 1, 0.5)  # a tie between unequal items moves them together
    assert 0 <= sel.mu[0] - sel.mu[1] < gap
    sel.record(2, 3, 1.0)
    assert sel.mu[2] > 0 > sel.mu[3] and sel.sigma[2] < 1.0 and sel.sigma[3] < 1.0
    with pytest.raises(ValueError):
        sel.record(2, 2, 1.0)
    with pytest.raises(ValueError):
        sel.record(2, 3, 0.7)


def test_agreement_helpers():
    assert self_agreement([1, 0, 1, 0.5], [1, 1, 1, 1]) == pytest.approx((1 + 0 + 1 + 0.5) / 4)
    assert math.isnan(self_agreement([], []))
    assert model_agreement([1.0, -2.0, 0.0, 3.0], [1, 1, 1, 0]) == pytest.approx((1 + 0 + 0.5 + 0) / 4)
    assert model_agreement([1.0, -2.0, 0.0, 3.0], [1, 1, 1, 0], last_n=2) == pytest.approx(0.25)


# ----------------------------------------------------------------------------- selector


def test_determinism_by_seed():
    truth = np.random.default_rng(3).normal(0, 1.5, 300)
    emb = np.random.default_rng(4).normal(size=(300, 16))
    runs = []
    for seed in (7, 7, 8):
        sel = PairSelector(300, embeddings=emb, seed=seed)
        runs.append(_run(sel, _rater(truth, 1), 150))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_no_self_pairs_no_accidental_repeats_and_kinds():
    n = 400
    truth = np.random.default_rng(5).normal(0, 1.5, n)
    emb = np.random.default_rng(6).normal(size=(n, 24))
    sel = PairSelector(n, embeddings=emb, seed=0)
    pairs = _run(sel, _rater(truth, 2), 1500)
    seen: dict[tuple[int, int], int] = {}
    kinds = {k: 0 for k in KINDS}
    for i, j, kind in pairs:
        assert i != j and 0 <= i < n and 0 <= j < n
        kinds[kind] += 1
        key = (min(i, j), max(i, j))
        if kind == "repeat":
            assert seen.get(key, 0) == 1  # only ever repeats an earlier pair, once
        else:
            assert key not in seen  # never by accident
        seen[key] = seen.get(key, 0) + 1
    assert all(c > 0 for c in kinds.values()), kinds
    assert kinds["info"] > kinds["near"] > kinds["heldout"] > kinds["repeat"]
    assert [c[3] for c in sel.history] == [k for _, _, k in pairs]  # kinds are recorded


def test_heldout_pairs_are_uniform():
    n = 60
    prior_mu = np.linspace(-4, 4, n)  # an informative prior must not bias held-out pairs
    sel = PairSelector(n, prior_mu=prior_mu, prior_sigma=0.5, seed=1, mix=PairMix(near=0.0, heldout=1.0, repeat=0.0))
    rng = np.random.default_rng(0)
    counts = np.zeros(n)
    gaps = []
    for _ in range(800):
        i, j, kind = sel.next_pair_with_kind()
        assert kind == "heldout"
        counts[i] += 1
        counts[j] += 1
        gaps.append(abs(prior_mu[i] - prior_mu[j]))
        sel.record(i, j, float(rng.random() < 0.5))
    from scipy.stats import chisquare

    assert chisquare(counts).pvalue > 0.001
    # mean |mu_i - mu_j| of uniform pairs over an even grid is (max - min) / 3 * (n+1)/n
    assert np.mean(gaps) == pytest.approx(8.0 / 3.0 * (n + 1) / n, rel=0.08)


def test_planted_ranking_is_recovered():
    n = 60
    truth = np.linspace(-3, 3, n)[np.random.default_rng(2).permutation(n)]
    sel = PairSelector(n, seed=3)
    _run(sel, _rater(truth, 4), 900)
    assert bp.spearman(sel.mu, truth) > 0.93


def test_priors_move_the_first_picks_toward_informative_pairs():
    n = 300
    prior_mu = np.linspace(-30, 30, n)  # every pair is a foregone conclusion ...
    prior_sigma = np.full(n, 0.1)
    prior_mu[[17, 230]] = [5.0, 5.05]  # ... except these two: close and uncertain
    prior_sigma[[17, 230]] = 2.0
    sel = PairSelector(n, prior_mu=prior_mu, prior_sigma=prior_sigma, seed=0, mix=PairMix(0, 0, 0))
    assert set(sel.next_pair()) == {17, 230}
    assert sel.last_kind == "info"
    # with a good model prior, first picks compare images of similar true quality
    truth = np.random.default_rng(8).normal(0, 1.5, 2000)
    scores = truth + np.random.default_rng(9).normal(0, 0.5, 2000)
    with_prior = PairSelector.from_model_scores(scores, seed=0, mix=PairMix(0, 0, 0))
    without = PairSelector(2000, seed=0, mix=PairMix(0, 0, 0))
    gap = lambda s: np.mean([abs(truth[i] - truth[j]) for i, j, _ in _run(s, _rater(truth), 100)])
    assert gap(with_prior) < 0.6 * gap(without)


def test_show_cap_exclusion_and_pending():
    n = 50
    sel = PairSelector(n, seed=0, max_shows=3, mix=PairMix(0, 0, 0))
    sel.exclude([0, 1, 2])
    judge = _rater(np.zeros(n))
    for _ in range(60):
        i, j = sel.next_pair()
        assert not {i, j} & {0, 1, 2}
        sel.record(i, j, judge(i, j))
    assert sel.shows[3:].max() <= 3
    sel.include([0])
    # a pair that was issued but not recorded is not issued again
    sel2 = PairSelector(3, seed=0, mix=PairMix(0, 0, 0))
    a, b = sel2.next_pair(), sel2.next_pair()
    assert set(a) != set(b)
    sel2.skip(*a)


def test_tiny_sets_keep_working_past_all_pairs():
    sel = PairSelector(5, seed=0)
    judge = _rater(np.arange(5.0))
    _run(sel, judge, 80)  # 8x the 10 distinct pairs
    count = {(k // 5, k % 5): c for k, c in sel.ledger.pair_count.items()}
    assert len(count) == 10 and max(count.values()) <= 1 + 3 * 80 // 10  # the pair limit
    # repeats go where they are informative: neighbours in quality, not foregone pairs
    near = sum(c for (a, b), c in count.items() if b - a == 1)
    far = sum(c for (a, b), c in count.items() if b - a >= 3)
    assert near > 3 * far


def test_repeats_measure_self_agreement_and_model_agreement():
    n = 200
    truth = np.random.default_rng(0).normal(0, 2, n)
    sel = PairSelector(n, seed=0, mix=PairMix(near=0, heldout=0.1, repeat=0.2))

    def perfect(i, j):  # a perfectly consistent rater
        return 1.0 if truth[i] > truth[j] else 0.0

    _run(sel, perfect, 400)
    first, again = sel.repeat_outcomes()
    assert len(first) == len(again) > 20
    assert sel.self_agreement() == 1.0
    assert sel.model_agreement(truth, last_n=100) == 1.0
    assert sel.model_agreement(-truth, last_n=100) == 0.0


def test_from_model_scores_replay_and_set_model_scores():
    n = 500
    truth = np.random.default_rng(1).normal(0, 1.5, n)
    scores = truth + np.random.default_rng(2).normal(0, 0.7, n)
    sel = PairSelector.from_model_scores(scores, seed=0)
    _run(sel, _rater(truth, 3), 400)
    comps = sel.history
    assert any(c[3] == "heldout" for c in comps)
    rebuilt = PairSelector.from_model_scores(scores, comps, seed=0)
    sel.set_model_scores(scores)
    assert np.allclose(rebuilt.mu, sel.mu) and np.allclose(rebuilt.sigma, sel.sigma)
    assert rebuilt.temperature == pytest.approx(sel.temperature)
    assert 0.5 < sel.temperature < 3.0
    mu = sel.mu.copy()
    sel.replay()
    assert np.allclose(sel.mu, mu)  # replay is idempotent
    assert sel.n_comparisons == 400
    # replaying someone else's comparisons (plain 3-tuples) works too
    sel.replay([(0, 1, 1.0), (2, 3, 0.5)])
    assert sel.n_comparisons == 2 and sel.history[0][3] == "other"


def test_performance_sanity_at_100k_items():
    """No timing asserts (speed lives in `joyq bench pairing`); just that it runs at scale."""
    n = 100_000
    rng = np.random.default_rng(0)
    scores = rng.normal(0, 1.5, n)
    emb = rng.normal(size=(n, 32)).astype(np.float32)
    sel = PairSelector.from_model_scores(scores, embeddings=emb, seed=0)
    for _ in range(300):
        i, j = sel.next_pair()
        assert i != j
        sel.record(i, j, float(scores[i] > scores[j]))
    comps = [(int(a), int(b), 1.0) for a, b in rng.integers(0, n, size=(3000, 2)) if a != b]
    sel.replay(comps)
    assert sel.n_comparisons == len(comps)
    assert np.all(np.diff(sel._mu_sorted) >= 0) and np.array_equal(sel.mu[sel._order], sel._mu_sorted)


# ----------------------------------------------------------------------------- benchmark


def test_bench_estimator_and_metrics():
    rng = np.random.default_rng(0)
    truth = rng.normal(0, 1.5, 100)
    i = rng.integers(0, 100, 3000)
    j = (i + rng.integers(1, 100, 3000)) % 100
    o = (rng.random(3000) < 1 / (1 + np.exp(-(truth[i] - truth[j])))).astype(float)
    est = bp.bt_map(100, i, j, o, 0.0, 2.0)
    assert bp.spearman(est, truth) > 0.9
    from scipy.stats import kendalltau, spearmanr

    x = np.round(rng.normal(size=50), 1)
    y = x + rng.normal(size=50)
    assert bp.spearman(x, y) == pytest.approx(spearmanr(x, y).statistic)
    assert bp.kendall(x, y) == pytest.approx(kendalltau(x, y).statistic)


def test_bench_pipeline_tiny(tmp_path):
    blocks = [
        bp.Block("asap", 12, (0.5, 1.0), ("random", "fixed-k4", "ours"), 2),
        bp.Block("app", 120, (0.5, 2.0), ("random", "fixed-k4", "ours-noprior", "ours-rho0.9"), 2),
    ]
    rows = bp.run_blocks(blocks, jobs=1, log=lambda s: None)
    assert len(rows) == 2 * 2 * 3 + 2 * 2 * 4
    md, verdicts = bp.tables(rows, blocks)
    assert "| ours | spearman |" in md and "rmse" in md and verdicts
    if importlib.util.find_spec("matplotlib") is None:  # the `bench` extra, not `test`
        assert not bp.plot(rows, blocks, str(tmp_path / "p.png"))
    else:
        assert bp.plot(rows, blocks, str(tmp_path / "p.png"))
        assert (tmp_path / "p.png").stat().st_size > 1000


def test_trust_gate_asks_the_labels_for_evidence():
    n = 400
    rng = np.random.default_rng(21)
    truth = rng.normal(0, 1.5, n)
    good = truth + rng.normal(0, 0.5, n)
    useless = rng.normal(0, 1.5, n)
    i = rng.integers(0, n, 300)
    j = (i + rng.integers(1, n, 300)) % n
    o = (rng.random(300) < 1.0 / (1.0 + np.exp(-(truth[i] - truth[j])))).astype(float)
    labels = [(int(a), int(b), float(c), "heldout") for a, b, c in zip(i, j, o)]
    # no labels yet: the slope prior alone decides, and the model orders the images
    assert PairSelector.from_model_scores(useless, seed=0).prior_mu.std() > 0
    # with labels, only the labels count: a useless model is switched off ...
    off = PairSelector.from_model_scores(useless, labels, seed=0)
    assert np.allclose(off.prior_mu, 0.0)
    # ... and so is one the labels favour only weakly (below TRUST_MIN_SD of ordering)
    weak = PairSelector.from_model_scores(0.05 * good + useless, labels, seed=0)
    assert np.allclose(weak.prior_mu, 0.0)
    on = PairSelector.from_model_scores(good, labels, seed=0)
    assert bp.spearman(on.prior_mu, truth) > 0.9


def test_anchors_favour_uncertain_images_where_the_ranking_is_crowded():
    n = 1000
    mu = np.sort(np.random.default_rng(3).normal(0, 1.5, n))
    sel = PairSelector(n, prior_mu=mu, prior_sigma=1.0, seed=0, mix=PairMix(0, 0, 0))
    score = sel._anchor_score()
    middle, tails = np.abs(mu) < 0.5, np.abs(mu) > 3.0
    assert score[middle].min() > 3 * score[tails].max()
    i, j = sel.next_pair()
    assert abs(mu[i]) < 1.0 and abs(mu[j]) < 1.0
    flat = PairSelector(n, prior_mu=mu, prior_sigma=1.0, seed=0, rank_weight=0.0)
    assert np.allclose(flat._anchor_score(), 1.0)
    # uncertainty still counts: a certain image in the middle is no anchor
    sig = np.ones(n)
    sig[np.abs(mu) < 0.5] = 0.01
    assert np.argmax(PairSelector(n, prior_mu=mu, prior_sigma=sig, seed=0)._anchor_score()) not in np.flatnonzero(
        sig < 1
    )


def test_repeats_wait_for_coverage():
    n = 1000
    truth = np.random.default_rng(4).normal(0, 1.5, n)
    sel = PairSelector(n, seed=0, mix=PairMix(0, 0.1, 0.3))
    kinds = [k for _, _, k in _run(sel, _rater(truth, 5), 199)]
    assert "repeat" not in kinds  # min(REPEAT_START, n / 2) = 200 comparisons first
    kinds = [k for _, _, k in _run(sel, _rater(truth, 6), 100)]
    assert kinds.count("repeat") > 10


def test_selector_shows_no_image_more_than_twice_in_20_pairs_and_front_loads_heldout():
    from joyq_studio.taste.pacing import heldout_target

    rng = np.random.default_rng(5)
    truth = rng.normal(size=300)
    sel = PairSelector(300, seed=5)
    for _ in range(150):
        i, j, _ = sel.next_pair_with_kind()
        sel.record(i, j, float(rng.random() < 1 / (1 + np.exp(truth[j] - truth[i]))))
    pairs = [(h[0], h[1]) for h in sel.history]
    for s in range(len(pairs) - 19):
        counts: dict[int, int] = {}
        for a, b in pairs[s : s + 20]:
            counts[a] = counts.get(a, 0) + 1
            counts[b] = counts.get(b, 0) + 1
        assert max(counts.values()) <= 2
    assert sum(h[3] == "heldout" for h in sel.history) == heldout_target(150)
