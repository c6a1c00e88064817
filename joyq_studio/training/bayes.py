"""Quick training: the Bayesian personal head on frozen embeddings.

The head's prior is centred on the starting head with a strength chosen by the Laplace
evidence (:func:`joyq_studio.taste.fit_head`): a few clicks move it a little, many
consistent clicks move it far, and nothing needs a learning rate, a schedule or early
stopping. Every training and validation pair is fitted (validation exists to stop SGD;
the evidence replaces it); the test pairs only measure.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch

from ..taste import fit_head
from .config import ProgressFn, TrainConfig, TrainProgress, check_cancel
from .data import PairData
from .evaluation import EvalSet, metrics_from_scores


def train_bayes_head(start_head: torch.nn.Linear, emb: np.ndarray, data: PairData, train_mask, val_mask,
                     es: EvalSet, rob_emb: dict[str, tuple[np.ndarray, np.ndarray]], cfg: TrainConfig,
                     progress: ProgressFn | None = None, cancel=None):
    """Same contract as :func:`train_head_sgd`: (head, history, before, after, best step),
    where step 1 is the fitted posterior mean and step 0 the starting head."""
    head = copy.deepcopy(start_head).float().cpu()
    w0 = head.weight.detach().double().numpy().reshape(-1)
    E = np.asarray(emb, dtype=np.float64)

    def evaluate(w: np.ndarray) -> dict:
        s = E @ w
        rob = {k: (np.asarray(c, dtype=np.float64) @ w, np.asarray(d, dtype=np.float64) @ w)
               for k, (c, d) in rob_emb.items()}
        return metrics_from_scores(s, es, rob)

    t0 = time.perf_counter()
    before = evaluate(w0)
    if progress:
        progress(TrainProgress("training", 0, 1, 0, float("nan"), 0.0, before, None))
    fit_mask = np.asarray(train_mask) | np.asarray(val_mask)
    a, b, y = data.subset(fit_mask)
    fit = fit_head(E[a] - E[b], y, w0=w0)
    check_cancel(cancel)
    after = evaluate(fit.w)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(fit.w).float().reshape(head.weight.shape))
    history = [{"step": 0, "samples": 0, "loss": float("nan"), "lr": 0.0},
               {"step": 1, "samples": len(a), "loss": fit.loss / max(len(a), 1), "lr": 0.0,
                "alpha": fit.alpha, "seconds": time.perf_counter() - t0}]
    if progress:
        progress(TrainProgress("training", 1, 1, len(a), fit.loss / max(len(a), 1), 0.0, after, 0.0))
    return head, history, before, after, 1
