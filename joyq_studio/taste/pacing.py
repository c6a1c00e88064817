"""How pairs are paced for a person: the held-out schedule and the image repetition limit.

Used by both pair sources (``TasteModel`` and ``pairing.PairSelector``) and by the compare
session for its "how many more clicks" messages.

Held-out schedule. Held-out pairs (uniform, never fitted) are the only unbiased test of the
model, and a figure needs ``metrics.MIN_PAIRS_TO_TELL`` (30) of them. They are front-loaded:
``HELDOUT_EARLY`` (30%) of the first ``EARLY_CLICKS`` (100) clicks, then the steady share
(``TasteMix.heldout``, 10%). So the first figure exists after 100 clicks instead of ~300.
The cost (20 clicks that do not teach the model during the first 100) is measured by
``joyq bench taste`` (strategy ``model-flat`` = the steady share from the start).

Repetition limit. No image appears more than ``REPEAT_MAX`` (2) times in any ``WINDOW`` (20)
consecutive pairs shown; folders with fewer than ``SMALL_FOLDER`` (40) images are exempt
(their images must come back).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

__all__ = [
    "EARLY_CLICKS",
    "HELDOUT_EARLY",
    "REPEAT_MAX",
    "SMALL_FOLDER",
    "WINDOW",
    "RecentShows",
    "clicks_for_heldout",
    "heldout_due",
    "heldout_share",
    "heldout_target",
]

HELDOUT_EARLY = 0.30
EARLY_CLICKS = 100
STEADY_SHARE = 0.10
WINDOW = 20
REPEAT_MAX = 2
SMALL_FOLDER = 40


def heldout_share(n_clicks: int, steady: float = STEADY_SHARE, early: float = HELDOUT_EARLY) -> float:
    """The share of held-out pairs at click ``n_clicks`` (0-based): ``early`` during the first
    EARLY_CLICKS clicks (never less than ``steady``; 0 when ``steady`` is 0: no held-out
    pairs at all), then ``steady``."""
    if steady <= 0:
        return 0.0
    return max(early, steady) if n_clicks < EARLY_CLICKS else steady


def heldout_target(n_clicks: int, steady: float = STEADY_SHARE, early: float = HELDOUT_EARLY) -> int:
    """How many of the first ``n_clicks`` clicks the schedule makes held-out pairs."""
    if steady <= 0:
        return 0
    early = max(early, steady)
    first = min(n_clicks, EARLY_CLICKS)
    return int(math.floor(early * first + steady * max(n_clicks - EARLY_CLICKS, 0) + 1e-9))


def heldout_due(n_clicks: int, n_heldout: int, steady: float = STEADY_SHARE, early: float = HELDOUT_EARLY) -> bool:
    """True when the next pair (click number ``n_clicks + 1``) should be held out, given
    ``n_heldout`` held-out pairs so far: the schedule is deterministic, so the count is
    exactly on target (no random shortfall early on)."""
    return n_heldout < heldout_target(n_clicks + 1, steady, early)


def clicks_for_heldout(
    wanted: int, n_clicks: int, n_heldout: int, steady: float = STEADY_SHARE, early: float = HELDOUT_EARLY
) -> int:
    """Clicks still needed until ``wanted`` held-out pairs exist under the schedule (0 when
    there are enough; the basis of every "about N more clicks" message)."""
    if n_heldout >= wanted:
        return 0
    if steady <= 0 and early <= 0:
        return -1  # never
    need = wanted - n_heldout
    c = n_clicks
    # walk the early part exactly, then the steady part in closed form
    while c < EARLY_CLICKS and need > 0:
        c += 1
        if heldout_target(c, steady, early) > heldout_target(c - 1, steady, early):
            need -= 1
    if need > 0:
        if steady <= 0:
            return -1
        base = heldout_target(c, steady, early)
        goal = base + need
        c = max(c, EARLY_CLICKS + int(math.ceil((goal - early * EARLY_CLICKS) / steady)) - 1)
        while heldout_target(c, steady, early) < goal:
            c += 1
    return c - n_clicks


class RecentShows:
    """The images of the last ``WINDOW - 1`` pairs shown, to keep any ``WINDOW`` consecutive
    pairs to at most ``REPEAT_MAX`` appearances of one image."""

    def __init__(self, window: int = WINDOW, max_shows: int = REPEAT_MAX) -> None:
        self.window, self.max_shows = int(window), int(max_shows)
        self._recent: deque[tuple[int, int]] = deque(maxlen=max(self.window - 1, 0))
        self._count: dict[int, int] = {}

    def add(self, i: int, j: int) -> None:
        """A pair was shown."""
        if self._recent.maxlen == 0:
            return
        if len(self._recent) == self._recent.maxlen:
            a, b = self._recent[0]
            for x in (a, b):
                k = self._count[x] - 1
                if k:
                    self._count[x] = k
                else:
                    del self._count[x]
        self._recent.append((int(i), int(j)))
        for x in (int(i), int(j)):
            self._count[x] = self._count.get(x, 0) + 1

    def tired(self, n: int) -> np.ndarray:
        """(n,) bool: images that may not appear in the next pair."""
        out = np.zeros(n, dtype=bool)
        full = [x for x, k in self._count.items() if k >= self.max_shows and x < n]
        if full:
            out[np.asarray(full, dtype=np.int64)] = True
        return out

    def ok(self, i: int, j: int) -> bool:
        return self._count.get(int(i), 0) < self.max_shows and self._count.get(int(j), 0) < self.max_shows

    def clear(self) -> None:
        self._recent.clear()
        self._count.clear()
