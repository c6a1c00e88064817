"""The pair chooser of the live head: bounded candidates scored in a PCA-reduced space,
the exact re-scoring of a shortlist, the coin-flip cap, held-out, repeat and explore
draws within the repetition limit (the scheme: ``model.py``'s module docstring)."""

from __future__ import annotations

import math

import numpy as np

from ..errors import NoPairAvailable
from .acquisition import test_variance_reduction
from .head import sigmoid
from .posterior import Posterior
from .state import COINFLIP_BAND, EER_PAIRS, FULL_RESCORE_MACS, ROLL_MACS


def _normal_tail(x: np.ndarray) -> np.ndarray:
    """Phi(-x) for x >= 0 (Abramowitz & Stegun 7.1.26 for erfc, |error| < 1.5e-7; numpy only)."""
    z = np.asarray(x, dtype=np.float64) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return 0.5 * poly * np.exp(-z * z)


class PairChooser(Posterior):
    """Which pair next (``TasteModel``'s third part)."""

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

    def _eligible(self) -> np.ndarray:
        return self.ledger.eligible(self.available, self.max_shows)

    def _pair_limit(self, n_av: int) -> int:
        return self.ledger.pair_limit(n_av, self.pair_reuse)

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
        led = self.ledger
        if led.counts is not None:
            ok = led.counts[a, b] < limit
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
                key = led.key(i, j)
                if key in seen or not led.allowed(i, j, limit):
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

    def _fallback(self, elig: np.ndarray, limit: int, n_av: int) -> tuple[int, int]:
        led = self.ledger
        pair = led.random_pair(self.rng, elig, limit) or led.random_pair(self.rng, self.available, limit)
        if pair is None and led.counts is not None:  # small: search every available pair
            idx = np.flatnonzero(self.available)
            a, b = np.triu_indices(len(idx), 1)
            a, b = idx[a], idx[b]
            ok = led.counts[a, b] < limit
            for t in self.rng.permutation(np.flatnonzero(ok)):
                if led.allowed(int(a[t]), int(b[t]), limit):
                    return int(a[t]), int(b[t])
        if pair is None:
            raise NoPairAvailable("Every pair of the images that can be shown is already compared, pending or skipped.")
        return pair

    def _pick_heldout(self, n_av: int):
        """Uniform over available pairs never compared before (not pending, not skipped),
        within the repetition limit when it allows a pair."""
        led = self.ledger
        return led.random_pair(self.rng, self.available & ~self._tired, 1) or led.random_pair(
            self.rng, self.available, 1
        )

    def _pick_repeat(self, n_av: int):
        """An earlier fitted pair shown again (``PairLedger.pick_repeat``), both images
        eligible (available, under the show cap) and rested."""
        return self.ledger.pick_repeat(self.rng, self.repeat_gap, n_av, self._eligible(), self._tired)
