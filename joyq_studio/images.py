"""Decode images safely and preprocess them like the JoyQuality reference, except where noted.

This is the only place that turns a file into model input. The recipe:
open with PIL -> apply EXIF orientation -> first frame -> RGB (alpha composited on a
neutral grey) -> resize to the model's square input ignoring aspect ratio (BICUBIC)
-> uint8 CHW tensor (:mod:`joyq_studio.pixels`). Normalisation to [-1, 1] (mean 0.5,
std 0.5) happens on the device in :func:`joyq_studio.pixels.normalize`, so worker
processes only ship uint8 bytes. This module needs no torch, so the store and the
commands that only read a project start fast.

For plain 8-bit RGB and greyscale files the pixels are identical to the reference's
(``Image.open(path).convert("RGB")``, BICUBIC resize to the square input). Where they
deliberately differ, because the reference's result is not the picture the user sees:

* **EXIF rotation**: applied here (a phone photo stored sideways is scored upright); the
  reference ignores it and scores the sideways picture.
* **Alpha**: composited on neutral grey (128) here, for RGBA, LA (alpha on grey images)
  and palette transparency; the reference's ``convert("RGB")`` drops alpha, so whatever
  colour hides under transparent pixels (often black) shows.
* **Bit depth**: 16-bit greyscale and colour are 16-bit data unless the file says
  otherwise (PNG sBIT, see :func:`white_level`), so 12-bit data stored in a 16-bit PNG
  with sBIT keeps its tones and a dark 16-bit picture stays dark; the reference clips
  16-bit greyscale to white above 255 and keeps only the high byte of 16-bit colour.
* **Safety**: empty files and decompression bombs (over :data:`MAX_PIXELS`) are refused
  with one sentence; animated files give their first frame.
"""

from __future__ import annotations

import hashlib
import math
import os
import struct
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
        raise ImageError(
            f"{name}: over the {MAX_PIXELS / 1e6:.0f}-megapixel safety limit (possible decompression bomb)."
        ) from None
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


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DEEP_MODES = ("I;16", "I;16B", "I;16L", "I", "F")  # more than 8 bits per sample


def png_significant_bits(path: str | os.PathLike) -> int | None:
    """The bits per sample a PNG's sBIT chunk declares significant (largest over its
    channels), or None when it has none. Reads only the chunks before the image data."""
    try:
        with open(path, "rb") as f:
            if f.read(8) != PNG_SIGNATURE:
                return None
            for _ in range(256):
                head = f.read(8)
                if len(head) < 8:
                    return None
                length, kind = struct.unpack(">I4s", head)
                if kind == b"sBIT":
                    data = f.read(min(length, 4))
                    return max(data) if data else None
                if kind in (b"IDAT", b"IEND"):
                    return None
                f.seek(length + 4, os.SEEK_CUR)  # data and CRC
    except OSError:
        return None
    return None


def white_level(a: np.ndarray, mode: str, significant_bits: int | None = None) -> float:
    """The sample value that means white in a deep (16-bit, 32-bit int or float) image.

    A 16-bit image is 16-bit data (white at 65535, so a dark image stays dark) unless the
    file says otherwise: a PNG's sBIT chunk (``significant_bits``) of 12 makes white 4095
    (unless the samples were scaled up to the full 16-bit range, as the PNG standard asks,
    which a maximum above 4095 shows). The data's range never decides for a 16-bit file: a
    dark 16-bit picture and 12-bit data look alike. 32-bit containers carry no bit depth, so
    there the range decides: integers at most 255 are 8-bit data, 10, 12 or 14 bits when the
    largest sample needs exactly that many; floats at most 1.0 are taken as 0..1.
    """
    peak = float(np.nanmax(a)) if a.size else 0.0
    if mode == "F" and peak <= 1.0:
        return 1.0
    if mode in ("I", "F") and peak <= 255:
        return 255.0
    if significant_bits and 1 <= significant_bits <= 16:
        top = float(2**significant_bits - 1)
        return top if peak <= top else 65535.0
    if mode.startswith("I;16"):
        return 65535.0
    for bits in (10, 12, 14):
        if 2 ** (bits - 1) <= peak <= 2**bits - 1:
            return float(2**bits - 1)
    if peak <= 65535:
        return 65535.0
    return float(2 ** math.ceil(math.log2(peak + 1)) - 1)


def to_rgb(img: Image.Image, significant_bits: int | None = None) -> Image.Image:
    """Any PIL mode -> 8-bit RGB; alpha is composited on a neutral grey; deep greyscale is
    scaled by its :func:`white_level` (``significant_bits``: the file's sBIT, if any)."""
    if img.mode in DEEP_MODES:
        a = np.nan_to_num(np.asarray(img, dtype=np.float64))
        top = white_level(a, img.mode, significant_bits)
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


_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _deep_png_colour(img: Image.Image, path: str) -> Image.Image | None:
    """A 16-bit colour PNG as 8-bit RGB scaled by its real bit depth, or None for any other
    file. PIL keeps only the high byte of each 16-bit sample (12-bit data comes out almost
    black), so the image is decoded twice, once per byte, and the bytes are put together."""
    tiles = getattr(img, "tile", None) or []
    tile = tiles[0] if len(tiles) == 1 else None
    if (
        img.format != "PNG"
        or getattr(img, "is_animated", False)
        or tile is None
        or tile.args not in ("RGB;16B", "RGBA;16B")
    ):
        return None
    with Image.open(path) as low:
        low.tile = [low.tile[0]._replace(args=tile.args.replace(";16B", ";16L"))]  # the low bytes
        lo = np.asarray(low, dtype=np.float64)
    img.load()
    samples = np.asarray(img, dtype=np.float64) * 256.0 + lo
    colour = samples[..., :3]
    rgb = colour / white_level(colour, "I;16", png_significant_bits(path)) * 255.0
    if samples.shape[-1] == 4:
        alpha = samples[..., 3:] / 65535.0
        rgb = rgb * alpha + np.asarray(NEUTRAL_BACKGROUND, dtype=np.float64) * (1.0 - alpha)
    out = Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8), "RGB")
    method = _ORIENTATION.get(img.getexif().get(0x0112, 1))
    return out.transpose(method) if method is not None else out


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Fully decode a file to an upright 8-bit RGB image; raises ImageError naming the file."""
    name = os.fspath(path)
    img = _open_checked(name)
    try:
        with img:
            deep = _deep_png_colour(img, name)
            if deep is not None:
                return deep
            bits = png_significant_bits(name) if img.format == "PNG" and img.mode in DEEP_MODES else None
            img.seek(0)  # animated GIF/WebP/APNG: first frame
            img = ImageOps.exif_transpose(img)
            img.load()
            return to_rgb(img, bits)
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageError(f"{name}: corrupt or truncated image ({e}).") from None


def resize_for_model(img: Image.Image, size: int) -> Image.Image:
    """Square resize ignoring aspect ratio, BICUBIC, as the reference does."""
    return img.resize((size, size), Image.Resampling.BICUBIC)


def same_content_note(files) -> str | None:
    """One sentence saying how many image files repeat another file's content (e.g. "27
    images; scored 26 new" is right when two files are one image), or None when none do.
    ``files``: (relative path, content hash) of every image file, as ``Project.file_hashes``."""
    groups: dict[str, list[str]] = {}
    for path, digest in files:
        groups.setdefault(digest, []).append(path)
    total = sum(len(g) for g in groups.values())
    repeats = [sorted(g) for g in groups.values() if len(g) > 1]
    extra = sum(len(g) - 1 for g in repeats)
    if not extra:
        return None
    a, b = min(repeats)[:2]
    return (
        f"{extra} of the {total} image files {'has' if extra == 1 else 'have'} the same content as another "
        f"(e.g. {a} and {b}); "
        "files with the same content are one image, scored and compared once."
    )
