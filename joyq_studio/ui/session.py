"""The open project's state on the GUI thread: images, scores, the live model, undo.

A :class:`Session` owns one :class:`~joyq_studio.store.Project` connection (workers open
their own) and the folder's **live model**: a :class:`~joyq_studio.taste.TasteModel` on the
cached embeddings of the current model's tower, with the current model's head (the adopted
version's, else the base model's) as the prior's centre. Opening a folder replays its
stored comparisons into it (held-out ones are kept for testing and never fitted); from then
on it chooses every pair (``next_pair``) and learns from every click (``record``).

Every judgement is written with ``Project.add_comparison`` (committed before it returns)
*before* the live model sees it, so killing the app loses nothing; the pair's kind is
stored with it, held-out pairs in the 'test' split.

The live model does not change what the rest of the app uses: scores, the ranking,
calibration and exports stay those of the adopted version until the user adopts the live
head ("Use the live model": the controller writes it as a head-only version).

When the tower's embeddings are not cached yet (a model whose head is unknown, or nothing
embedded), pairs come from today's :class:`~joyq_studio.pairing.PairSelector` on the
model's scores instead, and :attr:`Session.live_note` says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QObject, Signal

from ..errors import NoPairAvailable
from ..metrics import MIN_PAIRS_TO_TELL
from ..pairing import PairSelector
from ..prelabel.labels import soft_target, training_records
from ..settings import DEFAULT_MODEL
from ..store import Project
from ..taste import Accuracy, TasteModel, wilson_interval

LIVE_REBUILD_GROWTH = 1.5
"""While scoring runs, newly embedded images join the live model (``add_images``) until the
pool has grown by this factor since it was built; then it is rebuilt (its PCA basis and pool
mean should describe the folder, not its first few images)..."""

LIVE_REBUILD_MAX = 4096
"""...as long as it holds fewer images than this; a larger pool describes the folder well
enough, so it only grows (a rebuild of a huge pool would stall the GUI thread). Scoring's end
rebuilds it once."""

LIVE_KINDS = ("info", "repeat")
"""Stored kinds replayed as they are; other training kinds replay as "other"."""


@dataclass(frozen=True)
class Pair:
    left: str  # content hash shown on the left (the model's i)
    right: str
    kind: str  # info | heldout | repeat (and near from the fallback selector)


@dataclass
class UndoEntry:
    pair: Pair
    comparison_id: int | None  # None: a skip
    outcome: float | None = None


@dataclass(frozen=True)
class HeldoutStats:
    """The live model and the model it started from, on the same held-out pairs."""

    live: Accuracy | None  # None: no live model (the fallback selector)
    base: Accuracy
    base_name: str  # "adopted model" or "base model"

    @property
    def count(self) -> int:
        return self.base.count

    @property
    def enough(self) -> bool:
        return self.count >= MIN_PAIRS_TO_TELL


def _nan_accuracy() -> Accuracy:
    return Accuracy(math.nan, 0, math.nan, math.nan)


def _accuracy(diff: np.ndarray, outcome: np.ndarray) -> Accuracy:
    """Agreement of score differences with outcomes, as ``TasteModel.heldout_accuracy``."""
    if len(outcome) == 0:
        return _nan_accuracy()
    vote = 0.5 * (np.sign(diff) + 1.0)
    k = float(np.sum(1.0 - np.abs(vote - outcome)))
    lo, hi = wilson_interval(k, len(outcome))
    return Accuracy(k / len(outcome), len(outcome), lo, hi)


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
        self.base_head: tuple[np.ndarray, float] | None = None  # the current model's head (w, b)
        self.hashes: list[str] = []
        self.rels: list[str] = []
        self.index: dict[str, int] = {}
        self.scores = np.zeros(0)
        self._live: TasteModel | None = None
        self._live_queue: list[tuple[int, int, float, str]] = []  # stored clicks not yet in the model
        self.live_hashes: list[str] = []  # the live model's image i is live_hashes[i]
        self.live_index: dict[str, int] = {}
        self.live_note = ""  # why there is no live model (one sentence), else ""
        self._live_built_n = 0
        self._emb_key: tuple | None = None  # (tower, hash list) the cached embeddings belong to
        self._emb_hashes: list[str] = []
        self._emb = np.zeros((0, 0), dtype=np.float32)
        self.selector: PairSelector | None = None  # the fallback when there is no live model
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
            self.selector = self.live = None
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
        if rebuild or (self.live is None and self.selector is None):
            self._build_pairs()
        elif newly:
            self._grow_pairs(np.flatnonzero(now & ~before), complete)
        if newly or rebuild:
            self.scores_changed.emit()
        return newly

    # -- the live model --------------------------------------------------------------------
    @property
    def live(self) -> TasteModel | None:
        """The live model, up to date: clicks stored since it was last read are recorded
        into it first (``record`` stores at once and leaves the model update to the first
        reader, so the view can show the next pair before a refit runs)."""
        if self._live_queue:
            self.flush_live()
        return self._live

    @live.setter
    def live(self, model: TasteModel | None) -> None:
        self._live, self._live_queue = model, []

    def flush_live(self) -> None:
        """Record the stored clicks the live model has not seen yet."""
        queue, self._live_queue = self._live_queue, []
        if self._live is not None:
            for i, j, o, kind in queue:
                self._live.record(i, j, o, kind=kind)

    def _records(self):
        """Comparisons the models learn from: the user's, and LLM labels while included."""
        return training_records(self.project, split=None)

    def _build_pairs(self) -> None:
        self.live = self.selector = None
        if not self._build_live():
            self._build_selector()

    def _grow_pairs(self, new_idx: np.ndarray, complete: bool) -> None:
        if self.live is not None:
            self._grow_live([self.hashes[i] for i in new_idx])
        elif self.selector is not None and not (complete and not self._selector_complete):
            self.selector.include(new_idx)
            if self._live_possible():
                self._build_pairs()  # embeddings arrived: the live model takes over
        else:
            self._build_pairs()

    def _live_possible(self) -> bool:
        return bool(self.tower) and self.base_head is not None and len(self.hashes) >= 2

    def _build_live(self) -> bool:
        """Build the live model from the cached embeddings and replay the comparisons;
        False (and ``live_note`` says why) when it cannot be built."""
        self.live_hashes, self.live_index = [], {}
        if not self._live_possible():
            self.live_note = (
                "The live model starts once the model's head and image embeddings are known; "
                "until then pairs come from the model's scores."
            )
            return False
        hs, matrix = self._embeddings()
        base_head = self.base_head
        assert base_head is not None  # _live_possible checked it
        w, _ = base_head
        if len(hs) < 2:
            self.live_note = (
                "No image embeddings of this model are cached yet; pairs come from the model's "
                "scores until scoring has embedded the images."
            )
            return False
        if matrix.shape[1] != len(w):
            self.live_note = (
                f"The cached embeddings ({matrix.shape[1]}-d) do not match the model's head "
                f"({len(w)}-d); pairs come from the model's scores."
            )
            return False
        self.live_hashes = list(hs)
        self.live_index = {h: i for i, h in enumerate(hs)}
        history = self._live_history()
        live = TasteModel(matrix, base_head, seed=len(history))
        live.replay(history)
        self.live, self.live_note, self._live_built_n = live, "", len(hs)
        return True

    def _embeddings(self) -> tuple[list[str], np.ndarray]:
        """The tower's cached embeddings of the folder's images (those embedded so far), read
        from the store once per tower and image list and then only for images new to it."""
        key = (self.tower, id(self.hashes), len(self.hashes))
        if self._emb_key != key:
            self._emb_key, self._emb_hashes, self._emb = key, [], np.zeros((0, 0), dtype=np.float32)
        have = set(self._emb_hashes)
        missing = [h for h in self.hashes if h not in have]
        if missing:
            self._add_embeddings(*self.project.embeddings(self.tower, missing))
        return self._emb_hashes, self._emb

    def _add_embeddings(self, hs: list[str], matrix: np.ndarray) -> None:
        if not hs:
            return
        self._emb = matrix if not self._emb_hashes else np.concatenate([self._emb, matrix])
        self._emb_hashes = self._emb_hashes + list(hs)

    def _grow_live(self, new: list[str]) -> None:
        """Newly scored images (embedded with their scores) join the live model."""
        new = [h for h in new if h not in self.live_index]
        if not new:
            return
        hs, matrix = self.project.embeddings(self.tower, new)
        if not hs:
            return
        if self._emb_key == (self.tower, id(self.hashes), len(self.hashes)):
            self._add_embeddings(hs, matrix)
        n = len(self.live_hashes) + len(hs)
        if n < LIVE_REBUILD_MAX and n > LIVE_REBUILD_GROWTH * self._live_built_n:
            self._build_pairs()
            return
        assert self.live is not None  # callers add images to a built live model only
        self.live.add_images(matrix)
        for h in hs:
            self.live_index[h] = len(self.live_hashes)
            self.live_hashes.append(h)

    def _live_history(self) -> list[tuple[int, int, float, str]]:
        out = []
        for r in self._records():
            i, j = self.live_index.get(r.a), self.live_index.get(r.b)
            if i is None or j is None or i == j:
                continue
            kind = "heldout" if r.split == "test" else (r.kind if r.kind in LIVE_KINDS else "other")
            out.append((i, j, soft_target(r.outcome, r.weight), kind))
        return out

    def live_pair(self, pair: Pair) -> tuple[int, int] | None:
        """The live model's indices of a pair, None when an image is not in its pool."""
        i, j = self.live_index.get(pair.left), self.live_index.get(pair.right)
        return None if i is None or j is None else (i, j)

    def live_changed(self) -> bool:
        """True when the live head has learnt (or is about to learn) from clicks, so it differs
        from the current model. Cheap: never runs a pending model update."""
        return self._live is not None and (self._live.n_fitted > 0 or any(k != "heldout" for *_, k in self._live_queue))

    def live_score_of(self, digest: str) -> tuple[float, float]:
        """(score, posterior SD) of one image under the live model as last updated (it does
        not wait for a pending update: it labels a pair as it appears); (nan, nan) without one."""
        i = self.live_index.get(digest)
        live = self._live
        if live is None or i is None:
            return math.nan, math.nan
        w, b = live.head()
        return float(live.E[i] @ w) + b, float(live.score_sd([i])[0])

    def live_scores(self) -> dict[str, float]:
        """hash -> the live model's score (posterior mean); empty without a live model."""
        if self.live is None:
            return {}
        return dict(zip(self.live_hashes, self.live.scores().tolist(), strict=True))

    def live_sd(self) -> dict[str, float]:
        """hash -> the posterior SD of the live model's score ("compare the least certain next")."""
        if self.live is None:
            return {}
        return dict(zip(self.live_hashes, self.live.score_sd().tolist(), strict=True))

    # -- the fallback selector -------------------------------------------------------------
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
        if self.live is not None:
            return int(self.live.available.sum()) >= 2
        return self.selector is not None and int(self.selector.available.sum()) >= 2

    def next_pair(self) -> Pair | None:
        if not self.can_compare():
            return None
        try:
            if self.live is not None:
                i, j, kind = self.live.next_pair_with_kind()
                return Pair(self.live_hashes[i], self.live_hashes[j], kind)
            if self.selector is None:
                return None
            i, j, kind = self.selector.next_pair_with_kind()
        except NoPairAvailable:
            return None
        return Pair(self.hashes[i], self.hashes[j], kind)

    def record(self, pair: Pair, outcome: float) -> int:
        """Store the judgement (durably, first), then update the live model. outcome: 1 left
        won, 0 right won, 0.5 tie. Held-out pairs are stored in the 'test' split and kept by
        the live model for testing only."""
        split = "test" if pair.kind == "heldout" else "train"
        cid = self.project.add_comparison(pair.left, pair.right, outcome, split=split, kind=pair.kind)
        if self._live is not None:
            ij = self.live_pair(pair)
            if ij is not None:
                kind = pair.kind if pair.kind in ("heldout", *LIVE_KINDS) else "other"
                self._live_queue.append((ij[0], ij[1], outcome, kind))  # recorded by the next reader
        elif self.selector is not None:
            i, j = self.index.get(pair.left), self.index.get(pair.right)
            if i is not None and j is not None:
                self.selector.record(i, j, outcome, pair.kind)
        self.undo_stack.append(UndoEntry(pair, cid, outcome))
        self.clicks_this_session += 1
        self.changed.emit()
        return cid

    def skip(self, pair: Pair) -> None:
        if self.live is not None:
            ij = self.live_pair(pair)
            if ij is not None:
                self.live.skip(*ij)
        elif self.selector is not None:
            i, j = self.index.get(pair.left), self.index.get(pair.right)
            if i is not None and j is not None:
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
            if self.live is not None:
                self._undo_live(entry)
            elif self.selector is not None:
                hist = self.selector.history
                i, j = self.index.get(entry.pair.left), self.index.get(entry.pair.right)
                for k in range(len(hist) - 1, -1, -1):
                    if hist[k][0] == i and hist[k][1] == j and hist[k][2] == entry.outcome:
                        del hist[k]
                        break
                self.selector.replay(hist)
            self.changed.emit()
        return entry

    def _undo_live(self, entry: UndoEntry) -> None:
        """The live model's exact undo when the click is its last record, else a replay
        without it (a rebuild came in between)."""
        ij = self.live_pair(entry.pair)
        if ij is None or self.live is None:
            return
        hist = self.live.history
        if hist and hist[-1][:3] == (ij[0], ij[1], entry.outcome):
            self.live.undo()
            return
        for k in range(len(hist) - 1, -1, -1):
            if hist[k][:3] == (ij[0], ij[1], entry.outcome):
                del hist[k]
                self.live.replay(hist)
                return

    # -- statistics ------------------------------------------------------------------------
    def last_training_time(self) -> float | None:
        versions = self.project.versions()
        return max((v.get("created", 0.0) for v in versions), default=None)

    def heldout(self) -> HeldoutStats:
        """Accuracy on the held-out pairs (the only unbiased test): the live model's and
        the current model's on the same pairs, each with its count and Wilson 95% interval.
        Without a live model, the current model's scores on the stored held-out pairs."""
        if self.live is not None:
            acc = self.live.heldout_accuracy()
            return HeldoutStats(acc.model, acc.base, self.base_name())
        rows = []
        for r in self.project.comparison_records("test"):
            i, j = self.index.get(r.a), self.index.get(r.b)
            if i is not None and j is not None and math.isfinite(self.scores[i]) and math.isfinite(self.scores[j]):
                rows.append((self.scores[i] - self.scores[j], r.outcome))
        arr = np.array(rows, dtype=np.float64).reshape(-1, 2)
        return HeldoutStats(None, _accuracy(arr[:, 0], arr[:, 1]), self.base_name())

    def stats(self) -> dict:
        total = self.project.comparison_count()
        since = total
        trained_at = self.last_training_time()
        if trained_at is not None:
            since = self.project.comparison_count(since=trained_at)
        self_cons, n_repeats = math.nan, 0
        if self.live is not None:
            self_cons, n_repeats = self.live.self_agreement()
        elif self.selector is not None:
            first, _ = self.selector.repeat_outcomes()
            n_repeats = len(first)
            if n_repeats:
                self_cons = self.selector.self_agreement()
        held = self.heldout()
        return {
            "total": total,
            "since_training": since,
            "trained": trained_at is not None,
            "heldout": held,
            "live": self.live is not None,
            "live_note": self.live_note,
            "live_fitted": self.live.n_fitted if self.live is not None else 0,
            "self_consistency": self_cons,
            "repeats": n_repeats,
            "retrain_hint": retrain_hint(total, since, trained_at is not None, held),
            "images": len(self.hashes),
            "scored": self.n_scored(),
        }


def retrain_hint(total: int, since: int, trained: bool, held: HeldoutStats | None = None) -> str:
    """A short hint when adopting the live model or training (again) is likely to help, else ''."""
    if (
        held is not None
        and held.live is not None
        and held.enough
        and held.live.low > held.base.value
        and held.live.value > held.base.value
    ):
        return (
            f"The live model predicts your held-out clicks better than the {held.base_name}: "
            "\u201cUse the live model\u201d makes it the one that ranks and exports."
        )
    if not trained:
        if total >= 30:
            return f"{total} comparisons: enough to train a first personal model (Ctrl+T)."
        return ""
    if since >= 50 or (since >= 20 and since >= 0.25 * max(total - since, 1)):
        return f"{since} new comparisons since the last training: retraining is worthwhile (Ctrl+T)."
    return ""
