"""The ranked rows every export shares: the current model's scores, calibrated into buckets.

* **Scores** are those of the project's current model (:meth:`Project.current_model_key`).
* **Calibration** (:mod:`joyq_studio.ranking.calibration`) is saved with the active model
  version (its record's ``calibration``), or, without one, in project meta
  ``calibration:<model key>``, and reused until the user recalibrates.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ExportError
from ..store import Project
from .calibration import (
    DEFAULT_K,
    Calibration,
    CalibrationError,
    calibrate,
)


# -- scores and ranks ---------------------------------------------------------------------
@dataclass(frozen=True)
class RankedImage:
    path: str        # relative to the folder, '/' separated
    hash: str
    score: float
    rank: float      # calibrated, 0..K
    bucket: int      # 0 (worst) .. K - 1 (best)
    label: str


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
    """Every scored image file (duplicates included), best first, with rank/bucket/label."""
    rows = _scored_files(project)
    ranks, buckets = cal.apply(np.array([s for _, _, s in rows], dtype=np.float64))
    out = [RankedImage(p, h, s, float(r), int(b), cal.labels[int(b)])
           for (p, h, s), r, b in zip(rows, ranks, buckets)]
    if min_bucket is not None:
        out = [r for r in out if r.bucket >= min_bucket]
    out.sort(key=lambda r: (-r.score, r.path))
    return out


def bucket_counts(rows: Iterable[RankedImage], k: int) -> list[int]:
    """Number of rows in each bucket 0..k-1."""
    counts = [0] * k
    for r in rows:
        counts[r.bucket] += 1
    return counts


# -- calibration ----------------------------------------------------------------------------
def held_out_pairs(project: Project, scores: dict[str, float]) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], list[str]]:
    """(s_first, s_second, outcome) of the held-out (split 'test') comparisons whose images
    are both scored; all comparisons when there is no held-out one (noted). Also notes."""
    notes = []
    comps = project.comparisons(split="test")
    if not comps:
        comps = project.comparisons()
        if comps:
            notes.append(f"no held-out comparisons yet, so tau was fitted on all {len(comps)} comparisons "
                         "(the same ones training uses; it may be overconfident)")
    usable = [(scores[a], scores[b], o) for _, a, b, o, _, _ in comps if a in scores and b in scores]
    if len(usable) < len(comps):
        notes.append(f"{len(comps) - len(usable)} comparisons skipped: an image is not scored")
    arr = np.array(usable, dtype=np.float64).reshape(-1, 3)
    return (arr[:, 0], arr[:, 1], arr[:, 2]), notes


def calibrate_project(project: Project, method: str | None = None, k: int = DEFAULT_K,
                      target_mean: float | None = None,
                      labels: Sequence[str] | None = None) -> tuple[Calibration, list[str]]:
    """Fit a calibration on the current scores (not saved; see :func:`save_calibration`).

    ``method`` None picks B when there are usable comparisons and B can be fitted, else A
    (and says why in the returned notes).
    """
    key = current_model_key(project)
    rows = _scored_files(project)
    unique = {h: s for _, h, s in rows}
    scores = np.array(list(unique.values()), dtype=np.float64)
    all_scores = project.scores(key)
    version = model_version_of(project, key)
    if method is not None and str(method).strip().lower() == "a":
        return calibrate(scores, None, "a", k, None, labels, version), []
    pairs, notes = held_out_pairs(project, all_scores)
    if method is None and len(pairs[0]) == 0:
        return calibrate(scores, None, "a", k, None, labels, version), ["no comparisons yet, so method A was used"]
    try:
        return calibrate(scores, pairs, "b", k, target_mean, labels, version), notes
    except CalibrationError as e:
        if method is not None:
            raise
        return calibrate(scores, None, "a", k, None, labels, version), [f"method A was used: {e}"]


def save_calibration(project: Project, cal: Calibration) -> None:
    """Store ``cal`` with the active model version, else in meta under the model key."""
    vid = project.active_version
    if vid and project.version(vid) is not None:
        project.update_version_record(vid, calibration=cal.to_dict())
        return
    key = current_model_key(project)
    with project.transaction():
        project.set_meta("calibration:" + key, json.dumps(cal.to_dict()))


def load_calibration(project: Project) -> Calibration | None:
    """The saved calibration of the current model, or None when it was never calibrated."""
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
    return Calibration.from_dict(d) if isinstance(d, dict) else None


def ensure_calibration(project: Project) -> tuple[Calibration, list[str]]:
    """The saved calibration, or a fresh default one (saved, and said so in the notes)."""
    cal = load_calibration(project)
    if cal is not None:
        return cal, []
    cal, notes = calibrate_project(project)
    save_calibration(project, cal)
    first = f"not calibrated yet, so calibrated now with method {cal.method.upper()} (see `joyq calibrate`)"
    return cal, [first, *notes]

