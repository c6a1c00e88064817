"""The pair sources the compare session can use, and the registry that names them.

* ``live``: the live Bayesian head (:class:`~joyq_studio.taste.TasteModel`) on the tower's
  cached embeddings, the head of the model in use as the prior's centre. Needs both.
* ``openskill``: the OpenSkill selector (:class:`~joyq_studio.pairing.PairSelector`) on the
  model's scores; works before any embedding exists.

A source is chosen by name (:data:`SOURCES`, saved per project under :data:`SOURCE_META_KEY`).
A factory that cannot build its source raises :class:`SourceUnavailable` with one sentence
saying why; the session then falls back to ``openskill`` and shows that sentence.

Both adapters also answer the session's statistics (``predict``, ``heldout``,
``self_agreement``, ``heldout_share``): see :class:`Statistics`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import JoyqError
from ..pairing import PairSelector
from ..taste import TasteModel
from .fixedk import FixedKSource
from .source import HELDOUT, Pair, PairSource
from .stats import Schedule

SOURCE_META_KEY = "pair_source"
"""Project meta key holding the name of the pair source the user chose."""

FORGET_META_KEY = "forget_half_life"
"""Project meta key: the live model forgets older clicks with this half-life (in clicks) when
set: for a taste that drifts; its held-out figure then uses recent held-out pairs only."""

FORGET_HALF_LIFE = 100
"""The half-life (clicks) the app turns on."""

DEFAULT_SOURCE = "live"
FALLBACK_SOURCE = "openskill"

LIVE_KINDS = ("info", "repeat", "explore", HELDOUT)
"""Kinds the live model keeps as they are; every other stored kind is fitted as "other"."""


class SourceUnavailable(JoyqError):
    """A pair source cannot be built for this project (one sentence saying why)."""


@dataclass
class SourceContext:
    """What a factory may use: the folder's images (content hashes, in a fixed order), the
    current model's scores of them (NaN: not scored), its tower's embeddings and head."""

    hashes: list[str]
    scores: np.ndarray
    seed: int = 0
    embedding_hashes: list[str] = field(default_factory=list)
    embeddings: np.ndarray | None = None
    base_head: tuple[np.ndarray, float] | None = None
    forget_half_life: float | None = None  # forgetting for a drifting taste (the user turns it on)
    subset: list[str] = field(default_factory=list)  # the stored diverse subset (empty: none)


@runtime_checkable
class Statistics(Protocol):
    """What the session asks a source for its figures (both adapters answer it)."""

    def schedule(self) -> Schedule:
        """Where the source stands in its held-out schedule: the "how many more clicks" rule."""
        ...

    def predict(self, pair: Pair) -> float:
        """s_left - s_right under the model as it is now (NaN: cannot tell)."""
        ...

    def heldout(self) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        """(live model's score differences or None, starting model's, outcomes) on the
        held-out pairs the source has booked."""
        ...

    def self_agreement(self) -> tuple[float, int]:
        """(share of repeated pairs answered the same way twice, number of repeats)."""
        ...


def _live_kind(kind: str) -> str:
    return kind if kind in LIVE_KINDS else "other"


class LiveSource:
    """The live Bayesian head as a :class:`PairSource`: ``record`` queues, ``update`` learns."""

    name = "live"

    def __init__(
        self,
        hashes: Sequence[str],
        embeddings: np.ndarray,
        base_head: tuple[np.ndarray, float],
        seed: int = 0,
        forget_half_life: float | None = None,
    ) -> None:
        self.model = TasteModel(embeddings, base_head, seed=seed, forget_half_life=forget_half_life)
        self.hashes = list(hashes)
        self.built_n = len(self.hashes)  # the pool it was built on (``add_images`` adds to it)
        self.index = {h: i for i, h in enumerate(self.hashes)}
        self._queue: list[tuple[int, int, float, str]] = []
        self._ledger: list[bool] = []  # True: a record, False: a skip (undo takes the newest)

    def _ij(self, pair: Pair) -> tuple[int, int] | None:
        i, j = self.index.get(pair.left), self.index.get(pair.right)
        return None if i is None or j is None or i == j else (i, j)

    def next_pair(self) -> Pair:
        i, j, kind = self.model.next_pair_with_kind()
        return Pair(self.hashes[i], self.hashes[j], kind)

    def record(self, pair: Pair, outcome: float) -> None:
        ij = self._ij(pair)
        if ij is not None:
            self._queue.append((ij[0], ij[1], float(outcome), _live_kind(pair.kind)))
        self._ledger.append(ij is not None)

    def update(self, cancel: Callable[[], bool] | None = None) -> bool:
        changed = False
        while self._queue:
            if cancel is not None and cancel():
                break
            i, j, o, kind = self._queue.pop(0)
            self.model.record(i, j, o, kind=kind)
            changed = True
        return changed

    def skip(self, pair: Pair) -> None:
        ij = self._ij(pair)
        if ij is not None:
            self.model.skip(*ij)
        self._ledger.append(False)

    def undo(self) -> None:
        if not self._ledger:
            return
        if not self._ledger.pop():
            return  # a skip: the pair stays skipped for the chooser; the session shows it again
        if self._queue:
            self._queue.pop()
        else:
            self.model.undo()

    def replay(self, judgements: Iterable[tuple[Pair, float]]) -> None:
        rows = []
        for pair, outcome in judgements:
            ij = self._ij(pair)
            if ij is not None:
                rows.append((ij[0], ij[1], float(outcome), _live_kind(pair.kind)))
        self._queue, self._ledger = [], []
        self.model.replay(rows)

    def add_images(self, hashes: Sequence[str], embeddings: np.ndarray) -> None:
        """Newly embedded images join the pool (scored by the current head at once)."""
        new = [k for k, h in enumerate(hashes) if h not in self.index]
        if not new:
            return
        self.model.add_images(np.asarray(embeddings)[new])
        for k in new:
            self.index[hashes[k]] = len(self.hashes)
            self.hashes.append(hashes[k])

    # -- statistics ------------------------------------------------------------------------
    def predict(self, pair: Pair) -> float:
        ij = self._ij(pair)
        if ij is None:
            return math.nan
        E = self.model.E
        return float((E[ij[0]].astype(np.float64) - E[ij[1]]) @ self.model.w)

    def heldout(self) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        history, half_life = self.model.history, self.model.forget_half_life
        if half_life is not None:  # forgetting on: the recent held-out pairs only (as TasteModel)
            history = history[max(0, len(history) - int(2 * half_life)) :]
        rows = [(i, j, o) for i, j, o, kind, _ in history if kind == HELDOUT]
        if not rows:
            empty = np.zeros(0)
            return empty, empty, empty
        arr = np.array(rows, dtype=np.float64)
        ii, jj = arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64)
        x = self.model.E[ii].astype(np.float64) - self.model.E[jj]
        return x @ self.model.w, x @ self.model.w0, arr[:, 2]

    def self_agreement(self) -> tuple[float, int]:
        return self.model.self_agreement()

    def schedule(self) -> Schedule:
        return schedule_of(self.model.history, self.model.mix.heldout)


class OpenSkillSource:
    """The OpenSkill selector on the model's scores as a :class:`PairSource` (its update is
    cheap, so ``record`` books at once)."""

    name = "openskill"

    def __init__(
        self,
        hashes: Sequence[str],
        scores: np.ndarray,
        embeddings: np.ndarray | None = None,
        seed: int = 0,
    ) -> None:
        self.hashes = list(hashes)
        self.index = {h: i for i, h in enumerate(self.hashes)}
        self.scores = np.asarray(scores, dtype=np.float64)
        if len(self.hashes) < 2:
            raise SourceUnavailable("Fewer than 2 images can be shown, so there is no pair to compare.")
        finite = np.isfinite(self.scores)
        if finite.all():
            self.selector = PairSelector.from_model_scores(self.scores, [], embeddings, seed=seed)
        else:
            self.selector = PairSelector(len(self.hashes), seed=seed)
            self.selector.exclude(np.flatnonzero(~finite))
        self._ledger: list[tuple[int, int, float] | None] = []

    def _ij(self, pair: Pair) -> tuple[int, int] | None:
        i, j = self.index.get(pair.left), self.index.get(pair.right)
        return None if i is None or j is None or i == j else (i, j)

    def next_pair(self) -> Pair:
        i, j, kind = self.selector.next_pair_with_kind()
        return Pair(self.hashes[i], self.hashes[j], kind)

    def record(self, pair: Pair, outcome: float) -> None:
        ij = self._ij(pair)
        if ij is not None:
            self.selector.record(ij[0], ij[1], float(outcome), pair.kind)
            self._ledger.append((ij[0], ij[1], float(outcome)))
        else:
            self._ledger.append(None)

    def update(self, cancel: Callable[[], bool] | None = None) -> bool:
        return False  # openskill learns in record (microseconds)

    def skip(self, pair: Pair) -> None:
        ij = self._ij(pair)
        if ij is not None:
            self.selector.skip(*ij)
        self._ledger.append(None)

    def undo(self) -> None:
        if not self._ledger:
            return
        last = self._ledger.pop()
        if last is None:
            return
        hist = self.selector.history
        for k in range(len(hist) - 1, -1, -1):
            if hist[k][:3] == last:
                del hist[k]
                break
        self.selector.replay(hist)

    def replay(self, judgements: Iterable[tuple[Pair, float]]) -> None:
        rows = []
        for pair, outcome in judgements:
            ij = self._ij(pair)
            if ij is not None:
                rows.append((ij[0], ij[1], float(outcome), pair.kind))
        self._ledger = []
        if np.isfinite(self.scores).all():
            self.selector.replay(rows)
            self.selector.set_model_scores(self.scores)
        else:
            self.selector.replay(rows)

    # -- statistics ------------------------------------------------------------------------
    def predict(self, pair: Pair) -> float:
        ij = self._ij(pair)
        if ij is None:
            return math.nan
        return float(self.selector.mu[ij[0]] - self.selector.mu[ij[1]])

    def heldout(self) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        """The model in use (its scores) on the booked held-out pairs; no live figure."""
        rows = [
            (i, j, o)
            for i, j, o, kind in self.selector.history
            if kind == HELDOUT and math.isfinite(self.scores[i]) and math.isfinite(self.scores[j])
        ]
        arr = np.array(rows, dtype=np.float64).reshape(-1, 3)
        ii, jj = arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64)
        return None, self.scores[ii] - self.scores[jj], arr[:, 2]

    def self_agreement(self) -> tuple[float, int]:
        first, _ = self.selector.repeat_outcomes()
        n = len(first)
        return (self.selector.self_agreement() if n else math.nan), n

    def schedule(self) -> Schedule:
        return schedule_of(self.selector.history, self.selector.mix.heldout)


def schedule_of(history: Sequence[tuple], steady: float) -> Schedule:
    """A source's place in the held-out schedule from its booked history (kind at index 3;
    pairs it did not issue, kind "other", do not count, as in ``taste.pacing``)."""
    ours = [h[3] for h in history if h[3] != "other"]
    return Schedule(len(ours), sum(k == HELDOUT for k in ours), steady)


def make_live(ctx: SourceContext) -> LiveSource:
    if ctx.base_head is None:
        raise SourceUnavailable(
            "The live model starts once the model's head and image embeddings are known; "
            "until then pairs come from the model's scores."
        )
    if ctx.embeddings is None or len(ctx.embedding_hashes) < 2:
        raise SourceUnavailable(
            "No image embeddings of this model are cached yet; pairs come from the model's "
            "scores until scoring has embedded the images."
        )
    w, _ = ctx.base_head
    if ctx.embeddings.shape[1] != len(w):
        raise SourceUnavailable(
            f"The cached embeddings ({ctx.embeddings.shape[1]}-d) do not match the model's head "
            f"({len(w)}-d); pairs come from the model's scores."
        )
    return LiveSource(
        ctx.embedding_hashes, ctx.embeddings, ctx.base_head, seed=ctx.seed, forget_half_life=ctx.forget_half_life
    )


def make_openskill(ctx: SourceContext) -> OpenSkillSource:
    emb = None
    if ctx.embeddings is not None and ctx.embedding_hashes == ctx.hashes:
        emb = ctx.embeddings
    return OpenSkillSource(ctx.hashes, ctx.scores, emb, seed=ctx.seed)


def make_fixed_k(ctx: SourceContext) -> FixedKSource:
    """Fixed-k batches (k = 4, the default near share) over the folder's images, or over the
    diverse subset when one is stored (the original recipe: subset first, then fixed-k):
    near pairs where embeddings are cached, random ones elsewhere. No held-out pairs
    (nothing is learnt)."""
    hashes, note = ctx.hashes, ""
    if ctx.subset:
        chosen = set(ctx.subset)
        in_pool = [h for h in ctx.hashes if h in chosen]
        if len(in_pool) >= 2:
            hashes = in_pool
            note = (
                f"Fixed-k batches over the diverse subset ({len(in_pool)} of {len(ctx.hashes)} images); "
                "choose a new subset to change it."
            )
    emb, has = None, None
    if ctx.embeddings is not None and ctx.embedding_hashes:
        row = {h: r for r, h in enumerate(ctx.embedding_hashes)}
        emb = np.zeros((len(hashes), ctx.embeddings.shape[1]), np.float32)
        has = np.zeros(len(hashes), bool)
        for i, h in enumerate(hashes):
            r = row.get(h)
            if r is not None:
                emb[i], has[i] = ctx.embeddings[r], True
    source = FixedKSource(hashes, emb, has, seed=ctx.seed)
    source.note = note
    return source


SourceFactory = Callable[[SourceContext], PairSource]

SOURCES: dict[str, SourceFactory] = {"live": make_live, "openskill": make_openskill, "fixed-k": make_fixed_k}
"""Pair sources by name; a new strategy is one file and one entry here."""
