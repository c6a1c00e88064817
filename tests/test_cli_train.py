"""`joyq train | eval | versions | adopt` end to end on a small demo folder."""

from __future__ import annotations

import json

import pytest

from joyq_studio.cli import main
from joyq_studio.store import Project


@pytest.fixture
def demo(tmp_path):
    folder = tmp_path / "demo"
    assert main(["demo", str(folder), "--count", "40"]) == 0
    assert main(["score", str(folder), "--model", "demo", "--workers", "0"]) == 0
    assert main(["import-pairs", str(folder), str(folder / "pairs.json")]) == 0
    return folder


def test_train_versions_adopt_and_roll_back(demo, capsys):
    capsys.readouterr()
    assert main(["versions", str(demo)]) == 0
    assert "no trained versions yet; the model in use is demo" in capsys.readouterr().out

    assert main(["train", str(demo), "--adopt"]) == 0  # starts from the model the folder was scored with
    out = capsys.readouterr().out
    assert "new version:" in out and "adopted" in out
    with Project(demo) as p:
        version = p.active_version
        assert version and p.version(version)["parent"] == "demo"

    assert main(["versions", str(demo)]) == 0
    listing = capsys.readouterr().out
    assert f"* {version}" in listing

    assert main(["adopt", str(demo), "base"]) == 0
    with Project(demo) as p:
        assert p.active_version is None
    assert main(["adopt", str(demo), version]) == 0
    assert "is now active" in capsys.readouterr().out
    assert main(["adopt", str(demo), "no-such-version"]) == 2
    assert "no-such-version" in capsys.readouterr().err


def test_eval_prints_json_metrics(demo, capsys):
    capsys.readouterr()
    assert main(["eval", "--pairs", str(demo / "pairs.json"), "--model", "demo", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "demo" and report["metrics"]["n"] > 0
    assert 0.5 < report["metrics"]["accuracy"] <= 1.0  # the demo tower sees quality


def test_train_needs_a_folder_or_pairs(capsys):
    assert main(["train"]) == 2
    assert "either a FOLDER" in capsys.readouterr().err
