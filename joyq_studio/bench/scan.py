"""`joyq bench scan`: a rescan of an unchanged folder of N files."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from ..store import Project
from .common import machine_name


def bench_scan(args) -> int:

    with tempfile.TemporaryDirectory(prefix="joyq-scan-") as tmp:
        root = Path(args.dir) if args.dir else Path(tmp) / "images"
        root.mkdir(parents=True, exist_ok=True)
        per_dir = 1000
        for i in range(args.files):
            d = root / f"d{i // per_dir:04d}"
            if i % per_dir == 0:
                d.mkdir(exist_ok=True)
            (d / f"{i:07d}.jpg").write_bytes(i.to_bytes(8, "little"))  # distinct tiny 'images'
        os.environ.setdefault("JOYQ_DATA_DIR", str(Path(tmp) / "data"))
        with Project(root) as project:
            t0 = time.perf_counter()
            first = project.scan()
            first_s = time.perf_counter() - t0
            rescans = []
            for _ in range(3):
                t0 = time.perf_counter()
                r = project.scan()
                rescans.append(time.perf_counter() - t0)
                assert r.new == r.changed == 0
    print(f"machine: {machine_name()}")
    print(
        f"{args.files} files: first scan (hash + header of every file) {first_s:.1f} s; "
        f"unchanged rescan median {statistics.median(rescans):.2f} s (of {len(rescans)})"
    )
    print(f"({first.total} files seen, {len(first.unreadable)} not images)")
    return 0
