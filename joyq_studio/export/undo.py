"""Undo the newest export of a folder, whichever kind it was (captions, XMP sidecars or a destination folder)."""

from __future__ import annotations

from ..errors import ExportError
from ..store import Project
from .captions import Progress, UndoReport, export_lock, manifests, undo_caption_export
from .links import KIND as LINKS
from .links import LinkUndoReport, undo_link_export
from .xmp import KIND as XMP
from .xmp import undo_xmp_export


def undo_latest_export(project: Project, progress: Progress = None) -> UndoReport | LinkUndoReport:
    """Undo the newest export not yet undone: a caption export (:class:`UndoReport`) or an
    export to a destination folder (:class:`LinkUndoReport`). Run again for the one before."""
    with export_lock(project):
        todo = [(d, m) for d, m in manifests(project) if m.get("status") in ("pending", "complete")]
        if not todo:
            raise ExportError(f"There is no export of {project.folder} left to undo.")
        export_dir, manifest = todo[0]
        if manifest.get("kind") == LINKS:
            return undo_link_export(project, export_dir, manifest, progress)
        if manifest.get("kind") == XMP:
            return undo_xmp_export(project, export_dir, manifest, progress)
        return undo_caption_export(project, export_dir, manifest, progress)
