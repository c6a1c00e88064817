"""The personal head as Bayesian logistic regression on embedding differences.

Notation (``shared/notes/bayesian-head.md``): a comparison k of images (i, j) has the
difference ``x_k = e_i - e_j`` of their pooled embeddings, a label ``y_k`` in {1, 0, 1/2}
(1/2 = tie, a soft target) and a weight ``c_k`` (1 for the user's own clicks). With the head
``w``, P(i beats j) = sigmoid(w . x_k); the bias cancels in every pair.

* Prior ``w ~ N(w0, I / alpha)``, centred on the starting head ``w0``.
* MAP: minimise the convex

      L(w) = sum_k c_k [y_k softplus(-f_k) + (1 - y_k) softplus(f_k)] + alpha/2 |w - w0|^2,
      f_k = w . x_k,

  by Newton's method (IRLS): ``g = X^T c (p - y) + alpha (w - w0)``,
  ``H = X^T R X + alpha I = G + alpha I``, ``R = diag(c p (1 - p))``.
* Laplace posterior ``w ~ N(w_hat, Sigma)``, ``Sigma = H^-1`` at the MAP.
* ``alpha`` by type-II maximum likelihood on the Laplace evidence

      log p(y | alpha) ~= -L(w_hat) + sum_i 1/2 log(alpha / (lambda_i + alpha)),

  lambda_i the eigenvalues of ``G`` (zero ones contribute nothing, so the sum runs over the
  at most min(m, d) non-zero ones; the prior's normalising constants cancel against the
  Gaussian integral).

One eigendecomposition per Newton step serves everything. ``G = Q diag(lambda) Q^T`` is
computed in the primal (``X^T R X``, d x d) when m >= d, and in the m x m dual otherwise:
with ``D = R^1/2`` and ``D X X^T D = U diag(mu) U^T`` the non-zero eigenpairs of ``G`` are
``lambda = mu``, ``Q = X^T D U mu^-1/2`` (``Q^T Q = I``, ``G Q = Q diag(mu)``). Then, for any
alpha, with the likelihood replaced by its quadratic model at the current w (gradient
``g_l = X^T c (p - y)``, curvature ``G``) and ``r = Q^T (w - w0)``, ``q = Q^T g_l``:

    the Newton step at alpha lands on  w(alpha) = w0 + Q theta,
                                       theta = (lambda * r - q) / (lambda + alpha),

and the evidence of the quadratic model is a sum over the eigenvalues, O(min(m, d)) per
alpha. Each outer iteration therefore (1) picks the alpha that maximises that evidence
(a grid over log alpha, then golden-section refinement), (2) takes the Newton step at that
alpha (halved until L decreases), (3) recomputes p and G. At convergence alpha maximises the
Laplace evidence with R held at the MAP (MacKay 1992's approximation: dR/dalpha is
ignored) and ``w`` is the exact MAP for that alpha. Warm starts (the previous w and alpha)
make a refit after a few new pairs one or two iterations.

The posterior covariance is kept in factored form,

    Sigma = I / alpha + Q diag(1 / (lambda + alpha) - 1 / alpha) Q^T,

so ``Sigma v`` costs 2 d r and the d x d matrix is never needed (``HeadFit.covariance``
builds it on request).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..metrics import sigmoid  # the one sigmoid

__all__ = [
    "ALPHA_PRIOR_SD",
    "DEFAULT_LAPSE",
    "HeadFit",
    "fit_head",
    "default_alpha",
    "link_terms",
    "pair_loss",
    "sigmoid",
]

DEFAULT_LAPSE = 0.05
"""Lapse rate of the live head's likelihood: a click is a careless coin flip with this
probability, P(i beats j) = lapse / 2 + (1 - lapse) sigmoid(w . x). One careless click then
moves the head by a bounded amount (its gradient vanishes for very confident wrong answers)
and clean data cannot push the logits to infinity. Fixed, not learned: with few clicks the
lapse and the head's scale are confounded."""

ALPHA_PRIOR_SD = 2.0
"""SD (nats) of the log-normal hyperprior on the prior strength, ln alpha ~ N(ln alpha_ref,
2^2): the evidence may move alpha by a factor e^2 ~ 7 either way at no real cost, but
neither to "the starting head for ever" (alpha -> infinity) nor to a head many times the
base's norm (alpha -> 0) on a handful of clicks."""

LOG_ALPHA_SPAN = (-14.0, 16.0)
"""Search range of ln(alpha / alpha_ref) (``alpha_ref = default_alpha``). At the upper end the
head is the starting head to within e^-8 of its prior scale: data that agrees with the base
drives alpha there."""

ALPHA_FREEZE = 12
"""After this many outer iterations alpha stops moving and Newton finishes at fixed alpha
(the alternation between alpha and w can cycle when the evidence is flat)."""

EIG_RTOL = 1e-10
"""Eigenvalues of G below this fraction of the largest are treated as zero."""


def pair_loss(f: np.ndarray, y: np.ndarray, c: np.ndarray, lapse: float = 0.0) -> float:
    """Negative log-likelihood (nats) of soft labels y with weights c at logits f:
    sum_k c_k [y_k softplus(-f_k) + (1 - y_k) softplus(f_k)] without lapses, else
    -sum_k c_k [y_k log q_k + (1 - y_k) log(1 - q_k)], q = lapse / 2 + (1 - lapse) sigmoid(f)."""
    if lapse <= 0.0:
        return float(np.dot(c * y, np.logaddexp(0.0, -f)) + np.dot(c * (1.0 - y), np.logaddexp(0.0, f)))
    q = 0.5 * lapse + (1.0 - lapse) * np.asarray(sigmoid(f))
    return -float(np.dot(c * y, np.log(q)) + np.dot(c * (1.0 - y), np.log1p(-q)))


def link_terms(f: np.ndarray, y: np.ndarray, c: np.ndarray, lapse: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(d loss / d f_k, Fisher weight r_k) of ``pair_loss`` at logits f.

    Without lapses: ``c (p - y)`` and ``c p (1 - p)`` (Newton = IRLS). With a lapse rate
    the loss is not convex in f; Fisher scoring keeps the weights positive:
    ``c (q - y) s / (q (1 - q))`` and ``c s^2 / (q (1 - q))``, s = (1 - lapse) p (1 - p)."""
    p = np.asarray(sigmoid(f))
    if lapse <= 0.0:
        return c * (p - y), c * p * (1.0 - p)
    s = (1.0 - lapse) * p * (1.0 - p)
    q = 0.5 * lapse + (1.0 - lapse) * p
    qq = q * (1.0 - q)
    return c * (q - y) * s / qq, c * s * s / qq


def default_alpha(X: np.ndarray, w0: np.ndarray) -> float:
    """Prior precision under which the prior's own logit variance on a typical pair equals
    the starting head's: ``mean |x|^2 / alpha = mean (w0 . x)^2``.

    Used before there are labels to choose alpha from, and as the centre of the search."""
    X = np.asarray(X)
    if X.shape[0] == 0:
        return 1.0
    xx = float(np.mean(np.einsum("ij,ij->i", X, X, dtype=np.float64)))
    base = float(np.mean(np.square(X @ np.asarray(w0, X.dtype), dtype=np.float64)))
    if not xx > 0:
        return 1.0
    return xx / base if base > 1e-12 * xx else xx


@dataclass
class HeadFit:
    """A fitted Bayesian head: MAP ``w``, prior strength ``alpha`` and the Laplace posterior.

    ``basis`` (d, r) and ``lam`` (r,) are the non-zero eigenpairs of ``G = X^T R X`` at the
    MAP; ``Sigma = I / alpha + basis diag(1 / (lam + alpha) - 1 / alpha) basis^T``.
    """

    w: np.ndarray
    w0: np.ndarray
    alpha: float
    evidence: float
    loss: float
    basis: np.ndarray
    lam: np.ndarray
    method: str
    iterations: int
    converged: bool
    alpha_at_bound: bool = False

    @property
    def d(self) -> int:
        return int(self.w.shape[0])

    @property
    def effective_params(self) -> float:
        """gamma = sum lam / (lam + alpha): how many directions the data determines (MacKay)."""
        return float(np.sum(self.lam / (self.lam + self.alpha)))

    def shrink(self) -> np.ndarray:
        """``1 / (lam + alpha) - 1 / alpha`` (<= 0): the data's reduction of the prior variance."""
        return 1.0 / (self.lam + self.alpha) - 1.0 / self.alpha

    def cov_matvec(self, v: np.ndarray) -> np.ndarray:
        """``Sigma v`` for v of shape (d,) or (d, k)."""
        v = np.asarray(v, dtype=np.float64)
        qv = self.basis.T @ v
        s = self.shrink()
        return v / self.alpha + self.basis @ (qv * (s if v.ndim == 1 else s[:, None]))

    def quad(self, x: np.ndarray) -> np.ndarray:
        """``x_k^T Sigma x_k`` for every row of x (k, d): the posterior variance of w . x_k."""
        x = np.atleast_2d(np.asarray(x))
        qx = x @ self.basis.astype(x.dtype, copy=False)
        xx = np.einsum("ij,ij->i", x, x, dtype=np.float64)
        return np.maximum(xx / self.alpha + np.square(qx, dtype=np.float64) @ self.shrink(), 0.0)

    def covariance(self) -> np.ndarray:
        """The dense d x d posterior covariance (d^2 r flops; for tests and small d)."""
        b = self.basis
        return np.eye(self.d) / self.alpha + (b * self.shrink()) @ b.T

    def logdet_h(self) -> float:
        """log |H| = sum log(lam + alpha) + (d - r) log alpha."""
        return float(np.sum(np.log(self.lam + self.alpha)) + (self.d - self.lam.size) * math.log(self.alpha))


def _eigen_primal(X: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs of G = X^T diag(r) X from the d x d matrix (m d^2 + d^3)."""
    xs = X * np.sqrt(r).astype(X.dtype)[:, None]
    g = (xs.T @ xs).astype(np.float64)
    lam, q = np.linalg.eigh(g)
    keep = lam > EIG_RTOL * max(float(lam[-1]), 1e-300)
    return q[:, keep], lam[keep]


def _eigen_dual(X: np.ndarray, r: np.ndarray, gram: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Non-zero eigenpairs of G = X^T diag(r) X from the m x m matrix D X X^T D (m^2 d + m^3)."""
    if gram is None:
        gram = (X @ X.T).astype(np.float64)
    dr = np.sqrt(r)
    kw = gram * dr[:, None] * dr[None, :]
    mu, u = np.linalg.eigh(kw)
    keep = mu > EIG_RTOL * max(float(mu[-1]), 1e-300)
    mu, u = mu[keep], u[:, keep]
    coef = (u * dr[:, None]) / np.sqrt(mu)[None, :]  # (m, r): Q = X^T coef
    q = (X.T @ coef.astype(X.dtype)).astype(np.float64)
    return q, mu


def _quad_evidence(log_alpha: np.ndarray, lam: np.ndarray, rq: np.ndarray, gq: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Evidence (up to the constant -loss(w)) of the quadratic model, for each ln alpha.

    -[q . (theta - r) + 1/2 sum lam (theta - r)^2] - alpha/2 |theta|^2
        + 1/2 sum log(alpha / (lam + alpha)),   theta = t / (lam + alpha).
    """
    a = np.exp(np.asarray(log_alpha, dtype=np.float64))[None, :]
    lam_ = lam[:, None]
    theta = t[:, None] / (lam_ + a)
    dt = theta - rq[:, None]
    data = gq @ dt + 0.5 * np.sum(lam_ * dt * dt, axis=0)
    prior = 0.5 * a[0] * np.sum(theta * theta, axis=0)
    occam = 0.5 * np.sum(np.log(a / (lam_ + a)), axis=0)
    return -data - prior + occam


def _log_hyperprior(log_alpha, hyper) -> np.ndarray:
    """Log density (up to a constant) of the normal hyperprior on ln alpha; 0 when flat."""
    if hyper is None:
        return np.zeros_like(np.asarray(log_alpha, dtype=np.float64))
    mu, sd = hyper
    z = (np.asarray(log_alpha, dtype=np.float64) - mu) / sd
    return -0.5 * z * z


def _local_log_alpha(start: float, lo: float, hi: float, lam, rq, gq, t, hyper=None) -> float:
    """The local maximum of the quadratic-model evidence over ln alpha reached by climbing
    from ``start`` (steps of 0.5 within [lo, hi]), refined by golden-section search.

    Local, not global: the quadratic model is only accurate near the current head, so a
    far-away mode (typically alpha -> infinity, "the starting head") is compared separately,
    with its exact evidence, at the end of ``fit_head``. ``hyper`` = (mean, sd) of the
    normal hyperprior on ln alpha (its log density is added), or None (flat)."""

    def ev(xs: np.ndarray) -> np.ndarray:
        return _quad_evidence(xs, lam, rq, gq, t) + _log_hyperprior(xs, hyper)

    x = min(max(start, lo), hi)
    fx = ev(np.array([x]))[0]
    for direction in (0.5, -0.5):
        moved = False
        while lo <= x + direction <= hi:
            fn = ev(np.array([x + direction]))[0]
            if fn <= fx:
                break
            x, fx, moved = x + direction, fn, True
        if moved:
            break
    a, b = max(x - 0.5, lo), min(x + 0.5, hi)
    g = (math.sqrt(5.0) - 1.0) / 2.0
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = ev(np.array([c, d]))
    while b - a > 1e-4:
        if fc > fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = ev(np.array([c]))[0]
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = ev(np.array([d]))[0]
    best = 0.5 * (a + b)
    return x if fx > ev(np.array([best]))[0] else best


def fit_head(
    X: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray | None = None,
    w0: np.ndarray | None = None,
    *,
    alpha: float | None = None,
    alpha_init: float | None = None,
    w_init: np.ndarray | None = None,
    method: str = "auto",
    gram: np.ndarray | None = None,
    alpha_ref: float | None = None,
    tol: float = 1e-7,
    alpha_tol: float = 1e-3,
    max_iter: int = 50,
    lapse: float = 0.0,
    alpha_prior_sd: float | None = None,
) -> HeadFit:
    """MAP head, Laplace posterior and (unless ``alpha`` is given) the evidence-chosen alpha.

    Parameters
    ----------
    X: (m, d) embedding differences ``e_i - e_j`` (float32 is fine: the big products run in
        X's dtype, the small linear algebra in float64).
    y: (m,) labels, P(i beats j): 1, 0 or 0.5 (any value in [0, 1] is a soft target).
    weights: (m,) per-label weights (default 1).
    w0: (d,) the prior's centre, the starting head (default zeros).
    alpha: fix the prior precision instead of choosing it by the evidence.
    alpha_init, w_init: warm start (the previous fit's alpha and w).
    method: "primal" (d x d eigenproblem), "dual" (m x m), or "auto" (dual when m < d).
    gram: optional precomputed ``X X^T`` (m, m) for the dual.
    alpha_ref: centre of the alpha search (default ``default_alpha(X, w0)``).
    lapse: lapse rate of the likelihood (``DEFAULT_LAPSE`` for the live head; 0 = plain
        logistic, the default here so the training engine's quick head is unchanged).
    alpha_prior_sd: SD (nats) of the normal hyperprior on ln alpha around ln alpha_ref
        (``ALPHA_PRIOR_SD`` for the live head); None = flat (the evidence alone).
    tol, alpha_tol: stop when the Newton decrement is below ``tol`` (relative to the
        objective) and ln(alpha) moved less than ``alpha_tol`` in the last iteration.

    With no pairs the result is the prior: ``w = w0`` and ``alpha`` = alpha / alpha_init /
    alpha_ref (nothing to choose it from).
    """
    X = np.asarray(X)
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    if X.ndim != 2:
        raise ValueError("X must be a 2-d array (pairs, dim)")
    m, d = X.shape
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    c = np.ones(m) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if y.shape != (m,) or c.shape != (m,):
        raise ValueError(f"y and weights must have {m} entries")
    if np.any((y < 0) | (y > 1)) or np.any(c < 0) or not (np.all(np.isfinite(y)) and np.all(np.isfinite(c))):
        raise ValueError("labels must lie in [0, 1] and weights be finite and >= 0")
    w0 = np.zeros(d) if w0 is None else np.asarray(w0, dtype=np.float64).reshape(-1)
    if w0.shape != (d,):
        raise ValueError(f"w0 must have {d} entries")
    if method == "auto":
        method = "dual" if m < d else "primal"
    if method not in ("primal", "dual"):
        raise ValueError(f"method must be auto, primal or dual, not {method!r}")
    ref = float(alpha_ref) if alpha_ref is not None else default_alpha(X, w0)
    if not 0.0 <= lapse < 1.0:
        raise ValueError("lapse must lie in [0, 1)")
    hyper = None if alpha_prior_sd is None else (math.log(ref), float(alpha_prior_sd))
    fixed = alpha is not None
    if alpha is not None:
        cur_alpha = float(alpha)
    else:
        cur_alpha = float(alpha_init) if alpha_init is not None else ref
    if not cur_alpha > 0:
        raise ValueError("alpha must be > 0")
    if m == 0 or not np.any(c > 0):
        return HeadFit(w0.copy(), w0.copy(), cur_alpha, 0.0, 0.0, np.zeros((d, 0)), np.zeros(0), method, 0, True)

    lo, hi = math.log(ref) + LOG_ALPHA_SPAN[0], math.log(ref) + LOG_ALPHA_SPAN[1]
    if not fixed and math.log(cur_alpha) >= hi - 1.0:
        # warm start from the starting-head mode: look for the data's own mode from scratch
        # (the base mode is compared below anyway)
        cur_alpha, w_init = ref, None
    w = w0.copy() if w_init is None else np.asarray(w_init, dtype=np.float64).copy()
    bounds = None if fixed else (lo, hi, hyper)
    fit = _newton(X, y, c, w0, w, cur_alpha, bounds, method, gram, tol, alpha_tol, max_iter, lapse)
    if not fixed:
        # The other mode: alpha -> infinity keeps the starting head, evidence -loss(w0)
        # exactly (the Occam term vanishes). Take it when the data cannot tell the clicks
        # from what the starting head predicts.
        # (with a hyperprior both sides carry its log density, which rules that mode out
        # unless the data is very sure)
        base_ev = -pair_loss((X @ w0.astype(X.dtype)).astype(np.float64), y, c, lapse)
        base_ev += float(_log_hyperprior(hi, hyper))
        if base_ev > fit.evidence + float(_log_hyperprior(math.log(fit.alpha), hyper)):
            fit = _newton(X, y, c, w0, w0.copy(), math.exp(hi), None, method, gram, tol, alpha_tol, max_iter, lapse)
            fit.alpha_at_bound = True
        else:
            fit.alpha_at_bound = math.log(fit.alpha) >= hi - 0.5 or math.log(fit.alpha) <= lo + 0.5
    return fit


def _newton(X, y, c, w0, w, alpha, bounds, method, gram, tol, alpha_tol, max_iter, lapse=0.0) -> HeadFit:
    """Newton/IRLS from w; with ``bounds`` (ln alpha range) alpha follows the local maximum
    of the evidence (frozen after ALPHA_FREEZE iterations), else it stays fixed."""
    f = (X @ w.astype(X.dtype)).astype(np.float64)
    converged = False
    it = 0
    q, lam = np.zeros((len(w), 0)), np.zeros(0)
    cur_alpha = alpha
    for it in range(1, max_iter + 1):
        gf, r = link_terms(f, y, c, lapse)
        r = np.maximum(r, 1e-12 * np.maximum(c, 1e-300))
        gl = (X.T @ gf.astype(X.dtype)).astype(np.float64)
        q, lam = _eigen_primal(X, r) if method == "primal" else _eigen_dual(X, r, gram)
        delta = w - w0
        rq, gq = q.T @ delta, q.T @ gl
        t = lam * rq - gq
        old_alpha = cur_alpha
        if bounds is not None and it <= ALPHA_FREEZE:
            cur_alpha = math.exp(_local_log_alpha(math.log(cur_alpha), bounds[0], bounds[1], lam, rq, gq, t, bounds[2]))
        theta = t / (lam + cur_alpha)
        step = w0 + q @ theta - w
        xs = (X @ step.astype(X.dtype)).astype(np.float64)

        def objective(fv, wv, alpha_=cur_alpha):
            dv = wv - w0
            return pair_loss(fv, y, c, lapse) + 0.5 * alpha_ * float(dv @ dv)

        l0 = objective(f, w)
        grad_dot = float((gl + cur_alpha * delta) @ step)  # < 0 for a descent direction
        s = 1.0
        for _ in range(40):
            l1 = objective(f + s * xs, w + s * step)
            if l1 <= l0 + 1e-4 * s * grad_dot or l1 <= l0:
                break
            s *= 0.5
        w = w + s * step
        f = f + s * xs
        decrement = -grad_dot * s
        if decrement <= tol * (1.0 + abs(l0)) and abs(math.log(cur_alpha / old_alpha)) < alpha_tol:
            converged = True
            break
    loss = pair_loss(f, y, c, lapse)
    dv = w - w0
    evidence = -(loss + 0.5 * cur_alpha * float(dv @ dv)) + 0.5 * float(np.sum(np.log(cur_alpha / (lam + cur_alpha))))
    return HeadFit(w, w0.copy(), cur_alpha, evidence, loss, q, lam, method, it, converged)
