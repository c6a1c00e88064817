"""What the command handlers share: opening a project, scanning with progress, device notes."""

from __future__ import annotations

from ..console import ProgressLine, UsageError
from ..store import Project


def open_project(folder: str) -> Project:
    return Project(folder)


def scan_with_progress(project: Project, quiet: bool = False):
    report = project.scan(progress=None if quiet else ProgressLine("hashing", "file"))
    if report.total == 0:
        raise UsageError(f"{project.folder}: no images found (looked for .jpg, .png, .webp, ... recursively).")
    if not quiet:
        print(f"{project.folder}: {report.total} image files ({report.new} new, {report.changed} changed, "
              f"{report.removed} removed) in {report.seconds:.1f} s")
    return report
