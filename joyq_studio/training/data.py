"""Pair data: a dataset JSON or a project's comparisons, image-disjoint splits, and the uint8 pixel cache."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..fsio import clip, shorten
from ..prelabel import soft_target, training_records
from ..scoring import decode_loader
from ..store import cache_dir
from .config import ProgressFn, TrainConfig, TrainingError, TrainProgress, check_cancel


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
        raise TrainingError(f"{path}: not valid JSON ({shorten(e)}).") from None
    except RecursionError:
        raise TrainingError(f"{path}: is nested too deeply to be a JoyQuality dataset JSON file.") from None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("train", []), list)
        or not isinstance(data.get("test", []), list)
    ):
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
        if not isinstance(p, str) or not p or "\x00" in p:
            raise TrainingError(f"{path}: image paths must be non-empty strings, got {shorten(p)}.")
        full = str((base / p).resolve()) if not os.path.isabs(p) else str(Path(p).resolve())
        if full not in index:
            index[full] = len(keys)
            keys.append(full)
        return index[full]

    for split in ("train", "test"):
        for n, entry in enumerate(data.get(split, [])):
            where = f'{path}: "{split}" entry {n}'
            if not isinstance(entry, list) or len(entry) != 3:
                raise TrainingError(f"{where} must be [pathA, pathB, label], got {shorten(entry, as_json=True)}.")
            label = entry[2]
            if isinstance(label, bool) or not isinstance(label, (int, float)) or label not in LABEL_TO_OUTCOME:
                raise TrainingError(
                    f"{where} has label {shorten(label)}; labels must be 1 (first won), -1 (second won) or 0 (tie)."
                )
            i, j = item(entry[0]), item(entry[1])
            if i == j:
                raise TrainingError(f"{where} compares {clip(entry[0])} with itself.")
            if (i, j, split) in seen or (j, i, split) in seen:
                duplicates += 1
            seen.add((i, j, split))
            rows.append((i, j, LABEL_TO_OUTCOME[int(label)], split))
    missing = [k for k in keys if not os.path.isfile(k)]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise TrainingError(f"{path}: image {clip(missing[0])} does not exist{more}.")
    warnings = []
    if duplicates:
        warnings.append(f"{path}: {duplicates} pairs appear more than once; each is kept as a separate judgement.")
    ranking = None
    if isinstance(data.get("ranking"), list):
        ranking = [item(p) for p in data["ranking"]]
    return PairData(
        keys=keys,
        paths=[Path(k) for k in keys],
        a=np.array([r[0] for r in rows], dtype=np.int64),
        b=np.array([r[1] for r in rows], dtype=np.int64),
        y=np.array([r[2] for r in rows], dtype=np.float64),
        split=np.array([r[3] for r in rows]),
        source=str(path),
        ranking=ranking,
        warnings=warnings,
    )


def pairs_from_project(project, pool: Sequence = ()) -> PairData:
    """The project's comparisons over images that are still on disk and readable, plus those
    of the ``pool`` projects (other folders of the same user: a taste travels).

    Images are identified by content hash, so an image in two folders is one item. Labels
    from other sources (an LLM's) count as soft targets of their trust, and only while the
    user includes them (:func:`joyq_studio.prelabel.training_records`).
    """
    paths: dict[str, Path] = {}
    rows, skipped = [], 0
    for p in (project, *pool):
        present = dict(p.image_paths())
        records = training_records(p, split=None)
        mine = [
            (r.a, r.b, soft_target(r.outcome, r.weight), r.split) for r in records if r.a in present and r.b in present
        ]
        skipped += len(records) - len(mine)
        rows += mine
        for h in {h for r in mine for h in r[:2]}:
            paths.setdefault(h, p.folder / present[h])
    keys = sorted(paths)
    index = {h: i for i, h in enumerate(keys)}
    warnings = (
        [f"{skipped} comparisons involve images no longer in the folder; they are kept but not used."]
        if skipped
        else []
    )
    source = str(project.folder) + (f" + {len(pool)} pooled folder{'s' * (len(pool) > 1)}" if pool else "")
    return PairData(
        keys=keys,
        paths=[paths[h] for h in keys],
        a=np.array([index[r[0]] for r in rows], dtype=np.int64),
        b=np.array([index[r[1]] for r in rows], dtype=np.int64),
        y=np.array([r[2] for r in rows], dtype=np.float64),
        split=np.array([r[3] for r in rows] or [], dtype=object),
        source=source,
        warnings=warnings,
    )


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


def pixel_cache(
    paths: list[Path],
    keys: list[str],
    size: int,
    workers: int,
    progress: ProgressFn | None,
    cancel,
    cache_root: Path | None = None,
) -> torch.Tensor:
    """uint8 [N, 3, S, S] of every image, decoded once; kept on disk keyed by content hash
    (``keys``) so later runs (and epochs) never re-decode. Unreadable images raise TrainingError."""
    out = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)
    missing = []
    names = []
    for i, _p in enumerate(paths):
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
        loader = decode_loader([str(paths[i]) for i in missing], size, batch_size=16, workers=workers)
        done = 0
        for pixels, errors in loader:
            check_cancel(cancel)
            for k, err in enumerate(errors):
                if err:
                    raise TrainingError(err)
                i = missing[done + k]
                out[i] = pixels[k]
                name = names[i]
                if name is not None:
                    try:
                        name.parent.mkdir(parents=True, exist_ok=True)
                        tmp = name.with_suffix(f".tmp{os.getpid()}.npy")
                        np.save(tmp, pixels[k].numpy())
                        os.replace(tmp, name)
                    except OSError:
                        pass  # a cache is an optimisation; a full cache disk is not an error
            done += len(errors)
            if progress:
                progress(TrainProgress("embedding", done, len(missing), message="decoding images"))
    return out


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


def _pixel_cache_dir() -> Path:
    return cache_dir() / "pixels"
