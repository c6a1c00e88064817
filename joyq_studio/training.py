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

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .corruptions import make_validation_pair
from .errors import JoyqError
from .images import (
    ImageError,
    content_hash,
    load_rgb,
    normalize,
    pil_to_uint8,
    resize_for_model,
)
from .metrics import (
    distance_weights,
    kendall_tau,
    pair_distances,
    pair_metrics,
    sigmoid,
    spearman,
)
from .model import JoyQuality, head_state, load_model, model_id, pick_device, save_model
from .scoring import embed_paths

SCHEDULES = ("onecycle", "cosine", "linear", "constant")
ROBUSTNESS_MAX_IMAGES = 200  # test images used for the JPEG / low-res tasks


class TrainingError(JoyqError):
    """Bad training data or settings; one sentence naming the file and the problem."""


class Cancelled(JoyqError):
    def __init__(self, message: str = "Training was cancelled; no model version was written."):
        super().__init__(message)


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    mode: str = "quick"  # quick | full
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
        if self.mode not in ("quick", "full"):
            raise TrainingError(f"--mode must be quick or full, not {self.mode!r}.")
        if self.schedule not in SCHEDULES:
            raise TrainingError(f"--schedule must be one of {', '.join(SCHEDULES)}, not {self.schedule!r}.")
        if self.optimizer not in ("adamw", "adamw8bit"):
            raise TrainingError(f"--optimizer must be adamw or adamw8bit, not {self.optimizer!r}.")
        for name in ("batch_size", "total_samples", "device_batch_size"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise TrainingError(f"--{name.replace('_', '-')} must be positive, not {v}.")
        if self.lr is not None and not self.lr > 0:
            raise TrainingError(f"--lr must be positive, not {self.lr}.")


def default_config(n_pairs: int, mode: str = "quick", **overrides) -> TrainConfig:
    """Defaults that scale with the data. The reference personal recipe is 20k samples at
    batch 256 (78 steps, ~3 epochs of 6k pairs); with few pairs that many epochs would
    overfit ("learns quickly and overfits quickly"), so cap at ~25 epochs."""
    cfg = TrainConfig(mode=mode, **overrides)
    if cfg.total_samples is None:
        epochs_cap = 25 * max(n_pairs, 1)
        cfg.total_samples = int(min(20_000, max(2 * cfg.batch_size, epochs_cap)))
    if cfg.lr is None:
        cfg.lr = 0.008 if mode == "quick" else 2e-5
    if cfg.warmup_samples is None:
        cfg.warmup_samples = min(1500, cfg.total_samples // 10)
    if cfg.eval_every_samples is None:
        cfg.eval_every_samples = max(cfg.batch_size, cfg.total_samples // 20)
    if cfg.device_batch_size is None:
        cfg.device_batch_size = cfg.batch_size if mode == "quick" else min(cfg.batch_size, 8)
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
# ---------------------------------------------------------------------------------------
@dataclass
class PairData:
    """Pairs over a list of images. ``keys`` identify images (content hashes for projects,
    absolute paths for dataset files); ``paths`` are where to read them."""

    keys: list[str]
    paths: list[Path]
    a: np.ndarray  # int index of the first image
    b: np.ndarray
    y: np.ndarray  # outcome of the first image: 1, 0 or 0.5
    split: np.ndarray  # "train" | "test" per pair
    source: str
    ranking: list[int] | None = None  # best-first item indices of a fully ranked subset
    warnings: list[str] = field(default_factory=list)

    def subset(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.a[mask], self.b[mask], self.y[mask]


LABEL_TO_OUTCOME = {1: 1.0, -1: 0.0, 0: 0.5}


def load_pairs_json(path: str | os.PathLike) -> PairData:
    """A JoyQuality dataset: {"train": [[a, b, label], ...], "test": [...]}; label 1 = first
    won, -1 = second won, 0 = tie. Relative paths are relative to the JSON file. An optional
    "ranking" list of paths (best first) enables Spearman / Kendall."""
    path = Path(path).expanduser()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrainingError(f"{path}: file not found.") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TrainingError(f"{path}: cannot be read ({e}).") from None
    except ValueError as e:
        raise TrainingError(f"{path}: not valid JSON ({e}).") from None
    if not isinstance(data, dict) or not isinstance(data.get("train", []), list) or not isinstance(data.get("test", []), list):
        raise TrainingError(f'{path}: expected an object {{"train": [[pathA, pathB, label], ...], "test": [...]}}.')
    if "train" not in data and "test" not in data:
        raise TrainingError(f'{path}: has neither a "train" nor a "test" list.')
    base = path.parent
    index: dict[str, int] = {}
    keys: list[str] = []
    rows: list[tuple[int, int, float, str]] = []
    seen: set[tuple[int, int, str]] = set()
    duplicates = 0

    def item(p) -> int:
        if not isinstance(p, str) or not p:
            raise TrainingError(f"{path}: image paths must be non-empty strings, got {p!r}.")
        full = str((base / p).resolve()) if not os.path.isabs(p) else str(Path(p).resolve())
        if full not in index:
            index[full] = len(keys)
            keys.append(full)
        return index[full]

    for split in ("train", "test"):
        for n, entry in enumerate(data.get(split, [])):
            where = f'{path}: "{split}" entry {n}'
            if not isinstance(entry, list) or len(entry) != 3:
                raise TrainingError(f"{where} must be [pathA, pathB, label], got {json.dumps(entry)[:80]}.")
            label = entry[2]
            if isinstance(label, bool) or label not in LABEL_TO_OUTCOME:
                raise TrainingError(f"{where} has label {label!r}; labels must be 1 (first won), -1 (second won) or 0 (tie).")
            i, j = item(entry[0]), item(entry[1])
            if i == j:
                raise TrainingError(f"{where} compares {entry[0]} with itself.")
            if (i, j, split) in seen or (j, i, split) in seen:
                duplicates += 1
            seen.add((i, j, split))
            rows.append((i, j, LABEL_TO_OUTCOME[label], split))
    missing = [k for k in keys if not os.path.isfile(k)]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise TrainingError(f"{path}: image {missing[0]} does not exist{more}.")
    warnings = []
    if duplicates:
        warnings.append(f"{path}: {duplicates} pairs appear more than once; each is kept as a separate judgement.")
    ranking = None
    if isinstance(data.get("ranking"), list):
        ranking = [item(p) for p in data["ranking"]]
    return PairData(
        keys=keys, paths=[Path(k) for k in keys],
        a=np.array([r[0] for r in rows], dtype=np.int64), b=np.array([r[1] for r in rows], dtype=np.int64),
        y=np.array([r[2] for r in rows], dtype=np.float64), split=np.array([r[3] for r in rows]),
        source=str(path), ranking=ranking, warnings=warnings)


def pairs_from_project(project) -> PairData:
    """The project's comparisons over images that are still on disk and readable."""
    present = dict(project.image_paths())
    rows = [(a, b, o, s) for _, a, b, o, s, _ in project.comparisons() if a in present and b in present]
    skipped = project.comparison_count() - len(rows)
    keys = sorted({h for r in rows for h in r[:2]})
    index = {h: i for i, h in enumerate(keys)}
    warnings = [f"{skipped} comparisons involve images no longer in the folder; they are kept but not used."] if skipped else []
    return PairData(
        keys=keys, paths=[project.folder / present[h] for h in keys],
        a=np.array([index[r[0]] for r in rows], dtype=np.int64), b=np.array([index[r[1]] for r in rows], dtype=np.int64),
        y=np.array([r[2] for r in rows], dtype=np.float64), split=np.array([r[3] for r in rows] or [], dtype=object),
        source=str(project.folder), warnings=warnings)


def image_disjoint_split(a: np.ndarray, b: np.ndarray, n_items: int, fraction: float, seed: int) -> np.ndarray:
    """Label each pair 'train', 'test' or 'drop' so that no test image appears in a training pair.

    Connected groups of images (same content under different degradations, say) go
    wholly to one side, so nothing is dropped. Within one big group, images are moved to
    the test side one by one in random order; pairs between the sides are dropped.
    """
    out = np.full(len(a), "train", dtype=object)
    if len(a) == 0 or fraction <= 0:
        return out
    target = max(1, int(round(fraction * len(a))))
    rng = np.random.default_rng(seed)
    parent = np.arange(n_items)

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in zip(a, b):
        parent[find(i)] = find(j)
    comp = np.array([find(i) for i in a])
    groups = rng.permutation(np.unique(comp))
    if len(groups) >= 5:
        n_test = 0
        for g in groups:
            if n_test >= target:
                break
            members = comp == g
            if n_test + members.sum() > 2 * target and n_test > 0:
                continue
            out[members] = "test"
            n_test += members.sum()
        return out
    in_test = np.zeros(n_items, dtype=bool)
    for item in rng.permutation(np.unique(np.concatenate([a, b]))):
        in_test[item] = True
        if (in_test[a] & in_test[b]).sum() >= target:
            break
    both, one = in_test[a] & in_test[b], in_test[a] ^ in_test[b]
    out[both] = "test"
    out[one] = "drop"
    return out


# ---------------------------------------------------------------------------------------
# Evaluation: the full metric suite on test pairs, plus JPEG / low-res robustness
# ---------------------------------------------------------------------------------------
@dataclass
class EvalSet:
    a: np.ndarray
    b: np.ndarray
    y: np.ndarray
    items: np.ndarray  # item indices whose scores the metrics need
    weights: np.ndarray | None = None
    ranking: list[int] | None = None
    robustness: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # uint8 clean, corrupt


def robustness_pixels(paths: list[Path], keys: list[str], size: int, limit: int = ROBUSTNESS_MAX_IMAGES,
                      cancel=None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """uint8 (clean, corrupt) batches for the JPEG and low-res tasks; deterministic per image."""
    out: dict[str, tuple[list, list]] = {"jpeg": ([], []), "lowres": ([], [])}
    for path, key in list(zip(paths, keys))[:limit]:
        if cancel and cancel():
            raise Cancelled()
        try:
            img = load_rgb(path)
        except ImageError:
            continue
        for kind, (clean_list, bad_list) in out.items():
            clean, bad = make_validation_pair(img, kind, seed=key)
            clean_list.append(pil_to_uint8(resize_for_model(clean, size)))
            bad_list.append(pil_to_uint8(resize_for_model(bad, size)))
    return {k: (torch.stack(c), torch.stack(d)) for k, (c, d) in out.items() if c}


def metrics_from_scores(item_scores: np.ndarray, es: EvalSet, rob_scores: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    """item_scores is indexed by item; rob_scores maps task -> (clean scores, corrupt scores)."""
    p = sigmoid(item_scores[es.a] - item_scores[es.b])
    m = pair_metrics(np.atleast_1d(p), es.y, es.weights) if len(es.a) else {"n": 0}
    for task, (clean, bad) in rob_scores.items():
        m[f"{task}_accuracy"] = float(np.mean((clean > bad) + 0.5 * (clean == bad)))
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


def _check_cancel(cancel) -> None:
    if cancel and cancel():
        raise Cancelled()


def _pair_loss(d: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """BCE of sigmoid(d) against soft target y (1, 0, 0.5): y*softplus(-d) + (1-y)*softplus(d)."""
    return (y * F.softplus(-d) + (1 - y) * F.softplus(d)).mean()


def _optimizer(params, cfg: TrainConfig, device: torch.device):
    if cfg.optimizer == "adamw8bit":
        try:
            import bitsandbytes as bnb  # optional
        except ImportError:
            raise TrainingError("--optimizer adamw8bit needs bitsandbytes (pip install bitsandbytes).") from None
        if device.type != "cuda":
            raise TrainingError("--optimizer adamw8bit needs a CUDA GPU.")
        return bnb.optim.AdamW8bit(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)


class _Loop:
    """Shared step/schedule/eval bookkeeping of both modes (nanoGPT-style: read top to bottom)."""

    def __init__(self, cfg: TrainConfig, n_train: int, progress: ProgressFn | None, cancel):
        self.cfg, self.progress, self.cancel = cfg, progress, cancel
        self.total_steps = max(1, math.ceil(cfg.total_samples / cfg.batch_size))
        self.warmup_steps = min(self.total_steps - 1, cfg.warmup_samples // cfg.batch_size)
        self.eval_every = max(1, cfg.eval_every_samples // cfg.batch_size)
        self.rng = np.random.default_rng(cfg.seed)
        self.n_train = n_train
        self.order = np.empty(0, dtype=np.int64)
        self.t0 = time.perf_counter()
        self.history: list[dict] = []

    def next_batch(self) -> np.ndarray:
        """Indices of the next effective batch; epochs are reshuffled permutations."""
        while len(self.order) < self.cfg.batch_size:
            self.order = np.concatenate([self.order, self.rng.permutation(self.n_train)])
        batch, self.order = self.order[: self.cfg.batch_size], self.order[self.cfg.batch_size:]
        return batch

    def set_lr(self, optimizer, step: int) -> float:
        lr = self.cfg.lr * lr_at(step, self.total_steps, self.warmup_steps, self.cfg.schedule, self.cfg.min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def report(self, step: int, loss: float, lr: float, metrics: dict | None) -> None:
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / step * (self.total_steps - step) if step else None
        entry = {"step": step, "samples": step * self.cfg.batch_size, "loss": loss, "lr": lr}
        if metrics is not None:
            entry["val_nll"] = metrics.get("_val_nll")
            entry["test_accuracy"] = metrics.get("accuracy")
        self.history.append(entry)
        if self.progress:
            public = {k: v for k, v in metrics.items() if not k.startswith("_")} if metrics else None
            self.progress(TrainProgress("training", step, self.total_steps, step * self.cfg.batch_size, loss, lr,
                                        public, eta))


def train_quick(start_head: torch.nn.Linear, emb: np.ndarray, data: PairData, train_mask, val_mask, es: EvalSet,
                rob_emb: dict[str, tuple[np.ndarray, np.ndarray]], cfg: TrainConfig,
                progress: ProgressFn | None = None, cancel=None):
    """Train the linear head on frozen embeddings. Returns (best head state, history, before, after)."""
    torch.manual_seed(cfg.seed)
    E = torch.from_numpy(emb).float()
    head = copy.deepcopy(start_head).float().cpu().train()
    a, b, y = (torch.from_numpy(x) for x in data.subset(train_mask))
    y = y.float()
    va, vb, vy = (torch.from_numpy(x) for x in data.subset(val_mask))
    opt = _optimizer(head.parameters(), cfg, torch.device("cpu"))
    loop = _Loop(cfg, len(a), progress, cancel)

    def evaluate() -> dict:
        with torch.no_grad():
            s = head(E).squeeze(-1).double().numpy()
            rob = {k: (head(torch.from_numpy(c)).squeeze(-1).numpy(), head(torch.from_numpy(d)).squeeze(-1).numpy())
                   for k, (c, d) in rob_emb.items()}
            m = metrics_from_scores(s, es, rob)
            if len(va):
                d = torch.from_numpy(s[va.numpy()] - s[vb.numpy()])
                m["_val_nll"] = float(_pair_loss(d, vy.double()))
        return m

    before = evaluate()
    best = (before.get("_val_nll", math.inf), copy.deepcopy(head.state_dict()), 0)
    loop.report(0, float("nan"), 0.0, before)
    last = before
    for step in range(1, loop.total_steps + 1):
        _check_cancel(cancel)
        lr = loop.set_lr(opt, step - 1)
        idx = torch.from_numpy(loop.next_batch())
        s = head(E).squeeze(-1)  # all items: one mat-vec, cheaper than gathering
        loss = _pair_loss(s[a[idx]] - s[b[idx]], y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), cfg.grad_clip)
        opt.step()
        metrics = None
        if step % loop.eval_every == 0 or step == loop.total_steps:
            metrics = last = evaluate()
            if metrics.get("_val_nll", math.inf) < best[0]:
                best = (metrics["_val_nll"], copy.deepcopy(head.state_dict()), step)
        loop.report(step, loss.item(), lr, metrics)
    if len(va):
        head.load_state_dict(best[1])
        after = evaluate()
    else:
        after = last
    return head, loop.history, before, after, best[2]


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


def pixel_cache(paths: list[Path], keys: list[str], size: int, workers: int, progress: ProgressFn | None, cancel,
                cache_root: Path | None = None) -> torch.Tensor:
    """uint8 [N, 3, S, S] of every image, decoded once; kept on disk keyed by content hash
    (``keys``) so later runs (and epochs) never re-decode. Unreadable images raise TrainingError."""
    out = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)
    missing = []
    names = []
    for i, p in enumerate(paths):
        f = cache_root / f"{keys[i]}-{size}.npy" if cache_root else None
        names.append(f)
        if f is not None and f.exists():
            try:
                out[i] = torch.from_numpy(np.load(f))
                continue
            except (OSError, ValueError):
                pass
        missing.append(i)
    if missing:
        from torch.utils.data import DataLoader

        from .scoring import _collate, _DecodeDataset, _mp_context

        loader = DataLoader(_DecodeDataset([str(paths[i]) for i in missing], size), batch_size=16,
                            num_workers=workers, collate_fn=_collate,
                            multiprocessing_context=_mp_context() if workers else None)
        done = 0
        for pixels, errors in loader:
            _check_cancel(cancel)
            for k, err in enumerate(errors):
                if err:
                    raise TrainingError(err)
                i = missing[done + k]
                out[i] = pixels[k]
                if names[i] is not None:
                    try:
                        names[i].parent.mkdir(parents=True, exist_ok=True)
                        tmp = names[i].with_suffix(f".tmp{os.getpid()}.npy")
                        np.save(tmp, pixels[k].numpy())
                        os.replace(tmp, names[i])
                    except OSError:
                        pass  # a cache is an optimisation; a full cache disk is not an error
            done += len(errors)
            if progress:
                progress(TrainProgress("embedding", done, len(missing), message="decoding images"))
    return out


def train_full(model: JoyQuality, pixels: torch.Tensor, data: PairData, train_mask, val_mask, es: EvalSet,
               cfg: TrainConfig, device: torch.device, progress: ProgressFn | None = None, cancel=None):
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
    loop = _Loop(cfg, len(a), progress, cancel)
    amp = dict(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    aug_rng = np.random.default_rng(cfg.seed + 1)
    device_batch = cfg.device_batch_size

    def scores_of(x_uint8: torch.Tensor) -> np.ndarray:
        model.eval()
        out = []
        with torch.no_grad(), torch.autocast(**amp):
            for k in range(0, len(x_uint8), 32):
                out.append(model(normalize(x_uint8[k:k + 32].to(device))).float().cpu().numpy())
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
            m["_val_nll"] = float(_pair_loss(d, torch.from_numpy(vy)))
        return m

    def step_on(idx: np.ndarray, micro: int) -> float:
        """One optimizer step over ``idx`` in micro-batches of ``micro`` pairs (gradient accumulation)."""
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for k in range(0, len(idx), micro):
            part = idx[k:k + micro]
            x = torch.stack([pixels[a[part]], pixels[b[part]]])  # [2, B, 3, S, S]
            if cfg.augment:
                x = _augment_pair(x, aug_rng)
            x = normalize(x.to(device, non_blocking=True).flatten(0, 1))
            with torch.autocast(**amp):
                s = model(x).float()
            d = s[: len(part)] - s[len(part):]
            loss = _pair_loss(d, torch.from_numpy(y[part]).float().to(device)) * len(part) / len(idx)
            loss.backward()
            total += loss.item()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        return total

    before = evaluate()
    best = (before.get("_val_nll", math.inf), _cpu_state(model), 0)
    loop.report(0, float("nan"), 0.0, before)
    last = before
    for step in range(1, loop.total_steps + 1):
        _check_cancel(cancel)
        lr = loop.set_lr(opt, step - 1)
        idx = loop.next_batch()
        while True:
            try:
                loss = step_on(idx, device_batch)
                break
            except torch.cuda.OutOfMemoryError:
                if device_batch == 1:
                    raise TrainingError("The GPU ran out of memory even with one pair per device batch; "
                                        "try --grad-checkpointing or --freeze-layers.") from None
                device_batch = max(1, device_batch // 2)
                opt.zero_grad(set_to_none=True)
                torch.cuda.empty_cache()
                if progress:
                    progress(TrainProgress("message", message=f"CUDA out of memory: retrying with a device batch of "
                                                              f"{device_batch} pairs (effective batch unchanged)."))
        metrics = None
        if step % loop.eval_every == 0 or step == loop.total_steps:
            metrics = last = evaluate()
            if metrics.get("_val_nll", math.inf) < best[0]:
                best = (metrics["_val_nll"], _cpu_state(model), step)
        loop.report(step, loss, lr, metrics)
    if len(va):
        model.load_state_dict(best[1])
        after = evaluate()
    else:
        after = last
    model.eval()
    if cfg.grad_checkpointing:
        model.set_checkpointing(False)
    return model, loop.history, before, after, best[2]


def _cpu_state(model) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _freeze_lowest_layers(model: JoyQuality, k: int) -> None:
    if k <= 0:
        return
    tower = model.tower.vision_model if hasattr(model.tower, "vision_model") else model.tower
    layers = tower.encoder.layers
    if k > len(layers):
        raise TrainingError(f"--freeze-layers {k} is more than the tower's {len(layers)} layers.")
    for p in tower.embeddings.parameters():
        p.requires_grad_(False)
    for layer in layers[:k]:
        for p in layer.parameters():
            p.requires_grad_(False)


# ---------------------------------------------------------------------------------------
# Orchestration: data -> split -> embeddings/pixels -> train -> version
# ---------------------------------------------------------------------------------------
def prepare_splits(data: PairData, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train_mask, val_mask, test_mask). Uses the data's own test split when it has one."""
    n = len(data.a)
    split = np.asarray(data.split, dtype=object)
    has_test = (split == "test").sum() > 0
    if not has_test:
        split = image_disjoint_split(data.a, data.b, len(data.keys), cfg.test_fraction, cfg.seed)
    test_mask = split == "test"
    train_idx = np.flatnonzero(split == "train")
    if len(train_idx) == 0:
        raise TrainingError(f"{data.source}: no training pairs (the train split is empty).")
    # Validation pairs pick the best step (step 0, the starting model, included).
    val_mask = np.zeros(n, dtype=bool)
    train_mask = split == "train"
    if cfg.val_fraction <= 0:
        return train_mask, val_mask, test_mask
    rng = np.random.default_rng(cfg.seed + 7)
    test_idx = np.flatnonzero(test_mask)
    if has_test and len(test_idx) >= 10:
        # The data's own held-out pairs (the app's are uniformly random) are distributed like
        # pairs in general; actively chosen training pairs are not (they sit where the model
        # was unsure), and a step that fits them can hurt everywhere else. So half of the
        # held-out pairs choose the step and the other half report it, unbiased.
        val = rng.choice(test_idx, size=len(test_idx) // 2, replace=False)
        val_mask[val] = True
        test_mask = test_mask & ~val_mask
    elif len(train_idx) >= 40:
        # Otherwise a random slice of training pairs (it only chooses a step, so it need not
        # be image-disjoint, and a disjoint cut would waste many pairs).
        val = rng.choice(train_idx, size=max(1, int(round(cfg.val_fraction * len(train_idx)))), replace=False)
        val_mask[val] = True
        train_mask &= ~val_mask
    return train_mask, val_mask, test_mask


MIN_PAIRS = 10


def run_training(data: PairData, start_spec: str, cfg: TrainConfig, versions_dir: Path,
                 progress: ProgressFn | None = None, cancel=None, project=None) -> TrainResult:
    """The whole pipeline behind `joyq train` and the GUI's Train button.

    Writes a new version folder under versions_dir (atomically: a temp folder renamed at
    the end) and returns it; never changes the active model."""
    decisive = int((data.y != 0.5).sum())
    if len(data.a) < MIN_PAIRS or decisive < MIN_PAIRS // 2:
        raise TrainingError(f"{data.source}: only {len(data.a)} pairs ({decisive} with a winner); "
                            f"at least {MIN_PAIRS} are needed to train.")
    cfg = default_config(int(len(data.a) * 0.8), cfg.mode, **{k: v for k, v in asdict(cfg).items() if k != "mode"})
    cfg.validate()
    device = pick_device(cfg.device)  # the tower runs here; a quick head trains on the CPU
    model = load_model(start_spec)
    train_mask, val_mask, test_mask = prepare_splits(data, cfg)
    ta, tb, ty = data.subset(test_mask)
    test_items = np.unique(np.concatenate([ta, tb])) if len(ta) else np.zeros(0, dtype=np.int64)
    es = EvalSet(ta, tb, ty, test_items, ranking=data.ranking)
    if progress:
        progress(TrainProgress("message", message=f"{int(train_mask.sum())} training, {int(val_mask.sum())} validation "
                                                  f"and {int(test_mask.sum())} test pairs"))
    rob_paths = [data.paths[i] for i in test_items]
    rob_keys = [data.keys[i] for i in test_items]
    es.robustness = robustness_pixels(rob_paths, rob_keys, model.image_size, cancel=cancel)

    if cfg.mode == "quick":
        emb = item_embeddings(model, data, device, project, progress, cancel)
        if len(ta):
            es.weights = importance_weights(emb, ta, tb, cfg.seed)
        rob_emb = {k: (_embed_uint8(model, c, device), _embed_uint8(model, d, device)) for k, (c, d) in es.robustness.items()}
        head, history, before, after, best_step = train_quick(model.head, emb, data, train_mask, val_mask, es, rob_emb, cfg,
                                                              progress, cancel)
        model.head.load_state_dict(head.state_dict())
    else:
        cache_root = _pixel_cache_dir()
        # Project keys are content hashes already; dataset-file keys are paths.
        hashes = data.keys if project is not None else [content_hash(p) for p in data.paths]
        pixels = pixel_cache(data.paths, hashes, model.image_size, workers=min(4, os.cpu_count() or 1),
                             progress=progress, cancel=cancel, cache_root=cache_root)
        model, history, before, after, best_step = train_full(model, pixels, data, train_mask, val_mask, es, cfg,
                                                              device, progress, cancel)
    _check_cancel(cancel)
    if best_step == 0 and val_mask.any():
        data.warnings.append("No training step beat the starting model on the validation pairs, so the new "
                             "version keeps the starting weights; label more pairs before retraining.")
    new = model_id(model.cpu().float())
    record = {
        "mode": cfg.mode,
        "parent": start_spec,
        "tower_spec": _tower_spec(start_spec) if cfg.mode == "quick" else None,
        "model_key": new.key,
        "tower": new.tower,
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        "counts": {"train": int(train_mask.sum()), "validation": int(val_mask.sum()), "test": int(test_mask.sum()),
                   "ties": int((data.y == 0.5).sum()), "images": len(data.keys)},
        "best_step": best_step,
        "metrics_before": _public(before),
        "metrics_after": _public(after),
        "source": data.source,
        "warnings": data.warnings,
        "created": time.time(),
    }
    version_id = time.strftime("v%Y%m%d-%H%M%S-") + new.head[:6]
    path = write_version(model, versions_dir, version_id, record, head_only=cfg.mode == "quick")
    if project is not None:
        project.add_version(version_id, path, record)
    return TrainResult(version_id, path, record["metrics_before"], record["metrics_after"], record, history)


def _public(m: dict) -> dict:
    return {k: v for k, v in m.items() if not k.startswith("_")}


def _tower_spec(spec: str) -> str:
    """A quick version's tower is its parent's tower: follow head-only versions down."""
    p = Path(spec)
    rec = p / "version.json"
    if p.is_dir() and rec.exists() and not (p / "model.safetensors").exists():
        return json.loads(rec.read_text(encoding="utf-8"))["tower_spec"]
    return str(p.resolve()) if p.exists() else spec


def _pixel_cache_dir() -> Path:
    from .store import cache_dir

    return cache_dir() / "pixels"


def _embed_uint8(model: JoyQuality, x: torch.Tensor, device: torch.device) -> np.ndarray:
    from .scoring import prepare_for_inference

    m, forward, dtype = prepare_for_inference(model, device)
    out = []
    with torch.inference_mode():
        for k in range(0, len(x), 32):
            out.append(forward(normalize(x[k:k + 32].to(device), dtype)).float().cpu().numpy())
    model.float().cpu()
    return np.concatenate(out) if out else np.zeros((0, model.embed_dim), dtype=np.float32)


def item_embeddings(model: JoyQuality, data: PairData, device, project, progress, cancel) -> np.ndarray:
    """Embeddings of every item: from the project's cache where present, the rest computed
    (and cached, for a project) with progress."""
    mid = model_id(model)
    emb = np.zeros((len(data.keys), model.embed_dim), dtype=np.float32)
    todo = list(range(len(data.keys)))
    if project is not None:
        hashes, cached = project.embeddings(mid.tower, data.keys)
        pos = {h: i for i, h in enumerate(data.keys)}
        for h, v in zip(hashes, cached):
            emb[pos[h]] = v
        have = set(hashes)
        todo = [i for i in todo if data.keys[i] not in have]
    if todo:
        def on_progress(done, total, rate):
            if progress:
                eta = (total - done) / rate if rate else None
                progress(TrainProgress("embedding", done, total, eta_s=eta, message="embedding images"))

        for batch in embed_paths(model, [data.paths[i] for i in todo], device, batch_size=32,
                                 workers=min(2, os.cpu_count() or 1), progress=on_progress, cancel=cancel):
            rows = []
            for k, err in enumerate(batch.errors):
                i = todo[batch.start + k]
                if err:
                    raise TrainingError(err)
                emb[i] = batch.embeddings[k]
                rows.append((data.keys[i], batch.embeddings[k], batch.scores[k]))
            if project is not None:
                project.save_results(mid.tower, mid.key, rows)
        _check_cancel(cancel)
        model.float().cpu()
    return emb


def evaluate_pairs(data: PairData, model: JoyQuality, device: torch.device, split: str = "all",
                   progress: ProgressFn | None = None, cancel=None) -> dict:
    """The full metric suite of any model on a pair set (`joyq eval`)."""
    mask = np.ones(len(data.a), dtype=bool) if split == "all" else np.asarray(data.split, dtype=object) == split
    if not mask.any():
        raise TrainingError(f"{data.source}: no pairs in the {split!r} split.")
    a, b, y = data.subset(mask)
    items = np.unique(np.concatenate([a, b]))
    es = EvalSet(a, b, y, items, ranking=data.ranking)
    emb = item_embeddings(model, data, device, None, progress, cancel)
    es.weights = importance_weights(emb, a, b, seed=0)
    es.robustness = robustness_pixels([data.paths[i] for i in items], [data.keys[i] for i in items],
                                      model.image_size, cancel=cancel)
    with torch.no_grad():
        head = model.head.float().cpu()
        item_scores = head(torch.from_numpy(emb)).squeeze(-1).double().numpy()
        rob = {k: (head(torch.from_numpy(_embed_uint8(model, c, device))).squeeze(-1).numpy(),
                   head(torch.from_numpy(_embed_uint8(model, d, device))).squeeze(-1).numpy())
               for k, (c, d) in es.robustness.items()}
    return metrics_from_scores(item_scores, es, rob)


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
        from .store import describe_error

        raise TrainingError(f"{final}: could not save the new model version ({describe_error(e)}); "
                            "earlier versions are unchanged.") from None
    return final.resolve()


def train_project(project, cfg: TrainConfig, progress: ProgressFn | None = None, cancel=None,
                  start_spec: str | None = None) -> TrainResult:
    """Train on a project's comparisons, starting from its active model (or start_spec)."""
    from .model import DEFAULT_MODEL

    data = pairs_from_project(project)
    spec = start_spec or project.active_model_spec(DEFAULT_MODEL)
    return run_training(data, spec, cfg, project.versions_dir, progress, cancel, project=project)


def adopt(project, version_id: str, device: str | None = None, progress=None, cancel=None) -> dict:
    """Make a version active and rescore the folder: one mat-vec per image for a head-only
    version on a cached tower; a full re-embedding for a new tower."""
    from .scoring import score_project

    version = project.version(version_id)
    if version is None:
        from .store import StoreError

        raise StoreError(f"No model version {version_id!r} in this project; see `joyq versions`.")
    model = load_model(version["path"])
    summary = score_project(project, model, device=pick_device(device) if device else "cpu",
                            progress=progress, cancel=cancel)
    if summary.cancelled:
        raise Cancelled("Adoption was cancelled; the previous model stays active.")
    project.set_active_version(version_id)  # score_project made its scores the current ones
    return {"version": version_id, "scored": summary.scored, "failed": len(summary.failed)}
