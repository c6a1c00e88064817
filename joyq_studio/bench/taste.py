"""``joyq bench taste``: the Bayesian personal head and pair strategies in a closed loop.

No humans: each seed draws a world, a simulated rater and a starting head; every strategy
shows pairs to that rater (paired seeds: same world and rater for every strategy), the
models learn from the answers as they come, and at each budget their accuracy on images
that were never shown is measured.

Worlds (``bench/worlds.py``, ``--world``)
    clean, wrong-base, nonlinear, lapses, ties, drift: images with d-dimensional embeddings
    (20% never shown), a simulated rater and a starting head; see that module's docstring.
Strategies (every pair shown is a click, held-out and repeats too)
    random     uniform pairs of the shown images;
    fixed-k4   ``pairing.fixedk`` pairs with the original recipe's 0.7 near share;
    fixed-k4-0.5  the same builder with its default 0.5 near share (``joyq pairs``' default);
    selector   ``pairing.PairSelector``, given the live Bayesian head's scores every 25 clicks;
    model      ``TasteModel.next_pair`` with its defaults;
    model-...  variants (``MODEL_KWARGS``; ``ALL_STRATEGIES``'s docstring).
Learners on each strategy's clicks
    bayes      ``TasteModel`` updated after every click (held-out kinds are not fitted);
    sgd        the reference quick recipe (AdamW, lr 0.008, onecycle, batch 256, weight decay
               0.01, clip 1, min(20k, max(512, 25 m)) samples; best step on validation
               pairs, step 0 included: half the held-out pairs when there are >= 10, else 15%
               of the pairs when there are >= 40, else none), a numpy transcription of
               ``training.loop``. It restarts from the starting head each time, so training
               it every 25 clicks and reading it at the budgets equals training it at the
               budgets, which is what runs.
Metrics (at each budget)
    oos_acc    on 4,000 uniform pairs of OOS images: share ordered as the rater's noiseless
               taste t (at that moment) orders them (the order the user means);
    oos_agree  the same pairs: expected agreement with the noisy rater;
    spearman   the whole folder's ranking (all n images) against t;
    tie_rate, coinflip, log_alpha_rel, norm_ratio
               share of answers that were ties; share of the strategy's own pairs with a
               predicted win probability in 0.45-0.55; ln(alpha / alpha_ref); |w| / |w0|.
"Beyond noise": the 95% interval of a paired difference over the seeds (mean +- 2 SE)
excludes zero.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from ..metrics import sigmoid as _sigmoid
from ..pairing.fixedk import DEFAULT_NEAR_SHARE, ORIGINAL_NEAR_SHARE
from .worlds import DIM, EMB_NORM, N_IMAGES, WORLDS, World, fixed_k_index_pairs, make_world

BUDGETS = (25, 50, 100, 200, 400, 1000)
STRATEGIES = ("random", "fixed-k4", "model", "model-explore")
ALL_STRATEGIES = STRATEGIES + (
    "selector",
    "model-flat",
    "model-norep",
    "model-nocap",
    "model-nolapse",
    "model-forget",
    "model-rff",
    "random-scale",
    "model-scale",
    "model-scale-explore",
    "model-bald",
    "model-guro",
    "model-eer",
    "fixed-k4-0.5",
)
"""random / fixed-k4 (0.7 near share) / fixed-k4-0.5 (0.5): pairs drawn up front; selector:
PairSelector fed the live head's scores;
model: TasteModel's default (vopt, lapse, hyperprior, front-loaded held-out, coin-flip cap,
repetition limit); model-explore: 25% of model pairs uniform (``strategy="vopt-explore"``);
model-flat: 10% held-out from the start; model-norep: no repetition limit; model-nocap: no
coin-flip cap; model-nolapse: plain logistic likelihood and a flat hyperprior (the old head); model-forget:
forgetting on (half-life 150 fitted clicks); model-rff: the linear head plus random features
of the embedding (``taste.features``); model-scale(-explore): the base's scale uncertain too
(``base_scale_sd=1``), without / with 25% uniform pairs; random-scale: uniform pairs, the
same learner as model-scale;
model-bald / -guro / -eer: the other criteria."""
FIXED_K_NEAR_SHARE = {"fixed-k4": ORIGINAL_NEAR_SHARE, "fixed-k4-0.5": DEFAULT_NEAR_SHARE}
"""fixed-k arms: the near share of ``pairing.fixedk``'s pairs (0.7: the original recipe; 0.5:
the builder's and ``joyq pairs``' default)."""
SELECTOR_EVERY = 25
RFF_SIZE = 256
"""model-rff: random features appended to the embedding."""
FORGET_HALF_LIFE = 150.0
"""model-forget: recency half-life in fitted clicks (the drift world turns over 400 clicks)."""
MODEL_KWARGS: dict[str, dict] = {
    "model": {},
    "model-explore": {"strategy": "vopt-explore"},
    "model-flat": {"heldout_schedule": False},
    "model-norep": {"repetition_limit": False},
    "model-nocap": {"coinflip_max": 1.0},
    "model-nolapse": {"lapse": 0.0, "alpha_prior_sd": None},
    "model-forget": {"forget_half_life": FORGET_HALF_LIFE},
    "random-scale": {"base_scale_sd": 1.0},
    "model-scale": {"base_scale_sd": 1.0},
    "model-scale-explore": {"base_scale_sd": 1.0, "strategy": "vopt-explore"},
    "model-bald": {"criterion": "bald"},
    "model-guro": {"criterion": "guro"},
    "model-eer": {"criterion": "eer"},
}


def evaluate(world: World, w: np.ndarray, click: int = 0, features: np.ndarray | None = None) -> dict[str, float]:
    return world.evaluate(w, click, features)


# ----------------------------------------------------------------------------- SGD recipe


def sgd_head(E, a, b, y, w0, held_a, held_b, held_y, seed: int) -> np.ndarray:
    """The reference quick recipe on a linear head (numpy transcription of training.loop)."""
    m = len(a)
    if m == 0:
        return w0.copy()
    batch, lr_peak, wd, clip, betas, eps = 256, 0.008, 0.01, 1.0, (0.9, 0.999), 1e-8
    total = int(min(20_000, max(2 * batch, 25 * m)))
    steps = max(1, math.ceil(total / batch))
    warm = min(steps - 1, min(1500, total // 10) // batch)
    eval_every = max(1, max(batch, total // 20) // batch)
    rng = np.random.default_rng(seed + 7)
    va = vb = vy = np.zeros(0, dtype=np.int64)
    train = np.arange(m)
    if len(held_a) >= 10:  # half the held-out pairs choose the step
        pick = rng.choice(len(held_a), len(held_a) // 2, replace=False)
        va, vb, vy = held_a[pick], held_b[pick], held_y[pick]
    elif m >= 40:
        pick = rng.choice(m, max(1, int(round(0.15 * m))), replace=False)
        va, vb, vy = a[pick], b[pick], y[pick]
        train = np.setdiff1d(train, pick)
    Xv = (E[va] - E[vb]).astype(np.float64) if len(va) else None

    def val_nll(w):
        f = Xv @ w
        return float(np.mean(vy * np.logaddexp(0, -f) + (1 - vy) * np.logaddexp(0, f)))

    w = w0.astype(np.float64).copy()
    mom, vel = np.zeros_like(w), np.zeros_like(w)
    best = (val_nll(w), w.copy()) if Xv is not None else None
    order = np.empty(0, dtype=np.int64)
    srng = np.random.default_rng(seed)
    for step in range(1, steps + 1):
        t = step - 1
        if t < warm:
            mult = 1 / 25 + (1 - 1 / 25) * (1 - math.cos(math.pi * t / max(warm, 1))) / 2
        else:
            mult = (1 + math.cos(math.pi * (t - warm) / max(steps - warm, 1))) / 2
        lr = lr_peak * mult
        while len(order) < batch:
            order = np.concatenate([order, train[srng.permutation(len(train))]])
        idx, order = order[:batch], order[batch:]
        X = (E[a[idx]] - E[b[idx]]).astype(np.float64)
        g = X.T @ (_sigmoid(X @ w) - y[idx]) / len(idx)
        gn = float(np.linalg.norm(g))
        if gn > clip:
            g *= clip / (gn + 1e-6)
        w *= 1 - lr * wd
        mom = betas[0] * mom + (1 - betas[0]) * g
        vel = betas[1] * vel + (1 - betas[1]) * g * g
        mhat, vhat = mom / (1 - betas[0] ** step), vel / (1 - betas[1] ** step)
        w -= lr * mhat / (np.sqrt(vhat) + eps)
        if best is not None and (step % eval_every == 0 or step == steps):
            nll = val_nll(w)
            if nll < best[0]:
                best = (nll, w.copy())
    return best[1] if best is not None else w


# ----------------------------------------------------------------------------- strategies


def run_strategy(world: World, strategy: str, budgets, seed: int, sgd: bool = True) -> list[dict]:
    from ..taste import TasteModel

    budgets = sorted(budgets)
    rng = np.random.default_rng([seed, 7, ALL_STRATEGIES.index(strategy)])
    rater = np.random.default_rng([seed, 99])  # the same rater noise for every strategy
    base = (world.w0, 0.0)
    feats = None
    if strategy == "model-rff":  # the linear head plus RFF_SIZE random features
        from ..taste.features import RandomFeatures

        rf = RandomFeatures(world.E, n_features=RFF_SIZE, seed=seed)
        feats = rf.transform(world.E)
        base = (rf.pad_head(world.w0), 0.0)
    tm = TasteModel(world.E if feats is None else feats, base, seed=seed, **MODEL_KWARGS.get(strategy, {}))
    tm.exclude(world.oos)
    sel = None
    pre: list[tuple[int, int]] | None = None
    if strategy == "selector":
        from ..pairing import PairSelector

        sel = PairSelector.from_model_scores(world.E @ world.w0, (), embeddings=world.E, seed=seed)
        sel.exclude(world.oos)
    elif strategy in ("random", "random-scale"):
        sh = world.shown
        pre = []
        while len(pre) < budgets[-1]:
            i, j = sh[rng.integers(0, len(sh))], sh[rng.integers(0, len(sh))]
            if i != j:
                pre.append((int(i), int(j)))
    elif strategy in FIXED_K_NEAR_SHARE:  # THE fixed-k builder
        fa, fb = fixed_k_index_pairs(budgets[-1], world.shown, world.E, FIXED_K_NEAR_SHARE[strategy], seed)
        pre = list(zip(fa.tolist(), fb.tolist()))
    rows = []
    t0 = time.perf_counter()
    click_time = 0.0
    ties = coin = model_pairs = 0
    for c in range(1, budgets[-1] + 1):
        tc = time.perf_counter()
        if pre is not None:
            (i, j), kind = pre[(c - 1) % len(pre)], "other"
        elif sel is not None:
            i, j, kind = sel.next_pair_with_kind()
        else:
            i, j, kind = tm.next_pair_with_kind()
        click_time += time.perf_counter() - tc
        if kind not in ("heldout", "repeat"):  # the pairs the strategy chose (coin-flip share)
            model_pairs += 1
            coin += int(abs(float(tm.win_probability(i, j)[0]) - 0.5) < 0.05)
        o = world.answer(i, j, rater, click=c)
        ties += o == 0.5
        tc = time.perf_counter()
        if sel is not None:
            sel.record(i, j, o, kind)
        tm.record(i, j, o, kind)
        click_time += time.perf_counter() - tc
        if sel is not None and c % SELECTOR_EVERY == 0:
            sel.set_model_scores(tm.scores())
        if c in budgets:
            hist = tm.history
            fit = [h for h in hist if h[3] != "heldout"]
            held = [h for h in hist if h[3] == "heldout"]

            def arr(rows_, k, dtype):
                return np.array([r[k] for r in rows_], dtype=dtype)

            ev_b = evaluate(world, tm.head()[0] if feats is None else tm.w, c, feats)
            row = {
                "seed": seed,
                "world": world.kind,
                "strategy": strategy,
                "budget": c,
                "alpha": tm.alpha,
                "log_alpha_rel": math.log(tm.alpha / tm._alpha_ref),
                "heldout": len(held),
                "tie_rate": ties / c,
                "coinflip": coin / max(model_pairs, 1),
                "seconds": time.perf_counter() - t0,
                "click_ms": 1e3 * click_time / c,
            }
            row.update({f"bayes_{k}": v for k, v in ev_b.items()})
            if sgd:
                w_sgd = sgd_head(
                    world.E,
                    arr(fit, 0, np.int64),
                    arr(fit, 1, np.int64),
                    arr(fit, 2, float),
                    world.w0,
                    arr(held, 0, np.int64),
                    arr(held, 1, np.int64),
                    arr(held, 2, float),
                    seed,
                )
                row.update({f"sgd_{k}": v for k, v in evaluate(world, w_sgd, c).items()})
            rows.append(row)
    return rows


def _seed_task(args) -> list[dict]:
    seed, strategies, budgets, n, d, kind, sgd = args
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)  # two processes on two cores: one BLAS thread each
    except ImportError:  # pragma: no cover
        pass
    world = make_world(seed, kind, n=n, d=d)
    base = evaluate(world, world.w0, 0)
    rows = [
        {
            "seed": seed,
            "world": kind,
            "strategy": "base",
            "budget": 0,
            **{f"bayes_{k}": v for k, v in base.items()},
            **({f"sgd_{k}": v for k, v in base.items()} if sgd else {}),
        }
    ]
    for s in strategies:
        rows += run_strategy(world, s, budgets, seed, sgd)
    return rows


def run(
    seeds: int, strategies, budgets, n: int, jobs: int, log=print, d: int = DIM, world: str = "clean", sgd: bool = True
) -> list[dict]:
    tasks = [(s, tuple(strategies), tuple(budgets), n, d, world, sgd) for s in range(seeds)]
    rows: list[dict] = []
    t0 = time.perf_counter()
    results: Iterable[list[dict]]
    ex = ProcessPoolExecutor(max_workers=jobs) if jobs > 1 else None
    results = ex.map(_seed_task, tasks) if ex is not None else map(_seed_task, tasks)
    for k, r in enumerate(results, 1):
        rows += r
        log(f"  seed {k}/{seeds} done ({time.perf_counter() - t0:.0f} s)")
    if ex is not None:
        ex.shutdown()
    return rows


# ----------------------------------------------------------------------------- report


def _vals(rows, strategy, budget, key):
    return {r["seed"]: r[key] for r in rows if r["strategy"] == strategy and r["budget"] == budget}


def _paired(rows, a, ka, b, kb, budget, budget_b=None):
    va = _vals(rows, a, budget, ka)
    vb = _vals(rows, b, budget if budget_b is None else budget_b, kb)
    seeds = sorted(set(va) & set(vb))
    d = np.array([va[s] - vb[s] for s in seeds])
    if len(d) < 2:
        return math.nan, math.nan
    return float(d.mean()), float(2 * d.std(ddof=1) / math.sqrt(len(d)))


def _mean(rows, strategy, budget, key):
    v = list(_vals(rows, strategy, budget, key).values())
    return float(np.mean(v)) if v else math.nan


def _reach(budgets, curve, target):
    """Smallest budget (log-linear interpolation) at which the mean curve reaches target."""
    for k, (b, c) in enumerate(zip(budgets, curve)):
        if c >= target:
            if k == 0:
                return float(b)
            b0, c0 = budgets[k - 1], curve[k - 1]
            f = (target - c0) / (c - c0) if c > c0 else 1.0
            return float(math.exp(math.log(b0) + f * (math.log(b) - math.log(b0))))
    return math.inf


def _cell(d: tuple[float, float]) -> str:
    m, h = d
    mark = "" if not math.isfinite(h) or abs(m) <= h else (" (+)" if m > 0 else " (-)")
    return f"{m:+.4f} +- {h:.4f}{mark}"


def report(rows: list[dict], strategies, budgets) -> tuple[str, list[str]]:
    """Markdown tables and target verdicts. "Beyond noise": the 95% interval of the paired
    difference (mean +- 2 SE over seeds) excludes zero, marked (+) / (-)."""
    seeds = len({r["seed"] for r in rows})
    world = next((r.get("world", "clean") for r in rows), "clean")
    sgd = any("sgd_oos_acc" in r for r in rows if r["strategy"] != "base")
    out = [f"World **{world}**, {seeds} paired seeds.", ""]
    b0 = _mean(rows, "base", 0, "bayes_oos_acc")
    out += [f"### Out-of-sample pair accuracy (Bayesian head; starting head {b0:.4f})", ""]
    out += ["| clicks | " + " | ".join(strategies) + " |", "|" + " ---: |" * (1 + len(strategies))]
    for b in budgets:
        out.append(f"| {b:,} | " + " | ".join(f"{_mean(rows, s, b, 'bayes_oos_acc'):.4f}" for s in strategies) + " |")
    out.append("")
    verdicts = []
    out += ["### Paired differences (mean +- 2 SE; (+)/(-) = beyond noise)", ""]
    cols = [(s, "base") for s in strategies] + [
        (s, "random") for s in strategies if s != "random" and "random" in strategies
    ]
    # the same learner on both sides: the pair choice alone
    cols += [(s, "random-scale") for s in strategies if s.startswith("model-scale") and "random-scale" in strategies]
    # fixed-k pairs against the model's (and the two near shares against each other)
    fixed = [f for f in FIXED_K_NEAR_SHARE if f in strategies]
    cols += [("model", f) for f in fixed if "model" in strategies]
    if len(fixed) == 2:
        cols.append(("fixed-k4-0.5", "fixed-k4"))
    out += ["| clicks | " + " | ".join(f"{a} - {b}" for a, b in cols) + " |", "|" + " ---: |" * (1 + len(cols))]
    worst: dict[tuple[str, str], tuple[float, int]] = {c: (math.inf, 0) for c in cols}
    for bud in budgets:
        cells = []
        for a_, b_ in cols:
            d = _paired(rows, a_, "bayes_oos_acc", b_, "bayes_oos_acc", bud, 0 if b_ == "base" else None)
            if d[0] + d[1] < worst[(a_, b_)][0]:
                worst[(a_, b_)] = (d[0] + d[1], bud)
            cells.append(_cell(d))
        out.append(f"| {bud:,} | " + " | ".join(cells) + " |")
    out.append("")
    for (a_, b_), (v, bud) in worst.items():
        verdicts.append(
            f"{a_} vs {b_}: worst upper end of the 95% interval {v:+.4f} (at {bud:,} clicks) -> "
            + ("never worse beyond noise" if v >= 0 else "WORSE beyond noise there")
        )
    if "random" in strategies:
        ref = budgets[-1]
        target = _mean(rows, "random", ref, "bayes_oos_acc")
        out += [f"### Clicks to random's {ref:,}-click accuracy ({target:.4f}; mean curves, log-interpolated)", ""]
        for s in strategies:
            need = _reach(budgets, [_mean(rows, s, b, "bayes_oos_acc") for b in budgets], target)
            txt = f"{need:,.0f}" if math.isfinite(need) else f"> {ref:,}"
            out.append(f"- {s}: {txt}")
            if s.startswith("model") and world == "clean":
                verdicts.append(f"{s}: random's {ref:,}-click accuracy in {txt} clicks (target <= 350)")
        out.append("")
    out += ["### Tie rate, coin-flip pairs, prior strength and head norm", ""]
    out += [
        "Coin flips: share of the strategy's own pairs (not held-out or repeats) whose predicted win "
        "probability was within 0.45-0.55 when shown. ln(alpha/alpha_ref): the prior strength the "
        "evidence chose, relative to its centre (0 = the base's scale; 16 = stuck at the base). "
        "|w|/|w0|: the head's norm relative to the starting head's.",
        "",
        "| strategy | clicks | tie rate | coin flips | ln(alpha/alpha_ref) mean [min, max] | |w|/|w0| mean [max] |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in strategies:
        for bud in budgets:
            la = list(_vals(rows, s, bud, "log_alpha_rel").values())
            nr = list(_vals(rows, s, bud, "bayes_norm_ratio").values())
            if not la:
                continue
            out.append(
                f"| {s} | {bud:,} | {_mean(rows, s, bud, 'tie_rate'):.3f} | {_mean(rows, s, bud, 'coinflip'):.3f} | "
                f"{np.mean(la):+.2f} [{min(la):+.2f}, {max(la):+.2f}] | {np.mean(nr):.2f} [{max(nr):.2f}] |"
            )
        cf = _mean(rows, s, budgets[-1], "coinflip")
        if s.startswith("model") and MODEL_KWARGS.get(s, {}).get("coinflip_max", 0.2) < 1:
            verdicts.append(f"{s}: coin-flip pairs {cf:.1%} of its pairs (target <= 20%)")
    out.append("")
    if sgd:
        out += ["### SGD recipe on the same clicks (out-of-sample accuracy)", ""]
        out += ["| clicks | " + " | ".join(strategies) + " |", "|" + " ---: |" * (1 + len(strategies))]
        for b in budgets:
            out.append(f"| {b:,} | " + " | ".join(f"{_mean(rows, s, b, 'sgd_oos_acc'):.4f}" for s in strategies) + " |")
        out.append("")
    out += ["### Mean click cost in the loop (next pair + record, ms)", ""]
    for s in strategies:
        out.append(f"- {s}: {_mean(rows, s, budgets[-1], 'click_ms'):.2f} ms per click")
    out.append("")
    return "\n".join(out), verdicts


def plot(rows, strategies, budgets, path: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    base = _mean(rows, "base", 0, "bayes_oos_acc")
    for s in strategies:
        ax[0].plot(budgets, [_mean(rows, s, b, "bayes_oos_acc") for b in budgets], marker="o", label=f"{s} (bayes)")
        if "sgd_oos_acc" in rows[-1]:
            ax[1].plot(budgets, [_mean(rows, s, b, "sgd_oos_acc") for b in budgets], marker="o", label=f"{s} (sgd)")
    for a, t in zip(ax, ("Bayesian head", "SGD recipe")):
        a.axhline(base, color="grey", ls="--", label="base head")
        a.set_xscale("log")
        a.set_xlabel("clicks")
        a.set_ylabel("out-of-sample pair accuracy")
        a.set_title(t)
        a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ----------------------------------------------------------------------------- speed


def speed(n: int = 100_000, d: int = DIM, m: int = 5000, clicks: int = 600, seed: int = 0, log=print) -> str:
    """Click -> posterior update -> next pair at n images, and a full refit on m pairs."""
    from ..taste import TasteModel, fit_head

    rng = np.random.default_rng(seed)
    lam = 1.0 / np.arange(1, d + 1)
    lam *= EMB_NORM**2 / lam.sum()
    rot, _ = np.linalg.qr(rng.normal(size=(d, d)))
    E = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, 10_000):
        E[s : s + 10_000] = (rng.normal(size=(min(10_000, n - s), d)) * np.sqrt(lam)) @ rot.T
    w_star = rot @ rng.normal(size=d) * 0.3
    w0 = w_star + rot @ rng.normal(size=d) * 0.2
    t = E @ w_star.astype(np.float32)
    lines = []
    t0 = time.perf_counter()
    tm = TasteModel(E, (w0, 0.0), seed=seed)
    lines.append(f"- construct TasteModel at n = {n:,}, d = {d}: {time.perf_counter() - t0:.2f} s")
    # a session already holding m pairs (replayed), then `clicks` live clicks
    i, j = rng.integers(0, n, m), rng.integers(0, n, m)
    ok = i != j
    comps = [(int(a), int(b), float(rng.random() < _sigmoid(t[a] - t[b]))) for a, b in zip(i[ok], j[ok])]
    t0 = time.perf_counter()
    tm.replay(comps)
    lines.append(
        f"- replay {len(comps):,} stored comparisons (one full refit, alpha by the evidence): "
        f"{time.perf_counter() - t0:.2f} s"
    )
    times, nexts, recs = [], [], []
    for _ in range(clicks):
        t0 = time.perf_counter()
        a, b = tm.next_pair()
        t1 = time.perf_counter()
        tm.record(a, b, float(rng.random() < _sigmoid(t[a] - t[b])))
        t2 = time.perf_counter()
        times.append(t2 - t0)
        nexts.append(t1 - t0)
        recs.append(t2 - t1)
    ms = np.array(times) * 1e3
    lines.append(
        f"- click -> update -> next pair at n = {n:,} with {m:,} earlier pairs, {clicks} clicks: "
        f"median {np.median(ms):.1f} ms, p99 {np.percentile(ms, 99):.1f} ms, max {ms.max():.1f} ms "
        f"(next_pair p95 {np.percentile(nexts, 95) * 1e3:.1f} ms, p99 {np.percentile(nexts, 99) * 1e3:.1f} ms, "
        f"record p99 "
        f"{np.percentile(recs, 99) * 1e3:.1f} ms)"
    )
    # each pair strategy's pick time on the same session (the compare session's budget:
    # next_pair p95 < 30 ms at 100k images)
    from ..taste import STRATEGIES as PAIR_STRATEGIES

    for name in ("vopt-explore", "bald"):
        if name not in PAIR_STRATEGIES:
            continue
        tm_s = TasteModel(E, (w0, 0.0), seed=seed, strategy=name)
        tm_s.replay(comps)
        picks = []
        for _ in range(min(clicks, 300)):
            t0 = time.perf_counter()
            a, b = tm_s.next_pair()
            picks.append((time.perf_counter() - t0) * 1e3)
            tm_s.record(a, b, float(rng.random() < _sigmoid(t[a] - t[b])))
        pk = np.array(picks)
        lines.append(
            f"- strategy {name}: next_pair median {np.median(pk):.1f} ms, p95 {np.percentile(pk, 95):.1f} ms, "
            f"p99 {np.percentile(pk, 99):.1f} ms ({len(pk)} clicks after the same replay)"
        )
        del tm_s
    # a fresh session: the first clicks (refits after every click while m <= 32)
    tm2 = TasteModel(E, (w0, 0.0), seed=seed + 1)
    fresh = []
    for _ in range(clicks):
        t0 = time.perf_counter()
        a, b = tm2.next_pair()
        tm2.record(a, b, float(rng.random() < _sigmoid(t[a] - t[b])))
        fresh.append((time.perf_counter() - t0) * 1e3)
    ms2 = np.array(fresh)
    lines.append(
        f"- the same from an empty session, first {clicks} clicks: median {np.median(ms2):.1f} ms, "
        f"p99 {np.percentile(ms2, 99):.1f} ms, max {ms2.max():.1f} ms"
    )
    # full refit on m pairs, cold and warm
    X = (E[i[ok]] - E[j[ok]])[:m]
    y = np.array([c[2] for c in comps])[:m]
    t0 = time.perf_counter()
    f = fit_head(X, y, None, w0)
    cold = time.perf_counter() - t0
    X2, y2 = np.concatenate([X, X[:50]]), np.concatenate([y, y[:50]])
    t0 = time.perf_counter()
    f2 = fit_head(X2, y2, None, w0, w_init=f.w, alpha_init=f.alpha)
    warm = time.perf_counter() - t0
    lines.append(
        f"- full refit with the choice of alpha, {len(y):,} pairs x {d}: cold {cold:.2f} s "
        f"({f.iterations} Newton/eigen iterations), warm after 50 more pairs {warm:.2f} s "
        f"({f2.iterations})"
    )
    for line in lines:
        log(line)
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seeds", type=int, default=20, help="paired seeds (default 20)")
    p.add_argument(
        "--budgets",
        default=",".join(str(b) for b in BUDGETS),
        help="clicks at which to measure, comma-separated (default 25,50,100,200,400,1000)",
    )
    p.add_argument("--n", type=int, default=N_IMAGES, help="images per world (default 5,000; 20%% never shown)")
    p.add_argument("--dim", type=int, default=DIM, help="embedding dimensions (default 1152)")
    p.add_argument("--world", default="clean", help=f"simulated world, of {', '.join(WORLDS)} (default clean)")
    p.add_argument("--no-sgd", action="store_true", help="skip the SGD recipe (faster)")
    p.add_argument(
        "--strategies",
        default=",".join(STRATEGIES),
        help=f"comma-separated, of {', '.join(ALL_STRATEGIES)} (default: {', '.join(STRATEGIES)})",
    )
    p.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--speed", action="store_true", help="also time clicks at 100k images and a 5k-pair refit")
    p.add_argument("--speed-only", action="store_true", help="only the timing")
    p.add_argument("--out", default="bench-taste", help="folder for taste_bench.md / .png (default bench-taste)")


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``taste`` subcommand to a bench subparsers object."""
    p = subparsers.add_parser(
        "taste", help="closed loop: the Bayesian personal head and pair strategies vs simulated raters"
    )
    _add_arguments(p)
    p.set_defaults(handler="joyq_studio.bench.taste:bench_taste")
    return p


def bench_taste(args) -> int:
    from .common import machine_name

    os.makedirs(args.out, exist_ok=True)
    parts = [f"Machine: {machine_name()}", ""]
    if not args.speed_only:
        strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
        bad = [s for s in strategies if s not in ALL_STRATEGIES]
        if bad:
            raise SystemExit(f"unknown strategy {bad[0]!r}; choose from {', '.join(ALL_STRATEGIES)}")
        budgets = sorted({int(b) for b in args.budgets.split(",") if b.strip()})
        if args.world not in WORLDS:
            raise SystemExit(f"unknown world {args.world!r}; choose from {', '.join(WORLDS)}")
        t0 = time.perf_counter()
        print(
            f"closed loop, world {args.world}: {args.seeds} seeds x {len(strategies)} strategies, n = {args.n:,}, "
            f"d = {args.dim}, up to "
            f"{budgets[-1]:,} clicks, {args.jobs} processes",
            flush=True,
        )
        rows = run(
            args.seeds,
            strategies,
            budgets,
            args.n,
            args.jobs,
            log=lambda s: print(s, flush=True),
            d=args.dim,
            world=args.world,
            sgd=not args.no_sgd,
        )
        md, verdicts = report(rows, strategies, budgets)
        parts += [
            md,
            "### Targets",
            "",
            *("- " + v for v in verdicts),
            "",
            f"Wall time: {time.perf_counter() - t0:.0f} s with {args.jobs} processes.",
            "",
        ]
        png = os.path.join(args.out, "taste_bench.png")
        if plot(rows, strategies, budgets, png):
            parts.append(f"Plot: {png}")
        else:
            parts.append("No plot: matplotlib is not installed.")
        import json

        with open(os.path.join(args.out, "taste_bench.json"), "w", encoding="utf-8") as f:
            json.dump(rows, f)
    if args.speed or args.speed_only:
        parts += ["", "### Speed", "", speed(log=lambda s: print(s, flush=True))]
    text = "\n".join(parts) + "\n"
    with open(os.path.join(args.out, "taste_bench.md"), "w", encoding="utf-8") as f:
        f.write(text)
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``joyq bench taste``: print the tables and write taste_bench.md (+ .png, .json) into --out."""
    ap = argparse.ArgumentParser(prog="joyq bench taste", description=__doc__.split("\n")[0])
    _add_arguments(ap)
    return bench_taste(ap.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
