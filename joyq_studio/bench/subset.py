"""`joyq bench subset`: farthest-point selection of K of N embeddings (exact and projected).

The embeddings are synthetic and clustered like real ones (unit vectors around
``--clusters`` random directions, a share of them pure noise); the exact selection is
timed, then each random projection, and every selected set's minimum pairwise distance is
measured in the *original* space (the quantity farthest-point selection maximises). The
cost model ``n * k * d`` (rows x picks x dimensions over the whole run's seconds, the rate
``subset.RATE_ROWDIM_PER_S`` is set from) gives the projected time for 10k of 1M.
``--clusters 0`` draws uniform noise (unit vectors in random directions) instead.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from ..subset import farthest_point, min_pairwise_distance, random_projection
from .common import machine_name


def synthetic_embeddings(n: int, dim: int, clusters: int, noise_share: float, seed: int = 0) -> np.ndarray:
    """Unit vectors: ``1 - noise_share`` of them near one of ``clusters`` directions (cosine
    to a cluster-mate 0.6-0.9, to others ~0, as between SigLIP embeddings of unlike images);
    ``clusters == 0``: all uniform noise."""
    rng = np.random.default_rng(seed)
    if clusters == 0:
        clusters, noise_share = 1, 1.0
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    x = np.empty((n, dim), np.float32)
    which = rng.integers(clusters, size=n)
    noisy = rng.random(n) < noise_share
    for s in range(0, n, 8192):
        e = min(n, s + 8192)
        block = rng.standard_normal((e - s, dim)).astype(np.float32)
        spread = rng.uniform(0.3, 0.8, size=(e - s, 1)).astype(np.float32)
        block = np.where(noisy[s:e, None], block, centres[which[s:e]] + spread * block)
        x[s:e] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return x


def bench_subset(args) -> int:
    n, k, dim = args.n, args.count, args.dim
    print(f"machine: {machine_name()}")
    shape = f"{args.clusters} clusters, {args.noise:.0%} unclustered" if args.clusters else "uniform noise"
    print(f"data: {n:,} synthetic {dim}-d unit embeddings, {shape}; select {k:,}; seed {args.seed}")
    t0 = time.perf_counter()
    x = synthetic_embeddings(n, dim, args.clusters, args.noise, args.seed)
    print(f"generated in {time.perf_counter() - t0:.1f} s")

    # exact: timed on the first ``exact_count`` picks (a greedy run's first m picks are the
    # m-pick run), then scaled to ``count`` (the cost is linear in k)
    m = min(args.exact_count or k, k)
    runs: list[tuple[str, float, float, float, float]] = []  # name, seconds (for k), work share, min dist, rate
    exact_times = []
    sel = None
    for _ in range(args.repeats):
        sel = farthest_point(x, m, seed=args.seed)
        exact_times.append(sel.seconds)
    assert sel is not None
    exact_min = min_pairwise_distance(x[sel.indices])
    t_exact = statistics.median(exact_times)
    runs.append(("exact", t_exact * k / m, sel.rows_read / (n * m), exact_min, n * m * dim / t_exact))
    for dims in args.dims:
        t1 = time.perf_counter()
        xp = random_projection(x, dims, args.seed)
        t_proj = time.perf_counter() - t1
        s = farthest_point(xp, k, seed=args.seed)
        runs.append(
            (
                f"projected to {dims}",
                t_proj + s.seconds,
                s.rows_read / (n * k),
                min_pairwise_distance(x[s.indices[:m]]),
                n * k * min(dims, dim) / s.seconds,
            )
        )
    if m < k:
        print(f"exact: timed on its first {m:,} picks and scaled to {k:,} (linear in k)")
    print(f"min pairwise distance: of the first {m:,} picks, in the original {dim}-d space")
    print()
    print(
        "| selection | time (s) | distances computed (share of n*k) | min pairwise distance (original space) "
        "| vs exact |"
    )
    print("|---|---|---|---|---|")
    for name, secs, share, md, _ in runs:
        print(f"| {name} | {secs:.1f} | {share:.1%} | {md:.4f} | {md / exact_min:.3f} |")
    print()
    rate = runs[0][4]
    big_n, big_k = 1_000_000, 10_000
    print(f"cost model: n*k*d; measured {rate / 1e9:.1f} G(row x dim)/s over the whole exact run")
    print(
        f"projected 10k of 1M at {dim}-d: {big_n * big_k * dim / rate / 60:.1f} min exact "
        f"(matrix {big_n * dim * 4 / 2**30:.1f} GiB float32)"
    )
    for (name, _, _, _, prate), dims in zip(runs[1:], args.dims, strict=True):
        print(f"projected 10k of 1M {name}: {big_n * big_k * dims / prate / 60:.1f} min ({prate / 1e9:.1f} G/s)")
    return 0
