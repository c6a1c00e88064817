"""Undo the newest export of a folder, whichever kind it was (captions, XMP sidecars or a destination folder)."""

from __future__ import annotations

from ..store import Project
from .captions import Progress, UndoReport, export_lock, newest_undoable, undo_caption_export
from .links import KIND as LINKS
from .links import LinkUndoReport, undo_link_export
from .xmp import KIND as XMP
from .xmp import undo_xmp_export


def undo_latest_export(project: Project, progress: Progress = None) -> UndoReport | LinkUndoReport:
    """Undo the newest export not yet undone: a caption export (:class:`UndoReport`) or an
    export to a destination folder (:class:`LinkUndoReport`). Run again for the one before."""
    with export_lock(project):
        export_dir, manifest = newest_undoable(project)
        if manifest.get("kind") == LINKS:
            return undo_link_export(project, export_dir, manifest, progress)
        if manifest.get("kind") == XMP:
            return undo_xmp_export(project, export_dir, manifest, progress)
        return undo_caption_export(project, export_dir, manifest, progress)
