"""store.py: the SQLite project. WAL, schema version, content-hash identity across renames,
incremental rescans, atomic writes that fail as one StoreError sentence, odd file names."""

from __future__ import annotations

import os
import shutil
import sqlite3

import numpy as np
import pytest
from PIL import Image

from joyq_studio import store
from joyq_studio.store import SCHEMA_VERSION, Project, StoreError


def make_images(folder, n: int, start: int = 0) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        p = folder / f"img{i:03d}.png"
        Image.new("RGB", (8, 8), (i * 37 % 256, i * 11 % 256, 200)).save(p)
        paths.append(p)
    return paths


def one_line(msg: str) -> bool:
    return "\n" not in msg and msg.endswith(".")


@pytest.fixture
def folder(tmp_path):
    make_images(tmp_path / "images", 5)
    return tmp_path / "images"


def test_wal_schema_version_and_reopen_keeps_data(folder):
    with Project(folder) as p:
        assert p.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert p.get_meta("schema_version") == str(SCHEMA_VERSION)
        assert p.get_meta("folder") == str(folder.resolve())
        assert p.scan().new == 5
        (a, _), (b, _) = p.image_paths()[:2]
        cid = p.add_comparison(a, b, 1.0)
        p.save_scores("m", [(a, 0.25), (b, -1.5)])
        db_path = p.db_path
        # Durable the instant it returns: a second connection already sees it.
        other = sqlite3.connect(db_path)
        assert other.execute("SELECT a, b, outcome FROM comparisons").fetchall() == [(a, b, 1.0)]
        other.close()
    assert str(db_path).startswith(os.environ["JOYQ_DATA_DIR"])
    with Project(folder) as p:
        assert p.db_path == db_path
        assert p.comparisons() == [(cid, a, b, 1.0, "train", "click")]
        assert p.scores("m") == {a: 0.25, b: -1.5}
        assert len(p.image_paths()) == 5
        assert p.scan().new == 0


def test_newer_schema_is_refused(folder):
    with Project(folder) as p, p.transaction():
        p.set_meta("schema_version", str(SCHEMA_VERSION + 1))
    with pytest.raises(StoreError, match="newer") as info:
        Project(folder)
    assert one_line(str(info.value))


def test_rename_and_move_keep_comparisons_and_scores(folder):
    with Project(folder) as p:
        p.scan()
        h0, h1 = p.hash_of("img000.png"), p.hash_of("img001.png")
        p.add_comparison(h0, h1, 0.0)
        p.save_scores("m", [(h0, 1.0), (h1, 2.0)])
        p.save_results("tower", "m2", [(h0, np.arange(4, dtype=np.float32), 3.0)])

        (folder / "img000.png").rename(folder / "renamed zero.png")
        (folder / "sub" / "deeper").mkdir(parents=True)
        (folder / "img001.png").rename(folder / "sub" / "deeper" / "one.png")
        report = p.scan()
        assert (report.new, report.changed, report.removed) == (2, 0, 2)
        assert p.hash_of("renamed zero.png") == h0
        assert p.hash_of("sub/deeper/one.png") == h1
        assert p.hash_of("img000.png") is None and p.hash_of("img001.png") is None
        assert p.comparisons()[0][1:4] == (h0, h1, 0.0)
        assert p.scores("m") == {h0: 1.0, h1: 2.0}
        hashes, emb = p.embeddings("tower")
        assert hashes == [h0] and emb.tolist() == [[0.0, 1.0, 2.0, 3.0]]
        assert p.path_of(h1) == folder.resolve() / "sub" / "deeper" / "one.png"
        assert dict(p.image_paths())[h0] == "renamed zero.png"


def test_rescan_hashes_only_new_or_changed_files(folder, monkeypatch):
    calls = []
    real = store.content_hash
    monkeypatch.setattr(store, "content_hash", lambda path: calls.append(os.path.basename(path)) or real(path))
    with Project(folder) as p:
        p.scan()
        assert len(calls) == 5
        calls.clear()
        report = p.scan()
        assert calls == [] and (report.total, report.new, report.changed) == (5, 0, 0)

        make_images(folder, 1, start=10)  # a new file
        old = p.hash_of("img002.png")
        Image.new("RGB", (9, 9), (1, 2, 3)).save(folder / "img002.png")  # changed content
        os.utime(folder / "img002.png", ns=(1, 1_000_000_000))  # and certainly a new mtime
        report = p.scan()
        assert sorted(calls) == ["img002.png", "img010.png"]
        assert (report.total, report.new, report.changed, report.removed) == (6, 1, 1, 0)
        assert p.hash_of("img002.png") not in (None, old)


def test_deleted_files_leave_the_files_table(folder):
    with Project(folder) as p:
        p.scan()
        gone = p.hash_of("img003.png")
        (folder / "img003.png").unlink()
        assert p.scan().removed == 1
        assert p.db.execute("SELECT COUNT(*) FROM files").fetchone()[0] == 4
        assert p.hash_of("img003.png") is None
        assert gone not in dict(p.image_paths())
        assert p.path_of(gone) is None


def test_duplicates_share_one_image(folder):
    shutil.copy(folder / "img000.png", folder / "copy.png")
    with Project(folder) as p:
        p.scan()
        assert p.hash_of("copy.png") == p.hash_of("img000.png")
        assert len(p.image_paths()) == 5
        assert p.db.execute("SELECT COUNT(*) FROM files").fetchone()[0] == 6


def test_unreadable_files_recorded_and_excluded(folder):
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("not a picture")
    (folder / "readme.txt").write_text("ignored: not an image extension")
    with Project(folder) as p:
        report = p.scan()
        assert report.total == 7
        assert sorted(os.path.basename(path) for path, _ in report.unreadable) == ["empty.jpg", "notes.jpg"]
        assert len(p.image_paths()) == 5
        assert len(p.image_paths(include_errors=True)) == 7
        errors = dict(p.errors())
        assert set(errors) == {"empty.jpg", "notes.jpg"}
        assert "empty" in errors["empty.jpg"] and str(folder.resolve() / "notes.jpg") in errors["notes.jpg"]


def test_read_only_data_dir_gives_one_sentence(folder, monkeypatch):
    with Project(folder) as p:
        p.scan()
        project_dir = p.dir
    os.chmod(project_dir / "project.sqlite", 0o444)
    os.chmod(project_dir, 0o555)
    try:
        if os.geteuid() == 0:  # root ignores permissions: open SQLite read-only, as it would be
            real = sqlite3.connect
            monkeypatch.setattr(
                store.sqlite3, "connect", lambda path, **kw: real(f"file:{path}?mode=ro", uri=True, **kw)
            )
        with pytest.raises(StoreError) as info, Project(folder) as p:
            p.add_comparison(*[h for h, _ in p.image_paths()[:2]], 1.0)
    finally:
        os.chmod(project_dir, 0o755)
        os.chmod(project_dir / "project.sqlite", 0o644)
    msg = str(info.value)
    assert str(project_dir / "project.sqlite") in msg and "read-only" in msg and one_line(msg)


def test_unusable_data_dir_gives_one_sentence(folder, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("JOYQ_DATA_DIR", str(blocker / "data"))
    with pytest.raises(StoreError) as info:
        Project(folder)
    assert str(blocker) in str(info.value) and one_line(str(info.value))


def test_full_disk_is_one_sentence_and_nothing_half_written(folder):
    """SQLite's own SQLITE_FULL (max_page_count reached), which also makes SQLite roll the
    transaction back by itself."""
    with Project(folder) as p:
        p.scan()
        hashes = [h for h, _ in p.image_paths()]
        pages = p.db.execute("PRAGMA page_count").fetchone()[0]
        p.db.execute(f"PRAGMA max_page_count={pages}")
        rows = [(h, np.random.default_rng(0).random(20_000, dtype=np.float32), 1.0) for h in hashes]
        with pytest.raises(StoreError) as info:
            p.save_results("tower", "m", rows)
        msg = str(info.value)
        assert str(p.db_path) in msg and "disk is full" in msg and one_line(msg)
        assert not p.db.in_transaction
        assert p.db.execute("SELECT COUNT(*) FROM scores").fetchone()[0] == 0
        assert p.db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 0
        # Space comes back: the same project keeps working.
        p.db.execute("PRAGMA max_page_count=1073741823")
        p.save_results("tower", "m", rows)
        assert len(p.scores("m")) == 5


class _FailingDb:
    """Wraps the connection; the chosen statement fails like a full disk."""

    def __init__(self, db, fail_on: str):
        self._db, self._fail_on, self.seen = db, fail_on, 0

    def execute(self, sql, *args):
        if sql.startswith(self._fail_on):
            self.seen += 1
            if self.seen >= 2 or self._fail_on == "COMMIT":
                raise sqlite3.OperationalError("database or disk is full")
        return self._db.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._db, name)


@pytest.mark.parametrize("fail_on", ["INSERT", "COMMIT"])
def test_write_failure_midway_or_at_commit_rolls_back(folder, fail_on):
    with Project(folder) as p:
        p.scan()
        hashes = [h for h, _ in p.image_paths()]
        p.db = _FailingDb(p.db, fail_on)
        with pytest.raises(StoreError) as info:
            p.save_results("tower", "m", [(h, np.ones(4, np.float32), 1.0) for h in hashes])
        assert "disk is full" in str(info.value) and str(p.db_path) in str(info.value)
        assert not p.db.in_transaction
        assert p.db.execute("SELECT COUNT(*) FROM scores").fetchone()[0] == 0
        assert p.db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 0
        p.db = p.db._db


def test_locked_database_is_a_store_error(folder):
    with Project(folder) as p:
        p.scan()
        other = sqlite3.connect(p.db_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            p.db.execute("PRAGMA busy_timeout=50")
            with pytest.raises(StoreError, match="locked") as info:
                p.add_comparison(*[h for h, _ in p.image_paths()[:2]], 1.0)
            assert one_line(str(info.value))
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert p.comparison_count() == 0


def test_symlink_loops_do_not_hang(folder):
    (folder / "sub").mkdir()
    make_images(folder / "sub", 1, start=20)
    (folder / "sub" / "up").symlink_to(folder, target_is_directory=True)
    (folder / "self").symlink_to(folder / "sub", target_is_directory=True)
    (folder / "dangling.jpg").symlink_to(folder / "does-not-exist.jpg")
    found = []
    errors = []
    for f in store.walk_images(folder, lambda p, why: errors.append(p)):
        found.append(f.rel)
        assert len(found) < 100
    assert sorted(found) == sorted([f"img{i:03d}.png" for i in range(5)] + ["self/img020.png"]) or sorted(
        found
    ) == sorted([f"img{i:03d}.png" for i in range(5)] + ["sub/img020.png"])
    assert [os.path.basename(e) for e in errors] == ["dangling.jpg"]
    with Project(folder) as p:
        report = p.scan()
        assert report.total == 6 and len(p.image_paths()) == 6


ODD_NAMES = [
    "with space.png",
    "ünïcödé 日本.png",
    "emoji 🎨.png",
    "-leading-dash.png",
    "new\nline.png",
    "quote'\"comma,.png",
    "UPPER.PNG",
]


def test_odd_file_names(tmp_path):
    folder = tmp_path / "odd names ✓"
    folder.mkdir()
    for i, name in enumerate(ODD_NAMES):
        Image.new("RGB", (8, 8), (i * 30, 0, 0)).save(folder / name, "PNG")
    bad = os.fsencode(folder) + b"/latin1 caf\xe9.png"
    Image.new("RGB", (8, 8), (0, 99, 0)).save(bad, "PNG")
    with Project(folder) as p:
        report = p.scan()
        assert sorted(rel for _, rel in p.image_paths()) == sorted(ODD_NAMES)
        assert len(report.unreadable) == 1
        path, why = report.unreadable[0]
        assert "caf" in path and "UTF-8" in why
        for name in ODD_NAMES:
            assert p.path_of(p.hash_of(name)).read_bytes() == (folder / name).read_bytes()


def test_folder_path_not_utf8_is_refused_clearly(tmp_path):
    folder = os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9")
    os.mkdir(folder)
    with pytest.raises(StoreError, match="not valid UTF-8") as info:
        Project(folder)
    assert one_line(str(info.value))


def test_comparison_validation(folder):
    with Project(folder) as p:
        p.scan()
        a, b = [h for h, _ in p.image_paths()[:2]]
        with pytest.raises(StoreError):
            p.add_comparison(a, a, 1.0)
        with pytest.raises(StoreError):
            p.add_comparison(a, b, 0.7)
        assert p.add_comparisons([(a, b, 1, "test", "import"), (b, a, 0.5, "train", "click")]) == 2
        assert [c[3:] for c in p.comparisons()] == [(1.0, "test", "import"), (0.5, "train", "click")]
        assert len(p.comparisons("test")) == 1
        p.delete_comparison(p.comparisons()[0][0])
        assert p.comparison_count() == 1


def test_embeddings_round_trip_in_request_order(folder):
    with Project(folder) as p:
        p.scan()
        hashes = [h for h, _ in p.image_paths()]
        vecs = np.random.default_rng(0).normal(size=(5, 16)).astype(np.float32)
        p.save_results("t", "m", [(h, v, float(i)) for i, (h, v) in enumerate(zip(hashes, vecs))])
        order = [hashes[3], "unknown", hashes[0]]
        got_h, got = p.embeddings("t", order)
        assert got_h == [hashes[3], hashes[0]]
        np.testing.assert_allclose(got, vecs[[3, 0]], rtol=1e-3, atol=1e-3)  # stored float16
        assert p.embedded_hashes("t") == set(hashes) and p.embedded_hashes("other") == set()
        assert p.scored_hashes("m") == set(hashes)


def test_missing_folder_and_file_instead_of_folder(tmp_path):
    with pytest.raises(StoreError, match="no such folder"):
        Project(tmp_path / "nope")
    (tmp_path / "f.png").write_bytes(b"x")
    with pytest.raises(StoreError, match="not a folder"):
        Project(tmp_path / "f.png")
