"""Pairwise and ranking metrics for JoyQuality scores: the one implementation used by
the CLI, the GUI, training and the tests.

Score model
-----------
JoyQuality gives each image one latent score ``s``. Under the Bradley-Terry model the
probability that image A is preferred over image B is

    P(A beats B) = sigmoid(s_A - s_B) = 1 / (1 + exp(-(s_A - s_B))).

:func:`bt_probability` is the only place this is written down; everything else imports it.

Pair conventions
----------------
A *pair* is (p, y): ``p`` is the predicted probability that the *first* image wins and
``y`` is what happened to the first image: 1 = win, 0 = loss, 0.5 = tie ("equal").

* Ties (y == 0.5) count towards ``n``, ``nll``, ``mcfadden_r2``, ``brier``,
  ``median_margin`` and ``share_confident`` (all well defined for a soft target), but
  are **excluded** from ``accuracy``, ``auc``, ``ece`` and ``aurc`` (which need a winner).
* A prediction of exactly p == 0.5 picks no side; it scores 0.5 "correct" in accuracy,
  ECE and AURC (the expected value of a coin flip).
* AUC: the order of images inside a pair is arbitrary, so a plain AUC of p against y
  would depend on how pairs happened to be oriented (and is undefined if every first
  image won). We use the *symmetrised* set {(p, y)} U {(1 - p, 1 - y)} over decisive
  pairs, which always holds both classes and is invariant to re-orienting any pair.

Runtime code depends on numpy only (scipy / scikit-learn appear only in the tests, which
check :func:`spearman`, :func:`kendall_tau`, :func:`auc` and :func:`brier_score`
against them).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "sigmoid",
    "bt_probability",
    "pair_metrics",
    "score_pair_metrics",
    "brier_score",
    "expected_calibration_error",
    "expected_calibration_error_fine",
    "aurc",
    "auc",
    "rankdata",
    "spearman",
    "kendall_tau",
    "pair_distances",
    "distance_weights",
    "format_metrics_table",
    "METRIC_KEYS",
    "HIGHER_IS_BETTER",
    "Z95",
    "MIN_PAIRS_TO_TELL",
    "TARGET_HALF_WIDTH",
    "wilson_interval",
    "Agreement",
    "agreement",
    "AGREEMENT_KEY",
    "pairs_for_half_width",
    "bootstrap_interval",
    "held_out_summary",
    "paired_comparison",
    "format_accuracy",
    "robustness_text",
    "clicks_needed",
    "shows_change",
    "held_out_sentences",
    "BETTER",
    "WORSE",
    "SAME",
    "TOO_FEW",
]

#: Clip applied to probabilities before taking logs (keeps NLL finite for p in {0, 1}).
PROB_EPS = 1e-12
#: Number of equal-width confidence bins of ECE (over [0, 1], as the reference; ``ece_fine``: over [0.5, 1]).
ECE_BINS = 15
#: |p - 0.5| above this counts as a "confident" prediction (p > 0.7 or p < 0.3).
CONFIDENT_MARGIN = 0.2

#: Keys of :func:`pair_metrics`, in display order.
METRIC_KEYS: tuple[str, ...] = (
    "n",
    "n_ties",
    "accuracy",
    "nll",
    "mcfadden_r2",
    "auc",
    "brier",
    "ece",
    "ece_fine",
    "aurc",
    "median_margin",
    "share_confident",
    "n_eff",
    "weighted_accuracy",
    "weighted_nll",
    "weighted_brier",
    "weighted_ece",
)

#: Direction of improvement per metric (for colouring "before -> after" in the GUI).
HIGHER_IS_BETTER: dict[str, bool] = {
    "accuracy": True,
    "nll": False,
    "mcfadden_r2": True,
    "auc": True,
    "brier": False,
    "ece": False,
    "ece_fine": False,
    "aurc": False,
    "median_margin": True,
    "share_confident": True,
    "weighted_accuracy": True,
    "weighted_nll": False,
    "weighted_brier": False,
    "weighted_ece": False,
    "spearman": True,
    "kendall_tau": True,
}


# --------------------------------------------------------------------------------------
# Bradley-Terry probability
# --------------------------------------------------------------------------------------


def sigmoid(x: ArrayLike) -> np.ndarray | float:
    """Logistic function sigma(x) = 1 / (1 + e^-x), evaluated without overflow.

    Uses sigma(x) = e^x / (1 + e^x) for x < 0 so that exp() never sees a large positive
    argument. Returns a Python float for scalar input, an array otherwise.
    """
    arr = np.asarray(x, dtype=np.float64)
    z = np.exp(-np.abs(arr))  # in (0, 1]
    out = np.where(arr >= 0, 1.0 / (1.0 + z), z / (1.0 + z))
    return float(out) if out.ndim == 0 else out


def bt_probability(score_a: ArrayLike, score_b: ArrayLike) -> np.ndarray | float:
    """Bradley-Terry probability that A beats B: sigmoid(score_a - score_b)."""
    diff = np.asarray(score_a, dtype=np.float64) - np.asarray(score_b, dtype=np.float64)
    return sigmoid(diff)


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def _as_1d(name: str, x: ArrayLike) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    return arr


def _check_same_length(**arrays: np.ndarray) -> None:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"{k}={v}" for k, v in lengths.items())
        raise ValueError(f"Arrays must have the same length ({desc}).")


def _weights_or_ones(weights: ArrayLike | None, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    w = _as_1d("weights", weights)
    if len(w) != n:
        raise ValueError(f"weights has length {len(w)} but there are {n} pairs.")
    if np.any(w < 0):
        raise ValueError("weights must be non-negative.")
    return w


def _wmean(x: np.ndarray, w: np.ndarray) -> float:
    total = w.sum()
    return float(np.dot(x, w) / total) if total > 0 else math.nan


def _correctness(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """1 if the side predicted by p won, 0 if it lost, 0.5 if p == 0.5 (decisive y only)."""
    return np.where(p == 0.5, 0.5, ((p > 0.5) == (y > 0.5)).astype(np.float64))


def _log_loss_terms(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-pair binary cross-entropy -[y ln p + (1 - y) ln(1 - p)], p clipped to [eps, 1-eps]."""
    pc = np.clip(p, PROB_EPS, 1.0 - PROB_EPS)
    return -(y * np.log(pc) + (1.0 - y) * np.log1p(-pc))


# --------------------------------------------------------------------------------------
# Individual metrics
# --------------------------------------------------------------------------------------


def brier_score(p: ArrayLike, y: ArrayLike, weights: ArrayLike | None = None) -> float:
    """Brier score: sum_i w_i (p_i - y_i)^2 / sum_i w_i (matches sklearn brier_score_loss)."""
    pa, ya = _as_1d("p", p), _as_1d("y", y)
    _check_same_length(p=pa, y=ya)
    w = _weights_or_ones(weights, len(pa))
    return _wmean((pa - ya) ** 2, w)


def expected_calibration_error(
    p: ArrayLike, y: ArrayLike, weights: ArrayLike | None = None, bins: int = ECE_BINS
) -> float:
    """Expected calibration error as the JoyQuality reference defines it (its ``_ece``), so
    values compare with its published curves.

    confidence c_i = max(p_i, 1 - p_i), correctness a_i = 1 if the predicted side won.
    ``bins`` equal-width bins over **[0, 1]** (edges ``linspace(0, 1, bins + 1)``, bin of c =
    ``digitize(c, edges) - 1`` clipped to the last bin; as c >= 0.5 only the upper half is
    ever used, and the bin holding 0.5 spans 7/15..8/15 with 15 bins)::

        ECE = sum_k (W_k / W) * | mean_w(a | B_k) - mean_w(c | B_k) |

    Ties (y == 0.5) are dropped (the reference's data has none). One convention differs,
    on a set of measure zero: p == 0.5 counts 0.5 correct here (a coin flip), where the
    reference's ``p >= 0.5`` calls it a vote for the first image. NaN if nothing is left.
    See :func:`expected_calibration_error_fine` for the finer binning over [0.5, 1].
    """
    edges = np.linspace(0.0, 1.0, bins + 1)
    return _binned_ece(p, y, weights, bins, lambda conf: np.digitize(conf, edges) - 1)


def expected_calibration_error_fine(
    p: ArrayLike, y: ArrayLike, weights: ArrayLike | None = None, bins: int = ECE_BINS
) -> float:
    """ECE with ``bins`` equal-width bins over [0.5, 1] (the last one closed), where
    confidence max(p, 1 - p) actually lives: twice the resolution of :func:`expected_calibration_error`
    (which wastes half its bins on [0, 0.5)). Reported as ``ece_fine``; not comparable
    with the reference's numbers."""
    return _binned_ece(p, y, weights, bins, lambda conf: ((conf - 0.5) * 2.0 * bins).astype(np.int64))


def _binned_ece(p: ArrayLike, y: ArrayLike, weights: ArrayLike | None, bins: int, bin_of) -> float:
    pa, ya = _as_1d("p", p), _as_1d("y", y)
    _check_same_length(p=pa, y=ya)
    w = _weights_or_ones(weights, len(pa))
    keep = ya != 0.5
    pa, ya, w = pa[keep], ya[keep], w[keep]
    if len(pa) == 0 or w.sum() <= 0:
        return math.nan
    conf = np.maximum(pa, 1.0 - pa)
    correct = _correctness(pa, ya)
    idx = np.clip(bin_of(conf), 0, bins - 1)
    w_bin = np.bincount(idx, weights=w, minlength=bins)
    acc_bin = np.bincount(idx, weights=w * correct, minlength=bins)
    conf_bin = np.bincount(idx, weights=w * conf, minlength=bins)
    # sum_k (W_k/W) |acc_k/W_k - conf_k/W_k| = sum_k |acc_k - conf_k| / W
    return float(np.abs(acc_bin - conf_bin).sum() / w_bin.sum())


def aurc(p: ArrayLike, y: ArrayLike) -> float:
    """Area under the risk-coverage curve of decisive pairs (lower is better).

    Sort pairs by confidence max(p, 1 - p), most confident first. With error
    e_i = 1 - correctness_i, the selective risk at coverage k/n is
    r_k = (1/k) sum_{i<=k} e_(i), and AURC = (1/n) sum_{k=1..n} r_k.
    Pairs with equal confidence have no defined order; we use the expectation over
    their random orderings, which (r_k being linear in e) equals replacing each e in a
    tied group by the group's mean error. Ties in y are dropped. NaN if nothing is left.
    """
    pa, ya = _as_1d("p", p), _as_1d("y", y)
    _check_same_length(p=pa, y=ya)
    keep = ya != 0.5
    pa, ya = pa[keep], ya[keep]
    n = len(pa)
    if n == 0:
        return math.nan
    conf = np.maximum(pa, 1.0 - pa)
    err = 1.0 - _correctness(pa, ya)
    order = np.argsort(-conf, kind="stable")
    conf_s, err_s = conf[order], err[order]
    # Average errors inside groups of equal confidence.
    _, group_start, group_size = np.unique(-conf_s, return_index=True, return_counts=True)
    group_of = np.repeat(np.arange(len(group_start)), group_size)
    group_mean = np.bincount(group_of, weights=err_s) / group_size
    err_s = group_mean[group_of]
    risk = np.cumsum(err_s) / np.arange(1, n + 1)
    return float(risk.mean())


def rankdata(x: ArrayLike) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (scipy.stats.rankdata 'average')."""
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    n = len(a)
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    # Start of each run of equal values in sorted order.
    new_run = np.empty(n, dtype=bool)
    if n:
        new_run[0] = True
        new_run[1:] = sorted_a[1:] != sorted_a[:-1]
    run_id = np.cumsum(new_run) - 1
    run_start = np.flatnonzero(new_run)
    run_end = np.append(run_start[1:], n)  # exclusive
    avg_rank = (run_start + 1 + run_end) / 2.0  # mean of ranks start+1 .. end
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = avg_rank[run_id]
    return ranks


def auc(scores: ArrayLike, labels: ArrayLike) -> float:
    """ROC AUC of ``scores`` for labels 1 (positive) vs 0 (negative).

    Mann-Whitney form with average ranks for tied scores:
        AUC = (R_+ - n_+ (n_+ + 1) / 2) / (n_+ n_-)
    where R_+ is the rank sum of the positives. This equals P(s_+ > s_-) + 0.5 P(s_+ = s_-)
    and matches sklearn.metrics.roc_auc_score. NaN if either class is empty.
    """
    s, lab = _as_1d("scores", scores), _as_1d("labels", labels)
    _check_same_length(scores=s, labels=lab)
    if not np.all((lab == 0) | (lab == 1)):
        raise ValueError("labels must be 0 or 1.")
    pos = lab == 1
    n_pos = int(pos.sum())
    n_neg = len(lab) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    r = rankdata(s)
    return float((r[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def spearman(x: ArrayLike, y: ArrayLike) -> float:
    """Spearman's rho: Pearson correlation of the average ranks of x and y.

    Matches scipy.stats.spearmanr. NaN if either input is constant or n < 2.
    """
    xa, ya = _as_1d("x", x), _as_1d("y", y)
    _check_same_length(x=xa, y=ya)
    if len(xa) < 2:
        return math.nan
    rx = rankdata(xa)
    ry = rankdata(ya)
    rx -= rx.mean()
    ry -= ry.mean()
    denom = math.sqrt(float(np.dot(rx, rx)) * float(np.dot(ry, ry)))
    if denom == 0.0:
        return math.nan
    return float(np.clip(np.dot(rx, ry) / denom, -1.0, 1.0))


def _tie_pairs(a: np.ndarray) -> int:
    """sum over groups of equal values of t (t - 1) / 2."""
    _, counts = np.unique(a, return_counts=True)
    return int((counts * (counts - 1) // 2).sum())


def _count_inversions(v: np.ndarray) -> int:
    """Number of index pairs i < j with v[i] > v[j] (strict), for integer v >= 0.

    Bottom-up merge sort, vectorised per level: at width w, every left block L and the
    right block R that follows it are both sorted; for each r in R the count of l in L
    with l > r is |L| - #(l <= r), found by one global searchsorted over keys
    (block_pair_id * M + value), which are sorted across all left blocks at once.
    O(n log^2 n) time, O(n) memory.
    """
    n = len(v)
    if n < 2:
        return 0
    vals = v.astype(np.int64).copy()
    m = int(vals.max()) + 1
    pos = np.arange(n)
    total = 0
    width = 1
    while width < n:
        pair_id = pos // (2 * width)
        is_left = (pos % (2 * width)) < width
        keys = pair_id * m + vals
        left_keys = keys[is_left]  # globally sorted: blocks sorted, pair ids increasing
        right_keys = keys[~is_left]
        right_pair = pair_id[~is_left]
        # A right block exists only after a full left block, so |L| == width and the
        # left block of pair g starts at g * width in left_keys.
        le = np.searchsorted(left_keys, right_keys, side="right") - right_pair * width
        total += int((width - le).sum())
        # Merge: sort each block pair (keys keep pairs apart).
        vals = np.sort(keys, kind="stable") - pair_id * m
        width *= 2
    return total


def kendall_tau(x: ArrayLike, y: ArrayLike) -> float:
    """Kendall's tau-b, accounting for ties (matches scipy.stats.kendalltau).

    With n0 = n(n-1)/2, n1 = pairs tied in x, n2 = pairs tied in y, n3 = pairs tied in
    both, and D = discordant pairs (x_i < x_j, y_i > y_j), the concordant minus discordant
    count is C - D = n0 - n1 - n2 + n3 - 2D and

        tau_b = (C - D) / sqrt((n0 - n1) (n0 - n2)).

    D is the inversion count of y's dense ranks after sorting by (x, y), computed in
    O(n log^2 n). NaN if either input is constant or n < 2.
    """
    xa, ya = _as_1d("x", x), _as_1d("y", y)
    _check_same_length(x=xa, y=ya)
    n = len(xa)
    if n < 2:
        return math.nan
    order = np.lexsort((ya, xa))  # by x, then y: x-tied pairs are never inversions
    xs, ys = xa[order], ya[order]
    y_dense = np.unique(ys, return_inverse=True)[1].reshape(-1)
    dis = _count_inversions(y_dense)
    n0 = n * (n - 1) // 2
    n1 = _tie_pairs(xs)
    n2 = _tie_pairs(ys)
    # Joint ties: runs of equal (x, y) in the lexsorted order.
    same = (xs[1:] == xs[:-1]) & (ys[1:] == ys[:-1])
    breaks = np.flatnonzero(np.concatenate(([True], ~same, [True])))
    runs = np.diff(breaks)
    n3 = int((runs * (runs - 1) // 2).sum())
    denom = math.sqrt(float(n0 - n1) * float(n0 - n2))
    if denom == 0.0:
        return math.nan
    con_minus_dis = n0 - n1 - n2 + n3 - 2 * dis
    return float(np.clip(con_minus_dis / denom, -1.0, 1.0))


# --------------------------------------------------------------------------------------
# All pair metrics at once
# --------------------------------------------------------------------------------------


def pair_metrics(p: ArrayLike, y: ArrayLike, weights: ArrayLike | None = None) -> dict[str, float]:
    """All pairwise metrics for predictions p = P(first wins) and outcomes y in {1, 0, 0.5}.

    Returns a dict with (see the module docstring for how ties and p == 0.5 count):

    * ``n``: number of pairs; ``n_ties``: pairs with y == 0.5.
    * ``accuracy``: mean correctness over decisive pairs.
    * ``nll``: mean BCE  -[y ln p + (1 - y) ln(1 - p)]  (p clipped to [1e-12, 1 - 1e-12]).
    * ``mcfadden_r2``: 1 - nll / ln 2, i.e. improvement over always predicting p = 0.5.
    * ``auc``: AUC on the symmetrised decisive set {(p, y)} U {(1 - p, 1 - y)}.
    * ``brier``: mean (p - y)^2.
    * ``ece``: :func:`expected_calibration_error`, the reference's definition (15 bins over
      [0, 1] on confidence max(p, 1-p)); ``ece_fine``: 15 bins over [0.5, 1]
      (:func:`expected_calibration_error_fine`).
    * ``aurc``: :func:`aurc`, area under the risk-coverage curve.
    * ``median_margin``: median |p - 0.5|; ``share_confident``: share with |p - 0.5| > 0.2.

    If ``weights`` (one non-negative importance weight per pair, e.g. from
    :func:`distance_weights`) is given, also returns ``weighted_accuracy``,
    ``weighted_nll``, ``weighted_brier``, ``weighted_ece`` (the same formulas with
    weighted means) and ``n_eff`` = (sum w)^2 / sum w^2, the effective sample size.
    Metrics that have nothing to average over are NaN.
    """
    pa, ya = _as_1d("p", p), _as_1d("y", y)
    _check_same_length(p=pa, y=ya)
    if np.any((pa < 0) | (pa > 1)):
        raise ValueError("p must be probabilities in [0, 1].")
    if not np.all((ya == 0) | (ya == 0.5) | (ya == 1)):
        raise ValueError("y must be 1 (first won), 0 (first lost) or 0.5 (tie).")
    n = len(pa)
    decisive = ya != 0.5
    pd_, yd = pa[decisive], ya[decisive]
    ones = np.ones(n)

    nll = _wmean(_log_loss_terms(pa, ya), ones)
    margin = np.abs(pa - 0.5)
    out: dict[str, float] = {
        "n": n,
        "n_ties": int(n - decisive.sum()),
        "accuracy": _wmean(_correctness(pd_, yd), np.ones(len(pd_))),
        "nll": nll,
        "mcfadden_r2": 1.0 - nll / math.log(2.0) if n else math.nan,
        "auc": auc(np.concatenate([pd_, 1.0 - pd_]), np.concatenate([yd, 1.0 - yd])),
        "brier": _wmean((pa - ya) ** 2, ones),
        "ece": expected_calibration_error(pa, ya),
        "ece_fine": expected_calibration_error_fine(pa, ya),
        "aurc": aurc(pa, ya),
        "median_margin": float(np.median(margin)) if n else math.nan,
        "share_confident": float(np.mean(margin > CONFIDENT_MARGIN)) if n else math.nan,
    }
    if weights is not None:
        w = _weights_or_ones(weights, n)
        wd = w[decisive]
        sw, sw2 = float(w.sum()), float((w**2).sum())
        out.update(
            {
                "n_eff": sw * sw / sw2 if sw2 > 0 else 0.0,
                "weighted_accuracy": _wmean(_correctness(pd_, yd), wd),
                "weighted_nll": _wmean(_log_loss_terms(pa, ya), w),
                "weighted_brier": _wmean((pa - ya) ** 2, w),
                "weighted_ece": expected_calibration_error(pa, ya, weights=w),
            }
        )
    return out


def score_pair_metrics(
    score_first: ArrayLike,
    score_second: ArrayLike,
    y: ArrayLike,
    weights: ArrayLike | None = None,
) -> dict[str, float]:
    """:func:`pair_metrics` of p = bt_probability(score_first, score_second)."""
    p = np.atleast_1d(bt_probability(score_first, score_second))
    return pair_metrics(p, y, weights)


# --------------------------------------------------------------------------------------
# Distance-based importance weights
# --------------------------------------------------------------------------------------


def pair_distances(emb: ArrayLike, i_idx: ArrayLike, j_idx: ArrayLike, chunk: int = 65536) -> np.ndarray:
    """Cosine distance 1 - <e_i, e_j> / (|e_i| |e_j|) for each pair (i_idx[k], j_idx[k]).

    ``emb`` is an (N, D) array of embeddings. Zero-norm embeddings have no direction and
    are given distance 1 (cosine similarity 0). Result is in [0, 2], float64.
    Works in chunks so millions of pairs do not materialise a (pairs, D) copy at once.
    """
    e = np.asarray(emb, dtype=np.float64)
    if e.ndim != 2:
        raise ValueError(f"emb must be a 2-D (N, D) array, got shape {e.shape}.")
    i = np.asarray(i_idx, dtype=np.int64).reshape(-1)
    j = np.asarray(j_idx, dtype=np.int64).reshape(-1)
    _check_same_length(i_idx=i, j_idx=j)
    norms = np.linalg.norm(e, axis=1, keepdims=True)
    unit = np.divide(e, norms, out=np.zeros_like(e), where=norms > 0)
    out = np.empty(len(i), dtype=np.float64)
    for start in range(0, len(i), chunk):
        sl = slice(start, start + chunk)
        out[sl] = 1.0 - np.einsum("kd,kd->k", unit[i[sl]], unit[j[sl]])
    return np.clip(out, 0.0, 2.0)


def distance_weights(
    test_dist: ArrayLike,
    reference_dist: ArrayLike,
    bins: int = 20,
    max_ratio: float = 10.0,
) -> np.ndarray:
    """Importance weights that make the test pairs' distance distribution look like the
    reference one (e.g. distances of random pairs of the folder).

    Both samples are histogrammed on the same ``bins`` equal-width bins spanning their
    joint range. For a test pair in bin k,

        w = q_k / p_k,   q_k = reference share in bin k,  p_k = test share in bin k,

    clipped to [1 / max_ratio, max_ratio] (so no pair is dropped or dominates), then
    normalised so mean(w) = 1 over the test pairs. Pairs selected to be close (as the
    active pair picker prefers) are thus down-weighted when real folders are far apart.
    """
    t = _as_1d("test_dist", test_dist)
    r = _as_1d("reference_dist", reference_dist)
    if len(t) == 0:
        return np.zeros(0)
    if len(r) == 0:
        raise ValueError("reference_dist is empty; cannot build distance weights.")
    if bins < 1 or max_ratio < 1:
        raise ValueError("bins must be >= 1 and max_ratio >= 1.")
    lo = min(t.min(), r.min())
    hi = max(t.max(), r.max())
    if hi <= lo:
        return np.ones(len(t))
    edges = np.linspace(lo, hi, bins + 1)
    t_bin = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, bins - 1)
    r_bin = np.clip(np.searchsorted(edges, r, side="right") - 1, 0, bins - 1)
    p = np.bincount(t_bin, minlength=bins) / len(t)
    q = np.bincount(r_bin, minlength=bins) / len(r)
    ratio = q[t_bin] / p[t_bin]  # p[t_bin] > 0: the test pair itself is in that bin
    w = np.clip(ratio, 1.0 / max_ratio, max_ratio)
    return w / w.mean()


# --------------------------------------------------------------------------------------
# Uncertainty: intervals, sample sizes and paired comparisons
# --------------------------------------------------------------------------------------

#: z of a two-sided 95% normal interval.
Z95 = 1.959963984540054
#: Below this many decisive held-out pairs a change is "too few to tell" whatever its size.
MIN_PAIRS_TO_TELL = 30
#: The accuracy interval half-width (5 points) that :func:`pairs_for_half_width` aims for.
TARGET_HALF_WIDTH = 0.05
#: Bootstrap resamples of :func:`bootstrap_interval` and :func:`paired_comparison`.
BOOTSTRAP_RESAMPLES = 1000


def wilson_interval(k: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion k / n; (nan, nan) when n == 0.

        centre = (p + z^2 / 2n) / (1 + z^2 / n),
        half   = z sqrt(p (1 - p) / n + z^2 / 4n^2) / (1 + z^2 / n),   p = k / n,

    which, unlike p +- z sqrt(p(1-p)/n), stays inside [0, 1] and keeps its coverage for
    small n and p near 0 or 1 (Wilson 1927; Brown, Cai & DasGupta 2001).
    """
    if n <= 0:
        return math.nan, math.nan
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(max(0.0, p * (1 - p) / n + z * z / (4 * n * n))) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Agreement:
    """Held-out agreement (:func:`agreement`): ``value`` on ``count`` decisive pairs with
    its Wilson 95% interval [``low``, ``high``]; ``ties``: tied pairs, left out."""

    value: float
    count: int
    low: float
    high: float
    ties: int = 0

    @property
    def enough(self) -> bool:
        """Whether there are enough pairs to tell (:data:`MIN_PAIRS_TO_TELL`)."""
        return self.count >= MIN_PAIRS_TO_TELL


#: The key under which :func:`agreement` is stored (versions, pre-labelling, benchmarks).
AGREEMENT_KEY = "agreement_decisive"


def agreement(score_diff: ArrayLike, outcome: ArrayLike) -> Agreement:
    """THE held-out agreement, used by every view and command: the share of decisive pairs
    (ties left out, as the reference's accuracy) whose winner the model scores higher; a
    model that scores the two level gets half a point. ``score_diff`` = s_first - s_second
    (or any value with its sign, e.g. a probability minus 0.5), ``outcome`` = 1 / 0 / 0.5
    for the first image. Wilson 95% interval; NaN value and interval with no decisive pair."""
    d, y = _as_1d("score_diff", score_diff), _as_1d("outcome", outcome)
    _check_same_length(score_diff=d, outcome=y)
    decisive = y != 0.5
    d, y = d[decisive], y[decisive]
    n = int(len(y))
    ties = int((~decisive).sum())
    if n == 0:
        return Agreement(math.nan, 0, math.nan, math.nan, ties)
    k = float(np.sum(np.where(d == 0, 0.5, ((d > 0) == (y > 0.5)).astype(np.float64))))
    lo, hi = wilson_interval(k, n)
    return Agreement(k / n, n, lo, hi, ties)


def _wilson_half(p: float, n: int, z: float = Z95) -> float:
    lo, hi = wilson_interval(p * n, n, z)
    return (hi - lo) / 2.0


def pairs_for_half_width(k: float, n: int, half_width: float = TARGET_HALF_WIDTH, z: float = Z95) -> int:
    """How many *more* decisive held-out pairs would bring the accuracy interval's half-width
    to ``half_width`` or less, assuming the accuracy stays where it is.

    The accuracy is estimated as (k + 2) / (n + 4) (the Agresti-Coull centre), so a perfect
    score on three pairs does not promise that a handful more will do; the smallest total
    N with Wilson half-width <= ``half_width`` at that rate is found by bisection (the
    half-width falls monotonically in N). 0 when the interval is already that narrow.
    """
    if n > 0 and _wilson_half(k / n, n, z) <= half_width:
        return 0
    p = (k + 2.0) / (n + 4.0)
    lo, hi = max(1, n), max(2, n) * 2
    while _wilson_half(p, hi, z) > half_width:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _wilson_half(p, mid, z) <= half_width:
            hi = mid
        else:
            lo = mid
    return max(0, hi - n)


def _resample_stats(n: int, stat, resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.array([stat(rng.integers(0, n, n)) for _ in range(resamples)], dtype=np.float64)


def bootstrap_interval(
    stat, n: int, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat(indices)`` over ``n`` pairs resampled with
    replacement (``resamples`` times, seeded, so the same data gives the same interval).
    (nan, nan) for n < 2 or when the statistic is NaN on every resample."""
    if n < 2:
        return math.nan, math.nan
    vals = _resample_stats(n, stat, resamples, seed)
    vals = vals[np.isfinite(vals)]
    if len(vals) == 0:
        return math.nan, math.nan
    a = (1.0 - level) / 2.0
    return float(np.quantile(vals, a)), float(np.quantile(vals, 1.0 - a))


def held_out_summary(
    p: ArrayLike, y: ArrayLike, seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES
) -> dict[str, float | int | bool]:
    """Counts and 95% intervals of the held-out figures, flat (JSON-safe) keys:

    * ``n_decisive`` (pairs with a winner, what accuracy counts), ``correct`` (k),
      ``accuracy_low`` / ``accuracy_high``: Wilson interval of k / n_decisive;
    * ``nll_low`` / ``nll_high`` (all pairs) and ``ece_low`` / ``ece_high`` (decisive
      pairs): percentile bootstrap over pairs;
    * ``enough``: n_decisive >= :data:`MIN_PAIRS_TO_TELL`;
      ``more_pairs_needed``: :func:`pairs_for_half_width` (5 points).
    """
    pa, ya = _as_1d("p", p), _as_1d("y", y)
    _check_same_length(p=pa, y=ya)
    decisive = ya != 0.5
    pd_, yd = pa[decisive], ya[decisive]
    correct = _correctness(pd_, yd)
    k, n = float(correct.sum()), int(len(pd_))
    lo, hi = wilson_interval(k, n)
    terms = _log_loss_terms(pa, ya)
    nll_lo, nll_hi = bootstrap_interval(lambda i: float(terms[i].mean()), len(pa), resamples, seed)
    ece_lo, ece_hi = bootstrap_interval(lambda i: expected_calibration_error(pd_[i], yd[i]), n, resamples, seed)
    return {
        "n_decisive": n,
        "correct": k,
        "accuracy_low": lo,
        "accuracy_high": hi,
        "nll_low": nll_lo,
        "nll_high": nll_hi,
        "ece_low": ece_lo,
        "ece_high": ece_hi,
        "enough": n >= MIN_PAIRS_TO_TELL,
        "more_pairs_needed": pairs_for_half_width(k, n),
    }


def _mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value: b and c discordant pairs, X ~ Binomial(b + c, 1/2)."""
    m = b + c
    if m == 0:
        return 1.0
    lo = min(b, c)
    log_half = m * math.log(0.5)
    tail = sum(
        math.exp(math.lgamma(m + 1) - math.lgamma(i + 1) - math.lgamma(m - i + 1) + log_half) for i in range(lo + 1)
    )
    return min(1.0, 2.0 * tail)


#: Verdicts of :func:`paired_comparison`.
BETTER, WORSE, SAME, TOO_FEW = "better", "worse", "not distinguishable", "too few to tell"


def paired_comparison(
    p_before: ArrayLike,
    p_after: ArrayLike,
    y: ArrayLike,
    seed: int = 0,
    resamples: int = BOOTSTRAP_RESAMPLES,
    alpha: float = 0.05,
) -> dict:
    """Is the change from ``p_before`` to ``p_after`` (two models' P(first wins) on the *same*
    held-out pairs with outcomes ``y``) beyond noise?

    * Accuracy: the exact McNemar test on the decisive pairs one model got right and the
      other wrong (b: only before right, c: only after right); the change in points gets a
      paired percentile-bootstrap 95% interval.
    * Log loss: paired bootstrap 95% interval of mean(nll_after - nll_before) over all pairs.

    ``verdict``: :data:`TOO_FEW` below :data:`MIN_PAIRS_TO_TELL` decisive pairs; else
    better/worse by accuracy when McNemar's p < ``alpha``; else better/worse by log loss
    when its interval excludes 0; else :data:`SAME`. ``sentence`` says it in words
    (e.g. "accuracy is 12.0 points lower (95% interval 4.1 to 19.8) on the same 120
    held-out pairs"). Every value is JSON-safe.
    """
    p0, p1, ya = _as_1d("p_before", p_before), _as_1d("p_after", p_after), _as_1d("y", y)
    _check_same_length(p_before=p0, p_after=p1, y=ya)
    decisive = ya != 0.5
    c0 = _correctness(p0[decisive], ya[decisive])
    c1 = _correctness(p1[decisive], ya[decisive])
    n = int(decisive.sum())
    diff = c1 - c0
    b, c = int((diff < 0).sum()), int((diff > 0).sum())
    d_acc = float(diff.mean()) if n else math.nan
    acc_lo, acc_hi = bootstrap_interval(lambda i: float(diff[i].mean()), n, resamples, seed)
    dl = _log_loss_terms(p1, ya) - _log_loss_terms(p0, ya)
    d_nll = float(dl.mean()) if len(dl) else math.nan
    nll_lo, nll_hi = bootstrap_interval(lambda i: float(dl[i].mean()), len(dl), resamples, seed + 1)
    p_value = _mcnemar_p(b, c)
    by = None
    if n < MIN_PAIRS_TO_TELL:
        verdict = TOO_FEW
    elif p_value < alpha and d_acc != 0:
        verdict, by = (BETTER if d_acc > 0 else WORSE), "accuracy"
    elif math.isfinite(nll_lo) and (nll_hi < 0 or nll_lo > 0):
        verdict, by = (BETTER if d_nll < 0 else WORSE), "nll"
    else:
        verdict = SAME
    return {
        "verdict": verdict,
        "by": by,
        "n_decisive": n,
        "n": int(len(ya)),
        "only_before_right": b,
        "only_after_right": c,
        "mcnemar_p": p_value,
        "accuracy_change": d_acc,
        "accuracy_change_low": acc_lo,
        "accuracy_change_high": acc_hi,
        "nll_change": d_nll,
        "nll_change_low": nll_lo,
        "nll_change_high": nll_hi,
        "sentence": _change_sentence(verdict, by, n, d_acc, acc_lo, acc_hi, d_nll, nll_lo, nll_hi),
    }


def _change_sentence(
    verdict: str,
    by: str | None,
    n: int,
    d_acc: float,
    acc_lo: float,
    acc_hi: float,
    d_nll: float,
    nll_lo: float,
    nll_hi: float,
) -> str:
    pairs = f"{n} held-out pair{'s' if n != 1 else ''}"
    if verdict == TOO_FEW:
        return f"too few to tell: {pairs} (at least {MIN_PAIRS_TO_TELL} are needed to tell a change from noise)"
    acc = (
        f"accuracy is {abs(d_acc) * 100:.1f} points {'higher' if d_acc > 0 else 'lower'} "
        f"(95% interval {acc_lo * 100:+.1f} to {acc_hi * 100:+.1f})"
    )
    if by == "accuracy":
        return f"{verdict} beyond noise: {acc} on the same {pairs}"
    if by == "nll":
        return (
            f"{verdict} beyond noise: log loss is {abs(d_nll):.3f} {'lower' if d_nll < 0 else 'higher'} "
            f"(95% interval {nll_lo:+.3f} to {nll_hi:+.3f}) on the same {pairs}"
        )
    if n == 0:
        return "not distinguishable: there are no decisive held-out pairs"
    return f"not distinguishable from noise on the same {pairs}: {acc}"


def clicks_needed(more_pairs: int, held_out_share: float) -> int:
    """Clicks that would yield ``more_pairs`` more held-out pairs when a share
    ``held_out_share`` of the pairs shown is held out (e.g. the pair chooser's 10%)."""
    if more_pairs <= 0:
        return 0
    if not 0 < held_out_share <= 1:
        raise ValueError("held_out_share must be in (0, 1].")
    return int(math.ceil(more_pairs / held_out_share))


def shows_change(change: Mapping[str, object] | None) -> bool:
    """Whether a before/after change may be drawn with arrows or colours: only when the paired
    comparison (:func:`paired_comparison`) called it better or worse, i.e. beyond noise."""
    return change is not None and str(change.get("verdict")) in (BETTER, WORSE)


def held_out_sentences(
    before: Mapping[str, object], after: Mapping[str, object], change: Mapping[str, object] | None
) -> list[str]:
    """The held-out figures of a before/after pair of metric dicts (as a version record keeps
    them) in plain lines: accuracy with count and 95% interval, log loss and ECE with their
    bootstrap intervals, the paired verdict, and how many more held-out pairs would narrow the
    accuracy interval to +-5 points. Never arrows. The CLI prints these; the app may show them."""

    def acc(m: Mapping[str, object]) -> str:
        return format_accuracy(
            _number(m.get("accuracy")),
            None if m.get("n_decisive") is None else int(_number(m.get("n_decisive")) or 0),
            _number(m.get("accuracy_low")),
            _number(m.get("accuracy_high")),
        )

    lines = [f"held-out accuracy (95% interval): before {acc(before)}, after {acc(after)}"]
    for key, name in (("nll", "log loss"), ("ece", "ECE")):
        lows = [m.get(f"{key}_low") for m in (before, after)]
        if all(isinstance(x, float) and not math.isnan(x) for x in lows):
            lines.append(
                f"held-out {name} (95% interval): "
                + ", ".join(
                    f"{when} {m[key]:.3f} ({m[f'{key}_low']:.3f}-{m[f'{key}_high']:.3f})"
                    for when, m in (("before", before), ("after", after))
                )
            )
    if change:
        lines.append(f"change: {change['sentence']}.")
    more = after.get("more_pairs_needed")
    if isinstance(more, int) and more > 0:
        lines.append(f"about {more} more held-out comparisons would narrow the accuracy interval to +-5 points.")
    return lines


def format_accuracy(accuracy: float | None, n: int | None, low: float | None = None, high: float | None = None) -> str:
    """Accuracy with its count and interval as one short text: ``"62.5% of 40 (47-76%)"``;
    ``"n/a"`` without pairs. The same text in the CLI and the GUI."""
    if accuracy is None or n is None or n == 0 or (isinstance(accuracy, float) and math.isnan(accuracy)):
        return "n/a"
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        low, high = wilson_interval(accuracy * n, n)
    return f"{accuracy * 100:.1f}% of {n} ({low * 100:.0f}-{high * 100:.0f}%)"


# --------------------------------------------------------------------------------------
# Plain-text table
# --------------------------------------------------------------------------------------


def robustness_text(m: Mapping[str, object], task: str) -> str:
    """A robustness figure (``{task}_accuracy`` with ``_n``, ``_low``, ``_high``) in words, with its
    count and interval, "too few to tell" below :data:`MIN_PAIRS_TO_TELL` pairs."""
    value, n = m.get(f"{task}_accuracy"), m.get(f"{task}_n")
    if not isinstance(value, (int, float)) or math.isnan(value):
        return "n/a"
    if not isinstance(n, (int, float)):  # a version recorded before issue 25
        return f"{value * 100:.1f}% (pair count not recorded)"
    shown = format_accuracy(
        float(value), int(n), _float_or_nan(m.get(f"{task}_low")), _float_or_nan(m.get(f"{task}_high"))
    )
    if 0 < n < MIN_PAIRS_TO_TELL:
        shown += f", too few to tell (at least {MIN_PAIRS_TO_TELL} are needed)"
    return shown


def _float_or_nan(v: object) -> float:
    return float(v) if isinstance(v, (int, float)) else math.nan


def _format_value(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return "n/a" if math.isnan(f) else f"{f:.4f}"
    return str(v)


def format_metrics_table(rows: Mapping[str, Mapping[str, object]], keys: Sequence[str] | None = None) -> str:
    """Render metric dicts side by side as a plain-text table.

    ``rows`` maps a column title to a metrics dict, e.g.
    ``{"before": pair_metrics(...), "after": pair_metrics(...)}`` gives

        metric   | before | after
        ---------+--------+-------
        accuracy | 0.7500 | 0.8000

    ``keys`` picks and orders the metric rows; by default the keys of :data:`METRIC_KEYS`
    present in any column, followed by any other keys in first-seen order. A metric
    missing from a column shows as "-", NaN as "n/a", floats with 4 decimals.
    """
    columns = list(rows.keys())
    if keys is None:
        seen: list[str] = [k for k in METRIC_KEYS if any(k in d for d in rows.values())]
        for d in rows.values():
            for k in d:
                if k not in seen:
                    seen.append(k)
        keys = seen
    header = ["metric", *columns]
    body = [[k, *(_format_value(rows[c].get(k)) for c in columns)] for k in keys]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: Iterable[str]) -> str:
        return " | ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    sep = "-+-".join("-" * w for w in widths)
    return "\n".join([line(header), sep, *(line(r) for r in body)])


def _number(value: object) -> float | None:
    """A metric read back from a version record: a number, or None when absent or not one."""
    return float(value) if isinstance(value, (int, float)) else None
