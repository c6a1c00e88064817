"""The ranked rows every export shares: the current model's scores, calibrated into buckets.

* **Scores** are those of the project's current model (:meth:`Project.current_model_key`).
* **Calibration** (:mod:`joyq_studio.ranking.calibration`) is saved with the active model
  version (its record's ``calibration``), or, without one, in project meta
  ``calibration:<model key>``, and reused until the user recalibrates.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ExportError
from ..store import Project
from .calibration import (
    DEFAULT_K,
    DEFAULT_METHOD,
    METHOD_NAMES,
    Calibration,
    CalibrationError,
    calibrate,
    sentence_start,
)
from .labels import folder_labels, set_folder_labels, with_folder_labels


# -- scores and ranks ---------------------------------------------------------------------
@dataclass(frozen=True)
class RankedImage:
    path: str  # relative to the folder, '/' separated
    hash: str
    score: float
    rank: float  # calibrated, 0..K (the model's, also when the bucket was set by hand)
    bucket: int  # 0 (worst) .. K - 1 (best): the reference's int(rank), or the hand-set bucket
    label: str  # the label of ``bucket``
    overridden: bool = False  # the bucket was set by hand (Project.set_bucket_override)


def not_scored_message(project: Project) -> str:
    return f"{project.folder}: no image is scored yet; run `joyq score {project.folder}` first."


def current_model_key(project: Project) -> str:
    """The current model's key; ExportError when nothing is scored."""
    key = project.current_model_key()
    if not key:
        raise ExportError(not_scored_message(project))
    return key


def model_version_of(project: Project, key: str) -> str:
    return project.active_version or key


def _scored_files(project: Project) -> list[tuple[str, str, float]]:
    """(path, hash, score) of every image file with a current score, in path order."""
    scores = project.scores(current_model_key(project))
    rows = [(p, h, scores[h]) for p, h in project.file_hashes() if h in scores]
    if not rows:
        raise ExportError(not_scored_message(project))
    return rows


def ranked_images(project: Project, cal: Calibration, min_bucket: int | None = None) -> list[RankedImage]:
    """Every scored image file (duplicates included), best first (by bucket, then score),
    with rank/bucket/label. A bucket set by hand (:meth:`Project.bucket_overrides`) wins
    over the calibrated one, whatever the model or calibration (clipped to K - 1 when a
    calibration has fewer buckets than it was set for), and is flagged ``overridden``."""
    rows = _scored_files(project)
    ranks, buckets = cal.apply(np.array([s for _, _, s in rows], dtype=np.float64))
    hand = project.bucket_overrides()
    out = []
    for (p, h, s), r, b in zip(rows, ranks, buckets):
        o = hand.get(h)
        bucket = int(b) if o is None else min(o, cal.k - 1)
        out.append(RankedImage(p, h, s, float(r), bucket, cal.labels[bucket], o is not None))
    if min_bucket is not None:
        out = [r for r in out if r.bucket >= min_bucket]
    out.sort(key=lambda r: (-r.bucket, -r.score, r.path))
    return out


def set_bucket_override(project: Project, path: str, bucket: int | None, k: int = DEFAULT_K) -> str:
    """Put the image at ``path`` (relative to the folder, or absolute inside it) in ``bucket``
    (0 = worst .. k - 1) by hand, or clear its override with None; every file with the same
    content follows. Returns the image's hash. ExportError (one sentence) for a path that is
    not a scanned image of the folder or a bucket out of range."""
    rel = _relative(project, path)
    digest = project.hash_of(rel)
    if digest is None:
        raise ExportError(f"{path}: not an image of {project.folder} (rescan the folder if it is new).")
    if bucket is not None and not 0 <= int(bucket) < k:
        raise ExportError(f"Bucket {bucket} is outside 0..{k - 1} (0 = worst, {k - 1} = best).")
    project.set_bucket_override(digest, bucket)
    return digest


def _relative(project: Project, path: str) -> str:
    p = Path(path)
    if p.is_absolute():
        for root in (project.folder, Path(os.path.realpath(project.folder))):
            try:
                return p.relative_to(root).as_posix()
            except ValueError:
                continue
        try:
            return Path(os.path.realpath(p)).relative_to(os.path.realpath(project.folder)).as_posix()
        except ValueError:
            raise ExportError(f"{path}: not inside {project.folder}.") from None
    return p.as_posix().removeprefix("./")


def bucket_counts(rows: Iterable[RankedImage], k: int) -> list[int]:
    """Number of rows in each bucket 0..k-1."""
    counts = [0] * k
    for r in rows:
        counts[r.bucket] += 1
    return counts


# -- calibration ----------------------------------------------------------------------------
#: Fewer decisive held-out comparisons than this and method B is not fitted (method A is used).
MIN_LABELS_B = 10
#: Asked-for sigmoid ranks get a note when their two fullest buckets hold this share of the folder or more.
COLLAPSE_SHARE = 0.5


def held_out_pairs(
    project: Project, scores: dict[str, float]
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], list[str]]:
    """(s_first, s_second, outcome) of the user's held-out comparisons (split 'test': chosen
    uniformly, never by the model, so the unbiased labels) whose images are both scored,
    and notes (plain sentences)."""
    notes = []
    comps = [c for c in project.comparison_records(split="test") if c.source is None]
    usable = [(scores[c.a], scores[c.b], c.outcome) for c in comps if c.a in scores and c.b in scores]
    if len(usable) < len(comps):
        n = len(comps) - len(usable)
        notes.append(
            f"{n} held-out comparison{'s were' if n != 1 else ' was'} skipped because an image in "
            f"{'them is' if n != 1 else 'it is'} not scored."
        )
    arr = np.array(usable, dtype=np.float64).reshape(-1, 3)
    return (arr[:, 0], arr[:, 1], arr[:, 2]), notes


def _collapse(cal: Calibration, scores: np.ndarray) -> str | None:
    """A sentence when ``cal`` puts COLLAPSE_SHARE or more of the folder into two buckets."""
    if cal.k < 4 or len(scores) < 10:
        return None
    counts = np.bincount(cal.apply(scores)[1], minlength=cal.k)
    top = np.argsort(-counts, kind="stable")[:2]
    held = int(counts[top].sum())
    if held < COLLAPSE_SHARE * len(scores):
        return None
    b0, b1 = sorted(int(b) for b in top)
    return (
        f"sigmoid ranks with tau = {cal.tau:.3g} would put {held} of the {len(scores)} images "
        f"into buckets {b0} and {b1}"
    )


def calibrate_project(
    project: Project,
    method: str | None = None,
    k: int = DEFAULT_K,
    target_mean: float | None = None,
    labels: Sequence[str] | None = None,
) -> tuple[Calibration, list[str]]:
    """Fit a calibration on the current scores (not saved; see :func:`save_calibration`).

    ``method`` None picks :data:`DEFAULT_METHOD` (quantile buckets: about 1/K of the folder
    in each bucket, whatever the model's confidence; docs/learning.md says why). ``labels``
    None keeps the folder's own bucket labels (:mod:`.labels`) when it has K of them.
    An explicit "b" or "reference" that cannot be fitted (too few labels, scores that do not
    agree with them) falls back to method A. The returned ``cal.reason`` is one plain
    sentence saying which method was used and why; the notes list it first, then any
    other remark, each a sentence.
    """
    key = current_model_key(project)
    rows = _scored_files(project)
    unique = {h: s for _, h, s in rows}
    scores = np.array(list(unique.values()), dtype=np.float64)
    version = model_version_of(project, key)
    m = DEFAULT_METHOD if method is None else str(method).strip().lower()
    if labels is None:
        labels = folder_labels(project, k)

    def method_a(reason: str) -> tuple[Calibration, list[str]]:
        cal = calibrate(scores, None, "a", k, None, labels, version)
        cal.reason = reason
        return cal, [reason, *notes]

    notes: list[str] = []
    if m == "a":
        return method_a("Method A (equal-width score ranges) was used, as asked.")
    if m == "q":
        cal = calibrate(scores, None, "q", k, None, labels, version)
        why = "as asked" if method is not None else "(the default)"
        cal.reason = (
            f"Quantile buckets were used {why}: each of the {k} buckets holds about {_share(k)} of the "
            f"{len(scores)} scored images, in score order."
        )
        return cal, [cal.reason]
    pairs, notes = held_out_pairs(project, project.scores(key))
    n = int(np.sum(pairs[2] != 0.5))
    asked = f"{sentence_start(METHOD_NAMES[m])} was asked for, but "
    if n < MIN_LABELS_B:
        have = (
            "there are no held-out comparisons yet"
            if n == 0
            else (
                f"there {'is' if n == 1 else 'are'} only {n} held-out comparison{'s' if n != 1 else ''} with a winner"
            )
        )
        return method_a(
            f"{asked}{have} and sigmoid ranks need at least {MIN_LABELS_B} to fit their temperature; "
            "method A (equal-width score ranges) was used instead."
        )
    try:
        cal = calibrate(scores, pairs, m, k, target_mean, labels, version)
    except CalibrationError as e:
        if m not in ("b", "reference"):
            raise
        why = str(e).split(", so ")[0].rstrip(".")
        return method_a(f"{asked}{why[0].lower() + why[1:]}; method A (equal-width score ranges) was used instead.")
    collapse = _collapse(cal, scores)
    cal.reason = (
        f"{sentence_start(METHOD_NAMES[cal.method])} was used as asked: tau = {cal.tau:.3g} was fitted on "
        f"{n} held-out comparisons" + (" with a prior centred on 1." if cal.tau_prior_sd else ".")
    )
    extra = [f"Note that {collapse}."] if collapse else []
    return cal, [cal.reason, *extra, *notes]


def _share(k: int) -> str:
    """'a tenth' for 10, '1/7' for 7 (as in "about a tenth of")."""
    words = {1: "all", 2: "a half", 3: "a third", 4: "a quarter", 5: "a fifth", 10: "a tenth"}
    return words.get(k, f"1/{k}")


def save_calibration(project: Project, cal: Calibration) -> None:
    """Store ``cal`` with the active model version, else in meta under the model key. Its
    labels become the folder's own when they differ from the folder's labels for its K
    (labels passed to :func:`calibrate_project`, or edited with :meth:`Calibration.with_labels`)."""
    if list(cal.labels) != folder_labels(project, cal.k):
        set_folder_labels(project, cal.labels)
    vid = project.active_version
    if vid and project.version(vid) is not None:
        project.update_version_record(vid, calibration=cal.to_dict())
        return
    key = current_model_key(project)
    with project.transaction():
        project.set_meta("calibration:" + key, json.dumps(cal.to_dict()))


def load_calibration(project: Project) -> Calibration | None:
    """The saved calibration of the current model, or None when it was never calibrated; it
    carries the folder's own bucket labels (:mod:`.labels`), whenever they were set."""
    vid = project.active_version
    v = project.version(vid) if vid else None
    if v is not None:
        d = v.get("calibration")
    else:
        key = project.current_model_key()
        text = project.get_meta("calibration:" + key) if key else None
        try:
            d = json.loads(text) if text else None
        except ValueError:
            d = None  # a damaged record: treat as not calibrated, the next save replaces it
    return with_folder_labels(project, Calibration.from_dict(d)) if isinstance(d, dict) else None


def ensure_calibration(project: Project) -> tuple[Calibration, list[str]]:
    """The saved calibration, or a fresh default one (saved, and said so in the notes)."""
    cal = load_calibration(project)
    if cal is not None:
        return cal, []
    cal, notes = calibrate_project(project)
    save_calibration(project, cal)
    first = "This folder had no calibration for the current model yet, so one was made now and saved."
    return cal, [first, *notes]
