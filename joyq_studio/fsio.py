"""Safe file writing: one atomic write, temporary names that always fit, errors by errno.

Every file the app writes (CSV, captions, manifests, versions, caches) goes through
:func:`atomic_write`: the data lands in a temporary file beside the target, is flushed,
and is renamed over it, so a reader never sees half a file and a crash leaves the old one.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

TEMP_MARK = ".joyq-tmp-"
"""Every temporary file we create has this in its name, so leftovers of a killed run can be
found and removed by the next run (:func:`remove_leftovers`)."""

NAME_MAX = 255  # bytes in one file name on every common file system


def temp_path(path: Path, pid: int | None = None) -> Path:
    """A temporary name beside ``path`` that fits the 255-byte name limit.

    ``.NAME.joyq-tmp-PID`` while it fits, else a hash of the name (a long name must not
    make the export of that one file, or of a whole folder, fail). ``pid``: the name another
    (killed) process used, so its leftover can be found exactly; this process by default.
    """
    suffix = f"{TEMP_MARK}{os.getpid() if pid is None else pid}"
    name = f".{path.name}{suffix}"
    if len(os.fsencode(name)) > NAME_MAX:
        digest = hashlib.sha256(os.fsencode(path.name)).hexdigest()[:24]
        name = f".{digest}{suffix}"
    return path.with_name(name)


def is_temp_name(name: str) -> bool:
    return TEMP_MARK in name and name.startswith(".")


def remove_leftovers(folder: Path, names: list[str] | None = None) -> list[Path]:
    """Remove our temporary files left in ``folder`` by a killed run; returns what was removed.

    Only files whose name carries :data:`TEMP_MARK` and whose process is gone are touched.
    """
    removed: list[Path] = []
    try:
        entries = names if names is not None else os.listdir(folder)
    except OSError:
        return removed
    for name in entries:
        if not is_temp_name(name):
            continue
        pid = name.rsplit(TEMP_MARK, 1)[1]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue  # another running export owns it
        p = folder / name
        try:
            if p.is_file() and not p.is_symlink():
                p.unlink()
                removed.append(p)
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def atomic_write(
    path: str | os.PathLike, data: bytes | Callable[[IO[bytes]], None], like: Path | None = None, fsync: bool = True
) -> None:
    """Write ``data`` (bytes, or a function writing to a binary file) to ``path`` atomically.

    ``like``: an existing file whose mode (and, as root, owner) the new file keeps.
    On any failure the temporary file is removed and ``path`` is as it was.
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        if like is not None:
            copy_owner_and_mode(like, tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write(path, (json.dumps(obj, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))


def copy_owner_and_mode(src: Path, dst: Path) -> None:
    try:
        st = os.stat(src)
        os.chmod(dst, stat.S_IMODE(st.st_mode))
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            os.chown(dst, st.st_uid, st.st_gid)
    except OSError:
        pass  # best effort: the content matters, the mode is a courtesy


_OS_REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the location is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENAMETOOLONG: "the name is too long",
    errno.EISDIR: "it is a folder",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.ENOENT: "no such file or folder",
    errno.ELOOP: "too many levels of symbolic links",
    errno.EIO: "an input/output error (is the disk failing?)",
}

# SQLite primary result codes (sqlite3.Error.sqlite_errorcode & 0xFF)
_SQLITE_REASONS = {
    5: "the database is locked by another program",  # SQLITE_BUSY
    6: "the database is locked by another program",  # SQLITE_LOCKED
    8: "the location is read-only",  # SQLITE_READONLY
    10: "an input/output error (is the disk failing?)",  # SQLITE_IOERR
    11: "the database file is damaged",  # SQLITE_CORRUPT
    13: "the disk is full",  # SQLITE_FULL
    14: "the database file cannot be opened",  # SQLITE_CANTOPEN
    26: "the file is not a JoyQuality Studio database (or is damaged)",  # SQLITE_NOTADB
}


def clip(text: str, limit: int = 200) -> str:
    """A plain string (a path from a user's file) cut to ``limit`` characters for an error line."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shorten(value: Any, limit: int = 80, as_json: bool = False) -> str:
    """``value`` for an error line (its repr, its JSON with ``as_json``, an exception's text),
    cut to ``limit`` characters: a 100 MB JSON string must not be echoed whole."""
    try:
        if isinstance(value, BaseException):
            text = str(value)
        elif as_json:
            text = json.dumps(value, ensure_ascii=False)
        else:
            text = repr(value)
    except (RecursionError, TypeError, ValueError):
        return "a deeply nested value"
    text = " ".join(text[: limit * 4].split())  # one line: an error message may hold newlines
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_error(e: BaseException) -> str:
    """A few words on why a file or database operation failed, decided by errno or the
    SQLite error code (never by searching the message text). No path: the caller names it."""
    if isinstance(e, OSError) and e.errno in _OS_REASONS:
        return _OS_REASONS[e.errno]
    if isinstance(e, sqlite3.Error):
        code = getattr(e, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in _SQLITE_REASONS:
            return _SQLITE_REASONS[code & 0xFF]
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    return str(e) or type(e).__name__
