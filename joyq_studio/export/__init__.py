"""Exports of a ranked project: CSV files, caption sidecars, chosen images in a destination
folder (copies or links), dataset JSON; undo of the newest export of either kind.

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
from .links import (
    LINK_MODES,
    LinkItem,
    LinkPlan,
    LinkUndoReport,
    apply_link_export,
    check_destination,
    plan_link_export,
    select_rows,
    undo_last_link_export,
)
from .scores_csv import (
    CSV_HEADER,
    CsvReport,
    csv_header,
    safe_cell,
    write_csv,
    write_rows,
    write_scores_csv,
)
from .undo import undo_latest_export

__all__ = [
    "CAPTION_MODES",
    "CSV_HEADER",
    "CaptionChange",
    "CaptionPlan",
    "CsvReport",
    "ExportError",
    "ExportPairsReport",
    "ImportReport",
    "UndoReport",
    "apply_caption_export",
    "caption_path",
    "edit_caption",
    "export_pairs",
    "import_pairs",
    "plan_caption_export",
    "safe_cell",
    "undo_last_export",
    "write_csv",
    "write_rows",
    "write_scores_csv",
    "csv_header",
    "LINK_MODES",
    "LinkItem",
    "LinkPlan",
    "LinkUndoReport",
    "apply_link_export",
    "check_destination",
    "plan_link_export",
    "select_rows",
    "undo_last_link_export",
    "undo_latest_export",
]
