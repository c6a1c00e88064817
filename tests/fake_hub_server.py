"""A local server speaking the part of the Hugging Face Hub protocol that downloads use.

- ``GET /api/models/{repo}/revision/{rev}``: ``sha`` (the commit) and ``siblings`` with sizes
  and, for LFS files, ``lfs.sha256``;
- ``HEAD|GET /{repo}/resolve/{rev}/{file}``: a small (git) file is served directly with
  ``ETag`` = its git blob sha1; an LFS file answers 302 to ``/cdn/{sha256}`` with
  ``X-Linked-Etag`` (the sha256) and ``X-Linked-Size``, as the Hub does; every answer
  carries ``X-Repo-Commit``;
- ``GET /cdn/{sha256}`` honours ``Range: bytes=N-`` (206).

Knobs for tests: ``drop_after`` (close every GET of a weight file after that many bytes),
``delay`` (seconds of sleep per ``chunk`` sent, so a download can be killed midway) and the
counters ``bytes_sent`` / ``ranges`` (what was fetched, to prove a resume).

Run alone: ``python tests/fake_hub_server.py FOLDER REPO_ID`` serves a save_pretrained
folder under REPO_ID and prints its endpoint.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CHUNK = 64 * 1024
LFS_SUFFIXES = (".safetensors", ".bin", ".pt")


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, tuple[str, dict[str, bytes]]] = {}  # repo -> (commit, files)
        self.drop_after: int | None = None
        self.delay = 0.0
        self.chunk = CHUNK  # bytes per write (smaller = less in flight when a client dies)
        self.bytes_sent = 0
        self.ranges: list[int] = []  # start offset of every weight GET
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add_repo(self, repo_id: str, files: dict[str, bytes], commit: str | None = None) -> str:
        commit = commit or hashlib.sha1(repo_id.encode() + b"".join(sorted(files.values()))).hexdigest()
        self.repos[repo_id] = (commit, dict(files))
        return commit

    def add_folder(self, repo_id: str, folder: Path) -> str:
        return self.add_repo(repo_id, {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()})

    def blob(self, sha256: str) -> bytes | None:
        for _commit, files in self.repos.values():
            for name, data in files.items():
                if name.endswith(LFS_SUFFIXES) and hashlib.sha256(data).hexdigest() == sha256:
                    return data
        return None

    def start(self) -> FakeHub:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def _send(self, code: int, headers: dict[str, str], body: bytes = b"") -> None:
            self.send_response(code)
            for k, v in headers.items():
                self.send_header(k, v)
            if "Content-Length" not in headers:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD" and body:
                self.wfile.write(body)

        def _not_found(self, what: str) -> None:
            self._send(404, {"X-Error-Code": "RepoNotFound", "Content-Type": "text/plain"}, what.encode())

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path.startswith("/api/models/"):
                return self._api(path[len("/api/models/") :])
            if path.startswith("/cdn/"):
                return self._cdn(path[len("/cdn/") :])
            if "/resolve/" in path:
                repo, _, rest = path.lstrip("/").partition("/resolve/")
                _rev, _, name = rest.partition("/")
                return self._resolve(repo, name)
            self._not_found(path)

        def _api(self, rest: str) -> None:
            repo, _, _rev = rest.partition("/revision/")
            if repo not in hub.repos:
                return self._not_found(repo)
            commit, files = hub.repos[repo]
            siblings = []
            for name, data in files.items():
                item: dict = {"rfilename": name, "size": len(data)}
                if name.endswith(LFS_SUFFIXES):
                    item["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
                siblings.append(item)
            body = json.dumps({"id": repo, "sha": commit, "siblings": siblings}).encode()
            self._send(200, {"Content-Type": "application/json"}, body)

        def _resolve(self, repo: str, name: str) -> None:
            if repo not in hub.repos:
                return self._not_found(repo)
            commit, files = hub.repos[repo]
            if name not in files:
                return self._send(404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit})
            data = files[name]
            if name.endswith(LFS_SUFFIXES):
                sha = hashlib.sha256(data).hexdigest()
                return self._send(
                    302,
                    {
                        "Location": f"/cdn/{sha}",
                        "X-Repo-Commit": commit,
                        "X-Linked-Etag": f'"{sha}"',
                        "X-Linked-Size": str(len(data)),
                        "ETag": f'"{git_blob_sha1(data)}"',
                    },
                )
            self._send(
                200,
                {"X-Repo-Commit": commit, "ETag": f'"{git_blob_sha1(data)}"', "Content-Type": "application/json"},
                data,
            )

        def _cdn(self, sha: str) -> None:
            data = hub.blob(sha)
            if data is None:
                return self._not_found(sha)
            start = 0
            rng = self.headers.get("Range", "")
            if rng.startswith("bytes="):
                start = int(rng[len("bytes=") :].split("-")[0] or 0)
            code = 206 if rng else 200
            headers = {"Content-Length": str(len(data) - start), "ETag": f'"{sha}"', "Accept-Ranges": "bytes"}
            if rng:
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            self.send_response(code)
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            if self.command == "HEAD":
                return
            with hub.lock:
                hub.ranges.append(start)
            sent = 0
            pos = start
            try:
                while pos < len(data):
                    piece = data[pos : pos + hub.chunk]
                    if hub.drop_after is not None and sent + len(piece) > hub.drop_after:
                        piece = piece[: hub.drop_after - sent]
                        self.wfile.write(piece)
                        with hub.lock:
                            hub.bytes_sent += len(piece)
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(2)  # the server drops the connection mid-file
                        return
                    self.wfile.write(piece)
                    sent += len(piece)
                    pos += len(piece)
                    with hub.lock:
                        hub.bytes_sent += len(piece)
                    if hub.delay:
                        time.sleep(hub.delay)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

    return Handler


if __name__ == "__main__":
    hub = FakeHub()
    hub.add_folder(sys.argv[2], Path(sys.argv[1]))
    if len(sys.argv) > 3:
        hub.delay = float(sys.argv[3])
    hub.start()
    print(hub.endpoint, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        hub.stop()
