#!/usr/bin/env python3
"""Set up a local virtualenv (.venv) and run JoyQuality Studio or its tests.

    python3 packaging/bootstrap.py app [ARGS...]   # set up, then launch the desktop app
    python3 packaging/bootstrap.py test [ARGS...]  # set up (with test extras), then run pytest

Needs only Python >= 3.10. Re-running is cheap: installation is skipped while
pyproject.toml and packaging/constraints.txt (the versions CI tested) are unchanged.
On a machine without an NVIDIA GPU the CPU build of torch is installed (much smaller); set JOYQ_TORCH to choose another torch requirement.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
# The release CI tests on; where a CPU wheel of it is on the package index, pip takes that.
CPU_TORCH = "torch==2.13.0"
# The versions CI tested; every install is constrained to them.
CONSTRAINTS = ROOT / "packaging" / "constraints.txt"


def run(*cmd: str | Path) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT)


def has_torch() -> bool:
    return subprocess.run([str(PYTHON), "-c", "import torch"], capture_output=True).returncode == 0


def setup(extras: str) -> None:
    if sys.version_info < (3, 10):
        sys.exit(f"JoyQuality Studio needs Python 3.10 or newer; this is {sys.version.split()[0]}.")
    if not PYTHON.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / f".installed-{extras or 'app'}"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + CONSTRAINTS.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == want and has_torch():
        return
    if not has_torch():
        gpu = shutil.which("nvidia-smi") is not None
        run(PYTHON, "-m", "pip", "install", "--disable-pip-version-check", os.environ.get("JOYQ_TORCH") or ("torch" if gpu else CPU_TORCH))
    target = f".[{extras}]" if extras else "."
    run(PYTHON, "-m", "pip", "install", "--disable-pip-version-check", "-c", CONSTRAINTS, "-e", target)
    stamp.write_text(want)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("app", "test"):
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "app":
        setup("")
        return subprocess.call([str(PYTHON), "-m", "joyq_studio", *rest], cwd=ROOT)
    setup("test")
    return subprocess.call([str(PYTHON), "-m", "pytest", *rest], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
