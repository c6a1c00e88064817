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
