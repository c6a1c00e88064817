"""Several models (and prompts) on the same pairs you labelled: which agrees with you most per dollar.

Every candidate (a model with a prompt) is asked about the *same* user pairs, both orders,
through the one ask loop (:func:`.engine.ask_pairs`: cache, cap, resume). Per candidate:
the agreement (:func:`joyq_studio.metrics.agreement`, THE agreement: an LLM tie or an
order-inconsistent pair scores half), its count and Wilson interval, the position bias
(share of pairs whose two orders picked opposite images), the tie rate, and the measured
cost per 1,000 labels (one label = one pair asked in both orders; the cost each reply
was billed at, from the cache). Between two candidates, an exact McNemar test on the pairs
both answered; one is called better only when p < 0.05 (and there are at least
:data:`~joyq_studio.metrics.MIN_PAIRS_TO_TELL` such pairs), otherwise "not distinguishable".

The cap holds across the whole comparison: each candidate gets what the earlier ones left.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..metrics import MIN_PAIRS_TO_TELL, Agreement, _mcnemar_p, agreement
from ..store import Project
from . import cache
from .agreement import UserPair, both_orders, reasons_of, user_pairs
from .client import LLMClient
from .cost import CallEstimate, Pricing, estimate_call
from .engine import AskProgress, AskReport, ask_pairs
from .prompt import Prompt

#: The significance level of the paired test.
ALPHA = 0.05


@dataclass(frozen=True)
class Candidate:
    model: str
    prompt: Prompt
    pricing: Pricing

    @property
    def name(self) -> str:
        return f"{self.model} / prompt {self.prompt.hash}"


@dataclass
class WrongAnswer:
    a: str
    b: str
    user_outcome: float
    llm_outcome: float
    reasons: tuple[str, str]  # (a shown first, b shown first)


@dataclass
class Evaluation:
    """One candidate on a list of user pairs (from the cache; no network)."""

    model: str
    prompt_hash: str
    pairs: int
    agreement: Agreement  # THE agreement over the answered pairs
    correct: np.ndarray  # per pair: 1, 0.5 (LLM tie) or 0; NaN when not answered in both orders
    answered: int = 0
    ties: int = 0  # LLM ties, order-inconsistent pairs included
    inconsistent: int = 0  # the two orders picked opposite images (position bias)
    failed: int = 0  # not answered in both orders (malformed, failed, not asked yet)
    cost: float = 0.0  # USD billed for these answers
    wrong: list[WrongAnswer] = field(default_factory=list)

    @property
    def tie_rate(self) -> float:
        return self.ties / self.answered if self.answered else math.nan

    @property
    def position_bias(self) -> float:
        return self.inconsistent / self.answered if self.answered else math.nan

    @property
    def cost_per_1000(self) -> float:
        """Measured USD per 1,000 labels (pairs answered in both orders)."""
        return 1000 * self.cost / self.answered if self.answered else math.nan


def evaluate(
    project: Project, model: str, prompt_hash: str, pairs: Sequence[UserPair], max_wrong: int | None = None
) -> Evaluation:
    """How ``model`` with ``prompt_hash`` agrees with you on ``pairs``, from its cached answers."""
    answers = cache.answers_for(project, model, prompt_hash, {k for p in pairs for k in ((p.a, p.b), (p.b, p.a))})
    correct = np.full(len(pairs), np.nan)
    diffs, outcomes = [], []
    ev = Evaluation(model, prompt_hash, len(pairs), agreement([], []), correct)
    for i, (p, ab, ba, v) in enumerate(both_orders(pairs, answers)):
        ev.cost += (ab.cost if ab else 0.0) + (ba.cost if ba else 0.0)
        if v is None:
            ev.failed += 1
            continue
        ev.answered += 1
        ev.inconsistent += v.inconsistent
        ev.ties += v.outcome == 0.5
        diffs.append(v.outcome - 0.5)
        outcomes.append(p.outcome)
        correct[i] = 0.5 if v.outcome == 0.5 else float(v.outcome == p.outcome)
        if correct[i] < 1 and (max_wrong is None or len(ev.wrong) < max_wrong):
            ev.wrong.append(WrongAnswer(p.a, p.b, p.outcome, v.outcome, reasons_of(ab, ba)))
    ev.agreement = agreement(diffs, outcomes)
    return ev


@dataclass
class PairedTest:
    first: str  # candidate names
    second: str
    n: int  # pairs both answered
    first_only: int  # pairs only the first got right (a tie counts as wrong here)
    second_only: int
    p_value: float
    verdict: str  # 'first better', 'second better', 'not distinguishable', 'too few to tell'


def paired_test(first: Evaluation, second: Evaluation, first_name: str, second_name: str) -> PairedTest:
    """Exact McNemar test on the pairs both answered (same pairs, same order of the list)."""
    both = ~np.isnan(first.correct) & ~np.isnan(second.correct)
    c1, c2 = first.correct[both] == 1.0, second.correct[both] == 1.0
    b, c = int((c1 & ~c2).sum()), int((c2 & ~c1).sum())
    n = int(both.sum())
    p = _mcnemar_p(b, c)
    if n < MIN_PAIRS_TO_TELL:
        verdict = "too few to tell"
    elif p < ALPHA and b != c:
        verdict = "first better" if b > c else "second better"
    else:
        verdict = "not distinguishable"
    return PairedTest(first_name, second_name, n, b, c, p, verdict)


# -- the comparison ------------------------------------------------------------------------
@dataclass
class ComparePlan:
    candidates: list[Candidate]
    pairs: list[UserPair]
    calls_needed: list[int]  # per candidate, not yet in the cache
    estimates: list[CallEstimate]  # per candidate, one call

    @property
    def cost(self) -> float:
        return sum(n * e.cost for n, e in zip(self.calls_needed, self.estimates, strict=True))


def plan_compare(
    project: Project, candidates: Sequence[Candidate], n_pairs: int = 100, image_side: int = 768
) -> ComparePlan:
    """The user pairs every candidate will be asked about and what that costs (no network)."""
    from .run import PrelabelError

    if not candidates:
        raise PrelabelError("Name at least one model to compare.")
    names = [c.name for c in candidates]
    if len(set(names)) != len(names):
        raise PrelabelError("The same model and prompt are named twice; each candidate must differ.")
    cache.ensure_tables(project)
    pairs = user_pairs(project, n_pairs)
    if not pairs:
        raise PrelabelError(
            f"{project.folder}: has no pairs you labelled with a winner yet; compare some pairs first, "
            "so the models can be measured against you."
        )
    keys = {k for p in pairs for k in ((p.a, p.b), (p.b, p.a))}
    needed, estimates = [], []
    for c in candidates:
        needed.append(len(keys) - len(cache.answers_for(project, c.model, c.prompt.hash, keys)))
        estimates.append(
            estimate_call(c.pricing, c.prompt.text, image_side, cache.measured_tokens(project, c.model, c.prompt.hash))
        )
    return ComparePlan(list(candidates), pairs, needed, estimates)


@dataclass
class CompareReport:
    plan: ComparePlan
    evaluations: list[Evaluation]
    asks: list[AskReport]
    tests: list[PairedTest]
    spent: float = 0.0
    stopped: str | None = None  # 'cap' when the cap stopped a candidate

    def best_supported(self) -> int | None:
        """The candidate every paired test calls better than each other one, or None."""
        for i in range(len(self.evaluations)):
            wins = 0
            for t in self.tests:
                names = self.plan.candidates
                if t.first == names[i].name and t.verdict == "first better":
                    wins += 1
                elif t.second == names[i].name and t.verdict == "second better":
                    wins += 1
            if wins == len(self.evaluations) - 1 and wins > 0:
                return i
        return None


def run_compare(
    project: Project,
    client_for: Callable[[str], LLMClient],
    plan: ComparePlan,
    cap: float | None = None,
    progress: Callable[[AskProgress], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> CompareReport:
    """Ask every candidate about the plan's pairs (the cap across all of them) and compare."""
    keys = [(p.a, p.b) for p in plan.pairs]
    asks: list[AskReport] = []
    spent, stopped = 0.0, None
    for cand, est in zip(plan.candidates, plan.estimates, strict=True):
        left = None if cap is None else max(0.0, cap - spent)
        ask = ask_pairs(
            project,
            client_for(cand.model),
            cand.prompt.text,
            cand.prompt.hash,
            keys,
            cand.pricing,
            est,
            cap=left,
            progress=progress,
            cancel=cancel,
        )
        asks.append(ask)
        spent += ask.spent
        if ask.stopped == "cap":
            stopped = "cap"
        if ask.stopped == "cancelled":
            stopped = "cancelled"
            break
    evaluations = [evaluate(project, c.model, c.prompt.hash, plan.pairs, max_wrong=3) for c in plan.candidates]
    tests = [
        paired_test(evaluations[i], evaluations[j], plan.candidates[i].name, plan.candidates[j].name)
        for i in range(len(evaluations))
        for j in range(i + 1, len(evaluations))
    ]
    return CompareReport(plan, evaluations, asks, tests, spent, stopped)
