"""Caption sidecars: one ``.txt`` per image (``img.jpg`` -> ``img.txt``) with the quality tag.

A quality tag is any phrase of our label sets (this calibration's labels, the default
phrases, every label an earlier export wrote) that forms a whole separator-delimited item
of the caption, or, for a whitespace separator, its first or last item. Re-running
replaces such a tag, never duplicates it. Modes:

  ``prepend``  ``tag<sep>caption`` (created when missing)
  ``append``   ``caption<sep>tag`` (created when missing)
  ``replace``  swap an existing tag in place; captions without one, and missing ones, untouched
  ``new``      only create missing caption files; existing ones untouched

Encoding (UTF-8, UTF-8/16/32 with BOM) and line endings of an existing file are kept:
only the tag and one separator change. Files that are not such text, read-only, folders,
symlinks or over 1 MiB are reported and left alone. Before anything is written, every
file to be modified is copied to ``<project dir>/exports/<timestamp>/backup/`` and a
``manifest.json`` lists every file to be created or modified with the SHA-256 of its
old and new bytes; :func:`undo_last_export` uses those to restore / delete exactly the
files still as the export left them. A failed write rolls back the files already written.
One export or undo (of captions or to a destination folder) runs at a time per project (an OS file lock,
``<project dir>/exports.lock``, released even when its process crashes); another one is
refused with a message and changes nothing.

Nothing here ever modifies or deletes an image file.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import hashlib
import json
import os
import shutil
import stat
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ExportError, JoyqError
from ..fsio import NAME_MAX, atomic_write, describe_error, remove_leftovers, temp_path, write_json
from ..ranking.calibration import (
    QUALITY_PHRASES,
    Calibration,
    default_labels,
)
from ..ranking.rows import RankedImage, ranked_images
from ..store import Project

if sys.platform == "win32":
    import msvcrt

    def try_lock(f) -> None:
        f.seek(0)  # msvcrt locks bytes from the current position
        msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
else:
    import fcntl

    def try_lock(f) -> None:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


# errno of a lock attempt that failed only because another process holds the lock
_HELD_ELSEWHERE = {errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES, errno.EDEADLK}


Progress = Callable[[int, int], None] | None

CAPTION_MODES = ("prepend", "append", "replace", "new")
MAX_CAPTION_BYTES = 1 << 20
MANIFEST = "manifest.json"
HISTORY_KEY = "caption_history"


# -- caption text ---------------------------------------------------------------------------
# encoding name -> (BOM, codec); detection tries the BOMs in this order (UTF-32 before 16).
_ENCODINGS: dict[str, tuple[bytes, str]] = {
    "utf-8-sig": (b"\xef\xbb\xbf", "utf-8"),
    "utf-32-le": (b"\xff\xfe\x00\x00", "utf-32-le"),
    "utf-32-be": (b"\x00\x00\xfe\xff", "utf-32-be"),
    "utf-16-le": (b"\xff\xfe", "utf-16-le"),
    "utf-16-be": (b"\xfe\xff", "utf-16-be"),
    "utf-8": (b"", "utf-8"),
}


def decode_caption(data: bytes) -> tuple[str, str] | None:
    """(text, encoding name) of a caption file's bytes, or None when it is not such text."""
    for name, (bom, codec) in _ENCODINGS.items():
        if data.startswith(bom):
            try:
                text = data[len(bom) :].decode(codec)
            except UnicodeDecodeError:
                return None
            return None if "\x00" in text else (text, name)
    return None


def encode_caption(text: str, encoding: str) -> bytes:
    bom, codec = _ENCODINGS[encoding]
    return bom + text.encode(codec)


_PLACEHOLDER = "\x00joyq\x00"


class TagFinder:
    """Finds our quality tags in a caption body (see the module docstring for what counts)."""

    def __init__(self, labels: Iterable[str], separators: Iterable[str]):
        self.known = {s.strip().casefold() for s in labels if s.strip()}
        self.lengths = sorted({len(s.strip()) for s in labels if s.strip()}, reverse=True)
        self.specs: list[tuple[str, str]] = []
        for sep in separators:
            spec = _spec(sep)
            if spec not in self.specs:
                self.specs.append(spec)

    def find(self, body: str) -> tuple[int, int, int, int] | None:
        """(tag start, tag end, cut start, cut end) of the first tag, or None. The cut is the
        tag plus the one separator (and spacing) that goes with it."""
        for kind, d in self.specs:
            m = self._find_split(body, d) if kind == "split" else self._find_edge(body, d)
            if m:
                return m
        return None

    def _find_split(self, body: str, d: str):
        spans = _segments(body, d)
        for j, (cs, ce) in enumerate(spans):
            if ce > cs and body[cs:ce].casefold() in self.known:
                if j + 1 < len(spans):
                    return cs, ce, cs, spans[j + 1][0]
                if j > 0:
                    return cs, ce, spans[j - 1][1], ce
                return cs, ce, cs, ce
        return None

    def _find_edge(self, body: str, sep: str):
        n_body = len(body)
        for n in self.lengths:
            if n <= n_body and body[:n].casefold() in self.known and (n == n_body or body.startswith(sep, n)):
                return 0, n, 0, (n if n == n_body else n + len(sep))
            cs = n_body - n
            if cs >= 0 and body[cs:].casefold() in self.known and body[:cs].endswith(sep):
                return cs, n_body, cs - len(sep), n_body
        return None

    def remove_all(self, body: str) -> str:
        while (m := self.find(body)) is not None:
            body = body[: m[2]] + body[m[3] :]
        return body if body.strip() else ""


def _spec(sep: str) -> tuple[str, str]:
    """How a separator delimits items: split on its visible part, on newlines, or (spaces
    only) look at the first and last item only, so prose is never cut into words."""
    core = sep.strip()
    if core:
        return ("split", core)
    if "\n" in sep:
        return ("split", "\n")
    return ("edge", sep)


def _segments(body: str, d: str) -> list[tuple[int, int]]:
    """[start, end) of the stripped content of each d-delimited item ((s, s) when blank)."""
    spans, start = [], 0
    while True:
        i = body.find(d, start)
        end = len(body) if i < 0 else i
        seg = body[start:end]
        if seg.strip():
            spans.append((start + len(seg) - len(seg.lstrip()), end - (len(seg) - len(seg.rstrip()))))
        else:
            spans.append((start, start))
        if i < 0:
            return spans
        start = i + len(d)


def edit_caption(text: str | None, label: str, mode: str, separator: str, finder: TagFinder) -> str | None:
    """The new caption text, or None when ``mode`` leaves this caption alone."""
    if text is None:
        return None if mode == "replace" else label
    if mode == "new":
        return None
    body = text.rstrip("\r\n")
    trailing = text[len(body) :]
    eol = "\r\n" if "\r\n" in text else "\n"
    sep = separator.replace("\r\n", "\n").replace("\n", eol)
    if mode == "replace":
        m = finder.find(body)
        if m is None:
            return None
        body = finder.remove_all(body[: m[0]] + _PLACEHOLDER + body[m[1] :]).replace(_PLACEHOLDER, label)
    elif mode == "prepend":
        rest = finder.remove_all(body).lstrip()
        body = label + sep + rest if rest else label
    else:
        rest = finder.remove_all(body).rstrip()
        body = rest + sep + label if rest else label
    return body + trailing


# -- caption plan / apply / undo ------------------------------------------------------------
@dataclass
class CaptionChange:
    path: Path  # absolute path of the caption file
    rel: str  # relative to the folder
    images: list[str]  # the image(s) it describes
    label: str
    old_text: str | None  # None: the file does not exist and will be created
    new_text: str
    encoding: str = "utf-8"
    old_sha256: str | None = None

    @property
    def action(self) -> str:
        return "create" if self.old_text is None else "modify"

    def new_bytes(self) -> bytes:
        return encode_caption(self.new_text, self.encoding)


@dataclass
class CaptionPlan:
    """What an export would do: the changes, the captions left alone with why, and how many
    captions need no change."""

    mode: str
    separator: str
    labels: list[str]
    changes: list[CaptionChange] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (caption path, reason)
    unchanged: int = 0

    def __iter__(self):
        return iter(self.changes)

    def __len__(self) -> int:
        return len(self.changes)

    @property
    def created(self) -> int:
        return sum(c.old_text is None for c in self.changes)

    @property
    def modified(self) -> int:
        return sum(c.old_text is not None for c in self.changes)


def caption_path(image: Path) -> Path:
    return image.with_suffix(".txt")


def _history(project: Project) -> dict:
    """The labels and separators earlier exports wrote (lists of strings; anything else in a
    damaged record is ignored)."""
    try:
        h = json.loads(project.get_meta(HISTORY_KEY) or "{}")
    except (ValueError, RecursionError):
        return {}
    if not isinstance(h, dict):
        return {}
    return {k: [x for x in h[k] if isinstance(x, str)] for k in ("labels", "separators") if isinstance(h.get(k), list)}


def _is_read_only(path: Path, st: os.stat_result) -> bool:
    return not (st.st_mode & 0o222) or not os.access(path, os.W_OK)


def read_sidecar_file(
    path: Path, max_bytes: int = MAX_CAPTION_BYTES, what: str = "a caption"
) -> tuple[bytes | None, str | None]:
    """An existing sidecar (a caption, an XMP file) we may change: (bytes or None if missing,
    the reason it must be left alone or None). Links, folders, read-only and oversized files
    are left alone."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None, None
    except OSError as e:
        return None, f"cannot be read ({describe_error(e)})"
    if stat.S_ISDIR(st.st_mode):
        return None, f"is a folder, not {what} file"
    if stat.S_ISLNK(st.st_mode):
        return None, "is a symbolic link; left alone"
    if not stat.S_ISREG(st.st_mode):
        return None, "is not a regular file"
    if st.st_size > max_bytes:
        return None, f"is {st.st_size:,} bytes, too large for {what}; left alone"
    if _is_read_only(path, st):
        return None, "is read-only"
    try:
        return path.read_bytes(), None
    except OSError as e:
        return None, f"cannot be read ({describe_error(e)})"


def inside_folder(project: Project, path: Path) -> bool:
    """Whether ``path``'s folder, with every symbolic link resolved, is inside the project
    folder's real path: the only place a caption export may write."""
    real = os.path.realpath(path.parent)
    root = os.path.realpath(project.folder)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def _unsafe_location(project: Project, path: Path) -> str | None:
    """Why a caption cannot be written at ``path`` (None if it can): outside the folder
    through a symbolic link, or a name the file system cannot hold (the real run writes
    ``path`` and a temporary file beside it; the dry run must hit what it would hit)."""
    if not inside_folder(project, path):
        return (
            f"its folder is, through a symbolic link, outside {project.folder} "
            f"(at {os.path.realpath(path.parent)}); nothing is written there"
        )
    for name in (path.name, temp_path(path).name):
        if len(os.fsencode(name)) > NAME_MAX:
            return f"the name is longer than the file system allows ({NAME_MAX} bytes)"
    return None


def plan_caption_export(
    project: Project, cal: Calibration, mode: str = "prepend", separator: str = ", ", progress: Progress = None
) -> CaptionPlan:
    """Everything a caption export would change; reads caption files, writes nothing."""
    if mode not in CAPTION_MODES:
        raise ExportError(f"Unknown caption mode {mode!r}; use one of {', '.join(CAPTION_MODES)}.")
    if not separator:
        raise ExportError("The caption separator must not be empty.")
    kind, delim = _spec(separator)
    for label in cal.labels:
        if not label.strip():
            raise ExportError("A bucket label is empty; give every bucket a label (see `joyq calibrate --labels`).")
        if kind == "split" and delim in label:
            raise ExportError(
                f"The label {label!r} contains the separator {delim!r}; choose another separator or label."
            )
    history = _history(project)
    labels = [*cal.labels, *QUALITY_PHRASES, *default_labels(cal.k), *history.get("labels", [])]
    finder = TagFinder(labels, [separator, ", ", *history.get("separators", [])])
    plan = CaptionPlan(mode, separator, list(cal.labels))

    groups: dict[str, list[RankedImage]] = defaultdict(list)
    for r in ranked_images(project, cal):
        groups[caption_path(Path(r.path)).as_posix()].append(r)
    total = len(groups)
    for n, rel in enumerate(sorted(groups), 1):
        if progress:
            progress(n, total)
        imgs = sorted(groups[rel], key=lambda r: r.path)
        path = project.folder / rel
        if len({r.label for r in imgs}) > 1:
            plan.skipped.append(
                (
                    rel,
                    "is shared by "
                    + ", ".join(f"{r.path} ({r.label})" for r in imgs)
                    + ", which are in different buckets",
                )
            )
            continue
        if not any((project.folder / r.path).is_file() for r in imgs):
            plan.skipped.append((rel, f"its image {imgs[0].path} no longer exists; rescan the folder"))
            continue
        problem = _unsafe_location(project, path)
        if problem:
            plan.skipped.append((rel, problem))
            continue
        data, problem = read_sidecar_file(path)
        if problem:
            plan.skipped.append((rel, problem))
            continue
        encoding, old_text = "utf-8", None
        if data is not None:
            decoded = decode_caption(data)
            if decoded is None:
                plan.skipped.append((rel, "is not UTF-8 or UTF-16 text; left alone"))
                continue
            old_text, encoding = decoded
        new_text = edit_caption(old_text, imgs[0].label, mode, separator, finder)
        if new_text is None or new_text == old_text:
            plan.unchanged += 1
            continue
        if not os.access(path.parent, os.W_OK | os.X_OK):  # a write makes a temporary file beside it
            plan.skipped.append(
                (rel, "cannot be " + ("created" if old_text is None else "modified") + ": its folder is read-only")
            )
            continue
        plan.changes.append(
            CaptionChange(
                path,
                rel,
                [r.path for r in imgs],
                imgs[0].label,
                old_text,
                new_text,
                encoding,
                None if data is None else hashlib.sha256(data).hexdigest(),
            )
        )
    return plan


def _sha(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def _current_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _exports_dir(project: Project) -> Path:
    return project.dir / "exports"


def new_export_dir(project: Project) -> Path:
    """A new, empty ``<project dir>/exports/<timestamp>`` folder (for any kind of export)."""
    root = _exports_dir(project)
    root.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    for i in range(100):
        d = root / (stamp if i == 0 else f"{stamp}-{i:02d}")
        try:
            d.mkdir()
            return d
        except FileExistsError:
            continue
    raise ExportError(f"{root}: could not create a new export folder.")


@contextlib.contextmanager
def export_lock(project: Project):
    """One caption export or undo at a time per project: the app and ``joyq`` may run side by
    side, and two writers would interleave captions and backups. The OS drops the lock when
    its process ends, so a crash leaves nothing stale behind."""
    path = project.dir / "exports.lock"
    try:
        f = open(path, "a+b")
    except OSError as e:
        raise ExportError(f"{path}: cannot open the export lock ({describe_error(e)}); nothing was changed.") from None
    with f:
        try:
            try_lock(f)
        except OSError as e:
            if e.errno not in _HELD_ELSEWHERE:  # e.g. no locks on this filesystem: say so
                raise ExportError(
                    f"{path}: cannot take the export lock ({describe_error(e)}); nothing was changed."
                ) from None
            raise ExportError(
                f"{project.folder}: another export or undo is running on this folder; "
                "nothing was changed, try again when it has finished."
            ) from None
        yield


def apply_caption_export(
    project: Project, plan: CaptionPlan | Sequence[CaptionChange], progress: Progress = None
) -> Path | None:
    """Write the planned captions; returns the manifest path (None when there was nothing to do).

    1. Every file is checked to be as planned and the ones to modify are backed up; the
       manifest is written. A failure here changes nothing in the folder.
    2. Each caption is written via a temporary file and a rename. If one fails, those already
       written are put back and ExportError names the file; nothing is left half-written.
    """
    changes = list(plan.changes if isinstance(plan, CaptionPlan) else plan)
    if not changes:
        return None
    with export_lock(project):
        return _apply_locked(project, plan, changes, progress)


def _clean_leftovers(project: Project, folders) -> None:
    """Remove the temporary files a killed export or undo left in the folders this one touches."""
    for folder in sorted(set(folders)):
        if inside_folder(project, folder / "x"):
            remove_leftovers(folder)


def _apply_locked(project: Project, plan, changes: list[CaptionChange], progress: Progress) -> Path:
    _clean_leftovers(project, (c.path.parent for c in changes))
    for c in changes:  # a folder may have been swapped for a link since the plan
        problem = _unsafe_location(project, c.path)
        if problem:
            raise ExportError(f"{c.path}: {problem}; nothing was changed, please preview the export again.")
    export_dir = new_export_dir(project)
    manifest_path = export_dir / MANIFEST
    entries = []
    try:
        for c in changes:
            try:
                current = _current_bytes(c.path)
            except OSError as e:
                raise ExportError(f"{c.path}: cannot be read ({describe_error(e)}); nothing was changed.") from None
            if _sha(current) != c.old_sha256:
                raise ExportError(
                    f"{c.path}: changed since the export was planned; nothing was changed, "
                    "please preview the export again."
                )
            backup = None
            if current is not None:
                backup = f"backup/{c.rel}"
                dst = export_dir / backup
                dst.parent.mkdir(parents=True, exist_ok=True)
                with open(dst, "wb") as f:
                    f.write(current)
                    f.flush()
                    os.fsync(f.fileno())
            entries.append(
                {
                    "caption": c.rel,
                    "action": "modified" if current is not None else "created",
                    "backup": backup,
                    "old_sha256": c.old_sha256,
                    "new_sha256": _sha(c.new_bytes()),
                    "images": c.images,
                    "label": c.label,
                }
            )
        manifest = {
            "format": 1,
            "kind": "captions",
            "folder": str(project.folder),
            "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "status": "pending",
            "mode": plan.mode if isinstance(plan, CaptionPlan) else None,
            "separator": plan.separator if isinstance(plan, CaptionPlan) else None,
            "files": entries,
        }
        write_json(manifest_path, manifest)
    except OSError as e:
        shutil.rmtree(export_dir, ignore_errors=True)
        raise ExportError(
            f"{export_dir}: could not back up the caption files ({describe_error(e)}); nothing was changed."
        ) from None
    except BaseException:
        shutil.rmtree(export_dir, ignore_errors=True)
        raise

    done: list[CaptionChange] = []
    for n, c in enumerate(changes, 1):
        try:
            atomic_write(c.path, c.new_bytes(), like=c.path if c.old_text is not None else None, fsync=False)
        except OSError as e:
            failed = _roll_back(project, export_dir, entries[: len(done)])
            if failed:
                raise ExportError(
                    f"{c.path}: could not write the caption ({describe_error(e)}); {len(failed)} of the {len(done)} "
                    f"captions already written could not be put back, run `joyq undo-export "
                    f"{project.folder}` to finish (backups in {export_dir})."
                ) from None
            manifest["status"] = "rolled back"
            try:
                write_json(manifest_path, manifest)
            except OSError:
                pass  # undo checks hashes, so a 'pending' manifest with nothing to undo is harmless
            done_text = f"the {len(done)} captions already written were put back" if done else "nothing was changed"
            raise ExportError(f"{c.path}: could not write the caption ({describe_error(e)}); {done_text}.") from None
        done.append(c)
        if progress:
            progress(n, len(changes))
    manifest["status"] = "complete"
    try:
        write_json(manifest_path, manifest)
    except OSError:
        pass  # every caption is written; a 'pending' manifest is undone the same way
    _remember(project, plan, changes)
    return manifest_path


def _remember(project: Project, plan, changes: list[CaptionChange]) -> None:
    """Record the labels and separator written, so later exports recognise them as ours."""
    h = _history(project)
    labels = list(
        dict.fromkeys(
            [*h.get("labels", []), *(plan.labels if isinstance(plan, CaptionPlan) else []), *(c.label for c in changes)]
        )
    )
    seps = list(dict.fromkeys([*h.get("separators", []), *([plan.separator] if isinstance(plan, CaptionPlan) else [])]))
    try:
        with project.transaction():
            project.set_meta(HISTORY_KEY, json.dumps({"labels": labels, "separators": seps}))
    except JoyqError:
        pass  # the export itself is done and undoable; this only helps later re-runs


def _restore(project: Project, export_dir: Path, entry: dict) -> str:
    """Undo one manifest entry if the file is still as the export left it.
    Returns 'restored', 'deleted', 'original' (nothing to do) or 'changed'."""
    path = project.folder / entry["caption"]
    if not inside_folder(project, path) or os.path.islink(path):
        return "changed"  # never follow a link out of the folder, nor write through one
    try:
        current = _sha(_current_bytes(path))
    except IsADirectoryError:
        return "changed"
    if current == entry["old_sha256"]:
        return "original"
    if current != entry["new_sha256"]:
        return "changed"
    if entry["action"] == "created":
        path.unlink()
        return "deleted"
    backup = export_dir / entry["backup"]
    if not os.path.realpath(backup).startswith(os.path.realpath(export_dir) + os.sep):
        raise ExportError(
            f"{export_dir / MANIFEST}: names a backup outside its export folder; {path} was left as it is."
        )
    data = backup.read_bytes()
    if _sha(data) != entry["old_sha256"]:
        raise ExportError(f"{export_dir / entry['backup']}: the backup is damaged; {path} was left as it is.")
    atomic_write(path, data, like=path)
    return "restored"


def _roll_back(project: Project, export_dir: Path, entries: list[dict]) -> list[str]:
    """Put back the captions of ``entries`` (in place, so it works on a full disk);
    returns the ones that could not be put back."""
    failed = []
    for entry in reversed(entries):
        path = project.folder / entry["caption"]
        try:
            if entry["action"] == "created":
                path.unlink(missing_ok=True)
            else:
                data = (export_dir / entry["backup"]).read_bytes()
                with open(path, "wb") as f:
                    f.write(data)
        except OSError:
            failed.append(entry["caption"])
    return failed


@dataclass
class UndoReport:
    export_dir: Path
    restored: int = 0
    deleted: int = 0
    already_original: int = 0
    changed_since: list[str] = field(default_factory=list)  # left alone: edited after the export


def manifests(project: Project) -> list[tuple[Path, dict]]:
    """(export dir, manifest) of every export (captions and curation), newest first."""
    root = _exports_dir(project)
    if not root.is_dir():
        return []
    out = []
    for d in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.name, reverse=True):
        try:
            manifest = json.loads((d / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            continue  # not a manifest we wrote (or damaged): nothing we can undo from it
        if isinstance(manifest, dict) and isinstance(manifest.get("files", []), list):
            out.append((d, manifest))
    return out


def newest_undoable(project: Project, kind: str | None = None, what: str = "export") -> tuple[Path, dict]:
    """(export dir, manifest) of the newest export (of ``kind``, any when None) not yet undone;
    ExportError naming ``what`` when there is none."""
    for d, m in manifests(project):
        if m.get("status") in ("pending", "complete") and (kind is None or m.get("kind") == kind):
            return d, m
    raise ExportError(f"There is no {what} of {project.folder} left to undo.")


def _valid_entry(e) -> bool:
    """A manifest entry as :func:`apply_caption_export` writes it (a damaged or edited one is
    skipped: undo only ever acts on entries it can check by their hashes)."""
    if not isinstance(e, dict) or e.get("action") not in ("created", "modified"):
        return False
    if not isinstance(e.get("caption"), str) or not isinstance(e.get("new_sha256"), str):
        return False
    if e["action"] == "modified":
        return isinstance(e.get("backup"), str) and isinstance(e.get("old_sha256"), str)
    return e.get("old_sha256") is None


def undo_last_export(project: Project, progress: Progress = None) -> UndoReport:
    """Undo the newest caption export not yet undone: restore the files it modified and delete
    the ones it created, each only if still exactly as the export wrote it (others are
    reported and left alone). Backups are kept. Run again to undo the export before.
    (:func:`joyq_studio.export.undo_latest_export` undoes the newest export of any kind.)"""
    with export_lock(project):
        todo = [
            (d, m)
            for d, m in manifests(project)
            if m.get("kind", "captions") == "captions" and m.get("status") in ("pending", "complete")
        ]
        if not todo:
            raise ExportError(f"{_exports_dir(project)}: there is no caption export of {project.folder} left to undo.")
        return undo_caption_export(project, *todo[0], progress=progress)


def undo_caption_export(project: Project, export_dir: Path, manifest: dict, progress: Progress = None) -> UndoReport:
    """Undo one caption export (the caller holds :func:`export_lock`)."""
    report = UndoReport(export_dir)
    entries = [e for e in manifest.get("files", []) if _valid_entry(e)]
    _clean_leftovers(project, ((project.folder / e["caption"]).parent for e in entries))
    for n, entry in enumerate(reversed(entries), 1):
        try:
            result = _restore(project, export_dir, entry)
        except OSError as e:
            raise ExportError(
                f"{project.folder / entry['caption']}: could not be restored ({describe_error(e)}); "
                "run the undo again to finish."
            ) from None
        if result == "restored":
            report.restored += 1
        elif result == "deleted":
            report.deleted += 1
        elif result == "original":
            report.already_original += 1
        else:
            report.changed_since.append(entry["caption"])
        if progress:
            progress(n, len(entries))
    manifest["status"] = "undone"
    manifest["undone"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    manifest["undo_left_alone"] = report.changed_since
    try:
        write_json(export_dir / MANIFEST, manifest)
    except OSError as e:
        raise ExportError(
            f"{export_dir / MANIFEST}: the files were restored but the manifest could not be "
            f"marked as undone ({describe_error(e)})."
        ) from None
    return report
