"""packaging/bootstrap.py app: missing Qt system libraries are named with the one apt
command that installs them, instead of Qt's misleading "xcb-cursor0 is needed"."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_bootstrap():
    spec = importlib.util.spec_from_file_location("joyq_bootstrap", ROOT / "packaging" / "bootstrap.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


LDD = """\
\tlinux-vdso.so.1 (0x00007ffc4d7f2000)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f0c2a000000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibxcb.so.1 => /lib/x86_64-linux-gnu/libxcb.so.1 (0x00007f0c29f00000)
\tlibxcb-icccm.so.4 => not found
"""


def test_not_found_libraries_become_one_apt_command():
    b = load_bootstrap()
    missing = b.not_found(LDD)
    assert missing == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    assert b.install_command(missing) == "sudo apt-get install -y libxcb-icccm4 libxcb-keysyms1"
    assert (
        b.install_command(["libxcb-cursor.so.0", "libxcb-icccm.so.4"])
        == "sudo apt-get install -y libxcb-cursor0 libxcb-icccm4"
    )
    # a library the table does not know: the Debian naming rule
    assert b.debian_package("libfoo.so.3") == "libfoo3" and b.debian_package("libbar2.so.0") == "libbar2-0"


def test_app_prints_the_command_and_does_not_start(monkeypatch, capsys):
    b = load_bootstrap()
    started = []
    monkeypatch.setattr(b, "setup", lambda extras: None)
    monkeypatch.setattr(b, "missing_qt_libraries", lambda python: ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"])
    monkeypatch.setattr(b.subprocess, "call", lambda *a, **k: started.append(a) or 0)
    assert b.main(["app"]) == 1 and started == []
    err = capsys.readouterr().err
    assert err.count("apt-get install") == 1 and "sudo apt-get install -y libxcb-icccm4 libxcb-keysyms1" in err
    # nothing missing: the app starts
    monkeypatch.setattr(b, "missing_qt_libraries", lambda python: [])
    assert b.main(["app", "--version"]) == 0 and len(started) == 1


def test_missing_libraries_of_this_machine_are_real_sonames(monkeypatch):
    """On this machine for real: whatever is reported is a soname ldd could not find."""
    b = load_bootstrap()
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    missing = b.missing_qt_libraries(Path(sys.executable))
    assert all(".so." in name for name in missing)
    if missing:
        assert b.install_command(missing).startswith("sudo apt-get install -y ")


def test_readme_lists_the_qt_system_libraries():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for package in ("libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1"):
        assert package in text
