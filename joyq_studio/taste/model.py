"""The live personal head of one folder: a Bayesian head on frozen embeddings that updates
after every click and chooses the pair it learns most from.

    >>> tm = TasteModel(embeddings, base_head=(w, b), seed=0)
    >>> i, j = tm.next_pair()             # tm.last_kind: "info", "heldout" or "repeat"
    >>> tm.record(i, j, 1.0)              # 1 = i better, 0 = j better, 0.5 = tie
    >>> tm.scores(), tm.score_sd(), tm.head(), tm.heldout_accuracy()

Model (maths: ``head.py`` and ``shared/notes/bayesian-head.md``): score ``s_i = w . e_i + b``,
prior ``w ~ N(w0, I / alpha)`` centred on the starting head, logistic likelihood on embedding
differences with ties as soft targets and per-label weights, Laplace posterior
``N(w_hat, Sigma)``, alpha chosen by the evidence. Pairs recorded with kind "heldout" are
never fitted: they are the unbiased test set (``heldout_accuracy``).

After each fitted click (the online Laplace / assumed-density update of the note):

1. ``Sigma <- Sigma - r u u^T / (1 + r x^T u)``, ``u = Sigma x``, ``r = c p (1 - p)`` at the
   current mean. ``Sigma`` is held as the last refit's factored covariance minus the
   rank-one terms since (``Sigma_t = Sigma_0 - U U^T``), so this is O(d r + d k).
2. A Newton step on the mean with the full gradient over all fitted pairs and ``Sigma_t``
   as the inverse Hessian (halved until the objective drops): O(m d); up to 3 of them while
   the decrement stays above 1e-5 of the objective (a surprising answer).
3. A full refit (``fit_head``: exact MAP, fresh Hessian, alpha by the evidence, warm-started)
   after every fitted click while there are at most ``refit_small`` of them, then whenever
   their number has grown by ``refit_growth`` (x1.25) since the last one; ``refit()`` runs it
   on demand (e.g. from an idle worker).

Pair choice. A documented mix (``TasteMix``): ``heldout`` pairs are uniform over the
available images (never chosen by the model; fresh pairs only), ``repeat`` pairs show an
earlier fitted pair again (self-consistency; none during the first min(200, n/2) clicks),
and the rest are ``info`` pairs: the candidate that maximises the criterion among a bounded
set, never all n^2 pairs:

* anchors: the ``n_anchors`` eligible images of a random sample of ``anchor_sample`` (all
  of them in small folders) that could teach most (highest posterior score variance for
  bald/guro, highest test variance along their direction for the test criteria), plus 4
  random ones;
* partners: every image of that sample, and each anchor's ``window`` neighbours on each
  side in score order (answers near a coin flip).

Every anchor x partner pair is scored with cheap quantities: scores from the score cache
and the pair variance in a PCA-reduced space, ``v ~= x_z^T Sigma_r x_z + sigma_perp^2
(q_i + q_j)`` with ``x_z`` the pair's coordinates on the top ``reduced_dims`` principal
directions of the centred embeddings, ``Sigma_r = V^T Sigma V``, ``q_i`` image i's squared
distance from that subspace and ``sigma_perp^2`` the posterior's mean variance outside it
(exact when d <= reduced_dims); bilinear forms make the whole grid cost about one
(anchors x partners x r) product (``_grid``). The ``shortlist`` best allowed pairs are then
re-scored exactly (``a = w . x``, ``v = x^T Sigma x``, ``u = Sigma x``) and the best is shown.

The default criterion is ``vopt``: the expected drop of the posterior variance of the logits
of uniform test pairs of the whole pool (V-optimal design), ``r u^T C u / (1 + r v)`` with
``C = 2 Cov(e)`` and r = p (1 - p) at the predictive p. It targets what the user sees, the
order of images never shown; BALD (information about w) and GURO are the alternatives, and
the closed-loop benchmark (``joyq bench taste``) compares them.

Rules: never a self-pair; never a pair by accident again (a pair is shown again only as a
``repeat``, or in tiny folders once a third of all pairs have been used, see
``_pair_limit``); a pair that was issued and not recorded is not issued again, and a
``skip``-ped pair never again; images shown ``max_shows`` times (default 3 x the mean + 6)
rest while others are eligible. ``NoPairAvailable`` when nothing can be shown.

Cost per click at n images, d dims, m fitted pairs: O(m d) per Newton step, O(d^2) for the
covariance products, O(anchor_sample (r^2 + anchors r)) for the choice, and the score cache
is refreshed in chunks of ``ROLL_MACS / d`` rows (all of them at once below
``FULL_RESCORE_MACS``), so it is never O(n d) per click in large folders. Scores, SDs and the
head returned to the caller are always exact (``scores`` is a fresh ``E w``). Measured in
``docs/taste.md``: p99 25 ms per click at 100k images x 1152 dims with 5,000 earlier pairs.
Small BLAS calls dominate: on a busy 2-core machine one BLAS thread is much faster than two.

Everything is numpy arrays; nothing here imports Qt, the CLI or the benchmarks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import NoPairAvailable
from ..metrics import wilson_interval  # the one Wilson interval
from .acquisition import criterion as _criterion
from .acquisition import test_variance_reduction
from .head import ALPHA_PRIOR_SD, DEFAULT_LAPSE, HeadFit, default_alpha, fit_head, link_terms, pair_loss, sigmoid
from .pacing import SMALL_FOLDER, RecentShows, heldout_due

__all__ = ["KINDS", "STRATEGIES", "Accuracy", "HeldoutAccuracy", "TasteMix", "TasteModel", "wilson_interval"]

KINDS: tuple[str, ...] = ("info", "heldout", "repeat", "explore")
"""Kinds of pair ``next_pair`` issues ("explore": a uniform pair in place of a model pair,
fitted like one); recorded pairs we did not issue are "other"."""

STRATEGIES: dict[str, tuple[str, float]] = {
    "vopt": ("vopt", 0.0),
    "vopt-explore": ("vopt", 0.25),
    "bald": ("bald", 0.0),
    "guro": ("guro", 0.0),
    "eer": ("eer", 0.0),
    "random": ("vopt", 1.0),
}
"""Pair strategies by name (``TasteModel(strategy=...)``): (criterion, explore share), the
explore share being the part of the model's pairs replaced by uniform pairs. "random" keeps
the held-out schedule and repeats but draws every other pair uniformly. Measured against each
other, world by world, by ``joyq bench taste`` (docs/taste.md)."""

BASE_SCALE_SD = 1.0
"""The value to pass as ``base_scale_sd`` to let the clicks turn a wrong base round (strategy
``model-scale`` of the benchmark). Off by default: with a base whose logits are far larger
than the user's (saturated), the Laplace update learns nothing from pairs the base is sure
of while the extra direction keeps them looking uncertain (docs/taste.md)."""

COINFLIP_BAND = 0.05
"""A pair is a coin flip when the model's predicted win probability is within 0.5 +- this."""

REPEAT_START = 200
"""No repeats during the first min(REPEAT_START, n_available / 2) recorded comparisons."""

FULL_RESCORE_MACS = 2_000_000
"""Up to n d = this, the score cache is recomputed whole (E w) when the head has changed."""

ROLL_MACS = 2_000_000
"""Above it, each ``next_pair`` refreshes this many multiply-adds' worth of rows (about 1.7k
rows at d = 1152, well under a millisecond), and the score order is re-sorted once per full
cycle. The choice re-scores its shortlist exactly, so only the windows see stale scores."""

NEWTON_STEPS = 3
NEWTON_TOL = 1e-5
"""Per click: Newton steps until the decrement (relative to the objective) is below this."""

REFIT_TOL = 1e-6
REFIT_ALPHA_TOL = 1e-2
"""Live refits stop a little earlier than ``fit_head``'s defaults (alpha to 1%): the Newton
steps after every click keep refining the mean, and a refit is the slowest click."""

DENSE_MAX = 512
"""Up to this many images, pair counts also live in an (n, n) matrix (vectorised checks and
an exhaustive fallback search)."""


TEST_CRITERIA = ("vopt", "eer")
"""Criteria on the test distribution (uniform pairs of the whole pool): ``vopt`` = expected
drop of the summed test-pair logit variance; ``eer`` = the vopt shortlist, then the pair that
minimises the expected share of misordered test pairs after its answer (one-step lookahead,
expected ordering-error reduction)."""

EER_PAIRS = 1024
"""Test pairs sampled for the ``eer`` lookahead."""


@dataclass(frozen=True)
class Accuracy:
    """Agreement with the user's clicks on ``count`` pairs, with its Wilson 95% interval.

    Agreement of one pair is ``1 - |vote - outcome|``, vote = 1 / 0 / 0.5 when the head puts
    the first image above / below / level with the second (a tie answer scores 0.5)."""

    value: float
    count: int
    low: float
    high: float


@dataclass(frozen=True)
class HeldoutAccuracy:
    """The current head and the starting head on the same held-out pairs."""

    model: Accuracy
    base: Accuracy


@dataclass(frozen=True)
class TasteMix:
    """Shares of each pair kind; ``info`` (model-driven) gets the rest."""

    heldout: float = 0.10
    repeat: float = 0.04

    def __post_init__(self) -> None:
        if self.heldout < 0 or self.repeat < 0 or self.heldout + self.repeat > 1:
            raise ValueError("TasteMix shares must be >= 0 and sum to at most 1")


@dataclass
class _Undo:
    """What ``record`` changed, to take it back exactly."""

    comparison: tuple[int, int, float, str, float]
    key: int
    pending: dict[int, str]
    first_set: bool
    repeated_added: bool
    rng_state: dict
    fitted: bool
    m: int
    w: np.ndarray
    alpha: float
    fit: HeadFit
    f: np.ndarray
    post: tuple
    next_refit: int
    c_eff: tuple = ()


def _normal_tail(x: np.ndarray) -> np.ndarray:
    """Phi(-x) for x >= 0 (Abramowitz & Stegun 7.1.26 for erfc, |error| < 1.5e-7; numpy only)."""
    z = np.asarray(x, dtype=np.float64) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return 0.5 * poly * np.exp(-z * z)


def _as_index_array(indices) -> np.ndarray:
    return np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices, dtype=np.int64)


class TasteModel:
    """The Bayesian personal head over one pool of images, and the next pair to show.

    Parameters
    ----------
    embeddings: (n, d) pooled tower outputs as they come (not normalised).
    base_head: (w, b), the starting head (``w`` of shape (d,)); the prior's centre.
    seed: everything random comes from ``np.random.default_rng(seed)``.
    mix: shares of held-out and repeat pairs (``TasteMix``).
    criterion: "vopt" (default), "eer", "bald" or "guro" (module docstring, ``acquisition``).
    alpha: fix the prior precision (tests, ablations); default: chosen by the evidence.
    max_shows: cap on how often one image is shown; None = 3 x mean shows + 6.
    repeat_gap: a repeat is drawn from pairs at least this many clicks old.
    pair_reuse: see ``_pair_limit`` (only matters in tiny folders).
    reduced_dims: PCA dimensions for the cheap candidate ranking.
    n_anchors, window, anchor_sample, shortlist: the candidate set (module docstring).
    refit_small, refit_growth: the refit schedule (module docstring).
    undo_depth: clicks that ``undo`` takes back exactly; older ones are taken back by a replay.
    lapse: the likelihood's lapse rate (``head.DEFAULT_LAPSE``, 5%; 0 = plain logistic).
    alpha_prior_sd: SD in nats of the hyperprior on ln alpha (``head.ALPHA_PRIOR_SD``);
        None = the evidence alone (alpha may then stick at the base or run away).
    strategy: a name of ``STRATEGIES``; sets ``criterion`` and ``explore``.
    explore: share of model pairs replaced by uniform pairs (kind "explore", fitted).
    coinflip_max: at most this share of model pairs may be coin flips (predicted win
        probability within 0.5 +- ``COINFLIP_BAND``); 1 = no limit.
    repetition_limit: no image more than twice in any 20 consecutive pairs (``pacing``;
        folders under 40 images exempt).
    heldout_schedule: front-load held-out pairs (``pacing.heldout_share``: 30% of the first
        100 clicks, then ``mix.heldout``); False = ``mix.heldout`` at random throughout.
    forget_half_life: forgetting for a drifting taste (off by default; the user turns it on):
        a fitted click weighs 0.5 ** (age / half-life), age in fitted clicks, and the held-out
        agreement uses the held-out pairs of the last 2 half-lives only.
    base_scale_sd: the starting head's scale is uncertain too (None = off, the default;
        ``BASE_SCALE_SD`` = 1 when on): the prior becomes
        ``w ~ N(w0, I / alpha + s^2 w0 w0^T / alpha_ref)`` with s = base_scale_sd, so the
        clicks can shrink, drop or turn round a base that points the wrong way at the cost of
        one direction. Built as one extra embedding column ``c (w0 . e)`` whose weight has
        prior mean 1 / c; ``head()`` maps it back.

    Attributes: ``alpha`` (the prior strength in use), ``last_kind``, ``shows`` (per-image
    counts), ``available`` (bool mask), ``history`` (list of (i, j, outcome, kind, weight)).
    """

    E: np.ndarray
    w: np.ndarray
    alpha: float
    shows: np.ndarray
    available: np.ndarray
    _history: list[tuple[int, int, float, str, float]]
    _pair_count: dict[int, int]
    _pending: dict[int, str]
    _first_idx: dict[int, int]
    _repeated: set[int]
    _skipped: set[int]
    _counts: np.ndarray | None
    _undo: list[_Undo]
    _m: int
    _X: np.ndarray
    _y: np.ndarray
    _c: np.ndarray
    _f: np.ndarray
    _gram: np.ndarray | None
    _fit: HeadFit
    _next_refit: int
    _s: np.ndarray | None
    _pos: np.ndarray
    _order: np.ndarray
    _roll: int
    _s_dirty: bool
    _V: np.ndarray
    _r: int
    _zmean: np.ndarray
    _Z: np.ndarray
    _nrm2: np.ndarray
    _q: np.ndarray
    _S0: np.ndarray | None
    _S0r: np.ndarray
    _Sr: np.ndarray
    _trS0: float
    _trU: float
    _U: np.ndarray
    _Ur: np.ndarray
    _k: int
    _ct_cache: tuple[np.ndarray, float] | None
    _jitter: np.ndarray

    def __init__(
        self,
        embeddings: np.ndarray,
        base_head: tuple[np.ndarray, float],
        seed: int = 0,
        *,
        mix: TasteMix = TasteMix(),
        criterion: str = "vopt",
        alpha: float | None = None,
        max_shows: int | None = None,
        repeat_gap: int = 20,
        pair_reuse: float = 3.0,
        reduced_dims: int = 128,
        n_anchors: int = 16,
        window: int = 16,
        anchor_sample: int = 1024,
        shortlist: int = 16,
        refit_small: int = 32,
        refit_growth: float = 1.25,
        undo_depth: int = 100,
        lapse: float = DEFAULT_LAPSE,
        alpha_prior_sd: float | None = ALPHA_PRIOR_SD,
        strategy: str | None = None,
        explore: float = 0.0,
        coinflip_max: float = 0.2,
        repetition_limit: bool = True,
        heldout_schedule: bool = True,
        forget_half_life: float | None = None,
        base_scale_sd: float | None = None,
    ) -> None:
        E = np.asarray(embeddings)
        if E.ndim != 2 or E.shape[1] == 0:
            raise ValueError("embeddings must be a 2-d array (n_images, dim)")
        E = np.ascontiguousarray(E, dtype=np.float32)
        if not np.all(np.isfinite(E)):
            raise ValueError("embeddings must be finite")
        w0, b0 = base_head
        w0 = np.asarray(w0, dtype=np.float64).reshape(-1)
        if w0.shape != (E.shape[1],) or not np.all(np.isfinite(w0)) or not math.isfinite(float(b0)):
            raise ValueError(f"base_head must be (w, b) with w of {E.shape[1]} finite numbers")
        if alpha is not None and not alpha > 0:
            raise ValueError("alpha must be > 0")
        if not 0.0 <= lapse < 1.0:
            raise ValueError("lapse must lie in [0, 1)")
        self.lapse, self.alpha_prior_sd = float(lapse), alpha_prior_sd
        if strategy is not None:
            if strategy not in STRATEGIES:
                raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
            criterion, explore = STRATEGIES[strategy]
        if not 0.0 <= explore <= 1.0 or not 0.0 <= coinflip_max <= 1.0:
            raise ValueError("explore and coinflip_max must lie in [0, 1]")
        self.strategy = strategy
        self.explore, self.coinflip_max = float(explore), float(coinflip_max)
        self.repetition_limit, self.heldout_schedule = bool(repetition_limit), bool(heldout_schedule)
        if forget_half_life is not None and not forget_half_life > 0:
            raise ValueError("forget_half_life must be > 0 (or None: no forgetting)")
        self.forget_half_life = None if forget_half_life is None else float(forget_half_life)
        self._recent = RecentShows()
        self.n_info_issued, self.n_coinflip_issued = 0, 0
        self._base_dir: np.ndarray | None = None
        self._base_c = 1.0
        self._ref0 = 1.0
        self.d_in = E.shape[1]
        if base_scale_sd is not None:  # one extra column carries the base's own direction
            if not base_scale_sd > 0:
                raise ValueError("base_scale_sd must be > 0 (or None)")
            col = (E @ w0.astype(np.float32)).astype(np.float64)
            rng0 = np.random.default_rng([seed, 17])
            i0, j0 = rng0.integers(0, len(E), 2048), rng0.integers(0, len(E), 2048)
            x0 = E[i0].astype(np.float64) - E[j0]
            ref0 = default_alpha(x0, w0)
            self._base_c = float(base_scale_sd) * math.sqrt(ref0)
            self._ref0 = ref0
            self._base_dir = w0
            E = np.concatenate([E, (self._base_c * col)[:, None].astype(np.float32)], axis=1)
            w0 = np.concatenate([np.zeros(self.d_in), [1.0 / self._base_c]])
        self.n, self.d = E.shape
        self.E = E
        self.w0, self.b0 = w0, float(b0)
        self.rng = np.random.default_rng(seed)
        self.mix = mix
        self.criterion = criterion
        self._crit = None if criterion in TEST_CRITERIA else _criterion(criterion)
        self._fixed_alpha = alpha
        self.max_shows, self.repeat_gap, self.pair_reuse = max_shows, int(repeat_gap), float(pair_reuse)
        self.n_anchors, self.window = int(n_anchors), int(window)
        self.anchor_sample, self.shortlist = int(anchor_sample), int(shortlist)
        self.refit_small, self.refit_growth = int(refit_small), float(refit_growth)
        self.undo_depth = int(undo_depth)
        self.mean_e = E.mean(axis=0, dtype=np.float64) if self.n else np.zeros(self.d)
        self._build_reduced(int(reduced_dims))
        # with the base's scale column, the prior's centre stays that of the plain embedding
        # (the column would otherwise double it and halve the prior variance elsewhere)
        self._alpha_ref = self._ref0 if self._base_dir is not None else self._prior_alpha()
        self.last_kind: str | None = None
        self.available = np.ones(self.n, dtype=bool)
        self._jitter = np.asarray(self.rng.random(self.n)) * 1e-9
        self._skipped = set()
        self._ct_cache = None
        self._reset()

    # ------------------------------------------------------------------ public: state

    @property
    def history(self) -> list[tuple[int, int, float, str, float]]:
        """Every recorded comparison, in order: (i, j, outcome, kind, weight)."""
        return list(self._history)

    @property
    def n_fitted(self) -> int:
        """Number of comparisons the head is fitted on (everything but held-out kinds)."""
        return self._m

    def head(self) -> tuple[np.ndarray, float]:
        """The current MAP head (w, b); before any fitted click, the starting head.

        b keeps the pool's mean score where the starting head put it:
        ``b = b0 + (w0 - w) . mean(e)`` (the bias is not identified by pairs)."""
        b = self.b0 + float((self.w0 - self.w) @ self.mean_e)
        if self._base_dir is None:
            return self.w.copy(), b
        d = self.d_in
        return self.w[:d] + self.w[d] * self._base_c * self._base_dir, b

    def scores(self) -> np.ndarray:
        """(n,) posterior-mean scores ``w . e_i + b`` (exact; one n x d product)."""
        b = self.b0 + float((self.w0 - self.w) @ self.mean_e)
        return (self.E @ self.w.astype(np.float32)).astype(np.float64) + b

    def score_sd(self, indices: Sequence[int] | np.ndarray | None = None, exact: bool | None = None) -> np.ndarray:
        """Posterior SD of each image's score relative to the pool mean, ``sqrt(c^T Sigma c)``
        with ``c = e_i - mean(e)`` (the mean's own uncertainty does not reorder anything).

        Exact when ``exact`` or when it costs at most ~2e9 multiply-adds (k d r); otherwise
        from the PCA-reduced posterior (the cheap ranking's approximation, module docstring).
        """
        idx = np.arange(self.n) if indices is None else _as_index_array(indices)
        r_full = self._fit.basis.shape[1] + self._k
        if exact or (exact is None and len(idx) * self.d * max(r_full, 1) <= 2e9):
            out = np.empty(len(idx))
            step = 4096
            for s in range(0, len(idx), step):
                c = self.E[idx[s : s + step]].astype(np.float64) - self.mean_e
                out[s : s + step] = self._quad_exact(c)
            return np.sqrt(np.maximum(out, 0.0))
        return np.sqrt(self._var_reduced(idx))

    def heldout_accuracy(self) -> HeldoutAccuracy:
        """The current head's and the starting head's agreement with the held-out clicks."""
        start = 0
        if self.forget_half_life is not None:  # forgetting on: the recent held-out pairs only
            start = max(0, len(self._history) - int(2 * self.forget_half_life))
        rows = [(i, j, o) for i, j, o, kind, _ in self._history[start:] if kind == "heldout"]
        if not rows:
            nan = Accuracy(math.nan, 0, math.nan, math.nan)
            return HeldoutAccuracy(nan, nan)
        arr = np.array(rows, dtype=np.float64)
        ii, jj, o = arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64), arr[:, 2]
        x = self.E[ii].astype(np.float64) - self.E[jj]

        def acc(w: np.ndarray) -> Accuracy:
            vote = 0.5 * (np.sign(x @ w) + 1.0)
            k = float(np.sum(1.0 - np.abs(vote - o)))
            lo, hi = wilson_interval(k, len(o))
            return Accuracy(k / len(o), len(o), lo, hi)

        return HeldoutAccuracy(acc(self.w), acc(self.w0))

    def self_agreement(self) -> tuple[float, int]:
        """(share of repeated pairs answered the same way twice, number of repeats)."""
        first: dict[int, float] = {}
        agree = []
        for i, j, o, kind, _ in self._history:
            key = self._key(i, j)
            o_canon = o if i < j else 1.0 - o
            if kind == "repeat" and key in first:
                agree.append(1.0 - abs(first[key] - o_canon))
            elif kind != "repeat":
                first.setdefault(key, o_canon)
        return (float(np.mean(agree)) if agree else math.nan), len(agree)

    def win_probability(self, i, j) -> np.ndarray:
        """Predictive P(i beats j) integrating over the posterior (MacKay's probit
        approximation): sigmoid(a / sqrt(1 + pi v / 8))."""
        ii, jj = np.atleast_1d(np.asarray(i, dtype=np.int64)), np.atleast_1d(np.asarray(j, dtype=np.int64))
        x = self.E[ii].astype(np.float64) - self.E[jj]
        a, v = x @ self.w, self._quad_exact(x)
        return 0.5 * self.lapse + (1.0 - self.lapse) * np.asarray(sigmoid(a / np.sqrt(1.0 + math.pi * v / 8.0)))

    # ------------------------------------------------------------------ public: changes

    def record(self, i: int, j: int, outcome: float, kind: str | None = None, weight: float = 1.0) -> None:
        """Record that i beat j (outcome 1.0), lost (0.0) or tied (0.5).

        Any pair may be recorded, issued or not; ``kind`` defaults to the kind it was issued
        under, else "other". Held-out kinds are kept for testing and never fitted. ``weight``
        scales the label's likelihood (labels from other sources); weight 0 is kept but not
        fitted."""
        c = self._normalise(i, j, outcome, kind, weight)
        i, j, o, kind, weight = c
        key = self._key(i, j)
        fitted = kind != "heldout" and weight > 0
        # the posterior's arrays are replaced, never written in place, below row m / k:
        # references are enough, except for the fitted logits, which every step rewrites
        u = _Undo(
            c,
            key,
            dict(self._pending),
            key not in self._first_idx and kind != "repeat",
            kind == "repeat" and key not in self._repeated,
            dict(self.rng.bit_generator.state),
            fitted,
            self._m,
            self.w.copy(),
            self.alpha,
            self._fit,
            self._f[: self._m].copy() if fitted else self._f[:0],
            self._post_state(),
            self._next_refit,
            (self._c_eff, self._c_eff_m),
        )
        self._undo.append(u)
        if len(self._undo) > self.undo_depth:
            del self._undo[0]
        self._book(c)
        if fitted:
            self._add_fitted(i, j, o, weight)

    def undo(self) -> tuple | None:
        """Take back the last ``record``: the head, alpha, posterior, counts and history are
        exactly as they were before it, and the pair is pending again (issued, so the app
        can show it again). Pairs issued after it are forgotten; skips, exclusions and added
        images stay. Returns the comparison taken back, or None if there is none."""
        if not self._history:
            return None
        if not self._undo:  # older than undo_depth: rebuild by a replay
            last = self._history[-1]
            self.replay(self._history[:-1])
            return last
        u = self._undo.pop()
        i, j, o, kind, weight = u.comparison
        self._history.pop()
        self.shows[i] -= 1
        self.shows[j] -= 1
        cnt = self._pair_count[u.key] - 1
        if cnt:
            self._pair_count[u.key] = cnt
        else:
            del self._pair_count[u.key]
        if self._counts is not None:
            self._counts[i, j] -= 1
            self._counts[j, i] -= 1
        if u.first_set:
            del self._first_idx[u.key]
        if u.repeated_added:
            self._repeated.discard(u.key)
        self._pending = {k: v for k, v in u.pending.items() if k not in self._skipped}
        self.rng.bit_generator.state = u.rng_state
        if u.fitted:
            self._m = u.m
            self.w, self.alpha, self._fit = u.w, u.alpha, u.fit
            self._f[: u.m] = u.f
            self._set_post_state(u.post)
            self._next_refit = u.next_refit
            self._c_eff, self._c_eff_m = u.c_eff
            self._scores_changed()
        return u.comparison

    def skip(self, i: int, j: int) -> None:
        """The user skipped the pair: it is no longer pending and is never issued again
        (it can still be recorded)."""
        key = self._key(int(i), int(j))
        self._pending.pop(key, None)
        self._skipped.add(key)

    def exclude(self, indices: Iterable[int] | np.ndarray) -> None:
        """Never show these images (deleted, unreadable, or kept out of sample) until ``include``-d."""
        self.available[_as_index_array(indices)] = False

    def include(self, indices: Iterable[int] | np.ndarray) -> None:
        self.available[_as_index_array(indices)] = True

    def add_images(self, new_embeddings: np.ndarray) -> None:
        """Append images (indices n, n + 1, ...); they are scored by the current head and
        can be shown at once. The pool mean used for ``head``'s bias and the PCA basis stay
        those of the first images."""
        new = np.ascontiguousarray(np.asarray(new_embeddings), dtype=np.float32)
        if new.ndim != 2 or new.shape[1] != self.d_in or not np.all(np.isfinite(new)):
            raise ValueError(f"new embeddings must be finite and have shape (k, {self.d_in})")
        if self._base_dir is not None:
            col = self._base_c * (new @ self._base_dir.astype(np.float32))
            new = np.ascontiguousarray(np.concatenate([new, col[:, None]], axis=1), dtype=np.float32)
        k = len(new)
        if k == 0:
            return
        self.E = np.concatenate([self.E, new])
        z, nrm2, q = self._project(new)
        self._Z = np.concatenate([self._Z, z])
        self._nrm2 = np.concatenate([self._nrm2, nrm2])
        self._q = np.concatenate([self._q, q])
        self.n += k
        self.available = np.concatenate([self.available, np.ones(k, dtype=bool)])
        self.shows = np.concatenate([self.shows, np.zeros(k, dtype=np.int64)])
        self._jitter = np.concatenate([self._jitter, self.rng.random(k) * 1e-9])
        # keys i * n + j depend on n: re-key every dictionary
        old_n = self.n - k
        self._rekey(old_n)
        if self._counts is not None:
            if self.n <= DENSE_MAX:
                c = np.zeros((self.n, self.n), dtype=np.int32)
                c[:old_n, :old_n] = self._counts
                self._counts = c
            else:
                self._counts = None
        self._s = None
        self._ct_cache = None
        self._scores_changed()

    def replay(self, comparisons: Iterable[Sequence]) -> None:
        """Forget everything recorded and fit ``comparisons`` (i, j, outcome[, kind[, weight]])
        in one go: one refit instead of one update per click (5k pairs in about a second).
        Pending pairs and the undo history are dropped; skips and exclusions stay."""
        comps = [
            self._normalise(c[0], c[1], c[2], c[3] if len(c) > 3 else None, c[4] if len(c) > 4 else 1.0)
            for c in comparisons
        ]
        self._reset()
        for c in comps:
            self._book(c)
            i, j, o, kind, weight = c
            if kind != "heldout" and weight > 0:
                self._append_fitted(i, j, o, weight)
        self._undo.clear()
        if self._m:
            self.refit()

    def refit(self, live: bool = False) -> HeadFit:
        """Full refit: exact MAP, fresh Laplace covariance and alpha by the evidence
        (warm-started from the current head and alpha). Returns the fit. ``live``: the
        automatic refits between clicks, which stop at REFIT_TOL / REFIT_ALPHA_TOL."""
        m = self._m
        tol, alpha_tol = (REFIT_TOL, REFIT_ALPHA_TOL) if live else (1e-7, 1e-3)
        gram = self._gram[:m, :m] if (self._gram is not None and m < self.d) else None
        if self.forget_half_life is not None:  # new recency weights (a new array: undo keeps the old)
            self._c_eff, self._c_eff_m = self._decayed(m), m
        fit = fit_head(
            self._X[:m],
            self._y[:m],
            self._weights(m),
            self.w0,
            alpha=self._fixed_alpha,
            alpha_init=self.alpha,
            w_init=self.w,
            gram=gram,
            alpha_ref=self._alpha_ref,
            tol=tol,
            alpha_tol=alpha_tol,
            lapse=self.lapse,
            alpha_prior_sd=self.alpha_prior_sd,
        )
        self._fit, self.w, self.alpha = fit, fit.w, fit.alpha
        self._f[:m] = (self._X[:m] @ self.w.astype(np.float32)).astype(np.float64)
        self._after_refit()
        self._next_refit = m + 1 if m < self.refit_small else max(m + 1, int(math.ceil(m * self.refit_growth)))
        if self.forget_half_life is not None:  # the recency weights move: refit often
            self._next_refit = min(self._next_refit, m + max(1, int(self.forget_half_life / 10)))
        self._scores_changed()
        return fit

    # ------------------------------------------------------------------ public: pairs

    def next_pair(self) -> tuple[int, int]:
        """The next pair to show; ``last_kind`` says which kind. Raises NoPairAvailable."""
        i, j, _ = self.next_pair_with_kind()
        return i, j

    def next_pair_with_kind(self) -> tuple[int, int, str]:
        n_av = int(np.count_nonzero(self.available))
        if n_av < 2:
            raise NoPairAvailable("Fewer than 2 images can be shown, so there is no pair to compare.")
        self._tired = self._tired_mask(n_av)
        u = self.rng.random()
        kind, pair = "info", None
        if self.heldout_schedule:
            n_held = sum(1 for h in self._history if h[3] == "heldout")
            n_held += sum(1 for k in self._pending.values() if k == "heldout")
            if heldout_due(len(self._history) + len(self._pending), n_held, self.mix.heldout):
                kind, pair = "heldout", self._pick_heldout(n_av)
            elif u < self.mix.repeat:
                kind, pair = "repeat", self._pick_repeat(n_av)
        elif u < self.mix.heldout:
            kind, pair = "heldout", self._pick_heldout(n_av)
        elif u < self.mix.heldout + self.mix.repeat:
            kind, pair = "repeat", self._pick_repeat(n_av)
        if pair is None and self.explore > 0 and self.rng.random() < self.explore:
            limit = self._pair_limit(n_av)
            kind, pair = "explore", self._random_pair(self._eligible() & ~self._tired, limit)
        if pair is None:
            kind, pair = "info", self._pick_info(n_av)
            self.n_info_issued += 1
            self.n_coinflip_issued += int(self._last_coinflip)
        i, j = pair
        if self.repetition_limit:
            self._recent.add(i, j)
        if self.rng.random() < 0.5:  # random sides: no position bias
            i, j = j, i
        self._pending[self._key(i, j)] = kind
        self.last_kind = kind
        return int(i), int(j), kind

    # ------------------------------------------------------------------ internals: set-up

    def _reset(self) -> None:
        """Empty history and data; the posterior is the prior."""
        d = self.d
        self.shows = np.zeros(self.n, dtype=np.int64)
        self._history = []
        self._pair_count = {}
        self._pending = {}
        self._first_idx = {}
        self._repeated = set()
        self._counts = np.zeros((self.n, self.n), dtype=np.int32) if self.n <= DENSE_MAX else None
        self._undo = []
        cap = 64
        self._m = 0
        self._X = np.zeros((cap, d), dtype=np.float32)
        self._y = np.zeros(cap)
        self._c = np.zeros(cap)
        self._c_eff, self._c_eff_m = np.zeros(0), 0
        self._f = np.zeros(cap)
        self._gram = np.zeros((cap, cap))
        self.w = self.w0.copy()
        self.alpha = float(self._fixed_alpha if self._fixed_alpha is not None else self._alpha_ref)
        self._fit = fit_head(np.zeros((0, d)), np.zeros(0), None, self.w0, alpha=self.alpha)
        self._after_refit()
        self._next_refit = 1
        self._s = None
        self._roll = 0
        self._recent.clear()
        self._tired = np.zeros(self.n, dtype=bool)
        self._last_coinflip = False
        self._limit_coinflips = False
        self._scores_changed()

    def _project(self, E: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """PCA coordinates z, squared centred norm and squared distance from the subspace."""
        z = (E @ self._V.astype(np.float32)) - self._zmean
        me = E.astype(np.float64) @ self.mean_e
        nrm2 = np.einsum("ij,ij->i", E, E, dtype=np.float64) - 2.0 * me + float(self.mean_e @ self.mean_e)
        q = np.maximum(nrm2 - np.einsum("ij,ij->i", z, z, dtype=np.float64), 0.0)
        return np.ascontiguousarray(z, dtype=np.float32), nrm2, q

    def _build_reduced(self, dims: int) -> None:
        """Top ``dims`` principal directions of the centred embeddings (PCA of <= 4096 rows)."""
        d = self.d
        if d <= dims:
            self._V = np.eye(d)
        else:
            rows = np.arange(self.n) if self.n <= 4096 else np.sort(self.rng.choice(self.n, 4096, replace=False))
            xs = self.E[rows] - self.mean_e.astype(np.float32)
            cov = (xs.T @ xs).astype(np.float64)
            lam, vec = np.linalg.eigh(cov)
            self._V = np.ascontiguousarray(vec[:, ::-1][:, :dims])
        self._r = self._V.shape[1]
        self._zmean = (self.mean_e @ self._V).astype(np.float32)
        self._Z, self._nrm2, self._q = self._project(self.E)

    def _prior_alpha(self) -> float:
        """Prior precision before any label: ``default_alpha`` on 2048 random pairs."""
        if self.n < 2:
            return 1.0
        i = self.rng.integers(0, self.n, 2048)
        j = self.rng.integers(0, self.n, 2048)
        ok = i != j
        if not np.any(ok):
            return 1.0
        return default_alpha(self.E[i[ok]].astype(np.float64) - self.E[j[ok]], self.w0)

    # ------------------------------------------------------------------ internals: posterior

    def _after_refit(self) -> None:
        """Reset the rank-one terms and the reduced-space covariance after a (re)fit."""
        fit = self._fit
        qv = fit.basis.T @ self._V  # (r', r)
        self._S0r = np.eye(self._r) / fit.alpha + (qv.T * fit.shrink()) @ qv
        self._trS0 = self.d / fit.alpha + float(np.sum(fit.shrink()))
        # with many directions learned, one dense float32 pass beats two through the basis
        self._S0 = fit.covariance().astype(np.float32) if fit.lam.size > self.d // 2 else None
        self._U = np.zeros((16, self.d))
        self._Ur = np.zeros((16, self._r))
        self._k = 0
        self._Sr = self._S0r.copy()
        self._trU = 0.0

    def _post_state(self) -> tuple:
        return (self._S0r, self._trS0, self._U, self._Ur, self._k, self._trU, self._S0)

    def _set_post_state(self, s: tuple) -> None:
        self._S0r, self._trS0, self._U, self._Ur, self._k, self._trU, self._S0 = s
        k = self._k
        self._Sr = self._S0r - self._Ur[:k].T @ self._Ur[:k]

    def _cov_matvec(self, v: np.ndarray) -> np.ndarray:
        """Sigma_t v = Sigma_0 v - U (U^T v), for v of shape (d,) or (d, k)."""
        if self._S0 is not None:
            out = (self._S0 @ np.asarray(v, dtype=np.float32)).astype(np.float64)
        else:
            out = self._fit.cov_matvec(v)
        if self._k:
            U = self._U[: self._k]
            out -= U.T @ (U @ v)
        return out

    def _quad_exact(self, x: np.ndarray) -> np.ndarray:
        """x_k^T Sigma_t x_k for every row of x (k, d)."""
        x = np.atleast_2d(x)
        if self._S0 is not None:
            x32 = x.astype(np.float32)
            out = np.einsum("ij,ij->i", x32 @ self._S0, x32, dtype=np.float64)
        else:
            out = self._fit.quad(x)
        if self._k:
            ux = x @ self._U[: self._k].T
            out = out - np.einsum("ij,ij->i", ux, ux)
        return np.maximum(out, 0.0)

    def _sigma_perp2(self) -> float:
        """Mean posterior variance outside the PCA subspace."""
        if self._r >= self.d:
            return 0.0
        return max((self._trS0 - self._trU - float(np.trace(self._Sr))) / (self.d - self._r), 0.0)

    def _var_reduced(self, idx: np.ndarray) -> np.ndarray:
        """Approximate score variance of images idx: z^T Sigma_r z + sigma_perp^2 q."""
        z = self._Z[idx]
        quad = np.einsum("ij,ij->i", z @ self._Sr.astype(np.float32), z, dtype=np.float64)
        return np.maximum(quad + self._sigma_perp2() * self._q[idx], 0.0)

    def _grow(self) -> None:
        cap = len(self._y)
        if self._m < cap:
            return
        new = 2 * cap
        X = np.zeros((new, self.d), dtype=np.float32)
        X[:cap] = self._X
        self._X = X
        for name in ("_y", "_c", "_f"):
            a = np.zeros(new)
            a[:cap] = getattr(self, name)
            setattr(self, name, a)
        if self._gram is not None:
            if cap >= self.d:  # the dual is not used beyond m = d
                self._gram = None
            else:
                g = np.zeros((new, new))
                g[:cap, :cap] = self._gram
                self._gram = g

    def _append_fitted(self, i: int, j: int, o: float, weight: float) -> np.ndarray:
        self._grow()
        m = self._m
        x = self.E[i] - self.E[j]
        self._X[m] = x
        self._y[m], self._c[m] = o, weight
        self._f[m] = float(x.astype(np.float64) @ self.w)
        if self._gram is not None:
            row = (self._X[: m + 1] @ x).astype(np.float64)
            self._gram[m, : m + 1] = row
            self._gram[: m + 1, m] = row
        self._m = m + 1
        return x

    def _add_fitted(self, i: int, j: int, o: float, weight: float) -> None:
        """Add one fitted comparison: online Laplace update, then a Newton step or a refit."""
        x = self._append_fitted(i, j, o, weight).astype(np.float64)
        if self._m >= self._next_refit:
            self.refit(live=True)
            return
        # 1. rank-one covariance update at the current mean
        u = self._cov_matvec(x)
        v = float(x @ u)
        m1 = self._m - 1
        r = float(link_terms(self._f[m1 : m1 + 1], self._y[m1 : m1 + 1], self._weights(self._m)[m1:], self.lapse)[1][0])
        ut = u * math.sqrt(r / (1.0 + r * v))
        if self._k == len(self._U):  # (undo snapshots keep the old arrays; rows < k never change)
            self._U = np.concatenate([self._U, np.zeros_like(self._U)])
            self._Ur = np.concatenate([self._Ur, np.zeros_like(self._Ur)])
        ur = self._V.T @ ut
        self._U[self._k] = ut
        self._Ur[self._k] = ur
        self._k += 1
        self._Sr = self._Sr - np.outer(ur, ur)
        self._trU += float(ut @ ut)
        # 2. Newton steps on the mean, Sigma_t as the inverse Hessian: one, or up to
        #    NEWTON_STEPS while a surprising answer keeps moving the mean
        for _ in range(NEWTON_STEPS):
            if self._newton_step() < NEWTON_TOL:
                break

    def _decayed(self, m: int) -> np.ndarray:
        """The user's weights of the first m fitted clicks times the recency weight
        0.5 ** (age / half-life), age counted in fitted clicks (forgetting on)."""
        assert self.forget_half_life is not None
        age = np.arange(m - 1, -1, -1, dtype=np.float64)
        return self._c[:m] * np.power(0.5, age / self.forget_half_life)

    def _weights(self, m: int) -> np.ndarray:
        """The weights the posterior uses for the first m fitted clicks: the user's weights,
        or with forgetting on, the recency weights of the last refit (clicks since weigh 1:
        the weights change only at refits, so the per-click updates stay consistent)."""
        if self.forget_half_life is None:
            return self._c[:m]
        out = self._c[:m].copy()
        k = min(self._c_eff_m, m)
        out[:k] = self._c_eff[:k]
        return out

    def _newton_step(self) -> float:
        """One quasi-Newton step on the mean (Sigma_t as the inverse Hessian), halved until
        the objective drops. Returns the decrement -g . step relative to the objective."""
        m = self._m
        X, y, c, f = self._X[:m], self._y[:m], self._weights(m), self._f[:m]
        gf, _ = link_terms(f, y, c, self.lapse)
        delta = self.w - self.w0
        g = (X.T @ gf.astype(np.float32)).astype(np.float64) + self.alpha * delta
        step = -self._cov_matvec(g)
        xs = (X @ step.astype(np.float32)).astype(np.float64)
        l0 = pair_loss(f, y, c, self.lapse) + 0.5 * self.alpha * float(delta @ delta)
        gd = float(g @ step)
        s = 1.0
        for _ in range(30):
            dn = delta + s * step
            l1 = pair_loss(f + s * xs, y, c, self.lapse) + 0.5 * self.alpha * float(dn @ dn)
            if l1 <= l0 + 1e-4 * s * gd or l1 <= l0:
                break
            s *= 0.5
        else:
            return 0.0
        self.w = self.w + s * step
        self._f[:m] = f + s * xs
        self._scores_changed()
        return -gd * s / (1.0 + abs(l0))

    # ------------------------------------------------------------------ internals: bookkeeping

    def _key(self, i: int, j: int) -> int:
        return int(i) * self.n + int(j) if i < j else int(j) * self.n + int(i)

    def _rekey(self, old_n: int) -> None:
        def re(key: int) -> int:
            return self._key(key // old_n, key % old_n)

        self._pair_count = {re(k): v for k, v in self._pair_count.items()}
        self._pending = {re(k): v for k, v in self._pending.items()}
        self._first_idx = {re(k): v for k, v in self._first_idx.items()}
        self._repeated = {re(k) for k in self._repeated}
        self._skipped = {re(k) for k in self._skipped}
        for u in self._undo:
            u.key = re(u.key)
            u.pending = {re(k): v for k, v in u.pending.items()}

    def _normalise(self, i, j, outcome, kind, weight) -> tuple[int, int, float, str, float]:
        i, j, o, wt = int(i), int(j), float(outcome), float(weight)
        if not (0 <= i < self.n and 0 <= j < self.n) or i == j:
            raise ValueError(f"bad pair ({i}, {j}) for {self.n} images")
        if not 0.0 <= o <= 1.0:
            raise ValueError(f"outcome must be 1.0 (i better), 0.0 (j better) or 0.5 (tie), not {outcome}")
        if not (math.isfinite(wt) and wt >= 0):
            raise ValueError(f"weight must be a finite number >= 0, not {weight}")
        if kind is None:
            kind = self._pending.get(self._key(i, j), "other")
        return i, j, o, str(kind), wt

    def _book(self, c: tuple[int, int, float, str, float]) -> None:
        i, j, _, kind, _ = c
        key = self._key(i, j)
        self._pending.pop(key, None)
        self.shows[i] += 1
        self.shows[j] += 1
        self._pair_count[key] = self._pair_count.get(key, 0) + 1
        if self._counts is not None:
            self._counts[i, j] += 1
            self._counts[j, i] += 1
        if kind == "repeat":
            self._repeated.add(key)
        else:
            self._first_idx.setdefault(key, len(self._history))
        self._history.append(c)

    def _eligible(self) -> np.ndarray:
        """Available images under the show cap (all available ones if fewer than 2 are)."""
        cap = self.max_shows
        if cap is None:
            n_av = max(int(np.count_nonzero(self.available)), 1)
            cap = int(3.0 * 2.0 * len(self._history) / n_av) + 6
        elig = self.available & (self.shows < cap)
        if np.count_nonzero(elig) < 2:
            elig = self.available
        return elig

    def _pair_limit(self, n_av: int) -> int:
        """A pair may be issued while its count is below ``1 + floor(pair_reuse m / n_pairs)``:
        1 (never again) until the session has compared 1/pair_reuse of all distinct pairs."""
        n_pairs = max(n_av * (n_av - 1) // 2, 1)
        return 1 + int(self.pair_reuse * len(self._history) // n_pairs)

    def _allowed(self, i: int, j: int, limit: int) -> bool:
        if i == j:
            return False
        key = self._key(i, j)
        return key not in self._pending and key not in self._skipped and self._pair_count.get(key, 0) < limit

    # ------------------------------------------------------------------ internals: choice

    def _scores_changed(self) -> None:
        self._s_dirty = True

    def _score_cache(self) -> tuple[np.ndarray, np.ndarray]:
        """(scores without bias, position of each image in score order), refreshed lazily:
        whole when n d <= FULL_RESCORE_MACS, else ROLL_MACS worth of rows per call."""
        n = self.n
        w32 = self.w.astype(np.float32)
        s = self._s
        if s is None or len(s) != n or (self._s_dirty and n * self.d <= FULL_RESCORE_MACS):
            s = self._s = (self.E @ w32).astype(np.float64)
            self._pos = np.empty(n, dtype=np.int64)
            self._order = np.argsort(s, kind="stable")
            self._pos[self._order] = np.arange(n)
            self._s_dirty, self._roll = False, 0
        elif self._s_dirty:
            rows = max(1, ROLL_MACS // self.d)
            a, b = self._roll, min(n, self._roll + rows)
            s[a:b] = self.E[a:b] @ w32
            self._roll = 0 if b >= n else b
            if self._roll == 0:
                self._order = np.argsort(s, kind="stable")
                self._pos[self._order] = np.arange(n)
        return s, self._pos

    def _pick_info(self, n_av: int) -> tuple[int, int]:
        elig = self._eligible()
        rested = elig & ~self._tired
        if np.count_nonzero(rested) >= 2:
            elig = rested
        limit = self._pair_limit(n_av)
        idx = np.flatnonzero(elig)
        s, pos = self._score_cache()
        if len(idx) * (len(idx) - 1) // 2 <= 4096:  # tiny: every eligible pair is a candidate
            a, b = np.triu_indices(len(idx), 1)
            a, b = idx[a], idx[b]
            crit = self._approx_crit(a, b, s)
        else:
            a, b, crit = self._grid(idx, s, pos, elig)
        self._limit_coinflips = self._coinflips_over_budget()
        if self._limit_coinflips and a.size:
            coin = self._coinflip(s[a] - s[b])
            if not coin.all():
                crit = np.where(coin, -np.inf, crit)
        self._last_coinflip = False
        pair = self._best(a, b, crit, limit) if a.size else None
        if pair is None:
            pair = self._fallback(elig, limit, n_av)
        return pair

    def _grid(self, idx, s, pos, elig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every anchor x every partner (module docstring), scored through bilinear forms in
        the PCA space: with ``P = Z Sigma_r``, ``v_ij = v_i + v_j - 2 P_i . z_j`` and
        ``t_ij = t_i + t_j - 2 P_i C P_j^T``, so A anchors x K partners cost K r^2 + A K r
        instead of A K r^2 (the per-image terms of the sample also rank the anchors).
        Returns (anchor, partner, approximate criterion), flattened."""
        rng = self.rng
        if len(idx) <= self.anchor_sample:
            sample = idx
        else:
            sample = np.unique(idx[rng.integers(0, len(idx), self.anchor_sample)])
        terms = self._image_terms(sample, s)
        score = (terms[3] if self._crit is None else terms[2]) * (1.0 + self._jitter[sample])
        k = min(self.n_anchors, len(sample))
        top = np.argpartition(-score, k - 1)[:k]
        rows = np.unique(np.concatenate([top, rng.integers(0, len(sample), 4)]))
        anchors = sample[rows]
        offs = np.concatenate([np.arange(-self.window, 0), np.arange(1, self.window + 1)])
        win = self._order[np.clip(pos[anchors][:, None] + offs[None, :], 0, self.n - 1)].ravel()
        win = np.setdiff1d(win[elig[win]], sample)
        if win.size:
            extra = self._image_terms(win, s)
            partners = np.concatenate([sample, win])
            terms = tuple(np.concatenate([t0, t1]) for t0, t1 in zip(terms, extra))
        else:
            partners = sample
        z, p, v1, t1, pc = terms
        pa = p[rows]
        v = v1[rows][:, None] + v1[None, :] - 2.0 * (pa @ z.T)
        a = s[anchors][:, None] - s[partners][None, :]
        if self._crit is not None:
            crit = self._crit(a, v)
        else:
            crit = test_variance_reduction(a, v, t1[rows][:, None] + t1[None, :] - 2.0 * (pc[rows] @ p.T), self.lapse)
        crit[anchors[:, None] == partners[None, :]] = -np.inf
        return np.repeat(anchors, len(partners)), np.tile(partners, len(anchors)), crit.ravel()

    def _image_terms(self, idx: np.ndarray, s: np.ndarray):
        """Per image: z, P = Sigma_r z, the score variance v_i (+ sigma_perp^2 q_i) and, for
        the test criteria, t_i = P_i C P_i (+ perp) and P_i C (else None)."""
        z = self._Z[idx]
        p = z @ self._Sr.astype(np.float32)
        sp2 = self._sigma_perp2()
        q = self._q[idx]
        v = np.einsum("ij,ij->i", p, z, dtype=np.float64) + sp2 * q
        if self._crit is not None:
            return z, p, v, v, p
        ct, ct_perp = self._test_matrix()
        pc = p @ ct
        t = np.einsum("ij,ij->i", pc, p, dtype=np.float64) + ct_perp * sp2 * sp2 * q
        return z, p, v, t, pc

    def _approx_crit(self, a: np.ndarray, b: np.ndarray, s: np.ndarray) -> np.ndarray:
        """The criterion of pairs (a, b) in the PCA-reduced approximation."""
        zx = self._Z[a] - self._Z[b]
        sz = zx @ self._Sr.astype(np.float32)  # Sigma_r x_z
        v = np.einsum("ij,ij->i", sz, zx, dtype=np.float64)
        sp2 = self._sigma_perp2()
        qq = self._q[a] + self._q[b]
        v += sp2 * qq
        if self._crit is not None:
            return self._crit(s[a] - s[b], v)
        ct, ct_perp = self._test_matrix()
        t = np.einsum("ij,ij->i", sz @ ct, sz, dtype=np.float64) + ct_perp * sp2 * sp2 * qq
        return test_variance_reduction(s[a] - s[b], v, t, self.lapse)

    def _best(self, a: np.ndarray, b: np.ndarray, crit: np.ndarray, limit: int) -> tuple[int, int] | None:
        """The ``shortlist`` best allowed candidates by the cheap criterion, re-scored exactly;
        the best of those."""
        if self._counts is not None:
            ok = self._counts[a, b] < limit
            a, b, crit = a[ok], b[ok], crit[ok]
            if a.size == 0:
                return None
        short: list[tuple[int, int]] = []
        seen: set[int] = set()
        head = min(len(crit), 16 * self.shortlist)
        order = np.argpartition(-crit, head - 1)[:head]
        order = order[np.argsort(-crit[order], kind="stable")]
        for attempt in range(2):
            for t_ in order:
                if not np.isfinite(crit[t_]):
                    break
                i, j = int(a[t_]), int(b[t_])
                key = self._key(i, j)
                if key in seen or not self._allowed(i, j, limit):
                    continue
                seen.add(key)
                short.append((i, j))
                if len(short) >= self.shortlist:
                    break
            if short or attempt or head == len(crit):
                break
            order = np.argsort(-crit, kind="stable")  # the top was all used: look further
        if not short:
            return None
        ii = np.array([p[0] for p in short])
        jj = np.array([p[1] for p in short])
        x = self.E[ii].astype(np.float64) - self.E[jj]
        if self._crit is not None:
            v = self._quad_exact(x)
            exact = self._crit(x @ self.w, v)
        else:
            u = self._cov_matvec(x.T).T  # (k, d)
            v = np.einsum("ij,ij->i", u, x)
            ur = u @ self._V
            uperp2 = np.maximum(np.einsum("ij,ij->i", u, u) - np.einsum("ij,ij->i", ur, ur), 0.0)
            if self.criterion == "eer":
                return short[int(np.argmin(self._lookahead_error(x, u, v)))]
            ct, ct_perp = self._test_matrix()
            t = np.einsum("ij,ij->i", ur @ ct.astype(np.float64), ur) + ct_perp * uperp2
            exact = test_variance_reduction(x @ self.w, v, t, self.lapse)
        coin = self._coinflip(x @ self.w, v)
        if self._limit_coinflips and not coin.all():
            exact = np.where(coin, -np.inf, exact)
        best = int(np.argmax(exact))
        self._last_coinflip = bool(coin[best])
        return short[best]

    def _coinflips_over_budget(self) -> bool:
        """True when one more coin-flip model pair would exceed ``coinflip_max``."""
        return self.coinflip_max < 1.0 and self.n_coinflip_issued + 1 > self.coinflip_max * (self.n_info_issued + 1)

    def _coinflip(self, a: np.ndarray, v: np.ndarray | None = None) -> np.ndarray:
        """Pairs whose predicted win probability (lapse and, given v, uncertainty included)
        is within 0.5 +- COINFLIP_BAND."""
        z = a if v is None else a / np.sqrt(1.0 + math.pi * v / 8.0)
        p = 0.5 * self.lapse + (1.0 - self.lapse) * np.asarray(sigmoid(z))
        return np.abs(p - 0.5) < COINFLIP_BAND

    def _test_matrix(self) -> tuple[np.ndarray, float]:
        """(C_r, c_perp) for uniform test pairs of the whole pool: ``C = 2 Cov(e)`` in PCA
        coordinates (from <= 8192 rows) and its mean per direction outside the PCA subspace."""
        if self._ct_cache is None:
            n = self.n
            rows = np.arange(n) if n <= 8192 else self.rng.choice(n, 8192, replace=False)
            z = self._Z[rows].astype(np.float64)
            z -= z.mean(axis=0)
            ct = 2.0 * (z.T @ z) / len(rows)
            ct_perp = 2.0 * float(np.mean(self._q[rows])) / max(self.d - self._r, 1)
            self._ct_cache = (ct.astype(np.float32), ct_perp)
        return self._ct_cache

    def _lookahead_error(self, x: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Expected share of misordered test pairs after answering each candidate (rows of
        x, with u = Sigma x and v = x . u): for each outcome y the logit of test pair t moves
        by ``c_t (y - p) / (1 + r v)`` and its variance drops by ``r c_t^2 / (1 + r v)``
        (``c_t = x_t . u``); its misorder probability under the posterior is
        Phi(-|a_t| / sqrt(v_t)); averaged over y with the predictive p (``eer``)."""
        n, T = self.n, EER_PAIRS
        i, j = self.rng.integers(0, n, T), self.rng.integers(0, n, T)
        i, j = i[i != j], j[i != j]
        zx = (self._Z[i] - self._Z[j]).astype(np.float64)
        s, _ = self._score_cache()
        at = s[i] - s[j]
        vt = np.maximum(
            np.einsum("ij,jk,ik->i", zx, self._Sr, zx) + self._sigma_perp2() * (self._q[i] + self._q[j]), 1e-12
        )
        c = zx @ (u @ self._V).T  # (T, k)
        a = x @ self.w
        p = sigmoid(a / np.sqrt(1.0 + math.pi * v / 8.0))
        r = p * (1.0 - p)
        gain = 1.0 / (1.0 + r * v)
        v_new = np.maximum(vt[:, None] - r * c * c * gain, 1e-12)
        out = np.zeros(len(a))
        for y, py in ((1.0, p), (0.0, 1.0 - p)):
            a_new = at[:, None] + c * (y - p) * gain
            out += py * np.mean(_normal_tail(np.abs(a_new) / np.sqrt(v_new)), axis=0)
        return out

    def _random_pair(self, mask: np.ndarray, limit: int, tries: int = 64, fresh: bool = False):
        idx = np.flatnonzero(mask)
        if len(idx) < 2:
            return None
        for x, y in self.rng.integers(0, len(idx), size=(tries, 2)):
            i, j = int(idx[x]), int(idx[y])
            if self._allowed(i, j, 1 if fresh else limit):
                return i, j
        return None

    def _fallback(self, elig: np.ndarray, limit: int, n_av: int) -> tuple[int, int]:
        pair = self._random_pair(elig, limit) or self._random_pair(self.available, limit)
        if pair is None and self._counts is not None:  # small: search every available pair
            idx = np.flatnonzero(self.available)
            a, b = np.triu_indices(len(idx), 1)
            a, b = idx[a], idx[b]
            ok = self._counts[a, b] < limit
            for t in self.rng.permutation(np.flatnonzero(ok)):
                if self._allowed(int(a[t]), int(b[t]), limit):
                    return int(a[t]), int(b[t])
        if pair is None:
            raise NoPairAvailable("Every pair of the images that can be shown is already compared, pending or skipped.")
        return pair

    def _pick_heldout(self, n_av: int):
        """Uniform over available pairs never compared before (not pending, not skipped),
        within the repetition limit when it allows a pair."""
        return self._random_pair(self.available & ~self._tired, 1, fresh=True) or self._random_pair(
            self.available, 1, fresh=True
        )

    def _tired_mask(self, n_av: int) -> np.ndarray:
        """Images the repetition limit rests for the next pair (none in small folders, or
        when fewer than 2 images would be left)."""
        if not self.repetition_limit or n_av < SMALL_FOLDER:
            return np.zeros(self.n, dtype=bool)
        tired = self._recent.tired(self.n)
        if np.count_nonzero(self.available & ~tired) < 2:
            return np.zeros(self.n, dtype=bool)
        return tired

    def _pick_repeat(self, n_av: int):
        """An earlier fitted pair (not held-out, not a repeat), >= repeat_gap clicks old, not
        repeated yet, both images eligible (available and under the show cap)."""
        m = len(self._history) - self.repeat_gap
        if m <= 0 or len(self._history) < min(REPEAT_START, n_av // 2):
            return None
        elig = self._eligible()
        for k in self.rng.integers(0, m, size=8):
            i, j, _, kind, weight = self._history[int(k)]
            key = self._key(i, j)
            if kind in ("repeat", "heldout") or weight <= 0 or key in self._repeated or key in self._pending:
                continue
            if key in self._skipped or not (elig[i] and elig[j]) or self._tired[i] or self._tired[j]:
                continue
            return i, j
        return None
