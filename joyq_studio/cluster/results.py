"""Result shards of a Ray scoring job, what a rerun skips, and the merge into a project.

A shard is one Parquet file of finished rows, written atomically (temporary name, then
rename) by the driver, so a killed job leaves only whole shards. Columns:

======== ========= ===========================================================
path     string    the file as listed (absolute for folders)
hash     string    blake2b-128 of the bytes (:func:`joyq_studio.images.content_hash`); null if unreadable
score    float32   the model's latent score; null for a failed file
embedding binary   the pooled embedding, float16 little endian (the store's format); null if failed or not kept
error    string    one sentence naming the file and the problem; null when scored
size, mtime_ns  int64   the file's size and modification time when it was read
width, height   int32   the upright image's size in pixels (null if failed)
======== ========= ===========================================================

The model's key (:func:`joyq_studio.model.model_id`) is in each shard's metadata and in
the folder name: a job directory holds the shards of one model only.

Resuming: a file is skipped without being read when its (path, size, mtime) is in a shard
or, for a project, in the project's files table with a score of this model; a file that
was read is skipped before decoding when its content hash is already scored. Exactly
once: the done state is computed from the shards, which only ever hold finished rows.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SHARD_GLOB = "shard-*.parquet"
COLUMNS = ("path", "hash", "score", "embedding", "error", "size", "mtime_ns", "width", "height")


def shard_schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("path", pa.string()),
            ("hash", pa.string()),
            ("score", pa.float32()),
            ("embedding", pa.binary()),
            ("error", pa.string()),
            ("size", pa.int64()),
            ("mtime_ns", pa.int64()),
            ("width", pa.int32()),
            ("height", pa.int32()),
        ]
    )


def path_key(path: str, size: int, mtime_ns: int) -> int:
    """64-bit identity of a file's state: the same path, size and mtime mean the same bytes."""
    digest = hashlib.blake2b(f"{path}\0{size}\0{mtime_ns}".encode("utf-8", "surrogateescape"), digest_size=8)
    return int.from_bytes(digest.digest(), "little")


def hash_bytes(hexdigest: str) -> bytes:
    return bytes.fromhex(hexdigest)


@dataclass
class Done:
    """What a job may skip: sorted uint64 path keys and sorted 16-byte content hashes.
    Small enough to broadcast to every task (14M files: about 340 MB)."""

    keys: np.ndarray  # uint64, sorted
    hashes: np.ndarray  # S16, sorted

    @staticmethod
    def build(keys: list[int], hashes: list[bytes]) -> Done:
        return Done(np.unique(np.asarray(keys, dtype=np.uint64)), np.unique(np.asarray(hashes, dtype="S16")))

    def has_key(self, key: int) -> bool:
        return _contains(self.keys, np.uint64(key))

    def has_hash(self, hexdigest: str) -> bool:
        return _contains(self.hashes, np.bytes_(hash_bytes(hexdigest)))

    def __len__(self) -> int:
        return int(self.hashes.size)


def _contains(sorted_array: np.ndarray, value) -> bool:
    i = int(np.searchsorted(sorted_array, value))
    return i < sorted_array.size and sorted_array[i] == value


def shard_paths(folder: Path) -> list[Path]:
    return sorted(folder.glob(SHARD_GLOB)) if folder.is_dir() else []


def read_shards(folder: Path, columns: list[str] | None = None):
    """All shards of a job directory as one Arrow table (empty with the schema if none)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = shard_paths(folder)
    if not paths:
        schema = shard_schema()
        return schema.empty_table().select(columns) if columns else schema.empty_table()
    return pa.concat_tables([pq.read_table(p, columns=columns, schema=shard_schema()) for p in paths])


def done_from_shards(folder: Path) -> tuple[list[int], list[bytes]]:
    """(path keys of every finished row, content hashes of every scored row) in the shards."""
    table = read_shards(folder, ["path", "hash", "score", "size", "mtime_ns"])
    paths, sizes, mtimes = (table.column(c).to_pylist() for c in ("path", "size", "mtime_ns"))
    keys = [path_key(p, s, m) for p, s, m in zip(paths, sizes, mtimes) if s is not None and m is not None]
    scored = table.column("score").is_valid().to_numpy(zero_copy_only=False)
    hashes = [hash_bytes(h) for h, ok in zip(table.column("hash").to_pylist(), scored) if ok and h]
    return keys, hashes


def done_from_project(project, model_key: str) -> tuple[list[int], list[bytes]]:
    """A project's files already scored by this model (or known unreadable), as path keys, and
    its scored content hashes. Only what the project has seen: no file is read here."""
    root = str(project.folder)
    keys, hashes = [], []
    for (h,) in project.db.execute("SELECT hash FROM scores WHERE model = ?", (model_key,)):
        hashes.append(hash_bytes(h))
    rows = project.db.execute(
        "SELECT f.path, f.size, f.mtime_ns FROM files f JOIN images i ON i.hash = f.hash "
        "WHERE i.error IS NOT NULL OR EXISTS (SELECT 1 FROM scores s WHERE s.model = ? AND s.hash = f.hash)",
        (model_key,),
    )
    for rel, size, mtime in rows:
        keys.append(path_key(f"{root}/{rel}", size, mtime))
    return keys, hashes


JOB_LOCK = ".joyq-job.lock"


@contextlib.contextmanager
def job_lock(out_dir: Path):
    """One scoring job at a time per output directory: two writers would clobber each other's
    listing and remove each other's half-written shards. An OS lock, so a killed job leaves
    none behind; a second job is refused with one sentence (ClusterError)."""
    from . import ClusterError

    path = out_dir / JOB_LOCK
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        f = open(path, "a+b")
    except OSError as e:
        raise ClusterError(f"{path}: cannot open the job lock ({e.strerror or e}).") from None
    with f:
        try:
            if sys.platform == "win32":
                import msvcrt

                msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES, errno.EDEADLK):
                raise ClusterError(f"{path}: cannot take the job lock ({e.strerror or e}).") from None
            raise ClusterError(
                f"{out_dir}: another `joyq score --ray` is writing to this directory; nothing was changed, "
                "wait for it to finish or give another --out."
            ) from None
        yield


class ShardWriter:
    """Writes finished rows as ``shard-<run>-<n>.parquet``, each atomically."""

    def __init__(self, folder: Path, model_key: str):
        self.folder, self.model_key = folder, model_key
        folder.mkdir(parents=True, exist_ok=True)
        self.run = f"{int(time.time()):x}-{os.getpid()}"
        self.count = 0
        for leftover in folder.glob(".shard-*.tmp"):  # a killed run's half-written shard
            leftover.unlink(missing_ok=True)

    def write(self, table) -> Path:
        import pyarrow.parquet as pq

        table = table.replace_schema_metadata({"joyq_model_key": self.model_key})
        name = f"shard-{self.run}-{self.count:06d}.parquet"
        tmp = self.folder / f".{name}.tmp"
        pq.write_table(table, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.folder / name)
        self.count += 1
        return self.folder / name


def merge_into_project(project, table, tower: str, model_key: str) -> int:
    """Write finished rows of files inside the project's folder into its database in one
    transaction (files, images, embeddings, scores, errors: what a scan and a native scoring
    run would have written). Idempotent. Returns the number of scores written."""
    root = str(project.folder) + "/"
    rows = table.to_pylist()
    scored = 0
    with project.transaction():
        db = project.db
        for r in rows:
            path, digest = r["path"], r["hash"]
            if not digest or not path.startswith(root):
                continue  # unreadable before hashing, or a file outside the folder: nothing to key it by
            rel = path[len(root) :]
            db.execute(
                "INSERT OR REPLACE INTO files(path, hash, size, mtime_ns) VALUES (?, ?, ?, ?)",
                (rel, digest, r["size"], r["mtime_ns"]),
            )
            db.execute(
                "INSERT INTO images(hash, width, height, bytes, error) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(hash) DO UPDATE SET width=excluded.width, height=excluded.height, "
                "error=excluded.error",
                (digest, r["width"], r["height"], r["size"], r["error"]),
            )
            if r["score"] is not None:
                if r["embedding"] is not None:
                    db.execute(
                        "INSERT OR REPLACE INTO embeddings(hash, tower, vector) VALUES (?, ?, ?)",
                        (digest, tower, r["embedding"]),
                    )
                db.execute(
                    "INSERT OR REPLACE INTO scores(hash, model, score) VALUES (?, ?, ?)",
                    (digest, model_key, float(r["score"])),
                )
                scored += 1
    return scored


def merge_missing(project, folder: Path, tower: str, model_key: str) -> int:
    """Merge the shard rows a killed run wrote but did not get into the database."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    have = project.scored_hashes(model_key)
    merged = 0
    for shard in shard_paths(folder):
        ok = pq.read_table(shard, columns=["hash", "score"])  # the small columns first
        ok = ok.filter(pc.is_valid(ok.column("score")))
        if all(h in have for h in ok.column("hash").to_pylist()):
            continue
        merged += merge_into_project(project, pq.read_table(shard, schema=shard_schema()), tower, model_key)
    return merged
