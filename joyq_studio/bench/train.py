"""`joyq bench train` (the reference head recipe on cached embeddings) and `joyq bench full`
(pairs/s and peak memory of the whole-tower finetune per device batch, with and without checkpointing)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch

from ..model import describe_device, load_model, pick_device
from ..pixels import normalize
from ..training import (
    EvalSet,
    PairData,
    default_config,
    pair_loss,
    prepare_splits,
    train_head_sgd,
)
from .common import machine_name, median_rate


def bench_train_quick(args) -> int:
    """The reference personal recipe (20k samples, batch 256, onecycle, lr 0.008) on
    ``--pairs`` pairs of cached ``--dim``-d embeddings, end to end including evaluations."""

    rng = np.random.default_rng(0)
    n_items, dim = max(2, args.pairs // 3), args.dim
    emb = rng.normal(size=(n_items, dim)).astype(np.float32)
    true = emb @ rng.normal(size=dim)
    a = rng.integers(0, n_items, args.pairs)
    b = (a + rng.integers(1, n_items, args.pairs)) % n_items
    y = (true[a] > true[b]).astype(float)
    keys = [str(i) for i in range(n_items)]
    split = np.where(rng.random(args.pairs) < 0.1, "test", "train").astype(object)
    data = PairData(keys, [Path(k) for k in keys], a, b, y, split, "synthetic")
    cfg = default_config(
        args.pairs, "quick", total_samples=20_000, batch_size=256, lr=0.008, schedule="onecycle", warmup_samples=1500
    )
    times, acc = [], 0.0
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        tr, va, te = prepare_splits(data, cfg)
        ta, tb, ty = data.subset(te)
        es = EvalSet(ta, tb, ty, np.unique(np.concatenate([ta, tb])))
        head = torch.nn.Linear(dim, 1)
        _, history, _, after, _ = train_head_sgd(head, emb, data, tr, va, es, {}, cfg)
        times.append(time.perf_counter() - t0)
        acc = after["accuracy"]
    print(f"machine: {machine_name()}")
    print(
        f"quick finetune, {args.pairs} pairs x {dim}-d, 20k samples, batch 256, onecycle: "
        f"{len(history) - 1} steps, median {statistics.median(times):.2f} s of {len(times)} "
        f"(min {min(times):.2f} s); held-out accuracy {acc:.3f}"
    )
    return 0


def bench_train_full(args) -> int:
    """Full-finetune throughput (pairs/s) and peak GPU memory per device batch, with and
    without gradient checkpointing: forward + backward + AdamW step, bf16 autocast on CUDA."""
    device = pick_device(args.device)
    spec = args.model or ("so400m-random" if device.type == "cuda" else "tiny")
    print(f"machine: {machine_name(device)}")
    print(f"model: {spec}, device {describe_device(device)}, {args.steps} timed steps per setting (median)")
    print(f"{'device batch':>12} {'checkpointing':>14} {'pairs/s':>9} {'peak GiB':>9}")
    for ckpt in (False, True):
        for pairs in args.device_batches:
            try:
                rate, peak = _measure_full_step(spec, device, pairs, ckpt, args.steps)
            except torch.cuda.OutOfMemoryError:
                print(f"{pairs:>12} {str(ckpt):>14} {'OOM':>9}")
                continue
            finally:  # the model and optimizer died with the call: give their memory back
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            print(f"{pairs:>12} {str(ckpt):>14} {rate:>9.1f} {peak:>9.2f}")
    return 0


def _measure_full_step(spec: str, device: torch.device, pairs: int, ckpt: bool, steps: int) -> tuple[float, float]:
    """(pairs/s median, peak GiB) of full training steps with ``pairs`` pairs per device batch."""
    model = load_model(spec).to(device).train()
    if ckpt:
        model.set_checkpointing(True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    size = model.image_size
    x = torch.randint(0, 256, (2 * pairs, 3, size, size), dtype=torch.uint8, device=device)
    y = torch.ones(pairs, device=device)

    def step() -> None:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            s = model(normalize(x)).float()
        loss = pair_loss(s[:pairs] - s[pairs:], y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step()  # warm-up (allocates optimizer state)

    def timed() -> None:
        for _ in range(steps):
            step()

    rate = median_rate(timed, steps * pairs, 3)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return rate, peak
