"""The controller on its own, with no window: open, score, rank, close, all by signals."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from joyq_studio.ui.controller import Controller, TaskStatus

T = 30_000


@pytest.fixture(scope="module")
def folder12(tmp_path_factory) -> Path:
    from joyq_studio.demo import make_demo_folder

    folder = tmp_path_factory.mktemp("ctl-demo") / "images"
    make_demo_folder(folder, count=12, seed=2, size=128)
    return folder


def test_controller_opens_scores_ranks_and_closes_without_widgets(qtbot, folder12):
    c = Controller()
    sessions, statuses, errors = [], [], []
    c.session_changed.connect(sessions.append)
    c.task_status.connect(statuses.append)
    c.error.connect(errors.append)
    with qtbot.waitSignal(c.scoring_finished, timeout=T):
        assert c.open_folder(folder12, "tiny")
    qtbot.waitUntil(lambda: not c.busy_scoring(), timeout=T)
    s = c.session
    assert s is not None and sessions == [s]
    assert len(s.hashes) == 12 and s.n_scored() == 12
    # the status bar saw the scan, then scoring with counts, then no task
    assert isinstance(statuses[0], TaskStatus) and statuses[0].label == "Scanning files..."
    assert any(st is not None and st.total == 12 for st in statuses) and statuses[-1] is None
    assert c.model_label() == "tiny test model (random)"
    # a judgement through the session, then the ranking (computed on a worker thread)
    pair = s.next_pair()
    assert pair is not None
    s.record(pair, 1.0)
    with qtbot.waitSignal(c.ranked, timeout=T):
        c.rank()
    assert c.ranking.cal is not None and len(c.ranking.rows) == 12 and not c.ranking.dirty
    assert c.calibration() is c.ranking.cal
    # renaming a bucket is saved; an empty name is refused with one sentence
    assert c.set_bucket_label(9, "keepers")
    assert c.ranking.cal.labels[9] == "keepers"
    assert not c.set_bucket_label(0, "  ") and errors == ["The label of bucket 0 must not be empty."]
    c.close_project()
    assert c.session is None and sessions == [s, None] and c.ranking.cal is None
    c.shutdown()


def test_controller_reports_a_missing_folder_and_asks_for_a_model(qtbot, folder12, tmp_path):
    c = Controller()
    errors = []
    c.error.connect(errors.append)
    assert not c.open_folder(tmp_path / "nope")
    assert len(errors) == 1 and "no such folder" in errors[0] and c.last_error == errors[0]
    # a repo that is not downloaded: the chooser is asked; None keeps the folder closed
    asked = []
    c.ask_model = lambda repo: asked.append(repo)
    assert not c.open_folder(folder12, "someone/not-downloaded")
    assert asked == ["someone/not-downloaded"] and c.session is None
    c.shutdown()
