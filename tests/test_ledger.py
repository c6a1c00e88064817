"""One ledger of pairs for both pair sources: the live Bayesian head and the OpenSkill
selector keep the same rules because they book into the same ``PairLedger``."""

from __future__ import annotations

import numpy as np
import pytest

from joyq_studio.pairing import PairSelector
from joyq_studio.taste import TasteModel
from joyq_studio.taste.ledger import PairLedger
from joyq_studio.taste.pacing import REPEAT_MAX, WINDOW


def _taste(n: int, seed: int = 0) -> TasteModel:
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n, 16)).astype(np.float32)
    return TasteModel(emb, (rng.standard_normal(16) * 0.3, 0.0), seed=seed)


def _selector(n: int, seed: int = 0) -> PairSelector:
    rng = np.random.default_rng(seed)
    return PairSelector.from_model_scores(rng.standard_normal(n), [], None, seed=seed)


SOURCES = {"live": _taste, "openskill": _selector}


def _ledger(src) -> PairLedger:
    return src.ledger


def _answer(i: int, j: int) -> float:
    return 1.0 if i < j else 0.0


@pytest.mark.parametrize("name", SOURCES)
def test_both_sources_book_into_the_one_ledger(name):
    src = SOURCES[name](60)
    assert type(_ledger(src)) is PairLedger
    i, j = src.next_pair()
    assert _ledger(src).key(i, j) in _ledger(src).pending
    src.record(i, j, 1.0)
    assert _ledger(src).history[-1][:3] == (i, j, 1.0)
    assert _ledger(src).shows[i] == _ledger(src).shows[j] == 1


@pytest.mark.parametrize("name", SOURCES)
def test_a_skipped_pair_is_never_offered_again(name):
    """The selector used to forget a skip and offer the pair again; now both keep it."""
    src = SOURCES[name](12, seed=3)
    skipped = set()
    for _ in range(20):
        i, j = src.next_pair()
        src.skip(i, j)
        skipped.add(frozenset((i, j)))
    seen = set()
    for _ in range(40):
        i, j = src.next_pair()
        seen.add(frozenset((i, j)))
        src.record(i, j, _answer(i, j))
    assert not (seen & skipped)


@pytest.mark.parametrize("name", SOURCES)
def test_same_pacing_rules(name):
    """Spacing (no image more than twice in any 20 consecutive pairs) and the front-loaded
    held-out schedule (30 of the first 100 pairs) hold for both sources alike."""
    src = SOURCES[name](200, seed=1)
    pairs, kinds = [], []
    for _ in range(100):
        i, j, kind = src.next_pair_with_kind()
        pairs.append((i, j))
        kinds.append(kind)
        src.record(i, j, _answer(i, j))
    for s in range(len(pairs) - WINDOW + 1):
        window = [x for p in pairs[s : s + WINDOW] for x in p]
        assert max(window.count(x) for x in set(window)) <= REPEAT_MAX
    assert kinds.count("heldout") == 30
    assert _ledger(src).kind_count["heldout"] == 30


def test_unbook_last_restores_the_ledger_exactly():
    led = PairLedger(6, dense_max=512)
    led.book(led.normalise(0, 1, 1.0, "info"))
    led.book(led.normalise(2, 3, 0.0, "heldout"))
    before = (
        led.shows.copy(),
        dict(led.pair_count),
        dict(led.first_idx),
        set(led.repeated),
        led.counts.copy(),
        dict(led.kind_count),
    )
    led.book(led.normalise(1, 0, 0.0, "repeat"))
    assert led.repeat_outcomes()[0].tolist() == [1.0] and led.self_agreement() == (1.0, 1)
    led.book(led.normalise(4, 5, 0.5, "info"))
    led.unbook_last()
    led.unbook_last()
    after = (
        led.shows.copy(),
        dict(led.pair_count),
        dict(led.first_idx),
        set(led.repeated),
        led.counts.copy(),
        dict(+led.kind_count),
    )
    assert np.array_equal(before[0], after[0]) and before[1:4] == after[1:4]
    assert np.array_equal(before[4], after[4]) and dict(+led.kind_count) == {k: v for k, v in before[5].items() if v}
    assert led.self_agreement()[1] == 0


def test_grow_rekeys_every_pair():
    led = PairLedger(4, dense_max=512)
    led.book(led.normalise(1, 3, 1.0, "info"))
    led.issue(0, 2, "heldout", spacing=False)
    led.skip(2, 3)
    rekey = led.grow(3)
    assert led.n == 7 and led.shows.tolist() == [0, 1, 0, 1, 0, 0, 0]
    assert led.pair_count == {led.key(1, 3): 1}
    assert led.pending == {led.key(0, 2): "heldout"} and led.skipped == {led.key(2, 3)}
    assert rekey(1 * 4 + 3) == led.key(1, 3)
    assert not led.allowed(3, 2, limit=5) and led.allowed(4, 6, limit=1)
    assert led.counts is not None and led.counts.shape == (7, 7) and led.counts[1, 3] == 1


def test_imported_clicks_do_not_demand_heldout_pairs():
    """Clicks the source did not issue (kind "other") leave the held-out schedule where it is."""
    fresh, imported = PairLedger(50, dense_max=512), PairLedger(50, dense_max=512)
    for k in range(40):
        imported.book(imported.normalise(k, k + 1, 1.0, "other"))
    for n in range(12):
        assert imported.heldout_due(0.1) == fresh.heldout_due(0.1)
        for led in (fresh, imported):
            kind = "heldout" if led.heldout_due(0.1) else "info"
            led.book(led.normalise(n, n + 2, 1.0, kind))
    assert fresh.kind_count["heldout"] == imported.kind_count["heldout"] > 0
