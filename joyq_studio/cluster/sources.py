"""SOURCE arguments -> a stream of image paths -> small Parquet "listing parts" on disk.

A source is a folder (walked recursively like a project scan: image extensions only,
symbolic links to folders followed only when asked), a ``.txt`` file with one path per
line (blank lines and lines starting with ``#`` skipped; relative paths are relative to
the list's folder) or a ``.parquet`` file whose ``path`` column (else its first string
column) lists paths. Millions of paths are streamed: never more than one part is held in
memory. Parts start small (so a small job still spreads over every CPU) and grow to
:data:`PART_ROWS` (so a job of millions has thousands of parts, not millions).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import ClusterError

PART_ROWS = 1024  # paths per listing part once the job is under way (one Ray read task each)
FIRST_PART_ROWS = 32  # the first parts: small, so a few hundred images still use every core
FIRST_PARTS = 16
LIST_SUFFIXES = (".txt", ".parquet")


@dataclass
class Listing:
    folder: Path  # where the parts are
    total: int = 0  # paths listed
    parts: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) found while listing


def check_sources(sources: list[str]) -> list[Path]:
    """Each SOURCE must exist and be a folder, a .txt or a .parquet file; one sentence if not."""
    out = []
    for s in sources:
        p = Path(s).expanduser()
        if not p.exists():
            raise ClusterError(f"{s}: no such file or folder.")
        if p.is_file() and p.suffix.lower() not in LIST_SUFFIXES:
            raise ClusterError(
                f"{s}: a source is a folder, a .txt list of paths or a .parquet file with a "
                "'path' column; this is none of them."
            )
        out.append(p.resolve())
    return out


def iter_paths(
    source: Path, follow_links: bool = False, on_error: Callable[[str, str], None] | None = None
) -> Iterator[str]:
    """The paths of one checked source, streamed, as absolute strings where it can."""
    if source.is_dir():
        from ..store import walk_images

        root = str(source)
        for f in walk_images(source, on_error, follow_links=follow_links):
            yield f"{root}/{f.rel}"
    elif source.suffix.lower() == ".txt":
        base = source.parent
        with open(source, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                line = line.rstrip("\r\n")
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                yield line if os.path.isabs(line) else str(base / line)
    else:
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(source)
        except Exception as e:  # noqa: BLE001 - any unreadable file is one sentence
            raise ClusterError(f"{source}: not a readable Parquet file ({e}).") from None
        names = pf.schema_arrow.names
        column = (
            "path"
            if "path" in names
            else next((n for n in names if str(pf.schema_arrow.field(n).type) in ("string", "large_string")), None)
        )
        if column is None:
            raise ClusterError(f"{source}: has no 'path' column and no other text column to read paths from.")
        base = source.parent
        for batch in pf.iter_batches(columns=[column], batch_size=PART_ROWS):
            for p in batch.column(0).to_pylist():
                if p:
                    yield p if os.path.isabs(p) else str(base / p)


def write_listing(
    sources: list[Path], folder: Path, follow_links: bool = False, progress: Callable[[int], None] | None = None
) -> Listing:
    """Stream every source's paths into ``folder/part-NNNNNN.parquet`` (column ``path``).

    The folder is emptied first: the listing is rebuilt on every run (what is already done
    is skipped later, by path, size and modification time, then by content hash).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    listing = Listing(folder)

    def on_error(path: str, why: str) -> None:
        listing.unreadable.append((path, why))

    buffer: list[str] = []

    def flush() -> None:
        if buffer:
            table = pa.table({"path": pa.array(buffer, pa.string())})
            pq.write_table(table, folder / f"part-{listing.parts:06d}.parquet")
            listing.parts += 1
            buffer.clear()

    for source in sources:
        for path in iter_paths(source, follow_links, on_error):
            buffer.append(path)
            listing.total += 1
            if len(buffer) >= (FIRST_PART_ROWS if listing.parts < FIRST_PARTS else PART_ROWS):
                flush()
                if progress:
                    progress(listing.total)
    flush()
    return listing
