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
* Undo: :func:`apply_link_export` writes a manifest like a caption export's
  (``<project dir>/exports/<timestamp>/manifest.json``, ``"kind": "links"``) listing every
  file and folder it created; :func:`undo_last_link_export` (or
  :func:`joyq_studio.export.undo_latest_export`, whichever kind is newest) deletes the
  files still as the export made them and the folders it created once empty.

One export or undo at a time per project (the caption export's lock); a failure while
writing removes what this export had created so far.
"""

from __future__ import annotations

import datetime
import errno
import hashlib
import os
import shutil
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
from .captions import MANIFEST, export_lock, manifests, new_export_dir

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
    return plan


def _make(item: LinkItem, mode: str) -> str | None:
    """Create one file; returns the SHA-256 recorded for a copy (None for links)."""
    if mode == "hardlink":
        os.link(item.source, item.target)
        return None
    if mode == "symlink":
        os.symlink(item.source, item.target)
        return None
    digest = hashlib.sha256()

    def copy(f) -> None:
        with open(item.source, "rb") as src:
            for block in iter(lambda: src.read(1 << 20), b""):
                digest.update(block)
                f.write(block)

    if os.path.lexists(item.target):  # appeared since the plan: never overwrite
        raise FileExistsError(errno.EEXIST, "File exists", str(item.target))
    atomic_write(item.target, copy, like=item.source, fsync=False)
    st = os.stat(item.source)
    os.utime(item.target, ns=(st.st_atime_ns, st.st_mtime_ns))
    return digest.hexdigest()


def apply_link_export(project: Project, plan: LinkPlan, progress: Progress = None) -> Path | None:
    """Create the planned files; returns the manifest (None when there was nothing to do).

    The manifest is written first (status "pending") and completed at the end; if a file
    cannot be made, the ones this export already made are removed and ExportError names it.
    """
    if not plan.items:
        return None
    d = check_destination(project, plan.dest)  # the folder may have been swapped for a link since the plan
    with export_lock(project):
        export_dir = new_export_dir(project)
        manifest: dict[str, Any] = {
            "format": 1,
            "kind": KIND,
            "folder": str(project.folder),
            "dest": str(d),
            "mode": plan.mode,
            "selection": plan.selection,
            "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "status": "pending",
            "files": [],
            "folders": [],
        }
        manifest_path = export_dir / MANIFEST
        try:
            write_json(manifest_path, manifest)
        except OSError as e:
            shutil.rmtree(export_dir, ignore_errors=True)
            raise ExportError(
                f"{manifest_path}: could not write the export's manifest ({describe_error(e)}); nothing was changed."
            ) from None
        for n, item in enumerate(plan.items, 1):
            try:
                for parent in reversed([p for p in item.target.parents if _inside(str(p), str(d))]):
                    if not parent.exists():
                        parent.mkdir()
                        manifest["folders"].append(str(parent))
                sha = _make(item, plan.mode)
            except OSError as e:
                undone = _remove_created(manifest)
                manifest["status"] = "rolled back"
                _write_quietly(manifest_path, manifest)
                done = f"the {undone} files it had made were removed" if undone else "nothing was changed"
                raise ExportError(f"{item.target}: could not be made ({describe_error(e)}); {done}.") from None
            manifest["files"].append(
                {
                    "path": item.rel,
                    "target": str(item.target),
                    "source": str(item.source),
                    "sha256": sha,
                    "bucket": item.bucket,
                    "label": item.label,
                }
            )
            if progress:
                progress(n, len(plan.items))
        manifest["status"] = "complete"
        _write_quietly(manifest_path, manifest)
    return manifest_path


def _write_quietly(path: Path, manifest: dict) -> None:
    try:
        write_json(path, manifest)
    except OSError:
        pass  # undo checks each file before removing it, so a stale manifest is harmless


def _still_ours(entry: dict, mode: str) -> bool | None:
    """Whether the file is still as the export made it; None when it is gone."""
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


def _remove_created(manifest: dict) -> int:
    """Remove the files and folders recorded so far (a failed export's roll-back)."""
    removed = 0
    for entry in reversed(manifest["files"]):
        if _still_ours(entry, manifest["mode"]):
            try:
                os.unlink(entry["target"])
                removed += 1
            except OSError:
                pass
    _remove_folders(manifest["folders"])
    return removed


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


def undo_link_export(project: Project, export_dir: Path, manifest: dict, progress: Progress = None) -> LinkUndoReport:
    """Undo one curation export (the caller holds the export lock): remove each file still as it
    made it, then the folders it created once empty. The originals are never touched."""
    report = LinkUndoReport(export_dir, Path(str(manifest.get("dest", ""))))
    mode = manifest.get("mode")
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
        todo = [
            (d, m)
            for d, m in manifests(project)
            if m.get("kind") == KIND and m.get("status") in ("pending", "complete")
        ]
        if not todo:
            raise ExportError(f"There is no export to a destination folder of {project.folder} left to undo.")
        return undo_link_export(project, *todo[0], progress=progress)
