"""From two answers to one label, and how training reads LLM labels.

Verdict of a pair
-----------------
Each pair is asked in both orders. One order's answer is a vote v for image ``a``:
1 if it chose ``a``, 0 if it chose ``b``, 1/2 for a tie. The pair's verdict combines the
two votes v1 (a shown first) and v2 (a shown second):

* the same side twice, or one side and one tie: the LLM's choice is that side;
* a tie twice: a tie;
* opposite sides (it picked whichever image sat in one position): *order-inconsistent*,
  counted as a tie.

Soft target
-----------
The store keeps ``outcome`` in {0, 1/2, 1} (the LLM's choice, as for a click) and
``weight`` = the trust q in that choice: the measured probability that the user would
choose as the LLM did (its agreement, at least 1/2). Training turns every comparison
(user clicks included, whose weight is 1) into the target probability that ``a`` wins:

    y = 1/2 + (outcome - 1/2) * (2 * weight - 1)            (weight clipped to [1/2, 1])

so a user's click gives y = outcome, an LLM choice with agreement q gives y = q toward the
chosen image (1 - q for the other), and any tie gives 1/2. Train with the cross-entropy
against y and no extra sample weight (``weight`` is already inside y). :func:`soft_target`
is the one implementation.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..store import Comparison, Project
from .cache import parse_source

INCLUDE_META = "prelabel_in_training"

_VOTE_FIRST = {"A": 1.0, "B": 0.0, "tie": 0.5}


@dataclass(frozen=True)
class Verdict:
    outcome: float  # for image a: 1 won, 0 lost, 0.5 tie
    inconsistent: bool  # the two orders picked opposite sides (position bias)


def combine(better_ab: str | None, better_ba: str | None) -> Verdict:
    """The verdict for ``a`` from the answer with a shown first and with b shown first
    (each 'A', 'B' or 'tie'; raises ValueError for anything else)."""
    first, second = _VOTE_FIRST.get(better_ab or ""), _VOTE_FIRST.get(better_ba or "")
    if first is None or second is None:
        raise ValueError(f"verdicts must be 'A', 'B' or 'tie', not {better_ab!r} and {better_ba!r}")
    v1, v2 = first, 1.0 - second
    if {v1, v2} == {0.0, 1.0}:
        return Verdict(0.5, True)
    mean = (v1 + v2) / 2
    return Verdict(1.0 if mean > 0.5 else 0.0 if mean < 0.5 else 0.5, False)


def soft_target(outcome: float, weight: float = 1.0) -> float:
    """Target probability that the first image wins: ``1/2 + (outcome - 1/2)(2 w - 1)``,
    ``w`` clipped to [1/2, 1]. A user's click (w = 1) gives its outcome; an LLM label with
    trust q gives q toward its choice; a tie gives 1/2."""
    w = min(1.0, max(0.5, float(weight)))
    return 0.5 + (float(outcome) - 0.5) * (2.0 * w - 1.0)


def is_llm(record: Comparison) -> bool:
    return parse_source(record.source) is not None


def llm_labels_included(project: Project) -> bool:
    """Whether training uses the LLM's labels (default yes; the user can switch it off)."""
    return project.get_meta(INCLUDE_META, "1") == "1"


def set_llm_labels_included(project: Project, included: bool) -> None:
    with project.transaction():
        project.set_meta(INCLUDE_META, "1" if included else "0")


def training_records(
    project: Project, split: str | None = "train", include_llm: bool | None = None
) -> list[Comparison]:
    """The comparisons training should use: LLM labels only when included (``include_llm``,
    else the project's setting). LLM labels are never in the 'test' split."""
    include = llm_labels_included(project) if include_llm is None else include_llm
    return [r for r in project.comparison_records(split) if include or parse_source(r.source) is None]


def set_trust(project: Project, source: str, trust: float) -> int:
    """Set the trust (weight) of every label from one LLM source, e.g. after measuring its
    agreement on more pairs; returns how many labels changed."""
    if parse_source(source) is None:
        raise ValueError(f"{source!r} is not an LLM source")
    trust = min(1.0, max(0.5, float(trust)))
    with project.transaction():
        cur = project.db.execute("UPDATE comparisons SET weight = ? WHERE source = ?", (trust, source))
    return cur.rowcount


def llm_label_counts(project: Project) -> dict[str, int]:
    """Number of labels per LLM source."""
    rows = project.db.execute(
        "SELECT source, COUNT(*) FROM comparisons WHERE source LIKE 'llm:%' GROUP BY source ORDER BY source"
    ).fetchall()
    return dict(rows)
