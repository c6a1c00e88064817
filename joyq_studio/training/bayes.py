"""Quick training: the Bayesian personal head on frozen embeddings.

The head's prior is centred on the starting head with a strength chosen by the Laplace
evidence (:func:`joyq_studio.taste.fit_head`): a few clicks move it a little, many
consistent clicks move it far, and nothing needs a learning rate, a schedule or early
stopping. Every training and validation pair is fitted (validation exists to stop SGD;
the evidence replaces it); the test pairs only measure.
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch

from ..taste import HeadFit, fit_head
from .config import ProgressFn, TrainConfig, TrainProgress, check_cancel
from .data import PairData
from .evaluation import EvalSet, metrics_from_scores


def train_bayes_head(
    start_head: torch.nn.Linear,
    emb: np.ndarray,
    data: PairData,
    train_mask,
    val_mask,
    es: EvalSet,
    rob_emb: dict[str, tuple[np.ndarray, np.ndarray]],
    cfg: TrainConfig,
    progress: ProgressFn | None = None,
    cancel=None,
):
    """Same contract as :func:`train_head_sgd`: (head, history, before, after, best step),
    where step 1 is the fitted posterior mean and step 0 the starting head."""
    head = copy.deepcopy(start_head).float().cpu()
    w0 = head.weight.detach().double().numpy().reshape(-1)
    E = np.asarray(emb, dtype=np.float64)

    def evaluate(w: np.ndarray) -> dict:
        s = E @ w
        rob = {
            k: (np.asarray(c, dtype=np.float64) @ w, np.asarray(d, dtype=np.float64) @ w)
            for k, (c, d) in rob_emb.items()
        }
        return metrics_from_scores(s, es, rob)

    t0 = time.perf_counter()
    before = evaluate(w0)
    if progress:
        progress(TrainProgress("training", 0, 1, 0, float("nan"), 0.0, before, None))
    fit_mask = np.asarray(train_mask) | np.asarray(val_mask)
    a, b, y = data.subset(fit_mask)
    fit, base_scale = fit_head_scaled(E[a] - E[b], y, w0)
    check_cancel(cancel)
    after = evaluate(fit.w)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(fit.w).float().reshape(head.weight.shape))
    history = [
        {"step": 0, "samples": 0, "loss": float("nan"), "lr": 0.0},
        {
            "step": 1,
            "samples": len(a),
            "loss": fit.loss / max(len(a), 1),
            "lr": 0.0,
            "alpha": fit.alpha,
            "base_scale": base_scale,
            "seconds": time.perf_counter() - t0,
        },
    ]
    if progress:
        progress(TrainProgress("training", 1, 1, len(a), fit.loss / max(len(a), 1), 0.0, after, 0.0))
    return head, history, before, after, 1


def fit_head_scaled(
    X: np.ndarray,
    y: np.ndarray,
    w0: np.ndarray,
    weights: np.ndarray | None = None,
    log_span: float = math.log(30.0),
    steps: int = 12,
) -> tuple[HeadFit, float]:
    """The head whose prior is centred on ``c * w0``, with ``c`` (the base head's temperature)
    and the prior strength both chosen by the evidence.

    A good base head can still be over- or under-confident for this user (its logits were
    fitted to someone else's labels); an isotropic prior around ``w0`` itself could only fix
    that by moving every direction at once, which costs accuracy on few labels. Rescaling is
    one parameter, so the evidence prices it fairly. Golden-section search on log c.
    """
    cache: dict[float, HeadFit] = {}

    def fit(log_c: float) -> HeadFit:
        if log_c not in cache:
            cache[log_c] = fit_head(X, y, weights, w0=math.exp(log_c) * w0)
        return cache[log_c]

    if not np.any(w0):
        return fit(0.0), 1.0
    lo, hi = -log_span, log_span
    g = (math.sqrt(5.0) - 1.0) / 2.0
    x1, x2 = hi - g * (hi - lo), lo + g * (hi - lo)
    for _ in range(steps):
        if fit(x1).evidence >= fit(x2).evidence:
            hi, x2 = x2, x1
            x1 = hi - g * (hi - lo)
        else:
            lo, x1 = x1, x2
            x2 = lo + g * (hi - lo)
    best = max(cache, key=lambda k: cache[k].evidence)
    return cache[best], math.exp(best)
