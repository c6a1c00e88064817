"""Tests for joyq_studio.export: calibration storage, CSV, caption sidecars, undo, dataset JSON."""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from joyq_studio import export as ex
from joyq_studio.errors import JoyqError
from joyq_studio.export import (
    ExportError,
    apply_caption_export,
    dataset,
    edit_caption,
    export_pairs,
    import_pairs,
    plan_caption_export,
    undo_last_export,
    write_csv,
)
from joyq_studio.export import captions as captions_module
from joyq_studio.ranking import (
    QUALITY_PHRASES,
    Calibration,
    calibrate_project,
    load_calibration,
    ranked_images,
    save_calibration,
)
from joyq_studio.store import Project

NAMES = ["a.jpg", "b.png", "c.jpg", "d.png", "e.jpg", "f.png", "sub/g.jpg", "sub/h.png", "sub/i.jpg", "sub/j.png"]


def make_images(folder: Path, names=NAMES, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for name in names:
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(p, quality=95)


def image_digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.suffix in (".jpg", ".png")
    }


@pytest.fixture
def folder(tmp_path) -> Path:
    f = tmp_path / "images"
    make_images(f)
    return f


@pytest.fixture
def project(folder):
    """Scanned project; model 'm1' scores a.jpg lowest ... sub/j.png highest (0..9)."""
    with Project(folder) as p:
        p.scan()
        p.save_scores("m1", [(p.hash_of(n), float(i)) for i, n in enumerate(NAMES)])
        p.set_current_model_key("m1")
        yield p


def cal_a(k=10, labels=None) -> Calibration:
    return Calibration(method="a", k=k, score_min=0.0, score_max=9.0, labels=labels or [])


def h(project: Project, name: str) -> str:
    return project.hash_of(name)


# -- current model, calibration ------------------------------------------------------------
def test_current_model_key_contract(folder):
    with Project(folder) as p:
        p.scan()
        assert p.current_model_key() is None
        with pytest.raises(ExportError, match="joyq score"):
            ranked_images(p, cal_a())
        p.save_scores("only", [(p.hash_of("a.jpg"), 1.0)])
        assert p.current_model_key() == "only"  # the only scored model
        p.save_scores("other", [(p.hash_of("a.jpg"), 2.0)])
        assert p.current_model_key() is None  # ambiguous: set it explicitly
        p.set_current_model_key("other")
        assert p.current_model_key() == "other"
        assert [r.score for r in ranked_images(p, cal_a())] == [2.0]


def _add_test_pairs(p: Project, n_right=8, n_wrong=3):
    """Held-out pairs that mostly agree with the scores, and training pairs that all disagree."""
    k = 0
    for i in range(len(NAMES) - 1):
        for j in range(i + 1, len(NAMES)):
            hi, lo = h(p, NAMES[j]), h(p, NAMES[i])
            if k < n_right:
                p.add_comparison(hi, lo, 1.0, split="test")
            elif k < n_right + n_wrong:
                p.add_comparison(hi, lo, 0.0, split="test")
            k += 1
    p.add_comparison(h(p, NAMES[0]), h(p, NAMES[9]), 1.0, split="train")


def test_method_b_fits_on_held_out_pairs_only(project):
    _add_test_pairs(project)
    cal, notes = calibrate_project(project, "b")
    assert cal.method == "b" and cal.pairs_used == 11
    assert notes == [cal.reason] and cal.reason.startswith("Method B (sigmoid ranks) was used as asked: tau = ")
    assert cal.model_version == "m1"
    ranks = cal.ranks([project.scores("m1")[hh] for _, hh in project.file_hashes()])
    assert ranks.mean() == pytest.approx(5.0, abs=1e-6)


def test_training_comparisons_never_calibrate_and_the_fallback_says_why(project):
    for i in range(8):
        project.add_comparison(h(project, NAMES[i + 2]), h(project, NAMES[i]), 1.0)
    project.add_comparison(h(project, NAMES[0]), h(project, NAMES[9]), 1.0)
    cal, notes = calibrate_project(project, "b")
    assert cal.method == "a" and cal.pairs_used == 0
    assert (
        notes[0]
        == cal.reason
        == (
            "Method B (sigmoid ranks) was asked for, but there are no held-out comparisons yet and sigmoid ranks "
            "need at least 10 to fit their temperature; method A (equal-width score ranges) was used instead."
        )
    )


def test_auto_method_and_explicit_b_without_pairs(project):
    cal, notes = calibrate_project(project)  # the default needs no held-out comparisons
    assert cal.method == "q" and notes == [cal.reason] and cal.reason.startswith("Quantile buckets were used")
    cal, notes = calibrate_project(project, "b")  # asked for B: method A, saying why, never an error
    assert cal.method == "a" and "was asked for, but" in notes[0]


def test_calibration_is_saved_with_the_model(project):
    assert load_calibration(project) is None
    cal, _ = calibrate_project(project, "a", k=5, labels=["v", "w", "x", "y", "z"])
    save_calibration(project, cal)
    assert load_calibration(project).to_dict() == cal.to_dict()
    assert json.loads(project.get_meta("calibration:m1"))["labels"] == ["v", "w", "x", "y", "z"]
    project.save_scores("m2", [(hh, 1.0) for _, hh in project.file_hashes()])
    project.set_current_model_key("m2")
    assert load_calibration(project) is None  # another model: not calibrated yet
    project.set_current_model_key("m1")
    assert load_calibration(project).labels == ["v", "w", "x", "y", "z"]


def test_calibration_goes_into_the_active_version_record(project, tmp_path):
    project.add_version("v1", tmp_path / "v1", {"model_key": "m1"})
    project.set_active_version("v1")
    assert load_calibration(project) is None
    cal, _ = calibrate_project(project, "a")
    assert cal.model_version == "v1"
    save_calibration(project, cal)
    assert project.version("v1")["calibration"] == cal.to_dict()
    assert load_calibration(project).to_dict() == cal.to_dict()


# -- CSV ----------------------------------------------------------------------------------------
def test_csv_rows_order_and_filter(project, tmp_path):
    out = tmp_path / "rank.csv"
    report = write_csv(project, out, cal_a())
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert report.rows == 10 and list(rows[0]) == ex.CSV_HEADER
    assert [r["path"] for r in rows] == NAMES[::-1]  # best first, folder-relative
    top = rows[0]
    assert top["hash"] == h(project, "sub/j.png") and float(top["score"]) == 9.0
    assert float(top["rank"]) == 10.0 and top["bucket_0_to_9"] == "9" and top["label"] == "best quality"
    assert top["model_version"] == "m1"
    assert rows[-1]["bucket_0_to_9"] == "0" and rows[-1]["label"] == "worst quality"
    report = write_csv(project, out, cal_a(), min_bucket=7)
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["path"] for r in rows] == ["sub/j.png", "sub/i.jpg", "sub/h.png"]
    assert report.counts[7:] == [1, 1, 1] and report.total_scored == 10
    with pytest.raises(ExportError, match="minimum bucket"):
        write_csv(project, out, cal_a(), min_bucket=10)


def test_csv_includes_duplicates(folder):
    (folder / "copy.jpg").write_bytes((folder / "a.jpg").read_bytes())
    with Project(folder) as p:
        p.scan()
        p.save_scores("m1", [(hh, 1.0) for hh, _ in p.image_paths()])
        rows = ranked_images(p, cal_a())
        assert {r.path for r in rows} == {*NAMES, "copy.jpg"}


def test_csv_full_disk_leaves_the_old_file(project, tmp_path, monkeypatch):
    out = tmp_path / "rank.csv"
    out.write_text("old\n", encoding="utf-8")

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(ExportError, match=r"rank\.csv.*disk is full.*nothing was written"):
        write_csv(project, out, cal_a())
    assert out.read_text(encoding="utf-8") == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "rank.csv"]


# -- caption text editing -----------------------------------------------------------------------
def finder(sep=", "):
    return captions_module.TagFinder([*QUALITY_PHRASES, "meh"], [sep, ", "])


@pytest.mark.parametrize(
    "old, mode, new",
    [
        ("a cat", "prepend", "best quality, a cat"),
        ("a cat", "append", "a cat, best quality"),
        ("low quality, a cat", "prepend", "best quality, a cat"),
        ("a cat, low quality", "append", "a cat, best quality"),
        ("a cat, Low Quality, sitting", "prepend", "best quality, a cat, sitting"),
        ("a cat, low quality, high quality, sitting", "append", "a cat, sitting, best quality"),
        ("a cat, low quality, sitting", "replace", "a cat, best quality, sitting"),
        ("low quality, a cat, meh", "replace", "best quality, a cat"),
        ("a cat", "replace", None),
        ("a cat", "new", None),
        ("a photo in high quality light", "prepend", "best quality, a photo in high quality light"),
        ("best quality", "prepend", "best quality"),
        ("a cat,low quality,sitting", "append", "a cat,sitting, best quality"),
        ("a cat\n", "prepend", "best quality, a cat\n"),
        ("a cat\r\n\r\n", "append", "a cat, best quality\r\n\r\n"),
        ("", "append", "best quality"),
    ],
)
def test_edit_caption(old, mode, new):
    assert edit_caption(old, "best quality", mode, ", ", finder()) == new


def test_edit_caption_whitespace_and_newline_separators():
    f = captions_module.TagFinder(QUALITY_PHRASES, [" ", ", "])
    assert (
        edit_caption("a photo of very high quality", "low quality", "append", " ", f) == "a photo of low quality"
    )  # our tag is the last item: replaced
    assert edit_caption("high quality cats are here", "low quality", "append", " ", f) == "cats are here low quality"
    assert (
        edit_caption("the best quality camera", "low quality", "prepend", " ", f)
        == "low quality the best quality camera"
    )  # prose in the middle is never cut
    f = captions_module.TagFinder(QUALITY_PHRASES, ["\n", ", "])
    assert edit_caption("a cat\r\nhigh quality\r\n", "low quality", "prepend", "\n", f) == "low quality\r\na cat\r\n"
    assert edit_caption(None, "low quality", "replace", "\n", f) is None
    assert edit_caption(None, "low quality", "new", "\n", f) == "low quality"


# -- caption export -----------------------------------------------------------------------------
def captions(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.txt"))}


def test_prepend_creates_and_modifies_and_is_idempotent(project, folder):
    (folder / "a.txt").write_text("a cat, sitting", encoding="utf-8")
    before_images = image_digest(folder)
    plan = plan_caption_export(project, cal_a())
    assert plan.created == 9 and plan.modified == 1 and not plan.skipped
    change = next(c for c in plan if c.rel == "a.txt")
    assert change.old_text == "a cat, sitting" and change.new_text == "worst quality, a cat, sitting"
    manifest = apply_caption_export(project, plan)
    assert manifest.parent.parent == project.dir / "exports"
    assert (folder / "a.txt").read_text(encoding="utf-8") == "worst quality, a cat, sitting"
    assert (folder / "sub/j.txt").read_text(encoding="utf-8") == "best quality"
    assert image_digest(folder) == before_images  # images never touched
    again = plan_caption_export(project, cal_a())
    assert len(again) == 0 and again.unchanged == 10
    assert apply_caption_export(project, again) is None


def test_dry_run_lists_exactly_what_is_applied(project, folder):
    (folder / "b.txt").write_text("dog, meh, low quality", encoding="utf-8")
    (folder / "c.txt").write_text("worst quality, x", encoding="utf-8")
    before = captions(folder)
    plan = plan_caption_export(project, cal_a(), "append", " | ")
    assert captions(folder) == before  # planning writes nothing
    apply_caption_export(project, plan)
    after = captions(folder)
    changed = {rel for rel in after if before.get(rel) != after[rel]}
    assert changed == {c.rel for c in plan}
    for c in plan:
        assert after[c.rel].decode("utf-8") == c.new_text
    assert after["b.txt"] == b"dog, meh | very low quality"


def test_each_mode(project, folder):
    (folder / "a.txt").write_text("x, high quality, y", encoding="utf-8")
    (folder / "b.txt").write_text("plain", encoding="utf-8")
    for mode, expect_a, expect_b, created in [
        ("replace", "x, worst quality, y", "plain", 0),
        ("new", "x, high quality, y", "plain", 8),
        ("append", "x, y, worst quality", "plain, very low quality", 8),
        ("prepend", "worst quality, x, y", "very low quality, plain", 8),
    ]:
        plan = plan_caption_export(project, cal_a(), mode)
        assert plan.created == created, mode
        apply_caption_export(project, plan)
        assert (folder / "a.txt").read_text(encoding="utf-8") == expect_a, mode
        assert (folder / "b.txt").read_text(encoding="utf-8") == expect_b, mode
        undo_last_export(project)
        assert (folder / "a.txt").read_text(encoding="utf-8") == "x, high quality, y"
        assert not (folder / "c.txt").exists()


def test_relabelled_tags_are_replaced_not_duplicated(project, folder):
    custom = cal_a(k=2, labels=["meh pic", "great pic"])
    apply_caption_export(project, plan_caption_export(project, custom))
    assert (folder / "sub/j.txt").read_text(encoding="utf-8") == "great pic"
    (folder / "sub/j.txt").write_text("great pic, a bird", encoding="utf-8")
    apply_caption_export(project, plan_caption_export(project, cal_a()))  # new labels
    assert (folder / "sub/j.txt").read_text(encoding="utf-8") == "best quality, a bird"
    assert (folder / "a.txt").read_text(encoding="utf-8") == "worst quality"


@pytest.mark.parametrize(
    "encoding, bom", [("utf-8-sig", b"\xef\xbb\xbf"), ("utf-16-le", b"\xff\xfe"), ("utf-16-be", b"\xfe\xff")]
)
def test_bom_and_crlf_are_preserved(project, folder, encoding, bom):
    codec = "utf-8" if encoding == "utf-8-sig" else encoding
    (folder / "a.txt").write_bytes(bom + "gatto, café\r\nline two\r\n".encode(codec))
    apply_caption_export(project, plan_caption_export(project, cal_a()))
    data = (folder / "a.txt").read_bytes()
    assert data == bom + "worst quality, gatto, café\r\nline two\r\n".encode(codec)
    assert len(plan_caption_export(project, cal_a())) == 0
    undo_last_export(project)
    assert (folder / "a.txt").read_bytes() == bom + "gatto, café\r\nline two\r\n".encode(codec)


def test_unreadable_readonly_and_folder_captions_are_left_alone(project, folder):
    (folder / "a.txt").write_bytes("caf\xe9".encode("latin-1"))
    (folder / "b.txt").write_text("dog", encoding="utf-8")
    os.chmod(folder / "b.txt", 0o444)
    (folder / "c.txt").mkdir()
    (folder / "d.txt").write_bytes(b"\x00\x01\x02binary")
    plan = plan_caption_export(project, cal_a())
    reasons = dict(plan.skipped)
    assert "UTF-8" in reasons["a.txt"] and reasons["b.txt"] == "is read-only"
    assert "folder" in reasons["c.txt"] and "d.txt" in reasons
    apply_caption_export(project, plan)
    assert (folder / "a.txt").read_bytes() == "caf\xe9".encode("latin-1")
    assert (folder / "b.txt").read_text(encoding="utf-8") == "dog"
    assert (folder / "c.txt").is_dir() and plan.created == 6


def test_images_sharing_a_caption_file(folder):
    make_images(folder, ["k.jpg", "k.png"], seed=1)
    with Project(folder) as p:
        p.scan()
        p.save_scores("m1", [(p.hash_of("k.jpg"), 0.0), (p.hash_of("k.png"), 9.0), (p.hash_of("a.jpg"), 0.0)])
        plan = plan_caption_export(p, cal_a())
        assert [c.rel for c in plan] == ["a.txt"]
        assert plan.skipped[0][0] == "k.txt" and "different buckets" in plan.skipped[0][1]
        p.save_scores("m1", [(p.hash_of("k.png"), 0.0)])
        plan = plan_caption_export(p, cal_a())
        assert [(c.rel, c.images) for c in plan] == [("a.txt", ["a.jpg"]), ("k.txt", ["k.jpg", "k.png"])]


def test_bad_mode_separator_and_label(project):
    with pytest.raises(ExportError, match="mode"):
        plan_caption_export(project, cal_a(), "overwrite")
    with pytest.raises(ExportError, match="separator"):
        plan_caption_export(project, cal_a(), "prepend", "")
    with pytest.raises(ExportError, match="contains the separator"):
        plan_caption_export(project, cal_a(k=2, labels=["bad, really", "good"]))


def test_undo_restores_and_deletes_only_unchanged_files(project, folder):
    (folder / "a.txt").write_text("cat", encoding="utf-8")
    (folder / "b.txt").write_text("dog", encoding="utf-8")
    manifest = apply_caption_export(project, plan_caption_export(project, cal_a()))
    record = json.loads(manifest.read_text(encoding="utf-8"))
    assert record["status"] == "complete" and len(record["files"]) == 10
    assert {e["action"] for e in record["files"]} == {"created", "modified"}
    assert (manifest.parent / "backup/a.txt").read_text(encoding="utf-8") == "cat"
    (folder / "c.txt").write_text("edited by the user", encoding="utf-8")  # created, then edited
    (folder / "b.txt").write_text("dog, mine now", encoding="utf-8")  # modified, then edited
    report = undo_last_export(project)
    assert report.restored == 1 and report.deleted == 7
    assert sorted(report.changed_since) == ["b.txt", "c.txt"]
    assert captions(folder) == {"a.txt": b"cat", "b.txt": b"dog, mine now", "c.txt": b"edited by the user"}
    assert json.loads(manifest.read_text(encoding="utf-8"))["status"] == "undone"
    assert (manifest.parent / "backup/a.txt").exists()  # backups are kept
    with pytest.raises(ExportError, match="no caption export"):
        undo_last_export(project)


def test_undo_walks_back_through_exports(project, folder):
    (folder / "a.txt").write_text("cat", encoding="utf-8")
    apply_caption_export(project, plan_caption_export(project, cal_a(), "append"))
    apply_caption_export(project, plan_caption_export(project, cal_a(), "prepend"))
    assert (folder / "a.txt").read_text(encoding="utf-8") == "worst quality, cat"
    undo_last_export(project)
    assert (folder / "a.txt").read_text(encoding="utf-8") == "cat, worst quality"
    undo_last_export(project)
    assert captions(folder) == {"a.txt": b"cat"}


def test_full_disk_mid_export_rolls_back(project, folder, monkeypatch):
    (folder / "a.txt").write_text("cat", encoding="utf-8")
    (folder / "e.txt").write_text("emu", encoding="utf-8")
    before, before_images = captions(folder), image_digest(folder)
    plan = plan_caption_export(project, cal_a())
    real_replace = os.replace

    def replace(src, dst):
        if Path(dst).name == "e.txt":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(
        ExportError,
        match=r"e\.txt: could not write the caption \(the disk is full\); "
        r"the \d+ captions already written were put back",
    ):
        apply_caption_export(project, plan)
    monkeypatch.setattr(os, "replace", real_replace)
    assert captions(folder) == before and image_digest(folder) == before_images
    assert not [p for p in folder.rglob(".*")]  # no temporary files left
    with pytest.raises(ExportError, match="no caption export"):
        undo_last_export(project)  # the rolled-back one is done with


def test_full_disk_while_backing_up_changes_nothing(project, folder, monkeypatch):
    (folder / "a.txt").write_text("cat", encoding="utf-8")
    plan = plan_caption_export(project, cal_a())
    real_open = open

    def full_open(file, mode="r", *a, **k):
        if "backup" in str(file) and "w" in mode:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(file, mode, *a, **k)

    monkeypatch.setattr("builtins.open", full_open)
    with pytest.raises(ExportError, match="disk is full.*nothing was changed"):
        apply_caption_export(project, plan)
    monkeypatch.undo()
    assert captions(folder) == {"a.txt": b"cat"}
    assert list((project.dir / "exports").iterdir()) == []


def test_one_export_at_a_time_and_a_crashed_holder_leaves_no_stale_lock(project, folder):
    """While another process (the app, or a second `joyq`) exports or undoes captions of
    this folder, an export or undo refuses and changes nothing; once that process is gone,
    even killed mid-way, the next one runs."""
    (folder / "a.txt").write_text("cat", encoding="utf-8")
    plan = plan_caption_export(project, cal_a())
    hold = (
        "import sys; from joyq_studio.export.captions import export_lock; from joyq_studio.store import Project\n"
        "with Project(sys.argv[1]) as p, export_lock(p):\n"
        "    print('locked', flush=True); sys.stdin.read()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ExportError, match="another export or undo is running.*nothing was changed"):
            apply_caption_export(project, plan)
        with pytest.raises(ExportError, match="another export or undo is running"):
            undo_last_export(project)
        assert captions(folder) == {"a.txt": b"cat"}
        assert not (project.dir / "exports").exists() or not any((project.dir / "exports").iterdir())
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert apply_caption_export(project, plan) is not None
    assert (folder / "a.txt").read_text(encoding="utf-8") == "worst quality, cat"
    undo_last_export(project)
    assert captions(folder) == {"a.txt": b"cat"}


def test_filesystem_without_locks_is_named_as_such(project, folder, monkeypatch):
    """A lock that fails for another reason than a second exporter is not blamed on one."""
    (folder / "a.txt").write_text("cat", encoding="utf-8")

    def no_locks(f):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(captions_module, "try_lock", no_locks)
    with pytest.raises(ExportError, match=r"exports\.lock: cannot take the export lock \(.*\); nothing was changed"):
        apply_caption_export(project, plan_caption_export(project, cal_a()))
    assert captions(folder) == {"a.txt": b"cat"}


def test_caption_changed_after_planning(project, folder):
    (folder / "a.txt").write_text("cat", encoding="utf-8")
    plan = plan_caption_export(project, cal_a())
    (folder / "a.txt").write_text("cat, edited", encoding="utf-8")
    with pytest.raises(ExportError, match=r"a\.txt: changed since the export was planned"):
        apply_caption_export(project, plan)
    assert captions(folder) == {"a.txt": b"cat, edited"}


def test_readonly_file_at_write_time_is_rolled_back(project, folder, monkeypatch):
    (folder / "a.txt").write_text("cat", encoding="utf-8")
    plan = plan_caption_export(project, cal_a())
    real_replace = os.replace

    def denied(src, dst):
        if Path(dst).name == "f.txt":
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", denied)
    with pytest.raises(ExportError, match=r"f\.txt: could not write the caption \(permission denied\)"):
        apply_caption_export(project, plan)
    monkeypatch.undo()
    assert captions(folder) == {"a.txt": b"cat"}


def test_caption_file_modes_are_kept(project, folder):
    (folder / "a.txt").write_text("cat", encoding="utf-8")
    os.chmod(folder / "a.txt", 0o640)
    apply_caption_export(project, plan_caption_export(project, cal_a()))
    assert stat.S_IMODE((folder / "a.txt").stat().st_mode) == 0o640


# -- dataset JSON -----------------------------------------------------------------------------
def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def test_import_labels_paths_and_report(project, folder, tmp_path):
    ds = write_json(
        folder / "sub" / "pairs.json",
        {
            "train": [
                ["g.jpg", "h.png", 1],
                ["../a.jpg", "../b.png", -1],
                [str(folder / "c.jpg"), "../d.png", 0],
                ["nope.jpg", "g.jpg", 1],
                [str(tmp_path / "elsewhere.jpg"), "g.jpg", 1],
            ],
            "test": [["i.jpg", "j.png", 1]],
        },
    )
    report = import_pairs(project, ds)
    assert report.pairs == 6 and report.total_added == 4 and report.added == {"train": 3, "test": 1}
    assert report.ties == 1
    reasons = dict(report.skipped)
    assert "not a scanned image" in reasons["train[3]"] and "outside the folder" in reasons["train[4]"]
    rows = {(a, b): (o, s, k) for _, a, b, o, s, k in project.comparisons()}
    assert rows[(h(project, "sub/g.jpg"), h(project, "sub/h.png"))] == (1.0, "train", "import")
    assert rows[(h(project, "a.jpg"), h(project, "b.png"))] == (0.0, "train", "import")
    assert rows[(h(project, "c.jpg"), h(project, "d.png"))] == (0.5, "train", "import")
    assert rows[(h(project, "sub/i.jpg"), h(project, "sub/j.png"))] == (1.0, "test", "import")
    again = import_pairs(project, ds)  # importing twice adds nothing
    assert again.total_added == 0 and again.already_present == 4
    assert project.comparison_count() == 4


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"train": [["a.jpg", "b.png", 1],]}', r"not valid JSON \(.* at line 1, column"),
        ('[["a.jpg", "b.png", 1]]', "must hold a JSON object"),
        ('{"train": [["a.jpg", "b.png", 2]]}', r"train\[0\] has the label 2; labels must be 1"),
        ('{"test": [["a.jpg", "b.png", "1"]]}', r'test\[0\] has the label "1"'),
        ('{"train": [["a.jpg", "b.png", true]]}', r"train\[0\] has the label true"),
        ('{"train": [["a.jpg", "b.png"]]}', r"train\[0\] is .*not \[path, path, label\]"),
        ('{"val": []}', "has the key 'val'"),
        ('{"train": {"a": 1}}', "'train' must be a list"),
        ('{"train": [["/elsewhere/x.jpg", "/elsewhere/y.jpg", 1]]}', "none of its 1 pairs .* outside the folder"),
    ],
)
def test_import_rejects_bad_files(project, tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ExportError, match=message) as info:
        import_pairs(project, path)
    assert str(path) in str(info.value) and isinstance(info.value, JoyqError)
    assert project.comparison_count() == 0  # all or nothing


def test_import_missing_file(project, tmp_path):
    with pytest.raises(ExportError, match=r"missing\.json: cannot be read \(no such file"):
        import_pairs(project, tmp_path / "missing.json")


def test_export_and_import_round_trip(project, folder, tmp_path):
    def hash_of(name):
        return h(project, name)

    project.add_comparison(hash_of("a.jpg"), hash_of("b.png"), 1.0)
    project.add_comparison(hash_of("c.jpg"), hash_of("d.png"), 0.0)
    project.add_comparison(hash_of("e.jpg"), hash_of("f.png"), 0.5)
    project.add_comparison(hash_of("sub/g.jpg"), hash_of("sub/h.png"), 1.0, split="test")
    out = tmp_path / "ds.json"
    report = export_pairs(project, out)
    data = json.loads(out.read_text(encoding="utf-8"))
    assert report.ties_omitted == 1 and report.written == {"train": 2, "test": 1}
    assert data["train"] == [
        [str(folder / "a.jpg"), str(folder / "b.png"), 1],
        [str(folder / "d.png"), str(folder / "c.jpg"), 1],
    ]
    export_pairs(project, out, ties=True)
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["train"][2] == [str(folder / "e.jpg"), str(folder / "f.png"), 0]
    inside = export_pairs(project, folder / "sub" / "ds.json", ties=True)
    assert json.loads(inside.path.read_text(encoding="utf-8"))["test"] == [["g.jpg", "h.png", 1]]

    def judgements(p: Project):
        return sorted(dataset.pair_key(a, b, o, s) for _, a, b, o, s, _ in p.comparisons())

    for ds in (out, folder / "sub" / "ds.json"):
        with Project(folder, db_path=tmp_path / f"other-{ds.parent.name}" / "project.sqlite") as other:
            other.scan()
            assert import_pairs(other, ds).total_added == 4
            assert judgements(other) == judgements(project)
            out2 = tmp_path / "again.json"
            export_pairs(other, out2, ties=True)
            assert json.loads(out2.read_text(encoding="utf-8")) == json.loads(out.read_text(encoding="utf-8"))


def test_export_pairs_full_disk(project, tmp_path, monkeypatch):
    project.add_comparison(h(project, "a.jpg"), h(project, "b.png"), 1.0)
    out = tmp_path / "ds.json"

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(ExportError, match=r"ds\.json: could not write the dataset \(the disk is full\)"):
        export_pairs(project, out)
    assert list(tmp_path.iterdir()) == [tmp_path / "images"]
