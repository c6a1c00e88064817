"""A deterministic demo folder: generated images of varied content and known quality.

Each scene is drawn once cleanly and then saved in several qualities (clean, JPEG-crushed,
blurred, low-res, noisy), so the folder holds natural "same content, different quality"
pairs. ``pairs.json`` next to the images lists clean-beats-degraded pairs in the JoyQuality
dataset format, for training the demo tower and for tests.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

DEGRADATIONS = ("clean", "jpeg", "blur", "lowres", "noise")


def draw_scene(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A synthetic 'photo': a two-colour gradient sky, shaded shapes, fine texture and lines."""
    w, h = size
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, h)[:, None, None]
    sky = (top * (1 - t) + bottom * t) * np.ones((1, w, 1))
    img = Image.fromarray(sky.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(4, 12))):
        x0, y0 = rng.integers(-w // 4, w), rng.integers(-h // 4, h)
        x1, y1 = x0 + rng.integers(w // 10, w // 2), y0 + rng.integers(h // 10, h // 2)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(0, 3)
        if kind == 0:
            draw.ellipse(
                (int(x0), int(y0), int(x1), int(y1)), fill=colour, outline=(0, 0, 0), width=int(rng.integers(1, 4))
            )
        elif kind == 1:
            draw.rectangle(
                (int(x0), int(y0), int(x1), int(y1)),
                fill=colour,
                outline=(255, 255, 255),
                width=int(rng.integers(1, 4)),
            )
        else:
            pts = [(int(rng.integers(0, w)), int(rng.integers(0, h))) for _ in range(int(rng.integers(3, 7)))]
            draw.polygon(pts, fill=colour)
    # Fine detail (stripes, hatching, dots) is what compression and blur destroy.
    for _ in range(int(rng.integers(20, 60))):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        length = int(rng.integers(10, max(11, w // 3)))
        angle = rng.uniform(0, np.pi)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.line((x, y, x + length * np.cos(angle), y + length * np.sin(angle)), fill=colour, width=1)
    arr = np.asarray(img).astype(np.float32)
    grain = rng.normal(0, 4, (h, w, 1)) + np.sin(np.arange(w) * rng.uniform(0.5, 2.5))[None, :, None] * 6
    return Image.fromarray(np.clip(arr + grain, 0, 255).astype(np.uint8), "RGB")


def degrade(img: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    if kind == "clean":
        return img
    if kind == "jpeg":
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=int(rng.integers(3, 12)))
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    if kind == "blur":
        return img.filter(ImageFilter.GaussianBlur(float(rng.uniform(1.5, 4.0))))
    if kind == "lowres":
        f = float(rng.uniform(0.15, 0.35))
        small = img.resize((max(8, int(img.width * f)), max(8, int(img.height * f))), Image.Resampling.BILINEAR)
        return small.resize(img.size, Image.Resampling.NEAREST)
    if kind == "noise":
        arr = np.asarray(img).astype(np.float32) + rng.normal(0, float(rng.uniform(25, 50)), (img.height, img.width, 3))
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    raise ValueError(f"unknown degradation {kind!r}")


def make_demo_folder(folder: Path, count: int = 200, seed: int = 0, size: int = 512) -> list[Path]:
    """Write ``count`` images (scenes x qualities) plus pairs.json; identical for the same seed.

    Clean images are stored as high-quality JPEG or PNG; degraded ones as JPEG q95 so only the
    degradation, not the container, differs. Existing files are overwritten, nothing else touched.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written: list[Path] = []
    pairs: list[list] = []
    scene = 0
    while len(written) < count:
        shape = (size, size) if scene % 3 else (size + 128, size - 64)
        clean = draw_scene(rng, shape)
        clean_name = None
        for kind in DEGRADATIONS:
            if len(written) >= count:
                break
            name = f"scene{scene:04d}_{kind}." + ("png" if kind == "clean" and scene % 4 == 0 else "jpg")
            img = degrade(clean, kind, rng)
            path = folder / name
            if path.suffix == ".png":
                img.save(path, "PNG")
            else:
                img.save(path, "JPEG", quality=95)
            written.append(path)
            if kind == "clean":
                clean_name = name
            elif clean_name:
                pairs.append([clean_name, name, 1])
        scene += 1
    # Hold out whole scenes for testing, so no test image appears in a training pair.
    test_scenes = {f"scene{s:04d}" for s in range(0, scene, 10)}
    split = {
        "train": [p for p in pairs if p[0][:9] not in test_scenes],
        "test": [p for p in pairs if p[0][:9] in test_scenes],
    }
    (folder / "pairs.json").write_text(json.dumps(split, indent=1), encoding="utf-8")
    return written
