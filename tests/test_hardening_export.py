"""Issue 24, item 2: a killed ``export --to`` (kill -9 in a real subprocess, at every phase)
leaves a journal listing everything it may have made; a rerun adopts it and undo removes
exactly that, temporary files included. The same for a kill during undo."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from joyq_studio.cli import main
from joyq_studio.export import apply_link_export, plan_link_export, undo_latest_export
from joyq_studio.export.journal import JOURNAL, ExportJournal
from joyq_studio.fsio import TEMP_MARK
from joyq_studio.ranking import Calibration
from joyq_studio.store import Project

N = 12
NAMES = [f"{'sub/' if i % 3 == 0 else ''}img{i:02d}.png" for i in range(N)]
KILL_AT = 5  # the file during which a "mid-way" kill strikes


def cal() -> Calibration:
    return Calibration(method="a", k=10, score_min=0.0, score_max=float(N - 1))


def tree(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (files, links, temp files) with its bytes' digest."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[p.relative_to(root).as_posix()] = "-> " + os.readlink(p)
        elif p.is_file():
            out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture
def folder(tmp_path) -> Path:
    f = tmp_path / "images"
    rng = np.random.default_rng(0)
    for name in NAMES:
        p = f / name
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(p)
    with Project(f) as p:
        p.scan()
        p.save_scores("m1", [(p.hash_of(n), float(i)) for i, n in enumerate(NAMES)])
        p.set_current_model_key("m1")
    return f


CHILD = r"""
import os, signal, sys
from pathlib import Path
from joyq_studio.export import apply_link_export, plan_link_export, undo_latest_export
from joyq_studio.export import journal as jmod, links
from joyq_studio.ranking import Calibration
from joyq_studio.store import Project

folder, dest, mode, phase, kill_at, n = sys.argv[1:7]
kill_at, n = int(kill_at), int(n)

def die():
    os.kill(os.getpid(), signal.SIGKILL)

calls = {"create": 0}
real_create = jmod.ExportJournal.record_create
real_write = links.atomic_write

def create(self, path, **kw):
    calls["create"] += 1
    if phase == "before-first-file":
        die()
    real_create(self, path, **kw)
    if phase == "mid-way" and mode != "copy" and calls["create"] == kill_at:
        die()  # recorded, not yet made

def write(path, data, **kw):
    if phase == "mid-way" and calls["create"] == kill_at:
        def partial(f):  # half a copy in the temporary file, then the kill
            f.write(b"x" * 65536)
            f.flush()
            die()
        return real_write(path, partial, **kw)
    return real_write(path, data, **kw)

jmod.ExportJournal.record_create = create
links.atomic_write = write
if phase == "after-last-file":
    jmod.ExportJournal.commit = lambda self, **kw: die()

with Project(Path(folder)) as p:
    cal = Calibration(method="a", k=10, score_min=0.0, score_max=float(n - 1))
    if phase == "during-undo":
        undo_latest_export(p, progress=lambda done, total: die() if done == kill_at else None)
    else:
        apply_link_export(p, plan_link_export(p, cal, dest, mode))
print("not killed")
"""


def run_child(folder: Path, dest: Path, mode: str, phase: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(folder), str(dest), mode, phase, str(KILL_AT), str(N)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr


def statuses(p: Project) -> list[str]:
    root = p.dir / "exports"
    return [json.loads((d / "manifest.json").read_text())["status"] for d in sorted(root.iterdir())]


PHASES = ["before-first-file", "mid-way", "after-last-file", "during-undo"]


@pytest.mark.parametrize("mode", ["copy", "symlink"])
@pytest.mark.parametrize("phase", PHASES)
def test_kill_then_undo_leaves_nothing(folder, tmp_path, phase, mode):
    dest = tmp_path / "best"
    before = tree(folder)
    if phase == "during-undo":
        with Project(folder) as p:
            apply_link_export(p, plan_link_export(p, cal(), dest, mode))
        assert len(tree(dest)) == N
    run_child(folder, dest, mode, phase)
    made = tree(dest) if dest.exists() else {}
    if phase == "mid-way":
        assert 0 < len(made) <= KILL_AT  # files of the killed run ...
        if mode == "copy":  # ... and its half-written temporary file
            assert any(TEMP_MARK in name for name in made)
    with Project(folder) as p:
        report = undo_latest_export(p)
        assert report.removed == len([k for k in made if TEMP_MARK not in k])
        assert report.temp_removed == (1 if phase == "mid-way" and mode == "copy" else 0)
        assert not report.changed_since
        assert statuses(p)[-1] == "undone"
    assert tree(dest) == {} if dest.exists() else True  # nothing left: no copy, no link, no temp file
    assert not dest.exists() or not any(dest.rglob("*"))  # the folders it made are gone too
    assert tree(folder) == before  # the originals never touched


@pytest.mark.parametrize("mode", ["copy", "hardlink"])
@pytest.mark.parametrize("phase", ["before-first-file", "mid-way", "after-last-file"])
def test_kill_then_rerun_adopts_what_the_killed_run_made(folder, tmp_path, phase, mode, capsys):
    dest = tmp_path / "best"
    run_child(folder, dest, mode, phase)
    with Project(folder) as p:
        plan = plan_link_export(p, cal(), dest, mode)
        assert len(plan.items) + len(plan.unchanged) == N and not plan.skipped
        manifest = apply_link_export(p, plan)
        assert manifest is not None  # even with nothing left to make, the killed run is adopted
        assert statuses(p) == ["adopted", "complete"]
        assert sorted(tree(dest)) == sorted(NAMES)  # every file, no temporary one
        journal = ExportJournal.open(manifest.parent)
        assert journal is not None and {e.path for e in journal.entries if e.op == "create"} == {
            str(dest / n) for n in NAMES
        }
        report = undo_latest_export(p)
        assert report.removed == N and not report.changed_since
    assert not any(dest.rglob("*"))


def test_cli_rerun_says_what_it_adopts_and_undo_removes_everything(folder, tmp_path, capsys):
    dest = tmp_path / "best"
    run_child(folder, dest, "copy", "mid-way")
    made = len([k for k in tree(dest) if TEMP_MARK not in k])
    assert main(["export", str(folder), "--to", str(dest)]) == 0
    out = capsys.readouterr().out
    assert f"{made} already there ({made} made by an export that was stopped" in out
    assert f"and took over {made} a stopped export had made" in out
    assert main(["undo-export", str(folder)]) == 0
    assert f"removed {N} files" in capsys.readouterr().out
    assert not any(dest.rglob("*"))


def test_a_line_cut_short_by_a_kill_is_ignored(tmp_path):
    d = tmp_path / "e"
    d.mkdir()
    target = tmp_path / "out.txt"
    j = ExportJournal.begin(d, "test")
    j.record_create(target, sha256=hashlib.sha256(b"hi").hexdigest())
    target.write_bytes(b"hi")
    j.close()
    with open(d / JOURNAL, "ab") as f:
        f.write(b'{"op": "create", "path": "/etc/pass')  # the kill struck mid-line
    again = ExportJournal.open(d)
    assert again is not None and [e.path for e in again.entries] == [str(target)]
    assert again.undo().removed == 1 and not target.exists()


def test_replaced_files_are_restored_byte_for_byte_and_changed_ones_left(tmp_path):
    d = tmp_path / "e"
    (d / "backup").mkdir(parents=True)
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    old = b"\xff\xfeold bytes\r\n"
    for f in (a, b):
        f.write_bytes(old)
    j = ExportJournal.begin(d, "test")
    for f in (a, b):
        backup = d / "backup" / f.name
        backup.write_bytes(f.read_bytes())
        j.record_replace(f, backup, hashlib.sha256(old).hexdigest(), hashlib.sha256(b"new").hexdigest())
        f.write_bytes(b"new")
    j.commit()
    b.write_bytes(b"edited by the user")
    report = ExportJournal.open(d).undo()  # type: ignore[union-attr]
    assert report.restored == 1 and report.changed_since == [str(b)]
    assert a.read_bytes() == old and b.read_bytes() == b"edited by the user"
    assert json.loads((d / "manifest.json").read_text())["status"] == "undone"


CAPTION_CHILD = r"""
import os, signal, sys
from pathlib import Path
from joyq_studio.export import apply_caption_export, plan_caption_export
from joyq_studio.export import captions
from joyq_studio.ranking import Calibration
from joyq_studio.store import Project

folder, kill_at, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
real_write, calls = captions.atomic_write, [0]

def write(path, data, **kw):
    calls[0] += 1
    if calls[0] == kill_at:
        def partial(f):
            f.write(data[:3])
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return real_write(path, partial, **kw)
    return real_write(path, data, **kw)

captions.atomic_write = write
with Project(Path(folder)) as p:
    cal = Calibration(method="a", k=10, score_min=0.0, score_max=float(n - 1))
    apply_caption_export(p, plan_caption_export(p, cal))
"""


def test_a_killed_caption_export_is_undone_exactly(folder, tmp_path):
    """Caption exports write their whole manifest (and backups) before the first caption, so
    a kill -9 mid-way is undone exactly: created captions removed, modified ones restored
    byte for byte, the killed run's temporary file removed."""
    (folder / "img01.txt").write_bytes(b"\xef\xbb\xbfa cat, on a mat\r\n")  # one caption to modify
    before = tree(folder)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-c", CAPTION_CHILD, str(folder), str(KILL_AT), str(N)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    written = tree(folder)
    assert any(TEMP_MARK in name for name in written) and written != before
    with Project(folder) as p:
        report = undo_latest_export(p)
        assert not report.changed_since
    assert tree(folder) == before  # every caption as before, no temporary file
