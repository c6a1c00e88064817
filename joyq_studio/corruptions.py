"""Synthetic validation pairs: a clean image should beat a corrupted copy of itself.

These are the two robustness tasks of the JoyQuality reference (its ``jpeg_accuracy`` and
``lowres_accuracy``). A finetune that loses them has started to forget what image
quality is, whatever its accuracy on the user's clicks says.

* :func:`jpeg_crush` - JPEG-compress until at least ~2/3 of the bytes are gone; an image
  that never gets there by quality 15 is skipped (None), as in the reference.
* :func:`low_res`   - downscale by a random factor in [0.5, 0.9], upscale back.

Every corruption has the signature ``f(img, seed) -> PIL.Image.Image | None`` (None: the
recipe skips this image) and is deterministic given ``seed`` (str, int or bytes - e.g.
the image's content hash), so a validation set can be rebuilt bit-for-bit. Seeds go
through SHA-256, never Python's salted ``hash()``. Use :func:`make_validation_pair` to
get a (clean, corrupt) pair of identical size. Sizes are truncated with ``int()`` as the
reference does (not rounded), so both produce the same pixel sizes.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable

import numpy as np
from PIL import Image

from .images import to_rgb  # one RGB conversion for the whole app

__all__ = [
    "Seed",
    "MAX_SIDE",
    "rng_from_seed",
    "clean_capped",
    "jpeg_crush",
    "low_res",
    "make_validation_pair",
    "CORRUPTIONS",
    "STRENGTHS",
]

Seed = str | int | bytes | None

#: Longest side of the low-res task's images (clean and corrupt) in pixels.
MAX_SIDE = 1024
#: JPEG: baseline quality, step, floor, and the target size as a share of the baseline.
JPEG_BASE_QUALITY = 90
JPEG_QUALITY_STEP = 5
JPEG_MIN_QUALITY = 15
JPEG_TARGET_RATIO = 0.33
#: Low-res: range of the downscale factor and the upscale filters drawn from.
LOWRES_FACTOR_RANGE = (0.5, 0.9)
UPSCALE_FILTERS: tuple[Image.Resampling, ...] = (
    Image.Resampling.BILINEAR,
    Image.Resampling.BICUBIC,
    Image.Resampling.LANCZOS,
)


def rng_from_seed(seed: Seed) -> np.random.Generator:
    """A numpy Generator seeded from SHA-256 of a canonical encoding of ``seed``.

    ``"str:<utf-8>"``, ``"int:<decimal>"`` or ``"bytes:<raw>"`` (None counts as int 0);
    the first 8 digest bytes (big-endian) seed PCG64. Stable across processes and
    Python versions, and "1" != 1.
    """
    if seed is None:
        seed = 0
    if isinstance(seed, bool) or not isinstance(seed, (str, int, bytes)):
        raise TypeError(f"seed must be str, int or bytes, got {type(seed).__name__}.")
    if isinstance(seed, str):
        payload = b"str:" + seed.encode("utf-8")
    elif isinstance(seed, bytes):
        payload = b"bytes:" + seed
    else:
        payload = b"int:" + str(int(seed)).encode("ascii")
    digest = hashlib.sha256(payload).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


def _capped_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    w, h = size
    longest = max(w, h)
    if longest <= max_side:
        return w, h
    scale = max_side / longest
    return max(1, int(w * scale)), max(1, int(h * scale))


def clean_capped(img: Image.Image, max_side: int = MAX_SIDE) -> Image.Image:
    """RGB copy with the longest side capped at ``max_side`` (LANCZOS), aspect kept.

    This is the clean half of a low-res pair: :func:`low_res` returns an image of exactly
    this size. Images already within the cap are returned unchanged (as RGB).
    """
    rgb = to_rgb(img)
    size = _capped_size(rgb.size, max_side)
    if size == rgb.size:
        return rgb
    return rgb.resize(size, Image.Resampling.LANCZOS)


def _jpeg_bytes(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def jpeg_crush(
    img: Image.Image, seed: Seed = None, target_ratio: float = JPEG_TARGET_RATIO, min_quality: int = JPEG_MIN_QUALITY
) -> Image.Image | None:
    """JPEG-compress until the file is at most 33% (``target_ratio``) of its quality-90 size, or None.

    Encode at quality 90 to get a baseline size B, then try qualities 90, 85, ... 15
    (``min_quality``) and return the decoded RGB image (same size as the input) of the
    first whose size is <= 0.33 B. An image that never gets there (a flat or tiny one, whose JPEG is mostly
    headers) is skipped: None, exactly as the reference's ``jpeg_compression_augment``,
    so its "corrupt" copy is never a near-identical one that measures nothing. PIL's
    default JPEG settings (4:2:0 chroma subsampling) are used throughout. Deterministic;
    ``seed`` is accepted only so all corruptions share one signature.
    """
    del seed  # deterministic by construction
    rgb = to_rgb(img)
    target = target_ratio * len(_jpeg_bytes(rgb, JPEG_BASE_QUALITY))
    qualities = [*range(JPEG_BASE_QUALITY, JPEG_MIN_QUALITY - 1, -JPEG_QUALITY_STEP)]
    qualities += [q for q in (10, 5) if q >= min_quality]  # only the stronger strengths go below 15
    for quality in qualities:
        data = _jpeg_bytes(rgb, quality)
        if len(data) <= target:
            with Image.open(io.BytesIO(data)) as decoded:
                return decoded.convert("RGB")
    return None


def low_res(
    img: Image.Image,
    seed: Seed = None,
    max_side: int = MAX_SIDE,
    factor_range: tuple[float, float] = LOWRES_FACTOR_RANGE,
) -> Image.Image:
    """Lose resolution: downscale by f ~ U[0.5, 0.9] (``factor_range``) (LANCZOS) and upscale back.

    Steps: cap the longest side at ``max_side`` (:func:`clean_capped`); draw f, then
    draw the upscale filter uniformly from BILINEAR / BICUBIC / LANCZOS, both from
    :func:`rng_from_seed` (seed); resize to (max(1, int(w f)), max(1, int(h f))) with
    LANCZOS; resize back to the capped size with the drawn filter. The result has the
    size of ``clean_capped(img, max_side)``. Sizes are truncated (``int``), as the reference.
    """
    rng = rng_from_seed(seed)
    factor = float(rng.uniform(*factor_range))
    upscale = UPSCALE_FILTERS[int(rng.integers(len(UPSCALE_FILTERS)))]
    capped = clean_capped(img, max_side)
    w, h = capped.size
    small = capped.resize((max(1, int(w * factor)), max(1, int(h * factor))), Image.Resampling.LANCZOS)
    return small.resize((w, h), upscale)


#: name -> corruption; each is f(img, seed) -> corrupted RGB image, or None to skip the image.
CORRUPTIONS: dict[str, Callable[..., Image.Image | None]] = {
    "jpeg": jpeg_crush,
    "lowres": low_res,
}


#: Strengths of each robustness task, mildest (the reference recipe) first: keyword
#: arguments of its corruption. The robustness figures use as many as it takes to reach
#: enough pairs on a small test set (:func:`joyq_studio.training.evaluation.robustness_pixels`).
STRENGTHS: dict[str, tuple[dict, ...]] = {
    "jpeg": (
        {},
        {"target_ratio": 0.2, "min_quality": 5},
        {"target_ratio": 0.12, "min_quality": 5},
    ),
    "lowres": (
        {},
        {"factor_range": (0.3, 0.5)},
        {"factor_range": (0.15, 0.3)},
    ),
}


def make_validation_pair(
    img: Image.Image, kind: str, seed: Seed = None, strength: int = 0
) -> tuple[Image.Image, Image.Image] | None:
    """(clean, corrupt) of identical size for corruption ``kind`` in :data:`CORRUPTIONS`
    at ``strength`` (an index into :data:`STRENGTHS`; 0 = the reference recipe), or None
    when the recipe skips this image (see :func:`jpeg_crush`).

    The clean image should win. For "lowres" the clean side is :func:`clean_capped`;
    for "jpeg" it is the RGB original.
    """
    try:
        corrupt_fn = CORRUPTIONS[kind]
    except KeyError:
        names = ", ".join(sorted(CORRUPTIONS))
        raise ValueError(f"Unknown corruption {kind!r}; choose one of: {names}.") from None
    if not 0 <= strength < len(STRENGTHS[kind]):
        raise ValueError(f"Strength {strength} of {kind!r} is outside 0..{len(STRENGTHS[kind]) - 1}.")
    corrupt = corrupt_fn(img, seed, **STRENGTHS[kind][strength])
    if corrupt is None:
        return None
    clean = clean_capped(img) if kind == "lowres" else to_rgb(img)
    return clean, corrupt
