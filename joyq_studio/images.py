"""Decode images safely and preprocess them exactly like the JoyQuality reference.

This is the only place that turns a file into model input. The recipe:
open with PIL -> apply EXIF orientation -> first frame -> RGB (alpha composited on a
neutral grey) -> resize to the model's square input ignoring aspect ratio (BICUBIC)
-> uint8 CHW tensor (:mod:`joyq_studio.pixels`). Normalisation to [-1, 1] (mean 0.5,
std 0.5) happens on the device in :func:`joyq_studio.pixels.normalize`, so worker
processes only ship uint8 bytes. This module needs no torch, so the store and the
commands that only read a project start fast.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import JoyqError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".jfif", ".avif", ".heic"}
)
# PIL's own hard limit (2 x MAX_IMAGE_PIXELS): bigger images are almost surely bombs.
MAX_PIXELS = 178_956_970
NEUTRAL_BACKGROUND = (128, 128, 128)
HASH_CHUNK = 1 << 20


class ImageError(JoyqError):
    """A file that cannot be used as an image; the message names the file and the problem."""


def is_image_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def content_hash(path: str | os.PathLike) -> str:
    """blake2b-128 of the file bytes: an image's identity survives renames and moves."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _open_checked(path: str | os.PathLike) -> Image.Image:
    """Open lazily (header only) and refuse empty files and decompression bombs."""
    name = os.fspath(path)
    try:
        if os.path.getsize(name) == 0:
            raise ImageError(f"{name}: the file is empty (0 bytes).")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(name)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{name}: the file no longer exists.") from None
    except IsADirectoryError:
        raise ImageError(f"{name}: is a directory, not an image.") from None
    except PermissionError:
        raise ImageError(f"{name}: permission denied.") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: over the {MAX_PIXELS / 1e6:.0f}-megapixel safety limit "
                         "(possible decompression bomb).") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not a readable image (unknown or corrupt format).") from None
    except OSError as e:
        raise ImageError(f"{name}: cannot be read ({e.strerror or e}).") from None
    w, h = img.size
    if w * h > MAX_PIXELS:
        img.close()
        raise ImageError(
            f"{name}: {w}x{h} is {w * h / 1e6:.0f} megapixels, over the "
            f"{MAX_PIXELS / 1e6:.0f}-megapixel safety limit (possible decompression bomb)."
        )
    return img


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """Displayed pixel size (EXIF rotation applied) from the header, without decoding; raises ImageError."""
    with _open_checked(path) as img:
        w, h = img.size
        try:  # JPEG EXIF sits in the header; other formats may need a full decode to find it
            turned = img.format in ("JPEG", "MPO") and img.getexif().get(0x0112) in (5, 6, 7, 8)
        except Exception:  # noqa: BLE001 - a broken EXIF block is reported when the image is decoded
            turned = False
        return (h, w) if turned else (w, h)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB; alpha is composited on a neutral grey."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        a = np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, NEUTRAL_BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode != "RGB":
        return img.convert("RGB")
    return img


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Fully decode a file to an upright 8-bit RGB image; raises ImageError naming the file."""
    name = os.fspath(path)
    img = _open_checked(name)
    try:
        with img:
            img.seek(0)  # animated GIF/WebP/APNG: first frame
            img = ImageOps.exif_transpose(img)
            img.load()
            return to_rgb(img)
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageError(f"{name}: corrupt or truncated image ({e}).") from None


def resize_for_model(img: Image.Image, size: int) -> Image.Image:
    """Square resize ignoring aspect ratio, BICUBIC, as the reference does."""
    return img.resize((size, size), Image.Resampling.BICUBIC)
