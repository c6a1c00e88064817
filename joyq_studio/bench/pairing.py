"""``joyq bench pairing``: simulate raters and compare pair-selection strategies.

No humans needed: each seed draws hidden true scores, a simulated noisy rater, synthetic
embeddings and model priors; every strategy is run on the same world (paired seeds) and its
final ranking is compared with the truth at several budgets.

Settings
--------
asap   The published ASAP protocol (Mikhailiuk et al. 2021): n = 20 and 200 items, true
       scores U[0, 5], rater P(i beats j) = Phi((s_i - s_j) / 1.4865), budgets in standard
       trials (one trial = n (n - 1) / 2 comparisons). Also reports RMSE of z-scored scores.
app    App scale: n = 1,000 and 10,000, true logits ~ N(0, 1.5^2), rater
       P(i beats j) = 0.05 / 2 + 0.95 sigmoid(t_i - t_j) (5% lapses), embeddings = content
       cluster + noise, model priors whose Spearman with the truth is 0, 0.75 or 0.9.
       Budgets in comparisons per image m / n (each image then takes part in 2 m / n).
speed  ``next_pair`` / ``record`` p50 and p99 at 100k images, replay of 5k comparisons.

Strategies
----------
random        uniformly random pairs (with replacement).
fixed-k4      the original JoyQuality design from THE fixed-k builder (``pairing.fixedk``,
              near share 0.7, the original recipe): rounds in which every image is paired,
              the partner an embedding neighbour for 70% of the pairs, else random
              (random partners without embeddings).
ours-noprior  ``PairSelector`` with default priors N(0, 1).
ours[-rho]    ``PairSelector.from_model_scores`` with a model prior; the temperature is
              refit and all comparisons replayed after 16, 32, 64, ... comparisons (a
              "retrain") and at every reported budget.

The final ranking of every strategy is the same estimator: the MAP Bradley-Terry fit of all
its comparisons under its own prior (N(0, 1), or the model prior for ``ours``).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from joyq_studio.metrics import rankdata
from joyq_studio.metrics import spearman as _spearman
from joyq_studio.pairing import PairSelector
from joyq_studio.pairing.fixedk import ORIGINAL_NEAR_SHARE

from .worlds import APP_PRIORS, fixed_k_index_pairs
from .worlds import ScoreWorld as World
from .worlds import score_world as make_world

ASAP_BUDGETS = (0.25, 0.5, 1, 2, 3, 5, 10)  # standard trials (0.25 only to interpolate ratios)
APP_BUDGETS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 16)  # comparisons per image, m / n
SELECTOR_KWARGS: dict = {}
"""Extra keyword arguments for every PairSelector the benchmark builds (for ablations)."""


# ----------------------------------------------------------------------------- worlds
# (one module of simulated worlds for the taste and pairing benchmarks: bench/worlds.py)


# ----------------------------------------------------------------------------- estimator


def bt_map(
    n: int,
    i: np.ndarray,
    j: np.ndarray,
    o: np.ndarray,
    prior_mu: np.ndarray | float = 0.0,
    prior_sigma: np.ndarray | float = 1.0,
    theta0: np.ndarray | None = None,
    iters: int = 30,
) -> np.ndarray:
    """MAP Bradley-Terry logits by damped Newton with preconditioned conjugate gradients.

    Minimises  f(t) = sum_k [log(1 + e^{d_k}) - o_k d_k] + sum_i (t_i - m_i)^2 / (2 s_i^2),
    d_k = t_{i_k} - t_{j_k}. The Hessian L_w + diag(1/s^2) (L_w: Laplacian of the comparison
    graph weighted by p(1-p)) is only touched through matrix-vector products (bincount).
    """
    m = np.broadcast_to(np.asarray(prior_mu, float), (n,))
    prec = 1.0 / np.square(np.broadcast_to(np.asarray(prior_sigma, float), (n,)))
    t = m.copy() if theta0 is None else theta0.astype(float).copy()

    def f(t: np.ndarray) -> float:
        d = t[i] - t[j]
        return float(np.sum(np.logaddexp(0.0, d) - o * d) + 0.5 * np.sum(prec * (t - m) ** 2))

    fx = f(t)
    for _ in range(iters):
        d = t[i] - t[j]
        p = 0.5 * (1.0 + np.tanh(0.5 * d))
        r = p - o
        g = np.bincount(i, r, n) - np.bincount(j, r, n) + prec * (t - m)
        if np.max(np.abs(g)) < 1e-6:
            break
        w = p * (1.0 - p)
        diag = np.bincount(i, w, n) + np.bincount(j, w, n) + prec

        def hv(v: np.ndarray, w: np.ndarray = w) -> np.ndarray:
            u = w * (v[i] - v[j])
            return np.bincount(i, u, n) - np.bincount(j, u, n) + prec * v

        x = np.zeros(n)
        res = -g
        zr = res / diag
        dirn = zr.copy()
        rz = float(res @ zr)
        for _ in range(60):
            hd = hv(dirn)
            alpha = rz / float(dirn @ hd)
            x += alpha * dirn
            res -= alpha * hd
            if np.max(np.abs(res)) < 1e-8:
                break
            zr = res / diag
            rz, rz_old = float(res @ zr), rz
            dirn = zr + (rz / rz_old) * dirn
        step = 1.0
        for _ in range(20):
            fn = f(t + step * x)
            if fn <= fx:
                break
            step *= 0.5
        t, fx = t + step * x, fn
    return t


# ----------------------------------------------------------------------------- metrics


def rank_avg(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties get their average rank (``metrics.rankdata``)."""
    return np.asarray(rankdata(np.asarray(x, dtype=np.float64)), dtype=np.float64)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """THE Spearman (``metrics.spearman``); 0 instead of NaN for a constant ranking (an
    estimate before any comparison), so medians over seeds stay defined."""
    r = _spearman(x, y)
    return 0.0 if math.isnan(r) else r


def kendall(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall tau-b (scipy's O(n log n) when installed, else O(n^2) numpy in chunks)."""
    try:
        from scipy.stats import kendalltau

        t = kendalltau(x, y).statistic
        return 0.0 if not np.isfinite(t) else float(t)
    except ImportError:
        x, y = np.asarray(x, float), np.asarray(y, float)
        con = tx = ty = 0.0
        for s in range(0, len(x), 512):
            sx = np.sign(x[s : s + 512, None] - x[None, :])
            sy = np.sign(y[s : s + 512, None] - y[None, :])
            con += float(np.sum(sx * sy))
            tx += float(np.sum(sx != 0))
            ty += float(np.sum(sy != 0))
        return con / math.sqrt(tx * ty) if tx * ty > 0 else 0.0


def evaluate(world: World, est: np.ndarray) -> dict[str, float]:
    """Spearman, Kendall, +-1 decile-bucket accuracy, held-out pair accuracy, z-RMSE."""
    n = world.n
    bt = np.minimum((10 * (rank_avg(world.truth) - 0.5) / n).astype(int), 9)
    be = np.minimum((10 * (rank_avg(est) - 0.5) / n).astype(int), 9)
    d = est[world.eval_i] - est[world.eval_j]
    vote = 0.5 * (np.sign(d) + 1.0)
    zt = (world.truth - world.truth.mean()) / world.truth.std()
    sd = est.std()
    ze = (est - est.mean()) / sd if sd > 0 else np.zeros(n)
    return {
        "spearman": spearman(est, world.truth),
        "kendall": kendall(est, world.truth),
        "bucket": float(np.mean(np.abs(bt - be) <= 1)),
        "heldout": float(np.mean(1.0 - np.abs(vote - world.eval_o))),
        "rmse": float(np.sqrt(np.mean((ze - zt) ** 2))),
    }


# ----------------------------------------------------------------------------- strategies


def _random_pairs(world: World, m: int, rng: np.random.Generator):
    """m uniform pairs of distinct items (a prefix of a longer draw is the same draw)."""
    n = world.n
    x = rng.integers(0, n * (n - 1), m)
    i = x // (n - 1)
    return i, (i + 1 + x % (n - 1)) % n


def _fixed_k_pairs(world: World, m: int, rng: np.random.Generator, near_share: float = ORIGINAL_NEAR_SHARE):
    """The original design's pairs (near share 0.7) from THE fixed-k builder, pairing.fixedk."""
    return fixed_k_index_pairs(m, np.arange(world.n), world.embeddings, near_share, int(rng.integers(0, 2**31)))


def run_batch(world, strategy, checkpoints, seed) -> list[dict]:
    """random / fixed-k: draw all pairs up front, evaluate prefixes."""
    rng = np.random.default_rng([seed, 11 if strategy == "random" else 12])
    mmax = checkpoints[-1]
    i, j = (_random_pairs if strategy == "random" else _fixed_k_pairs)(world, mmax, rng)
    u = np.random.default_rng([seed, 14]).random(mmax)
    o = (u < world.prob(i, j)).astype(np.float64)
    out, theta = [], None
    for m in checkpoints:
        theta = bt_map(world.n, i[:m], j[:m], o[:m], 0.0, 1.0, theta)
        out.append({"m": m, **evaluate(world, theta)})
    return out


def run_selector(world, prior_rho, checkpoints, seed) -> list[dict]:
    """Drive PairSelector through its public API against the simulated rater."""
    rng = np.random.default_rng([seed, 13, int(100 * (prior_rho if prior_rho is not None else 9))])
    if prior_rho is None:
        scores = None
        sel = PairSelector(world.n, embeddings=world.embeddings, seed=seed, **SELECTOR_KWARGS)
    else:
        scores = world.scores[prior_rho]
        sel = PairSelector.from_model_scores(scores, [], embeddings=world.embeddings, seed=seed, **SELECTOR_KWARGS)
    mmax = checkpoints[-1]
    u = rng.random(mmax)
    cps = set(checkpoints)
    refit = {2**k for k in range(4, 40)} | cps
    out, theta = [], None
    for m in range(1, mmax + 1):
        i, j = sel.next_pair()
        sel.record(i, j, 1.0 if u[m - 1] < world.prob1(i, j) else 0.0)
        if scores is not None and m in refit:
            sel.set_model_scores(scores)  # a "retrain": refit T, reset priors, replay
        if m in cps:
            h = np.array([c[:3] for c in sel.history])
            theta = bt_map(
                world.n,
                h[:, 0].astype(np.int64),
                h[:, 1].astype(np.int64),
                h[:, 2],
                sel.prior_mu,
                sel.prior_sigma,
                theta,
            )
            out.append({"m": m, **evaluate(world, theta), **consistency(world, sel, scores)})
    return out


def consistency(world: World, sel: PairSelector, scores: np.ndarray | None) -> dict[str, float]:
    """The live rater-consistency numbers, and what the simulated rater should give.

    A rater with P(i beats j) = p agrees with itself on a repeat with prob. p^2 + (1-p)^2.
    """
    rep = [(i, j) for i, j, _, kind in sel.history if kind == "repeat"]
    p = world.prob(np.array([r[0] for r in rep], dtype=np.int64), np.array([r[1] for r in rep], dtype=np.int64))
    return {
        "self_agree": sel.self_agreement(),
        "self_agree_expected": float(np.mean(p * p + (1 - p) ** 2)) if rep else math.nan,
        "n_repeats": float(len(rep)),
        "model_agree": sel.model_agreement(scores, last_n=200) if scores is not None else math.nan,
    }


# ----------------------------------------------------------------------------- runner


@dataclass(frozen=True)
class Block:
    """One table: a setting at one n, its budgets (reported units) and strategies."""

    setting: str
    n: int
    budgets: tuple[float, ...]
    strategies: tuple[str, ...]
    seeds: int

    def to_m(self, b: float) -> int:
        unit = self.n * (self.n - 1) / 2 if self.setting == "asap" else self.n
        return max(1, round(b * unit))

    @property
    def unit(self) -> str:
        return "trials" if self.setting == "asap" else "cmp/img"


def _strategy_run(block: Block, world: World, strategy: str, seed: int) -> list[dict]:
    cps = [block.to_m(b) for b in block.budgets]
    if strategy in ("random", "fixed-k4"):
        rows = run_batch(world, strategy, cps, seed)
    elif strategy == "ours-noprior" or (strategy == "ours" and block.setting == "asap"):
        rows = run_selector(world, None, cps, seed)
    else:
        rows = run_selector(world, float(strategy.split("rho")[1]), cps, seed)
    for r, b in zip(rows, block.budgets):
        r.update(setting=block.setting, n=block.n, strategy=strategy, seed=seed, budget=b)
    return rows


def _seed_task(args) -> list[dict]:
    block, seed = args
    world = make_world(block.setting, block.n, seed)
    rows = []
    for s in block.strategies:
        t0 = time.perf_counter()
        rr = _strategy_run(block, world, s, seed)
        for r in rr:
            r["seconds"] = time.perf_counter() - t0
        rows += rr
    return rows


def blocks_for(setting: str, quick: bool, seeds: int, large_seeds: int, long: bool = False) -> list[Block]:
    """The (setting, n) blocks of a run.

    full:  asap n=20 (5x seeds: its Spearman is coarse), asap n=200 to 5 trials (10 with
           ``long``), app n=1,000 to 16 cmp/img, app n=10,000 with ``large_seeds`` seeds to
           4 cmp/img (16 with ``long``).
    quick: asap n=20, asap n=200 to 1 trial, app n=1,000 to 8 cmp/img.
    """
    out = []
    strat: tuple[str, ...]
    if setting in ("asap", "all"):
        strat = ("random", "fixed-k4", "ours")
        out.append(Block("asap", 20, ASAP_BUDGETS, strat, seeds if quick else 5 * seeds))
        b200 = ASAP_BUDGETS[:3] if quick else (ASAP_BUDGETS if long else ASAP_BUDGETS[:-1])
        out.append(Block("asap", 200, b200, strat, seeds))
    if setting in ("app", "all"):
        strat = ("random", "fixed-k4", "ours-noprior") + tuple(f"ours-rho{r:g}" for r in APP_PRIORS)
        out.append(Block("app", 1000, APP_BUDGETS[:-1] if quick else APP_BUDGETS, strat, seeds))
        if not quick:
            out.append(Block("app", 10_000, APP_BUDGETS if long else APP_BUDGETS[:-2], strat, min(seeds, large_seeds)))
    return out


def run_blocks(blocks: list[Block], jobs: int, log=print) -> list[dict]:
    tasks = [(b, s) for b in blocks for s in range(b.seeds)]
    rows: list[dict] = []
    t0 = time.perf_counter()
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as ex:
            for k, r in enumerate(ex.map(_seed_task, tasks)):
                rows += r
                log(
                    f"  [{k + 1}/{len(tasks)}] {tasks[k][0].setting} n={tasks[k][0].n} seed {tasks[k][1]} "
                    f"({time.perf_counter() - t0:.0f}s)"
                )
    else:
        for k, t in enumerate(tasks):
            rows += _seed_task(t)
            log(f"  [{k + 1}/{len(tasks)}] {t[0].setting} n={t[0].n} seed {t[1]} ({time.perf_counter() - t0:.0f}s)")
    return rows


# ----------------------------------------------------------------------------- reporting


def _median(rows, block, strategy, budget, metric) -> float:
    v = [
        r[metric]
        for r in rows
        if r["setting"] == block.setting and r["n"] == block.n and r["strategy"] == strategy and r["budget"] == budget
    ]
    return float(np.median(v)) if v else math.nan


def _paired(rows, block, a, b, budget, metric="spearman") -> np.ndarray:
    """Per-seed differences a - b at one budget."""
    get = lambda s: {
        r["seed"]: r[metric]
        for r in rows
        if r["setting"] == block.setting and r["n"] == block.n and r["strategy"] == s and r["budget"] == budget
    }
    ra, rb = get(a), get(b)
    return np.array([ra[k] - rb[k] for k in sorted(ra) if k in rb])


def _reach_budget(budgets, curve, target) -> float:
    """Smallest budget at which a (log-budget interpolated) curve reaches ``target``."""
    if curve[0] >= target:
        return budgets[0]
    for k in range(1, len(budgets)):
        if curve[k] >= target:
            lo, hi = math.log(budgets[k - 1]), math.log(budgets[k])
            f = (target - curve[k - 1]) / (curve[k] - curve[k - 1])
            return math.exp(lo + f * (hi - lo))
    return math.inf


def tables(rows: list[dict], blocks: list[Block]) -> tuple[str, list[str]]:
    """Markdown tables of medians and a list of target verdicts."""
    md, verdicts = [], []
    consist = [
        "### rater consistency at the largest budget (medians)\n",
        (
            "| block | strategy | budget | repeats | self-agreement | expected for this rater "
            "| model agreement, last 200 |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    metrics = ["spearman", "kendall", "bucket", "heldout"]
    for bl in blocks:
        ms = metrics + (["rmse"] if bl.setting == "asap" else [])
        md.append(f"### {bl.setting} n={bl.n:,} ({bl.seeds} paired seeds, medians; budget in {bl.unit})\n")
        head = "| strategy | metric | " + " | ".join(f"{b:g}" for b in bl.budgets) + " |"
        md += [head, "|" + "---|" * (len(bl.budgets) + 2)]
        for metric in ms:
            for s in bl.strategies:
                vals = [_median(rows, bl, s, b, metric) for b in bl.budgets]
                md.append(f"| {s} | {metric} | " + " | ".join(f"{v:.3f}" for v in vals) + " |")
        md.append("")
        # targets
        ours = [s for s in bl.strategies if s.startswith("ours")]
        for s in ours:
            paired = [_paired(rows, bl, s, "random", b) for b in bl.budgets]
            diffs = [float(np.median(p)) for p in paired]
            means = [float(np.mean(p)) for p in paired]
            ses = [float(np.std(p, ddof=1) / math.sqrt(len(p))) if len(p) > 1 else math.nan for p in paired]
            k = int(np.argmin(diffs))
            # a negative median can be noise where every strategy is as good as random
            # (e.g. all pairs fresh at tiny budgets): say whether any deficit is significant
            worse = [f"{b:g}" for b, m, e in zip(bl.budgets, means, ses) if m + 2 * e < 0]
            verdicts.append(
                f"{bl.setting} n={bl.n}: {s} never worse than random; median paired "
                f"dSpearman per budget: "
                + ", ".join(f"{d:+.3f}" for d in diffs)
                + f" (worst at {bl.budgets[k]:g}: mean {means[k]:+.3f} +- {ses[k]:.3f} SE)"
                + f": {'MET' if min(diffs) >= 0 else 'NOT MET'}"
                + (
                    f"; significantly worse (mean + 2 SE < 0) at {', '.join(worse)}"
                    if worse
                    else "; significantly worse (mean + 2 SE < 0) at no budget"
                )
            )
        last = bl.budgets[-1]
        for s in ours:
            sa = [
                r
                for r in rows
                if r["setting"] == bl.setting
                and r["n"] == bl.n
                and r["strategy"] == s
                and r["budget"] == last
                and "self_agree" in r
            ]
            if sa:

                def med(k: str, sa: list[dict] = sa) -> float:
                    v = np.array([r[k] for r in sa], dtype=float)
                    return float(np.nanmedian(v)) if np.isfinite(v).any() else math.nan

                consist.append(
                    f"| {bl.setting} n={bl.n:,} | {s} | {last:g} | {med('n_repeats'):.0f} | "
                    f"{med('self_agree'):.3f} | {med('self_agree_expected'):.3f} | {med('model_agree'):.3f} |"
                )
        if bl.n <= 200 and "ours" in bl.strategies:
            rc = [_median(rows, bl, "random", b, "spearman") for b in bl.budgets]
            oc = [_median(rows, bl, "ours", b, "spearman") for b in bl.budgets]
            # ratio at random's k-th budget; the lowest budget has no lower point to compare
            ratios = [_reach_budget(bl.budgets, oc, rc[k]) / bl.budgets[k] for k in range(1, len(bl.budgets))]
            worst = max(ratios)
            verdicts.append(
                f"{bl.setting} n={bl.n}: comparisons ours needs to reach random's median Spearman, "
                f"as a share of random's, at random's budget: "
                + ", ".join(f"{b:g}: {r:.2f}" for b, r in zip(bl.budgets[1:], ratios))
                + f" (worst {worst:.2f}, median {float(np.median(ratios)):.2f}; target <= 0.67): "
                + ("MET" if worst <= 2 / 3 else "NOT MET")
            )
        if bl.setting == "app" and bl.n == 1000 and 4 in bl.budgets:
            v = _median(rows, bl, "ours-rho0.75", 4, "spearman")
            verdicts.append(
                f"app n=1000: ours with a 0.75 prior, Spearman after 4 cmp/img = {v:.3f} "
                f"(target >= 0.90): {'MET' if v >= 0.90 else 'NOT MET'}; after 2 cmp/img "
                f"(4 shows/img) = {_median(rows, bl, 'ours-rho0.75', 2, 'spearman'):.3f}"
            )
    return "\n".join(md + consist + [""]), verdicts


def plot(rows: list[dict], blocks: list[Block], path: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    cols = min(2, len(blocks))
    rows_ = math.ceil(len(blocks) / cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(6.0 * cols, 4.2 * rows_), squeeze=False)
    for ax in axes.ravel()[len(blocks) :]:
        ax.set_visible(False)
    for ax, bl in zip(axes.ravel(), blocks):
        for s in bl.strategies:
            q = np.array(
                [
                    np.percentile(
                        [
                            r["spearman"]
                            for r in rows
                            if r["setting"] == bl.setting and r["n"] == bl.n and r["strategy"] == s and r["budget"] == b
                        ],
                        [25, 50, 75],
                    )
                    for b in bl.budgets
                ]
            )
            ax.plot(bl.budgets, q[:, 1], marker="o", ms=3, label=s)
            ax.fill_between(bl.budgets, q[:, 0], q[:, 2], alpha=0.15)
        ax.set_xscale("log")
        ax.set_xticks(bl.budgets, [f"{b:g}" for b in bl.budgets])
        ax.minorticks_off()
        ax.set_title(f"{bl.setting} n={bl.n:,} (median, IQR over {bl.seeds} seeds)")
        ax.set_xlabel(f"budget ({bl.unit})")
        ax.set_ylabel("Spearman vs truth")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ----------------------------------------------------------------------------- speed


def speed(n: int = 100_000, dim: int = 1152, calls: int = 2000, seed: int = 0, log=print) -> str:
    """p50/p99 latency of next_pair and record at n items, and replay of 5k comparisons."""
    rng = np.random.default_rng(seed)
    scores = rng.normal(0.0, 1.5, n)
    emb = rng.normal(size=(n, dim)).astype(np.float32)
    lines = [f"### speed n={n:,}, embeddings {dim}-d\n", "| what | p50 | p99 | note |", "|---|---|---|---|"]
    t0 = time.perf_counter()
    sel = PairSelector.from_model_scores(scores, [], embeddings=emb, seed=seed)
    lines.append(
        f"| init (from_model_scores, PCA of embeddings) | {time.perf_counter() - t0:.2f} s | | once per retrain |"
    )
    del emb

    def loop(sel, k):
        tn, tr = np.empty(k), np.empty(k)
        for c in range(k):
            a = time.perf_counter()
            i, j = sel.next_pair()
            b = time.perf_counter()
            sel.record(i, j, float(scores[i] + rng.normal() > scores[j]))
            tr[c], tn[c] = time.perf_counter() - b, b - a
        return tn * 1e3, tr * 1e3

    tn, tr = loop(sel, calls)
    lines.append(
        f"| next_pair, first {calls} comparisons | {np.median(tn):.2f} ms | {np.percentile(tn, 99):.2f} ms "
        "| target p99 < 20 ms |"
    )
    lines.append(
        f"| record, first {calls} comparisons | {np.median(tr):.3f} ms | {np.percentile(tr, 99):.3f} ms "
        "| target < 1 ms |"
    )
    loop(sel, max(0, 5000 - calls))
    comps = sel.history[:5000]
    reps = []
    for _ in range(5):
        a = time.perf_counter()
        sel.replay(comps)
        reps.append(time.perf_counter() - a)
    lines.append(
        f"| replay 5,000 comparisons | {np.median(reps) * 1e3:.0f} ms | {max(reps) * 1e3:.0f} ms (max of 5) "
        "| target well under 1 s |"
    )
    a = time.perf_counter()
    sel.set_model_scores(scores + rng.normal(0, 0.1, n))
    lines.append(
        f"| set_model_scores (refit T + priors + replay 5k) | {(time.perf_counter() - a) * 1e3:.0f} ms "
        "| | after a retrain |"
    )
    tn, tr = loop(sel, calls)
    lines.append(f"| next_pair after 5k comparisons | {np.median(tn):.2f} ms | {np.percentile(tn, 99):.2f} ms | |")
    lines.append(f"| record after 5k comparisons | {np.median(tr):.3f} ms | {np.percentile(tr, 99):.3f} ms | |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    """``joyq bench pairing``: print result tables, write a markdown file and a PNG plot."""
    ap = argparse.ArgumentParser(prog="joyq bench pairing", description=__doc__.split("\n")[0])
    ap.add_argument("--setting", choices=["asap", "app", "speed", "all"], default="all")
    ap.add_argument("--quick", action="store_true", help="4 seeds, smaller budgets, no n=10,000 (about a minute)")
    ap.add_argument("--seeds", type=int, default=None, help="paired seeds per setting (default 20, quick 4)")
    ap.add_argument("--large-seeds", type=int, default=3, help="seeds for n=10,000 (default 3)")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    ap.add_argument(
        "--long", action="store_true", help="also asap n=200 at 10 trials and app n=10,000 to 16 cmp/img (slow)"
    )
    ap.add_argument("--out", default="bench-pairing", help="folder for pairing_bench.md / .png")
    args = ap.parse_args(argv)
    seeds = args.seeds or (4 if args.quick else 20)
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    parts = []
    blocks = blocks_for(args.setting, args.quick, seeds, args.large_seeds, args.long)
    if blocks:
        print(f"simulating {sum(b.seeds for b in blocks)} (block, seed) runs ...", flush=True)
        rows = run_blocks(blocks, args.jobs, log=lambda s: print(s, flush=True))
        md, verdicts = tables(rows, blocks)
        parts += [md, "### targets\n", *("- " + v for v in verdicts), ""]
        png = os.path.join(args.out, "pairing_bench.png")
        if plot(rows, blocks, png):
            print(f"plot: {png}")
        secs: dict[tuple, float] = {}
        for r in rows:
            key = (r["setting"], r["n"], r["strategy"])
            secs[key] = secs.get(key, 0.0) + r["seconds"] / len(blocks_budgets(blocks, r))
        parts.append("### simulation wall time per strategy (all seeds)\n")
        parts += [f"- {k[0]} n={k[1]:,} {k[2]}: {v:.1f} s" for k, v in sorted(secs.items())] + [""]
    if args.setting in ("speed", "all"):
        print("speed benchmark ...", flush=True)
        parts.append(speed(dim=64 if args.quick else 1152, calls=500 if args.quick else 2000))
    text = "\n".join(parts) + f"\ntotal wall time {time.perf_counter() - t0:.0f} s\n"
    print(text)
    with open(os.path.join(args.out, "pairing_bench.md"), "w") as fh:
        fh.write(text)
    return 0


def blocks_budgets(blocks: list[Block], row: dict) -> tuple[float, ...]:
    for b in blocks:
        if b.setting == row["setting"] and b.n == row["n"]:
            return b.budgets
    return (1.0,)


if __name__ == "__main__":
    raise SystemExit(main())
