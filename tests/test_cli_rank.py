"""Tests for `joyq calibrate | export | undo-export | import-pairs | export-pairs`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from joyq_studio.cli import main
from joyq_studio.ranking import load_calibration
from joyq_studio.store import Project

NAMES = [f"img{i:02d}.{'png' if i % 2 else 'jpg'}" for i in range(12)]


@pytest.fixture
def folder(tmp_path) -> Path:
    f = tmp_path / "pics"
    f.mkdir()
    rng = np.random.default_rng(7)
    for name in NAMES:
        Image.fromarray(rng.integers(0, 256, (10, 14, 3), dtype=np.uint8)).save(f / name, quality=95)
    return f


@pytest.fixture
def scored(folder) -> Path:
    """img00 scores lowest ... img11 highest; current model 'm1'."""
    with Project(folder) as p:
        p.scan()
        p.save_scores("m1", [(p.hash_of(n), float(i)) for i, n in enumerate(NAMES)])
        p.set_current_model_key("m1")
    return folder


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_calibrate_and_export_need_scores(folder, capsys):
    for argv in (["calibrate", folder], ["export", folder, "--csv", folder.parent / "x.csv"]):
        code, _, err = run(capsys, *argv)
        assert code == 2
        assert err.strip().endswith(f"no image is scored yet; run `joyq score {folder}` first.")
        assert err.count("\n") == 1  # one sentence
    assert not (folder.parent / "x.csv").exists()


def test_calibrate_prints_a_histogram_and_saves(scored, capsys):
    code, out, _ = run(capsys, "calibrate", scored, "--method", "a", "--buckets", "4", "--labels", "bad,meh,ok,great")
    assert code == 0
    assert "method A" in out and "K = 4" in out
    lines = [line for line in out.splitlines() if line[:1].isdigit()]
    assert lines[0].startswith("3 great") and lines[-1].startswith("0 bad")
    assert [int(line.split()[-1]) for line in lines] == [3, 3, 3, 3]
    assert "█" in lines[0]
    with Project(scored) as p:
        assert load_calibration(p).labels == ["bad", "meh", "ok", "great"]


def test_calibrate_method_b_with_held_out_pairs(scored, capsys):
    with Project(scored) as p:
        hs = [p.hash_of(n) for n in NAMES]
        for i in range(11):
            p.add_comparison(hs[i + 1], hs[i], 1.0 if i % 4 else 0.0, split="test")
    code, out, _ = run(capsys, "calibrate", scored, "--target-mean", "6")
    assert code == 0 and "method B" in out and "fitted on 11 held-out comparisons" in out
    assert "mean rank 6" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--buckets", "10", "--labels", "a,b"], "--labels gives 2 labels but --buckets is 10"),
        (["--labels", "a,,b"], "must be non-empty"),
        (["--method", "a", "--target-mean", "3"], "not to method A"),
        (["--target-mean", "12"], "strictly between 0 and 10"),
    ],
)
def test_calibrate_bad_options(scored, capsys, argv, message):
    code, _, err = run(capsys, "calibrate", scored, *argv)
    assert code == 2 and message in err


def test_explicit_method_b_without_labels_falls_back_to_a_in_one_sentence(scored, capsys):
    code, out, _ = run(capsys, "calibrate", scored, "--method", "b")
    assert code == 0 and "calibrated: method A" in out
    assert (
        "note: Method B (sigmoid ranks) was asked for, but there are no held-out comparisons yet and sigmoid "
        "ranks need at least 10 to fit their temperature; method A (equal-width score ranges) was used "
        "instead."
    ) in out


def test_export_csv_with_min_bucket(scored, capsys, tmp_path):
    out_csv = tmp_path / "ranked.csv"
    code, out, _ = run(capsys, "export", scored, "--csv", out_csv, "--min-bucket", "8")
    assert code == 0
    assert "note: This folder had no calibration for the current model yet, so one was made now and saved." in out
    assert (
        "note: Quantile buckets were used (the default): each of the 10 buckets holds about a tenth of the "
        "12 scored images, in score order."
    ) in out
    assert f"wrote 3 images to {out_csv} (buckets >= 8 of 12 scored)" in out
    rows = list(csv.DictReader(out_csv.open(encoding="utf-8")))
    assert [r["path"] for r in rows] == ["img11.png", "img10.jpg", "img09.png"]
    assert rows[0]["label"] == "best quality" and rows[0]["model_version"] == "m1"


def test_export_usage_errors(scored, capsys):
    for argv, message in [
        ([], "say what to export"),
        (["--captions", "--min-bucket", "3"], "use it with --csv"),
        (["--csv", "x.csv", "--dry-run"], "use it with --captions"),
    ]:
        code, _, err = run(capsys, "export", scored, *argv)
        assert code == 2 and message in err


def test_captions_dry_run_apply_and_undo(scored, capsys):
    (scored / "img00.txt").write_bytes(b"a cat\r\n")
    code, out, _ = run(capsys, "export", scored, "--captions", "--dry-run", "--mode", "append")
    assert code == 0
    assert "dry run, nothing written: 11 captions to create, 1 to modify" in out
    assert 'modify img00.txt: "a cat\\r\\n" -> "a cat, worst quality\\r\\n"' in out
    assert 'create img11.txt: "best quality"' in out
    assert sorted(p.name for p in scored.glob("*.txt")) == ["img00.txt"]

    code, out, _ = run(capsys, "export", scored, "--captions", "--mode", "append")
    assert code == 0 and "wrote 12 caption files" in out and f"joyq undo-export {scored}" in out
    assert (scored / "img00.txt").read_bytes() == b"a cat, worst quality\r\n"
    code, out, _ = run(capsys, "export", scored, "--captions", "--mode", "append")
    assert "nothing to write" in out  # idempotent

    code, out, _ = run(capsys, "undo-export", scored)
    assert code == 0 and "restored 1 captions, deleted 11" in out
    assert sorted(p.name for p in scored.glob("*.txt")) == ["img00.txt"]
    assert (scored / "img00.txt").read_bytes() == b"a cat\r\n"
    code, _, err = run(capsys, "undo-export", scored)
    assert code == 2 and "no export of" in err and "left to undo" in err


def test_captions_newline_separator_and_skipped_files(scored, capsys):
    (scored / "img01.txt").mkdir()
    code, out, _ = run(capsys, "export", scored, "--captions", "--separator", "\\n")
    assert code == 1  # some files were left alone
    assert "left alone: img01.txt: is a folder" in out
    (scored / "img02.txt").write_text("dog", encoding="utf-8")
    run(capsys, "export", scored, "--captions", "--separator", "\\n")
    assert (scored / "img02.txt").read_text(encoding="utf-8") == "very low quality\ndog"


def test_import_and_export_pairs(scored, capsys, tmp_path):
    ds = tmp_path / "pairs.json"
    ds.write_text(
        json.dumps(
            {
                "train": [
                    [f"pics/{NAMES[1]}", f"pics/{NAMES[0]}", 1],
                    [f"pics/{NAMES[2]}", f"pics/{NAMES[3]}", 0],
                    ["pics/gone.jpg", f"pics/{NAMES[3]}", -1],
                ],
                "test": [[f"pics/{NAMES[4]}", f"pics/{NAMES[5]}", -1]],
            }
        ),
        encoding="utf-8",
    )
    code, out, _ = run(capsys, "import-pairs", scored, ds)
    assert code == 1
    assert f"imported 3 of 4 pairs from {ds} (1 test, 2 train; 1 ties), 0 already in the project, 1 skipped" in out
    assert "skipped: train[2]: pics/gone.jpg is not a scanned image of the folder" in out
    out_json = tmp_path / "out.json"
    code, out, _ = run(capsys, "export-pairs", scored, out_json)
    assert code == 0 and "wrote 2 pairs (1 train, 1 test)" in out and "1 ties omitted" in out
    data = json.loads(out_json.read_text(encoding="utf-8"))
    assert data["test"] == [[str(scored / NAMES[5]), str(scored / NAMES[4]), 1]]
    code, out, _ = run(capsys, "export-pairs", scored, out_json, "--ties")
    assert "wrote 3 pairs (2 train, 1 test)" in out


def test_import_pairs_bad_file_is_one_sentence(scored, capsys, tmp_path):
    ds = tmp_path / "broken.json"
    ds.write_text('{"train": [["a", "b", 1]', encoding="utf-8")
    code, _, err = run(capsys, "import-pairs", scored, ds)
    assert code == 2
    assert err.startswith(f"joyq: error: {ds}: is not valid JSON (") and err.count("\n") == 1


def test_export_pairs_llm_labels_follow_the_training_switch(scored, capsys, tmp_path):
    from joyq_studio.prelabel import set_llm_labels_included

    with Project(scored) as p:
        h = [p.hash_of(n) for n in NAMES]
        p.add_comparison(h[0], h[1], 1.0)
        p.add_comparison(h[2], h[3], 0.0, kind="llm", source="llm:m:abc123", weight=0.8)
    out = tmp_path / "pairs.json"

    def written(*extra):
        assert main(["export-pairs", str(scored), str(out), *extra]) == 0
        capsys.readouterr()
        data = json.loads(out.read_text())
        return len(data["train"]) + len(data["test"])

    assert written() == 2  # training includes LLM labels by default
    assert written("--llm", "exclude") == 1 and written("--llm", "only") == 1
    with Project(scored) as p:
        set_llm_labels_included(p, False)
    assert written() == 1 and written("--llm", "include") == 2
