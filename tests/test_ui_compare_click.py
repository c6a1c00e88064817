"""The click loop through the app's Qt adapter on a 20k-image project: 200 clicks with the Qt
event loop running between them (the worker's ``updated`` signal is delivered as in the
window), and the click-to-next-pair distribution printed. A benchmark printout, not a timed
assertion: what it checks is that no click is lost or doubled and the strip's figures agree.

The images are a synthetic project (real SQLite, 20k rows, 1152-d float16 embeddings stored
as scoring stores them); no image file exists, so this drives ``ui.session.Session`` (what
the compare view calls on a click) rather than the painted panes.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from joyq_studio.bench.click import make_rater, synthetic_project

N = 20_000
CLICKS = 200


@pytest.mark.slow
def test_200_clicks_on_a_20k_project_through_the_qt_session(qtbot, tmp_path):
    from joyq_studio.ui.session import Session

    rater = make_rater(N, seed=0)
    project = synthetic_project(tmp_path / "big", N)
    hashes = [h for h, _ in project.image_paths()]
    scores = rater.E.astype(np.float64) @ rater.w0
    project.save_results("tower", "model", zip(hashes, rater.E, scores.tolist(), strict=True))
    project.close()
    index = {h: k for k, h in enumerate(hashes)}

    s = Session(tmp_path / "big")
    t_open = time.perf_counter()
    s.reload_images()
    s.set_model("spec", "model", "tower", (rater.w0, 0.0))
    t_open = time.perf_counter() - t_open  # the window answers again here: the model is built behind
    assert s.compare is not None
    s.compare.wait()
    assert s.live_note == "" and s.compare is not None and s.compare.source_name == "live"
    latencies = []
    pair = s.next_pair()
    for _ in range(CLICKS):
        qtbot.wait(150)  # the person looks at the pair; the event loop runs
        outcome = rater.answer(index[pair.left], index[pair.right])
        t0 = time.perf_counter()
        s.record(pair, outcome)
        nxt = s.next_pair()
        latencies.append(time.perf_counter() - t0)
        assert nxt is not None and {nxt.left, nxt.right} != {pair.left, pair.right}
        pair = nxt
    model = s.live  # waits for the last updates
    assert model is not None and len(model.history) == CLICKS == s.project.comparison_count()
    qtbot.waitUntil(lambda: s.compare_stats().pending == 0, timeout=30_000)
    ms = np.asarray(latencies) * 1000
    print(
        f"\n{CLICKS} clicks on {N:,} images through ui.session (vm, shared): click to next pair median "
        f"{np.median(ms):.1f} ms, p95 {np.percentile(ms, 95):.1f}, p99 {np.percentile(ms, 99):.1f}, max "
        f"{ms.max():.1f}; random pairs while the model was busy: {s.compare.busy_pairs}; open {t_open:.1f} s"
    )
    s.close()
