"""The SGD loop: one loop for the reference head recipe and the full tower (nanoGPT-style, top to bottom)."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..model import JoyQuality
from ..pixels import normalize
from .config import (
    ProgressFn,
    TrainConfig,
    TrainingError,
    TrainProgress,
    check_cancel,
    lr_at,
)
from .data import PairData
from .evaluation import EvalSet, metrics_from_scores, pair_loss


def _optimizer(params, cfg: TrainConfig, device: torch.device):
    if cfg.optimizer == "adamw8bit":
        try:
            import bitsandbytes as bnb  # optional
        except ImportError:
            raise TrainingError("The adamw8bit optimizer needs bitsandbytes (pip install bitsandbytes).") from None
        if device.type != "cuda":
            raise TrainingError("The adamw8bit optimizer needs a CUDA GPU.")
        return bnb.optim.AdamW8bit(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    assert cfg.lr is not None, "default_config() resolves the learning rate"
    return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)


def sgd_loop(
    cfg: TrainConfig,
    n_train: int,
    optimizer,
    step_on: Callable[[np.ndarray], float],
    evaluate: Callable[[], dict],
    snapshot: Callable[[], dict],
    restore: Callable[[dict], None],
    progress: ProgressFn | None = None,
    cancel=None,
) -> tuple[list[dict], dict, dict, int]:
    """The one training loop of both modes, read top to bottom.

    ``step_on(indices)`` takes one optimizer step on those training pairs and returns its
    loss; ``evaluate()`` returns the metric suite (``_val_nll`` on the validation pairs when
    there are any). The step with the lowest validation loss wins, step 0 (the starting
    model) included, and is restored at the end. Returns (history, before, after, best step).
    """
    # default_config() resolves these from the data
    assert cfg.total_samples and cfg.lr and cfg.warmup_samples is not None and cfg.eval_every_samples
    total_steps = max(1, math.ceil(cfg.total_samples / cfg.batch_size))
    warmup_steps = min(total_steps - 1, cfg.warmup_samples // cfg.batch_size)
    eval_every = max(1, cfg.eval_every_samples // cfg.batch_size)
    rng = np.random.default_rng(cfg.seed)
    order = np.empty(0, dtype=np.int64)
    history: list[dict] = []
    t0 = time.perf_counter()

    def report(step: int, loss: float, lr: float, metrics: dict | None) -> None:
        elapsed = time.perf_counter() - t0
        eta = elapsed / step * (total_steps - step) if step else None
        entry: dict[str, float | None] = {"step": step, "samples": step * cfg.batch_size, "loss": loss, "lr": lr}
        if metrics is not None:
            entry["val_nll"] = metrics.get("_val_nll")
            entry["test_accuracy"] = metrics.get("accuracy")
        history.append(entry)
        if progress:
            public = {k: v for k, v in metrics.items() if not k.startswith("_")} if metrics else None
            progress(TrainProgress("training", step, total_steps, step * cfg.batch_size, loss, lr, public, eta))

    before = last = evaluate()
    best_nll, best_state, best_step = before.get("_val_nll", math.inf), snapshot(), 0
    report(0, float("nan"), 0.0, before)
    for step in range(1, total_steps + 1):
        check_cancel(cancel)
        lr = cfg.lr * lr_at(step - 1, total_steps, warmup_steps, cfg.schedule, cfg.min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr
        while len(order) < cfg.batch_size:  # epochs are reshuffled permutations
            order = np.concatenate([order, rng.permutation(n_train)])
        batch, order = order[: cfg.batch_size], order[cfg.batch_size :]
        loss = step_on(batch)
        metrics = None
        if step % eval_every == 0 or step == total_steps:
            metrics = last = evaluate()
            if metrics.get("_val_nll", math.inf) < best_nll:
                best_nll, best_state, best_step = metrics["_val_nll"], snapshot(), step
        report(step, loss, lr, metrics)
    if "_val_nll" in before:
        restore(best_state)
        last = evaluate()
    return history, before, last, best_step


def train_head_sgd(
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
    """The reference recipe: the linear head on frozen embeddings, AdamW.
    Returns (head, history, before, after, best step)."""
    torch.manual_seed(cfg.seed)
    E = torch.from_numpy(emb).float()
    head = copy.deepcopy(start_head).float().cpu().train()
    a, b, y = (torch.from_numpy(x) for x in data.subset(train_mask))
    y = y.float()
    va, vb, vy = (torch.from_numpy(x) for x in data.subset(val_mask))
    opt = _optimizer(head.parameters(), cfg, torch.device("cpu"))

    def evaluate() -> dict:
        with torch.no_grad():
            s = head(E).squeeze(-1).double().numpy()
            rob = {
                k: (head(torch.from_numpy(c)).squeeze(-1).numpy(), head(torch.from_numpy(d)).squeeze(-1).numpy())
                for k, (c, d) in rob_emb.items()
            }
            m = metrics_from_scores(s, es, rob)
            if len(va):
                d = torch.from_numpy(s[va.numpy()] - s[vb.numpy()])
                m["_val_nll"] = float(pair_loss(d, vy.double()))
        return m

    def step_on(batch: np.ndarray) -> float:
        idx = torch.from_numpy(batch)
        s = head(E).squeeze(-1)  # all items: one mat-vec, cheaper than gathering
        loss = pair_loss(s[a[idx]] - s[b[idx]], y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), cfg.grad_clip)
        opt.step()
        return loss.item()

    history, before, after, best_step = sgd_loop(
        cfg,
        len(a),
        opt,
        step_on,
        evaluate,
        lambda: copy.deepcopy(head.state_dict()),
        head.load_state_dict,
        progress,
        cancel,
    )
    return head, history, before, after, best_step


def _augment_pair(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """The same random flip / rot90 on every image of x [2, B, 3, S, S] (per pair)."""
    out = x.clone()
    for k in range(x.shape[1]):
        t = out[:, k]
        if rng.random() < 0.5:
            t = t.flip(-1)
        t = torch.rot90(t, int(rng.integers(0, 4)), dims=(-2, -1))
        out[:, k] = t
    return out


def train_full(
    model: JoyQuality,
    pixels: torch.Tensor,
    data: PairData,
    train_mask,
    val_mask,
    es: EvalSet,
    cfg: TrainConfig,
    device: torch.device,
    progress: ProgressFn | None = None,
    cancel=None,
):
    """Train the whole tower (minus frozen layers) and the head on uint8 pixels."""
    torch.manual_seed(cfg.seed)
    model = model.to(device).float().train()
    if cfg.grad_checkpointing:
        model.set_checkpointing(True)
    _freeze_lowest_layers(model, cfg.freeze_layers)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = _optimizer(params, cfg, device)
    a, b, y = data.subset(train_mask)
    va, vb, vy = data.subset(val_mask)
    amp: dict[str, Any] = dict(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    aug_rng = np.random.default_rng(cfg.seed + 1)
    device_batch = cfg.device_batch_size or cfg.batch_size

    def scores_of(x_uint8: torch.Tensor) -> np.ndarray:
        model.eval()
        out = []
        with torch.no_grad(), torch.autocast(**amp):
            for k in range(0, len(x_uint8), 32):
                out.append(model(normalize(x_uint8[k : k + 32].to(device))).float().cpu().numpy())
        model.train()
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    needed = np.unique(np.concatenate([es.items, va, vb])).astype(np.int64)

    def evaluate() -> dict:
        item_scores = np.zeros(len(data.keys))
        if len(needed):
            item_scores[needed] = scores_of(pixels[needed])
        rob = {k: (scores_of(c), scores_of(d)) for k, (c, d) in es.robustness.items()}
        m = metrics_from_scores(item_scores, es, rob)
        if len(va):
            d = torch.from_numpy(item_scores[va] - item_scores[vb])
            m["_val_nll"] = float(pair_loss(d, torch.from_numpy(vy)))
        return m

    def step_micro(idx: np.ndarray, micro: int) -> float:
        """One optimizer step over ``idx`` in micro-batches of ``micro`` pairs (gradient accumulation)."""
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for k in range(0, len(idx), micro):
            part = idx[k : k + micro]
            x = torch.stack([pixels[a[part]], pixels[b[part]]])  # [2, B, 3, S, S]
            if cfg.augment:
                x = _augment_pair(x, aug_rng)
            x = normalize(x.to(device, non_blocking=True).flatten(0, 1))
            with torch.autocast(**amp):
                s = model(x).float()
            d = s[: len(part)] - s[len(part) :]
            loss = pair_loss(d, torch.from_numpy(y[part]).float().to(device)) * len(part) / len(idx)
            loss.backward()
            total += loss.item()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        return total

    def step_on(idx: np.ndarray) -> float:
        """A step; on CUDA out-of-memory halve the device batch (the effective batch stays)."""
        nonlocal device_batch
        while True:
            try:
                return step_micro(idx, device_batch)
            except torch.cuda.OutOfMemoryError:
                if device_batch == 1:
                    raise TrainingError(
                        "The GPU ran out of memory even with one pair per device batch; "
                        "try gradient checkpointing or freezing more layers."
                    ) from None
                device_batch = max(1, device_batch // 2)
                opt.zero_grad(set_to_none=True)
                torch.cuda.empty_cache()
                if progress:
                    progress(
                        TrainProgress(
                            "message",
                            message=f"CUDA out of memory: retrying with a device batch of "
                            f"{device_batch} pairs (effective batch unchanged).",
                        )
                    )

    history, before, after, best_step = sgd_loop(
        cfg, len(a), opt, step_on, evaluate, lambda: _cpu_state(model), model.load_state_dict, progress, cancel
    )
    model.eval()
    if cfg.grad_checkpointing:
        model.set_checkpointing(False)
    return model, history, before, after, best_step


def _cpu_state(model) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _freeze_lowest_layers(model: JoyQuality, k: int) -> None:
    if k <= 0:
        return
    tower: Any = model.tower.vision_model if hasattr(model.tower, "vision_model") else model.tower
    layers = tower.encoder.layers
    if k > len(layers):
        raise TrainingError(f"Freezing {k} layers is more than the tower's {len(layers)} layers.")
    for p in tower.embeddings.parameters():
        p.requires_grad_(False)
    for layer in layers[:k]:
        for p in layer.parameters():
            p.requires_grad_(False)


# ---------------------------------------------------------------------------------------
# Orchestration: data -> split -> embeddings/pixels -> train -> version
# ---------------------------------------------------------------------------------------
