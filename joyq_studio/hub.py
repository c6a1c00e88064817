"""Our own download of a model repo into the standard Hugging Face cache, and our own
check of what is cached.

Why not ``snapshot_download``: across library versions it could not be cancelled mid-file,
did not resume, did not verify what it had cached, and reported every failure as "no
connection". Here, plainly over HTTP (the Hub protocol: a file list from
``/api/models/{repo}/revision/{rev}``, ``HEAD /{repo}/resolve/{rev}/{file}`` for the commit
and the ETag - the sha256 of an LFS file, the git blob sha1 of a small one - then GET with
``Range``):

- only the files a model needs (config.json, *.safetensors, a shard index);
- the standard layout (``blobs/{etag}``, ``snapshots/{commit}/{file}`` -> blob, ``refs/{rev}``)
  so transformers and huggingface_hub read it offline afterwards; the library's lock files
  (``.locks/models--.../{etag}.lock``), so two processes never write one blob at once;
- a stopped download leaves ``blobs/{etag}.incomplete``, which the next run continues
  with a Range request; reads are 64 KiB, so a cancel check or Ctrl-C acts within a second;
- every file is hashed against its ETag before it becomes a blob, and a cached model is
  usable only when our own check passes (every weight file present, sizes and hashes
  match), whatever the library version would accept.

The verified state is remembered in ``models--.../.joyq-manifest.json`` (file list, sizes,
hashes, and the size+mtime of each blob when it was last hashed), so a later start does not
rehash 1.7 GB.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import json
import os
import shutil
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import Cancelled, JoyqError

CHUNK = 64 * 1024  # one read: small enough that a cancel check runs many times a second
NEEDED = ("config.json", "*.safetensors", "*.safetensors.index.json")
MANIFEST = ".joyq-manifest.json"
DISK_MARGIN = 200 * 2**20  # keep this much free after a download
TIMEOUT = 20.0  # seconds without a byte before a connection counts as dropped
RETRIES = 8  # resumes in a row without a byte of progress before giving up

Progress = Callable[[int, int], None]  # (bytes done, bytes total) of the weights
Cancel = Callable[[], bool]
Say = Callable[[str], None]


# how to do without the download, in the CLI's words (the app puts its own in place)
SKIP = "pass --model with a local folder or .safetensors file (or --model demo, the small shipped model)"


class HubError(JoyqError):
    """A download or a cached model cannot be used; the sentence names the real cause.
    ``kind``: offline-flag, no-network, dropped, disk-full, not-found, damaged, missing."""

    def __init__(self, message: str, kind: str = "other") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class RemoteFile:
    name: str
    size: int
    etag: str  # sha256 of an LFS file, git blob sha1 of a small one (= the blob's name in the cache)


@dataclass
class Plan:
    repo_id: str
    revision: str
    commit: str
    files: list[RemoteFile]

    @property
    def total(self) -> int:
        return sum(f.size for f in self.files)


@dataclass
class Check:
    """What our completeness check found for a cached repo."""

    repo_id: str
    snapshot: Path | None
    commit: str | None
    size: int = 0
    problems: list[str] = field(default_factory=list)  # one sentence each
    corrupt: list[Path] = field(default_factory=list)  # blobs that fail their hash or size

    @property
    def ok(self) -> bool:
        return self.snapshot is not None and not self.problems


# -- where things are ---------------------------------------------------------------------
def _true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def offline_mode() -> bool:
    return _true("HF_HUB_OFFLINE") or _true("TRANSFORMERS_OFFLINE")


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def cache_root() -> Path:
    """The Hugging Face hub cache, resolved from the environment now (not at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def repo_dir(repo_id: str) -> Path:
    return cache_root() / ("models--" + repo_id.replace("/", "--"))


def needed(name: str) -> bool:
    return any(fnmatch.fnmatch(name, p) for p in NEEDED)


def is_weight(name: str) -> bool:
    return name.endswith(".safetensors")


def format_size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


# -- HTTP -----------------------------------------------------------------------------------
class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # a HEAD's 302 carries the metadata itself
        return None


def _headers() -> dict[str, str]:
    headers = {"User-Agent": "joyq-studio"}
    token = os.environ.get("HF_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _network_error(repo_id: str, e: BaseException) -> HubError:
    """One sentence naming the real cause of a failed request."""
    reason = getattr(e, "reason", e)
    if isinstance(e, urllib.error.HTTPError):
        if e.code in (401, 403, 404):
            return HubError(
                f"{endpoint()} has no model {repo_id} that we may download (HTTP {e.code}); check the name, or {SKIP}.",
                "not-found",
            )
        return HubError(f"{endpoint()} answered HTTP {e.code} for {repo_id}; try again later.")
    if isinstance(reason, socket.gaierror) or isinstance(reason, ConnectionRefusedError):
        return HubError(
            f"There is no connection to {endpoint()} ({reason}), so {repo_id} could not be downloaded; connect "
            f"and retry, or {SKIP}.",
            "no-network",
        )
    return HubError(
        f"The connection to {endpoint()} failed while downloading {repo_id} ({type(reason).__name__}: {reason}); "
        "retry: the download continues where it stopped.",
        "dropped",
    )


def _open(url: str, method: str = "GET", start: int = 0, follow: bool = True):
    req = urllib.request.Request(url, method=method, headers=_headers())
    if start:
        req.add_header("Range", f"bytes={start}-")
    if follow:
        return urllib.request.urlopen(req, timeout=TIMEOUT)
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        return opener.open(req, timeout=TIMEOUT)
    except urllib.error.HTTPError as e:
        if 300 <= e.code < 400:
            return e  # the redirect's own headers
        raise


def _check_online(repo_id: str) -> None:
    if offline_mode():
        raise HubError(
            f"Downloads are switched off on this computer (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set), so "
            f"{repo_id} cannot be downloaded; unset it and retry, or {SKIP}.",
            "offline-flag",
        )


def fetch_plan(repo_id: str, revision: str = "main") -> Plan:
    """The commit and the needed files (size, ETag) of a repo, from the Hub."""
    _check_online(repo_id)
    base = endpoint()
    quoted_rev = urllib.parse.quote(revision, safe="")
    try:
        with _open(f"{base}/api/models/{repo_id}/revision/{quoted_rev}") as r:
            info = json.loads(r.read())
        names = [s["rfilename"] for s in info.get("siblings", []) if needed(s.get("rfilename", ""))]
        commit = str(info["sha"])
        files = []
        for name in names:
            r = _open(f"{base}/{repo_id}/resolve/{commit}/{urllib.parse.quote(name)}", "HEAD", follow=False)
            h = r.headers
            etag = (h.get("X-Linked-Etag") or h.get("ETag") or "").strip('"').removeprefix("W/").strip('"')
            size = int(h.get("X-Linked-Size") or h.get("Content-Length") or 0)
            r.close()
            files.append(RemoteFile(name, size, etag))
    except HubError:
        raise
    except (urllib.error.URLError, OSError, ValueError, KeyError) as e:
        raise _network_error(repo_id, e) from None
    if not any(is_weight(f.name) for f in files) or not any(f.name == "config.json" for f in files):
        raise HubError(
            f"{repo_id} at {revision} has no config.json and .safetensors weights, so it is not a model we can load."
        )
    return Plan(repo_id, revision, commit, files)


# -- hashing --------------------------------------------------------------------------------
def file_matches(path: Path, etag: str, cancel: Cancel | None = None) -> bool:
    size = path.stat().st_size
    if len(etag) == 64:
        h = hashlib.sha256()
    elif len(etag) == 40:
        h = hashlib.sha1(b"blob %d\0" % size)
    else:
        return True  # an ETag that is no content hash: size is all we can check
    with open(path, "rb") as f:
        while block := f.read(4 * 2**20):
            if cancel and cancel():
                raise Cancelled("Verification cancelled.")
            h.update(block)
    return h.hexdigest() == etag


# -- the manifest of what we downloaded and verified -----------------------------------------
def _read_manifest(repo_id: str) -> dict:
    try:
        data = json.loads((repo_dir(repo_id) / MANIFEST).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_manifest(repo_id: str, data: dict) -> None:
    path = repo_dir(repo_id) / MANIFEST
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


# -- download -------------------------------------------------------------------------------
def _lock(repo_id: str, etag: str):
    from filelock import FileLock  # huggingface_hub's own dependency; its lock path, too

    path = cache_root() / ".locks" / repo_dir(repo_id).name / f"{etag}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path))


def _disk_full(path: Path) -> HubError:
    free = shutil.disk_usage(path.parent).free if path.parent.exists() else 0
    return HubError(
        f"The disk is full: writing {path} failed ({format_size(free)} free); free some space or point HF_HOME "
        "at a larger disk, then retry (the download continues where it stopped).",
        "disk-full",
    )


def _link(repo_id: str, commit: str, f: RemoteFile) -> None:
    snap = repo_dir(repo_id) / "snapshots" / commit / f.name
    snap.parent.mkdir(parents=True, exist_ok=True)
    blob = repo_dir(repo_id) / "blobs" / f.etag
    if snap.is_symlink() or snap.exists():
        snap.unlink()
    try:
        snap.symlink_to(os.path.relpath(blob, snap.parent))
    except OSError:  # no symlinks (Windows without developer mode): the library copies too
        shutil.copyfile(blob, snap)


def _fetch_blob(plan: Plan, f: RemoteFile, on_bytes: Callable[[int], None], cancel: Cancel | None) -> None:
    """Download one file into blobs/{etag}, continuing its .incomplete with a Range request;
    a dropped connection is resumed until RETRIES tries in a row bring no new byte."""
    blobs = repo_dir(plan.repo_id) / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    part = blobs / (f.etag + ".incomplete")
    url = f"{endpoint()}/{plan.repo_id}/resolve/{plan.commit}/{urllib.parse.quote(f.name)}"
    stalls = 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        if have > f.size:  # not a prefix of this file: start again
            part.unlink()
            have = 0
        if have == f.size and (have or part.exists()):
            break
        try:
            with _open(url, start=have) as r:
                if have and r.status != 206:  # the server ignored the Range: start from 0
                    have = 0
                _copy(r, part, have, on_bytes, cancel)
            error: BaseException = ConnectionError("the connection closed early")
        except urllib.error.HTTPError as e:
            raise _network_error(plan.repo_id, e) from None
        except OSError as e:  # URLError, timeouts and resets are OSErrors too
            if e.errno == errno.ENOSPC:
                raise _disk_full(part) from None
            error = e
        now = part.stat().st_size if part.exists() else 0
        if now >= f.size:
            continue
        stalls = 0 if now > have else stalls + 1
        if stalls >= RETRIES:
            reason = getattr(error, "reason", None)
            if now == 0 and isinstance(reason, (ConnectionRefusedError, socket.gaierror)):
                raise _network_error(plan.repo_id, error)
            raise _dropped(plan, f, now, error)
        time.sleep(min(0.1 * stalls, 1.0))
    if not file_matches(part, f.etag, cancel):
        part.unlink()
        raise HubError(
            f"{f.name} of {plan.repo_id} arrived damaged (its hash does not match the Hub's ETag); "
            "the partial file was deleted, retry the download.",
            "damaged",
        )
    os.replace(part, blobs / f.etag)


def _dropped(plan: Plan, f: RemoteFile, have: int, e: BaseException) -> HubError:
    return HubError(
        f"The server dropped the connection while sending {f.name} of {plan.repo_id} "
        f"({format_size(have)} of {format_size(f.size)} kept; {type(e).__name__}: {e}); retry: the download "
        "continues where it stopped.",
        "dropped",
    )


def _copy(r, part: Path, have: int, on_bytes: Callable[[int], None], cancel: Cancel | None) -> None:
    with open(part, "r+b" if have else "wb") as out:
        out.seek(have)
        out.truncate()
        while True:
            if cancel and cancel():
                raise Cancelled("Download cancelled; the bytes already received are kept for the next try.")
            block = r.read(CHUNK)
            if not block:
                return
            out.write(block)
            have += len(block)
            on_bytes(have)


def download(
    repo_id: str,
    revision: str = "main",
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    say: Say | None = None,
    plan: Plan | None = None,
) -> Path:
    """Download what ``repo_id`` needs into the cache (resuming, verified); the snapshot folder.

    ``progress(done, total)`` counts the bytes of every needed file (the weights dominate),
    including what is already on disk; ``say`` gets the sentence before the download.
    """
    plan = plan or fetch_plan(repo_id, revision)
    root = repo_dir(repo_id)
    blobs = root / "blobs"
    done = 0
    todo = []
    for f in plan.files:
        blob = blobs / f.etag
        if blob.exists() and blob.stat().st_size == f.size:
            done += f.size
        else:
            todo.append(f)
    on_disk = sum(
        (blobs / (f.etag + ".incomplete")).stat().st_size for f in todo if (blobs / (f.etag + ".incomplete")).exists()
    )
    missing = sum(f.size for f in todo) - on_disk
    if todo:
        probe = root if root.exists() else cache_root()
        while not probe.exists():
            probe = probe.parent
        free = shutil.disk_usage(probe).free
        if say:
            resume = f", continuing after {format_size(on_disk)} already here" if on_disk else ""
            say(
                f"Downloading {repo_id} ({format_size(plan.total)}{resume}) from {endpoint()} into {root} "
                f"({format_size(free)} free). Ctrl-C stops it and a rerun continues; to skip it, use "
                "--model demo (the small shipped model) or --model with a local checkpoint."
            )
        if free < missing + DISK_MARGIN:
            raise HubError(
                f"Not enough disk space for {repo_id}: it needs {format_size(missing)} more in {root} but only "
                f"{format_size(free)} is free; free some space or point HF_HOME at a larger disk.",
                "disk-full",
            )
    total = plan.total
    manifest = _read_manifest(repo_id) if root.exists() else {}
    for f in plan.files:
        blob = blobs / f.etag
        if f in todo:
            with _lock(repo_id, f.etag):
                if not (blob.exists() and blob.stat().st_size == f.size):  # another process may have finished it

                    def on_bytes(n: int, base: int = done) -> None:
                        if progress:
                            progress(base + n, total)

                    _fetch_blob(plan, f, on_bytes, cancel)
            done += f.size
            if progress:
                progress(done, total)
            manifest.setdefault("verified", {})[f.etag] = _stamp(blob)
        _link(repo_id, plan.commit, f)
    refs = root / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    (refs / revision).write_text(plan.commit, encoding="utf-8")
    manifest.setdefault("commits", {})[plan.commit] = {f.name: [f.size, f.etag] for f in plan.files}
    _write_manifest(repo_id, manifest)
    if progress:
        progress(total, total)
    return root / "snapshots" / plan.commit


# -- what is cached -------------------------------------------------------------------------
def local_snapshot(repo_id: str, revision: str = "main") -> tuple[str | None, Path | None]:
    """(commit, snapshot folder) that ``revision`` points at in the cache, or (None, None)."""
    root = repo_dir(repo_id)
    ref = root / "refs" / revision
    commit = None
    if ref.is_file():
        commit = ref.read_text(encoding="utf-8").strip()
    elif (root / "snapshots" / revision).is_dir():
        commit = revision
    if not commit or not (root / "snapshots" / commit).is_dir():
        return None, None
    return commit, root / "snapshots" / commit


def check(repo_id: str, revision: str = "main", full: bool = False, cancel: Cancel | None = None) -> Check:
    """Our completeness check: config.json and every weight file present, each blob the size
    and hash its name (the ETag) promises. Hashes are computed once per blob and remembered
    (size + mtime); ``full`` rehashes everything."""
    commit, snap = local_snapshot(repo_id, revision)
    result = Check(repo_id, snap, commit)
    if snap is None:
        result.problems.append(f"{repo_id} is not downloaded yet.")
        return result
    manifest = _read_manifest(repo_id)
    expected = manifest.get("commits", {}).get(commit)
    names = sorted(expected) if isinstance(expected, dict) else _names_in(snap)
    if "config.json" not in names:
        names.append("config.json")
    if not any(is_weight(n) for n in names):
        result.problems.append(f"{snap} holds no .safetensors weights (an incomplete download).")
    verified = manifest.setdefault("verified", {})
    changed = False
    for name in names:
        path = snap / name
        if not path.exists():
            where = f" (a link to the missing {os.readlink(path)})" if path.is_symlink() else ""
            result.problems.append(f"{path} is missing{where}.")
            continue
        blob = path.resolve()
        etag = expected[name][1] if isinstance(expected, dict) and name in expected else blob.name
        size = expected[name][0] if isinstance(expected, dict) and name in expected else None
        result.size += blob.stat().st_size
        if size is not None and blob.stat().st_size != size:
            result.problems.append(
                f"{blob} ({name}) has {blob.stat().st_size} bytes instead of {size}: damaged; "
                f"delete it (or run `joyq model repair {repo_id}`) and download again."
            )
            result.corrupt.append(blob)
            continue
        if not full and verified.get(blob.name) == _stamp(blob):
            continue
        if file_matches(blob, etag, cancel):
            verified[blob.name] = _stamp(blob)
            changed = True
        else:
            result.problems.append(
                f"{blob} ({name}) does not match its hash: damaged; delete it "
                f"(or run `joyq model repair {repo_id}`) and download again."
            )
            result.corrupt.append(blob)
    if changed and repo_dir(repo_id).is_dir():
        try:
            _write_manifest(repo_id, manifest)
        except OSError:  # a read-only cache: we simply hash again next time
            pass
    return result


def _names_in(snap: Path) -> list[str]:
    """Files a snapshot we did not download should hold: what is there, plus the shards
    its index names."""
    names = sorted(p.name for p in snap.iterdir() if needed(p.name))
    for index in [n for n in names if n.endswith(".index.json")]:
        try:
            weight_map = json.loads((snap / index).read_text(encoding="utf-8")).get("weight_map", {})
            names += sorted(set(weight_map.values()) - set(names))
        except (OSError, ValueError, AttributeError):
            pass
    return names


def ensure(
    repo_id: str,
    local_only: bool = False,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    say: Say | None = None,
) -> Path:
    """The snapshot folder of a complete, verified cached model; downloads what is missing
    unless ``local_only`` (or offline mode). A damaged cached file is an error naming it."""
    result = check(repo_id)
    if result.ok:
        assert result.snapshot is not None
        return result.snapshot
    if result.corrupt:
        raise HubError(result.problems[0], "damaged")
    if local_only:
        raise HubError(result.problems[0], "missing")
    return download(repo_id, progress=progress, cancel=cancel, say=say)


@dataclass
class Cached:
    repo_id: str
    commit: str | None
    size: int
    complete: bool
    leftovers: int  # bytes of .incomplete files


def list_cached() -> list[Cached]:
    """Every model repo in the cache with a config.json or a weight file."""
    out: list[Cached] = []
    root = cache_root()
    if not root.is_dir():
        return out
    for d in sorted(root.glob("models--*")):
        repo_id = d.name[len("models--") :].replace("--", "/", 1)
        commit, snap = local_snapshot(repo_id)
        if snap is None or not any(needed(p.name) for p in snap.iterdir()):
            if not list((d / "blobs").glob("*.incomplete")):
                continue
        leftovers = sum(p.stat().st_size for p in (d / "blobs").glob("*.incomplete"))
        size = sum(p.stat().st_size for p in (d / "blobs").iterdir() if p.is_file()) if (d / "blobs").is_dir() else 0
        complete = bool(snap) and not _quick_problems(repo_id)
        out.append(Cached(repo_id, commit, size, complete, leftovers))
    return out


def _quick_problems(repo_id: str) -> list[str]:
    """Presence and size only (no hashing): for listings."""
    commit, snap = local_snapshot(repo_id)
    if snap is None:
        return ["not downloaded"]
    expected = _read_manifest(repo_id).get("commits", {}).get(commit)
    names = sorted(expected) if isinstance(expected, dict) else _names_in(snap)
    problems = [n for n in names if not (snap / n).exists()]
    if "config.json" not in names or not any(is_weight(n) for n in names):
        problems.append("no config.json or weights")
    return problems


def remove(repo_id: str) -> int:
    """Delete a repo's cache folder (and its locks); bytes freed."""
    root = repo_dir(repo_id)
    if not root.exists():
        raise HubError(f"{repo_id} is not in the cache ({cache_root()}).")
    freed = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    shutil.rmtree(root)
    shutil.rmtree(cache_root() / ".locks" / root.name, ignore_errors=True)
    return freed


def repair(repo_id: str, cancel: Cancel | None = None) -> list[Path]:
    """Delete damaged blobs (and the snapshot links to them) and leftover .incomplete files of
    files the snapshot no longer needs; a later download fetches them again. Returns what was deleted."""
    result = check(repo_id, full=True, cancel=cancel)
    deleted: list[Path] = []
    root = repo_dir(repo_id)
    for blob in result.corrupt:
        for link in (root / "snapshots").rglob("*"):
            if link.is_symlink() and link.resolve() == blob:
                link.unlink()
                deleted.append(link)
        blob.unlink(missing_ok=True)
        deleted.append(blob)
    manifest = _read_manifest(repo_id)
    wanted = {etag for files in manifest.get("commits", {}).values() for _size, etag in files.values()}
    for part in (root / "blobs").glob("*.incomplete") if (root / "blobs").is_dir() else []:
        if part.name.removesuffix(".incomplete") not in wanted:
            part.unlink()
            deleted.append(part)
    return deleted
