"""Training settings (the reference recipe's defaults, scaled to the data), progress records, errors."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import Cancelled, JoyqError

SCHEDULES = ("onecycle", "cosine", "linear", "constant")
MODES = ("quick", "reference", "full")
"""quick: the Bayesian personal head (:mod:`joyq_studio.taste`) on frozen embeddings;
reference: the original script's SGD head recipe (AdamW, lr 0.008, onecycle), for parity;
full: the whole tower (GPU)."""
HEAD_MODES = ("quick", "reference")  # modes that train only the head on cached embeddings
ROBUSTNESS_MAX_IMAGES = 200  # test images used for the JPEG / low-res tasks


class TrainingError(JoyqError):
    """Bad training data or settings; one sentence naming the file and the problem."""


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    mode: str = "quick"  # one of MODES
    total_samples: int | None = None  # pairs seen in total; None = scaled to the data
    batch_size: int = 256  # effective batch in pairs
    device_batch_size: int | None = None  # pairs per forward pass (full mode); None = batch
    lr: float | None = None  # None = 0.008 quick (reference), 2e-5 full
    schedule: str = "onecycle"
    warmup_samples: int | None = None  # None = reference's 1500 (capped at 10% of total)
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip: float = 1.0
    freeze_layers: int = 0  # full mode: freeze the embeddings and the lowest K encoder layers
    grad_checkpointing: bool = False
    optimizer: str = "adamw"  # adamw | adamw8bit (bitsandbytes, CUDA)
    augment: bool = False  # full mode: the same random flip/rot90 on both images of a pair
    eval_every_samples: int | None = None  # None = about 20 evaluations per run
    val_fraction: float = 0.15  # of training pairs, held back to pick the best step
    test_fraction: float = 0.10  # when the data has no test split
    seed: int = 0
    device: str | None = None

    def validate(self) -> None:
        if self.mode not in MODES:
            raise TrainingError(f"The training mode must be one of {', '.join(MODES)}, not {self.mode!r}.")
        if self.schedule not in SCHEDULES:
            raise TrainingError(f"The schedule must be one of {', '.join(SCHEDULES)}, not {self.schedule!r}.")
        if self.optimizer not in ("adamw", "adamw8bit"):
            raise TrainingError(f"The optimizer must be adamw or adamw8bit, not {self.optimizer!r}.")
        for name in ("batch_size", "total_samples", "device_batch_size"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise TrainingError(f"The setting {name} must be positive, not {v}.")
        if self.lr is not None and not self.lr > 0:
            raise TrainingError(f"The learning rate must be positive, not {self.lr}.")


def default_config(n_pairs: int, mode: str = "quick", **overrides) -> TrainConfig:
    """Defaults that scale with the data. The reference personal recipe is 20k samples at
    batch 256 (78 steps, ~3 epochs of 6k pairs); with few pairs that many epochs would
    overfit ("learns quickly and overfits quickly"), so cap at ~25 epochs."""
    cfg = TrainConfig(mode=mode, **overrides)
    if cfg.total_samples is None:
        epochs_cap = 25 * max(n_pairs, 1)
        cfg.total_samples = int(min(20_000, max(2 * cfg.batch_size, epochs_cap)))
    if cfg.lr is None:
        cfg.lr = 0.008 if mode in HEAD_MODES else 2e-5
    if cfg.warmup_samples is None:
        cfg.warmup_samples = min(1500, cfg.total_samples // 10)
    if cfg.eval_every_samples is None:
        cfg.eval_every_samples = max(cfg.batch_size, cfg.total_samples // 20)
    if cfg.device_batch_size is None:
        cfg.device_batch_size = cfg.batch_size if mode in HEAD_MODES else min(cfg.batch_size, 8)
    return cfg


def lr_at(step: int, total_steps: int, warmup_steps: int, schedule: str, min_ratio: float) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based).

    onecycle: cosine from 1/25 up to 1 over warmup, then cosine down to min_ratio;
    cosine: linear warmup from 0, cosine decay; linear: linear warmup, linear decay;
    constant: linear warmup, then 1.
    """
    if schedule == "onecycle":
        if step < warmup_steps:
            t = step / max(warmup_steps, 1)
            return 1 / 25 + (1 - 1 / 25) * (1 - math.cos(math.pi * t)) / 2
        t = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
        return min_ratio + (1 - min_ratio) * (1 + math.cos(math.pi * t)) / 2
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    t = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    if schedule == "cosine":
        return min_ratio + (1 - min_ratio) * (1 + math.cos(math.pi * t)) / 2
    if schedule == "linear":
        return min_ratio + (1 - min_ratio) * (1 - t)
    return 1.0


# ---------------------------------------------------------------------------------------
# Data


@dataclass
class TrainProgress:
    phase: str  # "embedding" | "training" | "message"
    step: int = 0
    total_steps: int = 0
    samples: int = 0
    loss: float | None = None
    lr: float | None = None
    eval: dict | None = None  # latest metrics on the test pairs
    eta_s: float | None = None
    message: str = ""


@dataclass
class TrainResult:
    version_id: str
    path: Path
    before: dict
    after: dict
    record: dict
    history: list[dict]


ProgressFn = Callable[[TrainProgress], None]


def check_cancel(cancel) -> None:
    if cancel and cancel():
        raise Cancelled()


MIN_PAIRS = 10
