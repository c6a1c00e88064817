"""Fixed-k pairs as a pair source, and as a dataset JSON for labelling elsewhere.

The original JoyQuality recipe: every image of the pool appears in ``k`` pairs (so
``k * N / 2`` pairs for ``N`` images), ``near_share`` of them between embedding neighbours
and the rest random. The pairs come from THE builder, :mod:`joyq_studio.pairing.fixedk`;
this module only serves them:

* :class:`FixedKSource` answers the :class:`~joyq_studio.compare.source.PairSource`
  protocol, so the compare session can offer fixed-k batches next to the live model's
  choice. It learns nothing: ``next_pair`` pops the planned batch, ``record`` / ``skip``
  keep the ledger, ``undo`` puts the pair back in front, and when a batch is used up the
  next one (k more per image, never repeating a judged pair) is built.
* :func:`plan_pairs` / :func:`write_pairs_json` write the pairs in the training script's
  dataset JSON (``{"train": [[a, b, label], ...], "test": []}``) with ``label`` null: not
  labelled yet (fill in 1 = first better, -1 = second, 0 = tie). `joyq import-pairs`
  refuses null labels, so an unlabelled file is never read as ties.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ExportError, JoyqError, NoPairAvailable
from ..fsio import atomic_write, describe_error
from ..pairing.fixedk import DEFAULT_NEAR_SHARE, fixed_k_pairs, pool_embeddings
from ..store import Project
from .source import Pair


def pairs_for_k(n_images: int, k: int) -> int:
    """Pairs that put each of ``n_images`` images in ``k`` pairs: k * N / 2 (rounded down)."""
    return k * n_images // 2


class FixedKSource:
    """Fixed-k batches as a :class:`~joyq_studio.compare.source.PairSource` (see the module doc)."""

    name = "fixed-k"

    def __init__(
        self,
        hashes: Sequence[str],
        embeddings: np.ndarray | None = None,
        has_embedding: np.ndarray | None = None,
        k: int = 4,
        near_share: float = DEFAULT_NEAR_SHARE,
        seed: int = 0,
    ):
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        self.hashes = list(hashes)
        self.embeddings, self.has_embedding = embeddings, has_embedding
        self.k, self.near_share, self.seed = k, near_share, seed
        self.batches = 0
        self.note = ""  # what the session shows about this source (e.g. its pool)
        self.queue: deque[Pair] = deque()
        self.judged: set[frozenset] = set()  # recorded pairs, never planned again
        self.ledger: list[tuple[str, Pair]] = []  # ('record' | 'skip', pair), oldest first

    @classmethod
    def from_project(
        cls, project: Project, k: int = 4, near_share: float = DEFAULT_NEAR_SHARE, seed: int = 0, pool: str = "all"
    ) -> FixedKSource:
        hashes, emb, has, _ = pool_embeddings(project, pool)
        src = cls(hashes, emb, has, k=k, near_share=near_share, seed=seed)
        src.judged |= {frozenset((r.a, r.b)) for r in project.comparison_records()}
        return src

    # -- the protocol ------------------------------------------------------------------------
    def next_pair(self) -> Pair:
        if not self.queue:
            self._refill()
        if not self.queue:
            raise NoPairAvailable("Every fixed-k pair of these images has been judged.")
        return self.queue[0]

    def record(self, pair: Pair, outcome: float) -> None:
        self._take(pair)
        self.judged.add(frozenset((pair.left, pair.right)))
        self.ledger.append(("record", pair))

    def skip(self, pair: Pair) -> None:
        self._take(pair)
        self.ledger.append(("skip", pair))

    def undo(self) -> None:
        if not self.ledger:
            return
        what, pair = self.ledger.pop()
        if what == "record":
            self.judged.discard(frozenset((pair.left, pair.right)))
        self.queue.appendleft(pair)

    def update(self, cancel: Callable[[], bool] | None = None) -> bool:
        """Build the next batch ahead of time when the current one is nearly used up."""
        if len(self.queue) * 4 < pairs_for_k(len(self.hashes), self.k):
            before = len(self.queue)
            self._refill()
            return len(self.queue) > before
        return False

    def replay(self, judgements: Iterable[tuple[Pair, float]]) -> None:
        for pair, outcome in judgements:
            self.record(pair, outcome)

    # -- helpers -----------------------------------------------------------------------------
    def _take(self, pair: Pair) -> None:
        try:
            self.queue.remove(pair)
        except ValueError:
            pass  # a pair shown by another source, or replayed: nothing planned to drop

    def _refill(self) -> None:
        avoid = self.judged | {frozenset((p.left, p.right)) for p in self.queue}
        batch = fixed_k_pairs(
            self.hashes,
            pairs_for_k(len(self.hashes), self.k),
            self.embeddings,
            self.has_embedding,
            near_share=self.near_share,
            avoid=avoid,
            seed=self.seed + self.batches,
        )
        self.batches += 1
        self.queue.extend(Pair(a, b, kind) for a, b, kind in batch)


# -- pairs for labelling elsewhere ---------------------------------------------------------
@dataclass
class PairsPlan:
    pairs: list[tuple[str, str, str]]  # (a, b, 'near' | 'random')
    images: int  # the pool's size
    k: int
    near_share: float
    tower: str | None  # embeddings used for near pairs (None: all random)
    pool: str

    @property
    def near(self) -> int:
        return sum(kind == "near" for _, _, kind in self.pairs)


def plan_pairs(
    project: Project,
    k: int = 4,
    near_share: float = DEFAULT_NEAR_SHARE,
    seed: int = 0,
    pool: str = "all",
    skip_judged: bool = True,
) -> PairsPlan:
    """k * N / 2 fixed-k pairs over the pool (pairs already judged left out when asked)."""
    if k < 1:
        raise JoyqError(f"k must be at least 1, not {k}.")
    hashes, emb, has, tower = pool_embeddings(project, pool)
    if len(hashes) < 2:
        raise JoyqError(f"{project.folder}: the {pool} pool has {len(hashes)} image(s); pairs need at least 2.")
    avoid = {frozenset((r.a, r.b)) for r in project.comparison_records()} if skip_judged else set()
    pairs = fixed_k_pairs(hashes, pairs_for_k(len(hashes), k), emb, has, near_share=near_share, avoid=avoid, seed=seed)
    return PairsPlan(pairs, len(hashes), k, near_share, tower, pool)


def write_pairs_json(project: Project, plan: PairsPlan, out: str | os.PathLike) -> Path:
    """The plan as a dataset JSON with null labels (atomically); paths relative to the file
    when it is inside the folder, absolute otherwise (as `joyq export-pairs` writes them)."""
    out = Path(out)
    paths = dict(project.image_paths())
    out_dir = Path(os.path.abspath(out)).parent
    inside = out_dir == project.folder or project.folder in out_dir.parents

    def name(digest: str) -> str:
        p = project.folder / paths[digest]
        return Path(os.path.relpath(p, out_dir)).as_posix() if inside else str(p)

    data = {"train": [[name(a), name(b), None] for a, b, _ in plan.pairs], "test": []}
    try:
        atomic_write(out, (json.dumps(data, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
    except OSError as e:
        raise ExportError(f"{out}: could not write the pairs ({describe_error(e)}); nothing was written.") from None
    return out
