"""XMP: a small strict reader and splicing writer (sidecars), and embedded packets in images."""

from .core import (
    KEYWORD_PREFIX,
    MAX_XMP_BYTES,
    MS_PHOTO_SCALE,
    XmpDoc,
    XmpError,
    XmpRating,
    minimal_sidecar,
    parse,
    read,
    read_rating,
    set_rating,
    stars_of_ms_photo,
)

__all__ = [
    "KEYWORD_PREFIX",
    "MAX_XMP_BYTES",
    "MS_PHOTO_SCALE",
    "XmpDoc",
    "XmpError",
    "XmpRating",
    "minimal_sidecar",
    "parse",
    "read",
    "read_rating",
    "set_rating",
    "stars_of_ms_photo",
]
