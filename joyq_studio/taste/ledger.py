"""The ledger of the live head: the pairs shown, pending, recorded and skipped, and the
rules they impose (no self-pairs, no pair again by accident, the show cap)."""

from __future__ import annotations

import math

import numpy as np

from .state import TasteState


class Ledger(TasteState):
    """Bookkeeping of pairs (``TasteModel``'s first part)."""

    def _key(self, i: int, j: int) -> int:
        return int(i) * self.n + int(j) if i < j else int(j) * self.n + int(i)

    def _rekey(self, old_n: int) -> None:
        def re(key: int) -> int:
            return self._key(key // old_n, key % old_n)

        self._pair_count = {re(k): v for k, v in self._pair_count.items()}
        self._pending = {re(k): v for k, v in self._pending.items()}
        self._first_idx = {re(k): v for k, v in self._first_idx.items()}
        self._repeated = {re(k) for k in self._repeated}
        self._skipped = {re(k) for k in self._skipped}
        for u in self._undo:
            u.key = re(u.key)
            u.pending = {re(k): v for k, v in u.pending.items()}

    def _normalise(self, i, j, outcome, kind, weight) -> tuple[int, int, float, str, float]:
        i, j, o, wt = int(i), int(j), float(outcome), float(weight)
        if not (0 <= i < self.n and 0 <= j < self.n) or i == j:
            raise ValueError(f"bad pair ({i}, {j}) for {self.n} images")
        if not 0.0 <= o <= 1.0:
            raise ValueError(f"outcome must be 1.0 (i better), 0.0 (j better) or 0.5 (tie), not {outcome}")
        if not (math.isfinite(wt) and wt >= 0):
            raise ValueError(f"weight must be a finite number >= 0, not {weight}")
        if kind is None:
            kind = self._pending.get(self._key(i, j), "other")
        return i, j, o, str(kind), wt

    def _book(self, c: tuple[int, int, float, str, float]) -> None:
        i, j, _, kind, _ = c
        key = self._key(i, j)
        self._pending.pop(key, None)
        self.shows[i] += 1
        self.shows[j] += 1
        self._pair_count[key] = self._pair_count.get(key, 0) + 1
        if self._counts is not None:
            self._counts[i, j] += 1
            self._counts[j, i] += 1
        if kind == "repeat":
            self._repeated.add(key)
        else:
            self._first_idx.setdefault(key, len(self._history))
        self._history.append(c)

    def _eligible(self) -> np.ndarray:
        """Available images under the show cap (all available ones if fewer than 2 are)."""
        cap = self.max_shows
        if cap is None:
            n_av = max(int(np.count_nonzero(self.available)), 1)
            cap = int(3.0 * 2.0 * len(self._history) / n_av) + 6
        elig = self.available & (self.shows < cap)
        if np.count_nonzero(elig) < 2:
            elig = self.available
        return elig

    def _pair_limit(self, n_av: int) -> int:
        """A pair may be issued while its count is below ``1 + floor(pair_reuse m / n_pairs)``:
        1 (never again) until the session has compared 1/pair_reuse of all distinct pairs."""
        n_pairs = max(n_av * (n_av - 1) // 2, 1)
        return 1 + int(self.pair_reuse * len(self._history) // n_pairs)

    def _allowed(self, i: int, j: int, limit: int) -> bool:
        if i == j:
            return False
        key = self._key(i, j)
        return key not in self._pending and key not in self._skipped and self._pair_count.get(key, 0) < limit
