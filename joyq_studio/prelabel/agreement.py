"""How often the LLM chooses as the user does, with an honest interval.

On pairs the user labelled (held-out pairs first: they were chosen uniformly, so they are
the unbiased sample), the LLM's verdict (see :mod:`.labels`) is compared with the user's
click. *Agreement* is k / n over the pairs where both chose a side (user ties and LLM
ties are left out and reported as the tie rate), with a Wilson score 95% interval:

    centre = (p + z^2 / 2n) / (1 + z^2 / n),
    half   = z * sqrt(p (1 - p) / n + z^2 / 4n^2) / (1 + z^2 / n),   z = 1.96,

which, unlike p +- z sqrt(p(1-p)/n), stays inside [0, 1] and keeps its coverage for small
n and p near 1 (Wilson 1927; Brown, Cai & DasGupta 2001). The same agreement is the trust
given to each LLM label in training.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from ..metrics import Agreement, agreement, wilson_interval  # noqa: F401 - wilson_interval: re-exported by prelabel
from ..store import Project
from .cache import CachedAnswer
from .labels import Verdict, combine

#: Fewer decisive pairs than this and the agreement is too uncertain to weight labels by.
MIN_PAIRS_FOR_TRUST = 20


@dataclass(frozen=True)
class UserPair:
    a: str
    b: str
    outcome: float  # the user's: 1 a won, 0 b won (ties are not used)
    split: str


@dataclass(frozen=True)
class Disagreement:
    a: str
    b: str
    user_outcome: float
    llm_outcome: float
    reasons: tuple[str, str]  # (a shown first, b shown first)


@dataclass
class AgreementReport:
    model: str
    prompt_hash: str
    pairs: int = 0  # user pairs asked about
    answered: int = 0  # with a valid answer in both orders
    n: int = 0  # answered pairs where the LLM chose a side
    agree: int = 0  # ... and chose as the user did
    held_out: int = 0  # of n, pairs from the held-out (test) split
    ties: int = 0  # answered pairs the LLM called a tie (inconsistent included)
    inconsistent: int = 0  # answered pairs whose two orders picked opposite sides
    failed: int = 0  # pairs with a malformed or missing answer
    disagreements: list[Disagreement] = field(default_factory=list)
    #: (LLM verdict - 1/2, user outcome) of the pairs where the LLM chose a side
    votes: list[tuple[float, float]] = field(default_factory=list)

    @property
    def figure(self) -> Agreement:
        """:func:`joyq_studio.metrics.agreement` of the LLM's verdicts with the user's clicks
        (the LLM's ties are not votes here: they are reported as the tie rate)."""
        return agreement([d for d, _ in self.votes], [y for _, y in self.votes])

    @property
    def agreement(self) -> float:
        return self.figure.value

    @property
    def interval(self) -> tuple[float, float]:
        f = self.figure
        return f.low, f.high

    @property
    def tie_rate(self) -> float:
        return self.ties / self.answered if self.answered else math.nan

    @property
    def inconsistent_rate(self) -> float:
        return self.inconsistent / self.answered if self.answered else math.nan

    @property
    def better_than_chance(self) -> bool:
        """The interval lies above 1/2: the LLM's taste can be told apart from a coin."""
        return self.n > 0 and self.interval[0] > 0.5

    def trust(self) -> float | None:
        """The weight for its labels (the agreement, at least 1/2), or None when there are
        too few pairs or it cannot be told apart from chance."""
        if self.n < MIN_PAIRS_FOR_TRUST or not self.better_than_chance:
            return None
        return max(0.5, min(1.0, self.agreement))


def user_pairs(project: Project, limit: int | None = None) -> list[UserPair]:
    """The user's own decisive pairs, held-out ones first, each unordered pair once."""
    seen: set[frozenset] = set()
    out: list[UserPair] = []
    records = project.comparison_records()
    ordered = [r for r in records if r.split == "test"] + [r for r in records if r.split != "test"]
    for r in ordered:
        if r.source is not None or r.outcome == 0.5:
            continue
        key = frozenset((r.a, r.b))
        if key in seen:
            continue
        seen.add(key)
        out.append(UserPair(r.a, r.b, r.outcome, r.split))
        if limit is not None and len(out) >= limit:
            break
    return out


def both_orders(
    pairs: Sequence[UserPair], answers: dict[tuple[str, str], CachedAnswer]
) -> Iterator[tuple[UserPair, CachedAnswer | None, CachedAnswer | None, Verdict | None]]:
    """Each pair with its answer in each order and their combined verdict (None: not answered
    validly in both orders). The one rule for reading an LLM's two answers about a pair."""
    for p in pairs:
        ab, ba = answers.get((p.a, p.b)), answers.get((p.b, p.a))
        if ab is not None and ba is not None and ab.ok and ba.ok:
            yield p, ab, ba, combine(ab.better, ba.better)
        else:
            yield p, ab, ba, None


def summarize(
    model: str,
    prompt_hash: str,
    pairs: list[UserPair],
    answers: dict[tuple[str, str], CachedAnswer],
    max_disagreements: int = 5,
) -> AgreementReport:
    """The agreement report over ``pairs`` from the cached answers (no network)."""
    rep = AgreementReport(model, prompt_hash, pairs=len(pairs))
    for p, ab, ba, v in both_orders(pairs, answers):
        if v is None:
            rep.failed += 1
            continue
        rep.answered += 1
        rep.inconsistent += v.inconsistent
        if v.outcome == 0.5:
            rep.ties += 1
            continue
        rep.n += 1
        rep.votes.append((v.outcome - 0.5, p.outcome))
        rep.held_out += p.split == "test"
        if v.outcome == p.outcome:
            rep.agree += 1
        elif len(rep.disagreements) < max_disagreements:
            rep.disagreements.append(Disagreement(p.a, p.b, p.outcome, v.outcome, reasons_of(ab, ba)))
    return rep


def reasons_of(ab: CachedAnswer | None, ba: CachedAnswer | None) -> tuple[str, str]:
    """The LLM's reasons, with a shown first and with b shown first."""
    return (ab.reason or "" if ab else "", ba.reason or "" if ba else "")
