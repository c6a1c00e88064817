"""`joyq bench ray`: the Ray path's throughput against the native path's, side by side on one
folder with the same model, device and cores.

Native = :func:`joyq_studio.scoring.embed_paths` (decode workers + the model in this
process); Ray = :func:`joyq_studio.cluster.pipeline.score_with_ray` on a local Ray (or
``--address``), which also hashes every file and writes Parquet shards. Each path scores
N and then 2N images; the **marginal rate** N / (T(2N) - T(N)) leaves out each path's fixed
start-up cost (Ray: starting the model actors, i.e. importing torch and loading the model;
native: starting the decode workers), which is what a job of millions sees. Whole-run
rates at 2N and Ray's start-up are printed too. The runs alternate between the paths so a
machine shared with other jobs loads both alike.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from ..model import describe_device, load_model, pick_device
from ..scoring import embed_paths
from .common import machine_name
from .score import write_jpegs


def bench_ray(args) -> int:
    from ..cluster.pipeline import connect, ray, score_with_ray  # one sentence if Ray is missing

    device = pick_device(args.device)
    spec = args.model or ("so400m-random" if device.type == "cuda" else "tiny")
    model = load_model(spec)
    bs, workers, reps = args.batch_size, args.workers, args.repeats
    print(f"machine: {machine_name(device)}")
    t0 = time.perf_counter()
    if args.address is None and not ray.is_initialized():
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR")
    connect(args.address)
    init_s = time.perf_counter() - t0
    cpus = int(ray.cluster_resources().get("CPU", 0))
    gpus = int(ray.cluster_resources().get("GPU", 0)) if device.type == "cuda" else 0
    print(
        f"model: {spec} ({model.image_size} px), device {describe_device(device)}, batch {bs}, native decode "
        f"workers {workers}; Ray: {cpus} CPUs, {max(gpus, 1)} model actor{'s' if gpus > 1 else ''}; "
        f"ray.init {init_s:.1f} s (once per cluster, not counted); {reps} run(s) of each (median)"
    )
    times: dict[str, list[float]] = {k: [] for k in ("native N", "native 2N", "ray N", "ray 2N")}
    startup: list[float] = []
    with tempfile.TemporaryDirectory(prefix="joyq-bench-ray-") as tmp:
        folder = Path(tmp) / "images"
        write_jpegs(folder, 2 * args.images, (args.size, args.size), distinct=min(args.images, 16))
        paths = sorted(folder.glob("*.jpg"))  # the copies and their few sources
        n = len(paths) // 2
        lists = {}
        for label, chosen in (("N", paths[:n]), ("2N", paths[: 2 * n])):
            lists[label] = Path(tmp) / f"list-{label}.txt"
            lists[label].write_text("".join(f"{p}\n" for p in chosen), encoding="utf-8")
        print(f"images: N = {n} and 2N = {2 * n} JPEGs of {args.size}x{args.size}")
        for _ in embed_paths(model, paths, device, bs, workers):  # warm the page cache
            pass
        for rep in range(reps):
            for label, count in (("N", n), ("2N", 2 * n)):
                t = time.perf_counter()
                for _ in embed_paths(model, paths[:count], device, bs, workers):
                    pass
                times[f"native {label}"].append(time.perf_counter() - t)
                t = time.perf_counter()
                s = score_with_ray(
                    [lists[label]],
                    model,
                    spec,
                    Path(tmp) / f"ray-{rep}-{label}",
                    device=device.type,
                    gpus=gpus,
                    batch_size=bs,
                )
                times[f"ray {label}"].append(time.perf_counter() - t)
                if s.scored != count:
                    raise RuntimeError(f"Ray scored {s.scored} of {count} images")
                startup.append(s.startup_seconds)
                print(
                    f"  run {rep + 1}, {count} images: native {times[f'native {label}'][-1]:.1f} s, "
                    f"Ray {times[f'ray {label}'][-1]:.1f} s (first rows after {s.startup_seconds:.1f} s)"
                )
    med = {k: statistics.median(v) for k, v in times.items()}

    def marginal(path: str) -> float:  # NaN when noise made 2N no slower than N
        extra = med[f"{path} 2N"] - med[f"{path} N"]
        return n / extra if extra > 0.05 * med[f"{path} 2N"] else float("nan")

    rates = {"native": (marginal("native"), 2 * n / med["native 2N"]), "Ray": (marginal("ray"), 2 * n / med["ray 2N"])}
    print(f"\n{'path':<8} {'marginal img/s':>15} {'whole run 2N img/s':>19}")
    for k, (m, whole) in rates.items():
        print(f"{k:<8} {m:>15.1f} {whole:>19.1f}")
    ratio = rates["Ray"][0] / rates["native"][0]
    print(
        f"\nRay / native: marginal {'n/a (too noisy: use more --images)' if ratio != ratio else f'{ratio:.2f}x'}, "
        f"whole run of {2 * n} {rates['Ray'][1] / rates['native'][1]:.2f}x; Ray start-up to first rows "
        f"{statistics.median(startup):.1f} s"
    )
    return 0
