"""Star ratings into XMP sidecars: plan -> apply -> undo (see docs/xmp.md).

Each scored image's bucket becomes 1..5 stars (:func:`stars_mapping`; -1 = rejected for
the buckets up to ``reject_bucket``; a bucket set by hand wins, as in every export) and is
spliced into its sidecar by :func:`joyq_studio.xmp.set_rating`: only the rating (and, with
``keyword``, our one keyword ``joyq|quality|<bucket>``) changes, every other byte stays.
A sidecar we cannot read with certainty is reported and left alone; a missing one is
created minimal.

Naming: ``darktable`` (darktable, digiKam: ``IMG_1.JPG.xmp``) or ``adobe`` (Lightroom,
Bridge, Capture One: ``IMG_1.xmp``, which two images with the same stem would share: both
are refused, named); ``auto`` follows the sidecars already in the folder.

The file operations are three small functions, :func:`plan_xmp_export`,
:func:`apply_xmp_export` and :func:`undo_xmp_export`, on the caption export's journal
(``<project dir>/exports/<timestamp>/manifest.json`` with backups, entries in the same
format, ``kind`` "xmp"), so ``joyq undo-export`` restores every sidecar byte for byte and
deletes the ones created. Images are never opened for writing.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ExportError
from ..fsio import NAME_MAX, atomic_write, describe_error, temp_path, write_json
from ..ranking.calibration import Calibration
from ..ranking.rows import RankedImage, ranked_images
from ..store import Project
from ..xmp import KEYWORD_PREFIX, MAX_XMP_BYTES, XmpError, set_rating
from .captions import (
    MANIFEST,
    Progress,
    UndoReport,
    _clean_leftovers,
    _roll_back,
    export_lock,
    inside_folder,
    manifests,
    new_export_dir,
    newest_undoable,
    read_sidecar_file,
    undo_caption_export,
)

KIND = "xmp"
NAMINGS = ("darktable", "adobe", "auto")


# -- buckets -> stars ------------------------------------------------------------------------
def default_stars(k: int) -> list[int]:
    """Stars of buckets 0..k-1 (worst first): spread evenly over 1..5, the worst bucket 1 star
    and the best 5 (k = 10: 1 1 2 2 3 3 4 4 5 5; k = 5: 1 2 3 4 5; k = 3: 1 3 5; k = 1: 3)."""
    if k == 1:
        return [3]
    return [1 + int(b * 4 / (k - 1) + 0.5) for b in range(k)]


def stars_mapping(k: int, mapping: str | None = None, reject_bucket: int | None = None) -> list[int]:
    """Stars per bucket: the default, or ``mapping`` ("1,1,2,2,3,3,4,4,5,5": one value per
    bucket, worst first; or "0:-1,9:5": bucket:stars pairs over the default); buckets up to
    ``reject_bucket`` become -1 (rejected). ExportError (one sentence) for a bad mapping."""
    stars = default_stars(k)
    if mapping:
        items = [s.strip() for s in mapping.split(",") if s.strip()]
        try:
            if all(":" in s for s in items):
                for s in items:
                    b, v = (int(x) for x in s.split(":", 1))
                    if not 0 <= b < k:
                        raise ExportError(f"--stars {mapping!r}: bucket {b} is outside 0..{k - 1}.")
                    stars[b] = v
            elif len(items) == k:
                stars = [int(s) for s in items]
            else:
                raise ExportError(
                    f"--stars {mapping!r}: give {k} star values (one per bucket, worst first) "
                    "or bucket:stars pairs such as 0:-1,9:5."
                )
        except ValueError:
            raise ExportError(f"--stars {mapping!r}: stars and buckets must be whole numbers.") from None
    if reject_bucket is not None:
        if not 0 <= reject_bucket < k:
            raise ExportError(f"--reject-bucket {reject_bucket} is outside 0..{k - 1}.")
        stars = [-1 if b <= reject_bucket else s for b, s in enumerate(stars)]
    bad = [s for s in stars if not -1 <= s <= 5]
    if bad:
        raise ExportError(f"--stars: {bad[0]} stars is outside -1..5 (-1 = rejected).")
    return stars


def keyword_of(bucket: int) -> str:
    return f"{KEYWORD_PREFIX}{bucket}"


# -- naming ----------------------------------------------------------------------------------
def sidecar_path(image: Path, naming: str) -> Path:
    """``IMG_1.JPG.xmp`` (darktable, digiKam) or ``IMG_1.xmp`` (Adobe, Capture One)."""
    return image.with_name(image.name + ".xmp") if naming == "darktable" else image.with_suffix(".xmp")


def choose_naming(project: Project, images: list[str], naming: str) -> tuple[str, str]:
    """(naming, why): ``auto`` counts the sidecars of each form already beside the images."""
    if naming != "auto":
        return naming, "as asked"
    dt = sum((project.folder / sidecar_path(Path(p), "darktable")).exists() for p in images)
    adobe = sum((project.folder / sidecar_path(Path(p), "adobe")).exists() for p in images)
    seen = f"{dt} sidecars named like IMG_1.JPG.xmp and {adobe} like IMG_1.xmp are already in the folder"
    if adobe > dt:
        return "adobe", f"{seen}, so the Adobe form is followed"
    if dt:
        return "darktable", f"{seen}, so the darktable/digiKam form is followed"
    return "darktable", "no sidecar is in the folder yet, so the darktable/digiKam form (one per image file) is used"


# -- plan ------------------------------------------------------------------------------------
@dataclass
class XmpChange:
    path: Path  # absolute path of the sidecar
    rel: str  # relative to the folder
    image: str
    bucket: int
    stars: int
    old_sha256: str | None  # None: the sidecar does not exist and will be created
    new_bytes: bytes

    @property
    def action(self) -> str:
        return "create" if self.old_sha256 is None else "modify"


@dataclass
class XmpPlan:
    naming: str
    why: str  # one sentence: why this naming
    stars: list[int]  # per bucket, worst first
    keyword: bool
    changes: list[XmpChange] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (sidecar or image, reason)
    unchanged: int = 0
    not_scored: int = 0  # images without a score yet: skipped

    @property
    def created(self) -> int:
        return sum(c.old_sha256 is None for c in self.changes)

    @property
    def modified(self) -> int:
        return sum(c.old_sha256 is not None for c in self.changes)


def _sha(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def _unsafe(project: Project, path: Path) -> str | None:
    if not inside_folder(project, path):
        return f"its folder is, through a symbolic link, outside {project.folder}; nothing is written there"
    if any(len(os.fsencode(n)) > NAME_MAX for n in (path.name, temp_path(path).name)):
        return f"the name is longer than the file system allows ({NAME_MAX} bytes)"
    return None


def plan_xmp_export(
    project: Project,
    cal: Calibration,
    naming: str = "auto",
    stars: list[int] | None = None,
    keyword: bool = False,
    progress: Progress = None,
) -> XmpPlan:
    """Everything an XMP export would change; reads sidecars, writes nothing."""
    if naming not in NAMINGS:
        raise ExportError(f"Unknown sidecar naming {naming!r}; use one of {', '.join(NAMINGS)}.")
    stars = stars or default_stars(cal.k)
    if len(stars) != cal.k:
        raise ExportError(f"The star mapping has {len(stars)} values but the calibration has {cal.k} buckets.")
    rows = ranked_images(project, cal)
    naming, why = choose_naming(project, [r.path for r in rows], naming)
    plan = XmpPlan(naming, why, list(stars), keyword)
    plan.not_scored = len(project.file_hashes()) - len(rows)
    groups: dict[str, list[RankedImage]] = defaultdict(list)
    for r in rows:
        groups[sidecar_path(Path(r.path), naming).as_posix()].append(r)
    total = len(groups)
    for n, rel in enumerate(sorted(groups), 1):
        if progress:
            progress(n, total)
        imgs = sorted(groups[rel], key=lambda r: r.path)
        if len(imgs) > 1:
            names = " and ".join(r.path for r in imgs)
            plan.skipped.append((rel, f"would be shared by {names} (same name stem); use --naming darktable"))
            continue
        r = imgs[0]
        path = project.folder / rel
        if not (project.folder / r.path).is_file():
            plan.skipped.append((rel, f"its image {r.path} no longer exists; rescan the folder"))
            continue
        problem = _unsafe(project, path)
        if problem is None:
            old, problem = read_sidecar_file(path, MAX_XMP_BYTES, "an XMP sidecar")
        if problem is not None:
            plan.skipped.append((rel, problem))
            continue
        s = stars[r.bucket]
        try:
            new = set_rating(old, s, keyword_of(r.bucket) if keyword else None, where=rel)
        except XmpError as e:
            plan.skipped.append((rel, str(e).removeprefix(f"{rel}: ").rstrip(".")))
            continue
        if new == old:
            plan.unchanged += 1
            continue
        if not os.access(path.parent, os.W_OK | os.X_OK):
            plan.skipped.append((rel, "cannot be written: its folder is read-only"))
            continue
        plan.changes.append(XmpChange(path, rel, r.path, r.bucket, s, _sha(old), new))
    return plan


# -- apply -----------------------------------------------------------------------------------
def apply_xmp_export(project: Project, plan: XmpPlan, progress: Progress = None) -> Path | None:
    """Write the planned sidecars; returns the manifest path (None when nothing to do).
    Everything to modify is backed up and journalled first; a failed write puts back the
    sidecars already written."""
    if not plan.changes:
        return None
    with export_lock(project):
        _clean_leftovers(project, (c.path.parent for c in plan.changes))
        export_dir, manifest, entries = _journal(project, plan)
        _write(project, plan, export_dir, manifest, entries, progress)
        return export_dir / MANIFEST


def _journal(project: Project, plan: XmpPlan) -> tuple[Path, dict, list[dict]]:
    """Check each sidecar is as planned, back up the ones to modify, write the manifest
    (entries in the caption journal's format, so one undo restores both)."""
    export_dir = new_export_dir(project)
    entries = []
    try:
        for c in plan.changes:
            problem = _unsafe(project, c.path)
            try:
                current = None if problem else (c.path.read_bytes() if c.path.exists() else None)
            except OSError as e:
                problem = f"cannot be read ({describe_error(e)})"
            if problem or _sha(current) != c.old_sha256:
                why = problem or "changed since the export was planned"
                raise ExportError(f"{c.path}: {why}; nothing was changed, please preview the export again.")
            backup = None
            if current is not None:
                backup = f"backup/{c.rel}"
                dst = export_dir / backup
                dst.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(dst, current, fsync=False)
            entries.append(
                {
                    "caption": c.rel,  # the journal's name for "the file written"
                    "action": "modified" if current is not None else "created",
                    "backup": backup,
                    "old_sha256": c.old_sha256,
                    "new_sha256": _sha(c.new_bytes),
                    "images": [c.image],
                    "label": keyword_of(c.bucket),
                    "stars": c.stars,
                }
            )
        manifest = {
            "format": 1,
            "kind": KIND,
            "folder": str(project.folder),
            "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "status": "pending",
            "naming": plan.naming,
            "stars": plan.stars,
            "files": entries,
        }
        _flush_to_disk(export_dir, entries)
        write_json(export_dir / MANIFEST, manifest)
    except OSError as e:
        shutil.rmtree(export_dir, ignore_errors=True)
        raise ExportError(
            f"{export_dir}: could not back up the sidecars ({describe_error(e)}); nothing was changed."
        ) from None
    except BaseException:
        shutil.rmtree(export_dir, ignore_errors=True)
        raise
    return export_dir, manifest, entries


def _flush_to_disk(export_dir: Path, entries: list[dict]) -> None:
    """Make the backups durable before any sidecar is overwritten: one ``sync`` for all
    of them (one fsync per backup cost 8 ms each on the dev VM, most of an export's time)."""
    if hasattr(os, "sync"):
        os.sync()
        return
    for e in entries:  # Windows: no sync(2)
        if e["backup"]:
            with open(export_dir / e["backup"], "rb+") as f:
                os.fsync(f.fileno())


def _write(project: Project, plan: XmpPlan, export_dir: Path, manifest: dict, entries: list, progress) -> None:
    for n, c in enumerate(plan.changes, 1):
        try:
            atomic_write(c.path, c.new_bytes, like=c.path if c.old_sha256 is not None else None, fsync=False)
        except OSError as e:
            failed = _roll_back(project, export_dir, entries[: n - 1])
            manifest["status"] = "pending" if failed else "rolled back"
            try:
                write_json(export_dir / MANIFEST, manifest)
            except OSError:
                pass  # undo checks hashes, so a 'pending' manifest with nothing to undo is harmless
            tail = (
                f"{len(failed)} sidecars already written could not be put back, run `joyq undo-export "
                f"{project.folder}` to finish"
                if failed
                else "nothing is left changed"
            )
            raise ExportError(f"{c.path}: could not write the sidecar ({describe_error(e)}); {tail}.") from None
        if progress:
            progress(n, len(plan.changes))
    manifest["status"] = "complete"
    try:
        write_json(export_dir / MANIFEST, manifest)
    except OSError:
        pass  # every sidecar is written; a 'pending' manifest is undone the same way


# -- undo ------------------------------------------------------------------------------------
def undo_xmp_export(project: Project, export_dir: Path, manifest: dict, progress: Progress = None) -> UndoReport:
    """Undo one XMP export (the caller holds :func:`export_lock`): restore each sidecar it
    modified byte for byte and delete the ones it created, each only while still exactly as
    the export wrote it."""
    return undo_caption_export(project, export_dir, manifest, progress)


def undo_last_xmp_export(project: Project, progress: Progress = None) -> UndoReport:
    """Undo the newest XMP export not yet undone (``joyq undo-export`` undoes the newest of any kind)."""
    with export_lock(project):
        return undo_xmp_export(project, *newest_undoable(project, KIND, "XMP export"), progress=progress)


def written_by_us(project: Project) -> dict[str, tuple[str, int]]:
    """sidecar (relative path) -> (SHA-256, stars) as the newest XMP export not undone wrote
    it: a sidecar still so carries our rating, not the user's."""
    out: dict[str, tuple[str, int]] = {}
    for _, m in manifests(project):  # newest first
        if m.get("kind") != KIND or m.get("status") not in ("pending", "complete"):
            continue
        for e in m.get("files", []):
            if isinstance(e, dict) and isinstance(e.get("caption"), str) and isinstance(e.get("new_sha256"), str):
                out.setdefault(e["caption"], (e["new_sha256"], int(e.get("stars", 0))))
    return out


def files_word(report) -> str:
    """What an undone caption-style export restored: 'sidecars' for an XMP export, else 'captions'."""
    try:
        manifest = json.loads((report.export_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "captions"
    return "sidecars" if isinstance(manifest, dict) and manifest.get("kind") == KIND else "captions"
