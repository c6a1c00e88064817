"""A diverse subset of a folder: farthest-point selection on the stored embeddings.

The JoyQuality base dataset started from a large pool cut down to a diverse subset:
start from one random image, then repeatedly add the image farthest (Euclidean, in
embedding space) from every image chosen so far. :func:`farthest_point` is that greedy
selection (Gonzalez 1985; it covers the pool within twice the best possible radius).

Cost model: each of the ``k`` steps updates every image's distance to its nearest chosen
image, ``n * d`` multiply-adds, so ``n * k * d`` in all, limited by memory bandwidth (the
whole ``n x d`` float32 matrix is read once a step). Two things cut it down:

* **pruning, exact**: an image ``x`` whose nearest chosen image ``a`` lies at ``d(x)``
  cannot come closer to a new centre ``c`` when ``|c - a| >= 2 d(x)`` (triangle
  inequality), so only the other rows are read. It helps on clustered embeddings (real
  ones are) and does nothing on uniform noise;
* **random projection** (``dims``): a Gaussian projection to fewer dimensions keeps
  distances within a small relative error (Johnson-Lindenstrauss), so the selection runs
  ``D / dims`` times faster on a slightly different set; ``joyq bench subset`` measures the
  set's minimum pairwise distance against the exact selection's.

Deterministic for a seed. The chosen hashes are stored in the project (table
``subset_images``), in selection order, so pre-labelling and the compare session can use
them as their pool (:func:`subset_hashes`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import Cancelled, JoyqError
from .store import Project

SUBSET_META = "subset_info"  # JSON: count, seed, dims, tower, created
_CHUNK = 8192  # rows per block: bounds the temporaries at 8192 x d floats


class SubsetError(JoyqError):
    """A subset cannot be made; one sentence naming the folder and what is missing."""


@dataclass
class Selection:
    indices: np.ndarray  # int64, in selection order
    radius: float  # the last chosen image's distance to the others chosen (covering radius)
    rows_read: int  # rows whose distance was computed (n * k without pruning)
    seconds: float


def random_projection(x: np.ndarray, dims: int, seed: int = 0) -> np.ndarray:
    """``x`` (n x D) projected to ``dims`` Gaussian random dimensions (float32), scaled so
    squared distances are kept on average; ``x`` itself when ``dims >= D``."""
    x = np.asarray(x, dtype=np.float32)
    if dims >= x.shape[1]:
        return x
    proj = np.random.default_rng(seed + 1_000_003).standard_normal((x.shape[1], dims)).astype(np.float32)
    proj /= np.float32(np.sqrt(dims))
    out = np.empty((x.shape[0], dims), np.float32)
    for s in range(0, x.shape[0], _CHUNK):
        out[s : s + _CHUNK] = x[s : s + _CHUNK] @ proj
    return out


def farthest_point(
    x: np.ndarray,
    count: int,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Selection:
    """Greedy farthest-point selection of ``count`` rows of ``x`` (n x d), starting from a
    random row (``seed``); exact (see the module doc for the pruning). Ties go to the lowest
    row. ``count >= n`` selects every row (in farthest-point order)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = x.shape[0]
    k = min(int(count), n)
    if k <= 0:
        return Selection(np.zeros(0, np.int64), float("nan"), 0, 0.0)
    t0 = time.perf_counter()
    norms = np.einsum("ij,ij->i", x, x)
    best = np.full(n, np.inf, np.float32)  # squared distance to the nearest chosen row
    owner = np.zeros(n, np.int64)  # which chosen row (its position in `chosen`) that is
    chosen = np.empty(k, np.int64)
    centres = np.empty((k, x.shape[1]), np.float32)
    chosen[0] = np.random.default_rng(seed).integers(n)
    rows_read = 0
    radius = float("inf")
    for step in range(k):
        c = int(chosen[step])
        centre = centres[step] = x[c]
        if step == 0:
            todo = None  # every row
        else:
            # squared distance from the new centre to each earlier one; a row can only come
            # closer when |c - owner| < 2 d(row), i.e. cd2[owner] < 4 best
            cd2 = np.maximum(norms[chosen[:step]] + norms[c] - 2.0 * (centres[:step] @ centre), 0.0)
            todo = np.flatnonzero(cd2[owner] < 4.0 * best * np.float32(1 + 1e-5) + np.float32(1e-6))  # margin: rounding
            if todo.size > 0.6 * n:
                todo = None  # reading every row in order is faster than gathering most of them
        rows = n if todo is None else todo.size
        rows_read += rows
        for s in range(0, rows, _CHUNK):
            if todo is None:  # a contiguous block: no gather
                e = min(s + _CHUNK, n)
                d2 = norms[s:e] + norms[c] - 2.0 * (x[s:e] @ centre)
                np.maximum(d2, 0.0, out=d2)
                closer = d2 < best[s:e]
                block = np.flatnonzero(closer) + s
            else:
                rows_idx = todo[s : s + _CHUNK]
                d2 = norms[rows_idx] + norms[c] - 2.0 * (x[rows_idx] @ centre)
                np.maximum(d2, 0.0, out=d2)
                closer = d2 < best[rows_idx]
                block = rows_idx[closer]
            best[block] = d2[closer]
            owner[block] = step
        best[c] = 0.0
        if step + 1 < k:
            nxt = int(np.argmax(best))
            radius = float(np.sqrt(best[nxt]))
            chosen[step + 1] = nxt
        if progress and (step % 64 == 0 or step + 1 == k):
            progress(step + 1, k)
        if cancel and cancel():
            raise Cancelled()
    return Selection(chosen, radius, rows_read, time.perf_counter() - t0)


def min_pairwise_distance(x: np.ndarray) -> float:
    """The smallest Euclidean distance between two different rows of ``x`` (chunked)."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    if n < 2:
        return float("nan")
    norms = np.einsum("ij,ij->i", x, x)
    best = np.inf
    for s in range(0, n, 2048):
        block = x[s : s + 2048]
        d2 = norms[s : s + 2048, None] + norms[None, :] - 2.0 * (block @ x.T)
        rows = np.arange(s, s + block.shape[0])
        d2[rows - s, rows] = np.inf
        best = min(best, float(d2.min()))
    return float(np.sqrt(max(best, 0.0)))


# -- the project's subset ------------------------------------------------------------------
@dataclass
class SubsetReport:
    hashes: list[str]  # the subset, in selection order
    requested: int
    pool: int  # images with an embedding (the pool selected from)
    without_embedding: int  # readable images left out: no embedding for the tower
    tower: str
    dims: int | None
    seed: int
    seconds: float
    radius: float

    @property
    def took_all(self) -> bool:
        return self.requested >= self.pool


def select_subset(
    project: Project,
    tower: str | None,
    count: int,
    seed: int = 0,
    dims: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> SubsetReport:
    """Farthest-point subset of the project's readable images embedded by ``tower`` (usually
    ``pairing.fixedk.default_tower(project)``; None: no embeddings) — not stored, see
    :func:`save_subset`. Raises SubsetError when there are no embeddings."""
    if count < 1:
        raise SubsetError(f"The subset size must be at least 1, not {count}.")
    if dims is not None and dims < 1:
        raise SubsetError(f"The projection must keep at least 1 dimension, not {dims}.")
    readable = [h for h, _ in project.image_paths()]
    if not tower:
        raise SubsetError(f"{project.folder}: has no stored embeddings; run `joyq score` on it first.")
    found, matrix = project.embeddings(tower, readable)
    if not found:
        raise SubsetError(f"{project.folder}: no readable image has an embedding from {tower}; run `joyq score` first.")
    x = random_projection(matrix, dims, seed) if dims else matrix
    sel = farthest_point(x, count, seed=seed, progress=progress, cancel=cancel)
    return SubsetReport(
        [found[i] for i in sel.indices],
        count,
        len(found),
        len(readable) - len(found),
        tower,
        dims if dims and dims < matrix.shape[1] else None,
        seed,
        sel.seconds,
        sel.radius,
    )


def save_subset(project: Project, report: SubsetReport) -> None:
    """Make ``report``'s images the project's subset (replacing an earlier one)."""
    info = {
        "count": len(report.hashes),
        "requested": report.requested,
        "seed": report.seed,
        "dims": report.dims,
        "tower": report.tower,
        "created": time.time(),
    }
    with project.transaction():
        project.db.execute("DELETE FROM subset_images")
        project.db.executemany(
            "INSERT INTO subset_images(hash, rank) VALUES (?, ?)", ((h, i) for i, h in enumerate(report.hashes))
        )
        project.set_meta(SUBSET_META, json.dumps(info))


def subset_hashes(project: Project) -> list[str]:
    """The project's stored subset in selection order (empty when none was made)."""
    return [h for (h,) in project.db.execute("SELECT hash FROM subset_images ORDER BY rank")]


def subset_info(project: Project) -> dict | None:
    raw = project.get_meta(SUBSET_META)
    return json.loads(raw) if raw else None
