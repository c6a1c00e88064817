"""`joyq model download|list|remove|verify|repair`: the Hugging Face cache, through hub.py."""

from __future__ import annotations

import sys
import time

from .. import hub
from ..console import EXIT_FAILED_FILES, EXIT_OK, format_seconds
from ..settings import DEFAULT_MODEL


class ByteProgress:
    """Bytes of a download on stderr: one line redrawn in place on a terminal; in a log, a
    line every few seconds (so a redirected 1.7 GB download still shows it is alive)."""

    def __init__(self, stream=None, every: float = 5.0):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = 0.2 if self.tty else every
        self.t0 = time.monotonic()
        self.last = 0.0
        self.first: int | None = None

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = done  # bytes already on disk do not count toward the rate
        final = done >= total
        if not final and now - self.last < self.every:
            return
        self.last = now
        rate = (done - self.first) / max(now - self.t0, 1e-6)
        eta = (total - done) / rate if rate > 0 else 0.0
        text = (
            f"downloading {hub.format_size(done)} of {hub.format_size(total)} "
            f"({100 * done / max(total, 1):5.1f}%)  {hub.format_size(rate)}/s  ETA {format_seconds(eta)}"
        )
        self.stream.write(("\r" if self.tty else "") + text + ("" if self.tty and not final else "\n"))
        self.stream.flush()


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def looks_like_repo(spec: str) -> bool:
    from pathlib import Path

    return spec.count("/") == 1 and not spec.startswith((".", "/", "~")) and not Path(spec).expanduser().exists()


def ensure_downloaded(spec: str) -> None:
    """Before loading a Hub model: download what is missing, saying so first, with byte progress."""
    if looks_like_repo(spec):
        hub.ensure(spec, progress=ByteProgress(), say=say)


def cmd_download(args) -> int:
    repo = args.repo or DEFAULT_MODEL
    path = hub.ensure(repo, progress=ByteProgress(), say=say)
    print(f"{repo}: complete and verified in {path}")
    return EXIT_OK


def cmd_list(args) -> int:
    rows = hub.list_cached()
    if not rows:
        print(f"no models in {hub.cache_root()}")
        return EXIT_OK
    print(f"models in {hub.cache_root()}:")
    for c in rows:
        state = "complete" if c.complete else "INCOMPLETE"
        extra = f", {hub.format_size(c.leftovers)} of a stopped download" if c.leftovers else ""
        print(f"  {c.repo_id}  {hub.format_size(c.size)}  revision {(c.commit or '-')[:12]}  {state}{extra}")
    return EXIT_OK


def cmd_verify(args) -> int:
    repo = args.repo or DEFAULT_MODEL
    result = hub.check(repo, full=True)
    if result.ok:
        print(f"{repo}: complete, every file matches its hash ({hub.format_size(result.size)}, {result.snapshot})")
        return EXIT_OK
    for problem in result.problems:
        print(problem)
    return EXIT_FAILED_FILES


def cmd_repair(args) -> int:
    repo = args.repo or DEFAULT_MODEL
    deleted = hub.repair(repo)
    for path in deleted:
        print(f"deleted {path}")
    if not deleted:
        print(f"{repo}: nothing damaged to delete")
    if args.no_download:
        return EXIT_OK
    path = hub.ensure(repo, progress=ByteProgress(), say=say)
    print(f"{repo}: complete and verified in {path}")
    return EXIT_OK


def cmd_remove(args) -> int:
    freed = hub.remove(args.repo)
    print(f"removed {args.repo} ({hub.format_size(freed)} freed)")
    return EXIT_OK


def register(sub) -> None:
    mp = sub.add_parser("model", help="download, list, verify, repair or remove cached Hugging Face models")
    msub = mp.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    repo_help = f"Hugging Face repo id (default {DEFAULT_MODEL})"
    sp = msub.add_parser(
        "download", help="download a model into the Hugging Face cache (resumes a stopped download, verifies hashes)"
    )
    sp.add_argument("repo", nargs="?", help=repo_help)
    sp.set_defaults(handler="joyq_studio.cli.model:cmd_download")
    sp = msub.add_parser("list", help="cached models: size, revision, complete or not")
    sp.set_defaults(handler="joyq_studio.cli.model:cmd_list")
    sp = msub.add_parser("verify", help="hash every file of a cached model against the Hub's sha256")
    sp.add_argument("repo", nargs="?", help=repo_help)
    sp.set_defaults(handler="joyq_studio.cli.model:cmd_verify")
    sp = msub.add_parser(
        "repair", help="delete damaged files and leftovers of a cached model, then download them again"
    )
    sp.add_argument("repo", nargs="?", help=repo_help)
    sp.add_argument("--no-download", action="store_true", help="only delete, do not download again")
    sp.set_defaults(handler="joyq_studio.cli.model:cmd_repair")
    sp = msub.add_parser("remove", help="delete a model from the Hugging Face cache")
    sp.add_argument("repo", help="Hugging Face repo id")
    sp.set_defaults(handler="joyq_studio.cli.model:cmd_remove")
