"""Ask the LLM about pairs, in both orders, concurrently, paying for nothing twice.

:func:`ask_pairs` is the loop shared by the agreement check and the labelling run:

1. every (pair, order) whose answer is already cached is taken from the cache (free);
2. the missing calls go to ``config.concurrency`` worker threads; a call is started only
   while the money spent plus the estimates of the calls in flight plus its own estimate
   stays within the cap, and only while the cancel check is false;
3. each reply is stored the moment it arrives (one transaction on the calling thread,
   which also writes the pair's label once both orders are in), so stopping at any point,
   even by killing the process, loses at most the calls in flight.

Calls that fail after their retries are not stored (nothing was paid) and are asked again
by the next run. A refused key or unknown model stops everything at once, and so do
``max_consecutive_failures`` failures in a row (the endpoint is down).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import Cancelled, JoyqError
from ..redact import scrub
from ..store import Project
from . import cache
from .client import CallFailed, CallOutcome, LLMClient, LLMError
from .cost import CallEstimate, Pricing

#: pair_done(a, b, answer with a first, answer with b first), called inside the transaction
#: that stores the second of the two answers (or at the start, if both were cached).
PairDone = Callable[[str, str, cache.CachedAnswer, cache.CachedAnswer], None]


@dataclass
class AskProgress:
    calls_done: int  # answered (paid now, or from the cache) or failed
    calls_total: int
    pairs_done: int  # both orders answered
    pairs_total: int
    spent: float  # USD in this run
    failed: int
    retries: int
    elapsed: float
    calls_sent: int = 0  # calls_done less the cached ones: what this run asked

    @property
    def rate(self) -> float:
        """Calls asked per second in this run (cached answers excluded, so ETA holds)."""
        return self.calls_sent / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class AskReport:
    pairs: int = 0
    pairs_done: int = 0  # both orders answered (ok or malformed)
    calls_needed: int = 0  # not in the cache at the start
    calls_cached: int = 0
    calls_paid: int = 0  # replies received in this run
    malformed: int = 0  # ... of which malformed
    failed: int = 0  # calls that failed after their retries (not paid)
    retries: int = 0
    spent: float = 0.0  # USD in this run
    stopped: str | None = None  # None (finished), 'cap', 'cancelled' or 'failures'
    missing_images: int = 0  # pairs skipped: an image is gone or unreadable
    errors: list[str] = field(default_factory=list)  # a few failure sentences


def _paths(project: Project, pairs: Sequence[tuple[str, str]]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for a, b in pairs:
        for h in (a, b):
            if h not in out:
                p = project.path_of(h)
                if p is not None:
                    out[h] = p
    return out


def ask_pairs(
    project: Project,
    client: LLMClient,
    prompt_text: str,
    prompt_hash: str,
    pairs: Sequence[tuple[str, str]],
    pricing: Pricing,
    estimate: CallEstimate,
    cap: float | None = None,
    on_pair: PairDone | None = None,
    progress: Callable[[AskProgress], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    max_consecutive_failures: int | None = None,
) -> AskReport:
    """Get both orders of every pair answered (see the module doc); returns what happened.

    Raises LLMError when the endpoint refuses the key or the model (after storing every
    reply that arrived), and re-raises KeyboardInterrupt after storing the calls in flight.
    """
    cache.ensure_tables(project)
    cache.remember_prompt(project, prompt_hash, prompt_text)
    model = client.model
    rep = AskReport(pairs=len(pairs))
    t0 = time.monotonic()
    paths = _paths(project, pairs)
    wanted = [(a, b) for a, b in pairs if a in paths and b in paths]
    rep.missing_images = len(pairs) - len(wanted)
    keys = [k for a, b in wanted for k in ((a, b), (b, a))]
    have = cache.answers_for(project, model, prompt_hash, keys)
    todo = deque(k for k in dict.fromkeys(keys) if k not in have)
    rep.calls_needed, rep.calls_cached = len(todo), len(set(keys)) - len(todo)
    partner: dict[tuple[str, str], tuple[str, str]] = {}
    for a, b in wanted:
        partner[(a, b)], partner[(b, a)] = (a, b), (a, b)  # -> the pair as listed
    done_pairs: set[tuple[str, str]] = set()

    def pair_check(pair: tuple[str, str]) -> None:
        a, b = pair
        if pair in done_pairs:
            return
        ab, ba = have.get((a, b)), have.get((b, a))
        if ab and ba:
            done_pairs.add(pair)
            rep.pairs_done += 1
            if on_pair:
                on_pair(a, b, ab, ba)

    unique_pairs = list(dict.fromkeys(wanted))
    calls_total = len(set(keys))
    with project.transaction():
        for pair in unique_pairs:
            pair_check(pair)

    stop_flag = {"cancel": False}

    def stopped() -> bool:
        return stop_flag["cancel"] or bool(cancel and cancel())

    def report_progress() -> None:
        if progress:
            progress(
                AskProgress(
                    rep.calls_cached + rep.calls_paid + rep.failed,
                    calls_total,
                    rep.pairs_done,
                    len(unique_pairs),
                    rep.spent,
                    rep.failed,
                    rep.retries,
                    time.monotonic() - t0,
                    rep.calls_paid + rep.failed,
                )
            )

    limit = max_consecutive_failures or max(10, 2 * client.config.concurrency)
    consecutive = 0
    fatal: LLMError | None = None
    interrupted = False
    inflight: dict[Future, tuple[tuple[str, str], float]] = {}
    committed = 0.0
    report_progress()
    pool = ThreadPoolExecutor(max_workers=client.config.concurrency, thread_name_prefix="joyq-llm")
    try:
        while todo or inflight:
            while todo and len(inflight) < client.config.concurrency and rep.stopped is None and fatal is None:
                if stopped():
                    rep.stopped = "cancelled"
                    break
                if cap is not None and rep.spent + committed + estimate.cost > cap + 1e-12:
                    if not inflight:  # else wait: replies may cost less than their estimates
                        rep.stopped = "cap"
                    break
                key = todo.popleft()
                fut = pool.submit(client.judge, paths[key[0]], paths[key[1]], prompt_text, stopped)
                inflight[fut] = (key, estimate.cost)
                committed += estimate.cost
            if not inflight:
                break
            try:
                finished, _ = wait(list(inflight), timeout=0.1, return_when=FIRST_COMPLETED)
            except KeyboardInterrupt:
                stop_flag["cancel"], interrupted = True, True
                rep.stopped = "cancelled"
                continue
            for fut in finished:
                key, est = inflight.pop(fut)
                committed -= est
                try:
                    outcome: CallOutcome = fut.result()
                except Cancelled:
                    rep.stopped = rep.stopped or "cancelled"
                    continue
                except CallFailed as e:
                    rep.failed += 1
                    _note(rep, str(e))
                    if e.fatal:
                        fatal = fatal or e
                        continue
                    consecutive += 1
                    if consecutive >= limit and rep.stopped is None:
                        rep.stopped = "failures"
                    continue
                except JoyqError as e:  # an image that cannot be decoded: that call only
                    rep.failed += 1
                    _note(rep, str(e))
                    continue
                consecutive = 0
                rep.retries += len(outcome.retried)
                rep.calls_paid += 1
                inp = outcome.input_tokens if outcome.input_tokens is not None else estimate.input_tokens
                out = outcome.output_tokens if outcome.output_tokens is not None else estimate.output_tokens
                cost = pricing.cost(inp, out)
                rep.spent += cost
                if outcome.answer is None:
                    rep.malformed += 1
                with project.transaction():
                    have[key] = cache.put_answer(
                        project,
                        model,
                        prompt_hash,
                        key[0],
                        key[1],
                        status="ok" if outcome.answer else "malformed",
                        better=outcome.answer.better if outcome.answer else None,
                        reason=outcome.answer.reason if outcome.answer else outcome.error,
                        raw=outcome.raw,
                        input_tokens=outcome.input_tokens,
                        output_tokens=outcome.output_tokens,
                        cost=cost,
                    )
                    pair_check(partner[key])
            if fatal is not None or rep.stopped in ("cancelled", "failures"):
                todo.clear()
            report_progress()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    report_progress()
    if fatal is not None:
        raise fatal
    if interrupted:
        raise KeyboardInterrupt
    return rep


def _note(rep: AskReport, message: str) -> None:
    message = scrub(message)
    if len(rep.errors) < 5 and message not in rep.errors:
        rep.errors.append(message)
