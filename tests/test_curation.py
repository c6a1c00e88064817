"""Curation actions (issue 12): chosen buckets into a destination folder (copy, hard link,
symlink) with dry run, idempotence and undo; buckets overridden by hand; the comparison
history after a restart."""

from __future__ import annotations

import csv
import hashlib
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from joyq_studio.cli import main
from joyq_studio.export import (
    ExportError,
    apply_caption_export,
    apply_link_export,
    plan_caption_export,
    plan_link_export,
    undo_last_export,
    undo_last_link_export,
    undo_latest_export,
    write_csv,
)
from joyq_studio.export.links import LinkUndoReport
from joyq_studio.ranking import Calibration, calibrate_project, ranked_images, save_calibration
from joyq_studio.store import SCHEMA_VERSION, Project

# two files named cat.jpg in different subfolders: the destination keeps relative paths
NAMES = ["a.jpg", "b.png", "c.jpg", "d.png", "e.jpg", "f.png", "x/cat.jpg", "y/cat.jpg", "sub/i.jpg", "sub/j.png"]


def tree(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder``: (sha256, inode), to prove the originals are untouched."""
    return {
        p.relative_to(folder).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_ino)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def folder(tmp_path) -> Path:
    f = tmp_path / "images"
    rng = np.random.default_rng(0)
    for name in NAMES:
        p = f / name
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(p, quality=95)
    with Project(f) as p:  # scores 0 (a.jpg) .. 9 (sub/j.png); method A: bucket = score
        p.scan()
        p.save_scores("m1", [(p.hash_of(n), float(i)) for i, n in enumerate(NAMES)])
        p.set_current_model_key("m1")
    return f


def cal_a() -> Calibration:
    return Calibration(method="a", k=10, score_min=0.0, score_max=9.0)


@pytest.mark.parametrize("mode", ["copy", "hardlink", "symlink"])
def test_export_to_dest_dry_run_idempotent_and_undo(folder, tmp_path, mode):
    dest = tmp_path / "best"
    before = tree(folder)
    with Project(folder) as p:
        plan = plan_link_export(p, cal_a(), dest, mode, min_bucket=6)
        assert sorted(i.rel for i in plan.items) == ["sub/i.jpg", "sub/j.png", "x/cat.jpg", "y/cat.jpg"]
        assert plan.selection == "buckets 6 and above" and not dest.exists()  # a plan writes nothing
        manifest = apply_link_export(p, plan)
        assert manifest is not None and manifest.parent.parent == p.dir / "exports"
        for rel in ("x/cat.jpg", "y/cat.jpg", "sub/j.png"):
            made = dest / rel
            assert made.read_bytes() == (folder / rel).read_bytes()
            assert made.is_symlink() == (mode == "symlink")
            assert os.path.samefile(made, folder / rel) == (mode != "copy")
        again = plan_link_export(p, cal_a(), dest, mode, min_bucket=6)
        assert again.items == [] and len(again.unchanged) == 4  # rerun changes nothing
        assert apply_link_export(p, again) is None
        report = undo_last_link_export(p)
        assert isinstance(report, LinkUndoReport) and report.removed == 4 and not report.changed_since
    assert not (dest / "x").exists() and not (dest / "sub").exists()  # folders it made, removed once empty
    assert tree(folder) == before  # originals never moved, changed or deleted


def test_destination_inside_the_folder_is_refused_by_real_path(folder, tmp_path):
    link = tmp_path / "sneaky"
    link.symlink_to(folder, target_is_directory=True)
    with Project(folder) as p:
        for dest in (folder / "out", folder, link / "out"):
            with pytest.raises(ExportError, match="inside the image folder"):
                plan_link_export(p, cal_a(), dest, "copy", min_bucket=9)
        (tmp_path / "file").write_text("x")
        with pytest.raises(ExportError, match="not a folder"):
            plan_link_export(p, cal_a(), tmp_path / "file", "copy")


def test_a_different_file_in_the_way_is_left_alone_and_score_threshold(folder, tmp_path):
    dest = tmp_path / "out"
    (dest / "sub").mkdir(parents=True)
    (dest / "sub" / "j.png").write_bytes(b"mine")
    with Project(folder) as p:
        plan = plan_link_export(p, cal_a(), dest, "copy", min_score=8.0)
        assert [i.rel for i in plan.items] == ["sub/i.jpg"] and plan.selection == "score 8 and above"
        assert plan.skipped[0][0] == "sub/j.png" and "already exists" in plan.skipped[0][1]
        apply_link_export(p, plan)
    assert (dest / "sub" / "j.png").read_bytes() == b"mine"


def test_undo_export_undoes_the_newest_of_either_kind(folder, tmp_path):
    dest = tmp_path / "out"
    with Project(folder) as p:
        apply_caption_export(p, plan_caption_export(p, cal_a()))
        apply_link_export(p, plan_link_export(p, cal_a(), dest, "copy", min_bucket=9))
        assert isinstance(undo_latest_export(p), LinkUndoReport)
        assert not (dest / "sub" / "j.png").exists() and (folder / "a.txt").exists()
        assert undo_latest_export(p).deleted == len(NAMES)  # then the captions
        assert not (folder / "a.txt").exists()
        with pytest.raises(ExportError, match="left to undo"):
            undo_latest_export(p)
        # a caption undo never takes a curation export for a caption one
        apply_link_export(p, plan_link_export(p, cal_a(), dest, "copy", min_bucket=9))
        with pytest.raises(ExportError, match="no caption export"):
            undo_last_export(p)


def test_override_survives_recalibration_and_retraining_and_is_exported(folder, tmp_path):
    with Project(folder) as p:
        assert SCHEMA_VERSION == 3
        p.set_bucket_override(p.hash_of("a.jpg"), 9)  # the worst image, put in the best bucket by hand
        rows = {r.path: r for r in ranked_images(p, cal_a())}
        assert rows["a.jpg"].bucket == 9 and rows["a.jpg"].overridden and rows["a.jpg"].label == "best quality"
        assert rows["a.jpg"].rank == 0.0 and not rows["b.png"].overridden
        cal, _ = calibrate_project(p, "a", k=5)  # recalibrated with 5 buckets: clipped to the best
        save_calibration(p, cal)
        assert {r.path: r.bucket for r in ranked_images(p, cal)}["a.jpg"] == 4
        p.save_scores("m2", [(h, -s) for h, s in p.scores("m1").items()])  # a retrained model
        p.set_current_model_key("m2")
        assert {r.path: r.bucket for r in ranked_images(p, cal_a())}["a.jpg"] == 9
        p.set_current_model_key("m1")
        out = tmp_path / "r.csv"
        write_csv(p, out, cal_a(), min_bucket=9)
        got = list(csv.DictReader(out.open(encoding="utf-8")))
        assert [(r["path"], r["bucket_0_to_9"], r["overridden"]) for r in got] == [
            ("sub/j.png", "9", "0"),
            ("a.jpg", "9", "1"),
        ]
        plan = plan_link_export(p, cal_a(), tmp_path / "best", "copy", min_bucket=9)
        assert sorted(i.rel for i in plan.items) == ["a.jpg", "sub/j.png"]
        change = {c.rel: c for c in plan_caption_export(p, cal_a()).changes}["a.txt"]
        assert change.new_text == "best quality"
        p.set_bucket_override(p.hash_of("a.jpg"), None)
        assert p.bucket_overrides() == {}


def test_schema_2_database_migrates_to_3(folder):
    with Project(folder) as p:
        p.db.execute("DROP TABLE bucket_overrides")
        p.set_meta("schema_version", "2")
    with Project(folder) as p:
        assert p.get_meta("schema_version") == "3"
        p.set_bucket_override(p.hash_of("b.png"), 3)
        assert p.bucket_overrides() == {p.hash_of("b.png"): 3}


def test_recent_comparisons_are_the_undo_history_after_a_restart(folder):
    with Project(folder) as p:
        hs = [p.hash_of(n) for n in NAMES]
        p.add_comparison(hs[0], hs[1], 1.0, kind="click")
        started = time.time()
        time.sleep(0.01)
        for i in range(1, 5):
            p.add_comparison(hs[i], hs[i + 1], 1.0, kind="click" if i % 2 else "uniform")
        p.add_comparison(hs[7], hs[8], 0.0, kind="click", source="llm:x", weight=0.7)
    with Project(folder) as p:  # a restart
        recent = p.recent_comparisons(limit=3, since=started)
        assert [(c.a, c.b) for c in recent] == [(hs[4], hs[5]), (hs[3], hs[4]), (hs[2], hs[3])]  # newest first
        assert [c.kind for c in p.recent_comparisons(since=started, kinds=["click"])] == ["click", "click"]
        assert len(p.recent_comparisons()) == 5 and len(p.recent_comparisons(user_only=False)) == 6
        p.delete_comparison(recent[0].id)  # undo
        assert p.recent_comparisons(limit=1)[0].id == recent[1].id


def test_cli_export_to_override_and_undo(folder, tmp_path, capsys):
    dest = tmp_path / "keep"
    with Project(folder) as p:
        save_calibration(p, cal_a())
    assert main(["export", str(folder), "--to", str(dest), "--min-bucket", "8", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run, nothing written: 2 images chosen (buckets 8 and above): 2 copies to make" in out
    assert not dest.exists()
    assert main(["override", str(folder), "x/cat.jpg", "9"]) == 0
    assert "in bucket 9 (best quality) by hand" in capsys.readouterr().out
    assert main(["export", str(folder), "--to", str(dest), "--min-bucket", "8", "--as", "symlink"]) == 0
    assert "made 3 symbolic links" in capsys.readouterr().out
    assert (dest / "x" / "cat.jpg").is_symlink() and not (dest / "y" / "cat.jpg").exists()
    assert main(["export", str(folder), "--to", str(dest), "--min-bucket", "8", "--as", "symlink"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main(["export", str(folder), "--to", str(folder / "inside"), "--min-bucket", "8"]) == 2
    assert "inside the image folder" in capsys.readouterr().err
    assert main(["undo-export", str(folder)]) == 0
    assert "removed 3 files it had made" in capsys.readouterr().out
    assert main(["override", str(folder), "x/cat.jpg", "--clear"]) == 0
    assert main(["override", str(folder), "nope.jpg", "3"]) == 2
    assert "nope.jpg: not an image of" in capsys.readouterr().err
    assert main(["override", str(folder), "a.jpg", "10"]) == 2
    assert "outside 0..9" in capsys.readouterr().err
    assert main(["override", str(folder), "a.jpg"]) == 2
