"""Shared test set-up: every test gets its own data/cache dirs; Qt runs offscreen."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path_factory, monkeypatch):
    root = tmp_path_factory.mktemp("joyq-home")
    monkeypatch.setenv("JOYQ_DATA_DIR", str(root / "data"))
    monkeypatch.setenv("JOYQ_CACHE_DIR", str(root / "cache"))
    return root


@pytest.fixture(scope="session")
def demo_folder(tmp_path_factory) -> Path:
    """A small deterministic demo folder (60 images), shared read-only by tests."""
    from joyq_studio.demo import make_demo_folder

    folder = tmp_path_factory.mktemp("demo")
    make_demo_folder(folder, count=60, seed=0, size=256)
    return folder


# -- what the UI tests share (pytest-qt, offscreen) ---------------------------------------
UI_TIMEOUT_MS = 30_000  # generous: a busy CI box must not flake


@pytest.fixture(scope="module")
def folder40(tmp_path_factory) -> Path:
    """A 40-image demo folder per test module (the modules change it: captions, labels)."""
    from joyq_studio.demo import make_demo_folder

    folder = tmp_path_factory.mktemp("ui-demo") / "images"
    make_demo_folder(folder, count=40, seed=0, size=256)
    return folder


def open_window(qtbot, folder, model="tiny"):
    """The main window on ``folder``, scored with ``model``, with a pair on screen."""
    from joyq_studio.ui.window import MainWindow

    w = MainWindow()
    qtbot.addWidget(w)
    w.resize(1200, 800)
    w.show()
    c = w.controller
    assert c.open_folder(str(folder), model), c.last_error
    qtbot.waitUntil(lambda: not c.busy_scoring(), timeout=UI_TIMEOUT_MS)
    qtbot.waitUntil(w.compare.ready, timeout=UI_TIMEOUT_MS)
    # the pair source is built on the compare loop's worker: tests start once it is in place
    qtbot.waitUntil(lambda: c.session is None or c.session.compare is None or not c.session.compare.building)
    return w


def press(qtbot, w, key, modifier=None) -> None:
    """One key on the compare view, then wait until the next pair is on screen."""
    from PySide6.QtCore import Qt

    qtbot.keyClick(w.compare, key, modifier if modifier is not None else Qt.KeyboardModifier.NoModifier)
    qtbot.waitUntil(w.compare.ready, timeout=UI_TIMEOUT_MS)
