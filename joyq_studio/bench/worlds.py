"""The simulated worlds of the taste and pairing benchmarks: images, a rater, a starting head.

One module, used by ``joyq bench taste`` (the Bayesian head in a closed loop) and
``joyq bench pairing`` (the OpenSkill selector's score worlds, :func:`score_world`).

Embedding world (:func:`make_world`): n images with d-dimensional embeddings, a random
rotation of a decaying spectrum (variance of the k-th direction ~ 1/k) with ``CLUSTERS``
content clusters (half of each image's variance) and a common offset (raw tower outputs are
not centred); 20% of the images are never shown (out-of-sample, "OOS"). The rater's taste
is ``t(e)``; P(i beats j) = lapse / 2 + (1 - lapse) sigmoid(t_i - t_j), its scale set so the
rater agrees with the order of t on 80% of uniform pairs. The kinds (``WORLDS``):

clean       linear taste ``t = w* . e``, 5% lapses, starting head w* rotated until its
            order agrees with the rater on 75% of uniform pairs.
wrong-base  the same, but the starting head has cosine -0.5 to w* (same norm): partly
            against the user's taste.
nonlinear   ``t = w* . e - g (u . e - c)^2``: likes the u direction up to a point,
            dislikes extremes (the quadratic part carries about half of t's variance);
            the starting head is the linear part rotated to 75% agreement.
lapses      clean with 20% lapses (a tired or careless user).
ties        clean, but the rater says "tie" (0.5) whenever |t_i - t_j| is below the value
            that a quarter of uniform pairs fall under.
drift       the user's standard shifts during the session: the taste turns linearly from
            w* to w*' (cosine 0.5) over ``DRIFT_CLICKS`` clicks; accuracy is measured
            against the taste at the moment of measuring.

Accuracy in every world: the share of uniform OOS pairs ordered as the rater's noiseless
taste (at that moment) orders them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..metrics import sigmoid

WORLDS = ("clean", "wrong-base", "nonlinear", "lapses", "ties", "drift")
DIM = 1152
N_IMAGES = 5000
OOS_SHARE = 0.2
LAPSE = 0.05
HIGH_LAPSE = 0.20
RATER_AGREE = 0.80
BASE_AGREE = 0.75
WRONG_BASE_COSINE = -0.5
TIE_SHARE = 0.25
DRIFT_CLICKS = 400
DRIFT_COSINE = 0.5
CLUSTERS = 40
N_EVAL = 4000
EMB_NORM = 10.0
"""RMS norm of a centred embedding (sets the scale the SGD recipe's learning rate meets)."""


@dataclass
class World:
    """One seed's images, rater and starting head."""

    kind: str
    E: np.ndarray  # (n, d) float32
    w_star: np.ndarray  # linear part of the true taste, on the rater's logit scale
    w0: np.ndarray  # starting head
    shown: np.ndarray  # indices that may be shown
    oos: np.ndarray  # never shown
    eval_i: np.ndarray
    eval_j: np.ndarray
    t: np.ndarray  # true taste of every image (at click 0)
    lapse: float = LAPSE
    tie_below: float = 0.0  # |t_i - t_j| under this: the rater says tie
    t_end: np.ndarray | None = None  # drift: the taste after DRIFT_CLICKS clicks
    drift_clicks: int = DRIFT_CLICKS
    extra: dict = field(default_factory=dict)

    def taste(self, click: int = 0) -> np.ndarray:
        """The true taste of every image at that click (drift moves it)."""
        if self.t_end is None:
            return self.t
        f = min(max(click / self.drift_clicks, 0.0), 1.0)
        return (1.0 - f) * self.t + f * self.t_end

    def p_rater(self, i, j, click: int = 0) -> np.ndarray:
        t = self.taste(click)
        return self.lapse / 2 + (1 - self.lapse) * np.asarray(sigmoid(t[i] - t[j]))

    def answer(self, i: int, j: int, rng: np.random.Generator, click: int = 0) -> float:
        """The rater's answer: 1 (i better), 0 (j better) or 0.5 (tie, in the ties world)."""
        u = rng.random()  # always drawn: paired seeds stay paired
        if self.tie_below > 0 and rng.random() >= self.lapse:
            t = self.taste(click)
            if abs(t[i] - t[j]) < self.tie_below:
                return 0.5
        return float(u < float(self.p_rater(i, j, click)))

    def evaluate(self, w: np.ndarray, click: int = 0, features: np.ndarray | None = None) -> dict[str, float]:
        """OOS pair accuracy against the noiseless taste, expected agreement with the rater,
        Spearman of the whole folder; and the head's norm relative to the starting head's.
        ``features``: the rows the head scores, when not the embeddings (random features)."""
        from ..metrics import spearman

        s = (self.E if features is None else features).astype(np.float64) @ w
        t = self.taste(click)
        i, j = self.eval_i, self.eval_j
        ds, dt = s[i] - s[j], t[i] - t[j]
        p = self.p_rater(i, j, click)
        return {
            "oos_acc": float(np.mean(np.sign(ds) == np.sign(dt))),
            "oos_agree": float(np.mean(np.where(ds > 0, p, np.where(ds < 0, 1 - p, 0.5)))),
            "spearman": float(spearman(s, t)),
            "norm_ratio": float(np.linalg.norm(w) / max(np.linalg.norm(self.w0), 1e-300)),
        }


def _bisect(fn, lo, hi, target, increasing=True, iters=80, geometric=False):
    for _ in range(iters):
        mid = math.sqrt(lo * hi) if geometric else 0.5 * (lo + hi)
        if (fn(mid) < target) == increasing:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi) if geometric else 0.5 * (lo + hi)


def _unit_like(w: np.ndarray, u: np.ndarray) -> np.ndarray:
    """u made orthogonal to w, with w's norm."""
    u = u - w * (u @ w) / (w @ w)
    return u * (np.linalg.norm(w) / np.linalg.norm(u))


def make_world(seed: int, kind: str = "clean", n: int = N_IMAGES, d: int = DIM) -> World:
    """One seed's world of the given kind (module docstring). The images and the linear part
    of the taste depend only on the seed, so the kinds of one seed share their images."""
    if kind not in WORLDS:
        raise ValueError(f"unknown world {kind!r}; choose from {', '.join(WORLDS)}")
    rng = np.random.default_rng([seed, 4242])
    lam = 1.0 / np.arange(1, d + 1)
    lam *= EMB_NORM**2 / lam.sum()
    rot, _ = np.linalg.qr(rng.normal(size=(d, d)))
    group = rng.integers(0, CLUSTERS, n)
    centres = rng.normal(size=(CLUSTERS, d)) * np.sqrt(0.5 * lam)
    coef = centres[group] + rng.normal(size=(n, d)) * np.sqrt(0.5 * lam)
    offset = rng.normal(size=d) * np.sqrt(lam) * 3.0
    E = ((coef + offset) @ rot.T).astype(np.float32)
    Ef = E.astype(np.float64)
    w = rot @ rng.normal(size=d)
    u = _unit_like(w, rot @ rng.normal(size=d))
    v = _unit_like(w, _unit_like(u, rot @ rng.normal(size=d)))  # a third direction
    lapse = HIGH_LAPSE if kind == "lapses" else LAPSE
    # the unscaled taste
    raw = Ef @ w
    if kind == "nonlinear":
        z = Ef @ v
        z = (z - z.mean()) / z.std()
        quad = -((z - 0.5) ** 2)  # liked up to a point, extremes disliked
        raw = raw - raw.mean()
        raw = raw / raw.std() + quad / quad.std()
    i, j = rng.integers(0, n, 40000), rng.integers(0, n, 40000)
    i, j = i[i != j], j[i != j]
    dr = raw[i] - raw[j]

    def truth_agree(k):
        return float(np.mean(lapse / 2 + (1 - lapse) * sigmoid(k * np.abs(dr))))

    k = _bisect(truth_agree, 1e-6, 1e6, RATER_AGREE, geometric=True)
    t = k * raw
    if kind == "nonlinear":  # w* = the linear part on the logit scale
        w_star = w * (k / float(np.std(Ef @ w)))
    else:
        w_star = k * w
    p = lapse / 2 + (1 - lapse) * sigmoid(t[i] - t[j])
    dw, du = (Ef[i] - Ef[j]) @ w_star, (Ef[i] - Ef[j]) @ _unit_like(w_star, u)
    if kind == "wrong-base":
        c = WRONG_BASE_COSINE
        w0 = c * w_star + math.sqrt(1 - c * c) * _unit_like(w_star, u)
    else:

        def base_agree(theta):
            s = math.cos(theta) * dw + math.sin(theta) * du
            return float(np.mean(np.where(s > 0, p, 1 - p)))

        theta = _bisect(base_agree, 0.0, math.pi / 2, BASE_AGREE, increasing=False)
        w0 = math.cos(theta) * w_star + math.sin(theta) * _unit_like(w_star, u)
    perm = rng.permutation(n)
    n_oos = int(round(OOS_SHARE * n))
    oos, shown = np.sort(perm[:n_oos]), np.sort(perm[n_oos:])
    ei, ej = oos[rng.integers(0, n_oos, N_EVAL)], oos[rng.integers(0, n_oos, N_EVAL)]
    ok = ei != ej
    world = World(kind, E, w_star, w0, shown, oos, ei[ok], ej[ok], t, lapse=lapse)
    if kind == "ties":
        world.tie_below = float(np.quantile(np.abs(t[i] - t[j]), TIE_SHARE))
    if kind == "drift":
        c = DRIFT_COSINE
        w_end = c * w_star + math.sqrt(1 - c * c) * _unit_like(w_star, _unit_like(u, rot @ rng.normal(size=d)))
        world.t_end = Ef @ w_end
    return world


# ----------------------------------------------------------------------------- score worlds


ASAP_NOISE = 1.4865
APP_LAPSE = 0.05
APP_SD = 1.5
APP_PRIORS = (0.0, 0.75, 0.9)
N_EVAL_PAIRS = 2000


@dataclass
class ScoreWorld:
    """The pairing benchmark's world: hidden true scores, a rater, embeddings, model scores
    of a given Spearman with the truth, and held-out test pairs."""

    setting: str
    truth: np.ndarray
    embeddings: np.ndarray | None
    scores: dict[float, np.ndarray] = field(default_factory=dict)
    eval_i: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    eval_j: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    eval_o: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def n(self) -> int:
        return len(self.truth)

    def prob(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Rater's P(i beats j), vectorised."""
        d = self.truth[i] - self.truth[j]
        if self.setting == "asap":
            return _phi(d / ASAP_NOISE)
        return 0.5 * APP_LAPSE + (1 - APP_LAPSE) * np.asarray(sigmoid(d))

    def prob1(self, i: int, j: int) -> float:
        """Rater's P(i beats j) for one pair (scalar fast path)."""
        d = float(self.truth[i] - self.truth[j])
        if self.setting == "asap":
            return 0.5 * (1.0 + math.erf(d / (ASAP_NOISE * math.sqrt(2.0))))
        return 0.5 * APP_LAPSE + (1 - APP_LAPSE) / (1.0 + math.exp(-d))


def _phi(x: np.ndarray) -> np.ndarray:
    """Standard normal CDF without scipy: Phi(x) = (1 + erf(x / sqrt 2)) / 2."""
    erf = np.frompyfunc(math.erf, 1, 1)
    return 0.5 * (1.0 + np.asarray(erf(np.asarray(x) / math.sqrt(2.0)), dtype=np.float64))


def score_world(setting: str, n: int, seed: int) -> ScoreWorld:
    """Draw a score world. Model scores with Spearman rho use Pearson r = 2 sin(pi rho / 6)
    (exact for bivariate normals), scaled like logits (SD 1.5)."""
    rng = np.random.default_rng([seed, n, 7])
    if setting == "asap":
        w = ScoreWorld("asap", rng.uniform(0.0, 5.0, n), None)
    else:
        truth = rng.normal(0.0, APP_SD, n)
        n_clusters = max(5, n // 20)
        centres = rng.normal(size=(n_clusters, 16))
        emb = centres[rng.integers(0, n_clusters, n)] + 0.5 * rng.normal(size=(n, 16))
        w = ScoreWorld("app", truth, emb.astype(np.float32))
        z = (truth - truth.mean()) / truth.std()
        for rho in APP_PRIORS:
            r = 2.0 * math.sin(math.pi * rho / 6.0)
            w.scores[rho] = APP_SD * (r * z + math.sqrt(1.0 - r * r) * rng.normal(size=n))
    w.eval_i = rng.integers(0, n, N_EVAL_PAIRS)
    w.eval_j = (w.eval_i + rng.integers(1, n, N_EVAL_PAIRS)) % n
    w.eval_o = (rng.random(N_EVAL_PAIRS) < w.prob(w.eval_i, w.eval_j)).astype(np.float64)
    return w


def fixed_k_index_pairs(
    n_pairs: int, items: np.ndarray, embeddings: np.ndarray | None, near_share: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-k pairs over ``items`` (indices) from THE builder, ``pairing.fixedk``. The
    builder never repeats a pair; when the budget exceeds the distinct pairs (the all-pairs
    protocols on 20 items), further batches are drawn with the next seeds."""
    from ..pairing.fixedk import fixed_k_pairs

    items = np.asarray(items, dtype=np.int64)
    names = [str(int(x)) for x in items]
    emb = None if embeddings is None else np.asarray(embeddings)[items]
    a: list[int] = []
    b: list[int] = []
    batch = 0
    while len(a) < n_pairs:
        pairs = fixed_k_pairs(names, n_pairs - len(a), emb, near_share=near_share, seed=seed + 7919 * batch)
        if not pairs:
            break
        a += [int(p[0]) for p in pairs]
        b += [int(p[1]) for p in pairs]
        batch += 1
    return np.array(a, dtype=np.int64), np.array(b, dtype=np.int64)
