"""`joyq bench learn`: does a full finetune teach a tower, from scratch, to see image quality?

The benchmark, top to bottom:

1. **Data.** ``n_bases`` base images, each either a :func:`demo.draw_scene` scene or a 2x2
   mosaic of random crops of scenes drawn at other sizes (mosaics add diversity: more
   edges, scales and colours per image). Every base is saved losslessly (PNG) with one
   degraded copy per *kind*; the recipes are :func:`corruptions.make_validation_pair`
   ("jpeg", "lowres"), optionally plus the demo folder's degradations ("demo-jpeg",
   "demo-blur", "demo-lowres", "demo-noise" from :func:`demo.degrade`).
2. **Split by base image.** Pairs are (clean base, degraded copy), clean wins. Test bases
   are disjoint from training bases, so no test image appears in any training pair.
3. **Train** the ``tiny`` tower from its random initialisation with the project's own
   engine (:func:`training.run_training`, what ``joyq train --mode full`` runs), and
   record the curve: loss per step; pair accuracy and the held-out JPEG / low-res
   robustness accuracies at every evaluation.
4. **Report** a printed table, ``curve.csv``, ``curve.md`` and ``curve.png`` (when
   matplotlib is installed), and per-kind held-out accuracy of the best model.

Everything is deterministic for a given ``--seed`` (data, split, initialisation, batch
order, augmentation), so the learning curve is compared by *steps*, not seconds: on a
CPU the wall clock depends on what else the machine is doing.

``--save-demo-model FOLDER`` instead runs the fixed recipe of the shipped demo tower
(:func:`joyq_studio.training.demo_tower.make_demo_model`, in its own core module: ``demo_config``
trained from scratch on the demo folder's own degradations with cross-scene pairs and
auxiliary kind / strength heads, then a ranking-preserving normalisation for shipping).
docs/learning.md has the results and the reasons; :func:`demo_tower_figures` measures a
tower on a demo folder.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..console import UsageError
from ..corruptions import LOWRES_FACTOR_RANGE, make_validation_pair, rng_from_seed
from ..demo import degrade, make_demo_folder
from ..images import resize_for_model
from ..model import load_model, save_model
from ..pixels import load_uint8, normalize, pil_to_uint8
from ..training import TrainConfig, load_pairs_json, run_training
from ..training.demo_tower import (
    SPLIT_TASTE,
    TOWER_KINDS,
    base_image,
    embed_all,
    make_demo_model,
    progress_line,
    stored_like_demo,
)
from .common import machine_name

RECIPE_KINDS = ("jpeg", "lowres")
DEMO_KINDS = ("demo-jpeg", "demo-blur", "demo-lowres", "demo-noise")
ALL_KINDS = RECIPE_KINDS + DEMO_KINDS
DATASET_FORMAT = 2  # bump when the generator changes: a --dir made by another version is remade


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------
def degraded(img: Image.Image, kind: str, seed: str) -> tuple[Image.Image, Image.Image] | None:
    """(clean, degraded) of identical size for one kind; deterministic given seed. None when
    the recipe skips the image (JPEG: it never shrinks to a third of its quality-90 size)."""
    if kind in RECIPE_KINDS:
        return make_validation_pair(img, kind, seed=seed)
    if kind in DEMO_KINDS:
        return img, degrade(img, kind.removeprefix("demo-"), rng_from_seed(seed))
    raise ValueError(f"unknown kind {kind!r}; choose from {', '.join(ALL_KINDS)}")


def _write_base(job: tuple[Path, int, int, int, tuple[str, ...], float]) -> list[tuple[str, str, str, str]]:
    """Draw base ``i`` and its degraded copies; returns (clean, degraded, kind, corruption seed) rows."""
    folder, seed, i, size, kinds, mosaic_share = job
    rng = np.random.default_rng([seed, i])
    img = base_image(rng, size, mosaic_share)
    clean_name = f"images/b{i:05d}_clean.png"
    img.save(folder / clean_name, "PNG", compress_level=1)
    rows = []
    for kind in kinds:
        corruption_seed = f"learn-{seed}-{i}-{kind}"
        pair = degraded(img, kind, seed=corruption_seed)
        if pair is None:
            continue
        clean, bad = pair
        assert clean.size == img.size  # every base is <= corruptions.MAX_SIDE, so clean == base
        name = f"images/b{i:05d}_{kind}.png"
        bad.save(folder / name, "PNG", compress_level=1)
        rows.append((clean_name, name, kind, corruption_seed))
    return rows


def make_learning_dataset(
    folder: Path,
    n_bases: int = 700,
    size: int = 512,
    kinds=RECIPE_KINDS,
    test_bases: int = 200,
    seed: int = 0,
    mosaic_share: float = 0.5,
    cross_pairs: int = 0,
    workers: int | None = None,
    progress=None,
) -> Path:
    """Write the images and ``dataset.json`` (JoyQuality format, with a by-base test split);
    returns the JSON path. ``dataset.json`` also records each pair's kind and corruption seed
    ("train_kinds", "test_kinds", "train_seeds", "test_seeds"), which the loader ignores.

    Same-base pairs only say "this copy is worse than its own original"; they leave the
    score's level free to vary with content. ``cross_pairs`` > 0 adds, per base and within
    its split, that many pairs "clean base beats a degraded copy of another base" (kind
    "cross-<kind>"), which anchor one quality scale across contents (what ranking a folder
    needs). (Clean-vs-clean ties were tried too: they held the loss near ln 2 and slowed
    learning of everything else.)"""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    kinds = tuple(kinds)
    for k in kinds:
        if k not in ALL_KINDS:
            raise ValueError(f"unknown kind {k!r}; choose from {', '.join(ALL_KINDS)}")
    test_bases = min(test_bases, n_bases // 2)
    is_test = np.zeros(n_bases, dtype=bool)
    is_test[np.random.default_rng([seed, 1 << 30]).permutation(n_bases)[:test_bases]] = True
    jobs = [(folder, seed, i, size, kinds, mosaic_share) for i in range(n_bases)]
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    out: dict[str, list] = {
        "train": [],
        "test": [],
        "train_kinds": [],
        "test_kinds": [],
        "train_seeds": [],
        "test_seeds": [],
    }
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = pool.map(_write_base, jobs, chunksize=16)
            rows_per_base = []
            for i, rows in enumerate(results):
                rows_per_base.append(rows)
                if progress:
                    progress(i + 1, n_bases)
    else:
        rows_per_base = []
        for i, job in enumerate(jobs):
            rows_per_base.append(_write_base(job))
            if progress:
                progress(i + 1, n_bases)
    for i, rows in enumerate(rows_per_base):
        split = "test" if is_test[i] else "train"
        for clean, bad, kind, corruption_seed in rows:
            out[split].append([clean, bad, 1])
            out[f"{split}_kinds"].append(kind)
            out[f"{split}_seeds"].append(corruption_seed)
    rng = np.random.default_rng([seed, 2 << 30])
    for split in ("train", "test"):
        members = np.flatnonzero(is_test == (split == "test"))
        if len(members) < 2:
            continue
        for i in members.tolist():
            for _ in range(cross_pairs):
                j = int(rng.choice(members[members != i]))
                if not rows_per_base[j]:
                    continue  # every recipe skipped that base
                clean, bad, kind, corruption_seed = rows_per_base[j][int(rng.integers(len(rows_per_base[j])))]
                out[split].append([f"images/b{i:05d}_clean.png", bad, 1])
                out[f"{split}_kinds"].append(f"cross-{kind}")
                out[f"{split}_seeds"].append(corruption_seed)
    meta = {
        "generator": "joyq bench learn",
        "format": DATASET_FORMAT,
        "n_bases": n_bases,
        "size": size,
        "kinds": list(kinds),
        "test_bases": int(test_bases),
        "seed": seed,
        "mosaic_share": mosaic_share,
        "cross_pairs": cross_pairs,
    }
    path = folder / "dataset.json"
    path.write_text(json.dumps({"meta": meta, **out}, indent=0), encoding="utf-8")
    return path


def clean_test_images_first(data):
    """Renumber items so the clean test images come first among the test items.

    The engine's JPEG / low-res robustness tasks corrupt the first ROBUSTNESS_MAX_IMAGES
    test items; with the clean bases first they are exactly the reference's tasks (clean
    held-out image vs its corrupted copy), not corruptions of already-degraded copies."""
    test = np.asarray(data.split, dtype=object) == "test"
    clean_test = set(data.a[test & (data.y == 1.0)].tolist())
    order = sorted(range(len(data.keys)), key=lambda i: (i not in clean_test, i))
    new = np.empty(len(order), dtype=np.int64)
    new[np.array(order)] = np.arange(len(order))
    data.keys = [data.keys[i] for i in order]
    data.paths = [data.paths[i] for i in order]
    data.a, data.b = new[data.a], new[data.b]
    if data.ranking:
        data.ranking = [int(new[i]) for i in data.ranking]
    return data


# ---------------------------------------------------------------------------------------
# Training and the curve
# ---------------------------------------------------------------------------------------
CURVE_COLUMNS = ("step", "seconds", "loss", "accuracy", "jpeg_accuracy", "lowres_accuracy")


class CurveRecorder:
    """TrainProgress -> rows of the learning curve (loss every step, metrics at each eval)."""

    def __init__(self, echo=True):
        self.t0 = time.perf_counter()
        self.losses: list[tuple[int, float]] = []
        self.evals: list[dict] = []
        self.echo = echo
        self.total_steps = 0
        self.smoothed = math.nan

    def __call__(self, p) -> None:
        if p.phase == "message":
            if self.echo:
                print(p.message, file=sys.stderr)
            return
        if p.phase != "training":
            return
        self.total_steps = p.total_steps
        if p.step > 0 and p.loss is not None:
            self.losses.append((p.step, float(p.loss)))
            self.smoothed = p.loss if math.isnan(self.smoothed) else 0.9 * self.smoothed + 0.1 * p.loss
        if p.eval is not None:
            window = [v for s, v in self.losses if s > p.step - 20]
            row = {
                "step": p.step,
                "seconds": time.perf_counter() - self.t0,
                "loss": float(np.mean(window)) if window else math.nan,
                "accuracy": p.eval.get("accuracy"),
                "jpeg_accuracy": p.eval.get("jpeg_accuracy"),
                "lowres_accuracy": p.eval.get("lowres_accuracy"),
            }
            self.evals.append(row)
            if self.echo:
                print(format_row(row), file=sys.stderr, flush=True)
        elif self.echo and p.step % 25 == 0:
            print(
                f"  step {p.step}/{p.total_steps}  loss(ema) {self.smoothed:.3f}  "
                f"{time.perf_counter() - self.t0:.0f} s",
                file=sys.stderr,
                flush=True,
            )


def _f(v, digits=3):
    return "   -" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def format_header() -> str:
    return f"{'step':>5} {'time s':>7} {'loss':>6} {'pair acc':>9} {'jpeg acc':>9} {'lowres acc':>11}"


def format_row(r: dict) -> str:
    return (
        f"{r['step']:>5} {r['seconds']:>7.0f} {_f(r['loss']):>6} {_f(r['accuracy']):>9} "
        f"{_f(r['jpeg_accuracy']):>9} {_f(r['lowres_accuracy']):>11}"
    )


def lowres_factor(seed: str) -> float:
    """The downscale factor corruptions.low_res draws for ``seed`` (its first draw)."""

    return float(rng_from_seed(seed).uniform(*LOWRES_FACTOR_RANGE))


LOWRES_BINS = ((0.5, 0.7), (0.7, 0.8), (0.8, 0.9))


def item_scores(model, data, items: np.ndarray) -> np.ndarray:
    """Scores of ``items`` (indices into data.paths), indexed by item; other entries 0."""

    scores = np.zeros(len(data.keys))
    model = model.float().cpu().eval()
    with torch.inference_mode():
        for k in range(0, len(items), 64):
            chunk = items[k : k + 64]
            x = torch.stack([load_uint8(data.paths[i], model.image_size) for i in chunk])
            scores[chunk] = model(normalize(x)).numpy()
    return scores


def per_kind_accuracy(model, data, kinds, split: str = "test", seeds=None) -> dict[str, float]:
    """Accuracy of ``model`` on the dataset's pairs of ``split``, per degradation kind
    (``kinds``/``seeds`` run parallel to data.a); with the corruption seeds, low-res also
    per downscale-factor band ("lowres 0.8-0.9")."""
    mask = np.asarray(data.split, dtype=object) == split
    a, b = data.a[mask], data.b[mask]
    scores = item_scores(model, data, np.unique(np.concatenate([a, b])))
    won = (scores[a] > scores[b]) + 0.5 * (scores[a] == scores[b])
    kinds = np.asarray(kinds, dtype=object)[mask]
    out = {k: float(won[kinds == k].mean()) for k in dict.fromkeys(kinds.tolist())}
    if seeds is not None and "lowres" in out:
        seeds = np.asarray(seeds, dtype=object)[mask]
        f = np.array([lowres_factor(s) if k == "lowres" else np.nan for k, s in zip(kinds, seeds)])
        for lo, hi in LOWRES_BINS:
            band = (f >= lo) & (f < hi)
            if band.any():
                out[f"lowres {lo}-{hi} (n={int(band.sum())})"] = float(won[band].mean())
    return out


def ensure_dataset(
    folder: Path,
    *,
    n_bases=700,
    size=512,
    kinds=RECIPE_KINDS,
    test_bases=200,
    seed=0,
    mosaic_share=0.5,
    cross_pairs=0,
    echo=True,
) -> tuple[Path, float]:
    """``folder/dataset.json``, generated unless one made with the same settings is there;
    returns (path, seconds spent generating)."""
    folder = Path(folder)
    json_path = folder / "dataset.json"
    wanted = {
        "format": DATASET_FORMAT,
        "n_bases": n_bases,
        "size": size,
        "kinds": list(kinds),
        "test_bases": min(test_bases, n_bases // 2),
        "seed": seed,
        "mosaic_share": mosaic_share,
        "cross_pairs": cross_pairs,
    }
    t0 = time.perf_counter()
    try:
        have = json.loads(json_path.read_text(encoding="utf-8")).get("meta", {})
    except (OSError, ValueError):
        have = None
    if have is None or any(have.get(k) != v for k, v in wanted.items()):
        make_learning_dataset(
            folder,
            n_bases,
            size,
            kinds,
            test_bases,
            seed,
            mosaic_share,
            cross_pairs,
            progress=progress_line("generating", echo),
        )
    return json_path, time.perf_counter() - t0


def load_dataset(json_path: Path, drop_kind_prefix: str | None = None):
    """(PairData with the clean test images first, kinds, seeds): kinds/seeds parallel to
    data.a. ``drop_kind_prefix`` (e.g. "cross-") leaves those pairs out."""

    raw = json.loads(Path(json_path).read_text(encoding="utf-8"))
    data = load_pairs_json(json_path)
    kinds = np.array(raw["train_kinds"] + raw["test_kinds"], dtype=object)
    seeds = np.array(raw["train_seeds"] + raw["test_seeds"], dtype=object)
    if drop_kind_prefix:
        keep = np.array([not k.startswith(drop_kind_prefix) for k in kinds])
        data.a, data.b, data.y = data.a[keep], data.b[keep], data.y[keep]
        data.split = np.asarray(data.split, dtype=object)[keep]
        kinds, seeds = kinds[keep], seeds[keep]
    return clean_test_images_first(data), kinds, seeds


def train_recorded(
    data, kinds, seeds, *, model="tiny", steps=300, batch_size=32, lr=1e-3, evals=6, augment=True, seed=0, echo=True
) -> dict:
    """Full-mode run_training (the engine of `joyq train --mode full`) with the curve recorded."""

    cfg = TrainConfig(
        mode="full",
        lr=lr,
        batch_size=batch_size,
        device_batch_size=batch_size,
        augment=augment,
        total_samples=steps * batch_size,
        eval_every_samples=max(1, steps // evals) * batch_size,
        seed=seed,
        device="cpu",
    )
    recorder = CurveRecorder(echo)
    if echo:
        print(
            f"{len(data.keys)} images, {len(data.a)} pairs; training {model} for {steps} steps of {batch_size} pairs",
            file=sys.stderr,
        )
        print(format_header(), file=sys.stderr)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="joyq-learn-") as tmp:
        result = run_training(data, model, cfg, Path(tmp), recorder)
        train_s = time.perf_counter() - t1
        trained = load_model(str(result.path))
    per_kind = per_kind_accuracy(trained, data, kinds, seeds=seeds)
    return {
        "curve": recorder.evals,
        "losses": recorder.losses,
        "per_kind": per_kind,
        "result": result,
        "model": trained,
        "train_s": train_s,
        "images": len(data.keys),
        "pairs": len(data.a),
        "config": cfg,
    }


def learn(
    folder: Path,
    *,
    n_bases=700,
    size=512,
    kinds=RECIPE_KINDS,
    test_bases=200,
    seed=0,
    steps=300,
    batch_size=32,
    lr=1e-3,
    evals=6,
    augment=True,
    mosaic_share=0.5,
    cross_pairs=0,
    model="tiny",
    echo=True,
) -> dict:
    """Generate the data (unless ``folder/dataset.json`` exists with the same settings),
    train, and return {"curve", "losses", "per_kind", "result", "model", ...}."""
    json_path, gen_s = ensure_dataset(
        folder,
        n_bases=n_bases,
        size=size,
        kinds=kinds,
        test_bases=test_bases,
        seed=seed,
        mosaic_share=mosaic_share,
        cross_pairs=cross_pairs,
        echo=echo,
    )
    data, pair_kinds, seeds = load_dataset(json_path)
    run = train_recorded(
        data,
        pair_kinds,
        seeds,
        model=model,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        evals=evals,
        augment=augment,
        seed=seed,
        echo=echo,
    )
    run.update(generate_s=gen_s, dataset=json_path)
    return run


# ---------------------------------------------------------------------------------------
# Figures of a tower on a demo folder or on corrupted photographs
# ---------------------------------------------------------------------------------------
def _logistic_probe(xtr, ytr, xte, lam: float) -> np.ndarray:
    """Ridge logistic regression without intercept by Newton steps (x: pair differences)."""
    w = np.zeros(xtr.shape[1])
    for _ in range(50):
        p = 1 / (1 + np.exp(-(xtr @ w)))
        grad = xtr.T @ (p - ytr) + lam * w
        hess = (xtr * (p * (1 - p))[:, None]).T @ xtr + lam * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return xte @ w


def _taste_pairs(groups: np.ndarray, utility: np.ndarray, members: np.ndarray):
    """Every pair of ``members`` whose utilities differ: (i, j, i preferred, same group)."""
    i, j = np.triu_indices(len(members), 1)
    i, j = members[i], members[j]
    keep = utility[i] != utility[j]
    i, j = i[keep], j[keep]
    return i, j, (utility[i] > utility[j]).astype(float), groups[i] == groups[j]


def split_taste_probe(emb: np.ndarray, groups: np.ndarray, kinds: list[str], taste=SPLIT_TASTE) -> dict[str, float]:
    """Held-out accuracy of the best linear head on the embeddings for a taste that splits
    the degradations. Groups (scenes) alternate between training and test halves; the
    ridge strength is chosen by 2-fold cross-validation within the training half (by
    group); test accuracy over every held-out pair whose utilities differ (same scene and
    across scenes), and over the same-scene ones alone."""
    utility = np.array([taste[k] for k in kinds])
    order = {g: n for n, g in enumerate(dict.fromkeys(groups.tolist()))}
    rank = np.array([order[g] for g in groups.tolist()])
    z = (emb - emb[rank % 2 == 0].mean(0)) / (emb[rank % 2 == 0].std(0) + 1e-6)

    def fit_eval(tr, te, lam):
        i, j, y, _ = _taste_pairs(groups, utility, tr)
        ti, tj, ty, same = _taste_pairs(groups, utility, te)
        pred = _logistic_probe(z[i] - z[j], y, z[ti] - z[tj], lam) > 0
        return pred == (ty > 0), same

    train, test = np.flatnonzero(rank % 2 == 0), np.flatnonzero(rank % 2 == 1)
    lams = (0.1, 1.0, 10.0, 100.0, 1000.0)
    cv = [
        np.mean(
            [
                fit_eval(train[(rank[train] // 2) % 2 == f], train[(rank[train] // 2) % 2 != f], lam)[0].mean()
                for f in (0, 1)
            ]
        )
        for lam in lams
    ]
    ok, same = fit_eval(train, test, lams[int(np.argmax(cv))])
    return {"split-taste probe": float(ok.mean()), "split-taste probe, same scene": float(ok[same].mean())}


def tower_figures(model, pixels: torch.Tensor, groups: list[str], kinds: list[str]) -> dict[str, float]:
    """Figures of a tower on images of known scene (``groups``) and kind (demo.DEGRADATIONS):
    clean beats each degraded copy of the same scene (per kind and overall), clean beats
    degraded copies of other scenes ("cross-scene": what ranking a folder needs), and the
    split-taste probe on the embeddings. ``pixels``: uint8 [n, 3, S, S]."""
    model = model.float().cpu().eval()
    emb = embed_all(model, pixels)
    with torch.inference_mode():
        s = model.score_embeddings(emb).double().numpy()
    g, k = np.asarray(groups), np.asarray(kinds)
    clean, bad = k == "clean", k != "clean"
    same = g[:, None] == g[None, :]
    won = s[:, None] > s[None, :]
    out = {
        kind: float(won[clean[:, None] & (k == kind)[None, :] & same].mean())
        for kind in TOWER_KINDS[1:]
        if (k == kind).any()
    }
    out["same-scene"] = float(won[clean[:, None] & bad[None, :] & same].mean())
    out["cross-scene"] = float(won[clean[:, None] & bad[None, :] & ~same].mean())
    out.update(split_taste_probe(emb.double().numpy(), g, kinds))
    return out


def demo_tower_figures(model, folder: Path) -> dict[str, float]:
    """tower_figures on a make_demo_folder folder (``sceneNNNN_kind.ext``), read from disk
    the way the app reads it."""
    names = sorted(p.name for p in Path(folder).iterdir() if p.name.startswith("scene") and "_" in p.name)
    pixels = torch.stack([load_uint8(Path(folder) / n, model.image_size) for n in names])
    return tower_figures(
        model, pixels, [n.split("_")[0] for n in names], [n.split("_")[1].split(".")[0] for n in names]
    )


def photo_figures(model, photos: list[Image.Image], seed: int = 0) -> dict[str, float]:
    """tower_figures on photographs: each photo clean (PNG) and once per demo.degrade kind
    (stored as JPEG q95, as the demo folder stores them)."""
    pixels, groups, kinds = [], [], []
    for p, photo in enumerate(photos):
        rng = np.random.default_rng([seed, p])
        for kind in TOWER_KINDS:
            img = stored_like_demo(degrade(photo, kind, rng), png=kind == "clean")
            pixels.append(pil_to_uint8(resize_for_model(img, model.image_size)))
            groups.append(f"photo{p}")
            kinds.append(kind)
    return tower_figures(model, torch.stack(pixels), groups, kinds)


# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------
def write_reports(out: Path, run: dict, title: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with open(out / "curve.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CURVE_COLUMNS)
        w.writeheader()
        for r in run["curve"]:
            w.writerow({k: r[k] for k in CURVE_COLUMNS})
    written.append(out / "curve.csv")
    with open(out / "losses.csv", "w", newline="", encoding="utf-8") as f:
        f.write("step,loss\n")
        f.writelines(f"{s},{v:.5f}\n" for s, v in run["losses"])
    written.append(out / "losses.csv")
    md = [
        "| step | time (s) | loss (mean of last 20 steps) | test pair acc. | JPEG acc. | low-res acc. |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in run["curve"]:
        md.append(
            f"| {r['step']} | {r['seconds']:.0f} | {_f(r['loss'])} | {_f(r['accuracy'])} | "
            f"{_f(r['jpeg_accuracy'])} | {_f(r['lowres_accuracy'])} |"
        )
    (out / "curve.md").write_text(f"{title}\n\n" + "\n".join(md) + "\n", encoding="utf-8")
    written.append(out / "curve.md")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return written
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    steps, losses = zip(*run["losses"]) if run["losses"] else ((), ())
    ax1.plot(steps, losses, lw=0.5, alpha=0.4, label="loss per step")
    if len(losses) >= 20:
        k = np.ones(20) / 20
        ax1.plot(steps[19:], np.convolve(losses, k, mode="valid"), lw=1.5, label="mean of 20 steps")
    ax1.axhline(math.log(2), ls=":", c="grey", label="chance (ln 2)")
    ax1.set_xlabel("step")
    ax1.set_ylabel("pair loss")
    ax1.legend()
    s = [r["step"] for r in run["curve"]]
    for key, label in (
        ("accuracy", "test pairs"),
        ("jpeg_accuracy", "JPEG (held out)"),
        ("lowres_accuracy", "low-res (held out)"),
    ):
        ax2.plot(s, [r[key] if r[key] is not None else math.nan for r in run["curve"]], marker="o", label=label)
    ax2.axhline(0.5, ls=":", c="grey")
    ax2.set_ylim(0.3, 1.0)
    ax2.set_xlabel("step")
    ax2.set_ylabel("accuracy")
    ax2.legend()
    fig.suptitle(textwrap.fill(title, 140), fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "curve.png", dpi=110)
    plt.close(fig)
    written.append(out / "curve.png")
    return written


def demo_folder_accuracy(model, folder: Path) -> dict[str, float]:
    """Accuracy on a make_demo_folder folder: clean beats each degraded copy of the same
    scene (per kind, from its pairs.json), and clean beats degraded copies of other scenes
    ("cross-scene", every such pair), which is what ranking the folder needs."""

    raw = json.loads((Path(folder) / "pairs.json").read_text(encoding="utf-8"))
    pairs = raw["train"] + raw["test"]
    names = sorted({p for pair in pairs for p in pair[:2]})
    model = model.float().cpu().eval()
    with torch.inference_mode():
        x = torch.stack([load_uint8(Path(folder) / n, model.image_size) for n in names])
        s = dict(zip(names, torch.cat([model(normalize(x[k : k + 64])) for k in range(0, len(x), 64)]).tolist()))

    def kind(name: str) -> str:  # scene0003_blur.jpg -> blur
        return name.split("_")[1].split(".")[0]

    out: dict[str, list] = {}
    for a, b, _ in pairs:
        out.setdefault(kind(b), []).append(s[a] > s[b])
    clean = [n for n in names if kind(n) == "clean"]
    bad = [n for n in names if kind(n) != "clean"]
    out["cross-scene"] = [s[c] > s[d] for c in clean for d in bad if c.split("_")[0] != d.split("_")[0]]
    return {k: float(np.mean(v)) for k, v in out.items()}


def _print_run(run: dict, title: str) -> None:
    print(f"\n{title}\n")
    print(format_header())
    for r in run["curve"]:
        print(format_row(r))
    rec = run["result"].record
    after = rec["metrics_after"]
    print(
        f"\ntraining + evaluation {run['train_s']:.0f} s; best step {rec['best_step']} (lowest validation loss); "
        f"best model on held-out pairs: pair accuracy {_f(after.get('accuracy'))}, "
        f"JPEG {_f(after.get('jpeg_accuracy'))}, low-res {_f(after.get('lowres_accuracy'))}"
    )
    print("held-out accuracy per kind: " + ", ".join(f"{k} {v:.3f}" for k, v in run["per_kind"].items()))


def bench_learn(args) -> int:

    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    bad = [k for k in kinds if k not in ALL_KINDS]
    if bad or not kinds:
        raise UsageError(f"--kinds: unknown kind {bad[0] if bad else '(none)'!r}; choose from {', '.join(ALL_KINDS)}.")
    machine = machine_name()
    print(f"machine: {machine}")
    out = Path(args.out) if args.out else (Path(args.dir) / "report" if args.dir else Path("joyq-learn-report"))
    with tempfile.TemporaryDirectory(prefix="joyq-learn-data-") as tmp:
        work = Path(args.dir) if args.dir else Path(tmp)
        # The engine's pixel cache goes beside the generated data (reused with --dir), not into
        # the user's cache: it is hundreds of MB of synthetic images.
        os.environ["JOYQ_CACHE_DIR"] = str(work / "cache")
        if args.save_demo_model:
            return _bench_demo_model(Path(args.save_demo_model), work, out, machine)
        run = learn(
            work,
            n_bases=args.bases,
            size=args.size,
            kinds=kinds,
            test_bases=args.test_bases,
            seed=args.seed,
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            evals=args.evals,
            augment=not args.no_augment,
            mosaic_share=args.mosaic_share,
            cross_pairs=args.cross_pairs,
            model=args.model,
        )
    cfg = run["config"]
    start = "from scratch" if args.model == "tiny" else f"from {args.model}"
    title = (
        f"joyq bench learn: {args.model} {start}, {run['images']} images ({args.bases} bases of "
        f"{args.size} px, kinds {','.join(kinds)}), batch {cfg.batch_size}, lr {cfg.lr}, "
        f"{args.steps} steps, seed {args.seed}; {machine}"
    )
    _print_run(run, title)
    print(f"data: {run['generate_s']:.0f} s to generate")
    for p in write_reports(out, run, title):
        print(f"wrote {p}")
    if args.save_model:
        save_model(run["model"], Path(args.save_model))
        print(f"saved the trained model to {args.save_model}")
    return 0


def _bench_demo_model(dest: Path, work: Path, out: Path, machine: str) -> int:
    t0 = time.perf_counter()
    demo = make_demo_model(dest, work)
    r = demo["recipe"]
    print(
        f"\ndemo tower (demo_config, {r['n_bases']} bases, {r['steps']} steps of {r['batch_bases']} bases x "
        f"{r['per_base']} images, lr {r['lr']}); {machine}"
    )
    print("held-out bases, during training:")
    for row in demo["curve"]:
        print("  " + "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "demo-tower-curve.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(demo["curve"][0]))
        w.writeheader()
        w.writerows(demo["curve"])
    cal = demo["calibration"]
    print(
        f"\nshipping: embedding x{cal['embedding_factor']:.3g} (head / the same), temperature {cal['tau']:.3g} "
        f"(held-out NLL {cal['test_nll']:.3f}); data {demo['generate_s']:.0f} s, training {demo['train_s']:.0f} s, "
        f"{time.perf_counter() - t0:.0f} s in all"
    )
    folder = work / "gui-demo-folder"
    make_demo_folder(folder, count=200, seed=0, size=512)  # what the GUI's "Try the demo" opens
    acc = demo_tower_figures(demo["model"], folder)
    print("on the GUI's demo folder (200 images, seed 0): " + ", ".join(f"{k} {v:.3f}" for k, v in acc.items()))
    print(f"saved the demo model to {dest} ({cal['bytes'] / 1e6:.2f} MB); curve in {out}")
    return 0
