"""`joyq score / demo / bench` from the command line: bad input gives one line and the right
exit code, bad files are listed while the rest are scored, CSV output, resumability."""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from joyq_studio.cli import main

FAST = ["--model", "tiny", "--device", "cpu", "--workers", "0", "--batch-size", "8"]


@pytest.fixture
def good(demo_folder, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for src in sorted(demo_folder.glob("scene0000_*")) + sorted(demo_folder.glob("scene0001_*")):
        shutil.copy(src, folder / src.name)
    return folder


def bomb_png(path: Path, side: int = 20000) -> None:
    """A valid 1-bit PNG of side x side pixels that is only a few kilobytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    idat = zlib.compress(b"\0" * ((side // 8 + 1) * side), 9)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
        + chunk(b"IDAT", idat)
        + chunk(b"IEND", b"")
    )


def test_missing_folder_is_one_line_exit_2(tmp_path, capsys):
    missing = tmp_path / "no such folder"
    assert main(["score", str(missing), *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(missing) in err and "Traceback" not in err


def test_folder_without_images_exit_2(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "sub").mkdir()
    assert main(["score", str(tmp_path), *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no images" in err and str(tmp_path) in err


def test_bad_files_are_listed_and_the_rest_scored(good, capsys):
    n_good = len(list(good.iterdir()))
    jpeg = min(good.glob("*.jpg")).read_bytes()
    (good / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (good / "zero.jpg").write_bytes(b"")
    (good / "text.jpg").write_text("I am a text file, not a JPEG\n")
    bomb_png(good / "bomb.png")
    assert main(["score", str(good), *FAST]) == 1
    out = capsys.readouterr().out
    assert f"scored {n_good}, already done 0, failed 4" in out
    lines = {
        name: [line for line in out.splitlines() if name in line]
        for name in ("truncated.jpg", "zero.jpg", "text.jpg", "bomb.png")
    }
    assert all(len(v) == 1 for v in lines.values()), out
    assert "truncated" in lines["truncated.jpg"][0]
    assert "empty" in lines["zero.jpg"][0]
    assert "not a readable image" in lines["text.jpg"][0]
    assert "bomb" in lines["bomb.png"][0]


def test_csv_and_resume(good, tmp_path, capsys):
    out_csv = tmp_path / "out" / "scores.csv"
    out_csv.parent.mkdir()
    names = sorted(p.name for p in good.iterdir())
    assert main(["score", str(good), *FAST, "--csv", str(out_csv)]) == 0
    first = capsys.readouterr().out
    assert f"scored {len(names)}, already done 0, failed 0" in first
    with open(out_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path", "score"]
    assert sorted(r[0] for r in rows[1:]) == names
    scores = [float(r[1]) for r in rows[1:]]
    assert len(set(scores)) == len(names)
    assert list(out_csv.parent.iterdir()) == [out_csv]  # no temporary file left behind

    assert main(["score", str(good), *FAST]) == 0
    assert f"scored 0, already done {len(names)}, failed 0" in capsys.readouterr().out


def test_unicode_and_odd_names_through_csv(good, tmp_path, capsys):
    src = sorted(good.glob("*.jpg"))
    odd = ["with space.jpg", "ünï 日本 🎨.jpg", "-dash.jpg", 'q"uote,comma.jpg']
    for s, name in zip(src, odd):
        s.rename(good / name)
    out_csv = tmp_path / "s.csv"
    assert main(["score", str(good), *FAST, "--csv", str(out_csv)]) == 0
    with open(out_csv, newline="", encoding="utf-8") as f:
        paths = {r[0] for r in list(csv.reader(f))[1:]}
    # a cell starting with - = + @ would run as a formula in a spreadsheet: it gets a leading '
    assert {("'" + n if n.startswith("-") else n) for n in odd} <= paths


def test_formula_like_names_are_neutralised_in_every_csv(good, tmp_path):
    src = sorted(good.glob("*.jpg"))
    hostile = ["=cmd|' -C calc'!A0.jpg", "+1.jpg", "@sum.jpg", "\tx.jpg"]
    for s, name in zip(src, hostile):
        s.rename(good / name)
    scores_csv, ranked_csv = tmp_path / "s.csv", tmp_path / "r.csv"
    assert main(["score", str(good), *FAST, "--csv", str(scores_csv)]) == 0
    assert main(["export", str(good), "--csv", str(ranked_csv)]) == 0
    for out in (scores_csv, ranked_csv):
        with open(out, newline="", encoding="utf-8") as f:
            cells = [r[0] for r in list(csv.reader(f))[1:]]
        assert all(not c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in cells), cells
        assert {"'" + n for n in hostile} <= set(cells)


def test_unwritable_csv_is_one_line(good, tmp_path, capsys):
    assert main(["score", str(good), *FAST, "--csv", str(tmp_path / "missing dir" / "x.csv")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("joyq")]
    assert len(err) == 1 and "x.csv" in err[0] and "nothing was written" in err[0]


def test_uncached_model_offline_is_one_line(good, tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert main(["score", str(good), "--model", "nobody/not-cached", "--workers", "0"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("joyq")]
    assert len(err) == 1 and "nobody/not-cached" in err[0]


def _every_command() -> list[list[str]]:
    """Every command and subcommand the parser declares (so a new one is covered by itself)."""
    from joyq_studio.cli.main import build_parser

    def walk(parser, prefix):
        yield prefix
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, [*prefix, name])

    return list(walk(build_parser(), []))


@pytest.mark.parametrize("argv", _every_command(), ids=lambda a: " ".join(a) or "joyq")
def test_help_on_every_command(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: joyq") and " ".join(["joyq", *argv]) in out


def test_help_and_light_commands_do_not_import_torch(tmp_path):
    """`--help`, `versions`, `calibrate` and `export` never need the model: no torch, no transformers."""
    code = (
        "import sys\n"
        "from joyq_studio.cli import main\n"
        "for argv in (['--help'], ['train', '--help'], ['bench', 'learn', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"main(['versions', {str(tmp_path)!r}])\n"
        "heavy = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    env = {**os.environ, "JOYQ_DATA_DIR": str(tmp_path / "data")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env).stdout
    assert "HEAVY []" in out, out


def test_bad_option_values_exit_2(capsys):
    for argv in (["score", "x", "--batch-size", "0"], ["score", "x", "--workers", "-1"], ["demo", "x", "--count", "0"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
    capsys.readouterr()


def test_real_console_script_help():
    exe = Path(sys.executable).with_name("joyq")
    result = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0 and result.stdout.startswith("usage: joyq")
    assert "score" in result.stdout and "demo" in result.stdout


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_demo_is_deterministic(tmp_path, capsys):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert main(["demo", str(a), "--count", "7"]) == 0
    assert main(["demo", str(b), "--count", "7"]) == 0
    assert main(["demo", str(c), "--count", "7", "--seed", "1"]) == 0
    assert "wrote 7 demo images" in capsys.readouterr().out
    fa, fb, fc = _files(a), _files(b), _files(c)
    assert len(fa) == 8 and "pairs.json" in fa  # 7 images + pairs.json
    assert fa == fb
    assert fa.keys() == fc.keys() and fa["scene0000_clean.png"] != fc["scene0000_clean.png"]


def test_negative_scores_stay_numbers_in_csv(tmp_path):
    from joyq_studio.export import safe_cell, write_rows

    assert safe_cell("-0.213000") == "-0.213000" and safe_cell("-1.jpg") == "'-1.jpg"
    assert safe_cell("+1") == "+1" and safe_cell("=1+2") == "'=1+2" and safe_cell("\t1") == "'\t1"
    out = tmp_path / "s.csv"
    write_rows(out, ["path", "score"], [["a.jpg", "-0.213000"]])
    assert out.read_text(encoding="utf-8").splitlines()[1] == "a.jpg,-0.213000"
