#!/usr/bin/env python3
"""Set up a local virtualenv (.venv) and run JoyQuality Studio or its tests.

    python3 packaging/bootstrap.py app [ARGS...]   # set up, then launch the desktop app
    python3 packaging/bootstrap.py test [ARGS...]  # set up (with test extras), then run pytest
    python3 packaging/bootstrap.py qt-packages     # the apt command for every Qt system library

Needs only Python >= 3.10. Re-running is cheap: installation is skipped while
pyproject.toml and packaging/constraints.txt (the versions CI tested) are unchanged.
On a machine without an NVIDIA GPU the CPU build of torch is installed (much smaller); set
JOYQ_TORCH to choose another torch requirement.
On Linux, `app` first checks that the system libraries Qt's X11 (xcb) platform plugin needs
are installed and, when some are missing, prints the one command that installs them.
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


# Shared libraries Qt's xcb platform plugin needs (linked or loaded at start-up) and the
# Debian / Ubuntu package of each. libxcb-cursor is loaded at run time (Qt >= 6.5), so ldd
# does not list it; it is checked by loading it.
QT_XCB_PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-xinput.so.0": "libxcb-xinput0",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libOpenGL.so.0": "libopengl0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libSM.so.6": "libsm6",
    "libICE.so.6": "libice6",
}
RUNTIME_LOADED = ("libxcb-cursor.so.0",)


def debian_package(soname: str) -> str:
    """The Debian / Ubuntu package of a shared library: the table above, else the usual
    naming rule (libfoo.so.1 -> libfoo1, libfoo2.so.0 -> libfoo2-0)."""
    if soname in QT_XCB_PACKAGES:
        return QT_XCB_PACKAGES[soname]
    name, _, version = soname.partition(".so.")
    name = name.lower().replace("_", "-")
    version = version.split(".")[0]
    if not version:
        return name
    return f"{name}-{version}" if name[-1:].isdigit() else f"{name}{version}"


def all_qt_packages_command(width: int = 96) -> str:
    """The apt command installing every package of :data:`QT_XCB_PACKAGES`, wrapped with
    backslashes: the README's list is this text (`python packaging/bootstrap.py qt-packages`
    prints it; tests/test_hardening_scan.py checks that they agree)."""
    lines, line = [], "sudo apt-get install -y"
    for package in dict.fromkeys(QT_XCB_PACKAGES.values()):
        if len(line) + 1 + len(package) > width:
            lines.append(line + " \\")
            line = " "
        line += " " + package
    return "\n".join([*lines, line])


def not_found(ldd_output: str) -> list[str]:
    """Sonames that ``ldd`` reports as "not found", in order, once each."""
    out: list[str] = []
    for line in ldd_output.splitlines():
        name, sep, where = line.strip().partition("=>")
        if sep and where.strip().startswith("not found") and name.strip() not in out:
            out.append(name.strip())
    return out


def install_command(sonames: list[str]) -> str:
    """The one command that installs the packages of ``sonames`` (apt: Debian, Ubuntu)."""
    packages = list(dict.fromkeys(debian_package(s) for s in sonames))
    return "sudo apt-get install -y " + " ".join(packages)


def _xcb_plugin(python: Path) -> Path | None:
    code = (
        "import os, PySide6; print(os.path.join(os.path.dirname(PySide6.__file__), "
        "'Qt', 'plugins', 'platforms', 'libqxcb.so'))"
    )
    r = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    path = Path(r.stdout.strip()) if r.returncode == 0 and r.stdout.strip() else None
    return path if path is not None and path.exists() else None


def _loads(soname: str) -> bool:
    import ctypes

    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def missing_qt_libraries(python: Path = PYTHON) -> list[str]:
    """Sonames the xcb platform plugin of ``python``'s PySide6 needs but this system lacks;
    [] off Linux, when another platform is asked for, or when it cannot be told (no ldd)."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM", "xcb").split(":")[0] != "xcb":
        return []
    plugin = _xcb_plugin(python)
    if plugin is None or shutil.which("ldd") is None:
        return []
    r = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True)
    missing = not_found(r.stdout)
    missing += [s for s in RUNTIME_LOADED if s not in missing and not _loads(s)]
    return missing


def qt_libraries_message(missing: list[str]) -> str:
    return (
        "JoyQuality Studio cannot open a window: Qt needs system libraries that are not installed ("
        + ", ".join(missing)
        + "). Install them with:\n\n    "
        + install_command(missing)
        + "\n\n"
        "then run this command again. (Other distributions: install the packages that provide those files.)"
    )


def run(*cmd: str | Path) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT)


def has_torch() -> bool:
    return subprocess.run([str(PYTHON), "-c", "import torch"], capture_output=True).returncode == 0


def setup(extras: str) -> None:
    if sys.version_info < (3, 10):  # noqa: UP036 - this script runs on whatever python3 the user has
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
        torch = os.environ.get("JOYQ_TORCH") or ("torch" if gpu else CPU_TORCH)
        run(PYTHON, "-m", "pip", "install", "--disable-pip-version-check", torch)
    target = f".[{extras}]" if extras else "."
    run(PYTHON, "-m", "pip", "install", "--disable-pip-version-check", "-c", CONSTRAINTS, "-e", target)
    stamp.write_text(want)


def main(argv: list[str]) -> int:
    if argv[:1] == ["qt-packages"]:  # the README's list of Qt system packages, generated
        print(all_qt_packages_command())
        return 0
    if not argv or argv[0] not in ("app", "test"):
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "app":
        setup("")
        missing = missing_qt_libraries(PYTHON)
        if missing:
            print(qt_libraries_message(missing), file=sys.stderr, flush=True)
            return 1
        return subprocess.call([str(PYTHON), "-m", "joyq_studio", *rest], cwd=ROOT)
    setup("test")
    return subprocess.call([str(PYTHON), "-m", "pytest", *rest], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
