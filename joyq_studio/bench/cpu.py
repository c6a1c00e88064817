"""`joyq bench cpu`: what scoring costs on this CPU, and which CPU variant to keep.

Two parts, one run:

1. Speed, on the real so400m-patch16-512 shape (random weights have the real cost): seconds
   per image of fp32, int8 dynamic quantisation of the Linear layers, bfloat16 (flagged when
   the CPU has no native bf16), torch.compile (its compile time reported apart), at the
   thread counts and batch sizes asked for; side by side, medians, ratios to fp32.
2. Tolerance, on models whose weights mean something (the shipped demo tower, a random
   small SigLIP, or the real JoyQuality if you have it: ``--check-model REPO_OR_PATH``) and
   on real photographs (scikit-learn's sample photos, cropped at many places and scales):
   Spearman of each variant's scores against fp32 and the largest absolute difference. A
   variant is kept only when Spearman >= 0.999 and max |diff| <= 2 % of the fp32 score spread.

A single so400m forward pass at 512 px takes 20-60 s on a loaded 2-core VM, so the default
run is short (1 image per batch, 1 repeat: about 10 minutes); --repeats and --images buy
precision.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ..model import JoyQuality, load_model
from ..pixels import normalize
from .common import machine_name

SPEARMAN_MIN = 0.999
SPREAD_SHARE = 0.02  # max |diff| allowed, as a share of the fp32 scores' range


def native_bf16() -> bool:
    """Whether the CPU computes bfloat16 natively (AVX512-BF16 or AMX); without it bf16 is emulated."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def int8_dynamic(model: JoyQuality) -> JoyQuality:
    """The tower's Linear layers with int8 weights, activations quantised on the fly; the
    one-output head stays fp32."""
    from torch.ao.quantization import quantize_dynamic

    out = copy.deepcopy(model)
    out.tower = quantize_dynamic(out.tower, {nn.Linear}, dtype=torch.qint8)
    return out


def variant(model: JoyQuality, name: str) -> tuple[Callable[[torch.Tensor], torch.Tensor], float]:
    """(scores function for normalised fp32 pixels, seconds spent preparing it)."""
    t0 = time.perf_counter()
    fn: Callable[[torch.Tensor], torch.Tensor]
    if name == "fp32":
        fn = model.float().eval()
    elif name == "int8":
        fn = int8_dynamic(model.float().eval())
    elif name == "bf16":
        half = copy.deepcopy(model).to(torch.bfloat16).eval()
        fn = lambda x: half(x.to(torch.bfloat16)).float()
    elif name == "compile":
        plain = model.float().eval()
        compiled = torch.compile(plain.embed)
        fn = lambda x: plain.score_embeddings(compiled(x))
    else:
        raise ValueError(name)
    return fn, time.perf_counter() - t0


def photos(size: int, count: int) -> torch.Tensor:
    """``count`` real photographs at ``size`` px: crops of scikit-learn's two sample photos
    at several places and scales (uint8 [N, 3, S, S])."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    images = [Image.fromarray(a) for a in load_sample_images().images]
    rng = np.random.default_rng(0)
    out = []
    for i in range(count):
        img = images[i % len(images)]
        w, h = img.size
        side = int(rng.uniform(0.3, 1.0) * min(w, h))
        x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        crop = img.crop((x, y, x + side, y + side)).resize((size, size), Image.Resampling.BICUBIC)
        out.append(torch.from_numpy(np.asarray(crop).copy()).permute(2, 0, 1))
    return torch.stack(out)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def tolerance(spec: str, names: list[str], count: int) -> list[dict]:
    """Scores of each variant against fp32 on ``count`` photographs."""
    model = load_model(spec)
    x = normalize(photos(model.image_size, count), torch.float32)
    rows = []
    with torch.inference_mode():
        ref = model.float().eval()(x).numpy()
        spread = float(ref.max() - ref.min())
        for name in names:
            fn, _ = variant(model, name)
            s = fn(x).float().numpy()
            rho, diff = spearman(ref, s), float(np.abs(s - ref).max())
            ok = rho >= SPEARMAN_MIN and diff <= SPREAD_SHARE * spread
            rows.append(
                {"model": spec, "variant": name, "spearman": rho, "max_abs_diff": diff, "spread": spread, "ok": ok}
            )
    return rows


def speed(spec: str, name: str, threads: int, batch: int, repeats: int) -> dict:
    torch.set_num_threads(threads)
    model = load_model(spec)
    fn, prep = variant(model, name)
    x = torch.rand(batch, 3, model.image_size, model.image_size) * 2 - 1
    times = []
    with torch.inference_mode():
        if name == "compile":  # compiled for this batch shape: that compile is preparation too
            t0 = time.perf_counter()
            fn(x)
            prep += time.perf_counter() - t0
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(x)
            times.append((time.perf_counter() - t0) / batch)
    return {
        "variant": name,
        "threads": threads,
        "batch": batch,
        "s_per_image": statistics.median(times),
        "prep_s": prep,
        "runs": repeats,
    }


def bench_cpu(args) -> int:
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    print(f"machine: {machine_name()}; torch {torch.__version__}; native bf16: {native_bf16()}")
    load = _load_average()
    if load:
        print(f"load average at start: {load}")
    print(
        f"\nscore deviation from fp32 on {args.photos} real photographs (keep if Spearman >= {SPEARMAN_MIN} "
        f"and max |diff| <= {SPREAD_SHARE:.0%} of the fp32 spread):"
    )
    verdict: dict[str, bool] = {}
    for spec in args.check_model:
        for row in tolerance(spec, names, args.photos):
            verdict[row["variant"]] = verdict.get(row["variant"], True) and row["ok"]
            print(
                f"  {row['model']:>12}  {row['variant']:>8}  Spearman {row['spearman']:.5f}  "
                f"max |diff| {row['max_abs_diff']:.4f} (spread {row['spread']:.3f})  "
                f"{'within tolerance' if row['ok'] else 'OUTSIDE tolerance'}"
            )
    print(
        f"\nspeed of {args.model} at {args.threads} threads x batch {args.batch_sizes}, "
        f"median of {args.repeats} run(s) (seconds per image; prep = quantise or compile time):"
    )
    rows = []
    base: dict[tuple[int, int], float] = {}
    for threads in args.threads:
        for batch in args.batch_sizes:
            for name in names:
                row = speed(args.model, name, threads, batch, args.repeats)
                rows.append(row)
                if name == "fp32":
                    base[(threads, batch)] = row["s_per_image"]
                ref = base.get((threads, batch))
                ratio = f"{ref / row['s_per_image']:.2f}x fp32" if ref else ""
                print(
                    f"  threads {threads}  batch {batch}  {name:>8}  {row['s_per_image']:7.2f} s/img  "
                    f"prep {row['prep_s']:6.1f} s  {ratio}",
                    flush=True,
                )
    fastest = min(rows, key=lambda r: r["s_per_image"])
    keep = min((r for r in rows if verdict.get(r["variant"], r["variant"] == "fp32")), key=lambda r: r["s_per_image"])
    print(
        f"\nfastest: {fastest['variant']} (threads {fastest['threads']}, batch {fastest['batch']}, "
        f"{fastest['s_per_image']:.2f} s/img); kept (fastest within tolerance): {keep['variant']} "
        f"(threads {keep['threads']}, batch {keep['batch']}, {keep['s_per_image']:.2f} s/img = "
        f"{3600 / keep['s_per_image']:.0f} images per hour)"
    )
    return 0


def _load_average() -> str:
    try:
        with open("/proc/loadavg", encoding="utf-8") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return ""
