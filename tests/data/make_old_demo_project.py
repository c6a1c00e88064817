"""Makes tests/data/old-demo-project/: a folder scored and quick-trained with the OLD shipped
demo tower (64 wide, 2 layers; commit 16ee30b, replaced by the 96-wide one in c6ea870), as a
user of that version would have it. Run from the repository root (needs git history):

    PYTHONPATH=$PWD python tests/data/make_old_demo_project.py

Layout: images/ (the folder), project/ (its project dir: project.sqlite and versions/).
The version record says tower_spec "demo" and the old tower's content id, like the old app
wrote; the version path in project.sqlite is the one at making time (tests re-point it).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

OLD = "16ee30b"
HERE = Path(__file__).resolve().parent / "old-demo-project"


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    os.environ["JOYQ_DATA_DIR"] = str(tmp / "data")
    os.environ["JOYQ_CACHE_DIR"] = str(tmp / "cache")
    from joyq_studio.model import load_model
    from joyq_studio.scoring import score_project
    from joyq_studio.store import Project
    from joyq_studio.training.versions import save_head_version

    tower = tmp / "old-demo"
    tower.mkdir()
    for name in ("config.json", "model.safetensors"):
        data = subprocess.run(
            ["git", "show", f"{OLD}:joyq_studio/resources/demo-model/{name}"], check=True, capture_output=True
        ).stdout
        (tower / name).write_bytes(data)
    folder = tmp / "images"
    folder.mkdir()
    rng = np.random.default_rng(24)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"img{i:02d}.png")
    with Project(folder) as p:
        p.scan()
        model = load_model(str(tower))
        assert model.config.hidden_size == 64
        score_project(p, model)
        p.set_base_model("demo")
        hashes = sorted(p.hash_of(f"img{i:02d}.png") for i in range(12))
        for i in range(len(hashes)):
            for j in range(i + 1, min(i + 3, len(hashes))):
                p.add_comparison(hashes[i], hashes[j], 1.0 if (i + j) % 3 else 0.0)
        vid = save_head_version(p, str(tower), rng.normal(0, 0.1, 64), 0.0, mode="quick")
        version = p.version(vid)
        path = Path(version["path"])
        record = json.loads((path / "version.json").read_text())
        record.update(tower_spec="demo", parent="demo")  # what the old app wrote for --model demo
        (path / "version.json").write_text(json.dumps(record, indent=2))
        p.update_version_record(vid, tower_spec="demo", parent="demo")
        p.set_active_version(vid)
        project_dir = p.dir
    shutil.rmtree(HERE, ignore_errors=True)
    HERE.mkdir(parents=True)
    shutil.copytree(folder, HERE / "images")
    shutil.copytree(project_dir, HERE / "project", ignore=shutil.ignore_patterns("*-wal", "*-shm", "*.lock"))
    print(f"wrote {HERE} ({sum(f.stat().st_size for f in HERE.rglob('*') if f.is_file())} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
