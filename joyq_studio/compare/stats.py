"""The figures the compare loop shows, and the one "how many more clicks" rule.

Every agreement is :func:`joyq_studio.metrics.agreement` (ties left out, a level score counts
half, Wilson 95% interval). Three figures, each with its count and interval:

* **predicted before learning**: each click of this session, predicted by the model *before*
  it learned from that click (predict-then-update). Available from the first click; it is
  what the model would have got right on clicks it had not seen, so it is not flattering.
* **held-out**: the live model and the model it started from on the same held-out pairs
  (uniform pairs, never fitted): the unbiased test, once there are enough of them to tell.
* **self-agreement**: repeated pairs answered the same way twice (the user's own noise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..metrics import (
    AGREEMENT_KEY,
    MIN_PAIRS_TO_TELL,
    TOO_FEW,
    WORSE,
    Agreement,
    format_accuracy,
    wilson_interval,
)
from ..taste.pacing import HELDOUT_EARLY, STEADY_SHARE, clicks_for_heldout

PREDICTED_NAME = "predicted before learning"
"""What the predict-then-update figure is called wherever it is shown."""


def plural(n: int, word: str, words: str | None = None) -> str:
    """``"1 comparison"``, ``"2 comparisons"``."""
    return f"{n} {word if n == 1 else (words or word + 's')}"


@dataclass(frozen=True)
class Schedule:
    """Where a pair source stands in its held-out schedule (``taste.pacing``: 30% of the first
    100 clicks held out, then ``steady``): ``clicks`` it issued and counts, ``heldout`` of them."""

    clicks: int = 0
    heldout: int = 0
    steady: float = STEADY_SHARE
    early: float = HELDOUT_EARLY  # 0 and 0: a source that holds nothing out

    @classmethod
    def of_project(cls, project) -> Schedule:
        """The schedule as a project's stored comparisons place it (the user's own clicks,
        imported pairs and other sources' labels left out; held-out = the 'test' split)."""
        clicks, held = project.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(split = 'test'), 0) FROM comparisons"
            " WHERE source IS NULL AND kind NOT IN ('import', 'stars')"
        ).fetchone()
        return cls(int(clicks), int(held))


def more_clicks(more_pairs: int, schedule: Schedule) -> int:
    """THE "how many more clicks" rule, in the app and the CLI alike: the clicks until
    ``more_pairs`` more held-out pairs exist under the held-out schedule in use
    (:func:`joyq_studio.taste.clicks_for_heldout`); -1 when the source holds none out."""
    if more_pairs <= 0:
        return 0
    return clicks_for_heldout(
        schedule.heldout + int(more_pairs), schedule.clicks, schedule.heldout, schedule.steady, schedule.early
    )


def more_clicks_sentence(more_pairs: int, schedule: Schedule, purpose: str) -> str:
    """``"about 70 more clicks (16 more held-out pairs) <purpose>"``; '' when none."""
    if more_pairs <= 0:
        return ""
    clicks = more_clicks(more_pairs, schedule)
    if clicks < 0:
        return "this pair source holds no pairs out: switch to the live model's pairs for a held-out figure"
    return f"about {plural(clicks, 'more click')} ({plural(int(more_pairs), 'more held-out pair')}) {purpose}"


def self_agreement_figure(value: float, count: int) -> Agreement:
    """Self-agreement as an :class:`Agreement` (share of repeats answered alike, Wilson 95%)."""
    if count == 0 or not math.isfinite(value):
        return Agreement(math.nan, 0, math.nan, math.nan)
    lo, hi = wilson_interval(value * count, count)
    return Agreement(value, count, lo, hi)


@dataclass(frozen=True)
class CompareStats:
    """Everything the compare view's status strip (and ``joyq``) says about the loop."""

    source: str  # the pair source in use
    note: str  # why it is not the one asked for (one sentence), else ''
    total: int  # comparisons stored (user and included labels)
    since_training: int
    trained: bool
    clicks_this_session: int
    pending: int  # clicks stored but not learnt yet (the update runs behind)
    predicted: Agreement  # predict-then-update over this session's clicks
    heldout_live: Agreement | None  # None: the source has no live model
    heldout_base: Agreement
    base_name: str
    self_agreement: Agreement
    schedule: Schedule
    retrain_hint: str

    @property
    def heldout_count(self) -> int:
        return self.heldout_base.count

    @property
    def enough(self) -> bool:
        return self.heldout_count >= MIN_PAIRS_TO_TELL

    @property
    def clicks_to_tell(self) -> int:
        """Clicks until the held-out figure can tell (MIN_PAIRS_TO_TELL decisive pairs)."""
        return more_clicks(MIN_PAIRS_TO_TELL - self.heldout_count, self.schedule)

    def lines(self) -> list[str]:
        """The figures in plain words (the CLI prints them; the app's strip shows them)."""
        out = [f"{plural(self.total, 'comparison')} stored ({self.source} pairs)"]
        if self.note:
            out.append(self.note)
        out.append(f"{PREDICTED_NAME}: {describe(self.predicted)} of this session's clicks")
        if self.heldout_live is not None:
            held = f"held-out: live model {describe(self.heldout_live)}, {self.base_name} {describe(self.heldout_base)}"
        else:
            held = f"held-out: {self.base_name} {describe(self.heldout_base)}"
        if not self.enough:
            held += (
                f"; too few to tell ({MIN_PAIRS_TO_TELL} needed, "
                f"{more_clicks_sentence(MIN_PAIRS_TO_TELL - self.heldout_count, self.schedule, 'to go')})"
            )
        out.append(held)
        if self.self_agreement.count:
            out.append(f"self-agreement on repeated pairs: {describe(self.self_agreement)}")
        if self.retrain_hint:
            out.append(self.retrain_hint)
        return out


def describe(a: Agreement) -> str:
    """``"62.5% of 40 (47-76%)"`` or ``"n/a"``: the same text everywhere."""
    return format_accuracy(a.value, a.count, a.low, a.high)


def retrain_hint(
    total: int,
    since: int,
    trained: bool,
    live: Agreement | None = None,
    base: Agreement | None = None,
    base_name: str = "base model",
) -> str:
    """A short hint when adopting the live model or training (again) is likely to help, else ''."""
    if (
        live is not None
        and base is not None
        and base.count >= MIN_PAIRS_TO_TELL
        and live.low > base.value
        and live.value > base.value
    ):
        return (
            f"The live model predicts your held-out clicks better than the {base_name}: "
            "\u201cUse the live model\u201d makes it the one that ranks and exports."
        )
    if not trained:
        if total >= 30:
            return f"{plural(total, 'comparison')}: enough to train a first personal model (Ctrl+T)."
        return ""
    if since >= 50 or (since >= 20 and since >= 0.25 * max(total - since, 1)):
        return f"{plural(since, 'new comparison')} since the last training: retraining is worthwhile (Ctrl+T)."
    return ""


def adoption_warning(verdict: str | None, n_pairs: int, what: str) -> str:
    """A plain warning before adopting a result that is too few to tell or worse, else ''.
    ``verdict``: :func:`joyq_studio.metrics.paired_comparison`'s (None: none was made);
    ``what``: "this model" / "the live model"."""
    if verdict is None or verdict == TOO_FEW or n_pairs < MIN_PAIRS_TO_TELL:
        return (
            f"Only {plural(n_pairs, 'held-out pair')} so far: too few to tell whether {what} is better "
            f"than the one in use ({MIN_PAIRS_TO_TELL} are needed). Use it anyway?"
        )
    if verdict == WORSE:
        return (
            f"On {plural(n_pairs, 'held-out pair')}, {what} is worse than the one in use beyond noise. Use it anyway?"
        )
    return ""


def stored_agreement(m: dict) -> Agreement:
    """The held-out agreement a version record keeps (:data:`~joyq_studio.metrics.AGREEMENT_KEY`,
    with ``n_decisive`` and ``accuracy_low``/``_high``); records written before the key existed
    kept the same figure under ``accuracy`` (counting ``n`` pairs when ``n_decisive`` is absent)."""

    def num(key: str) -> float:
        v = m.get(key)
        return float(v) if isinstance(v, int | float) else math.nan

    value = num(AGREEMENT_KEY) if AGREEMENT_KEY in m else num("accuracy")
    n = m.get("n_decisive", m.get("n"))
    return Agreement(value, int(n) if isinstance(n, int | float) else 0, num("accuracy_low"), num("accuracy_high"))
