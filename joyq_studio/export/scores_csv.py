"""CSV files: the ranked folder (``write_csv``) and plain scores (``write_scores_csv``).

Both go through :func:`write_rows`: written to a temporary file and renamed, so a reader
never sees half a file. Cells that a spreadsheet would run as a formula (starting with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return) get a leading apostrophe, the way
spreadsheet-safe exporters (OWASP's CSV injection advice) do; numbers we write ourselves
are never touched.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ExportError
from ..fsio import atomic_write, describe_error
from ..ranking.calibration import Calibration
from ..ranking.rows import (
    bucket_counts,
    current_model_key,
    model_version_of,
    ranked_images,
)
from ..store import Project


def csv_header(k: int = 10) -> list[str]:
    """The ranked CSV's columns; the bucket column names its numbering, ``bucket_0_to_9`` for
    K = 10 (0 = worst, as the reference's int(rank)); ``overridden`` is 1 where the bucket
    was set by hand."""
    return ["path", "hash", "score", "rank", f"bucket_0_to_{k - 1}", "label", "model_version", "overridden"]


CSV_HEADER = csv_header(10)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    """Text a spreadsheet would evaluate is prefixed with ``'``; numbers (``-0.21``) and
    everything else stay as they are."""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _is_number(value):
        return "'" + value
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.strip() == text  # " 1" or "\t1" is text a spreadsheet may still evaluate


def write_rows(out: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence[object]]) -> int:
    """Write ``header`` and ``rows`` (text cells made safe) to ``out`` atomically; returns the row count."""
    out = Path(out)
    count = 0

    def write(f) -> None:
        nonlocal count
        text = io.TextIOWrapper(f, encoding="utf-8", newline="")
        w = csv.writer(text)
        w.writerow(header)
        for row in rows:
            w.writerow([safe_cell(c) for c in row])
            count += 1
        text.flush()
        text.detach()

    try:
        atomic_write(out, write)
    except OSError as e:
        raise ExportError(f"{out}: could not write the CSV ({describe_error(e)}); nothing was written.") from None
    return count


@dataclass
class CsvReport:
    path: Path
    rows: int
    counts: list[int]  # per bucket, of the rows written
    total_scored: int


def write_csv(project: Project, out: str | os.PathLike, cal: Calibration, min_bucket: int | None = None) -> CsvReport:
    """Write the ranking (best first) to ``out`` atomically; only buckets >= ``min_bucket``."""
    if min_bucket is not None and not 0 <= min_bucket < cal.k:
        raise ExportError(
            f"The minimum bucket must be between 0 and {cal.k - 1} for a {cal.k}-bucket calibration, not {min_bucket}."
        )
    all_rows = ranked_images(project, cal)
    rows = [r for r in all_rows if min_bucket is None or r.bucket >= min_bucket]
    version = cal.model_version or model_version_of(project, current_model_key(project))
    write_rows(
        out,
        csv_header(cal.k),
        (
            [r.path, r.hash, f"{r.score:.6f}", f"{r.rank:.4f}", r.bucket, r.label, version, int(r.overridden)]
            for r in rows
        ),
    )
    return CsvReport(Path(out), len(rows), bucket_counts(rows, cal.k), len(all_rows))


def write_scores_csv(project: Project, model_key: str, out: str | os.PathLike) -> int:
    """Every readable path with its score under ``model_key`` (files with equal bytes each get a row)."""
    scores = project.scores(model_key)
    return write_rows(
        out, ["path", "score"], ([rel, f"{scores[h]:.6f}"] for rel, h in project.file_hashes() if h in scores)
    )
