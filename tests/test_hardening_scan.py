"""Issue 24, item 5: export, calibrate and import-pairs list the folder's unreadable entries
as `joyq score` does; files with the same content are said to be one image."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from joyq_studio.cli import main
from joyq_studio.images import same_content_note
from joyq_studio.store import Project


@pytest.fixture
def folder(tmp_path) -> Path:
    f = tmp_path / "images"
    f.mkdir()
    rng = np.random.default_rng(0)
    names = [f"i{i}.png" for i in range(6)]
    for name in names:
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(f / name)
    shutil.copy(f / "i0.png", f / "copy-of-i0.png")  # the same bytes: one image
    (f / "gone.jpg").symlink_to(f / "does-not-exist.jpg")  # unreadable
    with Project(f) as p:
        p.scan()
        p.save_scores("m1", [(h, float(i)) for i, (_, h) in enumerate(p.file_hashes())])
        p.set_current_model_key("m1")
    return f


@pytest.mark.parametrize("command", ["calibrate", "export", "import-pairs"])
def test_unreadable_entries_are_listed_like_score_lists_them(folder, tmp_path, capsys, command):
    args = {
        "calibrate": ["calibrate", str(folder), "--method", "a"],
        "export": ["export", str(folder), "--csv", str(tmp_path / "out.csv")],
        "import-pairs": ["import-pairs", str(folder), str(tmp_path / "pairs.json")],
    }[command]
    (tmp_path / "pairs.json").write_text(json.dumps({"train": [["i1.png", "i2.png", 1]]}))
    main(args)
    out = capsys.readouterr().out
    assert "1 entry of the folder could not be read and is left out:" in out
    assert any("gone.jpg" in line and "broken symbolic link" in line for line in out.splitlines()), out


def test_files_with_the_same_content_are_named(folder):
    with Project(folder) as p:
        note = same_content_note(p.file_hashes())
    assert note is not None and note.startswith("1 of the 7 image files has the same content as another")
    assert "copy-of-i0.png and i0.png" in note
    assert same_content_note([("a.png", "h1"), ("b.png", "h2")]) is None


def test_readme_lists_exactly_the_qt_packages_the_bootstrap_checks():
    import importlib.util

    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("joyq_bootstrap", root / "packaging" / "bootstrap.py")
    assert spec is not None and spec.loader is not None
    b = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(b)
    generated = b.all_qt_packages_command()
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert f"```bash\n{generated}\n```" in readme  # the README's block is the generated text
    listed = generated.replace("\\\n", " ").split()[4:]
    assert sorted(listed) == sorted(set(b.QT_XCB_PACKAGES.values())) and len(listed) == 29


def test_a_second_ray_job_on_one_output_directory_is_refused(tmp_path):
    """Concurrent `joyq score --ray --out DIR` writers: the second is refused in one sentence
    before it writes anything (the first holds an OS lock, gone when its process dies)."""
    import subprocess
    import sys
    import time

    from joyq_studio.cluster import ClusterError
    from joyq_studio.cluster.pipeline import score_with_ray
    from joyq_studio.cluster.results import job_lock

    out = tmp_path / "job"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from joyq_studio.cluster.results import job_lock\n"
            "with job_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)",
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(ClusterError, match="another `joyq score --ray` is writing to this directory"):
            score_with_ray([tmp_path], None, "tiny", out)
        assert sorted(p.name for p in out.iterdir()) == [".joyq-job.lock"]  # no listing, no shard
    finally:
        holder.kill()
        holder.wait()
    deadline = time.time() + 10
    while True:  # the killed holder's lock is gone with it
        try:
            with job_lock(out):
                break
        except ClusterError:
            assert time.time() < deadline
            time.sleep(0.1)
