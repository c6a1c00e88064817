"""The metric suite on test pairs, the pair loss, and embeddings/scores of the items a run needs."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..corruptions import STRENGTHS, make_validation_pair
from ..errors import Cancelled
from ..images import ImageError, load_rgb, resize_for_model
from ..metrics import (
    AGREEMENT_KEY,
    agreement,
    distance_weights,
    kendall_tau,
    pair_distances,
    pair_metrics,
    robustness_text,
    sigmoid,
    spearman,
)
from ..model import JoyQuality, model_id
from ..pixels import normalize, pil_to_uint8
from ..scoring import embed_paths, prepare_for_inference
from .config import (
    ROBUSTNESS_MAX_IMAGES,
    ProgressFn,
    TrainingError,
    TrainProgress,
    check_cancel,
)
from .data import PairData


@dataclass
class EvalSet:
    a: np.ndarray
    b: np.ndarray
    y: np.ndarray
    items: np.ndarray  # item indices whose scores the metrics need
    weights: np.ndarray | None = None
    ranking: list[int] | None = None
    robustness: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # uint8 clean, corrupt


#: Robustness pairs per task the strengths aim for: a test set of N images gets
#: ceil(ROBUSTNESS_TARGET_PAIRS / N) strengths (at most all of corruptions.STRENGTHS), so a
#: small test set still gives enough pairs to tell while a large one costs no more than before.
ROBUSTNESS_TARGET_PAIRS = 90


def robustness_strengths(n_images: int, kind: str) -> int:
    """How many strengths of ``kind`` (mildest first) a test set of ``n_images`` uses."""
    return max(1, min(len(STRENGTHS[kind]), math.ceil(ROBUSTNESS_TARGET_PAIRS / max(1, n_images))))


def robustness_pixels(
    paths: list[Path],
    keys: list[str],
    size: int,
    limit: int = ROBUSTNESS_MAX_IMAGES,
    cancel=None,
    strengths: int | None = None,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """uint8 (clean, corrupt) batches for the JPEG and low-res tasks: every test image (up to
    ``limit``) at :func:`robustness_strengths` strengths each (or the first ``strengths``);
    deterministic per image."""
    items = list(zip(paths, keys))[:limit]
    out: dict[str, tuple[list, list]] = {"jpeg": ([], []), "lowres": ([], [])}
    for path, key in items:
        if cancel and cancel():
            raise Cancelled()
        try:
            img = load_rgb(path)
        except ImageError:
            continue
        for kind, (clean_list, bad_list) in out.items():
            count = strengths if strengths is not None else robustness_strengths(len(items), kind)
            for strength in range(min(count, len(STRENGTHS[kind]))):
                pair = make_validation_pair(img, kind, seed=key, strength=strength)
                if pair is None:  # as the reference: an image JPEG cannot crush is left out of that task
                    continue
                clean, bad = pair
                clean_list.append(pil_to_uint8(resize_for_model(clean, size)))
                bad_list.append(pil_to_uint8(resize_for_model(bad, size)))
    return {k: (torch.stack(c), torch.stack(d)) for k, (c, d) in out.items() if c}


#: The robustness tasks as a user reads them.
ROBUSTNESS_NAMES = {"jpeg": "JPEG robustness", "lowres": "low-res robustness"}


def robustness_metrics(task: str, clean: np.ndarray, bad: np.ndarray) -> dict[str, float]:
    """``<task>_accuracy`` (clean scored above its corrupted copy; level counts half, via
    :func:`joyq_studio.metrics.agreement`) with ``_n``, ``_low`` and ``_high`` (Wilson 95%)."""
    a = agreement(np.asarray(clean, dtype=np.float64) - np.asarray(bad, dtype=np.float64), np.ones(len(clean)))
    return {f"{task}_accuracy": a.value, f"{task}_n": a.count, f"{task}_low": a.low, f"{task}_high": a.high}


def robustness_sentences(before: Mapping[str, object], after: Mapping[str, object]) -> list[str]:
    """One line per robustness task: before and after with their pair count and 95% interval,
    or "too few to tell" below MIN_PAIRS_TO_TELL pairs (as every other figure)."""
    return [
        f"{name} (clean above its corrupted copy, 95% interval): before {robustness_text(before, task)}, "
        f"after {robustness_text(after, task)}"
        for task, name in ROBUSTNESS_NAMES.items()
        if f"{task}_accuracy" in before or f"{task}_accuracy" in after
    ]


def metrics_from_scores(
    item_scores: np.ndarray, es: EvalSet, rob_scores: dict[str, tuple[np.ndarray, np.ndarray]]
) -> dict:
    """item_scores is indexed by item; rob_scores maps task -> (clean scores, corrupt scores).
    ``_pair_p`` (private) holds P(first wins) per test pair, for :func:`joyq_studio.metrics.paired_comparison`."""
    p = sigmoid(item_scores[es.a] - item_scores[es.b])
    m: dict[str, float] = pair_metrics(np.atleast_1d(p), es.y, es.weights) if len(es.a) else {"n": 0}
    m["_pair_p"] = np.atleast_1d(p) if len(es.a) else np.zeros(0)  # type: ignore[assignment]  # paired test
    # THE held-out agreement (metrics.agreement), under its key; "accuracy" is the same figure
    m[AGREEMENT_KEY] = agreement(item_scores[es.a] - item_scores[es.b], es.y).value if len(es.a) else float("nan")
    for task, (clean, bad) in rob_scores.items():
        m.update(robustness_metrics(task, clean, bad))
    if es.ranking and len(es.ranking) > 2:
        truth = -np.arange(len(es.ranking), dtype=np.float64)  # best first
        s = item_scores[es.ranking]
        m["spearman"], m["kendall_tau"] = spearman(s, truth), kendall_tau(s, truth)
    return m


def importance_weights(emb: np.ndarray, a: np.ndarray, b: np.ndarray, seed: int) -> np.ndarray | None:
    """Weights that give the test pairs the embedding-distance distribution of random pairs.

    Chosen pairs skew close (near neighbours are informative), which makes them harder
    than average; the weighted metrics estimate performance on pairs in general."""
    if len(a) < 2 or emb.shape[0] < 3:
        return None
    rng = np.random.default_rng(seed)
    n = emb.shape[0]
    ri, rj = rng.integers(0, n, 4000), rng.integers(0, n, 4000)
    keep = ri != rj
    return distance_weights(pair_distances(emb, a, b), pair_distances(emb, ri[keep], rj[keep]))


# ---------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------


def pair_loss(d: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """BCE of sigmoid(d) against soft target y (1, 0, 0.5): y*softplus(-d) + (1-y)*softplus(d)."""
    return (y * F.softplus(-d) + (1 - y) * F.softplus(d)).mean()


def _embed_uint8(model: JoyQuality, x: torch.Tensor, device: torch.device) -> np.ndarray:
    m, forward, dtype = prepare_for_inference(model, device)
    out = []
    with torch.inference_mode():
        for k in range(0, len(x), 32):
            out.append(forward(normalize(x[k : k + 32].to(device), dtype)).float().cpu().numpy())
    model.float().cpu()
    return np.concatenate(out) if out else np.zeros((0, model.embed_dim), dtype=np.float32)


def item_embeddings(
    model: JoyQuality, data: PairData, device, project, progress, cancel, pool: Sequence = ()
) -> np.ndarray:
    """Embeddings of every item: from the caches of the project and the ``pool`` projects
    where present, the rest computed (and cached, for a project) with progress."""
    mid = model_id(model)
    emb = np.zeros((len(data.keys), model.embed_dim), dtype=np.float32)
    todo = list(range(len(data.keys)))
    pos = {h: i for i, h in enumerate(data.keys)}
    for cache in [p for p in (project, *pool) if p is not None]:
        hashes, cached = cache.embeddings(mid.tower, [data.keys[i] for i in todo])
        for h, v in zip(hashes, cached):
            emb[pos[h]] = v
        have = set(hashes)
        todo = [i for i in todo if data.keys[i] not in have]
    if todo:

        def on_progress(done, total, rate):
            if progress:
                eta = (total - done) / rate if rate else None
                progress(TrainProgress("embedding", done, total, eta_s=eta, message="embedding images"))

        for batch in embed_paths(
            model,
            [data.paths[i] for i in todo],
            device,
            batch_size=32,
            workers=min(2, os.cpu_count() or 1),
            progress=on_progress,
            cancel=cancel,
        ):
            rows = []
            for k, err in enumerate(batch.errors):
                i = todo[batch.start + k]
                if err:
                    raise TrainingError(err)
                emb[i] = batch.embeddings[k]
                rows.append((data.keys[i], batch.embeddings[k], batch.scores[k]))
            if project is not None:
                project.save_results(mid.tower, mid.key, rows)
        check_cancel(cancel)
        model.float().cpu()
    return emb


def evaluate_pairs(
    data: PairData,
    model: JoyQuality,
    device: torch.device,
    split: str = "all",
    progress: ProgressFn | None = None,
    cancel=None,
) -> dict:
    """The full metric suite of any model on a pair set (`joyq eval`)."""
    mask = np.ones(len(data.a), dtype=bool) if split == "all" else np.asarray(data.split, dtype=object) == split
    if not mask.any():
        raise TrainingError(f"{data.source}: no pairs in the {split!r} split.")
    a, b, y = data.subset(mask)
    items = np.unique(np.concatenate([a, b]))
    es = EvalSet(a, b, y, items, ranking=data.ranking)
    emb = item_embeddings(model, data, device, None, progress, cancel)
    es.weights = importance_weights(emb, a, b, seed=0)
    es.robustness = robustness_pixels(
        [data.paths[i] for i in items], [data.keys[i] for i in items], model.image_size, cancel=cancel
    )
    with torch.no_grad():
        head = model.head.float().cpu()
        item_scores = head(torch.from_numpy(emb)).squeeze(-1).double().numpy()
        rob = {
            k: (
                head(torch.from_numpy(_embed_uint8(model, c, device))).squeeze(-1).numpy(),
                head(torch.from_numpy(_embed_uint8(model, d, device))).squeeze(-1).numpy(),
            )
            for k, (c, d) in es.robustness.items()
        }
    return metrics_from_scores(item_scores, es, rob)
