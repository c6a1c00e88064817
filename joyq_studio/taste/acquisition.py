"""How much one comparison would teach the head: the criteria the pair chooser maximises.

For a candidate pair with difference x, ``a = w_hat . x`` and ``v = x^T Sigma x`` are the
posterior mean and variance of its logit (``shared/notes/bayesian-head.md``).

``bald``  the mutual information between the answer and the head (Houlsby et al. 2011,
          "Bayesian active learning for classification and preference learning"). With the
          logistic link approximated by a probit, sigmoid(f) ~= Phi(f / 1.7), and the binary
          entropy of a probit approximated by a Gaussian, h(Phi(z)) ~= exp(-z^2 / (pi ln 2))
          (max error 0.0027 bits), both terms have closed forms:

              I = exp(-a'^2 / (2 C^2 (s^2 + 1))) - C / sqrt(s^2 + C^2) exp(-a'^2 / (2 (s^2 + C^2)))

          in bits, with a' = a / 1.7, s^2 = v / 1.7^2 and C^2 = pi ln 2 / 2. The first term
          is h(Phi(a / sqrt(1.7^2 + v))) (the note's form) in the same approximation as the
          second, so I = 0 exactly at v = 0 and I >= 0; with the exact entropy in the first
          term the difference of two approximations is off by up to 0.0027 bits, which is
          as large as the whole criterion late in a session.
``guro``  the GURO rule of Bergstrom et al. 2024 ("Active preference learning for ordering
          items in- and out-of-sample"): sample the pair that most reduces their bound on
          the expected ordering error, ``sigmoid'(a) sqrt(v)`` (aleatoric times epistemic
          uncertainty of the pair's order).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["CRITERIA", "PROBIT_SCALE", "bald", "guro", "criterion", "test_variance_reduction"]

PROBIT_SCALE = 1.7
"""sigmoid(f) ~= Phi(f / 1.7)."""

_C2 = math.pi * math.log(2.0) / 2.0


def bald(a: np.ndarray | float, v: np.ndarray | float) -> np.ndarray:
    """Expected information (bits) the answer gives about the head; see the module docstring."""
    a1 = np.asarray(a, dtype=np.float64) / PROBIT_SCALE
    s2 = np.maximum(np.asarray(v, dtype=np.float64), 0.0) / (PROBIT_SCALE * PROBIT_SCALE)
    a2 = a1 * a1
    first = np.exp(-a2 / (2.0 * _C2 * (s2 + 1.0)))
    second = math.sqrt(_C2) / np.sqrt(s2 + _C2) * np.exp(-a2 / (2.0 * (s2 + _C2)))
    return np.maximum(first - second, 0.0)


def guro(a: np.ndarray | float, v: np.ndarray | float) -> np.ndarray:
    """sigmoid'(a) sqrt(v) = p (1 - p) sqrt(v), p = sigmoid(a) (Bergstrom et al. 2024)."""
    p = 0.5 * (1.0 + np.tanh(0.5 * np.asarray(a, dtype=np.float64)))
    return p * (1.0 - p) * np.sqrt(np.maximum(np.asarray(v, dtype=np.float64), 0.0))


def test_variance_reduction(
    a: np.ndarray | float, v: np.ndarray | float, t: np.ndarray | float, lapse: float = 0.0
) -> np.ndarray:
    """Expected drop of the (weighted) posterior variance of test-pair logits after one answer.

    Observing x moves Sigma to ``Sigma - r u u^T / (1 + r v)`` (``u = Sigma x``), so a test
    pair x_t loses ``r (x_t . u)^2 / (1 + r v)`` of its logit variance; summed over test pairs
    with weights omega_t that is ``r u^T C u / (1 + r v)``, ``C = sum omega_t x_t x_t^T``.
    ``t`` is ``u^T C u``; r = p (1 - p) at the predictive p = sigmoid(a / sqrt(1 + pi v / 8)),
    or with a lapse rate the Fisher weight of one answer, ``s^2 / (q (1 - q))`` with
    ``s = (1 - lapse) p (1 - p)``, ``q = lapse / 2 + (1 - lapse) p`` (a near-certain pair then
    teaches almost nothing: its answer is as likely a lapse as news).
    """
    v = np.maximum(np.asarray(v, dtype=np.float64), 0.0)
    p = 0.5 * (1.0 + np.tanh(0.5 * np.asarray(a, dtype=np.float64) / np.sqrt(1.0 + math.pi * v / 8.0)))
    r = p * (1.0 - p)
    if lapse > 0.0:
        q = 0.5 * lapse + (1.0 - lapse) * p
        r = (1.0 - lapse) ** 2 * r * r / (q * (1.0 - q))
    return r * np.asarray(t, dtype=np.float64) / (1.0 + r * v)


CRITERIA = {"bald": bald, "guro": guro}


def criterion(name: str):
    """The criterion function called ``name`` ("bald" or "guro")."""
    try:
        return CRITERIA[name]
    except KeyError:
        raise ValueError(f"criterion must be one of {', '.join(CRITERIA)}, not {name!r}") from None
