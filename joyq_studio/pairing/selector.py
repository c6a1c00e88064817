"""Active pair selection: which two images to show next.

Beliefs are one Gaussian ``N(mu_i, sigma_i^2)`` per image in *logit units*, so that once
sigma is small

    P(i beats j) ~= sigmoid(mu_i - mu_j).

They start from the live model's scores (``set_model_scores``: one temperature fit on the
unbiased labels so far, see ``prior_from_scores``) and are updated after every comparison
with openskill's ``BradleyTerryFull``
(Weng & Lin 2011, Algorithm 1) with ``mu=0, sigma=1, beta=1/sqrt(2), tau=0``. With
``2 beta^2 = 1`` its win probability ``1 / (1 + exp(-(mu_i - mu_j) / c))``,
``c = sqrt(1 + sigma_i^2 + sigma_j^2)``, is the logistic BT model above.

The next pair is a documented mix (``PairMix``):

* ``info``    maximise the expected information gain about ``mu_i - mu_j``
              ``EIG = log(1 + V p (1 - p))``, ``V = sigma_i^2 + sigma_j^2``,
              over a bounded candidate set: the "anchors" (highest sigma_i f(mu_i), f the
              density of images around mu_i: uncertainty where the ranking is crowded,
              see ``_anchor_score``) times their neighbours in mu order;
* ``near``    an uncertain anchor and, among its nearest neighbours in embedding space
              (same content, different quality), the partner with the highest EIG;
* ``heldout`` a uniformly random pair of available images, never chosen by the model, so
              the app can store these as an unbiased test set;
* ``repeat``  an earlier pair shown again to measure the user's own consistency (none
              during the first min(200, n / 2) comparisons).

Rules (the ledger's, ``taste.ledger.PairLedger``, shared with the live head): never return
a self-pair; never repeat a pair by accident (a pair is shown again only as a ``repeat``,
or in tiny sets once a third of all pairs have been used, see ``PairLedger.pair_limit``);
cap how often one image is shown (``max_shows``); a pair that was issued and not yet
recorded is not issued again, a skipped one never again (in tiny sets whose every pair is
used, any available pair is shown rather than none).

Everything is numpy arrays; per-item Python objects are too slow for candidate search over
100k images. This module never imports Qt.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from openskill.models import BradleyTerryFull

from ..errors import NoPairAvailable
from ..taste.ledger import Comparison as Entry
from ..taste.ledger import PairLedger
from .beliefs import (
    BETA,
    PRIOR_SLOPE_REL_SD,
    TRUST_FLAT_SD,
    TRUST_MIN_SD,
    TRUST_Z_NO_LABELS,
    Comparison,
    expected_info_gain,
    fit_slope,
    model_agreement,
    prior_from_scores,
    win_probability,
)

KINDS: tuple[str, ...] = ("info", "near", "heldout", "repeat")
"""Kinds of pair returned by ``next_pair``; recorded pairs not issued by us are "other"."""

DENSE_MAX = 2048
"""Up to this many items pair counts also live in a dense matrix, so that a session that has
compared most pairs (small n, large budgets) can still find its best unused pair quickly."""


__all__ = ["KINDS", "PairMix", "PairSelector"]


@dataclass(frozen=True)
class PairMix:
    """Shares of each pair kind; ``info`` gets the rest (``1 - near - heldout - repeat``).

    ``near`` falls back to ``info`` without embeddings; ``repeat`` falls back to ``info``
    until there is an old enough pair to repeat.
    """

    near: float = 0.30
    heldout: float = 0.10
    repeat: float = 0.04

    def probabilities(self, has_embeddings: bool) -> np.ndarray:
        """(info, near, heldout, repeat) probabilities."""
        near = self.near if has_embeddings else 0.0
        info = 1.0 - near - self.heldout - self.repeat
        if info < 0:
            raise ValueError("PairMix shares must sum to at most 1")
        return np.array([info, near, self.heldout, self.repeat])


def _orthonormal(y: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the columns of a tall y via its small Gram matrix:
    y^T y = U diag(w) U^T  =>  q = y U diag(w)^-1/2  has q^T q = I."""
    w, u = np.linalg.eigh(y.T @ y)
    return (y @ u) / np.sqrt(np.maximum(w, 1e-12 * w.max()))


def _reduce_embeddings(emb: np.ndarray, dims: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-norm float32 embeddings, PCA-reduced to ``dims`` (PCA fit on <= 4096 rows).

    Cosine neighbours in the top principal directions approximate those of the full space.
    Row scaling commutes with the projection, so (x_i / |x_i| - m) V = x_i V / |x_i| - m V
    and the (n, D) input is read once, never copied.
    """
    x = np.asarray(emb, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError("embeddings must be a 2-d array (n_items, dim)")
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float32))
    norms = np.maximum(norms, 1e-12)[:, None]
    if x.shape[1] > dims:
        rows = np.arange(len(x)) if len(x) <= 4096 else np.sort(rng.choice(len(x), 4096, replace=False))
        sample = x[rows] / norms[rows]
        mean = sample.mean(axis=0)
        c = sample - mean
        cov = (c.T @ c).astype(np.float64)
        # top-`dims` eigenvectors by randomized subspace iteration (Halko et al. 2011); a
        # full SVD of the 4096 x 1152 sample takes seconds on a small CPU, this ~0.05 s.
        q = _orthonormal(cov @ rng.normal(size=(cov.shape[0], dims + 16)))
        for _ in range(3):
            q = _orthonormal(cov @ q)
        _, u = np.linalg.eigh(q.T @ cov @ q)
        v = np.ascontiguousarray((q @ u[:, ::-1][:, :dims]).astype(np.float32))
        y = (x @ v) / norms - mean @ v
    else:
        y = x / norms
    y /= np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(y, dtype=np.float32)


class _NearIndex:
    """Cosine nearest-neighbour search over unit vectors, exact for small n and an
    inverted-file index (IVF) above ``brute_max`` items.

    IVF: ~sqrt(n) centroids (a random sample, one Lloyd step), every item listed under its
    most similar centroid; a query scans the ``n_probe`` lists whose centroids are most
    similar to it. At 100k items that reads ~3k vectors instead of 100k.
    """

    def __init__(self, x: np.ndarray, rng: np.random.Generator, brute_max: int = 20_000, n_probe: int = 8):
        self.x = x
        self.n_probe = n_probe
        self.lists: list[np.ndarray] | None = None
        if len(x) <= brute_max:
            return
        n_lists = int(min(2048, max(16, math.sqrt(len(x)))))
        c = x[rng.choice(len(x), n_lists, replace=False)]
        for step in range(2):
            assign = np.concatenate([np.argmax(x[s : s + 8192] @ c.T, axis=1) for s in range(0, len(x), 8192)])
            if step == 0:  # one Lloyd step: centroids -> normalised means of their members
                sums = np.zeros_like(c)
                np.add.at(sums, assign, x)
                nz = np.linalg.norm(sums, axis=1) > 0
                c[nz] = sums[nz] / np.linalg.norm(sums[nz], axis=1, keepdims=True)
        order = np.argsort(assign, kind="stable")
        bounds = np.searchsorted(assign[order], np.arange(n_lists + 1))
        self.centroids = c
        self.lists = [order[bounds[k] : bounds[k + 1]] for k in range(n_lists)]

    def query(self, a: int, k: int, mask: np.ndarray) -> np.ndarray:
        """Up to k items in ``mask`` (excluding a) most cosine-similar to item a."""
        q = self.x[a]
        if self.lists is None:
            cand = np.flatnonzero(mask)
        else:
            near_lists = np.argsort(-(self.centroids @ q))[: self.n_probe]
            cand = np.concatenate([self.lists[c] for c in near_lists])
            cand = cand[mask[cand]]
        cand = cand[cand != a]
        if cand.size <= k:
            return cand
        sims = self.x[cand] @ q
        return cand[np.argpartition(-sims, k - 1)[:k]]


class PairSelector:
    """Chooses the next pair of images to compare and keeps the beliefs.

    >>> sel = PairSelector(n_items, prior_mu=None, prior_sigma=None, embeddings=None, seed=0)
    >>> i, j = sel.next_pair()          # two distinct indices; sel.last_kind says which kind
    >>> sel.record(i, j, outcome)       # 1.0 = i won, 0.0 = j won, 0.5 = tie
    >>> sel.mu, sel.sigma               # numpy arrays, logit units

    Parameters
    ----------
    n_items: number of images (indices 0..n-1).
    prior_mu, prior_sigma: prior beliefs (arrays or scalars; default 0 and 1).
    embeddings: optional (n, d) array for ``near`` pairs.
    seed: everything random comes from ``np.random.default_rng(seed)``.
    mix: shares of pair kinds (``PairMix``).
    rank_weight: anchors maximise sigma_i f(mu_i)^rank_weight (0: plain highest sigma).
    n_anchors, window: candidate set of ``info`` = ``n_anchors`` top-anchor-score images x
        ``window`` neighbours on each side in mu order (default 16 x 32; 64 x 64 up to 256
        images, where narrow windows are soon used up).
    near_k: the ``near`` partner is chosen among this many embedding neighbours.
    max_shows: cap on how often one image is shown in info/near/repeat pairs. ``None``:
        ``3 * mean shows + 6``, so the cap grows with the session.
    repeat_gap: a repeat is drawn from pairs at least this many comparisons old.
    pair_reuse: see ``_pair_limit``; only matters when n (n - 1) / 2 is within a few
        multiples of the number of comparisons.

    Attributes: ``mu``, ``sigma``, ``prior_mu``, ``prior_sigma``, ``shows`` (per-image
    counts), ``available`` (bool mask, see ``exclude``), ``temperature`` (after
    ``set_model_scores``), ``last_kind``, ``history``.
    """

    def __init__(
        self,
        n_items: int,
        prior_mu: np.ndarray | float | None = None,
        prior_sigma: np.ndarray | float | None = None,
        embeddings: np.ndarray | None = None,
        seed: int = 0,
        *,
        mix: PairMix = PairMix(),
        n_anchors: int | None = None,
        window: int | None = None,
        near_k: int = 10,
        near_dims: int = 64,
        max_shows: int | None = None,
        repeat_gap: int = 20,
        pair_reuse: float = 3.0,
        rank_weight: float = 1.0,
        repetition_limit: bool = True,
        heldout_schedule: bool = True,
    ) -> None:
        n = int(n_items)
        if n < 2:
            raise ValueError("PairSelector needs at least 2 items")
        self.n = n
        self.rng = np.random.default_rng(seed)
        self.prior_mu = np.broadcast_to(np.asarray(0.0 if prior_mu is None else prior_mu, float), (n,)).copy()
        self.prior_sigma = np.broadcast_to(np.asarray(1.0 if prior_sigma is None else prior_sigma, float), (n,)).copy()
        if np.any(self.prior_sigma <= 0) or not np.all(np.isfinite(self.prior_mu)):
            raise ValueError("prior_sigma must be > 0 and prior_mu finite")
        self.embeddings = None if embeddings is None else _reduce_embeddings(embeddings, near_dims, self.rng)
        if self.embeddings is not None and len(self.embeddings) != n:
            raise ValueError(f"embeddings have {len(self.embeddings)} rows for {n} items")
        self._near_index = None if self.embeddings is None else _NearIndex(self.embeddings, self.rng)
        self.mix = mix
        self._cum_kind = np.cumsum(mix.probabilities(self.embeddings is not None))
        wide = n <= 256  # in small sets most windows get used up: search wider
        self.n_anchors = int(n_anchors if n_anchors is not None else (64 if wide else 16))
        self.window = int(window if window is not None else (64 if wide else 32))
        self.near_k = int(near_k)
        self.max_shows, self.repeat_gap = max_shows, int(repeat_gap)
        self.pair_reuse = float(pair_reuse)
        self.rank_weight = float(rank_weight)
        # pacing (taste.pacing, shared with TasteModel): no image more than twice in any 20
        # consecutive pairs; held-out pairs front-loaded (30% of the first 100, then mix.heldout)
        self.repetition_limit, self.heldout_schedule = bool(repetition_limit), bool(heldout_schedule)
        self._tired = np.zeros(n, dtype=bool)
        self.available = np.ones(n, dtype=bool)
        self.temperature: float | None = None
        self.last_kind: str | None = None
        # openskill: tau must be set here; rate(tau=0) is ignored because 0 is falsy.
        self.model = BradleyTerryFull(mu=0.0, sigma=1.0, beta=BETA, tau=0.0)
        self._ra = self.model.rating(mu=0.0, sigma=1.0)
        self._rb = self.model.rating(mu=0.0, sigma=1.0)
        # Fixed random tie-break: equal sigmas/mus are ordered randomly but reproducibly.
        self._jitter = self.rng.random(n) * 1e-9
        self._tri: tuple[np.ndarray, np.ndarray] | None = None
        if n * (n - 1) // 2 <= 4096:  # tiny n: score all pairs
            self._tri = np.triu_indices(n, 1)
        self.ledger = PairLedger(n, DENSE_MAX)
        self._reset_state()

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_model_scores(
        cls,
        scores: Sequence[float] | np.ndarray,
        comparisons: Iterable[Comparison] = (),
        embeddings: np.ndarray | None = None,
        seed: int = 0,
        **kwargs,
    ) -> PairSelector:
        """Selector whose priors come from the model's ``scores``, with ``comparisons`` replayed.

        ``comparisons`` are (i, j, outcome) or (i, j, outcome, kind); pass the kind so that
        held-out pairs are recognised. Fits one temperature (see ``set_model_scores``), sets prior
        mu/sigma with ``prior_from_scores`` and replays the comparisons in order.
        """
        scores = np.asarray(scores, dtype=np.float64)
        sel = cls(len(scores), embeddings=embeddings, seed=seed, **kwargs)
        sel.replay(comparisons)  # under the default prior: builds the history and its flags
        sel.set_model_scores(scores)  # refit T, priors from scores, replay again
        return sel

    def set_model_scores(
        self,
        scores: Sequence[float] | np.ndarray,
        prior_temperature: float = 1.0,
        trust_z: float = 2.0,
        trust_min_sd: float = TRUST_MIN_SD,
    ) -> float:
        """After a retrain: refit the temperature, reset the priors from the new scores and
        replay every recorded comparison. Returns the fitted temperature.

        * The slope a = 1/T is fit as in ``fit_temperature``: prior N(a0, (a0/2)^2),
          a0 = 1/prior_temperature (JoyQuality scores are already logits, so T ~ 1).
        * It is fit on the *unbiased* labels: held-out pairs, and pairs of two images that
          had never been compared before (their choice depended on the scores only, not on
          how these two images fared). Other actively chosen pairs are a biased sample: we
          pick pairs whose *posterior* means are close, e.g. a high-scored image that lost
          before against a lower-scored one that won, so there the model looks less
          predictive than it is (T came out twice too large in simulation).
        * Trust gate: with no labels the slope prior alone decides (a0 - 1.5 a0/2 > 0: the
          model is used). With labels, the model is used only while the *labels alone* (a
          near-flat slope prior) show it to order the images by a useful amount:
          ``(a_data - trust_z sd(a_data)) * SD(scores) > trust_min_sd`` (2 SD, 0.15 logits).
          A model that the labels do not show to be predictive does not get to order the
          unseen images (the prior is then mu = 0, sigma ~ total_sd): ranking them by a
          near-useless model spreads their ranks at random and lowers the Spearman, where
          leaving them tied does not.
        """
        s = np.asarray(scores, dtype=np.float64)
        if s.shape != (self.n,) or not np.all(np.isfinite(s)):
            raise ValueError(f"scores must be {self.n} finite numbers")
        led = self.ledger
        fit = [c for c, f in zip(led.history, led.fresh) if f or c[3] == "heldout"]
        if not fit:
            fit = led.history
        if fit:
            h = np.array([c[:3] for c in fit], dtype=np.float64)
            d, o = s[h[:, 0].astype(np.int64)] - s[h[:, 1].astype(np.int64)], h[:, 2]
        else:
            d = o = np.zeros(0)
        a0 = 1.0 / prior_temperature
        a, var_a = fit_slope(d, o, a0, PRIOR_SLOPE_REL_SD * a0)
        self.temperature = 1.0 / a if a > 0 else math.inf
        sd_s = float(s.std()) if s.size else 0.0
        if d.size == 0:  # no labels yet: the slope prior alone decides (as the app starts)
            trusted = a - TRUST_Z_NO_LABELS * math.sqrt(var_a) > 0
        else:
            # with labels the gate weighs the labels alone (a flat prior on the slope): the
            # N(a0, (a0/2)^2) prior by itself passes it and let a useless model that a few
            # dozen labels happened to favour order the unseen images
            a_data, var_data = fit_slope(d, o, 0.0, TRUST_FLAT_SD * a0)
            trusted = (a_data - trust_z * math.sqrt(var_data)) * sd_s > trust_min_sd
        a_used = a if trusted else 0.0
        self.prior_mu, self.prior_sigma = prior_from_scores(s, a_used, var_a)
        self.replay()
        return self.temperature

    def _reset_state(self) -> None:
        self.mu = self.prior_mu.copy()
        self.sigma = self.prior_sigma.copy()
        self.ledger.reset()
        self._rebuild_order()

    def _rebuild_order(self) -> None:
        """``order`` sorts items by mu (ties by a fixed random jitter); ``pos`` inverts it."""
        self._order = np.lexsort((self._jitter, self.mu)).astype(np.int64)
        self._mu_sorted = self.mu[self._order]
        self._pos = np.empty(self.n, dtype=np.int64)
        self._pos[self._order] = np.arange(self.n)

    # ------------------------------------------------------------------ public API

    @property
    def history(self) -> list[tuple[int, int, float, str]]:
        """All recorded comparisons in order, as (i, j, outcome, kind)."""
        return [c[:4] for c in self.ledger.history]

    @property
    def n_comparisons(self) -> int:
        return len(self.ledger.history)

    @property
    def shows(self) -> np.ndarray:
        """How often each image has been shown in a recorded comparison."""
        return self.ledger.shows

    def exclude(self, indices: Iterable[int] | np.ndarray) -> None:
        """Never offer these images (e.g. not scored yet) until ``include``-d again."""
        self.available[
            np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices, dtype=np.int64)
        ] = False

    def include(self, indices: Iterable[int] | np.ndarray) -> None:
        self.available[
            np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices, dtype=np.int64)
        ] = True

    def next_pair(self) -> tuple[int, int]:
        """Two distinct available indices to compare next; ``self.last_kind`` gives the kind."""
        i, j, _ = self.next_pair_with_kind()
        return i, j

    def next_pair_with_kind(self) -> tuple[int, int, str]:
        """Like ``next_pair`` but also returns the kind ("info", "near", "heldout", "repeat").

        The pair stays *pending* (not offered again) until ``record``-ed or ``skip``-ped.
        """
        n_av = int(self.available.sum())
        if n_av < 2:
            raise NoPairAvailable("Fewer than 2 images are available to compare.")
        kind = KINDS[min(int(np.searchsorted(self._cum_kind, self.rng.random(), side="right")), 3)]
        self._tired = self.ledger.tired(self.available, n_av, self.repetition_limit)
        if self.heldout_schedule:
            if self.ledger.heldout_due(self.mix.heldout):
                kind = "heldout"
            elif kind == "heldout":
                kind = "info"
        pair = None
        if kind == "near":
            pair = self._pick_near()
        elif kind == "heldout":
            pair = self._pick_heldout(n_av)
        elif kind == "repeat":
            pair = self._pick_repeat(n_av)
        if pair is None:
            kind = "info"
            pair = self._pick_info(n_av)
        i, j = pair
        if kind != "repeat" and self.rng.random() < 0.5:  # random sides: no position bias
            i, j = j, i
        self.ledger.issue(i, j, kind, spacing=self.repetition_limit)
        self.last_kind = kind
        return int(i), int(j), kind

    def skip(self, i: int, j: int) -> None:
        """The user skipped a pending pair: it is not offered again."""
        self.ledger.skip(i, j)

    def record(self, i: int, j: int, outcome: float, kind: str | None = None) -> None:
        """Record one comparison and update both beliefs with openskill.

        outcome: 1.0 = i won, 0.0 = j won, 0.5 = tie. ``kind`` defaults to the kind under
        which the pair was issued, or "other" for pairs we did not issue.
        """
        c = self._normalise((i, j, outcome, kind))
        self._apply(c)
        self._reposition(c[0])
        self._reposition(c[1])

    def replay(self, comparisons: Iterable[Comparison] | None = None) -> None:
        """Reset beliefs to the priors and apply ``comparisons`` (default: our own history)
        in order. Pending pairs are dropped."""
        comps = self.ledger.history if comparisons is None else [self._normalise(c) for c in comparisons]
        self._reset_state()
        for c in comps:
            self._apply(c)
        self._rebuild_order()

    def win_probability(self, i, j) -> np.ndarray:
        """Current P(i beats j) (vectorised over index arrays)."""
        return win_probability(self.mu[i], self.sigma[i], self.mu[j], self.sigma[j])

    def repeat_outcomes(self) -> tuple[np.ndarray, np.ndarray]:
        """(first, repeat) outcomes of every repeated pair, both oriented as (min, max) index."""
        return self.ledger.repeat_outcomes()

    def self_agreement(self) -> float:
        """The user's agreement with themselves on repeated pairs (nan if none yet)."""
        return self.ledger.self_agreement()[0]

    def model_agreement(self, scores: Sequence[float] | np.ndarray, last_n: int | None = 200) -> float:
        """Agreement of the model's ``scores`` with the user over the last ``last_n`` comparisons."""
        history = self.ledger.history
        if not history:
            return math.nan
        s = np.asarray(scores, dtype=np.float64)
        h = history[-last_n:] if last_n else history
        arr = np.array([c[:3] for c in h], dtype=np.float64)
        ii, jj = arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64)
        return model_agreement(s[ii] - s[jj], arr[:, 2])

    # ------------------------------------------------------------------ internals

    def _normalise(self, c: Comparison) -> Entry:
        kind = c[3] if len(c) > 3 else None
        entry = self.ledger.normalise(c[0], c[1], c[2], kind)
        if entry[2] not in (0.0, 0.5, 1.0):
            raise ValueError(f"outcome must be 1.0 (i won), 0.0 (j won) or 0.5 (tie), not {c[2]}")
        return entry

    def _apply(self, c: Entry) -> None:
        """openskill BradleyTerryFull update of items i and j, then the ledger's booking."""
        i, j, o = c[0], c[1], c[2]
        ra, rb = self._ra, self._rb
        ra.mu, ra.sigma = float(self.mu[i]), float(self.sigma[i])
        rb.mu, rb.sigma = float(self.mu[j]), float(self.sigma[j])
        ranks = [0.0, 1.0] if o == 1.0 else ([1.0, 0.0] if o == 0.0 else [0.0, 0.0])
        (na,), (nb,) = self.model.rate([[ra], [rb]], ranks=ranks)
        self.mu[i], self.sigma[i] = na.mu, na.sigma
        self.mu[j], self.sigma[j] = nb.mu, nb.sigma
        self.ledger.book(c)

    def _reposition(self, k: int) -> None:
        """Move item k to its new place in the mu order in O(distance moved)."""
        p = int(self._pos[k])
        new = float(self.mu[k])
        old = float(self._mu_sorted[p])
        q = int(np.searchsorted(self._mu_sorted, new, side="left"))
        if old < new:
            q -= 1  # the array without k's old entry has one fewer element below `new`
        order, ms = self._order, self._mu_sorted
        if q > p:
            order[p:q] = order[p + 1 : q + 1]
            ms[p:q] = ms[p + 1 : q + 1]
        elif q < p:
            order[q + 1 : p + 1] = order[q:p].copy()
            ms[q + 1 : p + 1] = ms[q:p].copy()
        order[q], ms[q] = k, new
        lo, hi = min(p, q), max(p, q) + 1
        self._pos[order[lo:hi]] = np.arange(lo, hi)

    def _eligible(self) -> np.ndarray:
        """Available images under the show cap, rested by the spacing rule when it leaves two."""
        elig = self.ledger.eligible(self.available, self.max_shows)
        rested = elig & ~self._tired
        return rested if np.count_nonzero(rested) >= 2 else elig

    def _pair_limit(self, n_av: int) -> int:
        return self.ledger.pair_limit(n_av, self.pair_reuse)

    def _first_allowed(self, a: np.ndarray, b: np.ndarray, score: np.ndarray, limit: int):
        """Best-scoring candidate (a, b) the ledger allows under ``limit``."""
        allowed = self.ledger.allowed
        t = int(np.argmax(score))  # usually the best one is allowed: skip the sort
        if np.isfinite(score[t]) and allowed(int(a[t]), int(b[t]), limit):
            return int(a[t]), int(b[t])
        for t in np.argsort(-score, kind="stable"):
            if not np.isfinite(score[t]):
                break
            if allowed(int(a[t]), int(b[t]), limit):
                return int(a[t]), int(b[t])
        return None

    def _pick_info(self, n_av: int) -> tuple[int, int]:
        """Highest-EIG allowed pair among anchors x mu-neighbours (all pairs for tiny n).

        Fallbacks when those are used up (small n, big budgets): anchors x every eligible
        image, then every eligible pair, then a random allowed pair."""
        elig = self._eligible()
        limit = self._pair_limit(n_av)
        if self._tri is not None:  # tiny n: score every pair
            a, b = self._tri
            ok = elig[a] & elig[b]
            return self._best_allowed(a[ok], b[ok], limit) or self._fallback(elig, limit)
        s = np.where(elig, self._anchor_score(), -np.inf)
        k = min(self.n_anchors, self.n - 1)
        anchors = np.argpartition(s, -k)[-k:]
        anchors = anchors[np.isfinite(s[anchors])]
        offs = np.concatenate([np.arange(-self.window, 0), np.arange(1, self.window + 1)])
        pos = np.clip(self._pos[anchors][:, None] + offs[None, :], 0, self.n - 1)
        a = np.repeat(anchors, len(offs))
        b = self._order[pos].ravel()
        ok = elig[b] & (a != b)
        pair = self._best_allowed(a[ok], b[ok], limit)
        if pair is None and self.ledger.counts is not None:  # windows used up: anchors x every eligible image
            idx = np.flatnonzero(elig)
            a, b = np.repeat(anchors, len(idx)), np.tile(idx, len(anchors))
            pair = self._best_allowed(a[a != b], b[a != b], limit)
        return pair or self._fallback(elig, limit)

    def _anchor_score(self, idx: np.ndarray | None = None) -> np.ndarray:
        """How much an image's uncertainty costs the *ranking*: sigma_i f(mu_i)^rank_weight.

        An error of sigma in logits moves an image by about n f(mu) sigma ranks, f the
        density of images around mu (many images close together in the middle, few in the
        tails), so anchors favour uncertain images where the ranking is crowded. f is read
        off the mu order: 2K / (mu[p + K] - mu[p - K]) at the item's position p, K = 8.
        """
        sig, jit = (self.sigma, self._jitter) if idx is None else (self.sigma[idx], self._jitter[idx])
        if self.rank_weight == 0:
            return sig + jit
        ms, n, k = self._mu_sorted, self.n, 8
        p = self._pos if idx is None else self._pos[idx]
        gap = ms[np.minimum(p + k, n - 1)] - ms[np.maximum(p - k, 0)]
        spread = float(ms[-1] - ms[0])
        dens = 1.0 / (gap + 1e-3 * spread + 1e-9)
        return sig * dens**self.rank_weight * (1.0 + jit)

    def _fallback(self, elig: np.ndarray, limit: int) -> tuple[int, int]:
        led, pair = self.ledger, None
        if led.counts is not None:  # score every eligible pair
            idx = np.flatnonzero(elig)
            a, b = np.triu_indices(len(idx), 1)
            pair = self._best_allowed(idx[a], idx[b], limit)
        if pair is None:
            pair = led.random_pair(self.rng, elig, limit)
        if pair is None:  # every allowed pair is used, pending or skipped (tiny n): any available pair
            idx = np.flatnonzero(self.available)
            if len(idx) >= 2:
                i, j = self.rng.choice(idx, 2, replace=False)
                pair = int(i), int(j)
        if pair is None:
            raise NoPairAvailable("Every pair of the available images has been shown or excluded.")
        return pair

    def _best_allowed(self, a: np.ndarray, b: np.ndarray, limit: int):
        """Highest-EIG candidate the ledger allows (vectorised count check when dense)."""
        counts = self.ledger.counts
        if counts is not None and a.size:
            ok = counts[a, b] < limit
            a, b = a[ok], b[ok]
        if a.size == 0:
            return None
        eig = expected_info_gain(self.mu[a], self.sigma[a], self.mu[b], self.sigma[b])
        return self._first_allowed(a, b, eig, limit)

    def _pick_heldout(self, n_av: int):
        """Uniform over available pairs never compared, pending or skipped, within the
        spacing rule when it allows a pair."""
        led = self.ledger
        return led.random_pair(self.rng, self.available & ~self._tired, 1) or led.random_pair(
            self.rng, self.available, 1
        )

    def _pick_near(self):
        if self._near_index is None:  # no embeddings: near pairs are never drawn (PairMix)
            return None
        elig = self._eligible()
        sample = self.rng.integers(0, self.n, size=64)
        sample = sample[elig[sample]]
        if sample.size == 0:
            cand = np.flatnonzero(elig)
            if cand.size < 2:
                return None
            sample = self.rng.choice(cand, size=min(64, cand.size), replace=False)
        anchor = int(sample[np.argmax(self._anchor_score(sample))])
        nb = self._near_index.query(anchor, self.near_k, elig)
        if nb.size == 0:
            return None
        return self._best_allowed(np.full(nb.size, anchor), nb, self._pair_limit(int(self.available.sum())))

    def _pick_repeat(self, n_av: int):
        """An earlier pair shown again (``PairLedger.pick_repeat``), both images available and rested."""
        return self.ledger.pick_repeat(self.rng, self.repeat_gap, n_av, self.available, self._tired)
