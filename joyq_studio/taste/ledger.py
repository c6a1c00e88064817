"""The ledger of pairs: shown, pending, recorded and skipped, and the rules they impose.

One ledger serves both pair sources, the live Bayesian head (``TasteModel``) and the
OpenSkill selector (``pairing.PairSelector``), so both keep the same rules:

* never a self-pair, never a pair by accident again: a pair is shown again only as a
  ``repeat``, or in tiny folders once a third of all pairs have been used (``pair_limit``);
* a pair that was issued and not recorded (pending) is not issued again; a skipped pair
  never again (it can still be recorded);
* an image shown ``max_shows`` times rests while others are eligible (``eligible``);
* no image more than twice in any 20 consecutive pairs (``tired``, ``taste.pacing``);
* held-out pairs on the front-loaded schedule (``heldout_due``, ``taste.pacing``);
* repeats of an earlier, not yet repeated, fitted pair (``pick_repeat``).

Comparisons are kept as ``(i, j, outcome, kind, weight)``; pair keys are ``min * n + max``.
Nothing here imports Qt, the CLI or the benchmarks.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

import numpy as np

from .pacing import SMALL_FOLDER, RecentShows, heldout_due

Comparison = tuple[int, int, float, str, float]

REPEAT_START = 200
"""No repeats during the first min(REPEAT_START, n_available / 2) recorded comparisons: at
tiny budgets every comparison that shows two new images is worth more."""


class PairLedger:
    """The pairs of one session over ``n`` images (indices 0..n-1).

    ``dense_max``: up to this many images, pair counts also live in an (n, n) matrix
    (``counts``: vectorised checks and exhaustive fallbacks)."""

    def __init__(self, n: int, dense_max: int) -> None:
        self.n = int(n)
        self.dense_max = int(dense_max)
        self.recent = RecentShows()
        self.skipped: set[int] = set()
        self.reset()

    def reset(self) -> None:
        """Forget every comparison and pending pair (skips stay: the user chose them)."""
        self.shows = np.zeros(self.n, dtype=np.int64)
        self.history: list[Comparison] = []
        self.fresh: list[bool] = []  # both images unseen when this comparison was recorded
        self.pair_count: dict[int, int] = {}
        self.pending: dict[int, str] = {}
        self.first_idx: dict[int, int] = {}  # key -> index of its first non-repeat comparison
        self.repeated: set[int] = set()
        self.kind_count: Counter[str] = Counter()
        self.counts: np.ndarray | None = (
            np.zeros((self.n, self.n), dtype=np.int32) if self.n <= self.dense_max else None
        )
        self.recent.clear()

    # ------------------------------------------------------------------ bookkeeping

    def key(self, i: int, j: int) -> int:
        return int(i) * self.n + int(j) if i < j else int(j) * self.n + int(i)

    def normalise(self, i, j, outcome, kind=None, weight=1.0) -> Comparison:
        """A checked comparison; ``kind`` defaults to the kind the pair was issued under."""
        i, j, o, wt = int(i), int(j), float(outcome), float(weight)
        if not (0 <= i < self.n and 0 <= j < self.n) or i == j:
            raise ValueError(f"bad pair ({i}, {j}) for {self.n} images")
        if not 0.0 <= o <= 1.0:
            raise ValueError(f"outcome must be 1.0 (i better), 0.0 (j better) or 0.5 (tie), not {outcome}")
        if not (math.isfinite(wt) and wt >= 0):
            raise ValueError(f"weight must be a finite number >= 0, not {weight}")
        if kind is None:
            kind = self.pending.get(self.key(i, j), "other")
        return i, j, o, str(kind), wt

    def issue(self, i: int, j: int, kind: str, spacing: bool = True) -> None:
        """The pair is shown: pending until recorded or skipped; counts towards the spacing
        rule when ``spacing``."""
        if spacing:
            self.recent.add(i, j)
        self.pending[self.key(i, j)] = kind

    def book(self, c: Comparison) -> None:
        """Book a recorded comparison (from ``normalise``)."""
        i, j, _, kind, _ = c
        key = self.key(i, j)
        self.pending.pop(key, None)
        self.fresh.append(bool(self.shows[i] == 0 and self.shows[j] == 0))
        self.shows[i] += 1
        self.shows[j] += 1
        self.pair_count[key] = self.pair_count.get(key, 0) + 1
        if self.counts is not None:
            self.counts[i, j] += 1
            self.counts[j, i] += 1
        if kind == "repeat":
            self.repeated.add(key)
        else:
            self.first_idx.setdefault(key, len(self.history))
        self.kind_count[kind] += 1
        self.history.append(c)

    def unbook_last(self) -> Comparison:
        """Take back the last ``book`` exactly (pending pairs are the caller's to restore)."""
        c = self.history.pop()
        self.fresh.pop()
        i, j, _, kind, _ = c
        key = self.key(i, j)
        self.shows[i] -= 1
        self.shows[j] -= 1
        cnt = self.pair_count[key] - 1
        if cnt:
            self.pair_count[key] = cnt
        else:
            del self.pair_count[key]
        if self.counts is not None:
            self.counts[i, j] -= 1
            self.counts[j, i] -= 1
        if self.first_idx.get(key) == len(self.history):
            del self.first_idx[key]
        if kind == "repeat" and not any(h[3] == "repeat" and self.key(h[0], h[1]) == key for h in self.history):
            self.repeated.discard(key)
        self.kind_count[kind] -= 1
        return c

    def skip(self, i: int, j: int) -> None:
        """The user skipped the pair: no longer pending, never issued again."""
        key = self.key(i, j)
        self.pending.pop(key, None)
        self.skipped.add(key)

    def grow(self, k: int) -> Callable[[int], int]:
        """``k`` images were appended: keys ``i * n + j`` depend on n, so re-key everything.
        Returns the key map, for keys the caller keeps (an undo record's)."""
        old_n, self.n = self.n, self.n + int(k)

        def re(key: int) -> int:
            return self.key(key // old_n, key % old_n)

        self.shows = np.concatenate([self.shows, np.zeros(k, dtype=np.int64)])
        self.pair_count = {re(x): v for x, v in self.pair_count.items()}
        self.pending = {re(x): v for x, v in self.pending.items()}
        self.first_idx = {re(x): v for x, v in self.first_idx.items()}
        self.repeated = {re(x) for x in self.repeated}
        self.skipped = {re(x) for x in self.skipped}
        if self.counts is not None:
            if self.n <= self.dense_max:
                c = np.zeros((self.n, self.n), dtype=np.int32)
                c[:old_n, :old_n] = self.counts
                self.counts = c
            else:
                self.counts = None
        return re

    # ------------------------------------------------------------------ rules

    def eligible(self, available: np.ndarray, max_shows: int | None) -> np.ndarray:
        """Available images under the show cap (all available ones if fewer than 2 are).
        ``max_shows`` None: ``3 * mean shows + 6``, so the cap grows with the session."""
        cap = max_shows
        if cap is None:
            n_av = max(int(np.count_nonzero(available)), 1)
            cap = int(3.0 * 2.0 * len(self.history) / n_av) + 6
        elig = available & (self.shows < cap)
        if np.count_nonzero(elig) < 2:
            elig = available
        return elig

    def pair_limit(self, n_av: int, pair_reuse: float) -> int:
        """A pair may be issued while its count is below

            limit = 1 + floor(pair_reuse * m / n_pairs),   n_pairs = n_av (n_av - 1) / 2,

        i.e. 1 (never again) until the session has compared 1/pair_reuse of all distinct
        pairs; only tiny sets with big budgets (the all-pairs protocols) ever get there."""
        n_pairs = max(n_av * (n_av - 1) // 2, 1)
        return 1 + int(pair_reuse * len(self.history) // n_pairs)

    def allowed(self, i: int, j: int, limit: int) -> bool:
        """Not a self-pair, not pending, not skipped, compared fewer than ``limit`` times."""
        if i == j:
            return False
        key = self.key(i, j)
        return key not in self.pending and key not in self.skipped and self.pair_count.get(key, 0) < limit

    def random_pair(self, rng: np.random.Generator, mask: np.ndarray, limit: int, tries: int = 64):
        """A uniform pair of distinct images in ``mask`` that is ``allowed`` under ``limit``,
        by rejection sampling; None if ``tries`` draws fail."""
        idx = None if mask.all() else np.flatnonzero(mask)  # all: no index array at 100k images
        m = self.n if idx is None else len(idx)
        if m < 2:
            return None
        for x, y in rng.integers(0, m, size=(tries, 2)):
            i, j = (int(x), int(y)) if idx is None else (int(idx[x]), int(idx[y]))
            if self.allowed(i, j, limit):
                return i, j
        return None

    def tired(self, available: np.ndarray, n_av: int, enabled: bool) -> np.ndarray:
        """Images the spacing rule rests for the next pair (``n_av`` images available): none
        when ``enabled`` is False, in small folders, or when fewer than 2 images would be left."""
        if not enabled or n_av < SMALL_FOLDER:
            return np.zeros(self.n, dtype=bool)
        tired = self.recent.tired(self.n)
        if np.count_nonzero(available & ~tired) < 2:
            return np.zeros(self.n, dtype=bool)
        return tired

    def heldout_due(self, steady: float) -> bool:
        """Whether the next pair must be a held-out one (``taste.pacing``'s schedule). Pairs
        this source did not issue (kind "other": imported, from elsewhere) do not count, or
        reopening such a project would demand a long run of held-out pairs."""
        n_held = self.kind_count["heldout"] + sum(1 for k in self.pending.values() if k == "heldout")
        n_ours = len(self.history) - self.kind_count["other"] + len(self.pending)
        return heldout_due(n_ours, n_held, steady)

    def pick_repeat(self, rng: np.random.Generator, gap: int, n_av: int, usable: np.ndarray, tired: np.ndarray):
        """An earlier fitted pair (not held-out, not a repeat, weight > 0), >= ``gap``
        comparisons old, not repeated, pending or skipped yet, both images ``usable`` and
        not ``tired``; None during the first min(REPEAT_START, n_av / 2) comparisons or when
        8 draws fail."""
        m = len(self.history) - gap
        if m <= 0 or len(self.history) < min(REPEAT_START, n_av // 2):
            return None
        for k in rng.integers(0, m, size=8):
            i, j, _, kind, weight = self.history[int(k)]
            key = self.key(i, j)
            if kind in ("repeat", "heldout") or weight <= 0 or key in self.repeated or key in self.pending:
                continue
            if key in self.skipped or not (usable[i] and usable[j]) or tired[i] or tired[j]:
                continue
            return i, j
        return None

    # ------------------------------------------------------------------ statistics

    def repeat_outcomes(self) -> tuple[np.ndarray, np.ndarray]:
        """(first, repeat) outcomes of every repeated pair, both oriented as (min, max) index."""
        first, again = [], []
        for k, (i, j, o, kind, _) in enumerate(self.history):
            if kind != "repeat":
                continue
            k0 = self.first_idx.get(self.key(i, j))
            if k0 is None or k0 >= k:
                continue
            i0, j0, o0, _, _ = self.history[k0]
            first.append(o0 if i0 < j0 else 1.0 - o0)
            again.append(o if i < j else 1.0 - o)
        return np.asarray(first, dtype=np.float64), np.asarray(again, dtype=np.float64)

    def self_agreement(self) -> tuple[float, int]:
        """(share of repeated pairs answered the same way twice, ties as half; number of
        repeats)."""
        first, again = self.repeat_outcomes()
        return self_agreement(first, again), len(first)


def self_agreement(first_outcomes, repeat_outcomes) -> float:
    """Share of repeated pairs the user judged the same way twice.

    Both sequences give P(first-listed image won) in the *same* orientation per pair.
    Agreement of one pair is 1 - |o1 - o2| (win/win 1, win/loss 0, tie/win 0.5).
    Returns nan when there are no repeats.
    """
    a = np.asarray(first_outcomes, dtype=np.float64)
    b = np.asarray(repeat_outcomes, dtype=np.float64)
    if a.size == 0:
        return math.nan
    return float(np.mean(1.0 - np.abs(a - b)))
