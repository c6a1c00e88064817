"""Star ratings inside image files: an XMP packet found by its markers, or the EXIF Rating tag.

JPEG (APP1), TIFF (tag 700) and PNG (an uncompressed ``iTXt`` chunk) all store the packet
as plain UTF-8 between ``<?xpacket begin`` and ``<?xpacket end ...?>`` (or, without the
wrapper, ``<x:xmpmeta ... </x:xmpmeta>``), so one scan of the file's bytes finds it in each
format. The packet is then read by the same strict reader as a sidecar. The EXIF ``Rating``
tag (0x4746, written by Windows and many cameras) is read with Pillow, which only parses
the header. HEIF/HEIC is skipped: no maintained reader of its metadata is a dependency.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

from .core import MAX_XMP_BYTES, XmpError, XmpRating, read

#: Formats whose embedded XMP is read (by extension, lower case).
EMBEDDED_FORMATS = (".jpg", ".jpeg", ".tif", ".tiff", ".png")
#: Formats skipped, and said so.
SKIPPED_FORMATS = (".heic", ".heif", ".avif")
EXIF_RATING = 0x4746


def find_packet(data: bytes | mmap.mmap) -> bytes | None:
    """The first XMP packet in a file's bytes, or None."""
    start = data.find(b"<?xpacket begin")
    if start >= 0:
        tail = data.find(b"<?xpacket end", start)
        if tail < 0:
            return None
        stop = data.find(b"?>", tail)
        if stop < 0 or stop + 2 - start > MAX_XMP_BYTES:
            return None
        return bytes(data[start : stop + 2])
    start = data.find(b"<x:xmpmeta")
    if start < 0:
        return None
    stop = data.find(b"</x:xmpmeta>", start)
    if stop < 0 or stop + 12 - start > MAX_XMP_BYTES:
        return None
    return bytes(data[start : stop + 12])


def embedded_xmp_rating(path: Path) -> XmpRating | None:
    """The rating of the XMP packet inside ``path`` (None: no packet or no rating there).
    XmpError for a packet we will not read."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return None
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            packet = find_packet(m)
    if packet is None:
        return None
    r = read(packet, f"{path} (embedded XMP)")
    return r if r.stars is not None else None


def exif_rating(path: Path) -> int | None:
    """The EXIF Rating tag (-1..5; 0 = none) of ``path`` via Pillow, or None."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            value = im.getexif().get(EXIF_RATING)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return None
    if not isinstance(value, int) or not -1 <= value <= 5 or value == 0:
        return None
    return value


def embedded_rating(path: Path) -> tuple[XmpRating | None, str | None]:
    """(rating or None, why it was skipped or None) of an image file: embedded XMP first,
    then the EXIF Rating tag."""
    ext = path.suffix.lower()
    if ext in SKIPPED_FORMATS:
        return None, "HEIF/AVIF metadata is not read (no maintained reader is a dependency)"
    if ext not in EMBEDDED_FORMATS:
        return None, None
    try:
        r = embedded_xmp_rating(path)
    except XmpError as e:
        return None, str(e)
    except OSError as e:
        return None, f"{path}: cannot be read ({e.strerror or e})"
    if r is not None:
        return r, None
    stars = exif_rating(path)
    return (XmpRating(stars, False, from_exif=True) if stars is not None else None), None
