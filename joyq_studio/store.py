"""The project store: one image folder + one SQLite database in the user data dir.

Images are identified by content hash, so a rename or move keeps labels and scores.
The image folder is only ever read. Every write is one transaction (WAL mode), so an
interrupted run leaves the database as it was after the last committed batch.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sqlite3
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import platformdirs

from .errors import JoyqError
from .fsio import describe_error
from .images import ImageError, content_hash, image_size, is_image_path
from .settings import APP_NAME

SCHEMA_VERSION = 3


SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- one row per file on disk; several files may share one hash (duplicates)
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,            -- relative to the folder, '/' separated
    hash TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS files_hash ON files(hash);
-- one row per distinct image content
CREATE TABLE IF NOT EXISTS images (
    hash TEXT PRIMARY KEY,
    width INTEGER,
    height INTEGER,
    bytes INTEGER NOT NULL,
    error TEXT                         -- why it cannot be read, or NULL
);
CREATE TABLE IF NOT EXISTS embeddings (
    hash TEXT NOT NULL,
    tower TEXT NOT NULL,
    vector BLOB NOT NULL,              -- float16, little endian
    PRIMARY KEY (hash, tower)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS scores (
    hash TEXT NOT NULL,
    model TEXT NOT NULL,               -- ModelId.key
    score REAL NOT NULL,
    PRIMARY KEY (model, hash)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS comparisons (
    id INTEGER PRIMARY KEY,
    a TEXT NOT NULL,                   -- hash of the first image
    b TEXT NOT NULL,
    outcome REAL NOT NULL,             -- 1 = a won, 0 = b won, 0.5 = tie
    split TEXT NOT NULL DEFAULT 'train',   -- 'test' = held-out pair picked uniformly at random
    kind TEXT NOT NULL DEFAULT 'click',    -- how the pair was chosen / where it came from
    created REAL NOT NULL,
    source TEXT,                           -- who judged: NULL = the user, else e.g. 'llm:MODEL:PROMPTHASH'
    weight REAL NOT NULL DEFAULT 1.0       -- how much training trusts it (labels from other sources)
);
CREATE TABLE IF NOT EXISTS versions (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    path TEXT NOT NULL,
    record TEXT NOT NULL               -- JSON: config, parent, counts, metrics, calibration
);
-- a bucket set by hand for one image; it outlives recalibration and retraining
CREATE TABLE IF NOT EXISTS bucket_overrides (
    hash TEXT PRIMARY KEY,             -- image content
    bucket INTEGER NOT NULL,           -- chosen by hand: 0 = worst .. K - 1 = best
    created REAL NOT NULL
) WITHOUT ROWID;
-- issue 22: the star ratings last imported (joyq import-ratings); replaced on each import
CREATE TABLE IF NOT EXISTS star_ratings (
    hash TEXT PRIMARY KEY,             -- image content
    stars INTEGER NOT NULL,            -- -1 (rejected) .. 5
    origin TEXT NOT NULL,              -- 'sidecar', 'embedded' or 'exif'
    held_out INTEGER NOT NULL          -- 1: kept for the agreement, never in a training pair
) WITHOUT ROWID;
-- issue 21: the diverse subset (joyq subset) and the versioned pre-label prompts
CREATE TABLE IF NOT EXISTS subset_images (
    hash TEXT PRIMARY KEY,             -- image content
    rank INTEGER NOT NULL              -- selection order (0 = the random start)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS prompt_versions (
    id INTEGER PRIMARY KEY,            -- what `prelabel run --prompt ID` names
    hash TEXT NOT NULL,                -- prompt hash (the llm_* tables' 'prompt')
    text TEXT NOT NULL,
    parent INTEGER,                    -- the prompt it was edited from
    round INTEGER,                     -- optimisation round (NULL: added by hand)
    model TEXT,                        -- the labeller it was measured with
    agree INTEGER, n INTEGER,          -- agreement k / n on its round's pairs
    low REAL, high REAL,               -- ... Wilson 95% interval
    cost REAL NOT NULL DEFAULT 0,      -- USD spent measuring (and editing) it
    note TEXT,                         -- e.g. 'held-out', 'chosen', 'no prompt in reply'
    run TEXT,                          -- the optimisation run (its settings' hash), for resuming
    created REAL NOT NULL
);
"""
# version -> statements that upgrade from version - 1 (run in one transaction)
MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: (
        "ALTER TABLE comparisons ADD COLUMN source TEXT",
        "ALTER TABLE comparisons ADD COLUMN weight REAL NOT NULL DEFAULT 1.0",
    ),
    3: (
        """CREATE TABLE IF NOT EXISTS bucket_overrides (
    hash TEXT PRIMARY KEY,             -- image content
    bucket INTEGER NOT NULL,           -- chosen by hand: 0 = worst .. K - 1 = best
    created REAL NOT NULL
) WITHOUT ROWID""",
    ),
}


class Comparison(NamedTuple):
    id: int
    a: str  # content hash of the first image
    b: str
    outcome: float  # 1 = a won, 0 = b won, 0.5 = tie
    split: str  # 'train' or 'test' (held out, chosen uniformly)
    kind: str  # how the pair was chosen
    source: str | None  # None = the user; else who judged (e.g. an LLM)
    weight: float  # how much training trusts it
    created: float


class StoreError(JoyqError):
    """A project cannot be opened or written; one sentence naming the path and the problem."""

    # set by database_error(): the database, why in a few words, what the user can do
    path: Path | None = None
    reason: str | None = None
    advice: str | None = None


# What the user can do about a database error, by SQLite primary result code.
_ADVICE = {
    5: "close the other program (or JoyQuality Studio window) using it and retry",
    6: "close the other program (or JoyQuality Studio window) using it and retry",
    8: "make the file and its folder writable and retry",
    10: "check the disk, then retry",
    11: "move that file aside to start this folder afresh (the images are not affected), or restore it from a backup",
    13: "free some disk space and retry",
    14: "check that the folder exists and is writable, then retry",
    26: "move that file aside to start this folder afresh (the images are not affected), or restore it from a backup",
}


def database_error(path: Path, e: BaseException, doing: str = "cannot use the project database") -> StoreError:
    """One sentence for any database failure: the database, what failed, why and what to do."""
    code = getattr(e, "sqlite_errorcode", None)
    advice = _ADVICE.get(code & 0xFF) if code is not None else None
    if advice is None and isinstance(e, sqlite3.DatabaseError) and not isinstance(e, sqlite3.OperationalError):
        advice = _ADVICE[11]  # malformed, not a database, ...: nothing short of a new file helps
    err = StoreError(f"{path}: {doing} ({describe_error(e)}); {advice or 'retry, or report this as a bug'}.")
    err.path, err.reason, err.advice = path, describe_error(e), advice or "retry, or report this as a bug"
    return err


def partly_saved(e: StoreError, kept: str) -> StoreError:
    """``e`` (a failed save) restated for a run whose earlier batches were saved: ``kept``
    says what was, instead of the misleading 'nothing was changed'."""
    if getattr(e, "reason", None) is None:
        return e
    err = StoreError(f"{e.path}: could not save the last batch ({e.reason}); {kept}; {e.advice}.")
    err.path, err.reason, err.advice = e.path, e.reason, e.advice
    return err


class _GuardedCursor(sqlite3.Cursor):
    """Every read outside a transaction that hits a database error (a damaged page can
    surface on any row) raises a :class:`StoreError` naming the database; inside a
    transaction the error reaches :class:`_Transaction`, which rolls back and says so."""

    def _fail(self, e: sqlite3.Error):
        if self.connection.in_transaction:
            raise e
        raise database_error(getattr(self.connection, "path", Path("the project database")), e) from None

    def execute(self, *args):
        try:
            return super().execute(*args)
        except sqlite3.DatabaseError as e:
            self._fail(e)

    def executemany(self, *args):
        try:
            return super().executemany(*args)
        except sqlite3.DatabaseError as e:
            self._fail(e)

    def executescript(self, *args):
        try:
            return super().executescript(*args)
        except sqlite3.DatabaseError as e:
            self._fail(e)

    def __next__(self):
        try:
            return super().__next__()
        except sqlite3.DatabaseError as e:
            self._fail(e)

    def fetchone(self):
        try:
            return super().fetchone()
        except sqlite3.DatabaseError as e:
            self._fail(e)

    def fetchmany(self, *args):
        try:
            return super().fetchmany(*args)
        except sqlite3.DatabaseError as e:
            self._fail(e)

    def fetchall(self):
        try:
            return super().fetchall()
        except sqlite3.DatabaseError as e:
            self._fail(e)


class _GuardedConnection(sqlite3.Connection):
    path: Path

    def cursor(self, factory=_GuardedCursor):
        return super().cursor(factory)

    # sqlite3.Connection's shortcuts make a plain cursor; these make a guarded one
    def execute(self, *args):
        return self.cursor().execute(*args)

    def executemany(self, *args):
        return self.cursor().executemany(*args)

    def executescript(self, *args):
        return self.cursor().executescript(*args)


def data_dir() -> Path:
    """Where projects live: $JOYQ_DATA_DIR, else the platform's user data dir."""
    env = os.environ.get("JOYQ_DATA_DIR")
    return Path(env) if env else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def cache_dir() -> Path:
    env = os.environ.get("JOYQ_CACHE_DIR")
    return Path(env) if env else Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def project_dir(folder: Path) -> Path:
    key = hashlib.blake2b(str(folder).encode("utf-8", "surrogateescape"), digest_size=8).hexdigest()
    return data_dir() / "projects" / f"{folder.name or 'root'}-{key}"


@dataclass
class ScannedFile:
    rel: str
    size: int
    mtime_ns: int


@dataclass
class ScanReport:
    total: int = 0
    new: int = 0
    changed: int = 0
    removed: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    links_not_followed: list[str] = field(default_factory=list)  # symlinked folders left out
    seconds: float = 0.0


def walk_images(
    folder: Path,
    on_error: Callable[[str, str], None] | None = None,
    follow_links: bool = False,
    on_link: Callable[[str], None] | None = None,
) -> Iterator[ScannedFile]:
    """Every image file under folder, recursively, in name order.

    Symbolic links to folders are not followed unless ``follow_links`` (each one skipped is
    passed to ``on_link``): a link can lead anywhere on the disk, and what is found through
    it is no longer "this folder". Links to image files are read. Entries that cannot be
    used are passed to ``on_error(path, reason)``: broken links, link loops, names that
    are not valid UTF-8, folders that cannot be listed.
    """

    def report(path: str, why: str) -> None:
        if on_error:
            on_error(os.fsencode(path).decode("utf-8", "replace"), why)

    root_real = os.path.realpath(folder)
    seen_dirs: set[tuple[int, int]] = set()
    stack = [folder]
    while stack:
        d = stack.pop()
        try:
            st = d.stat()
            if (st.st_dev, st.st_ino) in seen_dirs:
                continue  # a second link to a folder already walked
            seen_dirs.add((st.st_dev, st.st_ino))
            entries = list(os.scandir(d))
        except OSError as e:
            report(str(d), f"folder cannot be read ({describe_error(e)})")
            continue
        for entry in sorted(entries, key=lambda e: e.name, reverse=True):
            try:
                if entry.is_symlink():
                    try:
                        target = os.stat(entry.path)
                    except OSError as e:
                        if not (is_image_path(entry.name) or not Path(entry.name).suffix):
                            continue  # a dangling link to a file we would not read anyway
                        if e.errno == errno.ELOOP:
                            report(entry.path, "is a symbolic link loop; left out")
                        elif e.errno in (errno.ENOENT, errno.ENOTDIR):
                            report(entry.path, f"is a broken symbolic link (to {os.readlink(entry.path)}); left out")
                        else:
                            report(entry.path, f"cannot be read ({describe_error(e)})")
                        continue
                    if stat.S_ISDIR(target.st_mode):
                        if not follow_links:
                            if on_link:
                                on_link(os.fsencode(entry.path).decode("utf-8", "replace"))
                            continue
                        real = os.path.realpath(entry.path)
                        if (
                            real == root_real
                            or os.path.realpath(d).startswith(real.rstrip(os.sep) + os.sep)
                            or real == os.path.realpath(d)
                        ):
                            report(entry.path, f"is a symbolic link loop (it leads back to {real}); left out")
                            continue
                        stack.append(Path(entry.path))
                        continue
                elif entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                    continue
                if not is_image_path(entry.name):
                    continue
                st = entry.stat()
                if not stat.S_ISREG(st.st_mode):
                    continue
                rel = Path(entry.path).relative_to(folder).as_posix()
                if not _utf8(rel):  # SQLite text must be UTF-8
                    report(entry.path, "the file name is not valid UTF-8; rename the file to include it")
                    continue
                yield ScannedFile(rel, st.st_size, st.st_mtime_ns)
            except OSError as e:  # permission, deleted meanwhile
                report(entry.path, f"cannot be read ({describe_error(e)})")


class Project:
    """A folder of images and its SQLite database. Use as a context manager."""

    def __init__(self, folder: str | os.PathLike, db_path: Path | None = None):
        self.folder = Path(folder).expanduser().resolve()
        if not self.folder.exists():
            raise StoreError(f"{self.folder}: no such folder.")
        if not self.folder.is_dir():
            raise StoreError(f"{self.folder}: is a file, not a folder.")
        if not _utf8(str(self.folder)):
            raise StoreError(f"{self.folder}: the folder's path is not valid UTF-8; rename it to open it.")
        self.dir = db_path.parent if db_path else project_dir(self.folder)
        self.db_path = db_path or self.dir / "project.sqlite"
        self.warnings: list[str] = []  # things the user should hear about (the CLI prints them)
        try:
            if self.db_path.is_file() and self.db_path.stat().st_size == 0:
                self.warnings.append(
                    f"{self.db_path}: the project database was empty (0 bytes), so this folder "
                    "starts as a new project: earlier comparisons, scores and versions are not in it."
                )
        except OSError:
            pass
        db = None
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                self.db_path, timeout=30, isolation_level=None, check_same_thread=False, factory=_GuardedConnection
            )
            db.path = self.db_path
            self.db = db
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except StoreError:
            if db is not None:
                db.close()
            raise
        except (OSError, sqlite3.Error) as e:
            if db is not None:
                db.close()
            raise database_error(self.db_path, e, "cannot open the project database") from None

    # -- plumbing ---------------------------------------------------------------------
    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    def transaction(self):
        """``with project.transaction():`` one atomic write; errors become StoreError."""
        return _Transaction(self)

    def _migrate(self) -> None:
        self.db.executescript(SCHEMA)
        version = int(self.get_meta("schema_version") or "0")
        if version == 0:
            with self.transaction():
                self.set_meta("schema_version", str(SCHEMA_VERSION))
                self.set_meta("folder", str(self.folder))
            return
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.db_path}: made by a newer JoyQuality Studio (schema {version}); please upgrade.")
        for v in range(version + 1, SCHEMA_VERSION + 1):
            with self.transaction():
                for statement in MIGRATIONS[v]:
                    self.db.execute(statement)
                self.set_meta("schema_version", str(v))

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    # -- scanning -----------------------------------------------------------------------
    @property
    def follow_links(self) -> bool:
        """Whether scans follow symbolic links to folders (off unless the user opted in)."""
        return self.get_meta("follow_links") == "1"

    def set_follow_links(self, follow: bool) -> None:
        with self.transaction():
            self.set_meta("follow_links", "1" if follow else "0")

    def scan(
        self, progress: Callable[[int, int], None] | None = None, cancel: Callable[[], bool] | None = None
    ) -> ScanReport:
        """Sync the files table with the folder; only new or changed files are hashed.
        Symbolic links to folders are followed only when :attr:`follow_links` is set."""
        t0 = time.perf_counter()
        report = ScanReport()
        rows = self.db.execute("SELECT path, hash, size, mtime_ns FROM files").fetchall()
        known = {p: (h, s, m) for p, h, s, m in rows}
        on_disk = list(
            walk_images(
                self.folder,
                lambda p, why: report.unreadable.append((p, why)),
                follow_links=self.follow_links,
                on_link=report.links_not_followed.append,
            )
        )
        report.total = len(on_disk)
        todo = [f for f in on_disk if known.get(f.rel, (None, -1, -1))[1:] != (f.size, f.mtime_ns)]
        batch: list[tuple[ScannedFile, str, tuple[int, int] | None, str | None]] = []
        for n, f in enumerate(todo, 1):
            if cancel and cancel():
                break
            path = self.folder / f.rel
            try:
                digest = content_hash(path)
            except OSError as e:
                report.unreadable.append((str(path), f"cannot be read ({e.strerror or e})"))
                continue
            try:
                size, error = image_size(path), None
            except ImageError as e:
                size, error = None, str(e)
                report.unreadable.append((str(path), str(e)))
            batch.append((f, digest, size, error))
            if f.rel in known:
                report.changed += 1
            else:
                report.new += 1
            if len(batch) >= 500:
                self._write_scanned(batch, report)
                batch = []
            if progress:
                progress(n, len(todo))
        self._write_scanned(batch, report)
        present = {f.rel for f in on_disk}
        gone = [p for p in known if p not in present]
        if gone and not (cancel and cancel()):
            with self.transaction():
                self.db.executemany("DELETE FROM files WHERE path = ?", ((p,) for p in gone))
            report.removed = len(gone)
        report.seconds = time.perf_counter() - t0
        return report

    def _write_scanned(self, batch, report: ScanReport | None = None) -> None:
        if not batch:
            return
        saved = (report.new + report.changed - len(batch)) if report else 0
        try:
            self._write_scanned_batch(batch)
        except StoreError as e:
            if saved > 0:
                raise partly_saved(
                    e, f"the {saved} files found before it in this scan were saved, rerun to continue"
                ) from None
            raise

    def _write_scanned_batch(self, batch) -> None:
        with self.transaction():
            for f, digest, size, error in batch:
                self.db.execute(
                    "INSERT OR REPLACE INTO files(path, hash, size, mtime_ns) VALUES (?, ?, ?, ?)",
                    (f.rel, digest, f.size, f.mtime_ns),
                )
                w, h = size if size else (None, None)
                self.db.execute(
                    "INSERT INTO images(hash, width, height, bytes, error) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT(hash) DO UPDATE SET width=excluded.width, height=excluded.height, "
                    "error=excluded.error",
                    (digest, w, h, f.size, error),
                )

    # -- images ---------------------------------------------------------------------------
    def image_paths(self, include_errors: bool = False) -> list[tuple[str, str]]:
        """(hash, relative path) for each distinct image present on disk, in path order."""
        sql = (
            "SELECT i.hash, MIN(f.path) FROM images i JOIN files f ON f.hash = i.hash "
            + ("" if include_errors else "WHERE i.error IS NULL ")
            + "GROUP BY i.hash ORDER BY MIN(f.path)"
        )
        return [(h, p) for h, p in self.db.execute(sql).fetchall()]

    def path_of(self, digest: str) -> Path | None:
        row = self.db.execute("SELECT MIN(path) FROM files WHERE hash = ?", (digest,)).fetchone()
        return self.folder / row[0] if row and row[0] else None

    def hash_of(self, rel: str) -> str | None:
        row = self.db.execute("SELECT hash FROM files WHERE path = ?", (rel,)).fetchone()
        return row[0] if row else None

    def file_hashes(self, include_errors: bool = False) -> list[tuple[str, str]]:
        """(relative path, hash) of every image file (duplicates included), in path order."""
        sql = (
            "SELECT f.path, f.hash FROM files f JOIN images i ON i.hash = f.hash "
            + ("" if include_errors else "WHERE i.error IS NULL ")
            + "ORDER BY f.path"
        )
        return [(p, h) for p, h in self.db.execute(sql).fetchall()]

    def image_info(self, digest: str) -> dict | None:
        row = self.db.execute("SELECT width, height, bytes, error FROM images WHERE hash = ?", (digest,)).fetchone()
        if not row:
            return None
        return {"width": row[0], "height": row[1], "bytes": row[2], "error": row[3]}

    def set_errors(self, errors: Iterable[tuple[str, str]]) -> None:
        with self.transaction():
            self.db.executemany("UPDATE images SET error = ? WHERE hash = ?", ((e, h) for h, e in errors))

    def errors(self) -> list[tuple[str, str]]:
        """(relative path, reason) of every file that could not be read."""
        return list(
            self.db.execute(
                "SELECT MIN(f.path), i.error FROM images i JOIN files f ON f.hash = i.hash "
                "WHERE i.error IS NOT NULL GROUP BY i.hash ORDER BY MIN(f.path)"
            )
        )

    # -- embeddings and scores --------------------------------------------------------------
    def save_results(self, tower: str, model: str, rows: Iterable[tuple[str, np.ndarray, float]]) -> None:
        """Store (hash, embedding, score) rows of one model in one transaction."""
        with self.transaction():
            for digest, emb, score in rows:
                self.db.execute(
                    "INSERT OR REPLACE INTO embeddings(hash, tower, vector) VALUES (?, ?, ?)",
                    (digest, tower, np.asarray(emb, dtype="<f2").tobytes()),
                )
                self.db.execute(
                    "INSERT OR REPLACE INTO scores(hash, model, score) VALUES (?, ?, ?)", (digest, model, float(score))
                )

    def save_scores(self, model: str, rows: Iterable[tuple[str, float]]) -> None:
        with self.transaction():
            self.db.executemany(
                "INSERT OR REPLACE INTO scores(hash, model, score) VALUES (?, ?, ?)",
                ((h, model, float(s)) for h, s in rows),
            )

    def scored_hashes(self, model: str) -> set[str]:
        return {h for (h,) in self.db.execute("SELECT hash FROM scores WHERE model = ?", (model,)).fetchall()}

    def embedded_hashes(self, tower: str) -> set[str]:
        return {h for (h,) in self.db.execute("SELECT hash FROM embeddings WHERE tower = ?", (tower,)).fetchall()}

    def embeddings(self, tower: str, hashes: list[str] | None = None) -> tuple[list[str], np.ndarray]:
        """(hashes, float32 [N, D]) of cached embeddings for one tower (optionally a subset, in order)."""
        if hashes is None:
            rows = self.db.execute(
                "SELECT hash, vector FROM embeddings WHERE tower = ? ORDER BY hash", (tower,)
            ).fetchall()
        else:
            found = {}
            for chunk in _chunks(hashes, 900):
                q = f"SELECT hash, vector FROM embeddings WHERE tower = ? AND hash IN ({','.join('?' * len(chunk))})"
                found.update(self.db.execute(q, (tower, *chunk)).fetchall())
            rows = [(h, found[h]) for h in hashes if h in found]
        if not rows:
            return [], np.zeros((0, 0), dtype=np.float32)
        matrix = np.frombuffer(b"".join(v for _, v in rows), dtype="<f2").reshape(len(rows), -1)
        return [h for h, _ in rows], matrix.astype(np.float32)

    def scores(self, model: str) -> dict[str, float]:
        return dict(self.db.execute("SELECT hash, score FROM scores WHERE model = ?", (model,)).fetchall())

    def current_model_key(self) -> str | None:
        """Key of the model whose scores the ranking and exports use, or None if nothing is scored.

        Meta 'current_model_key' (set by scoring / adoption via set_current_model_key), else
        the active version's 'model_key', else the only model that has scores in this project.
        """
        key = self.get_meta("current_model_key")
        if key:
            return key
        vid = self.active_version
        v = self.version(vid) if vid else None
        if v and v.get("model_key"):
            return v["model_key"]
        models = [m for (m,) in self.db.execute("SELECT DISTINCT model FROM scores LIMIT 2")]
        return models[0] if len(models) == 1 else None

    def set_current_model_key(self, key: str | None) -> None:
        with self.transaction():
            if key is None:
                self.db.execute("DELETE FROM meta WHERE key = 'current_model_key'")
            else:
                self.set_meta("current_model_key", key)

    # -- comparisons ----------------------------------------------------------------------
    def add_comparison(
        self,
        a: str,
        b: str,
        outcome: float,
        split: str = "train",
        kind: str = "click",
        source: str | None = None,
        weight: float = 1.0,
    ) -> int:
        """Record one judgement durably (committed before this returns); returns its id.

        ``source`` None means the user judged it; labels from elsewhere (an LLM) name their
        source and carry the ``weight`` training gives them.
        """
        if a == b:
            raise StoreError("An image cannot be compared with itself.")
        if outcome not in (0.0, 0.5, 1.0):
            raise StoreError(f"Outcome must be 1 (first won), 0 (second won) or 0.5 (tie), not {outcome}.")
        with self.transaction():
            cur = self.db.execute(
                "INSERT INTO comparisons(a, b, outcome, split, kind, created, source, weight)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (a, b, float(outcome), split, kind, time.time(), source, float(weight)),
            )
        return int(cur.lastrowid)

    def add_comparisons(self, rows: Iterable[tuple]) -> int:
        """Many (a, b, outcome, split, kind[, source, weight]) at once, atomically; returns how many."""
        now = time.time()
        with self.transaction():
            cur = self.db.executemany(
                "INSERT INTO comparisons(a, b, outcome, split, kind, created, source, weight)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (
                        r[0],
                        r[1],
                        float(r[2]),
                        r[3],
                        r[4],
                        now,
                        r[5] if len(r) > 5 else None,
                        float(r[6]) if len(r) > 6 else 1.0,
                    )
                    for r in rows
                ),
            )
        return cur.rowcount

    def delete_comparison(self, comparison_id: int) -> None:
        with self.transaction():
            self.db.execute("DELETE FROM comparisons WHERE id = ?", (comparison_id,))

    def comparisons(self, split: str | None = None) -> list[tuple[int, str, str, float, str, str]]:
        """(id, a, b, outcome, split, kind), oldest first."""
        return [tuple(r[:6]) for r in self.comparison_records(split)]  # type: ignore[misc]

    def comparison_records(self, split: str | None = None) -> list[Comparison]:
        """Every comparison with its source and weight, oldest first."""
        sql = "SELECT id, a, b, outcome, split, kind, source, weight, created FROM comparisons"
        args: tuple = ()
        if split:
            sql, args = sql + " WHERE split = ?", (split,)
        return [Comparison(*r) for r in self.db.execute(sql + " ORDER BY id", args).fetchall()]

    def recent_comparisons(
        self, limit: int = 100, since: float | None = None, kinds: Iterable[str] | None = None, user_only: bool = True
    ) -> list[Comparison]:
        """The last ``limit`` comparisons, newest first: those made after ``since`` (seconds
        since the epoch, e.g. when this session began), of the given ``kinds`` only, and by
        the user only (not an LLM's) unless ``user_only`` is False. Comparisons are durable,
        so this is the undo history after a restart too; undo one with :meth:`delete_comparison`."""
        sql = "SELECT id, a, b, outcome, split, kind, source, weight, created FROM comparisons WHERE 1 = 1"
        args: list = []
        if since is not None:
            sql += " AND created > ?"
            args.append(since)
        kind_list = list(kinds) if kinds is not None else None
        if kind_list is not None:
            sql += f" AND kind IN ({', '.join('?' * len(kind_list))})"
            args += kind_list
        if user_only:
            sql += " AND source IS NULL"
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(max(0, int(limit)))
        return [Comparison(*r) for r in self.db.execute(sql, args).fetchall()]

    # -- bucket overrides -----------------------------------------------------------------
    def bucket_overrides(self) -> dict[str, int]:
        """hash -> bucket set by hand (0 = worst); the ranking uses it over the calibrated one."""
        return {h: int(b) for h, b in self.db.execute("SELECT hash, bucket FROM bucket_overrides").fetchall()}

    def set_bucket_override(self, digest: str, bucket: int | None) -> None:
        """Put the image ``digest`` in ``bucket`` by hand (None clears it). Kept across
        recalibration and retraining: it belongs to the image's content, not to a model."""
        with self.transaction():
            if bucket is None:
                self.db.execute("DELETE FROM bucket_overrides WHERE hash = ?", (digest,))
            else:
                if int(bucket) < 0:
                    raise StoreError(f"A bucket is a number from 0 (worst) up, not {bucket}.")
                self.db.execute(
                    "INSERT OR REPLACE INTO bucket_overrides(hash, bucket, created) VALUES (?, ?, ?)",
                    (digest, int(bucket), time.time()),
                )

    def comparison_count(self, since: float | None = None) -> int:
        """All comparisons, or those made after the time ``since`` (seconds since the epoch)."""
        if since is None:
            return self.db.execute("SELECT COUNT(*) FROM comparisons").fetchone()[0]
        return self.db.execute("SELECT COUNT(*) FROM comparisons WHERE created > ?", (since,)).fetchone()[0]

    # -- model versions -------------------------------------------------------------------
    @property
    def versions_dir(self) -> Path:
        return self.dir / "versions"

    def add_version(self, version_id: str, path: Path, record: dict) -> None:
        with self.transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO versions(id, created, path, record) VALUES (?, ?, ?, ?)",
                (version_id, time.time(), str(path), json.dumps(record)),
            )

    def versions(self) -> list[dict]:
        rows = self.db.execute("SELECT id, created, path, record FROM versions ORDER BY created").fetchall()
        out = []
        for i, c, p, r in rows:
            try:
                record = json.loads(r)
            except (ValueError, RecursionError):
                record = None
            if not isinstance(record, dict):
                raise StoreError(
                    f"{self.db_path}: the record of model version {i} is damaged; delete that version "
                    "or move the database aside to start this folder afresh."
                )
            out.append({"id": i, "created": c, "path": p, **record})
        return out

    def version(self, version_id: str) -> dict | None:
        return next((v for v in self.versions() if v["id"] == version_id), None)

    def update_version_record(self, version_id: str, **changes) -> None:
        v = self.version(version_id)
        if v is None:
            raise StoreError(f"No model version {version_id!r} in this project.")
        record = {k: val for k, val in v.items() if k not in ("id", "created", "path")}
        record.update(changes)
        with self.transaction():
            self.db.execute("UPDATE versions SET record = ? WHERE id = ?", (json.dumps(record), version_id))

    def delete_version(self, version_id: str) -> None:
        """Forget a (discarded) version and delete its folder; the active one is refused."""
        v = self.version(version_id)
        if v is None:
            raise StoreError(f"No model version {version_id!r} in this project.")
        if version_id == self.active_version:
            raise StoreError(f"Version {version_id} is in use; switch to another model before deleting it.")
        with self.transaction():
            self.db.execute("DELETE FROM versions WHERE id = ?", (version_id,))
        folder = Path(v["path"])
        if folder.parent == self.versions_dir.resolve() or folder.parent == self.versions_dir:
            shutil.rmtree(folder, ignore_errors=True)

    @property
    def base_model(self) -> str | None:
        """The starting model the user chose for this folder (None = the app's default)."""
        return self.get_meta("base_model")

    def set_base_model(self, spec: str | None) -> None:
        with self.transaction():
            if spec is None:
                self.db.execute("DELETE FROM meta WHERE key = 'base_model'")
            else:
                self.set_meta("base_model", spec)

    @property
    def active_version(self) -> str | None:
        return self.get_meta("active_version")

    def set_active_version(self, version_id: str | None) -> None:
        if version_id is not None and self.version(version_id) is None:
            raise StoreError(f"No model version {version_id!r} in this project; see `joyq versions`.")
        with self.transaction():
            if version_id is None:
                self.db.execute("DELETE FROM meta WHERE key = 'active_version'")
            else:
                self.set_meta("active_version", version_id)

    def active_model_spec(self, default: str) -> str:
        """The --model string of the active version, else the folder's base model, else ``default``."""
        vid = self.active_version
        v = self.version(vid) if vid else None
        return v["path"] if v else (self.base_model or default)


class _Transaction:
    def __init__(self, project: Project):
        self.db = project.db
        self.path = project.db_path

    def __enter__(self):
        self.nested = self.db.in_transaction
        if not self.nested:
            try:
                self.db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:  # e.g. locked by another process past the timeout
                raise database_error(self.path, e, "could not save, nothing was changed") from None
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.nested:
            return False
        if exc_type is None:
            try:
                self.db.execute("COMMIT")
                return False
            except sqlite3.Error as e:
                self._rollback()
                raise database_error(self.path, e, "could not save, nothing was changed") from None
        self._rollback()
        if isinstance(exc, sqlite3.Error):
            raise database_error(self.path, exc, "could not save, nothing was changed") from None
        return False

    def _rollback(self) -> None:
        if self.db.in_transaction:  # SQLite already rolled back after e.g. SQLITE_FULL
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the error being reported says what went wrong


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:  # undecodable bytes of the file system name, kept as surrogates
        return False


def _chunks(items: list, n: int) -> Iterator[list]:
    for i in range(0, len(items), n):
        yield items[i : i + n]
