"""Personal finetunes of JoyQuality: Bradley-Terry training on "A beats B" pairs.

Two modes, one engine:

* **quick** (default): the tower is frozen; only the linear head trains, on cached
  embeddings. This is the original JoyQuality personal recipe (its train.py freezes the
  tower): a logistic regression on 1152-d vectors, seconds on a CPU.
* **full**: the whole tower trains (GPU): bf16 autocast, optional gradient checkpointing,
  frozen lowest K layers, optional 8-bit AdamW, a uint8 pixel cache keyed by content hash,
  and an automatic halving of the device batch on CUDA out-of-memory.

Loss: binary cross-entropy of sigmoid(s_first - s_second) against the outcome y of the
first image (1 won, 0 lost, 0.5 tie), i.e. ``y*softplus(-d) + (1-y)*softplus(d)``. For a
decisive pair this is exactly the reference's softplus(-(s_win - s_lose)); a tie pulls the
two scores together (its minimum is at d = 0), so ties are used, not thrown away.

Safety for small data: a slice of the training pairs (image-disjoint where possible) is
held back for checkpoint selection, and the step-0 model (the one the user started from)
is a candidate. A user who trains on 300 pairs therefore never gets a model that is
worse on that validation slice than the one they had.
"""

from ..errors import Cancelled
from .bayes import train_bayes_head
from .config import (
    MIN_PAIRS,
    ROBUSTNESS_MAX_IMAGES,
    SCHEDULES,
    TrainConfig,
    TrainingError,
    TrainProgress,
    TrainResult,
    check_cancel,
    default_config,
    lr_at,
)
from .data import (
    LABEL_TO_OUTCOME,
    PairData,
    image_disjoint_split,
    load_pairs_json,
    pairs_from_project,
    pixel_cache,
    prepare_splits,
)
from .evaluation import (
    EvalSet,
    evaluate_pairs,
    importance_weights,
    item_embeddings,
    metrics_from_scores,
    pair_loss,
    robustness_pixels,
)
from .loop import sgd_loop, train_full, train_head_sgd
from .versions import adopt, run_training, train_project, write_version

__all__ = [
    "Cancelled",
    "SCHEDULES",
    "ROBUSTNESS_MAX_IMAGES",
    "TrainingError",
    "TrainConfig",
    "default_config",
    "lr_at",
    "TrainProgress",
    "TrainResult",
    "check_cancel",
    "MIN_PAIRS",
    "PairData",
    "LABEL_TO_OUTCOME",
    "load_pairs_json",
    "pairs_from_project",
    "image_disjoint_split",
    "pixel_cache",
    "prepare_splits",
    "EvalSet",
    "robustness_pixels",
    "metrics_from_scores",
    "importance_weights",
    "pair_loss",
    "item_embeddings",
    "evaluate_pairs",
    "sgd_loop",
    "train_bayes_head",
    "train_head_sgd",
    "train_full",
    "run_training",
    "write_version",
    "train_project",
    "adopt",
]
