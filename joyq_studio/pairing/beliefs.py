"""Beliefs about images' quality in logit units, and the maths the selector uses on them.

P(i beats j) = sigmoid(mu_i - mu_j) once the beliefs are sure; the functions here integrate
over their uncertainty (MacKay's probit approximation), measure information gain, fit the
temperature that maps a model's scores onto the user's labels, and measure agreement.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..taste.ledger import self_agreement  # noqa: F401  (re-exported: the one formula lives with the ledger)

BETA = 1.0 / math.sqrt(2.0)
"""openskill performance noise; ``2 beta^2 = 1`` makes its model the unit-logit BT model."""

PRIOR_TOTAL_SD = 1.5
"""Assumed spread (SD, logits) of true quality within one user's folder. Only used to split
the prior into "explained by the model" (mu) and "remaining" (sigma)."""

Comparison = Sequence  # (i, j, outcome) or (i, j, outcome, kind)

TRUST_MIN_SD = 0.15
"""Trust gate: the model orders the images only while the lower end of its fitted slope,
``(a - trust_z sd(a)) * SD(scores)``, exceeds this many logits (about a Spearman of 0.15 with
the truth when the truth's SD is 1.5). Ordering the unseen images by a near-useless model
lowers the Spearman of the ranking (their ranks spread out at random instead of tying)."""

TRUST_Z_NO_LABELS = 1.5
"""With no labels at all the model is trusted while a0 - 1.5 (a0 / 2) > 0 (always, by default)."""

TRUST_FLAT_SD = 10.0
"""SD (relative to 1/prior_temperature) of the near-flat slope prior used by the trust gate."""

PRIOR_SLOPE_REL_SD = 0.5
"""Prior SD of the slope 1/T relative to its centre 1/prior_temperature."""


# ----------------------------------------------------------------------------- maths


def _sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


def win_probability(mu_i, sigma_i, mu_j, sigma_j) -> np.ndarray:
    """Logistic predictive probability that i beats j, integrating over both Gaussians.

        P(i > j) = E[sigmoid(x_i - x_j)] ~= sigmoid((mu_i - mu_j) / sqrt(1 + pi V / 8)),
        V = sigma_i^2 + sigma_j^2                    (MacKay's probit approximation).

    openskill's ``predict_win`` uses a normal CDF instead, which is the wrong link here.
    """
    v = np.square(sigma_i) + np.square(sigma_j)
    return _sigmoid((np.asarray(mu_i) - np.asarray(mu_j)) / np.sqrt(1.0 + (math.pi / 8.0) * v))


def expected_info_gain(mu_i, sigma_i, mu_j, sigma_j) -> np.ndarray:
    """Expected information (nats, x2) one comparison gives about d = x_i - x_j.

    With d ~ N(mu_i - mu_j, V) and a logistic likelihood, a Laplace step shrinks the
    variance of d from V to V / (1 + V p (1 - p)), so the entropy drops by
    ``0.5 log(1 + V p (1 - p))``; we return ``log(1 + V p (1 - p))``. Large when both images
    are uncertain (V) and the outcome is a coin flip (p ~ 1/2).
    """
    v = np.square(sigma_i) + np.square(sigma_j)
    p = win_probability(mu_i, sigma_i, mu_j, sigma_j)
    return np.log1p(v * p * (1.0 - p))


def fit_slope(
    score_diffs: np.ndarray,
    outcomes: np.ndarray,
    prior_slope: float,
    prior_sd: float,
) -> tuple[float, float]:
    """MAP slope ``a`` (and its Laplace variance) of P(i > j) = sigmoid(a (s_i - s_j)).

    Maximises  sum_k [o_k log sigmoid(a d_k) + (1 - o_k) log sigmoid(-a d_k)]
               - (a - a0)^2 / (2 tau^2)
    by Newton's method (the objective is concave in a). Ties (o = 0.5) count half each way.
    """
    d = np.asarray(score_diffs, dtype=np.float64)
    o = np.asarray(outcomes, dtype=np.float64)
    prec0 = 1.0 / (prior_sd * prior_sd)

    def objective(a: float) -> float:  # log posterior; log sigmoid(x) = -log(1 + e^-x)
        x = a * d
        return (
            float(-np.dot(o, np.logaddexp(0.0, -x)) - np.dot(1.0 - o, np.logaddexp(0.0, x)))
            - 0.5 * prec0 * (a - prior_slope) ** 2
        )

    a = float(prior_slope)
    fa = objective(a)
    for _ in range(100):
        p = _sigmoid(a * d)
        g = float(np.dot(d, o - p)) - (a - prior_slope) * prec0
        h = -float(np.dot(d * d, p * (1.0 - p))) - prec0
        step = -g / h  # Newton step, halved until the objective does not drop
        for _ in range(60):
            fn = objective(a + step)
            if fn >= fa - 1e-12:
                break
            step *= 0.5
        a, fa = a + step, fn
        if abs(step) < 1e-10 * max(1.0, abs(a)):
            break
    p = _sigmoid(a * d)
    h = -float(np.dot(d * d, p * (1.0 - p))) - prec0
    return a, -1.0 / h


def fit_temperature(
    score_diffs: Sequence[float] | np.ndarray,
    outcomes: Sequence[float] | np.ndarray,
    prior_temperature: float = 1.0,
    prior_rel_sd: float = PRIOR_SLOPE_REL_SD,
) -> float:
    """Temperature T such that P(i beats j) = sigmoid((s_i - s_j) / T) fits the labels.

    A one-parameter logistic regression on score differences, MAP with a Gaussian prior on
    the slope 1/T centred on ``1/prior_temperature`` with SD ``prior_rel_sd / prior_temperature``
    (so a handful of labels cannot give T -> 0). Returns ``inf`` when the fitted slope is
    <= 0 (the model is no better than a coin on these labels).
    """
    a0 = 1.0 / prior_temperature
    a, _ = fit_slope(np.asarray(score_diffs, float), np.asarray(outcomes, float), a0, prior_rel_sd * a0)
    return 1.0 / a if a > 0 else math.inf


def prior_from_scores(
    scores: Sequence[float] | np.ndarray,
    slope: float,
    slope_var: float = 0.0,
    total_sd: float = PRIOR_TOTAL_SD,
    min_sigma: float = 0.2,
) -> tuple[np.ndarray, np.ndarray]:
    """Prior beliefs (mu, sigma) from model scores and the fitted slope a = 1/T.

    Model: true logit t_i = b s_i + e_i, e_i ~ N(0, r^2) independent of the score. Labels
    identify only the *effective* slope  a = b / sqrt(1 + pi r^2 / 4)  (the noise of two
    items blurs the sigmoid). Assuming Var(t) = total_sd^2 = b^2 Var(s) + r^2 gives

        r^2 = (total_sd^2 - a^2 Var(s)) / (1 + pi a^2 Var(s) / 4),
        b   = a sqrt(1 + pi r^2 / 4),
        mu_i = b (s_i - mean(s)),
        sigma^2 = r^2 + Var(b) Var(s),   Var(b) = slope_var (1 + pi r^2 / 4),

    the same sigma for every image. The slope's uncertainty is shared by all images (it
    stretches the ranking, it does not reorder it), so it enters as its average: given per
    image as Var(b) (s_i - mean(s))^2 it made the extreme images look most uncertain and
    drew the info pairs there. A useless model (a ~ 0) gives mu ~ 0, sigma ~ total_sd; a
    sharp one gives small sigma. A negative slope is clipped to 0: we never invert the model.
    """
    s = np.asarray(scores, dtype=np.float64)
    sc = s - s.mean() if s.size else s
    a = max(float(slope), 0.0)
    explained = a * a * float(np.mean(sc * sc)) if s.size else 0.0
    r2 = (total_sd * total_sd - explained) / (1.0 + (math.pi / 4.0) * explained)
    r2 = max(r2, min_sigma * min_sigma)
    k = 1.0 + (math.pi / 4.0) * r2
    b = a * math.sqrt(k)
    mu = b * sc
    var_s = float(np.mean(sc * sc)) if s.size else 0.0
    sigma = np.full(s.shape, math.sqrt(r2 + max(slope_var, 0.0) * k * var_s))
    return mu, sigma


def model_agreement(
    score_diffs: Sequence[float] | np.ndarray, outcomes: Sequence[float] | np.ndarray, last_n: int | None = None
) -> float:
    """Share of comparisons (the last ``last_n``) where the model agrees with the user.

    The model's vote is 1 if s_i > s_j, 0 if s_i < s_j, 0.5 on equal scores; agreement per
    comparison is 1 - |vote - outcome|. Returns nan when there are no comparisons.
    """
    d = np.asarray(score_diffs, dtype=np.float64)
    o = np.asarray(outcomes, dtype=np.float64)
    if last_n is not None:
        d, o = d[-last_n:], o[-last_n:]
    if d.size == 0:
        return math.nan
    vote = 0.5 * (np.sign(d) + 1.0)
    return float(np.mean(1.0 - np.abs(vote - o)))
