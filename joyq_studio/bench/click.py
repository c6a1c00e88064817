"""`joyq bench click`: click-to-next-pair latency of the real compare session.

Drives :class:`~joyq_studio.compare.CompareSession` (a real SQLite project holding N images
and every click, the real live Bayesian head) on synthetic 1152-d embeddings (scoring 100k
real images is not possible here) with a simulated rater, at 2k, 20k and 100k images:

* click to next pair: ``record`` (the durable commit) + ``next_pair``, median / p95 / p99,
  with the update running beside the picker on the session's worker thread;
* the background update's own time per click (median / p95);
* clicks-to-accuracy: the live head's agreement with the rater's true taste on fixed pairs
  of images, every ``--every`` clicks, for the background update and the synchronous one
  (update inline before the next pair) on the same seeds.

The rater "looks" ``--think-ms`` at each pair before clicking (people take a second or more;
the default is shorter so the run is short and the update has less slack).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DIM = 1152
SIZES = (2_000, 20_000, 100_000)
RATER_SLOPE = 4.0  # the rater's logistic slope on the true score difference (per true SD)
BASE_ANGLE = 1.1  # radians between the starting head and the true taste
N_EVAL = 4000


@dataclass
class Rater:
    """The simulated world: embeddings, the rater's true taste, the starting head."""

    E: np.ndarray
    w_true: np.ndarray
    w0: np.ndarray
    eval_i: np.ndarray
    eval_j: np.ndarray
    rng: np.random.Generator

    def answer(self, i: int, j: int) -> float:
        x = (self.E[i].astype(np.float64) - self.E[j]) @ self.w_true
        return 1.0 if self.rng.random() < 1.0 / (1.0 + math.exp(-RATER_SLOPE * x)) else 0.0

    def agreement(self, w: np.ndarray) -> float:
        """Share of the fixed evaluation pairs that ``w`` orders as the true taste does."""
        x = self.E[self.eval_i].astype(np.float64) - self.E[self.eval_j]
        return float(np.mean(np.sign(x @ w) == np.sign(x @ self.w_true)))


def make_rater(n: int, d: int = DIM, seed: int = 0) -> Rater:
    rng = np.random.default_rng([seed, 1919])
    E = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, 8192):  # float32 in chunks: 100k x 1152 without a float64 copy
        E[s : s + 8192] = rng.standard_normal((min(8192, n - s), d), dtype=np.float32)
    w = rng.normal(size=d)
    u = rng.normal(size=d)
    u -= w * (u @ w) / (w @ w)
    w /= np.linalg.norm(w)
    u /= np.linalg.norm(u)
    w0 = math.cos(BASE_ANGLE) * w + math.sin(BASE_ANGLE) * u
    ei, ej = rng.integers(0, n, N_EVAL), rng.integers(0, n, N_EVAL)
    ok = ei != ej
    return Rater(E, w, w0, ei[ok], ej[ok], np.random.default_rng([seed, 7]))


def synthetic_project(folder: Path, n: int):
    """A real project (SQLite) listing ``n`` images named by fake content hashes; returns it."""
    from ..store import Project

    folder.mkdir(parents=True, exist_ok=True)
    project = Project(folder)
    hashes = [f"{k:064x}" for k in range(n)]
    with project.transaction():
        project.db.executemany(
            "INSERT OR REPLACE INTO files(path, hash, size, mtime_ns) VALUES (?, ?, 1, 0)",
            ((f"img/{k:07d}.jpg", h) for k, h in enumerate(hashes)),
        )
        project.db.executemany(
            "INSERT OR IGNORE INTO images(hash, width, height, bytes, error) VALUES (?, 64, 64, 1, NULL)",
            ((h,) for h in hashes),
        )
    return project


def _quantiles(xs: list[float]) -> tuple[float, float, float]:
    a = np.asarray(xs) * 1000.0
    return float(np.median(a)), float(np.percentile(a, 95)), float(np.percentile(a, 99))


def run_once(n: int, clicks: int, background: bool, seed: int, think_ms: float, every: int, workdir: Path) -> dict:
    """One session of ``clicks`` clicks; latencies in seconds and the accuracy curve."""
    from ..compare import CompareSession

    rater = make_rater(n, seed=seed)
    project = synthetic_project(workdir / f"n{n}-s{seed}-{'bg' if background else 'sync'}", n)
    hashes = [h for h, _ in project.image_paths()]
    index = {h: k for k, h in enumerate(hashes)}
    t_open = time.perf_counter()
    cs = CompareSession(
        project, base_head=(rater.w0, 0.0), embeddings=(hashes, rater.E), background=background, source="live"
    )
    open_s = time.perf_counter() - t_open  # the caller (the app's GUI thread) is blocked this long
    cs.wait()  # a background session builds its source on the worker: clicks start once it is in
    ready_s = time.perf_counter() - t_open
    latencies: list[float] = []
    curve: list[tuple[int, float]] = [(0, rater.agreement(rater.w0))]
    try:
        pair = cs.next_pair()
        for k in range(1, clicks + 1):
            assert pair is not None
            time.sleep(think_ms / 1000.0)
            outcome = rater.answer(index[pair.left], index[pair.right])
            t0 = time.perf_counter()
            cs.record(pair, outcome)
            nxt = cs.next_pair()
            latencies.append(time.perf_counter() - t0)
            assert nxt is None or (nxt.left, nxt.right) not in ((pair.left, pair.right), (pair.right, pair.left))
            pair = nxt
            if k % every == 0:
                cs.wait()  # untimed: the curve is about learning, not speed
                model = getattr(cs.source, "model", None)
                if model is not None:
                    curve.append((k, rater.agreement(model.w)))
        cs.wait()
        stored = project.comparison_count()
    finally:
        cs.close()
        project.close()
    return {
        "n": n,
        "background": background,
        "seed": seed,
        "open_s": open_s,
        "ready_s": ready_s,
        "latency": latencies,
        "update": list(cs.update_seconds),
        "curve": curve,
        "stored": stored,
        "redraws": cs.redraws,
        "busy": cs.busy_pairs,
    }


def report(rows: list[dict], think_ms: float) -> str:
    lines = [
        f"click to next pair (record + next_pair), rater looks {think_ms:.0f} ms at each pair; ms",
        "",
        "| images | update | clicks | median | p95 | p99 | update median | update p95 | open s (blocked)"
        " | source ready s | redraws | random (busy) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n in sorted({r["n"] for r in rows}):
        for bg in (True, False):
            sel = [r for r in rows if r["n"] == n and r["background"] == bg]
            if not sel:
                continue
            lat = [x for r in sel for x in r["latency"]]
            upd = [x for r in sel for x in r["update"]]
            med, p95, p99 = _quantiles(lat)
            um, u95, _ = _quantiles(upd) if upd else (math.nan,) * 3
            lines.append(
                f"| {n:,} | {'background' if bg else 'synchronous'} | {len(lat)} | {med:.1f} | {p95:.1f} | "
                f"{p99:.1f} | {um:.1f} | {u95:.1f} | {np.median([r['open_s'] for r in sel]):.2f} | "
                f"{np.median([r['ready_s'] for r in sel]):.1f} | "
                f"{sum(r['redraws'] for r in sel)} | {sum(r['busy'] for r in sel)} |"
            )
    lines += [
        "",
        "learning: agreement of the live head with the true taste on fixed pairs (mean over seeds;",
        "95% interval of the mean difference background - synchronous, paired by seed and click count)",
        "",
        "| images | clicks | background | synchronous | difference |",
        "|---|---|---|---|---|",
    ]
    for n in sorted({r["n"] for r in rows}):
        bgc = {r["seed"]: dict(r["curve"]) for r in rows if r["n"] == n and r["background"]}
        syc = {r["seed"]: dict(r["curve"]) for r in rows if r["n"] == n and not r["background"]}
        seeds = sorted(set(bgc) & set(syc))
        if not seeds:
            continue
        for k in sorted(bgc[seeds[0]]):
            a = np.array([bgc[s].get(k, math.nan) for s in seeds])
            b = np.array([syc[s].get(k, math.nan) for s in seeds])
            d = a - b
            half = 1.96 * float(np.std(d, ddof=1)) / math.sqrt(len(d)) if len(d) > 1 else math.nan
            lines.append(
                f"| {n:,} | {k} | {a.mean():.3f} | {b.mean():.3f} | {d.mean():+.3f} ± {half:.3f} ({len(d)} seeds) |"
            )
    return "\n".join(lines)


def bench_click(args) -> int:
    from .common import machine_name

    sizes = [int(s) for s in str(args.sizes).split(",") if s.strip()]
    if args.quick:
        sizes, clicks, seeds, every = [min(sizes)], min(args.clicks, 60), 1, 20
    else:
        clicks, seeds, every = args.clicks, args.seeds, args.every
    rows = []
    with tempfile.TemporaryDirectory(prefix="joyq-bench-click-") as tmp:
        for n in sizes:
            for seed in range(seeds):
                for bg in (True, False):
                    t0 = time.perf_counter()
                    r = run_once(n, clicks, bg, seed, args.think_ms, every, Path(tmp))
                    med, p95, p99 = _quantiles(r["latency"])
                    print(
                        f"n={n:,} seed={seed} {'background' if bg else 'synchronous'}: median {med:.1f} ms, "
                        f"p95 {p95:.1f}, p99 {p99:.1f}; {r['stored']} clicks stored; "
                        f"{time.perf_counter() - t0:.0f} s",
                        flush=True,
                    )
                    rows.append(r)
    print(f"\nMachine: {machine_name()}\n")
    print(report(rows, args.think_ms))
    return 0


def register(bsub) -> None:
    sp = bsub.add_parser(
        "click",
        help="click-to-next-pair latency of the real compare session (SQLite, live head, "
        "synthetic 1152-d embeddings) at 2k/20k/100k images, and learning vs the synchronous update",
    )
    sp.add_argument("--sizes", default=",".join(str(s) for s in SIZES), help="image counts (default 2000,20000,100000)")
    sp.add_argument("--clicks", type=int, default=300, help="clicks per session (default 300)")
    sp.add_argument("--seeds", type=int, default=2, help="seeds per size and mode (default 2)")
    sp.add_argument("--every", type=int, default=50, help="accuracy checkpoint every this many clicks (default 50)")
    sp.add_argument("--think-ms", type=float, default=150.0, help="how long the rater looks at a pair (default 150)")
    sp.add_argument("--quick", action="store_true", help="CI-sized: the smallest size, 60 clicks, 1 seed")
    sp.set_defaults(handler="joyq_studio.bench.click:bench_click")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="joyq bench click", description=__doc__.split("\n")[0])
    register(ap.add_subparsers(dest="bench"))
    return bench_click(ap.parse_args(["click", *(argv or [])]))
