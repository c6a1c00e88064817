"""Experiments behind "Why two targets are not met" in docs/pairing.md (not product code).

    python docs/experiments/pairing_limits.py designs  [--seeds 12]   # static designs, oracle prior
    python docs/experiments/pairing_limits.py criteria [--seeds 40]   # partner criteria in PairSelector
    python docs/experiments/pairing_limits.py bayes    [--seeds 100]  # Bayes-optimal Kendall picks, n=20

All use the worlds, estimator and metrics of ``joyq bench pairing`` (app n=1,000 with a
rho=0.75 model prior at 2 and 4 cmp/img, or asap n=20 in standard trials).
"""

from __future__ import annotations

import argparse
import math
from multiprocessing import Pool

import numpy as np
from scipy.special import ndtr

from joyq_studio import bench_pairing as B
from joyq_studio import pairing as P

N_APP, RHO = 1000, 0.75


def _sig(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _oracle_prior(w: B.World) -> tuple[np.ndarray, float]:
    """E[t | s] and the residual SD for the benchmark's bivariate-normal model scores."""
    r = 2.0 * math.sin(math.pi * RHO / 6.0)
    return r * w.scores[RHO], B.APP_SD * math.sqrt(1.0 - r * r)


# ------------------------------------------------------------------ designs


def _designs_seed(seed: int) -> dict[str, float]:
    """Fixed designs of 4n pairs (every image in 8) under the oracle prior."""
    n, m = N_APP, 4 * N_APP
    w = B.make_world("app", n, seed)
    pm, ps = _oracle_prior(w)
    rng = np.random.default_rng(seed)
    true_order, prior_order = np.argsort(w.truth), np.argsort(pm)
    a = rng.integers(0, n, m)
    designs = {"random pairs": (a, (a + rng.integers(1, n, m)) % n)}
    for name, order in (("neighbours in TRUE order", true_order), ("neighbours in PRIOR order", prior_order)):
        designs[name + " (offsets 1-4)"] = (
            np.concatenate([order[:-k] for k in (1, 2, 3, 4)]),
            np.concatenate([order[k:] for k in (1, 2, 3, 4)]),
        )
    out = {}
    for name, (i, j) in designs.items():
        o = (np.random.default_rng([seed, 5]).random(len(i)) < w.prob(i, j)).astype(float)
        out[name] = B.evaluate(w, B.bt_map(n, i, j, o, pm, ps))["spearman"]
    return out


# ------------------------------------------------------------------ partner criteria


class _Criterion(P.PairSelector):
    """PairSelector whose candidate pairs are ranked by another criterion."""

    criterion = "eig"

    def _density(self, idx):
        ms, n, k = self._mu_sorted, self.n, 8
        p = self._pos[idx]
        return 1.0 / (ms[np.minimum(p + k, n - 1)] - ms[np.maximum(p - k, 0)] + 1e-3 * float(ms[-1] - ms[0]) + 1e-9)

    def _ambiguity_gain(self, a, sa, k, p, v):
        """Expected drop in sum_j P(a and j in the wrong order) over a's rank neighbours."""
        reach = np.clip(3 * sa * self._density(a) * 16, 8, self.n)  # ~3 SD of a, in ranks
        pos = np.clip(
            self._pos[a][:, None] + np.rint(np.linspace(-1, 1, 33)[None, :] * reach[:, None]).astype(int), 0, self.n - 1
        )
        mj, sj2, wgt = self.mu[self._order[pos]], self.sigma[self._order[pos]] ** 2, reach[:, None] / 16
        ma, sa2 = self.mu[a][:, None], (sa**2)[:, None]

        def amb(m, s2):
            return (ndtr(-np.abs(m - mj) / np.sqrt(s2 + sj2 + 1e-12)) * wgt).sum(1)

        s2_new = sa2 * (1 - sa2 * (k / (1 + k * v))[:, None])
        step = (sa**2 / (1 + k * v))[:, None]
        return (
            amb(ma, sa2) - p * amb(ma + step * (1 - p)[:, None], s2_new) - (1 - p) * amb(ma - step * p[:, None], s2_new)
        )

    def _best_allowed(self, a, b, limit):
        if self._dense and a.size:
            ok = self._counts[a, b] < limit
            a, b = a[ok], b[ok]
        if a.size == 0:
            return None
        sa, sb = self.sigma[a], self.sigma[b]
        v = sa**2 + sb**2
        p = P.win_probability(self.mu[a], sa, self.mu[b], sb)
        k = p * (1 - p)
        if self.criterion == "eig":
            score = np.log1p(v * k)
        elif self.criterion == "variance":  # drop of sigma_a^2 + sigma_b^2
            score = (sa**4 + sb**4) * k / (1 + k * v)
        elif self.criterion == "density-variance":  # ... weighted by rank crowding
            score = (self._density(a) * sa**4 + self._density(b) * sb**4) * k / (1 + k * v)
        else:  # "ambiguity": expected drop of mis-ordered neighbour pairs
            score = self._ambiguity_gain(a, sa, k, p, v) + self._ambiguity_gain(b, sb, k, 1 - p, v)
        return self._first_allowed(a, b, score, limit)


def _criteria_seed(seed: int) -> dict[str, float]:
    n, m_max = N_APP, 4 * N_APP
    w = B.make_world("app", n, seed)
    out = {}
    for crit in ("eig", "variance", "density-variance", "ambiguity"):
        cls = type("Sel", (_Criterion,), {"criterion": crit})
        sel = cls.from_model_scores(w.scores[RHO], [], embeddings=w.embeddings, seed=seed)
        u = np.random.default_rng([seed, 13, 75]).random(m_max)
        refit = {2**k for k in range(4, 40)}
        for m in range(1, m_max + 1):
            i, j = sel.next_pair()
            sel.record(i, j, 1.0 if u[m - 1] < w.prob1(i, j) else 0.0)
            if m in refit:
                sel.set_model_scores(w.scores[RHO])
            if m in (m_max // 2, m_max):
                h = np.array([c[:3] for c in sel.history])
                est = B.bt_map(
                    n, h[:, 0].astype(np.int64), h[:, 1].astype(np.int64), h[:, 2], sel.prior_mu, sel.prior_sigma
                )
                out[f"{crit} @{m // n}"] = B.spearman(est, w.truth)
    return out


# ------------------------------------------------------------------ Bayes-optimal Kendall picks

TRIALS = (0.25, 0.5, 1, 2, 3)


def _laplace(n, i, j, o, theta0):
    """MAP Bradley-Terry under N(0, 1) and the Cholesky factor of its Laplace covariance."""
    theta = B.bt_map(n, i, j, o, 0.0, 1.0, theta0) if len(i) else np.zeros(n)
    p = _sig(theta[i] - theta[j])
    w = p * (1 - p)
    h = np.eye(n)
    np.add.at(h, (i, i), w)
    np.add.at(h, (j, j), w)
    np.add.at(h, (i, j), -w)
    np.add.at(h, (j, i), -w)
    return theta, np.linalg.cholesky(np.linalg.inv(h))


def _bayes_seed(seed: int, samples: int = 400) -> dict[str, float]:
    """Each pick minimises the expected number of mis-ordered pairs after its outcome, over
    Laplace-posterior samples reweighted by the outcome's likelihood (all pairs; n = 20)."""
    n = 20
    cps = [round(t * n * (n - 1) / 2) for t in TRIALS]
    w = B.make_world("asap", n, seed)
    rng = np.random.default_rng([seed, 77])
    u = np.random.default_rng([seed, 13, 900]).random(cps[-1])
    a, b = np.triu_indices(n, 1)
    ii, jj, oo, theta, out = [], [], [], None, {}
    for m in range(1, cps[-1] + 1):
        theta, chol = _laplace(n, np.array(ii, int), np.array(jj, int), np.array(oo), theta)
        s = theta[None, :] + rng.normal(size=(samples, n)) @ chol.T
        order = (s[:, a] > s[:, b]).astype(float)  # samples x pairs
        w1 = _sig(s[:, a] - s[:, b])  # likelihood of "a wins" per sample and candidate
        p1 = (w1.T @ order) / w1.sum(0)[:, None]
        p0 = ((1 - w1).T @ order) / (1 - w1).sum(0)[:, None]
        py = w1.mean(0)
        loss = py * np.minimum(p1, 1 - p1).sum(1) + (1 - py) * np.minimum(p0, 1 - p0).sum(1)
        t = int(np.argmin(loss + 1e-9 * rng.random(loss.size)))
        ii.append(a[t])
        jj.append(b[t])
        oo.append(1.0 if u[m - 1] < w.prob1(a[t], b[t]) else 0.0)
        if m in cps:
            est = B.bt_map(n, np.array(ii), np.array(jj), np.array(oo), 0.0, 1.0)
            out[f"bayes @{TRIALS[cps.index(m)]}"] = B.spearman(est, w.truth)
    ri, rj = B._random_pairs(w, cps[-1], np.random.default_rng([seed, 11]))
    ro = (np.random.default_rng([seed, 14]).random(cps[-1]) < w.prob(ri, rj)).astype(float)
    for t, m in zip(TRIALS, cps):
        out[f"random @{t}"] = B.spearman(B.bt_map(n, ri[:m], rj[:m], ro[:m], 0.0, 1.0), w.truth)
    return out


# ------------------------------------------------------------------ main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("experiment", choices=["designs", "criteria", "bayes"])
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    fn, default = {"designs": (_designs_seed, 12), "criteria": (_criteria_seed, 40), "bayes": (_bayes_seed, 100)}[
        args.experiment
    ]
    with Pool(args.jobs) as pool:
        rows = pool.map(fn, range(args.seeds or default))
    med = {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
    for k, v in med.items():
        print(f"{k:45s} median Spearman {v:.4f}")
    if args.experiment == "bayes":
        rand = [med[f"random @{t}"] for t in TRIALS]
        ours = [med[f"bayes @{t}"] for t in TRIALS]
        ratios = [B._reach_budget(TRIALS, ours, rand[k]) / TRIALS[k] for k in range(1, len(TRIALS))]
        print(
            "comparisons needed for random's Spearman, share of random's:",
            ", ".join(f"{t:g} trials: {r:.2f}" for t, r in zip(TRIALS[1:], ratios)),
        )


if __name__ == "__main__":
    main()
