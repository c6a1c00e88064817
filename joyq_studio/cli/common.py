"""What the command handlers share: opening a project, scanning with progress, device notes."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from ..console import EXIT_FAILED_FILES, EXIT_OK, ProgressLine, UsageError
from ..store import Project

MAX_LISTED = 50


def open_project(folder: str) -> Project:
    project = Project(folder)
    for w in project.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return project


def print_listed(lines: list[str], limit: int = MAX_LISTED) -> None:
    """Indented lines, the first ``limit`` of them, then how many more there are."""
    for line in lines[:limit]:
        print(f"  {line}")
    if len(lines) > limit:
        print(f"  ... and {len(lines) - limit} more")


def print_unreadable(items: list[tuple[str, str]], limit: int = MAX_LISTED) -> None:
    """One line per file that could not be used: ``  could not read PATH: REASON``."""
    print_listed(
        [
            f"could not read: {reason}" if path in reason else f"could not read {path}: {reason}"
            for path, reason in items
        ],
        limit,
    )


def print_skipped(items: list[tuple[str, str]], what: str = "left alone") -> None:
    print_listed([f"{what}: {where}: {why}" for where, why in items])


def preview_or_apply(
    project: Project,
    skipped: list[tuple[str, str]],
    summary: str,
    dry_run: bool,
    preview: list[str],
    apply: Callable[[], Path | None],
    nothing: str,
    made: str,
) -> int:
    """The exports' last step: a dry run lists what would be done; else ``apply`` writes it
    (None: nothing to write, say ``nothing``) and ``made`` says what, with the manifest's
    folder and how to undo. Exit 1 when some files were left alone."""
    if dry_run:
        print(f"dry run, nothing written: {summary}")
        print_listed(preview)
        print_skipped(skipped)
    else:
        print(summary)
        print_skipped(skipped)
        manifest = apply()
        if manifest is None:
            print(nothing)
        else:
            print(f"{made} {manifest.parent}")
            print(f"undo with: joyq undo-export {project.folder}")
    return EXIT_FAILED_FILES if skipped else EXIT_OK


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
