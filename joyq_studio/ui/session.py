"""The open project's state on the GUI thread: images, scores, pair selection, undo.

A :class:`Session` owns one :class:`~joyq_studio.store.Project` connection (workers open
their own) and a :class:`~joyq_studio.pairing.PairSelector`. Every judgement is written
with ``Project.add_comparison`` (committed before it returns) *before* the selector sees
it, so killing the app loses nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QObject, Signal

from ..errors import NoPairAvailable
from ..pairing import PairSelector, model_agreement
from ..settings import DEFAULT_MODEL
from ..store import Project

AGREEMENT_WINDOW = 50


@dataclass(frozen=True)
class Pair:
    left: str  # content hash shown on the left (the selector's i)
    right: str
    kind: str  # info | near | heldout | repeat


@dataclass
class UndoEntry:
    pair: Pair
    comparison_id: int | None  # None: a skip
    outcome: float | None = None


class Session(QObject):
    changed = Signal()  # comparisons or stats changed
    images_changed = Signal()  # the image list changed (scan finished)
    scores_changed = Signal()  # scores of the current model changed

    def __init__(self, folder, parent=None):
        super().__init__(parent)
        self.project = Project(folder)
        self.folder = self.project.folder
        self.model_spec: str | None = None
        self.model_key: str | None = None
        self.tower: str | None = None
        self.hashes: list[str] = []
        self.rels: list[str] = []
        self.index: dict[str, int] = {}
        self.scores = np.zeros(0)
        self.selector: PairSelector | None = None
        self._selector_complete = False
        self.undo_stack: list[UndoEntry] = []
        self.scan_unreadable: list[tuple[str, str]] = []
        self.clicks_this_session = 0

    def close(self) -> None:
        self.project.close()

    # -- model ---------------------------------------------------------------------------
    def resolve_model_spec(self) -> str:
        """The active version, else the base model chosen for this folder, else JoyQuality."""
        vid = self.project.active_version
        v = self.project.version(vid) if vid else None
        if v:
            return v["path"]
        return self.base_model_spec()

    def base_model_spec(self) -> str:
        return self.project.base_model or DEFAULT_MODEL

    def remember_base_model(self, spec: str) -> None:
        self.project.set_base_model(spec)

    def set_model(self, spec: str, key: str, tower: str | None) -> None:
        self.model_spec, self.model_key, self.tower = spec, key, tower
        self.refresh_scores(rebuild=True)

    # -- images and scores -------------------------------------------------------------
    def reload_images(self) -> None:
        rows = self.project.image_paths()
        self.hashes = [h for h, _ in rows]
        self.rels = [r for _, r in rows]
        self.index = {h: i for i, h in enumerate(self.hashes)}
        self.scores = np.full(len(self.hashes), np.nan)
        self.refresh_scores(rebuild=True)
        self.images_changed.emit()

    def path(self, digest: str):
        i = self.index.get(digest)
        return self.folder / self.rels[i] if i is not None else self.project.path_of(digest)

    def rel(self, digest: str) -> str:
        i = self.index.get(digest)
        return self.rels[i] if i is not None else digest[:12]

    def score_of(self, digest: str) -> float:
        i = self.index.get(digest)
        return float(self.scores[i]) if i is not None else math.nan

    def n_scored(self) -> int:
        return int(np.isfinite(self.scores).sum())

    def unreadable(self) -> list[tuple[str, str]]:
        """(path, reason) of every file that could not be read, scan and decode failures."""
        seen = {}
        for p, why in self.scan_unreadable:
            seen[str(p)] = why
        for rel, why in self.project.errors():
            seen.setdefault(str(self.folder / rel), why)
        return sorted(seen.items())

    def refresh_scores(self, rebuild: bool = False) -> int:
        """Read the current model's scores; returns how many images became newly scored."""
        if not self.hashes:
            self.selector = None
            return 0
        before = np.isfinite(self.scores)
        if self.model_key:
            stored = self.project.scores(self.model_key)
            self.scores = np.array([stored.get(h, np.nan) for h in self.hashes], dtype=np.float64)
        else:
            self.scores = np.full(len(self.hashes), np.nan)
        now = np.isfinite(self.scores)
        newly = int((now & ~before).sum())
        complete = bool(now.all())
        if rebuild or self.selector is None or (complete and not self._selector_complete):
            self._build_selector()
        elif newly:
            self.selector.include(np.flatnonzero(now & ~before))
        if newly or rebuild:
            self.scores_changed.emit()
        return newly

    def _history(self) -> list[tuple[int, int, float, str]]:
        out = []
        for _, a, b, o, _, kind in self.project.comparisons():
            i, j = self.index.get(a), self.index.get(b)
            if i is not None and j is not None:
                out.append((i, j, o, kind))
        return out

    def _build_selector(self) -> None:
        n = len(self.hashes)
        if n < 2:
            self.selector = None
            return
        finite = np.isfinite(self.scores)
        history = self._history()
        seed = len(history)
        if finite.all():
            emb = None
            if self.tower:
                hs, matrix = self.project.embeddings(self.tower, self.hashes)
                if len(hs) == n:
                    emb = matrix
            self.selector = PairSelector.from_model_scores(self.scores, history, emb, seed=seed)
            self._selector_complete = True
        else:
            sel = PairSelector(n, seed=seed)
            sel.replay(history)
            sel.exclude(np.flatnonzero(~finite))
            self.selector = sel
            self._selector_complete = False

    # -- comparing -------------------------------------------------------------------------
    def can_compare(self) -> bool:
        return self.selector is not None and int(self.selector.available.sum()) >= 2

    def next_pair(self) -> Pair | None:
        sel = self.selector
        if sel is None or not self.can_compare():
            return None
        try:
            i, j, kind = sel.next_pair_with_kind()
        except NoPairAvailable:
            return None
        return Pair(self.hashes[i], self.hashes[j], kind)

    def record(self, pair: Pair, outcome: float) -> int:
        """Store the judgement (durably, first), then update the beliefs. outcome: 1 left won,
        0 right won, 0.5 tie."""
        split = "test" if pair.kind == "heldout" else "train"
        cid = self.project.add_comparison(pair.left, pair.right, outcome, split=split, kind=pair.kind)
        i, j = self.index.get(pair.left), self.index.get(pair.right)
        if self.selector is not None and i is not None and j is not None:
            self.selector.record(i, j, outcome, pair.kind)
        self.undo_stack.append(UndoEntry(pair, cid, outcome))
        self.clicks_this_session += 1
        self.changed.emit()
        return cid

    def skip(self, pair: Pair) -> None:
        i, j = self.index.get(pair.left), self.index.get(pair.right)
        if self.selector is not None and i is not None and j is not None:
            self.selector.skip(i, j)
        self.undo_stack.append(UndoEntry(pair, None))

    def can_undo(self) -> bool:
        return bool(self.undo_stack)

    def undo(self) -> UndoEntry | None:
        """Take back the last click (or skip) of this session; returns it so the view can
        show that pair again."""
        if not self.undo_stack:
            return None
        entry = self.undo_stack.pop()
        if entry.comparison_id is not None:
            self.project.delete_comparison(entry.comparison_id)
            self.clicks_this_session = max(0, self.clicks_this_session - 1)
            if self.selector is not None:
                hist = self.selector.history
                i, j = self.index.get(entry.pair.left), self.index.get(entry.pair.right)
                for k in range(len(hist) - 1, -1, -1):
                    if hist[k][0] == i and hist[k][1] == j and hist[k][2] == entry.outcome:
                        del hist[k]
                        break
                self.selector.replay(hist)
            self.changed.emit()
        return entry

    # -- statistics ------------------------------------------------------------------------
    def last_training_time(self) -> float | None:
        versions = self.project.versions()
        return max((v.get("created", 0.0) for v in versions), default=None)

    def stats(self) -> dict:
        total = self.project.comparison_count()
        since = total
        trained_at = self.last_training_time()
        if trained_at is not None:
            since = self.project.comparison_count(since=trained_at)
        agreement, n_agree = math.nan, 0
        self_cons, n_repeats = math.nan, 0
        if self.selector is not None:
            hist = self.selector.history[-AGREEMENT_WINDOW:]
            rows = [(i, j, o) for i, j, o, _ in hist
                    if math.isfinite(self.scores[i]) and math.isfinite(self.scores[j])]
            if rows:
                arr = np.array(rows, dtype=np.float64)
                ii, jj = arr[:, 0].astype(int), arr[:, 1].astype(int)
                agreement = model_agreement(self.scores[ii] - self.scores[jj], arr[:, 2])
                n_agree = len(rows)
            first, _ = self.selector.repeat_outcomes()
            n_repeats = len(first)
            if n_repeats:
                self_cons = self.selector.self_agreement()
        return {
            "total": total,
            "since_training": since,
            "trained": trained_at is not None,
            "agreement": agreement,
            "agreement_n": n_agree,
            "self_consistency": self_cons,
            "repeats": n_repeats,
            "retrain_hint": retrain_hint(total, since, trained_at is not None, agreement),
            "images": len(self.hashes),
            "scored": self.n_scored(),
        }


def retrain_hint(total: int, since: int, trained: bool, agreement: float) -> str:
    """A short hint when training (again) is likely to help, else ''."""
    if not trained:
        if total >= 30:
            return f"{total} comparisons: enough to train a first personal model (Ctrl+T)."
        return ""
    if since >= 50 or (since >= 20 and since >= 0.25 * max(total - since, 1)):
        return f"{since} new comparisons since the last training: retraining is worthwhile (Ctrl+T)."
    if since >= 15 and math.isfinite(agreement) and agreement < 0.6:
        return "The model often disagrees with your recent clicks: retraining is worthwhile (Ctrl+T)."
    return ""

