"""Issue 13, hostile input and faults: nothing written outside the folder, every unreadable
entry named, no traceback on corrupt state, leftovers of killed runs cleaned up."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from joyq_studio import model as M
from joyq_studio.cli import main
from joyq_studio.export import ExportError, apply_caption_export, plan_caption_export, undo_last_export
from joyq_studio.fsio import TEMP_MARK, temp_path
from joyq_studio.model import ModelError, load_model
from joyq_studio.ranking import Calibration
from joyq_studio.store import Project, StoreError, database_error, project_dir
from joyq_studio.training import TrainingError, load_pairs_json

FAST = ["--model", "tiny", "--device", "cpu", "--workers", "0", "--batch-size", "8"]


def make_image(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(path)
    return path


def cal() -> Calibration:
    return Calibration(method="a", k=10, score_min=0.0, score_max=9.0, labels=[])


def score_all(p: Project) -> None:
    p.save_scores("m1", [(h, float(i % 10)) for i, (h, _) in enumerate(p.image_paths())])
    p.set_current_model_key("m1")


def tree(folder: Path) -> dict[str, bytes]:
    return {q.relative_to(folder).as_posix(): q.read_bytes() for q in sorted(folder.rglob("*")) if q.is_file()}


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# -- 1. symbolic links: not followed by default; captions never land outside the real folder --
@pytest.fixture
def linked(tmp_path):
    """images/ with a.png and linkdir -> elsewhere/dir (img2.png with a caption, img.png without)."""
    folder, elsewhere = tmp_path / "images", tmp_path / "elsewhere" / "dir"
    make_image(folder / "a.png")
    make_image(elsewhere / "img2.png", 1)
    make_image(elsewhere / "img.png", 2)
    (elsewhere / "img2.txt").write_text("a cat", encoding="utf-8")
    (folder / "linkdir").symlink_to(elsewhere, target_is_directory=True)
    return folder, elsewhere


def test_symlinked_folders_are_not_followed_by_default(linked):
    folder, _ = linked
    with Project(folder) as p:
        report = p.scan()
        assert [rel for _, rel in p.image_paths()] == ["a.png"]
        assert report.links_not_followed == [str(folder / "linkdir")] and not report.unreadable
        p.set_follow_links(True)
        p.scan()
        assert sorted(rel for _, rel in p.image_paths()) == ["a.png", "linkdir/img.png", "linkdir/img2.png"]
    with Project(folder) as p:
        assert p.follow_links  # a project setting: the app and every command scan the same files


def test_caption_export_never_writes_through_a_symlinked_folder(linked):
    folder, elsewhere = linked
    before = tree(elsewhere)
    with Project(folder) as p:
        p.set_follow_links(True)
        p.scan()
        score_all(p)
        plan = plan_caption_export(p, cal())
        assert [c.rel for c in plan] == ["a.txt"]
        skipped = dict(plan.skipped)
        assert set(skipped) == {"linkdir/img.txt", "linkdir/img2.txt"}
        assert "outside" in skipped["linkdir/img2.txt"] and str(elsewhere) in skipped["linkdir/img2.txt"]
        apply_caption_export(p, plan)
        assert tree(elsewhere) == before
        assert (folder / "a.txt").exists()


def test_folder_swapped_for_a_link_after_planning_is_refused(tmp_path):
    folder, elsewhere = tmp_path / "images", tmp_path / "elsewhere"
    make_image(folder / "sub" / "b.png")
    elsewhere.mkdir()
    with Project(folder) as p:
        p.scan()
        score_all(p)
        plan = plan_caption_export(p, cal())
        assert [c.rel for c in plan] == ["sub/b.txt"]
        (folder / "sub").rename(tmp_path / "moved")
        (folder / "sub").symlink_to(elsewhere, target_is_directory=True)
        with pytest.raises(ExportError, match="outside.*nothing was changed"):
            apply_caption_export(p, plan)
        assert list(elsewhere.iterdir()) == []


def test_undo_does_not_write_through_a_folder_swapped_for_a_link(tmp_path):
    folder, elsewhere = tmp_path / "images", tmp_path / "elsewhere"
    make_image(folder / "sub" / "b.png")
    (folder / "sub" / "b.txt").write_text("dog", encoding="utf-8")
    with Project(folder) as p:
        p.scan()
        score_all(p)
        apply_caption_export(p, plan_caption_export(p, cal()))
        (folder / "sub").rename(elsewhere)  # the exported caption now lives elsewhere ...
        (folder / "sub").symlink_to(elsewhere, target_is_directory=True)  # ... reached through a link
        report = undo_last_export(p)
        assert report.changed_since == ["sub/b.txt"] and report.restored == 0
        assert (elsewhere / "b.txt").read_text(encoding="utf-8") != "dog"


def test_score_follow_links_flag(linked, capsys):
    folder, _ = linked
    code, out, _ = run(capsys, "score", folder, *FAST)
    assert code == 0 and "scored 1," in out and "--follow-links" in out and "linkdir" in out
    code, out, _ = run(capsys, "score", folder, *FAST, "--follow-links")
    assert code == 0 and "scored 2, already done 1" in out
    code, out, _ = run(capsys, "score", folder, *FAST)  # remembered for the folder
    assert code == 0 and "already done 3" in out
    code, out, _ = run(capsys, "score", folder, *FAST, "--no-follow-links")
    assert code == 0 and "already done 1" in out


# -- 3. unreadable entries found by the scan are named, exit 1 ------------------------------
def test_broken_links_loops_and_non_utf8_names_are_reported(tmp_path, capsys):
    folder = tmp_path / "images"
    make_image(folder / "good.png")
    (folder / "gone.jpg").symlink_to(folder / "does-not-exist.jpg")
    (folder / "loop").symlink_to(folder / "loop")
    (folder / "sub").mkdir()
    (folder / "sub" / "up").symlink_to(folder, target_is_directory=True)
    make_image(Path(os.fsdecode(os.fsencode(folder) + b"/caf\xe9.png")))
    code, out, _ = run(capsys, "score", folder, *FAST)
    assert code == 1
    assert "failed 3" in out
    lines = out.splitlines()
    assert any("gone.jpg" in line and "broken symbolic link" in line for line in lines), out
    assert any(line.rstrip().endswith("left out") and "/loop" in line and "loop" in line for line in lines), out
    assert any("caf" in line and "UTF-8" in line for line in lines), out
    with Project(folder) as p:  # following links: the link back up is a loop, reported too
        p.set_follow_links(True)
        report = p.scan()
        assert any(path.endswith("sub/up") and "loop" in why for path, why in report.unreadable)


# -- 4. long names: temporary names fit, and the dry run sees what the real run would hit -----
def test_a_long_file_name_is_exported_like_any_other(tmp_path):
    folder = tmp_path / "images"
    long_name = "x" * 251 + ".png"  # 255 bytes: the longest allowed
    make_image(folder / long_name)
    make_image(folder / "b.png", 1)
    assert len(os.fsencode(temp_path(folder / long_name.replace(".png", ".txt")).name)) <= 255
    with Project(folder) as p:
        p.scan()
        score_all(p)
        plan = plan_caption_export(p, cal())
        assert len(plan) == 2 and not plan.skipped
        apply_caption_export(p, plan)
    assert (folder / ("x" * 251 + ".txt")).exists()


def test_dry_run_reports_a_caption_whose_folder_is_read_only(tmp_path, monkeypatch):
    """Modifying a caption writes a temporary file beside it: in a read-only folder the real
    run would fail, so the plan (the dry run) must say so instead of promising success."""
    folder = tmp_path / "images"
    make_image(folder / "locked" / "a.png")
    (folder / "locked" / "a.txt").write_text("cat", encoding="utf-8")
    make_image(folder / "b.png", 1)
    real_access = os.access
    monkeypatch.setattr(
        os,
        "access",
        lambda path, mode, **kw: False if Path(path) == folder / "locked" else real_access(path, mode, **kw),
    )
    with Project(folder) as p:
        p.scan()
        score_all(p)
        plan = plan_caption_export(p, cal())
        assert [c.rel for c in plan] == ["b.txt"]
        assert dict(plan.skipped) == {"locked/a.txt": "cannot be modified: its folder is read-only"}


# -- 5. a damaged or empty database ----------------------------------------------------------
def _corrupt_table(db_path: Path, table: str) -> None:
    db = sqlite3.connect(db_path)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    with open(db_path, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\xa5" * page_size)


def test_corrupt_data_page_is_one_sentence_exit_2(tmp_path, capsys):
    folder = tmp_path / "images"
    for i in range(3):
        make_image(folder / f"{i}.png", i)
    with Project(folder) as p:
        p.scan()
        db_path = p.db_path
    _corrupt_table(db_path, "files")
    code, out, err = run(capsys, "score", folder, *FAST)
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(db_path) in err and "damaged" in err and "move that file aside" in err
    with pytest.raises(StoreError, match="damaged"), Project(folder) as p:
        p.image_paths()


def test_zero_byte_database_is_recreated_and_says_so(tmp_path, capsys):
    folder = tmp_path / "images"
    make_image(folder / "a.png")
    db_path = project_dir(folder.resolve()) / "project.sqlite"
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"")
    code, out, err = run(capsys, "score", folder, *FAST)
    assert code == 0 and "scored 1" in out
    assert f"warning: {db_path}: the project database was empty (0 bytes)" in err and "new project" in err
    with Project(folder) as p:
        assert p.warnings == []


# -- 6. hostile JSON: one sentence, never a RecursionError ------------------------------------
def nested(depth: int = 100_000) -> str:
    return '{"train": ' + "[" * depth + "]" * depth + "}"


def test_deeply_nested_dataset_json(tmp_path, capsys):
    folder = tmp_path / "images"
    make_image(folder / "a.png")
    ds = tmp_path / "deep.json"
    ds.write_text(nested())
    with pytest.raises(TrainingError, match="nested too deeply"):
        load_pairs_json(ds)
    for argv in (["import-pairs", folder, ds], ["train", "--pairs", ds], ["eval", "--pairs", ds, "--model", "tiny"]):
        code, _, err = run(capsys, *argv)
        assert code == 2 and "nested too deeply" in err and err.count("\n") == 1, (argv, err)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved")
    M.save_model(M.tiny_model(), folder)
    return folder


@pytest.mark.parametrize(
    "vision, words",
    [
        ({"hidden_size": "abc"}, "hidden_size must be a whole number"),
        ({"patch_size": 0}, "patch_size is 0, outside"),
        ({"hidden_size": 1e9}, "hidden_size must be a whole number"),
        ({"hidden_size": 1_000_000_000}, "hidden_size is 1000000000, outside"),
        ([1, 2], "vision_config must be a JSON object"),
        ({"hidden_size": 65, "num_attention_heads": 4}, "not a multiple"),
        ({"layer_norm_eps": "abc"}, "not a valid SigLIP configuration"),
        ({"hidden_act": "nope"}, "cannot build a SigLIP tower"),
    ],
)
def test_bad_vision_config_is_one_sentence(tmp_path, saved, vision, words):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes((saved / "model.safetensors").read_bytes())
    (folder / "config.json").write_text(json.dumps({"model_type": "siglip", "vision_config": vision}))
    with pytest.raises(ModelError, match=words) as info:
        load_model(str(folder))
    assert str(folder) in str(info.value) and "\n" not in str(info.value)


def test_config_json_not_an_object_or_nested_too_deeply(tmp_path, saved):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes((saved / "model.safetensors").read_bytes())
    (folder / "config.json").write_text("[1]")
    with pytest.raises(ModelError, match="must hold a JSON object"):
        load_model(str(folder))
    (folder / "config.json").write_text(nested())
    with pytest.raises(ModelError, match="nested too deeply"):
        load_model(str(folder))


def _version(folder: Path, record) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "version.json").write_text(json.dumps(record))
    save_file(M.head_state(M.tiny_model()), str(folder / "head.safetensors"))
    return folder


@pytest.mark.parametrize(
    "record, words",
    [
        (["tiny"], "must be a JSON object"),
        ({"tower_spec": 5}, "tower_spec must be a string"),
        ({"tower_spec": ["tiny"]}, "tower_spec must be a string"),
        ({}, "has no tower_spec"),
    ],
)
def test_bad_version_json_is_one_sentence(tmp_path, record, words):
    v = _version(tmp_path / "v1", record)
    with pytest.raises(ModelError, match=words) as info:
        load_model(str(v))
    assert str(v / "version.json") in str(info.value)


def test_version_pointing_at_itself_or_in_a_circle(tmp_path):
    v = _version(tmp_path / "v1", {})
    (v / "version.json").write_text(json.dumps({"tower_spec": str(v)}))
    with pytest.raises(ModelError, match="points at this version itself"):
        load_model(str(v))
    w = _version(tmp_path / "v2", {"tower_spec": str(v)})
    (v / "version.json").write_text(json.dumps({"tower_spec": str(w)}))
    with pytest.raises(ModelError, match="chain"):
        load_model(str(v))


# -- 7. leftovers of a killed export are removed by the next export or undo -------------------
def test_leftover_temporary_files_are_cleaned_by_the_next_export_and_undo(tmp_path):
    folder = tmp_path / "images"
    make_image(folder / "a.png")
    make_image(folder / "sub" / "b.png", 1)
    dead = 2**22 + 12345  # above any pid a test machine hands out
    leftovers = [folder / f".a.txt{TEMP_MARK}{dead}", folder / "sub" / f".b.txt{TEMP_MARK}{dead}"]
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        alive = folder / f".x.txt{TEMP_MARK}{sleeper.pid}"  # another export still running: kept
        for q in [*leftovers, alive]:
            q.write_bytes(b"")
        with Project(folder) as p:
            p.scan()
            score_all(p)
            apply_caption_export(p, plan_caption_export(p, cal()))
            assert not any(q.exists() for q in leftovers) and alive.exists()
            for q in leftovers:
                q.write_bytes(b"")
            undo_last_export(p)
            assert not any(q.exists() for q in leftovers) and alive.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


# -- 8. smaller ones ---------------------------------------------------------------------------
def test_export_dry_run_into_a_closed_pipe_is_quiet(tmp_path):
    folder = tmp_path / "images"
    for i in range(300):
        make_image(folder / f"img{i:03d}.png", i)
    with Project(folder) as p:
        p.scan()
        score_all(p)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cli = "import sys; from joyq_studio.cli import main; sys.exit(main())"
    proc = subprocess.run(
        f'"{sys.executable}" -c "{cli}" export "{folder}" --captions --dry-run | head -n 2',
        shell=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert len(proc.stdout.splitlines()) == 2
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


def test_full_disk_while_scoring_says_what_was_kept(tmp_path, monkeypatch):
    from joyq_studio import scoring

    folder = tmp_path / "images"
    for i in range(5):
        make_image(folder / f"{i}.png", i)
    real = Project.save_results
    calls = []

    def full_on_second(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:  # the second batch finds the disk full (SQLITE_FULL, as SQLite reports it)
            e = sqlite3.OperationalError("database or disk is full")
            e.sqlite_errorcode = 13
            raise database_error(self.db_path, e, "could not save, nothing was changed")
        return real(self, *a, **k)

    monkeypatch.setattr(Project, "save_results", full_on_second)
    with Project(folder) as p:
        p.scan()
        with pytest.raises(StoreError) as info:
            scoring.score_project(p, load_model("tiny"), batch_size=2, workers=0)
        msg = str(info.value)
        assert "disk is full" in msg and "nothing was changed" not in msg
        assert "the 2 images scored before it in this run were saved" in msg and "\n" not in msg
        assert len(p.scored_hashes(next(iter({k for (k,) in p.db.execute("SELECT model FROM scores")})))) == 2


def test_nan_head_weights_name_the_checkpoint(tmp_path):
    v = _version(tmp_path / "v1", {"tower_spec": "tiny"})
    head = M.head_state(M.tiny_model())
    head["weight"][0, 3] = float("nan")
    save_file(head, str(v / "head.safetensors"))
    with pytest.raises(ModelError, match="NaN") as info:
        load_model(str(v))
    assert str(v) in str(info.value)


def test_nan_scores_never_reach_the_database(tmp_path):
    from joyq_studio import scoring

    folder = tmp_path / "images"
    make_image(folder / "a.png")
    model = load_model("tiny")
    with torch.no_grad():
        model.head.weight.fill_(float("nan"))
    with Project(folder) as p:
        p.scan()
        with pytest.raises(ModelError, match="not numbers"):
            scoring.score_project(p, model, workers=0)


def test_huge_json_strings_are_not_echoed(tmp_path, capsys):
    folder = tmp_path / "images"
    make_image(folder / "a.png")
    huge = "x" * 10_000_000
    ds = tmp_path / "huge.json"
    for content in ({"train": [["a.png", "b.png", huge]]}, {huge: []}, {"train": [[huge, 1]]}):
        ds.write_text(json.dumps(content))
        for argv in (["import-pairs", folder, ds], ["train", "--pairs", ds]):
            code, out, err = run(capsys, *argv)
            assert code == 2 and len(err) < 1000 and len(out) < 2000, (argv, len(err))


def test_damaged_manifests_are_skipped_by_undo_not_a_traceback(tmp_path):
    folder = tmp_path / "images"
    make_image(folder / "a.png")
    with Project(folder) as p:
        p.scan()
        score_all(p)
        manifest = apply_caption_export(p, plan_caption_export(p, cal()))
        good = json.loads(manifest.read_text())
        for name, content in [
            ("20990101-000000-000001", "[1, 2]"),
            ("20990101-000000-000002", nested()),
            (
                "20990101-000000-000003",
                json.dumps(
                    {
                        "status": "complete",
                        "files": [
                            {
                                "caption": "a.txt",
                                "action": "modified",
                                "backup": "../../../../etc/passwd",
                                "old_sha256": "0" * 64,
                                "new_sha256": good["files"][0]["new_sha256"],
                            },
                            7,
                        ],
                    }
                ),
            ),
        ]:
            d = manifest.parent.parent / name
            d.mkdir()
            (d / "manifest.json").write_text(content)
        with pytest.raises(ExportError, match="outside its export folder"):
            undo_last_export(p)  # the hostile one is newest: refused, nothing written
        assert (folder / "a.txt").exists()


def test_damaged_version_record_is_a_store_error(tmp_path):
    folder = tmp_path / "images"
    make_image(folder / "a.png")
    with Project(folder) as p:
        p.add_version("v1", tmp_path / "v1", {"mode": "quick"})
        with p.transaction():
            p.db.execute("UPDATE versions SET record = ?", ("[1]",))
        with pytest.raises(StoreError, match="record of model version v1 is damaged"):
            p.versions()


def test_a_link_with_a_non_utf8_name_is_printed_safely(tmp_path, capsys):
    folder = tmp_path / "images"
    make_image(folder / "a.png")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, os.fsencode(folder) + b"/link\xe9")
    code, out, _ = run(capsys, "score", folder, *FAST)
    assert code == 0 and "link\ufffd" in out and "--follow-links" in out


def test_unhashable_label_in_a_dataset_is_one_sentence(tmp_path, capsys):
    folder = tmp_path / "images"
    make_image(folder / "a.png")
    make_image(folder / "b.png", 1)
    ds = tmp_path / "pairs.json"
    ds.write_text(json.dumps({"train": [[str(folder / "a.png"), str(folder / "b.png"), [1]]]}))
    for argv in (["train", "--pairs", ds], ["import-pairs", folder, ds]):
        code, _, err = run(capsys, *argv)
        assert code == 2 and "label [1]" in err and err.count("\n") == 1, (argv, err)


def test_full_disk_while_scanning_says_what_was_kept(tmp_path, monkeypatch):
    folder = tmp_path / "images"
    for i in range(501):  # the scan saves every 500 files
        make_image(folder / f"{i:03d}.png", i)
    real = Project._write_scanned_batch
    calls = []

    def full_on_second(self, batch):
        calls.append(1)
        if len(calls) == 2:
            e = sqlite3.OperationalError("database or disk is full")
            e.sqlite_errorcode = 13
            raise database_error(self.db_path, e, "could not save, nothing was changed")
        return real(self, batch)

    monkeypatch.setattr(Project, "_write_scanned_batch", full_on_second)
    with Project(folder) as p:
        with pytest.raises(StoreError) as info:
            p.scan()
        msg = str(info.value)
        assert "the 500 files found before it in this scan were saved" in msg and "nothing was changed" not in msg
        assert "free some disk space" in msg and len(p.file_hashes(include_errors=True)) == 500
