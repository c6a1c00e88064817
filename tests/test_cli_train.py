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


def test_clicks_pooled_across_folders_count_once_per_image(tmp_path, capsys):
    """`--pool`: another folder's comparisons train the head too; an image in both folders
    (same bytes) is one item."""
    import shutil

    from joyq_studio.training import pairs_from_project

    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["demo", str(first), "--count", "24"]) == 0
    assert main(["demo", str(second), "--count", "24", "--seed", "1"]) == 0
    for folder in (first, second):
        assert main(["score", str(folder), "--model", "demo", "--workers", "0"]) == 0
        assert main(["import-pairs", str(folder), str(folder / "pairs.json")]) == 0
    with Project(first) as a:
        shared_hash, shared_rel = next((h, rel) for h, rel in a.image_paths() if h in pairs_from_project(a).keys)
    shutil.copy(first / shared_rel, second / "shared.png")  # one image in both folders
    with Project(first) as a, Project(second) as b:
        b.scan()
        other = next(h for h, _ in b.image_paths() if h != shared_hash)
        b.add_comparison(shared_hash, other, 1.0)
        alone, theirs, pooled = pairs_from_project(a), pairs_from_project(b), pairs_from_project(a, [b])
        assert len(pooled.a) == len(alone.a) + len(theirs.a)
        union = set(alone.keys) | set(theirs.keys)
        assert set(pooled.keys) == union and len(union) < len(alone.keys) + len(theirs.keys)
    capsys.readouterr()
    assert main(["train", str(first), "--pool", str(second)]) == 0
    with Project(first) as a:
        assert "pooled folder" in a.versions()[0]["source"]


def test_trains_on_labels_of_trust_below_one_without_held_out_clicks(tmp_path, capsys):
    """Star or LLM labels (weight < 1) and no held-out clicks of the user: the test pairs are cut
    from them, and are judged by their side (this crashed with a traceback before)."""
    folder = tmp_path / "stars"
    assert main(["demo", str(folder), "--count", "40"]) == 0
    assert main(["score", str(folder), "--model", "demo", "--workers", "0"]) == 0
    with Project(folder) as p:
        assert not p.comparison_records()
        hashes = [h for h, _ in p.image_paths()]
        rows = []
        for i in range(len(hashes)):
            for j in range(i + 1, min(i + 6, len(hashes))):
                rows.append((hashes[i], hashes[j], 1.0 if (i + j) % 3 else 0.0, "train", "stars", "stars", 0.8))
        p.add_comparisons(rows)
    capsys.readouterr()
    assert main(["train", str(folder)]) == 0
    assert "new version:" in capsys.readouterr().out
