"""The two user-facing steps: measure agreement, then label pairs.

Both are split in a *plan* (no network: which pairs, how many calls are still unpaid, the
estimated cost), shown to the user, and an *execution* that asks the endpoint. Nothing is
sent before an execution starts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import JoyqError
from ..pairing.fixedk import PairChooser, pick_fixed_k
from ..store import Project
from . import cache
from .agreement import (
    MIN_PAIRS_FOR_TRUST,
    AgreementReport,
    UserPair,
    summarize,
    user_pairs,
)
from .client import LLMClient
from .cost import CallEstimate, Pricing, estimate_call
from .engine import AskProgress, AskReport, ask_pairs
from .labels import combine
from .prompt import Prompt


class PrelabelError(JoyqError):
    """Pre-labelling cannot start; one sentence saying what is missing."""


def _estimate(project: Project, model: str, prompt: Prompt, pricing: Pricing, image_side: int) -> CallEstimate:
    cache.ensure_tables(project)
    return estimate_call(pricing, prompt.text, image_side, cache.measured_tokens(project, model, prompt.hash))


def _missing_calls(project: Project, model: str, prompt_hash: str, pairs) -> int:
    keys = {k for a, b in pairs for k in ((a, b), (b, a))}
    return len(keys) - len(cache.answers_for(project, model, prompt_hash, keys))


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


# -- agreement ---------------------------------------------------------------------------
@dataclass
class AgreementPlan:
    model: str
    prompt: Prompt
    pairs: list[UserPair]
    held_out: int  # of which from the held-out split
    calls_needed: int  # not yet answered (the rest come from the cache)
    estimate: CallEstimate  # per call
    pricing: Pricing

    @property
    def cost(self) -> float:
        return self.calls_needed * self.estimate.cost


def plan_agreement(
    project: Project, model: str, prompt: Prompt, pricing: Pricing, image_side: int = 768, n_pairs: int = 100
) -> AgreementPlan:
    """Up to ``n_pairs`` of the user's decisive pairs (held-out first) and what asking costs."""
    cache.ensure_tables(project)
    pairs = user_pairs(project, n_pairs)
    if not pairs:
        raise PrelabelError(
            f"{project.folder}: has no pairs you labelled with a winner yet; compare some "
            "pairs first, so the LLM's agreement with you can be measured."
        )
    return AgreementPlan(
        model,
        prompt,
        pairs,
        sum(p.split == "test" for p in pairs),
        _missing_calls(project, model, prompt.hash, [(p.a, p.b) for p in pairs]),
        _estimate(project, model, prompt, pricing, image_side),
        pricing,
    )


def measure_agreement(
    project: Project,
    client: LLMClient,
    plan: AgreementPlan,
    cap: float | None = None,
    progress: Callable[[AskProgress], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> tuple[AgreementReport, AskReport]:
    """Ask the endpoint about the plan's pairs (both orders) and report the agreement."""
    ask = ask_pairs(
        project,
        client,
        plan.prompt.text,
        plan.prompt.hash,
        [(p.a, p.b) for p in plan.pairs],
        plan.pricing,
        plan.estimate,
        cap=cap,
        progress=progress,
        cancel=cancel,
    )
    answers = cache.answers_for(
        project, client.model, plan.prompt.hash, {k for p in plan.pairs for k in ((p.a, p.b), (p.b, p.a))}
    )
    return summarize(client.model, plan.prompt.hash, plan.pairs, answers), ask


def agreement_from_cache(project: Project, model: str, prompt_hash: str) -> AgreementReport:
    """The agreement over every user pair already answered by this model and prompt (free)."""
    cache.ensure_tables(project)
    return summarize(model, prompt_hash, user_pairs(project), cache.answers_for(project, model, prompt_hash))


# -- labelling ---------------------------------------------------------------------------
@dataclass
class RunPlan:
    source: str
    model: str
    prompt: Prompt
    trust: float  # the weight each label gets
    trust_basis: str  # where it comes from, for the user
    agreement: AgreementReport | None
    resumed: list[cache.PlannedPair]  # pairs planned by an earlier, unfinished run
    new: list[tuple[str, str, str]]  # (a, b, kind) picked now; stored when the run starts
    tower: str | None  # embeddings used for 'near' pairs
    calls_needed: int
    estimate: CallEstimate
    pricing: Pricing
    dropped: int = 0  # unfinished pairs of an earlier run to forget when this starts

    @property
    def pairs(self) -> int:
        return len(self.resumed) + len(self.new)

    @property
    def cost(self) -> float:
        return self.calls_needed * self.estimate.cost


@dataclass
class RunReport:
    source: str
    trust: float
    ask: AskReport
    labelled: int = 0  # labels written in this run
    ties: int = 0  # ... of which ties (order-inconsistent included)
    inconsistent: int = 0
    failed_pairs: int = 0  # pairs with a malformed answer: no label
    pending: int = 0  # planned pairs still unanswered (cap, cancel, failures)
    kinds: dict[str, int] = field(default_factory=dict)


MIN_TRUST = 0.5  # a coin flip: a label trusted less than this would count for the other side


def check_trust(trust: float) -> float:
    """``trust`` if it is a number from 0.5 (a coin flip) to 1 (as sure as the user's clicks);
    PrelabelError otherwise (NaN and infinities included). Every place that sets it calls this."""
    try:
        value = float(trust)
    except (TypeError, ValueError):
        raise PrelabelError(f"The trust {trust!r} is not a number; give one from 0.5 to 1.") from None
    if not MIN_TRUST <= value <= 1.0:  # also false for NaN
        raise PrelabelError(f"The trust {trust} is outside 0.5 (a coin flip) to 1 (as sure as your clicks).")
    return value


def resolve_trust(
    project: Project, model: str, prompt_hash: str, trust: float | None
) -> tuple[float, str, AgreementReport | None]:
    """(trust, basis, report): the set trust, else the measured agreement; raises
    PrelabelError when it has not been measured well enough to weight labels by."""
    if trust is not None:
        return check_trust(trust), "set by you", None
    rep = agreement_from_cache(project, model, prompt_hash)
    t = rep.trust()
    if t is not None:
        lo, hi = rep.interval
        return t, f"measured agreement {_pct(rep.agreement)} (95% interval {_pct(lo)}-{_pct(hi)}, {rep.n} pairs)", rep
    if rep.n == 0:
        raise PrelabelError(
            f"The agreement of {model} with your labels has not been measured with this prompt; "
            "run the agreement check first (or set the trust yourself)."
        )
    if rep.n < MIN_PAIRS_FOR_TRUST:
        raise PrelabelError(
            f"The agreement of {model} was measured on only {rep.n} pairs; measure it on at "
            f"least {MIN_PAIRS_FOR_TRUST} of your pairs first (or set the trust yourself)."
        )
    lo, hi = rep.interval
    raise PrelabelError(
        f"The agreement of {model} with you, {_pct(rep.agreement)} (95% interval {_pct(lo)}-"
        f"{_pct(hi)}, {rep.n} pairs), cannot be told apart from chance, so its labels would be "
        "noise (set the trust yourself to label anyway)."
    )


def plan_run(
    project: Project,
    model: str,
    prompt: Prompt,
    pricing: Pricing,
    n_pairs: int,
    image_side: int = 768,
    trust: float | None = None,
    chooser: PairChooser | None = None,
    near_share: float = 0.5,
    tower: str | None = None,
    seed: int | None = None,
    resume: bool = True,
    pool: str = "all",
) -> RunPlan:
    """The pairs a run will label and its estimated cost (no network, nothing stored).

    When an earlier run for this model and prompt was stopped (killed, cancelled, capped),
    its unfinished pairs are the plan (``n_pairs`` then applies to the next new run), unless
    ``resume`` is false, which drops them. Otherwise ``n_pairs`` new pairs are picked by
    ``chooser`` (e.g. the live model's choice) if given, else fixed-k with ``near_share``
    embedding-near pairs; pairs already judged by anyone, or planned for this model and
    prompt, are not picked again. ``pool`` "subset": the fixed-k pairs are drawn from the
    folder's diverse subset (`joyq subset`) only.
    """
    if n_pairs <= 0:
        raise PrelabelError(f"The number of pairs must be at least 1, not {n_pairs}.")
    cache.ensure_tables(project)
    source = cache.source_name(model, prompt.hash)
    t, basis, rep = resolve_trust(project, model, prompt.hash, trust)
    pending = cache.pending_plan(project, source)
    resumed = pending if resume else []
    new: list[tuple[str, str, str]] = []
    used_tower = None
    if not resumed:
        avoid = {frozenset((r.a, r.b)) for r in project.comparison_records()} | cache.planned_keys(project, source)
        if seed is None:
            seed = sum(cache.plan_counts(project, source).values())
        if chooser is not None:
            known = {h for h, _ in project.image_paths()}
            for a, b in chooser(n_pairs, set(avoid)):
                key = frozenset((a, b))
                if a != b and a in known and b in known and key not in avoid:
                    avoid.add(key)
                    new.append((a, b, "model"))
            new = new[:n_pairs]
        else:  # every readable image, or a pool such as the diverse subset (issue 21)
            new, used_tower = pick_fixed_k(
                project, n_pairs, avoid, seed=seed, near_share=near_share, tower=tower, pool=pool
            )
        if not new:
            raise PrelabelError(
                f"{project.folder}: no new pair is left to label (every pair of its images is judged or planned)."
            )
    calls = _missing_calls(project, model, prompt.hash, [(p.a, p.b) for p in resumed]) + 2 * len(new)
    return RunPlan(
        source,
        model,
        prompt,
        t,
        basis,
        rep,
        resumed,
        new,
        used_tower,
        calls,
        _estimate(project, model, prompt, pricing, image_side),
        pricing,
        dropped=0 if resume else len(pending),
    )


def execute_run(
    project: Project,
    client: LLMClient,
    plan: RunPlan,
    cap: float | None = None,
    progress: Callable[[AskProgress], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> RunReport:
    """Label the plan's pairs: both orders asked, each pair's label written (split 'train',
    kind 'llm', source 'llm:MODEL:PROMPTHASH', weight = trust) as soon as both arrive."""
    if client.model != plan.model:
        raise PrelabelError(f"The plan was made for the model {plan.model!r}, not {client.model!r}.")
    if plan.dropped:
        cache.discard_pending(project, plan.source)
        plan.dropped = 0
    planned = plan.resumed + cache.add_plan(project, plan.source, plan.new)
    plan.new = []  # stored now: a rerun resumes them
    plan.resumed = planned
    gone = [p for p in planned if project.path_of(p.a) is None or project.path_of(p.b) is None]
    for p in gone:  # an image left the folder: that pair cannot be asked
        cache.finish_planned(project, plan.source, p.seq, "failed", None)
    seq_of = {(p.a, p.b): p.seq for p in planned if p not in gone}
    report = RunReport(plan.source, plan.trust, AskReport(), failed_pairs=len(gone))
    for p in planned:
        report.kinds[p.kind] = report.kinds.get(p.kind, 0) + 1

    def on_pair(a: str, b: str, ab: cache.CachedAnswer, ba: cache.CachedAnswer) -> None:
        seq = seq_of[(a, b)]
        if not (ab.ok and ba.ok):
            cache.finish_planned(project, plan.source, seq, "failed", None)
            report.failed_pairs += 1
            return
        v = combine(ab.better, ba.better)
        cid = project.add_comparison(a, b, v.outcome, split="train", kind="llm", source=plan.source, weight=plan.trust)
        cache.finish_planned(project, plan.source, seq, "labelled", cid)
        report.labelled += 1
        report.ties += v.outcome == 0.5
        report.inconsistent += v.inconsistent

    report.ask = ask_pairs(
        project,
        client,
        plan.prompt.text,
        plan.prompt.hash,
        list(seq_of),
        plan.pricing,
        plan.estimate,
        cap=cap,
        on_pair=on_pair,
        progress=progress,
        cancel=cancel,
    )
    report.pending = len(cache.pending_plan(project, plan.source))
    return report
