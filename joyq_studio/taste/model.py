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
``PairLedger.pair_limit``); a pair that was issued and not recorded is not issued again,
and a ``skip``-ped pair never again; images shown ``max_shows`` times (default 3 x the mean
+ 6) rest while others are eligible. These rules are the ledger's (``ledger.py``), shared
with the OpenSkill selector. ``NoPairAvailable`` when nothing can be shown.

Cost per click at n images, d dims, m fitted pairs: O(m d) per Newton step, O(d^2) for the
covariance products, O(anchor_sample (r^2 + anchors r)) for the choice, and the score cache
is refreshed in chunks of ``ROLL_MACS / d`` rows (all of them at once below
``FULL_RESCORE_MACS``), so it is never O(n d) per click in large folders. Scores, SDs and the
head returned to the caller are always exact (``scores`` is a fresh ``E w``). Measured in
``docs/taste.md``: p99 25 ms per click at 100k images x 1152 dims with 5,000 earlier pairs.
Small BLAS calls dominate: on a busy 2-core machine one BLAS thread is much faster than two.

The class is put together from one part per idea (``state.py`` says how): its ``ledger``
(``ledger.PairLedger``: pairs shown, pending, recorded, skipped), ``posterior.py`` (the posterior, its updates and
refits), ``chooser.py`` (which pair next); this module holds the public API.

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
from .chooser import PairChooser
from .head import ALPHA_PRIOR_SD, DEFAULT_LAPSE, default_alpha, fit_head, sigmoid
from .ledger import PairLedger
from .state import (  # noqa: F401  (re-exported: the constants lived here)
    COINFLIP_BAND,
    DENSE_MAX,
    EER_PAIRS,
    FULL_RESCORE_MACS,
    NEWTON_STEPS,
    NEWTON_TOL,
    REFIT_ALPHA_TOL,
    REFIT_TOL,
    ROLL_MACS,
    TEST_CRITERIA,
    _Undo,
)

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


def _as_index_array(indices) -> np.ndarray:
    return np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices, dtype=np.int64)


class TasteModel(PairChooser):
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
        self.ledger = PairLedger(self.n, DENSE_MAX)
        self._ct_cache = None
        self._reset()

    # ------------------------------------------------------------------ public: state

    @property
    def history(self) -> list[tuple[int, int, float, str, float]]:
        """Every recorded comparison, in order: (i, j, outcome, kind, weight)."""
        return list(self.ledger.history)

    @property
    def shows(self) -> np.ndarray:
        """How often each image has been shown in a recorded comparison."""
        return self.ledger.shows

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
            start = max(0, len(self.ledger.history) - int(2 * self.forget_half_life))
        rows = [(i, j, o) for i, j, o, kind, _ in self.ledger.history[start:] if kind == "heldout"]
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
        return self.ledger.self_agreement()

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
        c = self.ledger.normalise(i, j, outcome, kind, weight)
        i, j, o, kind, weight = c
        fitted = kind != "heldout" and weight > 0
        # the posterior's arrays are replaced, never written in place, below row m / k:
        # references are enough, except for the fitted logits, which every step rewrites
        u = _Undo(
            dict(self.ledger.pending),
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
        self.ledger.book(c)
        if fitted:
            self._add_fitted(i, j, o, weight)

    def undo(self) -> tuple | None:
        """Take back the last ``record``: the head, alpha, posterior, counts and history are
        exactly as they were before it, and the pair is pending again (issued, so the app
        can show it again). Pairs issued after it are forgotten; skips, exclusions and added
        images stay. Returns the comparison taken back, or None if there is none."""
        led = self.ledger
        if not led.history:
            return None
        if not self._undo:  # older than undo_depth: rebuild by a replay
            last = led.history[-1]
            self.replay(led.history[:-1])
            return last
        u = self._undo.pop()
        c = led.unbook_last()
        led.pending = {k: v for k, v in u.pending.items() if k not in led.skipped}
        self.rng.bit_generator.state = u.rng_state
        if u.fitted:
            self._m = u.m
            self.w, self.alpha, self._fit = u.w, u.alpha, u.fit
            self._f[: u.m] = u.f
            self._set_post_state(u.post)
            self._next_refit = u.next_refit
            self._c_eff, self._c_eff_m = u.c_eff
            self._scores_changed()
        return c

    def skip(self, i: int, j: int) -> None:
        """The user skipped the pair: it is no longer pending and is never issued again
        (it can still be recorded)."""
        self.ledger.skip(int(i), int(j))

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
        self._jitter = np.concatenate([self._jitter, self.rng.random(k) * 1e-9])
        rekey = self.ledger.grow(k)
        for u in self._undo:
            u.pending = {rekey(x): v for x, v in u.pending.items()}
        self._s = None
        self._ct_cache = None
        self._scores_changed()

    def replay(self, comparisons: Iterable[Sequence]) -> None:
        """Forget everything recorded and fit ``comparisons`` (i, j, outcome[, kind[, weight]])
        in one go: one refit instead of one update per click (5k pairs in about a second).
        Pending pairs and the undo history are dropped; skips and exclusions stay."""
        comps = [
            self.ledger.normalise(c[0], c[1], c[2], c[3] if len(c) > 3 else None, c[4] if len(c) > 4 else 1.0)
            for c in comparisons
        ]
        self._reset()
        for c in comps:
            self.ledger.book(c)
            i, j, o, kind, weight = c
            if kind != "heldout" and weight > 0:
                self._append_fitted(i, j, o, weight)
        self._undo.clear()
        if self._m:
            self.refit()

    # ------------------------------------------------------------------ public: pairs

    def next_pair(self) -> tuple[int, int]:
        """The next pair to show; ``last_kind`` says which kind. Raises NoPairAvailable."""
        i, j, _ = self.next_pair_with_kind()
        return i, j

    def next_pair_with_kind(self) -> tuple[int, int, str]:
        n_av = int(np.count_nonzero(self.available))
        if n_av < 2:
            raise NoPairAvailable("Fewer than 2 images can be shown, so there is no pair to compare.")
        led = self.ledger
        self._tired = led.tired(self.available, n_av, self.repetition_limit)
        u = self.rng.random()
        kind, pair = "info", None
        if self.heldout_schedule:
            if led.heldout_due(self.mix.heldout):
                kind, pair = "heldout", self._pick_heldout(n_av)
            elif u < self.mix.repeat:
                kind, pair = "repeat", self._pick_repeat(n_av)
        elif u < self.mix.heldout:
            kind, pair = "heldout", self._pick_heldout(n_av)
        elif u < self.mix.heldout + self.mix.repeat:
            kind, pair = "repeat", self._pick_repeat(n_av)
        if pair is None and self.explore > 0 and self.rng.random() < self.explore:
            limit = self._pair_limit(n_av)
            kind, pair = "explore", led.random_pair(self.rng, self._eligible() & ~self._tired, limit)
        if pair is None:
            kind, pair = "info", self._pick_info(n_av)
            self.n_info_issued += 1
            self.n_coinflip_issued += int(self._last_coinflip)
        i, j = pair
        if self.rng.random() < 0.5:  # random sides: no position bias
            i, j = j, i
        led.issue(i, j, kind, spacing=self.repetition_limit)
        self.last_kind = kind
        return int(i), int(j), kind

    # ------------------------------------------------------------------ internals: set-up

    def _reset(self) -> None:
        """Empty history and data; the posterior is the prior."""
        d = self.d
        self.ledger.reset()
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
