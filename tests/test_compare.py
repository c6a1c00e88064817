"""The compare session without Qt: everything a user can do in the compare view.

A real project (SQLite) over synthetic images, the real live Bayesian head on small random
embeddings, a simulated rater. Slow updates are made slow on purpose (a sleep in the source's
update) to test the click path while learning runs behind it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from joyq_studio.bench.click import make_rater, synthetic_project
from joyq_studio.compare import SOURCE_META_KEY, CompareSession, Pair, more_clicks, more_clicks_sentence
from joyq_studio.compare.session import SPACING_MAX, SPACING_WINDOW
from joyq_studio.compare.sources import LiveSource
from joyq_studio.compare.stats import Schedule, adoption_warning, plural
from joyq_studio.metrics import MIN_PAIRS_TO_TELL, agreement
from joyq_studio.store import Project

D = 16


def _world(tmp_path, n=80, seed=0):
    rater = make_rater(n, d=D, seed=seed)
    project = synthetic_project(tmp_path / "proj", n)
    hashes = [h for h, _ in project.image_paths()]
    return rater, project, hashes


def _session(project, rater, hashes, **kw):
    scores = dict(zip(hashes, (rater.E.astype(np.float64) @ rater.w0).tolist(), strict=True))
    return CompareSession(project, scores=scores, base_head=(rater.w0, 0.0), embeddings=(hashes, rater.E), **kw)


def _answer(rater, hashes, pair):
    index = {h: k for k, h in enumerate(hashes)}
    return rater.answer(index[pair.left], index[pair.right])


@pytest.fixture
def slow_update(monkeypatch):
    """Every click's update takes at least 30 ms (learning behind the click path)."""
    real = LiveSource.update

    def update(self, cancel=None):
        time.sleep(0.03)
        return real(self, cancel)

    monkeypatch.setattr(LiveSource, "update", update)


def test_clicks_are_stored_learnt_once_and_the_answered_pair_never_comes_next(tmp_path):
    rater, project, hashes = _world(tmp_path)
    cs = _session(project, rater, hashes)
    assert cs.source_name == "live" and cs.note == ""
    pair = cs.next_pair()
    for _ in range(60):
        assert pair is not None
        cs.record(pair, _answer(rater, hashes, pair))
        nxt = cs.next_pair()
        assert nxt is not None and {nxt.left, nxt.right} != {pair.left, pair.right}
        pair = nxt
    assert project.comparison_count() == 60
    assert len(cs.source.model.history) == 60
    held = [c for c in cs.clicks if c.pair.kind == "heldout"]
    assert project.comparison_records("test") and len(project.comparison_records("test")) == len(held)
    cs.close()


def test_fast_clicks_during_slow_updates_are_neither_lost_nor_doubled(tmp_path, slow_update):
    rater, project, hashes = _world(tmp_path)
    cs = _session(project, rater, hashes, background=True)
    shown = []
    pair = cs.next_pair()
    t0 = time.perf_counter()
    for _ in range(25):  # far faster than the updates
        shown.append(pair)
        cs.record(pair, _answer(rater, hashes, pair))
        pair = cs.next_pair()
    click_path = time.perf_counter() - t0
    assert cs.pending() > 0  # learning is behind: the clicks did not wait for it
    assert click_path < 25 * 0.03
    cs.wait()
    assert cs.pending() == 0
    hist = cs.source.model.history
    assert len(hist) == 25 == project.comparison_count()
    index = cs.source.index
    assert [(index[p.left], index[p.right]) for p in shown] == [(h[0], h[1]) for h in hist]  # in order, once
    assert cs.busy_pairs >= 0
    cs.close()


def test_undo_while_the_update_is_pending_and_after_it(tmp_path, slow_update):
    rater, project, hashes = _world(tmp_path)
    cs = _session(project, rater, hashes, background=True)
    pairs = []
    for _ in range(4):
        p = cs.next_pair()
        pairs.append(p)
        cs.record(p, 1.0)
    back = cs.undo()  # very likely still queued
    assert back is not None and back.pair == pairs[-1]
    assert project.comparison_count() == 3
    cs.wait()
    assert len(cs.source.model.history) == 3
    back = cs.undo()  # learnt: the source takes it back
    assert back.pair == pairs[-2] and project.comparison_count() == 2
    cs.wait()
    assert len(cs.source.model.history) == 2
    # a skip is taken back too, and the next undo reaches the click before it
    p = cs.next_pair()
    cs.skip(p)
    assert cs.undo().outcome is None and project.comparison_count() == 2
    cs.close()


def test_undo_after_reopening_takes_back_the_newest_stored_click(tmp_path):
    rater, project, hashes = _world(tmp_path)
    cs = _session(project, rater, hashes)
    for _ in range(5):
        p = cs.next_pair()
        cs.record(p, 0.0)
    newest = p
    cs.close()
    project.close()
    project = Project(tmp_path / "proj")
    cs = _session(project, rater, hashes)
    assert len(cs.source.model.history) == 5 and cs.can_undo()
    back = cs.undo()
    assert back.pair.left == newest.left and back.pair.right == newest.right
    assert project.comparison_count() == 4 and len(cs.source.model.history) == 4
    cs.close()


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from joyq_studio.bench.click import make_rater, synthetic_project
    from joyq_studio.compare import CompareSession
    from joyq_studio.compare.sources import LiveSource

    def update(self, cancel=None):
        time.sleep(60)  # the update never finishes before the kill

    LiveSource.update = update
    rater = make_rater(80, d=16, seed=0)
    project = synthetic_project(Path(sys.argv[1]), 80)
    hashes = [h for h, _ in project.image_paths()]
    cs = CompareSession(project, base_head=(rater.w0, 0.0), embeddings=(hashes, rater.E), background=True)
    for _ in range(3):
        cs.record(cs.next_pair(), 1.0)
    print("stored", cs.pending(), flush=True)
    time.sleep(120)
    """
)


def test_a_click_survives_a_kill_while_its_update_is_pending(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(tmp_path / "proj")], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        line = proc.stdout.readline().split()
        assert line[0] == "stored" and int(line[1]) >= 1  # updates were pending when killed
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    project = Project(tmp_path / "proj")
    assert project.comparison_count() == 3
    rater = make_rater(80, d=16, seed=0)
    hashes = [h for h, _ in project.image_paths()]
    cs = _session(project, rater, hashes)
    assert len(cs.source.model.history) == 3  # reopening replays them into the model
    cs.close()


def test_source_is_chosen_by_name_switchable_and_saved(tmp_path):
    rater, project, hashes = _world(tmp_path)
    cs = _session(project, rater, hashes)
    for _ in range(3):
        cs.record(cs.next_pair(), 1.0)
    cs.switch_source("openskill")
    assert cs.source_name == "openskill" and project.get_meta(SOURCE_META_KEY) == "openskill"
    assert cs.source.selector.n_comparisons == 3  # the stored clicks were replayed
    p = cs.next_pair()
    cs.record(p, 0.0)
    cs.undo()
    assert cs.source.selector.n_comparisons == 3
    cs.close()
    cs = _session(project, rater, hashes)  # the choice is remembered
    assert cs.source_name == "openskill"
    cs.close()


def test_without_a_head_pairs_fall_back_to_openskill_and_say_why(tmp_path):
    _, project, _ = _world(tmp_path)
    cs = CompareSession(project, scores={})
    assert cs.source_name == "openskill" and "head" in cs.note
    assert cs.stats().note == cs.note
    cs.close()


def test_no_image_more_than_twice_in_any_twenty_consecutive_pairs(tmp_path):
    rater, project, hashes = _world(tmp_path, n=60)
    cs = _session(project, rater, hashes)
    shown = []
    for _ in range(200):
        p = cs.next_pair()
        shown.append(p)
        cs.record(p, _answer(rater, hashes, p))
    for s in range(len(shown) - SPACING_WINDOW + 1):
        window = shown[s : s + SPACING_WINDOW]
        counts: dict[str, int] = {}
        for p in window:
            for h in (p.left, p.right):
                counts[h] = counts.get(h, 0) + 1
        assert max(counts.values()) <= SPACING_MAX, s
    print(f"spacing: {cs.redraws} redraws, {sum(p.kind == 'random' for p in shown)} random pairs in 200")
    cs.close()


def test_statistics_count_and_interval_and_the_one_more_clicks_rule(tmp_path):
    rater, project, hashes = _world(tmp_path)
    cs = _session(project, rater, hashes)
    st = cs.stats()
    assert st.total == 0 and st.predicted.count == 0 and st.schedule == Schedule(0, 0)
    # the front-loaded schedule (30% of the first 100 clicks held out): 100 clicks to tell, not 300
    assert st.clicks_to_tell == more_clicks(MIN_PAIRS_TO_TELL, Schedule()) == 100
    p = cs.next_pair()
    cs.record(p, 1.0)
    st = cs.stats()
    assert "1 comparison stored" in st.lines()[0]
    for _ in range(40):
        p = cs.next_pair()
        cs.record(p, _answer(rater, hashes, p))
    st = cs.stats()
    # predict-then-update: every click predicted before the model learnt it
    assert st.predicted.count == sum(1 for c in cs.clicks if c.outcome != 0.5) == 41
    assert 0 <= st.predicted.low <= st.predicted.value <= st.predicted.high <= 1
    # held-out: the live model and the starting head on the same pairs, metrics.agreement
    held = [(c.pair, c.outcome) for c in cs.clicks if c.pair.kind == "heldout"]
    idx = cs.source.index
    x = np.array([rater.E[idx[p.left]] - rater.E[idx[p.right]] for p, _ in held]).reshape(-1, D)
    y = np.array([o for _, o in held])
    assert st.heldout_base == agreement(x @ rater.w0, y)
    assert st.heldout_live is not None and st.heldout_live.count == st.heldout_base.count == len(held)
    assert st.schedule == Schedule(41, len(held))
    assert st.clicks_to_tell == more_clicks(MIN_PAIRS_TO_TELL - len(held), st.schedule)
    assert st.clicks_to_tell == 100 - 41  # the schedule holds exactly 30 out by click 100
    text = "\n".join(st.lines())
    assert "predicted before learning" in text and "too few to tell" in text
    cs.close()


def test_wording():
    assert plural(1, "comparison") == "1 comparison" and plural(2, "comparison") == "2 comparisons"
    assert (
        more_clicks_sentence(16, Schedule(200, 30), "to go") == "about 160 more clicks (16 more held-out pairs) to go"
    )
    assert more_clicks_sentence(16, Schedule(0, 0), "to go") == "about 54 more clicks (16 more held-out pairs) to go"
    assert more_clicks_sentence(0, Schedule(), "to go") == ""
    assert "holds no pairs out" in more_clicks_sentence(5, Schedule(steady=0.0, early=0.0), "to go")
    assert "too few to tell" in adoption_warning("too few to tell", 7, "this model")
    assert "worse" in adoption_warning("worse", 60, "the live model")
    assert adoption_warning("better", 60, "this model") == ""


def test_pair_dataclass_is_shared():
    from joyq_studio.compare.source import Pair as SourcePair

    assert Pair is SourcePair


def test_the_more_clicks_rule_follows_the_schedule_the_sources_use():
    """The app, the train view and `joyq train` all say how many more clicks from the
    schedule both pair sources follow (taste.pacing), counted from the project as stored."""
    from joyq_studio.pairing.selector import PairMix
    from joyq_studio.taste.model import TasteMix
    from joyq_studio.taste.pacing import STEADY_SHARE

    assert TasteMix().heldout == PairMix().heldout == Schedule().steady == STEADY_SHARE


def test_the_tastes_library_without_qt(tmp_path):
    """Save, list (start from = make it the base model: the controller's use_model)."""
    import json

    from joyq_studio.tastes import list_tastes, save_taste

    version = tmp_path / "v1"
    version.mkdir()
    (version / "head.safetensors").write_bytes(b"not read here")
    (version / "version.json").write_text(json.dumps({"tower": "t1", "mode": "live"}), encoding="utf-8")
    path = save_taste(version, "  warm  colours ", source="/photos")
    assert path.parent.name == "tastes" and (path / "head.safetensors").is_file()
    got = list_tastes()
    assert [(t["name"], t["tower"], t["saved_from"]) for t in got] == [("warm colours", "t1", "/photos")]
    (tmp_path / "full").mkdir()
    with pytest.raises(ValueError, match="head-only"):
        save_taste(tmp_path / "full", "x")


@pytest.fixture
def gated_live(monkeypatch):
    """The live source's build waits for the returned event (a big folder's slow build)."""
    import threading

    from joyq_studio.compare import sources

    gate, started = threading.Event(), threading.Event()
    real = sources.SOURCES["live"]

    def slow(ctx):
        started.set()
        assert gate.wait(20)
        return real(ctx)

    monkeypatch.setitem(sources.SOURCES, "live", slow)
    return gate, started


def test_opening_builds_the_source_behind_random_pairs(tmp_path, gated_live):
    """A background session answers at once while its source is built on the worker: random
    pairs meanwhile, clicks stored and queued (undo works), then each learnt exactly once."""
    gate, started = gated_live
    rater, project, hashes = _world(tmp_path)
    cs = _session(project, rater, hashes, background=True)
    try:
        assert started.wait(10) and cs.building and cs.source is None
        assert "ready" in cs.stats().note
        made = []
        for _ in range(6):
            pair = cs.next_pair()
            assert pair is not None and pair.kind == "random"
            cs.record(pair, _answer(rater, hashes, pair))
            made.append(pair)
        undone = cs.undo()
        assert undone is not None and undone.pair == made[-1] and project.comparison_count() == 5
        assert cs.pending() == 5  # queued: nothing learnt while building
        gate.set()
        cs.wait()
        assert not cs.building and cs.source_name == "live" and cs.note == ""
        assert cs.source.model.n_fitted == 5 and cs.pending() == 0
        deadline = time.monotonic() + 10
        while (pair := cs.next_pair(busy_random=False)) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pair is not None and pair.kind in ("info", "heldout", "repeat", "explore")  # the model's own
    finally:
        gate.set()
        cs.close()


def test_images_embedded_while_building_join_the_live_model(tmp_path, gated_live):
    gate, started = gated_live
    rater, project, hashes = _world(tmp_path)
    project.save_results("tw", "m", [(h, rater.E[k], 0.0) for k, h in enumerate(hashes[:60])])
    cs = CompareSession(project, base_head=(rater.w0, 0.0), tower="tw", background=True)
    try:
        assert started.wait(10) and cs.building
        project.save_results("tw", "m", [(h, rater.E[60 + k], 0.0) for k, h in enumerate(hashes[60:])])
        assert cs.add_images(hashes[60:]) == 20
        gate.set()
        cs.wait()
        assert cs.source_name == "live" and sorted(cs.source.hashes) == sorted(hashes)
    finally:
        gate.set()
        cs.close()


def test_a_background_session_with_nothing_to_compare_says_why(tmp_path):
    project = synthetic_project(tmp_path / "one", 1)
    cs = CompareSession(project, background=True)
    try:
        cs.wait()
        assert cs.source is None and cs.next_pair() is None and "Fewer than 2 images" in cs.note
    finally:
        cs.close()


def test_a_failed_build_says_so_and_keeps_the_source_before(tmp_path, monkeypatch):
    from joyq_studio.compare import sources

    rater, project, hashes = _world(tmp_path)
    cs = _session(project, rater, hashes, background=True)
    try:
        cs.wait()
        assert cs.source_name == "live"

        def broken(ctx):
            raise MemoryError("no room for the index")

        monkeypatch.setitem(sources.SOURCES, "fixed-k", broken)
        cs.switch_source("fixed-k")
        cs.wait()  # returns: the worker lives on
        assert cs.source_name == "live" and "could not be built" in cs.note and "no room" in cs.note
        pair = cs.next_pair()
        cs.record(pair, _answer(rater, hashes, pair))
        cs.wait()
        assert cs.pending() == 0
    finally:
        cs.close()


def test_the_worker_outlives_a_failed_update(tmp_path, monkeypatch):
    rater, project, hashes = _world(tmp_path)
    cs = _session(project, rater, hashes, background=True)
    try:
        cs.wait()
        real, calls = LiveSource.update, []

        def flaky(self, cancel=None):
            calls.append(1)
            if len(calls) == 1:
                raise FloatingPointError("overflow in the refit")
            return real(self, cancel)

        monkeypatch.setattr(LiveSource, "update", flaky)
        for _ in range(2):
            pair = cs.next_pair()
            cs.record(pair, _answer(rater, hashes, pair))
        deadline = time.monotonic() + 20
        while cs.pending() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert cs.pending() == 0 and "Learning a click failed" in cs.note and len(calls) == 2
        assert project.comparison_count() == 2  # both stored; the second learnt by the live worker
        cs.switch_source("openskill")
        cs.wait()
        assert cs.source_name == "openskill"  # builds still run on the worker
    finally:
        cs.close()


def test_fixed_k_batches_are_a_source_by_name(tmp_path):
    rater, project, hashes = _world(tmp_path)
    cs = _session(project, rater, hashes)
    cs.record(cs.next_pair(), 1.0)
    cs.switch_source("fixed-k")
    assert cs.source_name == "fixed-k" and project.get_meta(SOURCE_META_KEY) == "fixed-k"
    seen = set()
    for _ in range(20):
        p = cs.next_pair()
        assert p.kind in ("near", "random") and frozenset((p.left, p.right)) not in seen
        seen.add(frozenset((p.left, p.right)))
        cs.record(p, 1.0)


def test_fixed_k_batches_use_the_stored_diverse_subset(tmp_path):
    """The recipe: a diverse subset first, then fixed-k pairs on it; the session says so."""
    from joyq_studio.subset import SubsetReport, save_subset

    rater, project, hashes = _world(tmp_path)
    subset = hashes[::3]
    save_subset(project, SubsetReport(subset, len(subset), len(hashes), 0, "t", None, 0, 0.0, 1.0))
    cs = _session(project, rater, hashes)
    cs.switch_source("fixed-k")
    assert "diverse subset" in cs.note and f"{len(subset)} of {len(hashes)}" in cs.note
    for _ in range(10):
        p = cs.next_pair()
        assert p.left in subset and p.right in subset
        cs.record(p, 1.0)


def test_undo_after_reopening_skips_an_imported_pairs_file(tmp_path):
    rater, project, hashes = _world(tmp_path)
    cs = _session(project, rater, hashes)
    p = cs.next_pair()
    cs.record(p, 1.0)
    cs.close()
    project.add_comparisons([(hashes[0], hashes[1], 1.0, "train", "import")])  # newest: a pairs file
    cs = _session(project, rater, hashes)
    assert cs.can_undo()
    back = cs.undo()
    assert (back.pair.left, back.pair.right) == (p.left, p.right)
    assert [r.kind for r in project.comparison_records()] == ["import"]
    cs.close()


def test_forgetting_for_a_drifting_taste_is_a_saved_choice(tmp_path):
    rater, project, hashes = _world(tmp_path)
    cs = _session(project, rater, hashes)
    assert cs.forget_half_life is None and cs.source.model.forget_half_life is None
    for _ in range(5):
        cs.record(cs.next_pair(), 1.0)
    cs.set_forgetting(100)
    assert cs.source.model.forget_half_life == 100 and len(cs.source.model.history) == 5  # replayed
    cs.close()
    cs = _session(project, rater, hashes)  # remembered for the folder
    assert cs.source.model.forget_half_life == 100
    cs.set_forgetting(None)
    assert cs.source.model.forget_half_life is None
    cs.close()
