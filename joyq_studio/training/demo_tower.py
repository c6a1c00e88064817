"""The shipped demo tower's recipe (``resources/demo-model``): its data, its training and its
preparation for shipping, moved out of ``bench/learn.py`` (issue 19 item 6, issue 25).

``joyq bench learn --save-demo-model FOLDER`` runs :func:`make_demo_model`; the benchmark's
figures of a tower (``bench.learn.demo_tower_figures``, ``joyq bench photos``) measure it.
docs/learning.md section 3 has the recipe's reasons and results. Changing anything here
changes the tower that a rebuild produces (and so its content id): see the docs first.
"""

from __future__ import annotations

import copy
import io
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..console import ProgressLine
from ..demo import degrade, draw_scene
from ..images import resize_for_model
from ..model import JoyQuality, demo_config, save_model
from ..pixels import normalize, pil_to_uint8
from ..ranking.calibration import fit_tau


def base_image(rng: np.random.Generator, size: int, mosaic_share: float = 0.5) -> Image.Image:
    """A size x size 'photo': a scene, or a 2x2 mosaic of random crops of four scenes drawn
    at random sizes between size and 2*size (so texture scale varies)."""
    if rng.random() >= mosaic_share:
        return draw_scene(rng, (size, size))
    half = size // 2
    out = Image.new("RGB", (size, size))
    for k in range(4):
        side = int(rng.integers(size, 2 * size + 1))
        src = draw_scene(rng, (side, side))
        x, y = int(rng.integers(0, side - half + 1)), int(rng.integers(0, side - half + 1))
        out.paste(src.crop((x, y, x + half, y + half)), ((k % 2) * half, (k // 2) * half))
    return out


# ---------------------------------------------------------------------------------------
# The shipped demo tower
# ---------------------------------------------------------------------------------------
#: Image kinds of the demo folder (demo.DEGRADATIONS); the tower's kind head predicts them.
TOWER_KINDS = ("clean", "jpeg", "blur", "lowres", "noise")
#: The one recipe of the shipped demo tower (make_demo_model), docs/learning.md section 3.
#: Data: ``n_bases`` generated bases (scenes, 2x2 mosaics, and every third base 640 x 448
#: like the demo folder's wide scenes), each stored clean and as ``copies`` copies per
#: demo.degrade kind at independent strengths; ``val_bases`` of them are held out.
#: Training (demo_config from its seeded initialisation, one loop, AdamW + one-cycle):
#: each step takes ``batch_bases`` bases x (clean + ``per_base - 1`` random degraded
#: copies) and minimises, on the pooled embedding e and the score s = head(e),
#:   * pair losses: clean beats degraded, for the same base AND for every other base in
#:     the batch (the cross-scene pairs that tie all contents to one quality scale), and a
#:     milder copy beats a harsher one of the same kind (any base);
#:   * auxiliary heads, linear on e and dropped when shipping: the image's kind (5-way
#:     cross-entropy) and its strength within the kind (regression), which keep kinds and
#:     strengths apart in the embedding, so a personal head can weigh them differently.
DEMO_RECIPE: dict[str, Any] = {
    "n_bases": 400,
    "val_bases": 40,
    "copies": 2,
    "seed": 0,
    "steps": 3000,
    "batch_bases": 16,
    "per_base": 3,
    "lr": 1e-3,
    "weight_decay": 0.05,
    "warmup": 0.05,
    "kind_weight": 1.0,
    "strength_weight": 2.0,
    "order_weight": 0.5,
    "cross_from": 0.4,
    "evals": 5,
    "threads": 1,
}
#: Per-dimension std of the shipped embedding: quick mode's AdamW (lr 0.008) then moves a
#: score by up to ~0.008 * 96 * 2 = 1.5 logits per step, so a head follows a user's clicks
#: within the few steps a small click set gets.
DEMO_EMBED_STD = 2.0
POOL_OUTPUT_KEYS = (
    "head.attention.out_proj.weight",
    "head.attention.out_proj.bias",
    "head.mlp.fc2.weight",
    "head.mlp.fc2.bias",
)
#: A taste that splits the degradations: likes soft focus (blur beats clean), dislikes
#: JPEG, noise and pixelation. A tower whose embedding only knows "how degraded" cannot
#: express it; the demo tower must (demo_tower_figures' "split-taste probe").
SPLIT_TASTE = {"blur": 1.0, "clean": 0.0, "jpeg": -1.0, "noise": -1.0, "lowres": -1.0}


def degradation_strength(kind: str, rng: np.random.Generator) -> float:
    """How harsh ``demo.degrade(img, kind, rng)`` will be, in [0, 1] (0: the mildest of the
    kind's range, 1: the harshest), read from a copy of ``rng``: degrade's first draw is
    its strength (JPEG quality 11..3, blur radius 1.5..4, low-res factor 0.35..0.15, noise
    sigma 25..50; tests/test_demo_tower.py checks these ranges against demo.degrade)."""
    r = copy.deepcopy(rng)
    if kind == "jpeg":
        return (11 - int(r.integers(3, 12))) / 8
    if kind == "blur":
        return (float(r.uniform(1.5, 4.0)) - 1.5) / 2.5
    if kind == "lowres":
        return (0.35 - float(r.uniform(0.15, 0.35))) / 0.2
    if kind == "noise":
        return (float(r.uniform(25, 50)) - 25) / 25
    return 0.0


def stored_like_demo(img: Image.Image, png: bool) -> Image.Image:
    """``img`` after the round trip make_demo_folder gives it: PNG (lossless), else JPEG q95."""
    if png:
        return img
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _tower_base(job: tuple[int, int, int, int, int]) -> tuple[np.ndarray, list[int], list[float]]:
    """Base ``i``: (uint8 [versions, 3, S, S] at the tower's input size, kinds, strengths)."""
    seed, i, copies, size, input_size = job
    rng = np.random.default_rng([seed, 7, i])
    img = draw_scene(rng, (size + 128, size - 64)) if i % 3 == 0 else base_image(rng, size)
    versions = [(0, 0.0, stored_like_demo(img, png=i % 4 == 0))]
    for k, kind in enumerate(TOWER_KINDS[1:], 1):
        for c in range(copies):
            r = np.random.default_rng([seed, 8, i, k, c])
            strength = degradation_strength(kind, r)
            versions.append((k, strength, stored_like_demo(degrade(img, kind, r), png=False)))
    px = np.stack([pil_to_uint8(resize_for_model(v, input_size)).numpy() for _, _, v in versions])
    return px, [k for k, _, _ in versions], [s for _, s, _ in versions]


def make_tower_data(recipe: dict, input_size: int, cache: Path | None = None, echo=True):
    """(pixels uint8 [n_bases, versions, 3, S, S], kinds [n_bases, versions], strengths):
    every base drawn, degraded, stored like the demo folder and resized once. Cached as
    ``cache`` (.npz) when given; deterministic for the recipe."""
    keys = ("n_bases", "copies", "seed")
    tag = "-".join(f"{k}{recipe[k]}" for k in keys) + f"-s{input_size}-v1"
    path = Path(cache) / f"demo-tower-data-{tag}.npz" if cache else None
    if path is not None and path.exists():
        z = np.load(path)
        return torch.from_numpy(z["pixels"]), torch.from_numpy(z["kinds"]), torch.from_numpy(z["strengths"])
    jobs = [(recipe["seed"], i, recipe["copies"], 512, input_size) for i in range(recipe["n_bases"])]
    progress = progress_line("generating", echo)
    with ProcessPoolExecutor(min(2, os.cpu_count() or 1)) as pool:
        rows = []
        for n, row in enumerate(pool.map(_tower_base, jobs, chunksize=8), 1):
            rows.append(row)
            if progress:
                progress(n, len(jobs))
    pixels = np.stack([r[0] for r in rows])
    kinds = np.array([r[1] for r in rows], dtype=np.int64)
    strengths = np.array([r[2] for r in rows], dtype=np.float32)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, pixels=pixels, kinds=kinds, strengths=strengths)
    return torch.from_numpy(pixels), torch.from_numpy(kinds), torch.from_numpy(strengths)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A random flip and quarter turn per image (quality does not depend on orientation)."""
    turns = torch.randint(0, 4, (len(x),), generator=gen).tolist()
    flips = torch.randint(0, 2, (len(x),), generator=gen).tolist()
    out = [torch.rot90(img, t, (1, 2)) for img, t in zip(x, turns)]
    return torch.stack([img.flip(2) if f else img for img, f in zip(out, flips)])


def embed_all(model, pixels: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    model.eval()
    with torch.inference_mode():
        out = torch.cat([model.embed(normalize(pixels[k : k + chunk])) for k in range(0, len(pixels), chunk)])
    return out


def _held_out_figures(model, aux, pixels, kinds, bases) -> dict[str, float]:
    """Same-base and cross-base clean-beats-degraded accuracy and kind accuracy on ``bases``."""
    px = pixels[bases].flatten(0, 1)
    emb = embed_all(model, px)
    with torch.inference_mode():
        score = model.score_embeddings(emb)
        k = kinds[bases].flatten()
        d = (emb - emb[torch.arange(len(bases)).repeat_interleave(pixels.shape[1]) * pixels.shape[1]])[k > 0]
        kind_acc = float((aux["kind"](d).argmax(1) == k[k > 0] - 1).float().mean())
    base = bases.repeat_interleave(pixels.shape[1])
    better = (k == 0)[:, None] & (k > 0)[None, :]
    same = base[:, None] == base[None, :]
    won = (score[:, None] > score[None, :]).float()
    return {"same": float(won[better & same].mean()), "cross": float(won[better & ~same].mean()), "kind": kind_acc}


def spectral_patch_init(model, gain: float = 4.0, low: int = 8, low_gain: float = 0.005) -> None:
    """Start the patch embedding as a bank of 2-D DCT filters on luminance, spread over the
    mid and high frequencies, plus ``low`` weak low-frequency luminance / colour filters.

    A random patch embedding is dominated by a patch's mean and low frequencies, and the
    token layernorm then squashes the fine structure every degradation changes (grain,
    8 px JPEG blocks, pixelation, blur); from a random start the tower sat at chance for
    hundreds of steps. With this start each token carries the patch's spectrum, so the
    kinds are told apart within tens of steps."""
    conv = next(m for m in model.tower.modules() if isinstance(m, torch.nn.Conv2d))
    dim, _, p, _ = conv.weight.shape
    n = torch.arange(p, dtype=torch.float64)

    def dct(u: int, v: int) -> torch.Tensor:
        b = torch.outer(torch.cos(math.pi * (n + 0.5) * u / p), torch.cos(math.pi * (n + 0.5) * v / p))
        return b / b.norm()

    freqs = sorted(((u, v) for u in range(p) for v in range(p) if u + v >= 3), key=lambda f: (f[0] ** 2 + f[1] ** 2, f))
    picks = np.linspace(0, len(freqs) - 1, dim - low).round().astype(int)
    grey = torch.ones(3, dtype=torch.float64) / math.sqrt(3)
    rows = [gain * dct(*freqs[k])[None] * grey[:, None, None] for k in picks]
    colours = [grey, torch.tensor([1.0, -1.0, 0.0]) / math.sqrt(2), torch.tensor([1.0, 1.0, -2.0]) / math.sqrt(6)]
    lows = [(0, 0), (0, 1), (1, 0), (1, 1)]
    for k in range(low):
        rows.append(low_gain * dct(*lows[k % len(lows)])[None] * colours[k % len(colours)][:, None, None])
    with torch.no_grad():
        conv.weight.copy_(torch.stack(rows).to(conv.weight.dtype))


def train_demo_tower(pixels, kinds, strengths, recipe: dict, echo=True):
    """The training loop of the demo tower (DEMO_RECIPE's comment says what it optimises).
    Returns (model, aux heads, curve rows, validation bases)."""
    r = recipe
    n_bases, n_versions = pixels.shape[:2]
    perm = torch.randperm(n_bases, generator=torch.Generator().manual_seed(r["seed"] + 1))
    val, train = perm[: r["val_bases"]].sort().values, perm[r["val_bases"] :].sort().values
    torch.manual_seed(r["seed"])
    model = JoyQuality(demo_config(), source="demo")
    spectral_patch_init(model)
    dim = model.embed_dim
    aux = torch.nn.ModuleDict(
        {
            "kind": torch.nn.Linear(dim, len(TOWER_KINDS) - 1),
            "kind_abs": torch.nn.Linear(dim, len(TOWER_KINDS)),
            "strength": torch.nn.Linear(dim, len(TOWER_KINDS) - 1),
        }
    )
    params = [*model.parameters(), *aux.parameters()]
    opt = torch.optim.AdamW(params, lr=r["lr"], weight_decay=r["weight_decay"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=r["lr"], total_steps=r["steps"], pct_start=r["warmup"])
    gen = torch.Generator().manual_seed(r["seed"] + 2)
    curve, t0, smoothed = [], time.perf_counter(), math.nan
    eval_every = max(1, r["steps"] // r["evals"])
    for step in range(1, r["steps"] + 1):
        model.train()
        b = train[torch.randperm(len(train), generator=gen)[: r["batch_bases"]]]
        degraded_ = torch.argsort(torch.rand(len(b), n_versions - 1, generator=gen), dim=1)[:, : r["per_base"] - 1] + 1
        v = torch.cat([torch.zeros(len(b), 1, dtype=torch.long), degraded_], 1)
        x = _augment(pixels[b[:, None], v].flatten(0, 1), gen)
        kind, strength = kinds[b[:, None], v].flatten(), strengths[b[:, None], v].flatten()
        base = b.repeat_interleave(v.shape[1])
        emb = model.embed(normalize(x))
        score = model.score_embeddings(emb)
        bad = kind > 0
        # The auxiliary heads read the difference to the same base's clean image, which
        # cancels the content (absolute targets from the start kept the loss at chance).
        diff = (emb - emb[torch.arange(len(b)).repeat_interleave(v.shape[1]) * v.shape[1]])[bad]
        loss_kind = F.cross_entropy(aux["kind"](diff), kind[bad] - 1)
        pred = aux["strength"](diff).gather(1, (kind[bad] - 1)[:, None]).squeeze(1)
        loss_strength = F.mse_loss(pred, strength[bad])
        pair_loss = F.softplus(score[None, :] - score[:, None])  # row i beats column j
        better = (kind == 0)[:, None] & bad[None, :]
        same = base[:, None] == base[None, :]
        milder = (kind[:, None] == kind[None, :]) & bad[:, None] & (strength[None, :] - strength[:, None] > 0.25)
        loss_order = pair_loss[milder].mean() if milder.any() else score.sum() * 0
        cross = 1.0 if step > r["cross_from"] * r["steps"] else 0.0  # cross-scene pairs once degradations are seen
        loss = (
            pair_loss[better & same].mean()
            + cross * pair_loss[better & ~same].mean()
            + r["order_weight"] * loss_order
            + r["kind_weight"] * loss_kind
            + r["strength_weight"] * loss_strength
            + cross * r["kind_weight"] * F.cross_entropy(aux["kind_abs"](emb), kind)
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        smoothed = float(loss.detach()) if math.isnan(smoothed) else 0.95 * smoothed + 0.05 * float(loss.detach())
        if step % eval_every == 0 or step == r["steps"]:
            row = {
                "step": step,
                "seconds": time.perf_counter() - t0,
                "loss": smoothed,
                "kind_loss": float(loss_kind.detach()),
                "strength_loss": float(loss_strength.detach()),
                **_held_out_figures(model, aux, pixels, kinds, val),
            }
            curve.append(row)
            if echo:
                print(
                    "  " + "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
                    file=sys.stderr,
                    flush=True,
                )
        elif echo and step % 25 == 0:
            print(
                f"  step {step}/{r['steps']}  loss(ema) {smoothed:.3f}  {time.perf_counter() - t0:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    return model.eval(), aux.eval(), curve, val


def rescale_embedding(model, factor: float, shift=None) -> None:
    """Pooled embedding e -> factor * e - shift, with the head compensating: scores unchanged.

    The MAP pooler returns a + mlp(layernorm(a)) with a = out_proj(attention); scaling
    out_proj and the MLP's last layer scales both terms (layernorm is scale-invariant),
    and the MLP's last bias adds straight to the output, so it takes the shift."""

    state = model.tower_state_dict()
    for k in POOL_OUTPUT_KEYS:
        state[k] = state[k] * factor
    if shift is not None:
        state["head.mlp.fc2.bias"] = state["head.mlp.fc2.bias"] - shift
    model.load_tower_state_dict(state)
    with torch.no_grad():
        model.head.weight.div_(factor)
        if shift is not None:
            model.head.bias.add_(model.head.weight[0] @ shift)


def calibrate_for_shipping(model, pixels: torch.Tensor, kinds: torch.Tensor) -> dict:
    """Ship-time normalisation on held-out images (``pixels`` [n, versions, 3, S, S], one
    base per row); scores stay the same up to one temperature, so every ranking and
    accuracy is unchanged:

    * the embedding is centred and scaled to DEMO_EMBED_STD per dimension (a trained tower's
      pooled output carries a constant offset that makes every cosine similarity ~1, which
      the pairing's "near" neighbours and the importance weights rely on);
    * the head's temperature is fitted (calibration.fit_tau) on every held-out pair "clean
      beats degraded" (same base and across bases), so sigmoid(s_A - s_B) is a calibrated
      probability rather than the training run's overconfidence."""
    px = pixels.flatten(0, 1)
    emb = embed_all(model, px)
    with torch.inference_mode():
        before = model.score_embeddings(emb)
    factor = DEMO_EMBED_STD / float(emb.std(0).mean())
    rescale_embedding(model, factor, shift=emb.mean(0) * factor)
    centred = embed_all(model, px)
    with torch.inference_mode():
        after = model.score_embeddings(centred)
    assert torch.allclose(before, after, atol=1e-3 * float(before.abs().max()) + 1e-4), "rescaling changed scores"
    k = kinds.flatten().numpy()
    a, b = np.nonzero((k == 0)[:, None] & (k > 0)[None, :])
    s = after.double().numpy()
    tau, nll = fit_tau(s[a] - s[b], np.ones(len(a)))
    with torch.no_grad():
        model.head.weight.div_(tau)
        model.head.bias.div_(tau)
    return {
        "embedding_factor": factor,
        "embedding_norm": float(centred.norm(dim=1).mean()),
        "tau": tau,
        "test_nll": nll,
    }


def make_demo_model(dest: Path, work: Path, echo=True, recipe: dict | None = None) -> dict:
    """The shipped demo tower: DEMO_RECIPE's data and training, the auxiliary heads dropped,
    calibrate_for_shipping on the held-out bases, saved with model.save_model.
    Bit-identical for the same recipe, code and library versions on the same kind of CPU
    (the build pins torch to ``threads`` threads: a reduction split differently rounds
    differently; one thread is also the fastest on a 2-core machine shared with other
    jobs, where two threads mostly wait for each other)."""
    r = {**DEMO_RECIPE, **(recipe or {})}
    threads = torch.get_num_threads()
    torch.set_num_threads(r["threads"])
    try:
        t0 = time.perf_counter()
        size = demo_config().image_size
        assert isinstance(size, int)  # demo_config sets one side
        pixels, kinds, strengths = make_tower_data(r, size, cache=Path(work), echo=echo)
        gen_s = time.perf_counter() - t0
        if echo:
            print(
                f"{pixels.shape[0]} bases x {pixels.shape[1]} versions in {gen_s:.0f} s; training "
                f"demo_config for {r['steps']} steps",
                file=sys.stderr,
                flush=True,
            )
        model, aux, curve, val = train_demo_tower(pixels, kinds, strengths, r, echo=echo)
        train_s = time.perf_counter() - t0 - gen_s
        info = calibrate_for_shipping(model, pixels[val], kinds[val])
    finally:
        torch.set_num_threads(threads)
    save_model(model, Path(dest))
    info["bytes"] = sum(f.stat().st_size for f in Path(dest).iterdir() if f.is_file())
    return {"curve": curve, "generate_s": gen_s, "train_s": train_s, "calibration": info, "model": model, "recipe": r}


def progress_line(label: str, echo: bool):
    if not echo:
        return None

    return ProgressLine(label, "base")
