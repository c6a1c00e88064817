"""The compare session: one project, one pair source, the click loop (no Qt).

    >>> cs = CompareSession(project, base_head=(w, b), tower=tower_key, background=True)
    >>> pair = cs.next_pair()            # cheap: a prepared pair, else the source's choice
    >>> cs.record(pair, 1.0)             # stored (committed) first; learning runs behind
    >>> cs.undo(); cs.stats().lines()

The click path. ``record`` commits the judgement with ``Project.add_comparison`` and queues
it; nothing else. ``next_pair`` then answers from a pair prepared while the user was looking
(``prefetch`` of them), else asks the source, which answers from what it already knows. The
learning (``source.record`` + ``source.update``) runs afterwards: on a worker thread
(``background=True``, the app and ``joyq bench click``) or inline (``background=False``,
the synchronous baseline and tests). After learning, the worker prepares the next pairs.

Rules the session keeps whatever the source: the pair just answered is never shown next;
clicks are learnt one by one in the order they were made, each exactly once (a queue, never
coalesced away); each click is predicted by the model *before* it learns from it (the
predict-then-update figure); ``undo`` takes back the newest click or skip whether or not
its update has run (a queued click simply leaves the queue), and after reopening the newest
stored click of the user; a click survives the app being killed while its update is pending
(it was committed first, and reopening replays it). No image appears more than twice in any
:data:`SPACING_WINDOW` consecutive pairs (folders under :data:`SPACING_MIN_IMAGES` excepted):
a pair that would break it is redrawn (up to :data:`SPACING_TRIES` times).

Opening. With ``background=True`` the source is built on the worker too (the live head of a
100k-image folder takes seconds): the caller's thread reads what it needs from the database,
and until the source is in place ``next_pair`` shows random pairs (kind :data:`BUSY_KIND`)
and clicks wait in the queue, so the window answers at once (``building`` says so; ``wait``
waits for it). Later switches (``switch_source``, ``rebuild``) run on the caller's thread.

Threads: only the caller's thread touches the database; the worker touches the source only,
under ``_source_lock``; the queue and the prepared pairs are guarded by ``_state``.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from ..errors import NoPairAvailable
from ..metrics import Agreement, agreement, paired_comparison, sigmoid
from ..prelabel.labels import soft_target, training_records
from ..store import Project
from ..subset import subset_hashes
from .source import HELDOUT, Pair, PairSource
from .sources import (
    DEFAULT_SOURCE,
    FALLBACK_SOURCE,
    FORGET_META_KEY,
    SOURCE_META_KEY,
    SOURCES,
    SourceContext,
    SourceUnavailable,
    Statistics,
)
from .stats import CompareStats, Schedule, adoption_warning, retrain_hint, self_agreement_figure

SPACING_WINDOW = 20
SPACING_MAX = 2
SPACING_MIN_IMAGES = 40
SPACING_TRIES = 8
PREFETCH = 3
UNDO_LOOKBACK = 100
"""After reopening, undo looks this far back (newest first) for the user's last click."""
BUSY_KIND = "random"
"""Kind of the pair shown when nothing is prepared and the source is busy learning."""


@dataclass
class Click:
    """One judgement (or skip: ``outcome`` None) of this session."""

    pair: Pair
    outcome: float | None
    comparison_id: int | None
    booked: bool = False  # the source has learnt it
    generation: int = -1  # the source (see ``switch_source``) that learnt it
    predicted: float = math.nan  # s_left - s_right before the source learnt it


@dataclass(frozen=True)
class _Figures:
    """The source's figures, taken under its lock after an update (read without waiting)."""

    heldout_live: Agreement | None
    heldout_base: Agreement
    self_agreement: Agreement
    schedule: Schedule


_NAN = Agreement(math.nan, 0, math.nan, math.nan)


def _key(pair: Pair) -> tuple[str, str]:
    return (pair.left, pair.right) if pair.left < pair.right else (pair.right, pair.left)


class CompareSession:
    """The compare loop over one open :class:`Project` (module docstring)."""

    def __init__(
        self,
        project: Project,
        *,
        scores: dict[str, float] | None = None,
        base_head: tuple[np.ndarray, float] | None = None,
        tower: str | None = None,
        embeddings: tuple[list[str], np.ndarray] | None = None,
        source: str | None = None,
        background: bool = False,
        prefetch: int | None = None,
        spacing: bool = True,
        base_name: str | None = None,
        on_updated: Callable[[], None] | None = None,
    ) -> None:
        self.project = project
        self.base_head = base_head
        self.tower = tower
        self.hashes = [h for h, _ in project.image_paths()]
        scores = scores or {}
        self.scores = np.array([scores.get(h, math.nan) for h in self.hashes], dtype=np.float64)
        self._embeddings = embeddings
        self.prefetch = int(prefetch if prefetch is not None else (PREFETCH if background else 0))
        self.spacing = bool(spacing)
        self.base_name = base_name or ("adopted model" if project.active_version else "base model")
        self.on_updated = on_updated
        self.note = ""
        self.source: PairSource | None = None
        self.clicks: list[Click] = []  # this session's clicks and skips, the undo stack
        self.clicks_this_session = 0
        self.redraws = 0  # pairs drawn again to keep the spacing rule
        self.busy_pairs = 0  # random pairs shown because the source was busy learning
        self._rng = np.random.default_rng(project.comparison_count())
        self.update_seconds: list[float] = []  # the time of each click's update
        self._queue: deque[Click] = deque()
        self._ready: deque[Pair] = deque()
        self._recent: deque[Pair] = deque(maxlen=SPACING_WINDOW - 1)
        self._last_answered: tuple[str, str] | None = None
        self._state = threading.Lock()
        self._source_lock = threading.RLock()
        self._figures = _Figures(None, _NAN, _NAN, Schedule(steady=0.0, early=0.0))
        self._wake = threading.Condition(self._state)
        self._stop = False
        self._busy = False
        self._worker: threading.Thread | None = None
        self._generation = 0
        self._built = threading.Event()  # no source is being built (set: none in flight)
        self._built.set()
        self._deferred: list[tuple[list[str], np.ndarray]] = []  # images that came while building
        self._build_job: tuple[str, SourceContext, list[tuple[Pair, float]]] | None = None
        self.requested = ""  # the source asked for (``source_name`` may be the fallback)
        if background:
            self._worker = threading.Thread(target=self._run, name="compare-update", daemon=True)
            self._worker.start()
        self.switch_source(source or project.get_meta(SOURCE_META_KEY) or DEFAULT_SOURCE, save=False)

    # -- the source ----------------------------------------------------------------------
    def _context(self) -> SourceContext:
        emb_hashes: list[str] = []
        emb: np.ndarray | None = None
        if self._embeddings is not None:
            emb_hashes, emb = list(self._embeddings[0]), self._embeddings[1]
        elif self.tower:
            emb_hashes, emb = self.project.embeddings(self.tower, self.hashes)
            if not emb_hashes:
                emb = None
        return SourceContext(
            self.hashes,
            self.scores,
            seed=self.project.comparison_count(),
            embedding_hashes=emb_hashes,
            embeddings=emb,
            base_head=self.base_head,
            forget_half_life=self.forget_half_life,
            subset=subset_hashes(self.project),
        )

    @property
    def forget_half_life(self) -> float | None:
        """The half-life (clicks) with which the live model forgets older clicks, or None."""
        value = self.project.get_meta(FORGET_META_KEY)
        try:
            half_life = float(value) if value else None
        except ValueError:
            return None
        return half_life if half_life is not None and half_life > 0 else None

    def set_forgetting(self, half_life: float | None) -> None:
        """Forget older clicks (a taste that drifts) with ``half_life`` clicks, or not (None);
        saved for this folder; the source is rebuilt with every stored click replayed."""
        self.project.set_meta(FORGET_META_KEY, "" if half_life is None else str(float(half_life)))
        self.switch_source(self.requested or DEFAULT_SOURCE, save=False)

    def judgements(self) -> list[tuple[Pair, float]]:
        """Stored comparisons the source learns from, oldest first (the user's and the
        included LLM labels as soft targets); held-out ones (the 'test' split) as "heldout"."""
        out = []
        for r in training_records(self.project, split=None):
            kind = HELDOUT if r.split == "test" else r.kind
            out.append((Pair(r.a, r.b, kind), soft_target(r.outcome, r.weight)))
        return out

    def switch_source(self, name: str, save: bool = True) -> None:
        """Use the pair source called ``name`` (:data:`SOURCES`) from now on, with every stored
        comparison replayed into it; ``save``: remember the choice for this project. When it
        cannot be built, the fallback is used and :attr:`note` says why. In a background
        session it is built on the worker (module docstring: Opening)."""
        if name not in SOURCES:
            raise SourceUnavailable(f"Unknown pair source {name!r}; known: {', '.join(sorted(SOURCES))}.")
        self.wait()
        self.requested = name
        job = (name, self._context(), self.judgements())  # the database, on this thread
        if self._worker is None or not self._worker.is_alive():
            self._install(*job)
        else:
            with self._state:
                self._built.clear()
                self._build_job = job
                if self.source is None:
                    self.note = f"Getting the {name} pair source ready; the first pairs are random."
                self._wake.notify()
        if save:
            self.project.set_meta(SOURCE_META_KEY, name)

    def _install(self, name: str, ctx: SourceContext, judgements: list[tuple[Pair, float]]) -> None:
        """Build the source ``name`` (the fallback when it cannot be), replay ``judgements``
        into it and make it the one in use. No database access: the worker may run it."""
        note = ""
        try:
            source = SOURCES[name](ctx)
        except SourceUnavailable as e:
            if name == FALLBACK_SOURCE:
                raise
            note, source = str(e), SOURCES[FALLBACK_SOURCE](ctx)
        note = note or getattr(source, "note", "")
        source.replay(judgements)
        with self._source_lock:
            self.source, self.note, self.requested = source, note, name
            self._generation += 1
            with self._state:
                self._ready.clear()
            self._refresh_figures()
            for hs, matrix in self._deferred:  # images that were embedded while it was built
                add = getattr(source, "add_images", None)
                if add is not None:
                    add(hs, matrix)
            self._deferred.clear()
            self._built.set()  # under the lock: ``add_images`` checks it under the lock too

    @property
    def generation(self) -> int:
        """Counts the sources put in place: pairs fetched ahead under an older one are stale."""
        return self._generation

    @property
    def building(self) -> bool:
        """The source is still being built on the worker (pairs meanwhile are random)."""
        return not self._built.is_set()

    def rebuild(
        self,
        scores: dict[str, float] | None = None,
        base_head: tuple[np.ndarray, float] | None = None,
        tower: str | None = None,
    ) -> None:
        """The model in use or the image list changed: build the source asked for again on
        the project's images (the undo stack and this session's figures are kept)."""
        self.wait()
        self.hashes = [h for h, _ in self.project.image_paths()]
        scores = scores or {}
        self.scores = np.array([scores.get(h, math.nan) for h in self.hashes], dtype=np.float64)
        self.base_head, self.tower = base_head, tower
        self.base_name = "adopted model" if self.project.active_version else "base model"
        self.switch_source(self.requested or DEFAULT_SOURCE, save=False)

    def add_images(self, hashes: list[str]) -> int:
        """Newly embedded images join a live source's pool (others are rebuilt by the
        caller); returns how many joined."""
        if not self.tower or not hashes:
            return 0
        with self._source_lock:  # the worker takes it while building: the check is safe
            if self.building:
                hs, matrix = self.project.embeddings(self.tower, hashes)
                if hs:
                    self._deferred.append((hs, matrix))
                return len(hs)
        add = getattr(self.source, "add_images", None)
        if add is None:
            return 0
        hs, matrix = self.project.embeddings(self.tower, hashes)
        if not hs:
            return 0
        with self._source_lock:
            before = len(getattr(self.source, "hashes", ()))
            add(hs, matrix)
            return len(getattr(self.source, "hashes", ())) - before

    @property
    def source_name(self) -> str:
        return self.source.name if self.source is not None else ""

    # -- pairs -----------------------------------------------------------------------------
    def _spacing_ok(self, pair: Pair, ahead: Iterable[Pair] = ()) -> bool:
        if not self.spacing or len(self.hashes) < SPACING_MIN_IMAGES:
            return True
        window = [*self._recent, *ahead][-(SPACING_WINDOW - 1) :]
        for h in (pair.left, pair.right):
            if sum((p.left == h) + (p.right == h) for p in window) >= SPACING_MAX:
                return False
        return True

    def _draw(self, ahead: Iterable[Pair] = ()) -> Pair:
        """The source's next pair that keeps the rules, else (after :data:`SPACING_TRIES`
        tries) a random pair that does; call with ``_source_lock`` held. Raises NoPairAvailable."""
        assert self.source is not None
        ahead = list(ahead)
        for _ in range(SPACING_TRIES):
            pair = self.source.next_pair()
            if self._spacing_ok(pair, ahead) and _key(pair) != self._last_answered:
                return pair
            self.redraws += 1
        return self._random_pair(ahead)

    def next_pair(self, busy_random: bool = True) -> Pair | None:
        """The pair to show now (None: nothing can be shown). Never waits for learning: a
        prepared pair, else the source's choice when it is free, else (it is learning) a
        uniformly random pair of kind :data:`BUSY_KIND` (``busy_random`` False: None, for a
        caller that only fetches ahead and can ask again after the update)."""
        with self._state:
            while self._ready:
                ready = self._ready.popleft()
                if _key(ready) != self._last_answered and self._spacing_ok(ready):
                    self._recent.append(ready)
                    return ready
        if self.source is None and not self.building:
            return None  # no source could be built (``note`` says why)
        pair: Pair | None = None
        # the source's choice when it is free (while a new one is built, the one in use answers)
        if self.source is not None and self._source_lock.acquire(blocking=self._worker is None):
            try:
                pair = self._draw()
            except NoPairAvailable:
                if not self.building:
                    return None
            finally:
                self._source_lock.release()
        if pair is None:  # it is learning, or being built: a random pair meanwhile
            if not busy_random:
                return None
            pair = self._random_pair()
            self.busy_pairs += 1
        with self._state:
            self._recent.append(pair)
        return pair

    def _random_pair(self, ahead: Iterable[Pair] = ()) -> Pair:
        """A uniformly random pair of the source's images that keeps the rules (the source is
        busy learning; it learns this pair like any other when its click comes)."""
        pool = list(getattr(self.source, "hashes", self.hashes))
        if len(pool) < 2:
            raise NoPairAvailable("Fewer than 2 images can be shown, so there is no pair to compare.")
        rng = self._rng
        ahead = list(ahead)
        for _ in range(64):
            a, b = rng.choice(len(pool), 2, replace=False)
            pair = Pair(pool[int(a)], pool[int(b)], BUSY_KIND)
            if _key(pair) != self._last_answered and self._spacing_ok(pair, ahead):
                return pair
        return pair

    def _prepare(self) -> None:
        """Fill the prepared pairs (``_source_lock`` held)."""
        while True:
            with self._state:
                if len(self._ready) >= self.prefetch or self._queue or self._stop:
                    return
                ahead = list(self._ready)
            try:
                pair = self._draw(ahead)
            except NoPairAvailable:
                return
            with self._state:
                self._ready.append(pair)

    # -- clicks ----------------------------------------------------------------------------
    def record(self, pair: Pair, outcome: float) -> int:
        """Store the judgement (committed before anything else), then queue its learning.
        outcome: 1 left won, 0 right won, 0.5 tie. Held-out pairs go to the 'test' split."""
        split = "test" if pair.kind == HELDOUT else "train"
        cid = self.project.add_comparison(pair.left, pair.right, outcome, split=split, kind=pair.kind)
        self._push(Click(pair, float(outcome), cid))
        self.clicks_this_session += 1
        return cid

    def skip(self, pair: Pair) -> None:
        self._push(Click(pair, None, None))

    def _push(self, click: Click) -> None:
        with self._state:
            self.clicks.append(click)
            self._queue.append(click)
            self._last_answered = _key(click.pair)
            self._wake.notify()
        if self._worker is None:
            self.process()

    def process(self, max_clicks: int | None = None) -> int:
        """Learn queued clicks in order, one at a time (the source's lock is released between
        them, so ``next_pair`` can get in); returns how many were learnt. Prepares the next
        pairs when the queue is empty. The synchronous path; the worker runs the same."""
        done = 0
        while max_clicks is None or done < max_clicks:
            with self._source_lock:
                with self._state:
                    if not self._queue:
                        break
                    click = self._queue.popleft()
                    self._busy = True
                try:
                    self._book(click)
                finally:
                    with self._state:
                        self._busy = False
                done += 1
                with self._state:
                    last = not self._queue
                if last:
                    self._refresh_figures()
        with self._source_lock:
            self._prepare()
        return done

    def _book(self, click: Click) -> None:
        source = self.source
        assert source is not None
        t0 = time.perf_counter()
        if click.outcome is None:
            source.skip(click.pair)
        else:
            if isinstance(source, Statistics):
                click.predicted = source.predict(click.pair)
            source.record(click.pair, click.outcome)
            source.update()
        click.booked, click.generation = True, self._generation
        self.update_seconds.append(time.perf_counter() - t0)

    def _build(self, job: tuple[str, SourceContext, list[tuple[Pair, float]]]) -> None:
        """Build and install a source on the worker; clicks made meanwhile stay queued for it."""
        try:
            self._install(*job)
        except SourceUnavailable as e:  # e.g. fewer than 2 images: nothing to compare
            self.note = str(e)
        except Exception as e:  # noqa: BLE001 - a failed build must not stop the worker (or hang ``wait``)
            self.note = f"The {job[0]} pair source could not be built ({type(e).__name__}: {e}); the one before stays."
        finally:
            self._built.set()
        if self.on_updated is not None:
            self.on_updated()

    def _run(self) -> None:
        while True:
            with self._state:
                while (
                    not self._stop
                    and self._build_job is None
                    and (self.source is None or (not self._queue and len(self._ready) >= self.prefetch))
                ):
                    self._wake.wait()
                if self._stop:
                    return
                job, self._build_job = self._build_job, None
            if job is not None:
                self._build(job)
                continue
            try:
                learnt = self.process()
            except Exception as e:  # noqa: BLE001 - the worker must outlive one bad update (or builds hang)
                self.note = (
                    f"Learning a click failed ({type(e).__name__}: {e}); it is stored and is learnt on reopening."
                )
                learnt = 1
            if learnt and self.on_updated is not None:
                self.on_updated()
            with self._state:  # nothing more to prepare (e.g. no pair): sleep until a click
                if not self._queue and not self._stop:
                    self._wake.wait(timeout=0.5)

    def pending(self) -> int:
        """Clicks stored but not learnt yet."""
        with self._state:
            return len(self._queue) + (1 if self._busy else 0)

    def wait(self) -> None:
        """Learn every queued click now (on this thread, or wait for the worker); first wait
        for the source being built, if it is."""
        self._built.wait()
        if self.source is None:
            return
        self.process()

    def close(self) -> None:
        """Stop the worker (queued clicks are already stored; reopening replays them)."""
        with self._state:
            self._stop = True
            self._wake.notify_all()
        if self._worker is not None:
            self._worker.join()
            self._worker = None
        self._built.set()  # a build that never started: nothing to wait for any more

    # -- undo ------------------------------------------------------------------------------
    def can_undo(self) -> bool:
        return bool(self.clicks) or self._newest_user_comparison() is not None

    def _newest_user_comparison(self):
        """The newest stored click of the user (a pairs file's rows are not undone one by one)."""
        rows = self.project.recent_comparisons(limit=UNDO_LOOKBACK, user_only=True)
        return next((r for r in rows if r.kind != "import"), None)

    def undo(self) -> Click | None:
        """Take back the newest click or skip of this session (queued or learnt), else, after
        reopening, the newest stored click of the user. Returns it, so the view can show
        that pair again."""
        with self._state:
            if self.clicks:
                click = self.clicks.pop()
                queued = bool(self._queue) and self._queue[-1] is click
                if queued:
                    self._queue.pop()
                self._ready.clear()
                self._last_answered = None
                if self._recent and _key(self._recent[-1]) == _key(click.pair):
                    self._recent.pop()
            else:
                click = None
        if click is None:
            return self._undo_stored()
        if click.comparison_id is not None:
            self.project.delete_comparison(click.comparison_id)
            self.clicks_this_session = max(0, self.clicks_this_session - 1)
        if not queued:
            self._built.wait()  # a source being built replays the stored clicks: let it finish
            with self._source_lock:  # the worker may be learning it: wait, then take it back
                assert self.source is not None
                if click.generation == self._generation:
                    self.source.undo()
                else:  # learnt by a source since rebuilt: replay the stored clicks without it
                    self.source.replay(self.judgements())
                self._refresh_figures()
        return click

    def _undo_stored(self) -> Click | None:
        self._built.wait()
        row = self._newest_user_comparison()
        if row is None:
            return None
        self.project.delete_comparison(row.id)
        kind = HELDOUT if row.split == "test" else row.kind
        click = Click(Pair(row.a, row.b, kind), float(row.outcome), row.id, booked=True)
        with self._source_lock:
            assert self.source is not None
            self.source.replay(self.judgements())
            with self._state:
                self._ready.clear()
            self._refresh_figures()
        return click

    # -- statistics ------------------------------------------------------------------------
    def _refresh_figures(self) -> None:
        """Take the source's figures (``_source_lock`` held)."""
        source = self.source
        if not isinstance(source, Statistics):
            self._figures = _Figures(None, _NAN, _NAN, Schedule(steady=0.0, early=0.0))
            return
        live_d, base_d, y = source.heldout()
        self._figures = _Figures(
            None if live_d is None else agreement(live_d, y),
            agreement(base_d, y),
            self_agreement_figure(*source.self_agreement()),
            source.schedule(),
        )

    def heldout_change(self) -> dict | None:
        """The live model against the model it started from on the same held-out pairs
        (:func:`joyq_studio.metrics.paired_comparison`); None without a live model."""
        source = self.source
        if not isinstance(source, Statistics):
            return None
        with self._source_lock:
            live_d, base_d, y = source.heldout()
        if live_d is None:
            return None
        return paired_comparison(sigmoid(base_d), sigmoid(live_d), y)

    def adoption_warning(self) -> str:
        """What to say before "Use the live model" adopts a result that is too few to tell or
        worse than the model in use ('' when neither)."""
        change = self.heldout_change()
        n = 0 if change is None else int(change["n_decisive"])
        return adoption_warning(None if change is None else str(change["verdict"]), n, "the live model")

    def predicted(self) -> Agreement:
        """Predict-then-update agreement over this session's learnt clicks."""
        with self._state:
            rows = [
                (c.predicted, c.outcome)
                for c in self.clicks
                if c.booked and c.outcome is not None and math.isfinite(c.predicted)
            ]
        arr = np.array(rows, dtype=np.float64).reshape(-1, 2)
        return agreement(arr[:, 0], arr[:, 1])

    def stats(self) -> CompareStats:
        """The figures as of the last learnt click (never waits for learning)."""
        total = self.project.comparison_count()
        versions = self.project.versions()
        trained_at = max((v.get("created", 0.0) for v in versions), default=None)
        since = total if trained_at is None else self.project.comparison_count(since=trained_at)
        f = self._figures
        return CompareStats(
            source=self.source_name,
            note=self.note,
            total=total,
            since_training=since,
            trained=trained_at is not None,
            clicks_this_session=self.clicks_this_session,
            pending=self.pending(),
            predicted=self.predicted(),
            heldout_live=f.heldout_live,
            heldout_base=f.heldout_base,
            base_name=self.base_name,
            self_agreement=f.self_agreement,
            schedule=f.schedule,
            retrain_hint=retrain_hint(
                total, since, trained_at is not None, f.heldout_live, f.heldout_base, self.base_name
            ),
        )
