"""What the command handlers share: opening a project, scanning with progress, device notes."""

from __future__ import annotations

import sys

from ..console import ProgressLine, UsageError
from ..store import Project

MAX_LISTED = 50


def open_project(folder: str) -> Project:
    project = Project(folder)
    for w in project.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return project


def print_unreadable(items: list[tuple[str, str]], limit: int = MAX_LISTED) -> None:
    """One line per file that could not be used: ``  could not read PATH: REASON``."""
    for path, reason in items[:limit]:
        print(f"  could not read: {reason}" if path in reason else f"  could not read {path}: {reason}")
    if len(items) > limit:
        print(f"  ... and {len(items) - limit} more")


def scan_with_progress(project: Project, quiet: bool = False):
    report = project.scan(progress=None if quiet else ProgressLine("hashing", "file"))
    if report.total == 0:
        raise UsageError(f"{project.folder}: no images found (looked for .jpg, .png, .webp, ... recursively).")
    if not quiet:
        print(
            f"{project.folder}: {report.total} image files ({report.new} new, {report.changed} changed, "
            f"{report.removed} removed) in {report.seconds:.1f} s"
        )
        if report.links_not_followed:
            n = len(report.links_not_followed)
            print(
                f"note: {n} symbolically linked folder{'s were' if n > 1 else ' was'} not scanned (e.g. "
                f"{report.links_not_followed[0]}); `joyq score --follow-links {project.folder}` includes them."
            )
    return report
