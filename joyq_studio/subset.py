"""A diverse subset of a folder: farthest-point selection on the stored embeddings.

The JoyQuality base dataset started from a large pool cut down to a diverse subset:
start from one random image, then repeatedly add the image farthest (Euclidean, in
embedding space) from every image chosen so far. :func:`farthest_point` is that greedy
selection (Gonzalez 1985; it covers the pool within twice the best possible radius).

Cost model: each of the ``k`` picks needs every image's distance to its nearest chosen
image, ``n * d`` multiply-adds, so ``n * k * d`` in all. The textbook loop does them one
pick at a time, a matrix-vector product that reads the whole ``n x d`` float32 matrix once
a pick and is limited by memory bandwidth (about 5 G(row x dim)/s on a 2-core VM). Here
the updates are **deferred and batched** without changing the result:

* an image's distance to the chosen set only shrinks as picks are added, so its value at
  the start of a block of up to 64 picks bounds it from above. Only the images whose bound
  reaches the current farthest distance can be the next pick; they (the top of the pool,
  a few hundred rows on real data) are kept up to date pick by pick, the others wait;
* at the block's end every image is brought up to date with the block's picks in one
  matrix-matrix product (BLAS-3, compute-bound: about 60 G(row x dim)/s on the same VM,
  both cores);
* float32 distances carry rounding (bounded by ``_tolerance``); when more than one image is
  within that bound of the farthest, they are compared in float64, so each pick is the
  float64 farthest image (ties to the lowest row): the same set as the textbook float64
  loop, and independent of BLAS threads and batching.

**Random projection** (``dims``): a Gaussian projection to fewer dimensions keeps distances
within a small relative error (Johnson-Lindenstrauss), so the selection costs ``dims / D``
as much on a slightly different set; ``joyq bench subset`` measures the set's minimum
pairwise distance against the exact selection's. :func:`projected_seconds` is the cost
model with the rate measured on the VM, for the CLI's estimate before a long run.

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

from .console import format_duration
from .errors import Cancelled, JoyqError
from .store import Project

SUBSET_META = "subset_info"  # JSON: count, seed, dims, tower, created
_CHUNK = 8192  # rows per slice of the projection


class SubsetError(JoyqError):
    """A subset cannot be made; one sentence naming the folder and what is missing."""


@dataclass
class Selection:
    indices: np.ndarray  # int64, in selection order
    radius: float  # the last chosen image's distance to the others chosen (covering radius)
    rows_read: int  # distances computed (n * k for the textbook loop)
    seconds: float


#: the cost model's rate, row x dim per second: n * k * d over the whole selection's seconds,
#: measured by ``joyq bench subset`` (5,000 of 100,000 1152-d: 37.5-40.0 G/s; 2,000 of 1M:
#: 43.3 G/s; vm: 2-core AMD EPYC, load 1.2-1.7; 10,000 of 1M: 33.1 G/s at load up to 3.2;
#: docs/benchmarks.md), per-pick work included
RATE_ROWDIM_PER_S = 40e9
#: above this projected time the CLI says so and names ``--dims`` (the selection stays exact)
SLOW_SECONDS = 120.0
#: the projection the CLI suggests for a slow exact selection (``joyq bench subset``: the
#: set's minimum pairwise distance 3.5% below the exact one's on noise-like embeddings, 16%
#: below on strongly clustered ones)
SUGGESTED_DIMS = 128


def projected_seconds(n: int, count: int, d: int) -> float:
    """The cost model: ``n * k * d`` at :data:`RATE_ROWDIM_PER_S` (a 2-core VM's figure;
    a faster machine takes less)."""
    return n * min(count, n) * d / RATE_ROWDIM_PER_S


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
    random row (``seed``); exact: each pick is the row farthest from the earlier picks in
    float64 arithmetic, ties to the lowest row (see the module doc for how the work is
    deferred and batched). ``count >= n`` selects every row (in farthest-point order)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    k = min(int(count), n)
    if k <= 0:
        return Selection(np.zeros(0, np.int64), float("nan"), 0, 0.0)
    t0 = time.perf_counter()
    norms = np.einsum("ij,ij->i", x, x)
    tol = _tolerance(d, float(norms.max()))
    chosen = np.empty(k, np.int64)
    chosen[0] = np.random.default_rng(seed).integers(n)
    # best[i]: squared distance (float32) from row i to its nearest pick, for the picks made
    # before the current block; -inf for picked rows (never picked again)
    best = np.full(n, np.inf, np.float32)
    _refresh(x, norms, best, chosen[:1])
    best[chosen[0]] = -np.inf
    exact = _Exact(x, norms, k, tol)
    exact.add(int(chosen[0]))
    evals = n
    radius = float("inf")
    t = 1
    if progress:
        progress(1, k)
    while t < k:
        block = _Block(x, norms, best, tol)
        pending: list[int] = []  # picks of this block, not yet applied to the rows outside it
        while t < k and len(pending) < _BLOCK:
            if cancel and cancel():
                raise Cancelled()
            if not block.admit(chosen[t - len(pending) : t], allow_break=bool(pending)):
                break  # the candidates would spread past the block's rows: apply the picks to all first
            r, m2 = block.pick(exact)
            chosen[t] = r
            exact.add(r)
            radius = float(np.sqrt(max(m2, 0.0)))
            t += 1
            pending.append(r)
            if t < k:
                block.apply(r)
            if progress and (t % 64 == 0 or t == k):
                progress(t, k)
        evals += block.evals
        if t < k:
            evals += _refresh(x, norms, best, np.asarray(pending, np.int64))
            block.write_back()  # the block's rows: already up to date
    return Selection(chosen, radius, evals, time.perf_counter() - t0)


_BLOCK = 64  # picks whose distance updates are deferred and then applied in one matrix product
_CHUNK_ROWS = 4096  # rows per slice of that product (bounds its temporaries)
_ROUNDOFF = float(np.finfo(np.float32).eps) / 2


def _tolerance(d: int, max_norm2: float) -> float:
    """A bound on |float32 squared distance - exact| for rows of squared norm <= max_norm2:
    |n(a) + n(b) - 2 a.b| with each of the three d-term sums off by at most gamma_d times its
    terms' magnitude (Higham's bound, any summation order), plus the two final roundings."""
    gamma = d * _ROUNDOFF / (1 - d * _ROUNDOFF)
    return (2 * gamma + 4 * _ROUNDOFF) * 2 * max_norm2 * 1.01 + 1e-30


def _refresh(x: np.ndarray, norms: np.ndarray, best: np.ndarray, centres: np.ndarray) -> int:
    """best = min(best, squared distance to each of ``centres``) for every row, one matrix
    product per slice of rows. Returns the number of distances computed."""
    c = x[centres]
    cn = norms[centres]
    n = x.shape[0]
    for s in range(0, n, _CHUNK_ROWS):
        e = min(n, s + _CHUNK_ROWS)
        d2 = x[s:e] @ c.T
        d2 *= -2.0
        d2 += np.add.outer(norms[s:e], cn)
        m = d2.min(axis=1)
        np.maximum(m, 0.0, out=m)
        np.minimum(best[s:e], m, out=best[s:e])
    return n * len(centres)


class _Block:
    """The rows that may be picked during one block of picks: the top of ``best`` (values as
    of the block's start; a row's distance only shrinks as picks are added, so its value at
    the start bounds it from above). The block's rows are kept up to date pick by pick; the
    others wait for the block's end. A row joins when its start value reaches within
    ``2 tol`` of the largest up-to-date distance, so every row that could be the farthest
    is up to date when a pick is made (``tol`` bounds the float32 rounding)."""

    def __init__(self, x: np.ndarray, norms: np.ndarray, best: np.ndarray, tol: float):
        self.x, self.norms, self.best, self.tol = x, norms, best, tol
        n = x.shape[0]
        m = n if n <= 4 * _PREFIX else max(_PREFIX, n // 16)
        top = np.arange(n) if m == n else np.argpartition(best, n - m)[n - m :]
        self.order = top[np.argsort(-best[top], kind="stable")]  # by start value, largest first
        self.neg_start = -best[self.order]  # ascending, for searchsorted
        self.whole = m == n
        self.joined = 0  # the block's rows: order[:joined], in rows/xr/nr/br[:joined]
        self.rows = self._rows = np.empty(0, np.int64)
        self.xr = self._xr = np.empty((0, x.shape[1]), np.float32)
        self.nr = self._nr = np.empty(0, np.float32)
        self.br = self._br = np.empty(0, np.float32)
        self._grow(min(n, 2 * _FIRST))
        self.evals = 0

    def _grow(self, cap: int) -> None:
        """Room for ``cap`` rows in the block (the arrays are views of larger buffers)."""
        size = self.joined
        if cap <= len(self._rows):
            return
        rows, xr = np.empty(cap, np.int64), np.empty((cap, self.x.shape[1]), np.float32)
        nr, br = np.empty(cap, np.float32), np.empty(cap, np.float32)
        if size:
            rows[:size], xr[:size], nr[:size], br[:size] = self.rows, self.xr, self.nr, self.br
        self._rows, self._xr, self._nr, self._br = rows, xr, nr, br
        self._view()

    def _view(self) -> None:
        j = self.joined
        self.rows, self.xr, self.nr, self.br = self._rows[:j], self._xr[:j], self._nr[:j], self._br[:j]

    def admit(self, pending: np.ndarray, allow_break: bool) -> bool:
        """Bring in, up to date with the block's picks so far (``pending``), every row that
        could now be the farthest. False, with nothing changed, when that needs rows beyond the
        block's prefix and ``allow_break`` (the caller applies the picks to every row first)."""
        while True:
            if self.joined == 0:
                want = min(len(self.order), _FIRST)
            else:
                threshold = float(self.br.max()) - 2 * self.tol
                rest = self.neg_start[self.joined :]
                want = self.joined + int(np.searchsorted(rest, -threshold, side="right"))
                if want >= len(self.order) and not self.whole:
                    if allow_break:
                        return False
                    # a crowd of near-ties at the block's start (duplicates): every row may join
                    others = np.setdiff1d(np.arange(len(self.best)), self.order[: self.joined])
                    others = others[np.argsort(-self.best[others], kind="stable")]
                    self.order = np.concatenate([self.order[: self.joined], others])
                    self.neg_start = -self.best[self.order]
                    self.whole = True
                    continue
            if want <= self.joined:
                return True
            self._join(self.order[self.joined : want], pending)

    def _join(self, new: np.ndarray, pending: np.ndarray) -> None:
        xn = self.x[new]
        bn = self.best[new].copy()
        if len(pending):
            d2 = xn @ self.x[pending].T
            d2 *= -2.0
            d2 += np.add.outer(self.norms[new], self.norms[pending])
            m = d2.min(axis=1)
            np.maximum(m, 0.0, out=m)
            np.minimum(bn, m, out=bn)
            self.evals += len(new) * len(pending)
        j, e = self.joined, self.joined + len(new)
        if e > len(self._rows):
            self._grow(max(e, 2 * len(self._rows)))
        self._rows[j:e], self._xr[j:e], self._nr[j:e], self._br[j:e] = new, xn, self.norms[new], bn
        self.joined = e
        self._view()

    def pick(self, exact: _Exact) -> tuple[int, float]:
        """The farthest row (float64-exact, lowest row on a tie) and its squared distance."""
        top = float(self.br.max())
        near = np.flatnonzero(self.br >= top - 2 * self.tol)
        if near.size == 1:
            i = int(near[0])
            return int(self.rows[i]), top
        u = exact.best(self.rows[near])
        m2 = u.max()
        winners = self.rows[near][u == m2]
        return int(winners.min()), float(m2)

    def apply(self, r: int) -> None:
        """The block's rows' distances updated with the new pick ``r``."""
        d2 = self.nr + self.norms[r] - 2.0 * (self.xr @ self.x[r])
        np.maximum(d2, 0.0, out=d2)
        np.minimum(self.br, d2, out=self.br)
        self.br[self.rows == r] = -np.inf
        self.evals += len(self.rows)

    def write_back(self) -> None:
        self.best[self.rows] = self.br


_PREFIX = 2048  # the block's rows are drawn from the top max(_PREFIX, n/16) rows by start value
_FIRST = 256  # rows joined at the block's start (the farthest is among them)


class _Exact:
    """float64 squared distances from rows to their nearest pick, for the rows among which a
    pick must be decided beyond float32 rounding; kept per row and brought up to date with
    later picks. Only the picks whose float32 distance is within the rounding bound of the
    nearest get a float64 distance (the float64 nearest is among them)."""

    def __init__(self, x: np.ndarray, norms: np.ndarray, k: int, tol: float):
        self.x, self.norms, self.tol = x, norms, tol
        self.centres = np.empty((k, x.shape[1]), np.float32)  # the picks' rows, contiguous
        self.centre_norms = np.empty(k, np.float32)
        self.t = 0
        self.u = np.full(x.shape[0], np.inf)  # float64 distance to the nearest of the first upto picks
        self.upto = np.zeros(x.shape[0], np.int64)

    def add(self, r: int) -> None:
        self.centres[self.t] = self.x[r]
        self.centre_norms[self.t] = self.norms[r]
        self.t += 1

    def best(self, rows: np.ndarray) -> np.ndarray:
        for lo in np.unique(self.upto[rows]).tolist():  # rows last brought up to date together
            if lo < self.t:
                self._update(rows[self.upto[rows] == lo], lo)
        return self.u[rows]

    def _update(self, rows: np.ndarray, lo: int) -> None:
        """``rows``' distances brought up to date with picks lo..t-1."""
        t, tol = self.t, self.tol
        for s in range(0, len(rows), 256):
            part = rows[s : s + 256]
            d2 = self.x[part] @ self.centres[lo:t].T
            d2 *= -2.0
            d2 += np.add.outer(self.norms[part], self.centre_norms[lo:t])
            u = self.u[part]
            lim = np.minimum(u, d2.min(axis=1) + tol) + tol  # a pick beyond cannot be the nearest
            hits = d2 <= lim[:, None]
            for i in np.flatnonzero(hits.any(axis=1)).tolist():
                near = self.centres[lo + np.flatnonzero(hits[i])]
                diff = near.astype(np.float64) - self.x[part[i]].astype(np.float64)
                u[i] = min(u[i], float((diff * diff).sum(axis=1).min()))
            self.u[part] = u
            self.upto[part] = t


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
    announce: Callable[[str], None] | None = None,
) -> SubsetReport:
    """Farthest-point subset of the project's readable images embedded by ``tower`` (usually
    ``pairing.fixedk.default_tower(project)``; None: no embeddings) — not stored, see
    :func:`save_subset`. Raises SubsetError when there are no embeddings. ``announce`` gets
    one sentence before the selection starts: its size and projected time
    (:func:`plan_message`)."""
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
    if announce:
        announce(plan_message(len(found), count, matrix.shape[1], dims))
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


def plan_message(n: int, count: int, d: int, dims: int | None = None) -> str:
    """What a selection of ``count`` of ``n`` ``d``-dimensional embeddings will do and how long
    it should take; past :data:`SLOW_SECONDS` (exact only) it names ``--dims``. The selection
    itself is never changed here: an exact request stays exact."""
    k = min(count, n)
    space = d if not dims or dims >= d else dims
    how = "exact" if space == d else f"in {space} random dimensions of {d}"
    secs = projected_seconds(n, k, space)
    text = (
        f"selecting {k:,} of {n:,} embedded images by farthest-point selection ({how}): "
        f"about {format_duration(secs)} projected (n*k*d at {RATE_ROWDIM_PER_S / 1e9:.0f} G/s, a 2-core VM)"
    )
    if space == d and secs > SLOW_SECONDS and d > SUGGESTED_DIMS:
        text += (
            f"; --dims {SUGGESTED_DIMS} would take about {format_duration(projected_seconds(n, k, SUGGESTED_DIMS))} "
            "for a slightly less spread set (docs/recipe.md)"
        )
    return text


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
