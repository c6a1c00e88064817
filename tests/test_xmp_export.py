"""`joyq export --xmp`: buckets -> stars into XMP sidecars, both namings, undo byte for byte."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from joyq_studio import xmp
from joyq_studio.cli.main import main
from joyq_studio.errors import ExportError
from joyq_studio.export import undo_latest_export
from joyq_studio.export.xmp import (
    apply_xmp_export,
    default_stars,
    plan_xmp_export,
    sidecar_path,
    stars_mapping,
)
from joyq_studio.ranking import Calibration, save_calibration
from joyq_studio.store import Project

DATA = Path(__file__).parent / "data" / "xmp"
NAMES = ["a.jpg", "b.png", "c.jpg", "d.png", "e.jpg", "f.png", "sub/g.jpg", "sub/h.png", "sub/i.jpg", "sub/j.png"]


def make_images(folder: Path, names=NAMES) -> None:
    rng = np.random.default_rng(0)
    for name in names:
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(p)


def snapshot(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def folder(tmp_path) -> Path:
    f = tmp_path / "images"
    make_images(f)
    return f


@pytest.fixture
def project(folder):
    """a.jpg scores lowest (bucket 0) ... sub/j.png highest (bucket 9) under a 10-bucket method A."""
    with Project(folder) as p:
        p.scan()
        p.save_scores("m1", [(p.hash_of(n), float(i)) for i, n in enumerate(NAMES)])
        p.set_current_model_key("m1")
        save_calibration(p, cal())
        yield p


def cal(k=10) -> Calibration:
    return Calibration(method="a", k=k, score_min=0.0, score_max=9.0, labels=[])


def test_default_and_user_star_mappings():
    assert default_stars(10) == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert default_stars(5) == [1, 2, 3, 4, 5]
    assert default_stars(3) == [1, 3, 5]
    assert default_stars(1) == [3]
    for k in range(1, 30):
        s = default_stars(k)
        assert s == sorted(s) and min(s) >= 1 and max(s) <= 5 and (k == 1 or (s[0], s[-1]) == (1, 5))
    assert stars_mapping(5, "0:-1,4:5") == [-1, 2, 3, 4, 5]
    assert stars_mapping(3, "1,2,2") == [1, 2, 2]
    assert stars_mapping(10, None, reject_bucket=1) == [-1, -1, 2, 2, 3, 3, 4, 4, 5, 5]
    for bad in ("1,2", "0:9", "x:1", "12:1"):
        with pytest.raises(ExportError):
            stars_mapping(10, bad)


def test_creates_and_modifies_sidecars_keeping_every_other_byte_and_undo_is_exact(project, folder):
    images = {n: (folder / n).read_bytes() for n in NAMES}
    dt = (DATA / "darktable.CR3.xmp").read_bytes()
    (folder / "a.jpg.xmp").write_bytes(dt)  # bucket 0 -> 1 star (was 2)
    lr = (DATA / "lightroom.xmp").read_bytes()
    (folder / "sub/j.png.xmp").write_bytes(lr)  # bucket 9 -> 5 stars (none before)
    before = snapshot(folder)
    plan = plan_xmp_export(project, cal(), "darktable", keyword=True)
    assert plan.naming == "darktable" and plan.modified == 2 and plan.created == 8 and not plan.skipped
    manifest = apply_xmp_export(project, plan)
    assert manifest is not None
    a = (folder / "a.jpg.xmp").read_bytes()
    assert xmp.read(a).stars == 1
    assert a.replace(b'xmp:Rating="1"', b'xmp:Rating="2"').replace(b"     <rdf:li>joyq|quality|0</rdf:li>\n", b"") == dt
    assert xmp.read((folder / "sub/j.png.xmp").read_bytes()).stars == 5
    assert xmp.read((folder / "e.jpg.xmp").read_bytes()).stars == 3
    assert {n: (folder / n).read_bytes() for n in NAMES} == images  # originals never touched
    again = plan_xmp_export(project, cal(), "darktable", keyword=True)
    assert again.unchanged == 10 and not again.changes
    report = undo_latest_export(project)
    assert report.restored == 2 and report.deleted == 8
    assert snapshot(folder) == before


def test_hand_set_bucket_wins_and_unscored_images_are_counted(project, folder):
    project.set_bucket_override(project.hash_of("a.jpg"), 9)
    make_images(folder, ["new.jpg"])
    Image.new("RGB", (9, 9), "blue").save(folder / "new.jpg")
    project.scan()
    plan = plan_xmp_export(project, cal(), "darktable")
    by = {c.image: c.stars for c in plan.changes}
    assert by["a.jpg"] == 5 and plan.not_scored == 1 and "new.jpg" not in by


def test_adobe_naming_refuses_a_stem_clash_naming_both(tmp_path):
    folder = tmp_path / "clash"
    make_images(folder, ["IMG_1.jpg", "IMG_1.png", "IMG_2.jpg"])
    with Project(folder) as p:
        p.scan()
        p.save_scores("m", [(p.hash_of(n), float(i)) for i, n in enumerate(["IMG_1.jpg", "IMG_1.png", "IMG_2.jpg"])])
        p.set_current_model_key("m")
        plan = plan_xmp_export(p, cal(3), "adobe")
        assert [c.rel for c in plan.changes] == ["IMG_2.xmp"]
        ((rel, why),) = plan.skipped
        assert rel == "IMG_1.xmp" and "IMG_1.jpg" in why and "IMG_1.png" in why
        plan = plan_xmp_export(p, cal(3), "darktable")
        assert sorted(c.rel for c in plan.changes) == ["IMG_1.jpg.xmp", "IMG_1.png.xmp", "IMG_2.jpg.xmp"]


def test_auto_naming_follows_the_sidecars_in_the_folder(project, folder):
    assert plan_xmp_export(project, cal(), "auto").naming == "darktable"
    for n in ("a.jpg", "b.png"):
        (folder / sidecar_path(Path(n), "adobe")).write_bytes((DATA / "captureone.xmp").read_bytes())
    plan = plan_xmp_export(project, cal(), "auto")
    assert plan.naming == "adobe" and "2 " in plan.why and "IMG_1.xmp" in plan.why
    a = next(c for c in plan.changes if c.image == "a.jpg")
    assert a.rel == "a.xmp" and a.action == "modify"


def test_unparsable_and_hostile_sidecars_are_left_untouched(project, folder):
    (folder / "a.jpg.xmp").write_bytes(b"<x:xmpmeta>not closed")
    (folder / "b.png.xmp").write_bytes((DATA / "captureone.xmp").read_text().encode("utf-16"))
    os.symlink(folder / "c.jpg", folder / "c.jpg.xmp")
    before = snapshot(folder)
    plan = plan_xmp_export(project, cal(), "darktable")
    skipped = dict(plan.skipped)
    assert "well-formed" in skipped["a.jpg.xmp"] and "UTF-8" in skipped["b.png.xmp"]
    assert "symbolic link" in skipped["c.jpg.xmp"]
    apply_xmp_export(project, plan)
    after = snapshot(folder)
    for rel in ("a.jpg.xmp", "b.png.xmp", "a.jpg", "b.png", "c.jpg"):
        assert after[rel] == before[rel]


def test_nothing_outside_the_folders_real_path(project, folder, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.move(folder / "sub", outside / "sub")
    os.symlink(outside / "sub", folder / "sub")
    plan = plan_xmp_export(project, cal(), "darktable")
    assert all(not c.rel.startswith("sub/") for c in plan.changes)
    assert any("outside" in why for rel, why in plan.skipped if rel.startswith("sub/"))


def test_changed_since_planned_is_refused(project, folder):
    plan = plan_xmp_export(project, cal(), "darktable")
    (folder / "a.jpg.xmp").write_bytes((DATA / "captureone.xmp").read_bytes())
    with pytest.raises(ExportError, match="changed since"):
        apply_xmp_export(project, plan)
    assert not (folder / "b.png.xmp").exists()


def test_cli_dry_run_says_naming_and_why_then_export_and_undo(project, folder, capsys):
    project.close()
    assert main(["export", str(folder), "--xmp", "--dry-run", "--reject-bucket", "0"]) == 0
    out = capsys.readouterr().out
    assert "sidecar naming: darktable (no sidecar is in the folder yet" in out
    assert "0:-1 1:1" in out and "10 sidecars to create" in out and "dry run, nothing written" in out
    assert not list(folder.rglob("*.xmp"))
    assert main(["export", str(folder), "--xmp", "--keyword", "--reject-bucket", "0"]) == 0
    assert xmp.read((folder / "a.jpg.xmp").read_bytes()).stars == -1
    assert main(["undo-export", str(folder)]) == 0
    assert "deleted 10" in capsys.readouterr().out and not list(folder.rglob("*.xmp"))
    assert main(["export", str(folder), "--captions", "--dry-run", "--keyword"]) == 2
    assert "--keyword applies to --xmp" in capsys.readouterr().err
