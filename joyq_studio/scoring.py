"""Batched, multi-worker embedding and scoring of many image files.

Worker processes decode and resize (the CPU-heavy part) and ship uint8 tensors; the
main process normalises on the device and runs the model. One bad file never stops a
run: it comes back as an error string for that path.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .console import format_duration
from .images import ImageError
from .model import JoyQuality, ModelError, model_id
from .pixels import load_uint8, normalize
from .store import StoreError, partly_saved

log = logging.getLogger(__name__)

Progress = Callable[[int, int, float], None]  # (done, total, images per second)
Cancel = Callable[[], bool]


@dataclass
class Batch:
    """Results for consecutive input indices ``start .. start+len(errors)-1``."""

    start: int
    embeddings: np.ndarray  # float32 [B, D]; rows of failed files are zeros
    scores: np.ndarray  # float32 [B]; NaN for failed files
    errors: list[str | None]  # None = ok, else one sentence naming the file


class DecodeDataset(Dataset):
    """Paths -> (uint8 [3, S, S], error sentence or ""); a failed file never stops the run."""

    def __init__(self, paths: Sequence[str | Path], size: int):
        self.paths, self.size = list(paths), size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            return load_uint8(self.paths[i], self.size), ""
        except ImageError as e:
            return torch.zeros(3, self.size, self.size, dtype=torch.uint8), str(e)
        except Exception as e:  # noqa: BLE001 - never let one file kill a run of millions
            return torch.zeros(3, self.size, self.size, dtype=torch.uint8), f"{self.paths[i]}: {e}"


def collate(items):
    return torch.stack([t for t, _ in items]), [e or None for _, e in items]


def worker_context():
    # fork is fastest, but forking a process that runs other threads (the GUI) is unsafe.
    if threading.current_thread() is threading.main_thread() and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def decode_loader(
    paths: Sequence[str | Path], size: int, batch_size: int, workers: int, pin_memory: bool = False
) -> DataLoader:
    """Batches of (uint8 pixels [B, 3, S, S], per-file errors) decoded by ``workers`` processes,
    in input order: the one decode pipeline of scoring, training's pixel cache and the benches."""
    return DataLoader(
        DecodeDataset(paths, size),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        multiprocessing_context=worker_context() if workers > 0 else None,
        prefetch_factor=4 if workers > 0 else None,
    )


def prepare_for_inference(model: JoyQuality, device: torch.device, compile: bool = False):
    """Move to device; bf16 weights on CUDA (what the model was trained in), fp32 on CPU."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = model.to(device=device, dtype=dtype).eval()
    forward = torch.compile(model.embed) if compile else model.embed
    return model, forward, dtype


def embed_paths(
    model: JoyQuality,
    paths: Sequence[str | Path],
    device: torch.device | str = "cpu",
    batch_size: int = 32,
    workers: int = 2,
    compile: bool = False,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> Iterator[Batch]:
    """Yield :class:`Batch` results in input order. Stops early (cleanly) when cancel() is true."""
    device = torch.device(device)
    paths = [str(p) for p in paths]
    if not paths:
        return
    model, forward, dtype = prepare_for_inference(model, device, compile)
    loader = decode_loader(paths, model.image_size, batch_size, workers, pin_memory=device.type == "cuda")
    t0, done = time.perf_counter(), 0
    with torch.inference_mode():
        for pixels, errors in loader:
            if cancel and cancel():
                break
            x = normalize(pixels.to(device, non_blocking=True), dtype)
            emb = forward(x)
            scores = model.score_embeddings(emb).float().cpu().numpy()
            emb = emb.float().cpu().numpy()
            bad = np.array([e is not None for e in errors])
            emb[bad] = 0.0
            scores[bad] = np.nan
            yield Batch(done, emb, scores, errors)
            done += len(errors)
            if progress:
                progress(done, len(paths), done / max(time.perf_counter() - t0, 1e-9))


ESTIMATE_IMAGES = 20  # the folder's time is estimated from at most this many first images


@dataclass(frozen=True)
class Estimate:
    """The folder's time, from the first ``measured`` images (their per-batch seconds per image)."""

    measured: int
    remaining: int
    seconds_per_image: float
    low: float  # range of the per-batch rates seen (one batch: +-50 %, an honest guess)
    high: float

    @property
    def seconds_left(self) -> float:
        return self.remaining * self.seconds_per_image

    def sentence(self) -> str:
        lo, hi = self.remaining * self.low, self.remaining * self.high
        return (
            f"estimate: {self.remaining} images left at {self.seconds_per_image:.2f} s per image (measured on the "
            f"first {self.measured} images) = about {format_duration(self.seconds_left)} "
            f"(range {format_duration(lo)} to {format_duration(hi)})"
        )


def make_estimate(batch_seconds: list[tuple[int, float]], remaining: int) -> Estimate:
    """From (images, seconds) of the first batches; the first batch pays the start-up, so it is
    left out when there are later ones."""
    timed = batch_seconds[1:] if len(batch_seconds) > 1 else batch_seconds
    count = sum(n for n, _ in timed)
    per = sum(t for _, t in timed) / max(count, 1)
    rates = [t / max(n, 1) for n, t in timed]
    low, high = (min(rates), max(rates)) if len(rates) > 1 else (per * 0.5, per * 1.5)
    return Estimate(sum(n for n, _ in batch_seconds), remaining, per, low, high)


def stratified_sample(items: Sequence[tuple[str, str]], n: int, seed: int = 0) -> list[tuple[str, str]]:
    """A random sample of ``n`` (hash, relative path) items, spread over subfolders in
    proportion to their size (every subfolder gets at least one when n allows), in path order."""
    if n >= len(items):
        return list(items)
    groups: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for item in items:
        groups[str(Path(item[1]).parent)].append(item)
    rng = random.Random(seed)
    shares = {g: n * len(members) / len(items) for g, members in groups.items()}
    take = {g: min(len(groups[g]), max(1 if n >= len(groups) else 0, math.floor(v))) for g, v in shares.items()}
    # hand out what is left by largest remainder, then by size
    order = sorted(groups, key=lambda g: (shares[g] - math.floor(shares[g]), len(groups[g])), reverse=True)
    while sum(take.values()) < n:
        for g in order:
            if sum(take.values()) < n and take[g] < len(groups[g]):
                take[g] += 1
    while sum(take.values()) > n:  # the at-least-one rule overshot: trim the largest
        g = max(take, key=lambda k: take[k])
        take[g] -= 1
    chosen = [item for g, members in groups.items() for item in rng.sample(members, take[g])]
    return sorted(chosen, key=lambda item: item[1])


@dataclass
class ScoreSummary:
    scored: int = 0
    already_done: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    cancelled: bool = False
    seconds: float = 0.0
    left_out: int = 0  # images not in the sample (scored by a later run)


def _embed_with_estimate(model, paths, device, batch_size, workers, compile, progress, cancel, on_estimate):
    """embed_paths, the first <= ESTIMATE_IMAGES images on their own (small batches) when an
    estimate is wanted, so it comes before the hours; batch starts stay indices into ``paths``."""
    if on_estimate is None or len(paths) <= ESTIMATE_IMAGES:
        yield from embed_paths(model, paths, device, batch_size, workers, compile, progress, cancel)
        return
    first = paths[:ESTIMATE_IMAGES]
    small = max(1, min(batch_size, ESTIMATE_IMAGES // 2))  # two batches: the first (start-up) is left out
    timed: list[tuple[int, float]] = []

    def shifted(offset: int) -> Progress | None:  # one progress over the whole run
        if progress is None:
            return None
        return lambda done, _total, rate: progress(offset + done, len(paths), rate)

    t0 = time.perf_counter()
    for batch in embed_paths(model, first, device, small, workers, compile, shifted(0), cancel):
        timed.append((len(batch.errors), time.perf_counter() - t0))
        yield batch
        t0 = time.perf_counter()
    if cancel and cancel():
        return
    on_estimate(make_estimate(timed, len(paths) - len(first)))
    rest = paths[len(first) :]
    for batch in embed_paths(model, rest, device, batch_size, workers, compile, shifted(len(first)), cancel):
        batch.start += len(first)
        yield batch


def _not_numbers(model: JoyQuality) -> ModelError:
    return ModelError(
        f"{model.source or 'the model'}: gives scores that are not numbers (NaN or infinite), so its "
        "weights are damaged; choose another model or version."
    )


def score_project(
    project,
    model: JoyQuality,
    device: torch.device | str = "cpu",
    batch_size: int = 32,
    workers: int = 2,
    compile: bool = False,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    sample: int | None = None,
    on_estimate: Callable[[Estimate], None] | None = None,
) -> ScoreSummary:
    """Embed+score every readable image of the project not yet scored by this model.

    Results are committed batch by batch, so an interrupted run resumes where it stopped.
    An image whose embedding for this tower is cached is re-scored by the head alone.
    ``sample``: only a random sample of that many of the images not yet scored, stratified
    by subfolder (a later run scores the rest). ``on_estimate``: called once with the time
    the rest will take, measured on the first <= ESTIMATE_IMAGES images (scored first).
    """
    t0 = time.perf_counter()
    mid = model_id(model)
    summary = ScoreSummary()
    todo = []
    done = project.scored_hashes(mid.key)
    for digest, rel in project.image_paths():
        if digest in done:
            summary.already_done += 1
        else:
            todo.append((digest, rel))
    summary.failed = [(str(project.folder / p), e) for p, e in project.errors()]

    # Cached embeddings of this tower: score them with the head, no decoding.
    cached_hashes, cached = project.embeddings(mid.tower, [h for h, _ in todo])
    if cached_hashes:
        with torch.no_grad():
            head = model.head.float().cpu()
            s = head(torch.from_numpy(cached)).squeeze(-1).numpy()
        if not np.isfinite(s).all():
            raise _not_numbers(model)
        project.save_scores(mid.key, zip(cached_hashes, s))
        summary.scored += len(cached_hashes)
        have = set(cached_hashes)
        todo = [(h, r) for h, r in todo if h not in have]

    if sample is not None and sample < len(todo):
        summary.left_out = len(todo) - sample
        todo = stratified_sample(todo, sample)

    paths = [project.folder / rel for _, rel in todo]
    for batch in _embed_with_estimate(
        model, paths, device, batch_size, workers, compile, progress, cancel, on_estimate
    ):
        rows, errors = [], []
        for k, err in enumerate(batch.errors):
            digest = todo[batch.start + k][0]
            if err is None:
                rows.append((digest, batch.embeddings[k], batch.scores[k]))
            else:
                if paths[batch.start + k].exists():  # a vanished file is reported, not marked unreadable for good
                    errors.append((digest, err))
                summary.failed.append((str(paths[batch.start + k]), err))
        if any(not np.isfinite(score) for _, _, score in rows):
            raise _not_numbers(model)
        try:
            project.save_results(mid.tower, mid.key, rows)
            project.set_errors(errors)
        except StoreError as e:
            if summary.scored:
                raise partly_saved(
                    e, f"the {summary.scored} images scored before it in this run were saved, rerun to continue"
                ) from None
            raise
        summary.scored += len(rows)
    summary.cancelled = bool(cancel and cancel())
    if not summary.cancelled:
        project.set_current_model_key(mid.key)  # what ranks and exports use from now on
    summary.seconds = time.perf_counter() - t0
    return summary
