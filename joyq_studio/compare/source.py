"""The pair-source interface: everything that proposes the next pair answers it.

The compare session (this package), the closed-loop benchmarks and pre-labelling take a
:class:`PairSource`, so a new strategy (the live Bayesian head, the OpenSkill selector
before embeddings exist, fixed-k batches, a diverse subset, an LLM plan) is one file
behind this interface and is measured by the same benchmark (``joyq bench taste``).

Images are named by content hash, as in the project database. The contract:

* ``next_pair()`` is cheap (the click budget: p95 < 30 ms at 100k images): it answers from
  what the source already knows and never waits for learning. It raises
  :class:`~joyq_studio.errors.NoPairAvailable` when no pair can be shown.
* ``record(pair, outcome)`` books a judgement the session has *already stored* (durable
  first). It is cheap too: learning that takes time is deferred to ``update()``.
* ``update(cancel)`` does the deferred learning (a refit); the session runs it off the
  click path (a worker thread or bounded steps) and may call it with nothing pending.
  The session never calls two methods of one source at once (it serialises them).
* ``skip(pair)`` and ``undo()`` keep the ledger of shown and recorded pairs: ``undo``
  takes back the newest ``record`` or ``skip`` exactly (also after a replay).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

#: Pair kinds the compare session knows: chosen by the model ("info"), held out (uniform,
#: never chosen by the model: the only unbiased test), a repeat of an earlier pair (self-
#: agreement), a fixed-k pair ("near" / "random"); sources may add their own.
HELDOUT = "heldout"
REPEAT = "repeat"


@dataclass(frozen=True)
class Pair:
    """Two images to show, by content hash, and how the pair was chosen."""

    left: str
    right: str
    kind: str


@runtime_checkable
class PairSource(Protocol):
    """What the compare session needs from a strategy (see the module docstring)."""

    #: a short name saved per project and shown in the app ("live", "openskill", "fixed-k", ...)
    name: str

    def next_pair(self) -> Pair: ...

    def record(self, pair: Pair, outcome: float) -> None: ...

    def skip(self, pair: Pair) -> None: ...

    def undo(self) -> None: ...

    def update(self, cancel: Callable[[], bool] | None = None) -> bool:
        """Learn what ``record`` deferred; True when anything changed."""
        ...

    def replay(self, judgements: Iterable[tuple[Pair, float]]) -> None:
        """Book stored judgements (oldest first) when a project is reopened."""
        ...
