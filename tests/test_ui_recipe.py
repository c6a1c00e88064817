"""Issue 21 in the app, offscreen, real SQLite and files, against the local fake LLM server:
the pre-label dialog compares models side by side (intervals, counts, the paired test's
verdict), lists the folder's prompt versions and labels with the one chosen ("Use this
prompt", remembered per folder); the diverse-subset dialog selects, saves, cancels, says
when there are no embeddings, and the pre-label dialog then picks its pairs from it."""

from __future__ import annotations

import json
import re
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("openai")

from conftest import UI_TIMEOUT_MS, open_window

from joyq_studio import subset as subset_mod
from joyq_studio.prelabel import prompts as pv
from joyq_studio.store import Project
from joyq_studio.subset import subset_hashes
from joyq_studio.ui.dialogs.prelabel import PrelabelDialog
from joyq_studio.ui.dialogs.subset import NO_EMBEDDINGS, SubsetDialog

sys.path.insert(0, str(Path(__file__).parent))
import test_prelabel
from fake_llm_server import FakeLLM
from test_prelabel import MODEL, SECRET, labelled_project

images = test_prelabel.images  # the module-scoped image folder fixture

T = UI_TIMEOUT_MS
INTERVAL = re.compile(r"^\d+% \(\d+%-\d+%, 40 pairs\)$")  # under "Agreement (95% interval, pairs)"


def serve(**kwargs) -> FakeLLM:
    fake = FakeLLM(model=MODEL, key=SECRET, position_bias=0.0, **kwargs)
    fake.url = fake.start()  # type: ignore[attr-defined]
    return fake


def dialog(qtbot, folder, url: str) -> PrelabelDialog:
    dlg = PrelabelDialog(folder)
    qtbot.addWidget(dlg)
    dlg.url.setText(url)
    dlg.model.setText(MODEL)
    dlg.price_in.setValue(0.15)
    dlg.price_out.setValue(0.6)
    dlg.show()
    return dlg


def prompt_texts(bodies: list[str]) -> list[str]:
    """The prompt text of every labelling request the fake received."""
    out = []
    for body in bodies:
        parts = json.loads(body)["messages"][0]["content"]
        out.append(next(p["text"] for p in parts if p["type"] == "text"))
    return out


def compare(qtbot, dlg, models: list[str]) -> list[list[str]]:
    for m in models:
        dlg.add_candidate(m)
    dlg.compare_pairs.setValue(40)
    dlg.confirm = lambda text: True
    dlg.compare_button.click()
    qtbot.waitUntil(lambda: "Spent" in dlg.compare_verdict.text(), timeout=T)
    qtbot.waitUntil(lambda: dlg.task is None, timeout=T)
    t = dlg.compare_table
    return [[t.item(r, c).text() for c in range(t.columnCount())] for r in range(t.rowCount())]


# -- compare candidates ------------------------------------------------------------------------
def test_compare_two_models_side_by_side_names_the_better_one(qtbot, images, monkeypatch):
    monkeypatch.setenv("JOYQ_LLM_API_KEY", SECRET)
    fake = serve(error_rate=0.05, other_models={"fake-vision-poor": 0.45})
    try:
        folder, _ = images
        with labelled_project(images, 40) as project:
            db = project.db_path
        dlg = dialog(qtbot, folder, fake.url)
        # declined at the estimate: nothing sent, and the estimate named both candidates
        asked: list[str] = []
        dlg.confirm = lambda text: asked.append(text) or False
        dlg.add_candidate(MODEL)
        dlg.add_candidate("fake-vision-poor", "1", "2")
        dlg.compare_pairs.setValue(40)
        dlg.compare_button.click()
        qtbot.waitUntil(lambda: "Nothing was sent" in dlg.status.text(), timeout=T)
        qtbot.waitUntil(lambda: dlg.task is None, timeout=T)
        assert fake.hits == 0 and dlg.compare_table.rowCount() == 0
        assert "fake-vision-poor" in asked[0] and "80 calls to send" in asked[0] and fake.url in asked[0]
        # accepted: two rows side by side, every figure with its count, the better one named
        while dlg.candidates.rowCount():
            dlg.candidates.removeRow(0)
        rows = compare(qtbot, dlg, [MODEL, "fake-vision-poor"])
        assert len(rows) == 2 and fake.paid_calls == 160
        good, poor = rows
        assert good[0].startswith(MODEL) and poor[0].startswith("fake-vision-poor")
        assert dlg.compare_table.horizontalHeaderItem(1).text() == "Agreement (95% interval, pairs)"
        for row in rows:
            assert INTERVAL.match(row[1]), row[1]
            assert row[2].endswith("% of 40") and row[3].endswith("% of 40")
            assert re.fullmatch(r"\$[0-9.]+ \(40 labels\)", row[4]), row[4]
        assert "[best]" in good[0] and "[best]" not in poor[0]
        assert good[5].startswith("better than fake-vision-poor") and poor[5].startswith("worse than " + MODEL)
        assert "is better than every other candidate" in dlg.compare_verdict.text()
        # the poor model's own prices (1 and 2 $/M) cost more per label than the default ones
        with Project(folder, db_path=db) as project:
            assert project.db.execute("SELECT COUNT(*) FROM llm_answers").fetchone()[0] == 160
        dlg.reject()
    finally:
        fake.stop()


def test_compare_equal_models_shows_no_difference(qtbot, images, monkeypatch):
    monkeypatch.setenv("JOYQ_LLM_API_KEY", SECRET)
    fake = serve(error_rate=0.15, other_models={"fake-vision-2": 0.15})
    try:
        folder, _ = images
        labelled_project(images, 40).close()
        dlg = dialog(qtbot, folder, fake.url)
        rows = compare(qtbot, dlg, [MODEL, "fake-vision-2"])
        assert len(rows) == 2
        assert all(INTERVAL.match(r[1]) for r in rows)
        assert all(r[5].startswith("no difference shown vs") and r[5].endswith("on 40 pairs") for r in rows)
        assert not any("[best]" in r[0] for r in rows)
        text = dlg.compare_verdict.text()
        assert "No candidate is better than every other" in text and "no difference shown on 40 pairs" in text
        dlg.reject()
    finally:
        fake.stop()


# -- prompt history and "Use this prompt" -------------------------------------------------------
MINE = (
    "Compare the two images (A first, B second) by their brightness only.\n"
    'Reply with one JSON object: {"better": "A", "reason": "One short sentence."}'
)


def test_prompt_history_and_use_this_prompt(qtbot, images, monkeypatch):
    monkeypatch.setenv("JOYQ_LLM_API_KEY", SECRET)
    fake = serve(error_rate=0.1)
    try:
        folder, _ = images
        with labelled_project(images, 12, embeddings=True) as project:
            first = pv.add_version(project, "Judge the quality.\nReply in JSON.", round=0, model=MODEL)
            pv.set_score(project, first.id, 30.0, 40, 0.6, 0.86, 0.012)
            mine = pv.add_version(project, MINE, parent=first.id, round=1, model=MODEL)
            pv.add_version(project, "I need more examples.", parent=mine.id, round=2, usable=False)
            db = project.db_path
        dlg = dialog(qtbot, folder, fake.url)
        t = dlg.prompt_table
        assert t.rowCount() == 3
        cells = [[t.item(r, c).text() for c in range(t.columnCount())] for r in range(3)]
        assert [c[0] for c in cells] == [str(first.id), str(mine.id), str(mine.id + 1)]
        assert cells[0][3] == "75% (95% interval 60%-86%, 40 pairs)" and cells[0][5] == first.hash
        assert cells[1][2] == str(first.id) and cells[1][1] == "1" and cells[1][3] == "not measured"
        assert cells[2][3] == "no prompt in the editor's reply"
        # the compare list offers the prompt above and the two usable versions
        assert dlg.compare_prompts.count() == 3
        # selecting shows the text; an unusable reply cannot be used
        dlg.select_version(mine.id + 1)
        assert dlg.prompt_text.toPlainText() == "I need more examples." and not dlg.use_prompt_button.isEnabled()
        dlg.select_version(mine.id)
        assert dlg.prompt_text.toPlainText().startswith("Compare the two images")
        dlg.use_prompt_button.click()
        assert f"version {mine.id}" in dlg.prompt_state.text() and not dlg.prompt_file.isEnabled()
        # the agreement check plans with it (declined: nothing sent)
        asked: list[str] = []
        dlg.confirm = lambda text: asked.append(text) or False
        dlg.check_button.click()
        qtbot.waitUntil(lambda: "Nothing was sent" in dlg.status.text(), timeout=T)
        qtbot.waitUntil(lambda: dlg.task is None, timeout=T)
        assert f"prompt {mine.hash}" in asked[0] and fake.hits == 0
        # the run sends that prompt's text, and its labels carry its hash
        dlg.confirm = lambda text: True
        dlg.own_trust.setChecked(True)
        dlg.run_pairs.setValue(4)
        dlg.run_button.click()
        qtbot.waitUntil(lambda: dlg.run_label.text().startswith("Labelled"), timeout=T)
        qtbot.waitUntil(lambda: dlg.task is None, timeout=T)
        sent = prompt_texts(fake.bodies)
        assert sent and set(sent) == {mine.text}
        with Project(folder, db_path=db) as project:
            sources = {r.source for r in project.comparison_records() if r.source}
        assert sources == {f"llm:{MODEL}:{mine.hash}"}
        dlg.reject()
        # remembered for this folder (the key never is)
        again = dialog(qtbot, folder, fake.url)
        assert again.prompt_version is not None and again.prompt_version.id == mine.id
        again.prompt_clear.click()
        assert again.prompt_version is None and again.prompt_file.isEnabled()
        again.reject()
        assert dialog(qtbot, folder, fake.url).prompt_version is None
        from joyq_studio.ui.util import settings

        assert SECRET not in Path(settings().fileName()).read_text()
    finally:
        fake.stop()


# -- the diverse subset --------------------------------------------------------------------------
def test_subset_dialog_chooses_saves_cancels_and_feeds_prelabelling(qtbot, folder40, monkeypatch):
    monkeypatch.setenv("JOYQ_LLM_API_KEY", SECRET)
    w = open_window(qtbot, folder40)
    dlg = w.choose_subset()
    assert isinstance(dlg, SubsetDialog) and dlg.run_button.isEnabled()
    assert dlg.sizes.text() == (
        "Chooses 20 of the 40 images with an embedding, in all 64 embedding dimensions. "
        "About 1 s on a 2-core computer (n \u00d7 k \u00d7 d)."
    )
    dlg.use_dims.setChecked(True)
    dlg.dims.setValue(16)
    assert "in 16 of the 64 embedding dimensions." in dlg.sizes.text()
    dlg.use_dims.setChecked(False)
    dlg.count.setValue(10)
    dlg.seed.setValue(3)
    dlg.run_button.click()
    qtbot.waitUntil(lambda: dlg.status.text().startswith("Chose 10 of 40"), timeout=T)
    qtbot.waitUntil(lambda: dlg.task is None, timeout=T)
    assert "Saved as this folder's subset" in dlg.status.text() and "Current subset: 10 images" in dlg.current.text()
    with Project(folder40) as p:
        chosen = subset_hashes(p)
    assert len(chosen) == 10 == len(set(chosen))

    # cancel: the selection stops and the stored subset is left as it was
    started, gate = threading.Event(), threading.Event()
    real = subset_mod.farthest_point

    def gated(x, count, seed=0, progress=None, cancel=None):
        def held(done, total):
            if progress:
                progress(done, total)
            started.set()
            gate.wait(10)

        return real(x, count, seed=seed, progress=held, cancel=cancel)

    monkeypatch.setattr(subset_mod, "farthest_point", gated)
    dlg.count.setValue(20)
    dlg.run_button.click()
    qtbot.waitUntil(started.is_set, timeout=T)
    assert dlg.cancel_button.isEnabled() and not dlg.run_button.isEnabled()
    dlg.cancel_button.click()
    gate.set()
    qtbot.waitUntil(lambda: "Cancelled" in dlg.status.text(), timeout=T)
    qtbot.waitUntil(lambda: dlg.task is None, timeout=T)
    assert dlg.run_button.isEnabled()
    with Project(folder40) as p:
        assert subset_hashes(p) == chosen
    monkeypatch.setattr(subset_mod, "farthest_point", real)

    # the pre-label dialog offers the subset as its pool, and its pairs come from it
    pre = w.prelabel()
    assert isinstance(pre, PrelabelDialog)
    assert pre.pool.itemText(1) == "the diverse subset (10 images)" and pre.pool.count() == 2
    # a new subset made while it is open updates the choice
    dlg.count.setValue(12)
    dlg.run_button.click()
    qtbot.waitUntil(lambda: dlg.status.text().startswith("Chose 12"), timeout=T)
    qtbot.waitUntil(lambda: dlg.task is None, timeout=T)
    qtbot.waitUntil(lambda: pre.pool.itemText(1) == "the diverse subset (12 images)", timeout=T)
    with Project(folder40) as p:
        members = set(subset_hashes(p))
    pre.pool.setCurrentIndex(1)
    fake = serve(error_rate=0.1)
    try:
        pre.url.setText(fake.url)
        pre.model.setText(MODEL)
        pre.own_trust.setChecked(True)
        pre.run_pairs.setValue(6)
        pre.confirm = lambda text: True
        pre.run_button.click()
        qtbot.waitUntil(lambda: pre.run_label.text().startswith("Labelled"), timeout=T)
        qtbot.waitUntil(lambda: pre.task is None, timeout=T)
    finally:
        fake.stop()
    with Project(folder40) as p:
        llm = [r for r in p.comparison_records() if r.kind == "llm"]
    assert llm and all(r.a in members and r.b in members for r in llm)
    pre.reject()
    # fixed-k batches come from the subset too, also when a new one is saved while in use
    w.set_pair_source("fixed-k")
    s = w.controller.session
    qtbot.waitUntil(lambda: "diverse subset (12 of 40 images)" in s.compare.note, timeout=T)  # built behind
    dlg.count.setValue(8)
    dlg.run_button.click()
    qtbot.waitUntil(lambda: dlg.status.text().startswith("Chose 8"), timeout=T)
    qtbot.waitUntil(lambda: "diverse subset (8 of 40 images)" in s.compare.note, timeout=T)
    with Project(folder40) as p:
        members = set(subset_hashes(p))
    for _ in range(6):
        pair = s.compare.next_pair()
        assert pair.left in members and pair.right in members
        s.compare.skip(pair)
    # asking for more than the folder holds takes all of them, and says so
    dlg.count.setValue(100)
    assert dlg.sizes.text().startswith("Takes all 40 images")
    dlg.run_button.click()
    qtbot.waitUntil(lambda: dlg.status.text().startswith("Took all 40"), timeout=T)
    qtbot.waitUntil(lambda: dlg.task is None, timeout=T)
    dlg.reject()


def test_subset_without_embeddings_says_so(qtbot, tmp_path):
    from PIL import Image

    folder = tmp_path / "plain"
    folder.mkdir()
    for i in range(5):
        Image.new("RGB", (16, 16), (40 * i, 0, 0)).save(folder / f"im{i}.png")
    with Project(folder) as p:
        p.scan()
    dlg = SubsetDialog(folder)
    qtbot.addWidget(dlg)
    dlg.show()
    assert dlg.status.text() == NO_EMBEDDINGS and not dlg.run_button.isEnabled()
    assert dlg.sizes.text() == "5 readable images, none with an embedding."
    dlg.start()  # a stray call does nothing either
    assert dlg.task is None
    with Project(folder) as p:
        assert subset_hashes(p) == []
