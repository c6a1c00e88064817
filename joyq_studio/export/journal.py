"""The export journal: an append-only, write-ahead list of every file an export may have made.

Every export that puts files on disk (copies or links in a destination folder, and any later
kind such as sidecars) records each file in ``<export dir>/journal.jsonl`` *before* it makes
it: one JSON line, flushed and fsynced. So whenever the process dies (``kill -9``, power
loss), the journal lists everything that may exist, and:

* :meth:`ExportJournal.undo` removes exactly what it lists and nothing else: a created file
  only while it is still as the export made it (its SHA-256, the file it copies, the file it
  hard-links or the target it links to), a replaced file restored byte for byte from its
  backup only while it still holds the export's bytes, a folder only once empty; and the
  temporary files (``.NAME.joyq-tmp-PID``) of the process that wrote the journal and of any
  other dead process, in every folder the journal names. Undo is itself safe to kill: run it
  again and it finishes (what is gone counts as gone).
* a rerun of a killed export :meth:`adopts <ExportJournal.adopt>` the killed run's journal:
  its entries are copied into the new journal, so undoing the rerun removes both runs' files.

The status lives in ``manifest.json`` beside the journal (written atomically): ``pending``
from :meth:`begin` until :meth:`commit` (``complete``), then ``undone``, ``rolled back`` or
``adopted``. A ``pending`` manifest whose export holds no lock is a killed export.

Use (the caller holds :func:`joyq_studio.export.captions.export_lock`)::

    journal = ExportJournal.begin(new_export_dir(project), "mykind", dest=str(dest))
    journal.record_mkdir(folder); folder.mkdir()
    journal.record_create(path, sha256=digest_of_bytes)      # or copy_of= / symlink_to= / hardlink_of=
    atomic_write(path, data)
    journal.record_replace(path, backup, old_sha256, new_sha256)  # backup written and fsynced first
    atomic_write(path, new_data)
    journal.commit()
    ...
    ExportJournal.open(export_dir).undo()

Only the standard library and :mod:`joyq_studio.fsio`; nothing here touches an image file.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ExportError
from ..fsio import atomic_write, describe_error, remove_leftovers, temp_path, write_json

JOURNAL = "journal.jsonl"
MANIFEST = "manifest.json"
UNDOABLE = ("pending", "complete")  # manifest statuses an undo acts on

Progress = Callable[[int, int], None] | None


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _inside(child: str, root: str) -> bool:
    return child == root or child.startswith(root.rstrip(os.sep) + os.sep)


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


@dataclass
class JournalEntry:
    """One thing an export may have made: ``op`` is "mkdir", "create" or "replace"; ``path`` is
    absolute; ``facts`` say how undo recognises it as the export's (see :meth:`ExportJournal.record_create`)."""

    op: str
    path: str
    facts: dict[str, Any] = field(default_factory=dict)

    def line(self) -> dict[str, Any]:
        return {"op": self.op, "path": self.path, **self.facts}


@dataclass
class JournalUndo:
    """What an undo did. ``changed_since``: paths left alone because they changed after the export."""

    export_dir: Path
    removed: int = 0  # created files removed
    restored: int = 0  # replaced files put back from their backups
    already_gone: int = 0  # created files no longer there
    already_original: int = 0  # replaced files already holding their old bytes
    temp_removed: int = 0  # temporary files of killed processes removed
    changed_since: list[str] = field(default_factory=list)


class ExportJournal:
    """One export's journal (see the module docstring). Create with :meth:`begin`, read with :meth:`open`."""

    def __init__(self, export_dir: Path, header: dict[str, Any], entries: list[JournalEntry]):
        self.dir = export_dir
        self.header = header
        self.entries = entries
        self._file: Any = None

    # -- writing ----------------------------------------------------------------------------
    @classmethod
    def begin(cls, export_dir: Path, kind: str, **meta: Any) -> ExportJournal:
        """Start the journal of a new export in the (new, empty) ``export_dir``: writes the
        manifest (status "pending") and the journal's first line. ExportError when it cannot."""
        header = {"op": "begin", "format": 2, "kind": kind, "pid": os.getpid(), "created": _now(), **meta}
        journal = cls(export_dir, header, [])
        try:
            write_json(export_dir / MANIFEST, {**journal._summary(), "status": "pending"})
            journal._file = open(export_dir / JOURNAL, "ab")
            journal._append(header)
            fd = os.open(export_dir, os.O_RDONLY)  # the journal's name itself must survive a crash
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            journal.close()
            raise ExportError(
                f"{export_dir / JOURNAL}: could not start the export's journal ({describe_error(e)}); "
                "nothing was changed."
            ) from None
        return journal

    def _append(self, line: dict[str, Any], sync: bool = True) -> None:
        if self._file is None:
            raise ExportError(f"{self.dir / JOURNAL}: the journal is closed; nothing more can be recorded.")
        self._file.write((json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8"))
        self._file.flush()
        if sync:
            os.fsync(self._file.fileno())

    def _record(self, entry: JournalEntry) -> None:
        self._append(entry.line())
        self.entries.append(entry)

    def record_mkdir(self, path: str | os.PathLike) -> None:
        """Call before creating the folder ``path``; undo removes it once empty."""
        self._record(JournalEntry("mkdir", os.path.abspath(path)))

    def record_create(
        self,
        path: str | os.PathLike,
        *,
        sha256: str | None = None,
        copy_of: str | os.PathLike | None = None,
        symlink_to: str | os.PathLike | None = None,
        hardlink_of: str | os.PathLike | None = None,
        **info: Any,
    ) -> None:
        """Call before making the new file ``path``. Say how undo knows it is still the export's:
        its bytes' ``sha256`` (known in advance, or later with :meth:`record_done`), the file it
        is a ``copy_of``, the target it is a symbolic link to, or the file it is a hard link of.
        ``info``: anything else worth keeping (JSON values)."""
        facts: dict[str, Any] = {k: v for k, v in info.items()}
        for key, value in (
            ("sha256", sha256),
            ("copy_of", copy_of),
            ("symlink_to", symlink_to),
            ("hardlink_of", hardlink_of),
        ):
            if value is not None:
                facts[key] = str(value)
        if not {"sha256", "copy_of", "symlink_to", "hardlink_of"} & facts.keys():
            raise ValueError("record_create needs sha256, copy_of, symlink_to or hardlink_of")
        self._record(JournalEntry("create", os.path.abspath(path), facts))

    def record_replace(
        self,
        path: str | os.PathLike,
        backup: str | os.PathLike,
        old_sha256: str,
        new_sha256: str,
        **info: Any,
    ) -> None:
        """Call before replacing the existing file ``path``, once its old bytes are saved (and
        fsynced) in ``backup`` inside the export folder; undo puts them back while ``path``
        still holds ``new_sha256``."""
        rel = os.path.relpath(os.path.abspath(backup), os.path.abspath(self.dir))
        if rel.startswith(os.pardir):
            raise ValueError(f"the backup {backup} is not inside the export folder {self.dir}")
        facts = {**info, "backup": rel, "old_sha256": old_sha256, "new_sha256": new_sha256}
        self._record(JournalEntry("replace", os.path.abspath(path), facts))

    def record_done(self, path: str | os.PathLike, **facts: Any) -> None:
        """Optional, after making ``path``: facts learned while making it (e.g. ``sha256`` of a
        copy). Not fsynced: if lost, undo falls back on the facts recorded before."""
        p = os.path.abspath(path)
        self._append({"op": "done", "path": p, **facts}, sync=False)
        for e in reversed(self.entries):
            if e.path == p:
                e.facts.update(facts)
                break

    def commit(self, **summary: Any) -> None:
        """Close the journal of a finished export; the manifest says "complete"."""
        self._append({"op": "commit", "at": _now()})
        self.close()
        write_json(self.dir / MANIFEST, {**self._summary(), **summary, "status": "complete"})

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def mark(self, status: str, **extra: Any) -> None:
        """Set the manifest's status (e.g. "rolled back", "adopted")."""
        write_json(self.dir / MANIFEST, {**self.manifest(), **extra, "status": status})

    def _summary(self) -> dict[str, Any]:
        head = {k: v for k, v in self.header.items() if k not in ("op", "pid")}
        return {**head, "journal": JOURNAL, "files": [e.line() for e in self.entries if e.op != "mkdir"]}

    # -- reading ----------------------------------------------------------------------------
    @classmethod
    def open(cls, export_dir: Path) -> ExportJournal | None:
        """The journal of ``export_dir`` (None when the export has none: made by an older
        version). A line cut short by a kill is ignored: its file was never made."""
        try:
            data = (export_dir / JOURNAL).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise ExportError(f"{export_dir / JOURNAL}: cannot be read ({describe_error(e)}).") from None
        header: dict[str, Any] = {}
        entries: list[JournalEntry] = []
        by_path: dict[str, JournalEntry] = {}
        for raw in data.splitlines():
            try:
                line = json.loads(raw)
            except (ValueError, RecursionError):
                continue
            if not isinstance(line, dict) or not isinstance(line.get("op"), str):
                continue
            op, path = line["op"], line.get("path")
            if op == "begin":
                header = line
            elif op in ("mkdir", "create", "replace") and isinstance(path, str) and os.path.isabs(path):
                facts = {k: v for k, v in line.items() if k not in ("op", "path")}
                entry = JournalEntry(op, path, facts)
                entries.append(entry)
                by_path[path] = entry
            elif op == "done" and isinstance(path, str) and path in by_path:
                by_path[path].facts.update({k: v for k, v in line.items() if k not in ("op", "path")})
        return cls(export_dir, header, entries)

    def manifest(self) -> dict[str, Any]:
        try:
            m = json.loads((self.dir / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            m = None
        return m if isinstance(m, dict) else self._summary()

    @property
    def writer_pid(self) -> int | None:
        pid = self.header.get("pid")
        return pid if isinstance(pid, int) and pid > 0 else None

    def adopt(self, other: ExportJournal) -> int:
        """Take over the entries of a killed export's journal (a rerun): they are recorded here,
        the killed run's temporary files are removed, and its manifest says "adopted". Returns
        how many entries were taken over."""
        for e in other.entries:
            self._record(JournalEntry(e.op, e.path, {**e.facts, "adopted_from": other.dir.name}))
        other.remove_temp_files()
        other.mark("adopted", adopted_by=self.dir.name)
        return len(other.entries)

    # -- undo -------------------------------------------------------------------------------
    def owns(self, entry: JournalEntry) -> bool | None:
        """Whether the created file of ``entry`` is still as the export made it; None when gone."""
        try:
            st = os.lstat(entry.path)
        except FileNotFoundError:
            return None
        except OSError:
            return False
        f = entry.facts
        if "symlink_to" in f:
            return stat.S_ISLNK(st.st_mode) and os.readlink(entry.path) == f["symlink_to"]
        if not stat.S_ISREG(st.st_mode):
            return False
        try:
            if "hardlink_of" in f:
                return os.path.samefile(f["hardlink_of"], entry.path)
            if "sha256" in f:
                return sha256_file(entry.path) == f["sha256"]
            if "copy_of" in f:  # killed before its "done" line: the file appears whole or not at all
                return os.stat(f["copy_of"]).st_size == st.st_size and sha256_file(f["copy_of"]) == sha256_file(
                    entry.path
                )
        except OSError:
            return False
        return False

    def remove_temp_files(self) -> int:
        """Remove the temporary files left beside the journal's paths: the writer's own (its pid
        is in the journal and it no longer runs its export) and those of other dead processes."""
        removed = 0
        folders = {os.path.dirname(e.path) for e in self.entries if e.op != "mkdir"}
        pid = self.writer_pid
        if pid is not None and pid != os.getpid():
            for e in self.entries:
                if e.op == "mkdir":
                    continue
                tmp = temp_path(Path(e.path), pid)
                try:
                    if stat.S_ISREG(os.lstat(tmp).st_mode):
                        os.unlink(tmp)
                        removed += 1
                except OSError:
                    pass
        for folder in sorted(folders):
            removed += len(remove_leftovers(Path(folder)))
        return removed

    def undo(
        self, progress: Progress = None, final_status: str = "undone", never_inside: str | os.PathLike | None = None
    ) -> JournalUndo:
        """Remove what the journal lists (see the module docstring); the manifest then says
        ``final_status``. ``never_inside``: a folder (e.g. the image folder of an export to a
        destination) in which nothing is removed, even if a folder on the way was swapped for a
        link to it. ExportError (run again to finish) when a file cannot be removed."""
        self.close()
        report = JournalUndo(self.dir)
        report.temp_removed = self.remove_temp_files()
        files = [e for e in self.entries if e.op != "mkdir"]
        root = os.path.realpath(never_inside) if never_inside is not None else None
        for n, entry in enumerate(reversed(files), 1):
            try:
                if root is not None and _inside(os.path.realpath(os.path.dirname(entry.path)), root):
                    report.changed_since.append(entry.path)
                elif entry.op == "create":
                    state = self.owns(entry)
                    if state is None:
                        report.already_gone += 1
                    elif state:
                        os.unlink(entry.path)
                        report.removed += 1
                    else:
                        report.changed_since.append(entry.path)
                else:
                    result = self._restore(entry)
                    if result == "restored":
                        report.restored += 1
                    elif result == "original":
                        report.already_original += 1
                    else:
                        report.changed_since.append(entry.path)
            except OSError as e:
                raise ExportError(
                    f"{entry.path}: could not be undone ({describe_error(e)}); run the undo again to finish."
                ) from None
            if progress:
                progress(n, len(files))
        for entry in sorted((e for e in self.entries if e.op == "mkdir"), key=lambda e: len(e.path), reverse=True):
            try:
                os.rmdir(entry.path)  # only when empty
            except OSError:
                pass
        try:
            self.mark(final_status, undone=_now(), undo_left_alone=report.changed_since)
        except OSError as e:
            raise ExportError(
                f"{self.dir / MANIFEST}: the files were undone but the manifest could not be "
                f"marked as {final_status} ({describe_error(e)})."
            ) from None
        return report

    def _restore(self, entry: JournalEntry) -> str:
        """Put a replaced file back: 'restored', 'original' (nothing to do) or 'changed'."""
        f = entry.facts
        backup = self.dir / str(f.get("backup", ""))
        if not os.path.realpath(backup).startswith(os.path.realpath(self.dir) + os.sep):
            return "changed"  # never read a backup from outside the export folder
        if os.path.islink(entry.path):
            return "changed"
        try:
            current = sha256_file(entry.path)
        except FileNotFoundError:
            return "changed"
        if current == f.get("old_sha256"):
            return "original"
        if current != f.get("new_sha256"):
            return "changed"
        data = backup.read_bytes()
        if hashlib.sha256(data).hexdigest() != f.get("old_sha256"):
            raise ExportError(f"{backup}: the backup is damaged; {entry.path} was left as it is.")
        atomic_write(entry.path, data, like=Path(entry.path))
        return "restored"
