"""Exports of a ranked project: CSV files, caption sidecars, dataset JSON.

Plain functions over a :class:`~joyq_studio.store.Project` (plus an optional
``progress(done, total)`` callback), so the CLI and the GUI's worker threads call the same
code. The ranked rows they share live in :mod:`joyq_studio.ranking`.
"""

from ..errors import ExportError
from .captions import (
    CAPTION_MODES,
    CaptionChange,
    CaptionPlan,
    UndoReport,
    apply_caption_export,
    caption_path,
    edit_caption,
    plan_caption_export,
    undo_last_export,
)
from .dataset import ExportPairsReport, ImportReport, export_pairs, import_pairs
from .scores_csv import (
    CSV_HEADER,
    CsvReport,
    safe_cell,
    write_csv,
    write_rows,
    write_scores_csv,
)

__all__ = [
    "CAPTION_MODES", "CSV_HEADER", "CaptionChange", "CaptionPlan", "CsvReport", "ExportError",
    "ExportPairsReport", "ImportReport", "UndoReport", "apply_caption_export", "caption_path",
    "edit_caption", "export_pairs", "import_pairs", "plan_caption_export", "safe_cell",
    "undo_last_export", "write_csv", "write_rows", "write_scores_csv",
]
