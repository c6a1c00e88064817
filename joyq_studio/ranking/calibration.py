"""Calibrated K-bucket ranks: turn raw JoyQuality scores into 0..K ranks and labels.

Two methods, one K everywhere (default K = 10; bucket = min(floor(rank), K - 1)):

Method A ("a", range buckets)
    Split [min score, max score] of the folder into K equal-width buckets:
        rank = K (s - s_min) / (s_max - s_min), clipped to [0, K].
    If every score is equal, every image gets rank K / 2 (the middle bucket).

Method B ("b", sigmoid ranks)
    rank = K * sigmoid((s - b) / tau).
    * tau > 0 is the temperature that makes scores into calibrated probabilities on
      held-out comparisons: it minimises the pairwise cross-entropy
          L(tau) = mean_k  softplus(d_k / tau) - y_k d_k / tau,   d_k = s_first - s_second,
      with y_k in {1, 0, 0.5} the outcome of the first image. With u = 1 / tau this is a
      logistic regression without intercept, *convex* in u, so a damped 1-D Newton
      method on u finds the optimum reliably (no scipy needed).
    * b is then found by bisection so that the mean rank over the folder equals
      ``target_mean`` (default K / 2); the mean rank is strictly decreasing in b.

The result is a :class:`Calibration`, a JSON-safe record that the store saves with each
model version and the exporter applies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..errors import JoyqError
from ..metrics import sigmoid

__all__ = [
    "DEFAULT_K",
    "QUALITY_PHRASES",
    "CalibrationError",
    "Calibration",
    "default_labels",
    "fit_tau",
    "fit_bias",
    "calibrate",
]

DEFAULT_K = 10

#: Ten quality phrases common in diffusion-model captions, worst to best.
QUALITY_PHRASES: tuple[str, ...] = (
    "worst quality",
    "very low quality",
    "low quality",
    "below average quality",
    "average quality",
    "above average quality",
    "good quality",
    "high quality",
    "very high quality",
    "best quality",
)

#: Version of the dict layout written by :meth:`Calibration.to_dict`.
FORMAT_VERSION = 1

# tau is searched for u = 1/tau in [U_MIN_REL, U_MAX_REL] / median|d| (a factor 1e4
# either way around the natural scale of the score differences).
_U_MIN_REL = 1e-4
_U_MAX_REL = 1e4


class CalibrationError(JoyqError, ValueError):
    """Calibration cannot be computed from the given data (message is one sentence)."""


def default_labels(k: int = DEFAULT_K) -> list[str]:
    """Default bucket labels, worst first.

    K = 10: :data:`QUALITY_PHRASES`. K < 10: the phrases at evenly spaced positions
    round(linspace(0, 9, K)) of that list (K = 5 -> worst, low, average, high, best;
    K = 1 -> average). K > 10: "quality 1 of K" ... "quality K of K".
    """
    if k < 1:
        raise CalibrationError(f"The number of buckets must be at least 1, got {k}.")
    n = len(QUALITY_PHRASES)
    if k == 1:
        return [QUALITY_PHRASES[n // 2 - 1]]
    if k <= n:
        idx = np.round(np.linspace(0, n - 1, k)).astype(int)
        return [QUALITY_PHRASES[i] for i in idx]
    return [f"quality {i + 1} of {k}" for i in range(k)]


@dataclass
class Calibration:
    """How to turn scores into ranks in [0, K] and buckets 0..K-1 (see module docstring).

    Method "a" uses ``score_min`` / ``score_max``; method "b" uses ``tau`` and ``b``.
    ``pairs_used`` counts the held-out comparisons tau was fitted on (0 for method A),
    ``fit_nll`` is the pairwise cross-entropy at the fitted tau.
    """

    method: str
    k: int = DEFAULT_K
    tau: float | None = None
    b: float | None = None
    score_min: float | None = None
    score_max: float | None = None
    target_mean: float | None = None
    labels: list[str] = field(default_factory=list)
    model_version: str | None = None
    pairs_used: int = 0
    fit_nll: float | None = None

    def __post_init__(self) -> None:
        self.method = _normalise_method(self.method)
        self.k = int(self.k)
        if self.k < 1:
            raise CalibrationError(f"The number of buckets must be at least 1, got {self.k}.")
        if not self.labels:
            self.labels = default_labels(self.k)
        self.labels = [str(label) for label in self.labels]
        if len(self.labels) != self.k:
            raise CalibrationError(
                f"Expected {self.k} bucket labels but got {len(self.labels)}."
            )
        if self.method == "a":
            if self.score_min is None or self.score_max is None:
                raise CalibrationError("Method A needs score_min and score_max.")
            if self.score_max < self.score_min:
                raise CalibrationError("Method A needs score_min <= score_max.")
        else:
            if self.tau is None or self.b is None:
                raise CalibrationError("Method B needs tau and b.")
            if not (self.tau > 0 and math.isfinite(self.tau)) or not math.isfinite(self.b):
                raise CalibrationError("Method B needs a finite tau > 0 and a finite b.")

    # -- applying -------------------------------------------------------------------

    def ranks(self, scores: ArrayLike) -> np.ndarray:
        """Float ranks in [0, K] (see module docstring for the formula per method)."""
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        if self.method == "a":
            lo, hi = float(self.score_min), float(self.score_max)  # type: ignore[arg-type]
            if hi > lo:
                return np.clip(self.k * (s - lo) / (hi - lo), 0.0, float(self.k))
            return np.full(len(s), self.k / 2.0)
        return self.k * np.atleast_1d(sigmoid((s - self.b) / self.tau))  # type: ignore[operator]

    def buckets(self, ranks: ArrayLike) -> np.ndarray:
        """Bucket of each rank: min(floor(rank), K - 1), as int64 in 0..K-1."""
        r = np.asarray(ranks, dtype=np.float64).reshape(-1)
        return np.clip(np.floor(r), 0, self.k - 1).astype(np.int64)

    def apply(self, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """(ranks, buckets) for ``scores``: float ranks in [0, K], int buckets in 0..K-1."""
        r = self.ranks(scores)
        return r, self.buckets(r)

    def label_for(self, bucket: int) -> str:
        """Label of ``bucket`` (0 = worst .. K - 1 = best)."""
        i = int(bucket)
        if not 0 <= i < self.k:
            raise IndexError(f"Bucket {i} is outside 0..{self.k - 1}.")
        return self.labels[i]

    def with_labels(self, labels: Sequence[str]) -> Calibration:
        """A copy with edited labels (must be K of them)."""
        d = self.to_dict()
        d["labels"] = list(labels)
        return Calibration.from_dict(d)

    # -- serialisation ----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (plain str / int / float / None / list[str])."""

        def f(x: float | None) -> float | None:
            return None if x is None else float(x)

        return {
            "format": FORMAT_VERSION,
            "method": self.method,
            "k": int(self.k),
            "tau": f(self.tau),
            "b": f(self.b),
            "score_min": f(self.score_min),
            "score_max": f(self.score_max),
            "target_mean": f(self.target_mean),
            "labels": list(self.labels),
            "model_version": None if self.model_version is None else str(self.model_version),
            "pairs_used": int(self.pairs_used),
            "fit_nll": f(self.fit_nll),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict`; unknown keys are ignored, optional ones may be absent."""
        fmt = int(d.get("format", FORMAT_VERSION))
        if fmt > FORMAT_VERSION:
            raise CalibrationError(
                f"This calibration was saved by a newer version (format {fmt}); update the app."
            )
        if "method" not in d:
            raise CalibrationError("The calibration record has no 'method'.")

        def f(key: str) -> float | None:
            v = d.get(key)
            return None if v is None else float(v)

        return cls(
            method=d["method"],
            k=int(d.get("k", DEFAULT_K)),
            tau=f("tau"),
            b=f("b"),
            score_min=f("score_min"),
            score_max=f("score_max"),
            target_mean=f("target_mean"),
            labels=list(d.get("labels") or []),
            model_version=d.get("model_version"),
            pairs_used=int(d.get("pairs_used", 0)),
            fit_nll=f("fit_nll"),
        )


def _normalise_method(method: str) -> str:
    m = str(method).strip().lower()
    if m not in ("a", "b"):
        raise CalibrationError(f"Unknown calibration method {method!r}; use 'a' or 'b'.")
    return m


# --------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------


def _pair_nll(u: float, d: np.ndarray, y: np.ndarray) -> float:
    """mean softplus(u d) - y u d  (= BCE of sigmoid(u d) against y)."""
    z = u * d
    softplus = np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))
    return float(np.mean(softplus - y * z))


def fit_tau(
    d: ArrayLike, y: ArrayLike, max_iter: int = 100, tol: float = 1e-12
) -> tuple[float, float]:
    """Temperature tau minimising the BCE of sigmoid(d / tau) against outcomes y.

    ``d`` = s_first - s_second, ``y`` in [0, 1] (1 first won, 0 lost, 0.5 tie).
    With u = 1 / tau the loss L(u) = mean softplus(u d) - y u d is convex, with
    L'(u) = mean (sigmoid(u d) - y) d and L''(u) = mean sigmoid(u d)(1 - sigmoid(u d)) d^2.
    Damped Newton (step halving until L does not increase), u kept in
    [1e-4, 1e4] / median|d| as a safeguard. Returns (tau, loss at tau).
    Raises CalibrationError when no finite tau > 0 is optimal: all d == 0, the scores do
    not predict the outcomes better than chance (L'(0) >= 0), or every comparison is
    ordered correctly (perfect separation: L keeps falling as tau -> 0).
    """
    da = np.asarray(d, dtype=np.float64).reshape(-1)
    ya = np.asarray(y, dtype=np.float64).reshape(-1)
    nonzero = np.abs(da[da != 0])
    if len(nonzero) == 0:
        raise CalibrationError(
            "Every held-out comparison is between equal scores, so tau cannot be fitted; "
            "use method A or collect more labels."
        )
    if np.all((ya - 0.5)[da != 0] * da[da != 0] > 0):
        raise CalibrationError(
            "The model orders every held-out comparison correctly, so the best tau is 0 "
            "and the ranks would collapse to the extremes; collect more labels or use method A."
        )
    scale = float(np.median(nonzero))
    u_lo, u_hi = _U_MIN_REL / scale, _U_MAX_REL / scale
    grad0 = float(np.mean((0.5 - ya) * da))
    if grad0 >= 0:
        raise CalibrationError(
            "The model's scores do not agree with the held-out comparisons better than "
            "chance, so tau cannot be fitted; use method A or collect more labels."
        )
    # First Newton step from u = 0: L''(0) = mean(d^2) / 4.
    u = float(np.clip(-grad0 / (0.25 * np.mean(da * da)), u_lo, u_hi))
    loss = _pair_nll(u, da, ya)
    for _ in range(max_iter):
        p = np.atleast_1d(sigmoid(u * da))
        grad = float(np.mean((p - ya) * da))
        hess = float(np.mean(p * (1.0 - p) * da * da))
        if hess <= 0.0 or grad == 0.0:  # at the optimum, or saturated at the bound
            break
        step = -grad / hess
        # Damped step: halve until the loss does not increase (convexity guarantees one).
        for _ in range(60):
            u_new = float(np.clip(u + step, u_lo, u_hi))
            loss_new = _pair_nll(u_new, da, ya)
            if loss_new <= loss:
                break
            step *= 0.5
        else:
            break
        moved = abs(u_new - u)
        u, loss = u_new, loss_new
        if moved <= tol * u:
            break
    return 1.0 / u, loss


def fit_bias(
    scores: ArrayLike, tau: float, k: int = DEFAULT_K, target_mean: float | None = None,
    tol: float = 1e-10, max_iter: int = 400,
) -> float:
    """Offset b such that mean_i K sigmoid((s_i - b) / tau) = target_mean (default K / 2).

    The mean rank m(b) falls strictly from K to 0 as b grows, so the root is bracketed by
    expanding [min s, max s] by tau-multiples and then found by bisection to ``tol``.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    target = k / 2.0 if target_mean is None else float(target_mean)
    if not 0.0 < target < k:
        raise CalibrationError(f"The target mean rank must lie strictly between 0 and {k}.")

    def mean_rank(b: float) -> float:
        return float(k * np.mean(np.atleast_1d(sigmoid((s - b) / tau))))

    lo, hi = float(s.min()) - tau, float(s.max()) + tau
    width = tau
    while mean_rank(lo) < target:  # need a smaller b for a higher mean
        width *= 2.0
        lo = float(s.min()) - width
    width = tau
    while mean_rank(hi) > target:
        width *= 2.0
        hi = float(s.max()) + width
    for _ in range(max_iter):
        mid = 0.5 * (lo + hi)
        m = mean_rank(mid)
        if abs(m - target) <= tol or mid in (lo, hi):
            return mid
        if m > target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def calibrate(
    scores: ArrayLike,
    pairs: tuple[ArrayLike, ArrayLike, ArrayLike] | None = None,
    method: str = "b",
    k: int = DEFAULT_K,
    target_mean: float | None = None,
    labels: Sequence[str] | None = None,
    model_version: str | None = None,
) -> Calibration:
    """Fit a :class:`Calibration` for a folder's ``scores``.

    ``pairs`` = (s_first, s_second, outcome) arrays over *held-out* comparisons, outcome
    1 / 0 / 0.5 for the first image winning / losing / tying; required by method "b",
    ignored by method "a". ``target_mean`` (method B only) defaults to K / 2.
    ``labels`` defaults to :func:`default_labels` (k).
    """
    m = _normalise_method(method)
    k = int(k)
    if k < 1:
        raise CalibrationError(f"The number of buckets must be at least 1, got {k}.")
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(s) == 0:
        raise CalibrationError("There are no scores to calibrate; score the folder first.")
    if not np.all(np.isfinite(s)):
        bad = int((~np.isfinite(s)).sum())
        raise CalibrationError(f"{bad} of the {len(s)} scores are NaN or infinite.")
    label_list = list(labels) if labels is not None else default_labels(k)

    if m == "a":
        return Calibration(
            method="a", k=k, score_min=float(s.min()), score_max=float(s.max()),
            labels=label_list, model_version=model_version,
        )

    if pairs is None:
        raise CalibrationError(
            "Method B needs held-out comparisons to fit tau; use method A or collect more labels."
        )
    s_first, s_second, outcome = (np.asarray(a, dtype=np.float64).reshape(-1) for a in pairs)
    if not len(s_first) == len(s_second) == len(outcome):
        raise CalibrationError(
            "The held-out comparison arrays (first scores, second scores, outcomes) "
            "must have the same length."
        )
    if len(outcome) == 0:
        raise CalibrationError(
            "Method B needs held-out comparisons to fit tau; use method A or collect more labels."
        )
    finite = np.isfinite(s_first) & np.isfinite(s_second) & np.isfinite(outcome)
    if not np.all(finite):
        raise CalibrationError("Some held-out comparisons have NaN or infinite values.")
    if np.any((outcome < 0) | (outcome > 1)):
        raise CalibrationError("Comparison outcomes must be 1 (win), 0 (loss) or 0.5 (tie).")

    tau, nll = fit_tau(s_first - s_second, outcome)
    b = fit_bias(s, tau, k, target_mean)
    return Calibration(
        method="b", k=k, tau=tau, b=b,
        target_mean=k / 2.0 if target_mean is None else float(target_mean),
        labels=label_list, model_version=model_version,
        pairs_used=int(len(outcome)), fit_nll=nll,
    )
