"""The README's CLI walkthrough runs top to bottom as written (issue 12).

Every line between ``<!-- walkthrough -->`` and ``<!-- /walkthrough -->`` is run through
``joyq_studio.cli.main`` in order, with ``~/`` standing for a fresh temporary home
(JOYQ_DATA_DIR is isolated by conftest.py); each must exit 0.
"""

from __future__ import annotations

import csv
import re
import shlex
from collections import Counter
from pathlib import Path

from joyq_studio.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def walkthrough() -> list[str]:
    text = README.read_text(encoding="utf-8")
    m = re.search(r"<!-- walkthrough -->\s*```bash\n(.*?)```\s*<!-- /walkthrough -->", text, re.S)
    assert m, "README.md has no <!-- walkthrough --> ... <!-- /walkthrough --> block"
    return [line for line in m.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_walkthrough_is_the_newcomer_path():
    lines = walkthrough()
    commands = [shlex.split(line, comments=True)[1] for line in lines]
    assert all(shlex.split(line, comments=True)[0] == "joyq" for line in lines)
    assert commands[:4] == ["demo", "score", "import-pairs", "train"]
    assert {"versions", "calibrate", "export", "undo-export"} <= set(commands)
    assert not any("--model tiny" in line for line in lines)  # random weights have no place in a first run


def test_walkthrough_runs_top_to_bottom(tmp_path, capsys):
    home = tmp_path / "home"
    home.mkdir()
    for line in walkthrough():
        argv = shlex.split(line.replace("~/", f"{home}/"), comments=True)
        code = main(argv[1:])
        out = capsys.readouterr()
        assert code == 0, f"`{line}` exited {code}:\n{out.out[-2000:]}\n{out.err[-2000:]}"
    demo = home / "joyq-demo"
    assert (
        (home / "joyq-demo-ranked.csv")
        .read_text(encoding="utf-8")
        .startswith("path,hash,score,rank,bucket_0_to_9,label")
    )
    assert not (home / "joyq-demo-best").exists() or not any((home / "joyq-demo-best").rglob("*.*"))  # undone
    assert not list(demo.glob("*.txt"))  # the caption step was a dry run
    # issue 25: the buckets stay useful after training (no two hold half the folder, 9 is no catch-all)
    with (home / "joyq-demo-ranked.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    counts = Counter(int(r["bucket_0_to_9"]) for r in rows)
    assert sum(n for _, n in counts.most_common(2)) <= len(rows) / 2, counts
    best = [r["path"] for r in rows if r["bucket_0_to_9"] == "9"]
    assert (
        len(best) <= 0.15 * len(rows)
        and sum(not p.endswith(("_clean.png", "_clean.jpg", "_jpeg.jpg")) for p in best) <= 2
    )


def test_train_without_the_big_model_suggests_demo_not_tiny(tmp_path, capsys):
    """A folder never scored with --model demo trains from JoyQuality; offline, the hint names demo."""
    folder = tmp_path / "demo"
    assert main(["demo", str(folder), "--count", "20"]) == 0
    assert main(["import-pairs", str(folder), str(folder / "pairs.json")]) == 0
    capsys.readouterr()
    assert main(["train", str(folder)]) == 2  # conftest sets HF_HUB_OFFLINE: nothing can be downloaded
    err = capsys.readouterr().err
    assert "--model demo" in err and "tiny" not in err
