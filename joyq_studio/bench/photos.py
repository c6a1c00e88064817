"""`joyq bench photos`: the shipped demo tower on real photographs we corrupt ourselves.

scikit-image ships a few photographs (astronaut, camera, coffee, ...; install it to run
this, it is no dependency of the app). Each photo is scored clean (PNG) and with each
corruption of two sets, stored as JPEG q95 the way ``joyq demo`` stores its copies:

* "issue 25" (fixed strengths): Gaussian blur (radius 2), Gaussian noise (sigma 25),
  strong JPEG (quality 10), and 3x nearest upscaling (downscale to a third, box filter,
  then nearest-neighbour back up);
* "demo" (``demo.degrade``, random strengths per photo): the demo folder's own recipes.

Figures, each with its pair count and Wilson 95% interval (metrics.agreement): within a
photo, clean above each of its own corrupted copies (per kind and overall); across photos,
clean above every other photo's corrupted copies. Cross-photo pairs share images, so their
interval is narrower than the data can promise; the within-photo one is the honest one.
"""

from __future__ import annotations

import io
import time

import numpy as np
import torch
from PIL import Image, ImageFilter

from ..console import UsageError
from ..demo import degrade
from ..images import resize_for_model, to_rgb
from ..metrics import Agreement, agreement
from ..model import load_model
from ..pixels import normalize, pil_to_uint8
from .common import machine_name

#: The scikit-image photographs used (those bundled with the package; docs/learning.md).
PHOTOS = (
    "astronaut",
    "camera",
    "coffee",
    "chelsea",
    "rocket",
    "coins",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "page",
    "text",
    "brick",
    "grass",
    "gravel",
    "retina",
    "clock",
)


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _upscale3(img: Image.Image) -> Image.Image:
    small = img.resize((max(1, img.width // 3), max(1, img.height // 3)), Image.Resampling.BOX)
    return small.resize(img.size, Image.Resampling.NEAREST)


def _noise(img: Image.Image, sigma: float, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = np.asarray(img).astype(np.float32) + rng.normal(0, sigma, (img.height, img.width, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def issue_set(img: Image.Image, seed: int) -> dict[str, Image.Image]:
    return {
        "blur": img.filter(ImageFilter.GaussianBlur(2.0)),
        "noise": _noise(img, 25.0, seed),
        "jpeg q10": _jpeg(img, 10),
        "3x nearest": _upscale3(img),
    }


def demo_set(img: Image.Image, seed: int) -> dict[str, Image.Image]:
    rng = np.random.default_rng([seed, 7])
    return {kind: degrade(img, kind, rng) for kind in ("jpeg", "blur", "lowres", "noise")}


def load_photos(size: int = 512) -> list[tuple[str, Image.Image]]:
    try:
        from skimage import data  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except ImportError:
        raise UsageError(
            "`joyq bench photos` needs scikit-image for its photographs (pip install scikit-image)."
        ) from None
    out = []
    for name in PHOTOS:
        try:
            arr = getattr(data, name)()
        except Exception:  # noqa: BLE001 - a photo that needs a download is left out, said below
            continue
        img = to_rgb(Image.fromarray(np.asarray(arr, dtype=np.uint8)))
        scale = size / max(img.size)
        if scale < 1:
            img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
        out.append((name, img))
    return out


def figures(scores: dict[tuple[int, str], float], kinds: list[str], n: int) -> dict[str, Agreement]:
    """Within-photo (per kind, all) and cross-photo agreement of clean above corrupted."""
    out = {}
    within = []
    for kind in kinds:
        d = [scores[(p, "clean")] - scores[(p, kind)] for p in range(n)]
        out[f"within, {kind}"] = agreement(d, np.ones(len(d)))
        within += d
    out["within, all"] = agreement(within, np.ones(len(within)))
    cross = [scores[(p, "clean")] - scores[(q, kind)] for p in range(n) for q in range(n) if q != p for kind in kinds]
    out["cross-photo, all"] = agreement(cross, np.ones(len(cross)))
    return out


def _text(a: Agreement) -> str:
    return f"{a.value:.3f} of {a.count} ({a.low:.2f}-{a.high:.2f})"


def bench_photos(args) -> int:
    model = load_model(args.model).float().eval()
    photos = load_photos()
    if not photos:
        raise UsageError("scikit-image gave no photograph (are its data files installed?).")
    names = ", ".join(n for n, _ in photos)
    print(f"machine: {machine_name()}; model {args.model}; {len(photos)} photographs: {names}")
    for title, make in (("issue 25 corruptions (fixed strengths)", issue_set), ("demo.degrade corruptions", demo_set)):
        pixels, keys = [], []
        for p, (_, photo) in enumerate(photos):
            variants = {"clean": photo, **{k: _jpeg(v, 95) for k, v in make(photo, p).items()}}
            for kind, img in variants.items():
                pixels.append(pil_to_uint8(resize_for_model(img, model.image_size)))
                keys.append((p, kind))
        t0 = time.perf_counter()
        with torch.inference_mode():
            x = torch.stack(pixels)
            s = torch.cat([model(normalize(x[k : k + 32])).reshape(-1) for k in range(0, len(x), 32)])
        took = time.perf_counter() - t0
        scores = dict(zip(keys, s.double().tolist()))
        kinds = [k for k in dict.fromkeys(kind for _, kind in keys) if k != "clean"]
        print(f"\n{title}: {len(pixels)} images scored in {took:.1f} s (model only)")
        print("| figure | agreement of N pairs (95% interval) |\n|---|---|")
        for name, a in figures(scores, kinds, len(photos)).items():
            print(f"| {name} | {_text(a)} |")
    return 0
