"""`joyq bench xmp`: XMP star ratings out and in at scale, and the demo model against planted stars.

1. Import: N tiny distinct PNGs, half with a user's sidecar (planted stars), the rest looked
   for embedded XMP/EXIF; ``import-ratings`` time per 1,000 images, median of ``--repeats``.
2. Export: scores planted as stars + noise; plan + apply of ``export --xmp`` (half the
   sidecars modified, half created), then undo (skipped with ``--no-undo``). Time per 1,000
   sidecars, median of ``--repeats`` cycles (each undo puts the folder back byte for byte,
   which is checked).
3. Agreement: the demo folder (``joyq demo``) scored by the shipped demo tower, stars planted
   by how each image was made (clean 5, noise 3, blur 2, low-res 2, JPEG-crushed 1), imported;
   the demo model's agreement with the held-out stars, before and after a quick training
   on the star pairs.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

from ..export.stars import import_star_ratings, star_agreement
from ..export.undo import undo_latest_export
from ..export.xmp import apply_xmp_export, plan_xmp_export
from ..ranking import calibrate_project, save_calibration
from ..store import Project
from ..xmp import set_rating
from .common import machine_name

PLANTED = {"clean": 5, "noise": 3, "blur": 2, "lowres": 2, "jpeg": 1}


def tiny_png(i: int) -> bytes:
    """A valid 1x1 PNG whose colour is ``i`` (so N distinct contents)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    ihdr = (1).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    raw = b"\x00" + i.to_bytes(3, "big")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _snapshot(folder: Path) -> str:
    h = hashlib.sha256()
    for root, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            p = Path(root) / name
            h.update(str(p.relative_to(folder)).encode() + p.read_bytes())
    return h.hexdigest()


def _make_folder(root: Path, n: int, seed: int) -> dict[str, int]:
    """N images (1000 per sub-folder); returns path -> planted stars; half carry a sidecar."""
    rng = np.random.default_rng(seed)
    stars = {}
    for i in range(n):
        d = root / f"d{i // 1000:03d}"
        if i % 1000 == 0:
            d.mkdir(parents=True, exist_ok=True)
        name = f"IMG_{i:06d}.png"
        (d / name).write_bytes(tiny_png(i))
        s = int(rng.integers(1, 6))
        stars[f"{d.name}/{name}"] = s
        if i % 2 == 0:
            (d / (name + ".xmp")).write_bytes(set_rating(None, s))
    return stars


def bench_export_import(n: int, repeats: int, tmp: Path, undo: bool = True) -> None:
    root = tmp / "many"
    t0 = time.perf_counter()
    planted = _make_folder(root, n, 0)
    print(f"made {n} images and {n // 2} sidecars in {time.perf_counter() - t0:.0f} s")
    with Project(root) as project:
        t0 = time.perf_counter()
        project.scan()
        print(f"scan: {time.perf_counter() - t0:.0f} s")
        rng = np.random.default_rng(1)
        digest = dict(project.file_hashes())
        project.save_scores("planted", [(digest[p], s + float(rng.normal(0, 0.7))) for p, s in planted.items()])
        project.set_current_model_key("planted")
        cal, _ = calibrate_project(project, "a", 5)
        save_calibration(project, cal)
        imports = []
        for _ in range(repeats):  # first, while every sidecar is still the user's
            t0 = time.perf_counter()
            rep = import_star_ratings(project)
            imports.append(time.perf_counter() - t0)
        med = statistics.median(imports)
        print(
            f"import-ratings of {n} images ({len(rep.ratings.stars)} rated, {rep.pairs} star pairs), median of "
            f"{repeats}: {med:.1f} s = {med / (n / 1000):.2f} s per 1,000 images"
        )
        before = _snapshot(root) if undo else ""
        plans, applies, undos = [], [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            plan = plan_xmp_export(project, cal, "darktable", keyword=True)
            t1 = time.perf_counter()
            apply_xmp_export(project, plan)
            t2 = time.perf_counter()
            plans.append(t1 - t0)
            applies.append(t2 - t1)
            if undo:
                undo_latest_export(project)
                undos.append(time.perf_counter() - t2)
                assert _snapshot(root) == before, "undo did not restore the folder byte for byte"
        k = len(plan.changes) / 1000
        undo_text = f", undo {statistics.median(undos) / k:.2f} s (byte-exact: checked)" if undos else " (undo not run)"
        print(
            f"export --xmp of {len(plan.changes)} sidecars ({plan.modified} modified, {plan.created} created), "
            f"median of {repeats}: plan {statistics.median(plans) / k:.2f} s, "
            f"write {statistics.median(applies) / k:.2f} s{undo_text} per 1,000 sidecars"
        )


def bench_demo_agreement(count: int, tmp: Path, train: bool) -> None:
    from ..demo import make_demo_folder
    from ..model import load_model
    from ..scoring import score_project

    folder = tmp / "demo"
    make_demo_folder(folder, count=count, seed=0, size=256)
    for p in folder.iterdir():
        kind = p.stem.rsplit("_", 1)[-1]
        if kind in PLANTED:
            (folder / (p.name + ".xmp")).write_bytes(set_rating(None, PLANTED[kind]))
    with Project(folder) as project:
        project.scan()
        score_project(project, load_model("demo"), "cpu", batch_size=16, workers=1)
        rep = import_star_ratings(project)
        ag = rep.agreement
        assert ag is not None
        print(
            f"demo model vs planted stars ({count} demo images, {rep.held_out} held out, {rep.pairs} star pairs "
            f"for training): agreement {ag.value:.1%} on {ag.count} pairs (95% {ag.low:.1%}..{ag.high:.1%})"
        )
        if not train:
            return
        from ..training import TrainConfig, adopt, train_project

        result = train_project(project, TrainConfig(mode="quick", device="cpu"), None, start_spec="demo")
        adopt(project, result.version_id, device="cpu")
        after = star_agreement(project)
        assert after is not None
        print(
            f"after a quick training on the star pairs ({result.version_id}): agreement {after.value:.1%} on "
            f"{after.count} pairs (95% {after.low:.1%}..{after.high:.1%})"
        )


def bench_xmp(args) -> int:
    print(f"machine: {machine_name()}")
    with tempfile.TemporaryDirectory(prefix="joyq-xmp-") as tmp:
        os.environ.setdefault("JOYQ_DATA_DIR", str(Path(tmp) / "data"))
        if args.files:
            bench_export_import(args.files, args.repeats, Path(tmp), not args.no_undo)
        if args.demo:
            bench_demo_agreement(args.demo, Path(tmp), not args.no_train)
    return 0
