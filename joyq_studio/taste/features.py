"""A head flexible enough for a taste that is not linear in the embedding: random features.

``RandomFeatures`` appends ``n_features`` random Fourier features (an RBF kernel, Rahimi &
Recht 2007) of the top ``n_pcs`` principal coordinates of the embeddings to the embedding
itself: ``e' = [e, scale * phi(e)]``. The Bayesian head on ``e'`` is the linear head plus a
small kernel part with the same prior ``N(0, I / alpha)`` on the new weights (centred on 0:
the starting head says nothing about them), so ``TasteModel(features.transform(E),
(features.pad_head(w0), b0))`` learns it with every rule unchanged. ``scale`` makes a
typical pair's prior variance from the features ``share`` (default 0.5) of the embedding's.

How many features: ``select_size`` compares the Laplace evidence of the fits with 0
(linear), 128 and 512 features on the clicks so far (the evidence penalises the larger
head), so the linear head stays where the data cannot tell them apart. The closed-loop
benchmark (``joyq bench taste --world nonlinear --strategies model,model-rff``) measures it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["RandomFeatures", "select_size"]


class RandomFeatures:
    """Random Fourier features of the top principal coordinates (module docstring)."""

    def __init__(
        self,
        embeddings: np.ndarray,
        n_features: int = 256,
        n_pcs: int = 32,
        share: float = 0.5,
        seed: int = 0,
    ) -> None:
        E = np.asarray(embeddings, dtype=np.float64)
        if E.ndim != 2 or len(E) < 2:
            raise ValueError("embeddings must be a 2-d array with at least 2 rows")
        rng = np.random.default_rng([seed, 31])
        self.d = E.shape[1]
        self.n_features = int(n_features)
        rows = E if len(E) <= 4096 else E[rng.choice(len(E), 4096, replace=False)]
        self.mean = rows.mean(axis=0)
        xs = rows - self.mean
        lam, vec = np.linalg.eigh(xs.T @ xs / len(xs))
        k = min(int(n_pcs), self.d)
        self.pcs = vec[:, ::-1][:, :k] / np.sqrt(np.maximum(lam[::-1][:k], 1e-12))  # whitened
        z = xs @ self.pcs
        i, j = rng.integers(0, len(z), 2000), rng.integers(0, len(z), 2000)
        dist = np.linalg.norm(z[i] - z[j], axis=1)
        length = float(np.median(dist[dist > 0])) if np.any(dist > 0) else 1.0  # median heuristic
        self.omega = rng.normal(size=(k, self.n_features)) / length
        self.phase = rng.uniform(0.0, 2.0 * np.pi, self.n_features)
        phi = self._phi(rows)
        de = float(np.mean(np.sum(np.square(xs[i] - xs[j]), axis=1)))
        dphi = float(np.mean(np.sum(np.square(phi[i] - phi[j]), axis=1)))
        self.scale = float(np.sqrt(share * de / dphi)) if dphi > 0 else 0.0

    def _phi(self, E: np.ndarray) -> np.ndarray:
        z = (np.asarray(E, dtype=np.float64) - self.mean) @ self.pcs
        return np.sqrt(2.0 / max(self.n_features, 1)) * np.cos(z @ self.omega + self.phase)

    def transform(self, embeddings: np.ndarray) -> np.ndarray:
        """(n, d + n_features) float32: the embedding and its scaled random features."""
        E = np.asarray(embeddings)
        return np.concatenate([E.astype(np.float32), (self.scale * self._phi(E)).astype(np.float32)], axis=1)

    def pad_head(self, w0: np.ndarray) -> np.ndarray:
        """The starting head on the augmented space: w0 and zeros for the features."""
        return np.concatenate([np.asarray(w0, dtype=np.float64).reshape(-1), np.zeros(self.n_features)])


def select_size(
    embeddings: np.ndarray,
    pairs: np.ndarray,
    outcomes: np.ndarray,
    w0: np.ndarray,
    sizes: tuple[int, ...] = (0, 128, 512),
    seed: int = 0,
    lapse: float = 0.05,
) -> tuple[int, dict[int, float]]:
    """The number of random features (0 = the linear head) with the highest Laplace evidence
    on the recorded clicks ``pairs`` (m, 2) with ``outcomes`` (m,); returns (size, evidences)."""
    from .head import ALPHA_PRIOR_SD, fit_head

    pairs = np.asarray(pairs, dtype=np.int64)
    ev: dict[int, float] = {}
    for size in sizes:
        if size == 0:
            E, w = np.asarray(embeddings, dtype=np.float32), np.asarray(w0, dtype=np.float64)
        else:
            rf = RandomFeatures(embeddings, n_features=size, seed=seed)
            E, w = rf.transform(embeddings), rf.pad_head(w0)
        X = E[pairs[:, 0]] - E[pairs[:, 1]]
        fit = fit_head(X, outcomes, None, w, lapse=lapse, alpha_prior_sd=ALPHA_PRIOR_SD)
        ev[size] = fit.evidence
    best = max(ev, key=lambda k: ev[k])
    return best, ev
