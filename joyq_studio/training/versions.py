"""A training run end to end (splits, train, evaluate, save a version) and adopting a version."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import Cancelled
from ..fsio import describe_error
from ..images import content_hash
from ..metrics import MIN_PAIRS_TO_TELL, TOO_FEW, WORSE, held_out_summary, paired_comparison
from ..model import (
    JoyQuality,
    head_state,
    load_model,
    model_id,
    pick_device,
    read_version_record,
    save_model,
)
from ..scoring import score_project
from ..settings import DEFAULT_MODEL
from ..store import StoreError
from .bayes import train_bayes_head
from .config import (
    HEAD_MODES,
    MIN_PAIRS,
    ProgressFn,
    TrainConfig,
    TrainingError,
    TrainProgress,
    TrainResult,
    check_cancel,
    default_config,
)
from .data import (
    PairData,
    _pixel_cache_dir,
    pairs_from_project,
    pixel_cache,
    prepare_splits,
)
from .evaluation import (
    EvalSet,
    _embed_uint8,
    importance_weights,
    item_embeddings,
    robustness_pixels,
)
from .loop import train_full, train_head_sgd


def run_training(
    data: PairData,
    start_spec: str,
    cfg: TrainConfig,
    versions_dir: Path,
    progress: ProgressFn | None = None,
    cancel=None,
    project=None,
    pool: Sequence = (),
) -> TrainResult:
    """The whole pipeline behind `joyq train` and the GUI's Train button.

    Writes a new version folder under versions_dir (atomically: a temp folder renamed at
    the end) and returns it; never changes the active model."""
    decisive = int((data.y != 0.5).sum())
    if len(data.a) == 0 and project is not None:
        raise TrainingError(no_comparisons_message(project.folder))
    if len(data.a) < MIN_PAIRS or decisive < MIN_PAIRS // 2:
        raise TrainingError(
            f"{data.source}: only {len(data.a)} pairs ({decisive} with a winner); "
            f"at least {MIN_PAIRS} are needed to train."
        )
    cfg = default_config(int(len(data.a) * 0.8), cfg.mode, **{k: v for k, v in asdict(cfg).items() if k != "mode"})
    cfg.validate()
    device = pick_device(cfg.device)  # the tower runs here; a quick head trains on the CPU
    model = load_model(start_spec)
    train_mask, val_mask, test_mask = prepare_splits(data, cfg)
    ta, tb, ty = data.subset(test_mask)
    # a soft target (a star or LLM label of trust < 1, held out when the user has no held-out
    # clicks) is judged by its side: the metrics compare a model with an outcome
    ty = 0.5 + 0.5 * np.sign(np.asarray(ty, dtype=np.float64) - 0.5)
    test_items = np.unique(np.concatenate([ta, tb])) if len(ta) else np.zeros(0, dtype=np.int64)
    es = EvalSet(ta, tb, ty, test_items, ranking=data.ranking)
    if progress:
        progress(
            TrainProgress(
                "message",
                message=f"{int(train_mask.sum())} training, {int(val_mask.sum())} validation "
                f"and {int(test_mask.sum())} test pairs",
            )
        )
    rob_paths = [data.paths[i] for i in test_items]
    rob_keys = [data.keys[i] for i in test_items]
    es.robustness = robustness_pixels(rob_paths, rob_keys, model.image_size, cancel=cancel)

    if cfg.mode in HEAD_MODES:
        emb = item_embeddings(model, data, device, project, progress, cancel, pool)
        if len(ta):
            es.weights = importance_weights(emb, ta, tb, cfg.seed)
        rob_emb = {
            k: (_embed_uint8(model, c, device), _embed_uint8(model, d, device)) for k, (c, d) in es.robustness.items()
        }
        train_head = train_bayes_head if cfg.mode == "quick" else train_head_sgd
        head, history, before, after, best_step = train_head(
            model.head, emb, data, train_mask, val_mask, es, rob_emb, cfg, progress, cancel
        )
        model.head.load_state_dict(head.state_dict())
    else:
        cache_root = _pixel_cache_dir()
        # Project keys are content hashes already; dataset-file keys are paths.
        hashes = data.keys if project is not None else [content_hash(p) for p in data.paths]
        pixels = pixel_cache(
            data.paths,
            hashes,
            model.image_size,
            workers=min(4, os.cpu_count() or 1),
            progress=progress,
            cancel=cancel,
            cache_root=cache_root,
        )
        model, history, before, after, best_step = train_full(
            model, pixels, data, train_mask, val_mask, es, cfg, device, progress, cancel
        )
    check_cancel(cancel)
    if best_step == 0 and val_mask.any():
        data.warnings.append(
            "No training step beat the starting model on the validation pairs, so the new "
            "version keeps the starting weights; label more pairs before retraining."
        )
    new = model_id(model.cpu().float())
    record = {
        "mode": cfg.mode,
        "parent": start_spec,
        "tower_spec": _tower_spec(start_spec) if cfg.mode in HEAD_MODES else None,
        "model_key": new.key,
        "tower": new.tower,
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        "counts": {
            "train": int(train_mask.sum()),
            "validation": int(val_mask.sum()),
            "test": int(test_mask.sum()),
            "ties": int((data.y == 0.5).sum()),
            "images": len(data.keys),
        },
        "best_step": best_step,
        "metrics_before": _public(before, es.y),
        "metrics_after": _public(after, es.y),
        "change": _change(before, after, es.y),
        "source": data.source,
        "warnings": data.warnings,
        "created": time.time(),
    }
    version_id = time.strftime("v%Y%m%d-%H%M%S-") + new.head[:6]
    path = write_version(model, versions_dir, version_id, record, head_only=cfg.mode in HEAD_MODES)
    if project is not None:
        project.add_version(version_id, path, record)
    return TrainResult(version_id, path, record["metrics_before"], record["metrics_after"], record, history)


def _public(m: dict, y: np.ndarray | None = None) -> dict:
    """The metrics a version record keeps: the public ones, plus the held-out counts and 95%
    intervals of :func:`joyq_studio.metrics.held_out_summary` (``n_decisive``,
    ``accuracy_low``/``_high``, ``nll_low``/``_high``, ``ece_low``/``_high``, ``enough``,
    ``more_pairs_needed``) when the per-pair predictions are there."""
    out = {k: v for k, v in m.items() if not k.startswith("_")}
    p = m.get("_pair_p")
    if y is not None and p is not None and len(p) == len(y):
        out.update(held_out_summary(p, y))
    return out


def _change(before: dict, after: dict, y: np.ndarray) -> dict | None:
    """The paired before/after verdict on the same held-out pairs
    (:func:`joyq_studio.metrics.paired_comparison`), None without per-pair predictions."""
    p0, p1 = before.get("_pair_p"), after.get("_pair_p")
    if p0 is None or p1 is None or len(p0) != len(y) or len(p1) != len(y):
        return None
    return paired_comparison(p0, p1, y)


def adoption_warning(record: dict) -> str | None:
    """One sentence when a version is worse than the model it was trained from beyond noise,
    or when its held-out pairs are too few to tell (its record's paired ``change`` verdict),
    else None. The CLI prints it on `adopt`; the app asks for confirmation with it."""
    change = record.get("change")
    if not isinstance(change, dict):
        return None
    if change.get("verdict") == TOO_FEW:
        n = int(change.get("n_decisive") or 0)
        return (
            f"too few held-out pairs to tell whether this version is better than the model it was trained "
            f"from: {n} held-out pair{'' if n == 1 else 's'}, at least {MIN_PAIRS_TO_TELL} are needed."
        )
    if change.get("verdict") != WORSE:
        return None
    detail = str(change.get("sentence", "")).partition(": ")[2] or "worse beyond noise"
    return f"this version is worse than the model it was trained from, beyond noise: {detail}."


def no_comparisons_message(folder) -> str:
    """What `train` says for a folder without comparisons: where they come from."""
    folder = Path(folder)
    pairs = folder / "pairs.json"
    example = f"{folder} {pairs}" if pairs.is_file() else f"{folder} FILE.json"
    return (
        f"{folder} has no comparisons yet, so there is nothing to train on; add some by comparing images in "
        f"the app, or import a pairs file with `joyq import-pairs {example}`."
    )


def _tower_spec(spec: str) -> str:
    """A quick version's tower is its parent's tower: follow head-only versions down."""
    p = Path(spec)
    rec = p / "version.json"
    if p.is_dir() and rec.exists() and not (p / "model.safetensors").exists():
        return read_version_record(p)["tower_spec"]
    return str(p.resolve()) if p.exists() else spec


def write_version(model: JoyQuality, versions_dir: Path, version_id: str, record: dict, head_only: bool) -> Path:
    """Write weights + version.json into a temp folder, then rename: never half a version.
    On failure (disk full...) the temp folder is removed and earlier versions are untouched."""
    from safetensors.torch import save_file

    final = versions_dir / version_id
    tmp = versions_dir / f".{version_id}.partial"
    try:
        versions_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        if head_only:
            save_file(head_state(model), str(tmp / "head.safetensors"))
        else:
            save_model(model, tmp)
        (tmp / "version.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
        os.replace(tmp, final)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)

        raise TrainingError(
            f"{final}: could not save the new model version ({describe_error(e)}); earlier versions are unchanged."
        ) from None
    return final.resolve()


def save_head_version(project, start_spec: str, w, b: float, mode: str = "live", record: dict | None = None) -> str:
    """Write the head ``(w, b)`` on ``start_spec``'s tower as a head-only version (like a
    quick training's) and register it; returns its id. Never changes the active model.

    The app's "Use the live model" adopts the live Bayesian head this way; ``record`` adds
    fields to the version record (metrics_before/_after, counts...)."""
    import torch

    model = load_model(start_spec)
    weight = np.asarray(w, dtype=np.float32).reshape(model.head.weight.shape)
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(weight))
        model.head.bias.fill_(float(b))
    new = model_id(model)
    rec = {
        "mode": mode,
        "parent": start_spec,
        "tower_spec": _tower_spec(start_spec),
        "model_key": new.key,
        "tower": new.tower,
        "config": {},
        "warnings": [],
        **(record or {}),
        "created": time.time(),
    }
    version_id = time.strftime("v%Y%m%d-%H%M%S-") + new.head[:6]
    path = write_version(model, project.versions_dir, version_id, rec, head_only=True)
    project.add_version(version_id, path, rec)
    return version_id


def train_project(
    project,
    cfg: TrainConfig,
    progress: ProgressFn | None = None,
    cancel=None,
    start_spec: str | None = None,
    pool: Sequence = (),
) -> TrainResult:
    """Train on a project's comparisons (and those of the ``pool`` projects: other folders
    whose clicks should count too), starting from its active model (or start_spec)."""
    data = pairs_from_project(project, pool)
    spec = start_spec or project.active_model_spec(DEFAULT_MODEL)
    return run_training(data, spec, cfg, project.versions_dir, progress, cancel, project=project, pool=pool)


def adopt(project, version_id: str, device: str | None = None, progress=None, cancel=None) -> dict:
    """Make a version active and rescore the folder: one mat-vec per image for a head-only
    version on a cached tower; a full re-embedding for a new tower."""
    version = project.version(version_id)
    if version is None:
        raise StoreError(f"No model version {version_id!r} in this project; see `joyq versions`.")
    model = load_model(version["path"])
    summary = score_project(
        project, model, device=pick_device(device) if device else "cpu", progress=progress, cancel=cancel
    )
    if summary.cancelled:
        raise Cancelled("Adoption was cancelled; the previous model stays active.")
    project.set_active_version(version_id)  # score_project made its scores the current ones
    return {"version": version_id, "scored": summary.scored, "failed": len(summary.failed)}


# -- a version's head (issue 19: moved here from ui/controller.py) ------------------------
def head_of(model) -> tuple:
    """(w, b) of a loaded model's linear head, as numpy / float (the live model's prior centre)."""
    head = model.head
    return head.weight.detach().float().cpu().numpy().reshape(-1).copy(), float(head.bias.detach().float().cpu())


def version_head(path) -> tuple | None:
    """(w, b) of a version's head read from its folder (head.safetensors, else the
    classifier of model.safetensors); None when it cannot be read (pairs then come from the
    fallback selector until the folder is reopened)."""
    from safetensors import safe_open

    folder = Path(path)
    file, prefix = folder / "head.safetensors", ""
    if not file.exists():
        file, prefix = folder / "model.safetensors", "classifier."
    try:
        with safe_open(str(file), framework="numpy") as st:
            w, b = st.get_tensor(prefix + "weight"), st.get_tensor(prefix + "bias")
        return w.astype("float64").reshape(-1), float(b.reshape(-1)[0])
    except Exception:  # noqa: BLE001 - an unusual layout: no live model, never a failed adoption
        return None
