"""`joyq bench decode`: full JPEG decode against Pillow's draft mode on 12 MP photographs.

Draft mode asks libjpeg to decode at 1/2, 1/4 or 1/8 scale (the largest reduction that
still leaves at least the model's input size) before the same BICUBIC resize to the model
input, which skips most of the inverse DCT and colour conversion of a 12 MP file. This
bench measures what that buys (ms per image on one core) and what it changes: the model
input (mean absolute difference and PSNR of the uint8 pixels at 224 and 512 px) and the
scores (a model's |score difference|, against the spread of scores across the photos, and
the share of photo pairs whose order flips).

Photographs: scikit-image's bundled ones (``pip install scikit-image``, for this bench only),
upscaled (BICUBIC, cover and centre crop) to 4000x3000 and saved as JPEG quality 92; and the
same with Gaussian grain (sigma 3 levels) added at full size, since an upscaled photo is
smoother than a real 12 MP one and would flatter draft mode.
"""

from __future__ import annotations

import io
import statistics
import time
from itertools import combinations
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from ..images import load_rgb, resize_for_model, to_rgb
from ..model import describe_device, load_model, pick_device
from .common import machine_name

PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "motorcycle_left",
    "hubble_deep_field",
    "retina",
    "immunohistochemistry",
    "horse",
    "camera",
    "brick",
    "grass",
    "gravel",
    "coins",
    "moon",
    "page",
)
SIZE_12MP = (4000, 3000)


def draft_rgb(path, size: int) -> Image.Image:
    """What :func:`joyq_studio.images.load_rgb` gives for a plain JPEG, decoded in draft mode."""
    with Image.open(path) as img:
        img.draft("RGB", (size, size))
        img = ImageOps.exif_transpose(img)
        img.load()
        return to_rgb(img)


def photographs(grain: float, rng) -> list[tuple[str, bytes]]:
    try:
        from skimage import data
    except ImportError:
        raise SystemExit("joyq bench decode needs scikit-image for its photographs: pip install scikit-image") from None
    out = []
    for name in PHOTOS:
        try:
            a = getattr(data, name)()
        except Exception:  # noqa: BLE001 - a photo that needs a download is skipped
            continue
        img = Image.fromarray(np.asarray(a, dtype=np.uint8)).convert("RGB")
        w, h = img.size
        scale = max(SIZE_12MP[0] / w, SIZE_12MP[1] / h)
        img = img.resize((round(w * scale), round(h * scale)), Image.Resampling.BICUBIC)
        left, top = (img.width - SIZE_12MP[0]) // 2, (img.height - SIZE_12MP[1]) // 2
        img = img.crop((left, top, left + SIZE_12MP[0], top + SIZE_12MP[1]))
        if grain:
            px = np.asarray(img, dtype=np.float32) + rng.normal(0, grain, (SIZE_12MP[1], SIZE_12MP[0], 3))
            img = Image.fromarray(np.clip(px + 0.5, 0, 255).astype(np.uint8))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=92)
        out.append((name, buf.getvalue()))
    return out


def _ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def _scores(model, device, images: list[Image.Image]) -> np.ndarray:
    import torch

    from ..pixels import normalize, pil_to_uint8
    from ..scoring import prepare_for_inference

    m, forward, dtype = prepare_for_inference(model, device)
    x = torch.stack([pil_to_uint8(resize_for_model(i, m.image_size)) for i in images]).to(device)
    with torch.inference_mode():
        return m.score_embeddings(forward(normalize(x, dtype))).float().cpu().numpy()


def bench_decode(args) -> int:
    import tempfile
    from pathlib import Path

    device = pick_device(args.device)
    model = load_model(args.model)
    print(f"machine: {machine_name(device)}")
    print(
        f"model for scores: {args.model} ({model.image_size} px) on {describe_device(device)}; decode timed on "
        f"one core, median of {args.repeats}"
    )
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="joyq-bench-decode-") as tmp:
        for grain in (0.0, 3.0):
            photos = photographs(grain, rng)
            rows = []
            full_imgs, draft_imgs = [], []
            for name, blob in photos:
                path = Path(tmp) / f"{name}.jpg"
                path.write_bytes(blob)
                stats: dict[str, Any] = {"name": name}
                for size in (224, 512):
                    full = resize_for_model(load_rgb(path), size)
                    drafted = draft_rgb(path, size)
                    stats[f"scale{size}"] = SIZE_12MP[0] // drafted.width
                    small = resize_for_model(drafted, size)
                    diff = np.abs(np.asarray(full, np.float64) - np.asarray(small, np.float64))
                    stats[f"mad{size}"] = float(diff.mean())
                    mse = float((diff**2).mean())
                    stats[f"psnr{size}"] = 10 * np.log10(255**2 / mse) if mse else float("inf")
                    if size == model.image_size:
                        full_imgs.append(load_rgb(path))
                        draft_imgs.append(drafted)
                size = model.image_size
                stats["full_ms"] = _ms(lambda p=path, s=size: resize_for_model(load_rgb(p), s), args.repeats)
                stats["draft_ms"] = _ms(lambda p=path, s=size: resize_for_model(draft_rgb(p, s), s), args.repeats)
                rows.append(stats)
            s_full, s_draft = _scores(model, device, full_imgs), _scores(model, device, draft_imgs)
            delta = np.abs(s_full - s_draft)
            spread = float(np.std(s_full))
            pairs = list(combinations(range(len(rows)), 2))
            flips = sum((s_full[i] - s_full[j]) * (s_draft[i] - s_draft[j]) < 0 for i, j in pairs)
            label = "with grain (sigma 3)" if grain else "upscaled, no grain"
            print(f"\n{len(rows)} photographs, 4000x3000 JPEG q92, {label}:")
            print(
                f"{'photo':<22} {'full ms':>8} {'draft ms':>9} {'speed-up':>8}  {'MAD/PSNR 224 (1/k)':>20}"
                f"  {'MAD/PSNR 512 (1/k)':>20} {'|d score|':>9}"
            )
            for r, d in zip(rows, delta):
                speedup = r["full_ms"] / r["draft_ms"]
                print(
                    f"{r['name']:<22} {r['full_ms']:>8.1f} {r['draft_ms']:>9.1f} {speedup:>7.1f}x"
                    f"  {r['mad224']:>6.2f} / {r['psnr224']:5.1f} dB (1/{r['scale224']})"
                    f"  {r['mad512']:>6.2f} / {r['psnr512']:5.1f} dB (1/{r['scale512']}) {d:>9.4f}"
                )
            full_ms = statistics.median(r["full_ms"] for r in rows)
            draft_ms = statistics.median(r["draft_ms"] for r in rows)
            print(
                f"median: full {full_ms:.1f} ms, draft {draft_ms:.1f} ms per image per core "
                f"({full_ms / draft_ms:.1f}x); pixels at 512 px: mean abs diff "
                f"{statistics.median(r['mad512'] for r in rows):.2f} levels, PSNR "
                f"{statistics.median(r['psnr512'] for r in rows):.1f} dB"
            )
            print(
                f"scores ({args.model}): |difference| mean {delta.mean():.4f}, max {delta.max():.4f}; spread of "
                f"scores across the photos (std) {spread:.4f}, so the mean difference is "
                f"{delta.mean() / max(spread, 1e-12):.1%} of it; {flips} of {len(pairs)} photo pairs change order"
            )
    return 0
