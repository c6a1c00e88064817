"""Prompt optimisation: an editor LLM rewrites the labeller's prompt, judged on fresh pairs.

The JoyQuality author's loop, made honest about noise:

1. Only your own clicks count (never LLM labels, never pairs derived from star ratings).
   They are shuffled (seed) and cut into a **final held-out set** and one set per round:
   disjoint sets (``rotate``, the default) or one set reused every round (to measure how
   much reuse overfits).
2. Round 0 measures the starting prompt on round 0's set. Each later round sends the
   editor every earlier prompt with its agreement (and interval and count) and a capped
   sample of the labeller's *reasons* on pairs the current best prompt got wrong, then the
   current best prompt; the editor replies with a new prompt between ``<prompt>`` tags
   (a reply without one is recorded and skipped). The new prompt and the current best are
   both measured on *this round's* pairs; the new one becomes the best when it agrees
   more there. When the paired test (McNemar) has not called a new prompt better for
   ``patience`` rounds in a row, the loop stops early: prompts stopped improving beyond noise.
3. The prompt chosen that way is measured **once** on the final held-out set, which no
   round saw. That figure, not the best round's, is the one reported, so it is not the
   maximum of noisy estimates; the best round minus it is the overfitting gap.

Every call, the labeller's and the editor's, goes through :class:`.client.LLMClient` (keys
stay inside it, replies are scrubbed) and the cap covers both. Every answer and every
prompt is stored as it arrives (``llm_answers``, ``prompt_versions`` with the run's
settings hash), so a killed run resumes without paying twice: the same command replays
the stored editor replies and cached answers, then goes on.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import JoyqError
from ..store import Project
from . import cache
from . import prompts as pv
from .agreement import UserPair
from .client import CallFailed, LLMClient
from .compare import Evaluation, PairedTest, evaluate, paired_test
from .cost import CallEstimate, Pricing, estimate_call, text_tokens
from .engine import AskProgress, ask_pairs
from .prompt import Prompt

#: Wrong-answer reasons shown to the editor per round (each cut to REASON_CHARS).
REASONS_CAP = 20
REASON_CHARS = 200
MAX_PROMPT_CHARS = 8000
EDITOR_OUTPUT_TOKENS = 1000  # the editor's reply budget, for the estimate and the request
_PROMPT_TAG = re.compile(r"<prompt>(.*?)</prompt>", re.DOTALL | re.IGNORECASE)

EDITOR_INSTRUCTIONS = """\
You improve the prompt that a vision model uses to choose the better of two images for one \
person. Below are the prompts tried so far, each with how often the model chose as the \
person did (measured on different pairs each time), then reasons the model gave on pairs \
where it chose differently from the person, then the current best prompt.

Write an improved prompt that makes the model choose as this person does. Keep the answer \
format the current prompt asks for (one JSON object with "better" and "reason"). Reply with \
the complete new prompt between <prompt> and </prompt>.
"""


class OptimiseError(JoyqError):
    """The optimisation cannot start; one sentence saying what is missing."""


def own_pairs(project: Project) -> list[UserPair]:
    """Your own decisive clicks, each unordered pair once (never LLM labels or star-derived pairs)."""
    seen: set[frozenset] = set()
    out = []
    for r in project.comparison_records():
        if r.source is not None or r.outcome == 0.5 or "star" in r.kind or "rating" in r.kind:
            continue
        key = frozenset((r.a, r.b))
        if key not in seen:
            seen.add(key)
            out.append(UserPair(r.a, r.b, r.outcome, r.split))
    return out


@dataclass
class OptimisePlan:
    labeller: str
    editor: str
    base: Prompt
    rounds: int
    per_round: int
    rotate: bool
    seed: int
    patience: int
    round_sets: list[list[UserPair]]  # one per round (the same list every round unless rotate)
    final_set: list[UserPair]  # never shown in a round
    labeller_pricing: Pricing
    editor_pricing: Pricing
    labeller_estimate: CallEstimate
    labeller_calls: int  # at most, before the cache
    editor_calls: int
    editor_call_cost: float  # estimated, one call
    run_key: str
    available: int  # your own pairs

    @property
    def needed(self) -> int:
        return (self.rounds if self.rotate else 1) * self.per_round + len(self.final_set)

    @property
    def cost(self) -> float:
        return self.labeller_calls * self.labeller_estimate.cost + self.editor_calls * self.editor_call_cost


def plan_optimise(
    project: Project,
    labeller: str,
    editor: str,
    base: Prompt,
    labeller_pricing: Pricing,
    editor_pricing: Pricing,
    rounds: int = 4,
    per_round: int = 40,
    held_out: int | None = None,
    rotate: bool = True,
    seed: int = 0,
    patience: int = 2,
    image_side: int = 768,
) -> OptimisePlan:
    """Which pairs each round and the final measurement use, and the most it can cost."""
    if rounds < 2:
        raise OptimiseError(f"The loop needs at least 2 rounds (the start and one edit), not {rounds}.")
    if per_round < 1:
        raise OptimiseError(f"Each round needs at least 1 pair, not {per_round}.")
    held = per_round if held_out is None else held_out
    if held < 1:
        raise OptimiseError(f"The final held-out set needs at least 1 pair, not {held}.")
    cache.ensure_tables(project)
    pairs = own_pairs(project)
    sets = rounds if rotate else 1
    needed = sets * per_round + held
    if len(pairs) < needed:
        raise OptimiseError(
            f"{project.folder}: has {len(pairs)} pairs you labelled with a winner; {sets} round set(s) of "
            f"{per_round} plus {held} held out need {needed}. Label {needed - len(pairs)} more, or lower "
            "--rounds, --pairs-per-round or --held-out."
        )
    order = np.random.default_rng(seed).permutation(len(pairs))
    shuffled = [pairs[i] for i in order]
    final_set = shuffled[:held]
    chunks = [shuffled[held + i * per_round : held + (i + 1) * per_round] for i in range(sets)]
    round_sets = [chunks[r if rotate else 0] for r in range(rounds)]
    est = estimate_call(labeller_pricing, base.text, image_side, cache.measured_tokens(project, labeller, base.hash))
    # round 0: the start; each later round: the new prompt, and the best one on the new set
    per_set = 2 * per_round
    labeller_calls = per_set + (rounds - 1) * (2 * per_set if rotate else per_set) + 2 * held
    editor_in = text_tokens(EDITOR_INSTRUCTIONS) + rounds * (text_tokens(base.text) + 60) + REASONS_CAP * 60
    editor_call_cost = editor_pricing.cost(editor_in, EDITOR_OUTPUT_TOKENS)
    key = "|".join(map(str, (labeller, editor, base.hash, rounds, per_round, held, rotate, seed, patience)))
    run_key = hashlib.blake2b(key.encode(), digest_size=6).hexdigest()
    return OptimisePlan(
        labeller,
        editor,
        base,
        rounds,
        per_round,
        rotate,
        seed,
        patience,
        round_sets,
        final_set,
        labeller_pricing,
        editor_pricing,
        est,
        labeller_calls,
        rounds - 1,
        editor_call_cost,
        run_key,
        len(pairs),
    )


def editor_request(history: list[pv.PromptVersion], reasons: list[str], best: Prompt) -> str:
    """Exactly what the editor is sent (shown before paying with --dry-run)."""
    lines = [EDITOR_INSTRUCTIONS, "## Prompts tried so far"]
    for v in history:
        if not v.usable:
            continue
        score = "not measured"
        if v.n:
            score = (
                f"agreed {100 * (v.agree or 0) / v.n:.0f}% (95% interval {100 * (v.low or 0):.0f}-"
                f"{100 * (v.high or 0):.0f}%, {v.n} pairs)"
            )
        lines += [f"### Prompt {v.id} (round {v.round}): {score}", v.text.strip(), ""]
    lines.append("## Reasons the model gave when it chose differently from the person")
    lines += [f"- {r}" for r in reasons] or ["(none)"]
    lines += ["", "## The current best prompt", "<prompt>", best.text.strip(), "</prompt>"]
    return "\n".join(lines)


def parse_editor_reply(text: str) -> str | None:
    """The new prompt in a reply (exactly one non-empty ``<prompt>`` block), else None."""
    found = _PROMPT_TAG.findall(text or "")
    if len(found) != 1:
        return None
    body = found[0].strip()
    return body if body and len(body) <= MAX_PROMPT_CHARS else None


@dataclass
class RoundResult:
    round: int
    version: int | None  # the prompt measured (None: the editor gave none)
    evaluation: Evaluation | None  # the new prompt on the round's pairs
    incumbent: Evaluation | None  # the best prompt so far on the same pairs
    test: PairedTest | None
    adopted: bool
    note: str = ""


@dataclass
class OptimiseReport:
    plan: OptimisePlan
    rounds: list[RoundResult] = field(default_factory=list)
    chosen: int | None = None  # prompt version id
    final: Evaluation | None = None  # the chosen prompt on the final held-out set (once)
    spent_labeller: float = 0.0
    spent_editor: float = 0.0
    stopped: str = "rounds"  # 'rounds', 'no improvement', 'cap', 'cancelled', 'editor failed'

    @property
    def spent(self) -> float:
        return self.spent_labeller + self.spent_editor

    @property
    def best_round_agreement(self) -> float | None:
        vals = [r.evaluation.agreement.value for r in self.rounds if r.evaluation and r.evaluation.agreement.count]
        return max(vals) if vals else None

    @property
    def overfitting_gap(self) -> float | None:
        best = self.best_round_agreement
        if best is None or self.final is None or not self.final.agreement.count:
            return None
        return best - self.final.agreement.value


def run_optimise(
    project: Project,
    labeller: LLMClient,
    editor: LLMClient,
    plan: OptimisePlan,
    cap: float | None = None,
    progress: Callable[[AskProgress], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    say: Callable[[str], None] | None = None,
) -> OptimiseReport:
    """Run (or resume) the loop of ``plan``; see the module doc."""
    rep = OptimiseReport(plan)
    say = say or (lambda _: None)
    stored = {v.round: v for v in pv.versions(project, plan.run_key) if v.round is not None}

    def left() -> float | None:
        return None if cap is None else max(0.0, cap - rep.spent)

    def measure(prompt: Prompt, pairs: list[UserPair]) -> Evaluation | None:
        est = estimate_call(
            plan.labeller_pricing,
            prompt.text,
            labeller.config.image_side,
            cache.measured_tokens(project, plan.labeller, prompt.hash),
        )
        ask = ask_pairs(
            project,
            labeller,
            prompt.text,
            prompt.hash,
            [(p.a, p.b) for p in pairs],
            plan.labeller_pricing,
            est,
            cap=left(),
            progress=progress,
            cancel=cancel,
        )
        rep.spent_labeller += ask.spent
        if ask.stopped in ("cap", "cancelled"):
            rep.stopped = ask.stopped
            return None
        return evaluate(project, plan.labeller, prompt.hash, pairs, max_wrong=None)

    def score(v: pv.PromptVersion, ev: Evaluation) -> None:
        a = ev.agreement
        if a.count:
            pv.set_score(project, v.id, a.value * a.count, a.count, a.low, a.high, ev.cost)

    # round 0: the starting prompt
    start = stored.get(0) or pv.add_version(
        project, plan.base.text, round=0, model=plan.labeller, run=plan.run_key, note="start"
    )
    ev0 = measure(start.prompt(), plan.round_sets[0])
    if ev0 is None:
        return rep
    score(start, ev0)
    rep.rounds.append(RoundResult(0, start.id, ev0, None, None, True, "start"))
    best, best_ev = start, ev0
    say(f"round 0: prompt {start.id} {_fmt(ev0)}")
    no_gain = 0
    for r in range(1, plan.rounds):
        pairs = plan.round_sets[r]
        v = stored.get(r)
        if v is None:
            history = pv.versions(project, plan.run_key)
            reasons = _reasons(best_ev)
            request = editor_request(history, reasons, best.prompt())
            est_cost = plan.editor_call_cost
            budget = left()
            if budget is not None and est_cost > budget:
                rep.stopped = "cap"
                break
            shown = sum(v.usable for v in history)
            say(f"round {r}: asking the editor ({len(request)} characters, {shown} prompts, {len(reasons)} reasons)")
            try:
                reply, tin, tout = editor.complete(request, cancel=cancel, max_tokens=EDITOR_OUTPUT_TOKENS)
            except CallFailed as e:
                rep.stopped = "editor failed"
                say(f"round {r}: the editor call failed: {e}")
                break
            cost = plan.editor_pricing.cost(
                tin if tin is not None else text_tokens(request),
                tout if tout is not None else text_tokens(reply),
            )
            rep.spent_editor += cost
            text = parse_editor_reply(reply)
            v = pv.add_version(
                project,
                reply[:2000] if text is None else text,
                parent=best.id,
                round=r,
                model=plan.labeller,
                run=plan.run_key,
                cost=cost,
                usable=text is not None,
                note="no usable prompt in the editor's reply" if text is None else None,
            )
        if not v.usable:
            rep.rounds.append(RoundResult(r, None, None, None, None, False, "no usable prompt in the reply"))
            say(f"round {r}: the editor's reply held no prompt; skipped")
            no_gain += 1
            if no_gain >= plan.patience:
                rep.stopped = "no improvement"
                break
            continue
        ev = measure(v.prompt(), pairs)
        inc = measure(best.prompt(), pairs)  # the same pairs: a paired comparison (free when cached)
        if ev is None or inc is None:
            break
        if not v.n:  # its cost: the editor's reply and measuring it
            a = ev.agreement
            pv.set_score(project, v.id, a.value * a.count, a.count, a.low, a.high, v.cost + ev.cost)
        test = paired_test(inc, ev, f"prompt {best.id}", f"prompt {v.id}")
        adopted = ev.agreement.count > 0 and ev.agreement.value > inc.agreement.value
        rep.rounds.append(RoundResult(r, v.id, ev, inc, test, adopted))
        say(
            f"round {r}: prompt {v.id} {_fmt(ev)} vs prompt {best.id} {_fmt(inc)} on the same pairs; "
            f"paired test: {test.verdict} (p = {test.p_value:.3f})" + ("; adopted" if adopted else "")
        )
        if adopted:
            best, best_ev = pv.version(project, v.id) or v, ev
        no_gain = 0 if test.verdict == "second better" else no_gain + 1
        if no_gain >= plan.patience:
            rep.stopped = "no improvement"
            break
    rep.chosen = best.id
    if rep.stopped in ("cap", "cancelled"):
        return rep
    final = measure(best.prompt(), plan.final_set)  # the one and only held-out measurement
    if final is None:
        return rep
    rep.final = final
    a = final.agreement
    pv.set_note(
        project,
        best.id,
        f"chosen by run {plan.run_key}: held-out {100 * a.value:.0f}% (95% interval {100 * a.low:.0f}-"
        f"{100 * a.high:.0f}%, {a.count} pairs)",
    )
    return rep


def _reasons(ev: Evaluation) -> list[str]:
    """A capped, deterministic sample of the labeller's reasons on pairs it got wrong."""
    out: list[str] = []
    for w in ev.wrong:
        for r in w.reasons:
            r = " ".join(r.split())[:REASON_CHARS]
            if r and r not in out:
                out.append(r)
        if len(out) >= REASONS_CAP:
            break
    return out[:REASONS_CAP]


def _fmt(ev: Evaluation) -> str:
    a = ev.agreement
    if not a.count:
        return "agreement n/a (no decisive pair answered)"
    return f"agreement {100 * a.value:.0f}% (95% interval {100 * a.low:.0f}-{100 * a.high:.0f}%, {a.count} pairs)"
