"""The pre-label dialog, offscreen, against the local fake LLM server: nothing is sent on
opening or when the user declines the estimate; the agreement check shows its interval;
a run stores labels; cancel keeps what was paid; the key is never shown or saved."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("openai")

from joyq_studio.store import Project
from joyq_studio.ui.dialogs.prelabel import PRIVACY, PrelabelDialog

sys.path.insert(0, str(Path(__file__).parent))
import test_prelabel
from fake_llm_server import FakeLLM
from test_prelabel import MODEL, SECRET, labelled_project

images = test_prelabel.images  # the module-scoped image folder fixture

T = 30_000


@pytest.fixture
def fake():
    server = FakeLLM(model=MODEL, key=SECRET, error_rate=0.15, position_bias=0.1, seed=11)
    server.url = server.start()
    yield server
    server.stop()


def make_dialog(qtbot, folder, fake) -> PrelabelDialog:
    dlg = PrelabelDialog(folder)
    qtbot.addWidget(dlg)
    dlg.url.setText(fake.url)
    dlg.model.setText(MODEL)
    dlg.price_in.setValue(0.15)
    dlg.price_out.setValue(0.6)
    dlg.show()
    return dlg


def test_dialog_checks_agreement_then_labels(qtbot, images, fake, monkeypatch):
    monkeypatch.setenv("JOYQ_LLM_API_KEY", SECRET)
    folder, _ = images
    with labelled_project(images, 40, held_out=10, embeddings=True) as project:
        db = project.db_path
    dlg = make_dialog(qtbot, folder, fake)
    assert "sends the images" in PRIVACY and "to the endpoint" in PRIVACY and "Nothing is sent until" in PRIVACY
    assert dlg.findChild(type(dlg.status), "privacy").text() == PRIVACY
    assert dlg.key_state.text() == "key found" and SECRET not in dlg.key_state.text()
    # declined at the estimate: nothing sent
    asked: list[str] = []
    dlg.confirm = lambda text: asked.append(text) or False
    dlg.check_button.click()
    qtbot.waitUntil(lambda: "Nothing was sent" in dlg.status.text(), timeout=T)
    assert fake.hits == 0 and "about $" in asked[0] and fake.url in asked[0]
    # accepted: the agreement with its interval and count
    dlg.confirm = lambda text: True
    dlg.agree_pairs.setValue(40)
    qtbot.waitUntil(lambda: dlg.task is None, timeout=T)
    dlg.check_button.click()
    qtbot.waitUntil(lambda: "95% interval" in dlg.agreement_label.text(), timeout=T)
    qtbot.waitUntil(lambda: dlg.task is None, timeout=T)
    assert "held out" in dlg.agreement_label.text() and fake.paid_calls == 80
    # label pairs; the window hears how many
    added: list[int] = []
    dlg.labels_added.connect(added.append)
    dlg.run_pairs.setValue(8)
    dlg.run_button.click()
    qtbot.waitUntil(lambda: dlg.run_label.text().startswith("Labelled"), timeout=T)
    qtbot.waitUntil(lambda: dlg.task is None, timeout=T)
    with Project(folder, db_path=db) as project:
        labels = [r for r in project.comparison_records() if r.source]
    assert added == [len(labels)] and 0 < len(labels) <= 8
    assert {(r.split, r.kind) for r in labels} == {("train", "llm")}
    dlg.reject()
    # the settings are remembered, the key is not
    from joyq_studio.ui.util import settings

    path = Path(settings().fileName())
    assert fake.url in path.read_text() and SECRET not in path.read_text()
    assert SECRET.encode() not in db.read_bytes()


def test_dialog_cancel_keeps_what_was_paid(qtbot, images, monkeypatch):
    monkeypatch.setenv("JOYQ_LLM_API_KEY", SECRET)
    slow = FakeLLM(model=MODEL, error_rate=0.1, position_bias=0.0, slow=1.0, slow_s=0.15, seed=12)
    url = slow.start()
    try:
        folder, _ = images
        with labelled_project(images, 10) as project:
            db = project.db_path
        dlg = PrelabelDialog(folder)
        qtbot.addWidget(dlg)
        dlg.url.setText(url)
        dlg.model.setText(MODEL)
        dlg.timeout.setValue(5)
        dlg.concurrency.setValue(2)
        dlg.own_trust.setChecked(True)
        dlg.run_pairs.setValue(30)
        dlg.confirm = lambda text: True
        dlg.show()
        dlg.run_button.click()
        qtbot.waitUntil(lambda: "of 60 calls" in dlg.status.text() and slow.hits >= 4, timeout=T)
        dlg.cancel_button.click()
        qtbot.waitUntil(lambda: "Cancelled" in dlg.status.text(), timeout=T)
        qtbot.waitUntil(lambda: dlg.task is None, timeout=T)
        assert dlg.run_button.isEnabled() and not dlg.cancel_button.isEnabled()
        hits = slow.hits
        assert hits < 60
        with Project(folder, db_path=db) as project:
            stored = project.db.execute("SELECT COUNT(*) FROM llm_answers").fetchone()[0]
        assert stored == hits  # every reply received was kept
    finally:
        slow.stop()
