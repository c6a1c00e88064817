"""`joyq bench ...`: speed measurements, printed with the machine's name.

Speed claims live here, never in timed unit tests. Each measurement is repeated and the
median reported; compared variants run side by side in the same process.
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from .demo import draw_scene
from .images import normalize
from .model import describe_device, load_model, pick_device
from .scoring import _mp_context, embed_paths


def machine_name(device: torch.device | None = None) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    text = f"{platform.node()}: {os.cpu_count()} cores, {cpu}"
    if device is not None and device.type == "cuda":
        text += f", GPU {describe_device(device)}"
    return text


def median_rate(fn, count: int, repeats: int) -> float:
    """Median items/s over ``repeats`` timed runs of fn() that each process ``count`` items."""
    rates = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        rates.append(count / (time.perf_counter() - t0))
    return statistics.median(rates)


def write_jpegs(folder: Path, count: int, size: tuple[int, int], distinct: int = 4) -> list[Path]:
    """``count`` JPEG files of ``size``; a few distinct scenes, copied, keep generation fast."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    blobs = []
    for k in range(min(distinct, count)):
        path = folder / f"src{k}.jpg"
        draw_scene(rng, size).save(path, "JPEG", quality=92)
        blobs.append(path.read_bytes())
    paths = []
    for i in range(count):
        p = folder / f"img{i:05d}.jpg"
        p.write_bytes(blobs[i % len(blobs)])
        paths.append(p)
    return paths


class _BaselineDataset(Dataset):
    """Mirrors the original score-images.py: PIL resize and float normalisation in the workers."""

    def __init__(self, paths, size):
        self.paths, self.size = paths, size

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        img = Image.open(self.paths[i]).convert("RGB").resize((self.size, self.size), Image.Resampling.BICUBIC)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return (x - 0.5) / 0.5


def baseline_score(model, paths, device, batch_size, workers) -> None:
    """fp32 weights under bf16 autocast (CUDA), float tensors across the process boundary."""
    loader = DataLoader(_BaselineDataset([str(p) for p in paths], model.image_size), batch_size=batch_size,
                        num_workers=workers, multiprocessing_context=_mp_context() if workers else None)
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        for x in loader:
            model(x.to(device)).float().cpu()


def bench_score(args) -> int:
    device = pick_device(args.device)
    spec = args.model or ("so400m-random" if device.type == "cuda" else "tiny")
    model = load_model(spec)
    n, bs, workers, reps = args.images, args.batch_size, args.workers, args.repeats
    print(f"machine: {machine_name(device)}")
    print(f"model: {spec} ({model.image_size} px, width {model.embed_dim}), device {describe_device(device)}, "
          f"batch {bs}, workers {workers}, {reps} repeats (median)")

    fp32_model = load_model(spec).to(device).eval()  # the baseline keeps fp32 weights
    results: dict[str, float] = {}

    # Model only: uint8 tensors already on the device.
    from .scoring import prepare_for_inference

    ours, forward, dtype = prepare_for_inference(model, device)
    synthetic = torch.randint(0, 256, (bs, 3, model.image_size, model.image_size), dtype=torch.uint8, device=device)
    steps = max(2, n // bs)

    def model_only():
        with torch.inference_mode():
            for _ in range(steps):
                forward(normalize(synthetic, dtype)).float().cpu()

    model_only()  # warm-up
    results["model-only"] = median_rate(model_only, steps * bs, reps)

    with tempfile.TemporaryDirectory(prefix="joyq-bench-") as tmp:
        sizes = (("512px", (512, 512), n), ("1MP", (1152, 864), n), ("12MP", (4000, 3000), max(bs, n // 4)))
        for label, size, count in sizes:
            paths = write_jpegs(Path(tmp) / label, count, size)[: count]

            def run_ours():
                for _ in embed_paths(ours, paths, device, bs, workers):
                    pass

            def run_baseline():
                baseline_score(fp32_model, paths, device, bs, workers)

            run_ours()  # warm the page cache and the workers' imports once
            results[f"end-to-end {label}"] = median_rate(run_ours, count, reps)
            results[f"baseline {label}"] = median_rate(run_baseline, count, reps)

    print(f"\n{'measurement':<22} {'images/s':>10}")
    for k, v in results.items():
        print(f"{k:<22} {v:>10.1f}")
    mo = results["model-only"]
    print("\nratios:")
    for label, _, _ in sizes:
        e2e, base = results[f"end-to-end {label}"], results[f"baseline {label}"]
        print(f"  end-to-end {label} / model-only = {e2e / mo:.2f};  ours / baseline at {label} = {e2e / base:.2f}x")
    return 0


def bench_scan(args) -> int:
    from .store import Project

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
    print(f"{args.files} files: first scan (hash + header of every file) {first_s:.1f} s; "
          f"unchanged rescan median {statistics.median(rescans):.2f} s (of {len(rescans)})")
    print(f"({first.total} files seen, {len(first.unreadable)} not images)")
    return 0


def bench_train_quick(args) -> int:
    """The reference personal recipe (20k samples, batch 256, onecycle, lr 0.008) on
    ``--pairs`` pairs of cached ``--dim``-d embeddings, end to end including evaluations."""
    from .training import EvalSet, PairData, default_config, prepare_splits, train_quick

    rng = np.random.default_rng(0)
    n_items, dim = max(2, args.pairs // 3), args.dim
    emb = rng.normal(size=(n_items, dim)).astype(np.float32)
    true = emb @ rng.normal(size=dim)
    a = rng.integers(0, n_items, args.pairs)
    b = (a + rng.integers(1, n_items, args.pairs)) % n_items
    y = (true[a] > true[b]).astype(float)
    keys = [str(i) for i in range(n_items)]
    split = np.where(rng.random(args.pairs) < 0.1, "test", "train").astype(object)
    data = PairData(keys, [Path(k) for k in keys], a, b, y, split, "synthetic")
    cfg = default_config(args.pairs, "quick", total_samples=20_000, batch_size=256, lr=0.008, schedule="onecycle",
                         warmup_samples=1500)
    times, acc = [], 0.0
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        tr, va, te = prepare_splits(data, cfg)
        ta, tb, ty = data.subset(te)
        es = EvalSet(ta, tb, ty, np.unique(np.concatenate([ta, tb])))
        head = torch.nn.Linear(dim, 1)
        _, history, _, after, _ = train_quick(head, emb, data, tr, va, es, {}, cfg)
        times.append(time.perf_counter() - t0)
        acc = after["accuracy"]
    print(f"machine: {machine_name()}")
    print(f"quick finetune, {args.pairs} pairs x {dim}-d, 20k samples, batch 256, onecycle: "
          f"{len(history) - 1} steps, median {statistics.median(times):.2f} s of {len(times)} "
          f"(min {min(times):.2f} s); held-out accuracy {acc:.3f}")
    return 0


def bench_train_full(args) -> int:
    """Full-finetune throughput (pairs/s) and peak GPU memory per device batch, with and
    without gradient checkpointing: forward + backward + AdamW step, bf16 autocast on CUDA."""
    from .training import _pair_loss

    device = pick_device(args.device)
    spec = args.model or ("so400m-random" if device.type == "cuda" else "tiny")
    print(f"machine: {machine_name(device)}")
    print(f"model: {spec}, device {describe_device(device)}, {args.steps} timed steps per setting (median)")
    print(f"{'device batch':>12} {'checkpointing':>14} {'pairs/s':>9} {'peak GiB':>9}")
    for ckpt in (False, True):
        for pairs in args.device_batches:
            model = load_model(spec).to(device).train()
            if ckpt:
                model.set_checkpointing(True)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
            size = model.image_size
            x = torch.randint(0, 256, (2 * pairs, 3, size, size), dtype=torch.uint8, device=device)
            y = torch.ones(pairs, device=device)
            amp = dict(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

            def step():
                with torch.autocast(**amp):
                    s = model(normalize(x)).float()
                loss = _pair_loss(s[:pairs] - s[pairs:], y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            try:
                step()  # warm-up (allocates optimizer state)
                rate = median_rate(lambda: [step() for _ in range(args.steps)], args.steps * pairs, 3)
            except torch.cuda.OutOfMemoryError:
                print(f"{pairs:>12} {str(ckpt):>14} {'OOM':>9}")
                del model, opt
                torch.cuda.empty_cache()
                continue
            peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
            print(f"{pairs:>12} {str(ckpt):>14} {rate:>9.1f} {peak:>9.2f}")
            del model, opt
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return 0


def run(args) -> int:
    if args.bench == "full":
        return bench_train_full(args)
    if args.bench == "train":
        return bench_train_quick(args)
    if args.bench == "score":
        return bench_score(args)
    if args.bench == "scan":
        return bench_scan(args)
    if args.bench == "learn":
        from .bench_learn import bench_learn

        return bench_learn(args)
    raise ValueError(args.bench)
