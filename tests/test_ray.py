"""`joyq score --ray`: a local Ray (2 CPUs) with the tiny model on CPU gives the native path's
scores, resumes after an interruption with every file scored exactly once, survives a killed
model actor, and names every file it could not read. One Ray session for the whole module;
skipped when the optional extra (ray[data], pyarrow) is not installed."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from joyq_studio.cli import main
from joyq_studio.model import model_id, tiny_model
from joyq_studio.scoring import embed_paths


class Interrupt(KeyboardInterrupt):
    pass


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    pytest.importorskip("pyarrow")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """20 demo images, one corrupt JPEG and one empty PNG."""
    from joyq_studio.demo import make_demo_folder

    folder = tmp_path_factory.mktemp("ray-photos")
    make_demo_folder(folder, count=20, seed=3, size=160)
    (folder / "pairs.json").unlink()
    (folder / "sub").mkdir()
    shutil.move(folder / sorted(p.name for p in folder.glob("*.png"))[0], folder / "sub" / "moved.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "empty.png").write_bytes(b"")
    return folder


@pytest.fixture(scope="module")
def native(photos) -> dict[str, float]:
    """path -> score from the native path (embed_paths, the code `joyq score` runs)."""
    from joyq_studio.store import walk_images

    paths = [str(photos / f.rel) for f in walk_images(photos)]
    out = {}
    for batch in embed_paths(tiny_model(), paths, "cpu", batch_size=8, workers=0):
        for k, err in enumerate(batch.errors):
            if err is None:
                out[paths[batch.start + k]] = float(batch.scores[k])
    return out


def _shards(folder: Path):
    from joyq_studio.cluster.results import read_shards

    return read_shards(folder)


def test_missing_ray_is_one_sentence(monkeypatch):
    from joyq_studio.cluster import ClusterError, import_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ClusterError, match=r"pip install 'joyq-studio\[ray\]'"):
        import_ray()


def test_several_sources_need_ray(photos, capsys):
    assert main(["score", str(photos), str(photos), "--model", "tiny"]) == 2
    assert "only one folder at a time without --ray" in capsys.readouterr().err


def test_list_sources(tmp_path, photos):
    pytest.importorskip("pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    from joyq_studio.cluster.sources import check_sources, write_listing

    txt = tmp_path / "list.txt"
    txt.write_text("# comment\n\nrel/a.jpg\n/abs/b.jpg\n", encoding="utf-8")
    pq.write_table(pa.table({"n": [1, 2], "file": ["c.jpg", "/d.jpg"]}), tmp_path / "list.parquet")
    sources = check_sources([str(txt), str(tmp_path / "list.parquet"), str(photos)])
    listing = write_listing(sources, tmp_path / "listing")
    got = pq.read_table(listing.folder).column("path").to_pylist()
    assert got[:4] == [str(tmp_path / "rel/a.jpg"), "/abs/b.jpg", str(tmp_path / "c.jpg"), "/d.jpg"]
    assert len(got) == listing.total == 4 + 22 and str(photos / "sub" / "moved.png") in got
    with pytest.raises(Exception, match="a .txt list of paths or a .parquet file"):
        check_sources([str(photos / "broken.jpg")])


def test_pixels_are_the_native_paths(local_ray, photos):
    from joyq_studio.cluster.pipeline import prepare_rows
    from joyq_studio.cluster.results import Done
    from joyq_studio.pixels import load_uint8

    paths = sorted(str(p) for p in photos.glob("scene*.jpg"))[:2]
    paths += [str(photos / "sub/moved.png"), str(photos / "broken.jpg")]
    rows = prepare_rows({"path": np.array(paths, dtype=object)}, 224, Done.build([], []))
    assert list(rows["status"]) == ["ok", "ok", "ok", "error"]
    for p, px in zip(paths[:3], rows["pixels"]):
        assert px == load_uint8(p, 224).numpy().tobytes()
    assert "broken.jpg" in rows["error"][3]


def test_project_resumes_and_survives_a_killed_actor(local_ray, photos, native, tmp_path, monkeypatch):
    from joyq_studio.cluster.pipeline import KILL_ENV, connect, score_with_ray
    from joyq_studio.store import Project

    connect()
    monkeypatch.setattr("joyq_studio.cluster.sources.FIRST_PART_ROWS", 4)  # several blocks from 22 files
    model = tiny_model()
    mid = model_id(model)
    with Project(photos) as project:
        out = project.dir / "ray" / mid.key

        def stop_early(done, total, rate):
            raise Interrupt  # Ctrl-C after the first finished block

        with pytest.raises(Interrupt):
            score_with_ray([photos], model, "tiny", out, project=project, batch_size=4, progress=stop_early)
        first = _shards(out / "shards").num_rows
        assert 0 < first < 22

        marker = tmp_path / "actor-killed"
        monkeypatch.setenv(KILL_ENV, f"2:{marker}")  # the first actor to reach its 2nd batch dies
        summary = score_with_ray([photos], model, "tiny", out, project=project, batch_size=4)
        assert marker.exists()  # an actor really died, and was replaced
        assert summary.already_done == first and summary.listed == 22

        table = _shards(out / "shards")
        paths = table.column("path").to_pylist()
        assert len(paths) == len(set(paths)) == 22  # every file exactly once, failures included
        scores = dict(zip(paths, table.column("score").to_pylist()))
        assert set(native) == {p for p, s in scores.items() if s is not None}
        assert max(abs(scores[p] - native[p]) for p in native) <= 1e-5
        failed = dict(summary.failed)
        assert set(failed) == {str(photos / "broken.jpg"), str(photos / "empty.png")}
        assert "empty" in failed[str(photos / "empty.png")]

        # merged: the project ranks and trains on them without rescanning or rescoring
        stored = project.scores(mid.key)
        by_rel = dict(project.file_hashes())
        assert len(stored) == 20 and project.current_model_key() == mid.key
        rel = "sub/moved.png"
        assert abs(stored[by_rel[rel]] - native[str(photos / rel)]) <= 1e-5
        hashes, emb = project.embeddings(mid.tower)
        assert len(hashes) == 20 and emb.shape == (20, model.embed_dim)
        assert project.scan().new == 0  # the files table is complete: nothing left to hash
        assert {p for p, _ in project.errors()} == {"broken.jpg", "empty.png"}


def test_cli_list_sources_standalone(local_ray, photos, native, tmp_path, capsys):
    import csv

    lst = tmp_path / "paths.txt"
    good = sorted(native)[:6]
    lst.write_text("\n".join(good + [str(photos / "gone.jpg")]) + "\n", encoding="utf-8")
    out, table_csv = tmp_path / "results", tmp_path / "scores.csv"
    code = main(["score", str(lst), "--ray", "--model", "tiny", "--out", str(out), "--csv", str(table_csv)])
    text = capsys.readouterr().out
    assert code == 1, text  # one file failed, as natively
    assert "scored 6, already done 0, failed 1" in text and "gone.jpg: the file no longer exists" in text
    with open(table_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert {r["path"] for r in rows} == set(good)
    assert all(abs(float(r["score"]) - native[r["path"]]) <= 1e-5 for r in rows)
    key = model_id(tiny_model()).key
    assert _shards(out / key / "shards").column("embedding").null_count == 1  # the missing file only


def test_shards_written_but_not_merged_are_merged_on_rerun(photos):
    """A job killed between writing a shard and committing it to the project loses nothing."""
    pa = pytest.importorskip("pyarrow")
    from joyq_studio.cluster.results import ShardWriter, done_from_shards, merge_missing, shard_schema
    from joyq_studio.images import content_hash
    from joyq_studio.store import Project

    path = photos / "scene0001_clean.jpg"
    st = path.stat()
    emb = np.arange(4, dtype="<f2").tobytes()
    row = {
        "path": str(path),
        "hash": content_hash(path),
        "score": 1.5,
        "embedding": emb,
        "error": None,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "width": 160,
        "height": 160,
    }
    with Project(photos) as project:
        folder = project.dir / "ray" / "m" / "shards"
        ShardWriter(folder, "t-h").write(pa.Table.from_pylist([row], schema=shard_schema()))
        assert merge_missing(project, folder, "t", "t-h") == 1
        assert project.scores("t-h") == {row["hash"]: 1.5}
        assert project.hash_of("scene0001_clean.jpg") == row["hash"]
        assert merge_missing(project, folder, "t", "t-h") == 0  # idempotent
    keys, hashes = done_from_shards(folder)
    assert len(keys) == 1 and hashes == [bytes.fromhex(row["hash"])]
