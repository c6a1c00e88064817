"""Calibrated K-bucket ranks: turn raw JoyQuality scores into 0..K ranks and labels.

Three methods, one K everywhere (default K = 10; bucket = min(floor(rank), K - 1), numbered
0 = worst .. K - 1 = best: the reference's ``int(rank)``, clipped so that rank K is bucket K - 1):

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
      JoyQuality's scores are logits (P(A beats B) = sigmoid(s_A - s_B)), so tau = 1 a
      priori: tau is the *maximum a posteriori* value under a log-normal prior,
      log tau ~ N(0, TAU_PRIOR_SD^2) (TAU_PRIOR_SD = 0.5: tau within 0.37 .. 2.7 at two
      standard deviations), fitted on every held-out comparison (the unbiased labels):
          minimise  n L(tau) + (log tau)^2 / (2 TAU_PRIOR_SD^2)
      (a grid over log tau refined by golden-section search). A handful of comparisons
      therefore moves tau little (5 perfectly ordered pairs no longer send tau to 0 and
      the folder to the two extreme buckets; 7 noisy ones no longer make it 11.9 and the
      folder one or two middle buckets); a few hundred decide it. :func:`fit_tau` is the
      plain maximum-likelihood fit (no prior).
    * b is then found by bisection so that the mean rank over the folder equals
      ``target_mean`` (default K / 2); the mean rank is strictly decreasing in b.

Method "q" (quantile buckets, the default since issue 25)
    The folder's own score quantiles are the bucket edges: e_j = the j/K quantile of the
    folder's scores (e_0 = min, e_K = max), rank = piecewise-linear interpolation of the
    score between the edges (rank j at e_j), clipped to [0, K]. Each bucket therefore holds
    about 1/K of the folder whatever the model's confidence, and the order is the score
    order. No held-out comparisons are needed. If every score is equal, every image gets
    rank K / 2. Why this is the default: docs/learning.md, "Which buckets by default".

Method "reference" (the original JoyQuality recipe, for people who need their old buckets)
    tau by plain maximum likelihood (:func:`fit_tau`, no prior), and b searched so that
    the mean of (K - 1) sigmoid((s - b) / tau) equals K / 2 (the original searches with
    9 sigmoid), while ranks are K sigmoid((s - b) / tau) (it ranks with 10 sigmoid). The
    folder's mean rank is therefore K/2 * K/(K - 1) = 5.56 for K = 10, not 5.0, and the
    buckets lean up by about half a bucket. Method B is our default because its mean rank
    is the one asked for; "reference" reproduces the original's buckets exactly.

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
    "DEFAULT_METHOD",
    "quantile_edges",
    "QUALITY_PHRASES",
    "CalibrationError",
    "Calibration",
    "default_labels",
    "fit_tau",
    "fit_tau_map",
    "fit_bias",
    "calibrate",
    "METHODS",
    "METHOD_NAMES",
    "TAU_PRIOR_SD",
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

#: Calibration methods: "a" (equal-width), "b" (sigmoid ranks, tau with a prior), "reference",
#: "q" (quantile buckets, the default).
METHODS: tuple[str, ...] = ("a", "b", "reference", "q")
#: The method used when none is asked for.
DEFAULT_METHOD = "q"
#: How each method is named to a user.
METHOD_NAMES: dict[str, str] = {
    "a": "method A (equal-width score ranges)",
    "b": "method B (sigmoid ranks)",
    "reference": "the reference method (the original recipe's sigmoid ranks)",
    "q": "quantile buckets (equal shares of the folder)",
}


def sentence_start(text: str) -> str:
    """``text`` with its first letter upper-cased (the rest kept: "method B" -> "Method B")."""
    return text[:1].upper() + text[1:]


#: Standard deviation of the log-normal prior on tau (centred on tau = 1).
TAU_PRIOR_SD = 0.5

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

    Method "a" uses ``score_min`` / ``score_max``, method "q" its K + 1 ``edges``; methods
    "b" and "reference" use ``tau`` and ``b``. ``pairs_used`` counts the held-out comparisons tau was fitted on (0 for
    method A), ``fit_nll`` is the pairwise cross-entropy at the fitted tau,
    ``tau_prior_sd`` the prior's width (None: plain maximum likelihood). ``reason`` is one
    sentence saying why this method was used (shown by the CLI and the app).
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
    tau_prior_sd: float | None = None
    reason: str | None = None
    edges: list[float] | None = None

    def __post_init__(self) -> None:
        self.method = _normalise_method(self.method)
        self.k = int(self.k)
        if self.k < 1:
            raise CalibrationError(f"The number of buckets must be at least 1, got {self.k}.")
        if not self.labels:
            self.labels = default_labels(self.k)
        self.labels = [str(label) for label in self.labels]
        if len(self.labels) != self.k:
            raise CalibrationError(f"Expected {self.k} bucket labels but got {len(self.labels)}.")
        if self.method == "q":
            if self.edges is None or len(self.edges) != self.k + 1:
                raise CalibrationError(f"Quantile buckets need {self.k + 1} bucket edges.")
            self.edges = [float(e) for e in self.edges]
            if not all(math.isfinite(e) for e in self.edges) or any(b < a for a, b in zip(self.edges, self.edges[1:])):
                raise CalibrationError("Quantile bucket edges must be finite and in increasing order.")
        elif self.method == "a":
            if self.score_min is None or self.score_max is None:
                raise CalibrationError("Method A needs score_min and score_max.")
            if self.score_max < self.score_min:
                raise CalibrationError("Method A needs score_min <= score_max.")
        else:
            if self.tau is None or self.b is None:
                raise CalibrationError(f"{sentence_start(METHOD_NAMES[self.method])} needs tau and b.")
            if not (self.tau > 0 and math.isfinite(self.tau)) or not math.isfinite(self.b):
                raise CalibrationError(
                    f"{sentence_start(METHOD_NAMES[self.method])} needs a finite tau > 0 and a finite b."
                )

    def describe(self) -> str:
        """One line: the method by name and its parameters, e.g. ``method B (sigmoid ranks),
        K = 10, tau = 1.3 (fitted on 40 held-out comparisons, prior tau = 1), b = 0.12, mean rank 5``."""
        name = METHOD_NAMES[self.method]
        if self.method == "a":
            return f"{name}, K = {self.k}, scores {self.score_min:.4g} .. {self.score_max:.4g}"
        if self.method == "q":
            edges = self.edges or []
            return f"{name}, K = {self.k}, scores {edges[0]:.4g} .. {edges[-1]:.4g}, median {_median_edge(edges):.4g}"
        prior = f", prior tau = 1 +- {self.tau_prior_sd:g} in log" if self.tau_prior_sd else ", no prior"
        nll = f", NLL {self.fit_nll:.4f}" if self.fit_nll is not None else ""
        mean = self.mean_rank_target()
        return (
            f"{name}, K = {self.k}, tau = {self.tau:.4g} (fitted on {self.pairs_used} held-out comparisons"
            f"{prior}{nll}), b = {self.b:.4g}, mean rank {mean:.3g}"
        )

    def mean_rank_target(self) -> float:
        """The folder's mean rank this calibration was fitted to give (the reference method's
        is target * K / (K - 1), see the module docstring)."""
        target = self.k / 2.0 if self.target_mean is None else self.target_mean
        if self.method == "reference" and self.k > 1:
            return target * self.k / (self.k - 1)
        return target

    # -- applying -------------------------------------------------------------------

    def ranks(self, scores: ArrayLike) -> np.ndarray:
        """Float ranks in [0, K] (see module docstring for the formula per method)."""
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        if self.method == "a":
            lo, hi = float(self.score_min), float(self.score_max)  # type: ignore[arg-type]
            if hi > lo:
                return np.clip(self.k * (s - lo) / (hi - lo), 0.0, float(self.k))
            return np.full(len(s), self.k / 2.0)
        if self.method == "q":
            edges = np.asarray(self.edges, dtype=np.float64)
            if edges[-1] <= edges[0]:
                return np.full(len(s), self.k / 2.0)
            return _interp_ranks(s, edges)
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
            "tau_prior_sd": f(self.tau_prior_sd),
            "reason": self.reason,
            "edges": None if self.edges is None else [float(e) for e in self.edges],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict`; unknown keys are ignored, optional ones may be absent."""
        fmt = int(d.get("format", FORMAT_VERSION))
        if fmt > FORMAT_VERSION:
            raise CalibrationError(f"This calibration was saved by a newer version (format {fmt}); update the app.")
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
            tau_prior_sd=f("tau_prior_sd"),
            reason=d.get("reason") if isinstance(d.get("reason"), str) else None,
            edges=None if d.get("edges") is None else [float(e) for e in d["edges"]],
        )


def _median_edge(edges: Sequence[float]) -> float:
    return float(np.median(np.asarray(edges, dtype=np.float64)))


def _interp_ranks(s: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Rank j at edge j, linear in between; a run of equal edges (tied scores) gets the
    middle of its ranks, so tied images share one rank."""
    k = len(edges) - 1
    lo = np.searchsorted(edges, s, side="left")  # first edge >= s
    hi = np.searchsorted(edges, s, side="right")  # first edge > s
    r = np.empty(len(s))
    on_edge = hi > lo
    r[on_edge] = (lo[on_edge] + hi[on_edge] - 1) / 2.0
    between = ~on_edge
    j = np.clip(hi[between], 1, k)  # s lies in (edges[j - 1], edges[j])
    e0, e1 = edges[j - 1], edges[j]
    r[between] = (j - 1) + (s[between] - e0) / np.where(e1 > e0, e1 - e0, 1.0)
    return np.clip(r, 0.0, float(k))


def quantile_edges(scores: ArrayLike, k: int = DEFAULT_K) -> list[float]:
    """The K + 1 bucket edges of method "q": the j/K quantiles of ``scores`` (linear
    interpolation between order statistics), e_0 = min, e_K = max."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    return [float(e) for e in np.quantile(s, np.linspace(0.0, 1.0, int(k) + 1))]


def _normalise_method(method: str) -> str:
    m = str(method).strip().lower()
    if m not in METHODS:
        raise CalibrationError(f"Unknown calibration method {method!r}; use 'a', 'b', 'reference' or 'q'.")
    return m


# --------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------


def _pair_nll(u: float, d: np.ndarray, y: np.ndarray) -> float:
    """mean softplus(u d) - y u d  (= BCE of sigmoid(u d) against y)."""
    z = u * d
    softplus = np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))
    return float(np.mean(softplus - y * z))


def fit_tau(d: ArrayLike, y: ArrayLike, max_iter: int = 100, tol: float = 1e-12) -> tuple[float, float]:
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


def fit_tau_map(
    d: ArrayLike, y: ArrayLike, prior_sd: float = TAU_PRIOR_SD, grid_step: float = 0.02
) -> tuple[float, float]:
    """Maximum a posteriori tau under log tau ~ N(0, prior_sd^2) (see the module docstring):
    minimises n L(tau) + (log tau)^2 / (2 prior_sd^2) over log tau in [-7, 7] (a grid of
    ``grid_step``, then golden-section search in the best cell's neighbours). Always
    finite: with no informative comparison it returns the prior's tau = 1. Returns
    (tau, L at tau)."""
    da = np.asarray(d, dtype=np.float64).reshape(-1)
    ya = np.asarray(y, dtype=np.float64).reshape(-1)
    if prior_sd <= 0:
        raise CalibrationError("The prior's width on tau must be positive.")
    n = len(da)

    def objective(v: float) -> float:
        nll = _pair_nll(math.exp(-v), da, ya) if n else 0.0
        return n * nll + v * v / (2.0 * prior_sd * prior_sd)

    grid = np.arange(-7.0, 7.0 + grid_step / 2, grid_step)
    values = np.array([objective(float(v)) for v in grid])
    i = int(np.argmin(values))
    lo, hi = float(grid[max(0, i - 1)]), float(grid[min(len(grid) - 1, i + 1)])
    g = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = objective(a), objective(b)
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = objective(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = objective(b)
    v = (lo + hi) / 2.0
    if objective(float(grid[i])) < objective(v):
        v = float(grid[i])
    tau = math.exp(v)
    return tau, (_pair_nll(1.0 / tau, da, ya) if n else math.nan)


def fit_bias(
    scores: ArrayLike,
    tau: float,
    k: int = DEFAULT_K,
    target_mean: float | None = None,
    tol: float = 1e-10,
    max_iter: int = 400,
    scale: float | None = None,
) -> float:
    """Offset b such that mean_i scale sigmoid((s_i - b) / tau) = target_mean (default K / 2).

    ``scale`` defaults to K (method B); the reference method searches with K - 1 (its
    9 sigmoid) while ranking with K sigmoid. The mean m(b) falls strictly from ``scale`` to 0
    as b grows, so the root is bracketed by expanding [min s, max s] by tau-multiples and
    then found by bisection to ``tol``.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    target = k / 2.0 if target_mean is None else float(target_mean)
    if not 0.0 < target < k:
        raise CalibrationError(f"The target mean rank must lie strictly between 0 and {k}.")
    factor = float(k if scale is None else scale)
    if not 0.0 < target < factor:
        raise CalibrationError(f"The target mean rank must lie strictly between 0 and {factor:g}.")

    def mean_rank(b: float) -> float:
        return float(factor * np.mean(np.atleast_1d(sigmoid((s - b) / tau))))

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
    1 / 0 / 0.5 for the first image winning / losing / tying; required by methods "b" and
    "reference", ignored by methods "a" and "q". ``target_mean`` (not method A) defaults to K / 2.
    ``labels`` defaults to :func:`default_labels` (k). Method "b" fits tau with the prior
    (:func:`fit_tau_map`) and only refuses scores that agree with the comparisons no better
    than chance; "reference" fits it by plain maximum likelihood (:func:`fit_tau`), which
    also refuses perfectly ordered or all-equal comparisons.
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

    if m == "q":
        return Calibration(method="q", k=k, edges=quantile_edges(s, k), labels=label_list, model_version=model_version)
    if m == "a":
        return Calibration(
            method="a",
            k=k,
            score_min=float(s.min()),
            score_max=float(s.max()),
            labels=label_list,
            model_version=model_version,
        )

    if pairs is None:
        raise CalibrationError(
            f"{sentence_start(METHOD_NAMES[m])} needs held-out comparisons to fit tau; use method A or collect "
            "more labels."
        )
    s_first, s_second, outcome = (np.asarray(a, dtype=np.float64).reshape(-1) for a in pairs)
    if not len(s_first) == len(s_second) == len(outcome):
        raise CalibrationError(
            "The held-out comparison arrays (first scores, second scores, outcomes) must have the same length."
        )
    if len(outcome) == 0:
        raise CalibrationError(
            f"{sentence_start(METHOD_NAMES[m])} needs held-out comparisons to fit tau; use method A or collect "
            "more labels."
        )
    finite = np.isfinite(s_first) & np.isfinite(s_second) & np.isfinite(outcome)
    if not np.all(finite):
        raise CalibrationError("Some held-out comparisons have NaN or infinite values.")
    if np.any((outcome < 0) | (outcome > 1)):
        raise CalibrationError("Comparison outcomes must be 1 (win), 0 (loss) or 0.5 (tie).")

    d = s_first - s_second
    if m == "reference":
        tau, nll = fit_tau(d, outcome)
        b = fit_bias(s, tau, k, target_mean, scale=k - 1 if k > 1 else k)
        prior_sd = None
    else:
        if float(np.mean((0.5 - outcome) * d)) >= 0 and np.any(d != 0):
            raise CalibrationError(
                "The model's scores do not agree with the held-out comparisons better than "
                "chance, so tau cannot be fitted; use method A or collect more labels."
            )
        tau, nll = fit_tau_map(d, outcome)
        b = fit_bias(s, tau, k, target_mean)
        prior_sd = TAU_PRIOR_SD
    return Calibration(
        method=m,
        k=k,
        tau=tau,
        b=b,
        target_mean=k / 2.0 if target_mean is None else float(target_mean),
        labels=label_list,
        model_version=model_version,
        pairs_used=int(len(outcome)),
        fit_nll=nll,
        tau_prior_sd=prior_sd,
    )
