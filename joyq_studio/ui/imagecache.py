"""Off-GUI-thread image decoding with bounded memory.

* :class:`ImageLoader` decodes full images (and a copy pre-fitted to the pane size, so
  painting never rescales a 24-megapixel image on the GUI thread) on a thread pool, into
  an LRU cache bounded in bytes. Decoding uses the core's :func:`~joyq_studio.images.load_rgb`
  (EXIF orientation, first frame, alpha on grey): what you judge is what the model sees.
* :class:`ThumbnailLoader` makes small thumbnails, cached on disk under
  ``store.cache_dir()/thumbnails`` and in a small LRU in memory.

QImage (unlike QPixmap) may be built on any thread.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QObject, QRunnable, QSize, QThreadPool, Signal
from PySide6.QtGui import QImage

from ..fsio import atomic_write
from ..images import ImageError, load_rgb
from ..store import cache_dir


def pil_to_qimage(img: Image.Image) -> QImage:
    """RGB PIL image -> QImage Format_RGB32 (the raster engine's fastest format); owns its data."""
    if img.mode != "RGB":
        img = img.convert("RGB")
    data = img.tobytes("raw", "BGRX")
    q = QImage(data, img.width, img.height, img.width * 4, QImage.Format.Format_RGB32)
    return q.copy()  # detach from the Python bytes


def fit_size(w: int, h: int, box_w: int, box_h: int, upscale: bool = False) -> tuple[int, int]:
    if w <= 0 or h <= 0 or box_w <= 0 or box_h <= 0:
        return max(1, w), max(1, h)
    s = min(box_w / w, box_h / h)
    if not upscale:
        s = min(s, 1.0)
    return max(1, round(w * s)), max(1, round(h * s))


@dataclass
class Decoded:
    key: str
    full: QImage | None
    fitted: QImage | None  # full scaled to fit the requested box (device pixels), or None
    box: tuple[int, int]
    error: str | None = None

    @property
    def nbytes(self) -> int:
        n = 0
        for img in (self.full, self.fitted):
            if img is not None and not img.isNull():
                n += img.sizeInBytes()
        return n


class _Signals(QObject):
    decoded = Signal(object)  # Decoded


class _DecodeJob(QRunnable):
    def __init__(self, key: str, path: str, box: tuple[int, int], signals: _Signals):
        super().__init__()
        self.key, self.path, self.box, self.signals = key, path, box, signals
        self.setAutoDelete(True)

    def run(self) -> None:
        try:
            img = load_rgb(self.path)
            full = pil_to_qimage(img)
            fitted = None
            fw, fh = fit_size(img.width, img.height, *self.box, upscale=True)
            if (fw, fh) != (img.width, img.height):
                # reducing_gap: a fast box reduction first, then LANCZOS: full quality, quick.
                fitted = pil_to_qimage(img.resize((fw, fh), Image.Resampling.LANCZOS, reducing_gap=3.0))
            result = Decoded(self.key, full, fitted, self.box)
        except ImageError as e:
            result = Decoded(self.key, None, None, self.box, str(e))
        except Exception as e:  # noqa: BLE001 - a bad file must never take the app down
            result = Decoded(self.key, None, None, self.box, f"{self.path}: cannot be shown ({e}).")
        self.signals.decoded.emit(result)


class ImageLoader(QObject):
    """Decode images by key (the content hash) on a pool; keep at most ``budget`` bytes."""

    ready = Signal(object)  # Decoded, on the GUI thread

    def __init__(self, budget_bytes: int = 768 * 2**20, threads: int | None = None, parent=None):
        super().__init__(parent)
        self.budget = budget_bytes
        self.cache: OrderedDict[str, Decoded] = OrderedDict()
        self.pending: dict[str, tuple[int, int]] = {}
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(threads or max(2, min(4, (os.cpu_count() or 2))))
        self._signals = _Signals()
        self._signals.decoded.connect(self._on_decoded)

    def get(self, key: str) -> Decoded | None:
        d = self.cache.get(key)
        if d is not None:
            self.cache.move_to_end(key)
        return d

    def request(self, key: str, path: str | Path, box: tuple[int, int]) -> Decoded | None:
        """The cached result if there is one for this box, else start decoding and return None
        (``ready`` fires later). A cached result for another box is rescaled on request."""
        d = self.get(key)
        if d is not None:
            return d
        if key not in self.pending:
            self.pending[key] = box
            self.pool.start(_DecodeJob(key, str(path), box, self._signals))
        return None

    def _on_decoded(self, d: Decoded) -> None:
        self.pending.pop(d.key, None)
        self.cache[d.key] = d
        self.cache.move_to_end(d.key)
        self._evict()
        self.ready.emit(d)

    def _evict(self, keep: int = 6) -> None:  # the pair on screen + two prefetched pairs
        total = sum(d.nbytes for d in self.cache.values())
        while total > self.budget and len(self.cache) > keep:
            _, old = self.cache.popitem(last=False)
            total -= old.nbytes

    @property
    def nbytes(self) -> int:
        return sum(d.nbytes for d in self.cache.values())

    def clear(self) -> None:
        self.cache.clear()

    def shutdown(self) -> None:
        self.pool.clear()
        self.pool.waitForDone(5000)


# -- thumbnails -------------------------------------------------------------------------------
def thumbnail_path(digest: str, size: int) -> Path:
    return cache_dir() / "thumbnails" / str(size) / digest[:2] / f"{digest}.jpg"


def make_thumbnail(digest: str, path: str | Path, size: int) -> QImage:
    """Load the cached thumbnail or make it (and save it atomically); raises ImageError."""
    out = thumbnail_path(digest, size)
    if out.exists():
        q = QImage(str(out))
        if not q.isNull():
            return q
    img = load_rgb(path)
    img.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=2.0)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, lambda f: img.save(f, "JPEG", quality=88), fsync=False)  # a cache: no fsync
    except OSError:
        pass  # a read-only cache only costs speed
    return pil_to_qimage(img)


class _ThumbJob(QRunnable):
    def __init__(self, digest: str, path: str, size: int, signals: _ThumbSignals):
        super().__init__()
        self.digest, self.path, self.size, self.signals = digest, path, size, signals

    def run(self) -> None:
        try:
            img, err = make_thumbnail(self.digest, self.path, self.size), None
        except ImageError as e:
            img, err = None, str(e)
        except Exception as e:  # noqa: BLE001
            img, err = None, f"{self.path}: cannot be shown ({e})."
        self.signals.done.emit(self.digest, img, err)


class _ThumbSignals(QObject):
    done = Signal(str, object, object)


class ThumbnailLoader(QObject):
    """Thumbnails by content hash: memory LRU (``max_items``) over a disk cache."""

    ready = Signal(str)  # digest

    def __init__(self, size: int = 160, max_items: int = 1500, parent=None):
        super().__init__(parent)
        self.size = size
        self.max_items = max_items
        self.cache: OrderedDict[str, QImage | None] = OrderedDict()
        self.errors: dict[str, str] = {}
        self.pending: set[str] = set()
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(2)
        self._signals = _ThumbSignals()
        self._signals.done.connect(self._on_done)

    def get(self, digest: str, path: str | Path) -> QImage | None:
        if digest in self.cache:
            self.cache.move_to_end(digest)
            return self.cache[digest]
        if digest not in self.pending and digest not in self.errors:
            self.pending.add(digest)
            self.pool.start(_ThumbJob(digest, str(path), self.size, self._signals))
        return None

    def _on_done(self, digest: str, img, err) -> None:
        self.pending.discard(digest)
        if err:
            self.errors[digest] = err
        else:
            self.cache[digest] = img
            self.cache.move_to_end(digest)
            while len(self.cache) > self.max_items:
                self.cache.popitem(last=False)
        self.ready.emit(digest)

    def thumb_size(self) -> QSize:
        return QSize(self.size, self.size)

    def shutdown(self) -> None:
        self.pool.clear()
        self.pool.waitForDone(5000)
