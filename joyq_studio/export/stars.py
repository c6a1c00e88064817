"""Star ratings a user already gave, in as labels: comparisons between images of different stars.

:func:`read_star_ratings` finds each image's rating: its XMP sidecar (either naming, the
darktable one first), else an XMP packet inside the image, else the EXIF Rating tag.
Ratings this project wrote itself are ignored (a sidecar still exactly as an XMP export's
journal says it wrote it, or one carrying our keyword ``joyq|quality|..`` whose stars the
journal does not show the user changed), so the model never learns from its own output.
0 stars is no rating; -1 (rejected) is below one star.

:func:`import_star_ratings` keeps one image in five (chosen by its content hash, so the same
images on every import) as a held-out set for :func:`star_agreement`, and turns the rest
into comparisons ``kind='stars'``, ``source='stars'``, split 'train' (never 'test'), with a
weight the user chooses, sampled by the one fixed-k builder so each rated image is in at
most ``per_image`` pairs. A new import replaces the earlier star pairs and ratings.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..metrics import Agreement, agreement
from ..pairing.fixedk import default_tower, fixed_k_pairs
from ..store import Project
from ..xmp.core import MAX_XMP_BYTES, XmpError, XmpRating, parse, read_rating
from ..xmp.embedded import SKIPPED_FORMATS, embedded_rating
from .xmp import written_by_us

STARS_KIND = "stars"
STARS_SOURCE = "stars"
ORIGINS = ("xmp", "embedded", "both")
DEFAULT_WEIGHT = 1.0  # a weight < 1 gives soft targets, which training cannot yet evaluate without held-out clicks
DEFAULT_PER_IMAGE = 8
#: One image in HELD_OUT_EVERY is kept out of training for the agreement.
HELD_OUT_EVERY = 5
#: fixed-k runs over groups of this many images (each is O(group size) per pair), shuffled.
GROUP = 2000
AGREEMENT_META = "star_agreement"

Progress = Callable[[int, int], None] | None


@dataclass
class StarRatings:
    """What :func:`read_star_ratings` found."""

    stars: dict[str, tuple[int, str]] = field(default_factory=dict)  # hash -> (stars, origin)
    ours: int = 0  # ratings this project wrote, ignored
    conflicts: list[str] = field(default_factory=list)  # same image content, different stars: skipped
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (file, one sentence)
    skipped_formats: int = 0  # HEIF/AVIF images not read

    def per_star(self) -> dict[int, int]:
        c = Counter(s for s, _ in self.stars.values())
        return {s: c[s] for s in (-1, 1, 2, 3, 4, 5) if c[s]}


@dataclass
class StarImport:
    ratings: StarRatings
    held_out: int  # rated images kept for the agreement
    pairs: int  # star pairs made for training
    replaced: int  # earlier star pairs removed
    agreement: Agreement | None  # of the current model with the held-out stars (None: not scored)


def _sidecars(image: Path) -> tuple[Path, Path]:
    return image.with_name(image.name + ".xmp"), image.with_suffix(".xmp")


def _sidecar_rating(
    project: Project, image: str, journal: dict[str, tuple[str, int]]
) -> tuple[XmpRating | None, bool, str | None]:
    """(rating or None, ours, problem) of the first sidecar of ``image`` that exists."""
    for side in _sidecars(Path(image)):
        path = project.folder / side
        try:
            if path.is_symlink() or not path.is_file():
                continue
            if path.stat().st_size > MAX_XMP_BYTES:
                return None, False, f"{side}: is larger than an XMP sidecar may be; not read"
            data = path.read_bytes()
        except OSError as e:
            return None, False, f"{side}: cannot be read ({e.strerror or e})"
        try:
            doc = parse(data, side.as_posix())
            r = read_rating(doc, side.as_posix())
        except XmpError as e:
            return None, False, str(e)
        wrote = journal.get(side.as_posix())
        exact = wrote is not None and wrote[0] == hashlib.sha256(data).hexdigest()
        same_stars = wrote is None or wrote[1] == r.stars
        return r, exact or (r.ours and same_stars), None
    return None, False, None


def read_star_ratings(project: Project, origin: str = "both", progress: Progress = None) -> StarRatings:
    """Every image's star rating (see the module docstring); reads, writes nothing."""
    if origin not in ORIGINS:
        raise ValueError(f"origin must be one of {ORIGINS}")
    out = StarRatings()
    journal = written_by_us(project) if origin != "embedded" else {}
    found: dict[str, set[int]] = {}
    origin_of: dict[str, str] = {}
    files = project.file_hashes()
    for n, (rel, digest) in enumerate(files, 1):
        if progress:
            progress(n, len(files))
        rating, ours, problem = None, False, None
        where = "sidecar"
        if origin in ("xmp", "both"):
            rating, ours, problem = _sidecar_rating(project, rel, journal)
        if (rating is None or rating.stars is None) and not ours and problem is None and origin != "xmp":
            if Path(rel).suffix.lower() in SKIPPED_FORMATS:
                out.skipped_formats += 1
                continue
            rating, problem = embedded_rating(project.folder / rel)
            where = "exif" if rating is not None and not rating.ours and rating.from_exif else "embedded"
            ours = rating is not None and rating.ours
        if problem is not None:
            out.unreadable.append((rel, problem))
            continue
        if ours:
            out.ours += 1
            continue
        if rating is None or rating.stars is None:
            continue
        found.setdefault(digest, set()).add(rating.stars)
        origin_of.setdefault(digest, where)
    for digest, stars in found.items():
        if len(stars) > 1:
            out.conflicts.append(digest)
            continue
        out.stars[digest] = (next(iter(stars)), origin_of[digest])
    return out


def held_out(digest: str) -> bool:
    """Whether an image is in the held-out star set: by its content, so stable across imports."""
    return int(hashlib.sha256(digest.encode()).hexdigest()[:8], 16) % HELD_OUT_EVERY == 0


def star_pairs(
    levels: dict[str, int],
    per_image: int,
    embeddings: dict[str, np.ndarray] | None = None,
    seed: int = 0,
) -> list[tuple[str, str, float]]:
    """(a, b, outcome) pairs between images of different levels, by the fixed-k builder, each
    image in at most ``per_image`` pairs; outcome 1 when ``a`` has more stars."""
    rng = np.random.default_rng(seed)
    hashes = sorted(levels)
    order = [hashes[i] for i in rng.permutation(len(hashes))]
    out: list[tuple[str, str, float]] = []
    for g in range(0, len(order), GROUP):
        group = order[g : g + GROUP]
        count: Counter = Counter()
        avoid: set = set()
        for attempt in range(6):
            active = [h for h in group if count[h] < per_image]
            if len({levels[h] for h in active}) < 2:
                break
            emb = has = None
            if embeddings:
                dim = len(next(iter(embeddings.values())))
                emb = np.zeros((len(active), dim), np.float32)
                has = np.zeros(len(active), bool)
                for i, h in enumerate(active):
                    if h in embeddings:
                        emb[i], has[i] = embeddings[h], True
            want = sum(per_image - count[h] for h in active) // 2
            made = 0
            for a, b, _ in fixed_k_pairs(active, want, emb, has, avoid=avoid, seed=seed + 7919 * g + attempt):
                avoid.add(frozenset((a, b)))
                if levels[a] == levels[b] or count[a] >= per_image or count[b] >= per_image:
                    continue
                out.append((a, b, 1.0 if levels[a] > levels[b] else 0.0))
                count[a] += 1
                count[b] += 1
                made += 1
            if made == 0:
                break
    return out


def _embeddings(project: Project, hashes: list[str]) -> dict[str, np.ndarray] | None:
    tower = default_tower(project)
    if not tower:
        return None
    found, matrix = project.embeddings(tower, hashes)
    return {h: matrix[i] for i, h in enumerate(found)} if len(found) >= 2 else None


def import_star_ratings(
    project: Project,
    origin: str = "both",
    weight: float = DEFAULT_WEIGHT,
    per_image: int = DEFAULT_PER_IMAGE,
    seed: int = 0,
    progress: Progress = None,
) -> StarImport:
    """Read the ratings, replace the earlier star pairs and ratings with new ones, and measure
    the current model's agreement with the held-out stars."""
    if not 0.5 <= weight <= 1.0:
        raise ValueError(f"weight must be within 0.5..1, not {weight}")
    ratings = read_star_ratings(project, origin, progress)
    train = {h: s for h, (s, _) in ratings.stars.items() if not held_out(h)}  # -1 < 1: rejected is below one star
    pairs = star_pairs(train, per_image, _embeddings(project, sorted(train)), seed)
    with project.transaction():
        cur = project.db.execute("DELETE FROM comparisons WHERE kind = ? AND source = ?", (STARS_KIND, STARS_SOURCE))
        replaced = cur.rowcount
        project.db.execute("DELETE FROM star_ratings")
        project.db.executemany(
            "INSERT INTO star_ratings(hash, stars, origin, held_out) VALUES (?, ?, ?, ?)",
            ((h, s, o, int(held_out(h))) for h, (s, o) in ratings.stars.items()),
        )
        project.add_comparisons((a, b, y, "train", STARS_KIND, STARS_SOURCE, weight) for a, b, y in pairs)
    n_held = sum(held_out(h) for h in ratings.stars)
    return StarImport(ratings, n_held, len(pairs), replaced, star_agreement(project))


def held_out_stars(project: Project) -> dict[str, int]:
    return dict(project.db.execute("SELECT hash, stars FROM star_ratings WHERE held_out = 1").fetchall())


def star_agreement(project: Project, per_image: int = 16, seed: int = 1) -> Agreement | None:
    """The current model's agreement (:func:`joyq_studio.metrics.agreement`) with the
    held-out star ratings, on fixed-k pairs across star levels (each held-out image in at
    most ``per_image`` of them); None when nothing is scored. Recorded per model in meta."""
    key = project.current_model_key()
    if not key:
        return None
    scores = project.scores(key)
    stars = {h: s for h, s in held_out_stars(project).items() if h in scores}
    pairs = star_pairs(stars, per_image, None, seed)
    diff = np.array([scores[a] - scores[b] for a, b, _ in pairs], dtype=np.float64)
    y = np.array([o for _, _, o in pairs], dtype=np.float64)
    ag = agreement(diff, y)
    history = agreement_history(project)
    history[project.active_version or key] = {
        "value": ag.value,
        "count": ag.count,
        "low": ag.low,
        "high": ag.high,
        "images": len(stars),
    }
    with project.transaction():
        project.set_meta(AGREEMENT_META, json.dumps(history))
    return ag


def agreement_history(project: Project) -> dict[str, dict]:
    """model version (or key) -> the last measured star agreement, in the order measured."""
    try:
        h = json.loads(project.get_meta(AGREEMENT_META) or "{}")
    except ValueError:
        return {}
    return h if isinstance(h, dict) else {}


def describe(ag: Agreement | None) -> str:
    """One line: value with count and interval."""
    if ag is None:
        return "no image is scored yet"
    if ag.count == 0:
        return "no pair of held-out images with different stars is scored yet"
    return f"{ag.value:.1%} on {ag.count} pairs across star levels (95% interval {ag.low:.1%}..{ag.high:.1%})"


__all__ = [
    "StarRatings",
    "StarImport",
    "import_star_ratings",
    "read_star_ratings",
    "star_agreement",
    "star_pairs",
    "describe",
    "held_out",
]
