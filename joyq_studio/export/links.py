"""Curation: the chosen part of a ranking put into a destination folder the user picks.

The images of chosen buckets (or above a score threshold) appear in ``DEST`` as copies,
hard links or symbolic links, at their path relative to the image folder (so two
``cat.jpg`` from different subfolders never collide). The originals are only ever read:
nothing here moves, renames or deletes a file of the image folder.

* ``DEST`` must lie outside the image folder's real path (checked with every symbolic link
  resolved); a destination inside it is refused.
* Idempotent: a file already in ``DEST`` as this export would make it (the same bytes for a
  copy, the same file for a hard link, a link to the same image) counts as unchanged; a
  different file in the way is reported and left alone, never overwritten.
* Dry run: :func:`plan_link_export` says exactly what would be created, writes nothing.
* Undo: :func:`apply_link_export` records every file and folder in the export's journal
  (``<project dir>/exports/<timestamp>/journal.jsonl``, :mod:`.journal`) *before* making it,
  beside a manifest (``"kind": "links"``); :func:`undo_last_link_export` (or
  :func:`joyq_studio.export.undo_latest_export`, whichever kind is newest) deletes the
  files still as the export made them, the folders it created once empty, and the
  temporary files of a killed run. A rerun after a killed export adopts the killed run's
  files, so one undo removes both.

One export or undo at a time per project (the caption export's lock); a failure while
writing removes what this export had created so far.
"""

from __future__ import annotations

import datetime
import errno
import hashlib
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ExportError
from ..fsio import NAME_MAX, atomic_write, describe_error, temp_path, write_json
from ..ranking.calibration import Calibration
from ..ranking.rows import RankedImage, ranked_images
from ..store import Project
from .captions import export_lock, manifests, new_export_dir, newest_undoable
from .journal import MANIFEST, ExportJournal

Progress = Callable[[int, int], None] | None

LINK_MODES = ("copy", "hardlink", "symlink")
KIND = "links"


@dataclass
class LinkItem:
    rel: str  # relative to the image folder and to DEST, '/' separated
    source: Path  # the image (absolute)
    target: Path  # where it goes (absolute, inside DEST)
    bucket: int
    label: str
    score: float


@dataclass
class LinkPlan:
    """What a curation export would do: files to create, ones already there, ones in the way."""

    dest: Path
    mode: str
    selection: str  # e.g. "buckets 8-9"
    items: list[LinkItem] = field(default_factory=list)  # to create
    unchanged: list[str] = field(default_factory=list)  # already there as this export makes them
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why it is left alone)
    selected: int = 0  # images the selection chose
    interrupted: int = 0  # of ``unchanged``: made by an earlier export that was killed (adopted by this one)

    def __len__(self) -> int:
        return len(self.items)


def _real(path: Path) -> str:
    return os.path.realpath(path)


def _inside(child: str, root: str) -> bool:
    return child == root or child.startswith(root.rstrip(os.sep) + os.sep)


def check_destination(project: Project, dest: str | os.PathLike) -> Path:
    """``dest`` as an absolute path; ExportError when it is, through any symbolic link, the image
    folder or inside it, or is an existing file rather than a folder."""
    d = Path(dest).expanduser()
    d = d if d.is_absolute() else Path.cwd() / d
    if _inside(_real(d), _real(project.folder)):
        raise ExportError(
            f"{d}: the destination is inside the image folder {project.folder} (at {_real(d)}); "
            "choose a folder outside it, the image folder is never written to."
        )
    if d.exists() and not d.is_dir():
        raise ExportError(f"{d}: the destination exists and is not a folder.")
    return d


def select_rows(
    rows: Iterable[RankedImage],
    buckets: Iterable[int] | None = None,
    min_bucket: int | None = None,
    min_score: float | None = None,
) -> tuple[list[RankedImage], str]:
    """The rows a selection chooses and the selection in words. At most one of ``buckets``
    (a set of bucket numbers), ``min_bucket`` and ``min_score``; none chooses every image."""
    given = [x is not None for x in (buckets, min_bucket, min_score)]
    if sum(given) > 1:
        raise ExportError("Choose images by buckets, by a minimum bucket or by a minimum score, not several.")
    rows = list(rows)
    if buckets is not None:
        chosen = sorted({int(b) for b in buckets})
        return [r for r in rows if r.bucket in chosen], "bucket" + ("s " if len(chosen) != 1 else " ") + ", ".join(
            map(str, chosen)
        )
    if min_bucket is not None:
        return [r for r in rows if r.bucket >= min_bucket], f"buckets {min_bucket} and above"
    if min_score is not None:
        return [r for r in rows if r.score >= min_score], f"score {min_score:g} and above"
    return rows, "every image"


def _same(mode: str, source: Path, target: Path) -> bool | None:
    """Whether ``target`` already is what this export makes of ``source``; None when nothing is there."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return None
    if mode == "symlink":
        return stat.S_ISLNK(st.st_mode) and os.readlink(target) == str(source)
    if not stat.S_ISREG(st.st_mode):
        return False
    if mode == "hardlink":
        return os.path.samefile(source, target)
    return st.st_size == os.stat(source).st_size and _sha_file(target) == _sha_file(source)


def _sha_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _device(path: Path) -> int | None:
    """st_dev of ``path`` or of its nearest existing parent."""
    for p in (path, *path.parents):
        try:
            return os.stat(p).st_dev
        except OSError:
            continue
    return None


def plan_link_export(
    project: Project,
    cal: Calibration,
    dest: str | os.PathLike,
    mode: str = "copy",
    buckets: Iterable[int] | None = None,
    min_bucket: int | None = None,
    min_score: float | None = None,
    progress: Progress = None,
) -> LinkPlan:
    """Everything putting the chosen images into ``dest`` would do; writes nothing."""
    if mode not in LINK_MODES:
        raise ExportError(f"Unknown way to export {mode!r}; use one of {', '.join(LINK_MODES)}.")
    if min_bucket is not None and not 0 <= min_bucket < cal.k:
        raise ExportError(f"The minimum bucket must be between 0 and {cal.k - 1}, not {min_bucket}.")
    d = check_destination(project, dest)
    chosen, selection = select_rows(ranked_images(project, cal), buckets, min_bucket, min_score)
    plan = LinkPlan(d, mode, selection, selected=len(chosen))
    if mode == "hardlink" and chosen and _device(d) != _device(project.folder):
        raise ExportError(
            f"{d}: hard links cannot cross file systems and the destination is on another one "
            f"than {project.folder}; use copies or symbolic links."
        )
    for n, r in enumerate(sorted(chosen, key=lambda r: r.path), 1):
        if progress:
            progress(n, len(chosen))
        source = project.folder / r.path
        target = d / r.path
        if not source.is_file():
            plan.skipped.append((r.path, "the image no longer exists; rescan the folder"))
            continue
        if any(len(os.fsencode(part)) > NAME_MAX for part in (*Path(r.path).parts, temp_path(target).name)):
            plan.skipped.append((r.path, f"a name is longer than the file system allows ({NAME_MAX} bytes)"))
            continue
        try:
            same = _same(mode, Path(os.path.abspath(source)), target)
        except OSError as e:
            plan.skipped.append((r.path, f"cannot be checked in the destination ({describe_error(e)})"))
            continue
        if same:
            plan.unchanged.append(r.path)
        elif same is False:
            plan.skipped.append((r.path, f"{target} already exists and is another file; left alone"))
        else:
            plan.items.append(LinkItem(r.path, Path(os.path.abspath(source)), target, r.bucket, r.label, r.score))
    if plan.unchanged:
        killed = {e.path for j in killed_exports(project, d) for e in j.entries if e.op == "create"}
        plan.interrupted = sum(str(d / rel) in killed for rel in plan.unchanged)
    return plan


def _make(item: LinkItem, mode: str, journal: ExportJournal) -> None:
    """Create one file, journalled first (so a kill at any point leaves it listed)."""
    info: dict[str, Any] = {"rel": item.rel, "bucket": item.bucket, "label": item.label}
    if os.path.lexists(item.target):  # appeared since the plan: never overwrite
        raise FileExistsError(errno.EEXIST, "File exists", str(item.target))
    if mode == "hardlink":
        journal.record_create(item.target, hardlink_of=item.source, **info)
        os.link(item.source, item.target)
        return
    if mode == "symlink":
        journal.record_create(item.target, symlink_to=item.source, **info)
        os.symlink(item.source, item.target)
        return
    digest = hashlib.sha256()

    def copy(f) -> None:
        with open(item.source, "rb") as src:
            for block in iter(lambda: src.read(1 << 20), b""):
                digest.update(block)
                f.write(block)

    journal.record_create(item.target, copy_of=item.source, **info)
    atomic_write(item.target, copy, like=item.source, fsync=False)
    st = os.stat(item.source)
    os.utime(item.target, ns=(st.st_atime_ns, st.st_mtime_ns))
    journal.record_done(item.target, sha256=digest.hexdigest())


def killed_exports(project: Project, dest: Path) -> list[ExportJournal]:
    """Journals of exports to ``dest`` that were killed before they finished (status still
    "pending"; call with the export lock held, or the answer may include one still running)."""
    out = []
    for export_dir, m in manifests(project):
        if m.get("kind") == KIND and m.get("status") == "pending" and m.get("dest") == str(dest):
            journal = ExportJournal.open(export_dir)
            if journal is not None:
                out.append(journal)
    return out


def apply_link_export(project: Project, plan: LinkPlan, progress: Progress = None) -> Path | None:
    """Create the planned files; returns the manifest (None when there was nothing to do).

    Each file is recorded in the export's journal before it is made (:mod:`.journal`); the
    journal of a killed earlier export to the same destination is adopted (its files become
    this export's, its temporary files are removed). If a file cannot be made, everything
    the journal lists is removed again and ExportError names the file.
    """
    d = check_destination(project, plan.dest)  # the folder may have been swapped for a link since the plan
    with export_lock(project):
        killed = killed_exports(project, d)
        if not plan.items and not killed:
            return None
        journal = ExportJournal.begin(
            new_export_dir(project),
            KIND,
            folder=str(project.folder),
            dest=str(d),
            mode=plan.mode,
            selection=plan.selection,
        )
        item = None
        try:
            for old in killed:
                journal.adopt(old)
            for n, item in enumerate(plan.items, 1):
                for parent in reversed([p for p in item.target.parents if _inside(str(p), str(d))]):
                    if not parent.exists():
                        journal.record_mkdir(parent)
                        parent.mkdir()
                _make(item, plan.mode, journal)
                if progress:
                    progress(n, len(plan.items))
            journal.commit()
        except (OSError, ExportError) as e:
            where = item.target if item is not None else journal.dir
            why = describe_error(e) if isinstance(e, OSError) else str(e)
            try:
                undone = journal.undo(final_status="rolled back", never_inside=project.folder)
            except ExportError as again:
                raise ExportError(f"{where}: could not be made ({why}); {again}") from None
            done = f"the {undone.removed} files it had made were removed" if undone.removed else "nothing was left"
            raise ExportError(f"{where}: could not be made ({why}); {done}.") from None
    return journal.dir / MANIFEST


def _still_ours(entry: dict, mode: str) -> bool | None:
    """Whether the file is still as an export without a journal (older version) made it; None when it is gone."""
    target, source = Path(entry["target"]), Path(entry["source"])
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return None
    if mode == "symlink":
        return stat.S_ISLNK(st.st_mode) and os.readlink(target) == str(source)
    if not stat.S_ISREG(st.st_mode):
        return False
    if mode == "hardlink":
        try:
            return os.path.samefile(source, target)
        except OSError:
            return False
    return entry.get("sha256") is not None and _sha_file(target) == entry["sha256"]


def _remove_folders(folders: list[str]) -> None:
    for folder in sorted(folders, key=len, reverse=True):
        try:
            os.rmdir(folder)  # only when empty
        except OSError:
            pass


@dataclass
class LinkUndoReport:
    export_dir: Path
    dest: Path
    removed: int = 0
    already_gone: int = 0
    changed_since: list[str] = field(default_factory=list)  # left alone: replaced or edited after the export
    temp_removed: int = 0  # temporary files of a killed export removed


def undo_link_export(project: Project, export_dir: Path, manifest: dict, progress: Progress = None) -> LinkUndoReport:
    """Undo one curation export (the caller holds the export lock): remove each file still as it
    made it, then the folders it created once empty, and the temporary files of a killed run.
    The originals are never touched."""
    report = LinkUndoReport(export_dir, Path(str(manifest.get("dest", ""))))
    journal = ExportJournal.open(export_dir)
    if journal is not None:
        done = journal.undo(progress, never_inside=project.folder)
        report.removed, report.already_gone, report.temp_removed = done.removed, done.already_gone, done.temp_removed
        report.changed_since = [os.path.relpath(p, report.dest) for p in done.changed_since]
        return report
    mode = manifest.get("mode")  # an export made before the journal: its manifest lists the files
    entries = [
        e
        for e in manifest.get("files", [])
        if isinstance(e, dict) and isinstance(e.get("target"), str) and isinstance(e.get("source"), str)
    ]
    root = _real(project.folder)
    for n, entry in enumerate(reversed(entries), 1):
        if _inside(_real(Path(entry["target"]).parent), root):
            report.changed_since.append(entry["path"])  # never remove anything inside the image folder
            continue
        state = _still_ours(entry, str(mode))
        if state is None:
            report.already_gone += 1
        elif state:
            try:
                os.unlink(entry["target"])
            except OSError as e:
                raise ExportError(
                    f"{entry['target']}: could not be removed ({describe_error(e)}); run the undo again to finish."
                ) from None
            report.removed += 1
        else:
            report.changed_since.append(str(entry.get("path")))
        if progress:
            progress(n, len(entries))
    _remove_folders([f for f in manifest.get("folders", []) if isinstance(f, str)])
    manifest["status"] = "undone"
    manifest["undone"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    manifest["undo_left_alone"] = report.changed_since
    try:
        write_json(export_dir / MANIFEST, manifest)
    except OSError as e:
        raise ExportError(
            f"{export_dir / MANIFEST}: the files were removed but the manifest could not be "
            f"marked as undone ({describe_error(e)})."
        ) from None
    return report


def undo_last_link_export(project: Project, progress: Progress = None) -> LinkUndoReport:
    """Undo the newest curation export not yet undone."""
    with export_lock(project):
        dest_export = newest_undoable(project, KIND, "export to a destination folder")
        return undo_link_export(project, *dest_export, progress=progress)
