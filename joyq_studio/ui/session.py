"""The open project's state on the GUI thread: images, scores, the model in use, and a thin
Qt adapter over the compare loop.

A :class:`Session` owns one :class:`~joyq_studio.store.Project` connection (workers open
their own), the folder's images and the current model's scores. Comparing is
:class:`~joyq_studio.compare.CompareSession` (no Qt): it owns the pair source (the live
Bayesian head on the cached embeddings of the current model's tower, with the current
model's head as the prior's centre; the OpenSkill selector until those exist), stores every
click first and learns from it on its worker thread. This class only turns that into
signals: ``changed`` after a click, an undo or a finished update (``updated``, queued to
the GUI thread), and keeps the live model's pool growing while scoring runs.

The live model does not change what the rest of the app uses: scores, the ranking,
calibration and exports stay those of the adopted version until the user adopts the live
head ("Use the live model": the controller writes it as a head-only version).
"""

from __future__ import annotations

import math
import os

import numpy as np
from PySide6.QtCore import QObject, Signal

from ..compare import CompareSession, CompareStats, Pair
from ..compare.session import Click
from ..compare.sources import FORGET_HALF_LIFE, LiveSource, OpenSkillSource
from ..pairing import PairSelector
from ..settings import DEFAULT_MODEL
from ..store import Project
from ..taste import TasteModel

LIVE_REBUILD_GROWTH = 1.5
"""While scoring runs, newly embedded images join the live model (``add_images``) until the
pool has grown by this factor since it was built; then it is rebuilt (its PCA basis and pool
mean should describe the folder, not its first few images)..."""

LIVE_REBUILD_MAX = 4096
"""...as long as it holds fewer images than this; a larger pool describes the folder well
enough, so it only grows (a rebuild of a huge pool would stall the GUI thread). Scoring's end
rebuilds it once."""

UndoEntry = Click
"""What ``undo`` returns (the click or skip taken back, with its pair)."""


class Session(QObject):
    changed = Signal()  # comparisons or stats changed
    images_changed = Signal()  # the image list changed (scan finished)
    scores_changed = Signal()  # scores of the current model changed
    updated = Signal()  # the compare loop learnt queued clicks (emitted from its worker thread)

    def __init__(self, folder: str | os.PathLike, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.project = Project(folder)
        self.folder = self.project.folder
        self.model_spec: str | None = None
        self.model_key: str | None = None
        self.tower: str | None = None
        self.base_head: tuple[np.ndarray, float] | None = None  # the current model's head (w, b)
        self.hashes: list[str] = []
        self.rels: list[str] = []
        self.index: dict[str, int] = {}
        self.scores = np.zeros(0)
        self.compare: CompareSession | None = None
        self.scan_unreadable: list[tuple[str, str]] = []
        self.updated.connect(self.changed)

    def close(self) -> None:
        if self.compare is not None:
            self.compare.close()
            self.compare = None
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

    def set_model(self, spec: str, key: str, tower: str | None, head=None) -> None:
        """The current model: its spec, score key, tower key and head ``(w, b)`` (the live
        model's prior centre; None: unknown, pairs then come from the fallback selector)."""
        self.model_spec, self.model_key, self.tower = spec, key, tower
        if head is None:
            self.base_head = None
        else:
            w, b = head
            self.base_head = (np.asarray(w, dtype=np.float64).reshape(-1), float(b))
        self.refresh_scores(rebuild=True)

    def base_name(self) -> str:
        return "adopted model" if self.project.active_version else "base model"

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
            self._close_compare()
            return 0
        before = np.isfinite(self.scores)
        if self.model_key:
            stored = self.project.scores(self.model_key)
            self.scores = np.array([stored.get(h, np.nan) for h in self.hashes], dtype=np.float64)
        else:
            self.scores = np.full(len(self.hashes), np.nan)
        now = np.isfinite(self.scores)
        newly = int((now & ~before).sum())
        if rebuild or self.compare is None:
            self._build_pairs()
        elif newly:
            self._grow_pairs([self.hashes[i] for i in np.flatnonzero(now & ~before)])
        if newly or rebuild:
            self.scores_changed.emit()
        return newly

    # -- the compare loop ------------------------------------------------------------------
    def _close_compare(self) -> None:
        if self.compare is not None:
            self.compare.close()
            self.compare = None

    def _score_dict(self) -> dict[str, float]:
        return {h: float(s) for h, s in zip(self.hashes, self.scores, strict=True) if math.isfinite(s)}

    def _build_pairs(self) -> None:
        if len(self.hashes) < 2:
            self._close_compare()
            return
        if self.compare is None:
            self.compare = CompareSession(
                self.project,
                scores=self._score_dict(),
                base_head=self.base_head,
                tower=self.tower,
                background=True,
                base_name=self.base_name(),
                on_updated=self.updated.emit,
            )
        else:
            self.compare.rebuild(self._score_dict(), self.base_head, self.tower)

    def _grow_pairs(self, new: list[str]) -> None:
        """Newly scored images: they join the live model (rebuilt while its pool is small and
        has grown much); the OpenSkill selector is rebuilt on the new scores (cheap)."""
        assert self.compare is not None
        if self.compare.building:  # they join once it is built (CompareSession.add_images)
            self.compare.add_images(new)
            return
        live = self._live_source()
        if live is None:
            self._build_pairs()  # embeddings may have arrived: the live model may take over
            return
        n = len(live.hashes) + len(new)
        if n < LIVE_REBUILD_MAX and n > LIVE_REBUILD_GROWTH * live.built_n:
            self._build_pairs()
            return
        self.compare.add_images(new)

    def _live_source(self) -> LiveSource | None:
        src = self.compare.source if self.compare is not None else None
        return src if isinstance(src, LiveSource) else None

    @property
    def live(self) -> TasteModel | None:
        """The live model, up to date (waits for queued clicks to be learnt)."""
        if self.compare is not None:
            self.compare.wait()
        live = self._live_source()
        return live.model if live is not None else None

    @property
    def selector(self) -> PairSelector | None:
        src = self.compare.source if self.compare is not None else None
        return src.selector if isinstance(src, OpenSkillSource) else None

    @property
    def live_note(self) -> str:
        return self.compare.note if self.compare is not None else ""

    @property
    def live_hashes(self) -> list[str]:
        live = self._live_source()
        return live.hashes if live is not None else []

    @property
    def clicks_this_session(self) -> int:
        return self.compare.clicks_this_session if self.compare is not None else 0

    def live_changed(self) -> bool:
        """True when the live head has learnt (or is about to learn) from clicks, so it differs
        from the current model. Cheap: never waits for a pending update."""
        live = self._live_source()
        if live is None or self.compare is None:
            return False
        return live.model.n_fitted > 0 or any(c.pair.kind != "heldout" and not c.booked for c in self.compare.clicks)

    def live_score_of(self, digest: str) -> tuple[float, float]:
        """(score, posterior SD) of one image under the live model as last updated (it does
        not wait for a pending update: it labels a pair as it appears); (nan, nan) without one."""
        live = self._live_source()
        i = live.index.get(digest) if live is not None else None
        if live is None or i is None or self.compare is None:
            return math.nan, math.nan
        with self.compare._source_lock:
            w, b = live.model.head()
            return float(live.model.E[i] @ w) + b, float(live.model.score_sd([i])[0])

    def live_scores(self) -> dict[str, float]:
        """hash -> the live model's score (posterior mean); empty without a live model."""
        model = self.live
        if model is None:
            return {}
        return dict(zip(self.live_hashes, model.scores().tolist(), strict=True))

    def live_sd(self) -> dict[str, float]:
        """hash -> the posterior SD of the live model's score ("compare the least certain next")."""
        model = self.live
        if model is None:
            return {}
        return dict(zip(self.live_hashes, model.score_sd().tolist(), strict=True))

    # -- comparing -------------------------------------------------------------------------
    def can_compare(self) -> bool:
        return self.compare is not None

    def source_generation(self) -> int:
        """Changes whenever a new pair source is in place (``CompareSession.generation``)."""
        return self.compare.generation if self.compare is not None else -1

    def next_pair(self, busy_random: bool = True) -> Pair | None:
        """The next pair (``CompareSession.next_pair``: never waits for learning)."""
        return self.compare.next_pair(busy_random) if self.compare is not None else None

    def record(self, pair: Pair, outcome: float) -> int:
        """Store the judgement (durably, first); the live model learns it on the compare
        loop's worker thread. outcome: 1 left won, 0 right won, 0.5 tie."""
        assert self.compare is not None
        cid = self.compare.record(pair, outcome)
        self.changed.emit()
        return cid

    def skip(self, pair: Pair) -> None:
        if self.compare is not None:
            self.compare.skip(pair)

    def can_undo(self) -> bool:
        return self.compare is not None and self.compare.can_undo()

    def undo(self) -> UndoEntry | None:
        """Take back the last click or skip (also one stored before the folder was reopened);
        returns it so the view can show that pair again."""
        if self.compare is None:
            return None
        entry = self.compare.undo()
        if entry is not None and entry.comparison_id is not None:
            self.changed.emit()
        return entry

    # -- statistics ------------------------------------------------------------------------
    def last_training_time(self) -> float | None:
        versions = self.project.versions()
        return max((v.get("created", 0.0) for v in versions), default=None)

    @property
    def pair_source(self) -> str:
        """The pair source asked for (the one in use may be the fallback: ``live_note``)."""
        return self.compare.requested if self.compare is not None else ""

    def set_pair_source(self, name: str) -> None:
        """Pairs from the source called ``name`` from now on, saved for this folder."""
        if self.compare is not None:
            self.compare.switch_source(name)
            self.changed.emit()

    @property
    def forgetting(self) -> bool:
        """Whether the live model forgets older clicks (a taste that drifts), for this folder."""
        return self.compare is not None and self.compare.forget_half_life is not None

    def set_forgetting(self, on: bool) -> None:
        if self.compare is not None:
            self.compare.set_forgetting(FORGET_HALF_LIFE if on else None)
            self.changed.emit()

    def compare_stats(self) -> CompareStats | None:
        """The compare loop's figures as of its last update (never waits)."""
        return self.compare.stats() if self.compare is not None else None
