"""Issue 24, items 3 and 4: a project made by an older version (its head trained on the older
64-wide demo tower, shipped in tests/data/old-demo-project) is refused in one sentence that says
what to do, and recovers with `joyq adopt FOLDER base`; the version record names its tower."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from joyq_studio.cli import main
from joyq_studio.model import ModelError, load_model, model_id
from joyq_studio.store import Project, project_dir

FIXTURE = Path(__file__).parent / "data" / "old-demo-project"


@pytest.fixture
def old_project(tmp_path) -> Path:
    """The fixture put in place as if the older app had made it here."""
    folder = tmp_path / "images"
    shutil.copytree(FIXTURE / "images", folder)
    pdir = project_dir(folder)
    shutil.copytree(FIXTURE / "project", pdir)
    with sqlite3.connect(pdir / "project.sqlite") as db:  # the paths it was made at -> here
        (vid,) = db.execute("SELECT id FROM versions").fetchone()
        db.execute("UPDATE versions SET path = ?", (str(pdir / "versions" / vid),))
        db.execute("UPDATE meta SET value = ? WHERE key = 'folder'", (str(folder),))
    return folder


def _one_sentence_about_the_tower(text: str) -> None:
    assert "Traceback" not in text and "wrong shape" not in text
    assert "another tower" in text and "adopt" in text and "base" in text and "retrain" in text


def test_fixture_is_small_and_from_the_64_wide_tower():
    size = sum(f.stat().st_size for f in FIXTURE.rglob("*") if f.is_file())
    assert size < 1_000_000
    head = next((FIXTURE / "project" / "versions").glob("*/head.safetensors"))
    from safetensors.torch import load_file

    assert load_file(str(head))["weight"].shape == (1, 64)


def test_loading_a_head_on_another_tower_is_one_sentence_that_says_what_to_do(old_project):
    with Project(old_project) as p:
        spec = p.active_model_spec("x")
    with pytest.raises(ModelError) as e:
        load_model(spec)
    _one_sentence_about_the_tower(str(e.value))
    assert str(e.value).count(". ") == 0  # one sentence


@pytest.mark.parametrize("command", [["score"], ["train", "--mode", "quick"], ["adopt", "VERSION"]])
def test_score_train_and_adopt_refuse_clearly(old_project, capsys, command):
    with Project(old_project) as p:
        vid = p.active_version
    args = [c if c != "VERSION" else vid for c in command]
    code = main([args[0], str(old_project), *args[1:]])
    out = capsys.readouterr()
    assert code == 2, out
    _one_sentence_about_the_tower(out.err)


def test_adopt_base_recovers_and_names_the_folders_base(old_project, capsys):
    assert main(["adopt", str(old_project), "base"]) == 0
    out = capsys.readouterr().out
    assert "rolled back to the base model demo" in out  # the folder's base, not the app's default
    assert main(["score", str(old_project)]) == 0
    assert "scored 12" in capsys.readouterr().out
    with Project(old_project) as p:
        assert p.active_version is None and p.base_model == "demo"


def test_a_new_version_records_its_tower_and_is_checked_against_it(tmp_path):
    from joyq_studio.training.versions import save_head_version

    folder = tmp_path / "f"
    folder.mkdir()
    with Project(folder) as p:
        vid = save_head_version(p, "tiny", [0.0] * load_model("tiny").embed_dim, 0.0)
        v = p.version(vid)
    assert v is not None and v["tower"] == model_id(load_model("tiny")).tower
    assert load_model(v["path"]).source == v["path"]


@pytest.mark.parametrize("value", ["abc", "-1", "2.5"])
def test_bad_min_bucket_is_a_sentence_not_a_function_name(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as e:
        main(["export", str(tmp_path), "--min-bucket", value, "--csv", str(tmp_path / "x.csv")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "must be a bucket number" in err and "_bucket" not in err


def test_bad_numbers_name_what_they_must_be(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["score", str(tmp_path), "--batch-size", "many"])
    err = capsys.readouterr().err
    assert "must be a whole number, not 'many'" in err and "positive_int" not in err


def test_train_started_during_a_first_score_uses_the_folders_model(tmp_path, monkeypatch, capsys):
    """`joyq score FOLDER --model tiny` records the folder's model before its long scan, so a
    `joyq train` started meanwhile (another process, its own connection) starts from it."""
    import joyq_studio.cli.score as score_cli
    from joyq_studio.settings import DEFAULT_MODEL

    folder = tmp_path / "f"
    folder.mkdir()
    from PIL import Image

    for i in range(3):
        Image.new("RGB", (32, 32), (i * 80, 10, 10)).save(folder / f"{i}.png")
    seen = []
    real_scan = score_cli.scan_with_progress

    def scan(project):
        with Project(folder) as other:  # what train would read now
            seen.append(other.active_model_spec(DEFAULT_MODEL))
        return real_scan(project)

    monkeypatch.setattr(score_cli, "scan_with_progress", scan)
    assert main(["score", str(folder), "--model", "tiny"]) == 0
    assert seen == ["tiny"]
