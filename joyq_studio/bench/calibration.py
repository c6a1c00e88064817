"""`joyq bench calibration`: how each calibration method spreads a folder over the buckets.

Two folders:

* **the README walkthrough** (``joyq demo``, ``score --model demo``, ``import-pairs``,
  ``train --adopt``), run here in a temporary home: the bucket histogram per corruption
  kind (clean, jpeg, blur, lowres, noise) before and after training, per method;
* **a planted-temperature folder**: N scores ~ N(0, SD^2), outcomes drawn with
  P(i beats j) = sigmoid((s_i - s_j) / TAU) for a planted TAU; calibrations are fitted on
  M held-out pairs and their log loss measured on 20,000 fresh pairs.

Per method: the largest bucket's share, the two fullest buckets' share, the end buckets'
shares, and the held-out log loss of the pair probabilities sigmoid(d / tau) (sigmoid
methods only; methods A and q give buckets, not probabilities). On the walkthrough the
log loss is leave-one-out over the held-out comparisons. "b-capped" is a candidate that was
measured and not chosen: method B with tau raised until no two buckets hold more than half
the folder and no end bucket more than 15%.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np

from ..demo import DEGRADATIONS
from ..metrics import sigmoid
from ..ranking.calibration import (
    DEFAULT_K,
    Calibration,
    CalibrationError,
    _pair_nll,
    calibrate,
    fit_bias,
    fit_tau_map,
)
from .common import machine_name

CANDIDATES = ("a", "b", "reference", "q", "b-capped")
MAX_TWO_SHARE = 0.5
MAX_END_SHARE = 0.15


def capped_b(scores: np.ndarray, d: np.ndarray, y: np.ndarray, k: int = DEFAULT_K) -> Calibration:
    """Method B with tau raised (in steps of 2%) from its MAP value until the spread rules hold."""
    tau0, _ = fit_tau_map(d, y)
    for tau in tau0 * np.exp(np.arange(0.0, 8.0, 0.02)):
        b = fit_bias(scores, float(tau), k)
        cal = Calibration(method="b", k=k, tau=float(tau), b=b, pairs_used=len(d))
        shares = np.bincount(cal.apply(scores)[1], minlength=k) / len(scores)
        top = np.sort(shares)[::-1]
        if top[0] + top[1] <= MAX_TWO_SHARE and max(shares[0], shares[-1]) <= MAX_END_SHARE:
            return cal
    raise CalibrationError("no tau spreads this folder within the caps")


def fit(method: str, scores: np.ndarray, d: np.ndarray, y: np.ndarray, k: int = DEFAULT_K) -> Calibration:
    if method == "b-capped":
        return capped_b(scores, d, y, k)
    pairs = (d, np.zeros_like(d), y)
    return calibrate(scores, None if method in ("a", "q") else pairs, method, k)


def spread(cal: Calibration, scores: np.ndarray) -> dict[str, float]:
    shares = np.bincount(cal.apply(scores)[1], minlength=cal.k) / len(scores)
    top = np.sort(shares)[::-1]
    return {"largest": top[0], "two": top[0] + top[1], "end0": shares[0], "end9": shares[-1]}


def loo_log_loss(method: str, scores: np.ndarray, d: np.ndarray, y: np.ndarray) -> float | None:
    """Leave-one-out log loss of sigmoid(d / tau) over the held-out pairs (None: no tau)."""
    if method in ("a", "q"):
        return None
    losses = []
    for i in range(len(d)):
        keep = np.arange(len(d)) != i
        try:
            cal = fit(method, scores, d[keep], y[keep])
        except CalibrationError:
            return math.nan  # this method cannot be fitted on these pairs
        losses.append(_pair_nll(1.0 / float(cal.tau), d[i : i + 1], y[i : i + 1]))  # type: ignore[arg-type]
    return float(np.mean(losses))


def _row(name: str, sp: dict[str, float] | None, loss: float | None, extra: str = "") -> str:
    name += extra
    if sp is None:
        return f"| {name} | cannot be fitted | | | |"
    ll = "—" if loss is None else ("cannot be fitted" if math.isnan(loss) else f"{loss:.3f}")
    return f"| {name} | {sp['largest']:.2f} | {sp['two']:.2f} | {sp['end0']:.2f} / {sp['end9']:.2f} | {ll} |"


HEADER = "| method | largest bucket | two fullest | bucket 0 / bucket 9 | held-out log loss |\n|---|---|---|---|---|"


def walkthrough(home: Path, count: int) -> dict[str, dict]:
    """The walkthrough's steps through the core (demo, score --model demo, import-pairs,
    train --adopt in quick mode); per model ("before", "after"): {"scores", "kinds", "d", "y"}."""
    from ..demo import make_demo_folder
    from ..export import import_pairs
    from ..model import load_model
    from ..ranking.rows import held_out_pairs
    from ..scoring import score_project
    from ..store import Project
    from ..training import TrainConfig
    from ..training.versions import adopt, train_project

    folder = home / "joyq-demo"
    make_demo_folder(folder, count=count)
    out = {}
    with Project(folder) as p:
        p.scan()
        p.set_base_model("demo")
        score_project(p, load_model("demo"), device="cpu")
        import_pairs(p, folder / "pairs.json")
        before = p.current_model_key()
        result = train_project(p, TrainConfig(mode="quick"))
        adopt(p, result.version_id)
        for key, when in ((before, "before"), (p.current_model_key(), "after")):
            sc = p.scores(key or "")
            files = [(path, h) for path, h in p.file_hashes() if h in sc]
            kinds = [next(k for k in DEGRADATIONS if Path(path).stem.endswith("_" + k)) for path, _ in files]
            (s1, s2, y), _ = held_out_pairs(p, sc)
            out[when] = {"scores": np.array([sc[h] for _, h in files]), "kinds": kinds, "d": s1 - s2, "y": y}
    return out


def per_kind(cal: Calibration, scores: np.ndarray, kinds: list[str]) -> list[str]:
    buckets = cal.apply(scores)[1]
    lines = ["| kind | " + " | ".join(str(b) for b in range(cal.k)) + " |", "|---" * (cal.k + 1) + "|"]
    for kind in DEGRADATIONS:
        sel = np.array([k == kind for k in kinds])
        counts = np.bincount(buckets[sel], minlength=cal.k)
        lines.append(f"| {kind} | " + " | ".join(str(int(c)) for c in counts) + " |")
    return lines


def planted(n: int, sd: float, tau: float, m: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    scores = rng.normal(0.0, sd, n)

    def pairs(count: int) -> tuple[np.ndarray, np.ndarray]:
        i, j = rng.integers(0, n, count), rng.integers(0, n, count)
        keep = i != j
        d = scores[i[keep]] - scores[j[keep]]
        return d, (rng.random(len(d)) < np.atleast_1d(sigmoid(d / tau))).astype(np.float64)

    d_fit, y_fit = pairs(m)
    d_test, y_test = pairs(20_000)
    lines = [f"planted: {n} scores ~ N(0, {sd:g}^2), planted tau = {tau:g}, fitted on {len(d_fit)} held-out pairs:"]
    lines.append(HEADER)
    for method in CANDIDATES:
        try:
            cal = fit(method, scores, d_fit, y_fit)
        except CalibrationError:
            lines.append(_row(method, None, None))
            continue
        loss = None if cal.tau is None else _pair_nll(1.0 / cal.tau, d_test, y_test)
        tau_note = "" if cal.tau is None else f" (tau {cal.tau:.3g})"
        lines.append(_row(method, spread(cal, scores), loss, tau_note))
    truth = _pair_nll(1.0 / tau, d_test, y_test)
    lines.append(f"(log loss at the planted tau: {truth:.3f})")
    return lines


def bench_calibration(args) -> int:
    print(f"machine: {machine_name()}")
    if not args.no_walkthrough:
        with tempfile.TemporaryDirectory(prefix="joyq-bench-cal-") as tmp:
            os.environ["JOYQ_DATA_DIR"] = str(Path(tmp) / "data")
            models = walkthrough(Path(tmp), args.count)
        for when in ("before", "after"):
            m = models.get(when)
            if m is None:
                continue
            print(f"\nwalkthrough, {when} training ({len(m['scores'])} images, {len(m['d'])} held-out pairs):")
            print(HEADER)
            hist = []
            for method in CANDIDATES:
                try:
                    cal = fit(method, m["scores"], m["d"], m["y"])
                except CalibrationError:
                    print(_row(method, None, None))
                    continue
                loss = loo_log_loss(method, m["scores"], m["d"], m["y"])
                print(_row(method, spread(cal, m["scores"]), loss))
                hist.append(f"\n{method}, {when} training: images per bucket (0 = worst .. 9 = best)")
                hist.extend(per_kind(cal, m["scores"], m["kinds"]))
            print("\n".join(hist))
    for tau in args.planted_tau:
        print()
        print("\n".join(planted(args.images, args.sd, tau, args.pairs, args.seed)))
    return 0
