"""The wheel carries what an installed `joyq` needs: the demo tower and the icons."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_installs_and_scores_with_the_shipped_demo_model(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "--disable-pip-version-check",
            "-w",
            str(dist),
            str(ROOT),
        ],
        check=True,
        timeout=300,
    )
    wheel = next(dist.glob("joyq_studio-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "joyq_studio/resources/demo-model/model.safetensors" in names
    assert "joyq_studio/resources/icon.svg" in names

    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--disable-pip-version-check",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    folder = tmp_path / "demo"
    code = (
        "import sys, joyq_studio\n"
        f"assert joyq_studio.__file__.startswith({str(site)!r}), joyq_studio.__file__\n"
        "from joyq_studio.cli import main\n"
        f"assert main(['demo', {str(folder)!r}, '--count', '8']) == 0\n"
        f"sys.exit(main(['score', {str(folder)!r}, '--model', 'demo', '--workers', '0']))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site), "JOYQ_DATA_DIR": str(tmp_path / "data")}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "scored 8, already done 0, failed 0" in result.stdout
