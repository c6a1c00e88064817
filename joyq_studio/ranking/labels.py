"""A folder's own bucket labels: the words its buckets are called by, worst first.

Labels belong to the folder, not to a model or a calibration: they are stored once in
project meta (:data:`LABELS_KEY`, a JSON list) and applied to every calibration that is
loaded or fitted for the folder (:func:`joyq_studio.ranking.rows.load_calibration`,
:func:`~joyq_studio.ranking.rows.calibrate_project`), so they outlive recalibration and
retraining. They apply when their number matches the calibration's K; otherwise (and
after :func:`reset_folder_labels`) the default labels of K are used.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from ..errors import JoyqError
from ..store import Project
from .calibration import Calibration, default_labels

__all__ = [
    "LABELS_KEY",
    "LabelError",
    "custom_labels",
    "folder_labels",
    "reset_folder_labels",
    "set_folder_label",
    "set_folder_labels",
    "with_folder_labels",
]

#: Project meta key holding the folder's bucket labels (JSON list of strings, worst first).
LABELS_KEY = "bucket_labels"


class LabelError(JoyqError, ValueError):
    """A bucket label cannot be set (the message is one sentence)."""


def _clean(text: str) -> str:
    """One line, single spaces (labels go into CSV cells and captions)."""
    return " ".join(str(text).split())


def custom_labels(project: Project) -> list[str] | None:
    """The labels the user gave this folder, whatever their number; None when none (or damaged)."""
    try:
        labels = json.loads(project.get_meta(LABELS_KEY) or "null")
    except ValueError:
        return None
    if isinstance(labels, list) and labels and all(isinstance(x, str) and _clean(x) for x in labels):
        return [_clean(x) for x in labels]
    return None


def folder_labels(project: Project, k: int) -> list[str]:
    """The folder's labels for ``k`` buckets: the user's when there are ``k`` of them, else the defaults."""
    labels = custom_labels(project)
    return labels if labels is not None and len(labels) == k else default_labels(k)


def with_folder_labels(project: Project, cal: Calibration) -> Calibration:
    """``cal`` carrying the folder's labels (itself when they already agree; the reason is kept)."""
    labels = folder_labels(project, cal.k)
    if labels == list(cal.labels):
        return cal
    new = cal.with_labels(labels)
    new.reason = cal.reason
    return new


def set_folder_labels(project: Project, labels: Sequence[str]) -> list[str]:
    """Store ``labels`` (worst first) as the folder's own; returns them cleaned."""
    cleaned = [_clean(x) for x in labels]
    if not cleaned:
        raise LabelError("Give at least one bucket label.")
    for i, text in enumerate(cleaned):
        if not text:
            raise LabelError(f"The label of bucket {i} must not be empty.")
    with project.transaction():
        project.set_meta(LABELS_KEY, json.dumps(cleaned))
    return cleaned


def set_folder_label(project: Project, bucket: int, text: str, k: int) -> list[str]:
    """Rename ``bucket`` (0 = worst .. k - 1) of the folder's ``k`` labels; returns all ``k``."""
    if not 0 <= int(bucket) < k:
        raise LabelError(f"Bucket {bucket} is outside 0..{k - 1} (0 = worst, {k - 1} = best).")
    if not _clean(text):
        raise LabelError(f"The label of bucket {bucket} must not be empty.")
    labels = folder_labels(project, k)
    labels[int(bucket)] = _clean(text)
    return set_folder_labels(project, labels)


def reset_folder_labels(project: Project) -> None:
    """Forget the folder's own labels: every calibration shows the default labels again."""
    with project.transaction():
        project.set_meta(LABELS_KEY, "null")
